//! What several commands share: their common options, value parsers and output.

pub(crate) mod bench;
pub(crate) mod data;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod fixture;
pub(crate) mod import;
pub(crate) mod inspect;
pub(crate) mod predict;
pub(crate) mod train;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tinycnn::Architecture;
use tinycnn::arch::Shape;
use tinycnn_host::data::download::{BarProgress, FetchOptions, Silent};
use tinycnn_host::data::{Dataset, Fit, FolderOptions, mnist};
use tinycnn_host::train::network::TrainNetwork;

/// What `--arch` accepts, for `--help`; [`arch_help`] adds the default.
const ARCH_GRAMMAR: &str = "\
The network, one word per layer (or @FILE: the words from a file, # starts a comment):
  input:HxWxC          first, optional: the input (default: the data's, 28x28x1);
                       input:N for a vector of N values
  convHxW:F            H x W convolution (sides 1 to 16), F filters; options in any
                       order: :same (default) or :valid, :relu (default), :relu6 or
                       :linear, :s2 or :s2x1 (stride 2 on both axes, or per axis)
  dwHxW                depthwise convolution, options as conv, and :m2 (2 outputs per
                       input channel)
  pool                 2x2 max-pool, stride 2 (an odd side drops its last row/column)
  maxpoolHxW           max-pool of any window; stride = window and :valid unless told
  avgpoolHxW           average pool (the mean of the taps inside the input), as maxpool
  gap                  global average pool: H x W x C -> C
  residual             starts a residual block: the layers up to `add` run on its
  residual:F:s2        input; its shortcut is the input, or a 1x1 convolution of F
                       filters (here with stride 2)
  add                  ends the block: its output plus the shortcut, then ReLU
                       (:relu6, :linear)
  drop:R               dropout with rate R, during training only
  flatten              map -> vector (before the first dense layer)
  dense:U              U units, ReLU unless :linear (:relu6); the last dense layer
                       gives the logits (no activation), one unit per class
  softmax              last, optional: probabilities instead of logits
  output:values        last, optional: the network gives values, not classes
  :bn                  an option of conv, dw and dense (not the logits' dense layer):
                       batch normalisation of the layer's output before its
                       activation, with the batch's statistics while training and
                       the running ones after; the export folds it into the layer's
                       weights and bias (host train, export and bench train take it),
                       e.g. conv3x3:12:s2:bn dw3x3:bn conv1x1:32:bn
Words are separated by spaces, commas or newlines. `host train` trains every layer
above but softmax (it trains on the logits) and output:values; `host import` runs every
layer above. The default is the Keras MNIST tutorial's network:";

/// The small network shipped in `data/small/`, as an example for `--help`.
const SMALL_EXAMPLE: &str = "conv3x3:16 pool conv3x3:32 pool conv3x3:64 pool drop:0.25 \
                             flatten dense:64 drop:0.25 dense:10";

/// The depthwise-separable network shipped in `data/separable/` (MobileNet's blocks: a
/// depthwise 3x3, then a 1x1 convolution, each batch-normalised), as an example for `--help`.
const SEPARABLE_EXAMPLE: &str = "conv3x3:16:s2:bn dw3x3:bn conv1x1:20:bn dw3x3:s2:bn \
                                 conv1x1:56:bn dw3x3:bn conv1x1:48:bn dw3x3:s2:bn flatten \
                                 dense:10";

/// A residual network (ResNet's blocks, one with a projection shortcut), as an example for
/// `--help`.
const RESIDUAL_EXAMPLE: &str = "conv3x3:16 residual conv3x3:16 conv3x3:16:linear add \
                                residual:32:s2 conv3x3:32:s2 conv3x3:32:linear add avgpool2x2 \
                                flatten dense:10";

/// `--arch`'s help: the grammar, the default written from the core's description of it, and
/// an example.
pub(crate) fn arch_help() -> String {
    let reference = Architecture::REFERENCE.to_string();
    let layers = reference
        .split_once(' ')
        .map_or(&*reference, |(_, layers)| layers);
    format!(
        "{ARCH_GRAMMAR}\n{}\nA small one for 256 KB boards:\n{}\n\
         A depthwise-separable one, batch-normalised (0.35 M multiply-accumulates per image; \
         data/separable/):\n{}\n\
         A residual one:\n{}",
        indented_lines(layers),
        indented_lines(SMALL_EXAMPLE),
        indented_lines(SEPARABLE_EXAMPLE),
        indented_lines(RESIDUAL_EXAMPLE)
    )
}

/// `words` in lines of at most 90 columns, each indented by two spaces.
fn indented_lines(words: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for word in words.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= 90 => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(format!("  {word}")),
        }
    }
    lines.join("\n")
}

