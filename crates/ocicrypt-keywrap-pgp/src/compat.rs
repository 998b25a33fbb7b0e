//! Reading Go's PKESK packets.
//!
//! Go's `golang.org/x/crypto/openpgp` (Go ocicrypt before v1.3.2, Debian's skopeo 1.9.3)
//! writes the RSA and ElGamal values of a PKESK as MPIs whose bit count is always eight times
//! the byte length, even when the leading bits are zero. GnuPG reads such packets; sequoia
//! rejects them ("leading bit is not set"), which would make about half of Go's RSA blobs
//! unreadable. [`normalize`] rewrites those packets with canonical MPIs (same values) and
//! leaves every other packet as it is.
//!
//! Go also starts partial body lengths with chunks shorter than the 512 bytes RFC 4880
//! requires, on the encrypted data packet (re-framed by [`normalize`]) and on the literal
//! data packet inside it, which sequoia's streaming decryptor rejects;
//! [`read_go_message`] reads such a message with the session key.

use sequoia_openpgp as openpgp;

use ocicrypt_keywrap::SecretBytes;
use openpgp::KeyID;
use openpgp::crypto::SessionKey;
use openpgp::crypto::mpi::{Ciphertext, MPI};
use openpgp::packet::pkesk::PKESK3;
use openpgp::packet::{Packet, Tag};
use openpgp::parse::{PacketParser, PacketParserResult, Parse};
use openpgp::serialize::Serialize;
use openpgp::types::PublicKeyAlgorithm;
use openpgp::types::SymmetricAlgorithm;

