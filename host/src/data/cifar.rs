//! CIFAR-10 in its binary form (A. Krizhevsky, 2009): the folder `cifar-10-batches-bin/` of the
//! official tarball, read as a [`crate::data::DataSet`], and the extraction of that tarball.
//!
//! Each of the six batch files is a run of 3,073-byte records: the label (0-9), then the 32x32
//! picture as three planes (1,024 red values, 1,024 green, 1,024 blue, each row after row).
//! The planes are interleaved on load into the channels-last layout every [`Split`] has.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tinycnn::arch::Shape;

use super::archive::{CopyError, copy_entry};

use crate::data::idx;
use crate::data::split::Split;

/// The folder the tarball unpacks to, and that a CIFAR-10 data directory holds.
pub const BATCH_DIR: &str = "cifar-10-batches-bin";
/// The training batches, in the order their pictures are concatenated.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch.
pub const TEST_FILE: &str = "test_batch.bin";
/// The class names, one a line, in label order.
pub const META_FILE: &str = "batches.meta.txt";
/// Written beside the batches after extracting a verified archive: the archive's sums and the
/// SHA-256 of each file taken from it. Only the archive's sums are published, so this is what
/// lets a later load tell the canonical files from a modified copy.
pub const VERIFIED_FILE: &str = ".tinycnn-verified";
/// Side of a picture.
pub const SIDE: usize = 32;
/// Colour planes of a picture.
pub const CHANNELS: usize = 3;
/// Values of one colour plane.
const PLANE: usize = SIDE * SIDE;
/// One record: the label byte and the three planes.
pub const RECORD_BYTES: usize = 1 + CHANNELS * PLANE;
/// Number of classes; every label is below it.
pub const CLASSES: usize = 10;
/// The class names `batches.meta.txt` gives, used when it is absent.
pub const CLASS_NAMES: [&str; CLASSES] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
/// Largest batch file taken from an archive: the real ones hold 10,000 records (30.7 MB); an
/// archive entry that claims more is not CIFAR-10's and is not written to disk.
pub const MAX_BATCH_BYTES: u64 = 4 * 10_000 * RECORD_BYTES as u64;
/// Largest `batches.meta.txt` taken from an archive (the real one is 61 bytes).
pub const MAX_META_BYTES: u64 = 64 << 10;
/// Files of the tarball that are not needed and are skipped (its notes on the format).
const SKIPPED_FILES: [&str; 1] = ["readme.html"];

/// The batch files a CIFAR-10 directory needs, training ones first.
pub fn batch_files() -> impl Iterator<Item = &'static str> {
    TRAIN_FILES.into_iter().chain([TEST_FILE])
}

/// The folder of `dir` that holds the batch files: `dir/cifar-10-batches-bin/` (as the tarball
/// unpacks) or `dir` itself, whichever holds any of them.
pub fn batches_dir(dir: &Path) -> Option<PathBuf> {
    [dir.join(BATCH_DIR), dir.to_path_buf()]
        .into_iter()
        .find(|candidate| batch_files().any(|name| candidate.join(name).is_file()))
}

/// Whether `dir` holds a CIFAR-10-format set (or part of one, which loading then reports).
pub fn looks_like_cifar(dir: &Path) -> bool {
    batches_dir(dir).is_some()
}

/// One batch file read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchFile {
    /// The file.
    pub path: PathBuf,
    /// Its pictures.
    pub records: usize,
    /// SHA-256 of its content, when there was a record of the extracted files to compare it
    /// with (hashing 180 MB is otherwise wasted).
    pub sha256: Option<String>,
}

/// What a CIFAR-10-format directory held.
#[derive(Clone, Debug)]
pub struct CifarInfo {
    /// The folder the batch files were read from.
    pub batches: PathBuf,
    /// The six batch files, training ones first.
    pub files: Vec<BatchFile>,
    /// Whether the class names came from `batches.meta.txt` (else the built-in ones).
    pub named_by_meta: bool,
    /// Whether the files are those extracted from the official archive, its MD5 and SHA-256
    /// verified at download.
    pub canonical: bool,
}

