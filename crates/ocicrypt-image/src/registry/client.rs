//! The registry transport: [`Source`] and [`Destination`] over the OCI distribution API,
//! with `reqwest` on a small tokio runtime of its own. Blobs stream both ways: a source
//! blob is a reader over the HTTP response, and a new blob goes up in one upload session
//! (POST, one streamed PATCH, PUT `?digest=` at the end), so neither touches the disk.
//!
//! Why not `oci-client`: it cannot present a client certificate (no identity in its config,
//! and no way to hand it a client); its streamed push sends a PATCH per 4 MiB and waits for
//! each, which halves the throughput of a registry on loopback; its blob stream hashes
//! every blob a second time; and it reads a manifest whole whatever its size. The
//! distribution API is a handful of requests on `reqwest` (the client under `oci-client`);
//! the auth challenge is parsed by `http-auth` ([`authorize`](super::authorize)).

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt as _;
use oci_spec::image::{Descriptor, Digest, MediaType};
use reqwest::header::{ACCEPT as ACCEPT_HEADER, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::authorize::{AuthError, Authorizer, Challenge};
use super::{RegistryOptions, RegistryRef, auth};
use crate::digest::sha256;
use crate::graph::{Kind, kind};
use crate::lossless::Lossless;
use crate::transport::{BlobWriter, Destination, Source, read_blob_verified};
use crate::{Error, Result};

/// The largest manifest or index we accept from a registry (4 MiB, as containerd).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// How much of a new blob is handed to the upload at a time; with [`UPLOAD_QUEUE`], what a
/// blob being uploaded holds in memory.
const CHUNK: usize = 256 * 1024;

/// How many chunks wait for the upload's connection.
const UPLOAD_QUEUE: usize = 4;

/// The most manifests and indexes one image may write.
const MAX_PENDING_DOCUMENTS: usize = 4096;

/// How often an idempotent request is tried before its network error is reported.
const ATTEMPTS: u32 = 3;

/// The manifest media types we ask a registry for.
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The runtime every registry connection of the process runs on: two threads, started by
/// the first connection (what a registry transport needs; nothing else starts it).
fn runtime() -> Result<Arc<Runtime>> {
    static RUNTIME: std::sync::OnceLock<Arc<Runtime>> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt.clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ocicrypt-registry")
        .enable_all()
        .build()
        .map_err(Error::io("cannot start the registry client's runtime"))?;
    // Two first connections at once: one runtime wins, the other is dropped unused.
    Ok(RUNTIME.get_or_init(|| Arc::new(rt)).clone())
}

/// What both directions share: the client, its runtime, its authorization, and the image
/// they address.
struct Conn {
    rt: Arc<Runtime>,
    http: reqwest::Client,
    /// `SCHEME://HOST/v2/REPOSITORY/`.
    base: Url,
    auth: Authorizer,
    repository: String,
    /// The tag or digest the reference names (`latest` when it names neither).
    reference: String,
    /// The digest the reference names, if any.
    digest: Option<String>,
    /// The registry as the reference names it (`HOST[:PORT]`, `docker.io`).
    host: String,
    /// Where CA certificates for it are looked for, for messages.
    cert_dirs: String,
    shown: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("image", &self.shown).finish()
    }
}

/// Whether a connection reads, or reads and writes: the actions its tokens ask for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Pull,
    Push,
}

/// The host that serves the API of `registry`: Docker Hub's is not `docker.io`.
fn endpoint(registry: &str) -> &str {
    match registry {
        "docker.io" => "registry-1.docker.io",
        r => r,
    }
}

