//! One data set whatever its source: pictures of one shape with a class each, a training and a
//! test split, and the classes' names. Training, evaluation, export (calibration) and the test
//! vectors take a [`DataSet`]; the readers of each source ([`crate::data::mnist`] for IDX files,
//! [`crate::data::folders`] for folders of pictures) build one.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tinycnn::arch::Shape;

use crate::data::audio::{self, AudioError, AudioReport};
use crate::data::cifar::CifarError;
use crate::data::cifar::{self, CifarInfo};
use crate::data::folders::FolderError;
use crate::data::folders::{self, FolderOptions, FolderReport};
use crate::data::mnist::{self, FileInfo, Mnist, MnistError};
pub use crate::data::split::Split;

/// Whether `name` is only `class`'s number: what a set without names (IDX files) calls its
/// classes, and what is shown for a model that names none.
pub fn is_number_name(class: usize, name: &str) -> bool {
    name == class.to_string()
}

/// A data directory that cannot be used, whatever it holds.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// MNIST-format IDX files.
    #[error(transparent)]
    Mnist(#[from] MnistError),
    /// Folders of pictures.
    #[error(transparent)]
    Folders(#[from] FolderError),
    /// A CIFAR-10-format directory.
    #[error(transparent)]
    Cifar(#[from] CifarError),
    /// A keyword set of WAV clips.
    #[error(transparent)]
    Audio(#[from] AudioError),
}

/// Where a data set's pictures came from.
#[derive(Clone, Debug)]
pub enum Origin {
    /// The four IDX files of an MNIST-format directory.
    Idx(Vec<FileInfo>),
    /// Folders of pictures, one per class.
    Folders(FolderReport),
    /// CIFAR-10's binary batch files.
    Cifar10(CifarInfo),
    /// WAV clips in Speech Commands' layout, as their audio features.
    Audio(AudioReport),
    /// Pictures a program made ([`DataSet::in_memory`]).
    Memory,
}

/// A loaded data set.
#[derive(Clone, Debug)]
pub struct DataSet {
    /// The directory it was read from.
    pub dir: PathBuf,
    /// Pictures to train on.
    pub train: Split,
    /// Pictures to report the accuracy on.
    pub test: Split,
    /// Pictures to choose between epochs with, when the set has its own (a `val/` folder).
    pub validation: Option<Split>,
    /// One name per class, in class order.
    pub class_names: Vec<String>,
    /// Where the pictures came from.
    pub origin: Origin,
}

impl DataSet {
    /// Reads the data set in `dir`: CIFAR-10 when it holds CIFAR-10's batch files (directly or
    /// in `cifar-10-batches-bin/`), an MNIST-format directory when it holds IDX files (or no
    /// folder), else folders of pictures (converted as `options` say). CIFAR-10 and IDX files
    /// are read as they are: `options` apply to folders only.
    pub fn load(dir: &Path, options: &FolderOptions) -> Result<Self, DataError> {
        // Before the folder test: CIFAR-10's batches are in a folder of their own.
        if cifar::looks_like_cifar(dir) {
            let loaded = cifar::load(dir)?;
            return Ok(DataSet {
                dir: dir.to_path_buf(),
                train: loaded.train,
                test: loaded.test,
                validation: None,
                class_names: loaded.class_names,
                origin: Origin::Cifar10(loaded.info),
            });
        }
        if !folders::looks_like_idx(dir) && audio::looks_like_speech_commands(dir) {
            let front_end = options
                .front_end
                .unwrap_or(tinycnn::audio::FrontEndConfig::MLPERF_KWS_INT16);
            let loaded = audio::load(dir, front_end, audio::CLIP_SAMPLES)?;
            return Ok(DataSet {
                dir: dir.to_path_buf(),
                train: loaded.train,
                test: loaded.test,
                validation: loaded.validation,
                class_names: loaded.class_names,
                origin: Origin::Audio(loaded.report),
            });
        }
        // A directory without folders is read as IDX files, whose errors say what it lacks.
        if folders::looks_like_idx(dir) || !folders::has_folders(dir) {
            Ok(Self::from_idx(Mnist::load(dir)?))
        } else {
            let loaded = folders::load(dir, options)?;
            Ok(DataSet {
                dir: dir.to_path_buf(),
                train: loaded.train,
                test: loaded.test,
                validation: loaded.validation,
                class_names: loaded.class_names,
                origin: Origin::Folders(loaded.report),
            })
        }
    }

    /// The set of an MNIST-format directory; its classes are named by their numbers.
    pub fn from_idx(mnist: Mnist) -> Self {
        let classes = mnist.classes();
        let Mnist {
            dir,
            train,
            test,
            files,
        } = mnist;
        DataSet {
            dir,
            train,
            test,
            validation: None,
            class_names: (0..classes).map(|class| class.to_string()).collect(),
            origin: Origin::Idx(files),
        }
    }

    /// A set of pictures a program made, with `class_names` (as many as the labels need).
    pub fn in_memory(train: Split, test: Split, class_names: Vec<String>) -> Self {
        DataSet {
            dir: PathBuf::new(),
            train,
            test,
            validation: None,
            class_names,
            origin: Origin::Memory,
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }

    /// Every picture's shape.
    pub fn shape(&self) -> Shape {
        self.train.shape
    }

    /// The audio front end whose features the set holds (a keyword set), else `None`.
    pub fn front_end(&self) -> Option<tinycnn::audio::FrontEndConfig> {
        self.train.front_end()
    }

    /// The IDX files read, if the set is an MNIST-format directory.
    pub fn idx_files(&self) -> &[FileInfo] {
        match &self.origin {
            Origin::Idx(files) => files,
            Origin::Folders(_) | Origin::Cifar10(_) | Origin::Audio(_) | Origin::Memory => &[],
        }
    }

    /// Whether the pictures are canonical MNIST's.
    pub fn is_canonical_mnist(&self) -> bool {
        mnist::is_canonical_mnist(self.idx_files())
    }

    /// SHA-256 of the pictures, labels and class names as loaded: equal for two loads exactly
    /// when training would see the same data.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update((self.class_names.len() as u64).to_le_bytes());
        for name in &self.class_names {
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
        }
        self.train.hash_into(&mut hasher);
        self.test.hash_into(&mut hasher);
        // Sets without validation pictures hash as they did before there could be any.
        if let Some(validation) = &self.validation {
            validation.hash_into(&mut hasher);
        }
        crate::data::idx::hex(&hasher.finalize())
    }

    /// One line that says what was loaded.
    pub fn describe(&self) -> String {
        match &self.origin {
            Origin::Idx(files) => mnist::describe(&self.dir, &self.train, &self.test, files),
            Origin::Folders(report) => format!(
                "{}: {} training and {} test pictures of {} classes, converted to {} ({})",
                self.dir.display(),
                self.train.len(),
                self.test.len(),
                self.classes(),
                self.shape(),
                report.summary()
            ),
            Origin::Cifar10(info) => format!(
                "{}: {} training and {} test pictures of {} classes, {} ({}{})",
                info.batches.display(),
                self.train.len(),
                self.test.len(),
                self.classes(),
                self.shape(),
                info.summary(),
                if info.named_by_meta {
                    ""
                } else {
                    "; no batches.meta.txt, classes named as CIFAR-10's"
                }
            ),
            Origin::Audio(report) => format!(
                "{}: {} training and {} test clips of {} classes ({}), as {} features{} ({})",
                self.dir.display(),
                self.train.len(),
                self.test.len(),
                self.classes(),
                self.class_names.join(", "),
                self.shape(),
                self.front_end()
                    .map_or_else(String::new, |front_end| format!(
                        " of the {}-bit FFT",
                        front_end.fft_arithmetic.bits()
                    )),
                report.summary()
            ),
            Origin::Memory => format!(
                "{} training and {} test pictures of {} classes, {}",
                self.train.len(),
                self.test.len(),
                self.classes(),
                self.shape()
            ),
        }
    }
}
