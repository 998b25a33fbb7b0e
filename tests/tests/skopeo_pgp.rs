//! OpenPGP interop with Debian's skopeo (Go ocicrypt 1.0.3) and GnuPG, both directions, with
//! keys that the `gpg` binary makes at test time; and a layer with jwe, pkcs7 and pgp
//! recipients at once. (Library-level vectors from skopeo and gpg are in
//! crates/ocicrypt-keywrap-pgp/tests/data.)

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

use ocicrypt_tests::{
    Gpg, encrypt_example, example_image, example_layer_ids, layer_ids, oci, ocicrypt, path,
    self_signed, skopeo_decrypt, tool, tool_env,
};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn skopeo_with(home: &Path, args: &[&str]) {
    let mut full = vec!["--insecure-policy"];
    full.extend_from_slice(args);
    tool_env("skopeo", &full, &[("GNUPGHOME", home)]);
}

#[test]
fn we_decrypt_skopeos_pgp_with_and_without_passphrase() {
    let gpg = Gpg::new();
    gpg.generate("plain@example.com", "");
    gpg.generate("locked@example.com", "s3cret");
    let tmp = tempfile::tempdir().unwrap();
    let enc = tmp.path().join("enc");
    skopeo_with(
        &gpg.home(),
        &[
            "copy",
            "--quiet",
            "--encryption-key",
            "pgp:plain@example.com",
            "--encryption-key",
            "pgp:locked@example.com",
            &example_image(),
            &oci(&enc, "latest"),
        ],
    );
    let plain = gpg.export_secret("plain@example.com", "");
    let locked = gpg.export_secret("locked@example.com", "s3cret");
    let src = oci(&enc, "latest");
    for (i, key) in [s(&plain).to_owned(), format!("{}:pass=s3cret", s(&locked))]
        .iter()
        .enumerate()
    {
        let dec = tmp.path().join(format!("dec{i}"));
        ocicrypt(&["image", "decrypt", "-k", key, &src, &oci(&dec, "latest")]).unwrap();
        assert_eq!(layer_ids(&dec, "latest"), example_layer_ids(), "{key}");
    }
    let dst = oci(&tmp.path().join("x"), "latest");
    let err = ocicrypt(&["image", "decrypt", "-k", s(&locked), &src, &dst]).unwrap_err();
    assert!(err.contains("missing password"), "{err}");
    let wrong = format!("{}:pass=nope", s(&locked));
    let err = ocicrypt(&["image", "decrypt", "-k", &wrong, &src, &dst]).unwrap_err();
    assert!(err.contains("wrong password"), "{err}");
    // inspect names the PGP key ids.
    ocicrypt(&["image", "inspect", &src]).unwrap();
}

#[test]
fn skopeo_and_gpg_read_our_pgp() {
    let gpg = Gpg::new();
    gpg.generate("r@example.com", "");
    let public = gpg.export_public("r@example.com");
    let tmp = tempfile::tempdir().unwrap();
    let enc = tmp.path().join("enc");
    encrypt_example(&[format!("pgp:{}", s(&public))], &[], &enc);
    let secret = gpg.export_secret("r@example.com", "");
    let dec = tmp.path().join("dec");
    skopeo_decrypt(&[s(&secret)], Some(&gpg.home()), &enc, &dec);
    assert_eq!(layer_ids(&dec, "latest"), example_layer_ids());

    // gpg itself decrypts the wrapped key to the private options JSON.
    let layers = ocicrypt_tests::layers(&enc, "latest");
    let value = layers[0]["annotations"]["org.opencontainers.image.enc.keys.pgp"]
        .as_str()
        .unwrap();
    let b64 = tmp.path().join("blob.b64");
    std::fs::write(&b64, value).unwrap();
    let blob = tmp.path().join("blob.pgp");
    tool(
        "openssl",
        &["base64", "-d", "-A", "-in", s(&b64), "-out", s(&blob)],
    );
    let json = tool_env(
        "gpg",
        &["--batch", "--quiet", "--decrypt", s(&blob)],
        &[("GNUPGHOME", &gpg.home())],
    );
    assert!(json.starts_with(r#"{"symkey":""#), "{json}");
    assert!(json.contains(r#""cipheroptions":{"nonce":""#), "{json}");
}

#[test]
fn jwe_pkcs7_and_pgp_recipients_on_one_layer() {
    let gpg = Gpg::new();
    gpg.generate("m@example.com", "");
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("k.pem");
    let crt = tmp.path().join("c.pem");
    self_signed(&key, &crt, "mixed");
    let jwe_pub = path("tests/vectors/skopeo/keys/rsa2048-public.pem");
    let jwe_priv = path("tests/vectors/skopeo/keys/rsa2048-private.pem");
    let enc = tmp.path().join("enc");
    encrypt_example(
        &[
            format!("jwe:{}", s(&jwe_pub)),
            format!("pkcs7:{}", s(&crt)),
            format!("pgp:{}", s(&gpg.export_public("m@example.com"))),
        ],
        &[],
        &enc,
    );
    let secret = gpg.export_secret("m@example.com", "");
    for (i, keys) in [vec![s(&jwe_priv)], vec![s(&key), s(&crt)], vec![s(&secret)]]
        .iter()
        .enumerate()
    {
        let dec = tmp.path().join(format!("dec{i}"));
        skopeo_decrypt(keys, Some(&gpg.home()), &enc, &dec);
        assert_eq!(
            layer_ids(&dec, "latest"),
            example_layer_ids(),
            "skopeo with {keys:?}"
        );
    }
}
