//! Puts `memory.x` on the linker search path (knurling app-template style) and
//! copies the int8 model and its test vectors into `OUT_DIR`, where the
//! library embeds them:
//!
//! - the model: `TINYCNN_MODEL` if set, else the shipped
//!   `data/model-int8.tcnn` at the repository root (`host train` or `host
//!   export` writes one);
//! - its test vectors: `TINYCNN_VECTORS` if set, else the model's path with
//!   the extension `.tctv` (what `host fixture` writes by default).
//!
//! Relative paths are taken from the `firmware/` directory. The model's
//! header and description are read while compiling (its scratch size is a
//! `const`), so a file that is not an int8 model stops the build there; its
//! tensors and checksum are checked when the firmware starts.
//!
//! With the `corrupt-model` feature one byte in the middle of the model is
//! flipped on the way, so CI can check that a damaged blob is reported and
//! fails the run.

use std::path::{Path, PathBuf};
use std::{env, fs, process};

const DEFAULT_MODEL: &str = "../data/model-int8.tcnn";

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
    println!("cargo:rerun-if-env-changed=TINYCNN_MODEL");
    println!("cargo:rerun-if-env-changed=TINYCNN_VECTORS");

    let model_path =
        env::var_os("TINYCNN_MODEL").map_or_else(|| PathBuf::from(DEFAULT_MODEL), PathBuf::from);
    let vectors_path = env::var_os("TINYCNN_VECTORS")
        .map_or_else(|| model_path.with_extension("tctv"), PathBuf::from);
    // Also reruns when a missing file appears.
    println!("cargo:rerun-if-changed={}", model_path.display());
    println!("cargo:rerun-if-changed={}", vectors_path.display());

    let mut model = read(
        &model_path,
        "the model: write it with `host train` or `host export`",
    )?;
    if env::var_os("CARGO_FEATURE_CORRUPT_MODEL").is_some() {
        // A byte in the middle of the weights: only the checksum can notice.
        let middle = model.len() / 2;
        if let Some(byte) = model.get_mut(middle) {
            *byte ^= 0x10;
        }
    }
    write(&out_dir.join("model.tcnn"), &model)?;
    let vectors = read(
        &vectors_path,
        "its test vectors: write them with `host fixture --model MODEL` (or set TINYCNN_VECTORS)",
    )?;
    write(&out_dir.join("vectors.tctv"), &vectors)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| {
        format!(
            "{}: cannot read ({e}); the firmware embeds {what} (see the repository README)",
            path.display()
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
