//! The model file: one versioned format for f32 and int8 networks of any
//! valid description, written by the host and read in place (from flash on a
//! microcontroller).
//!
//! A file is a 16-byte header followed by the payload:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `TCNN` |
//! | 4 | 2 | format version, `u16` little-endian ([`VERSION`]; 1 to 5 are still read) |
//! | 6 | 1 | flavour: 1 = f32, 2 = int8 ([`Flavour`]) |
//! | 7 | 1 | reserved, 0 |
//! | 8 | 4 | payload length in bytes, `u32` little-endian |
//! | 12 | 4 | CRC-32 (ISO-HDLC, as zlib/PNG), `u32` little-endian: of bytes 0..12 and the payload (version 1: of the payload) |
//! | 16 | n | payload: the description, (int8) the input quantisation, one [postcard] record per layer that has one, then (versions 4 to 6) the class names, then (versions 5 and 6) the audio front end |
//!
//! Tensors inside the records are byte strings that the loader borrows
//! (`&'a [u8]`), so [`Model::from_bytes`] on a `&'static [u8]` in flash copies
//! no weights to RAM. `core/FORMAT.md` documents every byte.
//!
//! Loading checks everything a kernel relies on (lengths, value ranges) and
//! returns [`Error`] otherwise; it never panics, whatever the bytes.

use crate::arch::{
    Activation, Architecture, Conv, Dense, Depthwise, Layer, LayerInfo, LayerName, MAX_LAYERS,
    OutputKind, Padding, Pool, PoolKind, Shape, Shortcut, Window,
};
use crate::audio::{FftArithmetic, FrontEndConfig, FrontEndError};
use crate::error::{ClassNameProblem, Error, FrontEndProblem, TensorKind};
use crate::quant::{MAX_SHIFT, MIN_SHIFT};
use serde::{Deserialize, Serialize};

/// First four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"TCNN";
/// The newest format version this build reads and writes. Versions 1 to 5
/// are still read; a description that version 2 can hold (the tutorial's
/// vocabulary, pixel input) is still written as version 2, whose dense
/// layers round once as TensorFlow Lite's desktop `FULLY_CONNECTED` does;
/// in version 3 they round twice, as TensorFlow Lite Micro's does. Only a
/// model with class names is written as version 4, only a model with an
/// audio front end as version 5, and only one whose front end computes the
/// 16-bit FFT ([`FftArithmetic::Int16`]) as version 6.
pub const VERSION: u16 = 6;
/// The version that introduced the new vocabulary, any input quantisation,
/// and dense layers that round twice.
pub const VERSION_3: u16 = 3;
/// The version that added class names: version 3's payload followed by the
/// class names section ([`ClassNames`]).
pub const VERSION_4: u16 = 4;
/// The version that added the audio front end: version 4's payload followed
/// by the front-end section ([`FrontEndConfig`], [`FRONT_END_LEN`] bytes).
pub const VERSION_5: u16 = 5;
/// The version that added the FFT's arithmetic: version 5 whose front-end
/// section ends with one more byte, [`FftArithmetic::bits`]
/// ([`FRONT_END_V6_LEN`] bytes). A version 5 section means
/// [`FftArithmetic::Int32`].
pub const VERSION_6: u16 = 6;
/// Bytes of version 5's front-end section: [`FrontEndConfig`]'s fields but
/// the last in declaration order, fixed-size, little-endian.
pub const FRONT_END_LEN: usize = 29;
/// Bytes of version 6's front-end section: version 5's, then the FFT's data
/// bits (16 or 32).
pub const FRONT_END_V6_LEN: usize = FRONT_END_LEN + 1;
/// The longest class name, in bytes (UTF-8).
pub const MAX_CLASS_NAME: usize = 64;
/// Size of the fixed header before the payload.
pub const HEADER_LEN: usize = 16;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 (ISO-HDLC: the zlib, PNG and Ethernet CRC) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}

/// CRC-32 of several pieces, as if they were one byte string.
pub fn crc32_of(parts: &[&[u8]]) -> u32 {
    let mut digest = CRC.digest();
    for part in parts {
        digest.update(part);
    }
    digest.finalize()
}

/// Number type of a model's weights and activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Flavour {
    /// Float weights and activations.
    F32 = 1,
    /// TensorFlow Lite int8 quantisation.
    Int8 = 2,
}

impl Flavour {
    /// `"f32"` or `"int8"`.
    pub const fn name(self) -> &'static str {
        match self {
            Flavour::F32 => "f32",
            Flavour::Int8 => "int8",
        }
    }

    const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Flavour::F32),
            2 => Some(Flavour::Int8),
            _ => None,
        }
    }
}

/// A model file's header, checked for structure (not yet for its CRC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version, 1 to 6.
    pub version: u16,
    /// Flavour.
    pub flavour: Flavour,
    /// The stored CRC-32, which also identifies the file (test vectors name
    /// their model by it).
    pub crc: u32,
}

/// Per-tensor affine quantisation of an activation: `real = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QuantParams {
    /// Real value of one quantisation step; positive and finite.
    pub scale: f32,
    /// The int8 value that represents real 0.
    pub zero_point: i8,
}

impl QuantParams {
    /// The int8 input quantisation of pictures: pixels `0..=255` scaled to
    /// `[0, 1]` and quantised with scale 1/255, zero point -128, which maps a
    /// pixel `p` to exactly `p - 128`. Versions 1 and 2 have only this one.
    pub const INPUT: QuantParams = QuantParams {
        scale: 1.0 / 255.0,
        zero_point: -128,
    };

    /// `scale * (q - zero_point)`.
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (i32::from(q) - i32::from(self.zero_point)) as f32
    }
}

/// One layer with weights (convolution or dense) of an f32 model, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct F32LayerRecord<'a> {
    /// Little-endian `f32` weights: `[out][ky][kx][in]` for a convolution,
    /// `[out][in]` for a dense layer (inputs in height, width, channel order).
    #[serde(borrow)]
    pub weights: &'a [u8],
    /// Little-endian `f32` biases, one per output.
    #[serde(borrow)]
    pub bias: &'a [u8],
}

/// One layer with weights of an int8 model, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Int8LayerRecord<'a> {
    /// Quantisation of the layer's output activations (also of a max-pool
    /// after it).
    pub output: QuantParams,
    /// Little-endian `f32` weight scale per output channel (symmetric, zero
    /// point 0). Not needed to run the layer, kept so tools can dequantise.
    #[serde(borrow)]
    pub weight_scales: &'a [u8],
    /// `i8` weights in -127..=127, laid out as in [`F32LayerRecord::weights`].
    #[serde(borrow)]
    pub weights: &'a [u8],
    /// Little-endian `i32` bias per output, at scale `input_scale * weight_scale`.
    #[serde(borrow)]
    pub bias: &'a [u8],
    /// Little-endian `i32` Q31 multiplier per output (non-negative).
    #[serde(borrow)]
    pub multipliers: &'a [u8],
    /// `i8` shift per output in -31..=30 (positive = left); see
    /// [`crate::quant`].
    #[serde(borrow)]
    pub shifts: &'a [u8],
}

/// What the host encodes as an f32 model file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct F32Record<'r, 'a> {
    /// The network.
    pub architecture: Architecture,
    /// One record per layer that has one ([`Layer::has_record`]), in order.
    pub layers: &'r [F32LayerRecord<'a>],
    /// The classes' names, one per class in class order, or none (`&[]`).
    /// With names the file is version 4 ([`F32Record::version`]); they must
    /// pass the checks the loader makes ([`Error::BadClassNames`]).
    pub class_names: &'r [&'r str],
    /// The audio front end whose features the network reads, or `None`. With
    /// one the file is version 5, or 6 when it computes the 16-bit FFT
    /// ([`FftArithmetic::Int16`]); it must pass the checks the loader makes
    /// ([`Error::BadFrontEnd`]).
    pub front_end: Option<FrontEndConfig>,
}

/// What the host encodes as an int8 model file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Int8Record<'r, 'a> {
    /// The network.
    pub architecture: Architecture,
    /// Input quantisation ([`QuantParams::INPUT`] for pixels `p` read as `p / 255`).
    pub input: QuantParams,
    /// One record per layer that has one ([`Layer::has_record`]), in order.
    pub layers: &'r [Int8LayerRecord<'a>],
    /// The classes' names, one per class in class order, or none (`&[]`).
    /// With names the file is version 4 ([`Int8Record::version`]); they must
    /// pass the checks the loader makes ([`Error::BadClassNames`]).
    pub class_names: &'r [&'r str],
    /// The audio front end whose features the network reads, or `None`. With
    /// one the file is version 5, or 6 when it computes the 16-bit FFT
    /// ([`FftArithmetic::Int16`]); it must pass the checks the loader makes
    /// ([`Error::BadFrontEnd`]).
    pub front_end: Option<FrontEndConfig>,
}

