//! `cargo xtask bench`: the throughput numbers of the README's performance section, in one
//! run on this machine.
//!
//! 1. the machine (CPUs, CPU model);
//! 2. `cargo bench -p ocicrypt-blockcipher --features tokio` (raw AES-CTR, HMAC-SHA256,
//!    SHA-256 and the layer cipher, sync and async, as ratios to HMAC-SHA256);
//! 3. the release CLI, file to file: `layer encrypt` and `layer decrypt` of one file (1 GiB by
//!    default) beside `cp` (an in-kernel copy) and `dd` (read/write) of the same file, best
//!    of 3 with the page cache warm, with peak RSS and CPU use (from `/usr/bin/time -v`);
//!    again without fsync under `eatmydata` when it is installed (the CLI syncs every output
//!    before renaming it into place);
//! 4. a 4-layer image (4 × 64 MiB by default) encrypted and then decrypted with `--jobs 1`
//!    and `--jobs 2`, again without fsync under `eatmydata` when it is installed;
//! 5. key rotation on that image;
//! 6. the image encrypted registry to registry (Debian's `docker-registry` on loopback,
//!    plain HTTP) by us and by skopeo, with the registry's own CPU time per copy.
//!
//! Scratch files go to a temporary directory under `target/`, removed at the end.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use crate::sh;

const MIB: u64 = 1024 * 1024;
const RUNS: usize = 3;
const PUB: &str = "examples/keys/TEST-ONLY-rsa-public.pem";
const PRIV: &str = "examples/keys/TEST-ONLY-rsa-private.pem";
const LAYER_MT: &str = "application/vnd.oci.image.layer.v1.tar";

/// What to run; from the command line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// Size of the file for the file-to-file rows, in MiB.
    pub(crate) file_mib: u64,
    /// Size of each of the 4 image layers, in MiB.
    pub(crate) layer_mib: u64,
    /// Run `cargo bench -p ocicrypt-blockcipher` first.
    pub(crate) blockcipher: bool,
}

pub(crate) const USAGE: &str =
    "usage: cargo xtask bench [--file-mib N] [--layer-mib N] [--no-blockcipher]";

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            file_mib: 1024,
            layer_mib: 64,
            blockcipher: true,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut number = |what: &str| -> Result<u64> {
                let v = it
                    .next()
                    .with_context(|| format!("{what} needs a value\n{USAGE}"))?;
                match v.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => bail!("{what}: {v:?} is not a positive number of MiB\n{USAGE}"),
                }
            };
            match a.as_str() {
                "--file-mib" => o.file_mib = number("--file-mib")?,
                "--layer-mib" => o.layer_mib = number("--layer-mib")?,
                "--no-blockcipher" => o.blockcipher = false,
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        Ok(o)
    }
}

