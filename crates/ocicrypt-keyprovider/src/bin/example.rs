//! `ocicrypt-keyprovider-example`: a small key provider to start from.
//!
//! It wraps the layer's private options with AES-256-GCM under a 32-byte key read from
//! a file (random 96-bit nonce per wrap). The blob it returns is JSON in the shape of Go
//! ocicrypt's test provider: `{"key_url":"file://<key file>","wrapped_key":"<base64
//! nonce‖ciphertext‖tag>","wrap_type":"AES"}`.
//!
//! ```text
//! ocicrypt-keyprovider-example --key-file KEY                 # one request, stdin → stdout
//! ocicrypt-keyprovider-example --key-file KEY --grpc 127.0.0.1:50051 \
//!     [--tls-cert CERT.pem --tls-key KEY.pem [--client-ca CA.pem]]
//! ```
//!
//! The key file may also be given as `OCICRYPT_EXAMPLE_KEY_FILE`. A real provider would
//! talk to a KMS or an HSM instead of reading a key file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ocicrypt_keyprovider::ProviderError;
use ocicrypt_keyprovider::sdk::{self, KeyProvider, TlsServerConfig, UnwrapRequest, WrapRequest};
use ocicrypt_keywrap::SecretBytes;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

struct AesProvider {
    key: Zeroizing<Vec<u8>>,
    key_url: String,
}

#[derive(Serialize, Deserialize)]
struct Annotation {
    key_url: String,
    wrapped_key: String,
    wrap_type: String,
}

impl KeyProvider for AesProvider {
    fn wrap_key(&self, request: &WrapRequest) -> Result<Vec<u8>, ProviderError> {
        let mut nonce = [0u8; NONCE_LEN];
        openssl::rand::rand_bytes(&mut nonce).map_err(|_| ProviderError::new("no randomness"))?;
        let mut tag = [0u8; TAG_LEN];
        let ct = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.key,
            Some(&nonce),
            &[],
            request.opts_data.expose(),
            &mut tag,
        )
        .map_err(|_| ProviderError::new("AES-256-GCM encryption failed"))?;
        let blob: Vec<u8> = nonce.iter().chain(&ct).chain(&tag).copied().collect();
        serde_json::to_vec(&Annotation {
            key_url: self.key_url.clone(),
            wrapped_key: STANDARD.encode(blob),
            wrap_type: "AES".to_owned(),
        })
        .map_err(|_| ProviderError::new("cannot serialize the annotation"))
    }

    fn unwrap_key(&self, request: &UnwrapRequest) -> Result<SecretBytes, ProviderError> {
        let a: Annotation = serde_json::from_slice(&request.annotation)
            .map_err(|e| ProviderError::new(format!("not an annotation of this provider: {e}")))?;
        if a.wrap_type != "AES" {
            return Err(ProviderError::new(format!(
                "unsupported wrap_type {:?}",
                a.wrap_type
            )));
        }
        let blob = STANDARD
            .decode(&a.wrapped_key)
            .map_err(|_| ProviderError::new("wrapped_key is not base64"))?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(ProviderError::new("wrapped_key is too short"));
        }
        let (nonce, rest) = blob.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        decrypt_aead(Cipher::aes_256_gcm(), &self.key, Some(nonce), &[], ct, tag)
            .map(SecretBytes::new)
            .map_err(|_| ProviderError::new("authentication failed: wrong key or corrupt blob"))
    }
}

#[derive(Default)]
struct Args {
    key_file: Option<PathBuf>,
    grpc: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        key_file: std::env::var_os("OCICRYPT_EXAMPLE_KEY_FILE").map(PathBuf::from),
        ..Args::default()
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(flag) = it.next() {
        let flag = flag.to_string_lossy().into_owned();
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--key-file" => args.key_file = Some(value()?.into()),
            "--grpc" => args.grpc = Some(value()?.to_string_lossy().into_owned()),
            "--tls-cert" => args.tls_cert = Some(value()?.into()),
            "--tls-key" => args.tls_key = Some(value()?.into()),
            "--client-ca" => args.client_ca = Some(value()?.into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let key_file = args
        .key_file
        .ok_or("--key-file (or OCICRYPT_EXAMPLE_KEY_FILE) is required")?;
    let key = Zeroizing::new(
        std::fs::read(&key_file).map_err(|e| format!("cannot read {}: {e}", key_file.display()))?,
    );
    if key.len() != 32 {
        return Err(format!("{} must hold exactly 32 bytes", key_file.display()));
    }
    let provider = AesProvider {
        key,
        key_url: format!("file://{}", key_file.display()),
    };
    let Some(addr) = args.grpc else {
        return sdk::serve_cmd(&provider).map_err(|e| e.to_string());
    };
    let addr = addr.parse().map_err(|e| format!("--grpc {addr}: {e}"))?;
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsServerConfig {
            cert_pem: read(cert)?,
            key_pem: SecretBytes::new(read(key)?),
            client_ca_pem: args.client_ca.as_ref().map(read).transpose()?,
        }),
        (None, None) if args.client_ca.is_none() => None,
        _ => {
            return Err(
                "--tls-cert and --tls-key go together (and --client-ca needs them)".to_owned(),
            );
        }
    };
    sdk::serve_grpc(Arc::new(provider), addr, tls).map_err(|e| {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg = format!("{msg}: {s}");
            source = s.source();
        }
        msg
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ocicrypt-keyprovider-example: {e}");
            ExitCode::FAILURE
        }
    }
}