// ---------------------------------------------------------------------------
// Class names

/// The class names of a model file, validated at load time and read in
/// place: empty for files before version 4 and for a version 4 file that
/// names no classes, else one name per class, in class order (see
/// `FORMAT.md`, "The class names section").
///
/// A cheap `Copy` view over the file's bytes: [`ClassNames::get`] walks the
/// names before the one asked for.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassNames<'a> {
    /// The names as byte strings (varint length, then the bytes), after the count.
    bytes: &'a [u8],
    len: usize,
}

impl<'a> ClassNames<'a> {
    /// No names.
    pub const NONE: ClassNames<'static> = ClassNames { bytes: &[], len: 0 };

    /// Number of names: 0, or the network's classes.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the file names no classes.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The name of class `index`; `None` past the last (or without names).
    pub fn get(&self, index: usize) -> Option<&'a str> {
        self.iter().nth(index)
    }

    /// The names in class order.
    pub fn iter(&self) -> ClassNamesIter<'a> {
        ClassNamesIter {
            raw: RawNames {
                rest: self.bytes,
                remaining: self.len,
            },
        }
    }
}

impl<'a> IntoIterator for ClassNames<'a> {
    type Item = &'a str;
    type IntoIter = ClassNamesIter<'a>;
    fn into_iter(self) -> ClassNamesIter<'a> {
        self.iter()
    }
}

impl core::fmt::Debug for ClassNames<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The names of [`ClassNames`], in class order.
#[derive(Clone, Debug)]
pub struct ClassNamesIter<'a> {
    raw: RawNames<'a>,
}

impl<'a> Iterator for ClassNamesIter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        // Validated at load time: the conversion cannot fail.
        core::str::from_utf8(self.raw.next()?).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.raw.size_hint()
    }
}

impl ExactSizeIterator for ClassNamesIter<'_> {}
impl core::iter::FusedIterator for ClassNamesIter<'_> {}

/// `remaining` byte strings at the start of `rest`, as bytes; stops early at one cut short.
#[derive(Clone, Debug)]
struct RawNames<'a> {
    rest: &'a [u8],
    remaining: usize,
}

impl<'a> Iterator for RawNames<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        let Some((name, rest)) = take_byte_string(self.rest) else {
            self.remaining = 0;
            return None;
        };
        self.rest = rest;
        self.remaining -= 1;
        Some(name)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// A byte string (varint length up to 32 bits, in its shortest form, then
/// the bytes); `None` if cut short or overlong.
fn take_byte_string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (length, rest) = take_varint(bytes, u32::MAX)?;
    rest.split_at_checked(usize::try_from(length).ok()?)
}

/// The checks of the class names section's count (`FORMAT.md`): 0, or the
/// number of classes of a classifier.
fn check_class_count(architecture: &Architecture, names: usize) -> Result<(), Error> {
    let problem = if names == 0 {
        return Ok(());
    } else if !architecture.is_classifier() {
        ClassNameProblem::NotClassifier
    } else if names != architecture.classes() {
        ClassNameProblem::Count {
            names,
            classes: architecture.classes(),
        }
    } else {
        return Ok(());
    };
    Err(Error::BadClassNames {
        index: None,
        problem,
    })
}

/// The checks of name `index` (`FORMAT.md`), in order: not empty, at most
/// [`MAX_CLASS_NAME`] bytes, UTF-8, no ASCII control character, none of the
/// `earlier` names (the names before it, in order).
fn check_class_name<'n>(
    index: usize,
    name: &[u8],
    earlier: impl Iterator<Item = &'n [u8]>,
) -> Result<(), Error> {
    let control = |byte: &u8| *byte < 0x20 || *byte == 0x7f;
    let problem = if name.is_empty() {
        ClassNameProblem::Empty
    } else if name.len() > MAX_CLASS_NAME {
        ClassNameProblem::TooLong { length: name.len() }
    } else if core::str::from_utf8(name).is_err() {
        ClassNameProblem::NotUtf8
    } else if let Some(&byte) = name.iter().find(|byte| control(byte)) {
        ClassNameProblem::ControlCharacter { byte }
    } else if let Some(first) = earlier.take(index).position(|other| other == name) {
        ClassNameProblem::Duplicate { first }
    } else {
        return Ok(());
    };
    Err(Error::BadClassNames {
        index: Some(index),
        problem,
    })
}

/// Reads and checks the class names section at the start of `bytes` (a
/// version 4 payload's end); returns the names and the bytes after them.
/// Without allocation, each name is compared with every earlier one: at most
/// 4,096 x 4,095 / 2 comparisons of short strings, most ending at the first
/// byte; for tens of classes, nothing.
fn take_class_names<'a>(
    architecture: &Architecture,
    bytes: &'a [u8],
) -> Result<(ClassNames<'a>, &'a [u8]), Error> {
    let (count, names) = take_varint(bytes, u32::MAX).ok_or(Error::Malformed)?;
    let count = usize::try_from(count).map_err(|_| Error::Malformed)?;
    check_class_count(architecture, count)?;
    let mut rest = names;
    for index in 0..count {
        let (name, tail) = take_byte_string(rest).ok_or(Error::Malformed)?;
        let earlier = RawNames {
            rest: names,
            remaining: index,
        };
        check_class_name(index, name, earlier)?;
        rest = tail;
    }
    let section = names
        .get(..names.len() - rest.len())
        .ok_or(Error::Malformed)?;
    let names = ClassNames {
        bytes: section,
        len: count,
    };
    Ok((names, rest))
}

/// The front-end section's bytes.
fn front_end_bytes(config: &FrontEndConfig) -> [u8; FRONT_END_LEN] {
    let mut out = [0; FRONT_END_LEN];
    let fields: [&[u8]; 11] = [
        &config.sample_rate_hz.to_le_bytes(),
        &config.window_samples.to_le_bytes(),
        &config.hop_samples.to_le_bytes(),
        &config.fft_size.to_le_bytes(),
        &[config.mel_bands],
        &config.lower_hz.to_le_bytes(),
        &config.upper_hz.to_le_bytes(),
        &[config.coefficients],
        &config.log_floor.to_le_bytes(),
        &config.output_scale.to_le_bytes(),
        &config.output_zero_point.to_le_bytes(),
    ];
    let mut at = 0;
    for field in fields {
        if let Some(target) = out.get_mut(at..at + field.len()) {
            target.copy_from_slice(field);
        }
        at += field.len();
    }
    out
}

/// Decodes version 5's front-end section (any bytes decode; validation
/// follows): its FFT is [`FftArithmetic::Int32`].
fn front_end_from(bytes: &[u8; FRONT_END_LEN]) -> FrontEndConfig {
    let mut rest: &[u8] = bytes;
    let mut take = |n: usize| {
        let (field, after) = rest.split_at_checked(n).unwrap_or((&[], &[]));
        rest = after;
        field
    };
    let u32_at = |field: &[u8]| field.try_into().map_or(0, u32::from_le_bytes);
    let u16_at = |field: &[u8]| field.try_into().map_or(0, u16::from_le_bytes);
    let f32_at = |field: &[u8]| field.try_into().map_or(f32::NAN, f32::from_le_bytes);
    let byte = |field: &[u8]| field.first().copied().unwrap_or(0);
    FrontEndConfig {
        sample_rate_hz: u32_at(take(4)),
        window_samples: u16_at(take(2)),
        hop_samples: u16_at(take(2)),
        fft_size: u16_at(take(2)),
        mel_bands: byte(take(1)),
        lower_hz: u32_at(take(4)),
        upper_hz: u32_at(take(4)),
        coefficients: byte(take(1)),
        log_floor: f32_at(take(4)),
        output_scale: f32_at(take(4)),
        output_zero_point: byte(take(1)) as i8,
        fft_arithmetic: FftArithmetic::Int32,
    }
}

/// The front-end section of a file of `version` (5 or 6) at the start of
/// `tail`; returns its configuration, its fields checked up to the FFT's
/// arithmetic, and the bytes after it.
fn take_front_end(version: u16, tail: &[u8]) -> Result<(FrontEndConfig, &[u8]), Error> {
    let (section, after) = tail
        .split_first_chunk::<FRONT_END_LEN>()
        .ok_or(Error::Malformed)?;
    let mut config = front_end_from(section);
    if version < VERSION_6 {
        return Ok((config, after));
    }
    let (&bits, after) = after.split_first().ok_or(Error::Malformed)?;
    // The byte follows the other fields, and so does its check.
    let bad = |error| Error::BadFrontEnd(FrontEndProblem::Config(error));
    config.validate().map_err(bad)?;
    config.fft_arithmetic =
        FftArithmetic::from_bits(bits).ok_or(bad(FrontEndError::FftArithmetic { bits }))?;
    Ok((config, after))
}

