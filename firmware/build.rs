//! Puts `memory.x` on the linker search path (knurling app-template style) and
//! copies the shipped int8 model and test vectors (`data/model-int8.tcnn` and
//! `data/digits.tctv` at the repository root, written by `host export` and
//! `host fixture`) into `OUT_DIR`, where the binaries embed them.
//!
//! With the `corrupt-model` feature one byte of the model is flipped on the
//! way, so CI can check that a damaged blob is reported and fails the run.

use std::{env, fs, path::Path, process};

const MODEL: &str = "../data/model-int8.tcnn";
const VECTORS: &str = "../data/digits.tctv";

fn main() {
    if let Err(message) = run() {
        eprintln!("build.rs: {message}");
        process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let out_dir = env::var_os("OUT_DIR").ok_or("OUT_DIR is not set (not run by cargo?)")?;
    let out_dir = Path::new(&out_dir);

    write(&out_dir.join("memory.x"), include_bytes!("memory.x"))?;
    println!("cargo:rustc-link-search={}", out_dir.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    // Also reruns when a missing file appears.
    println!("cargo:rerun-if-changed={MODEL}");
    println!("cargo:rerun-if-changed={VECTORS}");

    let mut model = read(MODEL, "host export")?;
    if env::var_os("CARGO_FEATURE_CORRUPT_MODEL").is_some() {
        // A byte in the middle of the weights: only the checksum can notice.
        let middle = model.len() / 2;
        if let Some(byte) = model.get_mut(middle) {
            *byte ^= 0x10;
        }
    }
    write(&out_dir.join("model-int8.tcnn"), &model)?;
    write(
        &out_dir.join("digits.tctv"),
        &read(VECTORS, "host fixture")?,
    )
}

fn read(path: &str, writer: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| {
        format!(
            "{path}: cannot read ({e}); the firmware embeds it: write it first with `{writer}` \
             (see the repository README)"
        )
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    // Write then rename, so an interrupted build never leaves half a blob.
    let temporary = path.with_extension("partial");
    fs::write(&temporary, bytes)
        .and_then(|()| fs::rename(&temporary, path))
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}
