//! Rewrapping and rotation judged by Debian's skopeo (Go ocicrypt inside): after `image
//! rewrap`, skopeo opens the image with each new recipient's key and with no old one; a
//! skopeo-made image can be rewrapped; after `--rotate` every layer is a new blob that only
//! the new recipients open; the mixes jwe -> pkcs7 + pgp and pgp -> jwe.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};

use ocicrypt_tests::{
    Gpg, encrypt_example, example_layer_ids, layer_ids, oci, ocicrypt, path, self_signed,
    skopeo_decrypt, skopeo_key as key, skopeo_refuses, tool,
};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// skopeo decrypts `enc` with `keys` into the original layers.
fn skopeo_opens(enc: &Path, keys: &[&str], out: &Path) {
    skopeo_opens_with_gnupg(enc, keys, None, out);
}

/// [`skopeo_opens`], with `home` as skopeo's GnuPG home if given (for pgp keys).
fn skopeo_opens_with_gnupg(enc: &Path, keys: &[&str], home: Option<&Path>, out: &Path) {
    skopeo_decrypt(keys, home, enc, out);
    assert_eq!(
        layer_ids(out, "latest"),
        example_layer_ids(),
        "skopeo with {keys:?}"
    );
}

/// Encrypts the example image for `recipients` into `dir/enc`.
fn encrypted(dir: &Path, recipients: &[String]) -> PathBuf {
    let enc = dir.join("enc");
    encrypt_example(recipients, &[], &enc);
    enc
}

/// `image rewrap` (with `extra` flags) from `src` into `dst`.
fn rewrap(src: &Path, dst: &Path, keys: &[&str], recipients: &[String], extra: &[&str]) {
    let mut args = vec!["image".to_owned(), "rewrap".to_owned()];
    for k in keys {
        args.extend(["-k".to_owned(), (*k).to_owned()]);
    }
    for r in recipients {
        args.extend(["-r".to_owned(), r.clone()]);
    }
    args.extend(extra.iter().map(|e| (*e).to_owned()));
    args.extend([oci(src, "latest"), oci(dst, "latest")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ocicrypt(&args).unwrap();
}

/// [`rewrap`] from the RSA-2048 test key to the JWE public keys named `public`.
fn rewrap_rsa2048_to_jwe(src: &Path, dst: &Path, public: &[&str], extra: &[&str]) {
    let recipients: Vec<String> = public.iter().map(|p| format!("jwe:{}", key(p))).collect();
    rewrap(src, dst, &[&key("rsa2048-private.pem")], &recipients, extra);
}

#[test]
fn skopeo_opens_a_rewrapped_image_with_the_new_keys_only() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path(), &[format!("jwe:{}", key("rsa2048-public.pem"))]);
    let re = tmp.path().join("re");
    rewrap_rsa2048_to_jwe(&enc, &re, &["p384-public.pem", "rsa4096-public.pem"], &[]);
    // Same blobs: only the annotations changed.
    let digests =
        |l: &Path| -> Vec<String> { layer_ids(l, "latest").into_iter().map(|(_, d)| d).collect() };
    assert_eq!(digests(&re), digests(&enc));
    skopeo_opens(&re, &[&key("p384-private.pem")], &tmp.path().join("d1"));
    skopeo_opens(&re, &[&key("rsa4096-private.pem")], &tmp.path().join("d2"));
    skopeo_refuses(&[&key("rsa2048-private.pem")], &re, &tmp.path().join("d3"));
}

#[test]
fn a_skopeo_made_image_is_rewrapped() {
    let tmp = tempfile::tempdir().unwrap();
    let vector = path("tests/vectors/skopeo/jwe-rsa2048");
    let re = tmp.path().join("re");
    rewrap_rsa2048_to_jwe(&vector, &re, &["p256-public.pem"], &[]);
    skopeo_opens(&re, &[&key("p256-private.pem")], &tmp.path().join("d1"));
    skopeo_refuses(&[&key("rsa2048-private.pem")], &re, &tmp.path().join("d2"));
}

#[test]
fn rotation_gives_new_blobs_that_only_the_new_recipients_open() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path(), &[format!("jwe:{}", key("rsa2048-public.pem"))]);
    let rot = tmp.path().join("rot");
    rewrap_rsa2048_to_jwe(&enc, &rot, &["p521-public.pem"], &["--rotate", "-j", "2"]);
    let before = layer_ids(&enc, "latest");
    let after = layer_ids(&rot, "latest");
    assert_eq!(before.len(), after.len());
    for ((mt0, d0), (mt1, d1)) in before.iter().zip(&after) {
        assert_eq!(mt0, mt1);
        assert_ne!(d0, d1, "every rotated layer is a new blob");
    }
    skopeo_opens(&rot, &[&key("p521-private.pem")], &tmp.path().join("d1"));
    skopeo_refuses(&[&key("rsa2048-private.pem")], &rot, &tmp.path().join("d2"));
}

