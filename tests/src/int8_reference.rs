//! An independent int8 implementation of any network a model file
//! describes, written from the arithmetic's definitions alone: TensorFlow Lite
//! Micro's reference kernels for version-3 models (convolutions, depthwise
//! convolutions and dense layers that round twice, `ADD`, gemmlowp's
//! fixed-point `SOFTMAX`, pools), and for versions 1 and 2 the same with dense
//! layers that round once, as the desktop's `FULLY_CONNECTED` does
//! (`core/FORMAT.md`). Plain loops over full-resolution tensors (no fused
//! pooling, one loop nest per layer kind with its own padding and stride
//! arithmetic), 64- and 128-bit integers, and the rounding written out as the
//! definitions say. It shares no code with the core's kernels or its
//! requantisation (only the file parser, to get the description and the
//! records), so the parity tests that compare the two are a second opinion.

use tinycnn::Int8Model;
use tinycnn::arch::{
    Activation, Architecture, Layer as LayerKind, Padding, PoolKind, Shortcut, Window,
};
use tinycnn::format::{Int8LayerRecord, QuantParams};

/// A tensor in height, width, channel order, with the zero point of its
/// quantisation.
#[derive(Clone, Debug)]
struct Activations {
    height: usize,
    width: usize,
    channels: usize,
    values: Vec<i32>,
    zero_point: i32,
}

impl Activations {
    fn at(&self, y: usize, x: usize, c: usize) -> i32 {
        self.values[(y * self.width + x) * self.channels + c]
    }
}

/// One layer record's constants, decoded once.
#[derive(Debug)]
struct Layer {
    weights: Vec<i32>,
    bias: Vec<i64>,
    multipliers: Vec<i64>,
    shifts: Vec<i64>,
    output: QuantParams,
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
            output: stored.output,
        }
    }

    fn outputs(&self) -> usize {
        self.bias.len()
    }

    fn output_zero_point(&self) -> i64 {
        i64::from(self.output.zero_point)
    }

    /// Bias, requantisation, zero point and clamp to `range` of output `o`'s
    /// accumulator, with `requantize` (rounding twice) or `requantize_once`.
    fn finish(&self, o: usize, accumulator: i64, range: (i64, i64), rounding: Rounding) -> i32 {
        rounding(
            accumulator + self.bias[o],
            self.multipliers[o],
            self.shifts[o],
            self.output_zero_point(),
            range,
        ) as i32
    }
}

/// A requantisation: accumulator, multiplier, shift, zero point, clamp range.
type Rounding = fn(i64, i64, i64, i64, (i64, i64)) -> i64;

/// The int8 range an activation keeps on an output quantised with `output`,
/// from TFLite's definition (`CalculateActivationRangeQuantized`): real 0 and
/// 6 quantised as `zero_point + round(real / scale)`, the division in `f32`
/// and the rounding half away from zero, kept inside `[-128, 127]`.
fn activation_range(activation: Activation, output: QuantParams) -> (i64, i64) {
    let quantize = |real: f32| i64::from(output.zero_point) + (real / output.scale).round() as i64;
    match activation {
        Activation::None => (-128, 127),
        Activation::Relu => (quantize(0.0).max(-128), 127),
        Activation::Relu6 => (quantize(0.0).max(-128), quantize(6.0).min(127)),
    }
}

/// `floor(a / b)` for a positive `b`.
fn floor_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && a < 0 { q - 1 } else { q }
}

