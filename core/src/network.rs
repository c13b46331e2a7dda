//! Runs a whole network on one image, int8 or f32, in caller-provided
//! scratch memory laid out by [`crate::plan`].

use crate::arch::{Activation, Architecture, Layer, Padding, PoolKind, Shape, Window};
use crate::error::Error;
use crate::format::{self, F32LayerRecord, F32Model, Int8LayerRecord, Int8Model, QuantParams};
#[cfg(tinycnn_arm_dsp)]
use crate::kernels::dsp;
use crate::kernels::general::{self, AddParams, SoftmaxParams, WindowGeometry};
use crate::kernels::int8::Backend;
use crate::kernels::{
    ConvGeometry, F32Kernels, Int8Kernels, argmax, f32 as kf32, int8 as ki8, max_pool2,
};
use crate::plan::{self, Operation, Step};
use crate::quant::{self, Rounding};

/// A classification: the class and the logits it was chosen from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction<'s, T> {
    /// The predicted class: the index of the largest logit (the lowest index
    /// on ties; for f32, NaN never wins).
    pub class: usize,
    /// The last layer's outputs (the logits, or the probabilities of a
    /// network that ends in softmax, or its values), borrowed from the scratch.
    pub logits: &'s [T],
}

/// What an observer of an inference sees after each step.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'o, T> {
    /// 0-based number of the step.
    pub index: usize,
    /// The step (its layer, operation and shapes).
    pub step: &'o Step,
    /// The kernels that ran it (f32 kernels are the portable ones).
    pub kernels: Backend,
    /// Its output (after its activation and fused pool), channels-last.
    pub output: &'o [T],
}

/// Scratch memory of `N` bytes for int8 inference, aligned for the Arm DSP
/// kernels' word accesses. Size it with [`crate::plan::int8_scratch_bytes`]
/// (a `const fn`) and make it a `static` on a microcontroller.
#[derive(Clone, Debug)]
#[repr(C, align(4))]
pub struct Scratch<const N: usize>([i8; N]);

impl<const N: usize> Scratch<N> {
    /// Zeroed scratch; `const`, so it can initialise a `static`.
    pub const fn new() -> Self {
        Scratch([0; N])
    }

    /// The bytes, for [`Int8Model::classify`].
    pub fn as_mut_slice(&mut self) -> &mut [i8] {
        &mut self.0
    }
}

impl<const N: usize> Default for Scratch<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a step (or one band of it) reads: a slice of the arena, a band's input rows
/// copied to the band buffer whose padding is still to be filled ([`plan::Staging`]), or
/// the part of the frame where a step that runs in place reads and writes
/// ([`plan::Mode::InPlace`]).
enum Input<'a, T> {
    Ready(&'a [T]),
    Staged {
        copy: &'a mut [T],
        staging: plan::Staging,
    },
    InPlace(InPlace<'a, T>),
}

/// The frame from the lower of a step's input and output to the end of the higher, and
/// where each starts in it ([`plan::Mode::InPlace`]).
struct InPlace<'a, T> {
    region: &'a mut [T],
    input_at: usize,
    output_at: usize,
}

impl<'a, T: Copy> Input<'a, T> {
    /// The input ready to read, or the place of a step that runs in place.
    fn split(self, pad: T) -> (&'a [T], Option<InPlace<'a, T>>) {
        match self {
            Input::InPlace(place) => (&[], Some(place)),
            other => (other.ready(pad), None),
        }
    }

    /// The input, a staged copy's padding filled with `pad` (the input zero point for int8:
    /// the real value 0, which TensorFlow Lite's skipped taps amount to).
    fn ready(self, pad: T) -> &'a [T] {
        match self {
            Input::Ready(input) => input,
            // Only the Arm DSP depthwise kernel reads it, through `split`.
            Input::InPlace(_) => &[],
            Input::Staged { copy, staging } => {
                let plan::Staging {
                    top,
                    data,
                    row,
                    edge,
                    ..
                } = staging;
                let (above, rest) = copy.split_at_mut(top * row);
                above.fill(pad);
                let (rows, below) = rest.split_at_mut((data * row).min(rest.len()));
                below.fill(pad);
                if edge > 0 {
                    for line in rows.chunks_exact_mut(row) {
                        let (left, rest) = line.split_at_mut(edge.min(line.len()));
                        left.fill(pad);
                        let right = rest.len().saturating_sub(edge);
                        rest.get_mut(right..).unwrap_or(&mut []).fill(pad);
                    }
                }
                copy
            }
        }
    }
}

/// A step's slices of the arena (or of one band of it): what it reads, what it writes, its
/// work area, and the shortcut (the block's shortcut, for an addition).
struct Slices<'a, T> {
    input: Input<'a, T>,
    output: &'a mut [T],
    work: &'a mut [T],
    shortcut: &'a [T],
    /// A later band of a banded step: it runs with the record and zero points its first
    /// band started from.
    again: bool,
    /// A later band whose first band ran the Arm DSP kernels: the work area holds the tables
    /// they built, which a depthwise convolution or an addition takes as they are.
    prepared: bool,
}

/// Units `start .. start + len` of the arena.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

impl Span {
    const fn end(self) -> usize {
        self.start + self.len
    }
}

/// The piece of `pieces` (each an offset in the arena and its units) that holds all of
/// `span`.
fn within<T>(pieces: [(usize, &[T]); 3], span: Span) -> Option<&[T]> {
    if span.len == 0 {
        return Some(&[]);
    }
    pieces.into_iter().find_map(|(start, piece)| {
        let from = span.start.checked_sub(start)?;
        piece.get(from..from.checked_add(span.len)?)
    })
}

/// The slices of a whole step inside `arena`: `output` and `work` written, apart from each
/// other and from `input` and `shortcut`, which are read (and may coincide).
fn split<T>(
    arena: &mut [T],
    input: Span,
    shortcut: Span,
    output: Span,
    work: Span,
) -> Option<Slices<'_, T>> {
    // An empty work area lies beside the output, where it splits nothing.
    let work = if work.len == 0 {
        Span {
            start: output.end(),
            len: 0,
        }
    } else {
        work
    };
    let output_first = output.start <= work.start;
    let (first, second) = if output_first {
        (output, work)
    } else {
        (work, output)
    };
    let (before, rest) = arena.split_at_mut_checked(first.start)?;
    let (first_slice, rest) = rest.split_at_mut_checked(first.len)?;
    let (between, rest) = rest.split_at_mut_checked(second.start.checked_sub(first.end())?)?;
    let (second_slice, after) = rest.split_at_mut_checked(second.len)?;
    let pieces = [
        (0, &*before),
        (first.end(), &*between),
        (second.end(), &*after),
    ];
    let input = within(pieces, input)?;
    let shortcut = within(pieces, shortcut)?;
    let (output, work) = if output_first {
        (first_slice, second_slice)
    } else {
        (second_slice, first_slice)
    };
    Some(Slices {
        input: Input::Ready(input),
        output,
        work,
        shortcut,
        again: false,
        prepared: false,
    })
}

/// The part of `scratch` the model uses: from its first word boundary (the
/// DSP kernels need one for their work area), `needed` units long.
fn arena<T>(scratch: &mut [T], needed: usize) -> Result<&mut [T], Error> {
    let available = scratch.len();
    let skip = match scratch.as_ptr().align_offset(4) {
        skip if skip < 4 => skip,
        _ => 0,
    };
    scratch
        .get_mut(skip..)
        .and_then(|aligned| aligned.get_mut(..needed))
        .ok_or(Error::ScratchTooSmall {
            needed: needed + skip,
            available,
        })
}

/// `source` into `target`, of the same length (`None`, and nothing copied, otherwise):
/// `copy_from_slice` without the panic path, whose message formatting a microcontroller's
/// flash would pay for.
fn copy_values<T: Unit>(target: &mut [T], source: &[T]) -> Option<()> {
    if target.len() != source.len() {
        return None;
    }
    T::copy(target, source);
    Some(())
}

