//! The image operations through the public API: untrusted layouts (links, depth, size,
//! crafted graphs), fields oci-spec does not model, progress reports and failures that leave
//! the destination untouched.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ocicrypt_image::{Error, ImageRef, Options, Progress};
use serde_json::{Value, json};

/// The path of `examples/keys/<name>` of the workspace.
fn key(name: &str) -> String {
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/keys");
    keys.join(name).display().to_string()
}

fn ec() -> ocicrypt::EncryptConfig {
    ocicrypt::helpers::encrypt_config(
        [format!("jwe:{}", key("TEST-ONLY-rsa-public.pem"))],
        Vec::<String>::new(),
    )
    .unwrap()
}

fn dc() -> ocicrypt::DecryptConfig {
    ocicrypt::helpers::decrypt_config([key("TEST-ONLY-rsa-private.pem")]).unwrap()
}

/// A layout being built by hand.
struct Layout {
    root: PathBuf,
}

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

impl Layout {
    fn new(root: PathBuf) -> Self {
        fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        Self { root }
    }

    /// Stores `bytes`; a descriptor of them.
    fn blob(&self, media_type: &str, bytes: &[u8]) -> Value {
        let hex = hex::encode(openssl::sha::sha256(bytes));
        fs::write(self.root.join("blobs/sha256").join(&hex), bytes).unwrap();
        json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
    }

    fn json_blob(&self, media_type: &str, v: &Value) -> Value {
        self.blob(media_type, &serde_json::to_vec(v).unwrap())
    }

    /// A manifest of `layers` (contents) with a config; extra fields merged in.
    fn manifest(&self, layers: &[&[u8]], extra: Value) -> Value {
        let config = self.blob("application/vnd.oci.image.config.v1+json", b"{}");
        let layers: Vec<Value> = layers
            .iter()
            .map(|l| self.blob("application/vnd.oci.image.layer.v1.tar", l))
            .collect();
        let mut m =
            json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": layers});
        if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
            m.extend(extra);
        }
        self.json_blob(MANIFEST, &m)
    }

    fn index(&self, entries: Vec<Value>) -> Value {
        self.json_blob(
            INDEX,
            &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}),
        )
    }

    /// Tags `desc` in index.json.
    fn tag(&self, mut desc: Value, tag: &str) -> ImageRef {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc]});
        fs::write(
            self.root.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
        format!("oci:{}:{tag}", self.root.display())
            .parse()
            .unwrap()
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn blob_json(layout: &Path, digest: &str) -> Value {
    read_json(&layout.join("blobs").join(digest.replace(':', "/")))
}

fn tagged(layout: &Path, tag: &str) -> Value {
    read_json(&layout.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .cloned()
        .unwrap()
}

#[test]
fn fields_oci_spec_does_not_model_survive_encryption_and_decryption() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path().join("src"));
    let m = l.manifest(&[b"bottom", b"top"], json!({"x-manifest": {"kept": true}}));
    // A layer descriptor field unknown to oci-spec, in the manifest itself.
    let mut doc = blob_json(&l.root, m["digest"].as_str().unwrap());
    doc["layers"][1]["x-layer"] = json!("kept too");
    let m = l.json_blob(MANIFEST, &doc);
    let mut entry = m.clone();
    entry["x-entry"] = json!(7);
    let src = l.tag(entry, "latest");

    let enc_dir = dir.path().join("enc");
    let enc: ImageRef = format!("oci:{}:e", enc_dir.display()).parse().unwrap();
    let report = ocicrypt_image::encrypt(&src, &enc, &ec(), &Options::default()).unwrap();
    assert_eq!((report.layers_changed, report.layers_unchanged), (2, 0));
    let top = tagged(&enc_dir, "e");
    assert_eq!(top["x-entry"], 7);
    assert_eq!(top["digest"], report.root.digest().to_string());
    let em = blob_json(&enc_dir, top["digest"].as_str().unwrap());
    assert_eq!(em["x-manifest"], json!({"kept": true}));
    assert_eq!(em["layers"][1]["x-layer"], "kept too");
    assert!(
        em["layers"][1]["mediaType"]
            .as_str()
            .unwrap()
            .ends_with("+encrypted")
    );

    let back_dir = dir.path().join("back");
    let back: ImageRef = format!("oci:{}:b", back_dir.display()).parse().unwrap();
    ocicrypt_image::decrypt(&enc, &back, &dc(), &Options::default()).unwrap();
    // Decrypted, the manifest is the original again, byte for byte (same digest).
    assert_eq!(tagged(&back_dir, "b")["digest"], m["digest"]);
}