/// The version a file with `config` as its front end is written in: 5, or 6
/// for the 16-bit FFT, which version 5 cannot say.
const fn front_end_version(config: &FrontEndConfig) -> u16 {
    match config.fft_arithmetic {
        FftArithmetic::Int32 => VERSION_5,
        FftArithmetic::Int16 => VERSION_6,
    }
}

/// The checks of a front end against its network, the loader's and the
/// writer's: its fields, whole frames per input row, and (int8, `input`) the
/// network reading the front end's bytes on their own scale.
fn check_front_end(
    config: &FrontEndConfig,
    architecture: &Architecture,
    input: Option<QuantParams>,
) -> Result<(), Error> {
    config
        .validate()
        .map_err(|error| Error::BadFrontEnd(FrontEndProblem::Config(error)))?;
    let shape = architecture.input();
    let features_per_frame = config.features_per_frame();
    if shape.width * shape.channels != features_per_frame {
        return Err(Error::BadFrontEnd(FrontEndProblem::InputShape {
            features_per_frame,
            width: shape.width,
            channels: shape.channels,
        }));
    }
    if let Some(input) = input {
        // Bit for bit: any other scale, however close, reads other reals.
        if input.scale.to_bits() != config.output_scale.to_bits()
            || input.zero_point != config.output_zero_point
        {
            return Err(Error::BadFrontEnd(FrontEndProblem::InputQuantization {
                front_end_scale: config.output_scale,
                front_end_zero_point: config.output_zero_point,
                input_scale: input.scale,
                input_zero_point: input.zero_point,
            }));
        }
    }
    Ok(())
}

/// What follows the records: nothing before version 4; in version 4 the
/// class names section, then nothing; in versions 5 and 6 the class names
/// section, the front-end section (version 6: with the FFT's arithmetic),
/// then nothing. `records` runs from the first record
/// to the payload's end, `rest` from the end of the last record; `input` is
/// an int8 model's input quantisation. Returns the records alone, the names
/// and the front end.
fn take_tail<'a>(
    version: u16,
    architecture: &Architecture,
    input: Option<QuantParams>,
    records: &'a [u8],
    rest: &'a [u8],
) -> Result<(&'a [u8], ClassNames<'a>, Option<FrontEndConfig>), Error> {
    let (names, mut tail) = if version >= VERSION_4 {
        take_class_names(architecture, rest)?
    } else {
        (ClassNames::NONE, rest)
    };
    let mut front_end = None;
    if version >= VERSION_5 {
        let (config, after) = take_front_end(version, tail)?;
        check_front_end(&config, architecture, input)?;
        front_end = Some(config);
        tail = after;
    }
    if !tail.is_empty() {
        return Err(Error::Malformed);
    }
    let records = records
        .get(..records.len() - rest.len())
        .ok_or(Error::Malformed)?;
    Ok((records, names, front_end))
}

// ---------------------------------------------------------------------------
// Header

/// Checks the header's structure and the lengths (not the CRC); returns it and
/// the payload. A `const fn`, for [`crate::plan`].
pub const fn parse_header(bytes: &[u8]) -> Result<(Header, &[u8]), Error> {
    let Some((header, payload)) = bytes.split_first_chunk::<HEADER_LEN>() else {
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
        flavour,
        reserved,
        l0,
        l1,
        l2,
        l3,
        c0,
        c1,
        c2,
        c3,
    ] = *header;
    if m0 != MAGIC[0] || m1 != MAGIC[1] || m2 != MAGIC[2] || m3 != MAGIC[3] {
        return Err(Error::BadMagic {
            found: [m0, m1, m2, m3],
        });
    }
    let version = u16::from_le_bytes([v0, v1]);
    if version == 0 || version > VERSION {
        return Err(Error::UnsupportedVersion {
            found: version,
            newest: VERSION,
        });
    }
    let Some(flavour) = Flavour::from_byte(flavour) else {
        return Err(Error::UnknownFlavour { found: flavour });
    };
    if reserved != 0 {
        return Err(Error::ReservedByteSet { found: reserved });
    }
    let length = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    if payload.len() < length {
        return Err(Error::Truncated {
            needed: HEADER_LEN.saturating_add(length),
            available: bytes.len(),
        });
    }
    if payload.len() > length {
        return Err(Error::TrailingBytes {
            extra: payload.len() - length,
        });
    }
    let header = Header {
        version,
        flavour,
        crc: u32::from_le_bytes([c0, c1, c2, c3]),
    };
    Ok((header, payload))
}

