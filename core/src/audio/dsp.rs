//! The front end's hot loops for Arm cores with the DSP extension (Cortex-M4,
//! M7, M33), bit-identical to the portable code of `fft.rs` and `mod.rs`.
//!
//! Like [`crate::kernels::dsp`], this module allows `unsafe` for itself only:
//! routines in inline assembly (`naked_asm!`), each behind a safe function
//! that checks the sizes the assembly relies on and returns `false` (or
//! `None`), having done nothing, when they do not hold, so that the caller
//! runs the portable code instead.
//!
//! # Why the results are the portable ones, bit for bit
//!
//! Every product the portable code forms in `i64` or `u64` is formed here by
//! `SMULL`/`SMLAL` (`UMULL`/`MLA` for the unsigned ones), which give the
//! exact 64-bit product and sum; the rounding (`+ 2^29`, then bits 30 to 61)
//! is the same integer operation on the same 64-bit value, and the window's
//! `(p + 2^31) >> 32` is what `SMMULR` computes. The additions are 32-bit
//! and wrap like the portable `i32` additions, which never overflow (see
//! `fft.rs` for the bound); `a - b` is sometimes formed as `(a + b) - 2b`,
//! equal modulo 2^32 and so equal. Each value is rotated by the twiddle the
//! portable code uses, read from the same table entries with the same signs.
//! `sum |x|` is `SMLAD` of each sample pair with signs chosen by `SSUB16`
//! and `SEL` (`0 - (-32768)` sets its lane's flag, so it counts as 32768);
//! the sum stays far below 2^31.
//!
//! The frame's samples are read with `LDR`s that may be unaligned (a frame
//! is an `i16` slice): the core must not trap unaligned accesses
//! (`CCR.UNALIGN_TRP` clear, the reset state of every Cortex-M), as for the
//! kernels.
//!
//! The firmware's `frontend` binary runs frames through both paths and
//! compares the work buffers (every FFT point and log energy) and the bytes.

#![allow(unsafe_code)]

use super::fft::Complex;
use core::arch::naked_asm;

// The first line of every naked function's assembly, as the DSP kernels write it.
use crate::kernels::dsp::naked_prelude;

/// What [`radix4_stage_asm`] reads, at the offsets its assembly names.
#[repr(C)]
struct Stage {
    /// The FFT's points, `[re, im]` pairs.
    z: *mut i32,
    /// The quarter-wave sine table.
    sine: *const i32,
    /// `8 * half`: bytes between the four points of a butterfly.
    half_bytes: u32,
    /// `4 * stride`: bytes the twiddle index `t` advances per `j`.
    stride_bytes: u32,
    /// `4 * M / 2`: the sine table's quarter wave, in bytes.
    quarter_bytes: u32,
    /// One past the last point.
    end: *mut i32,
}

/// A radix-4 stage of `fft::radix4_stages` (butterfly span `half`). Returns
/// `false`, having done nothing, unless `z.len()` is a power of two,
/// `2 <= half`, `4 * half <= z.len()` and `sine` holds the quarter wave of
/// `z.len()` points' real FFT.
pub(super) fn radix4_stage(z: &mut [Complex], sine: &[i32], half: usize) -> bool {
    let points = z.len();
    if !points.is_power_of_two()
        || half < 2
        || 4 * half > points
        || sine.len() <= points / 2
        || points > 1 << 20
    {
        return false;
    }
    let stride = points / (2 * half);
    let range = z.as_mut_ptr_range();
    let stage = Stage {
        z: range.start.cast(),
        sine: sine.as_ptr(),
        half_bytes: (8 * half) as u32,
        stride_bytes: (4 * stride) as u32,
        quarter_bytes: (4 * (points / 2)) as u32,
        end: range.end.cast(),
    };
    // SAFETY: the routine reads and writes the points `j + g * 4 half +
    // {0, 1, 2, 3} half` for `j < half` and every group `g` below
    // `points / (4 half)`, all inside `z` (`4 half` divides `points`, both
    // powers of two); it reads the sine table at indices `0..=points / 2`,
    // inside `sine` (checked above); `stage` outlives the call.
    unsafe { radix4_stage_asm(&raw const stage) };
    true
}

