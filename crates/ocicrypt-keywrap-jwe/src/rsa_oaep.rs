//! `RSA-OAEP` and `RSA-OAEP-256` with OpenSSL.
//!
//! josekit's own RSA encrypters refuse keys under 2048 bits, but Go ocicrypt (and its test
//! suite) uses 1024-bit keys too, so this crate plugs its own encrypter into josekit's
//! serializers. Key sizes are checked when keys are parsed ([`crate::keys::MIN_RSA_BITS`]).

use std::borrow::Cow;

use josekit::JoseError;
use josekit::jwe::alg::rsaes::RsaesJweAlgorithm;
use josekit::jwe::{JweAlgorithm, JweContentEncryption, JweEncrypter, JweHeader};
use openssl::encrypt::{Decrypter, Encrypter};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Padding;
use zeroize::Zeroizing;

use crate::keys::KeyAlgorithm;

/// The OAEP hash of an RSA algorithm (also used for MGF1). `None` for non-RSA algorithms.
fn digest(alg: KeyAlgorithm) -> Option<MessageDigest> {
    match alg {
        KeyAlgorithm::RsaOaep => Some(MessageDigest::sha1()),
        KeyAlgorithm::RsaOaep256 => Some(MessageDigest::sha256()),
        _ => None,
    }
}

/// A josekit encrypter for one RSA recipient.
#[derive(Clone, Debug)]
pub(crate) struct RsaOaepEncrypter {
    algorithm: RsaesJweAlgorithm,
    alg: KeyAlgorithm,
    key: PKey<Public>,
    key_id: Option<String>,
}

impl RsaOaepEncrypter {
    /// `None` if `alg` is not an RSA algorithm.
    pub(crate) fn new(
        alg: KeyAlgorithm,
        key: PKey<Public>,
        key_id: Option<String>,
    ) -> Option<Self> {
        let algorithm = match alg {
            KeyAlgorithm::RsaOaep => RsaesJweAlgorithm::RsaOaep,
            KeyAlgorithm::RsaOaep256 => RsaesJweAlgorithm::RsaOaep256,
            _ => return None,
        };
        Some(Self {
            algorithm,
            alg,
            key,
            key_id,
        })
    }
}

impl JweEncrypter for RsaOaepEncrypter {
    fn algorithm(&self) -> &dyn JweAlgorithm {
        &self.algorithm
    }

    fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    fn compute_content_encryption_key(
        &self,
        _cencryption: &dyn JweContentEncryption,
        _in_header: &JweHeader,
        _out_header: &mut JweHeader,
    ) -> Result<Option<Cow<'_, [u8]>>, JoseError> {
        // A random content key, made by josekit.
        Ok(None)
    }

    fn encrypt(
        &self,
        key: &[u8],
        _in_header: &JweHeader,
        _out_header: &mut JweHeader,
    ) -> Result<Option<Vec<u8>>, JoseError> {
        let run = || -> Result<Vec<u8>, ErrorStack> {
            let md = digest(self.alg).ok_or_else(ErrorStack::get)?;
            let mut enc = Encrypter::new(&self.key)?;
            enc.set_rsa_padding(Padding::PKCS1_OAEP)?;
            enc.set_rsa_oaep_md(md)?;
            enc.set_rsa_mgf1_md(md)?;
            let mut out = vec![0; enc.encrypt_len(key)?];
            let n = enc.encrypt(key, &mut out)?;
            out.truncate(n);
            Ok(out)
        };
        run()
            .map(Some)
            .map_err(|e| JoseError::InvalidKeyFormat(e.into()))
    }

    fn box_clone(&self) -> Box<dyn JweEncrypter> {
        Box::new(self.clone())
    }
}

/// Decrypts an RSA recipient's encrypted key. `alg` must be an RSA algorithm.
pub(crate) fn decrypt(
    alg: KeyAlgorithm,
    key: &PKey<Private>,
    encrypted_key: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ErrorStack> {
    let md = digest(alg).ok_or_else(ErrorStack::get)?;
    let mut dec = Decrypter::new(key)?;
    dec.set_rsa_padding(Padding::PKCS1_OAEP)?;
    dec.set_rsa_oaep_md(md)?;
    dec.set_rsa_mgf1_md(md)?;
    let mut out = Zeroizing::new(vec![0; dec.decrypt_len(encrypted_key)?]);
    let n = dec.decrypt(encrypted_key, &mut out)?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;

    #[test]
    fn round_trip_and_hash_mismatch() {
        let private = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        let public = PKey::public_key_from_der(&private.public_key_to_der().unwrap()).unwrap();
        let header = JweHeader::new();
        for alg in [KeyAlgorithm::RsaOaep, KeyAlgorithm::RsaOaep256] {
            let enc = RsaOaepEncrypter::new(alg, public.clone(), Some("k".into())).unwrap();
            assert_eq!(enc.key_id(), Some("k"));
            assert_eq!(enc.algorithm().name(), alg.name());
            let ek = enc
                .encrypt(b"0123456789abcdef", &header, &mut JweHeader::new())
                .unwrap()
                .unwrap();
            assert_eq!(ek.len(), 128);
            assert_eq!(
                &decrypt(alg, &private, &ek).unwrap()[..],
                b"0123456789abcdef"
            );
            let other = if alg == KeyAlgorithm::RsaOaep {
                KeyAlgorithm::RsaOaep256
            } else {
                KeyAlgorithm::RsaOaep
            };
            assert!(decrypt(other, &private, &ek).is_err());
        }
        assert!(RsaOaepEncrypter::new(KeyAlgorithm::EcdhEsA256kw, public, None).is_none());
        assert!(decrypt(KeyAlgorithm::EcdhEsA256kw, &private, &[0; 128]).is_err());
    }
}
