//! Parity between burn on the host and the tinycnn core, for several networks: the proof that
//! what runs on the board is what was trained.
//!
//! - the tutorial's network (the reference) and the small network for small boards, shipped in
//!   `data/`, on the 10,000 MNIST test images, and with random weights;
//! - a colour network unlike them (5x5 'valid' convolutions, 3 input channels, 20 classes),
//!   random weights on synthetic images;
//! - random valid descriptions drawn from the grammar (a property test).
//!
//! For each: burn f32 == core f32 within [`TOLERANCE`] and the same class for every image;
//! core int8 == the independent int8 reference (`tinycnn_parity::int8_reference`) bit for bit.
//! The core runs here as the host runs it, with the kernels built for this processor (AVX2 on
//! most x86-64 machines); one test holds them to the portable kernels a Cortex-M0 or M3 runs:
//! the same int8 bytes, f32 within [`TOLERANCE`].
//!
//! Data: `MNIST_DIR`, or `../shared/data/mnist` beside the checkout (as in CI).

use std::path::PathBuf;
use std::sync::LazyLock;

use burn::tensor::{Device, Tensor, TensorData};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tinycnn::arch::{Architecture, Layer, Shape};
use tinycnn::kernels::argmax;
use tinycnn::{F32Model, Int8Model};
use tinycnn_host::data::mnist::Mnist;
use tinycnn_host::deploy::eval::{
    Kernels, available_threads, f32_logits, f32_logits_with, int8_logits, int8_logits_with,
};
use tinycnn_host::export::{self, CoreWeights};
use tinycnn_host::train::model::{Net, NetWeights, infer_logits};
use tinycnn_host::train::network::TrainNetwork;
use tinycnn_parity::int8_reference::Reference;

/// Logit tolerance, relative to the image's largest |logit| (at least 1):
/// burn and the core add the same products in different orders (burn through
/// im2col + GEMM, the core in 8-lane partial sums). f32 rounding is ~6e-8
/// relative per addition; over fan-ins of up to 2304 through seven layers the
/// differences observed stay below 1e-5 of the range, so 1e-4 leaves a
/// margin of ten while a layout mistake (transposed kernel, swapped flatten)
/// changes logits by tens of percent.
const TOLERANCE: f32 = 1e-4;

/// The colour network: unlike the reference in every dimension the description has.
const COLOUR: &str = "input:32x32x3 conv5x5:16:valid pool conv5x5:24:valid:linear pool \
                      conv1x1:12 drop:0.3 flatten dense:48 drop:0.2 dense:20";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

static MNIST: LazyLock<Mnist> = LazyLock::new(|| {
    let dir = std::env::var_os("MNIST_DIR")
        .map_or_else(|| workspace().join("../shared/data/mnist"), PathBuf::from);
    Mnist::load(&dir).unwrap_or_else(|e| panic!("MNIST is needed for the parity tests: {e:#}"))
});

/// A shipped network: its directory under `data/` and its model files.
struct Shipped {
    name: &'static str,
    f32_file: Vec<u8>,
    int8_file: Vec<u8>,
}

fn shipped(name: &'static str, dir: &str) -> Shipped {
    let read = |file: &str| {
        let path = workspace().join(dir).join(file);
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (a shipped model; see data/README.md)",
                path.display()
            )
        })
    };
    Shipped {
        name,
        f32_file: read(export::F32_FILE),
        int8_file: read(export::INT8_FILE),
    }
}

static REFERENCE: LazyLock<Shipped> = LazyLock::new(|| shipped("reference", "data"));
static SMALL: LazyLock<Shipped> = LazyLock::new(|| shipped("small", "data/small"));
static SEPARABLE: LazyLock<Shipped> =
    LazyLock::new(|| shipped("depthwise-separable", "data/separable"));

