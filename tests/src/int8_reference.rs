//! An independent int8 implementation of any network a model file
//! describes, written from the TensorFlow Lite int8 specification and
//! `core/FORMAT.md` alone: plain loops over full-resolution tensors (no fused
//! pooling), 64- and 128-bit integers, and the rounding written out as the
//! definitions say. It shares no code with the core's kernels (only the file
//! parser, to get the description and the tensors), so the parity test that
//! compares the two is a second opinion.

use tinycnn::Int8Model;
use tinycnn::arch::{Activation, Architecture, Layer as LayerKind, Padding};
use tinycnn::format::Int8LayerRecord;

/// A tensor in height, width, channel order.
struct Activations {
    height: usize,
    width: usize,
    channels: usize,
    values: Vec<i32>,
}

/// One layer's constants, decoded once.
#[derive(Debug)]
struct Layer {
    weights: Vec<i32>,
    bias: Vec<i64>,
    multipliers: Vec<i64>,
    shifts: Vec<i64>,
    output_zero_point: i64,
}

impl Layer {
    fn new(stored: &Int8LayerRecord<'_>) -> Self {
        let words = |bytes: &[u8]| -> Vec<i64> {
            bytes
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect()
        };
        Self {
            weights: stored.weights.iter().map(|&w| i32::from(w as i8)).collect(),
            bias: words(stored.bias),
            multipliers: words(stored.multipliers),
            shifts: stored.shifts.iter().map(|&s| i64::from(s as i8)).collect(),
            output_zero_point: i64::from(stored.output.zero_point),
        }
    }

    fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// Bias, requantisation, zero point and clamp of output `o`'s accumulator,
    /// with `requantize` (a convolution's, rounding twice) or
    /// `requantize_once` (a dense layer's).
    fn finish(
        &self,
        o: usize,
        accumulator: i64,
        relu: bool,
        rounding: fn(i64, i64, i64, i64, i64) -> i64,
    ) -> i32 {
        let low = if relu { self.output_zero_point } else { -128 };
        rounding(
            accumulator + self.bias[o],
            self.multipliers[o],
            self.shifts[o],
            self.output_zero_point,
            low,
        ) as i32
    }
}

/// `floor(a / b)` for a positive `b`.
fn floor_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && a < 0 { q - 1 } else { q }
}

/// TFLite's requantisation of one accumulator, from the definitions:
/// 1. saturating left shift by `max(shift, 0)`;
/// 2. `SaturatingRoundingDoublingHighMul`: `floor(x * m / 2^31 + 1/2)`;
/// 3. `RoundingDivideByPOT` by `max(-shift, 0)`: nearest, ties away from 0;
/// 4. add the zero point, clamp to `[low, 127]`.
fn requantize(accumulator: i64, multiplier: i64, shift: i64, zero_point: i64, low: i64) -> i64 {
    let clamp32 = |v: i128| v.clamp(i128::from(i32::MIN), i128::from(i32::MAX));
    let accumulator = clamp32(i128::from(accumulator)); // TFLite holds it in an int32
    let left = shift.max(0);
    let right = (-shift).max(0) as u32;
    let shifted = clamp32(accumulator * (1i128 << left));
    let high = clamp32(floor_div(
        2 * shifted * i128::from(multiplier) + (1i128 << 31),
        1i128 << 32,
    ));
    let divisor = 1i128 << right;
    let magnitude = floor_div(2 * high.abs() + divisor, 2 * divisor);
    let rounded = if high < 0 { -magnitude } else { magnitude };
    let with_zero_point = clamp32(rounded + i128::from(zero_point));
    (with_zero_point as i64).clamp(low, 127)
}

/// TFLite's requantisation in a fully connected layer, from its definition:
/// `floor(x * m / 2^(31 - shift) + 1/2)`, then the zero point and the clamp.
fn requantize_once(
    accumulator: i64,
    multiplier: i64,
    shift: i64,
    zero_point: i64,
    low: i64,
) -> i64 {
    let clamp32 = |v: i128| v.clamp(i128::from(i32::MIN), i128::from(i32::MAX));
    let accumulator = clamp32(i128::from(accumulator));
    let divisor = 1i128 << (31 - shift);
    let rounded = clamp32(floor_div(
        2 * accumulator * i128::from(multiplier) + divisor,
        2 * divisor,
    ));
    let with_zero_point = clamp32(rounded + i128::from(zero_point));
    (with_zero_point as i64).clamp(low, 127)
}

