//! The encrypting reader.

use std::fmt;
use std::io::{self, Read};

use openssl::cipher_ctx::CipherCtx;
use ring::{digest, hmac};
use zeroize::Zeroizing;

use ocicrypt_spec::options::{AES_256_CTR_HMAC_SHA256, CipherOptions, NONCE};
use ocicrypt_spec::secret::SecretBytes;

use crate::offload::{
    Batch, Failure, Feeder, INLINE_LIMIT, Offload, Pipeline, Stage, WakerSlot, busy,
};
use crate::{CHUNK, Error, LayerKey, Nonce, PrivateOptions, PublicOptions, STEP};
use std::sync::Arc;

/// Caller buffers at least this large are encrypted in place; smaller ones are served from
/// an internal buffer filled [`CHUNK`] bytes at a time.
const DIRECT_MIN: usize = 4 * 1024;

/// Whether the plaintext digest is computed.
// One per reader, never moved in a hot path: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum DigestState {
    Off,
    On(digest::Context),
    /// Turned on after reading started: `finalize` fails rather than lie.
    Late,
}

/// The cipher and the MAC, as a [`Pipeline`] worker runs them.
struct Encipher {
    ctx: CipherCtx,
    mac: hmac::Context,
}

impl Stage for Encipher {
    /// Enciphers one piece in place and MACs the result, [`STEP`] bytes at a time.
    fn apply(&mut self, data: &mut [u8]) -> Result<(), Error> {
        for step in data.chunks_mut(STEP) {
            self.ctx.cipher_update_inplace(step, step.len())?;
            self.mac.update(step);
        }
        Ok(())
    }
}

/// Where the plaintext is enciphered and MACed.
// One per reader, never moved in a hot path: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Engine {
    /// The cipher on the reading thread, the MAC there too or on its own helper thread
    /// (see [`Offload`]).
    Inline {
        ctx: CipherCtx,
        mac: Offload<hmac::Context>,
    },
    /// With the plaintext digest, past [`INLINE_LIMIT`] bytes: cipher and MAC on a worker
    /// thread while the reading thread hashes the plaintext; `current[pos..]` is ciphertext
    /// not yet handed out.
    Pipelined {
        pipeline: Pipeline<Encipher>,
        feeder: Feeder,
        current: Option<Batch>,
        pos: usize,
    },
    /// Only while switching, or after the worker died.
    Broken,
}

/// Encrypts a plaintext stream: reading from it yields the ciphertext.
///
/// The ciphertext has exactly the length of the plaintext (AES-256-CTR, no header). While
/// streaming, the reader computes HMAC-SHA256 of the ciphertext and, if asked, SHA-256 of the
/// plaintext. After the reader has returned end of stream (`Ok(0)`), [`finalize`] gives the
/// options to store in the layer descriptor.
///
/// Memory use is constant: one internal buffer of 256 KiB if the caller reads with buffers
/// smaller than 4 KiB (larger ones are encrypted in place), plus up to 1 MiB of batches
/// for the helper thread (see [`parallel`](EncryptReader::parallel)).
///
/// [`finalize`]: EncryptReader::finalize
pub struct EncryptReader<R: Read> {
    inner: R,
    key: LayerKey,
    nonce: Nonce,
    engine: Engine,
    digest: DigestState,
    /// Whether helper threads may be used.
    parallel: bool,
    /// Ciphertext waiting to be handed to a caller with a small buffer: `buf[pos..end]`.
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
    end: usize,
    read: u64,
    eof: bool,
    /// Set if OpenSSL failed mid-stream; every later read and `finalize` report it.
    failed: Option<Error>,
    /// For an asynchronous reader: never wait for a helper thread (see [`WakerSlot`]).
    slot: Option<Arc<WakerSlot>>,
}

/// What [`EncryptReader::finalize`] returns: the layer's options and its size.
#[derive(Clone, Debug)]
pub struct Finalized {
    /// Cipher `AES_256_CTR_HMAC_SHA256`, the HMAC of the ciphertext, empty cipher options.
    pub public: PublicOptions,
    /// The layer key, the plaintext digest (`sha256:<hex>` if
    /// [`compute_plaintext_digest`](EncryptReader::compute_plaintext_digest) was on, else
    /// empty) and the nonce in `cipher_options["nonce"]`.
    pub private: PrivateOptions,
    /// The plaintext length, which is also the ciphertext length.
    pub size: u64,
}

