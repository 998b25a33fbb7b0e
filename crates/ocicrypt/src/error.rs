//! The facade's error type.

/// Why a layer could not be encrypted, decrypted or inspected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An annotation or options document is malformed.
    #[error(transparent)]
    Spec(#[from] ocicrypt_spec::Error),
    /// A key-wrap scheme failed.
    #[error(transparent)]
    KeyWrap(#[from] ocicrypt_keywrap::Error),
    /// The layer cipher failed (bad options, authentication failure, ...).
    #[error(transparent)]
    BlockCipher(#[from] ocicrypt_blockcipher::Error),
    /// The key-provider configuration (`OCICRYPT_KEYPROVIDER_CONFIG`) is unusable.
    #[cfg(any(feature = "keyprovider-cmd", feature = "keyprovider-grpc"))]
    #[error(transparent)]
    KeyProviderConfig(#[from] ocicrypt_keyprovider::Error),
    /// The set of key wrappers is inconsistent.
    #[error("invalid key-wrapper registry: {reason}")]
    InvalidRegistry {
        /// What is wrong.
        reason: String,
    },
    /// The encryption config names no recipient at all.
    #[error("no recipients given: a layer must be encrypted for at least one recipient")]
    NoRecipients,
    /// Recipients or keys were given for a scheme this build or registry does not have.
    #[error("scheme {scheme} is not available (not compiled in or not registered)")]
    SchemeNotAvailable {
        /// The scheme.
        scheme: String,
    },
    /// Encryption finished but no scheme produced a wrapped key.
    #[error("no wrapped keys produced by encryption")]
    NoWrappedKeys,
    /// The media type and the annotations of a layer disagree on whether it is encrypted
    /// (see [`crate::descriptor::is_encrypted`]).
    #[error("{}", inconsistent(.media_type, *.annotated))]
    InconsistentEncryption {
        /// The layer's media type.
        media_type: String,
        /// Whether it carries wrapped-key annotations.
        annotated: bool,
    },
    /// The descriptor carries no wrapped-key annotation of a registered scheme.
    #[error("the layer is not encrypted (no wrapped-key annotation of a known scheme)")]
    NotEncrypted,
    /// No key was given for any scheme the layer is encrypted with.
    #[error("missing private key needed for decryption: the layer is encrypted for {}", .schemes.join(", "))]
    MissingPrivateKey {
        /// The schemes the layer is encrypted for.
        schemes: Vec<String>,
    },
    /// Keys were given, but none unwrapped the layer key.
    #[error("none of the private keys could be used for decryption{}", format_causes(.causes))]
    NoKeyUnwrapped {
        /// Why each scheme failed, for each wrapped key tried (most often
        /// [`ocicrypt_keywrap::Error::NoMatchingKey`], whose causes say why each key did
        /// not fit).
        causes: Vec<ocicrypt_keywrap::Error>,
    },
    /// A bug in this library: what should not happen, did.
    #[error("internal error: {0}")]
    Internal(String),
    /// The plaintext read while encrypting does not match the descriptor's digest.
    #[error("the layer data does not match its descriptor: digest {actual}, expected {expected}")]
    DigestMismatch {
        /// The descriptor's digest.
        expected: String,
        /// The digest of the data read.
        actual: String,
    },
}

fn inconsistent(media_type: &str, annotated: bool) -> String {
    if annotated {
        format!(
            "the layer has wrapped-key annotations but its media type {media_type} is not \
             +encrypted; refusing to treat it as either"
        )
    } else {
        format!(
            "the layer's media type {media_type} says encrypted but it has no wrapped-key \
             annotation; refusing to treat it as either"
        )
    }
}

/// `": "` and the causes joined with `"; "`: one line, as error messages are.
fn format_causes(causes: &[ocicrypt_keywrap::Error]) -> String {
    let mut out = String::new();
    for (i, c) in causes.iter().enumerate() {
        out.push_str(if i == 0 { ": " } else { "; " });
        out.push_str(&c.to_string());
    }
    out
}