impl CifarInfo {
    /// What the files are, in a few words.
    pub fn summary(&self) -> &'static str {
        if self.canonical {
            "canonical CIFAR-10, archive MD5 and SHA-256 verified"
        } else {
            "a CIFAR-10-format set"
        }
    }
}

/// A CIFAR-10-format directory, read.
#[derive(Clone, Debug)]
pub struct LoadedCifar {
    /// The five training batches, in file order.
    pub train: Split,
    /// The test batch.
    pub test: Split,
    /// Ten names, in label order.
    pub class_names: Vec<String>,
    /// Where they came from.
    pub info: CifarInfo,
}

/// A CIFAR-10-format directory that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CifarError {
    /// A batch file is absent.
    #[error(
        "{dir}: {name} not found; a CIFAR-10 directory holds {BATCH_DIR}/ with data_batch_1.bin \
         to data_batch_5.bin and test_batch.bin (as the official binary tarball unpacks)"
    )]
    Missing {
        /// The folder searched.
        dir: PathBuf,
        /// The file.
        name: &'static str,
    },
    /// A file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A batch file is not a whole number of records: cut short, or not a CIFAR-10 batch.
    #[error(
        "{path}: {bytes} bytes is not a whole number of {RECORD_BYTES}-byte CIFAR-10 records \
         (cut short, or not a CIFAR-10 batch file)"
    )]
    Size {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// A record's label is not one of the ten classes.
    #[error("{path}: record {record} has label {label}; CIFAR-10's labels are 0 to 9")]
    Label {
        /// The file.
        path: PathBuf,
        /// The record, from 0.
        record: usize,
        /// The label found.
        label: u8,
    },
    /// `batches.meta.txt` does not name the ten classes.
    #[error("{path}: {problem}; it names the ten classes, one a line")]
    Meta {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Reads the CIFAR-10-format set in `dir` (see [`batches_dir`]).
pub fn load(dir: &Path) -> Result<LoadedCifar, CifarError> {
    let batches = batches_dir(dir).unwrap_or_else(|| dir.join(BATCH_DIR));
    for name in batch_files() {
        if !batches.join(name).is_file() {
            return Err(CifarError::Missing { dir: batches, name });
        }
    }
    let recorded = read_verified(&batches);
    let hash = recorded.is_some();
    let read: Vec<Result<(Split, BatchFile), CifarError>> = batch_files()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|name| read_batch(&batches.join(name), hash))
        .collect();
    let mut splits = Vec::with_capacity(read.len());
    let mut files = Vec::with_capacity(read.len());
    for result in read {
        let (split, file) = result?;
        splits.push(split);
        files.push(file);
    }
    let test = splits.pop().unwrap_or_else(empty_split);
    let train = concatenate(splits);

    let meta = batches.join(META_FILE);
    let (class_names, named_by_meta) = if meta.is_file() {
        (read_meta(&meta)?, true)
    } else {
        (CLASS_NAMES.map(String::from).to_vec(), false)
    };
    // Forging the record is possible, but it only says where the files came from; a changed
    // or swapped file no longer matches it.
    let canonical = recorded.is_some_and(|recorded| {
        recorded.archive_md5 == ARCHIVE_MD5
            && recorded.archive_sha256 == ARCHIVE_SHA256
            && files.iter().all(|file| {
                let name = file.path.file_name().and_then(|name| name.to_str());
                recorded.files.iter().any(|(sum, recorded)| {
                    Some(recorded.as_str()) == name && file.sha256.as_ref() == Some(sum)
                })
            })
    });
    Ok(LoadedCifar {
        train,
        test,
        class_names,
        info: CifarInfo {
            batches,
            files,
            named_by_meta,
            canonical,
        },
    })
}

fn empty_split() -> Split {
    Split {
        shape: Shape::new(SIDE, SIDE, CHANNELS),
        pixels: Vec::new(),
        labels: Vec::new(),
        audio: None,
    }
}

fn concatenate(splits: Vec<Split>) -> Split {
    let mut all = empty_split();
    all.pixels
        .reserve(splits.iter().map(|split| split.pixels.len()).sum());
    for split in splits {
        all.pixels.extend_from_slice(&split.pixels);
        all.labels.extend_from_slice(&split.labels);
    }
    all
}

/// Reads one batch file, its pictures converted to channels last.
fn read_batch(path: &Path, hash: bool) -> Result<(Split, BatchFile), CifarError> {
    let bytes = std::fs::read(path).map_err(|source| CifarError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.is_empty() || bytes.len() % RECORD_BYTES != 0 {
        return Err(CifarError::Size {
            path: path.to_path_buf(),
            bytes: bytes.len() as u64,
        });
    }
    let records = bytes.len() / RECORD_BYTES;
    let mut split = empty_split();
    split.pixels = vec![0; records * CHANNELS * PLANE];
    split.labels.reserve(records);
    for (record, (source, target)) in bytes
        .chunks_exact(RECORD_BYTES)
        .zip(split.pixels.chunks_exact_mut(CHANNELS * PLANE))
        .enumerate()
    {
        let (&label, planes) = source.split_first().unwrap_or((&0, &[]));
        if usize::from(label) >= CLASSES {
            return Err(CifarError::Label {
                path: path.to_path_buf(),
                record,
                label,
            });
        }
        split.labels.push(u16::from(label));
        for (channel, plane) in planes.chunks_exact(PLANE).enumerate() {
            for (at, &value) in plane.iter().enumerate() {
                target[at * CHANNELS + channel] = value;
            }
        }
    }
    let sha256 = hash.then(|| idx::hex(&Sha256::digest(&bytes)));
    Ok((
        split,
        BatchFile {
            path: path.to_path_buf(),
            records,
            sha256,
        },
    ))
}

/// The ten names of `batches.meta.txt` (blank lines, such as the real file's last, aside).
fn read_meta(path: &Path) -> Result<Vec<String>, CifarError> {
    let problem = |problem: String| CifarError::Meta {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|source| CifarError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| problem("not UTF-8 text".into()))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(String::from)
        .collect();
    if names.len() != CLASSES {
        return Err(problem(format!(
            "{} names instead of {CLASSES}",
            names.len()
        )));
    }
    if let Some(twice) = names
        .iter()
        .enumerate()
        .find_map(|(at, name)| names[..at].contains(name).then_some(name))
    {
        return Err(problem(format!("`{twice}` names two classes")));
    }
    Ok(names)
}

/// The official tarball's name.
pub const ARCHIVE: &str = "cifar-10-binary.tar.gz";
/// The official tarball's MD5, as published on the CIFAR page,
/// <https://www.cs.toronto.edu/~kriz/cifar.html>.
pub const ARCHIVE_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// The official tarball's SHA-256, as TensorFlow Datasets pins it for the same URL
/// (`tensorflow_datasets/url_checksums/cifar10.txt`, with its size, 170,052,171 bytes). The
/// CIFAR page publishes only the MD5; both are checked, so neither alone has to be trusted.
pub const ARCHIVE_SHA256: &str = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd";
/// Largest archive accepted (the official one is 170 MB).
pub const MAX_ARCHIVE_BYTES: u64 = 256 << 20;

/// The sums an archive had when it was extracted, and those of the files taken from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The archive's MD5.
    pub archive_md5: String,
    /// The archive's SHA-256.
    pub archive_sha256: String,
    /// (SHA-256, file name) of each batch file.
    pub files: Vec<(String, String)>,
}

impl Verified {
    fn to_text(&self) -> String {
        let mut text = format!(
            "# tinycnn-host extracted these files from an archive with these sums\n\
             archive-md5 {}\narchive-sha256 {}\n",
            self.archive_md5, self.archive_sha256
        );
        for (sum, name) in &self.files {
            text.push_str(&format!("sha256 {sum} {name}\n"));
        }
        text
    }

    fn parse(text: &str) -> Option<Self> {
        let mut verified = Verified {
            archive_md5: String::new(),
            archive_sha256: String::new(),
            files: Vec::new(),
        };
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["archive-md5", sum] => verified.archive_md5 = (*sum).to_string(),
                ["archive-sha256", sum] => verified.archive_sha256 = (*sum).to_string(),
                ["sha256", sum, name] => verified.files.push(((*sum).into(), (*name).into())),
                [] => {}
                _ => return None,
            }
        }
        Some(verified)
    }
}

