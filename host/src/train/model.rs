//! A network of any valid description ([`tinycnn::Architecture`]) in burn: its layers, their
//! initialisation, and the forward pass, through the fused convolution blocks of
//! [`crate::train::fastconv`] (the default: training and inference) or through burn's own ops
//! (the reference the fused path is tested and benchmarked against).
//!
//! The tutorial's network, the default:
//!
//! ```text
//! input 1x28x28 in [0, 1]
//! conv1 3x3 'same' 64  + ReLU -> max-pool 2 -> dropout 0.5   64x14x14
//! conv2 3x3 'same' 128 + ReLU -> max-pool 2 -> dropout 0.5  128x7x7
//! conv3 3x3 'same' 256 + ReLU -> max-pool 2 -> dropout 0.5  256x3x3 (7 -> 3 rounds down)
//! flatten, channel-major (NCHW): index = c*9 + y*3 + x       2304
//! dense1 128 + ReLU, dense2 64 + ReLU, dense3 32 + ReLU, dense4 10 logits
//! ```
//!
//! Weight layouts (what [`Net::weights`] returns, as burn stores them):
//! - convolution kernels `[out][in][kh][kw]` (OIHW), bias `[out]`;
//! - dense kernels `[in][out]` (row = input feature), bias `[out]`;
//! - the rows of the first dense layer follow burn's channel-major flatten above. A
//!   channels-last (HWC) runtime must permute them (see [`crate::export::burn_flatten_index`]).

use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use tinycnn::arch::{Activation, Architecture, Layer, Padding, Shape};

use crate::train::fastconv;

/// How the weights of a new network are drawn. Biases always start at zero.
///
/// The default is Glorot uniform, on the evidence of one epoch of `host train`, seeds 1-5 (test
/// accuracy, %), measured with burn's own Adagrad (epsilon outside the square root) before the
/// project computed Adagrad as Keras does ([`crate::train::adagrad::KerasAdagrad`]):
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
    /// default and the Keras MNIST tutorial's.
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

/// How [`Net::forward_with`] computes the convolution blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvBlocks {
    /// One fused op per convolution + ReLU + max-pool (+ dropout) block on Flex
    /// ([`fastconv::conv_relu_pool_dropout`]); burn's modules for every other layer, and on
    /// other backends.
    #[default]
    Fused,
    /// burn's own conv2d, relu, max_pool2d and dropout ops: the reference.
    BurnOps,
}

/// A network in burn, built from its description. Field names are the record's keys (the
/// checkpoint's `convs.0.weight`, ...).
#[derive(Module, Debug)]
pub struct Net {
    /// The convolutions, in order.
    pub convs: Vec<Conv2d>,
    /// The dense layers, in order; the last gives the logits.
    pub dense: Vec<Linear>,
    /// One per dropout layer, in order (they hold no weights, only their rate and whether
    /// they are active).
    pub dropouts: Vec<Dropout>,
    /// The 2x2 max-pool, stride 2, rounding down (shared: it holds no weights).
    pub pool: MaxPool2d,
    /// ReLU (shared).
    pub relu: Relu,
    /// The description every shape comes from.
    #[module(skip)]
    architecture: Architecture,
}

/// What flows between stages: a map `[n, c, h, w]` until the flatten, a vector `[n, k]` after.
#[derive(Clone, Debug)]
pub enum Values {
    /// Before the flatten.
    Map(Tensor<4>),
    /// After it.
    Vector(Tensor<2>),
}

impl Values {
    /// The map; a vector is seen as `[n, k, 1, 1]`.
    pub fn into_map(self) -> Tensor<4> {
        match self {
            Values::Map(map) => map,
            Values::Vector(vector) => vector.unsqueeze_dims(&[2, 3]),
        }
    }

    /// The vector (flattening a map channel-major, as the `flatten` stage does).
    pub fn into_vector(self) -> Tensor<2> {
        match self {
            Values::Map(map) => map.flatten(1, 3),
            Values::Vector(vector) => vector,
        }
    }
}

