//! Fetching a known data set into an empty data directory: from an ordered list of public
//! mirrors, each file verified before it is renamed into place (an IDX file by the SHA-256 of
//! its decompressed content, CIFAR-10's archive by its MD5 and SHA-256, Speech Commands' by its
//! SHA-256, before it is extracted), so an interrupted or damaged download never leaves a file
//! that looks valid.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::data::audio;
use crate::data::cifar::{self, ExtractError};
use crate::data::idx;
use crate::data::idx::Role;

/// The data sets `host` knows by name: their files' hashes and where to fetch them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Dataset {
    /// The MNIST handwritten digits (Y. LeCun, C. Cortes, C. J. C. Burges).
    #[default]
    Mnist,
    /// Zalando's Fashion-MNIST: clothing in the same format.
    FashionMnist,
    /// CIFAR-10 (A. Krizhevsky): 32x32 colour pictures of ten classes, from its binary tarball.
    Cifar10,
    /// Google's Speech Commands v0.02 (P. Warden): one-second WAV clips of 35 words and
    /// background noise, for keyword spotting, from its tarball.
    SpeechCommands,
}

impl Dataset {
    /// Every known data set.
    pub const ALL: [Dataset; 4] = [
        Dataset::Mnist,
        Dataset::FashionMnist,
        Dataset::Cifar10,
        Dataset::SpeechCommands,
    ];

    /// The name people know it by.
    pub fn title(self) -> &'static str {
        match self {
            Dataset::Mnist => "MNIST",
            Dataset::FashionMnist => "Fashion-MNIST",
            Dataset::Cifar10 => "CIFAR-10",
            Dataset::SpeechCommands => "Speech Commands v0.02",
        }
    }

    /// The data directory used when neither `--data` nor its environment variable is given
    /// (relative to the current directory; `data/*/` is gitignored in the project).
    pub fn default_dir(self) -> &'static str {
        match self {
            Dataset::Mnist => "data/mnist",
            Dataset::FashionMnist => "data/fashion-mnist",
            Dataset::Cifar10 => "data/cifar10",
            Dataset::SpeechCommands => "data/speech-commands",
        }
    }

    /// Whether the set is four MNIST-format IDX files (else an archive: CIFAR-10's or Speech
    /// Commands').
    pub fn is_idx(self) -> bool {
        !matches!(self, Dataset::Cifar10 | Dataset::SpeechCommands)
    }

    /// What a user copies into the data directory instead of downloading.
    pub fn local_copy(self) -> &'static str {
        match self {
            Dataset::Cifar10 => "the folder cifar-10-batches-bin of CIFAR-10's binary tarball",
            Dataset::SpeechCommands => {
                "the extracted speech_commands_v0.02.tar.gz (its word folders, \
                 _background_noise_ and lists)"
            }
            _ => "the four IDX files",
        }
    }

    /// Public mirrors, tried in order: for MNIST and Fashion-MNIST the ones torchvision,
    /// TensorFlow Datasets and Keras use, then the data set's original home, each serving
    /// `NAME.gz` for the four file names; for CIFAR-10 its home, which every library downloads
    /// from (no mirror of it is known to be kept), serving `cifar-10-binary.tar.gz`.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            Dataset::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "https://yann.lecun.com/exdb/mnist/",
            ],
            Dataset::FashionMnist => &[
                "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            ],
            Dataset::Cifar10 => &["https://www.cs.toronto.edu/~kriz/"],
            Dataset::SpeechCommands => &[
                "https://storage.googleapis.com/download.tensorflow.org/data/",
                "http://download.tensorflow.org/data/",
            ],
        }
    }

    /// SHA-256 of an IDX file's decompressed content (none for CIFAR-10, which is no IDX set).
    /// The decompressed bytes are what every mirror shares; the gzip wrappers around them
    /// differ between mirrors and repackagings.
    pub fn sha256(self, role: Role) -> Option<&'static str> {
        let sum = match (self, role) {
            (Dataset::Mnist, Role::TrainImages) => {
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
            }
            (Dataset::Mnist, Role::TrainLabels) => {
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
            }
            (Dataset::Mnist, Role::TestImages) => {
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
            }
            (Dataset::Mnist, Role::TestLabels) => {
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
            }
            (Dataset::FashionMnist, Role::TrainImages) => {
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
            }
            (Dataset::FashionMnist, Role::TrainLabels) => {
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
            }
            (Dataset::FashionMnist, Role::TestImages) => {
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
            }
            (Dataset::FashionMnist, Role::TestLabels) => {
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
            }
            (Dataset::Cifar10 | Dataset::SpeechCommands, _) => return None,
        };
        Some(sum)
    }

    /// The known data set whose `role` file has decompressed hash `sha256`, if any.
    pub fn recognise(role: Role, sha256: &str) -> Option<Dataset> {
        Dataset::ALL
            .into_iter()
            .find(|dataset| dataset.sha256(role) == Some(sha256))
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// How to fetch.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Base URLs tried in order (each followed by the file name).
    pub mirrors: Vec<String>,
    /// Longest wait for a mirror to resolve and accept the connection (including TLS).
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response: a transfer that stalls this long is
    /// abandoned and the file tried again.
    pub stall_timeout: Duration,
    /// Tries per mirror when a transfer breaks off (a refused connection or a wrong file is
    /// not retried on the same mirror).
    pub attempts: usize,
    /// The sums CIFAR-10's archive must have, when not the published ones: for tests, which
    /// serve archives of their own making.
    pub archive_sums: Option<ArchiveSums>,
}

