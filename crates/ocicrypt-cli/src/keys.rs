//! Turning `-r SPEC` and `-k KEY` arguments into encryption and decryption configs.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use ocicrypt::keywrap::secrecy::SecretString;
use ocicrypt::{DecryptConfig, EncryptConfig, PrivateKey, SecretBytes};
use zeroize::Zeroizing;

/// `-r` and `-k` of the encrypt commands.
#[derive(Debug, Args)]
pub(crate) struct RecipientArgs {
    /// Recipient (repeatable): jwe:PUBLIC-KEY-FILE, pkcs7:CERT-FILE,
    /// pgp:NAME-OR-EMAIL (from the GnuPG keyring) or pgp:PUBLIC-KEY-FILE,
    /// pkcs11:KEY-FILE-OR-RSA-PUBLIC-KEY, provider:NAME[:ARGS] (OCICRYPT_KEYPROVIDER_CONFIG).
    #[arg(short = 'r', long = "recipient", value_name = "SPEC", required = true)]
    recipients: Vec<String>,
    /// Private key FILE[:PASSWORD] that opens layers already encrypted, to add recipients to
    /// them (repeatable).
    #[arg(short = 'k', long = "key", value_name = "KEY")]
    keys: Vec<String>,
}

impl RecipientArgs {
    /// The encryption config these arguments describe.
    pub(crate) fn config(&self) -> Result<EncryptConfig> {
        encrypt_config(&self.recipients, &self.keys)
    }
}

/// `-k` of the decrypt commands.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// Private key FILE[:PASSWORD] (repeatable); PASSWORD is pass=PW, file=PATH, fd=N,
    /// env=VAR or the password itself. Or provider:NAME[:ARGS] to ask a key provider.
    #[arg(short = 'k', long = "key", value_name = "KEY", required = true)]
    keys: Vec<String>,
}

impl KeyArgs {
    /// The decryption config these arguments describe.
    pub(crate) fn config(&self) -> Result<DecryptConfig> {
        decrypt_config(&self.keys)
    }
}

/// Adds one `-r/--recipient` to `ec`: `SCHEME:VALUE`.
pub(crate) fn add_recipient(ec: &mut EncryptConfig, spec: &str) -> Result<()> {
    let Some((scheme, value)) = spec.split_once(':') else {
        bail!("invalid recipient {spec:?}: expected SCHEME:VALUE, for example jwe:public.pem");
    };
    match scheme {
        "jwe" => {
            let data = read_file(value, "recipient key")?;
            check_public_key(value, &data)?;
            ec.jwe_public_keys.push(data);
        }
        "pkcs7" => {
            if !cfg!(feature = "pkcs7") {
                bail!(
                    "recipient scheme \"pkcs7\" is not supported by this build (feature pkcs7 is off)"
                );
            }
            let data = read_file(value, "recipient certificate")?;
            if !is_certificate(&data) {
                bail!("{value}: is not an X.509 certificate (expected PEM or DER)");
            }
            ec.pkcs7_certificates.push(data);
        }
        "pkcs11" => add_pkcs11_recipient(ec, value)?,
        "pgp" => add_pgp_recipient(ec, value)?,
        "provider" => add_provider(&mut ec.key_providers, value, spec)?,
        _ => bail!(
            "unknown recipient scheme {scheme:?} in {spec:?}: expected jwe, pkcs7, pgp, pkcs11 or provider"
        ),
    }
    Ok(())
}

/// `pgp:FILE` (an exported public key, binary or armored: all its certificates are
/// recipients) or `pgp:NAME-OR-EMAIL` (looked up in the GnuPG keyring through `gpg`, as Go
/// does; an unknown name is an error when the layer key is wrapped).
#[cfg(feature = "pgp")]
fn add_pgp_recipient(ec: &mut EncryptConfig, value: &str) -> Result<()> {
    use ocicrypt::pgp;
    if value.is_empty() {
        bail!("pgp: recipient is empty: expected pgp:NAME-OR-EMAIL or pgp:FILE");
    }
    let keyring = ec.gpg_public_keyring.get_or_insert_with(Vec::new);
    if Path::new(value).is_file() {
        let data = read_file(value, "OpenPGP public key")?;
        let certs = pgp::to_binary_keyring(&data)
            .with_context(|| format!("{value}: is not an OpenPGP public key"))?;
        keyring.extend_from_slice(&certs);
        ec.gpg_recipients
            .extend(pgp::cert_fingerprints(&data).with_context(|| value.to_owned())?);
    } else {
        if ec.gpg_recipients.iter().all(|r| is_hex_id(r)) {
            // The first name or e-mail: bring in the user's GnuPG public keyring once.
            let exported = pgp::gnupg::export_public_keyring(None).with_context(|| {
                format!("pgp:{value}: cannot read the GnuPG keyring to find this recipient")
            })?;
            keyring.extend_from_slice(&exported);
        }
        ec.gpg_recipients.push(value.to_owned());
    }
    Ok(())
}

