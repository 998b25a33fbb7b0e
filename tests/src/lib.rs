//! Shared helpers of the interop tests: finding the workspace, running our CLI in-process,
//! running third-party tools (which must be installed: a missing tool fails the test
//! loudly, it is never skipped), and reading OCI layouts.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

mod token;
pub use token::{TokenRequest, TokenServer};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A path below the workspace root.
pub fn path(rel: &str) -> PathBuf {
    root().join(rel)
}

/// `oci:<path>:<tag>`.
pub fn oci(path: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", path.display())
}

/// Runs our `ocicrypt` command in-process.
///
/// # Errors
/// The command's error.
pub fn ocicrypt(args: &[&str]) -> Result<(), String> {
    let mut full = vec!["ocicrypt"];
    full.extend_from_slice(args);
    ocicrypt_cli::run(full).map_err(|e| format!("{e:#}"))
}

/// Runs a third-party tool and returns its stdout; panics (failing the test) with its
/// stderr if it fails, and with an install hint if it is missing.
pub fn tool(program: &str, args: &[&str]) -> String {
    tool_env(program, args, &[])
}

/// [`tool`] with extra environment variables.
pub fn tool_env(program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {program}: {e}. The interop tests need it: \
             apt-get install {program} (cargo xtask ci installs it when run as root)"
        )
    });
    assert!(
        out.status.success(),
        "{program} {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a third-party tool that is expected to fail; returns its stderr.
pub fn tool_fails(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        !out.status.success(),
        "{program} {} succeeded but should have failed",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `skopeo --insecure-policy <args>` (no signature policy is needed for local layouts).
pub fn skopeo(args: &[&str]) -> String {
    let mut full = vec!["--insecure-policy"];
    full.extend_from_slice(args);
    tool("skopeo", &full)
}

/// The example image every interop test starts from: `oci:<root>/examples/image:latest`.
pub fn example_image() -> String {
    oci(&path("examples/image"), "latest")
}

/// (mediaType, digest) of each layer of the example image.
pub fn example_layer_ids() -> Vec<(String, String)> {
    layer_ids(&path("examples/image"), "latest")
}

/// A key of the committed skopeo vectors (`tests/vectors/skopeo/keys/<name>`).
pub fn skopeo_key(name: &str) -> String {
    path(&format!("tests/vectors/skopeo/keys/{name}"))
        .to_string_lossy()
        .into_owned()
}

/// `flag value` for each of `values`: an option repeated on a command line.
fn each_with<'a, S: AsRef<str>>(flag: &'a str, values: &'a [S]) -> Vec<&'a str> {
    values.iter().flat_map(|v| [flag, v.as_ref()]).collect()
}

/// Our `image encrypt` of the example image for `recipients` (one `-r` each), with `extra`
/// flags, into the layout `enc` (tag `latest`); panics if it fails.
pub fn encrypt_example<S: AsRef<str>>(recipients: &[S], extra: &[&str], enc: &Path) {
    let (src, dst) = (example_image(), oci(enc, "latest"));
    let mut args = vec!["image", "encrypt"];
    args.extend(each_with("-r", recipients));
    args.extend_from_slice(extra);
    args.extend([src.as_str(), dst.as_str()]);
    ocicrypt(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

/// Our `image decrypt` with `keys` (one `-k` each) from the layout `enc` into the layout
/// `out` (tag `latest` in both).
///
/// # Errors
/// The command's error.
pub fn decrypt_layout<S: AsRef<str>>(keys: &[S], enc: &Path, out: &Path) -> Result<(), String> {
    let (src, dst) = (oci(enc, "latest"), oci(out, "latest"));
    let mut args = vec!["image", "decrypt"];
    args.extend(each_with("-k", keys));
    args.extend([src.as_str(), dst.as_str()]);
    ocicrypt(&args)
}

/// skopeo (Go ocicrypt) decrypts the layout `enc` with `keys` (one `--decryption-key` each)
/// into the layout `out` (tag `latest` in both), with `gnupg` as its GnuPG home if given;
/// panics if it fails.
pub fn skopeo_decrypt(keys: &[&str], gnupg: Option<&Path>, enc: &Path, out: &Path) {
    let (src, dst) = (oci(enc, "latest"), oci(out, "latest"));
    let mut args = vec!["--insecure-policy", "copy", "--quiet"];
    args.extend(each_with("--decryption-key", keys));
    args.extend([src.as_str(), dst.as_str()]);
    let env = gnupg.map(|home| ("GNUPGHOME", home));
    tool_env("skopeo", &args, env.as_slice());
}

/// skopeo refuses to decrypt the layout `enc` with `keys` into the layout `out`; returns
/// its stderr.
pub fn skopeo_refuses(keys: &[&str], enc: &Path, out: &Path) -> String {
    let (src, dst) = (oci(enc, "latest"), oci(out, "latest"));
    let mut args = vec!["--insecure-policy", "copy", "--quiet"];
    args.extend(each_with("--decryption-key", keys));
    args.extend([src.as_str(), dst.as_str()]);
    tool_fails("skopeo", &args)
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A blob of a layout by digest.
pub fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    let p = layout.join("blobs").join(alg).join(hex);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The image manifest of the single-platform image tagged `tag`.
pub fn manifest(layout: &Path, tag: &str) -> Value {
    let index = read_json(&layout.join("index.json"));
    let tagged = |m: &&Value| m["annotations"]["org.opencontainers.image.ref.name"] == tag;
    let entry = index["manifests"]
        .as_array()
        .and_then(|entries| entries.iter().find(tagged))
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()));
    serde_json::from_slice(&blob(layout, entry["digest"].as_str().unwrap_or_default()))
        .unwrap_or_default()
}

/// The layer descriptors of the single-platform image tagged `tag`.
pub fn layers(layout: &Path, tag: &str) -> Vec<Value> {
    manifest(layout, tag)["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// (mediaType, digest) of each layer.
pub fn layer_ids(layout: &Path, tag: &str) -> Vec<(String, String)> {
    manifest_layer_ids(&manifest(layout, tag))
}

/// (mediaType, digest) of each layer of an image manifest; panics if it has no layers
/// array or a layer lacks either field.
pub fn manifest_layer_ids(manifest: &Value) -> Vec<(String, String)> {
    let field = |l: &Value, name: &str| {
        l[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {l}"))
            .to_owned()
    };
    manifest["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in {manifest}"))
        .iter()
        .map(|l| (field(l, "mediaType"), field(l, "digest")))
        .collect()
}

/// A throwaway GnuPG home with RSA keys made by the `gpg` binary.
pub struct Gpg {
    dir: tempfile::TempDir,
}

impl Gpg {
    /// An empty GnuPG home in a temporary directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let home = dir.path().join("gnupg");
        std::fs::create_dir(&home).unwrap_or_else(|e| panic!("{e}"));
        Self { dir }
    }

    /// The GnuPG home (`GNUPGHOME`).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("gnupg")
    }

    fn gpg(&self, args: &[&str]) -> String {
        let mut full = vec!["--batch", "--pinentry-mode", "loopback"];
        full.extend_from_slice(args);
        tool_env("gpg", &full, &[("GNUPGHOME", &self.home())])
    }

    /// Makes an RSA-2048 signing key with an RSA-2048 encryption subkey for `email`,
    /// protected by `passphrase` (empty: none).
    pub fn generate(&self, email: &str, passphrase: &str) {
        let uid = format!("Test {email} <{email}>");
        self.gpg(&[
            "--passphrase",
            passphrase,
            "--quick-gen-key",
            &uid,
            "rsa2048",
            "sign",
            "never",
        ]);
        let fpr = self
            .gpg(&["--with-colons", "--list-keys", email])
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_owned())
            })
            .unwrap_or_else(|| panic!("no fingerprint for {email}"));
        self.gpg(&[
            "--passphrase",
            passphrase,
            "--quick-add-key",
            &fpr,
            "rsa2048",
            "encr",
            "never",
        ]);
    }

    /// Exports `email`'s public key, ASCII-armored, to a file; returns its path.
    pub fn export_public(&self, email: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{email}.pub.asc"));
        self.gpg(&[
            "--armor",
            "--output",
            p.to_str().unwrap_or_default(),
            "--export",
            email,
        ]);
        p
    }

    /// Exports `email`'s secret key, binary (as skopeo needs it), to a file.
    pub fn export_secret(&self, email: &str, passphrase: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{email}.sec.gpg"));
        self.gpg(&[
            "--passphrase",
            passphrase,
            "--output",
            p.to_str().unwrap_or_default(),
            "--export-secret-keys",
            email,
        ]);
        p
    }
}

