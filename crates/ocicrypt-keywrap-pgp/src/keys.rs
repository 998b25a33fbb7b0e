//! Certificates: parsing keyrings, picking recipients, classifying key files.

use ocicrypt_keywrap::Error;
use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::cert::{CertParser, Preferences};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::types::SymmetricAlgorithm;

use crate::{SCHEME, invalid_recipient};

/// The policy keys and messages are checked against.
pub(crate) fn policy() -> StandardPolicy<'static> {
    StandardPolicy::new()
}

/// A recipient certificate and how to name it in errors.
#[derive(Debug)]
pub(crate) struct Recipient {
    pub(crate) cert: Cert,
    /// The recipient string that selected it.
    pub(crate) name: String,
}

/// Every certificate in `data`: one or more certificates or TSKs, binary or ASCII-armored.
pub(crate) fn parse_certs(data: &[u8]) -> openpgp::Result<Vec<Cert>> {
    CertParser::from_bytes(data)?.collect()
}

/// Fingerprints (uppercase hex) of every certificate in a public key file, binary or
/// ASCII-armored (the CLI uses them to name `pgp:FILE` recipients).
///
/// # Errors
/// [`Error::InvalidRecipient`] if `data` is not one or more OpenPGP certificates.
pub fn cert_fingerprints(data: &[u8]) -> Result<Vec<String>, Error> {
    let certs = parse_certs(data)
        .map_err(|e| invalid_recipient("not an OpenPGP public key", Some(e.into())))?;
    if certs.is_empty() {
        return Err(invalid_recipient("no OpenPGP certificate found", None));
    }
    Ok(certs.iter().map(|c| c.fingerprint().to_hex()).collect())
}

/// The certificates in a public key file (binary or ASCII-armored) as a binary keyring,
/// public parts only, so that several files can be concatenated into one keyring (the CLI
/// does this for `pgp:FILE` recipients).
///
/// # Errors
/// [`Error::InvalidRecipient`] if `data` is not one or more OpenPGP certificates.
pub fn to_binary_keyring(data: &[u8]) -> Result<Vec<u8>, Error> {
    use openpgp::serialize::Serialize as _;
    let certs = parse_certs(data)
        .map_err(|e| invalid_recipient("not an OpenPGP public key", Some(e.into())))?;
    if certs.is_empty() {
        return Err(invalid_recipient("no OpenPGP certificate found", None));
    }
    let mut out = Vec::new();
    for cert in &certs {
        cert.serialize(&mut out)
            .map_err(|e| invalid_recipient("cannot re-serialize a certificate", Some(e.into())))?;
    }
    Ok(out)
}

/// Whether `data` (binary or ASCII-armored) is one or more OpenPGP keys of which at least
/// one has secret key material, i.e. something to decrypt with.
pub fn is_secret_key(data: &[u8]) -> bool {
    matches!(parse_certs(data), Ok(certs) if certs.iter().any(Cert::is_tsk))
}

/// Whether `data` (binary or ASCII-armored) is one or more OpenPGP certificates without
/// any secret key material.
pub fn is_public_key(data: &[u8]) -> bool {
    matches!(parse_certs(data), Ok(certs) if !certs.is_empty() && !certs.iter().any(Cert::is_tsk))
}

/// `s` as a fingerprint or key id: hex, optional `0x`, any case, spaces ignored.
fn as_key_handle(s: &str) -> Option<openpgp::KeyHandle> {
    let hex: String = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s)
        .chars()
        .filter(|c| *c != ' ')
        .collect();
    if !matches!(hex.len(), 16 | 40 | 64) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    hex.parse().ok()
}

/// Whether `recipient` names `cert`: the name or e-mail address of one of its User IDs
/// (exactly, as Go compares the parts of RFC 5322 addresses), or the fingerprint or key id
/// of its primary key or a subkey.
fn matches(cert: &Cert, recipient: &str) -> bool {
    let by_uid = cert.userids().any(|u| {
        let uid = u.userid();
        uid.name().ok().flatten() == Some(recipient)
            || uid.email().ok().flatten() == Some(recipient)
    });
    by_uid
        || as_key_handle(recipient)
            .is_some_and(|h| cert.keys().any(|k| k.key().key_handle().aliases(&h)))
}

/// The certificates in `keyring` named by `recipients`, each once. Every recipient must
/// name at least one certificate.
pub(crate) fn select_recipients(
    keyring: &[u8],
    recipients: &[String],
) -> Result<Vec<Recipient>, Error> {
    let certs = if keyring.is_empty() {
        Vec::new()
    } else {
        parse_certs(keyring).map_err(|e| {
            invalid_recipient("cannot read the OpenPGP public keyring", Some(e.into()))
        })?
    };
    let mut unmatched = Vec::new();
    let mut selected: Vec<Recipient> = Vec::new();
    for r in recipients {
        let mut found = false;
        for cert in certs.iter().filter(|c| matches(c, r)) {
            found = true;
            if !selected
                .iter()
                .any(|s| s.cert.fingerprint() == cert.fingerprint())
            {
                selected.push(Recipient {
                    cert: cert.clone(),
                    name: r.clone(),
                });
            }
        }
        if !found && !unmatched.contains(&r.as_str()) {
            unmatched.push(r.as_str());
        }
    }
    if !unmatched.is_empty() {
        return Err(Error::InvalidRecipient {
            scheme: SCHEME.to_owned(),
            reason: format!(
                "no key found for the following recipients: {}",
                unmatched.join(", ")
            ),
            source: None,
        });
    }
    Ok(selected)
}

/// AES-256 unless a recipient's preferences leave it out, then AES-128 (which every OpenPGP
/// implementation must support), like Go's choice with its default AES-256. The preferences
/// are those on the primary User ID's binding signature (where GnuPG and Go keep them) and on
/// the direct key signature, if any; every list present must include AES-256.
pub(crate) fn cipher_for(recipients: &[Recipient]) -> SymmetricAlgorithm {
    let policy = policy();
    let aes256_ok = recipients.iter().all(|r| {
        let Ok(vc) = r.cert.with_policy(&policy, None) else {
            return true;
        };
        let by_uid = vc
            .primary_userid()
            .ok()
            .and_then(|u| u.preferred_symmetric_algorithms());
        let direct = vc
            .direct_key_signature()
            .ok()
            .and_then(|s| s.preferred_symmetric_algorithms());
        [by_uid, direct]
            .into_iter()
            .flatten()
            .all(|prefs| prefs.contains(&SymmetricAlgorithm::AES256))
    });
    if aes256_ok {
        SymmetricAlgorithm::AES256
    } else {
        SymmetricAlgorithm::AES128
    }
}
