//! # tinycnn
//!
//! A `no_std`, allocation-free runtime for small convolutional networks of
//! any valid description ([`arch`]): K x K convolutions (K = 1, 3, 5) with
//! 'same' or 'valid' padding, 2x2 max-pools, flatten and dense layers, with
//! ReLU or no activation. It runs them in int8 with TensorFlow Lite's
//! quantisation semantics, bit for bit, and in f32. The Keras MNIST
//! tutorial's network ([`Architecture::REFERENCE`]) is the default.
//!
//! - [`arch`]: the network description, validated; [`text`]: its text form.
//! - [`format`]: the versioned model file, read in place from flash.
//! - [`plan`]: the steps of an inference and the scratch they need, as
//!   `const fn`s, so firmware sizes its scratch while compiling.
//! - [`kernels`]: kernels with plain references beside them, and on
//!   Cortex-M4/M7 (and M33 with `+dsp`) Arm DSP-extension kernels that
//!   compute the same bits; `unsafe` code (inline assembly) exists only there
//!   and in the audio front end's counterparts, `audio::dsp` and
//!   `audio::dsp16` (its 32-bit and 16-bit FFTs).
//! - [`quant`]: TFLite's fixed-point requantisation.
//! - [`network`]: the whole network on one image, in caller-provided scratch.
//! - [`testvec`]: images with host-computed logits, for on-device checks.
//! - [`audio`]: an integer audio front end (MFCCs for keyword spotting) that
//!   computes the same bytes on the desktop and on every Cortex-M.
//! - [`widened`]: a model's dense weights widened to int16, a table a firmware
//!   may keep in flash for faster dense layers (the `widened-dense` feature).
//!
//! ```
//! use tinycnn::Int8Model;
//!
//! fn classify(blob: &[u8], image: &[u8], scratch: &mut [i8]) -> Result<usize, tinycnn::Error> {
//!     let model = Int8Model::from_bytes(blob)?; // validates, copies nothing
//!     // `scratch` holds model.scratch_bytes() bytes: make it a static on an
//!     // MCU, sized by tinycnn::plan::int8_scratch_bytes_or_panic.
//!     Ok(model.classify(image, scratch)?.class)
//! }
//! # assert!(matches!(classify(b"not a model", &[0; 784], &mut []), Err(tinycnn::Error::Truncated { .. })));
//! ```
//!
//! Features: `std` (`Vec`-returning encoders), `defmt` (`defmt::Format` for
//! [`Error`] and friends), `widened-dense` (the Arm DSP kernels that read
//! [`widened`] tables). None is on by default.

#![no_std]
// `unsafe` exists only in `kernels::dsp`, `audio::dsp` and `audio::dsp16`
// (inline assembly for the Arm DSP extension), which allow it for themselves; everywhere else it
// stays an error. `forbid` could not be lifted by those modules, hence `deny`
// where they exist.
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
pub mod audio;
mod error;
pub mod format;
pub mod kernels;
pub mod network;
pub mod plan;
pub mod quant;
pub mod testvec;
pub mod text;
pub mod widened;

pub use arch::{Architecture, Layer, LayerName, Shape};
pub use error::{ClassNameProblem, Error, FrontEndProblem, TensorKind};
pub use format::{ClassNames, F32Model, Flavour, Int8Model, Model};
pub use network::{Observation, Prediction, Scratch};
