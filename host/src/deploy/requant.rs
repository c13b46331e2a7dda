//! The requantisation of 16 int32 accumulators at once with AVX-512, lane by lane with each
//! lane's output channel's constants: the bytes of the core's [`tinycnn::quant`] (TensorFlow
//! Lite's rounding twice, and its clamp), for the host's AVX-512 kernels (the blocked
//! convolutions, the depthwise convolutions and the dense layers).
//!
//! Two forms compute it. The exact one follows every step of
//! [`tinycnn::quant::requantize_clamped`], saturations included. The fast one leaves out what
//! cannot happen in a layer whose shifts are all right shifts, whose multipliers are
//! non-negative and whose accumulators plus bias stay below `2^30` in magnitude (which a
//! layer's shapes bound: [`Lanes::fast_applies`]); that is every layer TensorFlow Lite's
//! converter gives, and it takes about half the instructions. A kernel decides once per call.
//!
//! Every function here is compiled for "avx512f,avx512bw,avx512vl,avx512vnni": calling them is
//! sound only on a processor with those features, which `Isa::Avx512` guarantees.

use std::arch::x86_64::*;

use tinycnn::kernels::int8::{ChannelRequant, Requantization};
use tinycnn::quant::{MAX_SHIFT, MIN_SHIFT};

/// Lanes of a register of `i32`s.
pub(super) const LANES: usize = 16;

/// A layer's output zero point and clamp, as registers.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    zero_point: __m512i,
    low: __m512i,
    high: __m512i,
    /// `low` and `high` less the zero point.
    low_offset: __m512i,
    high_offset: __m512i,
}

impl Bounds {
    /// The bounds of `requantization`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) fn of(requantization: &Requantization<'_>) -> Self {
        let zero_point = requantization.output_zero_point();
        let (low, high) = (
            requantization.activation_min(),
            requantization.activation_max(),
        );
        Bounds {
            zero_point: _mm512_set1_epi32(zero_point),
            low: _mm512_set1_epi32(low),
            high: _mm512_set1_epi32(high),
            low_offset: _mm512_set1_epi32(low - zero_point),
            high_offset: _mm512_set1_epi32(high - zero_point),
        }
    }
}

/// The constants of 16 output channels, for both forms.
#[derive(Clone, Copy, Debug)]
pub(super) struct Lanes {
    /// What the accumulators hold beyond the sum of products (the blocked convolutions' unsigned
    /// activations add `(input zero point + 128) * sum(weights)`): subtracted first.
    offset: __m512i,
    bias: __m512i,
    multiplier: __m512i,
    /// The shift's positive part (a left shift before the multiply).
    left: __m512i,
    /// Its negative part (a rounding right shift after it).
    right: __m512i,
    /// The fast form's `bias - offset`.
    fast_bias: __m512i,
    /// The multipliers of the odd lanes, moved into the even ones.
    multiplier_odd: __m512i,
    /// The fast form's rounding: `2^(right - 1)`, 0 for no right shift.
    half: __m512i,
    /// -1 where the right shift is at least 1 (negative values round down there), else 0.
    negative: __m512i,
    /// Rounding once: the bits `x * multiplier` is shifted right by, `31 - shift` (1..=62).
    total: __m512i,
}

