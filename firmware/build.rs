//! Picks the machine the firmware is built for, writes its `memory.x` and its
//! description (`machine.rs`, included by `src/machine.rs`) into `OUT_DIR`,
//! and copies the int8 model and its test vectors there, where the library
//! embeds them.
//!
//! The machine is the one machine feature enabled (`netduinoplus2` when none
//! is named: the default feature). [`MACHINES`] is the only place where a
//! machine's memory layout, core and counter are written down.
//!
//! The embedded files:
//! - the model: `TINYCNN_MODEL` if set, else the machine's default, the
//!   shipped reference model `data/model-int8.tcnn`, or the small network
//!   `data/small/model-int8.tcnn` on parts too small for the reference one;
//! - its test vectors: `TINYCNN_VECTORS` if set, else the model's path with
//!   the extension `.tctv` (what `host fixture` writes by default).
//!
//! Relative paths are taken from the `firmware/` directory. The model's
//! header and description are read while compiling (its scratch size is a
//! `const`), so a file that is not an int8 model stops the build there; its
//! tensors and checksum are checked when the firmware starts.
//!
//! For a model with an audio front end (model file version 5), the sizes of
//! that front end's tables and work area (`front_end.rs`, for the `keyword`
//! binary's statics). And a clip for the `frontend` binary: `TINYCNN_CLIP`, else
//! `data/audio/yes.wav` (16 kHz, 16-bit mono WAV), as its samples and the
//! features the core computes for them here, on the build machine.
//!
//! For a model whose input quantisation does more than flip a pixel's top bit, its pixel
//! quantisation table (`pixels.bin`, 256 bytes), which inferences then read from flash.
//!
//! With the `widen-dense` feature (DSP machines only), the model's dense weights widened to
//! int16 too (`widened.bin`, `tinycnn::widened`): twice their bytes of flash for about half
//! the instructions of a dense layer.
//!
//! With the `corrupt-model` feature one byte in the middle of the model is
//! flipped on the way, so CI can check that a damaged blob is reported and
//! fails the run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs, process};

const REFERENCE_MODEL: &str = "../data/model-int8.tcnn";
const SMALL_MODEL: &str = "../data/small/model-int8.tcnn";
/// The `frontend` binary's clip (`TINYCNN_CLIP` overrides it).
const CLIP: &str = "../data/audio/yes.wav";

/// How a machine counts instructions or cycles (`src/counter.rs`).
#[derive(Clone, Copy)]
enum CounterKind {
    /// STM32 TIM2, which QEMU clocks at 1 GHz: one count per instruction
    /// under `-icount shift=0`.
    Tim2,
    /// The SysTick on the core clock, extended past 24 bits by its
    /// interrupt. Under QEMU each tick is `ns_per_tick` instructions (the
    /// core clock's period in ns, as a fraction `numerator >> shift`); on a
    /// board each tick is a cycle.
    SysTick {
        ns_per_tick: u32,
        shift: u32,
        clock: &'static str,
    },
    /// The DWT cycle counter of a real M3/M4/M7/M33.
    Dwt,
}

struct Machine {
    /// The cargo feature that selects it.
    feature: &'static str,
    /// For logs and the README.
    name: &'static str,
    core: &'static str,
    /// The target triple it must be built for.
    target: &'static str,
    /// `Some(machine)`: QEMU's `-machine`; `None`: a real board (defmt over RTT).
    qemu: Option<&'static str>,
    /// Where code and constants go, and how much there is.
    flash: (u32, u32),
    /// Where RAM starts, and how much there is.
    ram: (u32, u32),
    /// Memory ahead of `FLASH` that the boot ROM reads (RP2040's second-stage
    /// boot loader), placed by an extra section.
    boot_stage: Option<(u32, u32)>,
    counter: CounterKind,
    /// The model embedded unless `TINYCNN_MODEL` says otherwise.
    default_model: &'static str,
    /// Whether the core has the DSP extension (and the core's DSP kernels run).
    dsp: bool,
}

const KIB: u32 = 1024;
const MIB: u32 = 1024 * 1024;

/// QEMU's MPS2 FPGA images clock the core (and its SysTick) at 25 MHz.
const MPS2_SYSTICK: CounterKind = CounterKind::SysTick {
    ns_per_tick: 40,
    shift: 0,
    clock: "25 MHz",
};