/// The core's logits for every test image with a shipped model, computed once: two tests
/// need each of them, and computing them is most of those tests' time.
fn core_f32(shipped: &Shipped) -> Vec<Vec<f32>> {
    let model = F32Model::from_bytes(&shipped.f32_file).unwrap();
    f32_logits(&model, &MNIST.test.pixels, available_threads())
}
fn core_int8(shipped: &Shipped) -> Vec<Vec<i8>> {
    let model = Int8Model::from_bytes(&shipped.int8_file).unwrap();
    int8_logits(&model, &MNIST.test.pixels, available_threads())
}
static REFERENCE_F32: LazyLock<Vec<Vec<f32>>> = LazyLock::new(|| core_f32(&REFERENCE));
static REFERENCE_INT8: LazyLock<Vec<Vec<i8>>> = LazyLock::new(|| core_int8(&REFERENCE));
static SMALL_F32: LazyLock<Vec<Vec<f32>>> = LazyLock::new(|| core_f32(&SMALL));
static SMALL_INT8: LazyLock<Vec<Vec<i8>>> = LazyLock::new(|| core_int8(&SMALL));
static SEPARABLE_F32: LazyLock<Vec<Vec<f32>>> = LazyLock::new(|| core_f32(&SEPARABLE));
static SEPARABLE_INT8: LazyLock<Vec<Vec<i8>>> = LazyLock::new(|| core_int8(&SEPARABLE));

fn parse(text: &str) -> Architecture {
    tinycnn::text::parse(text, Architecture::REFERENCE.input()).unwrap()
}

fn small() -> Architecture {
    *F32Model::from_bytes(&SMALL.f32_file)
        .unwrap()
        .architecture()
}

fn device() -> Device {
    Device::flex()
}

/// A network of `architecture` initialised from `seed`. burn's generator is shared by the
/// process, so tests that run in parallel take turns to keep it reproducible.
fn seeded_net(architecture: &Architecture, seed: u64, device: &Device) -> Net {
    seeded_network(&TrainNetwork::from(*architecture), seed, device)
}

/// [`seeded_net`] for a network with batch norms.
fn seeded_network(network: &TrainNetwork, seed: u64, device: &Device) -> Net {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    device.seed(seed);
    Net::with_network(network, device, Default::default())
}

/// `count` synthetic images of `shape`: smooth gradients, a bright blob and some noise, so that
/// ReLU and pooling see structure, not uniform noise.
fn synthetic_images(shape: Shape, count: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut pixels = Vec::with_capacity(count * shape.values());
    for _ in 0..count {
        let (cy, cx) = (
            next() as usize % shape.height,
            next() as usize % shape.width,
        );
        let radius = 1 + next() as usize % shape.height.max(2);
        let tilt = next() % 4;
        for y in 0..shape.height {
            for x in 0..shape.width {
                let blob = y.abs_diff(cy).pow(2) + x.abs_diff(cx).pow(2) <= radius * radius;
                for c in 0..shape.channels {
                    let gradient = match (tilt + c as u64) % 4 {
                        0 => 255 * y / shape.height.max(1),
                        1 => 255 * x / shape.width.max(1),
                        2 => 255 * (y + x) / (shape.height + shape.width).max(1),
                        _ => 0,
                    };
                    let value = if blob { 255 } else { gradient } as u64;
                    let noise = next() % 32;
                    pixels.push((value.saturating_sub(noise) & 0xff) as u8);
                }
            }
        }
    }
    pixels
}

