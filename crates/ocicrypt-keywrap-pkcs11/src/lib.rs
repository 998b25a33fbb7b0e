#![doc = include_str!("../README.md")]
// Not `forbid`: one function sets a key file's module environment (see `token.rs`).
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod keyfile;
mod token;
mod uri;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
pub(crate) use ocicrypt_keywrap::Failure;
use ocicrypt_keywrap::{
    Cause, CauseKind, DecryptConfig, EncryptConfig, Error, KeySearch, KeyWrapper, Loaded,
    SecretBytes,
};
use openssl::encrypt::Encrypter;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Padding;
use serde::{Deserialize, Serialize};

pub use crate::config::{CONFIG_ENV, CONFIG_FILE, ConfigLookup, Pkcs11Config, SYSTEM_CONFIG};
pub use crate::keyfile::Pkcs11KeyFile;
use crate::token::KeyClass;
pub use crate::token::export_module_env;
pub use crate::uri::{KNOWN_PATH_ATTRIBUTES, KNOWN_QUERY_ATTRIBUTES, Pkcs11Uri};

/// The scheme name.
const SCHEME: &str = "pkcs11";

/// The environment variable that picks the OAEP hash for encryption (`sha1` or `sha256`).
pub const OAEP_HASH_ENV: &str = "OCICRYPT_OAEP_HASHALG";

/// Why a pkcs11 URI or key file could not be parsed. Never shows a PIN.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The URI does not start with `pkcs11:`.
    #[error("not a pkcs11 URI: it must start with \"pkcs11:\"")]
    MissingScheme,
    /// An attribute is not `name=value`.
    #[error("malformed {part} attribute: expected name=value")]
    MalformedAttribute {
        /// `path` or `query`.
        part: &'static str,
    },
    /// An attribute name has characters other than letters, digits, `-` and `_`.
    #[error("invalid {part} attribute name \"{name}\"")]
    InvalidAttributeName {
        /// `path` or `query`.
        part: &'static str,
        /// The name, escaped.
        name: String,
    },
    /// An attribute appears twice.
    #[error("duplicate {part} attribute \"{name}\"")]
    DuplicateAttribute {
        /// `path` or `query`.
        part: &'static str,
        /// The attribute.
        name: String,
    },
    /// A `%` is not followed by two hex digits.
    #[error("invalid percent-encoding in attribute \"{name}\"")]
    PercentEncoding {
        /// The attribute.
        name: String,
    },
    /// An attribute's value is not allowed.
    #[error("invalid value of attribute \"{name}\": {reason}")]
    InvalidValue {
        /// The attribute.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Both `pin-value` and `pin-source` are given.
    #[error("the URI must not contain both pin-source and pin-value")]
    PinSourceAndValue,
    /// The key file is not pkcs11 key-file YAML.
    #[error("not a pkcs11 key file: {reason}")]
    KeyFile {
        /// What is wrong (the YAML parser's message).
        reason: String,
    },
    /// A `module.env` entry cannot be put into the environment.
    #[error("invalid environment variable \"{name}\" in the key file: {reason}")]
    InvalidEnv {
        /// The variable's name, escaped.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The hash used by RSA-OAEP, for both the OAEP digest and MGF1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OaepHash {
    /// SHA-1 (Go before v1.1.4; the only one SoftHSM 2.6 supports).
    Sha1,
    /// SHA-256 (Go's default since v1.1.4).
    #[default]
    Sha256,
}

impl OaepHash {
    /// The name written into the blob's `hash` field.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }

    /// The hash for a value of [`OAEP_HASH_ENV`]: unset or empty → SHA-256, else
    /// `sha1` / `sha256` in any case.
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] for any other value.
    pub fn from_env_value(value: Option<&str>) -> Result<Self, Error> {
        match value.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("sha256") => Ok(Self::Sha256),
            Some("sha1") => Ok(Self::Sha1),
            Some(_) => Err(Error::UnsupportedAlgorithm {
                scheme: SCHEME.to_owned(),
                algorithm: format!(
                    "Unsupported OAEP hash '{}' in {OAEP_HASH_ENV}",
                    value.unwrap_or_default().escape_default()
                ),
            }),
        }
    }

    /// The hash [`OAEP_HASH_ENV`] picks in the process environment.
    ///
    /// # Errors
    /// As [`OaepHash::from_env_value`]; a value that is not UTF-8 is unsupported too.
    pub fn from_env() -> Result<Self, Error> {
        match std::env::var_os(OAEP_HASH_ENV) {
            None => Ok(Self::Sha256),
            Some(v) => Self::from_env_value(Some(&v.to_string_lossy())),
        }
    }

    /// The hash a blob's `hash` field names: empty or `sha1` → SHA-1, `sha256` → SHA-256.
    fn from_blob(name: &str) -> Option<Self> {
        match name {
            "" | "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            _ => None,
        }
    }

    fn digest(self) -> MessageDigest {
        match self {
            Self::Sha1 => MessageDigest::sha1(),
            Self::Sha256 => MessageDigest::sha256(),
        }
    }
}

