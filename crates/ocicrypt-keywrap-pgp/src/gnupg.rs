//! Reading keys from a GnuPG installation, as Go ocicrypt's `pgp:` recipients do.

use std::io;
use std::path::Path;
use std::process::Command;

use ocicrypt_keywrap::Error;

use crate::{SCHEME, backend};

/// Runs `gpg --batch --export` and returns its output: a binary keyring with all public
/// keys of the GnuPG home `homedir`, or of `$GNUPGHOME` (or `~/.gnupg`) if `homedir` is
/// `None`. `gpg2` is tried if there is no `gpg`. An empty keyring is an empty vector.
///
/// # Errors
/// [`Error::Backend`] if neither `gpg` nor `gpg2` can be run (unlike Go ocicrypt, which
/// then silently drops all `pgp` recipients), or if gpg fails (with its messages).
pub fn export_public_keyring(homedir: Option<&Path>) -> Result<Vec<u8>, Error> {
    export_with(&["gpg", "gpg2"], homedir)
}

/// [`export_public_keyring`] with the first of `programs` that can be run.
pub(crate) fn export_with(programs: &[&str], homedir: Option<&Path>) -> Result<Vec<u8>, Error> {
    let mut last_err = None;
    for &program in programs {
        let mut cmd = Command::new(program);
        if let Some(dir) = homedir {
            cmd.arg("--homedir").arg(dir);
        }
        cmd.args(["--batch", "--no-tty", "--export"]);
        match cmd.output() {
            Ok(out) if out.status.success() => return Ok(out.stdout),
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                return Err(backend(
                    format!(
                        "`{program} --export` failed ({}): {}",
                        out.status,
                        stderr.trim()
                    ),
                    io::Error::other(format!("{program} exited with {}", out.status)),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => last_err = Some(e),
            Err(e) => return Err(backend(format!("cannot run {program}"), e)),
        }
    }
    Err(Error::Backend {
        scheme: SCHEME.to_owned(),
        context: "cannot run gpg or gpg2 to read the GnuPG public keyring: is GnuPG installed?"
            .to_owned(),
        source: Box::new(last_err.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound))),
    })
}
