//! The pkcs11 scheme against a real SoftHSM2 token (see `common/mod.rs`).

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::field_reassign_with_default
)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{PIN, SoftHsm, module, policy, rsa_key};
use ocicrypt_keywrap::{CauseKind, DecryptConfig, EncryptConfig, Error, KeyWrapper};
use ocicrypt_keywrap_pkcs11::{OaepHash, Pkcs11Config, Pkcs11KeyWrapper};
use openssl::encrypt::Decrypter;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Padding;

const OPTS: &[u8] =
    br#"{"symkey":"c2VjcmV0","digest":"sha256:00","cipheroptions":{"nonce":"AA=="}}"#;
const SHA1: Pkcs11KeyWrapper = Pkcs11KeyWrapper::with_oaep_hash(OaepHash::Sha1);
const SHA256: Pkcs11KeyWrapper = Pkcs11KeyWrapper::with_oaep_hash(OaepHash::Sha256);

/// A token labelled `label` holding key 0 as `mykey` (id 01).
fn token(label: &str) -> SoftHsm {
    let hsm = SoftHsm::new(label);
    hsm.import(rsa_key(0), "mykey", "01");
    hsm
}

fn public_uri(hsm: &SoftHsm, object: &str) -> String {
    format!(
        "pkcs11:token={};object={object}?module-name=softhsm2",
        hsm.label
    )
}

fn private_uri(hsm: &SoftHsm, object: &str) -> String {
    format!(
        "pkcs11:token={};object={object};type=private?module-name=softhsm2&pin-value={PIN}",
        hsm.label
    )
}

fn ec_token(hsm: &SoftHsm, uri: &str) -> EncryptConfig {
    let mut ec = EncryptConfig::default();
    ec.pkcs11_yamls.push(hsm.key_file(uri));
    ec.decrypt.pkcs11_config = Some(policy().to_yaml());
    ec
}

fn ec_public(key: &PKey<Private>) -> EncryptConfig {
    let mut ec = EncryptConfig::default();
    ec.pkcs11_public_keys.push(key.public_key_to_pem().unwrap());
    ec
}

fn dc(keys: &[Vec<u8>]) -> DecryptConfig {
    let mut dc = DecryptConfig::default();
    dc.pkcs11_yamls = keys.iter().map(|k| k.clone().into()).collect();
    dc.pkcs11_config = Some(policy().to_yaml());
    dc
}

fn blob_ciphertexts(blob: &[u8]) -> Vec<(Vec<u8>, String)> {
    let v: serde_json::Value = serde_json::from_slice(blob).unwrap();
    v["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                STANDARD.decode(r["blob"].as_str().unwrap()).unwrap(),
                r["hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn openssl_decrypt(key: &PKey<Private>, md: MessageDigest, ct: &[u8]) -> Vec<u8> {
    let mut d = Decrypter::new(key).unwrap();
    d.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
    d.set_rsa_oaep_md(md).unwrap();
    d.set_rsa_mgf1_md(md).unwrap();
    let mut out = vec![0; d.decrypt_len(ct).unwrap()];
    let n = d.decrypt(ct, &mut out).unwrap();
    out.truncate(n);
    out
}

fn causes(err: &Error) -> String {
    match err {
        Error::NoMatchingKey { causes, .. } => causes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("expected NoMatchingKey, got {other}"),
    }
}

#[test]
fn wrap_on_token_unwrap_on_token_sha1() {
    let hsm = token("wrap-token");
    let blob = SHA1
        .wrap_keys(&ec_token(&hsm, &public_uri(&hsm, "mykey")), OPTS)
        .unwrap()
        .unwrap();
    let cts = blob_ciphertexts(&blob);
    assert_eq!(cts.len(), 1);
    assert_eq!(cts[0].1, "sha1");
    // The token's RSA-OAEP is standard: OpenSSL opens it with the same key.
    assert_eq!(
        openssl_decrypt(rsa_key(0), MessageDigest::sha1(), &cts[0].0),
        OPTS
    );
    let opts = SHA1
        .unwrap_key(&dc(&[hsm.key_file(&private_uri(&hsm, "mykey"))]), &blob)
        .unwrap();
    assert_eq!(opts.expose(), OPTS);
}

#[test]
fn software_wrap_unwrap_on_token_sha1() {
    let hsm = token("sw-wrap");
    let blob = SHA1
        .wrap_keys(&ec_public(rsa_key(0)), OPTS)
        .unwrap()
        .unwrap();
    let key = hsm.key_file(&private_uri(&hsm, "mykey"));
    assert_eq!(SHA1.unwrap_key(&dc(&[key]), &blob).unwrap().expose(), OPTS);
}

/// SoftHSM 2.6 does RSA-OAEP with SHA-1 only, so SHA-256 is checked in software: the
/// software wrap opens with OpenSSL, and the token refuses it with CKR_ARGUMENTS_BAD.
#[test]
fn sha256_in_software_and_softhsm_refusal() {
    let hsm = token("sha256");
    let blob = SHA256
        .wrap_keys(&ec_public(rsa_key(0)), OPTS)
        .unwrap()
        .unwrap();
    let cts = blob_ciphertexts(&blob);
    assert_eq!(cts[0].1, "sha256");
    assert_eq!(
        openssl_decrypt(rsa_key(0), MessageDigest::sha256(), &cts[0].0),
        OPTS
    );
    let err = SHA256
        .unwrap_key(&dc(&[hsm.key_file(&private_uri(&hsm, "mykey"))]), &blob)
        .unwrap_err();
    let c = causes(&err);
    assert!(
        c.contains("C_Decrypt (sha256) failed") && c.contains("ArgumentsBad"),
        "{c}"
    );
    let err = SHA256
        .wrap_keys(&ec_token(&hsm, &public_uri(&hsm, "mykey")), OPTS)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRecipient { .. }), "{err}");
    assert!(err.to_string().contains("ArgumentsBad"), "{err}");
}

