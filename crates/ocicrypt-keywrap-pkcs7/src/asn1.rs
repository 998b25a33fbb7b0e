//! The ASN.1 structures of a `pkcs7` blob, decoded and encoded with the `der` crate.
//!
//! `cms::enveloped_data` has all of these, but two of Go's encodings cannot pass through
//! it, so the outer layers (ContentInfo, EnvelopedData, EncryptedContentInfo and the content
//! AlgorithmIdentifier) are declared here, with `cms`'s `RecipientInfos` inside:
//!
//! - Go writes the AES-GCM parameters as a TLV with the *primitive* universal tag 16 (byte
//!   `0x10`). The `der` crate has no `Tag` for that byte and refuses to decode or encode it,
//!   so such an element is carried as a [`RawTlv`] (tag byte, DER length, contents).
//! - go.mozilla.org/pkcs7 (older Go ocicrypt) writes `encryptedContent` as a *constructed*
//!   `[0]` holding an OCTET STRING, which `cms` (IMPLICIT primitive only) rejects.

use cms::content_info::CmsVersion;
use der::asn1::{ContextSpecificRef, ObjectIdentifier, OctetString, OctetStringRef};
use der::{
    Decode, DecodeValue, Encode, EncodeValue, ErrorKind, FixedTag, Header, Length, Reader,
    Sequence, Tag, TagMode, TagNumber, Writer,
};

/// Context-specific `[0]`, primitive and constructed.
const CONTEXT_0_PRIMITIVE: u8 = 0x80;
const CONTEXT_0_CONSTRUCTED: u8 = 0xa0;
/// Context-specific `[1]`, constructed (EnvelopedData's `unprotectedAttrs`).
const CONTEXT_1_CONSTRUCTED: u8 = 0xa1;
/// SET (OF), constructed.
const SET: u8 = 0x31;

/// One DER element of any single-byte tag, kept as it is: the tag byte and the contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawTlv<'a> {
    pub(crate) tag: u8,
    pub(crate) value: &'a [u8],
}

impl<'a> Decode<'a> for RawTlv<'a> {
    fn decode<R: Reader<'a>>(reader: &mut R) -> der::Result<Self> {
        let tag = reader.read_byte()?;
        // Multi-byte (high tag number) tags do not occur in these structures.
        if tag & 0x1f == 0x1f {
            return Err(ErrorKind::TagUnknown { byte: tag }.into());
        }
        let len = Length::decode(reader)?;
        let value = reader.read_slice(len)?;
        Ok(Self { tag, value })
    }
}

impl Encode for RawTlv<'_> {
    fn encoded_len(&self) -> der::Result<Length> {
        let len = Length::try_from(self.value.len())?;
        (Length::ONE + len.encoded_len()?)? + len
    }

    fn encode(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write_byte(self.tag)?;
        Length::try_from(self.value.len())?.encode(writer)?;
        writer.write(self.value)
    }
}

/// An AlgorithmIdentifier whose parameters may use any tag byte (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AlgorithmId<'a> {
    pub(crate) oid: ObjectIdentifier,
    pub(crate) parameters: Option<RawTlv<'a>>,
}

impl FixedTag for AlgorithmId<'_> {
    const TAG: Tag = Tag::Sequence;
}

impl<'a> DecodeValue<'a> for AlgorithmId<'a> {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        reader.read_nested(header.length, |r| {
            let oid = r.decode()?;
            let parameters = if r.is_finished() {
                None
            } else {
                Some(RawTlv::decode(r)?)
            };
            Ok(Self { oid, parameters })
        })
    }
}

impl EncodeValue for AlgorithmId<'_> {
    fn value_len(&self) -> der::Result<Length> {
        self.oid.encoded_len()? + self.parameters.encoded_len()?
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.oid.encode(writer)?;
        self.parameters.encode(writer)
    }
}

/// `EncryptedContentInfo` (RFC 5652 §6.1). `content` is `None` when absent (detached).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EncryptedContentInfo<'a> {
    pub(crate) content_type: ObjectIdentifier,
    pub(crate) algorithm: AlgorithmId<'a>,
    pub(crate) content: Option<Vec<u8>>,
}

impl FixedTag for EncryptedContentInfo<'_> {
    const TAG: Tag = Tag::Sequence;
}

impl<'a> DecodeValue<'a> for EncryptedContentInfo<'a> {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        reader.read_nested(header.length, |r| {
            let content_type = r.decode()?;
            let algorithm = r.decode()?;
            let content = if r.is_finished() {
                None
            } else {
                let tlv = RawTlv::decode(r)?;
                match tlv.tag {
                    CONTEXT_0_PRIMITIVE => Some(tlv.value.to_vec()),
                    // Constructed form: the contents are OCTET STRING segments.
                    CONTEXT_0_CONSTRUCTED => {
                        let mut inner = der::SliceReader::new(tlv.value)?;
                        let mut content = Vec::new();
                        while !inner.is_finished() {
                            let part: OctetStringRef<'_> = inner.decode()?;
                            content.extend_from_slice(part.as_bytes());
                        }
                        Some(content)
                    }
                    byte => {
                        return Err(ErrorKind::TagUnexpected {
                            expected: Some(Tag::ContextSpecific {
                                constructed: false,
                                number: TagNumber::N0,
                            }),
                            actual: Tag::try_from(byte)?,
                        }
                        .into());
                    }
                }
            };
            Ok(Self {
                content_type,
                algorithm,
                content,
            })
        })
    }
}

