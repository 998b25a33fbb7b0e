//! `ocicrypt image ...`: whole OCI image layouts, as skopeo rewrites them.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar};
use ocicrypt::spec::{annotations, media_types};
use ocicrypt::{DecryptConfig, EncryptConfig, Encrypted, Ocicrypt};
use serde_json::{Value, json};

use crate::descriptor::DescJson;
use crate::layout::{INDEX_MT, ImageRef, Layout, LayoutWriter, MANIFEST_MT};
use crate::pipe::{Input, Output};
use crate::{keys, layer, progress};

/// Commands on whole OCI image layouts.
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Encrypt an image's layers into a new (or existing) layout.
    Encrypt(EncryptArgs),
    /// Decrypt an image's layers into a new (or existing) layout.
    Decrypt(DecryptArgs),
    /// Show an image's layers and how they are encrypted.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct EncryptArgs {
    #[command(flatten)]
    recipients: keys::RecipientArgs,
    #[command(flatten)]
    select: Selection,
    #[command(flatten)]
    jobs: Jobs,
    /// Source image, oci:PATH[:TAG] (tag defaults to latest).
    src: String,
    /// Destination image, oci:PATH[:TAG].
    dst: String,
}

#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    #[command(flatten)]
    keys: keys::KeyArgs,
    #[command(flatten)]
    select: Selection,
    #[command(flatten)]
    jobs: Jobs,
    /// Source image, oci:PATH[:TAG].
    src: String,
    /// Destination image, oci:PATH[:TAG].
    dst: String,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Image, oci:PATH[:TAG].
    src: String,
}

#[derive(Debug, Args, Clone)]
struct Selection {
    /// Only these layers (0 is the bottom; negative counts from the top, -1 is the top).
    /// Repeatable. Default: all layers.
    #[arg(long = "layer", value_name = "N", allow_negative_numbers = true)]
    layers: Vec<i64>,
    /// Only images of this platform in a multi-platform index (OS/ARCH[/VARIANT]);
    /// repeatable. Others are copied unchanged. Default: all platforms.
    #[arg(long = "platform", value_name = "OS/ARCH")]
    platforms: Vec<String>,
}

#[derive(Debug, Args, Clone, Copy)]
struct Jobs {
    /// How many CPUs to keep busy: that many layers are processed at once, each on one
    /// thread, and the last layers (fewer than N left) also read, write and hash on helper
    /// threads. Default: the number of CPUs.
    #[arg(long = "jobs", short = 'j', value_name = "N", default_value_t = default_jobs())]
    jobs: NonZeroUsize,
}

fn default_jobs() -> NonZeroUsize {
    thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

pub(crate) fn run(cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Encrypt(a) => {
            let ec = a.recipients.config()?;
            transform(&a.src, &a.dst, &a.select, a.jobs, &Op::Encrypt(ec))
        }
        ImageCommand::Decrypt(a) => {
            let dc = a.keys.config()?;
            transform(&a.src, &a.dst, &a.select, a.jobs, &Op::Decrypt(dc))
        }
        ImageCommand::Inspect(a) => inspect(&a),
    }
}

enum Op {
    Encrypt(EncryptConfig),
    Decrypt(DecryptConfig),
}

/// One run of `image encrypt` or `image decrypt`. Shared by the worker threads that
/// process the layers of a manifest (everything in it is `Sync`).
struct Job<'a> {
    src: &'a Layout,
    dst: LayoutWriter,
    op: &'a Op,
    select: &'a Selection,
    ctx: Ocicrypt,
    /// At most this many layers at once.
    jobs: NonZeroUsize,
    /// One progress bar per layer in progress.
    bars: MultiProgress,
    /// How many layers were encrypted or decrypted.
    changed: AtomicUsize,
    /// The new descriptor of every layer of the image, by [`LayerWork::key`], filled by
    /// [`Job::run_layers`] before the manifests are rewritten.
    done: HashMap<String, DescJson>,
}

/// A layer to process, with where it was found (for messages).
struct LayerWork {
    /// [`LayerWork::key`] of `desc` and `selected`.
    key: String,
    desc: DescJson,
    selected: bool,
    /// The manifest it belongs to (the first one, if several share it) and its index there.
    manifest: String,
    index: usize,
}

