//! The data sets: IDX files ([`idx`]), a directory of the four MNIST-format files ([`mnist`]),
//! and fetching a known set into a directory that lacks it ([`download`]).

pub mod download;
pub mod idx;
pub mod mnist;

use std::path::{Path, PathBuf};

pub use download::Dataset;
pub use mnist::{DataError, Mnist, Split};

use download::{FetchOptions, FetchProgress};

/// Makes sure `dir` holds `dataset`: downloads the files it lacks when `fetch` is given,
/// unless a file it does hold belongs to another data set (a user's own MNIST-format set is
/// never completed with another set's files). Returns the files downloaded; a directory that
/// still lacks files is reported by [`Mnist::load`].
pub fn ensure(
    dir: &Path,
    dataset: Dataset,
    fetch: Option<&FetchOptions>,
    progress: &mut dyn FetchProgress,
) -> Result<Vec<PathBuf>, download::FetchError> {
    let missing = download::missing(dir);
    let Some(options) = fetch.filter(|_| !missing.is_empty()) else {
        return Ok(Vec::new());
    };
    let present_are_the_datasets = mnist::Role::ALL
        .into_iter()
        .filter(|role| !missing.contains(role))
        .all(|role| download::is_dataset_file(dataset, role, dir));
    if !present_are_the_datasets {
        return Ok(Vec::new());
    }
    download::fetch(dataset, dir, &missing, options, progress)
}

/// `host data`: the data set's shapes and training image `index` as 28x28 values with its
/// label, as text.
pub fn show(dir: &std::path::Path, index: usize) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let data = Mnist::load(dir)?;
    let mut out = String::new();
    let _ = writeln!(out, "{}", data.describe());
    for (name, split) in [("train", &data.train), ("test", &data.test)] {
        let _ = writeln!(
            out,
            "{name} images: {}x{side}x{side}, {name} labels: {}",
            split.len(),
            split.labels.len(),
            side = mnist::IMAGE_SIDE
        );
    }
    let _ = writeln!(
        out,
        "classes: {} (a network for this set ends in dense:{})",
        data.classes(),
        data.classes()
    );
    let Some(image) = data.train.image(index) else {
        anyhow::bail!(
            "--index {index} is past the last training image ({})",
            data.train.len() - 1
        );
    };
    let _ = writeln!(out, "training image {index}:");
    out.push_str(&mnist::format_image(image));
    let _ = writeln!(out, "label: {}", data.train.labels[index]);
    Ok(out)
}
