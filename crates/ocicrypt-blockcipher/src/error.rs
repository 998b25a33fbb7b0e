//! The error type of this crate.

use std::io;

/// What went wrong while setting up, encrypting or decrypting a layer stream.
///
/// Errors from [`Read::read`](std::io::Read::read) arrive as [`io::Error`]s that wrap one of
/// these; [`Error::from_io`] gets it back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ciphertext, the key or the HMAC is wrong: the stream was truncated, extended or
    /// modified, or it was opened with the wrong key or HMAC. Deliberately says no more.
    #[error("layer authentication failed")]
    Authentication,
    /// The stream authenticated, but its plaintext does not have the expected digest (for
    /// example because the nonce is wrong: the format does not authenticate the nonce).
    #[error("layer digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest from the private options.
        expected: String,
        /// The digest of the plaintext that was decrypted.
        actual: String,
    },
    /// A layer key is not 32 bytes long.
    #[error("invalid key length of {len} bytes; need 32 bytes")]
    InvalidKeyLength {
        /// The length that was given.
        len: usize,
    },
    /// A nonce is not 16 bytes long.
    #[error("invalid nonce length of {len} bytes; need 16 bytes")]
    InvalidNonceLength {
        /// The length that was given.
        len: usize,
    },
    /// Neither the public nor the private cipher options carry a `nonce`.
    #[error("nonce not set")]
    MissingNonce,
    /// The public options name no cipher.
    #[error("no cipher type provided")]
    NoCipher,
    /// The public options name a cipher other than `AES_256_CTR_HMAC_SHA256`.
    #[error("unsupported cipher type: {cipher}")]
    UnsupportedCipher {
        /// The cipher that was named.
        cipher: String,
    },
    /// The public options carry no HMAC.
    #[error("HMAC is not provided for decryption process")]
    MissingHmac,
    /// The HMAC in the public options is not 32 bytes long.
    #[error("invalid HMAC length of {len} bytes; need 32 bytes")]
    InvalidHmacLength {
        /// The length that was given.
        len: usize,
    },
    /// The expected plaintext digest is not of the form `<algorithm>:<hex>`.
    #[error("invalid digest {digest:?}")]
    InvalidDigest {
        /// The digest string that was given.
        digest: String,
    },
    /// The expected plaintext digest uses an algorithm other than `sha256` or `sha512`.
    #[error("unsupported digest algorithm {algorithm:?}")]
    UnsupportedDigestAlgorithm {
        /// The algorithm that was named.
        algorithm: String,
    },
    /// [`EncryptReader::finalize`](crate::EncryptReader::finalize) was called before the
    /// reader returned end of stream.
    #[error("Read()ing not complete, unable to finalize")]
    NotFinished,
    /// [`EncryptReader::compute_plaintext_digest`](crate::EncryptReader::compute_plaintext_digest)
    /// was turned on after reading had started, so the digest would not cover the whole
    /// plaintext.
    #[error("plaintext digest requested after reading had started")]
    DigestRequestedLate,
    /// A helper thread computing the HMAC (and perhaps the cipher) died (this should not
    /// happen).
    #[error("layer hash worker thread failed")]
    Worker,
    /// OpenSSL failed (random number generation or the cipher).
    #[error("crypto library error")]
    Crypto(#[source] openssl::error::ErrorStack),
}

impl Error {
    /// The [`Error`] inside an [`io::Error`] returned by this crate's readers, if any.
    ///
    /// Errors of the wrapped inner reader are passed through unchanged and give `None`.
    pub fn from_io(e: &io::Error) -> Option<&Error> {
        e.get_ref()?.downcast_ref::<Error>()
    }

    /// A copy of a stream failure, so that it can be reported again by every later read.
    pub(crate) fn replay(&self) -> Error {
        match self {
            Error::DigestMismatch { expected, actual } => Error::DigestMismatch {
                expected: expected.clone(),
                actual: actual.clone(),
            },
            Error::Crypto(stack) => Error::Crypto(stack.clone()),
            Error::Worker => Error::Worker,
            // Only the variants above are stored as sticky failures; anything else reads
            // as an authentication failure, which is the safe answer.
            _ => Error::Authentication,
        }
    }
}

impl From<openssl::error::ErrorStack> for Error {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Error::Crypto(e)
    }
}

impl From<Error> for io::Error {
    /// Wraps the error; authentication and digest failures and bad input get
    /// [`io::ErrorKind::InvalidData`], usage errors [`io::ErrorKind::InvalidInput`].
    fn from(e: Error) -> Self {
        let kind = match e {
            Error::Crypto(_) | Error::Worker => io::ErrorKind::Other,
            Error::NotFinished | Error::DigestRequestedLate => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}
