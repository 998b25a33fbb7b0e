//! JSON Web Keys (RFC 7517) of type `RSA` and `EC`, turned into OpenSSL keys.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::{Rsa, RsaPrivateKeyBuilder};
use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Failure;

/// Base64url as go-jose reads it: padding optional, non-zero trailing bits tolerated; written
/// without padding. JWKs here, and the JWE serialization of the `jwe` scheme.
pub const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The members of a JWK this crate reads. Unknown members (`use`, `key_ops`, `x5c`, ...)
/// are ignored, as Go ocicrypt (go-jose) ignores them. The private members are wiped on drop.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    d: Option<String>,
    #[serde(default)]
    p: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    dp: Option<String>,
    #[serde(default)]
    dq: Option<String>,
    #[serde(default)]
    qi: Option<String>,
}

/// The key in a JWK.
pub(crate) enum JwkKey {
    Public(PKey<Public>),
    Private(PKey<Private>),
}

/// A parsed JWK: its key and the `alg` and `kid` members.
pub(crate) struct Jwk {
    pub(crate) key: JwkKey,
    pub(crate) alg: Option<String>,
    pub(crate) kid: Option<String>,
}

/// Whether `data` looks like a JSON object (and so should be parsed as a JWK).
pub(crate) fn looks_like_json(data: &[u8]) -> bool {
    data.trim_ascii_start().first() == Some(&b'{')
}

/// Parses a JWK. A key with a `d` member is private, otherwise public.
pub(crate) fn parse(data: &[u8]) -> Result<Jwk, Failure> {
    let raw: RawJwk = serde_json::from_slice(data)
        .map_err(|e| Failure::with_source("could not parse input as JWK", e))?;
    let key = match raw.kty.as_str() {
        "RSA" => rsa_key(&raw)?,
        "EC" => ec_key(&raw)?,
        other => {
            return Err(Failure::new(format!(
                "JWK key type {other:?} is not supported (only RSA and EC)"
            )));
        }
    };
    Ok(Jwk {
        key,
        alg: raw.alg.clone(),
        kid: raw.kid.clone(),
    })
}

fn b64(name: &str, value: Option<&String>) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let value = value.ok_or_else(|| Failure::new(format!("JWK member {name:?} is missing")))?;
    B64URL
        .decode(value.as_bytes())
        .map(Zeroizing::new)
        .map_err(|e| Failure::with_source(format!("JWK member {name:?} is not base64url"), e))
}

fn bn(name: &str, value: Option<&String>) -> Result<BigNum, Failure> {
    let bytes = b64(name, value)?;
    BigNum::from_slice(&bytes).map_err(|e| Failure::with_source("invalid JWK number", e))
}

fn rsa_key(raw: &RawJwk) -> Result<JwkKey, Failure> {
    let bad = |e| Failure::with_source("invalid RSA JWK", e);
    let n = bn("n", raw.n.as_ref())?;
    let e = bn("e", raw.e.as_ref())?;
    if raw.d.is_none() {
        let rsa = Rsa::from_public_components(n, e).map_err(bad)?;
        return PKey::from_rsa(rsa).map(JwkKey::Public).map_err(bad);
    }
    // Go's go-jose requires p and q; the CRT parameters are optional.
    let d = bn("d", raw.d.as_ref())?;
    let p = bn("p", raw.p.as_ref())?;
    let q = bn("q", raw.q.as_ref())?;
    let rsa = match (&raw.dp, &raw.dq, &raw.qi) {
        (Some(_), Some(_), Some(_)) => Rsa::from_private_components(
            n,
            e,
            d,
            p,
            q,
            bn("dp", raw.dp.as_ref())?,
            bn("dq", raw.dq.as_ref())?,
            bn("qi", raw.qi.as_ref())?,
        )
        .map_err(bad)?,
        _ => RsaPrivateKeyBuilder::new(n, e, d)
            .and_then(|b| b.set_factors(p, q))
            .map_err(bad)?
            .build(),
    };
    if !rsa.check_key().map_err(bad)? {
        return Err(Failure::new("invalid RSA JWK: inconsistent key parameters"));
    }
    PKey::from_rsa(rsa).map(JwkKey::Private).map_err(bad)
}

fn ec_key(raw: &RawJwk) -> Result<JwkKey, Failure> {
    let bad = |e| Failure::with_source("invalid EC JWK", e);
    let nid = match raw.crv.as_deref() {
        Some("P-256") => Nid::X9_62_PRIME256V1,
        Some("P-384") => Nid::SECP384R1,
        Some("P-521") => Nid::SECP521R1,
        Some(other) => {
            return Err(Failure::new(format!(
                "EC JWK curve {other:?} is not supported (only P-256, P-384, P-521)"
            )));
        }
        None => return Err(Failure::new("JWK member \"crv\" is missing")),
    };
    let group = EcGroup::from_curve_name(nid).map_err(bad)?;
    let x = bn("x", raw.x.as_ref())?;
    let y = bn("y", raw.y.as_ref())?;
    // Checks that the point is on the curve.
    let public = EcKey::from_public_key_affine_coordinates(&group, &x, &y).map_err(bad)?;
    if raw.d.is_none() {
        return PKey::from_ec_key(public).map(JwkKey::Public).map_err(bad);
    }
    let d = bn("d", raw.d.as_ref())?;
    let point = public.public_key().to_owned(&group).map_err(bad)?;
    let private = EcKey::from_private_components(&group, &d, &point).map_err(bad)?;
    private
        .check_key()
        .map_err(|e| Failure::with_source("invalid EC JWK: d does not match x and y", e))?;
    PKey::from_ec_key(private).map(JwkKey::Private).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_detection() {
        assert!(looks_like_json(b"  \n{\"kty\":\"EC\"}"));
        assert!(!looks_like_json(b"-----BEGIN"));
        assert!(!looks_like_json(b""));
    }

    #[test]
    fn rejects_bad_jwks() {
        for (jwk, want) in [
            (&b"not json"[..], "could not parse input as JWK"),
            (br#"{"kty":"oct","k":"AAAA"}"#, "not supported"),
            (br#"{"kty":"RSA","e":"AQAB"}"#, "\"n\" is missing"),
            (br#"{"kty":"RSA","n":"!!","e":"AQAB"}"#, "not base64url"),
            (br#"{"kty":"EC","x":"AA","y":"AA"}"#, "\"crv\" is missing"),
            (
                br#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#,
                "invalid EC JWK",
            ),
            (
                br#"{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}"#,
                "not supported",
            ),
            (br#"{"kty":"OKP","crv":"X25519","x":"AA"}"#, "not supported"),
            (
                br#"{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}"#,
                "\"p\" is missing",
            ),
        ] {
            let err = parse(jwk).err().expect("must fail");
            assert!(err.reason().contains(want), "{}: {}", err.reason(), want);
        }
    }

    #[test]
    fn ec_private_key_must_match_public_point() {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let k1 = EcKey::generate(&group).unwrap();
        let k2 = EcKey::generate(&group).unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        k1.public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .unwrap();
        let enc = |b: &BigNum| B64URL.encode(b.to_vec_padded(32).unwrap());
        let jwk = format!(
            r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}","d":"{}"}}"#,
            enc(&x),
            enc(&y),
            enc(&k2.private_key().to_owned().unwrap())
        );
        let err = parse(jwk.as_bytes()).err().expect("must fail");
        assert!(err.reason().contains("does not match"), "{}", err.reason());
    }
}
