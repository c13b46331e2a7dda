//! The model file format: round trips, golden bytes, version 1 files, and a
//! corpus of damaged files that must all be rejected without panicking.

mod common;

use common::*;
use proptest::prelude::*;
use std::sync::LazyLock;
use tinycnn::arch::{ArchError, Architecture, LayerKind, LayerName, Problem, Shape};
use tinycnn::audio::{FftArithmetic, FrontEndConfig, FrontEndError};
use tinycnn::format::{self, Flavour, HEADER_LEN, Int8Record, MAGIC, QuantParams, VERSION};
use tinycnn::{ClassNameProblem, Error, F32Model, FrontEndProblem, Int8Model, Model, TensorKind};

fn name(kind: LayerKind, number: u8) -> LayerName {
    LayerName { kind, number }
}

const CONV: LayerKind = LayerKind::Conv;
const DENSE: LayerKind = LayerKind::Dense;

#[test]
fn int8_round_trip_borrows_in_place() {
    for tensors in [int8_tensors(1), int8_tensors_of(other(), 1)] {
        let bytes = tensors.encode();
        let model = Int8Model::from_bytes(&bytes).unwrap();
        assert_eq!(model.architecture(), &tensors.architecture);
        let stored: Vec<_> = model.layers().collect();
        assert_eq!(stored, tensors.layer_records());
        // Every tensor is a view into `bytes`: nothing was copied.
        let range = bytes.as_ptr_range();
        for layer in &stored {
            for tensor in [
                layer.weights,
                layer.bias,
                layer.multipliers,
                layer.shifts,
                layer.weight_scales,
            ] {
                assert!(range.contains(&tensor.as_ptr()));
            }
        }
        assert!(matches!(Model::from_bytes(&bytes), Ok(Model::Int8(_))));
        assert_eq!(
            F32Model::from_bytes(&bytes).unwrap_err(),
            Error::WrongFlavour {
                expected: Flavour::F32,
                found: Flavour::Int8
            }
        );
        // The tutorial's vocabulary and pixel input are still written as version 2.
        assert_eq!(model.header().version, 2);
        assert_eq!(
            model.header().crc,
            u32::from_le_bytes(bytes[12..16].try_into().unwrap())
        );
    }
}

#[test]
fn f32_round_trip() {
    for tensors in [f32_tensors(2), f32_tensors_of(other(), 2)] {
        let bytes = tensors.encode();
        let model = F32Model::from_bytes(&bytes).unwrap();
        assert_eq!(model.architecture(), &tensors.architecture);
        assert_eq!(model.layers().collect::<Vec<_>>(), tensors.layer_records());
        assert_eq!(Model::from_bytes(&bytes).unwrap().flavour(), Flavour::F32);
        assert_eq!(
            Int8Model::from_bytes(&bytes).unwrap_err(),
            Error::WrongFlavour {
                expected: Flavour::Int8,
                found: Flavour::F32
            }
        );
    }
}

/// Version 1 files (written before descriptions existed) still load, as the
/// reference network, with the same tensors and the same logits.
#[test]
fn version_1_files_load_as_the_reference_network() {
    let tensors = int8_tensors(3);
    let (v1, v2) = (tensors.encode_v1(), tensors.encode());
    let old = Int8Model::from_bytes(&v1).unwrap();
    let new = Int8Model::from_bytes(&v2).unwrap();
    assert_eq!(old.header().version, 1);
    assert_eq!(old.architecture(), &Architecture::REFERENCE);
    assert_eq!(
        old.layers().collect::<Vec<_>>(),
        new.layers().collect::<Vec<_>>()
    );
    let image: Vec<u8> = (0..784).map(|i| (i * 7 % 256) as u8).collect();
    let (mut a, mut b) = (
        vec![0i8; old.scratch_bytes()],
        vec![0i8; new.scratch_bytes()],
    );
    assert_eq!(
        old.classify(&image, &mut a).unwrap().logits,
        new.classify(&image, &mut b).unwrap().logits
    );
    let f32s = f32_tensors(3);
    let f32_v1 = f32s.encode_v1();
    let old = F32Model::from_bytes(&f32_v1).unwrap();
    assert_eq!(old.architecture(), &Architecture::REFERENCE);
    assert_eq!(old.layers().collect::<Vec<_>>(), f32s.layer_records());
    // A version 1 description of any other network is refused.
    let mut payload = v1[HEADER_LEN..].to_vec();
    payload[12] = 11;
    let mut other = v1[..HEADER_LEN].to_vec();
    other[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    other[12..16].copy_from_slice(&format::crc32(&payload).to_le_bytes());
    other.extend_from_slice(&payload);
    assert_eq!(
        Model::from_bytes(&other).unwrap_err(),
        Error::NotReferenceNetwork
    );
}

/// Pins the byte layout that `FORMAT.md` documents.
#[test]
fn golden_bytes() {
    let bytes = int8_tensors(0).encode();
    let payload_len = bytes.len() - HEADER_LEN;
    // Header: version 2, int8, length, CRC over the header's first 12 bytes
    // and the payload.
    assert_eq!(&bytes[0..4], b"TCNN");
    assert_eq!(&bytes[4..8], &[2, 0, 2, 0]);
    assert_eq!(&bytes[8..12], &(payload_len as u32).to_le_bytes());
    let crc = format::crc32_of(&[&bytes[..12], &bytes[16..]]);
    assert_eq!(&bytes[12..16], &crc.to_le_bytes());
    // The description: input 28, 28, 1; 14 layers; conv tag 0, kernel byte
    // 3, 'same' 0, 64 filters (0x40), ReLU 1; pool tag 1; dropout tag 2,
    // 500 thousandths (0xf4 0x03); ...
    let description = [
        0x1c, 0x1c, 0x01, 0x0e, 0x00, 0x03, 0x00, 0x40, 0x01, 0x01, 0x02, 0xf4, 0x03,
    ];
    assert_eq!(&bytes[16..29], &description);
    // ... then flatten (3), dense 128 ReLU (4, 0x80 0x01, 1), 64, 32, and
    // the last dense, 10 units, no activation (0).
    assert_eq!(
        &bytes[49..63],
        &[
            0x03, 0x04, 0x80, 0x01, 0x01, 0x04, 0x40, 0x01, 0x04, 0x20, 0x01, 0x04, 0x0a, 0x00
        ]
    );
    // Input quantisation: f32 1/255 little-endian, zero point -128.
    assert_eq!(&bytes[63..68], &[0x81, 0x80, 0x80, 0x3b, 0x80]);
    // conv1: output quantisation (scale 5/128, zero point -128), then
    // weight_scales as a varint length (64 * 4 = 256 -> 0x80 0x02) + bytes.
    assert_eq!(&bytes[68..73], &[0x00, 0x00, 0x20, 0x3d, 0x80]);
    assert_eq!(&bytes[73..75], &[0x80, 0x02]);
    // Whole-file lengths and checksums, computed by an independent Python
    // encoder written from FORMAT.md (tests/golden_encoder.py), so any layout
    // change shows up here.
    assert_eq!(bytes.len(), 683_723);
    assert_eq!(format::crc32(&bytes), 0x1183_72cb);
    let v1 = int8_tensors(0).encode_v1();
    assert_eq!((v1.len(), format::crc32(&v1)), (683_689, 0xd692_2782));

    let f32_bytes = f32_tensors(0).encode();
    assert_eq!(&f32_bytes[4..8], &[2, 0, 1, 0]);
    assert_eq!(&f32_bytes[16..29], &description);
    assert_eq!(
        (f32_bytes.len(), format::crc32(&f32_bytes)),
        (2_701_574, 0x1a15_7cba)
    );
    let f32_v1 = f32_tensors(0).encode_v1();
    assert_eq!(
        (f32_v1.len(), format::crc32(&f32_v1)),
        (2_701_540, 0xadd3_f37a)
    );

    let other_int8 = int8_tensors_of(other(), 0).encode();
    let other_description = [
        0x0c, 0x0c, 0x03, 0x07, 0x00, 0x05, 0x01, 0x04, 0x01, 0x01, 0x00, 0x01, 0x00, 0x03, 0x00,
        0x01, 0x03, 0x04, 0x06, 0x00, 0x04, 0x05, 0x00,
    ];
    assert_eq!(&other_int8[16..39], &other_description);
    assert_eq!(
        (other_int8.len(), format::crc32(&other_int8)),
        (733, 0x5814_8752)
    );
    let other_f32 = f32_tensors_of(other(), 0).encode();
    assert_eq!(
        (other_f32.len(), format::crc32(&other_f32)),
        (1_777, 0x23fc_5ceb)
    );
}

/// Pins version 3's layout: lengths and checksums computed by the same
/// independent encoder (`tests/golden_encoder.py`) from `FORMAT.md`, for
/// models that use every kind of layer version 3 added, a vector input, an
/// output of values and an input quantisation other than pixels.
#[test]
fn golden_bytes_of_version_3() {
    let int8 = int8_tensors_with_input(ds_cnn(), DS_CNN_INPUT, 0);
    let bytes = int8.encode();
    assert_eq!(&bytes[4..8], &[3, 0, 2, 0]);
    // 10 x 6 x 1, 16 layers; conv1: tag 0, window 4 x 2, strides 2 x 2,
    // 'same' (0), 8 filters, ReLU (1); dw1: tag 5, 3 x 3, 1 x 1, 'same',
    // multiplier 1, ReLU; conv2: 1 x 1, 8 filters, ReLU6 (2); residual1: tag
    // 9, a projection of 12 (0x0c) filters, stride 2; ...
    let description = [
        0x0a, 0x06, 0x01, 0x10, 0x00, 0x04, 0x02, 0x02, 0x02, 0x00, 0x08, 0x01, 0x05, 0x03, 0x03,
        0x01, 0x01, 0x00, 0x01, 0x01, 0x00, 0x01, 0x01, 0x01, 0x01, 0x00, 0x08, 0x02, 0x09, 0x0c,
        0x02, 0x05, 0x03, 0x03, 0x02, 0x02, 0x00, 0x02, 0x02, 0x00, 0x01, 0x01, 0x01, 0x01, 0x00,
        0x0c, 0x00, 0x0a, 0x01, 0x09, 0x00, 0x01, 0x05, 0x03, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00,
        0x0a, 0x02, 0x07, 0x03, 0x02, 0x02, 0x02, 0x00, 0x06, 0x02, 0x01, 0x01, 0x01, 0x00, 0x08,
        0x03, 0x04, 0x05, 0x00, 0x0b, 0x00,
    ];
    // ... add1 ReLU (0a 01), residual2 identity (09 00 01), add2 ReLU6 (0a
    // 02), avgpool1 (tag 7), pool1 (tag 6), gap1 (8), flatten, dense 5
    // linear, softmax (0b), output kind classes (00).
    let end = 16 + description.len();
    assert_eq!(&bytes[16..end], &description);
    // The input quantisation: 1/64 (0x3c800000), zero point -20 (0xec).
    assert_eq!(&bytes[end..end + 5], &[0x00, 0x00, 0x80, 0x3c, 0xec]);
    assert_eq!((bytes.len(), format::crc32(&bytes)), (2_106, 0x7d77_1d77));
    let model = Int8Model::from_bytes(&bytes).unwrap();
    assert_eq!(model.architecture(), &ds_cnn());
    assert_eq!(model.input_quantization(), DS_CNN_INPUT);
    assert_eq!(model.layers().collect::<Vec<_>>(), int8.layer_records());

    let f32s = f32_tensors_of(ds_cnn(), 0);
    let f32_bytes = f32s.encode();
    assert_eq!(&f32_bytes[4..8], &[3, 0, 1, 0]);
    assert_eq!(&f32_bytes[16..end], &description);
    assert_eq!(
        (f32_bytes.len(), format::crc32(&f32_bytes)),
        (3_651, 0x2ca4_b8c5)
    );
    let model = F32Model::from_bytes(&f32_bytes).unwrap();
    assert_eq!(model.architecture(), &ds_cnn());
    assert_eq!(model.layers().collect::<Vec<_>>(), f32s.layer_records());

    // A vector of 20 values is a 1 x 1 x 20 input; 3 dense layers; the
    // output kind is values (01).
    let values_description = [
        0x01, 0x01, 0x14, 0x03, 0x04, 0x08, 0x02, 0x04, 0x06, 0x01, 0x04, 0x04, 0x00, 0x01,
    ];
    let int8 = int8_tensors_of(values(), 0);
    let bytes = int8.encode();
    assert_eq!(&bytes[4..8], &[3, 0, 2, 0]);
    assert_eq!(&bytes[16..30], &values_description);
    assert_eq!(&bytes[30..35], &[0x81, 0x80, 0x80, 0x3b, 0x80]);
    assert_eq!((bytes.len(), format::crc32(&bytes)), (532, 0xf61f_40fa));
    let model = Int8Model::from_bytes(&bytes).unwrap();
    assert_eq!(model.architecture(), &values());
    assert_eq!(model.layers().collect::<Vec<_>>(), int8.layer_records());
    let f32s = f32_tensors_of(values(), 0);
    let bytes = f32s.encode();
    assert_eq!(&bytes[4..8], &[3, 0, 1, 0]);
    assert_eq!(&bytes[16..30], &values_description);
    assert_eq!((bytes.len(), format::crc32(&bytes)), (1_038, 0xecd7_96a6));
    let model = F32Model::from_bytes(&bytes).unwrap();
    assert_eq!(model.architecture(), &values());
    assert_eq!(model.layers().collect::<Vec<_>>(), f32s.layer_records());
}

#[test]
fn the_description_is_readable_without_the_tensors() {
    let bytes = int8_tensors_of(other(), 4).encode();
    assert_eq!(
        format::peek_architecture(&bytes),
        Ok((Flavour::Int8, other()))
    );
    // Only the header and description: a truncated file still tells.
    assert!(format::peek_architecture(&bytes[..40]).is_err());
    assert_eq!(
        tinycnn::plan::int8_scratch_bytes_of_model(&bytes),
        Ok(tinycnn::plan::int8_scratch_bytes(&other()))
    );
    let f32_bytes = f32_tensors_of(other(), 4).encode();
    assert_eq!(
        tinycnn::plan::int8_scratch_bytes_of_model(&f32_bytes),
        Err(Error::WrongFlavour {
            expected: Flavour::Int8,
            found: Flavour::F32
        })
    );
}

/// The scratch size of a model embedded with `include_bytes!`, computed while
/// compiling, as the firmware does.
#[test]
fn scratch_size_is_known_at_compile_time() {
    const SHIPPED: usize =
        tinycnn::plan::int8_scratch_bytes_or_panic(include_bytes!("../../data/model-int8.tcnn"));
    assert_eq!(
        SHIPPED,
        tinycnn::plan::int8_scratch_bytes(&Architecture::REFERENCE)
    );
    // With the portable kernels (this target's), out of place: conv2's input + output.
    assert_eq!(SHIPPED, 12_544 + 6_272);
}

#[test]
fn header_errors() {
    let bytes = int8_tensors(3).encode();
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(
        Model::from_bytes(&bad).unwrap_err(),
        Error::BadMagic { found: *b"XCNN" }
    );
    let mut bad = bytes.clone();
    bad[4] = 7;
    assert_eq!(
        Model::from_bytes(&bad).unwrap_err(),
        Error::UnsupportedVersion {
            found: 7,
            newest: VERSION
        }
    );
    assert_eq!(VERSION, 6);
    let mut bad = bytes.clone();
    bad[6] = 3;
    assert_eq!(
        Model::from_bytes(&bad).unwrap_err(),
        Error::UnknownFlavour { found: 3 }
    );
    let mut bad = bytes.clone();
    bad[7] = 1;
    assert_eq!(
        Model::from_bytes(&bad).unwrap_err(),
        Error::ReservedByteSet { found: 1 }
    );
    // The flavour is covered by the CRC: the other valid flavour is caught.
    let mut bad = bytes.clone();
    bad[6] = 1;
    assert!(matches!(
        Model::from_bytes(&bad).unwrap_err(),
        Error::ChecksumMismatch { .. }
    ));
    let mut bad = bytes.clone();
    bad.push(0);
    assert_eq!(
        Model::from_bytes(&bad).unwrap_err(),
        Error::TrailingBytes { extra: 1 }
    );
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        Model::from_bytes(&bad).unwrap_err(),
        Error::ChecksumMismatch { .. }
    ));
    // A length that claims 4 GiB is a truncation, not an allocation.
    let mut bad = bytes.clone();
    bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        Model::from_bytes(&bad).unwrap_err(),
        Error::Truncated {
            needed: HEADER_LEN + u32::MAX as usize,
            available: bytes.len()
        }
    );
    assert_eq!(
        Model::from_bytes(&[]).unwrap_err(),
        Error::Truncated {
            needed: 16,
            available: 0
        }
    );
    assert_eq!(&MAGIC, b"TCNN");
}

