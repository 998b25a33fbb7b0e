//! Writing key providers in Rust: implement [`KeyProvider`], then serve it as a program
//! ([`serve_cmd`]) or, with feature `sdk-grpc`, as a gRPC server (`serve_grpc`).

use std::fmt;
use std::io::{Read, Write};

use ocicrypt_keywrap::{Parameters, SecretBytes};
use zeroize::Zeroizing;

use crate::protocol::{
    KeyUnwrapResults, KeyWrapResults, Operation, ProtocolInput, ProtocolOutput, ProviderError,
};
use crate::Error;

#[cfg(feature = "sdk-grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "sdk-grpc")))]
pub use crate::grpc::server::{TlsServerConfig, serve_grpc, serve_grpc_with_shutdown};

/// The largest request [`serve_cmd`] reads, in bytes.
pub const MAX_REQUEST_SIZE: usize = 16 << 20;

/// A key provider: wraps layer keys for `provider:<name>` recipients and unwraps them
/// again. Both methods get Go's parameter bags; what a provider finds there under its own
/// name is whatever followed `provider:<name>:` on the command line (or `Enabled`).
pub trait KeyProvider: Send + Sync {
    /// Wraps `request.opts_data`; returns the opaque blob that ocicrypt stores (base64'd)
    /// in the `org.opencontainers.image.enc.keys.provider.<name>` annotation.
    ///
    /// # Errors
    /// A message for the caller (no key material).
    fn wrap_key(&self, request: &WrapRequest) -> Result<Vec<u8>, ProviderError>;

    /// Unwraps a blob this provider produced; returns the private options.
    ///
    /// # Errors
    /// A message for the caller (no key material).
    fn unwrap_key(&self, request: &UnwrapRequest) -> Result<SecretBytes, ProviderError>;
}

/// A `keywrap` request.
#[derive(Clone)]
#[non_exhaustive]
pub struct WrapRequest {
    /// The encryption parameters (`ec.Parameters`).
    pub parameters: Parameters,
    /// The attached decryption parameters (`ec.DecryptConfig.Parameters`).
    pub decrypt_parameters: Parameters,
    /// The private options to wrap (secret).
    pub opts_data: SecretBytes,
}

/// A `keyunwrap` request.
#[derive(Clone)]
#[non_exhaustive]
pub struct UnwrapRequest {
    /// The decryption parameters (`dc.Parameters`).
    pub parameters: Parameters,
    /// The blob to unwrap.
    pub annotation: Vec<u8>,
}

impl WrapRequest {
    /// The values of parameter `name` (usually the provider's own name).
    pub fn args(&self, name: &str) -> Option<&[Vec<u8>]> {
        self.parameters.get(name).map(Vec::as_slice)
    }
}

impl UnwrapRequest {
    /// The values of parameter `name` (usually the provider's own name).
    pub fn args(&self, name: &str) -> Option<&[Vec<u8>]> {
        self.parameters.get(name).map(Vec::as_slice)
    }
}

/// Parameter names only: values may be private keys or passwords.
struct Names<'a>(&'a Parameters);

impl fmt::Debug for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl fmt::Debug for WrapRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrapRequest")
            .field("parameters", &Names(&self.parameters))
            .field("decrypt_parameters", &Names(&self.decrypt_parameters))
            .field("opts_data", &self.opts_data)
            .finish()
    }
}

impl fmt::Debug for UnwrapRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnwrapRequest")
            .field("parameters", &Names(&self.parameters))
            .field("annotation_len", &self.annotation.len())
            .finish()
    }
}

/// Answers one protocol request (JSON bytes) with one protocol reply (JSON bytes, Go's
/// format). `expected`, if given, is the operation the transport implies (the gRPC
/// method); a request for another operation is refused.
///
/// # Errors
/// [`Error::BadRequest`] for a malformed request, [`Error::Provider`] when the provider
/// fails.
pub fn handle_request<P: KeyProvider + ?Sized>(
    provider: &P,
    request: &[u8],
    expected: Option<Operation>,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let input = ProtocolInput::from_json(request)?;
    if let Some(expected) = expected.filter(|e| *e != input.op) {
        return Err(Error::BadRequest {
            reason: format!("operation {:?} sent to the {expected:?} method", input.op),
            source: None,
        });
    }
    let output = match input.op {
        Operation::KeyWrap => {
            let params = input.keywrapparams;
            let ec = params.ec.unwrap_or_default();
            let request = WrapRequest {
                parameters: ec.parameters.unwrap_or_default(),
                decrypt_parameters: ec.decrypt_config.parameters.unwrap_or_default(),
                opts_data: params.optsdata.ok_or_else(|| Error::BadRequest {
                    reason: "keywrap request without keywrapparams.optsdata".to_owned(),
                    source: None,
                })?,
            };
            ProtocolOutput {
                keywrapresults: KeyWrapResults {
                    annotation: Some(provider.wrap_key(&request)?),
                },
                keyunwrapresults: KeyUnwrapResults::default(),
            }
        }
        Operation::KeyUnwrap => {
            let params = input.keyunwrapparams;
            let request = UnwrapRequest {
                parameters: params.dc.and_then(|dc| dc.parameters).unwrap_or_default(),
                annotation: params.annotation.ok_or_else(|| Error::BadRequest {
                    reason: "keyunwrap request without keyunwrapparams.annotation".to_owned(),
                    source: None,
                })?,
            };
            ProtocolOutput {
                keywrapresults: KeyWrapResults::default(),
                keyunwrapresults: KeyUnwrapResults {
                    optsdata: Some(provider.unwrap_key(&request)?),
                },
            }
        }
    };
    output.to_json()
}