/// One rotation in place: `(A, B)` becomes `(A, B) * (c - i s)`, rounded as
/// `fft::rotate` does, with `c, s` at `[sp, #OFFSET]`. Uses r10-r12 and lr.
/// `SMULL r10, B, B, r10` reads both operands before it writes (Armv7-M has
/// no restriction on the destinations overlapping the operands).
macro_rules! rotate {
    ($a:literal, $b:literal, $offset:literal) => {
        concat!(
            "ldrd r10, r11, [sp, #",
            $offset,
            "]\n",
            "smull r12, lr, ",
            $a,
            ", r10\n",
            "smlal r12, lr, ",
            $b,
            ", r11\n",
            "smull r10, ",
            $b,
            ", ",
            $b,
            ", r10\n",
            "rsb r11, r11, #0\n",
            "smlal r10, ",
            $b,
            ", ",
            $a,
            ", r11\n",
            "adds r12, r12, #0x20000000\n",
            "adc lr, lr, #0\n",
            "lsr r12, r12, #30\n",
            "orr ",
            $a,
            ", r12, lr, lsl #2\n",
            "adds r10, r10, #0x20000000\n",
            "adc ",
            $b,
            ", ",
            $b,
            ", #0\n",
            "lsr r10, r10, #30\n",
            "orr ",
            $b,
            ", r10, ",
            $b,
            ", lsl #2",
        )
    };
}

/// Loads `x1` (r4, r5), `x2` (r6, r7), `x3` (r8, r9) of the butterfly at r0
/// (r1: bytes between its points). Uses r12.
macro_rules! load_butterfly {
    () => {
        concat!(
            "add r12, r0, r1\n",
            "ldrd r4, r5, [r12]\n",
            "add r12, r12, r1\n",
            "ldrd r6, r7, [r12]\n",
            "add r12, r12, r1\n",
            "ldrd r8, r9, [r12]",
        )
    };
}

/// The radix-4 butterfly at r0 on `x0` (loaded here) and `t1..t3` in
/// r4-r9, stored; then r0 moves to the next group and the loop goes back to
/// `LABEL` unless it reached the end at `[sp, #40]`.
macro_rules! finish_butterfly {
    ($label:literal) => {
        concat!(
            "ldrd r2, r3, [r0]\n",
            // a0 = x0 + t1 (r2, r3), a1 = x0 - t1 (r4, r5).
            "add r2, r2, r4\n",
            "sub r4, r2, r4, lsl #1\n",
            "add r3, r3, r5\n",
            "sub r5, r3, r5, lsl #1\n",
            // a2 = t2 + t3 (r6, r7), a3 = t2 - t3 (r8, r9).
            "add r6, r6, r8\n",
            "sub r8, r6, r8, lsl #1\n",
            "add r7, r7, r9\n",
            "sub r9, r7, r9, lsl #1\n",
            // x0 = a0 + a2, x2 = a0 - a2.
            "add r2, r2, r6\n",
            "sub r6, r2, r6, lsl #1\n",
            "add r3, r3, r7\n",
            "sub r7, r3, r7, lsl #1\n",
            // x1 = (a1.re + a3.im, a1.im - a3.re), x3 = (a1.re - a3.im, a1.im + a3.re).
            "add r4, r4, r9\n",
            "sub r10, r4, r9, lsl #1\n",
            "sub r5, r5, r8\n",
            "add r11, r5, r8, lsl #1\n",
            "strd r2, r3, [r0]\n",
            "add r12, r0, r1\n",
            "strd r4, r5, [r12]\n",
            "add r12, r12, r1\n",
            "strd r6, r7, [r12]\n",
            "add r12, r12, r1\n",
            "strd r10, r11, [r12]\n",
            "add r0, r0, r1, lsl #2\n",
            "ldr r12, [sp, #40]\n",
            "cmp r0, r12\n",
            "blo ",
            $label,
        )
    };
}

