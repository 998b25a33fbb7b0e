//! `docker://` sources and destinations against Debian's `docker-registry` (CNCF distribution
//! 2.8) on loopback: one instance with TLS (a CA made here) and htpasswd basic auth, one on
//! plain HTTP. Interop with skopeo (Go ocicrypt) through the registry both ways, registry to
//! registry, a multi-platform index with `--platform`, the auth file, and the failures: a
//! wrong password, an untrusted CA, plain HTTP without `--*-tls-verify=false`, an unknown
//! image. A failed run must tag nothing. Needs docker-registry, htpasswd (apache2-utils),
//! openssl and skopeo (`cargo xtask ci` installs them); without them the tests fail loudly.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fs;
use std::path::{Path, PathBuf};

use ocicrypt_tests::{
    REGISTRY_USER, Registry, example_image, example_layer_ids, layer_ids, manifest_layer_ids, oci,
    ocicrypt, path, skopeo, tool_fails,
};
use serde_json::{Value, json};

const PUB: &str = "examples/keys/TEST-ONLY-rsa-public.pem";
const PRIV: &str = "examples/keys/TEST-ONLY-rsa-private.pem";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn creds() -> String {
    format!("{}:{}", REGISTRY_USER.0, REGISTRY_USER.1)
}

/// An auth file as `podman login` writes it, for `host`.
fn auth_file(dir: &Path, host: &str) -> PathBuf {
    use std::process::Command;
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(creds().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let b64 = String::from_utf8(out.stdout).unwrap();
    let p = dir.join("auth.json");
    fs::write(
        &p,
        json!({"auths": {host: {"auth": b64.trim()}}}).to_string(),
    )
    .unwrap();
    p
}

/// skopeo (Go ocicrypt) pulls `image` with `flags`, decrypts it with `key` into
/// `oci:OUT:TAG`, and gets the example image's layers back.
fn skopeo_decrypts_to_example(flags: &[&str], key: &str, image: &str, out: &Path, tag: &str) {
    let dest = oci(out, tag);
    let mut args = vec!["copy", "--quiet"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--decryption-key", key, image, &dest]);
    skopeo(&args);
    assert_eq!(layer_ids(out, tag), example_layer_ids());
}

/// The raw manifest (or index) skopeo reads from the registry.
fn raw(image: &str, extra: &[&str]) -> Value {
    let mut args = vec!["inspect", "--raw"];
    args.extend_from_slice(extra);
    args.push(image);
    serde_json::from_str(&skopeo(&args)).unwrap()
}

/// The media type of each layer of `manifest`.
fn media_types(manifest: &Value) -> Vec<String> {
    manifest_layer_ids(manifest)
        .into_iter()
        .map(|(media_type, _)| media_type)
        .collect()
}

#[test]
fn we_encrypt_and_skopeo_decrypts_through_a_tls_registry() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::tls_with_auth(&t.path().join("reg"));
    let ca = reg.ca_dir.clone().unwrap();
    let creds = creds();
    let plain = format!("{}:plain", reg.image("app"));
    let enc = format!("{}:enc", reg.image("app"));
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-cert-dir",
        s(&ca),
        "--dest-creds",
        &creds,
        &example_image(),
        &plain,
    ]);
    // Registry to registry, credentials from an auth file.
    let auth = auth_file(t.path(), &reg.host);
    ocicrypt(&[
        "image",
        "encrypt",
        "-r",
        &format!("jwe:{}", s(&path(PUB))),
        "--authfile",
        s(&auth),
        "--src-cert-dir",
        s(&ca),
        "--dest-cert-dir",
        s(&ca),
        &plain,
        &enc,
    ])
    .unwrap();
    let m = raw(&enc, &["--cert-dir", s(&ca), "--creds", &creds]);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert!(
        media_types(&m).iter().all(|t| t.ends_with("+encrypted")),
        "{m}"
    );
    // skopeo (Go ocicrypt) pulls and decrypts what we pushed: the original layers again.
    let out = t.path().join("out");
    skopeo_decrypts_to_example(
        &["--src-cert-dir", s(&ca), "--src-creds", &creds],
        s(&path(PRIV)),
        &enc,
        &out,
        "dec",
    );
    // And from a layout straight into the registry.
    ocicrypt(&[
        "image",
        "encrypt",
        "-r",
        &format!("jwe:{}", s(&path(PUB))),
        "--dest-creds",
        &creds,
        "--dest-cert-dir",
        s(&ca),
        &example_image(),
        &format!("{}:enc2", reg.image("team/app")),
    ])
    .unwrap();
    skopeo_decrypts_to_example(
        &["--src-cert-dir", s(&ca), "--src-creds", &creds],
        s(&path(PRIV)),
        &format!("{}:enc2", reg.image("team/app")),
        &out,
        "dec2",
    );
    // Rewrap in the registry: a new recipient only; skopeo opens it with the new key.
    let other = t.path().join("other.pem");
    let other_pub = t.path().join("other-pub.pem");
    ocicrypt_tests::tool("openssl", &["genrsa", "-out", s(&other), "2048"]);
    ocicrypt_tests::tool(
        "openssl",
        &["rsa", "-in", s(&other), "-pubout", "-out", s(&other_pub)],
    );
    let rewrapped = format!("{}:rewrapped", reg.image("app"));
    ocicrypt(&[
        "image",
        "rewrap",
        "-k",
        s(&path(PRIV)),
        "-r",
        &format!("jwe:{}", s(&other_pub)),
        "--authfile",
        s(&auth),
        "--src-cert-dir",
        s(&ca),
        "--dest-cert-dir",
        s(&ca),
        &enc,
        &rewrapped,
    ])
    .unwrap();
    let m2 = raw(&rewrapped, &["--cert-dir", s(&ca), "--creds", &creds]);
    for (a, b) in m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(m2["layers"].as_array().unwrap())
    {
        assert_eq!(a["digest"], b["digest"], "rewrap keeps the layer data");
    }
    skopeo_decrypts_to_example(
        &["--src-cert-dir", s(&ca), "--src-creds", &creds],
        s(&other),
        &rewrapped,
        &out,
        "dec3",
    );
    let e = tool_fails(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-cert-dir",
            s(&ca),
            "--src-creds",
            &creds,
            "--decryption-key",
            s(&path(PRIV)),
            &rewrapped,
            &oci(&out, "dec4"),
        ],
    );
    assert!(!e.is_empty(), "the old key no longer opens it");
}

