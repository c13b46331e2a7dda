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
//! channels-last, the order flatten defines), and a square stride-1
//! convolution followed by the 2x2 max-pool (with only dropout between them)
//! runs as one fused step that never holds the full-resolution map. Every
//! other layer is one step: convolutions of other shapes, depthwise
//! convolutions, pools, dense layers, softmax, and for a residual block its
//! shortcut (at its start) and its addition (at its end).
//!
//! # Scratch
//!
//! An int8 arena ([`layout`], [`Placer`]) is a **band area** followed by a **frame**. The
//! main line (the map between two steps) lies against one end of the frame, the network's
//! input against the low end. A step reads it there and writes its output:
//!
//! - **apart**, against the frame's other end, in one kernel call, when input and output fit
//!   apart (with the Arm DSP kernels' work area between them, or in the band area);
//! - or **in bands** of output rows through the band area, overlapping its input: against the
//!   same end (a 1x1 or strided convolution, a pool: it overwrites its own input, from the
//!   top or the bottom), or against the other end when the frame is only a little larger than
//!   the maps (a 3x3 stride-1 convolution moves a row or so). A band reads the input rows its
//!   windows need where they lie and writes to the **band buffer**, which is then copied to
//!   its place in the output; or, for a square stride-1 convolution with padding, its input
//!   rows are copied to the band buffer framed by the padding (the input zero point) and the
//!   'valid' convolution of that copy writes its rows in place. Bands go in the order that
//!   never overwrites an input row a later band reads ([`Mode::Bands`]);
//! - or **in place**, in one call, against the frame's other end over its own input: a 3x3
//!   stride-1 depthwise convolution of the Arm DSP kernels, whose output pixels trail the
//!   input pixels they read by a row and a pixel, so none is written over input a later
//!   pixel reads ([`Mode::InPlace`]), when that needs less of the frame than bands (it needs
//!   no band buffer, but a pixel more than a row's shift).
//!
//! Every step that can run in bands does so only when that makes the arena smaller:
//! convolutions of every kind (with a fused pool too, but not with the portable kernels when
//! the input has padding), depthwise convolutions, pools and additions can; dense layers,
//! softmax and global average pools run in one call.
//!
//! A residual block keeps its shortcut at one end of the frame while the block's steps run in
//! the rest: an identity shortcut is the block's input, left where it lies (nothing is
//! copied); a projection is computed first, to the far end, so the block's first step may
//! overwrite the block's input. The addition writes its sum into the shortcut's place, in
//! bands.
//!
//! The band area holds, from its start (a word boundary), the work area of the step that runs
//! and its band buffer. Its size is chosen among a few candidates (none, and for each step its
//! work area, or that and the buffer of its fewest rows); for each the frame is the most any
//! step needs, and the smallest sum wins. A layout never needs more than the out-of-place one
//! ([`out_of_place_regions`]: a shortcut area, then a step's input at one end and its output
//! at the other, swapping at every step), which it falls back to otherwise; f32 always runs
//! out of place. `core/FORMAT.md` ("Scratch memory") gives every rule and formula.
//!
//! The MLPerf Tiny networks need, with the Arm DSP kernels / the portable ones: the DS-CNN
//! 10,180 / 8,640 bytes (out of place 17,796 / 16,000), MobileNet 39,604 / 37,248 (55,364 /
//! 55,296), ResNet-8 36,068 / 34,912 (51,200 / 49,152), the autoencoder 768 / 768 (2,048 /
//! 768: with the Arm DSP kernels its first and last dense layers widen their input as they
//! read it, as their work areas would set the arena's size). The tutorial's network needs 21,764 with
//! the Arm DSP kernels (23,428 out of place) and 18,816 with the portable ones, out of place:
//! they keep a fused convolution and pool whose input has padding in one call, as a band's
//! copy framed by the padding would make them multiply the padding's taps.

mod arena;

pub use arena::{
    Band, End, Layout, Mode, Placer, Regions, RowWindow, Staging, band_buffer_len, frame_peak_step,
    layout, placements,
};

