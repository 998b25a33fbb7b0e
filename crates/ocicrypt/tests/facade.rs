//! The facade's logic (scheme routing, adding recipients, digests, errors), exercised with
//! a test scheme so that it runs with any feature set, plus JWE round trips when enabled.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::Read;
use std::sync::Arc;

use ocicrypt::keywrap::{self, KeyWrapper};
use ocicrypt::oci_spec::image::{Descriptor, Digest, MediaType, Sha256Digest};
use ocicrypt::spec::annotations::{KEYS_PREFIX, PUBOPTS};
use ocicrypt::{DecryptConfig, EncryptConfig, Encrypted, Error, Ocicrypt, Registry, SecretBytes};

/// A stand-in key provider `provider.test`: its "wrapping" XORs with a one-byte key taken
/// from the provider arguments. It is not cryptography; it only routes bytes so that the
/// facade's bookkeeping can be checked without any real scheme.
#[derive(Debug)]
struct TestScheme;

fn xor(data: &[u8], k: u8) -> Vec<u8> {
    data.iter().map(|b| b ^ k).collect()
}

impl KeyWrapper for TestScheme {
    fn scheme(&self) -> &str {
        "provider.test"
    }
    fn wrap_keys(
        &self,
        ec: &EncryptConfig,
        opts: &[u8],
    ) -> Result<Option<Vec<u8>>, keywrap::Error> {
        let Some(args) = ec.key_providers.get("test") else {
            return Ok(None);
        };
        let k = args.first().and_then(|a| a.first()).copied().unwrap_or(0);
        let mut blob = vec![k];
        blob.extend(xor(opts, k));
        Ok(Some(blob))
    }
    fn unwrap_key(&self, dc: &DecryptConfig, blob: &[u8]) -> Result<SecretBytes, keywrap::Error> {
        let (&k, rest) = blob.split_first().ok_or(keywrap::Error::MalformedBlob {
            scheme: "provider.test".into(),
            reason: "empty".into(),
        })?;
        let keys = dc.key_providers.get("test").cloned().unwrap_or_default();
        if keys.iter().any(|a| a.first() == Some(&k)) {
            Ok(SecretBytes::new(xor(rest, k)))
        } else {
            Err(keywrap::Error::NoMatchingKey {
                scheme: "provider.test".into(),
                causes: vec![keywrap::Cause::new(keywrap::CauseKind::Refused(
                    keywrap::Failure::new("wrong key"),
                ))],
            })
        }
    }
    fn has_possible_keys(&self, dc: &DecryptConfig) -> bool {
        dc.key_providers.contains_key("test")
    }
    fn has_recipients(&self, ec: &EncryptConfig) -> bool {
        ec.key_providers.contains_key("test")
    }
}

fn ctx() -> Ocicrypt {
    Ocicrypt::new(Registry::default().with(Arc::new(TestScheme))).unwrap()
}

