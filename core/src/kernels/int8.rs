//! int8 kernels with TensorFlow Lite semantics.
//!
//! Weights are symmetric per output channel (zero point 0, values
//! -127..=127), activations asymmetric per tensor (scale, zero point), biases
//! int32 at `input_scale * weight_scale`, and every output is requantised with
//! [`crate::quant::requantize_with`]: rounding twice in a convolution, once in
//! a dense layer, as TFLite's reference `CONV_2D` and `FULLY_CONNECTED` do. For
//! the same quantised tensors the results equal TFLite's reference kernels bit
//! for bit; [`super::reference`] holds plain kernels and the tests compare
//! against them.
//!
//! Shapes are values checked once, when a layer view is built
//! ([`ConvLayer::new`], [`DenseLayer::new`]); a kernel given slices of other
//! lengths returns `None` and writes nothing.

use super::{ConvGeometry, Window};
use crate::arch::Activation;
use crate::quant::{Rounding, requantize_clamped};

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
    /// Kernels the caller supplied ([`crate::Int8Model::classify_with_kernels`],
    /// [`crate::F32Model::classify_with_kernels`]), bit-identical to the portable ones (int8).
    Caller,
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
            Backend::Caller => "caller's",
        }
    }
}

/// The integers that turn one output channel's int32 accumulator into int8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelRequant {
    /// Added to the accumulator (at scale `input_scale * weight_scale`).
    pub bias: i32,
    /// Q31 multiplier, non-negative.
    pub multiplier: i32,
    /// Power-of-two exponent, -31..=30 (positive shifts left).
    pub shift: i32,
}

/// A layer's per-output-channel requantisation, borrowed from the model file,
/// plus the zero points around the layer and its activation.
#[derive(Clone, Copy, Debug)]
pub struct Requantization<'a> {
    bias: &'a [[u8; 4]],
    multipliers: &'a [[u8; 4]],
    shifts: &'a [u8],
    input_zero_point: i32,
    output_zero_point: i32,
    activation_min: i32,
    activation_max: i32,
    rounding: Rounding,
    /// The Arm DSP kernels' requantisation path for these constants, decided when the model
    /// was loaded; 0 when the kernel decides it (a walk over every channel's constants).
    decided_path: u8,
}