/// Whether a recipient string is a fingerprint we added for a `pgp:FILE` recipient.
#[cfg(feature = "pgp")]
fn is_hex_id(s: &str) -> bool {
    s.len() >= 16 && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(not(feature = "pgp"))]
fn add_pgp_recipient(_ec: &mut EncryptConfig, _value: &str) -> Result<()> {
    bail!("recipient scheme \"pgp\" is not supported by this build (feature pgp is off)")
}

#[cfg(feature = "pkcs11")]
fn add_pkcs11_recipient(ec: &mut EncryptConfig, path: &str) -> Result<()> {
    let data = read_file(path, "recipient key")?;
    if ocicrypt::pkcs11::Pkcs11KeyFile::is_key_file(&data) {
        ec.pkcs11_yamls.push(data);
    } else if is_rsa_public_key(&data) {
        ec.pkcs11_public_keys.push(data);
    } else {
        bail!(
            "{path}: is neither a PKCS#11 key file (YAML with a pkcs11: URI) nor an RSA public key"
        );
    }
    Ok(())
}

#[cfg(not(feature = "pkcs11"))]
fn add_pkcs11_recipient(_ec: &mut EncryptConfig, _path: &str) -> Result<()> {
    bail!("recipient scheme \"pkcs11\" is not supported by this build (feature pkcs11 is off)")
}

#[cfg(feature = "pkcs11")]
fn is_rsa_public_key(data: &[u8]) -> bool {
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    PKey::public_key_from_pem(data)
        .or_else(|_| PKey::public_key_from_der(data))
        .is_ok_and(|k| k.rsa().is_ok())
        || Rsa::public_key_from_pem_pkcs1(data).is_ok()
        || Rsa::public_key_from_der_pkcs1(data).is_ok()
}

/// Adds the user's PKCS#11 module policy (Go's `GetUserPkcs11Config`: `OCICRYPT_CONFIG`,
/// then `ocicrypt.conf` files) when PKCS#11 key files are in use.
#[cfg(feature = "pkcs11")]
fn add_pkcs11_policy(dc: &mut DecryptConfig, needed: bool) -> Result<()> {
    if needed && dc.pkcs11_config.is_none() {
        let policy = ocicrypt::pkcs11::Pkcs11Config::from_user_config().context(
            "PKCS#11 key files need a module policy: set OCICRYPT_CONFIG=internal (built-in \
             module directories) or to an ocicrypt.conf file",
        )?;
        dc.pkcs11_config = Some(policy.to_yaml());
    }
    Ok(())
}

#[cfg(not(feature = "pkcs11"))]
fn add_pkcs11_policy(_dc: &mut DecryptConfig, _needed: bool) -> Result<()> {
    Ok(())
}

#[cfg(feature = "jwe")]
fn check_public_key(path: &str, data: &[u8]) -> Result<()> {
    if ocicrypt::jwe::keys::is_public_key(data) {
        Ok(())
    } else if ocicrypt::jwe::keys::is_private_key(data) {
        bail!("{path}: is a private key; a recipient is given by its public key")
    } else {
        bail!("{path}: is not a public key (expected PEM, DER or JWK)")
    }
}

#[cfg(not(feature = "jwe"))]
fn check_public_key(_path: &str, _data: &[u8]) -> Result<()> {
    bail!("recipient scheme \"jwe\" is not supported by this build (feature jwe is off)")
}

/// `provider:NAME[:ARGS]` as Go's helpers parse it: the provider's parameter list gets
/// ARGS, or `Enabled` when there are none.
fn add_provider(
    providers: &mut std::collections::BTreeMap<String, Vec<Vec<u8>>>,
    value: &str,
    spec: &str,
) -> Result<()> {
    if !cfg!(any(
        feature = "keyprovider-cmd",
        feature = "keyprovider-grpc"
    )) {
        bail!("key providers are not supported by this build (features keyprovider-* are off)");
    }
    let (name, args) = value.split_once(':').unwrap_or((value, "Enabled"));
    if name.is_empty() {
        bail!("invalid key provider {spec:?}: expected provider:NAME[:ARGS]");
    }
    providers
        .entry(name.to_owned())
        .or_default()
        .push(args.as_bytes().to_vec());
    Ok(())
}

