//! Folders of pictures as a data set, in the layout of Keras's `image_dataset_from_directory`
//! and burn's `ImageFolderDataset`: one sub-folder per class, its name the class's name.
//!
//! ```text
//! DIR/train/cat/*.png        DIR/cat/*.png
//! DIR/train/dog/*.jpg   or   DIR/dog/*.jpg
//! DIR/test/cat/*.png
//! DIR/test/dog/*.jpg
//! ```
//!
//! With `train/` and `test/`, the pictures under `test/` are the test set, and those under an
//! optional `val/` (of the same classes) the validation set. Without them, every
//! fifth picture of each class (in file-name order: the 5th, 10th, ...) is held out as the test
//! set, a fifth of the pictures, the same ones on every run. A class folder may hold
//! sub-folders; every picture below it belongs to the class. Each split lists its pictures in
//! file-name order across classes (training shuffles them each epoch; `--limit N` takes the
//! first N of that order).
//!
//! Classes are the class folders' names in byte order (`cat` before `dog`, `10` before `9`);
//! names must be UTF-8, since the model file stores them as such. Files whose extension is not a
//! picture's, and files and folders whose name starts with `.`, are ignored and counted. A
//! picture is decoded whatever its extension says (by its first bytes): PNG, JPEG, BMP, GIF (its
//! first frame), TIFF, WebP, PGM/PPM/PBM/PAM. A picture that cannot be decoded, a JPEG cut short
//! included, is an error naming it, or with [`FolderOptions::skip_damaged`] is left out and
//! counted.
//!
//! Each picture is converted to the network's input as it is decoded, so memory holds only the
//! converted pictures: `N x height x width x channels` bytes for `N` pictures, plus two bytes
//! of label each (60,000 pictures of 28x28x1 take 47 MB; 50,000 of 32x32x3, 154 MB). Channels: 1
//! is the picture's luma (ITU-R BT.709 weights), 3 its RGB; transparency is dropped, as
//! Keras's loader drops it. Size: see [`Fit`]. Pictures are decoded on every core.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView, ImageDecoder, ImageReader};
use rayon::prelude::*;
use tinycnn::arch::Shape;

use crate::data::idx::Role;
use crate::data::split::Split;

/// Extensions (lower case) of the files read as pictures; any other file is ignored.
pub const PICTURE_EXTENSIONS: [&str; 15] = [
    "png", "jpg", "jpeg", "jpe", "jfif", "bmp", "dib", "gif", "tif", "tiff", "webp", "pgm", "ppm",
    "pbm", "pnm",
];
/// Most classes a folder set may have: the widest dense layer a description allows.
pub const MAX_CLASSES: usize = 4096;
/// Of a class folder's pictures without `train/` and `test/`, every this-many-th is a test one.
pub const TEST_EVERY: usize = 5;
/// Largest picture side decoded; a larger picture is an error rather than gigabytes of memory.
pub const MAX_PICTURE_SIDE: u32 = 16_384;

/// How a picture whose size is not the input's is brought to it. All three shrink by averaging
/// the source pixels each output pixel covers (every source pixel counts, as in an anti-aliased
/// resize) and enlarge by bilinear interpolation; a picture already of the input's size is
/// taken as it is.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Fit {
    /// Scaled to the input's height and width, each on its own: a picture of another aspect
    /// is distorted (Keras's default).
    #[default]
    Stretch,
    /// The largest centred part of the input's aspect is kept and scaled (Keras's
    /// `crop_to_aspect_ratio`).
    Crop,
    /// Scaled to fit inside the input, keeping its aspect, with black bars in the rest (Keras's
    /// `pad_to_aspect_ratio`).
    Pad,
}

impl fmt::Display for Fit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fit::Stretch => "stretched",
            Fit::Crop => "cropped to the input's aspect and scaled",
            Fit::Pad => "scaled to fit and padded with black",
        })
    }
}

/// How folders of pictures become a data set.
#[derive(Clone, Debug, Default)]
pub struct FolderOptions {
    /// The network's input; `None` takes the pictures' own size (which must then be the same
    /// for all) and channels (1 if every picture is grey, else 3).
    pub shape: Option<Shape>,
    /// How a picture of another size is brought to the input's.
    pub fit: Fit,
    /// Leave out pictures that cannot be decoded (counted in the report) instead of failing.
    pub skip_damaged: bool,
    /// Show a progress bar while decoding (on a terminal).
    pub progress: bool,
    /// For a keyword set ([`crate::data::audio`]): the audio front end whose features to
    /// compute (a model's own, or the one `host train --fft-bits` chooses); `None` takes
    /// [`tinycnn::audio::FrontEndConfig::MLPERF_KWS_INT16`], what `host train` computes by
    /// default.
    pub front_end: Option<tinycnn::audio::FrontEndConfig>,
}

impl FolderOptions {
    /// How a model whose input is `shape` reads a folder set: each picture converted to that
    /// input as `fit` says, without a progress bar.
    pub fn for_input(shape: Shape, fit: Fit, skip_damaged: bool) -> Self {
        FolderOptions {
            shape: Some(shape),
            fit,
            skip_damaged,
            progress: false,
            front_end: None,
        }
    }

