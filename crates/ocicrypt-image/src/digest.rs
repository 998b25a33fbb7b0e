//! SHA-256 of the bytes flowing through a reader or writer, and checking blob digests.

use std::io::{self, Read, Write};

use ring::digest::{Context, SHA256, SHA512};

/// What passed through a [`Hashing`] adapter or a pipe: the number of bytes and, if they
/// were hashed, `sha256:<hex>`.
#[derive(Debug)]
pub(crate) struct Summary {
    pub(crate) len: u64,
    pub(crate) digest: Option<String>,
}

/// A running SHA-256 (or none) and a byte count.
pub(crate) struct Tally {
    hash: Option<Context>,
    len: u64,
}

impl Tally {
    pub(crate) fn new(hash: bool) -> Self {
        Self {
            hash: hash.then(|| Context::new(&SHA256)),
            len: 0,
        }
    }

    pub(crate) fn add(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.hash {
            h.update(data);
        }
        self.len += data.len() as u64;
    }

    pub(crate) fn finish(self) -> Summary {
        Summary {
            len: self.len,
            digest: self
                .hash
                .map(|h| format!("sha256:{}", hex::encode(h.finish().as_ref()))),
        }
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    let mut t = Tally::new(true);
    t.add(bytes);
    t.finish().digest.unwrap_or_default()
}

/// Passes bytes through and counts them, hashing them with SHA-256 unless made with
/// `hash` off.
pub(crate) struct Hashing<T> {
    inner: T,
    tally: Tally,
}

impl<T> Hashing<T> {
    pub(crate) fn with(inner: T, hash: bool) -> Self {
        Self {
            inner,
            tally: Tally::new(hash),
        }
    }

    /// What passed, and the inner reader or writer.
    pub(crate) fn into_summary(self) -> (Summary, T) {
        (self.tally.finish(), self.inner)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tally.add(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.tally.add(buf.get(..n).unwrap_or_default());
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A digest we can name a blob by and verify: `sha256:` or `sha512:` with lowercase hex of
/// the right length (so that it cannot point outside a layout either).
pub(crate) fn checked(digest: &oci_spec::image::Digest) -> crate::Result<(&'static str, &str)> {
    use oci_spec::image::DigestAlgorithm;
    // A parsed `Digest` of a registered algorithm has the right length of lowercase hex.
    let alg = match digest.algorithm() {
        DigestAlgorithm::Sha256 => "sha256",
        DigestAlgorithm::Sha512 => "sha512",
        _ => {
            return Err(crate::Error::BadDigest {
                digest: digest.to_string(),
            });
        }
    };
    Ok((alg, digest.digest()))
}

/// Hashes with the algorithm of `expected` (SHA-256 or SHA-512).
pub(crate) struct Verifier {
    ctx: Context,
    expected: oci_spec::image::Digest,
}

impl Verifier {
    pub(crate) fn new(expected: &oci_spec::image::Digest) -> crate::Result<Self> {
        let (alg, _) = checked(expected)?;
        let algorithm = if alg == "sha256" { &SHA256 } else { &SHA512 };
        Ok(Self {
            ctx: Context::new(algorithm),
            expected: expected.clone(),
        })
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
    }

    /// Fails unless what was hashed has the expected digest.
    pub(crate) fn verify(self) -> crate::Result<()> {
        let alg = self.expected.algorithm().to_string();
        let actual = format!("{alg}:{}", hex::encode(self.ctx.finish().as_ref()));
        if actual == self.expected.as_ref() {
            Ok(())
        } else {
            Err(crate::Error::DigestMismatch {
                expected: self.expected.to_string(),
                actual,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_what_passes() {
        let mut r = Hashing::with(&b"abc"[..], true);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let (summary, _) = r.into_summary();
        assert_eq!(summary.len, 3);
        // sha256("abc"), FIPS 180-2 appendix B.1.
        let abc = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(summary.digest.as_deref(), Some(abc));
        assert_eq!(sha256(b"abc"), abc);
    }
}
