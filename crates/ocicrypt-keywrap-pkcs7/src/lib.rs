#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod asn1;
mod content;
mod keys;
#[cfg(test)]
mod tests;

use std::fmt;

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::CmsVersion;
use cms::enveloped_data::{
    KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo, RecipientInfos,
};
use const_oid::db::rfc5911::{ID_AES_128_GCM, ID_AES_256_CBC, ID_DATA, ID_ENVELOPED_DATA};
use const_oid::db::rfc5912::{ID_MGF_1, ID_P_SPECIFIED, ID_RSAES_OAEP, RSA_ENCRYPTION};
use der::asn1::{Any, OctetString, SetOfVec};
use der::{Decode, Encode};
pub(crate) use ocicrypt_keywrap::Failure;
use ocicrypt_keywrap::{
    BoxError, Cause, CauseKind, DecryptConfig, EncryptConfig, Error, KeySearch, KeyWrapper,
    SecretBytes,
};
use openssl::encrypt::{Decrypter, Encrypter};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rand::rand_bytes;
use openssl::rsa::Padding;
use spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

use crate::asn1::{
    AlgorithmId, ContentInfo, EncryptedContentInfo, EnvelopedData, OaepParameters, RawTlv,
    RecipientInfoSet,
};
use crate::content::ContentCipher;
use crate::keys::Cert;

/// The scheme name.
const SCHEME: &str = "pkcs7";

/// The most RecipientInfos one EnvelopedData may have, read or written; more is
/// [`Error::LimitExceeded`].
///
/// The blob is attacker input: every RecipientInfo is decoded and may be tried with every
/// private key (an RSA decryption each), and `der`'s SET OF decoding sorts its members in
/// quadratic time (8,000 recipients took 18 s). They are counted before any is decoded,
/// and decoded without sorting. Go ocicrypt writes one RecipientInfo per certificate of an
/// `encrypt` call and has no limit; no real image comes near 1024.
pub const MAX_RECIPIENT_INFOS: usize = 1024;

/// How many (key, recipient) pairs one layer's wrapped keys of this scheme may make us try:
/// each costs an RSA decryption, and [`MAX_RECIPIENT_INFOS`] recipients in each of up to a
/// thousand blobs could otherwise ask for a million. A real layer asks for a handful; more
/// is [`Error::LimitExceeded`], which stops the search.
pub const MAX_UNWRAP_ATTEMPTS: usize = 4096;

/// The most members of any SET OF inside one RecipientInfo; more is
/// [`Error::LimitExceeded`].
///
/// In practice this is the number of attributes in one relative distinguished name of an
/// issuer Name, which real certificates have one of (rarely two or three). `der` sorts the
/// members of every SET OF it decodes in quadratic time, so one RecipientInfo whose issuer
/// had a single RDN of 8,000 attributes (88 KB) took 44 s to parse (debug build). Each
/// RecipientInfo is checked, from its headers alone, before it is decoded.
pub const MAX_SET_MEMBERS: usize = 16;

/// The one failure of decrypting a recipient's content key and then the content with it,
/// whichever step failed: RSA padding (PKCS#1 v1.5 or OAEP), content key length, AES-GCM
/// tag, AES-CBC padding, or AES-CBC content that is not a JSON object. Telling those apart
/// would be an oracle: Bleichenbacher's on PKCS#1 v1.5 (the OpenSSL this links has no
/// implicit rejection) or a padding oracle on AES-CBC.
const DECRYPTION_FAILED: &str = "decryption failed (wrong key or corrupted data)";

fn backend(context: &str, source: impl Into<BoxError>) -> Error {
    Error::backend(SCHEME, context, source)
}

fn malformed(reason: impl fmt::Display) -> Error {
    Error::malformed(SCHEME, reason)
}

/// The `pkcs7` key-wrap scheme: the layer's private options are encrypted as one CMS
/// EnvelopedData with a recipient per X.509 certificate in
/// [`EncryptConfig::pkcs7_certificates`], and decrypted with
/// [`DecryptConfig::private_keys`] (and, to pick the recipient, the optional
/// [`DecryptConfig::certificates`]). See the crate documentation for the details.
///
/// It writes Go's exact format (AES-128-GCM with Go's GCM parameters), which OpenSSL cannot
/// read; [`Pkcs7KeyWrapper::standard`] gives the opt-in variant that writes standard CMS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pkcs7KeyWrapper;

