//! The front end's per-frame integer path as it was before its loops were
//! rewritten for speed, kept verbatim for the tests: every rewrite must give
//! the same work buffer (the FFT's points, the log energies) and the same
//! bytes, on every input, not only on the golden clip.

use super::FrontEnd;
use super::tables::{self, LOG_BITS, SINE_BITS};

/// A complex value, `[re, im]`.
type Complex = [i32; 2];

/// `(cos, sin)` of `2 pi t / N` in Q30 from the quarter-wave table `sine`
/// (`sine[t] = sin(2 pi t / N)` for `t` in `0..=N/4`), for `t` in `0..3N/4`.
#[inline(always)]
fn twiddle(sine: &[i32], t: usize, quarter: usize) -> (i32, i32) {
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

/// `round(x / 2^SINE_BITS)`, ties up.
#[inline(always)]
fn descale(x: i64) -> i32 {
    ((x + (1 << (SINE_BITS - 1))) >> SINE_BITS) as i32
}

/// `x * (c - i s)`, rounded.
#[inline(always)]
fn rotate([re, im]: Complex, (c, s): (i32, i32)) -> Complex {
    let (re, im, c, s) = (i64::from(re), i64::from(im), i64::from(c), i64::from(s));
    [descale(re * c + im * s), descale(im * c - re * s)]
}

/// The DFT of `z`, which holds the input in bit-reversed order, in place.
/// `z.len()` is a power of two, at least 4; `sine` is the quarter-wave table
/// of the real FFT of `2 * z.len()` points.
///
/// Stages go two at a time (radix 4: three rotations for four points instead
/// of four, and half the loads and stores), the last alone when their count
/// is odd.
fn complex_fft(z: &mut [Complex], sine: &[i32]) {
    let points = z.len();
    let mut half = 1;
    while 4 * half <= points {
        radix4_stages(z, sine, half);
        half *= 4;
    }
    if half < points {
        radix2_stage(z, sine, half);
    }
}

/// The stages of butterfly spans `half` and `2 half` at once. With
/// `W = exp(-2 pi i j / (4 half))` and the four points `x0..x3` at `j`,
/// `j + half`, `j + 2 half`, `j + 3 half` of a group (bit-reversed input puts
/// the `W^2` point second), the outputs are `a0 + a2`, `a1 - i a3`, `a0 - a2`,
/// `a1 + i a3` with `a0, a1 = x0 +- W^2 x1` and `a2, a3 = W x2 +- W^3 x3`.
/// Every intermediate value is a DFT of part of the input (or one rotated),
/// so the overflow bound of the module holds for each.
fn radix4_stages(z: &mut [Complex], sine: &[i32], half: usize) {
    let points = z.len();
    let quarter = points / 2;
    // W^j is exp(-2 pi i t / N) with t = j * stride.
    let stride = points / (2 * half);
    for j in 0..half {
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
                let (t1, t2, t3) = if j == 0 {
                    (*x1, *x2, *x3)
                } else {
                    (rotate(*x1, w2), rotate(*x2, w1), rotate(*x3, w3))
                };
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
        }
    }
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
fn real_bin(z: &[Complex], k: usize, (c, s): (i32, i32)) -> (i32, i32) {
    let points = z.len();
    let mirror = if k == 0 { 0 } else { points.wrapping_sub(k) };
    let [ar, ai] = z.get(k).copied().unwrap_or_default();
    let [br, bi] = z.get(mirror).copied().unwrap_or_default();
    let (even_re, even_im) = ((ar >> 1) + (br >> 1), (ai >> 1) - (bi >> 1));
    let (odd_re, odd_im) = (
        i64::from((ai >> 1) + (bi >> 1)),
        i64::from((br >> 1) - (ar >> 1)),
    );
    let (c, s) = (i64::from(c), i64::from(s));
    (
        even_re + descale(c * odd_re + s * odd_im),
        even_im + descale(c * odd_im - s * odd_re),
    )
}

/// The features of one frame, as the original code computed them, and its
/// work buffer: the FFT's points, then the log energies.
pub(super) fn frame_features(fe: &FrontEnd<'_>, frame: &[i16], out: &mut [i8], work: &mut [i32]) {
    let (points, rest) = work.split_at_mut(fe.config.fft_size as usize);
    let bands_out = &mut rest[..(fe.config.mel_bands as usize).next_multiple_of(2)];
    let (z, _) = points.as_chunks_mut::<2>();
    let exponent = window_into(fe, frame, z);
    complex_fft(z, fe.sine);
    bands(fe, z, exponent, bands_out);
    quantise(fe, bands_out, out);
}

fn window_into(fe: &FrontEnd<'_>, frame: &[i16], z: &mut [Complex]) -> u32 {
    // In units of 2^-30 of the real signal (samples in [-1, 1)), x w is at
    // most |x| 2^15, so sum |x| 2^15 bounds every FFT value; the exponent
    // brings it to at most 2^30, leaving a bit of headroom in i32 for the
    // rounding. It is at most 11 (1024 samples of 2^15, times 2^15, is
    // 2^40).
    let total: u32 = frame.iter().map(|&x| u32::from(x.unsigned_abs())).sum();
    let bound = u64::from(total) << tables::Q15;
    let exponent = (64 - bound.leading_zeros()).saturating_sub(30).min(16);
    // round(x 2^(16 - e) w / 2^32) with w in Q31 is x w in units of
    // 2^(e - 30), rounded once: a multiply-high, no 64-bit shift.
    let up = 16 - exponent;
    let scale =
        |x: i16, w: i32| ((i64::from(i32::from(x) << up) * i64::from(w) + (1 << 31)) >> 32) as i32;
    let bits = z.len().trailing_zeros();
    let reverse = |n: usize| ((n as u32).reverse_bits() >> (32 - bits)) as usize;
    let mut samples = frame.chunks_exact(2);
    let mut weights = fe.window.chunks_exact(2);
    let mut pairs = 0;
    for (index, (x, w)) in (&mut samples).zip(&mut weights).enumerate() {
        if let ([x0, x1], [w0, w1], Some(point)) = (x, w, z.get_mut(reverse(index))) {
            *point = [scale(*x0, *w0), scale(*x1, *w1)];
        }
        pairs = index + 1;
    }
    // An odd window's last sample pairs with a zero.
    if let ([x], [w]) = (samples.remainder(), weights.remainder()) {
        if let Some(point) = z.get_mut(reverse(pairs)) {
            *point = [scale(*x, *w), 0];
        }
        pairs += 1;
    }
    for n in pairs..z.len() {
        if let Some(point) = z.get_mut(reverse(n)) {
            *point = [0, 0];
        }
    }
    exponent
}

fn bands(fe: &FrontEnd<'_>, z: &[Complex], exponent: u32, out: &mut [i32]) {
    // The FFT's unit is 2^(e - 30) of the real signal, so with powers
    // shifted right by power_shift, E + floor * 2^(60 - 2e - power_shift)
    // is (real energy + floor) times 2^(60 - 2e - power_shift).
    let shift = 2 * exponent + fe.power_shift;
    let floor = (fe.floor + ((1u64 << shift) >> 1)) >> shift;
    let offset = (shift as i32 - tables::FLOOR_BITS as i32) << LOG_BITS;
    let power_shift = fe.power_shift;
    let power_half = (1u64 << power_shift) >> 1;
    let mut bins = fe.bins.chunks_exact(3);
    let mut logs = out.iter_mut();
    let (mut falling, mut rising) = (0u64, 0u64);
    for (segment, pair) in fe.edges.windows(2).enumerate() {
        let (start, end) = match *pair {
            [start, end] => (start as usize, end as usize),
            _ => (0, 0),
        };
        for (k, bin) in (start..end).zip(&mut bins) {
            let (weight, twiddle) = match *bin {
                [weight, c, s] => (weight, (c, s)),
                _ => (0, (0, 0)),
            };
            let (re, im) = real_bin(z, k, twiddle);
            let (re, im) = (i64::from(re), i64::from(im));
            let power = ((re * re + im * im) as u64 + power_half) >> power_shift;
            // floor(power * weight / 2^15) exactly, without a 128-bit
            // product; the weight is at most 2^15, so the low part fits u32.
            let weight = weight as u32;
            let low = ((power as u32 & 0x7fff) * weight) >> tables::Q15;
            let up = (power >> tables::Q15) * u64::from(weight) + u64::from(low);
            rising += up;
            falling += power - up;
        }
        if segment > 0
            && let Some(log) = logs.next()
        {
            *log = log2_q16(fe.log, falling + floor) + offset;
        }
        falling = rising;
        rising = 0;
    }
    for log in logs {
        *log = 0;
    }
}

fn quantise(fe: &FrontEnd<'_>, log_energies: &[i32], out: &mut [i8]) {
    if fe.config.coefficients == 0 {
        for (value, &log) in out.iter_mut().zip(log_energies) {
            *value = fe.int8(log);
        }
        return;
    }
    let row = log_energies.len().div_ceil(2).max(1);
    for (value, weights) in out.iter_mut().zip(fe.dct.chunks_exact(row)) {
        let mut sum = 0i64;
        for (&pair, logs) in weights.iter().zip(log_energies.chunks_exact(2)) {
            if let [l0, l1] = *logs {
                let (d0, d1) = (i64::from(pair as i16), i64::from(pair >> 16));
                sum += d0 * i64::from(l0) + d1 * i64::from(l1);
            }
        }
        // Q15 x Q16 -> Q16 natural log units.
        *value = fe.int8(((sum + (1 << 14)) >> 15) as i32);
    }
}

fn log2_q16(table: &[i32], x: u64) -> i32 {
    let x = x.max(1);
    let zeros = x.leading_zeros();
    let normalised = x << zeros;
    let index = ((normalised >> 57) & 63) as usize;
    let fraction = ((normalised >> 41) & 0xffff) as i32;
    let low = table.get(index).copied().unwrap_or(0);
    let high = table.get(index + 1).copied().unwrap_or(low);
    let between = ((high - low) * fraction + (1 << 15)) >> 16;
    ((63 - zeros as i32) << LOG_BITS) + low + between
}
