//! The general kernels against plain references that pad the input
//! explicitly (with the zero point, zeros or "no value") and visit every
//! kernel tap, on random shapes: kernels 1..=11 by 1..=11, strides 1 and 2,
//! 'same' and 'valid', 1..=5 channels, depthwise multipliers 1 and 2. Then
//! cases worked out by hand from TensorFlow Lite Micro's arithmetic.

use super::*;
use crate::arch::Activation;
use crate::quant::{add_params, quantize_multiplier, relu_range, softmax_params};
use proptest::prelude::*;
use proptest::test_runner::TestRng;
use std::vec;
use std::vec::Vec;

fn rng(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &bytes)
}

fn random_i8(rng: &mut TestRng, n: usize) -> Vec<i8> {
    (0..n).map(|_| rng.random_range(-128..=127)).collect()
}

fn random_f32(rng: &mut TestRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

fn float_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A random layer shape: kernel, strides, padding, input.
#[derive(Clone, Copy, Debug)]
struct Layer {
    kernel: (usize, usize),
    stride: (usize, usize),
    same: bool,
    input: Shape,
}

fn layers() -> impl Strategy<Value = Layer> {
    (
        (1..=11usize, 1..=11usize),
        (1..=2usize, 1..=2usize),
        any::<bool>(),
        (0..=6usize, 0..=6usize, 1..=5usize),
    )
        .prop_map(
            |(kernel, stride, same, (extra_height, extra_width, channels))| {
                // 'valid' needs the kernel inside the input; 'same' takes any size.
                let side =
                    |kernel: usize, extra: usize| if same { 1 + extra * 2 } else { kernel + extra };
                Layer {
                    kernel,
                    stride,
                    same,
                    input: Shape::new(
                        side(kernel.0, extra_height),
                        side(kernel.1, extra_width),
                        channels,
                    ),
                }
            },
        )
}

impl Layer {
    fn geometry(&self, output_channels: usize) -> WindowGeometry {
        WindowGeometry::resolve(
            self.input,
            self.kernel.0,
            self.kernel.1,
            self.stride.0,
            self.stride.1,
            self.same,
            output_channels,
        )
        .unwrap()
    }
}

/// `geometry`'s input copied into a map large enough for every window,
/// `fill` around it; returns the map and its width.
fn padded<T: Copy>(input: &[T], geometry: &WindowGeometry, fill: T) -> (Vec<T>, usize) {
    let g = geometry;
    let height =
        (g.pad_top + g.input.height).max((g.output.height - 1) * g.stride_height + g.kernel_height);
    let width =
        (g.pad_left + g.input.width).max((g.output.width - 1) * g.stride_width + g.kernel_width);
    let channels = g.input.channels;
    let mut map = vec![fill; height * width * channels];
    for y in 0..g.input.height {
        for x in 0..g.input.width {
            for c in 0..channels {
                map[((y + g.pad_top) * width + x + g.pad_left) * channels + c] =
                    input[(y * g.input.width + x) * channels + c];
            }
        }
    }
    (map, width)
}

/// Calls `f(output index, output channel, [(padded value index, tap index)])`
/// for every output value, over all taps of its window.
fn for_each_window(
    geometry: &WindowGeometry,
    width: usize,
    mut f: impl FnMut(usize, usize, &[(usize, usize)]),
) {
    let g = geometry;
    let mut taps = Vec::new();
    for oy in 0..g.output.height {
        for ox in 0..g.output.width {
            for oc in 0..g.output.channels {
                taps.clear();
                for ky in 0..g.kernel_height {
                    for kx in 0..g.kernel_width {
                        let y = oy * g.stride_height + ky;
                        let x = ox * g.stride_width + kx;
                        taps.push(((y * width + x) * g.input.channels, ky * g.kernel_width + kx));
                    }
                }
                f(
                    (oy * g.output.width + ox) * g.output.channels + oc,
                    oc,
                    &taps,
                );
            }
        }
    }
}

/// Owned requantisation constants.
struct Constants {
    bias: Vec<u8>,
    multipliers: Vec<u8>,
    shifts: Vec<u8>,
    zero_points: (i8, i8),
    range: (i32, i32),
}

impl Constants {
    fn random(rng: &mut TestRng, outputs: usize) -> Self {
        let mut constants = Constants {
            bias: Vec::new(),
            multipliers: Vec::new(),
            shifts: Vec::new(),
            zero_points: (rng.random_range(-128..=127), rng.random_range(-128..=127)),
            range: (-128, 127),
        };
        for _ in 0..outputs {
            constants
                .bias
                .extend(rng.random_range(-20_000i32..20_000).to_le_bytes());
            constants
                .multipliers
                .extend(rng.random_range(1i32 << 30..=i32::MAX).to_le_bytes());
            constants.shifts.push(rng.random_range(-12i8..=0) as u8);
        }
        if rng.random_bool(0.5) {
            let min = rng.random_range(-128..=0);
            constants.range = (min, rng.random_range(min..=127));
        }
        constants
    }

    fn requantization(&self) -> Requantization<'_> {
        Requantization::new(
            self.shifts.len(),
            &self.bias,
            &self.multipliers,
            &self.shifts,
            self.zero_points.0,
            self.zero_points.1,
            Activation::None,
        )
        .unwrap()
        .with_activation_range(self.range.0, self.range.1)
    }
}

