//! Proves on the device that the Arm DSP kernels compute exactly what the
//! portable (reference) kernels compute: both run on random values for a set
//! of shapes (named ones: the reference network's, every loop remainder, the
//! shapes the DSP kernels hand to the portable ones; then random ones: every
//! kernel side, both paddings, pooled or not), with random zero points,
//! multipliers and shifts including their extremes, ReLU on and off; then
//! both run the whole embedded network on every test vector, step by step.
//! Exits 0 only if every output is bit-identical and the DSP kernels actually
//! ran where they should; otherwise 2. Also reports instructions per
//! inference and per step for both backends.

#![no_std]
#![no_main]

use tinycnn::arch::{Activation, Conv, MAX_LAYERS, Padding, Shape};
use tinycnn::kernels::int8::{self, Backend, ConvLayer, DenseLayer, Requantization};
use tinycnn::kernels::{ConvGeometry, argmax, dsp};
use tinycnn::quant::Rounding;
#[cfg(feature = "widened-kernels")]
use tinycnn::widened;
use tinycnn_firmware::{self as firmware, ExitCode, profile};

/// Largest weight tensor of a test layer.
const MAX_WEIGHTS: usize = 28 * 1024;
/// Most output channels of a test layer.
const MAX_OUTPUTS: usize = 128;
/// Largest input and output of a test layer.
const MAX_VALUES: usize = 14 * 1024;
/// Bytes of the work area, more than any test layer needs.
const WORK_BYTES: usize = 10 * 1024;
/// Random cases per shape (two of each regime of `LayerBuffers::randomize`).
const CASES: u32 = 12;
/// Random shapes.
const RANDOM_SHAPES: u32 = 40;

/// A convolution to check: input, kernel side, padding, filters, pooled.
struct ConvCase {
    input: (usize, usize, usize),
    kernel: u8,
    padding: Padding,
    filters: u16,
    pooled: bool,
}

const fn case(
    input: (usize, usize, usize),
    kernel: u8,
    padding: Padding,
    filters: u16,
    pooled: bool,
) -> ConvCase {
    ConvCase {
        input,
        kernel,
        padding,
        filters,
        pooled,
    }
}

const SAME: Padding = Padding::Same;
const VALID: Padding = Padding::Valid;

/// The reference network's convolutions (conv2/conv3 with fewer filters to
/// fit the buffers), odd sizes (7 -> 3 pooling), channel counts that exercise
/// every loop remainder (groups of 4 inputs: 9 = 8 + 1, 18 = 16 + 2,
/// 36 = 32 + 4; chunks of 64 outputs + 1 and + 3; groups of 4 output pixels + 1, 2, 3), and
/// shapes the DSP kernels hand to the portable ones (3 input channels, one
/// input channel with a 5x5 kernel).
const CONV_CASES: [ConvCase; 20] = [
    case((28, 28, 1), 3, SAME, 64, true),
    case((5, 7, 1), 3, SAME, 67, true),
    case((14, 14, 64), 3, SAME, 40, true),
    case((7, 7, 128), 3, SAME, 20, true),
    case((8, 8, 32), 3, SAME, 65, true),
    case((6, 5, 4), 3, SAME, 7, true),
    case((3, 3, 8), 3, SAME, 2, true),
    case((9, 9, 16), 3, SAME, 64, true),
    case((2, 2, 12), 3, SAME, 1, true),
    case((9, 9, 8), 5, SAME, 12, true),
    case((10, 10, 4), 5, VALID, 9, false),
    case((7, 6, 16), 1, SAME, 33, false),
    case((5, 5, 8), 3, SAME, 3, false),
    case((6, 7, 4), 3, VALID, 5, true),
    case((11, 13, 1), 3, VALID, 5, false),
    case((12, 12, 1), 3, VALID, 6, true),
    case((9, 10, 1), 3, SAME, 35, false),
    case((4, 4, 3), 3, SAME, 5, true),
    case((8, 8, 1), 5, SAME, 4, true),
    case((6, 6, 3), 5, VALID, 4, false),
];

/// Dense layers to check: inputs, outputs. With the weights widened (`dsp::dense_widened`):
/// blocks of four rows and calls of eight blocks, whole or not, sixteen groups of four inputs
/// a round and the rest; the autoencoder's 640 inputs.
const DENSE_CASES: [(usize, usize); 12] = [
    (2304, 12),
    (128, 64),
    (64, 32),
    (32, 10),
    (36, 7),
    (4, 1),
    (20, 3),
    (6, 4),
    (100, 12),
    (640, 8),
    (8, 36),
    (12, 5),
];

/// Bytes for a test layer's widened weights (`tinycnn::widened::dense_bytes`); larger
/// layers skip the widened check.
#[cfg(feature = "widened-kernels")]
const WIDENED_BYTES: usize = 16 * 1024;

