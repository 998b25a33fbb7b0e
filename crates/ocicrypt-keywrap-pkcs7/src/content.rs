//! Content encryption: AES-GCM (Go's and RFC 5084's parameter encodings) and AES-CBC
//! (read with any key size, written as AES-256-CBC by the standard variant).

use const_oid::db::rfc5911::{
    ID_AES_128_CBC, ID_AES_128_GCM, ID_AES_192_CBC, ID_AES_192_GCM, ID_AES_256_CBC, ID_AES_256_GCM,
};
use der::asn1::OctetString;
use der::{Decode, Encode};
use ocicrypt_keywrap::{Error, SecretBytes};
use openssl::rand::rand_bytes;
use openssl::symm::{self, Cipher};
use zeroize::Zeroizing;

use crate::asn1::{AlgorithmId, GcmParameters, GoGcmParameters, RawTlv};
use crate::{GcmEncoding, SCHEME, backend, malformed};

/// The primitive universal tag 16 Go writes around its GCM parameters.
const GO_GCM_PARAMETERS_TAG: u8 = 0x10;
/// SEQUENCE, as RFC 5084 `GCMParameters` are tagged.
const SEQUENCE_TAG: u8 = 0x30;
/// OCTET STRING, the CBC IV parameter.
const OCTET_STRING_TAG: u8 = 0x04;

/// Content key size written (AES-128, as Go).
const WRITE_KEY_LEN: usize = 16;
/// Content key size of the standard variant (AES-256-CBC).
const WRITE_CBC_KEY_LEN: usize = 32;
/// AES-CBC IV size.
const CBC_IV_LEN: usize = 16;
/// GCM nonce size written (as Go).
const WRITE_NONCE_LEN: usize = 12;
/// GCM tag size written (as Go).
const WRITE_TAG_LEN: usize = 16;

/// A content-encryption algorithm with its parameters (and, when writing, its key).
pub(crate) struct ContentCipher {
    mode: Mode,
    cipher: Cipher,
    key_len: usize,
    key: Zeroizing<Vec<u8>>,
}

enum Mode {
    Gcm { nonce: Vec<u8>, tag_len: usize },
    Cbc { iv: Vec<u8> },
}

impl ContentCipher {
    /// AES-128-GCM with a fresh random key and nonce.
    pub(crate) fn aes128_gcm_random() -> Result<Self, Error> {
        let mut key = Zeroizing::new(vec![0; WRITE_KEY_LEN]);
        let mut nonce = vec![0; WRITE_NONCE_LEN];
        rand_bytes(&mut key).map_err(|e| backend("generating the content key", e))?;
        rand_bytes(&mut nonce).map_err(|e| backend("generating the GCM nonce", e))?;
        Ok(Self {
            mode: Mode::Gcm {
                nonce,
                tag_len: WRITE_TAG_LEN,
            },
            cipher: Cipher::aes_128_gcm(),
            key_len: WRITE_KEY_LEN,
            key,
        })
    }

    /// AES-256-CBC with a fresh random key and IV (the standard variant).
    pub(crate) fn aes256_cbc_random() -> Result<Self, Error> {
        let mut key = Zeroizing::new(vec![0; WRITE_CBC_KEY_LEN]);
        let mut iv = vec![0; CBC_IV_LEN];
        rand_bytes(&mut key).map_err(|e| backend("generating the content key", e))?;
        rand_bytes(&mut iv).map_err(|e| backend("generating the CBC IV", e))?;
        Ok(Self {
            mode: Mode::Cbc { iv },
            cipher: Cipher::aes_256_cbc(),
            key_len: WRITE_CBC_KEY_LEN,
            key,
        })
    }

    /// The content key (empty when reading).
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    /// The length of the content key.
    pub(crate) fn key_len(&self) -> usize {
        self.key_len
    }

