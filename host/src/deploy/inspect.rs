//! `host inspect MODEL`: Keras's `model.summary()` and what the model needs of a board: a row
//! per layer (output shape, parameters, multiply-accumulates, weight bytes, and for int8 the
//! quantisation), the totals, the scratch RAM with each family of kernels and the plan of
//! that scratch (where each step reads, writes and works, which steps run in bands, where the
//! peak is), and the flash and RAM the firmware of this repository needs with it, against
//! common boards.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use tinycnn::arch::{Architecture, LayerInfo};
use tinycnn::format::Int8LayerRecord;
use tinycnn::plan::{Layout, Mode};
use tinycnn::{Flavour, Model, plan};

/// Flash the firmware (`firmware/`, release build) takes besides the model and the test
/// vectors: its code and its other constants (among them a model's pixel quantisation table,
/// 256 B, where its input needs one), for the largest of its builds (a board's, with
/// the full vector table of a core without a device crate and the RTT logger), rounded up to a
/// KiB, for a model of the tutorial's layers ([`tinycnn::plan::uses_general_kernels`] false).
/// `tests/tests/firmware.rs` fails if the QEMU build outgrows it; `firmware/README.md` lists
/// every build's figure.
pub const FIRMWARE_CODE_BYTES: usize = 68 * 1024;
/// Flash the kernels of `tinycnn::kernels::general` add to [`FIRMWARE_CODE_BYTES`] when the
/// model needs them (depthwise, strided or rectangular convolutions, pools of other windows,
/// residual blocks, softmax), rounded up to a KiB; checked by the same test.
pub const FIRMWARE_GENERAL_KERNELS_BYTES: usize = 22 * 1024;
/// Flash the Arm DSP kernels that read widened dense weights add when the firmware is built
/// with its `widen-dense` feature, besides the table itself ([`Inspection::widened_dense_bytes`]),
/// rounded up to a KiB; checked by the same test.
pub const FIRMWARE_WIDENED_KERNELS_BYTES: usize = 9 * 1024;

/// The flash the firmware takes besides the model and the test vectors for `architecture`.
pub fn firmware_code_bytes(architecture: &tinycnn::Architecture) -> usize {
    if plan::uses_general_kernels(architecture) {
        FIRMWARE_CODE_BYTES + FIRMWARE_GENERAL_KERNELS_BYTES
    } else {
        FIRMWARE_CODE_BYTES
    }
}
/// RAM the firmware uses besides the scratch: its deepest stack and its other statics, for
/// the largest of its builds (a board's, with its 1 KiB RTT buffer; the Cortex-M0's stack is
/// the deepest), rounded up. Checked by the same test.
pub const FIRMWARE_RAM_BYTES: usize = 4_352;
/// Test vectors the firmware embeds by default (`host fixture`).
pub const FIRMWARE_VECTORS: usize = super::fixture::DEFAULT_COUNT;

/// A board and the memory its part has.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Board {
    /// Name.
    pub name: &'static str,
    /// Core.
    pub core: &'static str,
    /// Whether the core has the DSP extension the fast int8 kernels use.
    pub dsp: bool,
    /// Flash bytes.
    pub flash: usize,
    /// RAM bytes.
    pub ram: usize,
}

/// Boards people own, by the memory of their part.
pub const BOARDS: [Board; 6] = [
    Board {
        name: "STM32F4-Discovery (STM32F407)",
        core: "Cortex-M4F",
        dsp: true,
        flash: 1024 << 10,
        ram: 128 << 10,
    },
    Board {
        name: "Nucleo-F446RE (STM32F446)",
        core: "Cortex-M4F",
        dsp: true,
        flash: 512 << 10,
        ram: 128 << 10,
    },
    Board {
        name: "nRF52840-DK",
        core: "Cortex-M4F",
        dsp: true,
        flash: 1024 << 10,
        ram: 256 << 10,
    },
    Board {
        name: "BBC micro:bit v2 (nRF52833)",
        core: "Cortex-M4F",
        dsp: true,
        flash: 512 << 10,
        ram: 128 << 10,
    },
    Board {
        name: "BBC micro:bit v1 (nRF51822)",
        core: "Cortex-M0",
        dsp: false,
        flash: 256 << 10,
        ram: 16 << 10,
    },
    Board {
        name: "Raspberry Pi Pico (RP2040)",
        core: "Cortex-M0+",
        dsp: false,
        flash: 2048 << 10,
        ram: 264 << 10,
    },
];