/// `sum((x - zero_point) * w)`, widened to 64 bits.
fn dot(inputs: &[i32], zero_point: i32, weights: &[i32]) -> i64 {
    inputs
        .iter()
        .zip(weights)
        .map(|(&x, &w)| i64::from((x - zero_point) * w))
        .sum()
}

/// A `kernel x kernel` convolution with stride 1 and `pad` zeros on each
/// side, at full resolution; taps outside the image are skipped.
fn convolution(
    input: &Activations,
    zero_point: i32,
    layer: &Layer,
    kernel: usize,
    pad: usize,
    relu: bool,
) -> Activations {
    let (height, width, channels) = (input.height, input.width, input.channels);
    let out_height = height + 2 * pad + 1 - kernel;
    let out_width = width + 2 * pad + 1 - kernel;
    let outputs = layer.outputs();
    let mut values = vec![0; out_height * out_width * outputs];
    for y in 0..out_height {
        for x in 0..out_width {
            for o in 0..outputs {
                let mut accumulator = 0i64;
                for ky in 0..kernel {
                    for kx in 0..kernel {
                        let (Some(iy), Some(ix)) =
                            ((y + ky).checked_sub(pad), (x + kx).checked_sub(pad))
                        else {
                            continue;
                        };
                        if iy >= height || ix >= width {
                            continue;
                        }
                        let pixel = (iy * width + ix) * channels;
                        let tap = ((o * kernel + ky) * kernel + kx) * channels;
                        accumulator += dot(
                            &input.values[pixel..pixel + channels],
                            zero_point,
                            &layer.weights[tap..tap + channels],
                        );
                    }
                }
                values[(y * out_width + x) * outputs + o] =
                    layer.finish(o, accumulator, relu, requantize);
            }
        }
    }
    Activations {
        height: out_height,
        width: out_width,
        channels: outputs,
        values,
    }
}

/// 2x2 max-pool, stride 2, rounding the size down.
fn max_pool(input: &Activations) -> Activations {
    let (height, width, channels) = (input.height / 2, input.width / 2, input.channels);
    let at = |y: usize, x: usize, c: usize| input.values[(y * input.width + x) * channels + c];
    let mut values = Vec::with_capacity(height * width * channels);
    for y in 0..height {
        for x in 0..width {
            for c in 0..channels {
                let window = [
                    at(2 * y, 2 * x, c),
                    at(2 * y, 2 * x + 1, c),
                    at(2 * y + 1, 2 * x, c),
                    at(2 * y + 1, 2 * x + 1, c),
                ];
                values.push(window.into_iter().max().unwrap_or(i32::MIN));
            }
        }
    }
    Activations {
        height,
        width,
        channels,
        values,
    }
}

/// Dense layer over an input already flattened in height, width, channel order.
fn dense(input: &[i32], zero_point: i32, layer: &Layer, relu: bool) -> Vec<i32> {
    (0..layer.outputs())
        .map(|o| {
            let row = &layer.weights[o * input.len()..(o + 1) * input.len()];
            layer.finish(o, dot(input, zero_point, row), relu, requantize_once)
        })
        .collect()
}

/// The network, ready to classify.
#[derive(Debug)]
pub struct Reference {
    architecture: Architecture,
    input_scale: f64,
    input_zero_point: i32,
    layers: Vec<Layer>,
}

impl Reference {
    /// Decodes the description and the tensors of an int8 model.
    pub fn new(model: &Int8Model<'_>) -> Self {
        let input = model.input_quantization();
        Self {
            architecture: *model.architecture(),
            input_scale: f64::from(input.scale),
            input_zero_point: i32::from(input.zero_point),
            layers: model.layers().map(|record| Layer::new(&record)).collect(),
        }
    }

