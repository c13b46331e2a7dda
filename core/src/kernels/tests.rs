//! Fast kernels against the plain references, on random values and random
//! shapes (every kernel side, both paddings, pooled or not, both
//! activations), plus small cases computed by hand. The [`wide`] kernels must
//! give the portable int8 kernels' bytes exactly, and the reference's f32
//! values up to rounding.

use super::reference;
use super::{ConvGeometry, f32 as fast_f32, int8, max_pool2, wide};
use crate::arch::{Activation, Conv, Padding, Shape};
use proptest::prelude::*;
use proptest::test_runner::TestRng;
use std::vec::Vec;

fn rng(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &bytes)
}

fn random_i8(rng: &mut TestRng, n: usize, low: i8, high: i8) -> Vec<i8> {
    (0..n).map(|_| rng.random_range(low..=high)).collect()
}

fn as_bytes(values: &[i8]) -> Vec<u8> {
    values.iter().map(|&v| v as u8).collect()
}

fn float_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Random requantisation constants for `n` channels, as bytes.
struct RandomRequant {
    bias: Vec<u8>,
    multipliers: Vec<u8>,
    shifts: Vec<u8>,
}

fn random_requant(rng: &mut TestRng, n: usize, extreme: bool) -> RandomRequant {
    let mut bias = Vec::new();
    let mut multipliers = Vec::new();
    let mut shifts = Vec::new();
    for _ in 0..n {
        bias.extend(rng.random_range(-20_000i32..20_000).to_le_bytes());
        let (multiplier, shift): (i32, i8) = if extreme {
            (rng.random_range(0..=i32::MAX), rng.random_range(-31..=30))
        } else {
            (
                rng.random_range(1 << 30..=i32::MAX),
                rng.random_range(-14..=-4),
            )
        };
        multipliers.extend(multiplier.to_le_bytes());
        shifts.push(shift as u8);
    }
    RandomRequant {
        bias,
        multipliers,
        shifts,
    }
}

/// A random convolution geometry that validation would accept.
fn random_geometry(rng: &mut TestRng, pooled: bool) -> (Conv, Shape) {
    let kernel: u8 = [1, 3, 5][rng.random_range(0..3usize)];
    let padding = if rng.random_bool(0.5) {
        Padding::Same
    } else {
        Padding::Valid
    };
    let activation = if rng.random_bool(0.5) {
        Activation::Relu
    } else {
        Activation::None
    };
    let conv = Conv::square(kernel, padding, rng.random_range(1..=9u16), activation);
    let smallest = if padding == Padding::Valid {
        usize::from(kernel)
    } else {
        1
    } + usize::from(pooled);
    let input = Shape::new(
        rng.random_range(smallest..=smallest + 7),
        rng.random_range(smallest..=smallest + 7),
        [1, 2, 3, 4, 5, 8][rng.random_range(0..6usize)],
    );
    (conv, input)
}

fn check_int8_conv(seed: u64, extreme: bool) {
    let mut rng = rng(seed);
    for case in 0..6 {
        let pooled = case % 2 == 0;
        let (conv, shape) = random_geometry(&mut rng, pooled);
        let geometry = ConvGeometry::new(&conv, shape, pooled);
        let input = random_i8(&mut rng, shape.values(), -128, 127);
        let weights = as_bytes(&random_i8(
            &mut rng,
            usize::from(conv.filters) * geometry.fan_in(),
            -127,
            127,
        ));
        let filters = usize::from(conv.filters);
        let q = random_requant(&mut rng, filters, extreme);
        let requant = int8::Requantization::new(
            filters,
            &q.bias,
            &q.multipliers,
            &q.shifts,
            rng.random_range(-128..=127),
            rng.random_range(-128..=127),
            conv.activation,
        )
        .unwrap();
        let layer = int8::ConvLayer::new(geometry, &weights, requant).unwrap();

        let mut fast = std::vec![0i8; geometry.output().values()];
        int8::conv(&input, &layer, &mut fast).unwrap();
        assert_eq!(wide_conv(&input, &layer), fast, "{geometry:?} seed={seed}");

        let mut full = std::vec![0i8; geometry.conv_output().values()];
        reference::conv_i8(&input, &layer, &mut full);
        let expected = if pooled {
            let mut pooled = std::vec![0i8; geometry.output().values()];
            reference::max_pool2(&full, geometry.conv_output(), &mut pooled);
            let mut fast_pool = std::vec![0i8; pooled.len()];
            max_pool2(&full, geometry.conv_output(), &mut fast_pool).unwrap();
            assert_eq!(fast_pool, pooled);
            pooled
        } else {
            full
        };
        assert_eq!(fast, expected, "{geometry:?} seed={seed}");
    }
}

