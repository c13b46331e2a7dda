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

/// The [`wide`] kernels of the layers beyond the tutorial's against the portable ones of
/// [`super::general`], byte for byte, on random layers: windows 1..=11 by 1..=11, strides 1 to
/// 3 on each axis, 'same' and 'valid', 1, 2, 3, 4, 5, 8, 16 or 17 input channels, depthwise
/// multipliers 1 and 2, zero points anywhere and at both extremes, activation ranges of no
/// activation, ReLU, ReLU6 and any other, ordinary and extreme requantisation constants.
mod general_layers {
    use super::super::general::{self, AddParams, WindowGeometry};
    use super::super::int8::Requantization;
    use super::super::wide;
    use super::{as_bytes, random_i8, rng};
    use crate::arch::Shape;
    use crate::quant::{self, Rounding};
    use proptest::prelude::*;
    use proptest::test_runner::TestRng;
    use std::vec;
    use std::vec::Vec;

    /// A random window on a random input, as TensorFlow resolves it.
    pub(super) fn random_window(rng: &mut TestRng, outputs: usize) -> WindowGeometry {
        loop {
            let kernel = (rng.random_range(1..=11usize), rng.random_range(1..=11usize));
            let stride = (rng.random_range(1..=3usize), rng.random_range(1..=3usize));
            let same = rng.random_bool(0.5);
            let channels = [1, 2, 3, 4, 5, 8, 16, 17][rng.random_range(0..8usize)];
            let side = |kernel: usize, rng: &mut TestRng| {
                let smallest = if same { 1 } else { kernel };
                rng.random_range(smallest..=smallest + 12)
            };
            let input = Shape::new(side(kernel.0, rng), side(kernel.1, rng), channels);
            let outputs = if outputs == 0 { channels } else { outputs };
            if let Some(geometry) = WindowGeometry::resolve(
                input, kernel.0, kernel.1, stride.0, stride.1, same, outputs,
            ) {
                return geometry;
            }
        }
    }

    /// A zero point: anywhere, or at either extreme.
    fn zero_point(rng: &mut TestRng) -> i8 {
        match rng.random_range(0..4) {
            0 => i8::MIN,
            1 => i8::MAX,
            _ => rng.random(),
        }
    }

    /// The clamp of no activation, ReLU, ReLU6 (from a random scale) or any range.
    fn activation_range(rng: &mut TestRng, zero_point: i8) -> (i32, i32) {
        match rng.random_range(0..4) {
            0 => (-128, 127),
            1 => (i32::from(zero_point), 127),
            2 => quant::relu_range(rng.random_range(0.001f32..0.1), zero_point, true),
            _ => {
                let low = rng.random_range(-128..=127);
                (low, rng.random_range(-128..=127))
            }
        }
    }

    /// Owned requantisation constants of a random layer.
    pub(super) struct Constants {
        bias: Vec<u8>,
        multipliers: Vec<u8>,
        shifts: Vec<u8>,
        zero_points: (i8, i8),
        range: (i32, i32),
    }

    impl Constants {
        pub(super) fn random(rng: &mut TestRng, outputs: usize) -> Self {
            let extreme = rng.random_bool(0.25);
            let output_zero_point = zero_point(rng);
            let mut constants = Constants {
                bias: Vec::new(),
                multipliers: Vec::new(),
                shifts: Vec::new(),
                zero_points: (zero_point(rng), output_zero_point),
                range: activation_range(rng, output_zero_point),
            };
            for _ in 0..outputs {
                let (bias, multiplier, shift): (i32, i32, i8) = if extreme {
                    (
                        rng.random(),
                        rng.random_range(0..=i32::MAX),
                        rng.random_range(-31..=30),
                    )
                } else {
                    (
                        rng.random_range(-20_000..20_000),
                        rng.random_range(1 << 30..=i32::MAX),
                        rng.random_range(-14..=0),
                    )
                };
                constants.bias.extend(bias.to_le_bytes());
                constants.multipliers.extend(multiplier.to_le_bytes());
                constants.shifts.push(shift as u8);
            }
            constants
        }

