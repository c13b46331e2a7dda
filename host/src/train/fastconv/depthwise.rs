//! Depthwise convolutions for training, on plain `f32` slices in burn's NCHW layout: the
//! forward pass and the gradients of the input, the weights and the bias.
//!
//! burn runs a depthwise convolution as a grouped convolution, one small matrix product per
//! channel, and its backward pass took about 40 % of a training step of a depthwise-separable
//! network. A depthwise window touches few values: each input plane is copied once into a
//! plane framed by the padding's zeros, and every output (or its gradient) is then its window's
//! taps with no bounds to check, the 3x3 window unrolled.
//!
//! With stride 1 (the usual case), each tap is a fixed offset into the padded plane: outputs
//! are computed on a grid as wide as the padded plane (its extra columns thrown away), 16 at a
//! time, every tap added in registers before they are stored; the weights' gradient is one
//! multiply-add per tap and 16 outputs, into 16 lanes per tap kept until a task's end; the
//! input's gradient is gathered the same way as the forward pass. All three gradients come from
//! one pass over the planes, in tasks of a few images whose weight and bias sums are added in
//! order at the end. The per-plane bodies are compiled for AVX-512 and AVX2 and picked at run
//! time, as [`super::kernels`]' are. Other strides: one rayon task per plane (the forward pass
//! and the input's gradient) or per output channel (the weights' gradient, summed over the
//! batch in order). Either way no two tasks write the same value, and the sums come out the
//! same on any number of threads.

use rayon::prelude::*;

use super::kernels::ConvGrads;
use super::zeros::{filled, zeros};

/// Values the wide-grid kernels handle at a time: one AVX-512 register of f32.
const LANES: usize = 16;

/// The `LANES` values of `values` from `at`.
#[inline(always)]
fn lanes(values: &[f32], at: usize) -> &[f32; LANES] {
    values[at..at + LANES]
        .try_into()
        .unwrap_or_else(|_| unreachable!("a slice of LANES values"))
}

/// A depthwise convolution's shapes: `channels` input channels, `multiplier` outputs per
/// input channel (output channel `o` reads input channel `o / multiplier`, as burn's groups
/// and the core's depthwise layers do), a `kernel_height x kernel_width` window moving by
/// `stride`, with `pad_top`/`pad_left` zeros before the input (and as many after as the
/// output size needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthwiseShape {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub channels: usize,
    /// Output channels per input channel.
    pub multiplier: usize,
    /// Input rows.
    pub height: usize,
    /// Input columns.
    pub width: usize,
    /// Window rows.
    pub kernel_height: usize,
    /// Window columns.
    pub kernel_width: usize,
    /// Rows between two output rows' windows.
    pub stride_height: usize,
    /// Columns between two output columns' windows.
    pub stride_width: usize,
    /// Zero rows before the input.
    pub pad_top: usize,
    /// Zero columns before the input.
    pub pad_left: usize,
    /// Output rows.
    pub out_height: usize,
    /// Output columns.
    pub out_width: usize,
}

impl DepthwiseShape {
    /// Output channels.
    pub fn outputs(&self) -> usize {
        self.channels * self.multiplier
    }

    fn taps(&self) -> usize {
        self.kernel_height * self.kernel_width
    }

    fn out_plane(&self) -> usize {
        self.out_height * self.out_width
    }

    fn in_plane(&self) -> usize {
        self.height * self.width
    }

    /// Whether the slices' lengths and the strides make sense (what the kernels assume).
    pub fn is_consistent(&self) -> bool {
        self.stride_height >= 1
            && self.stride_width >= 1
            && self.multiplier >= 1
            && self.kernel_height >= 1
            && self.kernel_width >= 1
            && self.out_height >= 1
            && self.out_width >= 1
    }
}

impl DepthwiseShape {
    /// Columns of a padded plane: every window's columns, the padding's zeros included.
    fn padded_width(&self) -> usize {
        (self.out_width - 1) * self.stride_width + self.kernel_width
    }

    /// Rows of a padded plane.
    fn padded_height(&self) -> usize {
        (self.out_height - 1) * self.stride_height + self.kernel_height
    }

    /// Values of a padded plane's buffer: its rows, and zeros past them for the taps of the
    /// wide grid's last lanes (its extra columns, and its rounding up to whole lanes).
    fn padded_len(&self) -> usize {
        self.padded_height() * self.padded_width() + self.kernel_width - 1 + LANES
    }

