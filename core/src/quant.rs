//! Fixed-point requantisation exactly as the TensorFlow Lite int8
//! specification defines it (and as TFLite Micro's reference kernels and
//! CMSIS-NN compute it).
//!
//! A real multiplier `m` (for a convolution `input_scale * weight_scale /
//! output_scale`) is represented by a Q31 integer `multiplier` in
//! `[2^30, 2^31)` and a power-of-two exponent `shift`, so that
//! `m = multiplier / 2^31 * 2^shift`. [`quantize_multiplier`] computes the
//! pair from the real scales (on the host, once per model; [`add_params`],
//! [`softmax_params`] and [`relu_range`] derive the other layers' constants as
//! TFLite Micro's `Prepare` functions do); the kernels only execute integers,
//! [`multiply_by_quantized_multiplier`] above all.
//!
//! TensorFlow Lite rounds two ways ([`Rounding`]), and its reference kernels
//! use both: a convolution rounds twice, as gemmlowp does (a rounding doubling
//! high multiply with ties toward positive infinity, a quirk of its nudge that
//! CMSIS-NN reproduces, then a rounding right shift with ties away from zero);
//! a fully connected layer rounds once (`x * multiplier / 2^(31 - shift)` to
//! the nearest, ties toward positive infinity). The two differ on about one
//! output in 2,000. The results must match TFLite bit for bit, so the order of
//! operations and these tie rules are part of the contract.

use crate::kernels::general::{AddParams, SoftmaxParams};

/// Smallest accepted shift: a right shift by 31.
pub const MIN_SHIFT: i32 = -31;
/// Largest accepted shift: a left shift by 30.
pub const MAX_SHIFT: i32 = 30;

/// `round(a * b / 2^31)` with ties toward positive infinity, saturated.
///
/// This is gemmlowp's `SaturatingRoundingDoublingHighMul`: it adds a nudge of
/// `2^30` (positive products) or `1 - 2^30` (negative ones) and divides with
/// truncation toward zero, which rounds `-0.5` to `0` and `0.5` to `1`.
///
/// The only input that overflows is `a == b == i32::MIN` (the product
/// `2^62 * 2 = 2^63`), which saturates to `i32::MAX`.
#[inline(always)]
pub const fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let product = a as i64 * b as i64;
    let nudge: i64 = if product >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // Division (not a shift) on purpose: it truncates toward zero, and together
    // with the asymmetric nudge that is what TFLite computes.
    ((product + nudge) / (1i64 << 31)) as i32
}

/// `x / 2^exponent`, rounding half away from zero, for `exponent` in `0..=31`.
///
/// Exponents above 31 are treated as 31, which keeps the function total; the
/// model loader rejects such shifts before they reach a kernel.
#[inline(always)]
pub const fn rounding_divide_by_pot(x: i32, exponent: u32) -> i32 {
    let exponent = if exponent > 31 { 31 } else { exponent };
    let mask = ((1u32 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> exponent) + (remainder > threshold) as i32
}

/// `x * multiplier / 2^31 * 2^shift`, rounded as TFLite rounds it.
///
/// A positive `shift` multiplies by `2^shift` before the high multiply; a
/// negative one divides after it. The left shift saturates where TFLite's
/// C code would overflow a signed integer (undefined behaviour there), which
/// keeps this function monotonic in `x` for a non-negative multiplier; the
/// fused convolution and max-pool relies on that.
#[inline(always)]
pub const fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = if shift > 0 { shift } else { 0 };
    let right = if shift > 0 { 0 } else { -shift };
    let left = if left > MAX_SHIFT { MAX_SHIFT } else { left };
    let scaled = x.saturating_mul(1 << left);
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(scaled, multiplier),
        right as u32,
    )
}

/// How [`requantize`] rounds `x * multiplier / 2^31 * 2^shift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Rounding {
    /// [`multiply_by_quantized_multiplier`]: TensorFlow Lite's convolutions.
    Double,
    /// [`multiply_by_quantized_multiplier_single_rounding`]: TensorFlow Lite's
    /// fully connected layers.
    Single,
}

