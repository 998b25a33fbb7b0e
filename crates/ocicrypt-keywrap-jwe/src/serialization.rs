//! Reading JWE serializations: flattened and general JSON (RFC 7516 §7.2) and compact
//! (§7.1), split into one entry per recipient.
//!
//! josekit's general-JSON decryption stops at the first recipient whose `alg` matches the
//! decrypter, so a key for the second of two RSA recipients never gets its turn. This
//! module does the splitting, and the wrapper tries every recipient with every key.

use std::fmt;

use base64::Engine as _;
use josekit::jwe::JweHeader;
use josekit::{Map, Value};
use ocicrypt_keywrap::Error;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::content::ContentEnc;
use crate::{B64URL, SCHEME};

/// The most recipients one JWE may have; a JWE with more is [`Error::LimitExceeded`].
///
/// The wrapped key is attacker input, and every recipient is tried with every private key
/// (an RSA or ECDH operation each). Go ocicrypt writes one recipient per public key of an
/// `encrypt` call and has no limit; no real image has more than a handful, so 1024 is far
/// above any of them. Members past the limit are skipped while parsing, never kept.
pub const MAX_RECIPIENTS: usize = 1024;

/// A parsed JWE.
///
/// The header members all recipients share (protected and shared unprotected) are held once,
/// in `shared`; each [`Recipient`] keeps only its own members. [`Jwe::recipients`] joins
/// the two by reference, so memory stays proportional to the input however many recipients
/// there are.
#[derive(Debug)]
pub(crate) struct Jwe {
    pub(crate) enc: ContentEnc,
    /// The additional authenticated data: the encoded protected header, then `.` and the
    /// encoded `aad` member if there is one.
    pub(crate) aad: Vec<u8>,
    pub(crate) iv: Vec<u8>,
    pub(crate) ciphertext: Vec<u8>,
    pub(crate) tag: Vec<u8>,
    /// The protected header's members, then those of the shared unprotected header that the
    /// protected header does not have.
    shared: JweHeader,
    recipients: Vec<Recipient>,
}

/// One recipient's own header members (those the shared header does not override) and
/// encrypted key.
#[derive(Debug)]
pub(crate) struct Recipient {
    own: JweHeader,
    encrypted_key: Option<Vec<u8>>,
}

/// A recipient with its merged header, borrowed from a [`Jwe`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecipientRef<'a> {
    shared: &'a JweHeader,
    recipient: &'a Recipient,
}

impl<'a> RecipientRef<'a> {
    /// A header member, with go-jose's precedence: protected, then shared unprotected, then
    /// per-recipient members.
    pub(crate) fn claim(&self, name: &str) -> Option<&'a Value> {
        self.shared
            .claim(name)
            .or_else(|| self.recipient.own.claim(name))
    }

    fn string(&self, name: &str) -> Option<&'a str> {
        self.claim(name).and_then(Value::as_str)
    }

    /// The key management algorithm (`alg`); parsing made sure there is one.
    pub(crate) fn alg(&self) -> &'a str {
        self.string("alg").unwrap_or_default()
    }

    /// The key id (`kid`), if any.
    pub(crate) fn kid(&self) -> Option<&'a str> {
        self.string("kid")
    }

    pub(crate) fn encrypted_key(&self) -> Option<&'a [u8]> {
        self.recipient.encrypted_key.as_deref()
    }

    /// A header with just the members josekit's ECDH-ES decrypter reads (`epk`, `apu`,
    /// `apv`), built for one attempt instead of a copy of the whole merged header.
    pub(crate) fn key_agreement_header(&self) -> Result<JweHeader, josekit::JoseError> {
        let mut header = JweHeader::new();
        for name in ["epk", "apu", "apv"] {
            if let Some(value) = self.claim(name) {
                header.set_claim(name, Some(value.clone()))?;
            }
        }
        Ok(header)
    }
}

impl Jwe {
    /// The recipients, in order.
    pub(crate) fn recipients(&self) -> impl ExactSizeIterator<Item = RecipientRef<'_>> {
        self.recipients.iter().map(|recipient| RecipientRef {
            shared: &self.shared,
            recipient,
        })
    }
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
    recipients: Option<RecipientList>,
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