#[test]
fn several_recipients_and_keys() {
    let hsm = token("multi");
    hsm.import(rsa_key(1), "other", "02");
    // Recipients: key 1 in software, key 0 on the token.
    let mut ec = ec_token(&hsm, &public_uri(&hsm, "mykey"));
    ec.pkcs11_public_keys
        .push(rsa_key(1).public_key_to_pem().unwrap());
    let blob = SHA1.wrap_keys(&ec, OPTS).unwrap().unwrap();
    assert_eq!(blob_ciphertexts(&blob).len(), 2);
    // A key that fails (missing) and then one that works.
    let keys = [
        hsm.key_file(&private_uri(&hsm, "absent")),
        hsm.key_file(&private_uri(&hsm, "other")),
    ];
    assert_eq!(SHA1.unwrap_key(&dc(&keys), &blob).unwrap().expose(), OPTS);
    // A key that opens no recipient: every attempt is reported.
    let hsm2 = SoftHsm::new("stranger");
    hsm2.import(rsa_key(0), "mykey", "01");
    let blob = SHA1
        .wrap_keys(&ec_public(rsa_key(1)), OPTS)
        .unwrap()
        .unwrap();
    let err = SHA1
        .unwrap_key(&dc(&[hsm2.key_file(&private_uri(&hsm2, "mykey"))]), &blob)
        .unwrap_err();
    let c = causes(&err);
    assert!(c.contains("recipient 0: C_Decrypt (sha1) failed"), "{c}");
}

#[test]
fn object_by_id_slot_id_pin_source_and_module_path() {
    let hsm = token("by-id");
    let blob = SHA1
        .wrap_keys(&ec_public(rsa_key(0)), OPTS)
        .unwrap()
        .unwrap();
    let pin_file = hsm.path("pin.txt");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let uris = [
        format!(
            "pkcs11:token={};id=%01?module-name=softhsm2&pin-value={PIN}",
            hsm.label
        ),
        format!(
            "pkcs11:slot-id={};object=mykey?module-name=softhsm2&pin-value={PIN}",
            hsm.slot
        ),
        format!(
            "pkcs11:token={};object=mykey?module-name=softhsm2&pin-source={}",
            hsm.label,
            pin_file.display()
        ),
        format!(
            "pkcs11:token={};object=mykey?module-name=softhsm2&pin-source=file://{}",
            hsm.label,
            pin_file.display()
        ),
        format!(
            "pkcs11:token={};object=mykey?module-path={}&pin-value={PIN}",
            hsm.label,
            module().display()
        ),
    ];
    for uri in uris {
        let opts = SHA1
            .unwrap_key(&dc(&[hsm.key_file(&uri)]), &blob)
            .unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert_eq!(opts.expose(), OPTS);
    }
}

#[test]
fn wrong_pin() {
    let hsm = token("wrong-pin");
    let blob = SHA1
        .wrap_keys(&ec_public(rsa_key(0)), OPTS)
        .unwrap()
        .unwrap();
    let uri = format!(
        "pkcs11:token={};object=mykey?module-name=softhsm2&pin-value=0000",
        hsm.label
    );
    let err = SHA1
        .unwrap_key(&dc(&[hsm.key_file(&uri)]), &blob)
        .unwrap_err();
    let c = causes(&err);
    assert!(
        c.contains("could not log in") && c.contains("PinIncorrect"),
        "{c}"
    );
    assert!(!format!("{err:?}").contains("0000"), "{err:?}");
    // No PIN at all.
    let uri = format!(
        "pkcs11:token={};object=mykey?module-name=softhsm2",
        hsm.label
    );
    let err = SHA1
        .unwrap_key(&dc(&[hsm.key_file(&uri)]), &blob)
        .unwrap_err();
    assert!(
        causes(&err).contains("missing PIN for private key operation"),
        "{err}"
    );
}

