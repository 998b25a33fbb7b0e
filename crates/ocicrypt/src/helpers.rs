//! Building [`EncryptConfig`] and [`DecryptConfig`] from the strings a user types: recipient
//! specs such as `jwe:public.pem` and key specs such as `private.pem:pass=secret`.
//!
//! This is Go ocicrypt's `helpers` package (`CreateCryptoConfig`,
//! `CreateDecryptCryptoConfig`) and exactly what the `ocicrypt` command accepts for `-r` and
//! `-k`:
//!
//! - recipients ([`add_recipient`]): `jwe:PUBLIC-KEY-FILE`, `pkcs7:CERT-FILE`,
//!   `pkcs11:FILE` (a PKCS#11 key file or a plain RSA public key), `pgp:NAME-OR-EMAIL`
//!   (looked up in the GnuPG keyring through `gpg`) or `pgp:PUBLIC-KEY-FILE`, and
//!   `provider:NAME[:ARGS]` (a key provider from `OCICRYPT_KEYPROVIDER_CONFIG`);
//! - keys ([`add_key`]): `FILE[:PASSWORD]`, where PASSWORD is `pass=PW`, `file=PATH` (its
//!   first line), `fd=N` (read from an open file descriptor), `env=VAR` or the password
//!   itself, and the kind of file is detected ([`key_kind`]); or `provider:NAME[:ARGS]`.
//!   A spec that names an existing file as a whole has no password, so paths with `:`
//!   work.
//!
//! When PKCS#11 key files are in use, the user's module policy
//! (`Pkcs11Config::from_user_config`: `OCICRYPT_CONFIG`, then `ocicrypt.conf` files) is
//! added to the decryption config, as Go does.
//!
//! Which schemes can be used depends on the cargo features compiled in; a spec for another
//! one fails with [`HelperError::SchemeNotCompiled`]. Every failure is a [`HelperError`]
//! naming the spec, file or variable it is about, never a password.
//!
//! ```
//! use ocicrypt::helpers::{self, HelperError};
//!
//! # #[cfg(not(feature = "jwe"))] fn main() {}
//! # #[cfg(feature = "jwe")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let rsa = openssl::rsa::Rsa::generate(2048)?;
//! # let public = dir.path().join("public.pem");
//! # let private = dir.path().join("private.pem");
//! # std::fs::write(&public, rsa.public_key_to_pem()?)?;
//! # let cipher = openssl::symm::Cipher::aes_256_cbc();
//! # std::fs::write(&private, rsa.private_key_to_pem_passphrase(cipher, b"secret")?)?;
//! // Encrypt for the holder of public.pem ...
//! let ec = helpers::encrypt_config([format!("jwe:{}", public.display())], Vec::<String>::new())?;
//! assert_eq!(ec.jwe_public_keys.len(), 1);
//!
//! // ... who decrypts with the matching private key and its password.
//! let dc = helpers::decrypt_config([format!("{}:pass=secret", private.display())])?;
//! assert_eq!(dc.private_keys.len(), 1);
//!
//! // Mistakes are typed errors.
//! let err = helpers::encrypt_config(["nope:x"], Vec::<String>::new()).unwrap_err();
//! assert!(matches!(err, HelperError::UnknownScheme { ref scheme, .. } if scheme == "nope"));
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use ocicrypt_keywrap::keys;
use ocicrypt_keywrap::secrecy::SecretString;
use zeroize::Zeroizing;

use crate::{DecryptConfig, EncryptConfig, KeyFile, SecretBytes};

#[cfg(test)]
mod tests;