/// `blob` with its leading PKESK packets rewritten with canonical MPIs where Go's encoding
/// needs it, or `None` if there was nothing to fix (or the packets cannot be framed: the
/// caller's parser reports that).
pub(crate) fn normalize(blob: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(blob.len());
    let mut rest = blob;
    let mut changed = false;
    while let Some((tag, header_len, body_len)) = header(rest) {
        if tag != Tag::PKESK {
            break;
        }
        let (packet, tail) = rest.split_at_checked(header_len.checked_add(body_len)?)?;
        let body = packet.get(header_len..)?;
        match fix_pkesk(body) {
            Some(fixed) if !same_body(&fixed, body) => {
                Packet::from(fixed).serialize(&mut out).ok()?;
                changed = true;
            }
            _ => out.extend_from_slice(packet),
        }
        rest = tail;
    }
    // The encrypted data packet: Go starts partial body lengths with chunks smaller than the
    // 512 bytes RFC 4880 requires; sequoia rejects that, GnuPG reads it.
    if let Some((ctb, body, tail)) = short_partial_body(rest) {
        out.push(ctb);
        out.push(255);
        out.extend_from_slice(&u32::try_from(body.len()).ok()?.to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(tail);
        return Some(out);
    }
    if !changed {
        return None;
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// Whether `pkesk` serializes to `body`.
fn same_body(pkesk: &PKESK3, body: &[u8]) -> bool {
    let mut bytes = Vec::with_capacity(body.len());
    openpgp::serialize::Marshal::serialize(pkesk, &mut bytes).is_ok() && bytes == body
}

/// If the packet at the start of `data` is a new-format packet with partial body lengths
/// whose first chunk is shorter than 512 bytes: its CTB, its whole body and what follows it.
fn short_partial_body(data: &[u8]) -> Option<(u8, Vec<u8>, &[u8])> {
    let (&ctb, mut rest) = data.split_first()?;
    if ctb & 0xc0 != 0xc0 || !matches!(rest.first(), Some(224..=254)) {
        return None;
    }
    let mut body = Vec::new();
    let mut first = true;
    loop {
        let (len, header_len, last): (usize, usize, bool) = match *rest {
            [b1 @ 224..=254, ..] => (1usize << (b1 & 0x1f), 1, false),
            [b1, ..] if b1 < 192 => (usize::from(b1), 1, true),
            [b1 @ 192..=223, b2, ..] => (
                (usize::from(b1 - 192) << 8) + usize::from(b2) + 192,
                2,
                true,
            ),
            [255, a, b, c, d, ..] => (
                usize::try_from(u32::from_be_bytes([a, b, c, d])).ok()?,
                5,
                true,
            ),
            _ => return None,
        };
        if first && (last || len >= 512) {
            return None;
        }
        first = false;
        let end = header_len.checked_add(len)?;
        body.extend_from_slice(rest.get(header_len..end)?);
        rest = rest.get(end..)?;
        if last {
            return Some((ctb, body, rest));
        }
    }
}

/// The tag, header length and body length of the packet at the start of `data`, for
/// packets with a definite length.
fn header(data: &[u8]) -> Option<(Tag, usize, usize)> {
    let (&ctb, rest) = data.split_first()?;
    if ctb & 0x80 == 0 {
        return None;
    }
    if ctb & 0x40 != 0 {
        // New format.
        let tag = Tag::from(ctb & 0x3f);
        match *rest {
            [b1, ..] if b1 < 192 => Some((tag, 2, usize::from(b1))),
            [b1 @ 192..=223, b2, ..] => {
                Some((tag, 3, (usize::from(b1 - 192) << 8) + usize::from(b2) + 192))
            }
            [255, a, b, c, d, ..] => Some((
                tag,
                6,
                usize::try_from(u32::from_be_bytes([a, b, c, d])).ok()?,
            )),
            _ => None, // Partial body lengths: not used for PKESK packets.
        }
    } else {
        // Old format.
        let tag = Tag::from((ctb >> 2) & 0x0f);
        match (ctb & 3, rest) {
            (0, [a, ..]) => Some((tag, 2, usize::from(*a))),
            (1, [a, b, ..]) => Some((tag, 3, usize::from(u16::from_be_bytes([*a, *b])))),
            (2, [a, b, c, d, ..]) => Some((
                tag,
                5,
                usize::try_from(u32::from_be_bytes([*a, *b, *c, *d])).ok()?,
            )),
            _ => None,
        }
    }
}

/// Reads `n` MPIs leniently (any bit count that fits the bytes) and nothing after them.
fn lenient_mpis<const N: usize>(mut data: &[u8]) -> Option<[MPI; N]> {
    let mut mpis = Vec::with_capacity(N);
    for _ in 0..N {
        let (len, rest) = data.split_first_chunk::<2>()?;
        let bytes = usize::from(u16::from_be_bytes(*len)).div_ceil(8);
        let (value, rest) = rest.split_at_checked(bytes)?;
        mpis.push(MPI::new(value));
        data = rest;
    }
    if !data.is_empty() {
        return None;
    }
    mpis.try_into().ok()
}

/// A version 3 PKESK body for RSA or ElGamal, parsed leniently.
fn fix_pkesk(body: &[u8]) -> Option<PKESK3> {
    let (&version, rest) = body.split_first()?;
    let (keyid, rest) = rest.split_first_chunk::<8>()?;
    let (&algo, mpis) = rest.split_first()?;
    if version != 3 {
        return None;
    }
    let algo = PublicKeyAlgorithm::from(algo);
    #[allow(deprecated)] // RSAEncrypt and ElGamalEncrypt are read, never written.
    let ciphertext = match algo {
        PublicKeyAlgorithm::RSAEncryptSign | PublicKeyAlgorithm::RSAEncrypt => {
            let [c] = lenient_mpis::<1>(mpis)?;
            Ciphertext::RSA { c }
        }
        PublicKeyAlgorithm::ElGamalEncrypt | PublicKeyAlgorithm::ElGamalEncryptSign => {
            let [e, c] = lenient_mpis::<2>(mpis)?;
            Ciphertext::ElGamal { e, c }
        }
        _ => return None,
    };
    PKESK3::new(Some(KeyID::from_bytes(keyid)), algo, ciphertext).ok()
}

/// Decrypts `blob`, which must be exactly what Go writes (PKESKs, then SEIPD v1 holding one
/// literal data packet and the MDC), with the session key, tolerating a literal data packet
/// with short partial body lengths. `None` if the message has another shape, does not
/// decrypt, or its MDC does not match.
pub(crate) fn read_go_message(
    blob: &[u8],
    algo: Option<SymmetricAlgorithm>,
    sk: &SessionKey,
) -> Option<SecretBytes> {
    let mut ppr = PacketParser::from_bytes(blob).ok()?;
    let mut decrypted = false;
    let mut literal: Option<SecretBytes> = None;
    let mut mdc_ok = false;
    while let PacketParserResult::Some(mut pp) = ppr {
        let depth = pp.recursion_depth();
        match &pp.packet {
            Packet::PKESK(_) | Packet::SKESK(_) | Packet::Marker(_) if depth == 0 => {}
            Packet::SEIP(s) if depth == 0 && s.version() == 1 && !decrypted => {
                pp.decrypt(algo, sk).ok()?;
                decrypted = true;
            }
            Packet::Literal(_) | Packet::Unknown(_)
                if depth == 1 && pp.packet.tag() == Tag::Literal && literal.is_none() =>
            {
                pp.buffer_unread_content().ok()?;
                literal = Some(match &pp.packet {
                    Packet::Literal(l) => SecretBytes::copy_from(l.body()),
                    Packet::Unknown(u) => literal_data(u.body())?,
                    _ => return None,
                });
            }
            // The MDC is deprecated with SEIPD v1, which is what Go writes.
            #[allow(deprecated)]
            Packet::MDC(m) if depth == 1 && literal.is_some() && !mdc_ok => mdc_ok = m.valid(),
            _ => return None,
        }
        ppr = pp.recurse().ok()?.1;
    }
    if decrypted && mdc_ok { literal } else { None }
}

/// The data of a literal data packet's body (format, file name, date, data).
fn literal_data(body: &[u8]) -> Option<SecretBytes> {
    let (_format, rest) = body.split_first()?;
    let (&name_len, rest) = rest.split_first()?;
    let rest = rest.get(usize::from(name_len)..)?;
    let (_date, data) = rest.split_first_chunk::<4>()?;
    Some(SecretBytes::copy_from(data))
}
