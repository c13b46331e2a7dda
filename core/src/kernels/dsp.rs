//! int8 kernels for Arm cores with the DSP extension (Cortex-M4, M7, M33),
//! bit-identical to the portable kernels of [`super::int8`].
//!
//! This is the only module of the crate with `unsafe` code: a few routines in
//! inline assembly (`naked_asm!`, `asm!`), because the DSP intrinsics are not
//! stable. Each kernel is a safe function with the portable kernel's signature
//! plus a `work` buffer; it checks the shapes and the buffer, runs the
//! assembly on slices it has sized itself, and returns the [`Backend`] that
//! ran (the portable one for shapes it does not handle, so it is never wrong).
//! The firmware's `kernels` binary checks every kernel against the portable
//! one on random shapes and values, and the whole network, in QEMU.
//!
//! # Convolution (`IC` a multiple of 4: conv2, conv3)
//!
//! For each pooled output pixel the four convolution positions of its 2x2
//! window are unrolled ("im2col") into `work` as int16 with the input offset
//! already added (`SXTAB16` adds `-zero_point` to two bytes at once; taps in
//! the zero padding become 0). The layout interleaves the positions so that
//! one `LDM` of four registers fetches two positions' worth of four values:
//! group `g` (inputs `4g..4g+4` of the `9 x IC` window, in the filters'
//! `[ky][kx][in]` order) is eight words `p0(x0,x2) p0(x1,x3) p1(..) p1(..)
//! p2.. p3..`, the pair order that `SXTB16` and `SXTB16 ROR #8` produce from
//! four int8 weights. The inner loop (`conv_tile`) then costs, per output
//! channel and four inputs (16 MACs): `LDR` 4 weights, 2 `SXTB16`, 2 `LDM`, 8
//! `SMLAD` into four accumulators (one per position) = 13 instructions,
//! unrolled 16 times. That uses all 14 registers a routine has: the next step
//! (8 positions, or 8-register `LDM`s) would need 16 or more. The maximum of
//! the four accumulators is requantised (see below), which gives the pooled
//! value: requantisation is monotonic, the portable kernel relies on the same
//! fact.
//!
//! # Convolution with one input channel (conv1)
//!
//! The 9 taps are widened once per call to 5 int16 pairs per filter (the last
//! padded with 0), the input once to int16 with its offset and a frame of
//! zeros, and each pooled pixel's four windows to 5 pairs per position,
//! pair-major. Per channel (`conv_single_tile`): 5 x (`LDR` weights, `LDM`
//! four positions, 4 `SMLAD`).
//!
//! # Dense
//!
//! The input vector is widened once (with its offset) to int16 pairs in the
//! same `(x0,x2),(x1,x3)` order; four rows run at once (`dense_quad`),
//! sharing each `LDRD` of the input: 21 instructions per 16 MACs.
//!
//! # Requantisation
//!
//! Where a layer's constants allow it (output clamped at its zero point, as
//! after a ReLU; right shifts only; no accumulator near `2^30`), an exact
//! shortcut in assembly (`requantize_clamped`, see `Requantizer`) takes
//! about 13 instructions per output instead of the portable
//! [`Requantization::apply`]'s 50 or so; otherwise `apply` runs.
//!
//! The assembly reads weights (and dense rows) with unaligned `LDR`s, as
//! blobs do not align tensors: the core must not trap unaligned accesses
//! (`CCR.UNALIGN_TRP` clear, the reset state of every Cortex-M).
//!
//! Accumulators cannot overflow: `|x - zero_point| <= 255` and
//! `|w| <= 128`, so a `9 x IC`-long dot product stays far inside `i32` for any
//! layer of this crate's network, and `SMLAD` wraps exactly like the portable
//! kernels' `i32` sums.

#![allow(unsafe_code)]

use core::arch::{asm, naked_asm};

use super::int8::{Backend, ConvLayer, DenseLayer, Requantization, window};
use crate::arch::{KERNEL_TAPS, Tensor};

