//! Firmware vs host: the logits the firmware prints in QEMU for its embedded test images must
//! equal, byte for byte, what the core computes on the host for the same images, for each
//! shipped model (the reference network, and the small one through `TINYCNN_MODEL`). The memory
//! the firmware reports must also stay within what `host inspect` tells users to plan for, and
//! its scratch must be what the plan says: a static of the plan's bytes, all of them written
//! by an inference (the plan's peak, measured), and the RAM at peak that plus the stack and
//! the other statics.
//!
//! It runs the default build, QEMU's netduinoplus2 (a Cortex-M4F); `firmware/ci.sh` runs the
//! other machines, whose firmware compares the logits with the embedded host ones itself.
//!
//! Needs what `.ci/run` installs: the thumbv7em-none-eabihf target, flip-link, defmt-print and
//! qemu-system-arm.

use std::path::PathBuf;
use std::process::Command;

use tinycnn::Int8Model;
use tinycnn::testvec::TestVectors;
use tinycnn_host::deploy::inspect::{
    FIRMWARE_RAM_BYTES, FIRMWARE_WIDENED_KERNELS_BYTES, firmware_code_bytes,
};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `image 3: predicted 7 (label 7), logits [-12, ...], 223980 counts` -> (3, [-12, ...]);
/// with class names, `image 3: predicted 7 "seven" (label 7 "seven"), logits [...], ...`
/// (the logits are the last list on the line, whatever the names hold).
fn parse(line: &str) -> Option<(usize, Vec<i8>)> {
    let rest = &line[line.find("image ")? + 6..];
    let index = rest[..rest.find(':')?].parse().ok()?;
    let list = &rest[rest.rfind("logits [")? + 8..];
    let values: Vec<i8> = list[..list.find(']')?]
        .split(',')
        .map(|v| v.trim().parse())
        .collect::<Result<_, _>>()
        .ok()?;
    Some((index, values))
}

/// The number after `key` in `line`.
fn number_after(line: &str, key: &str) -> Option<usize> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `... an inference writes bytes 0..10624` -> (0, 10624).
fn scratch_written(line: &str) -> Option<(usize, usize)> {
    let range = &line[line.find("writes bytes ")? + 13..];
    let (first, end) = range.split_once("..")?;
    let end: String = end.chars().take_while(char::is_ascii_digit).collect();
    Some((first.parse().ok()?, end.parse().ok()?))
}