#[cortex_m_rt::entry]
fn main() -> ! {
    let board = firmware::init();
    let Some(buffers) = cortex_m::singleton!(: Buffers = Buffers::new()) else {
        defmt::panic!("buffers taken twice")
    };
    let mut check = Check::default();
    let mut rng = Rng(0x2545_f491);

    for case in &CONV_CASES {
        let (height, width, channels) = case.input;
        let conv = Conv::square(case.kernel, case.padding, case.filters, Activation::Relu);
        let geometry = ConvGeometry::new(&conv, Shape::new(height, width, channels), case.pooled);
        conv_cases(&mut rng, buffers, &mut check, &geometry);
    }
    for _ in 0..RANDOM_SHAPES {
        let geometry = random_geometry(&mut rng);
        conv_cases(&mut rng, buffers, &mut check, &geometry);
    }
    for (inputs, outputs) in DENSE_CASES {
        dense_cases(&mut rng, buffers, &mut check, inputs, outputs);
    }
    argmax_cases(&mut rng, buffers, &mut check);
    work_edge_cases(&mut rng, buffers, &mut check);
    general_cases::window_convs(&mut rng, buffers, &mut check);
    general_cases::depthwise(&mut rng, buffers, &mut check);
    general_cases::average_pools(&mut rng, buffers, &mut check);
    general_cases::additions(&mut rng, buffers, &mut check);
    defmt::info!(
        "random kernels: {=u32} cases, {=u32} differ, {=u32} took the wrong backend",
        check.cases,
        check.mismatches,
        check.wrong_backend
    );

    network(&board, &mut check);

    if check.mismatches == 0 && check.wrong_backend == 0 {
        defmt::info!("DSP kernels are bit-identical to the portable ones");
        firmware::exit(ExitCode::Success);
    }
    defmt::error!(
        "{=u32} differences, {=u32} wrong backends",
        check.mismatches,
        check.wrong_backend
    );
    firmware::exit(ExitCode::Mismatch)
}

/// The kernels the DSP module should run for `geometry`: its own for a
/// multiple of 4 input channels, one channel with a 3x3 kernel, or any
/// convolution without a fused pool.
fn expected_backend(geometry: &ConvGeometry) -> Backend {
    let channels = geometry.input.channels;
    // Other channel counts run the kernel of any window, unless pooled.
    if channels.is_multiple_of(4) || (channels == 1 && geometry.kernel == 3) || !geometry.pooled {
        Backend::ArmDsp
    } else {
        Backend::Portable
    }
}

/// A random geometry that fits the buffers.
fn random_geometry(rng: &mut Rng) -> ConvGeometry {
    loop {
        let kernel: u8 = [1, 3, 5][rng.below(3)];
        let padding = if rng.next() & 1 == 0 { SAME } else { VALID };
        let pooled = rng.next() & 1 == 0;
        let channels = [1, 1, 3, 4, 8, 12, 16, 2][rng.below(8)];
        let smallest = if padding == VALID {
            usize::from(kernel)
        } else {
            1
        } + usize::from(pooled);
        let input = Shape::new(smallest + rng.below(12), smallest + rng.below(12), channels);
        let conv = Conv::square(kernel, padding, 1 + rng.below(40) as u16, Activation::Relu);
        let geometry = ConvGeometry::new(&conv, input, pooled);
        let fits = geometry.is_consistent()
            && input.values() <= MAX_VALUES
            && geometry.conv_output().values() <= MAX_VALUES
            && usize::from(conv.filters) * geometry.fan_in() <= MAX_WEIGHTS
            && dsp::conv_work_bytes(&geometry) <= WORK_BYTES;
        if fits {
            return geometry;
        }
    }
}

/// Tally of the checks.
#[derive(Debug, Default)]
struct Check {
    cases: u32,
    mismatches: u32,
    wrong_backend: u32,
}

impl Check {
    fn record(&mut self, what: &str, case: u32, same: bool, ran: Backend, expected: Backend) {
        self.cases += 1;
        if !same {
            self.mismatches += 1;
            defmt::error!(
                "{=str} case {=u32}: DSP output differs from the portable one",
                what,
                case
            );
        }
        if ran != expected {
            self.wrong_backend += 1;
            defmt::error!(
                "{=str} case {=u32}: ran {=str} kernels, expected {=str}",
                what,
                case,
                ran.name(),
                expected.name()
            );
        }
    }
}

/// Storage for one random layer, its input and outputs, and the DSP work
/// area (a static: too large for the stack).
struct Buffers {
    layer: LayerBuffers,
    input: [i8; MAX_VALUES],
    portable: [i8; MAX_VALUES],
    fast: [i8; MAX_VALUES],
    work: Work,
    #[cfg(feature = "widened-kernels")]
    widened: Widened,
}

/// A test layer's widened weights, on a 4-byte boundary as the kernels read them.
#[cfg(feature = "widened-kernels")]
#[repr(C, align(4))]
struct Widened([u8; WIDENED_BYTES]);

/// The buffers of one case: input and outputs cut to its lengths.
struct Views<'b> {
    layer: &'b mut LayerBuffers,
    input: &'b mut [i8],
    portable: &'b mut [i8],
    fast: &'b mut [i8],
    work: &'b mut Work,
    #[cfg(feature = "widened-kernels")]
    widened: &'b mut Widened,
}

impl Buffers {
    /// `None` if a case needs more than the buffers hold.
    fn views(&mut self, inputs: usize, outputs: usize) -> Option<Views<'_>> {
        let Buffers {
            layer,
            input,
            portable,
            fast,
            work,
            #[cfg(feature = "widened-kernels")]
            widened,
        } = self;
        Some(Views {
            layer,
            input: input.get_mut(..inputs)?,
            portable: portable.get_mut(..outputs)?,
            fast: fast.get_mut(..outputs)?,
            work,
            #[cfg(feature = "widened-kernels")]
            widened,
        })
    }

    const fn new() -> Self {
        Buffers {
            layer: LayerBuffers::new(),
            input: [0; MAX_VALUES],
            portable: [0; MAX_VALUES],
            fast: [0; MAX_VALUES],
            work: Work([0; WORK_BYTES]),
            #[cfg(feature = "widened-kernels")]
            widened: Widened([0; WIDENED_BYTES]),
        }
    }
}

