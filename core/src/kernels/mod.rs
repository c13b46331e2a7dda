//! Kernels: convolution (K x K, stride 1, 'same' or 'valid', optionally fused
//! with the 2x2 max-pool that follows it), dense, max-pool, argmax and
//! softmax, for int8 and f32.
//!
//! Kernels take their shapes as values: a layer view ([`int8::ConvLayer`],
//! [`f32::DenseLayer`], ...) checks once that its weights fit its shapes,
//! and a kernel checks the lengths of the slices it is given, returning `None`
//! (and writing nothing) when they do not fit. One compiled kernel serves
//! every layer of every network, which keeps the firmware small; the inner
//! loops run over contiguous slices (a kernel row's taps and channels at a
//! time), so they vectorise on a desktop, and the Arm DSP kernels keep their
//! inner loops in assembly.
//!
//! Every fast kernel has a plain, unfused counterpart in [`reference`](mod@reference) that
//! the tests compare it with.
//!
//! [`general`] holds portable kernels for layers the MNIST network does not
//! have (any kernel size and stride, depthwise convolution, average pool,
//! addition, int8 softmax), with TensorFlow Lite Micro's int8 semantics.

#[cfg(tinycnn_arm_dsp)]
pub mod dsp;
pub mod f32;
pub mod general;
pub mod int8;
pub mod reference;
#[cfg(test)]
mod tests;
pub mod wide;

use crate::arch::{Conv, Shape};

