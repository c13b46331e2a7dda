//! The whole network, fused blocks against burn's ops, on real MNIST images (exact zeros,
//! saturated strokes: ReLU and pooling ties that random data never produces): one training
//! step's loss and the gradient of every parameter must be burn's. Alone in its own test binary
//! with the test of the dropout seeding, because both depend on burn's process-wide generator.
//!
//! Pixels and convolution weights are put on power-of-two grids so that every convolution
//! output is exact in f32 whatever the summation order. Otherwise two window entries within
//! rounding of each other can be ordered differently by the two implementations (both valid
//! subgradients), and one such window among ~10^5 moves a weight gradient by ~0.5% relative L2;
//! with exact outputs, ties are real ties and both break them alike (first maximum).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use burn::module::Module;
use burn::nn::DropoutConfig;
use burn::nn::loss::CrossEntropyLoss;
use burn::tensor::{Device, Int, Tensor, TensorData};
use tinycnn::Architecture;
use tinycnn_host::data::mnist::{IMAGE_PIXELS, Mnist};
use tinycnn_host::train::model::{ConvBlocks, InitScheme, Net, input_tensor};

mod common;
use common::{rel_l2, tensor_values};

/// Serialises the tests of this binary: they seed burn's generator, which the process shares.
fn generator_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// MNIST in the shared data folder beside the checkout, as CI provides it.
fn mnist() -> Mnist {
    let dir: PathBuf = std::env::var_os("MNIST_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist"),
        PathBuf::from,
    );
    Mnist::load(&dir).unwrap_or_else(|error| panic!("MNIST is needed here: {error:#}"))
}

/// The first `n` training images (pixels on a 1/4 grid) and their labels, on `device`.
fn batch(data: &Mnist, n: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let pixels: Vec<f32> = data.train.pixels[..n * IMAGE_PIXELS]
        .iter()
        .map(|&p| (f32::from(p) / 255.0 * 4.0).round() / 4.0)
        .collect();
    let labels: Vec<i64> = data.train.labels[..n]
        .iter()
        .map(|&l| i64::from(l))
        .collect();
    let targets = Tensor::from_data(TensorData::new(labels, [n]), device);
    (
        input_tensor(pixels, Architecture::REFERENCE.input(), device),
        targets,
    )
}

/// The loss of one step and the gradient of every parameter, by name.
type Step = (f32, Vec<(String, Vec<f32>)>);

fn step(model: &Net, logits: Tensor<2>, targets: Tensor<1, Int>, device: &Device) -> Step {
    let loss = CrossEntropyLoss::new(None, device).forward(logits, targets);
    let value = loss.clone().into_scalar::<f32>();
    let g = loss.backward();
    let m = model;
    let bias = |layer: &Option<burn::module::Param<Tensor<1>>>| {
        tensor_values(layer.as_ref().unwrap().grad(&g).unwrap())
    };
    let mut grads = Vec::new();
    for (index, conv) in m.convs.iter().enumerate() {
        grads.push((
            format!("convs.{index}.weight"),
            tensor_values(conv.weight.grad(&g).unwrap()),
        ));
        grads.push((format!("convs.{index}.bias"), bias(&conv.bias)));
    }
    for (index, dense) in m.dense.iter().enumerate() {
        grads.push((
            format!("dense.{index}.weight"),
            tensor_values(dense.weight.grad(&g).unwrap()),
        ));
        grads.push((format!("dense.{index}.bias"), bias(&dense.bias)));
    }
    (value, grads)
}