impl Lanes {
    /// The constants of 16 channels: what the accumulators hold beyond the sum of products, the
    /// biases, multipliers and shifts (shifts outside `MIN_SHIFT..=MAX_SHIFT` count as the
    /// nearer bound, as the core's do).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) fn new(
        offset: [i32; LANES],
        bias: [i32; LANES],
        multiplier: [i32; LANES],
        shift: [i32; LANES],
    ) -> Self {
        Lanes::of_registers(
            load_lanes(offset),
            load_lanes(bias),
            load_lanes(multiplier),
            load_lanes(shift),
        )
    }

    /// [`Lanes::new`] of registers.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn of_registers(offset: __m512i, bias: __m512i, multiplier: __m512i, shift: __m512i) -> Self {
        let zero = _mm512_setzero_si512();
        let shift = _mm512_min_epi32(
            _mm512_max_epi32(shift, _mm512_set1_epi32(MIN_SHIFT)),
            _mm512_set1_epi32(MAX_SHIFT),
        );
        let right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
        let shifted = _mm512_cmpgt_epi32_mask(right, zero);
        let one = _mm512_set1_epi32(1);
        Lanes {
            offset,
            bias,
            multiplier,
            left: _mm512_max_epi32(shift, zero),
            right,
            fast_bias: _mm512_sub_epi32(bias, offset),
            multiplier_odd: _mm512_srli_epi64::<32>(multiplier),
            half: _mm512_maskz_sllv_epi32(shifted, one, _mm512_sub_epi32(right, one)),
            negative: _mm512_maskz_mov_epi32(shifted, _mm512_set1_epi32(-1)),
            total: _mm512_sub_epi32(_mm512_set1_epi32(31), shift),
        }
    }

    /// The constants of `count` (at most 16) channels from channel `first` of
    /// `requantization`, read from its stored bytes (the lanes past `count` are zero, and their
    /// outputs are not to be stored), with `offsets`. `None` if the channels are not there.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) fn of_stored(
        requantization: &Requantization<'_>,
        first: usize,
        count: usize,
        offsets: __m512i,
    ) -> Option<Self> {
        let (bias, multipliers, shifts) = requantization.raw();
        let end = first.checked_add(count).filter(|_| count <= LANES)?;
        let (bias, multipliers, shifts) = (
            bias.get(first..end)?,
            multipliers.get(first..end)?,
            shifts.get(first..end)?,
        );
        let mask = u16::MAX.checked_shr(16 - count as u32).unwrap_or(0);
        // SAFETY: the masks select `count` lanes, and each slice holds `count` values (4, 4
        // and 1 bytes each); little-endian `i32`s as x86 reads them. Unaligned, masked loads.
        let (bias, multiplier, shift) = unsafe {
            (
                _mm512_maskz_loadu_epi32(mask, bias.as_ptr().cast()),
                _mm512_maskz_loadu_epi32(mask, multipliers.as_ptr().cast()),
                _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, shifts.as_ptr().cast())),
            )
        };
        Some(Lanes::of_registers(
            _mm512_maskz_mov_epi32(mask, offsets),
            bias,
            multiplier,
            shift,
        ))
    }

    /// The constants of the 16 channels `channels` yields (fewer at the end: the rest are
    /// zero, and their outputs are not to be stored), with `offsets` beside them.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) fn of_channels(
        channels: impl Iterator<Item = ChannelRequant>,
        offsets: impl Iterator<Item = i32>,
    ) -> Self {
        let mut lanes = [[0i32; LANES]; 4];
        for (lane, (channel, offset)) in channels.zip(offsets).take(LANES).enumerate() {
            lanes[0][lane] = offset;
            lanes[1][lane] = channel.bias;
            lanes[2][lane] = channel.multiplier;
            lanes[3][lane] = channel.shift;
        }
        let [offset, bias, multiplier, shift] = lanes;
        Lanes::new(offset, bias, multiplier, shift)
    }
}

impl Lanes {
    /// Whether the fast form gives the exact bytes for these 16 channels: every shift a right
    /// shift (shifts below `MIN_SHIFT` count as it, as in the exact form), every multiplier
    /// non-negative, and `accumulator_bound` (the largest magnitude any accumulator, less its
    /// offset, can have) plus the bias below `2^30`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) fn fast_applies(&self, accumulator_bound: u64) -> bool {
        let Some(limit) = (1u64 << 30)
            .checked_sub(accumulator_bound)
            .and_then(|room| room.checked_sub(1))
            .and_then(|limit| i32::try_from(limit).ok())
        else {
            return false;
        };
        let zero = _mm512_setzero_si512();
        let right_shifts = _mm512_cmpeq_epi32_mask(self.left, zero);
        let non_negative = _mm512_cmpge_epi32_mask(self.multiplier, zero);
        // |i32::MIN| stays i32::MIN, above any limit as an unsigned value.
        let small = _mm512_cmple_epu32_mask(_mm512_abs_epi32(self.bias), _mm512_set1_epi32(limit));
        right_shifts & non_negative & small == u16::MAX
    }
}

/// The largest magnitude of a sum of `products` products of an int8 value less an int8 zero
/// point (at most 255) and an int8 weight (at most 128).
pub(super) const fn accumulator_bound(products: usize) -> u64 {
    (products as u64).saturating_mul(255 * 128)
}