fn sha256(data: &[u8]) -> Sha256Digest {
    let hex: String = openssl::sha::sha256(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex.parse().unwrap()
}

fn plain_desc(data: &[u8]) -> Descriptor {
    Descriptor::new(MediaType::ImageLayerGzip, data.len() as u64, sha256(data))
}

fn ec_for(key: u8) -> EncryptConfig {
    let mut ec = EncryptConfig::default();
    ec.key_providers.insert("test".into(), vec![vec![key]]);
    ec
}

fn dc_for(keys: &[u8]) -> DecryptConfig {
    let mut dc = DecryptConfig::default();
    dc.key_providers
        .insert("test".into(), keys.iter().map(|k| vec![*k]).collect());
    dc
}

fn encrypt(ctx: &Ocicrypt, ec: &EncryptConfig, data: &[u8]) -> (Vec<u8>, Descriptor) {
    let desc = plain_desc(data);
    let Encrypted::Stream(mut enc) = ctx.encrypt_layer(ec, data, &desc).unwrap() else {
        panic!("plain layer must give a stream")
    };
    let mut ct = Vec::new();
    enc.read_to_end(&mut ct).unwrap();
    let len = ct.len() as u64;
    let out = enc.finalize_descriptor(sha256(&ct).into(), len).unwrap();
    (ct, out)
}

fn decrypt(
    ctx: &Ocicrypt,
    dc: &DecryptConfig,
    ct: &[u8],
    desc: &Descriptor,
) -> std::io::Result<Vec<u8>> {
    let mut dec = ctx.decrypt_layer(dc, ct, desc).unwrap();
    let mut out = Vec::new();
    dec.read_to_end(&mut out)?;
    Ok(out)
}

/// `data` encrypted for key 5, and a configuration for key 9 that holds key 5 (to rewrap,
/// rotate or add recipients): the ciphertext, its descriptor and that configuration.
fn encrypted_for_5_with_9(ctx: &Ocicrypt, data: &[u8]) -> (Vec<u8>, Descriptor, EncryptConfig) {
    let (ct, desc) = encrypt(ctx, &ec_for(5), data);
    let mut ec = ec_for(9);
    ec.decrypt = dc_for(&[5]);
    (ct, desc, ec)
}

/// `err` is [`Error::InconsistentEncryption`], about a layer with key annotations if
/// `annotated`.
#[track_caller]
fn assert_inconsistent(err: &Error, annotated: bool) {
    assert!(
        matches!(err, Error::InconsistentEncryption { annotated: a, .. } if *a == annotated),
        "{err}"
    );
}

#[test]
fn round_trip_and_annotations() {
    let ctx = ctx();
    let data = b"layer data ".repeat(5000);
    let (ct, desc) = encrypt(&ctx, &ec_for(7), &data);
    assert_eq!(ct.len(), data.len());
    assert_ne!(ct, data);
    let ann = desc.annotations().clone().unwrap();
    assert!(ann.contains_key(PUBOPTS));
    assert!(ann.contains_key(&format!("{KEYS_PREFIX}provider.test")));
    assert_eq!(ann.len(), 2, "{ann:?}");
    assert_eq!(decrypt(&ctx, &dc_for(&[7]), &ct, &desc).unwrap(), data);

    let (_, private) = ctx.unwrap_options(&dc_for(&[7]), &desc).unwrap();
    assert_eq!(private.digest, plain_desc(&data).digest().to_string());
    // The encrypted descriptor names the ciphertext; decryption gives back the plain one.
    assert_eq!(desc.digest(), &Digest::from(sha256(&ct)));
    assert_eq!(desc.size(), ct.len() as u64);
    assert!(ocicrypt::descriptor::is_encrypted(&desc).unwrap());
    let mut dec = ctx.decrypt_layer(&dc_for(&[7]), &ct[..], &desc).unwrap();
    assert_eq!(dec.descriptor(), None, "nothing is verified before the end");
    std::io::copy(&mut dec, &mut std::io::sink()).unwrap();
    assert_eq!(dec.descriptor(), Some(plain_desc(&data)));
}

/// Past 1 MiB the HMAC moves to a helper thread unless `parallel(false)`: both ways give
/// the same ciphertext for the same key, and each decrypts the other's.
#[test]
fn parallel_and_single_threaded_layers_interoperate() {
    let ctx = ctx();
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 7).map(|i| (i % 253) as u8).collect();
    let desc = plain_desc(&data);
    let mut outputs = Vec::new();
    for parallel in [true, false] {
        let Encrypted::Stream(enc) = ctx.encrypt_layer(&ec_for(3), &data[..], &desc).unwrap()
        else {
            panic!("plain layer must give a stream")
        };
        let mut enc = enc.parallel(parallel);
        let mut ct = Vec::new();
        enc.read_to_end(&mut ct).unwrap();
        let len = ct.len() as u64;
        let out = enc.finalize_descriptor(sha256(&ct).into(), len).unwrap();
        outputs.push((ct, out));
    }
    for (ct, desc) in &outputs {
        for parallel in [true, false] {
            let mut dec = ctx
                .decrypt_layer(&dc_for(&[3]), &ct[..], desc)
                .unwrap()
                .parallel(parallel);
            let mut plain = Vec::new();
            dec.read_to_end(&mut plain).unwrap();
            assert!(plain == data, "parallel {parallel}");
            assert_eq!(
                dec.verified_digest(),
                Some(plain_desc(&data).digest().to_string().as_str())
            );
        }
    }
}