/// An archive's MD5 and SHA-256, in lower-case hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveSums {
    /// MD5.
    pub md5: String,
    /// SHA-256.
    pub sha256: String,
}

impl FetchOptions {
    /// The built-in mirrors of `dataset` with the default timeouts.
    pub fn for_dataset(dataset: Dataset) -> Self {
        Self {
            mirrors: dataset.mirrors().iter().map(|m| m.to_string()).collect(),
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            attempts: 2,
            archive_sums: None,
        }
    }
}

/// What a download shows while it runs.
pub trait FetchProgress {
    /// A transfer of `name` from `url` starts; `total` bytes if the server said.
    fn start(&mut self, name: &str, url: &str, total: Option<u64>);
    /// `bytes` more arrived.
    fn advance(&mut self, bytes: u64);
    /// The transfer ended, `Ok` or with the reason it failed.
    fn finish(&mut self, outcome: Result<(), &str>);
}

/// Shows nothing.
#[derive(Debug)]
pub struct Silent;

impl FetchProgress for Silent {
    fn start(&mut self, _: &str, _: &str, _: Option<u64>) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self, _: Result<(), &str>) {}
}

/// One failed try of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What was fetched.
    pub url: String,
    /// What went wrong.
    pub reason: String,
}

/// Why a data set could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Every mirror failed for one file.
    #[error("{}", all_failed_message(.name, .dir, .failures, .local_copy))]
    AllMirrorsFailed {
        /// The file.
        name: String,
        /// Where it was to go.
        dir: PathBuf,
        /// Each try, in order.
        failures: Vec<Failure>,
        /// What to copy there instead ([`Dataset::local_copy`]).
        local_copy: &'static str,
    },
    /// A verified archive that could not be extracted.
    #[error("cannot extract {name} into {dir}: {source}")]
    Extract {
        /// The archive.
        name: String,
        /// Where it was to go.
        dir: PathBuf,
        /// Why.
        source: ExtractError,
    },
    /// A verified Speech Commands archive that could not be extracted.
    #[error("cannot extract {name} into {dir}: {source}")]
    ExtractAudio {
        /// The archive.
        name: String,
        /// Where it was to go.
        dir: PathBuf,
        /// Why.
        source: audio::ExtractError,
    },
    /// The data directory cannot be created or written.
    #[error(
        "cannot download into {dir}: {source}; point --data at a writable directory, or at a \
         local copy of the data set"
    )]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// No mirror was given.
    #[error("no mirror to download from (--mirror gave none)")]
    NoMirrors,
    /// An archive's data set (CIFAR-10, Speech Commands) is not in the directory, and
    /// downloading is off: the user must point to a copy.
    #[error(
        "no {dataset} in {dir} (it {problem}), and downloading is off (--no-download, or \
         TINYCNN_NO_DOWNLOAD is set): point --data at a directory holding it, as its archive \
         unpacks, or allow the download"
    )]
    Absent {
        /// The data set.
        dataset: Dataset,
        /// The directory.
        dir: PathBuf,
        /// What the directory is instead: missing, empty, or holding something else.
        problem: &'static str,
    },
}

