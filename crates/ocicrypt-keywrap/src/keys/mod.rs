//! Key files: the one loader and classifier of private keys, public keys and X.509
//! certificates for every scheme (feature `openssl`), following Go ocicrypt's
//! `utils.ParsePrivateKey`, `ParsePublicKey`, `ParseCertificate` and their `Is...`
//! classifiers, with a few documented extensions.
//!
//! What each reads, in the order tried:
//!
//! - [`parse_private_key`]: DER (PKCS#8 `PrivateKeyInfo`, PKCS#1 `RSAPrivateKey`, SEC1
//!   `ECPrivateKey`, and, an extension, a password-protected PKCS#8
//!   `EncryptedPrivateKeyInfo`); otherwise the first PEM block, as Go's `pem.Decode` finds
//!   it, whatever its label: legacy OpenSSL encryption (`Proc-Type: 4,ENCRYPTED` with
//!   `DEK-Info`) and, an extension, PKCS#8 `ENCRYPTED PRIVATE KEY` (PBES2) need the
//!   password, and the body may be any of the DER forms (Go does not read SEC1 in PEM,
//!   `EC PRIVATE KEY`; this loader does); otherwise a private JWK (`RSA` or `EC`).
//! - [`parse_public_key`]: DER SubjectPublicKeyInfo or, an extension, PKCS#1
//!   `RSAPublicKey`; otherwise the first PEM block holding either; otherwise a public JWK.
//! - [`parse_certificate`]: DER X.509, otherwise the first PEM block.
//!
//! The key's type is not checked here: a scheme checks that it can use the key (RSA only,
//! some curves only, a minimum size). PKCS#11 key files (YAML) and OpenPGP keys are the
//! business of their schemes.
//!
//! Nothing here prompts for a password, logs, or shows key material: `Debug` of the keys
//! names their type only, and OpenSSL wipes its keys when they are dropped.
//!
//! ```
//! use ocicrypt_keywrap::keys;
//! use ocicrypt_keywrap::secrecy::SecretString;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rsa = openssl::rsa::Rsa::generate(2048)?;
//! let cipher = openssl::symm::Cipher::aes_256_cbc();
//! let pem = rsa.private_key_to_pem_passphrase(cipher, b"secret")?;
//!
//! // An encrypted key is a private key even without its password ...
//! assert!(keys::is_private_key(&pem));
//! // ... and opens with it. (A scheme that does not skip keys makes the inner failure an
//! // error of its own.)
//! let password = SecretString::from("secret");
//! let key = keys::parse_private_key("jwe", &pem, Some(&password))?
//!     .map_err(|failure| failure.private_key("jwe"))?;
//! assert_eq!(key.pkey().bits(), 2048);
//! // Without it: an error that stops the key search, not a key to skip.
//! let err = keys::parse_private_key("jwe", &pem, None).unwrap_err();
//! assert!(err.is_password_error());
//! // Not a key at all: the inner error, a reason to skip this key.
//! assert!(keys::parse_private_key("jwe", b"junk", None)?.is_err());
//!
//! assert!(keys::is_public_key(&rsa.public_key_to_pem()?));
//! # Ok(())
//! # }
//! ```

mod encrypted;
mod jwk;

pub use self::jwk::B64URL;
mod pem;
#[cfg(test)]
mod tests;

use std::fmt;

use openssl::pkey::{Id, PKey, Private, Public};
use openssl::rsa::Rsa;
use openssl::x509::X509;
use secrecy::SecretString;

use self::encrypted::{encrypted_pem, encrypted_pkcs8_der};
use self::jwk::JwkKey;
use crate::{Error, Failure};

/// A private key read by [`parse_private_key`]: any key type OpenSSL knows.
///
/// `Debug` shows the key's type and JWK `kid` only; OpenSSL wipes the key when it is
/// dropped.
pub struct PrivateKey {
    key: PKey<Private>,
    jwk: bool,
    kid: Option<String>,
}

impl PrivateKey {
    /// The OpenSSL key.
    pub fn pkey(&self) -> &PKey<Private> {
        &self.key
    }

    /// The OpenSSL key, taken out.
    pub fn into_pkey(self) -> PKey<Private> {
        self.key
    }

