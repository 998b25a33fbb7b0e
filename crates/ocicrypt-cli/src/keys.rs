//! The `-r SPEC` and `-k KEY` arguments; [`ocicrypt::helpers`] turns them into encryption
//! and decryption configs.

use std::fmt;

use anyhow::Result;
use clap::Args;
use ocicrypt::{DecryptConfig, EncryptConfig, helpers};

/// `-r` and `-k` of the encrypt commands. (`Debug` shows no key spec: they may hold
/// passwords.)
#[derive(Args)]
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
        let ec = helpers::encrypt_config(&self.recipients, &self.keys)?;
        export_module_env(&ec.pkcs11_yamls, &ec.decrypt);
        Ok(ec)
    }
}

/// Sets the `module.env` of every PKCS#11 key file now, while this is the only thread, so
/// that no token operation changes the environment while worker threads run.
#[cfg(feature = "pkcs11")]
fn export_module_env(recipients: &[Vec<u8>], dc: &DecryptConfig) {
    ocicrypt::pkcs11::export_module_env(
        recipients
            .iter()
            .map(Vec::as_slice)
            .chain(dc.pkcs11_yamls.iter().map(|k| k.expose())),
    );
}

#[cfg(not(feature = "pkcs11"))]
fn export_module_env(_recipients: &[Vec<u8>], _dc: &DecryptConfig) {}

/// `-k` of the decrypt commands. (`Debug` shows no key spec: they may hold passwords.)
#[derive(Args)]
pub(crate) struct KeyArgs {
    /// Private key FILE[:PASSWORD] (repeatable); PASSWORD is pass=PW, file=PATH, fd=N,
    /// env=VAR or the password itself. Or provider:NAME[:ARGS] to ask a key provider.
    #[arg(short = 'k', long = "key", value_name = "KEY", required = true)]
    keys: Vec<String>,
}

impl KeyArgs {
    /// The decryption config these arguments describe.
    pub(crate) fn config(&self) -> Result<DecryptConfig> {
        let dc = helpers::decrypt_config(&self.keys)?;
        export_module_env(&[], &dc);
        Ok(dc)
    }
}

/// `-r` and `-k` of the rewrap commands: both required.
#[derive(Args)]
pub(crate) struct RewrapKeyArgs {
    /// New recipient (repeatable; same forms as for encrypt): the layers are wrapped for
    /// exactly these, and every earlier recipient loses access.
    #[arg(short = 'r', long = "recipient", value_name = "SPEC", required = true)]
    recipients: Vec<String>,
    /// Private key FILE[:PASSWORD] that opens the layers now (repeatable), or
    /// provider:NAME[:ARGS].
    #[arg(short = 'k', long = "key", value_name = "KEY", required = true)]
    keys: Vec<String>,
}

impl RewrapKeyArgs {
    /// The new recipients, with the keys that open the layers in `decrypt`.
    pub(crate) fn config(&self) -> Result<EncryptConfig> {
        let ec = helpers::encrypt_config(&self.recipients, &self.keys)?;
        export_module_env(&ec.pkcs11_yamls, &ec.decrypt);
        Ok(ec)
    }
}

impl fmt::Debug for RewrapKeyArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RewrapKeyArgs")
            .field("recipients", &self.recipients)
            .field("keys", &format_args!("[{} REDACTED]", self.keys.len()))
            .finish()
    }
}

impl fmt::Debug for RecipientArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientArgs")
            .field("recipients", &self.recipients)
            .field("keys", &format_args!("[{} REDACTED]", self.keys.len()))
            .finish()
    }
}

impl fmt::Debug for KeyArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyArgs")
            .field("keys", &format_args!("[{} REDACTED]", self.keys.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn passwords_stay_out_of_debug() {
        let cli = crate::Cli::try_parse_from([
            "ocicrypt",
            "image",
            "decrypt",
            "-k",
            "key.pem:pass=hunter2",
            "oci:a",
            "oci:b",
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }
}
