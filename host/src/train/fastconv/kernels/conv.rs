//! A plain convolution (any window, any stride, explicit zero padding, one group, no
//! activation) and its backward pass: what runs every convolution that is not a fused block,
//! where batch norm and the activation follow as separate ops.
//!
//! Forward: im2col + GEMM, like the fused block, for a group of samples at a time; a 1x1
//! stride-1 window without padding skips im2col when a group holds one sample, since the NCHW
//! input plane of a sample already is the GEMM's `[c_in, positions]` operand. Backward: the two
//! dense GEMMs (`dW += dY * col^T`, `dcol = W^T * dY`) and col2im; no mask to exploit here, the
//! output's gradient is dense.

use super::backward::{Acc, ConvGrads, run_tasks};
use super::gemm::{Strided, gemm, transpose};
use crate::train::fastconv::zeros::filled;

/// Geometry of one convolution: NCHW input, `[c_out, c_in, kh, kw]` weight, strides and
/// zero padding per side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlainConvShape {
    /// Samples in the batch.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Rows and columns between two windows.
    pub stride: [usize; 2],
    /// Zeros before and after the input: top, left, bottom, right.
    pub padding: [usize; 4],
}

impl PlainConvShape {
    /// Whether the kernels can run this geometry: channels, a window, strides of at least 1
    /// and at least one output position.
    pub fn is_supported(&self) -> bool {
        self.c_in >= 1
            && self.c_out >= 1
            && self.kh >= 1
            && self.kw >= 1
            && self.stride[0] >= 1
            && self.stride[1] >= 1
            && self.ho() >= 1
            && self.wo() >= 1
    }
    /// Output height.
    pub fn ho(&self) -> usize {
        let [top, _, bottom, _] = self.padding;
        (self.h + top + bottom)
            .checked_sub(self.kh)
            .map_or(0, |room| room / self.stride[0].max(1) + 1)
    }
    /// Output width.
    pub fn wo(&self) -> usize {
        let [_, left, _, right] = self.padding;
        (self.w + left + right)
            .checked_sub(self.kw)
            .map_or(0, |room| room / self.stride[1].max(1) + 1)
    }
    /// Output positions per channel.
    fn spatial(&self) -> usize {
        self.ho() * self.wo()
    }
    /// Reduction length of the GEMM: one column of im2col.
    pub fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }
    /// Input values per sample.
    pub fn in_len(&self) -> usize {
        self.c_in * self.h * self.w
    }
    /// Output values per sample.
    pub fn out_len(&self) -> usize {
        self.c_out * self.spatial()
    }
    /// Weight values.
    pub fn weight_len(&self) -> usize {
        self.c_out * self.k()
    }
    /// A 1x1 window at stride 1 without padding: each sample's input is its own im2col.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.padding == [0; 4]
    }
    /// Samples per GEMM, as for the fused block: a wide enough right operand (>= ~384
    /// positions), an im2col buffer within the L2 cache. A pointwise convolution on a map of
    /// 128 positions or more takes one: its input is the operand as it is, and skipping the
    /// copy made the 1x1 at 14x14x64 about 20% faster than two samples per GEMM.
    fn samples_per_gemm(&self) -> usize {
        let spatial = self.spatial().max(1);
        if self.is_pointwise() && spatial >= 128 {
            return 1;
        }
        let by_width = 384usize.div_ceil(spatial);
        let by_cache = ((1 << 20) / 4 / (self.k() * spatial).max(1)).max(1);
        by_width.min(by_cache).clamp(1, self.batch.max(1))
    }
    /// Output column range `[ox0, ox1)` whose input column `ox * stride + kx - left` lies in
    /// `[0, w)`.
    #[inline(always)]
    fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let (sw, left, wo) = (self.stride[1], self.padding[1], self.wo());
        let ox0 = (left.saturating_sub(kx)).div_ceil(sw).min(wo);
        let ox1 = (self.w + left)
            .checked_sub(kx + 1)
            .map_or(0, |last| last / sw + 1)
            .min(wo);
        (ox0, ox1.max(ox0))
    }
    /// The input row of output row `oy` and kernel row `ky`, if it is inside the image.
    #[inline(always)]
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride[0] + ky)
            .checked_sub(self.padding[0])
            .filter(|&iy| iy < self.h)
    }
}

