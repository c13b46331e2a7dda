//! Classifies the embedded test vectors with the int8 network and this
//! target's fastest kernels, checks every digit's logits against the host's,
//! reports instructions (QEMU) or cycles (board) per inference and per layer,
//! and the memory use; exits with status 0 only if every output matched.

#![no_std]
#![no_main]

use tinycnn::arch::MACS;
use tinycnn::kernels::int8::Backend;
use tinycnn_firmware::{self as firmware, ExitCode, profile};

#[cortex_m_rt::entry]
fn main() -> ! {
    let board = firmware::init();
    let model = firmware::load_model();
    let vectors = firmware::load_test_vectors();
    let scratch = firmware::scratch();
    let backend = Backend::FASTEST;
    defmt::info!(
        "model: {=usize} B at {=usize:#010x}; {=usize} test vectors; {=usize} MACs per inference; {=str} kernels",
        firmware::MODEL.len(),
        firmware::MODEL.as_ptr() as usize,
        vectors.len(),
        MACS,
        backend.name()
    );

    let mut mismatches = 0usize;
    let mut totals = profile::Totals::default();
    for (index, vector) in vectors.iter().enumerate() {
        let (prediction, counts) = profile::classify(
            &model,
            backend,
            vector.image,
            scratch,
            &board.counter,
            |_, _| {},
        );
        totals.add(&counts);

        let mut expected = vector.logits;
        if cfg!(feature = "wrong-expected") && index == 3 {
            expected[0] ^= 1;
        }
        if prediction.logits == expected {
            // The host-side parity test (tests/tests/firmware.rs) parses these
            // lines and compares the logits with its own computation.
            defmt::info!(
                "digit {=usize}: predicted {=u8} (label {=u8}), logits {}, {=u32} counts",
                index,
                prediction.digit,
                vector.label,
                prediction.logits,
                counts.total
            );
        } else {
            mismatches += 1;
            defmt::error!(
                "digit {=usize}: logits {} differ from the host's {}",
                index,
                prediction.logits,
                expected
            );
        }
    }

    totals.log(backend);
    firmware::memory::log(&firmware::memory::report());

    if mismatches == 0 {
        defmt::info!("all {=usize} digits match the host", vectors.len());
        firmware::exit(ExitCode::Success);
    }
    defmt::error!(
        "{=usize} of {=usize} digits differ from the host",
        mismatches,
        vectors.len()
    );
    firmware::exit(ExitCode::Mismatch)
}
