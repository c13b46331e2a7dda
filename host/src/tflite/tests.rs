//! Import and export against each other and against damaged or foreign graphs. (The proof
//! against TensorFlow Lite itself is `tests/tests/tflite_models.rs`.)

use planus::ReadAsRoot;
use tinycnn::Int8Model;
use tinycnn::arch::Layer;

use super::{export, generated::tflite, import, op};

static SMALL: &[u8] = include_bytes!("../../../data/small/model-int8.tcnn");

fn small() -> Int8Model<'static> {
    Int8Model::from_bytes(SMALL).unwrap()
}

/// The small network's export as owned flatbuffer tables, to change and write again.
fn owned() -> tflite::Model {
    let bytes = export(&small()).unwrap();
    let root = tflite::ModelRef::read_as_root(&bytes).unwrap();
    tflite::Model::try_from(root).unwrap()
}

fn write(model: &tflite::Model) -> Vec<u8> {
    let mut builder = planus::Builder::new();
    let mut bytes = builder
        .finish(model, Some(*super::FILE_IDENTIFIER))
        .to_vec();
    super::export::identifier_after_root_offset(&mut bytes);
    bytes
}

fn refusal(model: &tflite::Model) -> String {
    match import(&write(model), None) {
        Ok(_) => panic!("imported a graph that should be refused"),
        Err(e) => format!("{e:#}"),
    }
}

fn operators(model: &mut tflite::Model) -> &mut Vec<tflite::Operator> {
    model.subgraphs.as_mut().unwrap()[0]
        .operators
        .as_mut()
        .unwrap()
}

fn tensors(model: &mut tflite::Model) -> &mut Vec<tflite::Tensor> {
    model.subgraphs.as_mut().unwrap()[0]
        .tensors
        .as_mut()
        .unwrap()
}

#[test]
fn the_import_of_an_export_is_the_same_model() {
    let original = small();
    let imported = import(&export(&original).unwrap(), None).unwrap();
    let again = Int8Model::from_bytes(&imported.file).unwrap();
    // The export leaves the dropouts out, as a converter does; everything else is the same,
    // the multipliers recomputed from the scales included.
    let without_dropouts: Vec<Layer> = original
        .architecture()
        .layers()
        .iter()
        .copied()
        .filter(|l| !matches!(l, Layer::Dropout(_)))
        .collect();
    assert_eq!(again.architecture().layers(), &without_dropouts[..]);
    assert!(
        original.layers().eq(again.layers()),
        "the layer records differ"
    );
    assert!(imported.left_out.is_empty());
}

#[test]
fn the_export_has_the_layout_tensorflow_lite_checks() {
    let bytes = export(&small()).unwrap();
    assert_eq!(&bytes[4..8], b"TFL3");
    let root = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    assert!(root >= 8 && root < bytes.len());
    let model = tflite::ModelRef::read_as_root(&bytes).unwrap();
    assert_eq!(model.version().unwrap(), 3);
}

#[test]
fn operators_outside_the_vocabulary_are_named() {
    let mut model = owned();
    let conv = operators(&mut model)[0].opcode_index as usize;
    // MEAN, what Keras's GlobalAveragePooling2D converts to: its own requantisation.
    model.operator_codes.as_mut().unwrap()[conv] = tflite::OperatorCode {
        deprecated_builtin_code: 40,
        builtin_code: 40,
        version: 1,
        custom_code: None,
    };
    let message = refusal(&model);
    assert!(
        message.contains("operator 0 (MEAN)") && message.contains("vocabulary"),
        "{message}"
    );
}

#[test]
fn strides_and_dilations_are_refused() {
    for (stride, dilation, expected) in [(3, 1, "stride 3x3"), (1, 2, "dilation 2x2")] {
        let mut model = owned();
        let Some(tflite::BuiltinOptions::Conv2DOptions(options)) =
            &mut operators(&mut model)[0].builtin_options
        else {
            panic!("the first operator is a convolution");
        };
        options.stride_w = stride;
        options.stride_h = stride;
        options.dilation_w_factor = dilation;
        options.dilation_h_factor = dilation;
        let message = refusal(&model);
        assert!(
            message.contains("operator 0 (CONV_2D)") && message.contains(expected),
            "{message}"
        );
    }
}

