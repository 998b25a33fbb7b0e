//! One layer, encrypted and decrypted as `tokio` [`AsyncRead`]ers (feature `tokio`).
//!
//! The same semantics as [`Ocicrypt::encrypt_layer`] and [`Ocicrypt::decrypt_layer`]:
//! - Key wrapping and unwrapping can be slow. Key providers run programs or gRPC calls, and
//!   PBKDF2 unlocks keys. So that work runs on tokio's blocking pool
//!   ([`tokio::task::spawn_blocking`]) and never on a runtime thread. That also works on a
//!   current-thread runtime.
//! - The readers do their cipher work inline in `poll_read`, with no helper threads and no
//!   blocking waits.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use ocicrypt_blockcipher::{AsyncDecryptReader, AsyncEncryptReader};
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig};
use ocicrypt_spec::annotations::{self, PUBOPTS};
use tokio::io::{AsyncRead, ReadBuf};

use crate::layer::wrap_all;
use crate::{
    Annotations, Descriptor, Error, Ocicrypt, Registry, annotations_of, encrypted_annotations,
};

/// Encrypts with [`Ocicrypt::default()`]; see [`Ocicrypt::encrypt_layer_async`].
///
/// ```
/// # #[cfg(not(feature = "jwe"))] fn main() {}
/// # #[cfg(feature = "jwe")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::AsyncReadExt as _;
/// # let dir = tempfile::tempdir()?;
/// # let rsa = openssl::rsa::Rsa::generate(2048)?;
/// # let public = dir.path().join("pub.pem");
/// # let private = dir.path().join("key.pem");
/// # std::fs::write(&public, rsa.public_key_to_pem()?)?;
/// # std::fs::write(&private, rsa.private_key_to_pem()?)?;
/// let layer = b"layer data".to_vec();
/// let digest = format!("sha256:{}", hex(&openssl::sha::sha256(&layer)));
/// let desc = ocicrypt::Descriptor::new(
///     oci_spec::image::MediaType::ImageLayerGzip,
///     layer.len() as u64,
///     digest.parse::<oci_spec::image::Digest>()?,
/// );
/// let ec = ocicrypt::helpers::encrypt_config([format!("jwe:{}", public.display())], Vec::<String>::new())?;
/// let dc = ocicrypt::helpers::decrypt_config([private.display().to_string()])?;
/// tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
///     let mut enc = ocicrypt::encrypt_layer_async(&ec, layer.as_slice(), &desc).await?;
///     let mut ciphertext = Vec::new();
///     enc.read_to_end(&mut ciphertext).await?;
///     let encrypted = enc.finalize().await?;
///     let mut dec = ocicrypt::decrypt_layer_async(&dc, ciphertext.as_slice(), &encrypted).await?;
///     let mut plain = Vec::new();
///     dec.read_to_end(&mut plain).await?;
///     assert_eq!(plain, layer);
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })
/// # }
/// # fn hex(b: &[u8]) -> String { b.iter().map(|x| format!("{x:02x}")).collect() }
/// ```
///
/// # Errors
/// As [`Ocicrypt::encrypt_layer_async`].
pub async fn encrypt_layer_async<R: AsyncRead + Unpin>(
    ec: &EncryptConfig,
    reader: R,
    desc: &Descriptor,
) -> Result<AsyncLayerEncryptor<R>, Error> {
    Ocicrypt::default()
        .encrypt_layer_async(ec, reader, desc)
        .await
}

/// Decrypts with [`Ocicrypt::default()`]; see [`Ocicrypt::decrypt_layer_async`].
///
/// # Errors
/// As [`Ocicrypt::decrypt_layer_async`].
pub async fn decrypt_layer_async<R: AsyncRead + Unpin>(
    dc: &DecryptConfig,
    reader: R,
    desc: &Descriptor,
) -> Result<AsyncLayerDecryptor<R>, Error> {
    Ocicrypt::default()
        .decrypt_layer_async(dc, reader, desc)
        .await
}

/// Runs key work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("the key-wrapping task failed: {e}")))?
}

