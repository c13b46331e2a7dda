//! The fixed-point FFT: a decimation-in-time complex FFT of `M = N/2` points
//! (radix 4, with one radix-2 stage when `log2 M` is odd), in place on
//! `[re, im]` pairs of `i32`, and the split step that turns it into bins of the
//! real FFT of `N` points.
//!
//! No stage scales: the caller normalises the input so that the sum of the
//! magnitudes of its components is at most `2^30` (plus rounding). Every
//! intermediate value is a DFT of a subset of the input (up to rounding), so
//! no component ever exceeds that sum: the data keep their full precision
//! from the first stage to the last, which a shift per stage would not.
//! Twiddles are Q30; each product is rounded once, half up, in `i64`.

use super::Path;
use super::tables::SINE_BITS;

/// A complex value, `[re, im]`.
pub(super) type Complex = [i32; 2];

/// `(cos, sin)` of `2 pi t / N` in Q30 from the quarter-wave table `sine`
/// (`sine[t] = sin(2 pi t / N)` for `t` in `0..=N/4`), for `t` in `0..3N/4`.
#[inline(always)]
pub(super) fn twiddle(sine: &[i32], t: usize, quarter: usize) -> (i32, i32) {
    let at = |i: usize| sine.get(i).copied().unwrap_or(0);
    if t <= quarter {
        (at(quarter - t), at(t))
    } else if t < 2 * quarter {
        (-at(t - quarter), at(2 * quarter - t))
    } else {
        // The third quadrant: the first, negated.
        let (c, s) = twiddle_low(sine, t - 2 * quarter, quarter);
        (-c, -s)
    }
}

/// [`twiddle`] for `t` in `0..=N/4` only.
#[inline(always)]
fn twiddle_low(sine: &[i32], t: usize, quarter: usize) -> (i32, i32) {
    let at = |i: usize| sine.get(i).copied().unwrap_or(0);
    (at(quarter.saturating_sub(t)), at(t))
}

/// `a * b`, exactly. Armv6-M multiplies 32 x 32 -> 32 bits only, and the
/// compiler turns every `i64` product into a call of a 64 x 64-bit routine;
/// four 16-bit partial products inline cost about half as much.
#[inline(always)]
pub(super) fn product(a: i32, b: i32) -> i64 {
    #[cfg(tinycnn_armv6m)]
    return product_by_halves(a, b);
    #[cfg(not(tinycnn_armv6m))]
    return i64::from(a) * i64::from(b);
}

/// [`product`] from 16-bit halves: `a = 2^16 a1 + a0` with `a0` in
/// `0..2^16`, and the same for `b`; no partial product overflows its type.
#[cfg(any(test, tinycnn_armv6m))]
#[inline(always)]
pub(super) fn product_by_halves(a: i32, b: i32) -> i64 {
    let (a1, a0) = (a >> 16, a & 0xffff);
    let (b1, b0) = (b >> 16, b & 0xffff);
    let low = (a0 as u32) * (b0 as u32);
    let cross = i64::from(a1 * b0) + i64::from(a0 * b1);
    (i64::from(a1 * b1) << 32) + (cross << 16) + i64::from(low)
}

/// `a * b` for `b < 2^16` (a mel weight) and any `a`, exactly; see
/// [`product`].
#[inline(always)]
pub(super) fn product_u64(a: u64, b: u32) -> u64 {
    #[cfg(tinycnn_armv6m)]
    return product_u64_by_halves(a, b);
    #[cfg(not(tinycnn_armv6m))]
    return a.wrapping_mul(u64::from(b));
}

/// [`product_u64`] from the words of `a` and the halves of its low word.
#[cfg(any(test, tinycnn_armv6m))]
#[inline(always)]
pub(super) fn product_u64_by_halves(a: u64, b: u32) -> u64 {
    let (high, low) = ((a >> 32) as u32, a as u32);
    let (low1, low0) = (low >> 16, low & 0xffff);
    let upper = u64::from(high.wrapping_mul(b)) << 32;
    upper
        .wrapping_add(u64::from(low1 * b) << 16)
        .wrapping_add(u64::from(low0 * b))
}

