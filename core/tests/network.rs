//! The whole-network runners against the plain reference kernels composed
//! layer by layer (every convolution at full resolution, every pool on its
//! own, no fusion), for several descriptions.

mod common;

use common::*;
use tinycnn::arch::{Activation, Architecture, Layer, Shape};
use tinycnn::kernels::{ConvGeometry, int8 as ki8, reference};
use tinycnn::{Error, F32Model, Int8Model};

fn descriptions() -> Vec<Architecture> {
    let mnist = Shape::new(28, 28, 1);
    let parse = |text: &str| tinycnn::text::parse(text, mnist).unwrap();
    vec![
        Architecture::REFERENCE,
        other(),
        // Convolutions without pools, 'valid', a pool after a dropout.
        parse("input:10x9x1 conv3x3:5:valid conv1x1:4:linear drop:0.5 pool flatten dense:7"),
        // Two pools in a row, a linear convolution before a pool.
        parse("input:16x16x3 conv5x5:6:linear pool pool conv3x3:8 flatten dense:12 dense:3"),
    ]
}

fn image(shape: Shape, seed: u32) -> Vec<u8> {
    (0..shape.values())
        .map(|i| ((i as u32 * 7 + seed * 13) % 256) as u8)
        .collect()
}

/// The int8 logits of `tensors` for `pixels`, computed layer by layer with
/// the reference kernels.
fn int8_reference(tensors: &Int8Tensors, pixels: &[u8]) -> Vec<i8> {
    let records = tensors.layer_records();
    let mut values: Vec<i8> = pixels.iter().map(|&p| (i32::from(p) - 128) as i8).collect();
    let mut zero_point = -128i8;
    for info in tensors.architecture.iter() {
        let record = info.record.map(|index| &records[index]);
        fn requant<'r>(
            info: &tinycnn::arch::LayerInfo,
            record: &tinycnn::format::Int8LayerRecord<'r>,
            zero_point: i8,
        ) -> ki8::Requantization<'r> {
            ki8::Requantization::new(
                info.outputs(),
                record.bias,
                record.multipliers,
                record.shifts,
                zero_point,
                record.output.zero_point,
                info.activation(),
            )
            .unwrap()
        }
        match info.layer {
            Layer::Conv(conv) => {
                let record = record.unwrap();
                let geometry = ConvGeometry::new(&conv, info.input, false);
                let layer = ki8::ConvLayer::new(
                    geometry,
                    record.weights,
                    requant(&info, record, zero_point),
                )
                .unwrap();
                let mut out = vec![0i8; info.output.values()];
                reference::conv_i8(&values, &layer, &mut out);
                values = out;
                zero_point = record.output.zero_point;
            }
            Layer::MaxPool => {
                let mut out = vec![0i8; info.output.values()];
                reference::max_pool2(&values, info.input, &mut out);
                values = out;
            }
            Layer::Dense(_) => {
                let record = record.unwrap();
                let layer = ki8::DenseLayer::new(
                    info.input.values(),
                    record.weights,
                    requant(&info, record, zero_point),
                )
                .unwrap();
                let mut out = vec![0i8; info.output.values()];
                reference::dense_i8(&values, &layer, &mut out);
                values = out;
                zero_point = record.output.zero_point;
            }
            Layer::Dropout(_) | Layer::Flatten => {}
            other => panic!("the reference kernels run the tutorial's vocabulary, not {other:?}"),
        }
    }
    values
}