#[test]
fn every_truncation_is_rejected() {
    for bytes in [
        int8_tensors(4).encode(),
        f32_tensors(4).encode(),
        int8_tensors_of(other(), 4).encode_with_names(&OTHER_NAMES),
        f32_tensors_of(other(), 4).encode_with_names(&OTHER_NAMES),
    ] {
        for len in 0..bytes.len() {
            let error = Model::from_bytes(&bytes[..len]).unwrap_err();
            assert!(
                matches!(error, Error::Truncated { .. }),
                "length {len}: {error}"
            );
        }
    }
}

#[test]
fn every_header_bit_flip_is_rejected() {
    for bytes in [
        int8_tensors(5).encode(),
        int8_tensors(5).encode_v1(),
        int8_tensors_of(other(), 5).encode_with_names(&OTHER_NAMES),
    ] {
        for bit in 0..HEADER_LEN * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(Model::from_bytes(&bad).is_err(), "bit {bit}");
        }
    }
}

#[test]
fn payload_bit_flips_are_caught_by_the_checksum() {
    let bytes = int8_tensors(6).encode();
    for i in 0..200 {
        let bit = (i * 27_361 + 11) % ((bytes.len() - HEADER_LEN) * 8) + HEADER_LEN * 8;
        let mut bad = bytes.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(matches!(
            Model::from_bytes(&bad).unwrap_err(),
            Error::ChecksumMismatch { .. }
        ));
    }
}

/// A file whose payload is `description` followed by the records of
/// `tensors` (int8), with a valid header and CRC.
fn with_description(tensors: &Int8Tensors, description: &[u8]) -> Vec<u8> {
    let valid = tensors.encode();
    let described = {
        let mut sink = Vec::new();
        sink.extend_from_slice(description);
        sink.extend_from_slice(&postcard::to_allocvec(&QuantParams::INPUT).unwrap());
        for record in tensors.layer_records() {
            sink.extend_from_slice(&postcard::to_allocvec(&record).unwrap());
        }
        sink
    };
    with_payload(&valid, &described)
}

/// Damage to the description behind a valid checksum.
#[test]
fn descriptions_are_checked() {
    let tensors = int8_tensors_of(other(), 1);
    let good: Vec<u8> = [
        0x0c, 0x0c, 0x03, 0x07, 0x00, 0x05, 0x01, 0x04, 0x01, 0x01, 0x00, 0x01, 0x00, 0x03, 0x00,
        0x01, 0x03, 0x04, 0x06, 0x00, 0x04, 0x05, 0x00,
    ]
    .to_vec();
    assert!(Model::from_bytes(&with_description(&tensors, &good)).is_ok());
    let check = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut description = good.clone();
        edit(&mut description);
        Model::from_bytes(&with_description(&tensors, &description)).unwrap_err()
    };
    // An unknown layer tag.
    assert_eq!(check(&|d| d[4] = 9), Error::BadDescription { offset: 4 });
    // A 7x7 kernel decodes and is a valid network, but version 2 never had it.
    assert_eq!(check(&|d| d[5] = 7), Error::NotInVersion { version: 2 });
    // An overlong varint (4 filters as 0x84 0x00) and an activation of 2:
    // the error names the layer's first byte.
    assert_eq!(
        check(&|d| {
            d[7] = 0x84;
            d.insert(8, 0x00);
        }),
        Error::BadDescription { offset: 4 }
    );
    assert_eq!(check(&|d| d[8] = 2), Error::BadDescription { offset: 4 });
    // A valid encoding of an invalid network: a pool on the 1x1 map.
    let mut pools = good.clone();
    pools[3] = 0x09;
    pools.splice(16..16, [0x01, 0x01]);
    assert!(matches!(
        Model::from_bytes(&with_description(&tensors, &pools)).unwrap_err(),
        Error::Architecture(ArchError {
            index: Some(5),
            problem: Problem::PoolTooSmall { .. },
            ..
        })
    ));
    // A layer count above the limit.
    assert!(matches!(
        check(&|d| d[3] = 60),
        Error::Architecture(ArchError {
            problem: Problem::TooManyLayers { count: 60 },
            ..
        })
    ));
    // Cut short inside the description: whatever it reads next, it refuses.
    let _refused: Error = check(&|d| d.truncate(10));
}

