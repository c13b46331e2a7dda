//! Kernels for processors with wide SIMD registers: desktops and servers (x86-64), phones and
//! Linux boards (aarch64). The int8 ones compute what [`super::int8`] computes, bit for bit; the
//! f32 ones what [`super::f32`] computes up to rounding, since they add in another order.
//!
//! The portable kernels are written for cores without SIMD, where loading an input value once
//! for four filters is what saves instructions. Here the int8 input is first widened to `i16`
//! with its zero point subtracted, once per layer, into a buffer the caller provides (the core
//! allocates nothing), so that every inner loop is a plain dot product of `i16` activations and
//! `i8` weights, which compilers turn into 16-bit multiply-adds (`pmaddwd` on x86, `smlal` on
//! aarch64). A pooled convolution takes the four positions of a pooling window together against
//! each row of a filter, reading the filter once for all four.
//!
//! Every function here is `#[inline(always)]`: a caller that calls it from a
//! `#[target_feature(enable = "avx2")]` function, as `host` does once it has checked the
//! processor, gets it compiled for that instruction set, and this module needs no `unsafe`.
//! The runner takes such kernels through [`super::Int8Kernels`] and [`super::F32Kernels`].

use super::{ConvGeometry, Window, Windows, f32 as kf32, int8 as ki8};

/// `f32` partial sums per dot product: the compiler may not reorder float additions itself, so
/// independent lanes are what lets it use SIMD; 8 fill an AVX register.
const LANES: usize = 8;

/// Input channels up to which a convolution is computed a row of positions at a time (a
/// position's taps are then too few for a dot product each to pay: 9 for a 3x3 kernel on grey
/// pictures), vectorised across the row instead.
const NARROW_CHANNELS: usize = 2;
/// Longest row of convolution positions the row-at-a-time path holds (an input side of 256
/// with 'same' padding); a longer one takes the dot-product path.
const MAX_ROW: usize = 264;

/// The sums of one filter at every position of convolution row `conv_row`, into `sums` (one
/// per position of the row), each weight read by `weight` (its index in the filter) and each
/// product added by `mac`: one pass over the row per tap, vectorised across it.
#[inline(always)]
fn row_sums<X: Copy, W: Copy, T: Copy + Default>(
    input: &[X],
    weight: impl Fn(usize) -> Option<W>,
    mac: impl Fn(&mut T, X, W),
    geometry: &ConvGeometry,
    conv_row: usize,
    sums: &mut [T],
) -> Option<()> {
    let (height, width, channels) = (
        geometry.input.height,
        geometry.input.width,
        geometry.input.channels,
    );
    let (kernel, pad) = (geometry.kernel, geometry.pad);
    sums.fill(T::default());
    for ky in 0..kernel {
        let Some(input_y) = (conv_row + ky).checked_sub(pad).filter(|&y| y < height) else {
            continue;
        };
        let row = input.get(input_y * width * channels..(input_y + 1) * width * channels)?;
        for kx in 0..kernel {
            // Position x reads input column x + kx - pad, inside the input for these x.
            let first = pad.saturating_sub(kx);
            let end = (width + pad).saturating_sub(kx).min(sums.len());
            if first >= end {
                continue;
            }
            let sums = sums.get_mut(first..end)?;
            let start = (first + kx - pad) * channels;
            if channels == 1 {
                // Contiguous: the loop the compiler vectorises best.
                let w = weight(ky * kernel + kx)?;
                let column = row.get(start..start + sums.len())?;
                for (sum, &x) in sums.iter_mut().zip(column) {
                    mac(sum, x, w);
                }
                continue;
            }
            for c in 0..channels {
                let w = weight((ky * kernel + kx) * channels + c)?;
                let column = row.get(start + c..)?.iter().step_by(channels);
                for (sum, &x) in sums.iter_mut().zip(column) {
                    mac(sum, x, w);
                }
            }
        }
    }
    Some(())
}

