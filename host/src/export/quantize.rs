//! Post-training int8 quantisation of an f32 model, following the
//! TensorFlow Lite int8 specification: per-output-channel symmetric weights,
//! per-tensor asymmetric activations calibrated on sample images, int32
//! biases, and Q31 multipliers with shifts. All the float work happens here so
//! that `tinycnn` only executes integers.

use crate::model_files::floats;
pub use crate::model_files::quantize_multiplier;
use anyhow::{Context, bail};
use tinycnn::arch::{Architecture, Layer};
use tinycnn::format::{F32Model, Int8LayerRecord, Int8Record, QuantParams};

/// Affine int8 quantisation of an activation range, widened to include 0 so
/// that real 0 (ReLU's floor, the padding) is exactly representable.
pub fn activation_quantization(min: f32, max: f32) -> QuantParams {
    let min = f64::from(min.min(0.0));
    let max = f64::from(max.max(0.0));
    let range = max - min;
    let scale = if range > 0.0 {
        range / 255.0
    } else {
        1.0 / 255.0
    };
    let zero_point = (-128.0 - min / scale).round().clamp(-128.0, 127.0) as i8;
    QuantParams {
        scale: scale as f32,
        zero_point,
    }
}

/// Symmetric per-channel quantisation of `outputs` rows of weights: each
/// row's largest magnitude maps to 127. Returns the int8 weights and the
/// scales.
pub fn quantize_weights(weights: &[f32], outputs: usize) -> (Vec<i8>, Vec<f32>) {
    let fan_in = weights.len() / outputs.max(1);
    let mut quantized = Vec::with_capacity(weights.len());
    let mut scales = Vec::with_capacity(outputs);
    for row in weights.chunks_exact(fan_in) {
        let largest = row.iter().fold(0f32, |m, w| m.max(w.abs()));
        // An all-zero channel quantises to zeros under any scale; 1 keeps the
        // scale valid (finite, positive).
        let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
        quantized.extend(
            row.iter()
                .map(|w| (w / scale).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (quantized, scales)
}

/// Symmetric per-channel quantisation of a depthwise kernel `[ky][kx][outputs]`: channel
/// `o`'s scale comes from column `o` (its taps), the layout stays as it is.
pub fn quantize_depthwise_weights(weights: &[f32], outputs: usize) -> (Vec<i8>, Vec<f32>) {
    let taps = weights.len() / outputs.max(1);
    let rows: Vec<f32> = (0..weights.len())
        .map(|i| weights[(i % taps) * outputs + i / taps])
        .collect();
    let (quantized_rows, scales) = quantize_weights(&rows, outputs);
    let quantized = (0..weights.len())
        .map(|i| quantized_rows[(i % outputs) * taps + i / outputs])
        .collect();
    (quantized, scales)
}

/// Running minimum and maximum of each layer record's output (after its
/// activation and any fused pool; a projection's is the shortcut, an
/// addition's the sum) over the calibration images.
#[derive(Clone, Debug)]
pub struct Calibration {
    ranges: Vec<(f32, f32)>,
    images: usize,
}

impl Calibration {
    /// Runs `model` over `images` and records every layer's output range.
    pub fn measure<'i>(
        model: &F32Model<'_>,
        images: impl IntoIterator<Item = &'i [u8]>,
    ) -> anyhow::Result<Self> {
        let layers = model.architecture().record_layers();
        let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); layers];
        let mut scratch = vec![0f32; model.scratch_len()];
        let mut count = 0;
        let mut values = Vec::new();
        for image in images {
            let observe = |observed: &tinycnn::Observation<'_, f32>| {
                let weighted = observed.step.layer.record;
                if let Some(range) = weighted.and_then(|index| ranges.get_mut(index)) {
                    for &v in observed.output {
                        range.0 = range.0.min(v);
                        range.1 = range.1.max(v);
                    }
                }
            };
            match model.front_end() {
                // A keyword network reads its features dequantised, as it was trained.
                Some(front_end) => {
                    values.clear();
                    crate::data::audio::dequantise_into(&front_end, image, &mut values);
                    model.run_values(&values, &mut scratch, observe)
                }
                None => model.classify_observed(image, &mut scratch, observe),
            }
            .context("calibrating the int8 ranges")?;
            count += 1;
        }
        Ok(Self {
            ranges,
            images: count,
        })
    }

    /// Output range of the layer record number `index` (0-based).
    pub fn range(&self, index: usize) -> (f32, f32) {
        self.ranges.get(index).copied().unwrap_or((0.0, 0.0))
    }

    /// Number of images measured.
    pub fn images(&self) -> usize {
        self.images
    }
}