#[test]
fn int8_networks_match_the_reference_composition() {
    for (index, architecture) in descriptions().into_iter().enumerate() {
        let tensors = int8_tensors_of(architecture, 11 + index as u32);
        let bytes = tensors.encode();
        let model = Int8Model::from_bytes(&bytes).unwrap();
        let mut scratch = vec![0i8; model.scratch_bytes()];
        let mut unsaturated = 0;
        for seed in 0..4 {
            let pixels = image(architecture.input(), seed);
            let expected = int8_reference(&tensors, &pixels);
            let prediction = model.classify(&pixels, &mut scratch).unwrap();
            assert_eq!(
                prediction.logits,
                &expected[..],
                "{architecture} image {seed}"
            );
            assert_eq!(prediction.class, tinycnn::kernels::argmax(&expected));
            unsaturated += expected.iter().filter(|&&v| v != -128 && v != 127).count();
            let mut probabilities = vec![0f32; architecture.classes()];
            model.probabilities(prediction.logits, &mut probabilities);
            assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        // The comparison would prove little if every logit were saturated.
        assert!(unsaturated > 0, "{architecture}");
    }
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn f32_reference(tensors: &F32Tensors, pixels: &[u8]) -> Vec<f32> {
    let mut values: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    for info in tensors.architecture.iter() {
        let weights = info.record.map(|index| &tensors.layers[index]);
        let mut out = vec![0f32; info.output.values()];
        match info.layer {
            Layer::Conv(conv) => {
                let [w, b] = weights.unwrap();
                reference::conv_f32(
                    &values,
                    info.input,
                    conv.side(),
                    conv.pad(),
                    &floats(w),
                    &floats(b),
                    conv.activation,
                    &mut out,
                );
            }
            Layer::MaxPool => reference::max_pool2(&values, info.input, &mut out),
            Layer::Dense(dense) => {
                let [w, b] = weights.unwrap();
                reference::dense_f32(&values, &floats(w), &floats(b), dense.activation, &mut out);
            }
            Layer::Dropout(_) | Layer::Flatten => out = values.clone(),
            other => panic!("the reference kernels run the tutorial's vocabulary, not {other:?}"),
        }
        values = out;
    }
    values
}

#[test]
fn f32_networks_match_the_reference_composition() {
    for (index, architecture) in descriptions().into_iter().enumerate() {
        let tensors = f32_tensors_of(architecture, 12 + index as u32);
        let bytes = tensors.encode();
        let model = F32Model::from_bytes(&bytes).unwrap();
        let mut scratch = vec![0f32; model.scratch_len()];
        for seed in 0..3 {
            let pixels = image(architecture.input(), seed);
            let expected = f32_reference(&tensors, &pixels);
            let prediction = model.classify(&pixels, &mut scratch).unwrap();
            let range = expected.iter().fold(1f32, |m, v| m.max(v.abs()));
            for (a, b) in prediction.logits.iter().zip(&expected) {
                assert!((a - b).abs() <= 1e-4 * range, "{architecture}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn observers_see_every_step_and_the_layer_names() {
    let tensors = int8_tensors(3);
    let bytes = tensors.encode();
    let model = Int8Model::from_bytes(&bytes).unwrap();
    let mut scratch = vec![0i8; model.scratch_bytes()];
    let mut seen = Vec::new();
    let prediction = model
        .classify_observed(&[50; 784], &mut scratch, |observed| {
            seen.push((
                observed.step.layer.name.to_string(),
                observed.output.len(),
                observed.output.to_vec(),
            ));
        })
        .unwrap();
    let names: Vec<(&str, usize)> = seen.iter().map(|(n, len, _)| (n.as_str(), *len)).collect();
    assert_eq!(
        names,
        [
            ("conv1", 14 * 14 * 64),
            ("conv2", 7 * 7 * 128),
            ("conv3", 3 * 3 * 256),
            ("dense1", 128),
            ("dense2", 64),
            ("dense3", 32),
            ("dense4", 10)
        ]
    );
    assert_eq!(seen.last().unwrap().2, prediction.logits);
}

#[test]
fn caller_mistakes_are_errors() {
    let tensors = int8_tensors_of(other(), 5);
    let bytes = tensors.encode();
    let model = Int8Model::from_bytes(&bytes).unwrap();
    let needed = model.scratch_bytes();
    let image = vec![9u8; 12 * 12 * 3];
    assert_eq!(
        model
            .classify(&image[1..], &mut vec![0; needed])
            .unwrap_err(),
        Error::InputLength {
            expected: 432,
            found: 431
        }
    );
    let mut small = vec![0i8; needed - 1];
    assert!(matches!(
        model.classify(&image, &mut small).unwrap_err(),
        Error::ScratchTooSmall { .. }
    ));
    // Scratch that does not start on a word boundary works, given 3 bytes more.
    let mut roomy = vec![0i8; needed + 8];
    let expected = model.classify(&image, &mut roomy).unwrap().logits.to_vec();
    for offset in 0..4 {
        let shifted = &mut roomy[offset..offset + needed + 3];
        assert_eq!(
            model.classify(&image, shifted).unwrap().logits,
            &expected[..]
        );
    }
    let f32s = f32_tensors_of(other(), 5);
    let bytes = f32s.encode();
    let model = F32Model::from_bytes(&bytes).unwrap();
    assert!(matches!(
        model.classify(&image, &mut [0f32; 10]).unwrap_err(),
        Error::ScratchTooSmall { .. }
    ));
    let mut probabilities = [0f32; 5];
    let mut scratch = vec![0f32; model.scratch_len()];
    let logits = model
        .classify(&image, &mut scratch)
        .unwrap()
        .logits
        .to_vec();
    model.probabilities(&logits, &mut probabilities);
    assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert_eq!(Activation::None, other().layer(6).unwrap().activation());
}

/// Every step's output of `model` on `input` (quantised values), in the banded arena and in
/// the out-of-place one.
fn steps_both_ways(model: &Int8Model<'_>, input: &[i8]) -> [Vec<Vec<i8>>; 2] {
    let backend = tinycnn::kernels::int8::Backend::Portable;
    let mut banded = Vec::new();
    let mut scratch = vec![0i8; model.scratch_bytes()];
    model
        .run_quantized(backend, input, &mut scratch, |o| {
            banded.push(o.output.to_vec())
        })
        .unwrap();
    let dsp = false;
    let needed = tinycnn::plan::out_of_place_scratch_bytes(model.architecture(), dsp);
    let mut scratch = vec![0i8; needed + 64];
    let mut apart = Vec::new();
    model
        .run_quantized_out_of_place(backend, input, &mut scratch, |o| {
            apart.push(o.output.to_vec())
        })
        .unwrap();
    [banded, apart]
}

#[test]
fn banded_runs_equal_out_of_place_runs_on_random_networks() {
    let mut rng = Lcg(7);
    for seed in 0..400 {
        let architecture = random_architecture(seed);
        let tensors = int8_tensors_of(architecture, seed as u32);
        let bytes = tensors.encode();
        let model = Int8Model::from_bytes(&bytes).unwrap();
        for _ in 0..2 {
            let input: Vec<i8> = (0..architecture.input().values())
                .map(|_| rng.below(256) as u8 as i8)
                .collect();
            let [banded, apart] = steps_both_ways(&model, &input);
            assert_eq!(banded, apart, "{architecture}");
        }
    }
}

#[test]
fn banded_runs_equal_out_of_place_runs_on_the_shipped_and_mlperf_networks() {
    let files: [&[u8]; 6] = [
        include_bytes!("../../data/model-int8.tcnn"),
        include_bytes!("../../data/small/model-int8.tcnn"),
        include_bytes!("../../data/mlperf/kws.tcnn"),
        include_bytes!("../../data/mlperf/vww.tcnn"),
        include_bytes!("../../data/mlperf/resnet8.tcnn"),
        include_bytes!("../../data/mlperf/autoencoder.tcnn"),
    ];
    let mut rng = Lcg(11);
    for bytes in files {
        let model = Int8Model::from_bytes(bytes).unwrap();
        let input: Vec<i8> = (0..model.input_shape().values())
            .map(|_| rng.below(256) as u8 as i8)
            .collect();
        let [banded, apart] = steps_both_ways(&model, &input);
        assert_eq!(
            banded.len(),
            tinycnn::plan::step_count(model.architecture())
        );
        assert_eq!(banded, apart, "{}", model.architecture());
    }
}
