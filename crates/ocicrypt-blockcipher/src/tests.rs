//! Round trips, known answers and every failure path of the two readers.

use std::io::{self, Read};

use ocicrypt_spec::options::{AES_256_CTR_HMAC_SHA256, CipherOptions, NONCE};
use ocicrypt_spec::secret::SecretBytes;
use openssl::symm::{Cipher, encrypt};
use ring::digest::{SHA256, SHA512, digest as hash};
use ring::hmac;

use super::*;

/// A mebibyte.
pub(crate) const MIB: usize = 1024 * 1024;

/// Deterministic pseudo-random test data (xorshift64).
pub(crate) fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A layer key of `KEY_LEN` bytes `b`.
pub(crate) fn key(b: u8) -> LayerKey {
    LayerKey::from_bytes(&[b; KEY_LEN]).unwrap()
}

/// A nonce of `NONCE_LEN` bytes `b`.
pub(crate) fn nonce(b: u8) -> Nonce {
    Nonce::from_bytes(&[b; NONCE_LEN]).unwrap()
}

fn sha256(d: &[u8]) -> String {
    digest::format(&hash(&SHA256, d))
}

/// An inner reader that hands out at most `max` bytes per call and answers every other call
/// with `Interrupted`.
struct Trickle<R> {
    inner: R,
    max: usize,
    interrupt: bool,
}

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(self.max);
        self.inner.read(&mut buf[..n])
    }
}

fn trickle(d: &[u8], max: usize) -> Trickle<&[u8]> {
    Trickle {
        inner: d,
        max,
        interrupt: false,
    }
}

/// Reads until `Ok(0)` or an error with buffers of `buf_len` bytes; returns everything
/// released and the error, if any.
fn drain(r: &mut impl Read, buf_len: usize) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::new();
    let mut buf = vec![0; buf_len];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => {
                assert!(n <= buf_len);
                out.extend_from_slice(&buf[..n]);
            }
            Err(e) => return (out, Some(e)),
        }
    }
}

fn reference_ciphertext(key: &LayerKey, nonce: &Nonce, plain: &[u8]) -> Vec<u8> {
    encrypt(
        Cipher::aes_256_ctr(),
        key.expose(),
        Some(nonce.as_bytes()),
        plain,
    )
    .unwrap()
}

fn reference_hmac(key: &LayerKey, ciphertext: &[u8]) -> Vec<u8> {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
    hmac::sign(&k, ciphertext).as_ref().to_vec()
}

/// Encrypts `plain` with a fixed key and nonce and a plaintext digest.
fn seal(plain: &[u8]) -> (Vec<u8>, Finalized) {
    let mut enc = EncryptReader::with_key(plain, key(1), nonce(2))
        .unwrap()
        .compute_plaintext_digest(true);
    let (ct, err) = drain(&mut enc, 64 * 1024);
    assert!(err.is_none());
    (ct, enc.finalize().unwrap())
}

fn auth_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
        && matches!(Error::from_io(e), Some(Error::Authentication))
}

const LENGTHS: &[usize] = &[
    0,
    1,
    15,
    16,
    17,
    HOLD_BACK - 1,
    HOLD_BACK,
    HOLD_BACK + 1,
    CHUNK - 1,
    CHUNK + HOLD_BACK + 1,
    3 * MIB + 5,
];

