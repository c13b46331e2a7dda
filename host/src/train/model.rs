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
//! Every other layer of the vocabulary is built from burn's own modules and ops: strided and
//! rectangular convolutions, depthwise convolutions (a `Conv2d` with one group per input
//! channel), residual blocks (the projection shortcut a 1x1 `Conv2d`) and their additions,
//! max and average pools of any window, global average pools, and ReLU6 (a clamp to 0..6).
//! Windows other than the square stride-1 ones pad explicitly as the core does (TensorFlow's
//! 'same': the smaller half of an odd total before, the rest after; see `explicit_padding`).
//!
//! Weight layouts (what [`Net::weights`] returns, as burn stores them):
//! - convolution kernels `[out][in][kh][kw]` (OIHW), bias `[out]`; a depthwise kernel
//!   `[channels x multiplier][1][kh][kw]`, a projection `[out][in][1][1]`;
//! - dense kernels `[in][out]` (row = input feature), bias `[out]`;
//! - the rows of the first dense layer follow burn's channel-major flatten above. A
//!   channels-last (HWC) runtime must permute them (see [`crate::export::burn_flatten_index`]).

use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use tinycnn::arch::{
    Activation, Architecture, Layer, Padding, Pool, PoolKind, Shape, Shortcut, Window,
};

use crate::train::fastconv;
use crate::train::network::TrainNetwork;

/// The batch norms' epsilon, added to the variance: Keras's (`BatchNormalization`'s default,
/// 1e-3), not burn's (1e-5), so that a network trained here and the same one trained by Keras
/// normalise alike.
pub const BATCH_NORM_EPSILON: f64 = 1e-3;

/// How much of each training batch's mean and variance the batch norms' running statistics take
/// in, in burn's convention (`running = (1 - m) * running + m * batch`): 0.1, which is Keras's
/// `momentum=0.9` (Keras writes the share kept). Keras's default, 0.99, averages over the last
/// few hundred batches: after one epoch of the DS-CNN on MNIST its running statistics still
/// held much of the first batches' and evaluation gave 32 %. `scripts/keras-reference.py
/// --bn-momentum 0.9` trains with the same momentum.
pub const BATCH_NORM_MOMENTUM: f64 = 0.1;

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
    /// ([`fastconv::conv_relu_pool_dropout`]), fastconv's kernels for every other convolution
    /// ([`fastconv::conv2d`], [`fastconv::depthwise_conv`]), one op per training batch
    /// norm and its activation ([`fastconv::batch_norm_activation`]), and dropout with the fused
    /// block's masks ([`fastconv::dropout`]); burn's modules for every other layer, and on
    /// other backends.
    #[default]
    Fused,
    /// burn's own conv2d, relu, max_pool2d, dropout and batch norm ops: the reference.
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
    /// The depthwise convolutions, in order: burn convolutions with one group per input
    /// channel (weights `[channels x multiplier][1][kh][kw]`).
    pub depthwise: Vec<Conv2d>,
    /// The 1x1 convolutions of the residual blocks' projection shortcuts, in order.
    pub projections: Vec<Conv2d>,
    /// One per batch-normalised layer (`:bn`), in the description's order: its scale (gamma)
    /// and offset (beta) are trained, its running mean and variance (in the record too) are
    /// what evaluation and export use. The layer it follows has no bias.
    pub batch_norms: Vec<BatchNorm>,
    /// One per dropout layer, in order (they hold no weights, only their rate and whether
    /// they are active).
    pub dropouts: Vec<Dropout>,
    /// The 2x2 max-pool, stride 2, rounding down (shared: it holds no weights). Pools of
    /// other windows are built from the description when they run (they hold no weights).
    pub pool: MaxPool2d,
    /// ReLU (shared).
    pub relu: Relu,
    /// The description every shape comes from, and which layers are batch-normalised.
    #[module(skip)]
    network: TrainNetwork,
}

/// What flows between stages: a map `[n, c, h, w]` until the flatten, a vector `[n, k]` after,
/// and inside a residual block the block's map with the shortcut kept for its `add`.
#[derive(Clone, Debug)]
pub enum Values {
    /// Before the flatten.
    Map(Tensor<4>),
    /// After it.
    Vector(Tensor<2>),
    /// Inside a residual block (between `residual` and `add`; a description has no flatten
    /// or dense layer there, and no block inside a block).
    Block {
        /// The block's main line.
        main: Tensor<4>,
        /// The shortcut: the block's input, or its projection (boxed: a tensor is large).
        shortcut: Box<Tensor<4>>,
    },
}

impl Values {
    /// The map; a vector is seen as `[n, k, 1, 1]`; inside a block, the main line (the
    /// shortcut is dropped).
    pub fn into_map(self) -> Tensor<4> {
        match self {
            Values::Map(map) | Values::Block { main: map, .. } => map,
            Values::Vector(vector) => vector.unsqueeze_dims(&[2, 3]),
        }
    }

