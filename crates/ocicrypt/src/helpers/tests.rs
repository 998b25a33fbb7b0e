use std::error::Error as _;

use ocicrypt_keywrap::secrecy::ExposeSecret;
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};

use super::*;

const NO_KEYS: [&str; 0] = [];

/// A temporary directory with an RSA key pair and a self-signed certificate for it.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rsa = Rsa::generate(2048).unwrap();
        let pkey = PKey::from_rsa(rsa.clone()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "helpers test").unwrap();
        let name = name.build();
        let mut cert = X509::builder().unwrap();
        cert.set_version(2).unwrap();
        cert.set_subject_name(&name).unwrap();
        cert.set_issuer_name(&name).unwrap();
        cert.set_pubkey(&pkey).unwrap();
        cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        cert.sign(&pkey, MessageDigest::sha256()).unwrap();
        let cert = cert.build();
        let cipher = openssl::symm::Cipher::aes_256_cbc();
        let files: [(&str, Vec<u8>); 6] = [
            ("private.pem", rsa.private_key_to_pem().unwrap()),
            (
                "encrypted.pem",
                rsa.private_key_to_pem_passphrase(cipher, b"secret")
                    .unwrap(),
            ),
            ("public.pem", rsa.public_key_to_pem().unwrap()),
            ("cert.pem", cert.to_pem().unwrap()),
            ("cert.der", cert.to_der().unwrap()),
            ("garbage", b"not a key at all".to_vec()),
        ];
        for (name, data) in files {
            fs::write(dir.path().join(name), data).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn data(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(name)).unwrap()
    }
}

