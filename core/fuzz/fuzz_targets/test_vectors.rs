//! Test-vector files (`TCTV`): any bytes are rejected or read in full, every
//! record of the same size (version 4: a clip of whole samples).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::testvec::TestVectors;

fuzz_target!(|data: &[u8]| {
    if let Ok(vectors) = TestVectors::from_bytes(data) {
        assert_eq!(vectors.iter().count(), vectors.len());
        let sizes: Vec<(usize, usize)> = vectors
            .iter()
            .map(|vector| {
                let outputs = vector.logits().count() + vector.f32_outputs().count();
                // Matching the recorded outputs against themselves never panics.
                let int8: Vec<i8> = vector.logits().collect();
                let f32s: Vec<f32> = vector.f32_outputs().collect();
                let _ = (vector.matches(&int8), vector.matches_f32(&f32s));
                // A version 4 record's clip is whole samples.
                if vectors.holds_clips() {
                    assert_eq!(vector.samples().count() * 2, vector.image.len());
                }
                (vector.image.len(), outputs)
            })
            .collect();
        assert!(sizes.windows(2).all(|pair| pair[0] == pair[1]));
    }
});