fn all_failed_message(name: &str, dir: &Path, failures: &[Failure], local_copy: &str) -> String {
    let tries: Vec<String> = failures
        .iter()
        .map(|failure| format!("{}: {}", failure.url, failure.reason))
        .collect();
    format!(
        "cannot download {name} into {dir}: {}. Without internet, copy {local_copy} into \
         {dir} or point --data at a local copy; --mirror URL downloads from another mirror",
        tries.join("; "),
        dir = dir.display()
    )
}

/// The files of the set that `dir` lacks (neither `NAME` nor `NAME.gz` is a file there).
pub fn missing(dir: &Path) -> Vec<Role> {
    Role::ALL
        .into_iter()
        .filter(|role| {
            let name = role.file_name();
            !dir.join(name).is_file() && !dir.join(format!("{name}.gz")).is_file()
        })
        .collect()
}

/// Fetches each of `roles` of `dataset` into `dir` (created if needed) as `NAME.gz`, verified;
/// for CIFAR-10, which has no roles, fetches and extracts its archive ([`fetch_cifar10`]).
/// Returns the files written.
pub fn fetch(
    dataset: Dataset,
    dir: &Path,
    roles: &[Role],
    options: &FetchOptions,
    progress: &mut dyn FetchProgress,
) -> Result<Vec<PathBuf>, FetchError> {
    match dataset {
        Dataset::Cifar10 => return fetch_cifar10(dir, options, progress),
        Dataset::SpeechCommands => return fetch_speech_commands(dir, options, progress),
        Dataset::Mnist | Dataset::FashionMnist => {}
    }
    if options.mirrors.is_empty() {
        return Err(FetchError::NoMirrors);
    }
    let created = create_dir(dir)?;
    let agent = agent(options);
    let mut written = Vec::with_capacity(roles.len());
    for &role in roles {
        let name = format!("{}.gz", role.file_name());
        let check = Check::Gzip {
            sha256: dataset.sha256(role).unwrap_or_default(),
        };
        let fetched = fetch_file(&agent, &name, check, dataset, dir, options, progress)
            .and_then(|file| persist(file, &dir.join(&name), dir));
        match fetched {
            Ok(path) => written.push(path),
            Err(error) => {
                // A directory made for nothing is not left behind; one holding the files
                // fetched so far is kept, and the next run fetches only the rest.
                if created && written.is_empty() {
                    let _ = std::fs::remove_dir(dir);
                }
                return Err(error);
            }
        }
    }
    Ok(written)
}

/// Fetches CIFAR-10's binary tarball into a temporary file of `dir` (created if needed),
/// verifies its MD5 and SHA-256 ([`cifar::ARCHIVE_MD5`], [`cifar::ARCHIVE_SHA256`], or
/// `options.archive_sums`), and extracts it ([`cifar::extract`]); the archive itself is not
/// kept. Returns the files written.
pub fn fetch_cifar10(
    dir: &Path,
    options: &FetchOptions,
    progress: &mut dyn FetchProgress,
) -> Result<Vec<PathBuf>, FetchError> {
    let (md5, sha256) = options
        .archive_sums
        .as_ref()
        .map_or((cifar::ARCHIVE_MD5, cifar::ARCHIVE_SHA256), |sums| {
            (sums.md5.as_str(), sums.sha256.as_str())
        });
    let check = Check::Archive { md5, sha256 };
    fetch_archive(
        dir,
        Dataset::Cifar10,
        cifar::ARCHIVE,
        check,
        options,
        progress,
        |archive| {
            cifar::extract(archive, dir, (md5, sha256)).map_err(|source| FetchError::Extract {
                name: cifar::ARCHIVE.to_string(),
                dir: dir.to_path_buf(),
                source,
            })
        },
    )
}

