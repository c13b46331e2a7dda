//! The int8 arena: a band area, then a frame whose two ends the maps lie against (see the
//! [module documentation](super) for the rules). Everything here is a `const fn` of the
//! description, so [`super::int8_scratch_bytes`] can size a `static` while compiling.

use super::{Cursor, Operation, Step, round_up4, work_bytes};
use crate::arch::{Architecture, Padding, Shape, Window};
use crate::kernels::ConvGeometry;
use crate::kernels::general::WindowGeometry;

/// Which end of its frame a map lies against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Flush with the frame's start.
    Low,
    /// Flush with the frame's end.
    High,
}

impl End {
    /// The other end.
    pub const fn other(self) -> End {
        match self {
            End::Low => End::High,
            End::High => End::Low,
        }
    }
}

/// A horizontal band of a step's output: rows `first .. first + rows`, all columns and
/// channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Band {
    /// First output row.
    pub first: usize,
    /// Output rows.
    pub rows: usize,
}

/// How a step's output rows read its input rows: output row `r` reads input rows
/// `r * stride - pad .. r * stride - pad + kernel`, clipped to the input map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowWindow {
    /// Input rows one output row reads.
    pub kernel: usize,
    /// Input rows between two output rows.
    pub stride: usize,
    /// Padding rows above the input.
    pub pad: usize,
}

impl RowWindow {
    /// The first input row output row `row` reads.
    pub const fn first(&self, row: usize) -> usize {
        (row * self.stride).saturating_sub(self.pad)
    }

    /// One past the last input row output row `row` reads, in a map of `rows` rows.
    pub const fn end(&self, row: usize, rows: usize) -> usize {
        let end = (row * self.stride + self.kernel).saturating_sub(self.pad);
        if end < rows { end } else { rows }
    }
}

/// TensorFlow's geometry of `window` on `input` (the runner's, as a `const fn`).
const fn resolve(window: &Window, input: Shape, channels: usize) -> Option<WindowGeometry> {
    WindowGeometry::resolve(
        input,
        window.height as usize,
        window.width as usize,
        window.stride_height as usize,
        window.stride_width as usize,
        matches!(window.padding, Padding::Same),
        channels,
    )
}

impl Step {
    /// How the step's output rows read its input rows, for the steps that can run in bands:
    /// convolutions of every kind (fused with a pool or not), depthwise convolutions, pools
    /// and additions. `None` for the rest (dense layers, softmax, global average pools,
    /// shortcuts).
    pub const fn row_window(&self) -> Option<RowWindow> {
        let (window, channels) = match self.operation {
            Operation::Conv { conv, pooled } => {
                let (kernel, pad) = (conv.side(), conv.pad());
                return Some(if pooled {
                    // Two convolution rows per output row.
                    RowWindow {
                        kernel: kernel + 1,
                        stride: 2,
                        pad,
                    }
                } else {
                    RowWindow {
                        kernel,
                        stride: 1,
                        pad,
                    }
                });
            }
            Operation::Pool => {
                return Some(RowWindow {
                    kernel: 2,
                    stride: 2,
                    pad: 0,
                });
            }
            Operation::Add { .. } => {
                return Some(RowWindow {
                    kernel: 1,
                    stride: 1,
                    pad: 0,
                });
            }
            Operation::WindowConv { conv } => (conv.window, self.output.channels),
            Operation::Depthwise { depthwise } => (depthwise.window, self.output.channels),
            Operation::WindowPool { pool } => (pool.window, self.input.channels),
            _ => return None,
        };
        match resolve(&window, self.input, channels) {
            Some(geometry) => Some(RowWindow {
                kernel: geometry.kernel_height,
                stride: geometry.stride_height,
                pad: geometry.pad_top,
            }),
            None => None,
        }
    }

    /// The padding columns on each side of a square stride-1 convolution (0 for other steps).
    const fn pad_columns(&self) -> usize {
        match self.operation {
            Operation::Conv { conv, .. } => conv.pad(),
            _ => 0,
        }
    }

    /// Whether a band of this step gets a copy of its input rows, framed by the padding (the
    /// input zero point), and runs a 'valid' convolution on it: a square stride-1
    /// convolution with padding (its kernels pad every side of what they are given), or one
    /// without whose input rows are a smaller buffer than its output rows. Other bands read
    /// their input rows where they lie and write to the band buffer.
    pub const fn stages_input(&self) -> bool {
        match self.operation {
            Operation::Conv { conv, .. } => {
                if conv.pad() > 0 {
                    return true;
                }
                match self.row_window() {
                    Some(window) => {
                        window.kernel * row_values(self.input)
                            < self.output.width * self.output.channels
                    }
                    None => false,
                }
            }
            _ => false,
        }
    }

    /// The input rows `first .. end` that `band` reads.
    pub const fn band_input_rows(&self, band: Band) -> (usize, usize) {
        match self.row_window() {
            Some(window) => (
                window.first(band.first),
                window.end(band.first + band.rows - 1, self.input.height),
            ),
            None => (0, self.input.height),
        }
    }

    /// The input shape a band's kernel call gets ([`Step::band`]): the rows it reads, or
    /// for a staged band ([`Step::stages_input`]) those rows framed by the padding; the
    /// whole input when the step is not banded.
    pub const fn band_input(&self) -> Shape {
        let Some(band) = self.band else {
            return self.input;
        };
        let Some(window) = self.row_window() else {
            return self.input;
        };
        if self.stages_input() {
            let pad = self.pad_columns();
            Shape::new(
                (band.rows - 1) * window.stride + window.kernel,
                self.input.width + 2 * pad,
                self.input.channels,
            )
        } else {
            let (first, end) = self.band_input_rows(band);
            Shape::new(end - first, self.input.width, self.input.channels)
        }
    }

