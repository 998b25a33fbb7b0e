//! The `provider.<name>` key wrappers.

use std::sync::Arc;
use std::time::Duration;

use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, KeyWrapper, Parameters, SecretBytes};
use zeroize::Zeroizing;

use crate::Error;
use crate::config::{Config, Invocation, ProviderConfig};
use crate::protocol::{GoDecryptConfig, GoEncryptConfig, Operation, ProtocolInput, ProtocolOutput};

/// How providers are called.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Send the whole encryption/decryption configuration to the provider, as Go does:
    /// every scheme's recipients, private keys and passwords. The default (`false`)
    /// sends only the provider's own entry (`Parameters: {"<name>": [...]}`).
    pub send_full_config: bool,
    /// How long one call may take (connect, request and reply). A program that takes
    /// longer is killed. Default 60 s. (Go has no limit.)
    pub timeout: Duration,
    /// The largest reply accepted, in bytes. Default 4 MiB.
    pub max_reply_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            send_full_config: false,
            timeout: Duration::from_secs(60),
            max_reply_size: 4 << 20,
        }
    }
}

impl Options {
    /// Sets [`Options::send_full_config`].
    #[must_use]
    pub fn send_full_config(mut self, on: bool) -> Self {
        self.send_full_config = on;
        self
    }

    /// Sets [`Options::timeout`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`Options::max_reply_size`].
    #[must_use]
    pub fn max_reply_size(mut self, bytes: usize) -> Self {
        self.max_reply_size = bytes;
        self
    }
}

/// The key wrapper of one configured provider: scheme `provider.<name>`.
#[derive(Clone, Debug)]
pub struct KeyProviderKeyWrapper {
    name: String,
    scheme: String,
    config: ProviderConfig,
    options: Options,
}

/// One wrapper per provider in `config`, in name order.
///
/// # Errors
/// [`Error::UnsupportedInvocation`] for a provider with neither `cmd` nor `grpc`, and
/// [`Error::FeatureDisabled`] for one whose protocol is not compiled in (Go reports the
/// former only when the provider is used).
pub fn wrappers_from_config(
    config: &Config,
    options: &Options,
) -> Result<Vec<Arc<dyn KeyWrapper>>, Error> {
    config
        .key_providers
        .iter()
        .map(|(name, pc)| {
            KeyProviderKeyWrapper::new(name, pc.clone(), options.clone())
                .map(|w| Arc::new(w) as Arc<dyn KeyWrapper>)
        })
        .collect()
}

impl KeyProviderKeyWrapper {
    /// The wrapper for provider `name`.
    ///
    /// # Errors
    /// As [`wrappers_from_config`].
    pub fn new(name: &str, config: ProviderConfig, options: Options) -> Result<Self, Error> {
        match config.invocation(name)? {
            Invocation::Command(_) if !cfg!(feature = "cmd") => {
                return Err(Error::FeatureDisabled {
                    name: name.to_owned(),
                    feature: "cmd",
                });
            }
            Invocation::Grpc { .. } if !cfg!(feature = "grpc") => {
                return Err(Error::FeatureDisabled {
                    name: name.to_owned(),
                    feature: "grpc",
                });
            }
            _ => {}
        }
        Ok(Self {
            scheme: format!("provider.{name}"),
            name: name.to_owned(),
            config,
            options,
        })
    }

    /// The provider's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `keywrap` request this wrapper sends for `ec` (Go's bytes; holds secrets).
    ///
    /// # Errors
    /// Never in practice.
    pub fn wrap_request(
        &self,
        ec: &EncryptConfig,
        opts_data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (params, dparams) = if self.options.send_full_config {
            (ec.to_parameters(), ec.decrypt.to_parameters())
        } else {
            (
                own(&self.name, &ec.key_providers),
                own(&self.name, &ec.decrypt.key_providers),
            )
        };
        let ec = GoEncryptConfig {
            parameters: Some(params),
            decrypt_config: GoDecryptConfig {
                parameters: non_empty(dparams),
            },
        };
        ProtocolInput::wrap(ec, opts_data).to_json()
    }

    /// The `keyunwrap` request this wrapper sends for `dc` (Go's bytes; holds secrets).
    ///
    /// # Errors
    /// Never in practice.
    pub fn unwrap_request(
        &self,
        dc: &DecryptConfig,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let params = if self.options.send_full_config {
            dc.to_parameters()
        } else {
            own(&self.name, &dc.key_providers)
        };
        let dc = GoDecryptConfig {
            parameters: non_empty(params),
        };
        ProtocolInput::unwrap(dc, blob).to_json()
    }

    fn call(&self, op: Operation, input: &[u8]) -> Result<ProtocolOutput, Error> {
        let reply = self.transport(op, input)?;
        ProtocolOutput::from_json(&reply)
    }

    fn transport(&self, op: Operation, input: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        match self.config.invocation(&self.name)? {
            #[cfg(feature = "cmd")]
            Invocation::Command(cmd) => crate::cmd::run(cmd, input, &self.options),
            #[cfg(feature = "grpc")]
            Invocation::Grpc { address, tls } => {
                crate::grpc::client::call(address, tls, op, input, &self.options)
            }
            #[allow(
                unreachable_patterns,
                reason = "reachable when a protocol feature is off"
            )]
            _ => {
                let _ = (op, input);
                Err(Error::FeatureDisabled {
                    name: self.name.clone(),
                    feature: if self.config.command.is_some() {
                        "cmd"
                    } else {
                        "grpc"
                    },
                })
            }
        }
    }

    fn context(&self, what: &str) -> String {
        let how = match self.config.invocation(&self.name) {
            Ok(Invocation::Command(c)) => format!("command {}", c.path.display()),
            Ok(Invocation::Grpc { address, .. }) => format!("gRPC {address}"),
            Err(_) => "nothing".to_owned(),
        };
        format!("{what} via key provider {} ({how})", self.name)
    }
}

