#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod content;
pub mod keys;
mod rsa_oaep;
mod serialization;
#[cfg(test)]
mod tests;

use josekit::jwe::alg::ecdh_es::EcdhEsJweAlgorithm;
use josekit::jwe::{
    JweDecrypter, JweEncrypter, JweHeader, JweHeaderSet, serialize_flattened_json,
    serialize_general_json,
};
pub(crate) use ocicrypt_keywrap::Failure;
pub(crate) use ocicrypt_keywrap::keys::B64URL;
use ocicrypt_keywrap::{
    BoxError, Cause, CauseKind, DecryptConfig, EncryptConfig, Error, KeyFile, KeySearch,
    KeyWrapper, Loaded, SecretBytes,
};
use zeroize::Zeroizing;

use crate::keys::{KeyAlgorithm, PrivateKey, PublicKey};
pub use crate::serialization::MAX_RECIPIENTS;
use crate::serialization::{Jwe, RecipientRef};

/// The scheme name.
const SCHEME: &str = "jwe";

/// The content encryption this crate writes (as Go ocicrypt does).
const CONTENT_ENCRYPTION: &str = "A256GCM";

fn backend(context: &str, source: impl Into<BoxError>) -> Error {
    Error::backend(SCHEME, context, source)
}

/// The `jwe` key-wrap scheme: the layer's private options are encrypted as one JWE
/// (A256GCM content encryption) with a recipient per public key in
/// [`EncryptConfig::jwe_public_keys`], and decrypted with
/// [`DecryptConfig::private_keys`]. See the crate documentation for the details.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct JweKeyWrapper;

impl KeyWrapper for JweKeyWrapper {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn wrap_keys(&self, ec: &EncryptConfig, opts_data: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        wrap(&ec.jwe_public_keys, opts_data)
    }

    fn unwrap_key(&self, dc: &DecryptConfig, blob: &[u8]) -> Result<SecretBytes, Error> {
        unwrap(&mut key_search(&dc.private_keys), blob)
    }

    /// Each key file is parsed (and, if encrypted, its password derived) once for all the
    /// blobs, not once per blob.
    fn unwrap_first(
        &self,
        dc: &DecryptConfig,
        blobs: &[Vec<u8>],
    ) -> Result<SecretBytes, Vec<Error>> {
        key_search(&dc.private_keys).unwrap_first(blobs, unwrap)
    }

    fn has_possible_keys(&self, dc: &DecryptConfig) -> bool {
        !dc.private_keys.is_empty()
    }

    fn has_recipients(&self, ec: &EncryptConfig) -> bool {
        !ec.jwe_public_keys.is_empty()
    }

    /// `["[jwe]"]`, as Go answers, unless a recipient names its key with `kid`: then one
    /// entry per recipient, `kid:<kid> alg:<alg>` or, for a recipient without `kid`,
    /// `[jwe] alg:<alg>`. Control characters in the blob's strings are escaped.
    fn recipients(&self, blob: &[u8]) -> Result<Vec<String>, Error> {
        let jwe = serialization::parse(blob)?;
        if jwe.recipients().all(|r| r.kid().is_none()) {
            return Ok(vec![format!("[{SCHEME}]")]);
        }
        Ok(jwe
            .recipients()
            .map(|r| match r.kid() {
                Some(kid) => format!("kid:{} alg:{}", printable(kid), printable(r.alg())),
                None => format!("[{SCHEME}] alg:{}", printable(r.alg())),
            })
            .collect())
    }
}

/// The most characters of a header string (`kid`, `alg`) that [`printable`] shows: a
/// header shared by all recipients is named once per recipient, so a long one would
/// otherwise be repeated up to [`MAX_RECIPIENTS`] times.
const MAX_PRINTED_CHARS: usize = 256;

