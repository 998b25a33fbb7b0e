//! `provider:` recipients and keys through the binary: the workspace's example key provider
//! (AES-256-GCM under a key file) as a command and as a gRPC server, plain and TLS, on
//! 127.0.0.1; mixed with JWE; and providers that fail, hang or answer garbage.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{
    PRIV, PUB, assert_exit_1, assert_success, data, example_image, manifest_layers, ocicrypt, root,
    strs,
};

/// Builds the example provider (a binary of ocicrypt-keyprovider behind its `example`
/// feature) once, with the cargo that runs these tests.
fn example_provider() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let args = [
            "build",
            "--quiet",
            "--package",
            "ocicrypt-keyprovider",
            "--features",
            "example",
            "--bin",
            "ocicrypt-keyprovider-example",
            "--message-format",
            "json",
        ];
        let out = Command::new(cargo).current_dir(root()).args(args).output();
        String::from_utf8(assert_success(&args, out.unwrap()).stdout)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported the example's executable")
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A provider server process, killed when dropped.
struct Server(Child);

impl Server {
    fn start(args: &[&str], port: u16) -> Self {
        let child = Command::new(example_provider()).args(args).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the provider did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output();
    assert_success(args, out.expect("openssl is installed"));
}

struct Setup {
    dir: tempfile::TempDir,
    _servers: Vec<Server>,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
        fs::write(p("kek"), [7u8; 32]).unwrap();
        // A CA and a server certificate for 127.0.0.1 / localhost.
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
            "-subj",
            "/CN=test ca",
            "-days",
            "2",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("srv.key"),
            "-out",
            &p("srv.csr"),
            "-subj",
            "/CN=localhost",
        ]);
        fs::write(p("ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("srv.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-out",
            &p("srv.pem"),
            "-days",
            "2",
            "-extfile",
            &p("ext"),
        ]);
        let (plain, tls) = (free_port(), free_port());
        let kek = p("kek");
        let servers = vec![
            Server::start(
                &["--key-file", &kek, "--grpc", &format!("127.0.0.1:{plain}")],
                plain,
            ),
            Server::start(
                &[
                    "--key-file",
                    &kek,
                    "--grpc",
                    &format!("127.0.0.1:{tls}"),
                    "--tls-cert",
                    &p("srv.pem"),
                    "--tls-key",
                    &p("srv.key"),
                ],
                tls,
            ),
        ];
        let bin = example_provider().to_str().unwrap().to_owned();
        let config = serde_json::json!({"key-providers": {
            "cmdkms": {"cmd": {"path": bin, "args": ["--key-file", kek]}},
            "grpckms": {"grpc": format!("127.0.0.1:{plain}")},
            "tlskms": {"grpc": format!("127.0.0.1:{tls}"), "grpc-tls": {"root-ca-file": p("ca.pem"), "server-name": "localhost"}},
            "untrusted": {"grpc": format!("127.0.0.1:{tls}"), "grpc-tls": {"server-name": "localhost"}},
            "broken": {"cmd": {"path": "/bin/sh", "args": ["-c", "echo provider exploded >&2; exit 3"]}},
            "hang": {"cmd": {"path": "/bin/sleep", "args": ["30"]}},
            "garbage": {"cmd": {"path": "/bin/echo", "args": ["not json"]}},
        }});
        fs::write(p("providers.json"), config.to_string()).unwrap();
        Self {
            dir,
            _servers: servers,
        }
    }

    fn p(&self, n: &str) -> String {
        self.dir.path().join(n).to_str().unwrap().to_owned()
    }

    fn run(&self, args: &[&str]) -> Output {
        ocicrypt()
            .args(args)
            .env("OCICRYPT_KEYPROVIDER_CONFIG", self.p("providers.json"))
            .env("OCICRYPT_KEYPROVIDER_TIMEOUT", "3")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[impl AsRef<str>]) {
        let args = strs(args);
        assert_success(&args, self.run(&args));
    }

    fn err(&self, args: &[impl AsRef<str>]) -> String {
        let args = strs(args);
        assert_exit_1(&args, self.run(&args))
    }

    /// The arguments that decrypt the image `src` with `key` (a `-k` value) into the image
    /// `name` of this setup.
    fn decrypt(&self, key: &str, src: &str, name: &str) -> Vec<String> {
        let dst = self.img(name);
        ["image", "decrypt", "-k", key, src, &dst]
            .map(str::to_owned)
            .to_vec()
    }

    fn img(&self, name: &str) -> String {
        format!("oci:{}:latest", self.p(name))
    }

    /// Encrypts the example image for `recipients` (each a `-r` value) into the image
    /// `name` of this setup, which must succeed; returns the image.
    fn encrypt_example(&self, recipients: &[&str], name: &str) -> String {
        let dst = self.img(name);
        let mut args = vec!["image", "encrypt"];
        for r in recipients {
            args.extend(["-r", r]);
        }
        let src = example_image();
        args.extend([src.as_str(), &dst]);
        self.ok(&args);
        dst
    }
}