fn check_int8_dense(seed: u64, activation: Activation) {
    let mut rng = rng(seed);
    let inputs = rng.random_range(1..=80usize);
    let outputs = rng.random_range(1..=12usize);
    let input = random_i8(&mut rng, inputs, -128, 127);
    let rows = as_bytes(&random_i8(&mut rng, outputs * inputs, -127, 127));
    let q = random_requant(&mut rng, outputs, seed.is_multiple_of(2));
    let requant = int8::Requantization::new(
        outputs,
        &q.bias,
        &q.multipliers,
        &q.shifts,
        rng.random_range(-128..=127),
        rng.random_range(-128..=127),
        activation,
    )
    .unwrap();
    let layer = int8::DenseLayer::new(inputs, &rows, requant).unwrap();
    let mut fast = std::vec![0i8; outputs];
    int8::dense(&input, &layer, &mut fast).unwrap();
    let mut plain = std::vec![0i8; outputs];
    reference::dense_i8(&input, &layer, &mut plain);
    assert_eq!(fast, plain);
    let mut widened = std::vec![0i16; inputs];
    wide::widen(
        &input,
        layer.requantization().input_zero_point(),
        &mut widened,
    )
    .unwrap();
    let mut wide_out = std::vec![0i8; outputs];
    wide::dense(&widened, &layer, &mut wide_out).unwrap();
    assert_eq!(wide_out, plain);
}

/// [`wide::conv`] of `input`, widened as the host widens it.
fn wide_conv(input: &[i8], layer: &int8::ConvLayer<'_>) -> Vec<i8> {
    let mut widened = std::vec![0i16; input.len()];
    wide::widen(
        input,
        layer.requantization().input_zero_point(),
        &mut widened,
    )
    .unwrap();
    let mut output = std::vec![0i8; layer.geometry().output().values()];
    let mut patches = std::vec![0i16; wide::patches_len(layer.geometry())];
    wide::conv(&widened, &mut patches, layer, &mut output).unwrap();
    output
}

/// |a - b| within `1e-5` of `magnitude`: the two sides add the same products
/// in different orders.
fn close(a: f32, b: f32, magnitude: f32) -> bool {
    (a - b).abs() <= 1e-5 * magnitude.max(1.0)
}

