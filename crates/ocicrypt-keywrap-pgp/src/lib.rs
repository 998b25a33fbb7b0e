#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod compat;
mod decrypt;
pub mod gnupg;
mod keys;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::Write;

use ocicrypt_keywrap::{BoxError, DecryptConfig, EncryptConfig, Error, KeyWrapper, SecretBytes};
use sequoia_openpgp as openpgp;

use openpgp::KeyID;
use openpgp::packet::{PKESK, Packet};
use openpgp::parse::{PacketParser, PacketParserResult, Parse};

pub use keys::{cert_fingerprints, is_public_key, is_secret_key, to_binary_keyring};

/// The scheme name.
const SCHEME: &str = "pgp";

/// The most plaintext one message may decrypt to; more is [`Error::LimitExceeded`].
///
/// The plaintext is the layer's private options JSON, a few hundred bytes. A message can be
/// made with nothing but the recipient's public key, and a compressed one can decompress to
/// far more than its size: a 395 KB blob took 485 MB when read without a limit. The
/// plaintext is read (and decompressed) up to this many bytes and one more, never further.
/// Go ocicrypt has no limit; 64 KiB is far above any real private options.
pub const MAX_PLAINTEXT_LEN: usize = 64 * 1024;

/// The most public-key encrypted session key (PKESK) packets one message may have; more is
/// [`Error::LimitExceeded`].
///
/// Each PKESK that names a secret key costs a public-key decryption, and anonymous ones are
/// tried with every secret key. Go ocicrypt writes one per encryption key of each recipient
/// and has no limit; no real image comes near 1024. [`KeyWrapper::key_ids`] and
/// [`KeyWrapper::recipients`] refuse such messages too.
pub const MAX_PKESKS: usize = 1024;

/// How many PKESK decryptions (a secret key on a PKESK that names it, or on an anonymous
/// one) one layer's wrapped keys of this scheme may make us try: each is a public-key
/// decryption, and [`MAX_PKESKS`] PKESKs in each of up to a thousand blobs could otherwise
/// ask for a million. A real layer asks for a handful; more is [`Error::LimitExceeded`],
/// which stops the search.
pub const MAX_UNWRAP_ATTEMPTS: usize = 4096;

fn backend(context: impl Into<String>, source: impl Into<BoxError>) -> Error {
    Error::Backend {
        scheme: SCHEME.to_owned(),
        context: context.into(),
        source: source.into(),
    }
}

fn malformed(reason: impl fmt::Display) -> Error {
    Error::MalformedBlob {
        scheme: SCHEME.to_owned(),
        reason: reason.to_string(),
    }
}

fn invalid_recipient(reason: impl Into<String>, source: Option<BoxError>) -> Error {
    Error::InvalidRecipient {
        scheme: SCHEME.to_owned(),
        reason: reason.into(),
        source,
    }
}

/// The `pgp` key-wrap scheme: the layer's private options are encrypted as one binary
/// OpenPGP message for the recipients in [`EncryptConfig::gpg_recipients`], looked up in
/// [`EncryptConfig::gpg_public_keyring`], and decrypted with
/// [`DecryptConfig::gpg_private_keys`]. See the crate documentation for the details.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PgpKeyWrapper;

impl KeyWrapper for PgpKeyWrapper {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn wrap_keys(&self, ec: &EncryptConfig, opts_data: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if ec.gpg_recipients.is_empty() {
            return Ok(None);
        }
        let keyring = ec.gpg_public_keyring.as_deref().unwrap_or_default();
        let certs = keys::select_recipients(keyring, &ec.gpg_recipients)?;
        encrypt(&certs, opts_data).map(Some)
    }

    fn unwrap_key(&self, dc: &DecryptConfig, blob: &[u8]) -> Result<SecretBytes, Error> {
        decrypt::unwrap(&mut decrypt::key_search(&dc.gpg_private_keys), blob)
    }

    /// Each key file is read, and each of its secret keys unlocked (its passphrase
    /// derived), once for all the blobs, not once per blob; at most
    /// [`MAX_UNWRAP_ATTEMPTS`] PKESK decryptions are tried in all.
    fn unwrap_first(
        &self,
        dc: &DecryptConfig,
        blobs: &[Vec<u8>],
    ) -> Result<SecretBytes, Vec<Error>> {
        decrypt::key_search(&dc.gpg_private_keys).unwrap_first(blobs, decrypt::unwrap)
    }

    fn has_possible_keys(&self, dc: &DecryptConfig) -> bool {
        !dc.gpg_private_keys.is_empty()
    }

    fn has_recipients(&self, ec: &EncryptConfig) -> bool {
        !ec.gpg_recipients.is_empty()
    }

