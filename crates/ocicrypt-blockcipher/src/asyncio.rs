//! [`tokio::io::AsyncRead`] versions of the two readers (feature `tokio`).
//!
//! Each wraps the synchronous reader around a small feed buffer that it fills from the
//! asynchronous inner reader, so both versions share one implementation of the cipher, the
//! hold-back, the sticky errors and the checks at the end of the stream.
//!
//! No read waits: when the helper thread (see `parallel`) is behind, `poll_read` returns
//! `Pending`, and the helper wakes the task when it hands a batch back. This holds on a
//! current-thread runtime too.

use std::fmt;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};
use zeroize::Zeroizing;

use crate::offload::{Stalled, WakerSlot, is_busy};
use crate::{
    CHUNK, DecryptReader, EncryptReader, Error, Finalized, LayerKey, Nonce, PrivateOptions,
    PublicOptions,
};

/// The synchronous readers' inner reader: bytes already received from the asynchronous
/// reader, `WouldBlock` when there are none yet, end of stream once that reader ended.
struct Feed {
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
    end: usize,
    eof: bool,
    /// The inner reader returned `Pending`: say [`Stalled`] instead of a plain `WouldBlock`.
    stalled: bool,
}

impl Feed {
    fn new() -> Self {
        Self {
            buf: Zeroizing::new(Vec::new()),
            pos: 0,
            end: 0,
            eof: false,
            stalled: false,
        }
    }

    /// Receives more bytes from `inner` once everything received was consumed.
    fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        inner: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.end || self.eof {
            return Poll::Ready(Ok(()));
        }
        if self.buf.is_empty() {
            self.buf.resize(CHUNK, 0);
        }
        let mut rb = ReadBuf::new(&mut self.buf);
        ready!(Pin::new(inner).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        self.pos = 0;
        self.end = n;
        self.eof = n == 0;
        Poll::Ready(Ok(()))
    }
}

impl Read for Feed {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let ready = self.buf.get(self.pos..self.end).unwrap_or_default();
        if ready.is_empty() && !self.eof {
            return Err(if self.stalled {
                io::Error::new(io::ErrorKind::WouldBlock, Stalled)
            } else {
                io::ErrorKind::WouldBlock.into()
            });
        }
        let n = ready.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), ready.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

/// A synchronous reader whose inner reader is a [`Feed`].
trait OverFeed: Read {
    fn feed(&mut self) -> &mut Feed;
}

impl OverFeed for EncryptReader<Feed> {
    fn feed(&mut self) -> &mut Feed {
        self.inner_mut()
    }
}

impl OverFeed for DecryptReader<Feed> {
    fn feed(&mut self) -> &mut Feed {
        self.inner_mut()
    }
}