/// The int8 tensors of a quantised model, owned; [`Int8Tensors::to_file`]
/// encodes them.
#[derive(Clone, Debug)]
pub struct Int8Tensors {
    architecture: Architecture,
    /// The input's quantisation: pixels, or the front end's output.
    input: QuantParams,
    /// The audio front end of a keyword network.
    front_end: Option<tinycnn::audio::FrontEndConfig>,
    outputs: Vec<QuantParams>,
    /// Per layer with weights: weight scales, weights, bias, multipliers, shifts.
    layers: Vec<[Vec<u8>; 5]>,
}

impl Int8Tensors {
    /// Quantises an f32 model with the activation ranges of `calibration`.
    pub fn quantize(model: &F32Model<'_>, calibration: &Calibration) -> anyhow::Result<Self> {
        if calibration.images() == 0 {
            bail!("no calibration images: int8 activation ranges cannot be measured");
        }
        // The main line's quantisation, and the shortcut's inside a residual block.
        // A keyword network reads the front end's bytes as they are.
        let first = model.front_end().map_or(QuantParams::INPUT, |front_end| {
            crate::data::audio::quantisation(&front_end)
        });
        let mut input = first;
        let mut shortcut = input;
        let mut outputs = Vec::new();
        let mut layers = Vec::new();
        let mut records = model.layers();
        for info in model.architecture().iter() {
            if info.layer == Layer::Residual(tinycnn::arch::Shortcut::Identity) {
                shortcut = input;
            }
            let Some(index) = info.record else {
                continue;
            };
            let stored = records
                .next()
                .with_context(|| format!("{}: the model has no record for it", info.name))?;
            let (min, max) = calibration.range(index);
            let output = activation_quantization(min, max);
            match info.layer {
                Layer::Add(_) => {
                    let params = tinycnn::quant::add_params(
                        [input.scale, shortcut.scale],
                        [input.zero_point, shortcut.zero_point],
                        output.scale,
                        output.zero_point,
                    );
                    let (multipliers, shifts) = params.record_multipliers();
                    layers.push([
                        Vec::new(),
                        Vec::new(),
                        Vec::new(),
                        multipliers.iter().flat_map(|m| m.to_le_bytes()).collect(),
                        shifts.iter().map(|&s| s as i8 as u8).collect(),
                    ]);
                    outputs.push(output);
                    input = output;
                    continue;
                }
                Layer::Softmax => bail!("{}: host export does not quantise a softmax", info.name),
                _ => {}
            }
            let weights = floats(stored.weights);
            let bias = floats(stored.bias);
            let (weights_q, weight_scales) = match info.layer {
                Layer::Depthwise(_) => quantize_depthwise_weights(&weights, info.outputs()),
                _ => quantize_weights(&weights, info.outputs()),
            };
            let mut bias_q = Vec::new();
            let mut multipliers = Vec::new();
            let mut shifts = Vec::new();
            for (&b, &weight_scale) in bias.iter().zip(&weight_scales) {
                let bias_scale = f64::from(input.scale) * f64::from(weight_scale);
                let q = (f64::from(b) / bias_scale)
                    .round()
                    .clamp(f64::from(i32::MIN), f64::from(i32::MAX));
                bias_q.extend((q as i32).to_le_bytes());
                let (multiplier, shift) = quantize_multiplier(bias_scale / f64::from(output.scale));
                multipliers.extend(multiplier.to_le_bytes());
                shifts.push(shift as i8 as u8);
            }
            layers.push([
                weight_scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
                weights_q.iter().map(|&w| w as u8).collect(),
                bias_q,
                multipliers,
                shifts,
            ]);
            outputs.push(output);
            // A projection reads the block's input and writes the shortcut: the main line
            // keeps its quantisation.
            if matches!(info.layer, Layer::Residual(_)) {
                shortcut = output;
            } else {
                input = output;
            }
        }
        Ok(Self {
            architecture: *model.architecture(),
            input: first,
            front_end: model.front_end(),
            outputs,
            layers,
        })
    }

