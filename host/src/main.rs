//! `host`: the desktop command line of tinycnn. This file parses the command line and prints;
//! every subcommand's work is in the library (`tinycnn_host`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tinycnn::Architecture;

use std::time::Duration;
use tinycnn_host::bench::{infer as bench_infer, train as bench_train};

use tinycnn_host::data::download::{BarProgress, FetchOptions, Silent};
use tinycnn_host::data::mnist::{self, Mnist};
use tinycnn_host::data::{self, Dataset};
use tinycnn_host::deploy::{self, eval, fixture, inspect, predict};
use tinycnn_host::export;
use tinycnn_host::tflite;
use tinycnn_host::train::backend::BackendKind;
use tinycnn_host::train::model::InitScheme;
use tinycnn_host::train::progress::{BarReporter, JsonReporter, QuietReporter, Reporter};
use tinycnn_host::train::{self, SettingsArgs, TrainOptions, TrainOutcome};

/// Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED: u8 = 130;

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
Words are separated by spaces, commas or newlines. `host train` trains square
convolutions (1x1, 3x3, 5x5) with stride 1, pool, drop, flatten and dense layers;
`host import` runs every layer above. The default is the Keras MNIST tutorial's network:";

/// The small network shipped in `data/small/`, as an example for `--help`.
const SMALL_EXAMPLE: &str = "conv3x3:16 pool conv3x3:32 pool conv3x3:64 pool drop:0.25 \
                             flatten dense:64 drop:0.25 dense:10";