    /// The output shape a band's kernel call writes; the whole output when the step is not
    /// banded.
    pub const fn band_output(&self) -> Shape {
        match self.band {
            Some(band) => Shape::new(band.rows, self.output.width, self.output.channels),
            None => self.output,
        }
    }

    /// The geometry of the step's band ([`Step::band`]) of a windowed layer whose whole
    /// geometry is `whole`: the input rows it reads, with the padding rows above them that
    /// remain. `whole` itself when the step is not banded.
    pub const fn band_window(&self, whole: WindowGeometry) -> WindowGeometry {
        let Some(band) = self.band else {
            return whole;
        };
        let window = RowWindow {
            kernel: whole.kernel_height,
            stride: whole.stride_height,
            pad: whole.pad_top,
        };
        let first = window.first(band.first);
        let end = window.end(band.first + band.rows - 1, whole.input.height);
        WindowGeometry {
            input: Shape::new(end - first, whole.input.width, whole.input.channels),
            output: Shape::new(band.rows, whole.output.width, whole.output.channels),
            pad_top: first + whole.pad_top - band.first * whole.stride_height,
            ..whole
        }
    }

    /// The step as one band of it.
    pub const fn with_band(&self, band: Band) -> Step {
        Step {
            band: Some(band),
            ..*self
        }
    }
}

/// The convolution geometry of a banded square stride-1 convolution: a 'valid' one over the
/// band's input ([`Step::band_input`]).
pub(super) const fn band_conv_geometry(
    step: &Step,
    conv: &crate::arch::Conv,
    pooled: bool,
) -> ConvGeometry {
    ConvGeometry {
        input: step.band_input(),
        kernel: conv.side(),
        pad: 0,
        filters: conv.filters as usize,
        pooled,
    }
}

/// Values in one row of a map.
const fn row_values(shape: Shape) -> usize {
    shape.width * shape.channels
}

/// Where the rows of a staged band's copy lie in its buffer ([`Step::stages_input`]): `top`
/// padding rows, `data` rows of input framed by `edge` padding values on each side, `bottom`
/// padding rows, each row `row` values long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staging {
    /// Padding rows above the input rows.
    pub top: usize,
    /// Input rows.
    pub data: usize,
    /// Padding rows below them.
    pub bottom: usize,
    /// Values of a row of the copy.
    pub row: usize,
    /// Padding values at each end of a row.
    pub edge: usize,
}

impl Staging {
    /// Values of the copy.
    pub const fn len(&self) -> usize {
        (self.top + self.data + self.bottom) * self.row
    }

    /// Whether the copy is empty.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Step {
    /// How the copy of a staged band's input is laid out ([`Step::stages_input`]).
    pub const fn staging(&self, band: Band) -> Staging {
        let pad = self.pad_columns();
        let row = (self.input.width + 2 * pad) * self.input.channels;
        let Some(window) = self.row_window() else {
            return Staging {
                top: 0,
                data: 0,
                bottom: 0,
                row,
                edge: 0,
            };
        };
        let rows = (band.rows - 1) * window.stride + window.kernel;
        let (first, end) = self.band_input_rows(band);
        let top = window.pad.saturating_sub(band.first * window.stride);
        Staging {
            top,
            data: end - first,
            bottom: rows - top - (end - first),
            row,
            edge: pad * self.input.channels,
        }
    }
}

/// A step's rows, as banding sees them.
#[derive(Clone, Copy, Debug)]
struct Rows {
    window: RowWindow,
    rows_in: usize,
    row_in: usize,
    rows_out: usize,
    row_out: usize,
    /// Values of a staged row, 0 when bands read their input in place.
    staged_row: usize,
}

const fn rows_of(step: &Step) -> Option<Rows> {
    let Some(window) = step.row_window() else {
        return None;
    };
    let staged_row = if step.stages_input() {
        (step.input.width + 2 * step.pad_columns()) * step.input.channels
    } else {
        0
    };
    Some(Rows {
        window,
        rows_in: step.input.height,
        row_in: row_values(step.input),
        rows_out: step.output.height,
        row_out: row_values(step.output),
        staged_row,
    })
}

/// Whether `step` runs in bands with these kernels when that makes the arena smaller: every
/// step with a [`Step::row_window`], but with the portable kernels a convolution fused with
/// its pool whose input has padding. Its bands' copies would frame every row with the padding,
/// whose taps the portable kernel then multiplies (its one call skips them, as the Arm DSP
/// kernels' unrolled windows do not): 5 % more instructions for the tutorial's network.
const fn banded_rows(step: &Step, dsp: bool) -> Option<Rows> {
    if let Operation::Conv { conv, pooled: true } = step.operation
        && !dsp
        && conv.pad() > 0
    {
        return None;
    }
    rows_of(step)
}

/// Units of the band buffer a band of `rows` rows needs.
pub const fn band_buffer_len(step: &Step, rows: usize) -> usize {
    match rows_of(step) {
        Some(shape) => buffer_len(&shape, rows),
        None => 0,
    }
}