#[test]
fn missing_and_ambiguous_objects() {
    let hsm = token("objects");
    hsm.import(rsa_key(1), "dup", "02");
    hsm.import(rsa_key(1), "dup", "03");
    let blob = SHA1
        .wrap_keys(&ec_public(rsa_key(1)), OPTS)
        .unwrap()
        .unwrap();
    let err = SHA1
        .unwrap_key(&dc(&[hsm.key_file(&private_uri(&hsm, "nokey"))]), &blob)
        .unwrap_err();
    assert!(
        causes(&err).contains("could not find any private key with label 'nokey'"),
        "{err}"
    );
    let err = SHA1
        .unwrap_key(&dc(&[hsm.key_file(&private_uri(&hsm, "dup"))]), &blob)
        .unwrap_err();
    assert!(
        causes(&err).contains("there are too many (=2) private keys with label 'dup'"),
        "{err}"
    );
    // The id picks one of them.
    let uri = format!(
        "pkcs11:token={};object=dup;id=%03?module-name=softhsm2&pin-value={PIN}",
        hsm.label
    );
    assert_eq!(
        SHA1.unwrap_key(&dc(&[hsm.key_file(&uri)]), &blob)
            .unwrap()
            .expose(),
        OPTS
    );
    // The same on the encryption side is an error at once.
    let err = SHA1
        .wrap_keys(&ec_token(&hsm, &public_uri(&hsm, "dup")), OPTS)
        .unwrap_err();
    assert!(
        err.to_string().contains("too many (=2) public keys"),
        "{err}"
    );
    let err = SHA1
        .wrap_keys(&ec_token(&hsm, &public_uri(&hsm, "nokey")), OPTS)
        .unwrap_err();
    assert!(
        err.to_string().contains("could not find any public key"),
        "{err}"
    );
}

#[test]
fn slot_and_token_selection_errors() {
    let hsm = token("selection");
    let blob = SHA1
        .wrap_keys(&ec_public(rsa_key(0)), OPTS)
        .unwrap()
        .unwrap();
    let cases = [
        (
            format!("pkcs11:object=mykey?module-name=softhsm2&pin-value={PIN}"),
            "missing 'token' attribute since 'slot-id' was not given",
        ),
        (
            format!("pkcs11:token=nosuch;object=mykey?module-name=softhsm2&pin-value={PIN}"),
            "no token labelled 'nosuch' found",
        ),
        (
            format!(
                "pkcs11:token={};type=private?module-name=softhsm2&pin-value={PIN}",
                hsm.label
            ),
            "neither 'id' nor 'object'",
        ),
        (
            format!("pkcs11:slot-id=4294967296;object=mykey?module-name=softhsm2&pin-value={PIN}"),
            "larger than 32 bits",
        ),
        (
            format!(
                "pkcs11:token={};object=mykey?module-name=nosuchmodule&pin-value={PIN}",
                hsm.label
            ),
            "no module named 'nosuchmodule'",
        ),
        (
            format!(
                "pkcs11:token={};object=mykey?pin-value={PIN}&pin-source=/x",
                hsm.label
            ),
            // The key file does not parse (two PIN attributes): skipped.
            "pkcs11 key file 1: skipped: pkcs11: invalid private key: not a pkcs11 key file",
        ),
    ];
    for (uri, want) in cases {
        let err = SHA1
            .unwrap_key(&dc(&[hsm.key_file(&uri)]), &blob)
            .unwrap_err();
        assert!(causes(&err).contains(want), "{uri}: {err}");
    }
}

