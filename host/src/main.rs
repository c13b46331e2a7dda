//! `host`: the desktop command line of tinycnn.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use tinycnn_host::backend::BackendKind;
use tinycnn_host::bench::{self, TrainBenchOptions};
use tinycnn_host::bench_infer;
use tinycnn_host::export;
use tinycnn_host::mnist::{self, IMAGE_SIDE, Mnist};
use tinycnn_host::model::InitScheme;
use tinycnn_host::progress::{BarReporter, JsonReporter, QuietReporter, Reporter};
use tinycnn_host::train::{self, SettingsArgs, TrainOptions, TrainOutcome};

/// Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED: u8 = 130;

#[derive(Debug, Parser)]
#[command(
    name = "host",
    version,
    about = "Train the tinycnn MNIST network with burn and inspect its data",
    long_about = "Train the tinycnn MNIST network with burn on the CPU and inspect its data.\n\n\
                  Nothing is downloaded: the data is read from a local directory of MNIST-format \
                  IDX files (--data or MNIST_DIR)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the shapes of the data set, one training image as 28x28 values 0-255, and its label.
    Data(DataArgs),
    /// Train the network, checkpointing after every epoch (metrics.json, plot, model in --out),
    /// then export model-f32.tcnn and model-int8.tcnn.
    Train(TrainArgs),
    /// Write model-f32.tcnn and model-int8.tcnn from a trained checkpoint.
    Export(ExportArgs),
    /// Classify the test set with the tinycnn core (what a device computes): accuracy, per-class
    /// accuracy, confusion matrix (printed and as a PNG), images per second.
    Eval(EvalArgs),
    /// Classify pictures (PNG, JPEG, PGM) or test-set images; print the digit and the ten
    /// probabilities.
    Predict(PredictArgs),
    /// Write test vectors (test images, labels, the int8 logits the core computes) for the
    /// firmware to check itself against.
    Fixture(FixtureArgs),
    /// Measure speed.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Time training steps of the network on MNIST and break a step down by operation.
    ///
    /// Runs warm-up steps, then --batches steps exactly as `host train` runs them (wall and CPU
    /// time per step, batches per second), then --batches more steps that wait for every
    /// operation to finish and time it: the forward pass stage by stage, the backward pass of
    /// each stage, the loss, the gradient collection and the Adagrad step, each with its share
    /// of the step and the cores it kept busy (CPU time / wall time). Always on burn's Flex
    /// backend, starting from freshly initialised weights; the load average is printed with the
    /// figures, since other work on the machine changes them.
    #[command(verbatim_doc_comment)]
    Train(BenchTrainArgs),
    /// Time the classification of single test images by the tinycnn core (int8 and f32, one
    /// thread, image by image, as a device runs it) next to burn's inference of the same model.
    ///
    /// burn is timed one image per call (latency) and with all images as one batch
    /// (throughput), on as many threads as its backend uses. Prints mean, median and 99th
    /// percentile milliseconds per image, images per second and cores busy, and how many digits
    /// agree between the paths.
    #[command(verbatim_doc_comment)]
    Infer(BenchInferArgs),
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
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    images: usize,
    /// Images classified first, unmeasured.
    #[arg(long, value_name = "N", default_value_t = bench_infer::DEFAULT_WARMUP)]
    warmup: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct BenchTrainArgs {
    #[command(flatten)]
    data: DataDir,
    /// Steps timed, and as many profiled, per path.
    #[arg(long, value_name = "N", default_value_t = bench::DEFAULT_BATCHES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batches: usize,
    /// Steps run first and not measured (the first steps allocate and fault in memory).
    #[arg(long, value_name = "N", default_value_t = bench::DEFAULT_WARMUP)]
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
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    images: usize,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    data: DataDir,
    /// Trained model: a run directory of `host train`, its checkpoint.bin, or a model.bpk.
    #[arg(long, value_name = "PATH", default_value = "runs/latest")]
    checkpoint: PathBuf,
    /// Directory for model-f32.tcnn and model-int8.tcnn [default: the checkpoint's directory].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    calibration: CalibrationArg,
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
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Where to write the confusion matrix image [default: the model file name with .confusion.png appended].
    #[arg(long, value_name = "FILE")]
    confusion_png: Option<PathBuf>,
    /// Threads to classify on [default: all cores]; 1 measures single-thread speed.
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PredictArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Pictures to classify: PNG (8- or 16-bit, with or without alpha), JPEG, or PGM/PPM. Any
    /// size; converted to grey, padded to a square and resized to 28x28. The network expects a
    /// light digit on a dark background, as in MNIST; use --invert for dark ink on light paper.
    #[arg(value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Invert the pictures' grey levels first (for dark digits on a light background).
    #[arg(long)]
    invert: bool,
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
    /// The int8 model whose logits the vectors record.
    #[arg(long, value_name = "FILE", default_value = "data/model-int8.tcnn")]
    model: PathBuf,
    /// Number of test images, taken from the start of the test set.
    #[arg(long, value_name = "N", default_value_t = 100)]
    count: usize,
    /// Output file (TCTV test vectors, see core/FORMAT.md).
    #[arg(long, value_name = "FILE", default_value = "data/digits.tctv")]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct DataDir {
    /// Directory of the four MNIST-format IDX files (train-images-idx3-ubyte,
    /// train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or .gz).
    /// Nothing is downloaded; point this at a local copy, e.g. ../shared/data/mnist.
    /// Fashion-MNIST works too.
    #[arg(
        long = "data",
        value_name = "DIR",
        env = mnist::DATA_DIR_ENV,
        default_value = mnist::DEFAULT_DATA_DIR
    )]
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct DataArgs {
    #[command(flatten)]
    data: DataDir,
    /// Training image to print (0-based).
    #[arg(long, value_name = "N", default_value_t = 0)]
    index: usize,
}

