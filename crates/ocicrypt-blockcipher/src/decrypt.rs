//! The decrypting reader.

use std::fmt;
use std::io::{self, Read};

use openssl::cipher_ctx::CipherCtx;
use ring::{digest, hmac};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use ocicrypt_spec::options::{AES_256_CTR_HMAC_SHA256, NONCE};

use crate::digest::ExpectedDigest;
use crate::offload::{Failure, Feeder, INLINE_LIMIT, Pipeline, Stage, WakerSlot, busy};
use crate::{
    CHUNK, Error, HMAC_LEN, HOLD_BACK, LayerKey, Nonce, PrivateOptions, PublicOptions, STEP,
};
use std::sync::Arc;

/// The cipher and the MAC, run by the reading thread or by a [`Pipeline`] worker.
struct Decipher {
    ctx: CipherCtx,
    mac: hmac::Context,
}

impl Stage for Decipher {
    /// MACs and deciphers one piece of ciphertext in place, [`STEP`] bytes at a time so
    /// that each step stays in cache between the two passes.
    fn apply(&mut self, data: &mut [u8]) -> Result<(), Error> {
        for step in data.chunks_mut(STEP) {
            self.mac.update(step);
            // CTR is a stream cipher for OpenSSL (block size 1): output length == input.
            self.ctx.cipher_update_inplace(step, step.len())?;
        }
        Ok(())
    }
}

/// Where the ciphertext is MACed and deciphered.
// One per reader, never moved in a hot path: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Engine {
    /// On the reading thread (short streams, one CPU, or `parallel(false)`). Past
    /// [`INLINE_LIMIT`] bytes, with `parallel`, it moves to a pipeline.
    Inline { decipher: Decipher, parallel: bool },
    /// On a worker thread, up to [`PIPELINE_DEPTH`](crate::offload::PIPELINE_DEPTH) batches ahead of the reader, while the
    /// reading thread hashes the plaintext: the two threads then do about equal work.
    Pipelined {
        pipeline: Pipeline<Decipher>,
        feeder: Feeder,
    },
    /// Only while switching, or after the worker died.
    Broken,
}

// One per reader, never moved in a hot path: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum State {
    /// Still reading ciphertext.
    Streaming {
        engine: Engine,
        digest: digest::Context,
    },
    /// The inner reader hit EOF and every check passed; holds the plaintext digest.
    Verified(String),
    /// A check failed; every read reports this again.
    Failed(Error),
}

/// Decrypts an `AES_256_CTR_HMAC_SHA256` layer: reading from it yields the plaintext.
///
/// # Unauthenticated output
///
/// **Bytes returned before the final read are not authenticated.** The reader MACs the
/// ciphertext as it goes and can only tell whether the stream is genuine once the inner
/// reader reaches its end. It holds back the last [`HOLD_BACK`] bytes of plaintext (all of
/// it, for shorter layers) until then; everything before that is released unverified, as in
/// Go's ocicrypt. Callers must not act on the plaintext (unpack it, hash it into a store,
/// rename a file into place) until a read has returned `Ok(0)`: write it somewhere
/// temporary and commit only after that.
///
/// If the HMAC does not match (truncated, extended or modified ciphertext, wrong key or
/// wrong HMAC), the read that reaches the end returns an [`io::Error`] of kind
/// [`InvalidData`](io::ErrorKind::InvalidData) wrapping [`Error::Authentication`]; if the
/// HMAC matches but the plaintext digest from the private options does not,
/// [`Error::DigestMismatch`]. The failure is sticky: every later read returns it again.
/// [`Error::from_io`] recovers the [`Error`]. Errors of the inner reader are passed through
/// unchanged and are not sticky.
///
/// The format does not authenticate the nonce: a wrong nonce passes the HMAC and yields
/// garbage, which only the plaintext digest (when the private options carry one) catches.
///
/// Memory use is constant: a buffer of 256 KiB + [`HOLD_BACK`], plus up to 1 MiB of
/// batches for the helper thread (see [`parallel`](DecryptReader::parallel)).
pub struct DecryptReader<R: Read> {
    inner: R,
    expected_mac: [u8; HMAC_LEN],
    expected_digest: Option<ExpectedDigest>,
    state: State,
    /// Decrypted plaintext not yet handed out: `buf[start..end]`.
    buf: Zeroizing<Vec<u8>>,
    start: usize,
    end: usize,
    read: u64,
    /// For an asynchronous reader: never wait for the helper thread (see [`WakerSlot`]).
    slot: Option<Arc<WakerSlot>>,
}

