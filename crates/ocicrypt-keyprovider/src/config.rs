//! The key provider configuration (`OCICRYPT_KEYPROVIDER_CONFIG`), Go's
//! `config/keyprovider-config` with the same JSON field names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::Error;

/// The environment variable naming the JSON configuration file.
pub const CONFIG_ENV: &str = "OCICRYPT_KEYPROVIDER_CONFIG";

/// All configured key providers (`{"key-providers": {"<name>": {...}}}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Providers by name; the name is what `provider:<name>` selects and what the
    /// annotation `org.opencontainers.image.enc.keys.provider.<name>` carries.
    #[serde(rename = "key-providers", default, deserialize_with = "nullable")]
    pub key_providers: BTreeMap<String, ProviderConfig>,
}

/// How one provider is invoked (Go's `KeyProviderAttrs`). `cmd` wins over `grpc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderConfig {
    /// Run a program.
    #[serde(rename = "cmd", default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// Call a gRPC server at `host:port`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "non_empty"
    )]
    pub grpc: Option<String>,
    /// Use TLS for `grpc` (plaintext when absent).
    #[serde(rename = "grpc-tls", default, skip_serializing_if = "Option::is_none")]
    pub grpc_tls: Option<GrpcTls>,
}

/// A provider program and its arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The program.
    #[serde(default)]
    pub path: PathBuf,
    /// Its arguments.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<String>,
}

/// TLS settings of a gRPC provider (Go's `GrpcTLS`, ocicrypt ≥ 1.3.0). Empty strings mean
/// "not set", as in Go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcTls {
    /// PEM file of the CA certificates that may sign the server's certificate; the
    /// system's trust store when not set.
    #[serde(
        rename = "root-ca-file",
        default,
        deserialize_with = "non_empty_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub root_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate chain (needs `key-file`).
    #[serde(
        rename = "cert-file",
        default,
        deserialize_with = "non_empty_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client private key (needs `cert-file`).
    #[serde(
        rename = "key-file",
        default,
        deserialize_with = "non_empty_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_file: Option<PathBuf>,
    /// The name the server certificate must carry; the host part of `grpc` when not set.
    #[serde(
        rename = "server-name",
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub server_name: Option<String>,
    /// Accept any server certificate. **Dangerous**: anyone on the network path can then
    /// impersonate the provider and learn every layer key. For tests only.
    #[serde(
        rename = "insecure-skip-verify",
        default,
        deserialize_with = "nullable"
    )]
    pub insecure_skip_verify: bool,
}

/// How a provider is reached, as chosen from a [`ProviderConfig`].
#[derive(Clone, Copy, Debug)]
pub enum Invocation<'a> {
    /// Run this program.
    Command(&'a Command),
    /// Call this gRPC address, with TLS if given.
    Grpc {
        /// `host:port`.
        address: &'a str,
        /// TLS settings.
        tls: Option<&'a GrpcTls>,
    },
}

impl ProviderConfig {
    /// A provider that runs `path` with `args`.
    pub fn command(path: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            command: Some(Command {
                path: path.into(),
                args,
            }),
            ..Self::default()
        }
    }

    /// A provider that is a gRPC server at `address` (`host:port`), TLS if `tls` is given.
    pub fn grpc(address: impl Into<String>, tls: Option<GrpcTls>) -> Self {
        Self {
            grpc: Some(address.into()),
            grpc_tls: tls,
            ..Self::default()
        }
    }

    /// How the provider `name` is invoked: `cmd` if present, else `grpc`.
    ///
    /// # Errors
    /// [`Error::UnsupportedInvocation`] when neither is given.
    pub fn invocation(&self, name: &str) -> Result<Invocation<'_>, Error> {
        if let Some(cmd) = &self.command {
            return Ok(Invocation::Command(cmd));
        }
        match self.grpc.as_deref() {
            Some(address) if !address.is_empty() => Ok(Invocation::Grpc {
                address,
                tls: self.grpc_tls.as_ref(),
            }),
            _ => Err(Error::UnsupportedInvocation {
                name: name.to_owned(),
            }),
        }
    }
}

impl Config {
    /// Parses the JSON configuration.
    ///
    /// # Errors
    /// [`Error::ConfigParse`] naming the offending field.
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        parse(json, None)
    }

    /// Reads and parses a JSON configuration file.
    ///
    /// # Errors
    /// [`Error::ConfigRead`] if the file cannot be read, [`Error::ConfigParse`] naming the
    /// file and the offending field.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| Error::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        parse(&data, Some(path))
    }

    /// The configuration named by `OCICRYPT_KEYPROVIDER_CONFIG`; empty (no providers) if
    /// the variable is unset or empty.
    ///
    /// # Errors
    /// As [`Config::from_file`]. Unlike Go, a variable naming a missing file is an
    /// error (Go silently configures no providers).
    pub fn from_env() -> Result<Self, Error> {
        match std::env::var_os(CONFIG_ENV) {
            Some(path) if !path.is_empty() => Self::from_file(PathBuf::from(path)),
            _ => Ok(Self::default()),
        }
    }
}