    /// The int8 logits of one image of 0-255 values (channels-last).
    pub fn logits(&self, image: &[u8]) -> Vec<i8> {
        // q = round(real / scale) + zero point, real = p / 255.
        let values = image
            .iter()
            .map(|&p| {
                (f64::from(p) / 255.0 / self.input_scale).round() as i32 + self.input_zero_point
            })
            .map(|q| q.clamp(-128, 127))
            .collect();
        let shape = self.architecture.input();
        let mut activations = Activations {
            height: shape.height,
            width: shape.width,
            channels: shape.channels,
            values,
        };
        let mut zero_point = self.input_zero_point;
        let mut layers = self.layers.iter();
        for layer in self.architecture.layers() {
            match *layer {
                LayerKind::Conv(conv) => {
                    let weights = layers.next().expect("a record per layer with weights");
                    let kernel = usize::from(conv.kernel);
                    let pad = match conv.padding {
                        Padding::Same => (kernel - 1) / 2,
                        Padding::Valid => 0,
                    };
                    let relu = conv.activation == Activation::Relu;
                    activations = convolution(&activations, zero_point, weights, kernel, pad, relu);
                    zero_point = weights.output_zero_point as i32;
                }
                LayerKind::MaxPool => activations = max_pool(&activations),
                LayerKind::Dropout(_) => {}
                LayerKind::Flatten => {
                    // Channels-last values already are in height, width, channel order.
                    activations.channels *= activations.height * activations.width;
                    activations.height = 1;
                    activations.width = 1;
                }
                LayerKind::Dense(dense_layer) => {
                    let weights = layers.next().expect("a record per layer with weights");
                    let relu = dense_layer.activation == Activation::Relu;
                    let values = dense(&activations.values, zero_point, weights, relu);
                    activations = Activations {
                        height: 1,
                        width: 1,
                        channels: values.len(),
                        values,
                    };
                    zero_point = weights.output_zero_point as i32;
                }
            }
        }
        activations.values.iter().map(|&v| v as i8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requantisation_follows_the_definitions() {
        let half = 1 << 30;
        // 65 * 0.5 = 32.5 rounds up to 33, then 33 / 2 = 16.5 rounds away to 17.
        assert_eq!(requantize(65, half, -1, 0, -128), 17);
        // -65 * 0.5 = -32.5 rounds up to -32, then -16 exactly.
        assert_eq!(requantize(-65, half, -1, 0, -128), -16);
        assert_eq!(requantize(-67, half, -1, 0, -128), -17); // -33.5 -> -33, -16.5 -> -17
        assert_eq!(requantize(1000, half, 0, 0, -128), 127);
        assert_eq!(requantize(-1000, half, 0, 5, 5), 5);
        assert_eq!(
            requantize(i64::from(i32::MAX), i64::from(i32::MAX), -31, 0, -128),
            1
        );
        assert_eq!(requantize(3, half, 2, 0, -128), 6);
    }

    #[test]
    fn dense_requantisation_rounds_once() {
        let half = 1 << 30;
        // 65 * 0.5 / 2 = 16.25: 16 (rounding twice gives 17: 32.5 -> 33 -> 16.5 -> 17).
        assert_eq!(requantize_once(65, half, -1, 0, -128), 16);
        assert_eq!(requantize(65, half, -1, 0, -128), 17);
        // -67 * 0.25 = -16.75: -17; 66 * 0.25 = 16.5: ties up, 17; -66 * 0.25 = -16.5: -16.
        assert_eq!(requantize_once(-67, half, -1, 0, -128), -17);
        assert_eq!(requantize_once(66, half, -1, 0, -128), 17);
        assert_eq!(requantize_once(-66, half, -1, 0, -128), -16);
        assert_eq!(requantize_once(3, half, 2, 0, -128), 6);
        assert_eq!(requantize_once(1000, half, 0, 0, -128), 127);
    }

    #[test]
    fn pooling_rounds_the_size_down() {
        let input = Activations {
            height: 3,
            width: 3,
            channels: 1,
            values: (0..9).collect(),
        };
        let pooled = max_pool(&input);
        assert_eq!(
            (pooled.height, pooled.width, pooled.values),
            (1, 1, vec![4])
        );
    }
}