const fn buffer_len(shape: &Rows, rows: usize) -> usize {
    if shape.staged_row > 0 {
        ((rows - 1) * shape.window.stride + shape.window.kernel) * shape.staged_row
    } else {
        rows * shape.row_out
    }
}

/// Bytes of work area a band of `rows` rows of `step` needs (rounded up to 4): a square
/// stride-1 convolution's is its band's 'valid' convolution's ([`Step::geometry`]); the
/// others' do not depend on the rows. Without a copy of the step: a microcontroller works
/// this out while loading a model, and the stack it takes is RAM.
const fn band_work(step: &Step, shape: &Rows, rows: usize, dsp: bool) -> usize {
    if let Operation::Conv { conv, pooled } = step.operation
        && dsp
    {
        let pad = conv.pad();
        let geometry = ConvGeometry {
            input: Shape::new(
                (rows - 1) * shape.window.stride + shape.window.kernel,
                step.input.width + 2 * pad,
                step.input.channels,
            ),
            kernel: conv.side(),
            pad: 0,
            filters: conv.filters as usize,
            pooled,
        };
        return round_up4(super::dsp_conv_work_bytes(&geometry));
    }
    round_up4(work_bytes(step, dsp))
}

/// Bytes of the band area that bands of `rows` rows need: the work area and the band buffer.
const fn band_need(step: &Step, shape: &Rows, rows: usize, dsp: bool) -> usize {
    band_work(step, shape, rows, dsp) + buffer_len(shape, rows)
}

/// Bytes beyond its map that a step needs to run in place ([`Mode::InPlace`]): a row and a
/// pixel for a 3x3 stride-1 depthwise convolution the Arm DSP kernels run, whose output has
/// its input's shape (`crate::kernels::dsp::depthwise_in_place`); 0 for every other step.
const fn in_place_lag(step: &Step, dsp: bool) -> usize {
    if !dsp {
        return 0;
    }
    let Operation::Depthwise { depthwise } = step.operation else {
        return 0;
    };
    match resolve(&depthwise.window, step.input, step.output.channels) {
        Some(geometry) => super::dsp_depthwise_in_place_lag(&geometry),
        None => 0,
    }
}

/// The rows a band's height is a multiple of: 4 pixels for the convolutions the Arm DSP
/// kernels compute four positions at a time (a band of fewer computes the rest of the group
/// for nothing), else 1.
const fn band_unit(step: &Step, dsp: bool) -> usize {
    if !dsp || matches!(step.layer.activation(), crate::arch::Activation::Relu6) {
        return 1;
    }
    let Operation::Conv {
        conv,
        pooled: false,
    } = step.operation
    else {
        return 1;
    };
    // The kernels the band's 'valid' convolution gets (their choice reads the kernel side
    // and the input channels).
    let geometry = ConvGeometry {
        input: Shape::new(conv.side(), conv.side(), step.input.channels),
        kernel: conv.side(),
        pad: 0,
        filters: conv.filters as usize,
        pooled: false,
    };
    if !super::dsp_runs_conv(&geometry) {
        return 1;
    }
    match step.output.width % 4 {
        0 => 1,
        2 => 2,
        _ => 4,
    }
}

/// The fewest rows a band of `step` has: [`band_unit`], or the whole output if smaller.
const fn least_rows(step: &Step, shape: &Rows, dsp: bool) -> usize {
    min(band_unit(step, dsp), shape.rows_out)
}

/// The most rows a band of `step` may have in a band area of `band_area` bytes (a multiple of
/// [`band_unit`] unless it is the whole output); 0 when not even the fewest fit.
const fn band_rows(step: &Step, shape: &Rows, band_area: usize, dsp: bool) -> usize {
    let least = least_rows(step, shape, dsp);
    if least == 0 || band_need(step, shape, least, dsp) > band_area {
        return 0;
    }
    // The need grows with the rows: the largest that fits, by bisection. Only a convolution's
    // work area depends on the rows; the others' is worked out once (a microcontroller plans
    // every step of every inference).
    let fixed_work = match step.operation {
        Operation::Conv { .. } if dsp => None,
        _ => Some(round_up4(work_bytes(step, dsp))),
    };
    let (mut fits, mut too_many) = (1, shape.rows_out + 1);
    while too_many - fits > 1 {
        let middle = (fits + too_many) / 2;
        let need = match fixed_work {
            Some(work) => work + buffer_len(shape, middle),
            None => band_need(step, shape, middle, dsp),
        };
        if need <= band_area {
            fits = middle;
        } else {
            too_many = middle;
        }
    }
    if fits < shape.rows_out {
        let unit = band_unit(step, dsp);
        fits -= fits % unit;
    }
    fits
}

