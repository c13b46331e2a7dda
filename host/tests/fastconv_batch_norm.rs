//! The fused training batch norm + activation of `tinycnn_host::train::fastconv` must equal
//! burn's `BatchNorm::forward` followed by burn's `relu` / `clamp(0, 6)` / nothing: in values,
//! in the gradients of the input, gamma and beta through autodiff, and in the running mean and
//! variance it leaves behind; outside training (no autodiff, or the training flag off) it must
//! be burn's module itself. And a whole batch-normalised depthwise-separable network must take
//! the same training step through the fused ops as through burn's.

use std::sync::{Mutex, MutexGuard, PoisonError};

use burn::module::Param;
use burn::nn::loss::CrossEntropyLoss;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tinycnn::arch::Activation;
use tinycnn_host::train::fastconv::batch_norm_activation;
use tinycnn_host::train::model::{
    BATCH_NORM_EPSILON, BATCH_NORM_MOMENTUM, ConvBlocks, InitScheme, Net, input_tensor,
};
use tinycnn_host::train::network::TrainNetwork;

mod common;
use common::{rel_l2, tensor_values};

const ACTIVATIONS: [Activation; 3] = [Activation::None, Activation::Relu, Activation::Relu6];

/// Values uniform in `offset ± spread`, from a generator of their own: burn's is global to the
/// process and the tests run in parallel.
fn uniform(rng: &mut SmallRng, count: usize, offset: f32, spread: f32) -> Vec<f32> {
    (0..count)
        .map(|_| offset + spread * (2.0 * rng.random::<f32>() - 1.0))
        .collect()
}

/// `[dims]` values whose channels (axis 1) have different means and spreads, so that every
/// channel's statistics matter and a ReLU6 clips at both ends.
fn input<const D: usize>(rng: &mut SmallRng, dims: [usize; D], device: &Device) -> Tensor<D> {
    let channels = dims[1];
    let inner: usize = dims[2..].iter().product();
    let offsets = uniform(rng, channels, 0.0, 3.0);
    let spreads = uniform(rng, channels, 2.0, 1.5);
    let values: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|i| {
            let c = i / inner % channels;
            offsets[c] + spreads[c] * (2.0 * rng.random::<f32>() - 1.0)
        })
        .collect();
    Tensor::from_data(TensorData::new(values, dims), device)
}

/// A batch norm of the project's settings with random gamma and beta.
fn batch_norm(rng: &mut SmallRng, channels: usize, device: &Device) -> BatchNorm {
    let mut batch_norm = BatchNormConfig::new(channels)
        .with_epsilon(BATCH_NORM_EPSILON)
        .with_momentum(BATCH_NORM_MOMENTUM)
        .init(device);
    let gamma = uniform(rng, channels, 1.0, 0.8);
    let beta = uniform(rng, channels, 0.5, 1.0);
    batch_norm.gamma = Param::from_tensor(Tensor::from_floats(gamma.as_slice(), device));
    batch_norm.beta = Param::from_tensor(Tensor::from_floats(beta.as_slice(), device));
    batch_norm
}

/// burn's batch norm and activation, as `ConvBlocks::BurnOps` computes them.
fn reference<const D: usize>(
    batch_norm: &BatchNorm,
    x: Tensor<D>,
    activation: Activation,
) -> Tensor<D> {
    let y = batch_norm.forward(x);
    match activation {
        Activation::None => y,
        Activation::Relu => relu(y),
        Activation::Relu6 => y.clamp(0.0, 6.0),
    }
}

/// A fixed, non-uniform upstream gradient.
fn upstream<const D: usize>(dims: [usize; D], device: &Device) -> Tensor<D> {
    let n = dims.iter().product::<usize>();
    let values: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(values, dims), device)
}

/// Largest absolute difference, relative to the largest reference magnitude.
fn max_rel_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    got.iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

/// The size of the terms of the input's gradient, `|gamma| |dy| / sqrt(variance + epsilon)`,
/// at their largest.
fn input_gradient_scale<const D: usize>(x: &Tensor<D>, norm: &BatchNorm, dims: [usize; D]) -> f32 {
    let channels = dims[1];
    let inner: usize = dims[2..].iter().product();
    let values = tensor_values(x.clone());
    let gamma = tensor_values(norm.gamma.val());
    let upstream = tensor_values(upstream(dims, &x.device()));
    let largest_dy = upstream.iter().fold(0f32, |m, v| m.max(v.abs()));
    (0..channels)
        .map(|c| {
            let channel: Vec<f64> = values
                .iter()
                .enumerate()
                .filter(|(i, _)| i / inner % channels == c)
                .map(|(_, &v)| f64::from(v))
                .collect();
            let mean = channel.iter().sum::<f64>() / channel.len() as f64;
            let variance =
                channel.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / channel.len() as f64;
            gamma[c].abs() * largest_dy / (variance + BATCH_NORM_EPSILON).sqrt() as f32
        })
        .fold(0f32, f32::max)
}

/// The running statistics, with the last step's update folded in.
fn running(batch_norm: &BatchNorm) -> (Vec<f32>, Vec<f32>) {
    (
        tensor_values(batch_norm.running_mean.value_sync()),
        tensor_values(batch_norm.running_var.value_sync()),
    )
}

