//! One conformance suite for every [`KeyWrapper`]: the contract of the trait, checked the
//! same way for each scheme (as RustCrypto's `aead::dev` does for AEADs).
//!
//! A scheme's integration test implements [`Fixture`] (the wrapper, and configurations for
//! recipients `A` and `B`, for an unrelated key, and, if the scheme has them, for a
//! password-protected key) and calls [`run_all`]. Each check is also a function of its own.
//! A failed check panics with the check's name and the scheme's; a capability that the
//! fixture declares [`Capability::Unsupported`] skips the checks that need it, and the
//! [`Report`] says which ran.
//!
//! The contract, as the checks see it:
//!
//! - what [`KeyWrapper::wrap_keys`] wraps for a recipient, that recipient's key unwraps to
//!   the exact bytes, through [`KeyWrapper::unwrap_key`] and [`KeyWrapper::unwrap_first`];
//!   the blob does not hold them in clear;
//! - a key that does not fit is [`Error::NoMatchingKey`] (or the kind the fixture declares
//!   with [`Fixture::wrong_key`]) and does not stop the search: a later key that fits opens
//!   the blob;
//! - no key at all is [`Error::NoMatchingKey`], and [`KeyWrapper::has_possible_keys`] is
//!   false;
//! - a damaged blob (truncated, bytes flipped, empty, garbage) is an error, never a panic,
//!   and never other bytes than the ones wrapped;
//! - every recipient of a blob opens it alone;
//! - a password-protected key without its password is [`Error::MissingPassword`], with a
//!   wrong one [`Error::WrongPassword`]; such an error stops the search, within one blob
//!   and across blobs ([`crate::unwrap_in_turn`]);
//! - no recipient of the scheme: [`KeyWrapper::wrap_keys`] gives `Ok(None)` and
//!   [`KeyWrapper::has_recipients`] is false;
//! - the wrapper is `Send + Sync` and works from two threads at once;
//! - [`KeyWrapper::unwrap_first`] goes past blobs it cannot open to one it can.
//!
//! ```
//! use ocicrypt_keywrap::conformance::{self, Capability, Fixture, Passwords, Recipient};
//! use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, KeyFile};
//! # use ocicrypt_keywrap::{Error, KeyWrapper, SecretBytes};
//! # /// A toy scheme: blob = key byte, payload, and a checksum.
//! # #[derive(Debug)]
//! # struct Toy;
//! # fn sum(b: &[u8]) -> u8 { b.iter().fold(0x5a_u8, |s, x| s.wrapping_mul(31).wrapping_add(*x)) }
//! # impl KeyWrapper for Toy {
//! #     fn scheme(&self) -> &str { "toy" }
//! #     fn wrap_keys(&self, ec: &EncryptConfig, opts: &[u8]) -> Result<Option<Vec<u8>>, Error> {
//! #         let Some(k) = ec.jwe_public_keys.first().and_then(|k| k.first()) else { return Ok(None) };
//! #         let mut b: Vec<u8> = [0].iter().chain(opts).map(|x| x ^ k).collect();
//! #         b.push(sum(&b));
//! #         Ok(Some(b))
//! #     }
//! #     fn unwrap_key(&self, dc: &DecryptConfig, blob: &[u8]) -> Result<SecretBytes, Error> {
//! #         let Some((check, body)) = blob.split_last() else { return Err(Error::malformed("toy", "empty")) };
//! #         if sum(body) != *check || body.len() < 2 { return Err(Error::malformed("toy", "checksum")) }
//! #         for key in &dc.private_keys {
//! #             let Some(k) = key.data().expose().first() else { continue };
//! #             if body.first() == Some(k) {
//! #                 return Ok(SecretBytes::new(body.iter().skip(1).map(|x| x ^ k).collect()));
//! #             }
//! #         }
//! #         Err(Error::NoMatchingKey { scheme: "toy".into(), causes: vec![] })
//! #     }
//! #     fn has_possible_keys(&self, dc: &DecryptConfig) -> bool { !dc.private_keys.is_empty() }
//! #     fn has_recipients(&self, ec: &EncryptConfig) -> bool { !ec.jwe_public_keys.is_empty() }
//! # }
//!
//! struct ToyFixture(Toy);
//!
//! impl Fixture for ToyFixture {
//!     type Wrapper = Toy;
//!
//!     fn wrapper(&self) -> &Toy {
//!         &self.0
//!     }
//!
//!     fn encrypt_for(&self, recipients: &[Recipient]) -> EncryptConfig {
//!         let [Recipient::A] = recipients else { unreachable!("one recipient only") };
//!         EncryptConfig::default().with_jwe_public_keys(vec![vec![1]])
//!     }
//!
//!     fn decrypt_with(&self, recipient: Recipient) -> DecryptConfig {
//!         assert_eq!(recipient, Recipient::A);
//!         DecryptConfig::default().with_private_keys(vec![KeyFile::new(vec![1])])
//!     }
//!
//!     fn decrypt_unrelated(&self) -> DecryptConfig {
//!         DecryptConfig::default().with_private_keys(vec![KeyFile::new(vec![3])])
//!     }
//!
//!     fn many_recipients(&self) -> Capability<()> {
//!         Capability::Unsupported("one key byte per blob")
//!     }
//!
//!     fn passwords(&self) -> Capability<Passwords> {
//!         Capability::Unsupported("toy keys have no passwords")
//!     }
//! }
//!
//! let report = conformance::run_all(&ToyFixture(Toy));
//! assert_eq!(
//!     report.skipped(),
//!     ["many_recipients", "right_password", "missing_password", "wrong_password",
//!      "password_stops_search"]
//! );
//! println!("{report}");
//! ```

