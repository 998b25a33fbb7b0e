//! Wrap/unwrap tests. Keys come from `tests/data` (made by `tests/data/make-keys.sh` with
//! the OpenSSL CLI) or are generated here with the openssl crate.

use base64::Engine as _;
use josekit::jwe::{JweHeader, JweHeaderSet};
use ocicrypt_keywrap::secrecy::SecretString;
use openssl::bn::{BigNumContext, BigNumRef};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use serde_json::{Map, Value, json};

use super::*;
use crate::keys::{
    Curve, KeyKind, is_private_key, is_public_key, parse_private_key, parse_public_key,
};

const OPTS: &[u8] =
    br#"{"symkey":"c2VjcmV0","digest":"sha256:00","cipheroptions":{"nonce":"bm9uY2U="}}"#;
const W: JweKeyWrapper = JweKeyWrapper;

macro_rules! data {
    ($name:literal) => {
        include_bytes!(concat!("../tests/data/", $name)).as_slice()
    };
}

fn file(data: &[u8]) -> KeyFile {
    KeyFile::new(data.to_vec())
}

fn file_pw(data: &[u8], pw: &str) -> KeyFile {
    KeyFile::with_password(data.to_vec(), SecretString::from(pw))
}

fn ec_cfg(pubs: &[&[u8]]) -> EncryptConfig {
    EncryptConfig::default().with_jwe_public_keys(pubs.iter().map(|k| k.to_vec()).collect())
}

fn dc_cfg(keys: Vec<KeyFile>) -> DecryptConfig {
    DecryptConfig::default().with_private_keys(keys)
}

fn wrap_for(pubs: &[&[u8]]) -> Vec<u8> {
    W.wrap_keys(&ec_cfg(pubs), OPTS).unwrap().unwrap()
}

fn unwrap_with(keys: Vec<KeyFile>, blob: &[u8]) -> Result<SecretBytes, Error> {
    W.unwrap_key(&dc_cfg(keys), blob)
}

/// Wraps for `pubs`, checks that `private` alone unwraps, returns the blob.
fn round_trip(pubs: &[&[u8]], private: KeyFile) -> Vec<u8> {
    let blob = wrap_for(pubs);
    let opts = unwrap_with(vec![private], &blob).unwrap();
    assert_eq!(opts.expose(), OPTS);
    blob
}

fn obj(blob: &[u8]) -> Map<String, Value> {
    serde_json::from_slice(blob).unwrap()
}

fn decode_obj(b64: &Value) -> Map<String, Value> {
    serde_json::from_slice(&B64URL.decode(b64.as_str().unwrap()).unwrap()).unwrap()
}

fn keys_of(m: &Map<String, Value>) -> Vec<&str> {
    let mut k: Vec<&str> = m.keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

fn rsa_pair(bits: u32) -> (Rsa<Private>, Vec<u8>, Vec<u8>) {
    let rsa = Rsa::generate(bits).unwrap();
    let pkey = PKey::from_rsa(rsa.clone()).unwrap();
    (
        rsa,
        pkey.public_key_to_pem().unwrap(),
        pkey.private_key_to_pem_pkcs8().unwrap(),
    )
}

fn ec_pair(nid: Nid) -> (EcKey<Private>, Vec<u8>, Vec<u8>) {
    let ec = EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap();
    let pkey = PKey::from_ec_key(ec.clone()).unwrap();
    (
        ec,
        pkey.public_key_to_pem().unwrap(),
        pkey.private_key_to_pem_pkcs8().unwrap(),
    )
}

fn b(n: &BigNumRef) -> String {
    B64URL.encode(n.to_vec())
}

/// (public JWK, private JWK) with `extra` members (e.g. `,"alg":"RSA-OAEP-256"`).
fn rsa_jwk(rsa: &Rsa<Private>, extra: &str) -> (Vec<u8>, Vec<u8>) {
    let public = format!(
        r#"{{"kty":"RSA","n":"{}","e":"{}"{extra}}}"#,
        b(rsa.n()),
        b(rsa.e())
    );
    let private = format!(
        r#"{{"kty":"RSA","n":"{}","e":"{}","d":"{}","p":"{}","q":"{}","dp":"{}","dq":"{}","qi":"{}"{extra}}}"#,
        b(rsa.n()),
        b(rsa.e()),
        b(rsa.d()),
        b(rsa.p().unwrap()),
        b(rsa.q().unwrap()),
        b(rsa.dmp1().unwrap()),
        b(rsa.dmq1().unwrap()),
        b(rsa.iqmp().unwrap()),
    );
    (public.into_bytes(), private.into_bytes())
}

fn ec_jwk(ec: &EcKey<Private>, crv: &str, extra: &str) -> (Vec<u8>, Vec<u8>) {
    let group = ec.group();
    let size = usize::try_from(group.degree().div_ceil(8)).unwrap();
    let mut ctx = BigNumContext::new().unwrap();
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().unwrap(),
        openssl::bn::BigNum::new().unwrap(),
    );
    ec.public_key()
        .affine_coordinates(group, &mut x, &mut y, &mut ctx)
        .unwrap();
    let pad = |n: &BigNumRef| B64URL.encode(n.to_vec_padded(size as i32).unwrap());
    let public = format!(
        r#"{{"kty":"EC","crv":"{crv}","x":"{}","y":"{}"{extra}}}"#,
        pad(&x),
        pad(&y)
    );
    let private = format!(
        r#"{{"kty":"EC","crv":"{crv}","x":"{}","y":"{}","d":"{}"{extra}}}"#,
        pad(&x),
        pad(&y),
        pad(ec.private_key())
    );
    (public.into_bytes(), private.into_bytes())
}

fn causes(err: Error) -> Vec<String> {
    match err {
        Error::NoMatchingKey { causes, .. } => causes.iter().map(ToString::to_string).collect(),
        other => panic!("expected NoMatchingKey, got {other:?}"),
    }
}

