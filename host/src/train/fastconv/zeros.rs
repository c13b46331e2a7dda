//! Buffers for a training step's maps, zeroed by every thread of rayon's pool.
//!
//! `vec![0.0; len]` zeroes on the calling thread alone: for the megabytes of a batch's feature
//! map (128 x 14 x 14 x 64 values are 6.4 MB) that is a memory-bound pass during which the other
//! cores wait, between two parallel kernels.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Values zeroed by one task: 64 KB, large enough that a task's overhead does not count, small
/// enough that every thread gets many.
const CHUNK: usize = 1 << 14;

/// `len` zeros, as `vec![0.0; len]`, written in parallel when there are more than a few chunks.
pub fn zeros(len: usize) -> Vec<f32> {
    if len < 4 * CHUNK {
        return vec![0.0; len];
    }
    let mut values: Vec<f32> = Vec::with_capacity(len);
    values.spare_capacity_mut()[..len]
        .par_chunks_mut(CHUNK)
        .for_each(|chunk| chunk.fill(MaybeUninit::new(0.0)));
    // SAFETY: the capacity is at least `len`, and the chunks above cover the first `len`
    // elements, each written (as 0.0) by its task before `for_each` returned; a panic in a task
    // would have propagated before this line, leaving the vector empty.
    unsafe { values.set_len(len) };
    values
}

/// `len` values computed in parallel, `chunk` at a time (the last chunk may be shorter):
/// `fill(state, index, values)` writes chunk `index`, which comes zeroed, with a `state` made
/// by `init` for each of rayon's tasks (scratch buffers), as `for_each_init` gives them. The
/// zeroing happens in the chunk's own task, just before `fill` runs: the chunk is then in the
/// core's cache when `fill` writes it, and no separate pass over the whole buffer is made.
pub fn filled<S>(
    len: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    fill: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    assert!(chunk > 0 || len == 0, "filled: chunks of no values");
    let mut values: Vec<f32> = Vec::with_capacity(len);
    values.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each_init(init, |state, (index, part)| {
            part.fill(MaybeUninit::new(0.0));
            // SAFETY: every element of `part` was initialised on the line above, and
            // `MaybeUninit<f32>` has the layout of `f32`, so the cast is a view of the same
            // initialised values; the borrow of `part` ends with `fill`.
            let part = unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) };
            fill(state, index, part);
        });
    // SAFETY: as in `zeros`: the chunks cover the first `len` elements of the capacity, and
    // each task initialised its chunk before `for_each_init` returned.
    unsafe { values.set_len(len) };
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_is_all_zeros() {
        for len in [
            0,
            1,
            17,
            4 * CHUNK - 1,
            4 * CHUNK,
            4 * CHUNK + 1,
            9 * CHUNK + 123,
        ] {
            let values = zeros(len);
            assert_eq!(values.len(), len);
            assert!(values.iter().all(|&v| v.to_bits() == 0), "length {len}");
        }
    }

    #[test]
    fn every_chunk_is_filled_by_its_index() {
        for (len, chunk) in [(0, 3), (1, 1), (10, 3), (9, 3), (5 * CHUNK + 7, 1000)] {
            let values = filled(
                len,
                chunk,
                || 0usize,
                |calls, index, part| {
                    *calls += 1;
                    assert!(part.iter().all(|&v| v.to_bits() == 0), "not zeroed");
                    part.iter_mut().enumerate().for_each(|(i, v)| {
                        *v = (index * chunk + i) as f32;
                    });
                },
            );
            let want: Vec<f32> = (0..len).map(|i| i as f32).collect();
            assert_eq!(values, want, "{len} values in chunks of {chunk}");
        }
    }

    /// A freed buffer of the same size, full of other values, is what the allocator hands back
    /// first: the zeros must not be its leftovers.
    #[test]
    fn reused_memory_comes_back_zeroed() {
        let len = 6 * CHUNK + 5;
        for _ in 0..3 {
            drop(vec![f32::NAN; len]);
            assert!(zeros(len).iter().all(|&v| v.to_bits() == 0));
            drop(vec![f32::NAN; len]);
            let values = filled(
                len,
                1000,
                || (),
                |_, _, part| {
                    assert!(part.iter().all(|&v| v.to_bits() == 0));
                },
            );
            assert_eq!(values.len(), len);
        }
    }
}
