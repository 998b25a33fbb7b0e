//! The keys the `jwe` scheme uses: the key files are read by the shared loader,
//! [`ocicrypt_keywrap::keys`] (which follows Go ocicrypt's `utils.ParsePublicKey` and
//! `utils.ParsePrivateKey`, with a few documented extensions); this module checks that JWE
//! can use them and picks the key-management algorithm.

use std::fmt;

use ocicrypt_keywrap::Error;
use ocicrypt_keywrap::keys as loader;
pub use ocicrypt_keywrap::keys::{is_private_key, is_public_key};
use ocicrypt_keywrap::secrecy::SecretString;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private, Public};
use zeroize::Zeroizing;

use crate::{Failure, SCHEME};

/// The smallest RSA modulus accepted, in bits (Go's `crypto/rsa` minimum).
pub const MIN_RSA_BITS: u32 = 1024;

/// An elliptic curve usable with `ECDH-ES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Curve {
    /// NIST P-256 (`prime256v1`).
    P256,
    /// NIST P-384 (`secp384r1`).
    P384,
    /// NIST P-521 (`secp521r1`).
    P521,
}

impl Curve {
    /// The JOSE name (`P-256`, `P-384`, `P-521`).
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }
}

/// What kind of key a [`PublicKey`] or [`PrivateKey`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// An RSA key with a modulus of `bits` bits.
    Rsa {
        /// The modulus size.
        bits: u32,
    },
    /// An elliptic-curve key.
    Ec(Curve),
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
            Self::Ec(curve) => write!(f, "EC {}", curve.name()),
        }
    }
}

/// A JWE key-management algorithm (`alg`) this crate wraps and unwraps with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// `RSA-OAEP`: RSAES-OAEP with SHA-1 and MGF1-SHA-1 (Go's default for RSA keys).
    RsaOaep,
    /// `RSA-OAEP-256`: RSAES-OAEP with SHA-256 and MGF1-SHA-256.
    RsaOaep256,
    /// `ECDH-ES+A128KW`.
    EcdhEsA128kw,
    /// `ECDH-ES+A192KW`.
    EcdhEsA192kw,
    /// `ECDH-ES+A256KW` (Go's default for EC keys).
    EcdhEsA256kw,
}

impl KeyAlgorithm {
    /// Every algorithm, in the order Go ocicrypt lists them.
    pub const ALL: [Self; 5] = [
        Self::RsaOaep,
        Self::RsaOaep256,
        Self::EcdhEsA128kw,
        Self::EcdhEsA192kw,
        Self::EcdhEsA256kw,
    ];

