//! End-to-end tests of the `ocicrypt` binary: exit status, one-line errors, untouched
//! destinations, the layer and image commands, and every bad-input path.

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
    PRIV, PUB, assert_success, blob_path, data, fails, fails_stdin, image_decrypt, image_encrypt,
    image_layers, layer_decrypt, layer_encrypt, oci, ocicrypt, ok, run, run_stdin, strs, walk,
};

const OTHER_PRIV: &str = "tests/vectors/skopeo/keys/p256-private.pem";
const OTHER_PUB: &str = "tests/vectors/skopeo/keys/p256-public.pem";
const ENC_KEY: &str = "crates/ocicrypt-keywrap-jwe/tests/data/rsa2048-legacy-enc.pem";
const ENC_KEY_PUB: &str = "crates/ocicrypt-keywrap-jwe/tests/data/rsa2048.pub.pem";
const PBES2_KEY: &str = "crates/ocicrypt-keywrap-jwe/tests/data/rsa2048-pbes2.pem";

struct Layer {
    dir: tempfile::TempDir,
}

impl Layer {
    /// A plain layer blob of `len` bytes and its descriptor.
    fn new(len: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let blob: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(dir.path().join("plain"), &blob).unwrap();
        let digest = format!("sha256:{}", hex::encode(openssl::sha::sha256(&blob)));
        let desc = json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": len,
            "annotations": {"org.example.keep": "me"}
        });
        fs::write(dir.path().join("plain.json"), desc.to_string()).unwrap();
        Self { dir }
    }

    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn json(&self, name: &str) -> Value {
        serde_json::from_slice(&fs::read(self.p(name)).unwrap()).unwrap()
    }

    /// Encrypts `plain` (described by `plain.json`) for the JWE recipient `public` into `enc`
    /// and `enc.json`.
    fn encrypt(&self, public: &str) {
        let extra = ["--descriptor", &self.p("plain.json")];
        let (input, output, descriptor_out) = (self.p("plain"), self.p("enc"), self.p("enc.json"));
        ok(&layer_encrypt(
            public,
            &extra,
            [&input, &output, &descriptor_out],
        ));
    }

    /// The arguments that decrypt `enc` (described by `enc.json`) with `key` into `dec` and
    /// `dec.json`.
    fn decrypt_args(&self, key: &str) -> Vec<String> {
        let extra = ["--descriptor-out", &self.p("dec.json")];
        layer_decrypt(
            key,
            &extra,
            [&self.p("enc.json"), &self.p("enc"), &self.p("dec")],
        )
    }
}

