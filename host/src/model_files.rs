//! What the exporters, `host train` and the TensorFlow Lite reader and writer share about model
//! files: their names in a run's directory, how a tensor's f32 values are stored, and a real
//! multiplier in TensorFlow Lite's fixed point. Kept apart so that none of those modules needs
//! another for it.

use tinycnn::quant;

/// File name of the f32 model in an output directory.
pub const F32_FILE: &str = "model-f32.tcnn";
/// File name of the int8 model in an output directory.
pub const INT8_FILE: &str = "model-int8.tcnn";
/// The int8 model as TensorFlow Lite writes it (`host export --tflite`).
pub const TFLITE_FILE: &str = "model-int8.tflite";

/// Little-endian f32 values, as a model file stores them.
pub(crate) fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .as_chunks::<4>()
        .0
        .iter()
        .map(|&b| f32::from_le_bytes(b))
        .collect()
}

/// Splits a positive real multiplier into a Q31 `multiplier` in
/// `[2^30, 2^31)` and a power-of-two `shift` such that
/// `real ~= multiplier / 2^31 * 2^shift` (TFLite's `QuantizeMultiplier`).
///
/// Multipliers too small for a right shift of 31 become `(0, 0)`; too large
/// ones saturate at the largest left shift.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if !(real.is_finite() && real > 0.0) {
        return (0, 0);
    }
    // real = fraction * 2^exponent with fraction in [0.5, 1).
    let mut exponent = real.log2().floor() as i32 + 1;
    let mut fraction = real / 2f64.powi(exponent);
    while fraction >= 1.0 {
        fraction /= 2.0;
        exponent += 1;
    }
    while fraction < 0.5 {
        fraction *= 2.0;
        exponent -= 1;
    }
    let mut q31 = (fraction * (1u64 << 31) as f64).round() as i64;
    if q31 == 1 << 31 {
        q31 /= 2;
        exponent += 1;
    }
    if exponent < quant::MIN_SHIFT {
        return (0, 0);
    }
    if exponent > quant::MAX_SHIFT {
        return (i32::MAX, quant::MAX_SHIFT);
    }
    (q31 as i32, exponent)
}
