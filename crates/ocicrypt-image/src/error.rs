//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Why an image could not be read, encrypted, decrypted or written.
///
/// The message says what failed; the cause, where there is one, is the error's
/// [`source`](std::error::Error::source) (print the chain, as `anyhow`'s `{:#}` does, for
/// the whole story).
///
/// Sources and destinations are untrusted input: every malformed layout, manifest, index or
/// blob is one of these errors, never a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{what}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The source is not an OCI image layout.
    #[error("{} is not an OCI layout ({reason})", .path.display())]
    NotALayout {
        /// The layout's directory.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// The destination exists and is neither an OCI layout nor an empty directory.
    #[error("{} exists and is not an OCI layout; refusing to overwrite it", .path.display())]
    DestinationExists {
        /// The destination.
        path: PathBuf,
    },
    /// The destination layout would be inside the source layout (the same layout, with
    /// another tag, is fine).
    #[error("the destination {} is inside the source layout {}; choose a path outside it (or the source layout itself, with another tag)", .destination.display(), .source_layout.display())]
    DestinationInsideSource {
        /// The destination.
        destination: PathBuf,
        /// The source layout.
        source_layout: PathBuf,
    },
    /// No image with this tag in the layout.
    #[error("no image tagged {tag:?} in {}", .layout.display())]
    TagNotFound {
        /// The tag.
        tag: String,
        /// The layout's directory.
        layout: PathBuf,
    },
    /// A JSON document (index, manifest, descriptor) is malformed.
    #[error("{what} is not valid JSON of the expected shape")]
    Json {
        /// The document, by digest or file name.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A descriptor's digest is malformed or uses an algorithm we cannot verify.
    #[error(
        "unsupported or malformed digest {digest:?}: blobs must be named sha256: or sha512: with lowercase hex"
    )]
    BadDigest {
        /// The digest as found.
        digest: String,
    },
    /// A blob is missing from the source.
    #[error("missing blob {digest}")]
    MissingBlob {
        /// Its digest.
        digest: String,
    },
    /// A blob is not a regular file (a symbolic link, a FIFO, a device...).
    #[error("blob {digest} is not a regular file; refusing to read it")]
    NotARegularFile {
        /// Its digest.
        digest: String,
    },
    /// A blob's size differs from its descriptor's.
    #[error("blob {digest} is {actual} bytes but its descriptor says {expected}")]
    SizeMismatch {
        /// Its digest.
        digest: String,
        /// The size found.
        actual: u64,
        /// The descriptor's size.
        expected: u64,
    },
    /// A blob's content does not hash to its digest.
    #[error("blob {expected} is corrupt: its content hashes to {actual}")]
    DigestMismatch {
        /// The descriptor's digest.
        expected: String,
        /// The digest of the content.
        actual: String,
    },
    /// A manifest, index or config is larger than we are willing to parse.
    #[error(
        "blob {digest} is {size} bytes, more than the {limit} bytes allowed for a manifest, index or config"
    )]
    TooLarge {
        /// Its digest.
        digest: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The image graph is deeper or larger than the limits allow.
    #[error("the image is too complex: {reason}")]
    TooComplex {
        /// Which limit was reached.
        reason: String,
    },
    /// A manifest of a kind we do not handle.
    #[error("{digest}: unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType {
        /// The manifest's digest.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// `--layer N` is outside the image's layers.
    #[error("--layer {layer}: the image has {count} layer(s)")]
    LayerOutOfRange {
        /// The index asked for.
        layer: i64,
        /// How many layers the manifest has.
        count: usize,
    },
    /// A platform is not `OS/ARCH[/VARIANT]`.
    #[error("invalid platform {spec:?}: expected OS/ARCH or OS/ARCH/VARIANT")]
    InvalidPlatform {
        /// The platform as given.
        spec: String,
    },
    /// No image of the index matches the platforms asked for.
    #[error("no image in the index matches --platform {platforms}")]
    NoPlatformMatch {
        /// The platforms asked for, joined.
        platforms: String,
    },
    /// A layer to encrypt is encrypted already and no key to open it was given.
    #[error(
        "the layer is already encrypted; to add recipients to it, give -k with a key that decrypts it"
    )]
    AlreadyEncrypted,
    /// A layer failed; `source` says why.
    #[error("layer {index} ({digest}) of manifest {manifest}")]
    Layer {
        /// Its position in the manifest (0 is the bottom).
        index: usize,
        /// Its digest.
        digest: String,
        /// The manifest's digest.
        manifest: String,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
    /// Encryption, decryption or key unwrapping failed.
    #[error(transparent)]
    Ocicrypt(#[from] ocicrypt::Error),
    /// The layer data failed authentication or its digest check while being streamed.
    #[error("{what}")]
    Stream {
        /// What was being done.
        what: &'static str,
        /// The cause (an authentication failure surfaces here).
        #[source]
        source: io::Error,
    },
    /// A layer stopped because another one failed first.
    #[error("cancelled after another layer failed")]
    Cancelled,
    /// A reference is not `oci:PATH[:TAG]`.
    #[error(transparent)]
    Reference(#[from] crate::ParseRefError),
    /// The registry refused the credentials (401 or 403), or wanted some and had none.
    #[error("authentication failed for {host}")]
    RegistryAuth {
        /// The registry.
        host: String,
    },
    /// The registry's TLS certificate does not chain to a trusted CA.
    #[error(
        "the TLS certificate of {host} is not trusted: put its CA certificate (a *.crt file) in {dirs}, or name a certificate directory"
    )]
    UntrustedCertificate {
        /// The registry.
        host: String,
        /// Where CA certificates for it were looked for.
        dirs: String,
    },
    /// The registry ended the TLS handshake with an alert: most often, it wants a client
    /// certificate that was not presented, or refused the one that was.
    #[error(
        "{host} refused the TLS connection ({alert}): it may require a client certificate (a NAME.cert and NAME.key pair in {dirs})"
    )]
    TlsRefused {
        /// The registry.
        host: String,
        /// The TLS alert it sent.
        alert: String,
        /// Where client certificates for it are looked for.
        dirs: String,
    },
    /// The registry does not answer HTTPS, and plain HTTP was not allowed.
    #[error(
        "{host} does not speak HTTPS; plain HTTP is refused unless TLS verification is turned off for it (tls-verify=false)"
    )]
    PlainHttp {
        /// The registry.
        host: String,
    },
    /// The registry has no such image.
    #[error("manifest unknown: {reference}")]
    ManifestUnknown {
        /// The reference asked for.
        reference: String,
    },
    /// A registry request failed.
    #[error("{what} ({host})")]
    Registry {
        /// The registry.
        host: String,
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A registry setting is wrong: an auth file, a certificate directory, a reference.
    #[error("{what}")]
    RegistryConfig {
        /// What is wrong.
        what: String,
    },
    /// A `docker://` reference, in a build without the `registry` feature.
    #[error("this build has no registry support (the ocicrypt-image feature `registry`)")]
    RegistryUnsupported,
    /// A bug: what should not happen, did.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::Io`] naming what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    /// An [`Error::Stream`] naming what was being done.
    pub(crate) fn stream(what: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Stream { what, source }
    }

    /// An [`Error::Json`] naming the document.
    pub(crate) fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Self {
        let what = what.into();
        move |source| Self::Json { what, source }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
