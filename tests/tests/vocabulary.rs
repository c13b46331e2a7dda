//! The layer vocabulary of format version 3 in int8: networks of strided,
//! rectangular and depthwise convolutions, general pools, residual blocks,
//! softmax and value outputs, with seeded random weights and realistic scales,
//! run by the core's portable kernels (on quantised inputs and on pixels) and
//! by the independent reference (`tinycnn_parity::int8_reference`), which
//! must agree byte for byte. A version-2 model and its version-3 twin (the
//! same records) show that dense layers round once or twice as the version
//! says, in both.
//!
//! The models are built here, not trained: int8 weights in -127..=127 with a
//! scale per output channel, real biases, and for each tensor a scale and zero
//! point calibrated on the inputs so that its values spread over the int8
//! range without saturating (as a converter calibrates them); the multipliers
//! come from the scales through `tinycnn::quant`, as the host's exporter makes
//! them.

use tinycnn::Int8Model;
use tinycnn::arch::{Activation, Architecture, Layer, LayerInfo, Shape};
use tinycnn::format::{Int8LayerRecord, Int8Record, QuantParams, SOFTMAX_OUTPUT};
use tinycnn::kernels::int8::Backend;
use tinycnn::quant::{add_params, quantize_multiplier, softmax_params};
use tinycnn_parity::int8_reference::Reference;

/// Inputs compared per model, quantised and as pixels each.
const INPUTS: usize = 20;

/// SplitMix64: a small seeded generator, the same numbers everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `low..=high`.
    fn int(&mut self, low: i32, high: i32) -> i32 {
        low + (self.next() % (high - low + 1) as u64) as i32
    }
}

/// What calibration moves to bring a layer's outputs to their target spread.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Calibrate {
    /// The output scale (the real network stays as it is).
    OutputScale,
    /// The weight scales and biases (the real network), at a fixed output
    /// scale: ReLU6 layers, whose bound is a real 6, and the logits before a
    /// softmax, whose sharpness is real.
    Weights,
    /// Nothing: the softmax's output quantisation is fixed.
    Nothing,
}

/// One layer record of the network being built.
#[derive(Debug)]
struct Part {
    /// The activation after the layer's sum.
    activation: Activation,
    /// int8 weights (empty for additions and softmax).
    weights: Vec<i8>,
    /// Scale of each output channel's weights.
    weight_scales: Vec<f64>,
    /// Real bias of each output channel.
    bias: Vec<f64>,
    /// Quantisation of the output.
    output: QuantParams,
    calibrate: Calibrate,
    /// Spread of `q - zero_point` calibration aims at.
    target: f64,
}

/// A network in construction: the description, the input quantisation and
/// one part per record.
#[derive(Debug)]
struct Network {
    architecture: Architecture,
    input: QuantParams,
    parts: Vec<Part>,
}

/// Root mean square of a uniform int8 value around its middle.
const INT8_RMS: f64 = 73.9;