/// Output and gradients of x, gamma and beta, three steps of different batches each, the
/// running statistics after each step: fused against burn's.
fn check<const D: usize>(dims: [usize; D], seed: u64) {
    let device = Device::flex().autodiff();
    let channels = dims[1];
    for activation in ACTIVATIONS {
        let ctx = format!("{dims:?} {activation:?}");
        let mut rng = SmallRng::seed_from_u64(seed);
        let fused_norm = batch_norm(&mut rng, channels, &device);
        // The same parameters in a batch norm of its own: a clone would share the running
        // statistics.
        let mut burn_norm = batch_norm(&mut rng, channels, &device);
        burn_norm.gamma = Param::from_tensor(fused_norm.gamma.val());
        burn_norm.beta = Param::from_tensor(fused_norm.beta.val());
        for step in 0..3 {
            let x = input(&mut rng, dims, &device);
            let run = |fused: bool| {
                let norm = if fused { &fused_norm } else { &burn_norm };
                let x = x.clone().require_grad();
                let out = if fused {
                    batch_norm_activation(norm, x.clone(), activation)
                } else {
                    reference(norm, x.clone(), activation)
                };
                let grads = (out.clone() * upstream(dims, &device)).sum().backward();
                (
                    tensor_values(out),
                    tensor_values(x.grad(&grads).unwrap()),
                    tensor_values(norm.gamma.grad(&grads).unwrap()),
                    tensor_values(norm.beta.grad(&grads).unwrap()),
                )
            };
            let (out_f, dx_f, dgamma_f, dbeta_f) = run(true);
            let (out_b, dx_b, dgamma_b, dbeta_b) = run(false);
            let ctx = format!("{ctx} step {step}");
            assert!(
                max_rel_diff(&out_f, &out_b) < 1e-5,
                "{ctx}: values differ ({})",
                max_rel_diff(&out_f, &out_b)
            );
            // Sums over a channel of terms of either sign, which may nearly cancel (burn adds
            // them in f32, the fused op in f64): relative to the terms' size where they do.
            let terms = tensor_values(upstream(dims, &device))
                .iter()
                .map(|v| v.abs())
                .sum::<f32>()
                / channels as f32;
            for (what, got, want) in [
                ("gamma", &dgamma_f, &dgamma_b),
                ("beta", &dbeta_f, &dbeta_b),
            ] {
                let worst = got
                    .iter()
                    .zip(want)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    rel_l2(got, want) < 1e-5 || worst < 1e-6 * terms,
                    "{ctx}: {what} gradient differs (relative L2 {}, largest difference \
                     {worst} of terms summing to {terms} in absolute value)",
                    rel_l2(got, want)
                );
            }
            // A channel of two values normalises to -1 and 1 whatever they are: the input's
            // gradient is zero but for rounding, which no relative error measures. Measured
            // against its terms' size instead, gamma * dy / std.
            let scale = input_gradient_scale(&x, &fused_norm, dims);
            let worst = dx_f
                .iter()
                .zip(&dx_b)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                rel_l2(&dx_f, &dx_b) < 1e-5 || worst < 1e-5 * scale,
                "{ctx}: x gradient differs (relative L2 {}, largest difference {worst} of {scale})",
                rel_l2(&dx_f, &dx_b)
            );
            let ((mean_f, var_f), (mean_b, var_b)) = (running(&fused_norm), running(&burn_norm));
            for (what, got, want) in [("mean", &mean_f, &mean_b), ("variance", &var_f, &var_b)] {
                for (g, w) in got.iter().zip(want.iter()) {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{ctx}: running {what} {g} vs burn's {w}"
                    );
                }
            }
        }
    }
}

#[test]
fn maps_match_burn() {
    check([16, 64, 14, 14], 1);
    check([5, 8, 28, 28], 2);
    check([3, 70, 3, 3], 3);
    check([2, 3, 4, 6], 4);
}

#[test]
fn single_images_and_single_channels_match_burn() {
    check([1, 1, 5, 5], 5);
    check([1, 17, 1, 1], 6);
    check([1, 9, 7, 3], 7);
    check([6, 1, 9, 9], 8);
}

#[test]
fn vectors_match_burn() {
    check([128, 64], 9);
    check([7, 70], 10);
    check([32, 33], 11);
    check([2, 1], 12);
    // One image: every value is its channel's mean, the output beta, the input's gradient 0.
    check([1, 5], 13);
}