/// Over the band boundaries (multiples of `rows` inside the output), the largest of
/// `r * row_out - first(r) * row_in` (`.0`: how far a top-down pass's output may run ahead
/// of its input) and the smallest of `r * row_out - end(r - 1) * row_in` (`.1`, for a
/// bottom-up pass). Without boundaries (one band): `isize::MIN` and `isize::MAX`.
///
/// The first is concave in `r` and the second convex, each linear on either side of one
/// kink, so the extremes lie at the first or last boundary or beside a kink.
const fn limits(shape: &Rows, rows: usize) -> (isize, isize) {
    let last = (shape.rows_out - 1) / rows;
    if last == 0 {
        return (isize::MIN, isize::MAX);
    }
    let window = shape.window;
    // Where first(r) starts growing, and where end(r - 1) reaches the map's end.
    let kink_down = window.pad / (window.stride * rows);
    let kink_up =
        ((shape.rows_in + window.pad).saturating_sub(window.kernel) / window.stride + 1) / rows;
    let candidates = [1, last, kink_down, kink_down + 1, kink_up, kink_up + 1];
    let (mut ahead, mut behind) = (isize::MIN, isize::MAX);
    let mut rest: &[usize] = &candidates;
    while let [multiple, others @ ..] = rest {
        rest = others;
        let multiple = *multiple;
        if multiple < 1 || multiple > last {
            continue;
        }
        let r = multiple * rows;
        let out = (r * shape.row_out) as isize;
        let down = out - (window.first(r) * shape.row_in) as isize;
        let up = out - (window.end(r - 1, shape.rows_in) * shape.row_in) as isize;
        if down > ahead {
            ahead = down;
        }
        if up < behind {
            behind = up;
        }
    }
    (ahead, behind)
}

/// How the plan places a step, before the frame's size is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    /// An identity shortcut: the block's input stays where it lies and is the shortcut.
    Keep,
    /// The output against the frame's other end: in one call when the frame has room, in
    /// bands otherwise (a projection shortcut is always one call).
    Opposite,
    /// The output against the same end as the input, in bands, top band first or not.
    Same { downward: bool },
    /// An identity block's first step: from the shortcut to the far end of the block's
    /// frame.
    FromShortcut,
    /// An addition, in bands, into the shortcut's place.
    IntoShortcut,
    /// The output against the frame's other end, over its own input, in one call
    /// ([`Mode::InPlace`]).
    InPlace,
}

/// A step's placement before the frame's size is known.
#[derive(Clone, Copy, Debug)]
struct Decision {
    choice: Choice,
    /// Band rows, 0 when the step cannot run in bands.
    rows: usize,
    /// Bytes of the frame it needs, the shortcut's included.
    need: usize,
    /// Bytes of work area the step needs in one call.
    work: usize,
}

/// Where the main line lies between steps.
#[derive(Clone, Copy, Debug)]
struct Place {
    /// The end of the (block's) frame it lies against.
    end: End,
    /// Bytes the open residual block's shortcut takes from the frame (0 outside a block).
    reserved: usize,
    /// The end of the whole frame the shortcut lies against.
    shortcut_end: End,
    /// Units of the shortcut.
    shortcut: usize,
    /// Whether the main line is still the shortcut (an identity block before its first
    /// step).
    in_shortcut: bool,
}

const START: Place = Place {
    end: End::Low,
    reserved: 0,
    shortcut_end: End::Low,
    shortcut: 0,
    in_shortcut: false,
};

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

const fn min(a: usize, b: usize) -> usize {
    if a < b { a } else { b }
}

/// Frame bytes two ends need for `input` and `output` apart with `work` between them (the
/// work area starts on a word boundary after the lower one).
const fn apart(end: End, input: usize, output: usize, work: usize) -> usize {
    if work == 0 {
        return input + output;
    }
    match end {
        End::Low => round_up4(input) + work + output,
        End::High => round_up4(output) + work + input,
    }
}

/// Frame bytes a step needs with its output at the other end of a frame, `rows`-row bands
/// (0: in one call only), `band_area` bytes of band area.
const fn opposite_need(
    end: End,
    shape: Option<Rows>,
    input: usize,
    output: usize,
    work: usize,
    rows: usize,
    band_area: usize,
) -> usize {
    let mut need = apart(end, input, output, work);
    if work <= band_area && input + output < need {
        need = input + output;
    }
    if let Some(shape) = shape
        && rows > 0
    {
        let (ahead, behind) = limits(&shape, rows);
        // Frame bytes the overlap needs; at most 0 when any frame will do.
        let overlapped = match end {
            // Input at the low end, output at the high end, bottom band first.
            End::Low => {
                if behind == isize::MAX {
                    0
                } else {
                    output as isize - behind
                }
            }
            // Input at the high end, output at the low end, top band first.
            End::High => {
                if ahead == isize::MIN {
                    0
                } else {
                    input as isize + ahead
                }
            }
        };
        let overlapped = if overlapped > 0 {
            overlapped as usize
        } else {
            0
        };
        let banded = max(max(input, output), overlapped);
        if banded < need {
            need = banded;
        }
    }
    need
}

/// Whether a step whose input lies against `end` can write its output against the same
/// end in `rows`-row bands, and in which direction (`Some(true)`: top band first).
const fn same_end(
    end: End,
    shape: &Rows,
    input: usize,
    output: usize,
    rows: usize,
) -> Option<bool> {
    let (ahead, behind) = limits(shape, rows);
    let room = match end {
        End::Low => 0,
        End::High => output as isize - input as isize,
    };
    if ahead <= room {
        Some(true)
    } else if behind >= room {
        Some(false)
    } else {
        None
    }
}

