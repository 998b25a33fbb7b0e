//! Encrypting and decrypting the layers of whole images, and describing them.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;

use oci_spec::image::{Descriptor, MediaType, Platform};
use ocicrypt::{DecryptConfig, EncryptConfig, Encrypted, LayerInfo};
use serde::Serialize;

use crate::graph::{Graph, Kind, Node, check_rewritable, kind, oci_media_type};
use crate::options::{Counting, PlatformSpec, Progress, platform_selected};
use crate::pipe::{Input, Output};
use crate::transport::{
    Destination, Source, check_digest, check_size, copy_blob, link_or_copy, put_new_document,
    sha256_digest,
};
use crate::{Error, ImageRef, Options, Result};

/// What an image operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// How many distinct layers were encrypted, decrypted or given new recipients.
    pub layers_changed: usize,
    /// How many distinct layers were copied as they were (not selected, or already in the
    /// wanted state).
    pub layers_unchanged: usize,
    /// The descriptor of the image written (a manifest or index).
    pub root: Descriptor,
}

/// What [`inspect`](crate::inspect) found: every image (manifest) of the reference with
/// its layers and how each is encrypted. Serializes to what `ocicrypt image inspect --json`
/// prints.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ImageInfo {
    /// The reference inspected.
    pub image: String,
    /// Its image manifests, in index order.
    pub manifests: Vec<ManifestInfo>,
}

/// One image manifest in an [`ImageInfo`].
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ManifestInfo {
    /// The manifest's digest.
    pub manifest: String,
    /// The platform its index entry names, if any.
    pub platform: Option<Platform>,
    /// Its layers, bottom first.
    pub layers: Vec<LayerEntry>,
}

/// One layer in a [`ManifestInfo`].
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LayerEntry {
    /// Its position (0 is the bottom).
    pub index: usize,
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// How it is encrypted.
    pub encryption: LayerInfo,
    /// With [`inspect_keys`], for an encrypted layer: whether the keys given open it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens: Option<bool>,
}

/// The transport of a reference: where to read from.
fn open_source(r: &ImageRef, options: &Options) -> Result<Box<dyn Source>> {
    match r {
        ImageRef::Oci { path, tag } => Ok(Box::new(crate::layout::LayoutSource::open(path, tag)?)),
        #[cfg(feature = "registry")]
        ImageRef::Docker(r) => Ok(Box::new(crate::registry::RegistrySource::open(
            r,
            &options.source_registry,
        )?)),
        #[cfg(not(feature = "registry"))]
        ImageRef::Docker(_) => {
            let _ = options;
            Err(Error::RegistryUnsupported)
        }
    }
}

/// The transport of a reference: where to write to.
fn open_destination(r: &ImageRef, options: &Options) -> Result<Box<dyn Destination>> {
    match r {
        ImageRef::Oci { path, tag } => Ok(Box::new(crate::layout::LayoutDestination::create(
            path, tag,
        )?)),
        #[cfg(feature = "registry")]
        ImageRef::Docker(r) => Ok(Box::new(crate::registry::RegistryDestination::open(
            r,
            &options.destination_registry,
        )?)),
        #[cfg(not(feature = "registry"))]
        ImageRef::Docker(_) => {
            let _ = options;
            Err(Error::RegistryUnsupported)
        }
    }
}

/// Describes every image under `src` and the encryption of each layer; needs no keys and
/// reads no layer data.
///
/// # Errors
/// The source cannot be read, or a manifest or an encryption annotation is malformed.
pub fn inspect(src: &ImageRef) -> Result<ImageInfo> {
    inspect_with(src, &Options::default())
}

/// [`inspect`] with the schemes of `options` (so that key-provider recipients are named).
///
/// # Errors
/// As [`inspect`].
pub fn inspect_with(src: &ImageRef, options: &Options) -> Result<ImageInfo> {
    let source = open_source(src, options)?;
    describe(source.as_ref(), &src.to_string(), options, None)
}

