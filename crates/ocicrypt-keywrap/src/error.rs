//! The error type shared by all key-wrap schemes.

use std::fmt;

/// A boxed error from a backend library, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong while wrapping or unwrapping a layer key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A recipient's public key, certificate or key file could not be used.
    #[error("{scheme}: invalid recipient key: {reason}")]
    InvalidRecipient {
        /// The scheme.
        scheme: String,
        /// What is wrong with it.
        reason: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A private key could not be parsed (and it was not a password problem).
    #[error("{scheme}: invalid private key: {reason}")]
    InvalidPrivateKey {
        /// The scheme.
        scheme: String,
        /// What is wrong with it.
        reason: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A private key is encrypted and no password was given.
    #[error("{scheme}: missing password for encrypted private key")]
    MissingPassword {
        /// The scheme.
        scheme: String,
    },
    /// A private key is encrypted and the given password does not open it.
    #[error("{scheme}: wrong password: could not decrypt private key")]
    WrongPassword {
        /// The scheme.
        scheme: String,
    },
    /// The wrapped-key blob is not what this scheme writes.
    #[error("{scheme}: malformed wrapped key: {reason}")]
    MalformedBlob {
        /// The scheme.
        scheme: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The blob or key uses an algorithm this implementation does not support.
    #[error("{scheme}: unsupported algorithm {algorithm}")]
    UnsupportedAlgorithm {
        /// The scheme.
        scheme: String,
        /// The algorithm's name.
        algorithm: String,
    },
    /// The blob asks for more work than a limit of the scheme allows: more recipients,
    /// packets or decrypted bytes than any real image has. Each scheme documents its limits
    /// as `pub const`s; Go ocicrypt has none.
    #[error("{scheme}: wrapped key exceeds a limit: more than {limit} {what}")]
    LimitExceeded {
        /// The scheme.
        scheme: String,
        /// What was counted (`"recipients"`, `"bytes of decrypted data"`, ...).
        what: &'static str,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// None of the given keys opens the blob.
    #[error("{scheme}: no suitable key found for decrypting layer key{}", format_causes(.causes))]
    NoMatchingKey {
        /// The scheme.
        scheme: String,
        /// Why each key failed, in the order tried (no key material).
        causes: Vec<String>,
    },
    /// The configuration given to the scheme is inconsistent.
    #[error("{scheme}: invalid configuration: {reason}")]
    Config {
        /// The scheme.
        scheme: String,
        /// What is wrong.
        reason: String,
    },
    /// A backend (crypto library, token, external program) failed.
    #[error("{scheme}: {context}")]
    Backend {
        /// The scheme.
        scheme: String,
        /// What we were doing.
        context: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

/// Why one key or recipient could not be used: a reason and the backend's error, if any.
///
/// Schemes collect these while trying keys; one becomes an [`Error`] (with
/// [`recipient`](Failure::recipient) or [`private_key`](Failure::private_key)), or its
/// text becomes a line of [`Error::NoMatchingKey`]'s causes.
///
/// ```
/// use ocicrypt_keywrap::{Error, Failure};
///
/// let e = Failure::new("not an RSA key").recipient("pkcs7");
/// assert!(matches!(e, Error::InvalidRecipient { .. }));
/// assert_eq!(e.to_string(), "pkcs7: invalid recipient key: not an RSA key");
/// ```
#[derive(Debug)]
pub struct Failure {
    reason: String,
    source: Option<BoxError>,
}

impl Failure {
    /// A failure with a reason only.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            source: None,
        }
    }

    /// A failure caused by a backend's error.
    pub fn with_source(reason: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    /// The same failure with `prefix` and `": "` before the reason (to say which key).
    #[must_use]
    pub fn prefixed(mut self, prefix: impl fmt::Display) -> Self {
        self.reason = format!("{prefix}: {}", self.reason);
        self
    }

    /// The reason, without the source.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// [`Error::InvalidRecipient`] of `scheme`.
    pub fn recipient(self, scheme: &str) -> Error {
        Error::InvalidRecipient {
            scheme: scheme.to_owned(),
            reason: self.reason,
            source: self.source,
        }
    }

    /// [`Error::InvalidPrivateKey`] of `scheme`.
    pub fn private_key(self, scheme: &str) -> Error {
        Error::InvalidPrivateKey {
            scheme: scheme.to_owned(),
            reason: self.reason,
            source: self.source,
        }
    }
}

/// The reason, then `": "` and the source if there is one.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

fn format_causes(causes: &[String]) -> String {
    causes.iter().map(|c| format!("\n- {c}")).collect()
}

impl Error {
    /// [`Error::Backend`]: `scheme`'s backend failed while doing `context`.
    pub fn backend(scheme: &str, context: &str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            scheme: scheme.to_owned(),
            context: context.to_owned(),
            source: source.into(),
        }
    }

    /// [`Error::MalformedBlob`]: the wrapped key is not what `scheme` writes.
    pub fn malformed(scheme: &str, reason: impl fmt::Display) -> Self {
        Self::MalformedBlob {
            scheme: scheme.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// [`Error::LimitExceeded`]: a blob of `scheme` has more than `limit` of `what`.
    pub fn limit_exceeded(scheme: &str, what: &'static str, limit: usize) -> Self {
        Self::LimitExceeded {
            scheme: scheme.to_owned(),
            what,
            limit,
        }
    }

    /// Whether this error is about a missing or wrong password (Go's `IsPasswordError`).
    pub fn is_password_error(&self) -> bool {
        matches!(
            self,
            Self::MissingPassword { .. } | Self::WrongPassword { .. }
        )
    }
}
