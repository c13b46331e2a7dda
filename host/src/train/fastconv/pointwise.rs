//! Pointwise (1x1, stride 1) convolutions for training, on plain `f32` slices in burn's NCHW
//! layout: the forward pass and the gradients of the input, the weights and the bias.
//!
//! A 1x1 convolution of one image is one matrix product, `out[Cout][HW] = weight[Cout][Cin] x
//! x[Cin][HW]`, on the layout as it lies; burn's conv2d backward for the 1x1 layers of a
//! depthwise-separable network took 40-60 ms a layer per batch of 128 here, against about 3 ms
//! for the products themselves. One GEMM per image ([`super::kernels`]' front for the `gemm`
//! crate, single-threaded) in one rayon task per image (forward, input gradient) or per fixed
//! group of images (weights and bias, each group's sums added in order at the end), so the
//! results do not depend on the number of threads.

use rayon::prelude::*;

use super::kernels::ConvGrads;
use super::zeros::filled;

use super::kernels::gemm::{Strided, gemm};

/// Images per task of the weights' gradient: a fixed split, so the sums come out the same on
/// any number of threads.
const GROUP: usize = 8;

/// A pointwise convolution's shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PointwiseShape {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub inputs: usize,
    /// Output channels.
    pub outputs: usize,
    /// Values per channel of one image (height x width).
    pub plane: usize,
}

impl PointwiseShape {
    /// Whether every side is at least 1 (what the kernels assume).
    pub fn is_consistent(&self) -> bool {
        self.inputs >= 1 && self.outputs >= 1 && self.plane >= 1
    }
}

/// `out[n][o] = bias[o] + sum over i of weight[o][i] * x[n][i]`, plane by plane. `weight` is
/// `[outputs][inputs]` (burn's `[outputs][inputs][1][1]`), `bias` one per output or none.
pub fn forward(
    shape: &PointwiseShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let s = *shape;
    assert!(s.is_consistent(), "pointwise: {s:?}");
    assert_eq!(x.len(), s.batch * s.inputs * s.plane, "pointwise: {s:?}");
    assert_eq!(weight.len(), s.outputs * s.inputs, "pointwise: {s:?}");
    let (x_image, out_image) = (s.inputs * s.plane, s.outputs * s.plane);
    filled(
        s.batch * out_image,
        out_image,
        || (),
        |_, n, out| {
            if let Some(bias) = bias {
                for (plane, &b) in out.chunks_exact_mut(s.plane).zip(bias) {
                    plane.fill(b);
                }
            }
            gemm(
                (s.outputs, s.plane, s.inputs),
                out,
                s.plane,
                bias.is_some(),
                Strided::row_major(weight, s.inputs),
                Strided::row_major(&x[n * x_image..][..x_image], s.plane),
            );
        },
    )
}