#[test]
fn round_trips() {
    for (i, &len) in LENGTHS.iter().enumerate() {
        let plain = data(len, i as u64);
        let (k, n) = (key(i as u8), nonce(0xf0 | i as u8));
        let want_ct = reference_ciphertext(&k, &n, &plain);
        let want_mac = reference_hmac(&k, &want_ct);
        for buf_len in [1, 7, 4096, 2 * CHUNK] {
            for inner_max in [usize::MAX, 1] {
                if inner_max == 1 && len > CHUNK {
                    continue; // Byte-at-a-time is covered by the shorter lengths.
                }
                let what = format!("len {len}, buffer {buf_len}, inner max {inner_max}");
                let mut enc = EncryptReader::with_key(trickle(&plain, inner_max), k.clone(), n)
                    .unwrap()
                    .compute_plaintext_digest(true);
                let (ct, err) = drain(&mut enc, buf_len);
                assert!(err.is_none(), "{what}: {err:?}");
                assert!(ct == want_ct, "{what}: ciphertext differs from OpenSSL's");
                assert_eq!(enc.bytes_read(), len as u64, "{what}");
                let done = enc.finalize().unwrap();
                assert_eq!(done.public.hmac, want_mac, "{what}");
                assert_eq!(done.size, len as u64, "{what}");
                assert_eq!(done.private.digest, sha256(&plain), "{what}");

                let mut dec =
                    DecryptReader::new(trickle(&ct, inner_max), &done.public, &done.private)
                        .unwrap();
                let (pt, err) = drain(&mut dec, buf_len);
                assert!(err.is_none(), "{what}: {err:?}");
                assert!(pt == plain, "{what}: plaintext differs");
                assert_eq!(dec.bytes_read(), len as u64, "{what}");
                assert_eq!(dec.verified_digest(), Some(sha256(&plain).as_str()));
                // Reads after the end keep returning 0.
                assert_eq!(dec.read(&mut [0; 8]).unwrap(), 0);
            }
        }
    }
}

#[test]
fn single_threaded_and_parallel_agree() {
    let plain = data(3 * MIB + 5, 77);
    let mut outputs = Vec::new();
    for parallel in [true, false] {
        let mut enc = EncryptReader::with_key(&plain[..], key(3), nonce(4))
            .unwrap()
            .compute_plaintext_digest(true)
            .parallel(parallel);
        let (ct, err) = drain(&mut enc, 100_000);
        assert!(err.is_none());
        let done = enc.finalize().unwrap();
        for dec_parallel in [true, false] {
            let mut dec = DecryptReader::new(&ct[..], &done.public, &done.private)
                .unwrap()
                .parallel(dec_parallel);
            let (pt, err) = drain(&mut dec, 70_000);
            assert!(err.is_none());
            assert!(pt == plain);
        }
        outputs.push((ct, done.public.hmac, done.private.digest));
    }
    assert!(outputs[0] == outputs[1]);
    assert_eq!(outputs[0].1, reference_hmac(&key(3), &outputs[0].0));
}

/// Long streams through the pipelines with inner readers and callers of awkward sizes
/// (the switch to the pipeline happens wherever the first MiB ends).
#[test]
fn pipelines_with_odd_read_sizes() {
    let plain = data(2 * MIB + 12_345, 5);
    let (k, n) = (key(6), nonce(7));
    let want_ct = reference_ciphertext(&k, &n, &plain);
    for (inner_max, buf_len) in [
        (100_000, 7),
        (100_000, 70_000),
        (4_000, 300_000),
        (CHUNK + 1, 4095),
    ] {
        let what = format!("inner max {inner_max}, buffer {buf_len}");
        let mut enc = EncryptReader::with_key(trickle(&plain, inner_max), k.clone(), n)
            .unwrap()
            .compute_plaintext_digest(true)
            .parallel(true);
        let (ct, err) = drain(&mut enc, buf_len);
        assert!(err.is_none(), "{what}: {err:?}");
        assert!(ct == want_ct, "{what}: ciphertext differs");
        let done = enc.finalize().unwrap();
        assert_eq!(done.private.digest, sha256(&plain), "{what}");
        assert_eq!(done.public.hmac, reference_hmac(&k, &ct), "{what}");
        let mut dec = DecryptReader::new(trickle(&ct, inner_max), &done.public, &done.private)
            .unwrap()
            .parallel(true);
        let (pt, err) = drain(&mut dec, buf_len);
        assert!(err.is_none(), "{what}: {err:?}");
        assert!(pt == plain, "{what}: plaintext differs");
    }
}