/// Quantisation of one int8 layer.
#[derive(Clone, Debug, Serialize)]
pub struct Quantisation {
    /// Output scale.
    pub output_scale: f32,
    /// Output zero point.
    pub output_zero_point: i8,
    /// Smallest and largest per-channel weight scale.
    pub weight_scales: [f32; 2],
    /// Smallest and largest requantisation shift.
    pub shifts: [i8; 2],
}

/// One row of the summary.
#[derive(Clone, Debug, Serialize)]
pub struct LayerRow {
    /// Name (`conv1`, `pool1`, ...).
    pub name: String,
    /// The layer in the text form.
    pub layer: String,
    /// Output shape, height x width x channels.
    pub output: [usize; 3],
    /// Weights and biases.
    pub parameters: usize,
    /// Multiply-accumulates per image.
    pub macs: usize,
    /// Bytes of its tensors in the file.
    pub weight_bytes: usize,
    /// For int8 models.
    pub quantisation: Option<Quantisation>,
}

/// Whether the firmware with this model fits a board.
#[derive(Clone, Debug, Serialize)]
pub struct Fit {
    /// The board.
    pub board: Board,
    /// Flash the firmware needs: code, model, test vectors.
    pub flash: usize,
    /// RAM at peak: scratch (for the board's kernels), stack and statics.
    pub ram: usize,
    /// Both fit.
    pub fits: bool,
}

/// Units `start..end` of the arena.
pub type Span = [usize; 2];

/// How a step runs in bands.
#[derive(Clone, Debug, Serialize)]
pub struct Bands {
    /// Output rows per band (the last may have fewer).
    pub rows: usize,
    /// Kernel calls.
    pub count: usize,
    /// Top band first, or bottom band first.
    pub downward: bool,
    /// The input rows are copied to the band buffer (framed by the padding), else the output
    /// rows are written there.
    pub staged: bool,
    /// The band buffer.
    pub buffer: Span,
}

/// One step of the plan.
#[derive(Clone, Debug, Serialize)]
pub struct PlanStep {
    /// The layer it runs (a fused convolution and pool: the convolution).
    pub name: String,
    /// What it reads (the main line).
    pub reads: Span,
    /// What it writes (may overlap what it reads when it runs in bands; the same place for an
    /// identity shortcut, which keeps the block's input).
    pub writes: Span,
    /// The open residual block's shortcut, which an addition reads too.
    pub shortcut: Option<Span>,
    /// Its work area (empty when it needs none).
    pub work: Span,
    /// `None`: one kernel call.
    pub bands: Option<Bands>,
    /// One kernel call whose output overwrites its own input, a row and a pixel or more away
    /// (a 3x3 stride-1 depthwise convolution with the Arm DSP kernels).
    pub in_place: bool,
    /// A dense layer of the Arm DSP kernels run without its work area, its input widened
    /// as it is read (where the work area would have set the arena's size).
    pub widened_as_read: bool,
}

/// The arena of one family of kernels, step by step ([`tinycnn::plan::layout`]).
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// "arm-dsp" (Cortex-M4/M7/M33) or "portable" (Cortex-M0/M3, desktop).
    pub kernels: &'static str,
    /// Bytes of the arena: the scratch.
    pub bytes: usize,
    /// Bytes of its band area (work areas and band buffers), at its start.
    pub band_area: usize,
    /// Bytes of its frame, where the maps lie.
    pub frame: usize,
    /// Whether it is the out-of-place layout (no smaller plan exists).
    pub out_of_place: bool,
    /// Bytes of the out-of-place layout, for comparison.
    pub out_of_place_bytes: usize,
    /// The step that needs the whole frame: the peak.
    pub frame_peak: String,
    /// The step that needs the whole band area (none without one).
    pub band_peak: Option<String>,
    /// Every step.
    pub steps: Vec<PlanStep>,
}