/// Checks the header and the checksum; returns the header and the payload.
pub fn split_header(bytes: &[u8]) -> Result<(Header, &[u8]), Error> {
    let (header, payload) = parse_header(bytes)?;
    let computed = match header.version {
        1 => crc32(payload),
        _ => crc32_of(&[bytes.get(..12).unwrap_or(&[]), payload]),
    };
    if header.crc != computed {
        return Err(Error::ChecksumMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok((header, payload))
}

// ---------------------------------------------------------------------------
// The description

/// The version 1 description: the reference network as ten varints.
const V1_ARCHITECTURE: [u8; 13] = [
    0x1c, 0x1c, 0x01, 0x40, 0x80, 0x01, 0x80, 0x02, 0x80, 0x01, 0x40, 0x20, 0x0a,
];

/// Layer tags of the version 2 description.
const TAG_CONV: u32 = 0;
const TAG_POOL: u32 = 1;
const TAG_DROPOUT: u32 = 2;
const TAG_FLATTEN: u32 = 3;
const TAG_DENSE: u32 = 4;

/// An unsigned LEB128 varint of at most `max` value, in its shortest form;
/// `None` if cut short, too large or overlong.
// Not inlined: called a dozen times while decoding a description, which
// would otherwise grow to kilobytes of firmware.
#[inline(never)]
const fn take_varint(bytes: &[u8], max: u32) -> Option<(u32, &[u8])> {
    let mut value: u64 = 0;
    let mut shift = 0;
    let mut rest = bytes;
    while let [byte, tail @ ..] = rest {
        rest = tail;
        value |= ((*byte & 0x7f) as u64) << shift;
        if *byte & 0x80 == 0 {
            // Overlong: a last byte of 0 after others adds nothing.
            if shift > 0 && *byte == 0 {
                return None;
            }
            if value > max as u64 {
                return None;
            }
            return Some((value as u32, rest));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    None
}

/// An activation: 0 none, 1 ReLU, and from version 3 on, 2 ReLU6.
const fn take_activation(bytes: &[u8], version: u16) -> Option<(Activation, &[u8])> {
    let max = if version >= VERSION_3 { 2 } else { 1 };
    match take_varint(bytes, max) {
        Some((0, rest)) => Some((Activation::None, rest)),
        Some((1, rest)) => Some((Activation::Relu, rest)),
        Some((_, rest)) => Some((Activation::Relu6, rest)),
        None => None,
    }
}

/// A version 3 window: height, width, stride height, stride width, padding
/// (0 'same', 1 'valid').
const fn take_window(bytes: &[u8]) -> Option<(Window, &[u8])> {
    let Some((height, rest)) = take_varint(bytes, u8::MAX as u32) else {
        return None;
    };
    let Some((width, rest)) = take_varint(rest, u8::MAX as u32) else {
        return None;
    };
    let Some((stride_height, rest)) = take_varint(rest, u8::MAX as u32) else {
        return None;
    };
    let Some((stride_width, rest)) = take_varint(rest, u8::MAX as u32) else {
        return None;
    };
    let Some((padding, rest)) = take_padding(rest) else {
        return None;
    };
    let window = Window {
        height: height as u8,
        width: width as u8,
        stride_height: stride_height as u8,
        stride_width: stride_width as u8,
        padding,
    };
    Some((window, rest))
}

const fn take_padding(bytes: &[u8]) -> Option<(Padding, &[u8])> {
    match take_varint(bytes, 1) {
        Some((0, rest)) => Some((Padding::Same, rest)),
        Some((_, rest)) => Some((Padding::Valid, rest)),
        None => None,
    }
}

const fn take_layer(bytes: &[u8], version: u16) -> Option<(Layer, &[u8])> {
    if version >= VERSION_3 {
        take_layer_v3(bytes)
    } else {
        take_layer_v2(bytes, version)
    }
}

/// A layer of the version 2 vocabulary (tags 0 to 4); its activations as `version` reads them.
#[inline(never)]
const fn take_layer_v2(bytes: &[u8], version: u16) -> Option<(Layer, &[u8])> {
    let Some((tag, rest)) = take_varint(bytes, TAG_DENSE) else {
        return None;
    };
    match tag {
        TAG_CONV => {
            let Some((&kernel, rest)) = rest.split_first() else {
                return None;
            };
            let Some((padding, rest)) = take_padding(rest) else {
                return None;
            };
            let Some((filters, rest)) = take_varint(rest, u16::MAX as u32) else {
                return None;
            };
            let Some((activation, rest)) = take_activation(rest, version) else {
                return None;
            };
            let conv = Conv::square(kernel, padding, filters as u16, activation);
            Some((Layer::Conv(conv), rest))
        }
        TAG_POOL => Some((Layer::MaxPool, rest)),
        TAG_DROPOUT => match take_varint(rest, u16::MAX as u32) {
            Some((rate, rest)) => Some((Layer::Dropout(rate as u16), rest)),
            None => None,
        },
        TAG_FLATTEN => Some((Layer::Flatten, rest)),
        _ => {
            let Some((units, rest)) = take_varint(rest, u16::MAX as u32) else {
                return None;
            };
            let Some((activation, rest)) = take_activation(rest, version) else {
                return None;
            };
            let dense = Dense {
                units: units as u16,
                activation,
            };
            Some((Layer::Dense(dense), rest))
        }
    }
}

/// Layer tags of the version 3 description (0 to 4 as in version 2, but a
/// convolution stores its whole window).
const TAG_DEPTHWISE: u32 = 5;
const TAG_MAX_POOL: u32 = 6;
const TAG_AVERAGE_POOL: u32 = 7;
const TAG_GLOBAL_AVERAGE_POOL: u32 = 8;
const TAG_RESIDUAL: u32 = 9;
const TAG_ADD: u32 = 10;
const TAG_SOFTMAX: u32 = 11;

#[inline(never)]
const fn take_layer_v3(bytes: &[u8]) -> Option<(Layer, &[u8])> {
    let Some((tag, rest)) = take_varint(bytes, TAG_SOFTMAX) else {
        return None;
    };
    match tag {
        TAG_CONV => {
            let Some((window, rest)) = take_window(rest) else {
                return None;
            };
            let Some((filters, rest)) = take_varint(rest, u16::MAX as u32) else {
                return None;
            };
            let Some((activation, rest)) = take_activation(rest, VERSION_3) else {
                return None;
            };
            let conv = Conv {
                window,
                filters: filters as u16,
                activation,
            };
            Some((Layer::Conv(conv), rest))
        }
        TAG_DEPTHWISE => {
            let Some((window, rest)) = take_window(rest) else {
                return None;
            };
            let Some((multiplier, rest)) = take_varint(rest, u8::MAX as u32) else {
                return None;
            };
            let Some((activation, rest)) = take_activation(rest, VERSION_3) else {
                return None;
            };
            let depthwise = Depthwise {
                window,
                multiplier: multiplier as u8,
                activation,
            };
            Some((Layer::Depthwise(depthwise), rest))
        }
        TAG_MAX_POOL | TAG_AVERAGE_POOL => {
            let Some((window, rest)) = take_window(rest) else {
                return None;
            };
            let kind = if tag == TAG_MAX_POOL {
                PoolKind::Max
            } else {
                PoolKind::Average
            };
            Some((Layer::Pool(Pool { kind, window }), rest))
        }
        TAG_GLOBAL_AVERAGE_POOL => Some((Layer::GlobalAveragePool, rest)),
        TAG_RESIDUAL => {
            let Some((filters, rest)) = take_varint(rest, u16::MAX as u32) else {
                return None;
            };
            let Some((stride, rest)) = take_varint(rest, u8::MAX as u32) else {
                return None;
            };
            let shortcut = if filters == 0 {
                if stride != 1 {
                    return None;
                }
                Shortcut::Identity
            } else {
                Shortcut::Projection {
                    filters: filters as u16,
                    stride: stride as u8,
                }
            };
            Some((Layer::Residual(shortcut), rest))
        }
        TAG_ADD => match take_activation(rest, VERSION_3) {
            Some((activation, rest)) => Some((Layer::Add(activation), rest)),
            None => None,
        },
        TAG_SOFTMAX => Some((Layer::Softmax, rest)),
        // Tags 1 to 4 read as in version 2, with version 3's activations.
        _ => take_layer_v2(bytes, VERSION_3),
    }
}

/// Decodes the description at the start of a payload; returns it and the
/// bytes after it.
pub const fn decode_architecture(
    version: u16,
    payload: &[u8],
) -> Result<(Architecture, &[u8]), Error> {
    let mut architecture = Architecture::empty(Shape::new(0, 0, 0), OutputKind::Classes);
    match decode_architecture_into(version, payload, &mut architecture) {
        Ok(rest) => Ok((architecture, rest)),
        Err(error) => Err(error),
    }
}

/// [`decode_architecture`] into `architecture`, in place; returns the bytes after it.
const fn decode_architecture_into<'p>(
    version: u16,
    payload: &'p [u8],
    architecture: &mut Architecture,
) -> Result<&'p [u8], Error> {
    if version == 1 {
        return match payload.split_first_chunk::<13>() {
            Some((prefix, rest)) => {
                let (mut found, mut expected): (&[u8], &[u8]) = (prefix, &V1_ARCHITECTURE);
                while let ([a, found_tail @ ..], [b, expected_tail @ ..]) = (found, expected) {
                    if *a != *b {
                        return Err(Error::NotReferenceNetwork);
                    }
                    found = found_tail;
                    expected = expected_tail;
                }
                *architecture = Architecture::REFERENCE;
                Ok(rest)
            }
            None => Err(Error::Malformed),
        };
    }
    const fn offset(payload: &[u8], rest: &[u8]) -> Error {
        Error::BadDescription {
            offset: payload.len() - rest.len(),
        }
    }
    const SIDE: u32 = u16::MAX as u32;
    let rest = payload;
    let Some((height, rest)) = take_varint(rest, SIDE) else {
        return Err(offset(payload, rest));
    };
    let Some((width, rest)) = take_varint(rest, SIDE) else {
        return Err(offset(payload, rest));
    };
    let Some((channels, rest)) = take_varint(rest, SIDE) else {
        return Err(offset(payload, rest));
    };
    let Some((count, mut rest)) = take_varint(rest, SIDE) else {
        return Err(offset(payload, rest));
    };
    let count = count as usize;
    if count > MAX_LAYERS {
        return Err(Error::Architecture(crate::arch::ArchError {
            index: None,
            name: None,
            problem: crate::arch::Problem::TooManyLayers { count },
        }));
    }
    let input = Shape::new(height as usize, width as usize, channels as usize);
    *architecture = Architecture::empty(input, OutputKind::Classes);
    let mut filled = 0;
    while filled < count {
        match take_layer(rest, version) {
            Some((layer, tail)) => {
                if !architecture.push(layer) {
                    return Err(Error::Malformed);
                }
                rest = tail;
            }
            None => return Err(offset(payload, rest)),
        }
        filled += 1;
    }
    // Version 3 ends the description with what the output is.
    if version >= VERSION_3 {
        match take_varint(rest, 1) {
            Some((kind, tail)) => {
                if kind == 1 {
                    architecture.set_output_kind(OutputKind::Values);
                }
                rest = tail;
            }
            None => return Err(offset(payload, rest)),
        }
    }
    if let Err(error) = architecture.check() {
        return Err(Error::Architecture(error));
    }
    if version < VERSION_3 && architecture.needs_version_3() {
        return Err(Error::NotInVersion { version });
    }
    Ok(rest)
}

/// The flavour and description of a model file, from its header and the
/// start of its payload only (no checksum, no tensors): what a `const`
/// needs to size scratch memory.
pub const fn peek_architecture(bytes: &[u8]) -> Result<(Flavour, Architecture), Error> {
    match parse_header(bytes) {
        Ok((header, payload)) => match decode_architecture(header.version, payload) {
            Ok((architecture, _)) => Ok((header.flavour, architecture)),
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    }
}

/// Where encoded bytes go: a buffer, or nowhere (to count them).
struct Sink<'o> {
    out: Option<&'o mut [u8]>,
    len: usize,
}

impl Sink<'_> {
    fn push(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if let Some(out) = self.out.as_deref_mut() {
            let available = out.len();
            let target =
                out.get_mut(self.len..self.len + bytes.len())
                    .ok_or(Error::BufferTooSmall {
                        needed: self.len + bytes.len(),
                        available,
                    })?;
            target.copy_from_slice(bytes);
        }
        self.len += bytes.len();
        Ok(())
    }

    fn varint(&mut self, mut value: usize) -> Result<(), Error> {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                return self.push(&[byte]);
            }
            self.push(&[byte | 0x80])?;
        }
    }

    fn activation(&mut self, activation: Activation) -> Result<(), Error> {
        self.varint(match activation {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Relu6 => 2,
        })
    }

    fn padding(&mut self, padding: Padding) -> Result<(), Error> {
        self.varint(match padding {
            Padding::Same => 0,
            Padding::Valid => 1,
        })
    }

    fn window(&mut self, window: &Window) -> Result<(), Error> {
        self.varint(usize::from(window.height))?;
        self.varint(usize::from(window.width))?;
        self.varint(usize::from(window.stride_height))?;
        self.varint(usize::from(window.stride_width))?;
        self.padding(window.padding)
    }

    /// The description in `version`'s form (2 or 3; see [`Architecture::needs_version_3`]).
    fn architecture(&mut self, architecture: &Architecture, version: u16) -> Result<(), Error> {
        let input = architecture.input();
        self.varint(input.height)?;
        self.varint(input.width)?;
        self.varint(input.channels)?;
        self.varint(architecture.layers().len())?;
        let v3 = version >= VERSION_3;
        for layer in architecture.layers() {
            match *layer {
                Layer::Conv(conv) if v3 => {
                    self.varint(TAG_CONV as usize)?;
                    self.window(&conv.window)?;
                    self.varint(usize::from(conv.filters))?;
                    self.activation(conv.activation)?;
                }
                Layer::Conv(conv) => {
                    self.varint(TAG_CONV as usize)?;
                    self.push(&[conv.window.height])?;
                    self.padding(conv.window.padding)?;
                    self.varint(usize::from(conv.filters))?;
                    self.activation(conv.activation)?;
                }
                Layer::MaxPool => self.varint(TAG_POOL as usize)?,
                Layer::Dropout(rate) => {
                    self.varint(TAG_DROPOUT as usize)?;
                    self.varint(usize::from(rate))?;
                }
                Layer::Flatten => self.varint(TAG_FLATTEN as usize)?,
                Layer::Dense(dense) => {
                    self.varint(TAG_DENSE as usize)?;
                    self.varint(usize::from(dense.units))?;
                    self.activation(dense.activation)?;
                }
                Layer::Depthwise(depthwise) => {
                    self.varint(TAG_DEPTHWISE as usize)?;
                    self.window(&depthwise.window)?;
                    self.varint(usize::from(depthwise.multiplier))?;
                    self.activation(depthwise.activation)?;
                }
                Layer::Pool(pool) => {
                    self.varint(match pool.kind {
                        PoolKind::Max => TAG_MAX_POOL,
                        PoolKind::Average => TAG_AVERAGE_POOL,
                    } as usize)?;
                    self.window(&pool.window)?;
                }
                Layer::GlobalAveragePool => self.varint(TAG_GLOBAL_AVERAGE_POOL as usize)?,
                Layer::Residual(shortcut) => {
                    self.varint(TAG_RESIDUAL as usize)?;
                    let (filters, stride) = match shortcut {
                        Shortcut::Identity => (0, 1),
                        Shortcut::Projection { filters, stride } => (filters, stride),
                    };
                    self.varint(usize::from(filters))?;
                    self.varint(usize::from(stride))?;
                }
                Layer::Add(activation) => {
                    self.varint(TAG_ADD as usize)?;
                    self.activation(activation)?;
                }
                Layer::Softmax => self.varint(TAG_SOFTMAX as usize)?,
            }
        }
        if v3 {
            self.varint(match architecture.output_kind() {
                OutputKind::Classes => 0,
                OutputKind::Values => 1,
            })?;
        }
        Ok(())
    }

    /// The class names section: the count, then each name as a byte string.
    fn class_names(&mut self, names: &[&str]) -> Result<(), Error> {
        self.varint(names.len())?;
        for name in names {
            self.varint(name.len())?;
            self.push(name.as_bytes())?;
        }
        Ok(())
    }

    /// What follows the records in `version`: the class names section (4 to
    /// 6), then the front-end section (5, and 6 with the FFT's arithmetic).
    fn tail(
        &mut self,
        version: u16,
        names: &[&str],
        front_end: Option<&FrontEndConfig>,
    ) -> Result<(), Error> {
        if version >= VERSION_4 {
            self.class_names(names)?;
        }
        if let (true, Some(config)) = (version >= VERSION_5, front_end) {
            self.push(&front_end_bytes(config))?;
            if version >= VERSION_6 {
                self.push(&[config.fft_arithmetic.bits()])?;
            }
        }
        Ok(())
    }

    fn record<T: Serialize>(&mut self, record: &T) -> Result<(), Error> {
        let start = self.len;
        match self.out.as_deref_mut() {
            Some(out) => {
                let available = out.len();
                let rest = out.get_mut(start..).unwrap_or(&mut []);
                let written = postcard::to_slice(record, rest)
                    .map_err(|_| Error::BufferTooSmall {
                        needed: start + postcard_len(record).unwrap_or(usize::MAX - start),
                        available,
                    })?
                    .len();
                self.len += written;
            }
            None => self.len += postcard_len(record)?,
        }
        Ok(())
    }
}