/// How many wrapped keys of one key provider a layer may carry: each one tried is a call of
/// the provider (a program run or a network request, each with a timeout). Go ocicrypt has
/// no limit; a real layer carries one per provider recipient.
pub const MAX_UNWRAP_CALLS: usize = 16;

impl KeyWrapper for KeyProviderKeyWrapper {
    fn scheme(&self) -> &str {
        &self.scheme
    }

    fn wrap_keys(
        &self,
        ec: &EncryptConfig,
        opts_data: &[u8],
    ) -> Result<Option<Vec<u8>>, ocicrypt_keywrap::Error> {
        if !self.has_recipients(ec) {
            return Ok(None);
        }
        let run = || -> Result<Vec<u8>, Error> {
            let input = self.wrap_request(ec, opts_data)?;
            let out = self.call(Operation::KeyWrap, &input)?;
            match out.keywrapresults.annotation {
                Some(a) if !a.is_empty() => Ok(a),
                _ => Err(Error::BadReply {
                    reason: "no keywrapresults.annotation in the reply".to_owned(),
                    source: None,
                }),
            }
        };
        run()
            .map(Some)
            .map_err(|e| e.into_keywrap(&self.scheme, &self.context("key wrapping")))
    }

    fn unwrap_key(
        &self,
        dc: &DecryptConfig,
        blob: &[u8],
    ) -> Result<SecretBytes, ocicrypt_keywrap::Error> {
        if !self.has_possible_keys(dc) {
            return Err(ocicrypt_keywrap::Error::NoMatchingKey {
                scheme: self.scheme.clone(),
                causes: vec![ocicrypt_keywrap::Cause::new(
                    ocicrypt_keywrap::CauseKind::NoKey(format!(
                        "key provider {} was not selected for decryption (provider:{})",
                        self.name, self.name
                    )),
                )],
            });
        }
        let run = || -> Result<SecretBytes, Error> {
            let input = self.unwrap_request(dc, blob)?;
            let out = self.call(Operation::KeyUnwrap, &input)?;
            match out.keyunwrapresults.optsdata {
                Some(o) if !o.is_empty() => Ok(o),
                _ => Err(Error::BadReply {
                    reason: "no keyunwrapresults.optsdata in the reply".to_owned(),
                    source: None,
                }),
            }
        };
        run().map_err(|e| e.into_keywrap(&self.scheme, &self.context("key unwrapping")))
    }

    /// At most [`MAX_UNWRAP_CALLS`] blobs are sent to the provider per layer: each is a
    /// program run or a network call (with a timeout), and a crafted layer could carry up
    /// to a thousand blobs.
    fn unwrap_first(
        &self,
        dc: &DecryptConfig,
        blobs: &[Vec<u8>],
    ) -> Result<SecretBytes, Vec<ocicrypt_keywrap::Error>> {
        if blobs.len() > MAX_UNWRAP_CALLS {
            return Err(vec![ocicrypt_keywrap::Error::limit_exceeded(
                &self.scheme,
                "wrapped keys for one key provider in a layer",
                MAX_UNWRAP_CALLS,
            )]);
        }
        ocicrypt_keywrap::unwrap_in_turn(blobs, |blob| self.unwrap_key(dc, blob))
    }

    /// Whether `dc` selects this provider (`provider:<name>` as a decryption key). Go
    /// tries every configured provider whenever its annotation is present; here the
    /// caller must opt in, so that no program runs and no server is contacted unasked.
    fn has_possible_keys(&self, dc: &DecryptConfig) -> bool {
        dc.key_providers.contains_key(&self.name)
    }

    fn has_recipients(&self, ec: &EncryptConfig) -> bool {
        ec.key_providers.contains_key(&self.name)
    }
}

fn own(name: &str, providers: &std::collections::BTreeMap<String, Vec<Vec<u8>>>) -> Parameters {
    providers
        .get_key_value(name)
        .map(|(k, v)| (k.clone(), v.clone()))
        .into_iter()
        .collect()
}

fn non_empty(p: Parameters) -> Option<Parameters> {
    (!p.is_empty()).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_not_compiled_in_are_reported() {
        let cmd = KeyProviderKeyWrapper::new(
            "a",
            ProviderConfig::command("/bin/true", vec![]),
            Options::default(),
        );
        match cmd {
            Ok(w) => assert!(cfg!(feature = "cmd") && w.name() == "a"),
            Err(e) => assert!(
                !cfg!(feature = "cmd")
                    && matches!(e, Error::FeatureDisabled { feature: "cmd", .. })
            ),
        }
        let grpc =
            KeyProviderKeyWrapper::new("b", ProviderConfig::grpc("h:1", None), Options::default());
        match grpc {
            Ok(w) => assert!(cfg!(feature = "grpc") && w.scheme() == "provider.b"),
            Err(e) => assert!(
                !cfg!(feature = "grpc")
                    && matches!(
                        e,
                        Error::FeatureDisabled {
                            feature: "grpc",
                            ..
                        }
                    )
            ),
        }
    }
}
