//! TensorFlow Lite models in and out.
//!
//! - [`import()`]: a fully-integer `.tflite` (int8 activations, per-channel symmetric int8
//!   weights, int32 biases) whose graph is made of the operators tinycnn has (`CONV_2D` and
//!   `DEPTHWISE_CONV_2D` of any kernel up to 16x16 and stride 1 or 2, `MAX_POOL_2D` and
//!   `AVERAGE_POOL_2D`, `ADD` closing a residual block, `RESHAPE` as the flatten,
//!   `FULLY_CONNECTED`, a final `SOFTMAX`, fused ReLU or ReLU6, and the `QUANTIZE`/`DEQUANTIZE`
//!   a converter adds at the edges) becomes a tinycnn int8 model (format version 3) that
//!   computes TensorFlow Lite Micro's bytes. Anything else is refused with the operator and
//!   the reason.
//! - [`export()`]: a tinycnn int8 model as a `.tflite` that TensorFlow Lite runs.
//!
//! The flatbuffer is read and written with `planus` and the code it generated from
//! `schema.fbs` (the part of TensorFlow Lite's schema tinycnn uses). TensorFlow Lite's layouts
//! are tinycnn's: convolution weights OHWI (output channel, row, column, input channel),
//! depthwise weights `[1, rows, columns, output channels]`, dense weights `[units, inputs]`,
//! and a `RESHAPE` flattens an NHWC map in height, width, channel order. A residual block is
//! found as a tensor that two branches read and that meet again at an `ADD`, one of them the
//! tensor itself or a 1x1 `CONV_2D` of it.

mod export;
// Generated code (`scripts/tflite-schema.sh`): planus's own `unsafe` writes flatbuffer bytes
// into buffers it has sized; it is not ours to document, lint or format.
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    missing_docs,
    unreachable_pub,
    unused_imports,
    dead_code
)]
#[rustfmt::skip]
mod generated;
mod import;

pub use export::export;
pub use import::{Imported, MAX_FILE_BYTES, import};

use anyhow::Result;
use generated::tflite;

/// The file identifier of a TensorFlow Lite flatbuffer (bytes 4..8).
pub const FILE_IDENTIFIER: &[u8; 4] = b"TFL3";

/// Builtin operator codes of the schema that tinycnn reads or writes.
mod op {
    pub const ADD: i32 = 0;
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const DEQUANTIZE: i32 = 6;
    pub const FULLY_CONNECTED: i32 = 9;
    pub const MAX_POOL_2D: i32 = 17;
    pub const RESHAPE: i32 = 22;
    pub const SOFTMAX: i32 = 25;
    pub const STRIDED_SLICE: i32 = 45;
    pub const SHAPE: i32 = 77;
    pub const PACK: i32 = 83;
    pub const QUANTIZE: i32 = 114;
}

/// Tensor element types of the schema (`TensorType`).
mod tensor_type {
    pub const FLOAT32: i8 = 0;
    pub const INT32: i8 = 2;
    pub const INT8: i8 = 9;
}

/// The schema's `Padding` and `ActivationFunctionType` values.
mod option {
    pub const PADDING_SAME: i8 = 0;
    pub const PADDING_VALID: i8 = 1;
    pub const ACTIVATION_NONE: i8 = 0;
    pub const ACTIVATION_RELU: i8 = 1;
    pub const ACTIVATION_RELU6: i8 = 3;
}

/// The name TensorFlow Lite gives a builtin operator code, for messages.
pub fn operator_name(code: i32) -> Option<&'static str> {
    const NAMES: [&str; 61] = [
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEPTH_TO_SPACE",
        "DEQUANTIZE",
        "EMBEDDING_LOOKUP",
        "FLOOR",
        "FULLY_CONNECTED",
        "HASHTABLE_LOOKUP",
        "L2_NORMALIZATION",
        "L2_POOL_2D",
        "LOCAL_RESPONSE_NORMALIZATION",
        "LOGISTIC",
        "LSH_PROJECTION",
        "LSTM",
        "MAX_POOL_2D",
        "MUL",
        "RELU",
        "RELU_N1_TO_1",
        "RELU6",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RNN",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SVDF",
        "TANH",
        "CONCAT_EMBEDDINGS",
        "SKIP_GRAM",
        "CALL",
        "CUSTOM",
        "EMBEDDING_LOOKUP_SPARSE",
        "PAD",
        "UNIDIRECTIONAL_SEQUENCE_RNN",
        "GATHER",
        "BATCH_TO_SPACE_ND",
        "SPACE_TO_BATCH_ND",
        "TRANSPOSE",
        "MEAN",
        "SUB",
        "DIV",
        "SQUEEZE",
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "STRIDED_SLICE",
        "BIDIRECTIONAL_SEQUENCE_RNN",
        "EXP",
        "TOPK_V2",
        "SPLIT",
        "LOG_SOFTMAX",
        "DELEGATE",
        "BIDIRECTIONAL_SEQUENCE_LSTM",
        "CAST",
        "PRELU",
        "MAXIMUM",
        "ARG_MAX",
        "MINIMUM",
        "LESS",
        "NEG",
        "PADV2",
    ];
    match code {
        op::SHAPE => Some("SHAPE"),
        op::PACK => Some("PACK"),
        op::QUANTIZE => Some("QUANTIZE"),
        _ => usize::try_from(code)
            .ok()
            .and_then(|i| NAMES.get(i).copied()),
    }
}

