//! An MNIST-format data set: the four IDX files of a directory, checked against each other and
//! recognised, when they are MNIST or Fashion-MNIST, by their SHA-256 sums.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::download::Dataset;
pub use crate::data::idx::Role;
use crate::data::idx::{self, IdxError};
pub use crate::data::split::Split;
use tinycnn::arch::Shape;

/// Side of an image the network accepts.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "MNIST_DIR";

/// Where a file came from and what it hashes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Its role in the set.
    pub role: Role,
    /// The file read.
    pub path: PathBuf,
    /// SHA-256 of its decompressed content.
    pub sha256: String,
    /// Whether that is the canonical MNIST file's hash.
    pub canonical: bool,
}

/// A loaded, validated data set.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// The directory it was read from.
    pub dir: PathBuf,
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
    /// The four files, in [`Role::ALL`] order.
    pub files: Vec<FileInfo>,
}

impl Mnist {
    /// Number of classes: one more than the largest label of either split, and at least
    /// [`idx::MIN_CLASSES`] (ten, the digits).
    pub fn classes(&self) -> usize {
        let largest = self.train.labels.iter().chain(&self.test.labels).max();
        largest
            .map_or(0, |&label| usize::from(label) + 1)
            .max(crate::data::idx::MIN_CLASSES)
    }

    /// Whether all four files are those of the canonical MNIST distribution.
    pub fn is_canonical_mnist(&self) -> bool {
        is_canonical_mnist(&self.files)
    }

    /// The known data set all four files belong to, if they do.
    pub fn known_dataset(&self) -> Option<Dataset> {
        known_dataset(&self.files)
    }

    /// One line that says what was loaded.
    pub fn describe(&self) -> String {
        describe(&self.dir, &self.train, &self.test, &self.files)
    }