/// [`inspect_with`], and for every encrypted layer whether the keys of `dc` open it
/// ([`LayerEntry::opens`]): "can this host run this image?". Only the layer keys are
/// unwrapped (Go's `unwrapOnly`); no layer data is read.
///
/// # Errors
/// As [`inspect`]. A key that does not open a layer is not an error: that layer gets
/// `opens: false`.
pub fn inspect_keys(src: &ImageRef, dc: &DecryptConfig, options: &Options) -> Result<ImageInfo> {
    let source = open_source(src, options)?;
    describe(source.as_ref(), &src.to_string(), options, Some(dc))
}

/// [`inspect_with`] for any [`Source`] (a transport of your own, or one in memory), named
/// `name` in the result.
///
/// # Errors
/// As [`inspect`].
pub fn inspect_source(source: &dyn Source, name: &str, options: &Options) -> Result<ImageInfo> {
    describe(source, name, options, None)
}

fn describe(
    source: &dyn Source,
    name: &str,
    options: &Options,
    keys: Option<&DecryptConfig>,
) -> Result<ImageInfo> {
    let root = source.root()?;
    let graph = Graph::load(source, root.get())?;
    let mut manifests = Vec::new();
    for (platform, mdesc) in graph.images(root.get())? {
        let Node::Manifest(m) = &graph.get(&mdesc)?.node else {
            continue;
        };
        let mut layers = Vec::new();
        for (index, l) in m.get().layers().iter().enumerate() {
            let encryption = options.ocicrypt.inspect(l).map_err(|e| Error::Layer {
                index,
                digest: l.digest().to_string(),
                manifest: mdesc.digest().to_string(),
                source: Box::new(e.into()),
            })?;
            let opens = match keys {
                Some(dc) if encryption.encrypted => {
                    Some(options.ocicrypt.unwrap_options(dc, l).is_ok())
                }
                _ => None,
            };
            layers.push(LayerEntry {
                index,
                media_type: l.media_type().to_string(),
                digest: l.digest().to_string(),
                size: l.size(),
                encryption,
                opens,
            });
        }
        manifests.push(ManifestInfo {
            manifest: mdesc.digest().to_string(),
            platform,
            layers,
        });
    }
    Ok(ImageInfo {
        image: name.to_owned(),
        manifests,
    })
}

/// Encrypts the selected layers of `src` for the recipients of `ec` into `dst` (a new or
/// existing layout; `src` and `dst` may be the same layout with different tags), as skopeo
/// does: each layer gets the `+encrypted` media type and `org.opencontainers.image.enc.*`
/// annotations, and manifests and indexes are rewritten to match. A layer that is already
/// encrypted gets the new recipients without its data being touched, if `ec.decrypt` holds a
/// key that opens it.
///
/// On failure nothing is tagged at the destination and no blob is left behind.
///
/// # Errors
/// The source is unreadable or malformed, a selection does not fit the image, a layer
/// cannot be encrypted (each error names the layer), or the destination cannot be written.
pub fn encrypt(
    src: &ImageRef,
    dst: &ImageRef,
    ec: &EncryptConfig,
    options: &Options,
) -> Result<Report> {
    transform(src, dst, &Op::Encrypt(ec), options)
}

/// Decrypts the selected layers of `src` with the keys of `dc` into `dst`: each layer is
/// authenticated (HMAC) and its plaintext digest checked before it lands; plain layers and
/// layers not selected are copied as they are.
///
/// On failure nothing is tagged at the destination and no blob is left behind.
///
/// # Errors
/// As [`encrypt`]; a layer no key opens, or whose data fails authentication.
pub fn decrypt(
    src: &ImageRef,
    dst: &ImageRef,
    dc: &DecryptConfig,
    options: &Options,
) -> Result<Report> {
    transform(src, dst, &Op::Decrypt(dc), options)
}