    /// Whether the wide-grid kernels apply: a stride of 1 both ways.
    fn is_unit_stride(&self) -> bool {
        self.stride_height == 1 && self.stride_width == 1
    }

    /// Values of the wide grid: the output rows, each as wide as a padded row, rounded up to
    /// whole lanes.
    fn wide_len(&self) -> usize {
        (self.out_height * self.padded_width()).next_multiple_of(LANES)
    }

    /// The padded plane's values the input's gradient is gathered for: its rows, rounded up to
    /// whole lanes.
    fn gathered_len(&self) -> usize {
        (self.padded_height() * self.padded_width()).next_multiple_of(LANES)
    }

    /// Offset in a padded plane of the window's last tap: zeros before an output gradient on
    /// the wide grid let every tap's gather read from it.
    fn margin(&self) -> usize {
        (self.kernel_height - 1) * self.padded_width() + self.kernel_width - 1
    }

    /// An output plane's gradient, `g`, on the wide grid after [`margin`](Self::margin) zeros,
    /// its rows each followed by zeros up to the padded width, and zeros after it for every
    /// read of [`plane_backward`].
    #[inline(always)]
    fn widen(&self, g: &[f32], wide: &mut Vec<f32>) {
        wide.clear();
        wide.resize(self.margin() + self.gathered_len() + LANES, 0.0);
        let columns = self.padded_width();
        for (row, g_row) in wide[self.margin()..]
            .chunks_exact_mut(columns)
            .zip(g.chunks_exact(self.out_width))
        {
            row[..self.out_width].copy_from_slice(g_row);
        }
    }

    /// `input` (one `height x width` plane) into `padded` (a `padded_height x padded_width`
    /// plane): zeros where the windows read outside the input, and the input's values where
    /// they lie. Rows and columns no window reads are left out.
    fn pad_into(&self, input: &[f32], padded: &mut Vec<f32>) {
        let columns = self.padded_width();
        padded.clear();
        padded.resize(self.padded_len(), 0.0);
        for (row, line) in padded.chunks_exact_mut(columns).enumerate() {
            let Some(y) = row.checked_sub(self.pad_top).filter(|&y| y < self.height) else {
                continue;
            };
            let skip = self.pad_left.min(columns);
            let source = &input[y * self.width..][..self.width];
            for (target, &value) in line[skip..].iter_mut().zip(source) {
                *target = value;
            }
        }
    }

    /// The input plane's values back from a padded plane of gradients, `padded`: the sums
    /// of the values that lie in the input.
    fn crop_from(&self, padded: &[f32], plane: &mut [f32]) {
        let columns = self.padded_width();
        for (y, line) in plane.chunks_exact_mut(self.width).enumerate() {
            let row = y + self.pad_top;
            if row >= self.padded_height() {
                break;
            }
            let source = &padded[row * columns..][..columns];
            for (target, &value) in line.iter_mut().zip(source.iter().skip(self.pad_left)) {
                *target = value;
            }
        }
    }
}

/// `out[n][o] = bias[o] + sum over taps of weight[o][ky][kx] * x[n][o / M][iy][ix]`, taps
/// outside the input adding nothing. `weight` is `[outputs][kh][kw]` (burn's `[outputs][1][kh]
/// [kw]`), `bias` one per output channel or none.
pub fn forward(
    shape: &DepthwiseShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let s = *shape;
    let (taps, out_plane, in_plane) = (s.taps(), s.out_plane(), s.in_plane());
    filled(
        s.batch * s.outputs() * out_plane,
        out_plane,
        Scratch::default,
        |scratch, plane, out| {
            let (n, o) = (plane / s.outputs(), plane % s.outputs());
            let padded = &mut scratch.padded;
            s.pad_into(
                &x[(n * s.channels + o / s.multiplier) * in_plane..][..in_plane],
                padded,
            );
            let kernel = &weight[o * taps..][..taps];
            let start = bias.map_or(0.0, |bias| bias[o]);
            match (s.kernel_height, s.kernel_width) {
                _ if s.is_unit_stride() => {
                    forward_wide(&s, padded, kernel, start, &mut scratch.wide, out)
                }
                (3, 3) => forward_plane(&s, 3, 3, padded, kernel, start, out),
                (kh, kw) => forward_plane(&s, kh, kw, padded, kernel, start, out),
            }
        },
    )
}