/// Weights and per-channel constants of one random layer.
struct LayerBuffers {
    weights: [u8; MAX_WEIGHTS],
    bias: [u8; 4 * MAX_OUTPUTS],
    multipliers: [u8; 4 * MAX_OUTPUTS],
    shifts: [u8; MAX_OUTPUTS],
}

/// The DSP kernels want their work area on a 4-byte boundary.
#[repr(C, align(4))]
struct Work([i8; WORK_BYTES]);

impl LayerBuffers {
    const fn new() -> Self {
        LayerBuffers {
            weights: [0; MAX_WEIGHTS],
            bias: [0; 4 * MAX_OUTPUTS],
            multipliers: [0; 4 * MAX_OUTPUTS],
            shifts: [0; MAX_OUTPUTS],
        }
    }

    /// Fills weights and per-channel constants for `outputs` channels with
    /// `fan_in` weights each, in one of several regimes chosen by `case`, and
    /// returns the layer's zero points and ReLU flag.
    fn randomize(&mut self, rng: &mut Rng, case: u32, outputs: usize, fan_in: usize) -> Quant {
        let regime = case % 6;
        for weight in self.weights.iter_mut().take(outputs * fan_in) {
            *weight = match regime {
                // Every product at its largest magnitude.
                2 => (if rng.next() & 1 == 0 { 127i8 } else { -127 }) as u8,
                _ => rng.range(-127, 127) as i8 as u8,
            };
        }
        for channel in 0..outputs {
            let (bias, multiplier, shift) = match regime {
                // What a trained network looks like.
                0 | 2 => (
                    rng.range(-40_000, 40_000),
                    rng.range(1 << 30, i32::MAX),
                    rng.range(-12, -4),
                ),
                // Anything the loader accepts: every shift, multipliers from 0,
                // and biases that saturate the accumulator.
                1 => (
                    match rng.next() % 4 {
                        0 => i32::MAX - rng.range(0, 1000),
                        1 => i32::MIN + rng.range(0, 1000),
                        _ => rng.next() as i32,
                    },
                    match rng.next() % 4 {
                        0 => 0,
                        1 => i32::MAX,
                        _ => rng.range(0, i32::MAX),
                    },
                    rng.range(-31, 30),
                ),
                // Scales that put most outputs a few steps above the zero
                // point, with shifts of 0 to 3: every rounding step is hit.
                3 => (
                    rng.range(-40_000, 40_000),
                    rng.range(0, 1 << 17),
                    rng.range(-3, 0),
                ),
                // Shifts about the largest that the fused tiles take
                // (folding the zero point into the rounding term), and past it.
                5 => (
                    rng.range(-40_000, 40_000),
                    rng.range(0, i32::MAX),
                    rng.range(-24, -12),
                ),
                // Small scales with large shifts both ways.
                _ => (
                    rng.range(-1000, 1000),
                    rng.range(0, 1 << 20),
                    if rng.next() & 1 == 0 {
                        -31
                    } else {
                        rng.range(0, 8)
                    },
                ),
            };
            if let Some(slot) = self.bias.chunks_exact_mut(4).nth(channel) {
                slot.copy_from_slice(&bias.to_le_bytes());
            }
            if let Some(slot) = self.multipliers.chunks_exact_mut(4).nth(channel) {
                slot.copy_from_slice(&multiplier.to_le_bytes());
            }
            if let Some(slot) = self.shifts.get_mut(channel) {
                *slot = shift as i8 as u8;
            }
        }
        let extreme_zero_point = |rng: &mut Rng| match rng.next() % 3 {
            0 => -128,
            1 => 127,
            _ => rng.range(-128, 127) as i8,
        };
        Quant {
            input_zero_point: extreme_zero_point(rng),
            output_zero_point: extreme_zero_point(rng),
            activation: if regime == 3 || rng.next() & 1 == 0 {
                Activation::Relu
            } else {
                Activation::None
            },
            extreme_inputs: regime == 2,
        }
    }

    fn requantization(&self, outputs: usize, quant: &Quant) -> Option<Requantization<'_>> {
        Requantization::new(
            outputs,
            self.bias.get(..4 * outputs)?,
            self.multipliers.get(..4 * outputs)?,
            self.shifts.get(..outputs)?,
            quant.input_zero_point,
            quant.output_zero_point,
            quant.activation,
        )
    }

    fn conv(&self, geometry: &ConvGeometry, quant: &Quant) -> Option<ConvLayer<'_>> {
        ConvLayer::new(
            *geometry,
            self.weights.get(..geometry.filters * geometry.fan_in())?,
            self.requantization(geometry.filters, quant)?,
        )
    }

    fn dense(&self, inputs: usize, outputs: usize, quant: &Quant) -> Option<DenseLayer<'_>> {
        DenseLayer::new(
            inputs,
            self.weights.get(..outputs * inputs)?,
            self.requantization(outputs, quant)?,
        )
    }
}