    /// These options, reading a keyword set with `front_end` (a model's, if it has one).
    pub fn with_front_end(self, front_end: Option<tinycnn::audio::FrontEndConfig>) -> Self {
        FolderOptions { front_end, ..self }
    }
}

/// What a load found besides the pictures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FolderReport {
    /// Whether the set had `train/` and `test/` folders.
    pub split_folders: bool,
    /// How pictures of another size were fitted.
    pub fit: Fit,
    /// Files ignored as not pictures (or hidden).
    pub ignored: usize,
    /// The first few of them.
    pub ignored_examples: Vec<PathBuf>,
    /// Pictures left out as damaged, with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Smallest and largest height and width among the pictures.
    pub sizes: Option<((u32, u32), (u32, u32))>,
    /// Pictures that were grey (with or without transparency).
    pub grey: usize,
    /// Pictures that were colour.
    pub colour: usize,
    /// Pictures with transparency (dropped).
    pub transparent: usize,
    /// Pictures resized.
    pub resized: usize,
    /// Seconds spent decoding and converting.
    pub seconds: f64,
}

impl FolderReport {
    /// What the load did, in a few words: sizes, channels, fitting, what was ignored.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(((min_h, min_w), (max_h, max_w))) = self.sizes {
            parts.push(if (min_h, min_w) == (max_h, max_w) {
                format!("all {min_h}x{min_w}")
            } else {
                format!("{min_h}x{min_w} to {max_h}x{max_w}")
            });
        }
        parts.push(format!("{} grey, {} colour", self.grey, self.colour));
        if self.resized > 0 {
            parts.push(format!("{} {}", self.resized, self.fit));
        }
        if self.transparent > 0 {
            parts.push(format!("{} with transparency dropped", self.transparent));
        }
        if self.ignored > 0 {
            parts.push(format!(
                "{} file{} not pictures, ignored",
                self.ignored,
                plural(self.ignored)
            ));
        }
        if !self.skipped.is_empty() {
            parts.push(format!(
                "{} damaged picture{} left out",
                self.skipped.len(),
                plural(self.skipped.len())
            ));
        }
        parts.join("; ")
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// A folder set, loaded.
#[derive(Clone, Debug)]
pub struct LoadedFolders {
    /// Training pictures.
    pub train: Split,
    /// Test pictures.
    pub test: Split,
    /// Validation pictures, from a `val/` folder beside `train/` and `test/`.
    pub validation: Option<Split>,
    /// Class names, in class order.
    pub class_names: Vec<String>,
    /// What else the load found.
    pub report: FolderReport,
}

/// A folder set that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FolderError {
    /// A file or directory could not be read.
    #[error("{path}: {error}")]
    Io {
        /// It.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The directory has neither IDX files nor class folders.
    #[error(
        "{dir}: holds no class folders; a data set is either the four IDX files of an \
         MNIST-format set, or one folder per class holding its pictures (DIR/cat/*.png, \
         DIR/dog/*.png), or train/ and test/ each holding such folders"
    )]
    NoClasses {
        /// The directory.
        dir: PathBuf,
    },
    /// `train/` without `test/` or the reverse.
    #[error(
        "{dir}: has {present}/ but no {missing}/; give both, or neither (then a fifth of \
             each class's pictures is held out as the test set)"
    )]
    HalfSplit {
        /// The directory.
        dir: PathBuf,
        /// The folder present.
        present: &'static str,
        /// The folder missing.
        missing: &'static str,
    },
    /// A class folder's name is not UTF-8.
    #[error(
        "{path}: the folder's name is not valid UTF-8; class names are stored as UTF-8 in \
             the model file: rename the folder"
    )]
    NameNotUtf8 {
        /// The folder.
        path: PathBuf,
    },
    /// A class of the test (or validation) set has no training pictures.
    #[error(
        "{path}: class `{name}` has test pictures but no folder of training pictures; a \
             network cannot learn a class it never sees (add {name}/ to the training folders, \
             or remove it)"
    )]
    TestOnlyClass {
        /// The test folder.
        path: PathBuf,
        /// The class.
        name: String,
    },
    /// A class with no training pictures.
    #[error("{path}: class `{name}` has no training pictures{}", if *.skipped > 0 { " left (its damaged pictures were left out)" } else { "" })]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
        /// The class.
        name: String,
        /// Pictures of it that were left out as damaged.
        skipped: usize,
    },
    /// Fewer than two classes.
    #[error("{dir}: holds one class folder (`{name}`); a classifier needs at least two classes")]
    OneClass {
        /// The directory.
        dir: PathBuf,
        /// The class.
        name: String,
    },
    /// More classes than a network can have.
    #[error("{dir}: holds {count} class folders; a network has at most {MAX_CLASSES} classes")]
    TooManyClasses {
        /// The directory.
        dir: PathBuf,
        /// Class folders found.
        count: usize,
    },
    /// A picture that cannot be decoded.
    #[error(
        "{path}: not a readable picture: {problem} (leave such pictures out with \
             --skip-damaged)"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        problem: String,
    },
    /// Pictures of several sizes and no input size to bring them to.
    #[error(
        "{dir}: the pictures have different sizes ({first} and {other}, e.g. {path}); give \
             the network's input size, e.g. --arch 'input:{first}x{channels} ...'"
    )]
    MixedSizes {
        /// The directory.
        dir: PathBuf,
        /// The first picture's size.
        first: String,
        /// Another size.
        other: String,
        /// A picture of the other size.
        path: PathBuf,
        /// The channels the set would have.
        channels: usize,
    },
    /// An input with channels that pictures do not have.
    #[error("the network's input has {channels} channels; pictures give 1 (grey) or 3 (colour)")]
    Channels {
        /// The input's channels.
        channels: usize,
    },
}

