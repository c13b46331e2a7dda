//! The reference network in burn, its initialisation, and its forward pass: through the fused
//! convolution blocks of [`crate::fastconv`] (the default: training and inference), or through
//! burn's own ops (the reference the fused path is tested and benchmarked against).
//!
//! ```text
//! input 1x28x28 in [0, 1]
//! conv1 3x3 'same' 64  + ReLU -> max-pool 2 -> dropout 0.5   64x14x14
//! conv2 3x3 'same' 128 + ReLU -> max-pool 2 -> dropout 0.5  128x7x7
//! conv3 3x3 'same' 256 + ReLU -> max-pool 2 -> dropout 0.5  256x3x3 (7 -> 3 rounds down)
//! flatten, channel-major (NCHW): index = c*9 + y*3 + x       2304
//! fc1 128 + ReLU, fc2 64 + ReLU, fc3 32 + ReLU, fc4 10 logits
//! ```
//!
//! Weight layouts (what [`Net::weights`] returns, as burn stores them):
//! - convolution kernels `[out][in][kh][kw]` (OIHW), bias `[out]`;
//! - dense kernels `[in][out]` (row = input feature), bias `[out]`;
//! - the rows of `fc1` follow burn's channel-major flatten above. A channels-last (HWC) runtime
//!   must permute them: its input feature `(y*3 + x)*256 + c` is burn's row `c*9 + y*3 + x`.

use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::fastconv;
use crate::mnist::{IMAGE_PIXELS, IMAGE_SIDE};

/// Number of trainable parameters of the network.
pub const PARAMETER_COUNT: usize = 675_370;
/// Output classes.
pub const CLASSES: usize = 10;
/// Output channels of the three convolutions.
pub const CONV_CHANNELS: [usize; 3] = [64, 128, 256];
/// Side of the feature map after the third pool.
pub const FINAL_SIDE: usize = 3;
/// Width of the flattened features that enter `fc1` (256 x 3 x 3).
pub const FLAT_FEATURES: usize = 256 * FINAL_SIDE * FINAL_SIDE;
/// Widths of the four dense layers.
pub const DENSE_WIDTHS: [usize; 4] = [128, 64, 32, CLASSES];
/// Dropout probability after each pool (active only while training).
pub const DROPOUT: f64 = 0.5;

/// The reference CNN. Field names are the layer names used by checkpoints and exporters.
#[derive(Module, Debug)]
pub struct Net {
    /// 1 -> 64 channels, 3x3, 'same'.
    pub conv1: Conv2d,
    /// 64 -> 128 channels, 3x3, 'same'.
    pub conv2: Conv2d,
    /// 128 -> 256 channels, 3x3, 'same'.
    pub conv3: Conv2d,
    /// 2x2 max-pool, stride 2, rounding down.
    pub pool: MaxPool2d,
    /// Dropout 0.5, shared by the three blocks (it holds no weights).
    pub dropout: Dropout,
    /// 2304 -> 128.
    pub fc1: Linear,
    /// 128 -> 64.
    pub fc2: Linear,
    /// 64 -> 32.
    pub fc3: Linear,
    /// 32 -> 10 logits.
    pub fc4: Linear,
    /// ReLU after every layer but the last.
    pub relu: Relu,
}