fn read_verified(batches: &Path) -> Option<Verified> {
    let text = std::fs::read_to_string(batches.join(VERIFIED_FILE)).ok()?;
    Verified::parse(&text)
}

/// Why an archive could not be extracted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The archive is not a gzip-compressed tar file, or is damaged.
    #[error("not a valid tar.gz archive ({0})")]
    Damaged(io::Error),
    /// An entry that CIFAR-10's archive does not have: refused rather than written anywhere.
    #[error("unexpected entry `{0}` (CIFAR-10's archive holds only {BATCH_DIR}/ and its files)")]
    Unexpected(String),
    /// An entry larger than its file can be.
    #[error("entry `{name}` is {bytes} bytes, more than CIFAR-10's file can be ({limit})")]
    TooLarge {
        /// The entry.
        name: String,
        /// Its size.
        bytes: u64,
        /// The most accepted.
        limit: u64,
    },
    /// A file appears twice.
    #[error("entry `{0}` appears twice")]
    Twice(String),
    /// A batch file is not in the archive.
    #[error("the archive lacks {BATCH_DIR}/{0}")]
    Lacks(&'static str),
    /// The target already holds the folder.
    #[error("{0} exists already")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// What was being written.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
}

/// Extracts the CIFAR-10 tarball at `archive` into `dir/cifar-10-batches-bin/`, taking only the
/// batch files and `batches.meta.txt`. The files go into a hidden temporary folder of `dir`,
/// renamed into place once all are written, so an interrupted extraction never leaves a
/// folder that looks complete. `sums` are the archive's, recorded beside the files (see
/// [`VERIFIED_FILE`]). Returns the files written.
pub fn extract(
    archive: &Path,
    dir: &Path,
    sums: (&str, &str),
) -> Result<Vec<PathBuf>, ExtractError> {
    let target = dir.join(BATCH_DIR);
    if target.exists() {
        return Err(ExtractError::Exists(target));
    }
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExtractError::Write { path, source }
    };
    let temporary = tempfile::Builder::new()
        .prefix(&format!(".{BATCH_DIR}."))
        .suffix(".part")
        .tempdir_in(dir)
        .map_err(write_error(dir))?;
    let file = File::open(archive).map_err(ExtractError::Damaged)?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let mut written: Vec<&'static str> = Vec::new();
    let mut hashes = Vec::new();
    for entry in tar.entries().map_err(ExtractError::Damaged)? {
        let mut entry = entry.map_err(ExtractError::Damaged)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let name = raw.strip_prefix("./").unwrap_or(&raw);
        if kind.is_dir() && name.trim_end_matches('/') == BATCH_DIR {
            continue;
        }
        let wanted = name
            .strip_prefix(BATCH_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|file| {
                batch_files()
                    .chain([META_FILE])
                    .chain(SKIPPED_FILES)
                    .find(|known| *known == file)
            });
        let Some(file) = wanted.filter(|_| kind.is_file()) else {
            return Err(ExtractError::Unexpected(raw));
        };
        if SKIPPED_FILES.contains(&file) {
            continue;
        }
        if written.contains(&file) {
            return Err(ExtractError::Twice(raw));
        }
        let limit = if file == META_FILE {
            MAX_META_BYTES
        } else {
            MAX_BATCH_BYTES
        };
        let bytes = entry.size();
        if bytes > limit {
            return Err(ExtractError::TooLarge {
                name: raw,
                bytes,
                limit,
            });
        }
        let path = temporary.path().join(file);
        let mut output = File::create(&path).map_err(write_error(&path))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 64 * 1024];
        copy_entry(&mut entry, limit, &mut output, &mut buffer, |chunk| {
            hasher.update(chunk)
        })
        .map_err(|error| match error {
            CopyError::Read(error) => ExtractError::Damaged(error),
            CopyError::Write(error) => write_error(&path)(error),
        })?;
        output.sync_all().map_err(write_error(&path))?;
        if file != META_FILE {
            hashes.push((idx::hex(&hasher.finalize()), file.to_string()));
        }
        written.push(file);
    }
    if let Some(lacking) = batch_files().find(|name| !written.contains(name)) {
        return Err(ExtractError::Lacks(lacking));
    }
    let record = Verified {
        archive_md5: sums.0.to_string(),
        archive_sha256: sums.1.to_string(),
        files: hashes,
    };
    let marker = temporary.path().join(VERIFIED_FILE);
    std::fs::write(&marker, record.to_text()).map_err(write_error(&marker))?;
    readable_by_all(temporary.path());
    let kept = temporary.keep();
    if let Err(source) = std::fs::rename(&kept, &target) {
        let _ = std::fs::remove_dir_all(&kept);
        return Err(ExtractError::Write {
            path: target,
            source,
        });
    }
    Ok(written.into_iter().map(|name| target.join(name)).collect())
}