impl Pkcs7KeyWrapper {
    /// The opt-in variant that writes standard CMS (RSA PKCS#1 v1.5 key transport with
    /// `rsaEncryption` and its `NULL` parameter, AES-256-CBC content), which
    /// `openssl cms -decrypt` and Go ocicrypt both read. See [`StandardPkcs7KeyWrapper`].
    #[must_use]
    pub const fn standard() -> StandardPkcs7KeyWrapper {
        StandardPkcs7KeyWrapper
    }
}

impl KeyWrapper for Pkcs7KeyWrapper {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn wrap_keys(&self, ec: &EncryptConfig, opts_data: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        wrap(&ec.pkcs7_certificates, opts_data, Format::Go)
    }

    fn unwrap_key(&self, dc: &DecryptConfig, blob: &[u8]) -> Result<SecretBytes, Error> {
        unwrap(
            &mut keys::key_search(&dc.private_keys),
            &dc.certificates,
            blob,
        )
    }

    /// Each key is read (and a password-protected one unlocked) once for all the blobs,
    /// when the search first gets to it, not once per blob; at most
    /// [`MAX_UNWRAP_ATTEMPTS`] key and recipient pairs are tried in all.
    fn unwrap_first(
        &self,
        dc: &DecryptConfig,
        blobs: &[Vec<u8>],
    ) -> Result<SecretBytes, Vec<Error>> {
        keys::key_search(&dc.private_keys)
            .unwrap_first(blobs, |keys, blob| unwrap(keys, &dc.certificates, blob))
    }

    fn has_possible_keys(&self, dc: &DecryptConfig) -> bool {
        !dc.private_keys.is_empty()
    }

    fn has_recipients(&self, ec: &EncryptConfig) -> bool {
        !ec.pkcs7_certificates.is_empty()
    }

    /// One entry per recipient: `issuer=<RFC 4514 name> serial=<hex>` for a recipient
    /// named by issuer and serial number, `subjectKeyIdentifier=<hex>` for one named by
    /// key identifier, `[pkcs7] <kind>` for the other kinds. (Go answers `["[pkcs7]"]`.)
    /// Control characters are escaped.
    fn recipients(&self, blob: &[u8]) -> Result<Vec<String>, Error> {
        let ci = parse_content_info(blob)?;
        let ed = parse_enveloped_data(&ci)?;
        Ok(recipient_infos(&ed)?
            .iter()
            .map(|ri| match ri {
                RecipientInfo::Ktri(k) => describe_rid(&k.rid),
                RecipientInfo::Kari(_) => format!("[{SCHEME}] key agreement recipient"),
                RecipientInfo::Kekri(_) => format!("[{SCHEME}] key-encryption-key recipient"),
                RecipientInfo::Pwri(_) => format!("[{SCHEME}] password recipient"),
                RecipientInfo::Ori(_) => format!("[{SCHEME}] other recipient"),
            })
            .collect())
    }
}

fn describe_rid(rid: &RecipientIdentifier) -> String {
    match rid {
        RecipientIdentifier::IssuerAndSerialNumber(ias) => format!(
            "issuer={} serial={}",
            printable(&ias.issuer.to_string()),
            hex::encode(ias.serial_number.as_bytes())
        ),
        RecipientIdentifier::SubjectKeyIdentifier(ski) => {
            format!("subjectKeyIdentifier={}", hex::encode(ski.0.as_bytes()))
        }
    }
}

/// `s` with control characters escaped, for display.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The `pkcs7` scheme, writing standard CMS that `openssl cms -decrypt` reads (opt-in; the
/// default [`Pkcs7KeyWrapper`] writes Go's exact bytes).
///
/// The blob is an EnvelopedData with, per certificate, a KeyTransRecipientInfo (version 0,
/// issuer and serial number) whose key encryption is `rsaEncryption` **with the `NULL`
/// parameter** (as RFC 3370 §4.2.1 and OpenSSL write it) over a fresh 32-byte content key
/// (RSA PKCS#1 v1.5), and content `aes256-CBC` (2.16.840.1.101.3.4.1.42) with a random
/// 16-byte IV as its OCTET STRING parameter (RFC 3565) and PKCS#7 padding.
///
/// Go ocicrypt reads this variant too: its pkcs7 library decrypts AES-128/256-CBC content
/// as well as AES-GCM. Unwrapping, `recipients` and the other methods are those of
/// [`Pkcs7KeyWrapper`], which reads both variants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StandardPkcs7KeyWrapper;