fn conv_reference(
    input: &[i8],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &Requantization<'_>,
) -> Vec<i8> {
    let zero_point = requantization.input_zero_point();
    let (map, width) = padded(input, geometry, zero_point as i8);
    let channels = geometry.input.channels;
    let constants: Vec<_> = requantization.channels().collect();
    let mut output = vec![0i8; geometry.output.values()];
    for_each_window(geometry, width, |index, oc, taps| {
        let mut accumulator = 0i32;
        for &(at, tap) in taps {
            for ic in 0..channels {
                let w = weights[(oc * taps.len() + tap) * channels + ic] as i8;
                accumulator += (i32::from(map[at + ic]) - zero_point) * i32::from(w);
            }
        }
        output[index] = requantization.apply(accumulator, constants[oc]);
    });
    output
}

fn depthwise_reference(
    input: &[i8],
    geometry: &WindowGeometry,
    weights: &[u8],
    requantization: &Requantization<'_>,
) -> Vec<i8> {
    let zero_point = requantization.input_zero_point();
    let (map, width) = padded(input, geometry, zero_point as i8);
    let multiplier = geometry.output.channels / geometry.input.channels;
    let constants: Vec<_> = requantization.channels().collect();
    let mut output = vec![0i8; geometry.output.values()];
    for_each_window(geometry, width, |index, oc, taps| {
        let mut accumulator = 0i32;
        for &(at, tap) in taps {
            let w = weights[tap * geometry.output.channels + oc] as i8;
            accumulator += (i32::from(map[at + oc / multiplier]) - zero_point) * i32::from(w);
        }
        output[index] = requantization.apply(accumulator, constants[oc]);
    });
    output
}

/// Each window's values inside the input, for the pools.
fn pool_windows<T: Copy>(input: &[T], geometry: &WindowGeometry) -> Vec<Vec<T>> {
    let optional: Vec<Option<T>> = input.iter().map(|&v| Some(v)).collect();
    let (map, width) = padded(&optional, geometry, None);
    let mut windows = vec![Vec::new(); geometry.output.values()];
    for_each_window(geometry, width, |index, c, taps| {
        windows[index] = taps.iter().filter_map(|&(at, _)| map[at + c]).collect();
    });
    windows
}

fn average_pool_reference(input: &[i8], geometry: &WindowGeometry, range: (i32, i32)) -> Vec<i8> {
    pool_windows(input, geometry)
        .iter()
        .map(|values| {
            // Round half away from zero in exact rational arithmetic.
            let (sum, count) = (
                values.iter().map(|&v| i32::from(v)).sum::<i32>(),
                values.len() as i32,
            );
            let magnitude = (2 * sum.abs() + count) / (2 * count);
            let mean = sum.signum() * magnitude;
            mean.max(range.0).min(range.1) as i8
        })
        .collect()
}

fn max_pool_reference(input: &[i8], geometry: &WindowGeometry, range: (i32, i32)) -> Vec<i8> {
    pool_windows(input, geometry)
        .iter()
        .map(|values| {
            i32::from(*values.iter().max().unwrap())
                .max(range.0)
                .min(range.1) as i8
        })
        .collect()
}

