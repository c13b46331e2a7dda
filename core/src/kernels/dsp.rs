//! int8 kernels for Arm cores with the DSP extension (Cortex-M4, M7, M33),
//! bit-identical to the portable kernels of [`super::int8`] and
//! [`super::general`].
//!
//! This is the only module of the crate with `unsafe` code: a few routines in
//! inline assembly (`naked_asm!`, `asm!`), because the DSP intrinsics are not
//! stable. Each kernel is a safe function with the portable kernel's
//! arguments plus a `work` area; it checks the shapes and the work area, runs
//! the assembly on slices it has sized itself, and returns the [`Backend`]
//! that ran (the portable one for shapes it does not handle, so it is never
//! wrong). The firmware's `kernels` binary checks every kernel against the
//! portable one on random shapes and values, and whole networks, in QEMU.
//!
//! # Convolution (input channels a multiple of 4)
//!
//! Four convolution positions run at once: the 2x2 window of a pooled output
//! pixel (their maximum is kept), or four consecutive output pixels of a
//! convolution without a pool. Their windows are unrolled ("im2col") into
//! `work` as int16 with the input offset already added (`SXTAB16` adds
//! `-zero_point` to two bytes at once; taps in the zero padding become 0).
//! The layout interleaves the positions so that one `LDM` of four registers
//! fetches two positions' worth of four values: group `g` (inputs
//! `4g..4g+4` of the `K x K x C` window, in the filters' `[ky][kx][in]`
//! order) is eight words `p0(x0,x2) p0(x1,x3) p1(..) p1(..) p2.. p3..`, the
//! pair order that `SXTB16` and `SXTB16 ROR #8` produce from four int8
//! weights. The inner loop (`conv_tile`) then costs, per output channel and
//! four inputs (16 MACs): `LDR` 4 weights, 2 `SXTB16`, 2 `LDM`, 8 `SMLAD`
//! into four accumulators (one per position) = 13 instructions, unrolled 16
//! times. That uses all 14 registers a routine has: the next step (8
//! positions, or 8-register `LDM`s) would need 16 or more. For a pooled
//! pixel the maximum of the four accumulators is requantised (see below),
//! which gives the pooled value: requantisation is monotonic, the portable
//! kernel relies on the same fact.
//!
//! # Convolution with one input channel and a 3x3 kernel
//!
//! The 9 taps are widened once per call to 5 int16 pairs per filter (the last
//! padded with 0), the input once to int16 with its offset and a frame of
//! zeros (the 'same' padding, none for 'valid'), and each group of four
//! positions' windows to 5 pairs per position, pair-major. Per channel
//! (`conv_single_tile`): 5 x (`LDR` weights, `LDM` four positions, 4 `SMLAD`).
//!
//! # Convolutions of any window and stride
//!
//! [`window_conv`] (strided, rectangular and 1x1 convolutions, projection
//! shortcuts, and square ones on 2 or 3 channels without a pool) unrolls
//! four consecutive output pixels into the same groups and runs the same
//! tile. With a multiple of 4 input channels each kernel row's taps inside
//! the input are widened in one run. With other channel counts (a first
//! layer on 1 or 3 channels) the input rows an output row reads are first
//! copied into a band (bytes, the padding as the input zero point, so it
//! adds nothing), and each kernel row of a window is widened from there as
//! whole groups: a 3x3 window on 3 channels takes 3 x 3 groups (its 9 bytes
//! per row and 3 that meet zero weights, in a padded copy of the filters).
//!
//! Where the requantisation allows (below), the tile requantises in
//! assembly and writes the four pixels' outputs itself (`conv_tile_fused`):
//! per channel, its bias, multiplier and shift are loaded once for the four
//! accumulators. A partial last tile moves back to end at the last pixel.
//!
//! # Depthwise convolution (3x3, one output per input channel)
//!
//! [`depthwise`] widens the weights once into a table: per group of four
//! channels, the starting sums, each tap's weights as two int16 pairs, and
//! each channel's multiplier and shift. The input is read as it is; a tap
//! outside the map reads a row of the input zero point, and the starting
//! sums hold `-zero_point * sum(w)`, so every window has nine taps. Per tap
//! and four channels: `LDR` the tap's address, `LDR` four values, two
//! `SXTB16`, `LDRD` the weights, four `SMLAxy` (one product per channel, as
//! the channels do not add up).
//!
//! # Addition and average pool
//!
//! An addition's inputs are scaled separately before their sum, so each
//! input's 256 possible scaled values are tabulated once per call; per
//! element two table loads, one add and the output's requantisation
//! ([`add`]). An average pool sums four channels at a time in the halves of
//! two words (`SXTAB16`), for windows of up to 256 taps ([`average_pool`]).
//!
//! # Dense
//!
//! The input vector is widened once (with its offset) to int16 pairs in the
//! same `(x0,x2),(x1,x3)` order; four rows run at once (`dense_quad`),
//! sharing each `LDRD` of the input: 21 instructions per 16 MACs. Without
//! room for the widened vector (the plan leaves a dense layer none where its
//! `2 x inputs` bytes would set the arena's size), each four inputs are
//! widened as they are read, once per four rows (`dense_quad_narrow`): 23
//! instructions per 16 MACs. Inputs not a multiple of 4 run the portable
//! kernel.
//!
//! # Requantisation
//!
//! Where a layer's constants allow it (right shifts only; no accumulator
//! near `2^30`), requantisation runs in assembly (`Requantizer` decides
//! once per layer): for outputs clamped at their zero point (a ReLU or ReLU6)
//! a shortcut, `SMMLAR` then a shift, exact because the results it rounds
//! differently are clamped anyway; for outputs without an activation the
//! exact rounding (`SMMULR`, then the rounding division with its correction
//! for negative values). About 13 instructions per output in a separate
//! routine, 6 to 8 inside a fused tile, instead of the portable
//! [`Requantization::apply`]'s 50 or so, which runs otherwise. Dense layers
//! of format versions 1 and 2 round once, as the desktop's `FULLY_CONNECTED`
//! does, and take `apply`.
//!
//! The assembly reads weights (and dense rows) with unaligned `LDR`s, as
//! blobs do not align tensors: the core must not trap unaligned accesses
//! (`CCR.UNALIGN_TRP` clear, the reset state of every Cortex-M).
//!
//! Accumulators cannot overflow: `|x - zero_point| <= 255`, `|w| <= 127`
//! and a fan-in of at most [`crate::arch::MAX_FAN_IN`] keep every sum inside
//! `i32` (see there), and `SMLAD` wraps exactly like the portable kernels'
//! `i32` sums.

#![allow(unsafe_code)]

use core::arch::{asm, naked_asm};

/// First line of every naked function's assembly. Naked functions are
/// assembled as module-level assembly, for the target's base architecture
/// and not for `-C target-cpu`: on Armv8-M Mainline, whose DSP extension is
/// optional, the assembler needs the core named again (any core of the
/// profile with the extension; the instructions are the same).
#[cfg(tinycnn_arm_v8m)]
macro_rules! naked_prelude {
    () => {
        ".cpu cortex-m33"
    };
}
#[cfg(not(tinycnn_arm_v8m))]
macro_rules! naked_prelude {
    () => {
        ""
    };
}
// The audio front end's assembly (`crate::audio::dsp`) starts the same way.
pub(crate) use naked_prelude;

#[cfg(feature = "widened-dense")]
mod widened;
#[cfg(feature = "widened-dense")]
pub use widened::dense_widened;

use super::ConvGeometry;
use super::general::{self, AddParams, Span, WindowGeometry};
use super::int8::{Backend, ConvLayer, DenseLayer, Requantization};

/// Output channels whose accumulators one assembly call of a pooled tile
/// leaves on the stack before they are requantised: 256 bytes, and a
/// 64-filter layer (the tutorial's first) needs one call per tile, which
/// saves a call and a requantisation set-up per tile against 32.
const CHUNK: usize = 64;
/// The same for a tile of four output pixels, which leaves four accumulators
/// per channel in rows `CHUNK_EACH` words apart: the tile routines' store
/// offsets (32, 64 and 96 bytes) are written for 8.
const CHUNK_EACH: usize = 8;
/// Convolution positions computed at once.
const POSITIONS: usize = 4;

use crate::plan::{
    DEPTHWISE_QUAD_WORDS, DspConv, DspWindowConvWork, SINGLE_PAIRS, dsp_conv as conv_path,
};
pub use crate::plan::{
    dsp_conv_work_bytes as conv_work_bytes, dsp_dense_work_bytes as dense_work_bytes,
    dsp_depthwise_work_bytes as depthwise_work_bytes,
    dsp_window_conv_work_bytes as window_conv_work_bytes,
};

/// [`super::int8::conv`] with the DSP extension: same arguments, plus `work`
/// of at least [`conv_work_bytes`] bytes from a 4-byte boundary (its contents
/// are overwritten). Returns [`Backend::ArmDsp`], or [`Backend::Portable`]
/// when the shape or `work` does not suit the DSP kernels and the portable
/// kernel ran instead; `None` (nothing written) if the slices do not fit the
/// layer.
// Not inlined into the runner, as the portable kernels (see there).
#[inline(never)]
pub fn conv(
    input: &[i8],
    layer: &ConvLayer<'_>,
    output: &mut [i8],
    work: &mut [i8],
) -> Option<Backend> {
    conv_band(input, layer, output, work, false)
}

/// [`conv`] for one band of a layer's output rows (the runner's
/// [`crate::plan::Mode::Bands`]): with `prepared`, the call for an earlier
/// band of the same layer left its decision about the requantisation in the
/// work area's last word, and this one takes it instead of checking the
/// constants again. A wrong `prepared` gives wrong outputs, nothing worse.
#[inline(never)]
pub fn conv_band(
    input: &[i8],
    layer: &ConvLayer<'_>,
    output: &mut [i8],
    work: &mut [i8],
    prepared: bool,
) -> Option<Backend> {
    let geometry = layer.geometry();
    if input.len() != geometry.input.values() || output.len() != geometry.output().values() {
        return None;
    }
    let path = conv_path(geometry);
    let words = aligned_words(work);
    if matches!(path, DspConv::SingleChannel) {
        return if conv_single_channel(input, layer, output, words) {
            Some(Backend::ArmDsp)
        } else {
            super::int8::conv(input, layer, output).map(|()| Backend::Portable)
        };
    }
    let (words, decision) = split_decision(words, conv_work_bytes(geometry));
    let ran = match path {
        DspConv::SingleChannel => false,
        DspConv::MultiChannel => {
            conv_multi_channel(input, layer, output, words, decision, prepared)
        }
        DspConv::Window => window_conv_groups(
            input,
            &geometry.window_geometry(),
            layer.filters(),
            layer.requantization(),
            output,
            words,
            decision,
            prepared,
        ),
        DspConv::Portable => false,
    };
    if ran {
        Some(Backend::ArmDsp)
    } else {
        super::int8::conv(input, layer, output).map(|()| Backend::Portable)
    }
}

/// [`super::int8::dense`] with the DSP extension: same arguments, plus `work`
/// of [`dense_work_bytes`] bytes from a 4-byte boundary, or less: then the
/// input is widened as it is read (two instructions more per four inputs and
/// four rows). Returns the backend that ran, as [`conv`] does.
#[inline(never)]
pub fn dense(
    input: &[i8],
    layer: &DenseLayer<'_>,
    output: &mut [i8],
    work: &mut [i8],
) -> Option<Backend> {
    if input.len() != layer.inputs() || output.len() != layer.outputs() {
        return None;
    }
    if dense_rows(
        input,
        layer.rows(),
        layer.inputs(),
        layer.requantization(),
        output,
        work,
    ) {
        Some(Backend::ArmDsp)
    } else {
        super::int8::dense(input, layer, output).map(|()| Backend::Portable)
    }
}

/// The requantisation path of each dense layer of `model`, by its record's position (0 for
/// other layers, whose kernels decide as they run), decided when the model is loaded:
/// deciding walks every output's constants, which on a network of dense layers is a large
/// part of an inference's work besides the products.
pub(crate) fn decide_dense_paths(model: &crate::Int8Model<'_>) -> [u8; crate::arch::MAX_LAYERS] {
    let mut paths = [0u8; crate::arch::MAX_LAYERS];
    let architecture = model.architecture();
    let rounding = crate::network::dense_rounding(model.header().version);
    let mut cursor = crate::plan::Cursor::new(architecture);
    while let Some(step) = cursor.next(architecture) {
        if !matches!(step.operation, crate::plan::Operation::Dense) {
            continue;
        }
        let Some(index) = step.layer.record else {
            continue;
        };
        // The input's zero point (0 here) plays no part in the decision.
        let layer = model
            .layers()
            .nth(index)
            .and_then(|record| crate::network::int8_dense_layer(&record, 0, &step, rounding));
        if let (Some(layer), Some(slot)) = (layer, paths.get_mut(index)) {
            let path = Requantizer::decide(layer.requantization(), layer.inputs());
            *slot = path.code() as u8;
        }
    }
    paths
}

/// `target.copy_from_slice(source)` (the same lengths, else nothing is
/// copied), 32 bytes per `LDM`/`STM` pair where both start on the same word
/// offset, the rest byte by byte.
pub fn copy(target: &mut [i8], source: &[i8]) {
    if target.len() != source.len() {
        return;
    }
    let misaligned = target.as_ptr().align_offset(4);
    if misaligned != source.as_ptr().align_offset(4) || misaligned >= 4 {
        target.copy_from_slice(source);
        return;
    }
    let (head, target_rest) = target.split_at_mut(misaligned.min(target.len()));
    let (source_head, source_rest) = source.split_at(head.len());
    // Bands of rows are usually whole words and blocks: no call to `memcpy` for nothing.
    if !head.is_empty() {
        head.copy_from_slice(source_head);
    }
    let blocks = target_rest.len() / 32;
    let (body, tail) = target_rest.split_at_mut(blocks * 32);
    let (source_body, source_tail) = source_rest.split_at(body.len());
    if let Ok(count) = u32::try_from(blocks)
        && count > 0
    {
        // SAFETY: `body` and `source_body` are `32 * count` bytes each, both
        // starting on a word boundary (the same offset from one, skipped
        // above), and distinct (one is borrowed mutably); the routine reads
        // and writes exactly those; `count >= 1`.
        unsafe { copy_blocks(body.as_mut_ptr(), source_body.as_ptr(), count) };
    }
    if !tail.is_empty() {
        tail.copy_from_slice(source_tail);
    }
}

/// The work words before the decision word of a work area of `bytes` bytes
/// (its last word), and that word; no word when the area is smaller.
fn split_decision(words: &mut [u32], bytes: usize) -> (&mut [u32], Option<&mut u32>) {
    let slot = (bytes / 4).saturating_sub(1);
    if bytes < 4 || words.len() <= slot {
        return (words, None);
    }
    let (work, rest) = words.split_at_mut(slot);
    (work, rest.first_mut())
}

/// The 4-byte aligned whole words inside `work`.
fn aligned_words(work: &mut [i8]) -> &mut [u32] {
    // SAFETY: `align_to_mut` only reinterprets the aligned middle of the
    // buffer; every bit pattern is a valid `u32` and a valid `i8`, so both
    // views stay sound, and the borrow of `work` covers the result.
    let (_, words, _) = unsafe { work.align_to_mut::<u32>() };
    words
}

/// Both halves of a word set to `value` (as int16): the `SXTAB16` addend.
fn halves(value: i32) -> u32 {
    let half = u32::from(value as u16);
    half | (half << 16)
}

/// Two int16 values packed as `SMLAD` reads them: `low` in bits 0..16.
fn pack(low: i32, high: i32) -> u32 {
    u32::from(low as u16) | (u32::from(high as u16) << 16)
}

/// Four int8 values as one little-endian word.
fn word(bytes: &[i8; 4]) -> u32 {
    u32::from_le_bytes(bytes.map(|b| b as u8))
}

/// Index of the largest of `values`, the first one on ties, 0 when empty:
/// [`super::argmax`] four values at a time (`SSUB8` and `SEL` keep each lane's largest),
/// then a scan for its first place. A network whose output is values (an autoencoder's
/// 640) runs this once per inference.
pub fn argmax(values: &[i8]) -> usize {
    // SAFETY: `align_to` only reinterprets the aligned middle; every bit pattern is a valid
    // `u32`, and the words are read as the bytes they are.
    let (head, words, tail) = unsafe { values.align_to::<u32>() };
    let Some(&first) = values.first() else {
        return 0;
    };
    let lanes = words
        .iter()
        .fold(u32::from_ne_bytes([first as u8; 4]), |lanes, &word| {
            lane_maxima(word, lanes)
        });
    let largest = head
        .iter()
        .chain(tail)
        .copied()
        .chain(lanes.to_ne_bytes().map(|byte| byte as i8))
        .fold(first, i8::max);
    values
        .iter()
        .position(|&value| value == largest)
        .unwrap_or(0)
}

/// Each byte lane's larger of `a` and `b` (as int8).
fn lane_maxima(a: u32, b: u32) -> u32 {
    let larger: u32;
    // SAFETY: two register-only instructions (ARMv7E-M DSP): `SSUB8` sets the APSR's GE
    // bits (declared: no `preserves_flags`) and `SEL` reads them; no memory or stack.
    unsafe {
        asm!(
            "ssub8 {larger}, {a}, {b}",
            "sel {larger}, {a}, {b}",
            larger = out(reg) larger,
            a = in(reg) a,
            b = in(reg) b,
            options(pure, nomem, nostack),
        );
    }
    larger
}