    /// One entry per public-key encrypted session key packet: `0x` and the recipient's key
    /// id in lowercase hex without leading zeros, exactly as Go's `GetRecipients` writes it
    /// (`0x0` for an anonymous recipient).
    fn recipients(&self, blob: &[u8]) -> Result<Vec<String>, Error> {
        Ok(self
            .key_ids(blob)?
            .into_iter()
            .map(|id| format!("0x{id:x}"))
            .collect())
    }

    /// The key ids of the public-key encrypted session key packets, in order (`0` for an
    /// anonymous recipient; a version 6 packet's fingerprint is reduced to its key id).
    fn key_ids(&self, blob: &[u8]) -> Result<Vec<u64>, Error> {
        Ok(parse_pkesks(blob)?
            .iter()
            .map(|p| match p.recipient() {
                Some(handle) => KeyID::from(handle).as_u64().unwrap_or(0),
                None => 0,
            })
            .collect())
    }
}

/// The PKESK packets at the start of `blob`, up to its encrypted data packet. Fails if
/// `blob` is not an OpenPGP message or has no encrypted data packet after them, or has more
/// than [`MAX_PKESKS`] PKESKs (found as soon as the one over the limit is parsed).
fn parse_pkesks(blob: &[u8]) -> Result<Vec<PKESK>, Error> {
    let fixed = compat::normalize(blob);
    let blob = fixed.as_deref().unwrap_or(blob);
    let mut ppr = PacketParser::from_bytes(blob).map_err(malformed)?;
    let mut pkesks = Vec::new();
    loop {
        let pp = match ppr {
            PacketParserResult::Some(pp) => pp,
            PacketParserResult::EOF(_) => {
                return Err(malformed("no encrypted data packet"));
            }
        };
        match &pp.packet {
            Packet::PKESK(_) if pkesks.len() == MAX_PKESKS => {
                return Err(Error::limit_exceeded(SCHEME, "PKESK packets", MAX_PKESKS));
            }
            Packet::PKESK(p) => pkesks.push(p.clone()),
            // Passwords are not supported, but the packets may be there.
            Packet::SKESK(_) | Packet::Marker(_) => {}
            Packet::SEIP(_) => return Ok(pkesks),
            Packet::Unknown(u) => {
                return Err(malformed(format_args!(
                    "unreadable {} packet: {}",
                    u.tag(),
                    u.error()
                )));
            }
            p => return Err(malformed(format_args!("unexpected {} packet", p.tag()))),
        }
        ppr = pp.next().map_err(malformed)?.1;
    }
}

/// Encrypts `payload` for every transport- or storage-encryption key of `certs` as a
/// binary message: PKESK v3 packets, then SEIPD v1 (with MDC) holding one literal data
/// packet; no compression, no signature.
fn encrypt(certs: &[keys::Recipient], payload: &[u8]) -> Result<Vec<u8>, Error> {
    let policy = keys::policy();
    let sym_algo = keys::cipher_for(certs);
    let mut recipients = Vec::new();
    for r in certs {
        let vc = r.cert.with_policy(&policy, None).map_err(|e| {
            invalid_recipient(format!("key {} is not valid", r.name), Some(e.into()))
        })?;
        let before = recipients.len();
        for ka in vc
            .keys()
            .supported()
            .alive()
            .revoked(false)
            .for_transport_encryption()
            .for_storage_encryption()
        {
            // Features that name only SEIPD v1 force SEIPD v1 and PKESK v3 with the key
            // id, which is what Go ocicrypt (and skopeo, containerd) can read.
            recipients.push(openpgp::serialize::stream::Recipient::new(
                openpgp::types::Features::empty().set_seipdv1(),
                openpgp::KeyHandle::from(ka.key().keyid()),
                ka.key(),
            ));
        }
        if recipients.len() == before {
            return Err(invalid_recipient(
                format!("key {} has no valid encryption key", r.name),
                None,
            ));
        }
    }

    if recipients.len() > MAX_PKESKS {
        // What this crate writes, it must read.
        return Err(Error::limit_exceeded(SCHEME, "PKESK packets", MAX_PKESKS));
    }

    use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message};
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    let message = Encryptor::for_recipients(message, recipients)
        .symmetric_algo(sym_algo)
        .build()
        .map_err(|e| backend("cannot encrypt", e))?;
    let mut w = LiteralWriter::new(message)
        .build()
        .map_err(|e| backend("cannot encrypt", e))?;
    w.write_all(payload)
        .map_err(|e| backend("cannot encrypt", e))?;
    w.finalize().map_err(|e| backend("cannot encrypt", e))?;
    Ok(sink)
}