impl KeyWrapper for StandardPkcs7KeyWrapper {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn wrap_keys(&self, ec: &EncryptConfig, opts_data: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        wrap(&ec.pkcs7_certificates, opts_data, Format::Standard)
    }

    fn unwrap_key(&self, dc: &DecryptConfig, blob: &[u8]) -> Result<SecretBytes, Error> {
        Pkcs7KeyWrapper.unwrap_key(dc, blob)
    }

    /// As [`Pkcs7KeyWrapper`]'s `unwrap_first`: each key read once for all the blobs.
    fn unwrap_first(
        &self,
        dc: &DecryptConfig,
        blobs: &[Vec<u8>],
    ) -> Result<SecretBytes, Vec<Error>> {
        Pkcs7KeyWrapper.unwrap_first(dc, blobs)
    }

    fn has_possible_keys(&self, dc: &DecryptConfig) -> bool {
        Pkcs7KeyWrapper.has_possible_keys(dc)
    }

    fn has_recipients(&self, ec: &EncryptConfig) -> bool {
        Pkcs7KeyWrapper.has_recipients(ec)
    }

    /// As [`Pkcs7KeyWrapper`]'s `recipients`.
    fn recipients(&self, blob: &[u8]) -> Result<Vec<String>, Error> {
        Pkcs7KeyWrapper.recipients(blob)
    }
}

/// How the AES-GCM parameters are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GcmEncoding {
    /// Go's (smallstep/pkcs7) non-standard encoding, which Go ocicrypt requires.
    Go,
    /// RFC 5084 `GCMParameters`.
    #[cfg(test)]
    Rfc5084,
}

/// What [`wrap`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Go's bytes: AES-128-GCM with Go's parameters, `rsaEncryption` without parameters.
    Go,
    /// Go's layout with RFC 5084 GCM parameters (to test the reader).
    #[cfg(test)]
    Rfc5084Gcm,
    /// Standard CMS: AES-256-CBC, `rsaEncryption` with `NULL`.
    Standard,
}

/// Encrypts `payload` for every certificate: as smallstep/pkcs7's `Encrypt` does with
/// `ContentEncryptionAlgorithm = AES128GCM` (`Format::Go`), or as standard CMS.
fn wrap(
    certificates: &[Vec<u8>],
    payload: &[u8],
    format: Format,
) -> Result<Option<Vec<u8>>, Error> {
    if certificates.is_empty() {
        return Ok(None);
    }
    if certificates.len() > MAX_RECIPIENT_INFOS {
        // What this crate writes, it must read.
        return Err(Error::limit_exceeded(
            SCHEME,
            "RecipientInfos",
            MAX_RECIPIENT_INFOS,
        ));
    }
    let certs = certificates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            keys::parse_recipient_certificate(c).map_err(|f| {
                f.prefixed(format_args!("certificate {}", i + 1))
                    .recipient(SCHEME)
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;

    let (cipher, oid, parameters, key_params) = match format {
        Format::Go => {
            let cipher = ContentCipher::aes128_gcm_random()?;
            let parameters = cipher.gcm_parameters_der(GcmEncoding::Go)?;
            (cipher, ID_AES_128_GCM, parameters, None)
        }
        #[cfg(test)]
        Format::Rfc5084Gcm => {
            let cipher = ContentCipher::aes128_gcm_random()?;
            let parameters = cipher.gcm_parameters_der(GcmEncoding::Rfc5084)?;
            (cipher, ID_AES_128_GCM, parameters, None)
        }
        Format::Standard => {
            let cipher = ContentCipher::aes256_cbc_random()?;
            let parameters = cipher.cbc_parameters_der()?;
            (cipher, ID_AES_256_CBC, parameters, Some(Any::null()))
        }
    };
    let content = cipher.encrypt(payload)?;

    let infos = certs
        .iter()
        .map(|cert| recipient_info(cert, cipher.key(), key_params.clone()))
        .collect::<Result<Vec<_>, Error>>()?;
    // Sorted, as DER wants a SET OF (over at most MAX_RECIPIENT_INFOS members we made).
    let recipient_infos = RecipientInfos(
        SetOfVec::try_from(infos).map_err(|e| backend("encoding the recipients", e))?,
    )
    .to_der()
    .map_err(|e| backend("encoding the recipients", e))?;
    let ed = EnvelopedData {
        version: CmsVersion::V0,
        recipient_infos: RecipientInfoSet::from_set_der(&recipient_infos)
            .map_err(|e| backend("encoding the recipients", e))?,
        encrypted_content: EncryptedContentInfo {
            content_type: ID_DATA,
            algorithm: AlgorithmId {
                oid,
                parameters: Some(
                    RawTlv::from_der(&parameters)
                        .map_err(|e| backend("encoding the content parameters", e))?,
                ),
            },
            content: Some(content),
        },
    }
    .to_der()
    .map_err(|e| backend("encoding the EnvelopedData", e))?;
    let blob = ContentInfo {
        content_type: ID_ENVELOPED_DATA,
        content: &ed,
    }
    .to_der()
    .map_err(|e| backend("encoding the ContentInfo", e))?;
    Ok(Some(blob))
}

/// One KeyTransRecipientInfo: the content key encrypted with RSA PKCS#1 v1.5, the
/// recipient named by the certificate's issuer and serial number, `rsaEncryption` with
/// `parameters` (`None` as Go writes it, `NULL` in standard CMS).
fn recipient_info(
    cert: &Cert,
    content_key: &[u8],
    parameters: Option<Any>,
) -> Result<RecipientInfo, Error> {
    let encrypt = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut enc = Encrypter::new(&cert.public_key)?;
        enc.set_rsa_padding(Padding::PKCS1)?;
        let mut out = vec![0; enc.encrypt_len(content_key)?];
        let n = enc.encrypt(content_key, &mut out)?;
        out.truncate(n);
        Ok(out)
    };
    let encrypted_key = encrypt().map_err(|e| backend("RSA encryption of the content key", e))?;
    let tbs = &cert.parsed.tbs_certificate;
    Ok(RecipientInfo::Ktri(KeyTransRecipientInfo {
        version: CmsVersion::V0,
        rid: RecipientIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer.clone(),
            serial_number: tbs.serial_number.clone(),
        }),
        key_enc_alg: AlgorithmIdentifierOwned {
            oid: RSA_ENCRYPTION,
            parameters,
        },
        enc_key: OctetString::new(encrypted_key)
            .map_err(|e| backend("encoding the encrypted key", e))?,
    }))
}

