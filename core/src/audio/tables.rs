//! The front end's constant tables, computed once from a validated
//! [`FrontEndConfig`] in f64 and rounded to integers.
//!
//! The device builds its own tables at start-up and must get the host's
//! integers, so every value comes from IEEE 754 basic operations (exactly
//! rounded everywhere: SSE2 on x86_64, soft-float on Cortex-M) and the `libm`
//! crate's `sin`, `cos`, `log` and `log2`, which are plain Rust on every target
//! (no `select_implementation!` for them; its `sqrt`, `floor`, `frexp` and
//! `ldexp` are exact wherever they run). Rust never contracts `a * b + c` into a fused multiply-add,
//! so the same source gives the same bits. Values are rounded with
//! [`round_half_up`]; a test checks that no entry of the default tables lies
//! within 1e-6 of a tie, so even a `libm` a few ulps off could not move one.
//!
//! Layout of the table buffer (`i32` words, in this order; the DCT's 16-bit
//! values are packed two to a word, the even index in the low half):
//!
//! | section | words | contents |
//! | --- | --- | --- |
//! | window | `window` | periodic Hann window, Q31 (1 as `2^31 - 1`) |
//! | sine | `fft / 4 + 1` | `sin(2 pi t / fft)`, Q30, a quarter wave |
//! | edges | `bands + 2` | first FFT bin of each segment between adjacent band edges, then the end |
//! | bins | 3 per bin in `[lower, upper)` | the bin's rising weight in its segment, Q15 (`0..=32768`), and `cos`, `sin` of `2 pi k / fft`, Q30 |
//! | log | 65 | `log2(1 + i / 64)`, Q16 |
//! | dct | `coefficients * ceil(bands / 2)` | `ln 2 * sqrt(2 / bands) * cos(pi k (b + 1/2) / bands)`, Q15, two bands a word |
//!
//! With [`FftArithmetic::Int16`] three sections differ (Q15 values are
//! clamped to `i16`, so 1 is `2^15 - 1`):
//!
//! | section | words | contents |
//! | --- | --- | --- |
//! | window | `ceil(window / 2)` | periodic Hann window, Q15, two samples a word |
//! | sine | `fft16::twiddle_words(fft / 2)` | the complex FFT's twiddles `cos + 2^16 sin` of their angles, stage by stage, Q15 |
//! | bins | 3 per bin | the split step's `-i exp(-2 pi i k / fft)` as `c + 2^16 s` (`c = -sin`, `s = cos`), Q15; the rising weight, Q15; `2^15` minus it |

use super::{FftArithmetic, FrontEndConfig};
use core::f64::consts::{LN_2, PI};

/// Intervals of the `log2` table: linear interpolation between 65 points is
/// within 1.1e-5 of `log2(1 + x)`, far below what an int8 output resolves.
pub(super) const LOG_STEPS: usize = 64;
/// Fraction bits of the mel weights (in `0..=1`), the DCT and the samples.
pub(super) const Q15: u32 = 15;
/// Fraction bits of the window: a Q15 window's rounding errors act as
/// broadband noise about 100 dB below the signal, which lifts the bands of a
/// full-scale tone that lie far from it by a quarter of the default floor.
/// Q31 makes the windowing one multiply-high per sample.
pub(super) const WINDOW_BITS: u32 = 31;
/// Fraction bits of the twiddles: Q15 twiddles would leave a full-scale tone's
/// rounding noise about 15 dB above the log floor of quiet bands.
pub(super) const SINE_BITS: u32 = 30;
/// Fraction bits of `log2` values.
pub(super) const LOG_BITS: u32 = 16;
/// The log floor is held as `floor * 2^FLOOR_BITS` (see `FrontEnd::bands`).
pub(super) const FLOOR_BITS: u32 = 60;

/// The six sections' lengths in words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub window: usize,
    pub sine: usize,
    pub edges: usize,
    pub bins: usize,
    pub log: usize,
    pub dct: usize,
}

