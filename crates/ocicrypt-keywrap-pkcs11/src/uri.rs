//! RFC 7512 `pkcs11:` URIs.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::ParseError;

/// The path attributes RFC 7512 defines (all others are vendor or unknown attributes,
/// kept but not used for matching).
pub const KNOWN_PATH_ATTRIBUTES: &[&str] = &[
    "token",
    "manufacturer",
    "serial",
    "model",
    "library-manufacturer",
    "library-description",
    "library-version",
    "object",
    "type",
    "id",
    "slot-description",
    "slot-manufacturer",
    "slot-id",
];

/// The query attributes RFC 7512 defines.
pub const KNOWN_QUERY_ATTRIBUTES: &[&str] =
    &["pin-source", "pin-value", "module-name", "module-path"];

/// A parsed RFC 7512 PKCS#11 URI such as
/// `pkcs11:token=my-token;object=my-key;type=private?pin-value=1234&module-name=softhsm2`.
///
/// Attribute values are percent-decoded bytes (`id` is binary). Unknown and vendor
/// attributes (`x-...`) are kept and can be read, but play no part in finding a key.
/// Duplicate attributes, bad percent-encoding, control characters and the value checks of
/// RFC 7512 (`slot-id` digits, `library-version`, `type`, absolute `module-path`, not both
/// `pin-value` and `pin-source`) are errors. Like go-pkcs11uri, characters that RFC 7512 wants
/// percent-encoded (spaces, `/` in the path, ...) are accepted literally.
///
/// The `pin-value` is held as a [`SecretString`]: `Debug` and `Display` never show it
/// (`Display` prints the path part only).
#[derive(Clone)]
pub struct Pkcs11Uri {
    path: Vec<(String, Vec<u8>)>,
    query: Vec<(String, Vec<u8>)>,
    pin_value: Option<SecretString>,
}

