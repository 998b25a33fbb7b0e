//! The error type shared by all key-wrap schemes.

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

fn format_causes(causes: &[String]) -> String {
    causes.iter().map(|c| format!("\n- {c}")).collect()
}

impl Error {
    /// Whether this error is about a missing or wrong password (Go's `IsPasswordError`).
    pub fn is_password_error(&self) -> bool {
        matches!(
            self,
            Self::MissingPassword { .. } | Self::WrongPassword { .. }
        )
    }
}
