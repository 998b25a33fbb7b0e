//! OCI image layouts (`oci:PATH[:TAG]`): a [`Source`] that refuses anything but regular
//! files inside the layout, and a [`Destination`] that leaves the destination untouched
//! unless the whole image was written.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use oci_spec::image::{Descriptor, Digest};
use serde_json::{Value, json};

use ocicrypt_pipeline::{Stage, Worker};

use crate::digest::checked;
use crate::fsx::{Registered, Staged, remove_stale, temporary_prefix, write_atomic};
use crate::lossless::Lossless;
use crate::transport::{BlobWriter, Destination, MAX_DOCUMENT_SIZE, Source};
use crate::{Error, Result};

/// The annotation that names a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// OCI image index media type.
pub const INDEX_MT: &str = "application/vnd.oci.image.index.v1+json";

/// The path of a blob below `root`, after checking that the digest is one we can verify and
/// is well formed (so it cannot point outside the layout).
fn blob_path(root: &Path, digest: &Digest) -> Result<PathBuf> {
    let (alg, hex) = checked(digest)?;
    Ok(root.join("blobs").join(alg).join(hex))
}

/// Reads a small file of the layout itself (`oci-layout`, `index.json`), refusing links.
fn read_small_file(path: &Path) -> Result<Vec<u8>> {
    let meta =
        fs::symlink_metadata(path).map_err(Error::io(format!("cannot read {}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::Io {
            what: format!("cannot read {}", path.display()),
            source: std::io::Error::other("not a regular file"),
        });
    }
    let mut buf = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_DOCUMENT_SIZE + 1).read_to_end(&mut buf))
        .map_err(Error::io(format!("cannot read {}", path.display())))?;
    if buf.len() as u64 > MAX_DOCUMENT_SIZE {
        return Err(Error::TooLarge {
            digest: path.display().to_string(),
            size: buf.len() as u64,
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    Ok(buf)
}

/// Checks `root/oci-layout`.
fn check_layout(root: &Path) -> Result<()> {
    let marker = root.join("oci-layout");
    let not = |reason: &str| Error::NotALayout {
        path: root.to_owned(),
        reason: reason.to_owned(),
    };
    let bytes = read_small_file(&marker).map_err(|_| not("no oci-layout file"))?;
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|_| not("oci-layout is not valid JSON"))?;
    if v.get("imageLayoutVersion")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err(not("oci-layout has no imageLayoutVersion"));
    }
    Ok(())
}

/// The tag of an `index.json` entry.
fn tag_of(entry: &Value) -> Option<&str> {
    entry.get("annotations")?.get(REF_NAME)?.as_str()
}

/// A source layout and the tag to read.
#[derive(Debug)]
pub struct LayoutSource {
    root: PathBuf,
    tag: String,
}