impl<'a> Requantization<'a> {
    /// Checks that each per-channel slice holds `outputs` entries.
    ///
    /// `bias` and `multipliers` are little-endian `i32`s, `shifts` are `i8`s.
    /// With [`Activation::Relu`] the output is clamped below at its zero point
    /// (real 0). Returns `None` on a length mismatch; value ranges are the
    /// model loader's business (see [`crate::format`]).
    pub fn new(
        outputs: usize,
        bias: &'a [u8],
        multipliers: &'a [u8],
        shifts: &'a [u8],
        input_zero_point: i8,
        output_zero_point: i8,
        activation: Activation,
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
            activation_min: match activation {
                // ReLU6's upper bound needs the output scale: the caller sets it
                // with `with_activation_range`.
                Activation::Relu | Activation::Relu6 => i32::from(output_zero_point),
                Activation::None => i32::from(i8::MIN),
            },
            activation_max: i32::from(i8::MAX),
            rounding: Rounding::Double,
            decided_path: 0,
        })
    }

    /// The same requantisation clamping its outputs to `[min, max]` instead
    /// of what [`Requantization::new`] derived from the activation, for
    /// TensorFlow Lite's other fused activations (ReLU6:
    /// [`crate::quant::relu_range`]). Both bounds are taken into the int8
    /// range; with `max < min` every output is `max`, as TFLite's
    /// `max`-then-`min` clamp gives.
    ///
    /// [`Requantization::apply`] and the [`super::general`] kernels honour
    /// the maximum. Kernels that requantise by themselves (the host's
    /// AVX-512 convolution) clamp at 127 and ignore it, so the network
    /// runner sends layers with ReLU6 to the portable kernels; the Arm DSP
    /// kernels take their fast path only when the maximum is 127.
    pub fn with_activation_range(self, min: i32, max: i32) -> Self {
        let int8 = |value: i32| value.clamp(i32::from(i8::MIN), i32::from(i8::MAX));
        Self {
            activation_min: int8(min),
            activation_max: int8(max),
            decided_path: 0,
            ..self
        }
    }

    /// The requantisation with the DSP kernels' path decided ahead (when the model was
    /// loaded, from these very constants and range); the kernels then skip deciding it.
    pub(crate) fn with_decided_path(self, code: u8) -> Self {
        Self {
            decided_path: code,
            ..self
        }
    }

    /// The path [`with_decided_path`](Self::with_decided_path) gave, or 0.
    #[cfg_attr(not(tinycnn_arm_dsp), allow(dead_code))]
    pub(crate) fn decided_path(&self) -> u8 {
        self.decided_path
    }

    /// How [`Requantization::apply`] rounds: twice (a convolution's, the
    /// default) or once (a dense layer's; [`DenseLayer::new`] sets it).
    pub fn rounding(&self) -> Rounding {
        self.rounding
    }

    /// Number of output channels.
    pub fn outputs(&self) -> usize {
        self.shifts.len()
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

    /// Highest output value: `127` unless
    /// [`with_activation_range`](Self::with_activation_range) lowered it.
    pub fn activation_max(&self) -> i32 {
        self.activation_max
    }

    /// The constants of every output channel, in order.
    pub fn channels(&self) -> impl Iterator<Item = ChannelRequant> + 'a {
        self.bias.iter().zip(self.multipliers).zip(self.shifts).map(
            |((&bias, &multiplier), &shift)| ChannelRequant {
                bias: i32::from_le_bytes(bias),
                multiplier: i32::from_le_bytes(multiplier),
                shift: i32::from(shift as i8),
            },
        )
    }

    /// The per-channel constants as stored: little-endian `i32` biases and
    /// multipliers, `i8` shifts (for kernels that read them in assembly or
    /// vector registers).
    pub fn raw(&self) -> (&'a [[u8; 4]], &'a [[u8; 4]], &'a [u8]) {
        (self.bias, self.multipliers, self.shifts)
    }

    /// Adds the bias and requantises one accumulator of this layer.
    #[inline(always)]
    pub fn apply(&self, accumulator: i32, channel: ChannelRequant) -> i8 {
        match self.rounding {
            Rounding::Double => self.requantize(Rounding::Double, accumulator, channel),
            Rounding::Single => self.apply_once(accumulator, channel),
        }
    }

    /// [`Requantization::apply`] for a convolution (rounding twice), for the
    /// convolution kernels' inner loops: a choice there changes how the
    /// compiler lays the loop out (measured: 16 % more instructions on a
    /// Cortex-M0). Only for a layer whose rounding is [`Rounding::Double`].
    #[inline(always)]
    pub(crate) fn apply_conv(&self, accumulator: i32, channel: ChannelRequant) -> i8 {
        debug_assert!(self.rounding == Rounding::Double);
        self.requantize(Rounding::Double, accumulator, channel)
    }

    /// [`Requantization::apply`] for a dense layer. Out of line: a dense layer
    /// requantises one value per output against a whole row of products, and
    /// inlining the 64-bit rounding into every kernel costs flash.
    #[inline(never)]
    fn apply_once(&self, accumulator: i32, channel: ChannelRequant) -> i8 {
        self.requantize(Rounding::Single, accumulator, channel)
    }

    #[inline(always)]
    fn requantize(&self, rounding: Rounding, accumulator: i32, channel: ChannelRequant) -> i8 {
        requantize_clamped(
            rounding,
            accumulator.saturating_add(channel.bias),
            channel.multiplier,
            channel.shift,
            self.output_zero_point,
            self.activation_min,
            self.activation_max,
        )
    }
}

/// A validated convolution: `filters` filters of `K x K x input channels`
/// int8 weights (layout `[out][ky][kx][in]`, TFLite's OHWI), their
/// requantisation, and the geometry.
#[derive(Clone, Copy, Debug)]
pub struct ConvLayer<'a> {
    geometry: ConvGeometry,
    filters: &'a [u8],
    requantization: Requantization<'a>,
}

impl<'a> ConvLayer<'a> {
    /// Wraps `filters` (`i8`s as bytes) if the lengths fit the geometry.
    pub fn new(
        geometry: ConvGeometry,
        filters: &'a [u8],
        requantization: Requantization<'a>,
    ) -> Option<Self> {
        (geometry.is_consistent()
            && filters.len() == geometry.filters * geometry.fan_in()
            && requantization.outputs() == geometry.filters)
            .then_some(Self {
                geometry,
                filters,
                requantization,
            })
    }

    /// The layer's shapes.
    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// The raw weights, `[out][ky][kx][in]`.
    pub fn filters(&self) -> &'a [u8] {
        self.filters
    }

    /// The layer's requantisation.
    pub fn requantization(&self) -> &Requantization<'a> {
        &self.requantization
    }
}