/// `s` with control characters escaped and cut after [`MAX_PRINTED_CHARS`] characters
/// (marked with `...`), for display.
fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_PRINTED_CHARS)
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    if s.chars().nth(MAX_PRINTED_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

fn ecdh_algorithm(alg: KeyAlgorithm) -> Option<EcdhEsJweAlgorithm> {
    match alg {
        KeyAlgorithm::EcdhEsA128kw => Some(EcdhEsJweAlgorithm::EcdhEsA128kw),
        KeyAlgorithm::EcdhEsA192kw => Some(EcdhEsJweAlgorithm::EcdhEsA192kw),
        KeyAlgorithm::EcdhEsA256kw => Some(EcdhEsJweAlgorithm::EcdhEsA256kw),
        _ => None,
    }
}

/// One recipient's josekit encrypter.
fn encrypter(key: &PublicKey) -> Result<Box<dyn JweEncrypter>, Error> {
    let alg = key.key_algorithm()?;
    let kid = key.key_id().map(str::to_owned);
    if let Some(rsa) = rsa_oaep::RsaOaepEncrypter::new(alg, key.pkey().clone(), kid.clone()) {
        return Ok(Box::new(rsa));
    }
    let ecdh = ecdh_algorithm(alg).ok_or_else(|| Error::UnsupportedAlgorithm {
        scheme: SCHEME.to_owned(),
        algorithm: alg.name().to_owned(),
    })?;
    let mut enc = ecdh.encrypter_from_der(key.to_spki_der()?).map_err(|e| {
        Failure::with_source("EC key cannot be used for ECDH-ES", e).recipient(SCHEME)
    })?;
    if let Some(kid) = kid {
        enc.set_key_id(kid);
    }
    Ok(Box::new(enc))
}

/// Encrypts `payload` for every key, as go-jose's `NewMultiEncrypter(A256GCM, ...)` and
/// `FullSerialize` do: flattened JSON for one recipient, general JSON for more.
fn wrap(public_keys: &[Vec<u8>], payload: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    if public_keys.is_empty() {
        return Ok(None);
    }
    if public_keys.len() > MAX_RECIPIENTS {
        // What this crate writes, it must read.
        return Err(Error::limit_exceeded(SCHEME, "recipients", MAX_RECIPIENTS));
    }
    let encrypters = public_keys
        .iter()
        .map(|k| encrypter(&keys::parse_public_key(k)?))
        .collect::<Result<Vec<_>, Error>>()?;
    let mut shared = JweHeaderSet::new();
    shared.set_content_encryption(CONTENT_ENCRYPTION, true);
    let json = match encrypters.as_slice() {
        [single] => serialize_flattened_json(payload, Some(&shared), None, None, single.as_ref()),
        many => {
            let recipients: Vec<(Option<&JweHeader>, &dyn JweEncrypter)> =
                many.iter().map(|e| (None, e.as_ref())).collect();
            serialize_general_json(payload, Some(&shared), &recipients, None)
        }
    }
    .map_err(|e| backend("JWE encryption failed", e))?;
    Ok(Some(json.into_bytes()))
}

/// The key files of one operation, each parsed (and unlocked) at most once, when first
/// needed. A key that is not one JWE can use is skipped; a password problem stops the
/// search, as Go does.
fn key_search(files: &[KeyFile]) -> KeySearch<'_, PrivateKey> {
    KeySearch::of_files(
        SCHEME,
        "private key",
        files,
        |file| match keys::parse_private_key(file.data().expose(), file.password()) {
            Ok(key) => Ok(Loaded::Key(key)),
            Err(e) if e.is_password_error() => Err(e),
            Err(e) => Ok(Loaded::Skip(CauseKind::Unreadable(Box::new(e)))),
        },
    )
    .limit(MAX_UNWRAP_ATTEMPTS, ATTEMPTS)
}

/// How many (key, recipient) pairs one layer's wrapped keys of this scheme may make us try:
/// each costs a private-key operation, and [`MAX_RECIPIENTS`] recipients in each of up to a
/// thousand blobs could otherwise ask for a million. A real layer asks for a handful.
pub const MAX_UNWRAP_ATTEMPTS: usize = 4096;

