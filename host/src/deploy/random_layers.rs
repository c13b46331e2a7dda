//! Random int8 layer constants for the tests that check the host's kernels against the core's
//! portable ones: ordinary constants, or (a quarter of the layers) any the format allows;
//! zero points at both ends or anywhere; activation ranges of no clamp, a ReLU, a ReLU6 or
//! any two bytes.

use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestRng};
use tinycnn::kernels::int8::Requantization;

/// The generator of the case numbered `seed`.
pub(crate) fn rng(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// A zero point: -128 and 127 a quarter of the time each.
pub(crate) fn zero_point(rng: &mut TestRng) -> i8 {
    match rng.random_range(0..4) {
        0 => i8::MIN,
        1 => i8::MAX,
        _ => rng.random(),
    }
}

/// One layer's requantisation constants, owned.
pub(crate) struct Constants {
    pub(crate) bias: Vec<u8>,
    pub(crate) multipliers: Vec<u8>,
    pub(crate) shifts: Vec<u8>,
    pub(crate) input_zero_point: i8,
    pub(crate) output_zero_point: i8,
    /// The activation's clamp.
    pub(crate) range: (i32, i32),
}

impl Constants {
    /// Constants of a layer of `outputs` outputs.
    pub(crate) fn draw(rng: &mut TestRng, outputs: usize) -> Self {
        let extreme = rng.random_bool(0.25);
        let (mut bias, mut multipliers, mut shifts) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..outputs {
            let (b, m, s): (i32, i32, i8) = if extreme {
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
            bias.extend(b.to_le_bytes());
            multipliers.extend(m.to_le_bytes());
            shifts.push(s as u8);
        }
        let output_zero_point = zero_point(rng);
        let input_zero_point = zero_point(rng);
        let range = match rng.random_range(0..4) {
            0 => (-128, 127),
            1 => (i32::from(output_zero_point), 127),
            2 => {
                tinycnn::quant::relu_range(rng.random_range(0.001f32..0.1), output_zero_point, true)
            }
            _ => (rng.random_range(-128..=127), rng.random_range(-128..=127)),
        };
        Self {
            bias,
            multipliers,
            shifts,
            input_zero_point,
            output_zero_point,
            range,
        }
    }

    /// The requantisation these constants make.
    pub(crate) fn requantization(&self) -> Requantization<'_> {
        Requantization::new(
            self.shifts.len(),
            &self.bias,
            &self.multipliers,
            &self.shifts,
            self.input_zero_point,
            self.output_zero_point,
            tinycnn::arch::Activation::None,
        )
        .unwrap()
        .with_activation_range(self.range.0, self.range.1)
    }
}