impl LayoutSource {
    /// Opens the layout at `root`, to read the image tagged `tag`.
    ///
    /// # Errors
    /// [`Error::NotALayout`].
    pub fn open(root: &Path, tag: &str) -> Result<Self> {
        check_layout(root)?;
        Ok(Self {
            root: root.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

impl Source for LayoutSource {
    fn root(&self) -> Result<Lossless<Descriptor>> {
        let path = self.root.join("index.json");
        let what = path.display().to_string();
        let index: Value =
            serde_json::from_slice(&read_small_file(&path)?).map_err(Error::json(&what))?;
        let manifests = index
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::json(&what)(serde::de::Error::missing_field("manifests")))?;
        match manifests
            .iter()
            .find(|m| tag_of(m) == Some(self.tag.as_str()))
        {
            Some(m) => {
                Lossless::from_value(m.clone(), &format!("the index entry for tag {}", self.tag))
            }
            None => Err(Error::TagNotFound {
                tag: self.tag.clone(),
                layout: self.root.clone(),
            }),
        }
    }

    fn local_path(&self, desc: &Descriptor) -> Option<PathBuf> {
        let path = blob_path(&self.root, desc.digest()).ok()?;
        // The same checks as open_blob: a regular file of the right size, no link.
        self.open_blob(desc).ok()?;
        Some(path)
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>> {
        let path = blob_path(&self.root, desc.digest())?;
        let digest = desc.digest().to_string();
        // Every directory on the way must be a real one inside the layout, and the blob a
        // regular file: no symbolic link may lead out of the layout, and no FIFO or device
        // may hang or feed us forever.
        for dir in [
            self.root.join("blobs"),
            path.parent().map(Path::to_owned).unwrap_or_default(),
        ] {
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(Error::NotARegularFile { digest }),
                Err(_) => return Err(Error::MissingBlob { digest }),
            }
        }
        let lmeta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => return Err(Error::MissingBlob { digest }),
        };
        if !lmeta.is_file() {
            return Err(Error::NotARegularFile { digest });
        }
        let f = File::open(&path).map_err(Error::io(format!("cannot open blob {digest}")))?;
        let meta = f
            .metadata()
            .map_err(Error::io(format!("cannot open blob {digest}")))?;
        // The file opened is the one checked (not swapped for a link in between).
        if !meta.is_file() || meta.ino() != lmeta.ino() || meta.dev() != lmeta.dev() {
            return Err(Error::NotARegularFile { digest });
        }
        if meta.len() != desc.size() {
            return Err(Error::SizeMismatch {
                digest,
                actual: meta.len(),
                expected: desc.size(),
            });
        }
        Ok(Box::new(f.take(desc.size())))
    }
}

/// A destination layout being written. New blobs are written under temporary names and
/// renamed by digest (synced and renamed on a background thread, so that the thread that
/// wrote a blob goes on with the next); `index.json` is written last by
/// [`Destination::commit`]. A new layout is built in a temporary directory beside the
/// destination and renamed into place at the end. Dropped uncommitted, everything it added
/// is removed.
#[derive(Debug)]
pub struct LayoutDestination {
    inner: Arc<Inner>,
    tag: String,
    fresh: Option<tempfile::TempDir>,
    /// A new layout's temporary directory, in the register of temporaries.
    _registered: Option<Registered>,
    committed: bool,
}

#[derive(Debug)]
struct Inner {
    work: PathBuf,
    dest: PathBuf,
    /// Blobs this writer added, to remove if it is dropped uncommitted.
    added: Mutex<Vec<PathBuf>>,
    committer: Mutex<Option<Committer>>,
}

/// Blobs the committer may hold queued before [`Committer::commit`] waits for it.
const COMMIT_QUEUE: usize = 64;

/// The committer's stage: syncs a staged blob and renames it into place.
struct Commit;

impl Stage<(Staged, PathBuf)> for Commit {
    type Output = ();
    type Error = Error;

    fn apply(&mut self, (blob, path): (Staged, PathBuf)) -> Result<()> {
        blob.commit_as(&path)
    }
}

fn commit_error(e: ocicrypt_pipeline::Error<Error>) -> Error {
    match e {
        ocicrypt_pipeline::Error::Stage(e) => e,
        _ => Error::Internal("the blob commit thread stopped".into()),
    }
}

/// A thread (an [`ocicrypt_pipeline::Worker`]) that syncs staged blobs and renames them
/// into place, in the order given. It stops at the first failure: what is queued after it
/// is dropped (removed).
#[derive(Debug)]
struct Committer {
    worker: Worker<(Staged, PathBuf), Commit>,
}

impl Committer {
    fn spawn() -> Result<Self> {
        let worker = Worker::builder()
            .name("ocicrypt-commit")
            .depth(COMMIT_QUEUE)
            .start(Commit)
            .map_err(|e| Error::io("cannot start a thread")(e.error))?;
        Ok(Self { worker })
    }

    /// Queues `blob` for `path`; with [`COMMIT_QUEUE`] blobs queued, this waits for the
    /// oldest. After a failure the thread has stopped: the failure is returned (once) and
    /// `blob` is dropped.
    fn commit(&mut self, blob: Staged, path: PathBuf) -> Result<()> {
        if self.worker.is_full() {
            self.worker.receive().map_err(commit_error)?;
        }
        match self.worker.submit((blob, path)) {
            Ok(()) => Ok(()),
            Err(_) => Err(commit_error(self.worker.failure())),
        }
    }

    /// Waits until every blob queued is in place.
    fn wait(self) -> Result<()> {
        self.worker.finish().map(|Commit| ()).map_err(commit_error)
    }
}

impl Inner {
    fn record(&self, path: PathBuf) {
        self.added
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(path);
    }

    fn wait_for_blobs(&self) -> Result<()> {
        let committer = self
            .committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        committer.map_or(Ok(()), Committer::wait)
    }

    fn commit_in_background(&self, staged: Staged, digest: &Digest) -> Result<()> {
        let path = blob_path(&self.work, digest)?;
        if path.is_file() {
            return Ok(()); // dropped: the temporary file is removed
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)
                .map_err(Error::io(format!("cannot create {}", dir.display())))?;
        }
        // Recorded before it is in place, so that a writer dropped after a failure removes
        // it whether or not it got there.
        self.record(path.clone());
        let mut committer = self
            .committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if committer.is_none() {
            *committer = Some(Committer::spawn()?);
        }
        committer
            .as_mut()
            .map_or(Ok(()), |c| c.commit(staged, path))
    }
}

/// A blob being written into a [`LayoutDestination`].
struct LayoutBlob {
    staged: Staged,
    inner: Arc<Inner>,
}

impl std::io::Write for LayoutBlob {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.staged.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.staged.flush()
    }
}