/// The assembly of [`radix4_stage`]. Stack frame: the three twiddles
/// (`W^2` for `x1`, `W` for `x2`, `W^3` for `x3`, each `c, s`) at 0..24,
/// `half_bytes` at 24, `4 t` and the address of point `j` at 32 and 36, the
/// end at 40, `stride_bytes` at 44, the address of point `half` (where `j`
/// stops) at 48, the sine table and `quarter_bytes` at 52 and 56.
///
/// # Safety
///
/// `stage` points to a `Stage` whose fields satisfy [`radix4_stage`]'s
/// checks.
#[unsafe(naked)]
unsafe extern "C" fn radix4_stage_asm(stage: *const Stage) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "sub sp, sp, #60",
        "ldm r0, {{r1-r6}}",
        "str r3, [sp, #24]",
        "str r6, [sp, #40]",
        "str r4, [sp, #44]",
        "strd r2, r5, [sp, #52]",
        "add r8, r1, r3",
        "str r8, [sp, #48]",
        "add r8, r1, #8",
        "strd r4, r8, [sp, #32]",
        // j = 0: no rotation (the portable code's `j == 0` butterflies).
        "mov r0, r1",
        "mov r1, r3",
        "0:",
        load_butterfly!(),
        finish_butterfly!("0b"),
        "ldr r0, [sp, #36]",
        "ldr r2, [sp, #48]",
        "cmp r0, r2",
        "bhs 8f",
        // Per j >= 1: the twiddles, as fft::twiddle_low(t), twiddle(2t), twiddle(3t).
        "1:",
        "ldrd r1, r2, [sp, #52]",
        "ldr r3, [sp, #32]",
        // W = (sine[Q - t], sine[t]): r6, r7.
        "sub r6, r2, r3",
        "ldr r6, [r1, r6]",
        "ldr r7, [r1, r3]",
        // W^2 at u = 2t < 2Q: r4, r5.
        "lsl r10, r3, #1",
        "cmp r10, r2",
        "bhi 2f",
        "sub r4, r2, r10",
        "ldr r4, [r1, r4]",
        "ldr r5, [r1, r10]",
        "b 3f",
        "2:",
        "sub r4, r10, r2",
        "ldr r4, [r1, r4]",
        "rsb r4, r4, #0",
        "rsb r5, r10, r2, lsl #1",
        "ldr r5, [r1, r5]",
        // W^3 at v = 3t < 3Q: r8, r9.
        "3:",
        "add r10, r3, r3, lsl #1",
        "cmp r10, r2",
        "bhi 4f",
        "sub r8, r2, r10",
        "ldr r8, [r1, r8]",
        "ldr r9, [r1, r10]",
        "b 6f",
        "4:",
        "lsl r11, r2, #1",
        "cmp r10, r11",
        "bhs 5f",
        "sub r8, r10, r2",
        "ldr r8, [r1, r8]",
        "rsb r8, r8, #0",
        "sub r9, r11, r10",
        "ldr r9, [r1, r9]",
        "b 6f",
        "5:",
        "add r11, r11, r2",
        "sub r8, r11, r10",
        "ldr r8, [r1, r8]",
        "rsb r8, r8, #0",
        "sub r9, r10, r2, lsl #1",
        "ldr r9, [r1, r9]",
        "rsb r9, r9, #0",
        "6:",
        "stm sp, {{r4-r9}}",
        "ldr r1, [sp, #24]",
        "ldr r0, [sp, #36]",
        // Per group: x1, x2, x3 rotated in place, then the butterfly.
        "7:",
        load_butterfly!(),
        rotate!("r4", "r5", "0"),
        rotate!("r6", "r7", "8"),
        rotate!("r8", "r9", "16"),
        finish_butterfly!("7b"),
        // Next j.
        "ldrd r3, r0, [sp, #32]",
        "ldr r2, [sp, #44]",
        "add r3, r3, r2",
        "add r0, r0, #8",
        "strd r3, r0, [sp, #32]",
        "ldr r2, [sp, #48]",
        "cmp r0, r2",
        "blo 1b",
        "8:",
        "add sp, sp, #60",
        "pop {{r4-r11, pc}}",
    )
}