fn f32_conv_reference(
    input: &[f32],
    geometry: &WindowGeometry,
    weights: &[f32],
    bias: &[f32],
    depthwise: bool,
) -> Vec<f32> {
    let (map, width) = padded(input, geometry, 0.0);
    let (channels, outputs) = (geometry.input.channels, geometry.output.channels);
    let mut output = vec![0.0; geometry.output.values()];
    for_each_window(geometry, width, |index, oc, taps| {
        let mut sum = 0.0f32;
        for &(at, tap) in taps {
            if depthwise {
                sum += map[at + oc / (outputs / channels)] * weights[tap * outputs + oc];
            } else {
                for ic in 0..channels {
                    sum += map[at + ic] * weights[(oc * taps.len() + tap) * channels + ic];
                }
            }
        }
        output[index] = (sum + bias[oc]).clamp(0.0, 6.0);
    });
    output
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn conv_matches_padded_reference(layer in layers(), outputs in 1..=5usize, seed: u64) {
        let mut rng = rng(seed);
        let geometry = layer.geometry(outputs);
        let input = random_i8(&mut rng, geometry.input.values());
        let fan_in = geometry.kernel_height * geometry.kernel_width * geometry.input.channels;
        let weights: Vec<u8> = random_i8(&mut rng, outputs * fan_in).iter().map(|&w| w as u8).collect();
        let constants = Constants::random(&mut rng, outputs);
        let requantization = constants.requantization();
        let mut output = vec![0i8; geometry.output.values()];
        conv(&input, &geometry, &weights, &requantization, &mut output).unwrap();
        prop_assert_eq!(output, conv_reference(&input, &geometry, &weights, &requantization));
    }

    #[test]
    fn depthwise_matches_padded_reference(layer in layers(), multiplier in 1..=2usize, seed: u64) {
        let mut rng = rng(seed);
        let outputs = layer.input.channels * multiplier;
        let geometry = layer.geometry(outputs);
        let input = random_i8(&mut rng, geometry.input.values());
        let taps = geometry.kernel_height * geometry.kernel_width;
        let weights: Vec<u8> = random_i8(&mut rng, taps * outputs).iter().map(|&w| w as u8).collect();
        let constants = Constants::random(&mut rng, outputs);
        let requantization = constants.requantization();
        let mut output = vec![0i8; geometry.output.values()];
        depthwise(&input, &geometry, &weights, &requantization, &mut output).unwrap();
        prop_assert_eq!(output, depthwise_reference(&input, &geometry, &weights, &requantization));
    }

    #[test]
    fn pools_match_padded_reference(layer in layers(), seed: u64, clamp: bool) {
        let mut rng = rng(seed);
        let geometry = layer.geometry(layer.input.channels);
        let input = random_i8(&mut rng, geometry.input.values());
        let range = if clamp { (-20, 30) } else { (-128, 127) };
        let mut output = vec![0i8; geometry.output.values()];
        average_pool(&input, &geometry, range.0, range.1, &mut output).unwrap();
        prop_assert_eq!(&output, &average_pool_reference(&input, &geometry, range));
        max_pool(&input, &geometry, range.0, range.1, &mut output).unwrap();
        prop_assert_eq!(&output, &max_pool_reference(&input, &geometry, range));
    }

    #[test]
    fn f32_convs_match_padded_reference(layer in layers(), outputs in 1..=5usize, multiplier in 1..=2usize, seed: u64) {
        let mut rng = rng(seed);
        // The same float sum in the same order: padding adds only zeros.
        let geometry = layer.geometry(outputs);
        let input = random_f32(&mut rng, geometry.input.values());
        let fan_in = geometry.kernel_height * geometry.kernel_width * geometry.input.channels;
        let weights = random_f32(&mut rng, outputs * fan_in);
        let bias = random_f32(&mut rng, outputs);
        let mut output = vec![0.0; geometry.output.values()];
        conv_f32(&input, &geometry, &float_bytes(&weights), &float_bytes(&bias), 0.0, 6.0, &mut output).unwrap();
        prop_assert_eq!(&output, &f32_conv_reference(&input, &geometry, &weights, &bias, false));

        let outputs = layer.input.channels * multiplier;
        let geometry = layer.geometry(outputs);
        let weights = random_f32(&mut rng, geometry.kernel_height * geometry.kernel_width * outputs);
        let bias = random_f32(&mut rng, outputs);
        let mut output = vec![0.0; geometry.output.values()];
        depthwise_f32(&input, &geometry, &float_bytes(&weights), &float_bytes(&bias), 0.0, 6.0, &mut output).unwrap();
        prop_assert_eq!(&output, &f32_conv_reference(&input, &geometry, &weights, &bias, true));
    }

    #[test]
    fn f32_pools_match_padded_reference(layer in layers(), seed: u64) {
        let mut rng = rng(seed);
        let geometry = layer.geometry(layer.input.channels);
        let input = random_f32(&mut rng, geometry.input.values());
        let windows = pool_windows(&input, &geometry);
        let mut output = vec![0.0; geometry.output.values()];
        average_pool_f32(&input, &geometry, f32::NEG_INFINITY, f32::INFINITY, &mut output).unwrap();
        let means: Vec<f32> = windows.iter().map(|v| v.iter().sum::<f32>() / v.len() as f32).collect();
        prop_assert_eq!(&output, &means);
        max_pool_f32(&input, &geometry, 0.0, 1.0, &mut output).unwrap();
        let maxima: Vec<f32> = windows.iter().map(|v| v.iter().copied().fold(f32::MIN, f32::max).clamp(0.0, 1.0)).collect();
        prop_assert_eq!(&output, &maxima);
    }

    /// With one scale and zero point for both inputs and the output, the
    /// constants are exact powers of two and the sum is `a + b - zero_point`.
    #[test]
    fn add_with_one_scale_is_the_integer_sum(
        scale in 1e-4f32..10.0, zero_point: i8, a in prop::collection::vec(any::<(i8, i8)>(), 1..64),
    ) {
        let params = add_params([scale; 2], [zero_point; 2], scale, zero_point);
        let (first, second): (Vec<i8>, Vec<i8>) = a.iter().copied().unzip();
        let mut output = vec![0i8; a.len()];
        add(&first, &second, &params, &mut output).unwrap();
        for ((&x, &y), &out) in first.iter().zip(&second).zip(&output) {
            let expected = (i32::from(x) + i32::from(y) - i32::from(zero_point)).clamp(-128, 127);
            prop_assert_eq!(i32::from(out), expected);
        }
    }

    /// Any scales: the int8 sum is within one step of the real sum.
    #[test]
    fn add_approximates_the_real_sum(
        scales in (1e-3f32..1.0, 1e-3f32..1.0, 1e-3f32..1.0), zero_points: (i8, i8, i8), x: i8, y: i8,
    ) {
        let (sa, sb, so) = scales;
        let params = add_params([sa, sb], [zero_points.0, zero_points.1], so, zero_points.2);
        let mut output = [0i8];
        add(&[x], &[y], &params, &mut output).unwrap();
        let real = f64::from(sa) * f64::from(i32::from(x) - i32::from(zero_points.0))
            + f64::from(sb) * f64::from(i32::from(y) - i32::from(zero_points.1));
        let ideal = (real / f64::from(so) + f64::from(zero_points.2)).clamp(-128.0, 127.0);
        prop_assert!((f64::from(output[0]) - ideal).abs() <= 1.0, "{} vs {}", output[0], ideal);
    }

    #[test]
    fn add_f32_sums_and_clamps(a in prop::collection::vec((-10.0f32..10.0, -10.0f32..10.0), 0..32)) {
        let (first, second): (Vec<f32>, Vec<f32>) = a.iter().copied().unzip();
        let mut output = vec![0.0; a.len()];
        add_f32(&first, &second, 0.0, 6.0, &mut output).unwrap();
        let expected: Vec<f32> = a.iter().map(|(x, y)| (x + y).clamp(0.0, 6.0)).collect();
        prop_assert_eq!(output, expected);
    }
}