/// Output channels whose accumulators one assembly call leaves on the stack
/// before they are requantised.
const CHUNK: usize = 32;
/// int16 pairs per 3x3 window when there is one input channel: 9 taps + 0.
const SINGLE_PAIRS: usize = 5;
/// Convolution positions per pooled pixel.
const POSITIONS: usize = 4;

/// Bytes of `work` that [`conv3x3_relu_maxpool2`] needs, 4-byte aligned, for
/// an `H x W x IC` input and `OC` output channels; 0 for shapes that the
/// portable kernel runs (input channels neither 1 nor a multiple of 4).
pub const fn conv_work_bytes<const H: usize, const W: usize, const IC: usize, const OC: usize>()
-> usize {
    if IC == 1 {
        // Widened filters, one pixel's windows, the zero-padded input as int16.
        4 * SINGLE_PAIRS * (OC + POSITIONS) + padded_words(H, W) * 4
    } else if IC.is_multiple_of(4) {
        // Four positions x 9 taps x IC values x 2 bytes.
        POSITIONS * KERNEL_TAPS * IC * 2
    } else {
        0
    }
}

/// Words holding an `H x W` single-channel input, zero-padded by one pixel on
/// every side, as int16.
const fn padded_words(height: usize, width: usize) -> usize {
    ((height + 2) * (width + 2)).div_ceil(2)
}

/// Bytes of `work` that [`dense`] needs, 4-byte aligned, for `inputs`
/// inputs; 0 when the portable kernel runs (`inputs` not a multiple of 4).
pub const fn dense_work_bytes(inputs: usize) -> usize {
    if inputs.is_multiple_of(4) {
        inputs * 2
    } else {
        0
    }
}

/// [`super::int8::conv3x3_relu_maxpool2`] with the DSP extension: same
/// arguments, plus `work` of at least [`conv_work_bytes`] bytes from a 4-byte
/// boundary (its contents are overwritten). Returns [`Backend::ArmDsp`], or
/// [`Backend::Portable`] when the shape or `work` does not suit the DSP
/// kernels and the portable kernel ran instead.
pub fn conv3x3_relu_maxpool2<
    const H: usize,
    const W: usize,
    const IC: usize,
    const OC: usize,
    const PH: usize,
    const PW: usize,
>(
    input: &Tensor<i8, H, W, IC>,
    layer: &ConvLayer<'_, IC, OC>,
    output: &mut Tensor<i8, PH, PW, OC>,
    work: &mut [i8],
) -> Backend {
    const {
        assert!(
            PH == H / 2 && PW == W / 2,
            "pooled output must be half the input, rounded down"
        )
    };
    let words = aligned_words(work);
    let ran = if IC == 1 {
        conv_single_channel(input, layer, output, words)
    } else if IC.is_multiple_of(4) {
        conv_multi_channel(input, layer, output, words)
    } else {
        false
    };
    if ran {
        Backend::ArmDsp
    } else {
        super::int8::conv3x3_relu_maxpool2(input, layer, output);
        Backend::Portable
    }
}

/// [`super::int8::dense`] with the DSP extension: same arguments, plus `work`
/// of at least [`dense_work_bytes`] bytes from a 4-byte boundary. Returns the
/// backend that ran, as [`conv3x3_relu_maxpool2`] does.
pub fn dense<const H: usize, const W: usize, const C: usize, const IN: usize, const OUT: usize>(
    input: &Tensor<i8, H, W, C>,
    layer: &DenseLayer<'_, IN, OUT>,
    output: &mut [i8; OUT],
    work: &mut [i8],
) -> Backend {
    const {
        assert!(
            IN == H * W * C,
            "dense input length must equal the flattened tensor"
        )
    };
    let flat = input.as_flattened().as_flattened();
    if dense_rows(flat, layer.rows(), IN, layer.requantization(), output, work) {
        Backend::ArmDsp
    } else {
        super::int8::dense(input, layer, output);
        Backend::Portable
    }
}

