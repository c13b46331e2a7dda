//! The 16-bit FFT's hot loops ([`FftArithmetic::Int16`](super::FftArithmetic))
//! for Arm cores with the DSP extension (Cortex-M4, M7, M33), bit-identical
//! to the portable code of `fft16.rs` and `FrontEnd::bands16`.
//!
//! As in `dsp.rs`, `unsafe` is allowed here only: routines in inline
//! assembly, each behind a safe function that checks the sizes the assembly
//! relies on and returns `false`, having done nothing, when they do not hold.
//!
//! # Why the results are the portable ones, bit for bit
//!
//! `fft16.rs` defines its operations as those of the DSP instructions, lane
//! by lane: `SHADD16`, `SHSUB16`, `SHSAX`, `SHASX` form each lane's sum or
//! difference in 17 bits and shift it right by one, as the portable
//! `(a + b) >> 1` on `i32` does; `SMUAD` and `SMUSDX` form `re c + im s` and
//! `c im - s re` exactly (below `2^31`, see `fft16.rs`), and `ASR #15` with
//! `PKHBT ..., LSL #1` takes bits 15 to 30 of each, the portable `>> 15`
//! packed into a lane. The window's `SMLABB`/`SMLATT` add the rounding
//! constant to the exact 32-bit product and `ASR` shifts by the same count.
//! The largest magnitude of the frame is found as the OR of the lanes'
//! magnitudes (`SSUB16` from zero sets a lane's flag when the sample is at
//! most 0, `SEL` takes the negation there; `0 - (-32768)` is `0x8000`, read
//! as 32,768), which has the same highest bit as the maximum. The bands'
//! `UMLAL` accumulates the exact 64-bit products of the portable `u64` sums.
//!
//! The frame's samples are read with `LDR`s that may be unaligned (a frame
//! is an `i16` slice), as in `dsp.rs`. The firmware's `frontend` binary runs
//! frames through both paths and compares the work buffers and the bytes.

#![allow(unsafe_code)]

use core::arch::naked_asm;

use super::dsp::{filterbank_fits, log2_q16};
use crate::kernels::dsp::naked_prelude;

/// What [`radix4_stage_asm`] reads, at the offsets its assembly names.
#[repr(C)]
struct Stage {
    /// The FFT's points, one packed word each.
    z: *mut i32,
    /// The stage's twiddle triples, for `j = 1..half`.
    twiddles: *const i32,
    /// `4 * half`: bytes between the four points of a butterfly.
    half_bytes: u32,
    /// One past the last point.
    end: *mut i32,
}

/// `fft16::radix4_stages` of span `half`. Returns `false`, having done
/// nothing, unless `4 <= half`, `4 * half` divides `z.len()` and `twiddles`
/// holds the stage's `3 (half - 1)` words.
pub(super) fn radix4_stage(z: &mut [i32], twiddles: &[i32], half: usize) -> bool {
    let points = z.len();
    if half < 4
        || !points.is_multiple_of(4 * half)
        || twiddles.len() < 3 * (half - 1)
        || points > 1 << 20
    {
        return false;
    }
    let range = z.as_mut_ptr_range();
    let stage = Stage {
        z: range.start,
        twiddles: twiddles.as_ptr(),
        half_bytes: (4 * half) as u32,
        end: range.end,
    };
    // SAFETY: per group of `4 half` points (`4 half` divides `z.len()`,
    // checked) the routine reads and writes the points `j + {0, 1, 2, 3}
    // half` for `j < half`, inside the group, and reads the twiddle words
    // `0..3 (half - 1)` (checked); `stage` outlives the call.
    unsafe { radix4_stage_asm(&raw const stage) };
    true
}