/// Damage behind a valid checksum: the payload checks must catch it.
#[test]
fn semantic_errors_behind_a_valid_checksum() {
    let tensors = int8_tensors(7);
    fn edit<'a>(
        tensors: &'a Int8Tensors,
        change: impl FnOnce(&mut Vec<tinycnn::format::Int8LayerRecord<'a>>, &mut QuantParams),
    ) -> Result<(), Error> {
        let mut layers = tensors.layer_records();
        let mut input = QuantParams::INPUT;
        change(&mut layers, &mut input);
        let record = Int8Record {
            architecture: Architecture::REFERENCE,
            input,
            layers: &layers,
            class_names: &[],
            front_end: None,
        };
        Int8Model::from_bytes(&encode_int8(&record)).map(|_| ())
    }
    assert_eq!(edit(&tensors, |_, _| ()), Ok(()));
    // Another input quantisation makes a version 3 file; version 2 refuses it.
    let other_input = QuantParams {
        scale: 1.0 / 256.0,
        zero_point: -128,
    };
    assert_eq!(edit(&tensors, |_, input| *input = other_input), Ok(()));
    let v2 = tensors.encode();
    let mut payload = v2[16..].to_vec();
    // The reference network's description is 47 bytes; the input's scale follows.
    assert_eq!(&payload[47..52], &[0x81, 0x80, 0x80, 0x3b, 0x80]);
    payload[47..51].copy_from_slice(&other_input.scale.to_le_bytes());
    assert_eq!(
        Int8Model::from_bytes(&with_payload(&v2, &payload)).unwrap_err(),
        Error::UnsupportedInputQuantization
    );
    for scale in [0.0, -1.0, f32::NAN] {
        assert_eq!(
            edit(&tensors, |_, input| input.scale = scale),
            Err(Error::BadScale {
                layer: None,
                tensor: None
            })
        );
    }
    let short = [0u8; 3];
    assert_eq!(
        edit(&tensors, |layers, _| layers[2].weights = &short),
        Err(Error::TensorLength {
            layer: name(CONV, 3),
            tensor: TensorKind::Weights,
            expected: 294_912,
            found: 3
        })
    );
    assert_eq!(
        edit(&tensors, |layers, _| layers[6].shifts = &short),
        Err(Error::TensorLength {
            layer: name(DENSE, 4),
            tensor: TensorKind::Shifts,
            expected: 10,
            found: 3
        })
    );
    for scale in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert_eq!(
            edit(&tensors, |layers, _| layers[1].output.scale = scale),
            Err(Error::BadScale {
                layer: Some(name(CONV, 2)),
                tensor: None
            })
        );
        let scales: Vec<u8> = (0..32).flat_map(|_| scale.to_le_bytes()).collect();
        assert_eq!(
            edit(&tensors, |layers, _| layers[5].weight_scales = &scales),
            Err(Error::BadScale {
                layer: Some(name(DENSE, 3)),
                tensor: Some(TensorKind::WeightScales)
            })
        );
    }
    let mut weights = tensors.layers[4][1].clone();
    weights[17] = 0x80;
    assert_eq!(
        edit(&tensors, |layers, _| layers[4].weights = &weights),
        Err(Error::WeightOutOfRange {
            layer: name(DENSE, 2)
        })
    );
    let mut multipliers = tensors.layers[3][3].clone();
    multipliers[4 * 5..4 * 6].copy_from_slice(&(-1i32).to_le_bytes());
    assert_eq!(
        edit(&tensors, |layers, _| layers[3].multipliers = &multipliers),
        Err(Error::BadMultiplier {
            layer: name(DENSE, 1),
            channel: 5,
            multiplier: -1
        })
    );
    for shift in [-32i8, 31, i8::MIN, i8::MAX] {
        let mut shifts = tensors.layers[0][4].clone();
        shifts[63] = shift as u8;
        assert_eq!(
            edit(&tensors, |layers, _| layers[0].shifts = &shifts),
            Err(Error::BadShift {
                layer: name(CONV, 1),
                channel: 63,
                shift
            })
        );
    }
    for shift in [-31i8, 30] {
        let mut shifts = tensors.layers[0][4].clone();
        shifts[0] = shift as u8;
        assert_eq!(
            edit(&tensors, |layers, _| layers[0].shifts = &shifts),
            Ok(())
        );
    }
    // Any non-negative multiplier is accepted, also below 2^30.
    let small = [1u8, 0, 0, 0].repeat(64);
    assert_eq!(
        edit(&tensors, |layers, _| layers[0].multipliers = &small),
        Ok(())
    );

    let f32s = f32_tensors(8);
    let mut weights = f32s.layers[6][0].clone();
    weights[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut layers = f32s.layer_records();
    layers[6].weights = &weights;
    let record = tinycnn::format::F32Record {
        architecture: Architecture::REFERENCE,
        layers: &layers,
        class_names: &[],
        front_end: None,
    };
    assert_eq!(
        F32Model::from_bytes(&encode_f32(&record)).unwrap_err(),
        Error::NonFiniteValue {
            layer: name(DENSE, 4),
            tensor: TensorKind::Weights
        }
    );
}

/// The records: one per layer with weights, in their shortest encoding,
/// nothing after the last.
#[test]
fn records_must_be_complete_and_canonical() {
    let tensors = int8_tensors_of(other(), 2);
    let valid = tensors.encode();
    let payload = &valid[HEADER_LEN..];
    // Drop the last record (the final dense layer's).
    let records = tensors.layer_records();
    let last = postcard::to_allocvec(records.last().unwrap()).unwrap();
    let missing = with_payload(&valid, &payload[..payload.len() - last.len()]);
    assert_eq!(Model::from_bytes(&missing).unwrap_err(), Error::Malformed);
    // One record too many.
    let mut extra = payload.to_vec();
    extra.extend_from_slice(&last);
    assert_eq!(
        Model::from_bytes(&with_payload(&valid, &extra)).unwrap_err(),
        Error::Malformed
    );
    // The last record's shifts length (5) written as the overlong 0x85 0x00.
    let mut overlong = payload.to_vec();
    let shifts_len = overlong.len() - 6;
    assert_eq!(overlong[shifts_len], 5);
    overlong[shifts_len] = 0x85;
    overlong.insert(shifts_len + 1, 0x00);
    assert_eq!(
        Model::from_bytes(&with_payload(&valid, &overlong)).unwrap_err(),
        Error::Malformed
    );
}

#[test]
fn encode_reports_small_buffers_and_mismatched_records() {
    let tensors = int8_tensors(9);
    let layers = tensors.layer_records();
    let record = Int8Record {
        architecture: Architecture::REFERENCE,
        input: QuantParams::INPUT,
        layers: &layers,
        class_names: &[],
        front_end: None,
    };
    let needed = record.encoded_len().unwrap();
    for size in [0, 10, 16, needed - 1] {
        let mut out = vec![0; size];
        assert!(matches!(
            record.encode(&mut out),
            Err(Error::BufferTooSmall { .. })
        ));
    }
    let too_few = Int8Record {
        layers: &layers[..6],
        ..record
    };
    assert_eq!(too_few.encoded_len(), Err(Error::TooLarge));
}

#[test]
fn errors_read_well() {
    let message = Error::TensorLength {
        layer: name(CONV, 2),
        tensor: TensorKind::Bias,
        expected: 512,
        found: 3,
    };
    assert_eq!(message.to_string(), "conv2 bias has 3 bytes, expected 512");
    assert_eq!(
        Error::BadMagic { found: *b"\x89PNG" }.to_string(),
        "not a tinycnn file: it starts with 89 50 4e 47"
    );
    assert_eq!(
        Error::BadMagic { found: *b"GIF8" }.to_string(),
        "not a tinycnn file: it starts with 47 49 46 38 (\"GIF8\")"
    );
    assert_eq!(
        Error::BadMagic { found: *b"TCTV" }.to_string(),
        "a test-vector file (TCTV) where a model was expected"
    );
    let invalid = Architecture::new(
        Shape::new(4, 4, 1),
        &[tinycnn::Layer::Flatten, tinycnn::Layer::Flatten],
    )
    .unwrap_err();
    assert_eq!(
        Error::Architecture(invalid).to_string(),
        "the network is not valid: layer 2 (flatten): the map is already flattened"
    );
}

