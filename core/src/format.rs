//! The model file: one versioned format for the f32 and int8 networks,
//! written by the host and read in place (from flash on a microcontroller).
//!
//! A file is a 16-byte header followed by a [postcard] payload:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `TCNN` |
//! | 4 | 2 | format version, `u16` little-endian ([`VERSION`]) |
//! | 6 | 1 | flavour: 1 = f32, 2 = int8 ([`Flavour`]) |
//! | 7 | 1 | reserved, 0 |
//! | 8 | 4 | payload length in bytes, `u32` little-endian |
//! | 12 | 4 | CRC-32 (ISO-HDLC, as zlib/PNG) of the payload, `u32` little-endian |
//! | 16 | n | payload: [`F32Record`] or [`Int8Record`], postcard-encoded |
//!
//! Tensors inside the payload are byte strings that the loader borrows
//! (`&'a [u8]`), so [`Model::from_bytes`] on a `&'static [u8]` in flash copies
//! no weights to RAM. `core/FORMAT.md` documents every byte.
//!
//! Loading checks everything a kernel relies on (lengths, value ranges) and
//! returns [`Error`] otherwise; it never panics, whatever the bytes.

use crate::arch::{CONV_CHANNELS, DENSE_UNITS, INPUT_SIDE, Layer};
use crate::error::{Error, TensorKind};
use crate::kernels::{f32 as kf32, int8 as ki8};
use crate::quant::{MAX_SHIFT, MIN_SHIFT};
use serde::{Deserialize, Serialize};

/// First four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"TCNN";
/// The format version this build writes and reads.
pub const VERSION: u16 = 1;
/// Size of the fixed header before the payload.
pub const HEADER_LEN: usize = 16;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 (ISO-HDLC: the zlib, PNG and Ethernet CRC) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}

/// Number type of a model's weights and activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// The network a file describes. Only [`Architecture::REFERENCE`] is
/// accepted; the field exists so a file cannot be mistaken for another
/// network's, and so later versions can describe others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Architecture {
    /// Input height, width, channels.
    pub input: [u16; 3],
    /// Output channels of the three 3x3 convolutions (each followed by
    /// ReLU and a 2x2 max-pool).
    pub conv_channels: [u16; 3],
    /// Units of the four dense layers (ReLU after all but the last).
    pub dense_units: [u16; 4],
}

impl Architecture {
    /// The network this crate runs.
    pub const REFERENCE: Architecture = Architecture {
        input: [INPUT_SIDE as u16, INPUT_SIDE as u16, 1],
        conv_channels: [
            CONV_CHANNELS[0] as u16,
            CONV_CHANNELS[1] as u16,
            CONV_CHANNELS[2] as u16,
        ],
        dense_units: [
            DENSE_UNITS[0] as u16,
            DENSE_UNITS[1] as u16,
            DENSE_UNITS[2] as u16,
            DENSE_UNITS[3] as u16,
        ],
    };
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
    /// The int8 input quantisation every int8 model uses: pixels `0..=255`
    /// scaled to `[0, 1]` and quantised with scale 1/255, zero point -128,
    /// which maps a pixel `p` to exactly `p - 128`.
    pub const INPUT: QuantParams = QuantParams {
        scale: 1.0 / 255.0,
        zero_point: -128,
    };

    /// `scale * (q - zero_point)`.
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (i32::from(q) - i32::from(self.zero_point)) as f32
    }
}

/// One layer of an f32 model, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct F32LayerRecord<'a> {
    /// Little-endian `f32` weights: `[out][ky][kx][in]` for a convolution,
    /// `[out][in]` for a dense layer (dense1's inputs in height, width,
    /// channel order).
    #[serde(borrow)]
    pub weights: &'a [u8],
    /// Little-endian `f32` biases, one per output.
    #[serde(borrow)]
    pub bias: &'a [u8],
}

/// The payload of an f32 model file.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct F32Record<'a> {
    /// Must be [`Architecture::REFERENCE`].
    pub architecture: Architecture,
    /// conv1, conv2, conv3, dense1, dense2, dense3, dense4.
    #[serde(borrow)]
    pub layers: [F32LayerRecord<'a>; 7],
}

/// One layer of an int8 model, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Int8LayerRecord<'a> {
    /// Quantisation of the layer's output activations.
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