// Test support: a failed check panics, as `assert!` does in a test, with the check's name.
#![allow(clippy::panic)]

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::{DecryptConfig, EncryptConfig, Error, KeyFile, KeyWrapper, SecretBytes};

/// The private options the suite wraps: the JSON of a real layer's options (Go's
/// `PrivateLayerBlockCipherOptions`), 193 bytes: one RSA-OAEP block of a 2048-bit key holds
/// it with SHA-1 (214 bytes at most), not with SHA-256 (190).
pub const OPTS: &[u8] = br#"{"symkey":"mZ3kqFz0cXo2c7VQXb0tq8r1m9yH0aXnU5V2p1h4LQw=","cipheroptions":{"nonce":"1nN8fW4xZk3bq9V0pT7yQg=="},"digest":"sha256:5f0c3a4e9b1d2c8f7a6e5d4c3b2a19080f1e2d3c4b5a69788796a5b4c3d2e1f0"}"#;

/// A recipient of the fixture: two, `A` and `B`, each with its own key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Recipient {
    /// The recipient every check uses.
    A,
    /// A second recipient, used only when [`Fixture::many_recipients`] is supported.
    B,
}

/// Whether a scheme has a capability: the value the checks need, or why not.
#[derive(Clone, Debug)]
pub enum Capability<T> {
    /// The scheme has it; here is what the checks need.
    Supported(T),
    /// The scheme does not have it, for this reason (shown in the [`Report`]).
    Unsupported(&'static str),
}

/// The configurations of the password checks, all about one password-protected key `P`.
///
/// Not `#[non_exhaustive]`: fixtures build it with a struct literal, so that each field is
/// named, and a new field is meant to make every fixture decide what to put there.
#[derive(Clone, Debug)]
pub struct Passwords {
    /// Recipient `P`.
    pub encrypt: EncryptConfig,
    /// `P`'s encrypted key with its password.
    pub right: DecryptConfig,
    /// `P`'s encrypted key without a password.
    pub missing: DecryptConfig,
    /// `P`'s encrypted key with a wrong password.
    pub wrong: DecryptConfig,
}

/// The error a scheme gives when a key does not open a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WrongKey {
    /// [`Error::NoMatchingKey`], as [`KeyWrapper::unwrap_key`] documents.
    NoMatchingKey,
    /// [`Error::Backend`]: the scheme cannot tell a key that does not fit from any other
    /// failure of its backend (a key provider only answers "error"); the reason says so.
    Backend(&'static str),
}

impl WrongKey {
    fn matches(self, e: &Error) -> bool {
        match self {
            Self::NoMatchingKey => matches!(e, Error::NoMatchingKey { .. }),
            Self::Backend(_) => matches!(e, Error::Backend { .. }),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::NoMatchingKey => "NoMatchingKey",
            Self::Backend(_) => "Backend",
        }
    }
}

/// What a scheme's test hands the suite.
///
/// The configurations are built anew for each call; the suite merges decryption
/// configurations (key lists concatenated in order) to put one key before another.
pub trait Fixture {
    /// The wrapper under test.
    type Wrapper: KeyWrapper;

    /// The wrapper under test.
    fn wrapper(&self) -> &Self::Wrapper;

    /// A configuration that wraps for `recipients`: `[A]` always; `[B]` and `[A, B]` only
    /// if [`Fixture::many_recipients`] is supported.
    fn encrypt_for(&self, recipients: &[Recipient]) -> EncryptConfig;

    /// A configuration that holds `recipient`'s key (and nothing else of this scheme).
    fn decrypt_with(&self, recipient: Recipient) -> DecryptConfig;

    /// A configuration that holds a key of this scheme that opens no blob of `A` or `B`.
    fn decrypt_unrelated(&self) -> DecryptConfig;

    /// A configuration with no key of this scheme (settings such as a module policy are
    /// fine). The default is [`DecryptConfig::default`].
    fn decrypt_empty(&self) -> DecryptConfig {
        DecryptConfig::default()
    }

    /// Whether a blob can have several recipients (`A` and `B`).
    fn many_recipients(&self) -> Capability<()>;

    /// Whether keys can be password-protected, and the configurations to check it.
    fn passwords(&self) -> Capability<Passwords>;

    /// The error of a key that does not fit. The default is [`WrongKey::NoMatchingKey`].
    fn wrong_key(&self) -> WrongKey {
        WrongKey::NoMatchingKey
    }
}

/// How one check went (a failed check panics instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check ran and passed; a few words on what it covered.
    Passed(String),
    /// The check did not run: the fixture declared a capability it needs unsupported.
    Skipped(&'static str),
}

/// Which checks ran for a scheme ([`run_all`]); its `Display` is one line per check.
#[derive(Clone, Debug)]
pub struct Report {
    scheme: String,
    outcomes: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// The scheme checked.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Every check with its outcome, in the order run.
    pub fn outcomes(&self) -> &[(&'static str, Outcome)] {
        &self.outcomes
    }

    /// The checks that ran (and passed).
    pub fn passed(&self) -> Vec<&'static str> {
        self.names(|o| matches!(o, Outcome::Passed(_)))
    }

    /// The checks that were skipped.
    pub fn skipped(&self) -> Vec<&'static str> {
        self.names(|o| matches!(o, Outcome::Skipped(_)))
    }

    fn names(&self, pick: impl Fn(&Outcome) -> bool) -> Vec<&'static str> {
        self.outcomes
            .iter()
            .filter(|(_, o)| pick(o))
            .map(|(name, _)| *name)
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "KeyWrapper conformance of scheme {}:", self.scheme)?;
        for (name, outcome) in &self.outcomes {
            match outcome {
                Outcome::Passed(note) if note.is_empty() => writeln!(f, "  passed   {name}")?,
                Outcome::Passed(note) => writeln!(f, "  passed   {name} ({note})")?,
                Outcome::Skipped(why) => writeln!(f, "  SKIPPED  {name}: {why}")?,
            }
        }
        Ok(())
    }
}