/// The one or two convolution rows output row `out_row` reads, each filled by `sums_of` (the
/// row's index, its sums), then the output values of that row: `(column, best sum)` for each,
/// the maximum of the pooled 2x2 window when pooled.
#[inline(always)]
fn for_each_row_output<T: Copy + Default + PartialOrd>(
    geometry: &ConvGeometry,
    out_row: usize,
    rows: &mut [[T; MAX_ROW]; 2],
    mut sums_of: impl FnMut(usize, &mut [T]) -> Option<()>,
    mut emit: impl FnMut(usize, T) -> Option<()>,
) -> Option<()> {
    let positions = geometry.conv_output().width;
    let out_width = geometry.output().width;
    let pooled = geometry.pooled;
    let used = if pooled { 2 } else { 1 };
    for (dy, row) in rows.iter_mut().take(used).enumerate() {
        let conv_row = if pooled { 2 * out_row + dy } else { out_row };
        sums_of(conv_row, row.get_mut(..positions)?)?;
    }
    let [top, bottom] = &*rows;
    for x in 0..out_width {
        let best = if pooled {
            let quad = [
                *top.get(2 * x)?,
                *top.get(2 * x + 1)?,
                *bottom.get(2 * x)?,
                *bottom.get(2 * x + 1)?,
            ];
            quad.into_iter().fold(quad[0], super::larger)
        } else {
            *top.get(x)?
        };
        emit(x, best)?;
    }
    Some(())
}

/// [`conv`] for inputs of at most [`NARROW_CHANNELS`] channels.
#[inline(always)]
fn conv_narrow(widened: &[i16], layer: &ki8::ConvLayer<'_>, output: &mut [i8]) -> Option<()> {
    let geometry = layer.geometry();
    let out = geometry.output();
    let fan_in = geometry.fan_in().max(1);
    let requantization = layer.requantization();
    let mut rows = [[0i32; MAX_ROW]; 2];
    for out_row in 0..out.height {
        let filters = layer.filters().chunks_exact(fan_in);
        for (f, (filter, channel)) in filters.zip(requantization.channels()).enumerate() {
            let weight = |index: usize| filter.get(index).map(|&w| i16::from(w as i8));
            // |x| <= 255 and |w| <= 128: the product fits an i16, and 16-bit multiplies are
            // the fast ones.
            let mac = |sum: &mut i32, x: i16, w: i16| *sum += i32::from(x.wrapping_mul(w));
            for_each_row_output(
                geometry,
                out_row,
                &mut rows,
                |conv_row, sums| row_sums(widened, weight, mac, geometry, conv_row, sums),
                |x, best| {
                    let at = (out_row * out.width + x) * out.channels + f;
                    *output.get_mut(at)? = requantization.apply_conv(best, channel);
                    Some(())
                },
            )?;
        }
    }
    Some(())
}

/// [`conv_f32`] for inputs of at most [`NARROW_CHANNELS`] channels.
#[inline(always)]
fn conv_narrow_f32(input: &[f32], layer: &kf32::ConvLayer<'_>, output: &mut [f32]) -> Option<()> {
    let geometry = layer.geometry();
    let out = geometry.output();
    let activation = layer.activation();
    let mut rows = [[0f32; MAX_ROW]; 2];
    for out_row in 0..out.height {
        for (f, (filter, bias)) in layer.channels().enumerate() {
            let weight = |index: usize| filter.get(index).map(|&w| f32::from_le_bytes(w));
            for_each_row_output(
                geometry,
                out_row,
                &mut rows,
                |conv_row, sums| {
                    let mac = |sum: &mut f32, x: f32, w: f32| *sum += x * w;
                    row_sums(input, weight, mac, geometry, conv_row, sums)
                },
                |x, best| {
                    let at = (out_row * out.width + x) * out.channels + f;
                    *output.get_mut(at)? = kf32::activate(best + bias, activation);
                    Some(())
                },
            )?;
        }
    }
    Some(())
}

/// Whether a convolution takes the row-at-a-time path.
#[inline(always)]
fn narrow(geometry: &ConvGeometry) -> bool {
    geometry.input.channels <= NARROW_CHANNELS && geometry.conv_output().width <= MAX_ROW
}

/// `input - zero_point` for every value, into `widened` (of the same length): the form
/// [`conv`] and [`dense`] read, with the layer's
/// [`input_zero_point`](ki8::Requantization::input_zero_point). `None` if the lengths differ or
/// the zero point is not an int8 value.
#[inline(always)]
pub fn widen(input: &[i8], zero_point: i32, widened: &mut [i16]) -> Option<()> {
    if input.len() != widened.len() {
        return None;
    }
    let zero_point = i16::from(i8::try_from(zero_point).ok()?);
    for (wide, &value) in widened.iter_mut().zip(input) {
        *wide = i16::from(value) - zero_point;
    }
    Some(())
}

/// `sum(x * w)` over equally long slices (the shorter one bounds it).
#[inline(always)]
fn dot(activations: &[i16], weights: &[u8]) -> i32 {
    activations
        .iter()
        .zip(weights)
        .map(|(&x, &w)| i32::from(x) * i32::from(w as i8))
        .sum()
}

