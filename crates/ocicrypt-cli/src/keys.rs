//! The `-r SPEC` and `-k KEY` arguments; [`ocicrypt::helpers`] turns them into encryption
//! and decryption configs.

use anyhow::Result;
use clap::Args;
use ocicrypt::{DecryptConfig, EncryptConfig, helpers};

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
        Ok(helpers::encrypt_config(&self.recipients, &self.keys)?)
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
        Ok(helpers::decrypt_config(&self.keys)?)
    }
}
