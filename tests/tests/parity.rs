//! Parity between burn on the host and the tinycnn core, on the 10,000 MNIST
//! test images: the proof that what runs on the board is what was trained.
//!
//! Data: `MNIST_DIR`, or `../shared/data/mnist` beside the checkout (as in
//! CI). Models: the shipped `data/model-f32.tcnn` and `data/model-int8.tcnn`.

use std::path::PathBuf;
use std::sync::LazyLock;

use burn::tensor::Device;
use tinycnn::arch::CLASSES;
use tinycnn::kernels::argmax;
use tinycnn::{F32Model, Int8Model};
use tinycnn_host::eval::{available_threads, f32_logits, int8_logits};
use tinycnn_host::export::{self, CoreWeights};
use tinycnn_host::mnist::Mnist;
use tinycnn_host::model::{Net, NetWeights, infer_logits};
use tinycnn_parity::int8_reference::Reference;

/// Logit tolerance, relative to the image's largest |logit| (at least 1):
/// burn and the core add the same products in different orders (burn through
/// im2col + GEMM, the core in 8-lane partial sums). f32 rounding is ~6e-8
/// relative per addition; over fan-ins of up to 2304 through seven layers the
/// differences observed stay below 1e-5 of the range, so 1e-4 leaves a
/// margin of ten while a layout mistake (transposed kernel, swapped flatten)
/// changes logits by tens of percent.
const TOLERANCE: f32 = 1e-4;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

static MNIST: LazyLock<Mnist> = LazyLock::new(|| {
    let dir = std::env::var_os("MNIST_DIR")
        .map_or_else(|| workspace().join("../shared/data/mnist"), PathBuf::from);
    Mnist::load(&dir).unwrap_or_else(|e| panic!("MNIST is needed for the parity tests: {e:#}"))
});

/// The core's logits for every test image with the shipped models, computed once: two tests
/// need each of them, and computing them is most of those tests' time.
static SHIPPED_F32_LOGITS: LazyLock<Vec<[f32; CLASSES]>> = LazyLock::new(|| {
    let bytes = shipped(export::F32_FILE);
    let model = F32Model::from_bytes(&bytes).unwrap();
    f32_logits(&model, &MNIST.test.pixels, available_threads())
});
static SHIPPED_INT8_LOGITS: LazyLock<Vec<[i8; CLASSES]>> = LazyLock::new(|| {
    let bytes = shipped(export::INT8_FILE);
    let model = Int8Model::from_bytes(&bytes).unwrap();
    int8_logits(&model, &MNIST.test.pixels, available_threads())
});

fn shipped(name: &str) -> Vec<u8> {
    let path = workspace().join("data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the shipped model; see data/README.md)",
            path.display()
        )
    })
}

fn device() -> Device {
    Device::flex()
}

/// A network initialised from a fixed seed. burn's generator is shared by the
/// process, so tests that run in parallel take turns to keep it reproducible.
fn seeded_net(device: &Device) -> Net {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    device.seed(2026);
    Net::new(device)
}

/// burn's inference-mode logits of every test image, in chunks to bound memory.
fn burn_logits(net: &Net, device: &Device) -> Vec<[f32; CLASSES]> {
    let pixels = &MNIST.test.pixels;
    pixels
        .chunks(1000 * 784)
        .flat_map(|chunk| {
            let flat = infer_logits(net, chunk, device);
            flat.chunks_exact(CLASSES)
                .map(|l| l.try_into().unwrap())
                .collect::<Vec<[f32; CLASSES]>>()
        })
        .collect()
}

