//! The text form of a description, for people: one word per layer, Keras's
//! words where they fit.
//!
//! ```text
//! input:28x28x1                       optional, first; the data's shape by default
//! input:640                           a vector of 640 values
//! conv3x3:64                          3x3 convolution, 64 filters, 'same' padding, stride 1
//!                                     and ReLU unless told (kernel sides 1 to 16, any HxW)
//! conv10x4:64:s2:valid:linear         options after the filters, any order: same | valid,
//!                                     relu | relu6 | linear, s2 (stride 2) or s2x1 (per axis)
//! dw3x3                               depthwise 3x3; options as conv, and m2 (depth multiplier)
//! pool                                2x2 max-pool, stride 2
//! maxpool3x3  avgpool25x5             a pool of any window; stride = window and 'valid'
//!                                     unless told (:s2, :same)
//! gap                                 global average pool: H x W x C -> C
//! residual  residual:32:s2            starts a residual block; with a number, its shortcut is
//!                                     a 1x1 convolution of that many filters (:s2 stride 2)
//! add  add:linear                     ends the block: its output plus the shortcut, then ReLU
//!                                     (relu6, linear)
//! drop:0.5                            dropout rate (up to three decimals)
//! flatten
//! dense:128                           ReLU unless :linear (:relu6); the last dense layer gives
//! dense:10                            the logits and has no activation
//! softmax                             optional, last
//! output:values                       optional, last: the output is values, not classes
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
    Activation, ArchError, Architecture, Conv, Dense, Depthwise, Layer, MAX_LAYERS, OutputKind,
    Padding, Pool, PoolKind, Shape, Shortcut, Window,
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
    /// A dropout rate with more than three decimals.
    RatePrecision,
    /// An option the layer does not have, or given twice.
    BadOption,
    /// `input:` anywhere but first, or a malformed shape.
    BadInput,
    /// `output:` anywhere but last, or neither `classes` nor `values`.
    BadOutput,
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
                "not a layer: expected convKxK:F, dwKxK, pool, maxpoolKxK, avgpoolKxK, gap, \
                 residual, add, drop:R, flatten, dense:U or softmax (or input:HxWxC first, \
                 output:values last)"
            ),
            TextProblem::MissingValue => write!(
                f,
                "needs a number after a colon: conv3x3:64 (filters), drop:0.5 (rate), \
                 dense:128 (units)"
            ),
            TextProblem::BadNumber => write!(f, "not a whole number in range"),
            TextProblem::RatePrecision => write!(
                f,
                "a dropout rate is a number between 0 and 1 with at most three decimals"
            ),
            TextProblem::BadOption => write!(
                f,
                "options are same or valid, s2 or s2x1 (stride), m2 (depthwise multiplier), \
                 then relu, relu6 or linear, each at most once and only where the layer has it"
            ),
            TextProblem::BadInput => write!(
                f,
                "the input is the first word, as input:HEIGHTxWIDTHxCHANNELS (e.g. input:28x28x1) \
                 or input:VALUES for a vector (e.g. input:640)"
            ),
            TextProblem::BadOutput => write!(f, "output:values or output:classes is the last word"),
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
    let mut output = OutputKind::Classes;
    let mut output_given = false;
    let mut layers = [Layer::Flatten; MAX_LAYERS];
    let mut spans = [(0, 0); MAX_LAYERS];
    let mut activation_given = [false; MAX_LAYERS];
    let mut count = 0;
    for (position, (start, word)) in words(text).enumerate() {
        let span = Some((start, start + word.len()));
        let fail = |problem| TextError { span, problem };
        if output_given {
            return Err(fail(TextProblem::BadOutput));
        }
        if let Some(shape) = word.strip_prefix("input:") {
            if position != 0 {
                return Err(fail(TextProblem::BadInput));
            }
            input = parse_shape(shape).ok_or(fail(TextProblem::BadInput))?;
            continue;
        }
        if let Some(kind) = word.strip_prefix("output:") {
            output = match kind {
                "values" => OutputKind::Values,
                "classes" => OutputKind::Classes,
                _ => return Err(fail(TextProblem::BadOutput)),
            };
            output_given = true;
            continue;
        }
        let (layer, given) = parse_layer(word).map_err(fail)?;
        let (Some(slot), Some(span_slot), Some(given_slot)) = (
            layers.get_mut(count),
            spans.get_mut(count),
            activation_given.get_mut(count),
        ) else {
            return Err(fail(TextProblem::TooManyLayers));
        };
        *slot = layer;
        *span_slot = (start, start + word.len());
        *given_slot = given;
        count += 1;
    }
    let layers = layers.get_mut(..count).unwrap_or(&mut []);
    // ReLU is the default of every dense layer but a classifier's last (before
    // an optional softmax), which gives the logits: written `:relu` there, the
    // description refuses it.
    if output == OutputKind::Classes {
        let logits = match layers {
            [.., Layer::Softmax] => count.checked_sub(2),
            _ => count.checked_sub(1),
        };
        if let Some(index) = logits
            && let Some(Layer::Dense(dense)) = layers.get_mut(index)
            && !activation_given.get(index).copied().unwrap_or(true)
        {
            dense.activation = Activation::None;
        }
    }
    Architecture::with_output(input, layers, output).map_err(|error| TextError {
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
    let first = parse_count(parts.next()?)?;
    let Some(width) = parts.next() else {
        return Some(Shape::vector(first));
    };
    let width = parse_count(width)?;
    let channels = parse_count(parts.next()?)?;
    parts
        .next()
        .is_none()
        .then_some(Shape::new(first, width, channels))
}

fn parse_count(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_small<T: TryFrom<usize>>(text: &str) -> Result<T, TextProblem> {
    parse_count(text)
        .and_then(|value| T::try_from(value).ok())
        .ok_or(TextProblem::BadNumber)
}

/// `HxW` after a layer's word: a window size.
fn parse_size(text: &str) -> Result<(u8, u8), TextProblem> {
    let (height, width) = text.split_once('x').ok_or(TextProblem::UnknownWord)?;
    Ok((parse_small(height)?, parse_small(width)?))
}

/// Which options a layer takes.
#[derive(Clone, Copy)]
struct Allowed {
    padding: bool,
    stride: bool,
    multiplier: bool,
    activation: bool,
}

/// The options after a layer's values.
#[derive(Clone, Copy, Default)]
struct Options {
    padding: Option<Padding>,
    stride: Option<(u8, u8)>,
    multiplier: Option<u8>,
    activation: Option<Activation>,
}

fn parse_options<'t>(
    parts: impl Iterator<Item = &'t str>,
    allowed: Allowed,
) -> Result<Options, TextProblem> {
    let mut options = Options::default();
    for option in parts {
        match option {
            "same" | "valid" if allowed.padding && options.padding.is_none() => {
                options.padding = Some(if option == "same" {
                    Padding::Same
                } else {
                    Padding::Valid
                });
            }
            "relu" | "relu6" | "linear" if allowed.activation && options.activation.is_none() => {
                options.activation = Some(match option {
                    "relu" => Activation::Relu,
                    "relu6" => Activation::Relu6,
                    _ => Activation::None,
                });
            }
            _ => {
                let numbered = |rest: &str| rest.starts_with(|c: char| c.is_ascii_digit());
                if let Some(stride) = option.strip_prefix('s')
                    && numbered(stride)
                    && allowed.stride
                    && options.stride.is_none()
                {
                    options.stride = Some(match stride.split_once('x') {
                        Some((height, width)) => (parse_small(height)?, parse_small(width)?),
                        None => {
                            let both = parse_small(stride)?;
                            (both, both)
                        }
                    });
                } else if let Some(multiplier) = option.strip_prefix('m')
                    && numbered(multiplier)
                    && allowed.multiplier
                    && options.multiplier.is_none()
                {
                    options.multiplier = Some(parse_small(multiplier)?);
                } else {
                    return Err(TextProblem::BadOption);
                }
            }
        }
    }
    Ok(options)
}

const fn window(size: (u8, u8), stride: (u8, u8), padding: Padding) -> Window {
    Window {
        height: size.0,
        width: size.1,
        stride_height: stride.0,
        stride_width: stride.1,
        padding,
    }
}

fn no_options<'t>(mut parts: impl Iterator<Item = &'t str>) -> Result<(), TextProblem> {
    match parts.next() {
        Some(_) => Err(TextProblem::BadOption),
        None => Ok(()),
    }
}

