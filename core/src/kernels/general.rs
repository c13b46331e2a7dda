//! Portable kernels for layers beyond the MNIST network's: convolutions and
//! depthwise convolutions of any kernel size and stride, average and max
//! pooling, element-wise addition and softmax, in int8 with TensorFlow Lite
//! Micro's reference semantics (bit for bit) and in f32.
//!
//! A layer's shapes are a [`WindowGeometry`] with TensorFlow's padding
//! already resolved ([`WindowGeometry::resolve`]). Output pixel `(y, x)`
//! reads the input at `(y * stride + ky - pad_top, x * stride + kx -
//! pad_left)` for every kernel tap `(ky, kx)`; taps outside the input are
//! skipped, as TFLite skips them. For an int8 convolution that equals padding
//! with the input zero point (real 0); an average pool divides by the taps
//! inside the input only.
//!
//! Tensors are channels-last (NHWC). The kernels check the lengths of their
//! slices against the geometry and return `None` when they do not fit,
//! before writing anything. They favour small code over speed: one loop nest
//! serves every shape, so a Cortex-M0 can run them too.
//!
//! The int8 integer constants come from [`crate::quant`]: [`add_params`],
//! [`softmax_params`], [`relu_range`] and [`quantize_multiplier`] compute them
//! from the real scales as TFLite Micro's `Prepare` functions do.
//!
//! [`add_params`]: crate::quant::add_params
//! [`softmax_params`]: crate::quant::softmax_params
//! [`relu_range`]: crate::quant::relu_range
//! [`quantize_multiplier`]: crate::quant::quantize_multiplier

#[cfg(test)]
mod tests;

use super::int8::Requantization;
use crate::arch::Shape;
use crate::quant::{
    multiply_by_quantized_multiplier, rounding_divide_by_pot as rounding_divide,
    saturating_rounding_doubling_high_mul as high_mul,
};

/// A windowed layer's shapes with TensorFlow's padding already resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowGeometry {
    /// Input map.
    pub input: Shape,
    /// Output map.
    pub output: Shape,
    /// Kernel rows.
    pub kernel_height: usize,
    /// Kernel columns.
    pub kernel_width: usize,
    /// Input rows between consecutive output rows.
    pub stride_height: usize,
    /// Input columns between consecutive output columns.
    pub stride_width: usize,
    /// Padding rows above the input (those below follow from the shapes).
    pub pad_top: usize,
    /// Padding columns left of the input.
    pub pad_left: usize,
}

impl WindowGeometry {
    /// The geometry TensorFlow gives a `kernel_height x kernel_width` window
    /// moved by the strides over `input`, with `output_channels` output
    /// channels.
    ///
    /// Along each axis, 'same' padding (`same`) gives `ceil(input / stride)`
    /// outputs and 'valid' `ceil((input - kernel + 1) / stride)`; the padding
    /// is what the outputs' windows need beyond the input,
    /// `max(0, (output - 1) * stride + kernel - input)`, the smaller half of
    /// it before the input. `None` for zero sizes, or 'valid' with a kernel
    /// larger than the input.
    pub const fn resolve(
        input: Shape,
        kernel_height: usize,
        kernel_width: usize,
        stride_height: usize,
        stride_width: usize,
        same: bool,
        output_channels: usize,
    ) -> Option<WindowGeometry> {
        let rows = resolve_axis(input.height, kernel_height, stride_height, same);
        let columns = resolve_axis(input.width, kernel_width, stride_width, same);
        let (Some((height, pad_top)), Some((width, pad_left))) = (rows, columns) else {
            return None;
        };
        let geometry = WindowGeometry {
            input,
            output: Shape::new(height, width, output_channels),
            kernel_height,
            kernel_width,
            stride_height,
            stride_width,
            pad_top,
            pad_left,
        };
        if geometry.is_consistent() {
            Some(geometry)
        } else {
            None
        }
    }

    /// Whether the kernels can run this geometry: no size is zero, and every
    /// output's window overlaps the input (the padding before the input is
    /// smaller than the kernel, and the last window starts before the
    /// input's end). Every geometry from [`resolve`](Self::resolve) is.
    pub const fn is_consistent(&self) -> bool {
        self.input.channels > 0
            && self.output.channels > 0
            && covers(
                self.input.height,
                self.output.height,
                self.kernel_height,
                self.stride_height,
                self.pad_top,
            )
            && covers(
                self.input.width,
                self.output.width,
                self.kernel_width,
                self.stride_width,
                self.pad_left,
            )
    }

    /// Kernel taps, `kernel_height * kernel_width`; `None` on overflow.
    pub(crate) const fn taps(&self) -> Option<usize> {
        self.kernel_height.checked_mul(self.kernel_width)
    }

    /// Whether `input` and `output` have the geometry's lengths, and it is
    /// consistent.
    pub(crate) fn fits<T, U>(&self, input: &[T], output: &[U]) -> bool {
        self.is_consistent()
            && self.taps().is_some()
            && input.len() == self.input.values()
            && output.len() == self.output.values()
    }

