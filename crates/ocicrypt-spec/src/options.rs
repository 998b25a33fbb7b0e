//! The public and private layer options (Go's `PublicLayerBlockCipherOptions` and
//! `PrivateLayerBlockCipherOptions`).
//!
//! The public options travel base64-encoded in the [`PUBOPTS`](crate::annotations::PUBOPTS)
//! annotation; the private options are the plaintext that every key-wrap scheme wraps.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::secret::SecretBytes;
use crate::{Error, to_go_json};

/// The only layer cipher the format defines.
pub const AES_256_CTR_HMAC_SHA256: &str = "AES_256_CTR_HMAC_SHA256";

/// The cipher option that carries the 16-byte AES-CTR initial counter block.
pub const NONCE: &str = "nonce";

/// Cipher options: name → bytes, serialized as a JSON object of base64 strings with sorted
/// keys (Go's `map[string][]byte`).
pub type CipherOptions = BTreeMap<String, Vec<u8>>;

/// Options anyone may read: the cipher and the HMAC of the ciphertext.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublicOptions {
    /// The cipher name, normally [`AES_256_CTR_HMAC_SHA256`].
    pub cipher: String,
    /// HMAC-SHA256 of the ciphertext, keyed with the layer key.
    pub hmac: Vec<u8>,
    /// Extra public options (Go writes `{}`; a `nonce` here would be honoured).
    pub cipher_options: CipherOptions,
}

/// Options only recipients may read: the layer key, the plaintext digest and the nonce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrivateOptions {
    /// The 32-byte AES-256 layer key.
    pub symkey: SecretBytes,
    /// The digest of the plaintext layer (`sha256:<hex>`), or empty if the encrypting
    /// side did not know it.
    pub digest: String,
    /// Cipher options; Go stores the [`NONCE`] here.
    pub cipher_options: CipherOptions,
}

impl PublicOptions {
    /// Public options for [`AES_256_CTR_HMAC_SHA256`] with this HMAC and no cipher options.
    pub fn new(hmac: Vec<u8>) -> Self {
        Self {
            cipher: AES_256_CTR_HMAC_SHA256.to_owned(),
            hmac,
            cipher_options: CipherOptions::new(),
        }
    }

    /// The JSON Go writes: `{"cipher":..,"hmac":..,"cipheroptions":{..}}`.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Wire<'a> {
            cipher: &'a str,
            hmac: B64<'a>,
            cipheroptions: B64Map<'a>,
        }
        go_json(&Wire {
            cipher: &self.cipher,
            hmac: B64(&self.hmac),
            cipheroptions: B64Map(&self.cipher_options),
        })
    }

    /// Reads public options JSON leniently (see the crate docs).
    ///
    /// # Errors
    /// [`Error::Json`] if `json` is not a JSON object of the expected shape.
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        const WHAT: &str = "public options";
        let mut obj = Object::parse(WHAT, json)?;
        Ok(Self {
            cipher: obj.take_string("cipher")?.unwrap_or_default(),
            hmac: obj.take_bytes("hmac")?.unwrap_or_default(),
            cipher_options: obj.take_map("cipheroptions")?,
        })
    }

    /// The value of the [`PUBOPTS`](crate::annotations::PUBOPTS) annotation.
    pub fn to_annotation(&self) -> String {
        STANDARD.encode(self.to_json())
    }

    /// Parses the value of the [`PUBOPTS`](crate::annotations::PUBOPTS) annotation.
    ///
    /// # Errors
    /// [`Error::Base64`] or [`Error::Json`].
    pub fn from_annotation(value: &str) -> Result<Self, Error> {
        let json = decode_b64(value.trim()).map_err(|source| Error::Base64 {
            what: format!("annotation {}", crate::annotations::PUBOPTS),
            source,
        })?;
        Self::from_json(&json)
    }
}

impl PrivateOptions {
    /// The JSON Go writes: `{"symkey":..,"digest":..,"cipheroptions":{..}}`.
    ///
    /// This is secret (it contains the layer key), so it comes back as [`SecretBytes`].
    pub fn to_json(&self) -> SecretBytes {
        #[derive(Serialize)]
        struct Wire<'a> {
            symkey: SecretB64<'a>,
            digest: &'a str,
            cipheroptions: B64Map<'a>,
        }
        SecretBytes::new(go_json(&Wire {
            symkey: SecretB64(&self.symkey),
            digest: &self.digest,
            cipheroptions: B64Map(&self.cipher_options),
        }))
    }

    /// Reads private options JSON leniently (see the crate docs).
    ///
    /// # Errors
    /// [`Error::Json`] if `json` is not a JSON object of the expected shape. The message
    /// never contains key material.
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        const WHAT: &str = "private options";
        let mut obj = Object::parse(WHAT, json)?;
        Ok(Self {
            symkey: SecretBytes::new(obj.take_bytes("symkey")?.unwrap_or_default()),
            digest: obj.take_string("digest")?.unwrap_or_default(),
            cipher_options: obj.take_map("cipheroptions")?,
        })
    }
}

fn go_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain strings and byte strings into a Vec cannot fail.
    to_go_json(value).unwrap_or_default()
}

fn decode_b64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD
        .decode(s)
        .or_else(|e| STANDARD_NO_PAD.decode(s).map_err(|_| e))
}