/// `(offset.lo + sext(bytes.0), offset.hi + sext(bytes.2))`.
#[inline(always)]
fn sxtab16(offset: u32, bytes: u32) -> u32 {
    let sum: u32;
    // SAFETY: one register-only instruction (ARMv7E-M DSP, present on every
    // target this module is compiled for): reads two registers, writes one,
    // touches no memory, stack or flags.
    unsafe {
        asm!(
            "sxtab16 {sum}, {offset}, {bytes}",
            sum = lateout(reg) sum,
            offset = in(reg) offset,
            bytes = in(reg) bytes,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    sum
}

/// `(offset.lo + sext(bytes.1), offset.hi + sext(bytes.3))`.
#[inline(always)]
fn sxtab16_odd(offset: u32, bytes: u32) -> u32 {
    let sum: u32;
    // SAFETY: as in `sxtab16`: one register-only instruction.
    unsafe {
        asm!(
            "sxtab16 {sum}, {offset}, {bytes}, ror #8",
            sum = lateout(reg) sum,
            offset = in(reg) offset,
            bytes = in(reg) bytes,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    sum
}

/// `ROUNDING[e]`: half of `2^e` (0 for `e = 0`), the rounding term of a right
/// shift by `e`.
// Evaluated while compiling: an out-of-bounds index would be a build error.
#[allow(clippy::indexing_slicing)]
static ROUNDING: [i32; 32] = {
    let mut table = [0; 32];
    let mut e = 1;
    while e < 32 {
        table[e] = 1 << (e - 1);
        e += 1;
    }
    table
};

/// The most right shift whose rounding term can carry the output's zero
/// point (`zero_point * 2^e` beside a product of less than `2^30` stays in
/// an int32): the fused tiles fold it in, and take layers up to this shift.
const FOLDED_SHIFT_MAX: i32 = 22;

/// `ROUNDING[e] - 128 * 2^e`: the rounding term of [`conv_tile_fused`] with
/// the zero point -128 folded in, so that `SSAT` gives the output (0 past
/// [`FOLDED_SHIFT_MAX`], where the tile does not run).
// Evaluated while compiling, as `ROUNDING`.
#[allow(clippy::indexing_slicing)]
static ROUNDING_LESS_128: [i32; 32] = {
    let mut table = [0; 32];
    let mut e = 0;
    while e <= FOLDED_SHIFT_MAX as usize {
        table[e] = ROUNDING[e] - (128 << e);
        e += 1;
    }
    table
};

/// Turns a layer's accumulators into int8 outputs, in assembly where the
/// layer's constants allow an exact shortcut, else with the portable
/// [`Requantization::apply`].
///
/// The shortcut: when the output is clamped at its zero point (a ReLU, or no
/// activation with zero point -128) and `x = accumulator + bias` satisfies
/// `|x| < 2^30`, TFLite's double rounding `RoundingDivideByPOT(SRDHM(x, m),
/// e)` equals `SMMLAR(2x, m, 2^(e-1)) >> e` (one multiply with its rounding,
/// one shift) for every result that is not negative, and both are at most 0
/// otherwise, which the clamp maps to the zero point either way.
struct Requantizer<'r, 'a> {
    requantization: &'r Requantization<'a>,
    path: RequantPath,
    /// What the assembly reads, from the layer's first channel.
    constants: Constants,
}

/// How [`Requantizer`] turns a layer's accumulators into outputs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RequantPath {
    /// [`requantize_clamped`]: clamped at the zero point, maximum 127,
    /// right shifts of at most [`FOLDED_SHIFT_MAX`].
    Clamped,
    /// [`requantize_bounded`]'s shortcut: clamped at the zero point (a ReLU
    /// or ReLU6), any maximum.
    ClampedBelowMax,
    /// [`requantize_bounded`]'s exact rounding: any range (no activation),
    /// right shifts of 1..=[`FOLDED_SHIFT_MAX`].
    Exact,
    /// The portable [`Requantization::apply`].
    Portable,
}

impl RequantPath {
    /// The path as a word, for a work area to remember it between bands.
    const fn code(self) -> u32 {
        match self {
            RequantPath::Clamped => 1,
            RequantPath::ClampedBelowMax => 2,
            RequantPath::Exact => 3,
            RequantPath::Portable => 4,
        }
    }

    /// The path [`code`](Self::code) gave `code`; the portable one for any other word.
    const fn from_code(code: u32) -> Self {
        match code {
            1 => RequantPath::Clamped,
            2 => RequantPath::ClampedBelowMax,
            3 => RequantPath::Exact,
            _ => RequantPath::Portable,
        }
    }
}

/// The requantiser of a layer with `fan_in` products per output, deciding
/// its path once per layer: a later band (`prepared`) reads the decision the
/// first one left in `decision`, a word of the work area.
fn decided_requantizer<'r, 'a>(
    requantization: &'r Requantization<'a>,
    fan_in: usize,
    decision: Option<&mut u32>,
    prepared: bool,
) -> Requantizer<'r, 'a> {
    match decision {
        Some(word) if prepared => {
            Requantizer::with_path(requantization, RequantPath::from_code(*word))
        }
        Some(word) => {
            let requantizer = Requantizer::new(requantization, fan_in);
            *word = requantizer.path.code();
            requantizer
        }
        None => Requantizer::new(requantization, fan_in),
    }
}

impl<'r, 'a> Requantizer<'r, 'a> {
    /// The requantiser on the path exact for all of the layer's channels, given `fan_in`
    /// products per accumulator: the path decided when the model was loaded, or decided
    /// now.
    fn new(requantization: &'r Requantization<'a>, fan_in: usize) -> Self {
        match requantization.decided_path() {
            0 => Self::with_path(requantization, Self::decide(requantization, fan_in)),
            code => Self::with_path(requantization, RequantPath::from_code(code.into())),
        }
    }

    /// The path exact for every channel of `requantization`, given `fan_in` products per
    /// accumulator.
    fn decide(requantization: &Requantization<'_>, fan_in: usize) -> RequantPath {
        // |x - zero_point| <= 255 and |w| <= 128 (the loader allows 127).
        let largest_sum = fan_in.saturating_mul(255 * 128);
        let (bias, multipliers, shifts) = requantization.raw();
        let (min, max) = (
            requantization.activation_min(),
            requantization.activation_max(),
        );
        // The constants' extremes in one pass over the channels (the three hold one entry
        // each, `Requantization::new` checks): this runs for every layer of every inference.
        let (mut largest_bias, mut multiplier_signs) = (0, 0);
        let (mut lowest_shift, mut highest_shift) = (i32::MAX, i32::MIN);
        let channels = bias.iter().zip(multipliers).zip(shifts);
        for ((&b, &m), &s) in channels {
            largest_bias = largest_bias.max(i32::from_le_bytes(b).unsigned_abs());
            multiplier_signs |= u32::from_le_bytes(m);
            let shift = i32::from(s as i8);
            lowest_shift = lowest_shift.min(shift);
            highest_shift = highest_shift.max(shift);
        }
        // The assembly rounds twice, as TFLite's convolutions do; a dense
        // layer of format versions 1-2 rounds once and takes the portable path.
        let in_range = requantization.rounding() == crate::quant::Rounding::Double
            && largest_sum < 1 << 29
            && largest_bias as usize + largest_sum < 1 << 30
            && multiplier_signs >> 31 == 0;
        let right_shifts = |most: i32| lowest_shift >= -31 && highest_shift <= most;
        // The paths that the fused tiles take fold the zero point into the rounding term.
        let foldable = lowest_shift >= -FOLDED_SHIFT_MAX;
        let clamped = min == requantization.output_zero_point() && min <= max;
        if !in_range {
            RequantPath::Portable
        } else if clamped && max == i32::from(i8::MAX) && right_shifts(0) && foldable {
            RequantPath::Clamped
        } else if clamped && right_shifts(0) {
            RequantPath::ClampedBelowMax
        } else if min <= max && right_shifts(-1) && foldable {
            RequantPath::Exact
        } else {
            RequantPath::Portable
        }
    }

    /// The requantiser of `requantization` on `path`, as [`new`](Self::new) decided it (for
    /// a later band of the same layer, which need not check the constants again).
    fn with_path(requantization: &'r Requantization<'a>, path: RequantPath) -> Self {
        let (bias, multipliers, shifts) = requantization.raw();
        let (min, max) = (
            requantization.activation_min(),
            requantization.activation_max(),
        );
        let constants = Constants {
            bias: bias.as_ptr().cast(),
            multipliers: multipliers.as_ptr().cast(),
            shifts: shifts.as_ptr(),
            zero_point: requantization.output_zero_point(),
            rounding: ROUNDING.as_ptr(),
            min,
            max,
            exact: u32::from(path == RequantPath::Exact),
        };
        Requantizer {
            requantization,
            path,
            constants,
        }
    }

    /// Whether [`conv_tile_fused`] can requantise this layer's outputs.
    fn fuses(&self) -> bool {
        self.path == RequantPath::Clamped && self.requantization.output_zero_point() == -128
    }

    /// The first of the four pixels tile `tile` of an unpooled convolution
    /// with `pixels` output pixels computes: a partial last tile moves back
    /// to end at the last pixel (it computes some pixels twice, the same
    /// bytes, rather than take the unfused path) when the layer fuses.
    fn tile_start(&self, tile: usize, pixels: usize) -> usize {
        let start = tile * POSITIONS;
        if start + POSITIONS > pixels && pixels >= POSITIONS && (self.fuses() || self.fuses_exact())
        {
            pixels - POSITIONS
        } else {
            start
        }
    }

    /// Whether [`conv_tile_fused_exact`] can: exact rounding, no activation.
    fn fuses_exact(&self) -> bool {
        self.path == RequantPath::Exact
            && self.requantization.activation_min() == i32::from(i8::MIN)
            && self.requantization.activation_max() == i32::from(i8::MAX)
    }

    /// Runs [`conv_tile_fused`] on a tile of four whole output pixels from
    /// pixel `first_pixel` on: every one of `filters` channels of them.
    /// False (nothing written) if the layer does not fuse or the pixels are
    /// not inside `output`.
    #[inline(always)]
    fn run_fused(
        &self,
        columns: &[u32],
        filters: &[u8],
        groups: u32,
        first_pixel: usize,
        output: &mut [i8],
    ) -> bool {
        let count = self.requantization.outputs();
        let start = first_pixel * count;
        let (true, Some(pixels), Ok(channels)) = (
            (self.fuses() || self.fuses_exact()) && count > 0 && groups > 0,
            output.get_mut(start..start + POSITIONS * count),
            u32::try_from(count),
        ) else {
            return false;
        };
        if columns.len() < groups as usize * 2 * POSITIONS
            || filters.len() < count * groups as usize * 4
        {
            return false;
        }
        let rounding = if self.fuses_exact() {
            ROUNDING.as_ptr()
        } else {
            ROUNDING_LESS_128.as_ptr()
        };
        let mut target = FusedOutput {
            out: pixels.as_mut_ptr(),
            stride: channels,
            bias_end: self.constants.bias.wrapping_add(count),
            multipliers_end: self.constants.multipliers.wrapping_add(count),
            shifts_end: self.constants.shifts.wrapping_add(count),
            rounding,
            out_end: pixels.as_mut_ptr().wrapping_add(count),
            zero_point: self.constants.zero_point,
            first_bias: self.constants.bias,
        };
        // SAFETY: `columns` holds `groups` groups of 8 words and `filters`
        // `count` filters of `groups * 4` bytes (checked above); the routine
        // writes each channel of the four pixels `pixels` holds (`stride` =
        // `count` bytes apart) and reads `count` entries of the layer's
        // constants, whose ranges `Requantizer::new` checked for the clamped
        // and exact paths (`fuses`, `fuses_exact`); `count >= 1`, `groups >= 1`.
        unsafe {
            // Routines without remainder groups where the unrolling divides the groups.
            let routine = match (self.fuses_exact(), groups) {
                (true, _) if groups.is_multiple_of(16) => conv_tile_fused_exact_whole,
                (true, _) => conv_tile_fused_exact,
                (false, 0..16) if groups.is_multiple_of(4) => conv_tile_fused_short_whole,
                (false, 0..16) => conv_tile_fused_short,
                (false, _) if groups.is_multiple_of(16) => conv_tile_fused_whole,
                (false, _) => conv_tile_fused,
            };
            routine(
                columns.as_ptr(),
                filters.as_ptr(),
                groups,
                channels,
                &raw mut target,
            );
        }
        true
    }

    /// Requantises `accumulators` of the channels from `first` on into
    /// `outputs`.
    #[inline(always)]
    fn finish(&self, first: usize, accumulators: &[i32], outputs: &mut [i8]) {
        let count = outputs.len().min(accumulators.len());
        if self.path != RequantPath::Portable
            && count > 0
            && first + count <= self.requantization.outputs()
        {
            // SAFETY: `count >= 1` accumulators and outputs (the shorter
            // slice's length), and channels `first..first + count` of the
            // layer's constants (checked just above) are in bounds;
            // `Requantizer::new` checked the shifts (-31..=0, or -31..=-1 for
            // the exact path, so `rounding` is indexed in bounds), the
            // multipliers (>= 0), the biases (no overflow) and the activation
            // range that the routines assume.
            unsafe {
                let routine = if self.path == RequantPath::Clamped {
                    requantize_clamped
                } else {
                    requantize_bounded
                };
                routine(
                    accumulators.as_ptr(),
                    outputs.as_mut_ptr(),
                    count as u32,
                    &self.constants,
                    first as u32,
                );
            }
            return;
        }
        self.finish_portable(first, accumulators, outputs);
    }

    /// [`finish`](Self::finish) without the shortcut. Not inlined: each
    /// kernel calls `finish` in several places, and this path is rare.
    #[inline(never)]
    fn finish_portable(&self, first: usize, accumulators: &[i32], outputs: &mut [i8]) {
        let channels = self.requantization.channels().skip(first);
        for ((out, &accumulator), channel) in outputs.iter_mut().zip(accumulators).zip(channels) {
            *out = self.requantization.apply(accumulator, channel);
        }
    }
}

/// What [`requantize_clamped`] reads besides the accumulators.
#[repr(C)]
struct Constants {
    bias: *const i32,
    multipliers: *const i32,
    shifts: *const u8,
    zero_point: i32,
    rounding: *const i32,
    /// The activation range, for [`requantize_bounded`].
    min: i32,
    max: i32,
    /// Non-zero for [`requantize_bounded`]'s exact rounding.
    exact: u32,
}

/// Convolution position `p` (0..4, in the convolution's output) of tile
/// `tile` of a convolution whose output is `width` wide and has `pixels`
/// pixels: a pooled pixel's 2x2 window, or four consecutive output pixels
/// (`None` past the last pixel).
#[inline(always)]
fn tile_position(
    pooled: bool,
    width: usize,
    pixels: usize,
    tile: usize,
    p: usize,
) -> Option<(usize, usize)> {
    if pooled {
        Some((2 * (tile / width) + p / 2, 2 * (tile % width) + p % 2))
    } else {
        let pixel = tile * POSITIONS + p;
        (pixel < pixels).then(|| (pixel / width, pixel % width))
    }
}

/// Tiles of a convolution: pooled pixels, or groups of four output pixels.
fn tile_count(geometry: &ConvGeometry) -> usize {
    let output = geometry.output();
    let pixels = output.height * output.width;
    if geometry.pooled {
        pixels
    } else {
        pixels.div_ceil(POSITIONS)
    }
}

/// Requantises the accumulators of one tile's channels `first..` into the
/// output: the maximum per channel for a pooled tile (`sums[0..count]`),
/// else each position's row of `sums` (`sums[p * CHUNK_EACH..]`) into its
/// pixel.
#[inline(always)]
fn finish_tile(
    geometry: &ConvGeometry,
    requantizer: &Requantizer<'_, '_>,
    tile: usize,
    first: usize,
    count: usize,
    sums: &[i32; CHUNK],
    output: &mut [i8],
) {
    let channels = geometry.filters;
    if geometry.pooled {
        let start = tile * channels + first;
        if let (Some(out), Some(row)) = (output.get_mut(start..start + count), sums.get(..count)) {
            requantizer.finish(first, row, out);
        }
        return;
    }
    for p in 0..POSITIONS {
        let start = (tile * POSITIONS + p) * channels + first;
        let (Some(out), Some(row)) = (
            output.get_mut(start..start + count),
            sums.get(p * CHUNK_EACH..p * CHUNK_EACH + count),
        ) else {
            continue;
        };
        requantizer.finish(first, row, out);
    }
}

/// Writes one position's window into its slots of the im2col groups (`slots`
/// starts at its two words of the first group; a group is eight words): per
/// kernel row, the taps inside the input widened in one run, the taps in the
/// padding as zeros. `at` is the position in the convolution's output, `None`
/// past the last pixel (all zeros). False if the slices do not fit.
#[inline(always)]
fn fill_position(
    input: &[i8],
    geometry: &ConvGeometry,
    at: Option<(usize, usize)>,
    slots: &mut [u32],
    offset: u32,
) -> bool {
    let (kernel, pad) = (geometry.kernel, geometry.pad);
    let shape = geometry.input;
    let quads = shape.channels / 4;
    let row_words = kernel * quads * 2 * POSITIONS;
    let Some((y, x)) = at else {
        zero_groups(slots, kernel * kernel * quads);
        return true;
    };
    if y >= pad && y - pad + kernel <= shape.height && x >= pad && x - pad + kernel <= shape.width {
        // The whole window inside the input (most positions): its kernel rows checked at once.
        let row_len = shape.width * shape.channels;
        let start = ((y - pad) * shape.width + x - pad) * shape.channels;
        let last = start + (kernel - 1) * row_len + kernel * shape.channels;
        let run = kernel * quads;
        let Ok(count) = u32::try_from(run) else {
            return false;
        };
        if run == 0 || last > input.len() || slots.len() < 8 * (kernel * run - 1) + 2 {
            return false;
        }
        for ky in 0..kernel {
            // SAFETY: kernel row `ky` reads `run` words from `start + ky * row_len`, the last
            // row ending at `last <= input.len()`, and writes this position's two words of
            // groups `ky * run..(ky + 1) * run`, which `slots` holds (both checked above);
            // `run >= 1`.
            unsafe {
                widen_into_columns(
                    input.as_ptr().wrapping_add(start + ky * row_len),
                    slots.as_mut_ptr().wrapping_add(ky * run * 2 * POSITIONS),
                    count,
                    offset,
                );
            }
        }
        return true;
    }
    // Taps `first..end` of each kernel row read inside the input.
    let first = pad.saturating_sub(x);
    let end = (shape.width + pad).saturating_sub(x).min(kernel);
    for (ky, row) in slots.chunks_mut(row_words).take(kernel).enumerate() {
        let input_y = (y + ky).wrapping_sub(pad);
        if input_y >= shape.height || end <= first {
            zero_groups(row, kernel * quads);
            continue;
        }
        let (before, rest) = row.split_at_mut((first * quads * 2 * POSITIONS).min(row.len()));
        zero_groups(before, first * quads);
        let run = (end - first) * quads;
        let start = (input_y * shape.width + x + first - pad) * shape.channels;
        let (Some(values), Ok(count)) = (input.get(start..start + 4 * run), u32::try_from(run))
        else {
            return false;
        };
        if rest.len() < 8 * (run - 1) + 2 {
            return false;
        }
        // SAFETY: `values` holds `run` words (any alignment); `rest` holds
        // this position's two words of each of the `run` groups of eight,
        // 32 bytes apart (both checked just above); `run >= 1`.
        unsafe { widen_into_columns(values.as_ptr(), rest.as_mut_ptr(), count, offset) };
        if let Some(after) = rest.get_mut(run * 2 * POSITIONS..) {
            zero_groups(after, (kernel - end) * quads);
        }
    }
    true
}

/// Zeroes a position's two words in each of the first `groups` groups.
#[inline(always)]
fn zero_groups(slots: &mut [u32], groups: usize) {
    for group in slots.chunks_mut(2 * POSITIONS).take(groups) {
        if let Some(pair) = group.get_mut(..2) {
            pair.fill(0);
        }
    }
}

fn conv_multi_channel(
    input: &[i8],
    layer: &ConvLayer<'_>,
    output: &mut [i8],
    words: &mut [u32],
    decision: Option<&mut u32>,
    prepared: bool,
) -> bool {
    let geometry = layer.geometry();
    let channels = geometry.input.channels;
    let fan_in = geometry.fan_in();
    let groups = fan_in / 4;
    let Some(columns) = words.get_mut(..groups * 2 * POSITIONS) else {
        return false;
    };
    let Ok(group_count) = u32::try_from(groups) else {
        return false;
    };
    if groups == 0 || !channels.is_multiple_of(4) {
        return false;
    }
    let requantization = layer.requantization();
    let requantizer = decided_requantizer(requantization, fan_in, decision, prepared);
    let offset = halves(-requantization.input_zero_point());
    let chunk = if geometry.pooled { CHUNK } else { CHUNK_EACH };
    // Made on first use: the fused tiles, most of a layer's, never need it, and clearing it
    // would cost every band of rows.
    let mut sums_storage = None;
    let (pooled, width) = (geometry.pooled, geometry.output().width.max(1));
    let pixels = geometry.output().height * width;
    let pointwise = geometry.kernel == 1 && !pooled;
    for tile in 0..tile_count(geometry) {
        let start = if pooled {
            tile
        } else {
            requantizer.tile_start(tile, pixels)
        };
        let tile_end = (start + POSITIONS) * channels;
        if pointwise && start + POSITIONS <= pixels && tile_end <= input.len() {
            // The tile's four pixels follow each other in the input: each is widened straight
            // into its two words of every group, with no checks per position.
            let values = input.as_ptr().wrapping_add(start * channels);
            for position in 0..POSITIONS {
                // SAFETY: pixel `start + position` is `channels = 4 * groups` bytes inside
                // `input` (`tile_end <= input.len()`); `columns` holds `groups` groups of
                // eight words, of which the routine writes this position's two in each;
                // `groups >= 1`.
                unsafe {
                    widen_into_columns(
                        values.wrapping_add(position * channels),
                        columns.as_mut_ptr().wrapping_add(2 * position),
                        group_count,
                        offset,
                    );
                }
            }
        } else {
            for position in 0..POSITIONS {
                // This position's two words in the first group of eight.
                let Some(slots) = columns.get_mut(2 * position..) else {
                    return false;
                };
                let pixel = start + position;
                if pointwise && pixel < pixels {
                    // A 1x1 window is the pixel's own channels.
                    let start = pixel * channels;
                    let (Some(values), Ok(count)) =
                        (input.get(start..start + channels), u32::try_from(groups))
                    else {
                        return false;
                    };
                    if slots.len() < 8 * (groups - 1) + 2 {
                        return false;
                    }
                    // SAFETY: `values` holds `groups` words (any alignment);
                    // `slots` this position's two words of each of the `groups`
                    // groups of eight (checked just above); `groups >= 1`.
                    unsafe {
                        widen_into_columns(values.as_ptr(), slots.as_mut_ptr(), count, offset)
                    };
                    continue;
                }
                let at = if pooled {
                    tile_position(pooled, width, pixels, tile, position)
                } else {
                    (pixel < pixels).then(|| (pixel / width, pixel % width))
                };
                if !fill_position(input, geometry, at, slots, offset) {
                    return false;
                }
            }
        }
        let whole = !pooled && start + POSITIONS <= pixels;
        if whole && requantizer.run_fused(columns, layer.filters(), group_count, start, output) {
            continue;
        }
        let filter_chunks = layer.filters().chunks(chunk * fan_in);
        for (index, filter_chunk) in filter_chunks.enumerate() {
            let count = filter_chunk.len() / fan_in;
            if count == 0 || count > chunk {
                continue;
            }
            let sums = sums_storage.get_or_insert([0i32; CHUNK]);
            // SAFETY: `columns` holds `groups` groups of 8 words (sliced
            // above) and `filter_chunk` `count` filters of `groups * 4`
            // bytes, which is all that the tile routines read (unaligned
            // reads of the weights are allowed on these cores); they write
            // `count <= CHUNK` words to `sums` (the pooled one) or four rows
            // of `count <= CHUNK_EACH` words, `CHUNK_EACH` apart (the other).
            // `count >= 1` and `groups >= 1`.
            unsafe {
                let tile_routine = if geometry.pooled {
                    conv_tile
                } else {
                    conv_tile_each
                };
                tile_routine(
                    columns.as_ptr(),
                    filter_chunk.as_ptr(),
                    group_count,
                    count as u32,
                    sums.as_mut_ptr(),
                );
            }
            finish_tile(
                geometry,
                &requantizer,
                tile,
                index * chunk,
                count,
                sums,
                output,
            );
        }
    }
    true
}

/// [`general::conv`] with the DSP extension, for any window, stride and
/// padding: same arguments, plus `work` of at least
/// [`window_conv_work_bytes`] bytes from a 4-byte boundary. Returns the
/// backend that ran, as [`conv`] does.
///
/// Windows are unrolled four output pixels at a time into the groups
/// `conv_tile_each` multiplies (see the module's documentation). With a
/// multiple of 4 input channels each kernel row's taps inside the input are
/// widened in one run; with other channel counts (a first layer on 1 or 3
/// channels) a position's window is first gathered as bytes, the taps in the
/// padding set to the input zero point (so they add 0), padded to whole
/// groups, then widened. Filters whose length is not a multiple of 4 are
/// copied once into the work area, each padded with zeros to whole groups.
#[inline(never)]
pub fn window_conv(
    input: &[i8],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &Requantization<'_>,
    output: &mut [i8],
    work: &mut [i8],
) -> Option<Backend> {
    window_conv_band(
        input,
        geometry,
        weights,
        requantization,
        output,
        work,
        false,
    )
}

/// [`window_conv`] for one band of a layer's output rows, `prepared` as for
/// [`conv_band`]; a first layer on 1 or 3 channels also takes the padded
/// filters the earlier band left in the work area.
#[inline(never)]
pub fn window_conv_band(
    input: &[i8],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &Requantization<'_>,
    output: &mut [i8],
    work: &mut [i8],
    prepared: bool,
) -> Option<Backend> {
    if input.len() != geometry.input.values() || output.len() != geometry.output.values() {
        return None;
    }
    let words = aligned_words(work);
    let (words, decision) = split_decision(words, window_conv_work_bytes(geometry));
    if window_conv_groups(
        input,
        geometry,
        weights,
        requantization,
        output,
        words,
        decision,
        prepared,
    ) {
        Some(Backend::ArmDsp)
    } else {
        general::conv(input, geometry, weights, requantization, output).map(|()| Backend::Portable)
    }
}

#[allow(clippy::too_many_arguments)]
fn window_conv_groups(
    input: &[i8],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &Requantization<'_>,
    output: &mut [i8],
    words: &mut [u32],
    decision: Option<&mut u32>,
    prepared: bool,
) -> bool {
    let layout = DspWindowConvWork::of(geometry);
    let filters = geometry.output.channels;
    let fan_in = layout.fan_in;
    let groups = layout.groups;
    if fan_in == 0
        || weights.len() != fan_in * filters
        || requantization.outputs() != filters
        || words.len() * 4 < layout.bytes
    {
        return false;
    }
    let (columns, rest) = words.split_at_mut(groups * 2 * POSITIONS);
    let (bands, rest) = rest.split_at_mut(layout.band_words);
    let (padded_filters, _) = rest.split_at_mut(layout.filter_words);
    let Ok(group_count) = u32::try_from(groups) else {
        return false;
    };
    // SAFETY: reinterprets aligned words as four times as many bytes; every
    // bit pattern is valid for both.
    let (_, bands, _) = unsafe { bands.align_to_mut::<i8>() };
    // SAFETY: as above.
    let (_, padded_filters, _) = unsafe { padded_filters.align_to_mut::<u8>() };
    let banded = layout.band_words > 0;
    let row_bytes = geometry.kernel_width * geometry.input.channels;
    // Banded, each kernel row of a filter padded with zeros to whole groups: by the first
    // band, which leaves them in the work area for the later ones.
    let filters_bytes: &[u8] = if banded && !row_bytes.is_multiple_of(4) {
        if !prepared {
            let padded_rows = padded_filters.chunks_exact_mut(layout.row_groups * 4);
            for (padded, row) in padded_rows.zip(weights.chunks_exact(row_bytes.max(1))) {
                let (head, tail) = padded.split_at_mut(row_bytes.min(padded.len()));
                head.copy_from_slice(row.get(..head.len()).unwrap_or(&[]));
                tail.fill(0);
            }
        }
        padded_filters
    } else {
        weights
    };
    let requantizer = decided_requantizer(requantization, fan_in, decision, prepared);
    let zero_point = requantization.input_zero_point();
    let offset = halves(-zero_point);
    // Made on first use, as in `conv_multi_channel`.
    let mut sums_storage = None;
    let width = geometry.output.width.max(1);
    let pixels = geometry.output.height * width;
    let band_bytes = geometry.kernel_height * layout.band_row_words * 4;
    // The output row each band holds.
    let mut band_rows = [usize::MAX; 2];
    for tile in 0..pixels.div_ceil(POSITIONS) {
        let start = requantizer.tile_start(tile, pixels);
        for position in 0..POSITIONS {
            let pixel = start + position;
            let at = (pixel < pixels).then(|| (pixel / width, pixel % width));
            let Some(slots) = columns.get_mut(2 * position..) else {
                return false;
            };
            let filled = match at {
                Some((y, x)) if banded => {
                    let Some(band) = bands.get_mut((y % 2) * band_bytes..(y % 2 + 1) * band_bytes)
                    else {
                        return false;
                    };
                    if let Some(held) = band_rows.get_mut(y % 2)
                        && *held != y
                    {
                        fill_band(
                            input,
                            geometry,
                            y,
                            zero_point as i8,
                            layout.band_row_words * 4,
                            band,
                        );
                        *held = y;
                    }
                    widen_band_position(band, geometry, &layout, x, slots, offset)
                }
                None if banded => {
                    zero_groups(slots, groups);
                    true
                }
                _ => fill_window_position(input, geometry, at, slots, offset),
            };
            if !filled {
                return false;
            }
        }
        let whole = start + POSITIONS <= pixels;
        if whole && requantizer.run_fused(columns, filters_bytes, group_count, start, output) {
            continue;
        }
        let filter_chunks = filters_bytes.chunks(CHUNK_EACH * groups * 4);
        for (index, filter_chunk) in filter_chunks.enumerate() {
            let count = filter_chunk.len() / (groups * 4);
            if count == 0 || count > CHUNK_EACH {
                continue;
            }
            let sums = sums_storage.get_or_insert([0i32; CHUNK]);
            // SAFETY: `columns` holds `groups` groups of 8 words and
            // `filter_chunk` `count` filters of `groups * 4` bytes, all that
            // `conv_tile_each` reads; it writes four rows of `count <=
            // CHUNK_EACH` words, `CHUNK_EACH` apart, inside `sums`. `count >=
            // 1` and `groups >= 1`.
            unsafe {
                conv_tile_each(
                    columns.as_ptr(),
                    filter_chunk.as_ptr(),
                    group_count,
                    count as u32,
                    sums.as_mut_ptr(),
                );
            }
            let first = index * CHUNK_EACH;
            for position in 0..POSITIONS {
                let start = (tile * POSITIONS + position) * filters + first;
                let (Some(out), Some(row)) = (
                    output.get_mut(start..start + count),
                    sums.get(position * CHUNK_EACH..position * CHUNK_EACH + count),
                ) else {
                    continue;
                };
                requantizer.finish(first, row, out);
            }
        }
    }
    true
}

/// [`fill_position`] for any window geometry with a multiple of 4 input
/// channels.
#[inline(always)]
fn fill_window_position(
    input: &[i8],
    geometry: &WindowGeometry,
    at: Option<(usize, usize)>,
    slots: &mut [u32],
    offset: u32,
) -> bool {
    let shape = geometry.input;
    let (kernel_height, kernel_width) = (geometry.kernel_height, geometry.kernel_width);
    let quads = shape.channels / 4;
    let row_words = kernel_width * quads * 2 * POSITIONS;
    let Some((y, x)) = at else {
        zero_groups(slots, kernel_height * kernel_width * quads);
        return true;
    };
    let Span {
        first: top,
        end: bottom,
        input: input_y,
    } = Span::new(
        y,
        geometry.stride_height,
        geometry.pad_top,
        kernel_height,
        shape.height,
    );
    let Span {
        first,
        end,
        input: input_x,
    } = Span::new(
        x,
        geometry.stride_width,
        geometry.pad_left,
        kernel_width,
        shape.width,
    );
    for (ky, row) in slots.chunks_mut(row_words).take(kernel_height).enumerate() {
        if ky < top || ky >= bottom || end <= first {
            zero_groups(row, kernel_width * quads);
            continue;
        }
        let (before, rest) = row.split_at_mut((first * quads * 2 * POSITIONS).min(row.len()));
        zero_groups(before, first * quads);
        let run = (end - first) * quads;
        let start = ((input_y + ky - top) * shape.width + input_x) * shape.channels;
        let (Some(values), Ok(count)) = (input.get(start..start + 4 * run), u32::try_from(run))
        else {
            return false;
        };
        if rest.len() < 8 * (run - 1) + 2 {
            return false;
        }
        // SAFETY: `values` holds `run` words (any alignment); `rest` holds
        // this position's two words of each of the `run` groups of eight,
        // 32 bytes apart (both checked just above); `run >= 1`.
        unsafe { widen_into_columns(values.as_ptr(), rest.as_mut_ptr(), count, offset) };
        if let Some(after) = rest.get_mut(run * 2 * POSITIONS..) {
            zero_groups(after, (kernel_width - end) * quads);
        }
    }
    true
}

/// Fills `band` with the input rows output row `y` reads (kernel row `ky`
/// at `ky * row_len`), from the first window's first column to the last
/// window's last, as bytes; columns and rows outside the input, and the slack
/// after each row, hold `zero_point`.
#[inline(always)]
fn fill_band(
    input: &[i8],
    geometry: &WindowGeometry,
    y: usize,
    zero_point: i8,
    row_len: usize,
    band: &mut [i8],
) {
    let shape = geometry.input;
    let channels = shape.channels;
    band.fill(zero_point);
    let Span {
        first: top,
        end: bottom,
        input: input_y,
    } = Span::new(
        y,
        geometry.stride_height,
        geometry.pad_top,
        geometry.kernel_height,
        shape.height,
    );
    // Input columns inside the map: from `pad_left` on in the band.
    let skip = geometry.pad_left.min(row_len / channels.max(1));
    let inside = shape
        .width
        .min((row_len / channels.max(1)).saturating_sub(skip));
    for ky in top..bottom {
        let from = (input_y + ky - top) * shape.width * channels;
        let to = ky * row_len + skip * channels;
        if let (Some(source), Some(target)) = (
            input.get(from..from + inside * channels),
            band.get_mut(to..to + inside * channels),
        ) {
            target.copy_from_slice(source);
        }
    }
}

/// Widens the window of output column `x` from `band` into a position's
/// slots: each kernel row's bytes, from the window's first column on, as
/// `row_groups` whole groups (the bytes past the row meet zero weights).
#[inline(always)]
fn widen_band_position(
    band: &[i8],
    geometry: &WindowGeometry,
    layout: &DspWindowConvWork,
    x: usize,
    slots: &mut [u32],
    offset: u32,
) -> bool {
    let row_len = layout.band_row_words * 4;
    let start = x * geometry.stride_width * geometry.input.channels;
    let (rows, run) = (geometry.kernel_height, layout.row_groups);
    let (Ok(row_count), Ok(quads), Ok(stride)) = (
        u32::try_from(rows),
        u32::try_from(run),
        u32::try_from(row_len),
    ) else {
        return false;
    };
    let last = (rows.saturating_sub(1)) * row_len + start + 4 * run;
    let groups = rows * run;
    if rows == 0 || run == 0 || band.len() < last || slots.len() < 8 * (groups - 1) + 2 {
        return false;
    }
    // SAFETY: the routine reads `run` words from `start + ky * row_len` for
    // each of the `rows` kernel rows, the last ending at `last <= band.len()`;
    // it writes this position's two words of each of the `rows * run`
    // groups of eight, which `slots` holds (both checked above); `rows` and
    // `run` at least 1.
    unsafe {
        widen_rows(
            band.as_ptr().wrapping_add(start),
            slots.as_mut_ptr(),
            row_count,
            quads,
            stride,
            offset,
        );
    }
    true
}

/// Taps of the depthwise windows the DSP kernel runs (3x3).
const DEPTHWISE_TAPS: usize = 9;

/// [`general::depthwise`] with the DSP extension: same arguments, plus `work`
/// of at least [`depthwise_work_bytes`] bytes from a 4-byte boundary. Runs
/// 3x3 windows of any stride and padding with one output channel per input
/// channel and a multiple of 4 channels; other layers run the portable kernel.
///
/// The weights are widened once per call into a table, per group of four
/// channels: the accumulators' starting values (`-input_zero_point` times
/// each channel's weights' sum, plus the bias when the requantisation is
/// done in assembly), each tap's weights as two int16 pairs, and each
/// channel's multiplier and shift. The input is read as it is, without its
/// offset; a tap outside the input reads a row of the input zero point
/// instead, so every window has all nine taps, and
/// `sum(x * w) - zero_point * sum(w) = sum((x - zero_point) * w)` over the
/// taps inside the input, exactly what TFLite computes. Per output pixel, `depthwise_pixel_fused`
/// sums and requantises four channels at a time, or `depthwise_pixel` sums
/// them for the portable requantisation.
#[inline(never)]
pub fn depthwise(
    input: &[i8],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &Requantization<'_>,
    output: &mut [i8],
    work: &mut [i8],
) -> Option<Backend> {
    depthwise_band(
        input,
        geometry,
        weights,
        requantization,
        output,
        work,
        false,
    )
}

/// [`depthwise`] for one band of a layer's output rows (the runner's
/// [`crate::plan::Mode::Bands`]): with `prepared`, `work` still holds the
/// table that the call for an earlier band of the same layer built (it ran
/// the DSP kernel, on the same weights, requantisation and work area), and
/// the table is used as it is instead of being built again. A wrong
/// `prepared` gives wrong outputs, nothing worse.
#[inline(never)]
pub fn depthwise_band(
    input: &[i8],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &Requantization<'_>,
    output: &mut [i8],
    work: &mut [i8],
    prepared: bool,
) -> Option<Backend> {
    if input.len() != geometry.input.values() || output.len() != geometry.output.values() {
        return None;
    }
    if depthwise_quads(
        input,
        geometry,
        weights,
        requantization,
        output,
        work,
        prepared,
    ) {
        Some(Backend::ArmDsp)
    } else {
        general::depthwise(input, geometry, weights, requantization, output)
            .map(|()| Backend::Portable)
    }
}

/// A 3x3 stride-1 depthwise convolution whose output overwrites its own input
/// in `region` (the runner's [`crate::plan::Mode::InPlace`]): the input at
/// `input_at`, the output, of the same shape, at `output_at`, at least a row
/// and a pixel (`(width + 1) * channels` bytes) before or after it. A pixel
/// writes over input that only pixels computed before it needed, and over the
/// quads of its own taps it has read: before the input, pixels go from the
/// top left and quads in order; after it, from the bottom right, quads in
/// order where the distance leaves a pixel's output clear of its own unread
/// quads (a row and a pixel exactly, or a further pixel or more), in reverse
/// otherwise. Same arguments as [`depthwise`] besides; `None` when the
/// geometry, the places or the work area do not allow it (the portable kernel
/// cannot run in place).
#[inline(never)]
pub fn depthwise_in_place(
    region: &mut [i8],
    input_at: usize,
    output_at: usize,
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &Requantization<'_>,
    work: &mut [i8],
) -> Option<Backend> {
    let shape = geometry.input;
    let len = shape.values();
    let inside = |at: usize| at.checked_add(len).is_some_and(|end| end <= region.len());
    let lag = crate::plan::dsp_depthwise_in_place_lag(geometry);
    if lag == 0 || !inside(input_at) || !inside(output_at) {
        return None;
    }
    let order = if output_at.checked_add(lag)? <= input_at {
        PixelOrder::Forward
    } else {
        let beyond = output_at.checked_sub(input_at)?.checked_sub(lag)?;
        PixelOrder::Backward {
            quads_reversed: beyond != 0 && beyond < shape.channels,
        }
    };
    let base = region.as_mut_ptr();
    let maps = Maps {
        input: base.wrapping_add(input_at),
        input_len: len,
        output: base.wrapping_add(output_at),
        output_len: len,
        order,
    };
    // SAFETY: both lie inside `region` (checked), whose borrow is not used while the
    // kernel runs; the output lies a row and a pixel or more before the input with the
    // pixels forward, or after it with the pixels backward and the quads in an order that
    // never writes a quad of the pixel's own taps before reading it (see above).
    unsafe { depthwise_maps(maps, geometry, weights, requantization, work, false) }
        .then_some(Backend::ArmDsp)
}

fn depthwise_quads(
    input: &[i8],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &Requantization<'_>,
    output: &mut [i8],
    work: &mut [i8],
    prepared: bool,
) -> bool {
    let maps = Maps {
        input: input.as_ptr(),
        input_len: input.len(),
        output: output.as_mut_ptr(),
        output_len: output.len(),
        order: PixelOrder::Forward,
    };
    // SAFETY: two slices, which do not overlap.
    unsafe { depthwise_maps(maps, geometry, weights, requantization, work, prepared) }
}

/// The order in which [`depthwise_maps`] computes its output pixels.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PixelOrder {
    /// Row by row from the top, left to right; each pixel's quads in order.
    Forward,
    /// Row by row from the bottom, right to left; each pixel's quads in order, or in reverse
    /// (`quads_reversed`).
    Backward { quads_reversed: bool },
}

/// Where [`depthwise_maps`] reads and writes.
#[derive(Clone, Copy)]
struct Maps {
    input: *const i8,
    input_len: usize,
    output: *mut i8,
    output_len: usize,
    order: PixelOrder,
}

/// [`depthwise_quads`] on a map read at `maps.input` and written at `maps.output`, pixel by
/// pixel in `maps.order`; a pixel writes each of its quads (or chunks of quads) after reading
/// that quad's (that chunk's) nine taps.
///
/// # Safety
///
/// `maps.input` must be valid for reading `input_len` bytes and `maps.output` for writing
/// `output_len` bytes, and no reference to either may be live; they may overlap only where
/// the order never writes a byte that a later read needs ([`depthwise_in_place`]).
unsafe fn depthwise_maps(
    maps: Maps,
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &Requantization<'_>,
    work: &mut [i8],
    prepared: bool,
) -> bool {
    let Maps {
        input,
        input_len,
        output,
        output_len,
        order,
    } = maps;
    if input_len != geometry.input.values() || output_len != geometry.output.values() {
        return false;
    }
    let channels = geometry.input.channels;
    let quads = channels / 4;
    let table_words = quads * DEPTHWISE_QUAD_WORDS;
    let words = aligned_words(work);
    if !crate::plan::dsp_runs_depthwise(geometry)
        || weights.len() != DEPTHWISE_TAPS * channels
        || requantization.outputs() != channels
        || words.len() < table_words + quads + 1
    {
        return false;
    }
    let (table, rest) = words.split_at_mut(table_words);
    let (padding, rest) = rest.split_at_mut(quads);
    let Some(decision) = rest.first_mut() else {
        return false;
    };
    let zero_point = requantization.input_zero_point();
    // What the first band decided about the requantisation (a word after the
    // table): the path, and whether the pixels requantise in assembly.
    let (requantizer, fused) = if prepared {
        let requantizer =
            Requantizer::with_path(requantization, RequantPath::from_code(*decision & 0xff));
        (requantizer, *decision & 0x100 != 0)
    } else {
        let requantizer = Requantizer::new(requantization, DEPTHWISE_TAPS);
        let (_, _, shifts) = requantization.raw();
        let fused = requantizer.fuses() && shifts.iter().all(|&s| (s as i8) <= -1);
        *decision = requantizer.path.code() | (u32::from(fused) << 8);
        (requantizer, fused)
    };
    // The table: per quad, the starting sums (the zero point's share, and the
    // biases when requantising in place), each tap's weight pairs, then each
    // channel's multiplier and right shift less one. An earlier band built it.
    if !prepared {
        padding.fill(u32::from_ne_bytes([zero_point as u8; 4]));
    }
    let mut constants = requantization.channels();
    let entries = if prepared { 0 } else { quads };
    for (quad, entry) in table
        .chunks_exact_mut(DEPTHWISE_QUAD_WORDS)
        .take(entries)
        .enumerate()
    {
        let (starts, rest) = entry.split_at_mut(4);
        let (pairs, rest) = rest.split_at_mut(2 * DEPTHWISE_TAPS);
        let (multipliers, shifts) = rest.split_at_mut(4);
        // Each channel's weights summed in int16 halves beside the pairs (nine int8 weights
        // stay far inside int16): lanes 0 and 2 in `even`, 1 and 3 in `odd`.
        let (mut even, mut odd) = (0u32, 0u32);
        for (tap, pair) in pairs.as_chunks_mut::<2>().0.iter_mut().enumerate() {
            let start = tap * channels + 4 * quad;
            let Some(quad_weights) = weights
                .get(start..start + 4)
                .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
            else {
                return false;
            };
            let raw = u32::from_le_bytes(quad_weights);
            *pair = [sxtab16(0, raw), sxtab16_odd(0, raw)];
            even = sxtab16(even, raw);
            odd = sxtab16_odd(odd, raw);
        }
        let half = |word: u32| i32::from(word as u16 as i16);
        let lane_sums = [half(even), half(odd), half(even >> 16), half(odd >> 16)];
        let mut packed_shifts = [0u8; 4];
        for (((start, multiplier), shift), sum) in starts
            .iter_mut()
            .zip(multipliers.iter_mut())
            .zip(&mut packed_shifts)
            .zip(lane_sums)
        {
            let constant = constants.next().unwrap_or_default();
            let bias = if fused { constant.bias } else { 0 };
            *start = bias.wrapping_sub(zero_point.wrapping_mul(sum)) as u32;
            *multiplier = constant.multiplier as u32;
            // `e - 1`, 0..=30 wherever the pixels requantise in assembly (shifts of at
            // least 1); unused otherwise.
            *shift = (-constant.shift - 1) as u8;
        }
        if let [word] = shifts {
            *word = u32::from_le_bytes(packed_shifts);
        }
    }
    let padding_row = padding.as_ptr().cast::<i8>();
    let shape = geometry.input;
    let row_bytes = shape.width * channels;
    // Made on first use, as in `conv_multi_channel`: requantising in assembly never needs it.
    let mut sums_storage = None;
    let width = geometry.output.width.max(1);
    let mut tap_offsets = [0usize; DEPTHWISE_TAPS];
    for (tap, offset) in tap_offsets.iter_mut().enumerate() {
        *offset = (tap / 3) * row_bytes + (tap % 3) * channels;
    }
    let count = output_len / channels;
    // Backwards with the quads reversed, a pixel's requantising calls take one quad each, from
    // the last: a quad's output may fall on a later quad of the pixel's own taps.
    let quad_calls = match order {
        PixelOrder::Backward {
            quads_reversed: true,
        } => quads,
        _ => 1,
    };
    let mut done = 0;
    while done < count {
        let pixel = match order {
            PixelOrder::Forward => done,
            PixelOrder::Backward { .. } => count - 1 - done,
        };
        let (y, x) = (pixel / width, pixel % width);
        let top = (y * geometry.stride_height) as isize - geometry.pad_top as isize;
        let left = (x * geometry.stride_width) as isize - geometry.pad_left as isize;
        let inside = |at: isize, side: usize| (0..side as isize).contains(&at);
        let interior = inside(top, shape.height)
            && inside(top + 2, shape.height)
            && inside(left, shape.width)
            && inside(left + 2, shape.width);
        let mut taps = [padding_row; DEPTHWISE_TAPS];
        if interior {
            // The whole window inside the map (most pixels).
            let corner = top as usize * row_bytes + left as usize * channels;
            // This pixel and the interior ones after it in its output row, in one call (one
            // at a time backwards, and per quad when the quads go in reverse).
            let last_x = ((shape.width - 3 + geometry.pad_left) / geometry.stride_width.max(1))
                .min(width - 1)
                .max(x);
            let run = match order {
                PixelOrder::Forward => last_x + 1 - x,
                PixelOrder::Backward { .. } => 1,
            };
            let corner_step = geometry.stride_width * channels;
            let last = corner + (run - 1) * corner_step + 2 * row_bytes + 3 * channels;
            if (pixel + run) * channels <= output_len
                && fused
                && quad_calls == 1
                && last <= input_len
            {
                // SAFETY: the `run` windows lie inside the map: the routine reads
                // `channels = 4 * quads` bytes from `corner + p * corner_step + ky *
                // row_bytes + kx * channels`, `p < run`, `ky, kx < 3`, the last ending at
                // `last <= input_len`; `table` holds `quads` entries; it writes the `run`
                // pixels' `run * channels` bytes from `pixel * channels`, inside the output,
                // each quad after reading its taps (the caller's order); the constants suit
                // the routine (`fuses`, shifts of at least 1); `quads >= 1`, `run >= 1`.
                unsafe {
                    depthwise_inner_run_fused(
                        input.wrapping_add(corner),
                        table.as_ptr(),
                        quads as u32,
                        output.wrapping_add(pixel * channels),
                        channels as u32,
                        row_bytes as u32,
                        run as u32,
                        corner_step as u32,
                    );
                }
                done += run;
                continue;
            }
            let corner = input.wrapping_add(corner);
            for (address, &offset) in taps.iter_mut().zip(&tap_offsets) {
                *address = corner.wrapping_add(offset);
            }
        } else {
            for (ky, row_taps) in taps.chunks_exact_mut(3).enumerate() {
                let row = top + ky as isize;
                if !inside(row, shape.height) {
                    continue;
                }
                for (kx, address) in row_taps.iter_mut().enumerate() {
                    let column = left + kx as isize;
                    if inside(column, shape.width) {
                        let offset = row as usize * row_bytes + column as usize * channels;
                        *address = input.wrapping_add(offset);
                    }
                }
            }
        }
        if (pixel + 1) * channels > output_len {
            return false;
        }
        let out = output.wrapping_add(pixel * channels);
        done += 1;
        if fused {
            let per_call = quads / quad_calls;
            for call in (0..quad_calls).rev() {
                let first_quad = call * per_call;
                // SAFETY: every address in `taps` is a whole input pixel (`row`
                // and `column` inside the map, so `offset + channels <=
                // input_len`) or `padding` (`channels` bytes), of which the
                // routine reads `4 * per_call` bytes from byte `4 * first_quad`;
                // `table` holds `quads` entries from which it reads `per_call`
                // from entry `first_quad`; it writes `4 * per_call` bytes of this
                // pixel's output (inside it, as checked), each quad after reading
                // its taps; the constants suit the routine (`fuses`, shifts of at
                // least 1). `per_call >= 1`.
                unsafe {
                    depthwise_pixel_fused(
                        taps.as_ptr(),
                        table
                            .as_ptr()
                            .wrapping_add(first_quad * DEPTHWISE_QUAD_WORDS),
                        per_call as u32,
                        out.wrapping_add(4 * first_quad),
                        (4 * first_quad) as u32,
                    );
                }
            }
            continue;
        }
        let sums = sums_storage.get_or_insert([0i32; CHUNK]);
        let chunks = channels.div_ceil(CHUNK);
        for step in 0..chunks {
            // Backwards, the chunks from the last: a chunk's output may fall on a later
            // chunk of this pixel's own taps.
            let chunk = match order {
                PixelOrder::Forward => step,
                PixelOrder::Backward { .. } => chunks - 1 - step,
            };
            let chunk_len = CHUNK.min(channels - chunk * CHUNK);
            let chunk_quads = chunk_len / 4;
            let Some(table_chunk) = table.get(chunk * CHUNK / 4 * DEPTHWISE_QUAD_WORDS..) else {
                return false;
            };
            // SAFETY: as above for `taps`, reading `4 * chunk_quads` bytes
            // from channel `chunk * CHUNK` on; `table_chunk` holds at least
            // `chunk_quads` entries; the routine writes `4 * chunk_quads <=
            // CHUNK` words to `sums`. `chunk_quads >= 1`.
            unsafe {
                depthwise_pixel(
                    taps.as_ptr(),
                    table_chunk.as_ptr(),
                    chunk_quads as u32,
                    sums.as_mut_ptr(),
                    (chunk * CHUNK) as u32,
                );
            }
            // SAFETY: the chunk's `chunk_len` bytes of this pixel's output, inside it (as
            // checked); the taps it overlaps, if any, have been read (the caller's order),
            // and no other reference to the maps is live while this one is.
            let out_chunk =
                unsafe { core::slice::from_raw_parts_mut(out.add(chunk * CHUNK), chunk_len) };
            requantizer.finish(chunk * CHUNK, sums, out_chunk);
        }
    }
    true
}

/// [`general::add`] with the DSP extension: same arguments, plus `work` of
/// at least [`ADD_WORK_BYTES`](crate::plan::DSP_ADD_WORK_BYTES) bytes from a 4-byte boundary.
///
/// Each input's scaled value depends only on its byte, so two tables of 256
/// words hold them (doubled, ready for `SMMULR`: see `requantize_bounded`);
/// per element `add_scaled` looks both up, adds them and requantises the sum
/// with the output's multiplier and right shift. Outputs whose shift is not a
/// right shift of at least 1 run the portable kernel.
#[inline(never)]
pub fn add(
    a: &[i8],
    b: &[i8],
    params: &AddParams,
    output: &mut [i8],
    work: &mut [i8],
) -> Option<Backend> {
    add_band(a, b, params, output, work, false)
}

/// [`add`] for one band of an addition (the runner's
/// [`crate::plan::Mode::Bands`]): with `prepared`, `work` still holds the
/// tables that the call for an earlier band built (it ran the DSP kernel,
/// with the same parameters and work area), and they are used as they are. A
/// wrong `prepared` gives wrong outputs, nothing worse.
#[inline(never)]
pub fn add_band(
    a: &[i8],
    b: &[i8],
    params: &AddParams,
    output: &mut [i8],
    work: &mut [i8],
    prepared: bool,
) -> Option<Backend> {
    if a.len() != output.len() || b.len() != output.len() {
        return None;
    }
    if add_tables(a, b, params, output, work, prepared) {
        Some(Backend::ArmDsp)
    } else {
        general::add(a, b, params, output).map(|()| Backend::Portable)
    }
}

fn add_tables(
    a: &[i8],
    b: &[i8],
    params: &AddParams,
    output: &mut [i8],
    work: &mut [i8],
    prepared: bool,
) -> bool {
    let words = aligned_words(work);
    let exponent = -params.output_shift;
    let (Some(tables), Ok(count)) = (words.get_mut(..512), u32::try_from(output.len())) else {
        return false;
    };
    if !(1..=31).contains(&exponent)
        || params.output_multiplier < 0
        || output.is_empty()
        || params.activation_min > params.activation_max
    {
        return false;
    }
    let (table_a, table_b) = tables.split_at_mut(256);
    // An earlier band built them.
    let built = if prepared { 0 } else { 2 };
    for (input, table) in [table_a, table_b].into_iter().enumerate().take(built) {
        // Entry `x + 128` for byte `x`; `|scaled| < 2^28`, so doubling stays in range.
        for (entry, x) in table.iter_mut().zip(i8::MIN..=i8::MAX) {
            *entry = params.scaled_input(input, x).wrapping_mul(2) as u32;
        }
    }
    let constants = AddConstants {
        table_a: table_a_middle(tables),
        multiplier: params.output_multiplier,
        exponent,
        rounding: 1 << (exponent - 1),
        zero_point: params.output_zero_point,
        min: params.activation_min,
        max: params.activation_max,
    };
    // SAFETY: `a`, `b` and `output` hold `count >= 1` bytes each (checked
    // above); the tables hold 256 words each, entry 128 + x for every int8
    // x, all that the routine reads; the exponent is in 1..=31 and the
    // multiplier non-negative, as `add_scaled` assumes, and min <= max.
    unsafe {
        let routine = if (params.activation_min, params.activation_max) == (-128, 127) {
            add_scaled_int8
        } else {
            add_scaled
        };
        routine(
            a.as_ptr(),
            b.as_ptr(),
            output.as_mut_ptr(),
            count,
            &constants,
        )
    };
    true
}

/// Entry 128 (value 0) of the first of two consecutive 256-word tables.
fn table_a_middle(tables: &[u32]) -> *const u32 {
    tables.as_ptr().wrapping_add(128)
}

/// What [`add_scaled`] reads besides the inputs.
#[repr(C)]
struct AddConstants {
    /// Entry 128 of the first input's table; the second's follows 256 words on.
    table_a: *const u32,
    multiplier: i32,
    exponent: i32,
    rounding: i32,
    zero_point: i32,
    min: i32,
    max: i32,
}

/// [`general::average_pool`] with the DSP extension, for a multiple of 4
/// channels and windows of at most 256 taps: four channels' sums at a time
/// in the halves of two words (`SXTAB16` adds two bytes to two int16 sums;
/// 256 values of at most 128 in magnitude fit), then the portable kernel's
/// rounding division. Other shapes run the portable kernel.
#[inline(never)]
pub fn average_pool(
    input: &[i8],
    geometry: &WindowGeometry,
    activation_min: i32,
    activation_max: i32,
    output: &mut [i8],
) -> Option<Backend> {
    let channels = geometry.input.channels;
    let fits = input.len() == geometry.input.values()
        && output.len() == geometry.output.values()
        && geometry.output.channels == channels
        && geometry.is_consistent();
    if !fits {
        return None;
    }
    let small = geometry.kernel_height * geometry.kernel_width <= 256;
    if !(small && channels.is_multiple_of(4)) {
        return general::average_pool(input, geometry, activation_min, activation_max, output)
            .map(|()| Backend::Portable);
    }
    let shape = geometry.input;
    let width = geometry.output.width.max(1);
    for (pixel, out) in output.chunks_exact_mut(channels).enumerate() {
        let (y, x) = (pixel / width, pixel % width);
        let Span {
            first: top,
            end: bottom,
            input: input_y,
        } = Span::new(
            y,
            geometry.stride_height,
            geometry.pad_top,
            geometry.kernel_height,
            shape.height,
        );
        let Span {
            first,
            end,
            input: input_x,
        } = Span::new(
            x,
            geometry.stride_width,
            geometry.pad_left,
            geometry.kernel_width,
            shape.width,
        );
        let (rows, columns) = (bottom - top, end - first);
        let count = i32::try_from(rows * columns).ok()?;
        if count == 0 {
            return None;
        }
        // Blocks of 64 channels: each window pixel adds its contiguous run of them.
        for (block, out_block) in out.chunks_mut(CHUNK).enumerate() {
            let mut sums = [[0u32; 2]; CHUNK / 4];
            for row in input_y..input_y + rows {
                let start = (row * shape.width + input_x) * channels + block * CHUNK;
                for column in 0..columns {
                    let at = start + column * channels;
                    let values = input.get(at..at + out_block.len())?;
                    for (pair, quad) in sums.iter_mut().zip(values.as_chunks::<4>().0) {
                        let raw = word(quad);
                        *pair = [sxtab16(pair[0], raw), sxtab16_odd(pair[1], raw)];
                    }
                }
            }
            let quads = out_block.as_chunks_mut::<4>().0.iter_mut().zip(&sums);
            for (out_quad, &[even, odd]) in quads {
                let lanes = [even, odd, even >> 16, odd >> 16];
                for (out, lane) in out_quad.iter_mut().zip(lanes) {
                    let sum = i32::from(lane as u16 as i16);
                    *out = general::average_of(sum, count, activation_min, activation_max)?;
                }
            }
        }
    }
    Some(Backend::ArmDsp)
}

/// Two groups of [`widen_into_columns`] and [`widen_rows`]: both words
/// loaded from `$values` back to back (the core pipelines the second load),
/// widened with `$offset` (`$word`, `$next` become the odd pairs, `$even`,
/// `$next_even` the even ones), and stored as single words at `$columns` and
/// 32 bytes on (a cycle each, where `STRD` takes three). The arguments are
/// register names, or operands such as `"{word}"`.
#[rustfmt::skip]
macro_rules! widen_pair {
    ($word:literal, $next:literal, $even:literal, $next_even:literal,
     $values:literal, $offset:literal, $columns:literal) => {
        concat!(
            "ldr ", $word, ", [", $values, "], #4\n",
            "ldr ", $next, ", [", $values, "], #4\n",
            "sxtab16 ", $even, ", ", $offset, ", ", $word, "\n",
            "sxtab16 ", $word, ", ", $offset, ", ", $word, ", ror #8\n",
            "sxtab16 ", $next_even, ", ", $offset, ", ", $next, "\n",
            "sxtab16 ", $next, ", ", $offset, ", ", $next, ", ror #8\n",
            "str ", $word, ", [", $columns, ", #4]\n",
            "str ", $even, ", [", $columns, "], #32\n",
            "str ", $next, ", [", $columns, ", #4]\n",
            "str ", $next_even, ", [", $columns, "], #32",
        )
    };
}

/// One group of [`widen_pair`], the last of a run: the word at `$values`
/// widened into `$even` and `$word`, stored at `$columns` (which moves on 32
/// bytes).
#[rustfmt::skip]
macro_rules! widen_one {
    ($word:literal, $even:literal, $values:literal, $offset:literal, $columns:literal) => {
        concat!(
            "ldr ", $word, ", [", $values, "]\n",
            "sxtab16 ", $even, ", ", $offset, ", ", $word, "\n",
            "sxtab16 ", $word, ", ", $offset, ", ", $word, ", ror #8\n",
            "strd ", $even, ", ", $word, ", [", $columns, "], #32",
        )
    };
}

/// Widens `quads` groups of four int8 values at `values` to int16 pairs with
/// `offset` added (`(x0, x2)` then `(x1, x3)`, the order `SXTB16` gives the
/// weights) into two words at `columns`, the next group's 32 bytes on.
///
/// # Safety
///
/// `values` must be valid for reading `4 * quads` bytes (any alignment) and
/// `columns` for writing two words at each of `quads` places 32 bytes apart;
/// `quads` at least 1.
#[inline(always)]
unsafe fn widen_into_columns(values: *const i8, columns: *mut u32, quads: u32, offset: u32) {
    // SAFETY: the caller guarantees the ranges read and written; the loops
    // touch nothing else, and neither the stack nor the flags it leaves.
    // Four groups per round (two of `widen_pair`), then a pair, then one.
    unsafe {
        asm!(
            "lsrs {rounds}, {quads}, #2",
            "beq 3f",
            "2:",
            ".rept 2",
            widen_pair!("{word}", "{next}", "{even}", "{next_even}", "{values}", "{offset}", "{columns}"),
            ".endr",
            "subs {rounds}, {rounds}, #1",
            "bne 2b",
            "3:",
            "tst {quads}, #2",
            "beq 4f",
            widen_pair!("{word}", "{next}", "{even}", "{next_even}", "{values}", "{offset}", "{columns}"),
            "4:",
            "tst {quads}, #1",
            "beq 5f",
            widen_one!("{word}", "{even}", "{values}", "{offset}", "{columns}"),
            "5:",
            values = inout(reg) values => _,
            columns = inout(reg) columns => _,
            quads = in(reg) quads,
            rounds = out(reg) _,
            offset = in(reg) offset,
            word = out(reg) _,
            next = out(reg) _,
            even = out(reg) _,
            next_even = out(reg) _,
            options(nostack),
        );
    }
}

fn conv_single_channel(
    input: &[i8],
    layer: &ConvLayer<'_>,
    output: &mut [i8],
    words: &mut [u32],
) -> bool {
    let geometry = layer.geometry();
    let filters = geometry.filters;
    let table_words = filters * SINGLE_PAIRS;
    let column_words = SINGLE_PAIRS * POSITIONS;
    if geometry.input.channels != 1
        || geometry.kernel != 3
        || words.len() < table_words + column_words + crate::plan::dsp_padded_words(geometry)
    {
        return false;
    }
    let (table, rest) = words.split_at_mut(table_words);
    let (columns, padded) = rest.split_at_mut(column_words);
    // SAFETY: reinterprets aligned words as twice as many halfwords; every
    // bit pattern is valid for both.
    let (_, padded, _) = unsafe { padded.align_to_mut::<u16>() };
    let pad = geometry.pad;
    let stride = geometry.input.width + 2 * pad;
    let Some(padded) = padded.get_mut(..(geometry.input.height + 2 * pad) * stride) else {
        return false;
    };

    // Widen every filter once: nine taps to five pairs, the last one (w8, 0).
    let taps = layer.filters().chunks_exact(9);
    for (pairs, filter) in table.chunks_exact_mut(SINGLE_PAIRS).zip(taps) {
        let tap = |i: usize| filter.get(i).map_or(0, |&w| i32::from(w as i8));
        for (j, pair) in pairs.iter_mut().enumerate() {
            *pair = pack(tap(2 * j), tap(2 * j + 1));
        }
    }
    // The input with its offset as int16, framed by zeros: the 'same'
    // padding, which contributes nothing, as TFLite skips those taps.
    let requantization = layer.requantization();
    let zero_point = requantization.input_zero_point();
    padded.fill(0);
    let rows = input.chunks_exact(geometry.input.width.max(1));
    for (padded_row, row) in padded.chunks_exact_mut(stride).skip(pad).zip(rows) {
        for (value, &x) in padded_row.iter_mut().skip(pad).zip(row) {
            *value = (i32::from(x) - zero_point) as u16;
        }
    }

    let requantizer = Requantizer::new(requantization, 9);
    let chunk = if geometry.pooled { CHUNK } else { CHUNK_EACH };
    let mut sums = [0i32; CHUNK];
    let (pooled, width) = (geometry.pooled, geometry.output().width.max(1));
    let pixels = geometry.output().height * width;
    let Ok(columns) = <&mut [u32; SINGLE_PAIRS * POSITIONS]>::try_from(columns) else {
        return false;
    };
    for tile in 0..tile_count(geometry) {
        // Pair-major: word `j * 4 + position` holds taps 2j, 2j+1.
        let filled = if pooled {
            fill_single_pooled(padded, stride, tile / width, tile % width, columns)
        } else {
            fill_single_each(padded, stride, width, pixels, tile, columns)
        };
        if !filled {
            return false;
        }
        let chunks = table.chunks(chunk * SINGLE_PAIRS);
        for (index, table_chunk) in chunks.enumerate() {
            let count = table_chunk.len() / SINGLE_PAIRS;
            if count == 0 || count > chunk {
                continue;
            }
            // SAFETY: `columns` holds 20 words and `table_chunk` `count`
            // filters of 5 words, all that the tile routines read; they
            // write `count <= CHUNK` words to `sums` (the pooled one) or four
            // rows of `count <= CHUNK_EACH` words, `CHUNK_EACH` apart (the
            // other); `count >= 1`.
            unsafe {
                let tile_routine = if geometry.pooled {
                    conv_single_tile
                } else {
                    conv_single_tile_each
                };
                tile_routine(
                    columns.as_ptr(),
                    table_chunk.as_ptr(),
                    count as u32,
                    sums.as_mut_ptr(),
                );
            }
            finish_tile(
                geometry,
                &requantizer,
                tile,
                index * chunk,
                count,
                &sums,
                output,
            );
        }
    }
    true
}

/// The five tap pairs of a 3x3 window whose rows are `rows` (three taps
/// each), packed as `SMLAD` operands: `(t0,t1) (t2,t3) (t4,t5) (t6,t7) (t8,0)`.
#[inline(always)]
fn single_pairs(rows: [&[u16; 3]; 3]) -> [u32; SINGLE_PAIRS] {
    let pair = |low: u16, high: u16| u32::from(low) | (u32::from(high) << 16);
    let [[t0, t1, t2], [t3, t4, t5], [t6, t7, t8]] = rows.map(|row| *row);
    [
        pair(t0, t1),
        pair(t2, t3),
        pair(t4, t5),
        pair(t6, t7),
        pair(t8, 0),
    ]
}

/// Fills the columns of pooled tile `(tile_y, tile_x)`: its four windows lie
/// in one 4x4 block of the padded input, read once. False if the block is
/// not inside `padded`.
#[inline(always)]
fn fill_single_pooled(
    padded: &[u16],
    stride: usize,
    tile_y: usize,
    tile_x: usize,
    columns: &mut [u32; SINGLE_PAIRS * POSITIONS],
) -> bool {
    let top = 2 * tile_y * stride + 2 * tile_x;
    let row = |r: usize| {
        let start = top + r * stride;
        padded
            .get(start..start + 4)
            .and_then(|taps| <&[u16; 4]>::try_from(taps).ok())
    };
    let (Some(r0), Some(r1), Some(r2), Some(r3)) = (row(0), row(1), row(2), row(3)) else {
        return false;
    };
    let left = |r: &[u16; 4]| [r[0], r[1], r[2]];
    let right = |r: &[u16; 4]| [r[1], r[2], r[3]];
    // Positions in `tile_position`'s order: (0,0), (0,1), (1,0), (1,1).
    let windows = [
        [left(r0), left(r1), left(r2)],
        [right(r0), right(r1), right(r2)],
        [left(r1), left(r2), left(r3)],
        [right(r1), right(r2), right(r3)],
    ];
    for (position, [a, b, c]) in windows.iter().enumerate() {
        put_pairs(columns, position, single_pairs([a, b, c]));
    }
    true
}

/// Fills the columns of a tile of four consecutive output pixels (zeros
/// past the last pixel). False if a window is not inside `padded`.
#[inline(always)]
fn fill_single_each(
    padded: &[u16],
    stride: usize,
    width: usize,
    pixels: usize,
    tile: usize,
    columns: &mut [u32; SINGLE_PAIRS * POSITIONS],
) -> bool {
    for position in 0..POSITIONS {
        let pairs = match tile_position(false, width, pixels, tile, position) {
            Some((y, x)) => {
                let top = y * stride + x;
                let row = |r: usize| {
                    let start = top + r * stride;
                    padded
                        .get(start..start + 3)
                        .and_then(|taps| <&[u16; 3]>::try_from(taps).ok())
                };
                let (Some(a), Some(b), Some(c)) = (row(0), row(1), row(2)) else {
                    return false;
                };
                single_pairs([a, b, c])
            }
            None => [0; SINGLE_PAIRS],
        };
        put_pairs(columns, position, pairs);
    }
    true
}

/// Writes one position's five pairs into the pair-major columns: pair `j`
/// at word `j * POSITIONS + position`.
#[inline(always)]
fn put_pairs(
    columns: &mut [u32; SINGLE_PAIRS * POSITIONS],
    position: usize,
    pairs: [u32; SINGLE_PAIRS],
) {
    for (slots, pair) in columns.chunks_exact_mut(POSITIONS).zip(pairs) {
        if let Some(slot) = slots.get_mut(position) {
            *slot = pair;
        }
    }
}

fn dense_rows(
    flat: &[i8],
    rows: &[u8],
    inputs: usize,
    requantization: &Requantization<'_>,
    output: &mut [i8],
    work: &mut [i8],
) -> bool {
    let groups = inputs / 4;
    let (Ok(group_count), Ok(stride)) = (u32::try_from(groups), u32::try_from(inputs)) else {
        return false;
    };
    if inputs == 0
        || !inputs.is_multiple_of(4)
        || flat.len() != inputs
        || rows.len() != inputs * output.len()
    {
        return false;
    }
    let input = DenseInput::new(flat, requantization.input_zero_point(), work);
    let requantizer = Requantizer::new(requantization, inputs);
    let quads = output.chunks_mut(4).zip(rows.chunks(4 * inputs));
    for (index, (out_quad, row_quad)) in quads.enumerate() {
        let mut sums = [0i32; 4];
        if out_quad.len() == 4 {
            let (first, second) = row_quad.split_at(2 * inputs);
            // SAFETY: four whole rows of `inputs` bytes: `first` holds rows 0
            // and 1 (`p`, `p + stride`), `second` rows 2 and 3; the input holds
            // `groups` pairs of words or groups of four bytes; the routine reads
            // exactly these and writes four words to `sums`. `groups >= 1`.
            unsafe {
                input.quad(
                    first.as_ptr(),
                    second.as_ptr(),
                    stride,
                    group_count,
                    &mut sums,
                );
            }
            requantizer.finish(4 * index, &sums, out_quad);
        } else {
            // The last one to three rows in one call, overlapping: rows (0, 1, 0, 1) for two,
            // (0, 1, 1, 2) for three, and a stride of 0 makes the four "rows" one for one.
            let count = out_quad.len();
            let stride_rows = if count == 1 { 0 } else { inputs };
            let second = if count == 3 { inputs } else { 0 };
            let (Some(first_row), Some(second_row), Ok(stride_rows)) = (
                row_quad.get(..inputs),
                row_quad.get(second..second + inputs),
                u32::try_from(stride_rows),
            ) else {
                return false;
            };
            if row_quad.len() < count * inputs {
                return false;
            }
            // SAFETY: the routine reads `inputs` bytes from `first_row` and from
            // `first_row + stride_rows`, and from `second_row` and `second_row +
            // stride_rows`: rows 0 and 1 (or 0 twice), rows 0/1 and 1/2, all inside
            // `row_quad`'s `count` rows (checked above); the input holds `groups`
            // pairs of words or groups of four bytes; it writes four words to
            // `sums`. `groups >= 1`.
            unsafe {
                input.quad(
                    first_row.as_ptr(),
                    second_row.as_ptr(),
                    stride_rows,
                    group_count,
                    &mut sums,
                );
            }
            let [a, b, _, d] = sums;
            let picked = if count == 3 { [a, b, d, 0] } else { sums };
            requantizer.finish(4 * index, picked.get(..count).unwrap_or(&[]), out_quad);
        }
    }
    true
}

/// A dense layer's input as its four-row routines read it.
#[derive(Clone, Copy)]
enum DenseInput<'a> {
    /// Widened once, with its offset, to `(x0,x2),(x1,x3)` pairs.
    Widened(&'a [u32]),
    /// As it lies, widened as it is read; `offset` is the input offset in
    /// both halves.
    Narrow { flat: &'a [i8], offset: u32 },
}

impl<'a> DenseInput<'a> {
    /// `flat` (whose zero point is `zero_point`) widened with its offset into `work` where
    /// that holds its `inputs / 2` words, else as it lies.
    fn new(flat: &'a [i8], zero_point: i32, work: &'a mut [i8]) -> Self {
        let offset = halves(-zero_point);
        match aligned_words(work).get_mut(..flat.len() / 2) {
            Some(vector) => {
                for (pair, quad) in vector
                    .as_chunks_mut::<2>()
                    .0
                    .iter_mut()
                    .zip(flat.as_chunks::<4>().0)
                {
                    let raw = word(quad);
                    *pair = [sxtab16(offset, raw), sxtab16_odd(offset, raw)];
                }
                DenseInput::Widened(vector)
            }
            None => DenseInput::Narrow { flat, offset },
        }
    }

    /// `sums[i]` = row `i` . input, rows 0 and 1 at `rows01` and `rows01 +
    /// stride`, rows 2 and 3 at `rows23` and `rows23 + stride`.
    ///
    /// # Safety
    ///
    /// The input must hold `groups` groups of four inputs (`2 x groups`
    /// widened words, `4 x groups` bytes as it lies), the four rows `4 x
    /// groups` bytes each; `groups` at least 1.
    unsafe fn quad(
        &self,
        rows01: *const u8,
        rows23: *const u8,
        stride: u32,
        groups: u32,
        sums: &mut [i32; 4],
    ) {
        match *self {
            // SAFETY: the caller's conditions are the routines'; `sums` is
            // four words.
            DenseInput::Widened(vector) => unsafe {
                dense_quad(
                    vector.as_ptr(),
                    rows01,
                    rows23,
                    stride,
                    groups,
                    sums.as_mut_ptr(),
                );
            },
            // SAFETY: as above.
            DenseInput::Narrow { flat, offset } => unsafe {
                dense_quad_narrow(
                    flat.as_ptr(),
                    rows01,
                    rows23,
                    stride,
                    groups,
                    sums.as_mut_ptr(),
                    offset,
                );
            },
        }
    }
}

/// One output of [`requantize_clamped`] for any zero point (r7).
macro_rules! requantize_any {
    () => {
        concat!(
            requantize_scaled!(),
            "add r9, r9, r7\n",
            "ssat r9, #8, r9\n",
            "cmp r9, r7\n",
            "it lt\n",
            "movlt r9, r7\n",
            "strb r9, [r1], #1",
        )
    };
}

/// One output of [`requantize_clamped`] for zero point -128.
macro_rules! requantize_low {
    () => {
        concat!(
            requantize_scaled!(),
            "usat r9, #8, r9\n",
            "eor r9, r9, #128\n",
            "strb r9, [r1], #1",
        )
    };
}

/// Moves the constants' pointers (r4 biases, r5 multipliers, r6 shifts) to
/// channel `first`, the fifth argument (above the nine saved registers);
/// uses r10.
macro_rules! from_channel {
    () => {
        concat!(
            "ldr r10, [sp, #36]\n",
            "add r4, r4, r10, lsl #2\n",
            "add r5, r5, r10, lsl #2\n",
            "add r6, r6, r10",
        )
    };
}

/// The scaled value in r9 plus the zero point (r7), clamped to `[r3, lr]`,
/// stored.
macro_rules! requantize_bounds {
    () => {
        concat!(
            "add r9, r9, r7\n",
            "cmp r9, r3\n",
            "it lt\n",
            "movlt r9, r3\n",
            "cmp r9, lr\n",
            "it gt\n",
            "movgt r9, lr\n",
            "strb r9, [r1], #1",
        )
    };
}

/// The accumulator plus its bias, scaled by the channel's multiplier and
/// shift with TFLite's rounding (see [`Requantizer`]), into r9.
macro_rules! requantize_scaled {
    () => {
        concat!(
            "ldr r9, [r0], #4\n",
            "ldr r10, [r4], #4\n",
            "add r9, r9, r10\n",
            "lsl r9, r9, #1\n",
            "ldr r10, [r5], #4\n",
            "ldrsb r11, [r6], #1\n",
            "rsb r11, r11, #0\n",
            "ldr r12, [r8, r11, lsl #2]\n",
            "smmlar r9, r9, r10, r12\n",
            "asr r9, r9, r11\n",
        )
    };
}

/// Requantises `count` accumulators of the channels from `first` on (see
/// [`Requantizer`] for the shortcut it takes) into `outputs`, clamped to
/// `[zero_point, 127]`.
///
/// Registers: r0 accumulators, r1 outputs, r2 count, r3 then r4 biases, r5
/// multipliers, r6 shifts, r7 zero point, r8 rounding table, r9-r12 scratch.
///
/// # Safety
///
/// `accumulators` must be valid for reading `count` words, `outputs` for
/// writing `count` bytes, the constants' pointers for entries `first..first +
/// count` (biases and multipliers in any alignment); every shift in -31..=0, every
/// multiplier non-negative, every `|accumulator + bias| < 2^30`; `count` at
/// least 1.
#[unsafe(naked)]
unsafe extern "C" fn requantize_clamped(
    accumulators: *const i32,
    outputs: *mut i8,
    count: u32,
    constants: *const Constants,
    first: u32,
) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "ldm r3, {{r4-r8}}",
        from_channel!(),
        // Two outputs per round (r3 counts rounds), then the odd one.
        "lsrs r3, r2, #1",
        // Zero point -128 (every ReLU output of a TFLite-quantised
        // network): clamping to [0, 255] and flipping the top bit is
        // adding it and clamping to [-128, 127].
        "cmn r7, #128",
        "beq 4f",
        "cbz r3, 3f",
        "2:",
        requantize_any!(),
        requantize_any!(),
        "subs r3, r3, #1",
        "bne 2b",
        "3:",
        "tst r2, #1",
        "beq 6f",
        requantize_any!(),
        "pop {{r4-r11, pc}}",
        "4:",
        "cbz r3, 5f",
        "7:",
        requantize_low!(),
        requantize_low!(),
        "subs r3, r3, #1",
        "bne 7b",
        "5:",
        "tst r2, #1",
        "beq 6f",
        requantize_low!(),
        "6:",
        "pop {{r4-r11, pc}}",
    )
}

/// Requantises `count` accumulators of the channels from `first` on into
/// `outputs`, clamped to `[min, max]` (see [`Constants`]).
///
/// With `exact` zero it takes [`requantize_clamped`]'s shortcut, which the
/// caller may use only when `min` is the output zero point. With `exact`
/// set it rounds as TFLite does for any sign: `SMMULR(2x, m)` is exactly
/// gemmlowp's `SaturatingRoundingDoublingHighMul(x, m)` for `|x| < 2^30`
/// (its nudge toward zero for negative products and its truncating division
/// together floor `(x * m + 2^30) / 2^31`, as `SMMULR` does), and for a right
/// shift `e >= 1`, `RoundingDivideByPOT(v, e)` (half away from zero) is `(v +
/// 2^(e-1) - (v < 0)) >> e`.
///
/// Registers: r0 accumulators, r1 outputs, r2 count, r3 minimum, r4 biases,
/// r5 multipliers, r6 shifts, r7 zero point, r8 rounding table, lr maximum,
/// r9-r12 scratch.
///
/// # Safety
///
/// As [`requantize_clamped`], with `min <= max`, both in the int8 range, and
/// for `exact` every shift in -31..=-1.
#[unsafe(naked)]
unsafe extern "C" fn requantize_bounded(
    accumulators: *const i32,
    outputs: *mut i8,
    count: u32,
    constants: *const Constants,
    first: u32,
) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "ldr r9, [r3, #28]",
        "ldr lr, [r3, #24]",
        "ldr r12, [r3, #20]",
        "ldm r3, {{r4-r8}}",
        from_channel!(),
        "mov r3, r12",
        "cmp r9, #0",
        "bne 5f",
        "2:",
        requantize_scaled!(),
        requantize_bounds!(),
        "subs r2, r2, #1",
        "bne 2b",
        "pop {{r4-r11, pc}}",
        "5:",
        "ldr r9, [r0], #4",
        "ldr r10, [r4], #4",
        "add r9, r9, r10",
        "lsl r9, r9, #1",
        "ldr r10, [r5], #4",
        "ldrsb r11, [r6], #1",
        "rsb r11, r11, #0",
        "ldr r12, [r8, r11, lsl #2]",
        "smmulr r9, r9, r10",
        "add r9, r9, r9, asr #31",
        "add r9, r9, r12",
        "asr r9, r9, r11",
        requantize_bounds!(),
        "subs r2, r2, #1",
        "bne 5b",
        "pop {{r4-r11, pc}}",
    )
}