/// Why a recipient or key spec could not be turned into configuration.
///
/// Each variant names the spec, file or variable it is about; none holds a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelperError {
    /// A recipient without a scheme (no `:`).
    #[error("invalid recipient {spec:?}: expected SCHEME:VALUE, for example jwe:public.pem")]
    InvalidRecipient {
        /// The recipient spec.
        spec: String,
    },
    /// A recipient with a scheme that does not exist.
    #[error(
        "unknown recipient scheme {scheme:?} in {spec:?}: expected jwe, pkcs7, pgp, pkcs11 or provider"
    )]
    UnknownScheme {
        /// The scheme (the part before the first `:`).
        scheme: String,
        /// The recipient spec.
        spec: String,
    },
    /// A recipient of a scheme whose cargo feature is off in this build.
    #[error(
        "recipient scheme {scheme:?} is not supported by this build (feature {feature} is off)"
    )]
    SchemeNotCompiled {
        /// The scheme: `jwe`, `pkcs7`, `pgp` or `pkcs11`.
        scheme: &'static str,
        /// The cargo feature that adds it.
        feature: &'static str,
    },
    /// A `provider:` recipient or key, but neither `keyprovider-*` feature is on.
    #[error(
        "key providers are not supported by this build (features keyprovider-* are off): {spec:?}"
    )]
    KeyProvidersNotCompiled {
        /// The recipient or key spec.
        spec: String,
    },
    /// A `provider:` spec without a name.
    #[error("invalid key provider {spec:?}: expected provider:NAME[:ARGS]")]
    InvalidProvider {
        /// The recipient or key spec.
        spec: String,
    },
    /// A file named by a spec could not be read.
    #[error("cannot read {what} file {}", .path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What the file was to hold: `recipient key`, `key`, ...
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A `jwe:` recipient that is no public key.
    #[error("{}: is not a public key (expected PEM, DER or JWK)", .path.display())]
    NotAPublicKey {
        /// The file.
        path: PathBuf,
    },
    /// A `jwe:` recipient that is a private key.
    #[error("{}: is a private key; a recipient is given by its public key", .path.display())]
    IsPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A `pkcs7:` recipient that is no X.509 certificate.
    #[error("{}: is not an X.509 certificate (expected PEM or DER)", .path.display())]
    NotACertificate {
        /// The file.
        path: PathBuf,
    },
    /// A `pkcs11:` recipient that is neither a PKCS#11 key file nor an RSA public key.
    #[error(
        "{}: is neither a PKCS#11 key file (YAML with a pkcs11: URI) nor an RSA public key",
        .path.display()
    )]
    NotPkcs11Recipient {
        /// The file.
        path: PathBuf,
    },
    /// `pgp:` with nothing after it.
    #[error("pgp: recipient is empty: expected pgp:NAME-OR-EMAIL or pgp:FILE")]
    EmptyPgpRecipient,
    /// A `pgp:FILE` recipient that is no OpenPGP public key.
    #[error("{}: is not an OpenPGP public key", .path.display())]
    NotPgpPublicKey {
        /// The file.
        path: PathBuf,
        /// Why it could not be parsed.
        #[source]
        source: ocicrypt_keywrap::Error,
    },
    /// The GnuPG keyring could not be exported (through `gpg`) to look a `pgp:NAME`
    /// recipient up.
    #[error("{spec}: cannot read the GnuPG keyring to find this recipient")]
    GnupgKeyring {
        /// The recipient spec.
        spec: String,
        /// Why.
        #[source]
        source: ocicrypt_keywrap::Error,
    },
    /// A key that is a public key ([`KeyKind::PublicKey`]).
    #[error("{}: is a public key; decryption needs the private key", .path.display())]
    IsPublicKey {
        /// The file.
        path: PathBuf,
    },
    /// A key that is an OpenPGP public key ([`KeyKind::PgpPublicKey`]).
    #[error(
        "{}: is an OpenPGP public key; decryption needs the secret key",
        .path.display()
    )]
    IsPgpPublicKey {
        /// The file.
        path: PathBuf,
    },
    /// A key of no kind this build understands ([`KeyKind::Unknown`]).
    #[error(
        "{}: is not a private key or certificate this build understands (PEM, DER or JWK)",
        .path.display()
    )]
    UnknownKeyKind {
        /// The file.
        path: PathBuf,
    },
    /// A key's password could not be read from the `file=`, `fd=` or `env=` it names.
    #[error("cannot read {origin}")]
    Password {
        /// Where the password was to be read from.
        origin: PasswordSource,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A key's `fd=N` password with an N that is no file descriptor number.
    #[error("fd={value}: not a file descriptor number")]
    InvalidPasswordFd {
        /// What follows `fd=`.
        value: String,
        /// Why it does not parse.
        #[source]
        source: std::num::ParseIntError,
    },
    /// PKCS#11 key files are in use but the user's module policy cannot be loaded.
    #[error(
        "PKCS#11 key files need a module policy: set OCICRYPT_CONFIG=internal (built-in \
         module directories) or to an ocicrypt.conf file"
    )]
    Pkcs11Policy {
        /// Why the policy could not be loaded.
        #[source]
        source: ocicrypt_keywrap::Error,
    },
}