/// `x * multiplier / 2^(31 - shift)` rounded once, to the nearest with ties
/// toward positive infinity (`floor(x * multiplier / 2^(31 - shift) + 1/2)`),
/// as TensorFlow Lite's reference `FULLY_CONNECTED` computes it. A result
/// outside `i32` (only possible with a large positive shift) saturates, where
/// TFLite's C++ would wrap; a shift outside `MIN_SHIFT..=MAX_SHIFT` is treated
/// as the nearest bound.
#[inline(always)]
pub const fn multiply_by_quantized_multiplier_single_rounding(
    x: i32,
    multiplier: i32,
    shift: i32,
) -> i32 {
    let shift = if shift < MIN_SHIFT {
        MIN_SHIFT
    } else if shift > MAX_SHIFT {
        MAX_SHIFT
    } else {
        shift
    };
    // 1..=62: the product (below 2^62 in magnitude) plus the half cannot
    // overflow an i64.
    let total = (31 - shift) as u32;
    let rounded = (x as i64 * multiplier as i64 + (1i64 << (total - 1))) >> total;
    if rounded > i32::MAX as i64 {
        i32::MAX
    } else if rounded < i32::MIN as i64 {
        i32::MIN
    } else {
        rounded as i32
    }
}

/// Requantises an int32 accumulator to int8: scale, add the output zero
/// point, clamp to `[activation_min, 127]`.
///
/// `activation_min` is `-128` for a layer without activation and the output
/// zero point for a layer with a fused ReLU (real 0 maps to the zero point).
/// Rounds twice, as a convolution does; [`requantize_with`] chooses.
#[inline(always)]
pub const fn requantize(
    accumulator: i32,
    multiplier: i32,
    shift: i32,
    output_zero_point: i32,
    activation_min: i32,
) -> i8 {
    requantize_with(
        Rounding::Double,
        accumulator,
        multiplier,
        shift,
        output_zero_point,
        activation_min,
    )
}

/// [`requantize`] with the given rounding.
#[inline(always)]
pub const fn requantize_with(
    rounding: Rounding,
    accumulator: i32,
    multiplier: i32,
    shift: i32,
    output_zero_point: i32,
    activation_min: i32,
) -> i8 {
    requantize_clamped(
        rounding,
        accumulator,
        multiplier,
        shift,
        output_zero_point,
        activation_min,
        i8::MAX as i32,
    )
}

/// [`requantize_with`] clamped to `[activation_min, activation_max]` (both
/// within the int8 range; with `activation_max < activation_min` the result is
/// `activation_max`, as TensorFlow Lite's `max`-then-`min` gives).
#[inline(always)]
pub const fn requantize_clamped(
    rounding: Rounding,
    accumulator: i32,
    multiplier: i32,
    shift: i32,
    output_zero_point: i32,
    activation_min: i32,
    activation_max: i32,
) -> i8 {
    let scaled = match rounding {
        Rounding::Double => multiply_by_quantized_multiplier(accumulator, multiplier, shift),
        Rounding::Single => {
            multiply_by_quantized_multiplier_single_rounding(accumulator, multiplier, shift)
        }
    };
    let shifted = scaled.saturating_add(output_zero_point);
    let low = if shifted < activation_min {
        activation_min
    } else {
        shifted
    };
    (if low > activation_max {
        activation_max
    } else {
        low
    }) as i8
}

const TWO_POW_31: f64 = (1u64 << 31) as f64;

/// A positive real multiplier `real = q / 2^31 * 2^shift` with `q` in
/// `[2^30, 2^31)` (TFLite's `QuantizeMultiplier` before its range checks):
/// `frexp`, then `q` rounded half away from zero (`TfLiteRound`, C's `round`)
/// to 31 fractional bits, renormalised when it rounds up to `2^31`. `None`
/// for zero, negative or non-finite reals.
fn split_multiplier(real: f64) -> Option<(i32, i32)> {
    if !(real.is_finite() && real > 0.0) {
        return None;
    }
    let (fraction, mut shift) = libm::frexp(real);
    let mut q = libm::round(fraction * TWO_POW_31) as i64;
    if q == 1 << 31 {
        q /= 2;
        shift += 1;
    }
    i32::try_from(q).ok().map(|q| (q, shift))
}