/// The nine taps of [`depthwise_pixel`]: r4-r7 start from the table's four
/// values and gain each tap's products.
macro_rules! depthwise_taps {
    () => {
        concat!(
            "ldm r1!, {{r4-r7}}\n",
            "mov r12, r0\n",
            ".rept 9\n",
            "ldr r8, [r12], #4\n",
            "ldr r10, [r1], #4\n",
            "ldr r11, [r1], #4\n",
            "ldr r8, [r8, lr]\n",
            "sxtb16 r9, r8, ror #8\n",
            "sxtb16 r8, r8\n",
            "smlabb r4, r8, r10, r4\n",
            "smlatt r6, r8, r10, r6\n",
            "smlabb r5, r9, r11, r5\n",
            "smlatt r7, r9, r11, r7\n",
            ".endr",
        )
    };
}

/// One output pixel of a 3x3 depthwise convolution, `quads` groups of four
/// channels from byte `first` of each tap: `sums[c]` = the table's starting
/// value + the nine taps' `x * w` (see [`depthwise`]).
///
/// Registers: r0 the taps' addresses, r12 walking them, r1 table (advancing),
/// r2 quads left, r3 `sums` (advancing), r4-r7 accumulators, r8/r9 values,
/// r10/r11 weight pairs, lr the channel's byte offset.
///
/// # Safety
///
/// `taps` must hold nine addresses, each valid for reading `first + 4 *
/// quads` bytes (any alignment); `table` valid for reading `quads *
/// DEPTHWISE_QUAD_WORDS` words, `sums` for writing `4 * quads` words;
/// `quads` at least 1.
#[unsafe(naked)]
unsafe extern "C" fn depthwise_pixel(
    taps: *const *const i8,
    table: *const u32,
    quads: u32,
    sums: *mut i32,
    first: u32,
) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "ldr lr, [sp, #36]",
        "2:",
        depthwise_taps!(),
        "stm r3!, {{r4-r7}}",
        // Past the quad's requantisation constants.
        "add r1, r1, #20",
        "add lr, lr, #4",
        "subs r2, r2, #1",
        "bne 2b",
        "pop {{r4-r11, pc}}",
    )
}

