//! The shared `KeyWrapper` conformance suite (`ocicrypt_keywrap::conformance`) against the
//! OpenPGP scheme, with the keys of `tests/data` (see its README).

use ocicrypt_keywrap::conformance::{self, Capability, Fixture, Passwords, Recipient};
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, KeyFile};
use ocicrypt_keywrap_pgp::PgpKeyWrapper;

macro_rules! data {
    ($name:literal) => {
        include_bytes!(concat!("data/", $name)).as_slice()
    };
}

/// A: alice (RSA-3072); B: bob (cv25519); unrelated: dave (RSA-2048); passwords: carol,
/// whose secret keys are protected by `carol-pass`. All are looked up in one keyring.
struct Pgp;

fn keyring() -> Vec<u8> {
    [
        data!("alice.pub.gpg"),
        data!("bob.pub.gpg"),
        data!("carol.pub.gpg"),
        data!("dave.pub.gpg"),
    ]
    .concat()
}

fn encrypt_to(names: Vec<String>) -> EncryptConfig {
    EncryptConfig::default()
        .with_gpg_recipients(names)
        .with_gpg_public_keyring(Some(keyring()))
}

fn secret_keys(files: Vec<KeyFile>) -> DecryptConfig {
    DecryptConfig::default().with_gpg_private_keys(files)
}

fn carol(password: Option<&str>) -> DecryptConfig {
    secret_keys(vec![conformance::key_file(
        data!("carol.sec.gpg"),
        password,
    )])
}

impl Fixture for Pgp {
    type Wrapper = PgpKeyWrapper;

    fn wrapper(&self) -> &PgpKeyWrapper {
        &PgpKeyWrapper
    }

    fn encrypt_for(&self, recipients: &[Recipient]) -> EncryptConfig {
        encrypt_to(
            recipients
                .iter()
                .map(|r| match r {
                    Recipient::A => "alice@example.com".to_owned(),
                    Recipient::B => "bob@example.com".to_owned(),
                })
                .collect(),
        )
    }

    fn decrypt_with(&self, recipient: Recipient) -> DecryptConfig {
        secret_keys(vec![KeyFile::new(match recipient {
            Recipient::A => data!("alice.sec.gpg").to_vec(),
            Recipient::B => data!("bob.sec.gpg").to_vec(),
        })])
    }

    fn decrypt_unrelated(&self) -> DecryptConfig {
        secret_keys(vec![KeyFile::new(data!("dave.sec.gpg").to_vec())])
    }

    fn many_recipients(&self) -> Capability<()> {
        Capability::Supported(())
    }

    fn passwords(&self) -> Capability<Passwords> {
        let encrypt = encrypt_to(vec!["carol@example.com".to_owned()]);
        Capability::Supported(conformance::passwords_of(encrypt, carol, "carol-pass"))
    }
}

#[test]
fn pgp_conforms() {
    conformance::assert_conforms_skipping(&Pgp, &[]);
}
