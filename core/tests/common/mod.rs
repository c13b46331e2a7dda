//! Deterministic model records for the format tests.
#![allow(dead_code)] // Each test binary uses part of this module.

use tinycnn::arch::Layer;
use tinycnn::format::{
    Architecture, F32LayerRecord, F32Record, Int8LayerRecord, Int8Record, QuantParams,
};

/// Owned tensors of an int8 model, from which records borrow.
#[derive(Debug)]
pub struct Int8Tensors {
    pub layers: Vec<[Vec<u8>; 5]>,
    pub outputs: Vec<QuantParams>,
}

/// A valid int8 model whose values follow simple patterns of `seed`.
pub fn int8_tensors(seed: u32) -> Int8Tensors {
    let mut layers = Vec::new();
    let mut outputs = Vec::new();
    for (index, layer) in Layer::ALL.into_iter().enumerate() {
        let n = layer.outputs();
        let weights = (0..layer.weight_count())
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 255) as i32 - 127)
            .map(|w| w as i8 as u8)
            .collect();
        let scales = (0..n)
            .flat_map(|c| ((1 + c % 7) as f32 / 1024.0).to_le_bytes())
            .collect();
        let bias = (0..n)
            .flat_map(|c| ((c as i32 * 37 + seed as i32) % 2001 - 1000).to_le_bytes())
            .collect();
        let multipliers = (0..n)
            .flat_map(|c| ((1i32 << 30) + (c as i32 * 7919)).to_le_bytes())
            .collect();
        let shifts = (0..n).map(|c| (-8 - (c % 5) as i8) as u8).collect();
        layers.push([scales, weights, bias, multipliers, shifts]);
        outputs.push(QuantParams {
            scale: (5 + index) as f32 / 128.0,
            zero_point: if layer.has_relu() { -128 } else { 3 },
        });
    }
    Int8Tensors { layers, outputs }
}

impl Int8Tensors {
    pub fn record(&self) -> Int8Record<'_> {
        let layers: [Int8LayerRecord<'_>; 7] = core::array::from_fn(|i| {
            let [scales, weights, bias, multipliers, shifts] = &self.layers[i];
            Int8LayerRecord {
                output: self.outputs[i],
                weight_scales: scales,
                weights,
                bias,
                multipliers,
                shifts,
            }
        });
        Int8Record {
            architecture: Architecture::REFERENCE,
            input: QuantParams::INPUT,
            layers,
        }
    }
}

/// Owned tensors of an f32 model.
#[derive(Debug)]
pub struct F32Tensors {
    pub layers: Vec<[Vec<u8>; 2]>,
}

pub fn f32_tensors(seed: u32) -> F32Tensors {
    let layers = Layer::ALL
        .into_iter()
        .map(|layer| {
            let weights = (0..layer.weight_count())
                .flat_map(|i| ((((i as u32 ^ seed) % 1000) as f32 - 500.0) / 8192.0).to_le_bytes())
                .collect();
            let bias = (0..layer.outputs())
                .flat_map(|c| (c as f32 / 1024.0).to_le_bytes())
                .collect();
            [weights, bias]
        })
        .collect();
    F32Tensors { layers }
}

impl F32Tensors {
    pub fn record(&self) -> F32Record<'_> {
        let layers = core::array::from_fn(|i| {
            let [weights, bias] = &self.layers[i];
            F32LayerRecord { weights, bias }
        });
        F32Record {
            architecture: Architecture::REFERENCE,
            layers,
        }
    }
}

pub fn encode_int8(record: &Int8Record<'_>) -> Vec<u8> {
    let mut out = vec![0; record.encoded_len().unwrap()];
    let n = record.encode(&mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

pub fn encode_f32(record: &F32Record<'_>) -> Vec<u8> {
    let mut out = vec![0; record.encoded_len().unwrap()];
    let n = record.encode(&mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

/// Replaces a file's payload and fixes the header's length and CRC, so that
/// a test reaches the checks behind the checksum.
pub fn with_payload(file: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = file[..16].to_vec();
    out[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[12..16].copy_from_slice(&tinycnn::format::crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}
