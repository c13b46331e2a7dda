//! The dense kernels that read a layer's weights widened to int16 ahead of time
//! ([`crate::widened`]), with the crate's `widened-dense` feature: a firmware that keeps such a
//! table in flash links them, others are spared their code.

use core::arch::naked_asm;

use super::{Backend, DenseInput, DenseLayer, ROUNDING, ROUNDING_LESS_128, Requantizer, dense};
#[cfg(doc)]
use super::{FOLDED_SHIFT_MAX, requantize_bounded, requantize_clamped};

/// [`dense`] with the layer's weights widened to int16 ahead of time: `widened` is the
/// layer's part of a [`crate::widened`] table ([`crate::widened::dense_bytes`] bytes, from a
/// 4-byte boundary). Four rows and four inputs take eight `SMLAD`s and no `SXTB16` for the
/// weights. The input is widened into `work` when it holds
/// [`dense_work_bytes`](super::dense_work_bytes), else as it is read (two instructions more
/// per four inputs and four rows). Layers whose requantisation is clamped at zero point -128
/// or has no activation are requantised as each block of four rows ends; others through the
/// sums of eight blocks at a time. Where the layer does not suit it (inputs not a multiple of
/// 4, a table of another length or off a word boundary) it runs [`dense`], which computes the
/// same bytes.
#[inline(never)]
pub fn dense_widened(
    input: &[i8],
    layer: &DenseLayer<'_>,
    widened: &[u8],
    output: &mut [i8],
    work: &mut [i8],
) -> Option<Backend> {
    if input.len() != layer.inputs() || output.len() != layer.outputs() {
        return None;
    }
    if dense_blocks(input, layer, widened, output, work) {
        Some(Backend::ArmDsp)
    } else {
        dense(input, layer, output, work)
    }
}

/// A widened dense routine ([`widened_dense_routine`]): input, weights, groups, blocks, sums
/// or [`FusedDense`], input offset.
type WidenedRoutine = unsafe extern "C" fn(*const u8, *const u32, u32, u32, *mut u8, u32);

/// Blocks of four rows per call of [`dense_blocks_widened`]: their sums wait on the stack
/// for one call of the requantiser.
const WIDENED_CALL_BLOCKS: usize = 8;

fn dense_blocks(
    flat: &[i8],
    layer: &DenseLayer<'_>,
    widened: &[u8],
    output: &mut [i8],
    work: &mut [i8],
) -> bool {
    let inputs = layer.inputs();
    let groups = inputs / 4;
    let Ok(group_count) = u32::try_from(groups) else {
        return false;
    };
    // SAFETY: `align_to` only reinterprets the aligned middle of the table; every bit
    // pattern is a valid `u32`.
    let (head, weights, tail) = unsafe { widened.align_to::<u32>() };
    if inputs == 0
        || !inputs.is_multiple_of(4)
        || flat.len() != inputs
        || !head.is_empty()
        || !tail.is_empty()
        || widened.len() != crate::widened::dense_bytes(inputs, output.len())
    {
        return false;
    }
    let requantization = layer.requantization();
    let input = DenseInput::new(flat, requantization.input_zero_point(), work);
    let requantizer = Requantizer::new(requantization, inputs);
    // 4 rows x 4 inputs x 2 bytes: 8 words per group and block.
    let block_words = groups * 8;
    if output.len().is_multiple_of(4) && (requantizer.fuses() || requantizer.fuses_exact()) {
        return dense_blocks_fused(&input, weights, group_count, &requantizer, output);
    }
    let (input_pointer, offset, routine) =
        input.widened_routine(dense_blocks_widened, dense_blocks_narrow);
    let call_rows = WIDENED_CALL_BLOCKS * 4;
    let mut sums = [0i32; WIDENED_CALL_BLOCKS * 4];
    let calls = output
        .chunks_mut(call_rows)
        .zip(weights.chunks(WIDENED_CALL_BLOCKS * block_words));
    for (call, (out_rows, call_weights)) in calls.enumerate() {
        let blocks = out_rows.len().div_ceil(4);
        let Ok(block_count) = u32::try_from(blocks) else {
            return false;
        };
        if call_weights.len() != blocks * block_words || blocks > WIDENED_CALL_BLOCKS {
            return false;
        }
        // SAFETY: the input holds `groups` groups of four inputs (`2 x groups` words
        // widened, `inputs / 2` of them, or `4 x groups` bytes as it lies), the weights
        // `blocks` blocks of `8 x groups` words (checked just above); the routine for the
        // input's kind reads exactly these and writes `4 x blocks` words to `sums`, which
        // holds `4 x WIDENED_CALL_BLOCKS >= 4 x blocks`; `groups >= 1`, `blocks >= 1`.
        unsafe {
            routine(
                input_pointer,
                call_weights.as_ptr(),
                group_count,
                block_count,
                sums.as_mut_ptr().cast(),
                offset,
            );
        }
        let Some(call_sums) = sums.get(..out_rows.len()) else {
            return false;
        };
        requantizer.finish(call * call_rows, call_sums, out_rows);
    }
    true
}

