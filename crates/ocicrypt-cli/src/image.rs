//! `ocicrypt image ...`: whole images, in OCI layouts or registries, as skopeo rewrites them.

use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::thread;

use anyhow::Result;
use clap::{Args, Subcommand};
use ocicrypt_image::{ImageRef, Options};

use crate::{keys, layer, progress, registry};

/// Commands on whole images (OCI layouts and registries).
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Encrypt an image's layers into another image (a new or existing layout, or a
    /// registry).
    Encrypt(EncryptArgs),
    /// Decrypt an image's layers into another image (a new or existing layout, or a
    /// registry).
    Decrypt(DecryptArgs),
    /// Replace the recipients of an image's encrypted layers (old recipients lose access),
    /// without touching their data; with --rotate, under fresh layer keys too.
    Rewrap(RewrapArgs),
    /// Show an image's layers and how they are encrypted.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RewrapArgs {
    #[command(flatten)]
    keys: keys::RewrapKeyArgs,
    /// Also give each selected layer a fresh layer key and nonce: its data is decrypted and
    /// encrypted again in one streaming pass (a new blob), never with plaintext on disk.
    #[arg(long)]
    rotate: bool,
    #[command(flatten)]
    select: Selection,
    #[command(flatten)]
    registry: registry::CopyRegistryArgs,
    /// Source image, oci:PATH[:TAG] or docker://HOST[:PORT]/REPO[:TAG|@DIGEST].
    src: String,
    /// Destination image, oci:PATH[:TAG] (the same layout with another tag copies nothing)
    /// or docker://HOST[:PORT]/REPO[:TAG].
    dst: String,
}

#[derive(Debug, Args)]
pub(crate) struct EncryptArgs {
    #[command(flatten)]
    recipients: keys::RecipientArgs,
    #[command(flatten)]
    select: Selection,
    #[command(flatten)]
    registry: registry::CopyRegistryArgs,
    /// Source image, oci:PATH[:TAG] (tag defaults to latest) or
    /// docker://HOST[:PORT]/REPO[:TAG|@DIGEST].
    src: String,
    /// Destination image, oci:PATH[:TAG] or docker://HOST[:PORT]/REPO[:TAG].
    dst: String,
}

#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    #[command(flatten)]
    keys: keys::KeyArgs,
    #[command(flatten)]
    select: Selection,
    #[command(flatten)]
    registry: registry::CopyRegistryArgs,
    /// Source image, oci:PATH[:TAG] or docker://HOST[:PORT]/REPO[:TAG|@DIGEST].
    src: String,
    /// Destination image, oci:PATH[:TAG] or docker://HOST[:PORT]/REPO[:TAG].
    dst: String,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Private key FILE[:PASSWORD] or provider:NAME[:ARGS] (repeatable): also say, per
    /// encrypted layer, whether these keys open it (no layer data is read).
    #[arg(short = 'k', long = "key", value_name = "KEY")]
    keys: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: registry::InspectRegistryArgs,
    /// Image, oci:PATH[:TAG] or docker://HOST[:PORT]/REPO[:TAG|@DIGEST].
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
    /// How many CPUs to keep busy: that many layers are processed at once, each on one
    /// thread, and the last layers (fewer than N left) also read, write and hash on helper
    /// threads. Default: the number of CPUs.
    #[arg(long = "jobs", short = 'j', value_name = "N", default_value_t = default_jobs())]
    jobs: NonZeroUsize,
}

/// The CPUs there are: what the commands keep busy unless told otherwise.
pub(crate) fn default_jobs() -> NonZeroUsize {
    thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

impl Selection {
    fn options(&self, registry: &registry::CopyRegistryArgs) -> Result<Options> {
        let (src, dst) = registry.options()?;
        Ok(Options::default()
            .source_registry(src)
            .destination_registry(dst)
            .layers(self.layers.iter().copied())
            .platforms(&self.platforms)
            .jobs(self.jobs.get())
            .ocicrypt(crate::context()?)
            .progress(progress::bars(|i, n| format!("layer {}/{n}", i + 1))))
    }
}

pub(crate) fn run(cmd: ImageCommand) -> Result<()> {
    let (verb, src, dst, report) = match cmd {
        ImageCommand::Encrypt(a) => {
            let ec = a.recipients.config()?;
            let (src, dst) = (a.src.parse::<ImageRef>()?, a.dst.parse::<ImageRef>()?);
            let report = ocicrypt_image::encrypt(&src, &dst, &ec, &a.select.options(&a.registry)?)?;
            ("encrypted", src, dst, report)
        }
        ImageCommand::Decrypt(a) => {
            let dc = a.keys.config()?;
            let (src, dst) = (a.src.parse::<ImageRef>()?, a.dst.parse::<ImageRef>()?);
            let report = ocicrypt_image::decrypt(&src, &dst, &dc, &a.select.options(&a.registry)?)?;
            ("decrypted", src, dst, report)
        }
        ImageCommand::Rewrap(a) => {
            let ec = a.keys.config()?;
            let (src, dst) = (a.src.parse::<ImageRef>()?, a.dst.parse::<ImageRef>()?);
            let options = a.select.options(&a.registry)?;
            let (verb, report) = if a.rotate {
                (
                    "rotated",
                    ocicrypt_image::rotate(&src, &dst, &ec, &options)?,
                )
            } else {
                (
                    "rewrapped",
                    ocicrypt_image::rewrap(&src, &dst, &ec, &options)?,
                )
            };
            eprintln!(
                "{verb} {} layer(s), {} left as they were (plain or not selected): {src} -> {dst}",
                report.layers_changed, report.layers_unchanged
            );
            return Ok(());
        }
        ImageCommand::Inspect(a) => return inspect(&a),
    };
    eprintln!("{verb} {} layer(s): {src} -> {dst}", report.layers_changed);
    Ok(())
}

fn inspect(a: &InspectArgs) -> Result<()> {
    let src: ImageRef = a.src.parse()?;
    let options = Options::default()
        .source_registry(a.registry.options()?)
        .ocicrypt(crate::context()?);
    let info = if a.keys.is_empty() {
        ocicrypt_image::inspect_with(&src, &options)?
    } else {
        let dc = ocicrypt::helpers::decrypt_config(&a.keys)?;
        ocicrypt_image::inspect_keys(&src, &dc, &options)?
    };
    let mut out = io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &info)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "image {}", info.image)?;
    for m in &info.manifests {
        let p = m
            .platform
            .as_ref()
            .map(|p| {
                let variant = p
                    .variant()
                    .as_ref()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default();
                format!(" ({}/{}{variant})", p.os(), p.architecture())
            })
            .unwrap_or_default();
        writeln!(out, "manifest {}{p}", m.manifest)?;
        for l in &m.layers {
            writeln!(
                out,
                "  layer {}: {} {} ({} bytes)",
                l.index,
                layer::clean(&l.media_type),
                layer::clean(&l.digest),
                l.size
            )?;
            layer::print_info(&mut out, &l.encryption, "    ")?;
            if let Some(opens) = l.opens {
                let yes = if opens { "yes" } else { "no" };
                writeln!(out, "    opens with the given keys: {yes}")?;
            }
        }
    }
    Ok(())
}