impl Ocicrypt {
    /// Encrypts a layer as it is read, like [`Ocicrypt::encrypt_layer`].
    ///
    /// - A plain `desc`: the returned reader yields the ciphertext. Its
    ///   [`finalize`](AsyncLayerEncryptor::finalize) checks the plaintext against `desc`'s
    ///   digest, wraps the layer key for the recipients, and returns the encrypted blob's
    ///   descriptor.
    /// - An encrypted `desc`: recipients are added (the layer key is unwrapped with
    ///   `ec.decrypt`), and the reader passes the ciphertext through unchanged.
    ///
    /// # Errors
    /// As [`Ocicrypt::encrypt_layer`].
    pub async fn encrypt_layer_async<R: AsyncRead + Unpin>(
        &self,
        ec: &EncryptConfig,
        reader: R,
        desc: &Descriptor,
    ) -> Result<AsyncLayerEncryptor<R>, Error> {
        let inner = if crate::descriptor::is_encrypted(desc)? {
            let (this, ec, ann) = (self.clone(), ec.clone(), annotations_of(desc));
            let annotations = blocking(move || this.add_recipients(&ec, &ann)).await?;
            Inner::Passthrough {
                reader,
                annotations,
            }
        } else {
            self.check_recipients(ec)?;
            let verify = desc.digest().algorithm().as_ref() == "sha256";
            Inner::Stream {
                reader: AsyncEncryptReader::new(reader)?.compute_plaintext_digest(verify),
                verify,
            }
        };
        Ok(AsyncLayerEncryptor {
            inner,
            hasher: openssl::sha::Sha256::new(),
            len: 0,
            base: desc.clone(),
            registry: self.registry().clone(),
            ec: ec.clone(),
        })
    }

    /// Decrypts a layer as it is read, like [`Ocicrypt::decrypt_layer`]. The layer key
    /// is unwrapped first (on the blocking pool). The data is authenticated at the end of
    /// the stream: the read that reaches it fails if the HMAC or the plaintext digest is
    /// wrong.
    ///
    /// # Errors
    /// As [`Ocicrypt::decrypt_layer`].
    pub async fn decrypt_layer_async<R: AsyncRead + Unpin>(
        &self,
        dc: &DecryptConfig,
        reader: R,
        desc: &Descriptor,
    ) -> Result<AsyncLayerDecryptor<R>, Error> {
        let ann = encrypted_annotations(desc)?;
        let (this, dc) = (self.clone(), dc.clone());
        let (public, private) = blocking(move || this.unwrap_options_from(&dc, &ann)).await?;
        Ok(AsyncLayerDecryptor {
            reader: AsyncDecryptReader::new(reader, &public, &private)?,
            base: desc.clone(),
        })
    }
}

// `Stream` is the common case and is moved once; boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Inner<R> {
    Stream {
        reader: AsyncEncryptReader<R>,
        verify: bool,
    },
    Passthrough {
        reader: R,
        annotations: Annotations,
    },
}

/// A layer being encrypted: an [`AsyncRead`] of the blob to store. Read it to the end,
/// then [`finalize`](AsyncLayerEncryptor::finalize) it for the blob's descriptor.
pub struct AsyncLayerEncryptor<R> {
    inner: Inner<R>,
    /// SHA-256 of what was read out: the blob's digest.
    hasher: openssl::sha::Sha256,
    len: u64,
    base: Descriptor,
    registry: Registry,
    ec: EncryptConfig,
}

impl<R> std::fmt::Debug for AsyncLayerEncryptor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncLayerEncryptor")
            .field("layer", self.base.digest())
            .field("bytes_out", &self.len)
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncLayerEncryptor<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.inner {
            Inner::Stream { reader, .. } => Pin::new(reader).poll_read(cx, buf),
            Inner::Passthrough { reader, .. } => Pin::new(reader).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = polled {
            let new = buf.filled().get(before..).unwrap_or_default();
            this.hasher.update(new);
            this.len += new.len() as u64;
        }
        polled
    }
}

