//! Convolutions of one group with any window, stride and zero padding, for training, on plain
//! `f32` slices in burn's NCHW layout: im2col + GEMM, forward and backward.
//!
//! The fused blocks ([`super::kernels`]) cover stride-1 convolutions followed by a ReLU and a
//! 2x2 pool; every other convolution went through burn's conv2d, whose backward pass for the
//! first layer of a depthwise-separable network (3x3, stride 2, one input channel) cost more
//! than the layer's four depthwise convolutions together. Here each image's windows are
//! unrolled into a `[Cin x kh x kw][OH x OW]` matrix, and the convolution, its input's
//! gradient and its weights' gradient are GEMMs with it ([`super::kernels`]' front for the
//! `gemm` crate, single-threaded): one rayon task per image (forward, input gradient) or per
//! fixed group of images (weights and bias, each group's sums added in order at the end), so
//! the results do not depend on the number of threads.

use rayon::prelude::*;

use super::kernels::gemm::{Strided, gemm};

/// Images per task of the weights' gradient: a fixed split, so the sums come out the same on
/// any number of threads.
const GROUP: usize = 8;

/// A convolution's shapes: `inputs` channels of `height x width` in, `outputs` channels of
/// `out_height x out_width` out, a `kernel_height x kernel_width` window moving by the strides
/// over the input with `pad_top` / `pad_left` zeros before it (and as many after as the output
/// size needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnfoldedShape {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub inputs: usize,
    /// Input rows.
    pub height: usize,
    /// Input columns.
    pub width: usize,
    /// Output channels.
    pub outputs: usize,
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

impl UnfoldedShape {
    /// Rows of the unrolled matrix: one per input channel and window position.
    fn rows(&self) -> usize {
        self.inputs * self.kernel_height * self.kernel_width
    }

    /// Its columns: one per output position.
    fn positions(&self) -> usize {
        self.out_height * self.out_width
    }

    fn in_image(&self) -> usize {
        self.inputs * self.height * self.width
    }

    fn out_image(&self) -> usize {
        self.outputs * self.positions()
    }

    /// Whether every side and stride is at least 1 (what the kernels assume).
    pub fn is_consistent(&self) -> bool {
        [
            self.inputs,
            self.height,
            self.width,
            self.outputs,
            self.kernel_height,
            self.kernel_width,
            self.stride_height,
            self.stride_width,
            self.out_height,
            self.out_width,
        ]
        .iter()
        .all(|&side| side >= 1)
    }

    /// The input row or column read by output row or column `out` at window position `tap`,
    /// if it lies in the input.
    #[inline(always)]
    fn source(out: usize, stride: usize, tap: usize, pad: usize, size: usize) -> Option<usize> {
        (out * stride + tap)
            .checked_sub(pad)
            .filter(|&index| index < size)
    }

    /// Calls `each(row, position, input index)` for every entry of the unrolled matrix that
    /// reads the input (the others are padding: zero).
    #[inline(always)]
    fn for_each_tap(&self, mut each: impl FnMut(usize, usize, usize)) {
        let (kh, kw) = (self.kernel_height, self.kernel_width);
        for c in 0..self.inputs {
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = (c * kh + ky) * kw + kx;
                    for oy in 0..self.out_height {
                        let source =
                            Self::source(oy, self.stride_height, ky, self.pad_top, self.height);
                        let Some(iy) = source else { continue };
                        let line = (c * self.height + iy) * self.width;
                        for ox in 0..self.out_width {
                            let source =
                                Self::source(ox, self.stride_width, kx, self.pad_left, self.width);
                            if let Some(ix) = source {
                                each(row, oy * self.out_width + ox, line + ix);
                            }
                        }
                    }
                }
            }
        }
    }

    /// One image's windows as a `rows x positions` matrix.
    fn unfold(&self, image: &[f32], cols: &mut Vec<f32>) {
        let positions = self.positions();
        cols.clear();
        cols.resize(self.rows() * positions, 0.0);
        self.for_each_tap(|row, position, index| cols[row * positions + position] = image[index]);
    }

    /// The input image's gradient from the unrolled matrix's: each entry added where it was
    /// read from.
    fn fold(&self, cols: &[f32], image: &mut [f32]) {
        let positions = self.positions();
        self.for_each_tap(|row, position, index| image[index] += cols[row * positions + position]);
    }
}

