//! The async facade (feature `tokio`): issue 14's program on a current-thread runtime, and
//! the failures, on both runtime flavors.
#![cfg(all(feature = "tokio", feature = "jwe"))]
// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};

use ocicrypt::Descriptor;
use tokio::io::AsyncReadExt as _;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// An RSA key pair made with openssl: (public key file, private key file).
fn keys(dir: &Path, name: &str) -> (String, String) {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let public = dir.join(format!("{name}-pub.pem"));
    let private = dir.join(format!("{name}.pem"));
    std::fs::write(&public, rsa.public_key_to_pem().unwrap()).unwrap();
    std::fs::write(&private, rsa.private_key_to_pem().unwrap()).unwrap();
    (public.display().to_string(), private.display().to_string())
}

fn sha256(b: &[u8]) -> String {
    let hex: String = openssl::sha::sha256(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// A 3 MiB layer file and its descriptor.
fn layer(dir: &Path) -> (PathBuf, Vec<u8>, Descriptor) {
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let input = dir.join("layer.tar");
    std::fs::write(&input, &data).unwrap();
    let desc = Descriptor::new(
        oci_spec::image::MediaType::ImageLayer,
        data.len() as u64,
        sha256(&data).parse::<oci_spec::image::Digest>().unwrap(),
    );
    (input, data, desc)
}

/// The program of issue 14, as written there.
async fn program(public: &str, private: &str, input: &Path, desc: &Descriptor) -> Res<Vec<u8>> {
    let private = private.to_owned();
    let ec = ocicrypt::helpers::encrypt_config([format!("jwe:{public}")], Vec::<String>::new())?;
    let dc = ocicrypt::helpers::decrypt_config([private.clone()])?;
    let mut enc =
        ocicrypt::encrypt_layer_async(&ec, tokio::fs::File::open(input).await?, desc).await?;
    let mut ciphertext = Vec::new();
    enc.read_to_end(&mut ciphertext).await?;
    let encrypted: Descriptor = enc.finalize().await?;
    let mut dec = ocicrypt::decrypt_layer_async(&dc, ciphertext.as_slice(), &encrypted).await?;
    // Checks beyond the program: the descriptor describes the blob, and the plaintext
    // comes back with the original descriptor.
    assert_eq!(
        encrypted.media_type().to_string(),
        "application/vnd.oci.image.layer.v1.tar+encrypted"
    );
    assert_eq!(encrypted.digest().to_string(), sha256(&ciphertext));
    assert_eq!(encrypted.size(), ciphertext.len() as u64);
    let mut plain = Vec::new();
    dec.read_to_end(&mut plain).await?;
    let back = dec.descriptor().expect("verified at the end");
    assert_eq!(back.digest(), desc.digest());
    assert_eq!(back.media_type(), desc.media_type());
    Ok(plain)
}

#[tokio::test(flavor = "current_thread")]
async fn the_issue_program_on_a_current_thread_runtime() -> Res {
    let dir = tempfile::tempdir()?;
    let (public, private) = keys(dir.path(), "a");
    let (input, data, desc) = layer(dir.path());
    assert_eq!(program(&public, &private, &input, &desc).await?, data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_a_multi_thread_runtime() -> Res {
    let dir = tempfile::tempdir()?;
    let (public, private) = keys(dir.path(), "a");
    let (_, other_private) = keys(dir.path(), "b");
    let (_, data, desc) = layer(dir.path());
    let ec = ocicrypt::helpers::encrypt_config([format!("jwe:{public}")], Vec::<String>::new())?;
    let mut enc = ocicrypt::encrypt_layer_async(&ec, data.as_slice(), &desc).await?;
    let mut ciphertext = Vec::new();
    enc.read_to_end(&mut ciphertext).await?;
    let encrypted = enc.finalize().await?;

    // A key that does not open it.
    let wrong = ocicrypt::helpers::decrypt_config([other_private.clone()])?;
    let err = ocicrypt::decrypt_layer_async(&wrong, ciphertext.as_slice(), &encrypted)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ocicrypt::Error::NoKeyUnwrapped { .. }),
        "{err}"
    );

    // Tampered ciphertext: the final read fails.
    let dc = ocicrypt::helpers::decrypt_config([private.clone()])?;
    let mut tampered = ciphertext.clone();
    tampered[1000] ^= 1;
    let mut dec = ocicrypt::decrypt_layer_async(&dc, tampered.as_slice(), &encrypted).await?;
    let mut out = Vec::new();
    assert!(dec.read_to_end(&mut out).await.is_err());
    assert!(dec.descriptor().is_none());

    // A descriptor whose digest the data does not have.
    let mut lying = desc.clone();
    lying.set_digest(sha256(b"other").parse()?);
    let mut enc = ocicrypt::encrypt_layer_async(&ec, data.as_slice(), &lying).await?;
    enc.read_to_end(&mut Vec::new()).await?;
    let err = enc.finalize().await.unwrap_err();
    assert!(
        matches!(err, ocicrypt::Error::DigestMismatch { .. }),
        "{err}"
    );

    // Already encrypted: recipients are added, the blob passes through unchanged, and the
    // new key opens it.
    let (other_public, _) = keys(dir.path(), "c");
    let add =
        ocicrypt::helpers::encrypt_config([format!("jwe:{other_public}")], [private.clone()])?;
    let mut enc = ocicrypt::encrypt_layer_async(&add, ciphertext.as_slice(), &encrypted).await?;
    let mut same = Vec::new();
    enc.read_to_end(&mut same).await?;
    assert_eq!(same, ciphertext);
    let two = enc.finalize().await?;
    assert_eq!(two.digest(), encrypted.digest());
    let c_key = dir.path().join("c.pem").display().to_string();
    let dc_c = ocicrypt::helpers::decrypt_config([c_key])?;
    let mut dec = ocicrypt::decrypt_layer_async(&dc_c, ciphertext.as_slice(), &two).await?;
    let mut plain = Vec::new();
    dec.read_to_end(&mut plain).await?;
    assert_eq!(plain, data);
    Ok(())
}