/// One check: passes (or is skipped) or panics.
pub type Check<F> = fn(&F) -> Outcome;

/// Every check, by name, in the order [`run_all`] runs them: for a test that must treat one
/// of them apart (a known deviation, asserted as such).
pub fn checks<F: Fixture>() -> Vec<(&'static str, Check<F>)> {
    vec![
        ("round_trip", round_trip),
        ("wrong_key", wrong_key),
        ("no_key", no_key),
        ("corrupted_blob", corrupted_blob),
        ("no_recipients", no_recipients),
        ("many_recipients", many_recipients),
        ("right_password", right_password),
        ("missing_password", missing_password),
        ("wrong_password", wrong_password),
        ("password_stops_search", password_stops_search),
        ("send_sync", send_sync),
        ("unwrap_first", unwrap_first),
        ("parsers_do_not_panic", parsers_do_not_panic),
    ]
}

/// Runs every check, in order, and reports which ran. Panics at the first that fails.
pub fn run_all<F: Fixture>(f: &F) -> Report {
    Report {
        scheme: f.wrapper().scheme().to_owned(),
        outcomes: checks()
            .into_iter()
            .map(|(name, check)| (name, check(f)))
            .collect(),
    }
}

/// The checks that need [`Fixture::passwords`]: what a scheme without passwords skips.
pub const PASSWORD_CHECKS: [&str; 4] = [
    "right_password",
    "missing_password",
    "wrong_password",
    "password_stops_search",
];

/// Runs every check ([`run_all`]), prints the report, and asserts that exactly `skipped`
/// were skipped, in order.
pub fn assert_conforms_skipping<F: Fixture>(f: &F, skipped: &[&str]) -> Report {
    let report = run_all(f);
    eprintln!("{report}");
    assert_eq!(report.skipped(), skipped, "{report}");
    report
}

/// The key file `data`, with `password` if there is one: for the fields of [`Passwords`].
pub fn key_file(data: &[u8], password: Option<&str>) -> KeyFile {
    match password {
        Some(p) => KeyFile::with_password(data.to_vec(), secrecy::SecretString::from(p)),
        None => KeyFile::new(data.to_vec()),
    }
}

/// A decryption configuration that holds one private key, `data`, with `password` if there
/// is one ([`key_file`]): for [`Fixture::decrypt_with`] and, through [`passwords_of`], for
/// [`Fixture::passwords`].
pub fn private_key(data: &[u8], password: Option<&str>) -> DecryptConfig {
    DecryptConfig::default().with_private_keys(vec![key_file(data, password)])
}

/// The [`Passwords`] of one encrypted key that `key` loads: with `password`, with none, and
/// with a wrong one.
pub fn passwords_of(
    encrypt: EncryptConfig,
    key: impl Fn(Option<&str>) -> DecryptConfig,
    password: &str,
) -> Passwords {
    Passwords {
        encrypt,
        right: key(Some(password)),
        missing: key(None),
        wrong: key(Some(&format!("not {password}"))),
    }
}

/// [`Fixture::passwords`] of a scheme whose private keys ([`private_key`]) can be encrypted:
/// supported, with recipient `A`'s key encrypted with `password` in `encrypted_a`.
pub fn passwords_of_a<F: Fixture + ?Sized>(
    f: &F,
    encrypted_a: &[u8],
    password: &str,
) -> Capability<Passwords> {
    let encrypt = f.encrypt_for(&[Recipient::A]);
    Capability::Supported(passwords_of(
        encrypt,
        |p| private_key(encrypted_a, p),
        password,
    ))
}

/// The variant's name, for messages.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::InvalidRecipient { .. } => "InvalidRecipient",
        Error::InvalidPrivateKey { .. } => "InvalidPrivateKey",
        Error::MissingPassword { .. } => "MissingPassword",
        Error::WrongPassword { .. } => "WrongPassword",
        Error::MalformedBlob { .. } => "MalformedBlob",
        Error::UnsupportedAlgorithm { .. } => "UnsupportedAlgorithm",
        Error::LimitExceeded { .. } => "LimitExceeded",
        Error::NoMatchingKey { .. } => "NoMatchingKey",
        Error::Config { .. } => "Config",
        Error::Backend { .. } => "Backend",
    }
}

/// An error expected from a blob: its name for messages, and the test.
type Expected<'a> = (&'a str, &'a dyn Fn(&Error) -> bool);

/// One check of one wrapper: failing, wrapping and unwrapping with messages that name both.
struct Ctx<'a, W> {
    w: &'a W,
    check: &'static str,
}

impl<'a, W: KeyWrapper> Ctx<'a, W> {
    fn new(w: &'a W, check: &'static str) -> Self {
        Self { w, check }
    }

    fn fail(&self, msg: impl fmt::Display) -> ! {
        panic!(
            "KeyWrapper conformance: check `{}` failed for scheme {}: {msg}",
            self.check,
            self.w.scheme()
        )
    }

    fn ensure(&self, ok: bool, msg: impl fmt::Display) {
        if !ok {
            self.fail(msg);
        }
    }

    /// The blob for `ec`, which has recipients.
    fn wrap(&self, ec: &EncryptConfig, what: &str) -> Vec<u8> {
        match self.w.wrap_keys(ec, OPTS) {
            Ok(Some(blob)) => blob,
            Ok(None) => self.fail(format_args!("wrap_keys for {what} gave no blob")),
            Err(e) => self.fail(format_args!(
                "wrap_keys for {what} failed: {} ({e})",
                kind(&e)
            )),
        }
    }