#[test]
fn skopeo_encrypts_and_we_decrypt_through_registries() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::tls_with_auth(&t.path().join("reg"));
    let plain_reg = Registry::plain(&t.path().join("plain"));
    let ca = reg.ca_dir.clone().unwrap();
    let creds = creds();
    let enc = format!("{}:skopeo", reg.image("app"));
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-cert-dir",
        s(&ca),
        "--dest-creds",
        &creds,
        "--encryption-key",
        &format!("jwe:{}", s(&path(PUB))),
        &example_image(),
        &enc,
    ]);
    // Registry to layout.
    let out = t.path().join("out");
    ocicrypt(&[
        "image",
        "decrypt",
        "-k",
        s(&path(PRIV)),
        "--src-creds",
        &creds,
        "--src-cert-dir",
        s(&ca),
        &enc,
        &oci(&out, "dec"),
    ])
    .unwrap();
    assert_eq!(layer_ids(&out, "dec"), example_layer_ids());
    // Registry (TLS, auth) to another registry (plain HTTP, allowed explicitly).
    let dst = format!("{}:dec", plain_reg.image("copy"));
    ocicrypt(&[
        "image",
        "decrypt",
        "-k",
        s(&path(PRIV)),
        "--src-creds",
        &creds,
        "--src-cert-dir",
        s(&ca),
        "--dest-tls-verify=false",
        &enc,
        &dst,
    ])
    .unwrap();
    let m = raw(&dst, &["--tls-verify=false"]);
    assert!(
        media_types(&m).iter().all(|t| !t.ends_with("+encrypted")),
        "{m}"
    );
    assert_eq!(manifest_layer_ids(&m), example_layer_ids());
    // Our inspect reads it back over plain HTTP.
    ocicrypt(&["image", "inspect", "--tls-verify=false", &dst]).unwrap();
}

