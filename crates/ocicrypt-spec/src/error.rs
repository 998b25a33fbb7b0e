//! The error type of this crate.

/// What was wrong with an annotation or an options document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value that should be standard base64 is not.
    #[error("could not base64 decode {what}")]
    Base64 {
        /// Which value (for example an annotation key).
        what: String,
        /// The decoder's complaint.
        #[source]
        source: base64::DecodeError,
    },
    /// A document that should be JSON of the given shape is not.
    #[error("could not JSON unmarshal {what}: {detail}")]
    Json {
        /// Which document (`public options`, `private options`, ...).
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// A wrapped-keys annotation lists more blobs than
    /// [`MAX_WRAPPED_KEYS`](crate::annotations::MAX_WRAPPED_KEYS).
    #[error("annotation {annotation} has more than {limit} wrapped keys")]
    TooManyWrappedKeys {
        /// The annotation key.
        annotation: String,
        /// The limit that was exceeded.
        limit: usize,
    },
}
