//! The burn 0.22 backend extension: `conv_relu_pool`, the [`super::kernels`] as one burn op with
//! its own backward pass, on the Flex backend (plain and under autodiff), and likewise
//! `depthwise_conv` ([`super::depthwise`]), `pointwise_conv` ([`super::pointwise`]),
//! `batch_norm_activation` ([`super::batchnorm`]), `global_average_pool` ([`super::pool`]) and
//! `dropout` (the fused block's masks); and
//! `probe`, an
//! identity op whose backward records a timestamp, with which `host bench train` times the
//! backward pass layer by layer inside the real autodiff graph.
//!
//! How burn 0.22.1 (feature `extension`) takes a custom op:
//! 1. `#[backend_extension(Flex, Autodiff)] trait FastConvBackend: Backend` declares the op; the
//!    macro implements it for `Dispatch` (the backend behind `Tensor<D>`), routing to `Flex` or
//!    `Autodiff<Flex, C>` by the tensor's runtime kind. Any other backend panics, which is why
//!    [`super::conv_relu_pool_dropout`] checks the device before it calls the op.
//! 2. `impl FastConvBackend for Flex`: the forward kernel on `FlexTensor`s.
//! 3. `impl<B: ConvKernels, C: CheckpointStrategy> FastConvBackend for Autodiff<B, C>`: runs the
//!    inner forward and registers a `Backward` node whose state holds what the backward needs.
//! 4. `Tensor::from_dispatch(<Dispatch as FastConvBackend>::op(t.into_dispatch(), ...))`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{
    AutodiffBackend, Backend, Bytes, DType, Dispatch, Flex, TensorMetadata, backend_extension,
};
use burn::tensor::{Shape, Tensor};
use tinycnn::arch::Activation;

use super::batchnorm::{self, NormShape, Statistics};
use super::depthwise::{self, DepthwiseShape};
use super::kernels::{self, BackwardAlgo, BackwardInputs, ConvShape, DropoutMask, PlainConvShape};
use super::pointwise::{self, PointwiseShape};
use super::pool;
use crate::bench::usage;

/// Kernels the autodiff wrapper needs from the inner backend. Not routed through `Dispatch`:
/// only `Autodiff<B, C>` calls them, with `B` already concrete.
pub trait ConvKernels: Backend {
    /// Forward, returning the pooled output and the mask of the window maxima and of the values
    /// the ReLU or dropout zeroed (a `u8` tensor, see [`kernels::conv_relu_pool_forward`]).
    fn conv_relu_pool_fwd(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        pad: usize,
        dropout: Option<DropoutMask>,
    ) -> (FloatTensor<Self>, IntTensor<Self>);

    /// Gradients of x (when `want_x_grad`), weight and bias.
    fn conv_relu_pool_bwd(
        saved: SavedForward<Self>,
        grad: FloatTensor<Self>,
        want_x_grad: bool,
    ) -> ConvGradTensors<Self>;

    /// The depthwise convolution of [`FastConvBackend::depthwise_conv`].
    fn depthwise_fwd(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: DepthwiseGeometry,
    ) -> FloatTensor<Self>;

    /// Its gradients of x (when `want_x_grad`), weight and bias.
    fn depthwise_bwd(
        saved: SavedDepthwise<Self>,
        grad: FloatTensor<Self>,
        want_x_grad: bool,
    ) -> ConvGradTensors<Self>;

