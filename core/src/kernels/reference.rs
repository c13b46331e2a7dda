//! Plain reference kernels: unfused, index-based, written to mirror
//! TensorFlow Lite Micro's reference `Conv`, `MaxPool` and `FullyConnected`
//! loops, not to be fast. The tests compare every fast kernel with these.
//!
//! They index with loop counters bounded by the const-generic shapes, so they
//! cannot go out of bounds either; they live apart because the fast kernels
//! are built differently (fused, iterator-based) on purpose.

#![allow(clippy::needless_range_loop, clippy::indexing_slicing)]

use super::int8;
use crate::arch::{KERNEL_TAPS, Tensor};

/// int8 3x3 'same' convolution with the layer's activation (ReLU: clamp at
/// the output zero point), full resolution, as TFLite's reference `Conv`.
pub fn conv3x3_same_i8<const H: usize, const W: usize, const IC: usize, const OC: usize>(
    input: &Tensor<i8, H, W, IC>,
    layer: &int8::ConvLayer<'_, IC, OC>,
    output: &mut Tensor<i8, H, W, OC>,
) {
    let filters = layer.filters();
    let requantization = layer.requantization();
    let input_offset = -requantization.input_zero_point();
    let channels: [(i32, i32, i32); OC] = collect(requantization.channels());
    for y in 0..H {
        for x in 0..W {
            for oc in 0..OC {
                let mut accumulator: i32 = 0;
                for ky in 0..3 {
                    for kx in 0..3 {
                        let in_y = y as isize + ky as isize - 1;
                        let in_x = x as isize + kx as isize - 1;
                        // TFLite skips taps outside the image.
                        if in_y < 0 || in_x < 0 || in_y >= H as isize || in_x >= W as isize {
                            continue;
                        }
                        for ic in 0..IC {
                            let input_value = i32::from(input[in_y as usize][in_x as usize][ic]);
                            let filter_value =
                                i32::from(filters[((oc * 3 + ky) * 3 + kx) * IC + ic] as i8);
                            accumulator += filter_value * (input_value + input_offset);
                        }
                    }
                }
                output[y][x][oc] = requantization.apply(accumulator, channels[oc]);
            }
        }
    }
}

/// int8 dense (TFLite `FullyConnected`) over a flattened tensor.
pub fn dense_i8<
    const H: usize,
    const W: usize,
    const C: usize,
    const IN: usize,
    const OUT: usize,
>(
    input: &Tensor<i8, H, W, C>,
    layer: &int8::DenseLayer<'_, IN, OUT>,
    output: &mut [i8; OUT],
) {
    let rows = layer.rows();
    let requantization = layer.requantization();
    let input_offset = -requantization.input_zero_point();
    let channels: [(i32, i32, i32); OUT] = collect(requantization.channels());
    for out in 0..OUT {
        let mut accumulator: i32 = 0;
        for y in 0..H {
            for x in 0..W {
                for c in 0..C {
                    let i = (y * W + x) * C + c;
                    accumulator += i32::from(rows[out * IN + i] as i8)
                        * (i32::from(input[y][x][c]) + input_offset);
                }
            }
        }
        output[out] = requantization.apply(accumulator, channels[out]);
    }
}

/// f32 3x3 'same' convolution + bias + ReLU, full resolution.
pub fn conv3x3_same_relu_f32<const H: usize, const W: usize, const IC: usize, const OC: usize>(
    input: &Tensor<f32, H, W, IC>,
    filters: &[f32],
    bias: &[f32; OC],
    output: &mut Tensor<f32, H, W, OC>,
) {
    assert_eq!(filters.len(), OC * KERNEL_TAPS * IC);
    for y in 0..H {
        for x in 0..W {
            for oc in 0..OC {
                let mut sum = bias[oc];
                for ky in 0..3 {
                    for kx in 0..3 {
                        let in_y = y as isize + ky as isize - 1;
                        let in_x = x as isize + kx as isize - 1;
                        if in_y < 0 || in_x < 0 || in_y >= H as isize || in_x >= W as isize {
                            continue;
                        }
                        for ic in 0..IC {
                            sum += input[in_y as usize][in_x as usize][ic]
                                * filters[((oc * 3 + ky) * 3 + kx) * IC + ic];
                        }
                    }
                }
                output[y][x][oc] = sum.max(0.0);
            }
        }
    }
}

/// f32 dense over a flattened tensor.
pub fn dense_f32<const H: usize, const W: usize, const C: usize, const OUT: usize>(
    input: &Tensor<f32, H, W, C>,
    rows: &[f32],
    bias: &[f32; OUT],
    relu: bool,
    output: &mut [f32; OUT],
) {
    let inputs = H * W * C;
    assert_eq!(rows.len(), OUT * inputs);
    for out in 0..OUT {
        let mut sum = bias[out];
        for y in 0..H {
            for x in 0..W {
                for c in 0..C {
                    sum += rows[out * inputs + (y * W + x) * C + c] * input[y][x][c];
                }
            }
        }
        output[out] = if relu { sum.max(0.0) } else { sum };
    }
}

/// 2x2 max-pool, stride 2, output rounded down.
pub fn max_pool2<
    T: Copy + PartialOrd,
    const H: usize,
    const W: usize,
    const C: usize,
    const PH: usize,
    const PW: usize,
>(
    input: &Tensor<T, H, W, C>,
    output: &mut Tensor<T, PH, PW, C>,
) {
    assert!(PH == H / 2 && PW == W / 2);
    for y in 0..PH {
        for x in 0..PW {
            for c in 0..C {
                let mut best = input[2 * y][2 * x][c];
                for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                    let value = input[2 * y + dy][2 * x + dx][c];
                    if value > best {
                        best = value;
                    }
                }
                output[y][x][c] = best;
            }
        }
    }
}

/// The first `N` items of an iterator as an array (the reference kernels
/// index their per-channel constants).
fn collect<T: Copy + Default, const N: usize>(items: impl Iterator<Item = T>) -> [T; N] {
    let mut array = [T::default(); N];
    for (slot, item) in array.iter_mut().zip(items) {
        *slot = item;
    }
    array
}
