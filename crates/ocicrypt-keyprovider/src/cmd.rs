//! Running a provider program: request on stdin, reply on stdout, bounded in time and size.

use wait_timeout::ChildExt as _;
use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::config::Command;
use crate::wrapper::Options;
use crate::Error;

/// How much of a provider's stderr is kept for error messages (the end of it).
pub(crate) const STDERR_TAIL: usize = 4096;

/// Runs `cmd` with `input` on stdin and returns its stdout.
pub(crate) fn run(cmd: &Command, input: &[u8], options: &Options) -> Result<Zeroizing<Vec<u8>>, Error> {
    let deadline = Instant::now() + options.timeout;
    let io_err = |source| Error::Io {
        path: cmd.path.clone(),
        source,
    };
    let mut child = std::process::Command::new(&cmd.path)
        .args(&cmd.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            path: cmd.path.clone(),
            source,
        })?;

    // One thread per pipe, so that neither side can block the other.
    let stdin = child.stdin.take();
    let input = Zeroizing::new(input.to_vec());
    let writer = thread::spawn(move || -> std::io::Result<()> {
        if let Some(mut stdin) = stdin {
            match stdin.write_all(&input) {
                // The program may exit without reading everything; its status tells.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
        }
        Ok(())
    });
    let (out_tx, out_rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        let limit = options.max_reply_size;
        thread::spawn(move || {
            let mut buf = Zeroizing::new(Vec::new());
            let r = stdout
                .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
                .read_to_end(&mut buf);
            let _ = out_tx.send(r.map(|_| buf));
        });
    }
    let (err_tx, err_rx) = mpsc::channel();
    if let Some(stderr) = child.stderr.take() {
        thread::spawn(move || {
            let _ = err_tx.send(tail(stderr));
        });
    }

    let status = match wait_until(&mut child, deadline).map_err(io_err)? {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout {
                provider: cmd.path.display().to_string(),
                timeout: options.timeout,
                stderr: err_rx
                    .recv_timeout(Duration::from_millis(200))
                    .unwrap_or_default(),
            });
        }
    };
    // Pipes may stay open in a grandchild: never wait past the deadline for them.
    let grace = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(200));
    let stderr = err_rx.recv_timeout(grace).unwrap_or_default();
    if !status.success() {
        return Err(Error::CommandFailed {
            path: cmd.path.clone(),
            status: status.to_string(),
            stderr,
        });
    }
    if let Ok(Err(e)) = writer.join() {
        return Err(io_err(e));
    }
    let out = match out_rx.recv_timeout(grace) {
        Ok(r) => r.map_err(io_err)?,
        Err(_) => {
            return Err(Error::Timeout {
                provider: cmd.path.display().to_string(),
                timeout: options.timeout,
                stderr,
            });
        }
    };
    if out.len() > options.max_reply_size {
        return Err(Error::BadReply {
            reason: format!("reply longer than {} bytes", options.max_reply_size),
            source: None,
        });
    }
    Ok(out)
}

/// Waits for `child` to exit, until `deadline`; `None` if it has not.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<std::process::ExitStatus>> {
    child.wait_timeout(deadline.saturating_duration_since(Instant::now()))
}

/// Reads `r` to the end, keeping the last [`STDERR_TAIL`] bytes, lossily decoded.
fn tail(mut r: impl Read) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut truncated = false;
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(buf.get(..n).unwrap_or_default());
                if kept.len() > STDERR_TAIL {
                    let cut = kept.len() - STDERR_TAIL;
                    kept.drain(..cut);
                    truncated = true;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&kept);
    let text = text.trim_end();
    if truncated {
        format!("...{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let data = vec![b'a'; 10_000]
            .into_iter()
            .chain(b"END\n".iter().copied())
            .collect::<Vec<u8>>();
        let t = tail(&data[..]);
        assert!(t.starts_with("...") && t.ends_with("aEND"), "{}", &t[..10]);
        assert_eq!(t.len(), 3 + STDERR_TAIL - 1);
        assert_eq!(tail(&b"short\n"[..]), "short");
    }
}