/// `--arch`'s help: the grammar, the default written from the core's description of it, and
/// an example.
fn arch_help() -> String {
    let reference = Architecture::REFERENCE.to_string();
    let layers = reference
        .split_once(' ')
        .map_or(&*reference, |(_, layers)| layers);
    format!(
        "{ARCH_GRAMMAR}\n{}\nA small one for 256 KB boards:\n{}",
        indented_lines(layers),
        indented_lines(SMALL_EXAMPLE)
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

#[derive(Debug, Parser)]
#[command(
    name = "host",
    version,
    about = "Train small convolutional networks with burn, export them for microcontrollers, \
             check and inspect them",
    long_about = "Train small convolutional networks (the Keras MNIST tutorial's by default, or \
                  one you describe with --arch) with burn on the CPU, export them as tinycnn \
                  model files (f32 and TensorFlow Lite int8) for microcontrollers, evaluate, \
                  inspect and use them; import TensorFlow Lite models and export to them.\n\n\
                  The data is read from a directory of MNIST-format IDX files (--data or \
                  MNIST_DIR, default data/mnist); what it lacks is downloaded first and verified \
                  (MNIST, or Fashion-MNIST with --dataset fashion-mnist; --no-download for \
                  offline machines)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the shapes of the data set, one training image as 28x28 values 0-255, and its label.
    Data(DataArgs),
    /// Train a network, checkpointing after every epoch and on Ctrl-C (metrics.json, plot,
    /// model in --out), then export model-f32.tcnn and model-int8.tcnn.
    Train(TrainArgs),
    /// Write model-f32.tcnn and model-int8.tcnn from a trained checkpoint.
    Export(ExportArgs),
    /// Classify the test set with the tinycnn core (what a device computes): accuracy, per-class
    /// accuracy, confusion matrix, images per second; the matrix as a PNG when asked.
    Eval(EvalArgs),
    /// Classify pictures (PNG, JPEG, PGM) or test-set images; print the class and the
    /// probabilities.
    Predict(PredictArgs),
    /// Write test vectors (test images, labels, the int8 logits the core computes) for the
    /// firmware to check itself against.
    Fixture(FixtureArgs),
    /// Show a model file's layers (output shape, parameters, MACs, bytes, quantisation), the
    /// scratch RAM it needs, and whether the firmware with it fits common boards.
    Inspect(InspectArgs),
    /// Turn a fully-integer TensorFlow Lite model (.tflite) into a tinycnn int8 model that
    /// computes the same bytes.
    Import(ImportArgs),
    /// Measure speed.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Time training steps of a network on MNIST and break a step down by operation.
    ///
    /// Runs warm-up steps, then --batches steps exactly as `host train` runs them (wall and CPU
    /// time per step, batches per second), then --batches more steps that wait for every
    /// operation to finish and time it: the forward pass stage by stage, the backward pass of
    /// each stage, the loss, the gradient collection and the Adagrad step, each with its share
    /// of the step and the cores it kept busy (CPU time / wall time). Always on burn's Flex
    /// backend, starting from freshly initialised weights; the load average is printed with the
    /// figures, since other work on the machine changes them.
    #[command(verbatim_doc_comment)]
    Train(Box<BenchTrainArgs>),
    /// Time the classification of single test images by the tinycnn core (int8 and f32, one
    /// thread, image by image, as a device runs it) next to burn's inference of the same model
    /// and, when scripts/tflite-reference.sh has timed it, TensorFlow Lite's.
    ///
    /// The core runs twice: with the kernels built for this processor (AVX-512 with VNNI, or
    /// AVX2, where it has them) and with the portable ones a Cortex-M0 or M3 runs. burn is
    /// timed one image per call (latency) and with all images as one batch (throughput), on as
    /// many threads as its backend uses. Prints mean, median and 99th percentile milliseconds
    /// per image, images per second and cores busy, and how many results agree between the
    /// paths.
    #[command(verbatim_doc_comment)]
    Infer(BenchInferArgs),
}

#[derive(Debug, Args)]
struct ArchArg {
    #[arg(long = "arch", value_name = "LAYERS", long_help = arch_help(), value_parser = parse_arch)]
    architecture: Option<Architecture>,
}

#[derive(Debug, Args)]
struct BenchInferArgs {
    #[command(flatten)]
    data: DataDir,
    /// The f32 model file; burn runs its weights too.
    #[arg(long, value_name = "FILE", default_value = "data/model-f32.tcnn")]
    f32_model: PathBuf,
    /// The int8 model file of the same network.
    #[arg(long, value_name = "FILE", default_value = "data/model-int8.tcnn")]
    int8_model: PathBuf,
    /// Test images timed per path.
    #[arg(long, value_name = "N", default_value_t = bench_infer::DEFAULT_IMAGES,
          value_parser = whole_number(1, 10_000))]
    images: usize,
    /// Images classified first, unmeasured.
    #[arg(long, value_name = "N", default_value_t = bench_infer::DEFAULT_WARMUP)]
    warmup: usize,
    /// TensorFlow Lite's figures for the same network, shown beside the core's: what
    /// `bash scripts/tflite-reference.sh` writes (skipped when the file is missing).
    #[arg(long, value_name = "FILE", default_value = bench_infer::TFLITE_FIGURES)]
    tflite: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct BenchTrainArgs {
    #[command(flatten)]
    data: DataDir,
    #[command(flatten)]
    arch: ArchArg,
    /// Steps timed, and as many profiled, per path.
    #[arg(long, value_name = "N", default_value_t = bench_train::DEFAULT_BATCHES,
          value_parser = whole_number(1, usize::MAX))]
    batches: usize,
    /// Steps run first and not measured (the first steps allocate and fault in memory).
    #[arg(long, value_name = "N", default_value_t = bench_train::DEFAULT_WARMUP)]
    warmup: usize,
    /// Also measure burn's own conv2d/relu/max_pool2d/dropout ops, after the fused blocks in the
    /// same process, and print the ratio of their step times.
    #[arg(long)]
    compare_burn: bool,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CalibrationArg {
    /// Training images whose activations set the int8 ranges (the first N of the training set).
    #[arg(long = "calibration", value_name = "N", default_value_t = export::DEFAULT_CALIBRATION_IMAGES,
          value_parser = whole_number(1, usize::MAX))]
    images: usize,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    host export --checkpoint runs/latest            model-f32.tcnn, model-int8.tcnn\n  \
    host export --checkpoint runs/latest --tflite   ... and model-int8.tflite\n  \
    host export --tflite --model data/model-int8.tcnn   data/model-int8.tflite, from the int8 \
    model file alone")]