fn parse_content_info(blob: &[u8]) -> Result<ContentInfo<'_>, Error> {
    let ci = ContentInfo::from_der(blob)
        .map_err(|e| malformed(format!("not a DER ContentInfo: {e}")))?;
    if ci.content_type != ID_ENVELOPED_DATA {
        return Err(malformed(format!(
            "content type {} is not envelopedData ({ID_ENVELOPED_DATA})",
            ci.content_type
        )));
    }
    Ok(ci)
}

fn parse_enveloped_data<'a>(ci: &ContentInfo<'a>) -> Result<EnvelopedData<'a>, Error> {
    EnvelopedData::from_der(ci.content)
        .map_err(|e| malformed(format!("not a DER EnvelopedData: {e}")))
}

/// The RecipientInfos of `ed`, in the order they come: at most [`MAX_RECIPIENT_INFOS`],
/// counted before any is decoded.
fn recipient_infos(ed: &EnvelopedData<'_>) -> Result<Vec<RecipientInfo>, Error> {
    let bad = |e: der::Error| malformed(format!("malformed RecipientInfos: {e}"));
    let n = ed.recipient_infos.len().map_err(bad)?;
    if n > MAX_RECIPIENT_INFOS {
        return Err(Error::limit_exceeded(
            SCHEME,
            "RecipientInfos",
            MAX_RECIPIENT_INFOS,
        ));
    }
    let mut infos = Vec::with_capacity(n);
    for member in ed.recipient_infos.members().map_err(bad)? {
        if asn1::largest_set(member) > MAX_SET_MEMBERS {
            return Err(Error::limit_exceeded(
                SCHEME,
                "members in one SET OF of a RecipientInfo",
                MAX_SET_MEMBERS,
            ));
        }
        infos.push(RecipientInfo::from_der(member).map_err(bad)?);
    }
    Ok(infos)
}

