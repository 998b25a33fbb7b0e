//! The loader against every form, made here with the openssl crate.

use std::sync::LazyLock;

use base64::Engine as _;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNumRef;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::rsa::Rsa;
use openssl::symm::Cipher;
use openssl::x509::X509NameBuilder;

use super::*;

static RSA: LazyLock<Rsa<Private>> = LazyLock::new(|| Rsa::generate(2048).unwrap());
static EC: LazyLock<EcKey<Private>> = LazyLock::new(|| {
    EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap()
});

fn rsa_pkey() -> PKey<Private> {
    PKey::from_rsa(RSA.clone()).unwrap()
}

fn ec_pkey() -> PKey<Private> {
    PKey::from_ec_key(EC.clone()).unwrap()
}

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

fn b64(n: &BigNumRef) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n.to_vec())
}

/// The RSA key as a public and a private JWK, with `extra` members.
fn rsa_jwks(extra: &str) -> (Vec<u8>, Vec<u8>) {
    let r = &*RSA;
    let public = format!(
        r#"{{"kty":"RSA","n":"{}","e":"{}"{extra}}}"#,
        b64(r.n()),
        b64(r.e())
    );
    let private = format!(
        r#"{{"kty":"RSA","n":"{}","e":"{}","d":"{}","p":"{}","q":"{}","dp":"{}","dq":"{}","qi":"{}"{extra}}}"#,
        b64(r.n()),
        b64(r.e()),
        b64(r.d()),
        b64(r.p().unwrap()),
        b64(r.q().unwrap()),
        b64(r.dmp1().unwrap()),
        b64(r.dmq1().unwrap()),
        b64(r.iqmp().unwrap()),
    );
    (public.into_bytes(), private.into_bytes())
}

/// The EC key as a public and a private JWK, with `extra` members.
fn ec_jwks(extra: &str) -> (Vec<u8>, Vec<u8>) {
    let group = EC.group();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().unwrap(),
        openssl::bn::BigNum::new().unwrap(),
    );
    EC.public_key()
        .affine_coordinates(group, &mut x, &mut y, &mut ctx)
        .unwrap();
    let enc = |n: &BigNumRef| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n.to_vec_padded(32).unwrap())
    };
    let public = format!(
        r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"{extra}}}"#,
        enc(&x),
        enc(&y)
    );
    let private = format!(
        r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}","d":"{}"{extra}}}"#,
        enc(&x),
        enc(&y),
        enc(EC.private_key())
    );
    (public.into_bytes(), private.into_bytes())
}

/// A self-signed certificate of the RSA key.
fn certificate() -> X509 {
    let key = rsa_pkey();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "keys test").unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    cert.build()
}

/// Every unencrypted private-key form, named, with the key it holds.
fn private_forms() -> Vec<(&'static str, Vec<u8>, PKey<Private>)> {
    let rsa = rsa_pkey();
    let ec = ec_pkey();
    let ed = PKey::generate_ed25519().unwrap();
    let (_, rsa_jwk) = rsa_jwks("");
    let (_, ec_jwk) = ec_jwks("");
    vec![
        (
            "PKCS#8 PEM",
            rsa.private_key_to_pem_pkcs8().unwrap(),
            rsa.clone(),
        ),
        ("PKCS#1 PEM", RSA.private_key_to_pem().unwrap(), rsa.clone()),
        ("SEC1 PEM", EC.private_key_to_pem().unwrap(), ec.clone()),
        (
            "EC PKCS#8 PEM",
            ec.private_key_to_pem_pkcs8().unwrap(),
            ec.clone(),
        ),
        (
            "PKCS#8 DER",
            rsa.private_key_to_pkcs8().unwrap(),
            rsa.clone(),
        ),
        ("PKCS#1 DER", RSA.private_key_to_der().unwrap(), rsa.clone()),
        ("SEC1 DER", EC.private_key_to_der().unwrap(), ec.clone()),
        (
            "Ed25519 PEM",
            ed.private_key_to_pem_pkcs8().unwrap(),
            ed.clone(),
        ),
        ("RSA JWK", rsa_jwk, rsa.clone()),
        ("EC JWK", ec_jwk, ec.clone()),
        (
            "PEM after text, as Go's pem.Decode finds it",
            [
                &b"Bag Attributes\n  friendlyName: x\n"[..],
                &RSA.private_key_to_pem().unwrap(),
            ]
            .concat(),
            rsa,
        ),
    ]
}