    fn expect_opts(&self, result: Result<SecretBytes, Error>, what: &str) {
        match result {
            Ok(opts) if opts.expose() == OPTS => {}
            Ok(_) => self.fail(format_args!("{what}: unwrapped to other bytes")),
            Err(e) => self.fail(format_args!("{what}: failed with {} ({e})", kind(&e))),
        }
    }

    /// `dc` opens `blob` with `unwrap_key` and with `unwrap_first`.
    fn opens(&self, dc: &DecryptConfig, blob: &[u8], what: &str) {
        self.expect_opts(self.w.unwrap_key(dc, blob), what);
        let first = self.w.unwrap_first(dc, &[blob.to_vec()]);
        match first {
            Ok(opts) => self.expect_opts(Ok(opts), what),
            Err(errors) => self.fail(format_args!(
                "{what}: unwrap_key opened the blob but unwrap_first failed with {:?}",
                errors.iter().map(kind).collect::<Vec<_>>()
            )),
        }
    }

    /// `dc` does not open `blob`; the error is `expected` (`name` in messages).
    fn refuses(
        &self,
        dc: &DecryptConfig,
        blob: &[u8],
        what: &str,
        name: &str,
        expected: impl Fn(&Error) -> bool,
    ) -> Error {
        match self.w.unwrap_key(dc, blob) {
            Ok(_) => self.fail(format_args!("{what}: the blob opened")),
            Err(e) if expected(&e) => e,
            Err(e) => self.fail(format_args!(
                "{what}: expected {name}, got {} ({e})",
                kind(&e)
            )),
        }
    }