/// `google.protobuf.Any`, for the payload containerd gives `ctd-decoder`.
#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn run(o: &Options) -> Result<()> {
    let root = sh::project_root();
    println!("machine: {}", machine());
    if o.blockcipher {
        sh::run(sh::cargo().args(["bench", "-p", "ocicrypt-blockcipher", "--features", "tokio"]))?;
    }
    sh::run(sh::cargo().args(["build", "--release", "-p", "ocicrypt-cli"]))?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let cli = target.join("release").join("ocicrypt");
    let scratch = Scratch(target.join(format!("xtask-bench-{}", std::process::id())));
    fs::create_dir_all(&scratch.0)?;
    let dir = scratch.0.as_path();
    let time_v = Path::new("/usr/bin/time");
    if !time_v.is_file() {
        bail!("/usr/bin/time is missing (Debian package `time`; `cargo xtask ci` installs it)");
    }
    let eatmydata = sh::on_path("eatmydata");

    // File to file.
    let input = dir.join("layer.bin");
    random_file(&input, o.file_mib * MIB, 1)?;
    warm(&input)?;
    let recipient = format!("jwe:{}", root.join(PUB).display());
    let key = root.join(PRIV);
    let (enc, enc_desc, dec, copy) = (
        dir.join("layer.enc"),
        dir.join("layer.enc.json"),
        dir.join("layer.dec"),
        dir.join("layer.cp"),
    );
    let mut cp = Command::new("cp");
    cp.arg(&input).arg(&copy);
    let mut encrypt = Command::new(&cli);
    encrypt
        .args([
            "layer",
            "encrypt",
            "-r",
            &recipient,
            "--media-type",
            LAYER_MT,
            "--in",
        ])
        .arg(&input)
        .arg("--out")
        .arg(&enc)
        .arg("--descriptor-out")
        .arg(&enc_desc);
    let mut decrypt = Command::new(&cli);
    decrypt
        .args(["layer", "decrypt", "-k"])
        .arg(&key)
        .arg("--descriptor")
        .arg(&enc_desc)
        .arg("--in")
        .arg(&enc)
        .arg("--out")
        .arg(&dec);
    let bytes = o.file_mib * MIB;
    // GNU cp copies in the kernel (copy_file_range); dd shows a read/write copy through
    // user space, the kind of I/O the CLI does.
    let mut dd = Command::new("dd");
    dd.arg(format!("if={}", input.display()))
        .arg(format!("of={}", copy.display()))
        .arg("bs=256K");
    let mut rows = vec![
        ("cp".to_owned(), best_of(dir, &mut cp, &[&copy])?),
        ("dd bs=256K".to_owned(), best_of(dir, &mut dd, &[&copy])?),
    ];
    // Each encrypt run rewrites both the blob and its descriptor, so the decrypt runs
    // that follow read a matching pair.
    let mut runs = vec![
        ("layer encrypt", &encrypt, &enc, false),
        ("layer decrypt", &decrypt, &dec, false),
    ];
    if eatmydata {
        runs.insert(1, ("layer encrypt, no fsync", &encrypt, &enc, true));
        runs.push(("layer decrypt, no fsync", &decrypt, &dec, true));
    }
    for (name, c, out, no_fsync) in runs {
        let mut c = copy_command(c, no_fsync);
        rows.push((name.to_owned(), best_of(dir, &mut c, &[out])?));
    }
    // ctd-decoder as containerd runs it: the layer on stdin, the payload on fd 3, the
    // decrypted layer on stdout (into a file here, as `layer decrypt` writes one).
    let decoder = target.join("release").join("ctd-decoder");
    let payload = dir.join("payload");
    let keys = dir.join("keys");
    fs::create_dir_all(&keys)?;
    fs::copy(&key, keys.join("key.pem"))?;
    let desc: serde_json::Value = serde_json::from_slice(&fs::read(&enc_desc)?)?;
    let value = serde_json::json!({"DecryptConfig": {"Parameters": null}, "Descriptor": desc});
    fs::write(
        &payload,
        prost::Message::encode_to_vec(&Any {
            type_url: "io.containerd.ocicrypt.v1.Payload".to_owned(),
            value: value.to_string().into_bytes(),
        }),
    )?;
    let mut ctd = Command::new("sh");
    ctd.arg("-c")
        .arg(r#"exec "$0" --decryption-keys-path "$1" 3< "$2" < "$3" > "$4""#)
        .arg(&decoder)
        .arg(&keys)
        .arg(&payload)
        .arg(&enc)
        .arg(&dec);
    rows.push((
        "ctd-decoder (stdin to stdout)".to_owned(),
        best_of(dir, &mut ctd, &[&dec])?,
    ));
    let cp_rate = rate(bytes, rows.first().map_or(Duration::MAX, |r| r.1.time));
    println!(
        "\nfile to file, {} MiB, page cache warm, best of {RUNS}:",
        o.file_mib
    );
    println!(
        "{:<28} {:>9} {:>8} {:>14} {:>6}",
        "command", "MiB/s", "× cp", "peak RSS MiB", "CPU %"
    );
    println!("{}", "-".repeat(69));
    for (name, m) in &rows {
        let r = rate(bytes, m.time);
        println!(
            "{name:<28} {r:>9.0} {:>8.2} {:>14.1} {:>6}",
            r / cp_rate,
            m.max_rss_kib as f64 / 1024.0,
            m.cpu_percent
        );
    }
    if !eatmydata {
        println!("(install Debian's eatmydata to also measure without the CLI's fsync)");
    }
    for p in [&input, &enc, &dec, &copy] {
        let _ = fs::remove_file(p);
    }

    // A 4-layer image, --jobs 1 against --jobs 2, encrypted and then decrypted; again
    // without fsync when eatmydata is there (the CLI syncs every blob before renaming it
    // into place, and the last blobs' writeback is a wait that no --jobs shortens).
    let image = dir.join("image");
    random_image(&image, 4, o.layer_mib * MIB)?;
    let (enc_image, dec_image) = (dir.join("image-enc"), dir.join("image-dec"));
    let key = key.display().to_string();
    let steps: [(&str, Vec<&str>, &Path, &Path); 2] = [
        (
            "encrypt",
            vec!["-r", recipient.as_str()],
            &image,
            &enc_image,
        ),
        ("decrypt", vec!["-k", key.as_str()], &enc_image, &dec_image),
    ];
    let image_bytes = 4 * o.layer_mib * MIB;
    for (verb, keys, src, dst) in steps {
        for no_fsync in [false, true] {
            if no_fsync && !eatmydata {
                continue;
            }
            let mut by_jobs = Vec::new();
            for jobs in ["1", "2"] {
                let mut c = Command::new(&cli);
                c.args(["image", verb, "--jobs", jobs])
                    .args(&keys)
                    .arg(format!("oci:{}:latest", src.display()))
                    .arg(format!("oci:{}:latest", dst.display()));
                by_jobs.push(best_of(dir, &mut copy_command(&c, no_fsync), &[dst])?);
            }
            println!(
                "\nimage {verb}, 4 layers × {} MiB{}, best of {RUNS}:",
                o.layer_mib,
                if no_fsync {
                    ", no fsync (eatmydata)"
                } else {
                    ""
                }
            );
            for (jobs, m) in ["1", "2"].iter().zip(&by_jobs) {
                println!(
                    "  --jobs {jobs}: {:>6.2}s {:>7.0} MiB/s, peak RSS {:.1} MiB, CPU {}%",
                    m.time.as_secs_f64(),
                    rate(image_bytes, m.time),
                    m.max_rss_kib as f64 / 1024.0,
                    m.cpu_percent
                );
            }
            if let [one, two] = by_jobs.as_slice() {
                println!(
                    "  speed-up with --jobs 2: {:.2}×",
                    one.time.as_secs_f64() / two.time.as_secs_f64()
                );
            }
        }
    }

    // Key rotation (issue 13) on the encrypted image: rewrap into the same layout (another
    // tag) and into another one (hard links), and --rotate beside decrypt then encrypt.
    let new_key = dir.join("new-key.pem");
    let new_pub = dir.join("new-pub.pem");
    sh::run(
        Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&new_key)
            .arg("2048"),
    )?;
    sh::run(
        Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(&new_key)
            .arg("-out")
            .arg(&new_pub),
    )?;
    let new_recipient = format!("jwe:{}", new_pub.display());
    let enc_ref = format!("oci:{}:latest", enc_image.display());
    let rewrap = |dst: &str, extra: &[&str]| {
        let mut c = Command::new(&cli);
        c.args(["image", "rewrap", "-k", &key, "-r", &new_recipient])
            .args(extra)
            .arg(&enc_ref)
            .arg(dst);
        c
    };
    let (re_dir, rot_dir) = (dir.join("image-re"), dir.join("image-rot"));
    let same = best_of(
        dir,
        &mut rewrap(&format!("oci:{}:re", enc_image.display()), &[]),
        &[],
    )?;
    let same_read = bytes_read(&rewrap(&format!("oci:{}:re2", enc_image.display()), &[]))?;
    let other = best_of(
        dir,
        &mut rewrap(&format!("oci:{}", re_dir.display()), &[]),
        &[&re_dir],
    )?;
    let rotate = best_of(
        dir,
        &mut rewrap(
            &format!("oci:{}", rot_dir.display()),
            &["--rotate", "--jobs", "2"],
        ),
        &[&rot_dir],
    )?;
    let mut two = Command::new("sh");
    two.arg("-c")
        .arg(r#""$1" image decrypt -k "$2" "$3" "oci:$4" && "$1" image encrypt -r "$5" "oci:$4" "oci:$6""#)
        .arg("sh")
        .arg(&cli)
        .arg(&key)
        .arg(&enc_ref)
        .arg(&dec_image)
        .arg(&new_recipient)
        .arg(&rot_dir);
    let both = best_of(dir, &mut two, &[&dec_image, &rot_dir])?;
    println!(
        "\nimage rewrap, 4 layers × {} MiB, best of {RUNS}:",
        o.layer_mib
    );
    println!(
        "  same layout, new tag:   {:>6.3}s, {} bytes read, peak RSS {:.1} MiB",
        same.time.as_secs_f64(),
        same_read,
        same.max_rss_kib as f64 / 1024.0
    );
    println!(
        "  into another layout:    {:>6.3}s (hard links)",
        other.time.as_secs_f64()
    );
    println!(
        "  --rotate --jobs 2:      {:>6.2}s, CPU {}%",
        rotate.time.as_secs_f64(),
        rotate.cpu_percent
    );
    println!(
        "  decrypt, then encrypt:  {:>6.2}s",
        both.time.as_secs_f64()
    );
    println!(
        "  --rotate speed-up:      {:.2}×",
        both.time.as_secs_f64() / rotate.time.as_secs_f64()
    );
    registry_rows(dir, &cli, &image, &recipient, o.layer_mib)
}