/// Whether `dir` holds any of an MNIST-format set's IDX files (raw or gzip).
pub fn looks_like_idx(dir: &Path) -> bool {
    Role::ALL.into_iter().any(|role| {
        dir.join(role.file_name()).is_file()
            || dir.join(format!("{}.gz", role.file_name())).is_file()
    })
}

/// Whether `dir` holds a folder (one not hidden).
pub fn has_folders(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| !is_hidden(&entry.file_name()) && entry.path().is_dir())
    })
}

/// One picture to read.
#[derive(Clone, Debug)]
struct Entry {
    path: PathBuf,
    label: u16,
}

/// Class folders and pictures found under one folder (the set's, or its `train/` or `test/`).
#[derive(Debug, Default)]
struct Listing {
    /// (name, folder, pictures in name order).
    classes: Vec<(String, PathBuf, Vec<PathBuf>)>,
    ignored: Vec<PathBuf>,
}

/// Reads the folder set in `dir`.
pub fn load(dir: &Path, options: &FolderOptions) -> Result<LoadedFolders, FolderError> {
    let started = Instant::now();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| FolderError::Io { path, error }
    };
    let metadata = std::fs::metadata(dir).map_err(io(dir))?;
    if !metadata.is_dir() {
        return Err(FolderError::Io {
            path: dir.to_path_buf(),
            error: std::io::Error::other("not a directory"),
        });
    }
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    let split_folders = match (train_dir.is_dir(), test_dir.is_dir()) {
        (true, true) => true,
        (false, false) => false,
        (true, false) => {
            return Err(FolderError::HalfSplit {
                dir: dir.to_path_buf(),
                present: "train",
                missing: "test",
            });
        }
        (false, true) => {
            return Err(FolderError::HalfSplit {
                dir: dir.to_path_buf(),
                present: "test",
                missing: "train",
            });
        }
    };

    let mut report = FolderReport {
        split_folders,
        fit: options.fit,
        ..FolderReport::default()
    };
    let val_dir = dir.join("val");
    let mut val_entries = None;
    let (class_names, mut train_entries, mut test_entries) = if split_folders {
        let train = list(&train_dir)?;
        let test = list(&test_dir)?;
        let val = if val_dir.is_dir() {
            Some(list(&val_dir)?)
        } else {
            None
        };
        for (name, folder, _) in test
            .classes
            .iter()
            .chain(val.iter().flat_map(|val| &val.classes))
        {
            if !train.classes.iter().any(|(known, _, _)| known == name) {
                return Err(FolderError::TestOnlyClass {
                    path: folder.clone(),
                    name: name.clone(),
                });
            }
        }
        let names: Vec<String> = train
            .classes
            .iter()
            .map(|(name, ..)| name.clone())
            .collect();
        let label_of = |name: &str| names.iter().position(|known| known == name);
        let entries = |listing: &Listing| -> Vec<Entry> {
            listing
                .classes
                .iter()
                .flat_map(|(name, _, pictures)| {
                    let label = label_of(name).unwrap_or_default() as u16;
                    pictures.iter().map(move |path| Entry {
                        path: path.clone(),
                        label,
                    })
                })
                .collect()
        };
        let (train_entries, test_entries) = (entries(&train), entries(&test));
        val_entries = val.as_ref().map(&entries);
        note_ignored(&mut report, train.ignored.into_iter().chain(test.ignored));
        if let Some(val) = val {
            note_ignored(&mut report, val.ignored);
        }
        (names, train_entries, test_entries)
    } else {
        let listing = list(dir)?;
        let names: Vec<String> = listing
            .classes
            .iter()
            .map(|(name, ..)| name.clone())
            .collect();
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for (label, (_, _, pictures)) in listing.classes.iter().enumerate() {
            for (index, path) in pictures.iter().enumerate() {
                let entry = Entry {
                    path: path.clone(),
                    label: label as u16,
                };
                if (index + 1).is_multiple_of(TEST_EVERY) {
                    test.push(entry);
                } else {
                    train.push(entry);
                }
            }
        }
        note_ignored(&mut report, listing.ignored);
        (names, train, test)
    };
    // File-name order across classes mixes the classes when names are numbers or hashes, and
    // makes folders written from IDX files by their indices (scripts/idx-to-folders.py) train
    // exactly as the IDX files do.
    for entries in [&mut train_entries, &mut test_entries]
        .into_iter()
        .chain(val_entries.as_mut())
    {
        entries.sort_by(|a, b| {
            fn name(entry: &Entry) -> &[u8] {
                entry
                    .path
                    .file_name()
                    .map(OsStr::as_encoded_bytes)
                    .unwrap_or_default()
            }
            name(a)
                .cmp(name(b))
                .then(a.label.cmp(&b.label))
                .then(a.path.cmp(&b.path))
        });
    }
    match class_names.as_slice() {
        [] => {
            return Err(FolderError::NoClasses {
                dir: dir.to_path_buf(),
            });
        }
        [name] => {
            return Err(FolderError::OneClass {
                dir: dir.to_path_buf(),
                name: name.clone(),
            });
        }
        names if names.len() > MAX_CLASSES => {
            return Err(FolderError::TooManyClasses {
                dir: dir.to_path_buf(),
                count: names.len(),
            });
        }
        _ => {}
    }

    let shape = match options.shape {
        Some(shape) => {
            if shape.channels != 1 && shape.channels != 3 {
                return Err(FolderError::Channels {
                    channels: shape.channels,
                });
            }
            shape
        }
        None => shape_of_pictures(dir, train_entries.iter().chain(&test_entries), options)?,
    };

    let total = train_entries.len() + test_entries.len() + val_entries.as_ref().map_or(0, Vec::len);
    let bar = (options.progress && total > 0).then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "decoding pictures {bar:30} {pos}/{len} {per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let done = AtomicUsize::new(0);
    let tick = || {
        let count = done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &bar
            && count.is_multiple_of(256)
        {
            bar.set_position(count as u64);
        }
    };
    let train = decode_all(&train_entries, shape, options, &mut report, &tick)?;
    let test = decode_all(&test_entries, shape, options, &mut report, &tick)?;
    let validation = match &val_entries {
        Some(entries) => Some(decode_all(entries, shape, options, &mut report, &tick)?),
        None => None,
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let counts = train.counts(class_names.len());
    if let Some(empty) = counts.iter().position(|&count| count == 0) {
        let name = class_names[empty].clone();
        let class_dir = if split_folders { &train_dir } else { dir };
        let skipped = report
            .skipped
            .iter()
            .filter(|(path, _)| path.starts_with(class_dir.join(&name)))
            .count();
        return Err(FolderError::EmptyClass {
            path: class_dir.join(&name),
            name,
            skipped,
        });
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(LoadedFolders {
        train,
        test,
        validation,
        class_names,
        report,
    })
}

fn note_ignored(report: &mut FolderReport, ignored: impl IntoIterator<Item = PathBuf>) {
    for path in ignored {
        report.ignored += 1;
        if report.ignored_examples.len() < 5 {
            report.ignored_examples.push(path);
        }
    }
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

fn is_picture_name(path: &Path) -> bool {
    path.extension()
        .and_then(OsStr::to_str)
        .is_some_and(|extension| {
            PICTURE_EXTENSIONS
                .iter()
                .any(|known| extension.eq_ignore_ascii_case(known))
        })
}

/// Sorted entries of a directory: (name, path, is a directory).
fn entries_of(dir: &Path) -> Result<Vec<(std::ffi::OsString, PathBuf, bool)>, FolderError> {
    let io = |error| FolderError::Io {
        path: dir.to_path_buf(),
        error,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        // Follows symbolic links, as a user who links a class folder in expects.
        let is_dir = path.is_dir();
        entries.push((entry.file_name(), path, is_dir));
    }
    entries.sort_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
    Ok(entries)
}

/// The class folders directly in `dir` and the pictures below each.
fn list(dir: &Path) -> Result<Listing, FolderError> {
    let mut listing = Listing::default();
    for (name, path, is_dir) in entries_of(dir)? {
        if !is_dir || is_hidden(&name) {
            listing.ignored.push(path);
            continue;
        }
        let Some(name) = name.to_str() else {
            return Err(FolderError::NameNotUtf8 { path });
        };
        let mut pictures = Vec::new();
        collect_pictures(&path, &mut pictures, &mut listing.ignored, 0)?;
        listing.classes.push((name.to_string(), path, pictures));
    }
    Ok(listing)
}

fn collect_pictures(
    dir: &Path,
    pictures: &mut Vec<PathBuf>,
    ignored: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<(), FolderError> {
    // A link loop would otherwise recurse until the stack overflows.
    if depth > 32 {
        return Err(FolderError::Io {
            path: dir.to_path_buf(),
            error: std::io::Error::other("folders nested more than 32 deep (a link loop?)"),
        });
    }
    for (name, path, is_dir) in entries_of(dir)? {
        if is_hidden(&name) {
            ignored.push(path);
        } else if is_dir {
            collect_pictures(&path, pictures, ignored, depth + 1)?;
        } else if is_picture_name(&path) {
            pictures.push(path);
        } else {
            ignored.push(path);
        }
    }
    Ok(())
}

/// The size and channels of the pictures, read from their headers.
fn shape_of_pictures<'a>(
    dir: &Path,
    entries: impl Iterator<Item = &'a Entry>,
    options: &FolderOptions,
) -> Result<Shape, FolderError> {
    let entries: Vec<&Entry> = entries.collect();
    let headers: Vec<Option<((u32, u32), bool)>> = entries
        .par_iter()
        .map(|entry| match header(&entry.path) {
            Ok(found) => Ok(Some(found)),
            Err(_) if options.skip_damaged => Ok(None),
            Err(problem) => Err(FolderError::Damaged {
                path: entry.path.clone(),
                problem,
            }),
        })
        .collect::<Result<_, _>>()?;
    let colour = headers.iter().flatten().any(|(_, colour)| *colour);
    let channels = if colour { 3 } else { 1 };
    let mut sizes = entries
        .iter()
        .zip(&headers)
        .filter_map(|(entry, header)| header.map(|((width, height), _)| (entry, (height, width))));
    let Some((_, first)) = sizes.next() else {
        return Ok(Shape::new(1, 1, channels));
    };
    if let Some((entry, other)) = sizes.find(|(_, size)| *size != first) {
        return Err(FolderError::MixedSizes {
            dir: dir.to_path_buf(),
            first: format!("{}x{}", first.0, first.1),
            other: format!("{}x{}", other.0, other.1),
            path: entry.path.clone(),
            channels,
        });
    }
    Ok(Shape::new(first.0 as usize, first.1 as usize, channels))
}

/// (width, height) and whether the picture is colour, from its header (a damaged picture is
/// refused here as [`decode`] refuses it).
fn header(path: &Path) -> Result<((u32, u32), bool), String> {
    let bytes = std::fs::read(path).map_err(|error| error.to_string())?;
    let reader = checked_reader(&bytes)?;
    let decoder = reader
        .into_decoder()
        .map_err(|error| error.to_string().trim().to_string())?;
    let colour = decoder.color_type().has_color();
    Ok((decoder.dimensions(), colour))
}

/// What one decoded picture was, for the report.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    height: u32,
    width: u32,
    colour: bool,
    transparent: bool,
    resized: bool,
}

fn decode_all(
    entries: &[Entry],
    shape: Shape,
    options: &FolderOptions,
    report: &mut FolderReport,
    tick: &(dyn Fn() + Sync),
) -> Result<Split, FolderError> {
    let size = shape.values();
    let mut pixels = vec![0u8; entries.len() * size];
    let outcomes: Vec<Result<Seen, String>> = pixels
        .par_chunks_mut(size.max(1))
        .zip(entries.par_iter())
        .map(|(out, entry)| {
            let outcome = read_picture(&entry.path, shape, options.fit, out);
            tick();
            outcome
        })
        .collect();
    let mut labels = Vec::with_capacity(entries.len());
    let mut kept = 0;
    for (index, (entry, outcome)) in entries.iter().zip(outcomes).enumerate() {
        match outcome {
            Ok(seen) => {
                if kept != index {
                    pixels.copy_within(index * size..(index + 1) * size, kept * size);
                }
                kept += 1;
                labels.push(entry.label);
                let sizes = report
                    .sizes
                    .get_or_insert(((seen.height, seen.width), (0, 0)));
                sizes.0 = (sizes.0.0.min(seen.height), sizes.0.1.min(seen.width));
                sizes.1 = (sizes.1.0.max(seen.height), sizes.1.1.max(seen.width));
                if seen.colour {
                    report.colour += 1;
                } else {
                    report.grey += 1;
                }
                report.transparent += usize::from(seen.transparent);
                report.resized += usize::from(seen.resized);
            }
            Err(problem) if options.skip_damaged => {
                report.skipped.push((entry.path.clone(), problem))
            }
            Err(problem) => {
                return Err(FolderError::Damaged {
                    path: entry.path.clone(),
                    problem,
                });
            }
        }
    }
    pixels.truncate(kept * size);
    Ok(Split {
        shape,
        pixels,
        labels,
        audio: None,
    })
}

/// Decodes the picture at `path` and writes it, converted to `shape`, into `out`.
fn read_picture(path: &Path, shape: Shape, fit: Fit, out: &mut [u8]) -> Result<Seen, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|error| error.to_string())?;
    let picture = decode(&bytes)?;
    let seen = Seen {
        height: picture.height(),
        width: picture.width(),
        colour: picture.color().has_color(),
        // GIF decodes with an alpha channel whether or not a pixel is transparent.
        transparent: picture.color().has_alpha()
            && picture.pixels().any(|(_, _, pixel)| pixel.0[3] < 255),
        resized: (picture.height() as usize, picture.width() as usize)
            != (shape.height, shape.width),
    };
    convert(picture, shape, fit, out);
    Ok(seen)
}

