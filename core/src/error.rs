//! The one error type of the crate: loading (or encoding) a model or
//! test-vector blob, and the few things a caller can get wrong when running a
//! model (the image's length, the scratch's size).

use crate::arch::{ArchError, LayerName};
use crate::audio::FrontEndError;
use crate::format::Flavour;
use core::fmt;

/// Which tensor of a layer an [`Error`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)] // The names are the documentation.
pub enum TensorKind {
    Weights,
    Bias,
    WeightScales,
    Multipliers,
    Shifts,
}

impl TensorKind {
    /// Lower-case name as in `FORMAT.md`.
    pub const fn name(self) -> &'static str {
        match self {
            TensorKind::Weights => "weights",
            TensorKind::Bias => "bias",
            TensorKind::WeightScales => "weight_scales",
            TensorKind::Multipliers => "multipliers",
            TensorKind::Shifts => "shifts",
        }
    }
}

/// What is wrong with a version 4 file's class names ([`Error::BadClassNames`]),
/// in the order the loader checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClassNameProblem {
    /// Names on a network whose output is values, not classes.
    NotClassifier,
    /// The file names another number of classes than the network has.
    Count {
        /// Names in the file.
        names: usize,
        /// Classes of the network (its output's values).
        classes: usize,
    },
    /// A name of 0 bytes.
    Empty,
    /// A name longer than [`crate::format::MAX_CLASS_NAME`] bytes.
    TooLong {
        /// The name's length in bytes.
        length: usize,
    },
    /// A name that is not valid UTF-8.
    NotUtf8,
    /// A name holding an ASCII control character (a byte below `0x20`, or `0x7f`).
    ControlCharacter {
        /// The first such byte.
        byte: u8,
    },
    /// A name equal to an earlier one.
    Duplicate {
        /// The earlier name's index.
        first: usize,
    },
}

/// What is wrong with a version 5 or 6 file's front-end section
/// ([`Error::BadFrontEnd`]), in the order the loader checks.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrontEndProblem {
    /// A field outside its range ([`crate::audio::FrontEndConfig::validate`]).
    Config(FrontEndError),
    /// The network's input does not take whole frames: its width times its
    /// channels must be the front end's features per frame.
    InputShape {
        /// int8 values the front end gives per frame.
        features_per_frame: usize,
        /// The input's width.
        width: usize,
        /// The input's channels.
        channels: usize,
    },
    /// An int8 network whose input is not quantised as the front end's output:
    /// it would read the features on another scale.
    InputQuantization {
        /// The front end's output scale.
        front_end_scale: f32,
        /// The front end's output zero point.
        front_end_zero_point: i8,
        /// The network's input scale.
        input_scale: f32,
        /// The network's input zero point.
        input_zero_point: i8,
    },
}

