//! `host import`: turns a fully-integer TensorFlow Lite model into a tinycnn int8 model.

use std::path::PathBuf;

use clap::Args;
use tinycnn_host::tflite;

use super::emit;

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
pub(crate) struct ImportArgs {
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

pub(crate) fn run(args: &ImportArgs) -> anyhow::Result<()> {
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