static INT8_TEMPLATE: LazyLock<Vec<u8>> = LazyLock::new(|| int8_tensors(1).encode());
static F32_TEMPLATE: LazyLock<Vec<u8>> = LazyLock::new(|| f32_tensors(1).encode());
static OTHER_TEMPLATE: LazyLock<Vec<u8>> = LazyLock::new(|| int8_tensors_of(other(), 1).encode());
static NAMED_TEMPLATE: LazyLock<Vec<u8>> =
    LazyLock::new(|| int8_tensors_of(other(), 1).encode_with_names(&OTHER_NAMES));

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never panic.
    #[test]
    fn arbitrary_bytes_are_rejected_or_valid(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Model::from_bytes(&bytes);
        let _ = format::peek_architecture(&bytes);
    }

    /// Arbitrary payloads behind a valid header and checksum never panic.
    #[test]
    fn arbitrary_payloads_are_rejected(payload in proptest::collection::vec(any::<u8>(), 0..2048), int8: bool) {
        let template = if int8 { &*INT8_TEMPLATE } else { &*F32_TEMPLATE };
        let file = with_payload(template, &payload);
        prop_assert!(Model::from_bytes(&file).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A valid payload with a few bytes changed (and the checksum fixed) is
    /// rejected or loads, and a loaded model classifies without panicking.
    #[test]
    fn mutated_payloads_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        template in 0..3usize,
    ) {
        let template = [&*OTHER_TEMPLATE, &*INT8_TEMPLATE, &*NAMED_TEMPLATE][template];
        let mut payload = template[HEADER_LEN..].to_vec();
        for (index, value) in &edits {
            let i = index.index(payload.len());
            payload[i] = *value;
        }
        let file = with_payload(template, &payload);
        if let Ok(Model::Int8(model)) = Model::from_bytes(&file) {
            let mut scratch = vec![0i8; model.scratch_bytes()];
            let image = vec![200u8; model.input_shape().values()];
            let prediction = model.classify(&image, &mut scratch).unwrap();
            prop_assert!(prediction.class < model.architecture().classes());
            let names = model.class_names();
            prop_assert!(names.is_empty() || names.len() == model.architecture().classes());
            prop_assert_eq!(names.iter().count(), names.len());
        }
    }
}

/// Descriptions only version 3 holds: every new layer and option once.
const VERSION_3_DESCRIPTIONS: [&str; 4] = [
    "input:20x10x1 conv10x4:8:s2 dw3x3:m2 conv1x1:8:relu6 dw3x3:s2x1:valid:linear \
     avgpool3x2:s1:same maxpool2x3 flatten dense:6:relu6 dense:3 softmax",
    "input:12x12x3 conv3x3:4 residual conv3x3:4 conv3x3:4:linear add residual:8:s2 \
     conv3x3:8:s2 conv3x3:8:linear add:linear gap dense:4",
    "input:24 dense:8 dense:3:relu6 dense:24:linear output:values",
    "input:6x6x2 conv3x3:3 pool flatten dense:4 softmax",
];

#[test]
fn version_3_descriptions_round_trip_in_both_flavours() {
    for (index, text) in VERSION_3_DESCRIPTIONS.iter().enumerate() {
        let architecture = tinycnn::text::parse(text, Shape::new(1, 1, 1)).unwrap();
        assert!(architecture.needs_version_3(), "{text}");
        let tensors = int8_tensors_of(architecture, index as u32);
        let bytes = tensors.encode();
        let model = Int8Model::from_bytes(&bytes).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(model.header().version, 3);
        assert_eq!(model.architecture(), &architecture);
        assert_eq!(model.layers().collect::<Vec<_>>(), tensors.layer_records());
        assert_eq!(
            format::peek_architecture(&bytes),
            Ok((Flavour::Int8, architecture))
        );
        let f32s = f32_tensors_of(architecture, index as u32);
        let bytes = f32s.encode();
        let model = F32Model::from_bytes(&bytes).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(model.architecture(), &architecture);
        assert_eq!(model.layers().collect::<Vec<_>>(), f32s.layer_records());
        // Every cut is refused.
        for length in 0..bytes.len() {
            assert!(F32Model::from_bytes(&bytes[..length]).is_err());
        }
    }
}

#[test]
fn version_3_records_of_additions_and_softmax_are_checked() {
    let architecture =
        tinycnn::text::parse(VERSION_3_DESCRIPTIONS[0], Shape::new(1, 1, 1)).unwrap();
    let tensors = int8_tensors_of(architecture, 5);
    let edit = |change: &dyn Fn(&mut Vec<tinycnn::format::Int8LayerRecord<'_>>)| {
        let mut layers = tensors.layer_records();
        change(&mut layers);
        let record = Int8Record {
            architecture,
            input: QuantParams::INPUT,
            layers: &layers,
            class_names: &[],
            front_end: None,
        };
        Int8Model::from_bytes(&encode_int8(&record)).map(|_| ())
    };
    assert_eq!(edit(&|_| ()), Ok(()));
    let softmax = architecture.record_layers() - 1;
    let softmax_name = LayerName {
        kind: LayerKind::Softmax,
        number: 1,
    };
    // The softmax writes scale 1/256, zero point -128, and nothing else.
    assert_eq!(
        edit(&|layers| layers[softmax].output.zero_point = 0),
        Err(Error::BadScale {
            layer: Some(softmax_name),
            tensor: None
        })
    );
    // diff_min, in the bias, is at most 0.
    assert!(matches!(
        edit(&|layers| layers[softmax].bias = &[5, 0, 0, 0]),
        Err(Error::BadMultiplier { .. })
    ));
    assert!(matches!(
        edit(&|layers| layers[softmax].shifts = &[0, 0]),
        Err(Error::TensorLength {
            tensor: TensorKind::Shifts,
            ..
        })
    ));
    // A residual network's addition holds three multipliers and shifts.
    let residual = tinycnn::text::parse(VERSION_3_DESCRIPTIONS[1], Shape::new(1, 1, 1)).unwrap();
    let tensors = int8_tensors_of(residual, 6);
    let add = residual
        .iter()
        .find(|info| matches!(info.layer, tinycnn::arch::Layer::Add(_)))
        .and_then(|info| info.record)
        .unwrap();
    let mut layers = tensors.layer_records();
    let four = [0u8; 16];
    layers[add].multipliers = &four;
    let record = Int8Record {
        architecture: residual,
        input: QuantParams::INPUT,
        layers: &layers,
        class_names: &[],
        front_end: None,
    };
    assert!(matches!(
        Int8Model::from_bytes(&encode_int8(&record)),
        Err(Error::TensorLength {
            tensor: TensorKind::Multipliers,
            expected: 12,
            found: 16,
            ..
        })
    ));
    // A version 2 description may be written as version 3 on request, not the reverse.
    let tutorial = int8_tensors(2);
    let layers = tutorial.layer_records();
    let record = Int8Record {
        architecture: Architecture::REFERENCE,
        input: QuantParams::INPUT,
        layers: &layers,
        class_names: &[],
        front_end: None,
    };
    let mut v3 = vec![0; record.encoded_len().unwrap() + 64];
    let written = record.encode_as(3, &mut v3).unwrap();
    v3.truncate(written);
    assert_eq!(Int8Model::from_bytes(&v3).unwrap().header().version, 3);
    let layers = tensors.layer_records();
    let record = Int8Record {
        architecture: residual,
        input: QuantParams::INPUT,
        layers: &layers,
        class_names: &[],
        front_end: None,
    };
    assert_eq!(
        record.encode_as(2, &mut v3).unwrap_err(),
        Error::UnsupportedVersion {
            found: 2,
            newest: VERSION
        }
    );
}

/// The class names of `other()`'s five classes in the golden files: ASCII, a
/// two-byte and a four-byte character.
const OTHER_NAMES: [&str; 5] = ["cat", "dog", "café", "7", "🐦 bird"];

/// Their class names section, as `golden_encoder.py` prints it.
const OTHER_NAMES_SECTION: [u8; 27] = [
    0x05, 0x03, 0x63, 0x61, 0x74, 0x03, 0x64, 0x6f, 0x67, 0x05, 0x63, 0x61, 0x66, 0xc3, 0xa9, 0x01,
    0x37, 0x09, 0xf0, 0x9f, 0x90, 0xa6, 0x20, 0x62, 0x69, 0x72, 0x64,
];

/// Pins version 4's layout: a model with class names is version 3's payload
/// followed by the names, lengths and checksums computed by the independent
/// encoder (`tests/golden_encoder.py`) from `FORMAT.md`.
#[test]
fn golden_bytes_of_version_4() {
    let int8 = int8_tensors_of(other(), 0);
    let bytes = int8.encode_with_names(&OTHER_NAMES);
    assert_eq!(&bytes[4..8], &[4, 0, 2, 0]);
    // The description in version 3's form: conv 5 x 5, strides 1 x 1,
    // 'valid' (1), 4 filters, ReLU; pool; conv 1 x 1, 'same', 3, none; pool;
    // flatten; dense 6 and 5, none; output kind classes (00).
    let description = [
        0x0c, 0x0c, 0x03, 0x07, 0x00, 0x05, 0x05, 0x01, 0x01, 0x01, 0x04, 0x01, 0x01, 0x00, 0x01,
        0x01, 0x01, 0x01, 0x00, 0x03, 0x00, 0x01, 0x03, 0x04, 0x06, 0x00, 0x04, 0x05, 0x00, 0x00,
    ];
    assert_eq!(&bytes[16..46], &description);
    // The names end the file, after version 3's payload.
    assert!(bytes.ends_with(&OTHER_NAMES_SECTION));
    let v3 = int8.encode_as(3, &[]).unwrap();
    assert_eq!(
        &bytes[HEADER_LEN..bytes.len() - OTHER_NAMES_SECTION.len()],
        &v3[HEADER_LEN..]
    );
    assert_eq!((bytes.len(), format::crc32(&bytes)), (767, 0xf30d_60a8));
    let model = Int8Model::from_bytes(&bytes).unwrap();
    assert_eq!(model.header().version, 4);
    assert_eq!(model.architecture(), &other());
    assert_eq!(model.layers().collect::<Vec<_>>(), int8.layer_records());
    assert_eq!(model.class_names().iter().collect::<Vec<_>>(), OTHER_NAMES);

    let f32s = f32_tensors_of(other(), 0);
    let f32_bytes = f32s.encode_with_names(&OTHER_NAMES);
    assert_eq!(&f32_bytes[4..8], &[4, 0, 1, 0]);
    assert_eq!(&f32_bytes[16..46], &description);
    assert!(f32_bytes.ends_with(&OTHER_NAMES_SECTION));
    assert_eq!(
        (f32_bytes.len(), format::crc32(&f32_bytes)),
        (1_811, 0xbe29_0813)
    );
    let model = F32Model::from_bytes(&f32_bytes).unwrap();
    assert_eq!(model.layers().collect::<Vec<_>>(), f32s.layer_records());
    assert_eq!(model.class_names().iter().collect::<Vec<_>>(), OTHER_NAMES);

    // Version 4 without names, on request: a count of 0 ends the file.
    let unnamed = int8.encode_as(4, &[]).unwrap();
    assert_eq!(&unnamed[4..8], &[4, 0, 2, 0]);
    assert_eq!(unnamed[HEADER_LEN..unnamed.len() - 1], v3[HEADER_LEN..]);
    assert_eq!(unnamed.last(), Some(&0));
    assert_eq!((unnamed.len(), format::crc32(&unnamed)), (741, 0x41ca_4ba8));
    let model = Int8Model::from_bytes(&unnamed).unwrap();
    assert_eq!(model.header().version, 4);
    assert!(model.class_names().is_empty());
    assert_eq!(model.layers().collect::<Vec<_>>(), int8.layer_records());
}