/// The plan of `architecture`'s arena for int8 `layout`.
pub fn plan(architecture: &Architecture, layout: Layout) -> Plan {
    let names: Vec<String> = plan::steps(architecture)
        .map(|step| step.layer.name.to_string())
        .collect();
    let mut band_peak = (0, None);
    let steps: Vec<PlanStep> = plan::placements(architecture, layout)
        .map(|(step, regions)| {
            let span = |start: usize, len: usize| [start, start + len];
            let name = step.layer.name.to_string();
            let shortcut = matches!(step.operation, plan::Operation::Add { .. })
                .then(|| span(regions.shortcut, step.output.values()));
            // The work area the step's kernels ask for in one call (0 with the portable ones).
            let work = tinycnn::plan::work_bytes(&step, layout.dsp);
            let bands = match regions.mode {
                Mode::Bands {
                    rows,
                    downward,
                    staged,
                    buffer,
                } => {
                    let used = buffer + regions.buffer_len(&step);
                    if used > band_peak.0 {
                        band_peak = (used, Some(name.clone()));
                    }
                    Some(Bands {
                        rows,
                        count: step.output.height.div_ceil(rows),
                        downward,
                        staged,
                        buffer: [buffer, used],
                    })
                }
                _ => {
                    if regions.work_len > 0 && regions.work < layout.band_area && work > band_peak.0
                    {
                        band_peak = (work, Some(name.clone()));
                    }
                    None
                }
            };
            PlanStep {
                name,
                reads: span(regions.input, step.input.values()),
                writes: span(regions.output, step.output.values()),
                shortcut,
                work: span(regions.work, regions.work_len),
                bands,
                in_place: regions.mode == Mode::InPlace,
                widened_as_read: matches!(step.operation, plan::Operation::Dense)
                    && regions.work_len < work,
            }
        })
        .collect();
    let peak = plan::frame_peak_step(architecture, &layout);
    Plan {
        kernels: if layout.dsp { "arm-dsp" } else { "portable" },
        bytes: layout.arena(),
        band_area: layout.band_area,
        frame: layout.frame,
        out_of_place: layout.out_of_place,
        out_of_place_bytes: plan::out_of_place_scratch_bytes(architecture, layout.dsp),
        frame_peak: names.get(peak).cloned().unwrap_or_default(),
        band_peak: band_peak.1,
        steps,
    }
}

/// A model's audio front end ([`tinycnn::audio::FrontEndConfig`]) and what it costs.
#[derive(Clone, Debug, Serialize)]
pub struct FrontEndSummary {
    /// Samples per second.
    pub sample_rate_hz: u32,
    /// Samples in a frame.
    pub window_samples: u16,
    /// Samples between frames.
    pub hop_samples: u16,
    /// The FFT's points.
    pub fft_size: u16,
    /// The bits of the FFT's data ([`tinycnn::audio::FftArithmetic`]): 32, or 16 for the
    /// 16-bit FFT (format version 6), about half the instructions on a Cortex-M4.
    pub fft_bits: u8,
    /// Mel bands.
    pub mel_bands: u8,
    /// Lower edge of the first band.
    pub lower_hz: u32,
    /// Upper edge of the last band.
    pub upper_hz: u32,
    /// MFCCs per frame; 0: log-mel energies instead.
    pub coefficients: u8,
    /// Added to each band's energy before the logarithm.
    pub log_floor: f32,
    /// Real value of one step of the features (the int8 input's scale).
    pub output_scale: f32,
    /// The features' zero point (the int8 input's).
    pub output_zero_point: i8,
    /// Frames per clip: the input's rows.
    pub frames: usize,
    /// Samples one clip spans: `(frames - 1) x hop + window`.
    pub clip_samples: usize,
    /// Bytes of the tables [`tinycnn::audio::FrontEnd::new`] computes.
    pub table_bytes: usize,
    /// Bytes of the work buffer.
    pub work_bytes: usize,
}

impl FrontEndSummary {
    fn of(config: &tinycnn::audio::FrontEndConfig, frames: usize) -> Self {
        let clip_samples = frames.saturating_sub(1) * usize::from(config.hop_samples)
            + usize::from(config.window_samples);
        FrontEndSummary {
            sample_rate_hz: config.sample_rate_hz,
            window_samples: config.window_samples,
            hop_samples: config.hop_samples,
            fft_size: config.fft_size,
            fft_bits: config.fft_arithmetic.bits(),
            mel_bands: config.mel_bands,
            lower_hz: config.lower_hz,
            upper_hz: config.upper_hz,
            coefficients: config.coefficients,
            log_floor: config.log_floor,
            output_scale: config.output_scale,
            output_zero_point: config.output_zero_point,
            frames,
            clip_samples,
            table_bytes: config.table_len() * 4,
            work_bytes: config.work_len() * 4,
        }
    }

