//! A small PEM reader: finds the first block the way Go's `encoding/pem.Decode` does, so
//! that key files are classified like Go ocicrypt classifies them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

const BEGIN: &[u8] = b"-----BEGIN ";
const DASHES: &[u8] = b"-----";

/// One PEM block.
pub(crate) struct Block<'a> {
    /// The label between `BEGIN ` and the dashes (`PRIVATE KEY`, `RSA PRIVATE KEY`, ...).
    pub(crate) label: &'a str,
    /// Whether the block carries `Proc-Type: 4,ENCRYPTED` (legacy OpenSSL encryption).
    pub(crate) legacy_encrypted: bool,
    /// The decoded body (for a legacy-encrypted block, still encrypted).
    pub(crate) der: Zeroizing<Vec<u8>>,
    /// The block's text from `-----BEGIN` through the `-----END ...-----` line, with a final
    /// newline, for OpenSSL's own PEM reader.
    pub(crate) text: Zeroizing<Vec<u8>>,
}

impl Block<'_> {
    /// Whether the key in this block is password protected (legacy PEM encryption or a
    /// PKCS#8 `ENCRYPTED PRIVATE KEY`).
    pub(crate) fn is_encrypted(&self) -> bool {
        self.legacy_encrypted || self.label == "ENCRYPTED PRIVATE KEY"
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The first well-formed PEM block in `data`, if any. Like Go, a block whose body is not
/// valid base64 is skipped.
pub(crate) fn first_block(data: &[u8]) -> Option<Block<'_>> {
    let mut from = 0;
    loop {
        let start = from + find(data.get(from..)?, BEGIN)?;
        from = start + BEGIN.len();
        let at_line_start = start == 0 || data.get(start - 1) == Some(&b'\n');
        if at_line_start && let Some(block) = parse_block(data, start) {
            return Some(block);
        }
    }
}

fn parse_block(data: &[u8], start: usize) -> Option<Block<'_>> {
    let after = data.get(start + BEGIN.len()..)?;
    let line_len = after
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(after.len());
    let line = after.get(..line_len)?.trim_ascii_end();
    let label = std::str::from_utf8(line.strip_suffix(DASHES)?).ok()?;
    let rest = after.get(line_len..)?;
    let end_marker = format!("-----END {label}-----");
    let end = find(rest, end_marker.as_bytes())?;
    let inner = std::str::from_utf8(rest.get(..end)?).ok()?;

    let mut legacy_encrypted = false;
    let mut body = Zeroizing::new(String::new());
    let mut in_headers = true;
    for line in inner.lines().map(str::trim) {
        if in_headers {
            if line.is_empty() {
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.trim() == "Proc-Type" && value.trim() == "4,ENCRYPTED" {
                    legacy_encrypted = true;
                }
                continue;
            }
            in_headers = false;
        }
        body.extend(line.chars().filter(|c| !c.is_ascii_whitespace()));
    }
    let der = Zeroizing::new(STANDARD.decode(body.as_bytes()).ok()?);

    let text_end = start + BEGIN.len() + line_len + end + end_marker.len();
    let mut text = Zeroizing::new(data.get(start..text_end)?.to_vec());
    text.push(b'\n');
    Some(Block {
        label,
        legacy_encrypted,
        der,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_first_block_and_headers() {
        let data = b"junk\n-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\n\
DEK-Info: AES-256-CBC,00\r\n\r\nAAEC\r\nAw==\r\n-----END RSA PRIVATE KEY-----\n\
-----BEGIN PUBLIC KEY-----\nBAU=\n-----END PUBLIC KEY-----\n";
        let b = first_block(data).unwrap();
        assert_eq!(b.label, "RSA PRIVATE KEY");
        assert!(b.legacy_encrypted && b.is_encrypted());
        assert_eq!(&b.der[..], &[0, 1, 2, 3]);
        assert!(b.text.starts_with(b"-----BEGIN RSA"));
        assert!(b.text.ends_with(b"-----END RSA PRIVATE KEY-----\n"));
    }

    #[test]
    fn skips_blocks_with_bad_base64_and_mismatched_ends() {
        let data = b"-----BEGIN A-----\n!!!\n-----END A-----\n\
-----BEGIN B-----\nAAAA\n-----END C-----\n-----BEGIN D-----\nAAEC\n-----END D-----";
        let b = first_block(data).unwrap();
        assert_eq!(b.label, "D");
        assert!(!b.is_encrypted());
        assert_eq!(&b.der[..], &[0, 1, 2]);
    }

    #[test]
    fn begin_must_start_a_line_and_absence_is_none() {
        assert!(first_block(b"x-----BEGIN A-----\nAAAA\n-----END A-----\n").is_none());
        assert!(first_block(b"{\"kty\":\"RSA\"}").is_none());
        assert!(first_block(b"").is_none());
        let enc = first_block(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----",
        )
        .unwrap();
        assert!(enc.is_encrypted() && !enc.legacy_encrypted);
    }
}