/// A validated dense layer: `outputs` rows of `inputs` int8 weights
/// (TFLite's `[out][in]`) and their requantisation.
#[derive(Clone, Copy, Debug)]
pub struct DenseLayer<'a> {
    inputs: usize,
    rows: &'a [u8],
    requantization: Requantization<'a>,
}

impl<'a> DenseLayer<'a> {
    /// Wraps `rows` (`outputs * inputs` bytes holding `i8`s) if the lengths fit.
    ///
    /// The layer rounds its requantisation once ([`Rounding::Single`]), as
    /// TensorFlow Lite's `FULLY_CONNECTED` does.
    pub fn new(inputs: usize, rows: &'a [u8], requantization: Requantization<'a>) -> Option<Self> {
        let requantization = Requantization {
            rounding: Rounding::Single,
            decided_path: 0,
            ..requantization
        };
        (inputs > 0 && rows.len() == requantization.outputs() * inputs).then_some(Self {
            inputs,
            rows,
            requantization,
        })
    }

    /// The layer with its requantisation rounding as given: twice
    /// ([`Rounding::Double`]) for TensorFlow Lite Micro's `FULLY_CONNECTED`,
    /// which model format version 3 follows.
    pub fn with_rounding(self, rounding: Rounding) -> Self {
        // A path decided for the other rounding no longer holds.
        Self {
            requantization: Requantization {
                rounding,
                decided_path: 0,
                ..self.requantization
            },
            ..self
        }
    }

    /// The layer with its DSP requantisation path decided ahead
    /// ([`Requantization::with_decided_path`]).
    pub(crate) fn with_decided_path(self, code: u8) -> Self {
        Self {
            requantization: self.requantization.with_decided_path(code),
            ..self
        }
    }

    /// Inputs per output.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Outputs.
    pub fn outputs(&self) -> usize {
        self.requantization.outputs()
    }

    /// The raw weights, `[out][in]`.
    pub fn rows(&self) -> &'a [u8] {
        self.rows
    }

    /// The layer's requantisation.
    pub fn requantization(&self) -> &Requantization<'a> {
        &self.requantization
    }
}

/// `sum((x - zero_point) * w)` over equally long slices.
#[inline(always)]
fn dot(activations: &[i8], weights: &[u8], zero_point: i16) -> i32 {
    activations
        .iter()
        .zip(weights)
        .map(|(&x, &w)| widened_product(x, w, zero_point))
        .sum()
}

/// `(x - zero_point) * w` for int8 `x`, `w` and zero point: the difference
/// fits an `i16` (-255..=255), and so does the product (at most 255 x 127);
/// computing both as `i16` lets the compiler use 16-bit multiply-adds
/// (`pmaddwd` on x86) for the dot products, several times faster than
/// 32-bit multiplies.
#[inline(always)]
fn widened_product(x: i8, w: u8, zero_point: i16) -> i32 {
    i32::from(i16::from(x) - zero_point) * i32::from(i16::from(w as i8))
}

/// The accumulator of one filter at one position: one dot product per kernel
/// row inside the input (taps in the zero padding are skipped, as TFLite
/// skips them), each over the row's contiguous `taps x channels` values.
#[inline(always)]
fn accumulate(input: &[i8], filter: &[u8], window: &Window, zero_point: i16) -> Option<i32> {
    let mut accumulator = 0;
    for &(input_start, filter_start) in window.rows() {
        let activations = input.get(input_start..input_start + window.run)?;
        let weights = filter.get(filter_start..filter_start + window.run)?;
        accumulator += dot(activations, weights, zero_point);
    }
    Some(accumulator)
}

/// Output channels computed together: each input value is loaded (and its
/// zero point subtracted) once for four filters, which on cores without SIMD
/// (Cortex-M0, M3) cuts the instructions per multiply-accumulate by a third.
const CHANNEL_BLOCK: usize = 4;

/// [`accumulate`] for four filters at once.
#[inline(always)]
fn accumulate_block(
    input: &[i8],
    filters: [&[u8]; CHANNEL_BLOCK],
    window: &Window,
    zero_point: i16,
) -> Option<[i32; CHANNEL_BLOCK]> {
    let mut sums = [0i32; CHANNEL_BLOCK];
    let [f0, f1, f2, f3] = filters;
    for &(input_start, filter_start) in window.rows() {
        let run = filter_start..filter_start + window.run;
        let activations = input.get(input_start..input_start + window.run)?;
        let (w0, w1, w2, w3) = (
            f0.get(run.clone())?,
            f1.get(run.clone())?,
            f2.get(run.clone())?,
            f3.get(run)?,
        );
        multiply_accumulate_four(&mut sums, activations, [w0, w1, w2, w3], zero_point);
    }
    Some(sums)
}