/// `out[n][o] = bias[o] + sum over windows of weight[o] . x[n]`; `weight` is `[outputs]
/// [inputs][kh][kw]`, `bias` one per output or none.
pub fn forward(shape: &UnfoldedShape, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let s = *shape;
    assert!(s.is_consistent(), "unfolded: {s:?}");
    assert_eq!(x.len(), s.batch * s.in_image(), "unfolded: {s:?}");
    assert_eq!(weight.len(), s.outputs * s.rows(), "unfolded: {s:?}");
    let (positions, rows) = (s.positions(), s.rows());
    let mut out = vec![0f32; s.batch * s.out_image()];
    out.par_chunks_mut(s.out_image())
        .zip(x.par_chunks(s.in_image()))
        .for_each_init(Vec::new, |cols, (out, x)| {
            s.unfold(x, cols);
            if let Some(bias) = bias {
                for (plane, &b) in out.chunks_exact_mut(positions).zip(bias) {
                    plane.fill(b);
                }
            }
            gemm(
                (s.outputs, positions, rows),
                out,
                positions,
                bias.is_some(),
                Strided::row_major(weight, rows),
                Strided::row_major(cols, positions),
            );
        });
    out
}

/// The gradients of an unfolded convolution's input (when asked for), weights and bias.
#[derive(Debug)]
pub struct Gradients {
    /// Of the input, `[N][inputs][height][width]`, when asked for.
    pub x: Option<Vec<f32>>,
    /// Of the weights, `[outputs][inputs][kh][kw]`.
    pub weight: Vec<f32>,
    /// Of the bias, one per output channel.
    pub bias: Vec<f32>,
}

