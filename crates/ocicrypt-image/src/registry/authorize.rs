//! How requests to a registry are authorized: the scheme its `/v2/` challenge names (none,
//! Basic, or Bearer tokens from a token service, as the distribution token spec has it),
//! and the `Authorization` header that goes with it. A token is fetched for the scopes a
//! connection needs, again shortly before it expires, and again when a request with it is
//! refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use zeroize::Zeroizing;

use super::Credentials;

/// The largest answer of a token service we read (1 MiB).
const MAX_TOKEN_ANSWER: usize = 1024 * 1024;

/// The shortest life a token is given: the token spec's default, and what
/// containers/image assumes when a service says less.
const MIN_TOKEN_LIFE: Duration = Duration::from_secs(60);

/// How long before its expiry a token is replaced.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// What a registry's `/v2/` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Challenge {
    /// Nothing: anonymous access.
    None,
    /// HTTP Basic authentication with the credentials.
    Basic,
    /// Bearer tokens from the service at `realm`.
    Bearer {
        /// The token service.
        realm: Url,
        /// The `service` to name to it.
        service: Option<String>,
    },
}

/// Why no authorization could be had.
#[derive(Debug, thiserror::Error)]
pub(super) enum AuthError {
    /// The credentials were refused, or there were none and some are needed.
    #[error("the credentials were refused")]
    Denied,
    /// The registry asked for something we cannot do.
    #[error("unsupported authentication challenge: {0}")]
    Unsupported(String),
    /// The token service answered, but not with a token.
    #[error("the token service {realm}: {what}")]
    Token {
        /// The service.
        realm: String,
        /// What was wrong.
        what: String,
    },
    /// The token service could not be reached.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

impl Challenge {
    /// The challenge of a 401 answer's `WWW-Authenticate` headers: Bearer where offered,
    /// else Basic.
    pub(super) fn from_headers(headers: &HeaderMap) -> Result<Self, AuthError> {
        let mut basic = false;
        let mut seen = Vec::new();
        for value in headers.get_all(WWW_AUTHENTICATE) {
            let Ok(value) = value.to_str() else { continue };
            let Ok(challenges) = http_auth::parse_challenges(value) else {
                seen.push(value.chars().take(100).collect());
                continue;
            };
            for c in challenges {
                if c.scheme.eq_ignore_ascii_case("bearer") {
                    let param = |name: &str| {
                        c.params
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.to_unescaped())
                    };
                    let realm = param("realm").ok_or_else(|| {
                        AuthError::Unsupported("a Bearer challenge without a realm".into())
                    })?;
                    let realm = Url::parse(&realm).map_err(|e| {
                        AuthError::Unsupported(format!("a Bearer realm that is no URL ({e})"))
                    })?;
                    if !matches!(realm.scheme(), "https" | "http") {
                        return Err(AuthError::Unsupported(format!(
                            "a Bearer realm of scheme {}",
                            realm.scheme()
                        )));
                    }
                    return Ok(Self::Bearer {
                        realm,
                        service: param("service"),
                    });
                }
                basic |= c.scheme.eq_ignore_ascii_case("basic");
                seen.push(c.scheme.to_owned());
            }
        }
        if basic {
            return Ok(Self::Basic);
        }
        Err(AuthError::Unsupported(if seen.is_empty() {
            "a 401 answer without WWW-Authenticate".into()
        } else {
            seen.join(", ")
        }))
    }
}

struct Token {
    header: HeaderValue,
    expires: Instant,
}

