//! Private keys and certificates, read by the loader all schemes share
//! ([`ocicrypt_keywrap::keys`]); this module adds what pkcs7 needs of them.

use der::Decode;
use ocicrypt_keywrap::keys as loader;
use ocicrypt_keywrap::secrecy::SecretString;
use ocicrypt_keywrap::{Error, KeyFile, SecretBytes};
use openssl::pkey::{Id, PKey, Private, Public};
use x509_cert::Certificate;

use crate::{Failure, SCHEME};

/// A recipient certificate: OpenSSL's view (for the public key) and the `der` crate's (for
/// issuer and serial number, exactly as encoded in the certificate).
pub(crate) struct Cert {
    pub(crate) public_key: PKey<Public>,
    pub(crate) parsed: Certificate,
}

/// Parses a DER or PEM (first block, as in Go) X.509 certificate.
pub(crate) fn parse_certificate(data: &[u8]) -> Result<Cert, Failure> {
    let cert = loader::parse_certificate(data)?;
    let der = cert
        .x509()
        .to_der()
        .map_err(|e| Failure::with_source("cannot encode the certificate", e))?;
    let parsed = Certificate::from_der(&der)
        .map_err(|e| Failure::with_source("cannot parse the certificate", e))?;
    let public_key = cert.public_key()?;
    Ok(Cert { public_key, parsed })
}

/// Parses an RSA certificate for a recipient.
pub(crate) fn parse_recipient_certificate(data: &[u8]) -> Result<Cert, Failure> {
    let cert = parse_certificate(data)?;
    let id = cert.public_key.id();
    if id != Id::RSA {
        return Err(Failure::new(format!(
            "the certificate's public key is {}, but pkcs7 supports only RSA keys",
            key_type_name(id)
        )));
    }
    Ok(cert)
}

fn key_type_name(id: Id) -> String {
    match id {
        Id::EC => "an EC key".to_owned(),
        Id::ED25519 => "an Ed25519 key".to_owned(),
        Id::ED448 => "an Ed448 key".to_owned(),
        Id::DSA => "a DSA key".to_owned(),
        other => format!("of OpenSSL key type {}", other.as_raw()),
    }
}

/// Parses a private key with [`ocicrypt_keywrap::keys::parse_private_key`]: DER (PKCS#8,
/// PKCS#1, SEC1, encrypted PKCS#8), the first PEM block (legacy-encrypted and encrypted
/// PKCS#8 too) or a private JWK. The key type is not checked here.
///
/// # Errors
/// [`Error::MissingPassword`] / [`Error::WrongPassword`] for an encrypted key without or
/// with a wrong password; a [`Failure`] (wrapped in `Ok(Err(..))`) when `data` is not a
/// private key, so that the caller can skip it.
pub(crate) fn parse_private_key(
    data: &[u8],
    password: Option<&SecretString>,
) -> Result<Result<PKey<Private>, Failure>, Error> {
    Ok(loader::parse_private_key(SCHEME, data, password)?.map(loader::PrivateKey::into_pkey))
}

/// `files` with each password-protected key unlocked once, to be tried on several blobs:
/// a key that its password opens becomes its plain PKCS#8 DER (zeroized on drop) without
/// a password (and the same name), so that no blob derives the password again. Files without a password stay
/// as they are (reading them costs no key derivation), and so do files that are no key.
/// The first file with a password error stays too, with every file after it: the search
/// stops there for each blob that gets that far, as it would with the originals.
pub(crate) fn unlock_once(files: &[KeyFile]) -> Vec<KeyFile> {
    let mut out = Vec::with_capacity(files.len());
    let mut rest = files.iter();
    for file in rest.by_ref() {
        if file.password().is_none() {
            out.push(file.clone());
            continue;
        }
        match loader::parse_private_key(SCHEME, file.data().expose(), file.password()) {
            Ok(Ok(key)) => match key.pkey().private_key_to_pkcs8() {
                Ok(der) => {
                    let plain = KeyFile::new(SecretBytes::new(der));
                    out.push(match file.name() {
                        Some(name) => plain.named(name),
                        None => plain,
                    });
                }
                Err(_) => out.push(file.clone()),
            },
            Ok(Err(_)) => out.push(file.clone()),
            Err(_) => {
                out.push(file.clone());
                break;
            }
        }
    }
    out.extend(rest.cloned());
    out
}
