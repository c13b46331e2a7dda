//! The fused op of `tinycnn_host::train::fastconv` must equal burn's `max_pool2d(relu(conv2d(..)))` (and
//! dropout, given the op's own mask) in values and in the gradients of x, weight and bias, on the
//! Flex backend with and without autodiff; its model-level entry point must fall back to burn's
//! modules wherever the op does not apply.

use burn::nn::pool::MaxPool2dConfig;
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use tinycnn_host::train::fastconv::ext::conv_relu_pool;

mod common;
use common::{rel_l2, tensor_values};

fn reference(x: Tensor<4>, w: Tensor<4>, b: Tensor<1>, pad: usize) -> Tensor<4> {
    let y = conv2d(
        x,
        w,
        Some(b),
        ConvOptions::new([1, 1], [pad, pad], [1, 1], 1),
    );
    MaxPool2dConfig::new([2, 2]).init().forward(relu(y))
}

/// Largest absolute difference, relative to the largest reference magnitude.
fn max_rel_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    got.iter()
        .zip(want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

/// A fixed, non-uniform upstream gradient. Not drawn from burn's generator: its seed is global
/// to the process and the tests run in parallel.
fn upstream_grad(dims: [usize; 4], dev: &Device) -> Tensor<4> {
    let n = dims.iter().product::<usize>();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    Tensor::<1>::from_floats(v.as_slice(), dev).reshape(dims)
}

/// Puts values on a power-of-two grid. Inputs on 1/8 and weights on 1/64 make every
/// convolution output exact in f32 whatever the summation order, so both implementations see
/// the same values and break pooling ties alike (first maximum); with arbitrary floats, two
/// window entries within rounding of each other could be ordered differently (both valid
/// subgradients), which would make exact gradient comparisons flaky.
fn on_grid<const D: usize>(t: Tensor<D>, step: f32) -> Tensor<D> {
    (t / step).round() * step
}

fn check(batch: usize, c_in: usize, h: usize, w: usize, c_out: usize, k: usize, pad: usize) {
    let dev = Device::flex().autodiff();
    dev.seed(batch as u64 * 1000 + c_in as u64 * 10 + k as u64);
    let x = on_grid(
        Tensor::<4>::random([batch, c_in, h, w], Distribution::Normal(0.0, 1.0), &dev),
        1.0 / 8.0,
    );
    let wt = on_grid(
        Tensor::<4>::random([c_out, c_in, k, k], Distribution::Normal(0.0, 0.3), &dev),
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
            conv_relu_pool(x.clone(), wt.clone(), b.clone(), pad, 0.0, 0)
        } else {
            reference(x.clone(), wt.clone(), b.clone(), pad)
        };
        let dims = out.dims();
        let g = upstream_grad(dims, &dev);
        let grads = (out.clone() * g).sum().backward();
        (
            dims,
            tensor_values(out),
            tensor_values(x.grad(&grads).unwrap()),
            tensor_values(wt.grad(&grads).unwrap()),
            tensor_values(b.grad(&grads).unwrap()),
        )
    };
    let (dims_f, out_f, dx_f, dw_f, db_f) = run(true);
    let (dims_r, out_r, dx_r, dw_r, db_r) = run(false);
    let ctx = format!("b{batch} cin{c_in} {h}x{w} cout{c_out} k{k} pad{pad}");
    assert_eq!(dims_f, dims_r, "{ctx}: output shape");
    // On the grids every convolution output is exact, so the values must be identical.
    assert_eq!(out_f, out_r, "{ctx}: forward values differ");
    assert!(
        rel_l2(&dx_f, &dx_r) < 1e-4,
        "{ctx}: x gradient differs ({})",
        rel_l2(&dx_f, &dx_r)
    );
    assert!(
        rel_l2(&dw_f, &dw_r) < 1e-4,
        "{ctx}: weight gradient differs ({})",
        rel_l2(&dw_f, &dw_r)
    );
    assert!(
        rel_l2(&db_f, &db_r) < 1e-4,
        "{ctx}: bias gradient differs ({})",
        rel_l2(&db_f, &db_r)
    );

    // Without autodiff (evaluation after `model.valid()`), the extension routes to Flex itself.
    let plain = Device::flex();
    let (x, wt, b) = (
        x.to_device(&plain),
        wt.to_device(&plain),
        b.to_device(&plain),
    );
    let fast = tensor_values(conv_relu_pool(
        x.clone(),
        wt.clone(),
        b.clone(),
        pad,
        0.0,
        0,
    ));
    let refr = tensor_values(reference(x, wt, b, pad));
    assert_eq!(fast, refr, "{ctx}: inference values differ");
}

