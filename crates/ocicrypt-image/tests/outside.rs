//! Issue 10's program, compiled and run as another tool would: a Cargo project outside this
//! workspace with `ocicrypt` and `ocicrypt-image` as path dependencies (jwe only, the lean
//! build), run on the example image with the published TEST-ONLY key. Its output and the
//! layouts it writes are then checked here.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// The manifest tagged `tag` in the layout at `dir`.
fn manifest(dir: &Path, tag: &str) -> Value {
    let index = json(&dir.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()
        .clone();
    let digest = entry["digest"].as_str().unwrap().replace(':', "/");
    json(&dir.join("blobs").join(digest))
}

fn layer_types(m: &Value) -> Vec<String> {
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_issue_program_builds_and_runs_outside_the_workspace() {
    let ws = workspace();
    let project = tempfile::tempdir().unwrap();
    let p = project.path();
    let path = |c: &str| ws.join("crates").join(c).display().to_string();
    let serde_json_version = "1";
    fs::write(
        p.join("Cargo.toml"),
        format!(
            r#"[package]
name = "outside"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
ocicrypt = {{ path = "{}", default-features = false, features = ["jwe"] }}
ocicrypt-image = {{ path = "{}", default-features = false, features = ["jwe"] }}
serde_json = "{serde_json_version}"

[workspace]
"#,
            path("ocicrypt"),
            path("ocicrypt-image")
        ),
    )
    .unwrap();
    fs::create_dir_all(p.join("src")).unwrap();
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/program/issue10.rs"),
        p.join("src/main.rs"),
    )
    .unwrap();
    // Our lock file, so that the same versions are used (and no index look-up is needed).
    fs::copy(ws.join("Cargo.lock"), p.join("Cargo.lock")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let keys = ws.join("examples/keys");
    let out = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--manifest-path"])
        .arg(p.join("Cargo.toml"))
        .arg("--")
        .arg(keys.join("TEST-ONLY-rsa-public.pem"))
        .arg(keys.join("TEST-ONLY-rsa-private.pem"))
        .arg(ws.join("examples/image"))
        .arg(work.path())
        // A target directory of its own: the one of this test run is locked by it.
        .env("CARGO_TARGET_DIR", ws.join("target/outside"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the program failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // It printed the encrypted image's description: every layer encrypted for jwe.
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = info["manifests"][0]["layers"].as_array().unwrap();
    assert!(layers.len() >= 2, "{info}");
    for l in layers {
        assert_eq!(l["encryption"]["encrypted"], true, "{l}");
        assert_eq!(l["encryption"]["schemes"][0]["scheme"], "jwe", "{l}");
        assert!(
            l["mediaType"].as_str().unwrap().ends_with("+encrypted"),
            "{l}"
        );
    }

    let w = work.path();
    let plain = manifest(&ws.join("examples/image"), "latest");
    let n = layer_types(&plain).len();
    // enc: all layers encrypted; top: only the last; back: the original layers again.
    assert!(
        layer_types(&manifest(&w.join("enc"), "v1"))
            .iter()
            .all(|t| t.ends_with("+encrypted"))
    );
    let top = layer_types(&manifest(&w.join("top"), "v1"));
    assert_eq!(top.iter().filter(|t| t.ends_with("+encrypted")).count(), 1);
    assert!(top[n - 1].ends_with("+encrypted"));
    assert_eq!(manifest(&w.join("back"), "v1")["layers"], plain["layers"]);
    assert_eq!(manifest(&w.join("back"), "v1")["config"], plain["config"]);
}