/// Adds one `-k/--key` to `dc`: `FILE[:PASSWORD]`, or `provider:NAME[:ARGS]`.
pub(crate) fn add_key(dc: &mut DecryptConfig, spec: &str) -> Result<()> {
    if let Some(value) = spec.strip_prefix("provider:") {
        return add_provider(&mut dc.key_providers, value, spec);
    }
    let (path, password) = split_key_spec(spec)?;
    let data = SecretBytes::new(read_file(&path.to_string_lossy(), "key")?);
    let shown = path.display();
    match classify(data.expose()) {
        KeyKind::Pkcs11KeyFile => dc.pkcs11_yamls.push(data),
        KeyKind::PgpSecretKey => dc.gpg_private_keys.push(match password {
            Some(p) => PrivateKey::with_password(data, p),
            None => PrivateKey::new(data),
        }),
        KeyKind::PgpPublicKey => {
            bail!("{shown}: is an OpenPGP public key; decryption needs the secret key")
        }
        KeyKind::Certificate => dc.certificates.push(data.expose().to_vec()),
        KeyKind::PrivateKey => dc.private_keys.push(match password {
            Some(p) => PrivateKey::with_password(data, p),
            None => PrivateKey::new(data),
        }),
        KeyKind::PublicKey => {
            bail!("{shown}: is a public key; decryption needs the private key")
        }
        KeyKind::Unknown => bail!(
            "{shown}: is not a private key or certificate this build understands \
             (PEM, DER or JWK)"
        ),
    }
    Ok(())
}

// Which kinds can be told apart depends on the scheme features compiled in.
#[allow(dead_code)]
enum KeyKind {
    Pkcs11KeyFile,
    PgpSecretKey,
    PgpPublicKey,
    Certificate,
    PrivateKey,
    PublicKey,
    Unknown,
}

fn classify(data: &[u8]) -> KeyKind {
    #[cfg(feature = "pkcs11")]
    if ocicrypt::pkcs11::Pkcs11KeyFile::is_key_file(data) {
        return KeyKind::Pkcs11KeyFile;
    }
    if is_certificate(data) {
        return KeyKind::Certificate;
    }
    #[cfg(feature = "pgp")]
    {
        if ocicrypt::pgp::is_secret_key(data) {
            return KeyKind::PgpSecretKey;
        }
        if ocicrypt::pgp::is_public_key(data) {
            return KeyKind::PgpPublicKey;
        }
    }
    #[cfg(feature = "jwe")]
    {
        if ocicrypt::jwe::keys::is_private_key(data) {
            return KeyKind::PrivateKey;
        }
        if ocicrypt::jwe::keys::is_public_key(data) {
            return KeyKind::PublicKey;
        }
    }
    #[cfg(all(feature = "pkcs7", not(feature = "jwe")))]
    {
        if looks_like_private_key(data) {
            return KeyKind::PrivateKey;
        }
    }
    KeyKind::Unknown
}

/// Private keys without the JWE parser: PEM private-key blocks (encrypted or not) or DER
/// PKCS#8 / PKCS#1 (the forms the pkcs7 scheme reads).
#[cfg(all(feature = "pkcs7", not(feature = "jwe")))]
fn looks_like_private_key(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    text.contains("-----BEGIN PRIVATE KEY-----")
        || text.contains("-----BEGIN RSA PRIVATE KEY-----")
        || text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || openssl::pkey::PKey::private_key_from_der(data).is_ok()
        || openssl::rsa::Rsa::private_key_from_der(data).is_ok()
}

fn is_certificate(data: &[u8]) -> bool {
    openssl::x509::X509::from_pem(data).is_ok() || openssl::x509::X509::from_der(data).is_ok()
}

/// Splits `FILE[:PASSWORD]`. A spec that names an existing file as a whole has no
/// password (so paths with `:` work); otherwise the part after the first `:` is the
/// password: `pass=PW`, `file=PATH`, `fd=N`, `env=VAR`, or the password itself.
fn split_key_spec(spec: &str) -> Result<(PathBuf, Option<SecretString>)> {
    if Path::new(spec).exists() {
        return Ok((PathBuf::from(spec), None));
    }
    let Some((file, pw)) = spec.split_once(':') else {
        return Ok((PathBuf::from(spec), None));
    };
    Ok((PathBuf::from(file), Some(password(pw)?)))
}