#[derive(Debug, Args)]
pub(crate) struct ArchArg {
    #[arg(long = "arch", value_name = "LAYERS", long_help = arch_help(), value_parser = parse_arch)]
    pub(crate) architecture: Option<GivenArch>,
}

impl ArchArg {
    /// The network given, if any, with its batch-normalised layers.
    pub(crate) fn network(&self) -> Option<TrainNetwork> {
        self.architecture
            .as_ref()
            .map(|given| given.network.clone())
    }
}

/// A network as `--arch` gave it: its text (a file's content for `@FILE`), and the network it
/// describes with the tutorial's input when it names none.
#[derive(Clone, Debug)]
pub(crate) struct GivenArch {
    /// The text.
    pub(crate) text: String,
    /// The network, and which of its layers are batch-normalised (`:bn`).
    pub(crate) network: TrainNetwork,
}

#[derive(Debug, Args)]
pub(crate) struct CalibrationArg {
    /// Training images whose activations set the int8 ranges (the first N of the training set).
    #[arg(long = "calibration", value_name = "N", default_value_t = tinycnn_host::export::DEFAULT_CALIBRATION_IMAGES,
          value_parser = whole_number(1, usize::MAX))]
    pub(crate) images: usize,
}

#[derive(Debug, Args)]
pub(crate) struct ModelArg {
    /// A tinycnn model file, f32 or int8 (`host train` and `host export` write both).
    #[arg(long, value_name = "FILE", default_value = "data/model-int8.tcnn")]
    pub(crate) model: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct DataDir {
    /// The data set's directory [default: data/mnist, or data/fashion-mnist, data/cifar10 or
    /// data/speech-commands with --dataset fashion-mnist, cifar10 or speech-commands]. Either the four MNIST-format IDX files
    /// (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
    /// t10k-labels-idx1-ubyte, each raw or .gz: its classes are its labels, at least ten, up to
    /// 256; files it lacks are downloaded into it, verified, from the --dataset's mirrors), or
    /// CIFAR-10's binary batches (cifar-10-batches-bin/ with data_batch_1.bin to
    /// data_batch_5.bin, test_batch.bin and batches.meta.txt, as its tarball unpacks; 32x32x3
    /// pictures of ten classes), or folders of pictures: one sub-folder
    /// per class (DIR/cat/*.jpg, DIR/dog/*.jpg; a fifth of each class's pictures is held out as
    /// the test set), or train/ and test/ each holding such sub-folders. Class names are the
    /// folder names, sorted; pictures may be PNG, JPEG, BMP, GIF, TIFF, WebP or PGM/PPM, of any
    /// size, grey or colour, and are converted to the network's input (see --fit); other files
    /// are ignored and counted. Or a keyword set of WAV clips in Speech Commands' layout: one
    /// folder of 16 kHz mono clips per word (DIR/yes/*.wav, ...), DIR/_background_noise_/*.wav,
    /// optionally validation_list.txt and testing_list.txt; the task is twelve classes (yes,
    /// no, up, down, left, right, on, off, stop, go, unknown, silence), each clip padded or cut
    /// to one second and turned into 49x10 MFCCs by the integer front end the model file then
    /// records. The network's last layer must give as many classes as the set has.
    #[arg(long = "data", value_name = "DIR", env = mnist::DATA_DIR_ENV)]
    pub(crate) dir: Option<PathBuf>,
    /// The data set to download when the data directory lacks it: MNIST's digits, Zalando's
    /// Fashion-MNIST (both 28x28 grey, four IDX files checked by SHA-256), or CIFAR-10 (32x32
    /// colour, ten classes: its 170 MB binary tarball from the University of Toronto, checked by
    /// MD5 and SHA-256, then extracted into DIR/cifar-10-batches-bin/), or Speech Commands
    /// v0.02 (keyword spotting: its 2.4 GB tarball from TensorFlow's storage, checked by
    /// SHA-256, then extracted into DIR, 3.8 GB).
    #[arg(long, value_enum, value_name = "NAME", default_value_t = Dataset::Mnist)]
    pub(crate) dataset: Dataset,
    /// A mirror to download from instead of the built-in ones: a base URL the file names
    /// (NAME.gz, cifar-10-binary.tar.gz or speech_commands_v0.02.tar.gz) are appended to. Repeat for several, tried in order; the environment variable
    /// takes a comma-separated list.
    #[arg(
        long = "mirror",
        value_name = "URL",
        env = "TINYCNN_MIRRORS",
        value_delimiter = ','
    )]
    pub(crate) mirrors: Vec<String>,
    /// Never download: fail when the data directory lacks the data set (for offline machines
    /// and CI; the environment variable does the same when set to anything but 0 or false).
    #[arg(long, env = "TINYCNN_NO_DOWNLOAD", value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) no_download: bool,
    /// Seconds a download may wait for the next bytes before it is abandoned and tried again.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = whole_number(1, 3600))]
    pub(crate) stall_timeout: usize,
    /// How pictures of another size than the network's input are brought to it (folders of
    /// pictures): stretch scales each side on its own; crop keeps the largest centred part of
    /// the input's aspect; pad scales the whole picture to fit and fills the rest with black.
    /// Shrinking averages the source pixels each output pixel covers; enlarging interpolates
    /// bilinearly [default: stretch; with train --resume: the checkpoint's].
    #[arg(long, value_enum, value_name = "HOW", hide_default_value = true)]
    pub(crate) fit: Option<Fit>,
    /// Leave out pictures that cannot be decoded (damaged, cut short, not pictures after all),
    /// counting them, instead of stopping at the first with an error naming it.
    #[arg(long)]
    pub(crate) skip_damaged: bool,
}