    /// The window of every output pixel, in output order.
    pub(crate) fn windows(&self) -> impl Iterator<Item = Window> + '_ {
        (0..self.output.height).flat_map(move |y| {
            let rows = Span::new(
                y,
                self.stride_height,
                self.pad_top,
                self.kernel_height,
                self.input.height,
            );
            (0..self.output.width).map(move |x| Window {
                rows,
                columns: Span::new(
                    x,
                    self.stride_width,
                    self.pad_left,
                    self.kernel_width,
                    self.input.width,
                ),
                kernel_width: self.kernel_width,
                input_width: self.input.width,
            })
        })
    }
}

/// TensorFlow's output size and padding before the input along one axis.
const fn resolve_axis(
    input: usize,
    kernel: usize,
    stride: usize,
    same: bool,
) -> Option<(usize, usize)> {
    if input == 0 || kernel == 0 || stride == 0 || (!same && input < kernel) {
        return None;
    }
    let output = if same {
        input.div_ceil(stride)
    } else {
        (input - kernel) / stride + 1
    };
    let Some(start) = (output - 1).checked_mul(stride) else {
        return None;
    };
    let Some(span) = start.checked_add(kernel) else {
        return None;
    };
    Some((output, span.saturating_sub(input) / 2))
}

/// Whether along one axis every output's window overlaps the input.
const fn covers(input: usize, output: usize, kernel: usize, stride: usize, pad: usize) -> bool {
    if input == 0 || output == 0 || kernel == 0 || stride == 0 || pad >= kernel {
        return false;
    }
    match ((output - 1).checked_mul(stride), input.checked_add(pad)) {
        (Some(last_start), Some(end)) => last_start < end,
        _ => false,
    }
}

/// The kernel taps along one axis that land inside the input for one output
/// coordinate: `first..end`, the first of them reading input coordinate
/// `input`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub(crate) first: usize,
    pub(crate) end: usize,
    pub(crate) input: usize,
}

impl Span {
    /// For output coordinate `at`: tap `k` reads `at * stride + k - pad`,
    /// inside the input when that lies in `0..side`. A window wholly in the
    /// padding is the empty span at its end (`first == end == kernel`).
    #[inline(always)]
    pub(crate) fn new(at: usize, stride: usize, pad: usize, kernel: usize, side: usize) -> Span {
        let origin = at * stride;
        let first = pad.saturating_sub(origin).min(kernel);
        let end = (side + pad).saturating_sub(origin).min(kernel).max(first);
        Span {
            first,
            end,
            input: (origin + first).saturating_sub(pad),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.end - self.first
    }
}

/// The taps of one output pixel inside the input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub(crate) rows: Span,
    pub(crate) columns: Span,
    kernel_width: usize,
    input_width: usize,
}

/// One kernel row's taps inside the input: `len` taps from tap index `tap`
/// (`ky * kernel_width + kx`), reading `len` input pixels from pixel index
/// `pixel` (`y * input_width + x`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    pub(crate) tap: usize,
    pub(crate) pixel: usize,
    pub(crate) len: usize,
}

impl Window {
    /// The runs of the kernel rows inside the input, top to bottom.
    pub(crate) fn runs(self) -> impl Iterator<Item = Run> {
        let Window {
            rows,
            columns,
            kernel_width,
            input_width,
        } = self;
        (rows.first..rows.end)
            .zip(rows.input..)
            .map(move |(ky, y)| Run {
                tap: ky * kernel_width + columns.first,
                pixel: y * input_width + columns.input,
                len: columns.len(),
            })
    }

    /// Channel `channel` of each input pixel the window reads, row by row.
    fn values<T: Copy>(
        self,
        input: &[T],
        channels: usize,
        channel: usize,
    ) -> impl Iterator<Item = T> {
        self.runs().flat_map(move |run| {
            input
                .get(run.pixel * channels + channel..)
                .unwrap_or(&[])
                .iter()
                .step_by(channels)
                .take(run.len)
                .copied()
        })
    }
}

/// `max(value, min)` then `min(.., max)`, TFLite's clamp (with `max < min`
/// it gives `max`), then into the int8 range.
fn clamp_i8(value: i32, min: i32, max: i32) -> i8 {
    value
        .max(min)
        .min(max)
        .clamp(i32::from(i8::MIN), i32::from(i8::MAX)) as i8
}

/// The mean of `count` values summing to `sum`, as TFLite's `AVERAGE_POOL_2D` rounds it,
/// clamped like [`clamp_i8`]; `None` for no values.
pub(crate) fn average_of(sum: i32, count: i32, min: i32, max: i32) -> Option<i8> {
    // C's division truncates toward zero, as Rust's does: adding half the count away from
    // zero first rounds halves away from zero.
    let half = count / 2;
    let numerator = if sum > 0 { sum + half } else { sum - half };
    Some(clamp_i8(numerator.checked_div(count)?, min, max))
}

/// `(x - zero_point) * w` for int8 values: at most 255 * 128 in magnitude.
fn product(x: i8, w: u8, zero_point: i32) -> i32 {
    (i32::from(x) - zero_point) * i32::from(w as i8)
}

