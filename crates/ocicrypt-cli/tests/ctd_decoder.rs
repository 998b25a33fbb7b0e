//! `ctd-decoder` run the way containerd runs it: the encrypted layer on stdin, the payload
//! (a protobuf `Any` of imgcrypt's `Payload` JSON) on file descriptor 3 (set up by a shell
//! redirection), the decrypted layer expected on stdout; and its failure modes: exit 1 with
//! one line on stderr, never a panic.

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
use std::process::{Command, Output};

use base64::Engine as _;
use common::{PRIV, PUB, data, layer_encrypt, ok};
use ocicrypt_cli::ctd::{Any, PAYLOAD_TYPE_URL};
use prost::Message;
use serde_json::{Value, json};

/// Runs ctd-decoder with `args`, `payload` on fd 3 (if any) and `stdin` on stdin.
fn decoder(args: &[&str], payload: Option<&Path>, stdin: &Path) -> Output {
    let bin = env!("CARGO_BIN_EXE_ctd-decoder");
    let script = match payload {
        Some(_) => r#"exec "$0" "$@" 3< "$PAYLOAD" < "$STDIN""#,
        None => r#"exec "$0" "$@" < "$STDIN""#,
    };
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(script)
        .arg(bin)
        .args(args)
        .env("STDIN", stdin);
    if let Some(p) = payload {
        c.env("PAYLOAD", p);
    }
    c.env(
        "STREAM_PROCESSOR_MEDIATYPE",
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
    )
    .env_remove("OCICRYPT_KEYPROVIDER_CONFIG")
    .output()
    .unwrap()
}

fn one_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("ctd-decoder: error: "), "{err}");
    err
}

fn payload_bytes(type_url: &str, value: &[u8]) -> Vec<u8> {
    Any {
        type_url: type_url.to_owned(),
        value: value.to_vec(),
    }
    .encode_to_vec()
}

struct Layer {
    dir: tempfile::TempDir,
    plain: Vec<u8>,
    desc: Value,
}

impl Layer {
    /// A 3 MiB layer encrypted for the TEST-ONLY key by our `layer encrypt`.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plain: Vec<u8> = (0..3 * 1024 * 1024 + 11)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let p = |n: &str| dir.path().join(n).display().to_string();
        fs::write(p("plain"), &plain).unwrap();
        ok(&layer_encrypt(
            PUB,
            &[],
            [&p("plain"), &p("enc"), &p("enc.json")],
        ));
        let desc = serde_json::from_slice(&fs::read(p("enc.json")).unwrap()).unwrap();
        Self { dir, plain, desc }
    }

    fn p(&self, n: &str) -> std::path::PathBuf {
        self.dir.path().join(n)
    }

    /// Writes a payload with `parameters` (Go's map, or null) and returns its path.
    fn payload(&self, parameters: Value) -> std::path::PathBuf {
        let value = json!({"DecryptConfig": {"Parameters": parameters}, "Descriptor": self.desc});
        let path = self.p("payload");
        fs::write(
            &path,
            payload_bytes(PAYLOAD_TYPE_URL, value.to_string().as_bytes()),
        )
        .unwrap();
        path
    }

    fn keys_dir(&self) -> std::path::PathBuf {
        let keys = self.p("keys");
        fs::create_dir_all(keys.join("sub")).unwrap();
        fs::copy(data(PRIV), keys.join("sub/key.pem")).unwrap();
        keys
    }
}