#[test]
fn failures_name_their_cause_and_tag_nothing() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::tls_with_auth(&t.path().join("reg"));
    let plain_reg = Registry::plain(&t.path().join("plain"));
    let ca = reg.ca_dir.clone().unwrap();
    let recipient = format!("jwe:{}", s(&path(PUB)));
    // A wrong password: refused, and nothing tagged.
    let bad = format!("{}:bad", reg.image("app"));
    let err = ocicrypt(&[
        "image",
        "encrypt",
        "-r",
        &recipient,
        "--dest-creds",
        "tester:wrong",
        "--dest-cert-dir",
        s(&ca),
        &example_image(),
        &bad,
    ])
    .unwrap_err();
    assert!(
        err.contains(&format!("authentication failed for {}", reg.host)),
        "{err}"
    );
    assert!(!err.contains("wrong"), "the password is not shown: {err}");
    let e = tool_fails(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--cert-dir",
            s(&ca),
            "--creds",
            &creds(),
            &bad,
        ],
    );
    assert!(e.contains("manifest unknown"), "{e}");
    // No credentials at all (and no auth file where skopeo's defaults look).
    let empty_home = t.path().join("home");
    fs::create_dir_all(&empty_home).unwrap();
    let err = ocicrypt(&[
        "image",
        "inspect",
        "--authfile",
        s(&auth_file(&empty_home, "elsewhere:1")),
        "--cert-dir",
        s(&ca),
        &format!("{}:x", reg.image("app")),
    ])
    .unwrap_err();
    assert!(err.contains("authentication failed"), "{err}");
    // An untrusted CA: the error names where to put it.
    let err = ocicrypt(&["image", "inspect", &format!("{}:x", reg.image("app"))]).unwrap_err();
    assert!(err.contains("not trusted"), "{err}");
    assert!(err.contains("/etc/containers/certs.d/"), "{err}");
    // Plain HTTP is refused unless allowed.
    let err = ocicrypt(&[
        "image",
        "encrypt",
        "-r",
        &recipient,
        &example_image(),
        &format!("{}:v1", plain_reg.image("app")),
    ])
    .unwrap_err();
    assert!(err.contains("does not speak HTTPS"), "{err}");
    assert!(err.contains("tls-verify=false"), "{err}");
    // An unknown image.
    let err = ocicrypt(&[
        "image",
        "inspect",
        "--tls-verify=false",
        &format!("{}:nope", plain_reg.image("app")),
    ])
    .unwrap_err();
    assert!(err.contains("manifest unknown"), "{err}");
    // A key that opens nothing: nothing tagged at the destination either.
    ocicrypt(&[
        "image",
        "encrypt",
        "-r",
        &recipient,
        "--dest-tls-verify=false",
        &example_image(),
        &format!("{}:enc", plain_reg.image("app")),
    ])
    .unwrap();
    let other = t.path().join("other.pem");
    let rsa = std::process::Command::new("openssl")
        .args(["genrsa", "2048"])
        .output()
        .unwrap();
    fs::write(&other, rsa.stdout).unwrap();
    let err = ocicrypt(&[
        "image",
        "decrypt",
        "-k",
        s(&other),
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("{}:enc", plain_reg.image("app")),
        &format!("{}:dec", plain_reg.image("app")),
    ])
    .unwrap_err();
    assert!(!err.is_empty());
    let e = tool_fails(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("{}:dec", plain_reg.image("app")),
        ],
    );
    assert!(e.contains("manifest unknown"), "{e}");
}

/// A layout tagged `multi`: an index of two platform images of the example's layers (their
/// manifests differ by an annotation).
fn multi_platform_layout(dir: &Path) -> String {
    skopeo(&["copy", "--quiet", &example_image(), &oci(dir, "base")]);
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let base = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest: Value = serde_json::from_slice(&fs::read(blob(&base)).unwrap()).unwrap();
    let put = |bytes: &[u8]| {
        let f = dir.join("tmp.json");
        fs::write(&f, bytes).unwrap();
        let out = ocicrypt_tests::tool("sha256sum", &[s(&f)]);
        let d = format!("sha256:{}", &out[..64]);
        fs::rename(&f, blob(&d)).unwrap();
        d
    };
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let mut m = manifest.clone();
        m["annotations"] = json!({"test.platform": format!("linux/{arch}")});
        let bytes = serde_json::to_vec(&m).unwrap();
        let d = put(&bytes);
        entries.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": bytes.len(), "platform": {"os": "linux", "architecture": arch}}));
    }
    let idx = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries})).unwrap();
    let d = put(&idx);
    let top = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": idx.len(), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]});
    fs::write(dir.join("index.json"), top.to_string()).unwrap();
    oci(dir, "multi")
}