/// The halving radix-4 butterfly of `fft16::butterfly` on `x0` (r5) and
/// `t1..t3` (r6-r8) into r5-r8 (outputs 0, 2 in r7, r8; 1, 3 in r10, r11:
/// see the stores). Uses r9-r11.
macro_rules! butterfly {
    () => {
        concat!(
            "shadd16 r10, r5, r6\n",
            "shsub16 r11, r5, r6\n",
            "shadd16 r5, r7, r8\n",
            "shsub16 r6, r7, r8\n",
            "shadd16 r7, r10, r5\n",
            "shsub16 r8, r10, r5\n",
            "shsax r10, r11, r6\n",
            "shasx r11, r11, r6",
        )
    };
}

/// `fft16::rotate` of `X` by the twiddle `W`, in place. Uses r10, r11.
macro_rules! rotate {
    ($x:literal, $w:literal) => {
        concat!(
            "smuad r10, ",
            $x,
            ", ",
            $w,
            "\n",
            "smusdx r11, ",
            $w,
            ", ",
            $x,
            "\n",
            "asr r10, r10, #15\n",
            "pkhbt ",
            $x,
            ", r10, r11, lsl #1",
        )
    };
}

/// The assembly of [`radix4_stage`]. Registers: r0 the point `j` of the
/// group, r1 `4 half`, r12 `12 half` (bytes to the butterfly's fourth point),
/// r9 the point `half` of the group (where `j` stops), lr the next twiddle
/// triple; the data in r5-r8, the twiddles in r2-r4. Stack: the twiddles'
/// start at 0, the end of the points at 4.
///
/// # Safety
///
/// `stage` points to a `Stage` whose fields satisfy [`radix4_stage`]'s checks.
#[unsafe(naked)]
unsafe extern "C" fn radix4_stage_asm(stage: *const Stage) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "sub sp, sp, #8",
        "ldm r0, {{r0-r3}}",
        "strd r1, r3, [sp, #0]",
        "mov r1, r2",
        "add r12, r1, r1, lsl #1",
        // Per group: j = 0 without rotations.
        "1:",
        "ldr r5, [r0]",
        "ldr r6, [r0, r1]",
        "ldr r7, [r0, r1, lsl #1]",
        "ldr r8, [r0, r12]",
        butterfly!(),
        "str r8, [r0, r1, lsl #1]",
        "str r10, [r0, r1]",
        "str r11, [r0, r12]",
        "str r7, [r0], #4",
        "add r9, r0, r1",
        "sub r9, r9, #4",
        "ldr lr, [sp, #0]",
        "cmp r0, r9",
        "bhs 3f",
        // j = 1 .. half - 1: x1 by W^2j (r2), x2 by W^j (r3), x3 by W^3j (r4).
        "2:",
        "ldm lr!, {{r2-r4}}",
        "ldr r6, [r0, r1]",
        "ldr r7, [r0, r1, lsl #1]",
        "ldr r8, [r0, r12]",
        rotate!("r6", "r2"),
        rotate!("r7", "r3"),
        rotate!("r8", "r4"),
        "ldr r5, [r0]",
        butterfly!(),
        "str r8, [r0, r1, lsl #1]",
        "str r10, [r0, r1]",
        "str r11, [r0, r12]",
        "str r7, [r0], #4",
        "cmp r0, r9",
        "blo 2b",
        // Next group: from point `half` to point `4 half`.
        "3:",
        "add r0, r0, r12",
        "ldr r2, [sp, #4]",
        "cmp r0, r2",
        "blo 1b",
        "add sp, sp, #8",
        "pop {{r4-r11, pc}}",
    )
}

/// What [`window_first_stage_asm`] reads, at the offsets its assembly names.
#[repr(C)]
struct Window {
    /// The frame's samples.
    frame: *const i16,
    /// The window, Q15, two samples a word.
    window: *const i32,
    /// The FFT's points.
    z: *mut i32,
    /// `M / 4`: the first stage's groups.
    groups: u32,
    /// One past the frame's last sample.
    frame_end: *const i16,
    /// `32 - log2(M / 4)`: turns `RBIT(g)` into the group's reversed index.
    reverse_shift: u32,
}