/// Where a key's password is read from: the `file=`, `fd=` and `env=` forms of
/// `FILE:PASSWORD`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordSource {
    /// `file=PATH`: the file's first line.
    File(PathBuf),
    /// `fd=N`: the first line read from an open file descriptor.
    Fd(u32),
    /// `env=VAR`: an environment variable.
    Env(String),
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "password file {}", path.display()),
            Self::Fd(n) => write!(f, "file descriptor {n}"),
            Self::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// What a key file holds, as [`key_kind`] tells it.
///
/// Private keys, public keys and certificates are told apart by the key loader all schemes
/// share ([`ocicrypt_keywrap::keys`]), whatever features are on. PKCS#11 key files and
/// OpenPGP keys need their scheme's parser: without `pkcs11` a PKCS#11 key file is
/// [`KeyKind::Unknown`], and without `pgp` so are OpenPGP keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// A PKCS#11 key file: YAML with a `pkcs11:` URI (it names a key on a token).
    Pkcs11KeyFile,
    /// An OpenPGP secret key or keyring, binary or armored.
    PgpSecretKey,
    /// An OpenPGP public key (certificate), binary or armored.
    PgpPublicKey,
    /// An X.509 certificate, PEM or DER.
    Certificate,
    /// A private key, PEM, DER or JWK, encrypted or not
    /// ([`ocicrypt_keywrap::keys::is_private_key`]).
    PrivateKey,
    /// A public key, PEM, DER or JWK.
    PublicKey,
    /// None of the above (or a kind this build cannot tell).
    Unknown,
}

/// What the key file `data` holds. Checked in the order PKCS#11 key file, certificate,
/// OpenPGP key, private key, public key; see [`KeyKind`] for what each feature adds. A PEM
/// file is what its first block is, as in Go.
pub fn key_kind(data: &[u8]) -> KeyKind {
    #[cfg(feature = "pkcs11")]
    if ocicrypt_keywrap_pkcs11::Pkcs11KeyFile::is_key_file(data) {
        return KeyKind::Pkcs11KeyFile;
    }
    if keys::is_certificate(data) {
        return KeyKind::Certificate;
    }
    #[cfg(feature = "pgp")]
    {
        if ocicrypt_keywrap_pgp::is_secret_key(data) {
            return KeyKind::PgpSecretKey;
        }
        if ocicrypt_keywrap_pgp::is_public_key(data) {
            return KeyKind::PgpPublicKey;
        }
    }
    if keys::is_private_key(data) {
        return KeyKind::PrivateKey;
    }
    if keys::is_public_key(data) {
        return KeyKind::PublicKey;
    }
    KeyKind::Unknown
}

/// Builds the encryption config for `recipients` (see [`add_recipient`]), with `keys` (see
/// [`add_key`]) that open layers already encrypted, to add the recipients to them. Go's
/// `helpers.CreateCryptoConfig`.
///
/// # Errors
/// The first spec that cannot be used, or [`HelperError::Pkcs11Policy`] if PKCS#11 key
/// files are in use and the user's module policy cannot be loaded.
pub fn encrypt_config<R, K>(recipients: R, keys: K) -> Result<EncryptConfig, HelperError>
where
    R: IntoIterator,
    R::Item: AsRef<str>,
    K: IntoIterator,
    K::Item: AsRef<str>,
{
    let mut ec = EncryptConfig::default();
    for r in recipients {
        add_recipient(&mut ec, r.as_ref())?;
    }
    ec.decrypt = decrypt_config(keys)?;
    let needed = !ec.pkcs11_yamls.is_empty();
    add_pkcs11_policy(&mut ec.decrypt, needed)?;
    Ok(ec)
}

/// Builds the decryption config for `keys` (see [`add_key`]). Go's
/// `helpers.CreateDecryptCryptoConfig`.
///
/// # Errors
/// The first spec that cannot be used, or [`HelperError::Pkcs11Policy`] if PKCS#11 key
/// files are in use and the user's module policy cannot be loaded.
pub fn decrypt_config<K>(keys: K) -> Result<DecryptConfig, HelperError>
where
    K: IntoIterator,
    K::Item: AsRef<str>,
{
    let mut dc = DecryptConfig::default();
    for k in keys {
        add_key(&mut dc, k.as_ref())?;
    }
    let needed = !dc.pkcs11_yamls.is_empty();
    add_pkcs11_policy(&mut dc, needed)?;
    Ok(dc)
}