/// [`dot`] of one run of weights with the runs of four positions.
#[inline(always)]
fn dot4(activations: [&[i16]; 4], weights: &[u8]) -> [i32; 4] {
    let [a, b, c, d] = activations;
    let mut sums = [0i32; 4];
    for ((((&w, &a), &b), &c), &d) in weights.iter().zip(a).zip(b).zip(c).zip(d) {
        let w = i32::from(w as i8);
        sums[0] += i32::from(a) * w;
        sums[1] += i32::from(b) * w;
        sums[2] += i32::from(c) * w;
        sums[3] += i32::from(d) * w;
    }
    sums
}

/// The dot products of one filter with the four windows of a pooled position, which take nearly
/// all of a convolution's time: a caller may supply them written for an instruction set
/// ([`conv_with`], [`conv_f32_with`]); [`PlainDots`] is this module's plain Rust.
///
/// Implementations must return exactly [`PlainDots`]' sums for int8 (integer sums do not
/// depend on the order), and the same up to rounding for f32. Runs shorter than the weights
/// bound the sums, as a zip does.
pub trait Dots {
    /// `sum(x * w)` of each run of `activations` with `weights` (`i8`s as bytes).
    fn dot4(&self, activations: [&[i16]; 4], weights: &[u8]) -> [i32; 4];
    /// `sum(x * w)` of each run of `activations` with `weights` (little-endian `f32`s).
    fn dot4_f32(&self, activations: [&[f32]; 4], weights: &[[u8; 4]]) -> [f32; 4];
}

/// The dot products in plain Rust, which compilers vectorise passably.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainDots;

impl Dots for PlainDots {
    #[inline(always)]
    fn dot4(&self, activations: [&[i16]; 4], weights: &[u8]) -> [i32; 4] {
        dot4(activations, weights)
    }

    #[inline(always)]
    fn dot4_f32(&self, activations: [&[f32]; 4], weights: &[[u8; 4]]) -> [f32; 4] {
        dot4_f32(activations, weights)
    }
}

/// The four windows of a pooled output pixel when they read the same taps of the filter (every
/// position away from the zero padding): then they can share each filter row.
#[inline(always)]
fn aligned_quad(windows: &Windows) -> Option<[&Window; 4]> {
    let mut iter = windows.into_iter();
    let quad = [iter.next()?, iter.next()?, iter.next()?, iter.next()?];
    let [first, rest @ ..] = &quad;
    let same = rest.iter().all(|window| {
        window.run == first.run
            && window.rows().len() == first.rows().len()
            && window
                .rows()
                .iter()
                .zip(first.rows())
                .all(|(&(_, tap), &(_, first_tap))| tap == first_tap)
    });
    same.then_some(quad)
}

/// The accumulator of one filter at one window.
#[inline(always)]
fn window_sum(widened: &[i16], filter: &[u8], window: &Window) -> Option<i32> {
    let mut sum = 0;
    for &(input_start, filter_start) in window.rows() {
        let activations = widened.get(input_start..input_start + window.run)?;
        let weights = filter.get(filter_start..filter_start + window.run)?;
        sum += dot(activations, weights);
    }
    Some(sum)
}

/// The accumulators of one filter at the four windows of an [`aligned_quad`].
#[inline(always)]
fn quad_sums(
    dots: &impl Dots,
    widened: &[i16],
    filter: &[u8],
    quad: [&Window; 4],
) -> Option<[i32; 4]> {
    let run = quad[0].run;
    let mut sums = [0i32; 4];
    for (row, &(_, filter_start)) in quad[0].rows().iter().enumerate() {
        let weights = filter.get(filter_start..filter_start + run)?;
        let mut activations: [&[i16]; 4] = [&[]; 4];
        for (slot, window) in activations.iter_mut().zip(quad) {
            let (input_start, _) = *window.rows().get(row)?;
            *slot = widened.get(input_start..input_start + run)?;
        }
        for (sum, part) in sums.iter_mut().zip(dots.dot4(activations, weights)) {
            *sum += part;
        }
    }
    Some(sums)
}

/// Values of scratch [`conv`] and [`conv_f32`] need beside the input: the four windows of a
/// pooled position copied out, one after the other.
pub const fn patches_len(geometry: &ConvGeometry) -> usize {
    4 * geometry.fan_in()
}

