//! Encryption and decryption configuration: who may decrypt, and with which keys.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::{Error, SecretBytes};

/// Go ocicrypt's parameter bag (`map[string][][]byte`), with keys sorted.
pub type Parameters = BTreeMap<String, Vec<Vec<u8>>>;

/// Go parameter keys, one per typed field below.
mod keys {
    pub(crate) const PUBKEYS: &str = "pubkeys";
    pub(crate) const X509S: &str = "x509s";
    pub(crate) const GPG_RECIPIENTS: &str = "gpg-recipients";
    pub(crate) const GPG_PUBKEYRINGFILE: &str = "gpg-pubkeyringfile";
    pub(crate) const PKCS11_PUBKEYS: &str = "pkcs11-pubkeys";
    pub(crate) const PKCS11_YAMLS: &str = "pkcs11-yamls";
    pub(crate) const PKCS11_CONFIG: &str = "pkcs11-config";
    pub(crate) const PRIVKEYS: &str = "privkeys";
    pub(crate) const PRIVKEYS_PASSWORDS: &str = "privkeys-passwords";
    pub(crate) const GPG_PRIVATEKEYS: &str = "gpg-privatekeys";
    pub(crate) const GPG_PRIVATEKEYS_PASSWORDS: &str = "gpg-privatekeys-passwords";
}

/// A private key (file contents: PEM, DER, JWK, a GnuPG secret keyring, ...) and the
/// password that opens it, if it is encrypted. Both are zeroized on drop and redacted in
/// `Debug`.
#[derive(Clone)]
pub struct KeyFile {
    data: SecretBytes,
    password: Option<SecretString>,
    name: Option<String>,
}

impl KeyFile {
    /// A private key that needs no password.
    pub fn new(data: impl Into<SecretBytes>) -> Self {
        Self {
            data: data.into(),
            password: None,
            name: None,
        }
    }

    /// A private key with the password that opens it.
    pub fn with_password(data: impl Into<SecretBytes>, password: SecretString) -> Self {
        Self {
            data: data.into(),
            password: Some(password),
            name: None,
        }
    }

    /// The same key, named `name` (its file's path, say) in error messages: a
    /// [`Cause`](crate::Cause) then says `private key NAME` rather than its place among
    /// the keys.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The key's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// How error messages name this key, the `position`-th (from 1) of its scheme:
    /// its name, else its position.
    pub fn label(&self, position: usize) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => position.to_string(),
        }
    }

    /// The key's bytes.
    pub fn data(&self) -> &SecretBytes {
        &self.data
    }

    /// The password, if one was given.
    pub fn password(&self) -> Option<&SecretString> {
        self.password.as_ref()
    }
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile")
            .field("name", &self.name)
            .field("data", &self.data)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// What a layer is encrypted for: the recipients of each scheme, and (in
/// [`EncryptConfig::decrypt`]) the keys needed to add recipients to a layer that is
/// already encrypted.
///
/// Each field documents the Go parameter key it stands for. Its `Debug` shows the
/// PKCS#11 key files only by number (they may carry a PIN).
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct EncryptConfig {
    /// JWE recipients' public keys: PEM or DER (PKIX, PKCS#1) or JWK (`pubkeys`).
    pub jwe_public_keys: Vec<Vec<u8>>,
    /// PKCS#7 recipients' X.509 certificates, PEM or DER (`x509s`).
    pub pkcs7_certificates: Vec<Vec<u8>>,
    /// OpenPGP recipients as names or e-mail addresses (`gpg-recipients`).
    pub gpg_recipients: Vec<String>,
    /// The binary OpenPGP public keyring the recipients are looked up in
    /// (`gpg-pubkeyringfile`).
    pub gpg_public_keyring: Option<Vec<u8>>,
    /// PKCS#11 recipients given as plain RSA public keys (`pkcs11-pubkeys`).
    pub pkcs11_public_keys: Vec<Vec<u8>>,
    /// PKCS#11 recipients given as key files with a `pkcs11:` URI (`pkcs11-yamls`).
    pub pkcs11_yamls: Vec<Vec<u8>>,
    /// Key providers by configured name, with their arguments (`<name>`; Go writes
    /// `Enabled` when there are none). Every parameter key Go does not define for another
    /// scheme is a key provider's name.
    pub key_providers: BTreeMap<String, Vec<Vec<u8>>>,
    /// Keys to unwrap an already encrypted layer's key when adding recipients to it.
    pub decrypt: DecryptConfig,
}