/// burn's inference-mode logits of every image, in chunks to bound memory.
fn burn_logits(net: &Net, pixels: &[u8], device: &Device) -> Vec<Vec<f32>> {
    let input = net.architecture().input().values();
    let classes = net.architecture().classes();
    pixels
        .chunks(1000 * input)
        .flat_map(|chunk| {
            let flat = infer_logits(net, chunk, device);
            flat.chunks_exact(classes)
                .map(<[f32]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The largest difference between burn's and the core's logits, relative to each image's
/// largest |logit|, and the images whose class differs.
fn differences(burn: &[Vec<f32>], core: &[Vec<f32>]) -> (f32, Vec<usize>) {
    assert_eq!(core.len(), burn.len());
    let mut worst = 0f32;
    let mut different_classes = Vec::new();
    for (index, (b, c)) in burn.iter().zip(core).enumerate() {
        assert_eq!(b.len(), c.len());
        let range = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = b.iter().zip(c).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / range;
        worst = worst.max(diff);
        if argmax(b) != argmax(c) {
            different_classes.push(index);
        }
    }
    (worst, different_classes)
}

/// burn and the core agree: within [`TOLERANCE`], the same class for every image. Returns the
/// largest relative difference.
fn compare_f32(burn: &[Vec<f32>], core: &[Vec<f32>], what: &str) -> f32 {
    let (worst, different_classes) = differences(burn, core);
    assert!(
        worst <= TOLERANCE,
        "{what}: logits differ by up to {worst:e} of the range"
    );
    assert!(
        different_classes.is_empty(),
        "{what}: burn and the core predict different classes for images {different_classes:?}"
    );
    println!(
        "{what}: {} images, same class for all, largest logit difference {worst:.2e} of the range",
        burn.len()
    );
    worst
}

/// burn with random weights of `seed` against the core on `pixels`.
fn f32_parity(architecture: &Architecture, seed: u64, pixels: &[u8], what: &str) {
    let device = device();
    let net = seeded_net(architecture, seed, &device);
    let file = CoreWeights::from_burn(architecture, &net.weights())
        .unwrap()
        .to_file()
        .unwrap();
    let model = F32Model::from_bytes(&file).unwrap();
    let core = f32_logits(&model, pixels, available_threads());
    compare_f32(&burn_logits(&net, pixels, &device), &core, what);
}

/// The core's int8 logits equal the independent reference's, image by image.
fn int8_parity(model: &Int8Model<'_>, pixels: &[u8], core: &[Vec<i8>], what: &str) {
    let reference = Reference::new(model);
    let images: Vec<&[u8]> = pixels.chunks_exact(model.input_shape().values()).collect();
    let threads = available_threads();
    let expected: Vec<Vec<i8>> = std::thread::scope(|scope| {
        let handles: Vec<_> = images
            .chunks(images.len().div_ceil(threads).max(1))
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
    assert_eq!(core.len(), expected.len());
    let mismatches: Vec<usize> = (0..core.len())
        .filter(|&i| core[i] != expected[i])
        .collect();
    assert!(
        mismatches.is_empty(),
        "{what}: {} of {} images differ, first {:?}: core {:?} reference {:?}",
        mismatches.len(),
        core.len(),
        &mismatches[..mismatches.len().min(10)],
        core[mismatches[0]],
        expected[mismatches[0]]
    );
    println!(
        "{what}: int8 logits of the core equal the independent reference's for all {} images",
        core.len()
    );
}

/// A network of random weights exported to int8, calibrated on `pixels`.
fn random_int8(architecture: &Architecture, seed: u64, pixels: &[u8]) -> Vec<u8> {
    let net = seeded_net(architecture, seed, &device());
    let images = pixels.chunks_exact(architecture.input().values()).take(200);
    export::export_calibrated(architecture, &net.weights(), images)
        .unwrap()
        .int8_file
}

#[test]
fn f32_burn_equals_core_on_random_weights() {
    let pixels = &MNIST.test.pixels;
    f32_parity(
        &Architecture::REFERENCE,
        2026,
        pixels,
        "reference, random weights",
    );
    f32_parity(&small(), 2027, pixels, "small, random weights");
    let colour = parse(COLOUR);
    let images = synthetic_images(colour.input(), 400, 1);
    f32_parity(&colour, 2028, &images, "colour network, random weights");
}

#[test]
fn f32_burn_equals_core_on_the_shipped_models() {
    for (shipped, core) in [
        (&*REFERENCE, &*REFERENCE_F32),
        (&*SMALL, &*SMALL_F32),
        (&*SEPARABLE, &*SEPARABLE_F32),
    ] {
        let model = F32Model::from_bytes(&shipped.f32_file).unwrap();
        let device = device();
        let net = Net::new(model.architecture(), &device)
            .with_weights(&export::burn_weights(&model), &device)
            .unwrap();
        compare_f32(
            &burn_logits(&net, &MNIST.test.pixels, &device),
            core,
            &format!("shipped {} model", shipped.name),
        );
    }
}

/// Test images of the reference network that the slower proofs take: the plain independent
/// reference and the portable kernels need minutes for all 10,000, and the shipped reference
/// model is proven on all of them elsewhere (TensorFlow Lite's interpreter on its export, in
/// `tflite_models.rs`). The small, depthwise-separable and colour networks take every image.
const REFERENCE_SAMPLE: usize = 2_000;

#[test]
fn int8_core_equals_the_independent_reference_bit_for_bit() {
    let pixels = &MNIST.test.pixels;
    for (shipped, core, images) in [
        (&*REFERENCE, &*REFERENCE_INT8, REFERENCE_SAMPLE),
        (&*SMALL, &*SMALL_INT8, 10_000),
        (&*SEPARABLE, &*SEPARABLE_INT8, 10_000),
    ] {
        let model = Int8Model::from_bytes(&shipped.int8_file).unwrap();
        assert_eq!(core.len(), 10_000);
        let pixels = &pixels[..images * model.input_shape().values()];
        int8_parity(&model, pixels, &core[..images], shipped.name);
    }
    let colour = parse(COLOUR);
    let images = synthetic_images(colour.input(), 400, 2);
    let file = random_int8(&colour, 7, &images);
    let model = Int8Model::from_bytes(&file).unwrap();
    let core = int8_logits(&model, &images, available_threads());
    int8_parity(&model, &images, &core, "colour network, random weights");
}

#[test]
fn fast_kernels_compute_what_the_portable_ones_do() {
    let colour = parse(COLOUR);
    let colour_images = synthetic_images(colour.input(), 200, 3);
    let colour_int8 = random_int8(&colour, 11, &colour_images);
    let colour_f32 = {
        let net = seeded_net(&colour, 11, &device());
        CoreWeights::from_burn(&colour, &net.weights())
            .unwrap()
            .to_file()
            .unwrap()
    };
    // Name, int8 file, f32 file, images.
    type Case<'a> = (&'a str, &'a [u8], &'a [u8], &'a [u8]);
    let cases: [Case<'_>; 4] = [
        (
            "reference",
            &REFERENCE.int8_file,
            &REFERENCE.f32_file,
            &MNIST.test.pixels[..REFERENCE_SAMPLE * 784],
        ),
        (
            "small",
            &SMALL.int8_file,
            &SMALL.f32_file,
            &MNIST.test.pixels,
        ),
        (
            "depthwise-separable",
            &SEPARABLE.int8_file,
            &SEPARABLE.f32_file,
            &MNIST.test.pixels,
        ),
        (
            "colour, random weights",
            &colour_int8,
            &colour_f32,
            &colour_images,
        ),
    ];
    for (name, int8_file, f32_file, pixels) in cases {
        let int8 = Int8Model::from_bytes(int8_file).unwrap();
        let threads = available_threads();
        let fast = int8_logits_with(&int8, pixels, threads, Kernels::Fast);
        let portable = int8_logits_with(&int8, pixels, threads, Kernels::Portable);
        let identical = fast.iter().zip(&portable).filter(|(a, b)| a == b).count();
        println!(
            "{name}: int8 logits of the {} and portable kernels identical for {identical} of {} \
             images",
            Kernels::Fast.name(),
            portable.len()
        );
        assert_eq!(identical, portable.len(), "{name}");
        let f32_model = F32Model::from_bytes(f32_file).unwrap();
        let fast = f32_logits_with(&f32_model, pixels, threads, Kernels::Fast);
        let portable = f32_logits_with(&f32_model, pixels, threads, Kernels::Portable);
        compare_f32(
            &portable,
            &fast,
            &format!("{name}: f32, fast vs portable kernels"),
        );
    }
}

#[test]
fn int8_agrees_with_f32_on_the_shipped_models() {
    let labels = &MNIST.test.labels;
    let n = labels.len() as f64;
    for (name, f32s, int8s) in [
        ("reference", &*REFERENCE_F32, &*REFERENCE_INT8),
        ("small", &*SMALL_F32, &*SMALL_INT8),
        ("depthwise-separable", &*SEPARABLE_F32, &*SEPARABLE_INT8),
    ] {
        let f32_classes: Vec<usize> = f32s.iter().map(|l| argmax(l)).collect();
        let int8_classes: Vec<usize> = int8s.iter().map(|l| argmax(l)).collect();
        let agreement = f32_classes
            .iter()
            .zip(&int8_classes)
            .filter(|(a, b)| a == b)
            .count() as f64
            / n;
        let accuracy = |classes: &[usize]| {
            classes
                .iter()
                .zip(labels)
                .filter(|&(&d, &l)| d == usize::from(l))
                .count() as f64
                / n
        };
        let (f32_accuracy, int8_accuracy) = (accuracy(&f32_classes), accuracy(&int8_classes));
        println!(
            "shipped {name} model: f32 accuracy {:.2}%, int8 accuracy {:.2}%, int8 and f32 agree \
             on {:.2}% of the test images",
            f32_accuracy * 100.0,
            int8_accuracy * 100.0,
            agreement * 100.0
        );
        assert!(
            agreement >= 0.995,
            "{name}: int8 and f32 agree on only {:.2}% of the images",
            agreement * 100.0
        );
        assert!(
            (f32_accuracy - int8_accuracy).abs() <= 0.002 + 1e-9,
            "{name}: int8 accuracy {:.2}% is more than 0.2 point from f32's {:.2}%",
            int8_accuracy * 100.0,
            f32_accuracy * 100.0
        );
    }
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Reads weights as the layout change documents it, written out here rather than through the
/// exporter's helpers: convolutions OIHW -> OHWI; dense `[in][out]` -> `[out][in]`, the first
/// dense layer after `flatten` reading burn's input `c*H*W + y*W + x` as the core's
/// `(y*W + x)*C + c`.
fn check_layouts(architecture: &Architecture, weights: &NetWeights, model: &F32Model<'_>) {
    let records: Vec<_> = model.layers().collect();
    let mut convs = weights.convs.iter();
    let mut dense = weights.dense.iter();
    let mut flattened: Option<Shape> = None;
    for info in architecture.iter() {
        match info.layer {
            Layer::Flatten => flattened = Some(info.input),
            Layer::Conv(conv) => {
                let burn = convs.next().unwrap();
                let record = &records[info.record.unwrap()];
                let core = floats(record.weights);
                let (outputs, inputs, k) = (burn.out_channels, burn.in_channels, conv.side());
                for o in 0..outputs {
                    for i in 0..inputs {
                        for ky in 0..k {
                            for kx in 0..k {
                                let b = burn.weight[((o * inputs + i) * k + ky) * k + kx];
                                assert_eq!(
                                    core[((o * k + ky) * k + kx) * inputs + i].to_bits(),
                                    b.to_bits(),
                                    "{}",
                                    info.name
                                );
                            }
                        }
                    }
                }
                assert_eq!(floats(record.bias), burn.bias);
            }
            Layer::Dense(_) => {
                let burn = dense.next().unwrap();
                let record = &records[info.record.unwrap()];
                let core = floats(record.weights);
                let map = flattened.take();
                for o in 0..burn.outputs {
                    for burn_row in 0..burn.inputs {
                        let core_input = match map {
                            Some(Shape {
                                height,
                                width,
                                channels,
                            }) => {
                                let (c, position) =
                                    (burn_row / (height * width), burn_row % (height * width));
                                position * channels + c
                            }
                            None => burn_row,
                        };
                        assert_eq!(
                            core[o * burn.inputs + core_input].to_bits(),
                            burn.weight[burn_row * burn.outputs + o].to_bits(),
                            "{}",
                            info.name
                        );
                    }
                }
                assert_eq!(floats(record.bias), burn.bias);
            }
            _ => {}
        }
    }
}

#[test]
fn export_round_trip_keeps_every_value() {
    for (architecture, seed) in [(Architecture::REFERENCE, 5), (parse(COLOUR), 6)] {
        let device = device();
        let weights = seeded_net(&architecture, seed, &device).weights();
        let file = CoreWeights::from_burn(&architecture, &weights)
            .unwrap()
            .to_file()
            .unwrap();
        // Header: magic, version 2, f32 flavour, and a checksum the loader verified.
        assert_eq!(&file[..8], b"TCNN\x02\x00\x01\x00");
        let model = F32Model::from_bytes(&file).unwrap();
        assert_eq!(model.architecture(), &architecture);
        check_layouts(&architecture, &weights, &model);
        // And back: the shipped-model test runs burn on weights read this way.
        assert_eq!(export::burn_weights(&model), weights);

        // The int8 file dequantises to within half a step of every f32 weight.
        let images = synthetic_images(architecture.input(), 50, seed);
        let exported = export::export_calibrated(
            &architecture,
            &weights,
            images.chunks_exact(architecture.input().values()),
        )
        .unwrap();
        let int8 = Int8Model::from_bytes(&exported.int8_file).unwrap();
        for (layer, (q, f)) in int8.layers().zip(model.layers()).enumerate() {
            let scales = floats(q.weight_scales);
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
}

/// The tests above would catch an exporter that flattened channels-first: exporting the colour
/// network's first dense layer without the permutation puts its logits far outside the
/// tolerance.
#[test]
fn a_wrong_flatten_order_is_caught() {
    let colour = parse(COLOUR);
    let device = device();
    let net = seeded_net(&colour, 9, &device);
    let mut weights = net.weights();
    // Move the first dense layer's rows so that the exporter's permutation undoes itself: the
    // file then holds the rows in burn's channel-major order, as an exporter that forgot the
    // permutation would write them.
    let map = colour
        .iter()
        .find(|info| info.layer == Layer::Flatten)
        .unwrap()
        .input;
    let dense = &mut weights.dense[0];
    let original = dense.weight.clone();
    let outputs = dense.outputs;
    for j in 0..dense.inputs {
        let burn_row = export::burn_flatten_index(map, j);
        dense.weight[burn_row * outputs..(burn_row + 1) * outputs]
            .copy_from_slice(&original[j * outputs..(j + 1) * outputs]);
    }
    let file = CoreWeights::from_burn(&colour, &weights)
        .unwrap()
        .to_file()
        .unwrap();
    let model = F32Model::from_bytes(&file).unwrap();
    let images = synthetic_images(colour.input(), 100, 3);
    let core = f32_logits(&model, &images, available_threads());
    let (worst, _) = differences(&burn_logits(&net, &images, &device), &core);
    println!("colour network with a channels-first flatten: logits differ by {worst:.2e}");
    assert!(
        worst > 100.0 * TOLERANCE,
        "a swapped flatten order went unnoticed ({worst:e})"
    );
}

/// A valid description from the grammar's pieces: up to three convolutions (each side, both
/// paddings, both activations) with or without a pool and a dropout, then up to two hidden
/// dense layers and the logits.
fn descriptions() -> impl Strategy<Value = String> {
    let conv = (
        prop::sample::select(vec![1u8, 3, 5]),
        any::<bool>(),
        1u16..8,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    );
    (
        4usize..14,
        4usize..14,
        prop::sample::select(vec![1usize, 3]),
        prop::collection::vec(conv, 0..4),
        prop::collection::vec((1u16..16, any::<bool>()), 0..3),
        2u16..12,
    )
        .prop_map(|(height, width, channels, convs, dense, classes)| {
            let mut words = vec![format!("input:{height}x{width}x{channels}")];
            for (kernel, valid, filters, linear, pool, drop) in convs {
                let mut word = format!("conv{kernel}x{kernel}:{filters}");
                if valid {
                    word.push_str(":valid");
                }
                if linear {
                    word.push_str(":linear");
                }
                words.push(word);
                if pool {
                    words.push("pool".into());
                }
                if drop {
                    words.push("drop:0.25".into());
                }
            }
            words.push("flatten".into());
            for (units, linear) in dense {
                words.push(format!(
                    "dense:{units}{}",
                    if linear { ":linear" } else { "" }
                ));
            }
            words.push(format!("dense:{classes}"));
            words.join(" ")
        })
}

proptest! {
    // A failing case is saved beside this file (parity.proptest-regressions, a file to commit)
    // and tried first on the next run.
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Any valid description: burn f32 == core f32, core int8 == the independent reference.
    /// (Descriptions the pieces make invalid, a pool or a 'valid' kernel on too small a map,
    /// are skipped: validation has its own tests.)
    #[test]
    fn random_descriptions_agree(text in descriptions(), seed in 0u64..1000) {
        if let Ok(architecture) = tinycnn::text::parse(&text, Shape::new(1, 1, 1)) {
            description_agrees(&architecture, seed, &text);
        }
    }
}

/// Burn f32 == core f32 and core int8 == the independent reference, for one description.
fn description_agrees(architecture: &Architecture, seed: u64, text: &str) {
    let images = synthetic_images(architecture.input(), 40, seed);
    f32_parity(architecture, seed, &images, text);
    let file = random_int8(architecture, seed, &images);
    let model = Int8Model::from_bytes(&file).unwrap();
    let core = int8_logits(&model, &images, 1);
    int8_parity(&model, &images, &core, text);
}

/// A "same" kernel larger than the map it slides over reads mostly padding; the training
/// kernels once indexed past the map there.
#[test]
fn kernels_larger_than_their_map_agree() {
    for text in [
        "input:4x4x1 conv1x1:1 pool conv5x5:1 pool flatten dense:2",
        "input:6x5x3 conv3x3:4 pool conv5x5:3 conv5x5:2 pool flatten dense:3",
    ] {
        description_agrees(&parse(text), 0, text);
    }
}

/// Every layer `host train` builds beyond the tutorial's, in one small network: strided
/// convolutions with 'same' padding larger after than before (24 -> 12 rows and 22 -> 11
/// columns with a 3x3 window pad 0 before and 1 after), a rectangular one with an even side and
/// a 'valid' one with a stride per axis, depthwise convolutions (stride 1; stride 2 with a
/// multiplier), an identity and a projection residual block ending in additions with ReLU6 and
/// ReLU, a 'same' max pool after a linear convolution (its padding must never win the maximum),
/// an average pool whose 'same' window pads more after than before and counts only the taps
/// inside, a global average pool, and dense layers with ReLU6 and without.
const VOCABULARY: &str = "input:24x22x2 conv3x3:8:s2 conv2x3:8:relu6 residual dw3x3 \
                          conv1x1:8:linear add:relu6 residual:12:s2 dw3x3:s2:m2:relu6 \
                          conv1x1:12:linear add conv3x2:12:s2x1:valid:linear \
                          maxpool3x3:s1:same avgpool3x3:s2:same gap flatten dense:16:relu6 \
                          dense:10";

/// Stride-1 windows the tutorial's vocabulary lacks, each before a 2x2 max-pool: even, rectangular,
/// and 'same' with more padding after than before. They run through burn's ops, not the fused
/// block.
const WINDOWS_BEFORE_POOLS: &str = "input:13x12x1 conv2x2:4:valid pool conv3x2:6:valid pool \
                                    conv4x4:4 pool flatten dense:5";

#[test]
fn stride_one_windows_before_pools_agree() {
    let architecture = parse(WINDOWS_BEFORE_POOLS);
    description_agrees(&architecture, 5, WINDOWS_BEFORE_POOLS);
}

#[test]
fn the_trainable_vocabulary_agrees() {
    let architecture = tinycnn::text::parse(VOCABULARY, Shape::new(1, 1, 1)).unwrap();
    tinycnn_host::train::model::check_trainable(&architecture).unwrap();
    for seed in [3, 4] {
        description_agrees(&architecture, seed, VOCABULARY);
        // The exporter's int8 model computes what the f32 one does, to quantisation: the
        // scales of the residual additions' inputs and of the depthwise channels are its own
        // (the parity above holds the core to the file, whatever scales the file holds).
        let images = synthetic_images(architecture.input(), 40, seed);
        let net = seeded_net(&architecture, seed, &device());
        let calibration = images.chunks_exact(architecture.input().values());
        let exported =
            export::export_calibrated(&architecture, &net.weights(), calibration).unwrap();
        let f32_model = F32Model::from_bytes(&exported.f32_file).unwrap();
        let int8_model = Int8Model::from_bytes(&exported.int8_file).unwrap();
        let output = int8_model.logits_quantization();
        let f32s = f32_logits(&f32_model, &images, 1);
        let int8s = int8_logits(&int8_model, &images, 1);
        // Relative to the largest |logit| of all images: random weights give logits of
        // similar, small sizes, where an image's own range would magnify the noise of its
        // quantisation (observed per layer: 1-3% of the range, growing slowly with depth; a
        // wrong scale for one input of an addition moves its layer's output by tens of percent).
        let range = f32s
            .iter()
            .flatten()
            .fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()));
        let worst = f32s.iter().zip(&int8s).fold(0f32, |worst, (f, q)| {
            f.iter().zip(q).fold(worst, |worst, (&f, &q)| {
                worst.max((output.dequantize(q) - f).abs() / range)
            })
        });
        println!("int8 logits within {worst:.3} of the f32 range (seed {seed})");
        assert!(
            worst < 0.1,
            "int8 logits differ from f32 by {worst} of the range"
        );
    }
}

/// Batch normalisation (`:bn`) on a strided convolution, depthwise convolutions, a 1x1
/// convolution inside a residual block and a dense layer.
const BATCH_NORMALISED: &str = "input:16x14x2 conv3x3:8:s2:bn residual dw3x3:bn \
                                conv1x1:8:linear:bn add residual:12:s2 dw3x3:s2:relu6:bn \
                                conv1x1:12:linear add gap flatten dense:16:bn dense:10";

/// Batch norms with statistics far from the initial ones (scale 1, offset 0, mean 0, variance
/// 1), drawn from `seed`: what a trained network's look like.
fn randomise_batch_norms(net: &mut Net, seed: u64, device: &Device) {
    use burn::module::{Param, RunningState};
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move |low: f32, high: f32| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        low + (high - low) * (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut tensor = |n: usize, low: f32, high: f32| {
        let values: Vec<f32> = (0..n).map(|_| uniform(low, high)).collect();
        Tensor::<1>::from_data(TensorData::new(values, [n]), device)
    };
    for batch_norm in &mut net.batch_norms {
        let [n] = batch_norm.gamma.dims();
        batch_norm.gamma = Param::from_tensor(tensor(n, 0.3, 2.0));
        batch_norm.beta = Param::from_tensor(tensor(n, -0.5, 0.5));
        batch_norm.running_mean = RunningState::new(tensor(n, -0.4, 0.4));
        batch_norm.running_var = RunningState::new(tensor(n, 0.05, 3.0));
    }
}

/// A batch-normalised network with random weights and statistics: burn in evaluation mode (the
/// running statistics) against the core's f32 on the exported model, whose weights and biases
/// have the batch norms folded in; and the exported int8 model, run by the core, against the
/// independent reference.
#[test]
fn batch_normalised_networks_fold_into_the_core_model() {
    let network = TrainNetwork::parse(BATCH_NORMALISED, Architecture::REFERENCE.input()).unwrap();
    let architecture = network.architecture;
    tinycnn_host::train::model::check_trainable(&architecture).unwrap();
    let device = device();
    for seed in [5, 6] {
        let mut net = seeded_network(&network, seed, &device);
        assert_eq!(net.batch_norms.len(), 5);
        randomise_batch_norms(&mut net, seed, &device);
        let images = synthetic_images(architecture.input(), 40, seed);
        let weights = net.weights();
        let file = CoreWeights::from_burn(&architecture, &weights)
            .unwrap()
            .to_file()
            .unwrap();
        let model = F32Model::from_bytes(&file).unwrap();
        let core = f32_logits(&model, &images, 1);
        compare_f32(
            &burn_logits(&net, &images, &device),
            &core,
            &format!("batch-normalised, seed {seed}"),
        );
        let calibration = images.chunks_exact(architecture.input().values());
        let exported = export::export_calibrated(&architecture, &weights, calibration).unwrap();
        let int8_model = Int8Model::from_bytes(&exported.int8_file).unwrap();
        let core = int8_logits(&int8_model, &images, 1);
        int8_parity(&int8_model, &images, &core, BATCH_NORMALISED);
    }
}