impl Network {
    /// Random weights for `text`, scales from first estimates.
    fn new(text: &str, input: QuantParams, seed: u64) -> Self {
        let architecture = tinycnn::text::parse(text, Shape::new(1, 1, 1))
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        let mut rng = Rng(seed);
        let infos: Vec<LayerInfo> = architecture.iter().collect();
        // Rough real spreads, for the first scales and the biases.
        let mut spread = f64::from(input.scale) * INT8_RMS;
        let mut kept = spread;
        let mut parts = Vec::new();
        for (index, info) in infos.iter().enumerate() {
            let before_softmax = matches!(
                infos.get(index + 1).map(|next| next.layer),
                Some(Layer::Softmax)
            );
            match info.layer {
                Layer::Residual(_) => kept = spread,
                Layer::Add(_) => spread = (spread * spread + kept * kept).sqrt(),
                _ => {}
            }
            if info.record.is_none() {
                continue;
            }
            let activation = info.activation();
            let (weights, weight_scales, bias) = if info.layer.has_weights() {
                let fan_in = info.fan_in() as f64;
                let base = 1.5 / (fan_in.sqrt() * INT8_RMS);
                let pre = 1.5
                    * if matches!(info.layer, Layer::Residual(_)) {
                        kept
                    } else {
                        spread
                    };
                let weights = (0..info.weights())
                    .map(|_| rng.int(-127, 127) as i8)
                    .collect();
                let scales = (0..info.outputs())
                    .map(|_| base * (0.75 + 0.5 * rng.unit()))
                    .collect();
                let bias = (0..info.outputs())
                    .map(|_| pre * 0.4 * (2.0 * rng.unit() - 1.0))
                    .collect();
                let post = if activation == Activation::None {
                    pre
                } else {
                    pre / 2f64.sqrt()
                };
                if matches!(info.layer, Layer::Residual(_)) {
                    kept = post;
                } else {
                    spread = post;
                }
                (weights, scales, bias)
            } else {
                (Vec::new(), Vec::new(), Vec::new())
            };
            let (output, calibrate, target) = match (info.layer, activation) {
                (Layer::Softmax, _) => (SOFTMAX_OUTPUT, Calibrate::Nothing, 0.0),
                (_, Activation::Relu6) => {
                    let zero_point = rng.int(-115, -95);
                    let steps = rng.int(120, 200);
                    let output = QuantParams {
                        scale: 6.0 / steps as f32,
                        zero_point: zero_point as i8,
                    };
                    (output, Calibrate::Weights, 0.4 * f64::from(steps))
                }
                (_, Activation::Relu) => {
                    let output = QuantParams {
                        scale: (spread / 40.0) as f32,
                        zero_point: rng.int(-110, -90) as i8,
                    };
                    (output, Calibrate::OutputScale, 40.0)
                }
                (_, Activation::None) if before_softmax => {
                    let output = QuantParams {
                        scale: 0.1,
                        zero_point: rng.int(-10, 10) as i8,
                    };
                    (output, Calibrate::Weights, 12.0)
                }
                (_, Activation::None) => {
                    let output = QuantParams {
                        scale: (spread / 32.0) as f32,
                        zero_point: rng.int(-10, 10) as i8,
                    };
                    (output, Calibrate::OutputScale, 32.0)
                }
            };
            parts.push(Part {
                activation,
                weights,
                weight_scales,
                bias,
                output,
                calibrate,
                target,
            });
        }
        Self {
            architecture,
            input,
            parts,
        }
    }

    /// The model file, at the version its description and input need.
    fn encode(&self) -> Vec<u8> {
        self.encode_with_input(self.input)
    }

    /// The model file with the records made for `self.input` but the file's
    /// input quantisation `input` (to write a version-3 twin of a version-2
    /// model).
    fn encode_with_input(&self, input: QuantParams) -> Vec<u8> {
        let owned = self.records();
        let layers: Vec<Int8LayerRecord<'_>> = owned.iter().map(Owned::record).collect();
        Int8Record {
            architecture: self.architecture,
            input,
            layers: &layers,
            class_names: &[],
            front_end: None,
        }
        .to_vec()
        .unwrap()
    }

    /// The records: each layer's input quantisation followed through the
    /// description, the multipliers from the scales.
    fn records(&self) -> Vec<Owned> {
        let mut current = self.input;
        let mut shortcut = current;
        let mut parts = self.parts.iter();
        let mut records = Vec::new();
        for info in self.architecture.iter() {
            match info.layer {
                Layer::Residual(tinycnn::arch::Shortcut::Identity) => shortcut = current,
                _ if info.record.is_none() => {}
                Layer::Residual(_) => {
                    let part = parts.next().unwrap();
                    records.push(weighted(part, current));
                    shortcut = part.output;
                }
                Layer::Add(_) => {
                    let part = parts.next().unwrap();
                    let params = add_params(
                        [current.scale, shortcut.scale],
                        [current.zero_point, shortcut.zero_point],
                        part.output.scale,
                        part.output.zero_point,
                    );
                    let (multipliers, shifts) = params.record_multipliers();
                    records.push(Owned::constants(
                        part.output,
                        Vec::new(),
                        &multipliers,
                        &shifts,
                    ));
                    current = part.output;
                }
                Layer::Softmax => {
                    let part = parts.next().unwrap();
                    let params = softmax_params(current.scale, 1.0);
                    records.push(Owned::constants(
                        part.output,
                        params.diff_min.to_le_bytes().to_vec(),
                        &[params.input_multiplier],
                        &[params.input_left_shift],
                    ));
                    current = part.output;
                }
                _ => {
                    let part = parts.next().unwrap();
                    records.push(weighted(part, current));
                    current = part.output;
                }
            }
        }
        assert!(parts.next().is_none());
        records
    }