/// The gradients of [`forward`]'s inputs given `grad`, the gradient of its output:
/// `dx[n] = weightᵀ grad[n]`, `dweight = Σ_n grad[n] x[n]ᵀ`, `dbias = Σ grad`.
pub fn backward(
    shape: &PointwiseShape,
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    want_x: bool,
) -> ConvGrads {
    let s = *shape;
    assert!(s.is_consistent(), "pointwise: {s:?}");
    assert_eq!(x.len(), s.batch * s.inputs * s.plane, "pointwise: {s:?}");
    assert_eq!(
        grad.len(),
        s.batch * s.outputs * s.plane,
        "pointwise: {s:?}"
    );
    let (x_image, grad_image) = (s.inputs * s.plane, s.outputs * s.plane);
    let groups: Vec<(Vec<f32>, Vec<f32>)> = x
        .par_chunks(GROUP * x_image)
        .zip(grad.par_chunks(GROUP * grad_image))
        .map(|(x, grad)| {
            let mut weight = vec![0f32; s.outputs * s.inputs];
            let mut bias = vec![0f32; s.outputs];
            for (n, (x, grad)) in x
                .chunks_exact(x_image)
                .zip(grad.chunks_exact(grad_image))
                .enumerate()
            {
                gemm(
                    (s.outputs, s.inputs, s.plane),
                    &mut weight,
                    s.inputs,
                    n > 0,
                    Strided::row_major(grad, s.plane),
                    Strided::transposed(x, s.plane),
                );
                for (b, plane) in bias.iter_mut().zip(grad.chunks_exact(s.plane)) {
                    *b += plane.iter().sum::<f32>();
                }
            }
            (weight, bias)
        })
        .collect();
    let mut weight_grad = vec![0f32; s.outputs * s.inputs];
    let mut bias_grad = vec![0f32; s.outputs];
    for (weight, bias) in groups {
        for (total, part) in weight_grad.iter_mut().zip(weight) {
            *total += part;
        }
        for (total, part) in bias_grad.iter_mut().zip(bias) {
            *total += part;
        }
    }
    let x_grad = want_x.then(|| {
        filled(
            x.len(),
            x_image,
            || (),
            |_, n, dx| {
                gemm(
                    (s.inputs, s.plane, s.outputs),
                    dx,
                    s.plane,
                    false,
                    Strided::transposed(weight, s.inputs),
                    Strided::row_major(&grad[n * grad_image..][..grad_image], s.plane),
                );
            },
        )
    });
    ConvGrads {
        x: x_grad,
        weight: weight_grad,
        bias: bias_grad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(count: usize, seed: usize) -> Vec<f32> {
        (0..count)
            .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0) - 1.0)
            .collect()
    }

    fn naive(s: &PointwiseShape, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f64> {
        let mut out = vec![0f64; s.batch * s.outputs * s.plane];
        for n in 0..s.batch {
            for o in 0..s.outputs {
                for p in 0..s.plane {
                    let mut sum = f64::from(bias[o]);
                    for i in 0..s.inputs {
                        sum += f64::from(weight[o * s.inputs + i])
                            * f64::from(x[(n * s.inputs + i) * s.plane + p]);
                    }
                    out[(n * s.outputs + o) * s.plane + p] = sum;
                }
            }
        }
        out
    }

    fn shapes() -> Vec<PointwiseShape> {
        [
            (2, 3, 4, 5),
            (1, 1, 1, 1),
            (9, 5, 2, 7),
            (17, 4, 6, 3),
            (3, 8, 8, 1),
        ]
        .into_iter()
        .map(|(batch, inputs, outputs, plane)| PointwiseShape {
            batch,
            inputs,
            outputs,
            plane,
        })
        .collect()
    }

    #[test]
    fn forward_is_the_definition() {
        for s in shapes() {
            let x = values(s.batch * s.inputs * s.plane, 1);
            let weight = values(s.outputs * s.inputs, 2);
            let bias = values(s.outputs, 3);
            let want = naive(&s, &x, &weight, &bias);
            for (got, bias) in [
                (forward(&s, &x, &weight, Some(&bias)), true),
                (forward(&s, &x, &weight, None), false),
            ] {
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let w = if bias {
                        *w
                    } else {
                        w - f64::from(values(s.outputs, 3)[i / s.plane % s.outputs])
                    };
                    assert!((f64::from(*g) - w).abs() < 1e-5, "{s:?}: {g} vs {w}");
                }
            }
        }
    }

    /// Each gradient against the change of `sum(out * grad)` (linear in each argument, so the
    /// finite difference with step 1 is exact up to rounding).
    #[test]
    fn gradients_are_the_definitions() {
        for s in shapes() {
            let x = values(s.batch * s.inputs * s.plane, 4);
            let weight = values(s.outputs * s.inputs, 5);
            let bias = values(s.outputs, 6);
            let grad = values(s.batch * s.outputs * s.plane, 7);
            let got = backward(&s, &x, &weight, &grad, true);
            let loss = |x: &[f32], weight: &[f32], bias: &[f32]| -> f64 {
                naive(&s, x, weight, bias)
                    .iter()
                    .zip(&grad)
                    .map(|(o, g)| o * f64::from(*g))
                    .sum()
            };
            let base = loss(&x, &weight, &bias);
            let check = |what: &str, got: &[f32], nudge: &dyn Fn(usize) -> f64| {
                for (i, g) in got.iter().enumerate() {
                    let want = nudge(i) - base;
                    assert!(
                        (f64::from(*g) - want).abs() < 1e-4,
                        "{what}[{i}] {s:?}: {g} vs {want}"
                    );
                }
            };
            check("x", got.x.as_deref().unwrap(), &|i| {
                let mut x = x.clone();
                x[i] += 1.0;
                loss(&x, &weight, &bias)
            });
            check("weight", &got.weight, &|i| {
                let mut weight = weight.clone();
                weight[i] += 1.0;
                loss(&x, &weight, &bias)
            });
            check("bias", &got.bias, &|i| {
                let mut bias = bias.clone();
                bias[i] += 1.0;
                loss(&x, &weight, &bias)
            });
            assert!(backward(&s, &x, &weight, &grad, false).x.is_none());
        }
    }
}
