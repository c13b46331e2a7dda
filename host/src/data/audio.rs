//! Keyword spotting from WAV clips in the layout of Google's Speech Commands: one folder of
//! one-second clips per word, background noise beside them, the features computed by the core's
//! integer front end ([`tinycnn::audio`]) exactly as a device computes them.
//!
//! ```text
//! DIR/yes/<speaker>_nohash_<n>.wav     16 kHz, mono, 16-bit PCM
//! DIR/no/...                           one folder per word; words outside the ten keywords
//! DIR/cat/...                          are the "unknown" class
//! DIR/_background_noise_/*.wav         noise: cut into "silence" clips, mixed into training
//! DIR/validation_list.txt              optional: word/file.wav per line
//! DIR/testing_list.txt                 optional
//! DIR/holdout_list.txt                 optional (scripts/make-keywords.py): left out entirely
//! ```
//!
//! **The task** is the usual one (TensorFlow's speech commands example, MLPerf Tiny's keyword
//! spotting): twelve classes, the ten [`KEYWORDS`] in that order, then [`UNKNOWN`] and
//! [`SILENCE`]. Each split holds every keyword clip of its split, and as many unknown clips
//! and silence clips as a tenth of its keyword clips each ([`UNKNOWN_PERCENT`],
//! [`SILENCE_PERCENT`]; TensorFlow's defaults): the unknown ones picked among the other words'
//! clips by a fixed shuffle, the silence ones cut from the background noise at a random level,
//! the same ones on every run.
//!
//! **Splits**: with `validation_list.txt` or `testing_list.txt` the clips they list are the
//! validation and test sets (the rest, less `holdout_list.txt`, is trained on); without them,
//! Speech Commands' own rule: a clip's split follows from the SHA-1 of its file name before
//! `_nohash_` (its speaker), 10 % validation and 10 % testing, so one speaker is never in two
//! splits.
//!
//! **Clips** are padded with zeros at the end or cut to one second ([`CLIP_SAMPLES`]). A WAV
//! file must be 16 kHz, mono and integer PCM (8, 16, 24 or 32 bits, scaled to 16); anything
//! else, or a file cut short, is an error naming the file.
//!
//! **Features**: each clip's int8 MFCCs from MLPerf Tiny's front end ([`keyword_front_end`]; 49
//! frames of 10: the input 49x10x1), with the 16-bit FFT unless `host train --fft-bits 32` asks
//! for the 32-bit one ([`DEFAULT_FFT_BITS`]), or a model's own front end; stored in a [`Split`] as the bytes `q + 128` with the front end beside
//! them ([`AudioSplit`]); a network reads their dequantised values, so its int8 model reads
//! the front end's bytes as they are. The training split also keeps its clips, so that
//! training can mix background noise into them afresh each epoch ([`mix_noise`]): with
//! probability [`NOISE_PROBABILITY`], a random stretch of a random noise file at a volume up
//! to [`NOISE_VOLUME`] (TensorFlow's defaults), drawn from the run's seed, then the features
//! computed again. Memory: two bytes per sample of each training and test clip (Speech
//! Commands v0.02's 85,000 training and 11,000 test clips take 3.1 GB) besides 490 bytes of
//! features per clip.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use sha1::{Digest, Sha1};
use tinycnn::arch::Shape;
use tinycnn::audio::{FftArithmetic, FrontEnd, FrontEndConfig};
use tinycnn::format::QuantParams;

use crate::data::archive::{CopyError, copy_entry};
use crate::data::split::Split;

/// The keywords, in class order (classes 0 to 9).
pub const KEYWORDS: [&str; 10] = [
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
];
/// The class of every other word (class 10).
pub const UNKNOWN: &str = "unknown";
/// The class of clips without speech (class 11).
pub const SILENCE: &str = "silence";
/// [`UNKNOWN`]'s class index, after the keywords'.
pub const UNKNOWN_CLASS: u16 = KEYWORDS.len() as u16;
/// [`SILENCE`]'s class index, the last.
pub const SILENCE_CLASS: u16 = UNKNOWN_CLASS + 1;
/// The folder of background noise.
pub const BACKGROUND_NOISE: &str = "_background_noise_";
/// Samples a clip is padded or cut to: one second at 16 kHz.
pub const CLIP_SAMPLES: usize = 16_000;
/// Sample rate every clip must have.
pub const SAMPLE_RATE_HZ: u32 = 16_000;
/// Unknown clips per split, in percent of its keyword clips.
pub const UNKNOWN_PERCENT: usize = 10;
/// Silence clips per split, in percent of its keyword clips.
pub const SILENCE_PERCENT: usize = 10;
/// Speech Commands' split percentages, when the set has no lists.
pub const VALIDATION_PERCENT: f64 = 10.0;
/// See [`VALIDATION_PERCENT`].
pub const TESTING_PERCENT: f64 = 10.0;
/// Probability that a training clip gets background noise, each time it is seen.
pub const NOISE_PROBABILITY: f64 = 0.8;
/// Largest volume of that noise, relative to the noise file's own level.
pub const NOISE_VOLUME: f64 = 0.1;
/// 64-bit words [`mix_noise`] takes per clip: whether, which file, where, how loud.
pub const NOISE_WORDS_PER_CLIP: usize = 4;
/// The bits of the FFT's data `host train` computes a keyword set's features with unless
/// `--fft-bits` says otherwise: the 16-bit FFT ([`FrontEndConfig::MLPERF_KWS_INT16`]).
pub const DEFAULT_FFT_BITS: u8 = 16;
/// What runs recorded before `--fft-bits` was a setting computed: the 32-bit FFT
/// ([`FrontEndConfig::MLPERF_KWS`]).
pub const FFT_BITS_BEFORE_IT_WAS_RECORDED: u8 = 32;

