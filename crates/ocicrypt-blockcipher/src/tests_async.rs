//! The async readers: same bytes, options, hold-back, sticky failures and pass-through
//! errors as the sync ones, with inner readers that return `Pending` between pieces.

#![cfg(feature = "tokio")]

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::tests::{MIB, data, key, nonce};
use super::*;

/// An async reader over `data` that answers every other poll with `Pending` (waking
/// itself; unless `yields` is off), hands out at most `max` bytes at once, and fails once with `TimedOut` when
/// `fail_at` bytes are left. After the data, `Ok` end of stream, or `Pending` forever if
/// `hang`.
struct Stutter<'a> {
    data: &'a [u8],
    max: usize,
    pending: bool,
    fail_at: Option<usize>,
    hang: bool,
    yields: bool,
}

fn stutter(data: &[u8], max: usize) -> Stutter<'_> {
    Stutter {
        data,
        max,
        pending: false,
        fail_at: None,
        hang: false,
        yields: true,
    }
}

impl AsyncRead for Stutter<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.pending = !self.pending;
        if self.pending && self.yields {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.fail_at.is_some_and(|f| self.data.len() <= f) {
            self.fail_at = None;
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "hiccup")));
        }
        if self.data.is_empty() && self.hang {
            return Poll::Pending;
        }
        let n = buf.remaining().min(self.max).min(self.data.len());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// Reads until end of stream or an error with buffers of `buf_len` bytes.
async fn drain(r: &mut (impl AsyncRead + Unpin), buf_len: usize) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::new();
    let mut buf = vec![0; buf_len];
    loop {
        match r.read(&mut buf).await {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e)),
        }
    }
}

fn sync_seal(plain: &[u8]) -> (Vec<u8>, Finalized) {
    let mut enc = EncryptReader::with_key(plain, key(1), nonce(2))
        .unwrap()
        .compute_plaintext_digest(true);
    let mut ct = Vec::new();
    enc.read_to_end(&mut ct).unwrap();
    (ct, enc.finalize().unwrap())
}

fn auth_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
        && matches!(Error::from_io(e), Some(Error::Authentication))
}

#[tokio::test]
async fn round_trips_match_the_sync_readers() {
    for len in [
        0,
        1,
        HOLD_BACK - 1,
        HOLD_BACK,
        HOLD_BACK + 1,
        CHUNK + HOLD_BACK + 1,
        3 * MIB + 5,
    ] {
        let plain = data(len, len as u64);
        let (sync_ct, sync_done) = sync_seal(&plain);
        let bufs: &[usize] = if len > MIB {
            &[4096, 2 * CHUNK]
        } else {
            &[1, 4096, 2 * CHUNK]
        };
        for &buf_len in bufs {
            let mut enc = AsyncEncryptReader::with_key(stutter(&plain, 5000), key(1), nonce(2))
                .unwrap()
                .compute_plaintext_digest(true);
            let (ct, err) = drain(&mut enc, buf_len).await;
            assert!(err.is_none(), "{err:?}");
            assert_eq!(ct, sync_ct, "len {len} buffer {buf_len}");
            assert_eq!(enc.bytes_read(), len as u64);
            let done = enc.finalize().unwrap();
            assert_eq!(done.public, sync_done.public);
            assert_eq!(done.private.digest, sync_done.private.digest);
            assert_eq!(done.size, len as u64);

            let mut dec =
                AsyncDecryptReader::new(stutter(&ct, 7000), &done.public, &done.private).unwrap();
            let (pt, err) = drain(&mut dec, buf_len).await;
            assert!(err.is_none(), "{err:?}");
            assert!(pt == plain, "len {len} buffer {buf_len}");
            assert_eq!(
                dec.verified_digest(),
                Some(sync_done.private.digest.as_str())
            );
            assert_eq!(dec.bytes_read(), len as u64);
        }
    }
}

#[tokio::test]
async fn fresh_keys_and_single_thread_mode() {
    let plain = data(2 * MIB + 3, 9);
    let mut enc = AsyncEncryptReader::new(&plain[..]).unwrap().parallel(false);
    let mut ct = Vec::new();
    enc.read_to_end(&mut ct).await.unwrap();
    let done = enc.finalize().unwrap();
    let mut dec = AsyncDecryptReader::new(&ct[..], &done.public, &done.private)
        .unwrap()
        .parallel(false);
    let mut pt = Vec::new();
    dec.read_to_end(&mut pt).await.unwrap();
    assert!(pt == plain);
}

