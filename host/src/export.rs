//! Export of a trained network to the `tinycnn` model files: `model-f32.tcnn`
//! (the weights in the core's channels-last layouts) and `model-int8.tcnn`
//! (quantised per TensorFlow Lite's int8 specification, activation ranges
//! calibrated on training images; see [`crate::quantize`]).
//!
//! burn is channels-first and the core channels-last, so three layouts change:
//! - convolution kernels `[out][in][kh][kw]` become `[out][kh][kw][in]`;
//! - dense kernels `[in][out]` become `[out][in]` (a row per output);
//! - fc1's inputs are burn's channel-major flatten `c*9 + y*3 + x`; the core
//!   flattens its 3x3x256 tensor as `(y*3 + x)*256 + c`, so fc1's columns are
//!   permuted accordingly.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use tinycnn::F32Model;
use tinycnn::arch::{Image, Layer};
use tinycnn::format::{Architecture, F32LayerRecord, F32Record};

use crate::atomic;
use crate::mnist::Split;
use crate::model::{ConvWeights, DenseWeights, NetWeights};
use crate::quantize::{Calibration, Int8Tensors};
use crate::train::TrainedRun;

/// File name of the f32 model in an output directory.
pub const F32_FILE: &str = "model-f32.tcnn";
/// File name of the int8 model in an output directory.
pub const INT8_FILE: &str = "model-int8.tcnn";
/// Training images whose activations set the int8 ranges, unless told otherwise.
pub const DEFAULT_CALIBRATION_IMAGES: usize = 2000;

/// Side and channels of the feature map that fc1 flattens.
const FLAT_SIDE: usize = 3;
const FLAT_CHANNELS: usize = 256;

/// Convolution kernel, OIHW -> OHWI.
fn conv_to_core(conv: &ConvWeights) -> anyhow::Result<Vec<f32>> {
    let (outputs, inputs) = (conv.out_channels, conv.in_channels);
    ensure!(
        conv.kernel == [3, 3],
        "convolution kernel is {:?}, expected 3x3",
        conv.kernel
    );
    ensure!(
        conv.weight.len() == outputs * inputs * 9,
        "convolution weights have the wrong length"
    );
    let mut core = Vec::with_capacity(conv.weight.len());
    for o in 0..outputs {
        for ky in 0..3 {
            for kx in 0..3 {
                for i in 0..inputs {
                    core.push(conv.weight[((o * inputs + i) * 3 + ky) * 3 + kx]);
                }
            }
        }
    }
    Ok(core)
}

/// Dense kernel `[in][out]` -> `[out][in]`; `burn_input(j)` maps the core's
/// input index to burn's.
fn dense_to_core(
    dense: &DenseWeights,
    burn_input: impl Fn(usize) -> usize,
) -> anyhow::Result<Vec<f32>> {
    let (inputs, outputs) = (dense.inputs, dense.outputs);
    ensure!(
        dense.weight.len() == inputs * outputs,
        "dense weights have the wrong length"
    );
    let mut core = Vec::with_capacity(dense.weight.len());
    for o in 0..outputs {
        for j in 0..inputs {
            core.push(dense.weight[burn_input(j) * outputs + o]);
        }
    }
    Ok(core)
}

/// burn's flatten index of the core's fc1 input `j = (y*3 + x)*256 + c`.
pub fn fc1_burn_input(j: usize) -> usize {
    let (position, channel) = (j / FLAT_CHANNELS, j % FLAT_CHANNELS);
    channel * FLAT_SIDE * FLAT_SIDE + position
}

fn bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The network's weights in the core's layouts, as little-endian bytes.
#[derive(Clone, Debug)]
pub struct CoreWeights {
    layers: Vec<[Vec<u8>; 2]>,
}

impl CoreWeights {
    /// Reorders burn's weights (checking every shape against the core's network).
    pub fn from_burn(weights: &NetWeights) -> anyhow::Result<Self> {
        let mut layers = Vec::with_capacity(7);
        for (conv, layer) in weights.convs.iter().zip(&Layer::ALL[..3]) {
            ensure!(
                conv.out_channels == layer.outputs() && conv.in_channels * 9 == layer.fan_in(),
                "{}: {}x{} channels, the core expects {}x{}",
                layer.name(),
                conv.in_channels,
                conv.out_channels,
                layer.fan_in() / 9,
                layer.outputs()
            );
            layers.push([bytes(&conv_to_core(conv)?), bytes(&conv.bias)]);
        }
        for (index, (dense, layer)) in weights.dense.iter().zip(&Layer::ALL[3..]).enumerate() {
            ensure!(
                dense.outputs == layer.outputs() && dense.inputs == layer.fan_in(),
                "{}: {} -> {}, the core expects {} -> {}",
                layer.name(),
                dense.inputs,
                dense.outputs,
                layer.fan_in(),
                layer.outputs()
            );
            let core = if index == 0 {
                dense_to_core(dense, fc1_burn_input)?
            } else {
                dense_to_core(dense, |j| j)?
            };
            layers.push([bytes(&core), bytes(&dense.bias)]);
        }
        Ok(Self { layers })
    }

