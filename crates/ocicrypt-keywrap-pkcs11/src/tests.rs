//! Tests that need no token.

use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, Error, KeyWrapper};
use openssl::encrypt::Decrypter;
use openssl::pkey::{PKey, Private};
use openssl::rsa::{Padding, Rsa};

use super::*;

fn rsa() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

fn openssl_decrypt(key: &PKey<Private>, hash: OaepHash, ct: &[u8]) -> Vec<u8> {
    let mut d = Decrypter::new(key).unwrap();
    d.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
    d.set_rsa_oaep_md(hash.digest()).unwrap();
    d.set_rsa_mgf1_md(hash.digest()).unwrap();
    let mut out = vec![0; d.decrypt_len(ct).unwrap()];
    let n = d.decrypt(ct, &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn software_wrap_is_go_json_and_decrypts_with_openssl() {
    let k1 = rsa();
    let k2 = rsa();
    for hash in [OaepHash::Sha1, OaepHash::Sha256] {
        let mut ec = EncryptConfig::default();
        ec.pkcs11_public_keys.push(k1.public_key_to_pem().unwrap());
        // DER and PKCS#1 work too, and either list may hold a plain key.
        ec.pkcs11_yamls
            .push(k2.rsa().unwrap().public_key_to_der_pkcs1().unwrap());
        let blob = Pkcs11KeyWrapper::with_oaep_hash(hash)
            .wrap_keys(&ec, b"private opts")
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&blob).unwrap();
        let r = v["recipients"].as_array().unwrap();
        assert_eq!(r.len(), 2);
        let b64 = |i: usize| STANDARD.decode(r[i]["blob"].as_str().unwrap()).unwrap();
        let expected = format!(
            r#"{{"version":0,"recipients":[{{"version":0,"blob":"{}","hash":"{n}"}},{{"version":0,"blob":"{}","hash":"{n}"}}]}}"#,
            r[0]["blob"].as_str().unwrap(),
            r[1]["blob"].as_str().unwrap(),
            n = hash.name()
        );
        assert_eq!(String::from_utf8(blob.clone()).unwrap(), expected);
        assert_eq!(openssl_decrypt(&k1, hash, &b64(0)), b"private opts");
        assert_eq!(openssl_decrypt(&k2, hash, &b64(1)), b"private opts");
    }
}

/// Plain public keys are read by the loader all schemes share, so an RSA public JWK (which
/// only jwe read before) is a recipient too.
#[test]
fn a_public_jwk_is_a_software_recipient() {
    let k = rsa();
    let b64 = |n: &openssl::bn::BigNumRef| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n.to_vec())
    };
    let rsa = k.rsa().unwrap();
    let jwk = format!(
        r#"{{"kty":"RSA","n":"{}","e":"{}"}}"#,
        b64(rsa.n()),
        b64(rsa.e())
    );
    let mut ec = EncryptConfig::default();
    ec.pkcs11_public_keys.push(jwk.into_bytes());
    let blob = Pkcs11KeyWrapper::with_oaep_hash(OaepHash::Sha256)
        .wrap_keys(&ec, b"private opts")
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&blob).unwrap();
    let ct = STANDARD
        .decode(v["recipients"][0]["blob"].as_str().unwrap())
        .unwrap();
    assert_eq!(openssl_decrypt(&k, OaepHash::Sha256, &ct), b"private opts");
}

#[test]
fn no_recipients_no_blob() {
    let w = Pkcs11KeyWrapper::new();
    assert!(
        w.wrap_keys(&EncryptConfig::default(), b"x")
            .unwrap()
            .is_none()
    );
    assert!(!w.has_recipients(&EncryptConfig::default()));
    assert!(!w.has_possible_keys(&DecryptConfig::default()));
    assert_eq!(w.scheme(), "pkcs11");
    assert_eq!(
        w.annotation_key(),
        "org.opencontainers.image.enc.keys.pkcs11"
    );
    assert_eq!(w.recipients(b"{}").unwrap(), ["[pkcs11]"]);
}