/// Why a blob was rejected (in the order the loader checks: header,
/// checksum, description, then each layer's tensors, then a version 4 to 6
/// file's class names, then a version 5 or 6 file's front end), or a model could
/// not run.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The blob ends before the header or the payload the header announces.
    Truncated {
        /// Bytes the header (or header + payload) needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The blob is longer than header + payload.
    TrailingBytes {
        /// Bytes after the payload.
        extra: usize,
    },
    /// The first four bytes are not the format's magic.
    BadMagic {
        /// What was found instead.
        found: [u8; 4],
    },
    /// A format version this build cannot read.
    UnsupportedVersion {
        /// Version in the header.
        found: u16,
        /// Newest version this build reads.
        newest: u16,
    },
    /// The flavour byte is neither f32 (1) nor int8 (2).
    UnknownFlavour {
        /// The byte found.
        found: u8,
    },
    /// A valid model, but not the flavour the caller asked for.
    WrongFlavour {
        /// Flavour asked for.
        expected: Flavour,
        /// Flavour in the file.
        found: Flavour,
    },
    /// A reserved header field is not zero.
    ReservedByteSet {
        /// The byte found.
        found: u8,
    },
    /// The CRC-32 in the header differs from the file's: the file is damaged.
    ChecksumMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the file as read.
        computed: u32,
    },
    /// The network description at this payload offset cannot be decoded (an
    /// unknown layer tag, a value too large for its field, a varint that is
    /// cut short or longer than needed).
    BadDescription {
        /// Byte offset in the payload.
        offset: usize,
    },
    /// The description decodes, but is not a valid network.
    Architecture(ArchError),
    /// A version 1 file that does not hold the reference network (the only
    /// network version 1 describes).
    NotReferenceNetwork,
    /// The layer records (or a version 4 to 6 file's class names section, or a
    /// version 5 or 6 file's front-end section) are not a valid encoding: cut
    /// short, with bytes left over, or not in their shortest (canonical) form.
    Malformed,
    /// A tensor has the wrong number of bytes.
    TensorLength {
        /// Layer.
        layer: LayerName,
        /// Tensor of that layer.
        tensor: TensorKind,
        /// Bytes expected.
        expected: usize,
        /// Bytes found.
        found: usize,
    },
    /// An f32 weight or bias is NaN or infinite.
    NonFiniteValue {
        /// Layer.
        layer: LayerName,
        /// Tensor of that layer.
        tensor: TensorKind,
    },
    /// An int8 weight is -128, outside the symmetric range -127..=127.
    WeightOutOfRange {
        /// Layer.
        layer: LayerName,
    },
    /// A scale is zero, negative, NaN or infinite (`layer` is `None` for the
    /// input's scale).
    BadScale {
        /// Layer whose output or weight scale is wrong, `None` for the input.
        layer: Option<LayerName>,
        /// `WeightScales`, or `None` for an activation scale.
        tensor: Option<TensorKind>,
    },
    /// A requantisation multiplier is negative.
    BadMultiplier {
        /// Layer.
        layer: LayerName,
        /// Output channel.
        channel: usize,
        /// The multiplier.
        multiplier: i32,
    },
    /// A requantisation shift is outside `-31..=30`.
    BadShift {
        /// Layer.
        layer: LayerName,
        /// Output channel.
        channel: usize,
        /// The shift.
        shift: i8,
    },
    /// A version 1 or 2 int8 file whose input is not quantised as scale
    /// 1/255, zero point -128 (the only input quantisation those versions
    /// have; version 3 takes any).
    UnsupportedInputQuantization,
    /// A version 1 or 2 file whose description holds what only version 3
    /// has (new layers or options, an input of other than 1 or 3 channels, an
    /// output of values): the older versions never said it.
    NotInVersion {
        /// The file's version.
        version: u16,
    },
    /// A version 4 file's class names are not valid: the section as a whole
    /// (`index` `None`: names on a network without classes, or not one per
    /// class) or the name at `index` (0-based).
    BadClassNames {
        /// The name's 0-based index, `None` for the count.
        index: Option<usize>,
        /// What is wrong.
        problem: ClassNameProblem,
    },
    /// A version 5 or 6 file's front-end section is not valid for the network.
    BadFrontEnd(FrontEndProblem),
    /// Running: the model has a layer whose kernel this program left out
    /// ([`crate::Int8Model::classify_with_tutorial_layers`]).
    NotLinked,
    /// Running: the image does not have the model's input size.
    InputLength {
        /// Bytes the model's input has (height x width x channels).
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// Running: the scratch is smaller than the model needs.
    ScratchTooSmall {
        /// Units needed (bytes for int8, `f32` values for f32).
        needed: usize,
        /// Units given.
        available: usize,
    },
    /// Test vectors whose records do not fit the model: another input size
    /// or class count, or written for another model file.
    VectorsForAnotherModel {
        /// CRC of the model the vectors were written for.
        vectors_model: u32,
        /// CRC of the model at hand.
        model: u32,
    },
    /// A widened dense table ([`crate::widened`]) made for another model file.
    WidenedForAnotherModel {
        /// CRC of the model the table was made for.
        table_model: u32,
        /// CRC of the model at hand.
        model: u32,
    },
    /// A widened dense table of another length than the model's dense layers need.
    WidenedTableLength {
        /// Bytes the model's table has.
        needed: usize,
        /// Bytes given.
        found: usize,
    },
    /// A pixel table ([`crate::Int8Model::with_pixel_table`]) that is not the model's input
    /// quantisation.
    PixelTableForAnotherModel,
    /// Encoding: the output buffer is smaller than the encoded blob.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// Encoding: the payload does not fit the header's 32-bit length, or a
    /// record list does not match the description.
    TooLarge,
}

