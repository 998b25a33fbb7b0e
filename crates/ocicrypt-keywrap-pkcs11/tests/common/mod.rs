//! SoftHSM2 test tokens, through `softhsm2-util` (Debian package `softhsm2`).
//!
//! Tests fail (never skip) when SoftHSM is missing. The module is
//! `/usr/lib/softhsm/libsofthsm2.so`, or the file named by `OCICRYPT_TEST_SOFTHSM2_MODULE`;
//! `softhsm2-util` is taken from `PATH`. Token setup runs `softhsm2-util` as a child process
//! with `SOFTHSM2_CONF` in the child's environment only; the code under test gets it through
//! the key file's `module.env`.
#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ocicrypt_keywrap_pkcs11::Pkcs11Config;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use tempfile::TempDir;

pub(crate) const PIN: &str = "1234";

/// The SoftHSM2 module.
pub(crate) fn module() -> PathBuf {
    let path = std::env::var_os("OCICRYPT_TEST_SOFTHSM2_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
    assert!(
        path.is_file(),
        "SoftHSM2 module {} not found: install Debian's softhsm2 package \
         (or set OCICRYPT_TEST_SOFTHSM2_MODULE)",
        path.display()
    );
    path
}

/// A policy that allows exactly the module's directory.
pub(crate) fn policy() -> Pkcs11Config {
    let dir = format!("{}/", module().parent().unwrap().display());
    Pkcs11Config {
        module_directories: vec![dir.clone()],
        allowed_module_paths: vec![dir],
    }
}

/// Three RSA-2048 keys, made once per test binary.
pub(crate) fn rsa_key(n: usize) -> &'static PKey<Private> {
    static KEYS: OnceLock<Vec<PKey<Private>>> = OnceLock::new();
    &KEYS.get_or_init(|| {
        (0..3)
            .map(|_| PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap())
            .collect()
    })[n]
}

/// A SoftHSM2 token in its own temporary directory.
pub(crate) struct SoftHsm {
    dir: TempDir,
    pub(crate) conf: PathBuf,
    pub(crate) label: String,
    pub(crate) slot: u64,
}

fn softhsm2_util(conf: &Path, args: &[&str]) -> String {
    let out = Command::new("softhsm2-util")
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run softhsm2-util ({e}): install Debian's softhsm2 package")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "softhsm2-util {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

impl SoftHsm {
    /// A fresh token labelled `label`, user PIN and SO PIN [`PIN`].
    pub(crate) fn new(label: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let out = softhsm2_util(
            &conf,
            &[
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                PIN,
                "--so-pin",
                PIN,
            ],
        );
        // "The token has been initialized and is reassigned to slot 123"
        let slot = out
            .split_whitespace()
            .last()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no slot in {out:?}"));
        Self {
            dir,
            conf,
            label: label.to_owned(),
            slot,
        }
    }

    /// Imports a key pair (private and public objects) with a label and a hex id.
    pub(crate) fn import(&self, key: &PKey<Private>, label: &str, id_hex: &str) {
        let file = self.dir.path().join(format!("import-{label}-{id_hex}.pem"));
        std::fs::write(&file, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        softhsm2_util(
            &self.conf,
            &[
                "--import",
                file.to_str().unwrap(),
                "--token",
                &self.label,
                "--label",
                label,
                "--id",
                id_hex,
                "--pin",
                PIN,
            ],
        );
        std::fs::remove_file(file).unwrap();
    }

    /// A key file for `uri`, with this token's `SOFTHSM2_CONF` as module environment.
    pub(crate) fn key_file(&self, uri: &str) -> Vec<u8> {
        format!(
            "pkcs11:\n  uri: \"{uri}\"\nmodule:\n  env:\n    SOFTHSM2_CONF: \"{}\"\n",
            self.conf.display()
        )
        .into_bytes()
    }

    /// A file in the token's directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