fn postcard_len<T: Serialize>(record: &T) -> Result<usize, Error> {
    postcard::serialize_with_flavor(record, postcard::ser_flavors::Size::default())
        .map_err(|_| Error::TooLarge)
}

/// Writes header + payload (produced by `payload`) into `out` (or only counts
/// them); returns the file's length.
fn encode_file(
    flavour: Flavour,
    version: u16,
    out: Option<&mut [u8]>,
    payload: impl Fn(&mut Sink<'_>) -> Result<(), Error>,
) -> Result<usize, Error> {
    let mut counter = Sink { out: None, len: 0 };
    payload(&mut counter)?;
    let payload_len = counter.len;
    let total = HEADER_LEN + payload_len;
    let Some(out) = out else {
        return Ok(total);
    };
    let available = out.len();
    let Some((header, rest)) = out.split_first_chunk_mut::<HEADER_LEN>() else {
        return Err(Error::BufferTooSmall {
            needed: total,
            available,
        });
    };
    let rest = rest.get_mut(..payload_len).ok_or(Error::BufferTooSmall {
        needed: total,
        available,
    })?;
    let mut sink = Sink {
        out: Some(rest),
        len: 0,
    };
    payload(&mut sink)?;
    let length = u32::try_from(payload_len).map_err(|_| Error::TooLarge)?;
    let [v0, v1] = version.to_le_bytes();
    let [l0, l1, l2, l3] = length.to_le_bytes();
    let [m0, m1, m2, m3] = MAGIC;
    let head = [m0, m1, m2, m3, v0, v1, flavour as u8, 0, l0, l1, l2, l3];
    let crc = crc32_of(&[&head, sink.out.as_deref().unwrap_or(&[])]);
    let [c0, c1, c2, c3] = crc.to_le_bytes();
    *header = [
        m0,
        m1,
        m2,
        m3,
        v0,
        v1,
        flavour as u8,
        0,
        l0,
        l1,
        l2,
        l3,
        c0,
        c1,
        c2,
        c3,
    ];
    Ok(total)
}

macro_rules! record_encoding {
    ($record:ident) => {
        impl $record<'_, '_> {
            /// Size of the encoded file, header included.
            pub fn encoded_len(&self) -> Result<usize, Error> {
                self.encode_into(None)
            }

            /// Encodes header + payload into `out` (in the version `version()`
            /// gives); returns the bytes written.
            pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
                self.encode_into(Some(out))
            }

            /// Encodes header + payload into a new vector.
            #[cfg(feature = "std")]
            pub fn to_vec(&self) -> Result<std::vec::Vec<u8>, Error> {
                let mut out = std::vec![0; self.encoded_len()?];
                let written = self.encode(&mut out)?;
                out.truncate(written);
                Ok(out)
            }
        }
    };
}
record_encoding!(F32Record);
record_encoding!(Int8Record);

/// The checks the loader makes of class names to be written.
fn check_class_names_to_write(architecture: &Architecture, names: &[&str]) -> Result<(), Error> {
    check_class_count(architecture, names.len())?;
    for (index, name) in names.iter().enumerate() {
        let earlier = names.iter().map(|name| name.as_bytes());
        check_class_name(index, name.as_bytes(), earlier)?;
    }
    Ok(())
}

impl F32Record<'_, '_> {
    /// The version the file is written in: 5 with a front end (6 when it
    /// computes the 16-bit FFT); else 4 with class names; without, 2 when the
    /// description fits it, else 3.
    pub const fn version(&self) -> u16 {
        if let Some(config) = &self.front_end {
            front_end_version(config)
        } else if !self.class_names.is_empty() {
            VERSION_4
        } else if self.architecture.needs_version_3() {
            VERSION_3
        } else {
            2
        }
    }