#[test]
fn fused_step_equals_burn_step_on_mnist() {
    let _turn = generator_turn();
    let data = mnist();
    let device = Device::flex().autodiff();
    let (images, targets) = batch(&data, 64, &device);
    device.seed(1);
    // Glorot weights on the grids below keep every convolution sum within f32's 24-bit
    // mantissa; He's larger conv3 weights would not leave that margin.
    let mut model = Net::with_init(&Architecture::REFERENCE, &device, InitScheme::GlorotUniform);
    let on_grid = |w: Tensor<4>, step: f32| ((w / step).round() * step).detach().require_grad();
    for (conv, step) in model
        .convs
        .iter_mut()
        .zip([1.0 / 32.0, 1.0 / 64.0, 1.0 / 64.0])
    {
        conv.weight = conv.weight.clone().map(|w| on_grid(w, step));
    }
    // Dropout off on both paths: the fused op draws its own masks, which burn's ops cannot
    // reproduce. `fastconv_matches_burn` checks the op's dropout against burn's ops given the
    // op's mask.
    for dropout in &mut model.dropouts {
        *dropout = DropoutConfig::new(0.0).init();
    }

    let fused_logits = model.forward(images.clone());
    let (fused_loss, fused_grads) = step(&model, fused_logits.clone(), targets.clone(), &device);
    let burn_logits = model.forward_with(images, ConvBlocks::BurnOps);
    let (burn_loss, burn_grads) = step(&model, burn_logits.clone(), targets, &device);

    // Exact convolution outputs and the same dense layers: the same logits and loss, bit for bit.
    assert_eq!(
        tensor_values(fused_logits),
        tensor_values(burn_logits),
        "logits"
    );
    assert_eq!(fused_loss, burn_loss, "loss");
    let errors: Vec<(&str, f32)> = fused_grads
        .iter()
        .zip(&burn_grads)
        .map(|((name, fused), (_, burn))| (name.as_str(), rel_l2(fused, burn)))
        .collect();
    assert_eq!(errors.len(), 14);
    eprintln!("relative L2 error of each gradient: {errors:?}");
    // The backward passes add the same products in other orders: measured 1e-7..6e-7.
    for (name, error) in errors {
        assert!(error < 1e-5, "{name}: relative L2 error {error}");
    }
}

#[test]
fn dropout_masks_follow_the_device_seed_and_stop_outside_training() {
    let _turn = generator_turn();
    let data = mnist();
    let device = Device::flex().autodiff();
    let (images, _) = batch(&data, 16, &device);
    device.seed(3);
    let model = Net::new(&Architecture::REFERENCE, &device);
    let logits = |seed: u64| {
        device.seed(seed);
        tensor_values(model.forward(images.clone()))
    };
    let first = logits(5);
    assert_eq!(first, logits(5), "same seed, same masks");
    assert_ne!(first, logits(6), "another seed, other masks");
    // Inference: no dropout, so no dependence on the generator at all.
    let valid = model.valid();
    let (plain_images, _) = batch(&data, 16, &Device::flex());
    let infer = |seed: u64| {
        device.seed(seed);
        tensor_values(valid.forward(plain_images.clone()))
    };
    assert_eq!(infer(5), infer(6));
}

/// The standalone dropout layers of a batch-normalised network (the fused ops' masks, seeded
/// from the device's generator) follow the device's seed as the fused blocks' do, and stop
/// outside training.
#[test]
fn standalone_dropout_follows_the_device_seed() {
    use tinycnn_host::train::network::TrainNetwork;
    let _turn = generator_turn();
    let data = mnist();
    let device = Device::flex().autodiff();
    let (images, _) = batch(&data, 16, &device);
    device.seed(3);
    let network = TrainNetwork::parse(
        "conv3x3:8:s2:bn drop:0.2 dw3x3:bn conv1x1:8:bn gap drop:0.4 dense:10",
        Architecture::REFERENCE.input(),
    )
    .unwrap();
    let model = Net::with_network(&network, &device, InitScheme::GlorotUniform);
    let logits = |seed: u64| {
        device.seed(seed);
        tensor_values(model.forward(images.clone()))
    };
    let first = logits(5);
    assert_eq!(first, logits(5), "same seed, same masks");
    assert_ne!(first, logits(6), "another seed, other masks");
    let valid = model.valid();
    let (plain_images, _) = batch(&data, 16, &Device::flex());
    let infer = |seed: u64| {
        device.seed(seed);
        tensor_values(valid.forward(plain_images.clone()))
    };
    assert_eq!(infer(5), infer(6));
}
