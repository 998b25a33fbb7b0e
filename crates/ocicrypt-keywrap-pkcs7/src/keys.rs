//! Private keys and certificates, read by the loader all schemes share
//! ([`ocicrypt_keywrap::keys`]); this module adds what pkcs7 needs of them.

use der::Decode;
use ocicrypt_keywrap::keys as loader;
use ocicrypt_keywrap::secrecy::SecretString;
use ocicrypt_keywrap::{CauseKind, Error, KeyFile, KeySearch, Loaded};
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

/// The private keys of one operation, for [`KeySearch`]: each read (and unlocked) at most
/// once, when the search first gets to it. A key that is not an RSA private key is
/// skipped; a password problem stops the search, as Go does.
pub(crate) fn key_search(files: &[KeyFile]) -> KeySearch<'_, PKey<Private>> {
    KeySearch::of_files(SCHEME, "private key", files, |file| {
        Ok(
            match parse_private_key(file.data().expose(), file.password())? {
                Ok(key) if key.id() == Id::RSA => Loaded::Key(key),
                Ok(_) => Loaded::Skip(CauseKind::Unsuitable("not an RSA key".to_owned())),
                Err(f) => Loaded::Skip(CauseKind::Unreadable(Box::new(f.private_key(SCHEME)))),
            },
        )
    })
    .limit(
        crate::MAX_UNWRAP_ATTEMPTS,
        "key and recipient pairs tried for one layer",
    )
}
