//! Project chores, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! One subcommand per chore, plain [`std::process::Command`] underneath, in the style of
//! rust-analyzer's xtask. Every command runs from the repository root.

mod bench;
mod ci;
mod demo;
mod features;
mod fuzz;
mod sh;
mod system;

use anyhow::{Result, bail};

const HELP: &str = "\
cargo xtask <command>

Commands:
  ci                 everything CI runs, in order: system tools, cargo tools, fmt, clippy,
                     feature matrix, tests, cargo-deny, fuzz smoke; ends with a timing summary
  features           the feature matrix alone: clippy per package with no default features,
                     each feature alone, and all features
  fuzz [SECONDS | --long DURATION] [TARGET...]
                     run every fuzz target (or those named) for SECONDS each (default 10),
                     or a campaign of DURATION each (30m, 2h, 90s); prints runs per target
  bench [--file-mib N] [--layer-mib N] [--no-blockcipher]
                     throughput: the blockcipher bench, CLI file-to-file encrypt/decrypt of
                     a 1 GiB file beside cp (MiB/s, peak RSS), a 4 × 64 MiB image
                     encrypted and decrypted with --jobs 1 and 2; needs /usr/bin/time,
                     uses eatmydata if installed
  demo               encrypt, inspect and decrypt examples/image with the ocicrypt CLI
  man [DIR]          write the manual pages of the ocicrypt command (ocicrypt.1 and one per
                     subcommand) into DIR (default target/man)
  codegen            regenerate the committed gRPC code of ocicrypt-keyprovider (no protoc)
  vectors [ARGS]     regenerate tests/vectors/skopeo (runs make-vectors.sh ARGS)
  help               this text
";

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| "help".to_owned());
    let rest: Vec<String> = args.collect();
    std::env::set_current_dir(sh::project_root())?;
    match command.as_str() {
        "ci" => {
            no_args(&command, &rest)?;
            ci::run()
        }
        "features" => {
            no_args(&command, &rest)?;
            features::run()
        }
        "fuzz" => fuzz::run(&fuzz::Options::parse(&rest)?),
        "bench" => bench::run(&bench::Options::parse(&rest)?),
        "demo" => {
            no_args(&command, &rest)?;
            demo::run()
        }
        "man" => {
            let dir = match rest.as_slice() {
                [] => sh::project_root().join("target").join("man"),
                [d] => std::path::PathBuf::from(d),
                _ => bail!("usage: cargo xtask man [DIR]"),
            };
            // The pages come from the command's own clap definition: the CLI writes them.
            sh::run(
                sh::cargo()
                    .args([
                        "run",
                        "--quiet",
                        "--package",
                        "ocicrypt-cli",
                        "--bin",
                        "ocicrypt",
                    ])
                    .args(["--", "man"])
                    .arg(&dir),
            )?;
            eprintln!("manual pages in {}", dir.display());
            Ok(())
        }
        "codegen" => {
            no_args(&command, &rest)?;
            // The generator (tonic-prost-build fed by protox, no protoc) lives in the
            // key-provider crate behind its `codegen` feature, so that this xtask stays
            // small; the crate's `generated_code_is_up_to_date` test fails when the
            // committed file is stale.
            sh::run(sh::cargo().args([
                "test",
                "--package",
                "ocicrypt-keyprovider",
                "--features",
                "codegen",
                "--lib",
                "--",
                "--ignored",
                "--exact",
                "codegen::tests::regenerate",
            ]))
        }
        "vectors" => {
            system::ensure_installed()?;
            sh::run(
                sh::cmd("bash")
                    .arg("tests/vectors/skopeo/make-vectors.sh")
                    .args(&rest),
            )
        }
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        other => {
            eprint!("{HELP}");
            bail!("unknown command {other:?}")
        }
    }
}

fn no_args(command: &str, rest: &[String]) -> Result<()> {
    if rest.is_empty() {
        Ok(())
    } else {
        bail!("`cargo xtask {command}` takes no arguments, got {rest:?}")
    }
}