#[test]
fn oaep_hash_from_env_values() {
    assert_eq!(OaepHash::from_env_value(None).unwrap(), OaepHash::Sha256);
    assert_eq!(
        OaepHash::from_env_value(Some("")).unwrap(),
        OaepHash::Sha256
    );
    assert_eq!(
        OaepHash::from_env_value(Some("SHA256")).unwrap(),
        OaepHash::Sha256
    );
    assert_eq!(
        OaepHash::from_env_value(Some("Sha1")).unwrap(),
        OaepHash::Sha1
    );
    let err = OaepHash::from_env_value(Some("md5")).unwrap_err();
    assert!(matches!(err, Error::UnsupportedAlgorithm { .. }));
    assert!(
        err.to_string().contains("Unsupported OAEP hash 'md5'"),
        "{err}"
    );
    assert_eq!(OaepHash::from_blob(""), Some(OaepHash::Sha1));
    assert_eq!(OaepHash::from_blob("sha1"), Some(OaepHash::Sha1));
    assert_eq!(OaepHash::from_blob("sha256"), Some(OaepHash::Sha256));
    assert_eq!(OaepHash::from_blob("SHA256"), None);
}

#[test]
fn bad_recipients() {
    let ec_with = |k: Vec<u8>| {
        let mut ec = EncryptConfig::default();
        ec.pkcs11_public_keys.push(k);
        ec
    };
    let w = Pkcs11KeyWrapper::with_oaep_hash(OaepHash::Sha256);
    let ec_key = PKey::from_ec_key(
        openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let err = w
        .wrap_keys(&ec_with(ec_key.public_key_to_pem().unwrap()), b"x")
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRecipient { .. }), "{err}");
    assert!(err.to_string().contains("not an RSA key"), "{err}");
    let err = w
        .wrap_keys(&ec_with(b"garbage".to_vec()), b"x")
        .unwrap_err();
    assert!(err.to_string().contains("neither a public key"), "{err}");
    let bad_uri = b"pkcs11: {uri: 'pkcs11:object=a;object=b'}".to_vec();
    let err = w.wrap_keys(&ec_with(bad_uri), b"x").unwrap_err();
    assert!(matches!(err, Error::InvalidRecipient { .. }), "{err}");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("duplicate path attribute"), "{source}");
    // A key file without a policy cannot be used.
    let kf = b"pkcs11: {uri: 'pkcs11:token=t;object=k?module-name=softhsm2'}".to_vec();
    let err = w.wrap_keys(&ec_with(kf.clone()), b"x").unwrap_err();
    assert!(
        err.to_string().contains("no PKCS#11 module policy"),
        "{err}"
    );
    // A bad policy is a configuration error.
    let mut ec = ec_with(kf);
    ec.decrypt.pkcs11_config = Some(b"module-directories: 3".to_vec());
    let err = w.wrap_keys(&ec, b"x").unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
}

fn dc_with_key() -> DecryptConfig {
    let mut dc = DecryptConfig::default();
    dc.pkcs11_yamls.push(
        b"pkcs11: {uri: 'pkcs11:token=t;object=k?module-name=softhsm2&pin-value=1'}"
            .to_vec()
            .into(),
    );
    dc.pkcs11_config = Some(Pkcs11Config::internal().to_yaml());
    dc
}

#[test]
fn malformed_blobs() {
    let w = Pkcs11KeyWrapper::new();
    let dc = dc_with_key();
    for (blob, want) in [
        (&b"not json"[..], "could not parse the pkcs11 blob"),
        (b"[]", "could not parse the pkcs11 blob"),
        (b"{\"version\":-1}", "could not parse the pkcs11 blob"),
        (
            br#"{"version":1,"recipients":[]}"#,
            "version 1 but the maximum supported version is 0",
        ),
        (
            br#"{"version":0,"recipients":[{"version":2,"blob":"AA==","hash":"sha1"}]}"#,
            "recipient with version 2",
        ),
    ] {
        let err = w.unwrap_key(&dc, blob).unwrap_err();
        assert!(matches!(err, Error::MalformedBlob { .. }), "{err}");
        assert!(err.to_string().contains(want), "{err}");
    }
}