/// How `step` is placed from `place` with a band area of `band_area` bytes; `None` when it
/// cannot be (an addition whose band buffer does not fit). With `frame` (the frame's bytes,
/// once known), a step whose input and output fit apart in it runs in one call, its output
/// at the other end, rather than in bands. Out of line: its temporaries need not stay on the
/// stack while the walks that call it read the description.
#[inline(never)]
const fn decide(
    step: &Step,
    place: &Place,
    band_area: usize,
    dsp: bool,
    frame: Option<usize>,
) -> Option<Decision> {
    let (input, output) = (step.input.values(), step.output.values());
    let work = work_bytes(step, dsp);
    let shape = banded_rows(step, dsp);
    let rows = match shape {
        Some(shape) => band_rows(step, &shape, band_area, dsp),
        None => 0,
    };
    let reserved = place.reserved;
    if let Operation::Shortcut { shortcut } = step.operation {
        return Some(match shortcut.projection() {
            None => Decision {
                choice: Choice::Keep,
                rows: 0,
                need: input,
                work: 0,
            },
            Some(_) => Decision {
                choice: Choice::Opposite,
                rows: 0,
                need: opposite_need(place.end, None, input, output, work, 0, band_area),
                work,
            },
        });
    }
    if let Operation::Add { .. } = step.operation {
        if rows == 0 {
            return None;
        }
        return Some(Decision {
            choice: Choice::IntoShortcut,
            rows,
            need: if place.in_shortcut {
                reserved
            } else {
                reserved + input
            },
            work,
        });
    }
    if place.in_shortcut {
        // From the shortcut, which must stay, to the block frame's far end.
        let far = place.shortcut_end.other();
        let mut need = match far {
            // The work area at the block frame's start, which is word-aligned.
            End::High => work + output,
            End::Low => apart(End::High, 0, output, work),
        };
        if work <= band_area {
            need = output;
        }
        return Some(Decision {
            choice: Choice::FromShortcut,
            rows: 0,
            need: reserved + need,
            work,
        });
    }
    let whole = opposite_need(place.end, None, input, output, work, 0, band_area);
    if let Some(frame) = frame
        && reserved + whole <= frame
    {
        return Some(Decision {
            choice: Choice::Opposite,
            rows,
            need: reserved + whole,
            work,
        });
    }
    let banded = if let Some(shape) = shape
        && rows > 0
        && let Some(downward) = same_end(place.end, &shape, input, output, rows)
    {
        Decision {
            choice: Choice::Same { downward },
            rows,
            need: reserved + max(input, output),
            work,
        }
    } else {
        Decision {
            choice: Choice::Opposite,
            rows,
            need: reserved + opposite_need(place.end, shape, input, output, work, rows, band_area),
            work,
        }
    };
    // A dense layer of the Arm DSP kernels can do without its work area, widening its input
    // as it reads it (a little slower): when the work area would make it need more.
    if let Operation::Dense = step.operation
        && dsp
        && work > 0
        && reserved + input + output < banded.need
    {
        return Some(Decision {
            choice: Choice::Opposite,
            rows: 0,
            need: reserved + input + output,
            work: 0,
        });
    }
    // In place when that needs less of the frame (it needs no band buffer, but a pixel more
    // than a row's shift).
    let lag = in_place_lag(step, dsp);
    if lag > 0 && work <= band_area && reserved + input + lag < banded.need {
        return Some(Decision {
            choice: Choice::InPlace,
            rows: 0,
            need: reserved + input + lag,
            work,
        });
    }
    Some(banded)
}

/// The main line after `step`.
const fn advance(place: &mut Place, step: &Step, decision: &Decision) {
    match decision.choice {
        Choice::Keep => {
            place.reserved = round_up4(step.input.values());
            place.shortcut_end = place.end;
            place.shortcut = step.input.values();
            place.in_shortcut = true;
        }
        Choice::Opposite => {
            if let Operation::Shortcut { .. } = step.operation {
                place.reserved = round_up4(step.output.values());
                place.shortcut_end = place.end.other();
                place.shortcut = step.output.values();
            } else {
                place.end = place.end.other();
            }
        }
        Choice::Same { .. } => {}
        Choice::InPlace => place.end = place.end.other(),
        Choice::FromShortcut => {
            place.in_shortcut = false;
            place.end = place.shortcut_end.other();
        }
        Choice::IntoShortcut => {
            place.end = place.shortcut_end;
            place.reserved = 0;
            place.in_shortcut = false;
        }
    }
}

/// The sizes of an arena's parts ([`layout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Units of the band area at the arena's start: work areas and band buffers.
    pub band_area: usize,
    /// Units of the frame above it, where the maps lie.
    pub frame: usize,
    /// Whether the Arm DSP kernels' work areas are planned.
    pub dsp: bool,
    /// The out-of-place layout instead ([`super::out_of_place_regions`]): the frame is the
    /// whole arena, a shortcut area and two ends that swap at every step; no band area.
    pub out_of_place: bool,
    /// Every step whose input and output fit apart in the frame runs in one call, its
    /// output at the other end (when that leaves the frame as large as it is).
    pub prefer_whole: bool,
}

impl Layout {
    /// No arena (a model before its layout is worked out).
    pub const EMPTY: Layout = Layout {
        band_area: 0,
        frame: 0,
        dsp: false,
        out_of_place: true,
        prefer_whole: false,
    };

    /// Units of the arena.
    pub const fn arena(&self) -> usize {
        self.band_area + self.frame
    }

    /// The out-of-place layout of `architecture` ([`super::out_of_place_regions`]): f32's,
    /// and the reference int8 runs are checked against.
    pub const fn out_of_place(architecture: &Architecture, dsp: bool) -> Layout {
        Layout {
            band_area: 0,
            frame: super::out_of_place_scratch_bytes(architecture, dsp),
            dsp,
            out_of_place: true,
            prefer_whole: false,
        }
    }
}

