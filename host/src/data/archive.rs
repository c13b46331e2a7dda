//! What the extraction of CIFAR-10's and Speech Commands' tarballs shares.

use std::io::{self, Read, Write};

/// Why [`copy_entry`] stopped.
#[derive(Debug)]
pub enum CopyError {
    /// Reading the archive failed: it is damaged or cut short.
    Read(io::Error),
    /// Writing the file failed.
    Write(io::Error),
}

/// Copies at most `limit` bytes of an archive entry into `output` through `buffer`, showing each
/// chunk to `seen` first (to hash it, for instance).
pub fn copy_entry(
    entry: &mut impl Read,
    limit: u64,
    output: &mut impl Write,
    buffer: &mut [u8],
    mut seen: impl FnMut(&[u8]),
) -> Result<(), CopyError> {
    let mut taken = entry.take(limit);
    loop {
        let count = match taken.read(buffer) {
            Ok(0) => return Ok(()),
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(CopyError::Read(error)),
        };
        let chunk = buffer.get(..count).unwrap_or_default();
        seen(chunk);
        output.write_all(chunk).map_err(CopyError::Write)?;
    }
}
