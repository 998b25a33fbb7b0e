//! Reading JWE serializations: flattened and general JSON (RFC 7516 §7.2) and compact
//! (§7.1), split into one entry per recipient.
//!
//! josekit's general-JSON decryption stops at the first recipient whose `alg` matches the
//! decrypter, so a key for the second of two RSA recipients never gets its turn. This
//! module does the splitting, and the wrapper tries every recipient with every key.

use base64::Engine as _;
use josekit::jwe::JweHeader;
use josekit::{Map, Value};
use ocicrypt_keywrap::Error;
use serde::Deserialize;

use crate::content::ContentEnc;
use crate::{B64URL, SCHEME};

/// A parsed JWE.
#[derive(Debug)]
pub(crate) struct Jwe {
    pub(crate) enc: ContentEnc,
    /// The additional authenticated data: the encoded protected header, then `.` and the
    /// encoded `aad` member if there is one.
    pub(crate) aad: Vec<u8>,
    pub(crate) iv: Vec<u8>,
    pub(crate) ciphertext: Vec<u8>,
    pub(crate) tag: Vec<u8>,
    pub(crate) recipients: Vec<Recipient>,
}

/// One recipient, with its merged header (protected, shared unprotected and per-recipient
/// members).
#[derive(Debug)]
pub(crate) struct Recipient {
    pub(crate) alg: String,
    pub(crate) kid: Option<String>,
    pub(crate) header: JweHeader,
    pub(crate) encrypted_key: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct JsonJwe {
    #[serde(default)]
    protected: Option<String>,
    #[serde(default)]
    unprotected: Option<Map<String, Value>>,
    #[serde(default)]
    header: Option<Map<String, Value>>,
    #[serde(default)]
    encrypted_key: Option<String>,
    #[serde(default)]
    recipients: Option<Vec<JsonRecipient>>,
    #[serde(default)]
    aad: Option<String>,
    #[serde(default)]
    iv: Option<String>,
    ciphertext: String,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Deserialize)]
struct JsonRecipient {
    #[serde(default)]
    header: Option<Map<String, Value>>,
    #[serde(default)]
    encrypted_key: Option<String>,
}

pub(crate) fn malformed(reason: impl Into<String>) -> Error {
    Error::MalformedBlob {
        scheme: SCHEME.to_owned(),
        reason: reason.into(),
    }
}

fn b64(member: &str, value: &str) -> Result<Vec<u8>, Error> {
    B64URL
        .decode(value)
        .map_err(|e| malformed(format!("member {member:?} is not base64url: {e}")))
}

/// Parses a JWE in any serialization. Leading and trailing whitespace is ignored; input
/// starting with `{` is JSON, anything else compact (as go-jose decides).
pub(crate) fn parse(blob: &[u8]) -> Result<Jwe, Error> {
    let text = std::str::from_utf8(blob)
        .map_err(|_| malformed("not UTF-8"))?
        .trim();
    if text.starts_with('{') {
        parse_json(text)
    } else {
        parse_compact(text)
    }
}

fn parse_json(text: &str) -> Result<Jwe, Error> {
    let json: JsonJwe =
        serde_json::from_str(text).map_err(|e| malformed(format!("invalid JWE JSON: {e}")))?;
    let protected = json
        .protected
        .as_deref()
        .map(decode_protected)
        .transpose()?;
    let mut aad = json.protected.clone().unwrap_or_default().into_bytes();
    if let Some(extra) = &json.aad {
        b64("aad", extra)?;
        aad.push(b'.');
        aad.extend_from_slice(extra.as_bytes());
    }
    // go-jose's general form also carries recipient 0's key at the top level; when there
    // is a `recipients` array, the top-level `header` and `encrypted_key` are ignored.
    let raw = match json.recipients {
        Some(list) if list.is_empty() => return Err(malformed("empty \"recipients\"")),
        Some(list) => list,
        None => vec![JsonRecipient {
            header: json.header,
            encrypted_key: json.encrypted_key,
        }],
    };
    let recipients = raw
        .into_iter()
        .map(|r| {
            let merged = merge(protected.as_ref(), json.unprotected.as_ref(), r.header);
            recipient(merged, r.encrypted_key.as_deref())
        })
        .collect::<Result<Vec<_>, _>>()?;
    finish(
        recipients,
        aad,
        json.iv.as_deref(),
        &json.ciphertext,
        json.tag.as_deref(),
    )
}

fn parse_compact(text: &str) -> Result<Jwe, Error> {
    let parts: Vec<&str> = text.split('.').collect();
    let [protected, ek, iv, ciphertext, tag] = parts.as_slice() else {
        return Err(malformed(
            "neither JSON nor compact serialization (five parts separated by '.')",
        ));
    };
    if protected.is_empty() {
        return Err(malformed("compact JWE without a protected header"));
    }
    let header = decode_protected(protected)?;
    let recipient = recipient(header, Some(ek))?;
    finish(
        vec![recipient],
        protected.as_bytes().to_vec(),
        Some(iv),
        ciphertext,
        Some(tag),
    )
}