#[test]
fn encrypt_checks_the_descriptor_digest() {
    let ctx = ctx();
    let data = b"the real data";
    let wrong = plain_desc(b"other data");
    let wrong = Descriptor::new(
        MediaType::ImageLayerGzip,
        data.len() as u64,
        wrong.digest().clone(),
    );
    let Encrypted::Stream(mut enc) = ctx.encrypt_layer(&ec_for(1), &data[..], &wrong).unwrap()
    else {
        panic!()
    };
    std::io::copy(&mut enc, &mut std::io::sink()).unwrap();
    assert!(matches!(enc.finalize(), Err(Error::DigestMismatch { .. })));

    // Trusting the descriptor produces a layer whose decryption fails its digest check.
    let Encrypted::Stream(enc) = ctx.encrypt_layer(&ec_for(1), &data[..], &wrong).unwrap() else {
        panic!()
    };
    let mut enc = enc.trust_descriptor_digest();
    let mut ct = Vec::new();
    enc.read_to_end(&mut ct).unwrap();
    let len = ct.len() as u64;
    let desc = enc.finalize_descriptor(sha256(&ct).into(), len).unwrap();
    let err = decrypt(&ctx, &dc_for(&[1]), &ct, &desc).unwrap_err();
    let inner = ocicrypt::blockcipher::Error::from_io(&err).unwrap();
    assert!(
        matches!(inner, ocicrypt::blockcipher::Error::DigestMismatch { .. }),
        "{inner:?}"
    );
}

#[test]
fn tampered_ciphertext_fails_at_the_end() {
    let ctx = ctx();
    let data = vec![42u8; 100_000];
    let (mut ct, desc) = encrypt(&ctx, &ec_for(3), &data);
    ct[500] ^= 1;
    let err = decrypt(&ctx, &dc_for(&[3]), &ct, &desc).unwrap_err();
    let inner = ocicrypt::blockcipher::Error::from_io(&err).unwrap();
    assert!(
        matches!(inner, ocicrypt::blockcipher::Error::Authentication),
        "{inner:?}"
    );
}

#[test]
fn rewrapping_replaces_the_recipients_and_keeps_the_data() {
    let ctx = ctx();
    let data = b"a layer to rewrap";
    let (ct, desc, ec) = encrypted_for_5_with_9(&ctx, data);
    let ann = ctx.rewrap(&ec, &desc).unwrap();
    let new = ocicrypt::descriptor::rewrapped(&desc, &ann);
    assert_eq!((new.digest(), new.size()), (desc.digest(), desc.size()));
    assert_eq!(new.media_type(), desc.media_type());
    let key = format!("{KEYS_PREFIX}provider.test");
    assert_eq!(ann[&key].split(',').count(), 1, "only the new recipient");
    assert_eq!(ann[PUBOPTS], desc.annotations().as_ref().unwrap()[PUBOPTS]);
    assert_eq!(decrypt(&ctx, &dc_for(&[9]), &ct, &new).unwrap(), data);
    let err = ctx.decrypt_layer(&dc_for(&[5]), &ct[..], &new).unwrap_err();
    assert!(matches!(err, Error::NoKeyUnwrapped { .. }), "{err}");
    // A key that does not open the layer, and a plain layer.
    let mut wrong = ec_for(9);
    wrong.decrypt = dc_for(&[6]);
    assert!(ctx.rewrap(&wrong, &desc).is_err());
    let err = ctx.rewrap(&ec, &plain_desc(data)).unwrap_err();
    assert!(matches!(err, Error::NotEncrypted), "{err}");
}

#[test]
fn rotation_gives_a_new_key_a_new_blob_and_only_the_new_recipients() {
    let ctx = ctx();
    let data = b"rotate me ".repeat(300_000); // past the 1 MiB where helper threads start
    let (ct, desc, ec) = encrypted_for_5_with_9(&ctx, &data);
    let mut enc = ctx.rotate_layer(&ec, &ct[..], &desc).unwrap();
    let mut ct2 = Vec::new();
    enc.read_to_end(&mut ct2).unwrap();
    let len = ct2.len() as u64;
    let new = enc.finalize_descriptor(sha256(&ct2).into(), len).unwrap();
    assert_ne!(ct2, ct, "a fresh key and nonce");
    assert_ne!(new.digest(), desc.digest());
    assert_eq!(new.media_type(), desc.media_type());
    assert_eq!(decrypt(&ctx, &dc_for(&[9]), &ct2, &new).unwrap(), data);
    assert!(ctx.decrypt_layer(&dc_for(&[5]), &ct2[..], &new).is_err());
    // The private options keep the plaintext digest.
    let (_, private) = ctx.unwrap_options(&dc_for(&[9]), &new).unwrap();
    assert_eq!(private.digest, plain_desc(&data).digest().to_string());

    // Tampered old ciphertext: the rotation fails at the end, no descriptor.
    let mut bad = ct.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let mut enc = ctx.rotate_layer(&ec, &bad[..], &desc).unwrap();
    let mut sink = Vec::new();
    assert!(enc.read_to_end(&mut sink).is_err());
}