/// A task's buffers: a padded input plane (or input gradient), and an output plane (or its
/// gradient) on the wide grid.
#[derive(Debug, Default)]
struct Scratch {
    padded: Vec<f32>,
    wide: Vec<f32>,
}

multiversioned!(
    /// One output plane from its padded input plane with stride 1, on the wide grid.
    fn forward_wide(
        s: &DepthwiseShape,
        padded: &[f32],
        kernel: &[f32],
        start: f32,
        wide: &mut Vec<f32>,
        out: &mut [f32],
    ) = forward_wide_body;
);

#[inline(always)]
fn forward_wide_body(
    s: &DepthwiseShape,
    padded: &[f32],
    kernel: &[f32],
    start: f32,
    wide: &mut Vec<f32>,
    out: &mut [f32],
) {
    match (s.kernel_height, s.kernel_width) {
        (3, 3) => forward_plane_wide(s, 3, 3, padded, kernel, start, wide, out),
        (kh, kw) => forward_plane_wide(s, kh, kw, padded, kernel, start, wide, out),
    }
}

/// Each output starts at `start` and adds its taps in the order [`forward_plane`] adds them:
/// the same sums, to the bit. Lane by lane of the wide grid, every tap added in registers
/// before the lane is stored.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_plane_wide(
    s: &DepthwiseShape,
    kh: usize,
    kw: usize,
    padded: &[f32],
    kernel: &[f32],
    start: f32,
    wide: &mut Vec<f32>,
    out: &mut [f32],
) {
    let columns = s.padded_width();
    wide.clear();
    wide.resize(s.wide_len(), 0.0);
    for (base, chunk) in wide.chunks_exact_mut(LANES).enumerate() {
        let base = base * LANES;
        let mut sums = [start; LANES];
        for ky in 0..kh {
            for kx in 0..kw {
                let w = kernel[ky * kw + kx];
                let taps = lanes(padded, base + ky * columns + kx);
                for (sum, tap) in sums.iter_mut().zip(taps) {
                    *sum += w * tap;
                }
            }
        }
        chunk.copy_from_slice(&sums);
    }
    for (out_row, wide_row) in out
        .chunks_exact_mut(s.out_width)
        .zip(wide.chunks_exact(columns))
    {
        out_row.copy_from_slice(&wide_row[..s.out_width]);
    }
}

/// One output plane from its padded input plane. Inlined where the window's sides are
/// constants, so that the taps unroll.
#[inline(always)]
fn forward_plane(
    s: &DepthwiseShape,
    kh: usize,
    kw: usize,
    padded: &[f32],
    kernel: &[f32],
    start: f32,
    out: &mut [f32],
) {
    let columns = s.padded_width();
    for (oy, out_row) in out.chunks_exact_mut(s.out_width).enumerate() {
        let top = oy * s.stride_height * columns;
        for (ox, value) in out_row.iter_mut().enumerate() {
            let corner = top + ox * s.stride_width;
            let mut sum = start;
            for ky in 0..kh {
                let row = &padded[corner + ky * columns..][..kw];
                for (w, v) in kernel[ky * kw..][..kw].iter().zip(row) {
                    sum += w * v;
                }
            }
            *value = sum;
        }
    }
}