/// How the weights of a new network are drawn. Biases always start at zero.
///
/// The default is Glorot uniform, on the evidence of one epoch of `host train`, seeds 1-5 (test
/// accuracy, %), measured with burn's own Adagrad (epsilon outside the square root) before the
/// project computed Adagrad as Keras does ([`crate::adagrad::KerasAdagrad`]):
///
/// | initialisation                   | min   | mean  | max   |
/// |----------------------------------|-------|-------|-------|
/// | `glorot-uniform`                 | 97.42 | 97.63 | 97.83 |
/// | `he-uniform`                     | 93.52 | 95.36 | 96.62 |
/// | `he-normal`                      | 94.43 | 95.46 | 96.21 |
/// | Glorot uniform x 0.5 (not kept)  | 96.74 | 97.07 | 97.24 |
/// | Glorot uniform x 0.25 (not kept) | 84.15 | 92.23 | 96.15 |
///
/// He initialisation, the usual choice for ReLU networks, learns more slowly here, and so do
/// smaller weights than Glorot's. A likely reason, not verified: Adagrad with accumulators from
/// zero moves every weight by about the learning rate in its first steps, whatever its
/// gradient's size, so the initial scale sets how much those steps count. Larger weights do not
/// help either: with `KerasAdagrad` at epsilon 1e-7, Glorot uniform x 1.5 reached 97.09 on seed
/// 1 against 97.63 at x 1. Adagrad's epsilon, not the initialisation, is what brought one epoch
/// to 98% ([`crate::train::DEFAULT_ADAGRAD_EPSILON`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitScheme {
    /// Glorot (Xavier) uniform for every layer: limit sqrt(6 / (fan_in + fan_out)), Keras's
    /// default and the tutorial's.
    #[default]
    GlorotUniform,
    /// He (Kaiming) uniform for the layers followed by a ReLU (limit sqrt(6 / fan_in), Keras's
    /// `he_uniform`), Glorot uniform for the logits layer.
    HeUniform,
    /// He (Kaiming) normal for the layers followed by a ReLU (standard deviation
    /// sqrt(2 / fan_in), not truncated: PyTorch's `kaiming_normal_`), Glorot uniform for the
    /// logits layer.
    HeNormal,
}

impl InitScheme {
    /// The weight initializer of a layer; `relu_follows` tells whether a ReLU comes next.
    fn weight_initializer(self, relu_follows: bool) -> Initializer {
        // He et al.: a ReLU halves the variance its input passes on, so a gain of sqrt(2)
        // keeps the activations' scale from layer to layer. The logits layer has no ReLU.
        let he_gain = std::f64::consts::SQRT_2;
        match (self, relu_follows) {
            (InitScheme::HeUniform, true) => Initializer::KaimingUniform {
                gain: he_gain,
                fan_out_only: false,
            },
            (InitScheme::HeNormal, true) => Initializer::KaimingNormal {
                gain: he_gain,
                fan_out_only: false,
            },
            _ => Initializer::XavierUniform { gain: 1.0 },
        }
    }
}

/// How [`Net::forward_with`] computes the three convolution blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvBlocks {
    /// One fused op per block on Flex ([`fastconv::conv_relu_pool_dropout`]); burn's modules on
    /// other backends.
    #[default]
    Fused,
    /// burn's own conv2d, relu, max_pool2d and dropout ops: the reference.
    BurnOps,
}

/// Sees each stage of a forward pass and, in a training step, each other phase (uploading the
/// batch, the backward pass, the optimizer step). The profiler of `host bench train` times
/// them; [`Unobserved`] just runs them.
pub trait StageObserver {
    /// Runs the forward stage `name` on `x`.
    fn forward_stage<const A: usize, const B: usize>(
        &mut self,
        name: &'static str,
        x: Tensor<A>,
        stage: impl FnOnce(Tensor<A>) -> Tensor<B>,
    ) -> Tensor<B> {
        let _ = name;
        stage(x)
    }

    /// Runs the phase `name`, one that is not a forward stage.
    fn phase<T>(&mut self, name: &'static str, run: impl FnOnce() -> T) -> T {
        let _ = name;
        run()
    }
}

/// A [`StageObserver`] that only runs the stages.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unobserved;

impl StageObserver for Unobserved {}

/// Stage names of the fused convolution blocks, for the profiler.
const FUSED_BLOCK_STAGES: [&str; 3] = ["conv1 block", "conv2 block", "conv3 block"];
/// Stage names of burn's ops in each block: convolution with ReLU, pooling, dropout.
const BURN_BLOCK_STAGES: [[&str; 3]; 3] = [
    ["conv1+relu", "pool1", "dropout1"],
    ["conv2+relu", "pool2", "dropout2"],
    ["conv3+relu", "pool3", "dropout3"],
];
/// Stage names of the dense layers (the first one also flattens).
const DENSE_STAGES: [&str; 4] = ["fc1+relu", "fc2+relu", "fc3+relu", "fc4"];