/// One stage of a forward pass, as [`Net::run_stage`] computes it and `host bench train`
/// times it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Name for reports: the layers' names (`conv1 block`, `conv2+relu`, `pool1`, `drop3`,
    /// `flatten`, `dense4`).
    pub name: String,
    operation: Operation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    /// Convolution `conv` + ReLU + pool (+ dropout `dropout`) as one fused op.
    FusedBlock {
        conv: usize,
        dropout: Option<usize>,
    },
    /// Convolution `conv`, with ReLU or not.
    Conv {
        conv: usize,
        relu: bool,
    },
    Pool,
    Dropout(usize),
    Flatten,
    /// Dense layer `dense`, with ReLU or not.
    Dense {
        dense: usize,
        relu: bool,
    },
}

/// Refuses a description with layers this trainer does not build yet (`host import` runs
/// networks trained elsewhere with any layer of the vocabulary): square convolutions of side
/// 1, 3 or 5 with stride 1, 2x2 max-pools, dropout, flatten and dense layers, with ReLU or no
/// activation, ending in class logits.
pub fn check_trainable(architecture: &Architecture) -> anyhow::Result<()> {
    anyhow::ensure!(
        architecture.is_classifier(),
        "host train trains classifiers; this network's output is values (output:values)"
    );
    for info in architecture.iter() {
        let mut text = String::new();
        tinycnn::text::write_layer(&mut text, &info.layer, false)?;
        let trainable = match info.layer {
            Layer::Conv(conv) => {
                conv.window.is_square_stride_one() && conv.activation != Activation::Relu6
            }
            Layer::Dense(dense) => dense.activation != Activation::Relu6,
            Layer::MaxPool | Layer::Dropout(_) | Layer::Flatten => true,
            _ => false,
        };
        anyhow::ensure!(
            trainable,
            "layer {} ({}, `{text}`): host train does not train this layer yet; it trains \
             square 1x1, 3x3 and 5x5 convolutions with stride 1, pool, drop, flatten and dense \
             layers, with ReLU or no activation (`host import` runs networks with any layer, \
             trained elsewhere)",
            info.index + 1,
            info.name
        );
    }
    Ok(())
}

impl Net {
    /// A freshly initialised network of `architecture` on `device`, with
    /// [`InitScheme::default`] (Glorot uniform: see there for the measurements behind the
    /// choice). Seed the device first for a reproducible initialisation.
    pub fn new(architecture: &Architecture, device: &Device) -> Self {
        Self::with_init(architecture, device, InitScheme::default())
    }

    /// A freshly initialised network of `architecture` on `device`, its weights drawn as
    /// `init` says and its biases zero. Seed the device first for a reproducible
    /// initialisation.
    pub fn with_init(architecture: &Architecture, device: &Device, init: InitScheme) -> Self {
        let mut convs = Vec::new();
        let mut dense = Vec::new();
        let mut dropouts = Vec::new();
        for info in architecture.iter() {
            let relu_follows = info.activation() == Activation::Relu;
            match info.layer {
                Layer::Conv(conv) => {
                    let side = conv.side();
                    let padding = match conv.window.padding {
                        Padding::Same => PaddingConfig2d::Same,
                        Padding::Valid => PaddingConfig2d::Valid,
                    };
                    let mut layer =
                        Conv2dConfig::new([info.input.channels, info.outputs()], [side, side])
                            .with_padding(padding)
                            .with_initializer(init.weight_initializer(relu_follows))
                            .init(device);
                    layer.bias = Some(Initializer::Zeros.init([info.outputs()], device));
                    convs.push(layer);
                }
                Layer::Dense(_) => {
                    let mut layer = LinearConfig::new(info.input.values(), info.outputs())
                        .with_initializer(init.weight_initializer(relu_follows))
                        .init(device);
                    layer.bias = Some(Initializer::Zeros.init([info.outputs()], device));
                    dense.push(layer);
                }
                Layer::Dropout(thousandths) => {
                    dropouts.push(DropoutConfig::new(f64::from(thousandths) / 1000.0).init());
                }
                Layer::MaxPool | Layer::Flatten => {}
                other => {
                    unreachable!("{other:?}: `check_trainable` refuses it before a Net is built")
                }
            }
        }
        let net = Self {
            convs,
            dense,
            dropouts,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            relu: Relu::new(),
            architecture: *architecture,
        };
        // burn draws a parameter's initial value lazily, on its first use, from the device's
        // generator as it is then. Drawing them all now, in a fixed order (convolutions, then
        // dense layers), makes the weights a function of the seed set before this call,
        // whatever the caller draws next (dropout masks, for one, come from the same
        // generator).
        for conv in &net.convs {
            let _ = conv.weight.val();
        }
        for dense in &net.dense {
            let _ = dense.weight.val();
        }
        net
    }