/// Fetches Speech Commands v0.02's tarball into a temporary file beside `dir`, verifies its
/// SHA-256 ([`audio::ARCHIVE_SHA256`], or `options.archive_sums`' SHA-256), and extracts it
/// into `dir` ([`audio::extract`]); the archive itself is not kept. Returns the files written.
pub fn fetch_speech_commands(
    dir: &Path,
    options: &FetchOptions,
    progress: &mut dyn FetchProgress,
) -> Result<Vec<PathBuf>, FetchError> {
    let sha256 = options
        .archive_sums
        .as_ref()
        .map_or(audio::ARCHIVE_SHA256, |sums| sums.sha256.as_str());
    let check = Check::Sha256 { sha256 };
    let dataset = Dataset::SpeechCommands;
    fetch_archive(
        dir,
        dataset,
        audio::ARCHIVE,
        check,
        options,
        progress,
        |archive| {
            audio::extract(archive, dir).map_err(|source| FetchError::ExtractAudio {
                name: audio::ARCHIVE.to_string(),
                dir: dir.to_path_buf(),
                source,
            })
        },
    )
}

/// Fetches `dataset`'s archive `name` into a temporary file of `dir` (created if needed),
/// checked by `check`, and hands its path to `extract`; a directory this call created is
/// removed again when either fails.
fn fetch_archive(
    dir: &Path,
    dataset: Dataset,
    name: &str,
    check: Check<'_>,
    options: &FetchOptions,
    progress: &mut dyn FetchProgress,
    extract: impl FnOnce(&Path) -> Result<Vec<PathBuf>, FetchError>,
) -> Result<Vec<PathBuf>, FetchError> {
    if options.mirrors.is_empty() {
        return Err(FetchError::NoMirrors);
    }
    let created = create_dir(dir)?;
    let agent = agent(options);
    let extracted = fetch_file(&agent, name, check, dataset, dir, options, progress)
        .and_then(|archive| extract(archive.path()));
    if extracted.is_err() && created {
        let _ = std::fs::remove_dir(dir);
    }
    extracted
}

/// Creates `dir` if needed; whether it was created.
fn create_dir(dir: &Path) -> Result<bool, FetchError> {
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|source| FetchError::Directory {
        dir: dir.to_path_buf(),
        source,
    })?;
    Ok(created)
}

/// Renames a verified download into place, readable by all.
fn persist(
    file: tempfile::NamedTempFile,
    target: &Path,
    dir: &Path,
) -> Result<PathBuf, FetchError> {
    readable_by_all(file.as_file());
    file.persist(target)
        .map_err(|error| FetchError::Directory {
            dir: dir.to_path_buf(),
            source: error.error,
        })?;
    Ok(target.to_path_buf())
}