impl DenseInput<'_> {
    /// The arguments a widened routine takes for this input (its first byte or word, and
    /// the offset that `SXTAB16` adds as it widens a narrow input, 0 for one widened
    /// already), and of the two routines, `widened` or `narrow`, the one that reads it.
    fn widened_routine(
        &self,
        widened: WidenedRoutine,
        narrow: WidenedRoutine,
    ) -> (*const u8, u32, WidenedRoutine) {
        match *self {
            DenseInput::Widened(vector) => (vector.as_ptr().cast(), 0, widened),
            DenseInput::Narrow { flat, offset } => (flat.as_ptr().cast(), offset, narrow),
        }
    }
}

/// [`dense_blocks`]' rows requantised as each block of four ends, on the clamped path with
/// zero point -128 or the exact one without activation: `output` holds whole blocks, the
/// weights `output.len() / 4` blocks of `8 x groups` words.
fn dense_blocks_fused(
    input: &DenseInput<'_>,
    weights: &[u32],
    groups: u32,
    requantizer: &Requantizer<'_, '_>,
    output: &mut [i8],
) -> bool {
    let blocks = output.len() / 4;
    let (Ok(block_count), true) = (
        u32::try_from(blocks),
        blocks > 0
            && output.len() == requantizer.requantization.outputs()
            && weights.len() == blocks * groups as usize * 8,
    ) else {
        return false;
    };
    let exact = requantizer.fuses_exact();
    let constants = &requantizer.constants;
    let mut target = FusedDense {
        multipliers: constants.multipliers,
        shifts: constants.shifts,
        out: output.as_mut_ptr(),
        rounding: if exact {
            ROUNDING.as_ptr()
        } else {
            ROUNDING_LESS_128.as_ptr()
        },
        zero_point: constants.zero_point,
        bias: constants.bias,
    };
    let (input_pointer, offset, routine) = if exact {
        input.widened_routine(dense_blocks_widened_exact, dense_blocks_narrow_exact)
    } else {
        input.widened_routine(dense_blocks_widened_clamped, dense_blocks_narrow_clamped)
    };
    // SAFETY: the routine for the input's kind and the path reads the input's `groups`
    // groups of four inputs (`2 x groups` words widened, or `4 x groups` bytes as it lies)
    // and the weights' `blocks` blocks of `8 x groups` words, and `target` points at the
    // layer's constants from channel 0 and at `output`, all for `4 x blocks` channels, the
    // layer's outputs (checked above); `Requantizer::new` checked
    // the constants for the path (`fuses`: clamped, zero point -128; `fuses_exact`: exact,
    // no activation; shifts within `FOLDED_SHIFT_MAX`); `groups >= 1`, `blocks >= 1`.
    unsafe {
        routine(
            input_pointer,
            weights.as_ptr(),
            groups,
            block_count,
            (&raw mut target).cast(),
            offset,
        );
    }
    true
}