#[test]
fn multi_platform_index_with_platform() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::plain(&t.path().join("reg"));
    let multi = multi_platform_layout(&t.path().join("layout"));
    let src = format!("{}:multi", reg.image("app"));
    skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--dest-tls-verify=false",
        &multi,
        &src,
    ]);
    let dst = format!("{}:multi-enc", reg.image("app"));
    ocicrypt(&[
        "image",
        "encrypt",
        "-r",
        &format!("jwe:{}", s(&path(PUB))),
        "--platform",
        "linux/arm64",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &src,
        &dst,
    ])
    .unwrap();
    let index = raw(&dst, &["--tls-verify=false"]);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    let orig = raw(&src, &["--tls-verify=false"]);
    assert_eq!(
        entries[0], orig["manifests"][0],
        "amd64 carried over unchanged"
    );
    assert_ne!(entries[1]["digest"], orig["manifests"][1]["digest"]);
    let by_digest = |e: &Value| {
        let d = e["digest"].as_str().unwrap();
        raw(
            &format!("{}@{d}", reg.image("app")),
            &["--tls-verify=false"],
        )
    };
    assert!(
        media_types(&by_digest(&entries[0]))
            .iter()
            .all(|t| !t.ends_with("+encrypted"))
    );
    assert!(
        media_types(&by_digest(&entries[1]))
            .iter()
            .all(|t| t.ends_with("+encrypted"))
    );
    // skopeo decrypts the arm64 image.
    let out = t.path().join("out");
    skopeo_decrypts_to_example(
        &["--src-tls-verify=false", "--override-arch", "arm64"],
        s(&path(PRIV)),
        &dst,
        &out,
        "arm64",
    );
}

/// A layout tagged `latest` of `layers` random uncompressed layers of `mib` MiB each,
/// written by the shell tools (`head` on /dev/urandom, `sha256sum`).
fn random_layout(dir: &Path, layers: usize, mib: usize) -> String {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let digest_of = |f: &Path| {
        let out = ocicrypt_tests::tool("sha256sum", &[s(f)]);
        out[..64].to_owned()
    };
    let mut descs = Vec::new();
    for i in 0..layers {
        let f = dir.join(format!("layer{i}"));
        ocicrypt_tests::tool(
            "sh",
            &[
                "-c",
                &format!("head -c {}M /dev/urandom > '{}'", mib, s(&f)),
            ],
        );
        let d = digest_of(&f);
        fs::rename(&f, blobs.join(&d)).unwrap();
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{d}"), "size": mib << 20}));
    }
    let put = |v: &Value| {
        let bytes = serde_json::to_vec(v).unwrap();
        let f = dir.join("doc");
        fs::write(&f, &bytes).unwrap();
        let d = digest_of(&f);
        fs::rename(&f, blobs.join(&d)).unwrap();
        (format!("sha256:{d}"), bytes.len())
    };
    let diff_ids: Vec<Value> = descs.iter().map(|d| d["digest"].clone()).collect();
    let (cd, cs) = put(
        &json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}),
    );
    let (md, ms) = put(
        &json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs}, "layers": descs}),
    );
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        dir.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}).to_string(),
    )
    .unwrap();
    oci(dir, "latest")
}