impl<R: Read> DecryptReader<R> {
    /// Checks the options and prepares to decrypt `inner`.
    ///
    /// The nonce is taken from the public cipher options if present there, else from the
    /// private ones (Go's order). `private.digest` is the expected plaintext digest: empty
    /// means no check; `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>` is
    /// checked at the end of the stream.
    ///
    /// # Errors
    /// In the order checked: [`Error::NoCipher`], [`Error::UnsupportedCipher`],
    /// [`Error::MissingHmac`], [`Error::InvalidHmacLength`], [`Error::InvalidKeyLength`],
    /// [`Error::MissingNonce`], [`Error::InvalidNonceLength`], [`Error::InvalidDigest`],
    /// [`Error::UnsupportedDigestAlgorithm`], and [`Error::Crypto`] if OpenSSL fails.
    pub fn new(inner: R, public: &PublicOptions, private: &PrivateOptions) -> Result<Self, Error> {
        match public.cipher.as_str() {
            "" => return Err(Error::NoCipher),
            AES_256_CTR_HMAC_SHA256 => {}
            other => {
                return Err(Error::UnsupportedCipher {
                    cipher: other.to_owned(),
                });
            }
        }
        if public.hmac.is_empty() {
            return Err(Error::MissingHmac);
        }
        let expected_mac = <[u8; HMAC_LEN]>::try_from(public.hmac.as_slice()).map_err(|_| {
            Error::InvalidHmacLength {
                len: public.hmac.len(),
            }
        })?;
        let key = LayerKey::from_bytes(private.symkey.expose())?;
        let nonce = public
            .cipher_options
            .get(NONCE)
            .or_else(|| private.cipher_options.get(NONCE))
            .ok_or(Error::MissingNonce)?;
        let nonce = Nonce::from_bytes(nonce)?;
        let expected_digest = crate::digest::parse_expected(&private.digest)?;

        let ctx = crate::new_ctr(&key, &nonce)?;
        let mac = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key.expose()));
        let algorithm = expected_digest
            .as_ref()
            .map_or(&digest::SHA256, |d| d.algorithm);
        Ok(Self {
            inner,
            expected_mac,
            expected_digest,
            state: State::Streaming {
                engine: Engine::Inline {
                    decipher: Decipher { ctx, mac },
                    parallel: false,
                },
                digest: digest::Context::new(algorithm),
            },
            buf: Zeroizing::new(Vec::new()),
            start: 0,
            end: 0,
            read: 0,
            slot: None,
        })
    }

    /// Whether the HMAC and the cipher may run on a helper thread while the reading thread
    /// hashes the plaintext (off by default: the reader starts no thread unless asked; turn
    /// it on when a CPU is free). Streams up to 1 MiB never start the thread. Call it before
    /// the first read.
    #[must_use]
    pub fn parallel(mut self, on: bool) -> Self {
        self.set_parallel(on);
        self
    }

    /// [`parallel`](DecryptReader::parallel), for a reader held by reference (one inside
    /// another reader).
    pub fn set_parallel(&mut self, on: bool) {
        if let State::Streaming {
            engine: Engine::Inline { parallel, .. },
            ..
        } = &mut self.state
        {
            *parallel = on;
        }
    }

    /// The inner reader (the async readers fill it between reads).
    #[cfg(feature = "tokio")]
    pub(crate) fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Never wait for the helper thread: a read that would wait returns
    /// [`busy`](crate::offload::busy) instead, and `slot`'s waker is woken when it is worth
    /// reading again (the async readers; call it before the first read).
    #[cfg(feature = "tokio")]
    pub(crate) fn set_waker_slot(&mut self, slot: Arc<WakerSlot>) {
        self.slot = Some(slot);
    }

    /// The number of ciphertext bytes read from the inner reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// After a read has returned `Ok(0)`: the verified digest of the plaintext, in the
    /// expected digest's algorithm, or `sha256:<hex>` if none was expected. `None` before
    /// that or after a failure.
    pub fn verified_digest(&self) -> Option<&str> {
        match &self.state {
            State::Verified(d) => Some(d),
            _ => None,
        }
    }

    /// The inner reader hit EOF: check the HMAC (constant time), then the digest.
    fn finish(&mut self) -> Result<(), Error> {
        let outcome = match std::mem::replace(&mut self.state, State::Failed(Error::Authentication))
        {
            State::Streaming { engine, digest } => match engine.finish() {
                Ok(mac) => {
                    let tag = mac.sign();
                    if bool::from(tag.as_ref().ct_eq(&self.expected_mac)) {
                        let actual = crate::digest::format(&digest.finish());
                        match &self.expected_digest {
                            Some(expected) if expected.text != actual => {
                                Err(Error::DigestMismatch {
                                    expected: expected.text.clone(),
                                    actual,
                                })
                            }
                            _ => Ok(actual),
                        }
                    } else {
                        Err(Error::Authentication)
                    }
                }
                Err(e) => Err(e),
            },
            State::Verified(d) => Ok(d),
            State::Failed(e) => Err(e),
        };
        match outcome {
            Ok(d) => {
                self.state = State::Verified(d);
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Makes `e` sticky, drops the unreleased plaintext and returns a copy of `e`.
    fn fail(&mut self, e: Error) -> Error {
        self.buf.zeroize();
        self.buf.shrink_to_fit();
        self.start = 0;
        self.end = 0;
        let replay = e.replay();
        self.state = State::Failed(e);
        replay
    }

    /// Reads and decrypts the next piece of ciphertext into the buffer. `Ok(false)` at EOF.
    ///
    /// Called only when at most [`HOLD_BACK`] bytes are held, so that after sliding them
    /// to the front there is room for a whole [`CHUNK`] (a pipeline batch is at most that).
    fn fill(&mut self) -> io::Result<bool> {
        if self.buf.is_empty() {
            self.buf.resize(CHUNK + HOLD_BACK, 0);
        }
        if let State::Streaming { engine, .. } = &mut self.state
            && matches!(engine, Engine::Inline { parallel: true, .. })
            && self.read > INLINE_LIMIT
        {
            engine.start_pipeline(self.slot.clone());
        }
        // Slide the held bytes to the front only once the free space runs low, so that an
        // inner reader returning small pieces does not cost a HOLD_BACK-sized move per piece
        // (a pipeline batch needs room for a whole CHUNK).
        let pipelined = matches!(
            self.state,
            State::Streaming {
                engine: Engine::Pipelined { .. },
                ..
            }
        );
        let wanted = if pipelined { CHUNK } else { CHUNK / 2 };
        if self.start > 0 && self.buf.len() - self.end < wanted {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let result = if pipelined {
            self.fill_pipelined()
        } else {
            self.fill_inline()
        };
        result.map_err(|e| match e {
            Failure::Inner(e) => e,
            Failure::Cipher(e) => self.fail(e).into(),
            Failure::Busy => busy(),
        })
    }

    /// Reads into the buffer and deciphers there, on this thread.
    fn fill_inline(&mut self) -> Result<bool, Failure> {
        let State::Streaming { engine, digest } = &mut self.state else {
            return Ok(false);
        };
        let Engine::Inline { decipher, .. } = engine else {
            return Err(Failure::Cipher(Error::Worker));
        };
        let free = self.buf.get_mut(self.end..).unwrap_or_default();
        let n = crate::read_retry(&mut self.inner, free).map_err(Failure::Inner)?;
        if n == 0 {
            return Ok(false);
        }
        let filled = free.get_mut(..n).unwrap_or_default();
        for step in filled.chunks_mut(STEP) {
            decipher.apply(step).map_err(Failure::Cipher)?;
            digest.update(step);
        }
        self.end += n;
        self.read = self.read.saturating_add(n as u64);
        Ok(true)
    }

    /// Keeps the worker supplied with ciphertext (see [`Feeder`]), then takes the oldest
    /// batch back as plaintext, hashes it and appends it to the buffer.
    fn fill_pipelined(&mut self) -> Result<bool, Failure> {
        let State::Streaming {
            engine: Engine::Pipelined { pipeline, feeder },
            digest,
        } = &mut self.state
        else {
            return Err(Failure::Cipher(Error::Worker));
        };
        feeder.top_up(pipeline, &mut self.inner, &mut self.read, |_| {})?;
        let Some(plain) = feeder.next(pipeline)? else {
            return Ok(false);
        };
        digest.update(&plain);
        let dst = self
            .buf
            .get_mut(self.end..self.end + plain.len())
            .ok_or(Failure::Cipher(Error::Worker))?;
        dst.copy_from_slice(&plain);
        self.end += plain.len();
        pipeline.recycle(plain);
        Ok(true)
    }
}

impl Engine {
    /// Moves the cipher and MAC to a worker thread (stays inline if none can start).
    fn start_pipeline(&mut self, slot: Option<Arc<WakerSlot>>) {
        let Engine::Inline { decipher, .. } = std::mem::replace(self, Engine::Broken) else {
            return;
        };
        *self = match Pipeline::start(decipher, slot) {
            Ok(pipeline) => Engine::Pipelined {
                pipeline,
                feeder: Feeder::default(),
            },
            Err(decipher) => Engine::Inline {
                decipher,
                parallel: false,
            },
        };
    }

    /// The MAC over everything given, once the worker (if any) is done.
    fn finish(self) -> Result<hmac::Context, Error> {
        match self {
            Engine::Inline { decipher, .. } => Ok(decipher.mac),
            Engine::Pipelined { pipeline, .. } => pipeline.finish().map(|d| d.mac),
            Engine::Broken => Err(Error::Worker),
        }
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let State::Failed(e) = &self.state {
            return Err(e.replay().into());
        }
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let held = self.end - self.start;
            let verified = matches!(self.state, State::Verified(_));
            let releasable = if verified {
                held
            } else {
                held.saturating_sub(HOLD_BACK)
            };
            if releasable > 0 {
                let n = releasable.min(out.len());
                let src = self.buf.get(self.start..self.start + n).unwrap_or_default();
                if let Some(dst) = out.get_mut(..src.len()) {
                    dst.copy_from_slice(src);
                }
                self.start += n;
                return Ok(n);
            }
            if verified {
                return Ok(0);
            }
            if !self.fill()? {
                self.finish()?;
            }
        }
    }
}

impl<R: Read> fmt::Debug for DecryptReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Streaming { .. } => "streaming",
            State::Verified(_) => "verified",
            State::Failed(_) => "failed",
        };
        f.debug_struct("DecryptReader")
            .field("bytes_read", &self.read)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