/// The gradients of [`forward`]'s inputs given `grad`, the gradient of its output.
pub fn backward(
    shape: &DepthwiseShape,
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    want_x: bool,
) -> ConvGrads {
    let s = *shape;
    if s.is_unit_stride() {
        return backward_wide(&s, x, weight, grad, want_x);
    }
    let (taps, out_plane, in_plane) = (s.taps(), s.out_plane(), s.in_plane());
    let outputs = s.outputs();
    // Any other stride. Weights and bias: one task per output channel, summing over the batch
    // in order.
    let per_channel: Vec<(Vec<f32>, f32)> = (0..outputs)
        .into_par_iter()
        .map_init(Vec::new, |padded, o| {
            let mut kernel = vec![0f32; taps];
            let mut bias = 0f32;
            for n in 0..s.batch {
                let g = &grad[(n * outputs + o) * out_plane..][..out_plane];
                let input = &x[(n * s.channels + o / s.multiplier) * in_plane..][..in_plane];
                s.pad_into(input, padded);
                bias += g.iter().sum::<f32>();
                match (s.kernel_height, s.kernel_width) {
                    (3, 3) => weight_plane(&s, 3, 3, padded, g, &mut kernel),
                    (kh, kw) => weight_plane(&s, kh, kw, padded, g, &mut kernel),
                }
            }
            (kernel, bias)
        })
        .collect();
    let mut weight_grad = Vec::with_capacity(outputs * taps);
    let mut bias_grad = Vec::with_capacity(outputs);
    for (kernel, bias) in per_channel {
        weight_grad.extend(kernel);
        bias_grad.push(bias);
    }
    // The input: one task per input plane, scattering its multiplier's output planes into a
    // padded plane, then keeping the values that lie in the input.
    let x_grad = want_x.then(|| {
        filled(
            s.batch * s.channels * in_plane,
            in_plane,
            Vec::new,
            |padded: &mut Vec<f32>, plane, dx| {
                let (n, c) = (plane / s.channels, plane % s.channels);
                padded.clear();
                padded.resize(s.padded_len(), 0.0);
                for o in c * s.multiplier..(c + 1) * s.multiplier {
                    let g = &grad[(n * outputs + o) * out_plane..][..out_plane];
                    let kernel = &weight[o * taps..][..taps];
                    match (s.kernel_height, s.kernel_width) {
                        (3, 3) => input_plane(&s, 3, 3, padded, g, kernel),
                        (kh, kw) => input_plane(&s, kh, kw, padded, g, kernel),
                    }
                }
                s.crop_from(padded, dx);
            },
        )
    });
    ConvGrads {
        x: x_grad,
        weight: weight_grad,
        bias: bias_grad,
    }
}

/// Images per task of [`backward_wide`]: a fixed split, so that the weights' sums come out the
/// same on any number of threads.
const IMAGES_PER_TASK: usize = 4;

/// [`backward`] with stride 1, every gradient from one pass over the planes: tasks of
/// [`IMAGES_PER_TASK`] images, each plane of the output's gradient put on the wide grid once
/// and used for both the weights' dot products and the input's multiply-adds; each task's
/// weight and bias sums added in task order at the end.
fn backward_wide(
    s: &DepthwiseShape,
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    want_x: bool,
) -> ConvGrads {
    let s = *s;
    let (taps, outputs) = (s.taps(), s.outputs());
    let (x_image, grad_image) = (s.channels * s.in_plane(), outputs * s.out_plane());
    let task = |x: &[f32], grad: &[f32], mut dx: Option<&mut [f32]>| {
        // The weights' gradient in lanes until the task's end: no horizontal sum per plane.
        let mut kernel_lanes = vec![[0f32; LANES]; outputs * taps];
        let mut bias_lanes = vec![[0f32; LANES]; outputs];
        let (mut scratch, mut padded_dx) = (Scratch::default(), Vec::new());
        let images = x.chunks_exact(x_image).zip(grad.chunks_exact(grad_image));
        for (n, (x, grad)) in images.enumerate() {
            for c in 0..s.channels {
                s.pad_into(&x[c * s.in_plane()..][..s.in_plane()], &mut scratch.padded);
                if dx.is_some() {
                    padded_dx.clear();
                    padded_dx.resize(s.padded_len(), 0.0);
                }
                for o in c * s.multiplier..(c + 1) * s.multiplier {
                    let g = &grad[o * s.out_plane()..][..s.out_plane()];
                    let planes = WidePlanes {
                        padded: &scratch.padded,
                        g,
                        wide: &mut scratch.wide,
                        padded_dx: dx.is_some().then_some(&mut padded_dx[..]),
                    };
                    let kernel = &weight[o * taps..][..taps];
                    let grads = LaneGrads {
                        kernel: &mut kernel_lanes[o * taps..][..taps],
                        bias: &mut bias_lanes[o],
                    };
                    plane_backward(&s, planes, kernel, grads);
                }
                if let Some(dx) = dx.as_deref_mut() {
                    let plane = &mut dx[(n * s.channels + c) * s.in_plane()..][..s.in_plane()];
                    s.crop_from(&padded_dx, plane);
                }
            }
        }
        let kernels: Vec<f32> = kernel_lanes.iter().map(|lanes| fold(*lanes)).collect();
        let biases: Vec<f32> = bias_lanes.iter().map(|lanes| fold(*lanes)).collect();
        (kernels, biases)
    };
    let mut x_grad = want_x.then(|| zeros(x.len()));
    let (xs, grads) = (
        x.par_chunks(IMAGES_PER_TASK * x_image),
        grad.par_chunks(IMAGES_PER_TASK * grad_image),
    );
    let parts: Vec<(Vec<f32>, Vec<f32>)> = match x_grad.as_deref_mut() {
        Some(dx) => dx
            .par_chunks_mut(IMAGES_PER_TASK * x_image)
            .zip(xs.zip(grads))
            .map(|(dx, (x, grad))| task(x, grad, Some(dx)))
            .collect(),
        None => xs.zip(grads).map(|(x, grad)| task(x, grad, None)).collect(),
    };
    let mut weight_grad = vec![0f32; outputs * taps];
    let mut bias_grad = vec![0f32; outputs];
    for (kernels, biases) in parts {
        for (total, part) in weight_grad.iter_mut().zip(kernels) {
            *total += part;
        }
        for (total, part) in bias_grad.iter_mut().zip(biases) {
            *total += part;
        }
    }
    ConvGrads {
        x: x_grad,
        weight: weight_grad,
        bias: bias_grad,
    }
}