const MACHINES: &[Machine] = &[
    Machine {
        feature: "netduinoplus2",
        name: "QEMU netduinoplus2 (STM32F405)",
        core: "Cortex-M4F",
        target: "thumbv7em-none-eabihf",
        qemu: Some("netduinoplus2"),
        // The STM32F405/407's 1 MiB of flash and 128 KiB of contiguous SRAM
        // (SRAM1 + SRAM2; the 64 KiB CCM is left out). QEMU gives more RAM;
        // the chip's sizes make the linker refuse what would not fit it.
        flash: (0x0800_0000, MIB),
        ram: (0x2000_0000, 128 * KIB),
        boot_stage: None,
        counter: CounterKind::Tim2,
        default_model: REFERENCE_MODEL,
        dsp: true,
    },
    Machine {
        feature: "mps2-an385",
        name: "QEMU mps2-an385",
        core: "Cortex-M3",
        target: "thumbv7m-none-eabi",
        qemu: Some("mps2-an385"),
        // The FPGA image's 4 MiB ZBT SSRAM1 holds the code, SSRAM2/3 the data.
        flash: (0x0000_0000, 4 * MIB),
        ram: (0x2000_0000, 4 * MIB),
        boot_stage: None,
        counter: MPS2_SYSTICK,
        default_model: REFERENCE_MODEL,
        dsp: false,
    },
    Machine {
        feature: "mps2-an386",
        name: "QEMU mps2-an386",
        core: "Cortex-M4",
        target: "thumbv7em-none-eabihf",
        qemu: Some("mps2-an386"),
        flash: (0x0000_0000, 4 * MIB),
        ram: (0x2000_0000, 4 * MIB),
        boot_stage: None,
        counter: MPS2_SYSTICK,
        default_model: REFERENCE_MODEL,
        dsp: true,
    },
    Machine {
        feature: "mps2-an500",
        name: "QEMU mps2-an500",
        core: "Cortex-M7",
        target: "thumbv7em-none-eabihf",
        qemu: Some("mps2-an500"),
        flash: (0x0000_0000, 4 * MIB),
        ram: (0x2000_0000, 4 * MIB),
        boot_stage: None,
        counter: MPS2_SYSTICK,
        default_model: REFERENCE_MODEL,
        dsp: true,
    },
    Machine {
        feature: "mps2-an505",
        name: "QEMU mps2-an505",
        core: "Cortex-M33",
        target: "thumbv8m.main-none-eabihf",
        qemu: Some("mps2-an505"),
        // The core boots in the secure state: the secure aliases of SSRAM1
        // (code, 4 MiB) and SSRAM2 (data, 2 MiB).
        flash: (0x1000_0000, 4 * MIB),
        ram: (0x3800_0000, 2 * MIB),
        boot_stage: None,
        // The AN505 image clocks the core at 20 MHz.
        counter: CounterKind::SysTick {
            ns_per_tick: 50,
            shift: 0,
            clock: "20 MHz",
        },
        default_model: REFERENCE_MODEL,
        dsp: true,
    },
    Machine {
        feature: "microbit",
        name: "QEMU microbit (nRF51822)",
        core: "Cortex-M0",
        target: "thumbv6m-none-eabi",
        qemu: Some("microbit"),
        // The nRF51822 of the micro:bit v1: 256 KiB of flash, 16 KiB of RAM.
        flash: (0x0000_0000, 256 * KIB),
        ram: (0x2000_0000, 16 * KIB),
        boot_stage: None,
        // 16 MHz: 62.5 ns per tick.
        counter: CounterKind::SysTick {
            ns_per_tick: 125,
            shift: 1,
            clock: "16 MHz",
        },
        default_model: SMALL_MODEL,
        dsp: false,
    },
    Machine {
        feature: "stm32f4-discovery",
        name: "STM32F4-Discovery (STM32F407VG)",
        core: "Cortex-M4F",
        target: "thumbv7em-none-eabihf",
        qemu: None,
        flash: (0x0800_0000, MIB),
        ram: (0x2000_0000, 128 * KIB),
        boot_stage: None,
        counter: CounterKind::Dwt,
        default_model: REFERENCE_MODEL,
        dsp: true,
    },
    Machine {
        feature: "nucleo-f446re",
        name: "Nucleo-F446RE (STM32F446RE)",
        core: "Cortex-M4F",
        target: "thumbv7em-none-eabihf",
        qemu: None,
        // 512 KiB of flash: the reference model (684 KB) does not fit.
        flash: (0x0800_0000, 512 * KIB),
        ram: (0x2000_0000, 128 * KIB),
        boot_stage: None,
        counter: CounterKind::Dwt,
        default_model: SMALL_MODEL,
        dsp: true,
    },
    Machine {
        feature: "nrf52840-dk",
        name: "nRF52840-DK (nRF52840)",
        core: "Cortex-M4F",
        target: "thumbv7em-none-eabihf",
        qemu: None,
        flash: (0x0000_0000, MIB),
        ram: (0x2000_0000, 256 * KIB),
        boot_stage: None,
        counter: CounterKind::Dwt,
        default_model: REFERENCE_MODEL,
        dsp: true,
    },
    Machine {
        feature: "rpi-pico",
        name: "Raspberry Pi Pico (RP2040)",
        core: "Cortex-M0+",
        target: "thumbv6m-none-eabi",
        qemu: None,
        // 2 MiB of QSPI flash, executed in place after the boot ROM has run
        // the 256-byte second stage at its start; 264 KiB of SRAM (the four
        // striped banks and the two 4 KiB ones above them, contiguous).
        flash: (0x1000_0100, 2 * MIB - 0x100),
        ram: (0x2000_0000, 264 * KIB),
        boot_stage: Some((0x1000_0000, 0x100)),
        counter: CounterKind::SysTick {
            ns_per_tick: 1,
            shift: 0,
            clock: "the core clock",
        },
        default_model: REFERENCE_MODEL,
        dsp: false,
    },
];

