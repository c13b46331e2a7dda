//! `host export`: writes the tinycnn model files (and TensorFlow Lite's) from a checkpoint.

use std::path::PathBuf;

use clap::Args;
use tinycnn::Architecture;
use tinycnn_host::{export, tflite};

use super::{ArchArg, CalibrationArg, DataDir, emit};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    host export --checkpoint runs/latest            model-f32.tcnn, model-int8.tcnn\n  \
    host export --checkpoint runs/latest --tflite   ... and model-int8.tflite\n  \
    host export --tflite --model data/model-int8.tcnn   data/model-int8.tflite, from the int8 \
    model file alone")]
pub(crate) struct ExportArgs {
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

pub(crate) fn run(args: &ExportArgs) -> anyhow::Result<()> {
    if let Some(model) = &args.model {
        let written = tflite::export_file(model, args.out.as_deref(), args.overwrite)?;
        emit(format!("wrote {}\n", written.display()));
        return Ok(());
    }
    let network = args
        .arch
        .network()
        .unwrap_or_else(|| Architecture::REFERENCE.into());
    let written = export::run(&export::ExportOptions {
        checkpoint: args
            .checkpoint
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs/latest")),
        network,
        data_dir: args.data.ready(false)?,
        out: args.out.clone(),
        calibration_images: args.calibration.images,
        overwrite: args.overwrite,
        tflite: args.tflite,
        fit: args.data.fit,
        skip_damaged: args.data.skip_damaged,
    })?;
    for path in written {
        emit(format!("wrote {}\n", path.display()));
    }
    Ok(())
}