/// What both FFTs' band routines rely on: the edges rise from at least 1
/// (bin 0 is its own mirror) to at most `points`, `bins` holds a triple per
/// bin, `out` a log per band, `log` its 65 entries, and the sizes stay far
/// from overflowing the assembly's 32-bit offsets. Returns the segments,
/// `edges.len() - 1`.
pub(super) fn filterbank_fits(
    points: usize,
    bins: &[i32],
    edges: &[i32],
    log: &[i32],
    out: &[i32],
) -> Option<usize> {
    let segments = edges.len().saturating_sub(1);
    let (&first, &last) = (edges.first()?, edges.last()?);
    let rising = edges
        .windows(2)
        .all(|pair| matches!(pair, [a, b] if a <= b));
    let fits = first >= 1
        && last as usize <= points
        && rising
        && bins.len() >= 3 * (last - first) as usize
        && out.len() + 1 >= segments
        && log.len() >= 65
        && points <= 1 << 20;
    fits.then_some(segments)
}

/// `log2_q16` (`mod.rs`) of the `u64` in r4:r5 into r10, with the table's
/// address at `[r12, #24]` (the `log` field of both FFTs' `Bands`). Uses
/// r6-r11 and the local labels 4 and 5.
macro_rules! log2_q16 {
    () => {
        concat!(
            "orrs r6, r4, r5\n",
            "it eq\n",
            "moveq r4, #1\n",
            "cmp r5, #0\n",
            "bne 4f\n",
            "clz r6, r4\n",
            "lsl r7, r4, r6\n",
            "add r6, r6, #32\n",
            "b 5f\n",
            "4:\n",
            "clz r6, r5\n",
            "lsl r7, r5, r6\n",
            "rsb r8, r6, #32\n",
            "lsr r8, r4, r8\n",
            "orr r7, r7, r8\n",
            "5:\n",
            "ubfx r8, r7, #25, #6\n",
            "ubfx r9, r7, #9, #16\n",
            "ldr r10, [r12, #24]\n",
            "add r10, r10, r8, lsl #2\n",
            "ldrd r10, r11, [r10]\n",
            "sub r11, r11, r10\n",
            "mul r11, r11, r9\n",
            "add r11, r11, #0x8000\n",
            "asr r11, r11, #16\n",
            "rsb r6, r6, #63\n",
            "add r10, r10, r6, lsl #16\n",
            "add r10, r10, r11",
        )
    };
}
// The 16-bit FFT's bands (`dsp16.rs`) take their logarithms the same way.
pub(super) use log2_q16;

/// What [`bands_asm`] reads, at the offsets its assembly names.
#[repr(C)]
struct Bands {
    /// The FFT's points.
    z: *const i32,
    /// `8 * M`: bytes of the points.
    points_bytes: u32,
    /// The filterbank's bins, `[weight, cos, sin]` each.
    bins: *const i32,
    /// The segments' first bins, then the end.
    edges: *const i32,
    /// Segments: `edges.len() - 1`.
    segments: u32,
    /// One log energy per band.
    out: *mut i32,
    /// The `log2` table, 65 entries.
    log: *const i32,
    /// The log floor in the units of the band energies.
    floor: u64,
    /// Added to each `log2`: the block exponent and the floor's scale.
    offset: i32,
    /// `2^power_shift / 2`.
    power_half: u32,
    /// Right shift of each bin's power.
    power_shift: u32,
    /// `32 - power_shift`.
    power_shift_complement: u32,
}

/// `FrontEnd::bands` (the split step of `fft::real_bin`, the power, the
/// filterbank and `log2_q16` of each band) into the first `edges.len() - 2`
/// words of `out`; returns `false`, having done nothing, unless the edges
/// rise from at least 1 (bin 0 is its own mirror) to at most `M`, `bins`
/// holds a triple per bin, `out` a log per band and `log` its 65 entries.
#[allow(clippy::too_many_arguments)] // FrontEnd::bands' state, one argument each.
pub(super) fn bands(
    z: &[Complex],
    bins: &[i32],
    edges: &[i32],
    log: &[i32],
    floor: u64,
    offset: i32,
    power_shift: u32,
    out: &mut [i32],
) -> bool {
    let points = z.len();
    let Some(segments) = filterbank_fits(points, bins, edges, log, out) else {
        return false;
    };
    if power_shift > 31 {
        return false;
    }
    let args = Bands {
        z: z.as_ptr().cast(),
        points_bytes: (8 * points) as u32,
        bins: bins.as_ptr(),
        edges: edges.as_ptr(),
        segments: segments as u32,
        out: out.as_mut_ptr(),
        log: log.as_ptr(),
        floor,
        offset,
        power_half: (1u32 << power_shift) >> 1,
        power_shift,
        power_shift_complement: 32 - power_shift,
    };
    // SAFETY: the routine reads the points `k` and `M - k` for `k` in
    // `edges[0]..edges[last]`, inside `z` (`1 <= k < M`, checked above, the
    // edges rising); a triple of `bins` per such `k` (checked); `log` at
    // indices up to 64 (checked); and writes `segments - 1` logs into `out`
    // (checked). `args` outlives the call.
    unsafe { bands_asm(&raw const args) };
    true
}

