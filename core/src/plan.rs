//! How a description runs: the sequence of kernel calls ([`Step`]s) and the
//! scratch memory they need, all computed by `const fn`s so that firmware can
//! size its scratch from the model bytes it embeds, while compiling:
//!
//! ```ignore
//! const MODEL: &[u8] = include_bytes!("model-int8.tcnn");
//! const SCRATCH: usize = tinycnn::plan::int8_scratch_bytes_or_panic(MODEL);
//! static mut ARENA: tinycnn::Scratch<SCRATCH> = tinycnn::Scratch::new();
//! ```
//!
//! A model that is not valid, or is not int8, stops the build there; one
//! whose scratch does not fit the device's RAM stops it at link time.
//!
//! # Steps
//!
//! Dropout and flatten cost nothing at inference (activations are already
//! channels-last, the order flatten defines), and a convolution followed by
//! a max-pool (with only dropout between them) runs as one fused step that
//! never holds the full-resolution map. What remains is one step per
//! convolution, stand-alone pool and dense layer.
//!
//! # Scratch
//!
//! One arena holds a step's input at one end and its output at the other,
//! the two ends swapping at every step, and between them the work area that
//! the Arm DSP kernels unroll windows into. Its size is the largest
//! `input + output + work` of any step (each rounded up to 4 bytes, so the
//! work area is word-aligned). For the reference network that is conv2's
//! 12,544 + 6,272 (+ 4,608 of DSP work) bytes.

use crate::arch::{Architecture, Conv, Layer, LayerInfo, Shape, Walk};
use crate::error::Error;
use crate::format;
use crate::kernels::ConvGeometry;
use crate::kernels::int8::Backend;

/// What one step computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A convolution, with the 2x2 max-pool after it fused in or not.
    Conv {
        /// The convolution.
        conv: Conv,
        /// Whether the step also pools.
        pooled: bool,
    },
    /// A max-pool that does not follow a convolution.
    Pool,
    /// A dense layer.
    Dense,
}

/// One kernel call of an inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// What it computes.
    pub operation: Operation,
    /// The layer it runs (the convolution of a fused convolution + pool).
    pub layer: LayerInfo,
    /// Shape it reads.
    pub input: Shape,
    /// Shape it writes (after the fused pool, if any).
    pub output: Shape,
}

impl Step {
    /// The convolution's geometry, for a convolution step.
    pub const fn geometry(&self) -> Option<ConvGeometry> {
        match self.operation {
            Operation::Conv { conv, pooled } => Some(ConvGeometry::new(&conv, self.input, pooled)),
            _ => None,
        }
    }
}

/// Where an inference stands between steps (a walk over the description).
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    walk: Walk,
}

impl Cursor {
    /// Before the first step of `architecture`.
    pub const fn new(architecture: &Architecture) -> Self {
        Cursor {
            walk: architecture.start(),
        }
    }

    /// The next step of `architecture`, `None` after the last.
    pub const fn next(&mut self, architecture: &Architecture) -> Option<Step> {
        while let Some(Ok(info)) = architecture.advance(&mut self.walk) {
            let operation = match info.layer {
                Layer::Dropout(_) | Layer::Flatten => continue,
                Layer::MaxPool => Operation::Pool,
                Layer::Dense(_) => Operation::Dense,
                Layer::Conv(conv) => {
                    // A pool after it, past any dropout, is fused in.
                    let mut ahead = self.walk;
                    while let Some(Ok(after)) = architecture.advance(&mut ahead) {
                        match after.layer {
                            Layer::Dropout(_) => {}
                            Layer::MaxPool => {
                                self.walk = ahead;
                                let step = Step {
                                    operation: Operation::Conv { conv, pooled: true },
                                    layer: info,
                                    input: info.input,
                                    output: after.output,
                                };
                                return Some(step);
                            }
                            _ => break,
                        }
                    }
                    Operation::Conv {
                        conv,
                        pooled: false,
                    }
                }
            };
            return Some(Step {
                operation,
                layer: info,
                input: info.input,
                output: info.output,
            });
        }
        None
    }
}

/// The steps of an inference, in order.
pub fn steps(architecture: &Architecture) -> impl Iterator<Item = Step> + '_ {
    let mut cursor = Cursor::new(architecture);
    core::iter::from_fn(move || cursor.next(architecture))
}

/// Number of steps.
pub const fn step_count(architecture: &Architecture) -> usize {
    let mut count = 0;
    let mut cursor = Cursor::new(architecture);
    while cursor.next(architecture).is_some() {
        count += 1;
    }
    count
}

const fn round_up4(bytes: usize) -> usize {
    bytes.div_ceil(4) * 4
}