struct ExportArgs {
    /// Also write the int8 model as a TensorFlow Lite flatbuffer (model-int8.tflite) that
    /// TensorFlow Lite and TFLite Micro run: int8 input (a pixel p is p - 128), the int8 logits
    /// as the output, the same bytes as tinycnn computes.
    #[arg(long)]
    tflite: bool,
    /// With --tflite: convert this int8 model file instead of exporting a checkpoint (writes
    /// FILE's name with .tflite into --out, or beside FILE).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tflite",
        conflicts_with = "checkpoint"
    )]
    model: Option<PathBuf>,
    #[command(flatten)]
    data: DataDir,
    /// Trained model: a run directory of `host train`, its checkpoint.bin, or a model.bpk
    /// [default: runs/latest].
    #[arg(long, value_name = "PATH")]
    checkpoint: Option<PathBuf>,
    /// Directory for model-f32.tcnn and model-int8.tcnn [default: the checkpoint's directory].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The network of a bare model.bpk [default: the Keras MNIST tutorial's]; a checkpoint
    /// records its own.
    #[command(flatten)]
    arch: ArchArg,
    #[command(flatten)]
    calibration: CalibrationArg,
    /// Replace model files already in the output directory (by default they are never
    /// replaced).
    #[arg(long)]
    overwrite: bool,
}

#[derive(Debug, Args)]
struct ModelArg {
    /// A tinycnn model file, f32 or int8 (`host train` and `host export` write both).
    #[arg(long, value_name = "FILE", default_value = "data/model-int8.tcnn")]
    model: PathBuf,
}

#[derive(Debug, Args)]
struct EvalArgs {
    #[command(flatten)]
    data: DataDir,
    #[command(flatten)]
    model: ModelArg,
    /// Evaluate the first N test images only [default: all].
    #[arg(long, value_name = "N", value_parser = whole_number(1, usize::MAX))]
    limit: Option<usize>,
    /// Also draw the confusion matrix as a PNG heat map into FILE (the report is printed first;
    /// by default nothing is written).
    #[arg(long, value_name = "FILE")]
    confusion_png: Option<PathBuf>,
    /// Also write the report as eval.json, and the confusion matrix as confusion.png unless
    /// --confusion-png puts it elsewhere, into DIR (created if missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Replace those files if they exist (by default an existing file is never replaced).
    #[arg(long)]
    overwrite: bool,
    /// Threads to classify on [default: all cores]; 1 measures single-thread speed.
    #[arg(long, value_name = "N", value_parser = whole_number(1, usize::MAX))]
    threads: Option<usize>,
    /// Classify with the core's portable kernels, as a Cortex-M0 or M3 runs them, instead of
    /// the ones built for this processor (AVX-512 with VNNI, or AVX2, where it has them; the
    /// same int8 results).
    #[arg(long)]
    portable: bool,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PredictArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Pictures to classify: PNG (any bit depth, with or without alpha), JPEG, or PGM/PPM, up to
    /// 16384 pixels a side. For a network whose input is 28x28 grey (MNIST, Fashion-MNIST) each
    /// is prepared as MNIST's digits were: transparent pixels take the background's colour, a
    /// light border means dark ink on light paper, which is inverted, and the ink is cropped,
    /// scaled to fit 20x20 and placed in 28x28 with its centre of mass at the centre. Other
    /// networks (colour, other sizes) get the picture padded to a square with its background
    /// and resized, inverted only with --invert.
    #[arg(value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Take every picture as dark ink on light paper and invert it, whatever its border says.
    #[arg(long, conflicts_with = "no_invert")]
    invert: bool,
    /// Take every picture as light ink on dark paper, whatever its border says.
    #[arg(long)]
    no_invert: bool,
    /// Only pad to a square and resize, inverting only with --invert: for pictures already in
    /// MNIST's form (28x28, light ink on black).
    #[arg(long)]
    raw: bool,
    /// Print one JSON object per input, one a line, in order: "file" (or "test_image" and "label"),
    /// "class", "probability" (the class's), "probabilities" (all classes'), "warnings"; an input
    /// that failed has "error" instead of the class and probabilities.
    #[arg(long)]
    json: bool,
    /// Also classify test-set image N (repeat for several); needs the data directory.
    #[arg(long = "index", value_name = "N")]
    indices: Vec<usize>,
    #[command(flatten)]
    data: DataDir,
}

