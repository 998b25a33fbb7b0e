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
        causes: Vec<Cause>,
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
/// [`recipient`](Failure::recipient) or [`private_key`](Failure::private_key)), or a
/// [`Cause`] of [`Error::NoMatchingKey`].
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

/// A failure is an error of its own too. Its message already ends with the backend's (one
/// line, as every message here), so it reports no `source`, which would repeat it.
impl std::error::Error for Failure {}

/// `": "` and the causes joined with `"; "`: one line, as error messages are.
fn format_causes(causes: &[Cause]) -> String {
    let mut out = String::new();
    for (i, c) in causes.iter().enumerate() {
        out.push_str(if i == 0 { ": " } else { "; " });
        out.push_str(&c.to_string());
    }
    out
}

/// Why one key did not open a wrapped key, or why there was none to try: one entry of
/// [`Error::NoMatchingKey`]. It names the key (by its file name, see
/// [`KeyFile::named`](crate::KeyFile::named), a URI, or its place among the keys) and the
/// recipient of the blob it was tried on, never key material.
///
/// ```
/// use ocicrypt_keywrap::{Cause, CauseKind, Failure};
///
/// let c = Cause::new(CauseKind::Refused(Failure::new("RSA-OAEP decryption failed")))
///     .key("private key alice.pem")
///     .recipient("recipient 2");
/// assert_eq!(c.to_string(), "private key alice.pem, recipient 2: RSA-OAEP decryption failed");
/// assert!(matches!(c.kind, CauseKind::Refused(_)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Cause {
    /// The key the cause is about, if one.
    pub key: Option<String>,
    /// The recipient of the blob the key was tried on, if one.
    pub recipient: Option<String>,
    /// What happened.
    pub kind: CauseKind,
}

/// What happened to one key (see [`Cause`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum CauseKind {
    /// There was no key of this scheme to try (none given, or the provider was not
    /// selected); the text says which.
    NoKey(String),
    /// The key could not be read, so it was skipped (the error of reading it).
    Unreadable(Box<Error>),
    /// The key is of a kind this scheme cannot use for this blob, so it was skipped.
    Unsuitable(String),
    /// The blob was not wrapped for this key: no recipient names it.
    NotARecipient(String),
    /// The key was tried on the recipient, and did not open it.
    Refused(Failure),
    /// The recipient's entry cannot be used: an unsupported algorithm, or it is damaged.
    BadRecipient(String),
}

impl Cause {
    /// A cause of kind `kind`, about no key or recipient in particular.
    pub fn new(kind: CauseKind) -> Self {
        Self {
            key: None,
            recipient: None,
            kind,
        }
    }

    /// The same cause, about the key named `key`.
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same cause, about the recipient named `recipient`.
    #[must_use]
    pub fn recipient(mut self, recipient: impl Into<String>) -> Self {
        self.recipient = Some(recipient.into());
        self
    }
}

/// The key and recipient, then what happened: one line.
impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, &self.recipient) {
            (Some(k), Some(r)) => write!(f, "{k}, {r}: ")?,
            (Some(k), None) => write!(f, "{k}: ")?,
            (None, Some(r)) => write!(f, "{r}: ")?,
            (None, None) => {}
        }
        match &self.kind {
            CauseKind::NoKey(what)
            | CauseKind::NotARecipient(what)
            | CauseKind::BadRecipient(what) => f.write_str(what),
            CauseKind::Unreadable(e) => write!(f, "skipped: {e}"),
            CauseKind::Unsuitable(why) => write!(f, "skipped: {why}"),
            CauseKind::Refused(failure) => write!(f, "{failure}"),
        }
    }
}

/// A backend error kept as its message, for a copy of an [`Error`] (see
/// [`Error::detached`]).
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

fn detach_source(source: Option<&BoxError>) -> Option<BoxError> {
    source.map(|s| Box::new(Message(s.to_string())) as BoxError)
}

impl Failure {
    /// A copy, with the source kept as its message.
    pub(crate) fn detached(&self) -> Self {
        Self {
            reason: self.reason.clone(),
            source: detach_source(self.source.as_ref()),
        }
    }
}

impl Cause {
    /// A copy that reads the same, with backend errors kept as their messages (they are
    /// not `Clone`): for a cause that belongs to several errors.
    pub fn detached(&self) -> Self {
        Self {
            key: self.key.clone(),
            recipient: self.recipient.clone(),
            kind: self.kind.detached(),
        }
    }
}

impl CauseKind {
    /// A copy, with backend errors kept as their messages (they are not `Clone`).
    pub(crate) fn detached(&self) -> Self {
        match self {
            Self::NoKey(s) => Self::NoKey(s.clone()),
            Self::Unreadable(e) => Self::Unreadable(Box::new(e.detached())),
            Self::Unsuitable(s) => Self::Unsuitable(s.clone()),
            Self::NotARecipient(s) => Self::NotARecipient(s.clone()),
            Self::Refused(f) => Self::Refused(f.detached()),
            Self::BadRecipient(s) => Self::BadRecipient(s.clone()),
        }
    }
}

impl Error {
    /// A copy that reads the same (`Display`, kind, and the messages of the sources), with
    /// backend errors kept as their messages, since they are not `Clone`.
    pub(crate) fn detached(&self) -> Self {
        match self {
            Self::InvalidRecipient {
                scheme,
                reason,
                source,
            } => Self::InvalidRecipient {
                scheme: scheme.clone(),
                reason: reason.clone(),
                source: detach_source(source.as_ref()),
            },
            Self::InvalidPrivateKey {
                scheme,
                reason,
                source,
            } => Self::InvalidPrivateKey {
                scheme: scheme.clone(),
                reason: reason.clone(),
                source: detach_source(source.as_ref()),
            },
            Self::MissingPassword { scheme } => Self::MissingPassword {
                scheme: scheme.clone(),
            },
            Self::WrongPassword { scheme } => Self::WrongPassword {
                scheme: scheme.clone(),
            },
            Self::MalformedBlob { scheme, reason } => Self::MalformedBlob {
                scheme: scheme.clone(),
                reason: reason.clone(),
            },
            Self::UnsupportedAlgorithm { scheme, algorithm } => Self::UnsupportedAlgorithm {
                scheme: scheme.clone(),
                algorithm: algorithm.clone(),
            },
            Self::LimitExceeded {
                scheme,
                what,
                limit,
            } => Self::LimitExceeded {
                scheme: scheme.clone(),
                what,
                limit: *limit,
            },
            Self::NoMatchingKey { scheme, causes } => Self::NoMatchingKey {
                scheme: scheme.clone(),
                causes: causes.iter().map(Cause::detached).collect(),
            },
            Self::Config { scheme, reason } => Self::Config {
                scheme: scheme.clone(),
                reason: reason.clone(),
            },
            Self::Backend {
                scheme,
                context,
                source,
            } => Self::Backend {
                scheme: scheme.clone(),
                context: context.clone(),
                source: Box::new(Message(source.to_string())),
            },
        }
    }

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
