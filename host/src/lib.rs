//! Desktop side of tinycnn: MNIST-format data, networks of any valid description in burn, their
//! training, export to the `tinycnn` model files, and everything a user does with those files.
//!
//! The modules follow the pipeline:
//! - [`data`]: IDX files (gzip or raw) with full validation, and a directory of the four MNIST
//!   files checked against the canonical SHA-256 sums.
//! - [`train`]: `host train`: the burn network built from a description ([`train::model`]),
//!   its fused convolution blocks ([`train::fastconv`]), Adagrad, the loop, checkpoints,
//!   metrics, progress.
//! - [`export`]: the `tinycnn` model files (f32, and int8 through [`export::quantize`]).
//! - [`deploy`]: what runs the exported model: `host eval` and `host predict` (the core kernels,
//!   as a device computes), `host fixture` (test vectors for the firmware) and `host inspect`
//!   (what a model needs of a board).
//! - [`bench`](mod@bench): `host bench train` and `host bench infer`.
//! - [`tflite`]: TensorFlow Lite models in (`host import`) and out (`host export --tflite`).
//!
//! [`model_files`] holds what those modules share about model files (names, f32 tensors, fixed
//! point multipliers).
//!
//! [`atomic`] writes files so that an interruption never leaves a partial one, and holds the
//! rules every command's outputs follow (nothing replaced without `--overwrite`, only regular
//! files replaced, no empty directory left by a failure); [`plot`] draws the PNGs;
//! [`allocator`] tunes glibc's malloc for training.

#![deny(missing_docs)]

pub mod allocator;
pub mod atomic;
pub mod bench;
pub mod data;
pub mod deploy;
pub mod export;
pub mod model_files;
pub mod plot;
pub mod tflite;
pub mod train;

/// Serialises the tests that seed burn's random generator: it is shared by the whole process,
/// so two tests drawing from it at once would make each other's seeds meaningless.
#[cfg(test)]
pub(crate) fn seeded_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
