//! Helpers shared by host's integration tests.
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

/// The `host` binary, never downloading: a missing data directory must fail here, not fetch from
/// the internet (`tests/download.rs` tests the download against a server on loopback).
pub fn host() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::cargo_bin("host").expect("the host binary is built");
    command
        .env_remove("MNIST_DIR")
        .env_remove("TINYCNN_MIRRORS")
        .env("TINYCNN_NO_DOWNLOAD", "1");
    command
}
