//! Reading private keys and certificates with OpenSSL.

use der::Decode;
use ocicrypt_keywrap::Error;
use ocicrypt_keywrap::openssl_keys::{encrypted_pem, encrypted_pkcs8_der};
use ocicrypt_keywrap::secrecy::SecretString;
use openssl::error::ErrorStack;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::x509::X509;
use x509_cert::Certificate;

use crate::{Failure, SCHEME};

/// A recipient certificate: OpenSSL's view (for the public key) and the `der` crate's (for
/// issuer and serial number, exactly as encoded in the certificate).
pub(crate) struct Cert {
    pub(crate) public_key: PKey<Public>,
    pub(crate) parsed: Certificate,
}

/// Parses a DER or PEM (first block) X.509 certificate.
pub(crate) fn parse_certificate(data: &[u8]) -> Result<Cert, Failure> {
    let x509 = X509::from_der(data)
        .or_else(|_| X509::from_pem(data))
        .map_err(|e| Failure::with_source("not a PEM or DER X.509 certificate", e))?;
    let der = x509
        .to_der()
        .map_err(|e| Failure::with_source("cannot encode the certificate", e))?;
    let parsed = Certificate::from_der(&der)
        .map_err(|e| Failure::with_source("cannot parse the certificate", e))?;
    let public_key = x509
        .public_key()
        .map_err(|e| Failure::with_source("cannot read the certificate's public key", e))?;
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

/// Whether a PEM text holds an encrypted private key (legacy `Proc-Type: 4,ENCRYPTED` or
/// PKCS#8 `ENCRYPTED PRIVATE KEY`).
fn is_encrypted_pem(data: &[u8]) -> bool {
    let contains = |needle: &[u8]| data.windows(needle.len()).any(|w| w == needle);
    contains(b"Proc-Type: 4,ENCRYPTED") || contains(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
}

/// Parses a private key: DER PKCS#8 or PKCS#1, DER PKCS#8 `EncryptedPrivateKeyInfo`, or PEM
/// of any of those (legacy-encrypted PEM too). The key type is not checked here.
///
/// # Errors
/// [`Error::MissingPassword`] / [`Error::WrongPassword`] for an encrypted key without or
/// with a wrong password; a [`Failure`] (wrapped in `Ok(Err(..))`) when `data` is not a
/// private key, so that the caller can skip it.
pub(crate) fn parse_private_key(
    data: &[u8],
    password: Option<&SecretString>,
) -> Result<Result<PKey<Private>, Failure>, Error> {
    if let Ok(key) = PKey::private_key_from_der(data) {
        return Ok(Ok(key));
    }
    if let Some(key) = encrypted_pkcs8_der(SCHEME, data, password)? {
        return Ok(Ok(key));
    }
    if is_encrypted_pem(data) {
        return encrypted_pem(SCHEME, data, password).map(Ok);
    }
    // A callback that refuses, so that OpenSSL never prompts on a terminal.
    Ok(
        PKey::private_key_from_pem_callback(data, |_| Err(ErrorStack::get()))
            .map_err(|e| Failure::with_source("not a PEM or DER private key", e)),
    )
}