#[test]
fn asymmetric_weights_are_refused_and_other_input_quantisations_kept() {
    let mut model = owned();
    let weights = operators(&mut model)[0].inputs.as_ref().unwrap()[1] as usize;
    let quantization = tensors(&mut model)[weights].quantization.as_mut().unwrap();
    quantization.zero_point.as_mut().unwrap()[0] = 3;
    let message = refusal(&model);
    assert!(message.contains("asymmetric"), "{message}");

    let mut model = owned();
    let quantization = tensors(&mut model)[0].quantization.as_mut().unwrap();
    quantization.scale = Some(vec![1.0 / 256.0]);
    quantization.zero_point = Some(vec![5]);
    let imported = import(&write(&model), None).unwrap();
    let again = Int8Model::from_bytes(&imported.file).unwrap();
    assert_eq!(again.header().version, 3);
    assert_eq!(
        again.input_quantization(),
        tinycnn::format::QuantParams {
            scale: 1.0 / 256.0,
            zero_point: 5
        }
    );
}

#[test]
fn a_float_layer_in_the_middle_is_refused() {
    let mut model = owned();
    let dense = operators(&mut model)
        .iter()
        .position(|o| {
            let code = o.opcode_index as usize;
            owned().operator_codes.unwrap()[code].builtin_code == op::FULLY_CONNECTED
        })
        .unwrap();
    let weights = operators(&mut model)[dense].inputs.as_ref().unwrap()[1] as usize;
    let tensor = &mut tensors(&mut model)[weights];
    tensor.type_ = super::tensor_type::FLOAT32;
    let buffer = tensor.buffer as usize;
    let floats = model.buffers.as_ref().unwrap()[buffer]
        .data
        .as_ref()
        .unwrap()
        .len()
        * 4;
    model.buffers.as_mut().unwrap()[buffer].data = Some(vec![0; floats]);
    let message = refusal(&model);
    assert!(
        message.contains("FULLY_CONNECTED") && message.contains("float32"),
        "{message}"
    );
}

#[test]
fn huge_tensor_claims_are_refused_before_anything_is_allocated() {
    let mut model = owned();
    let weights = operators(&mut model)[0].inputs.as_ref().unwrap()[1] as usize;
    tensors(&mut model)[weights].shape = Some(vec![1 << 20, 1 << 20, 3, 1]);
    let message = refusal(&model);
    assert!(message.contains("more than the"), "{message}");
    let mut model = owned();
    tensors(&mut model)[weights].shape = Some(vec![16, 3, 3, -1]);
    let message = refusal(&model);
    assert!(message.contains("must be positive"), "{message}");
}

/// Any bytes give an error or a model, never a panic: every truncation of a real export, and
/// single-bit flips all over it.
#[test]
fn damaged_files_are_errors_not_panics() {
    let bytes = export(&small()).unwrap();
    let mut outcomes = [0usize; 2];
    let step = (bytes.len() / 2000).max(1);
    for length in (0..bytes.len()).step_by(step) {
        outcomes[usize::from(import(&bytes[..length], None).is_ok())] += 1;
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..3000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut damaged = bytes.clone();
        let bit = (state % (damaged.len() as u64 * 8)) as usize;
        damaged[bit / 8] ^= 1 << (bit % 8);
        outcomes[usize::from(import(&damaged, None).is_ok())] += 1;
    }
    // Truncations never import; most flips land in weights and still do.
    assert!(outcomes[0] > 2000 / 2, "{outcomes:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

    /// Arbitrary bytes behind a valid header (root offset, "TFL3"): an error or a model, never
    /// a panic.
    #[test]
    fn arbitrary_bytes_are_errors_not_panics(
        root in 8u32..64,
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
    ) {
        let mut bytes = root.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"TFL3");
        bytes.extend(body);
        let _ = import(&bytes, None);
    }

    /// A real export with a run of its bytes overwritten: the same.
    #[test]
    fn overwritten_spans_are_errors_not_panics(
        start in 0usize..60_000,
        span in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..64),
    ) {
        static BYTES: std::sync::LazyLock<Vec<u8>> =
            std::sync::LazyLock::new(|| export(&small()).unwrap());
        let mut bytes = BYTES.clone();
        let start = start % bytes.len();
        for (offset, value) in span.iter().enumerate() {
            if let Some(byte) = bytes.get_mut(start + offset) {
                *byte = *value;
            }
        }
        let _ = import(&bytes, None);
    }
}