/// Which Arm DSP convolution kernel serves a geometry (see `kernels::dsp`).
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(tinycnn_arm_dsp), allow(dead_code))]
pub(crate) enum DspConv {
    /// Input channels a multiple of 4.
    MultiChannel,
    /// One input channel, 3x3.
    SingleChannel,
    /// The portable kernel.
    Portable,
}

/// int16 pairs per 3x3 window when there is one input channel: 9 taps + 0.
pub(crate) const SINGLE_PAIRS: usize = 5;
/// Convolution positions the DSP kernels compute at once.
const DSP_POSITIONS: usize = 4;

pub(crate) const fn dsp_conv(geometry: &ConvGeometry) -> DspConv {
    let channels = geometry.input.channels;
    if channels == 1 && geometry.kernel == 3 {
        DspConv::SingleChannel
    } else if channels > 0 && channels.is_multiple_of(4) {
        DspConv::MultiChannel
    } else {
        DspConv::Portable
    }
}

/// Words holding a single-channel input framed by its padding, as int16.
pub(crate) const fn dsp_padded_words(geometry: &ConvGeometry) -> usize {
    let height = geometry.input.height + 2 * geometry.pad;
    let width = geometry.input.width + 2 * geometry.pad;
    (height * width).div_ceil(2)
}

/// Whether the Arm DSP kernels run a convolution of `geometry` themselves
/// (input channels a multiple of 4, or one channel and a 3x3 kernel) rather
/// than hand it to the portable kernel.
pub const fn dsp_runs_conv(geometry: &ConvGeometry) -> bool {
    !matches!(dsp_conv(geometry), DspConv::Portable)
}

/// Bytes of work area, 4-byte aligned, the Arm DSP kernels need for a
/// convolution of `geometry`; 0 for shapes they hand to the portable kernel.
pub const fn dsp_conv_work_bytes(geometry: &ConvGeometry) -> usize {
    match dsp_conv(geometry) {
        DspConv::SingleChannel => {
            // Widened filters, four positions' windows, the padded input as int16.
            4 * SINGLE_PAIRS * (geometry.filters + DSP_POSITIONS) + dsp_padded_words(geometry) * 4
        }
        // Four positions x K x K x C values x 2 bytes.
        DspConv::MultiChannel => DSP_POSITIONS * geometry.fan_in() * 2,
        DspConv::Portable => 0,
    }
}

/// Bytes of work area the Arm DSP kernels need for a dense layer of `inputs`
/// inputs; 0 when the portable kernel runs (`inputs` not a multiple of 4).
pub const fn dsp_dense_work_bytes(inputs: usize) -> usize {
    if inputs.is_multiple_of(4) {
        inputs * 2
    } else {
        0
    }
}

/// Bytes of work area `step` needs with the Arm DSP kernels (`dsp`) or the
/// portable ones (none).
pub const fn work_bytes(step: &Step, dsp: bool) -> usize {
    if !dsp {
        return 0;
    }
    match step.geometry() {
        Some(geometry) => dsp_conv_work_bytes(&geometry),
        None => match step.operation {
            Operation::Dense => dsp_dense_work_bytes(step.input.values()),
            _ => 0,
        },
    }
}

/// Where a step's input, output and work area lie in the arena: byte
/// offsets and lengths. Even steps read from the start of the arena and write
/// at its end, odd steps the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regions {
    /// Input offset.
    pub input: usize,
    /// Output offset.
    pub output: usize,
    /// Work offset (a multiple of 4).
    pub work: usize,
    /// Work bytes available.
    pub work_len: usize,
}

/// The regions of step number `index` that reads `input` and writes
/// `output` units (bytes for int8, values for f32) in an arena of `arena`
/// units.
pub const fn regions(index: usize, input: usize, output: usize, arena: usize) -> Regions {
    if index.is_multiple_of(2) {
        let work = round_up4(input);
        Regions {
            input: 0,
            output: arena - output,
            work,
            work_len: (arena - output).saturating_sub(work),
        }
    } else {
        let work = round_up4(output);
        Regions {
            input: arena - input,
            output: 0,
            work,
            work_len: (arena - input).saturating_sub(work),
        }
    }
}

/// Bytes of int8 scratch that `architecture` needs with `backend`'s kernels.
pub const fn int8_scratch_bytes_with(architecture: &Architecture, backend: Backend) -> usize {
    let dsp = !matches!(backend, Backend::Portable | Backend::Caller);
    int8_scratch_bytes_for(architecture, dsp)
}

