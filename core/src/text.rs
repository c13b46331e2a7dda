//! The text form of a description, for people: one word per layer, Keras's
//! words where they fit.
//!
//! ```text
//! input:28x28x1                       optional, first; the data's shape by default
//! conv3x3:64                          K x K convolution (K = 1, 3, 5), 64 filters,
//!                                     'same' padding and ReLU unless told
//! conv5x5:32:valid:linear             options after the filters: same | valid, relu | linear
//! pool                                2x2 max-pool, stride 2
//! drop:0.5                            dropout rate (up to three decimals)
//! flatten
//! dense:128                           ReLU unless :linear; the last dense layer gives
//! dense:10                            the logits and has no activation
//! ```
//!
//! Words are separated by spaces, newlines or commas; `#` starts a comment
//! that runs to the end of the line. [`Architecture`]'s `Display` writes this
//! form back (always with the input), so `parse(description.to_string())`
//! gives the same description.
//!
//! ```
//! use tinycnn::arch::{Architecture, Shape};
//! let text = "conv3x3:64 pool drop:0.5 conv3x3:128 pool drop:0.5 conv3x3:256 pool drop:0.5 \
//!             flatten dense:128 dense:64 dense:32 dense:10";
//! let parsed = tinycnn::text::parse(text, Shape::new(28, 28, 1)).unwrap();
//! assert_eq!(parsed, Architecture::REFERENCE);
//! ```

use core::fmt;

use crate::arch::{
    Activation, ArchError, Architecture, Conv, Dense, Layer, MAX_LAYERS, Padding, Shape,
};

/// What is wrong with a word of the text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextProblem {
    /// A word that names no layer.
    UnknownWord,
    /// `conv`, `drop` or `dense` without the number after the colon.
    MissingValue,
    /// A number that does not parse or is out of range.
    BadNumber,
    /// `convAxB` with `A != B`.
    NotSquare,
    /// A dropout rate with more than three decimals.
    RatePrecision,
    /// An option the layer does not have, or given twice.
    BadOption,
    /// `input:` anywhere but first, or a malformed shape.
    BadInput,
    /// More words than [`MAX_LAYERS`] layers.
    TooManyLayers,
    /// The words parse, but the layer is not valid where it stands.
    Architecture(ArchError),
}

/// A rejected text: the byte range of the word at fault (`None`: the text as a
/// whole) and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextError {
    /// Byte range of the offending word in the text.
    pub span: Option<(usize, usize)>,
    /// What is wrong.
    pub problem: TextProblem,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problem {
            TextProblem::UnknownWord => write!(
                f,
                "not a layer: expected convKxK:F, pool, drop:R, flatten or dense:U \
                 (or input:HxWxC first)"
            ),
            TextProblem::MissingValue => write!(
                f,
                "needs a number after a colon: conv3x3:64 (filters), drop:0.5 (rate), \
                 dense:128 (units)"
            ),
            TextProblem::BadNumber => write!(f, "not a whole number in range"),
            TextProblem::NotSquare => write!(f, "kernels are square: conv3x3, conv5x5, conv1x1"),
            TextProblem::RatePrecision => write!(
                f,
                "a dropout rate is a number between 0 and 1 with at most three decimals"
            ),
            TextProblem::BadOption => write!(
                f,
                "options are same or valid (conv only), then relu or linear, each at most once"
            ),
            TextProblem::BadInput => write!(
                f,
                "the input is the first word, as input:HEIGHTxWIDTHxCHANNELS (e.g. input:28x28x1)"
            ),
            TextProblem::TooManyLayers => {
                write!(f, "more than the {MAX_LAYERS} layers supported")
            }
            TextProblem::Architecture(error) => write!(f, "{error}"),
        }
    }
}

impl core::error::Error for TextError {}

