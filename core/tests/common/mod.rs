//! Deterministic model records for the format and network tests, for any
//! description. `golden_encoder.py` computes the same tensors.
#![allow(dead_code)] // Each test binary uses part of this module.

use tinycnn::Error;
use tinycnn::arch::{Activation, Architecture, Layer, Shape, Shortcut};
use tinycnn::audio::FrontEndConfig;
use tinycnn::format::{F32LayerRecord, F32Record, Int8LayerRecord, Int8Record, QuantParams};

/// A network unlike the reference: colour input, 5x5 'valid' and 1x1
/// convolutions, a stand-alone pool, a linear dense layer, five classes.
pub const OTHER: &str =
    "input:12x12x3 conv5x5:4:valid pool conv1x1:3:linear pool flatten dense:6:linear dense:5";

pub fn other() -> Architecture {
    tinycnn::text::parse(OTHER, Shape::new(1, 1, 1)).unwrap()
}

/// A small keyword-spotting network in the manner of MLPerf Tiny's DS-CNN,
/// which only version 3 can hold: a rectangular strided convolution,
/// depthwise convolutions (one with a multiplier), ReLU6, a residual block
/// with a strided projection and one with an identity shortcut, an average
/// and a max pool of rectangular windows, a global average pool and softmax.
/// Its int8 model reads its input with [`DS_CNN_INPUT`].
pub const DS_CNN: &str = "input:10x6x1 conv4x2:8:s2 dw3x3 conv1x1:8:relu6 \
     residual:12:s2 dw3x3:s2:m2:relu6 conv1x1:12:linear add \
     residual dw3x3:linear add:relu6 \
     avgpool3x2:s2:same maxpool2x1:s1:same gap flatten dense:5 softmax";

/// [`DS_CNN`]'s input quantisation: not pixels, which only version 3 can
/// hold.
pub const DS_CNN_INPUT: QuantParams = QuantParams {
    scale: 1.0 / 64.0,
    zero_point: -20,
};

pub fn ds_cnn() -> Architecture {
    tinycnn::text::parse(DS_CNN, Shape::new(1, 1, 1)).unwrap()
}

/// A dense-only network on a vector input whose output is values, not
/// classes (version 3 only).
pub const VALUES: &str = "input:20 dense:8:relu6 dense:6 dense:4:linear output:values";

pub fn values() -> Architecture {
    tinycnn::text::parse(VALUES, Shape::new(1, 1, 1)).unwrap()
}

/// Owned tensors of an int8 model, from which records borrow: per layer
/// with weights, `[weight_scales, weights, bias, multipliers, shifts]`.
#[derive(Debug)]
pub struct Int8Tensors {
    pub architecture: Architecture,
    pub input: QuantParams,
    pub layers: Vec<[Vec<u8>; 5]>,
    pub outputs: Vec<QuantParams>,
}

/// A valid int8 model of `architecture` whose values follow simple patterns
/// of `seed`. Additions and softmax get the parameters TensorFlow Lite would
/// compute from the scales around them. The input is pixels.
pub fn int8_tensors_of(architecture: Architecture, seed: u32) -> Int8Tensors {
    int8_tensors_with_input(architecture, QuantParams::INPUT, seed)
}

