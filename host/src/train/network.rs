//! The network `host train` trains: a core description ([`tinycnn::Architecture`]) and which of
//! its layers are batch-normalised, written as the option `:bn` of the layer it normalises
//! (`conv3x3:32:s2:bn`, `dw3x3:bn`, `conv1x1:64:bn`, `dense:64:bn`).
//!
//! Batch normalisation exists only while training: the layer's output is normalised before its
//! activation (convolution -> batch norm -> ReLU, as Keras models and MLPerf Tiny's are built),
//! and export folds it into the layer's weights and bias, as TensorFlow's converter does
//! ([`crate::train::model::Net::weights`]). The core never sees the word: [`TrainNetwork::parse`]
//! takes `:bn` out before the core's parser reads the text, keeping every other word where it
//! was, so the core's errors point at the right place.

use std::fmt;

use tinycnn::Architecture;
use tinycnn::arch::{Layer, Shape};
use tinycnn::text::TextError;

/// The option that asks for batch normalisation.
pub const BATCH_NORM_OPTION: &str = "bn";

/// A network as `host train` takes it: the core's description and the batch-normalised layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainNetwork {
    /// The description the core runs (batch normalisation folded away).
    pub architecture: Architecture,
    /// One flag per layer of `architecture`: whether its output is batch-normalised.
    pub batch_norm: Vec<bool>,
}

/// A description `host train` refuses: where (the byte range of the word at fault in the text
/// given, `None`: the text as a whole) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkError {
    /// Byte range of the offending word.
    pub span: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NetworkError {}

impl From<TextError> for NetworkError {
    fn from(error: TextError) -> Self {
        Self {
            span: error.span,
            message: error.to_string(),
        }
    }
}

impl From<Architecture> for TrainNetwork {
    /// The network without batch normalisation.
    fn from(architecture: Architecture) -> Self {
        Self {
            batch_norm: vec![false; architecture.layers().len()],
            architecture,
        }
    }
}

/// The words of `text` with their byte offsets, as the core's parser splits them: separated by
/// whitespace or commas, `#` starting a comment that runs to the end of the line.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    text.split_inclusive('\n').flat_map(move |line| {
        let start = offset;
        offset += line.len();
        let code = line.split('#').next().unwrap_or("");
        code.split(|c: char| c.is_whitespace() || c == ',')
            .filter(|word| !word.is_empty())
            .map(move |word| {
                (
                    start + (word.as_ptr() as usize - line.as_ptr() as usize),
                    word,
                )
            })
    })
}

impl TrainNetwork {
    /// Parses a description with `:bn` options; `default_input` is the input when the text
    /// names none. Every word but `input:` and `output:` is one layer, as in the core.
    pub fn parse(text: &str, default_input: Shape) -> Result<Self, NetworkError> {
        // The text the core reads: each `:bn` taken out of its word, the word padded with
        // spaces to its length, so that every word keeps its offset.
        let mut core_text = text.to_string();
        let mut flagged = Vec::new();
        let mut layer = 0;
        for (start, word) in words(text) {
            if word.starts_with("input:") || word.starts_with("output:") {
                continue;
            }
            let span = (start, start + word.len());
            let mut parts = word.split(':');
            let head = parts.next().unwrap_or("");
            let options: Vec<&str> = parts.collect();
            let given = options
                .iter()
                .filter(|&&option| option == BATCH_NORM_OPTION)
                .count();
            if given > 1 {
                return Err(NetworkError {
                    span: Some(span),
                    message: "`:bn` (batch normalisation) is given twice".to_string(),
                });
            }
            if given == 1 {
                let kept: Vec<&str> = std::iter::once(head)
                    .chain(
                        options
                            .iter()
                            .copied()
                            .filter(|&option| option != BATCH_NORM_OPTION),
                    )
                    .collect();
                let stripped = format!("{:width$}", kept.join(":"), width = word.len());
                core_text.replace_range(span.0..span.1, &stripped);
                flagged.push((layer, span));
            }
            layer += 1;
        }
        let architecture = tinycnn::text::parse(&core_text, default_input)?;
        let layers = architecture.layers();
        if layers.len() != layer {
            // The core makes one layer of every word but input: and output:.
            return Err(NetworkError {
                span: None,
                message: format!(
                    "{layer} layer words, and the core's description has {} layers",
                    layers.len()
                ),
            });
        }
        let logits = match layers {
            _ if !architecture.is_classifier() => None,
            [.., Layer::Softmax] => layers.len().checked_sub(2),
            _ => layers.len().checked_sub(1),
        };
        let mut batch_norm = vec![false; layers.len()];
        for (index, span) in flagged {
            let word = &text[span.0..span.1];
            let refuse = |why: &str| NetworkError {
                span: Some(span),
                message: format!(
                    "`:bn` (batch normalisation) normalises the output of a conv, dw or dense \
                     layer, before its activation; {why}"
                ),
            };
            match layers[index] {
                Layer::Conv(_) | Layer::Depthwise(_) => {}
                Layer::Dense(_) if Some(index) == logits => {
                    return Err(refuse(&format!(
                        "`{word}` is the last dense layer, which gives the logits"
                    )));
                }
                Layer::Dense(_) => {}
                Layer::Residual(_) => {
                    return Err(refuse(&format!(
                        "`{word}` starts a residual block, whose shortcut projection is not \
                         normalised (put `:bn` on the block's layers)"
                    )));
                }
                _ => return Err(refuse(&format!("`{word}` is not one of them"))),
            }
            batch_norm[index] = true;
        }
        Ok(Self {
            architecture,
            batch_norm,
        })
    }