fn random_f32(rng: &mut TestRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn check_f32_conv(seed: u64) {
    let mut rng = rng(seed);
    for case in 0..6 {
        let pooled = case % 2 == 1;
        let (conv, shape) = random_geometry(&mut rng, pooled);
        let geometry = ConvGeometry::new(&conv, shape, pooled);
        let input = random_f32(&mut rng, shape.values());
        let filters = random_f32(&mut rng, usize::from(conv.filters) * geometry.fan_in());
        let bias = random_f32(&mut rng, usize::from(conv.filters));
        let (filter_bytes, bias_bytes) = (float_bytes(&filters), float_bytes(&bias));
        let layer = fast_f32::ConvLayer::new(geometry, &filter_bytes, &bias_bytes, conv.activation)
            .unwrap();
        let mut fast = std::vec![0f32; geometry.output().values()];
        fast_f32::conv(&input, &layer, &mut fast).unwrap();
        let mut wide_out = std::vec![0f32; geometry.output().values()];
        let mut patches = std::vec![0f32; wide::patches_len(&geometry)];
        wide::conv_f32(&input, &mut patches, &layer, &mut wide_out).unwrap();

        let full_shape = geometry.conv_output();
        let mut full = std::vec![0f32; full_shape.values()];
        reference::conv_f32(
            &input,
            shape,
            conv.side(),
            geometry.pad,
            &filters,
            &bias,
            conv.activation,
            &mut full,
        );
        let expected = if pooled {
            let mut pooled = std::vec![0f32; geometry.output().values()];
            reference::max_pool2(&full, full_shape, &mut pooled);
            pooled
        } else {
            full
        };
        let magnitude = geometry.fan_in() as f32 + 1.0;
        for (a, b) in fast.iter().zip(&expected) {
            assert!(close(*a, *b, magnitude), "{a} vs {b} ({geometry:?})");
        }
        for (a, b) in wide_out.iter().zip(&expected) {
            assert!(close(*a, *b, magnitude), "wide {a} vs {b} ({geometry:?})");
        }
    }
}

fn check_f32_dense(seed: u64, activation: Activation) {
    let mut rng = rng(seed);
    let inputs = rng.random_range(1..=80usize);
    let outputs = rng.random_range(1..=12usize);
    let input = random_f32(&mut rng, inputs);
    let rows = random_f32(&mut rng, outputs * inputs);
    let bias = random_f32(&mut rng, outputs);
    let (row_bytes, bias_bytes) = (float_bytes(&rows), float_bytes(&bias));
    let layer = fast_f32::DenseLayer::new(inputs, &row_bytes, &bias_bytes, activation).unwrap();
    let mut fast = std::vec![0f32; outputs];
    fast_f32::dense(&input, &layer, &mut fast).unwrap();
    let mut wide_out = std::vec![0f32; outputs];
    wide::dense_f32(&input, &layer, &mut wide_out).unwrap();
    let mut plain = std::vec![0f32; outputs];
    reference::dense_f32(&input, &rows, &bias, activation, &mut plain);
    for (a, b) in fast.iter().chain(&wide_out).zip(plain.iter().cycle()) {
        assert!(close(*a, *b, inputs as f32 + 1.0), "{a} vs {b}");
    }
}

fn activation(relu: bool) -> Activation {
    if relu {
        Activation::Relu
    } else {
        Activation::None
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn int8_conv_matches_reference(seed: u64, extreme: bool) {
        check_int8_conv(seed, extreme);
    }

    #[test]
    fn int8_dense_matches_reference(seed: u64, relu: bool) {
        check_int8_dense(seed, activation(relu));
    }

    #[test]
    fn f32_conv_matches_reference(seed: u64) {
        check_f32_conv(seed);
    }

    #[test]
    fn f32_dense_matches_reference(seed: u64, relu: bool) {
        check_f32_dense(seed, activation(relu));
    }
}

/// The reference network's own shapes, once each, with realistic constants.
#[test]
fn int8_conv_on_the_reference_shapes() {
    let mut rng = rng(7);
    for (side, channels, filters) in [(28, 1, 64), (14, 64, 16), (7, 128, 8)] {
        let conv = Conv::square(3, Padding::Same, filters as u16, Activation::Relu);
        let shape = Shape::new(side, side, channels);
        let geometry = ConvGeometry::new(&conv, shape, true);
        let input = random_i8(&mut rng, shape.values(), -128, 127);
        let weights = as_bytes(&random_i8(&mut rng, filters * geometry.fan_in(), -127, 127));
        let q = random_requant(&mut rng, filters, false);
        let requant = int8::Requantization::new(
            filters,
            &q.bias,
            &q.multipliers,
            &q.shifts,
            -128,
            -128,
            Activation::Relu,
        )
        .unwrap();
        let layer = int8::ConvLayer::new(geometry, &weights, requant).unwrap();
        let mut fast = std::vec![0i8; geometry.output().values()];
        int8::conv(&input, &layer, &mut fast).unwrap();
        let mut full = std::vec![0i8; geometry.conv_output().values()];
        reference::conv_i8(&input, &layer, &mut full);
        let mut pooled = std::vec![0i8; fast.len()];
        reference::max_pool2(&full, geometry.conv_output(), &mut pooled);
        assert_eq!(fast, pooled, "{side}x{side}x{channels} -> {filters}");
        assert_eq!(
            wide_conv(&input, &layer),
            pooled,
            "wide, {side}x{side}x{channels}"
        );
        assert_eq!(geometry.output(), Shape::new(side / 2, side / 2, filters));
    }
}

fn one_channel(kernel: u8, padding: Padding, side: usize, pooled: bool) -> ConvGeometry {
    let conv = Conv::square(kernel, padding, 1, Activation::Relu);
    ConvGeometry::new(&conv, Shape::new(side, side, 1), pooled)
}

/// One channel, 2x2 image, all-ones filter: every 'same' output sees all
/// four pixels (the rest of each window is padding).
#[test]
fn int8_conv_by_hand() {
    // Input zero point -128: values 0, 10, 20, 30 in real terms are -128, -118, ...
    let input = [-128i8, -118, -108, -98];
    let filters = [1u8; 9];
    let bias = 5i32.to_le_bytes();
    // multiplier 0.5, shift -1: total scale 0.25.
    let multiplier = (1i32 << 30).to_le_bytes();
    let shifts = [(-1i8) as u8];
    let requant =
        int8::Requantization::new(1, &bias, &multiplier, &shifts, -128, -10, Activation::Relu)
            .unwrap();
    // Accumulator: 0 + 10 + 20 + 30 = 60, + bias 5 = 65; 65 * 0.5 = 32.5 -> 33
    // (high multiply, tie up); 33 / 2 = 16.5 -> 17 (tie away); + zp -10 = 7.
    let full_layer =
        int8::ConvLayer::new(one_channel(3, Padding::Same, 2, false), &filters, requant).unwrap();
    let mut full = [0i8; 4];
    reference::conv_i8(&input, &full_layer, &mut full);
    assert_eq!(full, [7; 4]);
    int8::conv(&input, &full_layer, &mut full).unwrap();
    assert_eq!(full, [7; 4]);
    let pooled_layer =
        int8::ConvLayer::new(one_channel(3, Padding::Same, 2, true), &filters, requant).unwrap();
    let mut pooled = [0i8; 1];
    int8::conv(&input, &pooled_layer, &mut pooled).unwrap();
    assert_eq!(pooled, [7]);
    // 'valid' 1x1 on the same pixels: each output sees one pixel.
    let single = int8::ConvLayer::new(
        one_channel(1, Padding::Valid, 2, false),
        &filters[..1],
        requant,
    )
    .unwrap();
    int8::conv(&input, &single, &mut full).unwrap();
    // 0 + 5 = 5; 5 * 0.5 = 2.5 -> 3 (tie up); 3 / 2 = 1.5 -> 2 (tie away); - 10.
    assert_eq!(full[0], -8);
}

/// A negative result is clamped to the output zero point by the fused ReLU,
/// and not without it.
#[test]
fn int8_conv_relu_clamps_at_zero_point() {
    let input = [0i8; 4];
    let filters = [(-1i8) as u8; 9];
    let bias = 0i32.to_le_bytes();
    let multiplier = (1i32 << 30).to_le_bytes();
    let shifts = [0u8];
    // Input zero point -100: each pixel is +100 real units; sum -400.
    for (activation, expected) in [(Activation::Relu, 3), (Activation::None, -128)] {
        let requant =
            int8::Requantization::new(1, &bias, &multiplier, &shifts, -100, 3, activation).unwrap();
        let layer = int8::ConvLayer::new(one_channel(3, Padding::Same, 2, true), &filters, requant)
            .unwrap();
        let mut pooled = [0i8; 1];
        int8::conv(&input, &layer, &mut pooled).unwrap();
        assert_eq!(pooled, [expected]);
    }
}

#[test]
fn f32_conv_by_hand() {
    // 3x3 image 1..9, filter with a single 1 at the centre tap and a 2 at the
    // top-left tap: out(y,x) = in(y,x) + 2 * in(y-1,x-1).
    let input: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let mut filter = [0f32; 9];
    filter[4] = 1.0;
    filter[0] = 2.0;
    let bias = [-1.0f32];
    let mut full = [0f32; 9];
    let shape = Shape::new(3, 3, 1);
    reference::conv_f32(
        &input,
        shape,
        3,
        1,
        &filter,
        &bias,
        Activation::Relu,
        &mut full,
    );
    assert_eq!(full, [0.0, 1.0, 2.0, 3.0, 6.0, 9.0, 6.0, 15.0, 18.0]);
    let (filter_bytes, bias_bytes) = (float_bytes(&filter), float_bytes(&bias));
    let geometry = ConvGeometry::new(
        &Conv::square(3, Padding::Same, 1, Activation::Relu),
        shape,
        true,
    );
    let layer =
        fast_f32::ConvLayer::new(geometry, &filter_bytes, &bias_bytes, Activation::Relu).unwrap();
    let mut pooled = [0f32; 1];
    fast_f32::conv(&input, &layer, &mut pooled).unwrap();
    // max over the top-left 2x2 of the outputs: 0, 1, 3, 6.
    assert_eq!(pooled, [6.0]);
    // 'valid': only the centre position, 5 + 2 * 1 - 1.
    let valid = ConvGeometry {
        pad: 0,
        pooled: false,
        ..geometry
    };
    let layer =
        fast_f32::ConvLayer::new(valid, &filter_bytes, &bias_bytes, Activation::Relu).unwrap();
    let mut centre = [0f32; 1];
    fast_f32::conv(&input, &layer, &mut centre).unwrap();
    assert_eq!(centre, [6.0]);
}

#[test]
fn dense_by_hand() {
    let rows = [1i8, -2, 3, 0, 0, 1].map(|w| w as u8);
    let bias = [10i32, -3]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect::<Vec<_>>();
    let multiplier = [1i32 << 30; 2]
        .iter()
        .flat_map(|m| m.to_le_bytes())
        .collect::<Vec<_>>();
    let shifts = [1u8, 1];
    let requant =
        int8::Requantization::new(2, &bias, &multiplier, &shifts, 0, 0, Activation::None).unwrap();
    let layer = int8::DenseLayer::new(3, &rows, requant).unwrap();
    let mut out = [0i8; 2];
    // (1*4 - 2*5 + 3*6) + 10 = 22 and (6) - 3 = 3; scale 0.5 * 2 = 1.
    int8::dense(&[4, 5, 6], &layer, &mut out).unwrap();
    assert_eq!(out, [22, 3]);
    // Wrong lengths write nothing.
    assert!(int8::dense(&[4, 5], &layer, &mut out).is_none());
    assert!(int8::dense(&[4, 5, 6], &layer, &mut [0; 3]).is_none());
}

#[test]
fn softmax_sums_to_one_and_survives_large_logits() {
    let mut p = [1000.0, 1000.0, -1000.0];
    fast_f32::softmax(&mut p);
    assert!((p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6 && p[2] == 0.0);
    let mut p = [0.0, 1.0f32.ln(), 2.0f32.ln()];
    fast_f32::softmax(&mut p);
    assert!((p[0] - 0.25).abs() < 1e-6 && (p[2] - 0.5).abs() < 1e-6);
}

#[test]
fn layer_constructors_reject_wrong_lengths() {
    let four = [0u8; 4];
    let relu = Activation::Relu;
    assert!(int8::Requantization::new(1, &four, &four, &[0], 0, 0, relu).is_some());
    assert!(int8::Requantization::new(2, &four, &four, &[0], 0, 0, relu).is_none());
    assert!(int8::Requantization::new(1, &[0u8; 5], &four, &[0], 0, 0, relu).is_none());
    let requant = int8::Requantization::new(1, &four, &four, &[0], 0, 0, relu).unwrap();
    let conv = Conv::square(3, Padding::Same, 1, relu);
    let two_channels = ConvGeometry::new(&conv, Shape::new(4, 4, 2), true);
    assert!(int8::ConvLayer::new(two_channels, &[0u8; 18], requant).is_some());
    assert!(int8::ConvLayer::new(two_channels, &[0u8; 17], requant).is_none());
    let two_filters = ConvGeometry {
        filters: 2,
        ..two_channels
    };
    assert!(int8::ConvLayer::new(two_filters, &[0u8; 36], requant).is_none());
    // A kernel larger than the padded input.
    let too_small = ConvGeometry {
        pad: 0,
        input: Shape::new(2, 2, 2),
        ..two_channels
    };
    assert!(int8::ConvLayer::new(too_small, &[0u8; 18], requant).is_none());
    assert!(int8::DenseLayer::new(3, &[0u8; 3], requant).is_some());
    assert!(int8::DenseLayer::new(3, &[0u8; 4], requant).is_none());
    let one = ConvGeometry::new(&conv, Shape::new(4, 4, 1), true);
    assert!(fast_f32::ConvLayer::new(one, &[0u8; 36], &four, relu).is_some());
    assert!(fast_f32::ConvLayer::new(one, &[0u8; 35], &four, relu).is_none());
    assert!(fast_f32::DenseLayer::new(2, &[0u8; 8], &four, relu).is_some());
    assert!(fast_f32::DenseLayer::new(2, &[0u8; 8], &[0u8; 3], relu).is_none());
}