    /// The convolution of [`FastConvBackend::plain_conv`].
    fn plain_conv_fwd(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;

    /// Its gradients of x (when `want_x_grad`), weight and bias.
    fn plain_conv_bwd(
        saved: SavedConv<Self>,
        grad: FloatTensor<Self>,
        want_x_grad: bool,
    ) -> ConvGradTensors<Self>;

    /// The 1x1 convolution of [`FastConvBackend::pointwise_conv`].
    fn pointwise_fwd(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Its gradients of x (when `want_x_grad`), weight and bias.
    fn pointwise_bwd(
        saved: SavedPointwise<Self>,
        grad: FloatTensor<Self>,
        want_x_grad: bool,
    ) -> ConvGradTensors<Self>;

    /// The global average pool of [`FastConvBackend::global_average_pool`].
    fn global_average_fwd(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Its input's gradient, `dims` the input's shape.
    fn global_average_bwd(grad: FloatTensor<Self>, dims: [usize; 4]) -> FloatTensor<Self>;

    /// Inverted dropout with `mask`'s decisions, one stream per image (index along the first
    /// axis): the output of [`FastConvBackend::dropout`], and the input's gradient from the
    /// output's.
    fn dropout_apply(x: FloatTensor<Self>, mask: DropoutMask) -> FloatTensor<Self>;

    /// The training batch norm and activation of [`FastConvBackend::batch_norm_activation`].
    fn batch_norm_fwd(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> BatchNormOutput<Self>;

    /// Its gradients of x (when `want_x_grad`), gamma (as `weight`) and beta (as `bias`).
    fn batch_norm_bwd(
        saved: SavedBatchNorm<Self>,
        grad: FloatTensor<Self>,
        want_x_grad: bool,
    ) -> ConvGradTensors<Self>;
}

/// What a pointwise convolution's forward keeps for its backward pass.
#[derive(Clone, Debug)]
pub struct SavedPointwise<B: Backend> {
    /// The input.
    pub x: FloatTensor<B>,
    /// The weight.
    pub weight: FloatTensor<B>,
}

/// What a training batch norm's forward gives: its output, the batch's statistics as tensors
/// (for the running statistics) and as applied (for the backward pass).
#[derive(Debug)]
pub struct BatchNormOutput<B: Backend> {
    /// The normalised, scaled, shifted and activated input.
    pub output: FloatTensor<B>,
    /// The batch mean, `[C]`.
    pub mean: FloatTensor<B>,
    /// The biased batch variance, `[C]`, without epsilon.
    pub variance: FloatTensor<B>,
    /// The same statistics, and the inverse standard deviations.
    pub statistics: Statistics,
}

/// What a training batch norm's forward keeps for its backward pass: its inputs (the normalised
/// values and the activation's mask are recomputed from them) and the statistics it applied.
#[derive(Clone, Debug)]
pub struct SavedBatchNorm<B: Backend> {
    /// The input.
    pub x: FloatTensor<B>,
    /// The scale.
    pub gamma: FloatTensor<B>,
    /// The offset.
    pub beta: FloatTensor<B>,
    /// The batch's statistics.
    pub statistics: Statistics,
    /// The activation after the batch norm.
    pub activation: Activation,
}

/// A plain convolution's stride and zero padding, `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Rows and columns between two windows.
    pub stride: [usize; 2],
    /// Zeros before and after the input: top, left, bottom, right.
    pub padding: [usize; 4],
}

/// What a plain convolution's forward keeps for its backward pass.
#[derive(Clone, Debug)]
pub struct SavedConv<B: Backend> {
    /// The input.
    pub x: FloatTensor<B>,
    /// The weight.
    pub weight: FloatTensor<B>,
    /// Stride and padding.
    pub geometry: ConvGeometry,
}

/// A depthwise convolution's stride and zero padding, `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthwiseGeometry {
    /// Rows and columns between two windows.
    pub stride: [usize; 2],
    /// Zeros before and after the input: top, left, bottom, right.
    pub padding: [usize; 4],
}

/// What a depthwise convolution's forward keeps for its backward pass.
#[derive(Clone, Debug)]
pub struct SavedDepthwise<B: Backend> {
    /// The input.
    pub x: FloatTensor<B>,
    /// The weight.
    pub weight: FloatTensor<B>,
    /// Stride and padding.
    pub geometry: DepthwiseGeometry,
}

/// What the forward keeps for the backward pass (cloning shares the tensors' buffers).
#[derive(Clone, Debug)]
pub struct SavedForward<B: Backend> {
    /// The input.
    pub x: FloatTensor<B>,
    /// The weight.
    pub weight: FloatTensor<B>,
    /// The mask returned by the forward.
    pub argmax: IntTensor<B>,
    /// Zero padding on each side.
    pub pad: usize,
    /// Scale of the values dropout kept (1 without dropout).
    pub grad_scale: f32,
}

/// Gradients of the fused op's inputs, as backend tensors.
#[derive(Debug)]
pub struct ConvGradTensors<B: Backend> {
    /// Of the input, when asked for.
    pub x: Option<FloatTensor<B>>,
    /// Of the weight.
    pub weight: FloatTensor<B>,
    /// Of the bias.
    pub bias: FloatTensor<B>,
}

/// The fused op and the probe, as a burn backend extension (see the module docs).
#[backend_extension(Flex, Autodiff)]
pub trait FastConvBackend: Backend {
    /// `dropout(max_pool2d(relu(conv2d(x, weight, bias, stride 1, padding pad)), 2, 2))`;
    /// `drop_prob` 0 means no dropout, `seed` picks the dropout mask.
    fn conv_relu_pool(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        pad: usize,
        drop_prob: f64,
        seed: u64,
    ) -> FloatTensor<Self>;

    /// `conv2d(x, weight, bias)` with one group, no dilation, `geometry`'s stride and padding:
    /// the kernels of [`super::kernels::conv_forward`].
    fn plain_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;

    /// Identity; under autodiff its backward records `id` and the time in [`PROBE_STAMPS`].
    fn probe(x: FloatTensor<Self>, id: usize) -> FloatTensor<Self>;

    /// `conv2d(x, weight, bias)` with one group per input channel (`weight` `[C x M][1][kh]
    /// [kw]`), `geometry`'s stride and padding: the kernels of [`super::depthwise`].
    fn depthwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: DepthwiseGeometry,
    ) -> FloatTensor<Self>;

    /// `conv2d(x, weight, bias)` for a 1x1 kernel, stride 1, no padding (`weight` `[Cout][Cin]
    /// [1][1]`): the kernels of [`super::pointwise`].
    fn pointwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The mean of each plane of `x` `[N, C, H, W]`, as `[N, C, 1, 1]`: the kernels of
    /// [`super::pool`].
    fn global_average_pool(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Inverted dropout of `x` (any rank, one mask stream per image): each value kept with
    /// probability `1 - drop_prob` and scaled by `1 / (1 - drop_prob)`, decided from `seed` as
    /// the fused block decides its own.
    fn dropout(x: FloatTensor<Self>, drop_prob: f64, seed: u64) -> FloatTensor<Self>;

    /// `activation(batch_norm(x))` normalised with the batch's own statistics (`x` `[N, C,
    /// ...]`, `gamma` and `beta` `[C]`), and those statistics: the output, the mean and the
    /// biased variance (both `[C]` and, under autodiff, constants), as burn's
    /// `batch_norm_train` returns them. The kernels of [`super::batchnorm`].
    fn batch_norm_activation(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// When the backward pass reached a [`probe`]: wall clock and process CPU time.
#[derive(Clone, Copy, Debug)]
pub struct ProbeStamp {
    /// The `id` given to [`probe`].
    pub id: usize,
    /// Wall clock.
    pub wall: Instant,
    /// CPU time of the whole process (all threads), where the platform reports it.
    pub cpu: Option<Duration>,
}

/// Stamps recorded by [`probe`] nodes, in the order the backward pass reached them. A global:
/// a backward node has no other way out than the gradients. Whoever reads it also clears it.
pub static PROBE_STAMPS: Mutex<Vec<ProbeStamp>> = Mutex::new(Vec::new());

fn shape_of(x: &FlexTensor, weight: &FlexTensor, pad: usize) -> ConvShape {
    let xs = x.shape();
    let ws = weight.shape();
    assert_eq!(xs.num_dims(), 4, "conv_relu_pool: x must be [N, C, H, W]");
    assert_eq!(
        ws.num_dims(),
        4,
        "conv_relu_pool: weight must be [Cout, Cin, kh, kw]"
    );
    assert_eq!(xs[1], ws[1], "conv_relu_pool: channel mismatch");
    ConvShape {
        batch: xs[0],
        c_in: xs[1],
        h: xs[2],
        w: xs[3],
        c_out: ws[0],
        kh: ws[2],
        kw: ws[3],
        pad,
    }
}

/// The tensor itself when it is dense f32 (the usual case, no copy); otherwise a contiguous f32
/// copy.
fn dense_f32(t: FlexTensor) -> FlexTensor {
    let t = if t.dtype() == DType::F32 {
        t
    } else {
        Flex::float_cast(t, burn::backend::FloatDType::F32)
    };
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// [`dense_f32`], and its storage holds nothing but its values, in order (not a view into a
/// larger buffer), so that writing the storage writes the tensor.
fn owned_f32(t: FlexTensor) -> FlexTensor {
    let t = dense_f32(t);
    let count = t.shape().num_elements();
    if t.layout().contiguous_offsets() == Some((0, count)) && t.storage::<f32>().len() == count {
        t
    } else {
        t.to_contiguous()
    }
}

fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .unwrap_or_else(|| unreachable!("dense_f32 made it a dense f32 tensor"))
}

fn flex_f32(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(shape)),
        DType::F32,
    )
}

fn depthwise_shape(
    x: &FlexTensor,
    weight: &FlexTensor,
    geometry: DepthwiseGeometry,
) -> DepthwiseShape {
    let xs = x.shape();
    let ws = weight.shape();
    assert_eq!(xs.num_dims(), 4, "depthwise_conv: x must be [N, C, H, W]");
    assert_eq!(
        ws.num_dims(),
        4,
        "depthwise_conv: weight must be [C x M, 1, kh, kw]"
    );
    assert_eq!(ws[1], 1, "depthwise_conv: one input channel per group");
    let (channels, outputs) = (xs[1], ws[0]);
    assert!(
        channels > 0 && outputs % channels == 0,
        "depthwise_conv: {outputs} outputs for {channels} channels"
    );
    let [top, left, bottom, right] = geometry.padding;
    let [stride_height, stride_width] = geometry.stride;
    let side = output_side;
    let shape = DepthwiseShape {
        batch: xs[0],
        channels,
        multiplier: outputs / channels,
        height: xs[2],
        width: xs[3],
        kernel_height: ws[2],
        kernel_width: ws[3],
        stride_height,
        stride_width,
        pad_top: top,
        pad_left: left,
        out_height: side(xs[2], top, bottom, ws[2], stride_height),
        out_width: side(xs[3], left, right, ws[3], stride_width),
    };
    assert!(shape.is_consistent(), "depthwise_conv: {shape:?}");
    shape
}

/// Output rows or columns of a window of `kernel` moving by `stride` over `size` values with
/// `before` and `after` zeros around them.
fn output_side(size: usize, before: usize, after: usize, kernel: usize, stride: usize) -> usize {
    (size + before + after)
        .checked_sub(kernel)
        .map_or(0, |room| room / stride.max(1) + 1)
}

fn pointwise_shape(x: &FlexTensor, weight: &FlexTensor) -> PointwiseShape {
    let xs = x.shape();
    let ws = weight.shape();
    assert_eq!(xs.num_dims(), 4, "pointwise_conv: x must be [N, C, H, W]");
    assert!(
        ws.num_dims() == 4 && ws[2] == 1 && ws[3] == 1,
        "pointwise_conv: weight must be [Cout, Cin, 1, 1]"
    );
    assert_eq!(xs[1], ws[1], "pointwise_conv: channel mismatch");
    let shape = PointwiseShape {
        batch: xs[0],
        inputs: xs[1],
        outputs: ws[0],
        plane: xs[2] * xs[3],
    };
    assert!(shape.is_consistent(), "pointwise_conv: {shape:?}");
    shape
}

fn norm_shape(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor) -> NormShape {
    let xs = x.shape();
    assert!(
        xs.num_dims() >= 2,
        "batch_norm_activation: x must be [N, C, ...]"
    );
    let channels = xs[1];
    assert_eq!(
        gamma.shape().num_elements(),
        channels,
        "batch_norm_activation: gamma must be [C]"
    );
    assert_eq!(
        beta.shape().num_elements(),
        channels,
        "batch_norm_activation: beta must be [C]"
    );
    NormShape {
        batch: xs[0],
        channels,
        inner: (2..xs.num_dims()).map(|axis| xs[axis]).product(),
    }
}

fn plain_conv_shape(x: &FlexTensor, weight: &FlexTensor, geometry: ConvGeometry) -> PlainConvShape {
    let xs = x.shape();
    let ws = weight.shape();
    assert_eq!(xs.num_dims(), 4, "plain_conv: x must be [N, C, H, W]");
    assert_eq!(
        ws.num_dims(),
        4,
        "plain_conv: weight must be [Cout, Cin, kh, kw]"
    );
    assert_eq!(xs[1], ws[1], "plain_conv: channel mismatch");
    let shape = PlainConvShape {
        batch: xs[0],
        c_in: xs[1],
        h: xs[2],
        w: xs[3],
        c_out: ws[0],
        kh: ws[2],
        kw: ws[3],
        stride: geometry.stride,
        padding: geometry.padding,
    };
    assert!(shape.is_supported(), "plain_conv: {shape:?}");
    shape
}

impl ConvKernels for Flex {
    fn plain_conv_fwd(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        geometry: ConvGeometry,
    ) -> FlexTensor {
        let (x, weight, bias) = (dense_f32(x), dense_f32(weight), dense_f32(bias));
        let s = plain_conv_shape(&x, &weight, geometry);
        let out = kernels::conv_forward(&s, f32s(&x), f32s(&weight), f32s(&bias));
        flex_f32(out, vec![s.batch, s.c_out, s.ho(), s.wo()])
    }

    fn plain_conv_bwd(
        saved: SavedConv<Self>,
        grad: FlexTensor,
        want_x_grad: bool,
    ) -> ConvGradTensors<Self> {
        let (x, weight, grad) = (dense_f32(saved.x), dense_f32(saved.weight), dense_f32(grad));
        let s = plain_conv_shape(&x, &weight, saved.geometry);
        let grads = kernels::conv_backward(&s, f32s(&x), f32s(&weight), f32s(&grad), want_x_grad);
        ConvGradTensors {
            x: grads
                .x
                .map(|dx| flex_f32(dx, vec![s.batch, s.c_in, s.h, s.w])),
            weight: flex_f32(grads.weight, vec![s.c_out, s.c_in, s.kh, s.kw]),
            bias: flex_f32(grads.bias, vec![s.c_out]),
        }
    }

    fn pointwise_fwd(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let dims = x.shape();
        let (x, weight, bias) = (dense_f32(x), dense_f32(weight), dense_f32(bias));
        let s = pointwise_shape(&x, &weight);
        let out = pointwise::forward(&s, f32s(&x), f32s(&weight), Some(f32s(&bias)));
        flex_f32(out, vec![s.batch, s.outputs, dims[2], dims[3]])
    }

    fn pointwise_bwd(
        saved: SavedPointwise<Self>,
        grad: FlexTensor,
        want_x_grad: bool,
    ) -> ConvGradTensors<Self> {
        let dims = saved.x.shape().to_vec();
        let (x, weight, grad) = (dense_f32(saved.x), dense_f32(saved.weight), dense_f32(grad));
        let s = pointwise_shape(&x, &weight);
        let grads = pointwise::backward(&s, f32s(&x), f32s(&weight), f32s(&grad), want_x_grad);
        ConvGradTensors {
            x: grads.x.map(|dx| flex_f32(dx, dims)),
            weight: flex_f32(grads.weight, vec![s.outputs, s.inputs, 1, 1]),
            bias: flex_f32(grads.bias, vec![s.outputs]),
        }
    }

    fn global_average_fwd(x: FlexTensor) -> FlexTensor {
        let dims = x.shape().to_vec();
        assert_eq!(dims.len(), 4, "global_average_pool: x must be [N, C, H, W]");
        let x = dense_f32(x);
        let means = pool::forward(f32s(&x), dims[1], dims[2] * dims[3]);
        flex_f32(means, vec![dims[0], dims[1], 1, 1])
    }

    fn global_average_bwd(grad: FlexTensor, dims: [usize; 4]) -> FlexTensor {
        let grad = dense_f32(grad);
        let dx = pool::backward(f32s(&grad), dims[1], dims[2] * dims[3]);
        flex_f32(dx, dims.to_vec())
    }

    fn dropout_apply(x: FlexTensor, mask: DropoutMask) -> FlexTensor {
        let image = x.shape().iter().skip(1).product();
        let mut x = owned_f32(x);
        // In place when nothing else holds the tensor (the usual case: the layer before is
        // the only one to have seen it), otherwise on a copy.
        mask.apply_per_image(x.storage_mut::<f32>(), image);
        x
    }

    fn batch_norm_fwd(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        activation: Activation,
    ) -> BatchNormOutput<Self> {
        let dims = x.shape().to_vec();
        let (x, gamma, beta) = (dense_f32(x), dense_f32(gamma), dense_f32(beta));
        let s = norm_shape(&x, &gamma, &beta);
        let (out, statistics) =
            batchnorm::forward(&s, f32s(&x), f32s(&gamma), f32s(&beta), epsilon, activation);
        BatchNormOutput {
            output: flex_f32(out, dims),
            mean: flex_f32(statistics.mean.clone(), vec![s.channels]),
            variance: flex_f32(statistics.variance.clone(), vec![s.channels]),
            statistics,
        }
    }

    fn batch_norm_bwd(
        saved: SavedBatchNorm<Self>,
        grad: FlexTensor,
        want_x_grad: bool,
    ) -> ConvGradTensors<Self> {
        let (x, gamma, beta) = (
            dense_f32(saved.x),
            dense_f32(saved.gamma),
            dense_f32(saved.beta),
        );
        let s = norm_shape(&x, &gamma, &beta);
        let inputs = batchnorm::BackwardInputs {
            shape: s,
            x: f32s(&x),
            gamma: f32s(&gamma),
            beta: f32s(&beta),
            mean: &saved.statistics.mean,
            inv_std: &saved.statistics.inv_std,
            activation: saved.activation,
        };
        // The input's gradient over the output's, which nothing needs after this node (in
        // place when nothing else holds it, the usual case).
        let mut grad = owned_f32(grad);
        let (gamma_grad, beta_grad) =
            batchnorm::backward_in_place(&inputs, grad.storage_mut::<f32>(), want_x_grad);
        ConvGradTensors {
            x: want_x_grad.then_some(grad),
            weight: flex_f32(gamma_grad, vec![s.channels]),
            bias: flex_f32(beta_grad, vec![s.channels]),
        }
    }

    fn depthwise_fwd(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        geometry: DepthwiseGeometry,
    ) -> FlexTensor {
        let (x, weight, bias) = (dense_f32(x), dense_f32(weight), dense_f32(bias));
        let s = depthwise_shape(&x, &weight, geometry);
        let out = depthwise::forward(&s, f32s(&x), f32s(&weight), Some(f32s(&bias)));
        flex_f32(out, vec![s.batch, s.outputs(), s.out_height, s.out_width])
    }

    fn depthwise_bwd(
        saved: SavedDepthwise<Self>,
        grad: FlexTensor,
        want_x_grad: bool,
    ) -> ConvGradTensors<Self> {
        let (x, weight, grad) = (dense_f32(saved.x), dense_f32(saved.weight), dense_f32(grad));
        let s = depthwise_shape(&x, &weight, saved.geometry);
        let grads = depthwise::backward(&s, f32s(&x), f32s(&weight), f32s(&grad), want_x_grad);
        ConvGradTensors {
            x: grads
                .x
                .map(|dx| flex_f32(dx, vec![s.batch, s.channels, s.height, s.width])),
            weight: flex_f32(
                grads.weight,
                vec![s.outputs(), 1, s.kernel_height, s.kernel_width],
            ),
            bias: flex_f32(grads.bias, vec![s.outputs()]),
        }
    }

    fn conv_relu_pool_fwd(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        pad: usize,
        dropout: Option<DropoutMask>,
    ) -> (FlexTensor, FlexTensor) {
        let (x, weight, bias) = (dense_f32(x), dense_f32(weight), dense_f32(bias));
        let s = shape_of(&x, &weight, pad);
        let (out, argmax) =
            kernels::conv_relu_pool_forward(&s, f32s(&x), f32s(&weight), f32s(&bias), dropout);
        let shape = vec![s.batch, s.c_out, s.ph(), s.pw()];
        let argmax = FlexTensor::new(
            Bytes::from_elems(argmax),
            Layout::contiguous(Shape::from(shape.clone())),
            DType::U8,
        );
        (flex_f32(out, shape), argmax)
    }

    fn conv_relu_pool_bwd(
        saved: SavedForward<Self>,
        grad: FlexTensor,
        want_x_grad: bool,
    ) -> ConvGradTensors<Self> {
        let (x, weight, grad) = (dense_f32(saved.x), dense_f32(saved.weight), dense_f32(grad));
        let s = shape_of(&x, &weight, saved.pad);
        let argmax = saved
            .argmax
            .as_slice::<u8>()
            .unwrap_or_else(|| unreachable!("the forward made the mask a dense u8 tensor"));
        let inputs = BackwardInputs {
            shape: s,
            x: f32s(&x),
            weight: f32s(&weight),
            argmax,
            grad_out: f32s(&grad),
            grad_scale: saved.grad_scale,
        };
        let grads = kernels::conv_relu_pool_backward(&inputs, want_x_grad, BackwardAlgo::Auto);
        ConvGradTensors {
            x: grads
                .x
                .map(|dx| flex_f32(dx, vec![s.batch, s.c_in, s.h, s.w])),
            weight: flex_f32(grads.weight, vec![s.c_out, s.c_in, s.kh, s.kw]),
            bias: flex_f32(grads.bias, vec![s.c_out]),
        }
    }
}

impl FastConvBackend for Flex {
    fn conv_relu_pool(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        pad: usize,
        drop_prob: f64,
        seed: u64,
    ) -> FlexTensor {
        Self::conv_relu_pool_fwd(x, weight, bias, pad, dropout_mask(drop_prob, seed)).0
    }

    fn probe(x: FlexTensor, _id: usize) -> FlexTensor {
        x
    }

    fn plain_conv(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        geometry: ConvGeometry,
    ) -> FlexTensor {
        Self::plain_conv_fwd(x, weight, bias, geometry)
    }

    fn depthwise_conv(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        geometry: DepthwiseGeometry,
    ) -> FlexTensor {
        Self::depthwise_fwd(x, weight, bias, geometry)
    }

    fn pointwise_conv(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        Self::pointwise_fwd(x, weight, bias)
    }

    fn global_average_pool(x: FlexTensor) -> FlexTensor {
        Self::global_average_fwd(x)
    }

    fn dropout(x: FlexTensor, drop_prob: f64, seed: u64) -> FlexTensor {
        match dropout_mask(drop_prob, seed) {
            Some(mask) => Self::dropout_apply(x, mask),
            None => x,
        }
    }

    fn batch_norm_activation(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        activation: Activation,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let forward = Self::batch_norm_fwd(x, gamma, beta, epsilon, activation);
        (forward.output, forward.mean, forward.variance)
    }
}

fn dropout_mask(prob: f64, seed: u64) -> Option<DropoutMask> {
    (prob > 0.0).then_some(DropoutMask { prob, seed })
}

/// The backward pass of an op of (input, weight, bias): `compute` gives their gradients from
/// the op's saved state and its output's gradient (the input's only when asked for), and each
/// goes to its node where autodiff tracks one.
fn backward_of_input_weight_bias<B: Backend, S>(
    ops: Ops<S, 3>,
    grads: &mut Gradients,
    compute: impl FnOnce(S, FloatTensor<B>, bool) -> ConvGradTensors<B>,
) {
    let [node_x, node_weight, node_bias] = ops.parents;
    let grad = grads.consume::<B>(&ops.node);
    let computed = compute(ops.state, grad, node_x.is_some());
    if let (Some(node), Some(dx)) = (node_x, computed.x) {
        grads.register::<B>(node.id, dx);
    }
    if let Some(node) = node_weight {
        grads.register::<B>(node.id, computed.weight);
    }
    if let Some(node) = node_bias {
        grads.register::<B>(node.id, computed.bias);
    }
}

#[derive(Debug)]
struct ConvReluPoolBackward;

impl<B: ConvKernels> Backward<B, 3> for ConvReluPoolBackward {
    type State = SavedForward<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        backward_of_input_weight_bias(ops, grads, B::conv_relu_pool_bwd);
    }
}

#[derive(Debug)]
struct DepthwiseBackward;

impl<B: ConvKernels> Backward<B, 3> for DepthwiseBackward {
    type State = SavedDepthwise<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        backward_of_input_weight_bias(ops, grads, B::depthwise_bwd);
    }
}

