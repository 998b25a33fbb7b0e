#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tokio")]
mod asyncio;
pub mod descriptor;
mod error;
pub mod helpers;
mod layer;
mod registry;

use std::collections::{BTreeMap, HashMap};

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use asyncio::{
    AsyncLayerDecryptor, AsyncLayerEncryptor, decrypt_layer_async, encrypt_layer_async,
};
pub use error::Error;
pub use layer::{Encrypted, LayerDecryptor, LayerEncryptor, LayerInfo, SchemeInfo};
pub use registry::Registry;

pub use oci_spec;
pub use oci_spec::image::Descriptor;
pub use ocicrypt_blockcipher as blockcipher;
#[cfg(any(feature = "keyprovider-cmd", feature = "keyprovider-grpc"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "keyprovider-cmd", feature = "keyprovider-grpc")))
)]
pub use ocicrypt_keyprovider as keyprovider;
pub use ocicrypt_keywrap as keywrap;
pub use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, KeyFile, KeyWrapper, SecretBytes};
#[cfg(feature = "jwe")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwe")))]
pub use ocicrypt_keywrap_jwe as jwe;
#[cfg(feature = "pgp")]
#[cfg_attr(docsrs, doc(cfg(feature = "pgp")))]
pub use ocicrypt_keywrap_pgp as pgp;
#[cfg(feature = "pkcs7")]
#[cfg_attr(docsrs, doc(cfg(feature = "pkcs7")))]
pub use ocicrypt_keywrap_pkcs7 as pkcs7;
#[cfg(feature = "pkcs11")]
#[cfg_attr(docsrs, doc(cfg(feature = "pkcs11")))]
pub use ocicrypt_keywrap_pkcs11 as pkcs11;
pub use ocicrypt_spec as spec;

/// Encryption annotations to merge into a layer descriptor (sorted by key).
pub type Annotations = BTreeMap<String, String>;

/// Encrypts and decrypts layers with the key wrappers of one [`Registry`].
///
/// Cheap to clone; share one per process. [`Ocicrypt::default()`] uses every scheme
/// compiled in.
#[derive(Clone, Debug, Default)]
pub struct Ocicrypt {
    registry: Registry,
}

impl Ocicrypt {
    /// Uses the schemes of `registry`, after checking it once.
    ///
    /// # Errors
    /// [`Error::InvalidRegistry`] if the registry is inconsistent.
    pub fn new(registry: Registry) -> Result<Self, Error> {
        registry.validate()?;
        Ok(Self { registry })
    }

    /// The registry in use.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// A descriptor's annotations as a map (empty if it has none).
fn annotations_of(desc: &Descriptor) -> HashMap<String, String> {
    desc.annotations().clone().unwrap_or_default()
}

/// The annotations of `desc`, which must describe an encrypted layer: else
/// [`Error::NotEncrypted`] (or [`Error::InconsistentEncryption`]).
fn encrypted_annotations(desc: &Descriptor) -> Result<HashMap<String, String>, Error> {
    if !descriptor::is_encrypted(desc)? {
        return Err(Error::NotEncrypted);
    }
    Ok(annotations_of(desc))
}

/// Encrypts with [`Ocicrypt::default()`]; see [`Ocicrypt::encrypt_layer`].
///
/// # Errors
/// As [`Ocicrypt::encrypt_layer`].
pub fn encrypt_layer<R: std::io::Read>(
    ec: &EncryptConfig,
    reader: R,
    desc: &Descriptor,
) -> Result<Encrypted<R>, Error> {
    Ocicrypt::default().encrypt_layer(ec, reader, desc)
}

/// Decrypts with [`Ocicrypt::default()`]; see [`Ocicrypt::decrypt_layer`].
///
/// # Errors
/// As [`Ocicrypt::decrypt_layer`].
pub fn decrypt_layer<R: std::io::Read>(
    dc: &DecryptConfig,
    reader: R,
    desc: &Descriptor,
) -> Result<LayerDecryptor<R>, Error> {
    Ocicrypt::default().decrypt_layer(dc, reader, desc)
}