/// Every encrypted private-key form (password `secret`), named, with the key it holds.
fn encrypted_forms() -> Vec<(&'static str, Vec<u8>, PKey<Private>)> {
    let rsa = rsa_pkey();
    let ec = ec_pkey();
    let cbc = Cipher::aes_256_cbc();
    vec![
        (
            "legacy encrypted PKCS#1 PEM",
            RSA.private_key_to_pem_passphrase(cbc, b"secret").unwrap(),
            rsa.clone(),
        ),
        (
            "legacy encrypted SEC1 PEM",
            EC.private_key_to_pem_passphrase(cbc, b"secret").unwrap(),
            ec,
        ),
        (
            "encrypted PKCS#8 PEM",
            rsa.private_key_to_pem_pkcs8_passphrase(cbc, b"secret")
                .unwrap(),
            rsa.clone(),
        ),
        (
            "encrypted PKCS#8 DER",
            rsa.private_key_to_pkcs8_passphrase(cbc, b"secret").unwrap(),
            rsa,
        ),
    ]
}

fn public_forms() -> Vec<(&'static str, Vec<u8>)> {
    let rsa = rsa_pkey();
    let (rsa_jwk, _) = rsa_jwks(r#","alg":"RSA-OAEP-256","kid":"k1""#);
    let (ec_jwk, _) = ec_jwks("");
    vec![
        ("SPKI PEM", rsa.public_key_to_pem().unwrap()),
        ("SPKI DER", rsa.public_key_to_der().unwrap()),
        ("PKCS#1 PEM", RSA.public_key_to_pem_pkcs1().unwrap()),
        ("PKCS#1 DER", RSA.public_key_to_der_pkcs1().unwrap()),
        ("EC SPKI PEM", ec_pkey().public_key_to_pem().unwrap()),
        ("RSA JWK", rsa_jwk),
        ("EC JWK", ec_jwk),
    ]
}

fn certificate_forms() -> Vec<(&'static str, Vec<u8>)> {
    let cert = certificate();
    vec![
        ("PEM", cert.to_pem().unwrap()),
        ("DER", cert.to_der().unwrap()),
        (
            "PEM after text",
            [&b"subject=CN = keys test\n"[..], &cert.to_pem().unwrap()].concat(),
        ),
    ]
}

#[test]
fn reads_every_private_key_form() {
    for (name, data, want) in private_forms() {
        let key = parse_private_key("t", &data, None)
            .unwrap()
            .unwrap_or_else(|f| panic!("{name}: {f}"));
        assert!(key.pkey().public_eq(&want), "{name}");
        assert_eq!(key.is_jwk(), name.contains("JWK"), "{name}");
        // A password given for a key that is not encrypted is ignored, as in Go.
        let again = parse_private_key("t", &data, Some(&pw("unused")))
            .unwrap()
            .unwrap();
        assert!(again.pkey().public_eq(&want), "{name}");
        assert!(is_private_key(&data), "{name}");
        assert!(!is_public_key(&data), "{name}");
        assert!(!is_certificate(&data), "{name}");
    }
}

#[test]
fn encrypted_private_keys_need_their_password() {
    for (name, data, want) in encrypted_forms() {
        let key = parse_private_key("t", &data, Some(&pw("secret")))
            .unwrap()
            .unwrap_or_else(|f| panic!("{name}: {f}"));
        assert!(key.pkey().public_eq(&want), "{name}");

        let err = parse_private_key("t", &data, None).err().unwrap();
        assert!(
            matches!(&err, Error::MissingPassword { scheme } if scheme == "t"),
            "{name}: {err:?}"
        );
        let err = parse_private_key("pkcs7", &data, Some(&pw("wrong")))
            .err()
            .unwrap();
        assert!(
            matches!(&err, Error::WrongPassword { scheme } if scheme == "pkcs7"),
            "{name}: {err:?}"
        );
        // Longer than OpenSSL's buffer: a wrong password too, no panic.
        let long = "x".repeat(5000);
        let err = parse_private_key("t", &data, Some(&pw(&long))).err();
        assert!(
            matches!(err, Some(Error::WrongPassword { .. })),
            "{name}: {err:?}"
        );
        // Without its password it still is a private key, as Go's IsPrivateKey says.
        assert!(is_private_key(&data), "{name}");
        assert!(!is_public_key(&data) && !is_certificate(&data), "{name}");
    }
}

#[test]
fn reads_every_public_key_form() {
    for (name, data) in public_forms() {
        let key = parse_public_key(&data).unwrap_or_else(|f| panic!("{name}: {f}"));
        let want = if name.starts_with("EC") {
            ec_pkey().public_key_to_der().unwrap()
        } else {
            rsa_pkey().public_key_to_der().unwrap()
        };
        assert_eq!(key.pkey().public_key_to_der().unwrap(), want, "{name}");
        assert_eq!(key.is_jwk(), name.contains("JWK"), "{name}");
        assert!(is_public_key(&data), "{name}");
        assert!(!is_private_key(&data), "{name}");
        assert!(!is_certificate(&data), "{name}");
    }
    let (jwk, _) = rsa_jwks(r#","alg":"RSA-OAEP-256","kid":"k1""#);
    let key = parse_public_key(&jwk).unwrap();
    assert_eq!(key.jwk_algorithm(), Some("RSA-OAEP-256"));
    assert_eq!(key.key_id(), Some("k1"));
    let key = parse_public_key(&rsa_pkey().public_key_to_pem().unwrap()).unwrap();
    assert_eq!((key.jwk_algorithm(), key.key_id()), (None, None));
}

#[test]
fn reads_certificates() {
    let want = certificate().to_der().unwrap();
    for (name, data) in certificate_forms() {
        let cert = parse_certificate(&data).unwrap_or_else(|f| panic!("{name}: {f}"));
        assert_eq!(cert.x509().to_der().unwrap(), want, "{name}");
        assert!(cert.public_key().unwrap().public_eq(&rsa_pkey()), "{name}");
        assert!(is_certificate(&data), "{name}");
        assert!(!is_private_key(&data) && !is_public_key(&data), "{name}");
    }
}

#[test]
fn a_jwk_private_key_keeps_its_kid() {
    let (_, jwk) = ec_jwks(r#","kid":"key-1","use":"enc""#);
    let key = parse_private_key("t", &jwk, None).unwrap().unwrap();
    assert_eq!(key.key_id(), Some("key-1"));
    assert!(key.is_jwk());
}

#[test]
fn what_is_not_a_private_key_is_a_failure_to_skip() {
    let cert = certificate().to_pem().unwrap();
    let public = rsa_pkey().public_key_to_pem().unwrap();
    let (public_jwk, _) = rsa_jwks("");
    for (data, why) in [
        (&b"garbage"[..], "not a PEM, DER or JWK private key"),
        (b"", "not a PEM, DER or JWK private key"),
        (
            &public,
            "PEM block \"PUBLIC KEY\" does not hold a private key",
        ),
        (
            &cert,
            "PEM block \"CERTIFICATE\" does not hold a private key",
        ),
        (&public_jwk, "JWK is not a private key"),
        (br#"{"kty":"oct","k":"AAAA"}"#, "not supported"),
        (b"{ not json", "could not parse input as JWK"),
    ] {
        let failure = parse_private_key("t", data, None).unwrap().err().unwrap();
        assert!(
            failure.reason().contains(why),
            "{} lacks {why}",
            failure.reason()
        );
        assert!(!is_private_key(data));
    }
}

#[test]
fn what_is_not_a_public_key_or_certificate() {
    let private = RSA.private_key_to_pem().unwrap();
    let (_, private_jwk) = rsa_jwks("");
    let cert = certificate().to_pem().unwrap();
    for (data, why) in [
        (&b"garbage"[..], "not a PEM, DER or JWK public key"),
        (
            &private,
            "PEM block \"RSA PRIVATE KEY\" does not hold a public key",
        ),
        (
            &cert,
            "PEM block \"CERTIFICATE\" does not hold a public key",
        ),
        (&private_jwk, "JWK is not a public key"),
    ] {
        let failure = parse_public_key(data).err().unwrap();
        assert!(
            failure.reason().contains(why),
            "{} lacks {why}",
            failure.reason()
        );
    }
    for data in [
        &b"garbage"[..],
        b"",
        &private,
        &rsa_pkey().public_key_to_pem().unwrap(),
    ] {
        let failure = parse_certificate(data).err().unwrap();
        assert_eq!(failure.reason(), "not a PEM or DER X.509 certificate");
    }
}

#[test]
fn the_first_pem_block_decides_as_in_go() {
    // Go's pem.Decode takes the first well-formed block; blocks with bad base64 are
    // skipped. A certificate before the key makes the file a certificate, not a key.
    let key = RSA.private_key_to_pem().unwrap();
    let cert = certificate().to_pem().unwrap();
    let key_then_cert = [&key[..], &cert].concat();
    assert!(is_private_key(&key_then_cert) && !is_certificate(&key_then_cert));
    let cert_then_key = [&cert[..], &key].concat();
    assert!(is_certificate(&cert_then_key) && !is_private_key(&cert_then_key));
    let bad_then_key = [&b"-----BEGIN X-----\n!!!\n-----END X-----\n"[..], &key].concat();
    assert!(is_private_key(&bad_then_key));
}

#[test]
fn debug_shows_no_key_material() {
    let key = parse_private_key("t", &RSA.private_key_to_pem().unwrap(), None)
        .unwrap()
        .unwrap();
    assert_eq!(
        format!("{key:?}"),
        "PrivateKey { type: RSA, bits: 2048, jwk: false, key_id: None, .. }"
    );
    let (jwk, _) = ec_jwks(r#","kid":"k""#);
    let public = parse_public_key(&jwk).unwrap();
    assert_eq!(
        format!("{public:?}"),
        "PublicKey { type: EC, bits: 256, jwk_algorithm: None, key_id: Some(\"k\"), .. }"
    );
    let cert = parse_certificate(&certificate().to_der().unwrap()).unwrap();
    assert!(format!("{cert:?}").contains("keys test"));
}