/// `fft16::window_first_stage`: the exponent from the frame's largest
/// magnitude, the scaled and windowed points and the first stage, into `z`.
/// Returns `None`, having done nothing, unless the window holds the frame's
/// length (a multiple of 4, at least `3/4` of the FFT's size, so that only a
/// group's fourth point can lie past it) and `z` has a power of two of at
/// least 16 points.
pub(super) fn window_first_stage(frame: &[i16], window: &[i32], z: &mut [i32]) -> Option<i32> {
    let points = z.len();
    let samples = frame.len();
    if 2 * window.len() != samples
        || !samples.is_multiple_of(4)
        || !points.is_power_of_two()
        || points < 16
        || samples > 2 * points
        || 2 * samples < 3 * points
    {
        return None;
    }
    let groups = points / 4;
    let range = frame.as_ptr_range();
    let args = Window {
        frame: range.start,
        window: window.as_ptr(),
        z: z.as_mut_ptr(),
        groups: groups as u32,
        frame_end: range.end,
        reverse_shift: 32 - groups.trailing_zeros(),
    };
    // SAFETY: the routine reads the frame's samples, two words at a time
    // (a multiple of 4 samples, checked), and per group `g < M/4` the sample
    // pairs and window words `r`, `r + M/4`, `r + M/2` (below `3M/4 <=
    // samples / 2`, checked) and `r + 3M/4` only when it lies inside the
    // frame (the window has a word per pair, checked); it writes the group's
    // 4 words, inside `z`. `args` outlives the call.
    Some(unsafe { window_first_stage_asm(&raw const args) })
}

/// One scaled, windowed point from the sample pair at `[r0, OFFSET]` and the
/// window word at `[r1, OFFSET]` into `P`: each lane `(x w + r2) >> r4`.
/// Uses r9-r11.
macro_rules! windowed {
    ($p:literal, $offset:literal) => {
        concat!(
            "ldr r9, [r0",
            $offset,
            "]\n",
            "ldr r10, [r1",
            $offset,
            "]\n",
            "smlabb ",
            $p,
            ", r9, r10, r2\n",
            "smlatt r11, r9, r10, r2\n",
            "asr ",
            $p,
            ", ",
            $p,
            ", r4\n",
            "asr r11, r11, r4\n",
            "pkhbt ",
            $p,
            ", ",
            $p,
            ", r11, lsl #16",
        )
    };
}

