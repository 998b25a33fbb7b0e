//! Writing outputs so that a failure leaves the destination untouched.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::{Error, Result};

/// A file being written under a temporary name in its destination's directory; it
/// replaces the destination only on [`Staged::commit`]. Dropped uncommitted, it is removed.
#[derive(Debug)]
pub struct Staged {
    dest: PathBuf,
    file: BufWriter<NamedTempFile>,
}

impl Staged {
    /// A temporary file beside `dest` (named `.ocicrypt-*.tmp`).
    ///
    /// # Errors
    /// The directory is not writable.
    pub fn new(dest: &Path) -> Result<Self> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".ocicrypt-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(Error::io(format!(
                "cannot create a temporary file in {}",
                dir.display()
            )))?;
        Ok(Self {
            dest: dest.to_owned(),
            file: BufWriter::with_capacity(256 * 1024, tmp),
        })
    }

    /// Flushes, syncs and renames the file over the destination.
    ///
    /// # Errors
    /// Writing, syncing or renaming failed.
    pub fn commit(self) -> Result<()> {
        let dest = self.dest.clone();
        self.commit_as(&dest)
    }

    /// Like [`Staged::commit`], to another name in the same directory (for files named
    /// by their digest, known only at the end).
    ///
    /// # Errors
    /// Writing, syncing or renaming failed.
    pub fn commit_as(self, dest: &Path) -> Result<()> {
        let what = || format!("cannot write {}", dest.display());
        let tmp = self
            .file
            .into_inner()
            .map_err(|e| Error::io(what())(e.into_error()))?;
        tmp.as_file().sync_all().map_err(Error::io(what()))?;
        tmp.persist(dest).map_err(|e| {
            Error::io(format!(
                "cannot rename the output into place at {}",
                dest.display()
            ))(e.error)
        })?;
        Ok(())
    }
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Writes `bytes` to `dest` atomically (a temporary file renamed over it).
///
/// # Errors
/// Writing, syncing or renaming failed.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut s = Staged::new(dest)?;
    s.write_all(bytes)
        .map_err(Error::io(format!("cannot write {}", dest.display())))?;
    s.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn uncommitted_output_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        fs::write(&dest, "old").unwrap();
        {
            let mut s = Staged::new(&dest).unwrap();
            s.write_all(b"new").unwrap();
        }
        assert_eq!(fs::read_to_string(&dest).unwrap(), "old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomic(&dest, b"new").unwrap();
        assert_eq!(fs::read_to_string(&dest).unwrap(), "new");
    }
}