fn password(spec: &str) -> Result<SecretString> {
    let raw: Zeroizing<String> = if let Some(pw) = spec.strip_prefix("pass=") {
        Zeroizing::new(pw.to_owned())
    } else if let Some(path) = spec.strip_prefix("file=") {
        let bytes = Zeroizing::new(
            fs::read(path).with_context(|| format!("cannot read password file {path}"))?,
        );
        Zeroizing::new(first_line(&bytes, &format!("password file {path}"))?)
    } else if let Some(fd) = spec.strip_prefix("fd=") {
        let n: u32 = fd
            .parse()
            .with_context(|| format!("fd={fd}: not a file descriptor number"))?;
        let mut buf = Zeroizing::new(Vec::new());
        fs::File::open(format!("/dev/fd/{n}"))
            .with_context(|| format!("cannot open file descriptor {n}"))?
            .take(4096)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read file descriptor {n}"))?;
        Zeroizing::new(first_line(&buf, &format!("file descriptor {n}"))?)
    } else if let Some(var) = spec.strip_prefix("env=") {
        Zeroizing::new(
            std::env::var(var)
                .with_context(|| format!("environment variable {var} is not set or not UTF-8"))?,
        )
    } else {
        Zeroizing::new(spec.to_owned())
    };
    Ok(SecretString::from(raw.as_str()))
}

/// The password in `bytes`: everything up to a trailing newline (as `echo pw > file`
/// writes it).
fn first_line(bytes: &[u8], what: &str) -> Result<String> {
    let text = std::str::from_utf8(bytes).with_context(|| format!("{what}: not UTF-8"))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

fn read_file(path: &str, what: &str) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {what} file {path}"))
}

/// Builds the encryption config from `-r` specs and (for adding recipients to already
/// encrypted layers) `-k` specs.
pub(crate) fn encrypt_config(recipients: &[String], keys: &[String]) -> Result<EncryptConfig> {
    let mut ec = EncryptConfig::default();
    for r in recipients {
        add_recipient(&mut ec, r)?;
    }
    ec.decrypt = decrypt_config(keys)?;
    let needed = !ec.pkcs11_yamls.is_empty();
    add_pkcs11_policy(&mut ec.decrypt, needed)?;
    Ok(ec)
}

/// Builds the decryption config from `-k` specs.
pub(crate) fn decrypt_config(keys: &[String]) -> Result<DecryptConfig> {
    let mut dc = DecryptConfig::default();
    for k in keys {
        add_key(&mut dc, k)?;
    }
    let needed = !dc.pkcs11_yamls.is_empty();
    add_pkcs11_policy(&mut dc, needed)?;
    Ok(dc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocicrypt::keywrap::secrecy::ExposeSecret;

    #[test]
    fn password_specs() {
        assert_eq!(password("pass=a:b").unwrap().expose_secret(), "a:b");
        assert_eq!(password("literal").unwrap().expose_secret(), "literal");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        fs::write(&f, "from-file\n").unwrap();
        let spec = format!("file={}", f.display());
        assert_eq!(password(&spec).unwrap().expose_secret(), "from-file");
        assert!(password("env=OCICRYPT_TEST_SURELY_UNSET_VAR").is_err());
        assert!(password("fd=notanumber").is_err());
    }

    #[test]
    fn key_spec_prefers_existing_paths() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("odd:name.pem");
        fs::write(&f, "x").unwrap();
        let (p, pw) = split_key_spec(&f.to_string_lossy()).unwrap();
        assert_eq!(p, f);
        assert!(pw.is_none());
        let (p, pw) = split_key_spec("/nonexistent/key.pem:pass=x").unwrap();
        assert_eq!(p, PathBuf::from("/nonexistent/key.pem"));
        assert_eq!(pw.unwrap().expose_secret(), "x");
    }

    #[test]
    fn bad_recipients_are_clear_errors() {
        let mut ec = EncryptConfig::default();
        let e = add_recipient(&mut ec, "nocolon").unwrap_err().to_string();
        assert!(e.contains("SCHEME:VALUE"), "{e}");
        let e = add_recipient(&mut ec, "foo:bar").unwrap_err().to_string();
        assert!(e.contains("unknown recipient scheme"), "{e}");
        let e = add_recipient(&mut ec, "jwe:/nonexistent.pem").unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent.pem"), "{e:#}");
    }
}
