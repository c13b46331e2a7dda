//! fastconv's plain convolution (`ext::plain_conv`, and `fastconv::conv2d` around burn's
//! `Conv2d`) must equal burn's conv2d in values and in the gradients of x, weight and bias, on
//! the Flex backend with and without autodiff: windows 1x1 to 10x4, strides 1, 2 and (2, 1),
//! TensorFlow's 'same' padding (uneven) and 'valid', 1 to 70 channels, with and without bias.

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use tinycnn_host::train::fastconv;
use tinycnn_host::train::fastconv::ext::{ConvGeometry, plain_conv};

mod common;
use common::{rel_l2, tensor_values};

/// Values on a power-of-two grid (inputs 1/8, weights 1/64): every convolution output is then
/// exact in f32 whatever the summation order, so the forward values must be identical.
fn on_grid<const D: usize>(t: Tensor<D>, step: f32) -> Tensor<D> {
    (t / step).round() * step
}

/// A fixed, non-uniform upstream gradient (not from burn's generator, whose seed is global to
/// the process while the tests run in parallel).
fn upstream_grad(dims: [usize; 4], dev: &Device) -> Tensor<4> {
    let n = dims.iter().product::<usize>();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    Tensor::<1>::from_floats(v.as_slice(), dev).reshape(dims)
}

/// TensorFlow's padding `[top, left, bottom, right]`: 'same' puts the smaller half of an odd
/// total before.
fn tf_padding(
    same: bool,
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
    stride: [usize; 2],
) -> [usize; 4] {
    if !same {
        return [0; 4];
    }
    let total = |side: usize, kernel: usize, stride: usize| {
        let out = side.div_ceil(stride);
        ((out - 1) * stride + kernel).saturating_sub(side)
    };
    let (th, tw) = (total(h, kh, stride[0]), total(w, kw, stride[1]));
    [th / 2, tw / 2, th - th / 2, tw - tw / 2]
}

#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    kernel: (usize, usize),
    stride: [usize; 2],
    same: bool,
    bias: bool,
}