/// A value of an arena: int8 or f32.
trait Unit: Copy + PartialOrd {
    /// `target.copy_from_slice(source)`, slices of the same length.
    fn copy(target: &mut [Self], source: &[Self]);

    /// [`argmax`] of the logits.
    fn argmax(values: &[Self]) -> usize {
        argmax(values)
    }
}

impl Unit for i8 {
    #[cfg(tinycnn_arm_dsp)]
    fn copy(target: &mut [i8], source: &[i8]) {
        // Band copies move every map of an inference in place: eight words per `LDM`/`STM`.
        dsp::copy(target, source);
    }

    #[cfg(not(tinycnn_arm_dsp))]
    fn copy(target: &mut [i8], source: &[i8]) {
        target.copy_from_slice(source);
    }

    #[cfg(tinycnn_arm_dsp)]
    fn argmax(values: &[i8]) -> usize {
        dsp::argmax(values)
    }
}

impl Unit for f32 {
    fn copy(target: &mut [f32], source: &[f32]) {
        target.copy_from_slice(source);
    }
}

/// A band buffer's units to copy to the band's place in the output after the call.
struct Flush {
    from: usize,
    to: usize,
    len: usize,
}

/// Kernel call `done` of `step` (0 for a step run in one call), placed at `regions` in
/// `arena`, whose first `band_area` units are the band area: the band the call runs
/// ([`plan::Mode::Bands`]; `None` for the whole step), its slices, and the band buffer to copy
/// to the output afterwards. A staged band's input rows are copied to the band buffer here.
/// `window`: the step's [`Step::row_window`]; `first_kernels`: what ran the first band. Out
/// of line: its temporaries would stay on the stack beside every kernel.
#[inline(never)]
fn call<'a, T: Unit>(
    arena: &'a mut [T],
    step: &Step,
    regions: &plan::Regions,
    band_area: usize,
    window: Option<plan::RowWindow>,
    done: usize,
    first_kernels: Backend,
) -> Option<(Option<plan::Band>, Slices<'a, T>, Option<Flush>)> {
    let span = |start, len| Span { start, len };
    let is_add = matches!(step.operation, Operation::Add { .. });
    if regions.mode == plan::Mode::InPlace {
        let (input, output) = (regions.input, regions.output);
        let start = input.min(output);
        let end = (input + step.input.values()).max(output + step.output.values());
        let (zone, frame) = arena.split_at_mut_checked(band_area)?;
        let work = zone.get_mut(regions.work..regions.work.checked_add(regions.work_len)?)?;
        let region = frame.get_mut(start.checked_sub(band_area)?..end.checked_sub(band_area)?)?;
        let slices = Slices {
            input: Input::InPlace(InPlace {
                region,
                input_at: input - start,
                output_at: output - start,
            }),
            output: &mut [],
            work,
            shortcut: &[],
            again: false,
            prepared: false,
        };
        return Some((None, slices, None));
    }
    let plan::Mode::Bands {
        rows,
        downward,
        staged,
        buffer,
    } = regions.mode
    else {
        let slices = if regions.mode == plan::Mode::Keep {
            Slices {
                input: Input::Ready(&[]),
                output: &mut [],
                work: &mut [],
                shortcut: &[],
                again: false,
                prepared: false,
            }
        } else {
            let shortcut_len = if is_add { step.output.values() } else { 0 };
            split(
                arena,
                span(regions.input, step.input.values()),
                span(regions.shortcut, shortcut_len),
                span(regions.output, step.output.values()),
                span(regions.work, regions.work_len),
            )?
        };
        return Some((None, slices, None));
    };
    let window = window?;
    let height = step.output.height;
    let count = height.div_ceil(rows.max(1));
    let index = if downward { done } else { count - 1 - done };
    let first = index * rows;
    let band = plan::Band {
        first,
        rows: rows.min(height - first),
    };
    let row_in = step.input.width * step.input.channels;
    let row_out = step.output.width * step.output.channels;
    let (from, to) = (
        window.first(first),
        window.end(first + band.rows - 1, step.input.height),
    );
    let read = span(regions.input + from * row_in, (to - from) * row_in);
    let written = span(regions.output + first * row_out, band.rows * row_out);
    let (zone, frame) = arena.split_at_mut_checked(band_area)?;
    let (work, buffer_area) = zone.split_at_mut_checked(buffer)?;
    let in_frame = |span: Span| {
        let start = span.start.checked_sub(band_area)?;
        Some(start..start.checked_add(span.len)?)
    };
    let again = done > 0;
    let prepared = again && plan::backend_uses_dsp(first_kernels);
    if staged {
        let staging = step.staging(band);
        let copy = buffer_area.get_mut(..staging.len())?;
        let data = row_in.max(1);
        for (line, values) in frame.get(in_frame(read)?)?.chunks_exact(data).enumerate() {
            let at = (staging.top + line) * staging.row + staging.edge;
            copy_values(copy.get_mut(at..at + data)?, values)?;
        }
        let slices = Slices {
            input: Input::Staged { copy, staging },
            output: frame.get_mut(in_frame(written)?)?,
            work,
            shortcut: &[],
            again,
            prepared,
        };
        return Some((Some(band), slices, None));
    }
    let out = buffer_area.get_mut(..written.len)?;
    let frame: &[T] = frame;
    let shortcut = if is_add {
        frame.get(in_frame(span(
            regions.shortcut + first * row_out,
            written.len,
        ))?)?
    } else {
        &[]
    };
    let slices = Slices {
        input: Input::Ready(frame.get(in_frame(read)?)?),
        output: out,
        work,
        shortcut,
        again,
        prepared,
    };
    let flush = Flush {
        from: buffer,
        to: written.start,
        len: written.len,
    };
    Some((Some(band), slices, Some(flush)))
}

/// A model's records as the int8 runner takes them, step by step: the later bands of rows of
/// a step take its records again, and its first record, which most steps only have, is
/// decoded once instead of once per band.
struct StepRecords<I: Iterator> {
    records: I,
    /// Where the current step's records begin.
    step_start: I,
    /// The current step's first record and the records after it, once decoded.
    first: Option<(I::Item, I)>,
    /// Whether the current band has taken a record yet.
    taken: bool,
}

impl<I: Iterator + Clone> StepRecords<I>
where
    I::Item: Clone,
{
    fn new(records: I) -> Self {
        Self {
            step_start: records.clone(),
            records,
            first: None,
            taken: false,
        }
    }

    /// The first band of a new step begins: it takes the records after the last step's.
    fn begin_step(&mut self) {
        self.step_start = self.records.clone();
        self.first = None;
        self.taken = false;
    }

    /// A later band of the current step begins: it takes the step's records again.
    fn begin_band(&mut self) {
        self.records = self.step_start.clone();
        self.taken = false;
    }
}

impl<I: Iterator + Clone> Iterator for StepRecords<I>
where
    I::Item: Clone,
{
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        if self.taken {
            return self.records.next();
        }
        self.taken = true;
        if let Some((record, after)) = &self.first {
            self.records = after.clone();
            return Some(record.clone());
        }
        let record = self.records.next()?;
        self.first = Some((record.clone(), self.records.clone()));
        Some(record)
    }
}

/// Where the last step left its output: offset and length in the arena.
#[derive(Clone, Copy)]
struct Output {
    offset: usize,
    len: usize,
}

impl Output {
    fn of<T>(self, arena: &[T]) -> Option<&[T]> {
        arena.get(self.offset..self.offset + self.len)
    }
}

