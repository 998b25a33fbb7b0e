//! Encrypting, decrypting and inspecting one layer.

use std::collections::HashMap;
use std::io::{self, Read};
use std::str::FromStr;

use ocicrypt_blockcipher::{DecryptReader, EncryptReader};
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig};
use ocicrypt_spec::annotations::{self, PUBOPTS};
use ocicrypt_spec::options::{PrivateOptions, PublicOptions};
use serde::Serialize;

use crate::{
    Annotations, Descriptor, Error, Ocicrypt, Registry, annotations_of, encrypted_annotations,
};

/// SHA-256 of nothing: the placeholder digest of a stream's base descriptor (the real one
/// is computed while the stream is read).
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What [`Ocicrypt::encrypt_layer`] returns.
#[derive(Debug)]
// `Stream` is the common case and is moved once; boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Encrypted<R: Read> {
    /// The layer was plain: read the ciphertext from this encryptor, then call
    /// [`LayerEncryptor::finalize`] for the annotations.
    Stream(LayerEncryptor<R>),
    /// The layer was already encrypted: its data stays as it is (same digest and size);
    /// these annotations, with the new recipients added, replace its encryption
    /// annotations. (Go returns a `nil` reader in this case.)
    RecipientsAdded(Annotations),
}

/// A plain layer being encrypted: a reader of ciphertext.
///
/// Read it to the end, then call [`LayerEncryptor::finalize`], which wraps the layer key
/// for every recipient and returns the annotations for the encrypted layer's descriptor.
#[derive(Debug)]
pub struct LayerEncryptor<R: Read> {
    reader: EncryptReader<R>,
    registry: Registry,
    ec: EncryptConfig,
    /// The descriptor's digest, stored in the private options.
    digest: Option<String>,
    /// Whether to check the data read against `digest`.
    verify: bool,
    /// The plain layer's descriptor (for [`LayerEncryptor::finalize_descriptor`]).
    base: Descriptor,
}

impl<R: Read> LayerEncryptor<LayerDecryptor<R>> {
    /// For a rotation ([`Ocicrypt::rotate_layer`]): whether the decrypting reader inside
    /// and the encrypting one may each run on a helper thread (off by default). Call
    /// before reading.
    #[must_use]
    pub fn parallel_both(mut self, on: bool) -> Self {
        self.reader.get_mut().reader.set_parallel(on);
        self.parallel(on)
    }
}

/// A layer being decrypted: a reader of plaintext.
///
/// **Bytes returned before the end of the stream are not yet authenticated.** The read
/// that reaches the end checks the HMAC of the ciphertext and the digest of the plaintext
/// and fails if either is wrong; the last
/// [`HOLD_BACK`](ocicrypt_blockcipher::HOLD_BACK) bytes are released only after both
/// checks passed. Do not act on the data (unpack it, write it where others see it) before
/// the final read succeeded.
#[derive(Debug)]
pub struct LayerDecryptor<R: Read> {
    reader: DecryptReader<R>,
    digest: String,
    /// The encrypted layer's descriptor (for [`LayerDecryptor::descriptor`]).
    base: Descriptor,
}

impl Ocicrypt {
    /// Encrypts a layer for the recipients in `ec`, with Go ocicrypt's semantics.
    ///
    /// If `desc` is a plain layer, returns [`Encrypted::Stream`]. The plaintext read is
    /// checked against `desc`'s digest (when it is a SHA-256 digest) at
    /// [`LayerEncryptor::finalize`], so that a layer is never encrypted under a digest its
    /// data does not have; see [`LayerEncryptor::trust_descriptor_digest`].
    ///
    /// If `desc` is already encrypted (see [`crate::descriptor::is_encrypted`]), the layer
    /// key is unwrapped with `ec.decrypt`, wrapped for the new recipients and appended to the
    /// existing annotations: [`Encrypted::RecipientsAdded`]. `reader` is not read.
    ///
    /// # Errors
    /// [`Error::NoRecipients`] if `ec` names none, [`Error::SchemeNotAvailable`] if it
    /// names recipients of a scheme not in the registry,
    /// [`Error::InconsistentEncryption`] if media type and annotations disagree; when adding
    /// recipients, the errors of [`Ocicrypt::decrypt_layer`].
    pub fn encrypt_layer<R: Read>(
        &self,
        ec: &EncryptConfig,
        reader: R,
        desc: &Descriptor,
    ) -> Result<Encrypted<R>, Error> {
        if crate::descriptor::is_encrypted(desc)? {
            return self
                .add_recipients(ec, &annotations_of(desc))
                .map(Encrypted::RecipientsAdded);
        }
        let mut enc = self.encrypt_stream(ec, reader)?;
        enc.base = desc.clone();
        enc.digest = Some(desc.digest().to_string());
        enc.verify = desc.digest().algorithm().as_ref() == "sha256";
        enc.reader = enc.reader.compute_plaintext_digest(enc.verify);
        Ok(Encrypted::Stream(enc))
    }