/// A process killed when dropped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User plus system CPU seconds a process has used (`/proc/PID/stat`).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Ok((ticks(11) + ticks(12)) / 100.0)
}

/// Registry to registry: the image pushed once by skopeo to a `docker-registry` on
/// loopback, then encrypted into another tag of it by us and by skopeo.
fn registry_rows(
    dir: &Path,
    cli: &Path,
    image: &Path,
    recipient: &str,
    layer_mib: u64,
) -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.join("registry.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("registry").display()
        ),
    )?;
    let registry = Daemon(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot start docker-registry (Debian package docker-registry; `cargo xtask ci` installs it)")?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("docker-registry did not come up on port {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let at = |tag: &str| format!("docker://127.0.0.1:{port}/bench:{tag}");
    sh::run(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:latest", image.display()))
            .arg(at("plain")),
    )?;
    let mut ours = Command::new(cli);
    ours.args(["image", "encrypt", "--jobs", "2", "-r", recipient])
        .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(at("plain"))
        .arg(at("ours"));
    let mut skopeo = Command::new("skopeo");
    skopeo
        .args(["--insecure-policy", "copy", "--quiet"])
        .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
        .args(["--encryption-key", recipient])
        .arg(at("plain"))
        .arg(at("skopeo"));
    let pid = registry.0.id();
    let measure = |ours: &mut Command, skopeo: &mut Command| -> Result<_> {
        let mut rows = Vec::new();
        for (name, cmd) in [
            ("ocicrypt image encrypt", ours),
            ("skopeo copy --encryption-key", skopeo),
        ] {
            let before = cpu_seconds(pid)?;
            let m = best_of(dir, cmd, &[])?;
            let registry_cpu = (cpu_seconds(pid)? - before) / RUNS as f64;
            rows.push((name, m, registry_cpu));
        }
        Ok(rows)
    };
    let shared = measure(&mut ours, &mut skopeo)?;
    print_registry_rows(
        &format!(
            "docker-registry on loopback, plain HTTP, sharing the CPUs; 4 layers × {layer_mib} MiB"
        ),
        layer_mib,
        &shared,
    );
    // As when the registry is another machine: the registry on the last CPU, each client on
    // the others (taskset, from util-linux).
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 {
        let last = (cpus - 1).to_string();
        let rest = if cpus == 2 {
            "0".to_owned()
        } else {
            format!("0-{}", cpus - 2)
        };
        sh::read(Command::new("taskset").args(["-a", "-p", "-c", &last, &pid.to_string()]))?;
        let pinned = |cmd: &Command| {
            let mut c = Command::new("taskset");
            c.args(["-c", &rest])
                .arg(cmd.get_program())
                .args(cmd.get_args());
            c
        };
        let rows = measure(&mut pinned(&ours), &mut pinned(&skopeo))?;
        print_registry_rows(
            &format!(
                "the registry alone on CPU {last}, the client on CPU {rest} (taskset), as with a registry elsewhere; 4 layers × {layer_mib} MiB"
            ),
            layer_mib,
            &rows,
        );
    }
    Ok(())
}

/// Prints the rows of one registry-to-registry setting, and ours against skopeo.
fn print_registry_rows(setting: &str, layer_mib: u64, rows: &[(&str, Measured, f64)]) {
    let bytes = 4 * layer_mib * MIB;
    println!("\nimage encrypt registry to registry ({setting}), best of {RUNS}:");
    for (name, m, registry_cpu) in rows {
        println!(
            "  {name:<30} {:>6.2}s {:>6.0} MiB/s, peak RSS {:.1} MiB, CPU {}% ({:.2}s), registry CPU {:.2}s a copy",
            m.time.as_secs_f64(),
            rate(bytes, m.time),
            m.max_rss_kib as f64 / 1024.0,
            m.cpu_percent,
            m.cpu_percent as f64 / 100.0 * m.time.as_secs_f64(),
            registry_cpu
        );
    }
    if let [(_, ours, _), (_, skopeo, _)] = rows {
        let cpu = |m: &Measured| m.cpu_percent as f64 * m.time.as_secs_f64();
        println!(
            "  ours against skopeo: {:.2}× faster, {:.2}× less CPU",
            skopeo.time.as_secs_f64() / ours.time.as_secs_f64(),
            cpu(skopeo) / cpu(ours).max(f64::MIN_POSITIVE)
        );
    }
}

/// What a command read through `read(2)` and friends (`rchar` of `/proc/PID/io`, which a
/// shell collects from the children it waited for).
fn bytes_read(c: &Command) -> Result<u64> {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#""$@" >/dev/null 2>&1 && cat /proc/$$/io"#)
        .arg("sh")
        .arg(c.get_program())
        .args(c.get_args());
    let io = sh::read(&mut sh)?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .context("no rchar in /proc/PID/io")
}

/// A copy of `c` (program and arguments), run under `eatmydata` (no fsync) if `no_fsync`.
fn copy_command(c: &Command, no_fsync: bool) -> Command {
    let mut copy = if no_fsync {
        let mut e = Command::new("eatmydata");
        e.arg(c.get_program());
        e
    } else {
        Command::new(c.get_program())
    };
    copy.args(c.get_args());
    copy
}

/// `2 CPUs, AMD EPYC ...`
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    format!("{cpus} CPUs, {}", cpu_model(&info).unwrap_or("unknown CPU"))
}

