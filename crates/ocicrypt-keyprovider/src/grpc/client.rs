//! Calling a gRPC provider from synchronous code.
//!
//! Each call runs on a fresh current-thread tokio runtime on its own thread, so it works
//! from plain threads and from inside an async runtime alike (where it blocks the
//! calling worker for the duration of the call, as any synchronous `KeyWrapper` does).
//! Like Go, every call opens a new connection.

use std::io;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tonic::transport::{Channel, Endpoint, Uri};
use zeroize::Zeroizing;

use super::generated::KeyProviderKeyWrapProtocolInput;
use super::generated::key_provider_service_client::KeyProviderServiceClient;
use crate::config::GrpcTls;
use crate::protocol::Operation;
use crate::wrapper::Options;
use crate::Error;

/// Sends `input` to the provider at `address` and returns the reply bytes.
pub(crate) fn call(
    address: &str,
    tls: Option<&GrpcTls>,
    op: Operation,
    input: &[u8],
    options: &Options,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let tls = tls.map(|t| client_tls(address, t)).transpose()?;
    let address = address.to_owned();
    let input = input.to_vec();
    let timeout = options.timeout;
    let max_reply = options.max_reply_size;
    let worker = std::thread::Builder::new()
        .name("ocicrypt-keyprovider-grpc".to_owned())
        .spawn(move || -> Result<Zeroizing<Vec<u8>>, Error> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| connect_err(&address, e))?;
            runtime.block_on(async {
                match tokio::time::timeout(timeout, rpc(&address, tls, op, input, max_reply)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::Timeout {
                        provider: format!("gRPC {address}"),
                        timeout,
                        stderr: String::new(),
                    }),
                }
            })
        })
        .map_err(|e| Error::Serve {
            context: "cannot start the gRPC client thread".to_owned(),
            source: Box::new(e),
        })?;
    worker.join().unwrap_or_else(|_| {
        Err(Error::Serve {
            context: "the gRPC client thread panicked".to_owned(),
            source: "panic".into(),
        })
    })
}

fn connect_err(address: &str, e: impl Into<ocicrypt_keywrap::BoxError>) -> Error {
    Error::Connect {
        address: address.to_owned(),
        source: e.into(),
    }
}

async fn rpc(
    address: &str,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    op: Operation,
    input: Vec<u8>,
    max_reply: usize,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let endpoint =
        Endpoint::from_shared(format!("http://{address}")).map_err(|e| connect_err(address, e))?;
    let target = address.to_owned();
    let channel = match tls {
        None => {
            let connector = tower::service_fn(move |_: Uri| {
                let target = target.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(target).await?;
                    tcp.set_nodelay(true)?;
                    Ok::<_, io::Error>(TokioIo::new(tcp))
                }
            });
            connect(&endpoint, connector, address).await?
        }
        Some((config, server_name)) => {
            let connector = tower::service_fn(move |_: Uri| {
                let target = target.clone();
                let tls = tokio_rustls::TlsConnector::from(config.clone());
                let server_name = server_name.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(target).await?;
                    tcp.set_nodelay(true)?;
                    let stream = tls.connect(server_name, tcp).await?;
                    Ok::<_, io::Error>(TokioIo::new(stream))
                }
            });
            connect(&endpoint, connector, address).await?
        }
    };
    let mut client = KeyProviderServiceClient::new(channel).max_decoding_message_size(max_reply);
    let request = KeyProviderKeyWrapProtocolInput {
        key_provider_key_wrap_protocol_input: input,
    };
    let reply = match op {
        Operation::KeyWrap => client.wrap_key(request).await,
        Operation::KeyUnwrap => client.un_wrap_key(request).await,
    };
    match reply {
        Ok(r) => Ok(Zeroizing::new(r.into_inner().key_provider_key_wrap_protocol_output)),
        Err(status) => {
            // A transport failure surfaces as a status whose source is the I/O error.
            if status.code() == tonic::Code::Unavailable
                && let Some(source) = std::error::Error::source(&status) {
                    return Err(Error::Connect {
                        address: address.to_owned(),
                        source: source.to_string().into(),
                    });
                }
            Err(Error::GrpcStatus {
                address: address.to_owned(),
                code: format!("{:?}", status.code()),
                message: status.message().to_owned(),
            })
        }
    }
}

async fn connect<C, IO>(endpoint: &Endpoint, connector: C, address: &str) -> Result<Channel, Error>
where
    C: tower::Service<Uri, Response = TokioIo<IO>, Error = io::Error> + Send + 'static,
    C::Future: Send,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            connect_err(address, msg)
        })
}

fn tls_err(reason: impl Into<String>) -> impl FnOnce(rustls::pki_types::pem::Error) -> Error {
    let reason = reason.into();
    move |e| Error::Tls {
        reason,
        source: Some(Box::new(e)),
    }
}

/// The rustls client configuration and server name for `tls` (Go's `tls.Config`).
fn client_tls(address: &str, tls: &GrpcTls) -> Result<(Arc<ClientConfig>, ServerName<'static>), Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls {
            reason: "no usable TLS protocol version".to_owned(),
            source: Some(Box::new(e)),
        })?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
    } else {
        builder.with_root_certificates(root_store(tls)?)
    };
    let mut config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(tls_err(format!("cannot read client certificate {}", cert.display())))?;
            if chain.is_empty() {
                return Err(Error::Tls {
                    reason: format!("no certificate in {}", cert.display()),
                    source: None,
                });
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(tls_err(format!("cannot read client key {}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::Tls {
                    reason: "client certificate and key do not fit".to_owned(),
                    source: Some(Box::new(e)),
                })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::Tls {
                reason: "cert-file and key-file must be given together".to_owned(),
                source: None,
            });
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = match &tls.server_name {
        Some(n) => n.clone(),
        None => host_of(address).to_owned(),
    };
    let server_name = ServerName::try_from(name.clone()).map_err(|e| Error::Tls {
        reason: format!("invalid server name {name:?}"),
        source: Some(Box::new(e)),
    })?;
    Ok((Arc::new(config), server_name))
}

fn root_store(tls: &GrpcTls) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    match &tls.root_ca_file {
        Some(file) => {
            let certs = CertificateDer::pem_file_iter(file)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(tls_err(format!("cannot read root CA file {}", file.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::Tls {
                    reason: format!("no root CA certificates parsed from {}", file.display()),
                    source: None,
                });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::Tls {
                    reason: format!(
                        "no system root CA certificates found ({} errors)",
                        found.errors.len()
                    ),
                    source: None,
                });
            }
        }
    }
    Ok(roots)
}

/// `host` of `host:port` or `[v6]:port`.
fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((host, _)) => host,
        None => address,
    }
}

/// `insecure-skip-verify`: accepts **any** server certificate (still checking that the
/// server holds the key of the certificate it sent). Anyone who can intercept the
/// connection can impersonate the provider. Exists for Go compatibility and tests.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_addresses() {
        assert_eq!(host_of("localhost:50051"), "localhost");
        assert_eq!(host_of("[::1]:5"), "::1");
        assert_eq!(host_of("name"), "name");
    }

    #[test]
    fn half_client_identity_is_an_error() {
        let tls = GrpcTls {
            cert_file: Some("/c.pem".into()),
            insecure_skip_verify: true,
            ..GrpcTls::default()
        };
        let err = client_tls("h:1", &tls).unwrap_err();
        assert!(err.to_string().contains("together"), "{err}");
        let tls = GrpcTls {
            root_ca_file: Some("/nonexistent/ca.pem".into()),
            ..GrpcTls::default()
        };
        let err = client_tls("h:1", &tls).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