#[derive(Debug, Args)]
struct FixtureArgs {
    #[command(flatten)]
    data: DataDir,
    /// The model whose outputs the vectors record: int8 (checked byte for byte, as the
    /// firmware does) or f32 (checked by value, within 1e-4 of the largest output).
    #[arg(long, value_name = "FILE", default_value = "data/model-int8.tcnn")]
    model: PathBuf,
    /// Number of test images, taken from the start of the test set.
    #[arg(long, value_name = "N", default_value_t = fixture::DEFAULT_COUNT,
          value_parser = whole_number(1, usize::MAX))]
    count: usize,
    /// Output file (TCTV test vectors, see core/FORMAT.md) [default: the model's path with the
    /// extension .tctv, where the firmware looks for it].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace the output file if it exists (by default it is never replaced).
    #[arg(long)]
    overwrite: bool,
    /// Random pictures of the model's input shape instead of MNIST test images, for networks
    /// MNIST does not fit (each labelled with the class the core computes).
    #[arg(long)]
    random: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "What it reads: one graph from input to output made of CONV_2D (kernels up \
    to 16x16, stride 1 or 2, SAME or VALID, fused ReLU, ReLU6 or none), DEPTHWISE_CONV_2D (the \
    same options, any depth multiplier up to 8), MAX_POOL_2D and AVERAGE_POOL_2D (any window \
    and stride), ADD closing a residual block (a tensor read by two branches that meet at the \
    ADD: one branch the tensor itself or a 1x1 CONV_2D of it), RESHAPE (the flatten), \
    FULLY_CONNECTED and a final SOFTMAX, with the QUANTIZE and DEQUANTIZE a converter puts at \
    the edges; int8 activations with any quantisation, symmetric int8 weights (per channel or \
    per tensor), int32 biases: what TensorFlow's converter writes with full-integer \
    quantisation. Anything else is refused, naming the operator and why. The model computes \
    TensorFlow Lite Micro's bytes (format version 3), softmax included.\n\n\
    Example:\n  host import keras-mnist.tflite -o keras-mnist.tcnn"
)]
struct ImportArgs {
    /// A TensorFlow Lite model file (.tflite).
    #[arg(value_name = "MODEL.tflite")]
    input: PathBuf,
    /// Where to write the tinycnn int8 model [default: the input's name with .tcnn].
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace the output file if it exists (by default it is never replaced).
    #[arg(long)]
    overwrite: bool,
    /// The model's output is values (an autoencoder's reconstruction, a regression), not class
    /// scores. Without it, a graph that ends in a dense layer without activation (and maybe a
    /// softmax) is read as a classifier, any other as values.
    #[arg(long)]
    values: bool,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// A tinycnn model file, f32 or int8.
    #[arg(value_name = "MODEL")]
    model: PathBuf,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DataDir {
    /// Directory of the four MNIST-format IDX files (train-images-idx3-ubyte,
    /// train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or
    /// .gz). Any set in that format works: its classes are its labels, at least ten, up to 256
    /// (EMNIST's letters: 27), and the network's last layer must give as many. Files it lacks
    /// are downloaded into it, verified, from the --dataset's mirrors [default: data/mnist, or
    /// data/fashion-mnist with --dataset fashion-mnist].
    #[arg(long = "data", value_name = "DIR", env = mnist::DATA_DIR_ENV)]
    dir: Option<PathBuf>,
    /// The data set to download when the data directory lacks it.
    #[arg(long, value_enum, value_name = "NAME", default_value_t = Dataset::Mnist)]
    dataset: Dataset,
    /// A mirror to download from instead of the built-in ones: a base URL the file names
    /// (NAME.gz) are appended to. Repeat for several, tried in order; the environment variable
    /// takes a comma-separated list.
    #[arg(
        long = "mirror",
        value_name = "URL",
        env = "TINYCNN_MIRRORS",
        value_delimiter = ','
    )]
    mirrors: Vec<String>,
    /// Never download: fail when the data directory lacks the data set (for offline machines
    /// and CI; the environment variable does the same when set to anything but 0 or false).
    #[arg(long, env = "TINYCNN_NO_DOWNLOAD", value_parser = clap::builder::FalseyValueParser::new())]
    no_download: bool,
    /// Seconds a download may wait for the next bytes before it is abandoned and tried again.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = whole_number(1, 3600))]
    stall_timeout: usize,
}

