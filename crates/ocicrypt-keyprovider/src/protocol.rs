//! The key provider protocol JSON, byte-compatible with Go ocicrypt's
//! `keywrap/keyprovider` types. The same bytes travel on a program's stdin/stdout and
//! inside the gRPC messages.

use std::fmt;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use ocicrypt_keywrap::{Parameters, SecretBytes};
use serde::de::Error as _;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::Error;

/// Go's `[]byte` in JSON is standard base64 with padding; we also read it without.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The operation a request asks for (`op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// `keywrap`: wrap `optsdata` for the recipients in `ec`.
    #[serde(rename = "keywrap")]
    KeyWrap,
    /// `keyunwrap`: unwrap `annotation` with the keys in `dc`.
    #[serde(rename = "keyunwrap")]
    KeyUnwrap,
}

/// A request (Go's `KeyProviderKeyWrapProtocolInput`). Both parameter objects are always
/// written, as Go writes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolInput {
    /// The operation.
    pub op: Operation,
    /// The arguments of `keywrap`.
    #[serde(default, deserialize_with = "nullable")]
    pub keywrapparams: KeyWrapParams,
    /// The arguments of `keyunwrap`.
    #[serde(default, deserialize_with = "nullable")]
    pub keyunwrapparams: KeyUnwrapParams,
}

/// The arguments of `keywrap`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWrapParams {
    /// The encryption configuration (`null` in unwrap requests).
    #[serde(default)]
    pub ec: Option<GoEncryptConfig>,
    /// The private options to wrap (`null` in unwrap requests).
    #[serde(default, with = "b64_opt")]
    pub optsdata: Option<SecretBytes>,
}

/// The arguments of `keyunwrap`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUnwrapParams {
    /// The decryption configuration (`null` in wrap requests).
    #[serde(default)]
    pub dc: Option<GoDecryptConfig>,
    /// The wrapped blob this provider produced earlier (`null` in wrap requests).
    #[serde(default, with = "b64_opt_vec")]
    pub annotation: Option<Vec<u8>>,
}

/// Go's `config.EncryptConfig` as JSON: `{"Parameters":{...},"DecryptConfig":{...}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoEncryptConfig {
    /// The encryption parameters (`null` = none).
    #[serde(rename = "Parameters", default, with = "params")]
    pub parameters: Option<Parameters>,
    /// The attached decryption configuration.
    #[serde(rename = "DecryptConfig", default, deserialize_with = "nullable")]
    pub decrypt_config: GoDecryptConfig,
}

/// Go's `config.DecryptConfig` as JSON: `{"Parameters":{...}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoDecryptConfig {
    /// The decryption parameters (`null` = none).
    #[serde(rename = "Parameters", default, with = "params")]
    pub parameters: Option<Parameters>,
}

/// A reply (Go's `KeyProviderKeyWrapProtocolOutput`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolOutput {
    /// The result of `keywrap`.
    #[serde(default, deserialize_with = "nullable")]
    pub keywrapresults: KeyWrapResults,
    /// The result of `keyunwrap`.
    #[serde(default, deserialize_with = "nullable")]
    pub keyunwrapresults: KeyUnwrapResults,
}

/// The result of `keywrap`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWrapResults {
    /// The wrapped blob, stored base64'd in the layer annotation.
    #[serde(default, with = "b64_opt_vec")]
    pub annotation: Option<Vec<u8>>,
}

/// The result of `keyunwrap`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUnwrapResults {
    /// The unwrapped private options.
    #[serde(default, with = "b64_opt")]
    pub optsdata: Option<SecretBytes>,
}

/// A provider's refusal or failure, as the SDK reports it to ocicrypt (on a program's
/// stderr, or as a gRPC status message). Keep key material out of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderError {
    message: String,
}

impl ProviderError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProviderError {}

impl ProtocolInput {
    /// A `keywrap` request.
    pub fn wrap(ec: GoEncryptConfig, opts_data: &[u8]) -> Self {
        Self {
            op: Operation::KeyWrap,
            keywrapparams: KeyWrapParams {
                ec: Some(ec),
                optsdata: Some(SecretBytes::copy_from(opts_data)),
            },
            keyunwrapparams: KeyUnwrapParams::default(),
        }
    }

    /// A `keyunwrap` request.
    pub fn unwrap(dc: GoDecryptConfig, annotation: &[u8]) -> Self {
        Self {
            op: Operation::KeyUnwrap,
            keywrapparams: KeyWrapParams::default(),
            keyunwrapparams: KeyUnwrapParams {
                dc: Some(dc),
                annotation: Some(annotation.to_vec()),
            },
        }
    }

    /// The request as Go's `json.Marshal` writes it. The buffer holds secrets and is
    /// zeroized on drop.
    ///
    /// # Errors
    /// Never in practice (serializing these types cannot fail).
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        go_json(self).map_err(|e| Error::BadRequest {
            reason: "cannot serialize the request".to_owned(),
            source: Some(e),
        })
    }

    /// Parses a request (SDK side).
    ///
    /// # Errors
    /// [`Error::BadRequest`] if it is not valid protocol JSON.
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(json).map_err(|e| Error::BadRequest {
            reason: "not key provider protocol JSON".to_owned(),
            source: Some(e),
        })
    }
}

impl ProtocolOutput {
    /// The reply as Go's `json.Marshal` writes it (zeroized on drop).
    ///
    /// # Errors
    /// Never in practice.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        go_json(self).map_err(|e| Error::BadReply {
            reason: "cannot serialize the reply".to_owned(),
            source: Some(e),
        })
    }

    /// Parses a reply.
    ///
    /// # Errors
    /// [`Error::BadReply`] if it is not valid protocol JSON.
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(json).map_err(|e| Error::BadReply {
            reason: format!("not key provider protocol JSON ({} bytes)", json.len()),
            source: Some(e),
        })
    }
}