    /// The layer records, borrowing these tensors.
    pub fn layer_records(&self) -> Vec<Int8LayerRecord<'_>> {
        self.layers
            .iter()
            .zip(&self.outputs)
            .map(
                |([weight_scales, weights, bias, multipliers, shifts], &output)| Int8LayerRecord {
                    output,
                    weight_scales,
                    weights,
                    bias,
                    multipliers,
                    shifts,
                },
            )
            .collect()
    }

    /// The encoded int8 model file, without class names.
    pub fn to_file(&self) -> anyhow::Result<Vec<u8>> {
        self.to_file_named(&[])
    }

    /// The encoded int8 model file, naming its classes (none: `&[]`).
    pub fn to_file_named(&self, class_names: &[&str]) -> anyhow::Result<Vec<u8>> {
        let layers = self.layer_records();
        let record = Int8Record {
            architecture: self.architecture,
            input: self.input,
            layers: &layers,
            class_names,
            front_end: self.front_end,
        };
        record.to_vec().context("encoding the int8 model")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinycnn::quant;

    #[test]
    fn multiplier_round_trips_the_real_value() {
        for real in [
            1e-9,
            0.000_123,
            0.003_9,
            0.25,
            0.5,
            0.75,
            0.999_999_999,
            1.0,
            1.5,
            3.0,
            1000.0,
        ] {
            let (multiplier, shift) = quantize_multiplier(real);
            assert!(
                (1 << 30..=i32::MAX).contains(&multiplier),
                "{real}: {multiplier}"
            );
            let back = f64::from(multiplier) / (1u64 << 31) as f64 * 2f64.powi(shift);
            assert!((back - real).abs() <= real * 1e-9, "{real} -> {back}");
        }
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        // Rounding up to 2^31 renormalises.
        assert_eq!(quantize_multiplier(0.999_999_999_9), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        assert_eq!(quantize_multiplier(1e-12), (0, 0));
        assert_eq!(quantize_multiplier(f64::NAN), (0, 0));
        assert_eq!(quantize_multiplier(1e12), (i32::MAX, 30));
    }

    #[test]
    fn quantised_multiply_matches_float() {
        for real in [0.000_37, 0.012, 0.4, 0.93] {
            let (multiplier, shift) = quantize_multiplier(real);
            for x in [-100_000, -777, -1, 0, 1, 999, 123_456] {
                let got = quant::multiply_by_quantized_multiplier(x, multiplier, shift);
                assert!(
                    (f64::from(got) - f64::from(x) * real).abs() <= 1.0,
                    "{x} * {real} = {got}"
                );
            }
        }
    }

    #[test]
    fn activation_ranges_include_zero() {
        let relu = activation_quantization(0.0, 6.375);
        assert_eq!(relu.zero_point, -128);
        assert!((relu.scale - 0.025).abs() < 1e-7);
        let logits = activation_quantization(-10.0, 15.5);
        assert!((logits.scale - 0.1).abs() < 1e-6);
        assert_eq!(logits.zero_point, -28);
        // Real 0 maps exactly onto the zero point.
        assert_eq!(logits.dequantize(logits.zero_point), 0.0);
        // A positive-only range still contains 0.
        assert_eq!(activation_quantization(2.0, 4.0).zero_point, -128);
        assert_eq!(activation_quantization(-4.0, -2.0).zero_point, 127);
        // A degenerate range gets a valid scale.
        assert!(activation_quantization(0.0, 0.0).scale > 0.0);
    }

    #[test]
    fn weights_use_the_symmetric_range() {
        let (q, scales) = quantize_weights(&[0.5, -1.0, 0.25, 0.0, 0.0, 0.0], 2);
        assert_eq!(q, [64, -127, 32, 0, 0, 0]);
        assert_eq!(scales, [1.0 / 127.0, 1.0]);
    }
}
