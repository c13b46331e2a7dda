//! An audio front end for keyword spotting: 16-bit samples in, int8 MFCCs (or
//! log-mel energies) out, computed with integers only, so that the desktop and
//! every Cortex-M produce the same bytes.
//!
//! # What it computes
//!
//! The features of MLPerf Tiny's keyword-spotting benchmark, whose DS-CNN
//! (input 49 x 10 x 1) tinycnn already runs ([`FrontEndConfig::MLPERF_KWS`]):
//! 16 kHz mono; periodic Hann windows of 480 samples (30 ms) every 320 (20 ms);
//! a 512-point real FFT; the power spectrum; 40 triangular mel bands from 20 to
//! 4,000 Hz; `ln(band + floor)`; a DCT-II keeping the first 10 coefficients.
//! A one-second clip gives 49 frames of 10. In real terms, with samples scaled
//! to `[-1, 1)` (`x / 32768`), a frame's output `j` is
//!
//! ```text
//! X_k  = sum_n x_n w_n exp(-2 pi i k n / fft)          w: tf.signal.hann_window
//! E_b  = sum_k W_bk |X_k|^2                           W: tf.signal.linear_to_mel_weight_matrix
//! L_b  = ln(E_b + log_floor)
//! C_j  = sqrt(2 / bands) sum_b L_b cos(pi j (b + 1/2) / bands)
//! out_j = clamp(round(C_j / output_scale) + output_zero_point, -128, 127)   (ties away from 0)
//! ```
//!
//! or, with `coefficients == 0`, `L_b` in place of `C_j` (log-mel output).
//! MLPerf's training script applies the mel matrix to magnitudes `|X_k|`
//! rather than powers; a network for this front end is trained on its output.
//!
//! Why this design: it is the input MLPerf's DS-CNN was built for; a frame's
//! features depend on that frame's samples alone (no noise estimate or gain
//! control carried from frame to frame, as in TensorFlow Lite Micro's
//! `micro_speech` front end), so computing frames as the hops arrive gives
//! exactly the features of the whole clip; 10 coefficients instead of 40
//! channels make the network's first layer four times cheaper.
//!
//! # How
//!
//! [`FrontEnd::new`] computes the tables once from the configuration with f64
//! arithmetic and rounds them to integers (see `tables.rs` for why the
//! device gets the host's integers). Per frame, only integers:
//!
//! 1. window: `x * w` (Q31 window) in units of `2^(e - 30)`, `e` a block
//!    exponent chosen from `sum |x|` so that the FFT cannot overflow; quiet
//!    frames keep every bit (`e = 0`: 15 bits below the sample's least
//!    significant bit), loud ones lose bits far below the input's own
//!    quantisation noise;
//! 2. the real FFT through a complex FFT of half the size (radix 4, `i32`
//!    data, Q30 twiddles, no per-stage scaling; the first stage reads the
//!    windowed samples directly) and the split step, only for
//!    the bins the filterbank reads, each with its twiddle in the tables;
//! 3. the power of each bin (`u64`, exact), spread over its two neighbouring
//!    bands by one Q15 weight (the two slopes of adjacent triangles sum to 1);
//!    the powers are rounded to `bits(widest band) - 2` bits fewer (2 for
//!    MLPerf's widest band, 13 bins) to keep the sums in `u64`;
//! 4. `log2(E + floor)`, the floor in the units of `E`, from the leading zeros
//!    and a 65-entry table with linear interpolation, in Q16, the block
//!    exponent added back;
//! 5. the DCT (Q15, `ln 2` folded in) accumulated in `i64`, then one
//!    multiplier-and-shift to int8, rounding half away from zero, saturating.
//!
//! On cores with the DSP extension (Cortex-M4, M7, M33), steps 1 to 4 run
//! in assembly (`dsp.rs`: the window and first FFT stage, the rotated
//! butterflies, the bands and their logarithms) that forms the same 64-bit
//! products and sums and so gives the same bits;
//! `FrontEnd::frame_features_portable` runs the portable code there, and the
//! firmware's `frontend` binary checks that both leave the same work buffer
//! and bytes. On Armv6-M (Cortex-M0), which multiplies 32 x 32 -> 32 bits
//! only, the portable code forms its exact 64-bit products from 16-bit halves.
//!
//! With [`FftArithmetic::Int16`], steps 1 and 2 change (`fft16.rs`): the
//! frame is scaled by `2^e`, `e = 14 - bits(max |x|)`, so that its largest
//! sample is at most `2^14`, windowed with a Q15 window, and its FFT runs on
//! 16-bit values two to a word, every radix-2 step halving and every rotation
//! by a Q15 twiddle truncated; the split step halves once more and a bin's
//! power `|X/2|^2` is below `2^31`. Steps 3 to 5 are the same, on exact `u64`
//! sums of those powers times the weights. On the DSP cores every step is
//! one two-lane instruction (`dsp16.rs`): about half the instructions of the
//! 32-bit FFT, at the price of a noise floor about 70 dB below the frame's
//! loudest bin.
//!
//! No division, no float, no allocation, no panic. The tests bound the
//! difference to an f64 implementation of the formulas above: at most one
//! int8 step, and only where the real value lies near a rounding boundary.
//! The tables are built in f64 (software, on a Cortex-M) once, at start-up.
//!
//! # Memory
//!
//! Tables ([`FrontEndConfig::table_len`] `i32` words) and work
//! ([`FrontEndConfig::work_len`] words) are the caller's, for example statics
//! sized by these `const fn`s. For [`FrontEndConfig::MLPERF_KWS`]: 1,297 words
//! (5,188 bytes: window 480, the FFT's quarter sine wave 129, band edges 42,
//! 127 bins of weight, cosine and sine 381, log 65, DCT 200) and 552 words of
//! work (2,208 bytes: the 256 complex FFT points and 40 log energies); with
//! the 16-bit FFT ([`FrontEndConfig::MLPERF_KWS_INT16`]) 1,171 words (4,684
//! bytes: window 240, the stages' twiddles 201) and 296 words of work (1,184
//! bytes: the 256 points take a word each). The
//! largest configuration (1024-point FFT and window, 128 bands, 128
//! coefficients) needs 11,204 words of tables.
//!
//! ```
//! use tinycnn::audio::{FrontEnd, FrontEndConfig};
//!
//! const CONFIG: FrontEndConfig = FrontEndConfig::MLPERF_KWS;
//! let mut tables = [0i32; CONFIG.table_len()];
//! let mut work = [0i32; CONFIG.work_len()];
//! let front_end = FrontEnd::new(&CONFIG, &mut tables)?;
//! let clip = [0i16; 16_000];
//! let mut features = [0i8; CONFIG.clip_features_len(16_000)]; // 49 x 10
//! assert_eq!(front_end.clip_features(&clip, &mut features, &mut work)?, 49);
//! # Ok::<(), tinycnn::audio::FrontEndError>(())
//! ```