fn main() {
    if let Err(message) = run() {
        eprintln!("build.rs: {message}");
        process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let out_dir = env::var_os("OUT_DIR").ok_or("OUT_DIR is not set (not run by cargo?)")?;
    let out_dir = Path::new(&out_dir);
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TINYCNN_MODEL");
    println!("cargo:rerun-if-env-changed=TINYCNN_VECTORS");
    println!("cargo::rustc-check-cfg=cfg(counter, values(\"tim2\", \"systick\", \"dwt\"))");

    let machine = selected_machine()?;
    let target = env::var("TARGET").unwrap_or_default();
    if target != machine.target {
        return Err(format!(
            "{} ({}) is built for {}, not {target}: use its cargo alias \
             (`cargo {}`, see firmware/README.md) or --target {}",
            machine.feature, machine.name, machine.target, machine.feature, machine.target
        ));
    }
    if env::var_os("CARGO_FEATURE_DSP").is_some() != machine.dsp {
        return Err(format!(
            "the `dsp` feature is for the machines whose core has the DSP extension; {} ({}) {}",
            machine.feature,
            machine.core,
            if machine.dsp { "has it" } else { "has not" }
        ));
    }
    write(&out_dir.join("memory.x"), memory_x(machine).as_bytes())?;
    write(&out_dir.join("machine.rs"), machine_rs(machine).as_bytes())?;
    println!("cargo:rustc-link-search={}", out_dir.display());
    let counter = match machine.counter {
        CounterKind::Tim2 => "tim2",
        CounterKind::SysTick { .. } => "systick",
        CounterKind::Dwt => "dwt",
    };
    println!("cargo:rustc-cfg=counter=\"{counter}\"");

    let model_path = env::var_os("TINYCNN_MODEL")
        .map_or_else(|| PathBuf::from(machine.default_model), PathBuf::from);
    let vectors_path = env::var_os("TINYCNN_VECTORS")
        .map_or_else(|| model_path.with_extension("tctv"), PathBuf::from);
    // Also reruns when a missing file appears.
    println!("cargo:rerun-if-changed={}", model_path.display());
    println!("cargo:rerun-if-changed={}", vectors_path.display());

    let mut model = read(
        &model_path,
        "the model: write it with `host train` or `host export`",
    )?;
    if env::var_os("CARGO_FEATURE_CORRUPT_MODEL").is_some() {
        // A byte in the middle of the weights: only the checksum can notice.
        let middle = model.len() / 2;
        if let Some(byte) = model.get_mut(middle) {
            *byte ^= 0x10;
        }
    }
    write(&out_dir.join("model.tcnn"), &model)?;
    write(
        &out_dir.join("widened.bin"),
        &widened_dense(&model, machine)?,
    )?;
    write(&out_dir.join("pixels.bin"), &pixel_table(&model))?;
    let vectors = read(
        &vectors_path,
        "its test vectors: write them with `host fixture --model MODEL` (or set TINYCNN_VECTORS)",
    )?;
    write(&out_dir.join("vectors.tctv"), &vectors)?;
    write(
        &out_dir.join("front_end.rs"),
        front_end_rs(&model).as_bytes(),
    )?;
    write(
        &out_dir.join("clip_features.bin"),
        &clip_features(&model, &vectors),
    )?;
    clip(out_dir)
}

/// The model's pixel quantisation table (`Int8Model::pixel_quantization`), for a model whose
/// input quantisation does more than flip a pixel's top bit; else nothing. It saves each
/// inference working it out; a model that does not load gets none.
fn pixel_table(model: &[u8]) -> Vec<u8> {
    tinycnn::Int8Model::from_bytes(model)
        .ok()
        .and_then(|model| model.pixel_quantization())
        .map_or_else(Vec::new, Vec::from)
}

/// The model's dense weights widened to int16 (`tinycnn::widened`) with the `widen-dense`
/// feature, else nothing. A model that does not load gets no table: the firmware then reports
/// what is wrong with it.
fn widened_dense(model: &[u8], machine: &Machine) -> Result<Vec<u8>, String> {
    if env::var_os("CARGO_FEATURE_WIDEN_DENSE").is_none() {
        return Ok(Vec::new());
    }
    if !machine.dsp {
        return Err(format!(
            "the `widen-dense` feature is for the machines whose core has the DSP extension, \
             whose kernels read the widened weights; {} ({}) has not",
            machine.feature, machine.core
        ));
    }
    let Ok(parsed) = tinycnn::Int8Model::from_bytes(model) else {
        return Ok(Vec::new());
    };
    let mut table = vec![0; tinycnn::widened::table_bytes_of(parsed.architecture())];
    tinycnn::widened::widen_dense(&parsed, &mut table)
        .map_err(|error| format!("widening the dense weights: {error}"))?;
    Ok(table)
}

/// The sizes the `keyword` binary's statics need for the model's audio front
/// end (`front_end.rs`), so that its RAM is known when it is linked: zero
/// for a model without one (the binary then says so and stops).
fn front_end_rs(model: &[u8]) -> String {
    let parsed = tinycnn::format::Model::from_bytes(model).ok();
    let config = parsed.as_ref().and_then(|model| model.front_end());
    let (tables, work, window, hop) = config.map_or((0, 0, 0, 0), |config| {
        (
            config.table_len(),
            config.work_len(),
            usize::from(config.window_samples),
            usize::from(config.hop_samples),
        )
    });
    // The tables themselves, for flash: the device checks them against the
    // model's configuration as it starts.
    let mut table_words = vec![0i32; tables];
    if let Some(config) = config
        && tinycnn::audio::FrontEnd::new(&config, &mut table_words).is_err()
    {
        table_words.clear();
    }
    let table_list: Vec<String> = table_words.iter().map(|w| w.to_string()).collect();
    let tables = table_words.len();
    let table_list = table_list.join(", ");
    let input = match (&parsed, config) {
        (Some(model), Some(_)) => {
            let shape = model.architecture().input();
            shape.height * shape.width * shape.channels
        }
        _ => 0,
    };
    format!(
        "/// `i32` words of the front end's tables (`FrontEndConfig::table_len`).\n\
         pub const TABLE_WORDS: usize = {tables};\n\
         /// The tables, as `FrontEnd::new` computes them on the build machine.\n\
         pub static TABLES: [i32; TABLE_WORDS] = [{table_list}];\n\
         /// `i32` words of its work area (`FrontEndConfig::work_len`).\n\
         pub const WORK_WORDS: usize = {work};\n\
         /// Samples in one frame.\n\
         pub const WINDOW_SAMPLES: usize = {window};\n\
         /// Samples between frames: one hop of the microphone's stream.\n\
         pub const HOP_SAMPLES: usize = {hop};\n\
         /// Features in the network's input: the last second of rows.\n\
         pub const INPUT_FEATURES: usize = {input};\n"
    )
}

/// For a model with an audio front end and test vectors of clips: each
/// clip's features as this machine's core computes them, clip after clip,
/// which the `keyword` binary checks row by row; empty otherwise.
fn clip_features(model: &[u8], vectors: &[u8]) -> Vec<u8> {
    let Ok(parsed) = tinycnn::format::Model::from_bytes(model) else {
        return Vec::new();
    };
    let (Some(config), Ok(vectors)) = (
        parsed.front_end(),
        tinycnn::testvec::TestVectors::from_bytes(vectors),
    ) else {
        return Vec::new();
    };
    if !vectors.holds_clips() {
        return Vec::new();
    }
    let mut tables = vec![0; config.table_len()];
    let mut work = vec![0; config.work_len()];
    let Ok(front_end) = tinycnn::audio::FrontEnd::new(&config, &mut tables) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for vector in vectors.iter() {
        let samples: Vec<i16> = vector.samples().collect();
        let mut features = vec![0i8; config.clip_features_len(samples.len())];
        if front_end
            .clip_features(&samples, &mut features, &mut work)
            .is_err()
        {
            return Vec::new();
        }
        out.extend(features.iter().map(|&f| f as u8));
    }
    if env::var_os("CARGO_FEATURE_WRONG_EXPECTED").is_some() {
        // One feature of the third clip's tenth frame: the device must notice.
        let per_clip = out.len() / vectors.len().max(1);
        if let Some(feature) = out.get_mut(2 * per_clip + 9 * config.features_per_frame() + 3) {
            *feature = feature.wrapping_add(1);
        }
    }
    out
}

/// The clip the `frontend` binary runs: its samples (`clip.pcm`, i16
/// little-endian) and the features this machine's core computes for them
/// with the 16-bit and the 32-bit FFT (`clip16.features`, `clip.features`),
/// which the device must reproduce byte for byte.
fn clip(out_dir: &Path) -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=TINYCNN_CLIP");
    let path = env::var_os("TINYCNN_CLIP").map_or_else(|| PathBuf::from(CLIP), PathBuf::from);
    println!("cargo:rerun-if-changed={}", path.display());
    let wav = read(&path, "a 16 kHz, 16-bit mono WAV file")?;
    let samples = wav_samples(&wav).map_err(|why| format!("{}: {why}", path.display()))?;
    let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    write(&out_dir.join("clip.pcm"), &pcm)?;
    // The binary runs both FFT arithmetics, the 16-bit one first.
    for (config, name) in [
        (
            tinycnn::audio::FrontEndConfig::MLPERF_KWS_INT16,
            "clip16.features",
        ),
        (tinycnn::audio::FrontEndConfig::MLPERF_KWS, "clip.features"),
    ] {
        let mut tables = vec![0; config.table_len()];
        let front_end = tinycnn::audio::FrontEnd::new(&config, &mut tables)
            .map_err(|e| format!("the front end: {e:?}"))?;
        let mut work = vec![0; config.work_len()];
        let mut features = vec![0i8; config.clip_features_len(samples.len())];
        front_end
            .clip_features(&samples, &mut features, &mut work)
            .map_err(|e| format!("{}: the front end: {e:?}", path.display()))?;
        if env::var_os("CARGO_FEATURE_WRONG_EXPECTED").is_some() {
            // One feature of the tenth frame: the device must notice.
            if let Some(feature) = features.get_mut(9 * config.features_per_frame() + 3) {
                *feature = feature.wrapping_add(1);
            }
        }
        write(
            &out_dir.join(name),
            &features.iter().map(|&f| f as u8).collect::<Vec<u8>>(),
        )?;
    }
    Ok(())
}