/// `sums[f] += sum((x - zero_point) * weights[f][i])` over equally long slices, one tap per
/// loop iteration.
///
/// On a Cortex-M3 or M4 the five pointers of this loop do not all fit in registers beside the
/// four sums; there the kernels take four taps per iteration instead
/// (`multiply_accumulate_four_by_four`), which reloads them, and pays for the loop's own
/// instructions, once instead of four times. A Cortex-M0's eight registers spill either way
/// and the longer loop costs more than it saves, and elsewhere the compiler vectorises this
/// one, so those run this loop (firmware/README.md has the counts).
#[inline(always)]
fn multiply_accumulate_four_by_one(
    sums: &mut [i32; CHANNEL_BLOCK],
    activations: &[i8],
    weights: [&[u8]; CHANNEL_BLOCK],
    zero_point: i16,
) {
    let [w0, w1, w2, w3] = weights;
    for ((((&x, &a), &b), &c), &d) in activations.iter().zip(w0).zip(w1).zip(w2).zip(w3) {
        tap(sums, x, [a, b, c, d], zero_point);
    }
}

/// `sums[f] += (x - zero_point) * weights[f]`.
#[inline(always)]
fn tap(sums: &mut [i32; CHANNEL_BLOCK], x: i8, weights: [u8; CHANNEL_BLOCK], zero_point: i16) {
    let value = i32::from(i16::from(x) - zero_point);
    let [a, b, c, d] = weights;
    sums[0] += value * i32::from(a as i8);
    sums[1] += value * i32::from(b as i8);
    sums[2] += value * i32::from(c as i8);
    sums[3] += value * i32::from(d as i8);
}

#[cfg(all(target_arch = "arm", not(tinycnn_armv6m)))]
use multiply_accumulate_four_by_four as multiply_accumulate_four;
#[cfg(not(all(target_arch = "arm", not(tinycnn_armv6m))))]
use multiply_accumulate_four_by_one as multiply_accumulate_four;

/// [`multiply_accumulate_four_by_one`] four taps per loop iteration, for the Cortex-M3, M4 and
/// other Thumb-2 cores (and the tests elsewhere).
#[cfg(any(test, all(target_arch = "arm", not(tinycnn_armv6m))))]
#[inline(always)]
fn multiply_accumulate_four_by_four(
    sums: &mut [i32; CHANNEL_BLOCK],
    activations: &[i8],
    weights: [&[u8]; CHANNEL_BLOCK],
    zero_point: i16,
) {
    const TAPS: usize = 4;
    if activations.len() < TAPS {
        // A single-channel convolution's rows (3 or 5 taps): the blocks would only cost.
        return multiply_accumulate_four_by_one(sums, activations, weights, zero_point);
    }
    let [w0, w1, w2, w3] = weights;
    let (x_blocks, x_rest) = activations.as_chunks::<TAPS>();
    let (a_blocks, a_rest) = w0.as_chunks::<TAPS>();
    let (b_blocks, b_rest) = w1.as_chunks::<TAPS>();
    let (c_blocks, c_rest) = w2.as_chunks::<TAPS>();
    let (d_blocks, d_rest) = w3.as_chunks::<TAPS>();
    let blocks = x_blocks
        .iter()
        .zip(a_blocks)
        .zip(b_blocks)
        .zip(c_blocks)
        .zip(d_blocks);
    for ((((x, a), b), c), d) in blocks {
        // Over arrays of a constant length: unrolled into one iteration's body. The four sums
        // as a loop rather than `tap`'s four statements: the compiler keeps them in registers
        // better this way on these cores (on the Cortex-M0 it is the other way round).
        for ((((&x, &a), &b), &c), &d) in x.iter().zip(a).zip(b).zip(c).zip(d) {
            let value = i32::from(i16::from(x) - zero_point);
            for (sum, w) in sums.iter_mut().zip([a, b, c, d]) {
                *sum += value * i32::from(w as i8);
            }
        }
    }
    multiply_accumulate_four_by_one(sums, x_rest, [a_rest, b_rest, c_rest, d_rest], zero_point);
}