/// The `recipients` array: at most [`MAX_RECIPIENTS`] members are kept; the rest are
/// skipped without being stored, and `too_many` says so.
struct RecipientList {
    list: Vec<JsonRecipient>,
    too_many: bool,
}

impl<'de> Deserialize<'de> for RecipientList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bounded;
        impl<'de> Visitor<'de> for Bounded {
            type Value = RecipientList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of recipients")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = Vec::new();
                while list.len() < MAX_RECIPIENTS {
                    match seq.next_element()? {
                        Some(r) => list.push(r),
                        None => {
                            return Ok(RecipientList {
                                list,
                                too_many: false,
                            });
                        }
                    }
                }
                let mut too_many = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    too_many = true;
                }
                Ok(RecipientList { list, too_many })
            }
        }
        deserializer.deserialize_seq(Bounded)
    }
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
///
/// # Errors
/// [`Error::LimitExceeded`] for more than [`MAX_RECIPIENTS`] recipients;
/// [`Error::MalformedBlob`] or [`Error::UnsupportedAlgorithm`] for the rest.
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
    let mut aad = json.protected.unwrap_or_default().into_bytes();
    if let Some(extra) = &json.aad {
        b64("aad", extra)?;
        aad.push(b'.');
        aad.extend_from_slice(extra.as_bytes());
    }
    // go-jose's general form also carries recipient 0's key at the top level; when there
    // is a `recipients` array, the top-level `header` and `encrypted_key` are ignored.
    let raw = match json.recipients {
        Some(list) if list.too_many => {
            return Err(Error::limit_exceeded(SCHEME, "recipients", MAX_RECIPIENTS));
        }
        Some(list) if list.list.is_empty() => return Err(malformed("empty \"recipients\"")),
        Some(list) => list.list,
        None => vec![JsonRecipient {
            header: json.header,
            encrypted_key: json.encrypted_key,
        }],
    };
    let shared = shared_header(protected, json.unprotected)?;
    let recipients = raw
        .into_iter()
        .map(|r| recipient(&shared, r.header, r.encrypted_key.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    finish(
        shared,
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
    let shared = shared_header(Some(decode_protected(protected)?), None)?;
    let recipient = recipient(&shared, None, Some(ek))?;
    finish(
        shared,
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

fn header(map: Map<String, Value>) -> Result<JweHeader, Error> {
    JweHeader::from_map(map).map_err(|e| malformed(format!("invalid JWE header: {e}")))
}

/// The members every recipient shares, with go-jose's precedence (the protected header
/// wins over the shared unprotected one), built once.
fn shared_header(
    protected: Option<Map<String, Value>>,
    unprotected: Option<Map<String, Value>>,
) -> Result<JweHeader, Error> {
    let mut shared = protected.unwrap_or_default();
    for (k, v) in unprotected.unwrap_or_default() {
        shared.entry(k).or_insert(v);
    }
    header(shared)
}

/// One recipient: its own header members minus those the shared header overrides (a later
/// source never overrides an earlier one), checked as josekit checks a header.
fn recipient(
    shared: &JweHeader,
    own: Option<Map<String, Value>>,
    ek: Option<&str>,
) -> Result<Recipient, Error> {
    let mut own = own.unwrap_or_default();
    own.retain(|k, _| shared.claim(k).is_none());
    let recipient = Recipient {
        own: header(own)?,
        encrypted_key: match ek {
            None | Some("") => None,
            Some(ek) => Some(b64("encrypted_key", ek)?),
        },
    };
    let view = RecipientRef {
        shared,
        recipient: &recipient,
    };
    if view.string("alg").is_none() {
        return Err(malformed("a recipient has no \"alg\""));
    }
    Ok(recipient)
}

fn finish(
    shared: JweHeader,
    recipients: Vec<Recipient>,
    aad: Vec<u8>,
    iv: Option<&str>,
    ciphertext: &str,
    tag: Option<&str>,
) -> Result<Jwe, Error> {
    let mut enc = None;
    for recipient in &recipients {
        let r = RecipientRef {
            shared: &shared,
            recipient,
        };
        if r.claim("crit").is_some() {
            return Err(malformed("critical header parameters are not supported"));
        }
        if let Some(zip) = r.claim("zip") {
            return Err(Error::UnsupportedAlgorithm {
                scheme: SCHEME.to_owned(),
                algorithm: format!("zip {zip}"),
            });
        }
        let name = r
            .string("enc")
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
        shared,
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
        assert_eq!(jwe.recipients().len(), 1);
        let r = jwe.recipients().next().unwrap();
        assert_eq!(r.alg(), "RSA-OAEP");
        assert_eq!(r.kid(), Some("u"));
        assert_eq!(r.claim("x"), Some(&Value::from(1)));
        assert_eq!(r.encrypted_key(), Some(&[0u8, 0, 0][..]));
        assert_eq!(
            jwe.aad,
            e(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#).into_bytes()
        );
    }

    #[test]
    fn a_recipient_member_overridden_by_a_shared_one_is_not_checked() {
        // As before sharing: only the merged header is checked, and the protected `kid`
        // wins over the recipient's (invalid) one.
        let text = flattened(
            r#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"p"}"#,
            r#","header":{"kid":1}"#,
        );
        let jwe = parse(text.as_bytes()).unwrap();
        assert_eq!(jwe.recipients().next().unwrap().kid(), Some("p"));
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
        let r: Vec<_> = jwe.recipients().collect();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].kid(), Some("a"));
        assert_eq!(r[0].encrypted_key(), Some(&[1u8][..]));
        assert_eq!(r[1].alg(), "ECDH-ES+A128KW");
        assert!(r[1].encrypted_key().is_none());
        assert!(jwe.ciphertext.is_empty());
        assert!(jwe.aad.ends_with(b".YWFk"));
    }

    /// A general JWE with `n` recipients, each `recipient`, and a protected header with
    /// `alg`, `enc` and `extra` members.
    fn general(n: usize, recipient: &str, extra: &str) -> String {
        format!(
            r#"{{"protected":"{}","recipients":[{}],"iv":"{}","ciphertext":"AAAA","tag":"{}"}}"#,
            e(&format!(r#"{{"alg":"RSA-OAEP","enc":"A256GCM"{extra}}}"#)),
            vec![recipient; n].join(","),
            B64URL.encode([1u8; 12]),
            B64URL.encode([2u8; 16]),
        )
    }

    #[test]
    fn recipients_are_capped() {
        let at_cap = parse(general(MAX_RECIPIENTS, "{}", "").as_bytes()).unwrap();
        assert_eq!(at_cap.recipients().len(), MAX_RECIPIENTS);
        assert!(at_cap.recipients().all(|r| r.alg() == "RSA-OAEP"));
        for n in [MAX_RECIPIENTS + 1, 20_000] {
            // 20,000 empty recipients: about 60 KB that used to ask for a copy of the
            // protected header each.
            let text = general(n, "{}", "");
            let started = std::time::Instant::now();
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            match &err {
                Error::LimitExceeded {
                    scheme,
                    what,
                    limit,
                } => {
                    assert_eq!(
                        (scheme.as_str(), *what, *limit),
                        ("jwe", "recipients", 1024)
                    );
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                err.to_string(),
                "jwe: wrapped key exceeds a limit: more than 1024 recipients"
            );
        }
    }

    #[test]
    fn a_large_protected_header_is_held_once() {
        // 256 KiB of protected header and the most recipients: the header is shared, not
        // copied into each recipient (that would be 256 MiB).
        let big = format!(r#","x":"{}""#, "x".repeat(256 * 1024));
        let text = general(MAX_RECIPIENTS, r#"{"header":{"kid":"k"}}"#, &big);
        let jwe = parse(text.as_bytes()).unwrap();
        let first = jwe.recipients().next().unwrap();
        let last = jwe.recipients().last().unwrap();
        assert!(std::ptr::eq(
            first.claim("x").unwrap(),
            last.claim("x").unwrap()
        ));
        assert_eq!(last.kid(), Some("k"));
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
        assert_eq!(jwe.recipients().next().unwrap().kid(), Some("k"));
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