/// Writes the im2col rows of one sample at column offset `col_off` of a `[K, ld]` matrix.
#[inline(always)]
fn im2col(s: &PlainConvShape, x: &[f32], col: &mut [f32], ld: usize, col_off: usize) {
    let (h, w, ho, wo, sw) = (s.h, s.w, s.ho(), s.wo(), s.stride[1]);
    for ci in 0..s.c_in {
        let plane = &x[ci * h * w..][..h * w];
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let r = (ci * s.kh + ky) * s.kw + kx;
                let row = &mut col[r * ld + col_off..][..ho * wo];
                let (ox0, ox1) = s.valid_cols(kx);
                for (oy, dst) in row.chunks_exact_mut(wo).enumerate() {
                    let Some(iy) = s.input_row(oy, ky) else {
                        dst.fill(0.0);
                        continue;
                    };
                    dst[..ox0].fill(0.0);
                    dst[ox1..].fill(0.0);
                    if ox0 == ox1 {
                        continue;
                    }
                    let ix0 = ox0 * sw + kx - s.padding[1];
                    let src = &plane[iy * w + ix0..][..(ox1 - ox0 - 1) * sw + 1];
                    if sw == 1 {
                        dst[ox0..ox1].copy_from_slice(src);
                    } else {
                        for (d, v) in dst[ox0..ox1].iter_mut().zip(src.iter().step_by(sw)) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    }
}

/// Adds the im2col-shaped gradient of one sample back onto its input gradient.
#[inline(always)]
fn col2im_add(s: &PlainConvShape, dcol: &[f32], ld: usize, col_off: usize, dx: &mut [f32]) {
    let (h, w, ho, wo, sw) = (s.h, s.w, s.ho(), s.wo(), s.stride[1]);
    for ci in 0..s.c_in {
        let plane = &mut dx[ci * h * w..][..h * w];
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let r = (ci * s.kh + ky) * s.kw + kx;
                let row = &dcol[r * ld + col_off..][..ho * wo];
                let (ox0, ox1) = s.valid_cols(kx);
                if ox0 == ox1 {
                    continue;
                }
                let ix0 = ox0 * sw + kx - s.padding[1];
                for (oy, src) in row.chunks_exact(wo).enumerate() {
                    let Some(iy) = s.input_row(oy, ky) else {
                        continue;
                    };
                    let dst = &mut plane[iy * w + ix0..][..(ox1 - ox0 - 1) * sw + 1];
                    if sw == 1 {
                        for (d, v) in dst.iter_mut().zip(&src[ox0..ox1]) {
                            *d += v;
                        }
                    } else {
                        for (d, v) in dst.iter_mut().step_by(sw).zip(&src[ox0..ox1]) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// Forward: `conv2d(x, weight) + bias`, NCHW. `bias` is one value per output channel.
pub fn conv_forward(s: &PlainConvShape, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    assert!(s.is_supported(), "conv2d: unsupported geometry {s:?}");
    assert_eq!(x.len(), s.batch * s.in_len());
    assert_eq!(weight.len(), s.weight_len());
    assert_eq!(bias.len(), s.c_out);
    let out_len = s.out_len();
    let nb = s.samples_per_gemm();
    let f = Forward {
        s,
        x,
        weight,
        bias,
        nb,
        ld: nb * s.spatial(),
    };
    // Scratch grows on first use: a group of one pointwise sample needs none.
    filled(
        s.batch * out_len,
        nb * out_len,
        || (Vec::new(), Vec::new()),
        |(col, act), chunk, out| forward_chunk(&f, chunk, col, act, out),
    )
}

struct Forward<'a> {
    s: &'a PlainConvShape,
    x: &'a [f32],
    weight: &'a [f32],
    bias: &'a [f32],
    /// Samples per GEMM and the row length of the im2col / output scratch.
    nb: usize,
    ld: usize,
}

multiversioned!(fn forward_chunk(
    f: &Forward,
    chunk: usize,
    col: &mut Vec<f32>,
    act: &mut Vec<f32>,
    out: &mut [f32],
) = forward_chunk_body;);

#[inline(always)]
fn forward_chunk_body(
    f: &Forward,
    chunk: usize,
    col: &mut Vec<f32>,
    act: &mut Vec<f32>,
    out: &mut [f32],
) {
    let s = f.s;
    let (spatial, k, in_len, out_len) = (s.spatial(), s.k(), s.in_len(), s.out_len());
    let b = chunk * f.nb;
    let nbc = out.len() / out_len;
    let xs = &f.x[b * in_len..][..nbc * in_len];
    let weight = Strided::row_major(f.weight, k);
    if nbc == 1 {
        // out[c_out, spatial] = W[c_out, K] * col[K, spatial], straight into the output.
        let operand = if s.is_pointwise() {
            xs
        } else {
            col.resize(k * spatial, 0.0);
            im2col(s, xs, col, spatial, 0);
            &col[..]
        };
        let operand = Strided::row_major(operand, spatial);
        gemm((s.c_out, spatial, k), out, spatial, false, weight, operand);
        for (plane, bias) in out.chunks_exact_mut(spatial).zip(f.bias) {
            plane.iter_mut().for_each(|v| *v += bias);
        }
        return;
    }
    let ld = f.ld;
    col.resize(k * ld, 0.0);
    act.resize(s.c_out * ld, 0.0);
    for (j, x) in xs.chunks_exact(in_len).enumerate() {
        im2col(s, x, col, ld, j * spatial);
    }
    // act[c_out, samples x spatial] = W[c_out, K] * col[K, samples x spatial]
    gemm(
        (s.c_out, nbc * spatial, k),
        act,
        ld,
        false,
        weight,
        Strided::row_major(col, ld),
    );
    for (j, out) in out.chunks_exact_mut(out_len).enumerate() {
        for (co, plane) in out.chunks_exact_mut(spatial).enumerate() {
            let a = &act[co * ld + j * spatial..][..spatial];
            let bias = f.bias[co];
            for (o, v) in plane.iter_mut().zip(a) {
                *o = v + bias;
            }
        }
    }
}

/// Gradients of x (when `want_x_grad`), weight and bias, given the output's gradient
/// `grad_out` (`[batch, c_out, ho, wo]`).
pub fn conv_backward(
    s: &PlainConvShape,
    x: &[f32],
    weight: &[f32],
    grad_out: &[f32],
    want_x_grad: bool,
) -> ConvGrads {
    assert!(s.is_supported(), "conv2d: unsupported geometry {s:?}");
    assert_eq!(x.len(), s.batch * s.in_len());
    assert_eq!(weight.len(), s.weight_len());
    assert_eq!(grad_out.len(), s.batch * s.out_len());
    let nb = s.samples_per_gemm();
    let ld = nb * s.spatial();
    let b = Backward {
        s,
        x,
        weight,
        grad_out,
        nb,
        ld,
    };
    let (x, weight_t, bias) = run_tasks(
        (s.batch * s.in_len(), s.weight_len(), s.c_out),
        s.batch.div_ceil(nb),
        nb * s.in_len(),
        want_x_grad,
        // Scratch grows on first use, as in the forward pass.
        || Acc::new(s.weight_len(), s.c_out, 0, 0),
        |acc, chunk, dx| backward_chunk(&b, chunk, acc, dx),
    );
    let mut weight = vec![0.0; s.weight_len()];
    transpose(&weight_t, s.k(), s.c_out, &mut weight);
    ConvGrads { x, weight, bias }
}

struct Backward<'a> {
    s: &'a PlainConvShape,
    x: &'a [f32],
    weight: &'a [f32],
    grad_out: &'a [f32],
    nb: usize,
    ld: usize,
}

multiversioned!(fn backward_chunk(
    b: &Backward,
    chunk: usize,
    acc: &mut Acc,
    dx: Option<&mut [f32]>,
) = backward_chunk_body;);

#[inline(always)]
fn backward_chunk_body(b: &Backward, chunk: usize, acc: &mut Acc, dx: Option<&mut [f32]>) {
    let s = b.s;
    let (spatial, k, in_len, out_len) = (s.spatial(), s.k(), s.in_len(), s.out_len());
    let first = chunk * b.nb;
    let nbc = b.nb.min(s.batch - first);
    let n = nbc * spatial;
    let xs = &b.x[first * in_len..][..nbc * in_len];
    let grads = &b.grad_out[first * out_len..][..nbc * out_len];
    let Acc {
        dw,
        db,
        scratch_a: col,
        scratch_b: dy,
    } = acc;
    for out in grads.chunks_exact(out_len) {
        for (sum, plane) in db.iter_mut().zip(out.chunks_exact(spatial)) {
            *sum += plane.iter().sum::<f32>();
        }
    }
    // One sample: its gradient already is the `[c_out, spatial]` operand. Several: gather
    // them side by side, as the forward laid out its output.
    let (dy, ld) = if nbc == 1 {
        (grads, spatial)
    } else {
        let ld = b.ld;
        dy.resize(s.c_out * ld, 0.0);
        for (j, out) in grads.chunks_exact(out_len).enumerate() {
            for (co, plane) in out.chunks_exact(spatial).enumerate() {
                dy[co * ld + j * spatial..][..spatial].copy_from_slice(plane);
            }
        }
        (&dy[..], ld)
    };
    let direct = nbc == 1 && s.is_pointwise();
    let cols: &[f32] = if direct {
        xs
    } else {
        col.resize(k * ld, 0.0);
        for (j, x) in xs.chunks_exact(in_len).enumerate() {
            im2col(s, x, col, ld, j * spatial);
        }
        &col[..]
    };
    // dW^T[K, c_out] += col[K, n] * dY[c_out, n]^T: transposed, because the GEMM's
    // micro-kernel fills tall tiles and `c_out` (16 in ResNet-8's first stage) is a fraction
    // of one; 2.5x faster than dW = dY * col^T there.
    gemm(
        (k, s.c_out, n),
        dw,
        s.c_out,
        true,
        Strided::row_major(cols, ld),
        Strided::transposed(dy, ld),
    );
    let Some(dx) = dx else {
        return;
    };
    let weight_t = Strided::transposed(b.weight, k);
    if direct {
        // dX[c_in, spatial] = W[c_out, c_in]^T * dY[c_out, spatial]: no col2im.
        gemm(
            (k, spatial, s.c_out),
            dx,
            spatial,
            false,
            weight_t,
            Strided::row_major(dy, ld),
        );
        return;
    }
    // dcol[K, n] = W[c_out, K]^T * dY[c_out, n], reusing the im2col buffer.
    gemm(
        (k, n, s.c_out),
        col,
        ld,
        false,
        weight_t,
        Strided::row_major(dy, ld),
    );
    for (j, dx) in dx.chunks_exact_mut(in_len).enumerate() {
        col2im_add(s, col, ld, j * spatial, dx);
    }
}