    /// Encrypts a plain stream whose digest is not known beforehand: its SHA-256 is
    /// computed while it is read and stored in the private options. Its media type is taken
    /// to be `application/vnd.oci.image.layer.v1.tar+gzip` unless set with
    /// [`LayerEncryptor::media_type`].
    ///
    /// # Errors
    /// [`Error::NoRecipients`], [`Error::SchemeNotAvailable`], or a failure to create the
    /// layer key.
    pub fn encrypt_stream<R: Read>(
        &self,
        ec: &EncryptConfig,
        reader: R,
    ) -> Result<LayerEncryptor<R>, Error> {
        self.check_recipients(ec)?;
        Ok(LayerEncryptor {
            reader: EncryptReader::new(reader)?.compute_plaintext_digest(true),
            registry: self.registry.clone(),
            ec: ec.clone(),
            digest: None,
            verify: false,
            base: Descriptor::new(
                oci_spec::image::MediaType::ImageLayerGzip,
                0,
                oci_spec::image::Sha256Digest::from_str(EMPTY_SHA256)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            ),
        })
    }

    pub(crate) fn check_recipients(&self, ec: &EncryptConfig) -> Result<(), Error> {
        if let Some(scheme) = self
            .registry
            .unavailable_recipient_schemes(ec)
            .into_iter()
            .next()
        {
            return Err(Error::SchemeNotAvailable { scheme });
        }
        if !self.registry.wrappers().any(|w| w.has_recipients(ec)) {
            return Err(Error::NoRecipients);
        }
        Ok(())
    }