/// Adds one recipient, `SCHEME:VALUE`, to `ec`:
///
/// - `jwe:FILE`: a public key (RSA or EC; PEM, DER or JWK);
/// - `pkcs7:FILE`: an X.509 certificate, PEM or DER;
/// - `pkcs11:FILE`: a PKCS#11 key file (YAML with a `pkcs11:` URI) or an RSA public key;
/// - `pgp:FILE`: an OpenPGP public key file, binary or armored (all its certificates are
///   recipients), or `pgp:NAME-OR-EMAIL`, looked up in the user's GnuPG keyring, which is
///   exported through `gpg` once and added to `ec` (an unknown name fails when the layer
///   key is wrapped);
/// - `provider:NAME[:ARGS]`: the key provider NAME with ARGS (`Enabled` when there are
///   none), as Go passes them.
///
/// It does not add the PKCS#11 module policy; [`encrypt_config`] does.
///
/// # Errors
/// A [`HelperError`] naming `spec` or the file it names.
pub fn add_recipient(ec: &mut EncryptConfig, spec: &str) -> Result<(), HelperError> {
    let Some((scheme, value)) = spec.split_once(':') else {
        return Err(HelperError::InvalidRecipient {
            spec: spec.to_owned(),
        });
    };
    match scheme {
        "jwe" => add_jwe_recipient(ec, value),
        "pkcs7" => add_pkcs7_recipient(ec, value),
        "pkcs11" => add_pkcs11_recipient(ec, value),
        "pgp" => add_pgp_recipient(ec, value, spec),
        "provider" => add_provider(&mut ec.key_providers, value, spec),
        _ => Err(HelperError::UnknownScheme {
            scheme: scheme.to_owned(),
            spec: spec.to_owned(),
        }),
    }
}

/// Adds one key to `dc`: `FILE[:PASSWORD]` or `provider:NAME[:ARGS]`.
///
/// A spec that names an existing file as a whole has no password (so paths with `:`
/// work); otherwise the part after the first `:` is the password: `pass=PW`, `file=PATH`
/// (the file's first line), `fd=N` (the first line read from that open file descriptor),
/// `env=VAR`, or the password itself. The file's kind ([`key_kind`]) decides where it
/// goes: private keys and OpenPGP secret keys (with the password), certificates (which
/// tell PKCS#7 recipients apart), PKCS#11 key files.
///
/// It does not add the PKCS#11 module policy; [`decrypt_config`] does.
///
/// # Errors
/// A [`HelperError`] naming the file, the password's origin or the spec (never the
/// password): the file cannot be read, is a public key or of an unknown kind, the password
/// cannot be read, or the provider spec has no name.
pub fn add_key(dc: &mut DecryptConfig, spec: &str) -> Result<(), HelperError> {
    if let Some(value) = spec.strip_prefix("provider:") {
        return add_provider(&mut dc.key_providers, value, spec);
    }
    let (path, password) = split_key_spec(spec)?;
    let data = SecretBytes::new(read_file(&path, "key")?);
    let name = path.display().to_string();
    let private = |data, password| {
        match password {
            Some(p) => KeyFile::with_password(data, p),
            None => KeyFile::new(data),
        }
        .named(name.clone())
    };
    match key_kind(data.expose()) {
        KeyKind::Pkcs11KeyFile => dc.pkcs11_yamls.push(data),
        KeyKind::PgpSecretKey => dc.gpg_private_keys.push(private(data, password)),
        KeyKind::Certificate => dc.certificates.push(data.expose().to_vec()),
        KeyKind::PrivateKey => dc.private_keys.push(private(data, password)),
        KeyKind::PgpPublicKey => return Err(HelperError::IsPgpPublicKey { path }),
        KeyKind::PublicKey => return Err(HelperError::IsPublicKey { path }),
        KeyKind::Unknown => return Err(HelperError::UnknownKeyKind { path }),
    }
    Ok(())
}

/// `Ok` if `on` (the feature of `scheme`, named like it, is compiled in), else the error
/// saying it is not.
fn compiled(on: bool, scheme: &'static str) -> Result<(), HelperError> {
    if on {
        Ok(())
    } else {
        Err(HelperError::SchemeNotCompiled {
            scheme,
            feature: scheme,
        })
    }
}