#[test]
fn first_layer_single_input_channel() {
    check(3, 1, 28, 28, 8, 3, 1);
}

#[test]
fn middle_layer() {
    check(5, 16, 14, 14, 12, 3, 1);
}

#[test]
fn odd_size_drops_last_row_and_column() {
    check(4, 8, 7, 7, 16, 3, 1);
}

#[test]
fn no_padding_and_larger_kernel() {
    check(2, 3, 12, 10, 5, 5, 0);
    check(2, 3, 11, 9, 5, 5, 2);
}

/// A "same" kernel wider than the map (5x5 on 2x2, 7x7 on 3x2): most kernel rows and columns
/// fall entirely in the padding, and their im2col rows must be all zeros.
#[test]
fn kernel_larger_than_the_map() {
    check(3, 1, 2, 2, 2, 5, 2);
    check(2, 3, 3, 2, 4, 7, 3);
    check(2, 2, 2, 4, 3, 5, 2);
}

#[test]
fn batch_not_divisible_by_thread_count_or_gemm_group() {
    check(7, 4, 7, 7, 6, 3, 1);
    check(1, 2, 6, 6, 3, 3, 1);
}

#[test]
fn reference_network_shapes() {
    check(16, 1, 28, 28, 64, 3, 1);
    check(16, 64, 14, 14, 128, 3, 1);
    check(16, 128, 7, 7, 256, 3, 1);
}

/// With dropout the fused op must equal burn's ops times the op's own mask (read back from its
/// output: a kept positive value is non-zero) times 1/(1-p), in values and gradients.
#[test]
fn dropout_matches_burn_with_the_same_mask() {
    let dev = Device::flex().autodiff();
    dev.seed(7);
    let (batch, c_in, h, c_out, prob) = (6, 5, 14, 9, 0.5);
    let x = on_grid(
        Tensor::<4>::random([batch, c_in, h, h], Distribution::Normal(0.0, 1.0), &dev),
        1.0 / 8.0,
    );
    let wt = on_grid(
        Tensor::<4>::random([c_out, c_in, 3, 3], Distribution::Normal(0.0, 0.3), &dev),
        1.0 / 64.0,
    );
    let b = on_grid(
        Tensor::<1>::random([c_out], Distribution::Normal(0.0, 0.3), &dev),
        1.0 / 64.0,
    );
    let mask = conv_relu_pool(x.clone(), wt.clone(), b.clone(), 1, prob, 1234)
        .not_equal_elem(0.0)
        .float();

    let run = |fast: bool| {
        let (x, wt, b) = (
            x.clone().require_grad(),
            wt.clone().require_grad(),
            b.clone().require_grad(),
        );
        let out = if fast {
            conv_relu_pool(x.clone(), wt.clone(), b.clone(), 1, prob, 1234)
        } else {
            reference(x.clone(), wt.clone(), b.clone(), 1) * mask.clone() * (1.0 / (1.0 - prob))
        };
        let g = upstream_grad(out.dims(), &dev);
        let grads = (out.clone() * g).sum().backward();
        (
            tensor_values(out),
            tensor_values(x.grad(&grads).unwrap()),
            tensor_values(wt.grad(&grads).unwrap()),
            tensor_values(b.grad(&grads).unwrap()),
        )
    };
    dev.seed(99);
    let fast = run(true);
    dev.seed(99);
    let refr = run(false);
    assert_eq!(fast.0, refr.0, "forward values differ");
    assert!(rel_l2(&fast.1, &refr.1) < 1e-4, "x gradient differs");
    assert!(rel_l2(&fast.2, &refr.2) < 1e-4, "weight gradient differs");
    assert!(rel_l2(&fast.3, &refr.3) < 1e-4, "bias gradient differs");
}

