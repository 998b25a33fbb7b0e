//! `cargo xtask fuzz [SECONDS]`: smoke-run every cargo-fuzz target in `fuzz/`.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::{ci, sh};

/// How long each target runs unless told otherwise.
pub(crate) const DEFAULT_SECONDS: u64 = 10;

pub(crate) fn run(seconds: u64) -> Result<()> {
    ci::ensure_cargo_tool("fuzz")?;
    let fuzz_dir = sh::project_root().join("fuzz");
    // `cargo fuzz list` prints the `[[bin]]` names of fuzz/Cargo.toml, one a line.
    let list = sh::read(sh::cargo().args(["fuzz", "list"]).current_dir(&fuzz_dir))?;
    let targets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if targets.is_empty() {
        bail!(
            "`cargo fuzz list` found no targets in {}",
            fuzz_dir.display()
        );
    }
    let mut summary = Vec::new();
    for target in &targets {
        let start = Instant::now();
        // The toolchain is stable; RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags.
        // New inputs go to fuzz/corpus/TARGET (ignored by git); committed seeds, where a
        // target has them, are read from fuzz/seeds/TARGET.
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("cannot create {}", corpus.display()))?;
        let mut cmd = sh::cargo();
        cmd.env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target])
            .arg(corpus);
        let seeds = fuzz_dir.join("seeds").join(target);
        if seeds.is_dir() {
            cmd.arg(seeds);
        }
        sh::run(
            cmd.arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .arg("-rss_limit_mb=2048")
                .current_dir(&fuzz_dir),
        )
        .with_context(|| {
            format!("fuzz target `{target}` failed; a crashing input is kept under fuzz/artifacts/{target}/")
        })?;
        summary.push(format!("  {:>7}  {target}", sh::secs(start.elapsed())));
    }
    eprintln!("\nFuzz smoke passed ({seconds}s per target, time includes building):");
    for line in summary {
        eprintln!("{line}");
    }
    Ok(())
}