/// [`dense`] over a plain vector.
pub fn dense_vector<const IN: usize, const OUT: usize>(
    input: &[i8; IN],
    layer: &DenseLayer<'_, IN, OUT>,
    output: &mut [i8; OUT],
    work: &mut [i8],
) -> Backend {
    dense::<1, 1, IN, IN, OUT>(super::int8::as_tensor(input), layer, output, work)
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
    fast: bool,
}

impl<'r, 'a> Requantizer<'r, 'a> {
    /// Decides once per layer whether the shortcut is exact for all of its
    /// channels, given `fan_in` products per accumulator.
    fn new(requantization: &'r Requantization<'a>, fan_in: usize) -> Self {
        // |x - zero_point| <= 255 and |w| <= 128 (the loader allows 127).
        let largest_sum = fan_in.saturating_mul(255 * 128);
        let (bias, multipliers, shifts) = requantization.raw();
        let fast = requantization.activation_min() == requantization.output_zero_point()
            && largest_sum < 1 << 29
            && bias
                .iter()
                .all(|&b| i32::from_le_bytes(b).unsigned_abs() as usize + largest_sum < 1 << 30)
            && multipliers.iter().all(|&m| i32::from_le_bytes(m) >= 0)
            && shifts.iter().all(|&s| (-31..=0).contains(&(s as i8)));
        Requantizer {
            requantization,
            fast,
        }
    }

