//! Command providers: Go's exact request bytes, the privacy option, and every failure.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![cfg(feature = "cmd")]

use std::time::{Duration, Instant};

use ocicrypt_keyprovider::{KeyProviderKeyWrapper, Options, ProviderConfig};
use ocicrypt_keywrap::secrecy::SecretString;
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, Error, KeyFile, KeyWrapper};

const OPTS: &[u8] = br#"{"symkey":"AAAA"}"#;

/// A provider written in shell: `script` runs with the request on stdin.
fn sh(script: &str, options: Options) -> KeyProviderKeyWrapper {
    let config = ProviderConfig::command("/bin/sh", vec!["-c".into(), script.into()]);
    KeyProviderKeyWrapper::new("kms", config, options).unwrap()
}

fn configs() -> (EncryptConfig, DecryptConfig) {
    let mut ec = EncryptConfig::default();
    ec.jwe_public_keys.push(b"PUBKEY".to_vec());
    ec.key_providers
        .insert("kms".into(), vec![b"Enabled".to_vec()]);
    ec.key_providers.insert("other".into(), vec![b"x".to_vec()]);
    ec.decrypt.private_keys.push(KeyFile::with_password(
        b"PRIV".to_vec(),
        SecretString::from("pw"),
    ));
    ec.decrypt
        .key_providers
        .insert("kms".into(), vec![b"dec-arg".to_vec()]);
    let dc = ec.decrypt.clone();
    (ec, dc)
}

#[test]
fn golden_requests() {
    let (ec, dc) = configs();
    let w = sh("true", Options::default());
    assert_eq!(
        std::str::from_utf8(&w.wrap_request(&ec, OPTS).unwrap()).unwrap(),
        concat!(
            r#"{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"kms":["RW5hYmxlZA=="]},"#,
            r#""DecryptConfig":{"Parameters":{"kms":["ZGVjLWFyZw=="]}}},"#,
            r#""optsdata":"eyJzeW1rZXkiOiJBQUFBIn0="},"keyunwrapparams":{"dc":null,"annotation":null}}"#
        )
    );
    assert_eq!(
        std::str::from_utf8(&w.unwrap_request(&dc, b"blob").unwrap()).unwrap(),
        concat!(
            r#"{"op":"keyunwrap","keywrapparams":{"ec":null,"optsdata":null},"#,
            r#""keyunwrapparams":{"dc":{"Parameters":{"kms":["ZGVjLWFyZw=="]}},"annotation":"YmxvYg=="}}"#
        )
    );
    // Go's behaviour: everything, other schemes' private keys and passwords included.
    let full = sh("true", Options::default().send_full_config(true));
    assert_eq!(
        std::str::from_utf8(&full.wrap_request(&ec, OPTS).unwrap()).unwrap(),
        concat!(
            r#"{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"kms":["RW5hYmxlZA=="],"#,
            r#""other":["eA=="],"pubkeys":["UFVCS0VZ"]},"DecryptConfig":{"Parameters":{"#,
            r#""kms":["ZGVjLWFyZw=="],"privkeys":["UFJJVg=="],"privkeys-passwords":["cHc="]}}},"#,
            r#""optsdata":"eyJzeW1rZXkiOiJBQUFBIn0="},"keyunwrapparams":{"dc":null,"annotation":null}}"#
        )
    );
    assert_eq!(
        std::str::from_utf8(&full.unwrap_request(&dc, b"blob").unwrap()).unwrap(),
        concat!(
            r#"{"op":"keyunwrap","keywrapparams":{"ec":null,"optsdata":null},"keyunwrapparams":{"#,
            r#""dc":{"Parameters":{"kms":["ZGVjLWFyZw=="],"privkeys":["UFJJVg=="],"#,
            r#""privkeys-passwords":["cHc="]}},"annotation":"YmxvYg=="}}"#
        )
    );
}

#[test]
fn the_program_gets_exactly_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen.json");
    let script = format!(
        r#"cat > '{}'; printf '{{"keywrapresults":{{"annotation":"YmxvYg=="}}}}'"#,
        seen.display()
    );
    let (ec, _) = configs();
    for full in [false, true] {
        let w = sh(&script, Options::default().send_full_config(full));
        let blob = w.wrap_keys(&ec, OPTS).unwrap().unwrap();
        assert_eq!(blob, b"blob");
        let sent = std::fs::read(&seen).unwrap();
        assert_eq!(sent, &w.wrap_request(&ec, OPTS).unwrap()[..]);
        let sent = String::from_utf8(sent).unwrap();
        assert_eq!(sent.contains("UFJJVg=="), full, "private key sent: {sent}");
        assert_eq!(sent.contains("other"), full, "{sent}");
    }
}