    fn to_text(&self) -> String {
        let features = if self.coefficients == 0 {
            format!("{} log-mel energies", self.mel_bands)
        } else {
            format!(
                "{} MFCCs from {} mel bands",
                self.coefficients, self.mel_bands
            )
        };
        format!(
            "audio front end: {} Hz; {} frames of {features} ({}-{} Hz); window {}, hop {}, \
             FFT {} ({}-bit); {} samples ({:.3} s) per clip; log floor {:e}; features quantised with \
             scale {}, zero point {}; tables {} bytes, work {} bytes",
            self.sample_rate_hz,
            self.frames,
            self.lower_hz,
            self.upper_hz,
            self.window_samples,
            self.hop_samples,
            self.fft_size,
            self.fft_bits,
            thousands(self.clip_samples),
            self.clip_samples as f64 / f64::from(self.sample_rate_hz),
            self.log_floor,
            self.output_scale,
            self.output_zero_point,
            thousands(self.table_bytes),
            thousands(self.work_bytes),
        )
    }
}

/// What `host inspect` found.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// The file.
    pub model: String,
    /// "f32" or "int8".
    pub flavour: &'static str,
    /// Format version of the file.
    pub format_version: u16,
    /// The description in the text form.
    pub architecture: String,
    /// The classes' names, when the model names them.
    pub class_names: Vec<String>,
    /// The audio front end whose features the network reads (format version 5, or 6 for the
    /// 16-bit FFT).
    pub front_end: Option<FrontEndSummary>,
    /// One per layer.
    pub layers: Vec<LayerRow>,
    /// Parameters of the whole network.
    pub parameters: usize,
    /// Multiply-accumulates per image.
    pub macs: usize,
    /// Bytes of the model file.
    pub file_bytes: usize,
    /// Scratch bytes with the portable kernels (Cortex-M0/M3, desktop).
    pub scratch_portable: usize,
    /// Scratch bytes with the Arm DSP kernels (Cortex-M4/M7/M33); the same as the portable
    /// figure for f32.
    pub scratch_dsp: usize,
    /// For int8 models: the plan of the arena with the Arm DSP kernels and with the
    /// portable ones.
    pub plans: Vec<Plan>,
    /// Flash the firmware takes besides the model and the test vectors.
    pub firmware_code_bytes: usize,
    /// For int8 models: the firmware on each board.
    pub boards: Vec<Fit>,
    /// Flash a firmware built with its `widen-dense` feature adds for the dense weights
    /// widened to int16 (`tinycnn::widened`), read by the Arm DSP kernels; 0 without dense
    /// layers.
    pub widened_dense_bytes: usize,
}

fn quantisation(record: &Int8LayerRecord<'_>) -> Quantisation {
    let scales: Vec<f32> = record
        .weight_scales
        .as_chunks::<4>()
        .0
        .iter()
        .map(|&b| f32::from_le_bytes(b))
        .collect();
    let shifts: Vec<i8> = record.shifts.iter().map(|&s| s as i8).collect();
    Quantisation {
        output_scale: record.output.scale,
        output_zero_point: record.output.zero_point,
        weight_scales: [
            scales.iter().copied().reduce(f32::min).unwrap_or(0.0),
            scales.iter().copied().fold(0.0, f32::max),
        ],
        shifts: [
            shifts.iter().copied().min().unwrap_or(0),
            shifts.iter().copied().max().unwrap_or(0),
        ],
    }
}

fn layer_text(info: &LayerInfo, logits: bool) -> String {
    let mut text = String::new();
    let _ = tinycnn::text::write_layer(&mut text, &info.layer, logits);
    text
}