impl<R: Read> EncryptReader<R> {
    /// Encrypts `inner` with a fresh random key and nonce.
    ///
    /// # Errors
    /// [`Error::Crypto`] if OpenSSL's random number generator or cipher setup fails.
    pub fn new(inner: R) -> Result<Self, Error> {
        Self::with_key(inner, LayerKey::generate()?, Nonce::generate()?)
    }

    /// Encrypts `inner` with the given key and nonce.
    ///
    /// Never reuse a key and nonce pair for two different plaintexts: CTR mode then leaks
    /// the XOR of the plaintexts.
    ///
    /// # Errors
    /// [`Error::Crypto`] if OpenSSL's cipher setup fails.
    pub fn with_key(inner: R, key: LayerKey, nonce: Nonce) -> Result<Self, Error> {
        let ctx = crate::new_ctr(&key, &nonce)?;
        let mac = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key.expose()));
        let mac = Offload::new(mac);
        let parallel = false; // no helper thread unless asked
        Ok(Self {
            inner,
            key,
            nonce,
            engine: Engine::Inline { ctx, mac },
            digest: DigestState::Off,
            parallel,
            buf: Zeroizing::new(Vec::new()),
            pos: 0,
            end: 0,
            read: 0,
            eof: false,
            failed: None,
            slot: None,
        })
    }

    /// Whether to compute the SHA-256 digest of the plaintext while streaming (off by
    /// default); it becomes `Finalized::private.digest`.
    ///
    /// Call it before the first read. Turning it on later makes [`finalize`] fail with
    /// [`Error::DigestRequestedLate`], since the digest would miss the bytes already read.
    ///
    /// [`finalize`]: EncryptReader::finalize
    #[must_use]
    pub fn compute_plaintext_digest(mut self, on: bool) -> Self {
        self.digest = match (on, self.digest) {
            (false, _) => DigestState::Off,
            (true, DigestState::On(ctx)) => DigestState::On(ctx),
            (true, _) if self.read > 0 => DigestState::Late,
            (true, _) => DigestState::On(digest::Context::new(&digest::SHA256)),
        };
        self.configure_offload();
        self
    }

    /// Whether the HMAC (and, with the plaintext digest, the cipher) may run on a helper
    /// thread (off by default: the reader starts no thread unless asked; turn it on when a
    /// CPU is free).
    ///
    /// HMAC-SHA256 is the slowest step; on a second core the stream runs at close to the
    /// speed of HMAC-SHA256 alone instead of about 0.7x of it. With the plaintext digest,
    /// the reading thread hashes the plaintext while the helper enciphers and MACs. Streams
    /// up to 1 MiB never start the thread. Call it before the first read.
    #[must_use]
    pub fn parallel(mut self, on: bool) -> Self {
        self.parallel = on;
        self.configure_offload();
        self
    }

    /// The MAC gets its own helper thread only when the stream will not move to a
    /// pipeline (which takes the MAC along with the cipher).
    fn configure_offload(&mut self) {
        let pipeline_later = self.parallel && matches!(self.digest, DigestState::On(_));
        if let Engine::Inline { mac, .. } = &mut self.engine {
            mac.set_parallel(self.parallel && !pipeline_later);
        }
    }

    /// The inner reader (the async readers fill it between reads).
    #[cfg(feature = "tokio")]
    pub(crate) fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The inner reader, to configure it (as [`BufReader::get_mut`](std::io::BufReader::get_mut)).
    /// Reading from it directly would take plaintext out of the stream, which would then
    /// be neither encrypted nor MACed.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Never wait for a helper thread: a read that would wait returns
    /// [`busy`](crate::offload::busy) instead, and `slot`'s waker is woken when it is worth
    /// reading again (the async readers; call it before the first read).
    #[cfg(feature = "tokio")]
    pub(crate) fn set_waker_slot(&mut self, slot: Arc<WakerSlot>) {
        if let Engine::Inline { mac, .. } = &mut self.engine {
            mac.set_waker_slot(slot.clone());
        }
        self.slot = Some(slot);
    }

    /// The number of plaintext bytes read from the inner reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The options to annotate the encrypted layer with.
    ///
    /// # Errors
    /// [`Error::NotFinished`] unless the reader has returned end of stream;
    /// [`Error::Crypto`] if OpenSSL failed while streaming; [`Error::Worker`] if a helper
    /// thread died;
    /// [`Error::DigestRequestedLate`], see [`compute_plaintext_digest`].
    ///
    /// [`compute_plaintext_digest`]: EncryptReader::compute_plaintext_digest
    pub fn finalize(self) -> Result<Finalized, Error> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !self.eof {
            return Err(Error::NotFinished);
        }
        let digest = match self.digest {
            DigestState::Off => String::new(),
            DigestState::On(sha) => crate::digest::format(&sha.finish()),
            DigestState::Late => return Err(Error::DigestRequestedLate),
        };
        let mac = match self.engine {
            Engine::Inline { mac, .. } => mac.finish()?,
            Engine::Pipelined { pipeline, .. } => pipeline.finish()?.mac,
            Engine::Broken => return Err(Error::Worker),
        };
        let hmac = mac.sign().as_ref().to_vec();
        let mut private_options = CipherOptions::new();
        private_options.insert(NONCE.to_owned(), self.nonce.as_bytes().to_vec());
        Ok(Finalized {
            public: PublicOptions {
                cipher: AES_256_CTR_HMAC_SHA256.to_owned(),
                hmac,
                cipher_options: CipherOptions::new(),
            },
            private: PrivateOptions {
                symkey: SecretBytes::copy_from(self.key.expose()),
                digest,
                cipher_options: private_options,
            },
            size: self.read,
        })
    }
}

