//! Dense layers for x86-64 with AVX-512 and VNNI: the bytes of the core's
//! [`tinycnn::kernels::int8::dense`], with `vpdpbusd` (four unsigned-by-signed byte products
//! added into each of 16 lanes).
//!
//! The weights are packed once per layer ([`PackedDense`]): slabs of 16 outputs, one per lane,
//! each lane's four bytes the weights of four consecutive inputs; zero past the last input and
//! for the outputs that fill up the last slab. The input is read as `u = x + 128` (a flipped
//! top bit), four bytes broadcast to every lane, and each output's `(zero point + 128) *
//! sum(weights)` is subtracted before the requantisation ([`super::requant`]), as in the
//! blocked convolutions. Up to eight slabs take each broadcast, so that eight chains of
//! additions run side by side.
//!
//! Every function with intrinsics is compiled for "avx512f,avx512bw,avx512vl,avx512vnni";
//! calling them is sound only on a processor that has them all, which `Isa::Avx512`
//! guarantees.

use std::arch::x86_64::*;

use tinycnn::kernels::int8::DenseLayer;
use tinycnn::quant::Rounding;

use super::requant::{self, Bounds, LANES, Lanes};

/// Bytes ahead of the weights read that are prefetched.
const PREFETCH: usize = 2048;

/// Slabs that share each broadcast input.
const SLABS: usize = 8;

/// A dense layer's weights in the order of [`dense_int8`]: per group of up to [`SLABS`] slabs,
/// per four inputs, per slab of the group, the 16 outputs' four bytes (a register).
#[derive(Debug)]
pub(super) struct PackedDense {
    inputs: usize,
    outputs: usize,
    /// Groups of four inputs.
    groups: usize,
    weights: Vec<u8>,
    /// Each output's weights added up (zero for the outputs that fill up the last slab).
    sums: Vec<i32>,
}

/// The slab groups of a layer with `slabs` slabs, in order: the first slab and how many the
/// group has, [`SLABS`] while that many are left, then 4, 2 and 1 as needed.
fn slab_groups(slabs: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut first = 0;
    std::iter::from_fn(move || {
        let left = slabs - first;
        let count = [SLABS, 4, 2, 1].into_iter().find(|&size| size <= left)?;
        first += count;
        Some((first - count, count))
    })
}

impl PackedDense {
    /// Packs `layer`'s weights.
    pub(super) fn new(layer: &DenseLayer<'_>) -> Self {
        let (inputs, outputs) = (layer.inputs(), layer.outputs());
        let groups = inputs.div_ceil(4);
        let slabs = outputs.div_ceil(LANES);
        let mut weights = vec![0u8; slabs * groups * 4 * LANES];
        let mut sums = vec![0i32; slabs * LANES];
        for (first, count) in slab_groups(slabs) {
            let block = &mut weights[first * groups * 4 * LANES..][..count * groups * 4 * LANES];
            for s in 0..count {
                for lane in 0..LANES {
                    let output = (first + s) * LANES + lane;
                    let Some(row) = layer.rows().chunks_exact(inputs).nth(output) else {
                        continue;
                    };
                    sums[output] = row
                        .iter()
                        .fold(0i32, |sum, &w| sum.wrapping_add(i32::from(w as i8)));
                    for (input, &w) in row.iter().enumerate() {
                        let (group, byte) = (input / 4, input % 4);
                        block[((group * count + s) * LANES + lane) * 4 + byte] = w;
                    }
                }
            }
        }
        PackedDense {
            inputs,
            outputs,
            groups,
            weights,
            sums,
        }
    }
}

/// Per-call buffers: the input as unsigned bytes, and the requantisation constants of each
/// slab.
#[derive(Debug, Default)]
pub(super) struct Work {
    input: Vec<u8>,
    lanes: Vec<Lanes>,
}

/// [`tinycnn::kernels::int8::dense`], bit for bit, with `packed` made from the same layer.
/// `None` if the slices do not fit.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dense_int8(
    packed: &PackedDense,
    work: &mut Work,
    input: &[i8],
    layer: &DenseLayer<'_>,
    output: &mut [i8],
) -> Option<()> {
    let requantization = layer.requantization();
    if packed.inputs != layer.inputs()
        || packed.outputs != layer.outputs()
        || input.len() != packed.inputs
        || output.len() != packed.outputs
        || packed.weights.len() != packed.outputs.div_ceil(LANES) * packed.groups * 4 * LANES
    {
        return None;
    }
    work.input.clear();
    // `x as u8 ^ 0x80` is `x + 128`; the padding meets zero weights.
    work.input.extend(input.iter().map(|&x| x as u8 ^ 0x80));
    work.input.resize(packed.groups * 4, 0);
    let offset = _mm512_set1_epi32(requantization.input_zero_point() + 128);
    work.lanes.clear();
    for (slab, sums) in packed.sums.chunks_exact(LANES).enumerate() {
        // SAFETY: `sums` is 16 readable `i32`s; unaligned.
        let sums = unsafe { _mm512_loadu_si512(sums.as_ptr().cast()) };
        let count = LANES.min(packed.outputs - slab * LANES);
        let offsets = _mm512_mullo_epi32(sums, offset);
        work.lanes.push(Lanes::of_stored(
            requantization,
            slab * LANES,
            count,
            offsets,
        )?);
    }
    let bounds = Bounds::of(requantization);
    let form = match requantization.rounding() {
        Rounding::Single => Form::Once,
        Rounding::Double => {
            let bound = requant::accumulator_bound(packed.inputs);
            if work.lanes.iter().all(|lanes| lanes.fast_applies(bound)) {
                Form::Fast
            } else {
                Form::Exact
            }
        }
    };
    for (first, count) in slab_groups(packed.outputs.div_ceil(LANES)) {
        match count {
            SLABS => slabs::<SLABS>(packed, work, first, form, &bounds, output)?,
            4 => slabs::<4>(packed, work, first, form, &bounds, output)?,
            2 => slabs::<2>(packed, work, first, form, &bounds, output)?,
            _ => slabs::<1>(packed, work, first, form, &bounds, output)?,
        }
    }
    Some(())
}