pub(crate) fn config_error(reason: impl Into<String>) -> Error {
    Error::Config {
        scheme: SCHEME.to_owned(),
        reason: reason.into(),
    }
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::malformed(SCHEME, reason.into())
}

/// The JSON blob, as Go's `Pkcs11Blob` (field order matters for byte equality).
#[derive(Serialize, Deserialize)]
struct Blob {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    recipients: Option<Vec<Recipient>>,
}

/// One recipient, as Go's `Pkcs11Recipient`.
#[derive(Serialize, Deserialize)]
struct Recipient {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    blob: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    hash: String,
}

/// The `pkcs11` key-wrap scheme: the layer's private options are RSA-OAEP encrypted for
/// each recipient, in software for plain RSA public keys
/// ([`EncryptConfig::pkcs11_public_keys`]) and on the token for pkcs11 key files
/// ([`EncryptConfig::pkcs11_yamls`]); they are decrypted on the token with the private
/// keys named by [`DecryptConfig::pkcs11_yamls`]. See the crate documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pkcs11KeyWrapper {
    oaep_hash: Option<OaepHash>,
}

impl Pkcs11KeyWrapper {
    /// A wrapper that takes the encryption hash from [`OAEP_HASH_ENV`] at each wrap, as Go
    /// does.
    pub const fn new() -> Self {
        Self { oaep_hash: None }
    }

    /// A wrapper that encrypts with `hash`, whatever the environment says.
    pub const fn with_oaep_hash(hash: OaepHash) -> Self {
        Self {
            oaep_hash: Some(hash),
        }
    }

    fn encrypt_hash(&self) -> Result<OaepHash, Error> {
        match self.oaep_hash {
            Some(h) => Ok(h),
            None => OaepHash::from_env(),
        }
    }
}

/// The encryption policy: the one in `ec.decrypt.pkcs11_config` if any.
fn policy(yaml: Option<&Vec<u8>>) -> Result<Option<Pkcs11Config>, Error> {
    yaml.map(|y| Pkcs11Config::from_yaml(y)).transpose()
}

/// A recipient: a plain RSA public key or a key file.
enum RecipientKey {
    Rsa(PKey<Public>),
    Token(Box<Pkcs11KeyFile>),
}

fn parse_recipient(data: &[u8]) -> Result<RecipientKey, Failure> {
    if let Ok(key) = ocicrypt_keywrap::keys::parse_public_key(data) {
        let pkey = key.into_pkey();
        if pkey.id() != Id::RSA {
            return Err(Failure::new(format!(
                "the public key is not an RSA key ({:?})",
                pkey.id()
            )));
        }
        return Ok(RecipientKey::Rsa(pkey));
    }
    Pkcs11KeyFile::parse(data)
        .map(|k| RecipientKey::Token(Box::new(k)))
        .map_err(|e| {
            Failure::with_source(
                "neither a public key (PEM, DER or JWK) nor a pkcs11 key file",
                e,
            )
        })
}

fn software_encrypt(key: &PKey<Public>, hash: OaepHash, data: &[u8]) -> Result<Vec<u8>, Failure> {
    let run = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut enc = Encrypter::new(key)?;
        enc.set_rsa_padding(Padding::PKCS1_OAEP)?;
        enc.set_rsa_oaep_md(hash.digest())?;
        enc.set_rsa_mgf1_md(hash.digest())?;
        let mut out = vec![0; enc.encrypt_len(data)?];
        let n = enc.encrypt(data, &mut out)?;
        out.truncate(n);
        Ok(out)
    };
    run().map_err(|e| Failure::with_source("RSA-OAEP encryption failed", e))
}

