//! OCI image layouts (`oci:PATH[:TAG]`): reading a source, writing a destination so that
//! a failure leaves it untouched.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::descriptor::DescJson;
use crate::digest::Hashing;
use crate::fsx::{Staged, write_atomic};

/// The annotation that names a tag in `index.json`.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// OCI image index media type.
pub(crate) const INDEX_MT: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest media type.
pub(crate) const MANIFEST_MT: &str = "application/vnd.oci.image.manifest.v1+json";

/// `oci:PATH[:TAG]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ImageRef {
    pub(crate) path: PathBuf,
    pub(crate) tag: String,
}

impl ImageRef {
    pub(crate) fn parse(s: &str) -> Result<Self> {
        let Some(rest) = s.strip_prefix("oci:") else {
            bail!("{s:?}: only OCI layouts are supported, written oci:PATH[:TAG]");
        };
        let (path, tag) = match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') && !p.is_empty() => (p, t),
            _ => (rest, "latest"),
        };
        if path.is_empty() {
            bail!("{s:?}: the layout path is empty");
        }
        let valid_tag = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !valid_tag {
            bail!("{s:?}: {tag:?} is not a valid tag");
        }
        Ok(Self {
            path: PathBuf::from(path),
            tag: tag.to_owned(),
        })
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci:{}:{}", self.path.display(), self.tag)
    }
}

/// The path of a blob below `root`, after checking that the digest is well formed (so it
/// cannot point outside the layout).
fn blob_path(root: &Path, digest: &str) -> Result<PathBuf> {
    let (alg, hex) = digest
        .split_once(':')
        .with_context(|| format!("malformed digest {digest:?}"))?;
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => bail!("unsupported digest algorithm in {digest:?}"),
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        bail!("malformed digest {digest:?}");
    }
    Ok(root.join("blobs").join(alg).join(hex))
}

/// A source layout.
#[derive(Debug)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let marker = root.join("oci-layout");
        let v: Value = serde_json::from_slice(&fs::read(&marker).with_context(|| {
            format!(
                "{} is not an OCI layout (no oci-layout file)",
                root.display()
            )
        })?)
        .with_context(|| format!("{} is not valid JSON", marker.display()))?;
        if v.get("imageLayoutVersion")
            .and_then(Value::as_str)
            .is_none()
        {
            bail!("{} has no imageLayoutVersion", marker.display());
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub(crate) fn index(&self) -> Result<Value> {
        let p = self.root.join("index.json");
        let bytes = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid JSON", p.display()))
    }

    /// The descriptor tagged `tag` in `index.json`.
    pub(crate) fn resolve(&self, tag: &str) -> Result<DescJson> {
        let index = self.index()?;
        let manifests = index
            .get("manifests")
            .and_then(Value::as_array)
            .with_context(|| format!("{}/index.json has no manifests", self.root.display()))?;
        let found = manifests.iter().find(|m| {
            m.get("annotations")
                .and_then(|a| a.get(REF_NAME))
                .and_then(Value::as_str)
                == Some(tag)
        });
        let what = format!("the index entry for tag {tag}");
        match found {
            Some(m) => DescJson::from_value(m.clone(), &what),
            None => bail!("no image tagged {tag:?} in {}", self.root.display()),
        }
    }

    /// Opens a blob and checks its size against the descriptor's.
    pub(crate) fn open_blob(&self, desc: &DescJson) -> Result<File> {
        let p = blob_path(&self.root, desc.digest())?;
        let f = File::open(&p).with_context(|| format!("missing blob {}", desc.digest()))?;
        let len = f.metadata()?.len();
        if len != desc.size() {
            bail!(
                "blob {} is {len} bytes but its descriptor says {}",
                desc.digest(),
                desc.size()
            );
        }
        Ok(f)
    }

    /// Reads a small blob (manifest, index, config) and checks its digest.
    pub(crate) fn read_blob(&self, desc: &DescJson) -> Result<Vec<u8>> {
        if desc.size() > 64 * 1024 * 1024 {
            bail!(
                "blob {} is too large for a manifest or config",
                desc.digest()
            );
        }
        let mut r = Hashing::new(self.open_blob(desc)?);
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)?;
        let (digest, _, _) = r.finish();
        if desc.digest().starts_with("sha256:") && digest != desc.digest() {
            bail!(
                "blob {} is corrupt: its content hashes to {digest}",
                desc.digest()
            );
        }
        Ok(buf)
    }
}