/// The samples of a PCM WAV file of one channel, 16 bits, 16 kHz.
fn wav_samples(wav: &[u8]) -> Result<Vec<i16>, String> {
    let u16_at = |at: usize| {
        wav.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        wav.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if wav.get(..4) != Some(b"RIFF") || wav.get(8..12) != Some(b"WAVE") {
        return Err("not a WAV file (no RIFF/WAVE header)".into());
    }
    let mut at = 12;
    let mut format_ok = false;
    while let (Some(id), Some(size)) = (wav.get(at..at + 4), u32_at(at + 4)) {
        let body = at + 8;
        let size = size as usize;
        match id {
            b"fmt " => {
                format_ok = u16_at(body) == Some(1)
                    && u16_at(body + 2) == Some(1)
                    && u32_at(body + 4) == Some(16_000)
                    && u16_at(body + 14) == Some(16);
            }
            b"data" if format_ok => {
                let data = wav
                    .get(body..body + size)
                    .ok_or("its data chunk is cut short")?;
                return Ok(data
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect());
            }
            b"data" => return Err("not 16 kHz, 16-bit, mono PCM".into()),
            _ => {}
        }
        at = body + size + size % 2;
    }
    Err("no data chunk".into())
}

/// The one machine whose feature is enabled.
fn selected_machine() -> Result<&'static Machine, String> {
    let enabled = |m: &&Machine| {
        let variable = format!(
            "CARGO_FEATURE_{}",
            m.feature.to_uppercase().replace('-', "_")
        );
        env::var_os(variable).is_some()
    };
    let selected: Vec<&Machine> = MACHINES.iter().filter(enabled).collect();
    let names = || {
        MACHINES
            .iter()
            .map(|m| m.feature)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match selected.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no machine selected: enable one of the features {}",
            names()
        )),
        several => Err(format!(
            "features {} select different machines; enable exactly one \
             (with --no-default-features for any but netduinoplus2)",
            several
                .iter()
                .map(|m| m.feature)
                .collect::<Vec<_>>()
                .join(" and ")
        )),
    }
}