    /// The description this network was built from.
    pub fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    /// Logits `[batch, classes]` for images `[batch, channels, height, width]` with values in
    /// `[0, 1]`, through the fused convolution blocks ([`ConvBlocks::Fused`]).
    ///
    /// Dropout is active only for a model on an autodiff device in training mode; call it on
    /// [`Module::valid`]'s copy (or use [`infer_logits`]) for inference.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_with(images, ConvBlocks::Fused)
    }

    /// [`forward`](Self::forward) with the convolution blocks computed as `blocks` says.
    pub fn forward_with(&self, images: Tensor<4>, blocks: ConvBlocks) -> Tensor<2> {
        self.stages(blocks)
            .iter()
            .fold(Values::Map(images), |x, stage| self.run_stage(stage, x))
            .into_vector()
    }

    /// The stages of a forward pass, in order: one per layer, except that with
    /// [`ConvBlocks::Fused`] a ReLU convolution followed by a pool (and a dropout after it) is
    /// one stage. Dropout between a convolution and its pool keeps them apart: it would be
    /// applied before the maximum, which the fused op does not compute.
    pub fn stages(&self, blocks: ConvBlocks) -> Vec<Stage> {
        let infos: Vec<_> = self.architecture.iter().collect();
        let (mut convs, mut dense, mut dropouts) = (0, 0, 0);
        let mut stages = Vec::new();
        let mut index = 0;
        while let Some(info) = infos.get(index) {
            index += 1;
            let name = info.name.to_string();
            let relu = info.activation() == Activation::Relu;
            let (name, operation) = match info.layer {
                Layer::Conv(_) => {
                    let conv = convs;
                    convs += 1;
                    let pool_follows = infos
                        .get(index)
                        .is_some_and(|next| next.layer == Layer::MaxPool);
                    if blocks == ConvBlocks::Fused && relu && pool_follows {
                        index += 1;
                        let dropout = match infos.get(index).map(|next| next.layer) {
                            Some(Layer::Dropout(_)) => {
                                index += 1;
                                dropouts += 1;
                                Some(dropouts - 1)
                            }
                            _ => None,
                        };
                        (
                            format!("{name} block"),
                            Operation::FusedBlock { conv, dropout },
                        )
                    } else {
                        let name = if relu { format!("{name}+relu") } else { name };
                        (name, Operation::Conv { conv, relu })
                    }
                }
                Layer::MaxPool => (name, Operation::Pool),
                Layer::Dropout(_) => {
                    dropouts += 1;
                    (name, Operation::Dropout(dropouts - 1))
                }
                Layer::Flatten => (name, Operation::Flatten),
                Layer::Dense(_) => {
                    dense += 1;
                    let name = if relu { format!("{name}+relu") } else { name };
                    (
                        name,
                        Operation::Dense {
                            dense: dense - 1,
                            relu,
                        },
                    )
                }
                other => {
                    unreachable!("{other:?}: `check_trainable` refuses it before a Net is built")
                }
            };
            stages.push(Stage { name, operation });
        }
        stages
    }

    /// Runs one stage of [`stages`](Self::stages) on `x`.
    pub fn run_stage(&self, stage: &Stage, x: Values) -> Values {
        let activate = |x: Tensor<4>, relu: bool| if relu { self.relu.forward(x) } else { x };
        match stage.operation {
            Operation::FusedBlock { conv, dropout } => {
                Values::Map(fastconv::conv_relu_pool_dropout(
                    &self.convs[conv],
                    &self.relu,
                    &self.pool,
                    dropout.map(|index| &self.dropouts[index]),
                    x.into_map(),
                ))
            }
            Operation::Conv { conv, relu } => {
                Values::Map(activate(self.convs[conv].forward(x.into_map()), relu))
            }
            Operation::Pool => Values::Map(self.pool.forward(x.into_map())),
            Operation::Dropout(index) => match x {
                Values::Map(map) => Values::Map(self.dropouts[index].forward(map)),
                Values::Vector(vector) => Values::Vector(self.dropouts[index].forward(vector)),
            },
            Operation::Flatten => Values::Vector(x.into_vector()),
            Operation::Dense { dense, relu } => {
                let y = self.dense[dense].forward(x.into_vector());
                Values::Vector(if relu { self.relu.forward(y) } else { y })
            }
        }
    }

    /// This network with every weight and bias replaced by `weights` (burn's layouts, as
    /// [`Net::weights`] returns them), on `device`. Fails if a shape differs.
    pub fn with_weights(mut self, weights: &NetWeights, device: &Device) -> anyhow::Result<Self> {
        anyhow::ensure!(
            weights.convs.len() == self.convs.len() && weights.dense.len() == self.dense.len(),
            "{} convolutions and {} dense layers given, the network has {} and {}",
            weights.convs.len(),
            weights.dense.len(),
            self.convs.len(),
            self.dense.len()
        );
        for (layer, stored) in self.convs.iter_mut().zip(&weights.convs) {
            let shape = layer.weight.dims();
            let stored_shape = [
                stored.out_channels,
                stored.in_channels,
                stored.kernel[0],
                stored.kernel[1],
            ];
            anyhow::ensure!(
                shape == stored_shape,
                "convolution weights {shape:?} do not match the stored {stored_shape:?}"
            );
            layer.weight = param(stored.weight.clone(), shape, device);
            layer.bias = Some(param(stored.bias.clone(), [stored.out_channels], device));
        }
        for (layer, stored) in self.dense.iter_mut().zip(&weights.dense) {
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
            convs: self.convs.iter().map(ConvWeights::from_layer).collect(),
            dense: self.dense.iter().map(DenseWeights::from_layer).collect(),
        }
    }
}

