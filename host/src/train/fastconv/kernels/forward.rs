//! The fused forward pass: im2col + GEMM, then bias, ReLU, pooling and dropout
//! while the GEMM's output is still in cache.

use rand::RngCore;
use rayon::prelude::*;

use super::gemm::{Strided, gemm};
use super::im2col::im2col;
use super::{ConvShape, DropoutMask, NO_GRAD};
use crate::train::fastconv::zeros::zeros;

/// Forward: `dropout(pool2(relu(conv(x, w) + b)))`. Returns the pooled output (NCHW) and, per
/// pooled value, the position of the maximum inside its 2x2 window (`dy * 2 + dx`), or
/// [`NO_GRAD`] where the ReLU clipped it or dropout zeroed it.
pub fn conv_relu_pool_forward(
    s: &ConvShape,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    dropout: Option<DropoutMask>,
) -> (Vec<f32>, Vec<u8>) {
    assert!(
        s.is_supported(),
        "conv_relu_pool: unsupported geometry {s:?}"
    );
    assert!(
        dropout.is_none_or(|d| (0.0..1.0).contains(&d.prob)),
        "dropout prob must be in [0, 1)"
    );
    assert_eq!(x.len(), s.batch * s.in_len());
    assert_eq!(weight.len(), s.weight_len());
    assert_eq!(bias.len(), s.c_out);
    let pooled_len = s.pooled_len();
    let mut out = zeros(s.batch * pooled_len);
    let mut argmax = vec![NO_GRAD; s.batch * pooled_len];
    let nb = s.samples_per_gemm();
    let ld = nb * s.ho() * s.wo();
    let f = Forward {
        s,
        x,
        weight,
        bias,
        dropout,
        nb,
        ld,
    };
    // One task per GEMM group of `nb` samples; rayon balances them over the threads, which
    // matters on a machine where another process holds part of a core.
    out.par_chunks_mut(nb * pooled_len)
        .zip(argmax.par_chunks_mut(nb * pooled_len))
        .enumerate()
        .for_each_init(
            || (vec![0.0f32; s.k() * ld], vec![0.0f32; s.c_out * ld]),
            |(col, act), (chunk, (out, arg))| forward_chunk(&f, chunk, col, act, out, arg),
        );
    (out, argmax)
}

struct Forward<'a> {
    s: &'a ConvShape,
    x: &'a [f32],
    weight: &'a [f32],
    bias: &'a [f32],
    dropout: Option<DropoutMask>,
    /// Samples per GEMM and the row length of the im2col / activation scratch.
    nb: usize,
    ld: usize,
}

multiversioned!(fn forward_chunk(
    f: &Forward,
    chunk: usize,
    col: &mut [f32],
    act: &mut [f32],
    out: &mut [f32],
    arg: &mut [u8],
) = forward_chunk_body;);

#[inline(always)]
fn forward_chunk_body(
    f: &Forward,
    chunk: usize,
    col: &mut [f32],
    act: &mut [f32],
    out: &mut [f32],
    arg: &mut [u8],
) {
    let s = f.s;
    let (wo, ph, pw, ld) = (s.wo(), s.ph(), s.pw(), f.ld);
    let spatial = s.ho() * wo;
    let pooled_len = s.pooled_len();
    let b = chunk * f.nb;
    let nbc = out.len() / pooled_len;
    for j in 0..nbc {
        im2col(
            s,
            &f.x[(b + j) * s.in_len()..][..s.in_len()],
            col,
            ld,
            j * spatial,
        );
    }
    // act[c_out, positions] = W[c_out, K] * col[K, positions]
    gemm(
        (s.c_out, nbc * spatial, s.k()),
        act,
        ld,
        false,
        Strided::row_major(f.weight, s.k()),
        Strided::row_major(col, ld),
    );
    for j in 0..nbc {
        for co in 0..s.c_out {
            let a = &act[co * ld + j * spatial..][..spatial];
            let at = j * pooled_len + co * ph * pw;
            let (o, g) = (&mut out[at..at + ph * pw], &mut arg[at..at + ph * pw]);
            pool_plane(a, wo, ph, pw, f.bias[co], o, g);
            if let Some(d) = &f.dropout {
                apply_dropout(d, (b + j) * s.c_out + co, o, g);
            }
        }
    }
}

#[inline(always)]
fn pool_plane(
    a: &[f32],
    wo: usize,
    ph: usize,
    pw: usize,
    bias: f32,
    out: &mut [f32],
    arg: &mut [u8],
) {
    for py in 0..ph {
        let r0 = &a[2 * py * wo..][..2 * pw];
        let r1 = &a[(2 * py + 1) * wo..][..2 * pw];
        let o = &mut out[py * pw..][..pw];
        let g = &mut arg[py * pw..][..pw];
        // Branch-free so that it vectorises; ties keep the first position in reading order,
        // as a sequential scan with `>` would.
        for px in 0..pw {
            let (a0, a1, a2, a3) = (r0[2 * px], r0[2 * px + 1], r1[2 * px], r1[2 * px + 1]);
            let (m01, i01) = if a1 > a0 { (a1, 1u8) } else { (a0, 0u8) };
            let (m23, i23) = if a3 > a2 { (a3, 3u8) } else { (a2, 2u8) };
            let (m, i) = if m23 > m01 { (m23, i23) } else { (m01, i01) };
            let v = m + bias;
            let positive = v > 0.0;
            o[px] = if positive { v } else { 0.0 };
            g[px] = if positive { i } else { NO_GRAD };
        }
    }
}

#[inline(always)]
fn apply_dropout(d: &DropoutMask, plane: usize, out: &mut [f32], arg: &mut [u8]) {
    const BLOCK: usize = 64;
    let mut rng = d.plane_rng(plane);
    let scale = d.scale();
    let threshold = d.threshold();
    let mut draws = [0u16; BLOCK];
    for (o, g) in out.chunks_mut(BLOCK).zip(arg.chunks_mut(BLOCK)) {
        for quad in draws[..o.len().next_multiple_of(4)].chunks_exact_mut(4) {
            let bits = rng.next_u64();
            for (i, r) in quad.iter_mut().enumerate() {
                *r = (bits >> (16 * i)) as u16;
            }
        }
        for ((o, g), r) in o.iter_mut().zip(g.iter_mut()).zip(&draws) {
            let keep = (*r as u32) < threshold;
            *o = if keep { *o * scale } else { 0.0 };
            *g = if keep { *g } else { NO_GRAD };
        }
    }
}
