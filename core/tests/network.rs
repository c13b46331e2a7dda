//! The whole-network runners against the plain reference kernels, wired up
//! independently from the model record.

mod common;

use common::*;
use tinycnn::arch::Tensor;
use tinycnn::kernels::{int8 as ki8, reference};
use tinycnn::{F32Model, F32Scratch, Int8Model, Int8Scratch};

fn image(seed: u32) -> [u8; 784] {
    core::array::from_fn(|i| ((i as u32 * 7 + seed * 13) % 256) as u8)
}

fn requant<'a>(
    layer: &tinycnn::format::Int8LayerRecord<'a>,
    outputs: usize,
    input_zp: i8,
    relu: bool,
) -> ki8::Requantization<'a> {
    ki8::Requantization::new(
        outputs,
        layer.bias,
        layer.multipliers,
        layer.shifts,
        input_zp,
        layer.output.zero_point,
        relu,
    )
    .unwrap()
}

#[test]
fn int8_network_matches_reference_composition() {
    let tensors = int8_tensors(11);
    let record = tensors.record();
    let bytes = encode_int8(&record);
    let model = Int8Model::from_bytes(&bytes).unwrap();
    let l = &record.layers;
    let conv1 = ki8::ConvLayer::<1, 64>::new(l[0].weights, requant(&l[0], 64, -128, true)).unwrap();
    let conv2 = ki8::ConvLayer::<64, 128>::new(
        l[1].weights,
        requant(&l[1], 128, l[0].output.zero_point, true),
    )
    .unwrap();
    let conv3 = ki8::ConvLayer::<128, 256>::new(
        l[2].weights,
        requant(&l[2], 256, l[1].output.zero_point, true),
    )
    .unwrap();
    let dense1 = ki8::DenseLayer::<2304, 128>::new(
        l[3].weights,
        requant(&l[3], 128, l[2].output.zero_point, true),
    )
    .unwrap();
    let dense2 = ki8::DenseLayer::<128, 64>::new(
        l[4].weights,
        requant(&l[4], 64, l[3].output.zero_point, true),
    )
    .unwrap();
    let dense3 = ki8::DenseLayer::<64, 32>::new(
        l[5].weights,
        requant(&l[5], 32, l[4].output.zero_point, true),
    )
    .unwrap();
    let dense4 = ki8::DenseLayer::<32, 10>::new(
        l[6].weights,
        requant(&l[6], 10, l[5].output.zero_point, false),
    )
    .unwrap();

    let mut scratch = Int8Scratch::new();
    let mut unsaturated = 0;
    for seed in 0..6 {
        let pixels = image(seed);
        let input: Tensor<i8, 28, 28, 1> = core::array::from_fn(|y| {
            core::array::from_fn(|x| [(pixels[y * 28 + x] as i32 - 128) as i8])
        });
        let mut full1 = Box::new([[[0i8; 64]; 28]; 28]);
        reference::conv3x3_same_i8(&input, &conv1, &mut full1);
        let mut p1 = Box::new([[[0i8; 64]; 14]; 14]);
        reference::max_pool2(&full1, &mut p1);
        let mut full2 = Box::new([[[0i8; 128]; 14]; 14]);
        reference::conv3x3_same_i8(&p1, &conv2, &mut full2);
        let mut p2 = Box::new([[[0i8; 128]; 7]; 7]);
        reference::max_pool2(&full2, &mut p2);
        let mut full3 = Box::new([[[0i8; 256]; 7]; 7]);
        reference::conv3x3_same_i8(&p2, &conv3, &mut full3);
        let mut p3 = [[[0i8; 256]; 3]; 3];
        reference::max_pool2(&full3, &mut p3);
        let mut d1 = [[[0i8; 128]; 1]; 1];
        reference::dense_i8(&p3, &dense1, &mut d1[0][0]);
        let mut d2 = [[[0i8; 64]; 1]; 1];
        reference::dense_i8(&d1, &dense2, &mut d2[0][0]);
        let mut d3 = [[[0i8; 32]; 1]; 1];
        reference::dense_i8(&d2, &dense3, &mut d3[0][0]);
        let mut logits = [0i8; 10];
        reference::dense_i8(&d3, &dense4, &mut logits);

        let prediction = model.classify(&pixels, &mut scratch);
        assert_eq!(prediction.logits, logits, "image {seed}");
        unsaturated += logits.iter().filter(|&&v| v != -128 && v != 127).count();
        let probabilities = model.probabilities(&prediction.logits);
        assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // The comparison would prove little if every logit were saturated.
    assert!(unsaturated > 0);
}

#[test]
fn f32_network_matches_reference_composition() {
    let tensors = f32_tensors(12);
    let bytes = encode_f32(&tensors.record());
    let model = F32Model::from_bytes(&bytes).unwrap();
    let floats = |bytes: &[u8]| {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect::<Vec<f32>>()
    };
    let w: Vec<Vec<f32>> = tensors.layers.iter().map(|[w, _]| floats(w)).collect();
    let b: Vec<Vec<f32>> = tensors.layers.iter().map(|[_, b]| floats(b)).collect();
    let mut scratch = F32Scratch::new();
    for seed in 0..3 {
        let pixels = image(seed);
        let input: Tensor<f32, 28, 28, 1> =
            core::array::from_fn(|y| core::array::from_fn(|x| [pixels[y * 28 + x] as f32 / 255.0]));
        let mut full1 = Box::new([[[0f32; 64]; 28]; 28]);
        reference::conv3x3_same_relu_f32(
            &input,
            &w[0],
            &b[0].clone().try_into().unwrap(),
            &mut full1,
        );
        let mut p1 = Box::new([[[0f32; 64]; 14]; 14]);
        reference::max_pool2(&full1, &mut p1);
        let mut full2 = Box::new([[[0f32; 128]; 14]; 14]);
        reference::conv3x3_same_relu_f32(&p1, &w[1], &b[1].clone().try_into().unwrap(), &mut full2);
        let mut p2 = Box::new([[[0f32; 128]; 7]; 7]);
        reference::max_pool2(&full2, &mut p2);
        let mut full3 = Box::new([[[0f32; 256]; 7]; 7]);
        reference::conv3x3_same_relu_f32(&p2, &w[2], &b[2].clone().try_into().unwrap(), &mut full3);
        let mut p3 = [[[0f32; 256]; 3]; 3];
        reference::max_pool2(&full3, &mut p3);
        let mut d1 = [[[0f32; 128]; 1]; 1];
        reference::dense_f32(
            &p3,
            &w[3],
            &b[3].clone().try_into().unwrap(),
            true,
            &mut d1[0][0],
        );
        let mut d2 = [[[0f32; 64]; 1]; 1];
        reference::dense_f32(
            &d1,
            &w[4],
            &b[4].clone().try_into().unwrap(),
            true,
            &mut d2[0][0],
        );
        let mut d3 = [[[0f32; 32]; 1]; 1];
        reference::dense_f32(
            &d2,
            &w[5],
            &b[5].clone().try_into().unwrap(),
            true,
            &mut d3[0][0],
        );
        let mut logits = [0f32; 10];
        reference::dense_f32(
            &d3,
            &w[6],
            &b[6].clone().try_into().unwrap(),
            false,
            &mut logits,
        );

        let prediction = model.classify(&pixels, &mut scratch);
        let range = logits.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
        for (a, b) in prediction.logits.iter().zip(&logits) {
            assert!((a - b).abs() <= 1e-4 * range, "{a} vs {b}");
        }
    }
}
