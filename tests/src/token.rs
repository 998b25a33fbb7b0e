//! A Bearer token service for docker-registry's `auth.token`, played by threads of the test:
//! it checks the Basic credentials of [`REGISTRY_USER`](crate::REGISTRY_USER) and answers
//! with a JWT signed by a key whose certificate the registry trusts, granting the scopes
//! asked for.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use openssl::x509::X509;
use serde_json::json;

use crate::{REGISTRY_USER, self_signed};

/// One request the token service answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The user of its Basic credentials, if it had any.
    pub user: Option<String>,
    /// Whether a token was issued (the credentials were right).
    pub issued: bool,
    /// Its `scope` parameters (`repository:NAME:pull,push`).
    pub scopes: Vec<String>,
    /// Whether the token issued had expired already (see [`TokenServer::expire_next`]).
    pub expired: bool,
}

/// The token service; it stops with the test process.
#[derive(Debug)]
pub struct TokenServer {
    /// The certificate (PEM) of the key that signs the tokens: the registry's
    /// `rootcertbundle`.
    pub certificate: PathBuf,
    addr: String,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    expire: Arc<AtomicUsize>,
}

struct Signing {
    key: PKey<Private>,
    cert_der: Vec<u8>,
}

impl TokenServer {
    /// The registry's `service` name, the `aud` of its tokens.
    pub const SERVICE: &str = "ocicrypt-test-registry";
    /// The `iss` of the tokens.
    pub const ISSUER: &str = "ocicrypt-test-issuer";

    /// Starts the service on a free loopback port, with a signing key and certificate made
    /// by `openssl` in `dir`.
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let (key, certificate) = (dir.join("token.key"), dir.join("token.crt"));
        self_signed(&key, &certificate, "ocicrypt test token issuer");
        let signing = Arc::new(Signing {
            key: PKey::private_key_from_pem(&std::fs::read(&key).unwrap()).unwrap(),
            cert_der: X509::from_pem(&std::fs::read(&certificate).unwrap())
                .unwrap()
                .to_der()
                .unwrap(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests: Arc<Mutex<Vec<TokenRequest>>> = Arc::default();
        let expire: Arc<AtomicUsize> = Arc::default();
        let (seen, expiring) = (requests.clone(), expire.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (signing, seen, expiring) = (signing.clone(), seen.clone(), expiring.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn);
                    let mut head = Vec::new();
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 2 {
                        head.push(line.trim_end().to_owned());
                        line.clear();
                    }
                    let answer = answer(&signing, &head, &seen, &expiring);
                    let _ = reader.into_inner().write_all(&answer);
                });
            }
        });
        Self {
            certificate,
            addr,
            requests,
            expire,
        }
    }

    /// The next `n` tokens issued have expired an hour ago, as if a long run had outlived
    /// them: the registry refuses them.
    pub fn expire_next(&self, n: usize) {
        self.expire.store(n, Ordering::SeqCst);
    }

    /// The URL clients are sent to (`http://127.0.0.1:PORT/token`).
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// The HTTP answer to a request whose head is `head`.
fn answer(
    signing: &Signing,
    head: &[String],
    seen: &Mutex<Vec<TokenRequest>>,
    expiring: &AtomicUsize,
) -> Vec<u8> {
    let target = head
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/");
    let url = url::Url::parse(&format!("http://token{target}")).unwrap();
    let scopes: Vec<String> = url
        .query_pairs()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let user = head
        .iter()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("authorization")
                .then(|| value.trim().strip_prefix("Basic ").map(str::to_owned))?
        })
        .and_then(|b| String::from_utf8(STANDARD.decode(b).ok()?).ok());
    let (name, issued) = match user.as_deref().and_then(|u| u.split_once(':')) {
        Some((u, p)) => (Some(u.to_owned()), (u, p) == REGISTRY_USER),
        None => (None, false),
    };
    let issued = issued && url.path() == "/token";
    let expired = issued
        && expiring
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    seen.lock().unwrap().push(TokenRequest {
        user: name.clone(),
        issued,
        scopes: scopes.clone(),
        expired,
    });
    if !issued {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        return http("401 Unauthorized", body);
    }
    let token = jwt(signing, name.as_deref().unwrap_or(""), &scopes, expired);
    let body = json!({ "token": token, "access_token": token, "expires_in": 300 }).to_string();
    http("200 OK", body.as_bytes())
}

fn http(status: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A token as distribution's token authenticator checks it: RS256, the signing certificate
/// in `x5c`, the issuer, audience and times, and an `access` entry per scope. An `expired`
/// one was valid from two hours ago for five minutes.
fn jwt(signing: &Signing, subject: &str, scopes: &[String], expired: bool) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // distribution allows a minute of clock skew.
    let now = if expired { now - 7200 } else { now };
    let access: Vec<_> = scopes
        .iter()
        .filter_map(|s| {
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(json!({ "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() }))
        })
        .collect();
    let header =
        json!({ "typ": "JWT", "alg": "RS256", "x5c": [STANDARD.encode(&signing.cert_der)] });
    let claims = json!({
        "iss": TokenServer::ISSUER,
        "sub": subject,
        "aud": TokenServer::SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now - 10,
        "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signer = Signer::new(MessageDigest::sha256(), &signing.key).unwrap();
    signer.update(signed.as_bytes()).unwrap();
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(signer.sign_to_vec().unwrap())
    )
}
