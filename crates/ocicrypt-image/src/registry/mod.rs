//! Registries: `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]` references, and how to reach them
//! (credentials, auth files, certificate directories), the way skopeo takes them.
//!
//! The transport itself ([`RegistrySource`], [`RegistryDestination`]) speaks the OCI
//! distribution API over `reqwest` (Basic and Bearer-token auth, CA certificates and
//! client certificates from certificate directories) and needs the `registry` feature (on
//! by default). Without it, `docker://` references still parse, and using one is
//! [`Error::RegistryUnsupported`](crate::Error::RegistryUnsupported).
//!
//! ```
//! use ocicrypt_image::registry::{Credentials, RegistryOptions};
//! use ocicrypt_image::{ImageRef, Options};
//! let src: ImageRef = "docker://localhost:5000/app:v1".parse()?;
//! let to = RegistryOptions::default()
//!     .credentials(Credentials::new("ci", "not-a-real-password"))
//!     .cert_dir("/etc/containers/certs.d/localhost:5000");
//! let options = Options::default().destination_registry(to);
//! # let _ = (src, options);
//! # Ok::<(), ocicrypt_image::ParseRefError>(())
//! ```

mod auth;
#[cfg(feature = "registry")]
mod authorize;
#[cfg(feature = "registry")]
mod client;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use zeroize::Zeroizing;

pub use auth::{default_auth_files, default_cert_dirs};
#[cfg(feature = "registry")]
pub use client::{MAX_MANIFEST_SIZE, RegistryDestination, RegistrySource};

use crate::ParseRefError;

/// An image in a registry: `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`. As with skopeo and
/// docker, a name without a host is on `docker.io` (`docker://alpine` is
/// `docker.io/library/alpine:latest`), and the tag defaults to `latest`.
///
/// ```
/// use ocicrypt_image::registry::RegistryRef;
/// let r: RegistryRef = "docker://localhost:5000/team/app:v1".parse()?;
/// assert_eq!((r.registry(), r.repository(), r.tag()), ("localhost:5000", "team/app", Some("v1")));
/// assert_eq!(r.to_string(), "docker://localhost:5000/team/app:v1");
/// # Ok::<(), ocicrypt_image::ParseRefError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl RegistryRef {
    /// The registry's host, with its port if one was given (`docker.io` by default).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag; `latest` when neither a tag nor a digest was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:...`), when the reference names one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
}

impl FromStr for RegistryRef {
    type Err = ParseRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| ParseRefError::InvalidRegistryRef {
            reference: s.to_owned(),
            reason,
        };
        let Some(rest) = s.strip_prefix("docker://") else {
            return Err(bad("registry references start with docker://".into()));
        };
        if rest.is_empty() {
            return Err(bad("the image name is empty".into()));
        }
        let parsed =
            oci_spec::distribution::Reference::try_from(rest).map_err(|e| bad(e.to_string()))?;
        let digest = parsed.digest().map(str::to_owned);
        let tag = match (parsed.tag(), &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_owned()),
        };
        Ok(Self {
            registry: parsed.registry().to_owned(),
            repository: parsed.repository().to_owned(),
            tag,
            digest,
        })
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "docker://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A user name and password for a registry (`--src-creds USER:PASSWORD`). The password is
/// zeroized when dropped and never shown by `Debug`.
#[derive(Clone)]
pub struct Credentials {
    pub(crate) username: String,
    #[cfg_attr(not(feature = "registry"), allow(dead_code))]
    pub(crate) password: Zeroizing<String>,
}

impl Credentials {
    /// A user name and its password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: Zeroizing::new(password.into()),
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to reach one registry: credentials, where to look them up, which certificates to
/// trust, and whether TLS is verified. The defaults are skopeo's: credentials from the first
/// auth file of [`default_auth_files`] that exists, CA certificates from
/// [`default_cert_dirs`], and verified HTTPS only.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RegistryOptions {
    pub(crate) credentials: Option<Credentials>,
    pub(crate) auth_file: Option<PathBuf>,
    pub(crate) cert_dir: Option<PathBuf>,
    pub(crate) tls_verify: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            credentials: None,
            auth_file: None,
            cert_dir: None,
            tls_verify: true,
        }
    }
}

impl RegistryOptions {
    /// Uses these credentials (`--creds`), whatever the auth files say.
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Looks credentials up in this file only (`--authfile`): a containers `auth.json` or a
    /// docker `config.json` (`auths.HOST.auth` is base64 of `user:password`).
    #[must_use]
    pub fn auth_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth_file = Some(path.into());
        self
    }

    /// Trusts the CA certificates (`*.crt`) in this directory (`--cert-dir`), instead of
    /// the [`default_cert_dirs`].
    #[must_use]
    pub fn cert_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.cert_dir = Some(path.into());
        self
    }

    /// With `false` (`--tls-verify=false`): accept any certificate, and plain HTTP when the
    /// registry does not speak HTTPS. Default `true`: verified HTTPS only.
    #[must_use]
    pub fn tls_verify(mut self, verify: bool) -> Self {
        self.tls_verify = verify;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_refs() {
        let r: RegistryRef = "docker://alpine".parse().unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/alpine");
        assert_eq!(r.tag(), Some("latest"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r: RegistryRef = format!("docker://127.0.0.1:5000/a/b@{d}").parse().unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.to_string(), format!("docker://127.0.0.1:5000/a/b@{d}"));
        for bad in [
            "docker://",
            "docker://h/x@sha256:abc",
            "docker://h/Bad",
            "docker://h/x:bad tag",
            "oci:/x",
        ] {
            assert!(bad.parse::<RegistryRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_are_redacted() {
        let o = RegistryOptions::default().credentials(Credentials::new("u", "hunter2"));
        let shown = format!("{o:?}");
        assert!(
            shown.contains("\"u\"") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
