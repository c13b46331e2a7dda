//! Test vectors: images with the label and the outputs the host computed for
//! them, so a device (or another implementation of the format) can prove it
//! computes what the host did: int8 outputs byte for byte, f32 outputs by
//! value within [`F32_TOLERANCE`].
//!
//! `host fixture` writes a file; the firmware embeds it next to the model.
//! The file names its model by the model file's CRC, so vectors of another
//! model are refused with a clear message instead of failing as mismatches.
//! Layout (all little-endian), documented in `FORMAT.md`:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `TCTV` |
//! | 4 | 2 | version: `2` (int8 outputs only), `3`, or `4` (audio clips) |
//! | 6 | 2 | versions 3 and 4: the outputs' encoding, `1` f32 or `2` int8; version 2: reserved, 0 |
//! | 8 | 4 | number of records `n` |
//! | 12 | 4 | the model file's CRC-32 (its header's bytes 12..16) |
//! | 16 | 4 | input bytes per record `i`: the image's (height x width x channels), or (version 4) twice the clip's samples |
//! | 20 | 2 | outputs per record `c` |
//! | 22 | 2 | reserved, 0 |
//! | 24 | 4 | CRC-32 of bytes 0..24 and of the records |
//! | 28 | `n x (2 + i + c x w)` | records: label `u16`, image `u8`s (version 4: clip `i16`s), outputs (`w` = 1 for int8, 4 for f32) |
//!
//! int8 vectors are written as version 2, which every earlier reader reads;
//! f32 vectors need version 3. Version 4 holds raw 16-bit audio clips instead
//! of images, for a model with an audio front end (format version 5 or 6): a
//! device runs the clip through the front end the model records, then the
//! network, and must get the recorded outputs.

use crate::error::Error;
use crate::format::{F32Model, Flavour, Int8Model, crc32_of};
use crate::kernels::argmax_of;

/// First four bytes of a test-vector file.
pub const MAGIC: [u8; 4] = *b"TCTV";
/// The newest test-vector format version, the one f32 vectors are written in.
pub const VERSION: u16 = 3;
/// The version int8 vectors are written in: version 2 holds them the same way.
pub const INT8_VERSION: u16 = 2;
/// The version whose records hold audio clips (16-bit samples, little-endian) for a model
/// with an audio front end, in either flavour; the newest.
pub const CLIP_VERSION: u16 = 4;
/// Bytes before the first record.
pub const HEADER_LEN: usize = 28;
/// How far an f32 output may lie from the recorded one, relative to the
/// image's largest recorded output magnitude (at least 1): f32 sums are not
/// bit-exact across kernels (see `FORMAT.md`, "f32").
pub const F32_TOLERANCE: f32 = 1e-4;

/// Bytes one output takes in a record of `flavour`.
const fn output_width(flavour: Flavour) -> usize {
    match flavour {
        Flavour::F32 => 4,
        Flavour::Int8 => 1,
    }
}

/// One test vector, borrowed from the file.
#[derive(Clone, Copy, Debug)]
pub struct TestVector<'a> {
    /// The dataset's label for the image.
    pub label: u16,
    /// The image, 0-255 values, channels-last; in a version 4 file the clip's bytes (see
    /// [`TestVector::samples`]).
    pub image: &'a [u8],
    flavour: Flavour,
    outputs: &'a [u8],
}

impl<'a> TestVector<'a> {
    /// The clip's samples, of a version 4 file (of any other, the image's bytes in pairs).
    pub fn samples(&self) -> impl Iterator<Item = i16> + 'a {
        let (pairs, _) = self.image.as_chunks::<2>();
        pairs.iter().map(|&pair| i16::from_le_bytes(pair))
    }
}

