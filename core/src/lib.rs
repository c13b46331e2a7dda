//! # tinycnn
//!
//! A `no_std`, allocation-free runtime for one small
//! convolutional network (the Keras MNIST tutorial's: three 3x3
//! convolutions with 2x2 max-pools, four dense layers; see [`arch`]), in
//! int8 with TensorFlow Lite's quantisation semantics and in f32.
//!
//! - [`format`]: the versioned model file, read in place from flash.
//! - [`kernels`]: fixed-shape kernels with plain references beside them, and
//!   on Cortex-M4/M7 (and M33 with `+dsp`) Arm DSP-extension kernels that
//!   compute the same bits; `unsafe` code (inline assembly) exists only there.
//! - [`quant`]: TFLite's fixed-point requantisation.
//! - [`network`]: the whole network on one image, in caller-provided scratch.
//! - [`testvec`]: images with host-computed logits, for on-device checks.
//!
//! ```
//! use tinycnn::{Int8Model, Int8Scratch, Model};
//!
//! fn classify(blob: &'static [u8], image: &[u8; 784]) -> Result<u8, tinycnn::Error> {
//!     let model = Int8Model::from_bytes(blob)?; // validates, copies nothing
//!     let mut scratch = Int8Scratch::new(); // 19-23 KiB: make it a static on an MCU
//!     Ok(model.classify(image, &mut scratch).digit)
//! }
//! # assert!(matches!(classify(b"not a model", &[0; 784]), Err(tinycnn::Error::Truncated { .. })));
//! # let _ = Model::from_bytes;
//! ```
//!
//! Features: `std` (`Vec`-returning encoders), `defmt` (`defmt::Format` for
//! [`Error`] and friends). Neither is on by default.

#![no_std]
// `unsafe` exists only in `kernels::dsp` (inline assembly for the Arm DSP
// extension), which allows it for itself; everywhere else it stays an error.
// `forbid` could not be lifted by that module, hence `deny` where it exists.
#![cfg_attr(not(tinycnn_arm_dsp), forbid(unsafe_code))]
#![cfg_attr(tinycnn_arm_dsp, deny(unsafe_code))]
#![deny(missing_docs)]
// Nothing on the inference or loading path may panic: no unwrap, no
// indexing the compiler cannot prove in bounds, no explicit panics. Tests may.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::indexing_slicing,
    )
)]

#[cfg(any(feature = "std", test))]
extern crate std;

pub mod arch;
mod error;
pub mod format;
pub mod kernels;
pub mod network;
pub mod quant;
pub mod testvec;

pub use arch::{Image, Layer};
pub use error::{Error, TensorKind};
pub use format::{F32Model, Flavour, Int8Model, Model};
pub use network::{F32Scratch, Int8Scratch, Prediction};