#[test]
fn finalized_options_have_gos_shape() {
    let k = key(9);
    let mut enc = EncryptReader::with_key(&b"abc"[..], k.clone(), nonce(8)).unwrap();
    assert!(drain(&mut enc, 10).1.is_none());
    let done = enc.finalize().unwrap();
    assert_eq!(done.public.cipher, AES_256_CTR_HMAC_SHA256);
    assert_eq!(done.public.hmac.len(), HMAC_LEN);
    assert!(done.public.cipher_options.is_empty());
    assert_eq!(done.private.symkey.expose(), k.expose());
    assert_eq!(done.private.digest, "", "digest is off by default");
    let mut want = CipherOptions::new();
    want.insert(NONCE.to_owned(), vec![8; NONCE_LEN]);
    assert_eq!(done.private.cipher_options, want);
    // And it survives Go's JSON.
    let public = PublicOptions::from_json(&done.public.to_json()).unwrap();
    let private = PrivateOptions::from_json(done.private.to_json().expose()).unwrap();
    let mut dec = DecryptReader::new(&[0x47, 0x19, 0xc4][..], &public, &private).unwrap();
    let _ = drain(&mut dec, 10);
}

#[test]
fn random_keys_and_nonces_differ() {
    let plain = data(100, 1);
    let mut a = EncryptReader::new(&plain[..]).unwrap();
    let mut b = EncryptReader::new(&plain[..]).unwrap();
    let (ca, cb) = (drain(&mut a, 100).0, drain(&mut b, 100).0);
    assert_ne!(ca, cb);
    let (fa, fb) = (a.finalize().unwrap(), b.finalize().unwrap());
    assert_ne!(fa.private.symkey, fb.private.symkey);
    assert_ne!(fa.private.cipher_options, fb.private.cipher_options);
    let mut dec = DecryptReader::new(&ca[..], &fa.public, &fa.private).unwrap();
    assert_eq!(drain(&mut dec, 7).0, plain);
}

/// Known answer from the OpenSSL command line, with the counter wrapping from ff..ff to
/// 00..00 after the first block. Produced by:
///
/// ```text
/// K=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
/// IV=ffffffffffffffffffffffffffffffff
/// printf 'The quick brown fox jumps over the lazy dog; counter wraps here!!' > pt.bin
/// openssl enc -aes-256-ctr -K $K -iv $IV -in pt.bin -out ct.bin && xxd -p ct.bin
/// openssl dgst -sha256 -mac HMAC -macopt hexkey:$K ct.bin
/// sha256sum pt.bin
/// ```
/// (OpenSSL 3.0.19.)
#[test]
fn known_answer_from_openssl_cli() {
    let k = LayerKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap();
    let n = nonce(0xff);
    let plain = b"The quick brown fox jumps over the lazy dog; counter wraps here!!";
    let ct = hex(concat!(
        "bdf1813d3dd219b938a7730932f839ce94ff7896403cf2a0dad3f51cb85c57f4",
        "983856c22bc3e6c5c299fc0a68a1594860c8d0ac955bf1dc78db895d7d5ef4b8f3"
    ));
    let mac = hex("a5535027a15dc5a7560cb3d136a2ae9401b5d1f7f8b49eb514514e4fa8a2ad75");
    let sha = "sha256:0dd97c42012a64cc12524dc4f6e27ecbd5cc4c8ce489a58cd8fdfccaacd971bc";

    for buf_len in [1, 5, 16, 4096] {
        let mut enc = EncryptReader::with_key(&plain[..], k.clone(), n)
            .unwrap()
            .compute_plaintext_digest(true);
        let (got, err) = drain(&mut enc, buf_len);
        assert!(err.is_none());
        assert_eq!(got, ct, "buffer {buf_len}");
        let done = enc.finalize().unwrap();
        assert_eq!(done.public.hmac, mac);
        assert_eq!(done.private.digest, sha);
    }
    let private = PrivateOptions {
        symkey: SecretBytes::copy_from(k.expose()),
        digest: sha.to_owned(),
        cipher_options: [(NONCE.to_owned(), vec![0xff; 16])].into(),
    };
    let mut dec = DecryptReader::new(&ct[..], &PublicOptions::new(mac), &private).unwrap();
    assert_eq!(drain(&mut dec, 3).0, plain);
    assert_eq!(dec.verified_digest(), Some(sha));
}

