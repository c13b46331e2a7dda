//! The backward pass of the fused block: the dense GEMMs, and the sparse
//! AXPYs over the values that carry a gradient.

use rayon::prelude::*;

use super::gemm::{Strided, gemm, transpose};
use super::im2col::{col2im_add, im2col};
use super::{ConvShape, NO_GRAD};
use crate::train::fastconv::zeros::zeros;

/// Gradients of a convolution's inputs: of the fused block
/// ([`conv_relu_pool_forward`](super::conv_relu_pool_forward)), the plain, the depthwise and the
/// pointwise convolutions.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGrads {
    /// Gradient of the input, when it was asked for.
    pub x: Option<Vec<f32>>,
    /// Gradient of the weight, in the weight's layout (`[c_out, c_in, kh, kw]`; a depthwise
    /// convolution's `[c_out, kh, kw]`, a pointwise one's `[c_out, c_in]`).
    pub weight: Vec<f32>,
    /// Gradient of the bias, `[c_out]`.
    pub bias: Vec<f32>,
}

/// Which backward algorithm [`conv_relu_pool_backward`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackwardAlgo {
    /// [`BackwardAlgo::Sparse`] when each gradient carries enough input channels to fill SIMD
    /// lanes and few enough pooled values carry one, else [`BackwardAlgo::Dense`].
    Auto,
    /// Unpools into a dense `dY` and runs two GEMMs (im2col / col2im).
    Dense,
    /// Visits only the pooled values that carry a gradient.
    Sparse,
}

/// What the backward pass reads: the forward's inputs and mask, and the output's gradient.
#[derive(Clone, Copy, Debug)]
pub struct BackwardInputs<'a> {
    /// Geometry of the layer.
    pub shape: ConvShape,
    /// The forward's input, `[batch, c_in, h, w]`.
    pub x: &'a [f32],
    /// The forward's weight, `[c_out, c_in, kh, kw]`.
    pub weight: &'a [f32],
    /// The mask [`conv_relu_pool_forward`](super::conv_relu_pool_forward) returned with the output.
    pub argmax: &'a [u8],
    /// Gradient of the pooled output, `[batch, c_out, ph, pw]`.
    pub grad_out: &'a [f32],
    /// Multiplies the gradient of kept values: the dropout scale ([`dropout_scale`](super::dropout_scale)).
    pub grad_scale: f32,
}

/// Gradients of x (when `want_x_grad`), weight and bias.
pub fn conv_relu_pool_backward(
    inputs: &BackwardInputs,
    want_x_grad: bool,
    algo: BackwardAlgo,
) -> ConvGrads {
    let s = &inputs.shape;
    assert!(
        s.is_supported(),
        "conv_relu_pool: unsupported geometry {s:?}"
    );
    assert_eq!(inputs.x.len(), s.batch * s.in_len());
    assert_eq!(inputs.weight.len(), s.weight_len());
    assert_eq!(inputs.argmax.len(), s.batch * s.pooled_len());
    assert_eq!(inputs.grad_out.len(), inputs.argmax.len());
    let sparse = match algo {
        BackwardAlgo::Auto => {
            s.c_in >= 16 && carrying_fraction(inputs.argmax) <= SPARSE_MAX_FRACTION
        }
        BackwardAlgo::Dense => false,
        BackwardAlgo::Sparse => true,
    };
    if sparse {
        backward_sparse(inputs, want_x_grad)
    } else {
        backward_dense(inputs, want_x_grad)
    }
}

/// Above this fraction of pooled values carrying a gradient the dense GEMMs win. Measured on
/// the 14x14x64 and 7x7x128 layers: sparse is 1.6-2.1x faster at 44% (the most dropout 0.5
/// leaves), so they cross near 70-90%.
const SPARSE_MAX_FRACTION: f64 = 0.6;

fn carrying_fraction(argmax: &[u8]) -> f64 {
    argmax.iter().filter(|a| **a != NO_GRAD).count() as f64 / argmax.len().max(1) as f64
}