/// Replaces the recipients of the selected encrypted layers of `src`: each layer key is
/// unwrapped with `ec.decrypt` (any scheme, key providers too) and wrapped for exactly the
/// recipients of `ec`, so old recipients lose access and new ones gain it. No layer data is
/// read or changed (same blobs, same digests; into the same layout nothing is copied); only
/// manifests and indexes change. Plain layers and layers not selected are left as they are
/// ([`Report::layers_unchanged`]).
///
/// On failure (a selected layer `ec.decrypt` cannot open, for instance) nothing is tagged at
/// the destination and no blob is left behind.
///
/// # Errors
/// As [`encrypt`]; [`Error::Layer`] naming a layer the keys do not open.
pub fn rewrap(
    src: &ImageRef,
    dst: &ImageRef,
    ec: &EncryptConfig,
    options: &Options,
) -> Result<Report> {
    transform(src, dst, &Op::Rewrap { ec, rotate: false }, options)
}

/// [`rewrap`], and each selected layer also gets a fresh layer key and nonce: its data is
/// decrypted (HMAC and plaintext digest checked) and encrypted again in one streaming pass,
/// in parallel across layers, never with plaintext on disk. Every rotated layer is a new blob.
///
/// # Errors
/// As [`rewrap`]; a layer whose data fails authentication.
pub fn rotate(
    src: &ImageRef,
    dst: &ImageRef,
    ec: &EncryptConfig,
    options: &Options,
) -> Result<Report> {
    transform(src, dst, &Op::Rewrap { ec, rotate: true }, options)
}

enum Op<'a> {
    Encrypt(&'a EncryptConfig),
    Decrypt(&'a DecryptConfig),
    /// Replace the recipients; with `rotate`, under a fresh layer key too.
    Rewrap {
        ec: &'a EncryptConfig,
        rotate: bool,
    },
}

/// A layer to process.
struct LayerWork {
    desc: Descriptor,
    selected: bool,
    /// The manifest it belongs to (the first one, if several share it) and its index there.
    manifest: String,
    index: usize,
}

/// Layers with the same descriptor and selection are processed once.
/// The layers of the manifest `desc` as they are processed: with the OCI media types of
/// Docker schema 2 ones (see [`oci_media_type`]).
fn as_oci_layers(desc: &Descriptor, layers: &[Descriptor]) -> Vec<Descriptor> {
    let docker = matches!(kind(desc), Kind::Manifest { docker: true });
    layers
        .iter()
        .map(|l| {
            let mut l = l.clone();
            if docker {
                l.set_media_type(oci_media_type(l.media_type()));
            }
            l
        })
        .collect()
}

fn layer_key(desc: &Descriptor, selected: bool) -> String {
    format!(
        "{selected} {}",
        serde_json::to_string(desc).unwrap_or_default()
    )
}

/// What [`Job::collect`] has seen: documents by digest, layers by [`layer_key`].
#[derive(Default)]
struct Visited {
    documents: HashSet<String>,
    layers: HashSet<String>,
}

/// One run of [`encrypt`] or [`decrypt`], shared by the worker threads.
struct Job<'a> {
    src: &'a dyn Source,
    dst: &'a dyn Destination,
    graph: Graph,
    op: &'a Op<'a>,
    options: &'a Options,
    platforms: Vec<PlatformSpec>,
    changed: AtomicUsize,
}

/// Refuses a destination layout inside the source layout (not the layout itself).
fn check_paths(src: &ImageRef, dst: &ImageRef) -> Result<()> {
    let (Some(s), Some(d)) = (src.layout_path(), dst.layout_path()) else {
        return Ok(());
    };
    let Ok(s) = s.canonicalize() else {
        return Ok(()); // the source's own error comes when it is opened
    };
    // The destination may not exist yet: resolve its deepest existing ancestor.
    let mut existing = d.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(n) => rest.push(n.to_owned()),
            None => break,
        }
        if !existing.pop() {
            break;
        }
    }
    if existing.as_os_str().is_empty() {
        existing = std::path::PathBuf::from(".");
    }
    let Ok(mut d) = existing.canonicalize() else {
        return Ok(());
    };
    for n in rest.iter().rev() {
        d.push(n);
    }
    if d != s && d.starts_with(&s) {
        return Err(Error::DestinationInsideSource {
            destination: d,
            source_layout: s,
        });
    }
    Ok(())
}

