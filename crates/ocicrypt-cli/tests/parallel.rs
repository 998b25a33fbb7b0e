//! `image encrypt|decrypt --jobs N`: layers processed in parallel give the same images as
//! one at a time, and a failure in one layer leaves the destination untouched.

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

use serde_json::{Value, json};

use common::{
    PRIV, PUB, assert_exit_1, assert_success, blob, blob_path, image_decrypt, image_encrypt,
    manifest_layers, oci, run, strs, walk,
};

const LAYER_MT: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Runs a command that must succeed (unlike `common::ok`, its stdout is not looked at).
fn ok(args: &[impl AsRef<str>]) {
    let args = strs(args);
    assert_success(&args, run(&args));
}

/// Runs a command that must fail with status 1; returns its stderr (unlike `common::fails`,
/// which also wants one `ocicrypt: error:` line).
fn fails(args: &[impl AsRef<str>]) -> String {
    let args = strs(args);
    assert_exit_1(&args, run(&args))
}

fn put_blob(root: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = hex::encode(openssl::sha::sha256(bytes));
    fs::write(root.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

/// Writes an OCI layout at `root` whose tag `latest` is an image of `n` random layers of
/// different sizes; returns the layers' contents.
fn random_image(root: &Path, n: usize) -> Vec<Vec<u8>> {
    fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layers: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut b = vec![0; 300_000 + i * 77_777];
            openssl::rand::rand_bytes(&mut b).unwrap();
            b
        })
        .collect();
    let descs: Vec<Value> = layers
        .iter()
        .map(|l| {
            let (digest, size) = put_blob(root, l);
            json!({"mediaType": LAYER_MT, "digest": digest, "size": size})
        })
        .collect();
    let (cd, cs) = put_blob(root, br#"{"architecture":"amd64","os":"linux"}"#);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs,
    });
    let (md, ms) = put_blob(root, &serde_json::to_vec(&manifest).unwrap());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(root.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    layers
}

/// The layer descriptors (media type, digest) of the image tagged `tag`, and the layers'
/// contents.
fn layers_of(root: &Path, tag: &str) -> Vec<(String, String, Vec<u8>)> {
    manifest_layers(root, tag)
        .into_iter()
        .map(|(mt, d)| {
            let contents = blob(root, &d);
            (mt, d, contents)
        })
        .collect()
}

#[test]
fn jobs_1_and_jobs_4_give_images_that_decrypt_to_the_same_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let plain = random_image(&src, 4);
    let orig = layers_of(&src, "latest");
    for (enc_jobs, dec_jobs) in [("1", "4"), ("4", "1"), ("4", "4")] {
        let enc = tmp.path().join(format!("enc-{enc_jobs}-{dec_jobs}"));
        let dec = tmp.path().join(format!("dec-{enc_jobs}-{dec_jobs}"));
        ok(&image_encrypt(
            PUB,
            &["--jobs", enc_jobs],
            &oci(&src, "latest"),
            &oci(&enc, "latest"),
        ));
        let encrypted = layers_of(&enc, "latest");
        assert_eq!(encrypted.len(), 4);
        for ((mt, _, ct), p) in encrypted.iter().zip(&plain) {
            assert_eq!(mt, &format!("{LAYER_MT}+encrypted"));
            assert_ne!(ct, p);
        }
        ok(&image_decrypt(
            PRIV,
            &["-j", dec_jobs],
            &oci(&enc, "latest"),
            &oci(&dec, "latest"),
        ));
        assert_eq!(
            layers_of(&dec, "latest"),
            orig,
            "--jobs {enc_jobs} then {dec_jobs}"
        );
    }
    // More jobs than layers, and only some layers selected.
    let part = tmp.path().join("part");
    ok(&image_encrypt(
        PUB,
        &["--jobs", "16", "--layer", "1", "--layer", "-1"],
        &oci(&src, "latest"),
        &oci(&part, "latest"),
    ));
    let got = layers_of(&part, "latest");
    assert_eq!(got[0], orig[0]);
    assert_eq!(got[2], orig[2]);
    assert!(got[1].0.ends_with("+encrypted") && got[3].0.ends_with("+encrypted"));
    // --jobs 0 is a usage error.
    let out = run(&strs(&image_encrypt(
        PUB,
        &["--jobs", "0"],
        &oci(&src, "latest"),
        &oci(&tmp.path().join("zero"), "latest"),
    )));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_failed_layer_among_parallel_ones_leaves_no_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    random_image(&src, 4);
    let enc = tmp.path().join("enc");
    ok(&image_encrypt(
        PUB,
        &[],
        &oci(&src, "latest"),
        &oci(&enc, "latest"),
    ));
    // Tamper with the last byte of layer 2 (caught by the HMAC at its end).
    let (_, digest, _) = layers_of(&enc, "latest").swap_remove(2);
    let path = blob_path(&enc, &digest);
    let mut blob = fs::read(&path).unwrap();
    *blob.last_mut().unwrap() ^= 1;
    fs::write(&path, &blob).unwrap();

    // Decrypts enc with four jobs into `dst`, which must fail; returns the error.
    let decrypt_fails = |dst: &str| {
        fails(&image_decrypt(
            PRIV,
            &["--jobs", "4"],
            &oci(&enc, "latest"),
            dst,
        ))
    };
    let dst = tmp.path().join("dec");
    let err = decrypt_fails(&oci(&dst, "latest"));
    assert!(err.contains("layer 2"), "{err}");
    assert!(
        !err.contains("cancelled"),
        "the real cause is reported: {err}"
    );
    assert!(!dst.exists());
    let mut names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["enc", "src"], "no temporary directory left behind");

    // Into an existing layout: the blobs the other layers wrote are removed again.
    let before = walk(&enc);
    let err = decrypt_fails(&oci(&enc, "plain"));
    assert!(err.contains("layer 2"), "{err}");
    assert_eq!(walk(&enc), before);
}