// ---------------------------------------------------------------- round trips: files

#[test]
fn rsa_2048_pem() {
    let blob = round_trip(&[data!("rsa2048.pub.pem")], file(data!("rsa2048.pem")));
    let o = obj(&blob);
    assert_eq!(
        keys_of(&o),
        ["ciphertext", "encrypted_key", "iv", "protected", "tag"]
    );
    let p = decode_obj(&o["protected"]);
    assert_eq!(
        Value::Object(p),
        json!({"alg": "RSA-OAEP", "enc": "A256GCM"})
    );
    let ek = B64URL.decode(o["encrypted_key"].as_str().unwrap()).unwrap();
    assert_eq!(ek.len(), 256);
    assert_eq!(B64URL.decode(o["iv"].as_str().unwrap()).unwrap().len(), 12);
    assert_eq!(B64URL.decode(o["tag"].as_str().unwrap()).unwrap().len(), 16);
    assert_eq!(
        B64URL
            .decode(o["ciphertext"].as_str().unwrap())
            .unwrap()
            .len(),
        OPTS.len()
    );
}

#[test]
fn rsa_1024_pem() {
    round_trip(&[data!("rsa1024.pub.pem")], file(data!("rsa1024.pem")));
}

#[test]
fn rsa_der() {
    round_trip(&[data!("rsa2048.pub.der")], file(data!("rsa2048.der")));
}

#[test]
fn rsa_pkcs1_private_and_public() {
    round_trip(
        &[data!("rsa2048.pub.pem")],
        file(data!("rsa2048-pkcs1.pem")),
    );
    round_trip(
        &[data!("rsa2048-pkcs1.pub.pem")],
        file(data!("rsa2048.pem")),
    );
}

#[test]
fn rsa_legacy_encrypted_pem() {
    round_trip(
        &[data!("rsa2048.pub.pem")],
        file_pw(data!("rsa2048-legacy-enc.pem"), "password"),
    );
}

#[test]
fn rsa_pbes2_encrypted_pkcs8_pem_and_der() {
    round_trip(
        &[data!("rsa2048.pub.pem")],
        file_pw(data!("rsa2048-pbes2.pem"), "password"),
    );
    round_trip(
        &[data!("rsa2048.pub.pem")],
        file_pw(data!("rsa2048-pbes2.der"), "password"),
    );
}

#[test]
fn ec_p256_sec1_pem_and_encrypted() {
    let blob = round_trip(&[data!("ec-p256.pub.pem")], file(data!("ec-p256-sec1.pem")));
    let p = decode_obj(&obj(&blob)["protected"]);
    assert_eq!(p["alg"], "ECDH-ES+A256KW");
    assert_eq!(p["enc"], "A256GCM");
    let epk = p["epk"].as_object().unwrap();
    assert_eq!(keys_of(epk), ["crv", "kty", "x", "y"]);
    assert_eq!(epk["kty"], "EC");
    assert_eq!(epk["crv"], "P-256");
    let ek = B64URL
        .decode(obj(&blob)["encrypted_key"].as_str().unwrap())
        .unwrap();
    assert_eq!(ek.len(), 40);
    unwrap_with(
        vec![file_pw(data!("ec-p256-legacy-enc.pem"), "password")],
        &blob,
    )
    .unwrap();
}

#[test]
fn ec_p384_pkcs8_pem() {
    let blob = round_trip(&[data!("ec-p384.pub.pem")], file(data!("ec-p384.pem")));
    assert_eq!(decode_obj(&obj(&blob)["protected"])["epk"]["crv"], "P-384");
}

#[test]
fn ec_p521_sec1_der() {
    let blob = round_trip(&[data!("ec-p521.pub.der")], file(data!("ec-p521-sec1.der")));
    assert_eq!(decode_obj(&obj(&blob)["protected"])["epk"]["crv"], "P-521");
}

// ---------------------------------------------------------------- round trips: generated

#[test]
fn generated_rsa_and_ec_keys_in_every_der_and_pem_form() {
    for bits in [1024, 2048, 3072] {
        let (rsa, pub_pem, priv_pem) = rsa_pair(bits);
        round_trip(&[&pub_pem], file(&priv_pem));
        round_trip(
            &[&rsa.public_key_to_der_pkcs1().unwrap()],
            file(&rsa.private_key_to_der().unwrap()),
        );
        round_trip(&[&pub_pem], file(&rsa.private_key_to_pem().unwrap()));
    }
    for (nid, curve) in [
        (Nid::X9_62_PRIME256V1, Curve::P256),
        (Nid::SECP384R1, Curve::P384),
        (Nid::SECP521R1, Curve::P521),
    ] {
        let (ec, pub_pem, priv_pem) = ec_pair(nid);
        assert_eq!(
            parse_public_key(&pub_pem).unwrap().kind(),
            KeyKind::Ec(curve)
        );
        round_trip(&[&pub_pem], file(&priv_pem));
        round_trip(&[&pub_pem], file(&ec.private_key_to_der().unwrap()));
        round_trip(&[&pub_pem], file(&ec.private_key_to_pem().unwrap()));
    }
}

#[test]
fn rsa_jwk_without_alg_uses_rsa_oaep() {
    let (rsa, pub_pem, priv_pem) = rsa_pair(2048);
    let (pub_jwk, priv_jwk) = rsa_jwk(&rsa, "");
    let blob = round_trip(&[&pub_jwk], file(&priv_jwk));
    assert_eq!(
        Value::Object(decode_obj(&obj(&blob)["protected"])),
        json!({"alg": "RSA-OAEP", "enc": "A256GCM"})
    );
    // JWK and PEM forms of one key are interchangeable.
    round_trip(&[&pub_jwk], file(&priv_pem));
    round_trip(&[&pub_pem], file(&priv_jwk));
}