    /// `unwrap_first` of `blobs` fails with one error per blob tried, `expected` in order.
    fn first_fails(
        &self,
        dc: &DecryptConfig,
        blobs: &[Vec<u8>],
        what: &str,
        expected: &[Expected<'_>],
    ) {
        match self.w.unwrap_first(dc, blobs) {
            Ok(_) => self.fail(format_args!("{what}: unwrap_first opened a blob")),
            Err(errors) => {
                let kinds: Vec<_> = errors.iter().map(kind).collect();
                let names: Vec<_> = expected.iter().map(|(n, _)| *n).collect();
                self.ensure(
                    errors.len() == expected.len()
                        && errors.iter().zip(expected).all(|(e, (_, ok))| ok(e)),
                    format_args!("{what}: unwrap_first gave {kinds:?}, expected {names:?}"),
                );
            }
        }
    }
}

/// `first`'s keys, then `then`'s: every list concatenated, a key provider's arguments too;
/// `first`'s PKCS#11 module policy if it has one.
fn merged(first: &DecryptConfig, then: &DecryptConfig) -> DecryptConfig {
    // Destructured, so that a new field must be merged here too.
    let DecryptConfig {
        private_keys,
        certificates,
        gpg_private_keys,
        pkcs11_yamls,
        pkcs11_config,
        key_providers,
    } = then;
    let mut dc = first.clone();
    dc.private_keys.extend(private_keys.iter().cloned());
    dc.certificates.extend(certificates.iter().cloned());
    dc.gpg_private_keys.extend(gpg_private_keys.iter().cloned());
    dc.pkcs11_yamls.extend(pkcs11_yamls.iter().cloned());
    if dc.pkcs11_config.is_none() {
        dc.pkcs11_config.clone_from(pkcs11_config);
    }
    for (name, args) in key_providers {
        dc.key_providers
            .entry(name.clone())
            .or_default()
            .extend(args.iter().cloned());
    }
    dc
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Bytes that no scheme writes.
const GARBAGE: &[u8] = b"this is not a wrapped key";

fn is_password_error(e: &Error) -> bool {
    e.is_password_error()
}

fn not_password_error(e: &Error) -> bool {
    !e.is_password_error()
}

/// Wrapping for `A` and unwrapping with `A`'s key gives the exact bytes, through
/// `unwrap_key` and `unwrap_first`, twice; the blob does not hold them in clear; the
/// configs say they have recipients and keys; `recipients` and `key_ids` read the blob.
pub fn round_trip<F: Fixture>(f: &F) -> Outcome {
    let c = Ctx::new(f.wrapper(), "round_trip");
    let ec = f.encrypt_for(&[Recipient::A]);
    let dc = f.decrypt_with(Recipient::A);
    c.ensure(
        c.w.has_recipients(&ec),
        "has_recipients is false for A's config",
    );
    c.ensure(
        c.w.has_possible_keys(&dc),
        "has_possible_keys is false for A's key",
    );
    for round in ["first", "second"] {
        let blob = c.wrap(&ec, "A");
        c.ensure(
            !contains(&blob, OPTS),
            "the blob holds the options in clear",
        );
        c.opens(&dc, &blob, &format!("A's key, {round} blob"));
        match c.w.recipients(&blob) {
            Ok(r) => c.ensure(!r.is_empty(), "recipients() of a good blob is empty"),
            Err(e) => c.fail(format_args!("recipients() of a good blob failed: {e}")),
        }
        if let Err(e) = c.w.key_ids(&blob) {
            c.fail(format_args!("key_ids() of a good blob failed: {e}"));
        }
    }
    Outcome::Passed(String::new())
}

/// An unrelated key does not open A's blob, with the fixture's [`WrongKey`] error (from
/// `unwrap_key`, and as the one error of `unwrap_first`); put before A's key, it does not
/// stop the search.
pub fn wrong_key<F: Fixture>(f: &F) -> Outcome {
    let c = Ctx::new(f.wrapper(), "wrong_key");
    let wrong = f.wrong_key();
    let blob = c.wrap(&f.encrypt_for(&[Recipient::A]), "A");
    let unrelated = f.decrypt_unrelated();
    c.ensure(
        c.w.has_possible_keys(&unrelated),
        "has_possible_keys is false for the unrelated key",
    );
    let is_wrong = |e: &Error| wrong.matches(e);
    c.refuses(&unrelated, &blob, "unrelated key", wrong.name(), is_wrong);
    c.first_fails(
        &unrelated,
        std::slice::from_ref(&blob),
        "unrelated key",
        &[(wrong.name(), &is_wrong)],
    );
    c.opens(
        &merged(&unrelated, &f.decrypt_with(Recipient::A)),
        &blob,
        "the unrelated key, then A's",
    );
    Outcome::Passed(match wrong {
        WrongKey::NoMatchingKey => "NoMatchingKey".to_owned(),
        WrongKey::Backend(why) => format!("Backend: {why}"),
    })
}

/// No key of the scheme: `has_possible_keys` is false, and unwrapping is
/// [`Error::NoMatchingKey`].
pub fn no_key<F: Fixture>(f: &F) -> Outcome {
    let c = Ctx::new(f.wrapper(), "no_key");
    let blob = c.wrap(&f.encrypt_for(&[Recipient::A]), "A");
    let empty = f.decrypt_empty();
    c.ensure(
        !c.w.has_possible_keys(&empty),
        "has_possible_keys is true without keys",
    );
    let no_match = |e: &Error| matches!(e, Error::NoMatchingKey { .. });
    c.refuses(&empty, &blob, "no key", "NoMatchingKey", no_match);
    c.first_fails(
        &empty,
        std::slice::from_ref(&blob),
        "no key",
        &[("NoMatchingKey", &no_match)],
    );
    Outcome::Passed(String::new())
}

/// Damaged copies of a good blob, and blobs that are not this scheme's at all.
fn corruptions(blob: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("one zero byte".into(), vec![0]),
        ("text".into(), GARBAGE.to_vec()),
        ("64 zero bytes".into(), vec![0; 64]),
        ("JSON {}".into(), b"{}".to_vec()),
        ("JSON null".into(), b"null".to_vec()),
        ("all 0xff".into(), vec![0xff; blob.len()]),
        ("reversed".into(), blob.iter().rev().copied().collect()),
        (
            "without its first byte".into(),
            blob.iter().skip(1).copied().collect(),
        ),
        ("twice".into(), blob.repeat(2)),
        ("with a zero byte appended".into(), [blob, &[0]].concat()),
    ];
    let len = blob.len();
    for keep in [1, 16, len / 2, len.saturating_sub(1)] {
        if keep < len
            && let Some(head) = blob.get(..keep)
            && !out.iter().any(|(_, b)| b == head)
        {
            out.push((format!("truncated to {keep} bytes"), head.to_vec()));
        }
    }
    // Every byte of a short blob, 64 spread over a long one; another bit each time.
    let positions: Vec<usize> = if len <= 64 {
        (0..len).collect()
    } else {
        (0..64).map(|i| i * (len - 1) / 63).collect()
    };
    for i in positions {
        let mut bad = blob.to_vec();
        if let Some(b) = bad.get_mut(i) {
            *b ^= 1 << (i % 8);
            out.push((format!("bit {} of byte {i} flipped", i % 8), bad));
        }
    }
    out
}

/// Damaged blobs (truncated, bits flipped, empty, garbage, doubled) are errors, never a
/// panic, and never other bytes than the ones wrapped (the same bytes may come back when
/// the damage is in a part the scheme does not use).
pub fn corrupted_blob<F: Fixture>(f: &F) -> Outcome {
    let c = Ctx::new(f.wrapper(), "corrupted_blob");
    let blob = c.wrap(&f.encrypt_for(&[Recipient::A]), "A");
    let dc = f.decrypt_with(Recipient::A);
    let bad = corruptions(&blob);
    let mut same = Vec::new();
    for (what, bytes) in &bad {
        match catch_unwind(AssertUnwindSafe(|| c.w.unwrap_key(&dc, bytes))) {
            Err(_) => c.fail(format_args!("unwrap_key panicked on the blob {what}")),
            Ok(Ok(opts)) if opts.expose() == OPTS => same.push(what.as_str()),
            Ok(Ok(_)) => c.fail(format_args!("the blob {what} unwrapped to other bytes")),
            Ok(Err(e)) => c.ensure(
                !e.is_password_error(),
                format_args!("the blob {what} gave a password error: {e}"),
            ),
        }
    }
    Outcome::Passed(if same.is_empty() {
        format!("{} damaged blobs, all refused", bad.len())
    } else {
        format!(
            "{} damaged blobs, refused but for {} that still opened to the same bytes: {}",
            bad.len(),
            same.len(),
            same.join(", ")
        )
    })
}

/// `recipients` and `key_ids` (what `inspect` shows) on damaged blobs: any answer but a
/// panic.
pub fn parsers_do_not_panic<F: Fixture>(f: &F) -> Outcome {
    let c = Ctx::new(f.wrapper(), "parsers_do_not_panic");
    let blob = c.wrap(&f.encrypt_for(&[Recipient::A]), "A");
    let bad = corruptions(&blob);
    for (what, bytes) in &bad {
        if catch_unwind(AssertUnwindSafe(|| c.w.recipients(bytes))).is_err() {
            c.fail(format_args!("recipients() panicked on the blob {what}"));
        }
        if catch_unwind(AssertUnwindSafe(|| c.w.key_ids(bytes))).is_err() {
            c.fail(format_args!("key_ids() panicked on the blob {what}"));
        }
    }
    Outcome::Passed(format!("{} damaged blobs", bad.len()))
}

/// Configurations with recipients of other schemes only (junk values, which this scheme
/// must not read), and with decryption keys only.
fn foreign_recipients() -> Vec<(&'static str, EncryptConfig)> {
    let junk = || vec![GARBAGE.to_vec()];
    let ec = EncryptConfig::default;
    vec![
        ("jwe_public_keys", ec().with_jwe_public_keys(junk())),
        ("pkcs7_certificates", ec().with_pkcs7_certificates(junk())),
        (
            "gpg_recipients",
            ec().with_gpg_recipients(vec!["nobody@example.com".to_owned()])
                .with_gpg_public_keyring(Some(GARBAGE.to_vec())),
        ),
        ("pkcs11_public_keys", ec().with_pkcs11_public_keys(junk())),
        ("pkcs11_yamls", ec().with_pkcs11_yamls(junk())),
        (
            "key_providers",
            ec().with_key_providers([("conformance-no-such-provider".to_owned(), junk())].into()),
        ),
    ]
}

/// No recipient of this scheme: `has_recipients` is false and `wrap_keys` gives
/// `Ok(None)`, for an empty config, one with decryption keys only, and each config with
/// only another scheme's recipients.
pub fn no_recipients<F: Fixture>(f: &F) -> Outcome {
    let c = Ctx::new(f.wrapper(), "no_recipients");
    let mut cases = vec![
        ("no recipients", EncryptConfig::default()),
        (
            "A's key to decrypt, no recipients",
            EncryptConfig::default().with_decrypt(f.decrypt_with(Recipient::A)),
        ),
    ];
    let mut own = Vec::new();
    for (field, ec) in foreign_recipients() {
        if c.w.has_recipients(&ec) {
            own.push(field);
        } else {
            cases.push((field, ec));
        }
    }
    c.ensure(
        own.len() < foreign_recipients().len(),
        "has_recipients is true for every scheme's recipients",
    );
    for (what, ec) in &cases {
        c.ensure(
            !c.w.has_recipients(ec),
            format_args!("has_recipients is true for {what}"),
        );
        match c.w.wrap_keys(ec, OPTS) {
            Ok(None) => {}
            Ok(Some(_)) => c.fail(format_args!("wrap_keys made a blob for {what}")),
            Err(e) => c.fail(format_args!("wrap_keys failed for {what}: {e}")),
        }
    }
    Outcome::Passed(format!(
        "{} configs; the scheme's own fields among them: {}",
        cases.len(),
        if own.is_empty() {
            "none".to_owned()
        } else {
            own.join(", ")
        }
    ))
}

fn skipped<T>(cap: Capability<T>) -> Result<T, Outcome> {
    match cap {
        Capability::Supported(t) => Ok(t),
        Capability::Unsupported(why) => Err(Outcome::Skipped(why)),
    }
}

/// A blob for `A` and `B`: each key alone opens it, both together too, an unrelated one
/// does not; B's own blob does not open with A's key, and `unwrap_first` goes past it to
/// A's.
pub fn many_recipients<F: Fixture>(f: &F) -> Outcome {
    if let Err(skip) = skipped(f.many_recipients()) {
        return skip;
    }
    let c = Ctx::new(f.wrapper(), "many_recipients");
    let wrong = f.wrong_key();
    let is_wrong = |e: &Error| wrong.matches(e);
    let (a, b) = (f.decrypt_with(Recipient::A), f.decrypt_with(Recipient::B));
    let both = c.wrap(&f.encrypt_for(&[Recipient::A, Recipient::B]), "A and B");
    c.opens(&a, &both, "A's key, blob for A and B");
    c.opens(&b, &both, "B's key, blob for A and B");
    c.opens(&merged(&a, &b), &both, "A's and B's keys, blob for A and B");
    c.refuses(
        &f.decrypt_unrelated(),
        &both,
        "unrelated key, blob for A and B",
        wrong.name(),
        is_wrong,
    );
    let only_b = c.wrap(&f.encrypt_for(&[Recipient::B]), "B");
    c.opens(&b, &only_b, "B's key, blob for B");
    c.refuses(&a, &only_b, "A's key, blob for B", wrong.name(), is_wrong);
    let blob_a = c.wrap(&f.encrypt_for(&[Recipient::A]), "A");
    c.expect_opts(
        c.w.unwrap_first(&a, &[only_b, blob_a]).map_err(|errors| {
            errors
                .into_iter()
                .next()
                .unwrap_or_else(|| c.fail("no error"))
        }),
        "unwrap_first with A's key of B's blob, then A's",
    );
    Outcome::Passed(String::new())
}

/// `P`'s encrypted key with its password opens `P`'s blob.
pub fn right_password<F: Fixture>(f: &F) -> Outcome {
    let p = match skipped(f.passwords()) {
        Ok(p) => p,
        Err(skip) => return skip,
    };
    let c = Ctx::new(f.wrapper(), "right_password");
    let blob = c.wrap(&p.encrypt, "P");
    c.opens(&p.right, &blob, "P's key with its password");
    Outcome::Passed(String::new())
}

/// `P`'s encrypted key without a password is [`Error::MissingPassword`].
pub fn missing_password<F: Fixture>(f: &F) -> Outcome {
    let p = match skipped(f.passwords()) {
        Ok(p) => p,
        Err(skip) => return skip,
    };
    let c = Ctx::new(f.wrapper(), "missing_password");
    let blob = c.wrap(&p.encrypt, "P");
    c.ensure(
        c.w.has_possible_keys(&p.missing),
        "has_possible_keys is false for a key without its password",
    );
    let e = c.refuses(
        &p.missing,
        &blob,
        "P's key without a password",
        "MissingPassword",
        |e| matches!(e, Error::MissingPassword { .. }),
    );
    c.ensure(e.is_password_error(), "is_password_error() is false");
    Outcome::Passed(String::new())
}

/// `P`'s encrypted key with a wrong password is [`Error::WrongPassword`].
pub fn wrong_password<F: Fixture>(f: &F) -> Outcome {
    let p = match skipped(f.passwords()) {
        Ok(p) => p,
        Err(skip) => return skip,
    };
    let c = Ctx::new(f.wrapper(), "wrong_password");
    let blob = c.wrap(&p.encrypt, "P");
    let e = c.refuses(
        &p.wrong,
        &blob,
        "P's key with a wrong password",
        "WrongPassword",
        |e| matches!(e, Error::WrongPassword { .. }),
    );
    c.ensure(e.is_password_error(), "is_password_error() is false");
    Outcome::Passed(String::new())
}

/// A password error stops the search: within one blob, a key without (or with a wrong)
/// password before the same key with its password is the password error; across blobs,
/// `unwrap_first` stops at the first password error. A key that opens the blob, given
/// first, still wins.
pub fn password_stops_search<F: Fixture>(f: &F) -> Outcome {
    let p = match skipped(f.passwords()) {
        Ok(p) => p,
        Err(skip) => return skip,
    };
    let c = Ctx::new(f.wrapper(), "password_stops_search");
    let blob = c.wrap(&p.encrypt, "P");
    c.refuses(
        &merged(&p.missing, &p.right),
        &blob,
        "P's key without a password, then with it",
        "MissingPassword",
        |e| matches!(e, Error::MissingPassword { .. }),
    );
    c.refuses(
        &merged(&p.wrong, &p.right),
        &blob,
        "P's key with a wrong password, then the right one",
        "WrongPassword",
        |e| matches!(e, Error::WrongPassword { .. }),
    );
    c.expect_opts(
        c.w.unwrap_key(&merged(&p.right, &p.missing), &blob),
        "P's key with its password, then without",
    );
    let three = vec![blob.clone(), blob.clone(), blob.clone()];
    c.first_fails(
        &p.missing,
        &three,
        "unwrap_first of three blobs without the password",
        &[("MissingPassword", &is_password_error)],
    );
    c.first_fails(
        &p.missing,
        &[GARBAGE.to_vec(), blob.clone(), blob],
        "unwrap_first of garbage and two blobs without the password",
        &[
            ("not a password error", &not_password_error),
            ("MissingPassword", &is_password_error),
        ],
    );
    Outcome::Passed(String::new())
}

fn assert_send_sync<T: Send + Sync>() {}

/// The wrapper is `Send + Sync` (checked at compile time) and wraps and unwraps from two
/// threads at once.
pub fn send_sync<F: Fixture>(f: &F) -> Outcome {
    assert_send_sync::<F::Wrapper>();
    let c = Ctx::new(f.wrapper(), "send_sync");
    let ec = f.encrypt_for(&[Recipient::A]);
    let dc = f.decrypt_with(Recipient::A);
    let blob = c.wrap(&ec, "A");
    std::thread::scope(|s| {
        for t in 0..2 {
            let (c, ec, dc, blob) = (&c, &ec, &dc, &blob);
            s.spawn(move || {
                for round in 0..2 {
                    let own = c.wrap(ec, &format!("A in thread {t}, round {round}"));
                    c.opens(dc, &own, &format!("thread {t}, round {round}, own blob"));
                    c.opens(dc, blob, &format!("thread {t}, round {round}, shared blob"));
                }
            });
        }
    });
    Outcome::Passed("2 threads".to_owned())
}

/// `unwrap_first` goes past blobs it cannot open (garbage, truncated) to one it can; with
/// no blob it fails with no error; when none opens, it gives one error per blob, in order.
pub fn unwrap_first<F: Fixture>(f: &F) -> Outcome {
    let c = Ctx::new(f.wrapper(), "unwrap_first");
    let wrong = f.wrong_key();
    let blob = c.wrap(&f.encrypt_for(&[Recipient::A]), "A");
    let dc = f.decrypt_with(Recipient::A);
    let truncated = blob.get(..blob.len() / 2).unwrap_or_default().to_vec();
    match c
        .w
        .unwrap_first(&dc, &[GARBAGE.to_vec(), truncated, blob.clone()])
    {
        Ok(opts) => c.expect_opts(Ok(opts), "garbage, truncated, then A's blob"),
        Err(errors) => c.fail(format_args!(
            "garbage, truncated, then A's blob: failed with {:?}",
            errors.iter().map(kind).collect::<Vec<_>>()
        )),
    }
    c.first_fails(&dc, &[], "no blobs", &[]);
    c.first_fails(
        &f.decrypt_unrelated(),
        &[GARBAGE.to_vec(), blob],
        "unrelated key, garbage then A's blob",
        &[
            ("not a password error", &not_password_error),
            (wrong.name(), &|e: &Error| wrong.matches(e)),
        ],
    );
    Outcome::Passed(String::new())
}

#[cfg(test)]
mod tests {
    //! The suite against a toy scheme that conforms, and against broken variants of it:
    //! each break must fail the check that is about it.

