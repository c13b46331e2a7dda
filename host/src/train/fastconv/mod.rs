//! A fused convolution block for training and inference on burn's Flex backend:
//! `dropout(max_pool2d(relu(conv2d(x))))` as one burn op with its own backward pass.
//!
//! burn computes the block as four ops, each writing a full-size tensor, and its CPU convolution
//! and pooling backward passes took most of a training step (0.4-0.5 s per batch of 128 here).
//! The fused op computes the convolution by im2col + GEMM, applies bias, ReLU, pooling and
//! dropout while the GEMM's output is still in cache, keeps one byte per pooled value for the
//! backward pass, and in the backward pass visits only the values that carry a gradient: about
//! 6x faster per training step (see `host bench train --compare-burn`).
//!
//! The model keeps burn's `Conv2d`, `Relu`, `MaxPool2d` and `Dropout` modules and their records:
//! [`conv_relu_pool_dropout`] reads their configuration and weights and either runs the fused
//! op or, where it does not apply (another backend, a layer configuration the kernels do not
//! cover), the modules themselves. Same modules, same checkpoints either way.
//!
//! - [`kernels`]: the f32 kernels on plain slices.
//! - [`depthwise`]: depthwise convolutions ([`depthwise_conv`]).
//! - [`pointwise`]: 1x1 convolutions ([`pointwise_conv`]).
//! - [`kernels`]'s `conv_forward`/`conv_backward`: other convolutions of one group, any window,
//!   stride and padding, by im2col + GEMM ([`conv2d`], [`im2col_conv`]).
//! - [`batchnorm`]: batch normalisation in training, with its activation
//!   ([`batch_norm_activation`]).
//! - [`pool`]: global average pooling ([`global_average_pool`]).
//! - [`zeros`]: the maps' zeroed buffers, zeroed by all threads.
//! - [`ext`]: the burn backend extension around them, a standalone dropout with the fused
//!   block's masks ([`dropout`]), and a `probe` op for profiling.
//!
//! The tests in `host/tests/` (`fastconv_matches_burn`, `fastconv_sparse_equals_dense`,
//! `fastconv_network_step`) hold values and gradients to burn's own ops.

// First: the modules after it use its `multiversioned!` macro.
#[macro_use]
pub mod kernels;

pub mod batchnorm;
pub mod depthwise;
pub mod ext;
pub mod pointwise;
pub mod pool;
pub mod zeros;

use burn::backend::DispatchDevice;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Dropout, PaddingConfig2d, Relu};
use burn::tensor::{Device, Distribution, Int, Tensor};
use tinycnn::arch::Activation;

use kernels::ConvShape;

/// `dropout.forward(pool.forward(relu.forward(conv.forward(x))))` (no dropout when `None`),
/// through the fused op when it
/// applies: on a Flex device (with or without autodiff), a 2x2/2 pool, and a convolution with
/// stride 1, no dilation, one group, a bias and the same zero padding on all sides. Dropout
/// follows burn's rule (active only in training mode on an autodiff device) and draws its mask
/// seed from the device's generator, so `Device::seed` fixes the masks as it does burn's.
pub fn conv_relu_pool_dropout(
    conv: &Conv2d,
    relu: &Relu,
    pool: &MaxPool2d,
    dropout: Option<&Dropout>,
    x: Tensor<4>,
) -> Tensor<4> {
    let device = x.device();
    let fused_padding = fused_padding(conv)
        .filter(|&pad| is_flex(&device) && is_plain_2x2_pool(pool) && fits_kernels(conv, &x, pad));
    let (Some(pad), Some(bias)) = (fused_padding, conv.bias.as_ref()) else {
        let pooled = pool.forward(relu.forward(conv.forward(x)));
        return match dropout {
            Some(dropout) => dropout.forward(pooled),
            None => pooled,
        };
    };
    // Read the weights before drawing the dropout seed: a freshly initialised parameter is
    // materialised on first read, from the same generator, and burn's own path reads it first.
    let (weight, bias) = (conv.weight.val(), bias.val());
    let active = dropout.filter(|dropout| {
        dropout.training.is_enabled() && device.is_autodiff() && dropout.prob > 0.0
    });
    let (prob, seed) = match active {
        Some(dropout) => (dropout.prob, dropout_seed(&device)),
        None => (0.0, 0),
    };
    ext::conv_relu_pool(x, weight, bias, pad, prob, seed)
}