/// One plane's buffers for [`plane_backward`].
#[derive(Debug)]
struct WidePlanes<'a> {
    /// The padded input plane.
    padded: &'a [f32],
    /// The output plane's gradient.
    g: &'a [f32],
    /// Room for `g` on the wide grid.
    wide: &'a mut Vec<f32>,
    /// The padded input plane's gradient, to add to, when asked for.
    padded_dx: Option<&'a mut [f32]>,
}

multiversioned!(
    /// One output plane's share of the weights' gradient (added to `kernel_grad`) and, when
    /// asked for, of its padded input plane's gradient (added to it), with stride 1: the
    /// output's gradient put on the wide grid (zeros in its extra columns, which add nothing),
    /// then per tap a dot product with the padded input from the tap's offset, and per lane of
    /// the padded input's gradient its taps' gathered products.
    fn plane_backward(
        s: &DepthwiseShape,
        planes: WidePlanes,
        kernel: &[f32],
        grads: LaneGrads,
    ) = plane_backward_wide_body;
);

#[inline(always)]
fn plane_backward_wide_body(
    s: &DepthwiseShape,
    planes: WidePlanes,
    kernel: &[f32],
    grads: LaneGrads,
) {
    match (s.kernel_height, s.kernel_width) {
        (3, 3) => plane_backward_wide(s, 3, 3, planes, kernel, grads),
        (kh, kw) => plane_backward_wide(s, kh, kw, planes, kernel, grads),
    }
}

/// One output channel's weight and bias gradients, in lanes (added up at a task's end).
#[derive(Debug)]
struct LaneGrads<'a> {
    /// One per tap.
    kernel: &'a mut [[f32; LANES]],
    bias: &'a mut [f32; LANES],
}

/// [`plane_backward_wide`]'s body, inlined where the window's sides are constants.
#[inline(always)]
fn plane_backward_wide(
    s: &DepthwiseShape,
    kh: usize,
    kw: usize,
    planes: WidePlanes,
    kernel: &[f32],
    grads: LaneGrads,
) {
    let LaneGrads {
        kernel: kernel_grad,
        bias: bias_grad,
    } = grads;
    let WidePlanes {
        padded,
        g,
        wide,
        padded_dx,
    } = planes;
    s.widen(g, wide);
    let (columns, margin) = (s.padded_width(), s.margin());
    let g_wide = &wide[margin..][..s.wide_len()];
    for g in g_wide.chunks_exact(LANES) {
        for (sum, g) in bias_grad.iter_mut().zip(g) {
            *sum += g;
        }
    }
    if (kh, kw) == (3, 3) {
        let offsets = std::array::from_fn(|tap| tap / 3 * columns + tap % 3);
        weight_lanes::<9>(offsets, padded, g_wide, kernel_grad);
    } else {
        for ky in 0..kh {
            for kx in 0..kw {
                let tap = ky * kw + kx;
                let offsets = [ky * columns + kx];
                weight_lanes::<1>(offsets, padded, g_wide, &mut kernel_grad[tap..][..1]);
            }
        }
    }
    // The input's gradient gathered lane by lane: at padded position `j`, the sum over taps of
    // the tap's weight times the output gradient at `j` less the tap's offset (zeros where no
    // output reads `j` through that tap).
    if let Some(padded_dx) = padded_dx {
        let gathered = &mut padded_dx[..s.gathered_len()];
        for (base, chunk) in gathered.chunks_exact_mut(LANES).enumerate() {
            let base = base * LANES + margin;
            let mut sums: [f32; LANES] = *lanes(chunk, 0);
            for ky in 0..kh {
                for kx in 0..kw {
                    let w = kernel[ky * kw + kx];
                    let gradients = lanes(wide, base - ky * columns - kx);
                    for (sum, gradient) in sums.iter_mut().zip(gradients) {
                        *sum += w * gradient;
                    }
                }
            }
            chunk.copy_from_slice(&sums);
        }
    }
}