impl Net {
    /// A freshly initialised network on `device`, with [`InitScheme::default`] (Glorot uniform:
    /// see there for the measurements behind the choice). Seed the device first for a
    /// reproducible initialisation.
    pub fn new(device: &Device) -> Self {
        Self::with_init(device, InitScheme::default())
    }

    /// A freshly initialised network on `device`, its weights drawn as `init` says and its
    /// biases zero. Seed the device first for a reproducible initialisation.
    pub fn with_init(device: &Device, init: InitScheme) -> Self {
        let conv = |input: usize, output: usize| {
            let mut layer = Conv2dConfig::new([input, output], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_initializer(init.weight_initializer(true))
                .init(device);
            layer.bias = Some(Initializer::Zeros.init([output], device));
            layer
        };
        let dense = |input: usize, output: usize, relu_follows: bool| {
            let mut layer = LinearConfig::new(input, output)
                .with_initializer(init.weight_initializer(relu_follows))
                .init(device);
            layer.bias = Some(Initializer::Zeros.init([output], device));
            layer
        };
        let [c1, c2, c3] = CONV_CHANNELS;
        let [d1, d2, d3, d4] = DENSE_WIDTHS;
        let net = Self {
            conv1: conv(1, c1),
            conv2: conv(c1, c2),
            conv3: conv(c2, c3),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dropout: DropoutConfig::new(DROPOUT).init(),
            fc1: dense(FLAT_FEATURES, d1, true),
            fc2: dense(d1, d2, true),
            fc3: dense(d2, d3, true),
            fc4: dense(d3, d4, false),
            relu: Relu::new(),
        };
        // burn draws a parameter's initial value lazily, on its first use, from the device's
        // generator as it is then. Drawing them all now, in a fixed order, makes the weights a
        // function of the seed set before this call, whatever the caller draws next (dropout
        // masks, for one, come from the same generator).
        for conv in [&net.conv1, &net.conv2, &net.conv3] {
            let _ = conv.weight.val();
        }
        for dense in [&net.fc1, &net.fc2, &net.fc3, &net.fc4] {
            let _ = dense.weight.val();
        }
        net
    }

    /// Logits `[batch, 10]` for images `[batch, 1, 28, 28]` with values in `[0, 1]`, through
    /// the fused convolution blocks ([`ConvBlocks::Fused`]).
    ///
    /// Dropout is active only for a model on an autodiff device in training mode; call it on
    /// [`Module::valid`]'s copy (or use [`infer_logits`]) for inference.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_with(images, ConvBlocks::Fused, &mut Unobserved)
    }

    /// [`forward`](Self::forward) with the convolution blocks computed as `blocks` says, each
    /// stage run through `observer`.
    pub fn forward_with(
        &self,
        images: Tensor<4>,
        blocks: ConvBlocks,
        observer: &mut impl StageObserver,
    ) -> Tensor<2> {
        let convs = [&self.conv1, &self.conv2, &self.conv3];
        let mut x = images;
        for (index, conv) in convs.into_iter().enumerate() {
            x = match blocks {
                ConvBlocks::Fused => observer.forward_stage(FUSED_BLOCK_STAGES[index], x, |x| {
                    fastconv::conv_relu_pool_dropout(conv, &self.relu, &self.pool, &self.dropout, x)
                }),
                ConvBlocks::BurnOps => {
                    let [conv_stage, pool_stage, dropout_stage] = BURN_BLOCK_STAGES[index];
                    let x = observer
                        .forward_stage(conv_stage, x, |x| self.relu.forward(conv.forward(x)));
                    let x = observer.forward_stage(pool_stage, x, |x| self.pool.forward(x));
                    observer.forward_stage(dropout_stage, x, |x| self.dropout.forward(x))
                }
            };
        }
        let [fc1, fc2, fc3, fc4] = DENSE_STAGES;
        let y = observer.forward_stage(fc1, x, |x| {
            self.relu.forward(self.fc1.forward(x.flatten(1, 3)))
        });
        let y = observer.forward_stage(fc2, y, |y| self.relu.forward(self.fc2.forward(y)));
        let y = observer.forward_stage(fc3, y, |y| self.relu.forward(self.fc3.forward(y)));
        observer.forward_stage(fc4, y, |y| self.fc4.forward(y))
    }