impl Pkcs11Uri {
    /// Parses a `pkcs11:` URI (the scheme name is case-insensitive).
    ///
    /// # Errors
    /// A [`ParseError`] naming the offending attribute (never showing a PIN).
    pub fn parse(uri: &str) -> Result<Self, ParseError> {
        let rest = uri
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("pkcs11:"))
            .and_then(|_| uri.get(7..))
            .ok_or(ParseError::MissingScheme)?;
        let (path_part, query_part) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut parsed = Self {
            path: Vec::new(),
            query: Vec::new(),
            pin_value: None,
        };
        if !path_part.is_empty() {
            for attr in path_part.split(';') {
                let (name, value) = split_attribute("path", attr)?;
                if parsed.path.iter().any(|(n, _)| n == name) {
                    return Err(ParseError::DuplicateAttribute {
                        part: "path",
                        name: name.to_owned(),
                    });
                }
                let value = percent_decode(name, value)?;
                parsed.path.push((name.to_owned(), value.to_vec()));
            }
        }
        if let Some(query_part) = query_part.filter(|q| !q.is_empty()) {
            for attr in query_part.split('&') {
                let (name, value) = split_attribute("query", attr)?;
                let duplicate = parsed.query.iter().any(|(n, _)| n == name)
                    || (name == "pin-value" && parsed.pin_value.is_some());
                if duplicate {
                    return Err(ParseError::DuplicateAttribute {
                        part: "query",
                        name: name.to_owned(),
                    });
                }
                let value = percent_decode(name, value)?;
                if name == "pin-value" {
                    let pin = String::from_utf8(value.to_vec()).map_err(|e| {
                        let mut bytes = e.into_bytes();
                        zeroize::Zeroize::zeroize(&mut bytes);
                        invalid("pin-value", "not UTF-8")
                    })?;
                    parsed.pin_value = Some(SecretString::from(pin));
                } else {
                    parsed.query.push((name.to_owned(), value.to_vec()));
                }
            }
        }
        parsed.validate()?;
        Ok(parsed)
    }

    fn validate(&self) -> Result<(), ParseError> {
        if let Some(v) = self.path_attribute("slot-id") {
            let v = utf8("slot-id", v)?;
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("slot-id", "must be a decimal number"));
            }
            v.parse::<u64>()
                .map_err(|_| invalid("slot-id", "number too large"))?;
        }
        if let Some(v) = self.path_attribute("library-version") {
            let v = utf8("library-version", v)?;
            let (major, minor) = match v.split_once('.') {
                Some((a, b)) => (a, Some(b)),
                None => (v, None),
            };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(major) || !minor.is_none_or(digits) {
                return Err(invalid("library-version", "must be DIGITS[.DIGITS]"));
            }
        }
        if let Some(v) = self.path_attribute("type")
            && !matches!(
                v,
                b"public" | b"private" | b"cert" | b"secret-key" | b"data"
            )
        {
            return Err(invalid(
                "type",
                "must be one of public, private, cert, secret-key, data",
            ));
        }
        if self.pin_value.is_some() && self.query_attribute("pin-source").is_some() {
            return Err(ParseError::PinSourceAndValue);
        }
        for name in ["pin-source", "module-name"] {
            if let Some(v) = self.query_attribute(name) {
                utf8(name, v)?;
            }
        }
        if let Some(v) = self.query_attribute("module-path") {
            let v = utf8("module-path", v)?;
            if !Path::new(v).is_absolute() {
                return Err(invalid("module-path", "must be an absolute path"));
            }
        }
        Ok(())
    }

    /// A path attribute's decoded value.
    pub fn path_attribute(&self, name: &str) -> Option<&[u8]> {
        self.path
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// A query attribute's decoded value; `pin-value` is only available through
    /// [`Pkcs11Uri::pin_value`].
    pub fn query_attribute(&self, name: &str) -> Option<&[u8]> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// All path attributes in the order written.
    pub fn path_attributes(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.path.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// All query attributes except `pin-value`, in the order written.
    pub fn query_attributes(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.query.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The token label (`token`).
    pub fn token(&self) -> Option<&[u8]> {
        self.path_attribute("token")
    }

    /// The object label (`object`).
    pub fn object(&self) -> Option<&[u8]> {
        self.path_attribute("object")
    }

    /// The object id (`id`, binary).
    pub fn id(&self) -> Option<&[u8]> {
        self.path_attribute("id")
    }

    /// The object type (`type`): `public`, `private`, `cert`, `secret-key` or `data`.
    pub fn object_type(&self) -> Option<&str> {
        self.path_attribute("type")
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The slot id (`slot-id`).
    pub fn slot_id(&self) -> Option<u64> {
        self.path_attribute("slot-id")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
    }

    /// The module name (`module-name`), e.g. `softhsm2` for `libsofthsm2.so`.
    pub fn module_name(&self) -> Option<&str> {
        self.query_str("module-name")
    }

    /// The module's absolute path or directory (`module-path`).
    pub fn module_path(&self) -> Option<&Path> {
        self.query_str("module-path").map(Path::new)
    }

    /// The PIN given in the URI (`pin-value`).
    pub fn pin_value(&self) -> Option<&SecretString> {
        self.pin_value.as_ref()
    }

    /// Where the PIN is read from (`pin-source`): a file path or a `file:` URI.
    pub fn pin_source(&self) -> Option<&str> {
        self.query_str("pin-source")
    }

    fn query_str(&self, name: &str) -> Option<&str> {
        self.query_attribute(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl FromStr for Pkcs11Uri {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The path part only (`pkcs11:token=...;object=...`), percent-encoded; the query part,
/// which may hold a PIN, is left out.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pkcs11:")?;
        for (i, (name, value)) in self.path.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{name}=")?;
            for &b in value {
                if b.is_ascii_alphanumeric() || b"-._~:[]@!$'()*+,&".contains(&b) {
                    write!(f, "{}", char::from(b))?;
                } else {
                    write!(f, "%{b:02X}")?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Uri")
            .field("path", &self.to_string())
            .field(
                "query",
                &self
                    .query
                    .iter()
                    .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v)))
                    .collect::<Vec<_>>(),
            )
            .field("pin_value", &self.pin_value.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

fn invalid(name: &str, reason: &str) -> ParseError {
    ParseError::InvalidValue {
        name: name.to_owned(),
        reason: reason.to_owned(),
    }
}

fn utf8<'a>(name: &str, v: &'a [u8]) -> Result<&'a str, ParseError> {
    std::str::from_utf8(v).map_err(|_| invalid(name, "not UTF-8"))
}

/// Splits `name=value`, checking the name (RFC 7512: ALPHA / DIGIT / "-" / "_").
fn split_attribute<'a>(
    part: &'static str,
    attr: &'a str,
) -> Result<(&'a str, &'a str), ParseError> {
    let (name, value) = attr
        .split_once('=')
        .ok_or(ParseError::MalformedAttribute { part })?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ParseError::InvalidAttributeName {
            part,
            name: name.escape_default().to_string(),
        });
    }
    Ok((name, value))
}

/// Percent-decodes `value` (with `percent-encoding`) after checking what RFC 7512 asks
/// and that crate lets through: every `%` starts two hex digits, and control characters
/// are encoded.
fn percent_decode(name: &str, value: &str) -> Result<Zeroizing<Vec<u8>>, ParseError> {
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let escape = bytes.get(i + 1..i + 3).unwrap_or_default();
            if escape.len() != 2 || !escape.iter().all(u8::is_ascii_hexdigit) {
                return Err(ParseError::PercentEncoding {
                    name: name.to_owned(),
                });
            }
        } else if b.is_ascii_control() {
            return Err(invalid(name, "contains a control character"));
        }
    }
    Ok(Zeroizing::new(
        percent_encoding::percent_decode(bytes).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn p(s: &str) -> Pkcs11Uri {
        Pkcs11Uri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    // The examples of RFC 7512 section 3 (line breaks removed).
    #[test]
    fn rfc7512_examples() {
        let u = p("pkcs11:");
        assert_eq!(u.path_attributes().count(), 0);
        assert_eq!(u.query_attributes().count(), 0);

        let u = p("pkcs11:object=my-pubkey;type=public");
        assert_eq!(u.object(), Some(&b"my-pubkey"[..]));
        assert_eq!(u.object_type(), Some("public"));

        let u = p("pkcs11:object=my-key;type=private?pin-source=file:/etc/token");
        assert_eq!(u.object_type(), Some("private"));
        assert_eq!(u.pin_source(), Some("file:/etc/token"));

        let u = p("pkcs11:token=The%20Software%20PKCS%2311%20softtoken;\
                   manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;\
                   type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=\
                   ?pin-source=file:/etc/token_pin");
        assert_eq!(u.token(), Some(&b"The Software PKCS#11 softtoken"[..]));
        assert_eq!(
            u.path_attribute("manufacturer"),
            Some(&b"Snake Oil, Inc."[..])
        );
        assert_eq!(u.path_attribute("model"), Some(&b"1.0"[..]));
        assert_eq!(
            u.id(),
            Some(&[0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91][..])
        );
        assert_eq!(u.path_attribute("serial"), Some(&b""[..]));
        assert_eq!(u.pin_source(), Some("file:/etc/token_pin"));

        let u = p("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11");
        assert_eq!(u.module_name(), Some("mypkcs11"));

        let u = p("pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1");
        assert_eq!(u.module_path(), Some(Path::new("/mnt/libmypkcs11.so.1")));

        let u = p("pkcs11:token=Software%20PKCS%2311%20softtoken;\
                   manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin");
        assert_eq!(u.pin_value().unwrap().expose_secret(), "the-pin");
        assert_eq!(u.query_attribute("pin-value"), None);

        let u = p("pkcs11:slot-description=Sun%20Metaslot");
        assert_eq!(
            u.path_attribute("slot-description"),
            Some(&b"Sun Metaslot"[..])
        );

        let u = p("pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;\
                   library-description=Soft%20Token%20Library;library-version=1.23");
        assert_eq!(u.path_attribute("library-version"), Some(&b"1.23"[..]));

        let u = p(
            "pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;\
                   id=%01%02%03%Ba%dd%Ef%fe%9A;object=SPACE%20ANDTAB%09",
        );
        assert_eq!(u.token(), Some(&b"My token% created by Joe"[..]));
        assert_eq!(u.id(), Some(&[1, 2, 3, 0xba, 0xdd, 0xef, 0xfe, 0x9a][..]));
        assert_eq!(u.object(), Some(&b"SPACE ANDTAB\t"[..]));

        let u = p("pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;\
                   object=my-certificate;type=cert");
        assert_eq!(u.token(), Some(&b"A name with a substring %;"[..]));

        let u = p(
            "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;\
                   object=my-certificate;type=cert",
        );
        assert_eq!(
            u.token(),
            Some("Name with a small A with acute: \u{e1}".as_bytes())
        );

        let u = p(
            "pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a\
                   ?pin-source=file:/etc/token_pin&vendor-bbb=value-b",
        );
        assert_eq!(u.path_attribute("vendor-aaa"), Some(&b"value-a"[..]));
        assert_eq!(u.query_attribute("vendor-bbb"), Some(&b"value-b"[..]));
    }

    #[test]
    fn go_ocicrypt_style_uris() {
        let u = p("pkcs11:slot-id=2053753261?module-name=softhsm2&pin-value=1234");
        assert_eq!(u.slot_id(), Some(2_053_753_261));
        assert_eq!(u.module_name(), Some("softhsm2"));
        assert_eq!(u.pin_value().unwrap().expose_secret(), "1234");
        // The scheme name is case-insensitive, the query may be empty, `=` may be in a value.
        let u = p("PKCS11:object=a=b?");
        assert_eq!(u.object(), Some(&b"a=b"[..]));
        // `&` may appear in a path value, `/`, `?` and `|` in a query value.
        let u = p("pkcs11:object=a&b?pin-source=|/bin/x?y");
        assert_eq!(u.object(), Some(&b"a&b"[..]));
        assert_eq!(u.pin_source(), Some("|/bin/x?y"));
    }

    #[test]
    fn display_shows_path_only_and_round_trips() {
        let u = p("pkcs11:token=my%20token;id=%01%ff;object=k?pin-value=secret&module-name=x");
        let shown = u.to_string();
        assert_eq!(shown, "pkcs11:token=my%20token;id=%01%FF;object=k");
        assert_eq!(p(&shown).id(), u.id());
        let debug = format!("{u:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("module-name=x"), "{debug}");
    }

    #[test]
    fn malformed_uris_are_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "must start with"),
            ("pkcs1:object=x", "must start with"),
            ("pkcs11", "must start with"),
            ("file:///x", "must start with"),
            ("pkcs11:object", "expected name=value"),
            ("pkcs11:object=a;", "expected name=value"),
            ("pkcs11:;object=a", "expected name=value"),
            ("pkcs11:=a", "invalid path attribute name"),
            ("pkcs11:ob ject=a", "invalid path attribute name"),
            (
                "pkcs11:object=a;object=b",
                "duplicate path attribute \"object\"",
            ),
            (
                "pkcs11:?module-name=a&module-name=b",
                "duplicate query attribute",
            ),
            (
                "pkcs11:?pin-value=1&pin-value=2",
                "duplicate query attribute",
            ),
            ("pkcs11:?pin-value", "expected name=value"),
            ("pkcs11:?&pin-value=1", "expected name=value"),
            ("pkcs11:object=%", "percent-encoding"),
            ("pkcs11:object=%4", "percent-encoding"),
            ("pkcs11:object=%zz", "percent-encoding"),
            ("pkcs11:object=%+1", "percent-encoding"),
            ("pkcs11:object=%\u{e9}", "percent-encoding"),
            ("pkcs11:object=a\tb", "control character"),
            ("pkcs11:slot-id=abc", "slot-id"),
            ("pkcs11:slot-id=", "slot-id"),
            ("pkcs11:slot-id=-1", "slot-id"),
            ("pkcs11:slot-id=99999999999999999999999", "too large"),
            ("pkcs11:library-version=1.", "library-version"),
            ("pkcs11:library-version=a", "library-version"),
            ("pkcs11:type=secret", "type"),
            (
                "pkcs11:?pin-value=1&pin-source=/x",
                "pin-source and pin-value",
            ),
            ("pkcs11:?module-path=lib/x.so", "absolute"),
            ("pkcs11:?module-name=%ff", "not UTF-8"),
            ("pkcs11:?pin-value=%ff", "not UTF-8"),
        ];
        for (uri, want) in cases {
            let err = Pkcs11Uri::parse(uri).expect_err(uri).to_string();
            assert!(err.contains(want), "{uri:?}: {err}");
        }
    }

    #[test]
    fn errors_never_show_the_pin() {
        for uri in [
            "pkcs11:?pin-value=s3cr3t%zz",
            "pkcs11:?pin-value=s3cr3t&pin-source=/x",
            "pkcs11:?pin-value=s3cr3t%ff",
        ] {
            let err = Pkcs11Uri::parse(uri).unwrap_err();
            assert!(!format!("{err} {err:?}").contains("s3cr3t"), "{err:?}");
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        let alphabet = [
            "pkcs11:", "%", "%4", "%41", ";", "?", "&", "=", "a", "\u{e9}", "id", "slot-id", "\0",
            "type",
        ];
        // Every string of up to four pieces.
        let mut inputs = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for s in &inputs {
                for piece in alphabet {
                    next.push(format!("{s}{piece}"));
                }
            }
            inputs.extend(next);
            inputs.dedup();
        }
        for s in &inputs {
            let _ = Pkcs11Uri::parse(s);
            let _ = Pkcs11Uri::parse(&format!("pkcs11:{s}"));
        }
    }
}