fn decode_protected(b64_header: &str) -> Result<Map<String, Value>, Error> {
    let bytes = b64("protected", b64_header)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| malformed(format!("protected header is not a JSON object: {e}")))
}

/// Merges headers with go-jose's precedence: protected, then shared unprotected, then
/// per-recipient members (a later source never overrides an earlier one).
fn merge(
    protected: Option<&Map<String, Value>>,
    unprotected: Option<&Map<String, Value>>,
    header: Option<Map<String, Value>>,
) -> Map<String, Value> {
    let mut merged = header.unwrap_or_default();
    for source in [unprotected, protected].into_iter().flatten() {
        for (k, v) in source {
            merged.insert(k.clone(), v.clone());
        }
    }
    merged
}

fn recipient(merged: Map<String, Value>, ek: Option<&str>) -> Result<Recipient, Error> {
    let header =
        JweHeader::from_map(merged).map_err(|e| malformed(format!("invalid JWE header: {e}")))?;
    let alg = header
        .algorithm()
        .ok_or_else(|| malformed("a recipient has no \"alg\""))?
        .to_owned();
    let kid = header.key_id().map(str::to_owned);
    let encrypted_key = match ek {
        None | Some("") => None,
        Some(ek) => Some(b64("encrypted_key", ek)?),
    };
    Ok(Recipient {
        alg,
        kid,
        header,
        encrypted_key,
    })
}

