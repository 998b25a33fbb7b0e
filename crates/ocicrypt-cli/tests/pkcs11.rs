//! `pkcs11:` recipients and keys through the binary, against a real SoftHSM2 token made by
//! `softhsm2-util` (Debian's softhsm2; a missing tool fails the test, it never skips).

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_exit_1, assert_success, example_image, manifest_layers, ocicrypt, root};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "1234";

fn softhsm2_util(conf: &Path, args: &[&str]) {
    let out = Command::new("softhsm2-util")
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap_or_else(|e| panic!("cannot run softhsm2-util ({e}): apt-get install softhsm2"));
    assert!(out.status.success(), "softhsm2-util {args:?}: {out:?}");
}

/// A token labelled `tok` holding one RSA-2048 key pair labelled `mykey`, and the key file
/// (YAML) that names it, with the token's config passed through the key file's module env.
struct Token {
    dir: tempfile::TempDir,
}

impl Token {
    fn new() -> Self {
        assert!(
            Path::new(MODULE).is_file(),
            "{MODULE} missing: apt-get install softhsm2"
        );
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        softhsm2_util(
            &conf,
            &[
                "--init-token",
                "--free",
                "--label",
                "tok",
                "--pin",
                PIN,
                "--so-pin",
                PIN,
            ],
        );
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let pkey = openssl::pkey::PKey::from_rsa(rsa).unwrap();
        let key_pem = dir.path().join("key.pem");
        fs::write(&key_pem, pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
        fs::write(
            dir.path().join("public.pem"),
            pkey.public_key_to_pem().unwrap(),
        )
        .unwrap();
        softhsm2_util(
            &conf,
            &[
                "--import",
                key_pem.to_str().unwrap(),
                "--token",
                "tok",
                "--label",
                "mykey",
                "--id",
                "01",
                "--pin",
                PIN,
            ],
        );
        fs::remove_file(&key_pem).unwrap();
        for (name, ty, pin) in [
            ("pub.yaml", "public", ""),
            ("priv.yaml", "private", "&pin-value=1234"),
            ("badpin.yaml", "private", "&pin-value=9999"),
        ] {
            fs::write(
                dir.path().join(name),
                format!(
                    "pkcs11:\n  uri: pkcs11:token=tok;object=mykey;type={ty}?module-path={MODULE}{pin}\nmodule:\n  env:\n    SOFTHSM2_CONF: {}\n",
                    conf.display()
                ),
            )
            .unwrap();
        }
        Self { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Runs the binary with `policy` (or none) as `OCICRYPT_CONFIG`, and no configuration file
/// it could find by itself.
fn run(args: &[&str], policy: Option<&str>) -> Output {
    let mut c = ocicrypt();
    c.args(args)
        .env("OCICRYPT_OAEP_HASHALG", "sha1")
        .env_remove("OCICRYPT_CONFIG");
    c.env("HOME", "/nonexistent")
        .env("XDG_CONFIG_HOME", "/nonexistent");
    if let Some(p) = policy {
        c.env("OCICRYPT_CONFIG", p);
    }
    c.output().unwrap()
}

fn ok(args: &[&str]) {
    assert_success(args, run(args, Some("internal")));
}

fn err(args: &[&str], policy: Option<&str>) -> String {
    assert_exit_1(args, run(args, policy))
}

/// The (media type, digest) of each layer of the image tagged `latest` in `layout`.
fn layers(layout: &Path) -> Vec<(String, String)> {
    manifest_layers(layout, "latest")
}

/// The layers of the repository's example image.
fn original() -> Vec<(String, String)> {
    layers(&root().join("examples/image"))
}

#[test]
fn token_and_software_recipients_decrypt_on_the_token() {
    let t = Token::new();
    let out = tempfile::tempdir().unwrap();
    for (i, recipient) in ["pub.yaml", "public.pem"].iter().enumerate() {
        let enc = out.path().join(format!("enc{i}"));
        let dec = out.path().join(format!("dec{i}"));
        ok(&[
            "image",
            "encrypt",
            "-r",
            &format!("pkcs11:{}", t.p(recipient).display()),
            &example_image(),
            &format!("oci:{}:latest", enc.display()),
        ]);
        assert!(
            layers(&enc).iter().all(|(mt, _)| mt.contains("+encrypted")),
            "{recipient}"
        );
        let info = run(
            &["image", "inspect", &format!("oci:{}:latest", enc.display())],
            None,
        );
        assert!(String::from_utf8_lossy(&info.stdout).contains("scheme pkcs11"));
        ok(&[
            "image",
            "decrypt",
            "-k",
            t.p("priv.yaml").to_str().unwrap(),
            &format!("oci:{}:latest", enc.display()),
            &format!("oci:{}:latest", dec.display()),
        ]);
        assert_eq!(layers(&dec), original(), "{recipient}");
    }
}

#[test]
fn token_errors() {
    let t = Token::new();
    let out = tempfile::tempdir().unwrap();
    let enc = out.path().join("enc");
    ok(&[
        "image",
        "encrypt",
        "-r",
        &format!("pkcs11:{}", t.p("pub.yaml").display()),
        &example_image(),
        &format!("oci:{}:latest", enc.display()),
    ]);
    let src = format!("oci:{}:latest", enc.display());
    let dst = format!("oci:{}:latest", out.path().join("dec").display());

    // Decrypts src into dst with the key file `key`, which must fail under `policy`.
    let decrypt_fails = |key: &str, policy: Option<&str>| {
        err(
            &[
                "image",
                "decrypt",
                "-k",
                t.p(key).to_str().unwrap(),
                &src,
                &dst,
            ],
            policy,
        )
    };
    let e = decrypt_fails("badpin.yaml", Some("internal"));
    assert!(e.to_lowercase().contains("pin"), "{e}");
    // No policy anywhere: a clear error before any module is loaded.
    let e = decrypt_fails("priv.yaml", None);
    assert!(e.contains("OCICRYPT_CONFIG"), "{e}");
    // A policy that does not allow the module.
    let conf = out.path().join("ocicrypt.conf");
    fs::write(&conf, "pkcs11:\n  module-directories: [/usr/lib/softhsm/]\n  allowed-module-paths: [/opt/elsewhere/]\n").unwrap();
    let e = decrypt_fails("priv.yaml", Some(conf.to_str().unwrap()));
    assert!(e.contains("libsofthsm2.so"), "{e}");
    assert!(!out.path().join("dec").exists());
    // Something that is neither a key file nor an RSA public key.
    let e = err(
        &[
            "image",
            "encrypt",
            "-r",
            &format!("pkcs11:{}", conf.display()),
            &example_image(),
            &dst,
        ],
        Some("internal"),
    );
    assert!(e.contains("neither a PKCS#11 key file"), "{e}");
}