/// A layer and whether its activation was written out.
fn parse_layer(word: &str) -> Result<(Layer, bool), TextProblem> {
    let mut parts = word.split(':');
    let head = parts.next().unwrap_or("");
    let conv_like = Allowed {
        padding: true,
        stride: true,
        multiplier: false,
        activation: true,
    };
    let pool_like = Allowed {
        padding: true,
        stride: true,
        multiplier: false,
        activation: false,
    };
    let activation_only = Allowed {
        padding: false,
        stride: false,
        multiplier: false,
        activation: true,
    };
    let simple = |layer| no_options(parts.clone()).map(|()| (layer, false));
    match head {
        "pool" => simple(Layer::MaxPool),
        "flatten" => simple(Layer::Flatten),
        "gap" | "globalavgpool" => simple(Layer::GlobalAveragePool),
        "softmax" => simple(Layer::Softmax),
        "drop" | "dropout" => {
            let rate = parts.next().ok_or(TextProblem::MissingValue)?;
            no_options(parts)?;
            Ok((Layer::Dropout(parse_rate(rate)?), false))
        }
        "dense" => {
            let units = parts.next().ok_or(TextProblem::MissingValue)?;
            let units = parse_small(units)?;
            let options = parse_options(parts, activation_only)?;
            let layer = Layer::Dense(Dense {
                units,
                activation: options.activation.unwrap_or(Activation::Relu),
            });
            Ok((layer, options.activation.is_some()))
        }
        "add" => {
            let options = parse_options(parts, activation_only)?;
            Ok((
                Layer::Add(options.activation.unwrap_or(Activation::Relu)),
                true,
            ))
        }
        "residual" => {
            let shortcut = match parts.next() {
                None => Shortcut::Identity,
                Some(filters) => {
                    let filters = parse_small(filters)?;
                    let options = parse_options(
                        parts,
                        Allowed {
                            padding: false,
                            stride: true,
                            multiplier: false,
                            activation: false,
                        },
                    )?;
                    let stride = match options.stride {
                        None => 1,
                        Some((height, width)) if height == width => height,
                        Some(_) => return Err(TextProblem::BadOption),
                    };
                    Shortcut::Projection { filters, stride }
                }
            };
            Ok((Layer::Residual(shortcut), false))
        }
        _ => {
            if let Some(size) = head.strip_prefix("conv") {
                let size = parse_size(size)?;
                let filters = parts.next().ok_or(TextProblem::MissingValue)?;
                let filters = parse_small(filters)?;
                let options = parse_options(parts, conv_like)?;
                let layer = Layer::Conv(Conv {
                    window: window(
                        size,
                        options.stride.unwrap_or((1, 1)),
                        options.padding.unwrap_or(Padding::Same),
                    ),
                    filters,
                    activation: options.activation.unwrap_or(Activation::Relu),
                });
                return Ok((layer, options.activation.is_some()));
            }
            let depthwise = head
                .strip_prefix("dw")
                .or_else(|| head.strip_prefix("depthwise"));
            if let Some(size) = depthwise {
                let size = parse_size(size)?;
                let options = parse_options(
                    parts,
                    Allowed {
                        multiplier: true,
                        ..conv_like
                    },
                )?;
                let layer = Layer::Depthwise(Depthwise {
                    window: window(
                        size,
                        options.stride.unwrap_or((1, 1)),
                        options.padding.unwrap_or(Padding::Same),
                    ),
                    multiplier: options.multiplier.unwrap_or(1),
                    activation: options.activation.unwrap_or(Activation::Relu),
                });
                return Ok((layer, options.activation.is_some()));
            }
            let (kind, size) = if let Some(size) = head.strip_prefix("maxpool") {
                (PoolKind::Max, size)
            } else if let Some(size) = head.strip_prefix("avgpool") {
                (PoolKind::Average, size)
            } else {
                return Err(TextProblem::UnknownWord);
            };
            let size = parse_size(size)?;
            let options = parse_options(parts, pool_like)?;
            // Keras's default: the stride is the window.
            let default_stride = size;
            let pool = Pool {
                kind,
                window: window(
                    size,
                    options.stride.unwrap_or(default_stride),
                    options.padding.unwrap_or(Padding::Valid),
                ),
            };
            Ok((Layer::Pool(pool), false))
        }
    }
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
    /// The text form, input first; a classifier's logits' missing activation
    /// is implied, every other non-default option is written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = self.input();
        if input.is_vector() {
            write!(f, "input:{}", input.channels)?;
        } else {
            write!(f, "input:{input}")?;
        }
        let layers = self.layers();
        let logits = match (self.is_classifier(), layers) {
            (false, _) => None,
            (true, [.., Layer::Softmax]) => layers.len().checked_sub(2),
            (true, _) => layers.len().checked_sub(1),
        };
        for (index, layer) in layers.iter().enumerate() {
            f.write_str(" ")?;
            write_layer(f, layer, Some(index) == logits)?;
        }
        if !self.is_classifier() {
            f.write_str(" output:values")?;
        }
        Ok(())
    }
}