/// One channel of [`depthwise_pixel_fused`]: the sum in `$sum`, the
/// channel's multiplier in `$multiplier` and its `e - 1` in r12's low byte;
/// leaves the output plus 128 (0..=255) in `$sum`.
macro_rules! depthwise_requantize {
    ($sum:literal, $multiplier:literal) => {
        concat!(
            "lsl ",
            $sum,
            ", ",
            $sum,
            ", #1\n",
            "smmulr ",
            $sum,
            ", ",
            $sum,
            ", ",
            $multiplier,
            "\n",
            "asr ",
            $sum,
            ", ",
            $sum,
            ", r12\n",
            "add ",
            $sum,
            ", ",
            $sum,
            ", #1\n",
            "usat ",
            $sum,
            ", #8, ",
            $sum,
            ", asr #1\n",
        )
    };
}

/// The four channels of a quad requantised and written as one word: the
/// table's four multipliers and packed shifts in r8-r12, each channel's shift
/// brought to r12's low byte in turn; the four bytes packed, their top bits
/// flipped at once (0..=255 to -128..=127).
macro_rules! depthwise_requantize_quad {
    () => {
        concat!(
            "ldm r1!, {{r8-r12}}\n",
            depthwise_requantize!("r4", "r8"),
            "lsr r12, r12, #8\n",
            depthwise_requantize!("r5", "r9"),
            "lsr r12, r12, #8\n",
            depthwise_requantize!("r6", "r10"),
            "lsr r12, r12, #8\n",
            depthwise_requantize!("r7", "r11"),
            "orr r4, r4, r5, lsl #8\n",
            "orr r6, r6, r7, lsl #8\n",
            "orr r4, r4, r6, lsl #16\n",
            "eor r4, r4, #0x80808080\n",
            "str r4, [r3], #4\n",
        )
    };
}