/// Bytes of int8 scratch that `architecture` needs with the Arm DSP kernels
/// (`dsp`, Cortex-M4/M7/M33) or the portable ones, whatever this build's
/// target: for tools that size a device's memory.
pub const fn int8_scratch_bytes_for(architecture: &Architecture, dsp: bool) -> usize {
    let mut largest = 0;
    let mut cursor = Cursor::new(architecture);
    while let Some(step) = cursor.next(architecture) {
        let bytes = round_up4(step.input.values())
            + round_up4(step.output.values())
            + work_bytes(&step, dsp);
        if bytes > largest {
            largest = bytes;
        }
    }
    largest
}

/// Bytes of int8 scratch that `architecture` needs with this target's fastest
/// kernels ([`Backend::FASTEST`]), which is also enough for the portable ones.
pub const fn int8_scratch_bytes(architecture: &Architecture) -> usize {
    int8_scratch_bytes_with(architecture, Backend::FASTEST)
}

/// `f32` values of scratch that `architecture` needs.
pub const fn f32_scratch_len(architecture: &Architecture) -> usize {
    let mut largest = 0;
    let mut cursor = Cursor::new(architecture);
    while let Some(step) = cursor.next(architecture) {
        // Rounded like the int8 arena so both share `regions`.
        let values = round_up4(step.input.values()) + round_up4(step.output.values());
        if values > largest {
            largest = values;
        }
    }
    largest
}

/// The int8 scratch bytes a model file needs with this target's fastest
/// kernels, read from its header and description alone (no checksum, no
/// tensors: those are checked when the model is loaded).
pub const fn int8_scratch_bytes_of_model(model: &[u8]) -> Result<usize, Error> {
    match format::peek_architecture(model) {
        Ok((format::Flavour::Int8, architecture)) => Ok(int8_scratch_bytes(&architecture)),
        Ok((found, _)) => Err(Error::WrongFlavour {
            expected: format::Flavour::Int8,
            found,
        }),
        Err(error) => Err(error),
    }
}

/// [`int8_scratch_bytes_of_model`] for a `const`: a model that cannot be read
/// stops the build with a message saying why.
///
/// # Panics
///
/// When the model's header or description cannot be read, or it is not an
/// int8 model. Evaluated in a `const` (its purpose), the panic is a build
/// error; call [`int8_scratch_bytes_of_model`] at run time instead.
// A compile-time check by design: see the Panics section.
#[allow(clippy::panic)]
pub const fn int8_scratch_bytes_or_panic(model: &[u8]) -> usize {
    match int8_scratch_bytes_of_model(model) {
        Ok(bytes) => bytes,
        Err(Error::WrongFlavour { .. }) => {
            panic!("the embedded model is an f32 model; the firmware runs int8 models")
        }
        Err(Error::BadMagic { .. }) | Err(Error::Truncated { .. }) => {
            panic!("the embedded file is not a tinycnn model")
        }
        Err(Error::UnsupportedVersion { .. }) => {
            panic!("the embedded model has a format version this tinycnn does not read")
        }
        Err(Error::Architecture(_)) => panic!("the embedded model describes an invalid network"),
        Err(_) => panic!("the embedded model's header or description is damaged"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_network_runs_in_seven_steps_with_pools_fused() {
        let reference = Architecture::REFERENCE;
        let operations: std::vec::Vec<_> = steps(&reference)
            .map(|step| (step.operation, step.output))
            .collect();
        assert_eq!(operations.len(), 7);
        assert_eq!(step_count(&reference), 7);
        assert!(matches!(
            operations[0],
            (
                Operation::Conv { pooled: true, .. },
                Shape {
                    height: 14,
                    width: 14,
                    channels: 64
                }
            )
        ));
        assert!(matches!(
            operations[2].1,
            Shape {
                height: 3,
                width: 3,
                channels: 256
            }
        ));
        assert!(matches!(operations[3].0, Operation::Dense));
        // conv2's input + output.
        assert_eq!(
            int8_scratch_bytes_with(&reference, Backend::Portable),
            12_544 + 6_272
        );
        assert_eq!(f32_scratch_len(&reference), 12_544 + 6_272);
    }

    #[test]
    fn regions_alternate_ends_and_never_overlap() {
        let first = regions(0, 784, 12_544, 20_000);
        assert_eq!((first.input, first.output, first.work), (0, 7_456, 784));
        assert_eq!(first.work_len, 7_456 - 784);
        let second = regions(1, 12_544, 6_272, 20_000);
        assert_eq!(
            (second.input, second.output, second.work),
            (7_456, 0, 6_272)
        );
        assert_eq!(second.work_len, 7_456 - 6_272);
        // An odd length: the work area still starts on a word.
        assert_eq!(regions(0, 3, 8, 16).work, 4);
    }
}
