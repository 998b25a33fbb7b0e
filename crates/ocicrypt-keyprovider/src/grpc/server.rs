//! Serving a [`KeyProvider`] over gRPC (feature `sdk-grpc`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ocicrypt_keywrap::SecretBytes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::generated::key_provider_service_server::{KeyProviderService, KeyProviderServiceServer};
use super::generated::{KeyProviderKeyWrapProtocolInput, KeyProviderKeyWrapProtocolOutput};
use crate::protocol::Operation;
use crate::sdk::{KeyProvider, handle_request};
use crate::Error;

/// TLS for [`serve_grpc`]: the server's certificate chain and key (PEM), and optionally
/// the CA (PEM) that client certificates must chain to; clients without one are then
/// refused.
#[derive(Clone, Debug)]
pub struct TlsServerConfig {
    /// The server certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The server private key, PEM.
    pub key_pem: SecretBytes,
    /// CA certificates for client authentication, PEM.
    pub client_ca_pem: Option<Vec<u8>>,
}

struct Service(Arc<dyn KeyProvider>);

impl Service {
    async fn handle(
        &self,
        op: Operation,
        request: Request<KeyProviderKeyWrapProtocolInput>,
    ) -> Result<Response<KeyProviderKeyWrapProtocolOutput>, Status> {
        let provider = self.0.clone();
        let input = request.into_inner().key_provider_key_wrap_protocol_input;
        let reply = tokio::task::spawn_blocking(move || handle_request(&*provider, &input, Some(op)))
            .await
            .map_err(|_| Status::internal("the key provider panicked"))?;
        match reply {
            Ok(bytes) => Ok(Response::new(KeyProviderKeyWrapProtocolOutput {
                key_provider_key_wrap_protocol_output: bytes.to_vec(),
            })),
            Err(e @ Error::BadRequest { .. }) => Err(Status::invalid_argument(e.to_string())),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }
}

#[tonic::async_trait]
impl KeyProviderService for Service {
    async fn wrap_key(
        &self,
        request: Request<KeyProviderKeyWrapProtocolInput>,
    ) -> Result<Response<KeyProviderKeyWrapProtocolOutput>, Status> {
        self.handle(Operation::KeyWrap, request).await
    }

    async fn un_wrap_key(
        &self,
        request: Request<KeyProviderKeyWrapProtocolInput>,
    ) -> Result<Response<KeyProviderKeyWrapProtocolOutput>, Status> {
        self.handle(Operation::KeyUnwrap, request).await
    }
}

/// Serves `provider` on `listener` until `shutdown` completes.
///
/// # Errors
/// [`Error::Tls`] for unusable TLS material, [`Error::Serve`] if the server fails.
pub async fn serve_grpc_with_shutdown(
    provider: Arc<dyn KeyProvider>,
    listener: tokio::net::TcpListener,
    tls: Option<TlsServerConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let mut server = Server::builder();
    if let Some(tls) = tls {
        // tonic builds its rustls ServerConfig from the process-wide provider; make sure
        // there is one (an already installed provider is kept).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, tls.key_pem.expose()));
        if let Some(ca) = &tls.client_ca_pem {
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        server = server.tls_config(config).map_err(|e| Error::Tls {
            reason: "unusable server certificate, key or client CA".to_owned(),
            source: Some(Box::new(e)),
        })?;
    }
    server
        .add_service(KeyProviderServiceServer::new(Service(provider)))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
        .map_err(|e| Error::Serve {
            context: "serving".to_owned(),
            source: Box::new(e),
        })
}

/// Serves `provider` on `addr` until Ctrl-C (SIGINT), on a runtime of its own.
///
/// # Errors
/// As [`serve_grpc_with_shutdown`], and [`Error::Serve`] if `addr` cannot be bound.
pub fn serve_grpc(provider: Arc<dyn KeyProvider>, addr: SocketAddr, tls: Option<TlsServerConfig>) -> Result<(), Error> {
    let serve_err = |context: &str| {
        let context = context.to_owned();
        move |e: std::io::Error| Error::Serve {
            context,
            source: Box::new(e),
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(serve_err("starting the runtime"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(serve_err(&format!("binding {addr}")))?;
        serve_grpc_with_shutdown(provider, listener, tls, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })
}
