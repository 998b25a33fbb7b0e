//! The decrypting reader over arbitrary ciphertext and options: it must end in Ok or Err,
//! never panic; a stream we encrypted must decrypt to its plaintext, and the same stream
//! with one byte changed must fail authentication without releasing the held-back tail.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use ocicrypt_blockcipher::{DecryptReader, EncryptReader, HOLD_BACK, LayerKey, Nonce};
use ocicrypt_spec::options::{PrivateOptions, PublicOptions};

fn read_all(mut r: impl Read, chunk: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = vec![0; chunk.max(1)];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

fuzz_target!(|input: (u8, Vec<u8>, Vec<u8>, Vec<u8>)| {
    let (mode, opts_bytes, hmac, data) = input;
    let chunk = usize::from(mode % 64) * 97 + 1;

    // Arbitrary options and ciphertext.
    let mut public = PublicOptions::new(hmac);
    let private = PrivateOptions::from_json(&opts_bytes).unwrap_or_default();
    if mode & 1 == 1 {
        if let Ok(p) = PublicOptions::from_json(&opts_bytes) {
            public = p;
        }
    }
    if let Ok(r) = DecryptReader::new(&data[..], &public, &private) {
        let _ = read_all(r, chunk);
    }

    // Our own stream round-trips, and a changed byte is caught.
    let key = LayerKey::from_bytes(&[7; 32]).expect("32 bytes");
    let nonce = Nonce::from_bytes(&[9; 16]).expect("16 bytes");
    let enc = EncryptReader::with_key(&data[..], key, nonce)
        .expect("encrypter")
        .compute_plaintext_digest(true);
    let mut enc = enc;
    let mut ct = Vec::new();
    enc.read_to_end(&mut ct)
        .expect("encrypting a slice cannot fail");
    let done = enc.finalize().expect("read to the end");
    let (pt, ok) = read_all(
        DecryptReader::new(&ct[..], &done.public, &done.private).expect("own options are valid"),
        chunk,
    );
    assert!(ok);
    assert_eq!(pt, data);
    if !ct.is_empty() {
        let i = usize::from(mode) % ct.len();
        ct[i] ^= 0x80;
        let (pt, ok) = read_all(
            DecryptReader::new(&ct[..], &done.public, &done.private).expect("valid options"),
            chunk,
        );
        assert!(!ok, "a changed byte must fail authentication");
        assert!(pt.len() + HOLD_BACK.min(data.len()) <= data.len());
    }
});