/// Outside training the entry point is burn's module: the running statistics normalise, and
/// stay as they are.
#[test]
fn evaluation_is_burns_batch_norm() {
    let mut rng = SmallRng::seed_from_u64(20);
    let plain = Device::flex();
    let autodiff = Device::flex().autodiff();
    for device in [plain, autodiff.clone()] {
        let mut norm = batch_norm(&mut rng, 6, &device);
        norm.running_mean = burn::module::RunningState::new(Tensor::from_floats(
            uniform(&mut rng, 6, 0.0, 1.0).as_slice(),
            &device,
        ));
        norm.running_var = burn::module::RunningState::new(Tensor::from_floats(
            uniform(&mut rng, 6, 2.0, 1.0).as_slice(),
            &device,
        ));
        let norm = if device.is_autodiff() {
            // The training flag off on an autodiff device: `with_batch_norms_frozen`'s way.
            let mut frozen = norm;
            frozen.training = frozen.training.clone().with_value(false);
            frozen
        } else {
            norm
        };
        let before = running(&norm);
        for activation in ACTIVATIONS {
            let x = input(&mut rng, [3, 6, 4, 4], &device);
            let got = tensor_values(batch_norm_activation(&norm, x.clone(), activation));
            let want = tensor_values(reference(&norm, x, activation));
            assert_eq!(got, want, "{activation:?} on {device:?}");
        }
        assert_eq!(running(&norm), before, "running statistics moved");
    }
}

/// Serialises the tests that seed burn's generator, which the process shares.
fn generator_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A batch-normalised depthwise-separable network, every batch norm followed by ReLU, ReLU6 or
/// nothing: one training step through the fused ops (depthwise kernels, fused batch norms)
/// gives burn's loss and gradients, and the same running statistics.
///
/// The gradient reaching a batch norm's input is orthogonal to each channel's normalised values
/// (and sums to zero), so a gamma whose layer feeds the next batch norm through only a
/// depthwise convolution and a ReLU gets its gradient as a sum of terms that nearly cancel:
/// the two implementations' rounding differs there by up to about 2e-4 of it (measured 1.4e-4),
/// where every other gradient agrees to 1e-6. (A linear batch norm feeding another through only
/// linear ops has a beta gradient of exactly zero but for rounding: the description keeps a
/// ReLU after each linear one.)
#[test]
fn batch_normalised_network_step_matches_burn() {
    let _turn = generator_turn();
    let network = TrainNetwork::parse(
        "input:16x16x1 conv3x3:12:s2:bn dw3x3:bn:relu6 conv1x1:16:bn dw3x3:s2:linear:bn \
         conv1x1:16 gap flatten dense:20:bn dense:10",
        tinycnn::Architecture::REFERENCE.input(),
    )
    .unwrap();
    let device = Device::flex().autodiff();
    let build = || {
        device.seed(3);
        Net::with_network(&network, &device, InitScheme::GlorotUniform)
    };
    let (fused_model, burn_model) = (build(), build());
    let mut rng = SmallRng::seed_from_u64(30);
    let batch = 24;
    let pixels = uniform(&mut rng, batch * 256, 0.5, 0.5);
    let images = input_tensor(pixels, network.architecture.input(), &device);
    let labels: Vec<i64> = (0..batch as i64).map(|i| i * 7 % 10).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let step = |model: &Net, blocks: ConvBlocks| {
        let logits = model.forward_with(images.clone(), blocks);
        let loss = CrossEntropyLoss::new(None, &device).forward(logits, targets.clone());
        let value = loss.clone().into_scalar::<f32>();
        let grads = loss.backward();
        let mut named = Vec::new();
        for (index, norm) in model.batch_norms.iter().enumerate() {
            named.push((
                format!("batch_norms.{index}.gamma"),
                tensor_values(norm.gamma.grad(&grads).unwrap()),
            ));
            named.push((
                format!("batch_norms.{index}.beta"),
                tensor_values(norm.beta.grad(&grads).unwrap()),
            ));
        }
        let weights = model
            .convs
            .iter()
            .chain(&model.depthwise)
            .map(|conv| tensor_values(conv.weight.grad(&grads).unwrap()))
            .chain(
                model
                    .dense
                    .iter()
                    .map(|dense| tensor_values(dense.weight.grad(&grads).unwrap())),
            );
        for (index, grad) in weights.enumerate() {
            named.push((format!("weight {index}"), grad));
        }
        (value, named)
    };
    let (fused_loss, fused_grads) = step(&fused_model, ConvBlocks::Fused);
    let (burn_loss, burn_grads) = step(&burn_model, ConvBlocks::BurnOps);
    assert!(
        (fused_loss - burn_loss).abs() <= 1e-5 * burn_loss.abs(),
        "loss {fused_loss} vs burn's {burn_loss}"
    );
    assert_eq!(fused_grads.len(), burn_grads.len());
    let errors: Vec<(&str, f32)> = fused_grads
        .iter()
        .zip(&burn_grads)
        .map(|((name, fused), (_, burn))| (name.as_str(), rel_l2(fused, burn)))
        .collect();
    eprintln!("relative L2 error of each gradient: {errors:?}");
    for (name, error) in errors {
        let tolerance = if name.ends_with("gamma") { 5e-4 } else { 1e-5 };
        assert!(error < tolerance, "{name}: relative L2 error {error}");
    }
    for (fused, burn) in fused_model.batch_norms.iter().zip(&burn_model.batch_norms) {
        let ((mean_f, var_f), (mean_b, var_b)) = (running(fused), running(burn));
        for (g, w) in mean_f.iter().chain(&var_f).zip(mean_b.iter().chain(&var_b)) {
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "running {g} vs {w}"
            );
        }
    }
}