/// Digests, encrypts in place and MACs one piece of plaintext, [`STEP`] bytes at a time so
/// that each step stays in cache between the three passes.
fn process(
    ctx: &mut CipherCtx,
    mac: &mut Offload<hmac::Context>,
    digest: &mut DigestState,
    data: &mut [u8],
) -> Result<(), Error> {
    for step in data.chunks_mut(STEP) {
        if let DigestState::On(sha) = digest {
            sha.update(step);
        }
        // CTR is a stream cipher for OpenSSL (block size 1): the output is exactly as long
        // as the input, so no spare room is needed.
        ctx.cipher_update_inplace(step, step.len())?;
        mac.update(step);
    }
    Ok(())
}

impl<R: Read> Read for EncryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(e.replay().into());
        }
        if out.is_empty() {
            return Ok(0);
        }
        if self.pos < self.end {
            return Ok(self.drain(out));
        }
        if self.eof {
            return Ok(0);
        }
        let pipeline_due =
            self.parallel && matches!(self.digest, DigestState::On(_)) && self.read > INLINE_LIMIT;
        if pipeline_due && matches!(self.engine, Engine::Inline { .. }) {
            self.start_pipeline();
        }
        if matches!(self.engine, Engine::Pipelined { .. }) {
            return self.read_pipelined(out);
        }
        let Engine::Inline { ctx, mac } = &mut self.engine else {
            return Err(self.fail(Error::Worker));
        };
        // Without waiting: what this read gives the MAC's worker (at most CHUNK bytes)
        // must find room in its pipeline.
        if self.slot.is_some() {
            match mac.has_room() {
                Ok(true) => {}
                Ok(false) => return Err(busy()),
                Err(e) => return Err(self.fail(e)),
            }
        }
        if out.len() >= DIRECT_MIN {
            let len = out.len().min(CHUNK);
            let region = out.get_mut(..len).unwrap_or_default();
            let n = crate::read_retry(&mut self.inner, region)?;
            if n == 0 {
                return self.end_inline();
            }
            let filled = region.get_mut(..n).unwrap_or_default();
            if let Err(e) = process(ctx, mac, &mut self.digest, filled) {
                return Err(self.fail(e));
            }
            self.read = self.read.saturating_add(n as u64);
            return Ok(n);
        }
        if self.buf.is_empty() {
            self.buf.resize(CHUNK, 0);
        }
        let n = crate::read_retry(&mut self.inner, &mut self.buf)?;
        if n == 0 {
            return self.end_inline();
        }
        let filled = self.buf.get_mut(..n).unwrap_or_default();
        if let Err(e) = process(ctx, mac, &mut self.digest, filled) {
            return Err(self.fail(e));
        }
        self.read = self.read.saturating_add(n as u64);
        self.pos = 0;
        self.end = n;
        Ok(self.drain(out))
    }
}