/// Runs every step of `architecture` where `placer` puts it in `arena`, whose network input
/// lies at `input`: `run` computes one step (or one band of it) from its slices and says
/// which kernels ran it; `observe` then sees the step's output. The int8 and f32 runners
/// differ only in `run` and their layouts.
fn run_steps<'s, T: Unit>(
    architecture: &Architecture,
    mut placer: plan::Placer,
    input: Output,
    arena: &'s mut [T],
    mut run: impl FnMut(&Step, Slices<'_, T>) -> Result<Backend, Error>,
    mut observe: impl FnMut(&Observation<'_, T>),
) -> Result<Prediction<'s, T>, Error> {
    let band_area = placer.band_area();
    let mut last = input;
    let mut index = 0;
    while let Some((mut step, regions)) = placer.next(architecture) {
        let (calls, window) = match regions.mode {
            plan::Mode::Bands { rows, .. } => {
                (step.output.height.div_ceil(rows.max(1)), step.row_window())
            }
            _ => (1, None),
        };
        let (mut kernels, mut first_kernels) = (Backend::Portable, Backend::Portable);
        for done in 0..calls {
            let (band, slices, flush) = call(
                arena,
                &step,
                &regions,
                band_area,
                window,
                done,
                first_kernels,
            )
            .ok_or(Error::Malformed)?;
            step.band = band;
            kernels = run(&step, slices)?;
            if done == 0 {
                first_kernels = kernels;
            }
            if let Some(Flush { from, to, len }) = flush {
                // From the band area to the frame, which starts after it.
                let (zone, frame) = arena
                    .split_at_mut_checked(band_area)
                    .ok_or(Error::Malformed)?;
                let source = zone.get(from..from + len).ok_or(Error::Malformed)?;
                let target = to.checked_sub(band_area).ok_or(Error::Malformed)?;
                let target = frame
                    .get_mut(target..target + len)
                    .ok_or(Error::Malformed)?;
                copy_values(target, source).ok_or(Error::Malformed)?;
            }
        }
        step.band = None;
        let written = Output {
            offset: regions.output,
            len: step.output.values(),
        };
        observe(&Observation {
            index,
            step: &step,
            kernels,
            output: written.of(arena).ok_or(Error::Malformed)?,
        });
        if step.swaps_ends() {
            last = written;
        }
        index += 1;
    }
    let arena: &'s [T] = arena;
    let logits = last.of(arena).ok_or(Error::Malformed)?;
    Ok(Prediction {
        class: T::argmax(logits),
        logits,
    })
}

/// The resolved geometry of a window on `input` with `channels` outputs.
fn window_geometry(window: &Window, input: Shape, channels: usize) -> Option<WindowGeometry> {
    WindowGeometry::resolve(
        input,
        usize::from(window.height),
        usize::from(window.width),
        usize::from(window.stride_height),
        usize::from(window.stride_width),
        matches!(window.padding, Padding::Same),
        channels,
    )
}

/// The geometry of a windowed step, or of its band ([`Step::band_window`]); the whole
/// step's is worked out by its first band and kept in `memo` for the others.
fn band_geometry(
    step: &Step,
    window: &Window,
    channels: usize,
    memo: &mut StepMemo,
) -> Option<WindowGeometry> {
    let whole = match memo.geometry {
        Some(whole) => whole,
        None => *memo
            .geometry
            .insert(window_geometry(window, step.input, channels)?),
    };
    Some(step.band_window(whole))
}

/// What the first band of a step works out that its later bands take as it is (a
/// microcontroller runs a depthwise convolution in as many bands as it has rows).
#[derive(Clone, Copy, Default)]
struct StepMemo {
    /// The whole step's window geometry.
    geometry: Option<WindowGeometry>,
    /// The int8 range of the step's activation.
    activation_range: Option<(i32, i32)>,
}

/// A global average pool as an average pool whose window is the whole map.
fn global_geometry(input: Shape) -> Option<WindowGeometry> {
    WindowGeometry::resolve(
        input,
        input.height,
        input.width,
        1,
        1,
        false,
        input.channels,
    )
}

/// The int8 range an activation keeps on an output quantised with `output`,
/// as TensorFlow Lite computes it.
fn activation_range(activation: Activation, output: &QuantParams) -> (i32, i32) {
    match activation {
        Activation::None => (i32::from(i8::MIN), i32::from(i8::MAX)),
        Activation::Relu => quant::relu_range(output.scale, output.zero_point, false),
        Activation::Relu6 => quant::relu_range(output.scale, output.zero_point, true),
    }
}

fn i32_at(bytes: &[u8], index: usize) -> Option<i32> {
    let (words, _) = bytes.as_chunks::<4>();
    words.get(index).map(|word| i32::from_le_bytes(*word))
}

fn shift_at(shifts: &[u8], index: usize) -> Option<i32> {
    shifts.get(index).map(|&shift| i32::from(shift as i8))
}

/// The requantisation of a layer record, with its activation's range.
fn requantization<'r>(
    record: &Int8LayerRecord<'r>,
    outputs: usize,
    input_zero_point: i8,
    activation: Activation,
) -> Option<ki8::Requantization<'r>> {
    let range = activation_range(activation, &record.output);
    requantization_in(record, outputs, input_zero_point, activation, range)
}

/// [`requantization`] with the activation's range already worked out.
fn requantization_in<'r>(
    record: &Int8LayerRecord<'r>,
    outputs: usize,
    input_zero_point: i8,
    activation: Activation,
    (min, max): (i32, i32),
) -> Option<ki8::Requantization<'r>> {
    ki8::Requantization::new(
        outputs,
        record.bias,
        record.multipliers,
        record.shifts,
        input_zero_point,
        record.output.zero_point,
        activation,
    )
    .map(|requantization| requantization.with_activation_range(min, max))
}

/// The parameters of an int8 addition of the main line (zero point `main`)
/// and the shortcut (`shortcut`).
fn add_params(
    record: &Int8LayerRecord<'_>,
    main: i8,
    shortcut: i8,
    activation: Activation,
) -> Option<AddParams> {
    let (min, max) = activation_range(activation, &record.output);
    Some(AddParams {
        input_zero_points: [i32::from(main), i32::from(shortcut)],
        input_multipliers: [
            i32_at(record.multipliers, 0)?,
            i32_at(record.multipliers, 1)?,
        ],
        input_shifts: [shift_at(record.shifts, 0)?, shift_at(record.shifts, 1)?],
        output_multiplier: i32_at(record.multipliers, 2)?,
        output_shift: shift_at(record.shifts, 2)?,
        output_zero_point: i32::from(record.output.zero_point),
        activation_min: min,
        activation_max: max,
    })
}

fn softmax_params(record: &Int8LayerRecord<'_>) -> Option<SoftmaxParams> {
    Some(SoftmaxParams {
        input_multiplier: i32_at(record.multipliers, 0)?,
        input_left_shift: shift_at(record.shifts, 0)?,
        diff_min: i32_at(record.bias, 0)?,
    })
}

fn int8_conv_layer<'r>(
    geometry: ConvGeometry,
    record: &Int8LayerRecord<'r>,
    input_zero_point: i8,
    step: &Step,
) -> Option<ki8::ConvLayer<'r>> {
    let requantization = requantization(
        record,
        geometry.filters,
        input_zero_point,
        step.layer.activation(),
    )?;
    ki8::ConvLayer::new(geometry, record.weights, requantization)
}

/// How dense layers of a model file of `version` round: version 3 follows TensorFlow Lite
/// Micro, whose dense layers round twice; versions 1 and 2 the desktop's, which rounds once.
pub(crate) fn dense_rounding(version: u16) -> Rounding {
    if version >= format::VERSION_3 {
        Rounding::Double
    } else {
        Rounding::Single
    }
}

pub(crate) fn int8_dense_layer<'r>(
    record: &Int8LayerRecord<'r>,
    input_zero_point: i8,
    step: &Step,
    rounding: Rounding,
) -> Option<ki8::DenseLayer<'r>> {
    let requantization = requantization(
        record,
        step.output.values(),
        input_zero_point,
        step.layer.activation(),
    )?;
    ki8::DenseLayer::new(step.input.values(), record.weights, requantization)
        .map(|layer| layer.with_rounding(rounding))
}

/// Who runs an int8 model's convolutions and dense layers.
enum Int8Runner<'k> {
    /// The core's own kernels.
    Builtin(Backend),
    /// The caller's.
    Caller(&'k mut dyn Int8Kernels),
}