impl DataDir {
    /// How folder sets are read: converted to `shape` (the pictures' own when `None`) as
    /// --fit says.
    pub(crate) fn folder_options(&self, shape: Option<Shape>, progress: bool) -> FolderOptions {
        FolderOptions {
            shape,
            fit: self.fit.unwrap_or_default(),
            skip_damaged: self.skip_damaged,
            progress,
            front_end: None,
        }
    }

    /// The data directory, as given or by default.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(self.dataset.default_dir()))
    }

    /// The data directory, holding the data set: what it lacked is downloaded first (with a
    /// progress bar unless `quiet`).
    pub(crate) fn ready(&self, quiet: bool) -> anyhow::Result<PathBuf> {
        let dir = self.path();
        let mut fetch = FetchOptions::for_dataset(self.dataset);
        if !self.mirrors.is_empty() {
            fetch.mirrors.clone_from(&self.mirrors);
        }
        fetch.stall_timeout = Duration::from_secs(self.stall_timeout as u64);
        let fetch = (!self.no_download).then_some(&fetch);
        let downloaded = if quiet {
            tinycnn_host::data::ensure(&dir, self.dataset, fetch, &mut Silent)?
        } else {
            tinycnn_host::data::ensure(&dir, self.dataset, fetch, &mut BarProgress::default())?
        };
        if !downloaded.is_empty() && !quiet {
            if self.dataset.is_idx() {
                eprintln!(
                    "{}: {} of the {} files downloaded and verified",
                    dir.display(),
                    downloaded.len(),
                    self.dataset
                );
            } else {
                eprintln!(
                    "{}: {}'s archive downloaded and verified, {} files extracted",
                    dir.display(),
                    self.dataset,
                    downloaded.len()
                );
            }
        }
        Ok(dir)
    }
}