/// Decodes a whole picture from its bytes; a picture that is damaged or cut short is an error.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, String> {
    checked_reader(bytes)?
        .decode()
        .map_err(|error| error.to_string().trim().to_string())
}

/// A reader of the picture in `bytes`, its format known, a JPEG cut short refused, and its size
/// limited to [`MAX_PICTURE_SIDE`].
fn checked_reader(bytes: &[u8]) -> Result<ImageReader<std::io::Cursor<&[u8]>>, String> {
    let format = image::guess_format(bytes).map_err(|_| {
        "not a picture in a known format (PNG, JPEG, BMP, GIF, TIFF, WebP, PGM/PPM)".to_string()
    })?;
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err("the JPEG is cut short (no end-of-image marker after its last scan)".into());
    }
    let mut reader = ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_PICTURE_SIDE);
    limits.max_image_height = Some(MAX_PICTURE_SIDE);
    reader.limits(limits);
    Ok(reader)
}

/// Whether a JPEG's last scan is followed by the end-of-image marker. JPEG decoders fill a
/// truncated scan with grey and report no error; inside a scan every `FF` byte is followed by
/// `00` or a restart marker, so an `FF D9` after the last start-of-scan (`FF DA`) is the end.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|pair| pair == [0xFF, 0xDA]);
    let Some(scan) = last_scan else {
        return false;
    };
    bytes[scan..].windows(2).any(|pair| pair == [0xFF, 0xD9])
}

