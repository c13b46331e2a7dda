//! Shared firmware plumbing for `tinycnn` on Cortex-M: logger selection,
//! panic and fault handling, [`exit`] with a status, an instruction/cycle
//! [`Counter`], the memory report, and the model and its test vectors
//! embedded in flash ([`load_model`], [`load_test_vectors`]) with scratch of
//! exactly the size the model needs ([`SCRATCH_BYTES`], computed while
//! compiling). The binaries in `src/bin/` stay thin.
//!
//! One machine feature picks the machine ([`machine::MACHINE`]; `build.rs`
//! holds their table), and with it where the firmware runs:
//! - a QEMU machine (`netduinoplus2`, the default, `mps2-an385`,
//!   `mps2-an386`, `mps2-an500`, `mps2-an505`, `microbit`): defmt frames go
//!   out over semihosting to the host's stdout and [`exit`] ends QEMU with
//!   the status;
//! - a real board under `probe-rs run` (`stm32f4-discovery`,
//!   `nucleo-f446re`, `nrf52840-dk`, `rpi-pico`): defmt over RTT,
//!   panic-probe, and [`exit`] stops at a breakpoint (success) or faults
//!   (failure), which `probe-rs run` turns into its own exit status.

#![no_std]

#[cfg(all(feature = "qemu", feature = "rtt"))]
compile_error!(
    "a QEMU machine and a board are selected together: enable one machine feature, \
     with --no-default-features for any but netduinoplus2 (see firmware/README.md)"
);

pub mod counter;
pub mod machine;
pub mod memory;
pub mod profile;

pub use counter::Counter;

use tinycnn::{Int8Model, Scratch, testvec::TestVectors};

// The global defmt logger: linking the crate is what selects it.
#[cfg(feature = "rtt")]
use defmt_rtt as _;
#[cfg(feature = "qemu")]
use defmt_semihosting as _;
#[cfg(feature = "rtt")]
use panic_probe as _;

/// The device peripherals (the `stm32f407` PAC also fits the STM32F405 that
/// QEMU emulates: same addresses for everything used here).
#[cfg(counter = "tim2")]
pub use stm32f4::stm32f407 as pac;

/// Why the firmware stopped; under QEMU this is the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
#[repr(u8)]
#[non_exhaustive]
pub enum ExitCode {
    /// Every check passed.
    Success = 0,
    /// An output differed from the host's expected value.
    Mismatch = 2,
    /// An embedded blob (model or fixture) failed validation.
    BadBlob = 3,
    /// The counter did not count a known loop exactly (QEMU only).
    CounterInexact = 4,
    /// A Rust panic.
    Panic = 101,
    /// A HardFault (bad memory access, undefined instruction...).
    HardFault = 102,
}

/// What [`init`] hands to a binary.
#[derive(Debug)]
pub struct Board {
    /// Counts instructions (QEMU) or cycles (board).
    pub counter: Counter,
}

/// Takes the peripherals, starts the counter, checks it on a loop of known
/// length and logs the method. Call once, first thing in `main`.
pub fn init() -> Board {
    #[cfg(counter = "tim2")]
    let counter = {
        let Some(device) = pac::Peripherals::take() else {
            defmt::panic!("init() called twice");
        };
        Counter::new(&device.RCC, device.TIM2)
    };
    #[cfg(counter = "systick")]
    let counter = {
        let Some(core) = cortex_m::Peripherals::take() else {
            defmt::panic!("init() called twice");
        };
        Counter::new(core.SYST)
    };
    #[cfg(counter = "dwt")]
    let counter = {
        let Some(mut core) = cortex_m::Peripherals::take() else {
            defmt::panic!("init() called twice");
        };
        Counter::new(&mut core.DCB, &mut core.DWT)
    };

    defmt::info!(
        "machine: {=str}, {=str}",
        machine::MACHINE.name,
        machine::MACHINE.core
    );
    let check = counter.self_check();
    defmt::info!(
        "counter: {=str}; known loop of {=u32} instructions took {=u32} counts{=str}",
        Counter::UNIT,
        check.expected,
        check.measured,
        if check.repeatable {
            ", repeatably"
        } else {
            ", NOT repeatably"
        }
    );
    if Counter::EXACT && !check.exact() {
        defmt::error!(
            "the counter does not count instructions one for one: is QEMU run with -icount shift=0?"
        );
        exit(ExitCode::CounterInexact);
    }
    Board { counter }
}