/// The zero points and activation of a random layer.
#[derive(Debug, Clone, Copy)]
struct Quant {
    input_zero_point: i8,
    output_zero_point: i8,
    activation: Activation,
    /// Inputs only at -128 and 127.
    extreme_inputs: bool,
}

fn random_inputs(rng: &mut Rng, values: &mut [i8], extreme: bool) {
    for value in values {
        *value = if extreme {
            if rng.next() & 1 == 0 { -128 } else { 127 }
        } else {
            rng.next() as i8
        };
    }
}

fn conv_cases(rng: &mut Rng, buffers: &mut Buffers, check: &mut Check, geometry: &ConvGeometry) {
    let expected = expected_backend(geometry);
    let (inputs, outputs) = (geometry.input.values(), geometry.output().values());
    for case in 0..CASES {
        let quant = buffers
            .layer
            .randomize(rng, case, geometry.filters, geometry.fan_in());
        let Some(Views {
            layer,
            input,
            portable,
            fast,
            work,
            ..
        }) = buffers.views(inputs, outputs)
        else {
            defmt::panic!("conv case: test buffers too small");
        };
        random_inputs(rng, input, quant.extreme_inputs);
        let Some(layer) = layer.conv(geometry, &quant) else {
            defmt::panic!("conv case: test buffers too small");
        };
        let same_length = int8::conv(input, &layer, portable).is_some();
        fast.fill(0x55);
        let ran = dsp::conv(input, &layer, fast, &mut work.0).unwrap_or(Backend::Portable);
        check.record("conv", case, same_length && portable == fast, ran, expected);
    }
    defmt::info!(
        "conv {=usize}x{=usize}x{=usize} {=usize}x{=usize} {=str} -> {=usize}{=str}: {=u32} cases on {=str}",
        geometry.input.height,
        geometry.input.width,
        geometry.input.channels,
        geometry.kernel,
        geometry.kernel,
        if geometry.pad == 0 && geometry.kernel > 1 {
            "valid"
        } else {
            "same"
        },
        geometry.filters,
        if geometry.pooled { " + pool" } else { "" },
        CASES,
        expected.name()
    );
}

fn dense_cases(
    rng: &mut Rng,
    buffers: &mut Buffers,
    check: &mut Check,
    inputs: usize,
    outputs: usize,
) {
    let expected = if inputs.is_multiple_of(4) {
        Backend::ArmDsp
    } else {
        Backend::Portable
    };
    for case in 0..CASES {
        let quant = buffers.layer.randomize(rng, case, outputs, inputs);
        let Some(Views {
            layer: weights,
            input,
            portable,
            fast,
            work,
            #[cfg(feature = "widened-kernels")]
            widened,
        }) = buffers.views(inputs, outputs)
        else {
            defmt::panic!("dense {} -> {}: test buffers too small", inputs, outputs);
        };
        random_inputs(rng, input, quant.extreme_inputs);
        let Some(layer) = weights.dense(inputs, outputs, &quant) else {
            defmt::panic!("dense {} -> {}: test buffers too small", inputs, outputs);
        };
        // Rounding twice, as model files of version 3 on (TensorFlow Lite Micro) do, takes
        // the assembly's requantisation paths (and the widened routines' fused ones).
        let double = layer.with_rounding(Rounding::Double);
        let mut same_length = false;
        for (what, rounded) in [("dense", &layer), ("dense, rounding twice", &double)] {
            same_length = int8::dense(input, rounded, portable).is_some();
            fast.fill(0x55);
            let ran = dsp::dense(input, rounded, fast, &mut work.0).unwrap_or(Backend::Portable);
            check.record(what, case, same_length && portable == fast, ran, expected);
        }
        // Without a work area the input is widened as it is read: from a copy at
        // any offset from a word boundary.
        let offset = case as usize % 4;
        let Some(copy) = work.0.get_mut(offset..offset + inputs) else {
            defmt::panic!("dense {} -> {}: test buffers too small", inputs, outputs);
        };
        copy.copy_from_slice(input);
        fast.fill(0x55);
        let ran = dsp::dense(copy, &double, fast, &mut []).unwrap_or(Backend::Portable);
        check.record(
            "dense without work",
            case,
            same_length && portable == fast,
            ran,
            expected,
        );
        #[cfg(feature = "widened-kernels")]
        widened_cases(
            case,
            (weights, input, portable, fast, work, widened),
            &quant,
            (&layer, &double),
            check,
        );
    }
    defmt::info!(
        "dense {=usize} -> {=usize}: {=u32} cases checked, with and without work, rounding \
         once and twice, weights widened where they fit",
        inputs,
        outputs,
        CASES
    );
}

/// A dense case's buffers, for [`widened_cases`]: the layer's weights and constants, its
/// input, the portable and the fast output, the work area and the widened weights.
#[cfg(feature = "widened-kernels")]
type WidenedBuffers<'b> = (
    &'b LayerBuffers,
    &'b [i8],
    &'b mut [i8],
    &'b mut [i8],
    &'b mut Work,
    &'b mut Widened,
);

