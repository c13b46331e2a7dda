//! f32 kernels, for the host and for checking the int8 path against the
//! trained network.
//!
//! Weights are little-endian `f32` bytes borrowed from the model blob,
//! read as `[u8; 4]` chunks, so a blob needs no alignment.

use super::{ConvGeometry, Window};
use crate::arch::Activation;

/// Accumulator lanes in [`dot`]: independent partial sums let the compiler
/// use SIMD (float addition is not associative, so it may not reorder a
/// single running sum itself).
const LANES: usize = 8;

fn floats(bytes: &[u8]) -> Option<&[[u8; 4]]> {
    let (floats, rest) = bytes.as_chunks::<4>();
    rest.is_empty().then_some(floats)
}

pub(crate) fn activate(sum: f32, activation: Activation) -> f32 {
    match activation {
        Activation::Relu => sum.max(0.0),
        Activation::Relu6 => sum.clamp(0.0, 6.0),
        Activation::None => sum,
    }
}

/// A validated convolution: filters of `K x K x input channels` weights
/// (layout `[out][ky][kx][in]`), one bias per filter, the activation and the
/// geometry.
#[derive(Clone, Copy, Debug)]
pub struct ConvLayer<'a> {
    geometry: ConvGeometry,
    filters: &'a [[u8; 4]],
    bias: &'a [[u8; 4]],
    activation: Activation,
}

impl<'a> ConvLayer<'a> {
    /// Wraps little-endian `f32` bytes if the lengths fit the geometry.
    pub fn new(
        geometry: ConvGeometry,
        filters: &'a [u8],
        bias: &'a [u8],
        activation: Activation,
    ) -> Option<Self> {
        let (filters, bias) = (floats(filters)?, floats(bias)?);
        (geometry.is_consistent()
            && filters.len() == geometry.filters * geometry.fan_in()
            && bias.len() == geometry.filters)
            .then_some(Self {
                geometry,
                filters,
                bias,
                activation,
            })
    }

    /// The layer's shapes.
    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// The layer's activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// The weights, little-endian `f32`s in the layout `[out][ky][kx][in]`.
    pub fn filters(&self) -> &'a [[u8; 4]] {
        self.filters
    }

    /// One little-endian `f32` bias per filter.
    pub fn biases(&self) -> &'a [[u8; 4]] {
        self.bias
    }

    /// Each filter's weights with its bias, in order.
    pub(crate) fn channels(&self) -> impl Iterator<Item = (&'a [[u8; 4]], f32)> + 'a {
        self.filters
            .chunks_exact(self.geometry.fan_in().max(1))
            .zip(self.bias.iter().map(|&b| f32::from_le_bytes(b)))
    }
}

/// A validated dense layer: rows of `inputs` weights (`[out][in]`), one bias
/// per row, and the activation.
#[derive(Clone, Copy, Debug)]
pub struct DenseLayer<'a> {
    inputs: usize,
    rows: &'a [[u8; 4]],
    bias: &'a [[u8; 4]],
    activation: Activation,
}

impl<'a> DenseLayer<'a> {
    /// Wraps little-endian `f32` bytes if the lengths fit.
    pub fn new(
        inputs: usize,
        rows: &'a [u8],
        bias: &'a [u8],
        activation: Activation,
    ) -> Option<Self> {
        let (rows, bias) = (floats(rows)?, floats(bias)?);
        (inputs > 0 && rows.len() == bias.len() * inputs).then_some(Self {
            inputs,
            rows,
            bias,
            activation,
        })
    }

    /// Outputs.
    pub fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// Inputs per output.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// The layer's activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Each row of weights with its bias, in order.
    pub(crate) fn channels(&self) -> impl Iterator<Item = (&'a [[u8; 4]], f32)> + 'a {
        self.rows
            .chunks_exact(self.inputs.max(1))
            .zip(self.bias.iter().map(|&b| f32::from_le_bytes(b)))
    }
}

/// Dot product in [`LANES`] partial sums.
#[inline(always)]
pub(crate) fn dot(activations: &[f32], weights: &[[u8; 4]]) -> f32 {
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

/// The sum of one filter at one position: a dot product per tap (pixel)
/// inside the input, added in kernel order.
#[inline(always)]
fn accumulate(input: &[f32], filter: &[[u8; 4]], window: &Window, channels: usize) -> Option<f32> {
    let mut sum = 0.0;
    for &(input_start, filter_start) in window.rows() {
        let activations = input.get(input_start..input_start + window.run)?;
        let weights = filter.get(filter_start..filter_start + window.run)?;
        let taps = activations
            .chunks_exact(channels)
            .zip(weights.chunks_exact(channels));
        for (pixel, tap_weights) in taps {
            sum += dot(pixel, tap_weights);
        }
    }
    Some(sum)
}

/// Convolution + bias + activation, and with [`ConvGeometry::pooled`] the 2x2
/// max-pool after it, without holding the full-resolution output. Adding
/// the bias and the (monotonic) activation commute with the maximum, so the
/// pooled value is `activation(max of the four sums + bias)`; only the
/// outputs the pool reads are computed.
pub fn conv(input: &[f32], layer: &ConvLayer<'_>, output: &mut [f32]) -> Option<()> {
    let geometry = &layer.geometry;
    let out_shape = geometry.output();
    if input.len() != geometry.input.values() || output.len() != out_shape.values() {
        return None;
    }
    let channels = geometry.input.channels.max(1);
    let pixels = output.chunks_exact_mut(out_shape.channels.max(1));
    for (pixel_index, out_pixel) in pixels.enumerate() {
        let y = pixel_index / out_shape.width.max(1);
        let x = pixel_index % out_shape.width.max(1);
        let windows = geometry.windows(y, x);
        for (out, (filter, bias)) in out_pixel.iter_mut().zip(layer.channels()) {
            let mut best = f32::NEG_INFINITY;
            for window in &windows {
                best = best.max(accumulate(input, filter, window, channels)?);
            }
            *out = activate(best + bias, layer.activation);
        }
    }
    Some(())
}

/// Dense layer over a vector (a flattened map, in height, width, channel
/// order), with the layer's activation.
pub fn dense(input: &[f32], layer: &DenseLayer<'_>, output: &mut [f32]) -> Option<()> {
    if input.len() != layer.inputs || output.len() != layer.outputs() {
        return None;
    }
    for (out, (row, bias)) in output.iter_mut().zip(layer.channels()) {
        *out = activate(dot(input, row) + bias, layer.activation);
    }
    Some(())
}

/// Softmax in place: logits become probabilities that sum to 1, computed
/// stably (the largest logit is subtracted before `exp`, so large logits
/// cannot overflow).
pub fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for value in values.iter_mut() {
        *value = libm::expf(*value - max);
        total += *value;
    }
    if total > 0.0 && total.is_finite() {
        for value in values {
            *value /= total;
        }
    }
}