/// The (media type, digest) of each layer of the image an `oci:DIR:latest` reference names.
fn layers(reference: &str) -> Vec<(String, String)> {
    let dir = reference
        .trim_start_matches("oci:")
        .trim_end_matches(":latest");
    manifest_layers(Path::new(dir), "latest")
}

#[test]
fn command_grpc_and_tls_providers_round_trip() {
    let s = Setup::new();
    let original = layers(&example_image());
    for name in ["cmdkms", "grpckms", "tlskms"] {
        let enc = s.encrypt_example(&[&format!("provider:{name}")], &format!("enc-{name}"));
        let enc_layers = layers(&enc);
        assert!(
            enc_layers.iter().all(|(mt, _)| mt.contains("+encrypted")),
            "{name}"
        );
        let dec = s.img(&format!("dec-{name}"));
        s.ok(&[
            "image",
            "decrypt",
            "-k",
            &format!("provider:{name}"),
            &enc,
            &dec,
        ]);
        assert_eq!(layers(&dec), original, "{name}");
    }
    // Without the provider as a key, decryption is refused.
    let e = s.err(&s.decrypt(&data(PRIV), &s.img("enc-cmdkms"), "x"));
    assert!(
        e.contains("missing private key") || e.contains("none of the private keys"),
        "{e}"
    );
}

#[test]
fn rewrap_and_rotate_with_providers_as_old_and_new_recipients() {
    let s = Setup::new();
    let original = layers(&example_image());
    let enc = s.encrypt_example(&["provider:cmdkms"], "enc");
    // provider -> jwe: the provider opens the layers, the JWE key is the only recipient after.
    let jwe = s.img("jwe");
    s.ok(&[
        "image",
        "rewrap",
        "-k",
        "provider:cmdkms",
        "-r",
        &format!("jwe:{}", data(PUB)),
        &enc,
        &jwe,
    ]);
    s.ok(&s.decrypt(&data(PRIV), &jwe, "d1"));
    assert_eq!(layers(&s.img("d1")), original);
    let e = s.err(&s.decrypt("provider:cmdkms", &jwe, "x1"));
    assert!(e.contains("missing private key"), "{e}");
    // jwe -> provider (over gRPC), rotated: new blobs that only the provider opens.
    let rot = s.img("rot");
    s.ok(&[
        "image",
        "rewrap",
        "--rotate",
        "-k",
        &data(PRIV),
        "-r",
        "provider:grpckms",
        &jwe,
        &rot,
    ]);
    let (before, after) = (layers(&jwe), layers(&rot));
    assert!(
        before.iter().zip(&after).all(|(b, a)| b.1 != a.1),
        "new blobs"
    );
    s.ok(&s.decrypt("provider:grpckms", &rot, "d2"));
    assert_eq!(layers(&s.img("d2")), original);
    let e = s.err(&s.decrypt(&data(PRIV), &rot, "x2"));
    assert!(e.contains("missing private key"), "{e}");
}

#[test]
fn mixed_jwe_and_provider_recipients() {
    let s = Setup::new();
    let original = layers(&example_image());
    let enc = s.encrypt_example(&[&format!("jwe:{}", data(PUB)), "provider:grpckms"], "enc");
    s.ok(&s.decrypt(&data(PRIV), &enc, "d1"));
    s.ok(&s.decrypt("provider:grpckms", &enc, "d2"));
    assert_eq!(layers(&s.img("d1")), original);
    assert_eq!(layers(&s.img("d2")), original);
}

#[test]
fn failing_providers_give_clear_errors_and_no_output() {
    let s = Setup::new();
    for (name, expect) in [
        ("broken", "provider exploded"),
        ("hang", "did not answer within 3s"),
        ("garbage", "reply"),
        ("untrusted", "certificate"),
        ("nosuch", "provider.nosuch is not available"),
    ] {
        let dst = s.img(&format!("out-{name}"));
        let e = s.err(&[
            "image",
            "encrypt",
            "-r",
            &format!("provider:{name}"),
            &example_image(),
            &dst,
        ]);
        assert!(
            e.to_lowercase().contains(&expect.to_lowercase()),
            "{name}: {e}"
        );
        assert!(!Path::new(&s.p(&format!("out-{name}"))).exists(), "{name}");
    }
    // A bad configuration file is named in the error.
    let out = ocicrypt()
        .args(["image", "inspect", &example_image()])
        .env("OCICRYPT_KEYPROVIDER_CONFIG", s.p("ca.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OCICRYPT_KEYPROVIDER_CONFIG"));
}
