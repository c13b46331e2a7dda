//! The 16-bit FFT of [`FftArithmetic::Int16`](super::FftArithmetic::Int16):
//! complex values packed in one `i32` word (real part in the low half), the
//! arithmetic of the Arm DSP extension's two-lane instructions, so that each
//! step below is one instruction on a Cortex-M4 and a few here.
//!
//! - Every radix-2 step halves: `(a + b) >> 1` and `(a - b) >> 1` in each
//!   lane, the sum formed exactly and the shift an arithmetic one (`SHADD16`,
//!   `SHSUB16`; `SHASX`, `SHSAX` for the `+- i` of a radix-4 butterfly). A
//!   complex FFT of `M` points thus computes `DFT / M`, and no value ever
//!   grows: if every input has magnitude at most `B`, so does every
//!   intermediate value (up to the rounding, a few units).
//! - A rotation by `c - i s` (Q15) shifts each part down once:
//!   `(re c + im s) >> 15` and `(im c - re s) >> 15` (`SMUAD`, `SMUSDX`): the
//!   floor, like the halvings, a bias of half a unit that rounding would
//!   remove only at the cost of a register the assembly needs.
//!
//! The front end's normalisation leaves every input component at most
//! `2^14`, so magnitudes are at most `2^14.5 < 23,171`: the rotations' sums
//! stay within `i32` and every result within `i16`.

use super::Path;

/// Low lane of a packed word.
#[inline(always)]
pub(super) fn low(word: i32) -> i32 {
    i32::from(word as i16)
}

/// High lane of a packed word.
#[inline(always)]
pub(super) fn high(word: i32) -> i32 {
    word >> 16
}

/// Two lanes into a word; each is known to fit `i16`.
#[inline(always)]
pub(super) fn pack(low: i32, high: i32) -> i32 {
    (low & 0xffff) | (high << 16)
}

/// `(a + b) >> 1` in each lane.
#[inline(always)]
fn halving_add(a: i32, b: i32) -> i32 {
    pack((low(a) + low(b)) >> 1, (high(a) + high(b)) >> 1)
}

/// `(a - b) >> 1` in each lane.
#[inline(always)]
fn halving_sub(a: i32, b: i32) -> i32 {
    pack((low(a) - low(b)) >> 1, (high(a) - high(b)) >> 1)
}

/// `(a - i b) / 2`: low `(a.re + b.im) >> 1`, high `(a.im - b.re) >> 1`.
#[inline(always)]
fn halving_minus_i(a: i32, b: i32) -> i32 {
    pack((low(a) + high(b)) >> 1, (high(a) - low(b)) >> 1)
}

/// `(a + i b) / 2`: low `(a.re - b.im) >> 1`, high `(a.im + b.re) >> 1`.
#[inline(always)]
fn halving_plus_i(a: i32, b: i32) -> i32 {
    pack((low(a) - high(b)) >> 1, (high(a) + low(b)) >> 1)
}

/// `x * (c - i s)` for the packed twiddle `c + 2^16 s`, each part shifted
/// down (`floor`).
#[inline(always)]
pub(super) fn rotate(x: i32, twiddle: i32) -> i32 {
    let (re, im) = (low(x), high(x));
    let (c, s) = (low(twiddle), high(twiddle));
    pack((re * c + im * s) >> 15, (im * c - re * s) >> 15)
}

/// The halving radix-4 butterfly on `x0` and the rotated `t1..t3` (see
/// `fft::radix4_stages` for the order): `a0, a1 = (x0 +- t1) / 2`,
/// `a2, a3 = (t2 +- t3) / 2`, then `(a0 +- a2) / 2`, `(a1 -+ i a3) / 2`.
#[inline(always)]
pub(super) fn butterfly(x0: i32, t1: i32, t2: i32, t3: i32) -> [i32; 4] {
    let a0 = halving_add(x0, t1);
    let a1 = halving_sub(x0, t1);
    let a2 = halving_add(t2, t3);
    let a3 = halving_sub(t2, t3);
    [
        halving_add(a0, a2),
        halving_minus_i(a1, a3),
        halving_sub(a0, a2),
        halving_plus_i(a1, a3),
    ]
}

/// Words of the stages' twiddle table for a complex FFT of `points` points:
/// per radix-4 stage of span `half` (4, 16, ... while `4 half <= points`),
/// `W^2j`, `W^j`, `W^3j` for `j` in `1..half` (`W = exp(-2 pi i / 4 half)`),
/// in the order the butterflies use them; then, when a radix-2 stage of span
/// `half` is left, `exp(-2 pi i j / 2 half)` for `j` in `1..half`.
pub(super) const fn twiddle_words(points: usize) -> usize {
    let mut words = 0;
    let mut half = 4;
    while 4 * half <= points {
        words += 3 * (half - 1);
        half *= 4;
    }
    if half < points {
        words += half - 1;
    }
    words
}

/// The stages after the first (span 1, done while windowing), in place on
/// `z` (`z.len()` a power of two, at least 16), with the table of
/// [`twiddle_words`]. Radix 4 two stages at a time, a last radix-2 stage
/// when their count is odd.
pub(super) fn later_stages(z: &mut [i32], twiddles: &[i32], path: Path) {
    let points = z.len();
    let mut half = 4;
    let mut rest = twiddles;
    while 4 * half <= points {
        let (stage, after) = rest.split_at_checked(3 * (half - 1)).unwrap_or((rest, &[]));
        radix4_stages(z, stage, half, path);
        rest = after;
        half *= 4;
    }
    if half < points {
        radix2_stage(z, rest, half);
    }
}

