//! Where images are read from and written to.
//!
//! A transport is a [`Source`] and a [`Destination`]: the image operations see nothing else,
//! so an OCI layout ([`crate::layout`]) and a registry are interchangeable. Blobs are
//! streamed; small documents (manifests, indexes, configs) are read whole, within a size
//! limit, and verified against their digest.

use std::fmt;
use std::io::{self, Read, Write};

use oci_spec::image::{Descriptor, Digest, MediaType};

use crate::digest::{Verifier, sha256};
use crate::lossless::Lossless;
use crate::{Error, Result};

/// The largest manifest, index or config we read (64 MiB).
pub const MAX_DOCUMENT_SIZE: u64 = 64 * 1024 * 1024;

/// Where an image's blobs and manifests are read from.
pub trait Source: Send + Sync + fmt::Debug {
    /// The descriptor of the image the reference names (a manifest or an index), as the
    /// source lists it (for a layout: its `index.json` entry).
    ///
    /// # Errors
    /// The reference names no image, or the source is unreadable.
    fn root(&self) -> Result<Lossless<Descriptor>>;

    /// Opens a blob. The reader yields at most `desc.size()` bytes; the caller verifies them
    /// against the digest.
    ///
    /// # Errors
    /// The blob is missing, of the wrong size, or not readable.
    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>>;

    /// Where the blob is as a regular file of this machine, if the transport keeps blobs as
    /// files (a layout does): lets a destination on the same file system hard-link it
    /// instead of copying. Default: `None`.
    fn local_path(&self, desc: &Descriptor) -> Option<std::path::PathBuf> {
        let _ = desc;
        None
    }

    /// Reads a small blob (a manifest, index or config) whole and verifies its digest.
    ///
    /// # Errors
    /// [`Error::TooLarge`] above [`MAX_DOCUMENT_SIZE`], [`Error::DigestMismatch`], or as
    /// [`Source::open_blob`].
    fn read_document(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        read_blob_verified(self, desc)
    }

    /// The registry host and repository the source reads from, if it is a registry: lets
    /// a destination on the same registry mount blobs instead of copying them. Default:
    /// `None`.
    fn repository(&self) -> Option<(String, String)> {
        None
    }
}