/// Parses the text form; `default_input` is the input shape when the text
/// does not start with `input:`.
pub fn parse(text: &str, default_input: Shape) -> Result<Architecture, TextError> {
    let mut input = default_input;
    let mut layers = [Layer::Flatten; MAX_LAYERS];
    let mut spans = [(0, 0); MAX_LAYERS];
    let mut count = 0;
    let mut last_activation_given = false;
    for (position, (start, word)) in words(text).enumerate() {
        let span = Some((start, start + word.len()));
        let fail = |problem| TextError { span, problem };
        if let Some(shape) = word.strip_prefix("input:") {
            if position != 0 {
                return Err(fail(TextProblem::BadInput));
            }
            input = parse_shape(shape).ok_or(fail(TextProblem::BadInput))?;
            continue;
        }
        let (layer, activation_given) = parse_layer(word).map_err(fail)?;
        last_activation_given = activation_given;
        let (Some(slot), Some(span_slot)) = (layers.get_mut(count), spans.get_mut(count)) else {
            return Err(fail(TextProblem::TooManyLayers));
        };
        *slot = layer;
        *span_slot = (start, start + word.len());
        count += 1;
    }
    let layers = layers.get_mut(..count).unwrap_or(&mut []);
    // ReLU is the default of every dense layer but the last, which gives the
    // logits: written `:relu` there, the description refuses it.
    if let Some(Layer::Dense(dense)) = layers.last_mut()
        && !last_activation_given
    {
        dense.activation = Activation::None;
    }
    Architecture::new(input, layers).map_err(|error| TextError {
        span: error.index.and_then(|index| spans.get(index).copied()),
        problem: TextProblem::Architecture(error),
    })
}

/// The words of `text` with their byte offsets, comments left out.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    text.split_inclusive('\n').flat_map(move |line| {
        let start = offset;
        offset += line.len();
        let code = line.split('#').next().unwrap_or("");
        code.split(|c: char| c.is_whitespace() || c == ',')
            .filter(|word| !word.is_empty())
            .map(move |word| {
                // `word` is a sub-slice of `line`: its offset is the pointer difference.
                (
                    start + (word.as_ptr() as usize - line.as_ptr() as usize),
                    word,
                )
            })
    })
}

fn parse_shape(text: &str) -> Option<Shape> {
    let mut parts = text.split('x');
    let height = parse_count(parts.next()?)?;
    let width = parse_count(parts.next()?)?;
    let channels = parse_count(parts.next()?)?;
    parts
        .next()
        .is_none()
        .then_some(Shape::new(height, width, channels))
}

fn parse_count(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A layer and whether its activation was written out.
fn parse_layer(word: &str) -> Result<(Layer, bool), TextProblem> {
    let mut parts = word.split(':');
    let head = parts.next().unwrap_or("");
    match head {
        "pool" | "maxpool" => {
            if parts.next().is_some() {
                return Err(TextProblem::BadOption);
            }
            Ok((Layer::MaxPool, false))
        }
        "flatten" => {
            if parts.next().is_some() {
                return Err(TextProblem::BadOption);
            }
            Ok((Layer::Flatten, false))
        }
        "drop" | "dropout" => {
            let rate = parts.next().ok_or(TextProblem::MissingValue)?;
            if parts.next().is_some() {
                return Err(TextProblem::BadOption);
            }
            Ok((Layer::Dropout(parse_rate(rate)?), false))
        }
        "dense" => {
            let units = parts.next().ok_or(TextProblem::MissingValue)?;
            let units = parse_count(units)
                .and_then(|units| u16::try_from(units).ok())
                .ok_or(TextProblem::BadNumber)?;
            let (_, activation) = parse_options(parts, false)?;
            let layer = Layer::Dense(Dense {
                units,
                activation: activation.unwrap_or(Activation::Relu),
            });
            Ok((layer, activation.is_some()))
        }
        _ => {
            let Some(kernel) = head.strip_prefix("conv") else {
                return Err(TextProblem::UnknownWord);
            };
            let (side, other) = kernel.split_once('x').ok_or(TextProblem::UnknownWord)?;
            let side = parse_count(side)
                .and_then(|side| u8::try_from(side).ok())
                .ok_or(TextProblem::BadNumber)?;
            if parse_count(other) != Some(usize::from(side)) {
                return Err(TextProblem::NotSquare);
            }
            let filters = parts.next().ok_or(TextProblem::MissingValue)?;
            let filters = parse_count(filters)
                .and_then(|filters| u16::try_from(filters).ok())
                .ok_or(TextProblem::BadNumber)?;
            let (padding, activation) = parse_options(parts, true)?;
            let layer = Layer::Conv(Conv {
                kernel: side,
                padding: padding.unwrap_or(Padding::Same),
                filters,
                activation: activation.unwrap_or(Activation::Relu),
            });
            Ok((layer, activation.is_some()))
        }
    }
}

type Options = (Option<Padding>, Option<Activation>);

fn parse_options<'t>(
    parts: impl Iterator<Item = &'t str>,
    padding_allowed: bool,
) -> Result<Options, TextProblem> {
    let mut padding = None;
    let mut activation = None;
    for option in parts {
        match option {
            "same" | "valid" if padding_allowed && padding.is_none() => {
                padding = Some(if option == "same" {
                    Padding::Same
                } else {
                    Padding::Valid
                });
            }
            "relu" | "linear" if activation.is_none() => {
                activation = Some(if option == "relu" {
                    Activation::Relu
                } else {
                    Activation::None
                });
            }
            _ => return Err(TextProblem::BadOption),
        }
    }
    Ok((padding, activation))
}