/// Four rows' products with one group of four inputs, the weights widened: the input pairs
/// `(x0, x2), (x1, x3)` into r2/r3 (loaded widened, or as four bytes that `SXTAB16` widens
/// with the input offset in lr), two rows' weight pairs at a time into r4-r7, sums in r8-r11.
macro_rules! widened_group {
    (widened) => {
        concat!("ldm r0!, {{r2, r3}}\n", widened_group!(products))
    };
    // The input word and the first rows' weights as five single loads in a row, which the
    // core pipelines (6 cycles; a load and an `LDM` take 7), for three instructions more.
    (narrow) => {
        concat!(
            "ldr r3, [r0], #4\n",
            "ldr r4, [r1], #4\n",
            "ldr r5, [r1], #4\n",
            "ldr r6, [r1], #4\n",
            "ldr r7, [r1], #4\n",
            "sxtab16 r2, lr, r3\n",
            "sxtab16 r3, lr, r3, ror #8\n",
            widened_group!(multiply)
        )
    };
    (products) => {
        concat!("ldm r1!, {{r4-r7}}\n", widened_group!(multiply))
    };
    (multiply) => {
        concat!(
            "smlad r8, r2, r4, r8\n",
            "smlad r8, r3, r5, r8\n",
            "smlad r9, r2, r6, r9\n",
            "smlad r9, r3, r7, r9\n",
            "ldm r1!, {{r4-r7}}\n",
            "smlad r10, r2, r4, r10\n",
            "smlad r10, r3, r5, r10\n",
            "smlad r11, r2, r6, r11\n",
            "smlad r11, r3, r7, r11\n",
        )
    };
}

/// The body of the widened dense routines after their entries: the blocks' loop, sixteen
/// groups a round, then the rest one by one. `sums` starts each block's accumulators at 0 and
/// stores them through the pointer at `[sp, #12]`; `clamped` and `exact` start them at the
/// rows' biases and requantise them ([`FusedDense`] at `[sp, #12]`).
macro_rules! widened_blocks {
    ($input:ident, $finish:ident) => {
        concat!(
            "1:\n",
            widened_block_start!($finish),
            "ldr r0, [sp]\n",
            "ldr r12, [sp, #4]\n",
            "lsrs r12, r12, #4\n",
            "beq 3f\n",
            "2:\n",
            ".rept 16\n",
            widened_group!($input),
            ".endr\n",
            "subs r12, r12, #1\n",
            "bne 2b\n",
            "3:\n",
            "ldr r12, [sp, #4]\n",
            "ands r12, r12, #15\n",
            "beq 5f\n",
            "4:\n",
            widened_group!($input),
            "subs r12, r12, #1\n",
            "bne 4b\n",
            "5:\n",
            widened_block_end!($finish),
            "ldr r12, [sp, #8]\n",
            "subs r12, r12, #1\n",
            "str r12, [sp, #8]\n",
            "bne 1b\n",
            "add sp, sp, #16\n",
            "pop {{r4-r11, pc}}\n",
        )
    };
}

/// How a block's accumulators r8-r11 start: at 0, or at the next four biases of the
/// [`FusedDense`] at `[sp, #12]` (uses r0; single loads, as the biases lie at any
/// alignment in the model).
macro_rules! widened_block_start {
    (sums) => {
        "mov.w r8, #0\nmov.w r9, #0\nmov.w r10, #0\nmov.w r11, #0\n"
    };
    ($fused:ident) => {
        concat!(
            "ldr r12, [sp, #12]\n",
            "ldr r0, [r12, #20]\n",
            "ldr r8, [r0], #4\n",
            "ldr r9, [r0], #4\n",
            "ldr r10, [r0], #4\n",
            "ldr r11, [r0], #4\n",
            "str r0, [r12, #20]\n",
        )
    };
}

