//! `cargo xtask ci`: everything CI runs, in order, failing fast.

use std::path::PathBuf;

use anyhow::Result;

use crate::sh::{self, Steps};
use crate::{features, fuzz, system};

/// Cargo subcommands CI needs: (subcommand, crate, pinned version). Both build on rustc 1.88+
/// (cargo-deny 0.20.2 declares rust-version 1.88; cargo-fuzz 0.13.2 none).
const CARGO_TOOLS: &[(&str, &str, &str)] = &[
    ("deny", "cargo-deny", "0.20.2"),
    ("fuzz", "cargo-fuzz", "0.13.2"),
];

pub(crate) fn run() -> Result<()> {
    let mut steps = Steps::default();
    steps.step("system tools (apt)", system::ensure_installed)?;
    steps.step("cargo tools (cargo-deny, cargo-fuzz)", ensure_cargo_tools)?;
    steps.step("cargo fmt --check (workspace and fuzz/)", || {
        sh::run(sh::cargo().args(["fmt", "--all", "--", "--check"]))?;
        // fuzz/ is its own workspace, so `--all` does not reach it.
        sh::run(sh::cargo().args(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"]))
    })?;
    steps.step("cargo clippy (workspace, all features)", || {
        sh::run(sh::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    steps.step("feature matrix (clippy per package)", features::run)?;
    steps.step("cargo test (workspace, all features, doctests)", || {
        sh::run(sh::cargo().args(["test", "--workspace", "--all-features"]))
    })?;
    steps.step("cargo doc (all features, warnings denied)", || {
        sh::run(
            sh::cargo()
                .args(["doc", "--workspace", "--no-deps", "--all-features"])
                .env("RUSTDOCFLAGS", "-D warnings"),
        )
    })?;
    steps.step("cargo deny", deny)?;
    steps.step(
        "cargo package (library crates and the CLI, verified)",
        || {
            // Each crate is built alone from its packaged sources, against the others as
            // packaged (a local registry cargo makes): what crates.io would get. The tree may
            // hold uncommitted work when run by hand.
            forget_packaged_sources()?;
            sh::run(sh::cargo().args([
                "package",
                "--workspace",
                "--exclude",
                "ocicrypt-tests",
                "--exclude",
                "xtask",
                "--allow-dirty",
            ]))
        },
    )?;
    steps.step("fuzz smoke", || {
        fuzz::run(&fuzz::Options {
            seconds: fuzz::DEFAULT_SECONDS,
            targets: Vec::new(),
        })
    })?;
    steps.print_summary();
    eprintln!("\ncargo xtask ci: all steps passed");
    Ok(())
}

fn ensure_cargo_tools() -> Result<()> {
    for &(subcommand, _, _) in CARGO_TOOLS {
        ensure_cargo_tool(subcommand)?;
    }
    Ok(())
}

/// Installs the pinned version of `cargo <subcommand>` unless some version is installed.
pub(crate) fn ensure_cargo_tool(subcommand: &str) -> Result<()> {
    let Some(&(_, krate, version)) = CARGO_TOOLS.iter().find(|t| t.0 == subcommand) else {
        anyhow::bail!("no pinned cargo tool for `cargo {subcommand}`");
    };
    match sh::read(sh::cargo().args([subcommand, "--version"])) {
        Ok(installed) => {
            eprintln!("present: {} (pinned: {krate} {version})", installed.trim());
            Ok(())
        }
        Err(_) => sh::run(sh::cargo().args(["install", "--locked", &format!("{krate}@{version}")])),
    }
}

/// `cargo deny`, offline. The advisory database is cloned from GitHub, which CI cannot
/// reach; so the advisories check runs only when a database is already on disk, and the
/// other checks always run (see `deny.toml`).
fn deny() -> Result<()> {
    sh::run(sh::cargo().args(["deny", "check", "bans", "licenses", "sources"]))?;
    match advisory_db() {
        Some(db) => {
            eprintln!("advisory database found at {}", db.display());
            sh::run(sh::cargo().args(["deny", "--offline", "check", "advisories"]))
        }
        None => {
            eprintln!(
                "advisories: SKIPPED, no local advisory database (it is fetched from GitHub, \
                 which this machine cannot reach); run `cargo deny check advisories` where it can"
            );
            Ok(())
        }
    }
}

/// `$CARGO_HOME`, or `~/.cargo`.
fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// Removes what an earlier `cargo package --workspace` in this checkout unpacked.
///
/// Cargo unpacks each crate it verifies from its temporary local registry into
/// `$CARGO_HOME/registry/src/-HASH/NAME-VERSION`, and reuses that folder when it exists. The
/// hash is of the registry's path (`target/package/tmp-registry`), the same at every run in
/// one checkout, and the version does not change between commits: a second run would build
/// the others against the first run's sources (seen: `no method named ...` for a method added
/// since). So this workspace's crates (`ocicrypt*`) are removed from every local registry's
/// folders (`-HASH`, no host name) first; crates.io's are left alone.
fn forget_packaged_sources() -> Result<()> {
    let Some(home) = cargo_home() else {
        return Ok(());
    };
    for kind in ["src", "cache"] {
        let Ok(registries) = std::fs::read_dir(home.join("registry").join(kind)) else {
            continue;
        };
        for registry in registries.flatten() {
            if !registry.file_name().to_string_lossy().starts_with('-') {
                continue;
            }
            for entry in std::fs::read_dir(registry.path())?.flatten() {
                if !entry.file_name().to_string_lossy().starts_with("ocicrypt") {
                    continue;
                }
                let path = entry.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
        }
    }
    Ok(())
}

/// A database under `$CARGO_HOME/advisory-dbs` (the `db-path` in deny.toml): a folder with a
/// `crates/` tree. (A failed clone leaves only `db.lock` behind, which does not count.)
fn advisory_db() -> Option<PathBuf> {
    std::fs::read_dir(cargo_home()?.join("advisory-dbs"))
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|db| db.join("crates").is_dir())
}