impl Default for Gpg {
    fn default() -> Self {
        Self::new()
    }
}

/// A self-signed RSA 2048 certificate for `/CN=<cn>`, valid two days, and its key, made by
/// `openssl req -x509`.
pub fn self_signed(key: &Path, cert: &Path, cn: &str) {
    let (key, cert) = (key.display().to_string(), cert.display().to_string());
    let subject = format!("/CN={cn}");
    tool(
        "openssl",
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &cert,
            "-subj", &subject, "-days", "2",
        ],
    );
}

/// A free TCP port on loopback (free when asked; a daemon binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process killed when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to a minute for `ok`; panics naming `what` after that.
pub fn wait_until(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Debian's `docker-registry` (CNCF distribution 2.8) on a free loopback port, with its
/// storage in a directory of its own; stopped when dropped.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// With TLS: the directory holding the CA certificate (`ca.crt`) that signed its
    /// certificate, as `--cert-dir` takes it.
    pub ca_dir: Option<PathBuf>,
    /// With client certificates required: a directory holding the CA certificate and a
    /// client certificate pair (`client.cert`, `client.key`) it accepts.
    pub client_dir: Option<PathBuf>,
    log: PathBuf,
    _daemon: Daemon,
}

/// The user and password of [`Registry::tls_with_auth`].
pub const REGISTRY_USER: (&str, &str) = ("tester", "s3cret-registry-pass");

