//! Test-vector files (`TCTV`): any bytes are rejected or read in full.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::testvec::TestVectors;

fuzz_target!(|data: &[u8]| {
    if let Ok(vectors) = TestVectors::from_bytes(data) {
        assert_eq!(vectors.iter().count(), vectors.len());
    }
});