/// `dsp::dense_widened` (the firmware's `widened-kernels` feature) on a dense case: the layer
/// rounding twice and once, with a ReLU at zero point -128 and without activation (the two
/// that requantise as each block ends), with and without a work area; skipped for weights
/// larger than [`WIDENED_BYTES`] widened.
#[cfg(feature = "widened-kernels")]
fn widened_cases(
    case: u32,
    (weights, input, portable, fast, work, widened): WidenedBuffers<'_>,
    quant: &Quant,
    (layer, double): (&DenseLayer<'_>, &DenseLayer<'_>),
    check: &mut Check,
) {
    let (inputs, outputs) = (input.len(), portable.len());
    let offset = case as usize % 4;
    let expected = if inputs.is_multiple_of(4) {
        Backend::ArmDsp
    } else {
        Backend::Portable
    };
    let table_bytes = widened::dense_bytes(inputs, outputs);
    let Some(table) = widened.0.get_mut(..table_bytes) else {
        return;
    };
    let rows = layer.rows();
    if widened::widen_layer(rows, inputs, outputs, table).is_err() {
        defmt::panic!("dense {} -> {}: cannot widen its weights", inputs, outputs);
    }
    // The routines that requantise as each block ends take a ReLU at zero point -128 or
    // no activation: both forced here besides the case's own.
    let twice = |quant: Quant| {
        weights
            .dense(inputs, outputs, &quant)
            .map(|layer| layer.with_rounding(Rounding::Double))
    };
    let (Some(relu_at_128), Some(linear)) = (
        twice(Quant {
            output_zero_point: -128,
            activation: Activation::Relu,
            ..*quant
        }),
        twice(Quant {
            activation: Activation::None,
            ..*quant
        }),
    ) else {
        defmt::panic!("dense {} -> {}: test buffers too small", inputs, outputs);
    };
    let layers = [
        ("widened dense", double),
        ("widened dense, rounding once", layer),
        ("widened dense, ReLU at -128", &relu_at_128),
        ("widened dense, no activation", &linear),
    ];
    // Without a work area the widened routines widen the input as they read it: from
    // a copy at any offset from a word boundary.
    let (area, copy) = work.0.split_at_mut(WORK_BYTES / 2);
    let Some(copy) = copy.get_mut(offset..offset + inputs) else {
        defmt::panic!("dense {} -> {}: test buffers too small", inputs, outputs);
    };
    copy.copy_from_slice(input);
    for (what, rounded) in layers {
        let same_length = int8::dense(input, rounded, portable).is_some();
        for with_work in [true, false] {
            fast.fill(0x55);
            let area: &mut [i8] = if with_work { &mut *area } else { &mut [] };
            let ran =
                dsp::dense_widened(copy, rounded, table, fast, area).unwrap_or(Backend::Portable);
            check.record(what, case, same_length && portable == fast, ran, expected);
        }
    }
}

/// The logits' argmax four values at a time (`dsp::argmax`) against the portable one: random
/// lengths at every offset from a word boundary, values from a narrow range (so the largest
/// repeats) or the whole one, and the largest placed first, last or nowhere in particular.
fn argmax_cases(rng: &mut Rng, buffers: &mut Buffers, check: &mut Check) {
    const LENGTHS: [usize; 8] = [0, 1, 3, 4, 5, 10, 640, 1001];
    let mut cases = 0u32;
    for length in LENGTHS {
        for case in 0..CASES {
            let offset = case as usize % 4;
            let Some(values) = buffers.input.get_mut(offset..offset + length) else {
                defmt::panic!("argmax of {}: test buffers too small", length);
            };
            let narrow = case % 3 == 0;
            for value in values.iter_mut() {
                *value = if narrow {
                    rng.range(-3, 3) as i8
                } else {
                    rng.range(-128, 127) as i8
                };
            }
            match (case % 4, values.len()) {
                (_, 0) => {}
                (1, _) => values[0] = i8::MAX,
                (2, last) => values[last - 1] = i8::MAX,
                (3, _) => values.fill(i8::MIN),
                _ => {}
            }
            let same = dsp::argmax(values) == argmax(values);
            check.record("argmax", case, same, Backend::ArmDsp, Backend::ArmDsp);
            cases += 1;
        }
    }
    defmt::info!("argmax: {=u32} cases checked", cases);
}

