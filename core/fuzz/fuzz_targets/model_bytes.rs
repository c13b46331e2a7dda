//! Any byte string given to `Model::from_bytes` is rejected with an error or
//! loads as a valid model, and a valid model classifies without panicking.
//! (Random bytes rarely pass the CRC; `model_payload` fuzzes behind it.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::{F32Scratch, Int8Scratch, Model};

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = Model::from_bytes(data) {
        classify(&model, data);
    }
});

pub fn classify(model: &Model<'_>, data: &[u8]) {
    let mut image = [0u8; 784];
    for (pixel, &byte) in image.iter_mut().zip(data.iter().rev()) {
        *pixel = byte;
    }
    match model {
        Model::Int8(m) => assert!(m.classify(&image, &mut Int8Scratch::new()).digit < 10),
        Model::F32(m) => assert!(m.classify(&image, &mut F32Scratch::new()).digit < 10),
    }
}
