//! `image rewrap`, `layer rewrap` and `image inspect -k` end to end: old keys lose access,
//! new ones gain it, data stays (or, with --rotate, becomes new blobs), a key that does not
//! open a selected layer leaves the destination untouched, and inspect -k says which keys
//! open which layer without reading layer data.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fs;
use std::path::Path;

use common::{
    PRIV, PUB, data, example_image, fails, image_decrypt, image_encrypt, layer_decrypt,
    layer_encrypt, layer_rewrap, manifest_layers, oci, ok, strs, walk,
};
use serde_json::Value;

/// A second RSA key pair, made by openssl in `dir`: (public, private).
fn other_key(dir: &Path) -> (String, String) {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let (p, k) = (dir.join("other-pub.pem"), dir.join("other.pem"));
    fs::write(&p, rsa.public_key_to_pem().unwrap()).unwrap();
    fs::write(&k, rsa.private_key_to_pem().unwrap()).unwrap();
    (p.display().to_string(), k.display().to_string())
}

#[test]
fn image_rewrap_moves_access_from_old_to_new_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let (other_pub, other_priv) = other_key(tmp.path());
    let layout = tmp.path().join("l");
    let enc = oci(&layout, "enc");
    let re = oci(&layout, "re");
    ok(&image_encrypt(PUB, &[], &example_image(), &enc));
    let blobs_before = fs::read_dir(layout.join("blobs/sha256")).unwrap().count();
    ok(&[
        "image",
        "rewrap",
        "-k",
        &data(PRIV),
        "-r",
        &format!("jwe:{other_pub}"),
        &enc,
        &re,
    ]);
    // Same layout, another tag: only a new manifest (and nothing else) was added.
    assert_eq!(
        fs::read_dir(layout.join("blobs/sha256")).unwrap().count(),
        blobs_before + 1
    );
    let digests = |tag: &str| -> Vec<String> {
        manifest_layers(&layout, tag)
            .into_iter()
            .map(|(_, d)| d)
            .collect()
    };
    assert_eq!(digests("enc"), digests("re"));

    // inspect -k: the old key opens the old tag only, the new key the new tag only.
    for (tag, key, opens) in [
        ("enc", data(PRIV), true),
        ("enc", other_priv.clone(), false),
        ("re", data(PRIV), false),
        ("re", other_priv.clone(), true),
    ] {
        let src = format!("oci:{}:{tag}", layout.display());
        let j: Value =
            serde_json::from_str(&ok(&["image", "inspect", "--json", "-k", &key, &src])).unwrap();
        for l in j["manifests"][0]["layers"].as_array().unwrap() {
            assert_eq!(l["opens"], opens, "{tag} {key}: {l}");
        }
        let text = ok(&["image", "inspect", "-k", &key, &src]);
        let yes = if opens { "yes" } else { "no" };
        assert!(
            text.contains(&format!("opens with the given keys: {yes}")),
            "{text}"
        );
    }
    let plain = ok(&["image", "inspect", "--json", &re]);
    assert!(!plain.contains("\"opens\""), "{plain}");

    // Decrypting: the new key works, the old one does not.
    let back = tmp.path().join("back");
    ok(&[
        "image",
        "decrypt",
        "-k",
        &other_priv,
        &re,
        &format!("oci:{}", back.display()),
    ]);
    let err = fails(&image_decrypt(
        PRIV,
        &[],
        &re,
        &format!("oci:{}/x", tmp.path().display()),
    ));
    assert!(err.contains("none of the private keys"), "{err}");

    // A key that does not open a selected layer: the destination is untouched.
    let before = walk(&layout);
    let err = fails(&[
        "image",
        "rewrap",
        "-k",
        &data(PRIV),
        "-r",
        &format!("jwe:{}", data(PUB)),
        &re,
        &oci(&layout, "again"),
    ]);
    // Both layers fail; which one is reported first depends on the worker threads.
    assert!(
        (err.contains("layer 0") || err.contains("layer 1")) && err.contains("of manifest"),
        "{err}"
    );
    assert_eq!(walk(&layout), before);
}

#[test]
fn layer_rewrap_with_and_without_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let (other_pub, other_priv) = other_key(tmp.path());
    let p = |n: &str| tmp.path().join(n).display().to_string();
    let plain = b"a layer's bytes".repeat(50_000);
    fs::write(p("plain"), &plain).unwrap();
    ok(&layer_encrypt(
        PUB,
        &[],
        [&p("plain"), &p("enc"), &p("enc.json")],
    ));
    // Rewrap: a new descriptor for the same blob.
    ok(&layer_rewrap(
        PRIV,
        &other_pub,
        &[],
        &p("enc.json"),
        &p("re.json"),
    ));
    let enc: Value = serde_json::from_slice(&fs::read(p("enc.json")).unwrap()).unwrap();
    let re: Value = serde_json::from_slice(&fs::read(p("re.json")).unwrap()).unwrap();
    assert_eq!(re["digest"], enc["digest"]);
    assert_ne!(re["annotations"], enc["annotations"]);
    let decrypt = |desc: &str, blob: &str, key: &str, out: &str| {
        layer_decrypt(key, &[], [&p(desc), &p(blob), &p(out)])
    };
    ok(&decrypt("re.json", "enc", &other_priv, "out1"));
    assert_eq!(fs::read(p("out1")).unwrap(), plain);
    fails(&decrypt("re.json", "enc", PRIV, "out2"));

    // Rotate: a new blob, for the new key only.
    let rotate = |input: &str, output: &str, descriptor_out: &str| {
        let extra = ["--rotate", "--in", input, "--out", output];
        layer_rewrap(PRIV, &other_pub, &extra, &p("enc.json"), descriptor_out)
    };
    ok(&rotate(&p("enc"), &p("rot"), &p("rot.json")));
    let rot: Value = serde_json::from_slice(&fs::read(p("rot.json")).unwrap()).unwrap();
    assert_ne!(rot["digest"], enc["digest"]);
    assert_ne!(fs::read(p("rot")).unwrap(), fs::read(p("enc")).unwrap());
    ok(&decrypt("rot.json", "rot", &other_priv, "out3"));
    assert_eq!(fs::read(p("out3")).unwrap(), plain);
    fails(&decrypt("rot.json", "rot", PRIV, "out4"));

    // A tampered blob is not rotated: no output, no descriptor.
    let mut bad = fs::read(p("enc")).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    fs::write(p("bad"), bad).unwrap();
    let err = fails(&rotate(&p("bad"), &p("bad-rot"), &p("bad.json")));
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!Path::new(&p("bad-rot")).exists() && !Path::new(&p("bad.json")).exists());
    // --in without --rotate is a usage error.
    let extra = ["--in", &p("enc")];
    let args = layer_rewrap(PRIV, &other_pub, &extra, &p("enc.json"), &p("x.json"));
    let out = common::run(&strs(&args));
    assert_eq!(out.status.code(), Some(2));
}
