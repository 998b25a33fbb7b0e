//! skopeo's registry flags: `--authfile`, `--src-creds`/`--dest-creds`,
//! `--src-cert-dir`/`--dest-cert-dir`, `--src-tls-verify`/`--dest-tls-verify` (and `--creds`,
//! `--cert-dir`, `--tls-verify` for `inspect`), turned into
//! [`RegistryOptions`](ocicrypt_image::registry::RegistryOptions).

use std::fmt;
use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{ArgAction, Args};
use ocicrypt_image::registry::{Credentials, RegistryOptions};

/// Flags of commands with a source and a destination. (`Debug` shows no credentials.)
#[derive(Args, Clone)]
pub(crate) struct CopyRegistryArgs {
    /// Registry credentials file (containers auth.json or docker config.json). Default:
    /// $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json.
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Credentials for a docker:// source; without :PASSWORD, the password is read from a
    /// line of standard input.
    #[arg(long, value_name = "USER[:PASSWORD]")]
    src_creds: Option<String>,
    /// Credentials for a docker:// destination (as --src-creds).
    #[arg(long, value_name = "USER[:PASSWORD]")]
    dest_creds: Option<String>,
    /// CA certificates (*.crt) for a docker:// source. Default:
    /// /etc/containers/certs.d/HOST:PORT, /etc/docker/certs.d/HOST:PORT.
    #[arg(long, value_name = "DIR")]
    src_cert_dir: Option<PathBuf>,
    /// CA certificates (*.crt) for a docker:// destination (as --src-cert-dir).
    #[arg(long, value_name = "DIR")]
    dest_cert_dir: Option<PathBuf>,
    /// With =false: accept any certificate of a docker:// source, and plain HTTP.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = true, default_missing_value = "true", action = ArgAction::Set)]
    src_tls_verify: bool,
    /// With =false: accept any certificate of a docker:// destination, and plain HTTP.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = true, default_missing_value = "true", action = ArgAction::Set)]
    dest_tls_verify: bool,
}

impl fmt::Debug for CopyRegistryArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyRegistryArgs")
            .field("authfile", &self.authfile)
            .field("src_creds", &self.src_creds.as_ref().map(|_| "<redacted>"))
            .field(
                "dest_creds",
                &self.dest_creds.as_ref().map(|_| "<redacted>"),
            )
            .field("src_cert_dir", &self.src_cert_dir)
            .field("dest_cert_dir", &self.dest_cert_dir)
            .field("src_tls_verify", &self.src_tls_verify)
            .field("dest_tls_verify", &self.dest_tls_verify)
            .finish()
    }
}

impl CopyRegistryArgs {
    /// (source, destination) registry options.
    pub(crate) fn options(&self) -> Result<(RegistryOptions, RegistryOptions)> {
        let src = side(
            self.authfile.as_ref(),
            self.src_creds.as_deref(),
            self.src_cert_dir.as_ref(),
            self.src_tls_verify,
            "--src-creds",
        )?;
        let dst = side(
            self.authfile.as_ref(),
            self.dest_creds.as_deref(),
            self.dest_cert_dir.as_ref(),
            self.dest_tls_verify,
            "--dest-creds",
        )?;
        Ok((src, dst))
    }
}

/// Flags of `image inspect`. (`Debug` shows no credentials.)
#[derive(Args, Clone)]
pub(crate) struct InspectRegistryArgs {
    /// Registry credentials file (as for image encrypt).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Credentials for a docker:// image; without :PASSWORD, read from standard input.
    #[arg(long, value_name = "USER[:PASSWORD]")]
    creds: Option<String>,
    /// CA certificates (*.crt) for a docker:// image.
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// With =false: accept any certificate, and plain HTTP.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = true, default_missing_value = "true", action = ArgAction::Set)]
    tls_verify: bool,
}

impl fmt::Debug for InspectRegistryArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InspectRegistryArgs")
            .field("authfile", &self.authfile)
            .field("creds", &self.creds.as_ref().map(|_| "<redacted>"))
            .field("cert_dir", &self.cert_dir)
            .field("tls_verify", &self.tls_verify)
            .finish()
    }
}

impl InspectRegistryArgs {
    /// The image's registry options.
    pub(crate) fn options(&self) -> Result<RegistryOptions> {
        side(
            self.authfile.as_ref(),
            self.creds.as_deref(),
            self.cert_dir.as_ref(),
            self.tls_verify,
            "--creds",
        )
    }
}

fn side(
    authfile: Option<&PathBuf>,
    creds: Option<&str>,
    cert_dir: Option<&PathBuf>,
    tls_verify: bool,
    flag: &str,
) -> Result<RegistryOptions> {
    let mut o = RegistryOptions::default().tls_verify(tls_verify);
    if let Some(f) = authfile {
        o = o.auth_file(f);
    }
    if let Some(d) = cert_dir {
        o = o.cert_dir(d);
    }
    if let Some(c) = creds {
        o = o.credentials(credentials(c, flag)?);
    }
    Ok(o)
}

/// `USER:PASSWORD`, or `USER` and a password on a line of standard input.
fn credentials(s: &str, flag: &str) -> Result<Credentials> {
    let (user, pass) = match s.split_once(':') {
        Some((u, p)) => (u, zeroize::Zeroizing::new(p.to_owned())),
        None => {
            let mut line = zeroize::Zeroizing::new(String::new());
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .with_context(|| format!("{flag}: cannot read the password from standard input"))?;
            (
                s,
                zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned()),
            )
        }
    };
    if user.is_empty() {
        bail!("{flag}: the user name is empty");
    }
    Ok(Credentials::new(user, pass.as_str()))
}