impl<'a> TestVector<'a> {
    /// Whether the recorded outputs are int8 or f32.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// The int8 outputs the host computed (none for f32 vectors).
    pub fn logits(&self) -> impl Iterator<Item = i8> + 'a {
        let int8 = match self.flavour {
            Flavour::Int8 => self.outputs,
            Flavour::F32 => &[],
        };
        int8.iter().map(|&byte| byte as i8)
    }

    /// The f32 outputs the host computed (none for int8 vectors).
    pub fn f32_outputs(&self) -> impl Iterator<Item = f32> + 'a {
        let f32s = match self.flavour {
            Flavour::F32 => self.outputs,
            Flavour::Int8 => &[],
        };
        f32s.chunks_exact(4).map(|bytes| match *bytes {
            [a, b, c, d] => f32::from_le_bytes([a, b, c, d]),
            _ => f32::NAN,
        })
    }

    /// Whether `logits` are exactly the host's int8 outputs (false for f32
    /// vectors).
    pub fn matches(&self, logits: &[i8]) -> bool {
        self.flavour == Flavour::Int8
            && logits.len() == self.outputs.len()
            && self.logits().eq(logits.iter().copied())
    }

    /// Whether `outputs` match the host's f32 outputs (false for int8
    /// vectors): each within [`F32_TOLERANCE`] `x max(1, largest |recorded
    /// output|)` of the recorded one, a NaN only where a NaN was recorded,
    /// and the same predicted class.
    pub fn matches_f32(&self, outputs: &[f32]) -> bool {
        if self.flavour != Flavour::F32 || outputs.len() * 4 != self.outputs.len() {
            return false;
        }
        let largest = self
            .f32_outputs()
            .filter(|value| value.is_finite())
            .fold(1.0f32, |largest, value| largest.max(value.abs()));
        let bound = F32_TOLERANCE * largest;
        let close = self
            .f32_outputs()
            .zip(outputs)
            .all(|(recorded, &computed)| {
                if recorded.is_nan() || computed.is_nan() {
                    recorded.is_nan() && computed.is_nan()
                } else if recorded.is_infinite() || computed.is_infinite() {
                    recorded == computed
                } else {
                    (recorded - computed).abs() <= bound
                }
            });
        close && argmax_of(self.f32_outputs()) == argmax_of(outputs.iter().copied())
    }
}