#[derive(Debug)]
struct PointwiseBackward;

impl<B: ConvKernels> Backward<B, 3> for PointwiseBackward {
    type State = SavedPointwise<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        backward_of_input_weight_bias(ops, grads, B::pointwise_bwd);
    }
}

/// The global average pool's backward needs only the input's shape.
#[derive(Debug)]
struct GlobalAverageBackward;

impl<B: ConvKernels> Backward<B, 1> for GlobalAverageBackward {
    type State = [usize; 4];

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::global_average_bwd(grad, ops.state));
        }
    }
}

/// Dropout's backward needs only the mask: it draws the same decisions again.
#[derive(Debug)]
struct DropoutBackward;

impl<B: ConvKernels> Backward<B, 1> for DropoutBackward {
    type State = DropoutMask;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::dropout_apply(grad, ops.state));
        }
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl<B: ConvKernels> Backward<B, 3> for BatchNormBackward {
    type State = SavedBatchNorm<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        backward_of_input_weight_bias(ops, grads, B::batch_norm_bwd);
    }
}

#[derive(Debug)]
struct PlainConvBackward;

impl<B: ConvKernels> Backward<B, 3> for PlainConvBackward {
    type State = SavedConv<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        backward_of_input_weight_bias(ops, grads, B::plain_conv_bwd);
    }
}

