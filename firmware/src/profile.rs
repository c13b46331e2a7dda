//! Counting one inference, in all and per layer, and logging the averages.

use tinycnn::arch::{Image, Layer, MACS};
use tinycnn::kernels::int8::Backend;
use tinycnn::{Int8Model, Int8Scratch, Prediction};

use crate::Counter;

/// Counts of one inference: instructions (QEMU) or cycles (board).
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub struct Profile {
    /// The whole inference, from before the image is loaded to the logits.
    pub total: u32,
    /// Per layer, in [`Layer::ALL`] order: from the end of the previous layer
    /// (or the start) to the end of this one; each includes the observer's
    /// few instructions, and conv1's includes loading the image.
    pub layers: [u32; Layer::ALL.len()],
}

/// Classifies `image` with `backend`, counting the whole inference and each
/// layer; `observe` sees each layer's output as it finishes.
pub fn classify(
    model: &Int8Model<'_>,
    backend: Backend,
    image: &Image,
    scratch: &mut Int8Scratch,
    counter: &Counter,
    mut observe: impl FnMut(Layer, &[i8]),
) -> (Prediction<i8>, Profile) {
    let mut layers = [0u32; Layer::ALL.len()];
    let start = counter.now();
    let mut last = start;
    let prediction = model.classify_with(backend, image, scratch, |layer, output| {
        let now = counter.now();
        if let Some(count) = layers.get_mut(layer as usize) {
            *count = now.wrapping_sub(last);
        }
        observe(layer, output);
        // The observer's own work is charged to the next layer, not this one.
        last = counter.now();
    });
    let total = counter.now().wrapping_sub(start);
    (prediction, Profile { total, layers })
}

/// Sums of [`Profile`]s, for averages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Inferences added.
    pub inferences: u64,
    /// Sum of [`Profile::total`].
    pub total: u64,
    /// Sums of [`Profile::layers`].
    pub layers: [u64; Layer::ALL.len()],
    /// Smallest [`Profile::total`].
    pub fewest: u32,
    /// Largest [`Profile::total`].
    pub most: u32,
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
        for (sum, &count) in self.layers.iter_mut().zip(&profile.layers) {
            *sum += u64::from(count);
        }
    }

    /// Mean count per inference.
    pub fn per_inference(&self) -> u64 {
        self.total.checked_div(self.inferences).unwrap_or(0)
    }

    /// Logs the means, in all and per layer, per inference and per MAC (as
    /// [`Layer::macs`] counts them).
    pub fn log(&self, backend: Backend) {
        let per_inference = self.per_inference();
        defmt::info!(
            "{=str}: {=u64} {=str} per inference (min {=u32}, max {=u32}), {=f32} per MAC ({=usize} MACs)",
            backend.name(),
            per_inference,
            Counter::UNIT,
            self.fewest,
            self.most,
            per_inference as f32 / MACS as f32,
            MACS
        );
        for (layer, &sum) in Layer::ALL.iter().zip(&self.layers) {
            let per_layer = sum.checked_div(self.inferences).unwrap_or(0);
            defmt::info!(
                "  {=str} {=str}: {=u64} per inference, {=f32} per MAC ({=usize} MACs)",
                backend.name(),
                layer.name(),
                per_layer,
                per_layer as f32 / layer.macs() as f32,
                layer.macs()
            );
        }
    }
}