/// Converts `picture` to `shape` (channels first: 1 is luma, 3 RGB; then size as `fit` says),
/// writing channels-last values into `out`.
pub fn convert(picture: DynamicImage, shape: Shape, fit: Fit, out: &mut [u8]) {
    let (width, height) = (shape.width as u32, shape.height as u32);
    match shape.channels {
        1 => {
            let grey = picture.into_luma8();
            let fitted = fit_to(grey, width, height, fit);
            out.copy_from_slice(fitted.as_raw());
        }
        _ => {
            let rgb = picture.into_rgb8();
            let fitted = fit_to(rgb, width, height, fit);
            out.copy_from_slice(fitted.as_raw());
        }
    }
}

/// `picture` scaled to `width` x `height`: shrinking averages the source pixels each output
/// pixel covers (a box filter: every source pixel counts once, and it is several times faster
/// than a wider filter); enlarging interpolates bilinearly.
fn scale<I, P>(picture: &I, width: u32, height: u32) -> image::ImageBuffer<P, Vec<u8>>
where
    I: image::GenericImageView<Pixel = P>,
    P: image::Pixel<Subpixel = u8> + 'static,
{
    let (source_width, source_height) = picture.dimensions();
    if width <= source_width && height <= source_height {
        image::imageops::thumbnail(picture, width, height)
    } else {
        image::imageops::resize(picture, width, height, FilterType::Triangle)
    }
}

