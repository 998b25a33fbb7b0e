//! The descriptor of a layer after it was encrypted, decrypted or given new recipients.
//!
//! Go ocicrypt leaves it to its callers to rebuild descriptors; these functions do it once,
//! the way skopeo and containerd's imgcrypt do: the media type gains or loses `+encrypted`,
//! digest and size become the new blob's, the encryption annotations
//! (`org.opencontainers.image.enc.*`) are replaced, and every other field and annotation is
//! kept. [`LayerEncryptor::finalize_descriptor`](crate::LayerEncryptor::finalize_descriptor)
//! and [`LayerDecryptor::descriptor`](crate::LayerDecryptor::descriptor) call them for you.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, Digest};
use ocicrypt_spec::annotations::is_encryption_annotation;
use ocicrypt_spec::media_types::{to_decrypted_type, to_encrypted_type};

use crate::{Annotations, Error};

/// Whether `desc` is an encrypted layer: the one rule this workspace applies everywhere.
///
/// A layer is encrypted when its media type ends in `+encrypted` *and* it carries a
/// non-empty wrapped-key annotation (`org.opencontainers.image.enc.keys.*`, of any scheme);
/// it is plain when it has neither. Anything in between is refused rather than guessed at:
/// taking a plain-typed layer with foreign key annotations for encrypted would report
/// plaintext as encrypted, and the other way round would encrypt ciphertext again.
///
/// # Errors
/// [`Error::InconsistentEncryption`] when media type and annotations disagree.
pub fn is_encrypted(desc: &Descriptor) -> Result<bool, Error> {
    let by_type = ocicrypt_spec::media_types::is_encrypted_type(desc.media_type());
    let by_annotations = desc
        .annotations()
        .iter()
        .flatten()
        .any(|(k, v)| k.starts_with(ocicrypt_spec::annotations::KEYS_PREFIX) && !v.is_empty());
    if by_type == by_annotations {
        Ok(by_type)
    } else {
        Err(Error::InconsistentEncryption {
            media_type: desc.media_type().to_string(),
            annotated: by_annotations,
        })
    }
}

/// `base`'s annotations without the encryption ones.
fn plain_annotations(base: &Descriptor) -> HashMap<String, String> {
    base.annotations()
        .iter()
        .flatten()
        .filter(|(k, _)| !is_encryption_annotation(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn set_annotations(desc: &mut Descriptor, annotations: HashMap<String, String>) {
    desc.set_annotations((!annotations.is_empty()).then_some(annotations));
}

/// The descriptor of the encrypted blob (`digest`, `size`) made from the layer `base`
/// (plain, or already encrypted when recipients were added): its media type with
/// `+encrypted`, and `encryption` (from
/// [`LayerEncryptor::finalize`](crate::LayerEncryptor::finalize) or
/// [`Encrypted::RecipientsAdded`](crate::Encrypted::RecipientsAdded)) in place of any earlier
/// encryption annotations.
pub fn encrypted(
    base: &Descriptor,
    encryption: &Annotations,
    digest: Digest,
    size: u64,
) -> Descriptor {
    let mut desc = base.clone();
    desc.set_media_type(to_encrypted_type(base.media_type()));
    desc.set_digest(digest);
    desc.set_size(size);
    let mut annotations = plain_annotations(base);
    annotations.extend(encryption.iter().map(|(k, v)| (k.clone(), v.clone())));
    set_annotations(&mut desc, annotations);
    desc
}

/// The descriptor of an encrypted layer `base` with new encryption annotations and the same
/// data (recipients added or replaced): [`encrypted`] with `base`'s digest and size.
pub fn rewrapped(base: &Descriptor, encryption: &Annotations) -> Descriptor {
    encrypted(base, encryption, base.digest().clone(), base.size())
}

/// The descriptor of the decrypted blob (`digest`, `size`) of the encrypted layer `base`:
/// its media type without `+encrypted` and without the encryption annotations.
pub fn decrypted(base: &Descriptor, digest: Digest, size: u64) -> Descriptor {
    let mut desc = base.clone();
    desc.set_media_type(to_decrypted_type(base.media_type()));
    desc.set_digest(digest);
    desc.set_size(size);
    set_annotations(&mut desc, plain_annotations(base));
    desc
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::MediaType;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn encrypt_then_decrypt_keeps_other_fields() {
        let mut plain = Descriptor::new(MediaType::ImageLayerGzip, 10, digest('a'));
        plain.set_urls(Some(vec!["https://example.com/l".into()]));
        plain.set_annotations(Some(HashMap::from([
            ("keep".to_owned(), "me".to_owned()),
            (
                "org.opencontainers.image.enc.keys.jwe".to_owned(),
                "old".to_owned(),
            ),
        ])));
        let enc_ann = Annotations::from([(
            "org.opencontainers.image.enc.keys.pgp".to_owned(),
            "new".to_owned(),
        )]);
        let enc = encrypted(&plain, &enc_ann, digest('b'), 11);
        assert_eq!(
            enc.media_type().to_string(),
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
        );
        assert_eq!((enc.digest(), enc.size()), (&digest('b'), 11));
        assert_eq!(enc.urls(), plain.urls());
        let ann = enc.annotations().clone().unwrap();
        assert_eq!(ann.len(), 2);
        assert_eq!(ann["keep"], "me");
        assert_eq!(ann["org.opencontainers.image.enc.keys.pgp"], "new");

        let again = rewrapped(&enc, &Annotations::new());
        assert_eq!((again.digest(), again.size()), (&digest('b'), 11));
        assert_eq!(again.media_type(), enc.media_type());

        let dec = decrypted(&enc, digest('a'), 10);
        assert_eq!(dec.media_type(), &MediaType::ImageLayerGzip);
        assert_eq!(
            dec.annotations().clone().unwrap(),
            HashMap::from([("keep".to_owned(), "me".to_owned())])
        );
        let bare = decrypted(&rewrapped(&enc, &enc_ann), digest('a'), 10);
        let mut no_ann = bare.clone();
        no_ann.set_annotations(None);
        assert_eq!(bare.annotations().as_ref().map(HashMap::len), Some(1));
        assert_ne!(bare, no_ann);
    }
}