    /// [`forward`](Self::forward) that also returns every intermediate result, for calibrating
    /// activation ranges and for locating a parity mismatch layer by layer. It runs burn's own
    /// ops ([`ConvBlocks::BurnOps`]), the fused blocks having no intermediate results to show.
    pub fn forward_traced(&self, images: Tensor<4>) -> Trace {
        let mut conv_relu = Vec::with_capacity(3);
        let mut pooled = Vec::with_capacity(3);
        let mut x = images.clone();
        for conv in [&self.conv1, &self.conv2, &self.conv3] {
            let activated = self.relu.forward(conv.forward(x));
            let pool = self.dropout.forward(self.pool.forward(activated.clone()));
            conv_relu.push(activated);
            pooled.push(pool.clone());
            x = pool;
        }
        let mut dense = Vec::with_capacity(4);
        let mut y: Tensor<2> = x.flatten(1, 3);
        let layers = [&self.fc1, &self.fc2, &self.fc3, &self.fc4];
        for (index, layer) in layers.into_iter().enumerate() {
            y = layer.forward(y);
            if index + 1 < layers.len() {
                y = self.relu.forward(y);
            }
            dense.push(y.clone());
        }
        let as_array = |tensors: Vec<Tensor<4>>| -> [Tensor<4>; 3] {
            tensors
                .try_into()
                .unwrap_or_else(|_| unreachable!("three convolution blocks"))
        };
        Trace {
            input: images,
            conv_relu: as_array(conv_relu),
            pooled: as_array(pooled),
            dense: dense
                .try_into()
                .unwrap_or_else(|_| unreachable!("four dense layers")),
        }
    }

    /// This network with every weight and bias replaced by `weights` (burn's layouts, as
    /// [`Net::weights`] returns them), on `device`. Fails if a shape differs.
    pub fn with_weights(mut self, weights: &NetWeights, device: &Device) -> anyhow::Result<Self> {
        let convs = [&mut self.conv1, &mut self.conv2, &mut self.conv3];
        for (layer, stored) in convs.into_iter().zip(&weights.convs) {
            let shape = layer.weight.dims();
            anyhow::ensure!(
                shape
                    == [
                        stored.out_channels,
                        stored.in_channels,
                        stored.kernel[0],
                        stored.kernel[1]
                    ],
                "convolution weights {shape:?} do not match the stored {}x{}x{:?}",
                stored.out_channels,
                stored.in_channels,
                stored.kernel
            );
            layer.weight = param(stored.weight.clone(), shape, device);
            layer.bias = Some(param(stored.bias.clone(), [stored.out_channels], device));
        }
        let dense = [&mut self.fc1, &mut self.fc2, &mut self.fc3, &mut self.fc4];
        for (layer, stored) in dense.into_iter().zip(&weights.dense) {
            let shape = layer.weight.dims();
            anyhow::ensure!(
                shape == [stored.inputs, stored.outputs],
                "dense weights {shape:?} do not match the stored {}x{}",
                stored.inputs,
                stored.outputs
            );
            layer.weight = param(stored.weight.clone(), shape, device);
            layer.bias = Some(param(stored.bias.clone(), [stored.outputs], device));
        }
        Ok(self)
    }

    /// A copy of every weight and bias as `f32`, in burn's layouts (see the module docs).
    pub fn weights(&self) -> NetWeights {
        NetWeights {
            convs: [&self.conv1, &self.conv2, &self.conv3].map(ConvWeights::from_layer),
            dense: [&self.fc1, &self.fc2, &self.fc3, &self.fc4].map(DenseWeights::from_layer),
        }
    }
}

