//! Test helpers: certificates made at run time, and an in-process gRPC provider.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![allow(dead_code, reason = "each test file uses a part")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ocicrypt_keyprovider::ProviderError;
use ocicrypt_keyprovider::sdk::{KeyProvider, TlsServerConfig, UnwrapRequest, WrapRequest};
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, SecretBytes};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// Configurations that wrap with, and unwrap with, key provider `provider`, each with the
/// argument `Enabled`.
pub(crate) fn enabled_configs(provider: &str) -> (EncryptConfig, DecryptConfig) {
    let mut ec = EncryptConfig::default();
    ec.key_providers
        .insert(provider.into(), vec![b"Enabled".to_vec()]);
    let mut dc = DecryptConfig::default();
    dc.key_providers
        .insert(provider.into(), vec![b"Enabled".to_vec()]);
    (ec, dc)
}

/// A CA, a server certificate for `localhost`/127.0.0.1 and a client certificate, as
/// PEM files in a temporary directory.
pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |names: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
        let (client_cert, client_key) = leaf(vec!["client".into()]);
        let write = |name: &str, data: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, data).unwrap();
            p
        };
        Self {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
            dir,
        }
    }

    pub(crate) fn server_tls(&self, client_auth: bool) -> TlsServerConfig {
        TlsServerConfig {
            cert_pem: std::fs::read(&self.server_cert).unwrap(),
            key_pem: SecretBytes::new(std::fs::read(&self.server_key).unwrap()),
            client_ca_pem: client_auth.then(|| std::fs::read(&self.ca).unwrap()),
        }
    }
}

/// XORs with 0x5a; refuses requests without its name; sleeps if asked to.
pub(crate) struct Xor {
    pub(crate) delay: std::time::Duration,
}

impl KeyProvider for Xor {
    fn wrap_key(&self, r: &WrapRequest) -> Result<Vec<u8>, ProviderError> {
        std::thread::sleep(self.delay);
        if r.args("kms").is_none() {
            return Err(ProviderError::new("kms not requested"));
        }
        Ok(r.opts_data.expose().iter().map(|b| b ^ 0x5a).collect())
    }

    fn unwrap_key(&self, r: &UnwrapRequest) -> Result<SecretBytes, ProviderError> {
        if r.annotation == b"bad" {
            return Err(ProviderError::new("not my annotation"));
        }
        Ok(SecretBytes::new(
            r.annotation.iter().map(|b| b ^ 0x5a).collect(),
        ))
    }
}

/// An in-process gRPC provider on 127.0.0.1, stopped on drop.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(provider: Arc<dyn KeyProvider>, tls: Option<TlsServerConfig>) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                ocicrypt_keyprovider::sdk::serve_grpc_with_shutdown(
                    provider,
                    listener,
                    tls,
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap();
            });
        });
        Self {
            addr: addr_rx.recv().unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An error with all its causes, on one line.
pub(crate) fn message(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

pub(crate) fn path_str(p: &Path) -> String {
    p.display().to_string()
}
