//! The shared `KeyWrapper` conformance suite (`ocicrypt_keywrap::conformance`) against the
//! JWE scheme, with the keys of `tests/data` (see its README).

use ocicrypt_keywrap::conformance::{self, Capability, Fixture, Passwords, Recipient};
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, KeyFile};
use ocicrypt_keywrap_jwe::JweKeyWrapper;

macro_rules! data {
    ($name:literal) => {
        include_bytes!(concat!("data/", $name)).as_slice()
    };
}

/// A: RSA-2048 (also in `rsa2048-pbes2.pem`, encrypted with `password`); B: EC P-384;
/// unrelated: EC P-256.
struct Jwe;

fn public_key(r: Recipient) -> Vec<u8> {
    match r {
        Recipient::A => data!("rsa2048.pub.pem").to_vec(),
        Recipient::B => data!("ec-p384.pub.pem").to_vec(),
    }
}

fn keys(files: Vec<KeyFile>) -> DecryptConfig {
    DecryptConfig::default().with_private_keys(files)
}

fn encrypted_a(password: Option<&str>) -> DecryptConfig {
    keys(vec![conformance::key_file(
        data!("rsa2048-pbes2.pem"),
        password,
    )])
}

impl Fixture for Jwe {
    type Wrapper = JweKeyWrapper;

    fn wrapper(&self) -> &JweKeyWrapper {
        &JweKeyWrapper
    }

    fn encrypt_for(&self, recipients: &[Recipient]) -> EncryptConfig {
        EncryptConfig::default()
            .with_jwe_public_keys(recipients.iter().copied().map(public_key).collect())
    }

    fn decrypt_with(&self, recipient: Recipient) -> DecryptConfig {
        keys(vec![KeyFile::new(match recipient {
            Recipient::A => data!("rsa2048.pem").to_vec(),
            Recipient::B => data!("ec-p384.pem").to_vec(),
        })])
    }

    fn decrypt_unrelated(&self) -> DecryptConfig {
        keys(vec![KeyFile::new(data!("ec-p256-sec1.pem").to_vec())])
    }

    fn many_recipients(&self) -> Capability<()> {
        Capability::Supported(())
    }

    fn passwords(&self) -> Capability<Passwords> {
        let encrypt = self.encrypt_for(&[Recipient::A]);
        Capability::Supported(conformance::passwords_of(encrypt, encrypted_a, "password"))
    }
}

#[test]
fn jwe_conforms() {
    conformance::assert_conforms_skipping(&Jwe, &[]);
}