/// Weight and bias gradient accumulators of one task, plus its scratch.
pub(super) struct Acc {
    pub(super) dw: Vec<f32>,
    pub(super) db: Vec<f32>,
    pub(super) scratch_a: Vec<f32>,
    pub(super) scratch_b: Vec<f32>,
}

impl Acc {
    pub(super) fn new(
        weight_len: usize,
        bias_len: usize,
        scratch_a: usize,
        scratch_b: usize,
    ) -> Self {
        Self {
            dw: vec![0.0; weight_len],
            db: vec![0.0; bias_len],
            scratch_a: vec![0.0; scratch_a],
            scratch_b: vec![0.0; scratch_b],
        }
    }
}

/// Accumulator groups per backward call. A fixed split, summed in a fixed order, keeps the
/// gradients bit-identical from run to run whatever the thread timing (rayon's adaptive `fold`
/// does not); eight groups still balance two threads when another process takes a share.
const GRADIENT_GROUPS: usize = 8;

/// Runs `task(acc, item, dx)` over `items`, `dx` being the item's slice of the x gradient when
/// one is wanted, in [`GRADIENT_GROUPS`] parallel groups of consecutive items, and sums the
/// groups' accumulators in group order. `lens`: the lengths of the x, weight and bias
/// gradients.
pub(super) fn run_tasks(
    (x_len, weight_len, bias_len): (usize, usize, usize),
    items: usize,
    dx_per_item: usize,
    want_x_grad: bool,
    new_acc: impl Fn() -> Acc + Sync + Send,
    task: impl Fn(&mut Acc, usize, Option<&mut [f32]>) + Sync + Send,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let per_group = items.div_ceil(GRADIENT_GROUPS).max(1);
    let groups = items.div_ceil(per_group);
    let run_group = |group: usize, dx: Option<&mut [f32]>| {
        let mut acc = new_acc();
        let first = group * per_group;
        let last = (first + per_group).min(items);
        match dx {
            Some(dx) => {
                for (i, dx) in (first..last).zip(dx.chunks_mut(dx_per_item)) {
                    task(&mut acc, i, Some(dx));
                }
            }
            None => (first..last).for_each(|i| task(&mut acc, i, None)),
        }
        (acc.dw, acc.db)
    };
    let mut dx = zeros(if want_x_grad { x_len } else { 0 });
    let partials: Vec<(Vec<f32>, Vec<f32>)> = if want_x_grad {
        dx.par_chunks_mut(per_group * dx_per_item)
            .enumerate()
            .map(|(g, dx)| run_group(g, Some(dx)))
            .collect()
    } else {
        (0..groups)
            .into_par_iter()
            .map(|g| run_group(g, None))
            .collect()
    };
    let mut partials = partials.into_iter();
    let (mut dw, mut db) = partials
        .next()
        .unwrap_or_else(|| (vec![0.0; weight_len], vec![0.0; bias_len]));
    for (pw, pb) in partials {
        dw.iter_mut().zip(&pw).for_each(|(p, q)| *p += q);
        db.iter_mut().zip(&pb).for_each(|(p, q)| *p += q);
    }
    (want_x_grad.then_some(dx), dw, db)
}

/// Dense backward: unpool into `dY` per GEMM group, then `dW += dY * col^T`,
/// `dcol = W^T * dY` and col2im.
fn backward_dense(bw: &BackwardInputs, want_x_grad: bool) -> ConvGrads {
    let s = &bw.shape;
    let nb = s.samples_per_gemm();
    let ld = nb * s.ho() * s.wo();
    let (x, dw, db) = run_tasks(
        (s.batch * s.in_len(), s.weight_len(), s.c_out),
        s.batch.div_ceil(nb),
        nb * s.in_len(),
        want_x_grad,
        || Acc::new(s.weight_len(), s.c_out, s.k() * ld, s.c_out * ld),
        |acc, chunk, dx| dense_chunk(bw, nb, ld, chunk, acc, dx),
    );
    ConvGrads {
        x,
        weight: dw,
        bias: db,
    }
}