#[cfg(tinycnn_arm_dsp)]
mod dsp;
#[cfg(tinycnn_arm_dsp)]
mod dsp16;
mod fft;
mod fft16;
#[cfg(test)]
mod original;
mod tables;
#[cfg(test)]
mod tests;

use core::fmt;
use fft::Complex;
use tables::{LOG_BITS, Layout};

/// Smallest accepted FFT size.
pub const MIN_FFT_SIZE: u16 = 64;
/// Largest accepted FFT size.
pub const MAX_FFT_SIZE: u16 = 1024;
/// Most mel bands.
pub const MAX_MEL_BANDS: u8 = 128;
/// Lowest accepted sample rate.
pub const MIN_SAMPLE_RATE_HZ: u32 = 1_000;
/// Highest accepted sample rate.
pub const MAX_SAMPLE_RATE_HZ: u32 = 96_000;
/// Smallest accepted log floor. Lower floors would fall below what the
/// integer path resolves in a loud frame, and below the 16-bit quantisation
/// noise of any input (about 1.4e-8 per bin for a 480-sample Hann window).
pub const MIN_LOG_FLOOR: f32 = 1e-9;
/// Largest accepted log floor.
pub const MAX_LOG_FLOOR: f32 = 1.0;
/// Smallest accepted output scale.
pub const MIN_OUTPUT_SCALE: f32 = 1.0 / 4096.0;
/// Largest accepted output scale.
pub const MAX_OUTPUT_SCALE: f32 = 4096.0;

/// What the front end computes. Every field is checked by
/// [`FrontEndConfig::validate`] (and by [`FrontEnd::new`]), so a configuration
/// read from a file cannot make the front end misbehave.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrontEndConfig {
    /// Samples per second, `1_000..=96_000`.
    pub sample_rate_hz: u32,
    /// Samples in a frame (the Hann window's length), `2..=fft_size`.
    pub window_samples: u16,
    /// Samples between the starts of consecutive frames, `1..=window_samples`.
    pub hop_samples: u16,
    /// A power of two, `64..=1024`; the window is padded with zeros to it.
    pub fft_size: u16,
    /// Triangular mel bands, `1..=128` and fewer than `fft_size / 2`.
    pub mel_bands: u8,
    /// Lower edge of the first band, below `upper_hz`.
    pub lower_hz: u32,
    /// Upper edge of the last band, at most half the sample rate.
    pub upper_hz: u32,
    /// DCT coefficients kept, `0..=mel_bands`; 0 outputs the log-mel energies.
    pub coefficients: u8,
    /// Added to each band's energy before the logarithm (the power of a
    /// full-scale sine in its bin is about 14,400), `1e-9..=1`.
    pub log_floor: f32,
    /// Real value of one int8 step, `1/4096..=4096`.
    pub output_scale: f32,
    /// int8 value of a real 0.
    pub output_zero_point: i8,
    /// The FFT's arithmetic: what a frame costs and how close its features
    /// stay to the formulas' real values.
    pub fft_arithmetic: FftArithmetic,
}