/// What an int8 model is given: pixels, quantised with the model's input
/// quantisation, or values already quantised.
#[derive(Clone, Copy)]
enum Int8Input<'i> {
    Pixels(&'i [u8]),
    Quantized(&'i [i8]),
}

impl Int8Input<'_> {
    fn len(&self) -> usize {
        match self {
            Int8Input::Pixels(pixels) => pixels.len(),
            Int8Input::Quantized(values) => values.len(),
        }
    }
}

/// `p / 255` quantised with `input`, TensorFlow Lite's rounding (half away
/// from zero) and clamp.
pub(crate) fn quantize_pixel(pixel: u8, input: &QuantParams) -> i8 {
    let real = f32::from(pixel) / 255.0;
    let steps = round_half_away(real / input.scale);
    steps
        .saturating_add(i32::from(input.zero_point))
        .clamp(-128, 127) as i8
}

/// `libm::roundf(x)` as an integer, saturating beyond `i32`'s range: the conversion toward
/// zero is one instruction on an FPU, where `roundf` takes several dozen in software, and a
/// picture quantises 256 pixel values per inference.
fn round_half_away(x: f32) -> i32 {
    let whole = x as i32;
    // Exact below 2^31: under 2^23 `x` and its whole part are less than a factor 2 apart
    // (or the whole part is 0), above it `x` is a whole number.
    let fraction = x - whole as f32;
    if fraction >= 0.5 {
        whole.saturating_add(1)
    } else if fraction <= -0.5 {
        whole.saturating_sub(1)
    } else {
        whole
    }
}

/// `p - 128` of every pixel of `image` into `slots` (of its length), four at a time.
fn flip_top_bits(image: &[u8], slots: &mut [i8]) {
    let (slot_quads, slot_rest) = slots.as_chunks_mut::<4>();
    let (pixel_quads, pixel_rest) = image.as_chunks::<4>();
    for (slot, pixels) in slot_quads.iter_mut().zip(pixel_quads) {
        *slot = (u32::from_ne_bytes(*pixels) ^ 0x8080_8080)
            .to_ne_bytes()
            .map(|byte| byte as i8);
    }
    for (slot, &pixel) in slot_rest.iter_mut().zip(pixel_rest) {
        *slot = (pixel ^ 0x80) as i8;
    }
}

/// Quantises `image` into `slots` through a table of the 256 pixel values: each costs a
/// float division and rounding, and a colour picture has thousands of pixels. Out of line,
/// so that the table leaves the stack before the layers run.
#[inline(never)]
fn quantize_pixels(image: &[u8], quantization: &QuantParams, slots: &mut [i8]) {
    look_up_pixels(image, &pixel_table(quantization), slots);
}

/// Every pixel value's quantisation with `quantization`, as the bytes of its `i8`s.
pub(crate) fn pixel_table(quantization: &QuantParams) -> [u8; 256] {
    let mut table = [0u8; 256];
    for (entry, pixel) in table.iter_mut().zip(0..=u8::MAX) {
        *entry = quantize_pixel(pixel, quantization) as u8;
    }
    table
}

/// `image` through `table` (the bytes of `i8` values) into `slots`, four pixels at a time.
fn look_up_pixels(image: &[u8], table: &[u8; 256], slots: &mut [i8]) {
    // A `u8` index into 256 entries: the compiler drops the check.
    let quantized = |pixel: u8| table.get(usize::from(pixel)).map_or(0, |&byte| byte as i8);
    let (slot_quads, slot_rest) = slots.as_chunks_mut::<4>();
    let (pixel_quads, pixel_rest) = image.as_chunks::<4>();
    for (slot, pixels) in slot_quads.iter_mut().zip(pixel_quads) {
        *slot = pixels.map(quantized);
    }
    for (slot, &pixel) in slot_rest.iter_mut().zip(pixel_rest) {
        *slot = quantized(pixel);
    }
}

/// The zero points an int8 inference tracks: the main line's and the open residual block's
/// shortcut's.
struct ZeroPoints<'z> {
    main: &'z mut i8,
    shortcut: &'z mut i8,
}

/// One int8 step of a layer the portable kernels of [`general`] run (all but square stride-1
/// convolutions, the 2x2 max-pool and dense layers), or the caller's kernels where it gave
/// some ([`Int8Kernels`]' window convolutions, depthwise convolutions, average pools and
/// additions). Out of line: inlined into the runner, its many temporaries would widen the frame
/// every inference keeps on a microcontroller's stack.
#[inline(never)]
fn int8_general_step<'r>(
    step: &Step,
    records: &mut impl Iterator<Item = Int8LayerRecord<'r>>,
    zero_points: ZeroPoints<'_>,
    slices: Slices<'_, i8>,
    dsp: bool,
    caller: Option<&mut (dyn Int8Kernels + '_)>,
    memo: &mut StepMemo,
) -> Result<Option<Backend>, Error> {
    // The kernels that ran the step: the caller's where it had some.
    let mut used = Backend::Portable;
    let Slices {
        input,
        output,
        work,
        shortcut,
        prepared,
        ..
    } = slices;
    let (input, in_place) = input.split(*zero_points.main);
    #[cfg(not(tinycnn_arm_dsp))]
    let _ = (work, dsp, prepared);
    // Only a depthwise convolution runs in place.
    if in_place.is_some() && !matches!(step.operation, Operation::Depthwise { .. }) {
        return Err(Error::Malformed);
    }
    let ZeroPoints {
        main: zero_point,
        shortcut: shortcut_zero_point,
    } = zero_points;
    let activation = step.layer.activation();
    let mut record = || records.next().ok_or(Error::Malformed);
    let mut range = |record: &Int8LayerRecord<'_>| {
        *memo
            .activation_range
            .get_or_insert_with(|| activation_range(activation, &record.output))
    };
    let ran = match step.operation {
        Operation::WindowConv { conv } => {
            let record = record()?;
            let range = range(&record);
            let geometry = band_geometry(step, &conv.window, step.output.channels, memo)
                .ok_or(Error::Malformed)?;
            let outputs = geometry.output.channels;
            let requantization =
                requantization_in(&record, outputs, *zero_point, activation, range)
                    .ok_or(Error::Malformed)?;
            *zero_point = record.output.zero_point;
            #[cfg(tinycnn_arm_dsp)]
            if dsp {
                return Ok(dsp::window_conv_band(
                    input,
                    &geometry,
                    record.weights,
                    &requantization,
                    output,
                    work,
                    prepared,
                ));
            }
            match caller {
                Some(kernels) => {
                    used = Backend::Caller;
                    kernels.window_conv(input, &geometry, record.weights, &requantization, output)
                }
                None => general::conv(input, &geometry, record.weights, &requantization, output),
            }
        }
        Operation::Depthwise { depthwise } => {
            let record = record()?;
            let range = range(&record);
            let geometry = band_geometry(step, &depthwise.window, step.output.channels, memo)
                .ok_or(Error::Malformed)?;
            let outputs = geometry.output.channels;
            let requantization =
                requantization_in(&record, outputs, *zero_point, activation, range)
                    .ok_or(Error::Malformed)?;
            *zero_point = record.output.zero_point;
            if let Some(InPlace {
                region,
                input_at,
                output_at,
            }) = in_place
            {
                // The plan runs it in place only with the Arm DSP kernels.
                #[cfg(tinycnn_arm_dsp)]
                if dsp {
                    return Ok(dsp::depthwise_in_place(
                        region,
                        input_at,
                        output_at,
                        &geometry,
                        record.weights,
                        &requantization,
                        work,
                    ));
                }
                let _ = (region, input_at, output_at);
                return Err(Error::Malformed);
            }
            #[cfg(tinycnn_arm_dsp)]
            if dsp {
                return Ok(dsp::depthwise_band(
                    input,
                    &geometry,
                    record.weights,
                    &requantization,
                    output,
                    work,
                    prepared,
                ));
            }
            match caller {
                Some(kernels) => {
                    used = Backend::Caller;
                    kernels.depthwise(input, &geometry, record.weights, &requantization, output)
                }
                None => {
                    general::depthwise(input, &geometry, record.weights, &requantization, output)
                }
            }
        }
        Operation::WindowPool { pool } => {
            let geometry = band_geometry(step, &pool.window, step.input.channels, memo)
                .ok_or(Error::Malformed)?;
            let (min, max) = (i32::from(i8::MIN), i32::from(i8::MAX));
            match pool.kind {
                PoolKind::Max => general::max_pool(input, &geometry, min, max, output),
                #[cfg(tinycnn_arm_dsp)]
                PoolKind::Average if dsp => {
                    return Ok(dsp::average_pool(input, &geometry, min, max, output));
                }
                PoolKind::Average => match caller {
                    Some(kernels) => {
                        used = Backend::Caller;
                        kernels.average_pool(input, &geometry, min, max, output)
                    }
                    None => general::average_pool(input, &geometry, min, max, output),
                },
            }
        }
        Operation::GlobalAveragePool => {
            let geometry = global_geometry(step.input).ok_or(Error::Malformed)?;
            let (min, max) = (i32::from(i8::MIN), i32::from(i8::MAX));
            #[cfg(tinycnn_arm_dsp)]
            if dsp {
                return Ok(dsp::average_pool(input, &geometry, min, max, output));
            }
            match caller {
                Some(kernels) => {
                    used = Backend::Caller;
                    kernels.average_pool(input, &geometry, min, max, output)
                }
                None => general::average_pool(input, &geometry, min, max, output),
            }
        }
        Operation::Shortcut { shortcut } => match shortcut.projection() {
            None => {
                *shortcut_zero_point = *zero_point;
                output.copy_from_slice(input);
                Some(())
            }
            Some(conv) => {
                let record = record()?;
                let geometry = window_geometry(&conv.window, step.input, step.output.channels)
                    .ok_or(Error::Malformed)?;
                let requantization = requantization(
                    &record,
                    geometry.output.channels,
                    *zero_point,
                    Activation::None,
                )
                .ok_or(Error::Malformed)?;
                *shortcut_zero_point = record.output.zero_point;
                #[cfg(tinycnn_arm_dsp)]
                if dsp {
                    return Ok(dsp::window_conv(
                        input,
                        &geometry,
                        record.weights,
                        &requantization,
                        output,
                        work,
                    ));
                }
                match caller {
                    Some(kernels) => {
                        used = Backend::Caller;
                        kernels.window_conv(
                            input,
                            &geometry,
                            record.weights,
                            &requantization,
                            output,
                        )
                    }
                    None => {
                        general::conv(input, &geometry, record.weights, &requantization, output)
                    }
                }
            }
        },
        Operation::Add { activation } => {
            let record = record()?;
            let params = add_params(&record, *zero_point, *shortcut_zero_point, activation)
                .ok_or(Error::Malformed)?;
            *zero_point = record.output.zero_point;
            let kept = shortcut.get(..input.len()).ok_or(Error::Malformed)?;
            #[cfg(tinycnn_arm_dsp)]
            if dsp {
                return Ok(dsp::add_band(input, kept, &params, output, work, prepared));
            }
            match caller {
                Some(kernels) => {
                    used = Backend::Caller;
                    kernels.add(input, kept, &params, output)
                }
                None => general::add(input, kept, &params, output),
            }
        }
        Operation::Softmax => {
            let record = record()?;
            let params = softmax_params(&record).ok_or(Error::Malformed)?;
            *zero_point = record.output.zero_point;
            general::softmax(input, &params, output)
        }
        // The runner runs these itself.
        Operation::Conv { .. } | Operation::Pool | Operation::Dense => None,
    };
    Ok(ran.map(|()| used))
}

