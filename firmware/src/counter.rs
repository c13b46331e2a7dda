//! Counting the work a piece of code does on the device.
//!
//! Under QEMU with `-icount shift=0` every guest instruction advances the
//! virtual clock by exactly 1 ns, so a timer clocked at F Hz advances once
//! every 10^9 / F instructions. QEMU's Cortex-M cores emulate no DWT cycle
//! counter (it reads 0), so each machine counts with the fastest timer it
//! has:
//!
//! - `netduinoplus2`: QEMU clocks the STM32 general-purpose timers at 1 GHz,
//!   so 32-bit TIM2 with prescaler 0 advances by one per instruction, an
//!   exact count. (Measured on QEMU 7.2: `shift=1` gives 2 counts per
//!   instruction; without `-icount` the counts are host nanoseconds and vary.
//!   Reading CNT itself counts 1.)
//! - the MPS2 images and the micro:bit: the SysTick on the core clock, which
//!   QEMU runs at 25 MHz (MPS2), 20 MHz (AN505) or 16 MHz (nRF51): one tick
//!   per 40, 50 or 62.5 instructions. Their other timers run no faster. A
//!   measurement is then exact to one tick, and repeatable.
//! - a real board: the DWT cycle counter where the core has one (M3, M4, M7,
//!   M33), the SysTick on the core clock elsewhere (the RP2040's M0+).
//!
//! The SysTick counts down from a 24-bit reload value; its interrupt counts
//! the wraps, which extends it to 32 bits of instructions or cycles. One
//! measurement must stay below 2^32 counts (4.29 billion instructions, or
//! 25 s at 168 MHz); wrap-around is handled once. [`Counter::self_check`]
//! proves at boot that the counts are instructions.

use core::sync::atomic::{Ordering, compiler_fence};

use crate::machine::MACHINE;

/// A free-running 32-bit counter of instructions (QEMU) or cycles (board).
#[derive(Debug)]
pub struct Counter {
    #[cfg(counter = "tim2")]
    tim2: crate::pac::TIM2,
    /// Counts that reading the counter itself adds to a measurement;
    /// subtracted so that measuring an empty closure gives 0.
    overhead: u32,
}

impl Counter {
    /// What the counts are, for the log.
    pub const UNIT: &'static str = MACHINE.counter_unit;

    /// Whether counts are instruction counts that must repeat exactly (QEMU),
    /// rather than cycles that depend on flash wait states (board).
    pub const EXACT: bool = MACHINE.qemu;

    /// Instructions one tick of the timer stands for (rounded up): the
    /// uncertainty of one reading.
    pub const RESOLUTION: u32 = MACHINE
        .instructions_per_tick
        .div_ceil(1 << MACHINE.tick_shift);

    /// Starts TIM2 as a free-running 32-bit up-counter at the timer clock.
    #[cfg(counter = "tim2")]
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

    /// Starts the SysTick on the core clock, counting its wraps in its
    /// interrupt.
    #[cfg(counter = "systick")]
    pub fn new(mut syst: cortex_m::peripheral::SYST) -> Self {
        use cortex_m::peripheral::syst::SystClkSource;
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(systick::RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        // The handle is not kept: the counter reads the current value through
        // `SYST::get_current`, which needs no ownership.
        Self::calibrated(Self { overhead: 0 })
    }

    /// Enables the DWT cycle counter.
    #[cfg(counter = "dwt")]
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

    /// The counter's value now, in instructions (QEMU) or cycles (board),
    /// modulo 2^32.
    #[inline(always)]
    pub fn now(&self) -> u32 {
        #[cfg(counter = "tim2")]
        let now = self.tim2.cnt().read().bits();
        #[cfg(counter = "systick")]
        let now = systick::now();
        #[cfg(counter = "dwt")]
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
    /// instructions, one for one (to within a tick), and repeat exactly.
    pub fn self_check(&self) -> SelfCheck {
        const SHORT: u32 = 1_000;
        // Long enough that a 62.5-instruction tick is under 0.1 % of it.
        const LONG: u32 = 50_000;
        // Warm up: on a board the first run pays for filling the flash
        // cache, and while probing QEMU one first measurement of a code path
        // came out one count high (later runs never did).
        self.measure_spin(SHORT);
        let short = self.measure_spin(SHORT);
        let long = self.measure_spin(LONG);
        let repeat = self.measure_spin(LONG);
        // Each of the two readings of a measurement is off by under a tick.
        let tolerance = if Self::RESOLUTION > 1 {
            2 * Self::RESOLUTION
        } else {
            0
        };
        SelfCheck {
            expected: SPIN_INSTRUCTIONS_PER_ITERATION * (LONG - SHORT),
            measured: long.wrapping_sub(short),
            tolerance,
            repeatable: long.abs_diff(repeat) <= tolerance,
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
    /// How far `measured` may be from `expected`: 0 where a count is an
    /// instruction, two ticks where a tick is several.
    pub tolerance: u32,
    /// Whether measuring the same loop twice gave the same count (to within
    /// the tick).
    pub repeatable: bool,
}

impl SelfCheck {
    /// Whether the counter counted instructions exactly (to within its
    /// tolerance) and repeatably.
    pub fn exact(&self) -> bool {
        self.expected.abs_diff(self.measured) <= self.tolerance && self.repeatable
    }
}

/// The SysTick extended to 32 bits by counting its wraps.
#[cfg(counter = "systick")]
mod systick {
    use core::sync::atomic::{AtomicU32, Ordering};

    use cortex_m::peripheral::{SCB, SYST};

    use crate::machine::MACHINE;

    /// The 24-bit counter's largest value: it counts `RELOAD..=0`, so one
    /// wrap is `RELOAD + 1` ticks.
    pub(super) const RELOAD: u32 = 0x00FF_FFFF;
    const TICKS_PER_WRAP: u64 = RELOAD as u64 + 1;

    /// Wraps so far. Only the SysTick handler writes it, so a load and a
    /// store do (the Cortex-M0 has no atomic read-modify-write).
    static WRAPS: AtomicU32 = AtomicU32::new(0);

    #[cortex_m_rt::exception]
    fn SysTick() {
        WRAPS.store(
            WRAPS.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// Instructions (or cycles) since the counter started, modulo 2^32.
    #[inline(always)]
    pub(super) fn now() -> u32 {
        let (wraps, current) = loop {
            let before = WRAPS.load(Ordering::Relaxed);
            let current = SYST::get_current();
            // A wrap whose interrupt has not been taken yet: the value has
            // started again from the top but `WRAPS` does not show it.
            let pending = SCB::is_pendst_pending() && current > RELOAD / 2;
            if WRAPS.load(Ordering::Relaxed) == before {
                break (before.wrapping_add(u32::from(pending)), current);
            }
        };
        let ticks = u64::from(wraps) * TICKS_PER_WRAP + u64::from(RELOAD - current);
        // A multiplication and a shift: no 64-bit division on the Cortex-M0.
        ((ticks * u64::from(MACHINE.instructions_per_tick)) >> MACHINE.tick_shift) as u32
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