/// A destination layout being written. New blobs are written under temporary names and
/// renamed by digest; `index.json` is written last by [`LayoutWriter::commit`]. A new
/// layout is built in a temporary directory beside the destination and renamed into place
/// at the end. Dropped uncommitted, everything it added is removed.
///
/// Blobs may be added from several threads at once (`&self`); the list of added blobs is
/// kept under a lock, and [`LayoutWriter::commit`] (which takes `self`) runs after them.
pub(crate) struct LayoutWriter {
    dest: PathBuf,
    work: PathBuf,
    fresh: Option<tempfile::TempDir>,
    added: Mutex<Vec<PathBuf>>,
    /// Layer blobs being synced and renamed into place in the background.
    committer: Mutex<Option<Committer>>,
    committed: bool,
}

/// A thread that syncs staged blobs and renames them into place, in the order given, so
/// that the thread that wrote a blob can go on with the next one while the disk catches
/// up. After the first failure it only drops (removes) what it is given.
struct Committer {
    queue: mpsc::Sender<(Staged, PathBuf)>,
    thread: JoinHandle<Result<()>>,
}

impl Committer {
    fn spawn() -> Result<Self> {
        let (queue, staged) = mpsc::channel::<(Staged, PathBuf)>();
        let thread = thread::Builder::new()
            .name("ocicrypt-commit".to_owned())
            .spawn(move || {
                let mut outcome = Ok(());
                for (blob, path) in staged {
                    if outcome.is_ok() {
                        outcome = blob.commit_as(&path);
                    }
                }
                outcome
            })
            .context("cannot start a thread")?;
        Ok(Self { queue, thread })
    }

    /// Waits until everything queued is in place.
    fn wait(self) -> Result<()> {
        drop(self.queue);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the blob commit thread panicked")))
    }
}