#[test]
fn resolve_follows_tensorflow_padding() {
    // A keyword-spotting DS-CNN's first layer: 'same' pads 9 rows (4 above)
    // and 2 columns (1 left).
    let g = WindowGeometry::resolve(Shape::new(49, 10, 1), 10, 4, 2, 2, true, 64).unwrap();
    assert_eq!(g.output, Shape::new(25, 5, 64));
    assert_eq!((g.pad_top, g.pad_left), (4, 1));
    // 96 / 2 = 48 outputs need 47 * 2 + 3 = 97 rows: one, after the input.
    let g = WindowGeometry::resolve(Shape::new(96, 96, 3), 3, 3, 2, 2, true, 8).unwrap();
    assert_eq!(g.output, Shape::new(48, 48, 8));
    assert_eq!((g.pad_top, g.pad_left), (0, 0));
    // An even kernel at stride 1: 3 padding rows, the smaller half before.
    let g = WindowGeometry::resolve(Shape::new(10, 10, 1), 4, 4, 1, 1, true, 1).unwrap();
    assert_eq!((g.output.height, g.pad_top), (10, 1));
    // 'valid': ceil((in - k + 1) / stride) outputs and no padding.
    let g = WindowGeometry::resolve(Shape::new(49, 10, 1), 10, 4, 1, 1, false, 2).unwrap();
    assert_eq!(g.output, Shape::new(40, 7, 2));
    assert_eq!((g.pad_top, g.pad_left), (0, 0));
    let g = WindowGeometry::resolve(Shape::new(5, 6, 1), 3, 3, 2, 2, false, 1).unwrap();
    assert_eq!(g.output, Shape::new(2, 2, 1));
    assert!(WindowGeometry::resolve(Shape::new(3, 10, 1), 4, 3, 1, 1, false, 1).is_none());
    assert!(WindowGeometry::resolve(Shape::new(3, 10, 1), 4, 3, 1, 1, true, 1).is_some());
    assert!(WindowGeometry::resolve(Shape::new(8, 8, 1), 3, 3, 0, 1, true, 1).is_none());
    assert!(WindowGeometry::resolve(Shape::new(8, 8, 0), 3, 3, 1, 1, true, 1).is_none());
    assert!(WindowGeometry::resolve(Shape::new(8, 8, 1), 3, 3, 1, 1, true, 0).is_none());
}