/// The same pixel requantised in place, for outputs clamped at zero point
/// -128 with maximum 127 and right shifts `e` of at least 1: the table's
/// starting values include the biases, and each quad's entry ends with each
/// channel's multiplier and a word of the four `e - 1`, a byte each; `(v >> (e - 1)) + 1) >> 1` rounds as
/// `SMMLAR` does in [`requantize_clamped`]. Writes `4 * quads` bytes to
/// `out`.
///
/// # Safety
///
/// As [`depthwise_pixel`], with `out` valid for writing `4 * quads` bytes.
#[unsafe(naked)]
unsafe extern "C" fn depthwise_pixel_fused(
    taps: *const *const i8,
    table: *const u32,
    quads: u32,
    out: *mut i8,
    first: u32,
) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "ldr lr, [sp, #36]",
        "2:",
        depthwise_taps!(),
        depthwise_requantize_quad!(),
        "add lr, lr, #4",
        "subs r2, r2, #1",
        "bne 2b",
        "pop {{r4-r11, pc}}",
    )
}

/// One element of [`add_scaled`]: both inputs' scaled values from their
/// tables, added, requantised, the zero point added, clamped by `$clamp`,
/// stored.
macro_rules! add_element {
    ($clamp:ident) => {
        concat!(
            "ldrsb r12, [r0], #1\n",
            "ldrsb lr, [r1], #1\n",
            "ldr r12, [r4, r12, lsl #2]\n",
            "ldr lr, [r5, lr, lsl #2]\n",
            "add r12, r12, lr\n",
            "smmulr r12, r12, r6\n",
            "add r12, r12, r12, asr #31\n",
            "add r12, r12, r8\n",
            "asr r12, r12, r7\n",
            "add r12, r12, r9\n",
            add_clamp!($clamp),
            "\nstrb r12, [r2], #1\n",
        )
    };
}