/// A file of the pgp crate's test data.
#[cfg(feature = "pgp")]
fn pgp_data(name: &str) -> String {
    format!(
        "{}/../ocicrypt-keywrap-pgp/tests/data/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn recipient_err(spec: &str) -> HelperError {
    add_recipient(&mut EncryptConfig::default(), spec).unwrap_err()
}

fn key_err(spec: &str) -> HelperError {
    add_key(&mut DecryptConfig::default(), spec).unwrap_err()
}

/// The error and its causes on one line, as the CLI prints them.
fn chain(e: &HelperError) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

#[test]
fn password_specs() {
    assert_eq!(password("pass=a:b").unwrap().expose_secret(), "a:b");
    assert_eq!(password("literal").unwrap().expose_secret(), "literal");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pw");
    fs::write(&f, "from-file\r\n").unwrap();
    let spec = format!("file={}", f.display());
    assert_eq!(password(&spec).unwrap().expose_secret(), "from-file");
    fs::write(&f, "two\nlines\n").unwrap();
    assert_eq!(password(&spec).unwrap().expose_secret(), "two\nlines");

    // env=: any variable of the environment (tests cannot set one without `unsafe`).
    let (var, value) = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .find(|(_, v)| !v.ends_with(['\n', '\r']))
        .unwrap();
    assert_eq!(
        password(&format!("env={var}")).unwrap().expose_secret(),
        value
    );
}

#[cfg(target_os = "linux")]
#[test]
fn password_from_a_file_descriptor() {
    use std::os::fd::AsRawFd as _;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pw");
    fs::write(&f, "from-fd\n").unwrap();
    let file = fs::File::open(&f).unwrap();
    let spec = format!("fd={}", file.as_raw_fd());
    assert_eq!(password(&spec).unwrap().expose_secret(), "from-fd");
}

#[test]
fn password_errors_name_the_source() {
    let e = password("env=OCICRYPT_TEST_SURELY_UNSET_VAR").unwrap_err();
    assert!(
        matches!(&e, HelperError::Password { origin: PasswordSource::Env(v), .. } if v == "OCICRYPT_TEST_SURELY_UNSET_VAR"),
        "{e:?}"
    );
    assert_eq!(
        chain(&e),
        "cannot read environment variable OCICRYPT_TEST_SURELY_UNSET_VAR: not set"
    );

    let e = password("file=/nonexistent/pw").unwrap_err();
    assert!(
        matches!(&e, HelperError::Password { origin: PasswordSource::File(p), .. } if p == Path::new("/nonexistent/pw")),
        "{e:?}"
    );
    assert!(
        chain(&e).starts_with("cannot read password file /nonexistent/pw: "),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pw");
    fs::write(&f, b"\xff\xfe\n").unwrap();
    let e = password(&format!("file={}", f.display())).unwrap_err();
    assert!(chain(&e).ends_with(": not UTF-8"), "{e}");

    let e = password("fd=notanumber").unwrap_err();
    assert!(
        matches!(&e, HelperError::InvalidPasswordFd { value, .. } if value == "notanumber"),
        "{e:?}"
    );
    let e = password("fd=999999").unwrap_err();
    assert!(
        matches!(
            e,
            HelperError::Password {
                origin: PasswordSource::Fd(999_999),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("file descriptor 999999"), "{e}");
}

#[test]
fn key_spec_prefers_existing_paths() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("odd:name.pem");
    fs::write(&f, "x").unwrap();
    let (p, pw) = split_key_spec(&f.to_string_lossy()).unwrap();
    assert_eq!(p, f);
    assert!(pw.is_none());
    let (p, pw) = split_key_spec("/nonexistent/key.pem:pass=x").unwrap();
    assert_eq!(p, PathBuf::from("/nonexistent/key.pem"));
    assert_eq!(pw.unwrap().expose_secret(), "x");
    let (p, pw) = split_key_spec("/nonexistent/key.pem").unwrap();
    assert_eq!(p, PathBuf::from("/nonexistent/key.pem"));
    assert!(pw.is_none());
}

#[test]
fn key_kinds() {
    let f = Files::new();
    assert_eq!(key_kind(&f.data("cert.pem")), KeyKind::Certificate);
    assert_eq!(key_kind(&f.data("cert.der")), KeyKind::Certificate);
    assert_eq!(key_kind(&f.data("garbage")), KeyKind::Unknown);
    assert_eq!(key_kind(b""), KeyKind::Unknown);
    if cfg!(any(feature = "jwe", feature = "pkcs7")) {
        assert_eq!(key_kind(&f.data("private.pem")), KeyKind::PrivateKey);
        assert_eq!(key_kind(&f.data("encrypted.pem")), KeyKind::PrivateKey);
    }
    if cfg!(feature = "jwe") {
        assert_eq!(key_kind(&f.data("public.pem")), KeyKind::PublicKey);
    }
}

/// Keys are classified by the loader all schemes share, whatever scheme features are on
/// (before, without `jwe` public keys were unknown and private keys were recognised by a
/// few PEM labels and DER forms only).
#[test]
fn key_kinds_need_no_scheme_feature() {
    let f = Files::new();
    let rsa = Rsa::private_key_from_pem(&f.data("private.pem")).unwrap();
    let pkey = PKey::from_rsa(rsa.clone()).unwrap();
    let ec = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
    )
    .unwrap();
    let cipher = openssl::symm::Cipher::aes_256_cbc();
    let private = [
        f.data("private.pem"),
        f.data("encrypted.pem"),
        pkey.private_key_to_pem_pkcs8().unwrap(),
        pkey.private_key_to_pem_pkcs8_passphrase(cipher, b"pw")
            .unwrap(),
        pkey.private_key_to_pkcs8_passphrase(cipher, b"pw").unwrap(),
        rsa.private_key_to_der().unwrap(),
        ec.private_key_to_pem().unwrap(),
        ec.private_key_to_der().unwrap(),
        [&f.data("private.pem")[..], &f.data("cert.pem")].concat(),
    ];
    for (i, data) in private.iter().enumerate() {
        assert_eq!(key_kind(data), KeyKind::PrivateKey, "private key {i}");
    }
    let public = [
        f.data("public.pem"),
        rsa.public_key_to_der().unwrap(),
        rsa.public_key_to_pem_pkcs1().unwrap(),
    ];
    for (i, data) in public.iter().enumerate() {
        assert_eq!(key_kind(data), KeyKind::PublicKey, "public key {i}");
    }
    // As in Go, a PEM file is what its first block is.
    let cert_then_key = [&f.data("cert.pem")[..], &f.data("private.pem")].concat();
    assert_eq!(key_kind(&cert_then_key), KeyKind::Certificate);

    let e = key_err(&f.path("public.pem"));
    assert!(matches!(e, HelperError::IsPublicKey { .. }), "{e:?}");
}

#[cfg(feature = "pgp")]
#[test]
fn pgp_key_kinds() {
    for (name, kind) in [
        ("alice.sec.gpg", KeyKind::PgpSecretKey),
        ("alice.sec.asc", KeyKind::PgpSecretKey),
        ("alice.pub.gpg", KeyKind::PgpPublicKey),
        ("alice.pub.asc", KeyKind::PgpPublicKey),
    ] {
        assert_eq!(key_kind(&fs::read(pgp_data(name)).unwrap()), kind, "{name}");
    }
}

#[test]
fn bad_recipients_are_clear_errors() {
    let e = recipient_err("nocolon");
    assert!(
        matches!(&e, HelperError::InvalidRecipient { spec } if spec == "nocolon"),
        "{e:?}"
    );
    assert!(e.to_string().contains("SCHEME:VALUE"), "{e}");

    let e = recipient_err("foo:bar");
    assert!(
        matches!(&e, HelperError::UnknownScheme { scheme, spec } if scheme == "foo" && spec == "foo:bar"),
        "{e:?}"
    );
    assert!(e.to_string().contains("unknown recipient scheme"), "{e}");

    if cfg!(any(
        feature = "keyprovider-cmd",
        feature = "keyprovider-grpc"
    )) {
        for spec in ["provider:", "provider::args"] {
            let e = recipient_err(spec);
            assert!(
                matches!(&e, HelperError::InvalidProvider { spec: s } if s == spec),
                "{e:?}"
            );
        }
    } else {
        let e = recipient_err("provider:x");
        assert!(
            matches!(&e, HelperError::KeyProvidersNotCompiled { spec } if spec == "provider:x"),
            "{e:?}"
        );
        assert!(e.to_string().contains("not supported by this build"), "{e}");
    }
}

#[cfg(feature = "jwe")]
#[test]
fn bad_jwe_recipients() {
    let f = Files::new();
    let e = recipient_err("jwe:/nonexistent.pem");
    assert!(
        matches!(&e, HelperError::ReadFile { path, what: "recipient key", .. } if path == Path::new("/nonexistent.pem")),
        "{e:?}"
    );
    assert!(
        chain(&e).starts_with("cannot read recipient key file /nonexistent.pem: "),
        "{e}"
    );
    let e = recipient_err(&format!("jwe:{}", f.path("private.pem")));
    assert!(matches!(e, HelperError::IsPrivateKey { .. }), "{e:?}");
    assert!(e.to_string().contains("is a private key"), "{e}");
    assert!(e.to_string().contains(&f.path("private.pem")), "{e}");
    let e = recipient_err(&format!("jwe:{}", f.path("garbage")));
    assert!(
        matches!(&e, HelperError::NotAPublicKey { path } if path == Path::new(&f.path("garbage"))),
        "{e:?}"
    );
}

#[cfg(feature = "pkcs7")]
#[test]
fn bad_pkcs7_recipients() {
    let f = Files::new();
    let e = recipient_err(&format!("pkcs7:{}", f.path("public.pem")));
    assert!(
        matches!(&e, HelperError::NotACertificate { path } if path == Path::new(&f.path("public.pem"))),
        "{e:?}"
    );
    let e = recipient_err("pkcs7:/nonexistent.crt");
    assert!(
        matches!(
            e,
            HelperError::ReadFile {
                what: "recipient certificate",
                ..
            }
        ),
        "{e:?}"
    );
}

#[cfg(feature = "pkcs11")]
#[test]
fn bad_pkcs11_recipients() {
    let f = Files::new();
    let e = recipient_err(&format!("pkcs11:{}", f.path("cert.pem")));
    assert!(
        matches!(&e, HelperError::NotPkcs11Recipient { path } if path == Path::new(&f.path("cert.pem"))),
        "{e:?}"
    );
    assert!(e.to_string().contains("neither a PKCS#11 key file"), "{e}");
}

#[cfg(feature = "pgp")]
#[test]
fn bad_pgp_recipients() {
    let f = Files::new();
    let e = recipient_err("pgp:");
    assert!(matches!(e, HelperError::EmptyPgpRecipient), "{e:?}");
    let e = recipient_err(&format!("pgp:{}", f.path("garbage")));
    assert!(
        matches!(&e, HelperError::NotPgpPublicKey { path, .. } if path == Path::new(&f.path("garbage"))),
        "{e:?}"
    );
    assert!(e.source().is_some());
}

#[test]
fn schemes_that_are_not_compiled_in() {
    for (scheme, on) in [
        ("jwe", cfg!(feature = "jwe")),
        ("pkcs7", cfg!(feature = "pkcs7")),
        ("pkcs11", cfg!(feature = "pkcs11")),
        ("pgp", cfg!(feature = "pgp")),
    ] {
        if on {
            continue;
        }
        let e = recipient_err(&format!("{scheme}:/nonexistent"));
        assert!(
            matches!(e, HelperError::SchemeNotCompiled { scheme: s, feature } if s == scheme && feature == scheme),
            "{e:?}"
        );
        assert!(e.to_string().contains("not supported by this build"), "{e}");
    }
}

#[test]
fn good_recipients() {
    let f = Files::new();
    let mut recipients = vec!["provider:kms:arg:with:colons".to_owned()];
    if cfg!(feature = "jwe") {
        recipients.push(format!("jwe:{}", f.path("public.pem")));
    }
    if cfg!(feature = "pkcs7") {
        recipients.push(format!("pkcs7:{}", f.path("cert.der")));
    }
    if cfg!(feature = "pkcs11") {
        recipients.push(format!("pkcs11:{}", f.path("public.pem")));
    }
    if !cfg!(any(
        feature = "keyprovider-cmd",
        feature = "keyprovider-grpc"
    )) {
        recipients.remove(0);
    }
    let ec = encrypt_config(&recipients, NO_KEYS).unwrap();
    assert_eq!(ec.jwe_public_keys.len(), usize::from(cfg!(feature = "jwe")));
    assert_eq!(
        ec.pkcs7_certificates.len(),
        usize::from(cfg!(feature = "pkcs7"))
    );
    assert_eq!(
        ec.pkcs11_public_keys.len(),
        usize::from(cfg!(feature = "pkcs11"))
    );
    if cfg!(any(
        feature = "keyprovider-cmd",
        feature = "keyprovider-grpc"
    )) {
        assert_eq!(ec.key_providers["kms"], [b"arg:with:colons".to_vec()]);
    }
}

#[cfg(any(feature = "keyprovider-cmd", feature = "keyprovider-grpc"))]
#[test]
fn providers_get_enabled_without_args() {
    let ec = encrypt_config(["provider:a", "provider:a:x"], ["provider:b"]).unwrap();
    assert_eq!(ec.key_providers["a"], [b"Enabled".to_vec(), b"x".to_vec()]);
    assert_eq!(ec.decrypt.key_providers["b"], [b"Enabled".to_vec()]);
}

#[cfg(feature = "pgp")]
#[test]
fn pgp_file_recipients() {
    let ec = encrypt_config(
        [
            format!("pgp:{}", pgp_data("alice.pub.asc")),
            format!("pgp:{}", pgp_data("bob.pub.gpg")),
        ],
        NO_KEYS,
    )
    .unwrap();
    assert_eq!(ec.gpg_recipients.len(), 2);
    assert!(ec.gpg_recipients.iter().all(|r| is_hex_id(r)));
    assert!(!ec.gpg_public_keyring.unwrap().is_empty());
}

#[test]
fn bad_keys_are_clear_errors() {
    let f = Files::new();
    let e = decrypt_config(["/nonexistent/key.pem"]).unwrap_err();
    assert!(
        matches!(&e, HelperError::ReadFile { path, what: "key", .. } if path == Path::new("/nonexistent/key.pem")),
        "{e:?}"
    );
    assert!(e.to_string().contains("/nonexistent/key.pem"), "{e}");

    // The password is not part of the path, and never shown.
    let e = key_err("/nonexistent/key.pem:hunter2");
    assert!(
        matches!(&e, HelperError::ReadFile { path, .. } if path == Path::new("/nonexistent/key.pem")),
        "{e:?}"
    );
    assert!(!chain(&e).contains("hunter2") && !format!("{e:?}").contains("hunter2"));

    let e = key_err(&f.path("garbage"));
    assert!(
        matches!(&e, HelperError::UnknownKeyKind { path } if path == Path::new(&f.path("garbage"))),
        "{e:?}"
    );
    assert!(e.to_string().contains("not a private key"), "{e}");

    if cfg!(feature = "jwe") {
        let e = key_err(&f.path("public.pem"));
        assert!(matches!(e, HelperError::IsPublicKey { .. }), "{e:?}");
        assert!(e.to_string().contains("is a public key"), "{e}");
    }

    if !cfg!(any(
        feature = "keyprovider-cmd",
        feature = "keyprovider-grpc"
    )) {
        let e = key_err("provider:x");
        assert!(
            matches!(e, HelperError::KeyProvidersNotCompiled { .. }),
            "{e:?}"
        );
    } else {
        let e = key_err("provider:");
        assert!(matches!(e, HelperError::InvalidProvider { .. }), "{e:?}");
    }
}

#[cfg(feature = "pgp")]
#[test]
fn pgp_keys() {
    let e = key_err(&pgp_data("alice.pub.gpg"));
    assert!(matches!(e, HelperError::IsPgpPublicKey { .. }), "{e:?}");
    assert!(e.to_string().contains("OpenPGP public key"), "{e}");
    let dc = decrypt_config([pgp_data("alice.sec.asc")]).unwrap();
    assert_eq!(dc.gpg_private_keys.len(), 1);
}

#[test]
fn good_keys_with_passwords() {
    let f = Files::new();
    let pwfile = f.dir.path().join("pw");
    fs::write(&pwfile, "secret\n").unwrap();
    let mut keys = vec![f.path("cert.pem")];
    if cfg!(any(feature = "jwe", feature = "pkcs7")) {
        keys.push(f.path("private.pem"));
        keys.push(format!("{}:pass=secret", f.path("encrypted.pem")));
        keys.push(format!("{}:secret", f.path("encrypted.pem")));
        keys.push(format!(
            "{}:file={}",
            f.path("encrypted.pem"),
            pwfile.display()
        ));
    }
    let dc = decrypt_config(&keys).unwrap();
    assert_eq!(dc.certificates, [f.data("cert.pem")]);
    assert_eq!(dc.private_keys.len(), keys.len() - 1);
    if let [plain, rest @ ..] = dc.private_keys.as_slice() {
        assert!(plain.password().is_none());
        assert_eq!(plain.data().expose(), f.data("private.pem"));
        for k in rest {
            assert_eq!(k.password().unwrap().expose_secret(), "secret");
            assert_eq!(k.data().expose(), f.data("encrypted.pem"));
        }
    }
    assert!(!format!("{dc:?}").contains("secret"));
}

#[test]
fn key_path_with_a_colon_that_exists() {
    let f = Files::new();
    let odd = f.dir.path().join("odd:name.pem");
    fs::copy(f.path("cert.pem"), &odd).unwrap();
    let dc = decrypt_config([odd.to_string_lossy()]).unwrap();
    assert_eq!(dc.certificates.len(), 1);
}

#[cfg(feature = "pkcs11")]
#[test]
fn pkcs11_key_files_bring_the_module_policy() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.yaml");
    fs::write(
        &key,
        "pkcs11:\n  uri: pkcs11:token=t;object=o?module-name=softhsm2\n",
    )
    .unwrap();
    assert_eq!(key_kind(&fs::read(&key).unwrap()), KeyKind::Pkcs11KeyFile);
    let spec = key.to_string_lossy();
    // The outcome depends on the user's configuration, which tests cannot change.
    match ocicrypt_keywrap_pkcs11::Pkcs11Config::from_user_config() {
        Ok(policy) => {
            let dc = decrypt_config([&spec]).unwrap();
            assert_eq!(dc.pkcs11_yamls.len(), 1);
            assert_eq!(dc.pkcs11_config, Some(policy.to_yaml()));
            let ec = encrypt_config([format!("pkcs11:{spec}")], NO_KEYS).unwrap();
            assert_eq!(ec.pkcs11_yamls.len(), 1);
            assert_eq!(ec.decrypt.pkcs11_config, Some(policy.to_yaml()));
        }
        Err(_) => {
            let e = decrypt_config([&spec]).unwrap_err();
            assert!(matches!(e, HelperError::Pkcs11Policy { .. }), "{e:?}");
            assert!(e.to_string().contains("OCICRYPT_CONFIG"), "{e}");
        }
    }
}

#[test]
fn errors_are_send_sync_static() {
    fn check<T: std::error::Error + Send + Sync + 'static>() {}
    check::<HelperError>();
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(key_err("/nonexistent"));
    assert!(boxed.to_string().contains("/nonexistent"));
}