impl Error {
    /// The variant's name, the layer it concerns and its numbers (at most
    /// three), for logs that cannot afford `Display`.
    #[cfg(feature = "defmt")]
    fn parts(&self) -> (&'static str, Option<LayerName>, [Option<i64>; 3]) {
        fn n(value: impl Into<i64>) -> Option<i64> {
            Some(value.into())
        }
        fn size(value: usize) -> Option<i64> {
            i64::try_from(value).ok()
        }
        const NONE: [Option<i64>; 3] = [None; 3];
        match *self {
            Error::Truncated { needed, available } => {
                ("Truncated", None, [size(needed), size(available), None])
            }
            Error::TrailingBytes { extra } => ("TrailingBytes", None, [size(extra), None, None]),
            Error::BadMagic { found } => {
                ("BadMagic", None, [n(u32::from_le_bytes(found)), None, None])
            }
            Error::UnsupportedVersion { found, newest } => {
                ("UnsupportedVersion", None, [n(found), n(newest), None])
            }
            Error::UnknownFlavour { found } => ("UnknownFlavour", None, [n(found), None, None]),
            Error::WrongFlavour { expected, found } => (
                "WrongFlavour",
                None,
                [n(expected as u8), n(found as u8), None],
            ),
            Error::ReservedByteSet { found } => ("ReservedByteSet", None, [n(found), None, None]),
            Error::ChecksumMismatch { stored, computed } => {
                ("ChecksumMismatch", None, [n(stored), n(computed), None])
            }
            Error::BadDescription { offset } => {
                ("BadDescription", None, [size(offset), None, None])
            }
            Error::Architecture(error) => (
                "Architecture",
                error.name,
                [error.index.and_then(size), None, None],
            ),
            Error::NotReferenceNetwork => ("NotReferenceNetwork", None, NONE),
            Error::NotInVersion { version } => ("NotInVersion", None, [n(version), None, None]),
            Error::BadClassNames { index, problem } => {
                let index = index.and_then(size);
                match problem {
                    ClassNameProblem::NotClassifier => ("BadClassNames NotClassifier", None, NONE),
                    ClassNameProblem::Count { names, classes } => (
                        "BadClassNames Count",
                        None,
                        [size(names), size(classes), None],
                    ),
                    ClassNameProblem::Empty => ("BadClassNames Empty", None, [index, None, None]),
                    ClassNameProblem::TooLong { length } => {
                        ("BadClassNames TooLong", None, [index, size(length), None])
                    }
                    ClassNameProblem::NotUtf8 => {
                        ("BadClassNames NotUtf8", None, [index, None, None])
                    }
                    ClassNameProblem::ControlCharacter { byte } => (
                        "BadClassNames ControlCharacter",
                        None,
                        [index, n(byte), None],
                    ),
                    ClassNameProblem::Duplicate { first } => {
                        ("BadClassNames Duplicate", None, [index, size(first), None])
                    }
                }
            }
            Error::BadFrontEnd(problem) => match problem {
                FrontEndProblem::Config(_) => ("BadFrontEnd Config", None, NONE),
                FrontEndProblem::InputShape {
                    features_per_frame,
                    width,
                    channels,
                } => (
                    "BadFrontEnd InputShape",
                    None,
                    [size(features_per_frame), size(width), size(channels)],
                ),
                FrontEndProblem::InputQuantization {
                    front_end_zero_point,
                    input_zero_point,
                    ..
                } => (
                    "BadFrontEnd InputQuantization",
                    None,
                    [n(front_end_zero_point), n(input_zero_point), None],
                ),
            },
            Error::NotLinked => ("NotLinked", None, NONE),
            Error::Malformed => ("Malformed", None, NONE),
            Error::TensorLength {
                layer,
                tensor,
                expected,
                found,
            } => (
                "TensorLength",
                Some(layer),
                [n(tensor as u8), size(expected), size(found)],
            ),
            Error::NonFiniteValue { layer, tensor } => {
                ("NonFiniteValue", Some(layer), [n(tensor as u8), None, None])
            }
            Error::WeightOutOfRange { layer } => ("WeightOutOfRange", Some(layer), NONE),
            Error::BadScale { layer, tensor } => (
                "BadScale",
                layer,
                [tensor.map(|t| i64::from(t as u8)), None, None],
            ),
            Error::BadMultiplier {
                layer,
                channel,
                multiplier,
            } => (
                "BadMultiplier",
                Some(layer),
                [size(channel), n(multiplier), None],
            ),
            Error::BadShift {
                layer,
                channel,
                shift,
            } => ("BadShift", Some(layer), [size(channel), n(shift), None]),
            Error::UnsupportedInputQuantization => ("UnsupportedInputQuantization", None, NONE),
            Error::InputLength { expected, found } => {
                ("InputLength", None, [size(expected), size(found), None])
            }
            Error::ScratchTooSmall { needed, available } => (
                "ScratchTooSmall",
                None,
                [size(needed), size(available), None],
            ),
            Error::VectorsForAnotherModel {
                vectors_model,
                model,
            } => (
                "VectorsForAnotherModel",
                None,
                [n(vectors_model), n(model), None],
            ),
            Error::WidenedForAnotherModel { table_model, model } => (
                "WidenedForAnotherModel",
                None,
                [n(table_model), n(model), None],
            ),
            Error::WidenedTableLength { needed, found } => (
                "WidenedTableLength",
                None,
                [size(needed), size(found), None],
            ),
            Error::PixelTableForAnotherModel => ("PixelTableForAnotherModel", None, NONE),
            Error::BufferTooSmall { needed, available } => (
                "BufferTooSmall",
                None,
                [size(needed), size(available), None],
            ),
            Error::TooLarge => ("TooLarge", None, NONE),
        }
    }
}

