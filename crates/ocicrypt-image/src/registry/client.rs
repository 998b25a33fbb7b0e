//! The registry transport: [`Source`] and [`Destination`] over the OCI distribution API,
//! with `oci-client` on a small tokio runtime of its own. Blobs stream both ways: a source
//! blob is a reader over the HTTP response, and a new blob goes up in one upload session
//! (POST, one streamed PATCH, PUT `?digest=` at the end), so neither touches the disk.
//!
//! The upload is the one exchange not made through `oci-client`: its streamed push sends a
//! PATCH request per 4 MiB and waits for each, which halves the throughput of a registry
//! on loopback. The session's three requests are made with `reqwest` (the HTTP client
//! under `oci-client`), with the same TLS settings and the credentials `oci-client`
//! negotiated.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use oci_spec::image::{Descriptor, Digest, MediaType};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::io::{StreamReader, SyncIoBridge};

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

/// What both directions share: the client, its runtime, and the image they address.
struct Conn {
    rt: Arc<Runtime>,
    client: Client,
    /// For uploads: the same TLS settings as `client`.
    http: reqwest::Client,
    /// `SCHEME://HOST/v2/REPOSITORY/`.
    base: reqwest::Url,
    /// The `Authorization` header of the requests made with `http` (uploads, manifests).
    auth_header: Option<reqwest::header::HeaderValue>,
    reference: Reference,
    host: String,
    shown: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("image", &self.shown).finish()
    }
}