fn agent(options: &FetchOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_resolve(Some(options.connect_timeout))
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_response(Some(options.stall_timeout))
        .timeout_per_read(Some(options.stall_timeout))
        .user_agent(concat!("tinycnn-host/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// What a downloaded file must be.
#[derive(Clone, Copy, Debug)]
enum Check<'a> {
    /// A gzip file whose content has this SHA-256.
    Gzip { sha256: &'a str },
    /// A file with these sums, as downloaded.
    Archive { md5: &'a str, sha256: &'a str },
    /// A file with this SHA-256, as downloaded (Speech Commands' archive).
    Sha256 { sha256: &'a str },
}

impl Check<'_> {
    /// The most bytes accepted: for IDX files the largest, the training images, is 9.9 MB
    /// compressed and 47 MB raw; CIFAR-10's archive is 170 MB. A mirror that sends more is not
    /// serving the data set.
    fn max_bytes(self) -> u64 {
        match self {
            Check::Gzip { .. } => 100 << 20,
            Check::Archive { .. } => cifar::MAX_ARCHIVE_BYTES,
            Check::Sha256 { .. } => audio::MAX_ARCHIVE_BYTES,
        }
    }

    /// `Ok` if the file at `path` is the one expected, else why not.
    fn verify(self, path: &Path) -> Result<(), String> {
        match self {
            Check::Gzip { sha256 } => match decompressed_sha256(path) {
                Ok(found) if found == sha256 => Ok(()),
                Ok(found) => Err(format!(
                    "wrong content (SHA-256 {found} after decompression)"
                )),
                Err(error) => Err(format!("not a valid gzip file ({error})")),
            },
            Check::Archive { md5, sha256 } => match file_sums(path) {
                Ok(found) if found.md5 == md5 && found.sha256 == sha256 => Ok(()),
                Ok(found) => Err(format!(
                    "wrong content (MD5 {}, SHA-256 {}; expected MD5 {md5})",
                    found.md5, found.sha256
                )),
                Err(error) => Err(format!("cannot read the download back ({error})")),
            },
            Check::Sha256 { sha256 } => match file_sums(path) {
                Ok(found) if found.sha256 == sha256 => Ok(()),
                Ok(found) => Err(format!(
                    "wrong content (SHA-256 {}; expected {sha256})",
                    found.sha256
                )),
                Err(error) => Err(format!("cannot read the download back ({error})")),
            },
        }
    }
}

/// How a try ended.
enum Try {
    /// The verified file, still under its temporary name.
    Verified(tempfile::NamedTempFile),
    /// Broken off mid-way: worth another try on the same mirror.
    Transient(String),
    /// Unreachable, refused, or the wrong content: move on to the next mirror.
    Final(String),
}

/// Fetches `name` from the first mirror that serves it as `check` requires; the verified file
/// is returned under its temporary name in `dir`.
fn fetch_file(
    agent: &ureq::Agent,
    name: &str,
    check: Check<'_>,
    dataset: Dataset,
    dir: &Path,
    options: &FetchOptions,
    progress: &mut dyn FetchProgress,
) -> Result<tempfile::NamedTempFile, FetchError> {
    let mut failures = Vec::new();
    for mirror in &options.mirrors {
        let url = format!("{}/{name}", mirror.trim_end_matches('/'));
        for _ in 0..options.attempts.max(1) {
            let outcome = try_once(
                agent,
                &url,
                name,
                dir,
                check,
                options.stall_timeout,
                progress,
            )?;
            let reason = match outcome {
                Try::Verified(file) => return Ok(file),
                Try::Transient(reason) => {
                    failures.push(Failure {
                        url: url.clone(),
                        reason,
                    });
                    continue;
                }
                Try::Final(reason) => reason,
            };
            failures.push(Failure {
                url: url.clone(),
                reason,
            });
            break;
        }
    }
    Err(FetchError::AllMirrorsFailed {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        failures,
        local_copy: dataset.local_copy(),
    })
}

/// One GET of `url` into a temporary file beside the target, then the check.
fn try_once(
    agent: &ureq::Agent,
    url: &str,
    name: &str,
    dir: &Path,
    check: Check<'_>,
    stall: Duration,
    progress: &mut dyn FetchProgress,
) -> Result<Try, FetchError> {
    let response = match agent.get(url).call() {
        Ok(response) => response,
        Err(ureq::Error::StatusCode(code)) => return Ok(Try::Final(format!("HTTP {code}"))),
        Err(error) => return Ok(Try::Final(describe(&error))),
    };
    let total = response
        .headers()
        .get("content-length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|source| FetchError::Directory {
            dir: dir.to_path_buf(),
            source,
        })?;
    progress.start(name, url, total);
    let mut body = response.into_body().into_reader();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut received = 0u64;
    let max_bytes = check.max_bytes();
    loop {
        let count = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                let reason = broken_off(&error, received, total, stall);
                progress.finish(Err(&reason));
                return Ok(Try::Transient(reason));
            }
        };
        file.write_all(&buffer[..count])
            .map_err(|source| FetchError::Directory {
                dir: dir.to_path_buf(),
                source,
            })?;
        received += count as u64;
        progress.advance(count as u64);
        if received > max_bytes {
            let reason = format!("more than {max_bytes} bytes: not the data set's file");
            progress.finish(Err(&reason));
            return Ok(Try::Final(reason));
        }
    }
    if let Some(total) = total.filter(|&total| total != received) {
        let reason = format!("transfer ended after {received} of {total} bytes");
        progress.finish(Err(&reason));
        return Ok(Try::Transient(reason));
    }
    file.flush().map_err(|source| FetchError::Directory {
        dir: dir.to_path_buf(),
        source,
    })?;
    match check.verify(file.path()) {
        Ok(()) => {
            progress.finish(Ok(()));
            Ok(Try::Verified(file))
        }
        Err(reason) => {
            progress.finish(Err(&reason));
            Ok(Try::Final(reason))
        }
    }
}