/// One compact form for every variant (its name, the layer, its numbers):
/// derived per-variant formatting would cost firmware over a kilobyte of
/// flash for messages that only appear on a bad blob.
#[cfg(feature = "defmt")]
impl defmt::Format for Error {
    fn format(&self, f: defmt::Formatter<'_>) {
        let (name, layer, numbers) = self.parts();
        defmt::write!(f, "{=str}", name);
        if let Some(layer) = layer {
            defmt::write!(f, " in {}", layer);
        }
        for number in numbers.into_iter().flatten() {
            defmt::write!(f, " {=i64}", number);
        }
    }
}

impl From<ArchError> for Error {
    fn from(error: ArchError) -> Self {
        Error::Architecture(error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { needed, available } => {
                write!(
                    f,
                    "file truncated: {available} bytes, at least {needed} needed"
                )
            }
            Error::TrailingBytes { extra } => {
                write!(f, "file has {extra} unexpected bytes after its payload")
            }
            Error::BadMagic { found } => match &found {
                b"TCNN" => f.write_str("a model file (TCNN) where test vectors were expected"),
                b"TCTV" => f.write_str("a test-vector file (TCTV) where a model was expected"),
                _ => {
                    write!(
                        f,
                        "not a tinycnn file: it starts with {:02x} {:02x} {:02x} {:02x}",
                        found[0], found[1], found[2], found[3]
                    )?;
                    if found.iter().all(|byte| byte.is_ascii_graphic()) {
                        let text = core::str::from_utf8(&found).unwrap_or_default();
                        write!(f, " (\"{text}\")")?;
                    }
                    Ok(())
                }
            },
            Error::UnsupportedVersion { found, newest } => write!(
                f,
                "format version {found} is not supported (this build reads versions 1 to {newest})"
            ),
            Error::UnknownFlavour { found } => {
                write!(f, "unknown model flavour {found} (1 = f32, 2 = int8)")
            }
            Error::WrongFlavour { expected, found } => write!(
                f,
                "expected the {} flavour of the model file, found the {} flavour",
                expected.name(),
                found.name()
            ),
            Error::ReservedByteSet { found } => {
                write!(f, "reserved header byte is {found}, must be 0")
            }
            Error::ChecksumMismatch { stored, computed } => write!(
                f,
                "file is corrupted: its CRC-32 is {computed:08x}, the header says {stored:08x}"
            ),
            Error::BadDescription { offset } => write!(
                f,
                "the network description cannot be decoded (payload byte {offset})"
            ),
            Error::Architecture(error) => write!(f, "the network is not valid: {error}"),
            Error::NotReferenceNetwork => write!(
                f,
                "a version 1 model must hold the reference network (28x28x1, conv 64/128/256, \
                 dense 128/64/32/10)"
            ),
            Error::Malformed => write!(f, "model payload is malformed (not a valid encoding)"),
            Error::TensorLength {
                layer,
                tensor,
                expected,
                found,
            } => write!(
                f,
                "{layer} {} has {found} bytes, expected {expected}",
                tensor.name()
            ),
            Error::NonFiniteValue { layer, tensor } => {
                write!(f, "{layer} {} contains NaN or infinity", tensor.name())
            }
            Error::WeightOutOfRange { layer } => write!(
                f,
                "{layer} weights contain -128 (int8 weights must be symmetric, -127..=127)"
            ),
            Error::BadScale { layer, tensor } => {
                let tensor = tensor.map_or("output scale", |_| "weight scale");
                match layer {
                    Some(layer) => write!(f, "{layer} {tensor} is not a positive finite number"),
                    None => write!(f, "input {tensor} is not a positive finite number"),
                }
            }
            Error::BadMultiplier {
                layer,
                channel,
                multiplier,
            } => write!(
                f,
                "{layer} channel {channel}: multiplier {multiplier} is negative"
            ),
            Error::BadShift {
                layer,
                channel,
                shift,
            } => write!(
                f,
                "{layer} channel {channel}: shift {shift} is outside -31..=30"
            ),
            Error::UnsupportedInputQuantization => write!(
                f,
                "a version 1 or 2 int8 model's input must be quantised with scale 1/255 and \
                 zero point -128"
            ),
            Error::BadClassNames { index, problem } => {
                let index = index.unwrap_or(0);
                match problem {
                    ClassNameProblem::NotClassifier => f.write_str(
                        "the file names classes, but the network's output is values, not classes",
                    ),
                    ClassNameProblem::Count { names, classes } => write!(
                        f,
                        "the file names {names} classes, but the network has {classes}"
                    ),
                    ClassNameProblem::Empty => write!(f, "class name {index} is empty"),
                    ClassNameProblem::TooLong { length } => write!(
                        f,
                        "class name {index} has {length} bytes, at most {} are allowed",
                        crate::format::MAX_CLASS_NAME
                    ),
                    ClassNameProblem::NotUtf8 => {
                        write!(f, "class name {index} is not valid UTF-8")
                    }
                    ClassNameProblem::ControlCharacter { byte } => write!(
                        f,
                        "class name {index} holds the control character 0x{byte:02x}"
                    ),
                    ClassNameProblem::Duplicate { first } => {
                        write!(f, "class name {index} repeats class name {first}")
                    }
                }
            }
            Error::BadFrontEnd(problem) => match problem {
                FrontEndProblem::Config(error) => {
                    write!(f, "the audio front end is not valid: {error}")
                }
                FrontEndProblem::InputShape {
                    features_per_frame,
                    width,
                    channels,
                } => write!(
                    f,
                    "the audio front end gives {features_per_frame} features per frame, but the \
                     network's input rows hold {width} x {channels}"
                ),
                FrontEndProblem::InputQuantization {
                    front_end_scale,
                    front_end_zero_point,
                    input_scale,
                    input_zero_point,
                } => write!(
                    f,
                    "the network's input is quantised with scale {input_scale} and zero point \
                     {input_zero_point}, but its audio front end outputs scale {front_end_scale} \
                     and zero point {front_end_zero_point}"
                ),
            },
            Error::NotLinked => write!(
                f,
                "the model has layers whose kernels this program was built without"
            ),
            Error::NotInVersion { version } => write!(
                f,
                "the description holds layers or options that format version {version} does \
                 not have (they need version 3)"
            ),
            Error::InputLength { expected, found } => write!(
                f,
                "the image has {found} values, the model's input has {expected}"
            ),
            Error::ScratchTooSmall { needed, available } => write!(
                f,
                "scratch of {available} is too small, the model needs {needed}"
            ),
            Error::VectorsForAnotherModel {
                vectors_model,
                model,
            } => write!(
                f,
                "the test vectors were written for the model with CRC {vectors_model:08x}, \
                 not for this one ({model:08x}): write them again with `host fixture`"
            ),
            Error::WidenedForAnotherModel { table_model, model } => write!(
                f,
                "the widened dense table was made for the model with CRC {table_model:08x}, \
                 not for this one ({model:08x}): build it again from this model"
            ),
            Error::WidenedTableLength { needed, found } => write!(
                f,
                "the widened dense table has {found} bytes, this model's needs {needed}"
            ),
            Error::PixelTableForAnotherModel => write!(
                f,
                "the pixel table is not this model's input quantisation: build it again from \
                 this model"
            ),
            Error::BufferTooSmall { needed, available } => {
                write!(
                    f,
                    "output buffer of {available} bytes is too small, {needed} needed"
                )
            }
            Error::TooLarge => write!(
                f,
                "cannot encode: the payload exceeds 4 GiB or the layers do not match the description"
            ),
        }
    }
}

impl core::error::Error for Error {}
