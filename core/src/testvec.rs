//! Test vectors: images with the label and the int8 logits the host computed
//! for them, so a device can prove it computes exactly what the host did.
//!
//! `host fixture` writes a file; the firmware embeds it next to the model.
//! The file names its model by the model file's CRC, so vectors of another
//! model are refused with a clear message instead of failing as mismatches.
//! Layout (all little-endian), documented in `FORMAT.md`:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `TCTV` |
//! | 4 | 2 | version `2` |
//! | 6 | 2 | reserved, 0 |
//! | 8 | 4 | number of records `n` |
//! | 12 | 4 | the model file's CRC-32 (its header's bytes 12..16) |
//! | 16 | 4 | image bytes per record `i` (height x width x channels) |
//! | 20 | 2 | logits per record `c` (the classes) |
//! | 22 | 2 | reserved, 0 |
//! | 24 | 4 | CRC-32 of bytes 0..24 and of the records |
//! | 28 | `n x (2 + i + c)` | records: label `u16`, image `u8`s, logits `i8`s |

use crate::error::Error;
use crate::format::{Int8Model, crc32_of};

/// First four bytes of a test-vector file.
pub const MAGIC: [u8; 4] = *b"TCTV";
/// The test-vector format version.
pub const VERSION: u16 = 2;
/// Bytes before the first record.
pub const HEADER_LEN: usize = 28;

/// One test vector, borrowed from the file.
#[derive(Clone, Copy, Debug)]
pub struct TestVector<'a> {
    /// The dataset's label for the image.
    pub label: u16,
    /// The image, 0-255 values, channels-last.
    pub image: &'a [u8],
    logits: &'a [u8],
}

impl<'a> TestVector<'a> {
    /// The int8 logits the host computed.
    pub fn logits(&self) -> impl Iterator<Item = i8> + 'a {
        self.logits.iter().map(|&byte| byte as i8)
    }

    /// Whether `logits` are exactly the host's.
    pub fn matches(&self, logits: &[i8]) -> bool {
        logits.len() == self.logits.len() && self.logits().eq(logits.iter().copied())
    }
}

/// A validated test-vector file.
#[derive(Clone, Copy, Debug)]
pub struct TestVectors<'a> {
    model_crc: u32,
    image_len: usize,
    classes: usize,
    records: &'a [u8],
}

fn u32_at(header: &[u8; HEADER_LEN], at: usize) -> u32 {
    let mut bytes = [0; 4];
    for (byte, &stored) in bytes.iter_mut().zip(header.iter().skip(at)) {
        *byte = stored;
    }
    u32::from_le_bytes(bytes)
}

fn u16_at(header: &[u8; HEADER_LEN], at: usize) -> u16 {
    let mut bytes = [0; 2];
    for (byte, &stored) in bytes.iter_mut().zip(header.iter().skip(at)) {
        *byte = stored;
    }
    u16::from_le_bytes(bytes)
}

impl<'a> TestVectors<'a> {
    /// Validates magic, version, lengths and checksum.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(Error::Truncated {
                needed: HEADER_LEN,
                available: bytes.len(),
            });
        };
        let magic = [header[0], header[1], header[2], header[3]];
        if magic != MAGIC {
            return Err(Error::BadMagic { found: magic });
        }
        let version = u16_at(header, 4);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                newest: VERSION,
            });
        }
        let reserved = u16_at(header, 6) | u16_at(header, 22);
        if reserved != 0 {
            return Err(Error::ReservedByteSet {
                found: (reserved | reserved >> 8) as u8,
            });
        }
        let count = u32_at(header, 8) as usize;
        let image_len = u32_at(header, 16) as usize;
        let classes = usize::from(u16_at(header, 20));
        let record = 2usize.saturating_add(image_len).saturating_add(classes);
        let expected = count.saturating_mul(record);
        if body.len() < expected {
            return Err(Error::Truncated {
                needed: HEADER_LEN.saturating_add(expected),
                available: bytes.len(),
            });
        }
        if body.len() > expected {
            return Err(Error::TrailingBytes {
                extra: body.len() - expected,
            });
        }
        let stored = u32_at(header, 24);
        let computed = crc32_of(&[header.get(..24).unwrap_or(&[]), body]);
        if stored != computed {
            return Err(Error::ChecksumMismatch { stored, computed });
        }
        Ok(Self {
            model_crc: u32_at(header, 12),
            image_len,
            classes,
            records: body,
        })
    }

    /// The CRC of the model file the vectors were written for.
    pub fn model_crc(&self) -> u32 {
        self.model_crc
    }

    /// Checks that the vectors were written for `model`: its CRC, input size
    /// and class count.
    pub fn check_model(&self, model: &Int8Model<'_>) -> Result<(), Error> {
        let architecture = model.architecture();
        let model_crc = model.header().crc;
        if self.model_crc != model_crc
            || self.image_len != architecture.input().values()
            || self.classes != architecture.classes()
        {
            return Err(Error::VectorsForAnotherModel {
                vectors_model: self.model_crc,
                model: model_crc,
            });
        }
        Ok(())
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.records
            .len()
            .checked_div(2 + self.image_len + self.classes)
            .unwrap_or(0)
    }

    /// Whether the file holds no vectors.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The vectors in file order.
    pub fn iter(&self) -> impl Iterator<Item = TestVector<'a>> + 'a {
        let (image_len, classes) = (self.image_len, self.classes);
        self.records
            .chunks_exact(2 + image_len + classes)
            .map(move |record| {
                let (label, rest) = record.split_at(2.min(record.len()));
                let (image, logits) = rest.split_at(image_len.min(rest.len()));
                let label = match *label {
                    [low, high] => u16::from_le_bytes([low, high]),
                    _ => 0,
                };
                TestVector {
                    label,
                    image,
                    logits,
                }
            })
    }
}