impl KeyWrapper for Pkcs11KeyWrapper {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn wrap_keys(&self, ec: &EncryptConfig, opts_data: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if !self.has_recipients(ec) {
            return Ok(None);
        }
        let hash = self.encrypt_hash()?;
        let policy = policy(ec.decrypt.pkcs11_config.as_ref())?;
        let keys = ec
            .pkcs11_public_keys
            .iter()
            .chain(&ec.pkcs11_yamls)
            .map(|k| parse_recipient(k).map_err(|f| f.recipient(SCHEME)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut recipients = Vec::with_capacity(keys.len());
        for key in keys {
            let ciphertext = match key {
                RecipientKey::Rsa(pkey) => software_encrypt(&pkey, hash, opts_data),
                RecipientKey::Token(kf) => {
                    token::with_key(&kf, policy.as_ref(), KeyClass::Public, |session, obj| {
                        session
                            .encrypt(&token::oaep_mechanism(hash), obj, opts_data)
                            .map_err(|e| {
                                Failure::new(format!(
                                    "C_Encrypt ({}) failed: {}",
                                    hash.name(),
                                    token::short_error(&e)
                                ))
                            })
                    })
                    .map_err(|f| Failure::new(format!("{}: {f}", kf.uri())))
                }
            }
            .map_err(|f| f.recipient(SCHEME))?;
            recipients.push(Recipient {
                version: 0,
                blob: STANDARD.encode(ciphertext),
                hash: hash.name().to_owned(),
            });
        }
        let blob = Blob {
            version: 0,
            recipients: Some(recipients),
        };
        ocicrypt_spec::to_go_json(&blob)
            .map(Some)
            .map_err(|e| Error::Backend {
                scheme: SCHEME.to_owned(),
                context: "could not serialize the pkcs11 blob".to_owned(),
                source: Box::new(e),
            })
    }

    fn unwrap_key(&self, dc: &DecryptConfig, blob: &[u8]) -> Result<SecretBytes, Error> {
        unwrap(dc, std::slice::from_ref(&blob)).map_err(|errors| {
            errors
                .into_iter()
                .next()
                .unwrap_or_else(|| malformed("no blob"))
        })
    }

    /// Each key file is read once, and its key used in one token session (one login) for
    /// all the blobs, not one per blob: the blobs' recipients are tried in order within
    /// the session of each key in turn.
    fn unwrap_first(
        &self,
        dc: &DecryptConfig,
        blobs: &[Vec<u8>],
    ) -> Result<SecretBytes, Vec<Error>> {
        unwrap(dc, blobs)
    }

    fn has_possible_keys(&self, dc: &DecryptConfig) -> bool {
        !dc.pkcs11_yamls.is_empty()
    }

    fn has_recipients(&self, ec: &EncryptConfig) -> bool {
        !ec.pkcs11_public_keys.is_empty() || !ec.pkcs11_yamls.is_empty()
    }
}

/// A blob's recipients that can be tried, and why the others cannot.
struct Parsed {
    /// Position in the blob, hash, ciphertext.
    usable: Vec<(usize, OaepHash, Vec<u8>)>,
    causes: Vec<Cause>,
}

/// Parses a blob as Go's `Pkcs11Blob` and sorts its recipients.
fn parse_blob(blob: &[u8]) -> Result<Parsed, Error> {
    let parse_error =
        |e: serde_json::Error| malformed(format!("could not parse the pkcs11 blob: {e}"));
    let value: serde_json::Value = serde_json::from_slice(blob).map_err(parse_error)?;
    if !value.is_object() {
        return Err(malformed(
            "could not parse the pkcs11 blob: not a JSON object",
        ));
    }
    let parsed: Blob = serde_json::from_value(value).map_err(parse_error)?;
    if parsed.version != 0 {
        return Err(malformed(format!(
            "found a pkcs11 blob with version {} but the maximum supported version is 0",
            parsed.version
        )));
    }
    let recipients = parsed.recipients.unwrap_or_default();
    if let Some(r) = recipients.iter().find(|r| r.version != 0) {
        return Err(malformed(format!(
            "found a pkcs11 recipient with version {} but the maximum supported version is 0",
            r.version
        )));
    }
    let mut causes = Vec::new();
    if recipients.is_empty() {
        causes.push(Cause::new(CauseKind::BadRecipient(
            "the blob has no recipients".to_owned(),
        )));
    }
    let mut usable = Vec::new();
    for (i, r) in recipients.iter().enumerate() {
        let bad = |what: String| {
            Cause::new(CauseKind::BadRecipient(what)).recipient(format!("recipient {i}"))
        };
        let Some(hash) = OaepHash::from_blob(&r.hash) else {
            causes.push(bad(format!(
                "unsupported OAEP hash '{}'",
                r.hash.escape_default()
            )));
            continue;
        };
        match STANDARD.decode(&r.blob) {
            Ok(ct) if !ct.is_empty() => usable.push((i, hash, ct)),
            Ok(_) => causes.push(bad("empty blob".to_owned())),
            Err(e) => causes.push(bad(format!("base64 decoding failed: {e}"))),
        }
    }
    Ok(Parsed { usable, causes })
}

/// The key files of one operation, for [`KeySearch`]: each read once, named by its URI
/// (or its place, if it is not a key file, which is skipped), with at most
/// [`MAX_UNWRAP_ATTEMPTS`] `C_Decrypt` calls in all.
fn key_search(yamls: &[SecretBytes]) -> KeySearch<'_, Pkcs11KeyFile> {
    let mut files: Vec<Option<Result<Pkcs11KeyFile, ParseError>>> = yamls
        .iter()
        .map(|y| Some(Pkcs11KeyFile::parse(y.expose())))
        .collect();
    let names = files
        .iter()
        .enumerate()
        .map(|(i, f)| match f {
            Some(Ok(kf)) => kf.uri().to_string(),
            _ => format!("pkcs11 key file {}", i + 1),
        })
        .collect();
    KeySearch::new(SCHEME, "pkcs11 key file", names, move |i| {
        Ok(match files.get_mut(i).and_then(Option::take) {
            Some(Ok(kf)) => Loaded::Key(kf),
            Some(Err(e)) => {
                Loaded::Skip(CauseKind::Unreadable(Box::new(Error::InvalidPrivateKey {
                    scheme: SCHEME.to_owned(),
                    reason: "not a pkcs11 key file".to_owned(),
                    source: Some(Box::new(e)),
                })))
            }
            None => Loaded::Skip(CauseKind::NoKey(format!("no key file {i}"))),
        })
    })
    .limit(
        MAX_UNWRAP_ATTEMPTS,
        "key and recipient pairs tried for one layer",
    )
}

/// How many `C_Decrypt` calls (key and recipient pairs) one layer's wrapped keys of this
/// scheme may make us try: each is a private-key operation on the token, and the blobs are
/// attacker input. A real layer asks for a handful.
pub const MAX_UNWRAP_ATTEMPTS: usize = 4096;

/// What one key's session did with the blobs.
enum Tried {
    Opened(SecretBytes),
    Refused,
    /// The budget's error.
    OverLimit(Error),
}

/// Unwraps the first of `blobs` that a key opens: each key in turn, in one token session
/// for all the blobs' recipients, at most [`MAX_UNWRAP_ATTEMPTS`] `C_Decrypt` calls in
/// all. On failure, one error per blob (or the limit's error alone).
fn unwrap(dc: &DecryptConfig, blobs: &[impl AsRef<[u8]>]) -> Result<SecretBytes, Vec<Error>> {
    let parsed: Vec<Result<Parsed, Error>> = blobs.iter().map(|b| parse_blob(b.as_ref())).collect();
    let policy = if dc.pkcs11_yamls.is_empty() {
        None
    } else {
        policy(dc.pkcs11_config.as_ref()).map_err(|e| vec![e])?
    };
    let usable = parsed.iter().flatten().any(|p| !p.usable.is_empty());
    // What each key did to each blob.
    let mut refusals: Vec<Vec<Cause>> = parsed.iter().map(|_| Vec::new()).collect();
    let mut keys = key_search(&dc.pkcs11_yamls);
    let found = keys.search(Vec::new(), |key, name, causes, budget| {
        if !usable {
            return Ok(None);
        }
        let result = token::with_key(key, policy.as_ref(), KeyClass::Private, |session, obj| {
            let tried = parsed.iter().zip(refusals.iter_mut());
            for (blob, refused) in tried {
                let Ok(blob) = blob else { continue };
                for (i, hash, ct) in &blob.usable {
                    if let Err(e) = budget.spend() {
                        return Ok(Tried::OverLimit(e));
                    }
                    match session.decrypt(&token::oaep_mechanism(*hash), obj, ct) {
                        Ok(plain) => return Ok(Tried::Opened(SecretBytes::new(plain))),
                        Err(e) => refused.push(
                            Cause::new(CauseKind::Refused(Failure::new(format!(
                                "C_Decrypt ({}) failed: {}",
                                hash.name(),
                                token::short_error(&e)
                            ))))
                            .key(name)
                            .recipient(format!("recipient {i}")),
                        ),
                    }
                }
            }
            Ok(Tried::Refused)
        });
        match result {
            Ok(Tried::Opened(plain)) => Ok(Some(plain)),
            Ok(Tried::Refused) => Ok(None),
            Ok(Tried::OverLimit(e)) => Err(e),
            // The token refused: no such key, a wrong PIN, no module.
            Err(f) => {
                causes.push(Cause::new(CauseKind::Refused(f)).key(name));
                Ok(None)
            }
        }
    });
    let key_causes = match found {
        Ok(plain) => return Ok(plain),
        Err(Error::NoMatchingKey { causes, .. }) => causes,
        Err(e) => return Err(vec![e]),
    };
    Err(parsed
        .into_iter()
        .zip(refusals)
        .map(|(blob, refused)| match blob {
            Err(e) => e,
            Ok(blob) => {
                let mut causes = blob.causes;
                causes.extend(refused);
                causes.extend(key_causes.iter().map(Cause::detached));
                Error::NoMatchingKey {
                    scheme: SCHEME.to_owned(),
                    causes,
                }
            }
        })
        .collect())
}

// The unit tests share the integration tests' SoftHSM2 helpers, which name this crate.
#[cfg(test)]
extern crate self as ocicrypt_keywrap_pkcs11;
#[cfg(test)]
mod tests;