/// Every intermediate result of one forward pass.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The input, `[n, 1, 28, 28]`.
    pub input: Tensor<4>,
    /// Each convolution after its ReLU, before pooling: `[n, 64, 28, 28]`, `[n, 128, 14, 14]`,
    /// `[n, 256, 7, 7]`.
    pub conv_relu: [Tensor<4>; 3],
    /// Each block's output after pooling (and dropout, when active): 14x14, 7x7, 3x3.
    pub pooled: [Tensor<4>; 3],
    /// fc1-fc3 after their ReLU, then fc4's logits: `[n, 128]`, `[n, 64]`, `[n, 32]`, `[n, 10]`.
    pub dense: [Tensor<2>; 4],
}

/// Scale pixels 0-255 to the network's input range `[0, 1]`: `pixel as f32 / 255.0`.
pub fn normalise(pixels: &[u8]) -> Vec<f32> {
    pixels
        .iter()
        .map(|&pixel| f32::from(pixel) / 255.0)
        .collect()
}

/// An input tensor `[n, 1, 28, 28]` from `n` images of 784 pixels each, already normalised.
pub fn input_tensor(normalised: Vec<f32>, device: &Device) -> Tensor<4> {
    let count = normalised.len() / IMAGE_PIXELS;
    assert_eq!(
        count * IMAGE_PIXELS,
        normalised.len(),
        "input must hold whole 28x28 images"
    );
    Tensor::from_data(
        TensorData::new(normalised, [count, 1, IMAGE_SIDE, IMAGE_SIDE]),
        device,
    )
}

/// Inference-mode logits (dropout off, no autodiff) for whole 28x28 images given as 0-255
/// pixels, `[n][10]` flattened; `device` is where the work runs. This is what parity tests
/// compare with other implementations.
pub fn infer_logits(model: &Net, pixels: &[u8], device: &Device) -> Vec<f32> {
    let model = model.valid().to_device(device);
    let logits = model.forward(input_tensor(normalise(pixels), device));
    tensor_to_vec(logits.into_data())
}

fn param<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

fn tensor_to_vec(data: TensorData) -> Vec<f32> {
    data.try_into_vec_as::<f32>()
        .unwrap_or_else(|error| unreachable!("float tensor converted to f32: {error:?}"))
}

fn param_to_vec<const D: usize>(param: &Param<Tensor<D>>) -> Vec<f32> {
    tensor_to_vec(param.val().into_data())
}

/// Weights of one convolution, `[out][in][kh][kw]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvWeights {
    /// Output channels.
    pub out_channels: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// `out * in * kh * kw` values, OIHW.
    pub weight: Vec<f32>,
    /// One bias per output channel.
    pub bias: Vec<f32>,
}

impl ConvWeights {
    fn from_layer(layer: &Conv2d) -> Self {
        let [out_channels, in_channels, kh, kw] = layer.weight.dims();
        Self {
            out_channels,
            in_channels,
            kernel: [kh, kw],
            weight: param_to_vec(&layer.weight),
            bias: layer
                .bias
                .as_ref()
                .map_or_else(|| vec![0.0; out_channels], param_to_vec),
        }
    }
}

/// Weights of one dense layer, `[in][out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseWeights {
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
    /// `inputs * outputs` values; row `i` holds the weights from input `i`.
    pub weight: Vec<f32>,
    /// One bias per output.
    pub bias: Vec<f32>,
}

impl DenseWeights {
    fn from_layer(layer: &Linear) -> Self {
        let [inputs, outputs] = layer.weight.dims();
        Self {
            inputs,
            outputs,
            weight: param_to_vec(&layer.weight),
            bias: layer
                .bias
                .as_ref()
                .map_or_else(|| vec![0.0; outputs], param_to_vec),
        }
    }
}

/// All weights of [`Net`], layer by layer.
#[derive(Clone, Debug, PartialEq)]
pub struct NetWeights {
    /// conv1, conv2, conv3.
    pub convs: [ConvWeights; 3],
    /// fc1, fc2, fc3, fc4.
    pub dense: [DenseWeights; 4],
}

