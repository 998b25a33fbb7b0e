//! `ocicrypt layer ...`: one layer blob and its descriptor.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ocicrypt::LayerInfo;
use ocicrypt::oci_spec::image::{Descriptor, MediaType};
use ocicrypt::spec::media_types;
use ocicrypt_image::{Lossless, Options, PlainLayer, write_atomic};

use crate::{keys, progress};

/// Commands on a single layer blob.
#[derive(Debug, Subcommand)]
pub(crate) enum LayerCommand {
    /// Encrypt a layer blob (or add recipients to an encrypted one).
    Encrypt(EncryptArgs),
    /// Decrypt an encrypted layer blob.
    Decrypt(DecryptArgs),
    /// Replace the recipients of an encrypted layer (old recipients lose access), in its
    /// descriptor; with --rotate, re-encrypt its blob under a fresh layer key too.
    Rewrap(RewrapArgs),
    /// Show how a layer is encrypted, from its descriptor.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RewrapArgs {
    #[command(flatten)]
    keys: keys::RewrapKeyArgs,
    /// The encrypted blob's descriptor.
    #[arg(long, value_name = "FILE")]
    descriptor: PathBuf,
    /// Where to write the new descriptor (JSON).
    #[arg(long, value_name = "FILE")]
    descriptor_out: PathBuf,
    /// Re-encrypt the blob under a fresh layer key and nonce (needs --in and --out).
    #[arg(long, requires_all = ["input", "output"])]
    rotate: bool,
    /// With --rotate: the encrypted layer blob.
    #[arg(long = "in", value_name = "FILE", requires = "rotate")]
    input: Option<PathBuf>,
    /// With --rotate: where to write the new blob.
    #[arg(long = "out", value_name = "FILE", requires = "rotate")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct EncryptArgs {
    #[command(flatten)]
    recipients: keys::RecipientArgs,
    /// The layer blob to encrypt.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// Where to write the encrypted blob.
    #[arg(long = "out", value_name = "FILE")]
    output: PathBuf,
    /// Where to write the encrypted blob's descriptor (JSON).
    #[arg(long, value_name = "FILE")]
    descriptor_out: PathBuf,
    /// The plain blob's descriptor; its digest and size are checked against --in.
    #[arg(long, value_name = "FILE")]
    descriptor: Option<PathBuf>,
    /// The plain blob's media type when no --descriptor is given.
    #[arg(long, value_name = "MT")]
    media_type: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    #[command(flatten)]
    keys: keys::KeyArgs,
    /// The encrypted blob's descriptor.
    #[arg(long, value_name = "FILE")]
    descriptor: PathBuf,
    /// The encrypted layer blob.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// Where to write the decrypted blob.
    #[arg(long = "out", value_name = "FILE")]
    output: PathBuf,
    /// Where to write the decrypted blob's descriptor (JSON).
    #[arg(long, value_name = "FILE")]
    descriptor_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The layer's descriptor.
    #[arg(long, value_name = "FILE")]
    descriptor: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: LayerCommand) -> Result<()> {
    match cmd {
        LayerCommand::Encrypt(a) => encrypt(a),
        LayerCommand::Decrypt(a) => decrypt(a),
        LayerCommand::Rewrap(a) => rewrap(a),
        LayerCommand::Inspect(a) => inspect(a),
    }
}

fn rewrap(a: RewrapArgs) -> Result<()> {
    let ec = a.keys.config()?;
    let desc = read_descriptor(&a.descriptor)?;
    let new = match (&a.input, &a.output) {
        (Some(input), Some(output)) => {
            let options = options("rotating")?;
            ocicrypt_image::rotate_file(input, output, desc.get(), &ec, &options)?
        }
        _ => {
            let ann = crate::context()?.rewrap(&ec, desc.get())?;
            ocicrypt::descriptor::rewrapped(desc.get(), &ann)
        }
    };
    write_descriptor(&a.descriptor_out, Some(desc), new)
}

/// A descriptor file, with the fields `oci-spec` does not model kept.
fn read_descriptor(path: &Path) -> Result<Lossless<Descriptor>> {
    let bytes =
        fs::read(path).with_context(|| format!("cannot read descriptor {}", path.display()))?;
    Ok(Lossless::from_slice(
        &bytes,
        &format!("descriptor {}", path.display()),
    )?)
}