fn memory_x(m: &Machine) -> String {
    let mut text = format!(
        "/* {}: written by build.rs from its machine table. flip-link rewrites\n \
         * the RAM line at link time to put the statics at the top of RAM and the\n \
         * stack below them, so it stays on one line. */\nMEMORY\n{{\n",
        m.name
    );
    if let Some((origin, length)) = m.boot_stage {
        let _ = writeln!(
            text,
            "  BOOT2 : ORIGIN = {origin:#010x}, LENGTH = {length:#x}"
        );
    }
    let _ = writeln!(
        text,
        "  FLASH : ORIGIN = {:#010x}, LENGTH = {:#x}\n  RAM : ORIGIN = {:#010x}, LENGTH = {:#x}\n}}",
        m.flash.0, m.flash.1, m.ram.0, m.ram.1
    );
    // Absolute symbols, read back by size-report.sh from the ELF.
    let _ = writeln!(
        text,
        "\n/* The part's sizes, for size-report.sh. */\n_tinycnn_flash_bytes = {:#x};\n_tinycnn_ram_bytes = {:#x};",
        m.flash.1, m.ram.1
    );
    if m.boot_stage.is_some() {
        text.push_str(
            "\n/* The boot ROM copies these 256 bytes to SRAM, checks their CRC and\n \
             * runs them; they set up the flash for execute-in-place. */\n\
             SECTIONS {\n  .boot2 ORIGIN(BOOT2) : { KEEP(*(.boot2)); } > BOOT2\n} INSERT BEFORE .text;\n",
        );
    }
    text
}