    /// Load and validate the four files of `dir`, each as `NAME` or `NAME.gz`.
    ///
    /// The four files are decompressed in parallel.
    pub fn load(dir: &Path) -> Result<Self, MnistError> {
        let paths = locate_files(dir)?;
        let [train_images, train_labels, test_images, test_labels] = &paths;
        let (train_images, train_labels, test_images, test_labels) = std::thread::scope(|scope| {
            let train_images = scope.spawn(|| idx::read_images(train_images));
            let test_images = scope.spawn(|| idx::read_images(test_images));
            let train_labels = idx::read_labels(train_labels);
            let test_labels = idx::read_labels(test_labels);
            (
                join(train_images),
                train_labels,
                join(test_images),
                test_labels,
            )
        });
        let (train_images, train_labels) = (train_images?, train_labels?);
        let (test_images, test_labels) = (test_images?, test_labels?);

        let hashes = [
            train_images.sha256,
            train_labels.sha256,
            test_images.sha256,
            test_labels.sha256,
        ];
        let mut files = Vec::with_capacity(4);
        for ((role, path), sha256) in Role::ALL.into_iter().zip(paths).zip(hashes) {
            let sha256 = idx::hex(&sha256);
            // A known file in the wrong place (test set as training set, images swapped
            // with each other) would train and evaluate on the wrong data without any error.
            let elsewhere = Role::ALL
                .into_iter()
                .filter(|other| *other != role)
                .find_map(|other| Dataset::recognise(other, &sha256).map(|known| (known, other)));
            if let Some((dataset, actually)) = elsewhere {
                return Err(MnistError::Misplaced {
                    path,
                    role,
                    dataset,
                    actually,
                });
            }
            files.push(FileInfo {
                role,
                canonical: Dataset::Mnist.sha256(role) == Some(sha256.as_str()),
                path,
                sha256,
            });
        }

        let train = split(&files[0], train_images, &files[1], train_labels)?;
        let test = split(&files[2], test_images, &files[3], test_labels)?;
        if test.shape != train.shape {
            return Err(MnistError::ImageSize {
                path: files[2].path.clone(),
                rows: test.shape.height,
                cols: test.shape.width,
                train_rows: train.shape.height,
                train_cols: train.shape.width,
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            train,
            test,
            files,
        })
    }
}

/// Whether `files` are the four files of the canonical MNIST distribution.
pub fn is_canonical_mnist(files: &[FileInfo]) -> bool {
    !files.is_empty() && files.iter().all(|file| file.canonical)
}

/// The known data set all of `files` belong to, if they do.
pub fn known_dataset(files: &[FileInfo]) -> Option<Dataset> {
    Dataset::ALL.into_iter().find(|dataset| {
        files
            .iter()
            .all(|file| dataset.sha256(file.role) == Some(file.sha256.as_str()))
    })
}

/// One line that says what the IDX `files` of `dir` held: the splits' sizes, and whether they
/// are a known set's.
pub fn describe(dir: &Path, train: &Split, test: &Split, files: &[FileInfo]) -> String {
    let origin = match known_dataset(files) {
        Some(dataset) => format!("canonical {dataset}, SHA-256 verified"),
        None => {
            let unknown = files.iter().filter(|file| !file.canonical).count();
            format!(
                "not the canonical MNIST or Fashion-MNIST: {unknown} of 4 files have other \
                 SHA-256 sums than MNIST's (another MNIST-format set, or a modified copy)"
            )
        }
    };
    format!(
        "{}: {} training and {} test images ({origin})",
        dir.display(),
        train.len(),
        test.len()
    )
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn split(
    images_file: &FileInfo,
    images: idx::IdxImages,
    labels_file: &FileInfo,
    labels: idx::IdxLabels,
) -> Result<Split, MnistError> {
    if images.count != labels.labels.len() {
        return Err(MnistError::CountMismatch {
            images: images_file.path.clone(),
            image_count: images.count,
            labels: labels_file.path.clone(),
            label_count: labels.labels.len(),
        });
    }
    Ok(Split {
        shape: Shape::new(images.rows, images.cols, 1),
        pixels: images.pixels,
        labels: labels.labels.into_iter().map(u16::from).collect(),
        audio: None,
    })
}

/// Find the four files, or explain in one line how to provide them.
fn locate_files(dir: &Path) -> Result<[PathBuf; 4], MnistError> {
    let readable = std::fs::read_dir(dir).map(|mut entries| entries.next().is_some());
    match readable {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(MnistError::NoData {
                dir: dir.to_path_buf(),
                problem: "directory does not exist".into(),
            });
        }
        Err(error) => {
            return Err(MnistError::NoData {
                dir: dir.to_path_buf(),
                problem: format!("cannot list the directory: {error}"),
            });
        }
        Ok(false) => {
            return Err(MnistError::NoData {
                dir: dir.to_path_buf(),
                problem: "directory is empty".into(),
            });
        }
        Ok(true) => {}
    }
    let mut found = Vec::with_capacity(4);
    for role in Role::ALL {
        let plain = dir.join(role.file_name());
        let gzipped = dir.join(format!("{}.gz", role.file_name()));
        if gzipped.is_file() {
            found.push(gzipped);
        } else if plain.is_file() {
            found.push(plain);
        } else {
            return Err(MnistError::MissingFile {
                dir: dir.to_path_buf(),
                name: role.file_name(),
            });
        }
    }
    Ok(found
        .try_into()
        .unwrap_or_else(|_| unreachable!("one path per role")))
}

/// An MNIST-format directory that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MnistError {
    /// No data set where one was expected, and downloading is off: the user must point to one.
    #[error(
        "no MNIST-format data in {dir} ({problem}), and downloading is off (--no-download, or \
         TINYCNN_NO_DOWNLOAD is set): point --data or MNIST_DIR at a directory holding the four \
         IDX files, e.g. --data ~/datasets/mnist, or folders of pictures, one per class"
    )]
    NoData {
        /// The directory.
        dir: PathBuf,
        /// Why it holds no data.
        problem: String,
    },
    /// One of the four files is absent.
    #[error(
        "{dir}: {name} (or {name}.gz) not found; an MNIST-format directory holds four IDX files"
    )]
    MissingFile {
        /// The directory.
        dir: PathBuf,
        /// The file name missing.
        name: &'static str,
    },
    /// A file could not be read or is damaged.
    #[error(transparent)]
    Idx(#[from] IdxError),
    /// Test images of another size than the training images.
    #[error(
        "{path}: images are {rows}x{cols} pixels, the training images {train_rows}x{train_cols}"
    )]
    ImageSize {
        /// The test image file.
        path: PathBuf,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Rows of the training images.
        train_rows: usize,
        /// Columns of the training images.
        train_cols: usize,
    },
    /// Image and label files disagree on the number of records.
    #[error("{images} holds {image_count} images but {labels} holds {label_count} labels")]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Images in it.
        image_count: usize,
        /// The label file.
        labels: PathBuf,
        /// Labels in it.
        label_count: usize,
    },
    /// A known data set's file under another file's name.
    #[error("{path}: this is {dataset}'s {actually}, not its {role}")]
    Misplaced {
        /// The file.
        path: PathBuf,
        /// The role its name gives it.
        role: Role,
        /// The data set it belongs to.
        dataset: Dataset,
        /// The role its content has.
        actually: Role,
    },
}