/// The assembly of [`bands`]. Stack frame: rising and falling (u64) at 0
/// and 8, `power_half` at 16, `power_shift` and its complement at 20, the
/// `Bands` pointer at 28, the segment at 32, the edge pointer at 36, the
/// output pointer at 40. Registers over the bins: r0 the point `k`, r1 the
/// point `M - k`, r2 the bin's triple, r3 the end of the segment's points.
///
/// # Safety
///
/// `args` points to a `Bands` whose fields satisfy [`bands`]' checks.
#[unsafe(naked)]
unsafe extern "C" fn bands_asm(args: *const Bands) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "sub sp, sp, #44",
        "str r0, [sp, #28]",
        "movs r4, #0",
        "movs r5, #0",
        "strd r4, r5, [sp, #0]",
        "strd r4, r5, [sp, #8]",
        "str r4, [sp, #32]",
        "ldr r4, [r0, #44]",
        "str r4, [sp, #16]",
        "ldrd r4, r5, [r0, #48]",
        "strd r4, r5, [sp, #20]",
        "ldr r4, [r0, #20]",
        "str r4, [sp, #40]",
        "ldr r4, [r0, #12]",
        "str r4, [sp, #36]",
        // r0 = z + 8 edges[0], r1 = z + 8 (M - edges[0]), r2 = bins.
        "ldr r5, [r4]",
        "ldr r6, [r0, #0]",
        "ldr r7, [r0, #4]",
        "ldr r2, [r0, #8]",
        "add r1, r6, r7",
        "sub r1, r1, r5, lsl #3",
        "add r0, r6, r5, lsl #3",
        // Per segment: r3 = z + 8 edges[s + 1].
        "1:",
        "ldr r4, [sp, #36]",
        "ldr r3, [r4, #4]!",
        "str r4, [sp, #36]",
        "ldr r5, [sp, #28]",
        "ldr r5, [r5, #0]",
        "add r3, r5, r3, lsl #3",
        "cmp r0, r3",
        "bhs 3f",
        // Per bin: the halves of A = Z_k (r4, r5) and B = Z_(M-k) (r6, r7).
        "2:",
        "ldrd r4, r5, [r0], #8",
        "ldrd r6, r7, [r1], #-8",
        "asr r4, r4, #1",
        "asr r5, r5, #1",
        "asr r6, r6, #1",
        "asr r7, r7, #1",
        // even (r8, r9), odd (r5, r4).
        "add r8, r4, r6",
        "sub r9, r5, r7",
        "add r5, r5, r7",
        "sub r4, r6, r4",
        // weight r6, cos r7, sin r10.
        "ldm r2!, {{r6, r7, r10}}",
        // re = even_re + descale(c odd_re + s odd_im): r8.
        "smull r11, r12, r7, r5",
        "smlal r11, r12, r10, r4",
        "adds r11, r11, #0x20000000",
        "adc r12, r12, #0",
        "lsr r11, r11, #30",
        "orr r11, r11, r12, lsl #2",
        "add r8, r8, r11",
        // im = even_im + descale(c odd_im - s odd_re): r9.
        "smull r11, r12, r7, r4",
        "rsb r5, r5, #0",
        "smlal r11, r12, r10, r5",
        "adds r11, r11, #0x20000000",
        "adc r12, r12, #0",
        "lsr r11, r11, #30",
        "orr r11, r11, r12, lsl #2",
        "add r9, r9, r11",
        // power = (re^2 + im^2 + half) >> shift: r4, r5.
        "smull r4, r5, r8, r8",
        "smlal r4, r5, r9, r9",
        "ldr r7, [sp, #16]",
        "adds r4, r4, r7",
        "adc r5, r5, #0",
        "ldrd r7, r10, [sp, #20]",
        "lsr r4, r4, r7",
        "lsl r11, r5, r10",
        "orr r4, r4, r11",
        "lsr r5, r5, r7",
        // up = (power >> 15) w + ((power & 0x7fff) w >> 15): r12, r10.
        "ubfx r11, r4, #0, #15",
        "mul r11, r11, r6",
        "lsr r11, r11, #15",
        "lsr r12, r4, #15",
        "orr r12, r12, r5, lsl #17",
        "lsr r7, r5, #15",
        "umull r12, r10, r12, r6",
        "mla r10, r7, r6, r10",
        "adds r12, r12, r11",
        "adc r10, r10, #0",
        // rising += up; falling += power - up.
        "subs r4, r4, r12",
        "sbc r5, r5, r10",
        "ldrd r6, r7, [sp, #0]",
        "adds r6, r6, r12",
        "adc r7, r7, r10",
        "strd r6, r7, [sp, #0]",
        "ldrd r6, r7, [sp, #8]",
        "adds r6, r6, r4",
        "adc r7, r7, r5",
        "strd r6, r7, [sp, #8]",
        "cmp r0, r3",
        "blo 2b",
        // End of segment s: band s - 1 is complete (none for s = 0).
        "3:",
        "ldr r4, [sp, #32]",
        "cmp r4, #0",
        "beq 6f",
        // log2_q16(falling + floor) + offset.
        "ldr r12, [sp, #28]",
        "ldrd r4, r5, [sp, #8]",
        "ldrd r6, r7, [r12, #32]",
        "adds r4, r4, r6",
        "adc r5, r5, r7",
        log2_q16!(),
        "ldr r8, [r12, #40]",
        "add r10, r10, r8",
        "ldr r8, [sp, #40]",
        "str r10, [r8], #4",
        "str r8, [sp, #40]",
        // falling = rising; rising = 0.
        "6:",
        "ldrd r4, r5, [sp, #0]",
        "strd r4, r5, [sp, #8]",
        "movs r4, #0",
        "movs r5, #0",
        "strd r4, r5, [sp, #0]",
        "ldr r4, [sp, #32]",
        "add r4, r4, #1",
        "str r4, [sp, #32]",
        "ldr r5, [sp, #28]",
        "ldr r5, [r5, #16]",
        "cmp r4, r5",
        "blo 1b",
        "add sp, sp, #44",
        "pop {{r4-r11, pc}}",
    )
}

