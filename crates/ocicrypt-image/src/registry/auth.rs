//! Credentials from auth files, and certificate directories, found where skopeo looks.
// Without the `registry` feature only the public lookups are used.
#![cfg_attr(not(feature = "registry"), allow(dead_code))]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{Credentials, RegistryOptions};
use crate::{Error, Result};

/// The largest auth file we read (1 MiB).
const MAX_AUTH_FILE: u64 = 1024 * 1024;

/// Where credentials are looked up when no auth file is named, in order: `$REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json`, then `~/.docker/config.json`. The first that
/// exists is used.
pub fn default_auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(Path::new(&d).join("containers/auth.json"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        files.push(Path::new(&h).join(".docker/config.json"));
    }
    files
}

/// Where CA certificates for `host` (`HOST[:PORT]`) are looked up when no directory is
/// named: `/etc/containers/certs.d/HOST[:PORT]` and `/etc/docker/certs.d/HOST[:PORT]`.
pub fn default_cert_dirs(host: &str) -> Vec<PathBuf> {
    ["/etc/containers/certs.d", "/etc/docker/certs.d"]
        .iter()
        .map(|d| Path::new(d).join(host))
        .collect()
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
}

/// `https://index.docker.io/v1/` → `docker.io`; `host:5000/` → `host:5000`.
fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.trim_end_matches('/');
    let k = k.strip_suffix("/v1").unwrap_or(k);
    let k = k.strip_suffix("/v2").unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => k.to_owned(),
    }
}

/// The credentials the auth file at `path` holds for `registry`/`repository`: the entry of
/// the longest key that is the registry, or a namespace of it holding the repository.
pub(crate) fn from_auth_file(
    path: &Path,
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>> {
    let what = || format!("auth file {}", path.display());
    let meta = std::fs::metadata(path).map_err(Error::io(format!("cannot read {}", what())))?;
    if meta.len() > MAX_AUTH_FILE {
        return Err(Error::RegistryConfig {
            what: format!("{} is larger than 1 MiB", what()),
        });
    }
    let text =
        Zeroizing::new(std::fs::read(path).map_err(Error::io(format!("cannot read {}", what())))?);
    // serde_json's error names only a line and column, never the content.
    let file: AuthFile = serde_json::from_slice(&text).map_err(Error::json(what()))?;
    let full = format!("{registry}/{repository}");
    let best = file
        .auths
        .iter()
        .map(|(k, v)| (normalize_key(k), v))
        .filter(|(k, _)| k == registry || full.starts_with(&format!("{k}/")))
        .max_by_key(|(k, _)| k.len());
    let Some((key, entry)) = best else {
        return Ok(None);
    };
    let Some(auth) = &entry.auth else {
        return Ok(None);
    };
    let bad = || Error::RegistryConfig {
        what: format!(
            "{}: the entry for {key} is not base64 of USER:PASSWORD",
            what()
        ),
    };
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?,
    );
    let decoded = std::str::from_utf8(&decoded).map_err(|_| bad())?;
    let (user, pass) = decoded.split_once(':').ok_or_else(bad)?;
    Ok(Some(Credentials::new(user, pass)))
}