fn add_jwe_recipient(ec: &mut EncryptConfig, value: &str) -> Result<(), HelperError> {
    compiled(cfg!(feature = "jwe"), "jwe")?;
    let path = Path::new(value);
    let data = read_file(path, "recipient key")?;
    if keys::is_public_key(&data) {
        ec.jwe_public_keys.push(data);
        Ok(())
    } else if keys::is_private_key(&data) {
        Err(HelperError::IsPrivateKey { path: path.into() })
    } else {
        Err(HelperError::NotAPublicKey { path: path.into() })
    }
}

fn add_pkcs7_recipient(ec: &mut EncryptConfig, value: &str) -> Result<(), HelperError> {
    compiled(cfg!(feature = "pkcs7"), "pkcs7")?;
    let path = Path::new(value);
    let data = read_file(path, "recipient certificate")?;
    if !keys::is_certificate(&data) {
        return Err(HelperError::NotACertificate { path: path.into() });
    }
    ec.pkcs7_certificates.push(data);
    Ok(())
}

#[cfg(feature = "pkcs11")]
fn add_pkcs11_recipient(ec: &mut EncryptConfig, value: &str) -> Result<(), HelperError> {
    let path = Path::new(value);
    let data = read_file(path, "recipient key")?;
    if ocicrypt_keywrap_pkcs11::Pkcs11KeyFile::is_key_file(&data) {
        ec.pkcs11_yamls.push(data);
    } else if is_rsa_public_key(&data) {
        ec.pkcs11_public_keys.push(data);
    } else {
        return Err(HelperError::NotPkcs11Recipient { path: path.into() });
    }
    Ok(())
}

#[cfg(not(feature = "pkcs11"))]
fn add_pkcs11_recipient(_ec: &mut EncryptConfig, _value: &str) -> Result<(), HelperError> {
    compiled(false, "pkcs11")
}

/// Whether `data` is an RSA public key that [`keys::parse_public_key`] reads.
#[cfg(feature = "pkcs11")]
fn is_rsa_public_key(data: &[u8]) -> bool {
    keys::parse_public_key(data).is_ok_and(|k| k.pkey().id() == openssl::pkey::Id::RSA)
}

/// `pgp:FILE` or `pgp:NAME-OR-EMAIL`; see [`add_recipient`].
#[cfg(feature = "pgp")]
fn add_pgp_recipient(ec: &mut EncryptConfig, value: &str, spec: &str) -> Result<(), HelperError> {
    use ocicrypt_keywrap_pgp as pgp;
    if value.is_empty() {
        return Err(HelperError::EmptyPgpRecipient);
    }
    let path = Path::new(value);
    let keyring = ec.gpg_public_keyring.get_or_insert_with(Vec::new);
    if path.is_file() {
        let data = read_file(path, "OpenPGP public key")?;
        let not_pgp = |source| HelperError::NotPgpPublicKey {
            path: path.into(),
            source,
        };
        let certs = pgp::to_binary_keyring(&data).map_err(not_pgp)?;
        let fingerprints = pgp::cert_fingerprints(&data).map_err(not_pgp)?;
        keyring.extend_from_slice(&certs);
        ec.gpg_recipients.extend(fingerprints);
    } else {
        if ec.gpg_recipients.iter().all(|r| is_hex_id(r)) {
            // The first name or e-mail: bring in the user's GnuPG public keyring once.
            let exported = pgp::gnupg::export_public_keyring(None).map_err(|source| {
                HelperError::GnupgKeyring {
                    spec: spec.to_owned(),
                    source,
                }
            })?;
            keyring.extend_from_slice(&exported);
        }
        ec.gpg_recipients.push(value.to_owned());
    }
    Ok(())
}

/// Whether a recipient string is a fingerprint added for a `pgp:FILE` recipient.
#[cfg(feature = "pgp")]
fn is_hex_id(s: &str) -> bool {
    s.len() >= 16 && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(not(feature = "pgp"))]
fn add_pgp_recipient(
    _ec: &mut EncryptConfig,
    _value: &str,
    _spec: &str,
) -> Result<(), HelperError> {
    compiled(false, "pgp")
}

