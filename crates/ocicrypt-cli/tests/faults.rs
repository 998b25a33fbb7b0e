//! Faults from outside, injected for real: a full disk (a 2 MiB tmpfs), a read-only
//! destination (a read-only tmpfs: root ignores file modes), a destination inside the
//! source layout, and SIGKILL in the middle of a write. Each ends with a clear error (or,
//! for SIGKILL, no error at all) and the destination untouched. The tmpfs tests mount, so
//! they need root, as CI has; without it they fail loudly.

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
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::{
    PUB, assert_success, data, example_image, fails, image_encrypt, layer_encrypt, oci, ocicrypt,
    ok, walk,
};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        let args = ["-t", "tmpfs", "-o", options, "tmpfs", dir.to_str().unwrap()];
        let out = Command::new("mount").args(args).output();
        // Mounting a tmpfs needs root (CI runs as root).
        assert_success(&args, out.expect("mount is installed"));
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A copy of the example image with one extra 4 MiB random layer.
fn big_image(dir: &Path) -> String {
    let plain = dir.join("big");
    let layer = dir.join("layer");
    fs::write(&layer, openssl_rand(4 << 20)).unwrap();
    fs::create_dir_all(plain.join("blobs/sha256")).unwrap();
    fs::write(
        plain.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = hex::encode(openssl::sha::sha256(bytes));
        fs::write(plain.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let (ld, ls) = put(&fs::read(&layer).unwrap());
    let (cd, cs) = put(b"{}");
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}]
    });
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
    fs::write(plain.join("index.json"), index.to_string()).unwrap();
    oci(&plain, "latest")
}

fn openssl_rand(n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    openssl::rand::rand_bytes(&mut v).unwrap();
    v
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = big_image(tmp.path());
    let disk = tmp.path().join("disk");
    let _fs = Tmpfs::mount(&disk, "size=2m");
    let err = fails(&image_encrypt(
        PUB,
        &[],
        &src,
        &format!("oci:{}/dst", disk.display()),
    ));
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(
        fs::read_dir(&disk).unwrap().count(),
        0,
        "nothing left on the full disk"
    );
    // The same for a layer file.
    let layer = tmp.path().join("layer");
    let err = fails(&layer_encrypt(
        PUB,
        &[],
        [
            layer.to_str().unwrap(),
            disk.join("out").to_str().unwrap(),
            disk.join("out.json").to_str().unwrap(),
        ],
    ));
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(fs::read_dir(&disk).unwrap().count(), 0);
}

#[test]
fn a_read_only_destination_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let ro = tmp.path().join("ro");
    let _fs = Tmpfs::mount(&ro, "ro,size=1m");
    let err = fails(&image_encrypt(
        PUB,
        &[],
        &example_image(),
        &format!("oci:{}/dst", ro.display()),
    ));
    assert!(err.contains("Read-only file system"), "{err}");
}

#[test]
fn a_destination_inside_the_source_layout_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("l");
    let enc = oci(&layout, "enc");
    ok(&image_encrypt(PUB, &[], &example_image(), &enc));
    let before = walk(&layout);
    for inside in ["nested", "blobs/sha256/x", "blobs"] {
        let err = fails(&[
            "image",
            "decrypt",
            "-k",
            &data("examples/keys/TEST-ONLY-rsa-private.pem"),
            &enc,
            &format!("oci:{}/{inside}", layout.display()),
        ]);
        assert!(err.contains("inside the source layout"), "{inside}: {err}");
    }
    assert_eq!(walk(&layout), before);
    // The source layout itself, with another tag, is fine.
    ok(&[
        "image",
        "decrypt",
        "-k",
        &data("examples/keys/TEST-ONLY-rsa-private.pem"),
        &enc,
        &oci(&layout, "dec"),
    ]);
}

#[test]
fn sigkill_mid_write_leaves_the_destination_untouched_and_the_next_run_tidies() {
    let tmp = tempfile::tempdir().unwrap();
    let src = big_image(tmp.path());
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let dst = out.join("dst");
    // Killed as soon as its temporary layout appears, before anything can be committed.
    let mut child = ocicrypt()
        .args([
            "image",
            "encrypt",
            "-j",
            "1",
            "-r",
            &format!("jwe:{}", data(PUB)),
            &src,
        ])
        .arg(format!("oci:{}", dst.display()))
        .spawn()
        .unwrap();
    let started = Instant::now();
    let leftovers = || -> Vec<PathBuf> {
        fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    loop {
        if !leftovers().is_empty() {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            panic!("the command finished before it could be killed");
        }
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!dst.exists(), "no destination after SIGKILL");
    let left = leftovers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(".ocicrypt-layout-")
    );
    // Ten minutes later (its clock set back), the next run removes it.
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::open(&left[0]).unwrap().set_modified(old).unwrap();
    ok(&image_encrypt(
        PUB,
        &[],
        &src,
        &format!("oci:{}", dst.display()),
    ));
    let names: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("dst")]);
}