fn parse(json: &[u8], path: Option<&Path>) -> Result<Config, Error> {
    let err = |field: String, source| Error::ConfigParse {
        path: path.map(Path::to_owned),
        field,
        source,
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let config: Config = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| err(e.path().to_string(), e.into_inner()))?;
    de.end().map_err(|e| err(".".to_owned(), e))?;
    Ok(config)
}

/// `null` as the default value, as Go's `encoding/json` leaves a field untouched.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `null` and `""` as "not set".
fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

fn non_empty_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(non_empty(d)?.map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_config() {
        let json = br#"{"key-providers":{
            "isecl":{"cmd":{"path":"/usr/lib/ocicrypt-isecl","args":["-v"]}},
            "both":{"cmd":{"path":"/bin/x","args":null},"grpc":"localhost:1"},
            "vault":{"grpc":"localhost:50051","grpc-tls":{"root-ca-file":"/ca.pem",
              "cert-file":"","key-file":"","server-name":"kp.example","insecure-skip-verify":false,
              "unknown":1}}}}"#;
        let c = Config::from_json(json).unwrap();
        let isecl = &c.key_providers["isecl"];
        assert_eq!(
            isecl.command.as_ref().unwrap().path,
            PathBuf::from("/usr/lib/ocicrypt-isecl")
        );
        assert!(matches!(
            c.key_providers["both"].invocation("both").unwrap(),
            Invocation::Command(cmd) if cmd.args.is_empty()
        ));
        match c.key_providers["vault"].invocation("vault").unwrap() {
            Invocation::Grpc { address, tls } => {
                assert_eq!(address, "localhost:50051");
                let tls = tls.unwrap();
                assert_eq!(tls.root_ca_file.as_deref(), Some(Path::new("/ca.pem")));
                assert_eq!(tls.cert_file, None);
                assert_eq!(tls.server_name.as_deref(), Some("kp.example"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Config::from_json(b"{}").unwrap(), Config::default());
        assert_eq!(
            Config::from_json(br#"{"key-providers":null}"#).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn neither_cmd_nor_grpc_is_gos_error() {
        // docs/keyprovider.md's first example puts `path` directly under the name.
        let c =
            Config::from_json(br#"{"key-providers":{"isecl":{"path":"/x","grpc":""}}}"#).unwrap();
        let err = c.key_providers["isecl"].invocation("isecl").unwrap_err();
        assert!(matches!(err, Error::UnsupportedInvocation { ref name } if name == "isecl"));
        assert!(
            err.to_string()
                .contains("Supported invocation methods are grpc and cmd")
        );
    }

    #[test]
    fn bad_field_is_named() {
        let err =
            Config::from_json(br#"{"key-providers":{"kms":{"cmd":{"path":"/x","args":[1]}}}}"#)
                .unwrap_err();
        match &err {
            Error::ConfigParse { field, path, .. } => {
                assert_eq!(field, "key-providers.kms.cmd.args[0]");
                assert!(path.is_none());
            }
            other => panic!("{other:?}"),
        }
        let err = Config::from_json(
            br#"{"key-providers":{"kms":{"grpc-tls":{"insecure-skip-verify":"yes"}}}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("key-providers.kms.grpc-tls.insecure-skip-verify"),
            "{err}"
        );
        let err = Config::from_json(b"{} trailing").unwrap_err();
        assert!(
            matches!(err, Error::ConfigParse { ref field, .. } if field == "."),
            "{err}"
        );
        let err = Config::from_json(b"[").unwrap_err();
        assert!(matches!(err, Error::ConfigParse { .. }), "{err}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kp.json");
        std::fs::write(&path, br#"{"key-providers":{"a":{"grpc":5}}}"#).unwrap();
        let err = Config::from_file(&path).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("kp.json") && msg.contains("key-providers.a.grpc"),
            "{msg}"
        );
        let missing = dir.path().join("missing.json");
        let err = Config::from_file(&missing).unwrap_err();
        assert!(matches!(err, Error::ConfigRead { .. }));
        assert!(err.to_string().contains("missing.json"), "{err}");
    }

    #[test]
    fn serializes_with_go_names() {
        let mut c = Config::default();
        c.key_providers.insert(
            "a".into(),
            ProviderConfig::grpc(
                "h:1",
                Some(GrpcTls {
                    server_name: Some("s".into()),
                    ..GrpcTls::default()
                }),
            ),
        );
        c.key_providers
            .insert("b".into(), ProviderConfig::command("/p", vec!["x".into()]));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"key-providers":{"a":{"grpc":"h:1","grpc-tls":{"server-name":"s","insecure-skip-verify":false}},"b":{"cmd":{"path":"/p","args":["x"]}}}}"#
        );
        assert_eq!(Config::from_json(json.as_bytes()).unwrap(), c);
    }
}