#[test]
fn adding_recipients_keeps_data_and_old_keys() {
    let ctx = ctx();
    let data = b"some layer";
    let (ct, desc, ec) = encrypted_for_5_with_9(&ctx, data);
    let Encrypted::RecipientsAdded(ann) = ctx.encrypt_layer(&ec, &b""[..], &desc).unwrap() else {
        panic!("an encrypted layer must get recipients added")
    };
    let key = format!("{KEYS_PREFIX}provider.test");
    assert_eq!(ann[&key].split(',').count(), 2);
    assert_eq!(ann[PUBOPTS], desc.annotations().as_ref().unwrap()[PUBOPTS]);
    let mut desc2 = desc.clone();
    desc2.set_annotations(Some(ann.into_iter().collect()));
    assert_eq!(decrypt(&ctx, &dc_for(&[5]), &ct, &desc2).unwrap(), data);
    assert_eq!(decrypt(&ctx, &dc_for(&[9]), &ct, &desc2).unwrap(), data);

    // Without a key for the existing recipients, nothing can be added.
    let err = ctx.encrypt_layer(&ec_for(9), &b""[..], &desc).unwrap_err();
    assert!(matches!(err, Error::MissingPrivateKey { .. }), "{err}");
}

#[test]
fn configuration_errors() {
    let ctx = ctx();
    let desc = plain_desc(b"x");
    let err = ctx
        .encrypt_layer(&EncryptConfig::default(), &b"x"[..], &desc)
        .unwrap_err();
    assert!(matches!(err, Error::NoRecipients), "{err}");

    let mut ec = EncryptConfig::default();
    ec.key_providers
        .insert("nosuch".into(), vec![b"Enabled".to_vec()]);
    let err = ctx.encrypt_layer(&ec, &b"x"[..], &desc).unwrap_err();
    assert!(
        matches!(&err, Error::SchemeNotAvailable { scheme } if scheme == "provider.nosuch"),
        "{err}"
    );

    let empty = Ocicrypt::new(Registry::empty()).unwrap();
    let mut ec = EncryptConfig::default();
    ec.jwe_public_keys.push(b"pk".to_vec());
    let err = empty.encrypt_layer(&ec, &b"x"[..], &desc).unwrap_err();
    assert!(
        matches!(&err, Error::SchemeNotAvailable { scheme } if scheme == "jwe"),
        "{err}"
    );
}

