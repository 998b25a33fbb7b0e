//! `cargo xtask demo`: the README's first command. Encrypts the shipped example image to the
//! TEST-ONLY example key with the `ocicrypt` CLI, inspects it, decrypts it, and checks that
//! the decrypted layers are byte-identical to the originals.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::{sh, system};

const IMAGE: &str = "examples/image";
const PUBLIC_KEY: &str = "examples/keys/TEST-ONLY-rsa-public.pem";
const PRIVATE_KEY: &str = "examples/keys/TEST-ONLY-rsa-private.pem";
const TAG: &str = "latest";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

pub(crate) fn run() -> Result<()> {
    system::ensure_installed()?;
    sh::run(sh::cargo().args([
        "build",
        "--release",
        "-p",
        "ocicrypt-cli",
        "--bin",
        "ocicrypt",
    ]))?;
    let cli = target_dir()?.join("release").join("ocicrypt");

    let tmp = std::env::temp_dir().join(format!("ocicrypt-demo-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = demo(&cli, &tmp);
    match &result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(_) => eprintln!("demo: left its files in {} for a look", tmp.display()),
    }
    result
}

fn demo(cli: &Path, tmp: &Path) -> Result<()> {
    let encrypted = tmp.join("encrypted");
    let decrypted = tmp.join("decrypted");
    let oci = |dir: &Path| format!("oci:{}:{TAG}", dir.display());
    let source = oci(Path::new(IMAGE));

    eprintln!("\n1. Encrypt every layer of {source} to the TEST-ONLY RSA key (JWE)");
    sh::run(
        sh::cmd(cli)
            .args(["image", "encrypt", "-r"])
            .arg(format!("jwe:{PUBLIC_KEY}"))
            .arg(&source)
            .arg(oci(&encrypted)),
    )?;
    eprintln!("\n2. Inspect the encrypted image");
    sh::run(sh::cmd(cli).args(["image", "inspect"]).arg(oci(&encrypted)))?;
    eprintln!("\n3. Decrypt it with the private key");
    sh::run(
        sh::cmd(cli)
            .args(["image", "decrypt", "-k", PRIVATE_KEY])
            .arg(oci(&encrypted))
            .arg(oci(&decrypted)),
    )?;

    eprintln!("\n4. Compare layers");
    let original = layers(Path::new(IMAGE))?;
    let enc = layers(&encrypted)?;
    let dec = layers(&decrypted)?;
    ensure!(
        original.len() == enc.len() && original.len() == dec.len(),
        "layer counts differ: original {}, encrypted {}, decrypted {}",
        original.len(),
        enc.len(),
        dec.len()
    );
    for (i, ((o, e), d)) in original.iter().zip(&enc).zip(&dec).enumerate() {
        ensure!(
            e.media_type.ends_with("+encrypted") && e.digest != o.digest,
            "layer {i} was not encrypted: {} {}",
            e.media_type,
            e.digest
        );
        ensure!(
            d.digest == o.digest && d.media_type == o.media_type,
            "layer {i}: decrypted {} {} != original {} {}",
            d.media_type,
            d.digest,
            o.media_type,
            o.digest
        );
        let original_bytes = blob(Path::new(IMAGE), &o.digest)?;
        let decrypted_bytes = blob(&decrypted, &d.digest)?;
        ensure!(
            original_bytes == decrypted_bytes,
            "layer {i}: decrypted blob bytes differ from the original"
        );
        eprintln!(
            "  layer {i}: {} ({} bytes) -> {} {} -> {} (byte-identical)",
            o.digest,
            original_bytes.len(),
            e.media_type,
            e.digest,
            d.digest
        );
    }
    eprintln!(
        "\ndemo: encrypted, inspected and decrypted {} layers; all match",
        original.len()
    );
    Ok(())
}

fn target_dir() -> Result<PathBuf> {
    let json = sh::read(sh::cargo().args(["metadata", "--no-deps", "--format-version", "1"]))?;
    let metadata: Value = serde_json::from_str(&json).context("parsing `cargo metadata`")?;
    metadata
        .get("target_directory")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .context("`cargo metadata` has no target_directory")
}

struct Layer {
    media_type: String,
    digest: String,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        bail!("malformed digest {digest:?}");
    };
    Ok(layout.join("blobs").join(algorithm).join(hex))
}

fn blob(layout: &Path, digest: &str) -> Result<Vec<u8>> {
    let path = blob_path(layout, digest)?;
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// The layers of the manifest tagged [`TAG`] in the OCI layout at `layout`.
fn layers(layout: &Path) -> Result<Vec<Layer>> {
    let index = read_json(&layout.join("index.json"))?;
    let manifests = index
        .get("manifests")
        .and_then(Value::as_array)
        .with_context(|| format!("{}: index.json has no manifests", layout.display()))?;
    let descriptor = manifests
        .iter()
        .find(|m| {
            m.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                .and_then(Value::as_str)
                == Some(TAG)
        })
        .with_context(|| format!("{}: no manifest tagged {TAG:?}", layout.display()))?;
    let digest = descriptor
        .get("digest")
        .and_then(Value::as_str)
        .context("manifest descriptor without digest")?;
    let manifest = read_json(&blob_path(layout, digest)?)?;
    manifest
        .get("layers")
        .and_then(Value::as_array)
        .with_context(|| format!("{}: manifest {digest} has no layers", layout.display()))?
        .iter()
        .map(|l| {
            let field = |name: &str| {
                l.get(name)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .with_context(|| format!("layer descriptor without {name}"))
            };
            Ok(Layer {
                media_type: field("mediaType")?,
                digest: field("digest")?,
            })
        })
        .collect()
}