/// The four windows of an [`aligned_quad`] that reads every tap of the filter (every position
/// away from the padding), copied into `patches` as a filter is laid out: then each filter is
/// one dot product with each of them.
#[inline(always)]
fn gather<'p, T: Copy>(
    input: &[T],
    quad: [&Window; 4],
    fan_in: usize,
    patches: &'p mut [T],
) -> Option<[&'p [T]; 4]> {
    let run = quad[0].run;
    if run == 0 || run * quad[0].rows().len() != fan_in {
        return None;
    }
    let patches = patches.get_mut(..4 * fan_in)?;
    for (patch, window) in patches.chunks_exact_mut(fan_in).zip(quad) {
        for (piece, &(start, _)) in patch.chunks_exact_mut(run).zip(window.rows()) {
            piece.copy_from_slice(input.get(start..start + run)?);
        }
    }
    let (first, rest) = patches.split_at(fan_in);
    let (second, rest) = rest.split_at(fan_in);
    let (third, fourth) = rest.split_at(fan_in);
    Some([first, second, third, fourth])
}

/// [`super::int8::conv`] on an input [`widen`]ed with the layer's input zero point: the same
/// output bytes. `None` (and nothing useful written) if the slices do not fit the layer.
#[inline(always)]
pub fn conv(
    widened: &[i16],
    patches: &mut [i16],
    layer: &ki8::ConvLayer<'_>,
    output: &mut [i8],
) -> Option<()> {
    conv_with(&PlainDots, widened, patches, layer, output)
}

/// [`conv`] with the dot products of `dots`.
#[inline(always)]
pub fn conv_with(
    dots: &impl Dots,
    widened: &[i16],
    patches: &mut [i16],
    layer: &ki8::ConvLayer<'_>,
    output: &mut [i8],
) -> Option<()> {
    let geometry = layer.geometry();
    let out_shape = geometry.output();
    if widened.len() != geometry.input.values() || output.len() != out_shape.values() {
        return None;
    }
    if narrow(geometry) {
        return conv_narrow(widened, layer, output);
    }
    let fan_in = geometry.fan_in().max(1);
    let requantization = layer.requantization();
    let pixels = output.chunks_exact_mut(out_shape.channels.max(1));
    for (pixel_index, out_pixel) in pixels.enumerate() {
        let (y, x) = position(geometry, pixel_index);
        let windows = geometry.windows(y, x);
        let quad = aligned_quad(&windows);
        let filters = layer.filters().chunks_exact(fan_in);
        if let Some(patches) = quad.and_then(|quad| gather(widened, quad, fan_in, patches)) {
            for ((out, filter), channel) in out_pixel
                .iter_mut()
                .zip(filters)
                .zip(requantization.channels())
            {
                let best = dots.dot4(patches, filter).into_iter().max()?;
                *out = requantization.apply_conv(best, channel);
            }
            continue;
        }
        for ((out, filter), channel) in out_pixel
            .iter_mut()
            .zip(filters)
            .zip(requantization.channels())
        {
            let best = match quad {
                Some(quad) => quad_sums(dots, widened, filter, quad)?.into_iter().max()?,
                None => {
                    let mut best = i32::MIN;
                    for window in &windows {
                        best = best.max(window_sum(widened, filter, window)?);
                    }
                    best
                }
            };
            *out = requantization.apply_conv(best, channel);
        }
    }
    Some(())
}

/// [`super::int8::dense`] on an input [`widen`]ed with the layer's input zero point: the same
/// output bytes.
#[inline(always)]
pub fn dense(widened: &[i16], layer: &ki8::DenseLayer<'_>, output: &mut [i8]) -> Option<()> {
    if widened.len() != layer.inputs() || output.len() != layer.outputs() {
        return None;
    }
    let requantization = layer.requantization();
    let rows = layer.rows().chunks_exact(layer.inputs().max(1));
    for ((out, row), channel) in output.iter_mut().zip(rows).zip(requantization.channels()) {
        *out = requantization.apply(dot(widened, row), channel);
    }
    Some(())
}

/// The output pixel `index` of a map of `geometry`'s output width.
#[inline(always)]
fn position(geometry: &ConvGeometry, index: usize) -> (usize, usize) {
    let width = geometry.output().width.max(1);
    (index / width, index % width)
}

/// The f32 dot product of one run of weights with the runs of four positions, in [`LANES`]
/// partial sums each.
#[inline(always)]
fn dot4_f32(activations: [&[f32]; 4], weights: &[[u8; 4]]) -> [f32; 4] {
    let mut lanes = [[0.0f32; LANES]; 4];
    let (weight_blocks, weight_tail) = weights.as_chunks::<LANES>();
    let blocks = activations.map(|run| run.as_chunks::<LANES>());
    for (index, ws) in weight_blocks.iter().enumerate() {
        let ws = ws.map(f32::from_le_bytes);
        for (position, (run_blocks, _)) in lanes.iter_mut().zip(&blocks) {
            if let Some(xs) = run_blocks.get(index) {
                for ((lane, &x), &w) in position.iter_mut().zip(xs).zip(&ws) {
                    *lane += x * w;
                }
            }
        }
    }
    let mut sums = lanes.map(|position| position.iter().sum::<f32>());
    for (sum, (_, tail)) in sums.iter_mut().zip(&blocks) {
        for (&x, &w) in tail.iter().zip(weight_tail) {
            *sum += x * f32::from_le_bytes(w);
        }
    }
    sums
}