    fn encode_into(&self, out: Option<&mut [u8]>) -> Result<usize, Error> {
        if self.layers.len() != self.architecture.record_layers() {
            return Err(Error::TooLarge);
        }
        check_class_names_to_write(&self.architecture, self.class_names)?;
        if let Some(config) = &self.front_end {
            check_front_end(config, &self.architecture, None)?;
        }
        let version = self.version();
        encode_file(Flavour::F32, version, out, |sink| {
            sink.architecture(&self.architecture, version)?;
            self.layers
                .iter()
                .try_for_each(|layer| sink.record(layer))?;
            sink.tail(version, self.class_names, self.front_end.as_ref())
        })
    }
}

impl Int8Record<'_, '_> {
    /// The version the file is written in: 5 with a front end (6 when it
    /// computes the 16-bit FFT); else 4 with class names; without, 2 when the
    /// description and the input quantisation fit it, else 3.
    pub fn version(&self) -> u16 {
        if let Some(config) = &self.front_end {
            front_end_version(config)
        } else if !self.class_names.is_empty() {
            VERSION_4
        } else if self.architecture.needs_version_3() || self.input != QuantParams::INPUT {
            VERSION_3
        } else {
            2
        }
    }

    /// [`Int8Record::encode`] in format `version`: 3 for a description that version 2 could
    /// hold gives its dense layers TensorFlow Lite Micro's rounding (twice) instead of the
    /// desktop's; 4 without class names writes an empty class names section; 6 for a
    /// front end of the 32-bit FFT writes its arithmetic byte (32). A version below
    /// [`Int8Record::version`] (below 4 for a model with class names, below 5 with a front
    /// end, below 6 with a front end of the 16-bit FFT), or above [`VERSION`], is refused
    /// ([`Error::UnsupportedVersion`]); so are 5 and 6 without a front end, whose section
    /// those versions always hold.
    pub fn encode_as(&self, version: u16, out: &mut [u8]) -> Result<usize, Error> {
        self.encode_version(version, Some(out))
    }

    /// [`Int8Record::encode_as`] into a new `Vec`.
    #[cfg(feature = "std")]
    pub fn to_vec_as(&self, version: u16) -> Result<std::vec::Vec<u8>, Error> {
        let mut out = std::vec![0; self.encode_version(version, None)?];
        let written = self.encode_as(version, &mut out)?;
        out.truncate(written);
        Ok(out)
    }

    fn encode_into(&self, out: Option<&mut [u8]>) -> Result<usize, Error> {
        self.encode_version(self.version(), out)
    }

    fn encode_version(&self, version: u16, out: Option<&mut [u8]>) -> Result<usize, Error> {
        if self.layers.len() != self.architecture.record_layers() {
            return Err(Error::TooLarge);
        }
        let no_section = version >= VERSION_5 && self.front_end.is_none();
        if version < self.version() || version > VERSION || no_section {
            return Err(Error::UnsupportedVersion {
                found: version,
                newest: VERSION,
            });
        }
        check_class_names_to_write(&self.architecture, self.class_names)?;
        if let Some(config) = &self.front_end {
            check_front_end(config, &self.architecture, Some(self.input))?;
        }
        encode_file(Flavour::Int8, version, out, |sink| {
            sink.architecture(&self.architecture, version)?;
            sink.record(&self.input)?;
            self.layers
                .iter()
                .try_for_each(|layer| sink.record(layer))?;
            sink.tail(version, self.class_names, self.front_end.as_ref())
        })
    }
}

// ---------------------------------------------------------------------------
// Validation

/// Bytes a varint of `value` takes.
fn varint_len(value: usize) -> usize {
    let bits = usize::BITS - value.leading_zeros();
    (bits.max(1) as usize).div_ceil(7)
}

/// Bytes a byte string takes: its varint length, then the bytes.
fn bytes_len(bytes: &[u8]) -> usize {
    varint_len(bytes.len()) + bytes.len()
}

/// A stored record's length in its shortest encoding, to refuse any other.
trait Canonical {
    fn canonical_len(&self) -> usize;
}

impl Canonical for QuantParams {
    fn canonical_len(&self) -> usize {
        5
    }
}

impl Canonical for F32LayerRecord<'_> {
    fn canonical_len(&self) -> usize {
        bytes_len(self.weights) + bytes_len(self.bias)
    }
}

impl Canonical for Int8LayerRecord<'_> {
    fn canonical_len(&self) -> usize {
        self.output.canonical_len()
            + [
                self.weight_scales,
                self.weights,
                self.bias,
                self.multipliers,
                self.shifts,
            ]
            .iter()
            .map(|tensor| bytes_len(tensor))
            .sum::<usize>()
    }
}

/// Decodes one record at the start of `bytes`; returns it and the bytes
/// after it. The one place postcard decodes, shared by validation and
/// inference.
#[inline(never)]
fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<(T, &'a [u8])> {
    postcard::take_from_bytes::<T>(bytes).ok()
}

/// [`decode`], refusing a record that is not in its shortest encoding.
fn take_record<'a, T: Deserialize<'a> + Canonical>(
    bytes: &'a [u8],
) -> Result<(T, &'a [u8]), Error> {
    let (record, rest) = decode::<T>(bytes).ok_or(Error::Malformed)?;
    if bytes.len() - rest.len() != record.canonical_len() {
        return Err(Error::Malformed);
    }
    Ok((record, rest))
}

/// The records after the description, decoded one by one. Only used on
/// payloads that passed validation, where it cannot fail; it stops early if
/// it does.
#[derive(Clone, Debug)]
struct Records<'a, T> {
    rest: &'a [u8],
    _record: core::marker::PhantomData<T>,
}

impl<'a, T: Deserialize<'a>> Iterator for Records<'a, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        let (record, rest) = decode::<T>(self.rest)?;
        self.rest = rest;
        Some(record)
    }
}

fn check_len(
    layer: LayerName,
    tensor: TensorKind,
    bytes: &[u8],
    expected: usize,
) -> Result<(), Error> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(Error::TensorLength {
            layer,
            tensor,
            expected,
            found: bytes.len(),
        })
    }
}

fn check_finite_f32(layer: LayerName, tensor: TensorKind, bytes: &[u8]) -> Result<(), Error> {
    if bytes
        .as_chunks::<4>()
        .0
        .iter()
        .all(|&b| f32::from_le_bytes(b).is_finite())
    {
        Ok(())
    } else {
        Err(Error::NonFiniteValue { layer, tensor })
    }
}

fn valid_scale(scale: f32) -> bool {
    scale.is_finite() && scale > 0.0
}

fn check_f32_layer(info: &LayerInfo, stored: &F32LayerRecord<'_>) -> Result<(), Error> {
    let name = info.name;
    check_len(
        name,
        TensorKind::Weights,
        stored.weights,
        4 * info.weights(),
    )?;
    check_len(name, TensorKind::Bias, stored.bias, 4 * info.outputs())?;
    check_finite_f32(name, TensorKind::Weights, stored.weights)?;
    check_finite_f32(name, TensorKind::Bias, stored.bias)
}

/// The quantisation every int8 softmax writes: scale 1/256, zero point -128.
pub const SOFTMAX_OUTPUT: QuantParams = QuantParams {
    scale: 1.0 / 256.0,
    zero_point: -128,
};

/// Multipliers (and shifts) of an int8 addition's record: the block's
/// output, the shortcut, the sum.
pub const ADD_MULTIPLIERS: usize = 3;

fn check_int8_layer(info: &LayerInfo, stored: &Int8LayerRecord<'_>) -> Result<(), Error> {
    match info.layer {
        Layer::Add(_) => check_int8_add(info, stored),
        Layer::Softmax => check_int8_softmax(info, stored),
        _ => check_int8_weighted(info, stored),
    }
}

fn check_empty(name: LayerName, stored: &Int8LayerRecord<'_>) -> Result<(), Error> {
    check_len(name, TensorKind::Weights, stored.weights, 0)?;
    check_len(name, TensorKind::WeightScales, stored.weight_scales, 0)
}

fn check_multipliers(
    name: LayerName,
    stored: &Int8LayerRecord<'_>,
    shifts: core::ops::RangeInclusive<i32>,
) -> Result<(), Error> {
    let multipliers = stored.multipliers.as_chunks::<4>().0.iter();
    for (channel, (&multiplier, &shift)) in multipliers.zip(stored.shifts).enumerate() {
        let multiplier = i32::from_le_bytes(multiplier);
        let shift = shift as i8;
        if multiplier < 0 {
            return Err(Error::BadMultiplier {
                layer: name,
                channel,
                multiplier,
            });
        }
        if !shifts.contains(&i32::from(shift)) {
            return Err(Error::BadShift {
                layer: name,
                channel,
                shift,
            });
        }
    }
    Ok(())
}