impl BlobWriter for LayoutBlob {
    fn commit(self: Box<Self>, digest: &Digest) -> Result<()> {
        let Self { staged, inner } = *self;
        inner.commit_in_background(staged, digest)
    }
}

impl LayoutDestination {
    /// Writes into the layout at `dest` (an existing layout, or a new one where nothing or an
    /// empty directory is), naming the image `tag`.
    ///
    /// # Errors
    /// [`Error::DestinationExists`] if `dest` is something else; I/O errors.
    pub fn create(dest: &Path, tag: &str) -> Result<Self> {
        let (work, fresh, registered) =
            if fs::symlink_metadata(dest.join("oci-layout")).is_ok_and(|m| m.is_file()) {
                check_layout(dest)?;
                remove_stale(&dest.join("blobs").join("sha256"));
                (dest.to_owned(), None, None)
            } else {
                if dest.exists() {
                    let empty_dir = dest.is_dir()
                        && fs::read_dir(dest)
                            .map_err(Error::io(format!("cannot read {}", dest.display())))?
                            .next()
                            .is_none();
                    if !empty_dir {
                        return Err(Error::DestinationExists {
                            path: dest.to_owned(),
                        });
                    }
                }
                let parent = match dest.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                    _ => PathBuf::from("."),
                };
                fs::create_dir_all(&parent)
                    .map_err(Error::io(format!("cannot create {}", parent.display())))?;
                remove_stale(&parent);
                let tmp = tempfile::Builder::new()
                    .prefix(&temporary_prefix("layout-"))
                    .tempdir_in(&parent)
                    .map_err(Error::io(format!(
                        "cannot create a directory in {}",
                        parent.display()
                    )))?;
                let registered = Registered::new(tmp.path());
                let work = tmp.path().to_owned();
                fs::create_dir_all(work.join("blobs").join("sha256"))
                    .map_err(Error::io(format!("cannot create {}", work.display())))?;
                write_atomic(
                    &work.join("oci-layout"),
                    br#"{"imageLayoutVersion":"1.0.0"}"#,
                )?;
                (work, Some(tmp), Some(registered))
            };
        Ok(Self {
            inner: Arc::new(Inner {
                work,
                dest: dest.to_owned(),
                added: Mutex::new(Vec::new()),
                committer: Mutex::new(None),
            }),
            tag: tag.to_owned(),
            fresh,
            _registered: registered,
            committed: false,
        })
    }
}