use crate::arch::{
    Activation, Architecture, Conv, Depthwise, Layer, LayerInfo, Padding, Pool, Shape, Shortcut,
    Walk,
};
use crate::error::Error;
use crate::format;
use crate::kernels::ConvGeometry;
use crate::kernels::general::WindowGeometry;
use crate::kernels::int8::Backend;

/// What one step computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A square, stride-1 convolution ([`crate::arch::Window::is_square_stride_one`]),
    /// with the 2x2 max-pool after it fused in or not: what the portable, Arm
    /// DSP and wide kernels of [`ConvGeometry`] run.
    Conv {
        /// The convolution.
        conv: Conv,
        /// Whether the step also pools.
        pooled: bool,
    },
    /// Any other convolution (strided, rectangular, larger): the portable
    /// kernel of [`crate::kernels::general`].
    WindowConv {
        /// The convolution.
        conv: Conv,
    },
    /// A depthwise convolution.
    Depthwise {
        /// The layer.
        depthwise: Depthwise,
    },
    /// A 2x2 max-pool that does not follow a convolution.
    Pool,
    /// A max or average pool of any window.
    WindowPool {
        /// The layer.
        pool: Pool,
    },
    /// The mean of each channel.
    GlobalAveragePool,
    /// A dense layer.
    Dense,
    /// A residual block's start: its shortcut, written to the shortcut area
    /// (its input stays where it is, for the block's first layer).
    Shortcut {
        /// Identity (a copy) or a 1x1 projection.
        shortcut: Shortcut,
    },
    /// A residual block's end: the block's output plus the shortcut.
    Add {
        /// The activation after the sum.
        activation: Activation,
    },
    /// Softmax over the output vector.
    Softmax,
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
    /// Shape it writes (after the fused pool, if any; the shortcut for
    /// [`Operation::Shortcut`]).
    pub output: Shape,
    /// Whether its input lies at the low end of the f32 arena's swapping part
    /// (its output then goes to the high end), or the other way round ([`out_of_place_regions`]).
    pub reads_low_end: bool,
    /// The output rows one kernel call of a banded step computes ([`Mode::Bands`]); `None`
    /// for the whole step, as [`steps`] gives it.
    pub band: Option<Band>,
}

impl Step {
    /// The convolution's geometry, for a square stride-1 convolution step; for a band of one
    /// ([`Step::band`]), the 'valid' convolution over the band's input ([`Step::band_input`]).
    pub const fn geometry(&self) -> Option<ConvGeometry> {
        match self.operation {
            Operation::Conv { conv, pooled } => match self.band {
                None => Some(ConvGeometry::new(&conv, self.input, pooled)),
                Some(_) => Some(arena::band_conv_geometry(self, &conv, pooled)),
            },
            _ => None,
        }
    }

    /// The resolved window of a windowed step: a convolution of any window
    /// ([`Operation::WindowConv`], a projection shortcut), a depthwise
    /// convolution or a pool of any window; `None` for other steps.
    pub const fn window(&self) -> Option<WindowGeometry> {
        let (window, channels) = match self.operation {
            Operation::WindowConv { conv } => (conv.window, self.output.channels),
            Operation::Depthwise { depthwise } => (depthwise.window, self.output.channels),
            Operation::WindowPool { pool } => (pool.window, self.input.channels),
            Operation::Shortcut { shortcut } => match shortcut.projection() {
                Some(conv) => (conv.window, self.output.channels),
                None => return None,
            },
            _ => return None,
        };
        WindowGeometry::resolve(
            self.input,
            window.height as usize,
            window.width as usize,
            window.stride_height as usize,
            window.stride_width as usize,
            matches!(window.padding, Padding::Same),
            channels,
        )
    }

    /// Whether the step moves the main line to the arena's other end (all
    /// but [`Operation::Shortcut`]).
    pub const fn swaps_ends(&self) -> bool {
        !matches!(self.operation, Operation::Shortcut { .. })
    }
}