/// MLPerf Tiny's keyword-spotting front end with an FFT of `fft_bits` data bits, 16
/// ([`FrontEndConfig::MLPERF_KWS_INT16`]) or 32 ([`FrontEndConfig::MLPERF_KWS`]); `None` for
/// any other number.
pub fn keyword_front_end(fft_bits: u8) -> Option<FrontEndConfig> {
    FftArithmetic::from_bits(fft_bits).map(|fft_arithmetic| FrontEndConfig {
        fft_arithmetic,
        ..FrontEndConfig::MLPERF_KWS
    })
}

/// A keyword set that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// A file or folder that cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a WAV file, or one cut short or damaged.
    #[error("{path}: not a readable WAV file ({message})")]
    NotWav {
        /// The file.
        path: PathBuf,
        /// What the WAV reader found.
        message: String,
    },
    /// A WAV file whose samples end before its header says.
    #[error(
        "{path}: the WAV file is cut short: its header announces {announced} samples, it holds {found}"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Samples the header announces.
        announced: u32,
        /// Samples read.
        found: usize,
    },
    /// Another sample rate than the front end's.
    #[error(
        "{path}: {rate} Hz; keyword spotting needs {expected} Hz clips (resample it, e.g. `sox in.wav -r {expected} out.wav`)"
    )]
    SampleRate {
        /// The file.
        path: PathBuf,
        /// Its rate.
        rate: u32,
        /// The rate needed.
        expected: u32,
    },
    /// Not mono.
    #[error(
        "{path}: {channels} channels; keyword spotting needs mono clips (e.g. `sox in.wav -c 1 out.wav`)"
    )]
    Channels {
        /// The file.
        path: PathBuf,
        /// Its channels.
        channels: u16,
    },
    /// Float samples, or an integer width the reader does not take.
    #[error("{path}: {format} samples; keyword spotting reads integer PCM of 8, 16, 24 or 32 bits")]
    SampleFormat {
        /// The file.
        path: PathBuf,
        /// What it holds, e.g. "32-bit float".
        format: String,
    },
    /// A directory with no word folder of WAV files.
    #[error(
        "{dir}: no word folders with WAV files (Speech Commands' layout: DIR/yes/*.wav, DIR/no/*.wav, ...)"
    )]
    NoWords {
        /// The directory.
        dir: PathBuf,
    },
    /// Keywords without a folder.
    #[error("{dir}: no folder of clips for {missing}: the keyword task needs all ten keywords ({})", KEYWORDS.join(", "))]
    MissingKeywords {
        /// The directory.
        dir: PathBuf,
        /// The keywords missing, comma-separated.
        missing: String,
    },
    /// A split list names a file that is not there.
    #[error("{list}, line {line}: {entry} is not a WAV file of the set")]
    ListEntry {
        /// The list.
        list: PathBuf,
        /// Its 1-based line.
        line: usize,
        /// The entry.
        entry: String,
    },
    /// The front end refused a clip (cannot happen with a valid configuration).
    #[error("the audio front end: {0}")]
    FrontEnd(tinycnn::audio::FrontEndError),
}

/// The audio side of a keyword split: what its bytes are and, for training, its clips.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioSplit {
    /// The front end whose int8 features the split's values are (each stored as `q + 128`).
    pub front_end: FrontEndConfig,
    /// Samples per clip ([`CLIP_SAMPLES`]).
    pub clip_samples: usize,
    /// Every clip, `len x clip_samples` samples: the training split's for mixing noise into,
    /// the test split's for `host fixture`; empty for the validation split.
    pub clips: Vec<i16>,
    /// The background noise files' samples, for mixing.
    pub noise: Arc<Vec<Vec<i16>>>,
}

impl AudioSplit {
    /// The int8 quantisation of the features: the front end's output.
    pub fn quantisation(&self) -> QuantParams {
        quantisation(&self.front_end)
    }

    /// Clip `index`, if the split keeps its clips.
    pub fn clip(&self, index: usize) -> Option<&[i16]> {
        let start = index.checked_mul(self.clip_samples)?;
        self.clips.get(start..start.checked_add(self.clip_samples)?)
    }

    /// The same with only the clips at `indices` (none if it keeps none).
    pub fn select(&self, indices: &[usize]) -> AudioSplit {
        let clips = if self.clips.is_empty() {
            Vec::new()
        } else {
            indices
                .iter()
                .filter_map(|&index| self.clip(index))
                .flatten()
                .copied()
                .collect()
        };
        AudioSplit {
            clips,
            ..self.clone()
        }
    }
}

/// The int8 quantisation of `front_end`'s features.
pub fn quantisation(front_end: &FrontEndConfig) -> QuantParams {
    QuantParams {
        scale: front_end.output_scale,
        zero_point: front_end.output_zero_point,
    }
}

/// A feature byte as a split stores it (`q + 128`) back to the int8 feature.
pub fn feature(byte: u8) -> i8 {
    (byte ^ 0x80) as i8
}