/// The authorization of one connection: its challenge, credentials and tokens.
pub(super) struct Authorizer {
    challenge: Challenge,
    /// `Basic base64(USER:PASSWORD)`, when there are credentials.
    basic: Option<HeaderValue>,
    /// The scope of the connection's tokens: `repository:REPO:pull` or `...:pull,push`.
    scope: String,
    /// Tokens by the extra scope they also cover (`""`: none).
    tokens: Mutex<HashMap<String, Token>>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("challenge", &self.challenge)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// No authorization: what a connection uses before it knows the registry's challenge
    /// (the `/v2/` probe is anonymous).
    pub(super) fn anonymous() -> Self {
        Self {
            challenge: Challenge::None,
            basic: None,
            scope: String::new(),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The authorization `challenge` asks for, with `credentials` if any, for `scope`.
    ///
    /// # Errors
    /// [`AuthError::Unsupported`] when the credentials cannot be put in a header.
    pub(super) fn new(
        challenge: Challenge,
        credentials: Option<&Credentials>,
        scope: String,
    ) -> Result<Self, AuthError> {
        let basic = credentials
            .map(|c| {
                use base64::Engine as _;
                let plain = Zeroizing::new(format!("{}:{}", c.username, c.password.as_str()));
                let value = Zeroizing::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(plain.as_bytes())
                ));
                let mut h = HeaderValue::from_str(&value).map_err(|_| {
                    AuthError::Unsupported("credentials that are not valid in a header".into())
                })?;
                h.set_sensitive(true);
                Ok::<_, AuthError>(h)
            })
            .transpose()?;
        Ok(Self {
            challenge,
            basic,
            scope,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The challenge.
    pub(super) fn challenge(&self) -> &Challenge {
        &self.challenge
    }

    /// Whether there are credentials.
    pub(super) fn has_credentials(&self) -> bool {
        self.basic.is_some()
    }

    /// The header of a request, whose token also covers `extra` (a scope) if given: the
    /// credentials for Basic, a token (fetched when there is none or it is about to expire)
    /// for Bearer.
    ///
    /// # Errors
    /// When the token service refuses or fails.
    pub(super) async fn header(
        &self,
        http: &reqwest::Client,
        extra: Option<&str>,
    ) -> Result<Option<HeaderValue>, AuthError> {
        let (realm, service) = match &self.challenge {
            Challenge::None => return Ok(None),
            Challenge::Basic => return Ok(self.basic.clone()),
            Challenge::Bearer { realm, service } => (realm, service),
        };
        let key = extra.unwrap_or_default();
        if let Some(t) = self.tokens().get(key)
            && Instant::now() + TOKEN_MARGIN < t.expires
        {
            return Ok(Some(t.header.clone()));
        }
        let token = self.fetch(http, realm, service.as_deref(), extra).await?;
        let header = token.header.clone();
        self.tokens().insert(key.to_owned(), token);
        Ok(Some(header))
    }

    /// Whether a request refused with 401 is worth another try: with Bearer, after the
    /// token it had is forgotten (it may have expired, or been revoked).
    pub(super) fn retry_after_401(&self, extra: Option<&str>) -> bool {
        if !matches!(self.challenge, Challenge::Bearer { .. }) {
            return false;
        }
        self.tokens().remove(extra.unwrap_or_default());
        true
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, Token>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// GET `realm?service=..&scope=..`, with the credentials if any.
    async fn fetch(
        &self,
        http: &reqwest::Client,
        realm: &Url,
        service: Option<&str>,
        extra: Option<&str>,
    ) -> Result<Token, AuthError> {
        let mut url = realm.clone();
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", &self.scope);
            if let Some(e) = extra {
                q.append_pair("scope", e);
            }
        }
        let mut req = http.get(url);
        if let Some(b) = &self.basic {
            req = req.header(AUTHORIZATION, b.clone());
        }
        let bad = |what: String| AuthError::Token {
            realm: realm.to_string(),
            what,
        };
        let mut res = req.send().await?;
        match res.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(AuthError::Denied),
            s if !s.is_success() => return Err(bad(format!("HTTP status {}", s.as_u16()))),
            _ => {}
        }
        let mut body = Zeroizing::new(Vec::new());
        while let Some(chunk) = res.chunk().await? {
            if body.len() + chunk.len() > MAX_TOKEN_ANSWER {
                return Err(bad(format!("an answer over {MAX_TOKEN_ANSWER} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("an answer that is not a token ({e})")))?;
        let (token, access_token) = (
            answer.token.map(Zeroizing::new),
            answer.access_token.map(Zeroizing::new),
        );
        let token = token
            .filter(|t| !t.is_empty())
            .or(access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("an answer without a token".into()))?;
        let mut header = HeaderValue::from_str(&Zeroizing::new(format!("Bearer {}", *token)))
            .map_err(|_| bad("a token that is not valid in a header".into()))?;
        header.set_sensitive(true);
        let life = Duration::from_secs(answer.expires_in.unwrap_or(0)).max(MIN_TOKEN_LIFE);
        Ok(Token {
            header,
            expires: Instant::now() + life,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(values: &[&str]) -> Result<Challenge, AuthError> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        Challenge::from_headers(&h)
    }

    #[test]
    fn challenges() {
        assert_eq!(
            challenge(&[r#"Basic realm="Registry Realm""#]).unwrap(),
            Challenge::Basic
        );
        let c = challenge(&[
            r#"Basic realm="x""#,
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        ])
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: Url::parse("https://auth.example/token").unwrap(),
                service: Some("registry.example".into())
            }
        );
        for bad in [
            &[][..],
            &[r#"Negotiate abc"#],
            &[r#"Bearer service="x""#],
            &[r#"Bearer realm="file:///etc/passwd""#],
            &[r#"Bearer realm="not a url""#],
            &["\"unterminated"],
        ] {
            assert!(
                matches!(challenge(bad), Err(AuthError::Unsupported(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn basic_header_is_sensitive_and_redacted() {
        let creds = Credentials::new("u", "p@ss");
        let a = Authorizer::new(Challenge::Basic, Some(&creds), "s".into()).unwrap();
        let h = a.basic.clone().unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h, "Basic dTpwQHNz");
        assert!(!format!("{a:?}").contains("dTpwQHNz"));
    }
}
