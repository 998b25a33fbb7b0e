//! The shared `KeyWrapper` conformance suite (`ocicrypt_keywrap::conformance`) against key
//! providers, over the command transport and over gRPC, with one provider written with the
//! SDK: AES-256-GCM under keys named by the request's arguments (`kms` = `a`, `b`, `c`).
//!
//! No libtest harness (see Cargo.toml): with `--serve-cmd` this binary is the command
//! provider and answers one request; without, it runs the suite over both transports.
//! Cargo builds it only with the features `cmd`, `sdk` and `sdk-grpc` (`required-features`),
//! which `cargo xtask ci` has: it tests with all features.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(feature = "sdk-grpc")]
mod common;

use std::process::ExitCode;

/// The argument that makes this binary the command provider.
#[cfg(feature = "sdk")]
const SERVE_CMD: &str = "--serve-cmd";

/// A provider with three AES-256 keys, picked by name from the request's arguments.
#[cfg(feature = "sdk")]
mod provider {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use ocicrypt_keyprovider::ProviderError;
    use ocicrypt_keyprovider::sdk::{KeyProvider, UnwrapRequest, WrapRequest};
    use ocicrypt_keywrap::SecretBytes;
    use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
    use serde_json::{Value, json};

    /// The provider's name in the configurations.
    pub(crate) const NAME: &str = "kms";

    /// Wraps for each key named in the `kms` arguments: the annotation is a JSON array of
    /// `{"kid": name, "wrapped": base64(nonce ‖ ciphertext ‖ tag)}`. Unwraps with the keys
    /// named in the `kms` arguments of the decryption, in order.
    pub(crate) struct Keyed;

    fn key(name: &[u8]) -> Result<[u8; 32], ProviderError> {
        match name {
            b"a" => Ok([0xa1; 32]),
            b"b" => Ok([0xb2; 32]),
            b"c" => Ok([0xc3; 32]),
            _ => Err(ProviderError::new("unknown key name")),
        }
    }

    fn names(args: Option<&[Vec<u8>]>) -> Result<&[Vec<u8>], ProviderError> {
        args.filter(|a| !a.is_empty())
            .ok_or_else(|| ProviderError::new("no key named in the kms arguments"))
    }

    fn open(key: &[u8; 32], wrapped: &str) -> Option<SecretBytes> {
        let blob = STANDARD.decode(wrapped).ok()?;
        let (nonce, rest) = blob.split_at_checked(12)?;
        let (ct, tag) = rest.split_at_checked(rest.len().checked_sub(16)?)?;
        decrypt_aead(Cipher::aes_256_gcm(), key, Some(nonce), &[], ct, tag)
            .ok()
            .map(SecretBytes::new)
    }

    impl KeyProvider for Keyed {
        fn wrap_key(&self, r: &WrapRequest) -> Result<Vec<u8>, ProviderError> {
            let mut entries = Vec::new();
            for name in names(r.args(NAME))? {
                let mut nonce = [0; 12];
                openssl::rand::rand_bytes(&mut nonce).unwrap();
                let mut tag = [0; 16];
                let ct = encrypt_aead(
                    Cipher::aes_256_gcm(),
                    &key(name)?,
                    Some(&nonce),
                    &[],
                    r.opts_data.expose(),
                    &mut tag,
                )
                .unwrap();
                entries.push(json!({
                    "kid": String::from_utf8_lossy(name),
                    "wrapped": STANDARD.encode([&nonce[..], &ct, &tag].concat()),
                }));
            }
            Ok(serde_json::to_vec(&entries).unwrap())
        }

        fn unwrap_key(&self, r: &UnwrapRequest) -> Result<SecretBytes, ProviderError> {
            let held = names(r.args(NAME))?;
            let entries: Vec<Value> = serde_json::from_slice(&r.annotation)
                .map_err(|_| ProviderError::new("not an annotation of this provider"))?;
            for name in held {
                let key = key(name)?;
                let kid = String::from_utf8_lossy(name);
                for e in &entries {
                    if e["kid"].as_str() == Some(&kid)
                        && let Some(opts) = e["wrapped"].as_str().and_then(|w| open(&key, w))
                    {
                        return Ok(opts);
                    }
                }
            }
            Err(ProviderError::new(
                "no key of this request opens the annotation",
            ))
        }
    }
}