/// The sum of one f32 filter at one window.
#[inline(always)]
fn window_sum_f32(input: &[f32], filter: &[[u8; 4]], window: &Window) -> Option<f32> {
    let mut sum = 0.0;
    for &(input_start, filter_start) in window.rows() {
        let activations = input.get(input_start..input_start + window.run)?;
        let weights = filter.get(filter_start..filter_start + window.run)?;
        sum += kf32::dot(activations, weights);
    }
    Some(sum)
}

/// The sums of one f32 filter at the four windows of an [`aligned_quad`].
#[inline(always)]
fn quad_sums_f32(
    dots: &impl Dots,
    input: &[f32],
    filter: &[[u8; 4]],
    quad: [&Window; 4],
) -> Option<[f32; 4]> {
    let run = quad[0].run;
    let mut sums = [0.0f32; 4];
    for (row, &(_, filter_start)) in quad[0].rows().iter().enumerate() {
        let weights = filter.get(filter_start..filter_start + run)?;
        let mut activations: [&[f32]; 4] = [&[]; 4];
        for (slot, window) in activations.iter_mut().zip(quad) {
            let (input_start, _) = *window.rows().get(row)?;
            *slot = input.get(input_start..input_start + run)?;
        }
        for (sum, part) in sums.iter_mut().zip(dots.dot4_f32(activations, weights)) {
            *sum += part;
        }
    }
    Some(sums)
}

/// [`super::f32::conv`], adding in another order: the same outputs up to rounding.
#[inline(always)]
pub fn conv_f32(
    input: &[f32],
    patches: &mut [f32],
    layer: &kf32::ConvLayer<'_>,
    output: &mut [f32],
) -> Option<()> {
    conv_f32_with(&PlainDots, input, patches, layer, output)
}

/// [`conv_f32`] with the dot products of `dots`.
#[inline(always)]
pub fn conv_f32_with(
    dots: &impl Dots,
    input: &[f32],
    patches: &mut [f32],
    layer: &kf32::ConvLayer<'_>,
    output: &mut [f32],
) -> Option<()> {
    let geometry = layer.geometry();
    let out_shape = geometry.output();
    if input.len() != geometry.input.values() || output.len() != out_shape.values() {
        return None;
    }
    if narrow(geometry) {
        return conv_narrow_f32(input, layer, output);
    }
    let fan_in = geometry.fan_in().max(1);
    let activation = layer.activation();
    let pixels = output.chunks_exact_mut(out_shape.channels.max(1));
    for (pixel_index, out_pixel) in pixels.enumerate() {
        let (y, x) = position(geometry, pixel_index);
        let windows = geometry.windows(y, x);
        let quad = aligned_quad(&windows);
        if let Some(patches) = quad.and_then(|quad| gather(input, quad, fan_in, patches)) {
            for (out, (filter, bias)) in out_pixel.iter_mut().zip(layer.channels()) {
                let best = dots
                    .dot4_f32(patches, filter)
                    .into_iter()
                    .fold(f32::NEG_INFINITY, super::larger);
                *out = kf32::activate(best + bias, activation);
            }
            continue;
        }
        for (out, (filter, bias)) in out_pixel.iter_mut().zip(layer.channels()) {
            let best = match quad {
                Some(quad) => quad_sums_f32(dots, input, filter, quad)?
                    .into_iter()
                    .fold(f32::NEG_INFINITY, super::larger),
                None => {
                    let mut best = f32::NEG_INFINITY;
                    for window in &windows {
                        best = super::larger(best, window_sum_f32(input, filter, window)?);
                    }
                    best
                }
            };
            *out = kf32::activate(best + bias, layer.activation());
        }
    }
    Some(())
}

/// [`super::f32::dense`], adding in another order: the same outputs up to rounding.
#[inline(always)]
pub fn dense_f32(input: &[f32], layer: &kf32::DenseLayer<'_>, output: &mut [f32]) -> Option<()> {
    if input.len() != layer.inputs() || output.len() != layer.outputs() {
        return None;
    }
    for (out, (row, bias)) in output.iter_mut().zip(layer.channels()) {
        *out = kf32::activate(kf32::dot(input, row) + bias, layer.activation());
    }
    Some(())
}
