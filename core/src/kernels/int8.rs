//! int8 kernels with TensorFlow Lite semantics.
//!
//! Weights are symmetric per output channel (zero point 0, values
//! -127..=127), activations asymmetric per tensor (scale, zero point), biases
//! int32 at `input_scale * weight_scale`, and every output is requantised with
//! [`crate::quant::requantize`]. For the same quantised tensors the results
//! equal TFLite Micro's reference kernels bit for bit; [`super::reference`]
//! holds those plain kernels and the tests compare against them.

use crate::arch::{KERNEL_TAPS, Tensor};
use crate::quant::requantize;

/// Which implementation of the int8 kernels runs a network (see
/// [`crate::Int8Model::classify_with`]), or ran a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Backend {
    /// The portable kernels of this module, the reference for all others.
    Portable,
    /// The Arm DSP-extension kernels of [`super::dsp`] (`thumbv7em` targets,
    /// and `thumbv8m.main` with the extension enabled; see `build.rs`),
    /// bit-identical to the portable ones.
    #[cfg(tinycnn_arm_dsp)]
    ArmDsp,
}

impl Backend {
    /// The fastest backend this target has; what [`crate::Int8Model::classify`] uses.
    #[cfg(tinycnn_arm_dsp)]
    pub const FASTEST: Backend = Backend::ArmDsp;
    /// The fastest backend this target has; what [`crate::Int8Model::classify`] uses.
    #[cfg(not(tinycnn_arm_dsp))]
    pub const FASTEST: Backend = Backend::Portable;

    /// Short name for logs: `"portable"` or `"arm-dsp"`.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Portable => "portable",
            #[cfg(tinycnn_arm_dsp)]
            Backend::ArmDsp => "arm-dsp",
        }
    }
}

/// The per-output-channel integers that turn an int32 accumulator into an
/// int8 activation, plus the zero points around the layer.
#[derive(Clone, Copy, Debug)]
pub struct Requantization<'a> {
    bias: &'a [[u8; 4]],
    multipliers: &'a [[u8; 4]],
    shifts: &'a [u8],
    input_zero_point: i32,
    output_zero_point: i32,
    activation_min: i32,
}

impl<'a> Requantization<'a> {
    /// Checks that each per-channel slice holds `outputs` entries.
    ///
    /// `bias` and `multipliers` are little-endian `i32`s, `shifts` are `i8`s.
    /// With `relu`, the output is clamped below at its zero point (real 0).
    /// Returns `None` on a length mismatch; value ranges are the model
    /// loader's business (see [`crate::format`]).
    pub fn new(
        outputs: usize,
        bias: &'a [u8],
        multipliers: &'a [u8],
        shifts: &'a [u8],
        input_zero_point: i8,
        output_zero_point: i8,
        relu: bool,
    ) -> Option<Self> {
        let (bias, bias_rest) = bias.as_chunks::<4>();
        let (multipliers, multipliers_rest) = multipliers.as_chunks::<4>();
        let lengths_ok = bias.len() == outputs
            && bias_rest.is_empty()
            && multipliers.len() == outputs
            && multipliers_rest.is_empty()
            && shifts.len() == outputs;
        lengths_ok.then_some(Self {
            bias,
            multipliers,
            shifts,
            input_zero_point: i32::from(input_zero_point),
            output_zero_point: i32::from(output_zero_point),
            activation_min: if relu {
                i32::from(output_zero_point)
            } else {
                i32::from(i8::MIN)
            },
        })
    }

    /// Zero point of the layer's input activations.
    pub fn input_zero_point(&self) -> i32 {
        self.input_zero_point
    }

    /// Zero point of the layer's output activations.
    pub fn output_zero_point(&self) -> i32 {
        self.output_zero_point
    }

    /// Lowest output value: `-128`, or the output zero point after a ReLU.
    pub fn activation_min(&self) -> i32 {
        self.activation_min
    }

    /// Per output channel: `(bias, multiplier, shift)`.
    pub fn channels(&self) -> impl Iterator<Item = (i32, i32, i32)> + 'a {
        self.bias.iter().zip(self.multipliers).zip(self.shifts).map(
            |((&bias, &multiplier), &shift)| {
                (
                    i32::from_le_bytes(bias),
                    i32::from_le_bytes(multiplier),
                    i32::from(shift as i8),
                )
            },
        )
    }

    /// The per-channel constants as stored: little-endian `i32` biases and
    /// multipliers, `i8` shifts (for kernels that read them in assembly).
    #[cfg_attr(not(tinycnn_arm_dsp), allow(dead_code))]
    pub(crate) fn raw(&self) -> (&'a [[u8; 4]], &'a [[u8; 4]], &'a [u8]) {
        (self.bias, self.multipliers, self.shifts)
    }

    /// Adds the bias and requantises one accumulator of this layer.
    #[inline(always)]
    pub fn apply(&self, accumulator: i32, (bias, multiplier, shift): (i32, i32, i32)) -> i8 {
        requantize(
            accumulator.saturating_add(bias),
            multiplier,
            shift,
            self.output_zero_point,
            self.activation_min,
        )
    }
}

