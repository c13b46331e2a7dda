//! What the fuzz targets share.

use tinycnn::Model;
use tinycnn::audio::FrontEnd;
use tinycnn::kernels::int8::Backend;

/// Classifies an image made of `data`'s bytes, reversed and padded with zeros; the class
/// must be one of the model's, and a valid model must classify and have readable class
/// names.
pub fn classify(model: &Model<'_>, data: &[u8]) {
    let architecture = model.architecture();
    let image: Vec<u8> = data
        .iter()
        .rev()
        .copied()
        .chain(std::iter::repeat(0))
        .take(architecture.input().values())
        .collect();
    let class = match model {
        Model::Int8(m) => {
            let mut scratch = vec![0i8; m.scratch_bytes()];
            m.classify(&image, &mut scratch)
                .expect("a valid model classifies")
                .class
        }
        Model::F32(m) => {
            let mut scratch = vec![0f32; m.scratch_len()];
            m.classify(&image, &mut scratch)
                .expect("a valid model classifies")
                .class
        }
    };
    assert!(class < architecture.classes());
    // Class names (version 4) were checked at load time: none, or one per class, each
    // readable.
    let names = model.class_names();
    assert!(names.is_empty() || names.len() == architecture.classes());
    assert_eq!(names.iter().count(), names.len());
    assert!((0..names.len()).all(|index| names.get(index).is_some()));
    if let Some(config) = model.front_end() {
        listen(model, &config, data);
    }
}

/// A model with a front end (version 5 or 6, checked at load time): the front end builds, and
/// its features of a clip made of `data`'s bytes fill the input and classify.
fn listen(model: &Model<'_>, config: &tinycnn::audio::FrontEndConfig, data: &[u8]) {
    let input = model.architecture().input();
    let frames = input.height;
    let samples =
        (frames - 1) * usize::from(config.hop_samples) + usize::from(config.window_samples);
    let clip: Vec<i16> = data
        .chunks(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]))
        .chain(std::iter::repeat(0))
        .take(samples)
        .collect();
    let mut tables = vec![0i32; config.table_len()];
    let mut work = vec![0i32; config.work_len()];
    let front_end = FrontEnd::new(config, &mut tables).expect("a valid front end builds");
    let mut features = vec![0i8; config.clip_features_len(samples)];
    assert_eq!(features.len(), input.values());
    assert_eq!(
        front_end.clip_features(&clip, &mut features, &mut work),
        Ok(frames)
    );
    let class = match model {
        Model::Int8(m) => {
            let mut scratch = vec![0i8; m.scratch_bytes()];
            m.run_quantized(Backend::FASTEST, &features, &mut scratch, |_| {})
                .expect("a valid model runs on its front end's features")
                .class
        }
        Model::F32(m) => {
            let values: Vec<f32> = features
                .iter()
                .map(|&q| {
                    config.output_scale
                        * f32::from(i16::from(q) - i16::from(config.output_zero_point))
                })
                .collect();
            let mut scratch = vec![0f32; m.scratch_len()];
            m.run_values(&values, &mut scratch, |_| {})
                .expect("a valid model runs on its front end's features")
                .class
        }
    };
    assert!(class < model.architecture().classes());
}
