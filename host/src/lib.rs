//! Desktop side of tinycnn: MNIST-format data, the reference network in burn, and its training.
//!
//! - [`idx`] reads IDX files (gzip or raw) with full validation; [`mnist`] loads a directory of
//!   the four files and checks them against the canonical MNIST SHA-256 sums.
//! - [`model`] is the network ([`model::Net`]), its initialisation, inference
//!   ([`model::infer_logits`]) and weight extraction ([`model::Net::weights`]); its convolution
//!   blocks run as one fused burn op each ([`fastconv`]) on burn's Flex backend.
//! - [`train`] is `host train`: the loop, evaluation, checkpoints ([`checkpoint`]), metrics
//!   ([`state`]), the plot ([`plot`]) and progress ([`progress`]).
//! - [`export`] writes the `tinycnn` model files (f32, and int8 through [`quantize`]).
//! - [`eval`] runs the core kernels over a test set; [`predict`] turns pictures into inputs.
//! - [`bench_infer`] is `host bench infer`: single-image speed of the core next to burn's.
//! - [`bench`](mod@bench) is `host bench train`: the time of a training step, operation by operation
//!   ([`usage`] supplies CPU time, peak memory and load); [`allocator`] tunes glibc's malloc.

#![deny(missing_docs)]

pub mod adagrad;
pub mod allocator;
pub mod atomic;
pub mod backend;
pub mod bench;
pub mod bench_infer;
pub mod checkpoint;
pub mod eval;
pub mod export;
pub mod fastconv;
pub mod idx;
pub mod mnist;
pub mod model;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod quantize;
pub mod state;
pub mod train;
pub mod usage;

/// Serialises the tests that seed burn's random generator: it is shared by the whole process,
/// so two tests drawing from it at once would make each other's seeds meaningless.
#[cfg(test)]
pub(crate) fn seeded_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
