//! tinycnn's int8 kernels against TensorFlow Lite's reference kernels, bit
//! for bit, on golden vectors that TFLite itself computed
//! (`tests/tflite/make_golden.py` -> `tests/tflite/golden.json`).
//!
//! The multipliers and shifts come from the host's quantiser, so this also
//! proves that `host export` derives them from the scales as TFLite does.

use serde_json::Value;
use tinycnn::arch::Tensor;
use tinycnn::kernels::{int8, reference};
use tinycnn_host::quantize::quantize_multiplier;

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

fn tensor<const H: usize, const W: usize, const C: usize>(
    values: &[i64],
) -> Box<Tensor<i8, H, W, C>> {
    assert_eq!(values.len(), H * W * C);
    let mut t = Box::new([[[0i8; C]; W]; H]);
    for (slot, &v) in t.iter_mut().flatten().flatten().zip(values) {
        *slot = v as i8;
    }
    t
}

fn flat<T: Copy, const H: usize, const W: usize, const C: usize>(t: &Tensor<T, H, W, C>) -> Vec<T> {
    t.iter().flatten().flatten().copied().collect()
}

fn check_conv<
    const H: usize,
    const W: usize,
    const IC: usize,
    const OC: usize,
    const PH: usize,
    const PW: usize,
>(
    case: &Value,
) -> usize {
    assert_eq!(
        [
            case["height"].as_u64(),
            case["width"].as_u64(),
            case["in_channels"].as_u64(),
            case["out_channels"].as_u64()
        ],
        [
            Some(H as u64),
            Some(W as u64),
            Some(IC as u64),
            Some(OC as u64)
        ]
    );
    let q = quantized(case, OC);
    let requantization = int8::Requantization::new(
        OC,
        &q.bias,
        &q.multipliers,
        &q.shifts,
        q.input_zero_point,
        q.output_zero_point,
        true,
    )
    .unwrap();
    let layer = int8::ConvLayer::<IC, OC>::new(&q.weights, requantization).unwrap();
    let mut compared = 0;
    for run in case["runs"].as_array().unwrap() {
        let input = tensor::<H, W, IC>(&ints(&run["input"]));
        let mut full = Box::new([[[0i8; OC]; W]; H]);
        reference::conv3x3_same_i8(&input, &layer, &mut full);
        let expected_conv: Vec<i8> = ints(&run["conv"]).iter().map(|&v| v as i8).collect();
        assert_eq!(
            flat(&full),
            expected_conv,
            "reference conv {H}x{W}x{IC}->{OC}"
        );
        let mut pooled = Box::new([[[0i8; OC]; PW]; PH]);
        int8::conv3x3_relu_maxpool2(&input, &layer, &mut pooled);
        let expected_pool: Vec<i8> = ints(&run["pool"]).iter().map(|&v| v as i8).collect();
        assert_eq!(
            flat(&pooled),
            expected_pool,
            "fused conv+pool {H}x{W}x{IC}->{OC}"
        );
        compared += expected_conv.len() + expected_pool.len();
    }
    compared
}

fn check_dense<const IN: usize, const OUT: usize>(case: &Value) -> usize {
    assert_eq!(
        [case["inputs"].as_u64(), case["outputs"].as_u64()],
        [Some(IN as u64), Some(OUT as u64)]
    );
    let relu = case["relu"].as_bool().unwrap();
    let q = quantized(case, OUT);
    let requantization = int8::Requantization::new(
        OUT,
        &q.bias,
        &q.multipliers,
        &q.shifts,
        q.input_zero_point,
        q.output_zero_point,
        relu,
    )
    .unwrap();
    let layer = int8::DenseLayer::<IN, OUT>::new(&q.weights, requantization).unwrap();
    let mut compared = 0;
    for run in case["runs"].as_array().unwrap() {
        let input: Vec<i8> = ints(&run["input"]).iter().map(|&v| v as i8).collect();
        let input: [i8; IN] = input.try_into().unwrap();
        let mut output = [0i8; OUT];
        int8::dense_vector(&input, &layer, &mut output);
        let expected: Vec<i8> = ints(&run["output"]).iter().map(|&v| v as i8).collect();
        assert_eq!(output.to_vec(), expected, "dense {IN}->{OUT}");
        compared += OUT;
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
    compared += check_conv::<6, 6, 8, 5, 3, 3>(&cases[0]);
    compared += check_conv::<7, 7, 16, 6, 3, 3>(&cases[1]);
    compared += check_conv::<5, 4, 3, 4, 2, 2>(&cases[2]);
    compared += check_conv::<28, 28, 1, 8, 14, 14>(&cases[3]);
    compared += check_dense::<36, 10>(&cases[4]);
    compared += check_dense::<64, 32>(&cases[5]);
    compared += check_dense::<2304, 16>(&cases[6]);
    println!(
        "{compared} int8 values equal TensorFlow Lite {}'s",
        golden["tensorflow"]
    );
}
