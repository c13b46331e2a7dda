//! # tinycnn
//!
//! A `no_std`, allocation-free, `unsafe`-free runtime for one small
//! convolutional network (the Keras MNIST tutorial's: three 3x3
//! convolutions with 2x2 max-pools, four dense layers; see [`arch`]), in
//! int8 with TensorFlow Lite's quantisation semantics and in f32.
//!
//! - [`format`]: the versioned model file, read in place from flash.
//! - [`kernels`]: fixed-shape kernels with plain references beside them.
//! - [`quant`]: TFLite's fixed-point requantisation.
//! - [`network`]: the whole network on one image, in caller-provided scratch.
//! - [`testvec`]: images with host-computed logits, for on-device checks.
//!
//! ```
//! use tinycnn::{Int8Model, Int8Scratch, Model};
//!
//! fn classify(blob: &'static [u8], image: &[u8; 784]) -> Result<u8, tinycnn::Error> {
//!     let model = Int8Model::from_bytes(blob)?; // validates, copies nothing
//!     let mut scratch = Int8Scratch::new(); // 22 KiB: make it a static on an MCU
//!     Ok(model.classify(image, &mut scratch).digit)
//! }
//! # assert!(matches!(classify(b"not a model", &[0; 784]), Err(tinycnn::Error::Truncated { .. })));
//! # let _ = Model::from_bytes;
//! ```
//!
//! Features: `std` (`Vec`-returning encoders), `defmt` (`defmt::Format` for
//! [`Error`] and friends). Neither is on by default.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

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