    use super::*;
    use crate::KeyFile;

    /// A toy scheme: blob = the key byte XOR'd away, the payload XOR'd with the key, and a
    /// checksum. `break_` makes it misbehave in one way.
    #[derive(Debug, Default)]
    struct Toy {
        break_: Option<Break>,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Break {
        /// Returns the payload without checking the checksum.
        NoChecksum,
        /// Reports a wrong key as a malformed blob.
        WrongKeyIsMalformed,
        /// Wraps an empty blob when it has no recipients.
        WrapsForNobody,
        /// Panics on an empty blob.
        PanicsOnEmpty,
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter()
            .fold(0x5a_u8, |s, x| s.wrapping_mul(31).wrapping_add(*x))
    }

    impl KeyWrapper for Toy {
        fn scheme(&self) -> &str {
            "toy"
        }

        fn wrap_keys(&self, ec: &EncryptConfig, opts: &[u8]) -> Result<Option<Vec<u8>>, Error> {
            let Some(k) = ec.jwe_public_keys.first().and_then(|k| k.first()) else {
                return Ok((self.break_ == Some(Break::WrapsForNobody)).then(Vec::new));
            };
            let mut b: Vec<u8> = [0].iter().chain(opts).map(|x| x ^ k).collect();
            b.push(sum(&b));
            Ok(Some(b))
        }