#[test]
fn unusable_recipients_are_causes() {
    let w = Pkcs11KeyWrapper::new();
    let err = w
        .unwrap_key(
            &dc_with_key(),
            br#"{"version":0,"recipients":[{"version":0,"blob":"AA==","hash":"md5"},{"version":0,"blob":"!!"},{"version":0,"blob":""}]}"#,
        )
        .unwrap_err();
    let Error::NoMatchingKey { causes, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        causes
            .iter()
            .all(|c| matches!(c.kind, CauseKind::BadRecipient(_))),
        "{causes:?}"
    );
    let causes: Vec<String> = causes.iter().map(ToString::to_string).collect();
    assert_eq!(causes.len(), 3, "{causes:?}");
    assert!(
        causes[0].contains("unsupported OAEP hash 'md5'"),
        "{causes:?}"
    );
    assert!(causes[1].contains("base64"), "{causes:?}");
    assert!(causes[2].contains("empty blob"), "{causes:?}");
}

/// A key file that does not parse is skipped, as in the other schemes (it used to stop
/// the search).
#[test]
fn unwrap_skips_key_files_that_do_not_parse() {
    let w = Pkcs11KeyWrapper::new();
    let blob = br#"{"version":0,"recipients":[]}"#;
    let err = w.unwrap_key(&dc_with_key(), blob).unwrap_err();
    assert!(
        err.to_string().contains("the blob has no recipients"),
        "{err}"
    );
    let err = w.unwrap_key(&DecryptConfig::default(), blob).unwrap_err();
    assert!(
        err.to_string().contains("no pkcs11 key file was given"),
        "{err}"
    );
    let mut dc = DecryptConfig::default();
    dc.pkcs11_yamls
        .push(b"pkcs11: {uri: 'nope'}".to_vec().into());
    let err = w.unwrap_key(&dc, blob).unwrap_err();
    let Error::NoMatchingKey { causes, .. } = &err else {
        panic!("{err:?}")
    };
    let CauseKind::Unreadable(e) = &causes[1].kind else {
        panic!("{err:?}")
    };
    assert!(matches!(**e, Error::InvalidPrivateKey { .. }), "{err}");
    assert_eq!(causes[1].key.as_deref(), Some("pkcs11 key file 1"));
    assert!(w.has_possible_keys(&dc));
}

#[test]
fn module_env_is_exported_once_up_front() {
    let name = "OCICRYPT_TEST_EXPORTED_MODULE_VAR";
    let yaml = format!(
        "pkcs11:\n  uri: pkcs11:token=t;object=k?module-name=softhsm2\nmodule:\n  env:\n    {name}: /tmp/softhsm2.conf\n"
    );
    let set = export_module_env([yaml.as_bytes(), b"not a key file".as_slice()]);
    assert_eq!(set, 1);
    assert_eq!(std::env::var(name).unwrap(), "/tmp/softhsm2.conf");
    // Already set: nothing changes, so later token operations change nothing either.
    assert_eq!(export_module_env([yaml.as_bytes()]), 0);
}

#[test]
fn key_file_errors_do_not_quote_the_file() {
    let bad = b"pkcs11: \"pkcs11:token=t;object=k?pin-value=s3cret\"\n";
    let err = Pkcs11KeyFile::parse(bad).unwrap_err().to_string();
    assert!(!err.contains("s3cret"), "{err}");
    assert!(err.contains("line 1"), "{err}");
}

#[path = "../tests/common/mod.rs"]
mod common;

/// How many token sessions this thread has opened since the last call.
fn sessions() -> usize {
    token::SESSIONS.with(std::cell::Cell::take)
}

/// A SoftHSM2 token labelled `label` holding key 0, and the URI of its private key.
fn token_with_key(label: &str) -> (common::SoftHsm, String) {
    let hsm = common::SoftHsm::new(label);
    hsm.import(common::rsa_key(0), "mykey", "01");
    let uri = format!(
        "pkcs11:token={};object=mykey;type=private?module-name=softhsm2&pin-value={}",
        hsm.label,
        common::PIN
    );
    (hsm, uri)
}

/// A config with these key files and the test module's policy.
fn dc_with(key_files: Vec<Vec<u8>>) -> DecryptConfig {
    let mut dc = DecryptConfig::default();
    dc.pkcs11_yamls = key_files.into_iter().map(Into::into).collect();
    dc.pkcs11_config = Some(common::policy().to_yaml());
    dc
}