#[test]
fn inconsistent_geometries_and_lengths_are_refused() {
    let good = WindowGeometry::resolve(Shape::new(4, 4, 2), 3, 3, 1, 1, true, 2).unwrap();
    assert!(good.is_consistent());
    // A window wholly in the padding, before or after the input.
    assert!(!WindowGeometry { pad_top: 3, ..good }.is_consistent());
    let past_the_end = WindowGeometry {
        output: Shape::new(6, 4, 2),
        ..good
    };
    assert!(!past_the_end.is_consistent());
    let input = [0i8; 32];
    let mut output = [0i8; 32];
    assert!(max_pool(&input, &past_the_end, -128, 127, &mut [0; 48]).is_none());
    assert!(max_pool(&input[1..], &good, -128, 127, &mut output).is_none());
    assert!(average_pool(&input, &good, -128, 127, &mut output[1..]).is_none());
    let constants = Constants::random(&mut rng(1), 2);
    let requantization = constants.requantization();
    assert!(conv(&input, &good, &[0; 35], &requantization, &mut output).is_none());
    assert!(conv(&input, &good, &[0; 36], &requantization, &mut output).is_some());
    // Depthwise: 3 output channels are no multiple of 2 input channels.
    let odd = WindowGeometry::resolve(Shape::new(4, 4, 2), 3, 3, 1, 1, true, 3).unwrap();
    let constants = Constants::random(&mut rng(2), 3);
    assert!(
        depthwise(
            &input,
            &odd,
            &[0; 27],
            &constants.requantization(),
            &mut [0; 48]
        )
        .is_none()
    );
    assert!(
        add(
            &[0; 3],
            &[0; 2],
            &add_params([1.0; 2], [0; 2], 1.0, 0),
            &mut [0; 3]
        )
        .is_none()
    );
    assert!(softmax(&[0; 3], &softmax_params(1.0, 1.0), &mut [0; 2]).is_none());
    assert!(
        conv_f32(
            &[0.0; 32],
            &good,
            &[0; 143],
            &[0; 8],
            0.0,
            6.0,
            &mut [0.0; 32]
        )
        .is_none()
    );
    assert!(
        conv_f32(
            &[0.0; 32],
            &good,
            &[0; 144],
            &[0; 8],
            0.0,
            6.0,
            &mut [0.0; 32]
        )
        .is_some()
    );
}

/// The keyword-spotting geometry (49x10, 10x4 kernel, stride 2, 'same'):
/// the padding is asymmetric in both directions.
#[test]
fn kws_first_layer_matches_padded_reference() {
    let mut rng = rng(49);
    let geometry = WindowGeometry::resolve(Shape::new(49, 10, 1), 10, 4, 2, 2, true, 4).unwrap();
    let input = random_i8(&mut rng, geometry.input.values());
    let weights: Vec<u8> = random_i8(&mut rng, 4 * 40)
        .iter()
        .map(|&w| w as u8)
        .collect();
    let constants = Constants::random(&mut rng, 4);
    let requantization = constants.requantization();
    let mut output = vec![0i8; geometry.output.values()];
    conv(&input, &geometry, &weights, &requantization, &mut output).unwrap();
    assert_eq!(
        output,
        conv_reference(&input, &geometry, &weights, &requantization)
    );
    depthwise(&input, &geometry, &weights, &requantization, &mut output).unwrap();
    assert_eq!(
        output,
        depthwise_reference(&input, &geometry, &weights, &requantization)
    );
}

#[test]
fn average_pool_rounds_halves_away_from_zero() {
    // One window over the whole input (a global average pool).
    let mean = |values: &[i8]| {
        let geometry = WindowGeometry::resolve(
            Shape::new(1, values.len(), 1),
            1,
            values.len(),
            1,
            1,
            false,
            1,
        )
        .unwrap();
        let mut output = [0i8];
        average_pool(values, &geometry, -128, 127, &mut output).unwrap();
        output[0]
    };
    assert_eq!(mean(&[1, 2]), 2); // 1.5
    assert_eq!(mean(&[-1, -2]), -2); // -1.5
    assert_eq!(mean(&[1, 1, 0, 0]), 1); // 0.5
    assert_eq!(mean(&[-1, -1, 0, 0]), -1); // -0.5
    assert_eq!(mean(&[1, 0, 0]), 0); // 0.33
    assert_eq!(mean(&[2, 0, 0]), 1); // 0.67
    assert_eq!(mean(&[-2, 0, 0]), -1);
    assert_eq!(mean(&[127, 127, 126]), 127); // 126.67
    assert_eq!(mean(&[-128, -128, -127]), -128); // -127.67
}

