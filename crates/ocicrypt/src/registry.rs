//! The set of key-wrap schemes in use: a value, not a global.

use std::sync::Arc;

use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, KeyWrapper};

use crate::Error;

/// The key wrappers a [`Ocicrypt`](crate::Ocicrypt) uses, by scheme.
///
/// [`Registry::default()`] holds every scheme compiled in (see the crate's features).
/// Remove schemes with [`Registry::without`], add others with [`Registry::with`], or set
/// the fields (the struct is `#[non_exhaustive]`: start from [`Registry::default()`] or
/// [`Registry::empty()`]):
///
/// ```
/// # use ocicrypt::Registry;
/// let only_jwe = Registry::default().without("pkcs7").without("pgp").without("pkcs11");
/// assert!(ocicrypt::Ocicrypt::new(only_jwe).is_ok());
/// ```
///
/// When decrypting, schemes are tried in the order `jwe`, `pkcs7`, `pgp`, `pkcs11`, then
/// [`Registry::others`] in order (Go tries them in random map order).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Registry {
    /// The `jwe` scheme.
    pub jwe: Option<Arc<dyn KeyWrapper>>,
    /// The `pkcs7` scheme.
    pub pkcs7: Option<Arc<dyn KeyWrapper>>,
    /// The `pgp` scheme.
    pub pgp: Option<Arc<dyn KeyWrapper>>,
    /// The `pkcs11` scheme.
    pub pkcs11: Option<Arc<dyn KeyWrapper>>,
    /// Further schemes, such as key providers (`provider.<name>`).
    pub others: Vec<Arc<dyn KeyWrapper>>,
}

// Derivable only when no scheme feature is on.
#[allow(clippy::derivable_impls)]
impl Default for Registry {
    fn default() -> Self {
        Self {
            #[cfg(feature = "jwe")]
            jwe: Some(Arc::new(ocicrypt_keywrap_jwe::JweKeyWrapper)),
            #[cfg(not(feature = "jwe"))]
            jwe: None,
            #[cfg(feature = "pkcs7")]
            pkcs7: Some(Arc::new(ocicrypt_keywrap_pkcs7::Pkcs7KeyWrapper)),
            #[cfg(not(feature = "pkcs7"))]
            pkcs7: None,
            #[cfg(feature = "pgp")]
            pgp: Some(Arc::new(ocicrypt_keywrap_pgp::PgpKeyWrapper)),
            #[cfg(not(feature = "pgp"))]
            pgp: None,
            #[cfg(feature = "pkcs11")]
            pkcs11: Some(Arc::new(ocicrypt_keywrap_pkcs11::Pkcs11KeyWrapper::new())),
            #[cfg(not(feature = "pkcs11"))]
            pkcs11: None,
            others: Vec::new(),
        }
    }
}

impl Registry {
    /// A registry with no scheme at all.
    pub fn empty() -> Self {
        Self {
            jwe: None,
            pkcs7: None,
            pgp: None,
            pkcs11: None,
            others: Vec::new(),
        }
    }

    /// Removes the scheme named `scheme` (`jwe`, `pkcs7`, `pgp`, `pkcs11`, or one of
    /// [`Registry::others`], such as `provider.kms`); nothing if there is none.
    #[must_use]
    pub fn without(mut self, scheme: &str) -> Self {
        match scheme {
            "jwe" => self.jwe = None,
            "pkcs7" => self.pkcs7 = None,
            "pgp" => self.pgp = None,
            "pkcs11" => self.pkcs11 = None,
            _ => self.others.retain(|w| w.scheme() != scheme),
        }
        self
    }

    /// Adds (or replaces, by scheme name) one of [`Registry::others`].
    #[must_use]
    pub fn with(mut self, wrapper: Arc<dyn KeyWrapper>) -> Self {
        self.others.retain(|w| w.scheme() != wrapper.scheme());
        self.others.push(wrapper);
        self
    }