/// An addition: multipliers and shifts of its two inputs and its sum, no
/// weights, no bias.
fn check_int8_add(info: &LayerInfo, stored: &Int8LayerRecord<'_>) -> Result<(), Error> {
    let name = info.name;
    check_empty(name, stored)?;
    check_len(name, TensorKind::Bias, stored.bias, 0)?;
    check_len(
        name,
        TensorKind::Multipliers,
        stored.multipliers,
        4 * ADD_MULTIPLIERS,
    )?;
    check_len(name, TensorKind::Shifts, stored.shifts, ADD_MULTIPLIERS)?;
    if !valid_scale(stored.output.scale) {
        return Err(Error::BadScale {
            layer: Some(name),
            tensor: None,
        });
    }
    check_multipliers(name, stored, MIN_SHIFT..=MAX_SHIFT)
}

/// A softmax: the input multiplier and left shift, and the smallest
/// difference from the maximum that counts (`diff_min`, in the bias, at most 0).
fn check_int8_softmax(info: &LayerInfo, stored: &Int8LayerRecord<'_>) -> Result<(), Error> {
    let name = info.name;
    check_empty(name, stored)?;
    check_len(name, TensorKind::Bias, stored.bias, 4)?;
    check_len(name, TensorKind::Multipliers, stored.multipliers, 4)?;
    check_len(name, TensorKind::Shifts, stored.shifts, 1)?;
    if stored.output != SOFTMAX_OUTPUT {
        return Err(Error::BadScale {
            layer: Some(name),
            tensor: None,
        });
    }
    let diff_min = stored
        .bias
        .first_chunk::<4>()
        .map_or(0, |bytes| i32::from_le_bytes(*bytes));
    if diff_min > 0 {
        return Err(Error::BadMultiplier {
            layer: name,
            channel: 0,
            multiplier: diff_min,
        });
    }
    check_multipliers(name, stored, 0..=31)
}

fn check_int8_weighted(info: &LayerInfo, stored: &Int8LayerRecord<'_>) -> Result<(), Error> {
    let (name, outputs) = (info.name, info.outputs());
    check_len(name, TensorKind::Weights, stored.weights, info.weights())?;
    check_len(
        name,
        TensorKind::WeightScales,
        stored.weight_scales,
        4 * outputs,
    )?;
    check_len(name, TensorKind::Bias, stored.bias, 4 * outputs)?;
    check_len(
        name,
        TensorKind::Multipliers,
        stored.multipliers,
        4 * outputs,
    )?;
    check_len(name, TensorKind::Shifts, stored.shifts, outputs)?;
    if !valid_scale(stored.output.scale) {
        return Err(Error::BadScale {
            layer: Some(name),
            tensor: None,
        });
    }
    let scales = stored.weight_scales.as_chunks::<4>().0;
    if !scales.iter().all(|&s| valid_scale(f32::from_le_bytes(s))) {
        return Err(Error::BadScale {
            layer: Some(name),
            tensor: Some(TensorKind::WeightScales),
        });
    }
    if stored.weights.contains(&(i8::MIN as u8)) {
        return Err(Error::WeightOutOfRange { layer: name });
    }
    check_multipliers(name, stored, MIN_SHIFT..=MAX_SHIFT)
}

/// Checks one record per layer that has one, each with `check`, then what
/// follows the last ([`take_tail`]); returns the records alone, the class
/// names and the front end.
fn check_records<'a, T: Deserialize<'a> + Canonical>(
    version: u16,
    architecture: &Architecture,
    input: Option<QuantParams>,
    records: &'a [u8],
    check: impl Fn(&LayerInfo, &T) -> Result<(), Error>,
) -> Result<(&'a [u8], ClassNames<'a>, Option<FrontEndConfig>), Error> {
    let mut rest = records;
    for info in architecture.iter().filter(|info| info.record.is_some()) {
        let (record, tail) = take_record::<T>(rest)?;
        check(&info, &record)?;
        rest = tail;
    }
    take_tail(version, architecture, input, records, rest)
}

// ---------------------------------------------------------------------------
// Models

/// A validated f32 network, borrowing its weights from the blob.
#[derive(Clone, Copy, Debug)]
pub struct F32Model<'a> {
    header: Header,
    architecture: Architecture,
    records: &'a [u8],
    class_names: ClassNames<'a>,
    front_end: Option<FrontEndConfig>,
}

impl<'a> F32Model<'a> {
    /// Loads an f32 model file; any other file is an [`Error`].
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        match Model::from_bytes(bytes)? {
            Model::F32(model) => Ok(model),
            Model::Int8(_) => Err(Error::WrongFlavour {
                expected: Flavour::F32,
                found: Flavour::Int8,
            }),
        }
    }

    fn from_payload(header: Header, payload: &'a [u8]) -> Result<Self, Error> {
        let (architecture, records) = decode_architecture(header.version, payload)?;
        let (records, class_names, front_end) = check_records(
            header.version,
            &architecture,
            None,
            records,
            check_f32_layer,
        )?;
        Ok(Self {
            header,
            architecture,
            records,
            class_names,
            front_end,
        })
    }

    /// The network.
    pub fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    /// The header (version, flavour, the CRC that identifies the file).
    pub fn header(&self) -> Header {
        self.header
    }

    /// The bytes every layer's tensors borrow from: a kernel that keeps data derived from
    /// the weights between calls (packed copies) may key it by a tensor's place in them.
    pub fn record_bytes(&self) -> &'a [u8] {
        self.records
    }

    /// The classes' names (version 4; empty if the file names none), borrowing
    /// from the blob.
    pub fn class_names(&self) -> ClassNames<'a> {
        self.class_names
    }

    /// The audio front end whose features the network reads (versions 5 and 6), or
    /// `None`: the input is whatever the network was trained on.
    pub fn front_end(&self) -> Option<FrontEndConfig> {
        self.front_end
    }

    /// One record per layer that has one ([`Layer::has_record`]; empty for
    /// additions and softmax), in order, borrowing from the blob.
    pub fn layers(&self) -> impl Iterator<Item = F32LayerRecord<'a>> + 'a {
        Records {
            rest: self.records,
            _record: core::marker::PhantomData,
        }
    }
}

/// A validated int8 network, borrowing its weights from the blob.
#[derive(Clone, Copy, Debug)]
pub struct Int8Model<'a> {
    header: Header,
    architecture: Architecture,
    input: QuantParams,
    records: &'a [u8],
    class_names: ClassNames<'a>,
    front_end: Option<FrontEndConfig>,
    /// The arena's layout for this target's fastest kernels, worked out once when loading
    /// (a search over the steps: too slow to repeat every inference on a microcontroller).
    layout: crate::plan::Layout,
    /// Whether the input quantisation takes every pixel `p` to `p - 128`, as
    /// [`QuantParams::INPUT`] does (a scale of 1/255 and zero point -128 in a file of version
    /// 3 or later, TensorFlow's usual for pictures): pixels are then quantised four at a time.
    pixels_flip_top_bit: bool,
    /// The dense weights widened to int16 ([`crate::widened`]), or nothing.
    widened_dense: &'a [u8],
    /// Each pixel value's quantisation ([`Int8Model::with_pixel_table`]), or nothing.
    pixel_table: Option<&'a [u8; 256]>,
    /// On targets with the Arm DSP kernels, the requantisation path of each dense layer, by
    /// record (0: decided as it runs), worked out once when loading rather than in every
    /// inference.
    #[cfg(tinycnn_arm_dsp)]
    dense_paths: [u8; crate::arch::MAX_LAYERS],
}