#[test]
fn pools_count_only_taps_inside_the_input() {
    // 3x3 'same' on 1..=9: 1 row and column of padding around.
    let geometry = WindowGeometry::resolve(Shape::new(3, 3, 1), 3, 3, 1, 1, true, 1).unwrap();
    let input: Vec<i8> = (1..=9).collect();
    let negated: Vec<i8> = input.iter().map(|v| -v).collect();
    let mut output = [0i8; 9];
    // Corner: (1 + 2 + 4 + 5) / 4 = 3, not 12 / 9; an edge: 21 / 6 = 3.5 -> 4.
    average_pool(&input, &geometry, -128, 127, &mut output).unwrap();
    assert_eq!(output, [3, 4, 4, 5, 5, 6, 6, 7, 7]);
    average_pool(&negated, &geometry, -128, 127, &mut output).unwrap();
    assert_eq!(output, [-3, -4, -4, -5, -5, -6, -6, -7, -7]);
    average_pool(&input, &geometry, 4, 6, &mut output).unwrap();
    assert_eq!(output, [4, 4, 4, 5, 5, 6, 6, 6, 6]);
    max_pool(&input, &geometry, -128, 127, &mut output).unwrap();
    assert_eq!(output, [5, 6, 6, 8, 9, 9, 8, 9, 9]);
    // The padding is no 0: the corner's maximum is -1.
    max_pool(&negated, &geometry, -128, 127, &mut output).unwrap();
    assert_eq!(output, [-1, -1, -2, -1, -1, -2, -4, -4, -5]);

    let floats: Vec<f32> = input.iter().map(|&v| f32::from(v)).collect();
    let mut output = [0.0f32; 9];
    average_pool_f32(
        &floats,
        &geometry,
        f32::NEG_INFINITY,
        f32::INFINITY,
        &mut output,
    )
    .unwrap();
    assert_eq!(output, [3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0]);
    max_pool_f32(&floats, &geometry, 0.0, 6.0, &mut output).unwrap();
    assert_eq!(output, [5.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0]);
}

#[test]
fn conv_skips_padding_and_clamps_to_the_activation_range() {
    // A 3x3 all-ones filter on a 2x2 map 'same': every window holds the
    // whole map, so each output is the sum of (x - zero_point) = 4 * 10,
    // scaled by 1/2 (multiplier 2^30, shift 0) and offset by 3.
    let geometry = WindowGeometry::resolve(Shape::new(2, 2, 1), 3, 3, 1, 1, true, 1).unwrap();
    let bias = 0i32.to_le_bytes();
    let multiplier = (1i32 << 30).to_le_bytes();
    let requantization =
        Requantization::new(1, &bias, &multiplier, &[0], -5, 3, Activation::None).unwrap();
    let input = [5i8; 4];
    let mut output = [0i8; 4];
    conv(&input, &geometry, &[1; 9], &requantization, &mut output).unwrap();
    assert_eq!(output, [23; 4]);
    // ReLU6 with scale 0.25 and zero point 3: [3, 3 + 24].
    let (min, max) = relu_range(0.25, 3, true);
    assert_eq!((min, max), (3, 27));
    conv(
        &input,
        &geometry,
        &[1; 9],
        &requantization.with_activation_range(min, max),
        &mut output,
    )
    .unwrap();
    assert_eq!(output, [23; 4]);
    conv(
        &input,
        &geometry,
        &[2; 9],
        &requantization.with_activation_range(min, max),
        &mut output,
    )
    .unwrap();
    assert_eq!(output, [27; 4]); // 43, clamped
    let ranged = requantization.with_activation_range(-128, 10);
    assert_eq!(
        (ranged.activation_min(), ranged.activation_max()),
        (-128, 10)
    );
    conv(&input, &geometry, &[1; 9], &ranged, &mut output).unwrap();
    assert_eq!(output, [10; 4]);
    // max < min: TFLite's max-then-min clamp gives the maximum.
    conv(
        &input,
        &geometry,
        &[1; 9],
        &requantization.with_activation_range(50, 40),
        &mut output,
    )
    .unwrap();
    assert_eq!(output, [40; 4]);
    depthwise(&input, &geometry, &[1; 9], &ranged, &mut output).unwrap();
    assert_eq!(output, [10; 4]);
}

