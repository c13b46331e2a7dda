//! Firmware vs host: the logits the firmware prints in QEMU for its embedded
//! test digits must equal, byte for byte, what the core computes on the host
//! for the same digits with the shipped model.
//!
//! Needs what `.ci/run` installs: the thumbv7em-none-eabihf target,
//! flip-link, defmt-print and qemu-system-arm.

use std::path::PathBuf;
use std::process::Command;

use tinycnn::testvec::TestVectors;
use tinycnn::{Int8Model, Int8Scratch};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `digit 3: predicted 7 (label 7), logits [-12, ...], 223980 counts` ->
/// (3, [-12, ...]).
fn parse(line: &str) -> Option<(usize, [i8; 10])> {
    let rest = &line[line.find("digit ")? + 6..];
    let index = rest[..rest.find(':')?].parse().ok()?;
    let list = &rest[rest.find("logits [")? + 8..];
    let values: Vec<i8> = list[..list.find(']')?]
        .split(',')
        .map(|v| v.trim().parse())
        .collect::<Result<_, _>>()
        .ok()?;
    Some((index, values.try_into().ok()?))
}

#[test]
fn firmware_logits_in_qemu_equal_the_host_core() {
    let data = workspace().join("data");
    let model_bytes = std::fs::read(data.join("model-int8.tcnn")).expect("data/model-int8.tcnn");
    let vector_bytes = std::fs::read(data.join("digits.tctv")).expect("data/digits.tctv");
    let model = Int8Model::from_bytes(&model_bytes).unwrap();
    let vectors = TestVectors::from_bytes(&vector_bytes).unwrap();

    // The host's logits for the embedded digits, computed now (the file's
    // copy must agree, or the fixture is stale).
    let mut scratch = Box::new(Int8Scratch::new());
    let host: Vec<[i8; 10]> = vectors
        .iter()
        .map(|v| model.classify(v.image, &mut scratch).logits)
        .collect();
    for (index, (vector, logits)) in vectors.iter().zip(&host).enumerate() {
        assert_eq!(
            &vector.logits, logits,
            "data/digits.tctv is stale at digit {index}: run `host fixture`"
        );
    }

    let output = Command::new("cargo")
        .args(["run", "--release", "--quiet"])
        .current_dir(workspace().join("firmware"))
        // The firmware is its own project with its own target and linker.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs the firmware in QEMU (see firmware/README.md)");
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "firmware exited with {:?}\nstdout:\n{log}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Vec<(usize, [i8; 10])> = log.lines().filter_map(parse).collect();
    assert_eq!(
        printed.len(),
        host.len(),
        "one logits line per digit in:\n{log}"
    );
    for (position, (index, logits)) in printed.iter().enumerate() {
        assert_eq!(*index, position);
        assert_eq!(
            logits, &host[*index],
            "digit {index}: firmware and host logits differ"
        );
    }
    println!(
        "firmware in QEMU: {} digits, logits identical to the host core's",
        printed.len()
    );
}

#[test]
fn log_lines_parse() {
    let line = "INFO  digit 12: predicted 7 (label 7), logits [-128, 3, 0, 127, -5, 6, 7, 8, 9, -10], 22398033 counts";
    assert_eq!(
        parse(line),
        Some((12, [-128, 3, 0, 127, -5, 6, 7, 8, 9, -10]))
    );
    assert_eq!(parse("INFO  all 100 digits match the host"), None);
}