/// Decrypts `blob` with the first private key that opens one of its recipients.
fn unwrap(
    keys: &mut KeySearch<'_, PKey<Private>>,
    certificates: &[Vec<u8>],
    blob: &[u8],
) -> Result<SecretBytes, Error> {
    let ci = parse_content_info(blob)?;
    let ed = parse_enveloped_data(&ci)?;
    let eci = &ed.encrypted_content;
    if eci.content_type != ID_DATA {
        return Err(malformed(format!(
            "encrypted content type {} is not data ({ID_DATA})",
            eci.content_type
        )));
    }
    let cipher = ContentCipher::from_algorithm(&eci.algorithm)?;
    let content = eci
        .content
        .as_deref()
        .ok_or_else(|| malformed("the encrypted content is missing"))?;
    cipher.check_content(content)?;
    let infos = recipient_infos(&ed)?;

    let mut causes = Vec::new();
    let ktris: Vec<(usize, &KeyTransRecipientInfo)> = infos
        .iter()
        .enumerate()
        .filter_map(|(i, ri)| match ri {
            RecipientInfo::Ktri(k) => Some((i + 1, k)),
            _ => {
                causes.push(
                    Cause::new(CauseKind::BadRecipient(
                        "not a key transport recipient".to_owned(),
                    ))
                    .recipient(format!("recipient {}", i + 1)),
                );
                None
            }
        })
        .collect();

    let mut certs = Vec::new();
    for (i, c) in certificates.iter().enumerate() {
        match keys::parse_certificate(c) {
            Ok(cert) => certs.push(cert),
            Err(f) => causes.push(
                Cause::new(CauseKind::Unreadable(Box::new(f.recipient(SCHEME))))
                    .key(format!("certificate {}", i + 1)),
            ),
        }
    }
    keys.search(causes, |key, k, causes, budget| {
        for (r, ktri) in candidates(&ktris, &certs, key, k, causes) {
            budget.spend()?;
            match open(ktri, key, &cipher, content) {
                Ok(plaintext) => return Ok(Some(plaintext)),
                Err(f) => causes.push(
                    Cause::new(CauseKind::Refused(f))
                        .key(k)
                        .recipient(format!("recipient {r}")),
                ),
            }
        }
        Ok(None)
    })
}

/// The recipients to try `key` on: those named by a given certificate of `key`'s public
/// key, or all of them when no given certificate belongs to `key` (Go needs the
/// certificate; this crate does not).
fn candidates<'r, 'k>(
    ktris: &'r [(usize, &'k KeyTransRecipientInfo)],
    certs: &[Cert],
    key: &PKey<Private>,
    k: &str,
    causes: &mut Vec<Cause>,
) -> Vec<&'r (usize, &'k KeyTransRecipientInfo)> {
    let own: Vec<&Cert> = certs
        .iter()
        .filter(|c| c.public_key.public_eq(key))
        .collect();
    if own.is_empty() {
        if !certs.is_empty() {
            causes.push(
                Cause::new(CauseKind::NotARecipient(
                    "no given certificate has its public key; trying every recipient".to_owned(),
                ))
                .key(k),
            );
        }
        return ktris.iter().collect();
    }
    let named: Vec<_> = ktris
        .iter()
        .filter(|(_, ktri)| {
            own.iter().any(|c| match &ktri.rid {
                RecipientIdentifier::IssuerAndSerialNumber(ias) => {
                    ias.issuer == c.parsed.tbs_certificate.issuer
                        && ias.serial_number == c.parsed.tbs_certificate.serial_number
                }
                RecipientIdentifier::SubjectKeyIdentifier(_) => false,
            })
        })
        .collect();
    if named.is_empty() {
        causes.push(
            Cause::new(CauseKind::NotARecipient(
                "no recipient names its certificate (issuer and serial number)".to_owned(),
            ))
            .key(k),
        );
    }
    named
}

/// Decrypts the content key of one recipient with `key`, then the content.
///
/// # Errors
/// A [`Failure`] naming the problem for an unsupported or malformed key-encryption
/// algorithm (public data); [`DECRYPTION_FAILED`] for anything that goes wrong in the
/// decryptions themselves.
fn open(
    ktri: &KeyTransRecipientInfo,
    key: &PKey<Private>,
    cipher: &ContentCipher,
    content: &[u8],
) -> Result<SecretBytes, Failure> {
    let content_key = decrypt_key(
        &ktri.key_enc_alg,
        key,
        ktri.enc_key.as_bytes(),
        cipher.key_len(),
    )?;
    cipher
        .decrypt(&content_key, content)
        .ok_or_else(|| Failure::new(DECRYPTION_FAILED))
}

