//! `host train`: trains a network, checkpointing as it goes, then exports its model files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use tinycnn_host::export;
use tinycnn_host::train::backend::BackendKind;
use tinycnn_host::train::model::InitScheme;
use tinycnn_host::train::progress::{BarReporter, JsonReporter, QuietReporter, Reporter};
use tinycnn_host::train::{self, SettingsArgs, TrainOptions, TrainOutcome};

use super::{ArchArg, CalibrationArg, DataDir, command_line, minutes, whole_number};

/// Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED: u8 = 130;

#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    data: DataDir,
    /// The network [default: the Keras MNIST tutorial's, taking the data's pictures and ending in
    /// as many classes as the data has; with --resume: the checkpoint's]. A description that
    /// does not start with input: takes the data's picture size and channels. `:bn` after a
    /// conv, dw or dense layer batch-normalises it (`conv3x3:12:s2:bn dw3x3:bn conv1x1:32:bn`).
    #[command(flatten)]
    arch: ArchArg,
    /// Total number of epochs [default: 20; with --resume: the checkpoint's, and a larger value
    /// trains further].
    #[arg(long, value_name = "N", value_parser = whole_number(1, usize::MAX))]
    epochs: Option<usize>,
    /// Images per batch [default: 128].
    #[arg(long, value_name = "N", value_parser = whole_number(1, usize::MAX))]
    batch_size: Option<usize>,
    /// The optimizer, computed as Keras 3 computes it: adagrad (accumulators starting at 0, as
    /// the Keras MNIST tutorial's Keras sets them) or adam (Keras's beta_1 0.9, beta_2 0.999,
    /// epsilon 1e-7) [default: adagrad; with --resume: the checkpoint's].
    #[arg(long, value_enum, value_name = "NAME", hide_default_value = true)]
    optimizer: Option<tinycnn_host::train::state::OptimizerKind>,
    /// Learning rate, where the schedule starts [default: 0.01 for adagrad, 0.001 for adam, as
    /// in Keras; with --resume: the checkpoint's].
    #[arg(long, value_name = "RATE")]
    lr: Option<f64>,
    /// How the learning rate changes over the run: constant; step:EPOCHS:FACTOR, the rate
    /// times FACTOR after every EPOCHS epochs (e.g. step:5:0.5); or cosine, half a cosine from
    /// --lr down to 0 over every step of the run (Keras's CosineDecay) [default: constant;
    /// with --resume: the checkpoint's].
    #[arg(long, value_name = "SCHEDULE")]
    lr_schedule: Option<tinycnn_host::train::schedule::Schedule>,
    /// Weight decay as Keras 3 applies it for every optimizer: before each step every weight
    /// and bias loses this fraction of itself times the learning rate (decoupled from the
    /// gradient, as in AdamW; e.g. 0.004, Keras's AdamW default) [default: 0, none; with
    /// --resume: the checkpoint's].
    #[arg(long, value_name = "FRACTION")]
    weight_decay: Option<f64>,
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
    /// Hold out this fraction of the training pictures (drawn with --seed) as a validation set:
    /// each epoch is then evaluated on it, and the test set only once, after the last epoch,
    /// for the final report. A folder set's val/ folder is its validation set without this
    /// option [default: none; with --resume: the checkpoint's].
    #[arg(long, value_name = "FRACTION")]
    validation_split: Option<f64>,
    /// Which epoch's weights become the model files: last, or best (the epoch with the best
    /// validation accuracy, the earliest of equals; needs a validation set; its weights are
    /// kept in model-best.bpk) [default: last; with --resume: the checkpoint's].
    #[arg(long, value_enum, value_name = "WHICH", hide_default_value = true)]
    keep: Option<tinycnn_host::train::state::Keep>,
    /// Vary each training picture each time it is seen, as Keras's RandomTranslation,
    /// RandomRotation, RandomZoom and RandomFlip layers do: any of shift=PIXELS (a whole
    /// number of pixels each way, up to 64), rotate=DEGREES (up to 180), zoom=FRACTION (scaled
    /// by 1 - FRACTION to 1 + FRACTION) and flip (mirrored left to right half the time; wrong
    /// for digits), comma-separated, e.g. shift=2,rotate=10,zoom=0.1. One affine map about the
    /// centre, sampled bilinearly, black outside the picture. Drawn from the seed, so a resumed
    /// run varies each picture as an uninterrupted one; validation and test pictures are never
    /// varied [default: none; with --resume: the checkpoint's].
    #[arg(long, value_name = "WORDS")]
    augment: Option<tinycnn_host::train::augment::Augment>,
    /// The FFT of a keyword set's audio front end, which the model files record (format version
    /// 6 for 16, 5 for 32) and a device computes: 16, 16-bit data, half the instructions on a
    /// Cortex-M4, features within about 70 dB of the frame's loudest bin (quieter bands read
    /// higher); or 32, 32-bit data, within one int8 step of the floating-point features
    /// everywhere, for a network that must match features computed in floating point (MLPerf
    /// Tiny's) [default: 16; with --resume: the checkpoint's].
    #[arg(long, value_name = "BITS",
          value_parser = PossibleValuesParser::new(["16", "32"])
              .map(|bits| if bits == "16" { 16u8 } else { 32 }))]
    fft_bits: Option<u8>,
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
    /// 10 s per batch, over an hour per epoch; it needs a build with the `ndarray` cargo
    /// feature (`cargo build --release -p tinycnn-host --features ndarray`).
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

pub(crate) fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
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
    if let Some(network) = args.arch.network() {
        tinycnn_host::train::model::check_trainable(&network.architecture)?;
    }
    // A resumed run reads the data directory its checkpoint records unless told otherwise.
    let data_dir = if args.resume && args.data.dir.is_none() {
        None
    } else {
        Some(args.data.ready(quiet)?)
    };
    let options = TrainOptions {
        settings: SettingsArgs {
            architecture: args.arch.architecture.map(|given| given.text),
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate: args.lr,
            seed: args.seed,
            init: args.init,
            adagrad_epsilon: args.adagrad_epsilon,
            optimizer: args.optimizer,
            schedule: args.lr_schedule,
            weight_decay: args.weight_decay,
            limit: args.limit,
            test_limit: args.test_limit,
            fit: args.data.fit,
            skip_damaged: args.data.skip_damaged,
            validation_split: args.validation_split,
            keep: args.keep,
            augment: args.augment,
            fft_bits: args.fft_bits,
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
        progress_bars: !quiet,
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