impl Layout {
    /// Total for any config, valid or not (no overflow, no panic); only
    /// meaningful for a valid one.
    pub const fn of(config: &FrontEndConfig) -> Self {
        let bands = config.mel_bands as usize;
        let (first, end) = bin_range(config);
        let fft = config.fft_size as usize;
        let (window, sine) = match config.fft_arithmetic {
            FftArithmetic::Int32 => (config.window_samples as usize, fft / 4 + 1),
            FftArithmetic::Int16 => (
                (config.window_samples as usize).div_ceil(2),
                super::fft16::twiddle_words(fft / 2),
            ),
        };
        Layout {
            window,
            sine,
            edges: bands + 2,
            bins: 3 * end.saturating_sub(first),
            log: LOG_STEPS + 1,
            dct: config.coefficients as usize * bands.div_ceil(2),
        }
    }

    pub const fn total(&self) -> usize {
        self.window + self.sine + self.edges + self.bins + self.log + self.dct
    }
}

/// FFT bins `k` with `lower_hz <= k * rate / fft < upper_hz`, as `first..end`,
/// in exact integer arithmetic. Those are the bins whose mel value lies in
/// `[e_0, e_(bands+1))`, the span of the filterbank.
pub(super) const fn bin_range(config: &FrontEndConfig) -> (usize, usize) {
    let rate = config.sample_rate_hz as u64;
    if rate == 0 {
        return (0, 0);
    }
    let fft = config.fft_size as u64;
    let first = (config.lower_hz as u64 * fft).div_ceil(rate);
    let end = (config.upper_hz as u64 * fft).div_ceil(rate);
    // At most fft/2 for a valid config; clamped so that an invalid one cannot
    // make the layout huge.
    let limit = fft / 2;
    let first = if first > limit { limit } else { first };
    let end = if end > limit { limit } else { end };
    (first as usize, end as usize)
}

/// `floor(x + 1/2)`: the one rounding rule of every table.
pub(super) fn round_half_up(x: f64) -> i64 {
    libm::floor(x + 0.5) as i64
}

/// HTK's mel scale, as TensorFlow's `linear_to_mel_weight_matrix` uses it.
pub(super) fn mel(hz: f64) -> f64 {
    1127.0 * libm::log(1.0 + hz / 700.0)
}

/// Periodic Hann window, as `tf.signal.hann_window` makes it.
pub(super) fn hann(n: usize, length: usize) -> f64 {
    0.5 - 0.5 * libm::cos(2.0 * PI * n as f64 / length as f64)
}

/// Row `k`, column `b` of the DCT-II that `tf.signal.mfccs_from_log_mel_spectrograms`
/// applies (`sqrt(2 / bands)` for every row, the first included), times
/// `ln 2` because the integer path takes logarithms to base 2.
pub(super) fn dct(k: usize, b: usize, bands: usize) -> f64 {
    LN_2 * libm::sqrt(2.0 / bands as f64)
        * libm::cos(PI * k as f64 * (b as f64 + 0.5) / bands as f64)
}

