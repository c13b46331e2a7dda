//! The model file format: round trips, golden bytes, and a corpus of
//! damaged files that must all be rejected without panicking.

mod common;

use common::*;
use proptest::prelude::*;
use std::sync::LazyLock;
use tinycnn::arch::Layer;
use tinycnn::format::{
    self, Architecture, Flavour, HEADER_LEN, Int8Record, MAGIC, QuantParams, VERSION,
};
use tinycnn::{Error, F32Model, Int8Model, Model, TensorKind};

#[test]
fn int8_round_trip_borrows_in_place() {
    let tensors = int8_tensors(1);
    let record = tensors.record();
    let bytes = encode_int8(&record);
    let model = Int8Model::from_bytes(&bytes).unwrap();
    assert_eq!(model.record(), &record);
    // Every tensor is a view into `bytes`: nothing was copied.
    let range = bytes.as_ptr_range();
    for layer in &model.record().layers {
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
}

#[test]
fn f32_round_trip() {
    let tensors = f32_tensors(2);
    let record = tensors.record();
    let bytes = encode_f32(&record);
    let model = F32Model::from_bytes(&bytes).unwrap();
    assert_eq!(model.record(), &record);
    assert_eq!(Model::from_bytes(&bytes).unwrap().flavour(), Flavour::F32);
    assert_eq!(
        Int8Model::from_bytes(&bytes).unwrap_err(),
        Error::WrongFlavour {
            expected: Flavour::Int8,
            found: Flavour::F32
        }
    );
}

/// Pins the byte layout that `FORMAT.md` documents.
#[test]
fn golden_bytes() {
    let tensors = int8_tensors(0);
    let bytes = encode_int8(&tensors.record());
    let payload_len = bytes.len() - HEADER_LEN;
    // Header.
    assert_eq!(&bytes[0..4], b"TCNN");
    assert_eq!(&bytes[4..8], &[1, 0, 2, 0]);
    assert_eq!(&bytes[8..12], &(payload_len as u32).to_le_bytes());
    assert_eq!(&bytes[12..16], &format::crc32(&bytes[16..]).to_le_bytes());
    // Architecture: ten varints.
    let architecture = [
        28, 28, 1, 0x40, 0x80, 0x01, 0x80, 0x02, 0x80, 0x01, 0x40, 0x20, 0x0a,
    ];
    assert_eq!(&bytes[16..29], &architecture);
    // Input quantisation: f32 1/255 little-endian, zero point -128.
    assert_eq!(&bytes[29..34], &[0x81, 0x80, 0x80, 0x3b, 0x80]);
    // conv1: output quantisation (scale 5/128, zero point -128), then
    // weight_scales as a varint length (64 * 4 = 256 -> 0x80 0x02) + bytes.
    assert_eq!(&bytes[34..39], &[0x00, 0x00, 0x20, 0x3d, 0x80]);
    assert_eq!(&bytes[39..41], &[0x80, 0x02]);
    assert_eq!(&bytes[41..45], &[0x00, 0x00, 0x80, 0x3a]);
    // conv1 weights: 576 = 0xc0 0x04, then the first weights.
    assert_eq!(&bytes[297..299], &[0xc0, 0x04]);
    assert_eq!(&bytes[299..302], &[0x81, 0x82, 0x82]);
    // Whole-file length and checksum, computed by an independent Python
    // encoder written from FORMAT.md (tests/golden_encoder.py), so any layout change shows up here.
    assert_eq!(bytes.len(), 683_689);
    assert_eq!(format::crc32(&bytes), 0xd692_2782);

    let f32_bytes = encode_f32(&f32_tensors(0).record());
    assert_eq!(&f32_bytes[4..8], &[1, 0, 1, 0]);
    assert_eq!(&f32_bytes[16..29], &architecture);
    // conv1 weights: 2304 bytes = 0x80 0x12.
    assert_eq!(&f32_bytes[29..31], &[0x80, 0x12]);
    assert_eq!(f32_bytes.len(), 2_701_540);
    assert_eq!(format::crc32(&f32_bytes), 0xadd3_f37a);
}

#[test]
fn header_errors() {
    let bytes = encode_int8(&int8_tensors(3).record());
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(
        Model::from_bytes(&bad).unwrap_err(),
        Error::BadMagic { found: *b"XCNN" }
    );
    let mut bad = bytes.clone();
    bad[4] = 2;
    assert_eq!(
        Model::from_bytes(&bad).unwrap_err(),
        Error::UnsupportedVersion {
            found: 2,
            supported: VERSION
        }
    );
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
        encode_int8(&int8_tensors(4).record()),
        encode_f32(&f32_tensors(4).record()),
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
    let bytes = encode_int8(&int8_tensors(5).record());
    for bit in 0..HEADER_LEN * 8 {
        let mut bad = bytes.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(Model::from_bytes(&bad).is_err(), "bit {bit}");
    }
}

#[test]
fn payload_bit_flips_are_caught_by_the_checksum() {
    let bytes = encode_int8(&int8_tensors(6).record());
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

/// Damage behind a valid checksum: the payload checks must catch it.
#[test]
fn semantic_errors_behind_a_valid_checksum() {
    let tensors = int8_tensors(7);
    fn edited<'a>(
        mut record: Int8Record<'a>,
        edit: impl FnOnce(&mut Int8Record<'a>),
    ) -> Result<(), Error> {
        edit(&mut record);
        let bytes = encode_int8(&record);
        Int8Model::from_bytes(&bytes).map(|_| ())
    }
    assert_eq!(edited(tensors.record(), |_| ()), Ok(()));
    let architecture = Architecture {
        dense_units: [128, 64, 32, 11],
        ..Architecture::REFERENCE
    };
    assert_eq!(
        edited(tensors.record(), |r| r.architecture = architecture),
        Err(Error::UnsupportedArchitecture {
            found: architecture
        })
    );
    assert_eq!(
        edited(tensors.record(), |r| r.input = QuantParams {
            scale: 1.0 / 256.0,
            zero_point: -128
        }),
        Err(Error::UnsupportedInputQuantization)
    );
    let short = [0u8; 3];
    assert_eq!(
        edited(tensors.record(), |r| r.layers[2].weights = &short),
        Err(Error::TensorLength {
            layer: Layer::Conv3,
            tensor: TensorKind::Weights,
            expected: 294_912,
            found: 3
        })
    );
    assert_eq!(
        edited(tensors.record(), |r| r.layers[6].shifts = &short),
        Err(Error::TensorLength {
            layer: Layer::Dense4,
            tensor: TensorKind::Shifts,
            expected: 10,
            found: 3
        })
    );
    for scale in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert_eq!(
            edited(tensors.record(), |r| r.layers[1].output.scale = scale),
            Err(Error::BadScale {
                layer: Some(Layer::Conv2),
                tensor: None
            })
        );
        let scales: Vec<u8> = (0..32).flat_map(|_| scale.to_le_bytes()).collect();
        assert_eq!(
            edited(tensors.record(), |r| r.layers[5].weight_scales = &scales),
            Err(Error::BadScale {
                layer: Some(Layer::Dense3),
                tensor: Some(TensorKind::WeightScales)
            })
        );
    }
    let mut weights = tensors.layers[4][1].clone();
    weights[17] = 0x80;
    assert_eq!(
        edited(tensors.record(), |r| r.layers[4].weights = &weights),
        Err(Error::WeightOutOfRange {
            layer: Layer::Dense2
        })
    );
    let mut multipliers = tensors.layers[3][3].clone();
    multipliers[4 * 5..4 * 6].copy_from_slice(&(-1i32).to_le_bytes());
    assert_eq!(
        edited(tensors.record(), |r| r.layers[3].multipliers = &multipliers),
        Err(Error::BadMultiplier {
            layer: Layer::Dense1,
            channel: 5,
            multiplier: -1
        })
    );
    for shift in [-32i8, 31, i8::MIN, i8::MAX] {
        let mut shifts = tensors.layers[0][4].clone();
        shifts[63] = shift as u8;
        assert_eq!(
            edited(tensors.record(), |r| r.layers[0].shifts = &shifts),
            Err(Error::BadShift {
                layer: Layer::Conv1,
                channel: 63,
                shift
            })
        );
    }
    for shift in [-31i8, 30] {
        let mut shifts = tensors.layers[0][4].clone();
        shifts[0] = shift as u8;
        assert_eq!(
            edited(tensors.record(), |r| r.layers[0].shifts = &shifts),
            Ok(())
        );
    }

    let f32s = f32_tensors(8);
    let mut weights = f32s.layers[6][0].clone();
    weights[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut record = f32s.record();
    record.layers[6].weights = &weights;
    assert_eq!(
        F32Model::from_bytes(&encode_f32(&record)).unwrap_err(),
        Error::NonFiniteValue {
            layer: Layer::Dense4,
            tensor: TensorKind::Weights
        }
    );
}

#[test]
fn encode_reports_small_buffers() {
    let tensors = int8_tensors(9);
    let record = tensors.record();
    let needed = record.encoded_len().unwrap();
    for size in [0, 10, 16, needed - 1] {
        let mut out = vec![0; size];
        assert_eq!(
            record.encode(&mut out),
            Err(Error::BufferTooSmall {
                needed,
                available: size
            })
        );
    }
}

#[test]
fn errors_read_well() {
    let message = Error::TensorLength {
        layer: Layer::Conv2,
        tensor: TensorKind::Bias,
        expected: 512,
        found: 3,
    };
    assert_eq!(message.to_string(), "conv2 bias has 3 bytes, expected 512");
    assert_eq!(
        Error::BadMagic { found: *b"\x89PNG" }.to_string(),
        "not a tinycnn model file: magic 89504e47, expected \"TCNN\""
    );
}

static INT8_TEMPLATE: LazyLock<Vec<u8>> = LazyLock::new(|| encode_int8(&int8_tensors(1).record()));
static F32_TEMPLATE: LazyLock<Vec<u8>> = LazyLock::new(|| encode_f32(&f32_tensors(1).record()));

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never panic.
    #[test]
    fn arbitrary_bytes_are_rejected_or_valid(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Model::from_bytes(&bytes);
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
    ) {
        let template = &*INT8_TEMPLATE;
        let mut payload = template[HEADER_LEN..].to_vec();
        for (index, value) in &edits {
            let i = index.index(payload.len());
            payload[i] = *value;
        }
        let file = with_payload(template, &payload);
        if let Ok(Model::Int8(model)) = Model::from_bytes(&file) {
            let mut scratch = tinycnn::Int8Scratch::new();
            let prediction = model.classify(&[200; 784], &mut scratch);
            prop_assert!(prediction.digit < 10);
        }
    }
}
