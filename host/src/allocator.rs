//! Start-up tuning of glibc's allocator for training.
//!
//! A training step allocates and frees buffers of 1-100 MB (activations, im2col scratch,
//! gradients). By default glibc serves large blocks with `mmap` (from 128 KB; the threshold
//! adapts upwards only slowly) and returns a freed heap top beyond 128 KB to the OS, so every
//! step maps, faults in and unmaps the same memory again: measured while prototyping the fused
//! convolution, about 10% of a training step's CPU time, with many times the page faults.
//! Keeping such blocks in the heap lets each step reuse the last one's memory; peak memory grows
//! by little, since every step needs the same sizes.

/// Blocks below this size come from the heap, to be reused, rather than from `mmap`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// Free memory at the top of the heap kept for reuse rather than returned to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 512 << 20;

/// Applies the settings above on Linux with glibc (elsewhere nothing happens). Call it early,
/// before the allocations it is meant for. A setting whose glibc environment variable
/// (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`) is set is left as the user chose.
pub fn tune_for_training() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (param, value, variable) in [
        (
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
            "MALLOC_MMAP_THRESHOLD_",
        ),
        (
            libc::M_TRIM_THRESHOLD,
            TRIM_THRESHOLD,
            "MALLOC_TRIM_THRESHOLD_",
        ),
    ] {
        if std::env::var_os(variable).is_some() {
            continue;
        }
        // SAFETY: `mallopt` only changes allocator parameters, for blocks allocated later; it
        // takes plain integers and reads or writes no memory of ours. glibc serialises it with
        // its own allocator lock, so other threads allocating meanwhile are fine. Its result
        // (0 for a value glibc refuses) only means the default stays: nothing to handle.
        unsafe {
            libc::mallopt(param, value);
        }
    }
}
