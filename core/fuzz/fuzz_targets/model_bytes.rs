//! Any byte string given to `Model::from_bytes` is rejected with an error or
//! loads as a valid model, and a valid model classifies without panicking; the
//! description alone (`peek_architecture`, what the firmware reads while
//! compiling) never panics either. (Random bytes rarely pass the CRC;
//! `model_payload` fuzzes behind it.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::{Model, format};

fuzz_target!(|data: &[u8]| {
    let _ = format::peek_architecture(data);
    let _ = tinycnn::plan::int8_scratch_bytes_of_model(data);
    if let Ok(model) = Model::from_bytes(data) {
        tinycnn_fuzz::classify(&model, data);
    }
});
