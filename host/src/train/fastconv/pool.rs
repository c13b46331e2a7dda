//! Global average pooling for training, on plain `f32` slices in burn's NCHW layout.
//!
//! burn computes it as two means (over columns, then rows), each with its own backward pass
//! broadcasting the gradient back: about 2 ms of a depthwise-separable network's step here.
//! One pass each way, one rayon task per image.

use super::zeros::filled;
use rayon::prelude::*;

/// Values added in independent lanes (one AVX-512 register of f32): a plane's sum one value
/// after the other would make each addition wait for the last.
const LANES: usize = 16;

/// The mean of each `plane`-value plane of `x` (`planes` of them per image, images one after
/// the other).
pub fn forward(x: &[f32], planes: usize, plane: usize) -> Vec<f32> {
    assert!(plane > 0 && planes > 0 && x.len().is_multiple_of(planes * plane));
    let mut out = vec![0f32; x.len() / plane];
    let scale = 1.0 / plane as f32;
    out.par_chunks_mut(planes)
        .zip(x.par_chunks(planes * plane))
        .for_each(|(out, x)| {
            for (mean, values) in out.iter_mut().zip(x.chunks_exact(plane)) {
                *mean = sum(values) * scale;
            }
        });
    out
}

/// The gradient of [`forward`]'s input: each plane's gradient spread evenly over it.
pub fn backward(grad: &[f32], planes: usize, plane: usize) -> Vec<f32> {
    assert!(plane > 0 && planes > 0 && grad.len().is_multiple_of(planes));
    let scale = 1.0 / plane as f32;
    filled(
        grad.len() * plane,
        planes * plane,
        || (),
        |_, n, dx| {
            let grad = &grad[n * planes..][..planes];
            for (values, &g) in dx.chunks_exact_mut(plane).zip(grad) {
                values.fill(g * scale);
            }
        },
    )
}

/// The sum of `values`, in lanes.
#[inline(always)]
fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, value) in lanes.iter_mut().zip(chunk) {
            *lane += value;
        }
    }
    for (lane, value) in lanes.iter_mut().zip(chunks.remainder()) {
        *lane += value;
    }
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_and_their_gradient() {
        // 2 images of 3 planes of 20 values (more than one lane's worth).
        let x: Vec<f32> = (0..120).map(|i| (i % 7) as f32 - 3.0).collect();
        let means = forward(&x, 3, 20);
        for (mean, values) in means.iter().zip(x.chunks(20)) {
            let want = values.iter().sum::<f32>() / 20.0;
            assert!((mean - want).abs() < 1e-6, "{mean} vs {want}");
        }
        let grad = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let dx = backward(&grad, 3, 20);
        assert_eq!(dx.len(), 120);
        for (values, g) in dx.chunks(20).zip(grad) {
            assert!(values.iter().all(|&v| v == g / 20.0));
        }
    }
}