/// Polls `r` with a waker that does nothing until it is `Pending`; returns what it released.
fn poll_until_pending(r: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut storage = vec![0; 4096];
    loop {
        let mut buf = ReadBuf::new(&mut storage);
        match Pin::new(&mut *r).poll_read(&mut cx, &mut buf) {
            Poll::Pending => return out,
            Poll::Ready(Ok(())) if buf.filled().is_empty() => panic!("unexpected end of stream"),
            Poll::Ready(Ok(())) => out.extend_from_slice(buf.filled()),
            Poll::Ready(Err(e)) => panic!("{e}"),
        }
    }
}

#[test]
fn plaintext_is_held_back_until_the_end_of_the_stream() {
    // The last length goes through the decrypting pipeline (past its first MiB).
    for len in [
        100,
        HOLD_BACK + 1,
        3 * HOLD_BACK + 5,
        CHUNK + 77,
        2 * MIB + 77,
    ] {
        let plain = data(len, 3);
        let (ct, done) = sync_seal(&plain);
        // Everything but the end of stream arrives.
        let mut inner = stutter(&ct, 3000);
        inner.hang = true;
        inner.yields = false;
        let mut dec = AsyncDecryptReader::new(inner, &done.public, &done.private).unwrap();
        let released = poll_until_pending(&mut dec);
        assert_eq!(released.len(), len.saturating_sub(HOLD_BACK), "len {len}");
        assert!(released[..] == plain[..released.len()]);
        assert_eq!(dec.verified_digest(), None);
    }
}

#[tokio::test]
async fn tampering_fails_at_the_end_and_stays_failed() {
    for len in [100, 3 * HOLD_BACK + 123, 2 * MIB + 333] {
        let plain = data(len, 5);
        let (ct, done) = sync_seal(&plain);
        let mut bad = ct.clone();
        bad[len / 2] ^= 1;
        let short = &ct[..len - 1];
        for input in [&bad[..], short] {
            let mut dec =
                AsyncDecryptReader::new(stutter(input, 4000), &done.public, &done.private).unwrap();
            let (released, err) = drain(&mut dec, 4096).await;
            let err = err.expect("decryption must fail");
            assert!(auth_error(&err), "{err:?}");
            assert!(released.len() <= input.len().saturating_sub(HOLD_BACK));
            assert_eq!(dec.verified_digest(), None);
            for _ in 0..3 {
                let again = dec.read(&mut [0; 100]).await.unwrap_err();
                assert!(auth_error(&again), "not sticky: {again:?}");
            }
        }
    }
    // A digest mismatch is reported as such.
    let plain = data(5000, 6);
    let (ct, done) = sync_seal(&plain);
    let mut private = done.private.clone();
    private.digest = format!("sha256:{}", "0".repeat(64));
    let mut dec = AsyncDecryptReader::new(&ct[..], &done.public, &private).unwrap();
    let err = dec.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert!(matches!(
        Error::from_io(&err),
        Some(Error::DigestMismatch { .. })
    ));
}

#[tokio::test]
async fn inner_errors_pass_through_and_are_not_sticky() {
    for len in [30_000, 2 * MIB + 99] {
        let plain = data(len, 13);
        let mut inner = stutter(&plain, 1000);
        inner.fail_at = Some(20_000);
        let mut enc = AsyncEncryptReader::with_key(inner, key(1), nonce(2))
            .unwrap()
            .compute_plaintext_digest(true);
        let mut ct = Vec::new();
        let err = enc.read_to_end(&mut ct).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(Error::from_io(&err).is_none());
        enc.read_to_end(&mut ct).await.unwrap();
        let done = enc.finalize().unwrap();
        let (sync_ct, sync_done) = sync_seal(&plain);
        assert!(ct == sync_ct);
        assert_eq!(done.private.digest, sync_done.private.digest);
        assert_eq!(done.public.hmac, sync_done.public.hmac);

        let mut inner = stutter(&ct, 1000);
        inner.fail_at = Some(20_000);
        let mut dec = AsyncDecryptReader::new(inner, &done.public, &done.private).unwrap();
        let mut pt = Vec::new();
        let err = dec.read_to_end(&mut pt).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        dec.read_to_end(&mut pt).await.unwrap();
        assert!(pt == plain, "len {len}");
    }
}