fn cpu_model(cpuinfo: &str) -> Option<&str> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then_some(v.trim())
    })
}

/// One timed run: wall time, peak RSS and CPU use of the command.
#[derive(Clone, Copy, Debug)]
struct Measured {
    time: Duration,
    max_rss_kib: u64,
    /// CPU time over wall time, in percent, of the fastest run (200 = two cores busy).
    cpu_percent: u64,
}

/// Runs `cmd` under `/usr/bin/time -v` `RUNS` times, removing `outputs` and then running
/// `sync` before each run (without it, the writeback of the previous run's output shares
/// the CPUs and the disk with the next run: seen here, `cp` of 1 GiB took 1.45 s instead of
/// 0.25 s); the fastest run, with the highest peak RSS seen.
fn best_of(dir: &Path, cmd: &mut Command, outputs: &[&Path]) -> Result<Measured> {
    let report = dir.join("time-v.txt");
    let mut best = Measured {
        time: Duration::MAX,
        max_rss_kib: 0,
        cpu_percent: 0,
    };
    for _ in 0..RUNS {
        for o in outputs {
            remove(o)?;
        }
        sh::read(&mut Command::new("sync"))?;
        let mut timed = Command::new("/usr/bin/time");
        timed
            .arg("-v")
            .arg("-o")
            .arg(&report)
            .arg(cmd.get_program())
            .args(cmd.get_args());
        let start = Instant::now();
        sh::read(&mut timed)?;
        let took = start.elapsed();
        let report = fs::read_to_string(&report)?;
        let rss = max_rss_kib(&report)
            .context("no maximum resident set size in the output of /usr/bin/time -v")?;
        if took < best.time {
            best.time = took;
            best.cpu_percent = cpu_percent(&report).unwrap_or(0);
        }
        best.max_rss_kib = best.max_rss_kib.max(rss);
    }
    eprintln!(
        "{}: best {:.3}s, peak RSS {} KiB",
        sh::display(cmd),
        best.time.as_secs_f64(),
        best.max_rss_kib
    );
    Ok(best)
}