fn fit_to<P>(
    picture: image::ImageBuffer<P, Vec<u8>>,
    width: u32,
    height: u32,
    fit: Fit,
) -> image::ImageBuffer<P, Vec<u8>>
where
    P: image::Pixel<Subpixel = u8> + 'static,
{
    let (source_width, source_height) = picture.dimensions();
    if (source_width, source_height) == (width, height) {
        return picture;
    }
    match fit {
        Fit::Stretch => scale(&picture, width, height),
        Fit::Crop => {
            // The largest centred window of the target's aspect: compare w/h ratios crosswise.
            let (crop_width, crop_height) = if u64::from(source_width) * u64::from(height)
                > u64::from(source_height) * u64::from(width)
            {
                let crop_width =
                    (u64::from(source_height) * u64::from(width) / u64::from(height)).max(1) as u32;
                (crop_width, source_height)
            } else {
                let crop_height =
                    (u64::from(source_width) * u64::from(height) / u64::from(width)).max(1) as u32;
                (source_width, crop_height)
            };
            let left = (source_width - crop_width) / 2;
            let top = (source_height - crop_height) / 2;
            let window = image::imageops::crop_imm(&picture, left, top, crop_width, crop_height);
            scale(&*window, width, height)
        }
        Fit::Pad => {
            let (inner_width, inner_height) = if u64::from(source_width) * u64::from(height)
                > u64::from(source_height) * u64::from(width)
            {
                let inner_height = (u64::from(source_height) * u64::from(width)
                    / u64::from(source_width))
                .clamp(1, u64::from(height)) as u32;
                (width, inner_height)
            } else {
                let inner_width = (u64::from(source_width) * u64::from(height)
                    / u64::from(source_height))
                .clamp(1, u64::from(width)) as u32;
                (inner_width, height)
            };
            let inner = scale(&picture, inner_width, inner_height);
            let mut canvas = image::ImageBuffer::<P, Vec<u8>>::new(width, height);
            image::imageops::replace(
                &mut canvas,
                &inner,
                i64::from((width - inner_width) / 2),
                i64::from((height - inner_height) / 2),
            );
            canvas
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageFormat, Luma, Rgb, RgbImage, Rgba, RgbaImage};

    /// Writes a grey picture of `width` x `height`, all `level`, as `format` (as RGB where the
    /// format's encoder takes no grey).
    fn grey(path: &Path, width: u32, height: u32, level: u8, format: ImageFormat) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let picture = GrayImage::from_pixel(width, height, Luma([level]));
        if matches!(format, ImageFormat::Gif | ImageFormat::WebP) {
            DynamicImage::ImageLuma8(picture)
                .into_rgb8()
                .save_with_format(path, format)
                .unwrap();
        } else {
            picture.save_with_format(path, format).unwrap();
        }
    }

    fn colour(path: &Path, width: u32, height: u32, rgb: [u8; 3]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_pixel(width, height, Rgb(rgb))
            .save(path)
            .unwrap();
    }

    fn options(shape: Option<Shape>) -> FolderOptions {
        FolderOptions {
            shape,
            ..FolderOptions::default()
        }
    }

    fn error(dir: &Path, options: &FolderOptions) -> String {
        load(dir, options).unwrap_err().to_string()
    }

    #[test]
    fn train_and_test_folders_give_sorted_classes_and_exact_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (split, count) in [("train", 3), ("test", 1)] {
            for (class, level) in [("dog", 200), ("cat", 100)] {
                for index in 0..count {
                    let path = root.join(split).join(class).join(format!("{index}.png"));
                    grey(&path, 4, 3, level + index as u8, ImageFormat::Png);
                }
            }
        }
        std::fs::write(root.join("train/cat/notes.txt"), "not a picture").unwrap();
        std::fs::write(root.join("train/.DS_Store"), "hidden").unwrap();
        let loaded = load(root, &options(None)).unwrap();
        assert_eq!(loaded.class_names, ["cat", "dog"]);
        assert_eq!(loaded.train.shape, Shape::new(3, 4, 1));
        // File-name order across classes.
        assert_eq!(loaded.train.labels, [0, 1, 0, 1, 0, 1]);
        assert_eq!(loaded.test.labels, [0, 1]);
        assert_eq!(loaded.train.image(1).unwrap(), [200; 12]);
        assert_eq!(loaded.train.image(4).unwrap(), [102; 12]);
        assert_eq!(loaded.report.ignored, 2);
        assert!(loaded.report.split_folders);
    }

    #[test]
    fn without_train_and_test_every_fifth_picture_is_a_test_one() {
        let dir = tempfile::tempdir().unwrap();
        for class in ["a", "b"] {
            for index in 0..10 {
                let path = dir.path().join(class).join(format!("{index:02}.png"));
                grey(&path, 2, 2, index, ImageFormat::Png);
            }
        }
        let loaded = load(dir.path(), &options(None)).unwrap();
        assert_eq!((loaded.train.len(), loaded.test.len()), (16, 4));
        // The 5th and 10th of each class, in name order.
        assert_eq!(loaded.test.image(0).unwrap(), [4; 4]);
        assert_eq!(loaded.test.image(2).unwrap(), [9; 4]);
        assert_eq!(loaded.test.labels, [0, 1, 0, 1]);
        assert!(!loaded.report.split_folders);
    }

    #[test]
    fn every_format_decodes_and_mixed_sizes_and_channels_are_converted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let formats = [
            ("png", ImageFormat::Png),
            ("jpg", ImageFormat::Jpeg),
            ("bmp", ImageFormat::Bmp),
            ("gif", ImageFormat::Gif),
            ("tiff", ImageFormat::Tiff),
            ("webp", ImageFormat::WebP),
            ("pgm", ImageFormat::Pnm),
        ];
        for (extension, format) in formats {
            grey(
                &root.join(format!("grey/{extension}.{extension}")),
                8,
                8,
                128,
                format,
            );
        }
        colour(&root.join("red/wide.png"), 16, 8, [250, 0, 0]);
        colour(&root.join("red/tall.png"), 4, 12, [250, 0, 0]);
        std::fs::create_dir_all(root.join("red")).unwrap();
        RgbaImage::from_pixel(8, 8, Rgba([250, 0, 0, 10]))
            .save(root.join("red/clear.png"))
            .unwrap();
        for fit in [Fit::Stretch, Fit::Crop, Fit::Pad] {
            let shape = Shape::new(8, 8, 3);
            let loaded = load(
                root,
                &FolderOptions {
                    shape: Some(shape),
                    fit,
                    ..FolderOptions::default()
                },
            )
            .unwrap();
            let all: Vec<u16> = loaded
                .train
                .labels
                .iter()
                .chain(&loaded.test.labels)
                .copied()
                .collect();
            assert_eq!(all.len(), 10, "{fit:?}");
            // GIF and WebP store colour even for grey pictures.
            assert_eq!(loaded.report.grey + loaded.report.colour, 10);
            assert!(loaded.report.colour >= 5, "{:?}", loaded.report);
            assert_eq!(loaded.report.transparent, 1);
            assert_eq!(loaded.report.resized, 2);
            // Grey pictures give three equal channels near 128 (JPEG and WebP are lossy).
            let grey_picture = loaded.train.image(0).unwrap();
            assert!(
                grey_picture.iter().all(|&v| v.abs_diff(128) <= 3),
                "{grey_picture:?}"
            );
            // A red picture stays red; with padding the wide one has black bars.
            let red = (0..loaded.train.len())
                .filter(|&i| loaded.train.labels[i] == 1)
                .map(|i| loaded.train.image(i).unwrap())
                .collect::<Vec<_>>();
            for picture in &red {
                let centre = &picture[(4 * 8 + 4) * 3..(4 * 8 + 4) * 3 + 3];
                assert_eq!(centre, [250, 0, 0], "{fit:?}");
            }
            let corners_black = red.iter().any(|picture| picture[..3] == [0, 0, 0]);
            assert_eq!(corners_black, fit == Fit::Pad, "{fit:?}");
        }
        // Grey input: luma of colour pictures.
        let loaded = load(root, &options(Some(Shape::new(8, 8, 1)))).unwrap();
        let red = loaded
            .train
            .labels
            .iter()
            .position(|&label| label == 1)
            .unwrap();
        assert_eq!(loaded.train.image(red).unwrap()[36], 53, "0.2126 x 250");
        // Without an input shape, mixed sizes are an error naming both sizes.
        let message = error(root, &options(None));
        assert!(
            message.contains("different sizes") && message.contains("8x8"),
            "{message}"
        );
        assert!(message.contains("input:8x8x3"), "{message}");
    }

    #[test]
    fn damaged_pictures_are_errors_naming_them_or_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for class in ["a", "b"] {
            for index in 0..3 {
                grey(
                    &root.join(format!("{class}/{index}.png")),
                    5,
                    5,
                    9,
                    ImageFormat::Png,
                );
            }
        }
        let good = root.join("a/photo.jpg");
        RgbImage::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, 7]))
            .save(&good)
            .unwrap();
        let bytes = std::fs::read(&good).unwrap();
        assert!(jpeg_is_complete(&bytes));
        std::fs::write(root.join("a/cut.jpg"), &bytes[..bytes.len() * 2 / 3]).unwrap();
        std::fs::write(root.join("b/fake.png"), "text, not a PNG").unwrap();
        let png = std::fs::read(root.join("a/0.png")).unwrap();
        std::fs::write(root.join("b/short.png"), &png[..png.len() - 20]).unwrap();
        let shape = Some(Shape::new(5, 5, 1));
        let message = error(root, &options(shape));
        assert!(
            message.contains("cut.jpg") && message.contains("cut short"),
            "{message}"
        );
        assert!(message.contains("--skip-damaged"), "{message}");
        let loaded = load(
            root,
            &FolderOptions {
                shape,
                skip_damaged: true,
                ..FolderOptions::default()
            },
        )
        .unwrap();
        let skipped: Vec<String> = loaded
            .report
            .skipped
            .iter()
            .map(|(path, _)| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(skipped, ["cut.jpg", "fake.png", "short.png"]);
        assert_eq!(loaded.train.len() + loaded.test.len(), 7);
        assert!(
            loaded
                .report
                .summary()
                .contains("3 damaged pictures left out")
        );
    }

    #[test]
    fn sets_that_cannot_train_are_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Nothing at all.
        assert!(error(root, &options(None)).contains("holds no class folders"));
        // One class.
        grey(&root.join("only/0.png"), 2, 2, 1, ImageFormat::Png);
        assert!(error(root, &options(None)).contains("a classifier needs at least two classes"));
        // An empty class folder.
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(root.join("empty/readme.md"), "no pictures").unwrap();
        let message = error(root, &options(None));
        assert!(
            message.contains("class `empty` has no training pictures"),
            "{message}"
        );
        // A class only in test/.
        let split = tempfile::tempdir().unwrap();
        for (split_name, class) in [("train", "a"), ("train", "b"), ("test", "a"), ("test", "c")] {
            grey(
                &split.path().join(format!("{split_name}/{class}/0.png")),
                2,
                2,
                1,
                ImageFormat::Png,
            );
        }
        let message = error(split.path(), &options(None));
        assert!(
            message.contains("class `c` has test pictures but no folder of training"),
            "{message}"
        );
        // train/ without test/.
        std::fs::remove_dir_all(split.path().join("test")).unwrap();
        assert!(error(split.path(), &options(None)).contains("has train/ but no test/"));
        // A network input pictures cannot give.
        grey(&root.join("empty/0.png"), 2, 2, 1, ImageFormat::Png);
        assert!(error(root, &options(Some(Shape::new(2, 2, 4)))).contains("4 channels"));
    }

    #[cfg(unix)]
    #[test]
    fn a_class_name_that_is_not_utf8_is_an_error_naming_the_folder() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        grey(&dir.path().join("ok/0.png"), 2, 2, 1, ImageFormat::Png);
        let bad = dir.path().join(OsStr::from_bytes(b"caf\xe9"));
        grey(&bad.join("0.png"), 2, 2, 1, ImageFormat::Png);
        let message = error(dir.path(), &options(None));
        assert!(
            message.contains("not valid UTF-8") && message.contains("caf"),
            "{message}"
        );
    }

    #[test]
    fn a_truncated_jpeg_is_told_from_a_whole_one() {
        assert!(!jpeg_is_complete(&[0xFF, 0xD8, 0xFF, 0xD9]), "no scan");
        assert!(jpeg_is_complete(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 0xFF, 0x00, 2, 0xFF, 0xD9
        ]));
        assert!(!jpeg_is_complete(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 0xFF, 0x00, 2
        ]));
        // An end marker before the last scan (a thumbnail's) does not count.
        assert!(!jpeg_is_complete(&[0xFF, 0xD9, 0xFF, 0xDA, 1, 2]));
    }
}