    /// Requantises `accumulators` of the channels from `first` on into
    /// `outputs`.
    #[inline(always)]
    fn finish(&self, first: usize, accumulators: &[i32], outputs: &mut [i8]) {
        let count = outputs.len().min(accumulators.len());
        let (bias, multipliers, shifts) = self.requantization.raw();
        let channels = first..first + count;
        if let (true, Some(bias), Some(multipliers), Some(shifts)) = (
            self.fast && count > 0,
            bias.get(channels.clone()),
            multipliers.get(channels.clone()),
            shifts.get(channels),
        ) {
            let constants = Constants {
                bias: bias.as_ptr().cast(),
                multipliers: multipliers.as_ptr().cast(),
                shifts: shifts.as_ptr(),
                zero_point: self.requantization.output_zero_point(),
                rounding: ROUNDING.as_ptr(),
            };
            // SAFETY: `count >= 1` accumulators, outputs and constants are
            // in bounds (sliced above); `Requantizer::new` checked the shifts
            // (-31..=0, so `rounding` is indexed in bounds), the multipliers
            // (>= 0) and the biases (no overflow) that the routine assumes.
            unsafe {
                requantize_clamped(
                    accumulators.as_ptr(),
                    outputs.as_mut_ptr(),
                    count as u32,
                    &constants,
                );
            }
            return;
        }
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
}

/// The four convolution positions `(dy, dx)` of a pooled pixel, in the order
/// of the accumulators.
const WINDOW: [(usize, usize); POSITIONS] = [(0, 0), (0, 1), (1, 0), (1, 1)];

fn conv_multi_channel<
    const H: usize,
    const W: usize,
    const IC: usize,
    const OC: usize,
    const PH: usize,
    const PW: usize,
>(
    input: &Tensor<i8, H, W, IC>,
    layer: &ConvLayer<'_, IC, OC>,
    output: &mut Tensor<i8, PH, PW, OC>,
    words: &mut [u32],
) -> bool {
    let groups = KERNEL_TAPS * IC / 4;
    let Some(columns) = words.get_mut(..groups * 2 * POSITIONS) else {
        return false;
    };
    if IC == 0 {
        return false;
    }
    let Ok(group_count) = u32::try_from(groups) else {
        return false;
    };
    let requantization = layer.requantization();
    let requantizer = Requantizer::new(requantization, KERNEL_TAPS * IC);
    let offset = halves(-requantization.input_zero_point());
    let filter_len = KERNEL_TAPS * IC;
    for (py, out_row) in output.iter_mut().enumerate() {
        for (px, out_pixel) in out_row.iter_mut().enumerate() {
            for (position, &(dy, dx)) in WINDOW.iter().enumerate() {
                let taps = window(input, 2 * py + dy, 2 * px + dx);
                let per_tap = columns.chunks_exact_mut(IC / 4 * 2 * POSITIONS);
                for (tap, tap_columns) in taps.iter().zip(per_tap) {
                    // This position's two words in each group of eight.
                    let slots = tap_columns
                        .as_chunks_mut::<{ 2 * POSITIONS }>()
                        .0
                        .iter_mut()
                        .filter_map(|group| group.as_chunks_mut::<2>().0.get_mut(position));
                    match tap {
                        Some(pixel) => {
                            for (slot, quad) in slots.zip(pixel.as_chunks::<4>().0) {
                                let raw = word(quad);
                                *slot = [sxtab16(offset, raw), sxtab16_odd(offset, raw)];
                            }
                        }
                        None => slots.for_each(|slot| *slot = [0, 0]),
                    }
                }
            }
            let chunks = out_pixel
                .chunks_mut(CHUNK)
                .zip(layer.filters().chunks(CHUNK * filter_len));
            for (index, (out_chunk, filter_chunk)) in chunks.enumerate() {
                let mut best = [0i32; CHUNK];
                let count = out_chunk.len().min(filter_chunk.len() / filter_len);
                if count == 0 {
                    continue;
                }
                // SAFETY: `columns` holds `groups` groups of 8 words (sliced
                // above) and `filter_chunk` at least `count` filters of
                // `groups * 4` bytes, which is all that `conv_tile` reads
                // (unaligned reads of the weights are allowed on these cores);
                // it writes `count <= CHUNK` words to `best`. `count >= 1`,
                // and `groups >= 1` because `IC >= 4`.
                unsafe {
                    conv_tile(
                        columns.as_ptr(),
                        filter_chunk.as_ptr(),
                        group_count,
                        count as u32,
                        best.as_mut_ptr(),
                    );
                }
                requantizer.finish(index * CHUNK, &best, out_chunk);
            }
        }
    }
    true
}

fn conv_single_channel<
    const H: usize,
    const W: usize,
    const IC: usize,
    const OC: usize,
    const PH: usize,
    const PW: usize,
>(
    input: &Tensor<i8, H, W, IC>,
    layer: &ConvLayer<'_, IC, OC>,
    output: &mut Tensor<i8, PH, PW, OC>,
    words: &mut [u32],
) -> bool {
    let table_words = OC * SINGLE_PAIRS;
    let column_words = SINGLE_PAIRS * POSITIONS;
    if IC != 1 || words.len() < table_words + column_words + padded_words(H, W) {
        return false;
    }
    let (table, rest) = words.split_at_mut(table_words);
    let (columns, padded) = rest.split_at_mut(column_words);
    // SAFETY: reinterprets aligned words as twice as many halfwords; every
    // bit pattern is valid for both.
    let (_, padded, _) = unsafe { padded.align_to_mut::<u16>() };
    let stride = W + 2;
    let Some(padded) = padded.get_mut(..(H + 2) * stride) else {
        return false;
    };

    // Widen every filter once: nine taps to five pairs, the last one (w8, 0).
    let filters = layer.filters().chunks_exact(KERNEL_TAPS);
    for (pairs, filter) in table.chunks_exact_mut(SINGLE_PAIRS).zip(filters) {
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
    for (padded_row, row) in padded.chunks_exact_mut(stride).skip(1).zip(input) {
        for (value, pixel) in padded_row.iter_mut().skip(1).zip(row) {
            *value = pixel
                .first()
                .map_or(0, |&x| (i32::from(x) - zero_point) as u16);
        }
    }

    let requantizer = Requantizer::new(requantization, KERNEL_TAPS);
    for (py, out_row) in output.iter_mut().enumerate() {
        for (px, out_pixel) in out_row.iter_mut().enumerate() {
            // Pair-major: word `j * 4 + position` holds taps 2j, 2j+1.
            for (position, &(dy, dx)) in WINDOW.iter().enumerate() {
                let top = (2 * py + dy) * stride + 2 * px + dx;
                let rows = padded.get(top..).map(|from| from.chunks(stride));
                let Some(
                    [
                        Some(&[t0, t1, t2, ..]),
                        Some(&[t3, t4, t5, ..]),
                        Some(&[t6, t7, t8, ..]),
                    ],
                ) = rows.map(|mut rows| [rows.next(), rows.next(), rows.next()])
                else {
                    return false;
                };
                let pairs = [[t0, t1], [t2, t3], [t4, t5], [t6, t7], [t8, 0]];
                for (slots, [low, high]) in columns.chunks_exact_mut(POSITIONS).zip(pairs) {
                    if let Some(slot) = slots.get_mut(position) {
                        *slot = u32::from(low) | (u32::from(high) << 16);
                    }
                }
            }
            let chunks = out_pixel
                .chunks_mut(CHUNK)
                .zip(table.chunks(CHUNK * SINGLE_PAIRS));
            for (index, (out_chunk, table_chunk)) in chunks.enumerate() {
                let mut best = [0i32; CHUNK];
                let count = out_chunk.len().min(table_chunk.len() / SINGLE_PAIRS);
                if count == 0 {
                    continue;
                }
                // SAFETY: `columns` holds 20 words and `table_chunk` `count`
                // filters of 5 words, all that `conv_single_tile` reads; it
                // writes `count <= CHUNK` words to `best`; `count >= 1`.
                unsafe {
                    conv_single_tile(
                        columns.as_ptr(),
                        table_chunk.as_ptr(),
                        count as u32,
                        best.as_mut_ptr(),
                    );
                }
                requantizer.finish(index * CHUNK, &best, out_chunk);
            }
        }
    }
    true
}

fn dense_rows(
    flat: &[i8],
    rows: &[u8],
    inputs: usize,
    requantization: &Requantization<'_>,
    output: &mut [i8],
    work: &mut [i8],
) -> bool {
    let words = aligned_words(work);
    let Some(vector) = words.get_mut(..inputs / 2) else {
        return false;
    };
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
    let offset = halves(-requantization.input_zero_point());
    for (pair, quad) in vector
        .as_chunks_mut::<2>()
        .0
        .iter_mut()
        .zip(flat.as_chunks::<4>().0)
    {
        let raw = word(quad);
        *pair = [sxtab16(offset, raw), sxtab16_odd(offset, raw)];
    }
    let requantizer = Requantizer::new(requantization, inputs);
    let quads = output.chunks_mut(4).zip(rows.chunks(4 * inputs));
    for (index, (out_quad, row_quad)) in quads.enumerate() {
        let mut sums = [0i32; 4];
        if out_quad.len() == 4 {
            let (first, second) = row_quad.split_at(2 * inputs);
            // SAFETY: four whole rows of `inputs` bytes: `first` holds rows 0
            // and 1 (`p`, `p + stride`), `second` rows 2 and 3; `vector` holds
            // `groups` pairs of words; `dense_quad` reads exactly these and
            // writes four words to `sums`. `groups >= 1`.
            unsafe {
                dense_quad(
                    vector.as_ptr(),
                    first.as_ptr(),
                    second.as_ptr(),
                    stride,
                    group_count,
                    sums.as_mut_ptr(),
                );
            }
            requantizer.finish(4 * index, &sums, out_quad);
        } else {
            // The last one to three rows, one at a time: a stride of 0 makes
            // the four "rows" the same one.
            let singles = out_quad.iter_mut().zip(row_quad.chunks_exact(inputs));
            for (offset, (out, row)) in singles.enumerate() {
                // SAFETY: as above, with all four rows being `row`.
                unsafe {
                    dense_quad(
                        vector.as_ptr(),
                        row.as_ptr(),
                        row.as_ptr(),
                        0,
                        group_count,
                        sums.as_mut_ptr(),
                    );
                }
                requantizer.finish(4 * index + offset, &sums[..1], core::slice::from_mut(out));
            }
        }
    }
    true
}

/// Requantises `count` accumulators (see [`Requantizer`] for the shortcut it
/// takes) into `outputs`, clamped to `[zero_point, 127]`.
///
/// Registers: r0 accumulators, r1 outputs, r2 count, r3 then r4 biases, r5
/// multipliers, r6 shifts, r7 zero point, r8 rounding table, r9-r12 scratch.
///
/// # Safety
///
/// `accumulators` must be valid for reading `count` words, `outputs` for
/// writing `count` bytes, the constants' pointers for `count` entries each
/// (biases and multipliers in any alignment); every shift in -31..=0, every
/// multiplier non-negative, every `|accumulator + bias| < 2^30`; `count` at
/// least 1.
#[unsafe(naked)]
unsafe extern "C" fn requantize_clamped(
    accumulators: *const i32,
    outputs: *mut i8,
    count: u32,
    constants: *const Constants,
) {
    naked_asm!(
        "push {{r4-r11, lr}}",
        "ldm r3, {{r4-r8}}",
        // Zero point -128 (every ReLU output of a TFLite-quantised
        // network): clamping to [0, 255] and flipping the top bit is
        // adding it and clamping to [-128, 127].
        "cmn r7, #128",
        "beq 3f",
        "2:",
        "ldr r9, [r0], #4",
        "ldr r10, [r4], #4",
        "add r9, r9, r10",
        "lsl r9, r9, #1",
        "ldr r10, [r5], #4",
        "ldrsb r11, [r6], #1",
        "rsb r11, r11, #0",
        "ldr r12, [r8, r11, lsl #2]",
        "smmlar r9, r9, r10, r12",
        "asr r9, r9, r11",
        "add r9, r9, r7",
        "ssat r9, #8, r9",
        "cmp r9, r7",
        "it lt",
        "movlt r9, r7",
        "strb r9, [r1], #1",
        "subs r2, r2, #1",
        "bne 2b",
        "pop {{r4-r11, pc}}",
        "3:",
        "ldr r9, [r0], #4",
        "ldr r10, [r4], #4",
        "add r9, r9, r10",
        "lsl r9, r9, #1",
        "ldr r10, [r5], #4",
        "ldrsb r11, [r6], #1",
        "rsb r11, r11, #0",
        "ldr r12, [r8, r11, lsl #2]",
        "smmlar r9, r9, r10, r12",
        "asr r9, r9, r11",
        "usat r9, #8, r9",
        "eor r9, r9, #128",
        "strb r9, [r1], #1",
        "subs r2, r2, #1",
        "bne 3b",
        "pop {{r4-r11, pc}}",
    )
}

/// One group of four inputs in [`conv_tile`]: widen four weights, multiply
/// them with the four positions' values (two `LDM`s) into r9-r12.
macro_rules! conv_group {
    () => {
        concat!(
            "ldr r4, [r1], #4\n",
            "sxtb16 r3, r4\n",
            "sxtb16 r4, r4, ror #8\n",
            "ldm r0!, {{r5-r8}}\n",
            "smlad r9, r3, r5, r9\n",
            "smlad r9, r4, r6, r9\n",
            "smlad r10, r3, r7, r10\n",
            "smlad r10, r4, r8, r10\n",
            "ldm r0!, {{r5-r8}}\n",
            "smlad r11, r3, r5, r11\n",
            "smlad r11, r4, r6, r11\n",
            "smlad r12, r3, r7, r12\n",
            "smlad r12, r4, r8, r12",
        )
    };
}

/// One group of four inputs in [`dense_quad`]: the input pairs once, then
/// each row's four weights widened and multiplied into r9-r12.
macro_rules! dense_group {
    () => {
        concat!(
            "ldrd r5, r6, [r0], #8\n",
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

/// Accumulators of `channels` output channels at four positions, maximum of
/// the four per channel into `best`.
///
/// Registers: r0 columns (advancing), r1 weights (advancing across channels),
/// r2 loop counter, r3/r4 weight pairs, r5-r8 columns, r9-r12 accumulators,
/// lr `best`; the stack holds the column start, the counts and the channels
/// left. The group loop is unrolled 16 times (conv2 runs 9 rounds per
/// channel, conv3 18), with a one-group loop for the rest.
///
/// # Safety
///
/// `columns` must be valid for reading `groups * 8` words, `filters` for
/// `channels * groups * 4` bytes (any alignment), `best` for writing
/// `channels` words; `groups` and `channels` at least 1.
#[unsafe(naked)]
unsafe extern "C" fn conv_tile(
    columns: *const u32,
    filters: *const u8,
    groups: u32,
    channels: u32,
    best: *mut i32,
) {
    naked_asm!(
        "push {{r4-r11, lr}}",
        // The fifth argument sits above the nine saved registers.
        "ldr lr, [sp, #36]",
        // Stack: [sp] columns, [sp+4] groups / 16, [sp+8] channels left,
        // [sp+12] groups % 16.
        "and r4, r2, #15",
        "lsr r2, r2, #4",
        "push {{r0, r2, r3, r4}}",
        "2:",
        "ldr r0, [sp]",
        "mov.w r9, #0",
        "mov.w r10, #0",
        "mov.w r11, #0",
        "mov.w r12, #0",
        "ldr r2, [sp, #4]",
        // Too far for `cbz`.
        "cmp r2, #0",
        "beq 4f",
        "3:",
        ".rept 16",
        conv_group!(),
        ".endr",
        "subs r2, r2, #1",
        "bne 3b",
        "4:",
        "ldr r2, [sp, #12]",
        "cbz r2, 6f",
        "5:",
        conv_group!(),
        "subs r2, r2, #1",
        "bne 5b",
        "6:",
        "cmp r9, r10",
        "it lt",
        "movlt r9, r10",
        "cmp r9, r11",
        "it lt",
        "movlt r9, r11",
        "cmp r9, r12",
        "it lt",
        "movlt r9, r12",
        "str r9, [lr], #4",
        "ldr r2, [sp, #8]",
        "subs r2, r2, #1",
        "str r2, [sp, #8]",
        "bne 2b",
        "add sp, #16",
        "pop {{r4-r11, pc}}",
    )
}

/// conv1's inner loop: per channel, five weight pairs against the five pairs
/// of each of four positions, maximum of the four into `best`.
///
/// Registers: r0 columns, lr columns (advancing), r1 table (advancing), r2
/// channels left, r3 `best`, r4-r7 accumulators, r8 weights, r9-r12 columns.
///
/// # Safety
///
/// `columns` must be valid for reading 20 words, `table` for `channels * 5`
/// words, `best` for writing `channels` words; `channels` at least 1.
#[unsafe(naked)]
unsafe extern "C" fn conv_single_tile(
    columns: *const u32,
    table: *const u32,
    channels: u32,
    best: *mut i32,
) {
    naked_asm!(
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
        "cmp r4, r5",
        "it lt",
        "movlt r4, r5",
        "cmp r4, r6",
        "it lt",
        "movlt r4, r6",
        "cmp r4, r7",
        "it lt",
        "movlt r4, r7",
        "str r4, [r3], #4",
        "subs r2, r2, #1",
        "bne 2b",
        "pop {{r4-r11, pc}}",
    )
}

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