/// An int8 feature as a split stores it.
pub fn feature_byte(q: i8) -> u8 {
    (q as u8) ^ 0x80
}

/// What a network reads of stored feature bytes: each feature dequantised
/// (`scale x (q - zero_point)`, as [`QuantParams::dequantize`]).
pub fn dequantise_into(front_end: &FrontEndConfig, bytes: &[u8], out: &mut Vec<f32>) {
    let quant = quantisation(front_end);
    out.extend(bytes.iter().map(|&byte| quant.dequantize(feature(byte))));
}

/// The network input's shape for `front_end`'s features of a clip of `samples` samples:
/// frames x features x 1.
pub fn input_shape(front_end: &FrontEndConfig, samples: usize) -> Shape {
    Shape::new(
        front_end.frames_per_clip(samples),
        front_end.features_per_frame(),
        1,
    )
}

/// A validated front end configuration that computes the features of clips.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    config: FrontEndConfig,
}

/// Clips per task when computing features on every core: one table build per task.
const CLIPS_PER_TASK: usize = 64;

impl Features {
    /// Checks `config`.
    pub fn new(config: FrontEndConfig) -> Result<Self, AudioError> {
        config.validate().map_err(AudioError::FrontEnd)?;
        Ok(Features { config })
    }

    /// The configuration.
    pub fn config(&self) -> &FrontEndConfig {
        &self.config
    }

    /// The int8 features of each clip of `clip_samples` in `clips`, appended to `out` as
    /// stored bytes (`q + 128`); the tables are built once for all of them.
    pub fn clips_into(
        &self,
        clips: &[i16],
        clip_samples: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), AudioError> {
        let mut tables = vec![0; self.config.table_len()];
        let front_end = FrontEnd::new(&self.config, &mut tables).map_err(AudioError::FrontEnd)?;
        let mut work = vec![0; self.config.work_len()];
        let mut features = vec![0i8; self.config.clip_features_len(clip_samples)];
        for clip in clips.chunks_exact(clip_samples.max(1)) {
            front_end
                .clip_features(clip, &mut features, &mut work)
                .map_err(AudioError::FrontEnd)?;
            out.extend(features.iter().map(|&q| feature_byte(q)));
        }
        Ok(())
    }

    /// [`Features::clips_into`] on every core, into a new vector.
    pub fn of_clips(&self, clips: &[i16], clip_samples: usize) -> Result<Vec<u8>, AudioError> {
        let chunks: Vec<Result<Vec<u8>, AudioError>> = clips
            .par_chunks(clip_samples.max(1) * CLIPS_PER_TASK)
            .map(|chunk| {
                let mut out = Vec::new();
                self.clips_into(chunk, clip_samples, &mut out).map(|()| out)
            })
            .collect();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(chunk?);
        }
        Ok(out)
    }
}

/// Reads a WAV file's samples as 16-bit: it must be 16 kHz, mono, integer PCM.
pub fn read_wav(path: &Path) -> Result<Vec<i16>, AudioError> {
    read_wav_at(path, SAMPLE_RATE_HZ)
}

/// [`read_wav`] of a file that must have `rate` samples per second.
pub fn read_wav_at(path: &Path, rate: u32) -> Result<Vec<i16>, AudioError> {
    let file = File::open(path).map_err(|source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let not_wav = |error: hound::Error| AudioError::NotWav {
        path: path.to_path_buf(),
        message: error.to_string(),
    };
    let mut reader = hound::WavReader::new(BufReader::new(file)).map_err(not_wav)?;
    let spec = reader.spec();
    if spec.channels != 1 {
        return Err(AudioError::Channels {
            path: path.to_path_buf(),
            channels: spec.channels,
        });
    }
    if spec.sample_rate != rate {
        return Err(AudioError::SampleRate {
            path: path.to_path_buf(),
            rate: spec.sample_rate,
            expected: rate,
        });
    }
    let bits = spec.bits_per_sample;
    if spec.sample_format != hound::SampleFormat::Int || !matches!(bits, 8 | 16 | 24 | 32) {
        let kind = match spec.sample_format {
            hound::SampleFormat::Int => "integer",
            hound::SampleFormat::Float => "float",
        };
        return Err(AudioError::SampleFormat {
            path: path.to_path_buf(),
            format: format!("{bits}-bit {kind}"),
        });
    }
    let announced = reader.len();
    let mut samples = Vec::with_capacity(announced as usize);
    for sample in reader.samples::<i32>() {
        match sample {
            // Wider samples keep their top 16 bits; 8-bit ones are moved up to them.
            Ok(value) => samples.push(if bits >= 16 {
                (value >> (bits - 16)) as i16
            } else {
                (value << (16 - bits)) as i16
            }),
            // With the header read, a sample that cannot be read is one the file lacks (the
            // reader says "failed to read enough bytes" for a sample cut in two).
            Err(_) => {
                return Err(AudioError::Truncated {
                    path: path.to_path_buf(),
                    announced,
                    found: samples.len(),
                });
            }
        }
    }
    if samples.len() < announced as usize {
        return Err(AudioError::Truncated {
            path: path.to_path_buf(),
            announced,
            found: samples.len(),
        });
    }
    Ok(samples)
}

/// `samples` padded with zeros at the end, or cut, to `len`.
pub fn fit_clip(samples: &[i16], len: usize) -> Vec<i16> {
    let mut clip: Vec<i16> = samples.iter().copied().take(len).collect();
    clip.resize(len, 0);
    clip
}

/// Whether `dir` looks like a keyword set: a background noise folder, or a folder of WAV files.
pub fn looks_like_speech_commands(dir: &Path) -> bool {
    if dir.join(BACKGROUND_NOISE).is_dir() {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry.path().is_dir()
            && std::fs::read_dir(entry.path())
                .is_ok_and(|files| files.flatten().take(64).any(|file| is_wav(&file.path())))
    })
}