    /// Adds the recipients in `ec` to an encrypted layer with these annotations, without
    /// touching its data. The layer key is unwrapped with `ec.decrypt`. Returns the new
    /// encryption annotations (existing wrapped keys are kept; new ones are appended).
    ///
    /// # Errors
    /// As [`Ocicrypt::decrypt_layer`] for the unwrapping, then as
    /// [`LayerEncryptor::finalize`] for the wrapping.
    pub fn add_recipients(
        &self,
        ec: &EncryptConfig,
        annotations: &HashMap<String, String>,
    ) -> Result<Annotations, Error> {
        self.check_recipients(ec)?;
        let private = self.unwrap_private(&ec.decrypt, annotations)?;
        let pubopts = annotations.get(PUBOPTS).cloned().unwrap_or_default();
        let mut out: Annotations = annotations
            .iter()
            .filter(|(k, _)| annotations::is_encryption_annotation(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.insert(PUBOPTS.to_owned(), pubopts);
        let wrapped = wrap_all(&self.registry, ec, &private)?;
        for (key, blob) in wrapped {
            let value = annotations::append_blob(out.get(&key).map(String::as_str), &blob);
            out.insert(key, value);
        }
        Ok(out)
    }

    /// Replaces the recipients of an encrypted layer: its layer key is unwrapped with
    /// `ec.decrypt` and wrapped for exactly the recipients of `ec`. Every earlier wrapped-key
    /// annotation is dropped, so old recipients lose access; `pubopts` and the data stay as
    /// they are (same digest). Returns the new encryption annotations; see
    /// [`crate::descriptor::rewrapped`] for the descriptor. Go ocicrypt can only add
    /// recipients.
    ///
    /// # Errors
    /// [`Error::NotEncrypted`] or [`Error::InconsistentEncryption`] for a layer that is not
    /// (clearly) encrypted; then as [`Ocicrypt::add_recipients`].
    pub fn rewrap(&self, ec: &EncryptConfig, desc: &Descriptor) -> Result<Annotations, Error> {
        let ann = encrypted_annotations(desc)?;
        self.check_recipients(ec)?;
        let private = self.unwrap_private(&ec.decrypt, &ann)?;
        let mut out = Annotations::new();
        if let Some(pubopts) = ann.get(PUBOPTS) {
            out.insert(PUBOPTS.to_owned(), pubopts.clone());
        }
        for (key, blob) in wrap_all(&self.registry, ec, &private)? {
            out.insert(key, annotations::encode_blob(&blob));
        }
        Ok(out)
    }

    /// Re-encrypts an encrypted layer under a fresh layer key and nonce, for exactly the
    /// recipients of `ec`, in one streaming pass: `reader` (the old ciphertext) is decrypted
    /// with `ec.decrypt` and encrypted again as the returned encryptor is read. No plaintext
    /// leaves this pipeline; the old HMAC and the plaintext digest are checked at the end of
    /// the stream, before [`LayerEncryptor::finalize_descriptor`] gives the new blob's
    /// descriptor (so a tampered layer never yields a new, valid-looking one).
    ///
    /// # Errors
    /// As [`Ocicrypt::rewrap`] and [`Ocicrypt::decrypt_layer`].
    pub fn rotate_layer<R: Read>(
        &self,
        ec: &EncryptConfig,
        reader: R,
        desc: &Descriptor,
    ) -> Result<LayerEncryptor<LayerDecryptor<R>>, Error> {
        self.check_recipients(ec)?;
        let dec = self.decrypt_layer(&ec.decrypt, reader, desc)?;
        let recorded = dec.digest().parse::<oci_spec::image::Digest>().ok();
        let mut enc = self.encrypt_stream(ec, dec)?;
        if let Some(digest) = recorded {
            // The decrypting reader checks the plaintext against this digest at the end
            // of the stream: hashing it again here would be wasted work.
            enc.base = crate::descriptor::decrypted(desc, digest.clone(), desc.size());
            enc.digest = Some(digest.to_string());
            enc.verify = false;
            enc.reader = enc.reader.compute_plaintext_digest(false);
        } else {
            // No digest recorded (Go allows that): the plaintext's is computed as it passes.
            let placeholder = enc.base.digest().clone();
            enc.base = crate::descriptor::decrypted(desc, placeholder, desc.size());
        }
        Ok(enc)
    }

    /// Decrypts a layer with the keys in `dc`.
    ///
    /// The layer key is unwrapped now (schemes tried in registry order, each wrapped key
    /// of a scheme in annotation order, first success wins); the data is decrypted as the
    /// returned reader is read, and authenticated at its end (see [`LayerDecryptor`]).
    ///
    /// # Errors
    /// [`Error::NotEncrypted`], [`Error::InconsistentEncryption`] (media type and
    /// annotations disagree), [`Error::MissingPrivateKey`] (no key for any of the layer's
    /// schemes), [`Error::NoKeyUnwrapped`] (keys given, none fit), a password error, or a
    /// malformed annotation.
    pub fn decrypt_layer<R: Read>(
        &self,
        dc: &DecryptConfig,
        reader: R,
        desc: &Descriptor,
    ) -> Result<LayerDecryptor<R>, Error> {
        let ann = encrypted_annotations(desc)?;
        let (public, private) = self.unwrap_options_from(dc, &ann)?;
        let reader = DecryptReader::new(reader, &public, &private)?;
        Ok(LayerDecryptor {
            reader,
            digest: private.digest.clone(),
            base: desc.clone(),
        })
    }

    /// Only unwraps the layer key: "can these keys decrypt this layer?" (Go's
    /// `unwrapOnly`). Returns the public and private options.
    ///
    /// # Errors
    /// As [`Ocicrypt::decrypt_layer`].
    pub fn unwrap_options(
        &self,
        dc: &DecryptConfig,
        desc: &Descriptor,
    ) -> Result<(PublicOptions, PrivateOptions), Error> {
        self.unwrap_options_from(dc, &annotations_of(desc))
    }

    pub(crate) fn unwrap_options_from(
        &self,
        dc: &DecryptConfig,
        ann: &HashMap<String, String>,
    ) -> Result<(PublicOptions, PrivateOptions), Error> {
        let private = self.unwrap_private(dc, ann)?;
        let public = match ann.get(PUBOPTS) {
            Some(v) => PublicOptions::from_annotation(v)?,
            None => PublicOptions::default(),
        };
        Ok((public, private))
    }

    fn unwrap_private(
        &self,
        dc: &DecryptConfig,
        ann: &HashMap<String, String>,
    ) -> Result<PrivateOptions, Error> {
        let present: Vec<_> = self
            .registry
            .wrappers()
            .filter_map(|w| {
                let key = w.annotation_key();
                let value = ann.get(&key).filter(|v| !v.is_empty())?;
                Some((w, key, value))
            })
            .collect();
        if present.is_empty() {
            let mut unknown: Vec<_> = ann
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .filter_map(|(k, _)| annotations::scheme_of(k))
                .collect();
            unknown.sort_unstable();
            return Err(match unknown.first() {
                Some(scheme) => Error::SchemeNotAvailable {
                    scheme: (*scheme).to_owned(),
                },
                None => Error::NotEncrypted,
            });
        }
        let mut tried = false;
        let mut causes = Vec::new();
        let mut password_error = None;
        for (wrapper, key, value) in &present {
            if !wrapper.has_possible_keys(dc) {
                continue;
            }
            tried = true;
            let blobs = annotations::split_blobs(key, value)?;
            match wrapper.unwrap_first(dc, &blobs) {
                Ok(json) => return Ok(PrivateOptions::from_json(json.expose())?),
                Err(errors) => {
                    for e in errors {
                        match e {
                            // A blob past a limit is an attack or a broken image: stop here
                            // rather than spend the work on the rest.
                            ocicrypt_keywrap::Error::LimitExceeded { .. } => {
                                return Err(e.into());
                            }
                            e if e.is_password_error() => {
                                password_error.get_or_insert(e);
                            }
                            e => causes.push(e),
                        }
                    }
                }
            }
        }
        if let Some(e) = password_error {
            return Err(e.into());
        }
        if !tried {
            if let Some(scheme) = self.registry.unavailable_key_schemes(dc).into_iter().next() {
                return Err(Error::SchemeNotAvailable { scheme });
            }
            return Err(Error::MissingPrivateKey {
                schemes: present
                    .iter()
                    .map(|(w, ..)| w.scheme().to_owned())
                    .collect(),
            });
        }
        Err(Error::NoKeyUnwrapped { causes })
    }

    /// Describes a layer's encryption: cipher, schemes and recipients. Needs no keys.
    ///
    /// # Errors
    /// A malformed annotation, or a wrapped key its scheme cannot parse.
    pub fn inspect(&self, desc: &Descriptor) -> Result<LayerInfo, Error> {
        let ann = annotations_of(desc);
        let cipher = match ann.get(PUBOPTS) {
            Some(v) => Some(PublicOptions::from_annotation(v)?.cipher),
            None => None,
        };
        let mut schemes = Vec::new();
        let mut keys: Vec<_> = ann
            .iter()
            .filter_map(|(k, v)| Some((annotations::scheme_of(k)?, k, v)))
            .collect();
        keys.sort_unstable();
        for (scheme, key, value) in keys {
            let blobs = annotations::split_blobs(key, value)?;
            let wrapper = self.registry.get(scheme);
            let mut recipients = Vec::new();
            let mut key_ids = Vec::new();
            if let Some(w) = wrapper {
                for blob in &blobs {
                    recipients.extend(w.recipients(blob)?);
                    key_ids.extend(w.key_ids(blob)?.into_iter().map(|id| format!("{id:016x}")));
                }
            }
            schemes.push(SchemeInfo {
                scheme: scheme.to_owned(),
                annotation: key.clone(),
                supported: wrapper.is_some(),
                wrapped_keys: blobs.len(),
                recipients,
                key_ids,
            });
        }
        Ok(LayerInfo {
            encrypted: !schemes.is_empty(),
            cipher,
            schemes,
        })
    }
}

/// Wraps the private options with every registered scheme that has recipients in `ec`.
/// Returns (annotation key, blob) pairs in registry order.
pub(crate) fn wrap_all(
    registry: &Registry,
    ec: &EncryptConfig,
    private: &PrivateOptions,
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let json = private.to_json();
    let mut out = Vec::new();
    for w in registry.wrappers().filter(|w| w.has_recipients(ec)) {
        if let Some(blob) = w.wrap_keys(ec, json.expose())? {
            out.push((w.annotation_key(), blob));
        }
    }
    if out.is_empty() {
        return Err(Error::NoWrappedKeys);
    }
    Ok(out)
}

impl<R: Read> LayerEncryptor<R> {
    /// Does not compute the plaintext's digest, and stores the descriptor's digest
    /// unchecked (as Go does). Faster, but a wrong descriptor then yields a layer that
    /// fails its digest check when decrypted. Call before reading.
    #[must_use]
    pub fn trust_descriptor_digest(mut self) -> Self {
        if self.digest.is_some() {
            self.verify = false;
            self.reader = self.reader.compute_plaintext_digest(false);
        }
        self
    }

    /// Whether the HMAC (and, with the plaintext digest, the cipher) may run on a helper
    /// thread (off by default: the library starts no thread unless asked; see
    /// [`EncryptReader::parallel`]). Turn it on when a CPU is free, not when as many layers
    /// as there are CPUs are encrypted at once. Call before reading.
    #[must_use]
    pub fn parallel(mut self, on: bool) -> Self {
        self.reader = self.reader.parallel(on);
        self
    }

    /// Plaintext bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.reader.bytes_read()
    }

    /// After the ciphertext was read to its end: wraps the layer key for every recipient
    /// and returns the encryption annotations (`pubopts` and one `keys.<scheme>` per scheme
    /// with recipients) to merge into the encrypted layer's descriptor.
    ///
    /// # Errors
    /// The stream was not read to its end, the data does not match the descriptor's
    /// digest ([`Error::DigestMismatch`]), or a scheme failed to wrap.
    pub fn finalize(self) -> Result<Annotations, Error> {
        let mut done = self.reader.finalize()?;
        if let Some(expected) = self.digest {
            if self.verify && done.private.digest != expected {
                return Err(Error::DigestMismatch {
                    expected,
                    actual: done.private.digest,
                });
            }
            done.private.digest = expected;
        }
        let mut out = Annotations::new();
        for (key, blob) in wrap_all(&self.registry, &self.ec, &done.private)? {
            out.insert(key, annotations::encode_blob(&blob));
        }
        out.insert(PUBOPTS.to_owned(), done.public.to_annotation());
        Ok(out)
    }
}

impl<R: Read> LayerEncryptor<R> {
    /// The plain media type of a stream from [`Ocicrypt::encrypt_stream`] (the encrypted
    /// descriptor gets it with `+encrypted`). Ignored for [`Ocicrypt::encrypt_layer`], which
    /// takes it from the descriptor.
    #[must_use]
    pub fn media_type(mut self, media_type: oci_spec::image::MediaType) -> Self {
        if self.digest.is_none() {
            self.base.set_media_type(media_type);
        }
        self
    }

