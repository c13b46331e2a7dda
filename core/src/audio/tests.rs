//! The integer front end against an f64 implementation of the formulas in the
//! module documentation, its tables against their definitions, its FFT
//! against an f64 DFT, and its contracts (errors, no panics, streaming).

use super::tables::{self, Layout, Section};
use super::*;
use proptest::prelude::*;
use std::f64::consts::PI;
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

// ---------------------------------------------------------------------------
// The f64 reference, written from the formulas, sharing no code with the
// integer path (std's cos and ln, TensorFlow's filterbank formula).

struct Reference {
    config: FrontEndConfig,
    window: Vec<f64>,
    cos: Vec<f64>,
    sin: Vec<f64>,
    /// `filters[b][k]`, TensorFlow's `linear_to_mel_weight_matrix` transposed.
    filters: Vec<Vec<f64>>,
}

fn mel(hz: f64) -> f64 {
    1127.0 * (1.0 + hz / 700.0).ln()
}

impl Reference {
    fn new(config: &FrontEndConfig) -> Self {
        let window_len = config.window_samples as usize;
        let fft = config.fft_size as usize;
        let bands = config.mel_bands as usize;
        let window = (0..window_len)
            .map(|n| 0.5 - 0.5 * (2.0 * PI * n as f64 / window_len as f64).cos())
            .collect();
        let cos = (0..fft)
            .map(|i| (2.0 * PI * i as f64 / fft as f64).cos())
            .collect();
        let sin = (0..fft)
            .map(|i| (2.0 * PI * i as f64 / fft as f64).sin())
            .collect();
        let (low, high) = (mel(config.lower_hz as f64), mel(config.upper_hz as f64));
        let edge = |j: usize| low + (high - low) * j as f64 / (bands + 1) as f64;
        let filters = (0..bands)
            .map(|b| {
                (0..=fft / 2)
                    .map(|k| {
                        if k == 0 {
                            return 0.0; // TensorFlow drops the DC bin
                        }
                        let m = mel(k as f64 * config.sample_rate_hz as f64 / fft as f64);
                        let rising = (m - edge(b)) / (edge(b + 1) - edge(b));
                        let falling = (edge(b + 2) - m) / (edge(b + 2) - edge(b + 1));
                        rising.min(falling).max(0.0)
                    })
                    .collect()
            })
            .collect();
        Reference {
            config: *config,
            window,
            cos,
            sin,
            filters,
        }
    }

    /// `ln(E_b + floor)` for every band.
    fn log_mel(&self, frame: &[i16]) -> Vec<f64> {
        let fft = self.config.fft_size as usize;
        let s: Vec<f64> = frame
            .iter()
            .zip(&self.window)
            .map(|(&x, w)| x as f64 / 32768.0 * w)
            .collect();
        let power: Vec<f64> = (0..=fft / 2)
            .map(|k| {
                if self.filters.iter().all(|f| f[k] == 0.0) {
                    return 0.0;
                }
                let (mut re, mut im) = (0.0, 0.0);
                for (n, &v) in s.iter().enumerate() {
                    re += v * self.cos[k * n % fft];
                    im -= v * self.sin[k * n % fft];
                }
                re * re + im * im
            })
            .collect();
        self.filters
            .iter()
            .map(|f| {
                let energy: f64 = f.iter().zip(&power).map(|(w, p)| w * p).sum();
                (energy + self.config.log_floor as f64).ln()
            })
            .collect()
    }

    /// The real-valued outputs.
    fn features(&self, frame: &[i16]) -> Vec<f64> {
        let logs = self.log_mel(frame);
        let bands = logs.len();
        if self.config.coefficients == 0 {
            return logs;
        }
        (0..self.config.coefficients as usize)
            .map(|k| {
                let sum: f64 = logs
                    .iter()
                    .enumerate()
                    .map(|(b, l)| l * (PI * k as f64 * (b as f64 + 0.5) / bands as f64).cos())
                    .sum();
                (2.0 / bands as f64).sqrt() * sum
            })
            .collect()
    }

    fn quantise(&self, value: f64) -> i8 {
        let q = (value / self.config.output_scale as f64).round()
            + self.config.output_zero_point as f64;
        q.clamp(-128.0, 127.0) as i8
    }

