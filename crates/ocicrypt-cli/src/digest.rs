//! SHA-256 of the bytes flowing through a reader or writer.

use std::io::{self, Read, Write};

use ring::digest::{Context, SHA256};

/// Passes bytes through and hashes them with SHA-256.
pub(crate) struct Hashing<T> {
    inner: T,
    ctx: Context,
    count: u64,
}

impl<T> Hashing<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            ctx: Context::new(&SHA256),
            count: 0,
        }
    }

    /// `sha256:<hex>` of the bytes so far, and their count.
    pub(crate) fn finish(self) -> (String, u64, T) {
        let d = self.ctx.finish();
        (
            format!("sha256:{}", hex::encode(d.as_ref())),
            self.count,
            self.inner,
        )
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = buf.get(..n).unwrap_or_default();
        self.ctx.update(read);
        self.count += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(buf.get(..n).unwrap_or_default());
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Splits `sha256:<64 hex>` into its hex part, or says what is wrong.
pub(crate) fn sha256_hex(digest: &str) -> anyhow::Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| anyhow::anyhow!("digest {digest:?} is not a sha256 digest"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        anyhow::bail!("digest {digest:?} is malformed");
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_what_passes() {
        let mut r = Hashing::new(&b"abc"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let (d, n, _) = r.finish();
        assert_eq!(n, 3);
        // sha256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            d,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(sha256_hex(&d).is_ok());
        assert!(sha256_hex("sha512:00").is_err());
        assert!(sha256_hex("sha256:XYZ").is_err());
    }
}