/// The two ways the front end computes its FFT. Both are integer-only and
/// give the same bytes on every target; they differ in cost and in how far
/// their features may lie from the real-valued formulas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FftArithmetic {
    /// 32-bit data, Q30 twiddles, no scaling between stages: within one int8
    /// step of an f64 computation on every signal, loud tones and silence
    /// included, so that a network trained on floating-point features (MLPerf
    /// Tiny's) reads what it was trained on. About twice the cost of
    /// [`FftArithmetic::Int16`] on a Cortex-M4.
    Int32,
    /// 16-bit data, two to a word, Q15 twiddles, every radix-2 step halving:
    /// what microcontroller front ends use (TensorFlow Lite Micro's
    /// `micro_speech`, CMSIS-DSP's Q15 FFT), two lanes per DSP instruction. Its
    /// rounding noise lies about 70 dB below the frame's loudest bin, so bands
    /// quieter than that (near-silent bands of clean synthetic speech, the far
    /// bands of a loud tone) read higher than the real value; a network trained
    /// on these features by `host train` reads exactly them on the device.
    Int16,
}

impl FftArithmetic {
    /// The byte a model file stores: the bits of the FFT's data.
    pub const fn bits(self) -> u8 {
        match self {
            FftArithmetic::Int32 => 32,
            FftArithmetic::Int16 => 16,
        }
    }

    /// The arithmetic whose [`FftArithmetic::bits`] is `bits`.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            32 => Some(FftArithmetic::Int32),
            16 => Some(FftArithmetic::Int16),
            _ => None,
        }
    }
}

impl FrontEndConfig {
    /// MLPerf Tiny's keyword-spotting features: 49 x 10 MFCCs per second.
    /// The output quantisation (one step per natural-log unit, zero at 0)
    /// covers the first coefficient from silence (about -124) to a
    /// full-scale tone; a trained network records its own.
    pub const MLPERF_KWS: FrontEndConfig = FrontEndConfig {
        sample_rate_hz: 16_000,
        window_samples: 480,
        hop_samples: 320,
        fft_size: 512,
        mel_bands: 40,
        lower_hz: 20,
        upper_hz: 4_000,
        coefficients: 10,
        log_floor: 1e-6,
        output_scale: 1.0,
        output_zero_point: 0,
        fft_arithmetic: FftArithmetic::Int32,
    };

    /// [`FrontEndConfig::MLPERF_KWS`] with the 16-bit FFT
    /// ([`FftArithmetic::Int16`]): the features `host train` computes for
    /// keyword sets unless told otherwise, half the instructions on a
    /// Cortex-M4.
    pub const MLPERF_KWS_INT16: FrontEndConfig = FrontEndConfig {
        fft_arithmetic: FftArithmetic::Int16,
        ..FrontEndConfig::MLPERF_KWS
    };

    /// Checks every field, in the order they are declared.
    pub const fn validate(&self) -> Result<(), FrontEndError> {
        let rate = self.sample_rate_hz;
        if rate < MIN_SAMPLE_RATE_HZ || rate > MAX_SAMPLE_RATE_HZ {
            return Err(FrontEndError::SampleRate { hz: rate });
        }
        let fft = self.fft_size;
        if !fft.is_power_of_two() || fft < MIN_FFT_SIZE || fft > MAX_FFT_SIZE {
            return Err(FrontEndError::FftSize { size: fft });
        }
        if self.window_samples < 2 || self.window_samples > fft {
            return Err(FrontEndError::WindowSamples {
                samples: self.window_samples,
                fft_size: fft,
            });
        }
        if self.hop_samples < 1 || self.hop_samples > self.window_samples {
            return Err(FrontEndError::HopSamples {
                samples: self.hop_samples,
                window_samples: self.window_samples,
            });
        }
        let bands = self.mel_bands;
        if bands < 1 || bands > MAX_MEL_BANDS || bands as u16 >= fft / 2 {
            return Err(FrontEndError::MelBands {
                bands,
                fft_size: fft,
            });
        }
        // 2 * upper <= rate, in u64 so that no u32 overflows.
        if self.lower_hz >= self.upper_hz || 2 * self.upper_hz as u64 > rate as u64 {
            return Err(FrontEndError::FrequencyRange {
                lower_hz: self.lower_hz,
                upper_hz: self.upper_hz,
                sample_rate_hz: rate,
            });
        }
        if self.coefficients > bands {
            return Err(FrontEndError::Coefficients {
                coefficients: self.coefficients,
                bands,
            });
        }
        // Written so that NaN fails.
        if !(self.log_floor >= MIN_LOG_FLOOR && self.log_floor <= MAX_LOG_FLOOR) {
            return Err(FrontEndError::LogFloor {
                floor: self.log_floor,
            });
        }
        if !(self.output_scale >= MIN_OUTPUT_SCALE && self.output_scale <= MAX_OUTPUT_SCALE) {
            return Err(FrontEndError::OutputScale {
                scale: self.output_scale,
            });
        }
        Ok(())
    }

    /// int8 values per frame: `coefficients`, or `mel_bands` when that is 0.
    pub const fn features_per_frame(&self) -> usize {
        if self.coefficients == 0 {
            self.mel_bands as usize
        } else {
            self.coefficients as usize
        }
    }