/// `host inspect`.
pub fn run(path: &Path) -> anyhow::Result<Inspection> {
    let bytes = super::read_model(path)?;
    let model = Model::from_bytes(&bytes)?;
    let architecture = *model.architecture();
    let int8_records: Vec<Int8LayerRecord<'_>> = match &model {
        Model::Int8(m) => m.layers().collect(),
        Model::F32(_) => Vec::new(),
    };
    let (weight_bytes_per_value, bias_bytes) = match model.flavour() {
        // int8 weights; bias, multiplier, weight scale (4 bytes each) and shift per output.
        Flavour::Int8 => (1, 13),
        Flavour::F32 => (4, 4),
    };
    // A classifier's logits: its last layer, or the one before a final softmax.
    let layer_count = architecture.layers().len();
    let logits = match (architecture.is_classifier(), architecture.ends_in_softmax()) {
        (false, _) => None,
        (true, true) => layer_count.checked_sub(2),
        (true, false) => layer_count.checked_sub(1),
    };
    let layers: Vec<LayerRow> = architecture
        .iter()
        .map(|info| {
            // A residual block's start shows the shortcut it keeps.
            let shown = info.shortcut().unwrap_or(info.output);
            (info, shown)
        })
        .map(|(info, shown)| LayerRow {
            name: info.name.to_string(),
            layer: layer_text(&info, Some(info.index) == logits),
            output: [shown.height, shown.width, shown.channels],
            parameters: info.parameters(),
            macs: info.macs(),
            weight_bytes: info.weights() * weight_bytes_per_value + info.outputs() * bias_bytes,
            quantisation: info
                .record
                .and_then(|index| int8_records.get(index))
                .map(quantisation),
        })
        .collect();
    let plans = match model.flavour() {
        Flavour::Int8 => [true, false]
            .map(|dsp| plan(&architecture, plan::layout(&architecture, dsp)))
            .to_vec(),
        Flavour::F32 => Vec::new(),
    };
    let (scratch_portable, scratch_dsp) = match model.flavour() {
        Flavour::Int8 => (
            plan::int8_scratch_bytes_for(&architecture, false),
            plan::int8_scratch_bytes_for(&architecture, true),
        ),
        Flavour::F32 => {
            let bytes = plan::f32_scratch_len(&architecture) * 4;
            (bytes, bytes)
        }
    };
    let vectors =
        28 + FIRMWARE_VECTORS * (2 + architecture.input().values() + architecture.classes());
    let boards = if model.flavour() == Flavour::Int8 {
        BOARDS
            .iter()
            .map(|&board| {
                let flash = firmware_code_bytes(&architecture) + bytes.len() + vectors;
                let scratch = if board.dsp {
                    scratch_dsp
                } else {
                    scratch_portable
                };
                let ram = scratch + FIRMWARE_RAM_BYTES;
                Fit {
                    board,
                    flash,
                    ram,
                    fits: flash <= board.flash && ram <= board.ram,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Inspection {
        model: path.display().to_string(),
        flavour: model.flavour().name(),
        format_version: model.header().version,
        architecture: architecture.to_string(),
        class_names: super::model_class_names(&model),
        front_end: model
            .front_end()
            .map(|config| FrontEndSummary::of(&config, architecture.input().height)),
        parameters: architecture.parameters(),
        macs: architecture.macs(),
        layers,
        file_bytes: bytes.len(),
        scratch_portable,
        scratch_dsp,
        plans,
        firmware_code_bytes: firmware_code_bytes(&architecture),
        widened_dense_bytes: match model.flavour() {
            Flavour::Int8 => tinycnn::widened::table_bytes_of(&architecture),
            Flavour::F32 => 0,
        },
        boards,
    })
}

fn thousands(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

impl Inspection {
    /// The summary as a table.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} model, format version {}, {} bytes",
            self.model,
            self.flavour,
            self.format_version,
            thousands(self.file_bytes)
        );
        let _ = writeln!(out, "{}", self.architecture);
        if !self.class_names.is_empty() {
            let _ = writeln!(out, "classes: {}", self.class_names.join(", "));
        }
        if let Some(front_end) = &self.front_end {
            let _ = writeln!(out, "{}", front_end.to_text());
        }
        let _ = writeln!(out);
        let int8 = self.flavour == "int8";
        let _ = write!(
            out,
            "{:<9} {:<20} {:>13} {:>11} {:>12} {:>12}",
            "layer", "", "output", "parameters", "MACs", "bytes"
        );
        if int8 {
            let _ = write!(
                out,
                "  {:<22} {:<21} shifts",
                "output scale, zero pt", "weight scales"
            );
        }
        let _ = writeln!(out);
        for row in &self.layers {
            let [h, w, c] = row.output;
            let _ = write!(
                out,
                "{:<9} {:<20} {:>13} {:>11} {:>12} {:>12}",
                row.name,
                row.layer,
                format!("{h}x{w}x{c}"),
                thousands(row.parameters),
                thousands(row.macs),
                thousands(row.weight_bytes)
            );
            if let Some(q) = &row.quantisation {
                // Additions and softmax have no weights: their record holds multipliers only.
                let weight_scales = if q.weight_scales[1] > 0.0 {
                    format!("{:.2e}..{:.2e}", q.weight_scales[0], q.weight_scales[1])
                } else {
                    "-".to_string()
                };
                let _ = write!(
                    out,
                    "  {:<22} {:<21} {}..{}",
                    format!("{:.5}, {}", q.output_scale, q.output_zero_point),
                    weight_scales,
                    q.shifts[0],
                    q.shifts[1]
                );
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(
            out,
            "{:<9} {:<20} {:>13} {:>11} {:>12}",
            "total",
            "",
            "",
            thousands(self.parameters),
            thousands(self.macs)
        );
        if self.scratch_dsp == self.scratch_portable {
            let _ = writeln!(out, "\nscratch RAM: {} B", thousands(self.scratch_portable));
        } else {
            let _ = writeln!(
                out,
                "\nscratch RAM: {} B with the Arm DSP kernels (Cortex-M4/M7/M33), {} B with the \
                 portable ones (Cortex-M0/M3, desktop)",
                thousands(self.scratch_dsp),
                thousands(self.scratch_portable)
            );
        }
        for plan in &self.plans {
            plan.write(&mut out);
        }
        if !self.boards.is_empty() {
            if !self.plans.is_empty() {
                let _ = writeln!(out);
            }
            let _ = writeln!(
                out,
                "the firmware with this model: flash = code and constants {} + model {} + {} test \
                 vectors; RAM \
                 at peak = scratch + {} (stack and statics, the most any firmware build needs)",
                thousands(self.firmware_code_bytes),
                thousands(self.file_bytes),
                FIRMWARE_VECTORS,
                thousands(FIRMWARE_RAM_BYTES)
            );
            for fit in &self.boards {
                let _ = writeln!(
                    out,
                    "  {:<30} {:<11} flash {:>9} of {:>9}, RAM {:>7} of {:>7}: {}",
                    fit.board.name,
                    fit.board.core,
                    thousands(fit.flash),
                    thousands(fit.board.flash),
                    thousands(fit.ram),
                    thousands(fit.board.ram),
                    if fit.fits { "fits" } else { "does not fit" }
                );
            }
            if self.widened_dense_bytes > 0 {
                let _ = writeln!(
                    out,
                    "  with the firmware's `widen-dense` feature (Cortex-M4, M7, M33): {} B more \
                     flash, the dense weights widened to int16 ({}) and the kernels that read \
                     them ({}), for fewer instructions and cycles per dense layer",
                    thousands(self.widened_dense_bytes + FIRMWARE_WIDENED_KERNELS_BYTES),
                    thousands(self.widened_dense_bytes),
                    thousands(FIRMWARE_WIDENED_KERNELS_BYTES)
                );
            }
        }
        out
    }
}

fn range(span: Span) -> String {
    if span[0] == span[1] {
        "-".into()
    } else {
        format!("{}..{}", thousands(span[0]), thousands(span[1]))
    }
}

impl Plan {
    /// The plan as a table.
    fn write(&self, out: &mut String) {
        let kernels = if self.kernels == "arm-dsp" {
            "the Arm DSP kernels"
        } else {
            "the portable kernels"
        };
        let _ = write!(
            out,
            "\nscratch plan with {kernels}: {} B",
            thousands(self.bytes)
        );
        if self.out_of_place {
            let _ = writeln!(
                out,
                ", out of place (a shortcut area, then each step's input and output apart)"
            );
        } else {
            let _ = writeln!(
                out,
                " = band area {} + frame {} (out of place: {} B); peak: the frame at {}{}",
                thousands(self.band_area),
                thousands(self.frame),
                thousands(self.out_of_place_bytes),
                self.frame_peak,
                match &self.band_peak {
                    Some(step) => format!(", the band area at {step}"),
                    None => String::new(),
                }
            );
        }
        let _ = writeln!(
            out,
            "  {:<9} {:>15} {:>15} {:>15}  bands",
            "step", "reads", "writes", "work"
        );
        for step in &self.steps {
            let bands = match &step.bands {
                Some(bands) => format!(
                    "{} band{} of {} row{}, {}, {} {}",
                    bands.count,
                    if bands.count == 1 { "" } else { "s" },
                    bands.rows,
                    if bands.rows == 1 { "" } else { "s" },
                    if bands.downward {
                        "top first"
                    } else {
                        "bottom first"
                    },
                    if bands.staged {
                        "input copied to"
                    } else {
                        "output through"
                    },
                    range(bands.buffer)
                ),
                None if step.in_place => "one call, in place".into(),
                None if step.widened_as_read => "one call, input widened as read".into(),
                None => "one call".into(),
            };
            let shortcut = match step.shortcut {
                Some(span) => format!(" (and the shortcut {})", range(span)),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "  {:<9} {:>15} {:>15} {:>15}  {bands}{shortcut}",
                step.name,
                range(step.reads),
                range(step.writes),
                range(step.work),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separates_groups() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(29_658_432), "29,658,432");
    }
}