/// The payload of an int8 model file.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Int8Record<'a> {
    /// Must be [`Architecture::REFERENCE`].
    pub architecture: Architecture,
    /// Input quantisation; must be [`QuantParams::INPUT`].
    pub input: QuantParams,
    /// conv1, conv2, conv3, dense1, dense2, dense3, dense4.
    #[serde(borrow)]
    pub layers: [Int8LayerRecord<'a>; 7],
}

/// Checks the header and checksum; returns the flavour and the payload.
pub fn split_header(bytes: &[u8]) -> Result<(Flavour, &[u8]), Error> {
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
    let magic = [m0, m1, m2, m3];
    if magic != MAGIC {
        return Err(Error::BadMagic { found: magic });
    }
    let version = u16::from_le_bytes([v0, v1]);
    if version != VERSION {
        return Err(Error::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let Some(flavour) = Flavour::from_byte(flavour) else {
        return Err(Error::UnknownFlavour { found: flavour });
    };
    if reserved != 0 {
        return Err(Error::ReservedByteSet { found: reserved });
    }
    // u32 -> usize cannot truncate on the 32- and 64-bit targets this runs on;
    // saturate anyway so a 16-bit target would report Truncated, not wrap.
    let length = usize::try_from(u32::from_le_bytes([l0, l1, l2, l3])).unwrap_or(usize::MAX);
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
    let stored = u32::from_le_bytes([c0, c1, c2, c3]);
    let computed = crc32(payload);
    if stored != computed {
        return Err(Error::ChecksumMismatch { stored, computed });
    }
    Ok((flavour, payload))
}

/// Decodes a whole payload; bytes left over are an error.
fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, Error> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((record, [])) => Ok(record),
        _ => Err(Error::Malformed),
    }
}

/// Writes header + payload of `record` into `out`; returns the bytes used.
fn encode_into<T: Serialize>(record: &T, flavour: Flavour, out: &mut [u8]) -> Result<usize, Error> {
    let needed = encoded_len(record)?;
    let available = out.len();
    let Some((header, rest)) = out.split_first_chunk_mut::<HEADER_LEN>() else {
        return Err(Error::BufferTooSmall { needed, available });
    };
    let payload_len = postcard::to_slice(record, rest)
        .map_err(|_| Error::BufferTooSmall { needed, available })?
        .len();
    let payload = rest
        .get(..payload_len)
        .ok_or(Error::BufferTooSmall { needed, available })?;
    let length = u32::try_from(payload_len).map_err(|_| Error::TooLarge)?;
    let crc = crc32(payload);
    let [v0, v1] = VERSION.to_le_bytes();
    let [l0, l1, l2, l3] = length.to_le_bytes();
    let [c0, c1, c2, c3] = crc.to_le_bytes();
    let [m0, m1, m2, m3] = MAGIC;
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
    Ok(HEADER_LEN + payload_len)
}

fn encoded_len<T: Serialize>(record: &T) -> Result<usize, Error> {
    let payload = postcard::serialize_with_flavor(record, postcard::ser_flavors::Size::default())
        .map_err(|_| Error::TooLarge)?;
    Ok(HEADER_LEN + payload)
}