/// The keys a layer may be decrypted with.
///
/// Each field documents the Go parameter key it stands for.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DecryptConfig {
    /// Private keys for JWE and PKCS#7, with passwords (`privkeys`,
    /// `privkeys-passwords`).
    pub private_keys: Vec<KeyFile>,
    /// X.509 certificates that identify PKCS#7 recipients (`x509s`).
    pub certificates: Vec<Vec<u8>>,
    /// OpenPGP secret keys or keyrings, with passphrases (`gpg-privatekeys`,
    /// `gpg-privatekeys-passwords`).
    pub gpg_private_keys: Vec<KeyFile>,
    /// PKCS#11 key files (`pkcs11-yamls`); they may carry a PIN, so they are secret.
    pub pkcs11_yamls: Vec<SecretBytes>,
    /// The PKCS#11 module policy, YAML (`pkcs11-config`).
    pub pkcs11_config: Option<Vec<u8>>,
    /// Key providers by configured name, with their arguments (`<name>`).
    pub key_providers: BTreeMap<String, Vec<Vec<u8>>>,
}

/// Builders: `EncryptConfig::default().with_...(...)`, one per field, so that configurations
/// are built the same way whatever fields later versions add.
impl EncryptConfig {
    /// Sets JWE recipients (Go: `EncryptWithJwe`).
    #[must_use]
    pub fn with_jwe_public_keys(mut self, value: Vec<Vec<u8>>) -> Self {
        self.jwe_public_keys = value;
        self
    }

    /// Sets PKCS#7 recipients (Go: `EncryptWithPkcs7`).
    #[must_use]
    pub fn with_pkcs7_certificates(mut self, value: Vec<Vec<u8>>) -> Self {
        self.pkcs7_certificates = value;
        self
    }

    /// Sets OpenPGP recipients by name or e-mail (Go: `EncryptWithGpg`).
    #[must_use]
    pub fn with_gpg_recipients(mut self, value: Vec<String>) -> Self {
        self.gpg_recipients = value;
        self
    }

    /// Sets the OpenPGP keyring recipients are looked up in.
    #[must_use]
    pub fn with_gpg_public_keyring(mut self, value: Option<Vec<u8>>) -> Self {
        self.gpg_public_keyring = value;
        self
    }

    /// Sets PKCS#11 recipients as RSA public keys (Go: `EncryptWithPkcs11`).
    #[must_use]
    pub fn with_pkcs11_public_keys(mut self, value: Vec<Vec<u8>>) -> Self {
        self.pkcs11_public_keys = value;
        self
    }

    /// Sets PKCS#11 recipients as key files (Go: `EncryptWithPkcs11`).
    #[must_use]
    pub fn with_pkcs11_yamls(mut self, value: Vec<Vec<u8>>) -> Self {
        self.pkcs11_yamls = value;
        self
    }

    /// Sets key providers and their arguments (Go: `EncryptWithKeyProvider`).
    #[must_use]
    pub fn with_key_providers(mut self, value: BTreeMap<String, Vec<Vec<u8>>>) -> Self {
        self.key_providers = value;
        self
    }

    /// Sets the keys that open layers already encrypted, to add recipients to them.
    #[must_use]
    pub fn with_decrypt(mut self, value: DecryptConfig) -> Self {
        self.decrypt = value;
        self
    }
}

/// Builders: `DecryptConfig::default().with_...(...)`, one per field, so that configurations
/// are built the same way whatever fields later versions add.
impl DecryptConfig {
    /// Sets private keys for JWE and PKCS#7 (Go: `DecryptWithPrivKeys`).
    #[must_use]
    pub fn with_private_keys(mut self, value: Vec<KeyFile>) -> Self {
        self.private_keys = value;
        self
    }