    /// The vector (flattening a map channel-major, as the `flatten` stage does).
    pub fn into_vector(self) -> Tensor<2> {
        match self {
            Values::Map(map) | Values::Block { main: map, .. } => map.flatten(1, 3),
            Values::Vector(vector) => vector,
        }
    }

    /// `f` applied to the map (the main line inside a block, whose shortcut is kept).
    fn map_with(self, f: impl FnOnce(Tensor<4>) -> Tensor<4>) -> Values {
        match self {
            Values::Block { main, shortcut } => Values::Block {
                main: f(main),
                shortcut,
            },
            other => Values::Map(f(other.into_map())),
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
    /// Convolution `conv`, then batch norm `batch_norm` if it has one, then its activation;
    /// when `fused`, the convolution through [`fastconv::conv2d`] and the batch norm and
    /// activation as one op of [`fastconv::batch_norm_activation`], else burn's.
    Conv {
        conv: usize,
        batch_norm: Option<usize>,
        activation: Activation,
        fused: bool,
    },
    /// Depthwise convolution `depthwise`, then its batch norm, then its activation; through
    /// the kernels of [`fastconv::depthwise`] and [`fastconv::batch_norm_activation`] when
    /// `fused`, else burn's grouped convolution, batch norm and activation.
    Depthwise {
        depthwise: usize,
        batch_norm: Option<usize>,
        activation: Activation,
        fused: bool,
    },
    /// The 2x2 max-pool.
    Pool,
    /// A max or average pool of any window.
    WindowPool(Pool),
    /// The mean of each plane, through [`fastconv::global_average_pool`] when `fused`.
    GlobalAveragePool {
        fused: bool,
    },
    /// A residual block's start: the shortcut is the input, or projection `projection` of it
    /// (through [`fastconv::conv2d`] when `fused`).
    Residual {
        projection: Option<usize>,
        fused: bool,
    },
    /// A residual block's end: main line plus shortcut, then the activation.
    Add(Activation),
    /// Dropout `dropout`, on a map with the fused block's masks ([`fastconv::dropout`]) when
    /// `fused`; on a vector burn's.
    Dropout {
        dropout: usize,
        fused: bool,
    },
    Flatten,
    /// Dense layer `dense`, then its batch norm, then its activation (the two as one op when
    /// `fused`, as for `Conv`).
    Dense {
        dense: usize,
        batch_norm: Option<usize>,
        activation: Activation,
        fused: bool,
    },
}

/// Refuses a description this trainer cannot train: a network whose output is values, not
/// classes, and `softmax` (training computes the cross-entropy of the logits, which holds the
/// softmax; the exported model's output is the logits). Every other layer of the vocabulary
/// trains: convolutions of any window, stride and padding, depthwise convolutions, max and
/// average pools of any window, global average pools, residual blocks (identity and
/// projection shortcuts) and their additions, dropout, flatten and dense layers, with ReLU,
/// ReLU6 or no activation.
pub fn check_trainable(architecture: &Architecture) -> anyhow::Result<()> {
    anyhow::ensure!(
        architecture.is_classifier(),
        "host train trains classifiers; this network's output is values (output:values)"
    );
    for info in architecture.iter() {
        let mut text = String::new();
        tinycnn::text::write_layer(&mut text, &info.layer, false)?;
        anyhow::ensure!(
            info.layer != Layer::Softmax,
            "layer {} ({}, `{text}`): host train does not train a softmax layer: training \
             computes the cross-entropy of the logits, and the model's output is the logits \
             (leave `softmax` out; `host import` runs networks that end in one). It trains \
             every other layer: conv (any window, stride, padding), dw, pool, maxpool, \
             avgpool, gap, residual, add, drop, flatten and dense, with relu, relu6 or linear",
            info.index + 1,
            info.name
        );
    }
    Ok(())
}

/// The padding of `window` on an `input`-shaped map as burn's explicit padding: the core's
/// (TensorFlow's) rule, the smaller half before and the rest after, so a 'same' window with an
/// odd total padding pads more at the bottom and right.
fn explicit_padding(window: Window, input: Shape) -> PaddingConfig2d {
    let (height, width) = window.output(input).unwrap_or((1, 1));
    let (top, left) = window.padding_before(input);
    let total = |output: usize, stride: u8, kernel: u8, input: usize| {
        (output.saturating_sub(1) * usize::from(stride) + usize::from(kernel)).saturating_sub(input)
    };
    let bottom = total(height, window.stride_height, window.height, input.height) - top;
    let right = total(width, window.stride_width, window.width, input.width) - left;
    PaddingConfig2d::Explicit(top, left, bottom, right)
}

/// The activation after a sum.
fn activate<const D: usize>(relu: &Relu, x: Tensor<D>, activation: Activation) -> Tensor<D> {
    match activation {
        Activation::None => x,
        Activation::Relu => relu.forward(x),
        Activation::Relu6 => x.clamp(0.0, 6.0),
    }
}

/// A stage's name: the layer's, with `+relu` or `+relu6` after a sum that has one.
fn with_activation(name: String, activation: Activation) -> String {
    match activation {
        Activation::None => name,
        other => format!("{name}+{}", other.word()),
    }
}

/// A stage's name: the layer's, with `+bn` when it is batch-normalised, then its activation.
fn normalised_name(name: String, batch_norm: Option<usize>, activation: Activation) -> String {
    let name = match batch_norm {
        Some(_) => format!("{name}+bn"),
        None => name,
    };
    with_activation(name, activation)
}

/// `x`, batch-normalised by `batch_norm` when given, then activated: the two as one op of
/// [`fastconv::batch_norm_activation`] when `fused`, else burn's module and ops.
fn normalise_and_activate<const D: usize>(
    relu: &Relu,
    batch_norm: Option<&BatchNorm>,
    x: Tensor<D>,
    activation: Activation,
    fused: bool,
) -> Tensor<D> {
    match batch_norm {
        Some(batch_norm) if fused => fastconv::batch_norm_activation(batch_norm, x, activation),
        Some(batch_norm) => activate(relu, batch_norm.forward(x), activation),
        None => activate(relu, x, activation),
    }
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
        Self::with_network(&TrainNetwork::from(*architecture), device, init)
    }

    /// A freshly initialised network of `network` on `device`, its weights drawn as `init`
    /// says, its biases zero; each batch-normalised layer has no bias and a batch norm after it
    /// (scale 1, offset 0, running mean 0 and variance 1). Seed the device first for a
    /// reproducible initialisation.
    pub fn with_network(network: &TrainNetwork, device: &Device, init: InitScheme) -> Self {
        let architecture = &network.architecture;
        let mut convs = Vec::new();
        let mut dense = Vec::new();
        let mut depthwise = Vec::new();
        let mut projections = Vec::new();
        let mut dropouts = Vec::new();
        let mut batch_norms = Vec::new();
        for info in architecture.iter() {
            let relu_follows = info.activation() == Activation::Relu;
            let normalised = network.is_batch_normalised(info.index);
            // A batch-normalised layer's offset is its batch norm's beta (Keras leaves the
            // bias out too).
            let bias =
                |outputs: usize| (!normalised).then(|| Initializer::Zeros.init([outputs], device));
            if normalised {
                batch_norms.push(
                    BatchNormConfig::new(info.outputs())
                        .with_epsilon(BATCH_NORM_EPSILON)
                        .with_momentum(BATCH_NORM_MOMENTUM)
                        .init(device),
                );
            }
            match info.layer {
                Layer::Conv(conv) => {
                    let window = conv.window;
                    // The square stride-1 windows keep burn's 'same' and 'valid' (equal to the
                    // core's for their odd sides), which the fused blocks recognise.
                    let padding = match window.padding {
                        _ if !window.is_square_stride_one() => explicit_padding(window, info.input),
                        Padding::Same => PaddingConfig2d::Same,
                        Padding::Valid => PaddingConfig2d::Valid,
                    };
                    let kernel = [usize::from(window.height), usize::from(window.width)];
                    let mut layer =
                        Conv2dConfig::new([info.input.channels, info.outputs()], kernel)
                            .with_stride([
                                usize::from(window.stride_height),
                                usize::from(window.stride_width),
                            ])
                            .with_padding(padding)
                            .with_initializer(init.weight_initializer(relu_follows))
                            .init(device);
                    layer.bias = bias(info.outputs());
                    convs.push(layer);
                }
                Layer::Depthwise(layer) => {
                    let window = layer.window;
                    let channels = info.input.channels;
                    let mut layer = Conv2dConfig::new(
                        [channels, info.outputs()],
                        [usize::from(window.height), usize::from(window.width)],
                    )
                    .with_stride([
                        usize::from(window.stride_height),
                        usize::from(window.stride_width),
                    ])
                    .with_groups(channels)
                    .with_padding(explicit_padding(window, info.input))
                    .with_initializer(init.weight_initializer(relu_follows))
                    .init(device);
                    layer.bias = bias(info.outputs());
                    depthwise.push(layer);
                }
                Layer::Residual(Shortcut::Projection { stride, .. }) => {
                    // A 1x1 window with stride S needs no padding: ceil(H / S) outputs read
                    // rows 0, S, 2S, ... of the input.
                    let stride = usize::from(stride.max(1));
                    let mut layer =
                        Conv2dConfig::new([info.input.channels, info.outputs()], [1, 1])
                            .with_stride([stride, stride])
                            .with_padding(PaddingConfig2d::Valid)
                            .with_initializer(init.weight_initializer(false))
                            .init(device);
                    layer.bias = Some(Initializer::Zeros.init([info.outputs()], device));
                    projections.push(layer);
                }
                Layer::Dense(_) => {
                    let mut layer = LinearConfig::new(info.input.values(), info.outputs())
                        .with_initializer(init.weight_initializer(relu_follows))
                        .init(device);
                    layer.bias = bias(info.outputs());
                    dense.push(layer);
                }
                Layer::Dropout(thousandths) => {
                    dropouts.push(DropoutConfig::new(f64::from(thousandths) / 1000.0).init());
                }
                Layer::MaxPool
                | Layer::Flatten
                | Layer::Pool(_)
                | Layer::GlobalAveragePool
                | Layer::Residual(Shortcut::Identity)
                | Layer::Add(_) => {}
                Layer::Softmax => {
                    unreachable!("`check_trainable` refuses a softmax before a Net is built")
                }
            }
        }
        let net = Self {
            convs,
            dense,
            depthwise,
            projections,
            batch_norms,
            dropouts,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            relu: Relu::new(),
            network: network.clone(),
        };
        // burn draws a parameter's initial value lazily, on its first use, from the device's
        // generator as it is then. Drawing them all now, in a fixed order (convolutions, dense
        // layers, depthwise convolutions, projections), makes the weights a function of the
        // seed set before this call, whatever the caller draws next (dropout masks, for one,
        // come from the same generator).
        for conv in &net.convs {
            let _ = conv.weight.val();
        }
        for dense in &net.dense {
            let _ = dense.weight.val();
        }
        for conv in net.depthwise.iter().chain(&net.projections) {
            let _ = conv.weight.val();
        }
        net
    }

    /// The description this network was built from (as the core runs it: batch norms folded).
    pub fn architecture(&self) -> &Architecture {
        &self.network.architecture
    }

    /// The description this network was built from, with its batch-normalised layers.
    pub fn network(&self) -> &TrainNetwork {
        &self.network
    }

    /// Folds the running statistics' pending updates into them. burn's batch norm keeps a
    /// training step's new running mean and variance aside until the next step reads them, and
    /// a record holds only the folded ones: call this before writing one (a checkpoint resumed
    /// from it must hold every step's statistics).
    pub fn sync_batch_statistics(&self) {
        for batch_norm in &self.batch_norms {
            let _ = Module::valid(&batch_norm.running_mean);
            let _ = Module::valid(&batch_norm.running_var);
        }
    }

    /// A copy whose batch norms normalise with their running statistics and leave them as they
    /// are, even on an autodiff device (dropout is unchanged).
    pub fn with_batch_norms_frozen(&self) -> Self {
        let mut copy = self.clone();
        for batch_norm in &mut copy.batch_norms {
            batch_norm.training = batch_norm.training.clone().with_value(false);
        }
        copy
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
    /// [`ConvBlocks::Fused`] a ReLU convolution of a square, odd, stride-1 window followed by a
    /// 2x2 max-pool (and a dropout after it) is one stage. Dropout between a convolution and
    /// its pool keeps them apart: it would be applied before the maximum, which the fused op
    /// does not compute.
    pub fn stages(&self, blocks: ConvBlocks) -> Vec<Stage> {
        let infos: Vec<_> = self.architecture().iter().collect();
        let (mut convs, mut dense, mut dropouts) = (0, 0, 0);
        let (mut depthwise, mut projections, mut batch_norms) = (0, 0, 0);
        let mut stages = Vec::new();
        let mut index = 0;
        while let Some(info) = infos.get(index) {
            index += 1;
            let name = info.name.to_string();
            let activation = info.activation();
            let batch_norm = self.network.is_batch_normalised(info.index).then(|| {
                batch_norms += 1;
                batch_norms - 1
            });
            let (name, operation) = match info.layer {
                Layer::Conv(layer) => {
                    let conv = convs;
                    convs += 1;
                    let pool_follows = infos
                        .get(index)
                        .is_some_and(|next| next.layer == Layer::MaxPool);
                    // The fused op is tested on the tutorial's windows (square, odd, stride
                    // 1); any other window runs through burn's ops.
                    if blocks == ConvBlocks::Fused
                        && batch_norm.is_none()
                        && activation == Activation::Relu
                        && pool_follows
                        && layer.window.is_square_stride_one()
                    {
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
                        (
                            normalised_name(name, batch_norm, activation),
                            Operation::Conv {
                                conv,
                                batch_norm,
                                activation,
                                fused: blocks == ConvBlocks::Fused,
                            },
                        )
                    }
                }
                Layer::Depthwise(_) => {
                    depthwise += 1;
                    (
                        normalised_name(name, batch_norm, activation),
                        Operation::Depthwise {
                            depthwise: depthwise - 1,
                            batch_norm,
                            activation,
                            fused: blocks == ConvBlocks::Fused,
                        },
                    )
                }
                Layer::MaxPool => (name, Operation::Pool),
                Layer::Pool(pool) => (name, Operation::WindowPool(pool)),
                Layer::GlobalAveragePool => (
                    name,
                    Operation::GlobalAveragePool {
                        fused: blocks == ConvBlocks::Fused,
                    },
                ),
                Layer::Residual(shortcut) => {
                    let projection = shortcut.projection().map(|_| {
                        projections += 1;
                        projections - 1
                    });
                    (
                        name,
                        Operation::Residual {
                            projection,
                            fused: blocks == ConvBlocks::Fused,
                        },
                    )
                }
                Layer::Add(activation) => (
                    with_activation(name, activation),
                    Operation::Add(activation),
                ),
                Layer::Dropout(_) => {
                    dropouts += 1;
                    (
                        name,
                        Operation::Dropout {
                            dropout: dropouts - 1,
                            fused: blocks == ConvBlocks::Fused,
                        },
                    )
                }
                Layer::Flatten => (name, Operation::Flatten),
                Layer::Dense(_) => {
                    dense += 1;
                    (
                        normalised_name(name, batch_norm, activation),
                        Operation::Dense {
                            dense: dense - 1,
                            batch_norm,
                            activation,
                            fused: blocks == ConvBlocks::Fused,
                        },
                    )
                }
                Layer::Softmax => {
                    unreachable!("`check_trainable` refuses a softmax before a Net is built")
                }
            };
            stages.push(Stage { name, operation });
        }
        stages
    }

    /// Runs one stage of [`stages`](Self::stages) on `x`.
    pub fn run_stage(&self, stage: &Stage, x: Values) -> Values {
        let relu = &self.relu;
        match stage.operation {
            Operation::FusedBlock { conv, dropout } => x.map_with(|map| {
                fastconv::conv_relu_pool_dropout(
                    &self.convs[conv],
                    relu,
                    &self.pool,
                    dropout.map(|index| &self.dropouts[index]),
                    map,
                )
            }),
            Operation::Conv {
                conv,
                batch_norm,
                activation,
                fused,
            } => x.map_with(|map| {
                let layer = &self.convs[conv];
                let y = if fused {
                    fastconv::conv2d(layer, map)
                } else {
                    layer.forward(map)
                };
                let batch_norm = batch_norm.map(|i| &self.batch_norms[i]);
                normalise_and_activate(relu, batch_norm, y, activation, fused)
            }),
            Operation::Depthwise {
                depthwise,
                batch_norm,
                activation,
                fused,
            } => x.map_with(|map| {
                let layer = &self.depthwise[depthwise];
                let y = if fused {
                    fastconv::depthwise_conv(layer, map)
                } else {
                    layer.forward(map)
                };
                let batch_norm = batch_norm.map(|i| &self.batch_norms[i]);
                normalise_and_activate(relu, batch_norm, y, activation, fused)
            }),
            Operation::Pool => x.map_with(|map| self.pool.forward(map)),
            Operation::WindowPool(pool) => x.map_with(|map| window_pool(pool, map)),
            Operation::GlobalAveragePool { fused } => x.map_with(|map| {
                if fused {
                    fastconv::global_average_pool(map)
                } else {
                    map.mean_dim(3).mean_dim(2)
                }
            }),
            Operation::Residual { projection, fused } => {
                let main = x.into_map();
                let shortcut = match projection.map(|index| &self.projections[index]) {
                    Some(layer) if fused => fastconv::conv2d(layer, main.clone()),
                    Some(layer) => layer.forward(main.clone()),
                    None => main.clone(),
                };
                Values::Block {
                    main,
                    shortcut: Box::new(shortcut),
                }
            }
            Operation::Add(activation) => match x {
                Values::Block { main, shortcut } => {
                    Values::Map(activate(relu, main + *shortcut, activation))
                }
                other => unreachable!(
                    "{}: an add outside a residual block ({other:?}): the description is valid",
                    stage.name
                ),
            },
            Operation::Dropout { dropout, fused } => {
                let layer = &self.dropouts[dropout];
                match x {
                    // A vector's dropout costs next to nothing either way; burn's masks keep
                    // the networks trained before the fused masks existed reproducible.
                    Values::Vector(vector) => Values::Vector(layer.forward(vector)),
                    map if fused => map.map_with(|map| fastconv::dropout(layer, map)),
                    map => map.map_with(|map| layer.forward(map)),
                }
            }
            Operation::Flatten => Values::Vector(x.into_vector()),
            Operation::Dense {
                dense,
                batch_norm,
                activation,
                fused,
            } => {
                let y = self.dense[dense].forward(x.into_vector());
                let batch_norm = batch_norm.map(|i| &self.batch_norms[i]);
                Values::Vector(normalise_and_activate(
                    relu, batch_norm, y, activation, fused,
                ))
            }
        }
    }

    /// This network with every weight and bias replaced by `weights` (burn's layouts, as
    /// [`Net::weights`] returns them), on `device`. Fails if a shape differs.
    ///
    /// A network with batch norms is refused: `weights` are what the core runs, the batch norms
    /// folded into them, and cannot be unfolded; load them into the network without batch
    /// norms (`Net::new(architecture, ..)`), which computes the same function.
    pub fn with_weights(mut self, weights: &NetWeights, device: &Device) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.batch_norms.is_empty(),
            "weights with batch normalisation folded in go into a network without batch norms \
             (`{}`), not `{}`",
            self.network.architecture,
            self.network
        );
        let counts = |w: &NetWeights| {
            [
                w.convs.len(),
                w.dense.len(),
                w.depthwise.len(),
                w.projections.len(),
            ]
        };
        let have = [
            self.convs.len(),
            self.dense.len(),
            self.depthwise.len(),
            self.projections.len(),
        ];
        anyhow::ensure!(
            counts(weights) == have,
            "{:?} convolutions, dense layers, depthwise convolutions and projections given, \
             the network has {have:?}",
            counts(weights)
        );
        let convs = self
            .convs
            .iter_mut()
            .zip(&weights.convs)
            .chain(self.depthwise.iter_mut().zip(&weights.depthwise))
            .chain(self.projections.iter_mut().zip(&weights.projections));
        for (layer, stored) in convs {
            let shape = layer.weight.dims();
            anyhow::ensure!(
                shape == stored.shape(),
                "convolution weights {shape:?} do not match the stored {:?}",
                stored.shape()
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

    /// A copy of every weight and bias as `f32`, in burn's layouts (see the module docs), as the
    /// core runs them: each batch norm folded into the layer before it, as TensorFlow's
    /// converter folds them, with its running statistics (what evaluation normalises with).
    /// Per output channel `o`: `scale = gamma / sqrt(running_var + epsilon)`, the layer's
    /// weights into `o` times `scale`, its bias `beta - running_mean * scale`.
    pub fn weights(&self) -> NetWeights {
        let mut weights = NetWeights {
            convs: self.convs.iter().map(ConvWeights::from_layer).collect(),
            dense: self.dense.iter().map(DenseWeights::from_layer).collect(),
            depthwise: self.depthwise.iter().map(ConvWeights::from_layer).collect(),
            projections: self
                .projections
                .iter()
                .map(ConvWeights::from_layer)
                .collect(),
        };
        let (mut convs, mut depthwise, mut dense, mut batch_norms) = (0, 0, 0, 0);
        for info in self.architecture().iter() {
            let normalised = self.network.is_batch_normalised(info.index);
            let fold = normalised.then(|| {
                batch_norms += 1;
                FoldedBatchNorm::of(&self.batch_norms[batch_norms - 1])
            });
            match info.layer {
                Layer::Conv(_) => {
                    if let Some(fold) = fold {
                        fold.into_conv(&mut weights.convs[convs]);
                    }
                    convs += 1;
                }
                Layer::Depthwise(_) => {
                    if let Some(fold) = fold {
                        fold.into_conv(&mut weights.depthwise[depthwise]);
                    }
                    depthwise += 1;
                }
                Layer::Dense(_) => {
                    if let Some(fold) = fold {
                        fold.into_dense(&mut weights.dense[dense]);
                    }
                    dense += 1;
                }
                _ => {}
            }
        }
        weights
    }
}

/// A max or average pool of `pool`'s window on `map`, with the core's padding: taps outside
/// the map are left out (burn pads a max pool with -inf, and an average divides by the taps
/// inside the map only, `count_include_pad` off).
fn window_pool(pool: Pool, map: Tensor<4>) -> Tensor<4> {
    let [_, channels, height, width] = map.dims();
    let window = pool.window;
    let padding = explicit_padding(window, Shape::new(height, width, channels));
    let kernel = [usize::from(window.height), usize::from(window.width)];
    let strides = [
        usize::from(window.stride_height),
        usize::from(window.stride_width),
    ];
    match pool.kind {
        PoolKind::Max => MaxPool2dConfig::new(kernel)
            .with_strides(strides)
            .with_padding(padding)
            .init()
            .forward(map),
        PoolKind::Average => AvgPool2dConfig::new(kernel)
            .with_strides(strides)
            .with_padding(padding)
            .with_count_include_pad(false)
            .init()
            .forward(map),
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

/// A batch norm in evaluation mode as a scale and an offset per channel:
/// `y = x * scale + offset`, `scale = gamma / sqrt(running_var + epsilon)`,
/// `offset = beta - running_mean * scale` (computed in f64, rounded once).
#[derive(Clone, Debug, PartialEq)]
struct FoldedBatchNorm {
    scale: Vec<f32>,
    offset: Vec<f32>,
}

impl FoldedBatchNorm {
    fn of(batch_norm: &BatchNorm) -> Self {
        // `valid` folds the last step's pending update into the running statistics first.
        let running = |state: &burn::module::RunningState<Tensor<1>>| {
            tensor_to_vec(Module::valid(state).value().into_data())
        };
        Self::new(
            &param_to_vec(&batch_norm.gamma),
            &param_to_vec(&batch_norm.beta),
            &running(&batch_norm.running_mean),
            &running(&batch_norm.running_var),
            batch_norm.epsilon,
        )
    }

    fn new(gamma: &[f32], beta: &[f32], mean: &[f32], variance: &[f32], epsilon: f64) -> Self {
        let (mut scale, mut offset) = (Vec::new(), Vec::new());
        for (((&gamma, &beta), &mean), &variance) in gamma.iter().zip(beta).zip(mean).zip(variance)
        {
            let channel_scale = f64::from(gamma) / (f64::from(variance) + epsilon).sqrt();
            scale.push(channel_scale as f32);
            offset.push((f64::from(beta) - f64::from(mean) * channel_scale) as f32);
        }
        Self { scale, offset }
    }

    /// Into a convolution's (or depthwise convolution's) weights, whose output channel is the
    /// first axis; its bias (zero without one) is scaled and offset too.
    fn into_conv(self, conv: &mut ConvWeights) {
        let per_output = conv.weight.len() / conv.out_channels.max(1);
        for (weights, &scale) in conv
            .weight
            .chunks_exact_mut(per_output.max(1))
            .zip(&self.scale)
        {
            weights.iter_mut().for_each(|w| *w *= scale);
        }
        self.into_bias(&mut conv.bias);
    }

    /// Into a dense layer's `[in][out]` weights: output `o` is the column.
    fn into_dense(self, dense: &mut DenseWeights) {
        for row in dense.weight.chunks_exact_mut(dense.outputs.max(1)) {
            row.iter_mut()
                .zip(&self.scale)
                .for_each(|(w, &scale)| *w *= scale);
        }
        self.into_bias(&mut dense.bias);
    }

    fn into_bias(self, bias: &mut [f32]) {
        for ((b, scale), offset) in bias.iter_mut().zip(self.scale).zip(self.offset) {
            *b = *b * scale + offset;
        }
    }
}

/// Weights of one convolution, `[out][in][kh][kw]`; of a depthwise convolution (burn's
/// convolution with one group per input channel) `[channels x multiplier][1][kh][kw]`, output
/// channel `o` reading input channel `o / multiplier`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvWeights {
    /// Output channels.
    pub out_channels: usize,
    /// Input channels each output reads: all of them, or 1 for a depthwise convolution.
    pub in_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// `out * in * kh * kw` values, OIHW.
    pub weight: Vec<f32>,
    /// One bias per output channel.
    pub bias: Vec<f32>,
}

impl ConvWeights {
    /// burn's shape of the weights, `[out, in, kh, kw]`.
    pub fn shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels,
            self.kernel[0],
            self.kernel[1],
        ]
    }

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
    /// The depthwise convolutions, in order.
    pub depthwise: Vec<ConvWeights>,
    /// The residual blocks' projections (1x1 convolutions), in order.
    pub projections: Vec<ConvWeights>,
}

impl NetWeights {
    /// Total number of values.
    pub fn parameter_count(&self) -> usize {
        let convs = self
            .convs
            .iter()
            .chain(&self.depthwise)
            .chain(&self.projections)
            .map(|c| c.weight.len() + c.bias.len());
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
    fn explicit_padding_is_tensorflows() {
        let window = |height, width, stride_height, stride_width, padding| Window {
            padding,
            height,
            width,
            stride_height,
            stride_width,
        };
        // 3x3 stride 2 'same' on 16x14: 8x7 outputs need 1 row and 1 column, after.
        assert_eq!(
            explicit_padding(window(3, 3, 2, 2, Padding::Same), Shape::new(16, 14, 1)),
            PaddingConfig2d::Explicit(0, 0, 1, 1)
        );
        // An even side pads more after; an odd one the same on both sides.
        assert_eq!(
            explicit_padding(window(2, 3, 1, 1, Padding::Same), Shape::new(8, 7, 1)),
            PaddingConfig2d::Explicit(0, 1, 1, 1)
        );
        // 3x3 stride 2 on 15: 8 outputs need 2, one on each side.
        assert_eq!(
            explicit_padding(window(3, 3, 2, 2, Padding::Same), Shape::new(15, 15, 1)),
            PaddingConfig2d::Explicit(1, 1, 1, 1)
        );
        assert_eq!(
            explicit_padding(window(3, 2, 2, 1, Padding::Valid), Shape::new(6, 6, 1)),
            PaddingConfig2d::Explicit(0, 0, 0, 0)
        );
    }

    #[test]
    fn the_fields_layers_build_and_name_their_stages() {
        let _turn = crate::seeded_turn();
        let device = device();
        device.seed(5);
        let architecture = tinycnn::text::parse(
            "input:12x10x2 conv3x3:4:s2:relu6 residual dw3x3:m2 conv1x1:4:linear add \
             residual:6:s2 dw3x3:s2 conv1x1:6:linear add:relu6 avgpool2x2:s1:same gap flatten \
             dense:5",
            REFERENCE.input(),
        )
        .unwrap();
        check_trainable(&architecture).unwrap();
        let model = Net::new(&architecture, &device);
        assert_eq!(model.num_params(), architecture.parameters());
        assert_eq!(model.weights().parameter_count(), architecture.parameters());
        let names: Vec<String> = model
            .stages(ConvBlocks::Fused)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            [
                "conv1+relu6",
                "residual1",
                "dw1+relu",
                "conv2",
                "add1+relu",
                "residual2",
                "dw2+relu",
                "conv3",
                "add2+relu6",
                "avgpool1",
                "gap1",
                "flatten",
                "dense1"
            ]
        );
        let pixels: Vec<u8> = (0..3 * 240).map(|i| (i * 11 % 256) as u8).collect();
        let logits = infer_logits(&model, &pixels, &device);
        assert_eq!(logits.len(), 3 * 5);
        assert!(logits.iter().all(|v| v.is_finite()));
        // Only the tutorial's windows fuse with their pool.
        let windows = tinycnn::text::parse(
            "input:13x12x1 conv2x2:4:valid pool conv3x3:6 pool flatten dense:5",
            REFERENCE.input(),
        )
        .unwrap();
        let names: Vec<String> = Net::new(&windows, &device)
            .stages(ConvBlocks::Fused)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            ["conv1+relu", "pool1", "conv2 block", "flatten", "dense1"]
        );
        // A softmax is refused, with what to do.
        let softmax =
            tinycnn::text::parse("input:4x4x1 flatten dense:3 softmax", REFERENCE.input()).unwrap();
        let message = check_trainable(&softmax).unwrap_err().to_string();
        assert!(message.contains("leave `softmax` out"), "{message}");
    }

    #[test]
    fn batch_norms_fold_into_the_layer_before_them() {
        // epsilon 1: variances 3 and 0 give square roots 2 and 1, scales 1.5 and 2, offsets
        // 1 - 0.5 * 1.5 and -1 - 2 * 2.
        let fold = FoldedBatchNorm::new(&[3.0, 2.0], &[1.0, -1.0], &[0.5, 2.0], &[3.0, 0.0], 1.0);
        assert_eq!(fold.scale, [1.5, 2.0]);
        assert_eq!(fold.offset, [0.25, -5.0]);
        // A convolution's output channel is its first axis (2 outputs of 1x2 kernels).
        let mut conv = ConvWeights {
            out_channels: 2,
            in_channels: 1,
            kernel: [1, 2],
            weight: vec![1.0, 2.0, 3.0, 4.0],
            bias: vec![0.0, 0.0],
        };
        fold.clone().into_conv(&mut conv);
        assert_eq!(conv.weight, [1.5, 3.0, 6.0, 8.0]);
        assert_eq!(conv.bias, [0.25, -5.0]);
        // A dense layer's is its column ([in][out]).
        let mut dense = DenseWeights {
            inputs: 2,
            outputs: 2,
            weight: vec![1.0, 2.0, 3.0, 4.0],
            bias: vec![0.0, 0.0],
        };
        fold.into_dense(&mut dense);
        assert_eq!(dense.weight, [1.5, 4.0, 4.5, 8.0]);
        assert_eq!(dense.bias, [0.25, -5.0]);
    }

    #[test]
    fn batch_normalised_layers_have_no_bias_and_never_fuse() {
        let _turn = crate::seeded_turn();
        let device = device();
        device.seed(5);
        let network = TrainNetwork::parse(
            "input:8x8x1 conv3x3:4:bn pool conv3x3:4 pool flatten dense:6:bn dense:3",
            REFERENCE.input(),
        )
        .unwrap();
        let model = Net::with_network(&network, &device, InitScheme::default());
        assert_eq!(model.batch_norms.len(), 2);
        assert!(model.convs[0].bias.is_none() && model.convs[1].bias.is_some());
        assert!(model.dense[0].bias.is_none() && model.dense[1].bias.is_some());
        let names: Vec<String> = model
            .stages(ConvBlocks::Fused)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            [
                "conv1+bn+relu",
                "pool1",
                "conv2 block",
                "flatten",
                "dense1+bn+relu",
                "dense2"
            ]
        );
        // Fresh batch norms (scale 1, offset 0, mean 0, variance 1) fold into a scale of
        // 1 / sqrt(1 + epsilon), and the network without them computes the same from the
        // folded weights; folded weights do not go back into batch norms.
        let weights = model.weights();
        let plain = Net::new(&network.architecture, &device)
            .with_weights(&weights, &device)
            .unwrap();
        let pixels: Vec<u8> = (0..2 * 64).map(|i| (i * 29 % 256) as u8).collect();
        let (a, b) = (
            infer_logits(&model, &pixels, &device),
            infer_logits(&plain, &pixels, &device),
        );
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let message = model
            .with_weights(&weights, &device)
            .unwrap_err()
            .to_string();
        assert!(message.contains("without batch norms"), "{message}");
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