/// Adds to `sums[t]`, lane by lane, the products of the output's gradient on the wide grid and
/// the padded input from tap `t`'s offset. The taps' sums are independent: `TAPS` of them in
/// registers at once keep the multiply-adds from waiting for each other.
#[inline(always)]
fn weight_lanes<const TAPS: usize>(
    offsets: [usize; TAPS],
    padded: &[f32],
    g_wide: &[f32],
    sums: &mut [[f32; LANES]],
) {
    let mut local = [[0f32; LANES]; TAPS];
    for (base, g) in g_wide.chunks_exact(LANES).enumerate() {
        let base = base * LANES;
        for (local, &offset) in local.iter_mut().zip(&offsets) {
            let x = lanes(padded, base + offset);
            for ((sum, g), x) in local.iter_mut().zip(g).zip(x) {
                *sum += g * x;
            }
        }
    }
    for (sums, local) in sums.iter_mut().zip(&local) {
        for (sum, value) in sums.iter_mut().zip(local) {
            *sum += value;
        }
    }
}

/// The sum of `LANES` lanes, by halves (vector additions but for the last few).
#[inline(always)]
fn fold(mut lanes: [f32; LANES]) -> f32 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        let (low, high) = lanes.split_at_mut(width);
        for (low, high) in low.iter_mut().zip(&high[..width]) {
            *low += high;
        }
    }
    lanes[0]
}

/// Adds one image's share of the weights' gradient, `sum of g * x` over every window, to
/// `kernel`.
#[inline(always)]
fn weight_plane(
    s: &DepthwiseShape,
    kh: usize,
    kw: usize,
    padded: &[f32],
    g: &[f32],
    kernel: &mut [f32],
) {
    let columns = s.padded_width();
    for ky in 0..kh {
        for kx in 0..kw {
            let mut sum = 0f32;
            for (oy, g_row) in g.chunks_exact(s.out_width).enumerate() {
                let row = &padded[(oy * s.stride_height + ky) * columns + kx..];
                if s.stride_width == 1 {
                    sum += g_row.iter().zip(row).map(|(g, v)| g * v).sum::<f32>();
                } else {
                    sum += g_row
                        .iter()
                        .zip(row.iter().step_by(s.stride_width))
                        .map(|(g, v)| g * v)
                        .sum::<f32>();
                }
            }
            kernel[ky * kw + kx] += sum;
        }
    }
}

