//! Descriptor annotation keys and the comma-separated lists of wrapped keys they carry.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::Error;

/// Prefix shared by every annotation this format defines.
pub const ENC_PREFIX: &str = "org.opencontainers.image.enc.";

/// Base64 of the public options JSON (cipher name and HMAC).
pub const PUBOPTS: &str = "org.opencontainers.image.enc.pubopts";

/// Prefix of the wrapped-key annotations; the scheme name follows it.
pub const KEYS_PREFIX: &str = "org.opencontainers.image.enc.keys.";

/// Wrapped keys of the `jwe` scheme.
pub const KEYS_JWE: &str = "org.opencontainers.image.enc.keys.jwe";

/// Wrapped keys of the `pkcs7` scheme.
pub const KEYS_PKCS7: &str = "org.opencontainers.image.enc.keys.pkcs7";

/// Wrapped keys of the `pgp` scheme.
pub const KEYS_PGP: &str = "org.opencontainers.image.enc.keys.pgp";

/// Wrapped keys of the `pkcs11` scheme.
pub const KEYS_PKCS11: &str = "org.opencontainers.image.enc.keys.pkcs11";

/// Prefix of a key provider's wrapped keys; the provider's configured name follows it.
pub const KEYS_PROVIDER_PREFIX: &str = "org.opencontainers.image.enc.keys.provider.";

/// The annotation key that carries wrapped keys of `scheme` (`jwe`, `provider.kms`, ...).
pub fn keys_annotation(scheme: &str) -> String {
    format!("{KEYS_PREFIX}{scheme}")
}

/// The scheme of a wrapped-keys annotation key, or `None` if `key` is not one.
pub fn scheme_of(key: &str) -> Option<&str> {
    key.strip_prefix(KEYS_PREFIX).filter(|s| !s.is_empty())
}

/// Whether `key` is one of this format's annotations (it starts with [`ENC_PREFIX`]).
pub fn is_encryption_annotation(key: &str) -> bool {
    key.starts_with(ENC_PREFIX)
}

/// A copy of `annotations` without this format's keys (Go's `FilterOutAnnotations`).
pub fn filter_out(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations
        .iter()
        .filter(|(k, _)| !is_encryption_annotation(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The most wrapped keys (base64 blobs) that [`split_blobs`] accepts in one annotation.
///
/// Annotations are attacker input: every blob is handed to a scheme that parses it and may
/// try a private key on it, so their number bounds the work a descriptor can ask for. Go
/// ocicrypt has no such limit; a layer gets one blob per `encrypt` call that adds
/// recipients (each blob usually names every recipient of that call), so real images carry
/// a handful. 1024 is far above any real image.
pub const MAX_WRAPPED_KEYS: usize = 1024;

/// Decodes a wrapped-keys annotation value: standard base64 blobs joined by `,`.
///
/// `key` names the annotation in the error. Empty entries (as in `a,,b` or an empty value)
/// are skipped, as Go's decoder yields nothing for them.
///
/// # Errors
/// [`Error::TooManyWrappedKeys`] if there are more than [`MAX_WRAPPED_KEYS`] entries
/// (checked before any is decoded); [`Error::Base64`] if any entry is not standard base64.
pub fn split_blobs(key: &str, value: &str) -> Result<Vec<Vec<u8>>, Error> {
    let entries = || value.split(',').filter(|b| !b.is_empty());
    if entries().nth(MAX_WRAPPED_KEYS).is_some() {
        return Err(Error::TooManyWrappedKeys {
            annotation: key.to_owned(),
            limit: MAX_WRAPPED_KEYS,
        });
    }
    value
        .split(',')
        .filter(|b| !b.is_empty())
        .map(|b| {
            STANDARD.decode(b).map_err(|source| Error::Base64 {
                what: format!("annotation {key}"),
                source,
            })
        })
        .collect()
}

/// Encodes one wrapped-keys blob as standard base64 with padding.
pub fn encode_blob(blob: &[u8]) -> String {
    STANDARD.encode(blob)
}

/// Appends `blob` to an existing annotation value (or starts one), as Go does when
/// recipients are added to an already encrypted layer.
pub fn append_blob(existing: Option<&str>, blob: &[u8]) -> String {
    match existing {
        Some(e) if !e.is_empty() => format!("{e},{}", encode_blob(blob)),
        _ => encode_blob(blob),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_names() {
        assert_eq!(keys_annotation("pgp"), KEYS_PGP);
        assert_eq!(scheme_of(KEYS_PKCS11), Some("pkcs11"));
        assert_eq!(
            scheme_of("org.opencontainers.image.enc.keys.provider.kms"),
            Some("provider.kms")
        );
        assert_eq!(scheme_of(PUBOPTS), None);
        assert_eq!(scheme_of(KEYS_PREFIX), None);
    }

    #[test]
    fn blobs_round_trip_and_append() {
        let v = append_blob(None, b"one");
        let v = append_blob(Some(&v), b"two\xff");
        assert_eq!(v, "b25l,dHdv/w==");
        assert_eq!(
            split_blobs(KEYS_JWE, &v).unwrap(),
            vec![b"one".to_vec(), b"two\xff".to_vec()]
        );
        assert!(split_blobs(KEYS_JWE, "").unwrap().is_empty());
    }

    #[test]
    fn corrupt_base64_names_the_annotation() {
        let err = split_blobs(KEYS_JWE, "b25l,***").unwrap_err();
        assert!(err.to_string().contains(KEYS_JWE), "{err}");
    }

    #[test]
    fn wrapped_keys_are_capped() {
        let at_cap = vec!["AA=="; MAX_WRAPPED_KEYS].join(",");
        assert_eq!(
            split_blobs(KEYS_PGP, &at_cap).unwrap().len(),
            MAX_WRAPPED_KEYS
        );
        // Empty entries do not count.
        let with_empties = format!(",,{at_cap},,");
        assert_eq!(
            split_blobs(KEYS_PGP, &with_empties).unwrap().len(),
            MAX_WRAPPED_KEYS
        );
        // One more is rejected, before any entry is decoded (the extra one is not base64).
        let over = format!("{at_cap},***");
        let err = split_blobs(KEYS_PGP, &over).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::TooManyWrappedKeys { annotation, limit }
                    if annotation == KEYS_PGP && *limit == MAX_WRAPPED_KEYS
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("1024"), "{err}");
        assert!(err.to_string().contains(KEYS_PGP), "{err}");
        // A huge annotation is rejected quickly.
        let huge = vec!["AA=="; 200_000].join(",");
        assert!(matches!(
            split_blobs(KEYS_JWE, &huge),
            Err(Error::TooManyWrappedKeys { .. })
        ));
    }

    #[test]
    fn filter_keeps_foreign_annotations() {
        let mut m = BTreeMap::new();
        m.insert(PUBOPTS.to_owned(), "x".to_owned());
        m.insert(KEYS_JWE.to_owned(), "y".to_owned());
        m.insert("org.opencontainers.image.title".to_owned(), "z".to_owned());
        let f = filter_out(&m);
        assert_eq!(f.len(), 1);
        assert!(f.contains_key("org.opencontainers.image.title"));
    }
}