#[tokio::test]
async fn finalize_requires_end_of_stream_and_debug_hides_secrets() {
    let plain = data(50_000, 2);
    let mut enc = AsyncEncryptReader::with_key(&plain[..], key(7), nonce(8)).unwrap();
    let mut buf = [0; 1000];
    assert_eq!(enc.read(&mut buf).await.unwrap(), 1000);
    let debug = format!("{enc:?}");
    assert!(
        debug.contains("AsyncEncryptReader") && !debug.contains("0707"),
        "{debug}"
    );
    assert!(matches!(enc.finalize(), Err(Error::NotFinished)));

    let (ct, done) = sync_seal(&plain);
    assert!(matches!(
        AsyncDecryptReader::new(&ct[..], &PublicOptions::default(), &done.private),
        Err(Error::NoCipher)
    ));
    let dec = AsyncDecryptReader::new(&ct[..], &done.public, &done.private).unwrap();
    assert!(format!("{dec:?}").contains("streaming"));
}

/// Reads `r` to its end with `buf_len`-byte reads, counting the polls that returned
/// `Pending`.
async fn drain_counting_pending(
    r: &mut (impl AsyncRead + Unpin),
    buf_len: usize,
) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut buf = vec![0; buf_len];
    let mut pending = 0;
    loop {
        let n = std::future::poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    pending += 1;
                    Poll::Pending
                }
                Poll::Ready(result) => Poll::Ready(result.map(|()| rb.filled().len())),
            }
        })
        .await
        .unwrap();
        if n == 0 {
            return (out, pending);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Resets the worker's pause when dropped.
struct Pause;

impl Pause {
    fn set(ms: u64) -> Self {
        offload::WORKER_PAUSE_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
        Self
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        offload::WORKER_PAUSE_MS.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// With the helper thread on, on a current-thread runtime, and an inner reader that is
/// always ready: a read never waits for the helper. The helper is made slow (a pause per
/// batch), so it is behind most of the time: each time, `poll_read` returns `Pending` and
/// the helper wakes the task. A read that blocked instead would return `Pending` at most
/// once (at the end). The bytes and options are those of the sync readers.
#[tokio::test(flavor = "current_thread")]
async fn with_the_helper_thread_no_read_waits() {
    let plain = data(16 * MIB + 11, 5);
    let mut sync = EncryptReader::with_key(&plain[..], key(1), nonce(2))
        .unwrap()
        .compute_plaintext_digest(true)
        .parallel(false);
    let mut sync_ct = Vec::new();
    sync.read_to_end(&mut sync_ct).unwrap();
    let sync_done = sync.finalize().unwrap();
    let _pause = Pause::set(5);
    let behind = |pending: usize| pending >= 10;

    // The MAC alone on the helper (no plaintext digest).
    let mut enc = AsyncEncryptReader::with_key(&plain[..], key(1), nonce(2))
        .unwrap()
        .parallel(true);
    let (ct, pending) = drain_counting_pending(&mut enc, CHUNK).await;
    assert!(ct == sync_ct);
    assert!(behind(pending), "{pending} times Pending");
    let done = enc.finalize().unwrap();
    assert_eq!(done.public, sync_done.public);

    // The cipher and MAC on the helper while the reader hashes the plaintext.
    let mut enc = AsyncEncryptReader::with_key(&plain[..], key(1), nonce(2))
        .unwrap()
        .compute_plaintext_digest(true)
        .parallel(true);
    let (ct, pending) = drain_counting_pending(&mut enc, 64 * 1024).await;
    assert!(ct == sync_ct);
    assert!(behind(pending), "{pending} times Pending");
    let done = enc.finalize().unwrap();
    assert_eq!(done.public, sync_done.public);
    assert_eq!(done.private.digest, sync_done.private.digest);

    // Decrypting, pipelined the same way.
    let mut dec = AsyncDecryptReader::new(&ct[..], &done.public, &done.private)
        .unwrap()
        .parallel(true);
    let (pt, pending) = drain_counting_pending(&mut dec, CHUNK).await;
    assert!(pt == plain);
    assert!(behind(pending), "{pending} times Pending");
    assert_eq!(dec.verified_digest(), Some(done.private.digest.as_str()));
}