fn parse_rate(text: &str) -> Result<u16, TextProblem> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits_only(whole) || !digits_only(fraction) {
        return Err(TextProblem::BadNumber);
    }
    if fraction.len() > 3 {
        return Err(TextProblem::RatePrecision);
    }
    let whole: u16 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| TextProblem::BadNumber)?
    };
    if whole > 1 {
        return Err(TextProblem::BadNumber);
    }
    let mut thousandths = 0u16;
    for (place, digit) in [100u16, 10, 1].into_iter().zip(fraction.bytes()) {
        thousandths += place * u16::from(digit - b'0');
    }
    Ok(whole * 1000 + thousandths)
}

impl fmt::Display for Architecture {
    /// The text form, input first; the last dense layer's missing activation
    /// is implied, every other non-default option is written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = self.input();
        write!(f, "input:{input}")?;
        let last = self.layers().len().saturating_sub(1);
        for (index, layer) in self.layers().iter().enumerate() {
            f.write_str(" ")?;
            write_layer(f, layer, index == last)?;
        }
        Ok(())
    }
}

/// One layer in the text form; `last` leaves a dense layer's `linear` implied.
pub fn write_layer(f: &mut impl fmt::Write, layer: &Layer, last: bool) -> fmt::Result {
    match *layer {
        Layer::Conv(conv) => {
            write!(f, "conv{0}x{0}:{1}", conv.kernel, conv.filters)?;
            if conv.padding == Padding::Valid {
                f.write_str(":valid")?;
            }
            if conv.activation == Activation::None {
                f.write_str(":linear")?;
            }
            Ok(())
        }
        Layer::MaxPool => f.write_str("pool"),
        Layer::Dropout(thousandths) => {
            let mut fraction = thousandths % 1000;
            let mut digits = 3;
            while digits > 1 && fraction % 10 == 0 {
                fraction /= 10;
                digits -= 1;
            }
            write!(
                f,
                "drop:{}.{:0width$}",
                thousandths / 1000,
                fraction,
                width = digits
            )
        }
        Layer::Flatten => f.write_str("flatten"),
        Layer::Dense(dense) => {
            write!(f, "dense:{}", dense.units)?;
            if dense.activation == Activation::None && !last {
                f.write_str(":linear")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Problem;
    use std::string::ToString;

    const MNIST: Shape = Shape::new(28, 28, 1);

    fn error(text: &str) -> (Option<&str>, TextProblem) {
        let error = parse(text, MNIST).unwrap_err();
        (
            error.span.map(|(start, end)| &text[start..end]),
            error.problem,
        )
    }

    #[test]
    fn the_reference_round_trips_through_text() {
        let text = Architecture::REFERENCE.to_string();
        assert_eq!(
            text,
            "input:28x28x1 conv3x3:64 pool drop:0.5 conv3x3:128 pool drop:0.5 conv3x3:256 pool \
             drop:0.5 flatten dense:128 dense:64 dense:32 dense:10"
        );
        assert_eq!(
            parse(&text, Shape::new(1, 1, 1)),
            Ok(Architecture::REFERENCE)
        );
    }

    #[test]
    fn options_comments_and_separators() {
        let text = "input:32x32x3  # colour\nconv5x5:8:valid:linear, pool\n\
                    conv1x1:4:relu drop:.25 flatten dense:16:linear dense:20";
        let architecture = parse(text, MNIST).unwrap();
        assert_eq!(architecture.input(), Shape::new(32, 32, 3));
        assert_eq!(
            architecture.layers()[0],
            Layer::Conv(Conv {
                kernel: 5,
                padding: Padding::Valid,
                filters: 8,
                activation: Activation::None,
            })
        );
        assert_eq!(architecture.layers()[3], Layer::Dropout(250));
        assert_eq!(
            architecture.to_string(),
            "input:32x32x3 conv5x5:8:valid:linear pool conv1x1:4 drop:0.25 flatten \
             dense:16:linear dense:20"
        );
        assert_eq!(parse(&architecture.to_string(), MNIST), Ok(architecture));
    }

    #[test]
    fn errors_point_at_the_word() {
        assert_eq!(
            error("conv3x3:64 pool dens:10"),
            (Some("dens:10"), TextProblem::UnknownWord)
        );
        assert_eq!(
            error("conv3x5:64 flatten dense:10"),
            (Some("conv3x5:64"), TextProblem::NotSquare)
        );
        assert_eq!(
            error("conv3x3 flatten dense:10"),
            (Some("conv3x3"), TextProblem::MissingValue)
        );
        assert_eq!(
            error("conv3x3:6x4 flatten dense:10"),
            (Some("conv3x3:6x4"), TextProblem::BadNumber)
        );
        assert_eq!(
            error("drop:0.3333 flatten dense:10"),
            (Some("drop:0.3333"), TextProblem::RatePrecision)
        );
        assert_eq!(
            error("drop:2 flatten dense:10"),
            (Some("drop:2"), TextProblem::BadNumber)
        );
        assert_eq!(
            error("pool:2 flatten dense:10"),
            (Some("pool:2"), TextProblem::BadOption)
        );
        assert_eq!(
            error("conv3x3:8:valid:same flatten dense:10"),
            (Some("conv3x3:8:valid:same"), TextProblem::BadOption)
        );
        assert_eq!(
            error("dense:4:valid flatten dense:10"),
            (Some("dense:4:valid"), TextProblem::BadOption)
        );
        assert_eq!(
            error("flatten input:28x28x1 dense:10"),
            (Some("input:28x28x1"), TextProblem::BadInput)
        );
        assert_eq!(
            error("input:28x28 flatten dense:10"),
            (Some("input:28x28"), TextProblem::BadInput)
        );
        // Valid words in an invalid place: the description's check, at its word.
        let (word, problem) = error("conv3x3:8 pool pool pool pool pool flatten dense:10");
        assert_eq!(word, Some("pool"));
        assert!(matches!(
            problem,
            TextProblem::Architecture(ArchError {
                index: Some(5),
                problem: Problem::PoolTooSmall { .. },
                ..
            })
        ));
        let text = "conv3x3:8 dense:10";
        let rejected = parse(text, MNIST).unwrap_err();
        assert_eq!(rejected.span, Some((10, 18)));
        assert_eq!(
            rejected.to_string(),
            "layer 2 (dense1): a dense layer needs a vector: put `flatten` before the first dense layer"
        );
        // The logits' activation: implied linear, an explicit relu refused.
        assert!(parse("flatten dense:10", MNIST).is_ok());
        assert!(matches!(
            error("flatten dense:10:relu").1,
            TextProblem::Architecture(ArchError {
                problem: Problem::LogitsActivation,
                ..
            })
        ));
        assert_eq!(
            error("").1,
            TextProblem::Architecture(ArchError {
                index: None,
                name: None,
                problem: Problem::NoLayers
            })
        );
        let many = "drop:0.5 ".repeat(MAX_LAYERS + 1);
        assert_eq!(error(&many).1, TextProblem::TooManyLayers);
    }
}