/// Frame bytes the steps need with a band area of `band_area` bytes, and the step that
/// needs the most (0-based); `None` when some step cannot be placed.
#[inline(never)]
const fn frame_for(
    architecture: &Architecture,
    band_area: usize,
    dsp: bool,
    frame: Option<usize>,
) -> Option<(usize, usize)> {
    let mut place = START;
    let mut cursor = Cursor::new(architecture);
    let (mut largest, mut at, mut index) = (architecture.input().values(), 0, 0);
    while let Some(step) = cursor.next(architecture) {
        let Some(decision) = decide(&step, &place, band_area, dsp, frame) else {
            return None;
        };
        if decision.need > largest {
            largest = decision.need;
            at = index;
        }
        advance(&mut place, &step, &decision);
        index += 1;
    }
    Some((round_up4(largest), at))
}

/// The arena bytes with a band area of `band_area`, if every step can be placed.
const fn arena_for(architecture: &Architecture, band_area: usize, dsp: bool) -> Option<usize> {
    match frame_for(architecture, band_area, dsp, None) {
        Some((frame, _)) => Some(band_area + frame),
        None => None,
    }
}

/// The band areas step `index` suggests: its work area in one call, and that of its fewest
/// band rows with their buffer; `None` past the last step.
// Out of line, as `frame_for`: their walks' frames would add up inside `layout`.
#[inline(never)]
const fn candidates(architecture: &Architecture, index: usize, dsp: bool) -> Option<[usize; 2]> {
    let mut cursor = Cursor::new(architecture);
    let mut at = 0;
    while let Some(step) = cursor.next(architecture) {
        if at == index {
            let whole = round_up4(work_bytes(&step, dsp));
            let banded = match banded_rows(&step, dsp) {
                Some(shape) if shape.rows_out > 0 => {
                    band_need(&step, &shape, least_rows(&step, &shape, dsp), dsp)
                }
                _ => 0,
            };
            return Some([whole, round_up4(banded)]);
        }
        at += 1;
    }
    None
}

/// The layout of the smallest int8 arena for `architecture` with the Arm DSP kernels'
/// work areas (`dsp`) or without.
///
/// The band area's size is chosen among a few candidates: none, and for every step the
/// work area of one call, and that of its fewest band rows with their buffer. For each, the
/// frame is the most any step needs; the smallest sum wins, the smaller band area on a tie
/// (fewer steps run in bands). With the frame's size known, the steps that fit apart in it
/// run in one call ([`Layout::prefer_whole`]) when that keeps the frame as it is. The
/// out-of-place layout is taken when it is no larger. `core/FORMAT.md` ("Scratch memory")
/// spells out every rule.
pub const fn layout(architecture: &Architecture, dsp: bool) -> Layout {
    let mut best = Layout {
        band_area: 0,
        frame: 0,
        dsp,
        out_of_place: false,
        prefer_whole: false,
    };
    let mut best_arena = usize::MAX;
    if let Some(arena) = arena_for(architecture, 0, dsp) {
        best_arena = arena;
    }
    // The candidates of one step at a time: no walk stays open across the walks that try
    // them, which keeps the stack of a microcontroller loading a model shallow.
    let mut index = 0;
    while let Some(candidates) = candidates(architecture, index, dsp) {
        index += 1;
        let mut rest: &[usize] = &candidates;
        while let [band_area, others @ ..] = rest {
            rest = others;
            let band_area = *band_area;
            if band_area >= best_arena {
                continue;
            }
            if let Some(arena) = arena_for(architecture, band_area, dsp)
                && (arena < best_arena || (arena == best_arena && band_area < best.band_area))
            {
                best_arena = arena;
                best.band_area = band_area;
            }
        }
    }
    best.frame = best_arena - best.band_area;
    // With the frame's size known, the steps that fit apart in it run in one call, if that
    // does not make it larger (the ends the main line takes may change).
    if let Some((frame, _)) = frame_for(architecture, best.band_area, dsp, Some(best.frame))
        && frame <= best.frame
    {
        best.prefer_whole = true;
    }
    // Never more than the out-of-place layout, which also runs every step in one call.
    let out_of_place = Layout::out_of_place(architecture, dsp);
    if out_of_place.arena() <= best.arena() {
        return out_of_place;
    }
    best
}

/// The step whose frame need sets the frame's size (0-based), under `layout`.
pub const fn frame_peak_step(architecture: &Architecture, layout: &Layout) -> usize {
    if layout.out_of_place {
        return super::out_of_place_peak_step(architecture, layout.dsp);
    }
    let frame = if layout.prefer_whole {
        Some(layout.frame)
    } else {
        None
    };
    match frame_for(architecture, layout.band_area, layout.dsp, frame) {
        Some((_, at)) => at,
        None => 0,
    }
}

/// How a step runs in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing to compute: an identity shortcut keeps the block's input where it lies as the
    /// shortcut (input and output are the same place).
    Keep,
    /// One kernel call; input, output and work area apart.
    Whole,
    /// One kernel call whose output, of the input's shape, overwrites its own input: a 3x3
    /// stride-1 depthwise convolution of the Arm DSP kernels, its output at least a row and a
    /// pixel before or after its input (`crate::kernels::dsp::depthwise_in_place`).
    InPlace,
    /// In bands of `rows` output rows (the last may be shorter), the top band first
    /// (`downward`) or the bottom one. A band reads its input rows where they lie and writes
    /// to the band buffer, which is then copied to the band's place in the output; or, when
    /// `staged`, its input rows are copied to the band buffer, framed by the padding, and it
    /// writes its output rows in place. The output may overlap the input: a band overwrites
    /// only input rows no later band reads.
    Bands {
        /// Output rows per band.
        rows: usize,
        /// Top band first.
        downward: bool,
        /// Input copied to the band buffer ([`Step::stages_input`]).
        staged: bool,
        /// Offset of the band buffer (after the work area, in the band area).
        buffer: usize,
    },
}