    /// Sets certificates that identify PKCS#7 recipients (Go: `DecryptWithX509s`).
    #[must_use]
    pub fn with_certificates(mut self, value: Vec<Vec<u8>>) -> Self {
        self.certificates = value;
        self
    }

    /// Sets OpenPGP secret keys (Go: `DecryptWithGpgPrivKeys`).
    #[must_use]
    pub fn with_gpg_private_keys(mut self, value: Vec<KeyFile>) -> Self {
        self.gpg_private_keys = value;
        self
    }

    /// Sets PKCS#11 key files (Go: `DecryptWithPkcs11Yaml`).
    #[must_use]
    pub fn with_pkcs11_yamls(mut self, value: Vec<SecretBytes>) -> Self {
        self.pkcs11_yamls = value;
        self
    }

    /// Sets the PKCS#11 module policy.
    #[must_use]
    pub fn with_pkcs11_config(mut self, value: Option<Vec<u8>>) -> Self {
        self.pkcs11_config = value;
        self
    }

    /// Sets key providers and their arguments (Go: `DecryptWithKeyProvider`).
    #[must_use]
    pub fn with_key_providers(mut self, value: BTreeMap<String, Vec<Vec<u8>>>) -> Self {
        self.key_providers = value;
        self
    }
}

impl fmt::Debug for EncryptConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptConfig")
            .field("jwe_public_keys", &self.jwe_public_keys)
            .field("pkcs7_certificates", &self.pkcs7_certificates)
            .field("gpg_recipients", &self.gpg_recipients)
            .field("gpg_public_keyring", &self.gpg_public_keyring)
            .field("pkcs11_public_keys", &self.pkcs11_public_keys)
            .field(
                "pkcs11_yamls",
                &format_args!("[{} REDACTED]", self.pkcs11_yamls.len()),
            )
            .field("key_providers", &self.key_providers)
            .field("decrypt", &self.decrypt)
            .finish()
    }
}

impl EncryptConfig {
    /// Whether no scheme has a recipient.
    pub fn has_no_recipients(&self) -> bool {
        self.jwe_public_keys.is_empty()
            && self.pkcs7_certificates.is_empty()
            && self.gpg_recipients.is_empty()
            && self.pkcs11_public_keys.is_empty()
            && self.pkcs11_yamls.is_empty()
            && self.key_providers.is_empty()
    }

    /// This configuration as Go's `EncryptConfig.Parameters` (without the attached
    /// decryption config, which is [`DecryptConfig::to_parameters`] of
    /// [`EncryptConfig::decrypt`]).
    pub fn to_parameters(&self) -> Parameters {
        let mut p = Parameters::new();
        put(&mut p, keys::PUBKEYS, self.jwe_public_keys.clone());
        put(&mut p, keys::X509S, self.pkcs7_certificates.clone());
        put(
            &mut p,
            keys::GPG_RECIPIENTS,
            self.gpg_recipients
                .iter()
                .map(|r| r.as_bytes().to_vec())
                .collect(),
        );
        put(
            &mut p,
            keys::GPG_PUBKEYRINGFILE,
            self.gpg_public_keyring.iter().cloned().collect(),
        );
        put(
            &mut p,
            keys::PKCS11_PUBKEYS,
            self.pkcs11_public_keys.clone(),
        );
        put(&mut p, keys::PKCS11_YAMLS, self.pkcs11_yamls.clone());
        for (name, args) in &self.key_providers {
            p.insert(name.clone(), args.clone());
        }
        p
    }

    /// Builds a configuration from Go's `EncryptConfig.Parameters`.
    ///
    /// # Errors
    /// [`Error::Config`] if a recipient name is not UTF-8.
    pub fn from_parameters(params: &Parameters) -> Result<Self, Error> {
        let mut ec = Self::default();
        for (key, values) in params {
            let values = values.clone();
            match key.as_str() {
                keys::PUBKEYS => ec.jwe_public_keys = values,
                keys::X509S => ec.pkcs7_certificates = values,
                keys::GPG_RECIPIENTS => {
                    ec.gpg_recipients = values
                        .into_iter()
                        .map(|v| utf8(key, v))
                        .collect::<Result<_, _>>()?;
                }
                keys::GPG_PUBKEYRINGFILE => ec.gpg_public_keyring = values.into_iter().next(),
                keys::PKCS11_PUBKEYS => ec.pkcs11_public_keys = values,
                keys::PKCS11_YAMLS => ec.pkcs11_yamls = values,
                // Go keeps this decryption-side key in the encryption bag for token use.
                keys::PKCS11_CONFIG => ec.decrypt.pkcs11_config = values.into_iter().next(),
                _ => {
                    ec.key_providers.insert(key.clone(), values);
                }
            }
        }
        Ok(ec)
    }
}