    /// [`Registry::default()`] plus one `provider.<name>` scheme per key provider in the
    /// file named by `OCICRYPT_KEYPROVIDER_CONFIG` (none if it is unset), as Go ocicrypt
    /// registers them at start-up. Providers receive only their own parameters; see
    /// [`Registry::with_key_providers`] for other options.
    ///
    /// # Errors
    /// [`Error::KeyProviderConfig`] if the file cannot be read or is not valid.
    #[cfg(any(feature = "keyprovider-cmd", feature = "keyprovider-grpc"))]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(feature = "keyprovider-cmd", feature = "keyprovider-grpc")))
    )]
    pub fn from_env() -> Result<Self, Error> {
        let config = ocicrypt_keyprovider::Config::from_env()?;
        Self::default().with_key_providers(&config, &ocicrypt_keyprovider::Options::default())
    }

    /// Adds (or replaces) one `provider.<name>` scheme per key provider in `config`.
    ///
    /// # Errors
    /// [`Error::KeyProviderConfig`] if a provider's configuration is unusable.
    #[cfg(any(feature = "keyprovider-cmd", feature = "keyprovider-grpc"))]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(feature = "keyprovider-cmd", feature = "keyprovider-grpc")))
    )]
    pub fn with_key_providers(
        mut self,
        config: &ocicrypt_keyprovider::Config,
        options: &ocicrypt_keyprovider::Options,
    ) -> Result<Self, Error> {
        for w in ocicrypt_keyprovider::wrappers_from_config(config, options)? {
            self = self.with(w);
        }
        Ok(self)
    }

    /// Every registered wrapper, in decryption order.
    pub fn wrappers(&self) -> impl Iterator<Item = &Arc<dyn KeyWrapper>> {
        [&self.jwe, &self.pkcs7, &self.pgp, &self.pkcs11]
            .into_iter()
            .flatten()
            .chain(self.others.iter())
    }

    /// The wrapper of `scheme`, if registered.
    pub fn get(&self, scheme: &str) -> Option<&Arc<dyn KeyWrapper>> {
        self.wrappers().find(|w| w.scheme() == scheme)
    }

    /// Checks that each built-in field holds its own scheme and that scheme names are
    /// unique and well formed.
    ///
    /// # Errors
    /// [`Error::InvalidRegistry`] saying what is wrong.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::InvalidRegistry { reason });
        for (name, field) in [
            ("jwe", &self.jwe),
            ("pkcs7", &self.pkcs7),
            ("pgp", &self.pgp),
            ("pkcs11", &self.pkcs11),
        ] {
            if let Some(w) = field
                && w.scheme() != name
            {
                return bad(format!("field {name} holds scheme {:?}", w.scheme()));
            }
        }
        let mut seen = Vec::new();
        for w in self.wrappers() {
            let s = w.scheme();
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return bad(format!(
                    "scheme name {s:?} is not a valid annotation suffix"
                ));
            }
            if seen.contains(&s) {
                return bad(format!("scheme {s} is registered twice"));
            }
            seen.push(s);
        }
        Ok(())
    }

    /// Schemes that `ec` has recipients for but that are not registered.
    pub(crate) fn unavailable_recipient_schemes(&self, ec: &EncryptConfig) -> Vec<String> {
        let mut missing = Vec::new();
        let builtin = [
            ("jwe", !ec.jwe_public_keys.is_empty(), &self.jwe),
            ("pkcs7", !ec.pkcs7_certificates.is_empty(), &self.pkcs7),
            ("pgp", !ec.gpg_recipients.is_empty(), &self.pgp),
            (
                "pkcs11",
                !ec.pkcs11_public_keys.is_empty() || !ec.pkcs11_yamls.is_empty(),
                &self.pkcs11,
            ),
        ];
        for (name, wanted, field) in builtin {
            if wanted && field.is_none() {
                missing.push(name.to_owned());
            }
        }
        for name in ec.key_providers.keys() {
            let scheme = format!("provider.{name}");
            if self.get(&scheme).is_none() {
                missing.push(scheme);
            }
        }
        missing
    }

    /// Schemes that `dc` has keys for but that are not registered.
    pub(crate) fn unavailable_key_schemes(&self, dc: &DecryptConfig) -> Vec<String> {
        let mut missing = Vec::new();
        if !dc.gpg_private_keys.is_empty() && self.pgp.is_none() {
            missing.push("pgp".to_owned());
        }
        if !dc.pkcs11_yamls.is_empty() && self.pkcs11.is_none() {
            missing.push("pkcs11".to_owned());
        }
        if !dc.private_keys.is_empty() && self.jwe.is_none() && self.pkcs7.is_none() {
            missing.push("jwe".to_owned());
        }
        missing
    }
}