/// The fixture: one wrapper for provider `kms`, over either transport.
#[cfg(any(all(feature = "cmd", feature = "sdk"), feature = "sdk-grpc"))]
mod fixture {
    use ocicrypt_keyprovider::KeyProviderKeyWrapper;
    use ocicrypt_keywrap::conformance::{
        self, Capability, Fixture, Passwords, Recipient, WrongKey,
    };
    use ocicrypt_keywrap::{DecryptConfig, EncryptConfig};

    use crate::provider::NAME;

    pub(crate) struct Provider(pub(crate) KeyProviderKeyWrapper);

    fn args(names: &[&str]) -> std::collections::BTreeMap<String, Vec<Vec<u8>>> {
        [(
            NAME.to_owned(),
            names.iter().map(|n| n.as_bytes().to_vec()).collect(),
        )]
        .into()
    }

    fn name(r: Recipient) -> &'static str {
        match r {
            Recipient::A => "a",
            Recipient::B => "b",
        }
    }

    impl Fixture for Provider {
        type Wrapper = KeyProviderKeyWrapper;

        fn wrapper(&self) -> &KeyProviderKeyWrapper {
            &self.0
        }

        fn encrypt_for(&self, recipients: &[Recipient]) -> EncryptConfig {
            let names: Vec<_> = recipients.iter().copied().map(name).collect();
            EncryptConfig::default().with_key_providers(args(&names))
        }

        fn decrypt_with(&self, recipient: Recipient) -> DecryptConfig {
            DecryptConfig::default().with_key_providers(args(&[name(recipient)]))
        }

        fn decrypt_unrelated(&self) -> DecryptConfig {
            DecryptConfig::default().with_key_providers(args(&["c"]))
        }

        fn many_recipients(&self) -> Capability<()> {
            Capability::Supported(())
        }

        fn passwords(&self) -> Capability<Passwords> {
            Capability::Unsupported(
                "a key provider holds its own keys; the protocol has no password to pass",
            )
        }

        fn wrong_key(&self) -> WrongKey {
            WrongKey::Backend(
                "a provider's refusal is an error answer (a failed program, a gRPC status) \
                 like any other failure",
            )
        }
    }

    /// Runs the suite; every check but the password ones must run.
    pub(crate) fn run(transport: &str, wrapper: KeyProviderKeyWrapper) {
        eprintln!("over {transport}:");
        conformance::assert_conforms_skipping(&Provider(wrapper), &conformance::PASSWORD_CHECKS);
    }
}

fn main() -> ExitCode {
    #[cfg(feature = "sdk")]
    if std::env::args().nth(1).as_deref() == Some(SERVE_CMD) {
        return match ocicrypt_keyprovider::sdk::serve_cmd(&provider::Keyed) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }

    #[cfg(all(feature = "cmd", feature = "sdk"))]
    {
        use ocicrypt_keyprovider::{KeyProviderKeyWrapper, Options, ProviderConfig};
        let exe = std::env::current_exe().unwrap();
        let config = ProviderConfig::command(exe, vec![SERVE_CMD.to_owned()]);
        let wrapper = KeyProviderKeyWrapper::new(provider::NAME, config, Options::default());
        fixture::run("the command transport", wrapper.unwrap());
    }
    #[cfg(not(all(feature = "cmd", feature = "sdk")))]
    eprintln!(
        "KeyWrapper conformance of key providers over the command transport: NOT RUN, it \
         needs the features `cmd` and `sdk` (cargo xtask ci tests with --all-features)"
    );

    #[cfg(feature = "sdk-grpc")]
    {
        use std::sync::Arc;
        use std::time::Duration;

        use ocicrypt_keyprovider::{KeyProviderKeyWrapper, Options, ProviderConfig};
        let server = common::Server::start(Arc::new(provider::Keyed), None);
        let config = ProviderConfig::grpc(server.addr.to_string(), None);
        let options = Options::default().timeout(Duration::from_secs(10));
        let wrapper = KeyProviderKeyWrapper::new(provider::NAME, config, options);
        fixture::run("gRPC", wrapper.unwrap());
    }
    #[cfg(not(feature = "sdk-grpc"))]
    eprintln!(
        "KeyWrapper conformance of key providers over gRPC: NOT RUN, it needs the feature \
         `sdk-grpc` (cargo xtask ci tests with --all-features)"
    );

    ExitCode::SUCCESS
}
