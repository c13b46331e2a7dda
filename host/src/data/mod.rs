//! The data sets: IDX files ([`idx`]) and a directory of the four MNIST-format files
//! ([`mnist`]).

pub mod idx;
pub mod mnist;

pub use mnist::{DataError, Mnist, Split};

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