/// The stages of spans `half` and `2 half` at once: for each group of
/// `4 half` points and each `j < half`, the four points `j + {0, 1, 2, 3}
/// half`, the last three rotated by the stage's triple for `j` (none for `j
/// = 0`), through the butterfly.
fn radix4_stages(z: &mut [i32], twiddles: &[i32], half: usize, path: Path) {
    #[cfg(tinycnn_arm_dsp)]
    if path == Path::ArmDsp && super::dsp16::radix4_stage(z, twiddles, half) {
        return;
    }
    let _ = path;
    for group in z.chunks_exact_mut(4 * half) {
        for j in 0..half {
            let at = |i: usize| group.get(j + i * half).copied().unwrap_or(0);
            let (x0, x1, x2, x3) = (at(0), at(1), at(2), at(3));
            let (t1, t2, t3) = match j
                .checked_sub(1)
                .and_then(|i| twiddles.get(3 * i..3 * i + 3))
            {
                Some(&[w2, w1, w3]) => (rotate(x1, w2), rotate(x2, w1), rotate(x3, w3)),
                _ => (x1, x2, x3),
            };
            for (i, value) in butterfly(x0, t1, t2, t3).into_iter().enumerate() {
                if let Some(slot) = group.get_mut(j + i * half) {
                    *slot = value;
                }
            }
        }
    }
}

/// The last stage when the radix-4 stages leave one: `a, b <- (a + W b) / 2,
/// (a - W b) / 2` with `W = exp(-2 pi i j / 2 half)` (none for `j = 0`).
fn radix2_stage(z: &mut [i32], twiddles: &[i32], half: usize) {
    for j in 0..half {
        let w = j
            .checked_sub(1)
            .and_then(|i| twiddles.get(i))
            .copied()
            .unwrap_or(0);
        for group in z.chunks_exact_mut(2 * half) {
            let (lower, upper) = group.split_at_mut(half);
            if let (Some(a), Some(b)) = (lower.get_mut(j), upper.get_mut(j)) {
                let t = if j == 0 { *b } else { rotate(*b, w) };
                (*a, *b) = (halving_add(*a, t), halving_sub(*a, t));
            }
        }
    }
}

/// Half of bin `k` (`0 <= k < M`) of the real DFT of `s`, where `z` holds the
/// complex DFT (divided by `M`) of `z_n = s_2n + i s_(2n+1)`, and its power.
/// With `A = Z_k` and `B = conj(Z_(M-k))` (`Z_0` for `k = 0`), `X_k = E - i W
/// O`, `E, O = (A +- B) / 2`, `W = exp(-2 pi i k / N)`; the `twiddle` word is
/// `-i W` as `c - i s` (`c = -sin`, `s = cos` of `2 pi k / N`, Q15). Returns
/// the power of `X_k / 2`: `|X_k / 2| <= max |Z|`, so it is below `2^31`.
#[inline(always)]
pub(super) fn half_bin_power(z: &[i32], k: usize, twiddle: i32) -> u32 {
    let mirror = if k == 0 { 0 } else { z.len().wrapping_sub(k) };
    let a = z.get(k).copied().unwrap_or(0);
    let b = z.get(mirror).copied().unwrap_or(0);
    let (sum, difference) = (halving_add(a, b), halving_sub(a, b));
    // Conjugating B swaps the roles of its imaginary part.
    let even = pack(low(sum), high(difference));
    let odd = pack(low(difference), high(sum));
    let x = halving_add(even, rotate(odd, twiddle));
    let (re, im) = (low(x), high(x));
    (re * re) as u32 + (im * im) as u32
}

/// Scales the frame, windows it and runs the FFT's first stage (span 1, no
/// rotation) into `z`, reading the points in bit-reversed order as
/// `FrontEnd::window_and_first_stage` does; returns the scale exponent `e`.
///
/// `e = 14 - bits(max |x|)` (14 for a silent frame), in `-2..=14`, so that
/// `|x| 2^e <= 2^14`; sample `n` becomes `(x_n w_n + 2^(14 - e)) >> (15 - e)`
/// with the Q15 window `w` (packed two to a word), zero past the window: `x_n
/// w_n 2^e`, rounded once, at most `2^14` in magnitude.
pub(super) fn window_first_stage(frame: &[i16], window: &[i32], z: &mut [i32], path: Path) -> i32 {
    #[cfg(tinycnn_arm_dsp)]
    if path == Path::ArmDsp
        && let Some(exponent) = super::dsp16::window_first_stage(frame, window, z)
    {
        return exponent;
    }
    let _ = path;
    let largest = frame
        .iter()
        .map(|&x| u32::from(x.unsigned_abs()))
        .max()
        .unwrap_or(0);
    let exponent = 14 - (u32::BITS - largest.leading_zeros()) as i32;
    let shift = (15 - exponent) as u32;
    let round = 1i32 << (shift - 1);
    let sample = |n: usize| match (frame.get(n), window.get(n / 2)) {
        (Some(&x), Some(&w)) => {
            let w = if n.is_multiple_of(2) { low(w) } else { high(w) };
            (i32::from(x) * w + round) >> shift
        }
        _ => 0,
    };
    let point = |n: usize| pack(sample(2 * n), sample(2 * n + 1));
    let quarter = z.len() / 4;
    // At least 4: the FFT has at least 32 points.
    let bits = quarter.trailing_zeros();
    for (g, group) in z.chunks_exact_mut(4).enumerate() {
        let r = ((g as u32).reverse_bits() >> (32 - bits)) as usize;
        let values = butterfly(
            point(r),
            point(r + 2 * quarter),
            point(r + quarter),
            point(r + 3 * quarter),
        );
        group.copy_from_slice(&values);
    }
    exponent
}