    /// Brings every layer's output spread to its target on `inputs`,
    /// measuring with the core (only the scales move, so what is measured
    /// does not decide what is compared).
    fn calibrate(&mut self, inputs: &[Vec<i8>]) {
        for _ in 0..8 {
            let file = self.encode();
            let model = Int8Model::from_bytes(&file).unwrap();
            let mut scratch = vec![0i8; model.scratch_bytes() + 4];
            let mut squares = vec![(0.0f64, 0usize); self.parts.len()];
            for input in inputs {
                model
                    .run_quantized(Backend::Portable, input, &mut scratch, |seen| {
                        if let Some(record) = seen.step.layer.record {
                            let zero_point = f64::from(self.parts[record].output.zero_point);
                            let (sum, count) = &mut squares[record];
                            for &q in seen.output {
                                *sum += (f64::from(q) - zero_point).powi(2);
                            }
                            *count += seen.output.len();
                        }
                    })
                    .unwrap();
            }
            for (part, (sum, count)) in self.parts.iter_mut().zip(squares) {
                let spread = (sum / count.max(1) as f64).sqrt().max(1.0);
                let factor = (spread / part.target).clamp(1.0 / 16.0, 16.0);
                match part.calibrate {
                    Calibrate::OutputScale => part.output.scale *= factor as f32,
                    Calibrate::Weights => {
                        part.weight_scales.iter_mut().for_each(|s| *s /= factor);
                        part.bias.iter_mut().for_each(|b| *b /= factor);
                    }
                    Calibrate::Nothing => {}
                }
            }
        }
    }

    /// Rounds every output and weight scale to a power of two: multipliers
    /// then are powers of two too, whose products tie often, which is where
    /// rounding once and rounding twice differ.
    fn powers_of_two(&mut self) {
        let round = |x: f64| 2f64.powi(x.log2().round() as i32);
        for part in &mut self.parts {
            if part.calibrate != Calibrate::Nothing {
                part.output.scale = round(f64::from(part.output.scale)) as f32;
            }
            part.weight_scales.iter_mut().for_each(|s| *s = round(*s));
        }
    }
}

/// A layer with weights: its record for an input quantised with `input`.
fn weighted(part: &Part, input: QuantParams) -> Owned {
    let input_scale = f64::from(input.scale);
    let mut record = Owned {
        output: part.output,
        weight_scales: Vec::new(),
        weights: part.weights.iter().map(|&w| w as u8).collect(),
        bias: Vec::new(),
        multipliers: Vec::new(),
        shifts: Vec::new(),
    };
    for (&weight_scale, &bias) in part.weight_scales.iter().zip(&part.bias) {
        let weight_scale = weight_scale as f32;
        let accumulator_scale = input_scale * f64::from(weight_scale);
        let bias = (bias / accumulator_scale)
            .round()
            .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
        let (multiplier, shift) =
            quantize_multiplier(accumulator_scale / f64::from(part.output.scale));
        record
            .weight_scales
            .extend_from_slice(&weight_scale.to_le_bytes());
        record.bias.extend_from_slice(&bias.to_le_bytes());
        record
            .multipliers
            .extend_from_slice(&multiplier.to_le_bytes());
        record.shifts.push(shift as i8 as u8);
    }
    record
}