/// `provider:NAME[:ARGS]` as Go's helpers parse it: the provider's parameter list gets
/// ARGS, or `Enabled` when there are none.
fn add_provider(
    providers: &mut BTreeMap<String, Vec<Vec<u8>>>,
    value: &str,
    spec: &str,
) -> Result<(), HelperError> {
    if !cfg!(any(
        feature = "keyprovider-cmd",
        feature = "keyprovider-grpc"
    )) {
        return Err(HelperError::KeyProvidersNotCompiled {
            spec: spec.to_owned(),
        });
    }
    let (name, args) = value.split_once(':').unwrap_or((value, "Enabled"));
    if name.is_empty() {
        return Err(HelperError::InvalidProvider {
            spec: spec.to_owned(),
        });
    }
    providers
        .entry(name.to_owned())
        .or_default()
        .push(args.as_bytes().to_vec());
    Ok(())
}

/// Adds the user's PKCS#11 module policy (Go's `GetUserPkcs11Config`: `OCICRYPT_CONFIG`,
/// then `ocicrypt.conf` files) when PKCS#11 key files are in use.
#[cfg(feature = "pkcs11")]
fn add_pkcs11_policy(dc: &mut DecryptConfig, needed: bool) -> Result<(), HelperError> {
    if needed && dc.pkcs11_config.is_none() {
        let policy = ocicrypt_keywrap_pkcs11::Pkcs11Config::from_user_config()
            .map_err(|source| HelperError::Pkcs11Policy { source })?;
        dc.pkcs11_config = Some(policy.to_yaml());
    }
    Ok(())
}

#[cfg(not(feature = "pkcs11"))]
fn add_pkcs11_policy(_dc: &mut DecryptConfig, _needed: bool) -> Result<(), HelperError> {
    Ok(())
}

/// Splits `FILE[:PASSWORD]` and reads the password; see [`add_key`].
fn split_key_spec(spec: &str) -> Result<(PathBuf, Option<SecretString>), HelperError> {
    if Path::new(spec).exists() {
        return Ok((PathBuf::from(spec), None));
    }
    let Some((file, pw)) = spec.split_once(':') else {
        return Ok((PathBuf::from(spec), None));
    };
    Ok((PathBuf::from(file), Some(password(pw)?)))
}

/// The password a `PASSWORD` spec gives: `pass=PW`, `file=PATH`, `fd=N`, `env=VAR` or the
/// password itself.
fn password(spec: &str) -> Result<SecretString, HelperError> {
    if let Some(pw) = spec.strip_prefix("pass=") {
        Ok(SecretString::from(pw))
    } else if let Some(path) = spec.strip_prefix("file=") {
        let origin = PasswordSource::File(PathBuf::from(path));
        let bytes = fs::read(path).map(Zeroizing::new);
        read_password(bytes, origin)
    } else if let Some(fd) = spec.strip_prefix("fd=") {
        let n: u32 = fd
            .parse()
            .map_err(|source| HelperError::InvalidPasswordFd {
                value: fd.to_owned(),
                source,
            })?;
        let bytes = fs::File::open(format!("/dev/fd/{n}")).and_then(|f| {
            let mut buf = Zeroizing::new(Vec::new());
            f.take(4096).read_to_end(&mut buf)?;
            Ok(buf)
        });
        read_password(bytes, PasswordSource::Fd(n))
    } else if let Some(var) = spec.strip_prefix("env=") {
        let origin = PasswordSource::Env(var.to_owned());
        let value = std::env::var_os(var)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not set"))
            .map(|v| Zeroizing::new(v.into_encoded_bytes()));
        read_password(value, origin)
    } else {
        Ok(SecretString::from(spec))
    }
}

/// The password in `bytes` read from `origin`: everything up to a trailing newline (as
/// `echo pw > file` writes it).
fn read_password(
    bytes: io::Result<Zeroizing<Vec<u8>>>,
    origin: PasswordSource,
) -> Result<SecretString, HelperError> {
    let text = bytes.and_then(|bytes| {
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        Ok(SecretString::from(text.strip_suffix('\r').unwrap_or(text)))
    });
    text.map_err(|source| HelperError::Password { origin, source })
}

/// The contents of the file `path`, which was to hold `what`.
fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, HelperError> {
    fs::read(path).map_err(|source| HelperError::ReadFile {
        path: path.to_owned(),
        what,
        source,
    })
}