    /// Frames in a clip of `samples` samples: one starting at every multiple
    /// of `hop_samples` whose window fits (`start + window_samples <=
    /// samples`). 49 for MLPerf's 16,000.
    pub const fn frames_per_clip(&self, samples: usize) -> usize {
        let window = self.window_samples as usize;
        if self.hop_samples == 0 || samples < window {
            return 0;
        }
        (samples - window) / self.hop_samples as usize + 1
    }

    /// int8 values for a clip of `samples` samples.
    pub const fn clip_features_len(&self, samples: usize) -> usize {
        self.frames_per_clip(samples) * self.features_per_frame()
    }

    /// `i32` words of tables [`FrontEnd::new`] needs.
    pub const fn table_len(&self) -> usize {
        Layout::of(self).total()
    }

    /// `i32` words of work [`FrontEnd::frame_features`] and
    /// [`FrontEnd::clip_features`] need: the FFT's points, then one log
    /// energy per band (rounded up to an even count).
    pub const fn work_len(&self) -> usize {
        let points = match self.fft_arithmetic {
            // Two words per complex point.
            FftArithmetic::Int32 => self.fft_size as usize,
            // One word per complex point.
            FftArithmetic::Int16 => self.fft_size as usize / 2,
        };
        points + (self.mel_bands as usize).next_multiple_of(2)
    }
}

/// A bad configuration or a buffer of the wrong size.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrontEndError {
    /// `sample_rate_hz` outside `MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ`.
    SampleRate {
        /// The rate given.
        hz: u32,
    },
    /// `fft_size` is not a power of two in `MIN_FFT_SIZE..=MAX_FFT_SIZE`.
    FftSize {
        /// The size given.
        size: u16,
    },
    /// `window_samples` outside `2..=fft_size`.
    WindowSamples {
        /// The length given.
        samples: u16,
        /// The FFT size.
        fft_size: u16,
    },
    /// `hop_samples` outside `1..=window_samples`.
    HopSamples {
        /// The hop given.
        samples: u16,
        /// The window's length.
        window_samples: u16,
    },
    /// `mel_bands` outside `1..=MAX_MEL_BANDS`, or not below `fft_size / 2`.
    MelBands {
        /// The count given.
        bands: u8,
        /// The FFT size.
        fft_size: u16,
    },
    /// Not `lower_hz < upper_hz <= sample_rate_hz / 2`.
    FrequencyRange {
        /// Lower edge given.
        lower_hz: u32,
        /// Upper edge given.
        upper_hz: u32,
        /// The sample rate.
        sample_rate_hz: u32,
    },
    /// More DCT coefficients than bands.
    Coefficients {
        /// The count given.
        coefficients: u8,
        /// The bands.
        bands: u8,
    },
    /// `log_floor` outside `MIN_LOG_FLOOR..=MAX_LOG_FLOOR` (or NaN).
    LogFloor {
        /// The floor given.
        floor: f32,
    },
    /// `output_scale` outside `MIN_OUTPUT_SCALE..=MAX_OUTPUT_SCALE` (or NaN).
    OutputScale {
        /// The scale given.
        scale: f32,
    },
    /// A model file's FFT arithmetic byte (format version 6) that is neither 16 nor 32
    /// ([`FftArithmetic::from_bits`]).
    FftArithmetic {
        /// The byte read.
        bits: u8,
    },
    /// The table buffer is shorter than [`FrontEndConfig::table_len`].
    TablesTooShort {
        /// Words needed.
        needed: usize,
        /// Words given.
        available: usize,
    },
    /// The tables given to [`FrontEnd::with_tables`] are not the
    /// configuration's.
    TablesDiffer {
        /// The first word that differs.
        word: usize,
    },
    /// The work buffer is shorter than [`FrontEndConfig::work_len`].
    WorkTooShort {
        /// Words needed.
        needed: usize,
        /// Words given.
        available: usize,
    },
    /// A frame of another length than `window_samples`.
    FrameLength {
        /// `window_samples`.
        expected: usize,
        /// Samples given.
        found: usize,
    },
    /// An output buffer of another length than the features it receives.
    OutputLength {
        /// int8 values the frame or clip gives.
        expected: usize,
        /// Length of the buffer.
        found: usize,
    },
}

