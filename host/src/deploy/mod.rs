//! What runs an exported model: `host eval` ([`eval`]: the test set through the core kernels,
//! as a device computes it), `host predict` ([`predict`]: pictures and test images),
//! `host fixture` ([`fixture`]: test vectors the firmware checks itself against) and
//! `host inspect` ([`inspect`]: a model's layers and what it needs of a board). They classify
//! with the core's kernels built for the processor they run on ([`kernels`]).

#[cfg(target_arch = "x86_64")]
mod blocked;
#[cfg(target_arch = "x86_64")]
mod dense;
#[cfg(target_arch = "x86_64")]
mod depthwise;
pub mod eval;
pub mod fixture;
pub mod inspect;
pub mod kernels;
pub mod predict;
#[cfg(test)]
mod random_layers;
#[cfg(target_arch = "x86_64")]
mod requant;

use std::path::Path;

use anyhow::Context;

use crate::data::DataSet;

/// Reads and validates a model file, naming the file in any error.
pub fn read_model(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: cannot read the model", path.display()))?;
    tinycnn::Model::from_bytes(&bytes)
        .with_context(|| format!("{}: not a valid model", path.display()))?;
    Ok(bytes)
}

/// The names the model gives its classes, or none.
pub fn model_class_names(model: &tinycnn::Model<'_>) -> Vec<String> {
    model.class_names().iter().map(str::to_string).collect()
}

/// The names of the classes `model` predicts on `data`: the model's own, which a folder set's
/// (or CIFAR-10's) must equal (the same names in the same order: a model trained on other folders would be
/// scored against the wrong labels); else the data set's, numbers for IDX sets.
pub fn class_names(model: &tinycnn::Model<'_>, data: &DataSet) -> anyhow::Result<Vec<String>> {
    let classes = model.architecture().classes();
    let own = model_class_names(model);
    if own.is_empty() {
        let mut names = data.class_names.clone();
        names.extend((names.len()..classes).map(|class| class.to_string()));
        names.truncate(classes);
        return Ok(names);
    }
    use crate::data::set::Origin;
    if matches!(
        data.origin,
        Origin::Folders(_) | Origin::Cifar10(_) | Origin::Audio(_)
    ) && own != data.class_names
    {
        anyhow::bail!(
            "the model's classes are {}, the data set's are {}: a model is evaluated on \
             pictures of its own classes",
            list_names(&own),
            list_names(&data.class_names)
        );
    }
    Ok(own)
}

fn list_names(names: &[String]) -> String {
    const SHOWN: usize = 12;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(", ... ({} in all)", names.len()));
    }
    text
}