impl DataDir {
    /// The data directory, as given or by default.
    fn path(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(self.dataset.default_dir()))
    }

    /// The data directory, holding the data set: what it lacked is downloaded first (with a
    /// progress bar unless `quiet`).
    fn ready(&self, quiet: bool) -> anyhow::Result<PathBuf> {
        let dir = self.path();
        let mut fetch = FetchOptions::for_dataset(self.dataset);
        if !self.mirrors.is_empty() {
            fetch.mirrors.clone_from(&self.mirrors);
        }
        fetch.stall_timeout = Duration::from_secs(self.stall_timeout as u64);
        let fetch = (!self.no_download).then_some(&fetch);
        let downloaded = if quiet {
            data::ensure(&dir, self.dataset, fetch, &mut Silent)?
        } else {
            data::ensure(&dir, self.dataset, fetch, &mut BarProgress::default())?
        };
        if !downloaded.is_empty() && !quiet {
            eprintln!(
                "{}: {} of the {} files downloaded and verified",
                dir.display(),
                downloaded.len(),
                self.dataset
            );
        }
        Ok(dir)
    }
}

#[derive(Debug, Args)]
struct DataArgs {
    #[command(flatten)]
    data: DataDir,
    /// Only make sure the data set is there (download and verify what the directory lacks),
    /// then say what it holds.
    #[arg(long)]
    download: bool,
    /// Training image to print (0-based).
    #[arg(long, value_name = "N", default_value_t = 0)]
    index: usize,
}

#[derive(Debug, Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataDir,
    /// The network [default: the Keras MNIST tutorial's; with --resume: the checkpoint's].
    #[command(flatten)]
    arch: ArchArg,
    /// Total number of epochs [default: 20; with --resume: the checkpoint's, and a larger value
    /// trains further].
    #[arg(long, value_name = "N", value_parser = whole_number(1, usize::MAX))]
    epochs: Option<usize>,
    /// Images per batch [default: 128].
    #[arg(long, value_name = "N", value_parser = whole_number(1, usize::MAX))]
    batch_size: Option<usize>,
    /// Adagrad learning rate [default: 0.01, accumulators starting at 0, as the Keras MNIST
    /// tutorial's Keras sets them].
    #[arg(long, value_name = "RATE")]
    lr: Option<f64>,
    /// Adagrad epsilon, added inside the square root as Keras does [default: 1e-6, which reaches
    /// 98% after one epoch where Keras's 1e-7 reaches 97.7%; with --resume: the checkpoint's].
    #[arg(long, value_name = "EPS")]
    adagrad_epsilon: Option<f32>,
    /// Seed of the initial weights, the shuffling and the dropout masks [default: 42]; the same
    /// seed gives the same run.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// How the initial weights are drawn, biases starting at zero [default: glorot-uniform; with
    /// --resume: the checkpoint's].
    #[arg(long, value_enum, value_name = "SCHEME", hide_default_value = true)]
    init: Option<InitScheme>,
    /// Train on the first N training images only, for quick runs [default: all].
    #[arg(long, value_name = "N", value_parser = whole_number(1, usize::MAX))]
    limit: Option<usize>,
    /// Evaluate on the first N test images only, for quick runs [default: all].
    #[arg(long, value_name = "N", value_parser = whole_number(1, usize::MAX))]
    test_limit: Option<usize>,
    /// Output directory: checkpoint.bin (weights, optimizer state, progress), model.bpk (burn
    /// record of the weights), metrics.json and training.png, all rewritten atomically after
    /// every epoch and on Ctrl-C; model-f32.tcnn and model-int8.tcnn once the last epoch is
    /// done. Checked for writing before training starts.
    #[arg(long, value_name = "DIR", default_value = "runs/latest")]
    out: PathBuf,
    /// Continue the run in --out from the batch its checkpoint was taken after, with the data
    /// directory, settings and optimizer state it records (options given must agree; only
    /// --epochs may grow); the result is bit for bit that of a run never interrupted.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Replace the run or any file of one in --out, removing all of the earlier run's files
    /// (by default nothing is ever replaced).
    #[arg(long)]
    overwrite: bool,
    /// Also checkpoint part-way through an epoch when this many minutes have passed since the
    /// last checkpoint, so that a crash or a kill loses at most that much training (0: only
    /// after each epoch and on Ctrl-C).
    #[arg(long, value_name = "MINUTES", default_value_t = 10.0, value_parser = minutes)]
    checkpoint_minutes: f64,
    /// burn CPU backend. flex runs the convolution blocks as fused ops (about 35 ms per batch
    /// of 128 on 2 cores, 21 s per epoch for the Keras MNIST tutorial's network). ndarray is
    /// deprecated in burn 0.22 and runs burn's own ops, the fused ones being Flex-only: about
    /// 10 s per batch, over an hour per epoch; it needs the `ndarray` cargo feature (on by
    /// default).
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    backend: BackendKind,
    /// Print nothing but errors.
    #[arg(long, conflicts_with = "json")]
    quiet: bool,
    /// Print JSON lines (events info, epoch_start, progress, evaluate, epoch) instead of the bar.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    calibration: CalibrationArg,
}