    /// The JOSE name (`RSA-OAEP`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::RsaOaep => "RSA-OAEP",
            Self::RsaOaep256 => "RSA-OAEP-256",
            Self::EcdhEsA128kw => "ECDH-ES+A128KW",
            Self::EcdhEsA192kw => "ECDH-ES+A192KW",
            Self::EcdhEsA256kw => "ECDH-ES+A256KW",
        }
    }

    /// The algorithm with this JOSE name, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether this algorithm needs an RSA key (otherwise an EC key).
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::RsaOaep | Self::RsaOaep256)
    }

    /// Whether a key of `kind` can be used with this algorithm.
    pub fn fits(self, kind: KeyKind) -> bool {
        match kind {
            KeyKind::Rsa { .. } => self.is_rsa(),
            KeyKind::Ec(_) => !self.is_rsa(),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A recipient's public key.
pub struct PublicKey {
    key: loader::PublicKey,
    kind: KeyKind,
}

impl PublicKey {
    /// The key's type and size.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Whether the key was given as a JWK.
    pub fn is_jwk(&self) -> bool {
        self.key.is_jwk()
    }

    /// The JWK's `alg` member, if the key is a JWK that has one.
    pub fn jwk_algorithm(&self) -> Option<&str> {
        self.key.jwk_algorithm()
    }

    /// The JWK's `kid` member, if the key is a JWK that has one.
    pub fn key_id(&self) -> Option<&str> {
        self.key.key_id()
    }

    /// The algorithm the key is wrapped with: `RSA-OAEP` for RSA keys, `ECDH-ES+A256KW` for
    /// EC keys, and a JWK's own `alg` when it has one.
    ///
    /// A JWK without `alg` gets its key type's default. (Go ocicrypt picks `RSA-OAEP` for
    /// every JWK without `alg`, so it cannot use an EC JWK without `alg`; this crate can.)
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] for a JWK `alg` that is not one of
    /// [`KeyAlgorithm::ALL`]; [`Error::InvalidRecipient`] if `alg` does not fit the key type.
    pub fn key_algorithm(&self) -> Result<KeyAlgorithm, Error> {
        let Some(name) = self.jwk_algorithm() else {
            return Ok(match self.kind {
                KeyKind::Rsa { .. } => KeyAlgorithm::RsaOaep,
                KeyKind::Ec(_) => KeyAlgorithm::EcdhEsA256kw,
            });
        };
        let alg = KeyAlgorithm::from_name(name).ok_or_else(|| Error::UnsupportedAlgorithm {
            scheme: SCHEME.to_owned(),
            algorithm: name.to_owned(),
        })?;
        if !alg.fits(self.kind) {
            return Err(Failure::new(format!(
                "JWK algorithm {alg} cannot be used with a {} key",
                self.kind
            ))
            .recipient(SCHEME));
        }
        Ok(alg)
    }

    /// The key as DER SubjectPublicKeyInfo.
    ///
    /// # Errors
    /// [`Error::Backend`] if OpenSSL cannot encode it.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, Error> {
        self.key
            .pkey()
            .public_key_to_der()
            .map_err(|e| crate::backend("encoding a public key", e))
    }

    pub(crate) fn pkey(&self) -> &PKey<Public> {
        self.key.pkey()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kind", &self.kind)
            .field("jwk_algorithm", &self.jwk_algorithm())
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// A private key that can unwrap JWE keys. OpenSSL wipes the key material when it is
/// dropped; `Debug` shows only the key's kind.
pub struct PrivateKey {
    key: PKey<Private>,
    kind: KeyKind,
    kid: Option<String>,
}

impl PrivateKey {
    /// The key's type and size.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The JWK's `kid` member, if the key was a JWK that has one.
    pub fn key_id(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The matching public key (not a JWK: it has no `alg` or `kid`).
    ///
    /// # Errors
    /// [`Error::Backend`] if OpenSSL cannot convert the key.
    pub fn public_key(&self) -> Result<PublicKey, Error> {
        let der = self
            .key
            .public_key_to_der()
            .map_err(|e| crate::backend("encoding a public key", e))?;
        let key = loader::parse_public_key(&der)
            .map_err(|f| crate::backend("decoding a public key", f.to_string()))?;
        Ok(PublicKey {
            key,
            kind: self.kind,
        })
    }

    pub(crate) fn pkey(&self) -> &PKey<Private> {
        &self.key
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("kind", &self.kind)
            .field("key_id", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The kind of an OpenSSL key, or why it cannot be used with JWE.
fn kind_of<T: HasPublic>(key: &PKeyRef<T>) -> Result<KeyKind, Failure> {
    match key.id() {
        Id::RSA => {
            let bits = key.bits();
            if bits < MIN_RSA_BITS {
                return Err(Failure::new(format!(
                    "RSA key of {bits} bits is too small (minimum {MIN_RSA_BITS})"
                )));
            }
            Ok(KeyKind::Rsa { bits })
        }
        Id::EC => {
            let ec = key
                .ec_key()
                .map_err(|e| Failure::with_source("invalid EC key", e))?;
            match ec.group().curve_name() {
                Some(Nid::X9_62_PRIME256V1) => Ok(KeyKind::Ec(Curve::P256)),
                Some(Nid::SECP384R1) => Ok(KeyKind::Ec(Curve::P384)),
                Some(Nid::SECP521R1) => Ok(KeyKind::Ec(Curve::P521)),
                _ => Err(Failure::new(
                    "EC key is not on a supported curve (P-256, P-384, P-521)",
                )),
            }
        }
        _ => Err(Failure::new(
            "key type is not supported by JWE (only RSA and EC P-256/P-384/P-521 keys)",
        )),
    }
}

/// Parses a recipient's public key with the shared loader
/// ([`ocicrypt_keywrap::keys::parse_public_key`]): DER or PEM SubjectPublicKeyInfo (any PEM
/// label, as in Go), DER or PEM PKCS#1 `RSA PUBLIC KEY` (an extension: Go rejects those),
/// or a public JWK (RSA or EC) with optional `alg` and `kid`. Only RSA (at least
/// [`MIN_RSA_BITS`] bits) and EC P-256/P-384/P-521 keys are accepted.
///
/// # Errors
/// [`Error::InvalidRecipient`] when `data` is none of those, or the key type is not
/// supported.
pub fn parse_public_key(data: &[u8]) -> Result<PublicKey, Error> {
    let key = loader::parse_public_key(data).map_err(|f| f.recipient(SCHEME))?;
    let kind = kind_of(key.pkey()).map_err(|f| f.recipient(SCHEME))?;
    Ok(PublicKey { key, kind })
}

/// Parses a private key with the shared loader
/// ([`ocicrypt_keywrap::keys::parse_private_key`]), as Go ocicrypt's
/// `utils.ParsePrivateKey` does:
///
/// 1. DER: PKCS#8 `PrivateKeyInfo`, PKCS#1 `RSAPrivateKey` or SEC1 `ECPrivateKey`, and
///    (an extension) a password-protected PKCS#8 `EncryptedPrivateKeyInfo`;
/// 2. otherwise the first PEM block: legacy OpenSSL encryption (`Proc-Type: 4,ENCRYPTED`
///    with `DEK-Info`) and PKCS#8 `ENCRYPTED PRIVATE KEY` (PBES2; an extension) need
///    `password`; the body may be any of the DER forms above (Go does not accept SEC1 in
///    PEM, i.e. `EC PRIVATE KEY`; this crate does);
/// 3. otherwise a private JWK (RSA or EC).
///
/// # Errors
/// [`Error::MissingPassword`] for an encrypted key without `password`,
/// [`Error::WrongPassword`] when `password` does not decrypt it, and
/// [`Error::InvalidPrivateKey`] when `data` is not a private key or not one JWE can use.
pub fn parse_private_key(
    data: &[u8],
    password: Option<&SecretString>,
) -> Result<PrivateKey, Error> {
    let key =
        loader::parse_private_key(SCHEME, data, password)?.map_err(|f| f.private_key(SCHEME))?;
    let kind = kind_of(key.pkey()).map_err(|f| f.private_key(SCHEME))?;
    let kid = key.key_id().map(str::to_owned);
    Ok(PrivateKey {
        key: key.into_pkey(),
        kind,
        kid,
    })
}

/// DER PKCS#8 of a private key, for josekit's ECDH-ES decrypter.
pub(crate) fn pkcs8_der(key: &PrivateKey) -> Result<Zeroizing<Vec<u8>>, Error> {
    key.key
        .private_key_to_pkcs8()
        .map(Zeroizing::new)
        .map_err(|e| crate::backend("encoding a private key", e))
}