impl LayoutWriter {
    pub(crate) fn create(dest: &Path) -> Result<Self> {
        let is_layout = dest.join("oci-layout").is_file();
        if is_layout {
            Layout::open(dest)?;
            return Ok(Self {
                dest: dest.to_owned(),
                work: dest.to_owned(),
                fresh: None,
                added: Mutex::new(Vec::new()),
                committer: Mutex::new(None),
                committed: false,
            });
        }
        if dest.exists() {
            let empty_dir = dest.is_dir() && fs::read_dir(dest)?.next().is_none();
            if !empty_dir {
                bail!(
                    "{} exists and is not an OCI layout; refusing to overwrite it",
                    dest.display()
                );
            }
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".ocicrypt-layout-")
            .tempdir_in(&parent)
            .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
        let work = tmp.path().to_owned();
        fs::create_dir_all(work.join("blobs").join("sha256"))?;
        write_atomic(
            &work.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        Ok(Self {
            dest: dest.to_owned(),
            work,
            fresh: Some(tmp),
            added: Mutex::new(Vec::new()),
            committer: Mutex::new(None),
            committed: false,
        })
    }

    /// Remembers a blob this writer added, to remove it if the writer is dropped.
    fn record(&self, path: PathBuf) {
        // A panic while holding the lock cannot leave the list inconsistent.
        self.added
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(path);
    }

    fn has_blob(&self, digest: &str) -> Result<bool> {
        Ok(blob_path(&self.work, digest)?.is_file())
    }

    /// A temporary file for a new blob, hashed as it is written.
    pub(crate) fn stage(&self) -> Result<Hashing<Staged>> {
        Ok(Hashing::new(self.stage_unhashed()?))
    }

    /// A temporary file for a new blob whose digest the writer already computes (the
    /// decrypting reader verifies the plaintext digest; hashing again would be wasted work).
    pub(crate) fn stage_unhashed(&self) -> Result<Staged> {
        let dir = self.work.join("blobs").join("sha256");
        fs::create_dir_all(&dir)?;
        Staged::new(&dir.join("staging"))
    }

    /// Moves a staged blob into place under its digest; returns (digest, size).
    pub(crate) fn commit_blob(&self, staged: Hashing<Staged>) -> Result<(String, u64)> {
        let (digest, size, staged) = staged.finish();
        self.commit_blob_as(staged, &digest)?;
        Ok((digest, size))
    }

    /// Where a blob with `digest` goes, its directory created; `None` if it is there already.
    fn new_blob_path(&self, digest: &str) -> Result<Option<PathBuf>> {
        let path = blob_path(&self.work, digest)?;
        if path.is_file() {
            return Ok(None);
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        Ok(Some(path))
    }

    /// Moves a staged blob into place under `digest`, which the caller computed from the
    /// bytes written (a `sha512:` digest goes to `blobs/sha512/`).
    pub(crate) fn commit_blob_as(&self, staged: Staged, digest: &str) -> Result<()> {
        let Some(path) = self.new_blob_path(digest)? else {
            return Ok(()); // dropped: the temporary file is removed
        };
        staged.commit_as(&path)?;
        self.record(path);
        Ok(())
    }

    /// Like [`LayoutWriter::commit_blob_as`], but the sync and rename happen on a
    /// background thread; [`LayoutWriter::wait_for_blobs`] waits for them and reports the
    /// first failure. (A blob is recorded before it is in place, so that a writer dropped
    /// after a failure removes it whether or not it got there.)
    pub(crate) fn commit_blob_in_background(&self, staged: Staged, digest: &str) -> Result<()> {
        let Some(path) = self.new_blob_path(digest)? else {
            return Ok(()); // dropped: the temporary file is removed
        };
        self.record(path.clone());
        let mut committer = self
            .committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if committer.is_none() {
            *committer = Some(Committer::spawn()?);
        }
        match committer.as_ref().map(|c| c.queue.send((staged, path))) {
            Some(Ok(())) => Ok(()),
            // The thread is gone: it can only have panicked.
            _ => match committer.take().map(Committer::wait) {
                Some(Err(e)) => Err(e),
                _ => bail!("the blob commit thread stopped"),
            },
        }
    }

    /// Waits for the blobs given to [`LayoutWriter::commit_blob_in_background`]; the first
    /// failure among them, if any.
    pub(crate) fn wait_for_blobs(&self) -> Result<()> {
        let committer = self
            .committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        committer.map_or(Ok(()), Committer::wait)
    }

    /// Writes a small blob (manifest, index); returns its digest and size.
    pub(crate) fn put_blob(&self, bytes: &[u8]) -> Result<(String, u64)> {
        let mut s = self.stage()?;
        io::Write::write_all(&mut s, bytes)?;
        self.commit_blob(s)
    }

    /// Copies a blob unchanged from `src`, checking its digest.
    pub(crate) fn copy_blob(&self, src: &Layout, desc: &DescJson) -> Result<()> {
        if self.has_blob(desc.digest())? {
            return Ok(());
        }
        let mut r = src.open_blob(desc)?;
        if !desc.digest().starts_with("sha256:") {
            let path = blob_path(&self.work, desc.digest())?;
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            let mut s = Staged::new(&path)?;
            io::copy(&mut r, &mut s)?;
            s.commit()?;
            self.record(path);
            return Ok(());
        }
        let mut s = self.stage()?;
        io::copy(&mut r, &mut s).with_context(|| format!("cannot copy blob {}", desc.digest()))?;
        let (digest, _, staged) = s.finish();
        if digest != desc.digest() {
            bail!(
                "blob {} is corrupt: its content hashes to {digest}",
                desc.digest()
            );
        }
        let path = blob_path(&self.work, &digest)?;
        staged.commit_as(&path)?;
        self.record(path);
        Ok(())
    }

    /// Writes `index.json` with `entry` tagged `tag` (replacing an entry with that tag),
    /// then moves a new layout into place.
    pub(crate) fn commit(mut self, mut entry: DescJson, tag: &str) -> Result<()> {
        self.wait_for_blobs()?;
        let index_path = self.work.join("index.json");
        let mut index = if index_path.is_file() {
            let v: Value = serde_json::from_slice(&fs::read(&index_path)?)
                .with_context(|| format!("{} is not valid JSON", index_path.display()))?;
            v
        } else {
            json!({"schemaVersion": 2, "mediaType": INDEX_MT, "manifests": []})
        };
        let mut ann = entry.annotations();
        ann.insert(REF_NAME.to_owned(), tag.to_owned());
        let (mt, d, s) = (
            entry.media_type().to_owned(),
            entry.digest().to_owned(),
            entry.size(),
        );
        entry.set(&mt, &d, s, ann);
        let manifests = index
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .with_context(|| format!("{} has no manifests list", index_path.display()))?;
        manifests.retain(|m| {
            m.get("annotations")
                .and_then(|a| a.get(REF_NAME))
                .and_then(Value::as_str)
                != Some(tag)
        });
        manifests.push(Value::Object(entry.0));
        let mut bytes = serde_json::to_vec(&index)?;
        bytes.push(b'\n');
        write_atomic(&index_path, &bytes)?;
        if let Some(tmp) = self.fresh.take() {
            let path = tmp.keep();
            if let Err(e) = fs::rename(&path, &self.dest) {
                let _ = fs::remove_dir_all(&path);
                return Err(e).with_context(|| {
                    format!("cannot move the new layout to {}", self.dest.display())
                });
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for LayoutWriter {
    fn drop(&mut self) {
        // Blobs still being committed are either in place or removed after this.
        let _ = self.wait_for_blobs();
        if self.committed || self.fresh.is_some() {
            return; // a fresh layout's TempDir removes itself
        }
        let added = self.added.get_mut().unwrap_or_else(PoisonError::into_inner);
        for p in added.iter() {
            let _ = fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs() {
        let r = ImageRef::parse("oci:/tmp/x").unwrap();
        assert_eq!(
            (r.path.to_str().unwrap(), r.tag.as_str()),
            ("/tmp/x", "latest")
        );
        let r = ImageRef::parse("oci:/tmp/a:b:v1.2").unwrap();
        assert_eq!(
            (r.path.to_str().unwrap(), r.tag.as_str()),
            ("/tmp/a:b", "v1.2")
        );
        let r = ImageRef::parse("oci:rel/dir:tag").unwrap();
        assert_eq!(
            (r.path.to_str().unwrap(), r.tag.as_str()),
            ("rel/dir", "tag")
        );
        assert!(ImageRef::parse("docker://x").is_err());
        assert!(ImageRef::parse("oci:").is_err());
        assert!(ImageRef::parse("oci:/x:bad tag").is_err());
    }

    #[test]
    fn digests_cannot_escape_the_layout() {
        let root = Path::new("/l");
        assert!(blob_path(root, "sha256:../../etc/passwd").is_err());
        assert!(blob_path(root, "md5:00").is_err());
        assert!(blob_path(root, &format!("sha256:{}", "A".repeat(64))).is_err());
        assert_eq!(
            blob_path(root, &format!("sha256:{}", "a".repeat(64))).unwrap(),
            Path::new("/l/blobs/sha256").join("a".repeat(64))
        );
    }
}
