#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tokio")]
mod asyncio;
mod decrypt;
mod digest;
mod encrypt;
mod error;
mod key;
mod offload;

use std::io::{self, Read};

use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;

#[cfg(feature = "tokio")]
pub use asyncio::{AsyncDecryptReader, AsyncEncryptReader};
pub use decrypt::DecryptReader;
pub use encrypt::{EncryptReader, Finalized};
pub use error::Error;
pub use key::{LayerKey, Nonce};
pub use ocicrypt_spec::options::{PrivateOptions, PublicOptions};

/// The length of a layer key (AES-256, also the HMAC-SHA256 key).
pub const KEY_LEN: usize = 32;
/// The length of the nonce: the initial 128-bit AES-CTR counter block.
pub const NONCE_LEN: usize = 16;
/// The length of the HMAC-SHA256 of the ciphertext.
pub const HMAC_LEN: usize = 32;
/// Bytes of plaintext held back by [`DecryptReader`] until the stream is authenticated
/// (Go holds 10 KiB too).
pub const HOLD_BACK: usize = 10 * 1024;

/// How much ciphertext is read from the inner reader at once (see `benches/throughput.rs`).
const CHUNK: usize = 256 * 1024;
/// How much data passes through digest, cipher and MAC before moving on, so that it stays
/// in the CPU cache between the passes.
const STEP: usize = 32 * 1024;

/// An AES-256-CTR context (encryption and decryption are the same operation).
fn new_ctr(key: &LayerKey, nonce: &Nonce) -> Result<CipherCtx, Error> {
    let mut ctx = CipherCtx::new()?;
    ctx.encrypt_init(
        Some(Cipher::aes_256_ctr()),
        Some(key.expose()),
        Some(nonce.as_bytes()),
    )?;
    Ok(ctx)
}

/// One read from `inner`, retried on [`io::ErrorKind::Interrupted`]. The count is clamped to
/// `buf.len()` so that a misbehaving reader cannot make us release unprocessed bytes.
fn read_retry<R: Read>(inner: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match inner.read(buf) {
            Ok(n) => return Ok(n.min(buf.len())),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_async;