/// A work area off a 4-byte boundary still works (the kernels use its aligned
/// part); a dense layer given one too small widens its input as it reads it,
/// a convolution runs the portable kernel.
fn work_edge_cases(rng: &mut Rng, buffers: &mut Buffers, check: &mut Check) {
    const IN: usize = 64;
    const OUT: usize = 8;
    let conv = Conv::square(3, Padding::Same, 8, Activation::Relu);
    let geometry = ConvGeometry::new(&conv, Shape::new(6, 6, 8), false);
    let (dense_needed, conv_needed) = (dsp::dense_work_bytes(IN), dsp::conv_work_bytes(&geometry));
    // (a convolution, not a dense layer; offset; length; the kernels expected)
    let cases = [
        (false, 1, dense_needed + 3, Backend::ArmDsp),
        (false, 3, dense_needed + 1, Backend::ArmDsp),
        (false, 0, dense_needed - 1, Backend::ArmDsp),
        (false, 2, dense_needed + 1, Backend::ArmDsp),
        (true, 1, conv_needed + 3, Backend::ArmDsp),
        (true, 0, conv_needed / 2, Backend::Portable),
    ];
    for (case, (is_conv, offset, length, expected)) in cases.into_iter().enumerate() {
        let (inputs, outputs, fan_in, filters) = if is_conv {
            let output = geometry.output().values();
            (
                geometry.input.values(),
                output,
                geometry.fan_in(),
                geometry.filters,
            )
        } else {
            (IN, OUT, IN, OUT)
        };
        let quant = buffers.layer.randomize(rng, 0, filters, fan_in);
        let Some(Views {
            layer,
            input,
            portable,
            fast,
            work,
            ..
        }) = buffers.views(inputs, outputs)
        else {
            defmt::panic!("work edge case {}: test buffers too small", case);
        };
        let Some(area) = work.0.get_mut(offset..offset + length) else {
            defmt::panic!("work edge case {}: test buffers too small", case);
        };
        random_inputs(rng, input, false);
        fast.fill(0x55);
        let (same_length, ran) = if is_conv {
            let Some(layer) = layer.conv(&geometry, &quant) else {
                defmt::panic!("work edge case {}: test buffers too small", case);
            };
            let same_length = int8::conv(input, &layer, portable).is_some();
            (same_length, dsp::conv(input, &layer, fast, area))
        } else {
            let Some(layer) = layer.dense(IN, OUT, &quant) else {
                defmt::panic!("work edge case {}: test buffers too small", case);
            };
            let same_length = int8::dense(input, &layer, portable).is_some();
            (same_length, dsp::dense(input, &layer, fast, area))
        };
        check.record(
            "work area",
            case as u32,
            same_length && portable == fast,
            ran.unwrap_or(Backend::Portable),
            expected,
        );
    }
}

/// The whole network, portable then DSP, on every test vector: each step's
/// output must hash the same, and the logits must equal the host's.
fn network(board: &firmware::Board, check: &mut Check) {
    let model = firmware::load_model();
    let vectors = firmware::load_test_vectors(&model);
    let scratch = firmware::scratch();
    let mut totals = [profile::Totals::default(), profile::Totals::default()];
    let backends = [Backend::Portable, Backend::ArmDsp];
    let mut differing_steps = [0u32; MAX_LAYERS];
    let steps = tinycnn::plan::step_count(model.architecture());
    for (index, vector) in vectors.iter().enumerate() {
        let mut hashes = [[0u32; MAX_LAYERS]; 2];
        let mut logits_hash = [0u32; 2];
        let mut matches_host = [false; 2];
        for (((backend, totals), hashes), (logits_hash, matches_host)) in backends
            .iter()
            .zip(&mut totals)
            .zip(&mut hashes)
            .zip(logits_hash.iter_mut().zip(&mut matches_host))
        {
            let (prediction, counts) = profile::classify(
                &model,
                *backend,
                vector.image,
                scratch,
                &board.counter,
                |observed| {
                    if let Some(hash) = hashes.get_mut(observed.index) {
                        *hash = fnv1a(observed.output);
                    }
                },
            );
            totals.add(&counts);
            if let Ok(prediction) = prediction {
                *logits_hash = fnv1a(prediction.logits);
                *matches_host = vector.matches(prediction.logits);
            }
        }
        let [portable, fast] = hashes;
        let pairs = portable.iter().zip(&fast).take(steps);
        for (step, ((a, b), differing)) in pairs.zip(&mut differing_steps).enumerate() {
            if a != b {
                *differing += 1;
                defmt::error!("image {=usize}: step {=usize} output differs", index, step);
            }
        }
        let same = portable == fast && logits_hash[0] == logits_hash[1];
        check.record(
            "network",
            index as u32,
            same,
            Backend::ArmDsp,
            Backend::ArmDsp,
        );
        if !matches_host[0] {
            check.mismatches += 1;
            defmt::error!(
                "image {=usize}: portable logits differ from the host's",
                index
            );
        }
    }
    defmt::info!(
        "network: {=usize} images through both backends, outputs differing per step: {}",
        vectors.len(),
        differing_steps.get(..steps).unwrap_or(&[])
    );
    for (backend, totals) in backends.iter().zip(&totals) {
        totals.log(&model, *backend);
    }
    let [portable, fast] = totals;
    defmt::info!(
        "arm-dsp is {=f32} times faster than portable",
        portable.per_inference() as f32 / fast.per_inference().max(1) as f32
    );
}

/// FNV-1a over the bytes of a layer's output.
fn fnv1a(values: &[i8]) -> u32 {
    values.iter().fold(0x811c_9dc5, |hash, &value| {
        (hash ^ u32::from(value as u8)).wrapping_mul(0x0100_0193)
    })
}

/// Marsaglia's xorshift32: deterministic test data without a dependency.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    /// Uniform in `0..n` (slightly biased, which does not matter here).
    fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n.max(1)
    }

    /// Uniform in `low..=high` (slightly biased, which does not matter here).
    fn range(&mut self, low: i32, high: i32) -> i32 {
        let span = (i64::from(high) - i64::from(low) + 1) as u64;
        (i64::from(low)
            + (u64::from(self.next()) << 32 | u64::from(self.next())).rem_euclid(span) as i64)
            as i32
    }
}

/// Random layers of the kernels beyond the tutorial's: convolutions of any window and
/// stride, depthwise convolutions, average pools and additions, each against the portable
/// kernel of `tinycnn::kernels::general`.
mod general_cases {
    use super::{Buffers, CASES, Check, Quant, Rng, Views, WORK_BYTES, random_inputs};
    use tinycnn::arch::Shape;
    use tinycnn::kernels::dsp;
    use tinycnn::kernels::general::{self, AddParams, WindowGeometry};
    use tinycnn::kernels::int8::{Backend, Requantization};

