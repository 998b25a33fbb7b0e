//! Wrap/unwrap tests. Keys, certificates and interop blobs come from `tests/data` (made by
//! `tests/data/make-fixtures.sh` with the OpenSSL CLI and Debian's skopeo 1.9.3).

use ocicrypt_keywrap::KeyFile;
use ocicrypt_keywrap::secrecy::SecretString;
use ocicrypt_spec::options::PrivateOptions;
use openssl::rsa::Rsa;

use super::*;

const OPTS: &[u8] =
    br#"{"symkey":"c2VjcmV0","digest":"sha256:00","cipheroptions":{"nonce":"bm9uY2U="}}"#;
/// What `make-fixtures.sh` encrypts with `openssl cms`.
const OPENSSL_MSG: &[u8] = br#"{"symkey":"openssl-test"}"#;
const W: Pkcs7KeyWrapper = Pkcs7KeyWrapper;

macro_rules! data {
    ($name:literal) => {
        include_bytes!(concat!("../tests/data/", $name)).as_slice()
    };
}

const KEY_2048: &[u8] = data!("rsa2048.pem");
const CERT_2048: &[u8] = data!("rsa2048-self.pem");
const KEY_4096: &[u8] = data!("rsa4096-pkcs1.der");
const CERT_4096: &[u8] = data!("rsa4096-leaf.der");
const CA_CERT: &[u8] = data!("ca.pem");

fn file(data: &[u8]) -> KeyFile {
    KeyFile::new(data.to_vec())
}

fn file_pw(data: &[u8], pw: &str) -> KeyFile {
    KeyFile::with_password(data.to_vec(), SecretString::from(pw))
}

fn wrap_for(certs: &[&[u8]]) -> Vec<u8> {
    let ec = EncryptConfig::default()
        .with_pkcs7_certificates(certs.iter().map(|c| c.to_vec()).collect());
    W.wrap_keys(&ec, OPTS).unwrap().unwrap()
}

fn unwrap_with(keys: Vec<KeyFile>, certs: &[&[u8]], blob: &[u8]) -> Result<SecretBytes, Error> {
    let dc = DecryptConfig::default()
        .with_private_keys(keys)
        .with_certificates(certs.iter().map(|c| c.to_vec()).collect());
    W.unwrap_key(&dc, blob)
}

fn causes(err: Error) -> Vec<String> {
    match err {
        Error::NoMatchingKey { causes, .. } => causes.iter().map(ToString::to_string).collect(),
        other => panic!("expected NoMatchingKey, got {other:?}"),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn two_recipients_each_key_alone_with_and_without_certificate() {
    let blob = wrap_for(&[CERT_2048, CERT_4096]);
    for (key, cert) in [(KEY_2048, CERT_2048), (KEY_4096, CERT_4096)] {
        assert_eq!(
            unwrap_with(vec![file(key)], &[], &blob).unwrap().expose(),
            OPTS
        );
        assert_eq!(
            unwrap_with(vec![file(key)], &[cert], &blob)
                .unwrap()
                .expose(),
            OPTS
        );
        // All certificates given: the one of the key's public key picks the recipient.
        let opts = unwrap_with(vec![file(key)], &[CERT_2048, CERT_4096, CA_CERT], &blob);
        assert_eq!(opts.unwrap().expose(), OPTS);
    }
    assert_eq!(W.recipients(&blob).unwrap().len(), 2);
}

#[test]
fn same_serial_different_issuer_is_told_apart() {
    // Self-signed CERT_2048 and CA-issued CERT_4096 both have serial 1.
    let blob = wrap_for(&[CERT_4096]);
    let mut recipients = W.recipients(&blob).unwrap();
    assert_eq!(recipients, vec!["issuer=CN=ocicrypt-test CA serial=01"]);
    recipients = W.recipients(&wrap_for(&[CERT_2048])).unwrap();
    assert_eq!(
        recipients,
        vec!["issuer=O=Example,CN=ocicrypt-test self-signed serial=01"]
    );
    // The CA certificate has the same key as the leaf but another issuer and serial: with
    // it, the recipient (named by the leaf) is not picked.
    let err = unwrap_with(vec![file(KEY_4096)], &[CA_CERT], &blob).unwrap_err();
    let c = causes(err);
    assert!(
        c.iter()
            .any(|c| c.contains("no recipient names its certificate")),
        "{c:?}"
    );
}

#[test]
fn certificate_of_another_key_falls_back_to_every_recipient() {
    let blob = wrap_for(&[CERT_4096]);
    let opts = unwrap_with(vec![file(KEY_4096)], &[CERT_2048], &blob).unwrap();
    assert_eq!(opts.expose(), OPTS);
}

#[test]
fn encrypted_private_keys_need_the_right_password() {
    let blob = wrap_for(&[CERT_2048]);
    for data in [
        data!("rsa2048-legacy-enc.pem"),
        data!("rsa2048-pbes2.pem"),
        data!("rsa2048-pbes2.der"),
    ] {
        let ok = unwrap_with(vec![file_pw(data, "password")], &[CERT_2048], &blob);
        assert_eq!(ok.unwrap().expose(), OPTS);
        let missing = unwrap_with(vec![file(data)], &[], &blob).unwrap_err();
        assert!(
            matches!(missing, Error::MissingPassword { .. }),
            "{missing:?}"
        );
        assert!(missing.is_password_error());
        let wrong = unwrap_with(vec![file_pw(data, "wrong")], &[], &blob).unwrap_err();
        assert!(matches!(wrong, Error::WrongPassword { .. }), "{wrong:?}");
    }
}

/// `unwrap_first` reads (and unlocks) each key once for all the blobs, when the search
/// first gets to it, keeps the order of the search, and stops at a password error.
#[test]
fn unwrap_first_unlocks_each_key_once() {
    let enc = data!("rsa2048-pbes2.pem");
    let other = Rsa::generate(2048).unwrap();
    let other_enc = PKey::from_rsa(other)
        .unwrap()
        .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"pw")
        .unwrap();
    let files = vec![
        file_pw(&other_enc, "pw").named("other.pem"),
        file(b"junk"),
        file_pw(enc, "password"),
        file_pw(enc, "wrong"),
        file_pw(enc, "password"),
    ];
    let mut keys = keys::key_search(&files);
    // Three blobs for the 2048-bit key (the third file).
    for _ in 0..3 {
        let blob = wrap_for(&[CERT_2048]);
        assert_eq!(unwrap(&mut keys, &[], &blob).unwrap().expose(), OPTS);
    }
    assert_eq!(
        keys.reads(),
        3,
        "the files up to the one that opens, once each"
    );
    // A blob for nobody here: the search gets to the wrong password, which stops it, every
    // time, and the file after it is never read.
    for _ in 0..2 {
        let err = unwrap(&mut keys, &[], &wrap_for(&[CERT_4096])).unwrap_err();
        assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");
    }
    assert_eq!(keys.reads(), 4);

    // Two blobs, the key for the second only: each key unlocked once, the second opens.
    let first = wrap_for(&[CERT_4096]);
    let second = wrap_for(&[CERT_2048]);
    let dc = DecryptConfig::default()
        .with_private_keys(vec![file_pw(&other_enc, "pw"), file_pw(enc, "password")]);
    let opts = W
        .unwrap_first(&dc, &[first.clone(), second.clone()])
        .unwrap();
    assert_eq!(opts.expose(), OPTS);
    assert_eq!(
        Pkcs7KeyWrapper::standard()
            .unwrap_first(&dc, &[first.clone(), second.clone()])
            .unwrap()
            .expose(),
        OPTS
    );
    // A wrong password before the right key stops the search at the first blob that gets
    // to the keys, as without unlocking.
    let dc = DecryptConfig::default()
        .with_private_keys(vec![file_pw(enc, "wrong"), file_pw(enc, "password")]);
    let errors = W
        .unwrap_first(&dc, &[b"junk".to_vec(), first, second])
        .unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        matches!(errors[0], Error::MalformedBlob { .. }),
        "{errors:?}"
    );
    assert!(
        matches!(errors[1], Error::WrongPassword { .. }),
        "{errors:?}"
    );
}