/// The keystream is AES-256(K, counter) for the counter blocks ff..ff, 00..00, 00..01: the
/// whole 128 bits are one big-endian counter, as in Go's `cipher.NewCTR`. Produced by:
///
/// ```text
/// head -c 48 /dev/zero | openssl enc -aes-256-ctr -K $K -iv $IV | xxd -p
/// printf ffffffffffffffffffffffffffffffff000000000000000000000000000000000000000000000000\
///        00000000000000000001 | xxd -r -p | openssl enc -aes-256-ecb -K $K -nopad | xxd -p
/// ```
/// (both print the same bytes; K and IV as above).
#[test]
fn counter_wraps_as_128_bit_big_endian() {
    let k = LayerKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap();
    let zeros = [0u8; 48];
    let mut enc = EncryptReader::with_key(&zeros[..], k, nonce(0xff)).unwrap();
    let (keystream, _) = drain(&mut enc, 4096);
    assert_eq!(
        keystream,
        hex(concat!(
            "e999e41d4ca770da5387117b5d8f57ee",
            "f29000b62a499fd0a9f39a6add2e7780",
            "f05d76ae4ab99fe5a6f69b3148c2363d"
        ))
    );
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Go's `blockcipher_aes_ctr_test.go`: this key and data round-trip, and a wrong key fails.
#[test]
fn go_test_vectors() {
    let go_key = LayerKey::from_bytes(b"01234567890123456789012345678912").unwrap();
    let plain = b"this is some data";
    let mut enc = EncryptReader::with_key(&plain[..], go_key, Nonce::generate().unwrap()).unwrap();
    let (ct, _) = drain(&mut enc, 1024);
    assert_eq!(ct.len(), plain.len());
    let done = enc.finalize().unwrap();
    let mut dec = DecryptReader::new(&ct[..], &done.public, &done.private).unwrap();
    assert_eq!(drain(&mut dec, 1024).0, plain);

    let mut wrong = done.private.clone();
    wrong.symkey = SecretBytes::copy_from(b"98765432109876543210987654321098");
    let mut dec = DecryptReader::new(&ct[..], &done.public, &wrong).unwrap();
    let (released, err) = drain(&mut dec, 1024);
    assert!(released.is_empty());
    assert!(auth_error(&err.unwrap()));
    // Go's short key (6 bytes) is refused up front.
    wrong.symkey = SecretBytes::copy_from(b"123456");
    assert!(matches!(
        DecryptReader::new(&ct[..], &done.public, &wrong),
        Err(Error::InvalidKeyLength { len: 6 })
    ));
}

/// Runs `ciphertext` through a decrypter; expects `check` on the error, at most
/// `fed - HOLD_BACK` bytes released (all of them a prefix of `plain` if `prefix`), and the
/// failure to be sticky.
fn expect_failure(
    ciphertext: &[u8],
    public: &PublicOptions,
    private: &PrivateOptions,
    plain: &[u8],
    prefix: bool,
    check: &dyn Fn(&io::Error) -> bool,
) {
    // (Byte-sized reads of long streams are slow in debug builds and test nothing new.)
    let buffers: &[usize] = if ciphertext.len() > MIB {
        &[4096, 2 * CHUNK]
    } else {
        &[1, 4096, 2 * CHUNK]
    };
    for &buf_len in buffers {
        let mut dec = DecryptReader::new(ciphertext, public, private).unwrap();
        let (released, err) = drain(&mut dec, buf_len);
        let err = err.expect("decryption must fail");
        assert!(check(&err), "buffer {buf_len}: {err:?}");
        assert!(
            released.len() <= ciphertext.len().saturating_sub(HOLD_BACK),
            "buffer {buf_len}: released {} of {} bytes",
            released.len(),
            ciphertext.len()
        );
        if prefix {
            // (An extended stream may release some garbage past the end of `plain`.)
            let common = released.len().min(plain.len());
            assert!(
                released[..common] == plain[..common],
                "released bytes are not the plaintext"
            );
        }
        assert_eq!(dec.verified_digest(), None);
        for _ in 0..3 {
            let again = dec.read(&mut [0; 100]).unwrap_err();
            assert!(check(&again), "not sticky: {again:?}");
            let again = dec.read(&mut []).unwrap_err();
            assert!(check(&again), "not sticky for empty reads: {again:?}");
        }
    }
}

#[test]
fn tampering_fails_authentication() {
    // The last length is long enough for the HMAC to move to a helper thread.
    for len in [100, 3 * HOLD_BACK + 123, CHUNK + 77, 2 * MIB + 333] {
        let plain = data(len, len as u64);
        let (ct, done) = seal(&plain);
        let (public, private) = (&done.public, &done.private);
        for pos in [0, len / 2, len - 1] {
            let mut bad = ct.clone();
            bad[pos] ^= 0x01;
            expect_failure(&bad, public, private, &plain, false, &auth_error);
        }
        for cut in [1, 17, HOLD_BACK + 5] {
            let short = &ct[..len.saturating_sub(cut)];
            expect_failure(short, public, private, &plain, true, &auth_error);
        }
        let mut long = ct.clone();
        long.push(0);
        expect_failure(&long, public, private, &plain, true, &auth_error);
        long.extend_from_slice(&data(HOLD_BACK, 1));
        expect_failure(&long, public, private, &plain, true, &auth_error);

        let mut bad_mac = public.clone();
        bad_mac.hmac[31] ^= 0x80;
        expect_failure(&ct, &bad_mac, private, &plain, true, &auth_error);

        let mut wrong_key = private.clone();
        wrong_key.symkey = SecretBytes::copy_from(&[0x55; 32]);
        expect_failure(&ct, public, &wrong_key, &plain, false, &auth_error);
        // Same key and MAC, no digest: still an authentication failure.
        wrong_key.digest.clear();
        expect_failure(&ct, public, &wrong_key, &plain, false, &auth_error);
    }
}

/// The format does not authenticate the nonce: a wrong nonce passes the HMAC and is caught
/// only by the plaintext digest.
#[test]
fn wrong_nonce_is_caught_by_the_digest_only() {
    let plain = data(3 * HOLD_BACK, 5);
    let (ct, done) = seal(&plain);
    let mut wrong = done.private.clone();
    wrong.cipher_options.insert(NONCE.to_owned(), vec![3; 16]);
    let mismatch = |e: &io::Error| {
        e.kind() == io::ErrorKind::InvalidData
            && matches!(Error::from_io(e), Some(Error::DigestMismatch { .. }))
    };
    expect_failure(&ct, &done.public, &wrong, &plain, false, &mismatch);

    wrong.digest.clear();
    let mut dec = DecryptReader::new(&ct[..], &done.public, &wrong).unwrap();
    let (garbage, err) = drain(&mut dec, 4096);
    assert!(err.is_none());
    assert_eq!(garbage.len(), plain.len());
    assert_ne!(garbage, plain);
}

#[test]
fn digest_mismatch() {
    let plain = data(2 * HOLD_BACK + 1, 6);
    let (ct, done) = seal(&plain);
    let mut private = done.private.clone();
    private.digest = sha256(b"something else");
    let expected = private.digest.clone();
    let actual = sha256(&plain);
    let check = |e: &io::Error| {
        e.kind() == io::ErrorKind::InvalidData
            && matches!(Error::from_io(e),
                Some(Error::DigestMismatch { expected: x, actual: a }) if *x == expected && *a == actual)
    };
    expect_failure(&ct, &done.public, &private, &plain, true, &check);
}

#[test]
fn sha512_digests_are_checked() {
    let plain = data(5000, 7);
    let (ct, done) = seal(&plain);
    let sha512 = digest::format(&hash(&SHA512, &plain));
    let mut private = done.private.clone();
    private.digest = sha512.clone();
    let mut dec = DecryptReader::new(&ct[..], &done.public, &private).unwrap();
    assert_eq!(drain(&mut dec, 999).0, plain);
    assert_eq!(dec.verified_digest(), Some(sha512.as_str()));

    private.digest = format!("sha512:{}", "0".repeat(128));
    let mismatch = |e: &io::Error| matches!(Error::from_io(e), Some(Error::DigestMismatch { .. }));
    expect_failure(&ct, &done.public, &private, &plain, true, &mismatch);
}

#[test]
fn no_expected_digest_still_reports_sha256() {
    let plain = data(1234, 8);
    let (ct, done) = seal(&plain);
    let mut private = done.private.clone();
    private.digest.clear();
    let mut dec = DecryptReader::new(&ct[..], &done.public, &private).unwrap();
    assert_eq!(dec.verified_digest(), None);
    let mut first = [0; 10];
    assert_eq!(dec.read(&mut first).unwrap(), 10);
    // A stream shorter than HOLD_BACK is released only once it has been fully verified.
    assert_eq!(dec.bytes_read(), 1234);
    assert_eq!(dec.verified_digest(), Some(sha256(&plain).as_str()));
    let (rest, err) = drain(&mut dec, 100);
    assert!(err.is_none());
    assert_eq!([&first[..], &rest].concat(), plain);
}

#[test]
fn constructor_validation() {
    let (ct, done) = seal(b"hello");
    let new = |public: &PublicOptions, private: &PrivateOptions| {
        DecryptReader::new(&ct[..], public, private).map(|_| ())
    };
    let (public, private) = (&done.public, &done.private);
    assert!(new(public, private).is_ok());

    let mut p = public.clone();
    p.cipher.clear();
    assert!(matches!(new(&p, private), Err(Error::NoCipher)));
    p.cipher = "AES_128_CTR_HMAC_SHA256".to_owned();
    assert!(matches!(new(&p, private),
        Err(Error::UnsupportedCipher { cipher }) if cipher == "AES_128_CTR_HMAC_SHA256"));

    let mut p = public.clone();
    p.hmac.clear();
    assert!(matches!(new(&p, private), Err(Error::MissingHmac)));
    p.hmac = vec![1; 10]; // Go's "bogus HMAC" test.
    assert!(matches!(
        new(&p, private),
        Err(Error::InvalidHmacLength { len: 10 })
    ));
    p.hmac = vec![1; 33];
    assert!(matches!(
        new(&p, private),
        Err(Error::InvalidHmacLength { len: 33 })
    ));

    let mut q = private.clone();
    q.symkey = SecretBytes::copy_from(&[1; 16]);
    assert!(matches!(
        new(public, &q),
        Err(Error::InvalidKeyLength { len: 16 })
    ));
    q.symkey = SecretBytes::default();
    assert!(matches!(
        new(public, &q),
        Err(Error::InvalidKeyLength { len: 0 })
    ));

    let mut q = private.clone();
    q.cipher_options.clear();
    assert!(matches!(new(public, &q), Err(Error::MissingNonce)));
    q.cipher_options.insert(NONCE.to_owned(), vec![0; 12]);
    assert!(matches!(
        new(public, &q),
        Err(Error::InvalidNonceLength { len: 12 })
    ));
    // A nonce in the public options wins over the private one, even a bad one.
    let mut p = public.clone();
    p.cipher_options.insert(NONCE.to_owned(), vec![0; 17]);
    assert!(matches!(
        new(&p, private),
        Err(Error::InvalidNonceLength { len: 17 })
    ));

    let mut q = private.clone();
    q.digest = "sha256:xyz".to_owned();
    assert!(
        matches!(new(public, &q), Err(Error::InvalidDigest { digest }) if digest == "sha256:xyz")
    );
    q.digest = "md5:d41d8cd98f00b204e9800998ecf8427e".to_owned();
    assert!(matches!(new(public, &q),
        Err(Error::UnsupportedDigestAlgorithm { algorithm }) if algorithm == "md5"));
}

#[test]
fn public_nonce_takes_precedence() {
    let plain = data(300, 9);
    let (ct, done) = seal(&plain);
    let right = done.private.cipher_options[NONCE].clone();
    // Right nonce in public, wrong in private: decrypts.
    let mut public = done.public.clone();
    public.cipher_options.insert(NONCE.to_owned(), right);
    let mut private = done.private.clone();
    private.cipher_options.insert(NONCE.to_owned(), vec![7; 16]);
    let mut dec = DecryptReader::new(&ct[..], &public, &private).unwrap();
    assert_eq!(drain(&mut dec, 64).0, plain);
    // Nonce only in public: decrypts.
    private.cipher_options.clear();
    let mut dec = DecryptReader::new(&ct[..], &public, &private).unwrap();
    assert_eq!(drain(&mut dec, 64).0, plain);
}

#[test]
fn finalize_requires_end_of_stream() {
    let plain = data(5000, 10);
    let enc = EncryptReader::new(&plain[..]).unwrap();
    assert!(matches!(enc.finalize(), Err(Error::NotFinished)));

    // Every byte read, but end of stream not yet reported.
    let mut enc = EncryptReader::new(&plain[..]).unwrap();
    let mut buf = vec![0; 5000];
    assert_eq!(enc.read(&mut buf).unwrap(), 5000);
    assert_eq!(enc.bytes_read(), 5000);
    assert!(matches!(enc.finalize(), Err(Error::NotFinished)));

    // Small buffers: the inner reader is exhausted but ciphertext is still buffered.
    let mut enc = EncryptReader::new(&plain[..]).unwrap();
    assert_eq!(enc.read(&mut [0; 10]).unwrap(), 10);
    assert_eq!(enc.bytes_read(), 5000);
    assert!(matches!(enc.finalize(), Err(Error::NotFinished)));

    let mut enc = EncryptReader::new(&plain[..]).unwrap();
    let _ = drain(&mut enc, 100);
    assert_eq!(enc.read(&mut [0; 10]).unwrap(), 0);
    assert_eq!(enc.finalize().unwrap().size, 5000);
}

#[test]
fn plaintext_digest_is_sha256_of_the_input() {
    let plain = data(CHUNK + 3, 11);
    let mut enc = EncryptReader::new(&plain[..])
        .unwrap()
        .compute_plaintext_digest(true);
    let _ = drain(&mut enc, 9000);
    assert_eq!(enc.finalize().unwrap().private.digest, sha256(&plain));
    let mut enc = EncryptReader::new(&b""[..])
        .unwrap()
        .compute_plaintext_digest(true);
    let _ = drain(&mut enc, 9000);
    assert_eq!(
        enc.finalize().unwrap().private.digest,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // Turned on then off again: no digest.
    let mut enc = EncryptReader::new(&plain[..])
        .unwrap()
        .compute_plaintext_digest(true)
        .compute_plaintext_digest(false);
    let _ = drain(&mut enc, 9000);
    assert_eq!(enc.finalize().unwrap().private.digest, "");
}

#[test]
fn plaintext_digest_requested_late() {
    let plain = data(100, 12);
    let mut enc = EncryptReader::new(&plain[..]).unwrap();
    assert_eq!(enc.read(&mut [0; 10]).unwrap(), 10);
    let mut enc = enc.compute_plaintext_digest(true);
    let _ = drain(&mut enc, 10);
    assert!(matches!(enc.finalize(), Err(Error::DigestRequestedLate)));
}

/// An inner reader that fails once, in the middle.
struct Hiccup<'a> {
    data: &'a [u8],
    failed: bool,
}

impl Read for Hiccup<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.failed && self.data.len() < 20_000 {
            self.failed = true;
            return Err(io::Error::new(io::ErrorKind::TimedOut, "hiccup"));
        }
        let n = buf.len().min(1000);
        self.data.read(&mut buf[..n])
    }
}