/// Ends the program with `code`.
///
/// Under QEMU: semihosting `SYS_EXIT_EXTENDED`, so QEMU exits with `code` as
/// its status. On a board: success stops at a breakpoint, which `probe-rs run`
/// reports as a clean exit; failure executes an undefined instruction, which it
/// reports as a fault (non-zero exit).
pub fn exit(code: ExitCode) -> ! {
    if code != ExitCode::Success {
        defmt::error!("exit: {} ({=u8})", code, code as u8);
    }
    #[cfg(feature = "qemu")]
    semihosting::process::exit(i32::from(code as u8));
    #[cfg(feature = "rtt")]
    loop {
        if code == ExitCode::Success {
            cortex_m::asm::bkpt();
        } else {
            cortex_m::asm::udf();
        }
    }
}

/// `include_bytes!` whose data starts at a multiple of `$align` bytes, so a
/// blob in flash can be read in place as `u32`/`i32` fields. Evaluates to a
/// `&'static [u8]`.
///
/// ```ignore
/// static MODEL: &[u8] = tinycnn_firmware::include_bytes_aligned!(4, "../model.tcnn");
/// ```
#[macro_export]
macro_rules! include_bytes_aligned {
    ($align:literal, $path:expr) => {{
        #[repr(C, align($align))]
        struct Aligned<Bytes: ?Sized>(Bytes);
        static ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!($path));
        &ALIGNED.0
    }};
}

/// The int8 model (`data/model-int8.tcnn`, or `TINYCNN_MODEL`; copied by
/// `build.rs`), read in place from flash.
pub static MODEL: &[u8] = include_bytes_aligned!(4, concat!(env!("OUT_DIR"), "/model.tcnn"));

/// [`MODEL`]'s dense weights widened to int16 (`tinycnn::widened`), read in place from flash,
/// when the firmware is built with the `widen-dense` feature; empty otherwise.
pub static WIDENED_DENSE: &[u8] =
    include_bytes_aligned!(4, concat!(env!("OUT_DIR"), "/widened.bin"));

/// [`MODEL`]'s pixel quantisation table (`Int8Model::pixel_quantization`; 256 bytes), when its
/// input quantisation does more than flip a pixel's top bit; empty otherwise.
pub static PIXEL_TABLE: &[u8] = include_bytes_aligned!(4, concat!(env!("OUT_DIR"), "/pixels.bin"));

/// The test vectors of [`MODEL`] (`host fixture`): images, labels and the
/// host's int8 logits.
pub static TEST_VECTORS: &[u8] =
    include_bytes_aligned!(4, concat!(env!("OUT_DIR"), "/vectors.tctv"));

/// Bytes of scratch [`MODEL`] needs with this target's fastest kernels, read
/// from its description while compiling: a model whose scratch does not fit
/// the RAM fails the link, not the device.
pub const SCRATCH_BYTES: usize = tinycnn::plan::int8_scratch_bytes_or_panic(include_bytes!(
    concat!(env!("OUT_DIR"), "/model.tcnn")
));

/// Whether [`MODEL`] has layers the kernels of `tinycnn::kernels::general` run, read from
/// its description while compiling: without them, those kernels are left out of the
/// firmware ([`profile::classify`]).
pub const GENERAL_KERNELS: bool = tinycnn::plan::model_uses_general_kernels(include_bytes!(
    concat!(env!("OUT_DIR"), "/model.tcnn")
));