fn is_wav(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| extension.eq_ignore_ascii_case("wav"))
}

/// Speech Commands' split of a clip by its file name (its `which_set`): the SHA-1 of the name
/// before `_nohash_`, as a number modulo 2^27, in percent of 2^27 - 1.
pub fn split_of_name(file_name: &str) -> Which {
    let speaker = file_name
        .find("_nohash_")
        .map_or(file_name, |at| &file_name[..at]);
    let digest = Sha1::digest(speaker.as_bytes());
    // The number modulo 2^27 is the digest's low 27 bits: its last bytes, big-endian.
    let low = digest[16..20]
        .iter()
        .fold(0u64, |value, &byte| (value << 8) | u64::from(byte));
    const MAX_PER_CLASS: u64 = (1 << 27) - 1;
    let percent = (low % (MAX_PER_CLASS + 1)) as f64 * (100.0 / MAX_PER_CLASS as f64);
    if percent < VALIDATION_PERCENT {
        Which::Validation
    } else if percent < VALIDATION_PERCENT + TESTING_PERCENT {
        Which::Testing
    } else {
        Which::Training
    }
}

/// A clip's split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// Trained on.
    Training,
    /// Chosen between epochs with.
    Validation,
    /// Reported.
    Testing,
    /// In `holdout_list.txt`: in no split.
    Holdout,
}

/// What a keyword set holds, for `host data` and the loader's one-line summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AudioReport {
    /// Word folders read (keywords and unknown words).
    pub words: usize,
    /// Background noise files.
    pub noise_files: usize,
    /// Clips in no split (`holdout_list.txt`).
    pub held_out: usize,
    /// Whether the splits came from the lists (else from the speakers' hashes).
    pub from_lists: bool,
    /// Unknown-word clips available, of which each split takes a tenth of its keyword clips.
    pub unknown_available: usize,
}

impl AudioReport {
    /// One line.
    pub fn summary(&self) -> String {
        format!(
            "{} word folders, {} noise files; splits from {}{}; unknown from {} clips of other words",
            self.words,
            self.noise_files,
            if self.from_lists {
                "validation_list.txt and testing_list.txt"
            } else {
                "the speakers' hashes (Speech Commands' rule)"
            },
            if self.held_out > 0 {
                format!(", {} held-out clips left out", self.held_out)
            } else {
                String::new()
            },
            self.unknown_available,
        )
    }
}

/// A loaded keyword set.
#[derive(Debug)]
pub struct LoadedAudio {
    /// Trained on (with its clips, for noise mixing).
    pub train: Split,
    /// Reported.
    pub test: Split,
    /// Chosen between epochs with, when the set has a validation split.
    pub validation: Option<Split>,
    /// The twelve classes' names.
    pub class_names: Vec<String>,
    /// What was found.
    pub report: AudioReport,
}

/// The twelve classes' names, in class order.
pub fn class_names() -> Vec<String> {
    KEYWORDS
        .iter()
        .copied()
        .chain([UNKNOWN, SILENCE])
        .map(String::from)
        .collect()
}

