//! pkcs11 key files: YAML holding a `pkcs11:` URI and the module's environment.

use std::collections::BTreeMap;

use serde::Deserialize;
use zeroize::Zeroize;

use crate::ParseError;
use crate::uri::Pkcs11Uri;

/// A pkcs11 key file, as Go ocicrypt reads it:
///
/// ```yaml
/// pkcs11:
///   uri: pkcs11:token=my-token;object=my-key?module-name=softhsm2&pin-value=1234
/// module:
///   env:
///     SOFTHSM2_CONF: /path/to/softhsm2.conf
/// ```
///
/// The same file names a public key (for encryption, on the token) or a private key (for
/// decryption, on the token); `module.env` is optional and is put into the process
/// environment while the module is used (see the crate documentation).
#[derive(Clone, Debug)]
pub struct Pkcs11KeyFile {
    uri: Pkcs11Uri,
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct KeyFileYaml {
    pkcs11: Option<UriYaml>,
    #[serde(default)]
    module: Option<ModuleYaml>,
}

#[derive(Deserialize)]
struct UriYaml {
    uri: Option<String>,
}

#[derive(Deserialize)]
struct ModuleYaml {
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
}

impl Pkcs11KeyFile {
    /// Parses a key file.
    ///
    /// # Errors
    /// [`ParseError::KeyFile`] if it is not such YAML, a URI error if the URI is bad,
    /// [`ParseError::InvalidEnv`] if an environment variable cannot be set (empty name,
    /// `=` in the name, NUL anywhere).
    pub fn parse(yaml: &[u8]) -> Result<Self, ParseError> {
        let parsed: KeyFileYaml =
            serde_yaml_ng::from_slice(yaml).map_err(|e| ParseError::KeyFile {
                // Only where: the YAML parser's message may quote a value, and a key
                // file's URI may hold a PIN.
                reason: match e.location() {
                    Some(l) => format!(
                        "not a valid key file (line {}, column {})",
                        l.line(),
                        l.column()
                    ),
                    None => "not a valid key file".to_owned(),
                },
            })?;
        let mut uri_text =
            parsed
                .pkcs11
                .and_then(|p| p.uri)
                .ok_or_else(|| ParseError::KeyFile {
                    reason: "no pkcs11.uri".to_owned(),
                })?;
        let uri = Pkcs11Uri::parse(&uri_text);
        uri_text.zeroize();
        let env = parsed.module.and_then(|m| m.env).unwrap_or_default();
        for (name, value) in &env {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(ParseError::InvalidEnv {
                    name: name.escape_default().to_string(),
                    reason: "an environment variable name must be non-empty, without '=' or NUL",
                });
            }
            if value.contains('\0') {
                return Err(ParseError::InvalidEnv {
                    name: name.clone(),
                    reason: "the value contains NUL",
                });
            }
        }
        Ok(Self { uri: uri?, env })
    }

    /// Whether `data` is a pkcs11 key file (Go's `IsPkcs11PrivateKey` / `IsPkcs11PublicKey`).
    pub fn is_key_file(data: &[u8]) -> bool {
        Self::parse(data).is_ok()
    }

    /// The key's URI.
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    /// The module's environment variables (`module.env`).
    pub fn module_env(&self) -> &BTreeMap<String, String> {
        &self.env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_key_files() {
        let kf = Pkcs11KeyFile::parse(
            b"pkcs11:\n  uri: pkcs11:token=t;object=k?module-name=softhsm2&pin-value=1234\n\
              module:\n  env:\n    SOFTHSM2_CONF: /tmp/x.conf\n",
        )
        .unwrap();
        assert_eq!(kf.uri().object(), Some(&b"k"[..]));
        assert_eq!(kf.module_env()["SOFTHSM2_CONF"], "/tmp/x.conf");
        let kf = Pkcs11KeyFile::parse(b"pkcs11: {uri: 'pkcs11:object=k'}").unwrap();
        assert!(kf.module_env().is_empty());
        assert!(Pkcs11KeyFile::is_key_file(
            b"pkcs11: {uri: 'pkcs11:object=k'}\nmodule: {}"
        ));
    }

    #[test]
    fn bad_key_files() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "no pkcs11.uri"),
            (b"pkcs11: {}", "no pkcs11.uri"),
            (b"- a\n- b", "pkcs11 key file"),
            (b"pkcs11: [", "pkcs11 key file"),
            (
                b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
                "pkcs11 key file",
            ),
            (b"pkcs11: {uri: 'http://x'}", "must start with"),
            (b"pkcs11: {uri: 'pkcs11:a=1;a=2'}", "duplicate"),
            (
                b"pkcs11: {uri: 'pkcs11:'}\nmodule: {env: {'A=B': x}}",
                "environment variable",
            ),
            (
                b"pkcs11: {uri: 'pkcs11:'}\nmodule: {env: {'': x}}",
                "environment variable",
            ),
            (
                b"pkcs11: {uri: 'pkcs11:'}\nmodule: {env: {A: \"x\\0\"}}",
                "NUL",
            ),
            (&[0xff, 0xfe, 0x00], "pkcs11 key file"),
        ];
        for (yaml, want) in cases {
            let err = Pkcs11KeyFile::parse(yaml).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(yaml)
            );
        }
    }
}
