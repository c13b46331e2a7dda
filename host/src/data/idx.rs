//! Reader for IDX files, the format of MNIST and of the data sets that copy it (Fashion-MNIST,
//! EMNIST digits, ...): a big-endian magic number that gives the element type and the number of
//! dimensions, one big-endian `u32` per dimension, then the elements.
//!
//! Only what MNIST-format sets use is accepted: unsigned bytes, three dimensions for images
//! (`count x rows x cols`), one for labels. Files may be gzip-compressed or raw; the gzip magic
//! bytes decide, not the file name. Every error names the file and says what is wrong, and a
//! header cannot make the reader allocate more than [`MAX_DATA_BYTES`].

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Classes an MNIST-format set has at least: its labels name digits `0..10`, and a set whose
/// labels stop below 9 (a small sample) still has ten. A label above 9 makes more classes (one
/// byte holds up to 256): EMNIST's letters and balanced sets use 27 and 47.
pub const MIN_CLASSES: usize = 10;
/// Largest element payload accepted (256 MiB): five times MNIST's training images, enough for
/// EMNIST digits, and small enough that a damaged header cannot exhaust memory.
pub const MAX_DATA_BYTES: u64 = 256 << 20;
/// Largest image side accepted; MNIST-format images are a few dozen pixels wide.
pub const MAX_IMAGE_SIDE: u32 = 4096;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Memory reserved up front is capped: a truncated file may claim far more than it holds.
const MAX_INITIAL_RESERVE: usize = 16 << 20;

/// The four files of a set, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Training images.
    TrainImages,
    /// Training labels.
    TrainLabels,
    /// Test images.
    TestImages,
    /// Test labels.
    TestLabels,
}

impl Role {
    /// All roles, in the order MNIST lists its files.
    pub const ALL: [Role; 4] = [
        Role::TrainImages,
        Role::TrainLabels,
        Role::TestImages,
        Role::TestLabels,
    ];

    /// File name without the optional `.gz`.
    pub fn file_name(self) -> &'static str {
        match self {
            Role::TrainImages => "train-images-idx3-ubyte",
            Role::TrainLabels => "train-labels-idx1-ubyte",
            Role::TestImages => "t10k-images-idx3-ubyte",
            Role::TestLabels => "t10k-labels-idx1-ubyte",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

/// Images of an IDX file, row-major, one byte per pixel (0 = background, 255 = ink in MNIST).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows of each image.
    pub rows: usize,
    /// Columns of each image.
    pub cols: usize,
    /// `count * rows * cols` pixels, image after image.
    pub pixels: Vec<u8>,
    /// SHA-256 of the decompressed file (header included), as the MNIST checksums list it.
    pub sha256: [u8; 32],
}

impl IdxImages {
    /// Pixels of image `index`, or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let size = self.rows * self.cols;
        self.pixels
            .get(index.checked_mul(size)?..(index + 1).checked_mul(size)?)
    }
}

/// Labels of an IDX file, one byte each: any class `0..=255`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxLabels {
    /// One label per image.
    pub labels: Vec<u8>,
    /// SHA-256 of the decompressed file (header included).
    pub sha256: [u8; 32],
}

/// An IDX file that could not be read, with the file it concerns.
#[derive(Debug)]
pub struct IdxError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub kind: IdxErrorKind,
}

/// What is wrong with an IDX file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdxErrorKind {
    /// The file could not be opened or read.
    #[error("cannot read: {0}")]
    Io(io::Error),
    /// The gzip stream is damaged (bad header, bad deflate data, checksum mismatch).
    #[error("damaged gzip data: {0}")]
    Gzip(io::Error),
    /// The file ends before its header or its data does.
    #[error("truncated: {0}")]
    Truncated(String),
    /// The magic number is not the one expected for this kind of file.
    #[error("wrong magic number 0x{found:08x}, expected 0x{expected:08x} ({what})")]
    WrongMagic {
        /// The magic number read.
        found: u32,
        /// The magic number expected.
        expected: u32,
        /// What the expected magic number stands for.
        what: &'static str,
    },
    /// The header describes a shape this reader refuses (zero or absurd dimensions).
    #[error("bad header: {0}")]
    BadHeader(String),
    /// The file holds more bytes than its header declares.
    #[error("{0} bytes after the data its header declares")]
    TrailingData(String),
}