/// `a + b` for every lane, saturating as `i32::saturating_add` does.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn saturating_add(a: __m512i, b: __m512i) -> __m512i {
    let sum = _mm512_add_epi32(a, b);
    // Overflow where a and b have one sign and the sum the other.
    let overflow = _mm512_cmplt_epi32_mask(
        _mm512_and_si512(_mm512_xor_si512(a, sum), _mm512_xor_si512(b, sum)),
        _mm512_setzero_si512(),
    );
    let bound = _mm512_xor_si512(_mm512_srai_epi32::<31>(a), _mm512_set1_epi32(i32::MAX));
    _mm512_mask_blend_epi32(overflow, sum, bound)
}

/// `floor((x * m + 2^30) / 2^31)` lane by lane, for `m` non-negative: the rounding doubling high
/// multiply, which is what TensorFlow Lite's nudge and truncating division give for both
/// signs (the one saturating case, both `i32::MIN`, needs a negative `m`). Even lanes, then
/// odd ones moved down.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn high_multiply(x: __m512i, multiplier: __m512i, multiplier_odd: __m512i) -> __m512i {
    let half = _mm512_set1_epi64(1 << 30);
    let even = _mm512_srai_epi64::<31>(_mm512_add_epi64(_mm512_mul_epi32(x, multiplier), half));
    let odd = _mm512_srai_epi64::<31>(_mm512_add_epi64(
        _mm512_mul_epi32(_mm512_srli_epi64::<32>(x), multiplier_odd),
        half,
    ));
    _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64::<32>(odd))
}

/// [`tinycnn::quant::requantize_clamped`] (rounding twice) of 16 accumulators (less their
/// offset, before the bias), each lane with its channel's constants, as bytes, clamped to the
/// bounds as TensorFlow Lite clamps (`max`, then `min`). `FAST` takes the fast form, which
/// only lanes [`Lanes::fast_applies`] to may.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn requantize<const FAST: bool>(
    sums: __m512i,
    lanes: &Lanes,
    bounds: &Bounds,
) -> __m128i {
    if FAST {
        fast(sums, lanes, bounds)
    } else {
        exact(sums, lanes, bounds)
    }
}

/// The exact form: every saturation the core has.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn exact(sums: __m512i, lanes: &Lanes, bounds: &Bounds) -> __m128i {
    let x = saturating_add(_mm512_sub_epi32(sums, lanes.offset), lanes.bias);
    // x * 2^left, saturating.
    let shifted = _mm512_sllv_epi32(x, lanes.left);
    let lost = _mm512_cmpneq_epi32_mask(_mm512_srav_epi32(shifted, lanes.left), x);
    let bound = _mm512_xor_si512(_mm512_srai_epi32::<31>(x), _mm512_set1_epi32(i32::MAX));
    let x = _mm512_mask_blend_epi32(lost, shifted, bound);
    // A negative multiplier is allowed here: then both i32::MIN saturates.
    let both_min = _mm512_cmpeq_epi32_mask(x, _mm512_set1_epi32(i32::MIN))
        & _mm512_cmpeq_epi32_mask(lanes.multiplier, _mm512_set1_epi32(i32::MIN));
    let high = high_multiply(x, lanes.multiplier, lanes.multiplier_odd);
    let high = _mm512_mask_blend_epi32(both_min, high, _mm512_set1_epi32(i32::MAX));
    // The rounding divide by 2^right, ties away from zero.
    let mask = _mm512_sub_epi32(
        _mm512_sllv_epi32(_mm512_set1_epi32(1), lanes.right),
        _mm512_set1_epi32(1),
    );
    let remainder = _mm512_and_si512(high, mask);
    let threshold = _mm512_sub_epi32(_mm512_srli_epi32::<1>(mask), _mm512_srai_epi32::<31>(high));
    let up = _mm512_cmpgt_epi32_mask(remainder, threshold);
    let quotient = _mm512_srav_epi32(high, lanes.right);
    let scaled = _mm512_mask_add_epi32(quotient, up, quotient, _mm512_set1_epi32(1));
    // Adding the zero point saturates in the core; a value this far out ends at a bound
    // either way, so clamping it first to +-1024 is the same.
    let limit = _mm512_set1_epi32(1024);
    let scaled = _mm512_max_epi32(
        _mm512_min_epi32(scaled, limit),
        _mm512_sub_epi32(_mm512_setzero_si512(), limit),
    );
    let out = _mm512_add_epi32(scaled, bounds.zero_point);
    let out = _mm512_min_epi32(_mm512_max_epi32(out, bounds.low), bounds.high);
    _mm512_cvtsepi32_epi8(out)
}