/// Sorted WAV files of `folder` (recursively is not Speech Commands' layout: one level).
fn wav_files(folder: &Path) -> Result<Vec<PathBuf>, AudioError> {
    let entries = std::fs::read_dir(folder).map_err(|source| AudioError::Io {
        path: folder.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| is_wav(path) && path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Reads a split list (`word/file.wav` per line) into the set of its entries.
fn read_list(
    dir: &Path,
    name: &str,
) -> Result<Option<std::collections::HashSet<String>>, AudioError> {
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| AudioError::Io {
        path: path.clone(),
        source,
    })?;
    let mut entries = std::collections::HashSet::new();
    for (line, entry) in text.lines().enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        if !dir.join(entry).is_file() {
            return Err(AudioError::ListEntry {
                list: path.clone(),
                line: line + 1,
                entry: entry.to_string(),
            });
        }
        entries.insert(entry.to_string());
    }
    Ok(Some(entries))
}

/// One clip to read, or one to cut from the noise.
#[derive(Clone, Debug)]
enum Source {
    File(PathBuf),
    /// Noise file, first sample, volume in 1/1000 of the file's level.
    Noise(usize, usize, u32),
}

/// Reads the keyword set in `dir`, with `front_end`'s features (and `clip_samples` per clip).
pub fn load(
    dir: &Path,
    front_end: FrontEndConfig,
    clip_samples: usize,
) -> Result<LoadedAudio, AudioError> {
    let features = Features::new(front_end)?;
    let entries = std::fs::read_dir(dir).map_err(|source| AudioError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut word_folders: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| Some((entry.file_name().to_str()?.to_string(), entry.path())))
        .filter(|(name, _)| !name.starts_with('_') && !name.starts_with('.'))
        .collect();
    word_folders.sort();
    let mut words: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for (name, folder) in word_folders {
        let files = wav_files(&folder)?;
        if !files.is_empty() {
            words.push((name, files));
        }
    }
    if words.is_empty() {
        return Err(AudioError::NoWords {
            dir: dir.to_path_buf(),
        });
    }
    let missing: Vec<&str> = KEYWORDS
        .iter()
        .copied()
        .filter(|keyword| !words.iter().any(|(name, _)| name == keyword))
        .collect();
    if !missing.is_empty() {
        return Err(AudioError::MissingKeywords {
            dir: dir.to_path_buf(),
            missing: missing.join(", "),
        });
    }
    let noise_dir = dir.join(BACKGROUND_NOISE);
    let noise_paths = if noise_dir.is_dir() {
        wav_files(&noise_dir)?
    } else {
        Vec::new()
    };
    let noise: Vec<Vec<i16>> = noise_paths
        .par_iter()
        .map(|path| read_wav(path))
        .collect::<Result<_, _>>()?;
    // Noise shorter than a clip cannot give one.
    let noise: Arc<Vec<Vec<i16>>> = Arc::new(
        noise
            .into_iter()
            .filter(|samples| samples.len() >= clip_samples)
            .collect(),
    );

    let validation_list = read_list(dir, "validation_list.txt")?;
    let testing_list = read_list(dir, "testing_list.txt")?;
    let holdout_list = read_list(dir, "holdout_list.txt")?.unwrap_or_default();
    let from_lists = validation_list.is_some() || testing_list.is_some();
    let which = |word: &str, path: &Path| {
        let file = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        let entry = format!("{word}/{file}");
        if holdout_list.contains(&entry) {
            Which::Holdout
        } else if from_lists {
            if validation_list
                .as_ref()
                .is_some_and(|list| list.contains(&entry))
            {
                Which::Validation
            } else if testing_list
                .as_ref()
                .is_some_and(|list| list.contains(&entry))
            {
                Which::Testing
            } else {
                Which::Training
            }
        } else {
            split_of_name(file)
        }
    };

    let splits = [Which::Training, Which::Validation, Which::Testing];
    let mut sources: [Vec<(Source, u16)>; 3] = Default::default();
    let mut unknown: [Vec<Source>; 3] = Default::default();
    let mut report = AudioReport {
        words: words.len(),
        noise_files: noise.len(),
        from_lists,
        ..AudioReport::default()
    };
    for (word, files) in &words {
        let class = KEYWORDS.iter().position(|keyword| keyword == word);
        for path in files {
            let Some(split) = splits.iter().position(|&s| s == which(word, path)) else {
                report.held_out += 1;
                continue;
            };
            match class {
                Some(class) => sources[split].push((Source::File(path.clone()), class as u16)),
                None => unknown[split].push(Source::File(path.clone())),
            }
        }
    }
    report.unknown_available = unknown.iter().map(Vec::len).sum();
    for (split, (sources, mut unknown)) in sources.iter_mut().zip(unknown).enumerate() {
        let keywords = sources.len();
        // A fixed generator per split: the same unknown and silence clips on every run.
        let mut rng = ChaCha8Rng::seed_from_u64(0x6b77_7300 + split as u64);
        rand::seq::SliceRandom::shuffle(unknown.as_mut_slice(), &mut rng);
        let wanted = (keywords * UNKNOWN_PERCENT).div_ceil(100);
        sources.extend(unknown.into_iter().take(wanted).map(|s| (s, UNKNOWN_CLASS)));
        let silence = (keywords * SILENCE_PERCENT).div_ceil(100);
        for _ in 0..silence {
            // Without noise files, silence is digital silence.
            let source = if noise.is_empty() {
                Source::Noise(usize::MAX, 0, 0)
            } else {
                let file = rng.random_range(0..noise.len());
                // Every kept noise file holds at least a clip.
                let room = noise
                    .get(file)
                    .map_or(0, |samples| samples.len() - clip_samples);
                let start = rng.random_range(0..=room);
                Source::Noise(file, start, rng.random_range(0..=1000))
            };
            sources.push((source, SILENCE_CLASS));
        }
    }

    let shape = input_shape(&front_end, clip_samples);
    let read = |sources: &[(Source, u16)]| -> Result<Vec<i16>, AudioError> {
        let clips: Vec<Result<Vec<i16>, AudioError>> = sources
            .par_iter()
            .map(|(source, _)| match source {
                Source::File(path) => {
                    read_wav(path).map(|samples| fit_clip(&samples, clip_samples))
                }
                Source::Noise(file, start, volume) => {
                    let stretch = noise
                        .get(*file)
                        .and_then(|samples| samples.get(*start..*start + clip_samples))
                        .unwrap_or_default();
                    let quieter = stretch
                        .iter()
                        .map(|&x| (i32::from(x) * *volume as i32 / 1000) as i16);
                    Ok(fit_clip(&quieter.collect::<Vec<_>>(), clip_samples))
                }
            })
            .collect();
        let mut out = Vec::with_capacity(sources.len() * clip_samples);
        for clip in clips {
            out.extend(clip?);
        }
        Ok(out)
    };
    let make = |sources: &[(Source, u16)], keep_clips: bool| -> Result<Split, AudioError> {
        let clips = read(sources)?;
        let pixels = features.of_clips(&clips, clip_samples)?;
        let audio = AudioSplit {
            front_end,
            clip_samples,
            clips: if keep_clips { clips } else { Vec::new() },
            noise: Arc::clone(&noise),
        };
        Ok(Split {
            shape,
            pixels,
            labels: sources.iter().map(|&(_, label)| label).collect(),
            audio: Some(Arc::new(audio)),
        })
    };
    let [training, validation, testing] = &sources;
    // Training mixes noise into its clips; `host fixture` writes test clips.
    let train = make(training, true)?;
    let validation = make(validation, false)?;
    let test = make(testing, true)?;
    Ok(LoadedAudio {
        train,
        validation: (!validation.is_empty()).then_some(validation),
        test,
        class_names: class_names(),
        report,
    })
}

/// Speech Commands v0.02's tarball.
pub const ARCHIVE: &str = "speech_commands_v0.02.tar.gz";
/// Its SHA-256 (2,428,923,189 bytes), as TensorFlow Datasets pins it.
pub const ARCHIVE_SHA256: &str = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58";
/// The largest archive accepted: a mirror that sends more is not serving the data set.
pub const MAX_ARCHIVE_BYTES: u64 = 3 << 30;
/// The largest entry extracted (its longest noise file is under 4 MB).
pub const MAX_ENTRY_BYTES: u64 = 64 << 20;
/// The most bytes extracted in all (the set is 3.8 GB of clips).
pub const MAX_EXTRACTED_BYTES: u64 = 8 << 30;

/// Why a verified Speech Commands archive could not be extracted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// Not a gzip-compressed tar file, or damaged.
    #[error("not a valid tar.gz archive ({0})")]
    Damaged(std::io::Error),
    /// An entry that is not a plain file or folder at most two levels down (a link, an
    /// absolute path, `..`, a name that is not UTF-8): refused rather than written anywhere.
    #[error(
        "unexpected entry `{0}` (Speech Commands holds word folders of WAV files and a few files beside them)"
    )]
    Unexpected(String),
    /// An entry, or the whole, larger than the set's can be.
    #[error(
        "entry `{name}` would take the extracted set past {limit} bytes, more than Speech Commands can be"
    )]
    TooLarge {
        /// The entry.
        name: String,
        /// The most accepted.
        limit: u64,
    },
    /// The directory holds something already.
    #[error("{0} is not empty: extract Speech Commands into an empty directory")]
    NotEmpty(PathBuf),
    /// Writing failed.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// What was being written.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Extracts the Speech Commands tarball at `archive` into the empty directory `dir`: every