impl Conn {
    fn open(r: &RegistryRef, o: &RegistryOptions, op: RegistryOperation) -> Result<Self> {
        // reqwest is built without a default crypto provider; ours is ring, as everywhere
        // else in the workspace. Installing fails harmlessly when one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let host = r.registry().to_owned();
        let reference = match (r.tag(), r.digest()) {
            (Some(t), Some(d)) => Reference::with_tag_and_digest(
                host.clone(),
                r.repository().to_owned(),
                t.to_owned(),
                d.to_owned(),
            ),
            (_, Some(d)) => {
                Reference::with_digest(host.clone(), r.repository().to_owned(), d.to_owned())
            }
            (t, None) => Reference::with_tag(
                host.clone(),
                r.repository().to_owned(),
                t.unwrap_or("latest").to_owned(),
            ),
        };
        let credentials = auth::credentials(o, r.registry(), r.repository())?;
        let registry_auth = match &credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.to_string()),
            None => RegistryAuth::Anonymous,
        };
        let rt = runtime()?;
        let certs = auth::ca_certificates(o, r.registry())?;
        let config = |protocol: ClientProtocol| ClientConfig {
            protocol,
            accept_invalid_certificates: !o.tls_verify,
            extra_root_certificates: certs
                .iter()
                .map(|c| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: c.clone(),
                })
                .collect(),
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(120)),
            user_agent: concat!("ocicrypt-rs/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let shown = r.to_string();
        let build = |protocol| {
            Client::try_from(config(protocol)).map_err(|e| Error::RegistryConfig {
                what: format!("cannot set up a client for {host}: {e}"),
            })
        };
        let setup = |e: reqwest::Error| Error::RegistryConfig {
            what: format!("cannot set up a client for {host}: {e}"),
        };
        let mut roots = Vec::new();
        for c in &certs {
            roots.extend(reqwest::Certificate::from_pem_bundle(c).map_err(setup)?);
        }
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(!o.tls_verify)
            .tls_certs_merge(roots)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("ocicrypt-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(setup)?;
        let base_for = |scheme: &str| {
            reqwest::Url::parse(&format!("{scheme}://{host}/v2/{}/", r.repository())).map_err(|e| {
                Error::RegistryConfig {
                    what: format!("{shown}: {e}"),
                }
            })
        };
        let mut conn = Self {
            rt,
            client: build(ClientProtocol::Https)?,
            http,
            base: base_for("https")?,
            auth_header: None,
            reference,
            host: host.clone(),
            shown: shown.clone(),
        };
        // Ask /v2/ first: this finds the auth scheme the registry wants, and turns
        // connection, TLS and plain-HTTP trouble into one clear error before any work.
        // The probe's answer is the bearer token oci-client obtained for `op` (none for
        // basic auth or none at all).
        let token = match conn.probe(&registry_auth, op) {
            Err(e) if !o.tls_verify && is_network(&e) => {
                // tls-verify=false allows plain HTTP, as skopeo does: try it.
                conn.client = build(ClientProtocol::Http)?;
                conn.base = base_for("http")?;
                conn.probe(&registry_auth, op)
                    .map_err(|e| conn.error("cannot reach the registry", e, o))?
            }
            Err(e) => return Err(conn.error("cannot reach the registry", e, o)),
            Ok(token) => token,
        };
        {
            // The header of the requests made with `http`: the bearer token, or the
            // given credentials where the registry asked for basic auth.
            let value = match (token, &credentials) {
                (Some(t), _) => Some(format!("Bearer {t}")),
                (None, Some(c)) => Some(format!(
                    "Basic {}",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        format!("{}:{}", c.username, c.password.as_str())
                    )
                )),
                (None, None) => None,
            };
            conn.auth_header = value
                .map(|v| {
                    let mut h = reqwest::header::HeaderValue::try_from(v).map_err(|_| {
                        Error::RegistryConfig {
                            what: format!("the credentials for {host} are not valid in a header"),
                        }
                    })?;
                    h.set_sensitive(true);
                    Ok::<_, Error>(h)
                })
                .transpose()?;
        }
        Ok(conn)
    }

    /// Asks `/v2/` (and the token service it names) for `op`: the bearer token, if the
    /// registry uses them.
    fn probe(
        &self,
        auth: &RegistryAuth,
        op: RegistryOperation,
    ) -> Result<Option<String>, OciDistributionError> {
        self.rt
            .block_on(self.client.auth(&self.reference, auth, op))
    }

    fn with_digest(&self, digest: &str) -> Reference {
        self.reference.clone_with_digest(digest.to_owned())
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

    /// Our error for `e`, met while doing `what`.
    fn error(&self, what: &str, e: OciDistributionError, o: &RegistryOptions) -> Error {
        let host = self.host.clone();
        if is_unauthorized(&e) {
            return Error::RegistryAuth { host };
        }
        if is_not_found(&e) {
            return Error::ManifestUnknown {
                reference: self.shown.clone(),
            };
        }
        match tls_trouble(&e) {
            Some(Tls::Untrusted) => {
                let dirs = match &o.cert_dir {
                    Some(d) => d.display().to_string(),
                    None => super::default_cert_dirs(&host)
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or "),
                };
                return Error::UntrustedCertificate { host, dirs };
            }
            Some(Tls::NotTls) => return Error::PlainHttp { host },
            None => {}
        }
        Error::Registry {
            host,
            what: what.to_owned(),
            source: Box::new(e),
        }
    }

    /// As [`Conn::error`], for blob and manifest operations after the connection was made
    /// (a 404 there is a missing blob, not an unknown image).
    fn blob_error(&self, what: String, digest: &str, e: OciDistributionError) -> Error {
        if is_unauthorized(&e) {
            return Error::RegistryAuth {
                host: self.host.clone(),
            };
        }
        if is_not_found(&e) {
            return Error::MissingBlob {
                digest: digest.to_owned(),
            };
        }
        Error::Registry {
            host: self.host.clone(),
            what,
            source: Box::new(e),
        }
    }
}