/// Runs our binary under `/usr/bin/time`, with TMPDIR naming a directory that does not
/// exist (anything spooled to a temporary file fails) and an empty working directory that
/// must stay empty; its peak RSS in KiB.
fn run_streaming(cli: &Path, work: &Path, args: &[&str]) -> u64 {
    let rss = work.join("rss");
    fs::create_dir_all(work.join("cwd")).unwrap();
    let out = std::process::Command::new("/usr/bin/time")
        .arg("-o")
        .arg(&rss)
        .args(["-f", "%M"])
        .arg(cli)
        .args(args)
        .env("TMPDIR", work.join("no-such-tmp"))
        .current_dir(work.join("cwd"))
        .output()
        .expect("/usr/bin/time is installed (apt-get install time)");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_dir(work.join("cwd")).unwrap().count(), 0);
    fs::read_to_string(&rss).unwrap().trim().parse().unwrap()
}

/// 512 MiB registry to registry, both ways, without touching the disk and in bounded
/// memory: the blobs stream from the source's responses through the cipher into the
/// destination's upload sessions.
#[test]
fn half_a_gibibyte_streams_registry_to_registry() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::plain(&t.path().join("reg"));
    let cli = ocicrypt_tests::build_bin("ocicrypt-cli", "ocicrypt", &[]);
    let layout = t.path().join("big");
    let src = random_layout(&layout, 2, 256);
    let plain = format!("{}:plain", reg.image("big"));
    skopeo(&["copy", "--quiet", "--dest-tls-verify=false", &src, &plain]);
    fs::remove_dir_all(&layout).unwrap();
    let enc = format!("{}:enc", reg.image("big"));
    let dec = format!("{}:dec", reg.image("big"));
    let recipient = format!("jwe:{}", s(&path(PUB)));
    let key = path(PRIV);
    let limit_kib = 64 * 1024;
    let rss = run_streaming(
        &cli,
        t.path(),
        &[
            "image",
            "encrypt",
            "-r",
            &recipient,
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &plain,
            &enc,
        ],
    );
    eprintln!("encrypt, registry to registry: peak RSS {rss} KiB");
    assert!(rss < limit_kib, "encrypt: peak RSS {rss} KiB");
    let rss = run_streaming(
        &cli,
        t.path(),
        &[
            "image",
            "decrypt",
            "-k",
            s(&key),
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &enc,
            &dec,
        ],
    );
    eprintln!("decrypt, registry to registry: peak RSS {rss} KiB");
    assert!(rss < limit_kib, "decrypt: peak RSS {rss} KiB");
    let (m_plain, m_enc, m_dec) = (
        raw(&plain, &["--tls-verify=false"]),
        raw(&enc, &["--tls-verify=false"]),
        raw(&dec, &["--tls-verify=false"]),
    );
    assert!(
        media_types(&m_enc)
            .iter()
            .all(|t| t.ends_with("+encrypted"))
    );
    assert_eq!(m_dec["layers"], m_plain["layers"], "the same layers again");
    assert_eq!(m_dec["config"], m_plain["config"]);
}

/// A Docker schema 2 image (as `skopeo copy --format v2s2` pushes it) is encrypted into OCI,
/// as skopeo does it, and skopeo decrypts that.
#[test]
fn docker_schema2_images_are_encrypted_as_oci() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::plain(&t.path().join("reg"));
    let v2s2 = format!("{}:v2s2", reg.image("app"));
    skopeo(&[
        "copy",
        "--quiet",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &example_image(),
        &v2s2,
    ]);
    assert_eq!(
        raw(&v2s2, &["--tls-verify=false"])["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let enc = format!("{}:enc", reg.image("app"));
    ocicrypt(&[
        "image",
        "encrypt",
        "-r",
        &format!("jwe:{}", s(&path(PUB))),
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &v2s2,
        &enc,
    ])
    .unwrap();
    let m = raw(&enc, &["--tls-verify=false"]);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert!(
        media_types(&m)
            .iter()
            .all(|t| t == "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"),
        "{m}"
    );
    let out = t.path().join("out");
    skopeo_decrypts_to_example(
        &["--src-tls-verify=false"],
        s(&path(PRIV)),
        &enc,
        &out,
        "dec",
    );
}

/// A registry played by threads, for what docker-registry will not do: `answer` gets each
/// request's path and how many requests for that path came before, and returns the whole
/// response (status line, headers, body); it is written and the connection closed. TLS
/// client hellos are hung up on (plain HTTP only). Returns `HOST:PORT`.
fn fake_registry(answer: impl Fn(&str, usize) -> Vec<u8> + Send + Sync + 'static) -> String {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let answer = Arc::new(answer);
    let seen: Arc<Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (answer, seen) = (answer.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn);
                if reader
                    .fill_buf()
                    .map(|b| b.first() == Some(&0x16))
                    .unwrap_or(true)
                {
                    return;
                }
                let mut request = String::new();
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    request.push_str(&line);
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
                let n = {
                    let mut seen = seen.lock().unwrap();
                    let n = seen.entry(path.clone()).or_default();
                    *n += 1;
                    *n - 1
                };
                let _ = reader.into_inner().write_all(&answer(&path, n));
            });
        }
    });
    host
}

