//! gRPC providers: plain and TLS, client certificates, server names, failures, and use
//! from plain threads and from inside tokio runtimes.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![cfg(feature = "sdk-grpc")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Pki, Server, Xor, message};
use ocicrypt_keyprovider::{GrpcTls, KeyProviderKeyWrapper, Options, ProviderConfig};
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, Error, KeyWrapper};

const OPTS: &[u8] = br#"{"symkey":"AAAA"}"#;

fn xor() -> Arc<Xor> {
    Arc::new(Xor {
        delay: Duration::ZERO,
    })
}

/// A wrapper for provider `kms` over gRPC at `address`, with a 10 s timeout.
fn wrapper(address: String, tls: Option<GrpcTls>) -> KeyProviderKeyWrapper {
    let options = Options::default().timeout(Duration::from_secs(10));
    wrapper_with(address, tls, options)
}

/// A wrapper for provider `kms` over gRPC at `address`, with `options`.
fn wrapper_with(address: String, tls: Option<GrpcTls>, options: Options) -> KeyProviderKeyWrapper {
    KeyProviderKeyWrapper::new("kms", ProviderConfig::grpc(address, tls), options).unwrap()
}

fn configs() -> (EncryptConfig, DecryptConfig) {
    common::enabled_configs("kms")
}

fn round_trip(w: &KeyProviderKeyWrapper) -> Result<(), Error> {
    let (ec, dc) = configs();
    let blob = w.wrap_keys(&ec, OPTS)?.unwrap();
    assert_eq!(blob, OPTS.iter().map(|b| b ^ 0x5a).collect::<Vec<_>>());
    assert_eq!(w.unwrap_key(&dc, &blob)?.expose(), OPTS);
    Ok(())
}

#[test]
fn plain_from_a_thread() {
    let server = Server::start(xor(), None);
    round_trip(&wrapper(server.addr.to_string(), None)).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn plain_inside_a_current_thread_runtime() {
    let server = Server::start(xor(), None);
    round_trip(&wrapper(server.addr.to_string(), None)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_inside_a_multi_thread_runtime() {
    let server = Server::start(xor(), None);
    round_trip(&wrapper(server.addr.to_string(), None)).unwrap();
}

#[test]
fn provider_errors_arrive_as_status() {
    let server = Server::start(xor(), None);
    let w = wrapper(server.addr.to_string(), None);
    let (_, dc) = configs();
    let err = w.unwrap_key(&dc, b"bad").unwrap_err();
    let msg = message(&err);
    assert!(
        msg.contains("not my annotation") && msg.contains("Internal"),
        "{msg}"
    );
}

#[test]
fn slow_provider_times_out() {
    let server = Server::start(
        Arc::new(Xor {
            delay: Duration::from_millis(1500),
        }),
        None,
    );
    let options = Options::default().timeout(Duration::from_millis(300));
    let w = wrapper_with(server.addr.to_string(), None, options);
    let (ec, _) = configs();
    let start = Instant::now();
    let msg = message(&w.wrap_keys(&ec, OPTS).unwrap_err());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(msg.contains("did not answer within 300ms"), "{msg}");
}

#[test]
fn nobody_listening() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let w = wrapper(format!("127.0.0.1:{port}"), None);
    let (ec, _) = configs();
    let msg = message(&w.wrap_keys(&ec, OPTS).unwrap_err());
    assert!(msg.contains("cannot reach gRPC key provider"), "{msg}");
}

fn tls(pki: &Pki) -> GrpcTls {
    GrpcTls {
        root_ca_file: Some(pki.ca.clone()),
        server_name: Some("localhost".into()),
        ..GrpcTls::default()
    }
}

#[test]
fn tls_with_root_ca() {
    let pki = Pki::new();
    let server = Server::start(xor(), Some(pki.server_tls(false)));
    round_trip(&wrapper(server.addr.to_string(), Some(tls(&pki)))).unwrap();
    // Without server-name, the host of the address (an IP SAN here) is checked.
    let by_ip = GrpcTls {
        server_name: None,
        ..tls(&pki)
    };
    round_trip(&wrapper(server.addr.to_string(), Some(by_ip))).unwrap();
    // A plaintext client cannot talk to a TLS server.
    assert!(round_trip(&wrapper(server.addr.to_string(), None)).is_err());
}

#[test]
fn tls_wrong_server_name_fails() {
    let pki = Pki::new();
    let server = Server::start(xor(), Some(pki.server_tls(false)));
    let wrong = GrpcTls {
        server_name: Some("wrong.example".into()),
        ..tls(&pki)
    };
    let msg = message(&round_trip(&wrapper(server.addr.to_string(), Some(wrong))).unwrap_err());
    assert!(
        msg.contains("cannot reach gRPC key provider")
            && msg.contains("not valid for name \"wrong.example\""),
        "{msg}"
    );
}

#[test]
fn tls_unknown_ca_fails_unless_verification_is_skipped() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = Server::start(xor(), Some(pki.server_tls(false)));
    let msg =
        message(&round_trip(&wrapper(server.addr.to_string(), Some(tls(&other)))).unwrap_err());
    assert!(msg.contains("invalid peer certificate"), "{msg}");
    let insecure = GrpcTls {
        root_ca_file: None,
        server_name: Some("wrong.example".into()),
        insecure_skip_verify: true,
        ..GrpcTls::default()
    };
    round_trip(&wrapper(server.addr.to_string(), Some(insecure))).unwrap();
}

#[test]
fn tls_client_certificate_required() {
    let pki = Pki::new();
    let server = Server::start(xor(), Some(pki.server_tls(true)));
    assert!(round_trip(&wrapper(server.addr.to_string(), Some(tls(&pki)))).is_err());
    let with_cert = GrpcTls {
        cert_file: Some(pki.client_cert.clone()),
        key_file: Some(pki.client_key.clone()),
        ..tls(&pki)
    };
    round_trip(&wrapper(server.addr.to_string(), Some(with_cert))).unwrap();
    // A certificate from another CA is refused.
    let other = Pki::new();
    let foreign = GrpcTls {
        cert_file: Some(other.client_cert.clone()),
        key_file: Some(other.client_key.clone()),
        ..tls(&pki)
    };
    assert!(round_trip(&wrapper(server.addr.to_string(), Some(foreign))).is_err());
}

#[test]
fn bad_tls_files_are_config_errors() {
    let pki = Pki::new();
    let not_pem = GrpcTls {
        root_ca_file: Some(pki.server_key.clone()),
        ..GrpcTls::default()
    };
    let err = round_trip(&wrapper("127.0.0.1:1".into(), Some(not_pem))).unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert!(err.to_string().contains("no root CA certificates"), "{err}");
    let bad_key = GrpcTls {
        cert_file: Some(pki.client_cert.clone()),
        key_file: Some(pki.client_cert.clone()),
        ..tls(&pki)
    };
    let err = round_trip(&wrapper("127.0.0.1:1".into(), Some(bad_key))).unwrap_err();
    assert!(err.to_string().contains("cannot read client key"), "{err}");
}

#[test]
fn oversized_reply_is_refused() {
    let server = Server::start(xor(), None);
    let options = Options::default().max_reply_size(1000);
    let w = wrapper_with(server.addr.to_string(), None, options);
    let (ec, _) = configs();
    assert!(w.wrap_keys(&ec, &[b'x'; 500]).is_ok());
    let msg = message(&w.wrap_keys(&ec, &[b'x'; 2000]).unwrap_err());
    assert!(
        msg.contains("OutOfRange") || msg.contains("message length too large"),
        "{msg}"
    );
}