/// Reads a small blob whole through [`Source::open_blob`] and verifies its size and digest:
/// what [`Source::read_document`] does unless a transport keeps documents elsewhere.
///
/// # Errors
/// [`Error::TooLarge`] above [`MAX_DOCUMENT_SIZE`], [`Error::DigestMismatch`], or as
/// [`Source::open_blob`].
pub fn read_blob_verified<S: Source + ?Sized>(src: &S, desc: &Descriptor) -> Result<Vec<u8>> {
    if desc.size() > MAX_DOCUMENT_SIZE {
        return Err(Error::TooLarge {
            digest: desc.digest().to_string(),
            size: desc.size(),
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    let mut verifier = Verifier::new(desc.digest())?;
    let mut buf = Vec::new();
    src.open_blob(desc)?
        .take(desc.size())
        .read_to_end(&mut buf)
        .map_err(Error::io(format!("cannot read blob {}", desc.digest())))?;
    check_size(desc, buf.len() as u64)?;
    verifier.update(&buf);
    verifier.verify()?;
    Ok(buf)
}

/// Where an image is written. Blobs first (from several threads at once), then
/// [`Destination::commit`] names the new image; a destination dropped before that leaves
/// no trace of what it was given.
pub trait Destination: Send + Sync + fmt::Debug {
    /// Whether the destination has this blob already.
    ///
    /// # Errors
    /// The destination cannot be queried.
    fn has_blob(&self, digest: &Digest) -> Result<bool>;

    /// Starts a new blob, to be written and then committed under its digest.
    ///
    /// # Errors
    /// The destination cannot take a new blob.
    fn new_blob(&self) -> Result<Box<dyn BlobWriter>>;

    /// Adds the file `path` (see [`Source::local_path`]) as the blob `digest` without
    /// copying it, if the destination can (a hard link on the same file system); `false`
    /// when it cannot and the caller should copy. Default: `false`.
    ///
    /// # Errors
    /// The destination cannot be written.
    fn link_blob(&self, path: &std::path::Path, digest: &Digest) -> Result<bool> {
        let _ = (path, digest);
        Ok(false)
    }

    /// Writes a manifest or index `bytes` (whose digest the caller verified or computed) of
    /// `media_type`. A layout keeps it as a blob; a registry pushes it at
    /// [`Destination::commit`], after every blob. Default: a blob, unless present.
    ///
    /// # Errors
    /// The destination cannot be written.
    fn put_document(&self, bytes: &[u8], digest: &Digest, media_type: &MediaType) -> Result<()> {
        let _ = media_type;
        if self.has_blob(digest)? {
            return Ok(());
        }
        let mut w = self.new_blob()?;
        w.write_all(bytes)
            .map_err(Error::io("cannot write a new blob"))?;
        w.commit(digest)
    }

    /// Adds the blob `digest` from another repository of the same registry (see
    /// [`Source::repository`]) without copying it, if the destination can (a cross-repository
    /// mount); `false` when it cannot and the caller should copy. Default: `false`.
    ///
    /// # Errors
    /// The destination cannot be written.
    fn mount_blob(&self, registry: &str, repository: &str, digest: &Digest) -> Result<bool> {
        let _ = (registry, repository, digest);
        Ok(false)
    }

    /// Waits until every committed blob is in place; the first failure among them.
    ///
    /// # Errors
    /// A blob could not be put in place.
    fn flush_blobs(&self) -> Result<()>;

    /// After every blob: makes `root` (a manifest or index descriptor) the image the
    /// destination reference names.
    ///
    /// # Errors
    /// The image could not be named; the destination is then left as it was.
    fn commit(self: Box<Self>, root: Lossless<Descriptor>) -> Result<()>;
}

/// A blob being written to a [`Destination`].
pub trait BlobWriter: Write + Send {
    /// Puts the blob in place under `digest` (computed by the caller from what it wrote).
    /// The destination may finish this in the background; see
    /// [`Destination::flush_blobs`].
    ///
    /// # Errors
    /// The blob could not be stored.
    fn commit(self: Box<Self>, digest: &Digest) -> Result<()>;
}

/// Fails unless `actual` is `desc`'s size.
pub(crate) fn check_size(desc: &Descriptor, actual: u64) -> Result<()> {
    if actual == desc.size() {
        Ok(())
    } else {
        Err(Error::SizeMismatch {
            digest: desc.digest().to_string(),
            actual,
            expected: desc.size(),
        })
    }
}

/// Fails unless `actual` (what a hashing pipe computed from the blob read) is `desc`'s digest.
pub(crate) fn check_digest(desc: &Descriptor, actual: Option<String>) -> Result<()> {
    let actual = actual.unwrap_or_default();
    if actual == desc.digest().as_ref() {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            expected: desc.digest().to_string(),
            actual,
        })
    }
}

/// `sha256:<hex>` as an `oci_spec` digest.
pub(crate) fn sha256_digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|_| Error::Internal(format!("computed digest {s:?} does not parse")))
}

/// Writes a new manifest or index `bytes` of `media_type`; its SHA-256 digest.
pub(crate) fn put_new_document(
    dst: &dyn Destination,
    bytes: &[u8],
    media_type: &MediaType,
) -> Result<Digest> {
    let digest = sha256_digest(&sha256(bytes))?;
    dst.put_document(bytes, &digest, media_type)?;
    Ok(digest)
}

/// Puts an encrypted blob whose content is authenticated later anyway (its HMAC is checked
/// by whoever decrypts it) at the destination: a hard link where the transports allow,
/// otherwise a verified copy.
pub(crate) fn link_or_copy(
    src: &dyn Source,
    dst: &dyn Destination,
    desc: &Descriptor,
) -> Result<()> {
    if dst.has_blob(desc.digest())? {
        return Ok(());
    }
    if let Some(path) = src.local_path(desc)
        && dst.link_blob(&path, desc.digest())?
    {
        return Ok(());
    }
    copy_blob(src, dst, desc)
}

/// Copies a blob unchanged (unless the destination has it), verifying its size and digest.
pub(crate) fn copy_blob(src: &dyn Source, dst: &dyn Destination, desc: &Descriptor) -> Result<()> {
    if dst.has_blob(desc.digest())? {
        return Ok(());
    }
    if let Some((registry, repository)) = src.repository()
        && dst.mount_blob(&registry, &repository, desc.digest())?
    {
        return Ok(());
    }
    let mut verifier = Verifier::new(desc.digest())?;
    let mut r = src.open_blob(desc)?.take(desc.size());
    let mut w = dst.new_blob()?;
    let mut buf = vec![0; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(format!("cannot copy blob {}", desc.digest()))(e)),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        verifier.update(chunk);
        w.write_all(chunk)
            .map_err(Error::io(format!("cannot copy blob {}", desc.digest())))?;
        len += n as u64;
    }
    check_size(desc, len)?;
    verifier.verify()?;
    w.commit(desc.digest())
}