/// entry must be a file or folder at most two levels down (`word/clip.wav`, `LICENSE`). The
/// entries go into a hidden temporary folder of `dir` and are moved into place once all are
/// written, so an interrupted extraction leaves no word folder. Returns the files written.
pub fn extract(archive: &Path, dir: &Path) -> Result<Vec<PathBuf>, ExtractError> {
    use std::path::Component;
    let occupied = std::fs::read_dir(dir)
        .map_err(|source| ExtractError::Write {
            path: dir.to_path_buf(),
            source,
        })?
        .flatten()
        .any(|entry| !entry.file_name().to_string_lossy().starts_with('.'));
    if occupied {
        return Err(ExtractError::NotEmpty(dir.to_path_buf()));
    }
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExtractError::Write { path, source }
    };
    let temporary = tempfile::Builder::new()
        .prefix(".speech-commands.")
        .suffix(".part")
        .tempdir_in(dir)
        .map_err(write_error(dir))?;
    let file = File::open(archive).map_err(ExtractError::Damaged)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    let mut written = Vec::new();
    let mut total = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    for entry in tar.entries().map_err(ExtractError::Damaged)? {
        let mut entry = entry.map_err(ExtractError::Damaged)?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let unexpected = || ExtractError::Unexpected(raw.clone());
        let name = std::str::from_utf8(&entry.path_bytes())
            .map_err(|_| unexpected())?
            .to_string();
        let relative = Path::new(&name);
        let mut parts = Vec::new();
        for component in relative.components() {
            match component {
                Component::CurDir => {}
                Component::Normal(part) => parts.push(part.to_owned()),
                _ => return Err(unexpected()),
            }
        }
        if parts.len() > 2 || (parts.is_empty() && !kind.is_dir()) {
            return Err(unexpected());
        }
        let path = parts
            .iter()
            .fold(temporary.path().to_path_buf(), |path, part| path.join(part));
        if kind.is_dir() {
            std::fs::create_dir_all(&path).map_err(write_error(&path))?;
            continue;
        }
        if !kind.is_file() {
            return Err(unexpected());
        }
        let size = entry.size();
        if size > MAX_ENTRY_BYTES || total + size > MAX_EXTRACTED_BYTES {
            return Err(ExtractError::TooLarge {
                name: raw,
                limit: if size > MAX_ENTRY_BYTES {
                    MAX_ENTRY_BYTES
                } else {
                    MAX_EXTRACTED_BYTES
                },
            });
        }
        total += size;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_error(parent))?;
        }
        // A name given twice would overwrite the first: refused.
        let mut output = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|_| unexpected())?;
        copy_entry(&mut entry, size, &mut output, &mut buffer, |_| {}).map_err(
            |error| match error {
                CopyError::Read(error) => ExtractError::Damaged(error),
                CopyError::Write(error) => write_error(&path)(error),
            },
        )?;
        written.push(
            parts
                .iter()
                .fold(dir.to_path_buf(), |path, part| path.join(part)),
        );
    }
    let entries = std::fs::read_dir(temporary.path()).map_err(write_error(temporary.path()))?;
    for entry in entries.flatten() {
        let target = dir.join(entry.file_name());
        std::fs::rename(entry.path(), &target).map_err(write_error(&target))?;
    }
    Ok(written)
}