/// A record's tensors, owned.
#[derive(Debug)]
struct Owned {
    output: QuantParams,
    weight_scales: Vec<u8>,
    weights: Vec<u8>,
    bias: Vec<u8>,
    multipliers: Vec<u8>,
    shifts: Vec<u8>,
}

impl Owned {
    /// An addition's or a softmax's record: constants only.
    fn constants(output: QuantParams, bias: Vec<u8>, multipliers: &[i32], shifts: &[i32]) -> Self {
        Self {
            output,
            weight_scales: Vec::new(),
            weights: Vec::new(),
            bias,
            multipliers: multipliers.iter().flat_map(|m| m.to_le_bytes()).collect(),
            shifts: shifts.iter().map(|&s| s as i8 as u8).collect(),
        }
    }

    fn record(&self) -> Int8LayerRecord<'_> {
        Int8LayerRecord {
            output: self.output,
            weight_scales: &self.weight_scales,
            weights: &self.weights,
            bias: &self.bias,
            multipliers: &self.multipliers,
            shifts: &self.shifts,
        }
    }
}

/// `count` random quantised inputs and `count` random images for `shape`.
fn inputs(shape: Shape, count: usize, seed: u64) -> (Vec<Vec<i8>>, Vec<Vec<u8>>) {
    let mut rng = Rng(seed ^ 0x5eed);
    let quantized = (0..count)
        .map(|_| {
            (0..shape.values())
                .map(|_| rng.int(-128, 127) as i8)
                .collect()
        })
        .collect();
    let pixels = (0..count)
        .map(|_| (0..shape.values()).map(|_| rng.int(0, 255) as u8).collect())
        .collect();
    (quantized, pixels)
}

/// What a comparison saw.
#[derive(Debug)]
struct Outputs {
    /// The core's outputs on the quantised inputs, then on the images.
    core: Vec<Vec<i8>>,
    /// Share of those outputs that are neither -128 nor 127.
    unsaturated: f64,
}

/// The core's portable kernels (quantised inputs) and `classify` (images)
/// against the reference, byte for byte.
fn compare(file: &[u8], quantized: &[Vec<i8>], pixels: &[Vec<u8>], what: &str) -> Outputs {
    let model = Int8Model::from_bytes(file).unwrap();
    let reference = Reference::new(&model);
    let mut scratch = vec![0i8; model.scratch_bytes() + 4];
    let mut core = Vec::new();
    for (i, input) in quantized.iter().enumerate() {
        let ran = model
            .run_quantized(Backend::Portable, input, &mut scratch, |_| {})
            .unwrap()
            .logits
            .to_vec();
        assert_eq!(
            ran,
            reference.run_quantized(input),
            "{what}: quantised input {i}: core (left) and reference (right) differ"
        );
        core.push(ran);
    }
    for (i, image) in pixels.iter().enumerate() {
        let classified = model.classify(image, &mut scratch).unwrap().logits.to_vec();
        assert_eq!(
            classified,
            reference.logits(image),
            "{what}: image {i}: core (left) and reference (right) differ"
        );
        core.push(classified);
    }
    let values: Vec<i8> = core.iter().flatten().copied().collect();
    let inside = values.iter().filter(|&&q| q != -128 && q != 127).count();
    let unsaturated = inside as f64 / values.len() as f64;
    println!(
        "{what}: version {}, {} inputs agree, {:.0}% of outputs unsaturated",
        model.header().version,
        core.len(),
        100.0 * unsaturated
    );
    Outputs { core, unsaturated }
}