#[test]
fn inner_errors_pass_through_and_are_not_sticky() {
    // The long stream fails with batches in flight to the decrypting pipeline.
    for len in [30_000, 2 * MIB + 4321] {
        let plain = data(len, 13);
        let mut enc = EncryptReader::with_key(
            Hiccup {
                data: &plain,
                failed: false,
            },
            key(1),
            nonce(2),
        )
        .unwrap()
        .compute_plaintext_digest(true);
        let mut ct = Vec::new();
        let err = enc.read_to_end(&mut ct).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(Error::from_io(&err).is_none());
        enc.read_to_end(&mut ct).unwrap();
        let done = enc.finalize().unwrap();
        assert!(ct == reference_ciphertext(&key(1), &nonce(2), &plain));
        assert_eq!(done.private.digest, sha256(&plain));
        assert_eq!(done.public.hmac, reference_hmac(&key(1), &ct));

        for parallel in [true, false] {
            let mut dec = DecryptReader::new(
                Hiccup {
                    data: &ct,
                    failed: false,
                },
                &done.public,
                &done.private,
            )
            .unwrap()
            .parallel(parallel);
            let mut pt = Vec::new();
            assert_eq!(
                dec.read_to_end(&mut pt).unwrap_err().kind(),
                io::ErrorKind::TimedOut
            );
            // Everything read before the error was released before it.
            assert!(
                pt.len() + HOLD_BACK + 20_000 >= len,
                "len {len}: {}",
                pt.len()
            );
            dec.read_to_end(&mut pt).unwrap();
            assert!(pt == plain, "len {len}, parallel {parallel}");
            assert_eq!(dec.bytes_read(), len as u64);
        }
    }
}