/// Compares burn and core f32 logits: within [`TOLERANCE`], same digit for
/// every image. Returns the largest relative difference.
fn compare_f32(burn: &[[f32; CLASSES]], core: &[[f32; CLASSES]], what: &str) -> f32 {
    assert_eq!(burn.len(), 10_000);
    assert_eq!(core.len(), burn.len());
    let mut worst = 0f32;
    let mut different_digits = Vec::new();
    for (index, (b, c)) in burn.iter().zip(core).enumerate() {
        let range = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = b.iter().zip(c).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / range;
        assert!(
            diff <= TOLERANCE,
            "{what}: image {index}: logits differ by {diff:e} of the range\nburn {b:?}\ncore {c:?}"
        );
        worst = worst.max(diff);
        if argmax(b) != argmax(c) {
            different_digits.push(index);
        }
    }
    assert!(
        different_digits.is_empty(),
        "{what}: burn and the core predict different digits for images {different_digits:?}"
    );
    println!(
        "{what}: 10000 images, same digit for all, largest logit difference {worst:.2e} of the range"
    );
    worst
}

#[test]
fn f32_burn_equals_core_on_random_weights() {
    let device = device();
    let net = seeded_net(&device);
    let file = CoreWeights::from_burn(&net.weights())
        .unwrap()
        .to_file()
        .unwrap();
    let model = F32Model::from_bytes(&file).unwrap();
    let core = f32_logits(&model, &MNIST.test.pixels, available_threads());
    compare_f32(&burn_logits(&net, &device), &core, "random weights");
}

#[test]
fn f32_burn_equals_core_on_the_shipped_model() {
    let bytes = shipped(export::F32_FILE);
    let model = F32Model::from_bytes(&bytes).unwrap();
    let device = device();
    let net = seeded_net(&device)
        .with_weights(&export::burn_weights(model.record()), &device)
        .unwrap();
    compare_f32(
        &burn_logits(&net, &device),
        &SHIPPED_F32_LOGITS,
        "shipped model",
    );
}