        fn unwrap_key(&self, dc: &DecryptConfig, blob: &[u8]) -> Result<SecretBytes, Error> {
            if blob.is_empty() && self.break_ == Some(Break::PanicsOnEmpty) {
                panic!("empty");
            }
            let Some((check, body)) = blob.split_last() else {
                return Err(Error::malformed("toy", "empty"));
            };
            if self.break_ != Some(Break::NoChecksum) && (sum(body) != *check || body.len() < 2) {
                return Err(Error::malformed("toy", "checksum"));
            }
            for key in &dc.private_keys {
                let Some(k) = key.data().expose().first() else {
                    continue;
                };
                if body.first() == Some(k) {
                    return Ok(SecretBytes::new(
                        body.iter().skip(1).map(|x| x ^ k).collect(),
                    ));
                }
            }
            if self.break_ == Some(Break::WrongKeyIsMalformed) {
                return Err(Error::malformed("toy", "no key"));
            }
            Err(Error::NoMatchingKey {
                scheme: "toy".into(),
                causes: vec![],
            })
        }

        fn has_possible_keys(&self, dc: &DecryptConfig) -> bool {
            !dc.private_keys.is_empty()
        }

        fn has_recipients(&self, ec: &EncryptConfig) -> bool {
            !ec.jwe_public_keys.is_empty()
        }
    }