impl Conn {
    fn open(r: &RegistryRef, o: &RegistryOptions, access: Access) -> Result<Self> {
        // reqwest is built without a default crypto provider; ours is ring, as everywhere
        // else in the workspace. Installing fails harmlessly when one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let host = r.registry().to_owned();
        let shown = r.to_string();
        let credentials = auth::credentials(o, r.registry(), r.repository())?;
        let rt = runtime()?;
        let tls = auth::tls_files(o, r.registry())?;
        let setup = |e: reqwest::Error| Error::RegistryConfig {
            what: format!("cannot set up a client for {host}: {e}"),
        };
        let mut roots = Vec::new();
        for c in &tls.cas {
            roots.extend(reqwest::Certificate::from_pem_bundle(c).map_err(setup)?);
        }
        let mut builder = reqwest::Client::builder()
            .danger_accept_invalid_certs(!o.tls_verify)
            .tls_certs_merge(roots)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("ocicrypt-rs/", env!("CARGO_PKG_VERSION")));
        if let Some((pem, file)) = &tls.identity {
            let identity = reqwest::Identity::from_pem(pem).map_err(|e| Error::RegistryConfig {
                what: format!(
                    "{}: not a client certificate and its key (PEM): {e}",
                    file.display()
                ),
            })?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(setup)?;
        let base_for = |scheme: &str| {
            Url::parse(&format!(
                "{scheme}://{}/v2/{}/",
                endpoint(&host),
                r.repository()
            ))
            .map_err(|e| Error::RegistryConfig {
                what: format!("{shown}: {e}"),
            })
        };
        let cert_dirs = match &o.cert_dir {
            Some(d) => d.display().to_string(),
            None => super::default_cert_dirs(&host)
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" or "),
        };
        let scope = format!(
            "repository:{}:{}",
            r.repository(),
            match access {
                Access::Pull => "pull",
                Access::Push => "pull,push",
            }
        );
        let mut conn = Self {
            rt,
            http,
            base: base_for("https")?,
            auth: Authorizer::anonymous(),
            repository: r.repository().to_owned(),
            reference: r.digest().or(r.tag()).unwrap_or("latest").to_owned(),
            digest: r.digest().map(str::to_owned),
            host: host.clone(),
            cert_dirs,
            shown: shown.clone(),
        };
        // Ask /v2/ first: its answer names the auth scheme, and connection, TLS and
        // plain-HTTP trouble become one clear error before any work.
        let res = match conn.probe() {
            Err(e) if !o.tls_verify && is_network(&e) => {
                // tls-verify=false allows plain HTTP, as skopeo does: try it.
                conn.base = base_for("http")?;
                conn.probe()
            }
            other => other,
        }
        .map_err(|e| conn.error("cannot reach the registry", e))?;
        let challenge = match res.status() {
            s if s.is_success() => Challenge::None,
            StatusCode::UNAUTHORIZED => {
                Challenge::from_headers(res.headers()).map_err(|e| conn.auth_failure(e))?
            }
            s => {
                return Err(conn.error("cannot reach the registry", Fetch::Status(s.as_u16())));
            }
        };
        conn.auth = Authorizer::new(challenge, credentials.as_ref(), scope)
            .map_err(|e| conn.auth_failure(e))?;
        // Credentials are checked now, not halfway through a copy: a token is fetched, or
        // /v2/ is asked again with the Basic credentials.
        match conn.auth.challenge() {
            Challenge::None => {}
            Challenge::Basic if !conn.auth.has_credentials() => {
                return Err(Error::RegistryAuth { host });
            }
            Challenge::Basic | Challenge::Bearer { .. } => {
                let root = conn.root_url()?;
                let res = conn
                    .rt
                    .block_on(conn.send(None, || conn.http.get(root.clone())))
                    .map_err(|e| conn.error("cannot reach the registry", e))?;
                if !res.status().is_success() {
                    return Err(conn.error(
                        "cannot reach the registry",
                        Fetch::Status(res.status().as_u16()),
                    ));
                }
            }
        }
        Ok(conn)
    }

    /// `SCHEME://HOST/v2/`.
    fn root_url(&self) -> Result<Url> {
        self.base.join("/v2/").map_err(|e| Error::RegistryConfig {
            what: format!("{}: {e}", self.shown),
        })
    }

    /// GET `/v2/` without credentials.
    fn probe(&self) -> Result<reqwest::Response, Fetch> {
        let root = self.root_url().map_err(|e| Fetch::BadUrl(e.to_string()))?;
        self.retry_fetch(|| async { Ok(self.http.get(root.clone()).send().await?) })
    }

    /// Sends the request `build` makes with the connection's authorization (whose token
    /// also covers `extra`); once more with a new token if a Bearer token is refused (it
    /// may have expired).
    async fn send(
        &self,
        extra: Option<&str>,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Fetch> {
        let mut again = true;
        loop {
            let mut req = build();
            if let Some(h) = self.auth.header(&self.http, extra).await? {
                req = req.header(AUTHORIZATION, h);
            }
            let res = req.send().await?;
            if res.status() == StatusCode::UNAUTHORIZED && again && self.auth.retry_after_401(extra)
            {
                again = false;
                continue;
            }
            return Ok(res);
        }
    }

    /// Runs an idempotent request, again after an error `transient` accepts (a network
    /// error or a 5xx), up to [`ATTEMPTS`] times with growing pauses.
    fn retry_if<T, E, F, Fut>(&self, transient: impl Fn(&E) -> bool, mut f: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut pause = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            match self.rt.block_on(f()) {
                Err(e) if attempt < ATTEMPTS && transient(&e) => {
                    std::thread::sleep(pause);
                    pause *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Our error for `e`, met while doing `what` (connecting, or reading the image the
    /// reference names: a 404 is an unknown manifest).
    fn error(&self, what: &str, e: Fetch) -> Error {
        match e {
            Fetch::Status(404) => Error::ManifestUnknown {
                reference: self.shown.clone(),
            },
            e => self.failure(what, e),
        }
    }

    /// As [`Conn::error`], for blob and manifest operations after the connection was made
    /// (a 404 there is a missing blob, not an unknown image).
    fn blob_error(&self, what: String, digest: &str, e: Fetch) -> Error {
        match e {
            Fetch::Status(404) => Error::MissingBlob {
                digest: digest.to_owned(),
            },
            e => self.failure(&what, e),
        }
    }

    /// An error of the authorization set up at connection time.
    fn auth_failure(&self, e: AuthError) -> Error {
        self.failure("cannot authenticate", Fetch::Auth(e))
    }

    /// What both [`Conn::error`] and [`Conn::blob_error`] say: authentication, TLS, or the
    /// request failed.
    fn failure(&self, what: &str, e: Fetch) -> Error {
        let host = self.host.clone();
        match &e {
            Fetch::Status(401 | 403) | Fetch::Auth(AuthError::Denied) => {
                return Error::RegistryAuth { host };
            }
            Fetch::Auth(AuthError::Unsupported(_) | AuthError::Token { .. }) => {
                return Error::Registry {
                    host,
                    what: "cannot authenticate".into(),
                    source: Box::new(e),
                };
            }
            _ => {}
        }
        match tls_trouble(&e) {
            Some(Tls::Untrusted) => Error::UntrustedCertificate {
                host,
                dirs: self.cert_dirs.clone(),
            },
            Some(Tls::Refused(alert)) => Error::TlsRefused {
                host,
                alert,
                dirs: self.cert_dirs.clone(),
            },
            Some(Tls::Plain) => Error::PlainHttp { host },
            None => Error::Registry {
                host,
                what: what.to_owned(),
                source: Box::new(e),
            },
        }
    }
}

/// A connection that could not be made or broke: worth another try for idempotent
/// requests, and (with tls-verify=false) a reason to try plain HTTP.
fn is_network(e: &Fetch) -> bool {
    match e {
        Fetch::Http(r) | Fetch::Auth(AuthError::Http(r)) => {
            r.is_connect() || r.is_timeout() || r.is_request() || r.is_body()
        }
        _ => false,
    }
}

fn is_transient(e: &Fetch) -> bool {
    if tls_trouble(e).is_some() {
        return false;
    }
    is_network(e) || matches!(e, Fetch::Status(code) if *code >= 500)
}

enum Tls {
    /// The server's certificate does not chain to a trusted CA.
    Untrusted,
    /// The server ended the handshake with this alert: it wants a client certificate, or
    /// refused ours.
    Refused(String),
    /// The server did not answer TLS at all (plain HTTP).
    Plain,
}

/// What TLS said, if it was TLS that failed: walks the error's causes for rustls's error
/// (inside an `io::Error` where hyper put it).
fn tls_trouble(e: &Fetch) -> Option<Tls> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(match t {
                rustls::Error::InvalidCertificate(_) => Tls::Untrusted,
                rustls::Error::AlertReceived(alert) => Tls::Refused(format!("{alert:?}")),
                _ => Tls::Plain,
            });
        }
        // An io::Error's `source` skips the error it wraps: descend into that instead.
        cur = match err.downcast_ref::<io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|i| i as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// The media type a manifest names for itself, else the one its shape implies.
fn document_media_type(body: &[u8]) -> MediaType {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Head>(body) {
        Ok(Head {
            media_type: Some(t),
            ..
        }) => MediaType::from(t.as_str()),
        Ok(Head {
            manifests: Some(_), ..
        }) => MediaType::ImageIndex,
        _ => MediaType::ImageManifest,
    }
}

/// Reads an image from a registry.
#[derive(Debug)]
pub struct RegistrySource {
    conn: Conn,
    /// The root manifest, read once by [`Source::root`] (digest, body).
    root: Mutex<Option<(String, Bytes)>>,
}

impl RegistrySource {
    /// Connects to the registry of `r` (one request, to `/v2/`) for reading.
    ///
    /// # Errors
    /// The registry cannot be reached, its certificate is not trusted, it speaks plain HTTP
    /// and `tls_verify` is on, or the credentials are refused.
    pub fn open(r: &RegistryRef, o: &RegistryOptions) -> Result<Self> {
        Ok(Self {
            conn: Conn::open(r, o, Access::Pull)?,
            root: Mutex::new(None),
        })
    }

    /// Reads the manifest or index `reference` (a tag or a digest) whole, at most
    /// [`MAX_MANIFEST_SIZE`] bytes of it.
    fn pull_manifest(&self, reference: &str) -> Result<Bytes> {
        let c = &self.conn;
        match c.retry_fetch(|| c.fetch_manifest(reference)) {
            Ok(body) => Ok(body),
            Err(Fetch::Status(404)) => Err(Error::ManifestUnknown {
                reference: if reference.contains(':') {
                    format!("{}@{reference}", c.repository)
                } else {
                    c.shown.clone()
                },
            }),
            Err(Fetch::TooLarge(size)) => Err(Error::TooLarge {
                digest: reference.to_owned(),
                size,
                limit: MAX_MANIFEST_SIZE,
            }),
            Err(e) => Err(c.failure(&format!("cannot read manifest {reference}"), e)),
        }
    }
}

impl Source for RegistrySource {
    fn root(&self) -> Result<Lossless<Descriptor>> {
        let body = self.pull_manifest(&self.conn.reference)?;
        let digest = sha256(&body);
        if let Some(want) = &self.conn.digest
            && *want != digest
        {
            return Err(Error::DigestMismatch {
                expected: want.to_owned(),
                actual: digest,
            });
        }
        let desc = Descriptor::new(
            document_media_type(&body),
            body.len() as u64,
            crate::transport::sha256_digest(&digest)?,
        );
        *self
            .root
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))? = Some((digest, body));
        Lossless::new(desc)
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>> {
        // Not hashed here: the caller verifies the digest, and SHA-256 is most of the CPU a
        // copy costs.
        let c = &self.conn;
        let digest = desc.digest().to_string();
        let path = format!("blobs/{digest}");
        let res = c
            .retry_fetch(|| c.get(&path, None))
            .map_err(|e| c.blob_error(format!("cannot read blob {digest}"), &digest, e))?;
        let reader = StreamReader::new(res.bytes_stream().map_err(io::Error::other));
        Ok(Box::new(SyncIoBridge::new_with_handle(
            reader,
            c.rt.handle().clone(),
        )))
    }

    fn read_document(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        let digest = desc.digest().to_string();
        if let Some((d, body)) = &*self
            .root
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))?
            && *d == digest
        {
            return Ok(body.to_vec());
        }
        if kind(desc) == Kind::Other {
            return read_blob_verified(self, desc);
        }
        // Manifests live under /manifests/, not /blobs/.
        if desc.size() > MAX_MANIFEST_SIZE {
            return Err(Error::TooLarge {
                digest,
                size: desc.size(),
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let body = self.pull_manifest(&digest)?;
        crate::transport::check_size(desc, body.len() as u64)?;
        crate::transport::check_digest(desc, Some(sha256(&body)))?;
        Ok(body.to_vec())
    }

    fn repository(&self) -> Option<(String, String)> {
        Some((self.conn.host.clone(), self.conn.repository.clone()))
    }
}

/// Writes an image to a registry: blobs as they come, manifests and indexes at
/// [`Destination::commit`], children first and the tag last, so a failed run tags nothing.
#[derive(Debug)]
pub struct RegistryDestination {
    conn: Arc<Conn>,
    /// Manifests and indexes to push at commit: (digest, media type, body).
    documents: Mutex<Vec<(String, String, Vec<u8>)>>,
}

impl RegistryDestination {
    /// Connects to the registry of `r` (one request, to `/v2/`) for writing. `r` must name a
    /// tag: the digest of what will be written is not known yet.
    ///
    /// # Errors
    /// As [`RegistrySource::open`]; and [`Error::RegistryConfig`] for a digest reference.
    pub fn open(r: &RegistryRef, o: &RegistryOptions) -> Result<Self> {
        if r.digest().is_some() {
            return Err(Error::RegistryConfig {
                what: format!("{r}: a destination must be a tag, not a digest"),
            });
        }
        Ok(Self {
            conn: Arc::new(Conn::open(r, o, Access::Push)?),
            documents: Mutex::new(Vec::new()),
        })
    }

    /// PUT `manifests/REFERENCE` (a tag or a digest).
    fn push_manifest(&self, reference: &str, media_type: &str, body: &[u8]) -> Result<()> {
        let c = &self.conn;
        let what = || format!("cannot push manifest {}@{reference}", c.repository);
        let url = c
            .base
            .join(&format!("manifests/{reference}"))
            .map_err(|e| c.failure(&what(), Fetch::BadUrl(e.to_string())))?;
        let body = Bytes::copy_from_slice(body);
        c.rt.block_on(async {
            let res = c
                .send(None, || {
                    c.http
                        .put(url.clone())
                        .header(CONTENT_TYPE, media_type)
                        .body(body.clone())
                })
                .await
                .map_err(Box::new)?;
            expect("PUT", res, StatusCode::CREATED).await.map(|_| ())
        })
        .map_err(|e| c.step_error(&what(), e))
    }
}

impl Destination for RegistryDestination {
    fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let c = &self.conn;
        let d = digest.to_string();
        let what = || format!("cannot look up blob {d}");
        let url = c
            .base
            .join(&format!("blobs/{d}"))
            .map_err(|e| c.failure(&what(), Fetch::BadUrl(e.to_string())))?;
        let status = c
            .retry_fetch(|| async {
                let res = c.send(None, || c.http.head(url.clone())).await?;
                match res.status() {
                    s if s.is_success() => Ok(true),
                    StatusCode::NOT_FOUND => Ok(false),
                    s => Err(Fetch::Status(s.as_u16())),
                }
            })
            .map_err(|e| c.failure(&what(), e))?;
        Ok(status)
    }

    fn new_blob(&self) -> Result<Box<dyn BlobWriter>> {
        Ok(Box::new(Upload {
            conn: self.conn.clone(),
            buf: BytesMut::with_capacity(CHUNK),
            tx: None,
            task: None,
        }))
    }

    fn put_document(&self, bytes: &[u8], digest: &Digest, media_type: &MediaType) -> Result<()> {
        let mut docs = self
            .documents
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))?;
        let d = digest.to_string();
        if docs.iter().any(|(x, _, _)| *x == d) {
            return Ok(());
        }
        if docs.len() >= MAX_PENDING_DOCUMENTS {
            return Err(Error::TooComplex {
                reason: format!("more than {MAX_PENDING_DOCUMENTS} manifests to write"),
            });
        }
        docs.push((d, media_type.to_string(), bytes.to_vec()));
        Ok(())
    }

    fn mount_blob(&self, registry: &str, repository: &str, digest: &Digest) -> Result<bool> {
        let c = &self.conn;
        if registry != c.host || repository == c.repository {
            return Ok(false);
        }
        let Ok(mut url) = c.base.join("blobs/uploads/") else {
            return Ok(false);
        };
        url.query_pairs_mut()
            .append_pair("mount", digest.as_ref())
            .append_pair("from", repository);
        // A token for the mount must also allow pulling from the other repository.
        let from = format!("repository:{repository}:pull");
        let mounted = c.rt.block_on(async {
            let res = c
                .send(Some(&from), || {
                    c.http.post(url.clone()).header(CONTENT_LENGTH, 0)
                })
                .await
                .ok()?;
            if res.status() == StatusCode::CREATED {
                return Some(true);
            }
            // A registry that cannot mount starts an upload instead (202): cancel it, and
            // the caller copies the blob.
            if res.status() == StatusCode::ACCEPTED
                && let Some(session) = res
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| res.url().join(l).ok())
            {
                let _ = c.send(None, || c.http.delete(session.clone())).await;
            }
            Some(false)
        });
        Ok(mounted.unwrap_or(false))
    }

    fn flush_blobs(&self) -> Result<()> {
        // Every upload finished in its BlobWriter::commit.
        Ok(())
    }

    fn commit(self: Box<Self>, root: Lossless<Descriptor>) -> Result<()> {
        let docs = std::mem::take(
            &mut *self
                .documents
                .lock()
                .map_err(|_| Error::Internal("poisoned".into()))?,
        );
        let root_digest = root.get().digest().to_string();
        let mut root_doc = None;
        for (digest, media_type, body) in &docs {
            if *digest == root_digest {
                root_doc = Some((media_type, body));
                continue;
            }
            self.push_manifest(digest, media_type, body)?;
        }
        let Some((media_type, body)) = root_doc else {
            return Err(Error::Internal(format!(
                "the root manifest {root_digest} was never written"
            )));
        };
        // Last: the tag.
        self.push_manifest(&self.conn.reference, media_type, body)
    }
}