impl NetWeights {
    /// Total number of values.
    pub fn parameter_count(&self) -> usize {
        let convs = self.convs.iter().map(|c| c.weight.len() + c.bias.len());
        let dense = self.dense.iter().map(|d| d.weight.len() + d.bias.len());
        convs.chain(dense).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    /// A fresh network; initialisation draws from the process-wide generator, so it takes
    /// its turn (see `seeded_weights`).
    fn net() -> (Net, Device) {
        let _turn = crate::seeded_turn();
        let device = device();
        device.seed(7);
        (Net::new(&device), device)
    }

    #[test]
    fn has_the_reference_parameter_count() {
        let (model, _) = net();
        assert_eq!(model.num_params(), PARAMETER_COUNT);
        assert_eq!(model.weights().parameter_count(), PARAMETER_COUNT);
    }

    #[test]
    fn layer_shapes_follow_the_reference() {
        let weights = net().0.weights();
        let convs: Vec<_> = weights
            .convs
            .iter()
            .map(|c| (c.out_channels, c.in_channels, c.kernel))
            .collect();
        assert_eq!(
            convs,
            [(64, 1, [3, 3]), (128, 64, [3, 3]), (256, 128, [3, 3])]
        );
        let dense: Vec<_> = weights
            .dense
            .iter()
            .map(|d| (d.inputs, d.outputs))
            .collect();
        assert_eq!(dense, [(2304, 128), (128, 64), (64, 32), (32, 10)]);
    }

    /// Checks that every weight follows `init` (the distribution's bound for uniform ones, its
    /// variance within sampling noise) and that every bias is zero.
    fn check_initialisation(init: InitScheme) {
        let weights = {
            let _turn = crate::seeded_turn();
            let device = device();
            device.seed(7);
            Net::with_init(&device, init).weights()
        };
        let check = |values: &[f32], fan_in: usize, fan_out: usize, relu: bool, name: &str| {
            let n = values.len() as f64;
            let variance = values.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n;
            let he = relu && init != InitScheme::GlorotUniform;
            // Glorot: variance 2 / (fan_in + fan_out); He: 2 / fan_in.
            let expected = if he {
                2.0 / fan_in as f64
            } else {
                2.0 / (fan_in + fan_out) as f64
            };
            assert!(
                (variance / expected - 1.0).abs() < 0.15,
                "{init:?} {name}: variance {variance}, expected {expected}"
            );
            if init != InitScheme::HeNormal || !relu {
                // Uniform on [-l, l] has variance l^2 / 3.
                let limit = (3.0 * expected).sqrt() as f32;
                assert!(
                    values.iter().all(|v| v.abs() <= limit),
                    "{init:?} {name}: outside +-{limit}"
                );
            }
        };
        for (i, conv) in weights.convs.iter().enumerate() {
            let k = conv.kernel[0] * conv.kernel[1];
            let (fan_in, fan_out) = (conv.in_channels * k, conv.out_channels * k);
            check(
                &conv.weight,
                fan_in,
                fan_out,
                true,
                &format!("conv{}", i + 1),
            );
            assert!(conv.bias.iter().all(|&b| b == 0.0));
        }
        for (i, dense) in weights.dense.iter().enumerate() {
            let relu = i + 1 < weights.dense.len();
            let name = format!("fc{}", i + 1);
            check(&dense.weight, dense.inputs, dense.outputs, relu, &name);
            assert!(dense.bias.iter().all(|&b| b == 0.0));
        }
    }

    #[test]
    fn glorot_uniform_initialisation() {
        check_initialisation(InitScheme::GlorotUniform);
    }

    #[test]
    fn he_uniform_initialisation() {
        check_initialisation(InitScheme::HeUniform);
    }

    #[test]
    fn he_normal_initialisation() {
        check_initialisation(InitScheme::HeNormal);
    }

    #[test]
    fn initial_weights_depend_on_the_seed_alone() {
        // Drawing from the generator between `new` and the first use must not change them.
        let (direct, after_draws) = {
            let _turn = crate::seeded_turn();
            let device = device();
            device.seed(11);
            let direct = Net::new(&device).weights();
            device.seed(11);
            let model = Net::new(&device);
            let _ = Tensor::<1>::random(
                [1000],
                burn::tensor::Distribution::Uniform(0.0, 1.0),
                &device,
            );
            (direct, model.weights())
        };
        assert_eq!(direct, after_draws);
    }

    fn seeded_weights(seed: u64) -> NetWeights {
        let _turn = crate::seeded_turn();
        let device = Device::flex();
        device.seed(seed);
        Net::new(&device).weights()
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let first = seeded_weights(7);
        assert_eq!(first, seeded_weights(7));
        assert_ne!(first, seeded_weights(8));
    }

    #[test]
    fn inference_is_deterministic_and_batch_independent() {
        let (model, device) = net();
        let pixels: Vec<u8> = (0..3 * IMAGE_PIXELS)
            .map(|i| (i * 37 % 256) as u8)
            .collect();
        let logits = infer_logits(&model, &pixels, &device);
        assert_eq!(logits.len(), 3 * CLASSES);
        assert!(logits.iter().all(|v| v.is_finite()));
        assert_eq!(logits, infer_logits(&model, &pixels, &device));
        let single = infer_logits(&model, &pixels[IMAGE_PIXELS..2 * IMAGE_PIXELS], &device);
        for (a, b) in single.iter().zip(&logits[CLASSES..2 * CLASSES]) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn flatten_is_channel_major() {
        // The layout the module docs promise to exporters: the flatten `forward` uses, applied
        // to a numbered 256x3x3 map, puts channel c, row y, column x at c*9 + y*3 + x.
        let device = device();
        let features: Vec<f32> = (0..FLAT_FEATURES).map(|i| i as f32).collect();
        let map = Tensor::<4>::from_data(TensorData::new(features, [1, 256, 3, 3]), &device);
        let flat: Tensor<2> = map.flatten(1, 3);
        let values = tensor_to_vec(flat.into_data());
        let expected: Vec<f32> = (0..FLAT_FEATURES).map(|i| i as f32).collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn traced_forward_has_the_documented_shapes_and_the_same_logits() {
        let (model, device) = net();
        let pixels: Vec<u8> = (0..2 * IMAGE_PIXELS)
            .map(|i| (i * 13 % 256) as u8)
            .collect();
        let input = input_tensor(normalise(&pixels), &device);
        let trace = model.forward_traced(input.clone());
        let shapes: Vec<[usize; 4]> = trace.conv_relu.iter().map(|t| t.dims()).collect();
        assert_eq!(shapes, [[2, 64, 28, 28], [2, 128, 14, 14], [2, 256, 7, 7]]);
        let shapes: Vec<[usize; 4]> = trace.pooled.iter().map(|t| t.dims()).collect();
        assert_eq!(shapes, [[2, 64, 14, 14], [2, 128, 7, 7], [2, 256, 3, 3]]);
        let shapes: Vec<[usize; 2]> = trace.dense.iter().map(|t| t.dims()).collect();
        assert_eq!(shapes, [[2, 128], [2, 64], [2, 32], [2, 10]]);
        // The traced pass runs burn's ops, `forward` the fused blocks: the same sums in another
        // order, so equal to f32 rounding (observed: about 1e-7 of the largest logit).
        let [.., traced] = trace.dense;
        let traced = tensor_to_vec(traced.into_data());
        let fused = tensor_to_vec(model.forward(input.clone()).into_data());
        let burn_ops = tensor_to_vec(
            model
                .forward_with(input, ConvBlocks::BurnOps, &mut Unobserved)
                .into_data(),
        );
        assert_eq!(traced, burn_ops);
        let range = traced.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (a, b) in fused.iter().zip(&traced) {
            assert!((a - b).abs() <= 1e-5 * range, "fused {a} vs burn {b}");
        }
    }

    #[test]
    fn normalise_maps_0_255_to_0_1() {
        assert_eq!(normalise(&[0, 255, 51]), [0.0, 1.0, 0.2]);
    }
}