impl fmt::Display for FrontEndError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrontEndError::SampleRate { hz } => write!(
                f,
                "sample rate {hz} Hz outside {MIN_SAMPLE_RATE_HZ}..={MAX_SAMPLE_RATE_HZ}"
            ),
            FrontEndError::FftSize { size } => write!(
                f,
                "FFT size {size} is not a power of two in {MIN_FFT_SIZE}..={MAX_FFT_SIZE}"
            ),
            FrontEndError::WindowSamples { samples, fft_size } => {
                write!(
                    f,
                    "window of {samples} samples outside 2..={fft_size} (the FFT size)"
                )
            }
            FrontEndError::HopSamples {
                samples,
                window_samples,
            } => write!(
                f,
                "hop of {samples} samples outside 1..={window_samples} (the window)"
            ),
            FrontEndError::MelBands { bands, fft_size } => write!(
                f,
                "{bands} mel bands: need 1..={MAX_MEL_BANDS} and fewer than {} (half the FFT size)",
                fft_size / 2
            ),
            FrontEndError::FrequencyRange {
                lower_hz,
                upper_hz,
                sample_rate_hz,
            } => write!(
                f,
                "band range {lower_hz}..{upper_hz} Hz: need lower < upper <= {} Hz (half the \
                 sample rate)",
                sample_rate_hz / 2
            ),
            FrontEndError::Coefficients {
                coefficients,
                bands,
            } => {
                write!(f, "{coefficients} DCT coefficients from {bands} bands")
            }
            FrontEndError::LogFloor { floor } => {
                write!(
                    f,
                    "log floor {floor} outside {MIN_LOG_FLOOR}..={MAX_LOG_FLOOR}"
                )
            }
            FrontEndError::OutputScale { scale } => {
                write!(
                    f,
                    "output scale {scale} outside {MIN_OUTPUT_SCALE}..={MAX_OUTPUT_SCALE}"
                )
            }
            FrontEndError::FftArithmetic { bits } => {
                write!(f, "FFT arithmetic of {bits} bits: 16 or 32")
            }
            FrontEndError::TablesTooShort { needed, available } => {
                write!(f, "table buffer of {available} words, {needed} needed")
            }
            FrontEndError::TablesDiffer { word } => {
                write!(
                    f,
                    "tables differ from the configuration's from word {word} on"
                )
            }
            FrontEndError::WorkTooShort { needed, available } => {
                write!(f, "work buffer of {available} words, {needed} needed")
            }
            FrontEndError::FrameLength { expected, found } => {
                write!(f, "frame of {found} samples, the window has {expected}")
            }
            FrontEndError::OutputLength { expected, found } => {
                write!(f, "output buffer of {found} bytes for {expected} features")
            }
        }
    }
}

impl core::error::Error for FrontEndError {}

/// Which code runs the hot loops of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// The portable Rust, what every target without the DSP extension runs.
    Portable,
    /// The assembly of `dsp.rs`, bit-identical to the portable code.
    #[cfg(tinycnn_arm_dsp)]
    ArmDsp,
}

impl Path {
    /// The fastest path this target has.
    #[cfg(tinycnn_arm_dsp)]
    const FASTEST: Path = Path::ArmDsp;
    #[cfg(not(tinycnn_arm_dsp))]
    const FASTEST: Path = Path::Portable;
}

/// A validated configuration with its tables, ready to compute features.
#[derive(Clone, Copy, Debug)]
pub struct FrontEnd<'t> {
    config: FrontEndConfig,
    window: &'t [i32],
    sine: &'t [i32],
    edges: &'t [i32],
    /// Per bin of the filterbank: rising weight, cos, sin.
    bins: &'t [i32],
    log: &'t [i32],
    dct: &'t [i32],
    /// `log_floor * 2^60`.
    floor: u64,
    /// Right shift of each bin's power, from the widest band's bins.
    power_shift: u32,
    multiplier: i32,
    shift: u32,
}

impl<'t> FrontEnd<'t> {
    /// Validates `config` and computes its tables into the first
    /// [`FrontEndConfig::table_len`] words of `tables` (with f64 arithmetic:
    /// milliseconds on a desktop, a fraction of a second on a Cortex-M
    /// without a double-precision FPU).
    pub fn new(config: &FrontEndConfig, tables: &'t mut [i32]) -> Result<Self, FrontEndError> {
        config.validate()?;
        let layout = Layout::of(config);
        let needed = layout.total();
        let too_short = FrontEndError::TablesTooShort {
            needed,
            available: tables.len(),
        };
        tables::build(config, tables).ok_or(too_short)?;
        Self::assemble(config, tables)
    }

    /// A front end on tables computed before, for example by a build script
    /// into a `static` in flash, so that they take no RAM: `tables` must hold
    /// exactly what [`FrontEnd::new`] writes for `config`. Each word is
    /// checked against its definition as it is computed again, one value at a
    /// time (the cost of [`FrontEnd::new`], without its buffer), and the first
    /// that differs is an error.
    pub fn with_tables(config: &FrontEndConfig, tables: &'t [i32]) -> Result<Self, FrontEndError> {
        config.validate()?;
        let needed = config.table_len();
        if tables.len() < needed {
            return Err(FrontEndError::TablesTooShort {
                needed,
                available: tables.len(),
            });
        }
        if let Some(word) = tables::first_difference(config, tables) {
            return Err(FrontEndError::TablesDiffer { word });
        }
        Self::assemble(config, tables)
    }

    /// The front end of a validated `config` on its tables.
    fn assemble(config: &FrontEndConfig, tables: &'t [i32]) -> Result<Self, FrontEndError> {
        let layout = Layout::of(config);
        let needed = layout.total();
        let too_short = FrontEndError::TablesTooShort {
            needed,
            available: tables.len(),
        };
        let mut rest = tables.get(..needed).ok_or(too_short)?;
        let mut take = |words: usize| {
            let (section, after) = rest.split_at_checked(words).unwrap_or((rest, &[]));
            rest = after;
            section
        };
        let (multiplier, shift) = tables::output_multiplier(config);
        let (window, sine, edges) = (take(layout.window), take(layout.sine), take(layout.edges));
        let (bins, log, dct) = (take(layout.bins), take(layout.log), take(layout.dct));
        // Band b spans segments b and b + 1.
        let widest = edges
            .iter()
            .zip(edges.iter().skip(2))
            .map(|(&start, &end)| end.saturating_sub(start).unsigned_abs())
            .max()
            .unwrap_or(0);
        Ok(FrontEnd {
            config: *config,
            window,
            sine,
            edges,
            bins,
            log,
            dct,
            floor: tables::floor_fixed(config),
            power_shift: (u32::BITS - widest.leading_zeros()).saturating_sub(2),
            multiplier,
            shift,
        })
    }