/// The fast form. With every magnitude below `2^30`: the offset and bias are one wrapping
/// addition (the true sum is in range, so wrapping gives it), there is no left shift, the high
/// multiply stays below `2^30`, the rounding divide by `2^e` (ties away from zero) is
/// `(x + 2^(e - 1) - (x < 0)) >> e` for `e >= 1` and `x` itself for `e = 0`, and clamping
/// before adding the zero point (to the bounds less the zero point) is clamping after it.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn fast(sums: __m512i, lanes: &Lanes, bounds: &Bounds) -> __m128i {
    let x = _mm512_add_epi32(sums, lanes.fast_bias);
    let high = high_multiply(x, lanes.multiplier, lanes.multiplier_odd);
    let down = _mm512_and_si512(_mm512_srai_epi32::<31>(high), lanes.negative);
    let rounded = _mm512_add_epi32(_mm512_add_epi32(high, lanes.half), down);
    let scaled = _mm512_srav_epi32(rounded, lanes.right);
    let clamped = _mm512_min_epi32(
        _mm512_max_epi32(scaled, bounds.low_offset),
        bounds.high_offset,
    );
    _mm512_cvtepi32_epi8(_mm512_add_epi32(clamped, bounds.zero_point))
}

/// Writes the first `count` (at most 16) of `bytes` at `start` of `output`; `None` if they do
/// not fit.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn store_bytes(
    output: &mut [i8],
    start: usize,
    count: usize,
    bytes: __m128i,
) -> Option<()> {
    let target = output.get_mut(start..start.checked_add(count)?)?;
    let mask = u16::MAX.checked_shr(16 - u32::try_from(count).ok().filter(|&c| c <= 16)?);
    // SAFETY: the mask selects the first `count` bytes, all inside `target`; unaligned.
    unsafe { _mm_mask_storeu_epi8(target.as_mut_ptr(), mask.unwrap_or(0), bytes) };
    Some(())
}

/// Writes the first `count` (at most 32) of `bytes` at `start` of `output`; `None` if they do
/// not fit.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn store_bytes32(
    output: &mut [i8],
    start: usize,
    count: usize,
    bytes: __m256i,
) -> Option<()> {
    let target = output.get_mut(start..start.checked_add(count)?)?;
    let mask = u32::MAX.checked_shr(32 - u32::try_from(count).ok().filter(|&c| c <= 32)?);
    // SAFETY: the mask selects the first `count` bytes, all inside `target`; unaligned.
    unsafe { _mm256_mask_storeu_epi8(target.as_mut_ptr(), mask.unwrap_or(0), bytes) };
    Some(())
}

/// [`tinycnn::quant::requantize_clamped`] rounding once (a dense layer of a model format
/// version before 3, as the desktop trains it) of 16 accumulators (less their offset, before
/// the bias), each lane with its channel's constants, as bytes, clamped to the bounds.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn requantize_once(sums: __m512i, lanes: &Lanes, bounds: &Bounds) -> __m128i {
    let x = saturating_add(_mm512_sub_epi32(sums, lanes.offset), lanes.bias);
    // floor((x * m + 2^(total - 1)) / 2^total) in 64 bits (|x * m| <= 2^62, so no overflow),
    // even lanes, then odd ones moved down, each saturated to i32.
    let low_half = _mm512_set1_epi64(0xFFFF_FFFF);
    let one = _mm512_set1_epi64(1);
    let (min, max) = (
        _mm512_set1_epi64(i64::from(i32::MIN)),
        _mm512_set1_epi64(i64::from(i32::MAX)),
    );
    let scale = |x: __m512i, multiplier: __m512i, total: __m512i| {
        let round = _mm512_sllv_epi64(one, _mm512_sub_epi64(total, one));
        let product = _mm512_add_epi64(_mm512_mul_epi32(x, multiplier), round);
        let scaled = _mm512_srav_epi64(product, total);
        _mm512_min_epi64(_mm512_max_epi64(scaled, min), max)
    };
    let even = scale(x, lanes.multiplier, _mm512_and_si512(lanes.total, low_half));
    let odd = scale(
        _mm512_srli_epi64::<32>(x),
        lanes.multiplier_odd,
        _mm512_srli_epi64::<32>(lanes.total),
    );
    let scaled = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64::<32>(odd));
    let limit = _mm512_set1_epi32(1024);
    let scaled = _mm512_max_epi32(
        _mm512_min_epi32(scaled, limit),
        _mm512_sub_epi32(_mm512_setzero_si512(), limit),
    );
    let out = _mm512_add_epi32(scaled, bounds.zero_point);
    let out = _mm512_min_epi32(_mm512_max_epi32(out, bounds.low), bounds.high);
    _mm512_cvtsepi32_epi8(out)
}

