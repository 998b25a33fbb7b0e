//! Throughput of the layer cipher against its raw building blocks.
//!
//! `cargo bench -p ocicrypt-blockcipher` (release profile). One buffer of 256 MiB, or
//! `OCICRYPT_BENCH_MIB` MiB, is streamed through each operation three times; the best
//! wall-clock run counts. Ratios are relative to raw ring HMAC-SHA256 over the same buffer,
//! the floor for encrypt-then-MAC on one core. The streaming rows read from the buffer
//! through `Read` (so they include one copy that the raw rows do not) with 256 KiB reads,
//! except the `io::copy` row (8 KiB reads). With `--features tokio`, the async readers get
//! rows too (on a current-thread runtime).

// A benchmark binary: a failure should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use ocicrypt_blockcipher::{DecryptReader, EncryptReader, LayerKey, Nonce};
use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use ring::{digest, hmac};

/// The caller's read buffer for the streaming rows.
const READ_BUF: usize = 256 * 1024;
const RUNS: usize = 3;
const MIB: usize = 1024 * 1024;

fn main() {
    let mib: usize = std::env::var("OCICRYPT_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let size = mib * MIB;
    let mut data = vec![0u8; size];
    for piece in data.chunks_mut(MIB) {
        openssl::rand::rand_bytes(piece).unwrap();
    }
    let key = LayerKey::generate().unwrap();
    let nonce = Nonce::generate().unwrap();
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
    let rss_with_buffer = proc_status_kib("VmRSS");

    println!(
        "ocicrypt-blockcipher throughput: {mib} MiB buffer, best of {RUNS}, {} CPUs\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rows: Vec<(&str, f64)> = Vec::new();
    let mut row = |name, rate| {
        rows.push((name, rate));
    };

    row(
        "raw openssl AES-256-CTR (in place)",
        measure(size, || aes_ctr_in_place(&key, &nonce, &mut data)),
    );
    row(
        "raw ring HMAC-SHA256",
        measure(size, || {
            black_box(hmac::sign(&hmac_key, &data));
        }),
    );
    row(
        "raw ring SHA-256",
        measure(size, || {
            black_box(digest::digest(&digest::SHA256, &data));
        }),
    );
    // The ceiling for work spread over cores (image --jobs): every CPU hashing its own
    // stream at once, as one aggregate rate. Below CPUs × the single rate when the cores
    // share what SHA-256 needs (seen here: about 1.7× on two vCPUs).
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all_cpus_sha = measure(size * cpus, || {
        std::thread::scope(|s| {
            for _ in 0..cpus {
                s.spawn(|| black_box(digest::digest(&digest::SHA256, &data)));
            }
        });
    });
    row("raw ring SHA-256, every CPU at once (total)", all_cpus_sha);
    for (name, parallel, sha) in [
        ("encrypt (EncryptReader)", true, false),
        ("encrypt, one thread", false, false),
        ("encrypt + plaintext SHA-256", true, true),
        ("encrypt + plaintext SHA-256, one thread", false, true),
    ] {
        row(
            name,
            measure(size, || {
                let mut enc = EncryptReader::with_key(&data[..], key.clone(), nonce)
                    .unwrap()
                    .compute_plaintext_digest(sha)
                    .parallel(parallel);
                drain(&mut enc, READ_BUF);
                black_box(enc.finalize().unwrap());
            }),
        );
    }
    row(
        "encrypt via io::copy (8 KiB reads)",
        measure(size, || {
            let mut enc = EncryptReader::with_key(&data[..], key.clone(), nonce)
                .unwrap()
                .parallel(true);
            io::copy(&mut enc, &mut io::sink()).unwrap();
            black_box(enc.finalize().unwrap());
        }),
    );

    #[cfg(feature = "tokio")]
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    #[cfg(feature = "tokio")]
    row(
        "async encrypt (AsyncEncryptReader)",
        measure(size, || {
            rt.block_on(async {
                let mut enc = ocicrypt_blockcipher::AsyncEncryptReader::with_key(
                    &data[..],
                    key.clone(),
                    nonce,
                )
                .unwrap()
                .parallel(true);
                drain_async(&mut enc).await;
                black_box(enc.finalize().unwrap());
            });
        }),
    );

    // Turn `data` into a ciphertext with known options for the decrypt rows.
    let mut enc = EncryptReader::with_key(io::empty(), key.clone(), nonce).unwrap();
    drain(&mut enc, 16);
    let mut options = enc.finalize().unwrap();
    options.private.digest = format!(
        "sha256:{}",
        hex(digest::digest(&digest::SHA256, &data).as_ref())
    );
    aes_ctr_in_place(&key, &nonce, &mut data);
    options.public.hmac = hmac::sign(&hmac_key, &data).as_ref().to_vec();

    for (name, parallel) in [
        ("decrypt + digest check (DecryptReader)", true),
        ("decrypt + digest check, one thread", false),
    ] {
        row(
            name,
            measure(size, || {
                let mut dec = DecryptReader::new(&data[..], &options.public, &options.private)
                    .unwrap()
                    .parallel(parallel);
                drain(&mut dec, READ_BUF);
                assert_eq!(dec.verified_digest(), Some(options.private.digest.as_str()));
            }),
        );
    }

    #[cfg(feature = "tokio")]
    row(
        "async decrypt + digest check",
        measure(size, || {
            rt.block_on(async {
                let mut dec = ocicrypt_blockcipher::AsyncDecryptReader::new(
                    &data[..],
                    &options.public,
                    &options.private,
                )
                .unwrap()
                .parallel(true);
                drain_async(&mut dec).await;
                assert_eq!(dec.verified_digest(), Some(options.private.digest.as_str()));
            });
        }),
    );

    let reference = rows[1].1;
    println!("{:<42} {:>8} {:>8}", "operation", "MiB/s", "× HMAC");
    println!("{}", "-".repeat(60));
    for (name, rate) in &rows {
        println!("{name:<42} {rate:>8.0} {:>8.3}", rate / reference);
    }
    println!();
    println!(
        "RSS with the {mib} MiB buffer: {} MiB; peak RSS (VmHWM) after all runs: {} MiB",
        rss_with_buffer / 1024,
        proc_status_kib("VmHWM") / 1024
    );
}

/// Best-of-`RUNS` wall-clock throughput of `f` over `size` bytes, in MiB/s.
fn measure(size: usize, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        let start = Instant::now();
        f();
        best = best.min(start.elapsed());
    }
    size as f64 / MIB as f64 / best.as_secs_f64()
}

fn drain(r: &mut impl Read, buf_len: usize) {
    let mut buf = vec![0u8; buf_len];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        black_box(&buf[..n]);
    }
}

#[cfg(feature = "tokio")]
async fn drain_async(r: &mut (impl tokio::io::AsyncRead + Unpin)) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        black_box(&buf[..n]);
    }
}

fn aes_ctr_in_place(key: &LayerKey, nonce: &Nonce, data: &mut [u8]) {
    let mut ctx = CipherCtx::new().unwrap();
    ctx.encrypt_init(
        Some(Cipher::aes_256_ctr()),
        Some(key.expose()),
        Some(nonce.as_bytes()),
    )
    .unwrap();
    // OpenSSL takes an `int` length; 1 GiB pieces stay below it.
    for piece in data.chunks_mut(1 << 30) {
        let len = piece.len();
        ctx.cipher_update_inplace(piece, len).unwrap();
    }
    black_box(data);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