/// [`int8_tensors_of`] with another input quantisation (which makes the
/// file version 3).
pub fn int8_tensors_with_input(
    architecture: Architecture,
    input: QuantParams,
    seed: u32,
) -> Int8Tensors {
    let mut layers = Vec::new();
    let mut outputs = Vec::new();
    // The scales of the main line and of the open block's shortcut.
    let mut main = input;
    let mut shortcut = input;
    let le = |values: &[i32]| {
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    for info in architecture.iter() {
        let index = outputs.len();
        match info.layer {
            Layer::Residual(Shortcut::Identity) => {
                shortcut = main;
                continue;
            }
            Layer::Add(activation) => {
                let output = QuantParams {
                    scale: (9 + index) as f32 / 128.0,
                    zero_point: if activation == Activation::None {
                        3
                    } else {
                        -128
                    },
                };
                let params = tinycnn::quant::add_params(
                    [main.scale, shortcut.scale],
                    [main.zero_point, shortcut.zero_point],
                    output.scale,
                    output.zero_point,
                );
                let (multipliers, shifts) = params.record_multipliers();
                layers.push([
                    vec![],
                    vec![],
                    vec![],
                    le(&multipliers),
                    shifts.iter().map(|&s| s as i8 as u8).collect(),
                ]);
                outputs.push(output);
                main = output;
                continue;
            }
            Layer::Softmax => {
                let params = tinycnn::quant::softmax_params(main.scale, 1.0);
                layers.push([
                    vec![],
                    vec![],
                    le(&[params.diff_min]),
                    le(&[params.input_multiplier]),
                    vec![params.input_left_shift as i8 as u8],
                ]);
                outputs.push(tinycnn::format::SOFTMAX_OUTPUT);
                main = tinycnn::format::SOFTMAX_OUTPUT;
                continue;
            }
            _ if info.record.is_none() => continue,
            _ => {}
        }
        let n = info.outputs();
        let weights = (0..info.weights())
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
        let relu = info.activation() != Activation::None;
        let output = QuantParams {
            scale: (5 + index) as f32 / 128.0,
            zero_point: if relu { -128 } else { 3 },
        };
        outputs.push(output);
        if let Layer::Residual(_) = info.layer {
            shortcut = output;
        } else {
            main = output;
        }
    }
    Int8Tensors {
        architecture,
        input,
        layers,
        outputs,
    }
}

/// [`int8_tensors_of`] the reference network.
pub fn int8_tensors(seed: u32) -> Int8Tensors {
    int8_tensors_of(Architecture::REFERENCE, seed)
}

impl Int8Tensors {
    pub fn layer_records(&self) -> Vec<Int8LayerRecord<'_>> {
        self.layers
            .iter()
            .zip(&self.outputs)
            .map(
                |([scales, weights, bias, multipliers, shifts], &output)| Int8LayerRecord {
                    output,
                    weight_scales: scales,
                    weights,
                    bias,
                    multipliers,
                    shifts,
                },
            )
            .collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_names(&[])
    }

    /// The file with these class names (version 4 unless there are none).
    pub fn encode_with_names(&self, class_names: &[&str]) -> Vec<u8> {
        let layers = self.layer_records();
        encode_int8(&Int8Record {
            architecture: self.architecture,
            input: self.input,
            layers: &layers,
            class_names,
            front_end: None,
        })
    }

    /// The file in format `version` ([`Int8Record::encode_as`]), with these class names.
    pub fn encode_as(&self, version: u16, class_names: &[&str]) -> Result<Vec<u8>, Error> {
        self.encode_as_with_front_end(version, class_names, None)
    }

    /// The file in format `version` ([`Int8Record::encode_as`]), with these class names and
    /// this front end.
    pub fn encode_as_with_front_end(
        &self,
        version: u16,
        class_names: &[&str],
        front_end: Option<FrontEndConfig>,
    ) -> Result<Vec<u8>, Error> {
        let layers = self.layer_records();
        let record = Int8Record {
            architecture: self.architecture,
            input: self.input,
            layers: &layers,
            class_names,
            front_end,
        };
        // A version above `version()` adds a few bytes at most (a longer description, an
        // empty names section).
        let mut out = vec![0; record.encoded_len()? + 1024];
        let written = record.encode_as(version, &mut out)?;
        out.truncate(written);
        Ok(out)
    }

    /// The version 5 file of this model read from `front_end`'s features (version 6 for
    /// the 16-bit FFT).
    pub fn encode_with_front_end(
        &self,
        class_names: &[&str],
        front_end: FrontEndConfig,
    ) -> Result<Vec<u8>, Error> {
        let layers = self.layer_records();
        let record = Int8Record {
            architecture: self.architecture,
            input: self.input,
            layers: &layers,
            class_names,
            front_end: Some(front_end),
        };
        let mut out = vec![0; record.encoded_len()?];
        let written = record.encode(&mut out)?;
        out.truncate(written);
        Ok(out)
    }

    /// The same model as a version 1 file (the reference network only).
    pub fn encode_v1(&self) -> Vec<u8> {
        let mut payload = V1_ARCHITECTURE.to_vec();
        payload.extend(postcard::to_allocvec(&QuantParams::INPUT).unwrap());
        for layer in self.layer_records() {
            payload.extend(postcard::to_allocvec(&layer).unwrap());
        }
        v1_file(2, &payload)
    }
}

/// Owned tensors of an f32 model: per layer with weights, `[weights, bias]`.
#[derive(Debug)]
pub struct F32Tensors {
    pub architecture: Architecture,
    pub layers: Vec<[Vec<u8>; 2]>,
}

pub fn f32_tensors_of(architecture: Architecture, seed: u32) -> F32Tensors {
    let layers = architecture
        .iter()
        .filter(|info| info.record.is_some())
        .map(|info| {
            let weights = (0..info.weights())
                .flat_map(|i| ((((i as u32 ^ seed) % 1000) as f32 - 500.0) / 8192.0).to_le_bytes())
                .collect();
            let bias = (0..info.outputs())
                .flat_map(|c| (c as f32 / 1024.0).to_le_bytes())
                .collect();
            [weights, bias]
        })
        .collect();
    F32Tensors {
        architecture,
        layers,
    }
}

pub fn f32_tensors(seed: u32) -> F32Tensors {
    f32_tensors_of(Architecture::REFERENCE, seed)
}