/// `a * b` of two `u32`, exactly (the weights of the 16-bit FFT's bands).
#[inline(always)]
pub(super) fn product_u32(a: u32, b: u32) -> u64 {
    #[cfg(tinycnn_armv6m)]
    return product_u64_by_halves(u64::from(a), b);
    #[cfg(not(tinycnn_armv6m))]
    return u64::from(a) * u64::from(b);
}

/// `round(x / 2^SINE_BITS)`, ties up.
#[inline(always)]
fn descale(x: i64) -> i32 {
    ((x + (1 << (SINE_BITS - 1))) >> SINE_BITS) as i32
}

/// `x * (c - i s)`, rounded.
#[inline(always)]
fn rotate([re, im]: Complex, (c, s): (i32, i32)) -> Complex {
    [
        descale(product(re, c) + product(im, s)),
        descale(product(im, c) - product(re, s)),
    ]
}

/// The DFT of `z` after its first radix-4 stage (butterfly span 1), in
/// place. `z.len()` is a power of two, at least 16; `sine` is the quarter-wave
/// table of the real FFT of `2 * z.len()` points.
///
/// Stages go two at a time (radix 4: three rotations for four points instead
/// of four, and half the loads and stores), the last alone when their count
/// is odd.
pub(super) fn later_stages(z: &mut [Complex], sine: &[i32], path: Path) {
    let points = z.len();
    let mut half = 4;
    while 4 * half <= points {
        radix4_stages(z, sine, half, path);
        half *= 4;
    }
    if half < points {
        radix2_stage(z, sine, half);
    }
}

/// The DFT of `z`, which holds the input in bit-reversed order, in place:
/// the first stage, then [`later_stages`].
#[cfg(test)]
pub(super) fn complex_fft(z: &mut [Complex], sine: &[i32]) {
    if z.len() >= 4 {
        radix4_stages(z, sine, 1, Path::Portable);
    }
    later_stages(z, sine, Path::Portable);
}

/// The stages of butterfly spans `half` and `2 half` at once. With
/// `W = exp(-2 pi i j / (4 half))` and the four points `x0..x3` at `j`,
/// `j + half`, `j + 2 half`, `j + 3 half` of a group (bit-reversed input puts
/// the `W^2` point second), the outputs are `a0 + a2`, `a1 - i a3`, `a0 - a2`,
/// `a1 + i a3` with `a0, a1 = x0 +- W^2 x1` and `a2, a3 = W x2 +- W^3 x3`.
/// Every intermediate value is a DFT of part of the input (or one rotated),
/// so the overflow bound of the module holds for each.
fn radix4_stages(z: &mut [Complex], sine: &[i32], half: usize, path: Path) {
    #[cfg(tinycnn_arm_dsp)]
    if path == Path::ArmDsp && super::dsp::radix4_stage(z, sine, half) {
        return;
    }
    let _ = path;
    for group in z.chunks_exact_mut(4 * half) {
        let (low, high) = group.split_at_mut(2 * half);
        let (q0, q1) = low.split_at_mut(half);
        let (q2, q3) = high.split_at_mut(half);
        if let (Some(x0), Some(x1), Some(x2), Some(x3)) = (
            q0.first_mut(),
            q1.first_mut(),
            q2.first_mut(),
            q3.first_mut(),
        ) {
            let (t1, t2, t3) = (*x1, *x2, *x3);
            butterfly(x0, x1, x2, x3, t1, t2, t3);
        }
    }
    let points = z.len();
    let quarter = points / 2;
    // W^j is exp(-2 pi i t / N) with t = j * stride.
    let stride = points / (2 * half);
    for j in 1..half {
        let t = j * stride;
        let (w1, w2, w3) = (
            twiddle_low(sine, t, quarter),
            twiddle(sine, 2 * t, quarter),
            twiddle(sine, 3 * t, quarter),
        );
        for group in z.chunks_exact_mut(4 * half) {
            let (low, high) = group.split_at_mut(2 * half);
            let (q0, q1) = low.split_at_mut(half);
            let (q2, q3) = high.split_at_mut(half);
            if let (Some(x0), Some(x1), Some(x2), Some(x3)) =
                (q0.get_mut(j), q1.get_mut(j), q2.get_mut(j), q3.get_mut(j))
            {
                let (t1, t2, t3) = (rotate(*x1, w2), rotate(*x2, w1), rotate(*x3, w3));
                butterfly(x0, x1, x2, x3, t1, t2, t3);
            }
        }
    }
}