/// Sixteen `i32`s as a register.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn load_lanes(values: [i32; LANES]) -> __m512i {
    // SAFETY: `values` is 64 readable bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(values.as_ptr().cast()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tinycnn::quant::{self, Rounding};

    fn avx512() -> bool {
        let here = crate::deploy::kernels::Isa::Avx512.runs_here();
        if !here {
            eprintln!(
                "this processor lacks AVX-512 with VNNI: the vector requantisation is not tested"
            );
        }
        here
    }

    /// Both forms of the vector requantisation of 16 accumulators, lane by lane.
    #[allow(clippy::too_many_arguments)]
    fn requantize_lanes(
        sums: [i32; LANES],
        offset: [i32; LANES],
        bias: [i32; LANES],
        multiplier: [i32; LANES],
        shift: [i32; LANES],
        zero_point: i32,
        low: i32,
        high: i32,
    ) -> [[i8; LANES]; 3] {
        let mut out = [[0i8; LANES]; 3];
        // SAFETY: called only after `avx512()` saw the features these are compiled with.
        unsafe {
            let lanes = Lanes::new(offset, bias, multiplier, shift);
            let bounds = Bounds {
                zero_point: _mm512_set1_epi32(zero_point),
                low: _mm512_set1_epi32(low),
                high: _mm512_set1_epi32(high),
                low_offset: _mm512_set1_epi32(low - zero_point),
                high_offset: _mm512_set1_epi32(high - zero_point),
            };
            let exact = requantize::<false>(load_lanes(sums), &lanes, &bounds);
            let fast = requantize::<true>(load_lanes(sums), &lanes, &bounds);
            let once = requantize_once(load_lanes(sums), &lanes, &bounds);
            _mm_storeu_si128(out[0].as_mut_ptr().cast(), exact);
            _mm_storeu_si128(out[1].as_mut_ptr().cast(), fast);
            _mm_storeu_si128(out[2].as_mut_ptr().cast(), once);
        }
        out
    }

    fn lanes() -> impl Strategy<Value = [i32; LANES]> {
        let value = prop_oneof![
            any::<i32>(),
            -70_000i32..70_000,
            Just(i32::MIN),
            Just(i32::MAX),
            Just(0),
        ];
        proptest::array::uniform16(value)
    }

    #[allow(clippy::too_many_arguments)]
    fn expected_with(
        rounding: Rounding,
        sum: i32,
        offset: i32,
        bias: i32,
        multiplier: i32,
        shift: i32,
        zero_point: i32,
        (low, high): (i32, i32),
    ) -> i8 {
        quant::requantize_clamped(
            rounding,
            sum.wrapping_sub(offset).saturating_add(bias),
            multiplier,
            shift,
            zero_point,
            low,
            high,
        )
    }

    proptest! {
        /// The exact form and the one rounding once against the core on any accumulators and
        /// constants, negative multipliers and shifts out of range included.
        #[test]
        fn the_exact_form_is_the_cores(
            sums in lanes(),
            offset in lanes(),
            bias in lanes(),
            multiplier in proptest::array::uniform16(prop_oneof![any::<i32>(), Just(i32::MAX), Just(i32::MIN), Just(0), Just(1 << 30), (1 << 30)..=i32::MAX]),
            shift in proptest::array::uniform16(prop_oneof![quant::MIN_SHIFT..=quant::MAX_SHIFT, -128i32..=127]),
            zero_point in -128i32..=127,
            range in (-128i32..=127, prop_oneof![Just(127), -128i32..=127]),
        ) {
            if !avx512() {
                return Ok(());
            }
            let [got, _, once] = requantize_lanes(sums, offset, bias, multiplier, shift, zero_point, range.0, range.1);
            for lane in 0..LANES {
                let expected = expected_with(Rounding::Double, sums[lane], offset[lane], bias[lane], multiplier[lane], shift[lane], zero_point, range);
                prop_assert_eq!(got[lane], expected, "lane {}", lane);
                let expected = expected_with(Rounding::Single, sums[lane], offset[lane], bias[lane], multiplier[lane], shift[lane], zero_point, range);
                prop_assert_eq!(once[lane], expected, "once, lane {}", lane);
            }
        }

        /// The fast form against the core wherever `fast_applies` lets it run: accumulators
        /// and biases whose sum stays below 2^30, right shifts, non-negative multipliers; any
        /// offset.
        #[test]
        fn the_fast_form_is_the_cores_where_it_applies(
            sums in proptest::array::uniform16(prop_oneof![-(1i32 << 29)..(1 << 29), -70_000i32..70_000, Just(0), Just((1 << 29) - 1), Just(-(1 << 29))]),
            offset in lanes(),
            bias in proptest::array::uniform16(prop_oneof![-(1i32 << 29)..(1 << 29), -20_000i32..20_000, Just(0)]),
            multiplier in proptest::array::uniform16(prop_oneof![0..=i32::MAX, Just(i32::MAX), Just(0), Just(1 << 30), (1 << 30)..=i32::MAX]),
            shift in proptest::array::uniform16(prop_oneof![quant::MIN_SHIFT..=0, Just(0), Just(-31), -14i32..=-1]),
            zero_point in -128i32..=127,
            range in (-128i32..=127, prop_oneof![Just(127), -128i32..=127]),
        ) {
            if !avx512() {
                return Ok(());
            }
            // The accumulators as a kernel holds them: the true sum plus the offset, wrapped.
            let held: [i32; LANES] = std::array::from_fn(|i| sums[i].wrapping_add(offset[i]));
            let [exact, fast, _] = requantize_lanes(held, offset, bias, multiplier, shift, zero_point, range.0, range.1);
            for lane in 0..LANES {
                let expected = expected_with(Rounding::Double, held[lane], offset[lane], bias[lane], multiplier[lane], shift[lane], zero_point, range);
                prop_assert_eq!(exact[lane], expected, "exact, lane {}", lane);
                prop_assert_eq!(fast[lane], expected, "fast, lane {}", lane);
            }
        }
    }

    #[test]
    fn the_fast_form_applies_to_right_shifts_and_bounded_sums_only() {
        if !avx512() {
            return;
        }
        // One channel's constants in every lane.
        let applies = |bias: i32, multiplier: i32, shift: i32, bound: u64| {
            // SAFETY: `avx512()` saw the features these are compiled with.
            unsafe {
                Lanes::new(
                    [0; LANES],
                    [bias; LANES],
                    [multiplier; LANES],
                    [shift; LANES],
                )
                .fast_applies(bound)
            }
        };
        let bound = accumulator_bound(9);
        assert!(applies(1000, 1 << 30, -7, bound));
        assert!(applies(-1000, 0, 0, bound));
        assert!(
            applies(1000, 1, -40, bound),
            "shifts below -31 count as -31"
        );
        assert!(!applies(1000, 1 << 30, 1, bound));
        assert!(!applies(1000, -1, -3, bound));
        assert!(!applies(1 << 30, 1, -3, bound));
        assert!(!applies(i32::MIN, 1, -3, bound));
        assert!(!applies(0, 1, -3, accumulator_bound(40_000)));
        assert!(applies(0, 1, -3, accumulator_bound(20_000)));
        let limit = (1 << 30) - 1 - accumulator_bound(9);
        assert!(applies(limit as i32, 1, -3, bound));
        assert!(applies(-(limit as i32), 1, -3, bound));
        assert!(!applies(limit as i32 + 1, 1, -3, bound));
        assert!(!applies(0, 1, -3, 1 << 30));
    }
}