impl Int8Model<'_> {
    /// Bytes of scratch [`classify`](Self::classify) needs (plus up to 3 if
    /// the slice does not start on a word boundary).
    pub fn scratch_bytes(&self) -> usize {
        self.layout(Backend::FASTEST).arena()
    }

    /// Bytes of scratch with which [`classify_with_kernels`](Self::classify_with_kernels) and
    /// [`run_quantized_with_kernels`](Self::run_quantized_with_kernels) run every step in one
    /// call, in the out-of-place layout (no bands of rows), as a caller's kernels on a desktop
    /// run fastest: the larger of that layout's arena, plus 3 for a slice that does not start
    /// on a word boundary, and [`scratch_bytes`](Self::scratch_bytes). With less (at least
    /// `scratch_bytes`) they run the in-place plan.
    pub fn scratch_bytes_with_kernels(&self) -> usize {
        let whole = plan::Layout::out_of_place(self.architecture(), false).arena() + 3;
        whole.max(self.scratch_bytes())
    }

    /// The input shape: images are `height x width x channels` bytes, 0-255,
    /// channels-last.
    pub fn input_shape(&self) -> Shape {
        self.architecture().input()
    }

    /// Classifies an image of 0-255 values (channels-last; 0 = background for
    /// MNIST), with the fastest kernels of this target ([`Backend::FASTEST`]).
    /// Each pixel `p` is the real value `p / 255`, quantised with the model's
    /// input quantisation (`p - 128` exactly for [`QuantParams::INPUT`]).
    pub fn classify<'s>(
        &self,
        image: &[u8],
        scratch: &'s mut [i8],
    ) -> Result<Prediction<'s, i8>, Error> {
        self.classify_with(Backend::FASTEST, image, scratch, |_| {})
    }

    /// [`Int8Model::classify`], showing each step's output to `observe` as
    /// the step finishes: to time layers on a device, or to inspect
    /// activations.
    pub fn classify_observed<'s>(
        &self,
        image: &[u8],
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        self.classify_with(Backend::FASTEST, image, scratch, observe)
    }

    /// [`Int8Model::classify_observed`] with the given kernels. Every backend
    /// computes the same bits; [`Backend::Portable`] is the reference.
    pub fn classify_with<'s>(
        &self,
        backend: Backend,
        image: &[u8],
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        self.run::<true>(
            false,
            Int8Runner::Builtin(backend),
            Int8Input::Pixels(image),
            scratch,
            observe,
        )
    }

    /// [`Int8Model::classify_with`] for a model of the tutorial's layers only (square
    /// stride-1 convolutions, 2x2 max-pools, dense layers: [`plan::uses_general_kernels`] is
    /// false): the kernels of [`crate::kernels::general`] are then left out of the program,
    /// which saves firmware that embeds such a model about 16 KB of flash. Any other layer is
    /// [`Error::NotLinked`].
    pub fn classify_with_tutorial_layers<'s>(
        &self,
        backend: Backend,
        image: &[u8],
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        self.run::<false>(
            false,
            Int8Runner::Builtin(backend),
            Int8Input::Pixels(image),
            scratch,
            observe,
        )
    }

    /// Runs the model on an input already quantised with its
    /// [`input_quantization`](Self::input_quantization) (features such as
    /// MFCCs, or any tensor), with the given kernels. For a network whose
    /// output is values rather than classes, [`Prediction::class`] is merely
    /// the index of the largest value.
    pub fn run_quantized<'s>(
        &self,
        backend: Backend,
        input: &[i8],
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        self.run::<true>(
            false,
            Int8Runner::Builtin(backend),
            Int8Input::Quantized(input),
            scratch,
            observe,
        )
    }

    /// [`Int8Model::classify_observed`] with convolutions and dense layers run by `kernels`
    /// (the host's SIMD builds of [`crate::kernels::wide`]), and the layers beyond the
    /// tutorial's by their [`Int8Kernels`] methods; max pools, softmax, argmax and the scratch
    /// layout stay the core's. [`scratch_bytes`](Self::scratch_bytes) is enough;
    /// [`scratch_bytes_with_kernels`](Self::scratch_bytes_with_kernels) runs every step in one
    /// call.
    pub fn classify_with_kernels<'s>(
        &self,
        kernels: &mut dyn Int8Kernels,
        image: &[u8],
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        self.run::<true>(
            false,
            Int8Runner::Caller(kernels),
            Int8Input::Pixels(image),
            scratch,
            observe,
        )
    }

    /// [`Int8Model::run_quantized`] with convolutions and dense layers run by `kernels`.
    pub fn run_quantized_with_kernels<'s>(
        &self,
        kernels: &mut dyn Int8Kernels,
        input: &[i8],
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        self.run::<true>(
            false,
            Int8Runner::Caller(kernels),
            Int8Input::Quantized(input),
            scratch,
            observe,
        )
    }

    /// [`Int8Model::classify_with`] in the out-of-place layout
    /// ([`plan::out_of_place_regions`]): every step's input, output and work area apart, a
    /// shortcut area for residual blocks, no bands. The same outputs in more scratch
    /// ([`plan::out_of_place_scratch_bytes`]): the reference the banded layout is checked
    /// against.
    pub fn classify_out_of_place<'s>(
        &self,
        backend: Backend,
        image: &[u8],
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        self.run::<true>(
            true,
            Int8Runner::Builtin(backend),
            Int8Input::Pixels(image),
            scratch,
            observe,
        )
    }

    /// [`Int8Model::classify_out_of_place`] on an input already quantised
    /// ([`Int8Model::run_quantized`]).
    pub fn run_quantized_out_of_place<'s>(
        &self,
        backend: Backend,
        input: &[i8],
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        self.run::<true>(
            true,
            Int8Runner::Builtin(backend),
            Int8Input::Quantized(input),
            scratch,
            observe,
        )
    }

    /// Runs the model; with `GENERAL` false, the kernels of [`general`] are not called, so
    /// not linked in, and a layer that needs them is an error. The arena is laid out by
    /// [`plan::layout`], or [`plan::Layout::out_of_place`] when `out_of_place`.
    fn run<'s, const GENERAL: bool>(
        &self,
        out_of_place: bool,
        mut runner: Int8Runner<'_>,
        input: Int8Input<'_>,
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        let architecture = self.architecture();
        let expected = architecture.input().values();
        if input.len() != expected {
            return Err(Error::InputLength {
                expected,
                found: input.len(),
            });
        }
        let backend = match runner {
            Int8Runner::Builtin(backend) => backend,
            Int8Runner::Caller(_) => Backend::Caller,
        };
        let whole = || plan::Layout::out_of_place(architecture, plan::backend_uses_dsp(backend));
        let layout = match runner {
            _ if out_of_place => whole(),
            // A caller's kernels take whole steps where the scratch allows: on a desktop a
            // call per band of rows costs more than the memory saved.
            Int8Runner::Caller(_) if scratch.len() >= whole().arena() + 3 => whole(),
            _ => self.layout(backend),
        };
        let placer = plan::Placer::new(architecture, layout);
        let start = placer.input_offset();
        let arena = arena(scratch, layout.arena())?;
        let quantization = self.input_quantization();
        let first = arena.get_mut(start..).ok_or(Error::Malformed)?.iter_mut();
        match input {
            // Scale 1/255 and zero point -128 make quantisation exact: p -> p - 128.
            Int8Input::Pixels(image) if self.pixels_flip_top_bit() => {
                let slots = arena.get_mut(start..start + image.len());
                flip_top_bits(image, slots.ok_or(Error::Malformed)?);
            }
            Int8Input::Pixels(image) => {
                let slots = arena.get_mut(start..start + image.len());
                let slots = slots.ok_or(Error::Malformed)?;
                match self.pixel_table() {
                    Some(table) => look_up_pixels(image, table, slots),
                    None => quantize_pixels(image, &quantization, slots),
                }
            }
            Int8Input::Quantized(values) => {
                for (slot, &value) in first.zip(values) {
                    *slot = value;
                }
            }
        }
        let dense_rounding = dense_rounding(self.header().version);
        let mut records = StepRecords::new(self.layers());
        let mut zero_point = quantization.zero_point;
        let mut shortcut_zero_point = zero_point;
        let mut first_band = (zero_point, shortcut_zero_point);
        let mut memo = StepMemo::default();
        // The widened dense table's layers, taken in step order ([`crate::widened`]).
        let mut widened_rest = self
            .widened_dense()
            .get(crate::widened::HEADER_BYTES..)
            .unwrap_or(&[]);
        let mut widened_layer: &[u8] = &[];
        let run = |step: &Step, slices: Slices<'_, i8>| {
            let Slices {
                input,
                output,
                work: _work,
                shortcut,
                again,
                prepared,
            } = slices;
            // Every band of a step starts from the record and zero points of its first.
            if again {
                records.begin_band();
                (zero_point, shortcut_zero_point) = first_band;
            } else {
                records.begin_step();
                first_band = (zero_point, shortcut_zero_point);
                memo = StepMemo::default();
            }
            let (input, in_place) = input.split(zero_point);
            #[cfg_attr(not(tinycnn_arm_dsp), allow(unused_mut))]
            let mut kernels = backend;
            let activation = step.layer.activation();
            let ran = match step.operation {
                Operation::Conv { .. } => {
                    let record = records.next().ok_or(Error::Malformed)?;
                    let geometry = step.geometry().ok_or(Error::Malformed)?;
                    let layer = int8_conv_layer(geometry, &record, zero_point, step)
                        .ok_or(Error::Malformed)?;
                    zero_point = record.output.zero_point;
                    match &mut runner {
                        // ReLU6 lowers the maximum, which the fast kernels do not clamp to.
                        _ if activation == Activation::Relu6 => {
                            kernels = Backend::Portable;
                            ki8::conv(input, &layer, output)
                        }
                        Int8Runner::Caller(caller) => caller.conv(input, &layer, output),
                        #[cfg(tinycnn_arm_dsp)]
                        Int8Runner::Builtin(Backend::ArmDsp) => {
                            dsp::conv_band(input, &layer, output, _work, prepared)
                                .map(|used| kernels = used)
                        }
                        Int8Runner::Builtin(_) => ki8::conv(input, &layer, output),
                    }
                }
                Operation::Pool => max_pool2(input, step.band_input(), output),
                Operation::Dense => {
                    let record = records.next().ok_or(Error::Malformed)?;
                    let decided = step.layer.record.map_or(0, |index| self.dense_path(index));
                    let layer = int8_dense_layer(&record, zero_point, step, dense_rounding)
                        .ok_or(Error::Malformed)?
                        .with_decided_path(decided);
                    zero_point = record.output.zero_point;
                    if !again {
                        let bytes =
                            crate::widened::dense_bytes(step.input.values(), step.output.values());
                        (widened_layer, widened_rest) =
                            widened_rest.split_at_checked(bytes).unwrap_or((&[], &[]));
                    }
                    match &mut runner {
                        _ if activation == Activation::Relu6 => {
                            kernels = Backend::Portable;
                            ki8::dense(input, &layer, output)
                        }
                        Int8Runner::Caller(caller) => caller.dense(input, &layer, output),
                        #[cfg(all(tinycnn_arm_dsp, feature = "widened-dense"))]
                        Int8Runner::Builtin(Backend::ArmDsp) if !widened_layer.is_empty() => {
                            dsp::dense_widened(input, &layer, widened_layer, output, _work)
                                .map(|used| kernels = used)
                        }
                        #[cfg(tinycnn_arm_dsp)]
                        Int8Runner::Builtin(Backend::ArmDsp) => {
                            dsp::dense(input, &layer, output, _work).map(|used| kernels = used)
                        }
                        Int8Runner::Builtin(_) => ki8::dense(input, &layer, output),
                    }
                }
                _ if !GENERAL => return Err(Error::NotLinked),
                _ => {
                    let zero_points = ZeroPoints {
                        main: &mut zero_point,
                        shortcut: &mut shortcut_zero_point,
                    };
                    let slices = Slices {
                        input: match in_place {
                            Some(place) => Input::InPlace(place),
                            None => Input::Ready(input),
                        },
                        output,
                        work: _work,
                        shortcut,
                        again,
                        prepared,
                    };
                    #[cfg(tinycnn_arm_dsp)]
                    let dsp = matches!(runner, Int8Runner::Builtin(Backend::ArmDsp));
                    #[cfg(not(tinycnn_arm_dsp))]
                    let dsp = false;
                    let caller = match &mut runner {
                        Int8Runner::Caller(kernels) => Some(&mut **kernels),
                        Int8Runner::Builtin(_) => None,
                    };
                    int8_general_step(
                        step,
                        &mut records,
                        zero_points,
                        slices,
                        dsp,
                        caller,
                        &mut memo,
                    )?
                    .map(|used| kernels = used)
                }
            };
            ran.map(|()| kernels).ok_or(Error::Malformed)
        };
        let input = Output {
            offset: start,
            len: expected,
        };
        run_steps(architecture, placer, input, arena, run, observe)
    }

    /// Softmax probabilities of int8 outputs (dequantised first), into
    /// `probabilities` (one per class). A model that ends in softmax gives
    /// them dequantised as they are.
    pub fn probabilities(&self, logits: &[i8], probabilities: &mut [f32]) {
        let quantization = self.logits_quantization();
        let used = probabilities.len().min(logits.len());
        let probabilities = probabilities.get_mut(..used).unwrap_or(&mut []);
        for (p, &q) in probabilities.iter_mut().zip(logits) {
            *p = quantization.dequantize(q);
        }
        if !self.architecture().ends_in_softmax() {
            kf32::softmax(probabilities);
        }
    }
}