/// Scales pixels 0-255 of channels-last images of `shape` to the network's input range
/// `[0, 1]` (`pixel as f32 / 255.0`), in burn's channels-first order.
pub fn normalise(pixels: &[u8], shape: Shape) -> Vec<f32> {
    let channels = shape.channels.max(1);
    let plane = shape.height * shape.width;
    if channels == 1 {
        return pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    }
    let mut values = vec![0.0; pixels.len()];
    for (image, out) in pixels
        .chunks_exact(shape.values().max(1))
        .zip(values.chunks_exact_mut(shape.values().max(1)))
    {
        for (position, pixel) in image.chunks_exact(channels).enumerate() {
            for (channel, &p) in pixel.iter().enumerate() {
                out[channel * plane + position] = f32::from(p) / 255.0;
            }
        }
    }
    values
}

/// An input tensor `[n, channels, height, width]` of images of `shape`, already normalised
/// (channels-first, as [`normalise`] gives them).
pub fn input_tensor(normalised: Vec<f32>, shape: Shape, device: &Device) -> Tensor<4> {
    let per_image = shape.values().max(1);
    let count = normalised.len() / per_image;
    assert_eq!(
        count * per_image,
        normalised.len(),
        "input must hold whole {shape} images"
    );
    Tensor::from_data(
        TensorData::new(
            normalised,
            [count, shape.channels, shape.height, shape.width],
        ),
        device,
    )
}

