//! Shared helpers of the interop tests: finding the workspace, running our CLI in-process,
//! running third-party tools (which must be installed: a missing tool fails the test
//! loudly, it is never skipped), and reading OCI layouts.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A path below the workspace root.
pub fn path(rel: &str) -> PathBuf {
    root().join(rel)
}

/// `oci:<path>:<tag>`.
pub fn oci(path: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", path.display())
}

/// Runs our `ocicrypt` command in-process.
///
/// # Errors
/// The command's error.
pub fn ocicrypt(args: &[&str]) -> Result<(), String> {
    let mut full = vec!["ocicrypt"];
    full.extend_from_slice(args);
    ocicrypt_cli::run(full).map_err(|e| format!("{e:#}"))
}

/// Runs a third-party tool and returns its stdout; panics (failing the test) with its
/// stderr if it fails, and with an install hint if it is missing.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program}: {e}. The interop tests need it: \
             apt-get install {program} (cargo xtask ci installs it when run as root)"
            )
        });
    assert!(
        out.status.success(),
        "{program} {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a third-party tool that is expected to fail; returns its stderr.
pub fn tool_fails(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        !out.status.success(),
        "{program} {} succeeded but should have failed",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `skopeo --insecure-policy <args>` (no signature policy is needed for local layouts).
pub fn skopeo(args: &[&str]) -> String {
    let mut full = vec!["--insecure-policy"];
    full.extend_from_slice(args);
    tool("skopeo", &full)
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A blob of a layout by digest.
pub fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    let p = layout.join("blobs").join(alg).join(hex);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The layer descriptors of the single-platform image tagged `tag`.
pub fn layers(layout: &Path, tag: &str) -> Vec<Value> {
    let index = read_json(&layout.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()))
        .clone();
    let manifest: Value =
        serde_json::from_slice(&blob(layout, entry["digest"].as_str().unwrap_or_default()))
            .unwrap_or_default();
    manifest["layers"].as_array().cloned().unwrap_or_default()
}

/// (mediaType, digest) of each layer.
pub fn layer_ids(layout: &Path, tag: &str) -> Vec<(String, String)> {
    layers(layout, tag)
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap_or_default().to_owned(),
                l["digest"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
