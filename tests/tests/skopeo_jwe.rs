//! JWE interop with Debian's skopeo (Go ocicrypt inside), both directions.
//!
//! - Committed vectors that skopeo made (tests/vectors/skopeo, see make-vectors.sh there)
//!   are decrypted by us and must give the original layers.
//! - Images we encrypt are decrypted by the installed skopeo, and images the installed
//!   skopeo encrypts are decrypted by us.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use ocicrypt_tests::{
    decrypt_layout, encrypt_example, example_image, example_layer_ids, layer_ids, layers, oci,
    ocicrypt, path, read_json, skopeo, skopeo_decrypt, skopeo_key as key, skopeo_refuses,
};

const VECTORS: &[&str] = &[
    "jwe-rsa2048",
    "jwe-rsa4096",
    "jwe-p256",
    "jwe-p384",
    "jwe-p521",
    "jwe-two-recipients",
    "jwe-layer-top",
];

#[test]
fn we_decrypt_committed_skopeo_vectors() {
    for v in VECTORS {
        let dir = path(&format!("tests/vectors/skopeo/{v}"));
        let expected = read_json(&dir.join("expected.json"));
        // The vector really is encrypted the way expected.json says.
        let enc = layers(&dir, "latest");
        for (l, e) in enc.iter().zip(expected["layers"].as_array().unwrap()) {
            assert_eq!(l["mediaType"], e["media_type"], "{v}");
            assert_eq!(l["digest"], e["digest"], "{v}");
        }
        // Every listed decryption key alone decrypts it.
        for k in expected["decryption_keys"].as_array().unwrap() {
            let k = dir.parent().unwrap().join(k.as_str().unwrap());
            let out = tempfile::tempdir().unwrap();
            let dst = out.path().join("plain");
            decrypt_layout(&[k.to_str().unwrap()], &dir, &dst)
                .unwrap_or_else(|e| panic!("{v} with {}: {e}", k.display()));
            assert_eq!(layer_ids(&dst, "latest"), example_layer_ids(), "{v}");
            for e in expected["layers"].as_array().unwrap() {
                assert!(
                    layer_ids(&dst, "latest")
                        .iter()
                        .any(|(_, d)| d == e["plaintext_digest"].as_str().unwrap()),
                    "{v}"
                );
            }
        }
    }
}

#[test]
fn committed_vectors_refuse_the_wrong_key() {
    let dir = path("tests/vectors/skopeo/jwe-rsa2048");
    let out = tempfile::tempdir().unwrap();
    let dst = out.path().join("plain");
    let err = decrypt_layout(&[key("rsa4096-private.pem")], &dir, &dst).unwrap_err();
    assert!(err.contains("none of the private keys"), "{err}");
    assert!(
        !dst.exists(),
        "a failed decryption must not create its destination"
    );
}

/// We encrypt with `recipients`, skopeo decrypts with each of `keys`.
fn skopeo_decrypts_ours(recipients: &[&str], keys: &[&str], layer: Option<&str>) {
    let tmp = tempfile::tempdir().unwrap();
    let enc = tmp.path().join("enc");
    let recipients: Vec<String> = recipients
        .iter()
        .map(|r| format!("jwe:{}", key(r)))
        .collect();
    let layer_flag = layer.map(|l| format!("--layer={l}"));
    let extra: Vec<&str> = layer_flag.iter().map(String::as_str).collect();
    encrypt_example(&recipients, &extra, &enc);
    let encrypted = layer_ids(&enc, "latest");
    let n_enc = encrypted
        .iter()
        .filter(|(mt, _)| mt.ends_with("+encrypted"))
        .count();
    assert_eq!(
        n_enc,
        if layer.is_some() {
            1
        } else {
            example_layer_ids().len()
        }
    );

    for k in keys {
        let dec = tmp.path().join(format!("dec-{k}"));
        skopeo_decrypt(&[&key(k)], None, &enc, &dec);
        assert_eq!(
            layer_ids(&dec, "latest"),
            example_layer_ids(),
            "skopeo with {k}"
        );
    }
    // And skopeo refuses a key that is not a recipient.
    let wrong = if keys.contains(&"rsa4096-private.pem") {
        "p384-private.pem"
    } else {
        "rsa4096-private.pem"
    };
    let dec = tmp.path().join("dec-wrong");
    skopeo_refuses(&[&key(wrong)], &enc, &dec);
}

#[test]
fn skopeo_decrypts_rsa2048() {
    skopeo_decrypts_ours(&["rsa2048-public.pem"], &["rsa2048-private.pem"], None);
}

#[test]
fn skopeo_decrypts_rsa4096() {
    skopeo_decrypts_ours(&["rsa4096-public.pem"], &["rsa4096-private.pem"], None);
}

#[test]
fn skopeo_decrypts_ec_curves() {
    for c in ["p256", "p384", "p521"] {
        skopeo_decrypts_ours(
            &[&format!("{c}-public.pem")],
            &[&format!("{c}-private.pem")],
            None,
        );
    }
}

#[test]
fn skopeo_decrypts_two_recipients() {
    skopeo_decrypts_ours(
        &["rsa2048-public.pem", "p256-public.pem"],
        &["rsa2048-private.pem", "p256-private.pem"],
        None,
    );
}

#[test]
fn skopeo_decrypts_top_layer_only() {
    skopeo_decrypts_ours(&["p256-public.pem"], &["p256-private.pem"], Some("-1"));
}

/// skopeo encrypts now (with the installed version), we decrypt.
#[test]
fn we_decrypt_what_installed_skopeo_encrypts() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = tmp.path().join("enc");
    skopeo(&[
        "copy",
        "--quiet",
        "--encryption-key",
        &format!("jwe:{}", key("rsa2048-public.pem")),
        "--encryption-key",
        &format!("jwe:{}", key("p521-public.pem")),
        &example_image(),
        &oci(&enc, "latest"),
    ]);
    assert!(
        layer_ids(&enc, "latest")
            .iter()
            .all(|(mt, _)| mt.ends_with("+encrypted"))
    );
    for k in ["rsa2048-private.pem", "p521-private.pem"] {
        let dec = tmp.path().join(format!("dec-{k}"));
        decrypt_layout(&[key(k)], &enc, &dec).unwrap();
        assert_eq!(layer_ids(&dec, "latest"), example_layer_ids());
    }
    // Inspect sees the JWE recipients.
    ocicrypt(&["image", "inspect", &oci(&enc, "latest")]).unwrap();
}