/// What [`window_first_stage_asm`] reads, at the offsets its assembly names.
#[repr(C)]
struct Window {
    /// The frame's samples.
    frame: *const i16,
    /// The window, Q31.
    window: *const i32,
    /// The FFT's points.
    z: *mut i32,
    /// `M / 4`: the first stage's groups.
    groups: u32,
    /// Samples in the frame.
    samples: u32,
    /// `32 - log2(M / 4)`: turns `RBIT(g)` into the group's reversed index.
    reverse_shift: u32,
}

/// `FrontEnd::window_and_first_stage`: the block exponent from `sum |x|`,
/// the windowed points and the FFT's first stage, into `z`. Returns `None`,
/// having done nothing, unless the frame and the window have the same
/// length, a multiple of 4 of at least `3/4` of the FFT's size (so that only
/// a group's fourth point can lie past the window), and `z` has a power of
/// two of at least 32 points.
pub(super) fn window_first_stage(frame: &[i16], window: &[i32], z: &mut [Complex]) -> Option<u32> {
    let points = z.len();
    let samples = frame.len();
    if samples != window.len()
        || !samples.is_multiple_of(4)
        || !points.is_power_of_two()
        || points < 32
        || samples > 2 * points
        || 4 * samples < 6 * points
    {
        return None;
    }
    let groups = points / 4;
    let args = Window {
        frame: frame.as_ptr(),
        window: window.as_ptr(),
        z: z.as_mut_ptr().cast(),
        groups: groups as u32,
        samples: samples as u32,
        reverse_shift: 32 - groups.trailing_zeros(),
    };
    // SAFETY: the routine reads the frame's `samples` samples and the
    // window's `samples` words (equal lengths, a multiple of 4, checked);
    // per group `g < M/4` it reads the pairs `r`, `r + M/4`, `r + M/2`
    // (below `3M/4 <= samples / 2`, checked) and `r + 3M/4` only when it lies
    // inside the frame, and writes the group's 8 words, inside `z`. `args`
    // outlives the call.
    Some(unsafe { window_first_stage_asm(&raw const args) })
}