/// The gradients of [`forward`]'s inputs given `grad`, the gradient of its output:
/// `dweight = Σ_n grad[n] cols[n]ᵀ`, `dbias = Σ grad`, `dx[n] = fold(weightᵀ grad[n])`.
pub fn backward(
    shape: &UnfoldedShape,
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    want_x: bool,
) -> Gradients {
    let s = *shape;
    assert!(s.is_consistent(), "unfolded: {s:?}");
    assert_eq!(x.len(), s.batch * s.in_image(), "unfolded: {s:?}");
    assert_eq!(grad.len(), s.batch * s.out_image(), "unfolded: {s:?}");
    let (positions, rows) = (s.positions(), s.rows());
    let groups: Vec<(Vec<f32>, Vec<f32>)> = x
        .par_chunks(GROUP * s.in_image())
        .zip(grad.par_chunks(GROUP * s.out_image()))
        .map(|(x, grad)| {
            let mut cols = Vec::new();
            let mut weight = vec![0f32; s.outputs * rows];
            let mut bias = vec![0f32; s.outputs];
            for (n, (x, grad)) in x
                .chunks_exact(s.in_image())
                .zip(grad.chunks_exact(s.out_image()))
                .enumerate()
            {
                s.unfold(x, &mut cols);
                gemm(
                    (s.outputs, rows, positions),
                    &mut weight,
                    rows,
                    n > 0,
                    Strided::row_major(grad, positions),
                    Strided::transposed(&cols, positions),
                );
                for (b, plane) in bias.iter_mut().zip(grad.chunks_exact(positions)) {
                    *b += plane.iter().sum::<f32>();
                }
            }
            (weight, bias)
        })
        .collect();
    let mut weight_grad = vec![0f32; s.outputs * rows];
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
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(s.in_image())
            .zip(grad.par_chunks(s.out_image()))
            .for_each_init(Vec::new, |cols: &mut Vec<f32>, (dx, grad)| {
                cols.clear();
                cols.resize(rows * positions, 0.0);
                gemm(
                    (rows, positions, s.outputs),
                    cols,
                    positions,
                    false,
                    Strided::transposed(weight, rows),
                    Strided::row_major(grad, positions),
                );
                s.fold(cols, dx);
            });
        dx
    });
    Gradients {
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

    /// The definition, window by window, in f64.
    fn naive(s: &UnfoldedShape, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f64> {
        let mut out = vec![0f64; s.batch * s.out_image()];
        for n in 0..s.batch {
            for o in 0..s.outputs {
                for oy in 0..s.out_height {
                    for ox in 0..s.out_width {
                        let mut sum = f64::from(bias[o]);
                        for c in 0..s.inputs {
                            for ky in 0..s.kernel_height {
                                for kx in 0..s.kernel_width {
                                    let iy =
                                        (oy * s.stride_height + ky) as isize - s.pad_top as isize;
                                    let ix =
                                        (ox * s.stride_width + kx) as isize - s.pad_left as isize;
                                    if (0..s.height as isize).contains(&iy)
                                        && (0..s.width as isize).contains(&ix)
                                    {
                                        let v = x[((n * s.inputs + c) * s.height + iy as usize)
                                            * s.width
                                            + ix as usize];
                                        let w = weight[((o * s.inputs + c) * s.kernel_height + ky)
                                            * s.kernel_width
                                            + kx];
                                        sum += f64::from(v) * f64::from(w);
                                    }
                                }
                            }
                        }
                        out[((n * s.outputs + o) * s.out_height + oy) * s.out_width + ox] = sum;
                    }
                }
            }
        }
        out
    }

    fn shapes() -> Vec<UnfoldedShape> {
        let mut shapes = Vec::new();
        // (batch, inputs, h, w, outputs, kernel, stride, padding before, padding after)
        for (batch, inputs, h, w, outputs, k, stride, before, after) in [
            (2, 1, 8, 8, 4, (3, 3), (2, 2), (0, 0), (1, 1)),
            (3, 2, 7, 9, 3, (3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 3, 6, 5, 2, (2, 3), (2, 1), (0, 1), (1, 1)),
            (9, 2, 5, 5, 5, (5, 5), (1, 1), (2, 2), (2, 2)),
            (2, 1, 4, 4, 2, (3, 3), (3, 3), (0, 0), (0, 0)),
        ] {
            let side =
                |size: usize, k: usize, stride: usize, pad: usize| (size + pad - k) / stride + 1;
            shapes.push(UnfoldedShape {
                batch,
                inputs,
                height: h,
                width: w,
                outputs,
                kernel_height: k.0,
                kernel_width: k.1,
                stride_height: stride.0,
                stride_width: stride.1,
                pad_top: before.0,
                pad_left: before.1,
                out_height: side(h, k.0, stride.0, before.0 + after.0),
                out_width: side(w, k.1, stride.1, before.1 + after.1),
            });
        }
        shapes
    }

    #[test]
    fn forward_is_the_definition() {
        for s in shapes() {
            let x = values(s.batch * s.in_image(), 1);
            let weight = values(s.outputs * s.rows(), 2);
            let bias = values(s.outputs, 3);
            let got = forward(&s, &x, &weight, Some(&bias));
            for (g, w) in got.iter().zip(&naive(&s, &x, &weight, &bias)) {
                assert!((f64::from(*g) - w).abs() < 1e-5, "{s:?}: {g} vs {w}");
            }
        }
    }

    /// Each gradient against the change of `sum(out * grad)` (linear in each argument, so the
    /// finite difference with step 1 is exact up to rounding).
    #[test]
    fn gradients_are_the_definitions() {
        for s in shapes() {
            let x = values(s.batch * s.in_image(), 4);
            let weight = values(s.outputs * s.rows(), 5);
            let bias = values(s.outputs, 6);
            let grad = values(s.batch * s.out_image(), 7);
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