/// Why a transfer stopped before its end.
fn broken_off(error: &io::Error, received: u64, total: Option<u64>, stall: Duration) -> String {
    let timed_out = error.kind() == io::ErrorKind::TimedOut
        || error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(_)));
    let so_far = match total {
        Some(total) => format!("{received} of {total} bytes"),
        None => format!("{received} bytes"),
    };
    if timed_out {
        format!(
            "timed out: no data for {} s after {so_far}",
            stall.as_secs()
        )
    } else {
        format!("transfer ended after {so_far} ({error})")
    }
}

/// Temporary files are created readable by their owner only; a data file is for everyone.
fn readable_by_all(file: &File) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // Best effort: the data is verified and usable either way.
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    #[cfg(not(unix))]
    let _ = file;
}

/// SHA-256 of the decompressed content of the gzip file at `path`, in hex.
fn decompressed_sha256(path: &Path) -> io::Result<String> {
    sha256_of(GzDecoder::new(io::BufReader::new(File::open(path)?)))
}

fn sha256_of(mut content: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut content, &mut hasher)?;
    Ok(idx::hex(&hasher.finalize()))
}

/// The MD5 and SHA-256 of the file at `path`, read once.
pub fn file_sums(path: &Path) -> io::Result<ArchiveSums> {
    let mut file = io::BufReader::new(File::open(path)?);
    let (mut md5, mut sha256) = (Md5::new(), Sha256::new());
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let count = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        md5.update(&buffer[..count]);
        sha256.update(&buffer[..count]);
    }
    Ok(ArchiveSums {
        md5: idx::hex(&md5.finalize()),
        sha256: idx::hex(&sha256.finalize()),
    })
}

/// Whether the file of `role` in `dir` (`NAME` or `NAME.gz`) is `dataset`'s.
pub fn is_dataset_file(dataset: Dataset, role: Role, dir: &Path) -> bool {
    let name = role.file_name();
    let gzipped = dir.join(format!("{name}.gz"));
    let found = if gzipped.is_file() {
        decompressed_sha256(&gzipped)
    } else {
        File::open(dir.join(name)).and_then(|file| sha256_of(io::BufReader::new(file)))
    };
    found.is_ok_and(|sha256| Some(sha256.as_str()) == dataset.sha256(role))
}

/// A progress bar per file on the terminal's standard error (hidden when it is not a
/// terminal), and a line per failed try.
#[derive(Debug, Default)]
pub struct BarProgress {
    bar: Option<indicatif::ProgressBar>,
    /// Where bars draw; stderr when `None`.
    pub(crate) target: Option<fn() -> indicatif::ProgressDrawTarget>,
}

/// The bar's layout: the bar takes what the text leaves, so that the longest file name and
/// sizes fit 80 columns.
const BAR_TEMPLATE: &str = "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";

impl FetchProgress for BarProgress {
    fn start(&mut self, name: &str, url: &str, total: Option<u64>) {
        let target = self
            .target
            .map_or_else(indicatif::ProgressDrawTarget::stderr, |make| make());
        let bar = indicatif::ProgressBar::with_draw_target(total, target);
        let style = indicatif::ProgressStyle::with_template(BAR_TEMPLATE)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(name.to_string());
        bar.println(format!("downloading {url}"));
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn finish(&mut self, outcome: Result<(), &str>) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            match outcome {
                Ok(()) => eprintln!(
                    "{}: {} bytes, checksums verified",
                    bar.message(),
                    bar.position()
                ),
                Err(reason) => eprintln!("{}: {reason}", bar.message()),
            }
        }
    }
}

/// A transport error in a few words.
fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(what) => format!("timed out ({what})"),
        ureq::Error::HostNotFound => "host not found (no network, or no DNS?)".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::Io(error) => error.to_string(),
        other => other.to_string(),
    }
}