fn transform(src: &ImageRef, dst: &ImageRef, op: &Op<'_>, options: &Options) -> Result<Report> {
    let platforms = options.platform_filter()?;
    check_paths(src, dst)?;
    let source = open_source(src, options)?;
    let root = source.root()?;
    let graph = Graph::load(source.as_ref(), root.get())?;
    let destination = open_destination(dst, options)?;
    let job = Job {
        src: source.as_ref(),
        dst: destination.as_ref(),
        graph,
        op,
        options,
        platforms,
        changed: AtomicUsize::new(0),
    };
    // Every layer of every selected image first, all in one pool of `jobs` workers (so a
    // multi-platform index keeps the CPUs as busy as one big image); then the manifests
    // and indexes that refer to them.
    let mut work = Vec::new();
    job.collect(root.get(), true, &mut work, &mut Visited::default())?;
    let done = job.run_layers(&work)?;
    let done: HashMap<String, Descriptor> = work
        .iter()
        .zip(done)
        .map(|(w, d)| (layer_key(&w.desc, w.selected), d))
        .collect();
    let mut memo = HashMap::new();
    let new_root = job.node(root.get(), true, &done, &mut memo)?;
    let changed = job.changed.load(Ordering::Relaxed);
    // The index entry keeps everything but the tag, which the destination sets.
    let mut entry = root;
    entry.update(|d| {
        let mut ann = d.annotations().clone().unwrap_or_default();
        ann.remove(crate::layout::REF_NAME);
        *d = new_root.clone();
        d.set_annotations((!ann.is_empty()).then_some(ann));
    })?;
    destination.commit(entry)?;
    Ok(Report {
        layers_changed: changed,
        layers_unchanged: work.len().saturating_sub(changed),
        root: new_root,
    })
}

/// The error a layer's source reports once another layer has failed.
#[derive(Debug)]
struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled after another layer failed")
    }
}

impl std::error::Error for Cancelled {}