/// The assembly of [`window_first_stage`]; returns the exponent. Stack: the
/// frame and the window at 0 and 4, the output point at 8, the groups at
/// 12, the frame's end at 16, the reverse shift at 20. Over a group: r0 the
/// frame at pair `r`, r1 the window at `r`, r2 the rounding constant, r3
/// `4 M/4` (bytes of `M/4` pairs), r4 the shift, lr the group `g`.
///
/// # Safety
///
/// `args` points to a `Window` whose fields satisfy [`window_first_stage`]'s
/// checks.
#[unsafe(naked)]
unsafe extern "C" fn window_first_stage_asm(args: *const Window) -> i32 {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "sub sp, sp, #28",
        "ldm r0, {{r1-r6}}",
        "stm sp, {{r1-r6}}",
        // The OR of |x| over the frame, lane by lane.
        "movs r2, #0",
        "movs r3, #0",
        "1:",
        "ldr r6, [r1], #4",
        "ldr r7, [r1], #4",
        "ssub16 r8, r3, r6",
        "sel r8, r8, r6",
        "orr r2, r2, r8",
        "ssub16 r8, r3, r7",
        "sel r8, r8, r7",
        "orr r2, r2, r8",
        "cmp r1, r5",
        "blo 1b",
        // e = 14 - bits = clz - 18; shift 15 - e = 33 - clz; round 2^(shift - 1).
        "orr r2, r2, r2, lsr #16",
        "uxth r2, r2",
        "clz r2, r2",
        "sub r0, r2, #18",
        "str r0, [sp, #24]",
        "rsb r4, r2, #33",
        "sub r2, r4, #1",
        "movs r3, #1",
        "lsl r2, r3, r2",
        "ldr r3, [sp, #12]",
        "lsl r3, r3, #2",
        "mov lr, #0",
        // Per group g: r = reverse(g), the points r, r + 2Q, r + Q, r + 3Q
        // (Q = M/4) into r5-r8, the butterfly, four words out.
        "2:",
        "rbit r10, lr",
        "ldr r11, [sp, #20]",
        "lsr r10, r10, r11",
        "add lr, lr, #1",
        "ldrd r0, r1, [sp, #0]",
        "add r0, r0, r10, lsl #2",
        "add r1, r1, r10, lsl #2",
        windowed!("r5", ""),
        windowed!("r6", ", r3, lsl #1"),
        windowed!("r7", ", r3"),
        "add r12, r3, r3, lsl #1",
        "add r11, r0, r12",
        "ldr r9, [sp, #16]",
        "cmp r11, r9",
        "bhs 3f",
        windowed!("r8", ", r12"),
        "b 4f",
        "3:",
        "movs r8, #0",
        "4:",
        butterfly!(),
        // Outputs 0, 1, 2, 3 are r7, r10, r8, r11.
        "ldr r12, [sp, #8]",
        "str r10, [r12, #4]",
        "str r8, [r12, #8]",
        "str r11, [r12, #12]",
        "str r7, [r12], #16",
        "str r12, [sp, #8]",
        "ldr r11, [sp, #12]",
        "cmp lr, r11",
        "blo 2b",
        "ldr r0, [sp, #24]",
        "add sp, sp, #28",
        "pop {{r4-r11, pc}}",
    )
}

/// What [`bands_asm`] reads, at the offsets its assembly names.
#[repr(C)]
struct Bands {
    /// The FFT's points.
    z: *const i32,
    /// `4 * M`: bytes of the points.
    points_bytes: u32,
    /// The filterbank's bins, `[twiddle, rising, falling]` each.
    bins: *const i32,
    /// The segments' first bins, then the end.
    edges: *const i32,
    /// Segments: `edges.len() - 1`.
    segments: u32,
    /// One log energy per band.
    out: *mut i32,
    /// The `log2` table, 65 entries.
    log: *const i32,
    /// Added to each `log2`: the scale of the band energies.
    offset: i32,
    /// The log floor in the units of the band energies.
    floor: u64,
}

/// `FrontEnd::bands16` (the split step and power of `fft16::half_bin_power`,
/// the filterbank and `log2_q16` of each band) into the first
/// `edges.len() - 2` words of `out`; returns `false`, having done nothing,
/// unless the edges rise from at least 1 (bin 0 is its own mirror) to at
/// most `M`, `bins` holds a triple per bin, `out` a log per band and `log`
/// its 65 entries.
pub(super) fn bands(
    z: &[i32],
    bins: &[i32],
    edges: &[i32],
    log: &[i32],
    floor: u64,
    offset: i32,
    out: &mut [i32],
) -> bool {
    let points = z.len();
    let Some(segments) = filterbank_fits(points, bins, edges, log, out) else {
        return false;
    };
    let args = Bands {
        z: z.as_ptr(),
        points_bytes: (4 * points) as u32,
        bins: bins.as_ptr(),
        edges: edges.as_ptr(),
        segments: segments as u32,
        out: out.as_mut_ptr(),
        log: log.as_ptr(),
        offset,
        floor,
    };
    // SAFETY: the routine reads the points `k` and `M - k` for `k` in
    // `edges[0]..edges[last]`, inside `z` (`1 <= k < M`, checked above, the
    // edges rising); a triple of `bins` per such `k` (checked); `log` at
    // indices up to 64 (checked); and writes `segments - 1` logs into `out`
    // (checked). `args` outlives the call.
    unsafe { bands_asm(&raw const args) };
    true
}