/// A validated test-vector file.
#[derive(Clone, Copy, Debug)]
pub struct TestVectors<'a> {
    model_crc: u32,
    /// Version 4: the records hold clips.
    clips: bool,
    image_len: usize,
    outputs: usize,
    flavour: Flavour,
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
    /// Validates magic, version, the outputs' encoding, lengths and
    /// checksum, in that order (see `FORMAT.md`).
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
        if version != INT8_VERSION && version != VERSION && version != CLIP_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                newest: CLIP_VERSION,
            });
        }
        // Version 2 reserved the field that version 3 uses for the outputs'
        // encoding.
        let reserved = if version == INT8_VERSION {
            u16_at(header, 6) | u16_at(header, 22)
        } else {
            u16_at(header, 22)
        };
        if reserved != 0 {
            return Err(Error::ReservedByteSet {
                found: (reserved | reserved >> 8) as u8,
            });
        }
        let flavour = if version == INT8_VERSION {
            Flavour::Int8
        } else {
            match u16_at(header, 6) {
                1 => Flavour::F32,
                2 => Flavour::Int8,
                other => {
                    return Err(Error::UnknownFlavour {
                        found: u8::try_from(other).unwrap_or(u8::MAX),
                    });
                }
            }
        };
        let count = u32_at(header, 8) as usize;
        let image_len = u32_at(header, 16) as usize;
        let outputs = usize::from(u16_at(header, 20));
        let clips = version == CLIP_VERSION;
        // A clip is whole samples.
        if clips && !image_len.is_multiple_of(2) {
            return Err(Error::Malformed);
        }
        let record = 2usize
            .saturating_add(image_len)
            .saturating_add(outputs.saturating_mul(output_width(flavour)));
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
            clips,
            image_len,
            outputs,
            flavour,
            records: body,
        })
    }

    /// The CRC of the model file the vectors were written for.
    pub fn model_crc(&self) -> u32 {
        self.model_crc
    }

    /// Whether the recorded outputs are int8 or f32.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// Whether the records hold audio clips (version 4) rather than images.
    pub fn holds_clips(&self) -> bool {
        self.clips
    }

    /// Checks that the vectors are int8 ones written for `model`: its CRC,
    /// input size (the clip's samples, for a model with a front end) and
    /// output count.
    pub fn check_model(&self, model: &Int8Model<'_>) -> Result<(), Error> {
        let front_end = model.front_end();
        self.check(
            Flavour::Int8,
            model.header().crc,
            model.architecture(),
            front_end,
        )
    }

    /// Checks that the vectors are f32 ones written for `model`.
    pub fn check_f32_model(&self, model: &F32Model<'_>) -> Result<(), Error> {
        let front_end = model.front_end();
        self.check(
            Flavour::F32,
            model.header().crc,
            model.architecture(),
            front_end,
        )
    }

    fn check(
        &self,
        flavour: Flavour,
        model_crc: u32,
        architecture: &crate::arch::Architecture,
        front_end: Option<crate::audio::FrontEndConfig>,
    ) -> Result<(), Error> {
        if self.flavour != flavour {
            return Err(Error::WrongFlavour {
                expected: flavour,
                found: self.flavour,
            });
        }
        // Clips for a model with a front end (bytes of the samples its frames span), images
        // for any other.
        let input_len = match front_end {
            Some(config) => clip_samples(&config, architecture.input().height).saturating_mul(2),
            None => architecture.input().values(),
        };
        if self.model_crc != model_crc
            || self.clips != front_end.is_some()
            || self.image_len != input_len
            || self.outputs != architecture.classes()
        {
            return Err(Error::VectorsForAnotherModel {
                vectors_model: self.model_crc,
                model: model_crc,
            });
        }
        Ok(())
    }

    fn record_len(&self) -> usize {
        2 + self.image_len + self.outputs * output_width(self.flavour)
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.records
            .len()
            .checked_div(self.record_len())
            .unwrap_or(0)
    }

    /// Whether the file holds no vectors.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The vectors in file order.
    pub fn iter(&self) -> impl Iterator<Item = TestVector<'a>> + 'a {
        let (image_len, flavour) = (self.image_len, self.flavour);
        self.records
            .chunks_exact(self.record_len())
            .map(move |record| {
                let (label, rest) = record.split_at(2.min(record.len()));
                let (image, outputs) = rest.split_at(image_len.min(rest.len()));
                let label = match *label {
                    [low, high] => u16::from_le_bytes([low, high]),
                    _ => 0,
                };
                TestVector {
                    label,
                    image,
                    flavour,
                    outputs,
                }
            })
    }
}

/// Samples of the clip whose features fill `frames` frames of `config`:
/// `(frames - 1) x hop + window`, what a version 4 record holds.
pub const fn clip_samples(config: &crate::audio::FrontEndConfig, frames: usize) -> usize {
    frames.saturating_sub(1) * config.hop_samples as usize + config.window_samples as usize
}

/// Appends one record of a clip and its outputs (int8 bytes or f32 values, as `outputs`
/// holds them already encoded) to `out` (host side).
#[cfg(any(feature = "std", test))]
pub fn push_clip_record(out: &mut std::vec::Vec<u8>, label: u16, clip: &[i16], outputs: &[u8]) {
    out.extend_from_slice(&label.to_le_bytes());
    out.extend(clip.iter().flat_map(|sample| sample.to_le_bytes()));
    out.extend_from_slice(outputs);
}

/// Builds a whole version 4 file of `flavour` vectors of clips of `samples` samples from
/// records made with [`push_clip_record`] (host side).
#[cfg(any(feature = "std", test))]
pub fn encode_clips(
    flavour: Flavour,
    model_crc: u32,
    samples: usize,
    outputs: usize,
    records: &[u8],
) -> Result<std::vec::Vec<u8>, Error> {
    let input = samples.checked_mul(2).ok_or(Error::TooLarge)?;
    let encoding = match flavour {
        Flavour::F32 => 1,
        Flavour::Int8 => 2,
    };
    encode_version(
        (CLIP_VERSION, encoding),
        flavour,
        model_crc,
        input,
        outputs,
        records,
    )
}