    /// The f32 model record, borrowing these bytes.
    pub fn record(&self) -> F32Record<'_> {
        let layers = std::array::from_fn(|i| {
            let [weights, bias] = &self.layers[i];
            F32LayerRecord { weights, bias }
        });
        F32Record {
            architecture: Architecture::REFERENCE,
            layers,
        }
    }

    /// The encoded f32 model file.
    pub fn to_file(&self) -> anyhow::Result<Vec<u8>> {
        self.record().to_vec().context("encoding the f32 model")
    }
}

/// The inverse of [`CoreWeights::from_burn`]: burn's layouts of an f32
/// model file's weights, to run a shipped model in burn.
pub fn burn_weights(record: &F32Record<'_>) -> NetWeights {
    let floats = |bytes: &[u8]| -> Vec<f32> {
        bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|&b| f32::from_le_bytes(b))
            .collect()
    };
    let convs = std::array::from_fn(|index| {
        let (layer, stored) = (Layer::ALL[index], &record.layers[index]);
        let (outputs, inputs) = (layer.outputs(), layer.fan_in() / 9);
        let core = floats(stored.weights);
        let mut weight = vec![0.0; core.len()];
        for o in 0..outputs {
            for ky in 0..3 {
                for kx in 0..3 {
                    for i in 0..inputs {
                        weight[((o * inputs + i) * 3 + ky) * 3 + kx] =
                            core[((o * 3 + ky) * 3 + kx) * inputs + i];
                    }
                }
            }
        }
        ConvWeights {
            out_channels: outputs,
            in_channels: inputs,
            kernel: [3, 3],
            weight,
            bias: floats(stored.bias),
        }
    });
    let dense = std::array::from_fn(|index| {
        let (layer, stored) = (Layer::ALL[3 + index], &record.layers[3 + index]);
        let (inputs, outputs) = (layer.fan_in(), layer.outputs());
        let core = floats(stored.weights);
        let mut weight = vec![0.0; core.len()];
        for o in 0..outputs {
            for j in 0..inputs {
                let burn_input = if index == 0 { fc1_burn_input(j) } else { j };
                weight[burn_input * outputs + o] = core[o * inputs + j];
            }
        }
        DenseWeights {
            inputs,
            outputs,
            weight,
            bias: floats(stored.bias),
        }
    });
    NetWeights { convs, dense }
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

/// Encodes `weights` as f32 and int8 model files, calibrating the int8
/// activation ranges on the first `calibration_images` images of `train`.
pub fn export(
    weights: &NetWeights,
    train: &Split,
    calibration_images: usize,
) -> anyhow::Result<Exported> {
    ensure!(
        calibration_images > 0,
        "--calibration must be at least 1 image"
    );
    let f32_file = CoreWeights::from_burn(weights)?.to_file()?;
    let model =
        F32Model::from_bytes(&f32_file).context("the exported f32 model does not load back")?;
    let images = (0..calibration_images.min(train.len()))
        .filter_map(|i| train.image(i))
        .filter_map(as_image);
    let calibration = Calibration::measure(&model, images);
    let int8_file = Int8Tensors::quantize(&model, &calibration)?.to_file()?;
    tinycnn::Int8Model::from_bytes(&int8_file)
        .context("the exported int8 model does not load back")?;
    Ok(Exported {
        f32_file,
        int8_file,
        calibration,
    })
}

/// A 784-pixel slice as an image.
pub fn as_image(pixels: &[u8]) -> Option<&Image> {
    pixels.try_into().ok()
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
    let exported = export(&run.model.weights(), &run.data.train, calibration_images)?;
    write_files(&run.out_dir, &exported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fc1_permutation_maps_channels_last_to_channels_first() {
        // Core input (y=0, x=0, c=0) is burn's 0; (y=0, x=0, c=1) is burn's 9;
        // (y=0, x=1, c=0) is burn's 1; the last of each is the last.
        assert_eq!(fc1_burn_input(0), 0);
        assert_eq!(fc1_burn_input(1), 9);
        assert_eq!(fc1_burn_input(256), 1);
        assert_eq!(fc1_burn_input(2 * 256 + 5), 5 * 9 + 2);
        assert_eq!(fc1_burn_input(2303), 2303);
        let mut seen = vec![false; 2304];
        for j in 0..2304 {
            seen[fc1_burn_input(j)] = true;
        }
        assert!(seen.iter().all(|&s| s), "a permutation");
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
        let core = conv_to_core(&conv).unwrap();
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
        assert_eq!(
            dense_to_core(&dense, |j| j).unwrap(),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