    /// Whether the key was given as a JWK.
    pub fn is_jwk(&self) -> bool {
        self.jwk
    }

    /// The JWK's `kid` member, if the key was a JWK that has one.
    pub fn key_id(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("type", &KeyType(self.key.id()))
            .field("bits", &self.key.bits())
            .field("jwk", &self.jwk)
            .field("key_id", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A public key read by [`parse_public_key`]: any key type OpenSSL knows, with the `alg`
/// and `kid` members when it was a JWK.
pub struct PublicKey {
    key: PKey<Public>,
    jwk: Option<JwkMembers>,
}

/// The members of a public JWK that say how to use it.
#[derive(Clone, Debug, Default)]
struct JwkMembers {
    alg: Option<String>,
    kid: Option<String>,
}

impl PublicKey {
    /// The OpenSSL key.
    pub fn pkey(&self) -> &PKey<Public> {
        &self.key
    }

    /// The OpenSSL key, taken out.
    pub fn into_pkey(self) -> PKey<Public> {
        self.key
    }

    /// Whether the key was given as a JWK.
    pub fn is_jwk(&self) -> bool {
        self.jwk.is_some()
    }

    /// The JWK's `alg` member, if the key is a JWK that has one.
    pub fn jwk_algorithm(&self) -> Option<&str> {
        self.jwk.as_ref().and_then(|j| j.alg.as_deref())
    }

    /// The JWK's `kid` member, if the key is a JWK that has one.
    pub fn key_id(&self) -> Option<&str> {
        self.jwk.as_ref().and_then(|j| j.kid.as_deref())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("type", &KeyType(self.key.id()))
            .field("bits", &self.key.bits())
            .field("jwk_algorithm", &self.jwk_algorithm())
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// An X.509 certificate read by [`parse_certificate`].
#[derive(Clone)]
pub struct Certificate {
    x509: X509,
}

impl Certificate {
    /// The OpenSSL certificate.
    pub fn x509(&self) -> &X509 {
        &self.x509
    }

    /// The OpenSSL certificate, taken out.
    pub fn into_x509(self) -> X509 {
        self.x509
    }

    /// The certificate's public key.
    ///
    /// # Errors
    /// A [`Failure`] when OpenSSL cannot read the key (an algorithm it does not know).
    pub fn public_key(&self) -> Result<PKey<Public>, Failure> {
        self.x509
            .public_key()
            .map_err(|e| Failure::with_source("cannot read the certificate's public key", e))
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", self.x509.subject_name())
            .finish_non_exhaustive()
    }
}

/// The name of an OpenSSL key type, for `Debug` and messages.
struct KeyType(Id);

impl fmt::Debug for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Id::RSA => f.write_str("RSA"),
            Id::EC => f.write_str("EC"),
            Id::ED25519 => f.write_str("Ed25519"),
            Id::ED448 => f.write_str("Ed448"),
            Id::X25519 => f.write_str("X25519"),
            Id::X448 => f.write_str("X448"),
            Id::DSA => f.write_str("DSA"),
            Id::DH => f.write_str("DH"),
            other => write!(f, "Id({})", other.as_raw()),
        }
    }
}

/// Reads a private key, with `password` if it is encrypted (a password given for a key
/// that is not encrypted is ignored, as in Go). See the [module documentation](self) for
/// the forms read.
///
/// The outcome is one of three:
///
/// - `Ok(Ok(key))`: the key;
/// - `Ok(Err(failure))`: `data` is not a private key this loader reads (a public key, a
///   certificate, a JWK of another type, junk): a scheme trying keys in turn skips it, and
///   the failure says why;
/// - `Err(error)`: the key is encrypted and `password` does not open it. Go ocicrypt stops
///   the search for a key there, and so do the schemes.
///
/// # Errors
/// [`Error::MissingPassword`] for an encrypted key without `password`,
/// [`Error::WrongPassword`] when `password` does not decrypt it; both carry `scheme`.
pub fn parse_private_key(
    scheme: &str,
    data: &[u8],
    password: Option<&SecretString>,
) -> Result<Result<PrivateKey, Failure>, Error> {
    if let Ok(key) = PKey::private_key_from_der(data) {
        return Ok(Ok(plain(key)));
    }
    if let Some(key) = encrypted_pkcs8_der(scheme, data, password)? {
        return Ok(Ok(plain(key)));
    }
    if let Some(block) = pem::first_block(data) {
        if block.is_encrypted() {
            return encrypted_pem(scheme, &block.text, password).map(|key| Ok(plain(key)));
        }
        return Ok(PKey::private_key_from_der(&block.der)
            .map(plain)
            .map_err(|e| {
                Failure::with_source(
                    format!("PEM block {:?} does not hold a private key", block.label),
                    e,
                )
            }));
    }
    if jwk::looks_like_json(data) {
        return Ok(jwk::parse(data).and_then(|jwk| match jwk.key {
            JwkKey::Private(key) => Ok(PrivateKey {
                key,
                jwk: true,
                kid: jwk.kid,
            }),
            JwkKey::Public(_) => Err(Failure::new("JWK is not a private key")),
        }));
    }
    Ok(Err(Failure::new("not a PEM, DER or JWK private key")))
}

fn plain(key: PKey<Private>) -> PrivateKey {
    PrivateKey {
        key,
        jwk: false,
        kid: None,
    }
}

/// Reads a public key. See the [module documentation](self) for the forms read.
///
/// # Errors
/// A [`Failure`] saying why `data` is not a public key this loader reads.
pub fn parse_public_key(data: &[u8]) -> Result<PublicKey, Failure> {
    let key = |key| PublicKey { key, jwk: None };
    if let Some(k) = public_from_der(data) {
        return Ok(key(k));
    }
    if let Some(block) = pem::first_block(data) {
        return public_from_der(&block.der).map(key).ok_or_else(|| {
            Failure::new(format!(
                "PEM block {:?} does not hold a public key",
                block.label
            ))
        });
    }
    if jwk::looks_like_json(data) {
        let jwk = jwk::parse(data)?;
        let JwkKey::Public(k) = jwk.key else {
            return Err(Failure::new("JWK is not a public key"));
        };
        return Ok(PublicKey {
            key: k,
            jwk: Some(JwkMembers {
                alg: jwk.alg,
                kid: jwk.kid,
            }),
        });
    }
    Err(Failure::new("not a PEM, DER or JWK public key"))
}

/// DER SubjectPublicKeyInfo, then DER PKCS#1 `RSAPublicKey`.
fn public_from_der(der: &[u8]) -> Option<PKey<Public>> {
    PKey::public_key_from_der(der).ok().or_else(|| {
        Rsa::public_key_from_der_pkcs1(der)
            .ok()
            .and_then(|rsa| PKey::from_rsa(rsa).ok())
    })
}

/// Reads an X.509 certificate: DER, otherwise the first PEM block (whatever its label, as
/// in Go).
///
/// # Errors
/// A [`Failure`] when `data` is neither.
pub fn parse_certificate(data: &[u8]) -> Result<Certificate, Failure> {
    X509::from_der(data)
        .or_else(|e| match pem::first_block(data) {
            Some(block) => X509::from_der(&block.der),
            None => Err(e),
        })
        .map(|x509| Certificate { x509 })
        .map_err(|e| Failure::with_source("not a PEM or DER X.509 certificate", e))
}

/// Whether `data` is a private key [`parse_private_key`] reads, encrypted ones included
/// (whose password is not known here), as Go's `IsPrivateKey` answers. Keys of any type
/// count, whether a scheme can use them or not; certificates, public keys and OpenPGP
/// keys do not.
pub fn is_private_key(data: &[u8]) -> bool {
    match parse_private_key("", data, None) {
        Ok(Ok(_)) | Err(Error::MissingPassword { .. }) => true,
        Ok(Err(_)) | Err(_) => false,
    }
}

/// Whether `data` is a public key [`parse_public_key`] reads, of any type.
pub fn is_public_key(data: &[u8]) -> bool {
    parse_public_key(data).is_ok()
}

/// Whether `data` is an X.509 certificate [`parse_certificate`] reads.
pub fn is_certificate(data: &[u8]) -> bool {
    parse_certificate(data).is_ok()
}