/// Every entry of every table before rounding, in table order (the packed
/// 16-bit sections value by value), for [`build`] and for the tests, which
/// check how far each one lies from a rounding tie.
pub(super) fn for_each_value(config: &FrontEndConfig, mut emit: impl FnMut(Section, f64)) {
    let narrow = config.fft_arithmetic == FftArithmetic::Int16;
    let window = config.window_samples as usize;
    for n in 0..window {
        if narrow {
            emit(Section::Window16, hann(n, window) * f64::from(1u32 << Q15));
        } else {
            emit(
                Section::Window,
                hann(n, window) * f64::from(1u32 << WINDOW_BITS),
            );
        }
    }
    let fft = config.fft_size as usize;
    if narrow {
        // In the order of `fft16::twiddle_words`.
        let points = fft / 2;
        let mut twiddle = |j: usize, span: usize| {
            let angle = 2.0 * PI * j as f64 / span as f64;
            emit(Section::Twiddles, libm::cos(angle) * f64::from(1u32 << Q15));
            emit(Section::Twiddles, libm::sin(angle) * f64::from(1u32 << Q15));
        };
        let mut half = 4;
        while 4 * half <= points {
            for j in 1..half {
                twiddle(2 * j, 4 * half);
                twiddle(j, 4 * half);
                twiddle(3 * j, 4 * half);
            }
            half *= 4;
        }
        if half < points {
            for j in 1..half {
                twiddle(j, 2 * half);
            }
        }
    } else {
        for t in 0..=fft / 4 {
            let value = libm::sin(2.0 * PI * t as f64 / fft as f64);
            emit(Section::Sine, value * f64::from(1u32 << SINE_BITS));
        }
    }
    let (first, end) = bin_range(config);
    let bands = config.mel_bands as usize;
    // Band edges are equally spaced in mel, so a bin's position in units of
    // that spacing gives both its segment (the whole part: edge j <= mel <
    // edge j + 1) and its rising weight (the fraction). The running maximum
    // keeps the segments contiguous even if f64 rounding ever broke the
    // monotonicity of the mel values.
    let low = mel(f64::from(config.lower_hz));
    let high = mel(f64::from(config.upper_hz));
    let rate = f64::from(config.sample_rate_hz);
    let spacing_count = bands as f64 + 1.0;
    let position =
        |k: usize| (mel(k as f64 * rate / fft as f64) - low) * spacing_count / (high - low);
    let segment =
        |p: f64, previous: usize| (libm::floor(p).clamp(0.0, bands as f64) as usize).max(previous);
    emit(Section::Edges, first as f64);
    let mut next = 1;
    let mut previous = 0;
    for k in first..end {
        previous = segment(position(k), previous);
        while next <= previous {
            emit(Section::Edges, k as f64);
            next += 1;
        }
    }
    while next <= bands + 1 {
        emit(Section::Edges, end as f64);
        next += 1;
    }
    let mut previous = 0;
    for k in first..end {
        let p = position(k);
        previous = segment(p, previous);
        let rising = (p - previous as f64).clamp(0.0, 1.0);
        // The split step's twiddle, per bin: no quadrant logic in the loop.
        let angle = 2.0 * PI * k as f64 / fft as f64;
        if narrow {
            let one = f64::from(1u32 << Q15);
            emit(Section::SplitTwiddle, -libm::sin(angle) * one);
            emit(Section::SplitTwiddle, libm::cos(angle) * one);
            let rising = round_half_up(rising * one);
            emit(Section::Bins, rising as f64);
            emit(Section::Bins, one - rising as f64);
            continue;
        }
        emit(Section::Bins, rising * f64::from(1u32 << Q15));
        emit(
            Section::Bins,
            libm::cos(angle) * f64::from(1u32 << SINE_BITS),
        );
        emit(
            Section::Bins,
            libm::sin(angle) * f64::from(1u32 << SINE_BITS),
        );
    }
    for i in 0..=LOG_STEPS {
        let value = libm::log2(1.0 + i as f64 / LOG_STEPS as f64);
        emit(Section::Log, value * f64::from(1u32 << LOG_BITS));
    }
    for k in 0..config.coefficients as usize {
        for b in 0..bands.next_multiple_of(2) {
            let value = if b < bands { dct(k, b, bands) } else { 0.0 };
            emit(Section::Dct, value * f64::from(1u32 << Q15));
        }
    }
}

/// Which table a value of [`for_each_value`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Section {
    Window,
    Sine,
    Edges,
    Bins,
    Log,
    Dct,
    /// [`FftArithmetic::Int16`]'s window.
    Window16,
    /// [`FftArithmetic::Int16`]'s complex FFT twiddles, in the sine section.
    Twiddles,
    /// [`FftArithmetic::Int16`]'s split-step twiddle, in the bins section.
    SplitTwiddle,
}