#[test]
fn decryption_errors() {
    let ctx = ctx();
    let data = b"abc";
    let (ct, desc) = encrypt(&ctx, &ec_for(2), data);

    let err = ctx
        .decrypt_layer(&dc_for(&[4]), &ct[..], &desc)
        .unwrap_err();
    assert!(
        matches!(&err, Error::NoKeyUnwrapped { causes } if matches!(
            causes.as_slice(),
            [keywrap::Error::NoMatchingKey { causes, .. }]
                if matches!(causes.as_slice(), [c] if matches!(c.kind, keywrap::CauseKind::Refused(_)))
        )),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "none of the private keys could be used for decryption: provider.test: no suitable key \
         found for decrypting layer key: wrong key"
    );
    let err = ctx
        .decrypt_layer(&DecryptConfig::default(), &ct[..], &desc)
        .unwrap_err();
    assert!(
        matches!(&err, Error::MissingPrivateKey { schemes } if schemes == &["provider.test"]),
        "{err}"
    );
    let err = ctx
        .decrypt_layer(&dc_for(&[2]), &ct[..], &plain_desc(data))
        .unwrap_err();
    assert!(matches!(err, Error::NotEncrypted), "{err}");

    let with = |k: &str, v: &str| {
        let mut d = desc.clone();
        let mut a = d.annotations().clone().unwrap();
        a.insert(k.to_owned(), v.to_owned());
        d.set_annotations(Some(a));
        d
    };
    let key = format!("{KEYS_PREFIX}provider.test");
    let err = ctx
        .decrypt_layer(&dc_for(&[2]), &ct[..], &with(&key, "***"))
        .unwrap_err();
    assert!(matches!(err, Error::Spec(_)), "{err}");
    let err = ctx
        .decrypt_layer(&dc_for(&[2]), &ct[..], &with(PUBOPTS, "e30="))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BlockCipher(ocicrypt::blockcipher::Error::NoCipher)
        ),
        "{err}"
    );
    let err = ctx
        .decrypt_layer(&dc_for(&[2]), &ct[..], &with(PUBOPTS, "!!"))
        .unwrap_err();
    assert!(matches!(err, Error::Spec(_)), "{err}");

    // A layer encrypted only for a scheme this registry lacks.
    let mut d = plain_desc(data);
    let mut a = std::collections::HashMap::new();
    a.insert(
        format!("{KEYS_PREFIX}provider.elsewhere"),
        "AAAA".to_owned(),
    );
    d.set_annotations(Some(a));
    // Plain media type, key annotations: neither plain nor encrypted, refused both ways.
    let err = ctx.decrypt_layer(&dc_for(&[2]), &ct[..], &d).unwrap_err();
    assert_inconsistent(&err, true);
    let mut ec = ec_for(3);
    ec.decrypt = dc_for(&[2]);
    let err = ctx.encrypt_layer(&ec, &b""[..], &d).unwrap_err();
    assert_inconsistent(&err, true);
    d.set_media_type(ocicrypt::spec::media_types::to_encrypted_type(
        d.media_type(),
    ));
    let err = ctx.decrypt_layer(&dc_for(&[2]), &ct[..], &d).unwrap_err();
    assert!(
        matches!(&err, Error::SchemeNotAvailable { scheme } if scheme == "provider.elsewhere"),
        "{err}"
    );
    // An encrypted media type without any wrapped key.
    let mut bare = plain_desc(data);
    bare.set_media_type(ocicrypt::spec::media_types::to_encrypted_type(
        bare.media_type(),
    ));
    let err = ctx.encrypt_layer(&ec, &b""[..], &bare).unwrap_err();
    assert_inconsistent(&err, false);
}

#[test]
fn registry_validation() {
    let twice = Registry::empty().with(Arc::new(TestScheme));
    let mut twice2 = twice.clone();
    twice2.others.push(Arc::new(TestScheme));
    assert!(matches!(
        Ocicrypt::new(twice2),
        Err(Error::InvalidRegistry { .. })
    ));
    let mut wrong_field = Registry::empty();
    wrong_field.pgp = Some(Arc::new(TestScheme));
    assert!(matches!(
        Ocicrypt::new(wrong_field),
        Err(Error::InvalidRegistry { .. })
    ));
    assert!(Ocicrypt::new(twice).is_ok());
}

#[test]
fn inspect_lists_schemes() {
    let ctx = ctx();
    let (_, desc) = encrypt(&ctx, &ec_for(1), b"x");
    let info = ctx.inspect(&desc).unwrap();
    assert!(info.encrypted);
    assert_eq!(info.cipher.as_deref(), Some("AES_256_CTR_HMAC_SHA256"));
    assert_eq!(info.schemes.len(), 1);
    assert_eq!(info.schemes[0].scheme, "provider.test");
    assert_eq!(
        info.schemes[0].recipients,
        vec!["[provider.test]".to_owned()]
    );
    assert!(!ctx.inspect(&plain_desc(b"x")).unwrap().encrypted);
}

#[cfg(feature = "jwe")]
mod jwe {
    use super::*;
    use ocicrypt::KeyFile;

    #[test]
    fn jwe_round_trip_with_two_schemes() {
        let ctx = ctx();
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let mut ec = ec_for(8);
        ec.jwe_public_keys.push(rsa.public_key_to_pem().unwrap());
        let data = b"jwe layer".repeat(3000);
        let (ct, desc) = encrypt(&ctx, &ec, &data);
        let ann = desc.annotations().clone().unwrap();
        assert!(ann.contains_key(ocicrypt::spec::annotations::KEYS_JWE));
        let mut dc = DecryptConfig::default();
        dc.private_keys
            .push(KeyFile::new(rsa.private_key_to_pem().unwrap()));
        assert_eq!(decrypt(&ctx, &dc, &ct, &desc).unwrap(), data);
        assert_eq!(decrypt(&ctx, &dc_for(&[8]), &ct, &desc).unwrap(), data);
    }
}
