//! Test vectors: images with the label and the int8 logits the host computed
//! for them, so a device can prove it computes exactly what the host did.
//!
//! `host fixture` writes a file; the firmware embeds it next to the model.
//! Layout (all little-endian), documented in `FORMAT.md`:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `TCTV` |
//! | 4 | 2 | version `1` |
//! | 6 | 2 | reserved, 0 |
//! | 8 | 4 | number of vectors `n` |
//! | 12 | 4 | CRC-32 of the `n` records |
//! | 16 | `n x 795` | records: label `u8`, 784 pixels `u8`, 10 logits `i8` |

use crate::arch::{CLASSES, INPUT_PIXELS, Image};
use crate::error::Error;
use crate::format::{HEADER_LEN, crc32};

/// First four bytes of a test-vector file.
pub const MAGIC: [u8; 4] = *b"TCTV";
/// The test-vector format version.
pub const VERSION: u16 = 1;
/// Bytes of one record: label, image, logits.
pub const RECORD_LEN: usize = 1 + INPUT_PIXELS + CLASSES;

/// One test vector, borrowed from the file.
#[derive(Clone, Copy, Debug)]
pub struct TestVector<'a> {
    /// The dataset's label for the image.
    pub label: u8,
    /// The image, 0-255 pixels.
    pub image: &'a Image,
    /// The int8 logits the host computed.
    pub logits: [i8; CLASSES],
}

/// A validated test-vector file.
#[derive(Clone, Copy, Debug)]
pub struct TestVectors<'a> {
    records: &'a [[u8; RECORD_LEN]],
}

impl<'a> TestVectors<'a> {
    /// Validates magic, version, length and checksum.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(Error::Truncated {
                needed: HEADER_LEN,
                available: bytes.len(),
            });
        };
        let [
            m0,
            m1,
            m2,
            m3,
            v0,
            v1,
            r0,
            r1,
            n0,
            n1,
            n2,
            n3,
            c0,
            c1,
            c2,
            c3,
        ] = *header;
        if [m0, m1, m2, m3] != MAGIC {
            return Err(Error::BadMagic {
                found: [m0, m1, m2, m3],
            });
        }
        let version = u16::from_le_bytes([v0, v1]);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        if r0 != 0 || r1 != 0 {
            return Err(Error::ReservedByteSet { found: r0 | r1 });
        }
        let count = usize::try_from(u32::from_le_bytes([n0, n1, n2, n3])).unwrap_or(usize::MAX);
        let expected = count.saturating_mul(RECORD_LEN);
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
        let stored = u32::from_le_bytes([c0, c1, c2, c3]);
        let computed = crc32(body);
        if stored != computed {
            return Err(Error::ChecksumMismatch { stored, computed });
        }
        let (records, _) = body.as_chunks::<RECORD_LEN>();
        Ok(Self { records })
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the file holds no vectors.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The vectors in file order.
    pub fn iter(&self) -> impl Iterator<Item = TestVector<'a>> + 'a {
        self.records.iter().map(|record| {
            let (&[label], rest) = record.split_first_chunk::<1>().unwrap_or((&[0], &[]));
            let (image, logits) = rest
                .split_first_chunk::<INPUT_PIXELS>()
                .unwrap_or((&[0; INPUT_PIXELS], &[]));
            let mut values = [0i8; CLASSES];
            for (value, &byte) in values.iter_mut().zip(logits) {
                *value = byte as i8;
            }
            TestVector {
                label,
                image,
                logits: values,
            }
        })
    }
}

/// Appends one record to `out` (host side).
#[cfg(any(feature = "std", test))]
pub fn push_record(out: &mut std::vec::Vec<u8>, label: u8, image: &Image, logits: &[i8; CLASSES]) {
    out.push(label);
    out.extend_from_slice(image);
    out.extend(logits.iter().map(|&l| l as u8));
}

/// Builds a whole file from records made with [`push_record`] (host side).
#[cfg(any(feature = "std", test))]
pub fn encode(records: &[u8]) -> Result<std::vec::Vec<u8>, Error> {
    if !records.len().is_multiple_of(RECORD_LEN) {
        return Err(Error::Malformed);
    }
    let count = u32::try_from(records.len() / RECORD_LEN).map_err(|_| Error::TooLarge)?;
    let mut out = std::vec::Vec::with_capacity(HEADER_LEN + records.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&crc32(records).to_le_bytes());
    out.extend_from_slice(records);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn file(count: usize) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            let logits: [i8; CLASSES] = core::array::from_fn(|c| (c as i8) - (i as i8));
            push_record(
                &mut records,
                i as u8 % 10,
                &[i as u8; INPUT_PIXELS],
                &logits,
            );
        }
        let bytes = encode(&records).unwrap();
        // The header as FORMAT.md pins it.
        assert_eq!(
            &bytes[..12],
            &[b'T', b'C', b'T', b'V', 1, 0, 0, 0, count as u8, 0, 0, 0]
        );
        bytes
    }

    #[test]
    fn round_trip() {
        let bytes = file(3);
        let vectors = TestVectors::from_bytes(&bytes).unwrap();
        assert_eq!(vectors.len(), 3);
        let second = vectors.iter().nth(1).unwrap();
        assert_eq!(second.label, 1);
        assert_eq!(second.image, &[1u8; INPUT_PIXELS]);
        assert_eq!(second.logits, [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
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