/// `--arch`: the text form, or `@FILE`; an error shows the word at fault.
pub(crate) fn parse_arch(value: &str) -> Result<GivenArch, String> {
    let (text, source) = match value.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|error| format!("{path}: cannot read: {error}"))?,
            Some(path),
        ),
        None => (value.to_string(), None),
    };
    let default_input = Architecture::REFERENCE.input();
    let parsed = TrainNetwork::parse(&text, default_input).map_err(|error| {
        let Some((start, end)) = error.span else {
            return error.to_string();
        };
        // The line holding the word, with a caret under it.
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
        let line_number = text[..start].matches('\n').count() + 1;
        let place = match source {
            Some(path) => format!("{path}:{line_number}: "),
            None => String::new(),
        };
        let indent = text[line_start..start].chars().count();
        format!(
            "{place}`{}`: {error}\n  {}\n  {}{}",
            &text[start..end],
            &text[line_start..line_end],
            " ".repeat(indent),
            "^".repeat(text[start..end].chars().count().max(1))
        )
    })?;
    Ok(GivenArch {
        text,
        network: parsed,
    })
}

/// A value parser for a whole number from `min` to `max`, whose errors say what is accepted
/// (clap prints them after the option: `invalid value '0' for '--limit <N>': must be at least
/// 1`).
pub(crate) fn whole_number(
    min: usize,
    max: usize,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |text| {
        let expected = if max == usize::MAX {
            format!("must be at least {min}")
        } else {
            format!("must be from {min} to {max}")
        };
        match text.trim().parse::<usize>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            Ok(_) => Err(expected),
            Err(_) => Err(format!("{expected}, a whole number")),
        }
    }
}

/// `--checkpoint-minutes`: minutes between timed checkpoints, 0 for none.
pub(crate) fn minutes(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err("must be a number of minutes, 0 or more (0: no timed checkpoints)".into()),
    }
}

/// Prints a text report.
pub(crate) fn print_report(report: anyhow::Result<String>) -> anyhow::Result<ExitCode> {
    emit(report?);
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to standard output. A closed pipe (`host eval | head -1`) ends the program
/// quietly, as it does other command-line tools, instead of with a panic.
pub(crate) fn emit(text: impl std::fmt::Display) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = write!(stdout, "{text}").and_then(|()| stdout.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {error}");
        std::process::exit(1);
    }
}

/// The command line as typed, for the metrics: program name without its directory.
pub(crate) fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|path| {
            Path::new(&path)
                .file_name()
                .map_or(path.clone(), |name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "host".into());
    std::iter::once(program)
        .chain(args.map(|arg| {
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                format!("'{arg}'")
            } else {
                arg
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_examples_are_networks_host_train_trains() {
        for example in [SMALL_EXAMPLE, SEPARABLE_EXAMPLE, RESIDUAL_EXAMPLE] {
            let network = TrainNetwork::parse(example, Architecture::REFERENCE.input())
                .unwrap_or_else(|error| panic!("{example}: {error:?}"));
            tinycnn_host::train::model::check_trainable(&network.architecture).unwrap();
        }
        let separable =
            TrainNetwork::parse(SEPARABLE_EXAMPLE, Architecture::REFERENCE.input()).unwrap();
        assert!(separable.has_batch_norm());
        assert_eq!(separable.architecture.macs(), 353_868);
    }
}