const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const KEYWORDS: [&str; 5] = ["yes", "no", "up", "down", "_silence_"];

#[test]
fn class_names_round_trip_in_both_flavours() {
    let cases: [(Architecture, &[&str]); 3] = [
        (other(), &OTHER_NAMES),
        (ds_cnn(), &KEYWORDS),
        (Architecture::REFERENCE, &DIGITS),
    ];
    for (seed, (architecture, names)) in cases.into_iter().enumerate() {
        let image: Vec<u8> = (0..architecture.input().values())
            .map(|i| (i * 13 % 256) as u8)
            .collect();

        let int8 = int8_tensors_of(architecture, seed as u32);
        let layers = int8.layer_records();
        let record = Int8Record {
            architecture,
            input: int8.input,
            layers: &layers,
            class_names: names,
            front_end: None,
        };
        assert_eq!(record.version(), 4);
        let bytes = encode_int8(&record);
        let model = Int8Model::from_bytes(&bytes).unwrap();
        assert_eq!(model.header().version, 4);
        assert_eq!(model.architecture(), &architecture);
        assert_eq!(model.layers().collect::<Vec<_>>(), layers);
        let class_names = model.class_names();
        assert_eq!(class_names.len(), names.len());
        assert!(!class_names.is_empty());
        assert_eq!(class_names.iter().len(), names.len());
        assert_eq!(class_names.into_iter().collect::<Vec<_>>(), names);
        for (index, name) in names.iter().enumerate() {
            assert_eq!(class_names.get(index), Some(*name));
        }
        assert_eq!(class_names.get(names.len()), None);
        assert_eq!(class_names.get(usize::MAX), None);
        assert_eq!(
            Model::from_bytes(&bytes).unwrap().class_names(),
            class_names
        );
        // Every name borrows from the file.
        let range = bytes.as_ptr_range();
        assert!(
            class_names
                .iter()
                .all(|name| range.contains(&name.as_ptr()))
        );
        // The names change nothing else: the same outputs as version 3.
        let v3 = int8.encode_as(3, &[]).unwrap();
        let unnamed = Int8Model::from_bytes(&v3).unwrap();
        assert!(unnamed.class_names().is_empty());
        let (mut a, mut b) = (
            vec![0i8; model.scratch_bytes()],
            vec![0i8; unnamed.scratch_bytes()],
        );
        let named_prediction = model.classify(&image, &mut a).unwrap();
        let prediction = unnamed.classify(&image, &mut b).unwrap();
        assert_eq!(named_prediction.logits, prediction.logits);
        assert!(class_names.get(named_prediction.class).is_some());

        let f32s = f32_tensors_of(architecture, seed as u32);
        let layers = f32s.layer_records();
        let record = format::F32Record {
            architecture,
            layers: &layers,
            class_names: names,
            front_end: None,
        };
        assert_eq!(record.version(), 4);
        let bytes = encode_f32(&record);
        let model = F32Model::from_bytes(&bytes).unwrap();
        assert_eq!(model.header().version, 4);
        assert_eq!(model.layers().collect::<Vec<_>>(), layers);
        assert_eq!(model.class_names().iter().collect::<Vec<_>>(), names);
        let unnamed_bytes = f32s.encode();
        let unnamed = F32Model::from_bytes(&unnamed_bytes).unwrap();
        assert!(unnamed.class_names().is_empty());
        let (mut a, mut b) = (
            vec![0f32; model.scratch_len()],
            vec![0f32; unnamed.scratch_len()],
        );
        assert_eq!(
            model.classify(&image, &mut a).unwrap().logits,
            unnamed.classify(&image, &mut b).unwrap().logits
        );
    }
    let bytes = int8_tensors_of(other(), 0).encode_with_names(&OTHER_NAMES);
    let names = Int8Model::from_bytes(&bytes).unwrap().class_names();
    assert_eq!(
        format!("{names:?}"),
        r#"["cat", "dog", "café", "7", "🐦 bird"]"#
    );
    assert_eq!(format!("{:?}", tinycnn::ClassNames::NONE), "[]");
}

/// Without names, every writer writes the version and the bytes it wrote
/// before version 4 (the golden tests pin those bytes), and readers see no names.
#[test]
fn files_without_names_are_unchanged() {
    let reference = int8_tensors(0);
    let layers = reference.layer_records();
    let record = Int8Record {
        architecture: Architecture::REFERENCE,
        input: QuantParams::INPUT,
        layers: &layers,
        class_names: &[],
        front_end: None,
    };
    assert_eq!(record.version(), 2);
    let named = Int8Record {
        class_names: &DIGITS,
        ..record
    };
    assert_eq!(named.version(), 4);
    for (architecture, version) in [(other(), 2), (ds_cnn(), 3), (values(), 3)] {
        let bytes = int8_tensors_of(architecture, 0).encode();
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), version);
        let model = Model::from_bytes(&bytes).unwrap();
        assert!(model.class_names().is_empty());
        assert_eq!(model.class_names().iter().next(), None);
        assert_eq!(model.class_names().get(0), None);
        let bytes = f32_tensors_of(architecture, 0).encode();
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), version);
        assert!(Model::from_bytes(&bytes).unwrap().class_names().is_empty());
    }
    // Version 1 files have none either.
    let v1 = reference.encode_v1();
    assert!(Int8Model::from_bytes(&v1).unwrap().class_names().is_empty());
}