/// `--arch`: the text form, or `@FILE`; an error shows the word at fault.
fn parse_arch(value: &str) -> Result<Architecture, String> {
    let (text, source) = match value.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|error| format!("{path}: cannot read: {error}"))?,
            Some(path),
        ),
        None => (value.to_string(), None),
    };
    let default_input = Architecture::REFERENCE.input();
    tinycnn::text::parse(&text, default_input).map_err(|error| {
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
    })
}

/// A value parser for a whole number from `min` to `max`, whose errors say what is accepted
/// (clap prints them after the option: `invalid value '0' for '--limit <N>': must be at least
/// 1`).
fn whole_number(
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
fn minutes(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err("must be a number of minutes, 0 or more (0: no timed checkpoints)".into()),
    }
}

fn main() -> ExitCode {
    tinycnn_host::allocator::tune_for_training();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(args) => data_command(&args),
        Command::Train(args) => train_command(args),
        Command::Export(args) => export_command(&args).map(|()| ExitCode::SUCCESS),
        Command::Eval(args) => eval_command(&args).map(|()| ExitCode::SUCCESS),
        Command::Predict(args) => predict_command(&args),
        Command::Fixture(args) => fixture_command(&args).map(|()| ExitCode::SUCCESS),
        Command::Inspect(args) => inspect_command(&args).map(|()| ExitCode::SUCCESS),
        Command::Import(args) => import_command(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Train(args)) => {
            bench_train_command(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Infer(args)) => {
            bench_infer_command(&args).map(|()| ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

/// Prints a text report.
fn print_report(report: anyhow::Result<String>) -> anyhow::Result<ExitCode> {
    emit(report?);
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to standard output. A closed pipe (`host eval | head -1`) ends the program
/// quietly, as it does other command-line tools, instead of with a panic.
fn emit(text: impl std::fmt::Display) {
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

fn train_command(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let quiet = args.quiet || args.json;
    let bar = BarReporter::default();
    let notices = bar.notices();
    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if handler_stop.swap(true, Ordering::SeqCst) {
            notices.print("second Ctrl-C: exiting now; the last checkpoint is intact");
            std::process::exit(i32::from(INTERRUPTED));
        }
        if !quiet {
            notices.print(
                "Ctrl-C: finishing the batch in training, then saving a checkpoint (Ctrl-C again \
                 exits at once)",
            );
        }
    })
    .context("cannot install the Ctrl-C handler")?;

    // Before any download: a network the trainer cannot build is refused at once.
    if let Some(architecture) = &args.arch.architecture {
        tinycnn_host::train::model::check_trainable(architecture)?;
    }
    // A resumed run reads the data directory its checkpoint records unless told otherwise.
    let data_dir = if args.resume && args.data.dir.is_none() {
        None
    } else {
        Some(args.data.ready(quiet)?)
    };
    let options = TrainOptions {
        settings: SettingsArgs {
            architecture: args.arch.architecture,
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate: args.lr,
            seed: args.seed,
            init: args.init,
            adagrad_epsilon: args.adagrad_epsilon,
            limit: args.limit,
            test_limit: args.test_limit,
        },
        backend: args.backend,
        data_dir,
        out_dir: args.out,
        resume: args.resume,
        overwrite: args.overwrite,
        checkpoint_interval: (args.checkpoint_minutes > 0.0)
            .then(|| Duration::from_secs_f64(args.checkpoint_minutes * 60.0)),
        command: command_line(),
        stop,
    };
    let mut reporter: Box<dyn Reporter> = if args.quiet {
        Box::new(QuietReporter)
    } else if args.json {
        Box::new(JsonReporter::default())
    } else {
        Box::new(bar)
    };

    match train::run(&options, reporter.as_mut())? {
        TrainOutcome::Finished(run) => {
            // Export of the tinycnn model files happens here, once every epoch is done.
            let written = export::export_trained_model(&run, args.calibration.images)?;
            for path in written {
                reporter.info(&format!("wrote {}", path.display()));
            }
            Ok(ExitCode::SUCCESS)
        }
        TrainOutcome::Interrupted {
            completed_epochs,
            epoch_in_progress,
            checkpoint,
        } => {
            let out = options.out_dir.display();
            match (checkpoint, epoch_in_progress) {
                (Some(checkpoint), Some(progress)) => eprintln!(
                    "interrupted: {} holds epoch {} after {} of its batches ({} images); \
                     continue with: host train --resume --out {out}",
                    checkpoint.display(),
                    progress.epoch,
                    progress.batches,
                    progress.images
                ),
                (Some(checkpoint), None) => eprintln!(
                    "interrupted: {} holds the run after epoch {completed_epochs}; continue \
                     with: host train --resume --out {out}",
                    checkpoint.display()
                ),
                (None, _) => eprintln!("interrupted before any batch was trained; nothing to save"),
            }
            Ok(ExitCode::from(INTERRUPTED))
        }
    }
}

fn data_command(args: &DataArgs) -> anyhow::Result<ExitCode> {
    let dir = args.data.ready(false)?;
    if args.download {
        emit(format!("{}\n", Mnist::load(&dir)?.describe()));
        return Ok(ExitCode::SUCCESS);
    }
    print_report(data::show(&dir, args.index))
}

fn export_command(args: &ExportArgs) -> anyhow::Result<()> {
    if let Some(model) = &args.model {
        let written = tflite::export_file(model, args.out.as_deref(), args.overwrite)?;
        emit(format!("wrote {}\n", written.display()));
        return Ok(());
    }
    let architecture = args.arch.architecture.unwrap_or(Architecture::REFERENCE);
    let written = export::run(&export::ExportOptions {
        checkpoint: args
            .checkpoint
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs/latest")),
        architecture,
        data_dir: args.data.ready(false)?,
        out: args.out.clone(),
        calibration_images: args.calibration.images,
        overwrite: args.overwrite,
        tflite: args.tflite,
    })?;
    for path in written {
        emit(format!("wrote {}\n", path.display()));
    }
    Ok(())
}

fn import_command(args: &ImportArgs) -> anyhow::Result<()> {
    let output_kind = args.values.then_some(tinycnn::arch::OutputKind::Values);
    let report = tflite::import_file(
        &args.input,
        args.output.as_deref(),
        args.overwrite,
        output_kind,
    )?;
    let imported = &report.imported;
    let mut text = format!("{}: {}\n", args.input.display(), imported.architecture);
    if !imported.left_out.is_empty() {
        text.push_str(&format!(
            "left out: {} (the model outputs tensor {})\n",
            imported.left_out.join(", "),
            imported.output_tensor
        ));
    }
    text.push_str(&format!(
        "wrote {} ({} bytes; the .tflite has {})\n",
        report.written.display(),
        report.bytes,
        report.tflite_bytes
    ));
    emit(text);
    Ok(())
}

fn eval_command(args: &EvalArgs) -> anyhow::Result<()> {
    let report = eval::run(&eval::EvalOptions {
        model: args.model.model.clone(),
        data_dir: args.data.ready(args.json)?,
        limit: args.limit,
        confusion_png: args.confusion_png.clone(),
        out: args.out.clone(),
        overwrite: args.overwrite,
        threads: args.threads.unwrap_or_else(eval::available_threads),
        kernels: if args.portable {
            eval::Kernels::Portable
        } else {
            eval::Kernels::Fast
        },
    })?;
    // The report comes first, so that a file that cannot be written loses nothing of it.
    if args.json {
        emit(format!("{}\n", report.to_json()));
    } else {
        emit(report.evaluation.report());
    }
    for path in report.write_files()? {
        if args.json {
            eprintln!("wrote {}", path.display());
        } else {
            emit(format!("wrote {}\n", path.display()));
        }
    }
    Ok(())
}

/// Every input's result or error; exit status 1 when any failed.
fn predict_command(args: &PredictArgs) -> anyhow::Result<ExitCode> {
    let polarity = if args.invert {
        predict::Polarity::DarkInk
    } else if args.no_invert {
        predict::Polarity::LightInk
    } else {
        predict::Polarity::Auto
    };
    let predictions = predict::run(&predict::PredictOptions {
        model: args.model.model.clone(),
        pictures: args.images.clone(),
        preparation: predict::Preparation {
            polarity,
            raw: args.raw,
        },
        indices: args.indices.clone(),
        // Only test-set images need the data set.
        data_dir: if args.indices.is_empty() {
            args.data.path()
        } else {
            args.data.ready(args.json)?
        },
    })?;
    let mut failed = false;
    for prediction in &predictions {
        for warning in &prediction.warnings {
            eprintln!("warning: {warning}");
        }
        if let Err(error) = &prediction.outcome {
            eprintln!("error: {error}");
            failed = true;
        }
        if args.json {
            emit(format!("{}\n", prediction.to_json()));
        } else if let Some(line) = prediction.line() {
            emit(format!("{line}\n"));
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn fixture_command(args: &FixtureArgs) -> anyhow::Result<()> {
    let report = fixture::run(&fixture::FixtureOptions {
        model: args.model.clone(),
        data_dir: if args.random {
            None
        } else {
            Some(args.data.ready(false)?)
        },
        count: args.count,
        out: args.out.clone(),
        overwrite: args.overwrite,
    })?;
    let checked = match report.correct {
        Some(correct) => format!("{correct} classified correctly by"),
        None => "the output values of".to_string(),
    };
    emit(format!(
        "wrote {}: {} test vectors ({} bytes), {checked} {}\n",
        report.path.display(),
        report.vectors,
        report.bytes,
        args.model.display()
    ));
    Ok(())
}

fn inspect_command(args: &InspectArgs) -> anyhow::Result<()> {
    let inspection = inspect::run(&args.model)?;
    if args.json {
        emit(format!("{}\n", serde_json::to_string(&inspection)?));
    } else {
        emit(inspection.to_text());
    }
    Ok(())
}

fn bench_train_command(args: &BenchTrainArgs) -> anyhow::Result<()> {
    let data = Mnist::load(&args.data.ready(args.json)?)?;
    let options = bench_train::TrainBenchOptions {
        architecture: args.arch.architecture.unwrap_or(Architecture::REFERENCE),
        batches: args.batches,
        warmup: args.warmup,
        batch_size: train::DEFAULT_BATCH_SIZE,
        learning_rate: train::DEFAULT_LEARNING_RATE,
        seed: train::DEFAULT_SEED,
        init: InitScheme::default(),
        compare_burn: args.compare_burn,
    };
    let report = bench_train::run_train_bench(&options, &data, &mut |line| eprintln!("{line}"))?;
    if args.json {
        emit(format!("{}\n", serde_json::to_string(&report)?));
    } else {
        emit(report.to_text());
    }
    Ok(())
}

fn bench_infer_command(args: &BenchInferArgs) -> anyhow::Result<()> {
    let f32_file = deploy::read_model(&args.f32_model)?;
    let int8_file = deploy::read_model(&args.int8_model)?;
    let data = Mnist::load(&args.data.ready(args.json)?)?;
    let tflite = bench_infer::TfliteFigures::read(&args.tflite)?;
    let mut report = bench_infer::run_infer_bench(
        &f32_file,
        &int8_file,
        &data.test.pixels,
        args.images,
        args.warmup,
    )?;
    report.tflite = tflite;
    if args.json {
        emit(format!("{}\n", serde_json::to_string(&report)?));
    } else {
        emit(report.to_text());
    }
    Ok(())
}

/// The command line as typed, for the metrics: program name without its directory.
fn command_line() -> String {
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
