//! Files that are either complete or absent: written to a temporary file in the same directory,
//! flushed to disk, then renamed over the target, so a crash or SIGKILL at any moment leaves
//! either the old file or the new one, never a mix. Only regular files are ever replaced: a
//! rename over a symbolic link, a device node or a pipe would silently swap it for a file.
//!
//! Also the rules every command follows for its outputs: [`refuse_existing`] (nothing a user made
//! is replaced without `--overwrite`) and [`CreatedDirs`] (a run that fails leaves no empty
//! directory behind).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Prefix of the temporary files, so that leftovers of a killed run can be recognised.
const TEMP_PREFIX: &str = ".tmp-";
/// Suffix of the temporary files (the project's .gitignore ignores `*.tmp`).
const TEMP_SUFFIX: &str = ".tmp";

/// Replace `path` with `bytes` atomically and durably. Fails, writing nothing, when `path` is
/// something other than a regular file.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(kind) = not_a_regular_file(path) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{kind} is in the way; outputs only replace regular files"),
        ));
    }
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

/// What `path` is when it exists and is not a regular file ("a directory", "a symbolic link"...).
fn not_a_regular_file(path: &Path) -> Option<&'static str> {
    let file_type = fs::symlink_metadata(path).ok()?.file_type();
    if file_type.is_file() {
        return None;
    }
    Some(if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else {
        special_file_kind(file_type)
    })
}

#[cfg(unix)]
fn special_file_kind(file_type: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else if file_type.is_fifo() {
        "a named pipe"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "something other than a file"
    }
}

#[cfg(not(unix))]
fn special_file_kind(_: fs::FileType) -> &'static str {
    "something other than a file"
}

/// Refuses to go on when any of `outputs` exists, unless `overwrite`: names every one in the
/// way, and says how to proceed. Something that is not a regular file is refused even with
/// `overwrite`, since no output ever replaces it.
pub fn refuse_existing(outputs: &[PathBuf], overwrite: bool) -> anyhow::Result<()> {
    let mut existing = Vec::new();
    for path in outputs {
        if let Some(kind) = not_a_regular_file(path) {
            anyhow::bail!(
                "{}: {kind} is where an output file goes; outputs only replace regular files: \
                 move it or choose another output path",
                path.display()
            );
        }
        if !overwrite && fs::symlink_metadata(path).is_ok() {
            existing.push(path.display().to_string());
        }
    }
    match existing.as_slice() {
        [] => Ok(()),
        [one] => anyhow::bail!(
            "{one} already exists; replace it with --overwrite, or choose another output path"
        ),
        many => anyhow::bail!(
            "{} already exist; replace them with --overwrite, or choose another output path",
            many.join(", ")
        ),
    }
}

/// Removes `path` if it is there (a stale output of an earlier run).
pub fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Directories a command created for its outputs. Dropped without [`CreatedDirs::keep`], it
/// removes those of them that are still empty, innermost first, so a run that fails or is
/// interrupted before writing anything leaves the file system as it found it.
#[derive(Debug)]
#[must_use = "dropping it removes the directories it created"]
pub struct CreatedDirs {
    created: Vec<PathBuf>,
}

impl CreatedDirs {
    /// Creates `dir` and any missing parents, remembering which were missing.
    pub fn create(dir: &Path) -> io::Result<Self> {
        let mut missing = Vec::new();
        let mut ancestor = Some(dir);
        while let Some(path) = ancestor.filter(|p| !p.as_os_str().is_empty()) {
            if fs::symlink_metadata(path).is_ok() {
                break;
            }
            missing.push(path.to_path_buf());
            ancestor = path.parent();
        }
        fs::create_dir_all(dir)?;
        Ok(Self { created: missing })
    }

    /// The command succeeded (or wrote something worth keeping): keep the directories.
    pub fn keep(mut self) {
        self.created.clear();
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        // Innermost first; `remove_dir` fails, harmlessly, on a directory that is not empty.
        for dir in &self.created {
            if fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
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
/// The directories created are removed again when the guard returned is dropped without
/// [`CreatedDirs::keep`].
pub fn check_writable(dir: &Path, probe_bytes: usize) -> io::Result<CreatedDirs> {
    let created = CreatedDirs::create(dir)?;
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
    probe.close()?;
    Ok(created)
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
        let created = check_writable(&out, 3 << 20).unwrap();
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
        created.keep();
        assert!(out.is_dir());
    }

    #[test]
    fn created_directories_go_away_unless_kept_or_used() {
        let dir = tempfile::tempdir().unwrap();
        drop(CreatedDirs::create(&dir.path().join("a/b/c")).unwrap());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "a/b/c and a/b and a"
        );
        // A directory that holds something by the time the guard drops stays, with its parents.
        let guard = CreatedDirs::create(&dir.path().join("x/y")).unwrap();
        fs::write(dir.path().join("x/y/file"), b"1").unwrap();
        drop(guard);
        assert!(dir.path().join("x/y/file").exists());
        // One that existed before is never removed.
        fs::create_dir(dir.path().join("old")).unwrap();
        drop(CreatedDirs::create(&dir.path().join("old")).unwrap());
        assert!(dir.path().join("old").is_dir());
    }

    #[test]
    fn existing_outputs_are_named_and_kept_without_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a.tcnn"),
            dir.path().join("b.json"),
            dir.path().join("c.png"),
        );
        fs::write(&a, b"1").unwrap();
        fs::write(&b, b"2").unwrap();
        let outputs = [a.clone(), b.clone(), c];
        let message = refuse_existing(&outputs, false).unwrap_err().to_string();
        assert!(
            message.contains("a.tcnn, ") && message.contains("b.json already exist"),
            "{message}"
        );
        assert!(message.contains("--overwrite"), "{message}");
        assert!(!message.contains("c.png"), "{message}");
        refuse_existing(&outputs, true).unwrap();
        refuse_existing(&outputs[2..], false).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"1");
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("model.tcnn");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = write(&link, b"new").unwrap_err();
        assert!(error.to_string().contains("a symbolic link"), "{error}");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        let message = refuse_existing(&[link], true).unwrap_err().to_string();
        assert!(message.contains("a symbolic link"), "{message}");
        // A device node: /dev/null stands in for any.
        let error = write(Path::new("/dev/null"), b"new").unwrap_err();
        assert!(error.to_string().contains("a device"), "{error}");
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        assert!(
            write(&sub, b"x")
                .unwrap_err()
                .to_string()
                .contains("a directory")
        );
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
        // A directory in the way is refused before anything is written.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), b"x").unwrap();
        assert!(write(&blocked, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 0);
    }
}