fn http(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n").into_bytes();
    r.extend_from_slice(body);
    r
}

/// A manifest over 4 MiB is refused, whether the registry says its size or not, and no
/// more than that is read (docker-registry itself refuses to store one): the manifest is
/// 64 MiB, with a Content-Length, or without one, ending when the connection closes.
#[test]
fn an_oversized_manifest_is_refused() {
    let host = fake_registry(|path, _| {
        let big = vec![b' '; 64 << 20];
        let mt = "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n";
        if path.ends_with("/manifests/sized") {
            http(
                "200 OK",
                &format!("{mt}Content-Length: {}\r\n", big.len()),
                &big,
            )
        } else if path.ends_with("/manifests/unsized") {
            http("200 OK", mt, &big)
        } else {
            http("200 OK", "Content-Length: 2\r\n", b"{}")
        }
    });
    for (tag, says) in [("sized", "67108864"), ("unsized", "")] {
        let err = ocicrypt(&[
            "image",
            "inspect",
            "--tls-verify=false",
            &format!("docker://{host}/app:{tag}"),
        ])
        .unwrap_err();
        assert!(err.contains("4194304"), "{tag}: {err}");
        assert!(err.contains(says), "{tag}: {err}");
    }
}

/// Reads (GET, HEAD) are tried again after a 5xx, with backoff: a registry that answers
/// 503 to the first two requests for each manifest and blob still serves the image; one
/// that keeps answering 503 fails after three tries, naming the status.
#[test]
fn reads_are_retried_after_server_errors() {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let sha = |b: &[u8]| {
        let f = tempfile::NamedTempFile::new().unwrap();
        fs::write(f.path(), b).unwrap();
        format!(
            "sha256:{}",
            &ocicrypt_tests::tool("sha256sum", &[s(f.path())])[..64]
        )
    };
    let config_digest = sha(config);
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": []})
    .to_string()
    .into_bytes();
    let host = fake_registry(move |path, n| {
        if path == "/v2/" {
            return http("200 OK", "Content-Length: 2\r\n", b"{}");
        }
        if n < 2 || path.contains("/down/") {
            return http("503 Service Unavailable", "Content-Length: 0\r\n", b"");
        }
        if path.ends_with("/manifests/v1") {
            let mt = "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n";
            http(
                "200 OK",
                &format!("{mt}Content-Length: {}\r\n", manifest.len()),
                &manifest,
            )
        } else if path.contains("/blobs/") {
            http(
                "200 OK",
                &format!("Content-Length: {}\r\n", config.len()),
                config,
            )
        } else {
            http("404 Not Found", "Content-Length: 0\r\n", b"")
        }
    });
    ocicrypt(&[
        "image",
        "inspect",
        "--tls-verify=false",
        &format!("docker://{host}/app:v1"),
    ])
    .unwrap();
    let err = ocicrypt(&[
        "image",
        "inspect",
        "--tls-verify=false",
        &format!("docker://{host}/down/app:v1"),
    ])
    .unwrap_err();
    assert!(err.contains("503"), "{err}");
}