impl LayerWork {
    /// Layers with the same descriptor and selection are processed once.
    fn key(desc: &DescJson, selected: bool) -> String {
        format!("{selected} {}", Value::Object(desc.0.clone()))
    }
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

/// A reader that fails once `cancel` is set, so that the layers still in progress stop
/// soon after one fails.
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

fn transform(src: &str, dst: &str, select: &Selection, jobs: Jobs, op: &Op) -> Result<()> {
    let src_ref = ImageRef::parse(src)?;
    let dst_ref = ImageRef::parse(dst)?;
    for p in &select.platforms {
        parse_platform(p)?;
    }
    let src_layout = Layout::open(&src_ref.path)?;
    let top = src_layout.resolve(&src_ref.tag)?;
    let mut job = Job {
        src: &src_layout,
        dst: LayoutWriter::create(&dst_ref.path)?,
        op,
        select,
        ctx: crate::context()?,
        jobs: jobs.jobs,
        bars: progress::multi(),
        changed: AtomicUsize::new(0),
        done: HashMap::new(),
    };
    // Every layer of every selected image first, all in one pool of --jobs workers (so a
    // multi-platform index keeps the CPUs as busy as one big image); then the manifests
    // and indexes that refer to them.
    let mut work = Vec::new();
    job.collect(&top, true, &mut work)?;
    job.done = job.run_layers(&work)?;
    let mut entry = job.node(&top, true)?;
    // The index entry keeps everything but the tag, which the writer sets.
    let mut ann = top.annotations();
    ann.remove(crate::layout::REF_NAME);
    let (mt, d, s) = (
        entry.media_type().to_owned(),
        entry.digest().to_owned(),
        entry.size(),
    );
    entry.set(&mt, &d, s, ann);
    let changed = job.changed.load(Ordering::Relaxed);
    job.dst.commit(entry, &dst_ref.tag)?;
    let verb = match op {
        Op::Encrypt(_) => "encrypted",
        Op::Decrypt(_) => "decrypted",
    };
    eprintln!("{verb} {changed} layer(s): {src_ref} -> {dst_ref}");
    Ok(())
}

/// The `manifests` list of an image index (read from `desc`).
fn index_entries<'v>(index: &'v mut Value, desc: &DescJson) -> Result<&'v mut Vec<Value>> {
    index
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .with_context(|| format!("image index {} has no manifests", desc.digest()))
}

/// The error for a manifest that is neither an OCI index nor an OCI image manifest.
fn unsupported(desc: &DescJson) -> anyhow::Error {
    match desc.media_type() {
        "application/vnd.docker.distribution.manifest.v2+json"
        | "application/vnd.docker.distribution.manifest.list.v2+json" => anyhow::anyhow!(
            "{}: Docker schema 2 manifests are not supported; convert the image to OCI first \
             (skopeo copy --format oci)",
            desc.digest()
        ),
        other => anyhow::anyhow!(
            "{}: unsupported manifest media type {other:?}",
            desc.digest()
        ),
    }
}

fn parse_platform(p: &str) -> Result<(String, String, Option<String>)> {
    let parts: Vec<&str> = p.split('/').collect();
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => {
            Ok(((*os).to_owned(), (*arch).to_owned(), None))
        }
        [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => Ok((
            (*os).to_owned(),
            (*arch).to_owned(),
            Some((*variant).to_owned()),
        )),
        _ => bail!("invalid platform {p:?}: expected OS/ARCH or OS/ARCH/VARIANT"),
    }
}

