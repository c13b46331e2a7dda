//! Export of a trained network to the `tinycnn` model files: `model-f32.tcnn`
//! (the weights in the core's channels-last layouts) and `model-int8.tcnn`
//! (quantised per TensorFlow Lite's int8 specification, activation ranges
//! calibrated on training images; see [`quantize`]).
//!
//! burn is channels-first and the core channels-last, so these layouts change,
//! each following the description:
//! - convolution kernels `[out][in][kh][kw]` become `[out][kh][kw][in]`;
//! - depthwise kernels `[C x M][1][kh][kw]` (burn's convolution with `C` groups: output
//!   channel `o` reads input channel `o / M`, as in the core) become `[kh][kw][C x M]`;
//! - a residual projection's `[out][in][1][1]` is the core's `[out][in]` as it is;
//! - an addition's record is empty (it has no weights);
//! - dense kernels `[in][out]` become `[out][in]` (a row per output);
//! - the first dense layer after `flatten` reads burn's channel-major flatten
//!   `c*H*W + y*W + x` of the `H x W x C` map; the core flattens the same map
//!   as `(y*W + x)*C + c`, so that layer's columns are permuted
//!   ([`burn_flatten_index`]).

pub mod quantize;

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use tinycnn::F32Model;
use tinycnn::arch::{Architecture, Layer, Shape, Shortcut};
use tinycnn::format::{F32LayerRecord, F32Record};

use crate::atomic;
use crate::data::Split;
use crate::export::quantize::{Calibration, Int8Tensors};
use crate::train::TrainedRun;
use crate::train::model::{ConvWeights, DenseWeights, NetWeights};

use crate::model_files::floats;
pub use crate::model_files::{F32_FILE, INT8_FILE, TFLITE_FILE};
/// Training images whose activations set the int8 ranges, unless told otherwise.
pub const DEFAULT_CALIBRATION_IMAGES: usize = 2000;

/// burn's flatten index of the core's input `j = (y*W + x)*C + c` to the
/// dense layer after the flatten of a `map` (`H x W x C`): `c*H*W + y*W + x`.
pub fn burn_flatten_index(map: Shape, j: usize) -> usize {
    let channels = map.channels.max(1);
    let (position, channel) = (j / channels, j % channels);
    channel * map.height * map.width + position
}

/// How each dense layer's inputs are laid out relative to burn's: the map
/// shape flattened right before it (the first dense layer after `flatten`),
/// or `None` (its inputs are a vector in the same order on both sides).
fn dense_input_maps(architecture: &Architecture) -> Vec<Option<Shape>> {
    let mut flattened = None;
    let mut maps = Vec::new();
    for info in architecture.iter() {
        match info.layer {
            Layer::Flatten => flattened = Some(info.input),
            Layer::Dense(_) => maps.push(flattened.take()),
            _ => {}
        }
    }
    maps
}

/// Convolution kernel, OIHW -> OHWI.
fn conv_to_core(conv: &ConvWeights) -> Vec<f32> {
    let (outputs, inputs) = (conv.out_channels, conv.in_channels);
    let [kh, kw] = conv.kernel;
    let mut core = Vec::with_capacity(conv.weight.len());
    for o in 0..outputs {
        for ky in 0..kh {
            for kx in 0..kw {
                for i in 0..inputs {
                    core.push(conv.weight[((o * inputs + i) * kh + ky) * kw + kx]);
                }
            }
        }
    }
    core
}

/// Depthwise kernel, `[o][1][ky][kx]` -> `[ky][kx][o]`.
fn depthwise_to_core(depthwise: &ConvWeights) -> Vec<f32> {
    let outputs = depthwise.out_channels;
    let taps = depthwise.kernel[0] * depthwise.kernel[1];
    (0..taps * outputs)
        .map(|i| depthwise.weight[(i % outputs) * taps + i / outputs])
        .collect()
}

/// Dense kernel `[in][out]` -> `[out][in]`; `burn_input(j)` maps the core's
/// input index to burn's.
fn dense_to_core(dense: &DenseWeights, burn_input: impl Fn(usize) -> usize) -> Vec<f32> {
    let (inputs, outputs) = (dense.inputs, dense.outputs);
    let mut core = Vec::with_capacity(dense.weight.len());
    for o in 0..outputs {
        for j in 0..inputs {
            core.push(dense.weight[burn_input(j) * outputs + o]);
        }
    }
    core
}

