//! PKCS#7 interop with Debian's skopeo (Go ocicrypt 1.0.3, mozilla pkcs7), both directions,
//! with certificates made by the openssl CLI at test time; and a layer with JWE and PKCS#7
//! recipients at once. (Library-level vectors that skopeo and `openssl cms` made are in
//! crates/ocicrypt-keywrap-pkcs7/tests/data.)

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};

use ocicrypt_tests::{
    decrypt_layout, encrypt_example, example_image, example_layer_ids, layer_ids, oci, path,
    skopeo, skopeo_decrypt, skopeo_refuses, tool,
};

/// A self-signed RSA certificate and its key, made by `openssl req`.
fn cert(dir: &Path, name: &str, bits: u32) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}-key.pem"));
    let crt = dir.join(format!("{name}-cert.pem"));
    tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            &format!("rsa:{bits}"),
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            crt.to_str().unwrap(),
            "-subj",
            &format!("/CN=ocicrypt test {name}"),
            "-days",
            "2",
        ],
    );
    (key, crt)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn we_encrypt_skopeo_decrypts(bits: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let (key, crt) = cert(tmp.path(), "r", bits);
    let (other_key, other_crt) = cert(tmp.path(), "other", 2048);
    let enc = tmp.path().join("enc");
    encrypt_example(&[format!("pkcs7:{}", s(&crt))], &[], &enc);
    assert!(
        layer_ids(&enc, "latest")
            .iter()
            .all(|(mt, _)| mt.ends_with("+encrypted"))
    );
    // skopeo 1.9.3 (ocicrypt 1.0.3) needs the certificate beside the key.
    let dec = tmp.path().join("dec");
    skopeo_decrypt(&[s(&key), s(&crt)], None, &enc, &dec);
    assert_eq!(layer_ids(&dec, "latest"), example_layer_ids());
    skopeo_refuses(
        &[s(&other_key), s(&other_crt)],
        &enc,
        &tmp.path().join("wrong"),
    );
}

#[test]
fn skopeo_decrypts_our_pkcs7_rsa2048() {
    we_encrypt_skopeo_decrypts(2048);
}

#[test]
fn skopeo_decrypts_our_pkcs7_rsa4096() {
    we_encrypt_skopeo_decrypts(4096);
}

#[test]
fn we_decrypt_skopeos_pkcs7() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, crt) = cert(tmp.path(), "a", 2048);
    let (key4, crt4) = cert(tmp.path(), "b", 4096);
    let enc = tmp.path().join("enc");
    skopeo(&[
        "copy",
        "--quiet",
        "--encryption-key",
        &format!("pkcs7:{}", s(&crt)),
        "--encryption-key",
        &format!("pkcs7:{}", s(&crt4)),
        &example_image(),
        &oci(&enc, "latest"),
    ]);
    // With the key alone (Go needs the certificate too; we do not), and with both.
    for (i, keys) in [vec![s(&key)], vec![s(&key4)], vec![s(&key), s(&crt)]]
        .iter()
        .enumerate()
    {
        let dec = tmp.path().join(format!("dec{i}"));
        decrypt_layout(keys, &enc, &dec).unwrap();
        assert_eq!(layer_ids(&dec, "latest"), example_layer_ids(), "{keys:?}");
    }
    let (wrong, _) = cert(tmp.path(), "c", 2048);
    let err = decrypt_layout(&[s(&wrong)], &enc, &tmp.path().join("x")).unwrap_err();
    assert!(err.contains("none of the private keys"), "{err}");
}

#[test]
fn mixed_jwe_and_pkcs7_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, crt) = cert(tmp.path(), "m", 2048);
    let jwe_pub = path("tests/vectors/skopeo/keys/p384-public.pem");
    let jwe_priv = path("tests/vectors/skopeo/keys/p384-private.pem");
    let enc = tmp.path().join("enc");
    encrypt_example(
        &[format!("jwe:{}", s(&jwe_pub)), format!("pkcs7:{}", s(&crt))],
        &[],
        &enc,
    );
    let dec = tmp.path().join("dec-jwe");
    skopeo_decrypt(&[s(&jwe_priv)], None, &enc, &dec);
    assert_eq!(layer_ids(&dec, "latest"), example_layer_ids());
    let dec = tmp.path().join("dec-pkcs7");
    skopeo_decrypt(&[s(&key), s(&crt)], None, &enc, &dec);
    assert_eq!(layer_ids(&dec, "latest"), example_layer_ids());
    let dec = tmp.path().join("dec-ours");
    decrypt_layout(&[s(&key)], &enc, &dec).unwrap();
    assert_eq!(layer_ids(&dec, "latest"), example_layer_ids());
}