/// `v` saturated to the int32 range.
fn clamp32(v: i128) -> i128 {
    v.clamp(i128::from(i32::MIN), i128::from(i32::MAX))
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`, from its definition:
/// `floor(a * b / 2^31 + 1/2)` (ties toward positive infinity), saturated.
fn high_mul(a: i128, b: i128) -> i128 {
    clamp32(floor_div(2 * a * b + (1i128 << 31), 1i128 << 32))
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` to the nearest, ties
/// away from zero.
fn divide_by_pot(x: i128, exponent: u32) -> i128 {
    let divisor = 1i128 << exponent;
    let magnitude = floor_div(2 * x.abs() + divisor, 2 * divisor);
    if x < 0 { -magnitude } else { magnitude }
}

/// `x * 2^exponent`, saturated to the int32 range (gemmlowp's
/// `SaturatingRoundingMultiplyByPOT` with a positive exponent).
fn saturating_shift_left(x: i128, exponent: u32) -> i128 {
    clamp32(x * (1i128 << exponent))
}

/// TFLite's `MultiplyByQuantizedMultiplier`, rounding twice:
/// 1. saturating left shift by `max(shift, 0)`;
/// 2. `SaturatingRoundingDoublingHighMul`: `floor(x * m / 2^31 + 1/2)`;
/// 3. `RoundingDivideByPOT` by `max(-shift, 0)`: nearest, ties away from 0.
fn scale_twice(accumulator: i128, multiplier: i64, shift: i64) -> i128 {
    let accumulator = clamp32(accumulator); // TFLite holds it in an int32
    let shifted = saturating_shift_left(accumulator, shift.max(0) as u32);
    divide_by_pot(
        high_mul(shifted, i128::from(multiplier)),
        (-shift).max(0) as u32,
    )
}

/// TFLite's requantisation of a convolution's (and, from version 3, a dense
/// layer's) accumulator: [`scale_twice`], then the zero point and the clamp
/// to `range`.
fn requantize(
    accumulator: i64,
    multiplier: i64,
    shift: i64,
    zero_point: i64,
    range: (i64, i64),
) -> i64 {
    let scaled = scale_twice(i128::from(accumulator), multiplier, shift);
    let with_zero_point = clamp32(scaled + i128::from(zero_point));
    (with_zero_point as i64).clamp(range.0, range.1)
}

/// The desktop TFLite's requantisation in a fully connected layer (versions 1
/// and 2), from its definition: `floor(x * m / 2^(31 - shift) + 1/2)`, then
/// the zero point and the clamp to `range`.
fn requantize_once(
    accumulator: i64,
    multiplier: i64,
    shift: i64,
    zero_point: i64,
    range: (i64, i64),
) -> i64 {
    let accumulator = clamp32(i128::from(accumulator));
    let divisor = 1i128 << (31 - shift);
    let rounded = clamp32(floor_div(
        2 * accumulator * i128::from(multiplier) + divisor,
        2 * divisor,
    ));
    let with_zero_point = clamp32(rounded + i128::from(zero_point));
    (with_zero_point as i64).clamp(range.0, range.1)
}

/// `sum((x - zero_point) * w)`, widened to 64 bits (each product of an int8
/// difference, at most 255, and a weight, at most 127, fits an `i32`).
fn dot(inputs: &[i32], zero_point: i32, weights: &[i32]) -> i64 {
    inputs
        .iter()
        .zip(weights)
        .map(|(&x, &w)| i64::from((x - zero_point) * w))
        .sum()
}

/// One axis of a window, TensorFlow's rules: the output length
/// (`ceil(input / stride)` for 'same', `ceil((input - kernel + 1) / stride)`
/// for 'valid') and the padding before the input (the smaller half of
/// `max(0, (output - 1) * stride + kernel - input)`).
fn axis(input: usize, kernel: usize, stride: usize, padding: Padding) -> (usize, usize) {
    let output = match padding {
        Padding::Same => input.div_ceil(stride),
        Padding::Valid => (input + 1 - kernel).div_ceil(stride),
    };
    let total = ((output - 1) * stride + kernel).saturating_sub(input);
    (output, total / 2)
}

/// A window placed over a map: sizes, strides, output sides and padding.
#[derive(Clone, Copy, Debug)]
struct Placement {
    kernel: (usize, usize),
    stride: (usize, usize),
    output: (usize, usize),
    before: (usize, usize),
    input: (usize, usize),
}

impl Placement {
    fn new(window: &Window, height: usize, width: usize) -> Self {
        let kernel = (usize::from(window.height), usize::from(window.width));
        let stride = (
            usize::from(window.stride_height),
            usize::from(window.stride_width),
        );
        let (out_height, top) = axis(height, kernel.0, stride.0, window.padding);
        let (out_width, left) = axis(width, kernel.1, stride.1, window.padding);
        Self {
            kernel,
            stride,
            output: (out_height, out_width),
            before: (top, left),
            input: (height, width),
        }
    }

    /// The taps of output `(y, x)` inside the input: `(ky, kx, iy, ix)`.
    fn taps(&self, y: usize, x: usize) -> Vec<(usize, usize, usize, usize)> {
        let mut taps = Vec::with_capacity(self.kernel.0 * self.kernel.1);
        for ky in 0..self.kernel.0 {
            for kx in 0..self.kernel.1 {
                let iy = (y * self.stride.0 + ky) as isize - self.before.0 as isize;
                let ix = (x * self.stride.1 + kx) as isize - self.before.1 as isize;
                if iy < 0 || ix < 0 {
                    continue;
                }
                let (iy, ix) = (iy as usize, ix as usize);
                if iy < self.input.0 && ix < self.input.1 {
                    taps.push((ky, kx, iy, ix));
                }
            }
        }
        taps
    }
}

/// A convolution of any window, weights `[out][ky][kx][in]`; taps in the
/// padding are skipped (padding with the zero point).
fn convolution(
    input: &Activations,
    layer: &Layer,
    window: &Window,
    activation: Activation,
) -> Activations {
    let place = Placement::new(window, input.height, input.width);
    let (kernel_height, kernel_width) = place.kernel;
    let channels = input.channels;
    let outputs = layer.outputs();
    let range = activation_range(activation, layer.output);
    let mut values = Vec::with_capacity(place.output.0 * place.output.1 * outputs);
    for y in 0..place.output.0 {
        for x in 0..place.output.1 {
            let taps = place.taps(y, x);
            for o in 0..outputs {
                let accumulator: i64 = taps
                    .iter()
                    .map(|&(ky, kx, iy, ix)| {
                        let pixel = (iy * input.width + ix) * channels;
                        let tap = ((o * kernel_height + ky) * kernel_width + kx) * channels;
                        dot(
                            &input.values[pixel..pixel + channels],
                            input.zero_point,
                            &layer.weights[tap..tap + channels],
                        )
                    })
                    .sum();
                values.push(layer.finish(o, accumulator, range, requantize));
            }
        }
    }
    Activations {
        height: place.output.0,
        width: place.output.1,
        channels: outputs,
        values,
        zero_point: layer.output_zero_point() as i32,
    }
}

/// A depthwise convolution, weights `[ky][kx][in * multiplier]`: output
/// channel `o` reads input channel `o / multiplier`.
fn depthwise(
    input: &Activations,
    layer: &Layer,
    window: &Window,
    multiplier: usize,
    activation: Activation,
) -> Activations {
    let place = Placement::new(window, input.height, input.width);
    let kernel_width = place.kernel.1;
    let outputs = input.channels * multiplier;
    assert_eq!(layer.outputs(), outputs, "a bias per output channel");
    let range = activation_range(activation, layer.output);
    let mut values = Vec::with_capacity(place.output.0 * place.output.1 * outputs);
    for y in 0..place.output.0 {
        for x in 0..place.output.1 {
            let taps = place.taps(y, x);
            for o in 0..outputs {
                let c = o / multiplier;
                let accumulator: i64 = taps
                    .iter()
                    .map(|&(ky, kx, iy, ix)| {
                        let weight = layer.weights[(ky * kernel_width + kx) * outputs + o];
                        i64::from(input.at(iy, ix, c) - input.zero_point) * i64::from(weight)
                    })
                    .sum();
                values.push(layer.finish(o, accumulator, range, requantize));
            }
        }
    }
    Activations {
        height: place.output.0,
        width: place.output.1,
        channels: outputs,
        values,
        zero_point: layer.output_zero_point() as i32,
    }
}

/// `sum / count` to the nearest, ties away from zero.
fn divide_rounding_away(sum: i64, count: i64) -> i64 {
    let magnitude = (2 * sum.abs() + count) / (2 * count);
    if sum < 0 { -magnitude } else { magnitude }
}

/// A max or average pool of any window over the taps inside the input; the
/// quantisation stays the input's. The average is the sum of the raw int8
/// values divided by the number of taps inside, rounded half away from zero.
fn pool(input: &Activations, window: &Window, kind: PoolKind) -> Activations {
    let place = Placement::new(window, input.height, input.width);
    let channels = input.channels;
    let mut values = Vec::with_capacity(place.output.0 * place.output.1 * channels);
    for y in 0..place.output.0 {
        for x in 0..place.output.1 {
            let taps = place.taps(y, x);
            assert!(!taps.is_empty(), "every window holds an input value");
            for c in 0..channels {
                let inside = taps.iter().map(|&(_, _, iy, ix)| input.at(iy, ix, c));
                values.push(match kind {
                    PoolKind::Max => inside.max().unwrap_or(i32::MIN),
                    PoolKind::Average => {
                        let sum: i64 = inside.map(i64::from).sum();
                        divide_rounding_away(sum, taps.len() as i64) as i32
                    }
                });
            }
        }
    }
    Activations {
        height: place.output.0,
        width: place.output.1,
        channels,
        values,
        zero_point: input.zero_point,
    }
}

/// The mean of each channel over the whole map (an average pool whose
/// window is the map), rounded half away from zero; the quantisation stays
/// the input's.
fn global_average_pool(input: &Activations) -> Activations {
    let count = (input.height * input.width) as i64;
    let values = (0..input.channels)
        .map(|c| {
            let sum: i64 = (0..input.height)
                .flat_map(|y| (0..input.width).map(move |x| (y, x)))
                .map(|(y, x)| i64::from(input.at(y, x, c)))
                .sum();
            divide_rounding_away(sum, count) as i32
        })
        .collect();
    vector(values, input.zero_point)
}

/// 2x2 max-pool, stride 2, rounding the size down.
fn max_pool(input: &Activations) -> Activations {
    let (height, width, channels) = (input.height / 2, input.width / 2, input.channels);
    let mut values = Vec::with_capacity(height * width * channels);
    for y in 0..height {
        for x in 0..width {
            for c in 0..channels {
                let window = [
                    input.at(2 * y, 2 * x, c),
                    input.at(2 * y, 2 * x + 1, c),
                    input.at(2 * y + 1, 2 * x, c),
                    input.at(2 * y + 1, 2 * x + 1, c),
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
        zero_point: input.zero_point,
    }
}

/// Dense layer over an input already flattened in height, width, channel
/// order, rounding as `rounding` does.
fn dense(
    input: &Activations,
    layer: &Layer,
    activation: Activation,
    rounding: Rounding,
) -> Activations {
    let n = input.values.len();
    let range = activation_range(activation, layer.output);
    let values = (0..layer.outputs())
        .map(|o| {
            let row = &layer.weights[o * n..(o + 1) * n];
            let accumulator = dot(&input.values, input.zero_point, row);
            layer.finish(o, accumulator, range, rounding)
        })
        .collect::<Vec<_>>();
    vector(values, layer.output_zero_point() as i32)
}

fn vector(values: Vec<i32>, zero_point: i32) -> Activations {
    Activations {
        height: 1,
        width: 1,
        channels: values.len(),
        values,
        zero_point,
    }
}

/// Headroom bits of an int8 `ADD`'s inputs (TFLite's `left_shift` for int8).
const ADD_LEFT_SHIFT: u32 = 20;

/// TFLite Micro's int8 `ADD` of `first` (the block's output) and `second`
/// (the shortcut), element by element, from its definition: each input's
/// `(x - zero_point) * 2^20` scaled by its multiplier (gemmlowp's rounding:
/// the high multiply, then the rounding division), the sum scaled by the
/// output multiplier, the output zero point, the activation's clamp.
/// Multipliers and shifts: `[first, second, output]`.
fn add(
    first: &Activations,
    second: &Activations,
    layer: &Layer,
    activation: Activation,
) -> Activations {
    assert_eq!(
        (first.height, first.width, first.channels),
        (second.height, second.width, second.channels),
        "an addition of equal shapes"
    );
    let range = activation_range(activation, layer.output);
    let scaled = |x: i32, zero_point: i32, k: usize| {
        let shifted = i128::from(x - zero_point) << ADD_LEFT_SHIFT;
        scale_twice(shifted, layer.multipliers[k], layer.shifts[k])
    };
    let values = first
        .values
        .iter()
        .zip(&second.values)
        .map(|(&a, &b)| {
            let sum = clamp32(scaled(a, first.zero_point, 0) + scaled(b, second.zero_point, 1));
            let out = scale_twice(sum, layer.multipliers[2], layer.shifts[2]);
            let with_zero_point = clamp32(out + i128::from(layer.output.zero_point)) as i64;
            with_zero_point.clamp(range.0, range.1) as i32
        })
        .collect();
    Activations {
        values,
        zero_point: layer.output_zero_point() as i32,
        ..*first
    }
}

/// Fractional bits of gemmlowp's `FixedPoint<int32, I>`: `31 - I`.
const fn fractional_bits(integer_bits: u32) -> u32 {
    31 - integer_bits
}

/// Integer bits of the softmax's scaled differences (Q5.26).
const SCALED_DIFF_INTEGER_BITS: u32 = 5;
/// Integer bits of the softmax's sum of exponentials (Q12.19).
const ACCUMULATION_INTEGER_BITS: u32 = 12;

/// gemmlowp's `exp_on_interval_between_negative_one_quarter_and_0_excl`: for
/// `a` in Q0.31 in `[-1/4, 0)`, `exp(a)` in Q0.31 by the Taylor expansion
/// around -1/8 to the fourth power.
fn exp_on_small_interval(a: i128) -> i128 {
    const EXP_MINUS_ONE_EIGHTH: i128 = 1_895_147_668; // exp(-1/8) in Q0.31
    const ONE_THIRD: i128 = 715_827_883; // 1/3 in Q0.31
    let x = a + (1 << 28); // a + 1/8
    let x2 = high_mul(x, x);
    let x3 = high_mul(x2, x);
    let x4 = high_mul(x2, x2);
    let x4_over_4 = divide_by_pot(x4, 2);
    let polynomial = divide_by_pot(high_mul(x4_over_4 + x3, ONE_THIRD) + x2, 1);
    EXP_MINUS_ONE_EIGHTH + high_mul(EXP_MINUS_ONE_EIGHTH, x + polynomial)
}

/// gemmlowp's `exp_on_negative_values` for `a <= 0` in Q5.26, result in
/// Q0.31: `a` split into a part in `[-1/4, 0)` (computed by
/// [`exp_on_small_interval`]) and multiples of powers of two, each set bit
/// multiplying by `exp(-2^k)`; `exp(0)` is the largest Q0.31 value.
fn exp_on_negative_values(a: i128) -> i128 {
    let fraction = fractional_bits(SCALED_DIFF_INTEGER_BITS);
    let one_quarter = 1i128 << (fraction - 2);
    let a_mod_quarter_minus_quarter = (a & (one_quarter - 1)) - one_quarter;
    // Q5.26 to Q0.31: multiply the raw value by 2^5, saturating.
    let mut result = exp_on_small_interval(saturating_shift_left(
        a_mod_quarter_minus_quarter,
        SCALED_DIFF_INTEGER_BITS,
    ));
    let remainder = a_mod_quarter_minus_quarter - a;
    // exp(-2^k) in Q0.31 for k = -2..=4.
    let factors: [(i32, i128); 7] = [
        (-2, 1_672_461_947),
        (-1, 1_302_514_674),
        (0, 790_015_084),
        (1, 290_630_308),
        (2, 39_332_535),
        (3, 720_401),
        (4, 242),
    ];
    for (exponent, factor) in factors {
        if exponent < SCALED_DIFF_INTEGER_BITS as i32 {
            let bit = (fraction as i32 + exponent) as u32;
            if remainder & (1 << bit) != 0 {
                result = high_mul(result, factor);
            }
        }
    }
    if a == 0 {
        result = i128::from(i32::MAX);
    }
    result
}

/// gemmlowp's `RoundingHalfSum`: `(a + b) / 2` to the nearest, ties away
/// from zero.
fn rounding_half_sum(a: i128, b: i128) -> i128 {
    divide_by_pot(a + b, 1)
}

/// gemmlowp's `one_over_one_plus_x_for_x_in_0_1`: `1 / (1 + a)` for `a` in
/// Q0.31 in `[0, 1)`, result in Q0.31, by three Newton-Raphson steps in Q2.29
/// from the estimate `48/17 - 32/17 * d` of the reciprocal of the half
/// denominator `d = (1 + a) / 2`.
fn one_over_one_plus_x(a: i128) -> i128 {
    const FORTY_EIGHT_SEVENTEENTHS: i128 = 1_515_870_810; // 48/17 in Q2.29
    const MINUS_THIRTY_TWO_SEVENTEENTHS: i128 = -1_010_580_540; // -32/17 in Q2.29
    let one_q2 = 1i128 << fractional_bits(2);
    let half_denominator = rounding_half_sum(a, i128::from(i32::MAX));
    let mut x =
        FORTY_EIGHT_SEVENTEENTHS + high_mul(half_denominator, MINUS_THIRTY_TWO_SEVENTEENTHS);
    for _ in 0..3 {
        let half_denominator_times_x = high_mul(half_denominator, x);
        let one_minus = one_q2 - half_denominator_times_x;
        // Q4.27 back to Q2.29: times 2^2, saturating.
        x += saturating_shift_left(high_mul(x, one_minus), 2);
    }
    // x / 2 in Q1.30 is the same raw value; Q1.30 to Q0.31: times 2, saturating.
    saturating_shift_left(x, 1)
}

/// TFLite's `GetReciprocal`: for a positive sum `x` with `integer_bits`
/// integer bits, the Q0.31 reciprocal of its mantissa in `[1, 2)` and the
/// number of bits the sum has above 1.
fn reciprocal(x: i128, integer_bits: u32) -> (i128, i32) {
    assert!(x > 0 && x <= i128::from(i32::MAX), "a positive int32 sum");
    let headroom_plus_one = (x as u32).leading_zeros();
    let bits_over_unit = integer_bits as i32 - headroom_plus_one as i32;
    // The mantissa minus one, in Q0.31: the sum with its leading one moved to
    // bit 31, less 2^31.
    let shifted_minus_one = (x << headroom_plus_one) - (1i128 << 31);
    (one_over_one_plus_x(shifted_minus_one), bits_over_unit)
}

/// TFLite Micro's int8 softmax (reference `Softmax`, gemmlowp fixed point)
/// with output scale 1/256 and zero point -128, from its definition: each
/// difference from the maximum at least `diff_min` (`bias[0]`) shifted left
/// by `shifts[0]` and high-multiplied by `multipliers[0]` into Q5.26, its
/// exponential, the sum of the exponentials in Q12.19, the reciprocal of the
/// sum, each exponential times it rounded to 8 bits, minus 128.
fn softmax(input: &Activations, layer: &Layer) -> Activations {
    let (multiplier, left_shift, diff_min) = (
        i128::from(layer.multipliers[0]),
        layer.shifts[0],
        i128::from(layer.bias[0]),
    );
    assert!((0..=31).contains(&left_shift), "a left shift");
    let max = input.values.iter().copied().max().expect("a value");
    let exponentials: Vec<Option<i128>> = input
        .values
        .iter()
        .map(|&x| {
            let difference = i128::from(x - max);
            (difference >= diff_min).then(|| {
                let rescaled = high_mul(clamp32(difference << left_shift), multiplier);
                exp_on_negative_values(rescaled)
            })
        })
        .collect();
    // Each Q0.31 exponential to Q12.19: divided by 2^12, rounding.
    let sum: i128 = exponentials
        .iter()
        .flatten()
        .map(|&e| divide_by_pot(e, ACCUMULATION_INTEGER_BITS))
        .sum();
    let (scale, bits_over_unit) = reciprocal(sum, ACCUMULATION_INTEGER_BITS);
    let exponent = bits_over_unit + 31 - 8;
    assert!(
        (0..=31).contains(&exponent),
        "TFLite checks the final shift"
    );
    let values = exponentials
        .iter()
        .map(|e| match e {
            Some(e) => {
                let probability = divide_by_pot(high_mul(scale, *e), exponent as u32);
                (probability - 128).clamp(-128, 127) as i32
            }
            None => -128,
        })
        .collect();
    vector(values, i32::from(layer.output.zero_point))
}

/// The network, ready to run.
#[derive(Debug)]
pub struct Reference {
    architecture: Architecture,
    input: QuantParams,
    /// Version 3 rounds dense layers twice (TFLite Micro), 1 and 2 once.
    dense_rounding: Rounding,
    layers: Vec<Layer>,
}

impl Reference {
    /// Decodes the description and the records of an int8 model.
    pub fn new(model: &Int8Model<'_>) -> Self {
        let dense_rounding: Rounding = if model.header().version >= 3 {
            requantize
        } else {
            requantize_once
        };
        Self {
            architecture: *model.architecture(),
            input: model.input_quantization(),
            dense_rounding,
            layers: model.layers().map(|record| Layer::new(&record)).collect(),
        }
    }

    /// The int8 outputs (logits, probabilities or values) of one image of
    /// 0-255 values (channels-last), each pixel `p` the real value `p / 255`
    /// quantised with the model's input quantisation as TFLite's `QUANTIZE`
    /// does: `round(real / scale) + zero_point` in `f32`, halves away from
    /// zero, clamped (`p - 128` for pixel models).
    pub fn logits(&self, image: &[u8]) -> Vec<i8> {
        let input: Vec<i8> = image
            .iter()
            .map(|&p| {
                let steps = (f32::from(p) / 255.0 / self.input.scale).round() as i32;
                (steps + i32::from(self.input.zero_point)).clamp(-128, 127) as i8
            })
            .collect();
        self.run_quantized(&input)
    }

    /// The int8 outputs of one input already quantised with the model's
    /// input quantisation (channels-last).
    pub fn run_quantized(&self, input: &[i8]) -> Vec<i8> {
        let shape = self.architecture.input();
        assert_eq!(input.len(), shape.values(), "one value per input element");
        let mut activations = Activations {
            height: shape.height,
            width: shape.width,
            channels: shape.channels,
            values: input.iter().map(|&q| i32::from(q)).collect(),
            zero_point: i32::from(self.input.zero_point),
        };
        let mut records = self.layers.iter();
        let mut record = || records.next().expect("a record per layer that has one");
        let mut shortcut: Option<Activations> = None;
        for layer in self.architecture.layers() {
            activations = match *layer {
                LayerKind::Conv(conv) => {
                    convolution(&activations, record(), &conv.window, conv.activation)
                }
                LayerKind::Depthwise(dw) => depthwise(
                    &activations,
                    record(),
                    &dw.window,
                    usize::from(dw.multiplier),
                    dw.activation,
                ),
                LayerKind::MaxPool => max_pool(&activations),
                LayerKind::Pool(p) => pool(&activations, &p.window, p.kind),
                LayerKind::GlobalAveragePool => global_average_pool(&activations),
                LayerKind::Dropout(_) => activations,
                LayerKind::Flatten => {
                    // Channels-last values already are in height, width, channel order.
                    activations.channels *= activations.height * activations.width;
                    activations.height = 1;
                    activations.width = 1;
                    activations
                }
                LayerKind::Dense(d) => {
                    dense(&activations, record(), d.activation, self.dense_rounding)
                }
                LayerKind::Residual(kind) => {
                    shortcut = Some(match kind {
                        Shortcut::Identity => activations.clone(),
                        Shortcut::Projection { stride, .. } => {
                            let one_by_one = Window {
                                height: 1,
                                width: 1,
                                stride_height: stride,
                                stride_width: stride,
                                padding: Padding::Same,
                            };
                            convolution(&activations, record(), &one_by_one, Activation::None)
                        }
                    });
                    activations
                }
                LayerKind::Add(activation) => {
                    let kept = shortcut.take().expect("an open residual block");
                    add(&activations, &kept, record(), activation)
                }
                LayerKind::Softmax => softmax(&activations, record()),
            };
        }
        assert!(records.next().is_none(), "every record used");
        activations.values.iter().map(|&v| v as i8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: (i64, i64) = (-128, 127);

    #[test]
    fn requantisation_follows_the_definitions() {
        let half = 1 << 30;
        // 65 * 0.5 = 32.5 rounds up to 33, then 33 / 2 = 16.5 rounds away to 17.
        assert_eq!(requantize(65, half, -1, 0, FULL), 17);
        // -65 * 0.5 = -32.5 rounds up to -32, then -16 exactly.
        assert_eq!(requantize(-65, half, -1, 0, FULL), -16);
        assert_eq!(requantize(-67, half, -1, 0, FULL), -17); // -33.5 -> -33, -16.5 -> -17
        assert_eq!(requantize(1000, half, 0, 0, FULL), 127);
        assert_eq!(requantize(-1000, half, 0, 5, (5, 127)), 5);
        assert_eq!(
            requantize(i64::from(i32::MAX), i64::from(i32::MAX), -31, 0, FULL),
            1
        );
        assert_eq!(requantize(3, half, 2, 0, FULL), 6);
        // ReLU6's upper bound: 100 * 0.5 = 50, clamped to 20.
        assert_eq!(requantize(100, half, 0, 0, (0, 20)), 20);
    }

    #[test]
    fn dense_requantisation_rounds_once() {
        let half = 1 << 30;
        // 65 * 0.5 / 2 = 16.25: 16 (rounding twice gives 17: 32.5 -> 33 -> 16.5 -> 17).
        assert_eq!(requantize_once(65, half, -1, 0, FULL), 16);
        assert_eq!(requantize(65, half, -1, 0, FULL), 17);
        // -67 * 0.25 = -16.75: -17; 66 * 0.25 = 16.5: ties up, 17; -66 * 0.25 = -16.5: -16.
        assert_eq!(requantize_once(-67, half, -1, 0, FULL), -17);
        assert_eq!(requantize_once(66, half, -1, 0, FULL), 17);
        assert_eq!(requantize_once(-66, half, -1, 0, FULL), -16);
        assert_eq!(requantize_once(3, half, 2, 0, FULL), 6);
        assert_eq!(requantize_once(1000, half, 0, 0, FULL), 127);
    }

    #[test]
    fn activation_ranges_quantise_zero_and_six() {
        let output = |scale, zero_point| QuantParams { scale, zero_point };
        assert_eq!(
            activation_range(Activation::None, output(0.1, 3)),
            (-128, 127)
        );
        assert_eq!(
            activation_range(Activation::Relu, output(0.1, -20)),
            (-20, 127)
        );
        // 6 / 0.05 = 120: -100 + 120 = 20.
        assert_eq!(
            activation_range(Activation::Relu6, output(0.05, -100)),
            (-100, 20)
        );
        // 6 / 0.048 = 125: 125 - 128 = -3; 6 / 0.016 = 375 is past 127.
        assert_eq!(
            activation_range(Activation::Relu6, output(0.048, -128)),
            (-128, -3)
        );
        assert_eq!(
            activation_range(Activation::Relu6, output(0.016, -128)),
            (-128, 127)
        );
        // 6 / 0.8 = 7.5 rounds away from zero to 8.
        assert_eq!(activation_range(Activation::Relu6, output(0.8, 0)), (0, 8));
    }

    fn map(height: usize, width: usize, values: Vec<i32>) -> Activations {
        Activations {
            height,
            width,
            channels: values.len() / (height * width),
            values,
            zero_point: 0,
        }
    }

    fn window(height: u8, width: u8, stride: (u8, u8), padding: Padding) -> Window {
        Window {
            height,
            width,
            stride_height: stride.0,
            stride_width: stride.1,
            padding,
        }
    }

    #[test]
    fn pooling_rounds_the_size_down() {
        let pooled = max_pool(&map(3, 3, (0..9).collect()));
        assert_eq!(
            (pooled.height, pooled.width, pooled.values),
            (1, 1, vec![4])
        );
    }

    #[test]
    fn average_pools_round_half_away_from_zero_over_the_taps_inside() {
        // 3x3, 2x2 'same' stride 2: 2x2 outputs, one padding row and column
        // after the input. Windows: {1, 2, 4, 8} = 15 / 4 = 3.75 -> 4;
        // {3, 6} = 9 / 2 = 4.5 -> 5; {-3, -6}: -4.5 -> -5; {-7} alone.
        let input = map(3, 3, vec![1, 2, 3, 4, 8, 6, -3, -6, -7]);
        let same = window(2, 2, (2, 2), Padding::Same);
        let pooled = pool(&input, &same, PoolKind::Average);
        assert_eq!((pooled.height, pooled.width), (2, 2));
        assert_eq!(pooled.values, vec![4, 5, -5, -7]);
        let pooled = pool(&input, &same, PoolKind::Max);
        assert_eq!(pooled.values, vec![8, 6, -3, -7]);
        // 'valid': one window, {1, 2, 4, 8}.
        let valid = window(2, 2, (2, 2), Padding::Valid);
        assert_eq!(pool(&input, &valid, PoolKind::Average).values, vec![4]);
        // Sums -6 / 4 = -1.5 -> -2 and 6 / 4 = 1.5 -> 2; 5 / 4 = 1.25 -> 1.
        for (values, expected) in [
            (vec![-1, -2, -3, 0], -2),
            (vec![1, 2, 3, 0], 2),
            (vec![1, 1, 1, 2], 1),
            (vec![-1, -1, -1, -2], -1),
        ] {
            let pooled = pool(&map(2, 2, values), &valid, PoolKind::Average);
            assert_eq!(pooled.values, vec![expected]);
        }
        // The quantisation is the input's.
        let shifted = Activations {
            zero_point: -7,
            ..map(2, 2, vec![1, 2, 3, 4])
        };
        assert_eq!(pool(&shifted, &valid, PoolKind::Average).zero_point, -7);
    }

    #[test]
    fn tensorflow_same_padding_with_stride_two() {
        // 'same': out = ceil(in / stride), the smaller half of the padding before.
        assert_eq!(axis(4, 3, 2, Padding::Same), (2, 0)); // 1 row of padding, after
        assert_eq!(axis(5, 3, 2, Padding::Same), (3, 1)); // 2 rows, 1 before
        assert_eq!(axis(49, 10, 2, Padding::Same), (25, 4)); // 9 rows, 4 before
        assert_eq!(axis(10, 4, 2, Padding::Same), (5, 1));
        assert_eq!(axis(6, 1, 2, Padding::Same), (3, 0));
        assert_eq!(axis(7, 3, 2, Padding::Valid), (3, 0));
        assert_eq!(axis(8, 3, 2, Padding::Valid), (3, 0));
        // A 3x3 stride-2 'same' convolution of ones over a 4x4 map 0..16 with
        // a multiplier of exactly 1 (2^30 / 2^31 * 2^1): output (0, 0) sums
        // rows and columns 0..=2, output (1, 1) rows and columns 2..=3 (the
        // padding is after the input).
        let input = map(4, 4, (0..16).collect());
        let layer = Layer {
            weights: vec![1; 9],
            bias: vec![0],
            multipliers: vec![1 << 30],
            shifts: vec![1],
            output: QuantParams {
                scale: 1.0,
                zero_point: -100,
            },
        };
        let same = window(3, 3, (2, 2), Padding::Same);
        let out = convolution(&input, &layer, &same, Activation::None);
        assert_eq!((out.height, out.width, out.zero_point), (2, 2, -100));
        let sum = |rows: std::ops::RangeInclusive<i32>, cols: std::ops::RangeInclusive<i32>| {
            rows.flat_map(|y| cols.clone().map(move |x| y * 4 + x))
                .sum::<i32>()
        };
        let expected: Vec<i32> = [
            sum(0..=2, 0..=2),
            sum(0..=2, 2..=3),
            sum(2..=3, 0..=2),
            sum(2..=3, 2..=3),
        ]
        .iter()
        .map(|s| (s - 100).min(127))
        .collect();
        assert_eq!(expected, vec![-55, -61, -34, -50]);
        assert_eq!(out.values, expected);
        // Stride 2 on rows, 1 on columns ('s2x1'), 'valid' 3x1: only the
        // windows wholly inside, rows 0..=2 (rows 2..=4 would leave the map).
        let tall = window(3, 1, (2, 1), Padding::Valid);
        let layer = Layer {
            weights: vec![1; 3],
            ..layer
        };
        let out = convolution(&input, &layer, &tall, Activation::None);
        assert_eq!((out.height, out.width), (1, 4));
        assert_eq!(out.values, vec![-88, -85, -82, -79]); // 12, 15, 18, 21 less 100
    }

    #[test]
    fn depthwise_output_channels_read_input_channel_over_multiplier() {
        // 1x1 map of two channels (3, -5), multiplier 2, 1x1 kernel with
        // weights [1, 2, 3, 4]: outputs 3, 6, -15, -20.
        let input = map(1, 1, vec![3, -5]);
        let layer = Layer {
            weights: vec![1, 2, 3, 4],
            bias: vec![0, 0, 0, 1],
            multipliers: vec![1 << 30; 4],
            shifts: vec![1; 4],
            output: QuantParams {
                scale: 1.0,
                zero_point: 0,
            },
        };
        let out = depthwise(
            &input,
            &layer,
            &window(1, 1, (1, 1), Padding::Same),
            2,
            Activation::None,
        );
        assert_eq!(out.values, vec![3, 6, -15, -19]);
        let relu = depthwise(
            &input,
            &layer,
            &window(1, 1, (1, 1), Padding::Same),
            2,
            Activation::Relu,
        );
        assert_eq!(relu.values, vec![3, 6, 0, 0]);
    }

    #[test]
    fn addition_scales_each_input_then_the_sum() {
        // Input multipliers 1/2 (2^30, shift 0), output multiplier
        // 2^30 / 2^31 * 2^-19 = 2^-20: out = (a - za + b - zb) / 2, rounded
        // half away from zero by the output's division.
        let layer = Layer {
            weights: vec![],
            bias: vec![],
            multipliers: vec![1 << 30, 1 << 30, 1 << 30],
            shifts: vec![0, 0, -19],
            output: QuantParams {
                scale: 1.0,
                zero_point: 10,
            },
        };
        let first = Activations {
            zero_point: 2,
            ..map(1, 1, vec![5, 2, 0, 100, -128, 127])
        };
        let second = Activations {
            zero_point: -1,
            ..map(1, 1, vec![-1, -4, -2, 100, -128, 127])
        };
        // (3 + 0) / 2 = 1.5 -> 2; (0 - 3) / 2 = -1.5 -> -2; (-2 - 1) / 2 -> -2;
        // (98 + 101) / 2 = 99.5 -> 100; (-130 - 127) / 2 = -128.5 -> -129;
        // (125 + 128) / 2 = 126.5 -> 127. Then + 10 and the clamp.
        let out = add(&first, &second, &layer, Activation::None);
        assert_eq!(out.values, vec![12, 8, 8, 110, -119, 127]);
        assert_eq!(out.zero_point, 10);
        let relu = add(&first, &second, &layer, Activation::Relu);
        assert_eq!(relu.values, vec![12, 10, 10, 110, 10, 127]);
        // Unequal input multipliers: a third of the first (715827883 / 2^31),
        // the second as it is (2^30 with a left shift of 1): out = (a - za) / 3
        // + (b - zb), with each input's rounding at 2^20 resolution.
        let thirds = Layer {
            multipliers: vec![715_827_883, 1 << 30, 1 << 30],
            shifts: vec![0, 1, -19],
            output: QuantParams {
                scale: 1.0,
                zero_point: 0,
            },
            ..layer
        };
        let first = map(1, 1, vec![30, 31, -31]);
        let second = map(1, 1, vec![0, 1, -1]);
        // 30 / 3 + 0 = 10; 31 / 3 + 1 = 11.33 -> 11; -11.33 -> -11.
        let out = add(&first, &second, &thirds, Activation::None);
        assert_eq!(out.values, vec![10, 11, -11]);
    }

    #[test]
    fn softmax_of_equal_values_is_one_over_n() {
        // Scale 1/16, beta 1: 1/16 * 2^26 = 2^22 = 2^30 / 2^31 * 2^23.
        for n in 1..=24 {
            let layer = Layer {
                weights: vec![],
                bias: vec![-(31 << 26 >> 23)],
                multipliers: vec![1 << 30],
                shifts: vec![23],
                output: QuantParams {
                    scale: 1.0 / 256.0,
                    zero_point: -128,
                },
            };
            for level in [-128, 0, 127] {
                let out = softmax(&vector(vec![level; n], 0), &layer);
                let expected = ((256.0 / n as f64).round() as i32 - 128).min(127);
                assert_eq!(out.values, vec![expected; n], "{n} values of {level}");
            }
        }
    }

    #[test]
    fn softmax_follows_the_exponential() {
        // Input scale 1/16: differences of 0, -16 and -32 steps are 0, -1 and
        // -2. exp: 1, 0.3679, 0.1353; sum 1.5032; probabilities 0.6652,
        // 0.2447, 0.0900, times 256: 170.3, 62.6, 23.0.
        let layer = Layer {
            weights: vec![],
            bias: vec![-(31 << 26 >> 23)],
            multipliers: vec![1 << 30],
            shifts: vec![23],
            output: QuantParams {
                scale: 1.0 / 256.0,
                zero_point: -128,
            },
        };
        let out = softmax(&vector(vec![40, 24, 8], 0), &layer);
        assert_eq!(out.values, vec![170 - 128, 63 - 128, 23 - 128]);
        // With a coarser scale, 2 (2^27 = 2^30 / 2^31 * 2^28), diff_min is
        // -floor(31 * 2^26 / 2^28) = -7: -16 and -15 drop out (their
        // exponentials, about exp(-30), would round to nothing anyway) and
        // the two maxima share the probability.
        let coarse = Layer {
            bias: vec![-(31 << 26 >> 28)],
            shifts: vec![28],
            ..layer
        };
        let out = softmax(&vector(vec![0, -16, -15, 0], 0), &coarse);
        assert_eq!(out.values, vec![0, -128, -128, 0]);
        // exp(0) is the largest Q0.31 value; elsewhere the fourth-order
        // Taylor polynomial is good to about 2^-22 (exp(-1) in Q0.31 is
        // 790015084, exp(-1/4) 1672461947, exp(-3) 106916915).
        assert_eq!(exp_on_negative_values(0), i128::from(i32::MAX));
        for (a, exact) in [
            (-(1 << 26), 790_015_084),
            (-(1 << 24), 1_672_461_947),
            (-(3 << 26), 106_916_915),
        ] {
            let computed = exp_on_negative_values(a);
            assert!((computed - exact).abs() < 512, "{a}: {computed}");
        }
        // 1 / (1 + 0.5) = 2/3 in Q0.31.
        let two_thirds = one_over_one_plus_x(1 << 30);
        assert!((two_thirds - 1_431_655_765).abs() < 8, "{two_thirds}");
    }
}