/// int8 convolution, TFLite Micro's `CONV_2D` (`ConvPerChannel`).
///
/// `weights` are `i8`s (as bytes) in the layout `[output channel][ky][kx][input
/// channel]`; `requantization` holds one bias, multiplier and shift per
/// output channel, the zero points and the activation range. Each output is
/// `sum((x - input_zero_point) * w)` over the taps inside the input, then
/// [`Requantization::apply`]: the bias added, scaled rounding twice (for a
/// requantisation from [`Requantization::new`]), the output zero point added
/// and clamped. The sum wraps on `i32` overflow, which takes more than 65,536
/// products per output (TFLite's C++ overflows there too).
// Out of line: inlined into the runner, every kernel would widen its stack frame.
#[inline(never)]
pub fn conv(
    input: &[i8],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &Requantization<'_>,
    output: &mut [i8],
) -> Option<()> {
    let channels = geometry.input.channels;
    let filter_len = geometry.taps()?.checked_mul(channels)?;
    let fits = geometry.fits(input, output)
        && Some(weights.len()) == filter_len.checked_mul(geometry.output.channels)
        && requantization.outputs() == geometry.output.channels;
    if !fits {
        return None;
    }
    let zero_point = requantization.input_zero_point();
    let pixels = output.chunks_exact_mut(geometry.output.channels);
    for (pixel, window) in pixels.zip(geometry.windows()) {
        let filters = weights.chunks_exact(filter_len);
        for ((out, filter), constants) in
            pixel.iter_mut().zip(filters).zip(requantization.channels())
        {
            let mut accumulator = 0i32;
            for run in window.runs() {
                // A kernel row's taps inside the input are contiguous in both.
                let values = input.get(run.pixel * channels..(run.pixel + run.len) * channels)?;
                let taps = filter.get(run.tap * channels..(run.tap + run.len) * channels)?;
                for (&x, &w) in values.iter().zip(taps) {
                    accumulator = accumulator.wrapping_add(product(x, w, zero_point));
                }
            }
            *out = requantization.apply(accumulator, constants);
        }
    }
    Some(())
}

/// int8 depthwise convolution, TFLite Micro's `DEPTHWISE_CONV_2D`
/// (`DepthwiseConvPerChannel`).
///
/// The output has `multiplier` channels per input channel: output channel
/// `oc` filters input channel `oc / multiplier`. `weights` are `i8`s in
/// TFLite's layout `[ky][kx][output channel]`; the rest is as [`conv`].
/// `None` unless the output channels are a multiple of the input channels.
// Out of line: inlined into the runner, every kernel would widen its stack frame.
#[inline(never)]
pub fn depthwise(
    input: &[i8],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &Requantization<'_>,
    output: &mut [i8],
) -> Option<()> {
    let (channels, outputs) = (geometry.input.channels, geometry.output.channels);
    let fits = geometry.fits(input, output)
        && outputs % channels == 0
        && Some(weights.len()) == geometry.taps()?.checked_mul(outputs)
        && requantization.outputs() == outputs;
    if !fits {
        return None;
    }
    let multiplier = outputs / channels;
    let zero_point = requantization.input_zero_point();
    // Output channels in blocks of accumulators, the taps outside and the channels inside:
    // each tap adds a contiguous run of channels (input and weights alike).
    const BLOCK: usize = 16;
    for (pixel, window) in output.chunks_exact_mut(outputs).zip(geometry.windows()) {
        let mut constants = requantization.channels();
        for (block, out_block) in pixel.chunks_mut(BLOCK).enumerate() {
            let base = block * BLOCK;
            let len = out_block.len();
            let mut accumulators = [0i32; BLOCK];
            for run in window.runs() {
                for step in 0..run.len {
                    let at = (run.pixel + step) * channels;
                    let values = input.get(at..at + channels)?;
                    let taps = weights
                        .get((run.tap + step) * outputs + base..)?
                        .get(..len)?;
                    if multiplier == 1 {
                        let values = values.get(base..base + len)?;
                        for ((sum, &x), &w) in accumulators.iter_mut().zip(values).zip(taps) {
                            *sum = sum.wrapping_add(product(x, w, zero_point));
                        }
                    } else {
                        for (offset, (sum, &w)) in accumulators.iter_mut().zip(taps).enumerate() {
                            let x = *values.get((base + offset) / multiplier)?;
                            *sum = sum.wrapping_add(product(x, w, zero_point));
                        }
                    }
                }
            }
            for ((out, sum), constants) in out_block
                .iter_mut()
                .zip(accumulators)
                .zip(constants.by_ref())
            {
                *out = requantization.apply(sum, constants);
            }
        }
    }
    Some(())
}

/// Whether a pool's shapes fit: consistent, as many output channels as
/// input ones, and the slices' lengths.
fn pool_fits<T>(input: &[T], geometry: &WindowGeometry, output: &[T]) -> bool {
    geometry.fits(input, output) && geometry.input.channels == geometry.output.channels
}