/// Where an inference stands between steps (a walk over the description).
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    walk: Walk,
    swaps: usize,
}

impl Cursor {
    /// Before the first step of `architecture`.
    pub const fn new(architecture: &Architecture) -> Self {
        Cursor {
            walk: architecture.start(),
            swaps: 0,
        }
    }

    /// The next step of `architecture`, `None` after the last.
    pub const fn next(&mut self, architecture: &Architecture) -> Option<Step> {
        let reads_low_end = self.swaps.is_multiple_of(2);
        while let Some(Ok(info)) = architecture.advance(&mut self.walk) {
            let mut output = info.output;
            let operation = match info.layer {
                Layer::Dropout(_) | Layer::Flatten => continue,
                Layer::MaxPool => Operation::Pool,
                Layer::Dense(_) => Operation::Dense,
                Layer::Depthwise(depthwise) => Operation::Depthwise { depthwise },
                Layer::Pool(pool) => Operation::WindowPool { pool },
                Layer::GlobalAveragePool => Operation::GlobalAveragePool,
                Layer::Add(activation) => Operation::Add { activation },
                Layer::Softmax => Operation::Softmax,
                Layer::Residual(shortcut) => {
                    if let Some(kept) = info.shortcut() {
                        output = kept;
                    }
                    Operation::Shortcut { shortcut }
                }
                Layer::Conv(conv) if !conv.window.is_square_stride_one() => {
                    Operation::WindowConv { conv }
                }
                Layer::Conv(conv) => {
                    // A pool after it, past any dropout, is fused in.
                    let mut ahead = self.walk;
                    while let Some(Ok(after)) = architecture.advance(&mut ahead) {
                        match after.layer {
                            Layer::Dropout(_) => {}
                            Layer::MaxPool => {
                                self.walk = ahead;
                                self.swaps += 1;
                                let step = Step {
                                    operation: Operation::Conv { conv, pooled: true },
                                    layer: info,
                                    input: info.input,
                                    output: after.output,
                                    reads_low_end,
                                    band: None,
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
            let step = Step {
                operation,
                layer: info,
                input: info.input,
                output,
                reads_low_end,
                band: None,
            };
            if step.swaps_ends() {
                self.swaps += 1;
            }
            return Some(step);
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
    /// Other channel counts without a fused pool: the kernel of any window
    /// (`window_conv`).
    Window,
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
    } else if !geometry.pooled && channels > 0 {
        DspConv::Window
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
        // Four positions x K x K x C values x 2 bytes, and the requantisation's decision.
        DspConv::MultiChannel => DSP_POSITIONS * geometry.fan_in() * 2 + 4,
        DspConv::Window => dsp_window_conv_work_bytes(&geometry.window_geometry()),
        DspConv::Portable => 0,
    }
}

/// Where the Arm DSP kernels' `window_conv` keeps what it unrolls: the four
/// positions' groups; when the input channels are not a multiple of 4, also
/// two bands of input rows (each kernel row's window then starts a run of
/// whole groups, padded with zero weights) and the filters padded that way.
#[cfg_attr(not(tinycnn_arm_dsp), allow(dead_code))]
pub(crate) struct DspWindowConvWork {
    /// Products per output: kernel taps times input channels.
    pub(crate) fan_in: usize,
    /// Groups of four values per window as unrolled (padded per kernel row
    /// when banded).
    pub(crate) groups: usize,
    /// Groups per kernel row when banded, else 0.
    pub(crate) row_groups: usize,
    /// Words of one kernel row of a band (its input columns as bytes, the
    /// padding as the zero point, and slack for the last group's read).
    pub(crate) band_row_words: usize,
    /// Words of the two bands (0 unless banded).
    pub(crate) band_words: usize,
    /// Words of the padded filters (0 unless banded).
    pub(crate) filter_words: usize,
    /// All of it, in bytes.
    pub(crate) bytes: usize,
}

impl DspWindowConvWork {
    pub(crate) const fn of(geometry: &WindowGeometry) -> Self {
        let channels = geometry.input.channels;
        let fan_in = geometry.kernel_height * geometry.kernel_width * channels;
        let banded = !channels.is_multiple_of(4);
        let (row_groups, band_row_words) = if banded {
            let row_bytes = geometry.kernel_width * channels;
            // Input columns the output row's windows span.
            let columns = geometry.output.width.saturating_sub(1) * geometry.stride_width
                + geometry.kernel_width;
            (row_bytes.div_ceil(4), (columns * channels + 3).div_ceil(4))
        } else {
            (0, 0)
        };
        let groups = if banded {
            geometry.kernel_height * row_groups
        } else {
            fan_in.div_ceil(4)
        };
        let band_words = 2 * geometry.kernel_height * band_row_words;
        // Rows of whole groups are the filters' own layout.
        let padded = banded && !(geometry.kernel_width * channels).is_multiple_of(4);
        let filter_words = if padded {
            groups * geometry.output.channels
        } else {
            0
        };
        let bytes = 4 * (groups * 2 * DSP_POSITIONS + band_words + filter_words);
        DspWindowConvWork {
            fan_in,
            groups,
            row_groups,
            band_row_words,
            band_words,
            filter_words,
            bytes,
        }
    }
}

/// Bytes of work area, 4-byte aligned, the Arm DSP kernels need for a convolution of any
/// window ([`Operation::WindowConv`], a projection shortcut) of `geometry`.
pub const fn dsp_window_conv_work_bytes(geometry: &WindowGeometry) -> usize {
    // The kernel's own, and a word for the requantisation's decision (see `dsp::conv_band`).
    DspWindowConvWork::of(geometry).bytes + 4
}

/// Words per group of four channels in the Arm DSP depthwise kernel's table:
/// four starting sums, two int16 pairs per tap of a 3x3 window, each
/// channel's multiplier, and one word of the four channels' shifts (a byte
/// each: `ASR` by a register reads its low byte, so shifting the word along
/// costs what loading a shift would).
pub(crate) const DEPTHWISE_QUAD_WORDS: usize = 4 + 2 * 9 + 4 + 1;

/// Whether the Arm DSP kernels run a depthwise convolution of `geometry`
/// themselves: a 3x3 window (any stride and padding), one output channel per
/// input channel, a multiple of 4 channels.
pub const fn dsp_runs_depthwise(geometry: &WindowGeometry) -> bool {
    let channels = geometry.input.channels;
    geometry.kernel_height == 3
        && geometry.kernel_width == 3
        && channels > 0
        && channels.is_multiple_of(4)
        && geometry.output.channels == channels
}

/// Bytes beyond its map that the Arm DSP kernels need to run a depthwise
/// convolution of `geometry` over its own input (`dsp::depthwise_in_place`):
/// a row and a pixel, for a 3x3 window they run themselves, stride 1, whose
/// output has its input's shape; 0 when they cannot.
pub const fn dsp_depthwise_in_place_lag(geometry: &WindowGeometry) -> usize {
    let (input, output) = (geometry.input, geometry.output);
    if dsp_runs_depthwise(geometry)
        && geometry.stride_height == 1
        && geometry.stride_width == 1
        && output.height == input.height
        && output.width == input.width
        && output.channels == input.channels
    {
        (input.width + 1) * input.channels
    } else {
        0
    }
}

/// Bytes of work area, 4-byte aligned, the Arm DSP kernels need for a
/// depthwise convolution of `geometry`: the widened weights, a row of the
/// input zero point that taps outside the input read, and a word for what the
/// first band decided; 0 when the portable kernel runs it.
pub const fn dsp_depthwise_work_bytes(geometry: &WindowGeometry) -> usize {
    if dsp_runs_depthwise(geometry) {
        let quads = geometry.input.channels / 4;
        // The table, the zero-point row, and the first band's decisions.
        4 * (quads * (DEPTHWISE_QUAD_WORDS + 1) + 1)
    } else {
        0
    }
}

/// Bytes of work area the Arm DSP kernels need for an addition: a table of
/// 256 words per input.
pub const DSP_ADD_WORK_BYTES: usize = 2 * 256 * 4;

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
    if let Some(geometry) = step.geometry() {
        return dsp_conv_work_bytes(&geometry);
    }
    match (step.operation, step.window()) {
        (Operation::Dense, _) => dsp_dense_work_bytes(step.input.values()),
        (Operation::WindowConv { .. } | Operation::Shortcut { .. }, Some(window)) => {
            dsp_window_conv_work_bytes(&window)
        }
        (Operation::Depthwise { .. }, Some(window)) => dsp_depthwise_work_bytes(&window),
        (Operation::Add { .. }, _) => DSP_ADD_WORK_BYTES,
        _ => 0,
    }
}

/// Whether `architecture` has layers that the kernels of [`crate::kernels::general`] run
/// (all but square stride-1 convolutions without ReLU6, the 2x2 max-pool and dense layers
/// without ReLU6): firmware that embeds a model without them can leave those kernels out
/// ([`crate::Int8Model::classify_with_tutorial_layers`]).
pub const fn uses_general_kernels(architecture: &Architecture) -> bool {
    let mut cursor = Cursor::new(architecture);
    while let Some(step) = cursor.next(architecture) {
        let general = match step.operation {
            Operation::Conv { .. } | Operation::Dense => {
                matches!(step.layer.activation(), Activation::Relu6)
            }
            Operation::Pool => false,
            _ => true,
        };
        if general {
            return true;
        }
    }
    false
}

/// [`uses_general_kernels`] of a model file's description; `true` when it cannot be read
/// (the runner then reports what is wrong).
pub const fn model_uses_general_kernels(model: &[u8]) -> bool {
    match format::peek_architecture(model) {
        Ok((_, architecture)) => uses_general_kernels(&architecture),
        Err(_) => true,
    }
}

/// Where a step's input, output and work area lie in the out-of-place layout: the f32
/// arena's (in values), and the reference int8 runs are checked against (the int8 layout
/// before [`layout`]; [`out_of_place_scratch_bytes`]). Above a shortcut area, a step that
/// reads the low end writes at the high end, with its work area between, and the other way
/// round; a shortcut step writes to the shortcut area at offset 0. The arena holds `arena`
/// units, the first `shortcut` of them the shortcut area ([`shortcut_len`]).
pub const fn out_of_place_regions(step: &Step, shortcut: usize, arena: usize) -> Regions {
    let (input, output) = (step.input.values(), step.output.values());
    if let Operation::Shortcut { .. } = step.operation {
        // The main line stays where it is; the shortcut goes to the bottom,
        // and the rest of the swapping part is the work area.
        let (input_at, work, work_end) = if step.reads_low_end {
            (shortcut, shortcut + round_up4(input), arena)
        } else {
            let input_at = arena.saturating_sub(input);
            (input_at, shortcut, input_at)
        };
        return Regions {
            input: input_at,
            output: 0,
            work,
            work_len: work_end.saturating_sub(work),
            shortcut: 0,
            mode: Mode::Whole,
        };
    }
    if step.reads_low_end {
        let work = shortcut + round_up4(input);
        Regions {
            input: shortcut,
            output: arena.saturating_sub(output),
            work,
            work_len: arena.saturating_sub(output).saturating_sub(work),
            shortcut: 0,
            mode: Mode::Whole,
        }
    } else {
        let work = shortcut + round_up4(output);
        Regions {
            input: arena.saturating_sub(input),
            output: shortcut,
            work,
            work_len: arena.saturating_sub(input).saturating_sub(work),
            shortcut: 0,
            mode: Mode::Whole,
        }
    }
}

/// Units of the f32 arena's shortcut area: the largest shortcut of any residual block,
/// rounded up to 4; 0 without residual blocks.
pub const fn shortcut_len(architecture: &Architecture) -> usize {
    let mut largest = 0;
    let mut cursor = Cursor::new(architecture);
    while let Some(step) = cursor.next(architecture) {
        if let Operation::Shortcut { .. } = step.operation {
            let units = round_up4(step.output.values());
            if units > largest {
                largest = units;
            }
        }
    }
    largest
}

/// Units the out-of-place layout's swapping part needs for `step`: `input + output (+
/// work)` for a step that swaps ends; a shortcut step needs its input where it is and its
/// work area beside it (the shortcut goes to the shortcut area).
const fn swapping_need(step: &Step, dsp: bool) -> usize {
    if step.swaps_ends() {
        round_up4(step.input.values()) + round_up4(step.output.values()) + work_bytes(step, dsp)
    } else {
        round_up4(step.input.values()) + work_bytes(step, dsp)
    }
}

/// Units of the out-of-place layout's swapping part: the most any step needs.
const fn swapping_len(architecture: &Architecture, dsp: bool) -> usize {
    let mut largest = 0;
    let mut cursor = Cursor::new(architecture);
    while let Some(step) = cursor.next(architecture) {
        let units = swapping_need(&step, dsp);
        if units > largest {
            largest = units;
        }
    }
    largest
}

/// The step (0-based) that needs the most of the out-of-place layout's swapping part.
const fn out_of_place_peak_step(architecture: &Architecture, dsp: bool) -> usize {
    let (mut largest, mut at, mut index) = (0, 0, 0);
    let mut cursor = Cursor::new(architecture);
    while let Some(step) = cursor.next(architecture) {
        let units = swapping_need(&step, dsp);
        if units > largest {
            largest = units;
            at = index;
        }
        index += 1;
    }
    at
}

/// Whether `backend` runs the Arm DSP kernels, whose work areas the plan then makes room for.
pub const fn backend_uses_dsp(backend: Backend) -> bool {
    !matches!(backend, Backend::Portable | Backend::Caller)
}

/// Whether this target's fastest kernels ([`Backend::FASTEST`]) are the Arm DSP ones.
pub const FASTEST_DSP: bool = backend_uses_dsp(Backend::FASTEST);

/// Bytes of int8 scratch that `architecture` needs with `backend`'s kernels.
pub const fn int8_scratch_bytes_with(architecture: &Architecture, backend: Backend) -> usize {
    int8_scratch_bytes_for(architecture, backend_uses_dsp(backend))
}

/// Bytes of int8 scratch that `architecture` needs with the Arm DSP kernels
/// (`dsp`, Cortex-M4/M7/M33) or the portable ones, whatever this build's
/// target: for tools that size a device's memory. The arena of [`layout`].
pub const fn int8_scratch_bytes_for(architecture: &Architecture, dsp: bool) -> usize {
    layout(architecture, dsp).arena()
}

/// Bytes of int8 scratch that `architecture` needs with this target's fastest
/// kernels ([`Backend::FASTEST`]), which is also enough for the portable ones.
pub const fn int8_scratch_bytes(architecture: &Architecture) -> usize {
    int8_scratch_bytes_with(architecture, Backend::FASTEST)
}

/// `f32` values of scratch that `architecture` needs: a shortcut area, then two ends that
/// swap at every step ([`out_of_place_regions`]), without work areas or bands.
pub const fn f32_scratch_len(architecture: &Architecture) -> usize {
    shortcut_len(architecture) + swapping_len(architecture, false)
}

/// Bytes of int8 scratch the out-of-place layout needs ([`out_of_place_regions`], with the
/// Arm DSP kernels' work areas or not): what
/// [`Int8Model::classify_out_of_place`](crate::Int8Model::classify_out_of_place) takes.
// Out of line: `layout` calls it, and its walks' frames would stay on the stack beside the
// walks `layout` makes after it.
#[inline(never)]
pub const fn out_of_place_scratch_bytes(architecture: &Architecture, dsp: bool) -> usize {
    shortcut_len(architecture) + swapping_len(architecture, dsp)
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
mod tests;