impl DecryptConfig {
    /// Whether no key of any kind was given.
    pub fn is_empty(&self) -> bool {
        self.private_keys.is_empty()
            && self.certificates.is_empty()
            && self.gpg_private_keys.is_empty()
            && self.pkcs11_yamls.is_empty()
            && self.key_providers.is_empty()
    }

    /// This configuration as Go's `DecryptConfig.Parameters`. The result holds secrets
    /// (private keys and passwords) in plain `Vec`s: hand it only to code that needs them.
    pub fn to_parameters(&self) -> Parameters {
        let mut p = Parameters::new();
        let (keys, pwds) = split_keys(&self.private_keys);
        put(&mut p, keys::PRIVKEYS, keys);
        put(&mut p, keys::PRIVKEYS_PASSWORDS, pwds);
        put(&mut p, keys::X509S, self.certificates.clone());
        let (keys, pwds) = split_keys(&self.gpg_private_keys);
        put(&mut p, keys::GPG_PRIVATEKEYS, keys);
        put(&mut p, keys::GPG_PRIVATEKEYS_PASSWORDS, pwds);
        put(
            &mut p,
            keys::PKCS11_YAMLS,
            self.pkcs11_yamls
                .iter()
                .map(|y| y.expose().to_vec())
                .collect(),
        );
        put(
            &mut p,
            keys::PKCS11_CONFIG,
            self.pkcs11_config.iter().cloned().collect(),
        );
        for (name, args) in &self.key_providers {
            p.insert(name.clone(), args.clone());
        }
        p
    }

    /// Builds a configuration from Go's `DecryptConfig.Parameters`.
    ///
    /// # Errors
    /// [`Error::Config`] if a password list's length differs from its key list's, as Go
    /// requires, or a password is not UTF-8.
    pub fn from_parameters(params: &Parameters) -> Result<Self, Error> {
        let mut dc = Self::default();
        let empty = Vec::new();
        let get = |k: &str| params.get(k).unwrap_or(&empty);
        dc.private_keys = join_keys(
            keys::PRIVKEYS,
            get(keys::PRIVKEYS),
            get(keys::PRIVKEYS_PASSWORDS),
        )?;
        dc.gpg_private_keys = join_keys(
            keys::GPG_PRIVATEKEYS,
            get(keys::GPG_PRIVATEKEYS),
            get(keys::GPG_PRIVATEKEYS_PASSWORDS),
        )?;
        dc.certificates = get(keys::X509S).clone();
        dc.pkcs11_yamls = get(keys::PKCS11_YAMLS)
            .iter()
            .map(|y| SecretBytes::copy_from(y))
            .collect();
        dc.pkcs11_config = get(keys::PKCS11_CONFIG).first().cloned();
        for (key, values) in params {
            if ![
                keys::PRIVKEYS,
                keys::PRIVKEYS_PASSWORDS,
                keys::GPG_PRIVATEKEYS,
                keys::GPG_PRIVATEKEYS_PASSWORDS,
                keys::X509S,
                keys::PKCS11_YAMLS,
                keys::PKCS11_CONFIG,
            ]
            .contains(&key.as_str())
            {
                dc.key_providers.insert(key.clone(), values.clone());
            }
        }
        Ok(dc)
    }
}

fn put(p: &mut Parameters, key: &str, values: Vec<Vec<u8>>) {
    if !values.is_empty() {
        p.insert(key.to_owned(), values);
    }
}