/// The mask keeps about 1-p of the values, is fixed by the seed and changes with it.
#[test]
fn dropout_mask_rate_and_seed() {
    let dev = Device::flex().autodiff();
    dev.seed(3);
    // Bias 10 makes every pre-dropout value positive, so zeros come from dropout alone.
    let x = Tensor::<4>::random([8, 2, 28, 28], Distribution::Uniform(0.0, 1.0), &dev);
    let wt = Tensor::<4>::random([16, 2, 3, 3], Distribution::Uniform(0.0, 0.1), &dev);
    let b = Tensor::<1>::ones([16], &dev) * 10.0;
    let kept = |prob: f64, seed: u64| -> Vec<bool> {
        tensor_values(conv_relu_pool(
            x.clone(),
            wt.clone(),
            b.clone(),
            1,
            prob,
            seed,
        ))
        .iter()
        .map(|v| *v != 0.0)
        .collect()
    };
    for prob in [0.25, 0.5, 0.75] {
        let m = kept(prob, 11);
        let n = m.len() as f64; // 8*16*14*14 = 25088
        let rate = m.iter().filter(|k| **k).count() as f64 / n;
        let sd = (prob * (1.0 - prob) / n).sqrt();
        assert!(
            (rate - (1.0 - prob)).abs() < 5.0 * sd,
            "p={prob}: keep rate {rate}"
        );
    }
    assert_eq!(kept(0.5, 11), kept(0.5, 11), "same seed, same mask");
    let (a, c) = (kept(0.5, 11), kept(0.5, 12));
    let same = a.iter().zip(&c).filter(|(p, q)| p == q).count() as f64 / a.len() as f64;
    assert!(
        (same - 0.5).abs() < 0.05,
        "masks of different seeds agree on {same} of values"
    );
    assert!(kept(0.0, 11).iter().all(|k| *k), "p=0 keeps everything");
}

/// The model-level entry point: fused when the layers fit the kernels, burn's modules otherwise,
/// and no dropout outside training.
#[test]
fn block_entry_point_matches_burn_modules() {
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::{DropoutConfig, PaddingConfig2d, Relu};
    use tinycnn_host::train::fastconv::conv_relu_pool_dropout;

    let dev = Device::flex();
    let x = Tensor::<4>::random([3, 4, 10, 10], Distribution::Normal(0.0, 1.0), &dev);
    let (relu, pool, dropout) = (
        Relu::new(),
        MaxPool2dConfig::new([2, 2]).init(),
        DropoutConfig::new(0.5).init(),
    );
    let burn_block = |conv: &burn::nn::conv::Conv2d, x: Tensor<4>| {
        dropout.forward(pool.forward(relu.forward(conv.forward(x))))
    };
    for conv in [
        Conv2dConfig::new([4, 6], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&dev),
        Conv2dConfig::new([4, 6], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&dev),
        Conv2dConfig::new([4, 6], [3, 3]).init(&dev),
        // Not covered by the kernels: must fall back to burn's modules.
        Conv2dConfig::new([4, 6], [3, 3])
            .with_stride([2, 2])
            .init(&dev),
        Conv2dConfig::new([4, 6], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .with_bias(false)
            .init(&dev),
    ] {
        let got = tensor_values(conv_relu_pool_dropout(
            &conv,
            &relu,
            &pool,
            Some(&dropout),
            x.clone(),
        ));
        let want = tensor_values(burn_block(&conv, x.clone()));
        assert!(max_rel_diff(&got, &want) < 1e-5, "{conv:?}");
    }
}

/// On another backend the entry point must fall back to burn's modules (the extension is only
/// implemented for Flex and would panic there).
#[cfg(feature = "ndarray")]
#[test]
#[allow(deprecated)]
fn block_entry_point_falls_back_on_ndarray() {
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::{DropoutConfig, PaddingConfig2d, Relu};
    use tinycnn_host::train::fastconv::conv_relu_pool_dropout;

    for dev in [Device::ndarray(), Device::ndarray().autodiff()] {
        let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Normal(0.0, 1.0), &dev);
        let conv = Conv2dConfig::new([3, 4], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&dev);
        let (relu, pool, dropout) = (
            Relu::new(),
            MaxPool2dConfig::new([2, 2]).init(),
            DropoutConfig::new(0.0).init(),
        );
        let got = tensor_values(conv_relu_pool_dropout(
            &conv,
            &relu,
            &pool,
            Some(&dropout),
            x.clone(),
        ));
        let want = tensor_values(pool.forward(relu.forward(conv.forward(x))));
        assert_eq!(got, want);
    }
}