/// What [`MAX_UNWRAP_ATTEMPTS`] counts, for its error.
const ATTEMPTS: &str = "key and recipient pairs tried for one layer";

/// Decrypts `blob` with the first key that opens any of its recipients.
fn unwrap(keys: &mut KeySearch<'_, PrivateKey>, blob: &[u8]) -> Result<SecretBytes, Error> {
    let jwe = serialization::parse(blob)?;
    let mut causes = Vec::new();
    let mut usable = Vec::new();
    for (i, r) in jwe.recipients().enumerate() {
        match KeyAlgorithm::from_name(r.alg()) {
            Some(alg) => usable.push((i + 1, alg, r)),
            None => causes.push(
                Cause::new(CauseKind::BadRecipient(format!(
                    "unsupported algorithm {}",
                    printable(r.alg())
                )))
                .recipient(format!("recipient {}", i + 1)),
            ),
        }
    }
    if usable.is_empty() {
        let algorithm = jwe
            .recipients()
            .next()
            .map(|r| printable(r.alg()))
            .unwrap_or_default();
        return Err(Error::UnsupportedAlgorithm {
            scheme: SCHEME.to_owned(),
            algorithm,
        });
    }
    keys.search(causes, |key, name, causes, budget| {
        let k = format!("{name} ({})", key.kind());
        let mut tried = false;
        for (r, alg, recipient) in &usable {
            if !alg.fits(key.kind()) {
                continue;
            }
            tried = true;
            budget.spend()?;
            match open(&jwe, *alg, *recipient, key) {
                Ok(mut plaintext) => {
                    return Ok(Some(SecretBytes::new(std::mem::take(&mut *plaintext))));
                }
                Err(f) => causes.push(
                    Cause::new(CauseKind::Refused(f))
                        .key(k.as_str())
                        .recipient(format!("recipient {r} ({alg})")),
                ),
            }
        }
        if !tried {
            causes.push(
                Cause::new(CauseKind::Unsuitable(
                    "no recipient uses an algorithm for this key type".to_owned(),
                ))
                .key(k),
            );
        }
        Ok(None)
    })
}

/// Unwraps one recipient's content key with `key` and decrypts the content.
fn open(
    jwe: &Jwe,
    alg: KeyAlgorithm,
    recipient: RecipientRef<'_>,
    key: &PrivateKey,
) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let encrypted_key = recipient
        .encrypted_key()
        .ok_or_else(|| Failure::new("no encrypted_key"))?;
    let cek = if let Some(ecdh) = ecdh_algorithm(alg) {
        // AES key wrap adds 8 bytes; josekit panics on fewer than 8.
        if encrypted_key.len() != jwe.enc.key_len() + 8 {
            return Err(Failure::new("encrypted_key has the wrong length"));
        }
        let der = keys::pkcs8_der(key).map_err(|e| Failure::with_source("EC key", e))?;
        let decrypter = ecdh
            .decrypter_from_der(&*der)
            .map_err(|e| Failure::with_source("EC key cannot be used for ECDH-ES", e))?;
        let header = recipient
            .key_agreement_header()
            .map_err(|e| Failure::with_source("invalid key agreement header", e))?;
        let cek = decrypter
            .decrypt(Some(encrypted_key), jwe.enc.josekit(), &header)
            .map_err(|e| Failure::with_source("key unwrapping failed", e))?;
        Zeroizing::new(cek.into_owned())
    } else {
        rsa_oaep::decrypt(alg, key.pkey(), encrypted_key)
            .map_err(|e| Failure::with_source("key decryption failed", e))?
    };
    if cek.len() != jwe.enc.key_len() {
        return Err(Failure::new("unwrapped content key has the wrong length"));
    }
    jwe.enc
        .decrypt(&cek, &jwe.iv, &jwe.ciphertext, &jwe.aad, &jwe.tag)
}
