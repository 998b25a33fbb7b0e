//! The PKCS#11 module policy (`ocicrypt.conf`) and module lookup.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::config_error;
use crate::uri::Pkcs11Uri;
use ocicrypt_keywrap::Error;

/// The environment variable naming the config file, or `internal` for the built-in policy.
pub const CONFIG_ENV: &str = "OCICRYPT_CONFIG";
/// The config file's name in `$XDG_CONFIG_HOME` and `$HOME/.config`.
pub const CONFIG_FILE: &str = "ocicrypt.conf";
/// The system-wide config file, tried last.
pub const SYSTEM_CONFIG: &str = "/etc/ocicrypt.conf";

/// Which PKCS#11 modules may be loaded and where they are looked up by name (Go's
/// `Pkcs11Config`, the `pkcs11:` section of `ocicrypt.conf`).
///
/// `allowed_module_paths` entries ending in `/` allow every file directly in that
/// directory; other entries allow exactly that file. **Deviation:** Go allows every
/// module when the list is empty; here an empty list allows none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pkcs11Config {
    /// Directories searched for a URI's `module-name`, in order.
    #[serde(
        rename = "module-directories",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub module_directories: Vec<String>,
    /// The modules that may be loaded: files, or directories ending in `/`.
    #[serde(
        rename = "allowed-module-paths",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub allowed_module_paths: Vec<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl Pkcs11Config {
    /// The built-in policy Go uses for `OCICRYPT_CONFIG=internal`: the usual module
    /// directories of Linux distributions, each both searched and allowed.
    pub fn internal() -> Self {
        let mut dirs: Vec<String> = [
            "/usr/lib64/pkcs11/",
            "/usr/lib/pkcs11/",
            "/usr/local/lib/pkcs11/",
            "/usr/lib/softhsm/",
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(triple) = debian_multiarch() {
            dirs.push(format!("/usr/lib/{triple}/"));
        }
        Self {
            module_directories: dirs.clone(),
            allowed_module_paths: dirs,
        }
    }

    /// Parses the policy from YAML: either the bare form Go passes around in the
    /// `pkcs11-config` parameter (`module-directories: [...]`, `allowed-module-paths:
    /// [...]`) or a whole `ocicrypt.conf` (the same under `pkcs11:`). An empty document is
    /// the empty policy.
    ///
    /// # Errors
    /// [`Error::Config`] if the YAML does not have that shape.
    pub fn from_yaml(yaml: &[u8]) -> Result<Self, Error> {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_slice(yaml)
            .map_err(|e| config_error(format!("could not parse the pkcs11 config: {e}")))?;
        let value = match value {
            serde_yaml_ng::Value::Null => return Ok(Self::default()),
            serde_yaml_ng::Value::Mapping(mut m) => match m.remove("pkcs11") {
                Some(serde_yaml_ng::Value::Null) => return Ok(Self::default()),
                Some(inner) => inner,
                None => serde_yaml_ng::Value::Mapping(m),
            },
            other => other,
        };
        serde_yaml_ng::from_value(value)
            .map_err(|e| config_error(format!("could not parse the pkcs11 config: {e}")))
    }

    /// The policy as Go's `pkcs11-config` parameter YAML (the bare form), for
    /// [`ocicrypt_keywrap::DecryptConfig::pkcs11_config`].
    pub fn to_yaml(&self) -> Vec<u8> {
        // Serializing two lists of strings cannot fail.
        serde_yaml_ng::to_string(self)
            .map(String::into_bytes)
            .unwrap_or_default()
    }

    /// Loads the user's policy the way Go's `GetUserPkcs11Config` does, from the process
    /// environment: see [`ConfigLookup`].
    ///
    /// # Errors
    /// [`Error::Config`] if no config file is found or one cannot be read or parsed.
    pub fn from_user_config() -> Result<Self, Error> {
        ConfigLookup::from_env().load()
    }

    /// Whether `module` may be loaded.
    pub fn is_allowed(&self, module: &Path) -> bool {
        let Some(module) = module.to_str() else {
            return false;
        };
        self.allowed_module_paths.iter().any(|allowed| {
            (!allowed.ends_with('/') && allowed == module)
                || (allowed.ends_with('/')
                    && module
                        .strip_prefix(allowed.as_str())
                        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/')))
        })
    }

    /// Finds the module a URI names, as go-pkcs11uri's `GetModule` does: `module-path`
    /// if it is an allowed file; otherwise `module-name` (case-insensitive) in the
    /// `module-path` directory or else in [`Pkcs11Config::module_directories`], matching
    /// file names that contain the name followed by `.` or the end (`softhsm2` finds
    /// `libsofthsm2.so`; `lib<name>.so` and `<name>.so` are preferred within a directory).
    ///
    /// # Errors
    /// A message naming the module and the allowed paths if the module is not allowed,
    /// or saying what was searched if none was found.
    pub fn find_module(&self, uri: &Pkcs11Uri) -> Result<PathBuf, String> {
        let search_dirs: Vec<PathBuf> = match uri.module_path() {
            Some(path) => {
                let meta = fs::metadata(path).map_err(|e| {
                    format!("module-path '{}' is not accessible: {e}", path.display())
                })?;
                if meta.is_file() {
                    return if self.is_allowed(path) {
                        Ok(path.to_path_buf())
                    } else {
                        Err(self.not_allowed(path))
                    };
                }
                if !meta.is_dir() {
                    return Err(format!(
                        "module-path '{}' is neither a file nor a directory",
                        path.display()
                    ));
                }
                vec![path.to_path_buf()]
            }
            None => self.module_directories.iter().map(PathBuf::from).collect(),
        };
        let name = uri
            .module_name()
            .ok_or("the pkcs11 URI has neither module-name nor a module-path file")?
            .to_lowercase();
        if name.is_empty() {
            return Err("the pkcs11 URI's module-name is empty".to_owned());
        }
        let mut disallowed = None;
        for dir in &search_dirs {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            let mut candidates: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|f| matches_module_name(&f.to_lowercase(), &name))
                .collect();
            candidates.sort();
            let preferred = [format!("lib{name}.so"), format!("{name}.so")];
            candidates.sort_by_key(|f| {
                preferred
                    .iter()
                    .position(|p| *p == f.to_lowercase())
                    .unwrap_or(preferred.len())
            });
            for file in candidates {
                let path = dir.join(file);
                if self.is_allowed(&path) {
                    return Ok(path);
                }
                disallowed.get_or_insert(path);
            }
        }
        match disallowed {
            Some(path) => Err(self.not_allowed(&path)),
            None => Err(format!(
                "no module named '{name}' found in {:?}",
                search_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
            )),
        }
    }

    fn not_allowed(&self, module: &Path) -> String {
        format!(
            "module '{}' is not allowed: allowed-module-paths is {:?}",
            module.display(),
            self.allowed_module_paths
        )
    }
}

/// go-pkcs11uri's rule: `name` occurs in `file` and is followed by `.` or the end.
fn matches_module_name(file: &str, name: &str) -> bool {
    file.match_indices(name).any(|(i, _)| {
        file.get(i + name.len()..)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

/// `x86_64-linux-gnu` and the like on Linux (Go adds `/usr/lib/<this>/` to the defaults).
fn debian_multiarch() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        "arm" => "arm",
        "powerpc64" if cfg!(target_endian = "little") => "powerpc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        _ => return None,
    };
    Some(format!("{arch}-linux-gnu"))
}

/// Where Go's `GetUserPkcs11Config` looks for the policy, as explicit values (so it can be
/// tested without touching the process environment):
///
/// 1. [`CONFIG_ENV`] = `internal`: [`Pkcs11Config::internal`];
/// 2. [`CONFIG_ENV`] = a path: that file, if it exists;
/// 3. `$XDG_CONFIG_HOME/ocicrypt.conf`, if it exists;
/// 4. `$HOME/.config/ocicrypt.conf`, if it exists;
/// 5. [`SYSTEM_CONFIG`] (`/etc/ocicrypt.conf`; Go reads the relative path
///    `etc/ocicrypt.conf` there, a bug we do not copy).
///
/// Empty variables count as unset. No file at all is an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigLookup {
    /// The value of `OCICRYPT_CONFIG`.
    pub ocicrypt_config: Option<OsString>,
    /// The value of `XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// The value of `HOME`.
    pub home: Option<PathBuf>,
    /// The system-wide file, normally [`SYSTEM_CONFIG`].
    pub system_config: PathBuf,
}

impl ConfigLookup {
    /// The lookup with the values of the process environment.
    pub fn from_env() -> Self {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        Self {
            ocicrypt_config: var(CONFIG_ENV),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            system_config: PathBuf::from(SYSTEM_CONFIG),
        }
    }

    /// Loads the policy.
    ///
    /// # Errors
    /// [`Error::Config`] if no file is found, or the first one found cannot be read or
    /// parsed.
    pub fn load(&self) -> Result<Pkcs11Config, Error> {
        let mut tried = Vec::new();
        if let Some(v) = self.ocicrypt_config.as_ref().filter(|v| !v.is_empty()) {
            if v == "internal" {
                return Ok(Pkcs11Config::internal());
            }
            tried.push(PathBuf::from(v));
        }
        if let Some(dir) = self
            .xdg_config_home
            .as_ref()
            .filter(|d| !d.as_os_str().is_empty())
        {
            tried.push(dir.join(CONFIG_FILE));
        }
        if let Some(home) = self.home.as_ref().filter(|d| !d.as_os_str().is_empty()) {
            tried.push(home.join(".config").join(CONFIG_FILE));
        }
        tried.push(self.system_config.clone());
        for path in &tried {
            match fs::read(path) {
                Ok(data) => {
                    return Pkcs11Config::from_yaml(&data).map_err(|e| {
                        config_error(format!("{}: {}", path.display(), strip_scheme(&e)))
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(config_error(format!(
                        "could not read {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        Err(config_error(format!(
            "no ocicrypt config file was found (set {CONFIG_ENV} to a file or to 'internal'); \
             tried {:?}",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        )))
    }
}

fn strip_scheme(e: &Error) -> String {
    match e {
        Error::Config { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }

    const CONF: &str =
        "pkcs11:\n  module-directories:\n    - /a/\n  allowed-module-paths:\n    - /a/\n";

    #[test]
    fn internal_defaults() {
        let c = Pkcs11Config::internal();
        assert_eq!(c.module_directories, c.allowed_module_paths);
        assert!(
            c.module_directories
                .contains(&"/usr/lib/softhsm/".to_owned())
        );
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(c.module_directories.len(), 5);
            assert_eq!(c.module_directories[4], "/usr/lib/x86_64-linux-gnu/");
        }
        let lookup = ConfigLookup {
            ocicrypt_config: Some("internal".into()),
            system_config: "/nonexistent".into(),
            ..Default::default()
        };
        assert_eq!(lookup.load().unwrap(), c);
    }

    #[test]
    fn yaml_forms() {
        let bare =
            Pkcs11Config::from_yaml(b"module-directories: [/a/]\nallowed-module-paths: [/a/x.so]")
                .unwrap();
        assert_eq!(bare.module_directories, ["/a/"]);
        assert_eq!(bare.allowed_module_paths, ["/a/x.so"]);
        let wrapped = Pkcs11Config::from_yaml(CONF.as_bytes()).unwrap();
        assert_eq!(wrapped.allowed_module_paths, ["/a/"]);
        assert_eq!(
            Pkcs11Config::from_yaml(b"").unwrap(),
            Pkcs11Config::default()
        );
        assert_eq!(
            Pkcs11Config::from_yaml(b"pkcs11:\n").unwrap(),
            Pkcs11Config::default()
        );
        assert_eq!(
            Pkcs11Config::from_yaml(b"module-directories: null").unwrap(),
            Pkcs11Config::default()
        );
        assert_eq!(
            Pkcs11Config::from_yaml(&wrapped.to_yaml()).unwrap(),
            wrapped
        );
        for bad in [
            &b"[1, 2]"[..],
            b"module-directories: 3",
            b"pkcs11: [x]",
            b"{",
        ] {
            let err = Pkcs11Config::from_yaml(bad).unwrap_err().to_string();
            assert!(err.contains("could not parse the pkcs11 config"), "{err}");
        }
    }

    #[test]
    fn lookup_order() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let env_file = write(t, "env.conf", "pkcs11: {module-directories: [/env/]}");
        let xdg = t.join("xdg");
        write(&xdg, CONFIG_FILE, "pkcs11: {module-directories: [/xdg/]}");
        let home = t.join("home");
        write(
            &home,
            ".config/ocicrypt.conf",
            "pkcs11: {module-directories: [/home/]}",
        );
        let system = write(t, "etc.conf", "pkcs11: {module-directories: [/etc/]}");
        let mut lookup = ConfigLookup {
            ocicrypt_config: Some(env_file.into()),
            xdg_config_home: Some(xdg.clone()),
            home: Some(home.clone()),
            system_config: system,
        };
        let first = |l: &ConfigLookup| l.load().unwrap().module_directories[0].clone();
        assert_eq!(first(&lookup), "/env/");
        // A missing OCICRYPT_CONFIG file falls through, as in Go.
        lookup.ocicrypt_config = Some(t.join("missing.conf").into());
        assert_eq!(first(&lookup), "/xdg/");
        lookup.xdg_config_home = Some(t.join("nowhere"));
        assert_eq!(first(&lookup), "/home/");
        lookup.home = Some(PathBuf::new());
        assert_eq!(first(&lookup), "/etc/");
        lookup.system_config = t.join("no-etc.conf");
        let err = lookup.load().unwrap_err().to_string();
        assert!(err.contains("no ocicrypt config file was found"), "{err}");
        assert!(
            err.contains("missing.conf") && err.contains("no-etc.conf"),
            "{err}"
        );
    }

    #[test]
    fn lookup_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = write(tmp.path(), "bad.conf", "pkcs11: [");
        let lookup = ConfigLookup {
            ocicrypt_config: Some(bad.into()),
            system_config: "/nonexistent".into(),
            ..Default::default()
        };
        let err = lookup.load().unwrap_err().to_string();
        assert!(
            err.contains("bad.conf") && err.contains("could not parse"),
            "{err}"
        );
        // A directory cannot be read as a file.
        let lookup = ConfigLookup {
            ocicrypt_config: Some(tmp.path().as_os_str().to_owned()),
            system_config: "/nonexistent".into(),
            ..Default::default()
        };
        let err = lookup.load().unwrap_err().to_string();
        assert!(err.contains("could not read"), "{err}");
    }

    #[test]
    fn allowed_paths() {
        let c = Pkcs11Config {
            module_directories: vec![],
            allowed_module_paths: vec!["/lib/p11/".into(), "/opt/x.so".into()],
        };
        assert!(c.is_allowed(Path::new("/lib/p11/a.so")));
        assert!(!c.is_allowed(Path::new("/lib/p11/sub/a.so")));
        assert!(!c.is_allowed(Path::new("/lib/p11/")));
        assert!(!c.is_allowed(Path::new("/lib/p11")));
        assert!(c.is_allowed(Path::new("/opt/x.so")));
        assert!(!c.is_allowed(Path::new("/opt/x.so.1")));
        assert!(!Pkcs11Config::default().is_allowed(Path::new("/opt/x.so")));
    }

    #[test]
    fn module_lookup() {
        let tmp = tempfile::tempdir().unwrap();
        let d1 = tmp.path().join("d1");
        let d2 = tmp.path().join("d2");
        for f in [
            "libsofthsm2.so",
            "libsofthsm2.so.1",
            "notsofthsm2x.so",
            "softhsm2.so",
        ] {
            write(&d1, f, "");
        }
        write(&d2, "libOther.so", "");
        let d1s = format!("{}/", d1.display());
        let d2s = format!("{}/", d2.display());
        let c = Pkcs11Config {
            module_directories: vec!["/nonexistent/".into(), d1s.clone(), d2s.clone()],
            allowed_module_paths: vec![d1s.clone(), d2s.clone()],
        };
        let uri = |s: &str| Pkcs11Uri::parse(s).unwrap();
        assert_eq!(
            c.find_module(&uri("pkcs11:?module-name=SoftHSM2")).unwrap(),
            d1.join("libsofthsm2.so")
        );
        assert_eq!(
            c.find_module(&uri("pkcs11:?module-name=other")).unwrap(),
            d2.join("libOther.so")
        );
        // `softhsm` does not match `libsofthsm2.so`.
        let err = c
            .find_module(&uri("pkcs11:?module-name=softhsm"))
            .unwrap_err();
        assert!(err.contains("no module named 'softhsm'"), "{err}");
        let err = c.find_module(&uri("pkcs11:object=x")).unwrap_err();
        assert!(err.contains("neither module-name"), "{err}");
        // module-path: a file, a directory, missing.
        let file = d1.join("softhsm2.so");
        let q = format!("pkcs11:?module-path={}", file.display());
        assert_eq!(c.find_module(&uri(&q)).unwrap(), file);
        let q = format!("pkcs11:?module-path={}&module-name=other", d2.display());
        assert_eq!(c.find_module(&uri(&q)).unwrap(), d2.join("libOther.so"));
        let err = c
            .find_module(&uri("pkcs11:?module-path=/nonexistent/x.so"))
            .unwrap_err();
        assert!(err.contains("not accessible"), "{err}");
        // Not allowed: the module and the allowed paths are named.
        let strict = Pkcs11Config {
            allowed_module_paths: vec!["/elsewhere/".into()],
            ..c.clone()
        };
        let err = strict
            .find_module(&uri("pkcs11:?module-name=softhsm2"))
            .unwrap_err();
        assert!(
            err.contains("libsofthsm2.so") && err.contains("/elsewhere/"),
            "{err}"
        );
        let q = format!("pkcs11:?module-path={}", file.display());
        let err = strict.find_module(&uri(&q)).unwrap_err();
        assert!(
            err.contains("not allowed") && err.contains("/elsewhere/"),
            "{err}"
        );
    }
}
