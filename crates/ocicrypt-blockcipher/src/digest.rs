//! Plaintext digests in OCI notation (`sha256:<hex>`).

use ring::digest;

use crate::Error;

/// A digest the plaintext is expected to have, parsed from `PrivateOptions::digest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExpectedDigest {
    pub(crate) algorithm: &'static digest::Algorithm,
    /// The canonical `<algorithm>:<lowercase hex>` form (as given; it was validated).
    pub(crate) text: String,
}

/// Parses an expected digest: `""` means none; `sha256:<64 lowercase hex>` and
/// `sha512:<128 lowercase hex>` are supported (the OCI image spec's registered algorithms,
/// which require lowercase hex).
pub(crate) fn parse_expected(digest: &str) -> Result<Option<ExpectedDigest>, Error> {
    if digest.is_empty() {
        return Ok(None);
    }
    // oci-spec checks the OCI grammar, and for the registered algorithms the length and
    // lowercase hex.
    let parsed: oci_spec::image::Digest = digest.parse().map_err(|_| Error::InvalidDigest {
        digest: digest.to_owned(),
    })?;
    let algorithm = match parsed.algorithm() {
        oci_spec::image::DigestAlgorithm::Sha256 => &digest::SHA256,
        oci_spec::image::DigestAlgorithm::Sha512 => &digest::SHA512,
        other => {
            return Err(Error::UnsupportedDigestAlgorithm {
                algorithm: other.to_string(),
            });
        }
    };
    Ok(Some(ExpectedDigest {
        algorithm,
        text: digest.to_owned(),
    }))
}

/// `<algorithm>:<lowercase hex>` of a finished digest.
pub(crate) fn format(d: &digest::Digest) -> String {
    let name = if d.algorithm() == &digest::SHA512 {
        "sha512"
    } else {
        "sha256"
    };
    format!("{name}:{}", hex::encode(d.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_EMPTY: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn format_matches_known_values() {
        assert_eq!(format(&digest::digest(&digest::SHA256, b"")), SHA256_EMPTY);
        assert_eq!(
            format(&digest::digest(&digest::SHA512, b"abc")),
            "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn accepted() {
        assert_eq!(parse_expected("").unwrap(), None);
        let d = parse_expected(SHA256_EMPTY).unwrap().unwrap();
        assert_eq!(d.algorithm, &digest::SHA256);
        assert_eq!(d.text, SHA256_EMPTY);
        let sha512 = format!("sha512:{}", "0a".repeat(64));
        assert_eq!(
            parse_expected(&sha512).unwrap().unwrap().algorithm,
            &digest::SHA512
        );
    }

    #[test]
    fn invalid() {
        for bad in [
            "sha256",
            "sha256:",
            ":abcd",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:abcd",
            "SHA256:abcd",
            "sha__256:abcd",
            "md5:ab/cd",
            // A registered algorithm with the wrong length is malformed, not unsupported.
            "sha384:abc",
            " sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            match parse_expected(bad) {
                Err(Error::InvalidDigest { digest }) => assert_eq!(digest, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn unsupported() {
        for (digest, alg) in [
            ("md5:d41d8cd98f00b204e9800998ecf8427e", "md5"),
            (
                "sha384:38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b",
                "sha384",
            ),
            (
                "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
                "multihash+base58",
            ),
            ("blake3:ABC=_-", "blake3"),
        ] {
            match parse_expected(digest) {
                Err(Error::UnsupportedDigestAlgorithm { algorithm }) => assert_eq!(algorithm, alg),
                other => panic!("{digest:?}: {other:?}"),
            }
        }
    }
}