/// `CONV_2D`, or `builtin operator 97` for a code this table does not name.
fn describe_operator(code: i32) -> String {
    match operator_name(code) {
        Some(name) => name.to_owned(),
        None => format!("builtin operator {code}"),
    }
}

/// The name of a tensor element type, for messages.
fn type_name(code: i8) -> String {
    const NAMES: [&str; 11] = [
        "float32",
        "float16",
        "int32",
        "uint8",
        "int64",
        "string",
        "bool",
        "int16",
        "complex64",
        "int8",
        "float64",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("tensor type {code}"), |name| (*name).to_owned())
}

/// What `host import` did.
#[derive(Clone, Debug)]
pub struct ImportReport {
    /// The model file written.
    pub written: std::path::PathBuf,
    /// Its size, and the `.tflite`'s.
    pub bytes: usize,
    /// The `.tflite`'s size.
    pub tflite_bytes: usize,
    /// The conversion.
    pub imported: Imported,
}

/// `host import`: reads `input` (a `.tflite`), writes the tinycnn int8 model to `output`
/// (default: `input` with the extension `.tcnn`), never over an existing file unless
/// `overwrite`.
pub fn import_file(
    input: &std::path::Path,
    output: Option<&std::path::Path>,
    overwrite: bool,
    output_kind: Option<tinycnn::arch::OutputKind>,
) -> Result<ImportReport> {
    use anyhow::Context as _;
    let output = output.map_or_else(
        || input.with_extension("tcnn"),
        std::path::Path::to_path_buf,
    );
    anyhow::ensure!(
        output != input,
        "{}: the output would replace the input; give another path with -o",
        output.display()
    );
    crate::atomic::refuse_existing(std::slice::from_ref(&output), overwrite)?;
    let bytes = read_limited(input)?;
    let imported = import(&bytes, output_kind).with_context(|| format!("{}", input.display()))?;
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let created = crate::atomic::check_writable(dir, imported.file.len())
        .with_context(|| format!("{}: cannot write the model there", dir.display()))?;
    crate::atomic::write(&output, &imported.file)
        .with_context(|| format!("{}: cannot write", output.display()))?;
    created.keep();
    Ok(ImportReport {
        written: output,
        bytes: imported.file.len(),
        tflite_bytes: bytes.len(),
        imported,
    })
}

/// `host export --tflite --model FILE`: writes the int8 model `model` as a `.tflite` into
/// `out` (default: beside it), named after it; returns the path.
pub fn export_file(
    model: &std::path::Path,
    out: Option<&std::path::Path>,
    overwrite: bool,
) -> Result<std::path::PathBuf> {
    use anyhow::Context as _;
    let name = model
        .with_extension("tflite")
        .file_name()
        .map(std::path::PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("{}: not a file name", model.display()))?;
    let dir = out.map_or_else(
        || {
            model
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default()
        },
        std::path::Path::to_path_buf,
    );
    let output = dir.join(name);
    crate::atomic::refuse_existing(std::slice::from_ref(&output), overwrite)?;
    let bytes =
        std::fs::read(model).with_context(|| format!("{}: cannot read", model.display()))?;
    let parsed = tinycnn::Int8Model::from_bytes(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not an int8 tinycnn model ({e}); --tflite writes int8 models",
            model.display()
        )
    })?;
    let tflite = export(&parsed)?;
    let probe_dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        &dir
    };
    let created = crate::atomic::check_writable(probe_dir, tflite.len())
        .with_context(|| format!("{}: cannot write there", probe_dir.display()))?;
    crate::atomic::write(&output, &tflite)
        .with_context(|| format!("{}: cannot write", output.display()))?;
    created.keep();
    Ok(output)
}

/// The file, refusing one larger than [`MAX_FILE_BYTES`] before reading it.
fn read_limited(path: &std::path::Path) -> Result<Vec<u8>> {
    use anyhow::Context as _;
    let length = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot read", path.display()))?
        .len();
    anyhow::ensure!(
        length <= MAX_FILE_BYTES,
        "{}: {length} bytes, more than the {MAX_FILE_BYTES} a .tflite tinycnn imports may have",
        path.display()
    );
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

#[cfg(test)]
mod tests;