/// The depthwise op against burn's grouped convolution: values and the gradients of x, weight
/// and bias through autodiff, for strides 1 and 2, 'same'-like and uneven padding, and
/// depth multipliers 1 and 2.
#[test]
fn depthwise_matches_burns_grouped_convolution() {
    use tinycnn_host::train::fastconv::ext::{DepthwiseGeometry, depthwise_conv};
    for (channels, multiplier, side, stride, padding) in [
        (8, 1, 9, [1, 1], [1, 1, 1, 1]),
        (6, 2, 10, [2, 2], [0, 0, 1, 1]),
        (5, 1, 7, [2, 1], [1, 0, 1, 2]),
    ] {
        let dev = Device::flex().autodiff();
        dev.seed(channels as u64 * 100 + side as u64);
        let outputs = channels * multiplier;
        let x = on_grid(
            Tensor::<4>::random(
                [3, channels, side, side],
                Distribution::Normal(0.0, 1.0),
                &dev,
            ),
            1.0 / 8.0,
        );
        let wt = on_grid(
            Tensor::<4>::random([outputs, 1, 3, 3], Distribution::Normal(0.0, 0.3), &dev),
            1.0 / 64.0,
        );
        let b = on_grid(
            Tensor::<1>::random([outputs], Distribution::Normal(0.0, 0.3), &dev),
            1.0 / 64.0,
        );
        let [top, left, bottom, right] = padding;
        let run = |fast: bool| {
            let (x, wt, b) = (
                x.clone().require_grad(),
                wt.clone().require_grad(),
                b.clone().require_grad(),
            );
            let out = if fast {
                let geometry = DepthwiseGeometry { stride, padding };
                depthwise_conv(x.clone(), wt.clone(), b.clone(), geometry)
            } else {
                // burn pads evenly: pad the input explicitly for the uneven cases.
                let padded = x.clone().pad((left, right, top, bottom), 0.0);
                conv2d(
                    padded,
                    wt.clone(),
                    Some(b.clone()),
                    ConvOptions::new(stride, [0, 0], [1, 1], channels),
                )
            };
            let dims = out.dims();
            let g = upstream_grad(dims, &dev);
            let grads = (out.clone() * g).sum().backward();
            (
                dims,
                tensor_values(out),
                tensor_values(x.grad(&grads).unwrap()),
                tensor_values(wt.grad(&grads).unwrap()),
                tensor_values(b.grad(&grads).unwrap()),
            )
        };
        let (dims_f, out_f, dx_f, dw_f, db_f) = run(true);
        let (dims_r, out_r, dx_r, dw_r, db_r) = run(false);
        let ctx =
            format!("{channels}x{multiplier} {side}x{side} stride {stride:?} pad {padding:?}");
        assert_eq!(dims_f, dims_r, "{ctx}: output shape");
        assert_eq!(out_f, out_r, "{ctx}: forward values differ");
        for (what, got, want) in [
            ("x", &dx_f, &dx_r),
            ("weight", &dw_f, &dw_r),
            ("bias", &db_f, &db_r),
        ] {
            assert!(
                rel_l2(got, want) < 1e-5,
                "{ctx}: {what} gradient differs ({})",
                rel_l2(got, want)
            );
        }
    }
}