/// Appends one record of int8 outputs to `out` (host side).
#[cfg(any(feature = "std", test))]
pub fn push_record(out: &mut std::vec::Vec<u8>, label: u16, image: &[u8], logits: &[i8]) {
    out.extend_from_slice(&label.to_le_bytes());
    out.extend_from_slice(image);
    out.extend(logits.iter().map(|&l| l as u8));
}

/// Appends one record of f32 outputs to `out` (host side).
#[cfg(any(feature = "std", test))]
pub fn push_f32_record(out: &mut std::vec::Vec<u8>, label: u16, image: &[u8], outputs: &[f32]) {
    out.extend_from_slice(&label.to_le_bytes());
    out.extend_from_slice(image);
    out.extend(outputs.iter().flat_map(|value| value.to_le_bytes()));
}

/// Builds a whole file of int8 vectors (version 2) from records made with
/// [`push_record`] (host side) for the model whose CRC is `model_crc`.
#[cfg(any(feature = "std", test))]
pub fn encode(
    model_crc: u32,
    image_len: usize,
    outputs: usize,
    records: &[u8],
) -> Result<std::vec::Vec<u8>, Error> {
    encode_as(Flavour::Int8, model_crc, image_len, outputs, records)
}

/// Builds a whole file of `flavour` vectors from records made with
/// [`push_record`] or [`push_f32_record`]: int8 ones as version 2, f32 ones
/// as version 3.
#[cfg(any(feature = "std", test))]
pub fn encode_as(
    flavour: Flavour,
    model_crc: u32,
    image_len: usize,
    outputs: usize,
    records: &[u8],
) -> Result<std::vec::Vec<u8>, Error> {
    let version = match flavour {
        Flavour::Int8 => (INT8_VERSION, 0),
        Flavour::F32 => (VERSION, 1),
    };
    encode_version(version, flavour, model_crc, image_len, outputs, records)
}