/// `conv.forward(x)` for a depthwise convolution (one group per input channel, weights
/// `[C x M][1][kh][kw]`), through the kernels of [`depthwise`] on a Flex device (with or
/// without autodiff); burn's grouped convolution on any other backend, or for a dilated one
/// or one whose padding is not explicit, 'valid', or 'same' of an odd square window with
/// stride 1. A convolution without bias gets a zero one, which nothing trains.
pub fn depthwise_conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, channels, _, _] = x.dims();
    let [outputs, per_group, _, _] = conv.weight.dims();
    let padding = explicit_padding(conv);
    let device = x.device();
    match padding {
        Some(padding)
            if is_flex(&device)
                && conv.dilation == [1, 1]
                && conv.groups == channels
                && per_group == 1
                && outputs % channels.max(1) == 0 =>
        {
            // The weight first, as burn's op reads them: a fresh parameter is drawn when
            // first read.
            let weight = conv.weight.val();
            let bias = match &conv.bias {
                Some(bias) => bias.val(),
                None => Tensor::zeros([outputs], &device),
            };
            let geometry = ext::DepthwiseGeometry {
                stride: conv.stride,
                padding,
            };
            ext::depthwise_conv(x, weight, bias, geometry)
        }
        _ => conv.forward(x),
    }
}

/// `conv.forward(x)` for a convolution outside the fused blocks: a 1x1 one at stride 1 through
/// [`pointwise_conv`]; one of a single input channel (a network's first layer) through
/// [`depthwise_conv`], as a depthwise convolution whose one channel has as many outputs as the
/// convolution (the same weights, `[outputs][1][kh][kw]`); any other through [`im2col_conv`].
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, channels, _, _] = x.dims();
    let [_, inputs, kernel_height, kernel_width] = conv.weight.dims();
    if [kernel_height, kernel_width] == [1, 1] && conv.stride == [1, 1] {
        pointwise_conv(conv, x)
    } else if channels == 1 && inputs == 1 && conv.groups == 1 {
        depthwise_conv(conv, x)
    } else {
        im2col_conv(conv, x)
    }
}

/// `conv.forward(x)` for a 1x1 convolution with stride 1, no dilation, one group and no padding,
/// through the kernels of [`pointwise`] on a Flex device (with or without autodiff); burn's
/// convolution for any other convolution or backend. A convolution without bias gets a zero
/// one, which nothing trains.
pub fn pointwise_conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, channels, height, width] = x.dims();
    let [outputs, inputs, kernel_height, kernel_width] = conv.weight.dims();
    let unpadded = match conv.padding {
        // 'same' pads a 1x1 window by nothing.
        PaddingConfig2d::Valid | PaddingConfig2d::Same => true,
        PaddingConfig2d::Explicit(top, left, bottom, right) => top + left + bottom + right == 0,
    };
    let device = x.device();
    let fits = [kernel_height, kernel_width] == [1, 1]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && unpadded
        && inputs == channels
        && channels > 0
        && outputs > 0
        && height * width > 0;
    if !(fits && is_flex(&device)) {
        return conv.forward(x);
    }
    let weight = conv.weight.val();
    let bias = match &conv.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([outputs], &device),
    };
    ext::pointwise_conv(x, weight, bias)
}

