//! The fused kernels' sparse backward must equal their dense (im2col + GEMM) backward, which
//! `fastconv_matches_burn` checks against burn, on every shape either may be used for, with and
//! without dropout; and both must give bit-identical gradients from call to call, whatever the
//! thread timing, or resumed training runs would drift from uninterrupted ones.

use tinycnn_host::train::fastconv::kernels::{
    BackwardAlgo, BackwardInputs, ConvShape, DropoutMask, conv_relu_pool_backward,
    conv_relu_pool_forward, dropout_scale,
};

mod common;
use common::rel_l2;

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A forward pass on deterministic inputs, kept for the backward passes.
struct Case {
    shape: ConvShape,
    dropout: Option<DropoutMask>,
    x: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    out: Vec<f32>,
    argmax: Vec<u8>,
    grad_out: Vec<f32>,
}

impl Case {
    /// Inputs in [-1, 1), weights and biases in [-`weight_scale`, `weight_scale`).
    fn new(shape: ConvShape, dropout: Option<DropoutMask>, weight_scale: f32) -> Self {
        let x = values(shape.batch * shape.in_len(), 1);
        let scaled =
            |n, seed| -> Vec<f32> { values(n, seed).iter().map(|v| v * weight_scale).collect() };
        let weight = scaled(shape.weight_len(), 2);
        let bias = scaled(shape.c_out, 3);
        let (out, argmax) = conv_relu_pool_forward(&shape, &x, &weight, &bias, dropout);
        let grad_out = values(out.len(), 4);
        Self {
            shape,
            dropout,
            x,
            weight,
            bias,
            out,
            argmax,
            grad_out,
        }
    }

    fn backward_inputs(&self) -> BackwardInputs<'_> {
        BackwardInputs {
            shape: self.shape,
            x: &self.x,
            weight: &self.weight,
            argmax: &self.argmax,
            grad_out: &self.grad_out,
            grad_scale: dropout_scale(self.dropout),
        }
    }
}

fn check(s: ConvShape, dropout: Option<DropoutMask>) {
    let case = Case::new(s, dropout, 0.3);
    let inputs = case.backward_inputs();
    for want_x in [true, false] {
        let dense = conv_relu_pool_backward(&inputs, want_x, BackwardAlgo::Dense);
        let sparse = conv_relu_pool_backward(&inputs, want_x, BackwardAlgo::Sparse);
        let ctx = format!("{s:?} dropout {dropout:?} want_x {want_x}");
        assert_eq!(dense.x.is_some(), want_x, "{ctx}");
        assert_eq!(sparse.x.is_some(), want_x, "{ctx}");
        if let (Some(d), Some(sp)) = (&dense.x, &sparse.x) {
            assert!(rel_l2(sp, d) < 1e-5, "{ctx}: x gradient {}", rel_l2(sp, d));
        }
        assert!(
            rel_l2(&sparse.weight, &dense.weight) < 1e-5,
            "{ctx}: weight gradient"
        );
        assert!(
            rel_l2(&sparse.bias, &dense.bias) < 1e-5,
            "{ctx}: bias gradient"
        );
    }
}

fn shape(
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    pad: usize,
) -> ConvShape {
    ConvShape {
        batch,
        c_in,
        h,
        w,
        c_out,
        kh: k,
        kw: k,
        pad,
    }
}

#[test]
fn sparse_backward_equals_dense() {
    let drop = Some(DropoutMask {
        prob: 0.5,
        seed: 77,
    });
    for s in [
        shape(3, 1, 28, 28, 8, 3, 1),
        shape(5, 16, 14, 14, 12, 3, 1),
        shape(4, 8, 7, 7, 16, 3, 1),
        shape(2, 3, 12, 10, 5, 5, 0),
        shape(2, 3, 11, 9, 5, 5, 2),
        shape(7, 4, 7, 7, 6, 3, 1),
        shape(9, 64, 14, 14, 32, 3, 1),
        shape(9, 128, 7, 7, 24, 3, 1),
    ] {
        check(s, None);
        check(s, drop);
    }
}

/// Outputs and gradients are bit-identical from call to call, whatever the thread timing:
/// training runs with the same seed must not drift apart.
#[test]
fn kernels_are_deterministic() {
    let drop = Some(DropoutMask { prob: 0.5, seed: 3 });
    let case = Case::new(shape(37, 64, 14, 14, 32, 3, 1), drop, 1.0);
    let inputs = case.backward_inputs();
    for algo in [BackwardAlgo::Dense, BackwardAlgo::Sparse] {
        let first = conv_relu_pool_backward(&inputs, true, algo);
        for _ in 0..4 {
            assert_eq!(
                conv_relu_pool_backward(&inputs, true, algo),
                first,
                "{algo:?}"
            );
        }
    }
    // The forward too: its tasks write disjoint parts of the output.
    for _ in 0..4 {
        assert_eq!(
            conv_relu_pool_forward(&case.shape, &case.x, &case.weight, &case.bias, drop),
            (case.out.clone(), case.argmax.clone())
        );
    }
}
