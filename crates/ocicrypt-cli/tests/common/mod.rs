//! Helpers shared by the integration tests of the `ocicrypt` binary (`mod common;` in each
//! test file): paths into the repository, running the binary and checking how it exited,
//! and reading OCI image layouts.

// Every test file is its own crate and uses a different subset of these helpers; what one
// of them leaves unused is not dead code.
#![allow(dead_code)]
// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The public key of the repository's TEST-ONLY example RSA key pair (relative to the root).
pub(crate) const PUB: &str = "examples/keys/TEST-ONLY-rsa-public.pem";
/// The private key of that pair.
pub(crate) const PRIV: &str = "examples/keys/TEST-ONLY-rsa-private.pem";

/// The repository's root directory.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The path of `rel`, relative to the repository's root.
pub(crate) fn data(rel: &str) -> String {
    root().join(rel).to_string_lossy().into_owned()
}

/// The example image of the repository: `oci:<root>/examples/image:latest`.
pub(crate) fn example_image() -> String {
    format!("oci:{}:latest", root().join("examples/image").display())
}

/// `oci:<layout>:<tag>`.
pub(crate) fn oci(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

/// The arguments of `image encrypt` for the JWE recipient whose public key is `public`
/// (relative to the repository's root), with `extra` flags, from `src` to `dst`.
pub(crate) fn image_encrypt(public: &str, extra: &[&str], src: &str, dst: &str) -> Vec<String> {
    let recipient = format!("jwe:{}", data(public));
    image_args(&["encrypt", "-r", &recipient], extra, src, dst)
}

/// The arguments of `image decrypt` with the private key `private` (relative to the
/// repository's root), with `extra` flags, from `src` to `dst`.
pub(crate) fn image_decrypt(private: &str, extra: &[&str], src: &str, dst: &str) -> Vec<String> {
    image_args(&["decrypt", "-k", &data(private)], extra, src, dst)
}

/// `image`, then `command` (the subcommand and its key option), `extra`, `src` and `dst`.
fn image_args(command: &[&str], extra: &[&str], src: &str, dst: &str) -> Vec<String> {
    owned(&[&["image"], command, extra, &[src, dst]])
}

/// The arguments of `layer encrypt` for the JWE recipient whose public key is `public`
/// (relative to the repository's root, or absolute), with `extra` flags, from `input` to
/// `output`, the new descriptor written to `descriptor_out` (`files`: those three).
pub(crate) fn layer_encrypt(public: &str, extra: &[&str], files: [&str; 3]) -> Vec<String> {
    let [input, output, descriptor_out] = files;
    let recipient = format!("jwe:{}", data(public));
    let head = ["layer", "encrypt", "-r", &recipient, "--in", input];
    owned(&[
        &head,
        extra,
        &["--out", output, "--descriptor-out", descriptor_out],
    ])
}

/// The arguments of `layer decrypt` with the private key `private` (relative to the
/// repository's root, or absolute, with any password suffix), with `extra` flags: `files`
/// are the layer's descriptor, the encrypted blob and where its plain data goes.
pub(crate) fn layer_decrypt(private: &str, extra: &[&str], files: [&str; 3]) -> Vec<String> {
    let [descriptor, input, output] = files;
    let key = data(private);
    let head = ["layer", "decrypt", "-k", &key, "--descriptor", descriptor];
    owned(&[&head, extra, &["--in", input, "--out", output]])
}

/// The arguments of `layer rewrap` from the private key `private` to the JWE recipient
/// `public` (each relative to the repository's root, or absolute), with `extra` flags, of
/// the layer that `descriptor` describes, the new descriptor written to `descriptor_out`.
pub(crate) fn layer_rewrap(
    private: &str,
    public: &str,
    extra: &[&str],
    descriptor: &str,
    descriptor_out: &str,
) -> Vec<String> {
    let (key, recipient) = (data(private), format!("jwe:{}", data(public)));
    let head = ["layer", "rewrap", "-k", &key, "-r", &recipient];
    owned(&[
        &head,
        extra,
        &["--descriptor", descriptor],
        &["--descriptor-out", descriptor_out],
    ])
}

/// The argument lists `parts`, one after the other, as owned strings.
fn owned(parts: &[&[&str]]) -> Vec<String> {
    parts.concat().into_iter().map(str::to_owned).collect()
}

/// Command-line arguments as `&str`s.
pub(crate) fn strs(args: &[impl AsRef<str>]) -> Vec<&str> {
    args.iter().map(AsRef::as_ref).collect()
}

/// A command that runs the binary under test.
pub(crate) fn ocicrypt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ocicrypt"))
}

/// Runs the binary with an empty stdin.
pub(crate) fn run(args: &[&str]) -> Output {
    run_stdin(args, b"")
}

/// Runs the binary with `stdin` as its standard input.
pub(crate) fn run_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = ocicrypt()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Asserts that `out`, of the command run with `args`, succeeded; returns it.
pub(crate) fn assert_success(args: &[&str], out: Output) -> Output {
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts that `out`, of the command run with `args`, exited with status 1; returns its
/// stderr (which must be UTF-8).
pub(crate) fn assert_exit_1(args: &[&str], out: Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
    String::from_utf8(out.stderr).unwrap()
}

/// Runs a command that must succeed; returns its stdout (which must be UTF-8).
pub(crate) fn ok(args: &[impl AsRef<str>]) -> String {
    let args = strs(args);
    String::from_utf8(assert_success(&args, run(&args)).stdout).unwrap()
}

/// Runs a command that must fail with status 1 and one line on stderr; returns the line.
pub(crate) fn fails(args: &[impl AsRef<str>]) -> String {
    fails_stdin(args, b"")
}

/// [`fails`] with `stdin` as the command's standard input.
pub(crate) fn fails_stdin(args: &[impl AsRef<str>], stdin: &[u8]) -> String {
    let args = strs(args);
    let err = assert_exit_1(&args, run_stdin(&args, stdin));
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("ocicrypt: error: "), "{err}");
    err
}

/// Every file below `dir` with its contents, sorted by path.
pub(crate) fn walk(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            let bytes = fs::read(&p).unwrap();
            out.push((p, bytes));
        }
    }
    out.sort();
    out
}

/// Where the blob `digest` (`sha256:…`) of the OCI layout `layout` is stored.
pub(crate) fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The contents of the blob `digest` of the OCI layout `layout`.
pub(crate) fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    fs::read(blob_path(layout, digest)).unwrap()
}

fn json_blob(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&blob(layout, digest)).unwrap()
}

/// The manifest or index that the tag `tag` of the OCI layout `layout` names.
pub(crate) fn tagged(layout: &Path, tag: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    json_blob(layout, entry["digest"].as_str().unwrap())
}

/// The (media type, digest) of each layer of an image manifest; panics on anything else.
fn layer_ids(manifest: &Value) -> Vec<(String, String)> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap().to_owned(),
                l["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The (media type, digest) of each layer of the image manifest that `tag` names; panics if
/// the tag names an index.
pub(crate) fn manifest_layers(layout: &Path, tag: &str) -> Vec<(String, String)> {
    layer_ids(&tagged(layout, tag))
}

/// The (media type, digest) of each layer of the image that `tag` names, or, if it names an
/// index, of each of the index's images in turn.
pub(crate) fn image_layers(layout: &Path, tag: &str) -> Vec<(String, String)> {
    let top = tagged(layout, tag);
    let manifests: Vec<Value> = if top["manifests"].is_array() {
        top["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| json_blob(layout, m["digest"].as_str().unwrap()))
            .collect()
    } else {
        vec![top]
    };
    manifests.iter().flat_map(layer_ids).collect()
}