#[derive(Debug, Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataDir,
    /// Total number of epochs [default: 20; with --resume: the checkpoint's, and a larger value
    /// trains further].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    epochs: Option<u32>,
    /// Images per batch [default: 128].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: Option<u32>,
    /// Adagrad learning rate [default: 0.01, accumulators starting at 0, as in the tutorial's
    /// Keras].
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
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    limit: Option<u32>,
    /// Evaluate on the first N test images only, for quick runs [default: all].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    test_limit: Option<u32>,
    /// Output directory: checkpoint.bin (weights, optimizer state, progress), model.bpk (burn
    /// record of the weights), metrics.json and training.png, all rewritten atomically after
    /// every epoch. Checked for writing before training starts.
    #[arg(long, value_name = "DIR", default_value = "runs/latest")]
    out: PathBuf,
    /// Continue the run in --out from its last completed epoch, with its settings and optimizer
    /// state; the result is the same as a run that was never interrupted.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Replace a run already in --out (by default a run is never overwritten).
    #[arg(long)]
    overwrite: bool,
    /// burn CPU backend. flex runs the convolution blocks as fused ops (about 0.06 s per batch of
    /// 128 on 2 cores, half a minute per epoch). ndarray is deprecated in burn 0.22 and runs
    /// burn's own ops, the fused ones being Flex-only: about 10 s per batch, over an hour per
    /// epoch; it needs the `ndarray` cargo feature (on by default).
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

fn main() -> ExitCode {
    tinycnn_host::allocator::tune_for_training();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(args) => show_data(&args).map(|()| ExitCode::SUCCESS),
        Command::Train(args) => train_command(args),
        Command::Export(args) => export_command(&args).map(|()| ExitCode::SUCCESS),
        Command::Eval(args) => eval_command(&args).map(|()| ExitCode::SUCCESS),
        Command::Predict(args) => predict_command(&args).map(|()| ExitCode::SUCCESS),
        Command::Fixture(args) => fixture_command(&args).map(|()| ExitCode::SUCCESS),
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

fn show_data(args: &DataArgs) -> anyhow::Result<()> {
    let data = Mnist::load(&args.data.dir)?;
    println!("{}", data.describe());
    for (name, split) in [("train", &data.train), ("test", &data.test)] {
        println!(
            "{name} images: {}x{IMAGE_SIDE}x{IMAGE_SIDE}, {name} labels: {}",
            split.len(),
            split.labels.len()
        );
    }
    let Some(image) = data.train.image(args.index) else {
        bail!(
            "--index {} is past the last training image ({})",
            args.index,
            data.train.len() - 1
        );
    };
    println!("training image {}:", args.index);
    print!("{}", mnist::format_image(image));
    println!("label: {}", data.train.labels[args.index]);
    Ok(())
}

fn train_command(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if handler_stop.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting now; the last checkpoint is intact");
            std::process::exit(i32::from(INTERRUPTED));
        }
        eprintln!(
            "\nCtrl-C: abandoning the epoch in training (one being evaluated is still saved); \
             press Ctrl-C again to exit at once"
        );
    })
    .context("cannot install the Ctrl-C handler")?;

    let args_calibration = args.calibration.images;
    let options = TrainOptions {
        settings: SettingsArgs {
            epochs: args.epochs.map(to_usize),
            batch_size: args.batch_size.map(to_usize),
            learning_rate: args.lr,
            seed: args.seed,
            init: args.init,
            adagrad_epsilon: args.adagrad_epsilon,
            limit: args.limit.map(to_usize),
            test_limit: args.test_limit.map(to_usize),
        },
        backend: args.backend,
        data_dir: args.data.dir,
        out_dir: args.out,
        resume: args.resume,
        overwrite: args.overwrite,
        command: command_line(),
        stop,
    };
    let mut reporter: Box<dyn Reporter> = if args.quiet {
        Box::new(QuietReporter)
    } else if args.json {
        Box::new(JsonReporter::default())
    } else {
        Box::new(BarReporter::default())
    };

    match train::run(&options, reporter.as_mut())? {
        TrainOutcome::Finished(run) => {
            // Export of the tinycnn model files happens here, once every epoch is done.
            let written = export::export_trained_model(&run, args_calibration)?;
            for path in written {
                reporter.info(&format!("wrote {}", path.display()));
            }
            Ok(ExitCode::SUCCESS)
        }
        TrainOutcome::Interrupted {
            completed_epochs,
            checkpoint,
        } => {
            match checkpoint {
                Some(checkpoint) => eprintln!(
                    "interrupted: the epoch in progress was abandoned; {} holds epoch \
                     {completed_epochs}, intact; continue with --resume --out {}",
                    checkpoint.display(),
                    options.out_dir.display()
                ),
                None => eprintln!("interrupted before the first epoch completed; nothing saved"),
            }
            Ok(ExitCode::from(INTERRUPTED))
        }
    }
}

