//! Classifies the embedded test vectors with the int8 network and this
//! target's fastest kernels, checks every image's logits against the host's,
//! reports instructions (QEMU) or cycles (board) per inference and per layer,
//! and the memory use; exits with status 0 only if every output matched.

#![no_std]
#![no_main]

use tinycnn::kernels::int8::Backend;
use tinycnn_firmware::{self as firmware, ExitCode, memory, profile};

/// Host logits shown when an image's logits differ.
const SHOWN: usize = 64;

#[cortex_m_rt::entry]
fn main() -> ! {
    let board = firmware::init();
    let model = firmware::load_model();
    let vectors = firmware::load_test_vectors(&model);
    let scratch = firmware::scratch();
    let backend = Backend::FASTEST;
    let architecture = model.architecture();
    let class_names = model.class_names();
    defmt::info!(
        "model: {=usize} B at {=usize:#010x}, {=usize} classes, input {=usize}x{=usize}x{=usize}; \
         {=usize} test vectors; {=usize} MACs per inference; {=usize} B of scratch; {=str} kernels",
        firmware::MODEL.len(),
        firmware::MODEL.as_ptr() as usize,
        architecture.classes(),
        architecture.input().height,
        architecture.input().width,
        architecture.input().channels,
        vectors.len(),
        architecture.macs(),
        firmware::SCRATCH_BYTES,
        backend.name()
    );

    let mut mismatches = 0usize;
    let mut totals = profile::Totals::default();
    let mut written = memory::Written::new();
    for (index, vector) in vectors.iter().enumerate() {
        // The first inferences run on a painted scratch (outside the counts).
        let paint = memory::Written::PAINTS.get(index).copied();
        if let Some(paint) = paint {
            scratch.fill(paint);
        }
        let (prediction, counts) = profile::classify(
            &model,
            backend,
            vector.image,
            scratch,
            &board.counter,
            |_| {},
        );
        let prediction = match prediction {
            Ok(prediction) => prediction,
            Err(error) => {
                defmt::error!("image {=usize}: cannot classify: {}", index, error);
                firmware::exit(ExitCode::BadBlob)
            }
        };
        totals.add(&counts);

        let injected_fault = cfg!(feature = "wrong-expected") && index == 3;
        if vector.matches(prediction.logits) && !injected_fault {
            // The host-side parity test (tests/tests/firmware.rs) parses these
            // lines and compares the logits with its own computation. A model
            // file of version 4 may name its classes: then the names follow
            // the numbers (a label outside the classes has none: "?").
            match class_names.get(prediction.class) {
                Some(name) => defmt::info!(
                    "image {=usize}: predicted {=usize} \"{=str}\" (label {=u16} \"{=str}\"), \
                     logits {}, {=u32} counts",
                    index,
                    prediction.class,
                    name,
                    vector.label,
                    class_names.get(usize::from(vector.label)).unwrap_or("?"),
                    prediction.logits,
                    counts.total
                ),
                None => defmt::info!(
                    "image {=usize}: predicted {=usize} (label {=u16}), logits {}, {=u32} counts",
                    index,
                    prediction.class,
                    vector.label,
                    prediction.logits,
                    counts.total
                ),
            }
        } else {
            mismatches += 1;
            // The host's logits for the log (the first SHOWN of them).
            let mut expected = [0i8; SHOWN];
            let shown = expected
                .iter_mut()
                .zip(vector.logits())
                .map(|(slot, logit)| *slot = logit)
                .count();
            defmt::error!(
                "image {=usize}: logits {} differ from the host's {}{=str}",
                index,
                prediction.logits,
                expected.get(..shown).unwrap_or(&[]),
                if injected_fault {
                    " (a fault injected by the wrong-expected feature)"
                } else {
                    ""
                }
            );
        }
        if let Some(paint) = paint {
            written.add(scratch, paint);
        }
    }

    totals.log(&model, backend);
    firmware::memory::log(&firmware::memory::report());
    // The scratch's plan and the bytes of it the first inferences wrote (the plan's peak,
    // measured): all of them, from the first to the last, or the plan has room to spare
    // (`firmware/ci.sh` and the parity test check the line).
    let layout = model.layout(backend);
    let (first, end) = written.range();
    defmt::info!(
        "scratch: {=usize} B planned ({=str}: band area {=usize} + frame {=usize}), static {=usize} B; an inference writes bytes {=usize}..{=usize}",
        layout.arena(),
        if layout.out_of_place {
            "out of place"
        } else {
            "in bands"
        },
        layout.band_area,
        layout.frame,
        firmware::SCRATCH_BYTES,
        first,
        end
    );

    if mismatches == 0 {
        defmt::info!("all {=usize} images match the host", vectors.len());
        firmware::exit(ExitCode::Success);
    }
    defmt::error!(
        "{=usize} of {=usize} images differ from the host",
        mismatches,
        vectors.len()
    );
    firmware::exit(ExitCode::Mismatch)
}