/// The clamp of [`add_element`]: to the activation's minimum and maximum
/// (r10, r11), or, where they are int8's own, one `SSAT`.
macro_rules! add_clamp {
    (bounds) => {
        "cmp r12, r10\nit lt\nmovlt r12, r10\ncmp r12, r11\nit gt\nmovgt r12, r11"
    };
    (int8) => {
        "ssat r12, #8, r12"
    };
}

/// `count` sums of two int8 inputs through their tables, requantised with
/// the output's multiplier and right shift (the exact rounding of
/// [`requantize_bounded`]), plus the zero point, clamped (see [`add`]):
/// four elements a round, then the rest one at a time.
///
/// Registers: r0/r1 inputs, r2 outputs, r3 rounds (then the rest), r4/r5 the
/// tables' middles, r6 multiplier, r7 exponent, r8 rounding, r9 zero point,
/// r10 minimum, r11 maximum, r12/lr scratch; the stack holds the rest.
macro_rules! add_routine {
    ($(#[$attribute:meta])* $name:ident, clamp $clamp:ident) => {
        $(#[$attribute])*
        ///
        /// # Safety
        ///
        /// `a`, `b` valid for reading and `out` for writing `count` bytes;
        /// `constants` as [`AddConstants`] describes, with two tables of 256
        /// words from 128 words before `table_a`; exponent in 1..=31,
        /// multiplier >= 0, min <= max; `count` at least 1.
        #[unsafe(naked)]
        unsafe extern "C" fn $name(
            a: *const i8,
            b: *const i8,
            out: *mut i8,
            count: u32,
            constants: *const AddConstants,
        ) {
            naked_asm!(
                naked_prelude!(),
                "push {{r4-r11, lr}}",
                "ldr lr, [sp, #36]",
                "ldm lr, {{r4, r6-r11}}",
                "add r5, r4, #1024",
                "and lr, r3, #3",
                "lsrs r3, r3, #2",
                "push {{lr}}",
                "beq 4f",
                "2:",
                ".rept 4",
                add_element!($clamp),
                ".endr",
                "subs r3, r3, #1",
                "bne 2b",
                "4:",
                "pop {{r3}}",
                "cbz r3, 6f",
                "5:",
                add_element!($clamp),
                "subs r3, r3, #1",
                "bne 5b",
                "6:",
                "pop {{r4-r11, pc}}",
            )
        }
    };
}

add_routine!(
    /// The addition clamped to any activation range.
    add_scaled,
    clamp bounds
);

add_routine!(
    /// [`add_scaled`] for the range -128..=127 (no activation, or a ReLU
    /// whose output zero point is -128).
    add_scaled_int8,
    clamp int8
);

/// [`widen_into_columns`] for `rows` runs of `quads` groups, `row_len` bytes
/// apart in the input, into consecutive groups: a position's window from a
/// band of input rows, in one call. Each run goes a pair of groups at a
/// time, as in [`widen_into_columns`], then one.
///
/// Registers: r0 rows (advancing by `row_len`), r1 slots (advancing), r2
/// rows left, r3 quads, r4 `row_len`, r5 offset, r6 walking a row, r7 pairs
/// left, r8/r9 four values each, r12/lr the even pairs.
///
/// # Safety
///
/// `values` must be valid for reading `quads` words (any alignment) from each
/// of `values + k * row_len`, `k < rows`; `slots` for writing two words at each
/// of `rows * quads` places 32 bytes apart; `rows` and `quads` at least 1.
#[unsafe(naked)]
unsafe extern "C" fn widen_rows(
    values: *const i8,
    slots: *mut u32,
    rows: u32,
    quads: u32,
    row_len: u32,
    offset: u32,
) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r9, lr}}",
        "ldr r4, [sp, #28]",
        "ldr r5, [sp, #32]",
        "2:",
        "mov r6, r0",
        "lsrs r7, r3, #1",
        "beq 4f",
        "3:",
        widen_pair!("r8", "r9", "r12", "lr", "r6", "r5", "r1"),
        "subs r7, r7, #1",
        "bne 3b",
        "4:",
        "tst r3, #1",
        "beq 5f",
        widen_one!("r8", "r12", "r6", "r5", "r1"),
        "5:",
        "add r0, r0, r4",
        "subs r2, r2, #1",
        "bne 2b",
        "pop {{r4-r9, pc}}",
    )
}