fn is_unauthorized(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|x| matches!(x.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    }
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            matches!(
                x.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

/// A connection that could not be made or broke: worth another try for idempotent
/// requests, and (with tls-verify=false) a reason to try plain HTTP.
fn is_network(e: &OciDistributionError) -> bool {
    matches!(e, OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() || r.is_request() || r.is_body())
}

fn is_transient(e: &OciDistributionError) -> bool {
    if tls_trouble(e).is_some() {
        return false;
    }
    is_network(e) || matches!(e, OciDistributionError::ServerError { code, .. } if *code >= 500)
}

enum Tls {
    /// The server's certificate does not chain to a trusted CA.
    Untrusted,
    /// The server did not answer TLS at all (plain HTTP).
    NotTls,
}

/// What TLS said, if it was TLS that failed: walks the error's causes for rustls's error
/// (inside an `io::Error` where hyper put it).
fn tls_trouble(e: &OciDistributionError) -> Option<Tls> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(match t {
                rustls::Error::InvalidCertificate(_) => Tls::Untrusted,
                _ => Tls::NotTls,
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
            conn: Conn::open(r, o, RegistryOperation::Pull)?,
            root: Mutex::new(None),
        })
    }

    /// Reads the manifest or index `reference` (a tag or a digest) whole, at most
    /// [`MAX_MANIFEST_SIZE`] bytes of it: oci-client reads a manifest response whole
    /// whatever its size, so this GET is made with `http`, which stops at the limit.
    fn pull_manifest(&self, reference: &str) -> Result<Bytes> {
        let c = &self.conn;
        match c.retry_fetch(|| c.fetch_manifest(reference)) {
            Ok(body) => Ok(body),
            Err(Fetch::Status(401 | 403)) => Err(Error::RegistryAuth {
                host: c.host.clone(),
            }),
            Err(Fetch::Status(404)) => Err(Error::ManifestUnknown {
                reference: if reference.contains(':') {
                    format!("{}@{reference}", c.reference.repository())
                } else {
                    c.shown.clone()
                },
            }),
            Err(Fetch::TooLarge(size)) => Err(Error::TooLarge {
                digest: reference.to_owned(),
                size,
                limit: MAX_MANIFEST_SIZE,
            }),
            Err(e) => Err(Error::Registry {
                host: c.host.clone(),
                what: format!("cannot read manifest {reference}"),
                source: e.into(),
            }),
        }
    }
}

impl Source for RegistrySource {
    fn root(&self) -> Result<Lossless<Descriptor>> {
        let r = &self.conn.reference;
        let body = self.pull_manifest(r.digest().or(r.tag()).unwrap_or("latest"))?;
        let digest = sha256(&body);
        if let Some(want) = self.conn.reference.digest()
            && want != digest
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
        // A GET of our own rather than oci-client's blob stream, which hashes the blob as
        // it passes: the caller verifies the digest anyway, and SHA-256 is most of the CPU
        // a copy costs.
        let c = &self.conn;
        let digest = desc.digest().to_string();
        let path = format!("blobs/{digest}");
        let res = c.retry_fetch(|| c.get(&path, None)).map_err(|e| match e {
            Fetch::Status(401 | 403) => Error::RegistryAuth {
                host: c.host.clone(),
            },
            Fetch::Status(404) => Error::MissingBlob {
                digest: digest.clone(),
            },
            e => Error::Registry {
                host: c.host.clone(),
                what: format!("cannot read blob {digest}"),
                source: e.into(),
            },
        })?;
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
        Some((
            self.conn.host.clone(),
            self.conn.reference.repository().to_owned(),
        ))
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
            conn: Arc::new(Conn::open(r, o, RegistryOperation::Push)?),
            documents: Mutex::new(Vec::new()),
        })
    }

    fn push_manifest(&self, reference: &Reference, media_type: &str, body: &[u8]) -> Result<()> {
        let c = &self.conn;
        let content_type = media_type.parse().map_err(|_| Error::RegistryConfig {
            what: format!("media type {media_type:?} is not a valid header value"),
        })?;
        let body = Bytes::copy_from_slice(body);
        c.rt.block_on(c.client.push_manifest_raw(reference, body, content_type))
            .map_err(|e| {
                c.blob_error(
                    format!("cannot push manifest {}", reference.whole()),
                    &reference.whole(),
                    e,
                )
            })?;
        Ok(())
    }
}

