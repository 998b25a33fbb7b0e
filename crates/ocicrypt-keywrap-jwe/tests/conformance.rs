//! The shared `KeyWrapper` conformance suite (`ocicrypt_keywrap::conformance`) against the
//! JWE scheme, with the keys of `tests/data` (see its README).

use ocicrypt_keywrap::conformance::{self, Capability, Fixture, Passwords, Recipient};
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig};
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
        let key = match recipient {
            Recipient::A => data!("rsa2048.pem"),
            Recipient::B => data!("ec-p384.pem"),
        };
        conformance::private_key(key, None)
    }

    fn decrypt_unrelated(&self) -> DecryptConfig {
        conformance::private_key(data!("ec-p256-sec1.pem"), None)
    }

    fn many_recipients(&self) -> Capability<()> {
        Capability::Supported(())
    }

    fn passwords(&self) -> Capability<Passwords> {
        conformance::passwords_of_a(self, data!("rsa2048-pbes2.pem"), "password")
    }
}

#[test]
fn jwe_conforms() {
    conformance::assert_conforms_skipping(&Jwe, &[]);
}
