//! Fast kernels against the plain references, on random values and several
//! shapes, plus small cases computed by hand.

use super::reference;
use super::{f32 as fast_f32, int8, max_pool2};
use crate::arch::Tensor;
use proptest::prelude::*;
use proptest::test_runner::TestRng;
use std::vec::Vec;

fn tensor<T: Copy + Default, const H: usize, const W: usize, const C: usize>(
    values: impl IntoIterator<Item = T>,
) -> Tensor<T, H, W, C> {
    let mut t = [[[T::default(); C]; W]; H];
    let mut values = values.into_iter();
    for v in t.iter_mut().flatten().flatten() {
        *v = values.next().expect("enough values");
    }
    t
}

fn rng(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &bytes)
}

fn random_i8(rng: &mut TestRng, n: usize, low: i8, high: i8) -> Vec<i8> {
    (0..n).map(|_| rng.random_range(low..=high)).collect()
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

fn check_int8_conv<
    const H: usize,
    const W: usize,
    const IC: usize,
    const OC: usize,
    const PH: usize,
    const PW: usize,
>(
    seed: u64,
    extreme: bool,
) {
    let mut rng = rng(seed);
    for _ in 0..4 {
        let input: Tensor<i8, H, W, IC> = tensor(random_i8(&mut rng, H * W * IC, -128, 127));
        let filters: Vec<u8> = random_i8(&mut rng, OC * 9 * IC, -127, 127)
            .iter()
            .map(|&w| w as u8)
            .collect();
        let q = random_requant(&mut rng, OC, extreme);
        let input_zp = rng.random_range(-128..=127);
        let output_zp = rng.random_range(-128..=127);
        let requant = int8::Requantization::new(
            OC,
            &q.bias,
            &q.multipliers,
            &q.shifts,
            input_zp,
            output_zp,
            true,
        )
        .unwrap();
        let layer = int8::ConvLayer::<IC, OC>::new(&filters, requant).unwrap();

        let mut fused = [[[0i8; OC]; PW]; PH];
        int8::conv3x3_relu_maxpool2(&input, &layer, &mut fused);

        let mut full = [[[0i8; OC]; W]; H];
        reference::conv3x3_same_i8(&input, &layer, &mut full);
        let mut pooled = [[[0i8; OC]; PW]; PH];
        reference::max_pool2(&full, &mut pooled);
        assert_eq!(fused, pooled, "H={H} W={W} IC={IC} OC={OC} seed={seed}");

        let mut fast_pool = [[[0i8; OC]; PW]; PH];
        max_pool2(&full, &mut fast_pool);
        assert_eq!(fast_pool, pooled);
    }
}

fn check_int8_dense<
    const H: usize,
    const W: usize,
    const C: usize,
    const IN: usize,
    const OUT: usize,
>(
    seed: u64,
    relu: bool,
) {
    let mut rng = rng(seed);
    let input: Tensor<i8, H, W, C> = tensor(random_i8(&mut rng, IN, -128, 127));
    let rows: Vec<u8> = random_i8(&mut rng, OUT * IN, -127, 127)
        .iter()
        .map(|&w| w as u8)
        .collect();
    let q = random_requant(&mut rng, OUT, seed.is_multiple_of(2));
    let requant = int8::Requantization::new(
        OUT,
        &q.bias,
        &q.multipliers,
        &q.shifts,
        rng.random_range(-128..=127),
        rng.random_range(-128..=127),
        relu,
    )
    .unwrap();
    let layer = int8::DenseLayer::<IN, OUT>::new(&rows, requant).unwrap();
    let mut fast = [0i8; OUT];
    int8::dense(&input, &layer, &mut fast);
    let mut plain = [0i8; OUT];
    reference::dense_i8(&input, &layer, &mut plain);
    assert_eq!(fast, plain);
}

/// |a - b| within `tolerance` of the sum of absolute terms: the two sides
/// add the same products in different orders.
fn close(a: f32, b: f32, magnitude: f32) -> bool {
    (a - b).abs() <= 1e-5 * magnitude.max(1.0)
}

fn check_f32_conv<
    const H: usize,
    const W: usize,
    const IC: usize,
    const OC: usize,
    const PH: usize,
    const PW: usize,
>(
    seed: u64,
) {
    let mut rng = rng(seed);
    let input: Tensor<f32, H, W, IC> =
        tensor((0..H * W * IC).map(|_| rng.random_range(-1.0f32..1.0)));
    let filters: Vec<f32> = (0..OC * 9 * IC)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let bias: [f32; OC] = core::array::from_fn(|_| rng.random_range(-1.0f32..1.0));
    let filter_bytes: Vec<u8> = filters.iter().flat_map(|v| v.to_le_bytes()).collect();
    let bias_bytes: Vec<u8> = bias.iter().flat_map(|v| v.to_le_bytes()).collect();
    let layer = fast_f32::ConvLayer::<IC, OC>::new(&filter_bytes, &bias_bytes).unwrap();

    let mut fused = [[[0f32; OC]; PW]; PH];
    fast_f32::conv3x3_relu_maxpool2(&input, &layer, &mut fused);
    let mut full = [[[0f32; OC]; W]; H];
    reference::conv3x3_same_relu_f32(&input, &filters, &bias, &mut full);
    let mut pooled = [[[0f32; OC]; PW]; PH];
    reference::max_pool2(&full, &mut pooled);
    let magnitude = (9 * IC) as f32 + 1.0;
    for (a, b) in fused
        .iter()
        .flatten()
        .flatten()
        .zip(pooled.iter().flatten().flatten())
    {
        assert!(
            close(*a, *b, magnitude),
            "{a} vs {b} (H={H} W={W} IC={IC} OC={OC})"
        );
    }
}

fn check_f32_dense<const IN: usize, const OUT: usize>(seed: u64, relu: bool) {
    let mut rng = rng(seed);
    let input: [f32; IN] = core::array::from_fn(|_| rng.random_range(-1.0f32..1.0));
    let rows: Vec<f32> = (0..OUT * IN)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let bias: [f32; OUT] = core::array::from_fn(|_| rng.random_range(-1.0f32..1.0));
    let row_bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    let bias_bytes: Vec<u8> = bias.iter().flat_map(|v| v.to_le_bytes()).collect();
    let layer = fast_f32::DenseLayer::<IN, OUT>::new(&row_bytes, &bias_bytes, relu).unwrap();
    let mut fast = [0f32; OUT];
    fast_f32::dense_vector(&input, &layer, &mut fast);
    let mut plain = [0f32; OUT];
    reference::dense_f32(int8::as_tensor(&input), &rows, &bias, relu, &mut plain);
    for (a, b) in fast.iter().zip(&plain) {
        assert!(close(*a, *b, IN as f32 + 1.0), "{a} vs {b}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn int8_conv_matches_reference(seed: u64, extreme: bool) {
        check_int8_conv::<2, 2, 1, 1, 1, 1>(seed, extreme);
        check_int8_conv::<3, 3, 2, 3, 1, 1>(seed, extreme);
        check_int8_conv::<4, 5, 3, 2, 2, 2>(seed, extreme);
        check_int8_conv::<7, 7, 8, 5, 3, 3>(seed, extreme);
        check_int8_conv::<6, 3, 16, 4, 3, 1>(seed, extreme);
        check_int8_conv::<5, 8, 5, 7, 2, 4>(seed, extreme);
        check_int8_conv::<28, 28, 1, 4, 14, 14>(seed, extreme);
    }

    #[test]
    fn int8_dense_matches_reference(seed: u64, relu: bool) {
        check_int8_dense::<1, 1, 1, 1, 1>(seed, relu);
        check_int8_dense::<1, 1, 7, 7, 3>(seed, relu);
        check_int8_dense::<3, 3, 4, 36, 5>(seed, relu);
        check_int8_dense::<2, 3, 5, 30, 10>(seed, relu);
        check_int8_dense::<1, 1, 64, 64, 32>(seed, relu);
    }

    #[test]
    fn f32_conv_matches_reference(seed: u64) {
        check_f32_conv::<2, 2, 1, 1, 1, 1>(seed);
        check_f32_conv::<3, 3, 2, 3, 1, 1>(seed);
        check_f32_conv::<5, 4, 9, 2, 2, 2>(seed);
        check_f32_conv::<7, 7, 17, 5, 3, 3>(seed);
        check_f32_conv::<6, 6, 3, 4, 3, 3>(seed);
    }

    #[test]
    fn f32_dense_matches_reference(seed: u64, relu: bool) {
        check_f32_dense::<1, 1>(seed, relu);
        check_f32_dense::<7, 3>(seed, relu);
        check_f32_dense::<17, 9>(seed, relu);
        check_f32_dense::<64, 10>(seed, relu);
    }
}

/// One channel, 2x2 image, all-ones filter: every 'same' output sees all
/// four pixels (the rest of each window is padding).
#[test]
fn int8_conv_by_hand() {
    // Input zero point -128: values 0, 10, 20, 30 in real terms are -128, -118, ...
    let input: Tensor<i8, 2, 2, 1> = [[[-128], [-118]], [[-108], [-98]]];
    let filters = [1u8; 9];
    let bias = 5i32.to_le_bytes();
    // multiplier 0.5, shift -1: total scale 0.25.
    let multiplier = (1i32 << 30).to_le_bytes();
    let shifts = [(-1i8) as u8];
    let requant =
        int8::Requantization::new(1, &bias, &multiplier, &shifts, -128, -10, true).unwrap();
    let layer = int8::ConvLayer::<1, 1>::new(&filters, requant).unwrap();
    // Accumulator: 0 + 10 + 20 + 30 = 60, + bias 5 = 65; 65 * 0.5 = 32.5 -> 33
    // (high multiply, tie up); 33 / 2 = 16.5 -> 17 (tie away); + zp -10 = 7.
    let mut full = [[[0i8; 1]; 2]; 2];
    reference::conv3x3_same_i8(&input, &layer, &mut full);
    assert_eq!(full, [[[7], [7]], [[7], [7]]]);
    let mut pooled = [[[0i8; 1]; 1]; 1];
    int8::conv3x3_relu_maxpool2(&input, &layer, &mut pooled);
    assert_eq!(pooled, [[[7]]]);
}

/// A negative result is clamped to the output zero point by the fused ReLU.
#[test]
fn int8_conv_relu_clamps_at_zero_point() {
    let input: Tensor<i8, 2, 2, 1> = [[[0], [0]], [[0], [0]]];
    let filters = [(-1i8) as u8; 9];
    let bias = 0i32.to_le_bytes();
    let multiplier = (1i32 << 30).to_le_bytes();
    let shifts = [0u8];
    // Input zero point -100: each pixel is +100 real units; sum -400.
    let requant = int8::Requantization::new(1, &bias, &multiplier, &shifts, -100, 3, true).unwrap();
    let layer = int8::ConvLayer::<1, 1>::new(&filters, requant).unwrap();
    let mut pooled = [[[0i8; 1]; 1]; 1];
    int8::conv3x3_relu_maxpool2(&input, &layer, &mut pooled);
    assert_eq!(pooled, [[[3]]]);
}

#[test]
fn f32_conv_by_hand() {
    // 3x3 image 1..9, filter with a single 1 at the centre tap and a 2 at the
    // top-left tap: out(y,x) = in(y,x) + 2 * in(y-1,x-1).
    let input: Tensor<f32, 3, 3, 1> = tensor((1..=9).map(|v| v as f32));
    let mut filter = [0f32; 9];
    filter[4] = 1.0;
    filter[0] = 2.0;
    let bias = [-1.0f32];
    let mut full = [[[0f32; 1]; 3]; 3];
    reference::conv3x3_same_relu_f32(&input, &filter, &bias, &mut full);
    let expected: Tensor<f32, 3, 3, 1> = tensor([0.0, 1.0, 2.0, 3.0, 6.0, 9.0, 6.0, 15.0, 18.0]);
    assert_eq!(full, expected);
    let filter_bytes: Vec<u8> = filter.iter().flat_map(|v| v.to_le_bytes()).collect();
    let bias_bytes = bias[0].to_le_bytes();
    let layer = fast_f32::ConvLayer::<1, 1>::new(&filter_bytes, &bias_bytes).unwrap();
    let mut pooled = [[[0f32; 1]; 1]; 1];
    fast_f32::conv3x3_relu_maxpool2(&input, &layer, &mut pooled);
    // max over the top-left 2x2 of the outputs: 0, 1, 3, 6.
    assert_eq!(pooled, [[[6.0]]]);
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
    let requant = int8::Requantization::new(2, &bias, &multiplier, &shifts, 0, 0, false).unwrap();
    let layer = int8::DenseLayer::<3, 2>::new(&rows, requant).unwrap();
    let mut out = [0i8; 2];
    // (1*4 - 2*5 + 3*6) + 10 = 22 and (6) - 3 = 3; scale 0.5 * 2 = 1.
    int8::dense_vector(&[4, 5, 6], &layer, &mut out);
    assert_eq!(out, [22, 3]);
}

#[test]
fn softmax_sums_to_one_and_survives_large_logits() {
    let p = fast_f32::softmax(&[1000.0, 1000.0, -1000.0]);
    assert!((p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6 && p[2] == 0.0);
    let p = fast_f32::softmax(&[0.0, 1.0f32.ln(), 2.0f32.ln()]);
    assert!((p[0] - 0.25).abs() < 1e-6 && (p[2] - 0.5).abs() < 1e-6);
}

#[test]
fn layer_constructors_reject_wrong_lengths() {
    let four = [0u8; 4];
    assert!(int8::Requantization::new(1, &four, &four, &[0], 0, 0, true).is_some());
    assert!(int8::Requantization::new(2, &four, &four, &[0], 0, 0, true).is_none());
    assert!(int8::Requantization::new(1, &[0u8; 5], &four, &[0], 0, 0, true).is_none());
    let requant = int8::Requantization::new(1, &four, &four, &[0], 0, 0, true).unwrap();
    assert!(int8::ConvLayer::<2, 1>::new(&[0u8; 18], requant).is_some());
    assert!(int8::ConvLayer::<2, 1>::new(&[0u8; 17], requant).is_none());
    assert!(int8::ConvLayer::<2, 2>::new(&[0u8; 36], requant).is_none());
    assert!(int8::DenseLayer::<3, 1>::new(&[0u8; 3], requant).is_some());
    assert!(int8::DenseLayer::<3, 1>::new(&[0u8; 4], requant).is_none());
    assert!(fast_f32::ConvLayer::<1, 1>::new(&[0u8; 36], &four).is_some());
    assert!(fast_f32::ConvLayer::<1, 1>::new(&[0u8; 35], &four).is_none());
    assert!(fast_f32::DenseLayer::<2, 1>::new(&[0u8; 8], &four, false).is_some());
    assert!(fast_f32::DenseLayer::<2, 1>::new(&[0u8; 8], &[0u8; 3], false).is_none());
}