/// A validated 3x3 convolution: `OC` filters of `3 x 3 x IC` int8 weights
/// (layout `[out][ky][kx][in]`, TFLite's OHWI) and their requantisation.
#[derive(Clone, Copy, Debug)]
pub struct ConvLayer<'a, const IC: usize, const OC: usize> {
    filters: &'a [u8],
    requantization: Requantization<'a>,
}

impl<'a, const IC: usize, const OC: usize> ConvLayer<'a, IC, OC> {
    /// Wraps `filters` (`OC * 9 * IC` bytes holding `i8`s) if the lengths fit.
    pub fn new(filters: &'a [u8], requantization: Requantization<'a>) -> Option<Self> {
        (filters.len() == OC * KERNEL_TAPS * IC && requantization.shifts.len() == OC).then_some(
            Self {
                filters,
                requantization,
            },
        )
    }

    /// The raw weights, `[out][ky][kx][in]`.
    pub fn filters(&self) -> &'a [u8] {
        self.filters
    }

    /// The layer's requantisation.
    pub fn requantization(&self) -> &Requantization<'a> {
        &self.requantization
    }

    /// Filters with their channel's `(bias, multiplier, shift)`; each filter
    /// is nine taps of `IC` weights.
    pub(crate) fn channels(&self) -> impl Iterator<Item = (&'a [[u8; IC]], (i32, i32, i32))> + 'a {
        self.filters
            .chunks_exact(KERNEL_TAPS * IC)
            .map(|filter| filter.as_chunks::<IC>().0)
            .zip(self.requantization.channels())
    }
}

/// A validated dense layer: `OUT` rows of `IN` int8 weights (TFLite's
/// `[out][in]`) and their requantisation.
#[derive(Clone, Copy, Debug)]
pub struct DenseLayer<'a, const IN: usize, const OUT: usize> {
    rows: &'a [u8],
    requantization: Requantization<'a>,
}

impl<'a, const IN: usize, const OUT: usize> DenseLayer<'a, IN, OUT> {
    /// Wraps `rows` (`OUT * IN` bytes holding `i8`s) if the lengths fit.
    pub fn new(rows: &'a [u8], requantization: Requantization<'a>) -> Option<Self> {
        (rows.len() == OUT * IN && requantization.shifts.len() == OUT).then_some(Self {
            rows,
            requantization,
        })
    }

    /// The raw weights, `[out][in]`.
    pub fn rows(&self) -> &'a [u8] {
        self.rows
    }

    /// The layer's requantisation.
    pub fn requantization(&self) -> &Requantization<'a> {
        &self.requantization
    }

    pub(crate) fn channels(&self) -> impl Iterator<Item = (&'a [u8; IN], (i32, i32, i32))> + 'a {
        self.rows
            .as_chunks::<IN>()
            .0
            .iter()
            .zip(self.requantization.channels())
    }
}

/// `sum((x - zero_point) * w)` over one pixel's channels.
#[inline(always)]
fn dot<const N: usize>(activations: &[i8; N], weights: &[u8; N], zero_point: i16) -> i32 {
    activations
        .iter()
        .zip(weights)
        .map(|(&x, &w)| widened_product(x, w, zero_point))
        .sum()
}

/// `(x - zero_point) * w` for int8 `x`, `w` and zero point: the difference
/// fits an `i16` (-255..=255), and so does the product (at most 255 x 128);
/// computing both as `i16` lets the compiler use 16-bit multiply-adds
/// (`pmaddwd` on x86) for the dot products, several times faster than
/// 32-bit multiplies.
#[inline(always)]
fn widened_product(x: i8, w: u8, zero_point: i16) -> i32 {
    i32::from(i16::from(x) - zero_point) * i32::from(i16::from(w as i8))
}

