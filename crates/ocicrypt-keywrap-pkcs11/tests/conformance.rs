//! The shared `KeyWrapper` conformance suite (`ocicrypt_keywrap::conformance`) against the
//! pkcs11 scheme on a SoftHSM2 token (see `common/mod.rs`; fails, never skips, without
//! SoftHSM).

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{PIN, SoftHsm, policy, rsa_key};
use ocicrypt_keywrap::conformance::{self, Capability, Fixture, Passwords, Recipient};
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, SecretBytes};
use ocicrypt_keywrap_pkcs11::{OaepHash, Pkcs11KeyWrapper};

/// One token with three key pairs: `a` (A, wrapped for on the token), `b` (B, wrapped for
/// in software with its public key) and `c` (the unrelated key). RSA-OAEP with SHA-1: the
/// only hash SoftHSM 2.6 does.
struct Pkcs11 {
    hsm: SoftHsm,
    wrapper: Pkcs11KeyWrapper,
}

impl Pkcs11 {
    fn new() -> Self {
        let hsm = SoftHsm::new("conformance");
        for (n, label, id) in [(0, "a", "01"), (1, "b", "02"), (2, "c", "03")] {
            hsm.import(rsa_key(n), label, id);
        }
        Self {
            hsm,
            wrapper: Pkcs11KeyWrapper::with_oaep_hash(OaepHash::Sha1),
        }
    }

    /// The private key `label` on the token, as a key file with the PIN.
    fn private(&self, label: &str) -> DecryptConfig {
        let uri = format!(
            "pkcs11:token={};object={label};type=private?module-name=softhsm2&pin-value={PIN}",
            self.hsm.label
        );
        self.decrypt_empty()
            .with_pkcs11_yamls(vec![SecretBytes::new(self.hsm.key_file(&uri))])
    }
}

impl Fixture for Pkcs11 {
    type Wrapper = Pkcs11KeyWrapper;

    fn wrapper(&self) -> &Pkcs11KeyWrapper {
        &self.wrapper
    }

    fn encrypt_for(&self, recipients: &[Recipient]) -> EncryptConfig {
        let mut ec = EncryptConfig::default()
            .with_decrypt(DecryptConfig::default().with_pkcs11_config(Some(policy().to_yaml())));
        for r in recipients {
            match r {
                Recipient::A => ec.pkcs11_yamls.push(self.hsm.key_file(&format!(
                    "pkcs11:token={};object=a?module-name=softhsm2",
                    self.hsm.label
                ))),
                Recipient::B => ec
                    .pkcs11_public_keys
                    .push(rsa_key(1).public_key_to_pem().unwrap()),
            }
        }
        ec
    }

    fn decrypt_with(&self, recipient: Recipient) -> DecryptConfig {
        self.private(match recipient {
            Recipient::A => "a",
            Recipient::B => "b",
        })
    }

    fn decrypt_unrelated(&self) -> DecryptConfig {
        self.private("c")
    }

    /// The module policy, and no key file.
    fn decrypt_empty(&self) -> DecryptConfig {
        DecryptConfig::default().with_pkcs11_config(Some(policy().to_yaml()))
    }

    fn many_recipients(&self) -> Capability<()> {
        Capability::Supported(())
    }

    fn passwords(&self) -> Capability<Passwords> {
        Capability::Unsupported(
            "the PIN is part of the key file's pkcs11 URI, not a DecryptConfig password; a \
             missing or wrong PIN is a cause of NoMatchingKey (see the README)",
        )
    }
}

#[test]
fn pkcs11_on_softhsm_conforms() {
    conformance::assert_conforms_skipping(&Pkcs11::new(), &conformance::PASSWORD_CHECKS);
}