        pub(super) fn requantization(&self) -> Requantization<'_> {
            Requantization::new(
                self.shifts.len(),
                &self.bias,
                &self.multipliers,
                &self.shifts,
                self.zero_points.0,
                self.zero_points.1,
                crate::arch::Activation::None,
            )
            .unwrap()
            .with_activation_range(self.range.0, self.range.1)
        }
    }

    fn widened(input: &[i8], zero_point: i32) -> Vec<i16> {
        let mut widened = vec![0i16; input.len()];
        wide::widen(input, zero_point, &mut widened).unwrap();
        widened
    }

    fn check_window_conv(seed: u64) {
        let mut rng = rng(seed);
        let outputs = [1, 2, 3, 8, 16, 17, 70][rng.random_range(0..7usize)];
        let geometry = random_window(&mut rng, outputs);
        let fan_in = geometry.kernel_height * geometry.kernel_width * geometry.input.channels;
        let input = random_i8(&mut rng, geometry.input.values(), -128, 127);
        let weights = as_bytes(&random_i8(&mut rng, outputs * fan_in, -127, 127));
        let constants = Constants::random(&mut rng, outputs);
        let requantization = constants.requantization();
        let mut expected = vec![0i8; geometry.output.values()];
        general::conv(&input, &geometry, &weights, &requantization, &mut expected).unwrap();
        let widened = widened(&input, requantization.input_zero_point());
        let mut patches = vec![0i16; wide::window_patches_len(&geometry)];
        let mut got = vec![0i8; expected.len()];
        wide::window_conv(
            &widened,
            &mut patches,
            &geometry,
            &weights,
            &requantization,
            &mut got,
        )
        .unwrap();
        assert_eq!(got, expected, "{geometry:?} seed={seed}");
    }

    fn check_depthwise(seed: u64, multiplier: usize) {
        let mut rng = rng(seed);
        let geometry = random_window(&mut rng, 0);
        let geometry = WindowGeometry {
            output: Shape::new(
                geometry.output.height,
                geometry.output.width,
                geometry.input.channels * multiplier,
            ),
            ..geometry
        };
        let outputs = geometry.output.channels;
        let taps = geometry.kernel_height * geometry.kernel_width;
        let input = random_i8(&mut rng, geometry.input.values(), -128, 127);
        let weights = as_bytes(&random_i8(&mut rng, taps * outputs, -127, 127));
        let constants = Constants::random(&mut rng, outputs);
        let requantization = constants.requantization();
        let mut expected = vec![0i8; geometry.output.values()];
        general::depthwise(&input, &geometry, &weights, &requantization, &mut expected).unwrap();
        let mut scratch = vec![0i16; wide::depthwise_i16_len(&geometry)];
        let mut lanes = vec![0i32; wide::depthwise_i32_len(&geometry)];
        let mut got = vec![0i8; expected.len()];
        wide::depthwise(
            &input,
            &mut scratch,
            &mut lanes,
            &geometry,
            &weights,
            &requantization,
            &mut got,
        )
        .unwrap();
        assert_eq!(got, expected, "{geometry:?} seed={seed}");
    }

    fn check_average_pool(seed: u64) {
        let mut rng = rng(seed);
        let geometry = random_window(&mut rng, 0);
        let input = random_i8(&mut rng, geometry.input.values(), -128, 127);
        let zero_point = zero_point(&mut rng);
        let (low, high) = activation_range(&mut rng, zero_point);
        let mut expected = vec![0i8; geometry.output.values()];
        general::average_pool(&input, &geometry, low, high, &mut expected).unwrap();
        let mut got = vec![0i8; expected.len()];
        wide::average_pool(&input, &geometry, low, high, &mut got).unwrap();
        assert_eq!(got, expected, "{geometry:?} seed={seed}");
    }

    /// Random addition constants: as TensorFlow Lite's converter gives them (from scales), or
    /// anything the format holds (left shifts, zero points outside the int8 range).
    fn random_add(rng: &mut TestRng) -> AddParams {
        let zero_points = [zero_point(rng), zero_point(rng)];
        let output_zero_point = zero_point(rng);
        let mut params = quant::add_params(
            [
                rng.random_range(0.001f32..1.0),
                rng.random_range(0.001f32..1.0),
            ],
            zero_points,
            rng.random_range(0.001f32..1.0),
            output_zero_point,
        );
        let (low, high) = activation_range(rng, output_zero_point);
        (params.activation_min, params.activation_max) = (low, high);
        if rng.random_bool(0.2) {
            params.input_multipliers = [rng.random(), rng.random()];
            params.input_shifts = [rng.random_range(-31..=30), rng.random_range(-31..=30)];
            params.output_multiplier = rng.random();
            params.output_shift = rng.random_range(-31..=30);
            params.input_zero_points = [rng.random_range(-300..=300), rng.random_range(-300..=300)];
        }
        params
    }

    fn check_add(seed: u64) {
        let mut rng = rng(seed);
        let params = random_add(&mut rng);
        let len = rng.random_range(0..=300usize);
        let a = random_i8(&mut rng, len, -128, 127);
        let b = random_i8(&mut rng, len, -128, 127);
        let mut expected = vec![0i8; len];
        general::add(&a, &b, &params, &mut expected).unwrap();
        let mut got = vec![0i8; len];
        wide::add(&a, &b, &params, &mut got).unwrap();
        assert_eq!(got, expected, "{params:?} seed={seed}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn window_conv_gives_the_general_kernels_bytes(seed: u64) {
            check_window_conv(seed);
        }

        #[test]
        fn depthwise_gives_the_general_kernels_bytes(seed: u64, multiplier in 1..=2usize) {
            check_depthwise(seed, multiplier);
        }

        #[test]
        fn average_pool_gives_the_general_kernels_bytes(seed: u64) {
            check_average_pool(seed);
        }

        #[test]
        fn add_gives_the_general_kernels_bytes(seed: u64) {
            check_add(seed);
        }
    }

    /// A global average pool (the whole map one window) and a window wider than any block of
    /// channels the kernels hold.
    #[test]
    fn average_pool_of_whole_maps_and_many_channels() {
        let mut rng = rng(3);
        for (side, channels) in [(25usize, 64usize), (8, 130), (1, 1), (7, 3)] {
            let shape = Shape::new(side, side.div_ceil(2), channels);
            let geometry =
                WindowGeometry::resolve(shape, side, side.div_ceil(2), 1, 1, false, channels)
                    .unwrap();
            let input = random_i8(&mut rng, shape.values(), -128, 127);
            let mut expected = vec![0i8; channels];
            general::average_pool(&input, &geometry, -128, 127, &mut expected).unwrap();
            let mut got = vec![0i8; channels];
            wide::average_pool(&input, &geometry, -128, 127, &mut got).unwrap();
            assert_eq!(got, expected);
        }
    }

    /// The lane-wise requantisation is the core's, for every rounding, on accumulators and
    /// constants at their extremes.
    #[test]
    fn depthwise_and_window_conv_requantise_extreme_accumulators() {
        let mut rng = rng(11);
        for seed in 0..300 {
            check_window_conv(seed);
            check_depthwise(seed, 1 + (seed % 2) as usize);
        }
        // Accumulators at the extremes: a 1x1 layer of one channel whose weights are 127 or
        // -127 and whose inputs are at the far ends of the zero point.
        for _ in 0..200 {
            let geometry =
                WindowGeometry::resolve(Shape::new(1, 1, 1), 1, 1, 1, 1, false, 1).unwrap();
            let constants = Constants::random(&mut rng, 1);
            let requantization = constants.requantization();
            let input = [if rng.random_bool(0.5) { -128i8 } else { 127 }];
            let weights = [if rng.random_bool(0.5) { 127i8 } else { -127 } as u8];
            let mut expected = [0i8];
            general::conv(&input, &geometry, &weights, &requantization, &mut expected).unwrap();
            let widened = widened(&input, requantization.input_zero_point());
            let mut patches = vec![0i16; wide::window_patches_len(&geometry)];
            let mut got = [0i8];
            wide::window_conv(
                &widened,
                &mut patches,
                &geometry,
                &weights,
                &requantization,
                &mut got,
            )
            .unwrap();
            assert_eq!(got, expected);
        }
        assert_eq!(
            quant::requantize_clamped(Rounding::Double, i32::MIN, i32::MIN, 0, 0, -128, 127),
            127
        );
    }

    #[test]
    fn slices_that_do_not_fit_are_refused() {
        let geometry = WindowGeometry::resolve(Shape::new(4, 4, 2), 3, 3, 2, 2, true, 2).unwrap();
        let constants = Constants::random(&mut rng(1), 2);
        let requantization = constants.requantization();
        let input = vec![0i8; 32];
        let widened = vec![0i16; 32];
        let weights = vec![0u8; 18 * 2];
        let mut patches = vec![0i16; wide::window_patches_len(&geometry)];
        let mut output = vec![0i8; geometry.output.values()];
        let mut short = vec![0i8; geometry.output.values() - 1];
        assert!(
            wide::window_conv(
                &widened,
                &mut patches,
                &geometry,
                &weights,
                &requantization,
                &mut short
            )
            .is_none()
        );
        assert!(
            wide::window_conv(
                &widened[1..],
                &mut patches,
                &geometry,
                &weights,
                &requantization,
                &mut output
            )
            .is_none()
        );
        assert!(
            wide::window_conv(
                &widened,
                &mut patches[1..],
                &geometry,
                &weights,
                &requantization,
                &mut output
            )
            .is_none()
        );
        let mut scratch = vec![0i16; wide::depthwise_i16_len(&geometry)];
        let mut lanes = vec![0i32; wide::depthwise_i32_len(&geometry)];
        let dw_weights = vec![0u8; 9 * 2];
        assert!(
            wide::depthwise(
                &input,
                &mut scratch,
                &mut lanes,
                &geometry,
                &dw_weights,
                &requantization,
                &mut output
            )
            .is_some()
        );
        assert!(
            wide::depthwise(
                &input,
                &mut scratch[1..],
                &mut lanes,
                &geometry,
                &dw_weights,
                &requantization,
                &mut output
            )
            .is_none()
        );
        assert!(
            wide::depthwise(
                &input,
                &mut scratch,
                &mut lanes,
                &geometry,
                &weights,
                &requantization,
                &mut output
            )
            .is_none()
        );
        assert!(wide::average_pool(&input[1..], &geometry, -128, 127, &mut output).is_none());
        let params = quant::add_params([0.1, 0.2], [0, 0], 0.3, 0);
        assert!(wide::add(&input, &input[1..], &params, &mut [0i8; 32]).is_none());
    }
}