/// `x.mean_dim(3).mean_dim(2)`, each plane's mean: through the kernels of [`pool`] on a Flex
/// device (with or without autodiff), burn's means on any other backend or for an empty map.
pub fn global_average_pool(x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, height, width] = x.dims();
    if is_flex(&x.device()) && batch * channels * height * width > 0 {
        ext::global_average_pool(x)
    } else {
        x.mean_dim(3).mean_dim(2)
    }
}

/// `dropout.forward(x)`: in training (burn's rule: an autodiff device and the layer's training
/// flag) on Flex, the fused block's masks ([`kernels::DropoutMask`], one stream per image) with
/// a seed drawn from the device's generator, so `Device::seed` fixes them as it does burn's;
/// burn's module elsewhere (where it is the identity outside training). burn draws one random
/// value per element from the device's generator, 60 ms of a step for a 128x64x14x14 map here.
pub fn dropout<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let active = dropout.training.is_enabled()
        && device.is_autodiff()
        && dropout.prob > 0.0
        && dropout.prob < 1.0;
    if !(active && is_flex(&device)) {
        return dropout.forward(x);
    }
    ext::dropout(x, dropout.prob, dropout_seed(&device))
}

/// `activation(batch_norm.forward(x))`, `x` `[N, C, ...]`: in training (an autodiff device
/// and the batch norm's training flag, burn's rule) on Flex, one op of [`batchnorm`]'s kernels
/// normalising with the batch's statistics, which then go into the running mean and variance
/// exactly as burn's `BatchNorm::forward` puts them (momentum, biased variance); elsewhere, and
/// in evaluation (running statistics), burn's module and activation ops. ReLU is burn's `relu`,
/// ReLU6 its `clamp(0, 6)`, in values and gradients.
pub fn batch_norm_activation<const D: usize>(
    batch_norm: &BatchNorm,
    x: Tensor<D>,
    activation: Activation,
) -> Tensor<D> {
    let device = x.device();
    let [channels] = batch_norm.gamma.dims();
    let fused = D >= 2
        && x.dims()[1] == channels
        && device.is_autodiff()
        && batch_norm.training.is_enabled()
        && is_flex(&device);
    if !fused {
        let y = batch_norm.forward(x);
        return match activation {
            Activation::None => y,
            Activation::Relu => burn::tensor::activation::relu(y),
            Activation::Relu6 => y.clamp(0.0, 6.0),
        };
    }
    let (output, mean, variance) = ext::batch_norm_activation(
        x,
        batch_norm.gamma.val(),
        batch_norm.beta.val(),
        batch_norm.epsilon,
        activation,
    );
    // burn's `BatchNorm::forward_train`, line for line, so that the running statistics (and the
    // checkpoints, evaluation and export that read them) take in the batch's as burn's do.
    let momentum = batch_norm.momentum;
    let running_mean = batch_norm.running_mean.value_sync().to_device(&device);
    let running_var = batch_norm.running_var.value_sync().to_device(&device);
    let running_mean = running_mean
        .mul_scalar(1.0 - momentum)
        .add(mean.detach().mul_scalar(momentum));
    let running_var = running_var
        .mul_scalar(1.0 - momentum)
        .add(variance.detach().mul_scalar(momentum));
    batch_norm.running_mean.update(running_mean.detach());
    batch_norm.running_var.update(running_var.detach());
    output
}