/// Render a one-channel image `width` values wide as rows of right-aligned 0-255 values, as NumPy
/// prints an MNIST array.
pub fn format_image(pixels: &[u8], width: usize) -> String {
    let mut text = String::with_capacity(pixels.len() * 4);
    for row in pixels.chunks(width.max(1)) {
        let cells: Vec<String> = row.iter().map(|value| format!("{value:>3}")).collect();
        text.push_str(&cells.join(" "));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn images(count: u32, side: u32, seed: u8) -> Vec<u8> {
        let mut bytes = idx::IMAGES_MAGIC.to_be_bytes().to_vec();
        for dim in [count, side, side] {
            bytes.extend_from_slice(&dim.to_be_bytes());
        }
        bytes.extend((0..count * side * side).map(|i| (i as u8).wrapping_mul(seed)));
        bytes
    }

    fn labels(count: u32) -> Vec<u8> {
        let mut bytes = idx::LABELS_MAGIC.to_be_bytes().to_vec();
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.extend((0..count).map(|i| (i % 10) as u8));
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// A small set: files given as (role, content, gzip?).
    fn set(files: &[(Role, Vec<u8>, bool)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (role, content, gz) in files {
            let (name, content) = if *gz {
                (format!("{}.gz", role.file_name()), gzip(content))
            } else {
                (role.file_name().to_string(), content.clone())
            };
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        dir
    }

    fn good_set() -> Vec<(Role, Vec<u8>, bool)> {
        vec![
            (Role::TrainImages, images(6, 28, 3), true),
            (Role::TrainLabels, labels(6), false),
            (Role::TestImages, images(4, 28, 5), false),
            (Role::TestLabels, labels(4), true),
        ]
    }

    #[test]
    fn loads_a_mixed_raw_and_gzip_set() {
        let dir = set(&good_set());
        let data = Mnist::load(dir.path()).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (6, 4));
        assert_eq!(
            data.train.image(5).unwrap(),
            &images(6, 28, 3)[16 + 5 * 784..]
        );
        assert_eq!(data.test.labels, [0, 1, 2, 3]);
        assert!(!data.is_canonical_mnist());
        assert!(data.describe().contains("not the canonical MNIST"));
        assert_eq!(data.train.head(2).len(), 2);
        assert_eq!(data.train.head(2).pixels.len(), 2 * IMAGE_PIXELS);
    }

    #[test]
    fn missing_or_empty_directory_says_how_to_point_at_data() {
        let dir = tempfile::tempdir().unwrap();
        for (path, problem) in [
            (dir.path().join("absent"), "does not exist"),
            (dir.path().to_path_buf(), "is empty"),
        ] {
            let message = Mnist::load(&path).unwrap_err().to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(problem), "{message}");
            assert!(message.contains("--data"), "{message}");
            assert!(message.contains("MNIST_DIR"), "{message}");
            assert!(!message.contains('\n'));
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let mut files = good_set();
        files.remove(3);
        let dir = set(&files);
        let message = Mnist::load(dir.path()).unwrap_err().to_string();
        assert!(message.contains("t10k-labels-idx1-ubyte"), "{message}");
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let mut files = good_set();
        files[1].1 = labels(5);
        let dir = set(&files);
        let error = Mnist::load(dir.path()).unwrap_err();
        assert!(
            matches!(error, MnistError::CountMismatch { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("train-images-idx3-ubyte.gz"), "{message}");
        assert!(message.contains("train-labels-idx1-ubyte"), "{message}");
        assert!(message.contains("6 images") && message.contains("5 labels"));
    }

    #[test]
    fn images_of_another_size_are_refused() {
        let mut files = good_set();
        files[2].1 = images(4, 32, 1);
        let dir = set(&files);
        let message = Mnist::load(dir.path()).unwrap_err().to_string();
        assert!(message.contains("32x32"), "{message}");
        assert!(message.contains("t10k-images-idx3-ubyte"), "{message}");
    }

    #[test]
    fn a_damaged_file_is_reported_with_its_path() {
        let mut files = good_set();
        files[0].1.truncate(100);
        let dir = set(&files);
        let error = Mnist::load(dir.path()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, MnistError::Idx(_)), "{error:?}");
        assert!(
            message.contains("train-images-idx3-ubyte.gz: truncated"),
            "{message}"
        );
    }

    #[test]
    fn image_formatting_has_28_rows_of_28_values() {
        let pixels: Vec<u8> = (0..IMAGE_PIXELS).map(|i| (i % 256) as u8).collect();
        let text = format_image(&pixels, IMAGE_SIDE);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 28);
        assert!(rows.iter().all(|row| row.split_whitespace().count() == 28));
        assert_eq!(rows[0].split_whitespace().nth(5), Some("5"));
    }
}