/// Why a request that changes the registry failed (its status and what the registry said).
#[derive(Debug, thiserror::Error)]
#[error("{request} {url}: HTTP {status}: {body}")]
struct StatusError {
    request: &'static str,
    url: String,
    status: u16,
    body: String,
}

/// What a step of an upload (or a manifest push) ends in: a location, or why not.
type Step<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The `Location` of `res` (made absolute) if its status is `want`; else its status and
/// the start of what the registry said.
async fn expect(request: &'static str, mut res: reqwest::Response, want: StatusCode) -> Step<Url> {
    let url = res.url().clone();
    let status = res.status();
    if status != want {
        // A registry's error body is short, but it is untrusted: read at most 4 KiB of it,
        // and keep 500 characters.
        let mut raw = Vec::new();
        while raw.len() < 4096 {
            match res.chunk().await {
                Ok(Some(c)) => raw.extend_from_slice(&c),
                _ => break,
            }
        }
        let body: String = String::from_utf8_lossy(&raw).chars().take(500).collect();
        return Err(Box::new(StatusError {
            request,
            url: url.to_string(),
            status: status.as_u16(),
            body,
        }));
    }
    match res
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
    {
        Some(location) => Ok(url.join(location)?),
        // Only uploads need one; a manifest PUT's location is not used.
        None => Ok(url),
    }
}

