//! Flash and RAM use, read from the linker's symbols and the stack paint, and the part of
//! the scratch an inference writes ([`Written`]).
//!
//! `cortex-m-rt`'s `paint-stack` feature fills the whole stack region
//! `[_stack_end, _stack_start)` with [`STACK_PAINT_VALUE`] before `main`.
//! The stack grows down from `_stack_start`, so the lowest word that no longer
//! holds the paint marks the deepest the stack has reached.
//!
//! With flip-link that region is `[ORIGIN(RAM), start of .data)`: the statics
//! sit at the top of RAM and the stack below them (flip-link defines both
//! symbols); without flip-link it is `[end of .uninit, end of RAM)`. The scan
//! works the same for both.

use cortex_m_rt::STACK_PAINT_VALUE;

// Symbols of cortex-m-rt's `link.x` (and flip-link for the two stack ones).
// Only their addresses are used, never their contents.
unsafe extern "C" {
    static __vector_table: u32;
    static __etext: u32;
    static __srodata: u32;
    static __erodata: u32;
    static __sdata: u32;
    static __edata: u32;
    static __sidata: u32;
    static __sbss: u32;
    static __ebss: u32;
    static __suninit: u32;
    static __euninit: u32;
    static _stack_start: u32;
    static _stack_end: u32;
}

/// Bytes of flash and RAM the firmware uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub struct MemoryReport {
    /// Vector table and code.
    pub text: usize,
    /// Constants, including blobs embedded with `include_bytes!`.
    pub rodata: usize,
    /// Initialised statics (stored in flash, copied to RAM at reset).
    pub data: usize,
    /// Zero-initialised statics.
    pub bss: usize,
    /// Statics left uninitialised (`.uninit`).
    pub uninit: usize,
    /// Size of the stack region.
    pub stack_size: usize,
    /// Deepest the stack has reached since reset.
    pub stack_peak: usize,
}

impl MemoryReport {
    /// Flash image: text + rodata + data.
    pub fn flash(&self) -> usize {
        self.text + self.rodata + self.data
    }

    /// Statically allocated RAM: data + bss + uninit.
    pub fn static_ram(&self) -> usize {
        self.data + self.bss + self.uninit
    }

    /// RAM in use at the peak: statics plus the deepest stack.
    pub fn ram_peak(&self) -> usize {
        self.static_ram() + self.stack_peak
    }
}

/// Measures the memory use now, including the stack peak since reset.
pub fn report() -> MemoryReport {
    let span = |start: *const u32, end: *const u32| (end as usize).saturating_sub(start as usize);
    MemoryReport {
        text: span(&raw const __vector_table, &raw const __etext),
        rodata: span(&raw const __srodata, &raw const __erodata),
        data: span(&raw const __sdata, &raw const __edata),
        bss: span(&raw const __sbss, &raw const __ebss),
        uninit: span(&raw const __suninit, &raw const __euninit),
        stack_size: span(&raw const _stack_end, &raw const _stack_start),
        stack_peak: stack_peak(),
    }
}

/// Deepest the stack has reached since reset, in bytes.
pub fn stack_peak() -> usize {
    let bottom = (&raw const _stack_end).cast::<u32>();
    let top = (&raw const _stack_start).cast::<u32>();
    let mut word = bottom;
    while word < top {
        // SAFETY: `word` is 4-byte aligned (the linker script asserts it for
        // `_stack_end`) and inside the stack region, which is RAM this program
        // owns; below the current stack pointer it is unused, and reading it
        // changes nothing.
        if unsafe { word.read_volatile() } != STACK_PAINT_VALUE {
            break;
        }
        word = word.wrapping_add(1);
    }
    (top as usize).saturating_sub(word as usize)
}

/// Logs the report in the form the README shows.
pub fn log(report: &MemoryReport) {
    defmt::info!(
        "flash: {=usize} B (text {=usize} + rodata {=usize} + data {=usize}) of {=usize} B",
        report.flash(),
        report.text,
        report.rodata,
        report.data,
        crate::machine::MACHINE.flash_bytes
    );
    defmt::info!(
        "RAM: {=usize} B at peak of {=usize} B = static {=usize} (data {=usize} + bss {=usize} + uninit {=usize}) + peak stack {=usize} of {=usize} B stack",
        report.ram_peak(),
        crate::machine::MACHINE.ram_bytes,
        report.static_ram(),
        report.data,
        report.bss,
        report.uninit,
        report.stack_peak,
        report.stack_size
    );
}

/// The part of the scratch inferences write, `first..end`, measured by painting it before an
/// inference ([`Written::PAINTS`], one per inference) and looking for the paint after it. With
/// two paints a byte that the first inference writes with the first paint's value is seen the
/// second time (unless the second writes it with the second paint's value: one chance in
/// 65,536). The plan's arena should be written from its first byte to its last: the plan's
/// peak, measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    first: usize,
    end: usize,
}

impl Written {
    /// The paints, one per inference measured.
    pub const PAINTS: [i8; 2] = [0x55, 0xAAu8 as i8];

    /// Nothing written yet.
    pub const fn new() -> Self {
        Written {
            first: usize::MAX,
            end: 0,
        }
    }

    /// Adds the bytes of `scratch` that no longer hold `paint`.
    pub fn add(&mut self, scratch: &[i8], paint: i8) {
        if let Some(at) = scratch.iter().position(|&byte| byte != paint) {
            self.first = self.first.min(at);
        }
        if let Some(at) = scratch.iter().rposition(|&byte| byte != paint) {
            self.end = self.end.max(at + 1);
        }
    }

    /// `first..end` of the bytes written (`0..0` if none).
    pub fn range(&self) -> (usize, usize) {
        if self.end == 0 {
            (0, 0)
        } else {
            (self.first, self.end)
        }
    }
}

impl Default for Written {
    fn default() -> Self {
        Self::new()
    }
}