/// Splits a real multiplier into a Q31 `multiplier` in `[2^30, 2^31)` and a
/// power-of-two `shift` with `real ~= multiplier / 2^31 * 2^shift`, as
/// TFLite's `QuantizeMultiplier` does (in `double`, rounding half away from
/// zero).
///
/// Multipliers below about `2^-32` (a shift under [`MIN_SHIFT`]) flush to
/// `(0, 0)`, as in TFLite. A shift above [`MAX_SHIFT`] saturates to
/// `(i32::MAX, 30)` (TFLite does so when it rounds once; when it rounds
/// twice it keeps the shift, which would overflow its kernels' left shift).
/// Zero, negative and non-finite reals give `(0, 0)`: requantisation scales
/// are positive.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    match split_multiplier(real) {
        Some((_, shift)) if shift < MIN_SHIFT => (0, 0),
        Some((_, shift)) if shift > MAX_SHIFT => (i32::MAX, MAX_SHIFT),
        Some(pair) => pair,
        None => (0, 0),
    }
}

/// The int8 output range `(min, max)` of a fused ReLU (`six == false`) or
/// ReLU6 on an output of the given scale and zero point, as TFLite's
/// `CalculateActivationRangeQuantized`: real 0 and 6 quantised in `f32`
/// (`zero_point + round(6 / scale)`, halves away from zero) and kept inside
/// `[-128, 127]`. Without an activation the range is `(-128, 127)`.
pub fn relu_range(scale: f32, zero_point: i8, six: bool) -> (i32, i32) {
    let quantize = |real: f32| {
        // `as` saturates where TFLite's `Prepare` would fail (a scale so small
        // that the bound leaves `i32`).
        i32::from(zero_point).saturating_add(libm::roundf(real / scale) as i32)
    };
    let min = quantize(0.0).max(i32::from(i8::MIN));
    let max = if six {
        quantize(6.0).min(i32::from(i8::MAX))
    } else {
        i32::from(i8::MAX)
    };
    (min, max)
}

/// The integer constants of an int8 `ADD`, as TFLite Micro's `Prepare`
/// computes them (`CalculateOpDataAdd`): both inputs are brought to twice
/// the larger input scale, with 20 bits of headroom, and the sum to the
/// output scale.
///
/// In `double`, from the `f32` scales: `twice_max = 2 * max(s1, s2)`, input
/// `i`'s multiplier `s_i / twice_max` (at most 1/2) and the output's
/// `twice_max / (2^20 * output_scale)`, each split by [`quantize_multiplier`]
/// (TFLite's `QuantizeMultiplierSmallerThanOneExp`, which requires them below
/// 1, as they are for any sensible scales). The activation range is the
/// whole int8 range; set the fields from [`relu_range`] for a fused
/// activation.
pub fn add_params(
    input_scales: [f32; 2],
    input_zero_points: [i8; 2],
    output_scale: f32,
    output_zero_point: i8,
) -> AddParams {
    let [first, second] = input_scales;
    let twice_max = 2.0 * f64::from(if first < second { second } else { first });
    let input = input_scales.map(|scale| quantize_multiplier(f64::from(scale) / twice_max));
    let headroom = f64::from(1u32 << AddParams::LEFT_SHIFT);
    let (output_multiplier, output_shift) =
        quantize_multiplier(twice_max / (headroom * f64::from(output_scale)));
    AddParams {
        input_zero_points: input_zero_points.map(i32::from),
        input_multipliers: input.map(|(multiplier, _)| multiplier),
        input_shifts: input.map(|(_, shift)| shift),
        output_multiplier,
        output_shift,
        output_zero_point: i32::from(output_zero_point),
        activation_min: i32::from(i8::MIN),
        activation_max: i32::from(i8::MAX),
    }
}