/// Values and gradients of x, weight (and bias) through autodiff: the op against burn's conv2d
/// of the explicitly padded input (burn's own padding is even on both sides).
fn check(case: Case) {
    let Case {
        batch,
        c_in,
        c_out,
        h,
        w,
        kernel: (kh, kw),
        stride,
        same,
        bias,
    } = case;
    let padding = tf_padding(same, (h, w), (kh, kw), stride);
    let [top, left, bottom, right] = padding;
    let dev = Device::flex().autodiff();
    dev.seed((batch * 7919 + c_in * 131 + c_out * 17 + h + kh * 3 + kw) as u64);
    let x = on_grid(
        Tensor::<4>::random([batch, c_in, h, w], Distribution::Normal(0.0, 1.0), &dev),
        1.0 / 8.0,
    );
    let wt = on_grid(
        Tensor::<4>::random([c_out, c_in, kh, kw], Distribution::Normal(0.0, 0.3), &dev),
        1.0 / 64.0,
    );
    let b = on_grid(
        Tensor::<1>::random([c_out], Distribution::Normal(0.0, 0.3), &dev),
        1.0 / 64.0,
    );
    let run = |fast: bool| {
        let (x, wt, b) = (
            x.clone().require_grad(),
            wt.clone().require_grad(),
            b.clone().require_grad(),
        );
        let out = if fast {
            // Without bias, an untracked zero one, as `fastconv::conv2d` passes.
            let bias = if bias {
                b.clone()
            } else {
                Tensor::zeros([c_out], &dev)
            };
            plain_conv(
                x.clone(),
                wt.clone(),
                bias,
                ConvGeometry { stride, padding },
            )
        } else {
            conv2d(
                x.clone().pad((left, right, top, bottom), 0.0),
                wt.clone(),
                bias.then(|| b.clone()),
                ConvOptions::new(stride, [0, 0], [1, 1], 1),
            )
        };
        let dims = out.dims();
        let grads = (out.clone() * upstream_grad(dims, &dev)).sum().backward();
        (
            dims,
            tensor_values(out),
            tensor_values(x.grad(&grads).unwrap()),
            tensor_values(wt.grad(&grads).unwrap()),
            b.grad(&grads).map(tensor_values),
        )
    };
    let (dims_f, out_f, dx_f, dw_f, db_f) = run(true);
    let (dims_r, out_r, dx_r, dw_r, db_r) = run(false);
    let ctx = format!("{case:?} padding {padding:?}");
    assert_eq!(dims_f, dims_r, "{ctx}: output shape");
    assert_eq!(out_f, out_r, "{ctx}: forward values differ");
    for (what, got, want) in [("x", &dx_f, &dx_r), ("weight", &dw_f, &dw_r)] {
        assert!(
            rel_l2(got, want) < 1e-5,
            "{ctx}: {what} gradient differs ({})",
            rel_l2(got, want)
        );
    }
    if bias {
        let (got, want) = (db_f.unwrap(), db_r.unwrap());
        assert!(
            rel_l2(&got, &want) < 1e-5,
            "{ctx}: bias gradient differs ({})",
            rel_l2(&got, &want)
        );
    } else {
        assert!(db_f.is_none() && db_r.is_none(), "{ctx}: a bias gradient");
    }

    // Without autodiff (evaluation), the extension routes to Flex itself.
    let plain = Device::flex();
    let (x, wt, b) = (
        x.to_device(&plain),
        wt.to_device(&plain),
        b.to_device(&plain),
    );
    let fast = plain_conv(
        x.clone(),
        wt.clone(),
        if bias {
            b.clone()
        } else {
            Tensor::zeros([c_out], &plain)
        },
        ConvGeometry { stride, padding },
    );
    let reference = conv2d(
        x.pad((left, right, top, bottom), 0.0),
        wt,
        bias.then_some(b),
        ConvOptions::new(stride, [0, 0], [1, 1], 1),
    );
    assert_eq!(
        tensor_values(fast),
        tensor_values(reference),
        "{ctx}: inference values differ"
    );
}

const WINDOWS: [(usize, usize); 4] = [(1, 1), (3, 3), (5, 5), (10, 4)];
const STRIDES: [[usize; 2]; 3] = [[1, 1], [2, 2], [2, 1]];

