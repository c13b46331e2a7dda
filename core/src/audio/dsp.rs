//! The front end's hot loops for Arm cores with the DSP extension (Cortex-M4,
//! M7, M33), bit-identical to the portable code of `fft.rs` and `mod.rs`.
//!
//! Like [`crate::kernels::dsp`], this module allows `unsafe` for itself only:
//! routines in inline assembly (`naked_asm!`), each behind a safe function
//! that checks the sizes the assembly relies on and returns `false`, having
//! done nothing, when they do not hold, so that the caller runs the portable
//! code instead.
//!
//! # Why the results are the portable ones, bit for bit
//!
//! Every product the portable code forms in `i64` is formed here by
//! `SMULL`/`SMLAL`, which give the exact 64-bit product and sum; the rounding
//! (`+ 2^29`, then bits 30 to 61) is the same integer operation on the same
//! 64-bit value. The additions are 32-bit and wrap like the portable `i32`
//! additions, which never overflow (see `fft.rs` for the bound); `a - b` is
//! sometimes formed as `(a + b) - 2b`, equal modulo 2^32 and so equal. Each
//! value is rotated by the twiddle the portable code uses, read from the same
//! table entries with the same signs.
//!
//! The firmware's `frontend` binary runs frames through both paths and
//! compares the work buffers (every FFT point and log energy) and the bytes.

#![allow(unsafe_code)]

use super::fft::Complex;
use core::arch::naked_asm;

/// First line of every naked function's assembly: as in
/// [`crate::kernels::dsp`], the Armv8-M Mainline assembler needs a core with
/// the DSP extension named again.
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

/// What [`radix4_rotated_asm`] reads, at the offsets its assembly names.
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
    /// Butterfly span.
    half: u32,
}

/// The butterflies `j = 1..half` of a radix-4 stage of `fft::radix4_stages`
/// (those with rotations; the caller runs `j = 0`). Returns `false`, having
/// done nothing, unless `z.len()` is a power of two, `2 <= half`,
/// `4 * half <= z.len()` and `sine` holds the quarter wave of `z.len()`
/// points' real FFT.
pub(super) fn radix4_rotated(z: &mut [Complex], sine: &[i32], half: usize) -> bool {
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
        half: half as u32,
    };
    // SAFETY: the routine reads and writes the points `j + g * 4 half +
    // {0, 1, 2, 3} half` for `1 <= j < half` and every group `g` below
    // `points / (4 half)`, all inside `z` (`4 half` divides `points`, both
    // powers of two); it reads the sine table at indices `0..=points / 2`,
    // inside `sine` (checked above); `stage` outlives the call.
    unsafe { radix4_rotated_asm(&raw const stage) };
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

/// The assembly of [`radix4_rotated`]. Stack frame: the three twiddles
/// (`W^2` for `x1`, `W` for `x2`, `W^3` for `x3`, each `c, s`) at 0..24,
/// the `Stage` pointer at 24, `j` at 28, `4 t` at 32, the address of point
/// `j` at 36, the end at 40.
///
/// # Safety
///
/// `stage` points to a `Stage` whose fields satisfy [`radix4_rotated`]'s
/// checks.
#[unsafe(naked)]
unsafe extern "C" fn radix4_rotated_asm(stage: *const Stage) {
    naked_asm!(
        naked_prelude!(),
        "push {{r4-r11, lr}}",
        "sub sp, sp, #44",
        "str r0, [sp, #24]",
        "ldr r1, [r0, #12]",
        "str r1, [sp, #32]",
        "ldr r2, [r0, #0]",
        "add r2, r2, #8",
        "str r2, [sp, #36]",
        "ldr r2, [r0, #20]",
        "str r2, [sp, #40]",
        "movs r3, #1",
        "str r3, [sp, #28]",
        // Per j: the twiddles, as fft::twiddle_low(t), twiddle(2t), twiddle(3t).
        "1:",
        "ldr r0, [sp, #24]",
        "ldr r1, [r0, #4]",
        "ldr r2, [r0, #16]",
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
        "ldr r1, [r0, #8]",
        "ldr r0, [sp, #36]",
        // Per group: x1 (r4, r5), x2 (r6, r7), x3 (r8, r9) rotated in
        // place, x0 (r2, r3), the butterfly, the stores.
        "7:",
        "add r12, r0, r1",
        "ldrd r4, r5, [r12]",
        "add r12, r12, r1",
        "ldrd r6, r7, [r12]",
        "add r12, r12, r1",
        "ldrd r8, r9, [r12]",
        rotate!("r4", "r5", "0"),
        rotate!("r6", "r7", "8"),
        rotate!("r8", "r9", "16"),
        "ldrd r2, r3, [r0]",
        // a0 = x0 + t1 (r2, r3), a1 = x0 - t1 (r4, r5).
        "add r2, r2, r4",
        "sub r4, r2, r4, lsl #1",
        "add r3, r3, r5",
        "sub r5, r3, r5, lsl #1",
        // a2 = t2 + t3 (r6, r7), a3 = t2 - t3 (r8, r9).
        "add r6, r6, r8",
        "sub r8, r6, r8, lsl #1",
        "add r7, r7, r9",
        "sub r9, r7, r9, lsl #1",
        // x0 = a0 + a2, x2 = a0 - a2.
        "add r2, r2, r6",
        "sub r6, r2, r6, lsl #1",
        "add r3, r3, r7",
        "sub r7, r3, r7, lsl #1",
        // x1 = (a1.re + a3.im, a1.im - a3.re), x3 = (a1.re - a3.im, a1.im + a3.re).
        "add r4, r4, r9",
        "sub r10, r4, r9, lsl #1",
        "sub r5, r5, r8",
        "add r11, r5, r8, lsl #1",
        "strd r2, r3, [r0]",
        "add r12, r0, r1",
        "strd r4, r5, [r12]",
        "add r12, r12, r1",
        "strd r6, r7, [r12]",
        "add r12, r12, r1",
        "strd r10, r11, [r12]",
        "add r0, r0, r1, lsl #2",
        "ldr r12, [sp, #40]",
        "cmp r0, r12",
        "blo 7b",
        // Next j.
        "ldr r0, [sp, #36]",
        "add r0, r0, #8",
        "str r0, [sp, #36]",
        "ldr r1, [sp, #24]",
        "ldr r2, [r1, #12]",
        "ldr r3, [sp, #32]",
        "add r3, r3, r2",
        "str r3, [sp, #32]",
        "ldr r0, [sp, #28]",
        "add r0, r0, #1",
        "str r0, [sp, #28]",
        "ldr r2, [r1, #24]",
        "cmp r0, r2",
        "blo 1b",
        "add sp, sp, #44",
        "pop {{r4-r11, pc}}",
    )
}
