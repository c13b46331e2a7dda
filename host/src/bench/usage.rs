//! Resource figures of this process and machine for benchmarks: CPU time, peak resident memory
//! and load average. Each is `None` where the platform does not report it.

use std::time::Duration;

/// CPU time used so far by the whole process (all threads, user and system).
pub fn process_cpu_time() -> Option<Duration> {
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    {
        use rustix::time::{ClockId, clock_gettime};
        Duration::try_from(clock_gettime(ClockId::ProcessCPUTime)).ok()
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        None
    }
}

/// Peak resident set size of this process so far, in bytes (Linux: `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The 1-, 5- and 15-minute load averages (Linux: `/proc/loadavg`).
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    let mut next = || fields.next()?.ok();
    Some([next()?, next()?, next()?])
}

/// A load average as the benchmark reports print it: "1.23 0.98 0.50", or "unknown".
pub fn load_average_text(load: Option<[f64; 3]>) -> String {
    load.map_or_else(
        || "unknown".to_string(),
        |[one, five, fifteen]| format!("{one:.2} {five:.2} {fifteen:.2}"),
    )
}

/// Cores kept busy (CPU time / wall time) as the benchmark tables print it, or "-".
pub fn cores_text(cores: Option<f64>) -> String {
    cores.map_or_else(|| "-".to_string(), |cores| format!("{cores:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn figures_are_reported_on_linux() {
        let before = process_cpu_time().expect("CPU time");
        // Burn some CPU so that the clock must move.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(process_cpu_time().expect("CPU time") > before);
        assert!(peak_rss_bytes().expect("peak RSS") > 1 << 20);
        assert!(load_average().expect("load").iter().all(|v| *v >= 0.0));
    }
}