/// The nine input pixels a 3x3 window centred on `(y, x)` reads; `None`
/// where the window hangs over the border ('same' zero padding, which in the
/// quantised domain contributes nothing because TFLite skips those taps).
#[inline(always)]
pub(crate) fn window<T, const H: usize, const W: usize, const C: usize>(
    input: &Tensor<T, H, W, C>,
    y: usize,
    x: usize,
) -> [Option<&[T; C]>; KERNEL_TAPS] {
    let pixel = |dy: usize, dx: usize| {
        input
            .get((y + dy).wrapping_sub(1))
            .and_then(|row| row.get((x + dx).wrapping_sub(1)))
    };
    [
        pixel(0, 0),
        pixel(0, 1),
        pixel(0, 2),
        pixel(1, 0),
        pixel(1, 1),
        pixel(1, 2),
        pixel(2, 0),
        pixel(2, 1),
        pixel(2, 2),
    ]
}

/// 3x3 'same' convolution + bias + ReLU + 2x2 max-pool, without ever
/// holding the full-resolution output: each pooled value is the requantised
/// maximum of its four accumulators.
///
/// That equals TFLite's convolution followed by its max-pool because
/// requantisation with a non-negative multiplier is monotonic (proved by the
/// tests in [`crate::quant`]), so taking the maximum before or after it gives
/// the same int8 value. Only the `2*PH x 2*PW` convolution outputs that the
/// pool reads are computed (for 7 -> 3, the last row and column are skipped).
pub fn conv3x3_relu_maxpool2<
    const H: usize,
    const W: usize,
    const IC: usize,
    const OC: usize,
    const PH: usize,
    const PW: usize,
>(
    input: &Tensor<i8, H, W, IC>,
    layer: &ConvLayer<'_, IC, OC>,
    output: &mut Tensor<i8, PH, PW, OC>,
) {
    const {
        assert!(
            PH == H / 2 && PW == W / 2,
            "pooled output must be half the input, rounded down"
        )
    };
    let zero_point = layer.requantization.input_zero_point as i16;
    for (py, out_row) in output.iter_mut().enumerate() {
        for (px, out_pixel) in out_row.iter_mut().enumerate() {
            let windows = [
                window(input, 2 * py, 2 * px),
                window(input, 2 * py, 2 * px + 1),
                window(input, 2 * py + 1, 2 * px),
                window(input, 2 * py + 1, 2 * px + 1),
            ];
            for (out, (filter, channel)) in out_pixel.iter_mut().zip(layer.channels()) {
                let mut best = i32::MIN;
                for taps in &windows {
                    let mut accumulator = 0;
                    for (tap, weights) in taps.iter().zip(filter) {
                        if let Some(pixel) = tap {
                            accumulator += dot(pixel, weights, zero_point);
                        }
                    }
                    best = best.max(accumulator);
                }
                *out = layer.requantization.apply(best, channel);
            }
        }
    }
}

/// Dense layer over a flattened `H x W x C` tensor (flattened in
/// height, width, channel order), with the layer's optional ReLU.
///
/// A plain vector is a `1 x 1 x N` tensor; [`dense_vector`] wraps it.
pub fn dense<const H: usize, const W: usize, const C: usize, const IN: usize, const OUT: usize>(
    input: &Tensor<i8, H, W, C>,
    layer: &DenseLayer<'_, IN, OUT>,
    output: &mut [i8; OUT],
) {
    const {
        assert!(
            IN == H * W * C,
            "dense input length must equal the flattened tensor"
        )
    };
    let flat = input.as_flattened().as_flattened();
    let zero_point = layer.requantization.input_zero_point as i16;
    for (out, (row, channel)) in output.iter_mut().zip(layer.channels()) {
        let accumulator: i32 = flat
            .iter()
            .zip(row)
            .map(|(&x, &w)| widened_product(x, w, zero_point))
            .sum();
        *out = layer.requantization.apply(accumulator, channel);
    }
}

/// [`dense`] over a plain vector.
pub fn dense_vector<const IN: usize, const OUT: usize>(
    input: &[i8; IN],
    layer: &DenseLayer<'_, IN, OUT>,
    output: &mut [i8; OUT],
) {
    dense::<1, 1, IN, IN, OUT>(as_tensor(input), layer, output);
}

/// A vector seen as a `1 x 1 x N` tensor.
pub(crate) fn as_tensor<T, const N: usize>(vector: &[T; N]) -> &Tensor<T, 1, 1, N> {
    core::array::from_ref(core::array::from_ref(vector))
}

/// int8 ReLU in place: real 0 is the zero point, so clamp below at it.
pub fn relu(values: &mut [i8], zero_point: i8) {
    for value in values {
        *value = (*value).max(zero_point);
    }
}