/// Each rule of the class names section, on the reading side (a version 3
/// payload followed by a section, behind a valid version 4 header) and on
/// the writing side.
#[test]
fn class_names_are_checked() {
    let tensors = int8_tensors_of(other(), 3);
    let v3 = tensors.encode_as(3, &[]).unwrap();
    let v4 = tensors.encode_as(4, &[]).unwrap();
    let read = |section: &[u8]| {
        let mut payload = v3[HEADER_LEN..].to_vec();
        payload.extend_from_slice(section);
        Model::from_bytes(&with_payload(&v4, &payload)).map(|model| {
            model
                .class_names()
                .iter()
                .map(String::from)
                .collect::<Vec<_>>()
        })
    };
    let write = |names: &[&str]| tensors.encode_as(4, names).map(|_| ());
    fn bad<T>(index: Option<usize>, problem: ClassNameProblem) -> Result<T, Error> {
        Err(Error::BadClassNames { index, problem })
    }
    use ClassNameProblem::*;

    let abcde: [&[u8]; 5] = [b"a", b"b", b"c", b"d", b"e"];
    assert_eq!(
        read(&names_section(&abcde)),
        Ok(["a", "b", "c", "d", "e"].map(String::from).to_vec())
    );
    assert_eq!(read(&[0]), Ok(vec![]));
    assert_eq!(write(&["a", "b", "c", "d", "e"]), Ok(()));

    // One name per class: 5.
    let count = |names| Count { names, classes: 5 };
    assert_eq!(read(&names_section(&abcde[..4])), bad(None, count(4)));
    assert_eq!(write(&["a", "b", "c", "d"]), bad(None, count(4)));
    let six: [&[u8]; 6] = [b"a", b"b", b"c", b"d", b"e", b"f"];
    assert_eq!(read(&names_section(&six)), bad(None, count(6)));
    assert_eq!(write(&["a", "b", "c", "d", "e", "f"]), bad(None, count(6)));
    // The count is checked before any name is read.
    assert_eq!(read(&varint(1000)), bad(None, count(1000)));
    assert_eq!(read(&[0x01, 0x00]), bad(None, count(1)));

    // Names only on a classifier: `values()` outputs 4 values, not classes.
    let values = int8_tensors_of(values(), 3);
    let values_v3 = values.encode_as(3, &[]).unwrap();
    let values_v4 = values.encode_as(4, &[]).unwrap();
    assert!(Model::from_bytes(&values_v4).is_ok());
    let mut payload = values_v3[HEADER_LEN..].to_vec();
    payload.extend(names_section(&abcde[..4]));
    assert_eq!(
        Model::from_bytes(&with_payload(&values_v4, &payload)).unwrap_err(),
        Error::BadClassNames {
            index: None,
            problem: NotClassifier
        }
    );
    assert_eq!(
        values.encode_as(4, &["a", "b", "c", "d"]).unwrap_err(),
        Error::BadClassNames {
            index: None,
            problem: NotClassifier
        }
    );

    // Each name's rules, at index 2.
    let with = |name: &[u8]| {
        let mut names = abcde;
        names[2] = name;
        read(&names_section(&names))
    };
    let write_with = |name: &str| write(&["a", "b", name, "d", "e"]);
    assert_eq!(with(b""), bad(Some(2), Empty));
    assert_eq!(write_with(""), bad(Some(2), Empty));
    let long = "x".repeat(65);
    assert_eq!(with(long.as_bytes()), bad(Some(2), TooLong { length: 65 }));
    assert_eq!(write_with(&long), bad(Some(2), TooLong { length: 65 }));
    // 64 bytes are allowed, also as 16 four-byte characters; 65 bytes are
    // too long even when 65 is not a number of characters.
    assert!(with("x".repeat(64).as_bytes()).is_ok());
    assert!(with("🐦".repeat(16).as_bytes()).is_ok());
    let emoji = "🐦".repeat(16) + "x";
    assert_eq!(with(emoji.as_bytes()), bad(Some(2), TooLong { length: 65 }));
    // Not UTF-8: a lone continuation, a cut sequence, an overlong form, a
    // surrogate, above U+10FFFF, 0xff. (A `&str` is always UTF-8: the writer
    // cannot be given these.)
    for name in [
        &[0x80][..],
        &[0x61, 0xc3],
        &[0xc0, 0xaf],
        &[0xed, 0xa0, 0x80],
        &[0xf4, 0x90, 0x80, 0x80],
        &[0xff],
    ] {
        assert_eq!(with(name), bad(Some(2), NotUtf8), "{name:x?}");
    }
    // Too long is checked before UTF-8.
    assert_eq!(with(&[0xff; 70]), bad(Some(2), TooLong { length: 70 }));
    // ASCII control characters, the first one reported.
    for (name, byte) in [
        ("\0", 0x00),
        ("tab\there", 0x09),
        ("line\n", 0x0a),
        ("\x1f", 0x1f),
        ("del\x7f", 0x7f),
        ("a\r\n", 0x0d),
    ] {
        let problem = ControlCharacter { byte };
        assert_eq!(with(name.as_bytes()), bad(Some(2), problem), "{name:?}");
        assert_eq!(write_with(name), bad(Some(2), problem), "{name:?}");
    }
    // The space, a C1 control (U+0085) and any other character are accepted.
    for name in [" ", " spaced out ", "\u{85}", "~", "日本語", "e\u{301}"] {
        assert!(with(name.as_bytes()).is_ok(), "{name:?}");
        assert_eq!(write_with(name), Ok(()), "{name:?}");
    }
    // Duplicates, compared byte for byte.
    assert_eq!(with(b"a"), bad(Some(2), Duplicate { first: 0 }));
    assert_eq!(write_with("b"), bad(Some(2), Duplicate { first: 1 }));
    assert_eq!(
        write(&["x", "y", "z", "x", "x"]),
        bad(Some(3), Duplicate { first: 0 })
    );
    assert_eq!(write_with("A"), Ok(()));
    assert_eq!(write(&["é", "e\u{301}", "c", "d", "e"]), Ok(()));
    // The first bad name is reported, whatever follows it.
    assert_eq!(
        read(&names_section(&[b"a", b"", b"a", b"\n", &[0xff]])),
        bad(Some(1), Empty)
    );

    // The encoding: cut short, overlong, or followed by bytes.
    let valid = names_section(&abcde);
    for length in 0..valid.len() {
        assert_eq!(read(&valid[..length]), Err(Error::Malformed), "{length}");
    }
    let mut extra = valid.clone();
    extra.push(0);
    assert_eq!(read(&extra), Err(Error::Malformed));
    assert_eq!(read(&[0, 0]), Err(Error::Malformed));
    // A count of 5 as 0x85 0x00, a name's length of 1 as 0x81 0x00.
    let mut overlong = valid.clone();
    overlong.splice(0..1, [0x85, 0x00]);
    assert_eq!(read(&overlong), Err(Error::Malformed));
    let mut overlong = valid.clone();
    overlong.splice(1..2, [0x81, 0x00]);
    assert_eq!(read(&overlong), Err(Error::Malformed));
    // Counts and lengths above 32 bits.
    assert_eq!(read(&[0x80, 0x80, 0x80, 0x80, 0x10]), Err(Error::Malformed));
    let mut huge = vec![0x05];
    huge.extend([0xff, 0xff, 0xff, 0xff, 0x1f]);
    assert_eq!(read(&huge), Err(Error::Malformed));
    // A name longer than what is left.
    assert_eq!(read(&[0x05, 0x03, b'a']), Err(Error::Malformed));
    // A version 4 payload without its section.
    assert_eq!(read(&[]), Err(Error::Malformed));
    // A version 3 file with a section: bytes after the last record.
    let mut payload = v3[HEADER_LEN..].to_vec();
    payload.extend(&valid);
    assert_eq!(
        Model::from_bytes(&with_payload(&v3, &payload)).unwrap_err(),
        Error::Malformed
    );

    // Names need version 4: `encode_as` refuses any older version.
    for version in [2, 3] {
        assert_eq!(
            tensors.encode_as(version, &OTHER_NAMES).unwrap_err(),
            Error::UnsupportedVersion {
                found: version,
                newest: VERSION
            }
        );
    }
    assert_eq!(
        tensors.encode_as(5, &OTHER_NAMES).unwrap_err(),
        Error::UnsupportedVersion {
            found: 5,
            newest: VERSION
        }
    );
    assert!(tensors.encode_as(4, &OTHER_NAMES).is_ok());
    // The writer checks the names before anything else is written.
    let layers = tensors.layer_records();
    let record = Int8Record {
        architecture: other(),
        input: QuantParams::INPUT,
        layers: &layers,
        class_names: &["a", "a", "c", "d", "e"],
        front_end: None,
    };
    assert_eq!(record.encoded_len(), bad(Some(1), Duplicate { first: 0 }));
    assert_eq!(
        record.encode(&mut [0; 4096]),
        bad(Some(1), Duplicate { first: 0 })
    );
    let f32s = f32_tensors_of(other(), 3);
    let layers = f32s.layer_records();
    let record = format::F32Record {
        architecture: other(),
        layers: &layers,
        class_names: &["a", "b"],
        front_end: None,
    };
    assert_eq!(record.encoded_len(), bad(None, count(2)));
}

#[test]
fn class_name_errors_read_well() {
    let message = |index, problem| Error::BadClassNames { index, problem }.to_string();
    assert_eq!(
        message(
            None,
            ClassNameProblem::Count {
                names: 4,
                classes: 5
            }
        ),
        "the file names 4 classes, but the network has 5"
    );
    assert_eq!(
        message(None, ClassNameProblem::NotClassifier),
        "the file names classes, but the network's output is values, not classes"
    );
    assert_eq!(
        message(Some(2), ClassNameProblem::Empty),
        "class name 2 is empty"
    );
    assert_eq!(
        message(Some(0), ClassNameProblem::TooLong { length: 65 }),
        "class name 0 has 65 bytes, at most 64 are allowed"
    );
    assert_eq!(
        message(Some(1), ClassNameProblem::NotUtf8),
        "class name 1 is not valid UTF-8"
    );
    assert_eq!(
        message(Some(3), ClassNameProblem::ControlCharacter { byte: 9 }),
        "class name 3 holds the control character 0x09"
    );
    assert_eq!(
        message(Some(4), ClassNameProblem::Duplicate { first: 1 }),
        "class name 4 repeats class name 1"
    );
}

/// What a model holds, to tell two models apart.
fn contents(model: &Model<'_>) -> (Architecture, Vec<Vec<u8>>, Vec<String>) {
    let (records, input) = match model {
        Model::Int8(model) => (
            model
                .layers()
                .map(|layer| postcard::to_allocvec(&layer).unwrap())
                .collect::<Vec<_>>(),
            postcard::to_allocvec(&model.input_quantization()).unwrap(),
        ),
        Model::F32(model) => (
            model
                .layers()
                .map(|layer| postcard::to_allocvec(&layer).unwrap())
                .collect(),
            Vec::new(),
        ),
    };
    let names = model.class_names().iter().map(String::from).collect();
    (
        *model.architecture(),
        [vec![input], records].concat(),
        names,
    )
}

/// Every cut of a version 4 file and every single-bit flip of it is refused,
/// or (behind a checksum made valid again) is another valid model, which
/// classifies; never a panic.
#[test]
fn every_cut_and_bit_flip_of_a_version_4_file_is_refused_or_another_model() {
    for bytes in [
        int8_tensors_of(other(), 6).encode_with_names(&OTHER_NAMES),
        f32_tensors_of(other(), 6).encode_with_names(&OTHER_NAMES),
    ] {
        let original = contents(&Model::from_bytes(&bytes).unwrap());
        let payload = &bytes[HEADER_LEN..];
        let section = payload.len() - OTHER_NAMES_SECTION.len();
        for length in 0..bytes.len() {
            let error = Model::from_bytes(&bytes[..length]).unwrap_err();
            assert!(
                matches!(error, Error::Truncated { .. }),
                "{length}: {error}"
            );
        }
        // Cut behind a valid header and checksum: the records or the names
        // are missing.
        for length in 0..payload.len() {
            let error = Model::from_bytes(&with_payload(&bytes, &payload[..length])).unwrap_err();
            if length >= section {
                assert_eq!(error, Error::Malformed, "{length}");
            }
        }
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(Model::from_bytes(&bad).is_err(), "bit {bit}");
        }
        let mut valid = 0;
        for bit in 0..payload.len() * 8 {
            let mut flipped = payload.to_vec();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let file = with_payload(&bytes, &flipped);
            let Ok(model) = Model::from_bytes(&file) else {
                continue;
            };
            valid += 1;
            assert_ne!(contents(&model), original, "bit {bit}");
            let names = model.class_names();
            let classes = model.architecture().classes();
            assert!(names.is_empty() || names.len() == classes, "bit {bit}");
            assert!(names.iter().all(|name| (1..=64).contains(&name.len())));
            let image = vec![100u8; model.architecture().input().values()];
            let class = match model {
                Model::Int8(model) => {
                    let mut scratch = vec![0i8; model.scratch_bytes()];
                    model.classify(&image, &mut scratch).unwrap().class
                }
                Model::F32(model) => {
                    let mut scratch = vec![0f32; model.scratch_len()];
                    model.classify(&image, &mut scratch).unwrap().class
                }
            };
            assert!(class < classes);
        }
        // Flipped weights, biases and name bytes give valid models.
        assert!(valid > 0);
    }
}