/// int8 average pool, TFLite Micro's `AVERAGE_POOL_2D`: the mean of the
/// window's values inside the input (taps in the padding are not counted),
/// rounded half away from zero, clamped to `[activation_min,
/// activation_max]`. Input and output share their quantisation.
// Out of line: inlined into the runner, every kernel would widen its stack frame.
#[inline(never)]
pub fn average_pool(
    input: &[i8],
    geometry: &WindowGeometry,
    activation_min: i32,
    activation_max: i32,
    output: &mut [i8],
) -> Option<()> {
    if !pool_fits(input, geometry, output) {
        return None;
    }
    let channels = geometry.input.channels;
    // Channels in blocks of sums, the window's pixels outside and the channels inside:
    // each pixel adds a contiguous run of channels.
    const BLOCK: usize = 32;
    for (pixel, window) in output.chunks_exact_mut(channels).zip(geometry.windows()) {
        let count = i32::try_from(window.rows.len() * window.columns.len()).ok()?;
        for (block, out_block) in pixel.chunks_mut(BLOCK).enumerate() {
            let base = block * BLOCK;
            let mut sums = [0i32; BLOCK];
            for run in window.runs() {
                for step in 0..run.len {
                    let at = (run.pixel + step) * channels + base;
                    let values = input.get(at..at + out_block.len())?;
                    for (sum, &x) in sums.iter_mut().zip(values) {
                        *sum = sum.wrapping_add(i32::from(x));
                    }
                }
            }
            for (out, &sum) in out_block.iter_mut().zip(&sums) {
                *out = average_of(sum, count, activation_min, activation_max)?;
            }
        }
    }
    Some(())
}

/// int8 max pool, TFLite Micro's `MAX_POOL_2D`: the largest of the window's
/// values inside the input, clamped to `[activation_min, activation_max]`.
// Out of line: inlined into the runner, every kernel would widen its stack frame.
#[inline(never)]
pub fn max_pool(
    input: &[i8],
    geometry: &WindowGeometry,
    activation_min: i32,
    activation_max: i32,
    output: &mut [i8],
) -> Option<()> {
    if !pool_fits(input, geometry, output) {
        return None;
    }
    let channels = geometry.input.channels;
    for (pixel, window) in output.chunks_exact_mut(channels).zip(geometry.windows()) {
        for (channel, out) in pixel.iter_mut().enumerate() {
            let largest = window
                .values(input, channels, channel)
                .fold(i8::MIN, i8::max);
            *out = clamp_i8(i32::from(largest), activation_min, activation_max);
        }
    }
    Some(())
}

/// The integer constants of an int8 element-wise addition
/// ([`crate::quant::add_params`] computes them from the scales).
///
/// Each input `x` becomes `(x - zero_point) * 2^LEFT_SHIFT` scaled by its
/// multiplier (to twice the larger input scale); their sum is scaled by the
/// output multiplier and offset by the output zero point. TFLite stores the
/// negated input zero points (its "offsets"); this struct stores the zero
/// points themselves. Shifts are powers of two as in [`crate::quant`]
/// (negative: divide), and are at most 0 for the multipliers TFLite accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddParams {
    /// Zero points of the two inputs.
    pub input_zero_points: [i32; 2],
    /// Q31 multipliers of the two inputs.
    pub input_multipliers: [i32; 2],
    /// Power-of-two exponents of the two inputs' multipliers.
    pub input_shifts: [i32; 2],
    /// Q31 multiplier of the sum.
    pub output_multiplier: i32,
    /// Power-of-two exponent of the sum's multiplier.
    pub output_shift: i32,
    /// Zero point of the output.
    pub output_zero_point: i32,
    /// Lowest output value.
    pub activation_min: i32,
    /// Highest output value.
    pub activation_max: i32,
}

impl AddParams {
    /// Bits of headroom the inputs get before scaling (TFLite's `left_shift`
    /// for int8).
    pub const LEFT_SHIFT: u32 = 20;

    /// The multipliers and shifts as a model file's addition record holds
    /// them: the first input's, the second's, the sum's.
    pub const fn record_multipliers(&self) -> ([i32; 3], [i32; 3]) {
        (
            [
                self.input_multipliers[0],
                self.input_multipliers[1],
                self.output_multiplier,
            ],
            [
                self.input_shifts[0],
                self.input_shifts[1],
                self.output_shift,
            ],
        )
    }

    /// The same addition without saturation checks, when every shift is a right shift (as
    /// TFLite's converter gives: input multipliers below 1, the output's too for the scales
    /// it picks) and no zero point lies outside the int8 range.
    pub(crate) fn right_shifts_only(&self) -> Option<RightShiftAdd> {
        let in_range = |zero_point: i32| (-128..=127).contains(&zero_point);
        if !self.input_zero_points.iter().all(|&z| in_range(z)) {
            return None;
        }
        Some(RightShiftAdd {
            zero_points: self.input_zero_points,
            inputs: [
                RightShiftScaling::new(self.input_multipliers[0], self.input_shifts[0])?,
                RightShiftScaling::new(self.input_multipliers[1], self.input_shifts[1])?,
            ],
            output: RightShiftScaling::new(self.output_multiplier, self.output_shift)?,
            output_zero_point: self.output_zero_point,
            activation_min: self.activation_min,
            activation_max: self.activation_max,
        })
    }

