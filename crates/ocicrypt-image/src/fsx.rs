//! Writing outputs so that a failure leaves the destination untouched.
//!
//! Every temporary file and directory is also listed in a process-wide register while it
//! exists, so that a program interrupted by a signal can remove them before it exits
//! ([`remove_temporaries`]): they may hold decrypted data that never passed its checks.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use tempfile::NamedTempFile;

use crate::{Error, Result};

/// How long a leftover of a process that is gone must have been untouched before
/// [`remove_stale`] removes it (10 minutes): a file that another process (in another PID
/// namespace, say, on a shared volume) is still writing keeps changing.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// The start of a temporary name made by this process: `.ocicrypt-<kind><pid>-`.
pub(crate) fn temporary_prefix(kind: &str) -> String {
    format!(".ocicrypt-{kind}{}-", std::process::id())
}

/// The process id in a temporary name made by [`temporary_prefix`].
fn temporary_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(".ocicrypt-")?;
    let rest = rest.strip_prefix("layout-").unwrap_or(rest);
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Removes what killed runs (SIGKILL, a crash, a power cut) left in `dir`: temporary files
/// and layouts named by a process that no longer exists (no `/proc/<pid>`) and untouched for
/// [`STALE_AFTER`]. Does nothing where `/proc` is not mounted. Errors are ignored: this is
/// tidying, never a reason to fail.
pub fn remove_stale(dir: &Path) {
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temporary_pid) else {
            continue;
        };
        if pid == std::process::id() || proc_root.join(pid.to_string()).exists() {
            continue;
        }
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= STALE_AFTER);
        if !old {
            continue;
        }
        if meta.is_dir() {
            let _ = std::fs::remove_dir_all(entry.path());
        } else {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A file being written under a temporary name in its destination's directory; it
/// replaces the destination only on [`Staged::commit`]. Dropped uncommitted, it is removed.
#[derive(Debug)]
pub struct Staged {
    dest: PathBuf,
    file: BufWriter<NamedTempFile>,
    _registered: Registered,
}

/// The temporary files and directories that exist now (see [`remove_temporaries`]).
static TEMPORARIES: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// A temporary path in the register for as long as this lives.
#[derive(Debug)]
pub(crate) struct Registered(PathBuf);

impl Registered {
    pub(crate) fn new(path: &Path) -> Self {
        TEMPORARIES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(HashSet::new)
            .insert(path.to_owned());
        Self(path.to_owned())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(set) = TEMPORARIES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            set.remove(&self.0);
        }
    }
}

/// Removes every temporary file and directory this library has made and not yet renamed
/// into place or removed: what a program calls when a signal (SIGINT, SIGTERM) stops it
/// in the middle of a write, so that no unverified plaintext and no half-written layout is
/// left behind. The `ocicrypt` command does this from its signal handler; a program that
/// embeds the library and exits on a signal should too. Safe to call from any thread; the
/// operations still running will fail afterwards.
pub fn remove_temporaries() {
    let paths = TEMPORARIES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_default();
    for p in paths {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir_all(&p);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&p);
            }
            Err(_) => {}
        }
    }
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
        let prefix = temporary_prefix("");
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(Error::io(format!(
                "cannot create a temporary file in {}",
                dir.display()
            )))?;
        Ok(Self {
            dest: dest.to_owned(),
            _registered: Registered::new(tmp.path()),
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

    #[test]
    fn leftovers_of_dead_processes_are_removed_when_old() {
        let dir = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::now() - STALE_AFTER - STALE_AFTER;
        // Above the largest Linux PID: no such process.
        let dead = 4_194_304 + 77;
        let make = |name: &str, age: Option<std::time::SystemTime>| {
            let p = dir.path().join(name);
            let f = fs::File::create(&p).unwrap();
            if let Some(t) = age {
                f.set_modified(t).unwrap();
            }
            p
        };
        let stale = make(&format!(".ocicrypt-{dead}-abc.tmp"), Some(old));
        let stale_dir = dir.path().join(format!(".ocicrypt-layout-{dead}-xyz"));
        fs::create_dir(&stale_dir).unwrap();
        fs::write(stale_dir.join("blob"), b"x").unwrap();
        fs::File::open(&stale_dir)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let recent = make(&format!(".ocicrypt-{dead}-new.tmp"), None);
        let mine = make(&format!("{}abc.tmp", temporary_prefix("")), Some(old));
        let live = make(".ocicrypt-1-abc.tmp", Some(old)); // init is alive
        let other = make(".ocicrypt-notapid.tmp", Some(old));
        remove_stale(dir.path());
        assert!(!stale.exists());
        assert!(!stale_dir.exists());
        for kept in [recent, mine, live, other] {
            assert!(kept.exists(), "{}", kept.display());
        }
    }

    #[test]
    fn temporaries_can_be_removed_from_outside() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Staged::new(&dir.path().join("out")).unwrap();
        s.write_all(b"unverified plaintext").unwrap();
        s.flush().unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        remove_temporaries();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        // The write that goes on fails; nothing appears.
        assert!(s.commit().is_err());
        assert!(!dir.path().join("out").exists());
    }
}