/// The 1x1 op against burn's conv2d: values and the gradients of x, weight and bias through
/// autodiff, with and without a bias, one image and several; and the entry point falls back to
/// burn's convolution for a 1x1 window it does not cover (stride 2).
#[test]
fn pointwise_matches_burns_convolution() {
    use burn::module::Module;
    use burn::nn::conv::Conv2dConfig;
    use tinycnn_host::train::fastconv::pointwise_conv;
    for (batch, inputs, outputs, side, bias) in [
        (3, 8, 12, 7, true),
        (1, 1, 5, 4, false),
        (9, 13, 3, 5, true),
        (2, 64, 64, 14, false),
    ] {
        let dev = Device::flex().autodiff();
        dev.seed(inputs as u64 * 100 + side as u64);
        let x = on_grid(
            Tensor::<4>::random(
                [batch, inputs, side, side],
                Distribution::Normal(0.0, 1.0),
                &dev,
            ),
            1.0 / 8.0,
        );
        let mut conv = Conv2dConfig::new([inputs, outputs], [1, 1])
            .with_bias(bias)
            .init(&dev);
        conv.weight = conv
            .weight
            .clone()
            .map(|w| on_grid(w, 1.0 / 64.0).detach().require_grad());
        if let Some(b) = conv.bias.take() {
            let values = Tensor::<1>::random([outputs], Distribution::Normal(0.0, 0.3), &dev);
            conv.bias = Some(b.map(|_| on_grid(values, 1.0 / 64.0).detach().require_grad()));
        }
        let run = |fast: bool| {
            let x = x.clone().require_grad();
            let out = if fast {
                pointwise_conv(&conv, x.clone())
            } else {
                conv.forward(x.clone())
            };
            let dims = out.dims();
            let grads = (out.clone() * upstream_grad(dims, &dev)).sum().backward();
            (
                tensor_values(out),
                tensor_values(x.grad(&grads).unwrap()),
                tensor_values(conv.weight.grad(&grads).unwrap()),
                conv.bias
                    .as_ref()
                    .map(|b| tensor_values(b.grad(&grads).unwrap())),
            )
        };
        let fast = run(true);
        let refr = run(false);
        let ctx = format!("{batch}x{inputs}x{side}x{side} -> {outputs}, bias {bias}");
        // On the grids every product and sum is exact: equal values.
        assert_eq!(fast.0, refr.0, "{ctx}: forward values differ");
        assert!(rel_l2(&fast.1, &refr.1) < 1e-5, "{ctx}: x gradient differs");
        assert!(
            rel_l2(&fast.2, &refr.2) < 1e-5,
            "{ctx}: weight gradient differs"
        );
        if let (Some(fast), Some(refr)) = (&fast.3, &refr.3) {
            assert!(rel_l2(fast, refr) < 1e-5, "{ctx}: bias gradient differs");
        }
        // Without autodiff too.
        let plain = Device::flex();
        let (x, conv) = (x.to_device(&plain), conv.to_device(&plain));
        assert_eq!(
            tensor_values(pointwise_conv(&conv, x.clone())),
            tensor_values(conv.forward(x)),
            "{ctx}: inference values differ"
        );
    }
    let dev = Device::flex();
    let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(0.0, 1.0), &dev);
    let strided = Conv2dConfig::new([3, 4], [1, 1])
        .with_stride([2, 2])
        .init(&dev);
    assert_eq!(
        tensor_values(pointwise_conv(&strided, x.clone())),
        tensor_values(strided.forward(x))
    );
}

/// The standalone dropout: the output is the input times the op's mask (read back from it:
/// the input has no zeros) times 1/(1-p), its gradient the upstream gradient times the same;
/// the mask keeps about 1-p and follows the seed; the entry point does nothing outside
/// training.
#[test]
fn standalone_dropout_is_inverted_dropout_with_a_seeded_mask() {
    use burn::module::Module;
    use burn::nn::DropoutConfig;
    use tinycnn_host::train::fastconv::{dropout, ext};
    let dev = Device::flex().autodiff();
    dev.seed(17);
    let prob = 0.3;
    let x = Tensor::<4>::random([6, 5, 9, 9], Distribution::Uniform(0.5, 1.5), &dev);
    let x = x.require_grad();
    let out = ext::dropout(x.clone(), prob, 99);
    let mask = out.clone().not_equal_elem(0.0).float().detach();
    let scale = 1.0 / (1.0 - prob);
    let want = x.clone().detach() * mask.clone() * scale;
    let g = upstream_grad(out.dims(), &dev);
    let grads = (out.clone() * g.clone()).sum().backward();
    let got = tensor_values(out);
    assert!(rel_l2(&got, &tensor_values(want)) < 1e-6, "values");
    assert!(
        rel_l2(
            &tensor_values(x.grad(&grads).unwrap()),
            &tensor_values(g * mask.clone() * scale)
        ) < 1e-6,
        "gradient"
    );
    let kept = tensor_values(mask);
    let rate = kept.iter().sum::<f32>() as f64 / kept.len() as f64;
    let sd = (prob * (1.0 - prob) / kept.len() as f64).sqrt();
    assert!((rate - (1.0 - prob)).abs() < 5.0 * sd, "keep rate {rate}");
    let again = tensor_values(ext::dropout(x.clone(), prob, 99));
    assert!(got == again, "same seed, same mask");
    assert!(got != tensor_values(ext::dropout(x.clone(), prob, 100)));
    // Vectors too (one stream per row).
    let v = Tensor::<2>::random([7, 40], Distribution::Uniform(0.5, 1.5), &dev);
    let dropped = tensor_values(ext::dropout(v.clone(), 0.5, 3));
    let zeros = dropped.iter().filter(|v| **v == 0.0).count();
    assert!((80..200).contains(&zeros), "{zeros} of 280 dropped");
    // The entry point (whose seed comes from burn's generator, which the tests of this binary
    // share: `fastconv_network_step` checks that it follows the device's seed) drops nothing
    // outside training.
    let layer = DropoutConfig::new(prob).init();
    let input = tensor_values(x.clone());
    assert!(
        tensor_values(dropout(&layer.valid(), x.clone())) == input,
        "a layer outside training keeps its input"
    );
    let plain = Tensor::<4>::from_data(x.to_data(), &Device::flex());
    assert!(
        tensor_values(dropout(&layer, plain)) == input,
        "no autodiff, no dropout"
    );
}