    /// Input `input` (0 or 1) of value `x` shifted left and scaled, as `AddFunc` scales it
    /// before the sum.
    pub(crate) fn scaled_input(&self, input: usize, x: i8) -> i32 {
        let zero_point = self.input_zero_points.get(input).copied().unwrap_or(0);
        let multiplier = self.input_multipliers.get(input).copied().unwrap_or(0);
        let shift = self.input_shifts.get(input).copied().unwrap_or(0);
        let shifted = i32::from(x)
            .wrapping_sub(zero_point)
            .saturating_mul(1 << Self::LEFT_SHIFT);
        // With a shift of at most 0, TFLite's
        // MultiplyByQuantizedMultiplierSmallerThanOneExp.
        multiply_by_quantized_multiplier(shifted, multiplier, shift)
    }

    /// One output value (TFLite's `AddFunc`).
    fn add(&self, a: i8, b: i8) -> i8 {
        let sum = self
            .scaled_input(0, a)
            .saturating_add(self.scaled_input(1, b));
        let value =
            multiply_by_quantized_multiplier(sum, self.output_multiplier, self.output_shift)
                .saturating_add(self.output_zero_point);
        clamp_i8(value, self.activation_min, self.activation_max)
    }
}

/// int8 element-wise addition of equally long `a` and `b`, TFLite Micro's
/// `ADD` without broadcasting.
// Out of line: inlined into the runner, every kernel would widen its stack frame.
#[inline(never)]
pub fn add(a: &[i8], b: &[i8], params: &AddParams, output: &mut [i8]) -> Option<()> {
    if a.len() != output.len() || b.len() != output.len() {
        return None;
    }
    if let Some(scalings) = params.right_shifts_only() {
        for ((out, &a), &b) in output.iter_mut().zip(a).zip(b) {
            *out = scalings.add(a, b);
        }
    } else {
        for ((out, &a), &b) in output.iter_mut().zip(a).zip(b) {
            *out = params.add(a, b);
        }
    }
    Some(())
}

/// A multiplication by `multiplier / 2^31` then a division by `2^exponent`,
/// TFLite's rounding, for values whose double fits in `i32`: then
/// `SaturatingRoundingDoublingHighMul` never saturates and is `floor((x * m +
/// 2^30) / 2^31)` (its nudge toward zero for negative products and its
/// truncating division give the same), and `RoundingDivideByPOT` is `(v +
/// 2^(e-1) - (v < 0)) >> e` for `e >= 1`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RightShiftScaling {
    pub(crate) multiplier: i64,
    pub(crate) exponent: u32,
    pub(crate) rounding: i32,
    /// `-1` when `exponent >= 1` (the correction for negative values applies), else 0.
    pub(crate) negative_mask: i32,
}

impl RightShiftScaling {
    /// `None` unless `shift` is a right shift (at most 0) and `multiplier` non-negative.
    const fn new(multiplier: i32, shift: i32) -> Option<Self> {
        if shift > 0 || shift < -31 || multiplier < 0 {
            return None;
        }
        let exponent = (-shift) as u32;
        Some(RightShiftScaling {
            multiplier: multiplier as i64,
            exponent,
            rounding: if exponent == 0 {
                0
            } else {
                1 << (exponent - 1)
            },
            negative_mask: if exponent == 0 { 0 } else { -1 },
        })
    }

    /// [`multiply_by_quantized_multiplier`] for `|x| < 2^30`.
    #[inline(always)]
    pub(crate) fn apply(&self, x: i32) -> i32 {
        let high = ((x as i64 * self.multiplier + (1 << 30)) >> 31) as i32;
        (high + self.rounding + ((high >> 31) & self.negative_mask)) >> self.exponent
    }
}

/// [`AddParams`] whose scalings are all right shifts: every intermediate
/// value then stays below `2^30` in magnitude (`|x - zero_point| <= 255`,
/// shifted left by 20, and scaled down), and [`RightShiftScaling`] computes
/// TFLite's `AddFunc` exactly, without its saturation checks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RightShiftAdd {
    pub(crate) zero_points: [i32; 2],
    pub(crate) inputs: [RightShiftScaling; 2],
    pub(crate) output: RightShiftScaling,
    pub(crate) output_zero_point: i32,
    pub(crate) activation_min: i32,
    pub(crate) activation_max: i32,
}

impl RightShiftAdd {
    #[inline(always)]
    pub(crate) fn add(&self, a: i8, b: i8) -> i8 {
        let [zero_a, zero_b] = self.zero_points;
        let [scale_a, scale_b] = &self.inputs;
        let a = scale_a.apply((i32::from(a) - zero_a) << AddParams::LEFT_SHIFT);
        let b = scale_b.apply((i32::from(b) - zero_b) << AddParams::LEFT_SHIFT);
        let value = self.output.apply(a + b) + self.output_zero_point;
        clamp_i8(value, self.activation_min, self.activation_max)
    }
}

/// The integer constants of an int8 softmax with int8 output
/// ([`crate::quant::softmax_params`] computes them from the input scale and
/// `beta`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxParams {
    /// Q31 multiplier taking an input difference to Q5.26 (`beta *
    /// input_scale` in fixed point).
    pub input_multiplier: i32,
    /// Left shift applied to the difference before the multiplier, 0..=31.
    pub input_left_shift: i32,
    /// Smallest input difference from the row's maximum that counts; smaller
    /// ones give an exponential of 0.
    pub diff_min: i32,
}

