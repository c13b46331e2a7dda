//! `host bench train` and `host bench infer`: time training steps and single-image inference.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use tinycnn::Architecture;
use tinycnn_host::bench::{infer as bench_infer, model as bench_model, train as bench_train};
use tinycnn_host::data::DataSet;
use tinycnn_host::data::mnist::Mnist;
use tinycnn_host::deploy;
use tinycnn_host::train::{self, model::InitScheme};

use super::{ArchArg, DataDir, emit, whole_number};

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
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
    ///
    /// With --model FILE it times any int8 model instead (the MLPerf Tiny networks of
    /// data/mlperf/, say), no data set needed: random int8 inputs (splitmix64 bytes of --seed),
    /// one per call on one thread, --rounds rounds of --images inputs with the kernels built for
    /// this processor, then one round with the portable kernels, whose outputs must be the
    /// same. With --tflite-model FILE.tflite (the same network) TensorFlow Lite's interpreter
    /// (default kernels, one thread) times the same inputs in a Python process
    /// (scripts/tflite-reference.py --serve), a round of it after each round of the core, and
    /// the ratio of their images per second is printed. --layers times each step too.
    #[command(verbatim_doc_comment)]
    Infer(Box<BenchInferArgs>),
}

/// Runs the bench subcommand asked for.
pub(crate) fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Train(args) => run_train(&args),
        BenchCommand::Infer(args) => run_infer(&args),
    }
}

#[derive(Debug, Args)]
pub(crate) struct BenchTrainArgs {
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
pub(crate) struct BenchInferArgs {
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
    /// Time this int8 model on random inputs instead of the MNIST models (see above).
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// With --model: the same network as a .tflite, timed by TensorFlow Lite in turn with the
    /// core.
    #[arg(long, value_name = "FILE", requires = "model")]
    tflite_model: Option<PathBuf>,
    /// With --tflite-model: a Python with ai-edge-litert (or TensorFlow) [default: $TINYCNN_TFLITE_PYTHON, else python3].
    #[arg(long, value_name = "PYTHON", requires = "tflite_model")]
    tflite_python: Option<PathBuf>,
    /// With --tflite-model: the script that times TensorFlow Lite.
    #[arg(long, value_name = "FILE", default_value = bench_model::TFLITE_SCRIPT)]
    tflite_script: PathBuf,
    /// With --model: rounds of --images inputs per path.
    #[arg(long, value_name = "N", default_value_t = bench_model::DEFAULT_ROUNDS,
          value_parser = whole_number(1, 1000))]
    rounds: usize,
    /// With --model: the seed of the random inputs.
    #[arg(long, value_name = "S", default_value_t = tinycnn_host::deploy::fixture::RANDOM_SEED)]
    seed: u64,
    /// With --model: leave out the portable kernels.
    #[arg(long, requires = "model")]
    no_portable: bool,
    /// With --model: also time each step with the fast kernels.
    #[arg(long, requires = "model")]
    layers: bool,
    /// With --model: the fast kernels of this instruction set (avx512-vnni, avx2, sse2 on
    /// x86-64; neon on aarch64) instead of the best this processor runs.
    #[arg(long, value_name = "NAME", requires = "model", value_parser = isa_name)]
    kernels: Option<deploy::kernels::Isa>,
}

fn isa_name(name: &str) -> Result<deploy::kernels::Isa, String> {
    deploy::kernels::Isa::named(name).ok_or_else(|| {
        let names: Vec<_> = deploy::kernels::Isa::all()
            .iter()
            .map(|isa| isa.name())
            .collect();
        format!("one of {}", names.join(", "))
    })
}

pub(crate) fn run_train(args: &BenchTrainArgs) -> anyhow::Result<()> {
    let data = DataSet::load(
        &args.data.ready(args.json)?,
        &args.data.folder_options(
            args.arch
                .network()
                .map(|network| network.architecture.input()),
            !args.json,
        ),
    )?;
    let options = bench_train::TrainBenchOptions {
        network: args
            .arch
            .network()
            .unwrap_or_else(|| Architecture::REFERENCE.into()),
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

pub(crate) fn run_infer(args: &BenchInferArgs) -> anyhow::Result<()> {
    if let Some(model) = &args.model {
        return run_model(model, args);
    }
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

fn run_model(model: &std::path::Path, args: &BenchInferArgs) -> anyhow::Result<()> {
    let file = deploy::read_model(model)?;
    let options = bench_model::ModelBenchOptions {
        images: args.images,
        rounds: args.rounds,
        warmup: args.warmup,
        seed: args.seed,
        portable: !args.no_portable,
        layers: args.layers,
        isa: args.kernels,
        tflite: args
            .tflite_model
            .as_ref()
            .map(|tflite| bench_model::TflitePeer {
                model: tflite.clone(),
                python: bench_model::tflite_python(args.tflite_python.as_deref()),
                script: args.tflite_script.clone(),
            }),
    };
    let report = bench_model::run_model_bench(&file, &options)?;
    if args.json {
        emit(format!("{}\n", serde_json::to_string(&report)?));
    } else {
        emit(report.to_text());
    }
    Ok(())
}