/// The assembly of [`bands`]. Registers over the bins: r0 the point `k`, r1
/// the point `M - k`, r2 the bin's triple, r3 the end of the segment's
/// points, r4:r5 rising, r6:r7 falling; r8-r12 and lr temporaries. Stack:
/// the `Bands` pointer at 0, the segment at 4, the edge pointer at 8, the
/// output pointer at 12.
///
/// # Safety
///
/// `args` points to a `Bands` whose fields satisfy [`bands`]' checks.
#[unsafe(naked)]
unsafe extern "C" fn bands_asm(args: *const Bands) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "sub sp, sp, #16",
        "str r0, [sp, #0]",
        "movs r4, #0",
        "movs r5, #0",
        "movs r6, #0",
        "movs r7, #0",
        "str r4, [sp, #4]",
        "ldr r8, [r0, #20]",
        "str r8, [sp, #12]",
        "ldr r8, [r0, #12]",
        "str r8, [sp, #8]",
        // r0 = z + 4 edges[0], r1 = z + 4 (M - edges[0]), r2 = bins.
        "ldr r9, [r8]",
        "ldr r10, [r0, #0]",
        "ldr r11, [r0, #4]",
        "ldr r2, [r0, #8]",
        "add r1, r10, r11",
        "sub r1, r1, r9, lsl #2",
        "add r0, r10, r9, lsl #2",
        // Per segment: r3 = z + 4 edges[s + 1].
        "1:",
        "ldr r8, [sp, #8]",
        "ldr r3, [r8, #4]!",
        "str r8, [sp, #8]",
        "ldr r8, [sp, #0]",
        "ldr r8, [r8, #0]",
        "add r3, r8, r3, lsl #2",
        "cmp r0, r3",
        "bhs 3f",
        // Per bin: A (r8), Z_(M-k) (r9), the twiddle (lr).
        "2:",
        "ldr r8, [r0], #4",
        "ldr r9, [r1], #-4",
        "ldr lr, [r2], #12",
        "shadd16 r11, r8, r9",
        "shsub16 r12, r8, r9",
        // even (r8), odd (r9).
        "pkhbt r8, r11, r12",
        "pkhbt r9, r12, r11",
        rotate!("r9", "lr"),
        "shadd16 r8, r8, r9",
        "smuad r8, r8, r8",
        "ldrd r9, r10, [r2, #-8]",
        "umlal r4, r5, r8, r9",
        "umlal r6, r7, r8, r10",
        "cmp r0, r3",
        "blo 2b",
        // End of segment s: band s - 1 is complete (none for s = 0).
        "3:",
        "ldr r8, [sp, #4]",
        "cmp r8, #0",
        "beq 6f",
        // log2_q16(falling + floor) + offset, rising kept on the stack meanwhile.
        "push {{r4, r5}}",
        "ldr r12, [sp, #8]",
        "ldrd r8, r9, [r12, #32]",
        "adds r4, r6, r8",
        "adc r5, r7, r9",
        log2_q16!(),
        "ldr r8, [r12, #28]",
        "add r10, r10, r8",
        "ldr r8, [sp, #20]",
        "str r10, [r8], #4",
        "str r8, [sp, #20]",
        "pop {{r4, r5}}",
        // falling = rising; rising = 0.
        "6:",
        "mov r6, r4",
        "mov r7, r5",
        "movs r4, #0",
        "movs r5, #0",
        "ldr r8, [sp, #4]",
        "add r8, r8, #1",
        "str r8, [sp, #4]",
        "ldr r9, [sp, #0]",
        "ldr r9, [r9, #16]",
        "cmp r8, r9",
        "blo 1b",
        "add sp, sp, #16",
        "pop {{r4-r11, pc}}",
    )
}