/// The integer constants of an int8 `SOFTMAX` with int8 output (scale
/// 1/256, zero point -128), as TFLite Micro's `Prepare` computes them
/// (`CalculateSoftmaxParams`, `PreprocessSoftmaxScaling`,
/// `CalculateInputRadius`).
///
/// Input differences are scaled to Q5.26 by `beta * input_scale * 2^26`
/// (in `double`, capped at `2^31 - 1`), split into a multiplier and a left
/// shift. `diff_min` is `-floor(31 * 2^26 / 2^shift)`: differences below it
/// would leave Q5.26 once scaled (their exponential is negligible), and the
/// kernel counts them as 0. Unlike [`quantize_multiplier`], the shift may be
/// 31 here (from `beta * input_scale >= 16`), as in TFLite; only a
/// difference of 0 then counts. TFLite rejects a scaled multiplier of at
/// most 1 (`beta * input_scale <= 2^-26`); this function returns its
/// constants anyway.
pub fn softmax_params(input_scale: f32, beta: f32) -> SoftmaxParams {
    const SCALED_DIFF_INTEGER_BITS: i32 = SoftmaxParams::SCALED_DIFF_INTEGER_BITS;
    let scaled_diff_one = f64::from(1u32 << (31 - SCALED_DIFF_INTEGER_BITS));
    let real = f64::from(beta) * f64::from(input_scale) * scaled_diff_one;
    let capped = if real > TWO_POW_31 - 1.0 {
        TWO_POW_31 - 1.0
    } else {
        real
    };
    let (input_multiplier, input_left_shift) = match split_multiplier(capped) {
        Some((_, shift)) if shift < MIN_SHIFT => (0, 0),
        Some(pair) => pair,
        None => (0, 0),
    };
    // 31 * 2^26 / 2^shift is exact in binary, so its floor is TFLite's.
    let largest = f64::from((1u32 << SCALED_DIFF_INTEGER_BITS) - 1) * scaled_diff_one;
    let radius = libm::floor(libm::ldexp(largest, -input_left_shift)) as i32;
    SoftmaxParams {
        input_multiplier,
        input_left_shift,
        diff_min: -radius,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition of the single rounding, `floor(x * m / 2^(31 - shift) + 1/2)`
    /// saturated, with 128-bit arithmetic.
    fn single_wide(x: i32, m: i32, shift: i32) -> i32 {
        let total = 31 - shift;
        let result = ((x as i128) * (m as i128) * 2 + (1i128 << total)) >> (total + 1);
        result.clamp(i32::MIN as i128, i32::MAX as i128) as i32
    }

    proptest! {
        #[test]
        fn single_rounding_is_its_definition(x in any::<i32>(), m in 0..=i32::MAX, shift in MIN_SHIFT..=MAX_SHIFT) {
            prop_assert_eq!(multiply_by_quantized_multiplier_single_rounding(x, m, shift), single_wide(x, m, shift));
        }
    }

    #[test]
    fn single_and_double_rounding_differ_on_ties() {
        let half = 1 << 30;
        assert_eq!(multiply_by_quantized_multiplier(65, half, -1), 17);
        assert_eq!(
            multiply_by_quantized_multiplier_single_rounding(65, half, -1),
            16
        );
        assert_eq!(
            multiply_by_quantized_multiplier_single_rounding(-66, half, -1),
            -16
        );
        assert_eq!(requantize_with(Rounding::Single, 65, half, -1, 0, -128), 16);
    }

    /// The definition, `floor(a * b / 2^31 + 1/2)` saturated, with 128-bit
    /// arithmetic (an arithmetic shift right is a floor).
    fn srdhm_wide(a: i32, b: i32) -> i32 {
        let result = ((a as i128) * (b as i128) * 2 + (1i128 << 31)) >> 32;
        result.clamp(i32::MIN as i128, i32::MAX as i128) as i32
    }

    /// Rounding half away from zero of `x / 2^e`, with 128-bit arithmetic.
    fn rdbp_wide(x: i32, e: u32) -> i32 {
        let x = x as i128;
        let divisor = 1i128 << e;
        let magnitude = (2 * x.abs() + divisor) / (2 * divisor);
        (if x < 0 { -magnitude } else { magnitude }) as i32
    }

    #[test]
    fn doubling_high_mul_known_values() {
        // 0.5 * 0.5 = 0.25 in Q31.
        assert_eq!(
            saturating_rounding_doubling_high_mul(1 << 30, 1 << 30),
            1 << 29
        );
        // The single overflowing case saturates.
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        // -1 * -1 (both i32::MIN means -1.0 in Q31, times ~1.0) does not overflow.
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MAX),
            -i32::MAX
        );
        assert_eq!(saturating_rounding_doubling_high_mul(0, i32::MIN), 0);
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MAX, i32::MAX),
            i32::MAX - 1
        );
        // Ties go toward positive infinity: 1.5 -> 2 but -1.5 -> -1.
        assert_eq!(saturating_rounding_doubling_high_mul(3, 1 << 30), 2);
        assert_eq!(saturating_rounding_doubling_high_mul(-3, 1 << 30), -1);
        assert_eq!(saturating_rounding_doubling_high_mul(1, 1 << 30), 1);
        assert_eq!(saturating_rounding_doubling_high_mul(-1, 1 << 30), 0);
        assert_eq!(saturating_rounding_doubling_high_mul(1 << 30, -1), 0);
        // Just past a tie rounds normally.
        assert_eq!(saturating_rounding_doubling_high_mul(-3, (1 << 30) + 1), -2);
    }

    #[test]
    fn divide_by_pot_ties_round_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3); // 2.5 -> 3
        assert_eq!(rounding_divide_by_pot(-5, 1), -3); // -2.5 -> -3
        assert_eq!(rounding_divide_by_pot(3, 1), 2); // 1.5 -> 2
        assert_eq!(rounding_divide_by_pot(-3, 1), -2);
        assert_eq!(rounding_divide_by_pot(6, 2), 2); // 1.5 -> 2
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(rounding_divide_by_pot(5, 2), 1); // 1.25 -> 1
        assert_eq!(rounding_divide_by_pot(-5, 2), -1);
        assert_eq!(rounding_divide_by_pot(7, 2), 2); // 1.75 -> 2
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
    }

    #[test]
    fn divide_by_pot_shift_zero_is_identity() {
        for x in [i32::MIN, -1, 0, 1, 12345, i32::MAX] {
            assert_eq!(rounding_divide_by_pot(x, 0), x);
        }
    }

    #[test]
    fn divide_by_pot_shift_31() {
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1); // 0.99999 -> 1
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1); // -1.0 exactly
        assert_eq!(rounding_divide_by_pot(1 << 30, 31), 1); // 0.5 -> 1
        assert_eq!(rounding_divide_by_pot(-(1 << 30), 31), -1); // -0.5 -> -1
        assert_eq!(rounding_divide_by_pot((1 << 30) - 1, 31), 0);
        assert_eq!(rounding_divide_by_pot(-(1 << 30) + 1, 31), 0);
        assert_eq!(rounding_divide_by_pot(0, 31), 0);
        // Out-of-range exponents behave as 31 instead of panicking.
        assert_eq!(rounding_divide_by_pot(i32::MIN, 40), -1);
    }

    #[test]
    fn divide_by_pot_exhaustive_small_range() {
        for e in 0..=31u32 {
            for x in -70_000..=70_000 {
                assert_eq!(rounding_divide_by_pot(x, e), rdbp_wide(x, e), "x={x} e={e}");
            }
            for x in [i32::MIN, i32::MIN + 1, i32::MAX - 1, i32::MAX] {
                assert_eq!(rounding_divide_by_pot(x, e), rdbp_wide(x, e), "x={x} e={e}");
            }
        }
    }

    #[test]
    fn multiplier_shift_extremes() {
        // Multiplier 0.5 with shift 0 halves, with the high multiply's ties.
        assert_eq!(multiply_by_quantized_multiplier(3, 1 << 30, 0), 2);
        assert_eq!(multiply_by_quantized_multiplier(-3, 1 << 30, 0), -1);
        // Multiplier 0.5, shift -1: 3 * 0.25 = 0.75. The high multiply gives 2
        // (1.5 up), then 2 / 2 = 1; the double rounding is part of the spec.
        assert_eq!(multiply_by_quantized_multiplier(3, 1 << 30, -1), 1);
        // -5 * 0.25 = -1.25: high multiply -2.5 -> -2, then -2 / 2 = -1.
        assert_eq!(multiply_by_quantized_multiplier(-5, 1 << 30, -1), -1);
        // -6 * 0.25 = -1.5: high multiply -3 exactly, then -3 / 2 = -1.5 -> -2.
        assert_eq!(multiply_by_quantized_multiplier(-6, 1 << 30, -1), -2);
        // Shift -31: the smallest representable scale.
        assert_eq!(multiply_by_quantized_multiplier(i32::MAX, i32::MAX, -31), 1);
        assert_eq!(
            multiply_by_quantized_multiplier(i32::MIN, i32::MAX, -31),
            -1
        );
        // Left shift 1 with multiplier 0.5 is identity.
        assert_eq!(multiply_by_quantized_multiplier(1000, 1 << 30, 1), 1000);
        // A left shift that would overflow saturates instead of wrapping.
        assert_eq!(
            multiply_by_quantized_multiplier(i32::MAX, 1 << 30, 30),
            i32::MAX / 2 + 1
        );
        assert_eq!(
            multiply_by_quantized_multiplier(i32::MIN, 1 << 30, 30),
            i32::MIN / 2
        );
        assert_eq!(multiply_by_quantized_multiplier(0, i32::MAX, 30), 0);
    }

    #[test]
    fn requantize_clamps_and_offsets() {
        let half = 1 << 30;
        assert_eq!(requantize(100, half, 0, -128, -128), -78);
        // Saturation at both ends.
        assert_eq!(requantize(10_000, half, 0, 0, -128), 127);
        assert_eq!(requantize(-10_000, half, 0, 0, -128), -128);
        // Fused ReLU: negative results clamp to the zero point.
        assert_eq!(requantize(-100, half, 0, -5, -5), -5);
        assert_eq!(requantize(i32::MAX, i32::MAX, 30, 127, -128), 127);
        assert_eq!(requantize(i32::MIN, i32::MAX, 30, -128, -128), -128);
    }

    proptest! {
        #[test]
        fn doubling_high_mul_matches_wide_definition(a: i32, b: i32) {
            prop_assert_eq!(saturating_rounding_doubling_high_mul(a, b), srdhm_wide(a, b));
        }

        #[test]
        fn divide_by_pot_matches_wide_definition(x: i32, e in 0u32..=31) {
            prop_assert_eq!(rounding_divide_by_pot(x, e), rdbp_wide(x, e));
        }

        #[test]
        fn requantisation_is_monotonic(
            a: i32, b: i32, multiplier in 0..=i32::MAX, shift in MIN_SHIFT..=MAX_SHIFT,
        ) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(
                multiply_by_quantized_multiplier(low, multiplier, shift)
                    <= multiply_by_quantized_multiplier(high, multiplier, shift)
            );
        }

        #[test]
        fn multiplier_approximates_real_scale(
            x in -(1i32 << 20)..(1 << 20), multiplier in (1i32 << 30)..=i32::MAX, shift in -20i32..=0,
        ) {
            let real = x as f64 * multiplier as f64 / (1u64 << 31) as f64 * 2f64.powi(shift);
            let got = multiply_by_quantized_multiplier(x, multiplier, shift) as f64;
            // Two roundings of half a unit each.
            prop_assert!((got - real).abs() <= 1.0, "x={x} m={multiplier} s={shift}: {got} vs {real}");
        }
    }
}
