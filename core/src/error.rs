//! The one error type of the crate: loading (or encoding) a model blob.

use crate::arch::Layer;
use crate::format::{Architecture, Flavour};
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

/// Why a model blob was rejected, in the order the loader checks: header,
/// checksum, payload encoding, architecture, then each layer's tensors.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// The first four bytes are not `TCNN`.
    BadMagic {
        /// What was found instead.
        found: [u8; 4],
    },
    /// A format version this build cannot read.
    UnsupportedVersion {
        /// Version in the header.
        found: u16,
        /// Version this build reads.
        supported: u16,
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
    /// The reserved header byte is not zero.
    ReservedByteSet {
        /// The byte found.
        found: u8,
    },
    /// The CRC-32 of the payload differs from the header's: the file is
    /// damaged.
    ChecksumMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the payload as read.
        computed: u32,
    },
    /// The payload is not a valid postcard encoding of the flavour's record
    /// (or has bytes left over after it).
    Malformed,
    /// The file describes a network other than the one this crate runs.
    UnsupportedArchitecture {
        /// The architecture in the file.
        found: Architecture,
    },
    /// A tensor has the wrong number of bytes.
    TensorLength {
        /// Layer.
        layer: Layer,
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
        layer: Layer,
        /// Tensor of that layer.
        tensor: TensorKind,
    },
    /// An int8 weight is -128, outside the symmetric range -127..=127.
    WeightOutOfRange {
        /// Layer.
        layer: Layer,
    },
    /// A scale is zero, negative, NaN or infinite (`layer` is `None` for the
    /// input's scale).
    BadScale {
        /// Layer whose output or weight scale is wrong, `None` for the input.
        layer: Option<Layer>,
        /// `WeightScales`, or `None` for an activation scale.
        tensor: Option<TensorKind>,
    },
    /// A requantisation multiplier is negative.
    BadMultiplier {
        /// Layer.
        layer: Layer,
        /// Output channel.
        channel: usize,
        /// The multiplier.
        multiplier: i32,
    },
    /// A requantisation shift is outside `-31..=30`.
    BadShift {
        /// Layer.
        layer: Layer,
        /// Output channel.
        channel: usize,
        /// The shift.
        shift: i8,
    },
    /// The int8 input is not quantised as scale 1/255, zero point -128 (the
    /// only input quantisation the runner implements: it maps a pixel `p` to
    /// `p - 128` exactly).
    UnsupportedInputQuantization,
    /// Encoding: the output buffer is smaller than the encoded model.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// Encoding: the payload does not fit the header's 32-bit length.
    TooLarge,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { needed, available } => {
                write!(
                    f,
                    "model file truncated: {available} bytes, at least {needed} needed"
                )
            }
            Error::TrailingBytes { extra } => {
                write!(
                    f,
                    "model file has {extra} unexpected bytes after its payload"
                )
            }
            Error::BadMagic { found } => write!(
                f,
                "not a tinycnn model file: magic {:02x}{:02x}{:02x}{:02x}, expected \"TCNN\"",
                found[0], found[1], found[2], found[3]
            ),
            Error::UnsupportedVersion { found, supported } => write!(
                f,
                "model format version {found} is not supported (this build reads version {supported})"
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
                "model file is corrupted: payload CRC-32 is {computed:08x}, header says {stored:08x}"
            ),
            Error::Malformed => write!(f, "model payload is malformed (not a valid encoding)"),
            Error::UnsupportedArchitecture { found } => write!(
                f,
                "model describes another network (input {:?}, conv {:?}, dense {:?})",
                found.input, found.conv_channels, found.dense_units
            ),
            Error::TensorLength {
                layer,
                tensor,
                expected,
                found,
            } => write!(
                f,
                "{} {} has {found} bytes, expected {expected}",
                layer.name(),
                tensor.name()
            ),
            Error::NonFiniteValue { layer, tensor } => {
                write!(
                    f,
                    "{} {} contains NaN or infinity",
                    layer.name(),
                    tensor.name()
                )
            }
            Error::WeightOutOfRange { layer } => write!(
                f,
                "{} weights contain -128 (int8 weights must be symmetric, -127..=127)",
                layer.name()
            ),
            Error::BadScale { layer, tensor } => {
                let layer = layer.map_or("input", Layer::name);
                let tensor = tensor.map_or("output scale", |_| "weight scale");
                write!(f, "{layer} {tensor} is not a positive finite number")
            }
            Error::BadMultiplier {
                layer,
                channel,
                multiplier,
            } => write!(
                f,
                "{} channel {channel}: multiplier {multiplier} is negative",
                layer.name()
            ),
            Error::BadShift {
                layer,
                channel,
                shift,
            } => write!(
                f,
                "{} channel {channel}: shift {shift} is outside -31..=30",
                layer.name()
            ),
            Error::UnsupportedInputQuantization => write!(
                f,
                "int8 input must be quantised with scale 1/255 and zero point -128"
            ),
            Error::BufferTooSmall { needed, available } => {
                write!(
                    f,
                    "output buffer of {available} bytes is too small, {needed} needed"
                )
            }
            Error::TooLarge => write!(f, "model payload exceeds 4 GiB"),
        }
    }
}

impl core::error::Error for Error {}