/// Blobs left as they are (the config, layers not selected) are mounted from the source
/// repository when both are on one registry, not copied.
#[test]
fn unchanged_blobs_are_mounted_across_repositories() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::plain(&t.path().join("reg"));
    let src = format!("{}:v1", reg.image("a"));
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &example_image(),
        &src,
    ]);
    ocicrypt(&[
        "image",
        "encrypt",
        "--layer",
        "0",
        "-r",
        &format!("jwe:{}", s(&path(PUB))),
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &src,
        &format!("{}:enc", reg.image("b")),
    ])
    .unwrap();
    let m = raw(&src, &["--tls-verify=false"]);
    let log = reg.log();
    for digest in [&m["config"]["digest"], &m["layers"][1]["digest"]] {
        let d = digest.as_str().unwrap().replace(':', "%3A");
        assert!(
            log.lines()
                .any(|l| l.contains("POST /v2/b/blobs/uploads/?mount=")
                    && l.contains(&d)
                    && l.contains("\" 201 ")),
            "{digest} mounted:\n{log}"
        );
    }
    let enc = raw(&format!("{}:enc", reg.image("b")), &["--tls-verify=false"]);
    assert_eq!(enc["layers"][1], m["layers"][1]);
    assert!(media_types(&enc)[0].ends_with("+encrypted"));
}

/// Bearer tokens: docker-registry with `auth.token`, whose challenge sends clients to a token
/// service (played by the test) that checks their Basic credentials and signs a JWT for the
/// scopes asked. We push, pull and decrypt through it, skopeo reads what we pushed, and a
/// wrong password or none gets no token, a clear error and no tag.
#[test]
fn bearer_token_auth() {
    use ocicrypt_tests::TokenServer;
    let t = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(&t.path().join("tokens"));
    let reg = Registry::tls_with_token(&t.path().join("reg"), &tokens);
    let ca = reg.ca_dir.clone().unwrap();
    let creds = creds();
    let enc = format!("{}:enc", reg.image("bearer/app"));
    ocicrypt(&[
        "image",
        "encrypt",
        "-r",
        &format!("jwe:{}", s(&path(PUB))),
        "--dest-creds",
        &creds,
        "--dest-cert-dir",
        s(&ca),
        &example_image(),
        &enc,
    ])
    .unwrap();
    // The registry only takes tokens, so the push went through the token service: a token
    // was issued to our user for pushing to the repository.
    let asked = tokens.requests();
    assert!(
        asked.iter().any(|r| r.issued
            && r.user.as_deref() == Some(REGISTRY_USER.0)
            && r.scopes
                .iter()
                .any(|s| s.starts_with("repository:bearer/app:") && s.contains("push"))),
        "{asked:?}"
    );
    // skopeo (Go ocicrypt, its own token client) pulls and decrypts what we pushed.
    skopeo_decrypts_to_example(
        &["--src-cert-dir", s(&ca), "--src-creds", &creds],
        s(&path(PRIV)),
        &enc,
        &t.path().join("skopeo-out"),
        "dec",
    );
    // We pull and decrypt it too, into a layout.
    let out = t.path().join("out");
    ocicrypt(&[
        "image",
        "decrypt",
        "--key",
        s(&path(PRIV)),
        "--src-creds",
        &creds,
        "--src-cert-dir",
        s(&ca),
        &enc,
        &oci(&out, "dec"),
    ])
    .unwrap();
    assert_eq!(layer_ids(&out, "dec"), example_layer_ids());
    // Registry to registry, with the next token already expired (as if a long run had
    // outlived it): the registry refuses it, a new one is fetched, and the copy goes on.
    // The config is unchanged, so it is mounted from the other repository, with a token
    // that also allows pulling from there.
    tokens.expire_next(1);
    let before = tokens.requests().len();
    let dec = format!("{}:dec", reg.image("bearer/plain"));
    ocicrypt(&[
        "image",
        "decrypt",
        "--key",
        s(&path(PRIV)),
        "--src-creds",
        &creds,
        "--dest-creds",
        &creds,
        "--src-cert-dir",
        s(&ca),
        "--dest-cert-dir",
        s(&ca),
        &enc,
        &dec,
    ])
    .unwrap();
    let asked = tokens.requests()[before..].to_vec();
    assert!(asked.iter().any(|r| r.expired), "{asked:?}");
    assert!(
        asked.iter().any(|r| r.issued
            && !r.expired
            && r.scopes
                .iter()
                .any(|s| s == "repository:bearer/plain:pull,push")
            && r.scopes.iter().any(|s| s == "repository:bearer/app:pull")),
        "a token for the mount: {asked:?}"
    );
    let m = raw(&dec, &["--cert-dir", s(&ca), "--creds", &creds]);
    let config = m["config"]["digest"].as_str().unwrap().replace(':', "%3A");
    let log = reg.log();
    assert!(
        log.lines().any(
            |l| l.contains("POST /v2/bearer/plain/blobs/uploads/?mount=")
                && l.contains(&config)
                && l.contains("\" 201 ")
        ),
        "the config is mounted:\n{log}"
    );
    assert!(
        media_types(&m).iter().all(|t| !t.ends_with("+encrypted")),
        "{m}"
    );
    // A wrong password gets no token: refused, the password not shown, nothing tagged.
    let bad = format!("{}:bad", reg.image("bearer/app"));
    let before = tokens.requests().len();
    let err = ocicrypt(&[
        "image",
        "encrypt",
        "-r",
        &format!("jwe:{}", s(&path(PUB))),
        "--dest-creds",
        "tester:not-the-password",
        "--dest-cert-dir",
        s(&ca),
        &example_image(),
        &bad,
    ])
    .unwrap_err();
    assert!(
        err.contains(&format!("authentication failed for {}", reg.host)),
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");
    assert!(
        tokens.requests()[before..].iter().all(|r| !r.issued),
        "{:?}",
        tokens.requests()
    );
    let e = tool_fails(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--cert-dir",
            s(&ca),
            "--creds",
            &creds,
            &bad,
        ],
    );
    assert!(e.contains("manifest unknown"), "{e}");
    // No credentials: no token either.
    let home = t.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let err = ocicrypt(&[
        "image",
        "inspect",
        "--authfile",
        s(&auth_file(&home, "elsewhere:1")),
        "--cert-dir",
        s(&ca),
        &enc,
    ])
    .unwrap_err();
    assert!(err.contains("authentication failed"), "{err}");
}