/// Validates [`MODEL`] (and [`PIXEL_TABLE`] and [`WIDENED_DENSE`] where there are ones); on
/// a bad blob logs why and exits with [`ExitCode::BadBlob`].
pub fn load_model() -> Int8Model<'static> {
    let model = match Int8Model::from_bytes(MODEL) {
        Ok(model) => model,
        Err(error) => {
            defmt::error!("model blob rejected: {}", error);
            exit(ExitCode::BadBlob)
        }
    };
    let model = match <&[u8; 256]>::try_from(PIXEL_TABLE) {
        Ok(table) => match model.with_pixel_table(table) {
            Ok(model) => model,
            Err(error) => {
                defmt::error!("pixel table rejected: {}", error);
                exit(ExitCode::BadBlob)
            }
        },
        Err(_) => model,
    };
    if WIDENED_DENSE.is_empty() {
        return model;
    }
    match model.with_widened_dense(WIDENED_DENSE) {
        Ok(model) => {
            defmt::info!(
                "dense weights widened to int16: {=usize} bytes of flash",
                WIDENED_DENSE.len()
            );
            model
        }
        Err(error) => {
            defmt::error!("widened dense table rejected: {}", error);
            exit(ExitCode::BadBlob)
        }
    }
}

/// Validates [`TEST_VECTORS`] and that they were written for `model`; on a
/// bad blob, one without vectors, or vectors of another model, logs why and
/// exits with [`ExitCode::BadBlob`].
pub fn load_test_vectors(model: &Int8Model<'_>) -> TestVectors<'static> {
    let vectors = match TestVectors::from_bytes(TEST_VECTORS) {
        Ok(vectors) if !vectors.is_empty() => vectors,
        Ok(_) => {
            defmt::error!("test-vector blob holds no vectors: it could not catch anything");
            exit(ExitCode::BadBlob)
        }
        Err(error) => {
            defmt::error!("test-vector blob rejected: {}", error);
            exit(ExitCode::BadBlob)
        }
    };
    match vectors.check_model(model) {
        Ok(()) => {}
        Err(tinycnn::Error::WrongFlavour { .. }) => {
            defmt::error!(
                "the test vectors record f32 outputs: the firmware runs the int8 model, write its \
                 vectors with `host fixture --model` for the int8 model"
            );
            exit(ExitCode::BadBlob)
        }
        Err(_) => {
            defmt::error!(
                "test vectors were written for another model (CRC {=u32:#010x}, this model {=u32:#010x}, \
                 or another input size or class count): write them with `host fixture --model` for this one",
                vectors.model_crc(),
                model.header().crc
            );
            exit(ExitCode::BadBlob)
        }
    }
    vectors
}

/// The network's activations: a static (in `.bss`) of [`SCRATCH_BYTES`],
/// handed out once.
pub fn scratch() -> &'static mut [i8] {
    match cortex_m::singleton!(: Scratch<SCRATCH_BYTES> = Scratch::new()) {
        Some(scratch) => scratch.as_mut_slice(),
        None => defmt::panic!("scratch() called twice"),
    }
}

// A panic with a `defmt` message (`defmt::panic!`, `defmt::unwrap!`...) has
// already been logged by the macro; only the exit remains.
#[cfg(feature = "qemu")]
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    exit(ExitCode::Panic)
}

// panic-probe prints core panics itself; a `defmt::panic!` has printed
// already, so only fault (as panic-probe does) to stop probe-rs with an error.
#[cfg(feature = "rtt")]
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    cortex_m::asm::udf()
}

#[cfg(feature = "qemu")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::sync::atomic::{AtomicBool, Ordering};
    static PANICKING: AtomicBool = AtomicBool::new(false);
    // A panic inside the logger must not recurse into it. The location, not
    // the message: formatting the message would link `core::fmt`, 3 KB of
    // flash for a path the inference never takes. A load and a store, not a
    // swap: the Cortex-M0 has no atomic read-modify-write, and a nested panic
    // can only come after the store.
    if !PANICKING.load(Ordering::Relaxed) {
        PANICKING.store(true, Ordering::Relaxed);
        match info.location() {
            Some(location) => defmt::error!(
                "panicked at {=str}:{=u32}",
                location.file(),
                location.line()
            ),
            None => defmt::error!("panicked"),
        }
    }
    exit(ExitCode::Panic)
}

#[cfg(feature = "qemu")]
#[cortex_m_rt::exception]
unsafe fn HardFault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
    defmt::error!(
        "HardFault at pc={=u32:#010x} lr={=u32:#010x}",
        frame.pc(),
        frame.lr()
    );
    exit(ExitCode::HardFault)
}