/// What becomes of a block's four sums r8-r11: stored through the pointer at `[sp, #12]`,
/// or requantised into four outputs with the [`FusedDense`] there (multipliers r2, shifts
/// r3, outputs r4, rounding table r5, zero point r12 while it runs; r0, r6 and r7 scratch).
macro_rules! widened_block_end {
    (sums) => {
        concat!(
            "ldr r12, [sp, #12]\n",
            "stm r12!, {{r8-r11}}\n",
            "str r12, [sp, #12]\n",
        )
    };
    ($fused:ident) => {
        concat!(
            "ldr r12, [sp, #12]\n",
            "ldm r12, {{r2-r5, r12}}\n",
            widened_requantize!($fused, "r8"),
            widened_requantize!($fused, "r9"),
            widened_requantize!($fused, "r10"),
            widened_requantize!($fused, "r11"),
            "ldr r12, [sp, #12]\n",
            "stm r12, {{r2-r4}}\n",
        )
    };
}

/// One output of a fused block, its sum in register `$sum`: the sum (which started at the
/// bias) doubled, scaled by its row's multiplier and shifted by its shift with rounding, as
/// [`requantize_clamped`] (`clamped`: the table's rounding terms carry the zero point -128, so
/// `SSAT` gives the output and the ReLU both) or [`requantize_bounded`]'s exact rounding
/// (`exact`: no activation, the zero point in r12 added after the shift).
#[rustfmt::skip]
macro_rules! widened_requantize {
    (clamped, $sum:literal) => {
        concat!(
            widened_requantize!(constants, $sum),
            "smmlar ", $sum, ", ", $sum, ", r6, r0\n",
            "asr ", $sum, ", ", $sum, ", r7\n",
            widened_requantize!(store, $sum),
        )
    };
    (exact, $sum:literal) => {
        concat!(
            widened_requantize!(constants, $sum),
            "smmulr ", $sum, ", ", $sum, ", r6\n",
            "add ", $sum, ", ", $sum, ", ", $sum, ", asr #31\n",
            "add ", $sum, ", ", $sum, ", r0\n",
            "asr ", $sum, ", ", $sum, ", r7\n",
            "add ", $sum, ", ", $sum, ", r12\n",
            widened_requantize!(store, $sum),
        )
    };
    // The row's multiplier (r6), right shift (r7) and rounding term (r0); the sum doubled.
    (constants, $sum:literal) => {
        concat!(
            "ldr r6, [r2], #4\n",
            "ldrsb r7, [r3], #1\n",
            "rsb r7, r7, #0\n",
            "ldr r0, [r5, r7, lsl #2]\n",
            "lsl ", $sum, ", ", $sum, ", #1\n",
        )
    };
    (store, $sum:literal) => {
        concat!("ssat ", $sum, ", #8, ", $sum, "\n", "strb ", $sum, ", [r4], #1\n")
    };
}

/// What the fused widened dense routines read and advance: the next rows' constants and
/// outputs. The first four fields are loaded with one `LDM` (the fifth replaces its base).
#[repr(C)]
struct FusedDense {
    multipliers: *const i32,
    shifts: *const u8,
    out: *mut i8,
    /// [`ROUNDING_LESS_128`] for the clamped finish, [`ROUNDING`] for the exact one.
    rounding: *const i32,
    zero_point: i32,
    bias: *const i32,
}

