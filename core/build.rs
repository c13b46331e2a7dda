//! Selects the Arm DSP kernels (`src/kernels/dsp.rs`) on targets whose cores
//! have the DSP extension (SMLAD, SXTB16, ...) by setting the custom cfg
//! `tinycnn_arm_dsp`. Stable Rust cannot `cfg` on `target_feature = "dsp"`
//! for Arm (the feature is unstable), so this decides from the target:
//!
//! - `thumbv7em-*` (Cortex-M4, M7): the extension is part of the architecture.
//! - `thumbv8m.main-*` (Cortex-M33, M35P, M55, M85): the extension is
//!   optional and LLVM's assembler rejects its instructions unless it is
//!   enabled, so only when the build enables it: `-C target-feature=+dsp`, or
//!   `-C target-cpu=` one of those cores, in `RUSTFLAGS` or the target's
//!   `rustflags`.
//!
//! It also sets `tinycnn_armv6m` on `thumbv6m-*` (Cortex-M0, M0+), whose
//! portable kernels take one tap per loop iteration.

use std::env;

/// Cores of the Armv8-M Mainline profile that LLVM models with the DSP
/// extension.
const V8M_CPUS_WITH_DSP: [&str; 4] = ["cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tinycnn_arm_dsp)");
    println!("cargo::rustc-check-cfg=cfg(tinycnn_arm_v8m)");
    println!("cargo::rustc-check-cfg=cfg(tinycnn_armv6m)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let dsp = target.starts_with("thumbv7em")
        || (target.starts_with("thumbv8m.main") && flags_enable_dsp(&flags));
    if dsp {
        println!("cargo::rustc-cfg=tinycnn_arm_dsp");
    }
    if dsp && target.starts_with("thumbv8m") {
        println!("cargo::rustc-cfg=tinycnn_arm_v8m");
    }
    // Armv6-M (Cortex-M0, M0+): Thumb-1 code reaches eight registers, which changes what
    // the portable kernels' loops should look like.
    if target.starts_with("thumbv6m") {
        println!("cargo::rustc-cfg=tinycnn_armv6m");
    }
}

/// Whether rustc flags (separated by 0x1f, as cargo encodes them) enable the
/// DSP extension through a target feature or a target CPU.
fn flags_enable_dsp(encoded: &str) -> bool {
    let mut feature = None;
    let mut cpu_has_dsp = false;
    let mut expecting_codegen_option = false;
    for flag in encoded.split('\x1f') {
        let option = if expecting_codegen_option {
            expecting_codegen_option = false;
            flag
        } else if flag == "-C" || flag == "--codegen" {
            expecting_codegen_option = true;
            continue;
        } else if let Some(option) = flag.strip_prefix("-C") {
            option
        } else {
            continue;
        };
        if let Some(features) = option.strip_prefix("target-feature=") {
            // Later flags win, as in rustc.
            for item in features.split(',') {
                match item {
                    "+dsp" => feature = Some(true),
                    "-dsp" => feature = Some(false),
                    _ => {}
                }
            }
        } else if let Some(cpu) = option.strip_prefix("target-cpu=") {
            cpu_has_dsp = V8M_CPUS_WITH_DSP.contains(&cpu);
        }
    }
    // An explicit feature overrides what the CPU implies.
    feature.unwrap_or(cpu_has_dsp)
}