fn bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A network's weights in the core's layouts, as little-endian bytes.
#[derive(Clone, Debug)]
pub struct CoreWeights {
    architecture: Architecture,
    /// Per layer with weights: `[weights, bias]`.
    layers: Vec<[Vec<u8>; 2]>,
}

impl CoreWeights {
    /// Reorders burn's weights of a network of `architecture`, checking every
    /// shape against the description.
    pub fn from_burn(architecture: &Architecture, weights: &NetWeights) -> anyhow::Result<Self> {
        let mut convs = weights.convs.iter();
        let mut depthwise = weights.depthwise.iter();
        let mut projections = weights.projections.iter();
        let mut dense = weights.dense.iter().zip(dense_input_maps(architecture));
        let mut layers = Vec::new();
        for info in architecture.iter() {
            let no_weights = || format!("{}: no weights given", info.name);
            // The shape burn's convolution of this layer has, and its weights.
            let (expected, stored) = match info.layer {
                Layer::Conv(conv) => (
                    [
                        info.outputs(),
                        info.input.channels,
                        usize::from(conv.window.height),
                        usize::from(conv.window.width),
                    ],
                    convs.next().with_context(no_weights)?,
                ),
                Layer::Depthwise(layer) => (
                    [
                        info.outputs(),
                        1,
                        usize::from(layer.window.height),
                        usize::from(layer.window.width),
                    ],
                    depthwise.next().with_context(no_weights)?,
                ),
                Layer::Residual(Shortcut::Projection { .. }) => (
                    [info.outputs(), info.input.channels, 1, 1],
                    projections.next().with_context(no_weights)?,
                ),
                Layer::Dense(_) => {
                    let (stored, map) = dense.next().with_context(no_weights)?;
                    ensure!(
                        (stored.inputs, stored.outputs) == (info.input.values(), info.outputs())
                            && stored.weight.len() == info.weights()
                            && stored.bias.len() == info.outputs(),
                        "{}: {} -> {}, the description has {} -> {}",
                        info.name,
                        stored.inputs,
                        stored.outputs,
                        info.input.values(),
                        info.outputs()
                    );
                    let core = match map {
                        Some(map) => dense_to_core(stored, |j| burn_flatten_index(map, j)),
                        None => dense_to_core(stored, |j| j),
                    };
                    layers.push([bytes(&core), bytes(&stored.bias)]);
                    continue;
                }
                Layer::Add(_) | Layer::Softmax => {
                    layers.push([Vec::new(), Vec::new()]);
                    continue;
                }
                _ => continue,
            };
            ensure!(
                stored.shape() == expected,
                "{}: weights of shape {:?}, the description has {expected:?}",
                info.name,
                stored.shape()
            );
            ensure!(
                stored.weight.len() == info.weights() && stored.bias.len() == info.outputs(),
                "{}: the weights have the wrong length",
                info.name
            );
            let core = match info.layer {
                Layer::Depthwise(_) => depthwise_to_core(stored),
                _ => conv_to_core(stored),
            };
            layers.push([bytes(&core), bytes(&stored.bias)]);
        }
        ensure!(
            convs.next().is_none()
                && dense.next().is_none()
                && depthwise.next().is_none()
                && projections.next().is_none(),
            "more layers with weights given than the description has"
        );
        Ok(Self {
            architecture: *architecture,
            layers,
        })
    }

    /// The layer records, borrowing these bytes.
    pub fn layer_records(&self) -> Vec<F32LayerRecord<'_>> {
        self.layers
            .iter()
            .map(|[weights, bias]| F32LayerRecord { weights, bias })
            .collect()
    }

    /// The encoded f32 model file, without class names.
    pub fn to_file(&self) -> anyhow::Result<Vec<u8>> {
        self.to_file_named(&[])
    }

    /// The encoded f32 model file, naming its classes (none: `&[]`).
    pub fn to_file_named(&self, class_names: &[&str]) -> anyhow::Result<Vec<u8>> {
        self.to_file_with(class_names, None)
    }

    /// The encoded f32 model file, naming its classes, reading `front_end`'s features (a
    /// network trained on a keyword set: format version 5, or 6 for the 16-bit FFT).
    pub fn to_file_with(
        &self,
        class_names: &[&str],
        front_end: Option<tinycnn::audio::FrontEndConfig>,
    ) -> anyhow::Result<Vec<u8>> {
        let layers = self.layer_records();
        let record = F32Record {
            architecture: self.architecture,
            layers: &layers,
            class_names,
            front_end,
        };
        record.to_vec().context("encoding the f32 model")
    }
}

