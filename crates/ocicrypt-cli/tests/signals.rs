//! A signal in the middle of a write: the command removes its temporary files (which may
//! hold unverified plaintext) and exits with 128 + SIGINT, leaving the destination as it was.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{data, ocicrypt, root};

/// Files in `dir` whose name starts with `.ocicrypt-`.
fn temporaries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".ocicrypt-"))
        .collect()
}

fn interrupted_while_writing(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("input");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success(), "mkfifo");
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let public = root().join("examples/keys/TEST-ONLY-rsa-public.pem");
    let child = ocicrypt()
        .args(["layer", "encrypt", "-r"])
        .arg(format!("jwe:{}", public.display()))
        .arg("--in")
        .arg(&fifo)
        .arg("--out")
        .arg(out.join("layer"))
        .arg("--descriptor-out")
        .arg(out.join("layer.json"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The layer arrives slowly: a first MiB, then nothing until the signal.
    let mut writer = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(&vec![42u8; 1 << 20]).unwrap();
    let started = Instant::now();
    while temporaries(&out).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no temporary file appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill");
    let output = child.wait_with_output().unwrap();
    drop(writer);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(temporaries(&out), Vec::<String>::new());
    assert_eq!(
        fs::read_dir(&out).unwrap().count(),
        0,
        "nothing at the destination"
    );
    let _ = data; // (shared helpers: not every test file uses all of them)
}

#[test]
fn sigterm_removes_temporary_files() {
    interrupted_while_writing("TERM");
}

#[test]
fn sigint_removes_temporary_files() {
    interrupted_while_writing("INT");
}
