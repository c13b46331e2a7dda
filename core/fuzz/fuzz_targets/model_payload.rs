//! The payload checks behind the checksum: the input (minus its first byte,
//! which picks the flavour and the format version) becomes the payload of a
//! file with a correct header and CRC, so every mutation reaches the
//! description decoder, postcard decoding, the tensor validation, (versions
//! 4 to 6) the class names and (versions 5 and 6) the audio front end. Seed the corpus with real payloads
//! (`core/fuzz/seed-corpus.sh`) so the fuzzer also explores valid models,
//! which must then classify without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::Model;
use tinycnn::format::{HEADER_LEN, MAGIC, VERSION, crc32_of};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let mut file = Vec::with_capacity(HEADER_LEN + payload.len());
    file.extend_from_slice(&MAGIC);
    // Bit 0: the flavour; bits 1 to 3: the version minus 1, modulo the newest (1 to 6).
    let version = 1 + u16::from((selector >> 1) & 7) % VERSION;
    file.extend_from_slice(&version.to_le_bytes());
    file.push(if selector & 1 == 0 { 1 } else { 2 });
    file.push(0);
    file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = if version == 1 {
        crc32_of(&[payload])
    } else {
        crc32_of(&[&file[..12], payload])
    };
    file.extend_from_slice(&crc.to_le_bytes());
    file.extend_from_slice(payload);
    let _ = tinycnn::format::peek_architecture(&file);
    if let Ok(model) = Model::from_bytes(&file) {
        tinycnn_fuzz::classify(&model, payload);
    }
});