#[test]
fn rsa_oaep_256_via_jwk_alg_and_kid() {
    let (rsa, _, priv_pem) = rsa_pair(2048);
    let (pub_jwk, priv_jwk) = rsa_jwk(&rsa, r#","alg":"RSA-OAEP-256","kid":"alice","use":"enc""#);
    let blob = round_trip(&[&pub_jwk], file(&priv_pem));
    assert_eq!(
        Value::Object(decode_obj(&obj(&blob)["protected"])),
        json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "alice"})
    );
    // A private JWK's own kid and alg do not restrict what it decrypts.
    unwrap_with(vec![file(&priv_jwk)], &blob).unwrap();
    let (_, other_kid) = rsa_jwk(&rsa, r#","kid":"bob","alg":"RSA-OAEP""#);
    unwrap_with(vec![file(&other_kid)], &blob).unwrap();
    assert_eq!(W.recipients(&blob).unwrap(), ["kid:alice alg:RSA-OAEP-256"]);
}

#[test]
fn rsa_private_jwk_without_crt_parameters() {
    let (rsa, pub_pem, _) = rsa_pair(2048);
    let jwk = format!(
        r#"{{"kty":"RSA","n":"{}","e":"{}","d":"{}","p":"{}","q":"{}"}}"#,
        b(rsa.n()),
        b(rsa.e()),
        b(rsa.d()),
        b(rsa.p().unwrap()),
        b(rsa.q().unwrap())
    );
    round_trip(&[&pub_pem], file(jwk.as_bytes()));
}

