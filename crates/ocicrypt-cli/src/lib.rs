#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod ctd;
mod image;
mod keys;
mod layer;
mod progress;
mod registry;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Encrypt, decrypt and inspect OCI image layers, compatible with skopeo, containerd
/// imgcrypt and everything else built on Go's containers/ocicrypt.
#[derive(Debug, Parser)]
#[command(name = "ocicrypt", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work on one layer blob and its descriptor.
    #[command(subcommand)]
    Layer(layer::LayerCommand),
    /// Work on whole images, in OCI layouts (oci:PATH[:TAG]) or registries
    /// (docker://HOST[:PORT]/REPO[:TAG|@DIGEST]).
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell), to be
    /// sourced by the shell or installed where it looks for completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (ocicrypt.1 and one per subcommand) into DIR; `cargo xtask
    /// man` runs this.
    #[command(hide = true)]
    Man {
        /// Where to write them (created if missing).
        dir: std::path::PathBuf,
    },
}

/// Writes the completion script of `shell` for the `ocicrypt` command to `out`.
fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory as _;
    clap_complete::generate(shell, &mut Cli::command(), "ocicrypt", out);
}

/// Writes the manual pages of the `ocicrypt` command into `dir`.
fn man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use clap::CommandFactory as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the manual pages into {}", dir.display()))
}

/// The library context: every scheme compiled in, plus the key providers configured in
/// `OCICRYPT_KEYPROVIDER_CONFIG` (as Go ocicrypt registers them), each call limited to
/// `OCICRYPT_KEYPROVIDER_TIMEOUT` seconds (default 60).
fn context() -> anyhow::Result<ocicrypt::Ocicrypt> {
    #[cfg(any(feature = "keyprovider-cmd", feature = "keyprovider-grpc"))]
    let registry = {
        use anyhow::Context as _;
        use ocicrypt::keyprovider::{Config, Options};
        let mut options = Options::default();
        if let Some(t) = std::env::var_os("OCICRYPT_KEYPROVIDER_TIMEOUT") {
            let secs: f64 = t
                .to_str()
                .and_then(|t| t.parse().ok())
                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                .context("OCICRYPT_KEYPROVIDER_TIMEOUT must be a positive number of seconds")?;
            options.timeout = std::time::Duration::from_secs_f64(secs);
        }
        let config = Config::from_env().context("OCICRYPT_KEYPROVIDER_CONFIG")?;
        ocicrypt::Registry::default()
            .with_key_providers(&config, &options)
            .context("OCICRYPT_KEYPROVIDER_CONFIG")?
    };
    #[cfg(not(any(feature = "keyprovider-cmd", feature = "keyprovider-grpc")))]
    let registry = ocicrypt::Registry::default();
    Ok(ocicrypt::Ocicrypt::new(registry)?)
}

/// Prints a clap error (usage, or --help / --version) and gives its exit status: 0 for
/// help and version, 2 for a usage error.
fn usage_exit(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(2),
    }
}

/// An error and its causes on one line: the chain joined with ": " (every error's own
/// message is one line already). Control characters, which text from outside (a
/// registry's answer, a key provider's error) could hold, are shown as spaces so that the
/// message stays one line and cannot drive the terminal.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Runs the command line `args` (the first is the program name) and returns an error
/// instead of exiting. Used by `main` and by in-process tests.
///
/// # Errors
/// Usage errors (as clap errors) and every failure of the command.
pub fn run<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    match cli.command {
        Command::Layer(c) => layer::run(c),
        Command::Image(c) => image::run(c),
        Command::Completions { shell } => {
            completions(shell, &mut std::io::stdout().lock());
            Ok(())
        }
        Command::Man { dir } => man_pages(&dir),
    }
}

/// The `ocicrypt` binary: runs `args`, prints one clear line on stderr on failure and
/// returns the exit status (0 success, 1 failure, 2 usage error).
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // SIGINT or SIGTERM: remove every temporary file and directory (they may hold
    // unverified plaintext, or half a layout) and exit as a shell expects (128 + SIGINT).
    let _ = ctrlc::set_handler(|| {
        ocicrypt_image::remove_temporaries();
        eprintln!("ocicrypt: interrupted; temporary files removed");
        std::process::exit(130);
    });
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(clap_err) = e.downcast_ref::<clap::Error>() {
                return usage_exit(clap_err);
            }
            eprintln!("ocicrypt: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// clap's own consistency checks (unique names and groups, valid defaults) over every
    /// subcommand; otherwise they run only when a command is parsed.
    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn completions_and_man_pages_cover_the_subcommands() {
        let mut bash = Vec::new();
        super::completions(clap_complete::Shell::Bash, &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        assert!(bash.contains("complete -F _ocicrypt"), "{bash}");
        for word in ["encrypt", "rewrap", "--dest-tls-verify", "--recipient"] {
            assert!(
                bash.contains(word),
                "{word} missing from the bash completions"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        super::man_pages(dir.path()).unwrap();
        let page = std::fs::read_to_string(dir.path().join("ocicrypt.1")).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH ocicrypt"),
            "{page}"
        );
        let image = std::fs::read_to_string(dir.path().join("ocicrypt-image-encrypt.1")).unwrap();
        assert!(image.contains("authfile"), "{image}");
    }
}