impl F32Tensors {
    pub fn layer_records(&self) -> Vec<F32LayerRecord<'_>> {
        self.layers
            .iter()
            .map(|[weights, bias]| F32LayerRecord { weights, bias })
            .collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_names(&[])
    }

    /// The file with these class names (version 4 unless there are none).
    pub fn encode_with_names(&self, class_names: &[&str]) -> Vec<u8> {
        let layers = self.layer_records();
        encode_f32(&F32Record {
            architecture: self.architecture,
            layers: &layers,
            class_names,
            front_end: None,
        })
    }

    /// The version 5 file of this model read from `front_end`'s features (version 6 for
    /// the 16-bit FFT).
    pub fn encode_with_front_end(
        &self,
        class_names: &[&str],
        front_end: FrontEndConfig,
    ) -> Result<Vec<u8>, Error> {
        let layers = self.layer_records();
        let record = F32Record {
            architecture: self.architecture,
            layers: &layers,
            class_names,
            front_end: Some(front_end),
        };
        let mut out = vec![0; record.encoded_len()?];
        let written = record.encode(&mut out)?;
        out.truncate(written);
        Ok(out)
    }

    pub fn encode_v1(&self) -> Vec<u8> {
        let mut payload = V1_ARCHITECTURE.to_vec();
        for layer in self.layer_records() {
            payload.extend(postcard::to_allocvec(&layer).unwrap());
        }
        v1_file(1, &payload)
    }
}

/// Version 1's description of the reference network (`FORMAT.md`).
pub const V1_ARCHITECTURE: [u8; 13] = [
    0x1c, 0x1c, 0x01, 0x40, 0x80, 0x01, 0x80, 0x02, 0x80, 0x01, 0x40, 0x20, 0x0a,
];

fn v1_file(flavour: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = b"TCNN".to_vec();
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&[flavour, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&tinycnn::format::crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn encode_int8(record: &Int8Record<'_, '_>) -> Vec<u8> {
    let mut out = vec![0; record.encoded_len().unwrap()];
    let n = record.encode(&mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

pub fn encode_f32(record: &F32Record<'_, '_>) -> Vec<u8> {
    let mut out = vec![0; record.encoded_len().unwrap()];
    let n = record.encode(&mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

/// The class names section of `names` (`FORMAT.md`): the count, then each
/// name as a byte string, none checked.
pub fn names_section(names: &[&[u8]]) -> Vec<u8> {
    let mut out = varint(names.len());
    for name in names {
        out.extend(varint(name.len()));
        out.extend_from_slice(name);
    }
    out
}

/// An unsigned LEB128 varint.
pub fn varint(mut value: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Replaces a version 2 file's payload and fixes the header's length and
/// CRC, so that a test reaches the checks behind the checksum.
pub fn with_payload(file: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = file[..16].to_vec();
    out[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = tinycnn::format::crc32_of(&[&out[..12], payload]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A small deterministic generator.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n
    }

    pub fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.below(words.len())]
    }
}

/// A random valid description mixing the layers that run in bands (convolutions of every
/// kind, depthwise convolutions, pools, residual blocks) with those that do not.
pub fn random_architecture(seed: u64) -> Architecture {
    let mut rng = Lcg(seed);
    loop {
        let (h, w, c) = (1 + rng.below(24), 1 + rng.below(24), 1 + rng.below(6));
        let mut text = format!("input:{h}x{w}x{c}");
        let mut open = false;
        let layers = 1 + rng.below(9);
        for _ in 0..layers {
            let word = match rng.below(14) {
                0 | 1 => format!(
                    "conv{k}x{k}:{f}{p}",
                    k = rng.pick(&["1", "3", "5"]),
                    f = 1 + rng.below(12),
                    p = rng.pick(&["", ":valid", ":linear"])
                ),
                2 => format!(
                    "conv{}x{}:{}{}",
                    1 + rng.below(5),
                    1 + rng.below(4),
                    1 + rng.below(9),
                    rng.pick(&["", ":s2", ":s2:valid", ":s2x1", ":valid"])
                ),
                3 | 4 => format!(
                    "dw{k}x{k}{}",
                    rng.pick(&["", ":s2", ":m2", ":valid", ":s2:valid"]),
                    k = rng.pick(&["3", "3", "5", "2"])
                ),
                5 => "pool".into(),
                6 => format!(
                    "{}{}x{}{}",
                    rng.pick(&["maxpool", "avgpool"]),
                    1 + rng.below(3),
                    1 + rng.below(3),
                    rng.pick(&["", ":s1:same", ":s2:same", ":s1"])
                ),
                7..=9 if !open => {
                    open = true;
                    rng.pick(&["residual", "residual", "residual:6:s2", "residual:4"])
                        .into()
                }
                9 | 10 if open => {
                    open = false;
                    rng.pick(&["add", "add:linear"]).into()
                }
                11 => "drop:0.5".into(),
                12 => format!("conv3x3:{}:relu6", 1 + rng.below(8)),
                _ => format!("conv1x1:{}", 1 + rng.below(16)),
            };
            text += " ";
            text += &word;
        }
        if open {
            text += " add";
        }
        text += rng.pick(&[
            " flatten dense:5",
            " gap flatten dense:3 softmax",
            " flatten dense:7 dense:4",
        ]);
        if let Ok(architecture) = tinycnn::text::parse(&text, Shape::new(1, 1, 1)) {
            return architecture;
        }
    }
}
