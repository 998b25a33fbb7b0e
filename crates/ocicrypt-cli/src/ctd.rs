//! `ctd-decoder`: containerd's stream processor for encrypted layers, a drop-in for
//! imgcrypt's binary of that name.
//!
//! containerd runs it for every layer whose media type ends in `+encrypted` (see its
//! `stream_processors` configuration): the encrypted layer on stdin, the decrypted layer to
//! be written on stdout, the media type in `STREAM_PROCESSOR_MEDIATYPE`, and on file
//! descriptor 3 a protobuf `google.protobuf.Any` of type `io.containerd.ocicrypt.v1.Payload`
//! whose value is imgcrypt's `Payload` as Go's JSON: the `DecryptConfig` (Go's parameter map)
//! and the layer's `Descriptor`. Keys come from `--decryption-keys-path DIR` (every regular
//! file below it, their kinds detected; symbolic links are refused, as imgcrypt refuses them)
//! and from the payload's parameters. A key provider configured in
//! `OCICRYPT_KEYPROVIDER_CONFIG` is asked for every layer that carries its annotation, as Go's
//! `DecryptLayer` does there (the `ocicrypt` command asks only providers given with `-k`).
//!
//! Nothing reaches stdout before it is authenticated but the stream itself: the last 10 KiB
//! and more are held back until the HMAC and the plaintext digest were checked, and any
//! failure exits non-zero with one line on stderr, so that containerd discards the layer.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use ocicrypt::oci_spec::image::Descriptor;
use ocicrypt::{DecryptConfig, keywrap::Parameters};
use prost::Message;
use serde::Deserialize;

/// The type URL of imgcrypt's payload.
pub const PAYLOAD_TYPE_URL: &str = "io.containerd.ocicrypt.v1.Payload";
/// The largest payload read from file descriptor 3 (16 MiB).
const MAX_PAYLOAD: u64 = 16 << 20;
/// How deep the keys directory is walked.
const MAX_KEY_DEPTH: usize = 16;
/// How many key files are read at most.
const MAX_KEY_FILES: usize = 1024;

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    /// The type URL.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The message, here Go's JSON of imgcrypt's `Payload`.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// imgcrypt's `Payload`, as Go's `encoding/json` writes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Payload {
    decrypt_config: Option<GoDecryptConfig>,
    descriptor: Descriptor,
}

/// Go's `config.DecryptConfig`: `{"Parameters": map[string][][]byte}` (base64 strings).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GoDecryptConfig {
    parameters: Option<std::collections::BTreeMap<String, Option<Vec<String>>>>,
}

/// Decrypts a layer on stdin to stdout for containerd (imgcrypt's `ctd-decoder`).
#[derive(Debug, Parser)]
#[command(name = "ctd-decoder", version, about, max_term_width = 100)]
struct Args {
    /// A directory of private keys (every regular file below it; PEM, DER, JWK, OpenPGP
    /// secret keys, certificates for pkcs7, PKCS#11 key files).
    #[arg(long, value_name = "DIR")]
    decryption_keys_path: Option<PathBuf>,
}

/// The payload's descriptor and decryption parameters, from the bytes of the `Any`.
///
/// # Errors
/// Not an `Any`, a wrong type URL, or a value that is not imgcrypt's payload JSON.
pub fn decode_payload(bytes: &[u8]) -> Result<(Descriptor, DecryptConfig)> {
    let any = Any::decode(bytes).context("the payload is not a protobuf Any")?;
    if any.type_url != PAYLOAD_TYPE_URL {
        bail!(
            "the payload has type {:?}, expected {PAYLOAD_TYPE_URL}",
            crate::layer::clean(&any.type_url)
        );
    }
    let payload: Payload =
        serde_json::from_slice(&any.value).context("the payload is not imgcrypt's Payload JSON")?;
    let mut params = Parameters::new();
    for (k, values) in payload
        .decrypt_config
        .and_then(|c| c.parameters)
        .unwrap_or_default()
    {
        let mut decoded = Vec::new();
        for v in values.unwrap_or_default() {
            use base64::Engine as _;
            decoded.push(
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .with_context(|| format!("payload parameter {k:?} is not base64"))?,
            );
        }
        params.insert(k, decoded);
    }
    let dc = DecryptConfig::from_parameters(&params).context("the payload's DecryptConfig")?;
    Ok((payload.descriptor, dc))
}

/// Every regular file below `dir`, sorted; symbolic links are refused.
fn key_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_owned(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let entries = fs::read_dir(&d)
            .with_context(|| format!("cannot read the keys directory {}", d.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("cannot read the keys directory {}", d.display()))?;
            let path = e.path();
            let kind = e
                .file_type()
                .with_context(|| format!("cannot stat {}", path.display()))?;
            if kind.is_symlink() {
                bail!(
                    "{}: symbolic links are not allowed in the keys directory",
                    path.display()
                );
            } else if kind.is_dir() {
                if depth >= MAX_KEY_DEPTH {
                    bail!("{}: the keys directory is nested too deep", path.display());
                }
                stack.push((path, depth + 1));
            } else if kind.is_file() {
                out.push(path);
                if out.len() > MAX_KEY_FILES {
                    bail!("more than {MAX_KEY_FILES} files in the keys directory");
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn run(args: Args) -> Result<()> {
    let mut payload = Vec::new();
    fs::File::open("/dev/fd/3")
        .context("no payload on file descriptor 3 (ctd-decoder is run by containerd)")?
        .take(MAX_PAYLOAD + 1)
        .read_to_end(&mut payload)
        .context("cannot read the payload on file descriptor 3")?;
    if payload.is_empty() {
        bail!("no payload on file descriptor 3 (ctd-decoder is run by containerd)");
    }
    if payload.len() as u64 > MAX_PAYLOAD {
        bail!("the payload on file descriptor 3 is larger than {MAX_PAYLOAD} bytes");
    }
    let (desc, mut dc) = decode_payload(&payload)?;
    if let Some(dir) = &args.decryption_keys_path {
        for file in key_files(dir)? {
            let spec = file
                .to_str()
                .with_context(|| format!("{}: the path is not UTF-8", file.display()))?;
            ocicrypt::helpers::add_key(&mut dc, spec)?;
        }
    }
    let ctx = crate::context()?;
    // Go's DecryptLayer asks every configured provider whose annotation the layer carries.
    let annotations = desc.annotations().clone().unwrap_or_default();
    for w in ctx.registry().wrappers() {
        if let Some(name) = w.scheme().strip_prefix("provider.")
            && annotations.contains_key(&w.annotation_key())
        {
            dc.key_providers
                .entry(name.to_owned())
                .or_insert_with(|| vec![b"Enabled".to_vec()]);
        }
    }
    #[cfg(feature = "pkcs11")]
    ocicrypt::pkcs11::export_module_env(dc.pkcs11_yamls.iter().map(|k| k.expose()));
    // A helper thread for the HMAC and the cipher when there is a CPU for it.
    let helpers = crate::image::default_jobs().get() > 1;
    let mut dec = ctx
        .decrypt_layer(&dc, io::stdin().lock(), &desc)?
        .parallel(helpers);
    let mut out = io::BufWriter::with_capacity(256 * 1024, io::stdout().lock());
    io::copy(&mut dec, &mut out).context("decryption failed")?;
    out.flush().context("cannot write the decrypted layer")?;
    Ok(())
}

/// The `ctd-decoder` binary: runs with `args`, prints one line on stderr on failure and
/// returns the exit status (0 success, 1 failure, 2 usage error).
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => return crate::usage_exit(&e),
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ctd-decoder: error: {}", crate::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
