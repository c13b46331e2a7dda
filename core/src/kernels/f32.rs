//! f32 kernels, for the host and for checking the int8 path against the
//! trained network.
//!
//! Weights are little-endian `f32` bytes borrowed from the model blob,
//! read as `[u8; 4]` chunks, so a blob needs no alignment.

use super::int8::{as_tensor, window};
use crate::arch::{KERNEL_TAPS, Tensor};

/// Accumulator lanes in [`dot`]: independent partial sums let the compiler
/// use SIMD (float addition is not associative, so it may not reorder a
/// single running sum itself).
const LANES: usize = 8;

/// A validated 3x3 convolution: `OC` filters of `3 x 3 x IC` weights
/// (layout `[out][ky][kx][in]`) and `OC` biases.
#[derive(Clone, Copy, Debug)]
pub struct ConvLayer<'a, const IC: usize, const OC: usize> {
    filters: &'a [[u8; 4]],
    bias: &'a [[u8; 4]],
}

impl<'a, const IC: usize, const OC: usize> ConvLayer<'a, IC, OC> {
    /// Wraps little-endian `f32` bytes if the lengths fit.
    pub fn new(filters: &'a [u8], bias: &'a [u8]) -> Option<Self> {
        let (filters, filters_rest) = filters.as_chunks::<4>();
        let (bias, bias_rest) = bias.as_chunks::<4>();
        (filters.len() == OC * KERNEL_TAPS * IC
            && bias.len() == OC
            && filters_rest.is_empty()
            && bias_rest.is_empty())
        .then_some(Self { filters, bias })
    }

    fn channels(&self) -> impl Iterator<Item = (&'a [[[u8; 4]; IC]], f32)> + 'a {
        self.filters
            .chunks_exact(KERNEL_TAPS * IC)
            .map(|filter| filter.as_chunks::<IC>().0)
            .zip(self.bias.iter().map(|&b| f32::from_le_bytes(b)))
    }
}

/// A validated dense layer: `OUT` rows of `IN` weights (`[out][in]`) and
/// `OUT` biases, with or without ReLU.
#[derive(Clone, Copy, Debug)]
pub struct DenseLayer<'a, const IN: usize, const OUT: usize> {
    rows: &'a [[u8; 4]],
    bias: &'a [[u8; 4]],
    relu: bool,
}

impl<'a, const IN: usize, const OUT: usize> DenseLayer<'a, IN, OUT> {
    /// Wraps little-endian `f32` bytes if the lengths fit.
    pub fn new(rows: &'a [u8], bias: &'a [u8], relu: bool) -> Option<Self> {
        let (rows, rows_rest) = rows.as_chunks::<4>();
        let (bias, bias_rest) = bias.as_chunks::<4>();
        (rows.len() == OUT * IN
            && bias.len() == OUT
            && rows_rest.is_empty()
            && bias_rest.is_empty())
        .then_some(Self { rows, bias, relu })
    }

    fn channels(&self) -> impl Iterator<Item = (&'a [[u8; 4]; IN], f32)> + 'a {
        self.rows
            .as_chunks::<IN>()
            .0
            .iter()
            .zip(self.bias.iter().map(|&b| f32::from_le_bytes(b)))
    }
}

/// Dot product in [`LANES`] partial sums.
#[inline(always)]
fn dot(activations: &[f32], weights: &[[u8; 4]]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let (activation_blocks, activation_tail) = activations.as_chunks::<LANES>();
    let (weight_blocks, weight_tail) = weights.as_chunks::<LANES>();
    for (xs, ws) in activation_blocks.iter().zip(weight_blocks) {
        for ((lane, &x), &w) in lanes.iter_mut().zip(xs).zip(ws) {
            *lane += x * f32::from_le_bytes(w);
        }
    }
    let mut sum = lanes.iter().sum::<f32>();
    for (&x, &w) in activation_tail.iter().zip(weight_tail) {
        sum += x * f32::from_le_bytes(w);
    }
    sum
}

/// 3x3 'same' convolution + bias + ReLU + 2x2 max-pool without holding the
/// full-resolution output. ReLU and max commute, so the pooled value is
/// `relu(max of the four sums) `; only the outputs the pool reads are computed.
pub fn conv3x3_relu_maxpool2<
    const H: usize,
    const W: usize,
    const IC: usize,
    const OC: usize,
    const PH: usize,
    const PW: usize,
>(
    input: &Tensor<f32, H, W, IC>,
    layer: &ConvLayer<'_, IC, OC>,
    output: &mut Tensor<f32, PH, PW, OC>,
) {
    const {
        assert!(
            PH == H / 2 && PW == W / 2,
            "pooled output must be half the input, rounded down"
        )
    };
    for (py, out_row) in output.iter_mut().enumerate() {
        for (px, out_pixel) in out_row.iter_mut().enumerate() {
            let windows = [
                window(input, 2 * py, 2 * px),
                window(input, 2 * py, 2 * px + 1),
                window(input, 2 * py + 1, 2 * px),
                window(input, 2 * py + 1, 2 * px + 1),
            ];
            for (out, (filter, bias)) in out_pixel.iter_mut().zip(layer.channels()) {
                let mut best = f32::NEG_INFINITY;
                for taps in &windows {
                    let mut sum = 0.0;
                    for (tap, weights) in taps.iter().zip(filter) {
                        if let Some(pixel) = tap {
                            sum += dot(*pixel, weights);
                        }
                    }
                    best = best.max(sum);
                }
                *out = (best + bias).max(0.0);
            }
        }
    }
}

/// Dense layer over a flattened `H x W x C` tensor (height, width, channel
/// order), with the layer's optional ReLU.
pub fn dense<const H: usize, const W: usize, const C: usize, const IN: usize, const OUT: usize>(
    input: &Tensor<f32, H, W, C>,
    layer: &DenseLayer<'_, IN, OUT>,
    output: &mut [f32; OUT],
) {
    const {
        assert!(
            IN == H * W * C,
            "dense input length must equal the flattened tensor"
        )
    };
    let flat = input.as_flattened().as_flattened();
    for (out, (row, bias)) in output.iter_mut().zip(layer.channels()) {
        let sum = dot(flat, row) + bias;
        *out = if layer.relu { sum.max(0.0) } else { sum };
    }
}

/// [`dense`] over a plain vector.
pub fn dense_vector<const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    layer: &DenseLayer<'_, IN, OUT>,
    output: &mut [f32; OUT],
) {
    dense::<1, 1, IN, IN, OUT>(as_tensor(input), layer, output);
}

/// ReLU in place.
pub fn relu(values: &mut [f32]) {
    for value in values {
        *value = value.max(0.0);
    }
}

/// Softmax: probabilities that sum to 1, computed stably (the largest logit
/// is subtracted before `exp`, so large logits cannot overflow).
pub fn softmax<const N: usize>(logits: &[f32; N]) -> [f32; N] {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probabilities = logits.map(|logit| libm::expf(logit - max));
    let total: f32 = probabilities.iter().sum();
    if total > 0.0 && total.is_finite() {
        for p in &mut probabilities {
            *p /= total;
        }
    }
    probabilities
}
