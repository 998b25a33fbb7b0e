//! `cargo xtask fuzz [SECONDS | --long DURATION] [TARGET...]`: run every cargo-fuzz target
//! in `fuzz/` (or those named) for a while: a smoke run in CI, a campaign by hand. Each
//! target's runs, corpus size and time are printed at the end, for the README's record.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::{ci, sh};

/// How long each target runs unless told otherwise.
pub(crate) const DEFAULT_SECONDS: u64 = 10;

/// What to run, and for how long.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) seconds: u64,
    pub(crate) targets: Vec<String>,
}

pub(crate) const USAGE: &str = "usage: cargo xtask fuzz [SECONDS | --long DURATION] [TARGET...]";

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            seconds: DEFAULT_SECONDS,
            targets: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--long" {
                let d = it
                    .next()
                    .with_context(|| format!("--long needs a duration\n{USAGE}"))?;
                o.seconds = duration(d)?;
            } else if let Ok(n) = a.parse::<u64>() {
                o.seconds = n;
            } else if a.starts_with('-') {
                bail!("unknown option {a:?}\n{USAGE}");
            } else {
                o.targets.push(a.clone());
            }
        }
        Ok(o)
    }
}

/// `90s`, `30m`, `2h` or plain seconds.
fn duration(d: &str) -> Result<u64> {
    let (num, unit) = match d.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => d.split_at(i),
        None => (d, "s"),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("{d:?} is not a duration like 90s, 30m or 2h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => bail!("{d:?} is not a duration like 90s, 30m or 2h"),
    };
    Ok(n * scale)
}

/// `Done 270230 runs in 61 second(s)` and the last `corp: N/` of libFuzzer's output.
fn stats(output: &str) -> (Option<u64>, Option<u64>) {
    let runs = output.lines().rev().find_map(|l| {
        l.strip_prefix("Done ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    let corpus = output.lines().rev().find_map(|l| {
        let rest = l.split("corp: ").nth(1)?;
        rest.split('/').next()?.parse().ok()
    });
    (runs, corpus)
}

pub(crate) fn run(o: &Options) -> Result<()> {
    let seconds = o.seconds;
    ci::ensure_cargo_tool("fuzz")?;
    let fuzz_dir = sh::project_root().join("fuzz");
    // `cargo fuzz list` prints the `[[bin]]` names of fuzz/Cargo.toml, one a line.
    let list = sh::read(sh::cargo().args(["fuzz", "list"]).current_dir(&fuzz_dir))?;
    let targets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|t| o.targets.is_empty() || o.targets.iter().any(|w| w == t))
        .collect();
    for wanted in &o.targets {
        if !targets.contains(&wanted.as_str()) {
            bail!("no fuzz target {wanted:?} (see `cargo fuzz list` in fuzz/)");
        }
    }
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
        cmd.arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=2048")
            .current_dir(&fuzz_dir);
        eprintln!("$ {}", sh::display(&cmd));
        let out = cmd
            .output()
            .with_context(|| format!("cannot run cargo fuzz for `{target}`"))?;
        let text = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            bail!(
                "fuzz target `{target}` failed; a crashing input is kept under fuzz/artifacts/{target}/"
            );
        }
        let (runs, corpus) = stats(&text);
        let show = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |n| n.to_string());
        summary.push(format!(
            "  {:>7}  {target}: {} runs, corpus {}",
            sh::secs(start.elapsed()),
            show(runs),
            show(corpus)
        ));
    }
    eprintln!("\nFuzzing passed ({seconds}s per target, time includes building):");
    for line in summary {
        eprintln!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sh::args;

    #[test]
    fn options_and_durations() {
        assert_eq!(Options::parse(&[]).unwrap().seconds, DEFAULT_SECONDS);
        assert_eq!(Options::parse(&args(&["30"])).unwrap().seconds, 30);
        let o = Options::parse(&args(&["--long", "30m", "image_graph"])).unwrap();
        assert_eq!(
            (o.seconds, o.targets),
            (1800, vec!["image_graph".to_owned()])
        );
        assert_eq!(duration("2h").unwrap(), 7200);
        assert_eq!(duration("90s").unwrap(), 90);
        assert!(duration("5x").is_err());
        assert!(Options::parse(&args(&["--long"])).is_err());
        assert!(Options::parse(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn libfuzzer_stats() {
        let out = "#8 INITED cov: 2 ft: 2 corp: 1/1b exec/s: 0\n#9270 REDUCE cov: 2462 ft: 3742 corp: 220/1129b lim: 11\nDone 270230 runs in 61 second(s)\n";
        assert_eq!(stats(out), (Some(270_230), Some(220)));
        assert_eq!(stats(""), (None, None));
    }
}