/// Temporary folders are created for their owner only; a data folder is for everyone.
fn readable_by_all(folder: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // Best effort: the data is usable by its owner either way.
        let _ = std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o755));
    }
    #[cfg(not(unix))]
    let _ = folder;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::download::{self, ArchiveSums, Dataset, FetchOptions, Silent};
    use crate::data::{DataSet, FolderOptions};

    /// Records per synthetic batch file.
    const RECORDS: usize = 2;

    /// A value of picture `picture` (numbered across all batches) at (`y`, `x`, `channel`) that
    /// differs between channels, rows, columns and pictures.
    fn value(picture: usize, y: usize, x: usize, channel: usize) -> u8 {
        ((picture * 31 + channel * 71 + y * 5 + x * 3) % 256) as u8
    }

    fn label(picture: usize) -> u8 {
        (picture % CLASSES) as u8
    }

    /// Batch `batch` (0-4 training, 5 test) in CIFAR-10's layout: label, then the red, green and
    /// blue planes, each row after row.
    fn batch(batch: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for record in 0..RECORDS {
            let picture = batch * RECORDS + record;
            bytes.push(label(picture));
            for channel in 0..CHANNELS {
                for y in 0..SIDE {
                    for x in 0..SIDE {
                        bytes.push(value(picture, y, x, channel));
                    }
                }
            }
        }
        bytes
    }

    const META: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";

    /// The files of a synthetic set, as (name, content).
    fn files() -> Vec<(&'static str, Vec<u8>)> {
        let mut files: Vec<(&'static str, Vec<u8>)> = batch_files()
            .enumerate()
            .map(|(at, name)| (name, batch(at)))
            .collect();
        files.push((META_FILE, META.as_bytes().to_vec()));
        files
    }

    fn write_set(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, content) in files() {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }

    fn load_set(dir: &Path) -> Result<DataSet, crate::data::DataError> {
        DataSet::load(dir, &FolderOptions::default())
    }

    /// Checks the pictures and labels of a synthetic set as loaded.
    fn check_pictures(data: &DataSet) {
        assert_eq!(data.shape(), Shape::new(32, 32, 3));
        assert_eq!(data.train.len(), 5 * RECORDS);
        assert_eq!(data.test.len(), RECORDS);
        for (split, first) in [(&data.train, 0), (&data.test, 5 * RECORDS)] {
            for index in 0..split.len() {
                let picture = first + index;
                assert_eq!(split.labels[index], u16::from(label(picture)));
                let image = split.image(index).unwrap();
                for (y, x, channel) in [(0, 0, 0), (5, 7, 2), (31, 0, 1), (0, 31, 2), (31, 31, 0)] {
                    assert_eq!(
                        image[(y * 32 + x) * 3 + channel],
                        value(picture, y, x, channel),
                        "picture {picture} at ({y}, {x}, {channel})"
                    );
                }
            }
        }
        // One fixed value, not derived from the helper: the test picture's red at (1, 2) is
        // plane 0, offset 1 * 32 + 2 of the record, and lands at channels-last (1 * 32 + 2) * 3.
        assert_eq!(
            data.test.image(0).unwrap()[(32 + 2) * 3],
            (10 * 31 + 5 + 6) as u8
        );
    }

    #[test]
    fn a_batch_folder_loads_channels_last_with_labels_and_names() {
        let dir = tempfile::tempdir().unwrap();
        write_set(&dir.path().join(BATCH_DIR));
        let data = load_set(dir.path()).unwrap();
        check_pictures(&data);
        assert_eq!(data.class_names, CLASS_NAMES.map(String::from).to_vec());
        let description = data.describe();
        assert!(
            description.contains("a CIFAR-10-format set"),
            "{description}"
        );
        assert!(
            description.contains("10 training and 2 test pictures of 10 classes"),
            "{description}"
        );
        assert!(!data.is_canonical_mnist());
        assert!(data.idx_files().is_empty());
    }

    #[test]
    fn batch_files_directly_in_the_directory_and_names_without_meta() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path());
        let meta = dir.path().join(META_FILE);
        std::fs::write(&meta, "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n").unwrap();
        assert_eq!(load_set(dir.path()).unwrap().class_names[9], "j");
        std::fs::remove_file(&meta).unwrap();
        let data = load_set(dir.path()).unwrap();
        check_pictures(&data);
        assert_eq!(data.class_names, CLASS_NAMES.map(String::from).to_vec());
        assert!(data.describe().contains("no batches.meta.txt"));
    }

    #[test]
    fn damaged_files_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let batches = dir.path().join(BATCH_DIR);
        write_set(&batches);

        let cut = batches.join("data_batch_3.bin");
        let mut bytes = batch(2);
        bytes.pop();
        std::fs::write(&cut, &bytes).unwrap();
        let error = load_set(dir.path()).unwrap_err().to_string();
        assert!(error.contains("data_batch_3.bin"), "{error}");
        assert!(
            error.contains("6145 bytes") && error.contains("3073"),
            "{error}"
        );
        std::fs::write(&cut, []).unwrap();
        assert!(
            load_set(dir.path())
                .unwrap_err()
                .to_string()
                .contains("0 bytes")
        );
        std::fs::write(&cut, batch(2)).unwrap();

        let mut bytes = batch(5);
        bytes[RECORD_BYTES] = 10;
        std::fs::write(batches.join(TEST_FILE), &bytes).unwrap();
        let error = load_set(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("test_batch.bin: record 1 has label 10"),
            "{error}"
        );
        std::fs::write(batches.join(TEST_FILE), batch(5)).unwrap();

        std::fs::write(batches.join(META_FILE), "cat\ndog\n").unwrap();
        let error = load_set(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("batches.meta.txt: 2 names instead of 10"),
            "{error}"
        );
        std::fs::write(batches.join(META_FILE), META).unwrap();

        std::fs::remove_file(batches.join("data_batch_5.bin")).unwrap();
        let error = load_set(dir.path()).unwrap_err().to_string();
        assert!(error.contains("data_batch_5.bin not found"), "{error}");
    }

    /// A gzip-compressed tar file of `entries`: (name, content, kind), each name written into
    /// the header as given (the tar crate's own path setter refuses `..`, which a hostile
    /// archive would not).
    fn tarball(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
        let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(encoder);
        for (name, content, kind) in entries {
            let mut header = tar::Header::new_gnu();
            let field = &mut header.as_old_mut().name;
            field[..name.len()].copy_from_slice(name.as_bytes());
            header.set_entry_type(*kind);
            header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            header.set_size(content.len() as u64);
            if kind.is_symlink() {
                header.set_link_name("/etc/passwd").unwrap();
            }
            header.set_cksum();
            builder.append(&header, *content).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// CIFAR-10's layout: the folder, the batches, the meta file and the readme.
    fn good_tarball() -> Vec<u8> {
        let files = files();
        let names: Vec<String> = files
            .iter()
            .map(|(name, _)| format!("{BATCH_DIR}/{name}"))
            .collect();
        let mut entries: Vec<(&str, &[u8], tar::EntryType)> =
            vec![("cifar-10-batches-bin/", b"", tar::EntryType::Directory)];
        for ((_, content), name) in files.iter().zip(&names) {
            entries.push((name, content, tar::EntryType::Regular));
        }
        entries.push((
            "cifar-10-batches-bin/readme.html",
            b"<html>",
            tar::EntryType::Regular,
        ));
        tarball(&entries)
    }

    fn sums(bytes: &[u8]) -> ArchiveSums {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        download::file_sums(file.path()).unwrap()
    }

    fn options(mirror: String, sums: ArchiveSums) -> FetchOptions {
        let mut options = FetchOptions::for_dataset(Dataset::Cifar10);
        options.mirrors = vec![mirror];
        options.archive_sums = Some(sums);
        options.stall_timeout = std::time::Duration::from_secs(5);
        options
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn a_served_tarball_is_verified_extracted_and_loaded() {
        let archive = good_tarball();
        let mirror = crate::data::loopback::serve(ARCHIVE, archive.clone());
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cifar10");
        let written = crate::data::ensure(
            &dir,
            Dataset::Cifar10,
            Some(&options(mirror, sums(&archive))),
            &mut Silent,
        )
        .unwrap();
        assert_eq!(written.len(), 7, "{written:?}");
        assert_eq!(
            listing(&dir),
            [BATCH_DIR],
            "no archive or partial files are left"
        );
        let mut extracted = listing(&dir.join(BATCH_DIR));
        extracted.retain(|name| name != VERIFIED_FILE);
        let mut expected: Vec<String> = files().iter().map(|(name, _)| name.to_string()).collect();
        expected.sort();
        assert_eq!(extracted, expected, "readme.html is skipped");

        let data = load_set(&dir).unwrap();
        check_pictures(&data);
        assert_eq!(data.class_names[0], "airplane");
        assert!(data.describe().contains("a CIFAR-10-format set"));

        // Present now: nothing is fetched (the mirror is one that cannot answer).
        let again = crate::data::ensure(
            &dir,
            Dataset::Cifar10,
            Some(&options("http://127.0.0.1:1/".into(), sums(&archive))),
            &mut Silent,
        )
        .unwrap();
        assert!(again.is_empty());

        // Files extracted from an archive with the published sums, unchanged since, are the
        // canonical set; one changed byte makes them a CIFAR-10-format set.
        let marker = dir.join(BATCH_DIR).join(VERIFIED_FILE);
        let mut record = Verified::parse(&std::fs::read_to_string(&marker).unwrap()).unwrap();
        assert_eq!(record.files.len(), 6);
        record.archive_md5 = ARCHIVE_MD5.into();
        record.archive_sha256 = ARCHIVE_SHA256.into();
        std::fs::write(&marker, record.to_text()).unwrap();
        let description = load_set(&dir).unwrap().describe();
        assert!(
            description.contains("canonical CIFAR-10, archive MD5"),
            "{description}"
        );
        let mut changed = batch(0);
        changed[100] ^= 1;
        std::fs::write(dir.join(BATCH_DIR).join("data_batch_1.bin"), changed).unwrap();
        assert!(
            load_set(&dir)
                .unwrap()
                .describe()
                .contains("a CIFAR-10-format set")
        );
    }

    #[test]
    fn a_tarball_with_the_wrong_checksum_is_refused() {
        let archive = good_tarball();
        let mirror = crate::data::loopback::serve(ARCHIVE, archive.clone());
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cifar10");
        let mut wrong = sums(&archive);
        wrong.md5 = ARCHIVE_MD5.into();
        let error = crate::data::ensure(
            &dir,
            Dataset::Cifar10,
            Some(&options(mirror, wrong)),
            &mut Silent,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("cifar-10-binary.tar.gz"), "{error}");
        assert!(error.contains("wrong content (MD5"), "{error}");
        assert!(
            error.contains("cifar-10-batches-bin of CIFAR-10's binary tarball"),
            "{error}"
        );
        assert!(!dir.exists(), "left {:?}", listing(&dir));
    }

    #[test]
    fn a_tarball_with_an_unexpected_entry_is_refused_and_writes_nothing() {
        let meta = META.as_bytes();
        let cases: [(&str, tar::EntryType, &str); 4] = [
            (
                "../evil",
                tar::EntryType::Regular,
                "unexpected entry `../evil`",
            ),
            (
                "cifar-10-batches-bin/../../evil",
                tar::EntryType::Regular,
                "unexpected entry",
            ),
            ("/tmp/evil", tar::EntryType::Regular, "unexpected entry"),
            (
                "cifar-10-batches-bin/data_batch_1.bin",
                tar::EntryType::Symlink,
                "unexpected entry",
            ),
        ];
        for (name, kind, reason) in cases {
            let archive = tarball(&[
                (
                    "cifar-10-batches-bin/batches.meta.txt",
                    meta,
                    tar::EntryType::Regular,
                ),
                (name, b"evil", kind),
            ]);
            let mirror = crate::data::loopback::serve(ARCHIVE, archive.clone());
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("cifar10");
            let error = crate::data::ensure(
                &dir,
                Dataset::Cifar10,
                Some(&options(mirror, sums(&archive))),
                &mut Silent,
            )
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("cannot extract cifar-10-binary.tar.gz"),
                "{name}: {error}"
            );
            assert!(error.contains(reason), "{name}: {error}");
            assert!(!dir.exists(), "{name}: left {:?}", listing(&dir));
            assert_eq!(listing(root.path()), Vec::<String>::new(), "{name}");
        }
    }

    #[test]
    fn extraction_refuses_oversized_duplicate_and_incomplete_archives() {
        let root = tempfile::tempdir().unwrap();
        let extract_bytes = |bytes: Vec<u8>| {
            let archive = root.path().join("archive.tar.gz");
            std::fs::write(&archive, bytes).unwrap();
            let dir = root.path().join("out");
            std::fs::create_dir_all(&dir).unwrap();
            let error = extract(&archive, &dir, ("md5", "sha256"))
                .unwrap_err()
                .to_string();
            assert_eq!(listing(&dir), Vec::<String>::new(), "{error}");
            error
        };
        let big = vec![b'x'; MAX_META_BYTES as usize + 1];
        let error = extract_bytes(tarball(&[(
            "cifar-10-batches-bin/batches.meta.txt",
            &big,
            tar::EntryType::Regular,
        )]));
        assert!(
            error.contains("more than CIFAR-10's file can be"),
            "{error}"
        );
        let twice = (
            "cifar-10-batches-bin/test_batch.bin",
            &[0u8; 3073][..],
            tar::EntryType::Regular,
        );
        let error = extract_bytes(tarball(&[twice, twice]));
        assert!(error.contains("appears twice"), "{error}");
        let error = extract_bytes(tarball(&[twice]));
        assert!(
            error.contains("lacks cifar-10-batches-bin/data_batch_1.bin"),
            "{error}"
        );
        let error = extract_bytes(b"not gzip at all".to_vec());
        assert!(error.contains("not a valid tar.gz archive"), "{error}");
    }

    #[test]
    fn no_download_into_a_directory_holding_other_data() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cats")).unwrap();
        let nowhere = options("http://127.0.0.1:1/".into(), sums(b""));
        let fetched =
            crate::data::ensure(dir.path(), Dataset::Cifar10, Some(&nowhere), &mut Silent).unwrap();
        assert!(fetched.is_empty());
        std::fs::remove_dir(dir.path().join("cats")).unwrap();
        std::fs::write(dir.path().join("train-images-idx3-ubyte"), b"").unwrap();
        let fetched =
            crate::data::ensure(dir.path(), Dataset::Cifar10, Some(&nowhere), &mut Silent).unwrap();
        assert!(fetched.is_empty());

        // Nor is MNIST fetched beside CIFAR-10's batches.
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path());
        let mut mnist = FetchOptions::for_dataset(Dataset::Mnist);
        mnist.mirrors = vec!["http://127.0.0.1:1/".into()];
        let fetched =
            crate::data::ensure(dir.path(), Dataset::Mnist, Some(&mnist), &mut Silent).unwrap();
        assert!(fetched.is_empty());
    }
}