#[derive(Debug)]
struct ProbeBackward;

impl<B: Backend> Backward<B, 1> for ProbeBackward {
    type State = usize;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let stamp = ProbeStamp {
            id: ops.state,
            wall: Instant::now(),
            cpu: usage::process_cpu_time(),
        };
        PROBE_STAMPS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(stamp);
        let [node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, grad);
        }
    }
}

impl<B: ConvKernels, C: CheckpointStrategy> FastConvBackend for Autodiff<B, C> {
    fn conv_relu_pool(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        pad: usize,
        drop_prob: f64,
        seed: u64,
    ) -> FloatTensor<Self> {
        let dropout = dropout_mask(drop_prob, seed);
        match ConvReluPoolBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = x.primitive().clone();
                let weight = weight.primitive().clone();
                let (out, argmax) = B::conv_relu_pool_fwd(
                    x.clone(),
                    weight.clone(),
                    bias.into_primitive(),
                    pad,
                    dropout,
                );
                let saved = SavedForward {
                    x,
                    weight,
                    argmax,
                    pad,
                    grad_scale: kernels::dropout_scale(dropout),
                };
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => {
                let (out, _) = B::conv_relu_pool_fwd(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    pad,
                    dropout,
                );
                prep.finish(out)
            }
        }
    }

    fn depthwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: DepthwiseGeometry,
    ) -> FloatTensor<Self> {
        match DepthwiseBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = x.primitive().clone();
                let weight = weight.primitive().clone();
                let out =
                    B::depthwise_fwd(x.clone(), weight.clone(), bias.into_primitive(), geometry);
                let saved = SavedDepthwise {
                    x,
                    weight,
                    geometry,
                };
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::depthwise_fwd(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                geometry,
            )),
        }
    }

    fn pointwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match PointwiseBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = x.primitive().clone();
                let weight = weight.primitive().clone();
                let out = B::pointwise_fwd(x.clone(), weight.clone(), bias.into_primitive());
                prep.finish(SavedPointwise { x, weight }, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::pointwise_fwd(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            )),
        }
    }

    fn global_average_pool(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GlobalAverageBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let shape = x.primitive().shape();
                assert_eq!(
                    shape.num_dims(),
                    4,
                    "global_average_pool: x must be [N, C, H, W]"
                );
                let dims = [shape[0], shape[1], shape[2], shape[3]];
                prep.finish(dims, B::global_average_fwd(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::global_average_fwd(x.into_primitive())),
        }
    }

    fn dropout(x: FloatTensor<Self>, drop_prob: f64, seed: u64) -> FloatTensor<Self> {
        let Some(mask) = dropout_mask(drop_prob, seed) else {
            return x;
        };
        match DropoutBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            // The input itself: the backward pass needs only the mask, and the kernel can then
            // drop values in place.
            OpsKind::Tracked(prep) => prep.finish(mask, B::dropout_apply(x.into_primitive(), mask)),
            OpsKind::UnTracked(prep) => prep.finish(B::dropout_apply(x.into_primitive(), mask)),
        }
    }

    fn batch_norm_activation(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (output, mean, variance) = match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = x.primitive().clone();
                let gamma = gamma.primitive().clone();
                let beta = beta.primitive().clone();
                let forward =
                    B::batch_norm_fwd(x.clone(), gamma.clone(), beta.clone(), epsilon, activation);
                let saved = SavedBatchNorm {
                    x,
                    gamma,
                    beta,
                    statistics: forward.statistics,
                    activation,
                };
                (
                    prep.finish(saved, forward.output),
                    forward.mean,
                    forward.variance,
                )
            }
            OpsKind::UnTracked(prep) => {
                let forward = B::batch_norm_fwd(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    activation,
                );
                (prep.finish(forward.output), forward.mean, forward.variance)
            }
        };
        // The statistics feed the running statistics only: constants, as burn's are.
        (
            output,
            <Self as AutodiffBackend>::from_inner(mean),
            <Self as AutodiffBackend>::from_inner(variance),
        )
    }

    fn plain_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self> {
        match PlainConvBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = x.primitive().clone();
                let weight = weight.primitive().clone();
                let out =
                    B::plain_conv_fwd(x.clone(), weight.clone(), bias.into_primitive(), geometry);
                let saved = SavedConv {
                    x,
                    weight,
                    geometry,
                };
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::plain_conv_fwd(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                geometry,
            )),
        }
    }

    fn probe(x: FloatTensor<Self>, id: usize) -> FloatTensor<Self> {
        match ProbeBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let primitive = x.primitive().clone();
                prep.finish(id, primitive)
            }
            OpsKind::UnTracked(prep) => prep.finish(x.into_primitive()),
        }
    }
}

