#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod error;
#[cfg(feature = "openssl")]
#[cfg_attr(docsrs, doc(cfg(feature = "openssl")))]
pub mod keys;
mod search;

use std::fmt;

pub use config::{DecryptConfig, EncryptConfig, KeyFile, Parameters};
pub use error::{BoxError, Cause, CauseKind, Error, Failure};
pub use ocicrypt_spec::secret::SecretBytes;
pub use search::{Budget, KeySearch, Loaded};
pub use secrecy;

/// Tries `unwrap` on each of `blobs` in turn: the first success, or every error, stopping
/// early after a password error or a limit ([`Error::is_password_error`],
/// [`Error::LimitExceeded`]). The loop behind [`KeyWrapper::unwrap_first`], for schemes that
/// override it to keep state (unlocked keys, a budget) across the blobs.
///
/// # Errors
/// One error per blob tried, in order, when none opened.
pub fn unwrap_in_turn(
    blobs: &[Vec<u8>],
    mut unwrap: impl FnMut(&[u8]) -> Result<SecretBytes, Error>,
) -> Result<SecretBytes, Vec<Error>> {
    let mut errors = Vec::new();
    for blob in blobs {
        match unwrap(blob) {
            Ok(json) => return Ok(json),
            Err(e) => {
                let stop = e.is_password_error() || matches!(e, Error::LimitExceeded { .. });
                errors.push(e);
                if stop {
                    break;
                }
            }
        }
    }
    Err(errors)
}

/// One key-wrap scheme (`jwe`, `pkcs7`, `pgp`, `pkcs11`, `provider.<name>`).
///
/// A wrapper turns the serialized private options of a layer into one opaque blob for all
/// of its recipients in an [`EncryptConfig`], and turns such a blob back into the private
/// options given suitable keys in a [`DecryptConfig`]. Wrappers own no key store: all keys
/// come from the configs.
pub trait KeyWrapper: Send + Sync + fmt::Debug {
    /// The scheme name, the suffix of its annotation key (`jwe`, `provider.kms`, ...).
    fn scheme(&self) -> &str;

    /// The annotation key that holds this scheme's wrapped keys.
    fn annotation_key(&self) -> String {
        ocicrypt_spec::annotations::keys_annotation(self.scheme())
    }

    /// Wraps `opts_data` (the private options JSON) for every recipient of this scheme in
    /// `ec`, as one blob. Returns `Ok(None)` when `ec` has no recipients for this scheme.
    ///
    /// # Errors
    /// When a recipient's key cannot be parsed or used; no blob is produced then.
    fn wrap_keys(&self, ec: &EncryptConfig, opts_data: &[u8]) -> Result<Option<Vec<u8>>, Error>;

    /// Unwraps one blob of this scheme with the keys in `dc`, returning the private
    /// options JSON.
    ///
    /// The keys are tried in order; a key that does not fit is a cause of
    /// [`Error::NoMatchingKey`] and the next is tried, but a key that needs a password it
    /// was not given, or was given a wrong one for, stops the search with
    /// [`Error::MissingPassword`] or [`Error::WrongPassword`], as [`unwrap_in_turn`] stops
    /// across blobs. The `conformance` module (feature `conformance`) checks this contract.
    ///
    /// # Errors
    /// [`Error::NoMatchingKey`] when none of the keys opens the blob (or there is none), or
    /// a more specific error (malformed blob, bad password) when that is what went wrong.
    fn unwrap_key(&self, dc: &DecryptConfig, blob: &[u8]) -> Result<SecretBytes, Error>;

    /// Unwraps the first of `blobs` (a layer's wrapped keys of this scheme, in annotation
    /// order) that the keys in `dc` open. On failure, the error of each blob tried; the
    /// search stops early at a password error or a limit
    /// ([`Error::is_password_error`], [`Error::LimitExceeded`]).
    ///
    /// The default calls [`KeyWrapper::unwrap_key`] for each blob. Schemes whose keys are
    /// costly to unlock (a password-protected key file costs a key derivation) override it
    /// to unlock each key once for all the blobs of the layer.
    ///
    /// # Errors
    /// One error per blob tried, in order, when none opened.
    fn unwrap_first(
        &self,
        dc: &DecryptConfig,
        blobs: &[Vec<u8>],
    ) -> Result<SecretBytes, Vec<Error>> {
        unwrap_in_turn(blobs, |blob| self.unwrap_key(dc, blob))
    }

    /// Whether `dc` holds any key this scheme could try (Go's `!NoPossibleKeys`).
    fn has_possible_keys(&self, dc: &DecryptConfig) -> bool;

    /// Whether `ec` holds recipients for this scheme.
    fn has_recipients(&self, ec: &EncryptConfig) -> bool;

    /// Human-readable recipients of one blob, for `inspect` (Go's `GetRecipients`).
    /// The default is `["[<scheme>]"]`, as Go answers for schemes that cannot tell.
    ///
    /// # Errors
    /// When the blob cannot be parsed.
    fn recipients(&self, blob: &[u8]) -> Result<Vec<String>, Error> {
        let _ = blob;
        Ok(vec![format!("[{}]", self.scheme())])
    }

    /// Key ids named in one blob (OpenPGP key ids; empty for other schemes).
    ///
    /// # Errors
    /// When the blob cannot be parsed.
    fn key_ids(&self, blob: &[u8]) -> Result<Vec<u64>, Error> {
        let _ = blob;
        Ok(Vec::new())
    }
}