fn digest(alg: &AlgorithmIdentifierOwned) -> Result<MessageDigest, Failure> {
    use const_oid::db::rfc5912::{ID_SHA_1, ID_SHA_224, ID_SHA_256, ID_SHA_384, ID_SHA_512};
    match alg.oid {
        o if o == ID_SHA_1 => Ok(MessageDigest::sha1()),
        o if o == ID_SHA_224 => Ok(MessageDigest::sha224()),
        o if o == ID_SHA_256 => Ok(MessageDigest::sha256()),
        o if o == ID_SHA_384 => Ok(MessageDigest::sha384()),
        o if o == ID_SHA_512 => Ok(MessageDigest::sha512()),
        o => Err(Failure::new(format!("unsupported OAEP hash algorithm {o}"))),
    }
}

/// RSA decryption of a content key of `key_len` bytes: `rsaEncryption` (PKCS#1 v1.5) or
/// `id-RSAES-OAEP`.
///
/// If the decryption fails (bad padding, a ciphertext of the wrong size) or gives a key
/// of another length, the result is a random key of `key_len` bytes instead, as OpenSSL's
/// CMS does against Bleichenbacher's attack (RFC 3218 §2.3.2): the content decryption then
/// fails like any other, and no error says which step it was.
///
/// # Errors
/// Only for what does not depend on the ciphertext: an unsupported or malformed algorithm,
/// or OpenSSL refusing to set up the decryption.
fn decrypt_key(
    alg: &AlgorithmIdentifierOwned,
    key: &PKey<Private>,
    encrypted: &[u8],
    key_len: usize,
) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let rsa_failed = |e| Failure::with_source("cannot set up RSA decryption", e);
    let mut dec = Decrypter::new(key).map_err(rsa_failed)?;
    if alg.oid == RSA_ENCRYPTION {
        dec.set_rsa_padding(Padding::PKCS1).map_err(rsa_failed)?;
    } else if alg.oid == ID_RSAES_OAEP {
        let params = match &alg.parameters {
            None => None,
            Some(any) => Some(
                any.to_der()
                    .and_then(|der| OaepParameters::from_der(&der))
                    .map_err(|e| Failure::with_source("malformed RSAES-OAEP parameters", e))?,
            ),
        };
        let params = params.unwrap_or(OaepParameters {
            hash: None,
            mask_gen: None,
            label_source: None,
        });
        let hash = params
            .hash
            .as_ref()
            .map(digest)
            .transpose()?
            .unwrap_or_else(MessageDigest::sha1);
        let mgf1 = match &params.mask_gen {
            None => MessageDigest::sha1(),
            Some(mgf) if mgf.oid == ID_MGF_1 => {
                let inner = mgf
                    .parameters
                    .as_ref()
                    .ok_or_else(|| Failure::new("MGF1 without a hash algorithm"))?
                    .to_der()
                    .and_then(|der| AlgorithmIdentifierOwned::from_der(&der))
                    .map_err(|e| Failure::with_source("malformed MGF1 parameters", e))?;
                digest(&inner)?
            }
            Some(mgf) => {
                return Err(Failure::new(format!(
                    "unsupported mask generation function {}",
                    mgf.oid
                )));
            }
        };
        dec.set_rsa_padding(Padding::PKCS1_OAEP)
            .map_err(rsa_failed)?;
        dec.set_rsa_oaep_md(hash).map_err(rsa_failed)?;
        dec.set_rsa_mgf1_md(mgf1).map_err(rsa_failed)?;
        if let Some(source) = &params.label_source {
            if source.oid != ID_P_SPECIFIED {
                return Err(Failure::new(format!(
                    "unsupported OAEP label source {}",
                    source.oid
                )));
            }
            let label = source
                .parameters
                .as_ref()
                .map(|any| any.decode_as::<OctetString>())
                .transpose()
                .map_err(|e| Failure::with_source("malformed OAEP label", e))?;
            if let Some(label) = label.filter(|l| !l.as_bytes().is_empty()) {
                dec.set_rsa_oaep_label(label.as_bytes())
                    .map_err(rsa_failed)?;
            }
        }
    } else {
        return Err(Failure::new(format!(
            "unsupported key encryption algorithm {}",
            alg.oid
        )));
    }
    let mut out = Zeroizing::new(vec![0; dec.decrypt_len(encrypted).map_err(rsa_failed)?]);
    // The random key is made first, whatever the decryption gives.
    let mut content_key = Zeroizing::new(vec![0; key_len]);
    rand_bytes(&mut content_key)
        .map_err(|e| Failure::with_source("cannot generate a random content key", e))?;
    if let Ok(n) = dec.decrypt(encrypted, &mut out)
        && let Some(decrypted) = out.get(..n).filter(|d| d.len() == key_len)
    {
        content_key.copy_from_slice(decrypted);
    }
    Ok(content_key)
}