/// Appends one record to `out` (host side).
#[cfg(any(feature = "std", test))]
pub fn push_record(out: &mut std::vec::Vec<u8>, label: u16, image: &[u8], logits: &[i8]) {
    out.extend_from_slice(&label.to_le_bytes());
    out.extend_from_slice(image);
    out.extend(logits.iter().map(|&l| l as u8));
}

/// Builds a whole file from records made with [`push_record`] (host side)
/// for the model whose CRC is `model_crc`.
#[cfg(any(feature = "std", test))]
pub fn encode(
    model_crc: u32,
    image_len: usize,
    classes: usize,
    records: &[u8],
) -> Result<std::vec::Vec<u8>, Error> {
    let record = 2 + image_len + classes;
    if !records.len().is_multiple_of(record) {
        return Err(Error::Malformed);
    }
    let count = u32::try_from(records.len() / record).map_err(|_| Error::TooLarge)?;
    let image_len = u32::try_from(image_len).map_err(|_| Error::TooLarge)?;
    let classes = u16::try_from(classes).map_err(|_| Error::TooLarge)?;
    let mut out = std::vec::Vec::with_capacity(HEADER_LEN + records.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&model_crc.to_le_bytes());
    out.extend_from_slice(&image_len.to_le_bytes());
    out.extend_from_slice(&classes.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    let crc = crc32_of(&[&out, records]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(records);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const IMAGE: usize = 12;
    const CLASSES: usize = 3;

    fn file(count: usize) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            let logits: [i8; CLASSES] = core::array::from_fn(|c| (c as i8) - (i as i8));
            push_record(&mut records, i as u16 + 300, &[i as u8; IMAGE], &logits);
        }
        let bytes = encode(0xdead_beef, IMAGE, CLASSES, &records).unwrap();
        // The header as FORMAT.md pins it.
        assert_eq!(
            &bytes[..24],
            &[
                b'T',
                b'C',
                b'T',
                b'V',
                2,
                0,
                0,
                0,
                count as u8,
                0,
                0,
                0,
                0xef,
                0xbe,
                0xad,
                0xde,
                IMAGE as u8,
                0,
                0,
                0,
                CLASSES as u8,
                0,
                0,
                0
            ]
        );
        bytes
    }

    #[test]
    fn round_trip() {
        let bytes = file(3);
        let vectors = TestVectors::from_bytes(&bytes).unwrap();
        assert_eq!(vectors.len(), 3);
        assert_eq!(vectors.model_crc(), 0xdead_beef);
        let second = vectors.iter().nth(1).unwrap();
        assert_eq!(second.label, 301);
        assert_eq!(second.image, &[1u8; IMAGE]);
        assert!(second.matches(&[-1, 0, 1]));
        assert!(!second.matches(&[-1, 0, 2]));
        assert!(!second.matches(&[-1, 0]));
    }

    #[test]
    fn damage_is_rejected() {
        let bytes = file(2);
        for len in 0..bytes.len() {
            assert!(
                TestVectors::from_bytes(&bytes[..len]).is_err(),
                "length {len}"
            );
        }
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(TestVectors::from_bytes(&bad).is_err(), "bit {bit}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            TestVectors::from_bytes(&long).unwrap_err(),
            Error::TrailingBytes { extra: 1 }
        );
        let mut huge = bytes.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            TestVectors::from_bytes(&huge),
            Err(Error::Truncated { .. })
        ));
    }
}
