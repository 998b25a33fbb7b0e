//! Layer media types, and the `+encrypted` suffix that marks an encrypted layer.
//!
//! Go ocicrypt never reads or sets media types itself; its consumers (containers/image,
//! imgcrypt) append `+encrypted` when they encrypt a layer and strip it when they decrypt.
//! These helpers do exactly that, so call sites need no string surgery.

use oci_spec::image::MediaType;

/// The suffix that marks an encrypted layer's media type.
pub const ENCRYPTED_SUFFIX: &str = "+encrypted";

/// An uncompressed OCI layer.
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzip-compressed OCI layer (the usual kind).
pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd-compressed OCI layer.
pub const LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// An encrypted uncompressed OCI layer.
pub const LAYER_TAR_ENCRYPTED: &str = "application/vnd.oci.image.layer.v1.tar+encrypted";
/// An encrypted gzip-compressed OCI layer.
pub const LAYER_TAR_GZIP_ENCRYPTED: &str = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted";
/// An encrypted zstd-compressed OCI layer.
pub const LAYER_TAR_ZSTD_ENCRYPTED: &str = "application/vnd.oci.image.layer.v1.tar+zstd+encrypted";
/// An encrypted non-distributable uncompressed layer.
pub const LAYER_NONDISTRIBUTABLE_TAR_ENCRYPTED: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+encrypted";
/// An encrypted non-distributable gzip-compressed layer.
pub const LAYER_NONDISTRIBUTABLE_TAR_GZIP_ENCRYPTED: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip+encrypted";
/// An encrypted non-distributable zstd-compressed layer.
pub const LAYER_NONDISTRIBUTABLE_TAR_ZSTD_ENCRYPTED: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd+encrypted";
/// A WebAssembly layer.
pub const WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// An encrypted WebAssembly layer.
pub const WASM_LAYER_ENCRYPTED: &str = "application/vnd.wasm.content.layer.v1+wasm+encrypted";
/// A Docker schema 2 gzip layer (encrypted Docker layers get the same suffix).
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Whether `media_type` names an encrypted layer (ends with `+encrypted`).
pub fn is_encrypted(media_type: &str) -> bool {
    media_type.ends_with(ENCRYPTED_SUFFIX)
}

/// The encrypted form of `media_type` (unchanged if it already is encrypted).
pub fn to_encrypted(media_type: &str) -> String {
    if is_encrypted(media_type) {
        media_type.to_owned()
    } else {
        format!("{media_type}{ENCRYPTED_SUFFIX}")
    }
}

/// The plain form of `media_type` (unchanged if it is not encrypted).
pub fn to_decrypted(media_type: &str) -> &str {
    media_type
        .strip_suffix(ENCRYPTED_SUFFIX)
        .unwrap_or(media_type)
}

/// [`is_encrypted`] for an `oci_spec` media type.
pub fn is_encrypted_type(media_type: &MediaType) -> bool {
    is_encrypted(media_type.as_ref())
}

/// [`to_encrypted`] for an `oci_spec` media type (encrypted types are `MediaType::Other`).
pub fn to_encrypted_type(media_type: &MediaType) -> MediaType {
    MediaType::from(to_encrypted(media_type.as_ref()).as_str())
}

/// [`to_decrypted`] for an `oci_spec` media type.
pub fn to_decrypted_type(media_type: &MediaType) -> MediaType {
    MediaType::from(to_decrypted(media_type.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_helpers() {
        for (plain, enc) in [
            (LAYER_TAR, LAYER_TAR_ENCRYPTED),
            (LAYER_TAR_GZIP, LAYER_TAR_GZIP_ENCRYPTED),
            (LAYER_TAR_ZSTD, LAYER_TAR_ZSTD_ENCRYPTED),
            (WASM_LAYER, WASM_LAYER_ENCRYPTED),
        ] {
            assert_eq!(to_encrypted(plain), enc);
            assert_eq!(to_encrypted(enc), enc);
            assert_eq!(to_decrypted(enc), plain);
            assert_eq!(to_decrypted(plain), plain);
            assert!(is_encrypted(enc) && !is_encrypted(plain));
        }
    }

    #[test]
    fn oci_spec_types() {
        let gz = MediaType::ImageLayerGzip;
        let enc = to_encrypted_type(&gz);
        assert_eq!(enc.to_string(), LAYER_TAR_GZIP_ENCRYPTED);
        assert!(is_encrypted_type(&enc));
        assert_eq!(to_decrypted_type(&enc), MediaType::ImageLayerGzip);
    }
}