impl<R: Read> EncryptReader<R> {
    /// Moves the cipher and the MAC to a worker thread (stays inline if none can start).
    fn start_pipeline(&mut self) {
        let Engine::Inline { ctx, mac } = std::mem::replace(&mut self.engine, Engine::Broken)
        else {
            return;
        };
        // The MAC stayed inline (see `configure_offload`), so this does not wait.
        let mac = match mac.finish() {
            Ok(mac) => mac,
            Err(_) => return, // stays Broken: the next read reports it
        };
        self.engine = match Pipeline::start(Encipher { ctx, mac }, self.slot.clone()) {
            Ok(pipeline) => Engine::Pipelined {
                pipeline,
                feeder: Feeder::default(),
                current: None,
                pos: 0,
            },
            Err(Encipher { ctx, mac }) => {
                self.parallel = false;
                let mut mac = Offload::new(mac);
                mac.set_parallel(false);
                Engine::Inline { ctx, mac }
            }
        };
    }

    /// A read once the pipeline runs: ciphertext from the batches the worker gives back.
    fn read_pipelined(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let Self {
                inner,
                engine,
                digest,
                read,
                ..
            } = self;
            let Engine::Pipelined {
                pipeline,
                feeder,
                current,
                pos,
            } = engine
            else {
                return Err(self.fail(Error::Worker));
            };
            if let Some(ready) = current.as_ref().and_then(|c| c.get(*pos..))
                && !ready.is_empty()
            {
                let n = ready.len().min(out.len());
                if let (Some(dst), Some(src)) = (out.get_mut(..n), ready.get(..n)) {
                    dst.copy_from_slice(src);
                }
                *pos += n;
                return Ok(n);
            }
            if let Some(used) = current.take() {
                pipeline.recycle(used);
            }
            let fed = feeder.top_up(pipeline, inner, read, |piece| {
                if let DigestState::On(sha) = digest {
                    sha.update(piece);
                }
            });
            let next = fed.and_then(|()| feeder.next(pipeline));
            match next {
                Ok(Some(batch)) => {
                    *current = Some(batch);
                    *pos = 0;
                }
                Ok(None) => {
                    self.eof = true;
                    return Ok(0);
                }
                Err(Failure::Inner(e)) => return Err(e),
                Err(Failure::Cipher(e)) => return Err(self.fail(e)),
                Err(Failure::Busy) => return Err(busy()),
            }
        }
    }

    /// End of stream on the inline engine. Without waiting, the MAC's worker must have
    /// hashed everything first, so that `finalize` does not wait for it either.
    fn end_inline(&mut self) -> io::Result<usize> {
        if self.slot.is_some()
            && let Engine::Inline { mac, .. } = &mut self.engine
        {
            match mac.flushed() {
                Ok(true) => {}
                Ok(false) => return Err(busy()),
                Err(e) => return Err(self.fail(e)),
            }
        }
        self.eof = true;
        Ok(0)
    }

    /// Records a mid-stream failure (sticky) and returns it as an I/O error.
    fn fail(&mut self, e: Error) -> io::Error {
        let replay = e.replay();
        self.failed = Some(e);
        replay.into()
    }

    /// Copies buffered ciphertext to `out`.
    fn drain(&mut self, out: &mut [u8]) -> usize {
        let ready = self.buf.get(self.pos..self.end).unwrap_or_default();
        let n = ready.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), ready.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        n
    }
}

impl<R: Read> fmt::Debug for EncryptReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptReader")
            .field("bytes_read", &self.read)
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}