macro_rules! record_encoding {
    ($record:ident, $flavour:expr) => {
        impl $record<'_> {
            /// Size of the encoded file, header included.
            pub fn encoded_len(&self) -> Result<usize, Error> {
                encoded_len(self)
            }

            /// Encodes header + payload into `out`; returns the bytes written.
            pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
                encode_into(self, $flavour, out)
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
record_encoding!(F32Record, Flavour::F32);
record_encoding!(Int8Record, Flavour::Int8);

fn check_architecture(architecture: Architecture) -> Result<(), Error> {
    if architecture == Architecture::REFERENCE {
        Ok(())
    } else {
        Err(Error::UnsupportedArchitecture {
            found: architecture,
        })
    }
}

fn check_len(layer: Layer, tensor: TensorKind, bytes: &[u8], expected: usize) -> Result<(), Error> {
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

fn check_finite_f32(layer: Layer, tensor: TensorKind, bytes: &[u8]) -> Result<(), Error> {
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

/// A validated f32 network, borrowing its weights from the blob.
#[derive(Clone, Copy, Debug)]
pub struct F32Model<'a> {
    pub(crate) record: F32Record<'a>,
    pub(crate) conv1: kf32::ConvLayer<'a, 1, 64>,
    pub(crate) conv2: kf32::ConvLayer<'a, 64, 128>,
    pub(crate) conv3: kf32::ConvLayer<'a, 128, 256>,
    pub(crate) dense1: kf32::DenseLayer<'a, 2304, 128>,
    pub(crate) dense2: kf32::DenseLayer<'a, 128, 64>,
    pub(crate) dense3: kf32::DenseLayer<'a, 64, 32>,
    pub(crate) dense4: kf32::DenseLayer<'a, 32, 10>,
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

    /// Validates a decoded record.
    pub fn from_record(record: F32Record<'a>) -> Result<Self, Error> {
        check_architecture(record.architecture)?;
        for (layer, stored) in Layer::ALL.into_iter().zip(&record.layers) {
            check_len(
                layer,
                TensorKind::Weights,
                stored.weights,
                4 * layer.weight_count(),
            )?;
            check_len(layer, TensorKind::Bias, stored.bias, 4 * layer.outputs())?;
            check_finite_f32(layer, TensorKind::Weights, stored.weights)?;
            check_finite_f32(layer, TensorKind::Bias, stored.bias)?;
        }
        let [c1, c2, c3, d1, d2, d3, d4] = record.layers;
        // The lengths were checked above, so the views cannot fail; the error
        // is kept (rather than unwrapping) so no panic path exists.
        let shape = |layer: Layer| Error::TensorLength {
            layer,
            tensor: TensorKind::Weights,
            expected: 4 * layer.weight_count(),
            found: 0,
        };
        Ok(Self {
            record,
            conv1: kf32::ConvLayer::new(c1.weights, c1.bias).ok_or(shape(Layer::Conv1))?,
            conv2: kf32::ConvLayer::new(c2.weights, c2.bias).ok_or(shape(Layer::Conv2))?,
            conv3: kf32::ConvLayer::new(c3.weights, c3.bias).ok_or(shape(Layer::Conv3))?,
            dense1: kf32::DenseLayer::new(d1.weights, d1.bias, true).ok_or(shape(Layer::Dense1))?,
            dense2: kf32::DenseLayer::new(d2.weights, d2.bias, true).ok_or(shape(Layer::Dense2))?,
            dense3: kf32::DenseLayer::new(d3.weights, d3.bias, true).ok_or(shape(Layer::Dense3))?,
            dense4: kf32::DenseLayer::new(d4.weights, d4.bias, false)
                .ok_or(shape(Layer::Dense4))?,
        })
    }

    /// The stored record (weights as borrowed bytes).
    pub fn record(&self) -> &F32Record<'a> {
        &self.record
    }
}

/// A validated int8 network, borrowing its weights from the blob.
#[derive(Clone, Copy, Debug)]
pub struct Int8Model<'a> {
    pub(crate) record: Int8Record<'a>,
    pub(crate) conv1: ki8::ConvLayer<'a, 1, 64>,
    pub(crate) conv2: ki8::ConvLayer<'a, 64, 128>,
    pub(crate) conv3: ki8::ConvLayer<'a, 128, 256>,
    pub(crate) dense1: ki8::DenseLayer<'a, 2304, 128>,
    pub(crate) dense2: ki8::DenseLayer<'a, 128, 64>,
    pub(crate) dense3: ki8::DenseLayer<'a, 64, 32>,
    pub(crate) dense4: ki8::DenseLayer<'a, 32, 10>,
}

impl<'a> Int8Model<'a> {
    /// Loads an int8 model file; any other file is an [`Error`].
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        match Model::from_bytes(bytes)? {
            Model::Int8(model) => Ok(model),
            Model::F32(_) => Err(Error::WrongFlavour {
                expected: Flavour::Int8,
                found: Flavour::F32,
            }),
        }
    }

    /// Validates a decoded record.
    pub fn from_record(record: Int8Record<'a>) -> Result<Self, Error> {
        check_architecture(record.architecture)?;
        if record.input != QuantParams::INPUT {
            return Err(Error::UnsupportedInputQuantization);
        }
        for (layer, stored) in Layer::ALL.into_iter().zip(&record.layers) {
            let outputs = layer.outputs();
            check_len(
                layer,
                TensorKind::Weights,
                stored.weights,
                layer.weight_count(),
            )?;
            check_len(
                layer,
                TensorKind::WeightScales,
                stored.weight_scales,
                4 * outputs,
            )?;
            check_len(layer, TensorKind::Bias, stored.bias, 4 * outputs)?;
            check_len(
                layer,
                TensorKind::Multipliers,
                stored.multipliers,
                4 * outputs,
            )?;
            check_len(layer, TensorKind::Shifts, stored.shifts, outputs)?;
            if !valid_scale(stored.output.scale) {
                return Err(Error::BadScale {
                    layer: Some(layer),
                    tensor: None,
                });
            }
            let scales = stored.weight_scales.as_chunks::<4>().0;
            if !scales.iter().all(|&s| valid_scale(f32::from_le_bytes(s))) {
                return Err(Error::BadScale {
                    layer: Some(layer),
                    tensor: Some(TensorKind::WeightScales),
                });
            }
            if stored.weights.contains(&(i8::MIN as u8)) {
                return Err(Error::WeightOutOfRange { layer });
            }
            let multipliers = stored.multipliers.as_chunks::<4>().0.iter();
            for (channel, (&multiplier, &shift)) in multipliers.zip(stored.shifts).enumerate() {
                let multiplier = i32::from_le_bytes(multiplier);
                let shift = shift as i8;
                if multiplier < 0 {
                    return Err(Error::BadMultiplier {
                        layer,
                        channel,
                        multiplier,
                    });
                }
                if !(MIN_SHIFT..=MAX_SHIFT).contains(&i32::from(shift)) {
                    return Err(Error::BadShift {
                        layer,
                        channel,
                        shift,
                    });
                }
            }
        }
        let layers = &record.layers;
        let [c1, c2, c3, d1, d2, d3, d4] = layers;
        // Each layer's input zero point is the previous layer's output zero
        // point (max-pool keeps its input's quantisation).
        let requant = |layer: Layer, stored: &Int8LayerRecord<'a>, input: QuantParams| {
            ki8::Requantization::new(
                layer.outputs(),
                stored.bias,
                stored.multipliers,
                stored.shifts,
                input.zero_point,
                stored.output.zero_point,
                layer.has_relu(),
            )
            .ok_or(Error::TensorLength {
                layer,
                tensor: TensorKind::Bias,
                expected: 4 * layer.outputs(),
                found: stored.bias.len(),
            })
        };
        let shape = |layer: Layer| Error::TensorLength {
            layer,
            tensor: TensorKind::Weights,
            expected: layer.weight_count(),
            found: 0,
        };
        Ok(Self {
            conv1: ki8::ConvLayer::new(c1.weights, requant(Layer::Conv1, c1, record.input)?)
                .ok_or(shape(Layer::Conv1))?,
            conv2: ki8::ConvLayer::new(c2.weights, requant(Layer::Conv2, c2, c1.output)?)
                .ok_or(shape(Layer::Conv2))?,
            conv3: ki8::ConvLayer::new(c3.weights, requant(Layer::Conv3, c3, c2.output)?)
                .ok_or(shape(Layer::Conv3))?,
            dense1: ki8::DenseLayer::new(d1.weights, requant(Layer::Dense1, d1, c3.output)?)
                .ok_or(shape(Layer::Dense1))?,
            dense2: ki8::DenseLayer::new(d2.weights, requant(Layer::Dense2, d2, d1.output)?)
                .ok_or(shape(Layer::Dense2))?,
            dense3: ki8::DenseLayer::new(d3.weights, requant(Layer::Dense3, d3, d2.output)?)
                .ok_or(shape(Layer::Dense3))?,
            dense4: ki8::DenseLayer::new(d4.weights, requant(Layer::Dense4, d4, d3.output)?)
                .ok_or(shape(Layer::Dense4))?,
            record,
        })
    }

    /// The stored record (weights and quantisation as borrowed bytes).
    pub fn record(&self) -> &Int8Record<'a> {
        &self.record
    }

    /// Quantisation of the logits (the last layer's output).
    pub fn logits_quantization(&self) -> QuantParams {
        let [.., last] = self.record.layers;
        last.output
    }
}

/// A validated model of either flavour.
// Both variants are borrowed views of about a kilobyte; boxing the larger one
// would need an allocator, which this crate does not have.
#[allow(clippy::large_enum_variant)]
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
        let (flavour, payload) = split_header(bytes)?;
        match flavour {
            Flavour::F32 => F32Model::from_record(decode(payload)?).map(Model::F32),
            Flavour::Int8 => Int8Model::from_record(decode(payload)?).map(Model::Int8),
        }
    }

    /// The model's flavour.
    pub fn flavour(&self) -> Flavour {
        match self {
            Model::F32(_) => Flavour::F32,
            Model::Int8(_) => Flavour::Int8,
        }
    }
}