/// Mixes background noise into `clip` in place, with [`NOISE_WORDS_PER_CLIP`] words from
/// `rng` (always that many, whatever is drawn, so that a resumed epoch draws what it drew):
/// with probability [`NOISE_PROBABILITY`], a stretch of a noise file at a volume uniform in
/// `[0, NOISE_VOLUME]`, added and saturated.
pub fn mix_noise(clip: &mut [i16], noise: &[Vec<i16>], rng: &mut impl rand::RngCore) {
    let words: [u64; NOISE_WORDS_PER_CLIP] = std::array::from_fn(|_| rng.next_u64());
    let unit = |word: u64| (word >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let below = |word: u64, n: usize| ((u128::from(word) * n as u128) >> 64) as usize;
    if noise.is_empty() || unit(words[0]) >= NOISE_PROBABILITY {
        return;
    }
    let file = &noise[below(words[1], noise.len())];
    let Some(room) = file.len().checked_sub(clip.len()) else {
        return;
    };
    let start = below(words[2], room + 1);
    let volume = unit(words[3]) * NOISE_VOLUME;
    for (sample, &n) in clip.iter_mut().zip(&file[start..]) {
        let mixed = f64::from(*sample) + volume * f64::from(n);
        *sample = mixed.round().clamp(-32768.0, 32767.0) as i16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, spec: hound::WavSpec, samples: &[i32]) {
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for &sample in samples {
            writer.write_sample(sample).unwrap();
        }
        writer.finalize().unwrap();
    }

    fn spec(channels: u16, rate: u32, bits: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    #[test]
    fn wav_files_are_read_or_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.wav");
        write_wav(&good, spec(1, 16_000, 16), &[0, 1000, -1000, 32767]);
        assert_eq!(read_wav(&good).unwrap(), [0, 1000, -1000, 32767]);
        let wide = dir.path().join("wide.wav");
        write_wav(&wide, spec(1, 16_000, 24), &[256 * 1000, -256 * 1000]);
        assert_eq!(read_wav(&wide).unwrap(), [1000, -1000]);

        let message = |path: &Path| read_wav(path).unwrap_err().to_string();
        let stereo = dir.path().join("stereo.wav");
        write_wav(&stereo, spec(2, 16_000, 16), &[0, 0]);
        assert!(
            message(&stereo).contains("2 channels"),
            "{}",
            message(&stereo)
        );
        let rate = dir.path().join("rate.wav");
        write_wav(&rate, spec(1, 44_100, 16), &[0]);
        assert!(message(&rate).contains("44100 Hz"), "{}", message(&rate));
        // Cut short: the header still announces 4 samples.
        let cut = dir.path().join("cut.wav");
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
        assert!(message(&cut).contains("cut short"), "{}", message(&cut));
        let text = dir.path().join("text.wav");
        std::fs::write(&text, b"not audio at all").unwrap();
        assert!(
            message(&text).contains("not a readable WAV"),
            "{}",
            message(&text)
        );
        assert!(message(&dir.path().join("none.wav")).contains("none.wav"));
    }

    /// A WAV file's bytes.
    fn wav_bytes(samples: &[i16]) -> Vec<u8> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec(1, 16_000, 16)).unwrap();
        for &sample in samples {
            writer.write_sample(sample).unwrap();
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    /// A gzip-compressed tarball of `entries` (name, bytes; a name ending in `/` a folder).
    fn tarball(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
        let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(encoder);
        for (name, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            if name.ends_with('/') {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
            } else {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
            }
            // Written raw, so that names a careful writer would refuse can be tested.
            let field = &mut header.as_old_mut().name;
            field[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, bytes.as_slice()).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// A Speech Commands archive in small: the ten keywords and one other word, two clips
    /// each, noise and a testing list.
    fn speech_commands_archive() -> Vec<u8> {
        let mut entries = vec![("./".to_string(), Vec::new())];
        for word in KEYWORDS.iter().chain(&["marvin"]) {
            entries.push((format!("./{word}/"), Vec::new()));
            for speaker in ["0a1b2c3d", "9f8e7d6c"] {
                let samples: Vec<i16> = (0..16_000)
                    .map(|n| ((n * word.len()) % 200) as i16)
                    .collect();
                entries.push((
                    format!("./{word}/{speaker}_nohash_0.wav"),
                    wav_bytes(&samples),
                ));
            }
        }
        entries.push((format!("./{BACKGROUND_NOISE}/"), Vec::new()));
        let noise: Vec<i16> = (0..20_000)
            .map(|n| ((n * 7919) % 2001 - 1000) as i16)
            .collect();
        entries.push((
            format!("./{BACKGROUND_NOISE}/white_noise.wav"),
            wav_bytes(&noise),
        ));
        entries.push((
            "./testing_list.txt".into(),
            b"yes/0a1b2c3d_nohash_0.wav\n".to_vec(),
        ));
        entries.push(("./LICENSE".into(), b"CC BY 4.0\n".to_vec()));
        tarball(&entries)
    }

    fn fetch_options(mirror: String, archive: &[u8]) -> crate::data::download::FetchOptions {
        use crate::data::download::{ArchiveSums, Dataset, FetchOptions};
        let mut options = FetchOptions::for_dataset(Dataset::SpeechCommands);
        options.mirrors = vec![mirror];
        options.archive_sums = Some(ArchiveSums {
            md5: String::new(),
            sha256: crate::data::idx::hex(&sha2::Sha256::digest(archive)),
        });
        options.stall_timeout = std::time::Duration::from_secs(5);
        options
    }

    #[test]
    fn a_served_archive_is_verified_extracted_and_loaded() {
        use crate::data::download::{Dataset, FetchError, Silent};
        let archive = speech_commands_archive();
        let mirror = crate::data::loopback::serve(ARCHIVE, archive.clone());
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("speech-commands");
        let options = fetch_options(mirror.clone(), &archive);
        let written =
            crate::data::ensure(&dir, Dataset::SpeechCommands, Some(&options), &mut Silent)
                .unwrap();
        assert_eq!(written.len(), 11 * 2 + 3, "{written:?}");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names.len(),
            11 + 3,
            "no archive or partial files are left: {names:?}"
        );
        let data =
            crate::data::DataSet::load(&dir, &crate::data::FolderOptions::default()).unwrap();
        assert_eq!(data.classes(), 12);
        assert_eq!(
            data.test.labels,
            [0, 11],
            "yes from the list, and one silence clip"
        );
        // Present now: nothing is fetched.
        let again = crate::data::ensure(
            &dir,
            Dataset::SpeechCommands,
            Some(&fetch_options("http://127.0.0.1:1/".into(), &archive)),
            &mut Silent,
        )
        .unwrap();
        assert!(again.is_empty());

        // Another archive than the one pinned is refused and leaves nothing.
        let other = root.path().join("other");
        let mut wrong = fetch_options(mirror.clone(), &archive);
        wrong.archive_sums.as_mut().unwrap().sha256 = ARCHIVE_SHA256.into();
        let error = crate::data::ensure(&other, Dataset::SpeechCommands, Some(&wrong), &mut Silent)
            .unwrap_err();
        assert!(
            matches!(error, FetchError::AllMirrorsFailed { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("wrong content"), "{error}");
        assert!(!other.exists());
    }

    #[test]
    fn an_archive_reaching_outside_is_refused_and_leaves_nothing() {
        use crate::data::download::{Dataset, Silent};
        for name in ["../escape.wav", "/etc/escape.wav", "./a/b/c.wav"] {
            let archive = tarball(&[(name.to_string(), wav_bytes(&[0; 10]))]);
            let mirror = crate::data::loopback::serve(ARCHIVE, archive.clone());
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("speech-commands");
            let error = crate::data::ensure(
                &dir,
                Dataset::SpeechCommands,
                Some(&fetch_options(mirror, &archive)),
                &mut Silent,
            )
            .unwrap_err();
            assert!(
                error.to_string().contains("unexpected entry"),
                "{name}: {error}"
            );
            assert!(!dir.exists(), "{name}");
            assert!(!root.path().join("escape.wav").exists());
        }
    }

    #[test]
    fn clips_are_padded_or_cut() {
        assert_eq!(fit_clip(&[1, 2, 3], 5), [1, 2, 3, 0, 0]);
        assert_eq!(fit_clip(&[1, 2, 3], 2), [1, 2]);
    }

    #[test]
    fn speakers_split_as_speech_commands_does() {
        // Speech Commands' which_set() of these names, computed with its Python formula.
        assert_eq!(split_of_name("0a7c2a8d_nohash_0.wav"), Which::Training);
        assert_eq!(split_of_name("00000000_nohash_0.wav"), Which::Validation);
        assert_eq!(split_of_name("00000002_nohash_0.wav"), Which::Testing);
        assert_eq!(split_of_name("00000001_nohash_3.wav"), Which::Training);
        let names = (0..1000).map(|i| format!("{i:08x}_nohash_0.wav"));
        let counts = names.fold([0; 3], |mut counts, name| {
            counts[split_of_name(&name) as usize] += 1;
            counts
        });
        // About 80 / 10 / 10.
        assert!((750..850).contains(&counts[0]), "{counts:?}");
        // The part before _nohash_ decides.
        assert_eq!(
            split_of_name("abc_nohash_0.wav"),
            split_of_name("abc_nohash_7.wav")
        );
    }

    #[test]
    fn noise_mixing_takes_the_same_draws_whatever_it_draws() {
        let noise = vec![vec![1000i16; 20]];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut mixed = 0;
        for _ in 0..100 {
            let mut clip = [0i16; 10];
            mix_noise(&mut clip, &noise, &mut rng);
            mixed += usize::from(clip[0] != 0);
            assert!(clip.iter().all(|&x| (0..=100).contains(&x)));
        }
        assert!((60..95).contains(&mixed), "{mixed}");
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        mix_noise(&mut [0; 10], &[], &mut rng);
        assert_eq!(
            rng.get_word_pos(),
            2 * NOISE_WORDS_PER_CLIP as u128,
            "no noise: the same draws"
        );
    }
}