#[test]
fn round_trip_through_a_program() {
    // Unwrap answers the annotation back as the options: enough to see both directions.
    let w = sh(
        r#"read -r req; case "$req" in
             *'"op":"keywrap"'*) printf '{"keywrapresults":{"annotation":"eyJzeW1rZXkiOiJBQUFBIn0="}}' ;;
             *) printf '{"keyunwrapresults":{"optsdata":"eyJzeW1rZXkiOiJBQUFBIn0="}}' ;;
           esac"#,
        Options::default(),
    );
    let (ec, dc) = configs();
    let blob = w.wrap_keys(&ec, OPTS).unwrap().unwrap();
    assert_eq!(w.unwrap_key(&dc, &blob).unwrap().expose(), OPTS);
}

#[test]
fn only_when_asked() {
    let w = sh("exit 1", Options::default());
    assert_eq!(w.scheme(), "provider.kms");
    assert_eq!(
        w.annotation_key(),
        "org.opencontainers.image.enc.keys.provider.kms"
    );
    let ec = EncryptConfig::default();
    assert!(!w.has_recipients(&ec));
    assert_eq!(w.wrap_keys(&ec, OPTS).unwrap(), None);
    let dc = DecryptConfig::default();
    assert!(!w.has_possible_keys(&dc));
    let err = w.unwrap_key(&dc, b"blob").unwrap_err();
    assert!(matches!(err, Error::NoMatchingKey { .. }), "{err}");
}

/// The error of wrapping (with [`configs`]) through the provider `script` with `options`.
fn wrap_error(script: &str, options: Options) -> Error {
    let (ec, _) = configs();
    sh(script, options).wrap_keys(&ec, OPTS).unwrap_err()
}

/// The message of `err`, with its causes ([`backend_message`]), mentions each of `parts`.
#[track_caller]
fn assert_mentions(err: &Error, parts: &[&str]) {
    let msg = backend_message(err);
    assert!(parts.iter().all(|part| msg.contains(part)), "{msg}");
}

