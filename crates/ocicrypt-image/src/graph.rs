//! The image graph: the indexes and manifests below a root descriptor, each read once.
//!
//! A layout or registry is untrusted input, so the walk is bounded: nested indexes at most
//! [`MAX_DEPTH`] deep, at most [`MAX_DOCUMENTS`] documents and [`MAX_DOCUMENT_BYTES`] bytes
//! of them in all, at most [`MAX_ENTRIES`] index entries and layers in all. A document
//! referenced many times is read and parsed once (the graph is keyed by digest), so a
//! crafted index that lists the next one twice at every level costs nothing extra.

use std::collections::{HashMap, HashSet};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType, Platform};

use crate::lossless::Lossless;
use crate::transport::Source;
use crate::{Error, Result};

/// How deep indexes may nest below the root.
pub const MAX_DEPTH: usize = 8;
/// How many distinct indexes and manifests an image may have.
pub const MAX_DOCUMENTS: usize = 4096;
/// How many bytes its indexes and manifests may have in all (256 MiB).
pub const MAX_DOCUMENT_BYTES: u64 = 256 * 1024 * 1024;
/// How many index entries and layer descriptors an image may have in all.
pub const MAX_ENTRIES: usize = 1 << 20;

/// An index or a manifest, as read.
#[derive(Debug)]
pub(crate) enum Node {
    /// An image index.
    Index(Box<Lossless<ImageIndex>>),
    /// An image manifest.
    Manifest(Box<Lossless<ImageManifest>>),
}

/// A document and the bytes it was read from (written as they are when it is unchanged).
#[derive(Debug)]
pub(crate) struct Doc {
    pub(crate) node: Node,
    pub(crate) bytes: Vec<u8>,
}

/// Every index and manifest reachable from a root, by digest.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    docs: HashMap<String, Doc>,
    bytes: u64,
    entries: usize,
}

/// What kind of document a descriptor points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An OCI image index, or (`docker`) a Docker manifest list.
    Index { docker: bool },
    /// An OCI image manifest, or (`docker`) a Docker schema 2 manifest.
    Manifest { docker: bool },
    /// Something else (an artifact, a config...): not walked.
    Other,
}

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The kind of document `desc` points to. Docker schema 2 documents have the shape of
/// their OCI counterparts, so they are read (to inspect them, or copy them unchanged), but
/// not rewritten.
pub(crate) fn kind(desc: &Descriptor) -> Kind {
    match desc.media_type() {
        MediaType::ImageIndex => Kind::Index { docker: false },
        MediaType::ImageManifest => Kind::Manifest { docker: false },
        MediaType::Other(t) if t == DOCKER_LIST => Kind::Index { docker: true },
        MediaType::Other(t) if t == DOCKER_MANIFEST => Kind::Manifest { docker: true },
        _ => Kind::Other,
    }
}

/// The OCI media type skopeo converts a Docker schema 2 one to; any other unchanged.
pub(crate) fn oci_media_type(t: &MediaType) -> MediaType {
    match t {
        MediaType::Other(o) => match o.as_str() {
            "application/vnd.docker.image.rootfs.diff.tar.gzip" => MediaType::ImageLayerGzip,
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                MediaType::ImageLayerNonDistributableGzip
            }
            "application/vnd.docker.container.image.v1+json" => MediaType::ImageConfig,
            DOCKER_MANIFEST => MediaType::ImageManifest,
            DOCKER_LIST => MediaType::ImageIndex,
            _ => t.clone(),
        },
        _ => t.clone(),
    }
}

/// Fails unless `desc` is an index or manifest (OCI, or Docker schema 2, which is written
/// as OCI when it changes), which we can rewrite.
pub(crate) fn check_rewritable(desc: &Descriptor) -> Result<()> {
    let digest = desc.digest().to_string();
    match kind(desc) {
        Kind::Index { .. } | Kind::Manifest { .. } => Ok(()),
        Kind::Other => Err(Error::UnsupportedMediaType {
            digest,
            media_type: desc.media_type().to_string(),
        }),
    }
}

impl Graph {
    /// Reads every document reachable from `root`.
    pub(crate) fn load(src: &dyn Source, root: &Descriptor) -> Result<Self> {
        let mut g = Self::default();
        let mut stack = vec![(root.clone(), 0usize)];
        while let Some((desc, depth)) = stack.pop() {
            let key = desc.digest().to_string();
            if g.docs.contains_key(&key) {
                continue;
            }
            let doc_kind = kind(&desc);
            if doc_kind == Kind::Other {
                if depth == 0 {
                    check_rewritable(&desc)?;
                }
                continue; // not a document we walk; copied as a blob where needed
            }
            if g.docs.len() >= MAX_DOCUMENTS {
                return Err(too_complex(format!(
                    "more than {MAX_DOCUMENTS} manifests and indexes"
                )));
            }
            g.bytes += desc.size();
            if g.bytes > MAX_DOCUMENT_BYTES {
                return Err(too_complex(format!(
                    "its manifests and indexes have more than {MAX_DOCUMENT_BYTES} bytes"
                )));
            }
            let bytes = src.read_document(&desc)?;
            let node = match doc_kind {
                Kind::Index { .. } => {
                    let index: Lossless<ImageIndex> =
                        Lossless::from_slice(&bytes, &format!("image index {key}"))?;
                    if depth >= MAX_DEPTH && !index.get().manifests().is_empty() {
                        return Err(too_complex(format!(
                            "indexes nested more than {MAX_DEPTH} deep"
                        )));
                    }
                    g.count(index.get().manifests().len())?;
                    // Pushed in reverse so that they are visited in order.
                    for child in index.get().manifests().iter().rev() {
                        stack.push((child.clone(), depth + 1));
                    }
                    Node::Index(Box::new(index))
                }
                Kind::Manifest { .. } => {
                    let m: Lossless<ImageManifest> =
                        Lossless::from_slice(&bytes, &format!("image manifest {key}"))?;
                    g.count(m.get().layers().len())?;
                    Node::Manifest(Box::new(m))
                }
                Kind::Other => continue,
            };
            g.docs.insert(key, Doc { node, bytes });
        }
        Ok(g)
    }

    fn count(&mut self, n: usize) -> Result<()> {
        self.entries += n;
        if self.entries > MAX_ENTRIES {
            return Err(too_complex(format!(
                "more than {MAX_ENTRIES} index entries and layers"
            )));
        }
        Ok(())
    }

    /// The document `desc` points to (loaded by [`Graph::load`]).
    pub(crate) fn get(&self, desc: &Descriptor) -> Result<&Doc> {
        self.docs
            .get(desc.digest().as_ref())
            .ok_or_else(|| Error::Internal(format!("{} was not loaded", desc.digest())))
    }

    /// Every image manifest below `desc` (in order), with the platform of the index
    /// entry that lists it. Each index is expanded once.
    pub(crate) fn images(&self, desc: &Descriptor) -> Result<Vec<(Option<Platform>, Descriptor)>> {
        let mut out = Vec::new();
        let mut expanded = HashSet::new();
        let mut stack = vec![(None, desc.clone())];
        while let Some((platform, d)) = stack.pop() {
            if kind(&d) == Kind::Other {
                continue; // an artifact or other blob listed by an index: no image
            }
            match &self.get(&d)?.node {
                Node::Manifest(_) => out.push((platform, d)),
                Node::Index(index) => {
                    if expanded.insert(d.digest().to_string()) {
                        for e in index.get().manifests().iter().rev() {
                            stack.push((e.platform().clone(), e.clone()));
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

fn too_complex(reason: String) -> Error {
    Error::TooComplex { reason }
}
