//! The example provider binary, end to end: as a command provider and as a gRPC server.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![cfg(feature = "example")]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Pki, message};
use ocicrypt_keyprovider::{GrpcTls, KeyProviderKeyWrapper, Options, ProviderConfig};
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, KeyWrapper};

const EXAMPLE: &str = env!("CARGO_BIN_EXE_ocicrypt-keyprovider-example");
const OPTS: &[u8] = br#"{"symkey":"c2VjcmV0","digest":"","cipheroptions":{"nonce":"AAAA"}}"#;

fn key_file(dir: &Path, name: &str, byte: u8) -> String {
    let p = dir.join(name);
    std::fs::write(&p, [byte; 32]).unwrap();
    p.display().to_string()
}

fn configs() -> (EncryptConfig, DecryptConfig) {
    common::enabled_configs("aes")
}

fn cmd_wrapper(key: &str) -> KeyProviderKeyWrapper {
    let config = ProviderConfig::command(EXAMPLE, vec!["--key-file".into(), key.into()]);
    KeyProviderKeyWrapper::new("aes", config, Options::default()).unwrap()
}

#[test]
fn command_provider_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "key", 7);
    let w = cmd_wrapper(&key);
    let (ec, dc) = configs();
    let blob = w.wrap_keys(&ec, OPTS).unwrap().unwrap();
    let annotation: serde_json::Value = serde_json::from_slice(&blob).unwrap();
    assert_eq!(annotation["wrap_type"], "AES");
    assert_eq!(annotation["key_url"], format!("file://{key}"));
    assert!(!String::from_utf8_lossy(&blob).contains("c2VjcmV0"));
    assert_eq!(w.unwrap_key(&dc, &blob).unwrap().expose(), OPTS);
    // Random nonces: wrapping twice gives different blobs.
    assert_ne!(w.wrap_keys(&ec, OPTS).unwrap().unwrap(), blob);

    // The wrong key fails, with the provider's stderr in the error.
    let other = cmd_wrapper(&key_file(dir.path(), "other", 8));
    let msg = message(&other.unwrap_key(&dc, &blob).unwrap_err());
    assert!(
        msg.contains("authentication failed") && msg.contains("exit status: 1"),
        "{msg}"
    );
    let msg = message(&w.unwrap_key(&dc, b"{}").unwrap_err());
    assert!(msg.contains("not an annotation of this provider"), "{msg}");
}

#[test]
fn command_provider_bad_setup() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, [1u8; 16]).unwrap();
    let w = cmd_wrapper(&short.display().to_string());
    let (ec, _) = configs();
    let msg = message(&w.wrap_keys(&ec, OPTS).unwrap_err());
    assert!(msg.contains("exactly 32 bytes"), "{msg}");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the example as a gRPC server and waits until it accepts connections.
fn grpc_server(args: &[&str]) -> (Killed, String) {
    let address = format!("127.0.0.1:{}", free_port());
    let child = Command::new(EXAMPLE)
        .args(["--grpc", &address])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let child = Killed(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, address)
}

#[test]
fn grpc_provider_round_trip_and_interop_with_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "key", 9);
    let (_server, address) = grpc_server(&["--key-file", &key]);
    let w = KeyProviderKeyWrapper::new(
        "aes",
        ProviderConfig::grpc(&address, None),
        Options::default(),
    )
    .unwrap();
    let (ec, dc) = configs();
    let blob = w.wrap_keys(&ec, OPTS).unwrap().unwrap();
    assert_eq!(w.unwrap_key(&dc, &blob).unwrap().expose(), OPTS);
    // Same key, other transport: the blob is the same format.
    assert_eq!(
        cmd_wrapper(&key).unwrap_key(&dc, &blob).unwrap().expose(),
        OPTS
    );
}

#[test]
fn grpc_provider_with_mutual_tls() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "key", 10);
    let p = |p: &Path| p.display().to_string();
    let (_server, address) = grpc_server(&[
        "--key-file",
        &key,
        "--tls-cert",
        &p(&pki.server_cert),
        "--tls-key",
        &p(&pki.server_key),
        "--client-ca",
        &p(&pki.ca),
    ]);
    let tls = GrpcTls {
        root_ca_file: Some(pki.ca.clone()),
        cert_file: Some(pki.client_cert.clone()),
        key_file: Some(pki.client_key.clone()),
        server_name: Some("localhost".into()),
        insecure_skip_verify: false,
    };
    let w = KeyProviderKeyWrapper::new(
        "aes",
        ProviderConfig::grpc(&address, Some(tls)),
        Options::default(),
    )
    .unwrap();
    let (ec, dc) = configs();
    let blob = w.wrap_keys(&ec, OPTS).unwrap().unwrap();
    assert_eq!(w.unwrap_key(&dc, &blob).unwrap().expose(), OPTS);
}

#[test]
fn bad_arguments() {
    let out = Command::new(EXAMPLE).arg("--bogus").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument"));
    let out = Command::new(EXAMPLE)
        .env_remove("OCICRYPT_EXAMPLE_KEY_FILE")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--key-file"));
}