impl SoftmaxParams {
    /// Integer bits of the scaled differences, Q5.26.
    pub const SCALED_DIFF_INTEGER_BITS: i32 = 5;
    /// Integer bits of the sum of exponentials, Q12.19.
    pub const ACCUMULATION_INTEGER_BITS: i32 = 12;

    /// `exp(beta * input_scale * difference)` in Q0.31 for a difference from
    /// the maximum that counts, `None` for one below `diff_min`.
    fn exp(&self, difference: i32) -> Option<i32> {
        if difference < self.diff_min {
            return None;
        }
        // TFLite's MultiplyByQuantizedMultiplierGreaterThanOne: shift left,
        // then the high multiply. |difference| <= 255 and the shift <= 31
        // keep the shift inside an i64.
        let scaled = if self.input_left_shift >= 0 {
            let shifted = i64::from(difference) << self.input_left_shift.min(32);
            let shifted = shifted.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
            high_mul(shifted, self.input_multiplier)
        } else {
            multiply_by_quantized_multiplier(
                difference,
                self.input_multiplier,
                self.input_left_shift,
            )
        };
        Some(exp_on_negative_values(scaled))
    }
}

/// int8 softmax of one vector into int8 probabilities (scale 1/256, zero
/// point -128), TFLite Micro's `SOFTMAX` (reference `Softmax`): gemmlowp's
/// fixed-point exponential of each value's difference from the maximum,
/// their sum in Q12.19, its reciprocal, and each exponential times the
/// reciprocal rounded to 8 bits.
///
/// `None` if the lengths differ, or if the sum of the exponentials reaches
/// 512 (512 values equal to the maximum, say): the final shift would then
/// exceed 31, and TFLite's reference stops on a failed check. An empty
/// vector gives an empty output.
// Out of line: inlined into the runner, every kernel would widen its stack frame.
#[inline(never)]
pub fn softmax(input: &[i8], params: &SoftmaxParams, output: &mut [i8]) -> Option<()> {
    if input.len() != output.len() {
        return None;
    }
    let Some(&max) = input.iter().max() else {
        return Some(());
    };
    let exp = |x: i8| params.exp(i32::from(x) - i32::from(max));
    // Each Q0.31 exponential rescaled to Q12.19 (gemmlowp's `Rescale`), summed.
    let to_accumulation = SoftmaxParams::ACCUMULATION_INTEGER_BITS as u32;
    let sum: i64 = input
        .iter()
        .filter_map(|&x| exp(x))
        .map(|e| i64::from(rounding_divide(e, to_accumulation)))
        .sum();
    let (reciprocal, bits_over_unit) = reciprocal(
        i32::try_from(sum).ok()?,
        SoftmaxParams::ACCUMULATION_INTEGER_BITS,
    );
    // The product of Q0.31 values, brought to 8 bits; TFLite checks 0..=31.
    let exponent = u32::try_from(bits_over_unit + 31 - 8)
        .ok()
        .filter(|&e| e <= 31)?;
    for (out, &x) in output.iter_mut().zip(input) {
        *out = match exp(x) {
            Some(e) => {
                let probability = rounding_divide(high_mul(reciprocal, e), exponent);
                clamp_i8(probability.saturating_add(i32::from(i8::MIN)), -128, 127)
            }
            None => i8::MIN,
        };
    }
    Some(())
}

// gemmlowp's fixed-point arithmetic for the softmax, on raw i32 values. A
// value `Qm.n` has `m` integer bits and `n = 31 - m` fractional ones. Sums
// wrap where gemmlowp's C++ would overflow, which its callers never do.

/// `x * 2^exponent` saturated, for `exponent` in `1..=31` (gemmlowp's
/// `SaturatingRoundingMultiplyByPOT` with a positive exponent; `Rescale` to
/// fewer integer bits).
const fn saturating_shift_left(x: i32, exponent: u32) -> i32 {
    let wide = (x as i64) << exponent;
    if wide > i32::MAX as i64 {
        i32::MAX
    } else if wide < i32::MIN as i64 {
        i32::MIN
    } else {
        wide as i32
    }
}

/// `(a + b) / 2` rounded half away from zero (gemmlowp's `RoundingHalfSum`).
const fn rounding_half_sum(a: i32, b: i32) -> i32 {
    let sum = a as i64 + b as i64;
    let sign = if sum >= 0 { 1 } else { -1 };
    ((sum + sign) / 2) as i32
}

/// `exp(a)` for `a` in `[-1/4, 0)`, Q0.31 in and out: a fourth-order Taylor
/// expansion around -1/8 (gemmlowp's
/// `exp_on_interval_between_negative_one_quarter_and_0_excl`).
const fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    const EXP_MINUS_ONE_EIGHTH: i32 = 1_895_147_668;
    const ONE_THIRD: i32 = 715_827_883;
    let x = a.wrapping_add(1 << 28); // a + 1/8
    let x2 = high_mul(x, x);
    let x3 = high_mul(x2, x);
    let x4 = high_mul(x2, x2);
    let x4_over_4 = rounding_divide(x4, 2);
    // x^4/24 + x^3/6 + x^2/2
    let higher = rounding_divide(
        high_mul(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2),
        1,
    );
    EXP_MINUS_ONE_EIGHTH.wrapping_add(high_mul(EXP_MINUS_ONE_EIGHTH, x.wrapping_add(higher)))
}

