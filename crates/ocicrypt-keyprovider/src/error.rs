//! The error type of this crate, and its mapping to [`ocicrypt_keywrap::Error`].

use std::path::PathBuf;
use std::time::Duration;

use ocicrypt_keywrap::BoxError;

/// What went wrong while configuring, calling or serving a key provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read key provider configuration {}: {source}", .path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is not valid JSON of the expected shape.
    #[error(
        "invalid key provider configuration{}: at `{field}`: {source}",
        .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default()
    )]
    ConfigParse {
        /// The file, if the configuration came from one.
        path: Option<PathBuf>,
        /// The JSON path of the offending field (`key-providers.kms.cmd.args[0]`), or `.`
        /// for the document itself.
        field: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A provider has neither `cmd` nor `grpc` (Go's message).
    #[error(
        "key provider {name}: Unsupported keyprovider invocation. Supported invocation methods are grpc and cmd"
    )]
    UnsupportedInvocation {
        /// The provider's name.
        name: String,
    },
    /// A provider needs a feature of this crate that is not enabled.
    #[error(
        "key provider {name}: needs feature `{feature}` of ocicrypt-keyprovider, which is not enabled"
    )]
    FeatureDisabled {
        /// The provider's name.
        name: String,
        /// The missing feature.
        feature: &'static str,
    },
    /// The provider program could not be started.
    #[error("cannot run key provider command {}: {source}", .path.display())]
    Spawn {
        /// The program.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Talking to the provider program failed.
    #[error("I/O error with key provider command {}: {source}", .path.display())]
    Io {
        /// The program.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The provider program exited unsuccessfully.
    #[error("key provider command {} failed ({status}); stderr: {stderr}", .path.display())]
    CommandFailed {
        /// The program.
        path: PathBuf,
        /// How it ended (`exit status: 3`, `signal: 9 (SIGKILL)`).
        status: String,
        /// The end of its standard error (at most 4 KiB), lossily decoded.
        stderr: String,
    },
    /// The provider did not answer in time (a program is killed then).
    #[error("key provider {provider} did not answer within {timeout:?}; stderr: {stderr}")]
    Timeout {
        /// The program or gRPC address.
        provider: String,
        /// The time limit.
        timeout: Duration,
        /// The end of a program's standard error (empty for gRPC).
        stderr: String,
    },
    /// The provider's reply is not a valid protocol reply.
    #[error("invalid key provider reply: {reason}")]
    BadReply {
        /// What is wrong.
        reason: String,
        /// The JSON error, if the reply did not parse.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// A request to a provider (SDK side) is not a valid protocol request.
    #[error("invalid key provider request: {reason}")]
    BadRequest {
        /// What is wrong.
        reason: String,
        /// The JSON error, if the request did not parse.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The gRPC provider could not be reached (connection or TLS handshake failed).
    #[error("cannot reach gRPC key provider at {address}")]
    Connect {
        /// The configured `host:port`.
        address: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The gRPC provider answered with an error status.
    #[error("gRPC key provider at {address} answered {code}: {message}")]
    GrpcStatus {
        /// The configured `host:port`.
        address: String,
        /// The gRPC status code.
        code: String,
        /// The status message.
        message: String,
    },
    /// TLS settings could not be loaded (files, keys, certificates).
    #[error("gRPC TLS: {reason}")]
    Tls {
        /// What is wrong.
        reason: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The provider implementation (SDK) refused or failed the request.
    #[error("key provider failed: {0}")]
    Provider(#[from] crate::protocol::ProviderError),
    /// The gRPC server (SDK) failed.
    #[error("gRPC server: {context}")]
    Serve {
        /// What we were doing.
        context: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// Regenerating the gRPC code failed.
    #[error("gRPC code generation: {context}")]
    Codegen {
        /// What we were doing.
        context: String,
        /// Why.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// This error as a key-wrap error of scheme `provider.<name>`: configuration problems
    /// become [`ocicrypt_keywrap::Error::Config`], everything else
    /// [`ocicrypt_keywrap::Error::Backend`] with this error as its source.
    pub fn into_keywrap(self, scheme: &str, context: &str) -> ocicrypt_keywrap::Error {
        match self {
            Self::ConfigRead { .. }
            | Self::ConfigParse { .. }
            | Self::UnsupportedInvocation { .. }
            | Self::FeatureDisabled { .. }
            | Self::Tls { .. } => ocicrypt_keywrap::Error::Config {
                scheme: scheme.to_owned(),
                reason: self.to_string(),
            },
            other => ocicrypt_keywrap::Error::Backend {
                scheme: scheme.to_owned(),
                context: context.to_owned(),
                source: Box::new(other),
            },
        }
    }
}