/// Where a step's input, output and work area lie in the arena (offsets and lengths in
/// units: bytes for int8, values for f32), and how it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regions {
    /// Input offset (its length is the step's input values).
    pub input: usize,
    /// Output offset (its length is the step's output values).
    pub output: usize,
    /// Work offset (a multiple of 4).
    pub work: usize,
    /// Work units available.
    pub work_len: usize,
    /// Offset of the open residual block's shortcut (its length is the addition's output).
    pub shortcut: usize,
    /// One call, bands, or nothing to do.
    pub mode: Mode,
}

impl Regions {
    /// Units of band buffer `step` uses with these regions (0 unless it runs in bands).
    pub const fn buffer_len(&self, step: &Step) -> usize {
        match self.mode {
            Mode::Bands { rows, .. } => band_buffer_len(step, min(rows, step.output.height)),
            _ => 0,
        }
    }
}

/// The int8 placement of every step, in order: a walk over the description with the main
/// line's place ([`placements`]).
#[derive(Clone, Copy, Debug)]
pub struct Placer {
    cursor: Cursor,
    place: Place,
    layout: Layout,
    /// The out-of-place layout's shortcut area.
    shortcut_area: usize,
}

/// Offset of a map of `len` units against `end` of the frame `low .. high`.
const fn against(end: End, low: usize, high: usize, len: usize) -> usize {
    match end {
        End::Low => low,
        End::High => high.saturating_sub(len),
    }
}

impl Placer {
    /// Before the first step of `architecture`, in an arena of `layout`.
    pub const fn new(architecture: &Architecture, layout: Layout) -> Self {
        Placer {
            cursor: Cursor::new(architecture),
            place: START,
            layout,
            shortcut_area: if layout.out_of_place {
                super::shortcut_len(architecture)
            } else {
                0
            },
        }
    }

    /// Units of the band area (0 in the out-of-place layout).
    pub const fn band_area(&self) -> usize {
        self.layout.band_area
    }

    /// Offset of the network's input (the first step's).
    pub const fn input_offset(&self) -> usize {
        if self.layout.out_of_place {
            self.shortcut_area
        } else {
            self.layout.band_area
        }
    }

    /// The next step and its regions, `None` after the last (or when a step cannot be
    /// placed, which the layout rules out). Out of line: a runner that inlined it would keep
    /// its temporaries on the stack beside every kernel.
    #[inline(never)]
    pub const fn next(&mut self, architecture: &Architecture) -> Option<(Step, Regions)> {
        let Some(step) = self.cursor.next(architecture) else {
            return None;
        };
        let layout = self.layout;
        if layout.out_of_place {
            let regions = super::out_of_place_regions(&step, self.shortcut_area, layout.frame);
            return Some((step, regions));
        }
        let place = self.place;
        let frame = if layout.prefer_whole {
            Some(layout.frame)
        } else {
            None
        };
        let Some(decision) = decide(&step, &place, layout.band_area, layout.dsp, frame) else {
            return None;
        };
        let (input, output) = (step.input.values(), step.output.values());
        // The whole frame, and the block's frame (without the shortcut).
        let (low, high) = (layout.band_area, layout.band_area + layout.frame);
        let (inner_low, inner_high) = match place.shortcut_end {
            End::Low => (low + place.reserved, high),
            End::High => (low, high - place.reserved),
        };
        let shortcut = against(place.shortcut_end, low, high, place.shortcut);
        let main = if place.in_shortcut {
            shortcut
        } else {
            against(place.end, inner_low, inner_high, input)
        };
        // A call's work area in the band area, from its start.
        let zone = (0, layout.band_area);
        let regions = match decision.choice {
            Choice::Keep => Regions {
                input: main,
                output: main,
                work: 0,
                work_len: 0,
                shortcut,
                mode: Mode::Keep,
            },
            Choice::FromShortcut => {
                let far = place.shortcut_end.other();
                let output_at = against(far, inner_low, inner_high, output);
                let (work, work_len) = if decision.work == 0 {
                    (0, 0)
                } else if decision.work > layout.band_area {
                    match far {
                        End::High => (inner_low, output_at - inner_low),
                        End::Low => {
                            let work = round_up4(output_at + output);
                            (work, inner_high - work)
                        }
                    }
                } else {
                    zone
                };
                Regions {
                    input: main,
                    output: output_at,
                    work,
                    work_len,
                    shortcut,
                    mode: Mode::Whole,
                }
            }
            Choice::IntoShortcut => {
                let (mode, work_len) = bands(&step, decision.rows, true, layout.dsp);
                Regions {
                    input: main,
                    output: shortcut,
                    work: 0,
                    work_len,
                    shortcut,
                    mode,
                }
            }
            Choice::InPlace => Regions {
                input: main,
                output: against(place.end.other(), inner_low, inner_high, output),
                work: zone.0,
                work_len: zone.1,
                shortcut,
                mode: Mode::InPlace,
            },
            Choice::Same { downward } => {
                let (mode, work_len) = bands(&step, decision.rows, downward, layout.dsp);
                Regions {
                    input: main,
                    output: against(place.end, inner_low, inner_high, output),
                    work: 0,
                    work_len,
                    shortcut,
                    mode,
                }
            }
            Choice::Opposite => {
                let output_at = against(place.end.other(), inner_low, inner_high, output);
                let room = inner_high - inner_low;
                let between = apart(place.end, input, output, decision.work) <= room;
                let (mode, work, work_len) = if between && decision.work > 0 {
                    // Between the two, from the word after the lower one.
                    let (work, work_end) = match place.end {
                        End::Low => (round_up4(main + input), output_at),
                        End::High => (round_up4(output_at + output), main),
                    };
                    (Mode::Whole, work, work_end - work)
                } else if between || (decision.work <= layout.band_area && input + output <= room) {
                    let (work, work_len) = if decision.work > 0 { zone } else { (0, 0) };
                    (Mode::Whole, work, work_len)
                } else {
                    let downward = matches!(place.end, End::High);
                    let (mode, work_len) = bands(&step, decision.rows, downward, layout.dsp);
                    (mode, 0, work_len)
                };
                Regions {
                    input: main,
                    output: output_at,
                    work,
                    work_len,
                    shortcut,
                    mode,
                }
            }
        };
        advance(&mut self.place, &step, &decision);
        Some((step, regions))
    }
}