/// How many outputs of each ReLU6 layer reach the int8 value of a real 6, on
/// `inputs` (to know that the upper clamp was exercised).
fn relu6_clamps(model: &Int8Model<'_>, network: &Network, inputs: &[Vec<i8>]) -> Vec<usize> {
    let mut scratch = vec![0i8; model.scratch_bytes() + 4];
    let mut clamped = vec![0; network.parts.len()];
    for input in inputs {
        model
            .run_quantized(Backend::Portable, input, &mut scratch, |seen| {
                let Some(record) = seen.step.layer.record else {
                    return;
                };
                let output = network.parts[record].output;
                if network.parts[record].activation == Activation::Relu6 {
                    let six = (i32::from(output.zero_point) + (6.0 / output.scale).round() as i32)
                        .min(127);
                    clamped[record] += seen.output.iter().filter(|&&q| i32::from(q) == six).count();
                }
            })
            .unwrap();
    }
    network
        .parts
        .iter()
        .zip(clamped)
        .filter(|(part, _)| part.activation == Activation::Relu6)
        .map(|(_, count)| count)
        .collect()
}

/// Builds, calibrates and compares one description on [`INPUTS`] inputs;
/// returns what the core gave.
fn agrees(text: &str, input: QuantParams, seed: u64, unsaturated: f64) -> Outputs {
    agrees_on(text, input, seed, INPUTS, unsaturated)
}

/// [`agrees`] on `count` inputs of each kind.
fn agrees_on(text: &str, input: QuantParams, seed: u64, count: usize, unsaturated: f64) -> Outputs {
    let mut network = Network::new(text, input, seed);
    let (quantized, pixels) = inputs(network.architecture.input(), count, seed);
    network.calibrate(&quantized);
    let file = network.encode();
    let model = Int8Model::from_bytes(&file).unwrap();
    assert_eq!(model.header().version, 3, "{text}");
    let clamps = relu6_clamps(&model, &network, &quantized);
    assert!(
        clamps.iter().all(|&count| count > 0),
        "{text}: a ReLU6 layer never reaches 6: {clamps:?}"
    );
    if !clamps.is_empty() {
        println!("{text}: outputs at 6 in each ReLU6 layer: {clamps:?}");
    }
    let outputs = compare(&file, &quantized, &pixels, text);
    assert!(
        outputs.unsaturated >= unsaturated,
        "{text}: only {:.0}% of the outputs are unsaturated",
        100.0 * outputs.unsaturated
    );
    outputs
}

#[test]
fn keyword_spotting_network_agrees() {
    // DS-CNN as in MLPerf Tiny, smaller: 10x4 stride-2 'same' input layer,
    // depthwise-separable blocks (one stride 2 with ReLU6), average pool over
    // the map, softmax. Input features quantised as a converter would (MFCCs).
    let input = QuantParams {
        scale: 0.25,
        zero_point: -16,
    };
    let text = "input:20x10x1 conv10x4:8:s2 dw3x3 conv1x1:8 dw3x3:s2:relu6 \
                conv1x1:8:relu6 avgpool5x3 flatten dense:5 softmax";
    let outputs = agrees(text, input, 1, 0.6);
    // The softmax's probabilities sum to about 256 steps (one each way per class).
    for probabilities in &outputs.core {
        let total: i32 = probabilities.iter().map(|&q| i32::from(q) + 128).sum();
        assert!((251..=261).contains(&total), "{probabilities:?}");
    }
}

#[test]
fn softmax_over_many_logits_agrees() {
    // The fixed-point softmax on its own, on many inputs: 12 classes, logits
    // spread over about a dozen steps of 0.1.
    let input = QuantParams {
        scale: 0.1,
        zero_point: 0,
    };
    let outputs = agrees_on("input:16 dense:12 softmax", input, 7, 25 * INPUTS, 0.6);
    let distinct: std::collections::BTreeSet<i8> = outputs.core.iter().flatten().copied().collect();
    assert!(
        distinct.len() > 100,
        "only {} distinct probabilities",
        distinct.len()
    );
}

#[test]
fn residual_network_agrees() {
    // An identity block and a stride-2 projection block, then a global
    // average pool straight into the logits; pixels in.
    let text = "input:12x12x3 conv3x3:4 residual conv3x3:4 conv3x3:4:linear add \
                residual:8:s2 conv3x3:8:s2 conv3x3:8:linear add:linear gap dense:4";
    agrees(text, QuantParams::INPUT, 2, 0.9);
}