impl fmt::Display for IdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.kind)
    }
}

impl std::error::Error for IdxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kind.source()
    }
}

/// Read an IDX image file (magic 2051: unsigned bytes, `count x rows x cols`).
pub fn read_images(path: &Path) -> Result<IdxImages, IdxError> {
    let fail = |kind| IdxError {
        path: path.to_path_buf(),
        kind,
    };
    let mut reader = IdxReader::open(path).map_err(fail)?;
    reader
        .expect_magic(IMAGES_MAGIC, "IDX images: unsigned bytes, 3 dimensions")
        .map_err(fail)?;
    let count = reader.read_u32("image count").map_err(fail)?;
    let rows = reader.read_u32("row count").map_err(fail)?;
    let cols = reader.read_u32("column count").map_err(fail)?;
    if count == 0 {
        return Err(fail(IdxErrorKind::BadHeader("holds no images".into())));
    }
    if rows == 0 || cols == 0 || rows > MAX_IMAGE_SIDE || cols > MAX_IMAGE_SIDE {
        return Err(fail(IdxErrorKind::BadHeader(format!(
            "images of {rows}x{cols} pixels (each side must be 1-{MAX_IMAGE_SIDE})"
        ))));
    }
    let data_bytes = u64::from(count) * u64::from(rows) * u64::from(cols);
    let pixels = reader
        .read_data(data_bytes, &format!("{count} images of {rows}x{cols}"))
        .map_err(fail)?;
    let sha256 = reader.finish().map_err(fail)?;
    Ok(IdxImages {
        count: to_usize(count),
        rows: to_usize(rows),
        cols: to_usize(cols),
        pixels,
        sha256,
    })
}

/// Read an IDX label file (magic 2049: unsigned bytes, one dimension); each byte is a class.
pub fn read_labels(path: &Path) -> Result<IdxLabels, IdxError> {
    let fail = |kind| IdxError {
        path: path.to_path_buf(),
        kind,
    };
    let mut reader = IdxReader::open(path).map_err(fail)?;
    reader
        .expect_magic(LABELS_MAGIC, "IDX labels: unsigned bytes, 1 dimension")
        .map_err(fail)?;
    let count = reader.read_u32("label count").map_err(fail)?;
    if count == 0 {
        return Err(fail(IdxErrorKind::BadHeader("holds no labels".into())));
    }
    let labels = reader
        .read_data(u64::from(count), &format!("{count} labels"))
        .map_err(fail)?;
    let sha256 = reader.finish().map_err(fail)?;
    Ok(IdxLabels { labels, sha256 })
}

