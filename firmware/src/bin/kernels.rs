//! Proves on the device that the Arm DSP kernels compute exactly what the
//! portable (reference) kernels compute: both run on random values for a set
//! of shapes (random zero points, multipliers and shifts including their
//! extremes, ReLU on and off), then both run the whole shipped network on
//! every test vector, layer by layer. Exits 0 only if every output is
//! bit-identical and the DSP kernels actually ran where they should;
//! otherwise 2. Also reports instructions per inference and per layer for
//! both backends.

#![no_std]
#![no_main]

use tinycnn::arch::{Layer, Tensor};
use tinycnn::kernels::dsp;
use tinycnn::kernels::int8::{self, Backend, ConvLayer, DenseLayer, Requantization};
use tinycnn_firmware::{self as firmware, ExitCode, profile};

/// Largest weight tensor of a test layer.
const MAX_WEIGHTS: usize = 28 * 1024;
/// Most output channels of a test layer.
const MAX_OUTPUTS: usize = 128;
/// Bytes of the work buffer, more than any test layer needs.
const WORK_BYTES: usize = 10 * 1024;
/// Random cases per shape (two of each regime of `LayerBuffers::randomize`).
const CASES: u32 = 10;

#[cortex_m_rt::entry]
fn main() -> ! {
    let board = firmware::init();
    let Some(buffers) = cortex_m::singleton!(: Buffers = Buffers::new()) else {
        defmt::panic!("buffers taken twice")
    };
    let mut check = Check::default();
    let mut rng = Rng(0x2545_f491);

    // Shapes: the network's own (conv1 exactly; conv2/conv3/dense1 with
    // fewer outputs to fit the buffers), odd sizes (7 -> 3 pooling), channel
    // counts that exercise every loop remainder (groups of 4 inputs: 9 = 8 + 1,
    // 18 = 16 + 2, 36 = 32 + 4; chunks of 32 outputs + 1), and shapes the DSP
    // kernels hand to the portable ones (3 input channels, 6 dense inputs).
    conv::<28, 28, 1, 64, 14, 14>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    conv::<5, 7, 1, 3, 2, 3>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    conv::<14, 14, 64, 40, 7, 7>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    conv::<7, 7, 128, 20, 3, 3>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    conv::<8, 8, 32, 33, 4, 4>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    conv::<6, 5, 4, 7, 3, 2>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    conv::<3, 3, 8, 2, 1, 1>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    conv::<9, 9, 16, 64, 4, 4>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    conv::<2, 2, 12, 1, 1, 1>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    conv::<4, 4, 3, 5, 2, 2>(&mut rng, buffers, &mut check, Backend::Portable);
    dense::<2304, 12>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    dense::<128, 64>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    dense::<64, 32>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    dense::<32, 10>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    dense::<36, 7>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    dense::<4, 1>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    dense::<20, 3>(&mut rng, buffers, &mut check, Backend::ArmDsp);
    dense::<6, 4>(&mut rng, buffers, &mut check, Backend::Portable);
    work_edge_cases(&mut rng, buffers, &mut check);
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

/// Storage for one random layer and the DSP work area (a static: too large
/// for the stack).
struct Buffers {
    layer: LayerBuffers,
    work: Work,
}

impl Buffers {
    const fn new() -> Self {
        Buffers {
            layer: LayerBuffers::new(),
            work: Work([0; WORK_BYTES]),
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
        let regime = case % 5;
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
            relu: regime == 3 || rng.next() & 1 == 0,
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
            quant.relu,
        )
    }

    fn conv<const IC: usize, const OC: usize>(
        &self,
        quant: &Quant,
    ) -> Option<ConvLayer<'_, IC, OC>> {
        ConvLayer::new(
            self.weights.get(..OC * 9 * IC)?,
            self.requantization(OC, quant)?,
        )
    }

    fn dense<const IN: usize, const OUT: usize>(
        &self,
        quant: &Quant,
    ) -> Option<DenseLayer<'_, IN, OUT>> {
        DenseLayer::new(
            self.weights.get(..OUT * IN)?,
            self.requantization(OUT, quant)?,
        )
    }
}

