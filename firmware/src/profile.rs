//! Counting one inference, in all and step by step, and logging the averages.

use tinycnn::arch::MAX_LAYERS;
use tinycnn::kernels::int8::Backend;
use tinycnn::{Error, Int8Model, Observation, Prediction};

use crate::Counter;

/// Counts of one inference: instructions (QEMU) or cycles (board).
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub struct Profile {
    /// The whole inference, from before the image is loaded to the logits.
    pub total: u32,
    /// Per step (one per convolution, stand-alone pool or dense layer), in
    /// order: from the end of the previous step (or the start) to the end of
    /// this one; each includes the observer's few instructions, and the first
    /// includes loading the image.
    pub steps: [u32; MAX_LAYERS],
    /// Whether every step ran the kernels asked for (false where a DSP kernel
    /// handed a shape to the portable one).
    pub all_asked_kernels: bool,
}

/// Classifies `image` with `backend`, counting the whole inference and each
/// step; `observe` sees each step's output as it finishes.
pub fn classify<'s>(
    model: &Int8Model<'_>,
    backend: Backend,
    image: &[u8],
    scratch: &'s mut [i8],
    counter: &Counter,
    mut observe: impl FnMut(&Observation<'_, i8>),
) -> (Result<Prediction<'s, i8>, Error>, Profile) {
    let mut steps = [0u32; MAX_LAYERS];
    let mut all_asked_kernels = true;
    let start = counter.now();
    let mut last = start;
    let timed = |observed: &Observation<'_, i8>| {
        let now = counter.now();
        if let Some(count) = steps.get_mut(observed.index) {
            *count = now.wrapping_sub(last);
        }
        all_asked_kernels &= observed.kernels == backend;
        observe(observed);
        // The observer's own work is charged to the next step, not this one.
        last = counter.now();
    };
    // A constant: the other branch, and with it the general kernels, is left out.
    let prediction = if crate::GENERAL_KERNELS {
        model.classify_with(backend, image, scratch, timed)
    } else {
        model.classify_with_tutorial_layers(backend, image, scratch, timed)
    };
    let total = counter.now().wrapping_sub(start);
    let profile = Profile {
        total,
        steps,
        all_asked_kernels,
    };
    (prediction, profile)
}

/// Sums of [`Profile`]s, for averages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Inferences added.
    pub inferences: u64,
    /// Sum of [`Profile::total`].
    pub total: u64,
    /// Sums of [`Profile::steps`].
    pub steps: [u64; MAX_LAYERS],
    /// Smallest [`Profile::total`].
    pub fewest: u32,
    /// Largest [`Profile::total`].
    pub most: u32,
}

// Arrays implement `Default` only up to 32 elements.
impl Default for Totals {
    fn default() -> Self {
        Totals {
            inferences: 0,
            total: 0,
            steps: [0; MAX_LAYERS],
            fewest: 0,
            most: 0,
        }
    }
}

impl Totals {
    /// Adds one inference.
    pub fn add(&mut self, profile: &Profile) {
        if self.inferences == 0 {
            self.fewest = profile.total;
            self.most = profile.total;
        }
        self.inferences += 1;
        self.total += u64::from(profile.total);
        self.fewest = self.fewest.min(profile.total);
        self.most = self.most.max(profile.total);
        for (sum, &count) in self.steps.iter_mut().zip(&profile.steps) {
            *sum += u64::from(count);
        }
    }

    /// Mean count per inference.
    pub fn per_inference(&self) -> u64 {
        mean(self.total, self.inferences)
    }

    /// Logs the means, in all and per step, per inference and per MAC (as
    /// `tinycnn::arch::LayerInfo::macs` counts them), with the steps' layer
    /// names from the model.
    pub fn log(&self, model: &Int8Model<'_>, backend: Backend) {
        let per_inference = self.per_inference();
        let macs = model.architecture().macs();
        defmt::info!(
            "{=str}: {=u64} {=str} per inference (min {=u32}, max {=u32}), {=f32} per MAC ({=usize} MACs)",
            backend.name(),
            per_inference,
            Counter::UNIT,
            self.fewest,
            self.most,
            per_inference as f32 / macs as f32,
            macs
        );
        let steps = tinycnn::plan::steps(model.architecture());
        for (step, &sum) in steps.zip(&self.steps) {
            let per_step = mean(sum, self.inferences);
            let step_macs = step.layer.macs();
            defmt::info!(
                "  {=str} {}: {=u64} per inference, {=f32} per MAC ({=usize} MACs)",
                backend.name(),
                step.layer.name,
                per_step,
                per_step as f32 / step_macs.max(1) as f32,
                step_macs
            );
        }
    }
}

/// `sum / count` rounded down (0 for no count), by binary long division:
/// the compiler's 64-bit division routine would cost most of a kilobyte of
/// flash for the few divisions a report makes.
fn mean(sum: u64, count: u64) -> u64 {
    if count == 0 {
        return 0;
    }
    let (mut quotient, mut remainder) = (0u64, 0u64);
    for bit in (0..64).rev() {
        remainder = (remainder << 1) | ((sum >> bit) & 1);
        if remainder >= count {
            remainder -= count;
            quotient |= 1 << bit;
        }
    }
    quotient
}