/// Scatters one output plane's gradient through the window into a padded input plane.
#[inline(always)]
fn input_plane(
    s: &DepthwiseShape,
    kh: usize,
    kw: usize,
    padded: &mut [f32],
    g: &[f32],
    kernel: &[f32],
) {
    let columns = s.padded_width();
    for (oy, g_row) in g.chunks_exact(s.out_width).enumerate() {
        let top = oy * s.stride_height * columns;
        for (ox, &gradient) in g_row.iter().enumerate() {
            let corner = top + ox * s.stride_width;
            for ky in 0..kh {
                let row = &mut padded[corner + ky * columns..][..kw];
                for (d, w) in row.iter_mut().zip(&kernel[ky * kw..][..kw]) {
                    *d += w * gradient;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, tap by tap, in f64.
    fn naive(s: &DepthwiseShape, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f64> {
        let mut out = vec![0f64; s.batch * s.outputs() * s.out_plane()];
        for n in 0..s.batch {
            for o in 0..s.outputs() {
                let c = o / s.multiplier;
                for oy in 0..s.out_height {
                    for ox in 0..s.out_width {
                        let mut sum = f64::from(bias[o]);
                        for ky in 0..s.kernel_height {
                            for kx in 0..s.kernel_width {
                                let iy = (oy * s.stride_height + ky) as isize - s.pad_top as isize;
                                let ix = (ox * s.stride_width + kx) as isize - s.pad_left as isize;
                                if (0..s.height as isize).contains(&iy)
                                    && (0..s.width as isize).contains(&ix)
                                {
                                    let v = x[((n * s.channels + c) * s.height + iy as usize)
                                        * s.width
                                        + ix as usize];
                                    let w =
                                        weight[(o * s.kernel_height + ky) * s.kernel_width + kx];
                                    sum += f64::from(v) * f64::from(w);
                                }
                            }
                        }
                        out[((n * s.outputs() + o) * s.out_height + oy) * s.out_width + ox] = sum;
                    }
                }
            }
        }
        out
    }

    fn values(count: usize, seed: usize) -> Vec<f32> {
        (0..count)
            .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0) - 1.0)
            .collect()
    }

    fn shapes() -> Vec<DepthwiseShape> {
        let mut shapes = Vec::new();
        for (h, w, k, stride, pad, multiplier) in [
            (7, 9, (3, 3), (1, 1), (1, 1), 1),
            (8, 8, (3, 3), (2, 2), (0, 0), 1),
            (9, 6, (3, 3), (2, 2), (1, 1), 2),
            (5, 7, (2, 3), (1, 2), (0, 1), 1),
            (4, 4, (5, 5), (1, 1), (2, 2), 1),
            (1, 1, (3, 3), (1, 1), (1, 1), 3),
            (10, 5, (3, 1), (3, 1), (1, 0), 1),
        ] {
            let out = |side: usize, k: usize, stride: usize, pad: usize| {
                // 'same'-like: as many padding values after as before.
                (side + 2 * pad - k) / stride + 1
            };
            shapes.push(DepthwiseShape {
                batch: 2,
                channels: 3,
                multiplier,
                height: h,
                width: w,
                kernel_height: k.0,
                kernel_width: k.1,
                stride_height: stride.0,
                stride_width: stride.1,
                pad_top: pad.0,
                pad_left: pad.1,
                out_height: out(h, k.0, stride.0, pad.0),
                out_width: out(w, k.1, stride.1, pad.1),
            });
        }
        shapes
    }

    #[test]
    fn forward_is_the_definition() {
        for s in shapes() {
            let x = values(s.batch * s.channels * s.in_plane(), 1);
            let weight = values(s.outputs() * s.taps(), 2);
            let bias = values(s.outputs(), 3);
            let got = forward(&s, &x, &weight, Some(&bias));
            let want = naive(&s, &x, &weight, &bias);
            for (g, w) in got.iter().zip(&want) {
                assert!((f64::from(*g) - w).abs() < 1e-5, "{s:?}: {g} vs {w}");
            }
        }
    }

    /// Each gradient against the change of `sum(out * grad)` (linear in each argument, so the
    /// finite difference with step 1 is exact up to rounding), computed with the definition.
    #[test]
    fn gradients_are_the_definitions() {
        for s in shapes() {
            let x = values(s.batch * s.channels * s.in_plane(), 4);
            let weight = values(s.outputs() * s.taps(), 5);
            let bias = values(s.outputs(), 6);
            let grad = values(s.batch * s.outputs() * s.out_plane(), 7);
            let got = backward(&s, &x, &weight, &grad, true);
            let loss = |x: &[f32], weight: &[f32], bias: &[f32]| -> f64 {
                naive(&s, x, weight, bias)
                    .iter()
                    .zip(&grad)
                    .map(|(o, g)| o * f64::from(*g))
                    .sum()
            };
            let base = loss(&x, &weight, &bias);
            let check = |what: &str, got: &[f32], len: usize, nudge: &dyn Fn(usize) -> f64| {
                assert_eq!(got.len(), len, "{what} {s:?}");
                for (i, g) in got.iter().enumerate() {
                    let want = nudge(i) - base;
                    assert!(
                        (f64::from(*g) - want).abs() < 1e-4,
                        "{what}[{i}] {s:?}: {g} vs {want}"
                    );
                }
            };
            check("x", got.x.as_deref().unwrap(), x.len(), &|i| {
                let mut x = x.clone();
                x[i] += 1.0;
                loss(&x, &weight, &bias)
            });
            check("weight", &got.weight, weight.len(), &|i| {
                let mut weight = weight.clone();
                weight[i] += 1.0;
                loss(&x, &weight, &bias)
            });
            check("bias", &got.bias, bias.len(), &|i| {
                let mut bias = bias.clone();
                bias[i] += 1.0;
                loss(&x, &weight, &bias)
            });
            assert!(backward(&s, &x, &weight, &grad, false).x.is_none());
        }
    }
}