impl Conn {
    /// POST: a new upload session; its location.
    async fn start_upload(&self) -> Step<Url> {
        let url = self.base.join("blobs/uploads/")?;
        let res = self
            .send(None, || {
                self.http.post(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        let location = expect("POST", res, StatusCode::ACCEPTED).await?;
        if location == url {
            return Err(format!("POST {url}: no Location in the answer").into());
        }
        Ok(location)
    }

    /// PATCH: the data of the session at `location`, streamed from `body`; the next
    /// location. Sent once: a streamed body cannot be sent again.
    async fn patch_upload(&self, location: Url, body: reqwest::Body) -> Step<Url> {
        let mut req = self
            .http
            .patch(location)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(h) = self.auth.header(&self.http, None).await? {
            req = req.header(AUTHORIZATION, h);
        }
        expect("PATCH", req.send().await?, StatusCode::ACCEPTED).await
    }

    /// PUT `?digest=`: the session's data is the blob `digest`.
    async fn finish_upload(&self, mut location: Url, digest: &str, body: Bytes) -> Step<()> {
        location.query_pairs_mut().append_pair("digest", digest);
        let res = self
            .send(None, || {
                self.http
                    .put(location.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, body.len())
                    .body(body.clone())
            })
            .await?;
        expect("PUT", res, StatusCode::CREATED).await.map(|_| ())
    }

    /// Maps a failed step: refused credentials are authentication, TLS trouble is said as
    /// such, the rest is a registry error about `what`.
    fn step_error(&self, what: &str, e: Box<dyn std::error::Error + Send + Sync>) -> Error {
        if let Some(u) = e.downcast_ref::<StatusError>()
            && (u.status == 401 || u.status == 403)
        {
            return Error::RegistryAuth {
                host: self.host.clone(),
            };
        }
        match e.downcast::<Fetch>() {
            Ok(f) => self.failure(what, *f),
            Err(e) => Error::Registry {
                host: self.host.clone(),
                what: what.to_owned(),
                source: e,
            },
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
enum Fetch {
    #[error("HTTP status {0}")]
    Status(u16),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("bad URL: {0}")]
    BadUrl(String),
    #[error("larger than {MAX_MANIFEST_SIZE} bytes ({0})")]
    TooLarge(u64),
}

impl Conn {
    /// GET `PATH` below `/v2/REPOSITORY/`; the response, if its status is a success.
    async fn get(&self, path: &str, accept: Option<String>) -> Result<reqwest::Response, Fetch> {
        let url = self
            .base
            .join(path)
            .map_err(|e| Fetch::BadUrl(e.to_string()))?;
        let res = self
            .send(None, || {
                let req = self.http.get(url.clone());
                match &accept {
                    Some(a) => req.header(ACCEPT_HEADER, a),
                    None => req,
                }
            })
            .await?;
        if !res.status().is_success() {
            return Err(Fetch::Status(res.status().as_u16()));
        }
        Ok(res)
    }

    /// [`Conn::retry_if`] for our own requests.
    fn retry_fetch<T, F, Fut>(&self, f: F) -> Result<T, Fetch>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fetch>>,
    {
        self.retry_if(is_transient, f)
    }

    /// GET `manifests/REFERENCE`, accepting OCI and Docker schema 2 manifests and indexes,
    /// and reading at most [`MAX_MANIFEST_SIZE`] bytes.
    async fn fetch_manifest(&self, reference: &str) -> Result<Bytes, Fetch> {
        let mut res = self
            .get(&format!("manifests/{reference}"), Some(ACCEPT.join(", ")))
            .await?;
        if let Some(len) = res.content_length()
            && len > MAX_MANIFEST_SIZE
        {
            return Err(Fetch::TooLarge(len));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = res.chunk().await? {
            let len = (body.len() + chunk.len()) as u64;
            if len > MAX_MANIFEST_SIZE {
                return Err(Fetch::TooLarge(len));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

type UploadTask = JoinHandle<Step<Url>>;

/// A blob on its way up. Its first chunk opens an upload session whose one PATCH request
/// streams what follows from a short queue; commit ends the stream and completes the
/// session with the digest (PUT). Blobs smaller than a chunk go up in the PUT itself.
/// Dropped before commit, the session is abandoned, never completed, so nothing is stored.
struct Upload {
    conn: Arc<Conn>,
    buf: BytesMut,
    tx: Option<tokio::sync::mpsc::Sender<Bytes>>,
    task: Option<UploadTask>,
}

impl Upload {
    fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        if self.tx.is_none() {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(UPLOAD_QUEUE);
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, io::Error>(b), rx))
            });
            let conn = self.conn.clone();
            self.task = Some(self.conn.rt.spawn(async move {
                let location = conn.start_upload().await?;
                conn.patch_upload(location, reqwest::Body::wrap_stream(stream))
                    .await
            }));
            self.tx = Some(tx);
        }
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("no upload"))?;
        if tx.blocking_send(chunk).is_err() {
            // The upload ended early: its error says why.
            let e = match self.task.take().map(|t| self.conn.rt.block_on(t)) {
                Some(Ok(Err(e))) => e.to_string(),
                Some(Err(e)) => e.to_string(),
                _ => "the upload stopped".to_owned(),
            };
            return Err(io::Error::other(format!(
                "upload to {} failed: {e}",
                self.conn.host
            )));
        }
        Ok(())
    }
}

impl Write for Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        while self.buf.len() >= CHUNK {
            let chunk = self.buf.split_to(CHUNK).freeze();
            self.send(chunk)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for Upload {
    fn commit(mut self: Box<Self>, digest: &Digest) -> Result<()> {
        let d = digest.to_string();
        let conn = self.conn.clone();
        let result = if self.task.is_none() {
            // Small: the data goes in the PUT that completes the session.
            let data = self.buf.split().freeze();
            conn.rt.block_on(async {
                let location = conn.start_upload().await?;
                conn.finish_upload(location, &d, data).await
            })
        } else {
            if !self.buf.is_empty() {
                let rest = self.buf.split().freeze();
                self.send(rest)
                    .map_err(Error::io(format!("cannot upload blob {d}")))?;
            }
            // The end of the PATCH body.
            self.tx = None;
            let task = self
                .task
                .take()
                .ok_or_else(|| Error::Internal("no upload".into()))?;
            conn.rt.block_on(async {
                let location = task.await??;
                conn.finish_upload(location, &d, Bytes::new()).await
            })
        };
        result.map_err(|e| conn.step_error(&format!("cannot upload blob {d}"), e))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
