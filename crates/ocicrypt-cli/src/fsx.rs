//! Writing outputs so that a failed command leaves its destination untouched.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempfile::NamedTempFile;

/// A file being written under a temporary name in its destination's directory; it
/// replaces the destination only on [`Staged::commit`]. Dropped uncommitted, it is removed.
pub(crate) struct Staged {
    dest: PathBuf,
    file: BufWriter<NamedTempFile>,
}

impl Staged {
    pub(crate) fn new(dest: &Path) -> Result<Self> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".ocicrypt-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        Ok(Self {
            dest: dest.to_owned(),
            file: BufWriter::with_capacity(256 * 1024, tmp),
        })
    }

    /// Flushes, syncs and renames the file over the destination.
    pub(crate) fn commit(self) -> Result<()> {
        let dest = self.dest.clone();
        self.commit_as(&dest)
    }

    /// Like [`Staged::commit`], to another name in the same directory (for files named
    /// by their digest, known only at the end).
    pub(crate) fn commit_as(self, dest: &Path) -> Result<()> {
        let tmp = self
            .file
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", dest.display()))?;
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("cannot write {}", dest.display()))?;
        tmp.persist(dest).map_err(|e| e.error).with_context(|| {
            format!("cannot rename the output into place at {}", dest.display())
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

/// Writes `bytes` to `dest` atomically.
pub(crate) fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut s = Staged::new(dest)?;
    s.write_all(bytes)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    s.commit()
}

/// Reads a JSON file into a value, naming the file in errors.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{what} {} is not valid JSON of the expected shape",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
