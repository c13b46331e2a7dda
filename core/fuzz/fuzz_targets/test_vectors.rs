//! Test-vector files (`TCTV`): any bytes are rejected or read in full, every
//! record of the same size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::testvec::TestVectors;

fuzz_target!(|data: &[u8]| {
    if let Ok(vectors) = TestVectors::from_bytes(data) {
        assert_eq!(vectors.iter().count(), vectors.len());
        let sizes: Vec<(usize, usize)> = vectors
            .iter()
            .map(|vector| (vector.image.len(), vector.logits().count()))
            .collect();
        assert!(sizes.windows(2).all(|pair| pair[0] == pair[1]));
    }
});