/// Every window with every stride, 'same' and 'valid', with and without bias: channel counts,
/// map sizes and batch drawn from a fixed generator.
#[test]
fn every_window_stride_and_padding() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut draw = |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    let mut cases = 0;
    for kernel in WINDOWS {
        for stride in STRIDES {
            for (same, bias) in [(true, false), (false, true), (true, true)] {
                let c_in = 1 + draw(70);
                let c_out = 1 + draw(70);
                // 'valid' needs the map to hold the window.
                let h = kernel.0 + draw(12);
                let w = kernel.1 + draw(12);
                let batch = [1, 3][draw(2)];
                check(Case {
                    batch,
                    c_in,
                    c_out,
                    h,
                    w,
                    kernel,
                    stride,
                    same,
                    bias,
                });
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 36);
}

/// The layers of the networks the op was written for: ResNet-8's 3x3 stride-1 and stride-2
/// convolutions and 1x1 stride-2 projections, and the DS-CNN's 1x1 at 14x14x64 (no im2col
/// for one sample per GEMM, a batch of several per GEMM where the map is small).
#[test]
fn resnet_and_ds_cnn_layers() {
    for (c_in, c_out, side, kernel, stride, same) in [
        (3, 16, 32, (3, 3), [1, 1], true),
        (16, 32, 32, (3, 3), [2, 2], true),
        (16, 32, 32, (1, 1), [2, 2], false),
        (32, 64, 8, (3, 3), [1, 1], true),
        (64, 64, 14, (1, 1), [1, 1], false),
        (64, 64, 4, (1, 1), [1, 1], false),
        (70, 1, 5, (1, 1), [1, 1], false),
    ] {
        for batch in [1, 3, 17] {
            check(Case {
                batch,
                c_in,
                c_out,
                h: side,
                w: side,
                kernel,
                stride,
                same,
                bias: false,
            });
        }
    }
}

/// Edge shapes: a window larger than the map (all-padding rows and columns), a single output,
/// one channel.
#[test]
fn windows_larger_than_the_map() {
    for (h, w, kernel, stride) in [
        (2, 2, (5, 5), [1, 1]),
        (3, 2, (10, 4), [2, 1]),
        (1, 1, (3, 3), [2, 2]),
        (10, 4, (10, 4), [2, 2]),
    ] {
        check(Case {
            batch: 2,
            c_in: 1,
            c_out: 3,
            h,
            w,
            kernel,
            stride,
            same: true,
            bias: true,
        });
    }
}

/// The model-level entry point on burn's `Conv2d`: equal to `conv.forward` for explicit,
/// 'valid' and 'same' padding, with and without bias, and its parameters' gradients equal to
/// burn's; burn's own op where the kernels do not apply (dilation, groups).
#[test]
fn entry_point_matches_burn_modules() {
    let dev = Device::flex().autodiff();
    dev.seed(7);
    let x = on_grid(
        Tensor::<4>::random([3, 4, 11, 9], Distribution::Normal(0.0, 1.0), &dev),
        1.0 / 8.0,
    );
    for config in [
        Conv2dConfig::new([4, 6], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(0, 1, 1, 1)),
        Conv2dConfig::new([4, 6], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .with_bias(false),
        Conv2dConfig::new([4, 6], [1, 1]).with_stride([2, 2]),
        Conv2dConfig::new([4, 6], [1, 1]).with_bias(false),
        Conv2dConfig::new([4, 6], [5, 3]).with_padding(PaddingConfig2d::Explicit(2, 1, 2, 1)),
        // Not covered by the kernels: burn's convolution runs.
        Conv2dConfig::new([4, 6], [3, 3]).with_dilation([2, 2]),
        Conv2dConfig::new([4, 6], [3, 3]).with_groups(2),
    ] {
        let mut conv = config.init(&dev);
        conv.weight = Param::from_tensor(on_grid(conv.weight.val(), 1.0 / 64.0).detach());
        conv.bias = conv
            .bias
            .map(|bias| Param::from_tensor(on_grid(bias.val(), 1.0 / 64.0).detach()));
        let run = |fast: bool| {
            let x = x.clone().require_grad();
            let out = if fast {
                fastconv::conv2d(&conv, x.clone())
            } else {
                conv.forward(x.clone())
            };
            let grads = (out.clone() * upstream_grad(out.dims(), &dev))
                .sum()
                .backward();
            (
                tensor_values(out),
                tensor_values(x.grad(&grads).unwrap()),
                tensor_values(conv.weight.val().grad(&grads).unwrap()),
                conv.bias
                    .as_ref()
                    .map(|bias| tensor_values(bias.val().grad(&grads).unwrap())),
            )
        };
        let (out_f, dx_f, dw_f, db_f) = run(true);
        let (out_r, dx_r, dw_r, db_r) = run(false);
        let ctx = format!("{config:?}");
        assert_eq!(out_f, out_r, "{ctx}: values");
        assert!(rel_l2(&dx_f, &dx_r) < 1e-5, "{ctx}: x gradient");
        assert!(rel_l2(&dw_f, &dw_r) < 1e-5, "{ctx}: weight gradient");
        if let (Some(got), Some(want)) = (db_f, db_r) {
            assert!(rel_l2(&got, &want) < 1e-5, "{ctx}: bias gradient");
        }
    }
}