    /// Like [`LayerEncryptor::finalize`], and returns the encrypted blob's descriptor
    /// instead of the annotations: given the `digest` and `size` of the ciphertext the
    /// caller read (and stored), it is the plain descriptor with the `+encrypted` media type,
    /// that digest and size, and the encryption annotations (see [`crate::descriptor`]).
    ///
    /// # Errors
    /// As [`LayerEncryptor::finalize`].
    pub fn finalize_descriptor(
        self,
        digest: oci_spec::image::Digest,
        size: u64,
    ) -> Result<Descriptor, Error> {
        let base = self.base.clone();
        let annotations = self.finalize()?;
        Ok(crate::descriptor::encrypted(
            &base,
            &annotations,
            digest,
            size,
        ))
    }
}

impl<R: Read> Read for LayerEncryptor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl<R: Read> LayerDecryptor<R> {
    /// The plaintext digest recorded by the encrypting side (Go's return value; may be
    /// empty). It is checked against the data at the end of the stream.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// After a successful final read: the plaintext digest as computed from the data.
    pub fn verified_digest(&self) -> Option<&str> {
        self.reader.verified_digest()
    }

    /// Whether the HMAC and the cipher may run on a helper thread while the reading thread
    /// hashes the plaintext (off by default: the library starts no thread unless asked; see
    /// [`DecryptReader::parallel`]). Call before reading.
    #[must_use]
    pub fn parallel(mut self, on: bool) -> Self {
        self.reader = self.reader.parallel(on);
        self
    }