#[test]
fn layer_round_trip_and_descriptors() {
    let l = Layer::new(300_000);
    l.encrypt(PUB);
    let enc = l.json("enc.json");
    assert_eq!(
        enc["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
    );
    let ct = fs::read(l.p("enc")).unwrap();
    assert_eq!(
        enc["digest"],
        format!("sha256:{}", hex::encode(openssl::sha::sha256(&ct)))
    );
    assert_eq!(enc["size"], 300_000);
    assert_eq!(enc["annotations"]["org.example.keep"], "me");
    assert!(enc["annotations"]["org.opencontainers.image.enc.keys.jwe"].is_string());
    assert!(enc["annotations"]["org.opencontainers.image.enc.pubopts"].is_string());

    ok(&l.decrypt_args(&data(PRIV)));
    assert_eq!(
        fs::read(l.p("dec")).unwrap(),
        fs::read(l.p("plain")).unwrap()
    );
    let dec = l.json("dec.json");
    let plain = l.json("plain.json");
    assert_eq!(dec, plain, "decrypting gives back the plain descriptor");

    let text = ok(&["layer", "inspect", "--descriptor", &l.p("enc.json")]);
    assert!(text.contains("scheme jwe: 1 wrapped key"), "{text}");
    let j: Value = serde_json::from_str(&ok(&[
        "layer",
        "inspect",
        "--json",
        "--descriptor",
        &l.p("enc.json"),
    ]))
    .unwrap();
    assert_eq!(j["encrypted"], true);
    assert_eq!(j["schemes"][0]["scheme"], "jwe");
    let j: Value = serde_json::from_str(&ok(&[
        "layer",
        "inspect",
        "--json",
        "--descriptor",
        &l.p("plain.json"),
    ]))
    .unwrap();
    assert_eq!(j["encrypted"], false);
}

#[test]
fn layer_encrypt_without_descriptor() {
    let l = Layer::new(1000);
    let extra = [
        "--media-type",
        "application/vnd.oci.image.layer.v1.tar+zstd",
    ];
    ok(&layer_encrypt(
        PUB,
        &extra,
        [&l.p("plain"), &l.p("enc"), &l.p("enc.json")],
    ));
    assert_eq!(
        l.json("enc.json")["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd+encrypted"
    );
    ok(&l.decrypt_args(&data(PRIV)));
    assert_eq!(l.json("dec.json")["digest"], l.json("plain.json")["digest"]);
    assert_eq!(
        l.json("dec.json")["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
}

#[test]
fn tampered_truncated_and_extended_blobs_leave_no_output() {
    let l = Layer::new(50_000);
    l.encrypt(PUB);
    let ct = fs::read(l.p("enc")).unwrap();
    let desc = l.json("enc.json");
    fs::write(l.p("dec"), "previous content").unwrap();

    // A flipped bit, with the descriptor's digest and size adjusted so that only the HMAC
    // can notice it.
    let mut bad = ct.clone();
    bad[40_000] ^= 0x10;
    for (name, blob) in [
        ("flipped", bad),
        ("truncated", ct[..49_000].to_vec()),
        ("extended", [ct.clone(), vec![0; 10]].concat()),
    ] {
        fs::write(l.p("enc"), &blob).unwrap();
        let mut d = desc.clone();
        d["digest"] = json!(format!(
            "sha256:{}",
            hex::encode(openssl::sha::sha256(&blob))
        ));
        d["size"] = json!(blob.len());
        fs::write(l.p("enc.json"), d.to_string()).unwrap();
        let err = fails(&l.decrypt_args(&data(PRIV)));
        assert!(
            err.contains("authentication failed") || err.contains("HMAC"),
            "{name}: {err}"
        );
        assert_eq!(
            fs::read_to_string(l.p("dec")).unwrap(),
            "previous content",
            "{name}"
        );
        assert!(!Path::new(&l.p("dec.json")).exists(), "{name}");
    }

    // A blob that does not match its descriptor is refused before decrypting.
    fs::write(l.p("enc"), &ct[..100]).unwrap();
    fs::write(l.p("enc.json"), desc.to_string()).unwrap();
    let err = fails(&l.decrypt_args(&data(PRIV)));
    assert!(err.contains("bytes but its descriptor says"), "{err}");
    let mut other = ct.clone();
    other[0] ^= 1;
    fs::write(l.p("enc"), &other).unwrap();
    let err = fails(&l.decrypt_args(&data(PRIV)));
    assert!(
        err.contains("does not match its descriptor") || err.contains("authentication"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(l.p("dec")).unwrap(), "previous content");
}

/// A layer of several pipe blocks whose last bytes are tampered with: the output file has
/// been partly written (on the writer thread) when the HMAC fails at the end, and the
/// command must still remove it before it exits.
#[test]
fn a_failure_after_megabytes_of_output_leaves_no_temporary_file() {
    let l = Layer::new(3 * 1024 * 1024 + 5);
    l.encrypt(PUB);
    let mut ct = fs::read(l.p("enc")).unwrap();
    let last = ct.len() - 1;
    ct[last] ^= 1;
    fs::write(l.p("enc"), &ct).unwrap();
    let mut d = l.json("enc.json");
    d["digest"] = json!(format!("sha256:{}", hex::encode(openssl::sha::sha256(&ct))));
    fs::write(l.p("enc.json"), d.to_string()).unwrap();
    let err = fails(&l.decrypt_args(&data(PRIV)));
    assert!(err.contains("authentication failed"), "{err}");
    let mut names: Vec<String> = fs::read_dir(l.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["enc", "enc.json", "plain", "plain.json"]);
}

#[test]
fn key_errors() {
    let l = Layer::new(100);
    l.encrypt(PUB);
    let err = fails(&l.decrypt_args(&data(OTHER_PRIV)));
    assert!(
        err.contains("none of the private keys could be used"),
        "{err}"
    );
    // The key is named by its file, with why it did not fit.
    assert!(
        err.contains(&format!(
            "private key {} (EC P-256): skipped: no recipient uses an algorithm for this key type",
            data(OTHER_PRIV)
        )),
        "{err}"
    );
    let err = fails(&l.decrypt_args(&data(PUB)));
    assert!(err.contains("is a public key"), "{err}");
    let err = fails(&l.decrypt_args("/nonexistent/key.pem"));
    assert!(err.contains("/nonexistent/key.pem"), "{err}");
    let err = fails(&l.decrypt_args(&l.p("plain")));
    assert!(err.contains("not a private key"), "{err}");
    assert!(!Path::new(&l.p("dec")).exists());

    // Garbage in the descriptor's annotations.
    let mut d = l.json("enc.json");
    d["annotations"]["org.opencontainers.image.enc.keys.jwe"] = json!("!!!notbase64");
    fs::write(l.p("enc.json"), d.to_string()).unwrap();
    let err = fails(&l.decrypt_args(&data(PRIV)));
    assert!(err.contains("base64"), "{err}");
    fs::write(l.p("enc.json"), "{not json").unwrap();
    let err = fails(&l.decrypt_args(&data(PRIV)));
    assert!(err.contains("not valid JSON"), "{err}");

    // Recipients that are not public keys.
    let err = fails(&layer_encrypt(
        PRIV,
        &[],
        [&l.p("plain"), &l.p("x"), &l.p("x.json")],
    ));
    assert!(err.contains("is a private key"), "{err}");
    let err = fails(&[
        "layer",
        "encrypt",
        "-r",
        "rot13:x",
        "--in",
        &l.p("plain"),
        "--out",
        &l.p("x"),
        "--descriptor-out",
        &l.p("x.json"),
    ]);
    assert!(err.contains("unknown recipient scheme"), "{err}");
    assert!(!Path::new(&l.p("x")).exists());
}

#[test]
fn passwords() {
    let l = Layer::new(100);
    l.encrypt(ENC_KEY_PUB);
    let key = data(ENC_KEY);
    let err = fails(&l.decrypt_args(&key));
    assert!(err.contains("missing password"), "{err}");
    let err = fails(&l.decrypt_args(&format!("{key}:pass=wrong")));
    assert!(err.contains("wrong password"), "{err}");
    ok(&l.decrypt_args(&format!("{key}:pass=password")));
    ok(&l.decrypt_args(&format!("{key}:password")));
    let pwfile = l.p("pw");
    fs::write(&pwfile, "password\n").unwrap();
    ok(&l.decrypt_args(&format!("{key}:file={pwfile}")));
    let from_stdin = l.decrypt_args(&format!("{key}:fd=0"));
    assert_success(
        &strs(&from_stdin),
        run_stdin(&strs(&from_stdin), b"password\n"),
    );
    let err = fails_stdin(&l.decrypt_args(&format!("{key}:fd=0")), b"nope\n");
    assert!(err.contains("wrong password"), "{err}");
    let from_env = l.decrypt_args(&format!("{}:env=OCICRYPT_TEST_PW", data(PBES2_KEY)));
    let out = ocicrypt()
        .args(&from_env)
        .env("OCICRYPT_TEST_PW", "password")
        .output();
    assert_success(&strs(&from_env), out.unwrap());
    assert_eq!(
        fs::read(l.p("dec")).unwrap(),
        fs::read(l.p("plain")).unwrap()
    );
}

#[test]
fn adding_recipients_to_an_encrypted_layer() {
    let l = Layer::new(5000);
    l.encrypt(PUB);
    let before = fs::read(l.p("enc")).unwrap();
    let descriptor = l.p("enc.json");
    let add_other = |extra: &[&str]| {
        let extra = [&["--descriptor", &descriptor], extra].concat();
        let files = [&l.p("enc"), &l.p("enc2"), &l.p("enc2.json")];
        layer_encrypt(OTHER_PUB, &extra, files.map(String::as_str))
    };
    let err = fails(&add_other(&[]));
    assert!(err.contains("missing private key"), "{err}");
    ok(&add_other(&["-k", &data(PRIV)]));
    assert_eq!(fs::read(l.p("enc2")).unwrap(), before, "data untouched");
    let d2 = l.json("enc2.json");
    assert_eq!(d2["digest"], l.json("enc.json")["digest"]);
    assert_eq!(
        d2["annotations"]["org.opencontainers.image.enc.keys.jwe"]
            .as_str()
            .unwrap()
            .split(',')
            .count(),
        2
    );
    fs::copy(l.p("enc2.json"), l.p("enc.json")).unwrap();
    for k in [PRIV, OTHER_PRIV] {
        ok(&l.decrypt_args(&data(k)));
        assert_eq!(
            fs::read(l.p("dec")).unwrap(),
            fs::read(l.p("plain")).unwrap()
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["layer", "decrypt"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(run(&["--help"]).status.success());
}

#[test]
fn image_failures_leave_destination_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let src = format!("oci:{}:latest", data("examples/image"));
    let enc = tmp.path().join("enc");
    ok(&image_encrypt(PUB, &[], &src, &oci(&enc, "latest")));

    // Wrong key: no destination appears.
    let dst = tmp.path().join("dec");
    let err = fails(&image_decrypt(
        OTHER_PRIV,
        &[],
        &oci(&enc, "latest"),
        &oci(&dst, "latest"),
    ));
    assert!(err.contains("layer"), "{err}");
    assert!(!dst.exists());
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "no temporary directory left behind"
    );

    // Into an existing layout: a failure leaves its index and blobs as they were.
    let before: Vec<_> = walk(&enc);
    let index_before = fs::read(enc.join("index.json")).unwrap();
    let err = fails(&image_decrypt(
        OTHER_PRIV,
        &[],
        &oci(&enc, "latest"),
        &oci(&enc, "plain"),
    ));
    assert!(err.contains("none of the private keys"), "{err}");
    assert_eq!(walk(&enc), before);
    assert_eq!(fs::read(enc.join("index.json")).unwrap(), index_before);

    // A tampered layer blob: decryption fails, nothing written.
    let path = blob_path(&enc, &image_layers(&enc, "latest")[1].1);
    let mut blob = fs::read(&path).unwrap();
    blob[10] ^= 1;
    fs::write(&path, &blob).unwrap();
    let err = fails(&image_decrypt(
        PRIV,
        &[],
        &oci(&enc, "latest"),
        &oci(&dst, "latest"),
    ));
    assert!(
        err.contains("authentication failed") || err.contains("corrupt"),
        "{err}"
    );
    assert!(!dst.exists());

    // A directory that is not a layout is never overwritten.
    let junk = tmp.path().join("junk");
    fs::create_dir(&junk).unwrap();
    fs::write(junk.join("file"), "x").unwrap();
    let err = fails(&image_encrypt(PUB, &[], &src, &oci(&junk, "latest")));
    assert!(err.contains("not an OCI layout"), "{err}");

    // Missing tag, missing layout.
    let err = fails(&[
        "image",
        "inspect",
        &format!("oci:{}:nosuchtag", data("examples/image")),
    ]);
    assert!(err.contains("nosuchtag"), "{err}");
    let err = fails(&["image", "inspect", "oci:/nonexistent/layout"]);
    assert!(err.contains("not an OCI layout"), "{err}");
}

#[test]
fn image_into_same_layout_and_layer_selection() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("img");
    ok(&image_encrypt(
        PUB,
        &["--layer", "0"],
        &format!("oci:{}:latest", data("examples/image")),
        &oci(&layout, "enc"),
    ));
    let orig = image_layers(Path::new(&data("examples/image")), "latest");
    let enc = image_layers(&layout, "enc");
    assert!(enc[0].0.ends_with("+encrypted") && !enc[1].0.ends_with("+encrypted"));
    assert_eq!(enc[1], orig[1]);
    // Decrypt into the same layout under another tag.
    ok(&image_decrypt(
        PRIV,
        &[],
        &oci(&layout, "enc"),
        &oci(&layout, "plain"),
    ));
    assert_eq!(image_layers(&layout, "plain"), orig);
    assert_eq!(image_layers(&layout, "enc"), enc, "the other tag is kept");
    // Encrypting an encrypted layer again needs a key; with one, recipients are added.
    let err = fails(&image_encrypt(
        OTHER_PUB,
        &[],
        &oci(&layout, "enc"),
        &oci(&layout, "enc2"),
    ));
    assert!(err.contains("already encrypted"), "{err}");
    ok(&[
        "image",
        "encrypt",
        "-r",
        &format!("jwe:{}", data(OTHER_PUB)),
        "-k",
        &data(PRIV),
        &oci(&layout, "enc"),
        &oci(&layout, "enc2"),
    ]);
    ok(&image_decrypt(
        OTHER_PRIV,
        &[],
        &oci(&layout, "enc2"),
        &oci(&layout, "plain2"),
    ));
    assert_eq!(image_layers(&layout, "plain2"), orig);
    let err = fails(&image_encrypt(
        PUB,
        &["--layer", "5"],
        &oci(&layout, "plain"),
        &oci(&layout, "x"),
    ));
    assert!(err.contains("--layer 5"), "{err}");
}

#[test]
fn multi_platform_index() {
    // Build a layout whose tag points at an index of two platform images (both using the
    // example image's manifest content, with distinct config annotations to differ).
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("multi");
    ok(&image_decrypt(
        PRIV,
        &[],
        &format!("oci:{}:latest", data("examples/image")),
        &oci(&layout, "base"),
    ));
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let base = index["manifests"][0].clone();
    let blobs = layout.join("blobs/sha256");
    let manifest: Value = serde_json::from_slice(
        &fs::read(
            blobs.join(
                base["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:"),
            ),
        )
        .unwrap(),
    )
    .unwrap();
    let mut entries = Vec::new();
    for (os, arch) in [("linux", "amd64"), ("linux", "arm64")] {
        let mut m = manifest.clone();
        m["annotations"] = json!({"test.platform": format!("{os}/{arch}")});
        let bytes = serde_json::to_vec(&m).unwrap();
        let d = hex::encode(openssl::sha::sha256(&bytes));
        fs::write(blobs.join(&d), &bytes).unwrap();
        entries.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{d}"), "size": bytes.len(), "platform": {"os": os, "architecture": arch}}));
    }
    let idx = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries})).unwrap();
    let d = hex::encode(openssl::sha::sha256(&idx));
    fs::write(blobs.join(&d), &idx).unwrap();
    let top = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{d}"), "size": idx.len(), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]});
    fs::write(layout.join("index.json"), top.to_string()).unwrap();

    let multi = oci(&layout, "multi");
    let enc = oci(&layout, "enc");
    ok(&image_encrypt(
        PUB,
        &["--platform", "linux/arm64"],
        &multi,
        &enc,
    ));
    let ids = image_layers(&layout, "enc");
    assert_eq!(ids.len(), 4);
    assert!(
        !ids[0].0.ends_with("+encrypted") && !ids[1].0.ends_with("+encrypted"),
        "amd64 untouched"
    );
    assert!(
        ids[2].0.ends_with("+encrypted") && ids[3].0.ends_with("+encrypted"),
        "arm64 encrypted"
    );
    let j: Value = serde_json::from_str(&ok(&["image", "inspect", "--json", &enc])).unwrap();
    assert_eq!(j["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(j["manifests"][1]["platform"]["architecture"], "arm64");
    assert_eq!(
        j["manifests"][1]["layers"][0]["encryption"]["encrypted"],
        true
    );
    let err = fails(&image_encrypt(
        PUB,
        &["--platform", "linux/s390x"],
        &multi,
        &enc,
    ));
    assert!(err.contains("no image in the index matches"), "{err}");
    ok(&image_decrypt(PRIV, &[], &enc, &oci(&layout, "dec")));
    assert_eq!(image_layers(&layout, "dec"), image_layers(&layout, "multi"));

    // Without --platform both images are encrypted, in one pool of layers for the whole
    // index: the layers the two manifests share are encrypted once, so both name the same
    // encrypted blobs.
    let all = oci(&layout, "all");
    ok(&[
        "image",
        "encrypt",
        "--jobs",
        "3",
        "-r",
        &format!("jwe:{}", data(PUB)),
        &multi,
        &all,
    ]);
    let ids = image_layers(&layout, "all");
    assert_eq!(ids.len(), 4);
    assert!(
        ids.iter().all(|(mt, _)| mt.ends_with("+encrypted")),
        "{ids:?}"
    );
    assert_eq!(
        (&ids[0], &ids[1]),
        (&ids[2], &ids[3]),
        "shared layers encrypted once"
    );
    ok(&image_decrypt(PRIV, &[], &all, &oci(&layout, "alldec")));
    assert_eq!(
        image_layers(&layout, "alldec"),
        image_layers(&layout, "multi")
    );
}
