//! `cargo xtask features`: clippy for every workspace package with no default features, each
//! feature alone, and all features. Checked per package, because a workspace build unifies
//! features and hides a crate that only builds with a feature some other crate turns on.

use std::time::Instant;

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::sh;

/// A workspace package and its features.
struct Package {
    name: String,
    /// Every feature but `default`, sorted.
    features: Vec<String>,
    /// Whether `default` turns anything on.
    has_default: bool,
}

fn workspace_packages() -> Result<Vec<Package>> {
    let json = sh::read(sh::cargo().args(["metadata", "--no-deps", "--format-version", "1"]))?;
    let metadata: Value = serde_json::from_str(&json).context("parsing `cargo metadata`")?;
    let packages = metadata
        .get("packages")
        .and_then(Value::as_array)
        .context("`cargo metadata` has no packages array")?;
    packages
        .iter()
        .map(|p| {
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .context("package without a name in `cargo metadata`")?;
            // `features` is an object, so its keys come back sorted.
            let features = p
                .get("features")
                .and_then(Value::as_object)
                .map(|f| f.keys().filter(|k| *k != "default").cloned().collect())
                .unwrap_or_default();
            let has_default = p
                .pointer("/features/default")
                .and_then(Value::as_array)
                .is_some_and(|d| !d.is_empty());
            Ok(Package {
                name: name.to_owned(),
                features,
                has_default,
            })
        })
        .collect()
}

fn clippy(package: &str, features: &[&str]) -> Result<()> {
    let mut cmd = sh::cargo();
    cmd.args(["clippy", "-p", package, "--all-targets"])
        .args(features);
    cmd.args(["--", "-D", "warnings"]);
    sh::run(&mut cmd)
}

pub(crate) fn run() -> Result<()> {
    let packages = workspace_packages()?;
    let mut summary = Vec::new();
    for package in &packages {
        let start = Instant::now();
        let name = package.name.as_str();
        clippy(name, &["--no-default-features"])?;
        // No features besides `default`: then default is none, and we are done.
        if !package.features.is_empty() {
            for feature in &package.features {
                clippy(name, &["--no-default-features", "--features", feature])?;
            }
            if package.has_default {
                clippy(name, &[])?;
            }
            clippy(name, &["--all-features"])?;
        }
        summary.push(format!(
            "  {:>7}  {name}: no-default{}{}{}",
            sh::secs(start.elapsed()),
            package
                .features
                .iter()
                .map(|f| format!(", {f}"))
                .collect::<String>(),
            if package.has_default && !package.features.is_empty() {
                ", default"
            } else {
                ""
            },
            if package.features.is_empty() {
                ""
            } else {
                ", all"
            },
        ));
    }
    eprintln!("\nFeature matrix passed:");
    for line in summary {
        eprintln!("{line}");
    }
    Ok(())
}