/// Writes `base` changed to `new` (or `new` alone) as indented JSON.
fn write_descriptor(
    path: &Path,
    base: Option<Lossless<Descriptor>>,
    new: Descriptor,
) -> Result<()> {
    let doc = match base {
        Some(mut d) => {
            d.update(|d| *d = new)?;
            d
        }
        None => Lossless::new(new)?,
    };
    Ok(write_atomic(path, &doc.to_pretty()?)?)
}

fn options(what: &'static str) -> Result<Options> {
    Ok(Options::default()
        .jobs(crate::image::default_jobs().get())
        .ocicrypt(crate::context()?)
        .progress(progress::bars(move |_, _| what.to_owned())))
}

fn encrypt(a: EncryptArgs) -> Result<()> {
    let ec = a.recipients.config()?;
    let options = options("encrypting")?;
    let media_type = a.media_type.as_deref().map(MediaType::from);
    let mut base = a.descriptor.as_deref().map(read_descriptor).transpose()?;
    if let (Some(b), Some(mt)) = (&mut base, &media_type) {
        b.update(|d| {
            d.set_media_type(mt.clone());
        })?;
    }
    let default_mt = MediaType::from(media_types::LAYER_TAR_GZIP);
    let plain = match &base {
        Some(b) => PlainLayer::Described(b.get()),
        None => PlainLayer::Undescribed(media_type.as_ref().unwrap_or(&default_mt)),
    };
    let desc = ocicrypt_image::encrypt_file(&a.input, &a.output, plain, &ec, &options)?;
    write_descriptor(&a.descriptor_out, base, desc)
}

fn decrypt(a: DecryptArgs) -> Result<()> {
    let dc = a.keys.config()?;
    let desc = read_descriptor(&a.descriptor)?;
    let options = options("decrypting")?;
    let plain = ocicrypt_image::decrypt_file(&a.input, &a.output, desc.get(), &dc, &options)?;
    match &a.descriptor_out {
        Some(p) => write_descriptor(p, Some(desc), plain),
        None => Ok(()),
    }
}

fn inspect(a: InspectArgs) -> Result<()> {
    let desc = read_descriptor(&a.descriptor)?;
    let info = crate::context()?.inspect(desc.get())?;
    let mut stdout = io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut stdout, &info)?;
        writeln!(stdout)?;
    } else {
        print_info(&mut stdout, &info, "")?;
    }
    Ok(())
}

/// `s` with control characters (terminal escape sequences among them) shown as escapes:
/// what `inspect` prints comes from untrusted descriptors.
pub(crate) fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

/// Prints a layer's encryption in text form, each line prefixed with `indent`.
pub(crate) fn print_info(w: &mut impl Write, info: &LayerInfo, indent: &str) -> io::Result<()> {
    if !info.encrypted {
        return writeln!(w, "{indent}encrypted: no");
    }
    writeln!(w, "{indent}encrypted: yes")?;
    writeln!(
        w,
        "{indent}cipher: {}",
        clean(info.cipher.as_deref().unwrap_or("(no pubopts annotation)"))
    )?;
    for s in &info.schemes {
        let support = if s.supported {
            ""
        } else {
            " (not supported by this build)"
        };
        writeln!(
            w,
            "{indent}scheme {}: {} wrapped key(s){support}",
            clean(&s.scheme),
            s.wrapped_keys
        )?;
        for r in &s.recipients {
            writeln!(w, "{indent}  recipient {}", clean(r))?;
        }
        for k in &s.key_ids {
            writeln!(w, "{indent}  key id 0x{}", clean(k))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_strings_cannot_reach_the_terminal_raw() {
        let info = LayerInfo {
            encrypted: true,
            cipher: Some("AES\u{1b}]0;pwned\u{7}\n".to_owned()),
            schemes: Vec::new(),
        };
        let mut out = Vec::new();
        print_info(&mut out, &info, "").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(text.contains("AES\\u{1b}]0;pwned\\u{7}\\n"), "{text:?}");
        assert_eq!(clean("plain"), "plain");
    }
}