/// Convolutions outside the fused blocks (im2col + GEMM): values and the gradients of x,
/// weight and bias equal burn's conv2d, for a network's first layer (one input channel, 3x3,
/// stride 2, TensorFlow's uneven 'same' padding), burn's 'same' with stride 1, a rectangular
/// strided 'valid' window and an uneven explicit padding.
#[test]
fn plain_convolution_matches_burns() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use tinycnn_host::train::fastconv::conv2d;
    for (inputs, outputs, kernel, stride, padding) in [
        (1, 16, [3, 3], [2, 2], PaddingConfig2d::Explicit(0, 0, 1, 1)),
        (3, 8, [3, 3], [1, 1], PaddingConfig2d::Same),
        (2, 5, [2, 3], [2, 1], PaddingConfig2d::Valid),
        (4, 6, [5, 5], [2, 2], PaddingConfig2d::Explicit(1, 2, 2, 1)),
    ] {
        let dev = Device::flex().autodiff();
        dev.seed(41 + inputs as u64);
        let x = on_grid(
            Tensor::<4>::random([5, inputs, 12, 11], Distribution::Normal(0.0, 1.0), &dev),
            1.0 / 8.0,
        );
        let mut conv = Conv2dConfig::new([inputs, outputs], kernel)
            .with_stride(stride)
            .with_padding(padding.clone())
            .init(&dev);
        conv.weight = conv
            .weight
            .clone()
            .map(|w| on_grid(w, 1.0 / 64.0).detach().require_grad());
        conv.bias = conv
            .bias
            .take()
            .map(|b| b.map(|b| on_grid(b, 1.0 / 64.0).detach().require_grad()));
        let run = |fast: bool| {
            let x = x.clone().require_grad();
            let out = if fast {
                conv2d(&conv, x.clone())
            } else {
                conv.forward(x.clone())
            };
            let dims = out.dims();
            let grads = (out.clone() * upstream_grad(dims, &dev)).sum().backward();
            (
                dims,
                tensor_values(out),
                tensor_values(x.grad(&grads).unwrap()),
                tensor_values(conv.weight.grad(&grads).unwrap()),
                tensor_values(conv.bias.as_ref().unwrap().grad(&grads).unwrap()),
            )
        };
        let (fast, refr) = (run(true), run(false));
        let ctx = format!("{inputs} -> {outputs} {kernel:?} stride {stride:?} {padding:?}");
        assert_eq!(fast.0, refr.0, "{ctx}: output shape");
        // On the grids every product and sum is exact: equal values.
        assert_eq!(fast.1, refr.1, "{ctx}: forward values differ");
        assert!(rel_l2(&fast.2, &refr.2) < 1e-5, "{ctx}: x gradient");
        assert!(rel_l2(&fast.3, &refr.3) < 1e-5, "{ctx}: weight gradient");
        assert!(rel_l2(&fast.4, &refr.4) < 1e-5, "{ctx}: bias gradient");
    }
}

/// The global average pool against burn's two means: values and the input's gradient.
#[test]
fn global_average_pool_matches_burns_means() {
    use tinycnn_host::train::fastconv::global_average_pool;
    let dev = Device::flex().autodiff();
    dev.seed(23);
    for dims in [[4, 6, 7, 5], [1, 3, 1, 1], [3, 2, 14, 14]] {
        let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &dev);
        let run = |fast: bool| {
            let x = x.clone().require_grad();
            let out = if fast {
                global_average_pool(x.clone())
            } else {
                x.clone().mean_dim(3).mean_dim(2)
            };
            let shape = out.dims();
            let grads = (out.clone() * upstream_grad(shape, &dev)).sum().backward();
            (
                shape,
                tensor_values(out),
                tensor_values(x.grad(&grads).unwrap()),
            )
        };
        let (fast, refr) = (run(true), run(false));
        assert_eq!(fast.0, refr.0, "{dims:?}: shape");
        assert!(max_rel_diff(&fast.1, &refr.1) < 1e-6, "{dims:?}: values");
        assert!(rel_l2(&fast.2, &refr.2) < 1e-6, "{dims:?}: gradient");
    }
}
