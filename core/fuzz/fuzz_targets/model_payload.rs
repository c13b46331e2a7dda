//! The payload checks behind the checksum: the input (minus its first byte,
//! which picks the flavour) becomes the payload of a file with a correct
//! header and CRC, so every mutation reaches postcard decoding and the
//! tensor validation. Seed the corpus with real payloads
//! (`core/fuzz/seed-corpus.sh`) so the fuzzer also explores valid models,
//! which must then classify without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::format::{HEADER_LEN, MAGIC, VERSION, crc32};
use tinycnn::{F32Scratch, Int8Scratch, Model};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let mut file = Vec::with_capacity(HEADER_LEN + payload.len());
    file.extend_from_slice(&MAGIC);
    file.extend_from_slice(&VERSION.to_le_bytes());
    file.push(if selector & 1 == 0 { 1 } else { 2 });
    file.push(0);
    file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    file.extend_from_slice(&crc32(payload).to_le_bytes());
    file.extend_from_slice(payload);
    if let Ok(model) = Model::from_bytes(&file) {
        let mut image = [0u8; 784];
        for (pixel, &byte) in image.iter_mut().zip(payload.iter().rev()) {
            *pixel = byte;
        }
        match model {
            Model::Int8(m) => assert!(m.classify(&image, &mut Int8Scratch::new()).digit < 10),
            Model::F32(m) => assert!(m.classify(&image, &mut F32Scratch::new()).digit < 10),
        }
    }
});