#[test]
fn progress_is_reported_per_layer() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path().join("src"));
    let big = vec![7u8; 3 << 20];
    let src = l.tag(l.manifest(&[b"a", &big, b"c"], json!({})), "latest");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let options = Options::default()
        .layers([0, -2])
        .progress(move |p| sink.lock().unwrap().push(p.clone()));
    let dst: ImageRef = format!("oci:{}/dst", dir.path().display()).parse().unwrap();
    let report = ocicrypt_image::encrypt(&src, &dst, &ec(), &options).unwrap();
    assert_eq!((report.layers_changed, report.layers_unchanged), (2, 1));
    let events = events.lock().unwrap();
    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Progress::LayerStarted { size, .. } => Some(*size),
            _ => None,
        })
        .collect();
    let mut sizes = started.clone();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 3 << 20]);
    let read: u64 = events
        .iter()
        .filter_map(|e| match e {
            Progress::LayerRead { bytes, .. } => Some(*bytes),
            _ => None,
        })
        .sum();
    assert_eq!(read, 1 + (3 << 20));
    let finished = events
        .iter()
        .filter(|e| matches!(e, Progress::LayerFinished { .. }))
        .count();
    assert_eq!(finished, 2);
}

#[test]
fn a_config_blob_that_is_a_link_out_of_the_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path().join("src"));
    let m = l.manifest(&[b"layer"], json!({}));
    let doc = blob_json(&l.root, m["digest"].as_str().unwrap());
    let config = l
        .root
        .join("blobs")
        .join(doc["config"]["digest"].as_str().unwrap().replace(':', "/"));
    let secret = dir.path().join("secret");
    fs::write(&secret, b"{}").unwrap();
    fs::remove_file(&config).unwrap();
    std::os::unix::fs::symlink(&secret, &config).unwrap();
    let src = l.tag(m, "latest");
    let dst_dir = dir.path().join("dst");
    let dst: ImageRef = format!("oci:{}", dst_dir.display()).parse().unwrap();
    let err = ocicrypt_image::encrypt(&src, &dst, &ec(), &Options::default()).unwrap_err();
    assert!(matches!(err, Error::NotARegularFile { .. }), "{err}");
    assert!(!dst_dir.exists());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temporary layout is left"
    );
}

#[test]
fn nesting_deeper_than_the_limit_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path().join("src"));
    let mut desc = l.manifest(&[b"x"], json!({}));
    for _ in 0..=ocicrypt_image::graph::MAX_DEPTH {
        desc = l.index(vec![desc]);
    }
    let src = l.tag(desc, "latest");
    let err = ocicrypt_image::inspect(&src).unwrap_err();
    assert!(matches!(err, Error::TooComplex { .. }), "{err}");
}

#[test]
fn an_index_that_lists_the_next_many_times_is_walked_once_per_document() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path().join("src"));
    let leaf = l.manifest(&[b"x"], json!({}));
    // 64^4 (16.7 million) paths to the one manifest through 4 small indexes: a walk of
    // every path would not end in any reasonable time.
    let mut desc = leaf.clone();
    for _ in 0..4 {
        desc = l.index(vec![desc; 64]);
    }
    let src = l.tag(desc, "latest");
    let dst: ImageRef = format!("oci:{}/dst", dir.path().display()).parse().unwrap();
    let report = ocicrypt_image::encrypt(&src, &dst, &ec(), &Options::default()).unwrap();
    assert_eq!((report.layers_changed, report.layers_unchanged), (1, 0));
    let info = ocicrypt_image::inspect(&dst).unwrap();
    assert_eq!(info.manifests.len(), 64, "the last index lists it 64 times");
    assert!(
        info.manifests
            .iter()
            .all(|m| m.layers[0].encryption.encrypted)
    );
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path().join("src"));
    let m = l.manifest(&[b"layer"], json!({}));
    let path = l
        .root
        .join("blobs")
        .join(m["digest"].as_str().unwrap().replace(':', "/"));
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] = b' ';
    fs::write(&path, bytes).unwrap();
    let src = l.tag(m, "latest");
    let err = ocicrypt_image::inspect(&src).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
}