fn remove(p: &Path) -> Result<()> {
    let r = if p.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", p.display()))
        }
        _ => Ok(()),
    }
}

/// `Percent of CPU this job got: N%` from `/usr/bin/time -v`.
fn cpu_percent(report: &str) -> Option<u64> {
    report.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Percent of CPU this job got:")?
            .trim()
            .trim_end_matches('%')
            .parse()
            .ok()
    })
}

/// `Maximum resident set size (kbytes): N` from `/usr/bin/time -v`.
fn max_rss_kib(report: &str) -> Option<u64> {
    report.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Maximum resident set size (kbytes):")?
            .trim()
            .parse()
            .ok()
    })
}

fn rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

/// Writes `len` pseudo-random bytes (xorshift64*, incompressible enough for a cipher that
/// does not care) seeded by `seed`.
fn random_file(path: &Path, len: u64, seed: u64) -> Result<()> {
    let mut w = BufWriter::with_capacity(
        MIB as usize,
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            chunk.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = usize::try_from(left.min(MIB)).unwrap_or(buf.len());
        w.write_all(buf.get(..n).unwrap_or(&buf))?;
        left -= n as u64;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// Reads a file once so that it is in the page cache.
fn warm(path: &Path) -> Result<()> {
    std::io::copy(&mut File::open(path)?, &mut std::io::sink())?;
    Ok(())
}

/// `sha256:<hex>` of a file, by `sha256sum`.
fn sha256(path: &Path) -> Result<String> {
    let out = sh::read(sh::cmd("sha256sum").arg(path))?;
    let hex = out.split_whitespace().next().unwrap_or_default();
    if hex.len() != 64 {
        bail!("unexpected sha256sum output {out:?}");
    }
    Ok(format!("sha256:{hex}"))
}

/// Moves `file` into `layout` as a blob; returns its descriptor.
fn add_blob(layout: &Path, file: &Path, media_type: &str) -> Result<serde_json::Value> {
    let digest = sha256(file)?;
    let size = fs::metadata(file)?.len();
    let hex = digest.trim_start_matches("sha256:");
    fs::rename(file, layout.join("blobs/sha256").join(hex))?;
    Ok(json!({"mediaType": media_type, "digest": digest, "size": size}))
}

/// An OCI layout at `root` whose tag `latest` is an image of `n` random layers of `len`
/// bytes each, warm in the page cache.
fn random_image(root: &Path, n: u64, len: u64) -> Result<()> {
    fs::create_dir_all(root.join("blobs/sha256"))?;
    fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let tmp = root.join("tmp");
    let mut layers = Vec::new();
    for i in 0..n {
        random_file(&tmp, len, 100 + i)?;
        warm(&tmp)?;
        layers.push(add_blob(root, &tmp, LAYER_MT)?);
    }
    fs::write(&tmp, br#"{"architecture":"amd64","os":"linux"}"#)?;
    let config = add_blob(root, &tmp, "application/vnd.oci.image.config.v1+json")?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers,
    });
    fs::write(&tmp, serde_json::to_vec(&manifest)?)?;
    let mut entry = add_blob(root, &tmp, "application/vnd.oci.image.manifest.v1+json")?;
    if let Some(e) = entry.as_object_mut() {
        e.insert(
            "annotations".to_owned(),
            json!({"org.opencontainers.image.ref.name": "latest"}),
        );
    }
    let index = json!({"schemaVersion": 2, "manifests": [entry]});
    fs::write(root.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sh::args;

    #[test]
    fn options() {
        let d = Options::parse(&[]).unwrap();
        assert_eq!((d.file_mib, d.layer_mib, d.blockcipher), (1024, 64, true));
        let o = Options::parse(&args(&["--file-mib", "16", "--no-blockcipher"])).unwrap();
        assert_eq!((o.file_mib, o.layer_mib, o.blockcipher), (16, 64, false));
        assert!(Options::parse(&args(&["--file-mib"])).is_err());
        assert!(Options::parse(&args(&["--file-mib", "0"])).is_err());
        assert!(Options::parse(&args(&["--layer-mib", "x"])).is_err());
        assert!(Options::parse(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn parses_time_v_and_cpuinfo() {
        let report = "\tCommand being timed: \"cp a b\"\n\tPercent of CPU this job got: 143%\n\tMaximum resident set size (kbytes): 2048\n";
        assert_eq!(max_rss_kib(report), Some(2048));
        assert_eq!(cpu_percent(report), Some(143));
        assert_eq!(cpu_percent("nothing"), None);
        assert_eq!(max_rss_kib("nothing"), None);
        let info = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: sha_ni\n";
        assert_eq!(cpu_model(info), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor: 0\n"), None);
    }

    #[test]
    fn random_files_and_images() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        let _scratch = Scratch(dir.clone());
        fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        random_file(&a, 3 * MIB + 5, 1).unwrap();
        random_file(&b, 3 * MIB + 5, 2).unwrap();
        let (a, b) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
        assert_eq!(a.len() as u64, 3 * MIB + 5);
        assert_ne!(a, b);
        assert_ne!(a.get(..8), a.get(8..16));
        let image = dir.join("img");
        random_image(&image, 2, 1000).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(image.join("index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"].as_str().unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(
            &fs::read(image.join("blobs/sha256").join(&digest[7..])).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
        assert_eq!(manifest["layers"][1]["size"], 1000);
        assert!(!image.join("tmp").exists());
    }
}