fn platform_matches(select: &Selection, platform: Option<&Value>) -> bool {
    if select.platforms.is_empty() {
        return true;
    }
    let field = |k: &str| {
        platform
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    select.platforms.iter().any(|p| match parse_platform(p) {
        Ok((os, arch, variant)) => {
            os == field("os")
                && arch == field("architecture")
                && variant.is_none_or(|v| v == field("variant"))
        }
        Err(_) => false,
    })
}

/// The layer indices selected among `n` layers.
fn selected_layers(select: &Selection, n: usize) -> Result<Vec<bool>> {
    if select.layers.is_empty() {
        return Ok(vec![true; n]);
    }
    let mut out = vec![false; n];
    let count = i64::try_from(n).unwrap_or(i64::MAX);
    for &l in &select.layers {
        let i = if l < 0 { count + l } else { l };
        if i < 0 || i >= count {
            bail!("--layer {l}: the image has {n} layer(s)");
        }
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            *slot = true;
        }
    }
    Ok(out)
}

impl Job<'_> {
    /// Rewrites a manifest or index (and what it references); returns its new descriptor.
    fn node(&self, desc: &DescJson, top: bool) -> Result<DescJson> {
        match desc.media_type() {
            INDEX_MT => self.index(desc, top),
            MANIFEST_MT => self.manifest(desc),
            _ => Err(unsupported(desc)),
        }
    }

    /// Collects the layers of the images under `desc` that the selection picks (walking
    /// the tree as [`Job::node`] does, with the same checks), each distinct one once.
    fn collect(&self, desc: &DescJson, top: bool, out: &mut Vec<LayerWork>) -> Result<()> {
        match desc.media_type() {
            INDEX_MT => {
                let mut index = self.read_index(desc)?;
                let mut matched = 0;
                for entry in index_entries(&mut index, desc)?.iter() {
                    if platform_matches(self.select, entry.get("platform")) {
                        matched += 1;
                        let child = DescJson::from_value(entry.clone(), "an image index entry")?;
                        self.collect(&child, false, out)?;
                    }
                }
                if top && matched == 0 {
                    bail!(
                        "no image in the index matches --platform {}",
                        self.select.platforms.join(", ")
                    );
                }
                Ok(())
            }
            MANIFEST_MT => {
                let manifest = self.read_manifest(desc)?;
                for (index, (desc_l, selected)) in self
                    .manifest_layers(&manifest, desc)?
                    .into_iter()
                    .enumerate()
                {
                    let key = LayerWork::key(&desc_l, selected);
                    if !out.iter().any(|w| w.key == key) {
                        out.push(LayerWork {
                            key,
                            desc: desc_l,
                            selected,
                            manifest: desc.digest().to_owned(),
                            index,
                        });
                    }
                }
                Ok(())
            }
            _ => Err(unsupported(desc)),
        }
    }

    /// An image index, parsed.
    fn read_index(&self, desc: &DescJson) -> Result<Value> {
        serde_json::from_slice(&self.src.read_blob(desc)?)
            .with_context(|| format!("image index {} is not valid JSON", desc.digest()))
    }

    /// An image manifest, parsed.
    fn read_manifest(&self, desc: &DescJson) -> Result<Value> {
        serde_json::from_slice(&self.src.read_blob(desc)?)
            .with_context(|| format!("image manifest {} is not valid JSON", desc.digest()))
    }

    /// The layer descriptors of `manifest` (read from `desc`), each with whether the
    /// selection picks it.
    fn manifest_layers(&self, manifest: &Value, desc: &DescJson) -> Result<Vec<(DescJson, bool)>> {
        let layers = manifest
            .get("layers")
            .and_then(Value::as_array)
            .with_context(|| format!("image manifest {} has no layers", desc.digest()))?;
        let selected = selected_layers(self.select, layers.len())?;
        layers
            .iter()
            .zip(selected)
            .enumerate()
            .map(|(i, (l, sel))| Ok((DescJson::from_value(l.clone(), &format!("layer {i}"))?, sel)))
            .collect()
    }

    fn index(&self, desc: &DescJson, top: bool) -> Result<DescJson> {
        let mut index = self.read_index(desc)?;
        let entries = index_entries(&mut index, desc)?;
        let mut matched = 0;
        for entry in entries.iter_mut() {
            let child = DescJson::from_value(entry.clone(), "an image index entry")?;
            let new = if platform_matches(self.select, entry.get("platform")) {
                matched += 1;
                self.node(&child, false)?
            } else {
                self.copy_tree(&child)?;
                child
            };
            *entry = Value::Object(new.0);
        }
        if top && matched == 0 {
            bail!(
                "no image in the index matches --platform {}",
                self.select.platforms.join(", ")
            );
        }
        let bytes = serde_json::to_vec(&index)?;
        let (digest, size) = self.dst.put_blob(&bytes)?;
        let mut out = desc.clone();
        out.set(INDEX_MT, &digest, size, desc.annotations());
        Ok(out)
    }

    /// Copies a manifest or index and everything it references, unchanged.
    fn copy_tree(&self, desc: &DescJson) -> Result<()> {
        let v: Value = serde_json::from_slice(&self.src.read_blob(desc)?)
            .with_context(|| format!("{} is not valid JSON", desc.digest()))?;
        let children = v
            .get("manifests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(v.get("config"))
            .chain(
                v.get("layers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten(),
            );
        for c in children {
            let c = DescJson::from_value(c.clone(), "a referenced descriptor")?;
            match c.media_type() {
                INDEX_MT | MANIFEST_MT => self.copy_tree(&c)?,
                _ => self.dst.copy_blob(self.src, &c)?,
            }
        }
        self.dst.copy_blob(self.src, desc)
    }

    fn manifest(&self, desc: &DescJson) -> Result<DescJson> {
        let mut manifest = self.read_manifest(desc)?;
        let config = manifest
            .get("config")
            .cloned()
            .with_context(|| format!("image manifest {} has no config", desc.digest()))?;
        self.dst.copy_blob(
            self.src,
            &DescJson::from_value(config, "the config descriptor")?,
        )?;
        let new = self
            .manifest_layers(&manifest, desc)?
            .into_iter()
            .map(|(l, sel)| {
                self.done
                    .get(&LayerWork::key(&l, sel))
                    .cloned()
                    .with_context(|| {
                        format!("internal error: layer {} was not processed", l.digest())
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let layers = manifest
            .get_mut("layers")
            .and_then(Value::as_array_mut)
            .with_context(|| format!("image manifest {} has no layers", desc.digest()))?;
        for (layer, new) in layers.iter_mut().zip(new) {
            *layer = Value::Object(new.0);
        }
        let bytes = serde_json::to_vec(&manifest)?;
        let (digest, size) = self.dst.put_blob(&bytes)?;
        let mut out = desc.clone();
        out.set(MANIFEST_MT, &digest, size, desc.annotations());
        Ok(out)
    }

    /// Processes the layers (of every image) on up to `self.jobs` threads, each blob
    /// committed as it is finished, and waits until all are in place; returns the new
    /// descriptors by [`LayerWork::key`]. After the first failure the others stop, and that
    /// failure is returned.
    fn run_layers(&self, work: &[LayerWork]) -> Result<HashMap<String, DescJson>> {
        let n = work.len();
        let next = AtomicUsize::new(0);
        let cancel = AtomicBool::new(false);
        let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        let done: Mutex<Vec<Option<DescJson>>> = Mutex::new(vec![None; n]);
        let workers = self.jobs.get().min(n).max(1);
        let work_loop = || {
            while !cancel.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(w) = work.get(i) else {
                    break;
                };
                // `--jobs` is how many CPUs to keep busy: while at least that many layers
                // are left, each runs on one thread; the last few also use helper threads.
                let helpers = n - i < self.jobs.get();
                let result = if w.selected {
                    self.layer(&w.desc, (i, n), helpers, &cancel)
                        .with_context(|| {
                            format!(
                                "layer {} ({}) of manifest {}",
                                w.index,
                                w.desc.digest(),
                                w.manifest
                            )
                        })
                } else {
                    self.dst
                        .copy_blob(self.src, &w.desc)
                        .map(|()| w.desc.clone())
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
        self.dst.wait_for_blobs()?;
        done.into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .into_iter()
            .zip(work)
            .map(|(d, w)| {
                let d =
                    d.with_context(|| format!("layer {} was not processed", w.desc.digest()))?;
                Ok((w.key.clone(), d))
            })
            .collect()
    }

    /// Encrypts or decrypts one layer. With `helpers`, the blob is read, written and MACed on
    /// helper threads beside the one that runs the cipher; without, all on this thread.
    fn layer(
        &self,
        desc: &DescJson,
        (i, n): (usize, usize),
        helpers: bool,
        cancel: &AtomicBool,
    ) -> Result<DescJson> {
        let encrypted = media_types::is_encrypted(desc.media_type());
        // The blob is read (and with `hash`, hashed) ahead of the cipher; the progress bar
        // counts what is read.
        let source = |bar: &ProgressBar, hash: bool| -> Result<_> {
            let file = bar.wrap_read(self.src.open_blob(desc)?);
            Ok(Cancellable {
                inner: Input::open(file, hash, helpers)?,
                cancel,
            })
        };
        match self.op {
            Op::Decrypt(_) if !encrypted => {
                self.dst.copy_blob(self.src, desc)?;
                Ok(desc.clone())
            }
            Op::Decrypt(dc) => {
                let bar = self
                    .bars
                    .add(progress::bar(desc.size(), &format!("layer {}/{n}", i + 1)));
                let mut input = source(&bar, true)?;
                let mut out = Output::open(self.dst.stage_unhashed()?, false, helpers)?;
                let (size, verified) = {
                    let mut dec = self
                        .ctx
                        .decrypt_layer(dc, &mut input, &desc.to_oci()?)?
                        .parallel(helpers);
                    let size = out.copy_from(&mut dec).context("decryption failed")?;
                    (size, dec.verified_digest().map(str::to_owned))
                };
                bar.finish_and_clear();
                let ct_digest = input.inner.finish()?.digest.unwrap_or_default();
                if ct_digest != desc.digest() {
                    bail!("the blob is corrupt: its content hashes to {ct_digest}");
                }
                let (staged, _) = out.finish().context("cannot write the decrypted blob")?;
                // The reader verified the plaintext digest; the blob is named by it.
                let digest = verified
                    .context("internal error: decryption ended without a verified digest")?;
                self.dst.commit_blob_in_background(staged, &digest)?;
                let mut out = desc.clone();
                let ann = annotations::filter_out(&desc.annotations());
                out.set(
                    media_types::to_decrypted(desc.media_type()),
                    &digest,
                    size,
                    ann,
                );
                self.changed.fetch_add(1, Ordering::Relaxed);
                Ok(out)
            }
            Op::Encrypt(ec) => {
                if encrypted && ec.decrypt.is_empty() {
                    bail!(
                        "the layer is already encrypted; to add recipients to it, give -k \
                         with a key that decrypts it"
                    );
                }
                let bar = self
                    .bars
                    .add(progress::bar(desc.size(), &format!("layer {}/{n}", i + 1)));
                let file = source(&bar, false)?;
                let mut out = desc.clone();
                match self.ctx.encrypt_layer(ec, file, &desc.to_oci()?)? {
                    Encrypted::Stream(enc) => {
                        let mut enc = enc.parallel(helpers);
                        let mut staged = Output::open(self.dst.stage_unhashed()?, true, helpers)?;
                        staged.copy_from(&mut enc).context("encryption failed")?;
                        let enc_ann = enc.finalize()?;
                        let (staged, written) =
                            staged.finish().context("cannot write the encrypted blob")?;
                        let digest = written
                            .digest
                            .context("internal error: the blob was not hashed")?;
                        self.dst.commit_blob_in_background(staged, &digest)?;
                        let mut ann = annotations::filter_out(&desc.annotations());
                        ann.extend(enc_ann);
                        out.set(
                            &media_types::to_encrypted(desc.media_type()),
                            &digest,
                            written.len,
                            ann,
                        );
                    }
                    Encrypted::RecipientsAdded(enc_ann) => {
                        self.dst.copy_blob(self.src, desc)?;
                        let mut ann = annotations::filter_out(&desc.annotations());
                        ann.extend(enc_ann);
                        out.set(desc.media_type(), desc.digest(), desc.size(), ann);
                    }
                }
                bar.finish_and_clear();
                self.changed.fetch_add(1, Ordering::Relaxed);
                Ok(out)
            }
        }
    }
}

fn inspect(a: &InspectArgs) -> Result<()> {
    let r = ImageRef::parse(&a.src)?;
    let layout = Layout::open(&r.path)?;
    let top = layout.resolve(&r.tag)?;
    let ctx = crate::context()?;
    let mut images = Vec::new();
    collect_images(&layout, &top, None, &mut images)?;
    let mut report = Vec::new();
    for (platform, mdesc) in images {
        let manifest: Value = serde_json::from_slice(&layout.read_blob(&mdesc)?)
            .with_context(|| format!("image manifest {} is not valid JSON", mdesc.digest()))?;
        let mut layers = Vec::new();
        for (i, l) in manifest
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let ld = DescJson::from_value(l.clone(), &format!("layer {i}"))?;
            let info = ctx
                .inspect(&ld.to_oci()?)
                .with_context(|| format!("layer {i} ({})", ld.digest()))?;
            layers.push((ld, info));
        }
        report.push((platform, mdesc, layers));
    }
    let mut out = io::stdout().lock();
    if a.json {
        let v: Vec<Value> = report
            .iter()
            .map(|(platform, m, layers)| {
                json!({
                    "manifest": m.digest(),
                    "platform": platform,
                    "layers": layers.iter().enumerate().map(|(i, (d, info))| json!({
                        "index": i,
                        "mediaType": d.media_type(),
                        "digest": d.digest(),
                        "size": d.size(),
                        "encryption": info,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &json!({ "image": r.to_string(), "manifests": v }))?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "image {r}")?;
    for (platform, m, layers) in &report {
        let p = platform
            .as_ref()
            .map(|p| format!(" ({})", platform_string(p)))
            .unwrap_or_default();
        writeln!(out, "manifest {}{p}", m.digest())?;
        for (i, (d, info)) in layers.iter().enumerate() {
            writeln!(
                out,
                "  layer {i}: {} {} ({} bytes)",
                d.media_type(),
                d.digest(),
                d.size()
            )?;
            layer::print_info(&mut out, info, "    ")?;
        }
    }
    Ok(())
}

fn platform_string(p: &Value) -> String {
    let f = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let mut s = format!("{}/{}", f("os"), f("architecture"));
    if let Some(v) = p.get("variant").and_then(Value::as_str) {
        s.push('/');
        s.push_str(v);
    }
    s
}

/// Every image manifest below `desc`, with its platform from the index entry.
fn collect_images(
    layout: &Layout,
    desc: &DescJson,
    platform: Option<Value>,
    out: &mut Vec<(Option<Value>, DescJson)>,
) -> Result<()> {
    match desc.media_type() {
        MANIFEST_MT => out.push((platform, desc.clone())),
        INDEX_MT => {
            let index: Value = serde_json::from_slice(&layout.read_blob(desc)?)
                .with_context(|| format!("image index {} is not valid JSON", desc.digest()))?;
            for e in index
                .get("manifests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let child = DescJson::from_value(e.clone(), "an image index entry")?;
                collect_images(layout, &child, e.get("platform").cloned(), out)?;
            }
        }
        other => bail!(
            "{}: unsupported manifest media type {other:?}",
            desc.digest()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(layers: &[i64]) -> Selection {
        Selection {
            layers: layers.to_vec(),
            platforms: Vec::new(),
        }
    }

    #[test]
    fn layer_selection() {
        assert_eq!(selected_layers(&sel(&[]), 3).unwrap(), vec![true; 3]);
        assert_eq!(
            selected_layers(&sel(&[-1]), 3).unwrap(),
            vec![false, false, true]
        );
        assert_eq!(
            selected_layers(&sel(&[0, -1]), 3).unwrap(),
            vec![true, false, true]
        );
        assert!(selected_layers(&sel(&[3]), 3).is_err());
        assert!(selected_layers(&sel(&[-4]), 3).is_err());
    }

    #[test]
    fn platforms() {
        let s = Selection {
            layers: Vec::new(),
            platforms: vec!["linux/arm64/v8".into()],
        };
        let p = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
        assert!(platform_matches(&s, Some(&p)));
        let p = json!({"os": "linux", "architecture": "amd64"});
        assert!(!platform_matches(&s, Some(&p)));
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("linux/").is_err());
    }
}