/// Serves one request from `input` to `output` (what [`serve_cmd`] does with stdin and
/// stdout).
///
/// # Errors
/// As [`handle_request`], plus I/O errors and requests over [`MAX_REQUEST_SIZE`]
/// ([`Error::BadRequest`]).
pub fn serve_io<P: KeyProvider + ?Sized>(provider: &P, input: impl Read, mut output: impl Write) -> Result<(), Error> {
    let io_err = |source| Error::Io {
        path: "(stdio)".into(),
        source,
    };
    let mut request = Zeroizing::new(Vec::new());
    input
        .take(MAX_REQUEST_SIZE as u64 + 1)
        .read_to_end(&mut request)
        .map_err(io_err)?;
    if request.len() > MAX_REQUEST_SIZE {
        return Err(Error::BadRequest {
            reason: format!("request longer than {MAX_REQUEST_SIZE} bytes"),
            source: None,
        });
    }
    let reply = handle_request(provider, &request, None)?;
    output.write_all(&reply).map_err(io_err)?;
    output.flush().map_err(io_err)
}

/// Serves one request as a command provider: reads it from stdin, writes the reply to
/// stdout. On error, print it to stderr and exit non-zero; ocicrypt shows the stderr.
///
/// # Errors
/// As [`serve_io`].
pub fn serve_cmd<P: KeyProvider + ?Sized>(provider: &P) -> Result<(), Error> {
    serve_io(provider, std::io::stdin().lock(), std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rot;

    impl KeyProvider for Rot {
        fn wrap_key(&self, r: &WrapRequest) -> Result<Vec<u8>, ProviderError> {
            if r.args("rot").is_none() {
                return Err(ProviderError::new("not for me"));
            }
            Ok(r.opts_data.expose().iter().map(|b| b ^ 0x55).collect())
        }

        fn unwrap_key(&self, r: &UnwrapRequest) -> Result<SecretBytes, ProviderError> {
            Ok(SecretBytes::new(r.annotation.iter().map(|b| b ^ 0x55).collect()))
        }
    }

    #[test]
    fn serves_go_requests() {
        let req = br#"{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"rot":["RW5hYmxlZA=="]},"DecryptConfig":{"Parameters":null}},"optsdata":"AAE="},"keyunwrapparams":{"dc":null,"annotation":null}}"#;
        let mut out = Vec::new();
        serve_io(&Rot, &req[..], &mut out).unwrap();
        assert_eq!(
            out,
            br#"{"keywrapresults":{"annotation":"VVQ="},"keyunwrapresults":{"optsdata":null}}"#
        );
        let req = br#"{"op":"keyunwrap","keywrapparams":{"ec":null,"optsdata":null},"keyunwrapparams":{"dc":{"Parameters":{"rot":["RW5hYmxlZA=="]}},"annotation":"VVQ="}}"#;
        let out = handle_request(&Rot, req, Some(Operation::KeyUnwrap)).unwrap();
        assert_eq!(
            &out[..],
            br#"{"keywrapresults":{"annotation":null},"keyunwrapresults":{"optsdata":"AAE="}}"#
        );
    }

    #[test]
    fn refuses_bad_requests() {
        let wrong_op = br#"{"op":"keyunwrap","keyunwrapparams":{"annotation":"AA=="}}"#;
        let err = handle_request(&Rot, wrong_op, Some(Operation::KeyWrap)).unwrap_err();
        assert!(matches!(err, Error::BadRequest { .. }), "{err}");
        let no_opts = br#"{"op":"keywrap","keywrapparams":{"ec":null}}"#;
        assert!(matches!(handle_request(&Rot, no_opts, None), Err(Error::BadRequest { .. })));
        let no_anno = br#"{"op":"keyunwrap"}"#;
        assert!(matches!(handle_request(&Rot, no_anno, None), Err(Error::BadRequest { .. })));
        assert!(matches!(handle_request(&Rot, b"garbage", None), Err(Error::BadRequest { .. })));
        let not_mine = br#"{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{}},"optsdata":"AA=="}}"#;
        let err = handle_request(&Rot, not_mine, None).unwrap_err();
        assert_eq!(err.to_string(), "key provider failed: not for me");
    }

    #[test]
    fn debug_hides_values() {
        let mut p = Parameters::new();
        p.insert("privkeys".into(), vec![b"SECRET".to_vec()]);
        let r = WrapRequest {
            parameters: p.clone(),
            decrypt_parameters: p,
            opts_data: SecretBytes::copy_from(b"SYMKEY"),
        };
        let s = format!("{r:?}");
        assert!(s.contains("privkeys") && !s.contains("SECRET") && !s.contains("SYMKEY"), "{s}");
    }
}
