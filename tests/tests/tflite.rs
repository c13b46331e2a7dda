//! tinycnn's int8 kernels against desktop TensorFlow Lite's reference kernels
//! (`tf.lite.Interpreter` with `OpResolverType.BUILTIN_REF`; TensorFlow Lite
//! Micro is compared with in `tflite_models.rs`), bit for bit, on golden
//! vectors that interpreter computed (`tests/tflite/make_golden.py` ->
//! `tests/tflite/golden.json`).
//!
//! The multipliers and shifts come from the host's quantiser, so this also
//! proves that `host export` derives them from the scales as TFLite does.

use serde_json::Value;
use tinycnn::arch::{Activation, Conv, Padding, Shape};
use tinycnn::kernels::{ConvGeometry, int8, reference};
use tinycnn_host::export::quantize::quantize_multiplier;

fn golden() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tflite/golden.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("golden.json parses")
}

fn ints(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_i64().expect("integer"))
        .collect()
}

fn field(case: &Value, name: &str) -> f64 {
    case[name]
        .as_f64()
        .unwrap_or_else(|| panic!("field {name}"))
}

/// The layer's quantised constants as tinycnn stores them.
struct Quantized {
    bias: Vec<u8>,
    multipliers: Vec<u8>,
    shifts: Vec<u8>,
    weights: Vec<u8>,
    input_zero_point: i8,
    output_zero_point: i8,
}

fn quantized(case: &Value, outputs: usize) -> Quantized {
    let input_scale = field(case, "input_scale") as f32;
    let output_scale = field(case, "output_scale") as f32;
    let scales: Vec<f32> = case["weight_scales"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let mut multipliers = Vec::new();
    let mut shifts = Vec::new();
    for channel in 0..outputs {
        // Per-tensor weight scales (one value) apply to every channel.
        let weight_scale = scales[if scales.len() == 1 { 0 } else { channel }];
        let real = f64::from(input_scale) * f64::from(weight_scale) / f64::from(output_scale);
        let (multiplier, shift) = quantize_multiplier(real);
        multipliers.extend(multiplier.to_le_bytes());
        shifts.push(shift as i8 as u8);
    }
    Quantized {
        bias: ints(&case["bias"])
            .iter()
            .flat_map(|&b| (b as i32).to_le_bytes())
            .collect(),
        multipliers,
        shifts,
        weights: ints(&case["weights"])
            .iter()
            .map(|&w| w as i8 as u8)
            .collect(),
        input_zero_point: case["input_zero_point"].as_i64().unwrap() as i8,
        output_zero_point: case["output_zero_point"].as_i64().unwrap() as i8,
    }
}

fn bytes(values: &[i64]) -> Vec<i8> {
    values.iter().map(|&v| v as i8).collect()
}

fn check_conv(case: &Value) -> usize {
    let dims = ["height", "width", "in_channels", "out_channels"]
        .map(|name| case[name].as_u64().expect("dimension") as usize);
    let [height, width, in_channels, outputs] = dims;
    let q = quantized(case, outputs);
    let requantization = int8::Requantization::new(
        outputs,
        &q.bias,
        &q.multipliers,
        &q.shifts,
        q.input_zero_point,
        q.output_zero_point,
        Activation::Relu,
    )
    .unwrap();
    let conv = Conv::square(3, Padding::Same, outputs as u16, Activation::Relu);
    let shape = Shape::new(height, width, in_channels);
    let pooled = ConvGeometry::new(&conv, shape, true);
    let full = ConvGeometry::new(&conv, shape, false);
    let pooled_layer = int8::ConvLayer::new(pooled, &q.weights, requantization).unwrap();
    let full_layer = int8::ConvLayer::new(full, &q.weights, requantization).unwrap();
    let mut compared = 0;
    for run in case["runs"].as_array().unwrap() {
        let input = bytes(&ints(&run["input"]));
        let mut conv_output = vec![0i8; full.output().values()];
        reference::conv_i8(&input, &full_layer, &mut conv_output);
        let expected_conv = bytes(&ints(&run["conv"]));
        assert_eq!(
            conv_output, expected_conv,
            "reference conv {shape}->{outputs}"
        );
        int8::conv(&input, &full_layer, &mut conv_output).unwrap();
        assert_eq!(conv_output, expected_conv, "conv {shape}->{outputs}");
        let mut pool_output = vec![0i8; pooled.output().values()];
        int8::conv(&input, &pooled_layer, &mut pool_output).unwrap();
        let expected_pool = bytes(&ints(&run["pool"]));
        assert_eq!(
            pool_output, expected_pool,
            "fused conv+pool {shape}->{outputs}"
        );
        compared += expected_conv.len() + expected_pool.len();
    }
    compared
}

fn check_dense(case: &Value) -> usize {
    let inputs = case["inputs"].as_u64().unwrap() as usize;
    let outputs = case["outputs"].as_u64().unwrap() as usize;
    let activation = if case["relu"].as_bool().unwrap() {
        Activation::Relu
    } else {
        Activation::None
    };
    let q = quantized(case, outputs);
    let requantization = int8::Requantization::new(
        outputs,
        &q.bias,
        &q.multipliers,
        &q.shifts,
        q.input_zero_point,
        q.output_zero_point,
        activation,
    )
    .unwrap();
    let layer = int8::DenseLayer::new(inputs, &q.weights, requantization).unwrap();
    let mut compared = 0;
    for run in case["runs"].as_array().unwrap() {
        let input = bytes(&ints(&run["input"]));
        let mut output = vec![0i8; outputs];
        int8::dense(&input, &layer, &mut output).unwrap();
        let expected = bytes(&ints(&run["output"]));
        assert_eq!(output, expected, "dense {inputs}->{outputs}");
        compared += outputs;
    }
    compared
}

#[test]
fn kernels_equal_tflite_reference_kernels() {
    let golden = golden();
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(
        cases.len(),
        7,
        "golden.json has the cases this test instantiates"
    );
    let mut compared = 0;
    for case in &cases[..4] {
        compared += check_conv(case);
    }
    for case in &cases[4..] {
        compared += check_dense(case);
    }
    println!(
        "{compared} int8 values equal TensorFlow Lite {}'s",
        golden["tensorflow"]
    );
}
