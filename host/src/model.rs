//! The reference network in burn, initialised as Keras initialises it.
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

impl Net {
    /// A freshly initialised network on `device`: Glorot-uniform kernels and zero biases, as
    /// Keras does (burn's own default, Kaiming-uniform with uniform biases, learns more slowly
    /// here: 97.0% after one epoch instead of about 98%). Seed the device first for a
    /// reproducible initialisation.
    pub fn new(device: &Device) -> Self {
        let conv = |input: usize, output: usize| {
            let mut layer = Conv2dConfig::new([input, output], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device);
            layer.bias = Some(Initializer::Zeros.init([output], device));
            layer
        };
        let dense = |input: usize, output: usize| {
            let mut layer = LinearConfig::new(input, output)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device);
            layer.bias = Some(Initializer::Zeros.init([output], device));
            layer
        };
        let [c1, c2, c3] = CONV_CHANNELS;
        let [d1, d2, d3, d4] = DENSE_WIDTHS;
        Self {
            conv1: conv(1, c1),
            conv2: conv(c1, c2),
            conv3: conv(c2, c3),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dropout: DropoutConfig::new(DROPOUT).init(),
            fc1: dense(FLAT_FEATURES, d1),
            fc2: dense(d1, d2),
            fc3: dense(d2, d3),
            fc4: dense(d3, d4),
            relu: Relu::new(),
        }
    }

    /// Logits `[batch, 10]` for images `[batch, 1, 28, 28]` with values in `[0, 1]`.
    ///
    /// Dropout is active only for a model on an autodiff device in training mode; call it on
    /// [`Module::valid`]'s copy (or use [`infer_logits`]) for inference.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.block(&self.conv1, images);
        let x = self.block(&self.conv2, x);
        let x = self.block(&self.conv3, x);
        let x: Tensor<2> = x.flatten(1, 3);
        let x = self.relu.forward(self.fc1.forward(x));
        let x = self.relu.forward(self.fc2.forward(x));
        let x = self.relu.forward(self.fc3.forward(x));
        self.fc4.forward(x)
    }

    /// Convolution, ReLU, pooling and dropout of one block: the one place where they meet, so
    /// that a faster or fused convolution op (a burn backend extension) replaces this body only.
    fn block(&self, conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
        let x = self.relu.forward(conv.forward(x));
        self.dropout.forward(self.pool.forward(x))
    }

    /// [`forward`](Self::forward) that also returns every intermediate result, for calibrating
    /// activation ranges and for locating a parity mismatch layer by layer.
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

    #[test]
    fn initialisation_is_glorot_uniform_with_zero_biases() {
        let weights = net().0.weights();
        let check = |values: &[f32], fan_in: usize, fan_out: usize, name: &str| {
            let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
            assert!(
                values.iter().all(|v| v.abs() <= limit),
                "{name}: outside +-{limit}"
            );
            // A uniform distribution on [-l, l] has variance l^2/3; allow sampling noise.
            let n = values.len() as f64;
            let variance = values.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n;
            let expected = f64::from(limit).powi(2) / 3.0;
            assert!(
                (variance / expected - 1.0).abs() < 0.15,
                "{name}: variance {variance}, expected {expected}"
            );
        };
        for (i, conv) in weights.convs.iter().enumerate() {
            let k = conv.kernel[0] * conv.kernel[1];
            check(
                &conv.weight,
                conv.in_channels * k,
                conv.out_channels * k,
                &format!("conv{}", i + 1),
            );
            assert!(conv.bias.iter().all(|&b| b == 0.0));
        }
        for (i, dense) in weights.dense.iter().enumerate() {
            check(
                &dense.weight,
                dense.inputs,
                dense.outputs,
                &format!("fc{}", i + 1),
            );
            assert!(dense.bias.iter().all(|&b| b == 0.0));
        }
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
        let [.., logits] = trace.dense;
        assert_eq!(
            tensor_to_vec(logits.into_data()),
            tensor_to_vec(model.forward(input).into_data())
        );
    }

    #[test]
    fn normalise_maps_0_255_to_0_1() {
        assert_eq!(normalise(&[0, 255, 51]), [0.0, 1.0, 0.2]);
    }
}