#[test]
fn io_error_conversion() {
    let e: io::Error = Error::Authentication.into();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(matches!(Error::from_io(&e), Some(Error::Authentication)));
    let e: io::Error = Error::NotFinished.into();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(Error::from_io(&io::Error::other("x")).is_none());
    assert!(Error::from_io(&io::ErrorKind::UnexpectedEof.into()).is_none());
    // Authentication failures say nothing about which check failed.
    assert_eq!(
        Error::Authentication.to_string(),
        "layer authentication failed"
    );
}

#[test]
fn debug_output_shows_no_secrets() {
    let k = LayerKey::from_bytes(&[0xc3; 32]).unwrap();
    let enc = EncryptReader::with_key(&b""[..], k, nonce(0)).unwrap();
    let shown = format!("{enc:?}");
    assert!(shown.starts_with("EncryptReader"), "{shown}");
    assert!(
        !shown.contains("195") && !shown.to_lowercase().contains("c3"),
        "{shown}"
    );
    let mut enc = enc;
    let _ = drain(&mut enc, 10);
    let done = enc.finalize().unwrap();
    let shown = format!("{done:?}");
    assert!(!shown.contains("195, 195"), "{shown}");
    let dec = DecryptReader::new(&b""[..], &done.public, &done.private).unwrap();
    assert!(format!("{dec:?}").contains("streaming"));
}