impl<'a> Int8Model<'a> {
    /// Loads an int8 model file; any other file is an [`Error`].
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        // Not through `Model`: on a microcontroller every copy of a description takes a few
        // hundred bytes of stack.
        let (header, payload) = split_header(bytes)?;
        match header.flavour {
            Flavour::Int8 => Self::from_payload(header, payload),
            Flavour::F32 => {
                // The payload must still be a valid f32 model for this error.
                F32Model::from_payload(header, payload)?;
                Err(Error::WrongFlavour {
                    expected: Flavour::Int8,
                    found: Flavour::F32,
                })
            }
        }
    }

    fn from_payload(header: Header, payload: &'a [u8]) -> Result<Self, Error> {
        let mut model = Self {
            header,
            architecture: Architecture::empty(Shape::new(0, 0, 0), OutputKind::Classes),
            input: QuantParams::INPUT,
            records: &[],
            class_names: ClassNames::NONE,
            front_end: None,
            layout: crate::plan::Layout::EMPTY,
            pixels_flip_top_bit: true,
            widened_dense: &[],
            pixel_table: None,
            #[cfg(tinycnn_arm_dsp)]
            dense_paths: [0; crate::arch::MAX_LAYERS],
        };
        let rest = decode_architecture_into(header.version, payload, &mut model.architecture)?;
        let (input, records) = take_record::<QuantParams>(rest)?;
        // Versions 1 and 2 take pixels only; version 3 any valid quantisation.
        if header.version < VERSION_3 && input != QuantParams::INPUT {
            return Err(Error::UnsupportedInputQuantization);
        }
        if !valid_scale(input.scale) {
            return Err(Error::BadScale {
                layer: None,
                tensor: None,
            });
        }
        let (records, class_names, front_end) = check_records(
            header.version,
            &model.architecture,
            Some(input),
            records,
            check_int8_layer,
        )?;
        model.input = input;
        model.records = records;
        model.class_names = class_names;
        model.front_end = front_end;
        model.layout = crate::plan::layout(&model.architecture, crate::plan::FASTEST_DSP);
        model.pixels_flip_top_bit = input == QuantParams::INPUT
            || (0..=u8::MAX)
                .all(|pixel| crate::network::quantize_pixel(pixel, &input) == (pixel ^ 0x80) as i8);
        #[cfg(tinycnn_arm_dsp)]
        {
            model.dense_paths = crate::kernels::dsp::decide_dense_paths(&model);
        }
        Ok(model)
    }

    /// The network.
    pub fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    /// The header (version, flavour, the CRC that identifies the file).
    pub fn header(&self) -> Header {
        self.header
    }

    /// The arena's layout for `backend`'s kernels ([`crate::plan::layout`]): the one worked
    /// out when the model was loaded for this target's fastest kernels, or worked out now.
    /// Never larger than the fastest kernels' ([`Int8Model::scratch_bytes`]): the portable
    /// kernels run in the Arm DSP kernels' layout (leaving its work areas alone) when theirs
    /// would be larger.
    pub fn layout(&self, backend: crate::kernels::int8::Backend) -> crate::plan::Layout {
        let dsp = crate::plan::backend_uses_dsp(backend);
        if dsp == self.layout.dsp {
            return self.layout;
        }
        let layout = crate::plan::layout(&self.architecture, dsp);
        if !dsp && layout.arena() > self.layout.arena() {
            self.layout
        } else {
            layout
        }
    }

    /// Quantisation of the input ([`QuantParams::INPUT`] in versions 1 and 2).
    pub fn input_quantization(&self) -> QuantParams {
        self.input
    }

    /// Whether the input quantisation takes every pixel `p` to `p - 128` (flips its top bit).
    pub(crate) fn pixels_flip_top_bit(&self) -> bool {
        self.pixels_flip_top_bit
    }

    /// The classes' names (version 4; empty if the file names none), borrowing
    /// from the blob: `model.class_names().get(prediction.class)`.
    pub fn class_names(&self) -> ClassNames<'a> {
        self.class_names
    }

    /// The audio front end whose features the network reads (versions 5 and 6), or
    /// `None`. Its output quantisation is the input's
    /// ([`Int8Model::input_quantization`]): its bytes are the network's input.
    pub fn front_end(&self) -> Option<FrontEndConfig> {
        self.front_end
    }

    /// The bytes every layer's tensors borrow from; see [`F32Model::record_bytes`].
    pub fn record_bytes(&self) -> &'a [u8] {
        self.records
    }

    /// One record per layer that has one ([`Layer::has_record`]), in order,
    /// borrowing from the blob.
    pub fn layers(&self) -> impl Iterator<Item = Int8LayerRecord<'a>> + Clone + 'a {
        Records {
            rest: self.records,
            _record: core::marker::PhantomData,
        }
    }

    /// Quantisation of the output (the last record's output: pools keep
    /// their input's quantisation).
    pub fn logits_quantization(&self) -> QuantParams {
        self.layers().last().map_or(self.input, |last| last.output)
    }

    /// The model with its dense weights widened to int16 in `table` ([`crate::widened`]),
    /// which the Arm DSP kernels compiled with the crate's `widened-dense` feature then read
    /// instead of the int8 weights: the same outputs in fewer instructions. Other kernels
    /// ignore the table. An error if the table was
    /// made for another model or has the wrong length; a table that does not start on a
    /// 4-byte boundary is accepted and left unused.
    pub fn with_widened_dense(self, table: &'a [u8]) -> Result<Self, Error> {
        crate::widened::check_table(&self, table)?;
        Ok(Self {
            widened_dense: table,
            ..self
        })
    }

    /// The DSP requantisation path decided for the dense layer of record `index` when
    /// loading, or 0.
    pub(crate) fn dense_path(&self, index: usize) -> u8 {
        #[cfg(tinycnn_arm_dsp)]
        return self.dense_paths.get(index).copied().unwrap_or(0);
        #[cfg(not(tinycnn_arm_dsp))]
        {
            let _ = index;
            0
        }
    }

    /// The table [`with_pixel_table`](Self::with_pixel_table) gave.
    pub(crate) fn pixel_table(&self) -> Option<&'a [u8; 256]> {
        self.pixel_table
    }

    /// Each pixel value's quantisation (as `i8` bytes), for a model whose input quantisation
    /// does more than flip a pixel's top bit; `None` for the others, whose pixels cost next
    /// to nothing. An inference otherwise works the table out again (256 quantisations, each
    /// two float divisions): a firmware can keep it in flash
    /// ([`with_pixel_table`](Self::with_pixel_table)).
    pub fn pixel_quantization(&self) -> Option<[u8; 256]> {
        (!self.pixels_flip_top_bit).then(|| crate::network::pixel_table(&self.input))
    }

    /// The model with its [`pixel_quantization`](Self::pixel_quantization) table kept
    /// elsewhere (in flash), which inferences then read instead of working it out.
    /// [`Error::PixelTableForAnotherModel`] unless `table` is this model's table (checked by
    /// working it out once).
    pub fn with_pixel_table(self, table: &'a [u8; 256]) -> Result<Self, Error> {
        if self.pixel_quantization().as_ref() != Some(table) {
            return Err(Error::PixelTableForAnotherModel);
        }
        Ok(Self {
            pixel_table: Some(table),
            ..self
        })
    }

    /// The table [`with_widened_dense`](Self::with_widened_dense) gave, or an empty slice.
    pub fn widened_dense(&self) -> &'a [u8] {
        self.widened_dense
    }
}

/// A validated model of either flavour.
#[derive(Clone, Copy, Debug)]
pub enum Model<'a> {
    /// An f32 model.
    F32(F32Model<'a>),
    /// An int8 model.
    Int8(Int8Model<'a>),
}

impl<'a> Model<'a> {
    /// Parses and validates a model file without copying its tensors.
    ///
    /// ```
    /// # fn main() -> Result<(), tinycnn::Error> {
    /// let bytes = [0u8; 8]; // not a model
    /// assert_eq!(
    ///     tinycnn::Model::from_bytes(&bytes).unwrap_err(),
    ///     tinycnn::Error::Truncated { needed: 16, available: 8 },
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        let (header, payload) = split_header(bytes)?;
        match header.flavour {
            Flavour::F32 => F32Model::from_payload(header, payload).map(Model::F32),
            Flavour::Int8 => Int8Model::from_payload(header, payload).map(Model::Int8),
        }
    }

    /// The model's flavour.
    pub fn flavour(&self) -> Flavour {
        match self {
            Model::F32(_) => Flavour::F32,
            Model::Int8(_) => Flavour::Int8,
        }
    }

    /// The network.
    pub fn architecture(&self) -> &Architecture {
        match self {
            Model::F32(model) => model.architecture(),
            Model::Int8(model) => model.architecture(),
        }
    }

    /// The header.
    pub fn header(&self) -> Header {
        match self {
            Model::F32(model) => model.header(),
            Model::Int8(model) => model.header(),
        }
    }

    /// The classes' names (version 4; empty if the file names none).
    pub fn class_names(&self) -> ClassNames<'a> {
        match self {
            Model::F32(model) => model.class_names(),
            Model::Int8(model) => model.class_names(),
        }
    }

    /// The audio front end whose features the network reads (versions 5 and 6), or
    /// `None`.
    pub fn front_end(&self) -> Option<FrontEndConfig> {
        match self {
            Model::F32(model) => model.front_end(),
            Model::Int8(model) => model.front_end(),
        }
    }
}
