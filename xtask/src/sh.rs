//! Running commands: echo them, fail with the command line in the message, time steps.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// The repository root (the parent of this crate's folder).
pub(crate) fn project_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// A new command for `program`.
pub(crate) fn cmd(program: impl AsRef<OsStr>) -> Command {
    Command::new(program)
}

/// A new `cargo` command, using the cargo that started us when there is one.
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The command line as a shell would show it (environment overrides first).
pub(crate) fn display(cmd: &Command) -> String {
    let mut words: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    let program = Path::new(cmd.get_program());
    // Show `cargo`, not the full path of the cargo binary.
    let program = match program.file_name() {
        Some(name) if name == "cargo" => name,
        _ => program.as_os_str(),
    };
    words.push(program.to_string_lossy().into_owned());
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `cmd` with inherited stdio; an error (naming the command) unless it exits with 0.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    eprintln!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout; an error (with its stderr) unless it exits with 0.
pub(crate) fn read(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{line}` printed non-UTF-8"))
}

/// Whether `cmd` runs and exits with 0 (its output discarded).
pub(crate) fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether an executable called `name` is on `PATH`.
pub(crate) fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| is_executable(&dir.join(name))))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Named steps with their durations; failing steps stop the run and are named in the error.
#[derive(Default)]
pub(crate) struct Steps {
    done: Vec<(String, Duration, bool)>,
    start: Option<Instant>,
}

impl Steps {
    /// Runs `f` as the step `name`, printing a banner, and records how long it took.
    pub(crate) fn step(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        let start = Instant::now();
        self.start.get_or_insert(start);
        eprintln!("\n==> {name}");
        let result = f();
        let took = start.elapsed();
        self.done.push((name.to_owned(), took, result.is_ok()));
        match result {
            Ok(()) => {
                eprintln!("<== {name}: ok ({})", secs(took));
                Ok(())
            }
            Err(e) => {
                self.print_summary();
                Err(e.context(format!("step `{name}` failed after {}", secs(took))))
            }
        }
    }

    /// Prints one line per finished step and the total.
    pub(crate) fn print_summary(&self) {
        eprintln!("\nTiming summary:");
        for (name, took, ok) in &self.done {
            let mark = if *ok { "ok    " } else { "FAILED" };
            eprintln!("  {mark} {:>9}  {name}", secs(*took));
        }
        if let Some(start) = self.start {
            eprintln!("         {:>9}  total", secs(start.elapsed()));
        }
    }
}

/// `12.3s`
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Command-line arguments as the owned strings a subcommand's parser takes.
#[cfg(test)]
pub(crate) fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_env_then_short_cargo_then_args() {
        let mut c = Command::new("/root/.cargo/bin/cargo");
        c.env("RUSTC_BOOTSTRAP", "1").args(["fuzz", "run", "x"]);
        assert_eq!(display(&c), "RUSTC_BOOTSTRAP=1 cargo fuzz run x");
        assert_eq!(
            display(Command::new("/usr/bin/apt-get").arg("update")),
            "/usr/bin/apt-get update"
        );
    }

    #[test]
    fn run_names_the_failed_command() {
        let err = run(Command::new("false").arg("--flag")).unwrap_err();
        assert!(err.to_string().contains("`false --flag` failed"), "{err}");
        assert!(run(&mut Command::new("true")).is_ok());
        assert!(run(&mut Command::new("/nonexistent/tool")).is_err());
    }

    #[test]
    fn failed_step_is_named_and_stops() {
        let mut steps = Steps::default();
        steps.step("first", || Ok(())).unwrap();
        let err = steps.step("second", || bail!("boom")).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("step `second` failed after"),
            "{err:#}"
        );
        assert_eq!(steps.done.len(), 2);
        assert!(steps.done[0].2 && !steps.done[1].2);
    }

    #[test]
    fn on_path_finds_sh_only() {
        assert!(on_path("sh"));
        assert!(!on_path("ocicrypt-no-such-tool"));
    }
}