/// The inverse of [`CoreWeights::from_burn`]: burn's layouts of an f32 model
/// file's weights, to run a model file in burn.
pub fn burn_weights(model: &F32Model<'_>) -> NetWeights {
    let architecture = model.architecture();
    let mut records = model.layers();
    let mut maps = dense_input_maps(architecture).into_iter();
    let mut weights = NetWeights {
        convs: Vec::new(),
        dense: Vec::new(),
        depthwise: Vec::new(),
        projections: Vec::new(),
    };
    for info in architecture.iter().filter(|info| info.record.is_some()) {
        let Some(stored) = records.next() else {
            break;
        };
        let (core, bias) = (floats(stored.weights), floats(stored.bias));
        let outputs = info.outputs();
        match info.layer {
            Layer::Conv(conv) => {
                let inputs = info.input.channels;
                let (kh, kw) = (
                    usize::from(conv.window.height),
                    usize::from(conv.window.width),
                );
                let mut weight = vec![0.0; core.len()];
                for o in 0..outputs {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            for i in 0..inputs {
                                weight[((o * inputs + i) * kh + ky) * kw + kx] =
                                    core[((o * kh + ky) * kw + kx) * inputs + i];
                            }
                        }
                    }
                }
                weights.convs.push(ConvWeights {
                    out_channels: outputs,
                    in_channels: inputs,
                    kernel: [kh, kw],
                    weight,
                    bias,
                });
            }
            Layer::Depthwise(layer) => {
                let kernel = [
                    usize::from(layer.window.height),
                    usize::from(layer.window.width),
                ];
                let taps = kernel[0] * kernel[1];
                let mut weight = vec![0.0; core.len()];
                for (i, &value) in core.iter().enumerate() {
                    weight[(i % outputs) * taps + i / outputs] = value;
                }
                weights.depthwise.push(ConvWeights {
                    out_channels: outputs,
                    in_channels: 1,
                    kernel,
                    weight,
                    bias,
                });
            }
            Layer::Residual(_) => weights.projections.push(ConvWeights {
                out_channels: outputs,
                in_channels: info.input.channels,
                kernel: [1, 1],
                weight: core,
                bias,
            }),
            Layer::Dense(_) => {
                let map = maps.next().flatten();
                let inputs = info.input.values();
                let mut weight = vec![0.0; core.len()];
                for o in 0..outputs {
                    for j in 0..inputs {
                        let burn_input = map.map_or(j, |map| burn_flatten_index(map, j));
                        weight[burn_input * outputs + o] = core[o * inputs + j];
                    }
                }
                weights.dense.push(DenseWeights {
                    inputs,
                    outputs,
                    weight,
                    bias,
                });
            }
            // Additions and softmax: empty records.
            _ => {}
        }
    }
    weights
}

/// Both model files of a network, encoded, and how the int8 one was calibrated.
#[derive(Debug)]
pub struct Exported {
    /// The f32 model file.
    pub f32_file: Vec<u8>,
    /// The int8 model file.
    pub int8_file: Vec<u8>,
    /// Activation ranges measured on the calibration images.
    pub calibration: Calibration,
}

/// Encodes `weights` of a network of `architecture` as f32 and int8 model
/// files, calibrating the int8 activation ranges on the first
/// `calibration_images` images of `train`.
pub fn export(
    architecture: &Architecture,
    weights: &NetWeights,
    train: &Split,
    calibration_images: usize,
    class_names: &[String],
) -> anyhow::Result<Exported> {
    ensure!(
        calibration_images > 0,
        "--calibration must be at least 1 image"
    );
    let images = (0..calibration_images.min(train.len())).filter_map(|i| train.image(i));
    export_with(
        architecture,
        weights,
        images,
        class_names,
        train.front_end(),
    )
}

/// The names a model file records for `class_names`: none when they are only the classes'
/// numbers (an MNIST-format set's), which is what a model without names shows; a model
/// without names is written in the version it always was.
pub fn names_to_record(class_names: &[String]) -> Vec<&str> {
    let numbered = class_names
        .iter()
        .enumerate()
        .all(|(class, name)| crate::data::set::is_number_name(class, name));
    if numbered {
        Vec::new()
    } else {
        class_names.iter().map(String::as_str).collect()
    }
}