#[test]
fn add_known_values() {
    // Equal scales and zero points: each input's multiplier is 1/2 (2^30,
    // shift 0), the output's 2 / 2^20 = 2^-19 (2^30, shift -18).
    let params = add_params([0.05; 2], [-128; 2], 0.05, -128);
    assert_eq!(params.input_multipliers, [1 << 30; 2]);
    assert_eq!(params.input_shifts, [0, 0]);
    assert_eq!(
        (params.output_multiplier, params.output_shift),
        (1 << 30, -18)
    );
    assert_eq!((params.activation_min, params.activation_max), (-128, 127));
    let mut output = [0i8; 4];
    add(
        &[-128, -28, 0, 100],
        &[-128, -100, 0, 100],
        &params,
        &mut output,
    )
    .unwrap();
    // a + b + 128, saturating.
    assert_eq!(output, [-128, 0, 127, 127]);

    // Scales 0.5 and 0.25 into 0.5: out = x + y / 2, the half rounded away
    // from zero (3 + 1/2 = 3.5 -> 4).
    let params = add_params([0.5, 0.25], [0, 0], 0.5, 0);
    assert_eq!(params.input_shifts, [0, -1]);
    let mut output = [0i8; 4];
    add(&[3, -3, 3, -3], &[1, -1, -1, 1], &params, &mut output).unwrap();
    assert_eq!(output, [4, -4, 3, -3]);
    let clamped = AddParams {
        activation_min: -2,
        activation_max: 3,
        ..params
    };
    add(&[3, -3, 3, -3], &[1, -1, -1, 1], &clamped, &mut output).unwrap();
    assert_eq!(output, [3, -2, 3, -2]);
}

#[test]
fn softmax_params_known_values() {
    // 0.1 * 2^26 = 6710886.5 (the f32 0.1 is a little above 0.1) = 0.8 * 2^23;
    // diff_min = -floor(31 * 2^26 / 2^23) = -248.
    assert_eq!(
        softmax_params(0.1, 1.0),
        SoftmaxParams {
            input_multiplier: 1_717_986_944,
            input_left_shift: 23,
            diff_min: -248,
        }
    );
    // beta * scale = 1/256: 2^18 = 0.5 * 2^19; 31 * 2^26 / 2^19 = 3968.
    assert_eq!(
        softmax_params(1.0 / 256.0, 1.0),
        SoftmaxParams {
            input_multiplier: 1 << 30,
            input_left_shift: 19,
            diff_min: -3968,
        }
    );
    // 16 * 2^26 = 2^30 = 0.5 * 2^31: a shift of 31, and only the maximum
    // counts (31 * 2^26 / 2^31 < 1).
    assert_eq!(
        softmax_params(16.0, 1.0),
        SoftmaxParams {
            input_multiplier: 1 << 30,
            input_left_shift: 31,
            diff_min: 0,
        }
    );
    // Above 2^31 - 1 the scaled multiplier is capped there.
    assert_eq!(
        softmax_params(64.0, 1.0),
        SoftmaxParams {
            input_multiplier: i32::MAX,
            input_left_shift: 31,
            diff_min: 0,
        }
    );
}

#[test]
fn softmax_of_equal_values_is_one_over_n() {
    // Every difference is 0, whose exponential is 1 (i32::MAX); each adds
    // 2^19 to the Q12.19 sum, N * 2^19, and the output is 1/N in steps of
    // 1/256 rounded to the nearest (no N below 512 gives a tie), minus 128:
    // 1 -> 128 (clamped to 127), 2 -> 0, 3 -> 85 - 128, 10 -> 26 - 128.
    let params = softmax_params(0.1, 1.0);
    for n in 1..=511usize {
        let input = vec![-7i8; n];
        let mut output = vec![0i8; n];
        softmax(&input, &params, &mut output).unwrap();
        let expected = ((256.0 / n as f64).round() as i32 - 128).min(127) as i8;
        assert!(output.iter().all(|&o| o == expected), "n = {n}: {output:?}");
    }
    let mut output = [0i8; 10];
    softmax(&[5; 10], &params, &mut output).unwrap();
    assert_eq!(output, [-102; 10]);
    // 512 equal values sum to 2^28, out of what TFLite's output shift takes
    // (its reference stops there).
    assert!(softmax(&[5; 512], &params, &mut [0; 512]).is_none());
    assert!(softmax(&[], &params, &mut []).is_some());
}

