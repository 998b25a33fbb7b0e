//! The layer key and the nonce.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Error, KEY_LEN, NONCE_LEN};

/// A 32-byte AES-256 layer key (also the HMAC-SHA256 key).
///
/// Wiped on drop; `Debug` prints no key bytes; [`LayerKey::expose`] is the only accessor.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct LayerKey([u8; KEY_LEN]);

impl LayerKey {
    /// A fresh random key from OpenSSL's CSPRNG.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the random number generator fails.
    pub fn generate() -> Result<Self, Error> {
        let mut key = LayerKey([0; KEY_LEN]);
        openssl::rand::rand_bytes(&mut key.0)?;
        Ok(key)
    }

    /// Copies a key.
    ///
    /// # Errors
    /// [`Error::InvalidKeyLength`] unless `b` is exactly [`KEY_LEN`] bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        let mut key = LayerKey([0; KEY_LEN]);
        if b.len() != KEY_LEN {
            return Err(Error::InvalidKeyLength { len: b.len() });
        }
        key.0.copy_from_slice(b);
        Ok(key)
    }

    /// The key bytes. Do not log or format them.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for LayerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LayerKey([REDACTED])")
    }
}

/// A 16-byte AES-CTR initial counter block (Go calls it the nonce or IV).
///
/// The whole block is the counter: it is incremented as one 128-bit big-endian number and
/// wraps from `ff..ff` to `00..00`. Not secret, but it must never repeat under one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    /// A fresh random nonce from OpenSSL's CSPRNG.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the random number generator fails.
    pub fn generate() -> Result<Self, Error> {
        let mut nonce = [0; NONCE_LEN];
        openssl::rand::rand_bytes(&mut nonce)?;
        Ok(Nonce(nonce))
    }

    /// Copies a nonce.
    ///
    /// # Errors
    /// [`Error::InvalidNonceLength`] unless `b` is exactly [`NONCE_LEN`] bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        <[u8; NONCE_LEN]>::try_from(b)
            .map(Nonce)
            .map_err(|_| Error::InvalidNonceLength { len: b.len() })
    }

    /// The nonce bytes.
    pub fn as_bytes(&self) -> &[u8; NONCE_LEN] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lengths() {
        assert!(matches!(
            LayerKey::from_bytes(&[1; 31]),
            Err(Error::InvalidKeyLength { len: 31 })
        ));
        assert!(matches!(
            LayerKey::from_bytes(&[1; 33]),
            Err(Error::InvalidKeyLength { len: 33 })
        ));
        assert_eq!(LayerKey::from_bytes(&[7; 32]).unwrap().expose(), &[7; 32]);
    }

    #[test]
    fn nonce_lengths() {
        assert!(matches!(
            Nonce::from_bytes(&[1; 15]),
            Err(Error::InvalidNonceLength { len: 15 })
        ));
        assert!(matches!(
            Nonce::from_bytes(&[]),
            Err(Error::InvalidNonceLength { len: 0 })
        ));
        assert_eq!(Nonce::from_bytes(&[9; 16]).unwrap().as_bytes(), &[9; 16]);
    }

    #[test]
    fn generated_values_differ() {
        let (a, b) = (LayerKey::generate().unwrap(), LayerKey::generate().unwrap());
        assert_ne!(a.expose(), b.expose());
        assert_ne!(Nonce::generate().unwrap(), Nonce::generate().unwrap());
    }

    #[test]
    fn debug_hides_the_key() {
        let key = LayerKey::from_bytes(&[0xab; 32]).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "LayerKey([REDACTED])");
        assert!(!shown.contains("171") && !shown.contains("AB"), "{shown}");
    }
}