fn machine_rs(m: &Machine) -> String {
    let (unit, instructions_per_tick, shift) = match m.counter {
        CounterKind::Tim2 => ("instructions (QEMU icount, TIM2 at 1 GHz)".to_owned(), 1, 0),
        CounterKind::SysTick {
            ns_per_tick,
            shift,
            clock,
        } if m.qemu.is_some() => (
            format!("instructions (QEMU icount, SysTick at {clock})"),
            ns_per_tick,
            shift,
        ),
        CounterKind::SysTick { .. } => ("cycles (SysTick)".to_owned(), 1, 0),
        CounterKind::Dwt => ("cycles (DWT)".to_owned(), 1, 0),
    };
    format!(
        "/// The machine this firmware was built for (build.rs's table).\n\
         pub const MACHINE: Machine = Machine {{\n\
         \x20   feature: {:?},\n\
         \x20   name: {:?},\n\
         \x20   core: {:?},\n\
         \x20   qemu: {},\n\
         \x20   flash_bytes: {},\n\
         \x20   ram_bytes: {},\n\
         \x20   counter_unit: {unit:?},\n\
         \x20   instructions_per_tick: {instructions_per_tick},\n\
         \x20   tick_shift: {shift},\n\
         \x20   dsp: {},\n\
         }};\n",
        m.feature,
        m.name,
        m.core,
        m.qemu.is_some(),
        m.flash.1,
        m.ram.1,
        m.dsp,
    )
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| {
        format!(
            "{}: cannot read ({e}); the firmware embeds {what} (see the repository README)",
            path.display()
        )
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    // Write then rename, so an interrupted build never leaves half a blob.
    let temporary = path.with_extension("partial");
    fs::write(&temporary, bytes)
        .and_then(|()| fs::rename(&temporary, path))
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}