#[test]
fn module_policy() {
    let hsm = token("policy");
    let blob = SHA1
        .wrap_keys(&ec_public(rsa_key(0)), OPTS)
        .unwrap()
        .unwrap();
    let key = hsm.key_file(&private_uri(&hsm, "mykey"));
    let strict = Pkcs11Config {
        allowed_module_paths: vec!["/nonexistent/".to_owned()],
        ..policy()
    };
    let mut d = dc(std::slice::from_ref(&key));
    d.pkcs11_config = Some(strict.to_yaml());
    let err = SHA1.unwrap_key(&d, &blob).unwrap_err();
    let c = causes(&err);
    assert!(
        c.contains("libsofthsm2.so") && c.contains("not allowed") && c.contains("/nonexistent/"),
        "{c}"
    );
    // No policy at all.
    d.pkcs11_config = None;
    let err = SHA1.unwrap_key(&d, &blob).unwrap_err();
    assert!(causes(&err).contains("no PKCS#11 module policy"), "{err}");
    // The same for encryption.
    let mut ec = ec_token(&hsm, &public_uri(&hsm, "mykey"));
    ec.decrypt.pkcs11_config = Some(strict.to_yaml());
    let err = SHA1.wrap_keys(&ec, OPTS).unwrap_err();
    assert!(matches!(err, Error::InvalidRecipient { .. }), "{err}");
    assert!(err.to_string().contains("not allowed"), "{err}");
    // The `internal` policy allows /usr/lib/softhsm/, as a whole ocicrypt.conf would.
    d.pkcs11_config = Some(b"pkcs11:\n  module-directories: [/usr/lib/softhsm/]\n  allowed-module-paths: [/usr/lib/softhsm/]\n".to_vec());
    assert_eq!(SHA1.unwrap_key(&d, &blob).unwrap().expose(), OPTS);
    d.pkcs11_config = Some(Pkcs11Config::internal().to_yaml());
    assert_eq!(SHA1.unwrap_key(&d, &blob).unwrap().expose(), OPTS);
}

#[test]
fn bad_key_files() {
    let hsm = token("bad-files");
    let blob = SHA1
        .wrap_keys(&ec_public(rsa_key(0)), OPTS)
        .unwrap()
        .unwrap();
    for (file, want) in [
        (b"pkcs11: [".to_vec(), "not a pkcs11 key file"),
        (b"just text".to_vec(), "not a pkcs11 key file"),
        (hsm.key_file("pkcs11:slot-id=abc"), "slot-id"),
        (hsm.key_file("pkcs12:object=x"), "must start with"),
    ] {
        // Skipped, with the parser's error as the cause; the key after it opens the blob.
        let err = SHA1
            .unwrap_key(&dc(std::slice::from_ref(&file)), &blob)
            .unwrap_err();
        let Error::NoMatchingKey { causes, .. } = &err else {
            panic!("{err:?}")
        };
        let CauseKind::Unreadable(e) = &causes[0].kind else {
            panic!("{err:?}")
        };
        assert!(matches!(**e, Error::InvalidPrivateKey { .. }), "{err}");
        let source = std::error::Error::source(&**e).unwrap().to_string();
        assert!(source.contains(want), "{source}");
        let key = hsm.key_file(&private_uri(&hsm, "mykey"));
        let opts = SHA1.unwrap_key(&dc(&[file, key]), &blob).unwrap();
        assert_eq!(opts.expose(), OPTS);
    }
    let mut ec = EncryptConfig::default();
    ec.pkcs11_yamls
        .push(b"pkcs11: {uri: 'pkcs11:id=%zz'}".to_vec());
    let err = SHA1.wrap_keys(&ec, OPTS).unwrap_err();
    assert!(matches!(err, Error::InvalidRecipient { .. }), "{err}");
}

#[test]
fn blob_errors_on_a_real_key() {
    let hsm = token("blob-errors");
    let d = dc(&[hsm.key_file(&private_uri(&hsm, "mykey"))]);
    let err = SHA1
        .unwrap_key(&d, br#"{"version":1,"recipients":[]}"#)
        .unwrap_err();
    assert!(matches!(err, Error::MalformedBlob { .. }), "{err}");
    let err = SHA1
        .unwrap_key(
            &d,
            br#"{"version":0,"recipients":[{"version":0,"blob":"AAAA","hash":"sha512"}]}"#,
        )
        .unwrap_err();
    assert!(
        causes(&err).contains("unsupported OAEP hash 'sha512'"),
        "{err}"
    );
    // A Go blob from before v1.1.4 has no hash: SHA-1.
    let blob = SHA1
        .wrap_keys(&ec_public(rsa_key(0)), OPTS)
        .unwrap()
        .unwrap();
    let old = String::from_utf8(blob)
        .unwrap()
        .replace(r#","hash":"sha1""#, "");
    assert!(!old.contains("hash"));
    assert_eq!(SHA1.unwrap_key(&d, old.as_bytes()).unwrap().expose(), OPTS);
    // A tampered ciphertext fails the OAEP check on the token.
    let mut cts = blob_ciphertexts(
        &SHA1
            .wrap_keys(&ec_public(rsa_key(0)), OPTS)
            .unwrap()
            .unwrap(),
    );
    cts[0].0[10] ^= 1;
    let tampered = format!(
        r#"{{"version":0,"recipients":[{{"version":0,"blob":"{}","hash":"sha1"}}]}}"#,
        STANDARD.encode(&cts[0].0)
    );
    let err = SHA1.unwrap_key(&d, tampered.as_bytes()).unwrap_err();
    assert!(causes(&err).contains("C_Decrypt (sha1) failed"), "{err}");
}