    /// Whether layer `index` (0-based, in the description) is batch-normalised.
    pub fn is_batch_normalised(&self, index: usize) -> bool {
        self.batch_norm.get(index).copied().unwrap_or(false)
    }

    /// Whether any layer is batch-normalised.
    pub fn has_batch_norm(&self) -> bool {
        self.batch_norm.contains(&true)
    }

    /// Trainable parameters while training: the core's, less the bias of each batch-normalised
    /// layer, plus its batch norm's scale and offset (gamma and beta; the running mean and
    /// variance are statistics, not trained).
    pub fn parameters(&self) -> usize {
        let normalised: usize = self
            .architecture
            .iter()
            .filter(|info| self.is_batch_normalised(info.index))
            .map(|info| info.outputs())
            .sum();
        self.architecture.parameters() + normalised
    }
}

impl fmt::Display for TrainNetwork {
    /// The text form, the core's ([`Architecture`]'s `Display`: input first) with `:bn` after
    /// each batch-normalised layer's word; [`TrainNetwork::parse`] reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.architecture.to_string();
        // The core writes the input, one word per layer, and `output:values` when it has one.
        for (position, word) in text.split(' ').enumerate() {
            if position > 0 {
                f.write_str(" ")?;
            }
            f.write_str(word)?;
            if position > 0 && self.is_batch_normalised(position - 1) {
                write!(f, ":{BATCH_NORM_OPTION}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MNIST: Shape = Shape::new(28, 28, 1);

    fn parse(text: &str) -> Result<TrainNetwork, NetworkError> {
        TrainNetwork::parse(text, MNIST)
    }

    #[test]
    fn bn_is_taken_out_for_the_core_and_written_back() {
        let text = "conv3x3:8:s2:bn dw3x3:bn:relu6 residual conv1x1:8:linear:bn add \
                    flatten dense:16:bn drop:0.5 dense:10";
        let network = parse(text).unwrap();
        let plain = tinycnn::text::parse(&text.replace(":bn", ""), MNIST).unwrap();
        assert_eq!(network.architecture, plain);
        assert_eq!(
            network.batch_norm,
            [true, true, false, true, false, false, true, false, false]
        );
        assert!(network.has_batch_norm());
        let written = network.to_string();
        assert_eq!(
            written,
            "input:28x28x1 conv3x3:8:s2:bn dw3x3:relu6:bn residual conv1x1:8:linear:bn add \
             flatten dense:16:bn drop:0.5 dense:10"
        );
        assert_eq!(parse(&written).unwrap(), network);
        // Without `:bn`, the core's text.
        let none = parse("conv3x3:4 pool flatten dense:10").unwrap();
        assert!(!none.has_batch_norm());
        assert_eq!(none.to_string(), none.architecture.to_string());
        assert_eq!(TrainNetwork::from(none.architecture), none);
        // Parameters: a conv's bias (8) gives way to gamma and beta (16).
        let one = parse("input:4x4x1 conv3x3:8:bn flatten dense:10").unwrap();
        assert_eq!(one.parameters(), one.architecture.parameters() + 8);
    }

    #[test]
    fn commas_comments_and_input_words_are_not_layers() {
        let text = "input:12x12x3, conv3x3:8:bn # dw3x3:bn would be a layer\n\
                    dw3x3:s2,conv1x1:16:bn\tflatten dense:4 output:classes";
        let network = parse(text).unwrap();
        assert_eq!(network.batch_norm, [true, false, true, false, false]);
        assert_eq!(network.architecture.input(), Shape::new(12, 12, 3));
    }

    #[test]
    fn bn_is_refused_where_it_normalises_nothing_trained() {
        let refused = |text: &str, word: &str, why: &str| {
            let error = parse(text).unwrap_err();
            let (start, end) = error.span.unwrap();
            assert_eq!(&text[start..end], word, "{text}");
            assert!(error.message.contains(why), "{text}: {}", error.message);
            assert!(error.message.contains("`:bn`"), "{}", error.message);
        };
        refused(
            "conv3x3:4 pool:bn flatten dense:10",
            "pool:bn",
            "is not one of them",
        );
        refused(
            "conv3x3:4 avgpool2x2:bn flatten dense:10",
            "avgpool2x2:bn",
            "not one of them",
        );
        refused(
            "conv3x3:4 residual:8:s2:bn conv3x3:8:s2 add flatten dense:10",
            "residual:8:s2:bn",
            "shortcut projection",
        );
        refused(
            "conv3x3:4 residual conv3x3:4 add:bn flatten dense:10",
            "add:bn",
            "not one of them",
        );
        refused("conv3x3:4 flatten dense:10:bn", "dense:10:bn", "logits");
        refused("conv3x3:4 gap:bn flatten dense:10", "gap:bn", "not one of");
        refused(
            "conv3x3:4:bn:bn flatten dense:10",
            "conv3x3:4:bn:bn",
            "twice",
        );
        // The core's own errors keep pointing at their word.
        let text = "conv3x3:4:bn conv3x3:x:bn flatten dense:10";
        let error = parse(text).unwrap_err();
        let (start, end) = error.span.unwrap();
        assert!(text[start..end].starts_with("conv3x3:x"), "{error:?}");
    }
}