/// `conv.forward(x)` for a convolution of one group without dilation (any window, stride and
/// explicit or 'valid' padding, or 'same' for an odd window at stride 1), through
/// [`kernels::conv_forward`] (im2col + GEMM) on a Flex device (with or without autodiff);
/// burn's convolution otherwise. A convolution without bias (one a batch norm follows) gets a zero one, which
/// nothing trains.
pub fn im2col_conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [kh, kw] = conv.kernel_size;
    let padding = explicit_padding(conv);
    let device = x.device();
    let [batch, channels, h, w] = x.dims();
    let [outputs, weight_channels, _, _] = conv.weight.dims();
    let geometry = padding.map(|padding| ext::ConvGeometry {
        stride: conv.stride,
        padding,
    });
    let fits = |geometry: &ext::ConvGeometry| {
        let shape = kernels::PlainConvShape {
            batch,
            c_in: channels,
            h,
            w,
            c_out: outputs,
            kh,
            kw,
            stride: geometry.stride,
            padding: geometry.padding,
        };
        is_flex(&device)
            && conv.dilation == [1, 1]
            && conv.groups == 1
            && channels == weight_channels
            && shape.is_supported()
    };
    match geometry.filter(fits) {
        Some(geometry) => {
            // The weight first, as burn's op reads them: a fresh parameter is drawn when
            // first read.
            let weight = conv.weight.val();
            let bias = match &conv.bias {
                Some(bias) => bias.val(),
                None => Tensor::zeros([outputs], &device),
            };
            ext::plain_conv(x, weight, bias, geometry)
        }
        None => conv.forward(x),
    }
}

/// A convolution's zero padding as `[top, left, bottom, right]`: explicit, 'valid', or burn's
/// 'same' for odd windows at stride 1 (half of each side, less one, before and after); `None`
/// for any other 'same'.
fn explicit_padding(conv: &Conv2d) -> Option<[usize; 4]> {
    let [kernel_height, kernel_width] = conv.kernel_size;
    match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => Some([top, left, bottom, right]),
        PaddingConfig2d::Valid => Some([0; 4]),
        PaddingConfig2d::Same
            if conv.stride == [1, 1] && kernel_height % 2 == 1 && kernel_width % 2 == 1 =>
        {
            Some([
                kernel_height / 2,
                kernel_width / 2,
                kernel_height / 2,
                kernel_width / 2,
            ])
        }
        PaddingConfig2d::Same => None,
    }
}

/// The extension is implemented for Flex only; on any other backend it would panic.
fn is_flex(device: &Device) -> bool {
    matches!(
        device.clone().without_autodiff().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// Zero padding on each side when `conv` keeps the kernels' preconditions (stride 1, dilation
/// 1, one group, a bias, the same padding on all four sides), else `None`.
fn fused_padding(conv: &Conv2d) -> Option<usize> {
    let [kh, kw] = conv.kernel_size;
    if conv.stride != [1, 1] || conv.dilation != [1, 1] || conv.groups != 1 || conv.bias.is_none() {
        return None;
    }
    match conv.padding {
        PaddingConfig2d::Same if kh == kw && kh % 2 == 1 => Some(kh / 2),
        PaddingConfig2d::Valid => Some(0),
        PaddingConfig2d::Explicit(top, left, bottom, right)
            if top == bottom && left == right && top == left =>
        {
            Some(top)
        }
        _ => None,
    }
}

fn is_plain_2x2_pool(pool: &MaxPool2d) -> bool {
    pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && matches!(pool.padding, PaddingConfig2d::Valid)
}

/// Whether the input's channels match the weight and the image is large enough for at least
/// one pooled value; otherwise burn's modules run (and report the mismatch their way).
fn fits_kernels(conv: &Conv2d, x: &Tensor<4>, pad: usize) -> bool {
    let [batch, c_in, h, w] = x.dims();
    let [c_out, weight_c_in, kh, kw] = conv.weight.dims();
    let shape = ConvShape {
        batch,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        pad,
    };
    c_in == weight_c_in && shape.is_supported()
}

/// A 64-bit dropout seed drawn from the device's generator, as four 16-bit integers (a range
/// every integer type of the backend holds).
fn dropout_seed(device: &Device) -> u64 {
    let words = Tensor::<1, Int>::random([4], Distribution::Uniform(0.0, 65536.0), device)
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .unwrap_or_else(|error| unreachable!("an int tensor converts to i64: {error:?}"));
    words
        .iter()
        .fold(0u64, |seed, &word| (seed << 16) | (word as u64 & 0xFFFF))
}