/// int8 kernels a caller plugs into the runner
/// ([`Int8Model::classify_with_kernels`](crate::Int8Model::classify_with_kernels)), with the
/// contracts of [`int8::conv`], [`int8::dense`] and the [`general`] kernels: the same output
/// bytes, `None` when the slices do not fit. The host passes the [`wide`] kernels compiled for
/// the processor it runs on, with the buffers they need.
///
/// The layers beyond the tutorial's (convolutions of any window and stride, depthwise
/// convolutions, average pools, additions) have default methods that run the portable
/// [`general`] kernels, so a caller overrides only those it has faster kernels for. Max pools of
/// any window and softmax always run the portable kernels.
pub trait Int8Kernels {
    /// A name for reports, such as `"avx2"`.
    fn name(&self) -> &'static str;
    /// [`int8::conv`].
    fn conv(&mut self, input: &[i8], layer: &int8::ConvLayer<'_>, output: &mut [i8]) -> Option<()>;
    /// [`int8::dense`].
    fn dense(
        &mut self,
        input: &[i8],
        layer: &int8::DenseLayer<'_>,
        output: &mut [i8],
    ) -> Option<()>;

    /// [`general::conv`]: a convolution of any window, stride and padding (and a residual
    /// block's projection shortcut).
    fn window_conv(
        &mut self,
        input: &[i8],
        geometry: &general::WindowGeometry,
        weights: &[u8],
        requantization: &int8::Requantization<'_>,
        output: &mut [i8],
    ) -> Option<()> {
        general::conv(input, geometry, weights, requantization, output)
    }

    /// [`general::depthwise`].
    fn depthwise(
        &mut self,
        input: &[i8],
        geometry: &general::WindowGeometry,
        weights: &[u8],
        requantization: &int8::Requantization<'_>,
        output: &mut [i8],
    ) -> Option<()> {
        general::depthwise(input, geometry, weights, requantization, output)
    }

    /// [`general::average_pool`] (a global average pool too: its window is the whole map).
    fn average_pool(
        &mut self,
        input: &[i8],
        geometry: &general::WindowGeometry,
        activation_min: i32,
        activation_max: i32,
        output: &mut [i8],
    ) -> Option<()> {
        general::average_pool(input, geometry, activation_min, activation_max, output)
    }

    /// [`general::add`].
    fn add(
        &mut self,
        a: &[i8],
        b: &[i8],
        params: &general::AddParams,
        output: &mut [i8],
    ) -> Option<()> {
        general::add(a, b, params, output)
    }
}

/// f32 convolution and dense kernels a caller plugs into the runner
/// ([`F32Model::classify_with_kernels`](crate::F32Model::classify_with_kernels)), with the
/// contracts of [`f32::conv`] and [`f32::dense`] up to rounding.
pub trait F32Kernels {
    /// A name for reports, such as `"avx2"`.
    fn name(&self) -> &'static str;
    /// [`f32::conv`].
    fn conv(&mut self, input: &[f32], layer: &f32::ConvLayer<'_>, output: &mut [f32])
    -> Option<()>;
    /// [`f32::dense`].
    fn dense(
        &mut self,
        input: &[f32],
        layer: &f32::DenseLayer<'_>,
        output: &mut [f32],
    ) -> Option<()>;
}

/// Largest kernel side the kernels take (an [`Architecture`](crate::arch::Architecture)
/// allows 1, 3 and 5).
pub const MAX_KERNEL: usize = 5;

/// Index of the largest value; the first one on ties, `0` for an empty or
/// all-NaN input (NaN never compares greater).
pub fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    // Two tight passes rather than one that tracks an index: a network whose output is
    // values (an autoencoder's 640) spends a few thousand instructions here per inference.
    let mut largest = None;
    for &value in values {
        let larger = match largest {
            None => value.partial_cmp(&value).is_some(), // false only for NaN
            Some(current) => value > current,
        };
        if larger {
            largest = Some(value);
        }
    }
    largest
        .and_then(|largest| values.iter().position(|&value| value == largest))
        .unwrap_or(0)
}

/// [`argmax`] of values as they come (test vectors decode theirs from bytes).
pub fn argmax_of<T: PartialOrd + Copy>(values: impl IntoIterator<Item = T>) -> usize {
    let mut best = 0;
    let mut best_value = None;
    for (index, value) in values.into_iter().enumerate() {
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

/// The shapes of one convolution as a kernel runs it: the input, the kernel,
/// the padding, the filters, and whether the 2x2 max-pool after it is fused
/// in (then the output is the pooled map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input map.
    pub input: Shape,
    /// Kernel side `K`.
    pub kernel: usize,
    /// Zero rows and columns on each side.
    pub pad: usize,
    /// Output channels.
    pub filters: usize,
    /// Whether a 2x2, stride 2 max-pool follows and is computed here.
    pub pooled: bool,
}

impl ConvGeometry {
    /// The geometry of `conv` on `input`, fused with a pool or not.
    pub const fn new(conv: &Conv, input: Shape, pooled: bool) -> Self {
        ConvGeometry {
            input,
            kernel: conv.side(),
            pad: conv.pad(),
            filters: conv.filters as usize,
            pooled,
        }
    }

    /// Weights per filter: `K x K x input channels`.
    pub const fn fan_in(&self) -> usize {
        self.kernel * self.kernel * self.input.channels
    }

    /// The convolution (before any pool) as a window of the general kernels.
    pub const fn window_geometry(&self) -> general::WindowGeometry {
        general::WindowGeometry {
            input: self.input,
            output: self.conv_output(),
            kernel_height: self.kernel,
            kernel_width: self.kernel,
            stride_height: 1,
            stride_width: 1,
            pad_top: self.pad,
            pad_left: self.pad,
        }
    }

    /// The convolution's own output, before any pool.
    pub const fn conv_output(&self) -> Shape {
        Shape::new(
            (self.input.height + 2 * self.pad + 1).saturating_sub(self.kernel),
            (self.input.width + 2 * self.pad + 1).saturating_sub(self.kernel),
            self.filters,
        )
    }

    /// What the kernel writes: the pooled map when `pooled`, else
    /// [`conv_output`](Self::conv_output).
    pub const fn output(&self) -> Shape {
        let full = self.conv_output();
        if self.pooled {
            Shape::new(full.height / 2, full.width / 2, full.channels)
        } else {
            full
        }
    }

    /// Whether the shapes make sense: a kernel of at most [`MAX_KERNEL`] no
    /// larger than the padded input, and a non-empty output.
    pub const fn is_consistent(&self) -> bool {
        let output = self.output();
        self.kernel >= 1
            && self.kernel <= MAX_KERNEL
            && self.pad < self.kernel
            && self.input.channels >= 1
            && self.filters >= 1
            && self.input.height + 2 * self.pad >= self.kernel
            && self.input.width + 2 * self.pad >= self.kernel
            && output.height >= 1
            && output.width >= 1
    }

    /// The windows that output pixel `(y, x)` is computed from: four
    /// convolution positions when pooled, one otherwise.
    pub(crate) fn windows(&self, y: usize, x: usize) -> Windows {
        let mut windows = Windows {
            items: [Window::EMPTY; 4],
            count: 0,
        };
        let positions: &[(usize, usize)] = if self.pooled {
            &[(0, 0), (0, 1), (1, 0), (1, 1)]
        } else {
            &[(0, 0)]
        };
        let scale = if self.pooled { 2 } else { 1 };
        for (slot, &(dy, dx)) in windows.items.iter_mut().zip(positions) {
            *slot = self.window(scale * y + dy, scale * x + dx);
            windows.count += 1;
        }
        windows
    }

    /// The input rows that convolution position `(y, x)` reads.
    pub(crate) fn window(&self, y: usize, x: usize) -> Window {
        let Shape {
            height,
            width,
            channels,
        } = self.input;
        let rows = taps(y, self.pad, self.kernel, height);
        let columns = taps(x, self.pad, self.kernel, width);
        let mut window = Window::EMPTY;
        window.run = (columns.end - columns.start) * channels;
        for (slot, ky) in window.rows.iter_mut().zip(rows) {
            let input_y = y + ky - self.pad;
            let input_x = x + columns.start - self.pad;
            *slot = (
                (input_y * width + input_x) * channels,
                (ky * self.kernel + columns.start) * channels,
            );
            window.count += 1;
        }
        window
    }
}

/// The kernel taps `k` along one axis that read inside the input for output
/// coordinate `at`: those with `0 <= at + k - pad < side`.
fn taps(at: usize, pad: usize, kernel: usize, side: usize) -> core::ops::Range<usize> {
    let first = pad.saturating_sub(at);
    let end = (side + pad).saturating_sub(at).min(kernel);
    first..end.max(first)
}

/// The input one convolution output reads, as runs of contiguous values: one
/// run per kernel row inside the input, each `run` values long (the row's
/// taps inside the input, times the input channels), starting at an input
/// offset and at a filter offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    rows: [(usize, usize); MAX_KERNEL],
    count: usize,
    /// Values per row.
    pub(crate) run: usize,
}

impl Window {
    const EMPTY: Window = Window {
        rows: [(0, 0); MAX_KERNEL],
        count: 0,
        run: 0,
    };