fn write_stride(f: &mut impl fmt::Write, height: u8, width: u8) -> fmt::Result {
    if height == width {
        write!(f, ":s{height}")
    } else {
        write!(f, ":s{height}x{width}")
    }
}

/// `:s2` (when not 1) and `:valid` (when not 'same') of a convolution's window.
fn write_conv_window(f: &mut impl fmt::Write, window: &Window) -> fmt::Result {
    if (window.stride_height, window.stride_width) != (1, 1) {
        write_stride(f, window.stride_height, window.stride_width)?;
    }
    if window.padding == Padding::Valid {
        f.write_str(":valid")?;
    }
    Ok(())
}

/// `:linear` or `:relu6` when not ReLU.
fn write_activation(f: &mut impl fmt::Write, activation: Activation) -> fmt::Result {
    match activation {
        Activation::Relu => Ok(()),
        other => write!(f, ":{}", other.word()),
    }
}

/// One layer in the text form; `logits` leaves a dense layer's `linear` implied.
pub fn write_layer(f: &mut impl fmt::Write, layer: &Layer, logits: bool) -> fmt::Result {
    match *layer {
        Layer::Conv(conv) => {
            let window = conv.window;
            write!(f, "conv{}x{}:{}", window.height, window.width, conv.filters)?;
            write_conv_window(f, &window)?;
            write_activation(f, conv.activation)
        }
        Layer::Depthwise(depthwise) => {
            let window = depthwise.window;
            write!(f, "dw{}x{}", window.height, window.width)?;
            if depthwise.multiplier != 1 {
                write!(f, ":m{}", depthwise.multiplier)?;
            }
            write_conv_window(f, &window)?;
            write_activation(f, depthwise.activation)
        }
        Layer::MaxPool => f.write_str("pool"),
        Layer::Pool(pool) => {
            let window = pool.window;
            let word = match pool.kind {
                PoolKind::Max => "maxpool",
                PoolKind::Average => "avgpool",
            };
            write!(f, "{word}{}x{}", window.height, window.width)?;
            let (height, width) = (window.stride_height, window.stride_width);
            if (height, width) != (window.height, window.width) {
                write_stride(f, height, width)?;
            }
            if window.padding == Padding::Same {
                f.write_str(":same")?;
            }
            Ok(())
        }
        Layer::GlobalAveragePool => f.write_str("gap"),
        Layer::Residual(Shortcut::Identity) => f.write_str("residual"),
        Layer::Residual(Shortcut::Projection { filters, stride }) => {
            write!(f, "residual:{filters}")?;
            if stride != 1 {
                write!(f, ":s{stride}")?;
            }
            Ok(())
        }
        Layer::Add(activation) => {
            f.write_str("add")?;
            write_activation(f, activation)
        }
        Layer::Softmax => f.write_str("softmax"),
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
            if dense.activation == Activation::None && logits {
                return Ok(());
            }
            write_activation(f, dense.activation)
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
            Layer::Conv(Conv::square(5, Padding::Valid, 8, Activation::None))
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

    #[test]
    fn the_new_vocabulary_round_trips() {
        for text in [
            "input:49x10x1 conv10x4:64:s2 dw3x3 conv1x1:64 dw3x3:s2:valid:relu6 conv1x1:8:linear \
             avgpool3x1 flatten dense:12 softmax",
            "input:32x32x3 conv3x3:16 residual conv3x3:16 conv3x3:16:linear add \
             residual:32:s2 conv3x3:32:s2 conv3x3:32:linear add:linear maxpool3x3:s2:same \
             dw3x3:m2:s2x1 gap dense:10",
            "input:640 dense:128 dense:8:relu6 dense:640:linear output:values",
            "input:20x20x2 avgpool4x4:s1 maxpool3x2:s2x1 conv2x2:4:relu6 flatten dense:3",
        ] {
            let architecture = parse(text, MNIST).unwrap_or_else(|e| panic!("{text}: {e}"));
            let written = architecture.to_string();
            assert_eq!(
                written.split_whitespace().collect::<std::vec::Vec<_>>(),
                text.split_whitespace().collect::<std::vec::Vec<_>>()
            );
            assert_eq!(parse(&written, MNIST), Ok(architecture));
        }
        // maxpool2x2 is the tutorial's pool.
        let pooled = parse("conv3x3:4 maxpool2x2 flatten dense:2", MNIST).unwrap();
        assert_eq!(pooled.layers()[1], Layer::MaxPool);
        assert_eq!(
            error("conv3x3:8:m2 flatten dense:2"),
            (Some("conv3x3:8:m2"), TextProblem::BadOption)
        );
        assert_eq!(
            error("avgpool2x2:relu flatten dense:2"),
            (Some("avgpool2x2:relu"), TextProblem::BadOption)
        );
        assert_eq!(
            error("flatten dense:2 output:values dense:3"),
            (Some("dense:3"), TextProblem::BadOutput)
        );
        assert_eq!(
            error("flatten dense:2 output:maybe"),
            (Some("output:maybe"), TextProblem::BadOutput)
        );
        // The logits before a softmax are linear unless told.
        let softmaxed = parse("flatten dense:4 dense:2 softmax", MNIST).unwrap();
        assert!(matches!(
            softmaxed.layers()[2],
            Layer::Dense(Dense {
                activation: Activation::None,
                ..
            })
        ));
    }
}
