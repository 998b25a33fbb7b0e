//! `ocicrypt layer ...`: one layer blob and its descriptor.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ocicrypt::spec::{annotations, media_types};
use ocicrypt::{Encrypted, LayerInfo};

use crate::descriptor::DescJson;
use crate::digest::sha256_hex;
use crate::fsx::{Staged, read_json, write_atomic};
use crate::pipe::{Input, Output};
use crate::{keys, progress};

/// Commands on a single layer blob.
#[derive(Debug, Subcommand)]
pub(crate) enum LayerCommand {
    /// Encrypt a layer blob (or add recipients to an encrypted one).
    Encrypt(EncryptArgs),
    /// Decrypt an encrypted layer blob.
    Decrypt(DecryptArgs),
    /// Show how a layer is encrypted, from its descriptor.
    Inspect(InspectArgs),
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
        LayerCommand::Inspect(a) => inspect(a),
    }
}

fn open_blob(path: &Path) -> Result<(File, u64)> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    Ok((f, len))
}

fn read_descriptor(path: &Path) -> Result<DescJson> {
    let what = format!("descriptor {}", path.display());
    DescJson::from_value(read_json(path, "descriptor")?, &what)
}

fn check_size(desc: &DescJson, len: u64, path: &Path) -> Result<()> {
    if desc.size() != len {
        bail!(
            "{} is {len} bytes but its descriptor says {}",
            path.display(),
            desc.size()
        );
    }
    Ok(())
}

fn encrypt(a: EncryptArgs) -> Result<()> {
    let ec = a.recipients.config()?;
    let ctx = crate::context()?;
    let (file, len) = open_blob(&a.input)?;
    let bar = progress::bar(len, "encrypting");
    let input = Input::open(bar.wrap_read(file), false, true)?;
    let mut out = Output::open(Staged::new(&a.output)?, true, true)?;
    let (base, enc_annotations, newly_encrypted) = match &a.descriptor {
        Some(p) => {
            let base = read_descriptor(p)?;
            check_size(&base, len, &a.input)?;
            match ctx.encrypt_layer(&ec, input, &base.to_oci()?)? {
                Encrypted::Stream(mut enc) => {
                    out.copy_from(&mut enc).context("encryption failed")?;
                    (base, enc.finalize()?, true)
                }
                Encrypted::RecipientsAdded(ann) => {
                    let (f, _) = open_blob(&a.input)?;
                    let mut r = Input::open(bar.wrap_read(f), true, true)?;
                    out.copy_from(&mut r).context("copying the layer failed")?;
                    let digest = r.finish()?.digest;
                    if digest.as_deref() != Some(base.digest()) {
                        bail!(
                            "{} does not match its descriptor's digest",
                            a.input.display()
                        );
                    }
                    (base, ann, false)
                }
            }
        }
        None => {
            let mt = a
                .media_type
                .as_deref()
                .unwrap_or(media_types::LAYER_TAR_GZIP)
                .to_owned();
            let mut enc = ctx.encrypt_stream(&ec, input)?;
            out.copy_from(&mut enc).context("encryption failed")?;
            (DescJson::new(&mt, "", len), enc.finalize()?, true)
        }
    };
    bar.finish_and_clear();
    let (staged, written) = out
        .finish()
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    let digest = written
        .digest
        .context("internal error: the output was not hashed")?;
    let mut desc = base;
    let mut mt = a
        .media_type
        .clone()
        .unwrap_or_else(|| desc.media_type().to_owned());
    if newly_encrypted {
        mt = media_types::to_encrypted(&mt);
    }
    let mut ann: BTreeMap<_, _> = annotations::filter_out(&desc.annotations());
    ann.extend(enc_annotations);
    desc.set(&mt, &digest, written.len, ann);
    staged.commit()?;
    write_atomic(&a.descriptor_out, &desc.to_pretty())
}

fn decrypt(a: DecryptArgs) -> Result<()> {
    let dc = a.keys.config()?;
    let desc = read_descriptor(&a.descriptor)?;
    sha256_hex(desc.digest()).context("the encrypted blob's descriptor")?;
    let (file, len) = open_blob(&a.input)?;
    check_size(&desc, len, &a.input)?;
    let bar = progress::bar(len, "decrypting");
    let mut input = Input::open(bar.wrap_read(file), true, true)?;
    let mut out = Output::open(Staged::new(&a.output)?, false, true)?;
    let (size, verified) = {
        let mut dec = crate::context()?.decrypt_layer(&dc, &mut input, &desc.to_oci()?)?;
        let size = out.copy_from(&mut dec).context("decryption failed")?;
        (size, dec.verified_digest().map(str::to_owned))
    };
    bar.finish_and_clear();
    let ct_digest = input.finish()?.digest;
    if ct_digest.as_deref() != Some(desc.digest()) {
        bail!(
            "{} does not match its descriptor: digest {}, expected {}",
            a.input.display(),
            ct_digest.unwrap_or_default(),
            desc.digest()
        );
    }
    // The decrypting reader computed and checked the plaintext digest at the end of the
    // stream; it is the digest of exactly the bytes written.
    let pt_digest =
        verified.context("internal error: decryption ended without a verified digest")?;
    let (staged, _) = out
        .finish()
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    staged.commit()?;
    if let Some(p) = &a.descriptor_out {
        let mut plain = desc.clone();
        let ann = annotations::filter_out(&desc.annotations());
        plain.set(
            media_types::to_decrypted(desc.media_type()),
            &pt_digest,
            size,
            ann,
        );
        write_atomic(p, &plain.to_pretty())?;
    }
    Ok(())
}

fn inspect(a: InspectArgs) -> Result<()> {
    let desc = read_descriptor(&a.descriptor)?;
    let info = crate::context()?.inspect(&desc.to_oci()?)?;
    let mut stdout = io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut stdout, &info)?;
        writeln!(stdout)?;
    } else {
        print_info(&mut stdout, &info, "")?;
    }
    Ok(())
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
        info.cipher.as_deref().unwrap_or("(no pubopts annotation)")
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
            s.scheme, s.wrapped_keys
        )?;
        for r in &s.recipients {
            writeln!(w, "{indent}  recipient {r}")?;
        }
        for k in &s.key_ids {
            writeln!(w, "{indent}  key id 0x{k}")?;
        }
    }
    Ok(())
}