/// The zero points and activation of a random layer.
#[derive(Debug, Clone, Copy)]
struct Quant {
    input_zero_point: i8,
    output_zero_point: i8,
    relu: bool,
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

fn conv<
    const H: usize,
    const W: usize,
    const IC: usize,
    const OC: usize,
    const PH: usize,
    const PW: usize,
>(
    rng: &mut Rng,
    buffers: &mut Buffers,
    check: &mut Check,
    expected: Backend,
) {
    let mut input: Tensor<i8, H, W, IC> = [[[0; IC]; W]; H];
    let mut portable: Tensor<i8, PH, PW, OC> = [[[0; OC]; PW]; PH];
    let mut fast: Tensor<i8, PH, PW, OC> = [[[0; OC]; PW]; PH];
    for case in 0..CASES {
        let quant = buffers.layer.randomize(rng, case, OC, 9 * IC);
        random_inputs(
            rng,
            input.as_flattened_mut().as_flattened_mut(),
            quant.extreme_inputs,
        );
        let Some(layer) = buffers.layer.conv::<IC, OC>(&quant) else {
            defmt::panic!("conv {}x{}x{} -> {}: test buffers too small", H, W, IC, OC);
        };
        int8::conv3x3_relu_maxpool2(&input, &layer, &mut portable);
        fast.as_flattened_mut().as_flattened_mut().fill(0x55);
        let ran = dsp::conv3x3_relu_maxpool2(&input, &layer, &mut fast, &mut buffers.work.0);
        check.record("conv", case, portable == fast, ran, expected);
    }
    defmt::info!(
        "conv {=usize}x{=usize}x{=usize} -> {=usize}: {=u32} cases checked",
        H,
        W,
        IC,
        OC,
        CASES
    );
}

fn dense<const IN: usize, const OUT: usize>(
    rng: &mut Rng,
    buffers: &mut Buffers,
    check: &mut Check,
    expected: Backend,
) {
    let mut input = [0i8; IN];
    let mut portable = [0i8; OUT];
    let mut fast = [0i8; OUT];
    for case in 0..CASES {
        let quant = buffers.layer.randomize(rng, case, OUT, IN);
        random_inputs(rng, &mut input, quant.extreme_inputs);
        let Some(layer) = buffers.layer.dense::<IN, OUT>(&quant) else {
            defmt::panic!("dense {} -> {}: test buffers too small", IN, OUT);
        };
        int8::dense_vector(&input, &layer, &mut portable);
        fast.fill(0x55);
        let ran = dsp::dense_vector(&input, &layer, &mut fast, &mut buffers.work.0);
        check.record("dense", case, portable == fast, ran, expected);
    }
    defmt::info!(
        "dense {=usize} -> {=usize}: {=u32} cases checked",
        IN,
        OUT,
        CASES
    );
}

/// A work area off a 4-byte boundary still works (the kernels use its aligned
/// part); one too small makes them run the portable kernels.
fn work_edge_cases(rng: &mut Rng, buffers: &mut Buffers, check: &mut Check) {
    const IN: usize = 64;
    const OUT: usize = 8;
    let mut input = [0i8; IN];
    let mut portable = [0i8; OUT];
    let mut fast = [0i8; OUT];
    let needed = dsp::dense_work_bytes(IN);
    for (case, (offset, length, expected)) in [
        (1, needed + 3, Backend::ArmDsp),
        (3, needed + 1, Backend::ArmDsp),
        (0, needed - 1, Backend::Portable),
        (2, needed + 1, Backend::Portable),
    ]
    .into_iter()
    .enumerate()
    {
        let quant = buffers.layer.randomize(rng, 0, OUT, IN);
        random_inputs(rng, &mut input, false);
        let layer = buffers.layer.dense::<IN, OUT>(&quant);
        let (Some(layer), Some(area)) = (layer, buffers.work.0.get_mut(offset..offset + length))
        else {
            defmt::panic!("work edge case {}: test buffers too small", case);
        };
        int8::dense_vector(&input, &layer, &mut portable);
        fast.fill(0x55);
        let ran = dsp::dense_vector(&input, &layer, &mut fast, area);
        check.record("work area", case as u32, portable == fast, ran, expected);
    }
}

/// The whole network, portable then DSP, on every test vector: each layer's
/// output must hash the same, and the logits must equal the host's.
fn network(board: &firmware::Board, check: &mut Check) {
    let model = firmware::load_model();
    let vectors = firmware::load_test_vectors();
    let scratch = firmware::scratch();
    let mut totals = [profile::Totals::default(), profile::Totals::default()];
    let backends = [Backend::Portable, Backend::ArmDsp];
    let mut differing_layers = [0u32; Layer::ALL.len()];
    for (index, vector) in vectors.iter().enumerate() {
        let mut hashes = [[0u32; Layer::ALL.len()]; 2];
        let mut logits = [[0i8; 10]; 2];
        for ((backend, totals), (hashes, logits)) in backends
            .iter()
            .zip(&mut totals)
            .zip(hashes.iter_mut().zip(&mut logits))
        {
            let (prediction, counts) = profile::classify(
                &model,
                *backend,
                vector.image,
                scratch,
                &board.counter,
                |layer, output| {
                    if let Some(hash) = hashes.get_mut(layer as usize) {
                        *hash = fnv1a(output);
                    }
                },
            );
            totals.add(&counts);
            *logits = prediction.logits;
        }
        let [portable, fast] = hashes;
        for ((layer, differing), (a, b)) in Layer::ALL
            .iter()
            .zip(&mut differing_layers)
            .zip(portable.iter().zip(&fast))
        {
            if a != b {
                *differing += 1;
                defmt::error!("digit {=usize}: {=str} output differs", index, layer.name());
            }
        }
        let same = portable == fast && logits[0] == logits[1];
        check.record(
            "network",
            index as u32,
            same,
            Backend::ArmDsp,
            Backend::ArmDsp,
        );
        if logits[0] != vector.logits {
            check.mismatches += 1;
            defmt::error!(
                "digit {=usize}: portable logits differ from the host's",
                index
            );
        }
    }
    defmt::info!(
        "network: {=usize} digits through both backends, layer outputs differing per layer: {}",
        vectors.len(),
        differing_layers
    );
    for (backend, totals) in backends.iter().zip(&totals) {
        totals.log(*backend);
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

    /// Uniform in `low..=high` (slightly biased, which does not matter here).
    fn range(&mut self, low: i32, high: i32) -> i32 {
        let span = (i64::from(high) - i64::from(low) + 1) as u64;
        (i64::from(low)
            + (u64::from(self.next()) << 32 | u64::from(self.next())).rem_euclid(span) as i64)
            as i32
    }
}