/// Issue 14: a layer's blobs are tried in one token session (one login) per key, not one
/// per key and blob; a key file that cannot be read is skipped, as in the other schemes;
/// and when no blob opens, there is one error per blob, in order.
#[test]
fn one_token_session_per_key_for_all_blobs() {
    use common::rsa_key;
    let (hsm, uri) = token_with_key("sessions");
    let dc = dc_with(vec![b"junk".to_vec(), hsm.key_file(&uri)]);
    let w = Pkcs11KeyWrapper::with_oaep_hash(OaepHash::Sha1);
    let wrap = |key: &PKey<Private>| {
        let mut ec = EncryptConfig::default();
        ec.pkcs11_public_keys.push(key.public_key_to_pem().unwrap());
        w.wrap_keys(&ec, b"opts").unwrap().unwrap()
    };
    let theirs: Vec<Vec<u8>> = (0..3)
        .map(|_| wrap(rsa_key(1)))
        .chain([b"junk".to_vec()])
        .collect();
    let blobs = [theirs.clone(), vec![wrap(rsa_key(0))]].concat();
    sessions();
    assert_eq!(w.unwrap_first(&dc, &blobs).unwrap().expose(), b"opts");
    assert_eq!(sessions(), 1);
    // Blob by blob: a session for each blob with a recipient.
    for blob in &blobs {
        let _ = w.unwrap_key(&dc, blob);
    }
    assert_eq!(sessions(), 4);
    // None opens: one error per blob, in order, in one session.
    let errors = w.unwrap_first(&dc, &theirs).unwrap_err();
    assert_eq!(sessions(), 1);
    assert_eq!(errors.len(), 4, "{errors:?}");
    for e in &errors[..3] {
        let Error::NoMatchingKey { causes, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(causes.len(), 2, "{e}");
        assert!(
            matches!(&causes[0].kind, CauseKind::Refused(f) if f.reason().contains("C_Decrypt")),
            "{e}"
        );
        assert_eq!(causes[0].key.as_deref(), Some(hsm_uri(&uri).as_str()));
        assert!(matches!(causes[1].kind, CauseKind::Unreadable(_)), "{e}");
        assert_eq!(causes[1].key.as_deref(), Some("pkcs11 key file 1"));
    }
    assert!(
        matches!(errors[3], Error::MalformedBlob { .. }),
        "{:?}",
        errors[3]
    );
}

/// The URI as a key file's parser prints it.
fn hsm_uri(uri: &str) -> String {
    Pkcs11Uri::parse(uri).unwrap().to_string()
}

/// One layer cannot make the token try more than MAX_UNWRAP_ATTEMPTS decryptions, however
/// its recipients are spread over blobs; the limit stops the search at once.
#[test]
fn a_layer_cannot_ask_the_token_for_unbounded_work() {
    let (hsm, uri) = token_with_key("bounded");
    let dc = dc_with(vec![hsm.key_file(&uri)]);
    // Junk ciphertexts: each costs the token a decryption. 64 per blob, 65 blobs: 4160.
    let junk = STANDARD.encode([7u8; 256]);
    let recipient = format!(r#"{{"version":0,"blob":"{junk}","hash":"sha1"}}"#);
    let blob = format!(
        r#"{{"version":0,"recipients":[{}]}}"#,
        vec![recipient; 64].join(",")
    )
    .into_bytes();
    let w = Pkcs11KeyWrapper::with_oaep_hash(OaepHash::Sha1);
    sessions();
    let errors = w.unwrap_first(&dc, &vec![blob.clone(); 65]).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(
            errors[0],
            Error::LimitExceeded {
                limit: MAX_UNWRAP_ATTEMPTS,
                ..
            }
        ),
        "{errors:?}"
    );
    assert_eq!(sessions(), 1);
    // Under the limit, the same blobs are refused one by one.
    let errors = w.unwrap_first(&dc, &vec![blob; 64]).unwrap_err();
    assert_eq!(errors.len(), 64);
    assert!(
        matches!(errors[0], Error::NoMatchingKey { .. }),
        "{errors:?}"
    );
}