impl Section {
    /// 16-bit values share words.
    pub(super) const fn packed(self) -> bool {
        matches!(
            self,
            Section::Dct | Section::Window16 | Section::Twiddles | Section::SplitTwiddle
        )
    }
}

/// Every word of the tables of `config`, in order, to `word`; stops early
/// when it returns `false`.
fn for_each_word(config: &FrontEndConfig, mut word: impl FnMut(i32) -> bool) {
    let mut pending: Option<(Section, i32)> = None;
    let mut going = true;
    for_each_value(config, |section, value| {
        if !going {
            return;
        }
        // Only the windows' and twiddles' 1.0 reach the clamps.
        let (least, most) = if section.packed() {
            (i16::MIN.into(), i16::MAX.into())
        } else {
            (i32::MIN.into(), i32::MAX.into())
        };
        let integer = round_half_up(value).clamp(least, most) as i32;
        if section.packed() {
            match pending.take() {
                Some((previous, low)) if previous == section => {
                    going = word(((low as u32 & 0xffff) | ((integer as u32) << 16)) as i32);
                }
                other => {
                    // A section of odd length ends in a half-filled word.
                    if let Some((_, low)) = other {
                        going = word(low & 0xffff);
                    }
                    pending = Some((section, integer));
                }
            }
        } else {
            if let Some((_, low)) = pending.take() {
                going = word(low & 0xffff);
            }
            going = going && word(integer);
        }
    });
    if going && let Some((_, low)) = pending {
        word(low & 0xffff);
    }
}

/// Writes the tables of a validated `config` into `tables[..layout.total()]`.
/// Returns `None`, having written nothing, if `tables` is short.
pub(super) fn build(config: &FrontEndConfig, tables: &mut [i32]) -> Option<()> {
    let layout = Layout::of(config);
    let tables = tables.get_mut(..layout.total())?;
    let mut words = tables.iter_mut();
    let mut written = 0usize;
    for_each_word(config, |value| match words.next() {
        Some(word) => {
            *word = value;
            written += 1;
            true
        }
        None => false,
    });
    (written == layout.total()).then_some(())
}

/// The index of the first word of `tables` that is not the validated
/// `config`'s, or `None` if all [`Layout::total`] are (and no more are read).
pub(super) fn first_difference(config: &FrontEndConfig, tables: &[i32]) -> Option<usize> {
    let total = Layout::of(config).total();
    let mut index = 0usize;
    let mut differs = false;
    for_each_word(config, |value| {
        differs = tables.get(index) != Some(&value);
        if !differs {
            index += 1;
        }
        !differs
    });
    (differs || index != total).then_some(index)
}

/// The int8 output multiplier: `round(v * multiplier / 2^shift)` is
/// `v * unit / output_scale` for a value `v` in units of `2^-16`, where `unit`
/// is `ln 2` for log-mel outputs (their values are `log2`) and 1 for MFCCs (the
/// DCT table holds the `ln 2`). `multiplier` is in `[2^30, 2^31)`; for scales
/// within the validated range `shift` is in `34..=59`.
pub(super) fn output_multiplier(config: &FrontEndConfig) -> (i32, u32) {
    let unit = if config.coefficients == 0 { LN_2 } else { 1.0 };
    let real = unit / f64::from(config.output_scale);
    let (fraction, exponent) = libm::frexp(real);
    let mut multiplier = round_half_up(fraction * f64::from(1u32 << 31));
    let mut exponent = exponent;
    if multiplier >= 1 << 31 {
        multiplier = 1 << 30;
        exponent += 1;
    }
    let shift = (i64::from(LOG_BITS) + 31 - i64::from(exponent)).clamp(1, 62);
    (multiplier as i32, shift as u32)
}

/// `log_floor * 2^FLOOR_BITS`.
pub(super) fn floor_fixed(config: &FrontEndConfig) -> u64 {
    let scaled = f64::from(config.log_floor) * libm::ldexp(1.0, FLOOR_BITS as i32);
    round_half_up(scaled).max(1) as u64
}