/// An RSA private key as a JWK.
fn rsa_private_jwk(rsa: &Rsa<Private>) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = |n: &openssl::bn::BigNumRef| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n.to_vec())
    };
    format!(
        r#"{{"kty":"RSA","kid":"k","n":"{}","e":"{}","d":"{}","p":"{}","q":"{}"}}"#,
        b64(rsa.n()),
        b64(rsa.e()),
        b64(rsa.d()),
        b64(rsa.p().unwrap()),
        b64(rsa.q().unwrap()),
    )
    .into_bytes()
}

/// pkcs7 reads private keys with the loader jwe uses, so it takes the same forms: before
/// the shared loader it read no JWK, and PEM through OpenSSL's own reader.
#[test]
fn reads_every_private_key_form_of_the_shared_loader() {
    let blob = wrap_for(&[CERT_2048]);
    let rsa = Rsa::private_key_from_pem(KEY_2048).unwrap();
    let pkey = PKey::from_rsa(rsa.clone()).unwrap();
    for (name, data) in [
        ("JWK", rsa_private_jwk(&rsa)),
        ("PKCS#1 PEM", rsa.private_key_to_pem().unwrap()),
        ("PKCS#1 DER", rsa.private_key_to_der().unwrap()),
        ("PKCS#8 DER", pkey.private_key_to_pkcs8().unwrap()),
        (
            "PEM after text",
            [
                &b"Bag Attributes\n"[..],
                &pkey.private_key_to_pem_pkcs8().unwrap(),
            ]
            .concat(),
        ),
    ] {
        let opts =
            unwrap_with(vec![file(&data)], &[], &blob).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(opts.expose(), OPTS, "{name}");
    }
    // A public JWK is skipped with the loader's reason.
    let public = format!(r#"{{"kty":"RSA","n":"{}","e":"AQAB"}}"#, "AQAB");
    let c = causes(unwrap_with(vec![file(public.as_bytes())], &[], &blob).unwrap_err());
    assert!(c[0].contains("JWK is not a private key"), "{c:?}");
}

#[test]
fn writes_go_algorithm_identifiers_byte_for_byte() {
    let blob = wrap_for(&[CERT_2048]);
    let ci = parse_content_info(&blob).unwrap();
    let ed = parse_enveloped_data(&ci).unwrap();
    assert_eq!(ed.version, CmsVersion::V0);
    let infos = recipient_infos(&ed).unwrap();
    let [RecipientInfo::Ktri(ktri)] = infos.as_slice() else {
        panic!("one key transport recipient expected");
    };
    assert_eq!(ktri.version, CmsVersion::V0);
    // rsaEncryption with the parameters absent (no NULL).
    assert_eq!(
        ktri.key_enc_alg.to_der().unwrap(),
        [
            0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01
        ]
    );
    assert_eq!(ktri.enc_key.as_bytes().len(), 256);
    // id-aes128-GCM, then Go's parameters: 10 13 30 11 84 0c <nonce> 02 01 10.
    let alg = ed.encrypted_content.algorithm.to_der().unwrap();
    let head = [
        0x30, 0x20, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x06, 0x10, 0x13,
        0x30, 0x11, 0x84, 0x0c,
    ];
    assert_eq!(alg.len(), head.len() + 12 + 3);
    assert!(alg.starts_with(&head), "{alg:02x?}");
    assert!(alg.ends_with(&[0x02, 0x01, 0x10]), "{alg:02x?}");
    // encryptedContent right after it, [0] IMPLICIT primitive: ciphertext and 16-byte tag.
    let at = find(&blob, &alg).unwrap() + alg.len();
    assert_eq!(blob[at], 0x80);
    assert_eq!(usize::from(blob[at + 1]), OPTS.len() + 16);
    assert_eq!(blob.len(), at + 2 + OPTS.len() + 16);
    // Two blobs never share key or nonce.
    let other = wrap_for(&[CERT_2048]);
    let ci2 = parse_content_info(&other).unwrap();
    let alg2 = parse_enveloped_data(&ci2)
        .unwrap()
        .encrypted_content
        .algorithm
        .to_der()
        .unwrap();
    assert_ne!(alg, alg2);
}

#[test]
fn unwraps_skopeo_blobs() {
    for blob in [data!("skopeo-1.der"), data!("skopeo-2.der")] {
        // Go 1.0.3 / mozilla pkcs7: encryptedContent in the constructed form.
        let ci = parse_content_info(blob).unwrap();
        let ed = parse_enveloped_data(&ci).unwrap();
        let alg = ed.encrypted_content.algorithm.to_der().unwrap();
        assert_eq!(alg[13], 0x10, "Go's GCM parameters expected");
        let at = find(blob, &alg).unwrap() + alg.len();
        assert_eq!(blob[at..at + 4], [0xa0, 0x81, blob[at + 2], 0x04]);
        assert_eq!(
            ed.encrypted_content.content.as_ref().unwrap().len(),
            usize::from(blob[at + 5])
        );
        for certs in [&[CERT_2048][..], &[]] {
            let json = unwrap_with(vec![file(KEY_2048)], certs, blob).unwrap();
            let opts = PrivateOptions::from_json(json.expose()).unwrap();
            assert_eq!(opts.symkey.expose().len(), 32);
        }
        assert_eq!(
            W.recipients(blob).unwrap(),
            vec!["issuer=O=Example,CN=ocicrypt-test self-signed serial=01"]
        );
        // The wrong key does not open it.
        let err = unwrap_with(vec![file(KEY_4096)], &[], blob).unwrap_err();
        assert_eq!(causes(err).len(), 1);
    }
}

#[test]
fn unwraps_openssl_cms_blobs() {
    let cases: [(&[u8], &[u8], &[u8]); 3] = [
        (data!("openssl-aes256cbc.der"), KEY_2048, CERT_2048),
        (data!("openssl-oaep.der"), KEY_2048, CERT_2048),
        (data!("openssl-oaep-sha256.der"), KEY_4096, CERT_4096),
    ];
    for (blob, key, cert) in cases {
        assert_eq!(
            unwrap_with(vec![file(key)], &[cert], blob)
                .unwrap()
                .expose(),
            OPENSSL_MSG
        );
        assert_eq!(
            unwrap_with(vec![file(key)], &[], blob).unwrap().expose(),
            OPENSSL_MSG
        );
    }
    // OpenSSL 3.0 writes AES-GCM only as AuthEnvelopedData, which Go does not read either.
    let err = unwrap_with(
        vec![file(KEY_2048)],
        &[],
        data!("openssl-aes128gcm-authenveloped.der"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::MalformedBlob { .. }), "{err:?}");
    assert!(err.to_string().contains("not envelopedData"), "{err}");
}

#[test]
fn reads_rfc5084_gcm_parameters() {
    let blob = wrap(&[CERT_2048.to_vec()], OPTS, Format::Rfc5084Gcm)
        .unwrap()
        .unwrap();
    let params = [0x30, 0x11, 0x04, 0x0c];
    assert!(find(&blob, &params).is_some());
    assert_eq!(
        unwrap_with(vec![file(KEY_2048)], &[], &blob)
            .unwrap()
            .expose(),
        OPTS
    );
}

#[test]
fn recipient_errors() {
    let ec = |certs: &[&[u8]]| {
        EncryptConfig::default().with_pkcs7_certificates(certs.iter().map(|c| c.to_vec()).collect())
    };
    assert!(W.wrap_keys(&ec(&[]), OPTS).unwrap().is_none());
    let err = W
        .wrap_keys(&ec(&[CERT_2048, data!("ec-p256-cert.pem")]), OPTS)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRecipient { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate 2"), "{err}");
    assert!(err.to_string().contains("an EC key"), "{err}");
    let err = W.wrap_keys(&ec(&[KEY_2048]), OPTS).unwrap_err();
    assert!(err.to_string().contains("not a PEM or DER X.509"), "{err}");
}

#[test]
fn has_keys_and_recipients() {
    assert!(!W.has_possible_keys(&DecryptConfig::default()));
    let dc = DecryptConfig::default().with_private_keys(vec![file(KEY_2048)]);
    assert!(W.has_possible_keys(&dc));
    assert!(!W.has_recipients(&EncryptConfig::default()));
    let ec = EncryptConfig::default().with_pkcs7_certificates(vec![CERT_2048.to_vec()]);
    assert!(W.has_recipients(&ec));
    assert_eq!(W.scheme(), "pkcs7");
    assert_eq!(
        W.annotation_key(),
        "org.opencontainers.image.enc.keys.pkcs7"
    );
}

#[test]
fn malformed_blobs() {
    let blob = wrap_for(&[CERT_2048]);
    for bad in [&b"garbage"[..], &[], &blob[..blob.len() - 1], &blob[..40]] {
        let err = unwrap_with(vec![file(KEY_2048)], &[], bad).unwrap_err();
        assert!(matches!(err, Error::MalformedBlob { .. }), "{err:?}");
        let err = W.recipients(bad).unwrap_err();
        assert!(matches!(err, Error::MalformedBlob { .. }), "{err:?}");
    }
    // Trailing bytes after the ContentInfo.
    let mut long = blob.clone();
    long.push(0);
    assert!(matches!(
        unwrap_with(vec![file(KEY_2048)], &[], &long).unwrap_err(),
        Error::MalformedBlob { .. }
    ));
    // GCM tag length 5 instead of 16.
    let mut bad_icv = blob.clone();
    let at = find(&bad_icv, &[0x02, 0x01, 0x10]).unwrap();
    bad_icv[at + 2] = 5;
    let err = unwrap_with(vec![file(KEY_2048)], &[], &bad_icv).unwrap_err();
    assert!(err.to_string().contains("tag length 5"), "{err}");
    // id-aes128-CCM instead of id-aes128-GCM.
    let mut ccm = blob.clone();
    let oid = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x06];
    let at = find(&ccm, &oid).unwrap();
    ccm[at + 8] = 0x07;
    let err = unwrap_with(vec![file(KEY_2048)], &[], &ccm).unwrap_err();
    assert!(matches!(err, Error::UnsupportedAlgorithm { .. }), "{err:?}");
}

#[test]
fn no_matching_key() {
    let blob = wrap_for(&[CERT_2048]);
    // No key at all.
    let c = causes(unwrap_with(vec![], &[CERT_2048], &blob).unwrap_err());
    assert_eq!(c, vec!["no private key was given"]);
    // An unrelated RSA key, an EC key, something that is no key, a bad certificate.
    let other = Rsa::generate(2048).unwrap().private_key_to_pem().unwrap();
    let c = causes(
        unwrap_with(
            vec![file(&other), file(data!("ec-p256.pem")), file(b"junk")],
            &[b"not a cert"],
            &blob,
        )
        .unwrap_err(),
    );
    assert_eq!(c.len(), 4, "{c:?}");
    assert!(c[0].starts_with("certificate 1: skipped"), "{c:?}");
    assert!(c[1].starts_with("private key 1, recipient 1:"), "{c:?}");
    assert!(c[2].contains("not an RSA key"), "{c:?}");
    assert!(c[3].starts_with("private key 3: skipped"), "{c:?}");
    // The right key on tampered content: one opaque failure.
    let mut tampered = blob.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let c = causes(unwrap_with(vec![file(KEY_2048)], &[], &tampered).unwrap_err());
    assert_eq!(
        c,
        [format!("private key 1, recipient 1: {DECRYPTION_FAILED}")]
    );
}

// --- The standard variant (`Pkcs7KeyWrapper::standard()`), checked by OpenSSL and Go. ---

const STD: StandardPkcs7KeyWrapper = Pkcs7KeyWrapper::standard();

fn fixture_path(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn wrap_standard_for(certs: &[&[u8]]) -> Vec<u8> {
    let ec = EncryptConfig::default()
        .with_pkcs7_certificates(certs.iter().map(|c| c.to_vec()).collect());
    STD.wrap_keys(&ec, OPTS).unwrap().unwrap()
}

/// Runs a tool; a missing tool fails the test with an install hint.
fn run(program: &str, args: &[&str], hint: &str) -> std::process::Output {
    std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program}` ({e}): install it ({hint})"))
}

/// `openssl cms -decrypt` of `blob` with one recipient's certificate and key.
fn openssl_cms_decrypt(blob: &[u8], cert: &str, key: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob.der");
    std::fs::write(&path, blob).unwrap();
    run(
        "openssl",
        &[
            "cms",
            "-decrypt",
            "-inform",
            "DER",
            "-in",
            path.to_str().unwrap(),
            "-recip",
            &fixture_path(cert),
            "-inkey",
            &fixture_path(key),
            "-binary",
        ],
        "e.g. `apt-get install openssl`",
    )
}

#[test]
fn standard_variant_decrypts_with_openssl_cms() {
    let blob = wrap_standard_for(&[CERT_2048, CERT_4096]);
    for (cert, key) in [
        ("rsa2048-self.pem", "rsa2048.pem"),
        ("rsa4096-leaf.pem", "rsa4096.pem"),
    ] {
        let out = openssl_cms_decrypt(&blob, cert, key);
        assert!(
            out.status.success(),
            "{cert}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, OPTS, "{cert}");
    }
    // The control: OpenSSL cannot read Go's format (the default), nor a key's blob that
    // does not name it.
    let go = wrap_for(&[CERT_2048]);
    assert!(
        !openssl_cms_decrypt(&go, "rsa2048-self.pem", "rsa2048.pem")
            .status
            .success()
    );
    let only_2048 = wrap_standard_for(&[CERT_2048]);
    assert!(
        !openssl_cms_decrypt(&only_2048, "rsa4096-leaf.pem", "rsa4096.pem")
            .status
            .success()
    );
}

#[test]
fn standard_variant_unwraps_with_either_wrapper() {
    let blob = wrap_standard_for(&[CERT_2048, CERT_4096]);
    for (key, cert) in [(KEY_2048, CERT_2048), (KEY_4096, CERT_4096)] {
        for certs in [&[cert][..], &[]] {
            let dc = DecryptConfig::default()
                .with_private_keys(vec![file(key)])
                .with_certificates(certs.iter().map(|c| c.to_vec()).collect());
            assert_eq!(W.unwrap_key(&dc, &blob).unwrap().expose(), OPTS);
            assert_eq!(STD.unwrap_key(&dc, &blob).unwrap().expose(), OPTS);
        }
    }
    // The standard wrapper reads Go's format too, and shares the rest of the scheme.
    let go = wrap_for(&[CERT_2048]);
    let dc = DecryptConfig::default().with_private_keys(vec![file(KEY_2048)]);
    assert_eq!(STD.unwrap_key(&dc, &go).unwrap().expose(), OPTS);
    assert_eq!(STD.scheme(), "pkcs7");
    assert_eq!(STD.annotation_key(), W.annotation_key());
    assert!(STD.has_possible_keys(&dc));
    assert!(!STD.has_possible_keys(&DecryptConfig::default()));
    assert!(!STD.has_recipients(&EncryptConfig::default()));
    let mut recipients = STD.recipients(&blob).unwrap();
    recipients.sort();
    assert_eq!(
        recipients,
        [
            "issuer=CN=ocicrypt-test CA serial=01",
            "issuer=O=Example,CN=ocicrypt-test self-signed serial=01"
        ]
    );
    // The wrong key, and tampered content: no match.
    let other = Rsa::generate(2048).unwrap().private_key_to_pem().unwrap();
    let only_2048 = wrap_standard_for(&[CERT_2048]);
    let c = causes(unwrap_with(vec![file(&other)], &[], &only_2048).unwrap_err());
    assert_eq!(c.len(), 1, "{c:?}");
    let mut tampered = only_2048.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let c = causes(unwrap_with(vec![file(KEY_2048)], &[CERT_2048], &tampered).unwrap_err());
    assert_eq!(
        c,
        [format!("private key 1, recipient 1: {DECRYPTION_FAILED}")]
    );
}

#[test]
fn standard_variant_errors_as_the_default() {
    let ec = |certs: &[&[u8]]| {
        EncryptConfig::default().with_pkcs7_certificates(certs.iter().map(|c| c.to_vec()).collect())
    };
    assert!(STD.wrap_keys(&ec(&[]), OPTS).unwrap().is_none());
    let err = STD
        .wrap_keys(&ec(&[data!("ec-p256-cert.pem")]), OPTS)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRecipient { .. }), "{err:?}");
    let err = STD.recipients(b"garbage").unwrap_err();
    assert!(matches!(err, Error::MalformedBlob { .. }), "{err:?}");
}

#[test]
fn standard_variant_der_shape() {
    let blob = wrap_standard_for(&[CERT_2048]);
    // An independent parser: the `cms` crate's RFC 5652 types read it as it is.
    let ci = cms::content_info::ContentInfo::from_der(&blob).unwrap();
    assert_eq!(ci.content_type, ID_ENVELOPED_DATA);
    let ed: cms::enveloped_data::EnvelopedData = ci.content.decode_as().unwrap();
    assert_eq!(ed.version, CmsVersion::V0);
    assert!(ed.originator_info.is_none() && ed.unprotected_attrs.is_none());
    let [RecipientInfo::Ktri(ktri)] = ed.recip_infos.0.as_slice() else {
        panic!("one key transport recipient expected");
    };
    assert_eq!(ktri.version, CmsVersion::V0);
    // rsaEncryption WITH the NULL parameter.
    assert_eq!(
        ktri.key_enc_alg.to_der().unwrap(),
        [
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
            0x00
        ]
    );
    assert_eq!(ktri.enc_key.as_bytes().len(), 256);
    let eci = &ed.encrypted_content;
    assert_eq!(eci.content_type, ID_DATA);
    // aes256-CBC (2.16.840.1.101.3.4.1.42) with a 16-byte OCTET STRING IV.
    assert_eq!(
        eci.content_enc_alg.oid.to_string(),
        "2.16.840.1.101.3.4.1.42"
    );
    let alg = eci.content_enc_alg.to_der().unwrap();
    let head = [
        0x30, 0x1d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a, 0x04, 0x10,
    ];
    assert_eq!(alg.len(), head.len() + 16);
    assert!(alg.starts_with(&head), "{alg:02x?}");
    // encryptedContent [0] IMPLICIT primitive, PKCS#7-padded to the next block.
    let content = eci.encrypted_content.as_ref().unwrap().as_bytes();
    assert_eq!(content.len(), (OPTS.len() / 16 + 1) * 16);
    let at = find(&blob, &alg).unwrap() + alg.len();
    assert_eq!(blob[at], 0x80);
    assert_eq!(blob.len(), at + 2 + content.len());
    // The content key is 32 bytes (AES-256).
    let key = keys::parse_private_key(KEY_2048, None).unwrap().unwrap();
    let mut dec = Decrypter::new(&key).unwrap();
    dec.set_rsa_padding(Padding::PKCS1).unwrap();
    let encrypted = ktri.enc_key.as_bytes();
    let mut raw = vec![0; dec.decrypt_len(encrypted).unwrap()];
    let n = dec.decrypt(encrypted, &mut raw).unwrap();
    assert_eq!(n, 32);
    let ck = decrypt_key(&ktri.key_enc_alg, &key, encrypted, 32).unwrap();
    assert_eq!(*ck, raw[..n]);
    // Asked for another length, it gives a random key of that length, not an error.
    let ck = decrypt_key(&ktri.key_enc_alg, &key, encrypted, 16).unwrap();
    assert_eq!(ck.len(), 16);
    assert_ne!(*ck, raw[..16]);
    // Two blobs never share IV or key.
    let other = wrap_standard_for(&[CERT_2048]);
    let ed2: cms::enveloped_data::EnvelopedData = cms::content_info::ContentInfo::from_der(&other)
        .unwrap()
        .content
        .decode_as()
        .unwrap();
    assert_ne!(ed2.encrypted_content.content_enc_alg.to_der().unwrap(), alg);
}

/// `skopeo --insecure-policy <args>`, which must succeed.
fn skopeo(args: &[&str]) {
    let mut full = vec!["--insecure-policy"];
    full.extend_from_slice(args);
    let out = run("skopeo", &full, "e.g. `apt-get install skopeo`");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `(mediaType, digest)` of every layer of the single image of an OCI layout.
fn layers(layout: &std::path::Path) -> Vec<(String, String)> {
    let index = read_json(&layout.join("index.json"));
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = read_json(&layout.join("blobs/sha256").join(&digest[7..]));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let field = |k: &str| l[k].as_str().unwrap().to_owned();
            (field("mediaType"), field("digest"))
        })
        .collect()
}

/// Go ocicrypt (Debian's skopeo 1.9.3: ocicrypt 1.0.3, go.mozilla.org/pkcs7) decrypts layers
/// whose `pkcs7` blobs are the standard variant: skopeo encrypts the example image, every
/// blob is replaced by a standard-variant blob of the same private options, and skopeo
/// decrypts the result back to the original layers.
#[test]
fn go_ocicrypt_reads_the_standard_variant() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    const ANNOTATION: &str = "org.opencontainers.image.enc.keys.pkcs7";

    let image = format!("{}/../../examples/image", env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let oci = |p: &std::path::Path| format!("oci:{}:latest", p.to_str().unwrap());
    let enc = tmp.path().join("enc");
    let cert = fixture_path("rsa2048-self.pem");
    skopeo(&[
        "copy",
        "--quiet",
        "--encryption-key",
        &format!("pkcs7:{cert}"),
        &format!("oci:{image}:latest"),
        &oci(&enc),
    ]);

    // Swap Go's blobs for standard-variant ones and re-address the manifest.
    let index_path = enc.join("index.json");
    let mut index = read_json(&index_path);
    let entry = &mut index["manifests"][0];
    let old_digest = entry["digest"].as_str().unwrap().to_owned();
    let mut manifest = read_json(&enc.join("blobs/sha256").join(&old_digest[7..]));
    let dc = DecryptConfig::default().with_private_keys(vec![file(KEY_2048)]);
    let ec = EncryptConfig::default().with_pkcs7_certificates(vec![CERT_2048.to_vec()]);
    let mut swapped = 0;
    for layer in manifest["layers"].as_array_mut().unwrap() {
        let annotation = &mut layer["annotations"][ANNOTATION];
        let go_blob = B64.decode(annotation.as_str().unwrap()).unwrap();
        let opts = W.unwrap_key(&dc, &go_blob).unwrap();
        let blob = STD.wrap_keys(&ec, opts.expose()).unwrap().unwrap();
        // AES-256-CBC content (OID 2.16.840.1.101.3.4.1.42).
        assert!(
            find(
                &blob,
                &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a]
            )
            .is_some()
        );
        *annotation = serde_json::Value::String(B64.encode(&blob));
        swapped += 1;
    }
    assert_eq!(swapped, 2);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = hex::encode(openssl::sha::sha256(&bytes));
    std::fs::write(enc.join("blobs/sha256").join(&digest), &bytes).unwrap();
    entry["digest"] = format!("sha256:{digest}").into();
    entry["size"] = bytes.len().into();
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    assert!(
        layers(&enc)
            .iter()
            .all(|(mt, _)| mt.ends_with("+encrypted"))
    );

    // skopeo 1.9.3 needs the certificate beside the key.
    let dec = tmp.path().join("dec");
    skopeo(&[
        "copy",
        "--quiet",
        "--decryption-key",
        &fixture_path("rsa2048.pem"),
        "--decryption-key",
        &cert,
        &oci(&enc),
        &oci(&dec),
    ]);
    assert_eq!(layers(&dec), layers(std::path::Path::new(&image)));
}

// --- Limits and oracles (issue 11: M1, M4). ---

/// `blob` re-encoded with the RecipientInfos `members` (DER, in this order) and, if given,
/// other encrypted content.
fn rebuild(blob: &[u8], members: &[Vec<u8>], content: Option<Vec<u8>>) -> Vec<u8> {
    let ci = parse_content_info(blob).unwrap();
    let ed = parse_enveloped_data(&ci).unwrap();
    let joined = members.concat();
    let set = RawTlv {
        tag: 0x31,
        value: &joined,
    }
    .to_der()
    .unwrap();
    let mut encrypted_content = ed.encrypted_content.clone();
    if let Some(c) = content {
        encrypted_content.content = Some(c);
    }
    let ed = EnvelopedData {
        version: ed.version,
        recipient_infos: RecipientInfoSet::from_set_der(&set).unwrap(),
        encrypted_content,
    }
    .to_der()
    .unwrap();
    ContentInfo {
        content_type: ID_ENVELOPED_DATA,
        content: &ed,
    }
    .to_der()
    .unwrap()
}

/// The only KeyTransRecipientInfo of `blob`.
fn only_ktri(blob: &[u8]) -> KeyTransRecipientInfo {
    let ci = parse_content_info(blob).unwrap();
    let ed = parse_enveloped_data(&ci).unwrap();
    match recipient_infos(&ed).unwrap().as_slice() {
        [RecipientInfo::Ktri(k)] => k.clone(),
        other => panic!("{other:?}"),
    }
}

/// `ktri` with another serial number (so that it names no given certificate) and a junk
/// encrypted key, as DER.
fn junk_ktri(ktri: &KeyTransRecipientInfo, i: usize) -> Vec<u8> {
    let mut k = ktri.clone();
    let RecipientIdentifier::IssuerAndSerialNumber(ias) = &mut k.rid else {
        panic!("issuer and serial number expected");
    };
    let serial = u32::try_from(i).unwrap() + 1_000;
    ias.serial_number = x509_cert::serial_number::SerialNumber::new(&serial.to_be_bytes()).unwrap();
    k.enc_key = OctetString::new(vec![0x5a; 256]).unwrap();
    RecipientInfo::Ktri(k).to_der().unwrap()
}

fn assert_limit(err: Error, what: &str, limit: usize) {
    match &err {
        Error::LimitExceeded {
            scheme,
            what: w,
            limit: l,
        } => assert_eq!((scheme.as_str(), *w, *l), ("pkcs7", what, limit)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn recipient_infos_are_capped() {
    assert_eq!(MAX_RECIPIENT_INFOS, 1024);
    let blob = wrap_for(&[CERT_2048]);
    let real = only_ktri(&blob);
    // In descending DER order (serials count down), which a sorting decoder would
    // have to reorder completely.
    let members = |n: usize| -> Vec<Vec<u8>> {
        let mut m: Vec<Vec<u8>> = (0..n - 1).rev().map(|i| junk_ktri(&real, i)).collect();
        m.push(RecipientInfo::Ktri(real.clone()).to_der().unwrap());
        m
    };
    // At the limit: readable, and the certificate picks the one real recipient.
    let at_cap = rebuild(&blob, &members(MAX_RECIPIENT_INFOS), None);
    assert_eq!(W.recipients(&at_cap).unwrap().len(), MAX_RECIPIENT_INFOS);
    let opts = unwrap_with(vec![file(KEY_2048)], &[CERT_2048], &at_cap).unwrap();
    assert_eq!(opts.expose(), OPTS);
    // Over it, and the review's 8,000 (18 s in `layer inspect` before): refused before
    // any RecipientInfo is decoded.
    for n in [MAX_RECIPIENT_INFOS + 1, 8_000] {
        let over = rebuild(&blob, &members(n), None);
        let started = std::time::Instant::now();
        assert_limit(W.recipients(&over).unwrap_err(), "RecipientInfos", 1024);
        let err = unwrap_with(vec![file(KEY_2048)], &[], &over).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pkcs7: wrapped key exceeds a limit: more than 1024 RecipientInfos"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}

#[test]
fn writing_more_recipients_than_can_be_read_is_refused() {
    let ec = EncryptConfig::default()
        .with_pkcs7_certificates(vec![CERT_2048.to_vec(); MAX_RECIPIENT_INFOS + 1]);
    assert_limit(
        W.wrap_keys(&ec, OPTS).unwrap_err(),
        "RecipientInfos",
        MAX_RECIPIENT_INFOS,
    );
}

/// A KeyTransRecipientInfo like `ktri` whose issuer is one RDN of `n` attributes, in
/// descending DER order, as DER (built by hand: decoding it is what is slow).
fn ktri_with_wide_rdn(ktri: &KeyTransRecipientInfo, n: usize) -> Vec<u8> {
    let mut atvs = Vec::new();
    for i in (0..n).rev() {
        // SEQUENCE { OID 2.5.4.3 (commonName), UTF8String "{i:04x}" }
        atvs.extend_from_slice(&[0x30, 11, 0x06, 3, 0x55, 0x04, 0x03, 0x0c, 4]);
        atvs.extend_from_slice(format!("{i:04x}").as_bytes());
    }
    let tlv = |tag: u8, value: &[u8]| RawTlv { tag, value }.to_der().unwrap();
    let rdn = tlv(0x31, &atvs);
    let name = tlv(0x30, &rdn);
    let RecipientIdentifier::IssuerAndSerialNumber(ias) = &ktri.rid else {
        panic!("issuer and serial number expected");
    };
    let rid = tlv(0x30, &[name, ias.serial_number.to_der().unwrap()].concat());
    let body = [
        ktri.version.to_der().unwrap(),
        rid,
        ktri.key_enc_alg.to_der().unwrap(),
        ktri.enc_key.to_der().unwrap(),
    ]
    .concat();
    tlv(0x30, &body)
}

#[test]
fn a_wide_issuer_rdn_is_refused_before_decoding() {
    assert_eq!(MAX_SET_MEMBERS, 16);
    let blob = wrap_for(&[CERT_2048]);
    let real = only_ktri(&blob);
    // At the limit it is read (and names no certificate, so the key is tried on it).
    let at_cap = rebuild(&blob, &[ktri_with_wide_rdn(&real, MAX_SET_MEMBERS)], None);
    let listed = W.recipients(&at_cap).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].starts_with("issuer=CN=0000+CN=0001+"),
        "{listed:?}"
    );
    let opts = unwrap_with(vec![file(KEY_2048)], &[], &at_cap).unwrap();
    assert_eq!(opts.expose(), OPTS);
    // One RDN of 8,000 attributes (an 88 KB one took 44 s to decode in a debug build).
    for n in [MAX_SET_MEMBERS + 1, 8_000] {
        let wide = rebuild(&blob, &[ktri_with_wide_rdn(&real, n)], None);
        let started = std::time::Instant::now();
        assert_limit(
            W.recipients(&wide).unwrap_err(),
            "members in one SET OF of a RecipientInfo",
            16,
        );
        assert_limit(
            unwrap_with(vec![file(KEY_2048)], &[], &wide).unwrap_err(),
            "members in one SET OF of a RecipientInfo",
            16,
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}

#[test]
fn every_decryption_failure_is_the_same_error() {
    use openssl::symm::{Cipher, Crypter, Mode};
    let key = keys::parse_private_key(KEY_2048, None).unwrap().unwrap();
    let cert = keys::parse_certificate(CERT_2048).unwrap();
    let rsa_pkcs1 = |plaintext: &[u8]| {
        let mut enc = Encrypter::new(&cert.public_key).unwrap();
        enc.set_rsa_padding(Padding::PKCS1).unwrap();
        let mut out = vec![0; enc.encrypt_len(plaintext).unwrap()];
        let n = enc.encrypt(plaintext, &mut out).unwrap();
        out.truncate(n);
        out
    };
    let with_enc_key = |blob: &[u8], enc_key: Vec<u8>| {
        let mut k = only_ktri(blob);
        k.enc_key = OctetString::new(enc_key).unwrap();
        rebuild(blob, &[RecipientInfo::Ktri(k).to_der().unwrap()], None)
    };

    // The standard variant: AES-256-CBC, unauthenticated.
    let cbc = wrap_standard_for(&[CERT_2048]);
    let ktri = only_ktri(&cbc);
    let content_key = {
        let mut dec = Decrypter::new(&key).unwrap();
        dec.set_rsa_padding(Padding::PKCS1).unwrap();
        let mut out = vec![0; dec.decrypt_len(ktri.enc_key.as_bytes()).unwrap()];
        let n = dec.decrypt(ktri.enc_key.as_bytes(), &mut out).unwrap();
        out.truncate(n);
        out
    };
    let iv = {
        let ci = parse_content_info(&cbc).unwrap();
        let ed = parse_enveloped_data(&ci).unwrap();
        ed.encrypted_content
            .algorithm
            .parameters
            .unwrap()
            .value
            .to_vec()
    };
    let cbc_content = |plaintext: &[u8], pad: bool| {
        let cipher = Cipher::aes_256_cbc();
        let mut c = Crypter::new(cipher, Mode::Encrypt, &content_key, Some(&iv)).unwrap();
        c.pad(pad);
        let mut out = vec![0; plaintext.len() + 16];
        let mut n = c.update(plaintext, &mut out).unwrap();
        n += c.finalize(&mut out[n..]).unwrap();
        out.truncate(n);
        out
    };
    let mut bad_padding_block = [b'{'; 32];
    bad_padding_block[31] = 0; // 0 is never valid PKCS#7 padding
    let mut cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
        (
            "CBC: bad padding",
            rebuild(
                &cbc,
                &[RecipientInfo::Ktri(ktri.clone()).to_der().unwrap()],
                Some(cbc_content(&bad_padding_block, false)),
            ),
            KEY_2048,
        ),
        (
            "CBC: good padding, garbage",
            rebuild(
                &cbc,
                &[RecipientInfo::Ktri(ktri.clone()).to_der().unwrap()],
                Some(cbc_content(b"\x07garbage, well padded", true)),
            ),
            KEY_2048,
        ),
        (
            "CBC: good padding, JSON but not an object",
            rebuild(
                &cbc,
                &[RecipientInfo::Ktri(ktri.clone()).to_der().unwrap()],
                Some(cbc_content(b"[1, 2, 3]", true)),
            ),
            KEY_2048,
        ),
        (
            "CBC: an object with garbage after it",
            rebuild(
                &cbc,
                &[RecipientInfo::Ktri(ktri.clone()).to_der().unwrap()],
                Some(cbc_content(b"{}\xff", true)),
            ),
            KEY_2048,
        ),
        (
            "CBC: RSA padding broken",
            with_enc_key(&cbc, vec![0x5a; 256]),
            KEY_2048,
        ),
        (
            "CBC: content key of 20 bytes",
            with_enc_key(&cbc, rsa_pkcs1(&[7; 20])),
            KEY_2048,
        ),
        (
            "CBC: content key of 0 bytes",
            with_enc_key(&cbc, rsa_pkcs1(&[])),
            KEY_2048,
        ),
        (
            "CBC: another 32-byte content key",
            with_enc_key(&cbc, rsa_pkcs1(&[7; 32])),
            KEY_2048,
        ),
        (
            "CBC: short RSA ciphertext",
            with_enc_key(&cbc, vec![1; 8]),
            KEY_2048,
        ),
    ];
    let other = Rsa::generate(2048).unwrap().private_key_to_pem().unwrap();
    cases.push(("CBC: wrong private key", cbc.clone(), &other));

    // Go's format: AES-128-GCM.
    let gcm = wrap_for(&[CERT_2048]);
    let mut tampered = gcm.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    cases.extend([
        ("GCM: tampered tag", tampered, KEY_2048),
        (
            "GCM: RSA padding broken",
            with_enc_key(&gcm, vec![0x5a; 256]),
            KEY_2048,
        ),
        (
            "GCM: content key of 32 bytes",
            with_enc_key(&gcm, rsa_pkcs1(&[7; 32])),
            KEY_2048,
        ),
        (
            "GCM: another 16-byte content key",
            with_enc_key(&gcm, rsa_pkcs1(&[7; 16])),
            KEY_2048,
        ),
        ("GCM: wrong private key", gcm.clone(), &other),
    ]);

    let expected = format!(
        "pkcs7: no suitable key found for decrypting layer key: private key 1, recipient 1: {DECRYPTION_FAILED}"
    );
    for (what, blob, key) in &cases {
        let err = unwrap_with(vec![file(key)], &[], blob).unwrap_err();
        assert!(
            matches!(err, Error::NoMatchingKey { .. }),
            "{what}: {err:?}"
        );
        assert_eq!(err.to_string(), expected, "{what}");
        assert!(std::error::Error::source(&err).is_none(), "{what}");
    }
    // The untouched blobs still open (the CBC one because it is a JSON object).
    for blob in [&cbc, &gcm] {
        assert_eq!(
            unwrap_with(vec![file(KEY_2048)], &[], blob)
                .unwrap()
                .expose(),
            OPTS
        );
    }
}

/// One layer cannot make us try more than MAX_UNWRAP_ATTEMPTS RSA decryptions, however
/// its recipients are spread over blobs; the limit stops the search at once.
#[test]
fn a_layer_cannot_ask_for_a_million_key_operations() {
    // 64 recipients (someone else's) per blob, 65 blobs: 4160 > 4096 pairs.
    let blob = wrap_for(&vec![CERT_4096; 64]);
    let dc = DecryptConfig::default().with_private_keys(vec![file(KEY_2048)]);
    let errors = W.unwrap_first(&dc, &vec![blob.clone(); 65]).unwrap_err();
    assert_eq!(errors.len(), 65, "{:?}", errors.last());
    assert!(
        matches!(
            errors.last(),
            Some(Error::LimitExceeded {
                limit: MAX_UNWRAP_ATTEMPTS,
                ..
            })
        ),
        "{:?}",
        errors.last()
    );
    assert!(matches!(errors[0], Error::NoMatchingKey { .. }));
    // 64 blobs: under the limit, each refused.
    let errors = W.unwrap_first(&dc, &vec![blob; 64]).unwrap_err();
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, Error::NoMatchingKey { .. }))
    );
}