fn export_command(args: &ExportArgs) -> anyhow::Result<()> {
    let device = tinycnn_host::backend::BackendKind::Flex.device()?;
    let model = tinycnn_host::checkpoint::load_trained_model(&args.checkpoint, &device)?;
    let data = Mnist::load(&args.data.dir)?;
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None if args.checkpoint.is_dir() => args.checkpoint.clone(),
        None => args
            .checkpoint
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    tinycnn_host::atomic::check_writable(&out, 4 << 20)
        .with_context(|| format!("{}: cannot write the model files there", out.display()))?;
    let exported = export::export(&model.weights(), &data.train, args.calibration.images)?;
    for path in export::write_files(&out, &exported)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Reads and validates a model file, naming the file in any error.
fn read_model(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: cannot read the model", path.display()))?;
    tinycnn::Model::from_bytes(&bytes)
        .with_context(|| format!("{}: not a valid model", path.display()))?;
    Ok(bytes)
}

fn eval_command(args: &EvalArgs) -> anyhow::Result<()> {
    use tinycnn_host::eval::{Evaluation, available_threads};
    let bytes = read_model(&args.model.model)?;
    let model = tinycnn::Model::from_bytes(&bytes)?;
    let data = Mnist::load(&args.data.dir)?;
    let test = match args.limit {
        Some(limit) => data.test.head(limit),
        None => data.test,
    };
    let threads = args.threads.unwrap_or_else(available_threads);
    let evaluation = Evaluation::run(&model, &test.pixels, &test.labels, threads);
    let png_path = args.confusion_png.clone().unwrap_or_else(|| {
        let mut name = args.model.model.clone().into_os_string();
        name.push(".confusion.png");
        PathBuf::from(name)
    });
    let title = format!(
        "{} ({}): {:.2}% of {} test images",
        args.model
            .model
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        evaluation.flavour.name(),
        evaluation.accuracy() * 100.0,
        evaluation.images()
    );
    let png = evaluation.confusion_png(&title)?;
    tinycnn_host::atomic::write(&png_path, &png)
        .with_context(|| format!("{}: cannot write", png_path.display()))?;
    if args.json {
        let per_class: Vec<f64> = (0..tinycnn::arch::CLASSES)
            .map(|c| evaluation.class_accuracy(c))
            .collect();
        let json = serde_json::json!({
            "model": args.model.model,
            "flavour": evaluation.flavour.name(),
            "images": evaluation.images(),
            "correct": evaluation.correct(),
            "accuracy": evaluation.accuracy(),
            "class_accuracy": per_class,
            "confusion": evaluation.confusion,
            "seconds": evaluation.seconds,
            "threads": evaluation.threads,
            "images_per_second": evaluation.images_per_second(),
            "confusion_png": png_path,
        });
        println!("{json}");
    } else {
        print!("{}", evaluation.report());
        println!(
            "
confusion matrix image: {}",
            png_path.display()
        );
    }
    Ok(())
}

fn predict_command(args: &PredictArgs) -> anyhow::Result<()> {
    use tinycnn_host::predict;
    if args.images.is_empty() && args.indices.is_empty() {
        bail!("nothing to classify: give picture files and/or --index N");
    }
    let bytes = read_model(&args.model.model)?;
    let model = tinycnn::Model::from_bytes(&bytes)?;
    let mut inputs: Vec<(String, tinycnn::arch::Image)> = Vec::new();
    for path in &args.images {
        let input = predict::to_input(&predict::decode(path)?, args.invert);
        if predict::looks_inverted(&input) {
            eprintln!(
                "warning: {} looks like a dark digit on a light background; the network expects                  a light digit on black (MNIST){}",
                path.display(),
                if args.invert { "" } else { ": try --invert" }
            );
        }
        inputs.push((path.display().to_string(), input));
    }
    if !args.indices.is_empty() {
        let data = Mnist::load(&args.data.dir)?;
        for &index in &args.indices {
            let pixels = data.test.image(index).with_context(|| {
                format!(
                    "--index {index} is past the last test image ({})",
                    data.test.len().saturating_sub(1)
                )
            })?;
            let label = data.test.labels[index];
            inputs.push((
                format!("test image {index} (label {label})"),
                export::as_image(pixels).copied().unwrap_or([0; 784]),
            ));
        }
    }
    for (name, input) in &inputs {
        let (digit, probabilities) = match &model {
            tinycnn::Model::Int8(m) => {
                let p = m.classify(input, &mut tinycnn::Int8Scratch::new());
                (p.digit, m.probabilities(&p.logits))
            }
            tinycnn::Model::F32(m) => {
                let p = m.classify(input, &mut tinycnn::F32Scratch::new());
                (p.digit, m.probabilities(&p.logits))
            }
        };
        let listed: Vec<String> = probabilities
            .iter()
            .enumerate()
            .map(|(d, p)| format!("{d}: {p:.3}"))
            .collect();
        println!("{name}: {digit}   [{}]", listed.join("  "));
    }
    Ok(())
}

fn fixture_command(args: &FixtureArgs) -> anyhow::Result<()> {
    let bytes = read_model(&args.model)?;
    let model = tinycnn::Int8Model::from_bytes(&bytes)
        .with_context(|| format!("{}: test vectors need an int8 model", args.model.display()))?;
    let data = Mnist::load(&args.data.dir)?;
    if args.count == 0 || args.count > data.test.len() {
        bail!(
            "--count must be between 1 and {} (the test images)",
            data.test.len()
        );
    }
    let test = data.test.head(args.count);
    let logits = tinycnn_host::eval::int8_logits(&model, &test.pixels, 1);
    let mut records = Vec::new();
    for (index, logits) in logits.iter().enumerate() {
        let image = test
            .image(index)
            .and_then(export::as_image)
            .context("test image")?;
        tinycnn::testvec::push_record(&mut records, test.labels[index], image, logits);
    }
    let file = tinycnn::testvec::encode(&records)?;
    tinycnn_host::atomic::write(&args.out, &file)
        .with_context(|| format!("{}: cannot write", args.out.display()))?;
    let correct = logits
        .iter()
        .zip(&test.labels)
        .filter(|&(l, &label)| tinycnn::kernels::argmax(&l[..]) == usize::from(label))
        .count();
    println!(
        "wrote {}: {} test vectors ({} bytes), {correct} classified correctly by {}",
        args.out.display(),
        logits.len(),
        file.len(),
        args.model.display()
    );
    Ok(())
}

fn bench_train_command(args: &BenchTrainArgs) -> anyhow::Result<()> {
    let data = Mnist::load(&args.data.dir)?;
    let options = TrainBenchOptions {
        batches: args.batches,
        warmup: args.warmup,
        batch_size: train::DEFAULT_BATCH_SIZE,
        learning_rate: train::DEFAULT_LEARNING_RATE,
        seed: train::DEFAULT_SEED,
        init: InitScheme::default(),
        compare_burn: args.compare_burn,
    };
    let report = bench::run_train_bench(&options, &data, &mut |line| eprintln!("{line}"))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

fn bench_infer_command(args: &BenchInferArgs) -> anyhow::Result<()> {
    let f32_file = read_model(&args.f32_model)?;
    let int8_file = read_model(&args.int8_model)?;
    let data = Mnist::load(&args.data.dir)?;
    let report = bench_infer::run_infer_bench(
        &f32_file,
        &int8_file,
        &data.test.pixels,
        args.images,
        args.warmup,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

fn to_usize(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// The command line as typed, for the metrics: program name without its directory.
fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|path| {
            PathBuf::from(&path)
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
