//! Fixed-shape kernels: 3x3 'same' convolution with fused ReLU and 2x2
//! max-pool, dense, ReLU, max-pool, argmax and softmax, for int8 and f32.
//!
//! Shapes are const generics, checked at compile time with
//! `const { assert!(..) }`: a kernel called with mismatched tensors does not
//! compile, so the kernels themselves cannot fail. Weights are borrowed byte
//! slices straight out of a model blob (see [`crate::format`]); they reach a
//! kernel only inside a layer view ([`int8::ConvLayer`], [`f32::DenseLayer`],
//! ...) whose constructor checked every length, and the loops walk them with
//! exact-size chunk iterators, so there is no indexing to bounds-check.
//!
//! Every fast kernel has a plain, unfused counterpart in [`reference`](mod@reference) that
//! the tests compare it with.

#[cfg(tinycnn_arm_dsp)]
pub mod dsp;
pub mod f32;
pub mod int8;
pub mod reference;
#[cfg(test)]
mod tests;

use crate::arch::Tensor;

/// Index of the largest value; the first one on ties, `0` for an empty or
/// all-NaN input (NaN never compares greater).
pub fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    let mut best = 0;
    let mut best_value = None;
    for (index, &value) in values.iter().enumerate() {
        let better = match best_value {
            None => value.partial_cmp(&value).is_some(), // false only for NaN
            Some(current) => value > current,
        };
        if better {
            best = index;
            best_value = Some(value);
        }
    }
    best
}

/// 2x2 max-pool with stride 2, rounding the output size down (7 -> 3): the
/// last row and column of an odd-sized input are dropped, as in Keras and
/// TensorFlow Lite.
pub fn max_pool2<
    T,
    const H: usize,
    const W: usize,
    const C: usize,
    const PH: usize,
    const PW: usize,
>(
    input: &Tensor<T, H, W, C>,
    output: &mut Tensor<T, PH, PW, C>,
) where
    T: Copy + PartialOrd,
{
    const {
        assert!(
            PH == H / 2 && PW == W / 2,
            "max_pool2 output must be half the input, rounded down"
        )
    };
    for (out_row, [top, bottom]) in output.iter_mut().zip(input.as_chunks::<2>().0) {
        let pairs = top.as_chunks::<2>().0.iter().zip(bottom.as_chunks::<2>().0);
        for (out_pixel, ([a, b], [c, d])) in out_row.iter_mut().zip(pairs) {
            for ((((out, &a), &b), &c), &d) in out_pixel.iter_mut().zip(a).zip(b).zip(c).zip(d) {
                *out = larger(larger(a, b), larger(c, d));
            }
        }
    }
}

/// `max` for `PartialOrd` values; keeps `a` on ties and when `b` is NaN.
#[inline(always)]
pub(crate) fn larger<T: PartialOrd>(a: T, b: T) -> T {
    if b > a { b } else { a }
}

#[cfg(test)]
mod small_tests {
    use super::*;

    #[test]
    fn argmax_picks_first_of_ties_and_skips_nan() {
        assert_eq!(argmax(&[1, 3, 3, 2]), 1);
        assert_eq!(argmax(&[-5i8, -7, -5]), 0);
        assert_eq!(argmax::<i8>(&[]), 0);
        assert_eq!(argmax(&[f32::NAN, 1.0, 2.0]), 2);
        assert_eq!(argmax(&[0.5, f32::NAN, 0.25]), 0);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY, -1e30]), 1);
    }

    #[test]
    fn max_pool_drops_odd_row_and_column() {
        let mut input: Tensor<i8, 3, 3, 2> = [[[0; 2]; 3]; 3];
        for (y, row) in input.iter_mut().enumerate() {
            for (x, pixel) in row.iter_mut().enumerate() {
                *pixel = [(y * 3 + x) as i8, -((y * 3 + x) as i8)];
            }
        }
        let mut output: Tensor<i8, 1, 1, 2> = [[[99; 2]; 1]; 1];
        max_pool2(&input, &mut output);
        // Window {0,1,3,4}: the last row/column (2,5,6,7,8) never count.
        assert_eq!(output, [[[4, 0]]]);
    }
}
