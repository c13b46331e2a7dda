//! `host fixture`: test vectors for the firmware and for other implementations of the format:
//! the first test images, their labels and the outputs the core computes for them (int8 bytes,
//! or f32 values for an f32 model), in a file that names the model it belongs to (`TCTV`, see
//! `core/FORMAT.md`). For a keyword model (with an audio front end) the records hold the test
//! clips themselves, 16-bit samples (`TCTV` version 4): a device runs each through the front
//! end the model records, then the network.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use tinycnn::Model;

use crate::atomic;
use crate::data::{DataSet, Fit, FolderOptions};
use crate::deploy::eval::{check_data_fits, f32_logits, int8_logits};

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
    /// The model, int8 (outputs recorded byte for byte) or f32 (by value).
    pub model: PathBuf,
    /// The data set's directory; `None` for random pictures.
    pub data_dir: Option<PathBuf>,
    /// Test images to include.
    pub count: usize,
    /// The output file [default: [`default_path`]].
    pub out: Option<PathBuf>,
    /// Replace the output file if it exists.
    pub overwrite: bool,
    /// How pictures of another size are fitted to the model's input (folder sets).
    pub fit: Fit,
    /// Leave out damaged pictures instead of failing (folder sets).
    pub skip_damaged: bool,
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
    /// Vectors whose logits pick the label; `None` for a network whose output is values.
    pub correct: Option<usize>,
}

/// Seed of [`random_pixels`].
pub const RANDOM_SEED: u64 = 0x7463_6e6e;

/// `count` bytes, each the top byte of one splitmix64 output of a stream seeded with `seed`
/// (one call per byte): the same on every machine, and simple to write again in any language
/// (`data/mlperf/README.md` spells it out).
pub fn splitmix_bytes(seed: u64, count: usize) -> Vec<u8> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 56) as u8
        })
        .collect()
}

/// `count` pixels of [`splitmix_bytes`] seeded with [`RANDOM_SEED`]: pictures of any shape
/// for networks that MNIST does not fit.
pub fn random_pixels(count: usize) -> Vec<u8> {
    splitmix_bytes(RANDOM_SEED, count)
}

/// The outputs of one flavour, image by image.
enum Outputs {
    Int8(Vec<Vec<i8>>),
    F32(Vec<Vec<f32>>),
}

impl Outputs {
    fn len(&self) -> usize {
        match self {
            Outputs::Int8(outputs) => outputs.len(),
            Outputs::F32(outputs) => outputs.len(),
        }
    }

    /// The predicted class of image `index`.
    fn class(&self, index: usize) -> usize {
        match self {
            Outputs::Int8(outputs) => tinycnn::kernels::argmax(&outputs[index]),
            Outputs::F32(outputs) => tinycnn::kernels::argmax(&outputs[index]),
        }
    }
}

/// `host fixture`.
pub fn run(options: &FixtureOptions) -> anyhow::Result<FixtureReport> {
    let bytes = super::read_model(&options.model)?;
    let model = Model::from_bytes(&bytes)
        .with_context(|| format!("{}: not a valid model", options.model.display()))?;
    let architecture = *model.architecture();
    let path = options
        .out
        .clone()
        .unwrap_or_else(|| default_path(&options.model));
    atomic::refuse_existing(std::slice::from_ref(&path), options.overwrite)?;
    if let Some(front_end) = model.front_end() {
        return clip_fixture(options, &model, &front_end, path);
    }
    let image_len = architecture.input().values();
    let (pixels, labels) = match &options.data_dir {
        Some(dir) => {
            let folder_options =
                FolderOptions::for_input(architecture.input(), options.fit, options.skip_damaged);
            let data = DataSet::load(dir, &folder_options)?;
            check_data_fits(&architecture, &data)?;
            super::class_names(&model, &data)?;
            ensure!(
                (1..=data.test.len()).contains(&options.count),
                "--count must be between 1 and {} (the test images)",
                data.test.len()
            );
            let test = data.test.head(options.count);
            (test.pixels, Some(test.labels))
        }
        None => (random_pixels(options.count * image_len), None),
    };
    let outputs = match &model {
        Model::Int8(model) => Outputs::Int8(int8_logits(model, &pixels, 1)),
        Model::F32(model) => Outputs::F32(f32_logits(model, &pixels, 1)),
    };
    // Random pictures have no labels: each records the class the host computed (0 for a
    // network whose output is values).
    let labels: Vec<u16> = labels.unwrap_or_else(|| {
        (0..outputs.len())
            .map(|index| {
                if architecture.is_classifier() {
                    u16::try_from(outputs.class(index)).unwrap_or(u16::MAX)
                } else {
                    0
                }
            })
            .collect()
    });
    let mut records = Vec::new();
    let images = pixels.chunks_exact(image_len).zip(&labels);
    match &outputs {
        Outputs::Int8(logits) => {
            for (logits, (image, &label)) in logits.iter().zip(images) {
                tinycnn::testvec::push_record(&mut records, label, image, logits);
            }
        }
        Outputs::F32(values) => {
            for (values, (image, &label)) in values.iter().zip(images) {
                tinycnn::testvec::push_f32_record(&mut records, label, image, values);
            }
        }
    }
    let file = tinycnn::testvec::encode_as(
        model.flavour(),
        model.header().crc,
        image_len,
        architecture.classes(),
        &records,
    )?;
    atomic::write(&path, &file).with_context(|| format!("{}: cannot write", path.display()))?;
    let correct = (0..outputs.len())
        .filter(|&index| labels.get(index).map(|&l| usize::from(l)) == Some(outputs.class(index)))
        .count();
    Ok(FixtureReport {
        path,
        vectors: outputs.len(),
        bytes: file.len(),
        correct: architecture.is_classifier().then_some(correct),
    })
}

