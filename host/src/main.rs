//! `host`: the desktop command line of tinycnn. This file parses the command line and hands
//! each subcommand to its module in `commands` (its options and what it prints); every
//! subcommand's work is in the library (`tinycnn_host`).

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::bench::BenchCommand;
use commands::data::DataArgs;
use commands::eval::EvalArgs;
use commands::export::ExportArgs;
use commands::fixture::FixtureArgs;
use commands::import::ImportArgs;
use commands::inspect::InspectArgs;
use commands::predict::PredictArgs;
use commands::train::TrainArgs;

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
                  MNIST_DIR, default data/mnist), CIFAR-10's binary batches or folders of \
                  pictures; what it lacks is downloaded first and verified (MNIST, or \
                  Fashion-MNIST with --dataset fashion-mnist, or CIFAR-10 with --dataset \
                  cifar10; --no-download for offline machines)."
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

fn main() -> ExitCode {
    tinycnn_host::allocator::tune_for_training();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(args) => commands::data::run(&args),
        Command::Train(args) => commands::train::run(args),
        Command::Export(args) => commands::export::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Eval(args) => commands::eval::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Predict(args) => commands::predict::run(&args),
        Command::Fixture(args) => commands::fixture::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Inspect(args) => commands::inspect::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Import(args) => commands::import::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(command) => commands::bench::run(command).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}