#[test]
fn decrypts_with_a_keys_directory_or_the_payloads_parameters() {
    let l = Layer::new();
    let keys = l.keys_dir();
    let payload = l.payload(Value::Null);
    let out = decoder(
        &["--decryption-keys-path", keys.to_str().unwrap()],
        Some(&payload),
        &l.p("enc"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == l.plain, "stdout is the plain layer");

    // The key in the payload's parameters (Go's privkeys), no directory.
    let key = base64::engine::general_purpose::STANDARD.encode(fs::read(data(PRIV)).unwrap());
    let payload = l.payload(json!({"privkeys": [key], "privkeys-passwords": [""]}));
    let out = decoder(&[], Some(&payload), &l.p("enc"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == l.plain);
}

#[test]
fn failures_are_one_line_and_exit_1() {
    let l = Layer::new();
    let keys = l.keys_dir();
    let dir = ["--decryption-keys-path", keys.to_str().unwrap()];

    let err = one_error_line(&decoder(&dir, None, &l.p("enc")));
    assert!(err.contains("file descriptor 3"), "{err}");

    fs::write(l.p("garbage"), b"\xff\xffnot protobuf").unwrap();
    let err = one_error_line(&decoder(&dir, Some(&l.p("garbage")), &l.p("enc")));
    assert!(err.contains("not a protobuf Any"), "{err}");

    fs::write(l.p("wrong-type"), payload_bytes("io.example.Other", b"{}")).unwrap();
    let err = one_error_line(&decoder(&dir, Some(&l.p("wrong-type")), &l.p("enc")));
    assert!(err.contains("io.containerd.ocicrypt.v1.Payload"), "{err}");

    fs::write(
        l.p("bad-json"),
        payload_bytes(PAYLOAD_TYPE_URL, b"{\"Descriptor\": 5}"),
    )
    .unwrap();
    let err = one_error_line(&decoder(&dir, Some(&l.p("bad-json")), &l.p("enc")));
    assert!(err.contains("Payload JSON"), "{err}");

    // No key: the schemes the layer carries are named.
    let payload = l.payload(Value::Null);
    let empty = l.p("empty");
    fs::create_dir(&empty).unwrap();
    let out = decoder(
        &["--decryption-keys-path", empty.to_str().unwrap()],
        Some(&payload),
        &l.p("enc"),
    );
    let err = one_error_line(&out);
    assert!(err.contains("jwe"), "{err}");
    assert!(out.stdout.is_empty());

    let err = one_error_line(&decoder(
        &[
            "--decryption-keys-path",
            l.p("nonexistent").to_str().unwrap(),
        ],
        Some(&payload),
        &l.p("enc"),
    ));
    assert!(err.contains("keys directory"), "{err}");

    // A symbolic link in the keys directory is refused.
    std::os::unix::fs::symlink(data(PRIV), keys.join("link.pem")).unwrap();
    let err = one_error_line(&decoder(&dir, Some(&payload), &l.p("enc")));
    assert!(err.contains("symbolic links"), "{err}");
    fs::remove_file(keys.join("link.pem")).unwrap();

    // A tampered layer: failure, and the end of the layer never reaches stdout.
    let mut bad = fs::read(l.p("enc")).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    fs::write(l.p("bad"), &bad).unwrap();
    let out = decoder(&dir, Some(&payload), &l.p("bad"));
    let err = one_error_line(&out);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        out.stdout.len() + 10 * 1024 <= l.plain.len(),
        "the last 10 KiB were held back"
    );
    assert!(l.plain.starts_with(&out.stdout));
}

/// The payload a real containerd sent (tests/vectors/containerd, with its capture script).
#[test]
fn decodes_the_payload_containerd_sends() {
    let bytes = fs::read(data("tests/vectors/containerd/payload-jwe.bin")).unwrap();
    let (desc, dc) = ocicrypt_cli::ctd::decode_payload(&bytes).unwrap();
    assert_eq!(
        desc.media_type().to_string(),
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
    );
    assert_eq!(
        desc.digest().to_string(),
        "sha256:875269a8c9b249130c60e431e95dcaa5f81102f9e5f60a3cd1e39b7c8a8e52b3"
    );
    assert_eq!(desc.size(), 212);
    assert!(
        dc.private_keys.is_empty() && dc.key_providers.is_empty(),
        "Parameters: null"
    );
    // Its wrapped key opens with the key it was made for, and with no other.
    let mut dc = ocicrypt::DecryptConfig::default();
    ocicrypt::helpers::add_key(
        &mut dc,
        &data("tests/vectors/skopeo/keys/rsa2048-private.pem"),
    )
    .unwrap();
    let ctx = ocicrypt::Ocicrypt::default();
    assert!(ctx.unwrap_options(&dc, &desc).is_ok());
    let mut other = ocicrypt::DecryptConfig::default();
    ocicrypt::helpers::add_key(&mut other, &data(PRIV)).unwrap();
    assert!(ctx.unwrap_options(&other, &desc).is_err());
    // Truncated, it is an error, not a panic.
    for n in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            ocicrypt_cli::ctd::decode_payload(&bytes[..n]).is_err(),
            "{n}"
        );
    }
}