/// A whole file in `(version, encoding)`.
#[cfg(any(feature = "std", test))]
fn encode_version(
    (version, encoding): (u16, u16),
    flavour: Flavour,
    model_crc: u32,
    image_len: usize,
    outputs: usize,
    records: &[u8],
) -> Result<std::vec::Vec<u8>, Error> {
    let record = 2 + image_len + outputs * output_width(flavour);
    if !records.len().is_multiple_of(record) {
        return Err(Error::Malformed);
    }
    let count = u32::try_from(records.len() / record).map_err(|_| Error::TooLarge)?;
    let image_len = u32::try_from(image_len).map_err(|_| Error::TooLarge)?;
    let outputs = u16::try_from(outputs).map_err(|_| Error::TooLarge)?;
    let mut out = std::vec::Vec::with_capacity(HEADER_LEN + records.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&encoding.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&model_crc.to_le_bytes());
    out.extend_from_slice(&image_len.to_le_bytes());
    out.extend_from_slice(&outputs.to_le_bytes());
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
    fn clip_vectors_round_trip() {
        let mut records = Vec::new();
        push_clip_record(&mut records, 7, &[1, -2, 300], &[5, 0xfb]);
        let bytes = encode_clips(Flavour::Int8, 0x1234_5678, 3, 2, &records).unwrap();
        assert_eq!(&bytes[4..8], &[4, 0, 2, 0]);
        assert_eq!(&bytes[16..20], &[6, 0, 0, 0]);
        let vectors = TestVectors::from_bytes(&bytes).unwrap();
        assert!(vectors.holds_clips());
        let vector = vectors.iter().next().unwrap();
        assert_eq!(vector.label, 7);
        assert_eq!(vector.samples().collect::<Vec<_>>(), [1, -2, 300]);
        assert!(vector.matches(&[5, -5]));
        // An odd number of bytes is no clip.
        let mut odd = bytes.clone();
        odd[16] = 5;
        let crc = crc32_of(&[&odd[..24], &odd[HEADER_LEN..]]);
        odd[24..28].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(TestVectors::from_bytes(&odd).unwrap_err(), Error::Malformed);
        let mut newer = bytes.clone();
        newer[4] = 5;
        assert_eq!(
            TestVectors::from_bytes(&newer).unwrap_err(),
            Error::UnsupportedVersion {
                found: 5,
                newest: 4
            }
        );
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

    fn f32_file(outputs: &[[f32; CLASSES]]) -> Vec<u8> {
        let mut records = Vec::new();
        for (i, values) in outputs.iter().enumerate() {
            push_f32_record(&mut records, i as u16, &[i as u8; IMAGE], values);
        }
        encode_as(Flavour::F32, 0x1234_5678, IMAGE, CLASSES, &records).unwrap()
    }

    #[test]
    fn f32_vectors_are_version_3_and_match_by_value() {
        let bytes = f32_file(&[[0.5, -2.0, 1.5], [1000.0, 3.0, -1.0]]);
        // Version 3, outputs encoded as f32 (1), records of 2 + 12 + 3 x 4.
        assert_eq!(&bytes[4..8], &[3, 0, 1, 0]);
        assert_eq!(bytes.len(), HEADER_LEN + 2 * (2 + IMAGE + 12));
        let vectors = TestVectors::from_bytes(&bytes).unwrap();
        assert_eq!((vectors.len(), vectors.flavour()), (2, Flavour::F32));
        let [first, second] = [0, 1].map(|i| vectors.iter().nth(i).unwrap());
        assert_eq!(first.f32_outputs().collect::<Vec<_>>(), [0.5, -2.0, 1.5]);
        assert_eq!(first.logits().count(), 0);
        assert!(!first.matches(&[0, 0, 0]));
        // Within 1e-4 of the recorded value (the largest magnitude is below 1).
        assert!(first.matches_f32(&[0.50009, -2.0, 1.5]));
        assert!(!first.matches_f32(&[0.5, -2.0, 1.5003]));
        assert!(!first.matches_f32(&[0.5, -2.0]));
        assert!(!first.matches_f32(&[0.5, f32::NAN, 1.5]));
        // Relative to the largest output: 1000 allows 0.1.
        assert!(second.matches_f32(&[1000.05, 3.09, -1.0]));
        assert!(!second.matches_f32(&[1000.0, 3.2, -1.0]));
        // Close values that change the predicted class do not match.
        let tie = f32_file(&[[1.0, 0.99995, 0.0]]);
        let tie = TestVectors::from_bytes(&tie).unwrap();
        let tie = tie.iter().next().unwrap();
        assert!(tie.matches_f32(&[1.0, 0.99996, 0.0]));
        assert!(!tie.matches_f32(&[0.99995, 1.0, 0.0]));
    }

    #[test]
    fn int8_vectors_stay_version_2_and_version_3_reads_them_too() {
        let v2 = file(2);
        assert_eq!(&v2[4..8], &[2, 0, 0, 0]);
        // The same records as version 3 with the int8 encoding (2).
        let mut v3 = v2.clone();
        v3[4] = 3;
        v3[6] = 2;
        let crc = crc32_of(&[&v3[..24], &v3[28..]]);
        v3[24..28].copy_from_slice(&crc.to_le_bytes());
        let (old, new) = (
            TestVectors::from_bytes(&v2).unwrap(),
            TestVectors::from_bytes(&v3).unwrap(),
        );
        assert_eq!(new.flavour(), Flavour::Int8);
        assert!(
            old.iter()
                .zip(new.iter())
                .all(|(a, b)| a.logits().eq(b.logits()))
        );
        // An unknown encoding in version 3, and the field set in version 2.
        for (version, encoding, error) in [
            (3, 0, Error::UnknownFlavour { found: 0 }),
            (3, 7, Error::UnknownFlavour { found: 7 }),
            (2, 1, Error::ReservedByteSet { found: 1 }),
        ] {
            let mut bad = v2.clone();
            bad[4] = version;
            bad[6] = encoding;
            assert_eq!(TestVectors::from_bytes(&bad).unwrap_err(), error);
        }
    }

    #[test]
    fn damaged_f32_vectors_are_rejected() {
        let bytes = f32_file(&[[0.5, -2.0, 1.5]]);
        for len in 0..bytes.len() {
            assert!(TestVectors::from_bytes(&bytes[..len]).is_err());
        }
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(TestVectors::from_bytes(&bad).is_err(), "bit {bit}");
        }
    }
}