#[test]
fn docker_manifests_become_oci_when_they_change_and_unknown_ones_are_named() {
    const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path().join("src"));
    let config = l.blob("application/vnd.docker.container.image.v1+json", b"{}");
    let layer = l.blob("application/vnd.docker.image.rootfs.diff.tar.gzip", b"a");
    let m = l.json_blob(
        DOCKER_MANIFEST,
        &json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config, "layers": [layer]}),
    );
    let mut entry = m.clone();
    entry["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let list = l.json_blob(
        DOCKER_LIST,
        &json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [entry]}),
    );
    let src = l.tag(list.clone(), "latest");
    let info = ocicrypt_image::inspect(&src).unwrap();
    assert_eq!(info.manifests[0].layers.len(), 1);

    // Encrypted: OCI, as skopeo writes it (Docker media types have no +encrypted forms).
    let out = dir.path().join("dst");
    let dst: ImageRef = format!("oci:{}:enc", out.display()).parse().unwrap();
    ocicrypt_image::encrypt(&src, &dst, &ec(), &Options::default()).unwrap();
    let top = tagged(&out, "enc");
    assert_eq!(top["mediaType"], INDEX);
    let index = blob_json(&out, top["digest"].as_str().unwrap());
    assert_eq!(index["mediaType"], INDEX);
    assert_eq!(index["manifests"][0]["mediaType"], MANIFEST);
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
    let manifest = blob_json(&out, index["manifests"][0]["digest"].as_str().unwrap());
    assert_eq!(manifest["mediaType"], MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        manifest["config"]["digest"], config["digest"],
        "same config blob"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
    );

    // Decrypted: plain OCI layers with the original digests.
    let back: ImageRef = format!("oci:{}:dec", out.display()).parse().unwrap();
    ocicrypt_image::decrypt(&dst, &back, &dc(), &Options::default()).unwrap();
    let index = blob_json(&out, tagged(&out, "dec")["digest"].as_str().unwrap());
    let manifest = blob_json(&out, index["manifests"][0]["digest"].as_str().unwrap());
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(manifest["layers"][0]["digest"], layer["digest"]);

    // Nothing to change (decrypting a plain image): the Docker documents stay as they are.
    let same: ImageRef = format!("oci:{}:same", out.display()).parse().unwrap();
    ocicrypt_image::decrypt(&src, &same, &dc(), &Options::default()).unwrap();
    assert_eq!(tagged(&out, "same")["digest"], list["digest"]);
    assert_eq!(tagged(&out, "same")["mediaType"], DOCKER_LIST);

    let d = l.blob("application/x-unknown", b"{}");
    let err = ocicrypt_image::inspect(&l.tag(d, "latest")).unwrap_err();
    assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");
}

#[test]
fn entries_of_other_kinds_and_platforms_not_selected_are_copied_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path().join("src"));
    let mut amd = l.manifest(&[b"amd64 layer"], json!({}));
    amd["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let mut arm = l.manifest(&[b"arm64 layer"], json!({}));
    arm["platform"] = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    let artifact = l.blob("application/vnd.example.sbom+json", b"{\"sbom\":1}");
    let src = l.tag(
        l.index(vec![amd.clone(), arm.clone(), artifact.clone()]),
        "latest",
    );
    let dst_dir = dir.path().join("dst");
    let dst: ImageRef = format!("oci:{}", dst_dir.display()).parse().unwrap();
    let options = Options::default().platforms(["linux/arm64"]);
    let report = ocicrypt_image::encrypt(&src, &dst, &ec(), &options).unwrap();
    assert_eq!(report.layers_changed, 1);
    let index = blob_json(
        &dst_dir,
        tagged(&dst_dir, "latest")["digest"].as_str().unwrap(),
    );
    assert_eq!(index["manifests"][0], amd, "not selected: unchanged");
    assert_ne!(
        index["manifests"][1]["digest"], arm["digest"],
        "selected: rewritten"
    );
    assert_eq!(index["manifests"][1]["platform"], arm["platform"]);
    assert_eq!(index["manifests"][2], artifact);
    for d in [&amd, &artifact] {
        let p = dst_dir
            .join("blobs")
            .join(d["digest"].as_str().unwrap().replace(':', "/"));
        assert!(p.is_file(), "{d}");
    }
    let info = ocicrypt_image::inspect(&dst).unwrap();
    assert_eq!(info.manifests.len(), 2);
    assert!(!info.manifests[0].layers[0].encryption.encrypted);
    assert!(info.manifests[1].layers[0].encryption.encrypted);
    let err = ocicrypt_image::encrypt(
        &src,
        &dst,
        &ec(),
        &Options::default().platforms(["linux/s390x"]),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NoPlatformMatch { .. }), "{err}");
    let err = ocicrypt_image::encrypt(&src, &dst, &ec(), &Options::default().platforms(["linux"]))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidPlatform { .. }), "{err}");
}

