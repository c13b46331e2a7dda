//! Files that are either complete or absent: written to a temporary file in the same directory,
//! flushed to disk, then renamed over the target, so a crash or SIGKILL at any moment leaves
//! either the old file or the new one, never a mix.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Prefix of the temporary files, so that leftovers of a killed run can be recognised.
const TEMP_PREFIX: &str = ".tmp-";
/// Suffix of the temporary files (the project's .gitignore ignores `*.tmp`).
const TEMP_SUFFIX: &str = ".tmp";

/// Replace `path` with `bytes` atomically and durably.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let prefix = format!("{TEMP_PREFIX}{}.", name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(TEMP_SUFFIX);
    // Temporary files are private (0600) by default; outputs are ordinary files that others
    // may read, like anything `fs::write` creates (the umask still applies).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut temp = builder.tempfile_in(dir)?;
    temp.write_all(bytes)?;
    // The data must be on disk before the rename makes it visible under the final name;
    // otherwise a power loss can leave a renamed but empty file.
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|error| error.error)?;
    sync_dir(dir)
}

/// Flush a directory entry (a rename) to disk. Not every platform can open a directory; there the
/// rename is as durable as the platform makes it.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir) {
        Ok(handle) => match handle.sync_all() {
            Err(error) if error.kind() != io::ErrorKind::PermissionDenied => Err(error),
            _ => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// Remove temporary files that a killed run left in `dir`; returns how many were removed.
pub fn remove_stale_temps(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) && entry.path().is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Check that `dir` exists (creating it) and that a file of `probe_bytes` can be written,
/// flushed and removed there, so that a training run does not fail at its first checkpoint.
pub fn check_writable(dir: &Path, probe_bytes: usize) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut probe = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}write-probe."))
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = probe_bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        probe.write_all(&chunk[..n])?;
        left -= n;
    }
    probe.as_file().sync_all()?;
    probe.close()
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        write(&path, b"first").unwrap();
        write(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["metrics.json"]);
    }

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".tmp-checkpoint.bin.AbC123.tmp");
        let keep = dir.path().join("checkpoint.bin");
        fs::write(&stale, b"half").unwrap();
        fs::write(&keep, b"whole").unwrap();
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
        assert!(!stale.exists());
        assert!(keep.exists());
    }

    #[test]
    fn writability_check_creates_the_directory_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a/b");
        check_writable(&out, 3 << 20).unwrap();
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    }

    #[test]
    fn writability_check_fails_under_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(check_writable(&file.join("out"), 1).is_err());
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bpk");
        write(&path, b"old").unwrap();
        // A directory in the way of the rename makes the write fail after the data is written.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), b"x").unwrap();
        assert!(write(&blocked, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 0);
    }
}