fn go_json<T: Serialize>(value: &T) -> serde_json::Result<Zeroizing<Vec<u8>>> {
    ocicrypt_spec::to_go_json(value).map(Zeroizing::new)
}

fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn decode<E: serde::de::Error>(s: &str) -> Result<Vec<u8>, E> {
    LENIENT
        .decode(s)
        .map_err(|e| E::custom(format!("invalid base64: {e}")))
}

mod b64_opt {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        v: &Option<SecretBytes>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(b) => s.serialize_str(&Zeroizing::new(STANDARD.encode(b.expose()))),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SecretBytes>, D::Error> {
        let s: Option<Zeroizing<String>> = Option::deserialize(d)?.map(Zeroizing::new);
        s.map(|s| decode(&s).map(SecretBytes::new)).transpose()
    }
}

mod b64_opt_vec {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(b) => s.serialize_str(&STANDARD.encode(b)),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| decode(&s)).transpose()
    }
}

/// `map[string][][]byte`: keys sorted, values arrays of base64 strings, nil map `null`.
mod params {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        v: &Option<Parameters>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let Some(p) = v else {
            return s.serialize_none();
        };
        let mut map = s.serialize_map(Some(p.len()))?;
        for (k, values) in p {
            map.serialize_entry(k, &Values(values))?;
        }
        map.end()
    }

    struct Values<'a>(&'a [Vec<u8>]);

    impl Serialize for Values<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(self.0.len()))?;
            for v in self.0 {
                seq.serialize_element(&*Zeroizing::new(STANDARD.encode(v)))?;
            }
            seq.end()
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Parameters>, D::Error> {
        let raw: Option<std::collections::BTreeMap<String, Option<Vec<Option<String>>>>> =
            Option::deserialize(d)?;
        let Some(raw) = raw else { return Ok(None) };
        let mut out = Parameters::new();
        for (k, values) in raw {
            let values = values
                .unwrap_or_default()
                .into_iter()
                .map(|v| match v {
                    None => Ok(Vec::new()),
                    Some(s) => decode(&Zeroizing::new(s)),
                })
                .collect::<Result<Vec<_>, D::Error>>()
                .map_err(|e| D::Error::custom(format!("parameter {k:?}: {e}")))?;
            out.insert(k, values);
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_request_is_gos_bytes() {
        let mut p = Parameters::new();
        p.insert("kms".into(), vec![b"Enabled".to_vec()]);
        p.insert("a<b".into(), vec![b"\x00\xff".to_vec(), Vec::new()]);
        let ec = GoEncryptConfig {
            parameters: Some(p),
            decrypt_config: GoDecryptConfig::default(),
        };
        let json = ProtocolInput::wrap(ec, b"{\"symkey\":1}")
            .to_json()
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            concat!(
                r#"{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"a\u003cb":["AP8=",""],"#,
                r#""kms":["RW5hYmxlZA=="]},"DecryptConfig":{"Parameters":null}},"optsdata":"eyJzeW1rZXkiOjF9"},"#,
                r#""keyunwrapparams":{"dc":null,"annotation":null}}"#
            )
        );
        assert_eq!(
            ProtocolInput::from_json(&json).unwrap(),
            ProtocolInput::from_json(&json).unwrap()
        );
    }

    #[test]
    fn reads_go_variants() {
        // nulls, missing objects, unpadded base64, null parameter values.
        let input = ProtocolInput::from_json(
            br#"{"op":"keyunwrap","keywrapparams":null,"keyunwrapparams":{"dc":{"Parameters":{"k":null,"j":[null,"YQ"]}},"annotation":"YWI="}}"#,
        )
        .unwrap();
        assert_eq!(input.op, Operation::KeyUnwrap);
        let p = input.keyunwrapparams.dc.unwrap().parameters.unwrap();
        assert_eq!(p["k"], Vec::<Vec<u8>>::new());
        assert_eq!(p["j"], vec![Vec::new(), b"a".to_vec()]);
        assert_eq!(
            input.keyunwrapparams.annotation.as_deref(),
            Some(&b"ab"[..])
        );
        let out =
            ProtocolOutput::from_json(br#"{"keyunwrapresults":{"optsdata":"eA=="}}"#).unwrap();
        assert_eq!(out.keyunwrapresults.optsdata.unwrap().expose(), b"x");
        assert!(out.keywrapresults.annotation.is_none());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            ProtocolOutput::from_json(b"hello"),
            Err(Error::BadReply { .. })
        ));
        let err =
            ProtocolOutput::from_json(br#"{"keywrapresults":{"annotation":"!!"}}"#).unwrap_err();
        assert!(
            err.to_string().contains("invalid key provider reply"),
            "{err}"
        );
        assert!(matches!(
            ProtocolInput::from_json(br#"{"op":"other"}"#),
            Err(Error::BadRequest { .. })
        ));
    }

    #[test]
    fn output_is_gos_bytes() {
        let out = ProtocolOutput {
            keywrapresults: KeyWrapResults {
                annotation: Some(b"blob".to_vec()),
            },
            keyunwrapresults: KeyUnwrapResults::default(),
        };
        assert_eq!(
            &out.to_json().unwrap()[..],
            br#"{"keywrapresults":{"annotation":"YmxvYg=="},"keyunwrapresults":{"optsdata":null}}"#
        );
    }
}