fn finish(
    recipients: Vec<Recipient>,
    aad: Vec<u8>,
    iv: Option<&str>,
    ciphertext: &str,
    tag: Option<&str>,
) -> Result<Jwe, Error> {
    let mut enc = None;
    for r in &recipients {
        if r.header.claim("crit").is_some() {
            return Err(malformed("critical header parameters are not supported"));
        }
        if let Some(zip) = r.header.claim("zip") {
            return Err(Error::UnsupportedAlgorithm {
                scheme: SCHEME.to_owned(),
                algorithm: format!("zip {zip}"),
            });
        }
        let name = r
            .header
            .content_encryption()
            .ok_or_else(|| malformed("no \"enc\" header"))?;
        let this = ContentEnc::from_name(name).ok_or_else(|| Error::UnsupportedAlgorithm {
            scheme: SCHEME.to_owned(),
            algorithm: name.to_owned(),
        })?;
        if enc.is_some_and(|e| e != this) {
            return Err(malformed("recipients disagree on \"enc\""));
        }
        enc = Some(this);
    }
    let enc = enc.ok_or_else(|| malformed("no recipients"))?;
    let iv = b64("iv", iv.ok_or_else(|| malformed("no \"iv\""))?)?;
    let tag = b64("tag", tag.ok_or_else(|| malformed("no \"tag\""))?)?;
    if iv.len() != enc.iv_len() {
        return Err(malformed(format!(
            "\"iv\" has {} bytes, {enc:?} needs {}",
            iv.len(),
            enc.iv_len()
        )));
    }
    if tag.len() != enc.tag_len() {
        return Err(malformed(format!(
            "\"tag\" has {} bytes, {enc:?} needs {}",
            tag.len(),
            enc.tag_len()
        )));
    }
    Ok(Jwe {
        enc,
        aad,
        iv,
        ciphertext: b64("ciphertext", ciphertext)?,
        tag,
        recipients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(v: &str) -> String {
        B64URL.encode(v)
    }

    fn flattened(protected: &str, extra: &str) -> String {
        format!(
            r#"{{"protected":"{}","encrypted_key":"AAAA","iv":"{}","ciphertext":"AAAA","tag":"{}"{extra}}}"#,
            e(protected),
            B64URL.encode([1u8; 12]),
            B64URL.encode([2u8; 16]),
        )
    }

    fn reason(r: Result<Jwe, Error>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn flattened_and_merge_precedence() {
        let text = flattened(
            r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#,
            r#","unprotected":{"kid":"u","alg":"ignored"},"header":{"kid":"h","x":1}"#,
        );
        let jwe = parse(text.as_bytes()).unwrap();
        assert_eq!(jwe.enc, ContentEnc::A256Gcm);
        assert_eq!(jwe.recipients.len(), 1);
        let r = &jwe.recipients[0];
        assert_eq!(r.alg, "RSA-OAEP");
        assert_eq!(r.kid.as_deref(), Some("u"));
        assert_eq!(r.header.claim("x"), Some(&Value::from(1)));
        assert_eq!(r.encrypted_key.as_deref(), Some(&[0u8, 0, 0][..]));
        assert_eq!(
            jwe.aad,
            e(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#).into_bytes()
        );
    }

    #[test]
    fn general_ignores_top_level_key_and_appends_aad() {
        let text = format!(
            r#" {{"protected":"{}","encrypted_key":"!!!","aad":"YWFk",
               "recipients":[{{"header":{{"alg":"RSA-OAEP","kid":"a"}},"encrypted_key":"AQ"}},
                             {{"header":{{"alg":"ECDH-ES+A128KW"}}}}],
               "iv":"{}","ciphertext":"","tag":"{}"}}
"#,
            e(r#"{"enc":"A128CBC-HS256"}"#),
            B64URL.encode([0u8; 16]),
            B64URL.encode([0u8; 16]),
        );
        let jwe = parse(text.as_bytes()).unwrap();
        assert_eq!(jwe.enc, ContentEnc::A128CbcHs256);
        assert_eq!(jwe.recipients.len(), 2);
        assert_eq!(jwe.recipients[0].kid.as_deref(), Some("a"));
        assert_eq!(jwe.recipients[0].encrypted_key.as_deref(), Some(&[1u8][..]));
        assert_eq!(jwe.recipients[1].alg, "ECDH-ES+A128KW");
        assert!(jwe.recipients[1].encrypted_key.is_none());
        assert!(jwe.ciphertext.is_empty());
        assert!(jwe.aad.ends_with(b".YWFk"));
    }

    #[test]
    fn compact() {
        let p = e(r#"{"alg":"RSA-OAEP-256","enc":"A192GCM","kid":"k"}"#);
        let text = format!(
            "{p}.AQID.{}.BAUG.{}",
            B64URL.encode([0u8; 12]),
            B64URL.encode([0u8; 16])
        );
        let jwe = parse(text.as_bytes()).unwrap();
        assert_eq!(jwe.enc, ContentEnc::A192Gcm);
        assert_eq!(jwe.aad, p.into_bytes());
        assert_eq!(jwe.ciphertext, [4, 5, 6]);
        assert_eq!(jwe.recipients[0].kid.as_deref(), Some("k"));
        assert!(reason(parse(b"a.b.c.d")).contains("five parts"));
        assert!(reason(parse(b".AQID.AA.AA.AA")).contains("without a protected header"));
    }

    #[test]
    fn malformed_inputs() {
        let ok = r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#;
        for (text, want) in [
            (b"\xff\xfe".to_vec(), "not UTF-8"),
            (b"{\"protected\":".to_vec(), "invalid JWE JSON"),
            (b"{}".to_vec(), "invalid JWE JSON"),
            (
                flattened(ok, "")
                    .replace("\"AAAA\"", "\"A!A\"")
                    .into_bytes(),
                "not base64url",
            ),
            (flattened("[1]", "").into_bytes(), "not a JSON object"),
            (
                flattened(r#"{"enc":"A256GCM"}"#, "").into_bytes(),
                "no \"alg\"",
            ),
            (
                flattened(r#"{"alg":"RSA-OAEP"}"#, "").into_bytes(),
                "no \"enc\"",
            ),
            (
                flattened(r#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":1}"#, "").into_bytes(),
                "invalid JWE header",
            ),
            (
                flattened(r#"{"alg":"RSA-OAEP","enc":"A256GCM","crit":["x"]}"#, "").into_bytes(),
                "critical",
            ),
            (
                flattened(ok, "")
                    .replace(&B64URL.encode([1u8; 12]), "AAAA")
                    .into_bytes(),
                "\"iv\" has 3 bytes",
            ),
            (
                flattened(ok, "")
                    .replace(&B64URL.encode([2u8; 16]), "AAAA")
                    .into_bytes(),
                "\"tag\" has 3 bytes",
            ),
            (flattened(ok, r#","aad":"!""#).into_bytes(), "\"aad\""),
            (
                flattened(r#"{"enc":"A256GCM"}"#, r#","recipients":[]"#).into_bytes(),
                "empty",
            ),
            (
                flattened(
                    r#"{"alg":"RSA-OAEP"}"#,
                    r#","recipients":[{"header":{"enc":"A128GCM"}},{"header":{"enc":"A256GCM"}}]"#,
                )
                .into_bytes(),
                "disagree",
            ),
        ] {
            let got = reason(parse(&text));
            assert!(got.contains(want), "{got:?} lacks {want:?}");
            assert!(got.starts_with("jwe: malformed wrapped key"), "{got}");
        }
        let missing_iv = flattened(ok, "").replace("\"iv\"", "\"xx\"");
        assert!(reason(parse(missing_iv.as_bytes())).contains("no \"iv\""));
    }

    #[test]
    fn unsupported_algorithms() {
        for (p, want) in [
            (r#"{"alg":"RSA-OAEP","enc":"A256CBC"}"#, "A256CBC"),
            (r#"{"alg":"RSA-OAEP","enc":"A256GCM","zip":"DEF"}"#, "zip"),
        ] {
            match parse(flattened(p, "").as_bytes()) {
                Err(Error::UnsupportedAlgorithm { algorithm, .. }) => {
                    assert!(algorithm.contains(want), "{algorithm}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