    /// Checks what can be checked of the encrypted content without a key (its length):
    /// GCM content holds at least the tag, CBC content is whole blocks.
    pub(crate) fn check_content(&self, content: &[u8]) -> Result<(), Error> {
        match &self.mode {
            Mode::Gcm { tag_len, .. } if content.len() < *tag_len => Err(malformed(format!(
                "the encrypted content has {} bytes, less than the {tag_len}-byte GCM tag",
                content.len()
            ))),
            Mode::Cbc { .. } if content.is_empty() || !content.len().is_multiple_of(CBC_IV_LEN) => {
                Err(malformed(format!(
                    "the encrypted content has {} bytes, not a whole number of AES blocks",
                    content.len()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Encrypts with the generated key: GCM ciphertext followed by the tag, or CBC
    /// ciphertext with PKCS#7 padding.
    pub(crate) fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        if self.key.len() != self.key_len {
            return Err(backend(
                "content encryption",
                "no content key was generated",
            ));
        }
        let (nonce, tag_len) = match &self.mode {
            Mode::Gcm { nonce, tag_len } => (nonce, *tag_len),
            Mode::Cbc { iv } => {
                // `symm::encrypt` pads (PKCS#7) by default, as RFC 5652 §6.3 requires.
                return symm::encrypt(self.cipher, &self.key, Some(iv), plaintext)
                    .map_err(|e| backend("AES-CBC encryption of the content", e));
            }
        };
        let mut tag = vec![0; tag_len];
        let mut out = symm::encrypt_aead(
            self.cipher,
            &self.key,
            Some(nonce),
            &[],
            plaintext,
            &mut tag,
        )
        .map_err(|e| backend("AES-GCM encryption of the content", e))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// The DER of the CBC parameters element: the IV as an OCTET STRING (RFC 3565 §4.1).
    pub(crate) fn cbc_parameters_der(&self) -> Result<Vec<u8>, Error> {
        let Mode::Cbc { iv } = &self.mode else {
            return Err(backend("content encryption", "not an AES-CBC cipher"));
        };
        OctetString::new(iv.clone())
            .and_then(|iv| iv.to_der())
            .map_err(|e| backend("encoding the CBC parameters", e))
    }

    /// The DER of the GCM parameters element, in the chosen encoding.
    ///
    /// Go's element is `10 13 30 11 84 0c <nonce> 02 01 10`: the `der` crate encodes the
    /// inner `SEQUENCE { [4] IMPLICIT nonce, INTEGER 16 }`, and [`RawTlv`] wraps it in the
    /// primitive tag 16 that `der` itself cannot express.
    pub(crate) fn gcm_parameters_der(&self, encoding: GcmEncoding) -> Result<Vec<u8>, Error> {
        let Mode::Gcm { nonce, tag_len } = &self.mode else {
            return Err(backend("content encryption", "not an AES-GCM cipher"));
        };
        let encode = || -> der::Result<Vec<u8>> {
            let nonce = OctetString::new(nonce.clone())?;
            let icv_len = u32::try_from(*tag_len).map_err(|_| der::ErrorKind::Overflow)?;
            match encoding {
                GcmEncoding::Go => {
                    let inner = GoGcmParameters { nonce, icv_len }.to_der()?;
                    RawTlv {
                        tag: GO_GCM_PARAMETERS_TAG,
                        value: &inner,
                    }
                    .to_der()
                }
                #[cfg(test)]
                GcmEncoding::Rfc5084 => GcmParameters {
                    nonce,
                    icv_len: Some(icv_len),
                }
                .to_der(),
            }
        };
        encode().map_err(|e| backend("encoding the GCM parameters", e))
    }

    /// The algorithm named by a content-encryption AlgorithmIdentifier.
    pub(crate) fn from_algorithm(alg: &AlgorithmId<'_>) -> Result<Self, Error> {
        let gcm = [
            (ID_AES_128_GCM, Cipher::aes_128_gcm(), 16),
            (ID_AES_192_GCM, Cipher::aes_192_gcm(), 24),
            (ID_AES_256_GCM, Cipher::aes_256_gcm(), 32),
        ];
        let cbc = [
            (ID_AES_128_CBC, Cipher::aes_128_cbc(), 16),
            (ID_AES_192_CBC, Cipher::aes_192_cbc(), 24),
            (ID_AES_256_CBC, Cipher::aes_256_cbc(), 32),
        ];
        if let Some((_, cipher, key_len)) = gcm.into_iter().find(|(o, ..)| *o == alg.oid) {
            let (nonce, tag_len) = gcm_parameters(alg.parameters.as_ref())?;
            return Ok(Self {
                mode: Mode::Gcm { nonce, tag_len },
                cipher,
                key_len,
                key: Zeroizing::new(Vec::new()),
            });
        }
        if let Some((_, cipher, key_len)) = cbc.into_iter().find(|(o, ..)| *o == alg.oid) {
            let iv = match alg.parameters {
                Some(RawTlv {
                    tag: OCTET_STRING_TAG,
                    value,
                }) if value.len() == 16 => value.to_vec(),
                _ => return Err(malformed("AES-CBC parameters are not a 16-byte IV")),
            };
            return Ok(Self {
                mode: Mode::Cbc { iv },
                cipher,
                key_len,
                key: Zeroizing::new(Vec::new()),
            });
        }
        Err(Error::UnsupportedAlgorithm {
            scheme: SCHEME.to_owned(),
            algorithm: format!("content encryption {}", alg.oid),
        })
    }

    /// Decrypts `content` with an unwrapped content key: `None`, with no detail, for any
    /// failure (see [`DECRYPTION_FAILED`](crate::DECRYPTION_FAILED)).
    ///
    /// AES-CBC content is not authenticated: content whose padding happens to be right
    /// decrypts to garbage, and if that were returned, the caller's "not private options"
    /// would tell it apart from a bad padding (a padding oracle). So CBC plaintext must be a
    /// JSON object, as the private options are, or it is the same failure.
    pub(crate) fn decrypt(&self, key: &[u8], content: &[u8]) -> Option<SecretBytes> {
        if key.len() != self.key_len {
            return None;
        }
        match &self.mode {
            Mode::Gcm { nonce, tag_len } => {
                let split = content.len().checked_sub(*tag_len)?;
                let (ciphertext, tag) = content.split_at(split);
                symm::decrypt_aead(self.cipher, key, Some(nonce), &[], ciphertext, tag)
                    .ok()
                    .map(SecretBytes::new)
            }
            Mode::Cbc { iv } => symm::decrypt(self.cipher, key, Some(iv), content)
                .ok()
                .map(SecretBytes::new)
                .filter(|plaintext| is_json_object(plaintext.expose())),
        }
    }
}

/// Whether `data` is one JSON object (and nothing else but whitespace). Nothing is kept:
/// the members are skipped, not copied.
fn is_json_object(data: &[u8]) -> bool {
    data.trim_ascii_start().first() == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok()
}

/// Nonce and tag length from Go's (tag `0x10`) or RFC 5084's (SEQUENCE) GCM parameters.
fn gcm_parameters(params: Option<&RawTlv<'_>>) -> Result<(Vec<u8>, usize), Error> {
    let bad = |e: der::Error| malformed(format!("malformed AES-GCM parameters: {e}"));
    let (nonce, icv_len) = match params {
        Some(tlv) if tlv.tag == GO_GCM_PARAMETERS_TAG => {
            let p = GoGcmParameters::from_der(tlv.value).map_err(bad)?;
            (p.nonce, p.icv_len)
        }
        Some(tlv) if tlv.tag == SEQUENCE_TAG => {
            let p = tlv
                .to_der()
                .and_then(|der| GcmParameters::from_der(&der))
                .map_err(bad)?;
            (p.nonce, p.icv_len.unwrap_or(12))
        }
        _ => {
            return Err(malformed(
                "AES-GCM parameters are missing or of an unknown form",
            ));
        }
    };
    if !(12..=16).contains(&icv_len) {
        return Err(malformed(format!(
            "AES-GCM tag length {icv_len} is not 12 to 16"
        )));
    }
    if nonce.as_bytes().is_empty() {
        return Err(malformed("AES-GCM nonce is empty"));
    }
    let tag_len = usize::try_from(icv_len).map_err(|_| malformed("AES-GCM tag length"))?;
    Ok((nonce.into_bytes(), tag_len))
}