/// An empty int8 test-vector file (`TCTV` version 2, `FORMAT.md`) for the
/// model whose CRC is `model_crc`.
fn empty_vectors(model_crc: u32, image: usize, outputs: usize) -> Vec<u8> {
    let mut out = b"TCTV".to_vec();
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&model_crc.to_le_bytes());
    out.extend_from_slice(&(image as u32).to_le_bytes());
    out.extend_from_slice(&(outputs as u16).to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    let crc = format::crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Test vectors name their model by its CRC: names make another file, whose
/// vectors are not the unnamed file's, and the other way round.
#[test]
fn test_vectors_tell_a_named_file_from_an_unnamed_one() {
    let tensors = int8_tensors_of(other(), 2);
    let unnamed = tensors.encode_as(3, &[]).unwrap();
    let named = tensors.encode_with_names(&OTHER_NAMES);
    let unnamed = Int8Model::from_bytes(&unnamed).unwrap();
    let named = Int8Model::from_bytes(&named).unwrap();
    let vectors_of = |model: &Int8Model<'_>| {
        let architecture = model.architecture();
        empty_vectors(
            model.header().crc,
            architecture.input().values(),
            architecture.classes(),
        )
    };
    let (for_unnamed, for_named) = (vectors_of(&unnamed), vectors_of(&named));
    let for_unnamed = tinycnn::testvec::TestVectors::from_bytes(&for_unnamed).unwrap();
    let for_named = tinycnn::testvec::TestVectors::from_bytes(&for_named).unwrap();
    assert_eq!(for_unnamed.check_model(&unnamed), Ok(()));
    assert_eq!(for_named.check_model(&named), Ok(()));
    assert_eq!(
        for_unnamed.check_model(&named),
        Err(Error::VectorsForAnotherModel {
            vectors_model: unnamed.header().crc,
            model: named.header().crc
        })
    );
    assert_eq!(
        for_named.check_model(&unnamed),
        Err(Error::VectorsForAnotherModel {
            vectors_model: named.header().crc,
            model: unnamed.header().crc
        })
    );
}

/// `ds_cnn()`'s input is 10 frames of 6 MFCCs, read on its own input
/// quantisation (`DS_CNN_INPUT`).
const DS_CNN_FRONT_END: FrontEndConfig = FrontEndConfig {
    coefficients: 6,
    output_scale: 1.0 / 64.0,
    output_zero_point: -20,
    ..FrontEndConfig::MLPERF_KWS
};

/// Its front-end section, as `golden_encoder.py` prints it: 16,000 Hz, a
/// window of 480, a hop of 320, FFT 512, 40 bands, 20 to 4,000 Hz, 6
/// coefficients, floor 1e-6, scale 1/64, zero point -20.
const DS_CNN_FRONT_END_SECTION: [u8; 29] = [
    0x80, 0x3e, 0x00, 0x00, 0xe0, 0x01, 0x40, 0x01, 0x00, 0x02, 0x28, 0x14, 0x00, 0x00, 0x00, 0xa0,
    0x0f, 0x00, 0x00, 0x06, 0xbd, 0x37, 0x86, 0x35, 0x00, 0x00, 0x80, 0x3c, 0xec,
];

/// Pins version 5's layout: version 4's payload followed by the front-end
/// section, lengths and checksums from the independent encoder
/// (`tests/golden_encoder.py`) written from `FORMAT.md`.
#[test]
fn golden_bytes_of_version_5() {
    let int8 = int8_tensors_with_input(ds_cnn(), DS_CNN_INPUT, 0);
    let bytes = int8
        .encode_with_front_end(&KEYWORDS, DS_CNN_FRONT_END)
        .unwrap();
    assert_eq!(&bytes[4..8], &[5, 0, 2, 0]);
    assert!(bytes.ends_with(&DS_CNN_FRONT_END_SECTION));
    let v4 = int8.encode_as(4, &KEYWORDS).unwrap();
    assert_eq!(&bytes[HEADER_LEN..bytes.len() - 29], &v4[HEADER_LEN..]);
    assert_eq!((bytes.len(), format::crc32(&bytes)), (2_161, 0xb092_8b04));
    let model = Int8Model::from_bytes(&bytes).unwrap();
    assert_eq!(model.header().version, 5);
    assert_eq!(model.front_end(), Some(DS_CNN_FRONT_END));
    assert_eq!(model.class_names().iter().collect::<Vec<_>>(), KEYWORDS);
    assert_eq!(model.layers().collect::<Vec<_>>(), int8.layer_records());
    assert_eq!(
        Model::from_bytes(&bytes).unwrap().front_end(),
        Some(DS_CNN_FRONT_END)
    );

    let f32s = f32_tensors_of(ds_cnn(), 0);
    let f32_bytes = f32s
        .encode_with_front_end(&KEYWORDS, DS_CNN_FRONT_END)
        .unwrap();
    assert_eq!(&f32_bytes[4..8], &[5, 0, 1, 0]);
    assert!(f32_bytes.ends_with(&DS_CNN_FRONT_END_SECTION));
    assert_eq!(
        (f32_bytes.len(), format::crc32(&f32_bytes)),
        (3_706, 0x0568_6354)
    );
    let model = F32Model::from_bytes(&f32_bytes).unwrap();
    assert_eq!(model.front_end(), Some(DS_CNN_FRONT_END));
    assert_eq!(model.layers().collect::<Vec<_>>(), f32s.layer_records());

    // Without names: a count of 0, then the front end.
    let unnamed = int8.encode_with_front_end(&[], DS_CNN_FRONT_END).unwrap();
    assert_eq!(
        (unnamed.len(), format::crc32(&unnamed)),
        (2_136, 0xf420_65f4)
    );
    assert_eq!(unnamed[unnamed.len() - 30], 0);
    let model = Int8Model::from_bytes(&unnamed).unwrap();
    assert!(model.class_names().is_empty());
    assert_eq!(model.front_end(), Some(DS_CNN_FRONT_END));

    // The front end changes nothing else: the same outputs as version 3.
    let v3_bytes = int8.encode();
    let v3 = Int8Model::from_bytes(&v3_bytes).unwrap();
    assert_eq!(v3.front_end(), None);
    let image: Vec<u8> = (0..60).map(|i| (i * 29 % 256) as u8).collect();
    let (mut a, mut b) = (
        vec![0i8; model.scratch_bytes()],
        vec![0i8; v3.scratch_bytes()],
    );
    assert_eq!(
        model.classify(&image, &mut a).unwrap().logits,
        v3.classify(&image, &mut b).unwrap().logits
    );
}

/// [`DS_CNN_FRONT_END`] with the 16-bit FFT.
const DS_CNN_FRONT_END_INT16: FrontEndConfig = FrontEndConfig {
    fft_arithmetic: FftArithmetic::Int16,
    ..DS_CNN_FRONT_END
};

/// Pins version 6's layout: version 5's payload whose front-end section ends
/// with the FFT's data bits, lengths and checksums from the independent
/// encoder (`tests/golden_encoder.py`) written from `FORMAT.md`. A front end
/// of the 16-bit FFT is written as version 6, one of the 32-bit FFT as
/// version 5 unless `encode_as(6)` asks.
#[test]
fn golden_bytes_of_version_6() {
    let int8 = int8_tensors_with_input(ds_cnn(), DS_CNN_INPUT, 0);
    let v5 = int8
        .encode_with_front_end(&KEYWORDS, DS_CNN_FRONT_END)
        .unwrap();
    let bytes = int8
        .encode_with_front_end(&KEYWORDS, DS_CNN_FRONT_END_INT16)
        .unwrap();
    assert_eq!(&bytes[4..8], &[6, 0, 2, 0]);
    assert_eq!(&bytes[HEADER_LEN..bytes.len() - 1], &v5[HEADER_LEN..]);
    assert_eq!(bytes.last(), Some(&16));
    assert_eq!((bytes.len(), format::crc32(&bytes)), (2_162, 0x51e4_5ba5));
    let model = Int8Model::from_bytes(&bytes).unwrap();
    assert_eq!(model.header().version, 6);
    assert_eq!(model.front_end(), Some(DS_CNN_FRONT_END_INT16));
    assert_eq!(model.class_names().iter().collect::<Vec<_>>(), KEYWORDS);
    assert_eq!(model.layers().collect::<Vec<_>>(), int8.layer_records());
    assert_eq!(
        int8.encode_as_with_front_end(6, &KEYWORDS, Some(DS_CNN_FRONT_END_INT16))
            .unwrap(),
        bytes
    );

    let f32s = f32_tensors_of(ds_cnn(), 0);
    let f32_bytes = f32s
        .encode_with_front_end(&KEYWORDS, DS_CNN_FRONT_END_INT16)
        .unwrap();
    assert_eq!(&f32_bytes[4..8], &[6, 0, 1, 0]);
    assert_eq!(
        (f32_bytes.len(), format::crc32(&f32_bytes)),
        (3_707, 0x300f_4095)
    );
    let model = F32Model::from_bytes(&f32_bytes).unwrap();
    assert_eq!(model.front_end(), Some(DS_CNN_FRONT_END_INT16));
    assert_eq!(model.layers().collect::<Vec<_>>(), f32s.layer_records());

    // The 32-bit FFT stays version 5; asked for version 6 it is the byte 32,
    // another file (its test vectors are not version 5's).
    assert_eq!(
        int8.encode_as_with_front_end(5, &KEYWORDS, Some(DS_CNN_FRONT_END))
            .unwrap(),
        v5
    );
    let int32 = int8
        .encode_as_with_front_end(6, &KEYWORDS, Some(DS_CNN_FRONT_END))
        .unwrap();
    assert_eq!(&int32[4..6], &[6, 0]);
    assert_eq!(&int32[HEADER_LEN..int32.len() - 1], &v5[HEADER_LEN..]);
    assert_eq!(int32.last(), Some(&32));
    assert_eq!((int32.len(), format::crc32(&int32)), (2_162, 0x3ff2_6ad0));
    assert_eq!(
        Model::from_bytes(&int32).unwrap().front_end(),
        Some(DS_CNN_FRONT_END)
    );

    // Version 5 cannot say the 16-bit FFT, and nothing above 6 exists.
    for version in [3, 4, 5, 7] {
        assert_eq!(
            int8.encode_as_with_front_end(version, &KEYWORDS, Some(DS_CNN_FRONT_END_INT16))
                .unwrap_err(),
            Error::UnsupportedVersion {
                found: version,
                newest: 6
            }
        );
    }
    let layers = int8.layer_records();
    let record = Int8Record {
        architecture: ds_cnn(),
        input: DS_CNN_INPUT,
        layers: &layers,
        class_names: &[],
        front_end: Some(DS_CNN_FRONT_END_INT16),
    };
    assert_eq!(record.version(), 6);
    let f32_layers = f32s.layer_records();
    let f32_record = tinycnn::format::F32Record {
        architecture: ds_cnn(),
        layers: &f32_layers,
        class_names: &[],
        front_end: Some(DS_CNN_FRONT_END_INT16),
    };
    assert_eq!(f32_record.version(), 6);
}