impl Destination for RegistryDestination {
    fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let c = &self.conn;
        let d = digest.to_string();
        c.retry_if(is_transient, || c.client.blob_exists(&c.reference, &d))
            .map_err(|e| c.blob_error(format!("cannot look up blob {d}"), &d, e))
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
        if registry != c.host || repository == c.reference.repository() {
            return Ok(false);
        }
        let from = Reference::with_tag(registry.to_owned(), repository.to_owned(), "latest".into());
        // A registry that cannot mount starts an upload instead (202); oci-client reports
        // that as an error, and the caller copies.
        Ok(c.rt
            .block_on(c.client.mount_blob(&c.reference, &from, digest.as_ref()))
            .is_ok())
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
            self.push_manifest(&self.conn.with_digest(digest), media_type, body)?;
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

/// Why an upload request failed (its status and what the registry said).
#[derive(Debug, thiserror::Error)]
#[error("{request} {url}: HTTP {status}: {body}")]
struct UploadError {
    request: &'static str,
    url: String,
    status: u16,
    body: String,
}

/// What an upload step ends in: a location, or why not.
type Step<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

impl Conn {
    fn request(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.auth_header {
            Some(h) => r.header(reqwest::header::AUTHORIZATION, h.clone()),
            None => r,
        }
    }

    /// Sends a request of the upload session; the `Location` it answers with (made
    /// absolute).
    async fn upload_step(
        &self,
        request: &'static str,
        req: reqwest::RequestBuilder,
        want: reqwest::StatusCode,
    ) -> Step<reqwest::Url> {
        let res = req.send().await?;
        let url = res.url().clone();
        let status = res.status();
        if status != want {
            // A registry's error body is short, but it is untrusted: read at most 4 KiB of
            // it, and keep 500 characters.
            let mut res = res;
            let mut raw = Vec::new();
            while raw.len() < 4096 {
                match res.chunk().await {
                    Ok(Some(c)) => raw.extend_from_slice(&c),
                    _ => break,
                }
            }
            let body: String = String::from_utf8_lossy(&raw).chars().take(500).collect();
            return Err(Box::new(UploadError {
                request,
                url: url.to_string(),
                status: status.as_u16(),
                body,
            }));
        }
        let location = res
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| format!("{request} {url}: no Location in the answer"))?;
        Ok(url.join(location)?)
    }

    /// POST: a new upload session; its location.
    async fn start_upload(&self) -> Step<reqwest::Url> {
        let url = self.base.join("blobs/uploads/")?;
        let req = self
            .request(reqwest::Method::POST, url)
            .header(reqwest::header::CONTENT_LENGTH, 0);
        self.upload_step("POST", req, reqwest::StatusCode::ACCEPTED)
            .await
    }

    /// PUT `?digest=`: the session's data is the blob `digest`.
    async fn finish_upload(
        &self,
        mut location: reqwest::Url,
        digest: &str,
        body: Bytes,
    ) -> Step<()> {
        location.query_pairs_mut().append_pair("digest", digest);
        let req = self
            .request(reqwest::Method::PUT, location)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(body);
        self.upload_step("PUT", req, reqwest::StatusCode::CREATED)
            .await
            .map(|_| ())
    }

    /// Maps an upload failure: 401 and 403 are authentication, the rest a registry error.
    fn upload_error(&self, digest: &str, e: Box<dyn std::error::Error + Send + Sync>) -> Error {
        if let Some(u) = e.downcast_ref::<UploadError>()
            && (u.status == 401 || u.status == 403)
        {
            return Error::RegistryAuth {
                host: self.host.clone(),
            };
        }
        Error::Registry {
            host: self.host.clone(),
            what: format!("cannot upload blob {digest}"),
            source: e,
        }
    }
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
enum Fetch {
    #[error("HTTP status {0}")]
    Status(u16),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
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
        let mut req = self.request(reqwest::Method::GET, url);
        if let Some(a) = accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        let res = req.send().await?;
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
        self.retry_if(
            |e: &Fetch| match e {
                Fetch::Http(e) => e.is_connect() || e.is_timeout() || e.is_body(),
                Fetch::Status(code) => *code >= 500,
                _ => false,
            },
            f,
        )
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

type UploadTask = JoinHandle<Step<reqwest::Url>>;

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
                let req = conn
                    .request(reqwest::Method::PATCH, location)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(reqwest::Body::wrap_stream(stream));
                conn.upload_step("PATCH", req, reqwest::StatusCode::ACCEPTED)
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
        result.map_err(|e| conn.upload_error(&d, e))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