/// Runs `f` on the content as `[0] IMPLICIT OCTET STRING`, primitive (tag byte `0x80`),
/// as smallstep/pkcs7 writes it.
fn with_content_field<T>(
    content: Option<&[u8]>,
    f: impl FnOnce(Option<ContextSpecificRef<'_, OctetStringRef<'_>>>) -> der::Result<T>,
) -> der::Result<T> {
    match content {
        None => f(None),
        Some(c) => {
            let octets = OctetStringRef::new(c)?;
            let field = ContextSpecificRef {
                tag_number: TagNumber::N0,
                tag_mode: TagMode::Implicit,
                value: &octets,
            };
            f(Some(field))
        }
    }
}

impl EncodeValue for EncryptedContentInfo<'_> {
    fn value_len(&self) -> der::Result<Length> {
        let fields = (self.content_type.encoded_len()? + self.algorithm.encoded_len()?)?;
        with_content_field(self.content.as_deref(), |c| fields + c.encoded_len()?)
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.content_type.encode(writer)?;
        self.algorithm.encode(writer)?;
        with_content_field(self.content.as_deref(), |c| c.encode(writer))
    }
}

/// `RecipientInfos ::= SET SIZE (1..MAX) OF RecipientInfo`, kept encoded: the contents of
/// the SET, its members one after the other.
///
/// `der`'s `SetOfVec` sorts what it decodes by insertion sort, re-encoding both members for
/// every comparison: quadratic in the number of members, which the blob's author chooses.
/// Here the members are counted first ([`RecipientInfoSet::len`], linear, nothing decoded)
/// and then handed out undecoded in the order they come ([`RecipientInfoSet::members`]), so
/// that a reader can refuse too many, check each before decoding it, and decode them
/// without sorting. (The DER order of a SET OF is not checked when reading; it is written
/// sorted.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecipientInfoSet<'a> {
    members: &'a [u8],
}

impl<'a> RecipientInfoSet<'a> {
    /// The SET holding `der`, the DER of a `RecipientInfos` (as `cms` encodes one).
    pub(crate) fn from_set_der(der: &'a [u8]) -> der::Result<Self> {
        Self::from_der(der)
    }

    /// How many members the SET has, reading only their headers.
    pub(crate) fn len(&self) -> der::Result<usize> {
        let mut reader = der::SliceReader::new(self.members)?;
        let mut n = 0usize;
        while !reader.is_finished() {
            let header = Header::decode(&mut reader)?;
            reader.read_slice(header.length)?;
            n = n.saturating_add(1);
        }
        Ok(n)
    }

    /// The members' DER, in the order they come, undecoded.
    pub(crate) fn members(&self) -> der::Result<Vec<&'a [u8]>> {
        let mut reader = der::SliceReader::new(self.members)?;
        let mut members = Vec::new();
        while !reader.is_finished() {
            members.push(reader.tlv_bytes()?);
        }
        Ok(members)
    }
}

impl<'a> Decode<'a> for RecipientInfoSet<'a> {
    fn decode<R: Reader<'a>>(reader: &mut R) -> der::Result<Self> {
        let tlv = RawTlv::decode(reader)?;
        if tlv.tag != SET {
            return Err(ErrorKind::TagUnexpected {
                expected: Some(Tag::Set),
                actual: Tag::try_from(tlv.tag)?,
            }
            .into());
        }
        Ok(Self { members: tlv.value })
    }
}

impl Encode for RecipientInfoSet<'_> {
    fn encoded_len(&self) -> der::Result<Length> {
        self.raw().encoded_len()
    }

    fn encode(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.raw().encode(writer)
    }
}

impl RecipientInfoSet<'_> {
    fn raw(&self) -> RawTlv<'_> {
        RawTlv {
            tag: SET,
            value: self.members,
        }
    }
}

/// How deep [`largest_set`] looks: deeper than any SET OF that decoding a RecipientInfo
/// sorts (an issuer Name's RDNs are at most six levels down, in a KeyAgreeRecipientInfo).
const SCAN_DEPTH: usize = 16;

/// The most members any SET (tag `0x31`) in the DER element `element` has, at any depth up
/// to [`SCAN_DEPTH`], read from the headers alone (linear in the size of `element`).
///
/// `der`'s SET OF decoding sorts the members by insertion sort, re-encoding two members
/// per comparison, so it is quadratic in this number; checking it first bounds that work.
/// What cannot be parsed is not looked into (the decoder fails on it, or takes it as an
/// opaque `ANY` that it does not sort).
pub(crate) fn largest_set(element: &[u8]) -> usize {
    scan(element, SCAN_DEPTH).1
}