#[test]
fn a_wrong_key_leaves_the_destination_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _, enc) = encrypted_image(dir.path(), "src", &[b"a", b"b"]);
    // Decrypt into the source layout itself (another tag) with a key that does not fit.
    let (_, pem) = other_key(dir.path());
    let dc = ocicrypt::helpers::decrypt_config([pem.display().to_string()]).unwrap();
    let before: Vec<_> = walk(&l.root);
    let dst: ImageRef = format!("oci:{}:dec", l.root.display()).parse().unwrap();
    let err = ocicrypt_image::decrypt(&enc, &dst, &dc, &Options::default()).unwrap_err();
    assert!(matches!(err, Error::Layer { .. }), "{err}");
    let chain = chain(&err);
    assert!(chain.contains("none of the private keys"), "{chain}");
    assert_eq!(walk(&l.root), before);
}

#[test]
fn a_plain_layer_with_foreign_key_annotations_is_refused_not_reported_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path().join("src"));
    let m = l.manifest(&[b"plain data"], json!({}));
    let mut doc = blob_json(&l.root, m["digest"].as_str().unwrap());
    // Wrapped keys copied from an encrypted layer onto a plain one.
    let (_, _, enc) = encrypted_image(dir.path(), "other", &[b"x"]);
    let info = ocicrypt_image::inspect(&enc).unwrap();
    let enc_dir = dir.path().join("enc");
    let em = blob_json(&enc_dir, &info.manifests[0].manifest);
    doc["layers"][0]["annotations"] = em["layers"][0]["annotations"].clone();
    let src = l.tag(l.json_blob(MANIFEST, &doc), "latest");
    let mut ec = ec();
    ec.decrypt = dc();
    let dst: ImageRef = format!("oci:{}/dst", dir.path().display()).parse().unwrap();
    for err in [
        ocicrypt_image::encrypt(&src, &dst, &ec, &Options::default()).unwrap_err(),
        ocicrypt_image::decrypt(&src, &dst, &dc(), &Options::default()).unwrap_err(),
    ] {
        let chain = chain(&err);
        assert!(chain.contains("is not +encrypted"), "{chain}");
    }
    assert!(!dir.path().join("dst").exists());
}

#[test]
fn rewrap_into_another_layout_links_the_blobs_and_rotate_makes_new_ones() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let (_, src, enc) = encrypted_image(dir.path(), "src", &[b"one", b"two"]);
    let (p, k) = other_key(dir.path());
    let mut new_ec = ocicrypt::helpers::encrypt_config(
        [format!("jwe:{}", p.display())],
        [key("TEST-ONLY-rsa-private.pem")],
    )
    .unwrap();
    let re_dir = dir.path().join("re");
    let re: ImageRef = format!("oci:{}", re_dir.display()).parse().unwrap();
    let report = ocicrypt_image::rewrap(&enc, &re, &new_ec, &Options::default()).unwrap();
    assert_eq!((report.layers_changed, report.layers_unchanged), (2, 0));
    let enc_info = ocicrypt_image::inspect(&enc).unwrap();
    for l in &enc_info.manifests[0].layers {
        let rel = format!("blobs/{}", l.digest.replace(':', "/"));
        let a = fs::metadata(dir.path().join("enc").join(&rel)).unwrap();
        let b = fs::metadata(re_dir.join(&rel)).unwrap();
        assert_eq!(
            (a.dev(), a.ino()),
            (b.dev(), b.ino()),
            "hard-linked, not copied"
        );
    }
    let new_dc = ocicrypt::helpers::decrypt_config([k.display().to_string()]).unwrap();
    let opens = |r: &ImageRef, dc: &ocicrypt::DecryptConfig| -> Vec<Option<bool>> {
        ocicrypt_image::inspect_keys(r, dc, &Options::default())
            .unwrap()
            .manifests[0]
            .layers
            .iter()
            .map(|l| l.opens)
            .collect()
    };
    assert_eq!(opens(&re, &new_dc), vec![Some(true); 2]);
    assert_eq!(opens(&re, &dc()), vec![Some(false); 2]);
    assert_eq!(opens(&src, &dc()), vec![None; 2], "plain layers");

    // Rotation of the top layer only: a new blob there, the bottom one as it was.
    new_ec.decrypt = new_dc.clone();
    let rot: ImageRef = format!("oci:{}/rot", dir.path().display()).parse().unwrap();
    let report =
        ocicrypt_image::rotate(&re, &rot, &new_ec, &Options::default().layers([-1])).unwrap();
    assert_eq!((report.layers_changed, report.layers_unchanged), (1, 1));
    let (before, after) = (layers_of(&re), layers_of(&rot));
    assert_eq!(before[0].digest, after[0].digest);
    assert_ne!(before[1].digest, after[1].digest);
    let back: ImageRef = format!("oci:{}/back", dir.path().display())
        .parse()
        .unwrap();
    ocicrypt_image::decrypt(&rot, &back, &new_dc, &Options::default()).unwrap();
    let (plain, back) = (layers_of(&src), layers_of(&back));
    let digests = |v: &[ocicrypt_image::LayerEntry]| -> Vec<String> {
        v.iter().map(|l| l.digest.clone()).collect()
    };
    assert_eq!(digests(&back), digests(&plain));
}

