//! `host fixture`: test vectors for the firmware: the first test images, their labels and the
//! int8 logits the core computes for them, in a file that names the model it belongs to
//! (`TCTV`, see `core/FORMAT.md`).

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use tinycnn::Int8Model;

use crate::atomic;
use crate::data::mnist::Mnist;
use crate::deploy::eval::{check_data_fits, int8_logits};

/// Test images written by default.
pub const DEFAULT_COUNT: usize = 100;

/// The test-vector file that belongs beside `model`: its name with the
/// extension `.tctv`, where the firmware looks for it.
pub fn default_path(model: &Path) -> PathBuf {
    model.with_extension("tctv")
}

/// What `host fixture` writes.
#[derive(Clone, Debug)]
pub struct FixtureOptions {
    /// The int8 model.
    pub model: PathBuf,
    /// The data set's directory.
    pub data_dir: PathBuf,
    /// Test images to include.
    pub count: usize,
    /// The output file [default: [`default_path`]].
    pub out: Option<PathBuf>,
    /// Replace the output file if it exists.
    pub overwrite: bool,
}

/// What `host fixture` wrote.
#[derive(Clone, Debug)]
pub struct FixtureReport {
    /// The file.
    pub path: PathBuf,
    /// Vectors written.
    pub vectors: usize,
    /// File size.
    pub bytes: usize,
    /// Vectors whose logits pick the label.
    pub correct: usize,
}

/// `host fixture`.
pub fn run(options: &FixtureOptions) -> anyhow::Result<FixtureReport> {
    let bytes = super::read_model(&options.model)?;
    let model = Int8Model::from_bytes(&bytes).with_context(|| {
        format!(
            "{}: test vectors need an int8 model",
            options.model.display()
        )
    })?;
    let path = options
        .out
        .clone()
        .unwrap_or_else(|| default_path(&options.model));
    atomic::refuse_existing(std::slice::from_ref(&path), options.overwrite)?;
    let data = Mnist::load(&options.data_dir)?;
    check_data_fits(model.architecture(), &data)?;
    ensure!(
        (1..=data.test.len()).contains(&options.count),
        "--count must be between 1 and {} (the test images)",
        data.test.len()
    );
    let test = data.test.head(options.count);
    let logits = int8_logits(&model, &test.pixels, 1);
    let mut records = Vec::new();
    let image_len = model.input_shape().values();
    for ((logits, image), &label) in logits
        .iter()
        .zip(test.pixels.chunks_exact(image_len))
        .zip(&test.labels)
    {
        tinycnn::testvec::push_record(&mut records, u16::from(label), image, logits);
    }
    let file = tinycnn::testvec::encode(
        model.header().crc,
        image_len,
        model.architecture().classes(),
        &records,
    )?;
    atomic::write(&path, &file).with_context(|| format!("{}: cannot write", path.display()))?;
    let correct = logits
        .iter()
        .zip(&test.labels)
        .filter(|&(l, &label)| tinycnn::kernels::argmax(l) == usize::from(label))
        .count();
    Ok(FixtureReport {
        path,
        vectors: logits.len(),
        bytes: file.len(),
        correct,
    })
}