/// Runs the firmware with the model `<dir>/<name>.tcnn` and its test vectors `<name>.tctv` and
/// checks its log; with `widen_dense`, built with the `widen-dense` feature (the dense weights
/// widened to int16 in flash beside the model).
fn check_model_in_qemu(dir: &str, name: &str, widen_dense: bool) {
    let data = workspace().join(dir);
    let model_path = data.join(format!("{name}.tcnn"));
    let vectors_path = data.join(format!("{name}.tctv"));
    let model_bytes = std::fs::read(&model_path).expect("the shipped int8 model");
    let vector_bytes = std::fs::read(&vectors_path).expect("its test vectors");
    let model = Int8Model::from_bytes(&model_bytes).unwrap();
    let vectors = TestVectors::from_bytes(&vector_bytes).unwrap();
    vectors
        .check_model(&model)
        .unwrap_or_else(|e| panic!("{}: {e}", vectors_path.display()));

    // The host's logits for the embedded images, computed now (the file's copy must agree, or
    // the fixture is stale).
    let mut scratch = vec![0i8; model.scratch_bytes()];
    let host: Vec<Vec<i8>> = vectors
        .iter()
        .map(|v| {
            model
                .classify(v.image, &mut scratch)
                .unwrap()
                .logits
                .to_vec()
        })
        .collect();
    for (index, (vector, logits)) in vectors.iter().zip(&host).enumerate() {
        assert!(
            vector.matches(logits),
            "{} is stale at image {index}: run `host fixture`",
            vectors_path.display()
        );
    }

    let features: &[&str] = if widen_dense {
        &["--features", "widen-dense"]
    } else {
        &[]
    };
    let output = Command::new("cargo")
        .args(["run", "--release", "--quiet"])
        .args(features)
        .current_dir(workspace().join("firmware"))
        // The firmware is its own project with its own target and linker.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env("TINYCNN_MODEL", &model_path)
        .env("TINYCNN_VECTORS", &vectors_path)
        .output()
        .expect("cargo runs the firmware in QEMU (see firmware/README.md)");
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{dir}: firmware exited with {:?}\nstdout:\n{log}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Vec<(usize, Vec<i8>)> = log.lines().filter_map(parse).collect();
    assert_eq!(
        printed.len(),
        host.len(),
        "{dir}: one logits line per image in:\n{log}"
    );
    for (position, (index, logits)) in printed.iter().enumerate() {
        assert_eq!(*index, position);
        assert_eq!(
            logits, &host[*index],
            "{dir}: image {index}: firmware and host logits differ"
        );
    }

    // What `host inspect` promises: the flash beside the model and the test vectors, and the
    // RAM beside the scratch.
    let flash = log
        .lines()
        .find(|l| l.contains("flash:"))
        .expect("flash line");
    let text = number_after(flash, "(text").expect("text size");
    let widened = log
        .lines()
        .find(|l| l.contains("dense weights widened to int16:"))
        .and_then(|l| number_after(l, "int16:"));
    assert_eq!(
        widened,
        widen_dense.then(|| tinycnn::widened::table_bytes(&model_bytes)),
        "{dir}/{name}: the firmware's widened dense table is not the model's"
    );
    let besides_blobs = number_after(flash, "flash:").expect("flash size")
        - model_bytes.len()
        - vector_bytes.len()
        - widened.unwrap_or(0);
    let code_bytes = firmware_code_bytes(model.architecture())
        + if widen_dense {
            FIRMWARE_WIDENED_KERNELS_BYTES
        } else {
            0
        };
    assert!(
        besides_blobs <= code_bytes,
        "{dir}/{name}: the firmware takes {besides_blobs} B of flash beside the model and the \
         test vectors, host inspect assumes {code_bytes}"
    );
    let ram = log.lines().find(|l| l.contains("RAM:")).expect("RAM line");
    let statics = number_after(ram, "static").expect("static RAM");
    let stack = number_after(ram, "peak stack").expect("peak stack");
    let peak = number_after(ram, "RAM:").expect("RAM at peak");
    let planned = tinycnn::plan::int8_scratch_bytes_for(model.architecture(), true);
    let scratch = log
        .lines()
        .find(|l| l.contains("scratch:") && l.contains("planned"))
        .expect("scratch line");
    let written = scratch_written(scratch).expect("the bytes an inference writes");
    assert_eq!(
        (
            number_after(scratch, "scratch:"),
            number_after(scratch, "static")
        ),
        (Some(planned), Some(planned)),
        "{dir}/{name}: the firmware's scratch is not the plan's {planned} B: {scratch}"
    );
    assert_eq!(
        written,
        (0, planned),
        "{dir}/{name}: an inference does not write the plan's whole arena: {scratch}"
    );
    assert!(
        statics >= planned && peak == statics + stack,
        "{dir}/{name}: RAM at peak is not the scratch, the other statics and the stack: {ram}"
    );
    let besides_scratch = statics - planned + stack;
    assert!(
        besides_scratch <= FIRMWARE_RAM_BYTES,
        "{dir}/{name}: the firmware needs {besides_scratch} B of RAM beside the scratch, host \
         inspect assumes {FIRMWARE_RAM_BYTES}"
    );
    println!(
        "firmware in QEMU with {dir}/{name}.tcnn: {} images, logits identical to the host \
         core's; code {text} B, flash beside the model and the vectors {besides_blobs} B; scratch \
         {planned} B as planned, all written; RAM at peak {peak} B, beside the scratch \
         {besides_scratch} B",
        printed.len()
    );
}

#[test]
fn firmware_logits_in_qemu_equal_the_host_core() {
    check_model_in_qemu("data", "model-int8", false);
    check_model_in_qemu("data/small", "model-int8", false);
    check_model_in_qemu("data/separable", "model-int8", false);
}

/// The MLPerf Tiny networks imported from TensorFlow Lite, on the Cortex-M4 with the DSP
/// kernels (`firmware/ci.sh` runs them on the Cortex-M3); the autoencoder also with its dense
/// weights widened to int16.
#[test]
fn firmware_runs_the_mlperf_tiny_networks_as_the_host_core_does() {
    for name in ["kws", "vww", "resnet8", "autoencoder"] {
        check_model_in_qemu("data/mlperf", name, false);
    }
    check_model_in_qemu("data/mlperf", "autoencoder", true);
}

#[test]
fn log_lines_parse() {
    let line = "INFO  image 12: predicted 7 (label 7), logits [-128, 3, 0, 127, -5, 6, 7, 8, 9, -10], 22398033 counts";
    assert_eq!(
        parse(line),
        Some((12, vec![-128, 3, 0, 127, -5, 6, 7, 8, 9, -10]))
    );
    let named = "INFO  image 4: predicted 2 \"logits [1]\" (label 2 \"logits [1]\"), logits [-128, 127], 99 counts";
    assert_eq!(parse(named), Some((4, vec![-128, 127])));
    assert_eq!(parse("INFO  all 100 images match the host"), None);
    let ram = "INFO  RAM: 25760 B at peak of 131072 B = static 23452 (data 0 + bss 23452 + uninit 0) + peak stack 2308 of 107620 B stack";
    assert_eq!(number_after(ram, "static"), Some(23452));
    assert_eq!(number_after(ram, "peak stack"), Some(2308));
    let scratch = "INFO  scratch: 10624 B planned (in bands: band area 2304 + frame 8320), static 10624 B; an inference writes bytes 0..10624";
    assert_eq!(number_after(scratch, "scratch:"), Some(10624));
    assert_eq!(number_after(scratch, "static"), Some(10624));
    assert_eq!(scratch_written(scratch), Some((0, 10624)));
    let flash = "INFO  flash: 792232 B (text 26208 + rodata 766024 + data 0) of 1048576 B";
    assert_eq!(number_after(flash, "(text"), Some(26208));
}