/// [`export`], calibrating on `images` (whole images of the network's input, channels-last).
pub fn export_calibrated<'i>(
    architecture: &Architecture,
    weights: &NetWeights,
    images: impl IntoIterator<Item = &'i [u8]>,
) -> anyhow::Result<Exported> {
    export_named(architecture, weights, images, &[])
}

/// [`export_calibrated`], recording `class_names` (see [`names_to_record`]) in both files.
pub fn export_named<'i>(
    architecture: &Architecture,
    weights: &NetWeights,
    images: impl IntoIterator<Item = &'i [u8]>,
    class_names: &[String],
) -> anyhow::Result<Exported> {
    export_with(architecture, weights, images, class_names, None)
}

/// [`export_named`] of a network that reads `front_end`'s features (a keyword set's; `None`
/// for pictures): both files record the front end (format version 5, or 6 for the 16-bit
/// FFT), the int8 one reads its bytes as they are (its input quantisation is the front end's),
/// and `images` are stored feature bytes ([`crate::data::audio`]).
pub fn export_with<'i>(
    architecture: &Architecture,
    weights: &NetWeights,
    images: impl IntoIterator<Item = &'i [u8]>,
    class_names: &[String],
    front_end: Option<tinycnn::audio::FrontEndConfig>,
) -> anyhow::Result<Exported> {
    let names = names_to_record(class_names);
    let f32_file =
        CoreWeights::from_burn(architecture, weights)?.to_file_with(&names, front_end)?;
    let model =
        F32Model::from_bytes(&f32_file).context("the exported f32 model does not load back")?;
    let calibration = Calibration::measure(&model, images)?;
    let int8_file = Int8Tensors::quantize(&model, &calibration)?.to_file_named(&names)?;
    tinycnn::Int8Model::from_bytes(&int8_file)
        .context("the exported int8 model does not load back")?;
    Ok(Exported {
        f32_file,
        int8_file,
        calibration,
    })
}