/// [`run`] for a keyword model: the first test clips (or, without a data set, clips of
/// [`splitmix_bytes`] samples), cut to the samples the network's frames span, with the
/// outputs of the model on their features.
fn clip_fixture(
    options: &FixtureOptions,
    model: &Model<'_>,
    front_end: &tinycnn::audio::FrontEndConfig,
    path: PathBuf,
) -> anyhow::Result<FixtureReport> {
    use crate::data::audio;
    use crate::deploy::eval::{Kernels, classify_f32, classify_int8};
    let architecture = *model.architecture();
    let samples = tinycnn::testvec::clip_samples(front_end, architecture.input().height);
    let (clips, labels): (Vec<i16>, Option<Vec<u16>>) = match &options.data_dir {
        Some(dir) => {
            let folder_options =
                FolderOptions::for_input(architecture.input(), options.fit, options.skip_damaged)
                    .with_front_end(Some(*front_end));
            let data = DataSet::load(dir, &folder_options)?;
            check_data_fits(&architecture, &data)?;
            super::class_names(model, &data)?;
            ensure!(
                (1..=data.test.len()).contains(&options.count),
                "--count must be between 1 and {} (the test clips)",
                data.test.len()
            );
            let test = data
                .test
                .select(&classes_in_turn(&data.test.labels, options.count));
            let stored = test
                .audio
                .as_ref()
                .context("the test split holds no clips")?;
            let clips = (0..options.count)
                .filter_map(|index| stored.clip(index))
                .flat_map(|clip| audio::fit_clip(clip, samples))
                .collect();
            (clips, Some(test.labels))
        }
        None => {
            let bytes = splitmix_bytes(RANDOM_SEED, options.count * samples * 2);
            let clips = bytes
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]]) / 8)
                .collect();
            (clips, None)
        }
    };
    let features = audio::Features::new(*front_end)?.of_clips(&clips, samples)?;
    let input_len = architecture.input().values();
    let mut outputs: Vec<Vec<u8>> = Vec::new();
    let mut classes = Vec::new();
    for input in features.chunks_exact(input_len) {
        let (encoded, class): (Vec<u8>, usize) = match model {
            Model::Int8(m) => {
                let mut scratch = vec![0i8; m.scratch_bytes_with_kernels()];
                let mut fast = super::kernels::FastInt8::for_model(m.record_bytes());
                let p = classify_int8(m, Kernels::Portable, &mut fast, input, &mut scratch)?;
                (p.logits.iter().map(|&l| l as u8).collect(), p.class)
            }
            Model::F32(m) => {
                let mut scratch = vec![0f32; m.scratch_len()];
                let mut fast = super::kernels::FastF32::for_model(m.record_bytes());
                let p = classify_f32(m, Kernels::Portable, &mut fast, input, &mut scratch)?;
                (
                    p.logits.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    p.class,
                )
            }
        };
        outputs.push(encoded);
        classes.push(class);
    }
    // Random clips have no labels: each records the class the host computed.
    let labels: Vec<u16> = labels.unwrap_or_else(|| {
        classes
            .iter()
            .map(|&class| u16::try_from(class).unwrap_or(u16::MAX))
            .collect()
    });
    let mut records = Vec::new();
    for ((clip, output), &label) in clips.chunks_exact(samples).zip(&outputs).zip(&labels) {
        tinycnn::testvec::push_clip_record(&mut records, label, clip, output);
    }
    let file = tinycnn::testvec::encode_clips(
        model.flavour(),
        model.header().crc,
        samples,
        architecture.classes(),
        &records,
    )?;
    atomic::write(&path, &file).with_context(|| format!("{}: cannot write", path.display()))?;
    let correct = classes
        .iter()
        .zip(&labels)
        .filter(|&(&class, &label)| usize::from(label) == class)
        .count();
    Ok(FixtureReport {
        path,
        vectors: outputs.len(),
        bytes: file.len(),
        correct: architecture.is_classifier().then_some(correct),
    })
}

/// The first `count` indices of `labels` taking each class in turn (the first clip of each
/// class, then the second of each, ...): a keyword set's test split comes class by class, and a
/// firmware's few test clips should hear every word.
fn classes_in_turn(labels: &[u16], count: usize) -> Vec<usize> {
    let mut by_class: std::collections::BTreeMap<u16, std::collections::VecDeque<usize>> =
        std::collections::BTreeMap::new();
    for (index, &label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push_back(index);
    }
    let mut picked = Vec::with_capacity(count.min(labels.len()));
    while picked.len() < count && by_class.values().any(|queue| !queue.is_empty()) {
        for queue in by_class.values_mut() {
            if picked.len() < count
                && let Some(index) = queue.pop_front()
            {
                picked.push(index);
            }
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    #[test]
    fn classes_in_turn_takes_each_class_in_turn() {
        let labels = [0, 0, 0, 1, 1, 2];
        assert_eq!(super::classes_in_turn(&labels, 5), vec![0, 3, 5, 1, 4]);
        assert_eq!(super::classes_in_turn(&labels, 9), vec![0, 3, 5, 1, 4, 2]);
        assert_eq!(super::classes_in_turn(&labels, 0), Vec::<usize>::new());
    }
}
