//! What the fuzz targets share.

use tinycnn::Model;

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
}