fn backend_message(err: &Error) -> String {
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

#[test]
fn failing_program_shows_status_and_stderr() {
    let err = wrap_error(
        "cat >/dev/null; echo 'no such key' >&2; exit 3",
        Options::default(),
    );
    assert!(matches!(&err, Error::Backend { scheme, .. } if scheme == "provider.kms"));
    assert_mentions(&err, &["exit status: 3", "no such key"]);
}

#[test]
fn stderr_is_bounded() {
    let msg = backend_message(&wrap_error(
        "head -c 100000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 1",
        Options::default(),
    ));
    assert!(msg.ends_with("xEND"), "{}", &msg[msg.len() - 20..]);
    assert!(msg.len() < 5000, "{}", msg.len());
}

#[test]
fn hanging_program_is_killed() {
    let start = Instant::now();
    let err = wrap_error(
        "echo started >&2; exec sleep 30",
        Options::default().timeout(Duration::from_millis(300)),
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_mentions(&err, &["did not answer within 300ms", "started"]);
}

#[test]
fn garbage_and_empty_replies_are_errors() {
    let (ec, dc) = configs();
    let w = sh(
        "cat >/dev/null; echo 'this is not JSON'",
        Options::default(),
    );
    let msg = backend_message(&w.wrap_keys(&ec, OPTS).unwrap_err());
    assert!(msg.contains("invalid key provider reply"), "{msg}");
    let w = sh("cat >/dev/null; echo '{}'", Options::default());
    let msg = backend_message(&w.wrap_keys(&ec, OPTS).unwrap_err());
    assert!(msg.contains("no keywrapresults.annotation"), "{msg}");
    let msg = backend_message(&w.unwrap_key(&dc, b"blob").unwrap_err());
    assert!(msg.contains("no keyunwrapresults.optsdata"), "{msg}");
    let w = sh(
        "cat >/dev/null; head -c 2000 /dev/zero",
        Options::default().max_reply_size(1000),
    );
    let msg = backend_message(&w.wrap_keys(&ec, OPTS).unwrap_err());
    assert!(msg.contains("longer than 1000 bytes"), "{msg}");
}

#[test]
fn missing_program_is_an_error() {
    let config = ProviderConfig::command("/nonexistent/provider", vec![]);
    let w = KeyProviderKeyWrapper::new("kms", config, Options::default()).unwrap();
    let (ec, _) = configs();
    let msg = backend_message(&w.wrap_keys(&ec, OPTS).unwrap_err());
    assert!(
        msg.contains("cannot run key provider command /nonexistent/provider"),
        "{msg}"
    );
}

#[test]
fn wrappers_from_config_checks_each_provider() {
    let config = ocicrypt_keyprovider::Config::from_json(
        br#"{"key-providers":{"a":{"cmd":{"path":"/bin/true"}},"b":{"cmd":{"path":"/bin/false"}}}}"#,
    )
    .unwrap();
    let ws = ocicrypt_keyprovider::wrappers_from_config(&config, &Options::default()).unwrap();
    let schemes: Vec<_> = ws.iter().map(|w| w.scheme().to_owned()).collect();
    assert_eq!(schemes, ["provider.a", "provider.b"]);
    let bad = ocicrypt_keyprovider::Config::from_json(br#"{"key-providers":{"a":{}}}"#).unwrap();
    let err = ocicrypt_keyprovider::wrappers_from_config(&bad, &Options::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("Unsupported keyprovider invocation"),
        "{err}"
    );
    let err = err.into_keywrap("provider.a", "x");
    assert!(matches!(err, Error::Config { .. }), "{err}");
}

/// Runs in a child process (see `from_env`), where the environment can be set without
/// `unsafe`; does nothing when run directly.
#[test]
fn from_env_child() {
    let Some(expect) = std::env::var_os("OCICRYPT_KEYPROVIDER_TEST_EXPECT") else {
        return;
    };
    let got = ocicrypt_keyprovider::Config::from_env();
    match expect.to_str().unwrap() {
        "none" => assert!(got.unwrap().key_providers.is_empty()),
        "one" => assert!(got.unwrap().key_providers.contains_key("kms")),
        "missing" => {
            let err = got.unwrap_err();
            assert!(
                matches!(err, ocicrypt_keyprovider::Error::ConfigRead { .. }),
                "{err}"
            );
        }
        other => panic!("unknown expectation {other}"),
    }
}

#[test]
fn from_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kp.json");
    std::fs::write(
        &file,
        br#"{"key-providers":{"kms":{"cmd":{"path":"/bin/true"}}}}"#,
    )
    .unwrap();
    let missing = dir.path().join("missing.json");
    for (value, expect) in [
        (None, "none"),
        (Some(std::ffi::OsStr::new("")), "none"),
        (Some(file.as_os_str()), "one"),
        (Some(missing.as_os_str()), "missing"),
    ] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args(["--exact", "from_env_child", "--test-threads=1"])
            .env("OCICRYPT_KEYPROVIDER_TEST_EXPECT", expect);
        match value {
            Some(v) => child.env(ocicrypt_keyprovider::CONFIG_ENV, v),
            None => child.env_remove(ocicrypt_keyprovider::CONFIG_ENV),
        };
        let out = child.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{expect}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Issue 11, M5: a layer with more wrapped keys for one provider than MAX_UNWRAP_CALLS is
/// refused before the provider is called at all; up to the cap, each blob is one call.
#[test]
fn a_layer_cannot_make_the_provider_run_a_thousand_times() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls");
    // Counts its calls, answers "no".
    let w = sh(
        &format!("echo x >> {}; exit 1", log.display()),
        Options::default(),
    );
    let (_, dc) = configs();
    let blobs = vec![b"blob".to_vec(); ocicrypt_keyprovider::MAX_UNWRAP_CALLS + 1];
    let errors = w.unwrap_first(&dc, &blobs).unwrap_err();
    assert!(
        matches!(errors.as_slice(), [Error::LimitExceeded { .. }]),
        "{errors:?}"
    );
    assert!(!log.exists(), "the provider was not called");
    let blobs = vec![b"blob".to_vec(); 3];
    let errors = w.unwrap_first(&dc, &blobs).unwrap_err();
    assert_eq!(errors.len(), 3);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);
}