/// `dropout(max_pool2d(relu(conv2d(x, weight, bias)), 2))` through the fused kernels, on a Flex
/// device with or without autodiff (any other backend panics: use
/// [`super::conv_relu_pool_dropout`], which checks). `drop_prob` 0 disables dropout.
pub fn conv_relu_pool(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    pad: usize,
    drop_prob: f64,
    seed: u64,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FastConvBackend>::conv_relu_pool(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        pad,
        drop_prob,
        seed,
    ))
}

/// `conv2d(x, weight, bias)` with one group per input channel, through the kernels of
/// [`super::depthwise`], on a Flex device with or without autodiff (any other backend panics:
/// use [`super::depthwise_conv`], which checks).
pub fn depthwise_conv(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    geometry: DepthwiseGeometry,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FastConvBackend>::depthwise_conv(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        geometry,
    ))
}

/// `conv2d(x, weight, bias)` for a 1x1 kernel with stride 1 and no padding, through the kernels
/// of [`super::pointwise`], on a Flex device with or without autodiff (any other backend panics:
/// use [`super::pointwise_conv`], which checks).
pub fn pointwise_conv(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FastConvBackend>::pointwise_conv(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// The mean of each plane of `x`, `[N, C, 1, 1]`, through the kernels of [`super::pool`], on a
/// Flex device with or without autodiff (any other backend panics: use
/// [`super::global_average_pool`], which checks).
pub fn global_average_pool(x: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FastConvBackend>::global_average_pool(
        x.into_dispatch(),
    ))
}

/// Inverted dropout of `x` with the fused block's masks (one stream per image, from `seed`), on
/// a Flex device with or without autodiff (any other backend panics: use [`super::dropout`],
/// which checks, and draws the seed from the device's generator). `drop_prob` 0 is the identity.
pub fn dropout<const D: usize>(x: Tensor<D>, drop_prob: f64, seed: u64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FastConvBackend>::dropout(
        x.into_dispatch(),
        drop_prob,
        seed,
    ))
}

/// `activation(batch_norm(x))` with the batch's own statistics, and those statistics (mean and
/// biased variance, `[C]`, constants under autodiff), through the kernels of
/// [`super::batchnorm`], on a Flex device with or without autodiff (any other backend panics:
/// use [`super::batch_norm_activation`], which checks, and keeps the running statistics).
pub fn batch_norm_activation<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    activation: Activation,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    let (output, mean, variance) = <Dispatch as FastConvBackend>::batch_norm_activation(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
        activation,
    );
    (
        Tensor::from_dispatch(output),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(variance),
    )
}

/// `conv2d(x, weight, bias)` with one group and no dilation, `geometry`'s stride and padding,
/// through [`super::kernels::conv_forward`], on a Flex device with or without autodiff (any
/// other backend panics: use [`super::im2col_conv`], which checks).
pub fn plain_conv(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    geometry: ConvGeometry,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FastConvBackend>::plain_conv(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        geometry,
    ))
}

/// Identity whose backward records a [`ProbeStamp`] tagged `id` in [`PROBE_STAMPS`]. Flex only,
/// like [`conv_relu_pool`].
pub fn probe<const D: usize>(x: Tensor<D>, id: usize) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FastConvBackend>::probe(x.into_dispatch(), id))
}
