//! Plain reference kernels: unfused, index-based, written to mirror
//! TensorFlow Lite Micro's reference `Conv`, `MaxPool` and `FullyConnected`
//! loops, not to be fast. The tests compare every fast kernel with these.
//!
//! They index with loop counters and `assert!` their slices' lengths: they
//! are test oracles (the tests and the firmware's `kernels` proof call them),
//! never called by the runner.

#![allow(clippy::needless_range_loop, clippy::indexing_slicing)]

use super::int8;
use crate::arch::{Activation, Shape};

/// int8 convolution (stride 1, `pad` zeros on each side) with the layer's
/// activation, at full resolution (no pool), as TFLite's reference `Conv`.
/// `output` holds the `conv_output` shape of the layer's geometry.
pub fn conv_i8(input: &[i8], layer: &int8::ConvLayer<'_>, output: &mut [i8]) {
    let geometry = layer.geometry();
    let Shape {
        height,
        width,
        channels,
    } = geometry.input;
    let out = geometry.conv_output();
    let (kernel, pad) = (geometry.kernel, geometry.pad);
    assert_eq!(input.len(), geometry.input.values());
    assert_eq!(output.len(), out.values());
    let filters = layer.filters();
    let requantization = layer.requantization();
    let input_offset = -requantization.input_zero_point();
    for (oc, constants) in requantization.channels().enumerate() {
        for y in 0..out.height {
            for x in 0..out.width {
                let mut accumulator: i32 = 0;
                for ky in 0..kernel {
                    for kx in 0..kernel {
                        let in_y = y as isize + ky as isize - pad as isize;
                        let in_x = x as isize + kx as isize - pad as isize;
                        // TFLite skips taps outside the image.
                        if in_y < 0 || in_x < 0 || in_y >= height as isize || in_x >= width as isize
                        {
                            continue;
                        }
                        for ic in 0..channels {
                            let input_value = i32::from(
                                input[(in_y as usize * width + in_x as usize) * channels + ic],
                            );
                            let filter_value = i32::from(
                                filters[((oc * kernel + ky) * kernel + kx) * channels + ic] as i8,
                            );
                            accumulator += filter_value * (input_value + input_offset);
                        }
                    }
                }
                output[(y * out.width + x) * out.channels + oc] =
                    requantization.apply(accumulator, constants);
            }
        }
    }
}

/// int8 dense (TFLite `FullyConnected`) over a vector.
pub fn dense_i8(input: &[i8], layer: &int8::DenseLayer<'_>, output: &mut [i8]) {
    let inputs = layer.inputs();
    assert_eq!(input.len(), inputs);
    assert_eq!(output.len(), layer.outputs());
    let rows = layer.rows();
    let requantization = layer.requantization();
    let input_offset = -requantization.input_zero_point();
    for (out, constants) in requantization.channels().enumerate() {
        let mut accumulator: i32 = 0;
        for i in 0..inputs {
            accumulator +=
                i32::from(rows[out * inputs + i] as i8) * (i32::from(input[i]) + input_offset);
        }
        output[out] = requantization.apply(accumulator, constants);
    }
}

/// f32 convolution + bias + activation at full resolution; `filters` in
/// `[out][ky][kx][in]` order, `output` of `out` shape.
#[allow(clippy::too_many_arguments)]
pub fn conv_f32(
    input: &[f32],
    shape: Shape,
    kernel: usize,
    pad: usize,
    filters: &[f32],
    bias: &[f32],
    activation: Activation,
    output: &mut [f32],
) {
    let Shape {
        height,
        width,
        channels,
    } = shape;
    let out_height = height + 2 * pad + 1 - kernel;
    let out_width = width + 2 * pad + 1 - kernel;
    let filters_count = bias.len();
    assert_eq!(input.len(), shape.values());
    assert_eq!(filters.len(), filters_count * kernel * kernel * channels);
    assert_eq!(output.len(), out_height * out_width * filters_count);
    for y in 0..out_height {
        for x in 0..out_width {
            for oc in 0..filters_count {
                let mut sum = bias[oc];
                for ky in 0..kernel {
                    for kx in 0..kernel {
                        let in_y = y as isize + ky as isize - pad as isize;
                        let in_x = x as isize + kx as isize - pad as isize;
                        if in_y < 0 || in_x < 0 || in_y >= height as isize || in_x >= width as isize
                        {
                            continue;
                        }
                        for ic in 0..channels {
                            sum += input[(in_y as usize * width + in_x as usize) * channels + ic]
                                * filters[((oc * kernel + ky) * kernel + kx) * channels + ic];
                        }
                    }
                }
                output[(y * out_width + x) * filters_count + oc] = match activation {
                    Activation::Relu => sum.max(0.0),
                    Activation::Relu6 => sum.clamp(0.0, 6.0),
                    Activation::None => sum,
                };
            }
        }
    }
}

/// f32 dense over a vector.
pub fn dense_f32(
    input: &[f32],
    rows: &[f32],
    bias: &[f32],
    activation: Activation,
    output: &mut [f32],
) {
    let inputs = input.len();
    assert_eq!(rows.len(), bias.len() * inputs);
    assert_eq!(output.len(), bias.len());
    for out in 0..bias.len() {
        let mut sum = bias[out];
        for i in 0..inputs {
            sum += rows[out * inputs + i] * input[i];
        }
        output[out] = match activation {
            Activation::Relu => sum.max(0.0),
            Activation::Relu6 => sum.clamp(0.0, 6.0),
            Activation::None => sum,
        };
    }
}

/// 2x2 max-pool, stride 2, output rounded down.
pub fn max_pool2<T: Copy + PartialOrd>(input: &[T], shape: Shape, output: &mut [T]) {
    let Shape {
        height,
        width,
        channels,
    } = shape;
    let (out_height, out_width) = (height / 2, width / 2);
    assert_eq!(input.len(), shape.values());
    assert_eq!(output.len(), out_height * out_width * channels);
    let at = |y: usize, x: usize, c: usize| input[(y * width + x) * channels + c];
    for y in 0..out_height {
        for x in 0..out_width {
            for c in 0..channels {
                let mut best = at(2 * y, 2 * x, c);
                for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                    let value = at(2 * y + dy, 2 * x + dx, c);
                    if value > best {
                        best = value;
                    }
                }
                output[(y * out_width + x) * channels + c] = best;
            }
        }
    }
}
