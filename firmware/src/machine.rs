//! The machine this build runs on, as `build.rs` describes it from its one
//! table (memory layout, core, counter), and what only some machines need.

/// A QEMU machine or a real board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// The cargo feature that selected it.
    pub feature: &'static str,
    /// Its name, for the log.
    pub name: &'static str,
    /// Its Cortex-M core.
    pub core: &'static str,
    /// Whether it is a QEMU machine (semihosting, instruction counts) rather
    /// than a real board (RTT, cycle counts).
    pub qemu: bool,
    /// Bytes of flash `memory.x` gives the firmware.
    pub flash_bytes: usize,
    /// Bytes of RAM `memory.x` gives the firmware.
    pub ram_bytes: usize,
    /// What [`crate::Counter`] counts.
    pub counter_unit: &'static str,
    /// Instructions per counter tick under QEMU, times `2^tick_shift` (the
    /// core clock's period in ns under `-icount shift=0`); 1 on a board.
    pub instructions_per_tick: u32,
    /// See [`Machine::instructions_per_tick`].
    pub tick_shift: u32,
    /// Whether the core has the Arm DSP extension.
    pub dsp: bool,
}

include!(concat!(env!("OUT_DIR"), "/machine.rs"));

// A core with the DSP extension must get the DSP kernels: on the Cortex-M33
// the build has to enable the extension (`-C target-cpu=cortex-m33` in
// `.cargo/config.toml`), or the core would quietly run its portable ones.
const _: () = assert!(
    !MACHINE.dsp
        || !matches!(
            tinycnn::kernels::int8::Backend::FASTEST,
            tinycnn::kernels::int8::Backend::Portable
        ),
    "this core has the DSP extension but the build does not enable it: build with `-C target-cpu=cortex-m33` (see .cargo/config.toml)"
);

/// The RP2040's boot ROM runs the first 256 bytes of flash to set up
/// execute-in-place before it jumps to the vector table after them.
#[cfg(feature = "rpi-pico")]
#[unsafe(link_section = ".boot2")]
#[used]
static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;