/// How many elements `contents` holds, and the most members of any SET among or in them.
fn scan(contents: &[u8], depth: usize) -> (usize, usize) {
    let Ok(mut reader) = der::SliceReader::new(contents) else {
        return (0, 0);
    };
    let (mut count, mut largest) = (0usize, 0usize);
    while !reader.is_finished() {
        let Ok(header) = Header::decode(&mut reader) else {
            break;
        };
        let Ok(value) = reader.read_slice(header.length) else {
            break;
        };
        count = count.saturating_add(1);
        if header.tag.is_constructed() && depth > 0 {
            let (members, inner) = scan(value, depth - 1);
            largest = largest.max(inner);
            if header.tag == Tag::Set {
                largest = largest.max(members);
            }
        }
    }
    (count, largest)
}

/// `EnvelopedData` (RFC 5652 §6.1). `originatorInfo` and `unprotectedAttrs` are skipped
/// when read and never written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EnvelopedData<'a> {
    pub(crate) version: CmsVersion,
    pub(crate) recipient_infos: RecipientInfoSet<'a>,
    pub(crate) encrypted_content: EncryptedContentInfo<'a>,
}

impl FixedTag for EnvelopedData<'_> {
    const TAG: Tag = Tag::Sequence;
}

impl<'a> DecodeValue<'a> for EnvelopedData<'a> {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        reader.read_nested(header.length, |r| {
            let version = r.decode()?;
            if r.peek_byte() == Some(CONTEXT_0_CONSTRUCTED) {
                RawTlv::decode(r)?;
            }
            let recipient_infos = r.decode()?;
            let encrypted_content = r.decode()?;
            if r.peek_byte() == Some(CONTEXT_1_CONSTRUCTED) {
                RawTlv::decode(r)?;
            }
            Ok(Self {
                version,
                recipient_infos,
                encrypted_content,
            })
        })
    }
}

impl EncodeValue for EnvelopedData<'_> {
    fn value_len(&self) -> der::Result<Length> {
        (self.version.encoded_len()? + self.recipient_infos.encoded_len()?)?
            + self.encrypted_content.encoded_len()?
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.version.encode(writer)?;
        self.recipient_infos.encode(writer)?;
        self.encrypted_content.encode(writer)
    }
}

/// `ContentInfo` (RFC 5652 §3) holding an EnvelopedData: `content` is the EnvelopedData's
/// DER, inside `[0] EXPLICIT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContentInfo<'a> {
    pub(crate) content_type: ObjectIdentifier,
    pub(crate) content: &'a [u8],
}

impl FixedTag for ContentInfo<'_> {
    const TAG: Tag = Tag::Sequence;
}

impl<'a> DecodeValue<'a> for ContentInfo<'a> {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        reader.read_nested(header.length, |r| {
            let content_type = r.decode()?;
            let tlv = RawTlv::decode(r)?;
            if tlv.tag != CONTEXT_0_CONSTRUCTED {
                return Err(Tag::ContextSpecific {
                    constructed: true,
                    number: TagNumber::N0,
                }
                .value_error());
            }
            Ok(Self {
                content_type,
                content: tlv.value,
            })
        })
    }
}

impl EncodeValue for ContentInfo<'_> {
    fn value_len(&self) -> der::Result<Length> {
        self.content_type.encoded_len()? + self.explicit().encoded_len()?
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.content_type.encode(writer)?;
        self.explicit().encode(writer)
    }
}

impl ContentInfo<'_> {
    fn explicit(&self) -> RawTlv<'_> {
        RawTlv {
            tag: CONTEXT_0_CONSTRUCTED,
            value: self.content,
        }
    }
}

/// Go's AES-GCM parameters, the contents of the tag-`0x10` element: `SEQUENCE { [4]
/// IMPLICIT OCTET STRING nonce, INTEGER icvLen }` (smallstep/pkcs7 declares the nonce
/// field with `asn1:"tag:4"`, and the whole struct with `asn1:"tag:16"` on a RawValue).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub(crate) struct GoGcmParameters {
    #[asn1(context_specific = "4", tag_mode = "IMPLICIT")]
    pub(crate) nonce: OctetString,
    pub(crate) icv_len: u32,
}

/// RFC 5084 `GCMParameters ::= SEQUENCE { aes-nonce OCTET STRING, aes-ICVlen AES-GCM-ICVlen
/// DEFAULT 12 }`.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub(crate) struct GcmParameters {
    pub(crate) nonce: OctetString,
    #[asn1(optional = "true")]
    pub(crate) icv_len: Option<u32>,
}

/// RFC 4055 `RSAES-OAEP-params`; absent fields take their defaults (SHA-1, MGF1-SHA-1,
/// empty label).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub(crate) struct OaepParameters {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) hash: Option<spki::AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) mask_gen: Option<spki::AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) label_source: Option<spki::AlgorithmIdentifierOwned>,
}