/// The credentials to use for `registry`/`repository`: given ones, else those of the named
/// auth file (which must exist), else those of the first default auth file that exists.
pub(crate) fn credentials(
    o: &RegistryOptions,
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>> {
    if let Some(c) = &o.credentials {
        return Ok(Some(c.clone()));
    }
    if let Some(f) = &o.auth_file {
        return from_auth_file(f, registry, repository);
    }
    match default_auth_files().into_iter().find(|f| f.is_file()) {
        Some(f) => from_auth_file(&f, registry, repository),
        None => Ok(None),
    }
}

/// What a certificate directory holds, as containers-certs.d(5) lays it out.
#[derive(Default)]
pub(crate) struct TlsFiles {
    /// PEM CA certificates to trust (`*.crt`).
    pub(crate) cas: Vec<Vec<u8>>,
    /// A client certificate and its key, PEM, one after the other (`NAME.cert` and
    /// `NAME.key`), and the certificate's file, for messages.
    pub(crate) identity: Option<(Zeroizing<Vec<u8>>, PathBuf)>,
}

fn read_small(p: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(p).map_err(Error::io(format!("cannot read {}", p.display())))?;
    if meta.len() > MAX_AUTH_FILE {
        return Err(Error::RegistryConfig {
            what: format!("{} is larger than 1 MiB", p.display()),
        });
    }
    std::fs::read(p).map_err(Error::io(format!("cannot read {}", p.display())))
}

/// The TLS files for `registry`: those of the named directory (which must exist) or of the
/// default ones that exist. `*.crt` are CA certificates; `NAME.cert` is a client certificate
/// whose key is `NAME.key`. A certificate without its key, a key without its certificate,
/// or two client certificates is an error, as in containers/image.
pub(crate) fn tls_files(o: &RegistryOptions, registry: &str) -> Result<TlsFiles> {
    let dirs = match &o.cert_dir {
        Some(d) => {
            if !d.is_dir() {
                return Err(Error::RegistryConfig {
                    what: format!("certificate directory {} does not exist", d.display()),
                });
            }
            vec![d.clone()]
        }
        None => default_cert_dirs(registry)
            .into_iter()
            .filter(|d| d.is_dir())
            .collect(),
    };
    let mut files = TlsFiles::default();
    for dir in dirs {
        let entries =
            std::fs::read_dir(&dir).map_err(Error::io(format!("cannot read {}", dir.display())))?;
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for p in names {
            let pair = |ext: &str| p.with_extension(ext);
            match p.extension().and_then(|e| e.to_str()) {
                Some("crt") => files.cas.push(read_small(&p)?),
                Some("cert") => {
                    let key = pair("key");
                    if !key.is_file() {
                        return Err(Error::RegistryConfig {
                            what: format!(
                                "missing key {} for client certificate {}",
                                key.display(),
                                p.display()
                            ),
                        });
                    }
                    if let Some((_, first)) = &files.identity {
                        return Err(Error::RegistryConfig {
                            what: format!(
                                "two client certificates for {registry}: {} and {}",
                                first.display(),
                                p.display()
                            ),
                        });
                    }
                    let mut pem = Zeroizing::new(read_small(&p)?);
                    pem.push(b'\n');
                    pem.extend_from_slice(&Zeroizing::new(read_small(&key)?));
                    files.identity = Some((pem, p.clone()));
                }
                Some("key") if !pair("cert").is_file() => {
                    return Err(Error::RegistryConfig {
                        what: format!(
                            "missing client certificate {} for key {}",
                            pair("cert").display(),
                            p.display()
                        ),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("auth.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn auth_file_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let p = write(
            dir.path(),
            &format!(
                r#"{{"auths": {{"localhost:5000": {{"auth": "{}"}}, "localhost:5000/team": {{"auth": "{}"}}, "https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
                b("a:pa:ss"),
                b("t:tt"),
                b("d:dd")
            ),
        );
        let c = from_auth_file(&p, "localhost:5000", "other/x")
            .unwrap()
            .unwrap();
        assert_eq!((c.username(), c.password.as_str()), ("a", "pa:ss"));
        let c = from_auth_file(&p, "localhost:5000", "team/x")
            .unwrap()
            .unwrap();
        assert_eq!(c.username(), "t");
        let c = from_auth_file(&p, "docker.io", "library/alpine")
            .unwrap()
            .unwrap();
        assert_eq!(c.username(), "d");
        assert!(from_auth_file(&p, "elsewhere:1", "x").unwrap().is_none());

        let p = write(dir.path(), r#"{"auths": {"h": {"auth": "!!secret!!"}}}"#);
        let e = from_auth_file(&p, "h", "x").unwrap_err().to_string();
        assert!(e.contains("not base64") && !e.contains("secret"), "{e}");
        let p = write(dir.path(), r#"{"auths": {"h": {"auth": "sec"#);
        let e = format!("{:#}", from_auth_file(&p, "h", "x").unwrap_err());
        assert!(!e.contains("sec\""), "{e}");
    }

    #[test]
    fn certificate_directories() {
        let dir = tempfile::tempdir().unwrap();
        let o = RegistryOptions::default().cert_dir(dir.path());
        std::fs::write(dir.path().join("ca.crt"), "x").unwrap();
        let f = tls_files(&o, "h").unwrap();
        assert_eq!(f.cas, vec![b"x".to_vec()]);
        assert!(f.identity.is_none());
        // A client certificate needs its key, and a key its certificate.
        std::fs::write(dir.path().join("client.cert"), "C").unwrap();
        let e = tls_files(&o, "h").err().unwrap().to_string();
        assert!(e.contains("missing key") && e.contains("client.key"), "{e}");
        std::fs::write(dir.path().join("client.key"), "K").unwrap();
        let f = tls_files(&o, "h").unwrap();
        let (pem, file) = f.identity.unwrap();
        assert_eq!(pem.as_slice(), b"C\nK");
        assert_eq!(file, dir.path().join("client.cert"));
        std::fs::write(dir.path().join("other.key"), "K").unwrap();
        let e = tls_files(&o, "h").err().unwrap().to_string();
        assert!(e.contains("missing client certificate"), "{e}");
        std::fs::write(dir.path().join("other.cert"), "C").unwrap();
        let e = tls_files(&o, "h").err().unwrap().to_string();
        assert!(e.contains("two client certificates"), "{e}");
        let o = RegistryOptions::default().cert_dir(dir.path().join("missing"));
        assert!(tls_files(&o, "h").is_err());
    }
}