    fn clip(&self, samples: &[i16]) -> Vec<i8> {
        let (window, hop) = (
            self.config.window_samples as usize,
            self.config.hop_samples as usize,
        );
        (0..self.config.frames_per_clip(samples.len()))
            .flat_map(|f| self.features(&samples[f * hop..f * hop + window]))
            .map(|v| self.quantise(v))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Signals.

/// xorshift64*, seeded: the same noise on every run.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        bits as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn amplitude(dbfs: f64) -> f64 {
    32767.0 * 10f64.powf(dbfs / 20.0)
}

fn to_i16(values: impl Iterator<Item = f64>) -> Vec<i16> {
    values
        .map(|v| v.round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// A sum of sines `(hz, dBFS)` with different phases.
fn tones(rate: u32, len: usize, parts: &[(f64, f64)]) -> Vec<i16> {
    to_i16((0..len).map(|n| {
        let t = n as f64 / rate as f64;
        parts
            .iter()
            .enumerate()
            .map(|(i, &(hz, db))| amplitude(db) * (2.0 * PI * hz * t + i as f64).sin())
            .sum()
    }))
}

fn chirp(rate: u32, len: usize, from: f64, to: f64, dbfs: f64) -> Vec<i16> {
    let duration = len as f64 / rate as f64;
    to_i16((0..len).map(|n| {
        let t = n as f64 / rate as f64;
        let phase = 2.0 * PI * (from * t + (to - from) * t * t / (2.0 * duration));
        amplitude(dbfs) * phase.sin()
    }))
}

fn noise(len: usize, dbfs: f64, seed: u64) -> Vec<i16> {
    let mut noise = Noise(seed);
    to_i16((0..len).map(|_| amplitude(dbfs) * noise.next()))
}

/// Harmonics of a gliding pitch under a syllable-like envelope, with formant
/// peaks: something like a voiced word.
fn voice(rate: u32, len: usize, dbfs: f64) -> Vec<i16> {
    let mut phase = 0.0;
    to_i16((0..len).map(|n| {
        let t = n as f64 / rate as f64;
        let pitch = 120.0 + 60.0 * (2.0 * PI * 1.3 * t).sin();
        phase += 2.0 * PI * pitch / rate as f64;
        let envelope = (PI * t * 3.0).sin().abs();
        let mut sum = 0.0;
        for h in 1..30 {
            let hz = pitch * h as f64;
            let formants = (-((hz - 700.0) / 300.0).powi(2)).exp()
                + 0.6 * (-((hz - 1800.0) / 400.0).powi(2)).exp()
                + 0.3 * (-((hz - 3000.0) / 500.0).powi(2)).exp();
            sum += formants * (phase * h as f64).sin();
        }
        amplitude(dbfs) * envelope * sum / 2.0
    }))
}

/// Named test signals of `len` samples at `rate`, quiet to clipping.
fn signals(rate: u32, len: usize) -> Vec<(String, Vec<i16>)> {
    let nyquist = rate as f64 / 2.0;
    let mut out: Vec<(String, Vec<i16>)> = Vec::new();
    for db in [-60.0, -40.0, -20.0, -6.0, 0.0] {
        out.push((
            format!("tone 1 kHz {db} dBFS"),
            tones(rate, len, &[(1000.0, db)]),
        ));
        let parts = [
            (300.0, db - 6.0),
            (1234.5, db - 12.0),
            (nyquist * 0.7, db - 9.5),
        ];
        out.push((format!("three tones {db} dBFS"), tones(rate, len, &parts)));
        out.push((
            format!("chirp {db} dBFS"),
            chirp(rate, len, 30.0, nyquist * 0.98, db - 0.1),
        ));
        out.push((
            format!("noise {db} dBFS"),
            noise(len, db, 0x9e37_79b9 + len as u64),
        ));
    }
    out.push(("tone -90 dBFS".into(), tones(rate, len, &[(440.0, -90.0)])));
    out.push((
        "tones at the band edges".into(),
        tones(rate, len, &[(25.0, -3.0), (3990.0, -30.0)]),
    ));
    out.push(("voice -20 dBFS".into(), voice(rate, len, -20.0)));
    out.push(("voice -3 dBFS".into(), voice(rate, len, -3.0)));
    out.push(("voice in noise".into(), {
        let v = voice(rate, len, -12.0);
        let n = noise(len, -40.0, 7);
        v.iter()
            .zip(&n)
            .map(|(&a, &b)| a.saturating_add(b))
            .collect()
    }));
    out.push(("silence".into(), vec![0; len]));
    out.push(("one-LSB noise".into(), noise(len, -90.3, 3)));
    out.push((
        "full-scale square 500 Hz".into(),
        (0..len)
            .map(|n| {
                if (n as f64 * 500.0 / rate as f64).fract() < 0.5 {
                    i16::MAX
                } else {
                    i16::MIN
                }
            })
            .collect(),
    ));
    out.push((
        "clipped sine (+10 dB)".into(),
        to_i16(
            (0..len).map(|n| amplitude(10.0) * (2.0 * PI * 700.0 * n as f64 / rate as f64).sin()),
        ),
    ));
    out.push((
        "DC offset and tone".into(),
        to_i16(
            (0..len).map(|n| 12000.0 + 8000.0 * (2.0 * PI * 2000.0 * n as f64 / rate as f64).sin()),
        ),
    ));
    out.push((
        "alternating full scale".into(),
        (0..len)
            .map(|n| if n % 2 == 0 { i16::MIN } else { i16::MAX })
            .collect(),
    ));
    out.push((
        "clicks".into(),
        (0..len)
            .map(|n| if n % 397 == 5 { i16::MIN } else { 0 })
            .collect(),
    ));
    out.push(("uniform full-scale noise".into(), noise(len, 0.0, 11)));
    out
}

// ---------------------------------------------------------------------------
// Configurations.

#[allow(clippy::too_many_arguments)] // The fields in their order, one line per configuration.
const fn config(
    rate: u32,
    window: u16,
    hop: u16,
    fft: u16,
    bands: u8,
    (lower_hz, upper_hz): (u32, u32),
    coefficients: u8,
    log_floor: f32,
    (output_scale, output_zero_point): (f32, i8),
) -> FrontEndConfig {
    FrontEndConfig {
        sample_rate_hz: rate,
        window_samples: window,
        hop_samples: hop,
        fft_size: fft,
        mel_bands: bands,
        lower_hz,
        upper_hz,
        coefficients,
        log_floor,
        output_scale,
        output_zero_point,
        fft_arithmetic: FftArithmetic::Int32,
    }
}

/// Configurations the error bounds are checked on, with a name.
fn configs() -> Vec<(&'static str, FrontEndConfig)> {
    let kws = FrontEndConfig::MLPERF_KWS;
    vec![
        ("MLPerf KWS MFCC, scale 1", kws),
        (
            "MLPerf KWS MFCC, scale 1/4",
            FrontEndConfig {
                output_scale: 0.25,
                output_zero_point: 40,
                ..kws
            },
        ),
        (
            "MLPerf KWS log-mel, scale 1/8",
            FrontEndConfig {
                coefficients: 0,
                output_scale: 0.125,
                output_zero_point: 10,
                ..kws
            },
        ),
        (
            "16 kHz, fft 1024, 64 bands 0-8000 Hz, 20 MFCC",
            config(16_000, 1024, 512, 1024, 64, (0, 8000), 20, 1e-8, (0.5, -20)),
        ),
        (
            "8 kHz, fft 256, 23 bands, 13 MFCC",
            config(8_000, 200, 80, 256, 23, (100, 3800), 13, 1e-4, (1.0, 0)),
        ),
        (
            "8 kHz, fft 64, 10 bands log-mel",
            config(8_000, 64, 32, 64, 10, (0, 4000), 0, 1e-6, (0.25, 0)),
        ),
        (
            "48 kHz, fft 1024, 40 bands, odd window",
            config(48_000, 999, 480, 1024, 40, (50, 20_000), 12, 1e-6, (1.0, 0)),
        ),
    ]
}

fn front_end_tables(config: &FrontEndConfig) -> Vec<i32> {
    let mut tables = vec![0; config.table_len()];
    FrontEnd::new(config, &mut tables).expect("valid config");
    tables
}

// ---------------------------------------------------------------------------
// The error bound.

#[derive(Default, Debug)]
struct Histogram {
    counts: [usize; 4],
    worst: usize,
}

impl Histogram {
    fn add(&mut self, a: i8, b: i8) {
        let d = (a as i32 - b as i32).unsigned_abs() as usize;
        self.counts[d.min(3)] += 1;
        self.worst = self.worst.max(d);
    }
    fn total(&self) -> usize {
        self.counts.iter().sum()
    }
    fn within_one(&self) -> f64 {
        (self.counts[0] + self.counts[1]) as f64 / self.total() as f64
    }
    fn absorb(&mut self, other: &Histogram) {
        for (count, more) in self.counts.iter_mut().zip(other.counts) {
            *count += more;
        }
        self.worst = self.worst.max(other.worst);
    }
}

/// The differences between the int8 features of `config` and the f64
/// reference's, one histogram per test signal that `wanted` names (half a
/// second of each: enough frames for every signal, and a quick f64 DFT). The
/// other signals go through the front end too (overflow panics in tests),
/// without the reference.
fn against_the_reference(
    config: &FrontEndConfig,
    wanted: impl Fn(&str) -> bool,
) -> Vec<(String, Histogram)> {
    let mut tables = vec![0; config.table_len()];
    let front_end = FrontEnd::new(config, &mut tables).unwrap();
    let reference = Reference::new(config);
    let mut work = vec![0; config.work_len()];
    let len = config.sample_rate_hz as usize / 2;
    let mut out = vec![0; config.clip_features_len(len)];
    let mut histograms = Vec::new();
    for (signal, samples) in signals(config.sample_rate_hz, len) {
        front_end
            .clip_features(&samples, &mut out, &mut work)
            .unwrap();
        if !wanted(&signal) {
            continue;
        }
        let mut histogram = Histogram::default();
        for (&a, &b) in out.iter().zip(&reference.clip(&samples)) {
            histogram.add(a, b);
        }
        histograms.push((signal, histogram));
    }
    histograms
}

#[test]
fn int8_features_are_within_one_step_of_the_f64_reference() {
    let mut overall = Histogram::default();
    for (name, config) in configs() {
        let mut per_config = Histogram::default();
        for (signal, per_signal) in against_the_reference(&config, |_| true) {
            assert!(per_signal.worst <= 2, "{name}, {signal}: {per_signal:?}");
            if per_signal.counts[1] + per_signal.counts[2] > 0 {
                std::eprintln!("{name}, {signal}: {:?}", per_signal.counts);
            }
            per_config.absorb(&per_signal);
        }
        std::eprintln!(
            "{name}: {} features, {:?} (equal, 1, 2, more), {:.4} % within one step",
            per_config.total(),
            per_config.counts,
            100.0 * per_config.within_one()
        );
        assert!(per_config.within_one() >= 0.99, "{name}: {per_config:?}");
        overall.absorb(&per_config);
    }
    std::eprintln!(
        "all: {overall:?}, {:.4} % exact",
        100.0 * overall.counts[0] as f64 / overall.total() as f64
    );
    assert!(overall.worst <= 2);
}

/// The log energies before quantisation, against `ln(E + floor)` in f64.
/// The integer path's error is modelled as 2e-3 in the logarithm plus an
/// error of 16 units of the FFT (`2^(e - 30)`) in the amplitude of every bin
/// of the band: the FFT's rounding, which matters only for bands far below the
/// frame's loudest bins, near the floor (the largest errors come from pure
/// synthetic tones whose quantisation noise is periodic, leaving bins exactly
/// empty, and from floors under the 16-bit noise).
#[test]
fn log_energies_are_close_to_the_f64_reference() {
    for (name, config) in configs() {
        let mut tables = vec![0; config.table_len()];
        let front_end = FrontEnd::new(&config, &mut tables).unwrap();
        let reference = Reference::new(&config);
        let mut work = vec![0; config.work_len()];
        let rate = config.sample_rate_hz;
        let window = config.window_samples as usize;
        let bins: Vec<f64> = reference
            .filters
            .iter()
            .map(|f| f.iter().filter(|&&w| w > 0.0).count() as f64)
            .collect();
        let (mut worst, mut worst_relative) = ((0.0f64, String::new()), 0.0f64);
        for (signal, samples) in signals(rate, window * 3) {
            for start in [0, window, 2 * window] {
                let frame = &samples[start..start + window];
                let logs = front_end
                    .log_energies(frame, &mut work, Path::FASTEST)
                    .unwrap();
                let expected = reference.log_mel(frame);
                let total = frame.iter().map(|x| x.unsigned_abs() as u64).sum::<u64>() << 15;
                let exponent = (64 - total.leading_zeros()).saturating_sub(30) as i32;
                // 16 units of the FFT, in real amplitude.
                let delta = 16.0 * 2f64.powi(exponent - 30);
                for (b, (&log, &want)) in logs.iter().zip(&expected).enumerate() {
                    let got = log as f64 / 65536.0 * core::f64::consts::LN_2;
                    let error = (got - want).abs();
                    // |X + d|^2 - |X|^2 <= 2 |X| |d| + |d|^2, summed over the
                    // band's bins (sum |X| <= sqrt(bins * sum |X|^2)).
                    let energy = (want.exp() - config.log_floor as f64).max(0.0);
                    let absolute =
                        2.0 * delta * (bins[b] * energy).sqrt() + bins[b] * delta * delta;
                    let allowed = 2e-3 + absolute / want.exp();
                    assert!(
                        error <= allowed,
                        "{name}, {signal}, band {b}: {got} vs {want}"
                    );
                    worst_relative = worst_relative.max(error / allowed);
                    if error > worst.0 {
                        worst = (error, format!("{signal}, band {b}: {got} vs {want}"));
                    }
                }
            }
        }
        std::eprintln!(
            "{name}: largest log-energy error {:.2e} ({}); at most {:.0} % of the model's bound",
            worst.0,
            worst.1,
            100.0 * worst_relative
        );
    }
}

// ---------------------------------------------------------------------------
// The FFT.

fn bit_reverse(values: &[[i32; 2]]) -> Vec<[i32; 2]> {
    let bits = values.len().trailing_zeros();
    let mut out = vec![[0, 0]; values.len()];
    for (n, &v) in values.iter().enumerate() {
        out[((n as u32).reverse_bits() >> (32 - bits)) as usize] = v;
    }
    out
}

fn sine_table(fft: usize) -> Vec<i32> {
    let config = FrontEndConfig {
        fft_size: fft as u16,
        ..FrontEndConfig::MLPERF_KWS
    };
    let config = FrontEndConfig {
        window_samples: config.window_samples.min(fft as u16),
        hop_samples: 16,
        mel_bands: 10,
        coefficients: 0,
        ..config
    };
    let tables = front_end_tables(&config);
    let layout = Layout::of(&config);
    tables[layout.window..layout.window + layout.sine].to_vec()
}

/// Random complex input whose components' magnitudes sum to 2^30, as the
/// front end's normalisation leaves a loud frame.
fn random_input(points: usize, seed: u64, peaky: bool) -> Vec<[i32; 2]> {
    let mut noise = Noise(seed);
    let raw: Vec<[f64; 2]> = (0..points)
        .map(|n| {
            if peaky {
                // A tone: the case where all the energy meets in one bin.
                let phase = 2.0 * PI * 5.3 * n as f64 / points as f64;
                [phase.cos(), phase.sin()]
            } else {
                [noise.next(), noise.next()]
            }
        })
        .collect();
    let sum: f64 = raw.iter().map(|v| v[0].abs() + v[1].abs()).sum();
    let scale = (1u64 << 30) as f64 / sum;
    raw.iter()
        .map(|v| [(v[0] * scale).trunc() as i32, (v[1] * scale).trunc() as i32])
        .collect()
}

#[test]
fn complex_fft_matches_an_f64_dft() {
    for fft in [64, 128, 256, 512, 1024] {
        let points = fft / 2;
        let sine = sine_table(fft);
        for (seed, peaky) in [(1, false), (2, false), (3, true)] {
            let input = random_input(points, seed, peaky);
            let mut z = bit_reverse(&input);
            fft::complex_fft(&mut z, &sine);
            let (mut error, mut energy, mut worst) = (0.0, 0.0, 0.0f64);
            for (k, got) in z.iter().enumerate() {
                let (mut re, mut im) = (0.0, 0.0);
                for (n, v) in input.iter().enumerate() {
                    let angle = -2.0 * PI * (k * n % points) as f64 / points as f64;
                    re += v[0] as f64 * angle.cos() - v[1] as f64 * angle.sin();
                    im += v[0] as f64 * angle.sin() + v[1] as f64 * angle.cos();
                }
                let e = (got[0] as f64 - re).hypot(got[1] as f64 - im);
                worst = worst.max(e);
                error += e * e;
                energy += re * re + im * im;
            }
            let relative = (error / energy).sqrt();
            std::eprintln!(
                "fft {fft} seed {seed}: relative rms error {relative:.2e}, worst {worst:.2} LSB"
            );
            // Rounding of about half an LSB per stage, against values up to 2^30.
            assert!(relative < 3e-7, "fft {fft}: {relative}");
            assert!(worst < 24.0, "fft {fft}: worst error {worst} LSB");
        }
    }
}

/// The Armv6-M products from 16-bit halves are the exact products.
#[test]
fn products_by_halves_are_exact() {
    let edges = [
        i32::MIN,
        i32::MIN + 1,
        -(1 << 30) - 2048,
        -65_537,
        -65_536,
        -65_535,
        -32_768,
        -1,
        0,
        1,
        32_767,
        65_535,
        65_536,
        1 << 30,
        (1 << 30) + 2048,
        i32::MAX,
    ];
    let mut noise = Noise(77);
    let mut values: Vec<i32> = edges.to_vec();
    values.extend((0..200).map(|_| (noise.next() * 2_147_483_647.0) as i32));
    for &a in &values {
        for &b in &values {
            assert_eq!(
                fft::product_by_halves(a, b),
                i64::from(a) * i64::from(b),
                "{a} * {b}"
            );
        }
        let wide = (i64::from(a) as u64).wrapping_mul(0x9e37_79b9) >> 3;
        for weight in [0u32, 1, 0x7fff, 0x8000, 0xffff] {
            for value in [u64::from(a as u32), wide, u64::MAX >> 2, wide >> 17] {
                assert_eq!(
                    fft::product_u64_by_halves(value, weight),
                    value.wrapping_mul(u64::from(weight)),
                    "{value} * {weight}"
                );
            }
        }
    }
}

#[test]
fn real_bins_match_an_f64_dft() {
    for fft in [64, 512, 1024] {
        let points = fft / 2;
        let sine = sine_table(fft);
        let input = random_input(points, 9, false);
        let real: Vec<f64> = input
            .iter()
            .flat_map(|v| [v[0] as f64, v[1] as f64])
            .collect();
        let mut z = bit_reverse(&input);
        fft::complex_fft(&mut z, &sine);
        let mut worst = 0.0f64;
        for k in 0..points {
            let (re, im) = fft::real_bin(&z, k, fft::twiddle(&sine, k, points / 2));
            let (mut want_re, mut want_im) = (0.0, 0.0);
            for (n, &v) in real.iter().enumerate() {
                let angle = -2.0 * PI * (k * n % fft) as f64 / fft as f64;
                want_re += v * angle.cos();
                want_im += v * angle.sin();
            }
            worst = worst.max((re as f64 - want_re).hypot(im as f64 - want_im));
        }
        std::eprintln!("real fft {fft}: worst error {worst:.2} LSB of values up to 2^30");
        assert!(worst < 24.0, "fft {fft}: {worst}");
    }
}

// ---------------------------------------------------------------------------
// Tables.

/// Each table entry is its definition (computed here with std) rounded.
#[test]
#[allow(clippy::needless_range_loop)] // Bands and bins index two matrices alike.
fn tables_match_their_definitions() {
    for (name, config) in configs() {
        let tables = front_end_tables(&config);
        let layout = Layout::of(&config);
        let mut rest = &tables[..];
        let mut take = |n: usize| {
            let (a, b) = rest.split_at(n);
            rest = b;
            a.to_vec()
        };
        let (window, sine, edges, bins, log, dct) = (
            take(layout.window),
            take(layout.sine),
            take(layout.edges),
            take(layout.bins),
            take(layout.log),
            take(layout.dct),
        );
        assert!(rest.is_empty());
        let unpack = |words: &[i32]| -> Vec<i32> {
            words
                .iter()
                .flat_map(|&w| [w as i16 as i32, w >> 16])
                .collect()
        };
        let close = |got: i32, want: f64, what: &str| {
            assert!(
                (got as f64 - want).abs() <= 0.5 + 1e-9,
                "{name}: {what}: {got} vs {want}"
            );
        };
        let w_len = config.window_samples as usize;
        for (n, &w) in window.iter().enumerate() {
            let want = 0.5 - 0.5 * (2.0 * PI * n as f64 / w_len as f64).cos();
            // 1.0 is stored as 2^31 - 1.
            close(
                w,
                (want * (1u64 << 31) as f64).min(i32::MAX as f64),
                "window",
            );
        }
        let fft = config.fft_size as usize;
        for (t, &s) in sine.iter().enumerate() {
            close(
                s,
                (2.0 * PI * t as f64 / fft as f64).sin() * (1u64 << 30) as f64,
                "sine",
            );
        }
        for (i, &l) in log.iter().enumerate() {
            close(l, (1.0 + i as f64 / 64.0).log2() * 65536.0, "log");
        }
        let bands = config.mel_bands as usize;
        if config.coefficients > 0 {
            let dct = unpack(&dct);
            let row = bands.next_multiple_of(2);
            for k in 0..config.coefficients as usize {
                for b in 0..row {
                    let want = if b < bands {
                        core::f64::consts::LN_2
                            * (2.0 / bands as f64).sqrt()
                            * (PI * k as f64 * (b as f64 + 0.5) / bands as f64).cos()
                            * 32768.0
                    } else {
                        0.0
                    };
                    close(dct[k * row + b], want, "dct");
                }
            }
        }
        // The filterbank: rebuild each band's weights from the segments and
        // compare with TensorFlow's formula.
        let reference = Reference::new(&config);
        let mut rebuilt = vec![vec![0.0; fft / 2 + 1]; bands];
        let weights: Vec<i32> = bins.chunks(3).map(|b| b[0]).collect();
        let fft_size = fft as f64;
        let first_bin = edges[0] as usize;
        for (i, b) in bins.chunks(3).enumerate() {
            let angle = 2.0 * PI * (first_bin + i) as f64 / fft_size;
            close(b[1], angle.cos() * (1u64 << 30) as f64, "bin cos");
            close(b[2], angle.sin() * (1u64 << 30) as f64, "bin sin");
        }
        let mut next_weight = weights.iter();
        for (segment, pair) in edges.windows(2).enumerate() {
            for k in pair[0] as usize..pair[1] as usize {
                let r = *next_weight.next().unwrap() as f64;
                if segment < bands {
                    rebuilt[segment][k] = r;
                }
                if segment > 0 {
                    rebuilt[segment - 1][k] = 32768.0 - r;
                }
            }
        }
        assert!(next_weight.next().is_none());
        for b in 0..bands {
            for k in 0..=fft / 2 {
                let want = reference.filters[b][k] * 32768.0;
                assert!(
                    (rebuilt[b][k] - want).abs() <= 0.5 + 1e-6,
                    "{name}: band {b} bin {k}: {} vs {want}",
                    rebuilt[b][k]
                );
            }
        }
    }
}

/// No table value of these configurations lies within 1e-6 of a rounding
/// tie, so a `libm` a few ulps different (there is none: the same code runs
/// everywhere) could still not change a table.
#[test]
fn table_values_are_far_from_rounding_ties() {
    for (name, config) in configs() {
        let mut closest = (1.0f64, Section::Window, 0.0);
        tables::for_each_value(&config, |section, value| {
            let distance = ((value - value.floor()) - 0.5).abs();
            if distance < closest.0 {
                closest = (distance, section, value);
            }
        });
        std::eprintln!("{name}: closest to a tie: {closest:?}");
        assert!(closest.0 > 1e-6, "{name}: {closest:?}");
    }
}

/// The tables and features of fixed inputs, as CRC-32s: every target that
/// runs these tests (x86_64, and aarch64 under QEMU in `scripts/check.sh`)
/// must compute these bytes, and so must the firmware. When written, a test
/// program computed the same two CRCs on QEMU's Cortex-M4 (netduinoplus2,
/// `thumbv7em-none-eabihf`, f64 in software) and Cortex-M0 (microbit).
#[test]
fn golden_bytes() {
    assert_eq!(
        golden(&FrontEndConfig::MLPERF_KWS),
        (1297, 0xce0d_7669, 0x2e00_07ff)
    );
}

/// The table length and the CRC-32s of the tables and of a fixed clip's
/// features (a voice at -12 dBFS in noise at -50) under `config`.
fn golden(config: &FrontEndConfig) -> (usize, u32, u32) {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let tables = front_end_tables(config);
    let bytes: Vec<u8> = tables.iter().flat_map(|w| w.to_le_bytes()).collect();
    let tables_crc = crc.checksum(&bytes);
    let mut tables_buffer = tables.clone();
    let front_end = FrontEnd::new(config, &mut tables_buffer).unwrap();
    let mut work = vec![0; config.work_len()];
    let mut clip: Vec<i16> = voice(16_000, 16_000, -12.0);
    for (c, n) in clip.iter_mut().zip(noise(16_000, -50.0, 5)) {
        *c = c.saturating_add(n);
    }
    let mut features = vec![0; config.clip_features_len(clip.len())];
    assert_eq!(
        front_end.clip_features(&clip, &mut features, &mut work),
        Ok(49)
    );
    let bytes: Vec<u8> = features.iter().map(|&f| f as u8).collect();
    let features_crc = crc.checksum(&bytes);
    std::eprintln!(
        "tables {tables_crc:#010x}, features {features_crc:#010x}, first frame {:?}",
        &features[..10]
    );
    (config.table_len(), tables_crc, features_crc)
}

// ---------------------------------------------------------------------------
// Contracts.

#[test]
fn sizes_of_the_mlperf_configuration() {
    let config = FrontEndConfig::MLPERF_KWS;
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.frames_per_clip(16_000), 49);
    assert_eq!(config.frames_per_clip(479), 0);
    assert_eq!(config.frames_per_clip(480), 1);
    assert_eq!(config.frames_per_clip(799), 1);
    assert_eq!(config.frames_per_clip(800), 2);
    assert_eq!(config.features_per_frame(), 10);
    assert_eq!(config.clip_features_len(16_000), 490);
    let layout = Layout::of(&config);
    assert_eq!(
        [
            layout.window,
            layout.sine,
            layout.edges,
            layout.bins,
            layout.log,
            layout.dct
        ],
        [480, 129, 42, 381, 65, 200]
    );
    assert_eq!(config.table_len(), 1297);
    assert_eq!(config.work_len(), 552);
    let largest = self::config(
        16_000,
        1024,
        1024,
        1024,
        128,
        (0, 8_000),
        128,
        1e-6,
        (1.0, 0),
    );
    assert_eq!(largest.validate(), Ok(()));
    std::eprintln!(
        "largest configuration: {} words of tables",
        largest.table_len()
    );
    front_end_tables(&largest);
}

#[test]
fn bad_configurations_are_errors() {
    let good = FrontEndConfig::MLPERF_KWS;
    let cases = [
        (
            FrontEndConfig {
                sample_rate_hz: 999,
                ..good
            },
            FrontEndError::SampleRate { hz: 999 },
        ),
        (
            FrontEndConfig {
                sample_rate_hz: 96_001,
                ..good
            },
            FrontEndError::SampleRate { hz: 96_001 },
        ),
        (
            FrontEndConfig {
                fft_size: 500,
                ..good
            },
            FrontEndError::FftSize { size: 500 },
        ),
        (
            FrontEndConfig {
                fft_size: 32,
                ..good
            },
            FrontEndError::FftSize { size: 32 },
        ),
        (
            FrontEndConfig {
                fft_size: 2048,
                ..good
            },
            FrontEndError::FftSize { size: 2048 },
        ),
        (
            FrontEndConfig {
                fft_size: 0,
                ..good
            },
            FrontEndError::FftSize { size: 0 },
        ),
        (
            FrontEndConfig {
                fft_size: 256,
                ..good
            },
            FrontEndError::WindowSamples {
                samples: 480,
                fft_size: 256,
            },
        ),
        (
            FrontEndConfig {
                window_samples: 1,
                hop_samples: 1,
                ..good
            },
            FrontEndError::WindowSamples {
                samples: 1,
                fft_size: 512,
            },
        ),
        (
            FrontEndConfig {
                hop_samples: 0,
                ..good
            },
            FrontEndError::HopSamples {
                samples: 0,
                window_samples: 480,
            },
        ),
        (
            FrontEndConfig {
                hop_samples: 481,
                ..good
            },
            FrontEndError::HopSamples {
                samples: 481,
                window_samples: 480,
            },
        ),
        (
            FrontEndConfig {
                mel_bands: 0,
                coefficients: 0,
                ..good
            },
            FrontEndError::MelBands {
                bands: 0,
                fft_size: 512,
            },
        ),
        (
            FrontEndConfig {
                mel_bands: 129,
                ..good
            },
            FrontEndError::MelBands {
                bands: 129,
                fft_size: 512,
            },
        ),
        (
            FrontEndConfig {
                fft_size: 64,
                window_samples: 64,
                hop_samples: 32,
                mel_bands: 32,
                ..good
            },
            FrontEndError::MelBands {
                bands: 32,
                fft_size: 64,
            },
        ),
        (
            FrontEndConfig {
                lower_hz: 4_000,
                ..good
            },
            FrontEndError::FrequencyRange {
                lower_hz: 4_000,
                upper_hz: 4_000,
                sample_rate_hz: 16_000,
            },
        ),
        (
            FrontEndConfig {
                upper_hz: 8_001,
                ..good
            },
            FrontEndError::FrequencyRange {
                lower_hz: 20,
                upper_hz: 8_001,
                sample_rate_hz: 16_000,
            },
        ),
        (
            FrontEndConfig {
                upper_hz: u32::MAX,
                ..good
            },
            FrontEndError::FrequencyRange {
                lower_hz: 20,
                upper_hz: u32::MAX,
                sample_rate_hz: 16_000,
            },
        ),
        (
            FrontEndConfig {
                coefficients: 41,
                ..good
            },
            FrontEndError::Coefficients {
                coefficients: 41,
                bands: 40,
            },
        ),
        (
            FrontEndConfig {
                log_floor: 0.0,
                ..good
            },
            FrontEndError::LogFloor { floor: 0.0 },
        ),
        (
            FrontEndConfig {
                log_floor: 2.0,
                ..good
            },
            FrontEndError::LogFloor { floor: 2.0 },
        ),
        (
            FrontEndConfig {
                output_scale: 0.0,
                ..good
            },
            FrontEndError::OutputScale { scale: 0.0 },
        ),
        (
            FrontEndConfig {
                output_scale: -1.0,
                ..good
            },
            FrontEndError::OutputScale { scale: -1.0 },
        ),
        (
            FrontEndConfig {
                output_scale: f32::INFINITY,
                ..good
            },
            FrontEndError::OutputScale {
                scale: f32::INFINITY,
            },
        ),
    ];
    for (config, error) in cases {
        assert_eq!(config.validate(), Err(error), "{config:?}");
        let mut tables = vec![0; config.table_len().min(100_000)];
        assert_eq!(FrontEnd::new(&config, &mut tables).err(), Some(error));
        assert!(!std::format!("{error}").is_empty());
    }
    // NaN compares unequal to itself, so match on the variant.
    for config in [
        FrontEndConfig {
            log_floor: f32::NAN,
            ..good
        },
        FrontEndConfig {
            output_scale: f32::NAN,
            ..good
        },
    ] {
        assert!(matches!(
            config.validate(),
            Err(FrontEndError::LogFloor { .. } | FrontEndError::OutputScale { .. })
        ));
    }
}

#[test]
fn wrong_buffer_sizes_are_errors() {
    let config = FrontEndConfig::MLPERF_KWS;
    let mut short = vec![0; config.table_len() - 1];
    assert_eq!(
        FrontEnd::new(&config, &mut short).err(),
        Some(FrontEndError::TablesTooShort {
            needed: 1297,
            available: 1296
        })
    );
    let mut longer = vec![0; config.table_len() + 5];
    let front_end = FrontEnd::new(&config, &mut longer).unwrap();
    let frame = [0i16; 480];
    let mut out = [0i8; 10];
    let mut work = vec![0; config.work_len()];
    assert_eq!(
        front_end.frame_features(&frame[..479], &mut out, &mut work),
        Err(FrontEndError::FrameLength {
            expected: 480,
            found: 479
        })
    );
    assert_eq!(
        front_end.frame_features(&frame, &mut out[..9], &mut work),
        Err(FrontEndError::OutputLength {
            expected: 10,
            found: 9
        })
    );
    assert_eq!(
        front_end.frame_features(&frame, &mut out, &mut work[..551]),
        Err(FrontEndError::WorkTooShort {
            needed: 552,
            available: 551
        })
    );
    let clip = vec![0i16; 16_000];
    let mut features = vec![0i8; 491];
    assert_eq!(
        front_end.clip_features(&clip, &mut features, &mut work),
        Err(FrontEndError::OutputLength {
            expected: 490,
            found: 491
        })
    );
    assert_eq!(
        front_end.clip_features(&clip, &mut features[..490], &mut work[..10]),
        Err(FrontEndError::WorkTooShort {
            needed: 552,
            available: 10
        })
    );
    // Too short for a frame: no frames, no features.
    assert_eq!(
        front_end.clip_features(&clip[..479], &mut [], &mut work),
        Ok(0)
    );
    assert_eq!(
        front_end.clip_features(&[], &mut [], &mut []),
        Err(FrontEndError::WorkTooShort {
            needed: 552,
            available: 0
        })
    );
    // A longer work buffer is fine.
    let mut more = vec![0; 1000];
    assert_eq!(
        front_end.frame_features(&frame, &mut out, &mut more),
        Ok(())
    );
}

/// A stream cut into arbitrary pieces, its frames computed as soon as their
/// last sample arrives, gives the clip's bytes.
#[test]
fn streaming_hop_by_hop_gives_the_clip_features() {
    for (_, config) in configs() {
        let mut tables = vec![0; config.table_len()];
        let front_end = FrontEnd::new(&config, &mut tables).unwrap();
        let mut work = vec![0; config.work_len()];
        let rate = config.sample_rate_hz as usize;
        let clip = voice(config.sample_rate_hz, rate, -10.0);
        let mut whole = vec![0; config.clip_features_len(clip.len())];
        front_end
            .clip_features(&clip, &mut whole, &mut work)
            .unwrap();

        let (window, hop) = (config.window_samples as usize, config.hop_samples as usize);
        let mut buffer: Vec<i16> = Vec::with_capacity(window);
        let mut streamed = Vec::new();
        let mut until_next = window; // samples until the next frame is complete
        for piece in clip.chunks(37) {
            for &sample in piece {
                if buffer.len() == window {
                    buffer.remove(0);
                }
                buffer.push(sample);
                until_next -= 1;
                if until_next == 0 {
                    let mut out = vec![0; config.features_per_frame()];
                    front_end
                        .frame_features(&buffer, &mut out, &mut work)
                        .unwrap();
                    streamed.extend(out);
                    until_next = hop;
                }
            }
        }
        assert_eq!(streamed, whole);
    }
}

/// Inputs that stress the bounds of the integer path (overflow would panic
/// here, since tests check arithmetic overflow). A constant full-scale frame
/// whose window spans the whole FFT has exactly three nonzero bins: the f64
/// bands beyond them hold the floor alone, 157 dB below the loud bin (and
/// below the quantisation noise any real 16-bit input has), which the integer
/// FFT resolves to within two int8 steps, not one.
#[test]
fn extreme_frames_do_not_overflow() {
    let configs = configs();
    for (name, config) in &configs {
        let mut tables = vec![0; config.table_len()];
        let front_end = FrontEnd::new(config, &mut tables).unwrap();
        let reference = Reference::new(config);
        let mut work = vec![0; config.work_len()];
        let window = config.window_samples as usize;
        let frames: Vec<Vec<i16>> = vec![
            vec![i16::MIN; window],
            vec![i16::MAX; window],
            (0..window)
                .map(|n| if n % 2 == 0 { i16::MIN } else { i16::MAX })
                .collect(),
            (0..window)
                .map(|n| if n == window / 2 { i16::MIN } else { 0 })
                .collect(),
            (0..window)
                .map(|n| if n % 4 < 2 { i16::MIN } else { i16::MAX })
                .collect(),
            // The sign of a cosine at a bin frequency: |X_k| near sum |x w|.
            (0..window)
                .map(|n| {
                    let c = (2.0 * PI * 7.0 * n as f64 / config.fft_size as f64).cos();
                    if c >= 0.0 { i16::MAX } else { i16::MIN }
                })
                .collect(),
            vec![1; window],
            vec![-1; window],
        ];
        for (index, frame) in frames.iter().enumerate() {
            let mut out = vec![0; config.features_per_frame()];
            front_end
                .frame_features(frame, &mut out, &mut work)
                .unwrap();
            let expected: Vec<i8> = reference
                .features(frame)
                .iter()
                .map(|&v| reference.quantise(v))
                .collect();
            for (&a, &b) in out.iter().zip(&expected) {
                assert!(
                    (a as i32 - b as i32).abs() <= 2,
                    "{name}, frame {index}: {out:?} vs {expected:?}"
                );
            }
        }
    }
}

/// Runs the front end and the original code (`original.rs`) on `frame`;
/// panics, naming `what`, unless both give the same bytes and leave the same
/// work buffer (the FFT's points and the log energies).
fn assert_same_as_the_original(front_end: &FrontEnd<'_>, frame: &[i16], what: &str) {
    let config = front_end.config();
    let mut out = vec![0; config.features_per_frame()];
    let mut work = vec![0x5555_5555; config.work_len()];
    front_end
        .frame_features(frame, &mut out, &mut work)
        .unwrap();
    let mut original_out = vec![0; config.features_per_frame()];
    let mut original_work = vec![0x2aaa_aaaa; config.work_len()];
    original::frame_features(front_end, frame, &mut original_out, &mut original_work);
    assert_eq!(out, original_out, "{what}: features");
    let points = config.fft_size as usize;
    if let Some(k) = (0..points).find(|&k| work[k] != original_work[k]) {
        panic!("{what}: FFT word {k}: {} vs {}", work[k], original_work[k]);
    }
    assert_eq!(
        &work[points..],
        &original_work[points..],
        "{what}: log energies"
    );
}

/// The extreme frames of `extreme_frames_do_not_overflow` and others that
/// stress the block exponent's edges.
fn extreme_frames(config: &FrontEndConfig) -> Vec<Vec<i16>> {
    let window = config.window_samples as usize;
    let mut frames: Vec<Vec<i16>> = vec![
        vec![i16::MIN; window],
        vec![i16::MAX; window],
        (0..window)
            .map(|n| if n % 2 == 0 { i16::MIN } else { i16::MAX })
            .collect(),
        (0..window)
            .map(|n| if n % 4 < 2 { i16::MIN } else { i16::MAX })
            .collect(),
        (0..window)
            .map(|n| {
                let c = (2.0 * PI * 7.0 * n as f64 / config.fft_size as f64).cos();
                if c >= 0.0 { i16::MAX } else { i16::MIN }
            })
            .collect(),
        vec![1; window],
        vec![-1; window],
        vec![0; window],
    ];
    for value in [i16::MIN, i16::MAX, -16_384, 16_383, 1, -1] {
        for position in [0, 1, window / 2, window - 1] {
            let mut frame = vec![0; window];
            frame[position] = value;
            frames.push(frame);
        }
    }
    frames
}

/// Every configuration, every test signal frame by frame, the extreme
/// frames: the same bytes and work buffer as the original code.
#[test]
fn same_bytes_and_work_as_the_original_code() {
    for (name, config) in configs() {
        let mut tables = vec![0; config.table_len()];
        let front_end = FrontEnd::new(&config, &mut tables).unwrap();
        let window = config.window_samples as usize;
        let hop = config.hop_samples as usize;
        let rate = config.sample_rate_hz;
        for (signal, samples) in signals(rate, rate as usize / 4) {
            for start in (0..samples.len().saturating_sub(window)).step_by(hop) {
                let frame = &samples[start..start + window];
                assert_same_as_the_original(
                    &front_end,
                    frame,
                    &format!("{name}, {signal} at {start}"),
                );
            }
        }
        for (index, frame) in extreme_frames(&config).iter().enumerate() {
            assert_same_as_the_original(
                &front_end,
                frame,
                &format!("{name}, extreme frame {index}"),
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_samples_never_panic(
        samples in prop::collection::vec(
            prop_oneof![any::<i16>(), Just(i16::MIN), Just(i16::MAX), Just(0i16)],
            0..2_000,
        ),
    ) {
        for config in [FrontEndConfig::MLPERF_KWS, FrontEndConfig::MLPERF_KWS_INT16] {
        let mut tables = vec![0; config.table_len()];
        let front_end = FrontEnd::new(&config, &mut tables).unwrap();
        let mut work = vec![0; config.work_len()];
        let mut out = vec![0; config.clip_features_len(samples.len())];
        let frames = front_end.clip_features(&samples, &mut out, &mut work).unwrap();
        prop_assert_eq!(frames, config.frames_per_clip(samples.len()));
        if samples.len() >= 480 {
            let mut frame_out = [0i8; 10];
            front_end.frame_features(&samples[..480], &mut frame_out, &mut work).unwrap();
            prop_assert_eq!(&frame_out[..], &out[..10]);
        }
        }
    }

    /// Random frames, loud and quiet, on MLPerf's configuration: the same
    /// bytes and work buffer as the original code.
    #[test]
    fn random_frames_match_the_original_code(
        samples in prop::collection::vec(
            prop_oneof![any::<i16>(), Just(i16::MIN), Just(i16::MAX), -8i16..8],
            480,
        ),
        shift in 0u32..16,
    ) {
        let config = FrontEndConfig::MLPERF_KWS;
        let mut tables = vec![0; config.table_len()];
        let front_end = FrontEnd::new(&config, &mut tables).unwrap();
        let frame: Vec<i16> = samples.iter().map(|&x| x >> shift).collect();
        assert_same_as_the_original(&front_end, &frame, "random frame");
    }

    /// Any configuration is either rejected or runs (on one frame of noise).
    #[test]
    fn any_configuration_is_rejected_or_runs(
        rate in prop_oneof![Just(16_000u32), 0u32..200_000],
        fft_bits in 5u32..12,
        fft_odd in prop::bool::weighted(0.05),
        window in 0u16..1100,
        hop in 0u16..1100,
        bands in 0u8..=255,
        lower in 0u32..30_000,
        upper in 0u32..60_000,
        coefficients in 0u8..=255,
        floor in prop_oneof![Just(1e-6f32), any::<f32>()],
        scale in prop_oneof![Just(1.0f32), any::<f32>()],
        zero_point in any::<i8>(),
    ) {
        let config = FrontEndConfig {
            sample_rate_hz: rate,
            window_samples: window,
            hop_samples: hop,
            fft_size: (1u16 << fft_bits) + fft_odd as u16,
            mel_bands: bands,
            lower_hz: lower,
            upper_hz: upper,
            coefficients,
            log_floor: floor,
            output_scale: scale,
            output_zero_point: zero_point,
            fft_arithmetic: if fft_odd { FftArithmetic::Int16 } else { FftArithmetic::Int32 },
        };
        let _ = (config.frames_per_clip(5_000), config.work_len(), config.clip_features_len(100));
        let mut tables = vec![0; config.table_len()];
        match FrontEnd::new(&config, &mut tables) {
            Ok(_) => prop_assert_eq!(config.validate(), Ok(())),
            Err(error) => prop_assert_eq!(config.validate().err().unwrap_or(error), error),
        }
    }

    /// Any valid configuration builds its tables and runs, on any frame.
    #[test]
    fn any_valid_configuration_runs(
        rate in 1_000u32..=96_000,
        fft_bits in 6u32..=10,
        (window, hop) in (0.0f64..1.0, 0.0f64..1.0),
        bands in 0.0f64..1.0,
        (lower, upper) in (0.0f64..1.0, 0.0f64..=1.0),
        coefficients in 0.0f64..=1.0,
        (floor, scale) in (0.0f64..=1.0, 0.0f64..=1.0),
        zero_point in any::<i8>(),
        loudness in -100.0f64..10.0,
        seed in any::<u64>(),
    ) {
        let fft = 1u16 << fft_bits;
        let window = 2 + (window * (fft - 2) as f64) as u16;
        let hop = 1 + (hop * (window - 1) as f64) as u16;
        let most_bands = (fft / 2 - 1).min(128);
        let bands = 1 + (bands * (most_bands - 1) as f64) as u8;
        let upper = 1 + (upper * (rate / 2 - 1) as f64) as u32;
        let lower = (lower * upper as f64) as u32;
        let config = FrontEndConfig {
            sample_rate_hz: rate,
            window_samples: window,
            hop_samples: hop,
            fft_size: fft,
            mel_bands: bands,
            lower_hz: lower.min(upper - 1),
            upper_hz: upper,
            coefficients: (coefficients * bands as f64) as u8,
            log_floor: (1e-9f64 * 1e9f64.powf(floor)) as f32,
            output_scale: (1.0f64 / 4096.0 * 4096f64.powf(2.0 * scale)).min(4096.0) as f32,
            output_zero_point: zero_point,
            fft_arithmetic: FftArithmetic::Int32,
        };
        prop_assert_eq!(config.validate(), Ok(()), "{:?}", config);
        let mut tables = vec![0; config.table_len()];
        let front_end = FrontEnd::new(&config, &mut tables).unwrap();
        let frame = noise(window as usize, loudness, seed);
        let mut out = vec![0; config.features_per_frame()];
        let mut work = vec![0; config.work_len()];
        front_end.frame_features(&frame, &mut out, &mut work).unwrap();
        let full_scale = vec![i16::MIN; window as usize];
        front_end.frame_features(&full_scale, &mut out, &mut work).unwrap();
        assert_same_as_the_original(&front_end, &frame, "noise");
        assert_same_as_the_original(&front_end, &full_scale, "full scale");
    }
}

// ---------------------------------------------------------------------------
// The 16-bit FFT.

/// `configs()` with the 16-bit FFT.
fn int16_configs() -> Vec<(&'static str, FrontEndConfig)> {
    configs()
        .into_iter()
        .map(|(name, config)| {
            let config = FrontEndConfig {
                fft_arithmetic: FftArithmetic::Int16,
                ..config
            };
            (name, config)
        })
        .collect()
}

/// The complex FFT's points after all its stages, against an f64 DFT of the
/// same scaled, windowed input divided by `M`, for every FFT size (radix-4
/// stages only, and with a last radix-2 stage): each truncating step adds
/// under one unit, and there are `log2 M + 1` of them (with the rotations).
#[test]
fn int16_fft_matches_an_f64_dft() {
    for fft in [64u16, 128, 256, 512, 1024] {
        let config = FrontEndConfig {
            window_samples: fft,
            hop_samples: fft,
            fft_size: fft,
            mel_bands: 20,
            coefficients: 0,
            ..FrontEndConfig::MLPERF_KWS_INT16
        };
        let mut tables = vec![0; config.table_len()];
        let front_end = FrontEnd::new(&config, &mut tables).unwrap();
        let points = fft as usize / 2;
        for (signal, samples) in signals(16_000, fft as usize).into_iter().step_by(3) {
            let mut z = vec![0; points];
            let exponent =
                fft16::window_first_stage(&samples, front_end.window, &mut z, Path::Portable);
            fft16::later_stages(&mut z, front_end.sine, Path::Portable);
            let scaled: Vec<f64> = samples
                .iter()
                .enumerate()
                .map(|(n, &x)| {
                    let word = front_end.window[n / 2];
                    let w = if n % 2 == 0 {
                        fft16::low(word)
                    } else {
                        fft16::high(word)
                    };
                    let shift = 15 - exponent;
                    ((i32::from(x) * w + (1 << (shift - 1))) >> shift) as f64
                })
                .collect();
            let mut worst = 0.0f64;
            for (k, &point) in z.iter().enumerate() {
                let (mut re, mut im) = (0.0, 0.0);
                for n in 0..points {
                    let angle = -2.0 * PI * (k * n) as f64 / points as f64;
                    let (a, b) = (scaled[2 * n], scaled[2 * n + 1]);
                    re += a * angle.cos() - b * angle.sin();
                    im += a * angle.sin() + b * angle.cos();
                }
                let (re, im) = (re / points as f64, im / points as f64);
                let error = (fft16::low(point) as f64 - re)
                    .abs()
                    .max((fft16::high(point) as f64 - im).abs());
                worst = worst.max(error);
            }
            let steps = points.trailing_zeros() as f64 + 1.0;
            std::eprintln!("fft {fft}, {signal}: worst {worst:.2} units");
            assert!(worst <= steps, "fft {fft}, {signal}: {worst} units off");
        }
    }
}

/// The 16-bit FFT's features against the f64 reference. Its rounding noise
/// lies about 70 dB below the frame's loudest bin, so the bound is stated
/// on MLPerf's configuration (512-point FFT) for the signals whose bands are
/// above that (noise, speech in noise,
/// quiet or silent frames): at least 99 % within one int8 step; no MFCC more
/// than 1.5 natural-log units off (five steps of 1/4 in speech in noise); a
/// single log-mel band, which no DCT averages, up to about 3 (a band of
/// speech in noise 60 dB below the frame's loudest bin). Loud tones and
/// clean spectra are far off in their empty bands (the README gives the
/// figures), and are only checked not to overflow.
#[test]
fn int16_features_are_within_one_step_where_the_spectrum_is_above_its_noise() {
    let within_range = |signal: &str| {
        signal.starts_with("noise")
            || signal.contains("-60 dBFS")
            || signal.contains("-90 dBFS")
            || matches!(
                signal,
                "voice in noise" | "silence" | "one-LSB noise" | "uniform full-scale noise"
            )
    };
    let mut overall = Histogram::default();
    for (name, config) in int16_configs() {
        let mut per_config = Histogram::default();
        for (signal, per_signal) in against_the_reference(&config, within_range) {
            if per_signal.worst > 1 {
                std::eprintln!("{name}, {signal}: {per_signal:?}");
            }
            per_config.absorb(&per_signal);
        }
        std::eprintln!(
            "{name}: {:?} (equal, 1, 2, more), {:.4} % within one step",
            per_config.counts,
            100.0 * per_config.within_one()
        );
        overall.absorb(&per_config);
        // Larger FFTs have more stages, and more noise: their figures are
        // printed, not bounded.
        if !name.starts_with("MLPerf") {
            continue;
        }
        assert!(per_config.within_one() >= 0.99, "{name}: {per_config:?}");
        if config.coefficients > 0 {
            let worst_real = per_config.worst as f64 * f64::from(config.output_scale);
            assert!(worst_real <= 1.5, "{name}: {per_config:?}");
        }
    }
    std::eprintln!("all: {overall:?}");
}

/// The extreme frames of `extreme_frames_do_not_overflow`, full-scale and
/// one-LSB alike, through the 16-bit path of every configuration (overflow
/// panics in tests), and a clip's frames equal to its frames one by one.
#[test]
fn int16_extreme_frames_do_not_overflow() {
    for (name, config) in int16_configs() {
        let mut tables = vec![0; config.table_len()];
        let front_end = FrontEnd::new(&config, &mut tables).unwrap();
        let mut work = vec![0; config.work_len()];
        for frame in extreme_frames(&config) {
            let mut out = vec![0; config.features_per_frame()];
            front_end
                .frame_features(&frame, &mut out, &mut work)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// The tables and features of a fixed input with the 16-bit FFT, as
/// CRC-32s, as `golden_bytes` does for the 32-bit one; the firmware's
/// `frontend` binary checks the same bytes on the devices.
#[test]
fn int16_golden_bytes() {
    let config = FrontEndConfig::MLPERF_KWS_INT16;
    assert_eq!(config.work_len(), 296);
    assert_eq!(golden(&config), (1171, 0x2764_f119, 0x9dd1_fe88));
}

/// Tables computed before (a build script's, in flash) are taken when they
/// are exactly the configuration's, and give the same bytes; any word
/// changed, or a table too short, is an error naming it.
#[test]
fn tables_computed_before_are_checked_word_by_word() {
    for config in [FrontEndConfig::MLPERF_KWS, FrontEndConfig::MLPERF_KWS_INT16] {
        let tables = front_end_tables(&config);
        let front_end = FrontEnd::with_tables(&config, &tables).unwrap();
        let mut built = vec![0; config.table_len()];
        let reference = FrontEnd::new(&config, &mut built).unwrap();
        let clip = voice(16_000, 16_000, -12.0);
        let mut work = vec![0; config.work_len()];
        let (mut a, mut b) = (vec![0; 490], vec![0; 490]);
        front_end.clip_features(&clip, &mut a, &mut work).unwrap();
        reference.clip_features(&clip, &mut b, &mut work).unwrap();
        assert_eq!(a, b);
        for word in [0, 1, tables.len() / 2, tables.len() - 1] {
            let mut changed = tables.clone();
            changed[word] ^= 1 << 3;
            assert_eq!(
                FrontEnd::with_tables(&config, &changed).err(),
                Some(FrontEndError::TablesDiffer { word })
            );
        }
        assert_eq!(
            FrontEnd::with_tables(&config, &tables[..tables.len() - 1]).err(),
            Some(FrontEndError::TablesTooShort {
                needed: tables.len(),
                available: tables.len() - 1
            })
        );
        let other = FrontEndConfig {
            mel_bands: 32,
            ..config
        };
        assert!(FrontEnd::with_tables(&other, &tables).is_err());
    }
}