/// One windowed point, `x * w` rounded by `SMMULR` as the portable `scale`
/// does, from the sample pair at `r0 + OFFSET` and the weights at
/// `r1 + 2 OFFSET`, into `(RE, IM)` (which first take the weights); the
/// shifts `x << (16 - e)` as `(x << 16) >> e`, `e` in r2. Uses r12 and lr.
macro_rules! windowed {
    ($re:literal, $im:literal, $load:literal, $address:literal) => {
        concat!(
            $load,
            "\n",
            $address,
            "\n",
            "ldrd ",
            $re,
            ", ",
            $im,
            ", [lr]\n",
            "lsl lr, r12, #16\n",
            "asr lr, lr, r2\n",
            "smmulr ",
            $re,
            ", lr, ",
            $re,
            "\n",
            "bfc r12, #0, #16\n",
            "asr r12, r12, r2\n",
            "smmulr ",
            $im,
            ", r12, ",
            $im,
        )
    };
}

/// The assembly of [`window_first_stage`]; returns the exponent. Stack
/// frame: the frame at 0, the window at 4, the output point at 8, the
/// groups at 12, the end of the frame at 16, the reverse shift at 20, `g` at
/// 24, the exponent at 28. Over a group: r0 the frame at pair `r`, r1 the
/// window at `r`, r2 the exponent, r3 `4 M/4` (bytes of `M/4` pairs).
///
/// # Safety
///
/// `args` points to a `Window` whose fields satisfy [`window_first_stage`]'s
/// checks.
#[unsafe(naked)]
unsafe extern "C" fn window_first_stage_asm(args: *const Window) -> u32 {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "sub sp, sp, #36",
        "ldm r0, {{r1-r6}}",
        "stm sp, {{r1-r4}}",
        "add r7, r1, r5, lsl #1",
        "str r7, [sp, #16]",
        "str r6, [sp, #20]",
        "movs r7, #0",
        "str r7, [sp, #24]",
        // sum |x|: s = -1 where 0 - x >= 0, else +1; SMLAD adds x s.
        "movs r2, #0",
        "movs r3, #0",
        "mvn r4, #0",
        "mov r5, #0x00010001",
        "ldr r9, [sp, #16]",
        "1:",
        "ldr r6, [r1], #4",
        "ldr r7, [r1], #4",
        "ssub16 r8, r3, r6",
        "sel r8, r4, r5",
        "smlad r2, r6, r8, r2",
        "ssub16 r8, r3, r7",
        "sel r8, r4, r5",
        "smlad r2, r7, r8, r2",
        "cmp r1, r9",
        "blo 1b",
        // e = max(0, 17 - clz(total)): bits(total << 15) - 30, at most 10.
        "clz r3, r2",
        "rsbs r2, r3, #17",
        "it mi",
        "movmi r2, #0",
        "str r2, [sp, #28]",
        "ldr r3, [sp, #12]",
        "lsl r3, r3, #2",
        // Per group g: r = reverse(g), the points r, r + 2Q, r + Q, r + 3Q
        // (Q = M/4) into r4-r11, the butterfly, eight words out.
        "2:",
        "ldr r10, [sp, #24]",
        "add r11, r10, #1",
        "str r11, [sp, #24]",
        "rbit r10, r10",
        "ldr r11, [sp, #20]",
        "lsr r10, r10, r11",
        "ldrd r0, r1, [sp, #0]",
        "add r0, r0, r10, lsl #2",
        "add r1, r1, r10, lsl #3",
        windowed!("r4", "r5", "ldr r12, [r0]", "mov lr, r1"),
        windowed!(
            "r6",
            "r7",
            "ldr r12, [r0, r3, lsl #1]",
            "add lr, r1, r3, lsl #2"
        ),
        windowed!("r8", "r9", "ldr r12, [r0, r3]", "add lr, r1, r3, lsl #1"),
        "add lr, r3, r3, lsl #1",
        "add r12, r0, lr",
        "ldr r11, [sp, #16]",
        "cmp r12, r11",
        "bhs 3f",
        windowed!("r10", "r11", "ldr r12, [r12]", "add lr, r1, lr, lsl #1"),
        "b 4f",
        "3:",
        "movs r10, #0",
        "movs r11, #0",
        "4:",
        // a0 = x0 + x1 (r4, r5), a1 = x0 - x1 (r6, r7).
        "add r4, r4, r6",
        "sub r6, r4, r6, lsl #1",
        "add r5, r5, r7",
        "sub r7, r5, r7, lsl #1",
        // a2 = x2 + x3 (r8, r9), a3 = x2 - x3 (r10, r11).
        "add r8, r8, r10",
        "sub r10, r8, r10, lsl #1",
        "add r9, r9, r11",
        "sub r11, r9, r11, lsl #1",
        // out0 = a0 + a2 (r4, r5), out2 = a0 - a2 (r8, r9).
        "add r4, r4, r8",
        "sub r8, r4, r8, lsl #1",
        "add r5, r5, r9",
        "sub r9, r5, r9, lsl #1",
        // out1 = (a1.re + a3.im, a1.im - a3.re) (r6, r7),
        // out3 = (a1.re - a3.im, a1.im + a3.re) (r12, lr).
        "add r6, r6, r11",
        "sub r12, r6, r11, lsl #1",
        "sub r7, r7, r10",
        "add lr, r7, r10, lsl #1",
        "ldr r0, [sp, #8]",
        "stm r0!, {{r4-r9, r12, lr}}",
        "str r0, [sp, #8]",
        "ldr r10, [sp, #24]",
        "ldr r11, [sp, #12]",
        "cmp r10, r11",
        "blo 2b",
        "ldr r0, [sp, #28]",
        "add sp, sp, #36",
        "pop {{r4-r11, pc}}",
    )
}