fn f32_conv_layer<'r>(
    geometry: ConvGeometry,
    record: &F32LayerRecord<'r>,
    step: &Step,
) -> Option<kf32::ConvLayer<'r>> {
    kf32::ConvLayer::new(
        geometry,
        record.weights,
        record.bias,
        step.layer.activation(),
    )
}

/// What an f32 model is given: pixels, read as `p / 255`, or values.
#[derive(Clone, Copy)]
enum F32Input<'i> {
    Pixels(&'i [u8]),
    Values(&'i [f32]),
}

impl F32Input<'_> {
    fn len(&self) -> usize {
        match self {
            F32Input::Pixels(pixels) => pixels.len(),
            F32Input::Values(values) => values.len(),
        }
    }
}

impl F32Model<'_> {
    /// `f32` values of scratch [`classify`](Self::classify) needs.
    pub fn scratch_len(&self) -> usize {
        plan::f32_scratch_len(self.architecture())
    }

    /// The input shape: images are `height x width x channels` bytes, 0-255,
    /// channels-last.
    pub fn input_shape(&self) -> Shape {
        self.architecture().input()
    }

    /// Classifies an image of 0-255 values, each scaled to `p / 255`.
    pub fn classify<'s>(
        &self,
        image: &[u8],
        scratch: &'s mut [f32],
    ) -> Result<Prediction<'s, f32>, Error> {
        self.classify_observed(image, scratch, |_| {})
    }

    /// [`F32Model::classify`], showing each step's output (after its
    /// activation and fused pool) to `observe`: the host calibrates int8
    /// activation ranges with it.
    pub fn classify_observed<'s>(
        &self,
        image: &[u8],
        scratch: &'s mut [f32],
        observe: impl FnMut(&Observation<'_, f32>),
    ) -> Result<Prediction<'s, f32>, Error> {
        self.run(None, F32Input::Pixels(image), scratch, observe)
    }

    /// Runs the model on input values as they are (features, any tensor).
    pub fn run_values<'s>(
        &self,
        input: &[f32],
        scratch: &'s mut [f32],
        observe: impl FnMut(&Observation<'_, f32>),
    ) -> Result<Prediction<'s, f32>, Error> {
        self.run(None, F32Input::Values(input), scratch, observe)
    }

    /// [`F32Model::run_values`] with convolutions and dense layers run by `kernels`, as
    /// [`F32Model::classify_with_kernels`] runs them.
    pub fn run_values_with_kernels<'s>(
        &self,
        kernels: &mut dyn F32Kernels,
        input: &[f32],
        scratch: &'s mut [f32],
        observe: impl FnMut(&Observation<'_, f32>),
    ) -> Result<Prediction<'s, f32>, Error> {
        self.run(Some(kernels), F32Input::Values(input), scratch, observe)
    }

    /// [`F32Model::classify_observed`] with convolutions and dense layers run by `kernels`
    /// (the host's SIMD builds of [`crate::kernels::wide`]): the same outputs up to rounding.
    pub fn classify_with_kernels<'s>(
        &self,
        kernels: &mut dyn F32Kernels,
        image: &[u8],
        scratch: &'s mut [f32],
        observe: impl FnMut(&Observation<'_, f32>),
    ) -> Result<Prediction<'s, f32>, Error> {
        self.run(Some(kernels), F32Input::Pixels(image), scratch, observe)
    }

    fn run<'s>(
        &self,
        mut caller: Option<&mut dyn F32Kernels>,
        input: F32Input<'_>,
        scratch: &'s mut [f32],
        observe: impl FnMut(&Observation<'_, f32>),
    ) -> Result<Prediction<'s, f32>, Error> {
        let backend = if caller.is_some() {
            Backend::Caller
        } else {
            Backend::Portable
        };
        let architecture = self.architecture();
        let expected = architecture.input().values();
        if input.len() != expected {
            return Err(Error::InputLength {
                expected,
                found: input.len(),
            });
        }
        // The out-of-place layout: f32 runs on the host, whose memory is plenty.
        let placer = plan::Placer::new(
            architecture,
            plan::Layout::out_of_place(architecture, false),
        );
        let arena = arena(scratch, plan::f32_scratch_len(architecture))?;
        let start = placer.input_offset();
        let first = arena.get_mut(start..).ok_or(Error::Malformed)?.iter_mut();
        match input {
            F32Input::Pixels(image) => {
                for (slot, &pixel) in first.zip(image) {
                    *slot = f32::from(pixel) / 255.0;
                }
            }
            F32Input::Values(values) => {
                for (slot, &value) in first.zip(values) {
                    *slot = value;
                }
            }
        }
        let mut records = self.layers();
        let run = |step: &Step, slices: Slices<'_, f32>| {
            let Slices {
                input,
                output,
                shortcut,
                ..
            } = slices;
            let input = input.ready(0.0);
            let mut kernels = backend;
            let (min, max) = step.layer.activation().real_range();
            let ran = match step.operation {
                Operation::Conv { conv, pooled } => {
                    let record = records.next().ok_or(Error::Malformed)?;
                    let geometry = ConvGeometry::new(&conv, step.input, pooled);
                    let layer = f32_conv_layer(geometry, &record, step).ok_or(Error::Malformed)?;
                    match &mut caller {
                        Some(caller) if step.layer.activation() != Activation::Relu6 => {
                            caller.conv(input, &layer, output)
                        }
                        _ => {
                            kernels = Backend::Portable;
                            kf32::conv(input, &layer, output)
                        }
                    }
                }
                Operation::WindowConv { .. } => {
                    kernels = Backend::Portable;
                    let record = records.next().ok_or(Error::Malformed)?;
                    let Layer::Conv(conv) = step.layer.layer else {
                        return Err(Error::Malformed);
                    };
                    let geometry = window_geometry(&conv.window, step.input, step.output.channels)
                        .ok_or(Error::Malformed)?;
                    general::conv_f32(
                        input,
                        &geometry,
                        record.weights,
                        record.bias,
                        min,
                        max,
                        output,
                    )
                }
                Operation::Depthwise { depthwise } => {
                    kernels = Backend::Portable;
                    let record = records.next().ok_or(Error::Malformed)?;
                    let geometry =
                        window_geometry(&depthwise.window, step.input, step.output.channels)
                            .ok_or(Error::Malformed)?;
                    general::depthwise_f32(
                        input,
                        &geometry,
                        record.weights,
                        record.bias,
                        min,
                        max,
                        output,
                    )
                }
                Operation::Pool => max_pool2(input, step.input, output),
                Operation::WindowPool { pool } => {
                    kernels = Backend::Portable;
                    let geometry = window_geometry(&pool.window, step.input, step.input.channels)
                        .ok_or(Error::Malformed)?;
                    let (min, max) = (f32::NEG_INFINITY, f32::INFINITY);
                    match pool.kind {
                        PoolKind::Max => general::max_pool_f32(input, &geometry, min, max, output),
                        PoolKind::Average => {
                            general::average_pool_f32(input, &geometry, min, max, output)
                        }
                    }
                }
                Operation::GlobalAveragePool => {
                    kernels = Backend::Portable;
                    let geometry = global_geometry(step.input).ok_or(Error::Malformed)?;
                    let (min, max) = (f32::NEG_INFINITY, f32::INFINITY);
                    general::average_pool_f32(input, &geometry, min, max, output)
                }
                Operation::Dense => {
                    let record = records.next().ok_or(Error::Malformed)?;
                    let layer = kf32::DenseLayer::new(
                        step.input.values(),
                        record.weights,
                        record.bias,
                        step.layer.activation(),
                    )
                    .ok_or(Error::Malformed)?;
                    match &mut caller {
                        Some(caller) if step.layer.activation() != Activation::Relu6 => {
                            caller.dense(input, &layer, output)
                        }
                        _ => {
                            kernels = Backend::Portable;
                            kf32::dense(input, &layer, output)
                        }
                    }
                }
                Operation::Shortcut { shortcut } => {
                    kernels = Backend::Portable;
                    match shortcut.projection() {
                        None => {
                            output.copy_from_slice(input);
                            Some(())
                        }
                        Some(conv) => {
                            let record = records.next().ok_or(Error::Malformed)?;
                            let geometry =
                                window_geometry(&conv.window, step.input, step.output.channels)
                                    .ok_or(Error::Malformed)?;
                            let (min, max) = Activation::None.real_range();
                            general::conv_f32(
                                input,
                                &geometry,
                                record.weights,
                                record.bias,
                                min,
                                max,
                                output,
                            )
                        }
                    }
                }
                Operation::Add { .. } => {
                    kernels = Backend::Portable;
                    records.next().ok_or(Error::Malformed)?;
                    let kept = shortcut.get(..input.len()).ok_or(Error::Malformed)?;
                    general::add_f32(input, kept, min, max, output)
                }
                Operation::Softmax => {
                    kernels = Backend::Portable;
                    records.next().ok_or(Error::Malformed)?;
                    output.copy_from_slice(input);
                    kf32::softmax(output);
                    Some(())
                }
            };
            ran.map(|()| kernels).ok_or(Error::Malformed)
        };
        let input = Output {
            offset: start,
            len: expected,
        };
        run_steps(architecture, placer, input, arena, run, observe)
    }

    /// Softmax probabilities of f32 outputs, into `probabilities` (as they
    /// are when the model ends in softmax).
    pub fn probabilities(&self, logits: &[f32], probabilities: &mut [f32]) {
        let used = probabilities.len().min(logits.len());
        let probabilities = probabilities.get_mut(..used).unwrap_or(&mut []);
        probabilities.copy_from_slice(logits.get(..used).unwrap_or(&[]));
        if !self.architecture().ends_in_softmax() {
            kf32::softmax(probabilities);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixels whose quantisation flips their top bit go four at a time, with the table's
    /// bytes; TensorFlow's 1/255 and -128 is such a quantisation, a scale a little off is
    /// not.
    #[test]
    fn flipping_top_bits_is_the_tables_quantisation() {
        let image: [u8; 259] = core::array::from_fn(|i| (i * 37 % 256) as u8);
        let tensorflow = QuantParams {
            scale: 1.0 / 255.0,
            zero_point: -128,
        };
        for quantization in [QuantParams::INPUT, tensorflow] {
            assert!((0..=u8::MAX).all(|p| quantize_pixel(p, &quantization) == (p ^ 0x80) as i8));
            let (mut table, mut flipped) = ([0i8; 259], [0i8; 259]);
            quantize_pixels(&image, &quantization, &mut table);
            flip_top_bits(&image, &mut flipped);
            assert_eq!(table, flipped);
        }
        let off = QuantParams {
            scale: 1.0 / 250.0,
            zero_point: -128,
        };
        assert!((0..=u8::MAX).any(|p| quantize_pixel(p, &off) != (p ^ 0x80) as i8));
    }

    #[test]
    fn a_pixel_table_kept_elsewhere_is_the_models_own() {
        // Scale 2/255 and zero point -1: pixels need the table.
        let autoencoder =
            Int8Model::from_bytes(include_bytes!("../../data/mlperf/autoencoder.tcnn")).unwrap();
        let table = autoencoder.pixel_quantization().unwrap();
        assert_eq!(table, pixel_table(&autoencoder.input_quantization()));
        let mut other = table;
        other[7] ^= 1;
        assert_eq!(
            autoencoder.with_pixel_table(&other).unwrap_err(),
            Error::PixelTableForAnotherModel
        );
        let kept = autoencoder.with_pixel_table(&table).unwrap();
        let image: std::vec::Vec<u8> = (0..640).map(|i| (i * 7 % 256) as u8).collect();
        let mut scratch = std::vec![0i8; autoencoder.scratch_bytes()];
        let plain = autoencoder
            .classify(&image, &mut scratch)
            .unwrap()
            .logits
            .to_vec();
        let through_table = kept.classify(&image, &mut scratch).unwrap().logits.to_vec();
        assert_eq!(plain, through_table);
        // Pixels whose quantisation flips their top bit need none.
        let small =
            Int8Model::from_bytes(include_bytes!("../../data/small/model-int8.tcnn")).unwrap();
        assert_eq!(small.pixel_quantization(), None);
        assert_eq!(
            small.with_pixel_table(&table).unwrap_err(),
            Error::PixelTableForAnotherModel
        );
    }

    /// The quantisation TensorFlow Lite defines, with libm's `roundf` and f32 sums.
    fn quantize_pixel_with_roundf(pixel: u8, input: &QuantParams) -> i8 {
        let real = f32::from(pixel) / 255.0;
        let steps = libm::roundf(real / input.scale) + f32::from(input.zero_point);
        steps.clamp(-128.0, 127.0) as i8
    }

    #[test]
    fn rounding_half_away_from_zero_is_roundf() {
        let halves = (-2_000..=2_000).map(|k| k as f32 / 4.0);
        let near_halves = (-1_000..=1_000).flat_map(|k| {
            let half = k as f32 + 0.5;
            [half.next_down(), half, half.next_up()]
        });
        let large = [
            8_388_607.5f32,
            8_388_608.0,
            16_777_217.0,
            2.0e9,
            -2.0e9,
            3.0e9,
            -3.0e9,
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let random = core::iter::repeat_with(move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            f32::from_bits(state as u32)
        })
        .filter(|x| x.is_finite() && x.abs() < 2.0e9)
        .take(100_000);
        for x in halves.chain(near_halves).chain(large).chain(random) {
            let expected = libm::roundf(x);
            let found = round_half_away(x);
            if expected.abs() < 2.0e9 {
                assert_eq!(found as f32, expected, "{x}");
            } else {
                assert_eq!(found.signum() as f32, expected.signum(), "{x}");
            }
        }
        assert_eq!(round_half_away(f32::INFINITY), i32::MAX);
        assert_eq!(round_half_away(f32::NEG_INFINITY), i32::MIN);
    }

    #[test]
    fn every_pixel_quantises_as_with_roundf() {
        let scales = [
            1.0 / 255.0,
            2.0 / 255.0,
            1.0 / 250.0,
            0.003_921_569,
            0.007_843_138,
            0.012_345,
            0.1,
            0.5,
            1.0e-4,
            3.0e-7,
        ];
        for scale in scales {
            for zero_point in [-128, -127, -1, 0, 1, 5, 127] {
                let input = QuantParams { scale, zero_point };
                for pixel in 0..=u8::MAX {
                    assert_eq!(
                        quantize_pixel(pixel, &input),
                        quantize_pixel_with_roundf(pixel, &input),
                        "pixel {pixel}, scale {scale}, zero point {zero_point}"
                    );
                }
            }
        }
    }
}
