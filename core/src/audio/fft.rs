//! The fixed-point FFT: a radix-2 decimation-in-time complex FFT of `M = N/2`
//! points, in place on `[re, im]` pairs of `i32`, and the split step that turns
//! it into bins of the real FFT of `N` points.
//!
//! No stage scales: the caller normalises the input so that the sum of the
//! magnitudes of its components is at most `2^30` (plus rounding). Every
//! intermediate value is a DFT of a subset of the input (up to rounding), so
//! no component ever exceeds that sum: the data keep their full precision
//! from the first stage to the last, which a shift per stage would not.
//! Twiddles are Q30; each product is rounded once, half up, in `i64`.

use super::tables::SINE_BITS;

/// A complex value, `[re, im]`.
pub(super) type Complex = [i32; 2];

/// `(cos, sin)` of `2 pi t / N` in Q30 from the quarter-wave table `sine`
/// (`sine[t] = sin(2 pi t / N)` for `t` in `0..=N/4`), for `t` in `0..N/2`.
#[inline(always)]
fn twiddle(sine: &[i32], t: usize, quarter: usize) -> (i32, i32) {
    let at = |i: usize| sine.get(i).copied().unwrap_or(0);
    if t <= quarter {
        (at(quarter - t), at(t))
    } else {
        (-at(t - quarter), at(2 * quarter - t))
    }
}

/// `round(x / 2^SINE_BITS)`, ties up.
#[inline(always)]
fn descale(x: i64) -> i32 {
    ((x + (1 << (SINE_BITS - 1))) >> SINE_BITS) as i32
}

/// The DFT of `z`, which holds the input in bit-reversed order, in place.
/// `z.len()` is a power of two, at least 4; `sine` is the quarter-wave table
/// of the real FFT of `2 * z.len()` points.
pub(super) fn complex_fft(z: &mut [Complex], sine: &[i32]) {
    first_two_stages(z);
    let points = z.len();
    let quarter = points / 2;
    let mut half = 4;
    while half < points {
        // Twiddle j of this stage is exp(-i pi j / half) = exp(-2 pi i t / N).
        let stride = points / half;
        for j in 0..half {
            let (c, s) = twiddle(sine, j * stride, quarter);
            for group in z.chunks_exact_mut(2 * half) {
                let (low, high) = group.split_at_mut(half);
                if let (Some(a), Some(b)) = (low.get_mut(j), high.get_mut(j)) {
                    butterfly(a, b, c, s);
                }
            }
        }
        half *= 2;
    }
}

/// The two stages whose twiddles are 1 and `-i`: additions only, exact.
fn first_two_stages(z: &mut [Complex]) {
    for quad in z.chunks_exact_mut(4) {
        if let [x0, x1, x2, x3] = quad {
            let y0 = [x0[0] + x1[0], x0[1] + x1[1]];
            let y1 = [x0[0] - x1[0], x0[1] - x1[1]];
            let y2 = [x2[0] + x3[0], x2[1] + x3[1]];
            let y3 = [x2[0] - x3[0], x2[1] - x3[1]];
            // -i * y3
            let t = [y3[1], -y3[0]];
            *x0 = [y0[0] + y2[0], y0[1] + y2[1]];
            *x2 = [y0[0] - y2[0], y0[1] - y2[1]];
            *x1 = [y1[0] + t[0], y1[1] + t[1]];
            *x3 = [y1[0] - t[0], y1[1] - t[1]];
        }
    }
}

/// `a, b <- a + w b, a - w b` with `w = c - i s` (Q30).
#[inline(always)]
fn butterfly(a: &mut Complex, b: &mut Complex, c: i32, s: i32) {
    let [ar, ai] = *a;
    let (br, bi) = (i64::from(b[0]), i64::from(b[1]));
    let (c, s) = (i64::from(c), i64::from(s));
    let tr = descale(br * c + bi * s);
    let ti = descale(bi * c - br * s);
    *a = [ar + tr, ai + ti];
    *b = [ar - tr, ai - ti];
}

/// Bin `k` (`0 <= k < M`) of the real DFT of `s`, where `z` is the complex DFT
/// of `z_n = s_2n + i s_(2n+1)`: with `A = Z_k`, `B = conj(Z_(M-k))`,
/// `X_k = (A + B) / 2 - i exp(-2 pi i k / N) (A - B) / 2`, computed in `i64`
/// and rounded once (half up).
#[inline(always)]
pub(super) fn real_bin(z: &[Complex], sine: &[i32], k: usize) -> (i64, i64) {
    let points = z.len();
    let mirror = if k == 0 { 0 } else { points.wrapping_sub(k) };
    let [ar, ai] = z.get(k).copied().unwrap_or_default();
    let [br, bi] = z.get(mirror).copied().unwrap_or_default();
    let (c, s) = twiddle(sine, k, points / 2);
    let (ar, ai, br, bi) = (i64::from(ar), i64::from(ai), i64::from(br), i64::from(bi));
    let (c, s) = (i64::from(c), i64::from(s));
    let sum_im = ai + bi;
    let difference_re = br - ar;
    let re = ((ar + br) << SINE_BITS) + c * sum_im + s * difference_re;
    let im = ((ai - bi) << SINE_BITS) + c * difference_re - s * sum_im;
    let half = 1i64 << SINE_BITS;
    (
        (re + half) >> (SINE_BITS + 1),
        (im + half) >> (SINE_BITS + 1),
    )
}