/// `exp(a)` for `a <= 0` in Q5.26, as Q0.31 (gemmlowp's
/// `exp_on_negative_values` with 5 integer bits): `a` is split into a part
/// in `[-1/4, 0)`, expanded as a polynomial, and a multiple of 1/4 whose
/// bits select factors `exp(-1/4)`, `exp(-1/2)`, ... `exp(-16)`.
const fn exp_on_negative_values(a: i32) -> i32 {
    const QUARTER: i32 = 1 << 24;
    /// Bit of the multiple of 1/4 and `exp(-2^(bit - 26))` in Q0.31.
    const FACTORS: [(u32, i32); 7] = [
        (24, 1_672_461_947),
        (25, 1_302_514_674),
        (26, 790_015_084),
        (27, 290_630_308),
        (28, 39_332_535),
        (29, 720_401),
        (30, 242),
    ];
    let in_last_quarter = (a & (QUARTER - 1)) - QUARTER;
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_shift_left(in_last_quarter, 5),
    );
    let quarters = in_last_quarter.wrapping_sub(a);
    let mut factors: &[(u32, i32)] = &FACTORS;
    while let [(bit, factor), rest @ ..] = factors {
        if quarters & (1 << *bit) != 0 {
            result = high_mul(result, *factor);
        }
        factors = rest;
    }
    if a == 0 { i32::MAX } else { result }
}

/// `1 / (1 + a)` for `a` in `[0, 1)`, Q0.31 in and out: three Newton-Raphson
/// steps from 48/17 - 32/17 * d on the half denominator `d` in Q2.29
/// (gemmlowp's `one_over_one_plus_x_for_x_in_0_1`).
const fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    const FORTY_EIGHT_SEVENTEENTHS: i32 = 1_515_870_810;
    const MINUS_THIRTY_TWO_SEVENTEENTHS: i32 = -1_010_580_540;
    const ONE: i32 = 1 << 29;
    let half_denominator = rounding_half_sum(a, i32::MAX);
    let mut x = FORTY_EIGHT_SEVENTEENTHS
        .wrapping_add(high_mul(half_denominator, MINUS_THIRTY_TWO_SEVENTEENTHS));
    let mut step = 0;
    while step < 3 {
        let error = ONE.wrapping_sub(high_mul(half_denominator, x));
        x = x.wrapping_add(saturating_shift_left(high_mul(x, error), 2));
        step += 1;
    }
    // x approximates 1 / d = 2 / (1 + a) in Q2.29: halve into Q0.31.
    saturating_shift_left(x, 1)
}

/// The reciprocal of a positive value `x` with `integer_bits` integer bits,
/// as a Q0.31 value in `(1/2, 1]` and the power of two it must be scaled
/// by, `1 / x = reciprocal * 2^-bits_over_unit` (TFLite's `GetReciprocal`).
const fn reciprocal(x: i32, integer_bits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros();
    let bits_over_unit = integer_bits - headroom_plus_one as i32;
    // x normalised into [1, 2) as Q1.31 unsigned, minus 1.
    let normalised = match (x as u32).checked_shl(headroom_plus_one) {
        Some(normalised) => normalised,
        None => 0,
    };
    let minus_one = normalised.wrapping_sub(1 << 31) as i32;
    (one_over_one_plus_x_for_x_in_0_1(minus_one), bits_over_unit)
}

/// Little-endian `f32` bytes as 4-byte chunks; `None` if the length is not
/// a multiple of 4.
fn floats(bytes: &[u8]) -> Option<&[[u8; 4]]> {
    let (floats, rest) = bytes.as_chunks::<4>();
    rest.is_empty().then_some(floats)
}

/// `max(value, min)` then `min(.., max)` as TFLite's
/// `ActivationFunctionWithMinMax` compares them (a NaN value stays NaN).
fn clamp_f32(value: f32, min: f32, max: f32) -> f32 {
    let low = if value < min { min } else { value };
    if max < low { max } else { low }
}

/// f32 convolution: for each output channel, the sum of `x * w` over the
/// taps inside the input in a fixed order (kernel row, kernel column, input
/// channel; separate multiplies and adds), plus the bias, clamped to
/// `[activation_min, activation_max]` (no activation: infinities; ReLU: 0
/// and infinity; ReLU6: 0 and 6). This is TFLite's reference `Conv` order.
///
/// `weights` are little-endian `f32` bytes in the layout `[output
/// channel][ky][kx][input channel]`, `bias` one per output channel.
// Out of line: inlined into the runner, every kernel would widen its stack frame.
#[inline(never)]
pub fn conv_f32(
    input: &[f32],
    geometry: &WindowGeometry,
    weights: &[u8],
    bias: &[u8],
    activation_min: f32,
    activation_max: f32,
    output: &mut [f32],
) -> Option<()> {
    let (weights, bias) = (floats(weights)?, floats(bias)?);
    let channels = geometry.input.channels;
    let filter_len = geometry.taps()?.checked_mul(channels)?;
    let fits = geometry.fits(input, output)
        && Some(weights.len()) == filter_len.checked_mul(geometry.output.channels)
        && bias.len() == geometry.output.channels;
    if !fits {
        return None;
    }
    let pixels = output.chunks_exact_mut(geometry.output.channels);
    for (pixel, window) in pixels.zip(geometry.windows()) {
        let filters = weights.chunks_exact(filter_len);
        for ((out, filter), bias) in pixel.iter_mut().zip(filters).zip(bias) {
            let mut sum = 0.0f32;
            for run in window.runs() {
                let values = input.get(run.pixel * channels..(run.pixel + run.len) * channels)?;
                let taps = filter.get(run.tap * channels..(run.tap + run.len) * channels)?;
                for (&x, &w) in values.iter().zip(taps) {
                    sum += x * f32::from_le_bytes(w);
                }
            }
            *out = clamp_f32(
                sum + f32::from_le_bytes(*bias),
                activation_min,
                activation_max,
            );
        }
    }
    Some(())
}