impl Registry {
    /// Plain HTTP, no authentication.
    pub fn plain(dir: &Path) -> Self {
        Self::start(dir, "")
    }

    /// HTTPS with a certificate for `127.0.0.1` and `localhost` from a CA made here with
    /// `openssl`, and htpasswd basic authentication (a bcrypt hash made by `htpasswd`) of
    /// [`REGISTRY_USER`].
    pub fn tls_with_auth(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let htpasswd = tool("htpasswd", &["-Bbn", REGISTRY_USER.0, REGISTRY_USER.1]);
        std::fs::write(dir.join("htpasswd"), htpasswd).unwrap();
        let auth = format!(
            "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            dir.join("htpasswd").display()
        );
        Self::tls(dir, "", &auth)
    }

    /// HTTPS as [`Registry::tls_with_auth`], without passwords but requiring a client
    /// certificate signed by the CA (containers-certs.d's `*.cert`/`*.key` pair, which
    /// [`Registry::client_dir`] holds).
    pub fn tls_with_client_certs(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let cas = format!(
            "    clientcas:\n      - {}\n",
            dir.join("ca/ca.crt").display()
        );
        let mut r = Self::tls(dir, &cas, "");
        let client = dir.join("client");
        std::fs::create_dir_all(&client).unwrap();
        std::fs::copy(dir.join("ca/ca.crt"), client.join("ca.crt")).unwrap();
        ca_signed(
            dir,
            "client",
            "/CN=ocicrypt test client",
            "extendedKeyUsage=clientAuth\n",
            &client.join("client.key"),
            &client.join("client.cert"),
        );
        r.client_dir = Some(client);
        r
    }

    /// HTTPS as [`Registry::tls_with_auth`], with Bearer token authentication: the
    /// registry trusts the tokens `tokens` signs, and its challenge sends clients there.
    pub fn tls_with_token(dir: &Path, tokens: &TokenServer) -> Self {
        let auth = format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            tokens.realm(),
            TokenServer::SERVICE,
            TokenServer::ISSUER,
            tokens.certificate.display()
        );
        Self::tls(dir, "", &auth)
    }

    /// HTTPS with a CA and server certificate made here, more `tls` settings (YAML), and
    /// `auth` (YAML) appended.
    fn tls(dir: &Path, tls: &str, auth: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ca_dir = dir.join("ca");
        std::fs::create_dir_all(&ca_dir).unwrap();
        let p = |n: &str| dir.join(n).display().to_string();
        self_signed(
            &dir.join("ca.key"),
            &ca_dir.join("ca.crt"),
            "ocicrypt test CA",
        );
        ca_signed(
            dir,
            "server",
            "/CN=localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
            &dir.join("server.key"),
            &dir.join("server.crt"),
        );
        let extra = format!(
            "  tls:\n    certificate: {}\n    key: {}\n{tls}{auth}",
            p("server.crt"),
            p("server.key"),
        );
        let mut r = Self::start(dir, &extra);
        r.ca_dir = Some(ca_dir);
        r
    }

    fn start(dir: &Path, extra: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
                dir.join("storage").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let daemon = Daemon(
            Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry is installed (apt-get install docker-registry)"),
        );
        wait_until("the registry", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self {
            host: format!("127.0.0.1:{port}"),
            ca_dir: None,
            client_dir: None,
            log: dir.join("registry.log"),
            _daemon: daemon,
        }
    }

    /// The registry's log so far, with one access-log line per request
    /// (`"METHOD /v2/... HTTP/1.1" STATUS`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `docker://HOST/<name>`.
    pub fn image(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.host)
    }
}

/// A new RSA 2048 key and a certificate for `subject`, valid two days, signed by the CA that
/// [`Registry::tls`] makes in `dir` (`ca/ca.crt`, `ca.key`), with the X.509 extensions
/// `extensions`; the request and the extensions are kept in `dir` as `<name>.csr` and
/// `<name>.ext`.
fn ca_signed(dir: &Path, name: &str, subject: &str, extensions: &str, key: &Path, cert: &Path) {
    let p = |n: &str| dir.join(n).display().to_string();
    let (csr, ext) = (p(&format!("{name}.csr")), p(&format!("{name}.ext")));
    let (key, cert) = (key.display().to_string(), cert.display().to_string());
    std::fs::write(&ext, extensions).unwrap();
    tool(
        "openssl",
        &[
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key,
            "-out", &csr,
        ],
    );
    tool(
        "openssl",
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &p("ca/ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    );
}

/// Builds a binary of the workspace with the cargo that runs the tests; its path.
pub fn build_bin(package: &str, bin: &str, features: &[&str]) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(root())
        .args(["build", "--quiet", "--package", package, "--bin", bin])
        .args(["--message-format", "json"]);
    for f in features {
        c.args(["--features", f]);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported the executable")
}
