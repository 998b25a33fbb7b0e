//! System tools (Debian packages) that builds, tests and the demo need, and installing them.

use std::path::Path;

use anyhow::{Result, bail};

use crate::sh;

/// How to tell that a system tool is there.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// An executable of this name on `PATH`.
    Command(&'static str),
    /// `pkg-config --exists <name>` succeeds.
    PkgConfig(&'static str),
    /// A `libclang.so*` or `libclang-<version>.so*` under `/usr/lib/llvm-*/lib` or `/usr/lib/<multiarch>` (for bindgen).
    LibClang,
}

/// Everything we need from Debian: (how to check, package that provides it).
///
/// skopeo, openssl and gpg are the interop tests' third-party tools, softhsm2 the PKCS#11
/// tests' token, libclang what sequoia's OpenSSL backend runs bindgen with, containerd and
/// docker-registry what `ctd-decoder` is proven in.
const SYSTEM_TOOLS: &[(Check, &str)] = &[
    (Check::Command("skopeo"), "skopeo"),
    (Check::Command("openssl"), "openssl"),
    (Check::Command("pkg-config"), "pkg-config"),
    (Check::PkgConfig("openssl"), "libssl-dev"),
    (Check::Command("gpg"), "gnupg"),
    (Check::Command("softhsm2-util"), "softhsm2"),
    (Check::LibClang, "libclang-dev"),
    // /usr/bin/time -v: peak RSS in `cargo xtask bench`.
    (Check::Command("time"), "time"),
    // ctd-decoder's end-to-end test: a real containerd pulling from a real registry.
    (Check::Command("containerd"), "containerd"),
    (Check::Command("docker-registry"), "docker-registry"),
    // The registry tests' htpasswd file (bcrypt hashes, as docker-registry wants).
    (Check::Command("htpasswd"), "apache2-utils"),
];

impl Check {
    fn describe(self) -> String {
        match self {
            Check::Command(name) => format!("command `{name}`"),
            Check::PkgConfig(name) => format!("`pkg-config --exists {name}`"),
            Check::LibClang => {
                "libclang.so* or libclang-<version>.so* (under /usr/lib/llvm-*/lib or /usr/lib/*-linux-gnu)".to_owned()
            }
        }
    }

    fn is_met(self) -> bool {
        match self {
            Check::Command(name) => sh::on_path(name),
            Check::PkgConfig(name) => {
                sh::on_path("pkg-config")
                    && sh::succeeds(sh::cmd("pkg-config").args(["--exists", name]))
            }
            Check::LibClang => has_libclang(),
        }
    }
}

fn has_libclang() -> bool {
    let Ok(entries) = std::fs::read_dir("/usr/lib") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("llvm-") {
            dir_has_libclang(&entry.path().join("lib"))
        } else if name.ends_with("-linux-gnu") {
            dir_has_libclang(&entry.path())
        } else {
            false
        }
    })
}

fn dir_has_libclang(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            is_libclang(&name)
        })
    })
}

/// The names bindgen loads: `libclang.so*` or `libclang-<version>.so*`; not, say,
/// `libclang-cpp.so.14`, which Debian installs without `libclang.so` (seen on a fresh
/// machine: the check passed, then the build failed).
fn is_libclang(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("libclang") else {
        return false;
    };
    let rest = match rest.strip_prefix('-') {
        Some(v) => {
            let digits = v.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return false;
            }
            v.trim_start_matches(|c: char| c.is_ascii_digit())
        }
        None => rest,
    };
    rest.starts_with(".so")
}

/// The Debian packages whose tools are missing, each once, in list order.
fn missing_packages() -> Vec<&'static str> {
    let mut missing = Vec::new();
    for &(check, package) in SYSTEM_TOOLS {
        if !check.is_met() {
            eprintln!("missing: {} (Debian package {package})", check.describe());
            if !missing.contains(&package) {
                missing.push(package);
            }
        }
    }
    missing
}

fn is_root() -> bool {
    sh::read(sh::cmd("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

/// Makes sure every system tool is there: installs what is missing with apt-get when we are
/// root, otherwise fails with the exact command to run.
pub(crate) fn ensure_installed() -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        eprintln!("all {} system tools present", SYSTEM_TOOLS.len());
        return Ok(());
    }
    let install = format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        bail!(
            "missing Debian packages: {}\nInstall them as root:\n  {install}",
            missing.join(" ")
        );
    }
    sh::run(sh::cmd("apt-get").arg("update"))?;
    sh::run(
        sh::cmd("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )?;
    let still = missing_packages();
    if !still.is_empty() {
        bail!(
            "still missing after apt-get install: {} (does the package provide what the check looks for?)",
            still.join(" ")
        );
    }
    eprintln!("installed: {}", missing.join(" "));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn libclang_names() {
        for yes in [
            "libclang.so",
            "libclang.so.1",
            "libclang-14.so.1",
            "libclang-14.so.14.0.6",
        ] {
            assert!(super::is_libclang(yes), "{yes}");
        }
        for no in [
            "libclang-cpp.so.14",
            "libclang.a",
            "libclang-.so",
            "libclangx.so",
            "libclang-14.a",
        ] {
            assert!(!super::is_libclang(no), "{no}");
        }
    }
}