#[test]
fn softmax_known_values() {
    let params = softmax_params(0.1, 1.0);
    let mut output = [0i8; 10];
    // One large value: probability 1 (128, clamped to 127) and 0 (-128).
    let mut one_hot = [-128i8; 10];
    one_hot[3] = 127;
    softmax(&one_hot, &params, &mut output).unwrap();
    assert_eq!(
        output,
        [-128, -128, -128, 127, -128, -128, -128, -128, -128, -128]
    );
    // Two equal maxima far above the rest: 1/2 each.
    let mut two = [-128i8; 10];
    two[2] = 100;
    two[7] = 100;
    softmax(&two, &params, &mut output).unwrap();
    assert_eq!(
        output,
        [-128, -128, 0, -128, -128, -128, -128, 0, -128, -128]
    );
    // Logits 0 and -1 (at scale 0.1): 0.731 * 256 = 187.1 and 0.269 * 256 = 68.9.
    let mut pair = [0i8; 2];
    softmax(&[0, -10], &params, &mut pair).unwrap();
    assert_eq!(pair, [59, -59]);
    // A shift of 31: only the maximum counts.
    let mut pair = [0i8; 2];
    softmax(&[5, 4], &softmax_params(16.0, 1.0), &mut pair).unwrap();
    assert_eq!(pair, [127, -128]);
}

#[test]
fn quantize_multiplier_known_values() {
    assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
    assert_eq!(quantize_multiplier(0.75), (3 << 29, 0));
    assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
    assert_eq!(quantize_multiplier(3.0), (3 << 29, 2));
    assert_eq!(quantize_multiplier(0.1), (1_717_986_918, -3));
    // Just below 1: the fraction rounds up to 2^31 and is renormalised.
    assert_eq!(quantize_multiplier(1.0 - 1e-12), (1 << 30, 1));
    assert_eq!(quantize_multiplier(2f64.powi(-31)), (1 << 30, -30));
    assert_eq!(quantize_multiplier(2f64.powi(-32)), (1 << 30, -31));
    assert_eq!(quantize_multiplier(2f64.powi(-33)), (0, 0));
    assert_eq!(quantize_multiplier(1e-12), (0, 0));
    assert_eq!(quantize_multiplier(2f64.powi(29)), (1 << 30, 30));
    assert_eq!(quantize_multiplier(2f64.powi(30)), (i32::MAX, 30));
    assert_eq!(quantize_multiplier(0.0), (0, 0));
    assert_eq!(quantize_multiplier(-0.5), (0, 0));
    assert_eq!(quantize_multiplier(f64::NAN), (0, 0));
    assert_eq!(quantize_multiplier(f64::INFINITY), (0, 0));
}

#[test]
fn relu_range_known_values() {
    assert_eq!(relu_range(0.1, -128, false), (-128, 127));
    assert_eq!(relu_range(0.1, -20, false), (-20, 127));
    // 6 / (6 / 255) = 255: -128 + 255 = 127.
    assert_eq!(relu_range(6.0 / 255.0, -128, true), (-128, 127));
    // 6 / 0.05 = 120 (in f32 119.99999 rounds to 120).
    assert_eq!(relu_range(0.05, -10, true), (-10, 110));
    // Ties round away from zero: 6 / 12 = 0.5 -> 1, and 6 / 0.48 is 12.5 in
    // f32 -> 13.
    assert_eq!(relu_range(12.0, 0, true), (0, 1));
    assert_eq!(relu_range(0.48, 0, true), (0, 13));
    // In f32 (as TFLite divides) 6 / 0.8 is 7.5 -> 8; in f64 it would be
    // 7.4999999 -> 7.
    assert_eq!(relu_range(0.8, 0, true), (0, 8));
    // The bound lies outside int8: clamped.
    assert_eq!(relu_range(0.01, 10, true), (10, 127));
}

/// gemmlowp's fixed-point functions are close to the real ones (measured:
/// exp within 2.3e-7, the reciprocal within 3.2e-9, on this grid).
#[test]
fn fixed_point_exp_and_reciprocal_approximate_the_reals() {
    for raw in (i64::from(i32::MIN)..=0).step_by(99_991) {
        let x = raw as f64 / f64::from(1 << 26); // Q5.26
        let got = f64::from(exp_on_negative_values(raw as i32)) / 2f64.powi(31);
        assert!((got - x.exp()).abs() < 5e-7, "exp({x}) = {got}");
    }
    assert_eq!(exp_on_negative_values(0), i32::MAX);
    for raw in (0..=i64::from(i32::MAX)).step_by(99_991) {
        let x = raw as f64 / 2f64.powi(31); // Q0.31
        let got = f64::from(one_over_one_plus_x_for_x_in_0_1(raw as i32)) / 2f64.powi(31);
        assert!(
            (got - 1.0 / (1.0 + x)).abs() < 1e-8,
            "1 / (1 + {x}) = {got}"
        );
    }
}