impl Job<'_> {
    /// Collects the layers of the images under `desc` that the selection picks, each
    /// distinct one once. Each document is walked once, however often it is listed.
    fn collect(
        &self,
        desc: &Descriptor,
        top: bool,
        out: &mut Vec<LayerWork>,
        seen: &mut Visited,
    ) -> Result<()> {
        check_rewritable(desc)?;
        if !seen.documents.insert(desc.digest().to_string()) {
            return Ok(());
        }
        match &self.graph.get(desc)?.node {
            Node::Index(index) => {
                let mut matched = 0;
                for entry in index.get().manifests() {
                    if platform_selected(&self.platforms, entry.platform().as_ref()) {
                        matched += 1;
                        self.collect(entry, false, out, seen)?;
                    }
                }
                if top && matched == 0 {
                    return Err(self.no_match());
                }
            }
            Node::Manifest(m) => {
                let layers = as_oci_layers(desc, m.get().layers());
                let selected = self.options.selected_layers(layers.len())?;
                for (index, (l, sel)) in layers.iter().zip(selected).enumerate() {
                    if seen.layers.insert(layer_key(l, sel)) {
                        out.push(LayerWork {
                            desc: l.clone(),
                            selected: sel,
                            manifest: desc.digest().to_string(),
                            index,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn no_match(&self) -> Error {
        Error::NoPlatformMatch {
            platforms: self.options.platforms.join(", "),
        }
    }

    /// Writes a manifest or index (and what it references) with the new layers; returns
    /// its new descriptor. Each document is rewritten once (`memo`, by digest).
    fn node(
        &self,
        desc: &Descriptor,
        top: bool,
        done: &HashMap<String, Descriptor>,
        memo: &mut HashMap<String, Descriptor>,
    ) -> Result<Descriptor> {
        let key = desc.digest().to_string();
        if let Some(d) = memo.get(&key) {
            return Ok(d.clone());
        }
        check_rewritable(desc)?;
        let doc = self.graph.get(desc)?;
        // A Docker schema 2 document whose content changes is written as OCI, as skopeo
        // does (Docker media types have no `+encrypted` forms); one that does not change
        // stays as it was.
        let docker = matches!(
            kind(desc),
            Kind::Index { docker: true } | Kind::Manifest { docker: true }
        );
        let mut media_type = desc.media_type().clone();
        let bytes = match &doc.node {
            Node::Index(index) => {
                let mut index = index.clone();
                let mut matched = 0;
                let mut entries = index.get().manifests().clone();
                for entry in &mut entries {
                    if platform_selected(&self.platforms, entry.platform().as_ref()) {
                        matched += 1;
                        *entry = self.node(entry, false, done, memo)?;
                    } else {
                        self.copy_tree(entry)?;
                    }
                }
                if top && matched == 0 {
                    return Err(self.no_match());
                }
                let convert = docker && entries != *index.get().manifests();
                if convert {
                    media_type = MediaType::ImageIndex;
                }
                index.update(|i| {
                    i.set_manifests(entries);
                    if convert {
                        i.set_media_type(Some(MediaType::ImageIndex));
                    }
                })?;
                index.to_vec()?
            }
            Node::Manifest(m) => {
                copy_blob(self.src, self.dst, m.get().config())?;
                let selected = self.options.selected_layers(m.get().layers().len())?;
                let originals = as_oci_layers(desc, m.get().layers());
                let layers = originals
                    .iter()
                    .zip(selected)
                    .map(|(l, sel)| {
                        done.get(&layer_key(l, sel)).cloned().ok_or_else(|| {
                            Error::Internal(format!("layer {} was not processed", l.digest()))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut m = m.clone();
                if docker && layers != originals {
                    media_type = MediaType::ImageManifest;
                    m.update(|m| {
                        m.set_media_type(Some(MediaType::ImageManifest));
                        let mut config = m.config().clone();
                        config.set_media_type(oci_media_type(config.media_type()));
                        m.set_config(config);
                        m.set_layers(layers);
                    })?;
                } else if !docker {
                    m.update(|m| {
                        m.set_layers(layers);
                    })?;
                }
                m.to_vec()?
            }
        };
        // Unchanged documents are written as they were read (same digest).
        let unchanged = match &doc.node {
            Node::Index(i) => i.to_vec()? == bytes,
            Node::Manifest(m) => m.to_vec()? == bytes,
        };
        let mut out = desc.clone();
        if unchanged {
            self.dst
                .put_document(&doc.bytes, desc.digest(), desc.media_type())?;
        } else {
            out.set_digest(put_new_document(self.dst, &bytes, &media_type)?);
            out.set_size(bytes.len() as u64);
            out.set_media_type(media_type);
        }
        memo.insert(key, out.clone());
        Ok(out)
    }

    /// Copies a manifest or index and everything it references, unchanged.
    fn copy_tree(&self, desc: &Descriptor) -> Result<()> {
        if self.dst.has_blob(desc.digest())? {
            return Ok(());
        }
        if kind(desc) == Kind::Other {
            // Not a document we walk (an artifact, say): the blob alone.
            return copy_blob(self.src, self.dst, desc);
        }
        let doc = self.graph.get(desc)?;
        match &doc.node {
            Node::Index(index) => {
                for e in index.get().manifests() {
                    self.copy_tree(e)?;
                }
            }
            Node::Manifest(m) => {
                copy_blob(self.src, self.dst, m.get().config())?;
                for l in m.get().layers() {
                    copy_blob(self.src, self.dst, l)?;
                }
            }
        }
        self.dst
            .put_document(&doc.bytes, desc.digest(), desc.media_type())
    }

    /// Processes the layers on up to `jobs` threads, each blob committed as it is
    /// finished, and waits until all are in place; returns the new descriptors in the
    /// order of `work`. After the first failure the others stop, and that failure is
    /// returned.
    fn run_layers(&self, work: &[LayerWork]) -> Result<Vec<Descriptor>> {
        let n = work.len();
        let jobs = self.options.jobs.get();
        let next = AtomicUsize::new(0);
        let cancel = AtomicBool::new(false);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let done: Mutex<Vec<Option<Descriptor>>> = Mutex::new(vec![None; n]);
        let workers = jobs.min(n).max(1);
        let work_loop = || {
            while !cancel.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(w) = work.get(i) else {
                    break;
                };
                // `jobs` is how many CPUs to keep busy: while at least that many layers
                // are left, each runs on one thread; the last few also use helper threads.
                let helpers = n - i < jobs;
                let result = if w.selected {
                    self.layer(&w.desc, (i, n), helpers, &cancel)
                        .map_err(|e| Error::Layer {
                            index: w.index,
                            digest: w.desc.digest().to_string(),
                            manifest: w.manifest.clone(),
                            source: Box::new(e),
                        })
                } else {
                    copy_blob(self.src, self.dst, &w.desc).map(|()| w.desc.clone())
                };
                match result {
                    Ok(d) => {
                        let mut done = done.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Some(slot) = done.get_mut(i) {
                            *slot = Some(d);
                        }
                    }
                    Err(e) => {
                        // The first error is kept before the others are told to stop, so
                        // that their "cancelled" errors never replace it.
                        first_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(e);
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            }
        };
        if workers == 1 {
            work_loop();
        } else {
            thread::scope(|s| {
                for _ in 0..workers {
                    s.spawn(work_loop);
                }
            });
        }
        if let Some(e) = first_error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            return Err(e);
        }
        // The manifests are written only once their layers are in place.
        self.dst.flush_blobs()?;
        done.into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .into_iter()
            .zip(work)
            .map(|(d, w)| {
                d.ok_or_else(|| {
                    Error::Internal(format!("layer {} was not processed", w.desc.digest()))
                })
            })
            .collect()
    }

    /// Encrypts or decrypts one layer. With `helpers`, the blob is read, written and MACed on
    /// helper threads beside the one that runs the cipher; without, all on this thread.
    fn layer(
        &self,
        desc: &Descriptor,
        (i, n): (usize, usize),
        helpers: bool,
        cancel: &AtomicBool,
    ) -> Result<Descriptor> {
        let encrypted = ocicrypt::descriptor::is_encrypted(desc)?;
        match self.op {
            Op::Decrypt(_) | Op::Rewrap { .. } if !encrypted => {
                copy_blob(self.src, self.dst, desc)?;
                return Ok(desc.clone());
            }
            Op::Rewrap { ec, rotate: false } => {
                // Only annotations change: no progress to report, no data to read.
                let ann = self.options.ocicrypt.rewrap(ec, desc)?;
                link_or_copy(self.src, self.dst, desc)?;
                self.changed.fetch_add(1, Ordering::Relaxed);
                return Ok(ocicrypt::descriptor::rewrapped(desc, &ann));
            }
            Op::Encrypt(ec) if encrypted && ec.decrypt.is_empty() => {
                return Err(Error::AlreadyEncrypted);
            }
            _ => {}
        }
        self.options.report(Progress::LayerStarted {
            id: i,
            total: n,
            size: desc.size(),
        });
        let result = self.convert(desc, i, helpers, cancel);
        self.options.report(Progress::LayerFinished { id: i });
        let out = result?;
        self.changed.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    fn convert(
        &self,
        desc: &Descriptor,
        id: usize,
        helpers: bool,
        cancel: &AtomicBool,
    ) -> Result<Descriptor> {
        let ctx = &self.options.ocicrypt;
        // The blob is read (and with `hash`, hashed) ahead of the cipher.
        let source = |hash: bool| -> Result<Input> {
            let counting = Counting {
                inner: self.src.open_blob(desc)?,
                id,
                options: self.options.clone(),
            };
            Input::open(counting, hash, helpers).map_err(Error::io("cannot read the layer"))
        };
        match self.op {
            Op::Rewrap { ec, .. } => {
                // The old blob is not hashed: its HMAC (checked at the end of the stream)
                // authenticates every byte of it already, and the new blob gets a digest of
                // its own. That saves one of five SHA-256 passes.
                let mut input = Cancellable {
                    inner: source(false)?,
                    cancel,
                };
                let mut out = Output::open(self.dst.new_blob()?, true, helpers)
                    .map_err(Error::io("cannot write the rotated blob"))?;
                let new = {
                    // The decrypting reader checks the plaintext against the recorded
                    // digest; the encrypting side stores it without hashing again.
                    let mut enc = ctx
                        .rotate_layer(ec, &mut input, desc)?
                        .parallel_both(helpers);
                    out.copy_from(&mut enc)
                        .map_err(Error::stream("rotation failed"))?;
                    let (blob, written) = out
                        .finish()
                        .map_err(Error::io("cannot write the rotated blob"))?;
                    let digest = sha256_digest(&written.digest.unwrap_or_default())?;
                    (blob, enc.finalize_descriptor(digest, written.len)?)
                };
                let read = input
                    .inner
                    .finish()
                    .map_err(Error::io("cannot read the layer"))?;
                check_size(desc, read.len)?;
                let (blob, new) = new;
                blob.commit(new.digest())?;
                Ok(new)
            }
            Op::Decrypt(dc) => {
                let input = source(true)?;
                let mut input = Cancellable {
                    inner: input,
                    cancel,
                };
                let mut out = Output::open(self.dst.new_blob()?, false, helpers)
                    .map_err(Error::io("cannot write the decrypted blob"))?;
                let plain = {
                    let mut dec = ctx.decrypt_layer(dc, &mut input, desc)?.parallel(helpers);
                    out.copy_from(&mut dec)
                        .map_err(Error::stream("decryption failed"))?;
                    dec.descriptor()
                };
                let ct = input
                    .inner
                    .finish()
                    .map_err(Error::io("cannot read the layer"))?;
                check_digest(desc, ct.digest)?;
                let (blob, _) = out
                    .finish()
                    .map_err(Error::io("cannot write the decrypted blob"))?;
                let plain = plain.ok_or_else(|| {
                    Error::Internal("decryption ended without a verified digest".into())
                })?;
                // The reader verified the plaintext digest; the blob is named by it.
                blob.commit(plain.digest())?;
                Ok(plain)
            }
            Op::Encrypt(ec) => {
                let input = Cancellable {
                    inner: source(false)?,
                    cancel,
                };
                match ctx.encrypt_layer(ec, input, desc)? {
                    Encrypted::Stream(enc) => {
                        let mut enc = enc.parallel(helpers);
                        let mut out = Output::open(self.dst.new_blob()?, true, helpers)
                            .map_err(Error::io("cannot write the encrypted blob"))?;
                        out.copy_from(&mut enc)
                            .map_err(Error::stream("encryption failed"))?;
                        let (blob, written) = out
                            .finish()
                            .map_err(Error::io("cannot write the encrypted blob"))?;
                        let digest = sha256_digest(&written.digest.unwrap_or_default())?;
                        let new = enc.finalize_descriptor(digest, written.len)?;
                        blob.commit(new.digest())?;
                        Ok(new)
                    }
                    Encrypted::RecipientsAdded(ann) => {
                        copy_blob(self.src, self.dst, desc)?;
                        Ok(ocicrypt::descriptor::rewrapped(desc, &ann))
                    }
                }
            }
        }
    }
}

/// A reader that fails once `cancel` is set.
struct Cancellable<'a, R> {
    inner: R,
    cancel: &'a AtomicBool,
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other(Cancelled));
        }
        self.inner.read(buf)
    }
}
