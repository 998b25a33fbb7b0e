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
use cms::enveloped_data::RecipientInfos;
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

/// `EnvelopedData` (RFC 5652 §6.1). `originatorInfo` and `unprotectedAttrs` are skipped
/// when read and never written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EnvelopedData<'a> {
    pub(crate) version: CmsVersion,
    pub(crate) recipient_infos: RecipientInfos,
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