/// Client certificates, as containers-certs.d lays them out: a registry that requires one
/// refuses a connection without it, with an error that says so; with the `client.cert` and
/// `client.key` pair in the certificate directory we push and pull, and skopeo reads the
/// same directory to decrypt what we pushed.
#[test]
fn client_certificates() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::tls_with_client_certs(&t.path().join("reg"));
    let (ca, client) = (reg.ca_dir.clone().unwrap(), reg.client_dir.clone().unwrap());
    let enc = format!("{}:enc", reg.image("mtls/app"));
    let encrypt = |cert_dir: &Path| {
        ocicrypt(&[
            "image",
            "encrypt",
            "-r",
            &format!("jwe:{}", s(&path(PUB))),
            "--dest-cert-dir",
            s(cert_dir),
            &example_image(),
            &enc,
        ])
    };
    // Only the CA: the registry ends the handshake.
    let err = encrypt(&ca).unwrap_err();
    assert!(
        err.contains(&format!("{} refused the TLS connection", reg.host))
            && err.contains("client certificate")
            && err.contains(s(&ca)),
        "{err}"
    );
    // With the client pair.
    encrypt(&client).unwrap();
    skopeo_decrypts_to_example(
        &["--src-cert-dir", s(&client)],
        s(&path(PRIV)),
        &enc,
        &t.path().join("skopeo-out"),
        "dec",
    );
    let out = t.path().join("out");
    ocicrypt(&[
        "image",
        "decrypt",
        "--key",
        s(&path(PRIV)),
        "--src-cert-dir",
        s(&client),
        &enc,
        &oci(&out, "dec"),
    ])
    .unwrap();
    assert_eq!(layer_ids(&out, "dec"), example_layer_ids());
    // A key without its certificate is a configuration error, before any connection.
    let broken = t.path().join("broken");
    fs::create_dir_all(&broken).unwrap();
    fs::copy(client.join("ca.crt"), broken.join("ca.crt")).unwrap();
    fs::copy(client.join("client.key"), broken.join("client.key")).unwrap();
    let err = encrypt(&broken).unwrap_err();
    assert!(err.contains("missing client certificate"), "{err}");
}
