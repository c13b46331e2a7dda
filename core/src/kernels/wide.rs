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

use super::general::{self, AddParams, WindowGeometry};
use super::{ConvGeometry, Window, Windows, f32 as kf32, int8 as ki8};
use crate::quant::Rounding;

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
    if !geometry.pooled {
        // Without a pool there is no quad of windows to share a filter: four positions
        // gathered side by side share it instead.
        return window_conv_with(
            dots,
            widened,
            patches,
            &geometry.window_geometry(),
            layer.filters(),
            layer.requantization(),
            output,
        );
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

// The layers beyond the tutorial's, with the contracts of the portable kernels of
// [`super::general`]: convolutions of any window and stride, depthwise convolutions, average
// pools and additions. Their loops run across output channels (or filters) with `i32` lanes,
// and requantise a run of channels at a time ([`requantize_run`]), so that the compiler turns
// them into vector instructions.

/// Output channels (or filters) a block of sums holds on the stack.
const CHANNEL_BLOCK: usize = 64;

/// [`ki8::Requantization::apply`] of `sums`, the accumulators of output channels `first..` in
/// order, into `out` (as long): lane by lane and without branches, so that it vectorises. The
/// same bytes as `apply` for every accumulator and constant.
#[inline(always)]
fn requantize_run(
    requantization: &ki8::Requantization<'_>,
    first: usize,
    sums: &[i32],
    out: &mut [i8],
) -> Option<()> {
    let len = sums.len();
    if out.len() != len {
        return None;
    }
    let (bias, multipliers, shifts) = requantization.raw();
    let bias = bias.get(first..first + len)?;
    let multipliers = multipliers.get(first..first + len)?;
    let shifts = shifts.get(first..first + len)?;
    let zero_point = requantization.output_zero_point();
    let (low, high) = (
        requantization.activation_min(),
        requantization.activation_max(),
    );
    let lanes = out
        .iter_mut()
        .zip(sums)
        .zip(bias.iter().zip(multipliers).zip(shifts));
    match requantization.rounding() {
        Rounding::Double => {
            for ((out, &sum), ((&bias, &multiplier), &shift)) in lanes {
                let scaled = scale_twice(
                    sum.saturating_add(i32::from_le_bytes(bias)),
                    i32::from_le_bytes(multiplier),
                    i32::from(shift as i8),
                );
                *out = offset_and_clamp(scaled, zero_point, low, high);
            }
        }
        Rounding::Single => {
            for ((out, &sum), ((&bias, &multiplier), &shift)) in lanes {
                let scaled = scale_once(
                    sum.saturating_add(i32::from_le_bytes(bias)),
                    i32::from_le_bytes(multiplier),
                    i32::from(shift as i8),
                );
                *out = offset_and_clamp(scaled, zero_point, low, high);
            }
        }
    }
    Some(())
}

/// [`crate::quant::multiply_by_quantized_multiplier`], without branches.
#[inline(always)]
fn scale_twice(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = shift.clamp(0, crate::quant::MAX_SHIFT) as u32;
    let right = (-shift).clamp(0, 31) as u32;
    // x * 2^left, saturating.
    let shifted = x << left;
    let bound = (x >> 31) ^ i32::MAX;
    let x = if shifted >> left == x { shifted } else { bound };
    // The rounding doubling high multiply: floor((x * m + 2^30) / 2^31) is what TensorFlow
    // Lite's nudge and truncating division give for both signs; the one product that leaves
    // i32 (both operands i32::MIN) saturates.
    let product = i64::from(x) * i64::from(multiplier);
    let high = ((product + (1 << 30)) >> 31).min(i64::from(i32::MAX)) as i32;
    // The rounding divide by 2^right, ties away from zero.
    let mask = ((1u32 << right) - 1) as i32;
    let remainder = high & mask;
    let threshold = (mask >> 1) + i32::from(high < 0);
    (high >> right) + i32::from(remainder > threshold)
}

/// [`crate::quant::multiply_by_quantized_multiplier_single_rounding`], without branches.
#[inline(always)]
fn scale_once(x: i32, multiplier: i32, shift: i32) -> i32 {
    let shift = shift.clamp(crate::quant::MIN_SHIFT, crate::quant::MAX_SHIFT);
    let total = (31 - shift) as u32;
    let rounded = (i64::from(x) * i64::from(multiplier) + (1i64 << (total - 1))) >> total;
    rounded.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// The output zero point added (saturating) and the value clamped as TensorFlow Lite clamps,
/// `max(low)` then `min(high)`, for bounds in the int8 range: a scaled value beyond +-1024
/// ends at a bound either way, so it is clamped there first instead of saturating.
#[inline(always)]
fn offset_and_clamp(scaled: i32, zero_point: i32, low: i32, high: i32) -> i8 {
    (scaled.clamp(-1024, 1024) + zero_point).max(low).min(high) as i8
}

/// Values of scratch [`window_conv`] needs beside the widened input: four windows laid out as
/// a filter is.
pub const fn window_patches_len(geometry: &WindowGeometry) -> usize {
    4 * geometry.kernel_height * geometry.kernel_width * geometry.input.channels
}

/// The taps of `window` inside the input copied from `widened` into `patch` (one filter long),
/// where a filter has them; zero at the taps outside, which then add nothing, as the portable
/// kernel skips them.
#[inline(always)]
fn gather_window(
    widened: &[i16],
    window: general::Window,
    geometry: &WindowGeometry,
    patch: &mut [i16],
) -> Option<()> {
    let channels = geometry.input.channels;
    let whole = window.rows.len() == geometry.kernel_height
        && window.columns.len() == geometry.kernel_width;
    if !whole {
        patch.fill(0);
    }
    for run in window.runs() {
        let values = widened.get(run.pixel * channels..(run.pixel + run.len) * channels)?;
        patch
            .get_mut(run.tap * channels..(run.tap + run.len) * channels)?
            .copy_from_slice(values);
    }
    Some(())
}

/// [`super::general::conv`] on an input [`widen`]ed with the requantisation's input zero
/// point: the same output bytes. Four output pixels at a time, their windows gathered into
/// `patches` ([`window_patches_len`]) as a filter lays them out, then one [`Dots::dot4`] per
/// filter.
#[inline(always)]
pub fn window_conv(
    widened: &[i16],
    patches: &mut [i16],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &ki8::Requantization<'_>,
    output: &mut [i8],
) -> Option<()> {
    window_conv_with(
        &PlainDots,
        widened,
        patches,
        geometry,
        weights,
        requantization,
        output,
    )
}

/// [`window_conv`] with the dot products of `dots`.
#[inline(always)]
pub fn window_conv_with(
    dots: &impl Dots,
    widened: &[i16],
    patches: &mut [i16],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &ki8::Requantization<'_>,
    output: &mut [i8],
) -> Option<()> {
    let filter_len = geometry.taps()?.checked_mul(geometry.input.channels)?;
    let filters = geometry.output.channels;
    let fits = geometry.fits(widened, output)
        && Some(weights.len()) == filter_len.checked_mul(filters)
        && requantization.outputs() == filters;
    if !fits {
        return None;
    }
    let patches = patches.get_mut(..4 * filter_len)?;
    let pixels = geometry.output.height * geometry.output.width;
    let mut windows = geometry.windows();
    let mut sums = [[0i32; CHANNEL_BLOCK]; 4];
    for first_pixel in (0..pixels).step_by(4) {
        let count = (pixels - first_pixel).min(4);
        for patch in patches.chunks_exact_mut(filter_len).take(count) {
            gather_window(widened, windows.next()?, geometry, patch)?;
        }
        // The last group's missing pixels repeat its first: their sums are dropped.
        let (first, rest) = patches.split_at_mut(filter_len);
        for patch in rest.chunks_exact_mut(filter_len).skip(count - 1) {
            patch.copy_from_slice(first);
        }
        let (second, rest) = rest.split_at(filter_len);
        let (third, fourth) = rest.split_at(filter_len);
        let four: [&[i16]; 4] = [first, second, third, fourth];
        let blocks = weights.chunks(filter_len * CHANNEL_BLOCK);
        for (block, block_weights) in blocks.enumerate() {
            let in_block = block_weights.len() / filter_len;
            for (f, filter) in block_weights.chunks_exact(filter_len).enumerate() {
                let dots = dots.dot4(four, filter);
                for (sums, dot) in sums.iter_mut().zip(dots) {
                    *sums.get_mut(f)? = dot;
                }
            }
            let base = block * CHANNEL_BLOCK;
            for (k, sums) in sums.iter().enumerate().take(count) {
                let at = (first_pixel + k) * filters + base;
                let out = output.get_mut(at..at + in_block)?;
                requantize_run(requantization, base, sums.get(..in_block)?, out)?;
            }
        }
    }
    Some(())
}

/// The shapes of [`depthwise`]'s scratch for `geometry`: the padded rows and columns the
/// windows read, the columns of one phase of the stride, and the values of an output row.
#[derive(Clone, Copy, Debug)]
struct DepthwiseShape {
    rows: usize,
    phase_columns: usize,
    row: usize,
}

impl DepthwiseShape {
    const fn of(geometry: &WindowGeometry) -> Self {
        let out = geometry.output;
        let stride = if geometry.stride_width == 0 {
            1
        } else {
            geometry.stride_width
        };
        let columns = (out.width.saturating_sub(1)) * stride + geometry.kernel_width;
        DepthwiseShape {
            rows: out.height.saturating_sub(1) * geometry.stride_height + geometry.kernel_height,
            phase_columns: columns.div_ceil(stride),
            row: out.width * out.channels,
        }
    }

    /// Values of one padded row: every phase.
    const fn padded_row(&self, geometry: &WindowGeometry) -> usize {
        geometry.stride_width * self.phase_columns * geometry.output.channels
    }
}

/// `i16`s of scratch [`depthwise`] needs: the input widened and padded, then each tap's
/// weights along an output row.
pub const fn depthwise_i16_len(geometry: &WindowGeometry) -> usize {
    let shape = DepthwiseShape::of(geometry);
    shape.rows * shape.padded_row(geometry)
        + geometry.kernel_height * geometry.kernel_width * shape.row
}

/// `i32`s of scratch [`depthwise`] needs: an output row's sums and its channels' biases,
/// multipliers and shifts.
pub const fn depthwise_i32_len(geometry: &WindowGeometry) -> usize {
    4 * DepthwiseShape::of(geometry).row
}

/// [`super::general::depthwise`]: the same output bytes, an output row at a time.
///
/// The input is first widened (its zero point subtracted, as `i16`), with each channel
/// repeated once per output channel it feeds (the multiplier), into a map padded with zeros
/// wherever a window reads outside the input (a tap outside adds nothing, as the portable
/// kernel skips it), its columns split by their phase of the horizontal stride. Then every tap
/// reads one contiguous run of that map for a whole output row, which it multiplies with its
/// weights laid out along the row and adds to the row's sums: one long loop of `i32` lanes per
/// tap. `scratch` and `lanes` are [`depthwise_i16_len`] and [`depthwise_i32_len`] long.
#[inline(always)]
pub fn depthwise(
    input: &[i8],
    scratch: &mut [i16],
    lanes: &mut [i32],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &ki8::Requantization<'_>,
    output: &mut [i8],
) -> Option<()> {
    let (channels, outputs) = (geometry.input.channels, geometry.output.channels);
    let taps = geometry.taps()?;
    let fits = geometry.fits(input, output)
        && outputs % channels == 0
        && Some(weights.len()) == taps.checked_mul(outputs)
        && requantization.outputs() == outputs;
    if !fits {
        return None;
    }
    let multiplier = outputs / channels;
    let shape = DepthwiseShape::of(geometry);
    let (stride_y, stride_x) = (geometry.stride_height, geometry.stride_width);
    let padded_row = shape.padded_row(geometry);
    let phase_len = shape.phase_columns * outputs;
    let (padded, rest) = scratch.split_at_mut_checked(shape.rows * padded_row)?;
    let weight_rows = rest.get_mut(..taps * shape.row)?;
    let (sums, rest) = lanes.split_at_mut_checked(shape.row)?;
    let (bias, rest) = rest.split_at_mut_checked(shape.row)?;
    let (multipliers, shifts) = rest.split_at_mut_checked(shape.row)?;
    let shifts = shifts.get_mut(..shape.row)?;

    // The padded, phase-split map: padded column `c` of padded row `r` at
    // `r * padded_row + (c % stride_x) * phase_len + (c / stride_x) * outputs`.
    padded.fill(0);
    let zero_point = requantization.input_zero_point();
    let width = geometry.input.width;
    for (y, input_row) in input.chunks_exact(width * channels).enumerate() {
        let r = y + geometry.pad_top;
        let Some(padded_row) = padded.get_mut(r * padded_row..(r + 1) * padded_row) else {
            break;
        };
        for (x, pixel) in input_row.chunks_exact(channels).enumerate() {
            let c = x + geometry.pad_left;
            if c >= stride_x * shape.phase_columns {
                break;
            }
            let at = (c % stride_x) * phase_len + (c / stride_x) * outputs;
            let slot = padded_row.get_mut(at..at + outputs)?;
            if multiplier == 1 {
                for (slot, &value) in slot.iter_mut().zip(pixel) {
                    *slot = (i32::from(value) - zero_point) as i16;
                }
            } else {
                for (repeats, &value) in slot.chunks_exact_mut(multiplier).zip(pixel) {
                    repeats.fill((i32::from(value) - zero_point) as i16);
                }
            }
        }
    }
    // Each tap's weights, and the requantisation constants, repeated along an output row.
    for (tap_row, tap_weights) in weight_rows
        .chunks_exact_mut(shape.row)
        .zip(weights.chunks_exact(outputs))
    {
        for pixel in tap_row.chunks_exact_mut(outputs) {
            for (slot, &w) in pixel.iter_mut().zip(tap_weights) {
                *slot = i16::from(w as i8);
            }
        }
    }
    let (raw_bias, raw_multipliers, raw_shifts) = requantization.raw();
    let constants = bias
        .chunks_exact_mut(outputs)
        .zip(multipliers.chunks_exact_mut(outputs))
        .zip(shifts.chunks_exact_mut(outputs));
    for ((bias, multipliers), shifts) in constants {
        for (slot, &raw) in bias.iter_mut().zip(raw_bias) {
            *slot = i32::from_le_bytes(raw);
        }
        for (slot, &raw) in multipliers.iter_mut().zip(raw_multipliers) {
            *slot = i32::from_le_bytes(raw);
        }
        for (slot, &raw) in shifts.iter_mut().zip(raw_shifts) {
            *slot = i32::from(raw as i8);
        }
    }

    let row_weights = weight_rows.chunks_exact(shape.row);
    let mut tap_rows = row_weights.clone();
    for (out_y, out_row) in output.chunks_exact_mut(shape.row).enumerate() {
        sums.fill(0);
        tap_rows.clone_from(&row_weights);
        for ky in 0..geometry.kernel_height {
            let r = out_y * stride_y + ky;
            let padded_row = padded.get(r * padded_row..(r + 1) * padded_row)?;
            for kx in 0..geometry.kernel_width {
                let tap_weights = tap_rows.next()?;
                let at = (kx % stride_x) * phase_len + (kx / stride_x) * outputs;
                let values = padded_row.get(at..at + shape.row)?;
                for ((sum, &x), &w) in sums.iter_mut().zip(values).zip(tap_weights) {
                    *sum = sum.wrapping_add(i32::from(x) * i32::from(w));
                }
            }
        }
        requantize_lanes(requantization, sums, bias, multipliers, shifts, out_row)?;
    }
    Some(())
}

/// [`requantize_run`] with the constants of each lane given as `i32`s.
#[inline(always)]
fn requantize_lanes(
    requantization: &ki8::Requantization<'_>,
    sums: &[i32],
    bias: &[i32],
    multipliers: &[i32],
    shifts: &[i32],
    out: &mut [i8],
) -> Option<()> {
    let len = out.len();
    if sums.len() != len || bias.len() != len || multipliers.len() != len || shifts.len() != len {
        return None;
    }
    let zero_point = requantization.output_zero_point();
    let (low, high) = (
        requantization.activation_min(),
        requantization.activation_max(),
    );
    let lanes = out
        .iter_mut()
        .zip(sums)
        .zip(bias.iter().zip(multipliers).zip(shifts));
    match requantization.rounding() {
        Rounding::Double => {
            for ((out, &sum), ((&bias, &multiplier), &shift)) in lanes {
                let scaled = scale_twice(sum.saturating_add(bias), multiplier, shift);
                *out = offset_and_clamp(scaled, zero_point, low, high);
            }
        }
        Rounding::Single => {
            for ((out, &sum), ((&bias, &multiplier), &shift)) in lanes {
                let scaled = scale_once(sum.saturating_add(bias), multiplier, shift);
                *out = offset_and_clamp(scaled, zero_point, low, high);
            }
        }
    }
    Some(())
}

/// [`super::general::average_pool`]: the same output bytes. Each output pixel's channels in
/// blocks of `i32` sums; the mean divided in `f64`, which is exact here (below).
#[inline(always)]
pub fn average_pool(
    input: &[i8],
    geometry: &WindowGeometry,
    activation_min: i32,
    activation_max: i32,
    output: &mut [i8],
) -> Option<()> {
    let channels = geometry.input.channels;
    if !geometry.fits(input, output) || geometry.output.channels != channels {
        return None;
    }
    for (pixel, window) in output.chunks_exact_mut(channels).zip(geometry.windows()) {
        let count = window.rows.len() * window.columns.len();
        let count = i32::try_from(count).ok().filter(|&count| count > 0)?;
        let half = count / 2;
        for (block, out_block) in pixel.chunks_mut(CHANNEL_BLOCK).enumerate() {
            let base = block * CHANNEL_BLOCK;
            let len = out_block.len();
            let mut sums = [0i32; CHANNEL_BLOCK];
            let sums = sums.get_mut(..len)?;
            for run in window.runs() {
                for step in 0..run.len {
                    let at = (run.pixel + step) * channels + base;
                    let values = input.get(at..at + len)?;
                    for (sum, &x) in sums.iter_mut().zip(values) {
                        *sum = sum.wrapping_add(i32::from(x));
                    }
                }
            }
            for (out, &sum) in out_block.iter_mut().zip(sums.iter()) {
                // Half the count added away from zero, then C's division toward zero, as the
                // portable kernel. In f64 the quotient of two integers below 2^31 truncates to
                // the integer quotient: a quotient that is not an integer lies at least
                // 1/count from one, far more than the rounding error, |q| * 2^-53 < 2^-22 /
                // count.
                let numerator = if sum > 0 { sum + half } else { sum - half };
                let mean = (f64::from(numerator) / f64::from(count)) as i32;
                *out = mean
                    .max(activation_min)
                    .min(activation_max)
                    .clamp(-128, 127) as i8;
            }
        }
    }
    Some(())
}

/// [`super::general::add`]: the same output bytes. The additions TensorFlow Lite's converter
/// gives (every scaling a right shift, zero points in the int8 range) in a loop without
/// branches or calls that vectorises; any other on the portable kernel.
#[inline(always)]
pub fn add(a: &[i8], b: &[i8], params: &AddParams, output: &mut [i8]) -> Option<()> {
    if a.len() != output.len() || b.len() != output.len() {
        return None;
    }
    let Some(add) = params.right_shifts_only() else {
        return general::add(a, b, params, output);
    };
    let [zero_a, zero_b] = add.zero_points;
    let [scale_a, scale_b] = add.inputs.map(Scaling::of);
    let scale_output = Scaling::of(add.output);
    let (low, high) = (add.activation_min, add.activation_max);
    for ((out, &a), &b) in output.iter_mut().zip(a).zip(b) {
        let a = scale_a.apply((i32::from(a) - zero_a) << AddParams::LEFT_SHIFT);
        let b = scale_b.apply((i32::from(b) - zero_b) << AddParams::LEFT_SHIFT);
        let value = scale_output.apply(a + b) + add.output_zero_point;
        *out = value.max(low).min(high).clamp(-128, 127) as i8;
    }
    Some(())
}

/// A [`general::RightShiftScaling`] with its multiplier as the `i32` it is (below `2^31`), so
/// that the compiler multiplies 32-bit lanes into 64-bit ones (`vpmuldq`) instead of
/// emulating a full 64-bit multiply.
#[derive(Clone, Copy)]
struct Scaling {
    multiplier: i32,
    exponent: u32,
    rounding: i32,
    negative_mask: i32,
}

impl Scaling {
    #[inline(always)]
    fn of(scaling: general::RightShiftScaling) -> Self {
        Scaling {
            // Non-negative and below 2^31 (`RightShiftScaling::new` takes an i32).
            multiplier: scaling.multiplier as i32,
            exponent: scaling.exponent,
            rounding: scaling.rounding,
            negative_mask: scaling.negative_mask,
        }
    }

    /// [`general::RightShiftScaling::apply`].
    #[inline(always)]
    fn apply(&self, x: i32) -> i32 {
        let high = ((i64::from(x) * i64::from(self.multiplier) + (1 << 30)) >> 31) as i32;
        (high + self.rounding + ((high >> 31) & self.negative_mask)) >> self.exponent
    }
}