/// One DCT coefficient's sum of `FrontEnd::quantise`: `sum of d_b l_b` over
/// the bands, `d` the row's Q15 weights packed two a word and `l` the Q16
/// log energies, in `i64` (`SMLAL` forms each exact product and the exact
/// sum). `None` unless `logs` holds two values per weight word (at least one
/// word).
pub(super) fn dct_dot(weights: &[i32], logs: &[i32]) -> Option<i64> {
    let pairs = weights.len();
    if pairs == 0 || logs.len() != 2 * pairs || pairs > 1 << 20 {
        return None;
    }
    // SAFETY: the routine reads `pairs` words of `weights` and `2 pairs` of
    // `logs` (checked above).
    Some(unsafe { dct_dot_asm(logs.as_ptr(), weights.as_ptr(), pairs as u32) })
}

/// The assembly of [`dct_dot`]: r0 the logs, r1 the weights, r2 the pairs
/// left; the sum in r4:r5, returned in r0:r1.
///
/// # Safety
///
/// `logs` holds `2 pairs` words and `weights` `pairs` words, `pairs >= 1`.
#[unsafe(naked)]
unsafe extern "C" fn dct_dot_asm(logs: *const i32, weights: *const i32, pairs: u32) -> i64 {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r7, lr}}",
        "movs r4, #0",
        "movs r5, #0",
        "1:",
        "ldr r6, [r1], #4",
        "ldrd r3, r7, [r0], #8",
        "sxth r12, r6",
        "smlal r4, r5, r12, r3",
        "asr r6, r6, #16",
        "smlal r4, r5, r6, r7",
        "subs r2, r2, #1",
        "bne 1b",
        "mov r0, r4",
        "mov r1, r5",
        "pop {{r4-r7, pc}}",
    )
}