/// One read of `sync`, filling its feed from `inner` whenever it runs dry.
fn poll_read_over<R: AsyncRead + Unpin>(
    sync: &mut impl OverFeed,
    inner: &mut R,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    loop {
        match sync.read(buf.initialize_unfilled()) {
            Ok(n) => {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            // The helper thread is behind; it wakes the task (registered before the read).
            Err(e) if is_busy(&e) => return Poll::Pending,
            // Only the feed says `WouldBlock`, and the readers keep what they read before
            // it, so the same read is made again after the fill.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match sync.feed().poll_fill(inner, cx) {
                    Poll::Ready(result) => result?,
                    Poll::Pending => {
                        // Before waiting, release what a pipeline has in flight.
                        sync.feed().stalled = true;
                        let released = sync.read(buf.initialize_unfilled());
                        sync.feed().stalled = false;
                        return match released {
                            Ok(n) => {
                                buf.advance(n);
                                Poll::Ready(Ok(()))
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                            Err(e) => Poll::Ready(Err(e)),
                        };
                    }
                }
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// [`EncryptReader`] for asynchronous inner readers: reading yields the ciphertext, and
/// [`finalize`](AsyncEncryptReader::finalize) the options, after end of stream.
///
/// The helper thread (see [`parallel`](AsyncEncryptReader::parallel)) takes batches of up
/// to 256 KiB, a few at a time; when it falls behind, `poll_read` returns `Pending` and the
/// helper wakes the task: no read blocks the runtime's thread.
pub struct AsyncEncryptReader<R> {
    inner: R,
    sync: EncryptReader<Feed>,
    slot: Arc<WakerSlot>,
}

impl<R: AsyncRead + Unpin> AsyncEncryptReader<R> {
    /// Encrypts `inner` with a fresh random key and nonce.
    ///
    /// # Errors
    /// As [`EncryptReader::new`].
    pub fn new(inner: R) -> Result<Self, Error> {
        Self::with_key(inner, LayerKey::generate()?, Nonce::generate()?)
    }

    /// Encrypts `inner` with the given key and nonce; see [`EncryptReader::with_key`].
    ///
    /// # Errors
    /// As [`EncryptReader::with_key`].
    pub fn with_key(inner: R, key: LayerKey, nonce: Nonce) -> Result<Self, Error> {
        let slot = Arc::new(WakerSlot::default());
        let mut sync = EncryptReader::with_key(Feed::new(), key, nonce)?;
        sync.set_waker_slot(slot.clone());
        Ok(Self { inner, sync, slot })
    }

    /// See [`EncryptReader::compute_plaintext_digest`].
    #[must_use]
    pub fn compute_plaintext_digest(mut self, on: bool) -> Self {
        self.sync = self.sync.compute_plaintext_digest(on);
        self
    }

    /// See [`EncryptReader::parallel`].
    #[must_use]
    pub fn parallel(mut self, on: bool) -> Self {
        self.sync = self.sync.parallel(on);
        self
    }

    /// The number of plaintext bytes read from the inner reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.sync.bytes_read()
    }

    /// See [`EncryptReader::finalize`]. After end of stream the helper thread is done, so
    /// this does not wait.
    ///
    /// # Errors
    /// As [`EncryptReader::finalize`].
    pub fn finalize(self) -> Result<Finalized, Error> {
        self.sync.finalize()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncEncryptReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.slot.register(cx.waker());
        poll_read_over(&mut this.sync, &mut this.inner, cx, buf)
    }
}

impl<R> fmt::Debug for AsyncEncryptReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncEncryptReader")
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

/// [`DecryptReader`] for asynchronous inner readers: reading yields the plaintext.
///
/// Everything [`DecryptReader`] says holds here too: **bytes returned before the read that
/// completes with nothing (end of stream) are not authenticated**; the last [`HOLD_BACK`]
/// bytes are released only after the HMAC and the digest were checked; a failed check is
/// sticky; errors of the inner reader pass through and are not.
///
/// [`HOLD_BACK`]: crate::HOLD_BACK
pub struct AsyncDecryptReader<R> {
    inner: R,
    sync: DecryptReader<Feed>,
    slot: Arc<WakerSlot>,
}

impl<R: AsyncRead + Unpin> AsyncDecryptReader<R> {
    /// Checks the options and prepares to decrypt `inner`; see [`DecryptReader::new`].
    ///
    /// # Errors
    /// As [`DecryptReader::new`].
    pub fn new(inner: R, public: &PublicOptions, private: &PrivateOptions) -> Result<Self, Error> {
        let slot = Arc::new(WakerSlot::default());
        let mut sync = DecryptReader::new(Feed::new(), public, private)?;
        sync.set_waker_slot(slot.clone());
        Ok(Self { inner, sync, slot })
    }

    /// See [`DecryptReader::parallel`].
    #[must_use]
    pub fn parallel(mut self, on: bool) -> Self {
        self.sync = self.sync.parallel(on);
        self
    }

    /// The number of ciphertext bytes read from the inner reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.sync.bytes_read()
    }

    /// See [`DecryptReader::verified_digest`].
    pub fn verified_digest(&self) -> Option<&str> {
        self.sync.verified_digest()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncDecryptReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.slot.register(cx.waker());
        poll_read_over(&mut this.sync, &mut this.inner, cx, buf)
    }
}

impl<R> fmt::Debug for AsyncDecryptReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncDecryptReader")
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}