#[test]
fn a_tampered_layer_is_not_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, enc) = encrypted_image(dir.path(), "src", &[&vec![5u8; 3 << 20], b"small"]);
    let enc_dir = dir.path().join("enc");
    let info = ocicrypt_image::inspect(&enc).unwrap();
    for (i, layer) in info.manifests[0].layers.iter().enumerate() {
        // Flip the last byte of one layer (its digest no longer matches either).
        let work = tempfile::tempdir().unwrap();
        let copy = work.path().join("enc");
        std::process::Command::new("cp")
            .args(["-r"])
            .arg(&enc_dir)
            .arg(&copy)
            .status()
            .unwrap();
        let blob = copy.join("blobs").join(layer.digest.replace(':', "/"));
        let mut bytes = fs::read(&blob).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&blob, bytes).unwrap();
        let from: ImageRef = format!("oci:{}", copy.display()).parse().unwrap();
        let mut new_ec = ec();
        new_ec.decrypt = dc();
        let to_dir = work.path().join("rot");
        let to: ImageRef = format!("oci:{}", to_dir.display()).parse().unwrap();
        for jobs in [1, 2] {
            let options = Options::default().jobs(jobs);
            let err = ocicrypt_image::rotate(&from, &to, &new_ec, &options).unwrap_err();
            let chain = chain(&err);
            assert!(
                chain.contains("authentication failed"),
                "layer {i}: {chain}"
            );
            assert!(!to_dir.exists(), "layer {i}");
        }
    }
}

/// The image of `layers` (tag `latest`) in a new layout `dir/<name>`, and that image encrypted
/// with [`ec`] into the layout `dir/enc`: the layout, the plain image and the encrypted one.
fn encrypted_image(dir: &Path, name: &str, layers: &[&[u8]]) -> (Layout, ImageRef, ImageRef) {
    let l = Layout::new(dir.join(name));
    let src = l.tag(l.manifest(layers, json!({})), "latest");
    let enc: ImageRef = format!("oci:{}/enc", dir.display()).parse().unwrap();
    ocicrypt_image::encrypt(&src, &enc, &ec(), &Options::default()).unwrap();
    (l, src, enc)
}

/// A new RSA-2048 key pair, for which nothing here is encrypted, written to `dir` as
/// `other.pub` and `other.pem`: their paths.
fn other_key(dir: &Path) -> (PathBuf, PathBuf) {
    let other = openssl::rsa::Rsa::generate(2048).unwrap();
    let (public, private) = (dir.join("other.pub"), dir.join("other.pem"));
    fs::write(&public, other.public_key_to_pem().unwrap()).unwrap();
    fs::write(&private, other.private_key_to_pem().unwrap()).unwrap();
    (public, private)
}

/// The layers of the first manifest of `image`, as [`ocicrypt_image::inspect`] lists them.
fn layers_of(image: &ImageRef) -> Vec<ocicrypt_image::LayerEntry> {
    ocicrypt_image::inspect(image).unwrap().manifests[0]
        .layers
        .clone()
}

/// The error and its causes, joined as the command line prints them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

fn walk(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}
