//! Choice of burn's CPU backend.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A burn CPU backend that `host` can train and run the network on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn-flex: pure-Rust CPU backend with GEMM convolutions, multi-threaded; the network's
    /// convolution blocks run as fused ops (the `fastconv` module).
    Flex,
    /// burn-ndarray: deprecated in burn 0.22; burn's own ops with direct-loop convolutions,
    /// over 100x slower than flex here.
    Ndarray,
}

impl BackendKind {
    /// Name as `--backend` spells it.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
        }
    }

    /// The plain (inference) device of this backend.
    pub fn device(self) -> Result<Device, BackendUnavailable> {
        match self {
            BackendKind::Flex => Ok(Device::flex()),
            BackendKind::Ndarray => ndarray_device(),
        }
    }
}

#[cfg(feature = "ndarray")]
fn ndarray_device() -> Result<Device, BackendUnavailable> {
    // Selected on purpose by the user, who was told in --help that it is deprecated.
    #[allow(deprecated)]
    Ok(Device::ndarray())
}

#[cfg(not(feature = "ndarray"))]
fn ndarray_device() -> Result<Device, BackendUnavailable> {
    Err(BackendUnavailable(BackendKind::Ndarray))
}

/// A backend this build was compiled without.
#[derive(Debug, thiserror::Error)]
#[error(
    "this build of host has no {} backend; rebuild with `cargo build --release -p tinycnn-host --features {}`",
    .0.name(),
    .0.name()
)]
pub struct BackendUnavailable(pub BackendKind);