    /// Ciphertext bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.reader.bytes_read()
    }

    /// After a successful final read: the decrypted blob's descriptor (the plain media
    /// type, the verified plaintext digest and its size, the encryption annotations removed;
    /// see [`crate::descriptor`]). `None` before the stream was read to a clean end.
    pub fn descriptor(&self) -> Option<Descriptor> {
        let digest = self.reader.verified_digest()?.parse().ok()?;
        // AES-CTR: the plaintext is exactly as long as the ciphertext.
        Some(crate::descriptor::decrypted(
            &self.base,
            digest,
            self.reader.bytes_read(),
        ))
    }
}

impl<R: Read> Read for LayerDecryptor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// What [`Ocicrypt::inspect`] found.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LayerInfo {
    /// Whether the layer has any wrapped-key annotation.
    pub encrypted: bool,
    /// The layer cipher from the public options, if present.
    pub cipher: Option<String>,
    /// One entry per wrapped-key annotation, sorted by scheme.
    pub schemes: Vec<SchemeInfo>,
}

/// One scheme's wrapped keys in a layer.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SchemeInfo {
    /// The scheme (`jwe`, `pgp`, `provider.kms`, ...).
    pub scheme: String,
    /// The annotation key.
    pub annotation: String,
    /// Whether this build and registry can decrypt this scheme.
    pub supported: bool,
    /// How many wrapped-key blobs the annotation holds (one per encryption or
    /// added-recipients call).
    pub wrapped_keys: usize,
    /// Recipients as the scheme describes them (empty if unsupported).
    pub recipients: Vec<String>,
    /// Key ids (hex), for schemes that name them.
    pub key_ids: Vec<String>,
}