fn utf8(key: &str, v: Vec<u8>) -> Result<String, Error> {
    String::from_utf8(v).map_err(|_| Error::Config {
        scheme: "config".to_owned(),
        reason: format!("a value of parameter {key:?} is not UTF-8"),
    })
}

fn split_keys(keys: &[KeyFile]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    keys.iter()
        .map(|k| {
            (
                k.data.expose().to_vec(),
                k.password
                    .as_ref()
                    .map(|p| p.expose_secret().as_bytes().to_vec())
                    .unwrap_or_default(),
            )
        })
        .unzip()
}

fn join_keys(key: &str, data: &[Vec<u8>], pwds: &[Vec<u8>]) -> Result<Vec<KeyFile>, Error> {
    if !pwds.is_empty() && pwds.len() != data.len() {
        return Err(Error::Config {
            scheme: "config".to_owned(),
            reason: format!(
                "{} {key} but {} passwords: the lengths must match",
                data.len(),
                pwds.len()
            ),
        });
    }
    data.iter()
        .enumerate()
        .map(|(i, d)| {
            let data = SecretBytes::copy_from(d);
            match pwds.get(i).filter(|p| !p.is_empty()) {
                None => Ok(KeyFile::new(data)),
                Some(p) => Ok(KeyFile::with_password(
                    data,
                    SecretString::from(utf8(key, p.clone())?),
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs11_key_files_stay_out_of_debug() {
        let mut ec = EncryptConfig::default();
        ec.pkcs11_yamls
            .push(b"pkcs11:\n  uri: pkcs11:token=t;object=k?pin-value=s3cret".to_vec());
        ec.decrypt.private_keys.push(KeyFile::with_password(
            b"key".to_vec(),
            SecretString::from("hunter2"),
        ));
        let shown = format!("{ec:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(shown.contains("[1 REDACTED]"), "{shown}");
    }

    #[test]
    fn decrypt_parameters_round_trip() {
        let mut dc = DecryptConfig::default();
        dc.private_keys.push(KeyFile::new(b"k1".to_vec()));
        dc.private_keys.push(KeyFile::with_password(
            b"k2".to_vec(),
            SecretString::from("pw"),
        ));
        dc.key_providers
            .insert("kms".to_owned(), vec![b"Enabled".to_vec()]);
        let p = dc.to_parameters();
        assert_eq!(p["privkeys-passwords"], vec![b"".to_vec(), b"pw".to_vec()]);
        let back = DecryptConfig::from_parameters(&p).unwrap();
        assert_eq!(back.private_keys.len(), 2);
        assert!(back.private_keys[0].password().is_none());
        assert_eq!(
            back.private_keys[1].password().unwrap().expose_secret(),
            "pw"
        );
        assert_eq!(back.key_providers["kms"], vec![b"Enabled".to_vec()]);
    }

    #[test]
    fn mismatched_password_count_is_an_error() {
        let mut p = Parameters::new();
        p.insert("privkeys".into(), vec![b"a".to_vec(), b"b".to_vec()]);
        p.insert("privkeys-passwords".into(), vec![b"x".to_vec()]);
        let err = DecryptConfig::from_parameters(&p).unwrap_err();
        assert!(err.to_string().contains("lengths must match"), "{err}");
    }

    #[test]
    fn debug_redacts_keys_and_passwords() {
        let k = KeyFile::with_password(b"SECRETKEY".to_vec(), SecretString::from("PASSWORD"));
        let s = format!("{:?}", DecryptConfig::default().with_private_keys(vec![k]));
        assert!(!s.contains("SECRETKEY") && !s.contains("PASSWORD"), "{s}");
    }

    #[test]
    fn unknown_encrypt_parameters_are_providers() {
        let mut p = Parameters::new();
        p.insert("pubkeys".into(), vec![b"pk".to_vec()]);
        p.insert("my-kms".into(), vec![b"Enabled".to_vec()]);
        let ec = EncryptConfig::from_parameters(&p).unwrap();
        assert_eq!(ec.jwe_public_keys, vec![b"pk".to_vec()]);
        assert!(ec.key_providers.contains_key("my-kms"));
        assert_eq!(ec.to_parameters(), p);
    }
}