/// The radix-4 butterfly on `x0` and the rotated `x1..x3`, `t1..t3`.
#[inline(always)]
fn butterfly(
    x0: &mut Complex,
    x1: &mut Complex,
    x2: &mut Complex,
    x3: &mut Complex,
    t1: Complex,
    t2: Complex,
    t3: Complex,
) {
    let [p0, p1] = *x0;
    let a0 = [p0 + t1[0], p1 + t1[1]];
    let a1 = [p0 - t1[0], p1 - t1[1]];
    let a2 = [t2[0] + t3[0], t2[1] + t3[1]];
    let a3 = [t2[0] - t3[0], t2[1] - t3[1]];
    *x0 = [a0[0] + a2[0], a0[1] + a2[1]];
    *x2 = [a0[0] - a2[0], a0[1] - a2[1]];
    *x1 = [a1[0] + a3[1], a1[1] - a3[0]];
    *x3 = [a1[0] - a3[1], a1[1] + a3[0]];
}

/// One radix-2 stage of butterfly span `half`: `a, b <- a + W b, a - W b`
/// with `W = exp(-2 pi i j / (2 half))`.
fn radix2_stage(z: &mut [Complex], sine: &[i32], half: usize) {
    let points = z.len();
    let stride = points / half;
    for j in 0..half {
        let w = twiddle(sine, j * stride, points / 2);
        for group in z.chunks_exact_mut(2 * half) {
            let (low, high) = group.split_at_mut(half);
            if let (Some(a), Some(b)) = (low.get_mut(j), high.get_mut(j)) {
                let t = rotate(*b, w);
                let [ar, ai] = *a;
                *a = [ar + t[0], ai + t[1]];
                *b = [ar - t[0], ai - t[1]];
            }
        }
    }
}

/// Bin `k` (`0 <= k < M`) of the real DFT of `s`, where `z` is the complex DFT
/// of `z_n = s_2n + i s_(2n+1)`: with `A = Z_k`, `B = conj(Z_(M-k))`,
/// `X_k = (A + B) / 2 - i exp(-2 pi i k / N) (A - B) / 2`, with `c, s` the
/// cosine and sine of `2 pi k / N` in Q30. The halves are
/// taken before adding (an error of at most one unit, far below the FFT's
/// own), which keeps every product 32 x 32 bits.
#[inline(always)]
pub(super) fn real_bin(z: &[Complex], k: usize, (c, s): (i32, i32)) -> (i32, i32) {
    let points = z.len();
    let mirror = if k == 0 { 0 } else { points.wrapping_sub(k) };
    let [ar, ai] = z.get(k).copied().unwrap_or_default();
    let [br, bi] = z.get(mirror).copied().unwrap_or_default();
    let (even_re, even_im) = ((ar >> 1) + (br >> 1), (ai >> 1) - (bi >> 1));
    let (odd_re, odd_im) = ((ai >> 1) + (bi >> 1), (br >> 1) - (ar >> 1));
    (
        even_re + descale(product(c, odd_re) + product(s, odd_im)),
        even_im + descale(product(c, odd_im) - product(s, odd_re)),
    )
}