/// Bands of `rows` rows for `step`, and the work area a band needs (at the band area's
/// start; the band buffer follows it).
const fn bands(step: &Step, rows: usize, downward: bool, dsp: bool) -> (Mode, usize) {
    let work = match rows_of(step) {
        Some(shape) => band_work(step, &shape, rows, dsp),
        None => 0,
    };
    let mode = Mode::Bands {
        rows,
        downward,
        staged: step.stages_input(),
        buffer: work,
    };
    (mode, work)
}

/// Every step of `architecture` with its int8 regions in an arena of `layout`.
pub fn placements(
    architecture: &Architecture,
    layout: Layout,
) -> impl Iterator<Item = (Step, Regions)> + '_ {
    let mut placer = Placer::new(architecture, layout);
    core::iter::from_fn(move || placer.next(architecture))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`limits`] by brute force: every boundary.
    fn limits_of_every_boundary(shape: &Rows, rows: usize) -> (isize, isize) {
        let (mut ahead, mut behind) = (isize::MIN, isize::MAX);
        let mut r = rows;
        while r < shape.rows_out {
            let out = (r * shape.row_out) as isize;
            let window = shape.window;
            ahead = ahead.max(out - (window.first(r) * shape.row_in) as isize);
            behind = behind.min(out - (window.end(r - 1, shape.rows_in) * shape.row_in) as isize);
            r += rows;
        }
        (ahead, behind)
    }

    /// [`band_work`] without a copy of the step is the work of the band's own geometry.
    #[test]
    fn band_work_is_the_bands_geometrys() {
        let model = |bytes: &[u8]| crate::format::peek_architecture(bytes).unwrap().1;
        let text = |text: &str| crate::text::parse(text, Shape::new(1, 1, 1)).unwrap();
        let networks = [
            model(include_bytes!("../../../data/model-int8.tcnn")),
            model(include_bytes!("../../../data/mlperf/kws.tcnn")),
            model(include_bytes!("../../../data/mlperf/vww.tcnn")),
            model(include_bytes!("../../../data/mlperf/resnet8.tcnn")),
            text(
                "input:14x13x1 conv3x3:5 conv3x3:4 pool conv5x5:8:valid conv1x1:3 flatten dense:3",
            ),
            text("input:12x10x3 conv3x3:8 pool conv3x3:6 conv1x1:16:valid flatten dense:3"),
        ];
        let mut checked = 0;
        for architecture in &networks {
            let mut cursor = Cursor::new(architecture);
            while let Some(step) = cursor.next(architecture) {
                let Some(shape) = rows_of(&step) else {
                    continue;
                };
                for rows in 1..=step.output.height {
                    for dsp in [false, true] {
                        let band = step.with_band(Band { first: 0, rows });
                        assert_eq!(
                            band_work(&step, &shape, rows, dsp),
                            round_up4(work_bytes(&band, dsp)),
                            "{architecture}: {step:?}, {rows} rows"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 500, "{checked}");
    }

    #[test]
    fn limits_are_those_of_every_boundary() {
        let mut checked = 0;
        for kernel in 1usize..=6 {
            for stride in 1..=3 {
                for pad in 0..kernel {
                    for rows_in in 1..=20 {
                        // TensorFlow's output rows for this padding, or fewer.
                        let most = (rows_in + 2 * pad).saturating_sub(kernel) / stride + 1;
                        for rows_out in 1..=most {
                            for (row_in, row_out) in [(3, 5), (8, 8), (12, 4), (1, 64)] {
                                let shape = Rows {
                                    window: RowWindow {
                                        kernel,
                                        stride,
                                        pad,
                                    },
                                    rows_in,
                                    row_in,
                                    rows_out,
                                    row_out,
                                    staged_row: 0,
                                };
                                for rows in 1..=rows_out {
                                    assert_eq!(
                                        limits(&shape, rows),
                                        limits_of_every_boundary(&shape, rows),
                                        "{shape:?}, bands of {rows}"
                                    );
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
    }
}