impl Destination for LayoutDestination {
    fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(fs::symlink_metadata(blob_path(&self.inner.work, digest)?).is_ok_and(|m| m.is_file()))
    }

    fn new_blob(&self) -> Result<Box<dyn BlobWriter>> {
        let dir = self.inner.work.join("blobs").join("sha256");
        fs::create_dir_all(&dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
        Ok(Box::new(LayoutBlob {
            staged: Staged::new(&dir.join("staging"))?,
            inner: Arc::clone(&self.inner),
        }))
    }

    fn link_blob(&self, path: &Path, digest: &Digest) -> Result<bool> {
        let target = blob_path(&self.inner.work, digest)?;
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir)
                .map_err(Error::io(format!("cannot create {}", dir.display())))?;
        }
        match fs::hard_link(path, &target) {
            Ok(()) => {
                self.inner.record(target);
                Ok(true)
            }
            // Another file system, no permission, a file system without links...: copy.
            Err(_) => Ok(false),
        }
    }

    fn flush_blobs(&self) -> Result<()> {
        self.inner.wait_for_blobs()
    }

    fn commit(mut self: Box<Self>, root: Lossless<Descriptor>) -> Result<()> {
        self.inner.wait_for_blobs()?;
        let index_path = self.inner.work.join("index.json");
        let what = index_path.display().to_string();
        let mut index: Value = if fs::symlink_metadata(&index_path).is_ok() {
            serde_json::from_slice(&read_small_file(&index_path)?).map_err(Error::json(&what))?
        } else {
            json!({"schemaVersion": 2, "mediaType": INDEX_MT, "manifests": []})
        };
        let mut entry = Value::Object(root.raw().clone());
        if let Some(obj) = entry.as_object_mut() {
            let ann = obj.entry("annotations").or_insert_with(|| json!({}));
            if let Some(ann) = ann.as_object_mut() {
                ann.insert(REF_NAME.to_owned(), Value::String(self.tag.clone()));
            }
        }
        let manifests = index
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| Error::json(&what)(serde::de::Error::missing_field("manifests")))?;
        manifests.retain(|m| tag_of(m) != Some(self.tag.as_str()));
        manifests.push(entry);
        let mut bytes = serde_json::to_vec(&index).map_err(|e| Error::Internal(e.to_string()))?;
        bytes.push(b'\n');
        write_atomic(&index_path, &bytes)?;
        if let Some(tmp) = self.fresh.take() {
            let path = tmp.keep();
            if let Err(e) = fs::rename(&path, &self.inner.dest) {
                let _ = fs::remove_dir_all(&path);
                return Err(Error::io(format!(
                    "cannot move the new layout to {}",
                    self.inner.dest.display()
                ))(e));
            }
            self._registered = None;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for LayoutDestination {
    fn drop(&mut self) {
        // Blobs still being committed are either in place or removed after this.
        let _ = self.inner.wait_for_blobs();
        if self.committed || self.fresh.is_some() {
            return; // a fresh layout's TempDir removes itself
        }
        let added = self
            .inner
            .added
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for p in added.iter() {
            let _ = fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn the_committer_stops_at_the_first_failure_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let staged = |name: &str| {
            let dest = dir.path().join(name);
            let mut s = Staged::new(&dest).unwrap();
            s.write_all(name.as_bytes()).unwrap();
            (s, dest)
        };
        let missing = dir.path().join("missing/b");
        // Reported by wait.
        let mut c = Committer::spawn().unwrap();
        let (a, a_path) = staged("a");
        c.commit(a, a_path.clone()).unwrap();
        c.commit(staged("b").0, missing.clone()).unwrap();
        let err = c.wait().unwrap_err();
        assert!(err.to_string().contains("cannot rename"), "{err}");
        assert_eq!(fs::read(&a_path).unwrap(), b"a");
        // Reported by a later commit, once; nothing after the failure is put in place, and
        // no temporary file is left.
        let mut c = Committer::spawn().unwrap();
        c.commit(staged("b").0, missing).unwrap();
        let mut failures = Vec::new();
        for i in 0..2 * COMMIT_QUEUE {
            let (s, dest) = staged(&format!("c{i}"));
            if let Err(e) = c.commit(s, dest) {
                failures.push(e.to_string());
            }
        }
        assert!(failures[0].contains("cannot rename"), "{failures:?}");
        assert!(
            failures[1..]
                .iter()
                .all(|f| f.contains("commit thread stopped")),
            "{failures:?}"
        );
        assert!(c.wait().is_err());
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["a"]);
    }

    #[test]
    fn digests_cannot_escape_the_layout() {
        let root = Path::new("/l");
        let d = |s: &str| s.parse::<Digest>();
        // Refused when parsed, or when turned into a path.
        let refused = |s: &str| d(s).map_or(true, |d| blob_path(root, &d).is_err());
        assert!(refused("sha256:../../etc/passwd"));
        assert!(refused("md5:00"));
        assert!(refused(&format!("sha256:{}", "A".repeat(64))));
        assert!(refused("sha256:00"));
        assert!(refused(&format!("sha512:{}", "a".repeat(64))));
        assert!(!refused(&format!("sha512:{}", "a".repeat(128))));
        assert_eq!(
            blob_path(root, &d(&format!("sha256:{}", "a".repeat(64))).unwrap()).unwrap(),
            Path::new("/l/blobs/sha256").join("a".repeat(64))
        );
    }

    #[test]
    fn links_and_special_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        let outside = dir.path().join("secret");
        fs::write(&outside, b"secret").unwrap();
        let hex = "b".repeat(64);
        std::os::unix::fs::symlink(&outside, root.join("blobs/sha256").join(&hex)).unwrap();
        let src = LayoutSource::open(root, "latest").unwrap();
        let desc = Descriptor::new(
            oci_spec::image::MediaType::ImageConfig,
            6,
            format!("sha256:{hex}").parse::<Digest>().unwrap(),
        );
        assert!(matches!(
            src.open_blob(&desc),
            Err(Error::NotARegularFile { .. })
        ));
        let desc = Descriptor::new(
            oci_spec::image::MediaType::ImageConfig,
            6,
            format!("sha256:{}", "c".repeat(64))
                .parse::<Digest>()
                .unwrap(),
        );
        assert!(matches!(
            src.open_blob(&desc),
            Err(Error::MissingBlob { .. })
        ));
    }
}