/// Writes `model-f32.tcnn` and `model-int8.tcnn` into `dir`, each atomically.
pub fn write_files(dir: &Path, exported: &Exported) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, bytes) in [
        (F32_FILE, &exported.f32_file),
        (INT8_FILE, &exported.int8_file),
    ] {
        let path = dir.join(name);
        atomic::write(&path, bytes).with_context(|| format!("{}: cannot write", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes the model files of a finished run into its output directory and
/// returns their paths; called by `host train` once every epoch is done.
pub fn export_trained_model(
    run: &TrainedRun,
    calibration_images: usize,
) -> anyhow::Result<Vec<PathBuf>> {
    let exported = export(
        run.model.architecture(),
        &run.model.weights(),
        &run.data.train,
        calibration_images,
        &run.data.class_names,
    )?;
    write_files(&run.out_dir, &exported)
}

/// What `host export` reads and writes.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// A run directory, its checkpoint, or a bare burn record.
    pub checkpoint: PathBuf,
    /// The network of a bare burn record, batch norms included (a checkpoint records its own).
    pub network: crate::train::network::TrainNetwork,
    /// The data set, for calibration.
    pub data_dir: PathBuf,
    /// Where to write the model files [default: the checkpoint's directory].
    pub out: Option<PathBuf>,
    /// Training images that set the int8 ranges.
    pub calibration_images: usize,
    /// Replace model files already in the output directory.
    pub overwrite: bool,
    /// Also write the int8 model as `model-int8.tflite`.
    pub tflite: bool,
    /// How pictures of another size are fitted to the input (folder sets) [default: the
    /// checkpoint's].
    pub fit: Option<crate::data::Fit>,
    /// Leave out damaged pictures instead of failing (folder sets).
    pub skip_damaged: bool,
}

/// `host export`: the model files of a trained checkpoint; returns their paths.
pub fn run(options: &ExportOptions) -> anyhow::Result<Vec<PathBuf>> {
    let out = match &options.out {
        Some(dir) => dir.clone(),
        None if options.checkpoint.is_dir() => options.checkpoint.clone(),
        None => options
            .checkpoint
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    let mut outputs = vec![out.join(F32_FILE), out.join(INT8_FILE)];
    if options.tflite {
        outputs.push(out.join(TFLITE_FILE));
    }
    atomic::refuse_existing(&outputs, options.overwrite)?;
    let device = crate::train::backend::BackendKind::Flex.device()?;
    let (mut model, state) =
        crate::train::checkpoint::load_trained(&options.checkpoint, &options.network, &device)?;
    // A run that keeps its best epoch exports those weights, as `host train` did.
    if let Some(state) = &state
        && state.settings.keep == crate::train::state::Keep::Best
        && state.best_epoch.is_some()
    {
        let run_dir = if options.checkpoint.is_dir() {
            options.checkpoint.clone()
        } else {
            options
                .checkpoint
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default()
        };
        let best = run_dir.join(crate::train::BEST_MODEL_FILE);
        model = crate::train::checkpoint::load_trained_model(&best, model.network(), &device)?;
    }
    let fit = options
        .fit
        .or(state.as_ref().map(|state| state.settings.fit));
    let folder_options = crate::data::FolderOptions::for_input(
        model.architecture().input(),
        fit.unwrap_or_default(),
        options.skip_damaged,
    );
    let data = crate::data::DataSet::load(&options.data_dir, &folder_options)?;
    crate::deploy::eval::check_data_fits(model.architecture(), &data)?;
    let created_dirs = atomic::check_writable(&out, 4 << 20)
        .with_context(|| format!("{}: cannot write the model files there", out.display()))?;
    let exported = export(
        model.architecture(),
        &model.weights(),
        &data.train,
        options.calibration_images,
        &state.map_or_else(|| data.class_names.clone(), |state| state.class_names),
    )?;
    let mut written = write_files(&out, &exported)?;
    if options.tflite {
        let model = tinycnn::Int8Model::from_bytes(&exported.int8_file)
            .map_err(|e| anyhow::anyhow!("the int8 model just written does not load: {e}"))?;
        let path = out.join(TFLITE_FILE);
        atomic::write(&path, &crate::tflite::export(&model)?)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        written.push(path);
    }
    created_dirs.keep();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_permutation_maps_channels_last_to_channels_first() {
        let map = Shape::new(3, 3, 256);
        // Core input (y=0, x=0, c=0) is burn's 0; (y=0, x=0, c=1) is burn's 9;
        // (y=0, x=1, c=0) is burn's 1; the last of each is the last.
        assert_eq!(burn_flatten_index(map, 0), 0);
        assert_eq!(burn_flatten_index(map, 1), 9);
        assert_eq!(burn_flatten_index(map, 256), 1);
        assert_eq!(burn_flatten_index(map, 2 * 256 + 5), 5 * 9 + 2);
        assert_eq!(burn_flatten_index(map, 2303), 2303);
        let mut seen = vec![false; 2304];
        for j in 0..2304 {
            seen[burn_flatten_index(map, j)] = true;
        }
        assert!(seen.iter().all(|&s| s), "a permutation");
        // A non-square map: 2x3x4, (y=1, x=2, c=3) -> 3*6 + 1*3 + 2.
        assert_eq!(burn_flatten_index(Shape::new(2, 3, 4), (3 + 2) * 4 + 3), 23);
    }

    #[test]
    fn only_the_first_dense_layer_after_flatten_is_permuted() {
        let architecture = tinycnn::text::parse(
            "conv3x3:4 pool flatten drop:0.5 dense:8 dense:6 dense:10",
            Shape::new(28, 28, 1),
        )
        .unwrap();
        assert_eq!(
            dense_input_maps(&architecture),
            [Some(Shape::new(14, 14, 4)), None, None]
        );
        assert_eq!(
            dense_input_maps(&Architecture::REFERENCE),
            [Some(Shape::new(3, 3, 256)), None, None, None]
        );
    }

    #[test]
    fn conv_layout_moves_input_channels_last() {
        let conv = ConvWeights {
            out_channels: 1,
            in_channels: 2,
            kernel: [3, 3],
            weight: (0..18).map(|v| v as f32).collect(),
            bias: vec![0.0],
        };
        // OIHW: channel 0 holds 0..9, channel 1 holds 9..18; OHWI interleaves them.
        let core = conv_to_core(&conv);
        assert_eq!(&core[..6], &[0.0, 9.0, 1.0, 10.0, 2.0, 11.0]);
    }

    #[test]
    fn dense_layout_transposes() {
        let dense = DenseWeights {
            inputs: 2,
            outputs: 3,
            weight: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            bias: vec![0.0; 3],
        };
        assert_eq!(dense_to_core(&dense, |j| j), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