multiversioned!(fn dense_chunk(
    bw: &BackwardInputs,
    nb: usize,
    ld: usize,
    chunk: usize,
    acc: &mut Acc,
    dx: Option<&mut [f32]>,
) = dense_chunk_body;);

#[inline(always)]
fn dense_chunk_body(
    bw: &BackwardInputs,
    nb: usize,
    ld: usize,
    chunk: usize,
    acc: &mut Acc,
    dx: Option<&mut [f32]>,
) {
    let s = &bw.shape;
    let (wo, ph, pw, k) = (s.wo(), s.ph(), s.pw(), s.k());
    let spatial = s.ho() * wo;
    let pooled_len = s.pooled_len();
    let b = chunk * nb;
    let nbc = nb.min(s.batch - b);
    let n = nbc * spatial;
    let Acc {
        dw,
        db,
        scratch_a: col,
        scratch_b: dy,
    } = acc;
    // Unpool + ReLU/dropout mask: the pooled gradient goes to the window's maximum only.
    for co in 0..s.c_out {
        dy[co * ld..co * ld + n].fill(0.0);
    }
    for j in 0..nbc {
        let base = (b + j) * pooled_len;
        for co in 0..s.c_out {
            let g = &bw.grad_out[base + co * ph * pw..][..ph * pw];
            let am = &bw.argmax[base + co * ph * pw..][..ph * pw];
            let d = &mut dy[co * ld + j * spatial..][..spatial];
            let mut sum = 0.0f32;
            for py in 0..ph {
                for px in 0..pw {
                    let i = py * pw + px;
                    let a = am[i];
                    if a != NO_GRAD {
                        let v = g[i] * bw.grad_scale;
                        d[(2 * py + (a / 2) as usize) * wo + 2 * px + (a % 2) as usize] = v;
                        sum += v;
                    }
                }
            }
            db[co] += sum;
        }
    }
    for j in 0..nbc {
        im2col(
            s,
            &bw.x[(b + j) * s.in_len()..][..s.in_len()],
            col,
            ld,
            j * spatial,
        );
    }
    // dW[c_out, K] += dY[c_out, n] * col[K, n]^T
    gemm(
        (s.c_out, k, n),
        dw,
        k,
        true,
        Strided::row_major(dy, ld),
        Strided::transposed(col, ld),
    );
    if let Some(dx) = dx {
        // dcol[K, n] = W[c_out, K]^T * dY[c_out, n], reusing the im2col buffer.
        gemm(
            (k, n, s.c_out),
            col,
            ld,
            false,
            Strided::transposed(bw.weight, k),
            Strided::row_major(dy, ld),
        );
        for j in 0..nbc {
            col2im_add(
                s,
                col,
                ld,
                j * spatial,
                &mut dx[j * s.in_len()..(j + 1) * s.in_len()],
            );
        }
    }
}

/// Sparse backward. Each pooled value that carries a gradient `g` came from one output
/// position `p`; for every kernel tap `t` whose input position `p + t` is inside the image it
/// contributes `dW[co, t, :] += g * x[p + t, :]` and `dX[p + t, :] += g * W[co, t, :]`, two
/// AXPYs over the input channels. Channels-last copies of x, W and dX (per sample) make them
/// contiguous. Its work is proportional to the number of values carrying a gradient: with
/// 15-20% of them it does 1/20 of the dense GEMMs' multiply-adds, at a lower rate per
/// multiply-add (AXPYs are load/store bound).
fn backward_sparse(bw: &BackwardInputs, want_x_grad: bool) -> ConvGrads {
    let s = &bw.shape;
    let (hw, taps, c_in) = (s.h * s.w, s.kh * s.kw, s.c_in);
    // [c_out][c_in][tap] -> [c_out][tap][c_in]
    // At least 1: a layer without input channels has an empty weight and nothing to permute.
    let per_filter = (c_in * taps).max(1);
    let mut w_t = vec![0.0f32; s.weight_len()];
    for (filter, filter_t) in bw
        .weight
        .chunks_exact(per_filter)
        .zip(w_t.chunks_exact_mut(per_filter))
    {
        transpose(filter, c_in, taps, filter_t);
    }
    let (x, dw_t, db) = run_tasks(
        (s.batch * s.in_len(), s.weight_len(), s.c_out),
        s.batch,
        s.in_len(),
        want_x_grad,
        || {
            let dx_scratch = if want_x_grad { hw * c_in } else { 0 };
            Acc::new(s.weight_len(), s.c_out, hw * c_in, dx_scratch)
        },
        |acc, b, dx| sparse_sample(bw, &w_t, b, acc, dx),
    );
    // [c_out][tap][c_in] -> [c_out][c_in][tap]
    let mut dw = vec![0.0f32; s.weight_len()];
    for (filter_t, filter) in dw_t
        .chunks_exact(per_filter)
        .zip(dw.chunks_exact_mut(per_filter))
    {
        transpose(filter_t, taps, c_in, filter);
    }
    ConvGrads {
        x,
        weight: dw,
        bias: db,
    }
}