/// Declares a widened dense routine: its input (`widened`: words, or `narrow`: bytes) and
/// finish (`sums`, `clamped` or `exact`), after the entry that moves the arguments to the
/// stack and the offset (which only the narrow input reads) into lr.
macro_rules! widened_dense_routine {
    ($(#[$doc:meta])* $name:ident, $input:ident, $finish:ident) => {
        $(#[$doc])*
        #[unsafe(naked)]
        unsafe extern "C" fn $name(
            input: *const u8,
            weights: *const u32,
            groups: u32,
            blocks: u32,
            target: *mut u8,
            offset: u32,
        ) {
            naked_asm!(
                naked_prelude!(),
                "push {{r4-r11, lr}}",
                "ldr r12, [sp, #36]",
                "ldr lr, [sp, #40]",
                // [sp]: the input's start, [sp, #4]: groups, [sp, #8]: blocks left,
                // [sp, #12]: the sums or the FusedDense.
                "push {{r0, r2, r3, r12}}",
                widened_blocks!($input, $finish),
            )
        }
    };
}

widened_dense_routine!(
    /// `blocks` blocks of four dense rows against the widened input, the weights widened to
    /// int16 in [`crate::widened`]'s layout (each block's groups one after the other, so one
    /// pointer walks every block): each block's four sums into `target` (words), one block
    /// after the other.
    ///
    /// Registers: r0 input (from its start for each block), r1 weights (advancing), r2/r3
    /// input pairs, r4-r7 weight pairs, r8-r11 accumulators, r12 counters; the input's
    /// start, the group count, the blocks left and `target` (advancing) wait on the stack.
    ///
    /// # Safety
    ///
    /// `input` must be valid for reading `groups * 2` words, `weights` for
    /// `blocks * groups * 8` words, `target` for writing `blocks * 4` words, all from 4-byte
    /// boundaries; `groups` and `blocks` at least 1.
    dense_blocks_widened,
    widened,
    sums
);

widened_dense_routine!(
    /// [`dense_blocks_widened`] with the input as it lies (`groups * 4` bytes, any
    /// alignment), each group widened with `offset` (the input offset in both halves, kept
    /// in lr) as it is read: two instructions more per group of four inputs and four rows,
    /// and no work area.
    ///
    /// # Safety
    ///
    /// As [`dense_blocks_widened`]'s, but `input` valid for reading `groups * 4` bytes.
    dense_blocks_narrow,
    narrow,
    sums
);

widened_dense_routine!(
    /// [`dense_blocks_widened`] requantising each block as it ends: `target` is a
    /// [`FusedDense`] whose rounding table is [`ROUNDING_LESS_128`] (the clamped path with
    /// zero point -128), and the outputs go where it points, four per block.
    ///
    /// # Safety
    ///
    /// As [`dense_blocks_widened`]'s, but `target` a valid [`FusedDense`] whose pointers
    /// are valid for `blocks * 4` channels (biases, multipliers, shifts, outputs), whose
    /// shifts are `-FOLDED_SHIFT_MAX..=0` and whose constants the clamped path allows
    /// (`Requantizer::fuses`).
    dense_blocks_widened_clamped,
    widened,
    clamped
);

widened_dense_routine!(
    /// [`dense_blocks_narrow`] requantising as [`dense_blocks_widened_clamped`] does.
    ///
    /// # Safety
    ///
    /// As [`dense_blocks_widened_clamped`]'s, with the input as [`dense_blocks_narrow`]'s.
    dense_blocks_narrow_clamped,
    narrow,
    clamped
);

widened_dense_routine!(
    /// [`dense_blocks_widened`] requantising each block as it ends with the exact rounding
    /// and no activation: `target` is a [`FusedDense`] whose rounding table is
    /// [`ROUNDING`].
    ///
    /// # Safety
    ///
    /// As [`dense_blocks_widened_clamped`]'s, but shifts `-FOLDED_SHIFT_MAX..=-1` and the
    /// constants the exact path allows (`Requantizer::fuses_exact`).
    dense_blocks_widened_exact,
    widened,
    exact
);

widened_dense_routine!(
    /// [`dense_blocks_narrow`] requantising as [`dense_blocks_widened_exact`] does.
    ///
    /// # Safety
    ///
    /// As [`dense_blocks_widened_exact`]'s, with the input as [`dense_blocks_narrow`]'s.
    dense_blocks_narrow_exact,
    narrow,
    exact
);
