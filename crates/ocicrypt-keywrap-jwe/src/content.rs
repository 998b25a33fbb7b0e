//! Content decryption (`enc`) for the six algorithms Go ocicrypt accepts.
//!
//! AES-GCM is josekit's (OpenSSL's). For AES-CBC-HMAC-SHA2 (RFC 7518 §5.2) this module
//! checks the tag with OpenSSL's HMAC and a constant-time comparison *before* decrypting,
//! because josekit decrypts first and compares tags with `!=`. Lengths of the IV and tag
//! are checked up front: OpenSSL panics on a missing IV.

use josekit::jwe::JweContentEncryption;
use josekit::jwe::enc::{A128CBC_HS256, A128GCM, A192CBC_HS384, A192GCM, A256CBC_HS512, A256GCM};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::symm::{self, Cipher};
use zeroize::Zeroizing;

use crate::Failure;

/// A content encryption algorithm (`enc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContentEnc {
    A128Gcm,
    A192Gcm,
    A256Gcm,
    A128CbcHs256,
    A192CbcHs384,
    A256CbcHs512,
}

impl ContentEnc {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "A128GCM" => Self::A128Gcm,
            "A192GCM" => Self::A192Gcm,
            "A256GCM" => Self::A256Gcm,
            "A128CBC-HS256" => Self::A128CbcHs256,
            "A192CBC-HS384" => Self::A192CbcHs384,
            "A256CBC-HS512" => Self::A256CbcHs512,
            _ => return None,
        })
    }

    /// josekit's implementation (used for GCM, and handed to key decrypters).
    pub(crate) fn josekit(self) -> &'static dyn JweContentEncryption {
        match self {
            Self::A128Gcm => &A128GCM,
            Self::A192Gcm => &A192GCM,
            Self::A256Gcm => &A256GCM,
            Self::A128CbcHs256 => &A128CBC_HS256,
            Self::A192CbcHs384 => &A192CBC_HS384,
            Self::A256CbcHs512 => &A256CBC_HS512,
        }
    }

    /// The content key length in bytes.
    pub(crate) fn key_len(self) -> usize {
        self.josekit().key_len()
    }

    pub(crate) fn iv_len(self) -> usize {
        self.josekit().iv_len()
    }

    pub(crate) fn tag_len(self) -> usize {
        match self {
            Self::A128Gcm | Self::A192Gcm | Self::A256Gcm => 16,
            Self::A128CbcHs256 => 16,
            Self::A192CbcHs384 => 24,
            Self::A256CbcHs512 => 32,
        }
    }

    /// Authenticates and decrypts. The caller has checked the IV and tag lengths; they are
    /// checked again here.
    pub(crate) fn decrypt(
        self,
        key: &[u8],
        iv: &[u8],
        ciphertext: &[u8],
        aad: &[u8],
        tag: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        if key.len() != self.key_len() || iv.len() != self.iv_len() || tag.len() != self.tag_len() {
            return Err(Failure::new("content key, IV or tag has the wrong length"));
        }
        let (md, cipher) = match self {
            Self::A128Gcm | Self::A192Gcm | Self::A256Gcm => {
                return self
                    .josekit()
                    .decrypt(key, Some(iv), ciphertext, aad, Some(tag))
                    .map(Zeroizing::new)
                    .map_err(|_| Failure::new("content authentication failed"));
            }
            Self::A128CbcHs256 => (MessageDigest::sha256(), Cipher::aes_128_cbc()),
            Self::A192CbcHs384 => (MessageDigest::sha384(), Cipher::aes_192_cbc()),
            Self::A256CbcHs512 => (MessageDigest::sha512(), Cipher::aes_256_cbc()),
        };
        let (mac_key, enc_key) = key.split_at(key.len() / 2);
        let aad_bits = u64::try_from(aad.len())
            .ok()
            .and_then(|n| n.checked_mul(8))
            .ok_or_else(|| Failure::new("AAD too long"))?
            .to_be_bytes();
        let mac = (|| {
            let pkey = PKey::hmac(mac_key)?;
            let mut signer = Signer::new(md, &pkey)?;
            signer.update(aad)?;
            signer.update(iv)?;
            signer.update(ciphertext)?;
            signer.update(&aad_bits)?;
            signer.sign_to_vec()
        })()
        .map_err(|e| Failure::with_source("computing the content HMAC", e))?;
        let expected = mac
            .get(..self.tag_len())
            .ok_or_else(|| Failure::new("HMAC shorter than the tag"))?;
        if !openssl::memcmp::eq(expected, tag) {
            return Err(Failure::new("content authentication failed"));
        }
        symm::decrypt(cipher, enc_key, Some(iv), ciphertext)
            .map(Zeroizing::new)
            .map_err(|e| Failure::with_source("content decryption failed", e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use josekit::util::random_bytes;

    /// The six names `ContentEnc::from_name` accepts (the crate's tests read them too).
    pub(crate) const ALL: [&str; 6] = [
        "A128GCM",
        "A192GCM",
        "A256GCM",
        "A128CBC-HS256",
        "A192CBC-HS384",
        "A256CBC-HS512",
    ];

    #[test]
    fn decrypts_what_josekit_encrypts_and_rejects_tampering() {
        for name in ALL {
            let enc = ContentEnc::from_name(name).unwrap();
            assert_eq!(enc.josekit().name(), name);
            let key = random_bytes(enc.key_len());
            let iv = random_bytes(enc.iv_len());
            let (ct, tag) = enc
                .josekit()
                .encrypt(&key, Some(&iv), b"secret options", b"aad")
                .unwrap();
            let tag = tag.unwrap();
            assert_eq!(tag.len(), enc.tag_len(), "{name}");
            let pt = enc.decrypt(&key, &iv, &ct, b"aad", &tag).unwrap();
            assert_eq!(&pt[..], b"secret options");

            let mut bad_tag = tag.clone();
            bad_tag[0] ^= 1;
            let mut bad_ct = ct.clone();
            bad_ct[0] ^= 1;
            for (c, a, t) in [
                (&ct, &b"aad"[..], &bad_tag),
                (&bad_ct, &b"aad"[..], &tag),
                (&ct, &b"aaX"[..], &tag),
            ] {
                let err = enc.decrypt(&key, &iv, c, a, t).unwrap_err();
                assert!(err.reason().contains("authentication failed"), "{name}");
            }
            let err = enc.decrypt(&key, &iv, &ct, b"aad", &tag[1..]).unwrap_err();
            assert!(err.reason().contains("wrong length"));
            let err = enc.decrypt(&key, &iv[1..], &ct, b"aad", &tag).unwrap_err();
            assert!(err.reason().contains("wrong length"));
            let err = enc.decrypt(&key[1..], &iv, &ct, b"aad", &tag).unwrap_err();
            assert!(err.reason().contains("wrong length"));
        }
        assert!(ContentEnc::from_name("A256CBC").is_none());
    }
}
