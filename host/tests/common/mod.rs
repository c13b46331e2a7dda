//! Helpers shared by the fused-convolution tests.
#![allow(dead_code)] // Each test binary uses part of this module.

use burn::tensor::Tensor;

/// The values of `t`, flattened in row-major order.
pub fn tensor_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Relative L2 error, for gradients (sums of arbitrary upstream gradients: equal only up to
/// rounding and summation order).
pub fn rel_l2(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let num: f32 = got.iter().zip(want).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f32 = want.iter().map(|b| b * b).sum();
    (num / den.max(1e-30)).sqrt()
}