/// How a layer requantises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Exact,
    Fast,
    Once,
}

/// The outputs of `S` slabs from slab `first` on.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn slabs<const S: usize>(
    packed: &PackedDense,
    work: &Work,
    first: usize,
    form: Form,
    bounds: &Bounds,
    output: &mut [i8],
) -> Option<()> {
    let block_len = S * packed.groups * 4 * LANES;
    let block = packed
        .weights
        .get(first * packed.groups * 4 * LANES..)?
        .get(..block_len)?;
    let input = work.input.get(..packed.groups * 4)?;
    let mut sums = [_mm512_setzero_si512(); S];
    let mut weights = block.as_ptr();
    for four in input.chunks_exact(4) {
        let x = _mm512_set1_epi32(i32::from_le_bytes([four[0], four[1], four[2], four[3]]));
        for sum in &mut sums {
            // SAFETY: the block holds `groups * S` registers of 64 bytes, read in order, one
            // per slab per group of four inputs. Unaligned.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(weights.wrapping_add(PREFETCH).cast());
                *sum = _mm512_dpbusd_epi32(*sum, x, _mm512_loadu_si512(weights.cast()));
                weights = weights.add(4 * LANES);
            }
        }
    }
    for (s, sum) in sums.into_iter().enumerate() {
        let slab = first + s;
        let lanes = work.lanes.get(slab)?;
        let bytes = match form {
            Form::Exact => requant::requantize::<false>(sum, lanes, bounds),
            Form::Fast => requant::requantize::<true>(sum, lanes, bounds),
            Form::Once => requant::requantize_once(sum, lanes, bounds),
        };
        let start = slab * LANES;
        requant::store_bytes(output, start, LANES.min(packed.outputs - start), bytes)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    //! The AVX-512 dense layer against the core's portable one on random layers (1 to 700
    //! inputs, 1 to 300 outputs), both roundings, zero points at the extremes, every clamp,
    //! ordinary and extreme constants. Skipped on a processor without AVX-512.

    use super::*;
    use crate::deploy::random_layers::{Constants, rng};
    use proptest::prelude::*;
    use tinycnn::kernels::int8 as ki8;

    fn case(seed: u64) {
        let mut rng = rng(seed);
        let inputs = [1, 3, 4, 5, 64, 127, 128, 640, 700][rng.random_range(0..9usize)];
        let outputs = [1, 2, 8, 10, 12, 16, 17, 100, 128, 300][rng.random_range(0..10usize)];
        let input: Vec<i8> = (0..inputs).map(|_| rng.random()).collect();
        let rows: Vec<u8> = (0..inputs * outputs)
            .map(|_| rng.random_range(-128i8..=127) as u8)
            .collect();
        let constants = Constants::draw(&mut rng, outputs);
        let requantization = constants.requantization();
        let rounding = if rng.random_bool(0.5) {
            Rounding::Double
        } else {
            Rounding::Single
        };
        let layer = ki8::DenseLayer::new(inputs, &rows, requantization)
            .unwrap()
            .with_rounding(rounding);
        let mut expected = vec![0i8; outputs];
        ki8::dense(&input, &layer, &mut expected).unwrap();
        let packed = PackedDense::new(&layer);
        let mut work = Work::default();
        let mut got = vec![0i8; outputs];
        // SAFETY: the caller checked the features the kernel is compiled with.
        unsafe { dense_int8(&packed, &mut work, &input, &layer, &mut got) }.unwrap();
        assert_eq!(
            got, expected,
            "{inputs} -> {outputs}, {rounding:?}, seed={seed}"
        );
    }

    #[test]
    fn dense_layers_give_the_portable_kernels_bytes() {
        if !crate::deploy::kernels::Isa::Avx512.runs_here() {
            eprintln!("this processor lacks AVX-512 with VNNI: the dense kernel is not tested");
            return;
        }
        (0..400).for_each(case);
    }

    #[test]
    fn slab_groups_cover_every_slab_once() {
        for slabs in 0..40 {
            let groups: Vec<_> = slab_groups(slabs).collect();
            let mut next = 0;
            for (first, count) in groups {
                assert_eq!(first, next);
                assert!([SLABS, 4, 2, 1].contains(&count));
                next += count;
            }
            assert_eq!(next, slabs);
        }
    }
}