    /// The configuration.
    pub const fn config(&self) -> &FrontEndConfig {
        &self.config
    }

    /// The features of one frame of `window_samples` samples into `out`
    /// ([`FrontEndConfig::features_per_frame`] bytes), using `work`.
    pub fn frame_features(
        &self,
        frame: &[i16],
        out: &mut [i8],
        work: &mut [i32],
    ) -> Result<(), FrontEndError> {
        self.frame_features_on(frame, out, work, Path::FASTEST)
    }

    /// [`FrontEnd::frame_features`] with the portable code only, what cores
    /// without the DSP extension run: the reference the DSP path is checked
    /// against, bytes and `work` alike (the firmware's `frontend` binary).
    #[cfg(tinycnn_arm_dsp)]
    pub fn frame_features_portable(
        &self,
        frame: &[i16],
        out: &mut [i8],
        work: &mut [i32],
    ) -> Result<(), FrontEndError> {
        self.frame_features_on(frame, out, work, Path::Portable)
    }

    fn frame_features_on(
        &self,
        frame: &[i16],
        out: &mut [i8],
        work: &mut [i32],
        path: Path,
    ) -> Result<(), FrontEndError> {
        let config = &self.config;
        if frame.len() != config.window_samples as usize {
            return Err(FrontEndError::FrameLength {
                expected: config.window_samples as usize,
                found: frame.len(),
            });
        }
        let features = config.features_per_frame();
        if out.len() != features {
            return Err(FrontEndError::OutputLength {
                expected: features,
                found: out.len(),
            });
        }
        let log_energies = self.log_energies(frame, work, path)?;
        self.quantise(log_energies, out, path);
        Ok(())
    }

    /// The features of every frame of a clip ([`FrontEndConfig::frames_per_clip`]
    /// frames, frame after frame, into `out` of
    /// [`FrontEndConfig::clip_features_len`] bytes); returns the number of
    /// frames. The bytes are those of [`FrontEnd::frame_features`] on each
    /// frame, so a stream processed hop by hop gives the same.
    pub fn clip_features(
        &self,
        samples: &[i16],
        out: &mut [i8],
        work: &mut [i32],
    ) -> Result<usize, FrontEndError> {
        let config = &self.config;
        let frames = config.frames_per_clip(samples.len());
        let expected = config.clip_features_len(samples.len());
        if out.len() != expected {
            return Err(FrontEndError::OutputLength {
                expected,
                found: out.len(),
            });
        }
        self.check_work(work)?;
        let window = config.window_samples as usize;
        let hop = config.hop_samples as usize;
        for (index, features) in out
            .chunks_exact_mut(config.features_per_frame())
            .enumerate()
        {
            let start = index * hop;
            let frame = samples.get(start..start + window).unwrap_or(&[]);
            self.frame_features(frame, features, work)?;
        }
        Ok(frames)
    }

    fn check_work(&self, work: &[i32]) -> Result<(), FrontEndError> {
        let needed = self.config.work_len();
        if work.len() < needed {
            return Err(FrontEndError::WorkTooShort {
                needed,
                available: work.len(),
            });
        }
        Ok(())
    }