/// One tap of [`depthwise_inner_run_fused`]: four channels' values at
/// `$address`, widened, times the tap's weight pairs from the table.
macro_rules! depthwise_inner_tap {
    ($address:literal) => {
        concat!(
            "ldr r10, [r1], #4\n",
            "ldr r11, [r1], #4\n",
            "ldr r8, ",
            $address,
            "\n",
            "sxtb16 r9, r8, ror #8\n",
            "sxtb16 r8, r8\n",
            "smlabb r4, r8, r10, r4\n",
            "smlatt r6, r8, r10, r6\n",
            "smlabb r5, r9, r11, r5\n",
            "smlatt r7, r9, r11, r7\n",
        )
    };
}

/// [`depthwise_pixel_fused`] for `pixels` windows inside the map along an output row: the
/// taps are found from each window's top-left pixel (`corner`, then `corner_step` bytes on
/// for each next pixel), `channels` and `row_bytes` (register offsets, no list of addresses
/// to load, which saves a load per tap), and the outputs follow each other from `out`.
///
/// Registers: r0 the corner at the quad's channels (advancing), r12 a kernel row, lr
/// `channels`, r1 table, r2 quads left, r3 `out` (advancing), r4-r7 accumulators, r8-r11 as
/// in [`depthwise_pixel`]. On the stack: the pixel's corner, the table and `quads` (12 bytes
/// reserved), then the saved registers and the arguments `channels`, `row_bytes`, `pixels`
/// (counted down in place: the caller gave up its argument area) and `corner_step`.
///
/// # Safety
///
/// For each pixel `p < pixels`, `corner + p * corner_step + ky * row_bytes + kx * channels`
/// for `ky, kx < 3` must be valid for reading `4 * quads` bytes; `out` valid for writing
/// `pixels * 4 * quads` bytes; the table as [`depthwise_pixel_fused`]; `quads` and `pixels`
/// at least 1.
#[unsafe(naked)]
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn depthwise_inner_run_fused(
    corner: *const i8,
    table: *const u32,
    quads: u32,
    out: *mut i8,
    channels: u32,
    row_bytes: u32,
    pixels: u32,
    corner_step: u32,
) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "sub sp, sp, #12",
        "strd r0, r1, [sp]",
        "str r2, [sp, #8]",
        "ldr lr, [sp, #48]",
        "2:",
        "ldm r1!, {{r4-r7}}",
        "mov r12, r0",
        depthwise_inner_tap!("[r12]"),
        depthwise_inner_tap!("[r12, lr]"),
        depthwise_inner_tap!("[r12, lr, lsl #1]"),
        "ldr r8, [sp, #52]",
        "add r12, r12, r8",
        depthwise_inner_tap!("[r12]"),
        depthwise_inner_tap!("[r12, lr]"),
        depthwise_inner_tap!("[r12, lr, lsl #1]"),
        "ldr r8, [sp, #52]",
        "add r12, r12, r8",
        depthwise_inner_tap!("[r12]"),
        depthwise_inner_tap!("[r12, lr]"),
        depthwise_inner_tap!("[r12, lr, lsl #1]"),
        depthwise_requantize_quad!(),
        "add r0, r0, #4",
        "subs r2, r2, #1",
        "bne 2b",
        // The next pixel: its corner, the table and the quads again.
        "ldr r8, [sp, #56]",
        "subs r8, r8, #1",
        "beq 3f",
        "str r8, [sp, #56]",
        "ldrd r0, r1, [sp]",
        "ldr r8, [sp, #60]",
        "add r0, r0, r8",
        "str r0, [sp]",
        "ldr r2, [sp, #8]",
        "b 2b",
        "3:",
        "add sp, sp, #12",
        "pop {{r4-r11, pc}}",
    )
}

/// Copies `blocks` blocks of 32 bytes from `source` to `target`.
///
/// # Safety
///
/// Both must be word-aligned and valid for `32 * blocks` bytes, and not
/// overlap; `blocks` at least 1.
#[unsafe(naked)]
unsafe extern "C" fn copy_blocks(target: *mut i8, source: *const i8, blocks: u32) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r10}}",
        "2:",
        "ldm r1!, {{r3-r10}}",
        "stm r0!, {{r3-r10}}",
        "subs r2, r2, #1",
        "bne 2b",
        "pop {{r4-r10}}",
        "bx lr",
    )
}

/// The products of one group of four inputs: the four weights in `$word`
/// widened to two pairs (r3, r4), times the four positions' values (two
/// `LDM`s) into r9-r12.
macro_rules! group_products {
    ($word:literal) => {
        concat!(
            "sxtb16 r3, ",
            $word,
            "\n",
            "sxtb16 r4, ",
            $word,
            ", ror #8\n",
            "ldm r0!, {{r5-r8}}\n",
            "smlad r9, r3, r5, r9\n",
            "smlad r9, r4, r6, r9\n",
            "smlad r10, r3, r7, r10\n",
            "smlad r10, r4, r8, r10\n",
            "ldm r0!, {{r5-r8}}\n",
            "smlad r11, r3, r5, r11\n",
            "smlad r11, r4, r6, r11\n",
            "smlad r12, r3, r7, r12\n",
            "smlad r12, r4, r8, r12\n",
        )
    };
}

/// One group of four inputs in [`conv_tile`]: its weights' word loaded,
/// then [`group_products`].
macro_rules! conv_group {
    () => {
        concat!("ldr r4, [r1], #4\n", group_products!("r4"))
    };
}

/// Two groups of [`conv_group`], their eight weights read by two loads in a
/// row, which the core pipelines (three cycles instead of four; not `LDRD`,
/// which faults on the weights' unaligned words): the second group's word
/// waits in lr, which the unrolled loop of [`tile_routine`] gives up for it.
macro_rules! conv_group_pair {
    () => {
        concat!(
            "ldr lr, [r1, #4]\n",
            "ldr r4, [r1], #8\n",
            group_products!("r4"),
            group_products!("lr"),
        )
    };
}

/// One group of four inputs in [`dense_quad`]: the input pairs once, then
/// each row's four weights widened and multiplied into r9-r12.
macro_rules! dense_group {
    () => {
        concat!("ldrd r5, r6, [r0], #8\n", dense_group_body!())
    };
}

/// Four rows' products with one group of four inputs, widened to pairs in
/// r5/r6: [`dense_quad`]'s inner loop after the input's load.
macro_rules! dense_group_body {
    () => {
        concat!(
            "ldr r7, [r1, r3]\n",
            "sxtb16 r8, r7\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad r10, r8, r5, r10\n",
            "smlad r10, r7, r6, r10\n",
            "ldr r7, [r1], #4\n",
            "sxtb16 r8, r7\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad r9, r8, r5, r9\n",
            "smlad r9, r7, r6, r9\n",
            "ldr r7, [r2, r3]\n",
            "sxtb16 r8, r7\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad r12, r8, r5, r12\n",
            "smlad r12, r7, r6, r12\n",
            "ldr r7, [r2], #4\n",
            "sxtb16 r8, r7\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad r11, r8, r5, r11\n",
            "smlad r11, r7, r6, r11",
        )
    };
}

/// [`dense_group`] with the input as it lies: its four bytes widened with
/// the offset (r4) as they are read.
macro_rules! dense_group_narrow {
    () => {
        concat!(
            "ldr r6, [r0], #4\n",
            "sxtab16 r5, r4, r6\n",
            "sxtab16 r6, r4, r6, ror #8\n",
            dense_group_body!(),
        )
    };
}

