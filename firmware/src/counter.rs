//! Counting the work a piece of code does on the device.
//!
//! - On QEMU (`qemu` feature) the DWT cycle counter is not emulated (it reads
//!   0). Under `-icount shift=0` every guest instruction advances QEMU's
//!   virtual clock by exactly 1 ns, and QEMU clocks the STM32 general-purpose
//!   timers at 1 GHz of that clock, so 32-bit TIM2 with prescaler 0 advances by
//!   one per executed instruction: an exact, repeatable instruction count.
//!   (Measured on QEMU 7.2: `shift=1` gives 2 counts per instruction, `shift=3`
//!   gives 8; without `-icount` the counts are host nanoseconds and vary.
//!   Reading CNT itself counts 1; 3,000 loops of 2 to 120,000 instructions,
//!   180 million in all, each matched its instruction count exactly, and two
//!   runs gave identical counts.) [`Counter::self_check`] proves this at boot.
//! - On a board (`rtt` feature) the DWT cycle counter counts core cycles.
//!
//! Both are 32-bit: one measurement must stay below 2^32 counts (4.29 billion
//! instructions, or 25 s at 168 MHz); wrap-around is handled once.

use core::sync::atomic::{Ordering, compiler_fence};

/// A free-running 32-bit counter of instructions (QEMU) or cycles (board).
#[derive(Debug)]
pub struct Counter {
    #[cfg(feature = "qemu")]
    tim2: crate::pac::TIM2,
    /// Counts that reading the counter itself adds to a measurement (1 on
    /// QEMU); subtracted so that measuring an empty closure gives 0.
    overhead: u32,
}

impl Counter {
    /// What the counts are, for the log.
    #[cfg(feature = "qemu")]
    pub const UNIT: &'static str = "instructions (QEMU icount, TIM2)";
    /// What the counts are, for the log.
    #[cfg(feature = "rtt")]
    pub const UNIT: &'static str = "cycles (DWT)";

    /// Whether counts are exact instruction counts that must repeat bit for
    /// bit (QEMU), rather than cycles that depend on flash wait states (board).
    pub const EXACT: bool = cfg!(feature = "qemu");

    /// Starts TIM2 as a free-running 32-bit up-counter at the timer clock.
    #[cfg(feature = "qemu")]
    pub fn new(rcc: &crate::pac::RCC, tim2: crate::pac::TIM2) -> Self {
        rcc.apb1enr().modify(|_, w| w.tim2en().set_bit());
        tim2.cr1().write(|w| w.cen().clear_bit());
        tim2.psc().write(|w| w.psc().set(0));
        tim2.arr().write(|w| w.arr().set(u32::MAX));
        // The prescaler is buffered: an update event loads it now.
        tim2.egr().write(|w| w.ug().set_bit());
        tim2.cnt().write(|w| w.cnt().set(0));
        tim2.cr1().write(|w| w.cen().set_bit());
        Self::calibrated(Self { tim2, overhead: 0 })
    }

    /// Enables the DWT cycle counter.
    #[cfg(feature = "rtt")]
    pub fn new(dcb: &mut cortex_m::peripheral::DCB, dwt: &mut cortex_m::peripheral::DWT) -> Self {
        dcb.enable_trace();
        dwt.enable_cycle_counter();
        Self::calibrated(Self { overhead: 0 })
    }

    fn calibrated(mut self) -> Self {
        // The smallest of a few tries: on a board the first may pay for
        // filling the flash accelerator.
        self.overhead = (0..4).map(|_| self.measure(|| ()).1).min().unwrap_or(0);
        self
    }

    /// The raw counter value.
    #[inline(always)]
    pub fn now(&self) -> u32 {
        #[cfg(feature = "qemu")]
        let now = self.tim2.cnt().read().bits();
        #[cfg(feature = "rtt")]
        let now = cortex_m::peripheral::DWT::cycle_count();
        now
    }

    /// Runs `work` and returns its result with the counts it took, less the
    /// cost of reading the counter.
    #[inline(always)]
    pub fn measure<R>(&self, work: impl FnOnce() -> R) -> (R, u32) {
        let start = self.now();
        // Keep the work's memory accesses between the two reads.
        compiler_fence(Ordering::SeqCst);
        let result = core::hint::black_box(work());
        compiler_fence(Ordering::SeqCst);
        let end = self.now();
        let counts = end.wrapping_sub(start).wrapping_sub(self.overhead);
        (result, counts)
    }

    /// Measures loops of a known instruction count to check that counts are
    /// instructions, one for one, and repeat exactly.
    pub fn self_check(&self) -> SelfCheck {
        const SHORT: u32 = 1_000;
        const LONG: u32 = 5_000;
        // Warm up: on a board the first run pays for filling the flash
        // cache, and while probing QEMU one first measurement of a code path
        // came out one count high (later runs never did).
        self.measure_spin(SHORT);
        let short = self.measure_spin(SHORT);
        let long = self.measure_spin(LONG);
        let repeat = self.measure_spin(LONG);
        SelfCheck {
            expected: SPIN_INSTRUCTIONS_PER_ITERATION * (LONG - SHORT),
            measured: long.wrapping_sub(short),
            repeatable: long == repeat,
        }
    }

    /// One call site for every length, so each measurement runs the very
    /// same instructions around the loop.
    #[inline(never)]
    fn measure_spin(&self, iterations: u32) -> u32 {
        self.measure(|| spin(iterations)).1
    }
}

/// What [`Counter::self_check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub struct SelfCheck {
    /// Instructions the extra iterations of the known loop execute.
    pub expected: u32,
    /// Counts they took.
    pub measured: u32,
    /// Whether measuring the same loop twice gave the same count.
    pub repeatable: bool,
}

impl SelfCheck {
    /// Whether the counter counted instructions exactly and repeatably.
    pub fn exact(&self) -> bool {
        self.expected == self.measured && self.repeatable
    }
}

/// Instructions per iteration of [`spin`]'s loop: `subs` and `bne`.
const SPIN_INSTRUCTIONS_PER_ITERATION: u32 = 2;

/// Executes exactly `SPIN_INSTRUCTIONS_PER_ITERATION * iterations` instructions
/// in its loop (plus a fixed entry cost). `iterations` must be at least 1.
#[inline(never)]
fn spin(iterations: u32) {
    // SAFETY: the loop only decrements its own register operand; it touches no
    // memory and no stack, and ends when the register reaches zero.
    unsafe {
        core::arch::asm!(
            "2:",
            "subs {n}, {n}, #1",
            "bne 2b",
            n = inout(reg) iterations => _,
            options(nomem, nostack),
        );
    }
}