/// f32 depthwise convolution: output channel `oc` filters input channel `oc
/// / multiplier` with weights in TFLite's layout `[ky][kx][output channel]`
/// (little-endian `f32` bytes), summed over the taps inside the input in
/// kernel row then column order, plus the bias, clamped as in [`conv_f32`].
// Out of line: inlined into the runner, every kernel would widen its stack frame.
#[inline(never)]
pub fn depthwise_f32(
    input: &[f32],
    geometry: &WindowGeometry,
    weights: &[u8],
    bias: &[u8],
    activation_min: f32,
    activation_max: f32,
    output: &mut [f32],
) -> Option<()> {
    let (weights, bias) = (floats(weights)?, floats(bias)?);
    let (channels, outputs) = (geometry.input.channels, geometry.output.channels);
    let fits = geometry.fits(input, output)
        && outputs % channels == 0
        && Some(weights.len()) == geometry.taps()?.checked_mul(outputs)
        && bias.len() == outputs;
    if !fits {
        return None;
    }
    let multiplier = outputs / channels;
    for (pixel, window) in output.chunks_exact_mut(outputs).zip(geometry.windows()) {
        for (oc, (out, bias)) in pixel.iter_mut().zip(bias).enumerate() {
            let values = window.values(input, channels, oc / multiplier);
            let taps = window.runs().flat_map(|run| {
                let first = weights.get(run.tap * outputs + oc..).unwrap_or(&[]);
                first.iter().step_by(outputs).take(run.len)
            });
            let mut sum = 0.0f32;
            for (x, &w) in values.zip(taps) {
                sum += x * f32::from_le_bytes(w);
            }
            *out = clamp_f32(
                sum + f32::from_le_bytes(*bias),
                activation_min,
                activation_max,
            );
        }
    }
    Some(())
}

/// f32 average pool: the sum of the window's values inside the input (row by
/// row), divided by their count, clamped to `[activation_min,
/// activation_max]`.
// Out of line: inlined into the runner, every kernel would widen its stack frame.
#[inline(never)]
pub fn average_pool_f32(
    input: &[f32],
    geometry: &WindowGeometry,
    activation_min: f32,
    activation_max: f32,
    output: &mut [f32],
) -> Option<()> {
    if !pool_fits(input, geometry, output) {
        return None;
    }
    let channels = geometry.input.channels;
    for (pixel, window) in output.chunks_exact_mut(channels).zip(geometry.windows()) {
        for (channel, out) in pixel.iter_mut().enumerate() {
            let (mut sum, mut count) = (0.0f32, 0.0f32);
            for value in window.values(input, channels, channel) {
                sum += value;
                count += 1.0;
            }
            if count == 0.0 {
                return None;
            }
            *out = clamp_f32(sum / count, activation_min, activation_max);
        }
    }
    Some(())
}

/// f32 max pool: the largest of the window's values inside the input (NaNs
/// are passed over), clamped to `[activation_min, activation_max]`.
// Out of line: inlined into the runner, every kernel would widen its stack frame.
#[inline(never)]
pub fn max_pool_f32(
    input: &[f32],
    geometry: &WindowGeometry,
    activation_min: f32,
    activation_max: f32,
    output: &mut [f32],
) -> Option<()> {
    if !pool_fits(input, geometry, output) {
        return None;
    }
    let channels = geometry.input.channels;
    for (pixel, window) in output.chunks_exact_mut(channels).zip(geometry.windows()) {
        for (channel, out) in pixel.iter_mut().enumerate() {
            let largest = window
                .values(input, channels, channel)
                .fold(f32::MIN, super::larger);
            *out = clamp_f32(largest, activation_min, activation_max);
        }
    }
    Some(())
}

/// f32 element-wise addition of equally long `a` and `b`, clamped to
/// `[activation_min, activation_max]`.
// Out of line: inlined into the runner, every kernel would widen its stack frame.
#[inline(never)]
pub fn add_f32(
    a: &[f32],
    b: &[f32],
    activation_min: f32,
    activation_max: f32,
    output: &mut [f32],
) -> Option<()> {
    if a.len() != output.len() || b.len() != output.len() {
        return None;
    }
    for ((out, &a), &b) in output.iter_mut().zip(a).zip(b) {
        *out = clamp_f32(a + b, activation_min, activation_max);
    }
    Some(())
}
