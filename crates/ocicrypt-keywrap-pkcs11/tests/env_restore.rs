//! The key file's module environment is in place only during the token operation.
//! (A test binary of its own: no other test runs while it reads the environment.)

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{PIN, SoftHsm, policy, rsa_key};
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, KeyWrapper};
use ocicrypt_keywrap_pkcs11::{OaepHash, Pkcs11KeyWrapper};

#[test]
fn module_env_is_restored() {
    let before = std::env::var_os("SOFTHSM2_CONF");
    let hsm = SoftHsm::new("env");
    hsm.import(rsa_key(0), "mykey", "01");
    let w = Pkcs11KeyWrapper::with_oaep_hash(OaepHash::Sha1);
    let mut ec = EncryptConfig::default();
    ec.pkcs11_yamls.push(hsm.key_file(&format!(
        "pkcs11:token={};object=mykey?module-name=softhsm2",
        hsm.label
    )));
    ec.decrypt.pkcs11_config = Some(policy().to_yaml());
    let blob = w.wrap_keys(&ec, b"opts").unwrap().unwrap();
    assert_eq!(std::env::var_os("SOFTHSM2_CONF"), before);
    let mut dc = DecryptConfig::default();
    dc.pkcs11_yamls.push(
        hsm.key_file(&format!(
            "pkcs11:token={};object=mykey?module-name=softhsm2&pin-value={PIN}",
            hsm.label
        ))
        .into(),
    );
    dc.pkcs11_config = Some(policy().to_yaml());
    assert_eq!(w.unwrap_key(&dc, &blob).unwrap().expose(), b"opts");
    assert_eq!(std::env::var_os("SOFTHSM2_CONF"), before);
    // Without the module env, SoftHSM reads the usual config and finds no such token.
    let mut dc2 = dc.clone();
    dc2.pkcs11_yamls = vec![
        format!(
            "pkcs11: {{uri: 'pkcs11:token={};object=mykey?module-name=softhsm2&pin-value={PIN}'}}",
            hsm.label
        )
        .into_bytes()
        .into(),
    ];
    assert!(w.unwrap_key(&dc2, &blob).is_err());
}
