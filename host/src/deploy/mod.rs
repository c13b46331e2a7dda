//! What runs an exported model: `host eval` ([`eval`]: the test set through the core kernels,
//! as a device computes it), `host predict` ([`predict`]: pictures and test images),
//! `host fixture` ([`fixture`]: test vectors the firmware checks itself against) and
//! `host inspect` ([`inspect`]: a model's layers and what it needs of a board). They classify
//! with the core's kernels built for the processor they run on ([`kernels`]).

#[cfg(target_arch = "x86_64")]
mod blocked;
pub mod eval;
pub mod fixture;
pub mod inspect;
pub mod kernels;
pub mod predict;

use std::path::Path;

use anyhow::Context;

/// Reads and validates a model file, naming the file in any error.
pub fn read_model(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: cannot read the model", path.display()))?;
    tinycnn::Model::from_bytes(&bytes)
        .with_context(|| format!("{}: not a valid model", path.display()))?;
    Ok(bytes)
}