#[test]
fn depthwise_multipliers_strides_and_same_pools_agree() {
    // Rectangular kernels, 'valid' with stride 2x1, depthwise multipliers 2
    // and 3, max and average pools with 'same' padding and strides that differ
    // per axis, an even kernel ('same' pads after).
    let input = QuantParams {
        scale: 0.02,
        zero_point: 3,
    };
    let text = "input:23x17x2 conv3x5:6:s2x1:valid dw5x3:m2:s2:relu6 maxpool3x3:s2:same \
                avgpool2x3:s1x2:same conv2x2:8:linear dw3x1:m3:valid:relu avgpool1x2 \
                flatten dense:10 dense:6";
    let architecture = tinycnn::text::parse(text, Shape::new(1, 1, 1)).unwrap();
    let shapes: Vec<Shape> = architecture.iter().map(|info| info.output).collect();
    assert_eq!(
        shapes[..7],
        [
            Shape::new(11, 13, 6),
            Shape::new(6, 7, 12),
            Shape::new(3, 4, 12),
            Shape::new(3, 2, 12),
            Shape::new(3, 2, 8),
            Shape::new(1, 2, 24),
            Shape::new(1, 1, 24),
        ]
    );
    agrees(text, input, 3, 0.9);
}

#[test]
fn autoencoder_with_its_own_input_quantisation_agrees() {
    let input = QuantParams {
        scale: 0.05,
        zero_point: 7,
    };
    let text = "input:24 dense:8 dense:3 dense:8 dense:24:linear output:values";
    let outputs = agrees(text, input, 4, 0.9);
    assert!(outputs.core.iter().all(|values| values.len() == 24));
}

#[test]
fn dense_rounding_follows_the_format_version() {
    // The tutorial's vocabulary with pixels: version 2, dense layers round
    // once. The same records with an input scale one float step away from
    // 1/255 (which quantises every pixel the same) make a version-3 file,
    // whose dense layers round twice. Powers-of-two scales make the
    // multipliers exact powers of two, whose products tie often.
    let text = "input:14x14x1 conv3x3:6 pool conv5x5:8:valid pool drop:0.25 flatten \
                dense:16 dense:12 dense:4";
    let mut network = Network::new(text, QuantParams::INPUT, 5);
    let (quantized, pixels) = inputs(network.architecture.input(), 10 * INPUTS, 5);
    network.calibrate(&quantized);
    network.powers_of_two();
    let version_2 = network.encode();
    let nearly = QuantParams {
        scale: f32::from_bits(QuantParams::INPUT.scale.to_bits() + 1),
        ..QuantParams::INPUT
    };
    let version_3 = network.encode_with_input(nearly);
    assert_eq!(
        Int8Model::from_bytes(&version_2).unwrap().header().version,
        2
    );
    assert_eq!(
        Int8Model::from_bytes(&version_3).unwrap().header().version,
        3
    );
    let once = compare(&version_2, &quantized, &pixels, "version 2");
    let twice = compare(&version_3, &quantized, &pixels, "version 3");
    assert!(once.unsaturated >= 0.9 && twice.unsaturated >= 0.9);
    let differ = once
        .core
        .iter()
        .zip(&twice.core)
        .filter(|(a, b)| a != b)
        .count();
    println!(
        "dense rounding: {differ} of {} inputs give other logits in version 3",
        once.core.len()
    );
    assert!(
        differ > 0,
        "the roundings never differed: the test proves nothing"
    );
}

#[test]
fn dense_relu6_agrees() {
    let input = QuantParams {
        scale: 0.05,
        zero_point: 7,
    };
    let text = "input:24 dense:8:relu6 dense:3 dense:8:relu6 dense:24:linear output:values";
    agrees(text, input, 6, 0.9);
}