/// Accumulators of `channels` output channels at four positions, combined
/// by `$finish`: for the pooled routine the maximum of the four into
/// `out[channel]`, for the other the four into `out[p * CHUNK_EACH + channel]`,
/// for the fused ones requantised into the four pixels' outputs.
///
/// Registers: r0 columns (advancing), r1 weights (advancing across channels),
/// r2 loop counter, r3/r4 weight pairs, r5-r8 columns, r9-r12 accumulators,
/// lr `out` (in the fused tiles' unrolled loop the second weight word of a
/// pair, `out` kept meanwhile in its argument's slot above the saved
/// registers); the stack holds four zeros, the column start, the counts and the channels
/// left. The group loop is unrolled `$unroll` times (`$shift` is its log2;
/// unrolled 16 times a 3x3 kernel over 64 channels runs 9 rounds per channel,
/// over 128 channels 18), with a one-group loop for the rest (`remainder
/// yes`; none where the unrolling divides the groups, `remainder no`). The
/// accumulators start from `start`: zeros, or each channel's bias
/// ([`tile_start`]).
macro_rules! tile_routine {
    ($(#[$attribute:meta])* $name:ident, unroll $unroll:literal, shift $shift:literal,
     remainder $remainder:ident, start $start:ident, finish $finish:ident, out $out:ty) => {
        $(#[$attribute])*
        ///
        /// # Safety
        ///
        /// `columns` must be valid for reading `groups * 8` words, `filters`
        /// for `channels * groups * 4` bytes (any alignment), `out` for
        /// writing what the routine stores (see above), `channels` at most
        /// `CHUNK` (pooled) or `CHUNK_EACH` unless it requantises in place
        /// (then `out` a [`FusedOutput`] for `channels` channels);
        /// `groups` and `channels` at least 1. A routine without remainder
        /// groups leaves out the groups past a multiple of its unrolling
        /// (wrong outputs, nothing worse).
        #[unsafe(naked)]
        unsafe extern "C" fn $name(
            columns: *const u32,
            filters: *const u8,
            groups: u32,
            channels: u32,
            out: $out,
        ) {
            naked_asm!(
                naked_prelude!(),
                "push {{r4-r11, lr}}",
                // The fifth argument sits above the nine saved registers.
                "ldr lr, [sp, #36]",
                tile_start!($start, first),
                // Stack: [sp..sp+16] four zeros (one `LDM` clears the
                // accumulators), [sp+16] columns, [sp+20] groups / unroll,
                // [sp+24] channels left, [sp+28] groups % unroll.
                concat!("and r4, r2, #", $unroll, " - 1"),
                concat!("lsrs r2, r2, #", $shift),
                "push {{r0, r2, r3, r4}}",
                tile_start!($start, zeros),
                // Fewer groups than one unrolled round: its own loop.
                "beq 7f",
                "2:",
                "ldr r0, [sp, #16]",
                tile_start!($start, each),
                "ldr r2, [sp, #20]",
                "3:",
                unrolled_round!($start, $unroll),
                "subs r2, r2, #1",
                "bne 3b",
                after_round!($start),
                remainder_groups!($remainder),
                "6:",
                $finish!(),
                channels_left!($start),
                tile_start!($start, next "2b"),
                "b 9f",
                // Every channel's groups in the one-group loop (at least one).
                "7:",
                "ldr r0, [sp, #16]",
                tile_start!($start, each),
                "ldr r2, [sp, #28]",
                "8:",
                conv_group!(),
                "subs r2, r2, #1",
                "bne 8b",
                $finish!(),
                channels_left!($start),
                tile_start!($start, next "7b"),
                "9:",
                "add sp, #32",
                "pop {{r4-r11, pc}}",
            )
        }
    };
}

/// How [`tile_routine`]'s accumulators start, and the loop on to the next
/// channel (the flags of its counter set): from zeros, which the loop's head
/// loads for every channel; or from the channel's bias, the first channel's
/// loaded before the loop and each next one's by the channel before (r6 the
/// address of its bias, [`fused_constants`]), after the check that one is
/// left.
macro_rules! tile_start {
    (zeros, first) => {
        ""
    };
    (zeros, zeros) => {
        "mov.w r5, #0\nmov.w r6, #0\nmov.w r7, #0\nmov.w r8, #0\npush {{r5-r8}}"
    };
    // The same stack, the zeros unused.
    (bias, zeros) => {
        "sub sp, #16"
    };
    (zeros, each) => {
        "ldm sp, {{r9-r12}}"
    };
    (zeros, next $label:literal) => {
        concat!("bne ", $label)
    };
    (bias, first) => {
        "ldr r9, [lr, #32]\nldr r9, [r9]\nmov r10, r9\nmov r11, r9\nmov r12, r9"
    };
    (bias, each) => {
        ""
    };
    (bias, next $label:literal) => {
        concat!(
            "beq 9f\n",
            "ldr r9, [r6, #4]\nmov r10, r9\nmov r11, r9\nmov r12, r9\n",
            "b ",
            $label
        )
    };
}

/// The groups past the last whole unrolled round, one at a time (`yes`), or
/// none: a routine for group counts that are a multiple of its unrolling
/// (`no`) saves each channel the check.
macro_rules! remainder_groups {
    (yes) => {
        concat!(
            "ldr r2, [sp, #28]\n",
            "cbz r2, 6f\n",
            "5:\n",
            conv_group!(),
            "\nsubs r2, r2, #1\n",
            "bne 5b"
        )
    };
    (no) => {
        ""
    };
}

/// The count of channels left, its flags for the loop on: on the stack for
/// the tiles that start from zeros (pooled and per-position); the tiles that
/// start from the bias, the fused ones, set the flags in their finish from the
/// channel's distance to the end ([`fused_constants`]).
macro_rules! channels_left {
    (zeros) => {
        "ldr r2, [sp, #24]\nsubs r2, r2, #1\nstr r2, [sp, #24]"
    };
    (bias) => {
        ""
    };
}

/// One unrolled round of groups: for the fused tiles (`bias`) in pairs
/// ([`conv_group_pair`], lr given up to them); for the pooled and
/// per-position tiles (`zeros`), whose lr is an output pointer that advances
/// each channel (reloading and storing it would cost two instructions a
/// channel in place of the pairs' saved cycles), one group at a time.
macro_rules! unrolled_round {
    (zeros, $unroll:literal) => {
        concat!(".rept ", $unroll, "\n", conv_group!(), "\n.endr")
    };
    (bias, $unroll:literal) => {
        concat!(".rept ", $unroll, " / 2\n", conv_group_pair!(), "\n.endr")
    };
}

/// After the unrolled rounds: the fused tiles' lr (a [`FusedOutput`], which
/// does not move) back from the argument's slot above the saved registers.
macro_rules! after_round {
    (zeros) => {
        ""
    };
    (bias) => {
        "ldr lr, [sp, #68]"
    };
}

/// The pooled tile's combination: the maximum of the four accumulators.
macro_rules! pooled_finish {
    () => {
        "cmp r9, r10\nit lt\nmovlt r9, r10\ncmp r9, r11\nit lt\nmovlt r9, r11\n\
         cmp r9, r12\nit lt\nmovlt r9, r12\nstr r9, [lr], #4"
    };
}

/// [`conv_tile_each`]'s: each accumulator into its position's row.
macro_rules! each_finish {
    () => {
        "str r10, [lr, #32]\nstr r11, [lr, #64]\nstr r12, [lr, #96]\nstr r9, [lr], #4"
    };
}

tile_routine!(
    /// The pooled tile: the maximum of the four accumulators per channel.
    conv_tile,
    unroll 16,
    shift 4,
    remainder yes,
    start zeros,
    finish pooled_finish,
    out *mut i32
);

tile_routine!(
    /// The tile of four output pixels: each accumulator into its position's
    /// row, `CHUNK_EACH` words apart. Unrolled less than the pooled tile: no
    /// network this project ships needs its speed, and it keeps code small.
    conv_tile_each,
    unroll 4,
    shift 2,
    remainder yes,
    start zeros,
    finish each_finish,
    out *mut i32
);

/// Where [`conv_tile_fused`] writes and what it requantises with: the output
/// of the tile's first position and current channel (the next positions
/// `stride` bytes on), which the routine advances channel by channel, and
/// the ends of the tile's channels (one past the last channel's output and
/// constants), from which it reads the channel's constants at the (negative)
/// distance of its output from `out_end`; that distance reaching -1 marks the
/// last channel.
#[repr(C)]
struct FusedOutput {
    out: *mut i8,
    stride: u32,
    bias_end: *const i32,
    multipliers_end: *const i32,
    shifts_end: *const u8,
    /// `ROUNDING_LESS_128` for [`conv_tile_fused`], `ROUNDING` for
    /// [`conv_tile_fused_exact`], which adds the zero point itself.
    rounding: *const i32,
    out_end: *mut i8,
    /// The output zero point, for [`conv_tile_fused_exact`].
    zero_point: i32,
    /// The first channel's bias, which the accumulators start from.
    first_bias: *const i32,
}

/// A fused tile's channel constants, as its finish starts (the accumulators
/// already hold the bias): r2 `out` (r3 `stride`), r0 the multiplier, r5 the
/// right shift `e`, r7 its rounding term, r6 the address of the channel's
/// bias (the next channel's is 4 bytes on), r8 the channel's distance from
/// the end, the flags Z set on the last channel (no instruction of the
/// finishes sets them); `out` advanced to the next channel in memory.
macro_rules! fused_constants {
    () => {
        "ldm lr, {{r2-r8}}\n\
         sub r8, r2, r8\n\
         ldr r0, [r5, r8, lsl #2]\n\
         ldrsb r5, [r6, r8]\n\
         add r6, r4, r8, lsl #2\n\
         add r4, r2, #1\n\
         str r4, [lr]\n\
         rsb r5, r5, #0\n\
         ldr r7, [r7, r5, lsl #2]\n\
         cmn r8, #1"
    };
}

/// [`conv_tile_fused`]'s requantisation of the four accumulators (r9-r12)
/// and their stores: the zero point -128 is in the rounding term, so `SSAT`
/// clamps at it.
macro_rules! clamped_finish {
    () => {
        concat!(
            fused_constants!(),
            "\n",
            "lsl r9, r9, #1\nsmmlar r9, r9, r0, r7\nasr r9, r9, r5\nssat r9, #8, r9\n\
         lsl r10, r10, #1\nsmmlar r10, r10, r0, r7\nasr r10, r10, r5\nssat r10, #8, r10\n\
         lsl r11, r11, #1\nsmmlar r11, r11, r0, r7\nasr r11, r11, r5\nssat r11, #8, r11\n\
         lsl r12, r12, #1\nsmmlar r12, r12, r0, r7\nasr r12, r12, r5\nssat r12, #8, r12\n\
         strb r9, [r2]\nstrb r10, [r2, r3]\nadd r4, r2, r3, lsl #1\nstrb r11, [r4]\nstrb r12, [r4, r3]"
        )
    };
}

/// [`conv_tile_fused_exact`]'s: the exact rounding, the zero point (times
/// `2^e`, added to the rounding term) included in the shift, `SSAT`.
macro_rules! exact_finish {
    () => {
        concat!(
            fused_constants!(),
            "\n",
            "ldr r4, [lr, #28]\n\
         lsl r4, r4, r5\n\
         add r7, r7, r4\n\
         lsl r9, r9, #1\nsmmulr r9, r9, r0\nadd r9, r9, r9, asr #31\nadd r9, r9, r7\nasr r9, r9, r5\nssat r9, #8, r9\n\
         lsl r10, r10, #1\nsmmulr r10, r10, r0\nadd r10, r10, r10, asr #31\nadd r10, r10, r7\nasr r10, r10, r5\nssat r10, #8, r10\n\
         lsl r11, r11, #1\nsmmulr r11, r11, r0\nadd r11, r11, r11, asr #31\nadd r11, r11, r7\nasr r11, r11, r5\nssat r11, #8, r11\n\
         lsl r12, r12, #1\nsmmulr r12, r12, r0\nadd r12, r12, r12, asr #31\nadd r12, r12, r7\nasr r12, r12, r5\nssat r12, #8, r12\n\
         strb r9, [r2]\nstrb r10, [r2, r3]\nadd r4, r2, r3, lsl #1\nstrb r11, [r4]\nstrb r12, [r4, r3]"
        )
    };
}

tile_routine!(
    /// The tile of four output pixels requantised in place, for outputs
    /// clamped at zero point -128 with maximum 127 ([`RequantPath::Clamped`]):
    /// each channel's four accumulators start from its bias, get `SMMLAR` and
    /// the shift (see [`Requantizer`]), `USAT` and the flipped top bit, and go
    /// straight to the four pixels' outputs, with no call and no accumulators
    /// left in memory.
    conv_tile_fused,
    unroll 16,
    shift 4,
    remainder yes,
    start bias,
    finish clamped_finish,
    out *mut FusedOutput
);

tile_routine!(
    /// [`conv_tile_fused`] for a multiple of 16 groups.
    conv_tile_fused_whole,
    unroll 16,
    shift 4,
    remainder no,
    start bias,
    finish clamped_finish,
    out *mut FusedOutput
);

tile_routine!(
    /// [`conv_tile_fused`] unrolled 4 times, for windows of fewer than 16
    /// groups (a group at a time costs two more instructions than unrolled).
    conv_tile_fused_short,
    unroll 4,
    shift 2,
    remainder yes,
    start bias,
    finish clamped_finish,
    out *mut FusedOutput
);

tile_routine!(
    /// [`conv_tile_fused_short`] for a multiple of 4 groups.
    conv_tile_fused_short_whole,
    unroll 4,
    shift 2,
    remainder no,
    start bias,
    finish clamped_finish,
    out *mut FusedOutput
);

tile_routine!(
    /// [`conv_tile_fused`] for outputs without an activation
    /// ([`RequantPath::Exact`], range -128..=127): the exact rounding of
    /// [`requantize_bounded`], the zero point added, `SSAT`.
    conv_tile_fused_exact,
    unroll 16,
    shift 4,
    remainder yes,
    start bias,
    finish exact_finish,
    out *mut FusedOutput
);

tile_routine!(
    /// [`conv_tile_fused_exact`] for a multiple of 16 groups.
    conv_tile_fused_exact_whole,
    unroll 16,
    shift 4,
    remainder no,
    start bias,
    finish exact_finish,
    out *mut FusedOutput
);

/// The single-channel 3x3 inner loop: per channel, five weight pairs against
/// the five pairs of each of four positions, combined by `$finish` as in
/// [`conv_tile`] / [`conv_tile_each`].
///
/// Registers: r0 columns, lr columns (advancing), r1 table (advancing), r2
/// channels left, r3 `out`, r4-r7 accumulators, r8 weights, r9-r12 columns.
macro_rules! conv_single_tile_routine {
    ($(#[$attribute:meta])* $name:ident, $finish:literal) => {
        $(#[$attribute])*
        ///
        /// # Safety
        ///
        /// `columns` must be valid for reading 20 words, `table` for
        /// `channels * 5` words, `out` for writing what the routine stores,
        /// `channels` at most `CHUNK` (pooled) or `CHUNK_EACH`, and at least 1.
        #[unsafe(naked)]
        unsafe extern "C" fn $name(
            columns: *const u32,
            table: *const u32,
            channels: u32,
            out: *mut i32,
        ) {
            naked_asm!(
                naked_prelude!(),
                "push {{r4-r11, lr}}",
                "2:",
                "mov lr, r0",
                "ldr r8, [r1], #4",
                "ldm lr!, {{r9-r12}}",
                "smuad r4, r8, r9",
                "smuad r5, r8, r10",
                "smuad r6, r8, r11",
                "smuad r7, r8, r12",
                ".rept 4",
                "ldr r8, [r1], #4",
                "ldm lr!, {{r9-r12}}",
                "smlad r4, r8, r9, r4",
                "smlad r5, r8, r10, r5",
                "smlad r6, r8, r11, r6",
                "smlad r7, r8, r12, r7",
                ".endr",
                $finish,
                "subs r2, r2, #1",
                "bne 2b",
                "pop {{r4-r11, pc}}",
            )
        }
    };
}

conv_single_tile_routine!(
    /// The pooled tile: the maximum of the four accumulators per channel.
    conv_single_tile,
    "cmp r4, r5\nit lt\nmovlt r4, r5\ncmp r4, r6\nit lt\nmovlt r4, r6\n\
     cmp r4, r7\nit lt\nmovlt r4, r7\nstr r4, [r3], #4"
);

conv_single_tile_routine!(
    /// The tile of four output pixels: each accumulator into its position's
    /// row, `CHUNK_EACH` words apart.
    conv_single_tile_each,
    "str r5, [r3, #32]\nstr r6, [r3, #64]\nstr r7, [r3, #96]\nstr r4, [r3], #4"
);

/// Four dense rows against the widened input: `sums[i]` = row `i` . input,
/// rows 0 and 1 at `rows01` and `rows01 + stride`, rows 2 and 3 at `rows23`
/// and `rows23 + stride`.
///
/// Registers: r0 input (advancing), r1/r2 row pointers (advancing), r3 stride,
/// r4 loop counter, r5/r6 input pairs, r7/r8 weight pairs, r9-r12
/// accumulators, lr pair-loop counter then `sums`.
///
/// # Safety
///
/// `input` must be valid for reading `groups * 2` words, the four rows for
/// `groups * 4` bytes each (any alignment), `sums` for writing 4 words;
/// `groups` at least 1.
#[unsafe(naked)]
unsafe extern "C" fn dense_quad(
    input: *const u32,
    rows01: *const u8,
    rows23: *const u8,
    stride: u32,
    groups: u32,
    sums: *mut i32,
) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "ldr r4, [sp, #36]",
        "mov.w r9, #0",
        "mov.w r10, #0",
        "mov.w r11, #0",
        "mov.w r12, #0",
        "lsrs lr, r4, #2",
        "beq 3f",
        "2:",
        ".rept 4",
        dense_group!(),
        ".endr",
        "subs lr, lr, #1",
        "bne 2b",
        "3:",
        "ands r4, r4, #3",
        "beq 5f",
        "4:",
        dense_group!(),
        "subs r4, r4, #1",
        "bne 4b",
        "5:",
        "ldr lr, [sp, #40]",
        "stm lr, {{r9-r12}}",
        "pop {{r4-r11, pc}}",
    )
}

/// [`dense_quad`] with the input as it lies (`groups * 4` bytes, any
/// alignment), each group widened with `offset` (the input offset in both
/// halves) as it is read.
///
/// Registers: as [`dense_quad`]'s, but r4 holds the offset and lr counts
/// the last groups too.
///
/// # Safety
///
/// `input` and the four rows must be valid for reading `groups * 4` bytes
/// each (any alignment), `sums` for writing 4 words; `groups` at least 1.
#[unsafe(naked)]
unsafe extern "C" fn dense_quad_narrow(
    input: *const i8,
    rows01: *const u8,
    rows23: *const u8,
    stride: u32,
    groups: u32,
    sums: *mut i32,
    offset: u32,
) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "ldr r4, [sp, #44]",
        "mov.w r9, #0",
        "mov.w r10, #0",
        "mov.w r11, #0",
        "mov.w r12, #0",
        "ldr lr, [sp, #36]",
        "lsrs lr, lr, #2",
        "beq 3f",
        "2:",
        ".rept 4",
        dense_group_narrow!(),
        ".endr",
        "subs lr, lr, #1",
        "bne 2b",
        "3:",
        "ldr lr, [sp, #36]",
        "ands lr, lr, #3",
        "beq 5f",
        "4:",
        dense_group_narrow!(),
        "subs lr, lr, #1",
        "bne 4b",
        "5:",
        "ldr lr, [sp, #40]",
        "stm lr, {{r9-r12}}",
        "pop {{r4-r11, pc}}",
    )
}