/// Version 6's last byte: 16 or 32, else `FftArithmetic`, checked after the
/// other fields and before the network's rules; the section is exactly 30
/// bytes.
#[test]
fn the_fft_arithmetic_byte_is_checked() {
    let int8 = int8_tensors_with_input(ds_cnn(), DS_CNN_INPUT, 0);
    let v4 = int8.encode_as(4, &[]).unwrap();
    let v6 = int8
        .encode_with_front_end(&[], DS_CNN_FRONT_END_INT16)
        .unwrap();
    let read = |section: &[u8]| {
        let mut payload = v4[HEADER_LEN..].to_vec();
        payload.extend_from_slice(section);
        Model::from_bytes(&with_payload(&v6, &payload)).map(|model| model.front_end())
    };
    let with_bits = |bits: u8| {
        let mut section = DS_CNN_FRONT_END_SECTION.to_vec();
        section.push(bits);
        section
    };
    fn bad<T>(bits: u8) -> Result<T, Error> {
        Err(Error::BadFrontEnd(FrontEndProblem::Config(
            FrontEndError::FftArithmetic { bits },
        )))
    }

    assert_eq!(read(&with_bits(16)), Ok(Some(DS_CNN_FRONT_END_INT16)));
    assert_eq!(read(&with_bits(32)), Ok(Some(DS_CNN_FRONT_END)));
    for bits in [0, 1, 8, 15, 17, 24, 31, 33, 48, 64, 255] {
        assert_eq!(read(&with_bits(bits)), bad(bits));
    }
    // Version 5's 29 bytes are cut short here; a byte after the 30th is left over.
    assert_eq!(read(&DS_CNN_FRONT_END_SECTION), Err(Error::Malformed));
    let mut longer = with_bits(16);
    longer.push(16);
    assert_eq!(read(&longer), Err(Error::Malformed));

    // A bad field before it is reported first ...
    let mut section = with_bits(8);
    section[6..8].copy_from_slice(&481u16.to_le_bytes());
    assert!(matches!(
        read(&section),
        Err(Error::BadFrontEnd(FrontEndProblem::Config(
            FrontEndError::HopSamples { .. }
        )))
    ));
    // ... and the network's rules after it.
    let mut section = with_bits(8);
    section[19] = 10;
    assert_eq!(read(&section), bad(8));
    let mut section = with_bits(8);
    section[28] = 0;
    assert_eq!(read(&section), bad(8));

    assert_eq!(
        Error::BadFrontEnd(FrontEndProblem::Config(FrontEndError::FftArithmetic {
            bits: 8
        }))
        .to_string(),
        "the audio front end is not valid: FFT arithmetic of 8 bits: 16 or 32"
    );
}

/// Without a front end, every writer writes what it wrote before version 5,
/// and `encode_as(5)` and `encode_as(6)` are refused: those versions always
/// hold the section.
#[test]
fn files_without_a_front_end_are_unchanged() {
    let int8 = int8_tensors_with_input(ds_cnn(), DS_CNN_INPUT, 0);
    assert_eq!(int8.encode()[4], 3);
    assert_eq!(int8.encode_with_names(&KEYWORDS)[4], 4);
    for version in [5, 6, 7] {
        assert_eq!(
            int8.encode_as(version, &KEYWORDS).unwrap_err(),
            Error::UnsupportedVersion {
                found: version,
                newest: 6
            }
        );
    }
    for bytes in [int8.encode(), int8.encode_with_names(&KEYWORDS)] {
        assert_eq!(Model::from_bytes(&bytes).unwrap().front_end(), None);
    }
    let layers = int8.layer_records();
    let record = Int8Record {
        architecture: ds_cnn(),
        input: DS_CNN_INPUT,
        layers: &layers,
        class_names: &[],
        front_end: Some(DS_CNN_FRONT_END),
    };
    assert_eq!(record.version(), 5);
    // A front end cannot be written in an older version.
    assert_eq!(
        record.encode_as(4, &mut [0; 4096]).unwrap_err(),
        Error::UnsupportedVersion {
            found: 4,
            newest: 6
        }
    );
}

/// Each rule of the front-end section, on the reading side (a version 4
/// payload followed by a section, behind a valid version 5 header) and on the
/// writing side.
#[test]
fn the_front_end_is_checked() {
    let int8 = int8_tensors_with_input(ds_cnn(), DS_CNN_INPUT, 0);
    let v4 = int8.encode_as(4, &[]).unwrap();
    let v5 = int8.encode_with_front_end(&[], DS_CNN_FRONT_END).unwrap();
    let read = |section: &[u8]| {
        let mut payload = v4[HEADER_LEN..].to_vec();
        payload.extend_from_slice(section);
        Model::from_bytes(&with_payload(&v5, &payload)).map(|model| model.front_end())
    };
    let write = |config: FrontEndConfig| int8.encode_with_front_end(&[], config).map(|_| ());
    fn bad<T>(problem: FrontEndProblem) -> Result<T, Error> {
        Err(Error::BadFrontEnd(problem))
    }

    assert_eq!(read(&DS_CNN_FRONT_END_SECTION), Ok(Some(DS_CNN_FRONT_END)));
    // Cut short, or followed by bytes.
    for cut in 0..29 {
        assert_eq!(
            read(&DS_CNN_FRONT_END_SECTION[..cut]),
            Err(Error::Malformed)
        );
    }
    let mut longer = DS_CNN_FRONT_END_SECTION.to_vec();
    longer.push(0);
    assert_eq!(read(&longer), Err(Error::Malformed));

    // Every field through `FrontEndConfig::validate`: here a hop longer than
    // the window (bytes 6 and 7) and a NaN output scale (bytes 24 to 27).
    let mut section = DS_CNN_FRONT_END_SECTION;
    section[6..8].copy_from_slice(&481u16.to_le_bytes());
    let config = FrontEndConfig {
        hop_samples: 481,
        ..DS_CNN_FRONT_END
    };
    let problem = FrontEndProblem::Config(config.validate().unwrap_err());
    assert_eq!(read(&section), bad(problem));
    assert_eq!(write(config), bad(problem));
    let mut section = DS_CNN_FRONT_END_SECTION;
    section[24..28].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(matches!(
        read(&section),
        Err(Error::BadFrontEnd(FrontEndProblem::Config(
            FrontEndError::OutputScale { .. }
        )))
    ));

    // A row of the input must be one frame: 10 coefficients for a 6-wide
    // input.
    let mut section = DS_CNN_FRONT_END_SECTION;
    section[19] = 10;
    let problem = FrontEndProblem::InputShape {
        features_per_frame: 10,
        width: 6,
        channels: 1,
    };
    assert_eq!(read(&section), bad(problem));
    let ten = FrontEndConfig {
        coefficients: 10,
        ..DS_CNN_FRONT_END
    };
    assert_eq!(write(ten), bad(problem));
    // Log-mel output: the bands are the features.
    let log_mel = FrontEndConfig {
        coefficients: 0,
        mel_bands: 6,
        ..DS_CNN_FRONT_END
    };
    assert_eq!(write(log_mel), Ok(()));

    // An int8 input must read the front end's bytes on their own scale.
    let mut section = DS_CNN_FRONT_END_SECTION;
    section[28] = 0;
    let problem = FrontEndProblem::InputQuantization {
        front_end_scale: 1.0 / 64.0,
        front_end_zero_point: 0,
        input_scale: 1.0 / 64.0,
        input_zero_point: -20,
    };
    assert_eq!(read(&section), bad(problem));
    let shifted = FrontEndConfig {
        output_zero_point: 0,
        ..DS_CNN_FRONT_END
    };
    assert_eq!(write(shifted), bad(problem));
    let mut section = DS_CNN_FRONT_END_SECTION;
    section[24] = 1; // one ulp above 1/64
    assert!(matches!(
        read(&section),
        Err(Error::BadFrontEnd(
            FrontEndProblem::InputQuantization { .. }
        ))
    ));
    // An f32 network has no input quantisation to match.
    let f32s = f32_tensors_of(ds_cnn(), 0);
    assert!(f32s.encode_with_front_end(&[], shifted).is_ok());

    // The messages name the problem.
    let message = |problem| Error::BadFrontEnd(problem).to_string();
    assert_eq!(
        message(FrontEndProblem::Config(FrontEndError::HopSamples {
            samples: 481,
            window_samples: 480
        })),
        "the audio front end is not valid: hop of 481 samples outside 1..=480 (the window)"
    );
    assert_eq!(
        message(FrontEndProblem::InputShape {
            features_per_frame: 10,
            width: 6,
            channels: 1
        }),
        "the audio front end gives 10 features per frame, but the network's input rows hold \
         6 x 1"
    );
    assert_eq!(
        message(problem),
        "the network's input is quantised with scale 0.015625 and zero point -20, but its \
         audio front end outputs scale 0.015625 and zero point 0"
    );
}

/// Any cut of a version 5 or 6 file is refused; any single bit flip in its
/// front-end section is refused or reads another valid front end.
#[test]
fn every_cut_and_bit_flip_of_a_version_5_or_6_file_is_refused_or_another_front_end() {
    let int8 = int8_tensors_with_input(ds_cnn(), DS_CNN_INPUT, 0);
    for (front_end, section) in [(DS_CNN_FRONT_END, 29), (DS_CNN_FRONT_END_INT16, 30)] {
        let bytes = int8.encode_with_front_end(&KEYWORDS, front_end).unwrap();
        for cut in 0..bytes.len() {
            assert!(Model::from_bytes(&bytes[..cut]).is_err());
        }
        let payload = bytes[HEADER_LEN..].to_vec();
        let start = payload.len() - section;
        for bit in 0..section * 8 {
            let mut flipped = payload.clone();
            flipped[start + bit / 8] ^= 1 << (bit % 8);
            if let Ok(model) = Model::from_bytes(&with_payload(&bytes, &flipped)) {
                let config = model.front_end().unwrap();
                assert_ne!(config, front_end);
                assert_eq!(config.validate(), Ok(()));
            }
        }
    }
}