    /// `(input offset, filter offset)` of each row inside the input.
    pub(crate) fn rows(&self) -> &[(usize, usize)] {
        self.rows.get(..self.count).unwrap_or(&[])
    }
}

/// The one or four windows of an output pixel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Windows {
    items: [Window; 4],
    count: usize,
}

impl<'w> IntoIterator for &'w Windows {
    type Item = &'w Window;
    type IntoIter = core::slice::Iter<'w, Window>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.get(..self.count).unwrap_or(&[]).iter()
    }
}

/// 2x2 max-pool with stride 2 of an `input`-shaped map, rounding the output
/// size down (7 -> 3): the last row and column of an odd-sized input are
/// dropped, as in Keras and TensorFlow Lite. `None` if the slices do not fit.
#[inline(never)]
pub fn max_pool2<T: Copy + PartialOrd>(input: &[T], shape: Shape, output: &mut [T]) -> Option<()> {
    let Shape {
        height,
        width,
        channels,
    } = shape;
    let (out_height, out_width) = (height / 2, width / 2);
    if input.len() != shape.values() || output.len() != out_height * out_width * channels {
        return None;
    }
    let row = width * channels;
    for (index, out) in output.iter_mut().enumerate() {
        let c = index % channels;
        let x = index / channels % out_width;
        let y = index / channels / out_width;
        let top = 2 * y * row + 2 * x * channels + c;
        let a = *input.get(top)?;
        let b = *input.get(top + channels)?;
        let d = *input.get(top + row)?;
        let e = *input.get(top + row + channels)?;
        *out = larger(larger(a, b), larger(d, e));
    }
    Some(())
}

/// `max` for `PartialOrd` values; keeps `a` on ties and when `b` is NaN.
#[inline(always)]
pub(crate) fn larger<T: PartialOrd>(a: T, b: T) -> T {
    if b > a { b } else { a }
}

#[cfg(test)]
mod small_tests {
    use super::*;
    use crate::arch::{Activation, Padding};

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
        // A 3x3 map of two channels: channel 0 counts up, channel 1 down.
        let input: std::vec::Vec<i8> = (0..9).flat_map(|i| [i as i8, -(i as i8)]).collect();
        let mut output = [99i8; 2];
        max_pool2(&input, Shape::new(3, 3, 2), &mut output).unwrap();
        // Window {0,1,3,4}: the last row/column (2,5,6,7,8) never count.
        assert_eq!(output, [4, 0]);
        assert!(max_pool2(&input, Shape::new(3, 3, 1), &mut output).is_none());
    }

    fn geometry(kernel: u8, padding: Padding, side: usize, pooled: bool) -> ConvGeometry {
        let conv = Conv::square(kernel, padding, 2, Activation::Relu);
        ConvGeometry::new(&conv, Shape::new(side, side, 3), pooled)
    }

    #[test]
    fn windows_skip_the_padding() {
        // 3x3 'same' on a 4x4x3 map: the corner position reads rows 0-1 and
        // columns 0-1, i.e. taps (1..3, 1..3) of the kernel.
        let same = geometry(3, Padding::Same, 4, false);
        let corner = same.window(0, 0);
        assert_eq!(corner.rows(), &[(0, (3 + 1) * 3), (4 * 3, (2 * 3 + 1) * 3)]);
        assert_eq!(corner.run, 2 * 3);
        let inside = same.window(1, 2);
        assert_eq!(inside.rows().len(), 3);
        assert_eq!(inside.run, 9);
        assert_eq!(inside.rows()[0], (3, 0));
        // 5x5 'valid' reads the whole kernel everywhere.
        let valid = geometry(5, Padding::Valid, 6, false);
        assert_eq!(valid.conv_output(), Shape::new(2, 2, 2));
        let last = valid.window(1, 1);
        assert_eq!(last.rows().len(), 5);
        assert_eq!(last.run, 15);
        assert_eq!(last.rows()[4], (((1 + 4) * 6 + 1) * 3, 20 * 3));
        // Pooled: four positions per output pixel, 7 -> 3.
        let pooled = geometry(3, Padding::Same, 7, true);
        assert_eq!(pooled.output(), Shape::new(3, 3, 2));
        assert_eq!((&pooled.windows(2, 2)).into_iter().count(), 4);
    }
}