    /// Random shapes per kernel.
    const SHAPES: u32 = 24;

    /// A random window on a random input of `channels` channels, `None` if it does not
    /// resolve; `side` bounds the kernel's sides.
    fn random_window(
        rng: &mut Rng,
        channels: usize,
        side: usize,
        outputs: usize,
    ) -> Option<WindowGeometry> {
        let input = Shape::new(1 + rng.below(12), 1 + rng.below(12), channels);
        WindowGeometry::resolve(
            input,
            1 + rng.below(side),
            1 + rng.below(side),
            1 + rng.below(2),
            1 + rng.below(2),
            rng.next() & 1 == 0,
            outputs,
        )
    }

    /// The requantisation of a random layer, sometimes with a ReLU6-like maximum.
    fn requantization<'l>(
        rng: &mut Rng,
        layer: &'l super::LayerBuffers,
        outputs: usize,
        quant: &Quant,
    ) -> Option<Requantization<'l>> {
        let requantization = layer.requantization(outputs, quant)?;
        Some(if rng.next().is_multiple_of(4) {
            let min = requantization.activation_min();
            requantization.with_activation_range(min, rng.range(min, 127))
        } else {
            requantization
        })
    }

    pub fn window_convs(rng: &mut Rng, buffers: &mut Buffers, check: &mut Check) {
        let before = check.cases;
        for shape in 0..SHAPES {
            let channels = [1, 2, 3, 4, 8, 12][rng.below(6)];
            let filters = 1 + rng.below(20);
            // The keyword-spotting network's first layer: 10x4 on one channel.
            let geometry = if shape == 0 {
                WindowGeometry::resolve(Shape::new(49, 10, 1), 10, 4, 2, 2, true, 16)
            } else {
                random_window(rng, channels, 5, filters)
            };
            let Some(geometry) = geometry else { continue };
            let fan_in = geometry.kernel_height * geometry.kernel_width * geometry.input.channels;
            if dsp::window_conv_work_bytes(&geometry) > WORK_BYTES {
                continue;
            }
            for case in 0..CASES {
                let quant = buffers
                    .layer
                    .randomize(rng, case, geometry.output.channels, fan_in);
                let (inputs, outputs) = (geometry.input.values(), geometry.output.values());
                let Some(Views {
                    layer,
                    input,
                    portable,
                    fast,
                    work,
                    ..
                }) = buffers.views(inputs, outputs)
                else {
                    continue;
                };
                random_inputs(rng, input, quant.extreme_inputs);
                let Some(weights) = layer.weights.get(..fan_in * geometry.output.channels) else {
                    continue;
                };
                let Some(requantization) =
                    requantization(rng, layer, geometry.output.channels, &quant)
                else {
                    continue;
                };
                let same_length =
                    general::conv(input, &geometry, weights, &requantization, portable).is_some();
                fast.fill(0x55);
                let ran = dsp::window_conv(
                    input,
                    &geometry,
                    weights,
                    &requantization,
                    fast,
                    &mut work.0,
                )
                .unwrap_or(Backend::Portable);
                check.record(
                    "window conv",
                    shape * CASES + case,
                    same_length && portable == fast,
                    ran,
                    Backend::ArmDsp,
                );
            }
        }
        defmt::info!("window convolutions: {=u32} cases", check.cases - before);
    }

    pub fn depthwise(rng: &mut Rng, buffers: &mut Buffers, check: &mut Check) {
        let before = check.cases;
        let mut in_place_cases = 0;
        for shape in 0..SHAPES {
            let channels = [4, 8, 12, 16, 32, 3, 64][rng.below(7)];
            let side = if shape % 6 == 5 { 5 } else { 3 };
            let input = Shape::new(1 + rng.below(10), 1 + rng.below(10), channels);
            let (stride_height, stride_width) = (1 + rng.below(2), 1 + rng.below(2));
            let same = rng.next() & 1 == 0;
            let Some(geometry) = WindowGeometry::resolve(
                input,
                side,
                side,
                stride_height,
                stride_width,
                same,
                channels,
            ) else {
                continue;
            };
            let expected = if tinycnn::plan::dsp_runs_depthwise(&geometry) {
                Backend::ArmDsp
            } else {
                Backend::Portable
            };
            // Also in place where the plan may run it so (`dsp::depthwise_in_place`), a row
            // and a pixel from its input or more.
            let least_lag = tinycnn::plan::dsp_depthwise_in_place_lag(&geometry);
            let in_place = least_lag > 0;
            for case in 0..CASES {
                let quant = buffers.layer.randomize(rng, case, channels, side * side);
                let (inputs, outputs) = (geometry.input.values(), geometry.output.values());
                // In place, the output up to two pixels further than a row and a pixel.
                let region = if in_place {
                    inputs + least_lag + 2 * channels
                } else {
                    outputs
                };
                let Some(Views {
                    layer,
                    input,
                    portable,
                    fast: region,
                    work,
                    ..
                }) = buffers.views(inputs, region)
                else {
                    continue;
                };
                let (Some(portable), Some(fast)) =
                    (portable.get_mut(..outputs), region.get_mut(..outputs))
                else {
                    continue;
                };
                random_inputs(rng, input, quant.extreme_inputs);
                let Some(weights) = layer.weights.get(..side * side * channels) else {
                    continue;
                };
                let Some(requantization) = requantization(rng, layer, channels, &quant) else {
                    continue;
                };
                let same_length =
                    general::depthwise(input, &geometry, weights, &requantization, portable)
                        .is_some();
                fast.fill(0x55);
                let ran = dsp::depthwise(
                    input,
                    &geometry,
                    weights,
                    &requantization,
                    fast,
                    &mut work.0,
                )
                .unwrap_or(Backend::Portable);
                check.record(
                    "depthwise",
                    shape * CASES + case,
                    same_length && portable == fast,
                    ran,
                    expected,
                );
                if !in_place {
                    continue;
                }
                // The output before the input, and after it: a row and a pixel away exactly,
                // less than a pixel further (its quads in reverse), a pixel or more further.
                let distances = [
                    (false, 0),
                    (true, 0),
                    (true, 1 + rng.below(channels - 1)),
                    (rng.next() & 1 == 0, channels + rng.below(channels + 1)),
                ];
                for (output_after, beyond) in distances {
                    let lag = least_lag + beyond;
                    let (input_at, output_at) = if output_after { (0, lag) } else { (lag, 0) };
                    region.fill(0x55);
                    region[input_at..input_at + inputs].copy_from_slice(input);
                    let ran = dsp::depthwise_in_place(
                        region,
                        input_at,
                        output_at,
                        &geometry,
                        weights,
                        &requantization,
                        &mut work.0,
                    )
                    .unwrap_or(Backend::Portable);
                    check.record(
                        "depthwise in place",
                        shape * CASES + case,
                        same_length && *portable == region[output_at..output_at + outputs],
                        ran,
                        Backend::ArmDsp,
                    );
                    in_place_cases += 1;
                }
            }
        }
        defmt::info!(
            "depthwise convolutions: {=u32} cases, and {=u32} in place at four distances",
            check.cases - before - in_place_cases,
            in_place_cases
        );
    }

    pub fn average_pools(rng: &mut Rng, buffers: &mut Buffers, check: &mut Check) {
        let before = check.cases;
        for shape in 0..SHAPES {
            let channels = [4, 8, 64, 3, 12][rng.below(5)];
            let Some(geometry) = random_window(rng, channels, 8, channels) else {
                continue;
            };
            let expected = if channels.is_multiple_of(4) {
                Backend::ArmDsp
            } else {
                Backend::Portable
            };
            for case in 0..CASES {
                let (inputs, outputs) = (geometry.input.values(), geometry.output.values());
                let Some(Views {
                    input,
                    portable,
                    fast,
                    ..
                }) = buffers.views(inputs, outputs)
                else {
                    continue;
                };
                random_inputs(rng, input, case % 5 == 2);
                let min = rng.range(-128, 0);
                let max = rng.range(min, 127);
                let same_length =
                    general::average_pool(input, &geometry, min, max, portable).is_some();
                fast.fill(0x55);
                let ran = dsp::average_pool(input, &geometry, min, max, fast)
                    .unwrap_or(Backend::Portable);
                check.record(
                    "average pool",
                    shape * CASES + case,
                    same_length && portable == fast,
                    ran,
                    expected,
                );
            }
        }
        defmt::info!("average pools: {=u32} cases", check.cases - before);
    }

    pub fn additions(rng: &mut Rng, buffers: &mut Buffers, check: &mut Check) {
        for case in 0..SHAPES * CASES / 4 {
            let len = 1 + rng.below(600);
            let zero_point = |rng: &mut Rng| rng.range(-128, 127);
            // Every third case int8's whole range, which `SSAT` clamps to.
            let (min, max) = if case % 3 == 0 {
                (-128, 127)
            } else {
                let min = rng.range(-128, 0);
                (min, rng.range(min, 127))
            };
            // Mostly what TensorFlow's converter writes (right shifts), sometimes a
            // left shift or an unshifted output, which take the portable kernel.
            let output_shift = match case % 8 {
                0 => 0,
                1 => 1,
                _ => rng.range(-25, -1),
            };
            let params = AddParams {
                input_zero_points: [zero_point(rng), zero_point(rng)],
                input_multipliers: [rng.range(1 << 30, i32::MAX), rng.range(1 << 30, i32::MAX)],
                input_shifts: [rng.range(-8, 0), rng.range(-8, 0)],
                output_multiplier: rng.range(1 << 30, i32::MAX),
                output_shift,
                output_zero_point: zero_point(rng),
                activation_min: min,
                activation_max: max,
            };
            let expected = if output_shift <= -1 {
                Backend::ArmDsp
            } else {
                Backend::Portable
            };
            let Some(Views {
                input,
                portable,
                fast,
                work,
                ..
            }) = buffers.views(2 * len, len)
            else {
                continue;
            };
            random_inputs(rng, input, case % 5 == 2);
            let (a, b) = input.split_at(len);
            let same_length = general::add(a, b, &params, portable).is_some();
            fast.fill(0x55);
            let ran = dsp::add(a, b, &params, fast, &mut work.0).unwrap_or(Backend::Portable);
            check.record(
                "addition",
                case,
                same_length && portable == fast,
                ran,
                expected,
            );
        }
        defmt::info!("additions: {=u32} cases", SHAPES * CASES / 4);
    }
}