/// Inference-mode logits (dropout off, no autodiff) for whole images of the network's input
/// shape, given as channels-last 0-255 values; `[n][classes]` flattened. `device` is where the
/// work runs. This is what parity tests compare with other implementations.
pub fn infer_logits(model: &Net, pixels: &[u8], device: &Device) -> Vec<f32> {
    let model = model.valid().to_device(device);
    let shape = model.architecture().input();
    let logits = model.forward(input_tensor(normalise(pixels, shape), shape, device));
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

/// All weights of a [`Net`], layer by layer.
#[derive(Clone, Debug, PartialEq)]
pub struct NetWeights {
    /// The convolutions, in order.
    pub convs: Vec<ConvWeights>,
    /// The dense layers, in order.
    pub dense: Vec<DenseWeights>,
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
    const REFERENCE: Architecture = Architecture::REFERENCE;

    fn net() -> (Net, Device) {
        let _turn = crate::seeded_turn();
        let device = device();
        device.seed(7);
        (Net::new(&REFERENCE, &device), device)
    }

    #[test]
    fn has_the_reference_parameter_count() {
        let (model, _) = net();
        assert_eq!(model.num_params(), 675_370);
        assert_eq!(model.weights().parameter_count(), REFERENCE.parameters());
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
            Net::with_init(&REFERENCE, &device, init).weights()
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
            let name = format!("dense{}", i + 1);
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
            let direct = Net::new(&REFERENCE, &device).weights();
            device.seed(11);
            let model = Net::new(&REFERENCE, &device);
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
        Net::new(&REFERENCE, &device).weights()
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
        let pixels: Vec<u8> = (0..3 * 784).map(|i| (i * 37 % 256) as u8).collect();
        let logits = infer_logits(&model, &pixels, &device);
        assert_eq!(logits.len(), 3 * 10);
        assert!(logits.iter().all(|v| v.is_finite()));
        assert_eq!(logits, infer_logits(&model, &pixels, &device));
        let single = infer_logits(&model, &pixels[784..2 * 784], &device);
        for (a, b) in single.iter().zip(&logits[10..2 * 10]) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn flatten_is_channel_major() {
        // The layout the module docs promise to exporters: the flatten `forward` uses, applied
        // to a numbered 256x3x3 map, puts channel c, row y, column x at c*9 + y*3 + x.
        let device = device();
        let features: Vec<f32> = (0..2304).map(|i| i as f32).collect();
        let map = Tensor::<4>::from_data(TensorData::new(features, [1, 256, 3, 3]), &device);
        let flat = Values::Map(map).into_vector();
        let values = tensor_to_vec(flat.into_data());
        let expected: Vec<f32> = (0..2304).map(|i| i as f32).collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn stages_follow_the_description_and_both_paths_agree() {
        let (model, device) = net();
        let names =
            |blocks| -> Vec<String> { model.stages(blocks).into_iter().map(|s| s.name).collect() };
        assert_eq!(
            names(ConvBlocks::Fused),
            [
                "conv1 block",
                "conv2 block",
                "conv3 block",
                "flatten",
                "dense1+relu",
                "dense2+relu",
                "dense3+relu",
                "dense4"
            ]
        );
        assert_eq!(
            names(ConvBlocks::BurnOps)[..3],
            ["conv1+relu", "pool1", "drop1"]
        );
        let pixels: Vec<u8> = (0..2 * 784).map(|i| (i * 13 % 256) as u8).collect();
        let input = input_tensor(
            normalise(&pixels, REFERENCE.input()),
            REFERENCE.input(),
            &device,
        );
        // The fused blocks and burn's ops add the same products in another order: equal to f32
        // rounding (observed: about 1e-7 of the largest logit).
        let fused = tensor_to_vec(model.forward(input.clone()).into_data());
        let burn_ops = tensor_to_vec(model.forward_with(input, ConvBlocks::BurnOps).into_data());
        let range = burn_ops.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (a, b) in fused.iter().zip(&burn_ops) {
            assert!((a - b).abs() <= 1e-5 * range, "fused {a} vs burn {b}");
        }
    }

    #[test]
    fn any_description_builds_and_runs() {
        let _turn = crate::seeded_turn();
        let device = device();
        device.seed(5);
        let architecture = tinycnn::text::parse(
            "input:12x10x3 conv5x5:4:valid pool conv1x1:3:linear drop:0.3 pool flatten \
             dense:6:linear drop:0.2 dense:20",
            REFERENCE.input(),
        )
        .unwrap();
        let model = Net::new(&architecture, &device);
        assert_eq!(model.num_params(), architecture.parameters());
        let shape = architecture.input();
        let pixels: Vec<u8> = (0..2 * shape.values())
            .map(|i| (i * 7 % 256) as u8)
            .collect();
        let logits = infer_logits(&model, &pixels, &device);
        assert_eq!(logits.len(), 2 * 20);
        let names: Vec<String> = model
            .stages(ConvBlocks::Fused)
            .into_iter()
            .map(|s| s.name)
            .collect();
        // The 'valid' ReLU convolution and its pool fuse; the linear one does not.
        assert_eq!(
            names,
            [
                "conv1 block",
                "conv2",
                "drop1",
                "pool2",
                "flatten",
                "dense1",
                "drop2",
                "dense2"
            ]
        );
    }

    #[test]
    fn colour_images_are_normalised_channels_first() {
        let shape = Shape::new(1, 2, 3);
        // Two pixels, RGB each: channels-last in, channels-first out.
        let values = normalise(&[255, 0, 51, 0, 255, 102], shape);
        assert_eq!(values, [1.0, 0.0, 0.0, 1.0, 0.2, 0.4]);
    }

    #[test]
    fn normalise_maps_0_255_to_0_1() {
        assert_eq!(
            normalise(&[0, 255, 51], Shape::new(1, 3, 1)),
            [0.0, 1.0, 0.2]
        );
    }
}