impl<R: AsyncRead + Unpin> AsyncLayerEncryptor<R> {
    /// Whether the HMAC and the cipher may run on a helper thread (off by default: the
    /// library starts no thread unless asked; see [`AsyncEncryptReader::parallel`]). Reads
    /// never wait for the helper: when it is behind, they return `Pending` and it wakes
    /// the task. A layer that is encrypted already passes through and has no helper. Call
    /// before reading.
    #[must_use]
    pub fn parallel(mut self, on: bool) -> Self {
        if let Inner::Stream { reader, verify } = self.inner {
            self.inner = Inner::Stream {
                reader: reader.parallel(on),
                verify,
            };
        }
        self
    }

    /// After the reader was read to its end, returns the descriptor of the blob it
    /// yielded. That is the `+encrypted` media type, the blob's digest and size, and the
    /// encryption annotations. For a plain layer, the layer key is wrapped for every
    /// recipient now, on the blocking pool.
    ///
    /// # Errors
    /// As [`LayerEncryptor::finalize`](crate::LayerEncryptor::finalize). For an encrypted
    /// layer, [`Error::DigestMismatch`] when what passed through is not its blob.
    pub async fn finalize(self) -> Result<Descriptor, Error> {
        let digest: oci_spec::image::Digest = format!(
            "sha256:{}",
            self.hasher
                .finish()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
        .parse()
        .map_err(|e| Error::Internal(format!("computed digest: {e}")))?;
        match self.inner {
            Inner::Passthrough { annotations, .. } => {
                if digest != *self.base.digest() || self.len != self.base.size() {
                    return Err(Error::DigestMismatch {
                        expected: self.base.digest().to_string(),
                        actual: digest.to_string(),
                    });
                }
                Ok(crate::descriptor::rewrapped(&self.base, &annotations))
            }
            Inner::Stream { reader, verify } => {
                let mut done = reader.finalize()?;
                let expected = self.base.digest().to_string();
                if verify && done.private.digest != expected {
                    return Err(Error::DigestMismatch {
                        expected,
                        actual: done.private.digest,
                    });
                }
                done.private.digest = expected;
                let pubopts = done.public.to_annotation();
                let (registry, ec, private) = (self.registry, self.ec, done.private);
                let wrapped = blocking(move || wrap_all(&registry, &ec, &private)).await?;
                let mut out = Annotations::new();
                for (key, blob) in wrapped {
                    out.insert(key, annotations::encode_blob(&blob));
                }
                out.insert(PUBOPTS.to_owned(), pubopts);
                Ok(crate::descriptor::encrypted(
                    &self.base, &out, digest, self.len,
                ))
            }
        }
    }
}

/// A layer being decrypted: an [`AsyncRead`] of its plaintext. As with
/// [`LayerDecryptor`](crate::LayerDecryptor), **bytes returned before the end of the
/// stream are not yet authenticated**: act on them only after the final read succeeded.
pub struct AsyncLayerDecryptor<R> {
    reader: AsyncDecryptReader<R>,
    base: Descriptor,
}

impl<R> std::fmt::Debug for AsyncLayerDecryptor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncLayerDecryptor")
            .field("layer", self.base.digest())
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> AsyncLayerDecryptor<R> {
    /// Whether the HMAC and the cipher may run on a helper thread while the task hashes
    /// the plaintext (off by default: the library starts no thread unless asked; see
    /// [`AsyncDecryptReader::parallel`]). Reads never wait for the helper. Call before
    /// reading.
    #[must_use]
    pub fn parallel(mut self, on: bool) -> Self {
        self.reader = self.reader.parallel(on);
        self
    }

    /// After a successful final read, the decrypted blob's descriptor (see
    /// [`crate::descriptor::decrypted`]).
    pub fn descriptor(&self) -> Option<Descriptor> {
        let digest = self.reader.verified_digest()?.parse().ok()?;
        Some(crate::descriptor::decrypted(
            &self.base,
            digest,
            self.reader.bytes_read(),
        ))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncLayerDecryptor<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}