#[test]
fn ec_jwks_with_each_ecdh_algorithm() {
    for (nid, crv) in [
        (Nid::X9_62_PRIME256V1, "P-256"),
        (Nid::SECP384R1, "P-384"),
        (Nid::SECP521R1, "P-521"),
    ] {
        let (ec, _, priv_pem) = ec_pair(nid);
        for alg in ["ECDH-ES+A128KW", "ECDH-ES+A192KW", "ECDH-ES+A256KW"] {
            let (pub_jwk, priv_jwk) = ec_jwk(&ec, crv, &format!(r#","alg":"{alg}""#));
            let blob = round_trip(&[&pub_jwk], file(&priv_jwk));
            let p = decode_obj(&obj(&blob)["protected"]);
            assert_eq!(p["alg"], alg);
            assert_eq!(p["epk"]["crv"], crv);
            unwrap_with(vec![file(&priv_pem)], &blob).unwrap();
        }
    }
}

/// Go gives an EC JWK without `alg` RSA-OAEP and fails; this crate uses ECDH-ES+A256KW.
#[test]
fn ec_jwk_without_alg_is_ecdh_es_a256kw() {
    let (ec, _, priv_pem) = ec_pair(Nid::X9_62_PRIME256V1);
    let (pub_jwk, _) = ec_jwk(&ec, "P-256", r#","kid":"ec-1""#);
    let blob = round_trip(&[&pub_jwk], file(&priv_pem));
    let p = decode_obj(&obj(&blob)["protected"]);
    assert_eq!(p["alg"], "ECDH-ES+A256KW");
    assert_eq!(p["kid"], "ec-1");
}

// ---------------------------------------------------------------- several recipients

/// josekit's general-JSON decryption would stop at the first RSA recipient; the second
/// recipient's key must still work.
#[test]
fn two_rsa_recipients_second_key_decrypts() {
    let (_, pub1, priv1) = rsa_pair(2048);
    let (_, pub2, priv2) = rsa_pair(2048);
    let blob = wrap_for(&[&pub1, &pub2]);
    for key in [&priv2, &priv1] {
        assert_eq!(unwrap_with(vec![file(key)], &blob).unwrap().expose(), OPTS);
    }
    let (_, _, stranger) = rsa_pair(2048);
    let c = causes(unwrap_with(vec![file(&stranger)], &blob).unwrap_err());
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(
        c[1].contains("private key 1 (RSA-2048), recipient 2 (RSA-OAEP)"),
        "{c:?}"
    );
}

#[test]
fn two_ec_recipients_on_one_curve_second_key_decrypts() {
    let (_, pub1, _) = ec_pair(Nid::X9_62_PRIME256V1);
    let (_, pub2, priv2) = ec_pair(Nid::X9_62_PRIME256V1);
    let blob = wrap_for(&[&pub1, &pub2]);
    unwrap_with(vec![file(&priv2)], &blob).unwrap();
}

#[test]
fn three_mixed_recipients_general_json_shape() {
    let (rsa, _, rsa_priv) = rsa_pair(2048);
    let (rsa_pub_jwk, _) = rsa_jwk(&rsa, r#","kid":"rsa-kid""#);
    let (_, ec_pub, ec_priv) = ec_pair(Nid::SECP384R1);
    let (ec2, _, _) = ec_pair(Nid::X9_62_PRIME256V1);
    let (ec2_pub_jwk, ec2_priv_jwk) = ec_jwk(&ec2, "P-256", r#","alg":"ECDH-ES+A128KW""#);
    let blob = wrap_for(&[&rsa_pub_jwk, &ec_pub, &ec2_pub_jwk]);
    for key in [&rsa_priv, &ec_priv, &ec2_priv_jwk] {
        assert_eq!(unwrap_with(vec![file(key)], &blob).unwrap().expose(), OPTS);
    }

    let o = obj(&blob);
    assert_eq!(
        keys_of(&o),
        ["ciphertext", "iv", "protected", "recipients", "tag"]
    );
    assert_eq!(
        Value::Object(decode_obj(&o["protected"])),
        json!({"enc": "A256GCM"})
    );
    let r = o["recipients"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    for entry in r {
        assert_eq!(
            keys_of(entry.as_object().unwrap()),
            ["encrypted_key", "header"]
        );
    }
    assert_eq!(r[0]["header"], json!({"alg": "RSA-OAEP", "kid": "rsa-kid"}));
    let h1 = r[1]["header"].as_object().unwrap();
    assert_eq!(keys_of(h1), ["alg", "epk"]);
    assert_eq!(h1["alg"], "ECDH-ES+A256KW");
    assert_eq!(h1["epk"]["crv"], "P-384");
    assert_eq!(r[2]["header"]["alg"], "ECDH-ES+A128KW");
    assert_eq!(
        B64URL
            .decode(r[2]["encrypted_key"].as_str().unwrap())
            .unwrap()
            .len(),
        40
    );

    assert_eq!(
        W.recipients(&blob).unwrap(),
        [
            "kid:rsa-kid alg:RSA-OAEP",
            "[jwe] alg:ECDH-ES+A256KW",
            "[jwe] alg:ECDH-ES+A128KW"
        ]
    );
}

#[test]
fn keys_are_tried_in_order_and_unusable_ones_skipped() {
    let (_, pub1, priv1) = rsa_pair(2048);
    let (_, _, other) = ec_pair(Nid::X9_62_PRIME256V1);
    let blob = wrap_for(&[&pub1]);
    let keys = vec![
        file(data!("cert.pem")),
        file(data!("ed25519.pem")),
        file(data!("ec-secp256k1.pem")),
        file(&pub1),
        file(&other),
        file(data!("rsa2048.pem")),
        file(&priv1),
    ];
    assert_eq!(unwrap_with(keys, &blob).unwrap().expose(), OPTS);
}

// ---------------------------------------------------------------- invalid

#[test]
fn wrong_key_is_no_matching_key_without_key_material() {
    let blob = wrap_for(&[data!("rsa2048.pub.pem")]);
    let (_, _, other) = rsa_pair(2048);
    let keys = vec![
        file(&other),
        file(data!("cert.pem")),
        file(data!("ec-p384.pem")),
        file(data!("ed25519.pem")),
        file(data!("rsa2048.pub.pem")),
        file(b"garbage"),
    ];
    let err = unwrap_with(keys, &blob).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("jwe: no suitable key found"), "{text}");
    assert!(!text.contains("BEGIN") && !text.contains("MII"), "{text}");
    let c = causes(err);
    assert_eq!(c.len(), 6, "{c:?}");
    assert!(
        c[0].starts_with("private key 1 (RSA-2048), recipient 1 (RSA-OAEP): key decryption failed"),
        "{c:?}"
    );
    assert!(c[1].starts_with("private key 2: skipped"), "{c:?}");
    assert!(
        c[2].contains("no recipient uses an algorithm for this key type"),
        "{c:?}"
    );
    assert!(c[3].contains("not supported by JWE"), "{c:?}");
    assert!(c[4].contains("does not hold a private key"), "{c:?}");
    assert!(c[5].contains("not a PEM, DER or JWK private key"), "{c:?}");
}

#[test]
fn no_key() {
    let blob = wrap_for(&[data!("rsa2048.pub.pem")]);
    assert!(!W.has_possible_keys(&DecryptConfig::default()));
    let c = causes(unwrap_with(vec![], &blob).unwrap_err());
    assert_eq!(c, ["no private key was given"]);
}

#[test]
fn public_key_given_as_private() {
    let blob = wrap_for(&[data!("rsa2048.pub.pem")]);
    let c = causes(unwrap_with(vec![file(data!("rsa2048.pub.pem"))], &blob).unwrap_err());
    assert_eq!(c.len(), 1);
    assert!(c[0].contains("invalid private key"), "{c:?}");
    let (rsa, _, _) = rsa_pair(2048);
    let (pub_jwk, _) = rsa_jwk(&rsa, "");
    let c = causes(unwrap_with(vec![file(&pub_jwk)], &blob).unwrap_err());
    assert!(c[0].contains("JWK is not a private key"), "{c:?}");
}

#[test]
fn missing_and_wrong_passwords() {
    let blob = wrap_for(&[data!("rsa2048.pub.pem")]);
    for enc in [
        data!("rsa2048-legacy-enc.pem"),
        data!("rsa2048-pbes2.pem"),
        data!("rsa2048-pbes2.der"),
        data!("ec-p256-legacy-enc.pem"),
    ] {
        let err = unwrap_with(vec![file(enc)], &blob).unwrap_err();
        assert!(matches!(err, Error::MissingPassword { .. }), "{err:?}");
        assert!(err.is_password_error());
        let err = unwrap_with(vec![file_pw(enc, "Password")], &blob).unwrap_err();
        assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");
        assert!(err.is_password_error());
        // A password error stops the search even when a later key would work...
        let (_, _, other) = rsa_pair(1024);
        let err = unwrap_with(
            vec![file(&other), file(enc), file(data!("rsa2048.pem"))],
            &blob,
        )
        .unwrap_err();
        assert!(matches!(err, Error::MissingPassword { .. }), "{err:?}");
        // ...but not when an earlier key already worked.
        unwrap_with(vec![file(data!("rsa2048.pem")), file(enc)], &blob).unwrap();
    }
}

#[test]
fn garbage_and_truncated_blobs_are_malformed() {
    let blob = wrap_for(&[data!("rsa2048.pub.pem")]);
    let keys = || vec![file(data!("rsa2048.pem"))];
    for bad in [
        &b"garbage"[..],
        b"",
        b"{}",
        b"{\"ciphertext\":1}",
        &blob[..blob.len() / 2],
        &blob[..blob.len() - 1],
        b"\x00\x01\x02",
    ] {
        let err = unwrap_with(keys(), bad).unwrap_err();
        assert!(matches!(err, Error::MalformedBlob { .. }), "{err:?}");
        assert!(W.recipients(bad).is_err());
    }
}

/// Replaces member `name` of a flattened or general JWE with `f(old)`.
fn tamper(blob: &[u8], f: impl Fn(&mut Map<String, Value>)) -> Vec<u8> {
    let mut o = obj(blob);
    f(&mut o);
    serde_json::to_vec(&o).unwrap()
}

fn flip(v: &Value) -> Value {
    let mut bytes = B64URL.decode(v.as_str().unwrap()).unwrap();
    bytes[0] ^= 0x80;
    Value::String(B64URL.encode(bytes))
}

#[test]
fn tampering_is_detected() {
    for (public, private, bad_key) in [
        (
            data!("rsa2048.pub.pem"),
            data!("rsa2048.pem"),
            "key decryption failed",
        ),
        (
            data!("ec-p384.pub.pem"),
            data!("ec-p384.pem"),
            "key unwrapping failed",
        ),
    ] {
        let blob = wrap_for(&[public]);
        let mut tampered = Vec::new();
        for (member, want) in [
            ("ciphertext", "authentication failed"),
            ("tag", "authentication failed"),
            ("iv", "authentication failed"),
            ("encrypted_key", bad_key),
        ] {
            let t = tamper(&blob, |o| {
                let v = flip(&o[member]);
                o.insert(member.to_owned(), v);
            });
            tampered.push((t, want));
        }
        // A protected header with the same meaning but other bytes: the AAD changes.
        let t = tamper(&blob, |o| {
            let mut p = decode_obj(&o["protected"]);
            p.insert("x".into(), json!(1));
            let enc = B64URL.encode(serde_json::to_vec(&p).unwrap());
            o.insert("protected".into(), Value::String(enc));
        });
        tampered.push((t, "authentication failed"));
        // Additional authenticated data that was not there.
        let t = tamper(&blob, |o| {
            o.insert("aad".into(), json!("YWFk"));
        });
        tampered.push((t, "authentication failed"));
        for (t, want) in tampered {
            let c = causes(unwrap_with(vec![file(private)], &t).unwrap_err());
            assert_eq!(c.len(), 1, "{c:?}");
            assert!(c[0].contains(want), "{c:?} lacks {want}");
        }
    }
}

/// josekit's ECDH-ES+AxxxKW decrypter panics on an encrypted key under 8 bytes.
#[test]
fn short_encrypted_key_for_ecdh_does_not_panic() {
    let blob = wrap_for(&[data!("ec-p256.pub.pem")]);
    for (ek, want) in [
        (String::new(), "no encrypted_key"),
        (B64URL.encode([0u8; 1]), "wrong length"),
        (B64URL.encode([0u8; 7]), "wrong length"),
        (B64URL.encode([0u8; 39]), "wrong length"),
        (B64URL.encode([0u8; 40]), "key unwrapping failed"),
    ] {
        let t = tamper(&blob, |o| {
            o.insert("encrypted_key".into(), json!(ek));
        });
        let c = causes(unwrap_with(vec![file(data!("ec-p256-sec1.pem"))], &t).unwrap_err());
        assert!(c[0].contains(want), "{c:?} lacks {want}");
    }
}

#[test]
fn epk_on_another_curve_is_rejected() {
    let blob = wrap_for(&[data!("ec-p256.pub.pem")]);
    let p384 = decode_obj(&obj(&wrap_for(&[data!("ec-p384.pub.pem")]))["protected"]);
    let t = tamper(&blob, |o| {
        let mut p = decode_obj(&o["protected"]);
        p.insert("epk".into(), p384["epk"].clone());
        let enc = B64URL.encode(serde_json::to_vec(&p).unwrap());
        o.insert("protected".into(), Value::String(enc));
    });
    let c = causes(unwrap_with(vec![file(data!("ec-p256-sec1.pem"))], &t).unwrap_err());
    assert!(c[0].contains("key unwrapping failed"), "{c:?}");
}

#[test]
fn unsupported_algorithms() {
    // In a JWK to wrap for.
    let (rsa, _, _) = rsa_pair(2048);
    for alg in ["RSA1_5", "RSA-OAEP-384", "ECDH-ES", "A256KW", "dir"] {
        let (pub_jwk, _) = rsa_jwk(&rsa, &format!(r#","alg":"{alg}""#));
        match W.wrap_keys(&ec_cfg(&[&pub_jwk]), OPTS) {
            Err(Error::UnsupportedAlgorithm { scheme, algorithm }) => {
                assert_eq!((scheme.as_str(), algorithm.as_str()), ("jwe", alg));
            }
            other => panic!("{alg}: {other:?}"),
        }
    }
    // In a blob to unwrap: every recipient's algorithm unknown.
    let blob = wrap_for(&[data!("rsa2048.pub.pem")]);
    let t = tamper(&blob, |o| {
        let p = B64URL.encode(br#"{"alg":"RSA1_5","enc":"A256GCM"}"#);
        o.insert("protected".into(), Value::String(p));
    });
    let err = unwrap_with(vec![file(data!("rsa2048.pem"))], &t).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedAlgorithm { algorithm, .. } if algorithm == "RSA1_5"),
        "{err:?}"
    );
    // One unknown recipient among known ones is skipped.
    let blob = wrap_for(&[data!("ec-p256.pub.pem"), data!("rsa2048.pub.pem")]);
    let t = tamper(&blob, |o| {
        o["recipients"][0]["header"]["alg"] = json!("A128KW");
    });
    unwrap_with(vec![file(data!("rsa2048.pem"))], &t).unwrap();
    let c = causes(unwrap_with(vec![file(data!("ec-p256-sec1.pem"))], &t).unwrap_err());
    assert_eq!(c[0], "recipient 1: unsupported algorithm A128KW");
}

#[test]
fn jwk_algorithm_must_fit_the_key() {
    let (rsa, _, _) = rsa_pair(2048);
    let (pub_jwk, _) = rsa_jwk(&rsa, r#","alg":"ECDH-ES+A256KW""#);
    let err = W.wrap_keys(&ec_cfg(&[&pub_jwk]), OPTS).unwrap_err();
    assert!(matches!(err, Error::InvalidRecipient { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("cannot be used with a RSA-2048 key"),
        "{err}"
    );
}

#[test]
fn invalid_recipients() {
    let (rsa512, _, _) = rsa_pair(512);
    let small = PKey::from_rsa(rsa512).unwrap().public_key_to_pem().unwrap();
    let (ec, _, _) = ec_pair(Nid::X9_62_PRIME256V1);
    let (_, priv_jwk) = ec_jwk(&ec, "P-256", "");
    let ed = PKey::private_key_from_pem(data!("ed25519.pem"))
        .unwrap()
        .public_key_to_pem()
        .unwrap();
    for (key, want) in [
        (&b"garbage"[..], "not a PEM, DER or JWK public key"),
        (data!("rsa2048.pem"), "does not hold a public key"),
        (data!("cert.pem"), "does not hold a public key"),
        (&priv_jwk, "JWK is not a public key"),
        (&small, "too small"),
        (&ed, "not supported by JWE"),
    ] {
        // One bad key among good ones fails the whole wrap.
        let err = W
            .wrap_keys(&ec_cfg(&[data!("rsa2048.pub.pem"), key]), OPTS)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidRecipient { .. }), "{err:?}");
        assert!(err.to_string().contains(want), "{err} lacks {want}");
    }
}

// ---------------------------------------------------------------- what Go may write

#[test]
fn reads_general_json_with_go_jose_top_level_encrypted_key() {
    let blob = wrap_for(&[data!("rsa2048.pub.pem"), data!("ec-p256.pub.pem")]);
    let t = tamper(&blob, |o| {
        let ek = o["recipients"][0]["encrypted_key"].clone();
        o.insert("encrypted_key".into(), ek);
    });
    unwrap_with(vec![file(data!("ec-p256-sec1.pem"))], &t).unwrap();
    unwrap_with(vec![file(data!("rsa2048.pem"))], &t).unwrap();
}

#[test]
fn reads_compact_serialization() {
    let public = parse_public_key(data!("rsa2048.pub.pem")).unwrap();
    let enc = encrypter(&public).unwrap();
    let mut header = JweHeader::new();
    header.set_content_encryption("A128GCM");
    let compact = josekit::jwe::serialize_compact(OPTS, &header, enc.as_ref()).unwrap();
    assert_eq!(compact.split('.').count(), 5);
    let opts = unwrap_with(
        vec![file(data!("rsa2048.pem"))],
        format!(" {compact}\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(opts.expose(), OPTS);
    assert_eq!(W.recipients(compact.as_bytes()).unwrap(), ["[jwe]"]);
}

#[test]
fn reads_every_content_encryption() {
    let rsa = encrypter(&parse_public_key(data!("rsa2048.pub.pem")).unwrap()).unwrap();
    let ec = encrypter(&parse_public_key(data!("ec-p521.pub.der")).unwrap()).unwrap();
    for enc in content::tests::ALL {
        let mut shared = JweHeaderSet::new();
        shared.set_content_encryption(enc, true);
        let blob = serialize_general_json(
            OPTS,
            Some(&shared),
            &[(None, rsa.as_ref()), (None, ec.as_ref())],
            Some(b"extra aad"),
        )
        .unwrap();
        for key in [data!("rsa2048.pem"), data!("ec-p521-sec1.der")] {
            let opts = unwrap_with(vec![file(key)], blob.as_bytes()).unwrap();
            assert_eq!(opts.expose(), OPTS, "{enc}");
        }
        let t = tamper(blob.as_bytes(), |o| {
            let v = flip(&o["tag"]);
            o.insert("tag".into(), v);
        });
        let c = causes(unwrap_with(vec![file(data!("rsa2048.pem"))], &t).unwrap_err());
        assert!(c[0].contains("authentication failed"), "{enc}: {c:?}");
    }
}

// ---------------------------------------------------------------- the trait and keys

#[test]
fn trait_basics() {
    let w: &'static dyn KeyWrapper = &JweKeyWrapper;
    assert_eq!(w.scheme(), "jwe");
    assert_eq!(w.annotation_key(), "org.opencontainers.image.enc.keys.jwe");
    assert!(format!("{w:?}").contains("JweKeyWrapper"));
    assert_eq!(w.wrap_keys(&EncryptConfig::default(), OPTS).unwrap(), None);
    assert!(!w.has_recipients(&EncryptConfig::default()));
    assert!(w.has_recipients(&ec_cfg(&[b"anything"])));
    assert!(w.has_possible_keys(&dc_cfg(vec![file(b"anything")])));
    let blob = wrap_for(&[data!("rsa2048.pub.pem"), data!("ec-p256.pub.pem")]);
    assert_eq!(w.recipients(&blob).unwrap(), ["[jwe]"]);
    assert!(w.key_ids(&blob).unwrap().is_empty());
    // Each wrap uses a fresh content key and IV.
    assert_ne!(
        blob,
        wrap_for(&[data!("rsa2048.pub.pem"), data!("ec-p256.pub.pem")])
    );
}

#[test]
fn recipients_escape_control_characters() {
    let (rsa, _, _) = rsa_pair(2048);
    let (pub_jwk, _) = rsa_jwk(&rsa, r#","kid":"a\u001b[31mb""#);
    let blob = wrap_for(&[&pub_jwk]);
    assert_eq!(
        W.recipients(&blob).unwrap(),
        ["kid:a\\u{1b}[31mb alg:RSA-OAEP"]
    );
}

#[test]
fn key_classification() {
    for private in [
        data!("rsa2048.pem"),
        data!("rsa2048-pkcs1.pem"),
        data!("rsa2048.der"),
        data!("rsa2048-legacy-enc.pem"),
        data!("rsa2048-pbes2.pem"),
        data!("rsa2048-pbes2.der"),
        data!("rsa1024.pem"),
        data!("ec-p256-sec1.pem"),
        data!("ec-p256-legacy-enc.pem"),
        data!("ec-p384.pem"),
        data!("ec-p521-sec1.der"),
        // Private keys JWE cannot use are still private keys (as in Go).
        data!("ed25519.pem"),
        data!("ec-secp256k1.pem"),
    ] {
        assert!(is_private_key(private));
        assert!(!is_public_key(private));
    }
    for public in [
        data!("rsa2048.pub.pem"),
        data!("rsa2048.pub.der"),
        data!("rsa2048-pkcs1.pub.pem"),
        data!("rsa1024.pub.pem"),
        data!("ec-p256.pub.pem"),
        data!("ec-p384.pub.pem"),
        data!("ec-p521.pub.der"),
    ] {
        assert!(is_public_key(public));
        assert!(!is_private_key(public));
    }
    for neither in [
        data!("cert.pem"),
        b"garbage",
        b"",
        b"{\"kty\":\"oct\",\"k\":\"AA\"}",
    ] {
        assert!(!is_private_key(neither) && !is_public_key(neither));
    }
    let (rsa, _, _) = rsa_pair(2048);
    let (pub_jwk, priv_jwk) = rsa_jwk(&rsa, "");
    assert!(is_public_key(&pub_jwk) && !is_private_key(&pub_jwk));
    assert!(is_private_key(&priv_jwk) && !is_public_key(&priv_jwk));
}

#[test]
fn parsed_keys() {
    let k = parse_private_key(data!("rsa2048-legacy-enc.pem"), Some(&"password".into())).unwrap();
    assert_eq!(k.kind(), KeyKind::Rsa { bits: 2048 });
    assert_eq!(k.key_id(), None);
    let debug = format!("{k:?}");
    assert_eq!(
        debug,
        "PrivateKey { kind: Rsa { bits: 2048 }, key_id: None, .. }"
    );
    let public = k.public_key().unwrap();
    assert_eq!(
        public.to_spki_der().unwrap(),
        parse_public_key(data!("rsa2048.pub.der"))
            .unwrap()
            .to_spki_der()
            .unwrap()
    );
    assert!(!public.is_jwk());

    let (ec, _, _) = ec_pair(Nid::SECP521R1);
    let (pub_jwk, priv_jwk) = ec_jwk(&ec, "P-521", r#","kid":"k1","alg":"ECDH-ES+A192KW""#);
    let p = parse_public_key(&pub_jwk).unwrap();
    assert!(p.is_jwk());
    assert_eq!(p.kind(), KeyKind::Ec(Curve::P521));
    assert_eq!(p.key_id(), Some("k1"));
    assert_eq!(p.jwk_algorithm(), Some("ECDH-ES+A192KW"));
    assert_eq!(p.key_algorithm().unwrap(), KeyAlgorithm::EcdhEsA192kw);
    assert!(format!("{p:?}").contains("k1"));
    let s = parse_private_key(&priv_jwk, None).unwrap();
    assert_eq!(s.key_id(), Some("k1"));
    assert_eq!(s.kind().to_string(), "EC P-521");

    // A password given for an unencrypted key is ignored, as in Go.
    parse_private_key(data!("rsa2048.pem"), Some(&"unused".into())).unwrap();
    for name in ["RSA-OAEP", "RSA-OAEP-256", "ECDH-ES+A128KW"] {
        assert_eq!(KeyAlgorithm::from_name(name).unwrap().to_string(), name);
    }
    assert_eq!(KeyAlgorithm::from_name("RSA1_5"), None);
}

#[test]
fn private_key_errors() {
    let err = parse_private_key(data!("ed25519.pem"), None).unwrap_err();
    assert!(matches!(err, Error::InvalidPrivateKey { .. }), "{err:?}");
    let err = parse_private_key(data!("ec-secp256k1.pem"), None).unwrap_err();
    assert!(
        err.to_string().contains("not on a supported curve"),
        "{err}"
    );
    let (rsa, _, _) = rsa_pair(512);
    let err = parse_private_key(&rsa.private_key_to_pem().unwrap(), None).unwrap_err();
    assert!(err.to_string().contains("too small"), "{err}");
    let err = parse_private_key(data!("rsa2048-pbes2.der"), None).unwrap_err();
    assert!(matches!(err, Error::MissingPassword { .. }), "{err:?}");
    let err = parse_private_key(data!("rsa2048-pbes2.der"), Some(&"x".into())).unwrap_err();
    assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");
    let long = "x".repeat(5000);
    let err = parse_private_key(data!("rsa2048-legacy-enc.pem"), Some(&long.into())).unwrap_err();
    assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");
}

// ---------------------------------------------------------------- limits (issue 11, M3)

/// A general JWE made from the flattened one `wrap_for` writes for one RSA key: `n - 1`
/// recipients with junk keys, then the real one, all sharing the protected header.
fn many_recipients(n: usize, extra_protected: Option<(&str, Value)>) -> Vec<u8> {
    let blob = wrap_for(&[data!("rsa2048.pub.pem")]);
    let mut o: Map<String, Value> = serde_json::from_slice(&blob).unwrap();
    let real = o.remove("encrypted_key").unwrap();
    if let Some((name, value)) = extra_protected {
        let p = o["protected"].as_str().unwrap();
        let mut header: Map<String, Value> =
            serde_json::from_slice(&B64URL.decode(p).unwrap()).unwrap();
        header.insert(name.to_owned(), value);
        let p = B64URL.encode(serde_json::to_vec(&header).unwrap());
        o.insert("protected".into(), Value::String(p));
    }
    let junk = json!({ "encrypted_key": B64URL.encode([7u8; 256]) });
    let mut recipients = vec![junk; n - 1];
    recipients.push(json!({ "encrypted_key": real }));
    o.insert("recipients".into(), Value::Array(recipients));
    serde_json::to_vec(&o).unwrap()
}

#[test]
fn at_most_max_recipients() {
    assert_eq!(MAX_RECIPIENTS, 1024);
    // At the limit, every recipient is tried and the last one opens it.
    let at_cap = many_recipients(MAX_RECIPIENTS, None);
    let opts = unwrap_with(vec![file(data!("rsa2048.pem"))], &at_cap).unwrap();
    assert_eq!(opts.expose(), OPTS);
    assert_eq!(W.recipients(&at_cap).unwrap(), ["[jwe]"]);
    // One more is refused, before any key is tried, by unwrap and recipients alike.
    let over = many_recipients(MAX_RECIPIENTS + 1, None);
    for err in [
        unwrap_with(vec![file(data!("rsa2048.pem"))], &over).unwrap_err(),
        W.recipients(&over).unwrap_err(),
    ] {
        assert_too_many_recipients(&err);
    }
}

/// `err` is the limit on recipients, [`MAX_RECIPIENTS`].
#[track_caller]
fn assert_too_many_recipients(err: &Error) {
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                what: "recipients",
                limit: MAX_RECIPIENTS,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn wrapping_for_more_recipients_than_can_be_read_is_refused() {
    let keys = vec![data!("rsa2048.pub.pem"); MAX_RECIPIENTS + 1];
    let err = W.wrap_keys(&ec_cfg(&keys), OPTS).unwrap_err();
    assert_too_many_recipients(&err);
}

#[test]
fn twenty_thousand_empty_recipients_are_refused_quickly() {
    // The review's descriptor: 20,000 empty recipients, no key needed, used to ask for
    // a copy of the protected header each.
    let protected = B64URL.encode(format!(
        r#"{{"alg":"RSA-OAEP","enc":"A256GCM","pad":"{}"}}"#,
        "x".repeat(100_000)
    ));
    let blob = format!(
        r#"{{"protected":"{protected}","recipients":[{}],"iv":"AAAAAAAAAAAAAAAA","ciphertext":"","tag":"AAAAAAAAAAAAAAAAAAAAAA"}}"#,
        vec!["{}"; 20_000].join(",")
    );
    let started = std::time::Instant::now();
    for err in [
        unwrap_with(vec![file(data!("rsa2048.pem"))], blob.as_bytes()).unwrap_err(),
        W.recipients(blob.as_bytes()).unwrap_err(),
    ] {
        assert_eq!(
            err.to_string(),
            "jwe: wrapped key exceeds a limit: more than 1024 recipients"
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn recipients_output_does_not_repeat_a_long_shared_kid() {
    let kid = "k".repeat(100_000);
    let blob = many_recipients(MAX_RECIPIENTS, Some(("kid", Value::String(kid))));
    let listed = W.recipients(&blob).unwrap();
    assert_eq!(listed.len(), MAX_RECIPIENTS);
    let expected = format!("kid:{}... alg:RSA-OAEP", "k".repeat(256));
    assert!(listed.iter().all(|r| *r == expected), "{}", listed[0]);
}

/// Issue 11, M5: an encrypted key file is parsed (its password derived) once for all the
/// wrapped keys of a layer, not once per blob.
#[test]
fn each_key_is_parsed_once_for_all_blobs() {
    let (rsa, public, _) = rsa_pair(2048);
    let locked = PKey::from_rsa(rsa)
        .unwrap()
        .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"pw")
        .unwrap();
    let (_, other_public, _) = rsa_pair(2048);
    // Three blobs for someone else, then one for our key.
    let blobs: Vec<Vec<u8>> = (0..3)
        .map(|_| wrap_for(&[&other_public]))
        .chain([wrap_for(&[&public])])
        .collect();
    let files = vec![file_pw(&locked, "pw")];
    let mut keys = key_search(&files);
    let mut opened = None;
    for blob in &blobs {
        if let Ok(json) = unwrap(&mut keys, blob) {
            opened = Some(json);
        }
    }
    assert_eq!(opened.unwrap().expose(), OPTS);
    assert_eq!(keys.reads(), 1);
    // Through the trait: the same answer, and a wrong password still stops at once.
    let dc = dc_cfg(vec![file_pw(&locked, "pw")]);
    assert_eq!(W.unwrap_first(&dc, &blobs).unwrap().expose(), OPTS);
    let dc = dc_cfg(vec![file_pw(&locked, "wrong")]);
    let errors = W.unwrap_first(&dc, &blobs).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].is_password_error(), "{}", errors[0]);
}

/// Issue 11: one layer cannot make us try more than MAX_UNWRAP_ATTEMPTS key operations.
#[test]
fn a_layer_cannot_ask_for_a_million_key_operations() {
    let (_, public, private) = rsa_pair(2048);
    let (_, other_public, _) = rsa_pair(2048);
    // 64 recipients (all someone else's, all RSA) per blob, 65 blobs: 4160 > 4096 attempts.
    let pubs: Vec<&[u8]> = vec![other_public.as_slice(); 64];
    let blob = wrap_for(&pubs);
    let mut blobs = vec![blob; 65];
    blobs.push(wrap_for(&[&public]));
    let dc = dc_cfg(vec![file(&private)]);
    let errors = W.unwrap_first(&dc, &blobs).unwrap_err();
    assert!(
        matches!(errors.last(), Some(Error::LimitExceeded { limit, .. }) if *limit == MAX_UNWRAP_ATTEMPTS),
        "{:?}",
        errors.last()
    );
    // Under the budget, the last blob still opens.
    let mut few = vec![wrap_for(&pubs); 3];
    few.push(wrap_for(&[&public]));
    assert_eq!(W.unwrap_first(&dc, &few).unwrap().expose(), OPTS);
}