fn to_usize(value: u32) -> usize {
    // Every supported target has at least 32-bit pointers.
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// A decompressing (if needed), hashing reader over one IDX file.
struct IdxReader {
    inner: Box<dyn Read>,
    gzip: bool,
    hasher: Sha256,
}

impl IdxReader {
    fn open(path: &Path) -> Result<Self, IdxErrorKind> {
        let file = File::open(path).map_err(IdxErrorKind::Io)?;
        let mut buffered = BufReader::with_capacity(1 << 16, file);
        let gzip = {
            let head = io::BufRead::fill_buf(&mut buffered).map_err(IdxErrorKind::Io)?;
            head.starts_with(&GZIP_MAGIC)
        };
        let inner: Box<dyn Read> = if gzip {
            Box::new(BufReader::with_capacity(
                1 << 16,
                MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        Ok(Self {
            inner,
            gzip,
            hasher: Sha256::new(),
        })
    }

    fn read_error(&self, error: io::Error, what: &str) -> IdxErrorKind {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            IdxErrorKind::Truncated(format!("ends inside the {what}"))
        } else if self.gzip {
            IdxErrorKind::Gzip(error)
        } else {
            IdxErrorKind::Io(error)
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), IdxErrorKind> {
        self.inner
            .read_exact(buf)
            .map_err(|error| self.read_error(error, what))?;
        self.hasher.update(&*buf);
        Ok(())
    }

    fn read_u32(&mut self, what: &str) -> Result<u32, IdxErrorKind> {
        let mut bytes = [0; 4];
        self.read_exact(&mut bytes, &format!("header ({what})"))?;
        Ok(u32::from_be_bytes(bytes))
    }

    fn expect_magic(&mut self, expected: u32, what: &'static str) -> Result<(), IdxErrorKind> {
        let found = self.read_u32("magic number")?;
        if found == expected {
            Ok(())
        } else {
            Err(IdxErrorKind::WrongMagic {
                found,
                expected,
                what,
            })
        }
    }

    /// Read exactly `len` data bytes, refusing sizes above [`MAX_DATA_BYTES`] before reading.
    fn read_data(&mut self, len: u64, what: &str) -> Result<Vec<u8>, IdxErrorKind> {
        if len > MAX_DATA_BYTES {
            return Err(IdxErrorKind::BadHeader(format!(
                "{what} would be {len} bytes, more than the {MAX_DATA_BYTES}-byte limit"
            )));
        }
        let expected = usize::try_from(len).map_err(|_| {
            IdxErrorKind::BadHeader(format!("{what} do not fit in this machine's memory"))
        })?;
        let mut data = Vec::with_capacity(expected.min(MAX_INITIAL_RESERVE));
        (&mut self.inner)
            .take(len)
            .read_to_end(&mut data)
            .map_err(|error| self.read_error(error, "data"))?;
        if data.len() < expected {
            return Err(IdxErrorKind::Truncated(format!(
                "header declares {what} ({expected} bytes of data), the file holds {}",
                data.len()
            )));
        }
        self.hasher.update(&data);
        Ok(data)
    }

    /// Check that nothing follows the data (which also makes the gzip decoder verify its CRC)
    /// and return the SHA-256 of everything read.
    fn finish(mut self) -> Result<[u8; 32], IdxErrorKind> {
        let mut extra = [0; 4096];
        let mut trailing: u64 = 0;
        loop {
            match self.inner.read(&mut extra) {
                Ok(0) => break,
                Ok(n) => {
                    trailing += n as u64;
                    // Counting past a few megabytes adds nothing to the message.
                    if trailing > 1 << 22 {
                        return Err(IdxErrorKind::TrailingData(format!("more than {trailing}")));
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.read_error(error, "end of the file")),
            }
        }
        if trailing > 0 {
            return Err(IdxErrorKind::TrailingData(trailing.to_string()));
        }
        Ok(self.hasher.finalize().into())
    }
}

/// Lower-case hexadecimal form of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn images_bytes(count: u32, rows: u32, cols: u32, fill: u8) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
        for dim in [count, rows, cols] {
            bytes.extend_from_slice(&dim.to_be_bytes());
        }
        let len = (count * rows * cols) as usize;
        bytes.extend((0..len).map(|i| fill.wrapping_add(i as u8)));
        bytes
    }

    fn labels_bytes(labels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        bytes.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        bytes.extend_from_slice(labels);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn sha256(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    #[test]
    fn reads_raw_and_gzip_images_identically() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = images_bytes(3, 4, 5, 7);
        let raw = read_images(&write(&dir, "raw", &bytes)).unwrap();
        // The name says raw but the content is gzip: the magic bytes decide.
        let gz = read_images(&write(&dir, "images-no-gz-extension", &gzip(&bytes))).unwrap();
        assert_eq!(raw, gz);
        assert_eq!((raw.count, raw.rows, raw.cols), (3, 4, 5));
        assert_eq!(raw.pixels, bytes[16..]);
        assert_eq!(raw.image(1).unwrap(), &bytes[16 + 20..16 + 40]);
        assert_eq!(raw.image(3), None);
        assert_eq!(raw.sha256, sha256(&bytes));
    }

    #[test]
    fn reads_labels_and_hashes_the_decompressed_content() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = labels_bytes(&[0, 9, 3, 3]);
        let labels = read_labels(&write(&dir, "l.gz", &gzip(&bytes))).unwrap();
        assert_eq!(labels.labels, [0, 9, 3, 3]);
        assert_eq!(labels.sha256, sha256(&bytes));
    }

    fn kind_of(result: Result<impl fmt::Debug, IdxError>, path: &Path) -> IdxErrorKind {
        let error = result.unwrap_err();
        assert_eq!(error.path, path, "the error must name the file");
        let message = error.to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
        assert!(!message.contains('\n'), "one line: {message}");
        error.kind
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        assert!(matches!(
            kind_of(read_images(&path), &path),
            IdxErrorKind::Io(_)
        ));
    }

    #[test]
    fn truncated_data_is_reported_raw_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = images_bytes(10, 28, 28, 0);
        let cut = &bytes[..bytes.len() - 100];
        for (name, content) in [("raw", cut.to_vec()), ("gz", gzip(cut))] {
            let path = write(&dir, name, &content);
            match kind_of(read_images(&path), &path) {
                IdxErrorKind::Truncated(detail) => {
                    assert!(detail.contains("7840 bytes"), "{detail}");
                    assert!(detail.contains("7740"), "{detail}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_header_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = images_bytes(1, 2, 2, 0);
        for len in [0, 3, 4, 11, 15] {
            let path = write(&dir, &format!("cut{len}"), &bytes[..len]);
            assert!(
                matches!(
                    kind_of(read_images(&path), &path),
                    IdxErrorKind::Truncated(_)
                ),
                "length {len}"
            );
        }
    }

    #[test]
    fn gzip_cut_short_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let compressed = gzip(&images_bytes(50, 28, 28, 1));
        for len in [2, 10, compressed.len() / 2, compressed.len() - 4] {
            let path = write(&dir, &format!("cut{len}.gz"), &compressed[..len]);
            let kind = kind_of(read_images(&path), &path);
            assert!(
                matches!(kind, IdxErrorKind::Truncated(_) | IdxErrorKind::Gzip(_)),
                "length {len}: {kind:?}"
            );
        }
    }

    #[test]
    fn wrong_magic_names_both_numbers() {
        let dir = tempfile::tempdir().unwrap();
        // A label file where images are expected, and the reverse.
        let labels = write(&dir, "labels", &labels_bytes(&[1, 2]));
        match kind_of(read_images(&labels), &labels) {
            IdxErrorKind::WrongMagic {
                found, expected, ..
            } => assert_eq!((found, expected), (LABELS_MAGIC, IMAGES_MAGIC)),
            other => panic!("{other:?}"),
        }
        let images = write(&dir, "images", &images_bytes(1, 1, 1, 0));
        assert!(matches!(
            kind_of(read_labels(&images), &images),
            IdxErrorKind::WrongMagic { .. }
        ));
        let text = write(&dir, "text", b"this is not an IDX file at all");
        let message = read_images(&text).unwrap_err().to_string();
        assert!(
            message.contains("wrong magic number 0x74686973"),
            "{message}"
        );
    }

    #[test]
    fn labels_above_nine_are_classes_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "l", &labels_bytes(&[1, 9, 0, 10, 46, 255, 2]));
        assert_eq!(
            read_labels(&path).unwrap().labels,
            [1, 9, 0, 10, 46, 255, 2]
        );
    }

    #[test]
    fn huge_dimensions_are_refused_without_allocating() {
        let dir = tempfile::tempdir().unwrap();
        // 4 billion images of 4096x4096 would be 64 EiB; the header alone is present.
        let mut bytes = IMAGES_MAGIC.to_be_bytes().to_vec();
        for dim in [u32::MAX, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE] {
            bytes.extend_from_slice(&dim.to_be_bytes());
        }
        let path = write(&dir, "huge", &bytes);
        match kind_of(read_images(&path), &path) {
            IdxErrorKind::BadHeader(detail) => assert!(detail.contains("limit"), "{detail}"),
            other => panic!("{other:?}"),
        }
        // Just over the limit in total, with plausible sides.
        let count = (MAX_DATA_BYTES / (28 * 28) + 1) as u32;
        let path = write(&dir, "over", &images_bytes(count, 28, 28, 0)[..16]);
        assert!(matches!(
            kind_of(read_images(&path), &path),
            IdxErrorKind::BadHeader(_)
        ));
        let mut labels = LABELS_MAGIC.to_be_bytes().to_vec();
        labels.extend_from_slice(&u32::MAX.to_be_bytes());
        let path = write(&dir, "labels", &labels);
        assert!(matches!(
            kind_of(read_labels(&path), &path),
            IdxErrorKind::BadHeader(_)
        ));
    }

    #[test]
    fn zero_and_oversized_sides_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (count, rows, cols) in [(0u32, 28u32, 28u32), (1, 0, 28), (1, 28, 0), (1, 5000, 1)] {
            let mut bytes = IMAGES_MAGIC.to_be_bytes().to_vec();
            for dim in [count, rows, cols] {
                bytes.extend_from_slice(&dim.to_be_bytes());
            }
            let path = write(&dir, &format!("{count}-{rows}-{cols}"), &bytes);
            assert!(
                matches!(
                    kind_of(read_images(&path), &path),
                    IdxErrorKind::BadHeader(_)
                ),
                "{count}x{rows}x{cols}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = labels_bytes(&[1, 2, 3]);
        bytes.extend_from_slice(&[0; 5]);
        for (name, content) in [("raw", bytes.clone()), ("gz", gzip(&bytes))] {
            let path = write(&dir, name, &content);
            match kind_of(read_labels(&path), &path) {
                IdxErrorKind::TrailingData(count) => assert_eq!(count, "5"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn gzip_garbage_is_a_gzip_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut compressed = gzip(&images_bytes(20, 28, 28, 3));
        // Keep the gzip magic, damage the deflate stream in the middle.
        let middle = compressed.len() / 2;
        for byte in &mut compressed[middle..middle + 16] {
            *byte ^= 0xa5;
        }
        let path = write(&dir, "damaged.gz", &compressed);
        let kind = kind_of(read_images(&path), &path);
        assert!(
            matches!(kind, IdxErrorKind::Gzip(_) | IdxErrorKind::Truncated(_)),
            "{kind:?}"
        );
        let mut garbage = GZIP_MAGIC.to_vec();
        garbage.extend((0..500u32).map(|i| (i * 7919 % 251) as u8));
        let path = write(&dir, "garbage.gz", &garbage);
        assert!(matches!(
            kind_of(read_images(&path), &path),
            IdxErrorKind::Gzip(_) | IdxErrorKind::Truncated(_)
        ));
    }

    #[test]
    fn gzip_crc_mismatch_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut compressed = gzip(&labels_bytes(&[1, 2, 3, 4]));
        // The CRC-32 of the content sits 8 bytes before the end.
        let crc = compressed.len() - 8;
        compressed[crc] ^= 0xff;
        let path = write(&dir, "crc.gz", &compressed);
        assert!(matches!(
            kind_of(read_labels(&path), &path),
            IdxErrorKind::Gzip(_)
        ));
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}