multiversioned!(fn sparse_sample(
    bw: &BackwardInputs,
    w_t: &[f32],
    b: usize,
    acc: &mut Acc,
    dx: Option<&mut [f32]>,
) = sparse_sample_body;);

#[inline(always)]
fn sparse_sample_body(
    bw: &BackwardInputs,
    w_t: &[f32],
    b: usize,
    acc: &mut Acc,
    dx: Option<&mut [f32]>,
) {
    let s = &bw.shape;
    let (ph, pw, c_in, kw, hw) = (s.ph(), s.pw(), s.c_in, s.kw, s.h * s.w);
    let taps = s.kh * s.kw;
    let pooled_len = s.pooled_len();
    let Acc {
        dw: dw_t,
        db,
        scratch_a: x_t,
        scratch_b: dx_t,
    } = acc;
    transpose(&bw.x[b * s.in_len()..][..s.in_len()], c_in, hw, x_t);
    if dx.is_some() {
        dx_t.fill(0.0);
    }
    let argmax = &bw.argmax[b * pooled_len..][..pooled_len];
    let grad = &bw.grad_out[b * pooled_len..][..pooled_len];
    for co in 0..s.c_out {
        let am = &argmax[co * ph * pw..][..ph * pw];
        let g = &grad[co * ph * pw..][..ph * pw];
        let dwr = &mut dw_t[co * taps * c_in..][..taps * c_in];
        let wr = &w_t[co * taps * c_in..][..taps * c_in];
        let mut sum = 0.0f32;
        for q in 0..ph * pw {
            let a = am[q];
            if a == NO_GRAD {
                continue;
            }
            let v = g[q] * bw.grad_scale;
            sum += v;
            let oy = 2 * (q / pw) + (a / 2) as usize;
            let ox = 2 * (q % pw) + (a % 2) as usize;
            // Taps of one kernel row hit consecutive input positions, and both channels-last
            // layouts keep (tap, channel) and (position, channel) contiguous: one AXPY per
            // kernel row, of length (valid taps) x c_in.
            let kx0 = s.pad.saturating_sub(ox);
            let kx1 = (s.w + s.pad - ox).min(kw);
            if kx0 >= kx1 {
                continue;
            }
            let span = (kx1 - kx0) * c_in;
            for ky in 0..s.kh {
                let iy = oy + ky;
                if iy < s.pad || iy - s.pad >= s.h {
                    continue;
                }
                let p0 = (iy - s.pad) * s.w + (ox + kx0 - s.pad);
                let t0 = ky * kw + kx0;
                let xin = &x_t[p0 * c_in..][..span];
                for (d, xv) in dwr[t0 * c_in..][..span].iter_mut().zip(xin) {
                    *d += v * xv;
                }
                if dx.is_some() {
                    let wt = &wr[t0 * c_in..][..span];
                    for (d, wv) in dx_t[p0 * c_in..][..span].iter_mut().zip(wt) {
                        *d += v * wv;
                    }
                }
            }
        }
        db[co] += sum;
    }
    if let Some(dx) = dx {
        transpose(dx_t, hw, c_in, dx);
    }
}