#[test]
fn jwe_to_pkcs7_and_pgp_and_pgp_to_jwe() {
    let gpg = Gpg::new();
    gpg.generate("new@example.com", "");
    let tmp = tempfile::tempdir().unwrap();
    let (k7, c7) = (tmp.path().join("k.pem"), tmp.path().join("c.pem"));
    self_signed(&k7, &c7, "rewrap");
    let public = gpg.export_public("new@example.com");
    let enc = encrypted(tmp.path(), &[format!("jwe:{}", key("rsa2048-public.pem"))]);
    let mixed = tmp.path().join("mixed");
    rewrap(
        &enc,
        &mixed,
        &[&key("rsa2048-private.pem")],
        &[format!("pkcs7:{}", s(&c7)), format!("pgp:{}", s(&public))],
        &["--layer", "-1"],
    );
    // Only the top layer was rewrapped: the bottom one still opens with the old key alone,
    // so skopeo needs the old key for it beside each new one.
    let secret = gpg.export_secret("new@example.com", "");
    let old = key("rsa2048-private.pem");
    skopeo_opens(&mixed, &[&old, s(&k7), s(&c7)], &tmp.path().join("d1"));
    skopeo_opens_with_gnupg(
        &mixed,
        &[&old, s(&secret)],
        Some(&gpg.home()),
        &tmp.path().join("d2"),
    );
    skopeo_refuses(&[&old], &mixed, &tmp.path().join("d3"));

    // pgp -> jwe, all layers.
    let pgp_enc = tmp.path().join("pgp");
    rewrap(
        &mixed,
        &pgp_enc,
        &[&old, s(&secret)],
        &[format!("pgp:{}", s(&public))],
        &[],
    );
    let back = tmp.path().join("back");
    rewrap(
        &pgp_enc,
        &back,
        &[s(&secret)],
        &[format!("jwe:{}", key("p256-public.pem"))],
        &[],
    );
    skopeo_opens(&back, &[&key("p256-private.pem")], &tmp.path().join("d4"));
    skopeo_refuses(&[&old], &back, &tmp.path().join("d5"));
}

/// Copies the layout at `from` to `to` (plain files only, as the vectors are).
fn copy_layout(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_layout(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Stores `bytes` as a blob of `layout`; its `sha256:` digest.
fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let tmp = layout.join("new-blob");
    std::fs::write(&tmp, bytes).unwrap();
    let sum = tool("sha256sum", &[s(&tmp)]);
    let hex = sum.split_whitespace().next().unwrap().to_owned();
    std::fs::rename(&tmp, layout.join("blobs/sha256").join(&hex)).unwrap();
    format!("sha256:{hex}")
}

#[test]
fn a_go_made_layer_rewrapped_alone_opens_in_go_with_the_new_key_only() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    copy_layout(&path("tests/vectors/skopeo/jwe-rsa2048"), &layout);
    let index_path = layout.join("index.json");
    let mut index = ocicrypt_tests::read_json(&index_path);
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let mut manifest =
        ocicrypt_tests::read_json(&layout.join("blobs").join(mdigest.replace(':', "/")));
    // Each layer on its own: `layer rewrap` of its descriptor (the blob is not needed).
    for l in manifest["layers"].as_array_mut().unwrap() {
        let (old, new) = (tmp.path().join("old.json"), tmp.path().join("new.json"));
        std::fs::write(&old, l.to_string()).unwrap();
        ocicrypt(&[
            "layer",
            "rewrap",
            "-k",
            &key("rsa2048-private.pem"),
            "-r",
            &format!("jwe:{}", key("p256-public.pem")),
            "--descriptor",
            s(&old),
            "--descriptor-out",
            s(&new),
        ])
        .unwrap();
        *l = ocicrypt_tests::read_json(&new);
    }
    let bytes = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = put_blob(&layout, &bytes).into();
    index["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(&index_path, index.to_string()).unwrap();
    skopeo_opens(&layout, &[&key("p256-private.pem")], &tmp.path().join("d1"));
    skopeo_refuses(
        &[&key("rsa2048-private.pem")],
        &layout,
        &tmp.path().join("d2"),
    );
}