#[test]
fn int8_core_equals_the_independent_reference_bit_for_bit() {
    let bytes = shipped(export::INT8_FILE);
    let model = Int8Model::from_bytes(&bytes).unwrap();
    let reference = Reference::new(model.record());
    let pixels = &MNIST.test.pixels;
    let images: Vec<&[u8]> = pixels.chunks_exact(784).collect();
    let threads = available_threads();
    let expected: Vec<[i8; CLASSES]> = std::thread::scope(|scope| {
        let handles: Vec<_> = images
            .chunks(images.len().div_ceil(threads))
            .map(|chunk| {
                scope.spawn(|| {
                    chunk
                        .iter()
                        .map(|image| reference.logits(image))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let core = &*SHIPPED_INT8_LOGITS;
    assert_eq!(core.len(), 10_000);
    let mismatches: Vec<usize> = (0..core.len())
        .filter(|&i| core[i] != expected[i])
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of 10000 images differ, first {:?}: core {:?} reference {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)],
        core[mismatches[0]],
        expected[mismatches[0]]
    );
    println!("int8: the core's logits equal the independent reference's for all 10000 test images");
}

#[test]
fn int8_agrees_with_f32_on_the_shipped_model() {
    let f32_digits: Vec<usize> = SHIPPED_F32_LOGITS.iter().map(|l| argmax(l)).collect();
    let int8_digits: Vec<usize> = SHIPPED_INT8_LOGITS.iter().map(|l| argmax(l)).collect();
    let labels = &MNIST.test.labels;
    let n = labels.len() as f64;
    let agreement = f32_digits
        .iter()
        .zip(&int8_digits)
        .filter(|(a, b)| a == b)
        .count() as f64
        / n;
    let accuracy = |digits: &[usize]| {
        digits
            .iter()
            .zip(labels)
            .filter(|&(&d, &l)| d == usize::from(l))
            .count() as f64
            / n
    };
    let (f32_accuracy, int8_accuracy) = (accuracy(&f32_digits), accuracy(&int8_digits));
    println!(
        "shipped model: f32 accuracy {:.2}%, int8 accuracy {:.2}%, int8 and f32 agree on {:.2}% of the test images",
        f32_accuracy * 100.0,
        int8_accuracy * 100.0,
        agreement * 100.0
    );
    assert!(
        agreement >= 0.995,
        "int8 and f32 agree on only {:.2}% of the images",
        agreement * 100.0
    );
    assert!(
        (f32_accuracy - int8_accuracy).abs() <= 0.001 + 1e-9,
        "int8 accuracy {:.2}% is more than 0.1 point from f32's {:.2}%",
        int8_accuracy * 100.0,
        f32_accuracy * 100.0
    );
}

/// Reads weights as the layout change documents it, written out here rather
/// than through the exporter's helpers.
fn check_layouts(weights: &NetWeights, record: &tinycnn::format::F32Record<'_>) {
    let floats = |bytes: &[u8]| -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    for (index, conv) in weights.convs.iter().enumerate() {
        let core = floats(record.layers[index].weights);
        let (outputs, inputs) = (conv.out_channels, conv.in_channels);
        for o in 0..outputs {
            for i in 0..inputs {
                for ky in 0..3 {
                    for kx in 0..3 {
                        // burn [out][in][ky][kx] -> core [out][ky][kx][in]
                        let burn = conv.weight[((o * inputs + i) * 3 + ky) * 3 + kx];
                        assert_eq!(
                            core[((o * 3 + ky) * 3 + kx) * inputs + i].to_bits(),
                            burn.to_bits(),
                            "conv{}",
                            index + 1
                        );
                    }
                }
            }
        }
        assert_eq!(floats(record.layers[index].bias), conv.bias);
    }
    for (index, dense) in weights.dense.iter().enumerate() {
        let core = floats(record.layers[3 + index].weights);
        for o in 0..dense.outputs {
            for burn_row in 0..dense.inputs {
                // fc1's burn input c*9 + y*3 + x is the core's (y*3 + x)*256 + c.
                let core_input = if index == 0 {
                    (burn_row % 9) * 256 + burn_row / 9
                } else {
                    burn_row
                };
                let burn = dense.weight[burn_row * dense.outputs + o];
                assert_eq!(
                    core[o * dense.inputs + core_input].to_bits(),
                    burn.to_bits(),
                    "fc{}",
                    index + 1
                );
            }
        }
        assert_eq!(floats(record.layers[3 + index].bias), dense.bias);
    }
}

#[test]
fn export_round_trip_keeps_every_value() {
    let device = device();
    let weights = seeded_net(&device).weights();
    let file = CoreWeights::from_burn(&weights).unwrap().to_file().unwrap();
    // Header: magic, version 1, f32 flavour, and a checksum the loader verified.
    assert_eq!(&file[..8], b"TCNN\x01\x00\x01\x00");
    let (_, payload) = tinycnn::format::split_header(&file).unwrap();
    assert_eq!(
        u32::from_le_bytes(file[12..16].try_into().unwrap()),
        tinycnn::format::crc32(payload)
    );
    let model = F32Model::from_bytes(&file).unwrap();
    check_layouts(&weights, model.record());
    // And back: the shipped-model test runs burn on weights read this way.
    assert_eq!(export::burn_weights(model.record()), weights);

    // The int8 file dequantises to within half a step of every f32 weight.
    let exported = export::export(&weights, &MNIST.train, 200).unwrap();
    let int8 = Int8Model::from_bytes(&exported.int8_file).unwrap();
    for (layer, (q, f)) in int8
        .record()
        .layers
        .iter()
        .zip(&model.record().layers)
        .enumerate()
    {
        let scales: Vec<f32> = q
            .weight_scales
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let fan_in = q.weights.len() / scales.len();
        for (i, (&wq, w)) in q.weights.iter().zip(f.weights.chunks_exact(4)).enumerate() {
            let w = f32::from_le_bytes(w.try_into().unwrap());
            let scale = scales[i / fan_in];
            // Half a step, plus the f32 rounding of the division and the product.
            let error = (f32::from(wq as i8) * scale - w).abs();
            assert!(
                error <= scale * 0.5 + w.abs() * 1e-6,
                "layer {layer} weight {i}: {w} -> {wq} x {scale}"
            );
        }
    }
}