    /// `log2(E_b + log_floor)` of every band, Q16, in `work` after the FFT's
    /// points (a zero follows an odd count of bands).
    fn log_energies<'w>(
        &self,
        frame: &[i16],
        work: &'w mut [i32],
        path: Path,
    ) -> Result<&'w mut [i32], FrontEndError> {
        self.check_work(work)?;
        let needed = self.config.work_len();
        let available = work.len();
        let short = FrontEndError::WorkTooShort { needed, available };
        let bands_len = (self.config.mel_bands as usize).next_multiple_of(2);
        let (points, rest) = work.split_at_mut_checked(needed - bands_len).ok_or(short)?;
        let bands = rest.get_mut(..bands_len).ok_or(short)?;
        if self.config.fft_arithmetic == FftArithmetic::Int16 {
            self.log_energies16(frame, points, bands, path);
            return Ok(bands);
        }
        let (z, _) = points.as_chunks_mut::<2>();
        let exponent = self.window_and_first_stage(frame, z, path);
        fft::later_stages(z, self.sine, path);
        self.bands(z, exponent, bands, path);
        Ok(bands)
    }

    /// Windows the frame and runs the FFT's first stage (butterfly span 1,
    /// no rotation) on it, into `z`; returns the block exponent. The FFT reads
    /// its input in bit-reversed order: group `g` of the first stage takes
    /// the points `rev(4g + i)`, which are `r + {0, 2, 1, 3} * M/4` with
    /// `r = rev(g)` over the remaining bits, so the windowed points go
    /// straight into the butterflies and never through `z`. The values are
    /// those of writing `z[rev(n)] = x_2n + i x_2n+1` (zero past the window)
    /// and running the stage on it.
    fn window_and_first_stage(&self, frame: &[i16], z: &mut [Complex], path: Path) -> u32 {
        #[cfg(tinycnn_arm_dsp)]
        if path == Path::ArmDsp
            && let Some(exponent) = dsp::window_first_stage(frame, self.window, z)
        {
            return exponent;
        }
        let _ = path;
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
        let window = self.window;
        let sample = |i: usize| match (frame.get(i), window.get(i)) {
            (Some(&x), Some(&w)) => {
                ((fft::product(i32::from(x) << up, w) + (1 << 31)) >> 32) as i32
            }
            _ => 0,
        };
        let point = |n: usize| [sample(2 * n), sample(2 * n + 1)];
        let quarter = z.len() / 4;
        // At least 3: the FFT has at least 32 points.
        let bits = quarter.trailing_zeros();
        for (g, group) in z.chunks_exact_mut(4).enumerate() {
            let r = ((g as u32).reverse_bits() >> (32 - bits)) as usize;
            let [p0, p1] = point(r);
            let t1 = point(r + 2 * quarter);
            let t2 = point(r + quarter);
            let t3 = point(r + 3 * quarter);
            let a0 = [p0 + t1[0], p1 + t1[1]];
            let a1 = [p0 - t1[0], p1 - t1[1]];
            let a2 = [t2[0] + t3[0], t2[1] + t3[1]];
            let a3 = [t2[0] - t3[0], t2[1] - t3[1]];
            if let [x0, x1, x2, x3] = group {
                *x0 = [a0[0] + a2[0], a0[1] + a2[1]];
                *x2 = [a0[0] - a2[0], a0[1] - a2[1]];
                *x1 = [a1[0] + a3[1], a1[1] - a3[0]];
                *x3 = [a1[0] - a3[1], a1[1] + a3[0]];
            }
        }
        exponent
    }

    /// Band energies and their logarithms from the FFT, into `out` (Q16 log2).
    ///
    /// A bin between band edges `j` and `j + 1` lies on the rising slope of
    /// band `j` (weight `r`) and the falling slope of band `j - 1` (weight
    /// `1 - r`); walking the segments in order, band `j - 1` is complete when
    /// segment `j` ends. Bounds: `|X| <= 2^30 + 2^11`, so a bin's power is
    /// below `2^60.01`; a band of `n < 2^(2 + power_shift)` bins sums to less
    /// than `2^62.01`, and the floor term adds at most `2^60`.
    fn bands(&self, z: &[Complex], exponent: u32, out: &mut [i32], path: Path) {
        // The FFT's unit is 2^(e - 30) of the real signal, so with powers
        // shifted right by power_shift, E + floor * 2^(60 - 2e - power_shift)
        // is (real energy + floor) times 2^(60 - 2e - power_shift).
        let shift = 2 * exponent + self.power_shift;
        let floor = (self.floor + ((1u64 << shift) >> 1)) >> shift;
        let offset = (shift as i32 - tables::FLOOR_BITS as i32) << LOG_BITS;
        #[cfg(tinycnn_arm_dsp)]
        if path == Path::ArmDsp
            && dsp::bands(
                z,
                self.bins,
                self.edges,
                self.log,
                floor,
                offset,
                self.power_shift,
                out,
            )
        {
            self.clear_after_bands(out);
            return;
        }
        let _ = path;
        let power_shift = self.power_shift;
        let power_half = (1u64 << power_shift) >> 1;
        self.filterbank(floor, offset, out, |k, [weight, c, s]| {
            let (re, im) = fft::real_bin(z, k, (c, s));
            let energy = fft::product(re, re) + fft::product(im, im);
            let power = (energy as u64 + power_half) >> power_shift;
            // floor(power * weight / 2^15) exactly, without a 128-bit
            // product; the weight is at most 2^15, so the low part fits u32.
            let weight = weight as u32;
            let low = ((power as u32 & 0x7fff) * weight) >> tables::Q15;
            let up = fft::product_u64(power >> tables::Q15, weight) + u64::from(low);
            (up, power - up)
        });
    }

    /// Walks the filterbank's segments: `bin(k, entry)` gives bin `k`'s
    /// shares of the band it rises into and of the band it falls out of
    /// (`entry` its three table words); a bin between band edges `j` and `j +
    /// 1` lies on the rising slope of band `j` and the falling slope of band
    /// `j - 1`, so band `j - 1` is complete when segment `j` ends, and its
    /// `log2_q16(energy + floor) + offset` goes to `out`. Words of `out` past
    /// the bands become 0.
    fn filterbank(
        &self,
        floor: u64,
        offset: i32,
        out: &mut [i32],
        mut bin: impl FnMut(usize, [i32; 3]) -> (u64, u64),
    ) {
        let mut entries = self.bins.chunks_exact(3);
        let mut logs = out.iter_mut();
        let (mut falling, mut rising) = (0u64, 0u64);
        for (segment, pair) in self.edges.windows(2).enumerate() {
            let (start, end) = match *pair {
                [start, end] => (start as usize, end as usize),
                _ => (0, 0),
            };
            for (k, entry) in (start..end).zip(&mut entries) {
                let entry = match *entry {
                    [a, b, c] => [a, b, c],
                    _ => [0; 3],
                };
                let (up, down) = bin(k, entry);
                rising += up;
                falling += down;
            }
            if segment > 0
                && let Some(log) = logs.next()
            {
                *log = log2_q16(self.log, falling + floor) + offset;
            }
            falling = rising;
            rising = 0;
        }
        for log in logs {
            *log = 0;
        }
    }

    /// After the assembly's bands: the words of `out` past them become 0, as
    /// [`FrontEnd::filterbank`] leaves them.
    #[cfg(tinycnn_arm_dsp)]
    fn clear_after_bands(&self, out: &mut [i32]) {
        let bands = self.edges.len().saturating_sub(2);
        for log in out.iter_mut().skip(bands) {
            *log = 0;
        }
    }

    /// The 16-bit FFT's log energies, kept out of line so that the 32-bit
    /// path compiles as it would alone.
    #[inline(never)]
    fn log_energies16(&self, frame: &[i16], points: &mut [i32], bands: &mut [i32], path: Path) {
        let exponent = fft16::window_first_stage(frame, self.window, points, path);
        fft16::later_stages(points, self.sine, path);
        self.bands16(points, exponent, bands, path);
    }

    /// [`FrontEnd::bands`] for the 16-bit FFT, whose points `z` hold the
    /// complex DFT divided by `M = z.len()` of the input scaled by `2^(15 +
    /// e)` (`e` the frame's exponent). A bin's `|X/2|^2` is in units of
    /// `2^(30 + 2e) / 4M^2` of the real power, and the weights add `2^15`, so
    /// a band's sum is the real energy times `2^K`, `K = 43 + 2e - 2 log2 M`
    /// (21 to 61); the sums stay below `2^31 * 2^15 * 512 = 2^55`.
    fn bands16(&self, z: &[i32], exponent: i32, out: &mut [i32], path: Path) {
        let scale = 43 + 2 * exponent - 2 * z.len().trailing_zeros() as i32;
        // floor * 2^K from floor * 2^60, rounded half up.
        let floor = if scale >= tables::FLOOR_BITS as i32 {
            self.floor << (scale - tables::FLOOR_BITS as i32)
        } else {
            let shift = tables::FLOOR_BITS as i32 - scale;
            (self.floor + ((1u64 << shift) >> 1)) >> shift
        };
        let offset = -scale << LOG_BITS;
        #[cfg(tinycnn_arm_dsp)]
        if path == Path::ArmDsp
            && dsp16::bands(z, self.bins, self.edges, self.log, floor, offset, out)
        {
            self.clear_after_bands(out);
            return;
        }
        let _ = path;
        self.filterbank(floor, offset, out, |k, [twiddle, up, down]| {
            let power = fft16::half_bin_power(z, k, twiddle);
            (
                fft::product_u32(power, up as u32),
                fft::product_u32(power, down as u32),
            )
        });
    }

    /// The outputs from the Q16 log2 energies: DCT, then int8.
    fn quantise(&self, log_energies: &[i32], out: &mut [i8], path: Path) {
        if self.config.coefficients == 0 {
            for (value, &log) in out.iter_mut().zip(log_energies) {
                *value = self.int8(log);
            }
            return;
        }
        let row = log_energies.len().div_ceil(2).max(1);
        for (value, weights) in out.iter_mut().zip(self.dct.chunks_exact(row)) {
            #[cfg(tinycnn_arm_dsp)]
            if path == Path::ArmDsp
                && let Some(sum) = dsp::dct_dot(weights, log_energies)
            {
                *value = self.int8(((sum + (1 << 14)) >> 15) as i32);
                continue;
            }
            let _ = path;
            let mut sum = 0i64;
            for (&pair, logs) in weights.iter().zip(log_energies.chunks_exact(2)) {
                if let [l0, l1] = *logs {
                    let (d0, d1) = (i32::from(pair as i16), pair >> 16);
                    sum += fft::product(d0, l0) + fft::product(d1, l1);
                }
            }
            // Q15 x Q16 -> Q16 natural log units.
            *value = self.int8(((sum + (1 << 14)) >> 15) as i32);
        }
    }

    /// `round(value * multiplier / 2^shift)`, ties away from zero, plus the
    /// zero point, saturated.
    fn int8(&self, value: i32) -> i8 {
        let product = i64::from(value) * i64::from(self.multiplier);
        let half = 1u64 << (self.shift - 1);
        let magnitude = ((product.unsigned_abs() + half) >> self.shift) as i64;
        let rounded = if product < 0 { -magnitude } else { magnitude };
        (rounded + i64::from(self.config.output_zero_point)).clamp(-128, 127) as i8
    }
}

/// `log2(x)` in Q16 for `x >= 1` (0 gives 0): the position of the leading one,
/// then the next 6 bits index the table and the 16 after them interpolate.
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