/// Convolution + bias + activation, and with [`ConvGeometry::pooled`] the 2x2
/// max-pool that follows, without ever holding the full-resolution output:
/// each pooled value is the requantised maximum of its four accumulators.
///
/// That equals TFLite's convolution followed by its max-pool because
/// requantisation with a non-negative multiplier is monotonic (proved by the
/// tests in [`crate::quant`]), so taking the maximum before or after it gives
/// the same int8 value. Only the convolution outputs the pool reads are
/// computed (for 7 -> 3, the last row and column are skipped).
// One copy serves every layer: inlined into the runner, the kernels would
// grow the firmware by kilobytes for no measurable speed.
#[inline(never)]
pub fn conv(input: &[i8], layer: &ConvLayer<'_>, output: &mut [i8]) -> Option<()> {
    let geometry = &layer.geometry;
    let out_shape = geometry.output();
    if input.len() != geometry.input.values() || output.len() != out_shape.values() {
        return None;
    }
    let zero_point = layer.requantization.input_zero_point as i16;
    let fan_in = geometry.fan_in().max(1);
    let pixels = output.chunks_exact_mut(out_shape.channels.max(1));
    for (pixel_index, out_pixel) in pixels.enumerate() {
        let y = pixel_index / out_shape.width.max(1);
        let x = pixel_index % out_shape.width.max(1);
        let windows = geometry.windows(y, x);
        let mut filters = layer.filters.chunks_exact(fan_in);
        let mut constants = layer.requantization.channels();
        let (blocks, rest) = out_pixel.as_chunks_mut::<CHANNEL_BLOCK>();
        for block in blocks {
            let four = [
                filters.next()?,
                filters.next()?,
                filters.next()?,
                filters.next()?,
            ];
            let mut best = [i32::MIN; CHANNEL_BLOCK];
            for window in &windows {
                let sums = accumulate_block(input, four, window, zero_point)?;
                for (best, sum) in best.iter_mut().zip(sums) {
                    *best = (*best).max(sum);
                }
            }
            for (out, best) in block.iter_mut().zip(best) {
                *out = layer.requantization.apply_conv(best, constants.next()?);
            }
        }
        for out in rest {
            let filter = filters.next()?;
            let mut best = i32::MIN;
            for window in &windows {
                best = best.max(accumulate(input, filter, window, zero_point)?);
            }
            *out = layer.requantization.apply_conv(best, constants.next()?);
        }
    }
    Some(())
}

/// Dense layer over a vector (a flattened map, in height, width, channel
/// order), with the layer's activation; four rows at a time, as [`conv`].
#[inline(never)]
pub fn dense(input: &[i8], layer: &DenseLayer<'_>, output: &mut [i8]) -> Option<()> {
    if input.len() != layer.inputs || output.len() != layer.outputs() {
        return None;
    }
    let zero_point = layer.requantization.input_zero_point as i16;
    let mut rows = layer.rows.chunks_exact(layer.inputs.max(1));
    let mut constants = layer.requantization.channels();
    let (blocks, rest) = output.as_chunks_mut::<CHANNEL_BLOCK>();
    for block in blocks {
        let four = [rows.next()?, rows.next()?, rows.next()?, rows.next()?];
        let mut sums = [0i32; CHANNEL_BLOCK];
        multiply_accumulate_four(&mut sums, input, four, zero_point);
        for (out, sum) in block.iter_mut().zip(sums) {
            *out = layer.requantization.apply(sum, constants.next()?);
        }
    }
    for out in rest {
        let row = rows.next()?;
        *out = layer
            .requantization
            .apply(dot(input, row, zero_point), constants.next()?);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    proptest! {
        /// The Thumb-2 cores' four-taps-an-iteration loop, which only runs there, against the
        /// one-tap loop, on every length around its blocks and tail.
        #[test]
        fn four_taps_an_iteration_sum_what_one_tap_does(
            taps in proptest::collection::vec((any::<i8>(), any::<[i8; 4]>()), 0..40),
            zero_point in any::<i8>(),
            start in any::<[i32; 4]>().prop_map(|s| s.map(|v| v / 4)),
        ) {
            let activations: Vec<i8> = taps.iter().map(|(x, _)| *x).collect();
            let rows: Vec<Vec<u8>> = (0..4)
                .map(|f| taps.iter().map(|(_, w)| w[f] as u8).collect())
                .collect();
            let weights = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
            let zero_point = i16::from(zero_point);
            let (mut one, mut four) = (start, start);
            multiply_accumulate_four_by_one(&mut one, &activations, weights, zero_point);
            multiply_accumulate_four_by_four(&mut four, &activations, weights, zero_point);
            prop_assert_eq!(one, four);
        }
    }
}