struct B64<'a>(&'a [u8]);

impl Serialize for B64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(self.0))
    }
}

struct SecretB64<'a>(&'a SecretBytes);

impl Serialize for SecretB64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let encoded = zeroize::Zeroizing::new(STANDARD.encode(self.0.expose()));
        s.serialize_str(&encoded)
    }
}

struct B64Map<'a>(&'a CipherOptions);

impl Serialize for B64Map<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, &B64(v))?;
        }
        map.end()
    }
}

/// A parsed JSON object whose fields are looked up as Go's `encoding/json` does: an exact
/// name match first, then a case-insensitive one.
struct Object {
    what: &'static str,
    fields: serde_json::Map<String, Value>,
}

impl Object {
    fn parse(what: &'static str, json: &[u8]) -> Result<Self, Error> {
        match serde_json::from_slice::<Value>(json) {
            Ok(Value::Object(fields)) => Ok(Self { what, fields }),
            Ok(_) => Err(Error::Json {
                what,
                detail: "not a JSON object".to_owned(),
            }),
            // serde_json's messages quote no input, only positions.
            Err(e) => Err(Error::Json {
                what,
                detail: e.to_string(),
            }),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        if let Some(v) = self.fields.remove(name) {
            return Some(v);
        }
        let key = self
            .fields
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))?
            .clone();
        self.fields.remove(&key)
    }

    fn bad(&self, field: &str, expected: &str) -> Error {
        Error::Json {
            what: self.what,
            detail: format!("field {field:?} is not {expected}"),
        }
    }

    fn take_string(&mut self, name: &str) -> Result<Option<String>, Error> {
        match self.take(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.bad(name, "a string")),
        }
    }

    fn take_bytes(&mut self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        match self.take_string(name)? {
            None => Ok(None),
            Some(s) => {
                let s = zeroize::Zeroizing::new(s);
                decode_b64(&s)
                    .map(Some)
                    .map_err(|_| self.bad(name, "standard base64"))
            }
        }
    }

    fn take_map(&mut self, name: &str) -> Result<CipherOptions, Error> {
        match self.take(name) {
            None | Some(Value::Null) => Ok(CipherOptions::new()),
            Some(Value::Object(m)) => {
                let mut out = CipherOptions::new();
                for (k, v) in m {
                    let bytes = match v {
                        Value::Null => Vec::new(),
                        Value::String(s) => decode_b64(&s)
                            .map_err(|_| self.bad(&format!("{name}.{k}"), "standard base64"))?,
                        _ => return Err(self.bad(&format!("{name}.{k}"), "a base64 string")),
                    };
                    out.insert(k, bytes);
                }
                Ok(out)
            }
            Some(_) => Err(self.bad(name, "an object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private() -> PrivateOptions {
        let mut cipher_options = CipherOptions::new();
        cipher_options.insert(NONCE.to_owned(), (0u8..16).collect());
        PrivateOptions {
            symkey: SecretBytes::new((0u8..32).collect()),
            digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                .to_owned(),
            cipher_options,
        }
    }

    #[test]
    fn private_json_is_gos() {
        // Bytes as Go's json.Marshal(PrivateLayerBlockCipherOptions{...}) writes them.
        let expected = concat!(
            r#"{"symkey":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","#,
            r#""digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","#,
            r#""cipheroptions":{"nonce":"AAECAwQFBgcICQoLDA0ODw=="}}"#
        );
        let json = private().to_json();
        assert_eq!(std::str::from_utf8(json.expose()).unwrap(), expected);
        assert_eq!(
            PrivateOptions::from_json(expected.as_bytes()).unwrap(),
            private()
        );
    }

    #[test]
    fn public_round_trip_through_annotation() {
        let p = PublicOptions::new(vec![7; 32]);
        let back = PublicOptions::from_annotation(&p.to_annotation()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn lenient_reading() {
        // Field order, case, null maps, unpadded base64 and unknown fields are all accepted.
        let json =
            br#"{"CipherOptions":null,"HMAC":"AQI","Cipher":"AES_256_CTR_HMAC_SHA256","x":1}"#;
        let p = PublicOptions::from_json(json).unwrap();
        assert_eq!(p.cipher, AES_256_CTR_HMAC_SHA256);
        assert_eq!(p.hmac, vec![1, 2]);
        assert!(p.cipher_options.is_empty());
        // An empty object gives empty options; the block cipher rejects them later.
        assert_eq!(
            PublicOptions::from_json(b"{}").unwrap(),
            PublicOptions::default()
        );
    }

    #[test]
    fn bad_documents_are_errors() {
        for bad in [
            &b"not json"[..],
            b"[]",
            br#"{"hmac":5}"#,
            br#"{"hmac":"!!!"}"#,
            br#"{"cipheroptions":[]}"#,
            br#"{"cipheroptions":{"nonce":1}}"#,
        ] {
            assert!(
                matches!(PublicOptions::from_json(bad), Err(Error::Json { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            PublicOptions::from_annotation("%%%"),
            Err(Error::Base64 { .. })
        ));
    }

    #[test]
    fn errors_do_not_leak_the_key() {
        let json = br#"{"symkey":"c2VjcmV0LWtleS1ieXRlcw==","digest":5}"#;
        let err = PrivateOptions::from_json(json).unwrap_err().to_string();
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }
}