    struct ToyFixture(Toy);

    impl Fixture for ToyFixture {
        type Wrapper = Toy;

        fn wrapper(&self) -> &Toy {
            &self.0
        }

        fn encrypt_for(&self, recipients: &[Recipient]) -> EncryptConfig {
            let [r] = recipients else {
                panic!("one recipient per blob: {recipients:?}");
            };
            let k = if *r == Recipient::A { 1 } else { 2 };
            EncryptConfig::default().with_jwe_public_keys(vec![vec![k]])
        }

        fn decrypt_with(&self, recipient: Recipient) -> DecryptConfig {
            let k = if recipient == Recipient::A { 1 } else { 2 };
            DecryptConfig::default().with_private_keys(vec![KeyFile::new(vec![k])])
        }

        fn decrypt_unrelated(&self) -> DecryptConfig {
            DecryptConfig::default().with_private_keys(vec![KeyFile::new(vec![3])])
        }

        fn many_recipients(&self) -> Capability<()> {
            Capability::Unsupported("one key per blob")
        }

        fn passwords(&self) -> Capability<Passwords> {
            Capability::Unsupported("no passwords")
        }
    }

    fn broken(b: Break) -> ToyFixture {
        ToyFixture(Toy { break_: Some(b) })
    }

    fn panics(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let payload = catch_unwind(f).expect_err("the check passed");
        payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn a_conforming_scheme_passes_and_the_report_says_what_ran() {
        let report = run_all(&ToyFixture(Toy::default()));
        assert_eq!(report.scheme(), "toy");
        assert_eq!(
            report.skipped(),
            [
                "many_recipients",
                "right_password",
                "missing_password",
                "wrong_password",
                "password_stops_search"
            ]
        );
        assert_eq!(report.passed().len(), 8);
        let shown = report.to_string();
        assert!(
            shown.contains("SKIPPED  many_recipients: one key per blob"),
            "{shown}"
        );
        assert!(
            shown.contains("passed   wrong_key (NoMatchingKey)"),
            "{shown}"
        );
    }

    #[test]
    fn each_break_fails_its_check() {
        let msg = panics(|| {
            corrupted_blob(&broken(Break::NoChecksum));
        });
        assert!(
            msg.contains("`corrupted_blob`") && msg.contains("other bytes"),
            "{msg}"
        );
        let msg = panics(|| {
            wrong_key(&broken(Break::WrongKeyIsMalformed));
        });
        assert!(
            msg.contains("expected NoMatchingKey, got MalformedBlob"),
            "{msg}"
        );
        let msg = panics(|| {
            no_recipients(&broken(Break::WrapsForNobody));
        });
        assert!(msg.contains("wrap_keys made a blob"), "{msg}");
        let msg = panics(|| {
            corrupted_blob(&broken(Break::PanicsOnEmpty));
        });
        assert!(msg.contains("panicked on the blob empty"), "{msg}");
    }

    #[test]
    fn merged_configs_keep_order_and_join_provider_arguments() {
        let a = DecryptConfig::default()
            .with_private_keys(vec![KeyFile::new(vec![1])])
            .with_key_providers([("kms".to_owned(), vec![b"a".to_vec()])].into())
            .with_pkcs11_config(Some(b"first".to_vec()));
        let b = DecryptConfig::default()
            .with_private_keys(vec![KeyFile::new(vec![2])])
            .with_key_providers([("kms".to_owned(), vec![b"b".to_vec()])].into())
            .with_pkcs11_config(Some(b"second".to_vec()));
        let m = merged(&a, &b);
        let keys: Vec<_> = m
            .private_keys
            .iter()
            .map(|k| k.data().expose()[0])
            .collect();
        assert_eq!(keys, [1, 2]);
        assert_eq!(m.key_providers["kms"], [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(m.pkcs11_config.as_deref(), Some(&b"first"[..]));
    }

    #[test]
    fn corruptions_are_distinct_from_the_blob() {
        let blob: Vec<u8> = (0..200u8).collect();
        let bad = corruptions(&blob);
        assert!(bad.iter().all(|(_, b)| *b != blob));
        assert!(bad.len() > 64);
    }
}
