//! Unwrapping: decrypting a message with the given secret keys.

use std::io::Read;

use ocicrypt_keywrap::secrecy::ExposeSecret;
use ocicrypt_keywrap::{Budget, Cause, CauseKind, Error, KeyFile, KeySearch, Loaded, SecretBytes};
use sequoia_openpgp as openpgp;

use openpgp::crypto::{KeyPair, Password, SessionKey};
use openpgp::packet::key::{self, SecretParts};
use openpgp::packet::{Key, PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, Fingerprint, KeyHandle};

use crate::{MAX_PLAINTEXT_LEN, MAX_UNWRAP_ATTEMPTS, SCHEME, keys, malformed, parse_pkesks};

#[cfg(test)]
thread_local! {
    /// How often this thread has tried to unlock a protected secret key (tests count the
    /// passphrase derivations with it).
    pub(crate) static UNLOCKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A password problem met while trying a secret key that a PKESK names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PasswordProblem {
    Missing,
    Wrong,
}

impl PasswordProblem {
    fn error(self) -> Error {
        let scheme = SCHEME.to_owned();
        match self {
            Self::Missing => Error::MissingPassword { scheme },
            Self::Wrong => Error::WrongPassword { scheme },
        }
    }
}

/// What happened while one key file was tried.
#[derive(Debug, Default)]
struct State {
    /// The session key that was found and accepted: later failures are the message's fault
    /// (or Go's framing, see [`crate::compat::read_go_message`]).
    session_key: Option<(Option<SymmetricAlgorithm>, SessionKey)>,
    password: Option<PasswordProblem>,
    /// Why each candidate secret key failed.
    notes: Vec<String>,
    /// The operation's budget of [`MAX_UNWRAP_ATTEMPTS`] PKESK decryptions ran out: the
    /// budget's error.
    over_limit: Option<Error>,
}

/// Why a secret key cannot be used: the note for the causes, and the password problem if
/// that was it.
struct Unusable {
    note: String,
    password: Option<PasswordProblem>,
}

/// The secret keys of one key file, kept for all the blobs of an operation: each key is
/// unlocked (its passphrase derived) at most once, when a blob first names it.
pub(crate) struct SecretKeys {
    certs: Vec<Cert>,
    password: Option<Password>,
    /// The secret keys met so far, by fingerprint: unlocked, or why not.
    keypairs: Vec<(Fingerprint, KeyHandle, Result<KeyPair, Unusable>)>,
}

impl SecretKeys {
    /// Reads a key file: its certificates with secret key material, or why it is skipped.
    fn read(file: &KeyFile) -> Loaded<Self> {
        let certs = match keys::parse_certs(file.data().expose()) {
            Ok(certs) => certs,
            Err(e) => {
                return Loaded::Skip(CauseKind::Unreadable(Box::new(Error::InvalidPrivateKey {
                    scheme: SCHEME.to_owned(),
                    reason: "not an OpenPGP secret key".to_owned(),
                    source: Some(e.into()),
                })));
            }
        };
        let certs: Vec<Cert> = certs.into_iter().filter(Cert::is_tsk).collect();
        if certs.is_empty() {
            return Loaded::Skip(CauseKind::Unsuitable(
                "no secret key material (a public key?)".to_owned(),
            ));
        }
        Loaded::Key(Self {
            certs,
            password: file.password().map(|p| Password::from(p.expose_secret())),
            keypairs: Vec::new(),
        })
    }

    /// Makes sure every secret key that a PKESK in `pkesks` names (every secret key, if a
    /// PKESK is anonymous) is in `keypairs`, unlocking it if it is protected, and notes in
    /// `state` why each of them that cannot be used cannot.
    ///
    /// A passphrase derivation (an iterated and salted S2K) is expensive, and the PKESKs
    /// are attacker input: 200 junk PKESKs naming a protected key took 21 s when the key was
    /// unlocked once per PKESK. Now it is once per key and operation.
    fn unlock(&mut self, pkesks: &[PKESK], state: &mut State) {
        let anonymous = pkesks.iter().any(|p| p.recipient().is_none());
        for cert in &self.certs {
            for ka in cert.keys().secret() {
                let key = ka.key();
                let handle = key.key_handle();
                let named = anonymous
                    || pkesks
                        .iter()
                        .any(|p| p.recipient().is_some_and(|r| r.aliases(&handle)));
                if !named {
                    continue;
                }
                let fingerprint = key.fingerprint();
                let known = self.keypairs.iter().position(|(f, ..)| *f == fingerprint);
                let i = known.unwrap_or_else(|| {
                    let keypair = keypair(key.clone(), &handle, self.password.as_ref());
                    self.keypairs.push((fingerprint, handle, keypair));
                    self.keypairs.len() - 1
                });
                if let Some((.., Err(unusable))) = self.keypairs.get(i) {
                    state.notes.push(unusable.note.clone());
                    if let Some(p) = unusable.password {
                        state.password.get_or_insert(p);
                    }
                }
            }
        }
    }
}

/// `key` as a key pair, unlocked with `password` if it is protected; or why that cannot
/// be done.
fn keypair<R>(
    key: Key<SecretParts, R>,
    handle: &KeyHandle,
    password: Option<&Password>,
) -> Result<KeyPair, Unusable>
where
    R: key::KeyRole,
{
    let key = if key.secret().is_encrypted() {
        let Some(password) = password else {
            return Err(Unusable {
                note: format!("secret key {handle} is protected by a passphrase"),
                password: Some(PasswordProblem::Missing),
            });
        };
        #[cfg(test)]
        UNLOCKS.with(|n| n.set(n.get() + 1));
        key.decrypt_secret(password).map_err(|e| Unusable {
            note: format!("cannot unlock secret key {handle}: {e}"),
            password: Some(PasswordProblem::Wrong),
        })?
    } else {
        key
    };
    key.into_keypair().map_err(|e| Unusable {
        note: format!("cannot use secret key {handle}: {e}"),
        password: None,
    })
}

struct Helper<'a> {
    keys: &'a mut SecretKeys,
    state: &'a mut State,
    /// The PKESK decryptions this operation may still make (all blobs, all key files).
    budget: &'a mut Budget,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }

    fn check(&mut self, _structure: MessageStructure) -> openpgp::Result<()> {
        // Go ocicrypt neither writes nor checks signatures.
        Ok(())
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        // At most MAX_PKESKS of them: `unwrap` has counted them.
        self.keys.unlock(pkesks, self.state);
        for pkesk in pkesks {
            let recipient = pkesk.recipient();
            for (_, handle, keypair) in &mut self.keys.keypairs {
                if recipient.as_ref().is_some_and(|r| !r.aliases(&*handle)) {
                    continue;
                }
                let Ok(keypair) = keypair else {
                    continue;
                };
                if let Err(e) = self.budget.spend() {
                    self.state.over_limit = Some(e);
                    return Err(openpgp::Error::MissingSessionKey("over the limit".into()).into());
                }
                match pkesk.decrypt(keypair, sym_algo) {
                    Some((algo, sk)) if decrypt(algo, &sk) => {
                        self.state.session_key = Some((algo, sk));
                        return Ok(None);
                    }
                    Some(_) => self.state.notes.push(format!(
                        "the session key from secret key {handle} does not decrypt the message"
                    )),
                    None => self.state.notes.push(format!(
                        "secret key {handle} does not decrypt its session key"
                    )),
                }
            }
        }
        Err(openpgp::Error::MissingSessionKey("no key fits".into()).into())
    }
}

/// Why one key file did not open the blob.
enum Attempt {
    /// Not a usable key, or no key of it fits: a cause of [`Error::NoMatchingKey`].
    NoKey(CauseKind),
    /// A fitting key is locked by a passphrase that is missing or wrong.
    Password(PasswordProblem),
    /// A key fitted, but the message is damaged or over a limit: no other key will do
    /// better.
    Malformed(Error),
}

/// The key files of one operation, each read once, and each of their secret keys unlocked
/// once, when a blob first needs it.
pub(crate) fn key_search(files: &[KeyFile]) -> KeySearch<'_, SecretKeys> {
    KeySearch::of_files(SCHEME, "OpenPGP key", files, |file| {
        Ok(SecretKeys::read(file))
    })
    .limit(
        MAX_UNWRAP_ATTEMPTS,
        "key and PKESK pairs tried for one layer",
    )
}

/// Tries each key file in turn, and stops at the first that opens the blob or has a
/// password problem ([`Error::MissingPassword`], [`Error::WrongPassword`]): the contract of
/// [`ocicrypt_keywrap::KeyWrapper`], which every scheme keeps.
pub(crate) fn unwrap(
    keys: &mut KeySearch<'_, SecretKeys>,
    blob: &[u8],
) -> Result<SecretBytes, Error> {
    let fixed = crate::compat::normalize(blob);
    let blob = fixed.as_deref().unwrap_or(blob);
    let pkesks = parse_pkesks(blob)?;
    if pkesks.is_empty() {
        return Err(malformed("no public-key encrypted session key packet"));
    }
    keys.search(Vec::new(), |key, name, causes, budget| {
        match try_key(key, blob, budget) {
            Ok(opts) => Ok(Some(opts)),
            Err(Attempt::NoKey(kind)) => {
                causes.push(Cause::new(kind).key(name));
                Ok(None)
            }
            Err(Attempt::Password(problem)) => Err(problem.error()),
            Err(Attempt::Malformed(e)) => Err(e),
        }
    })
}

fn try_key(
    secret: &mut SecretKeys,
    blob: &[u8],
    budget: &mut Budget,
) -> Result<SecretBytes, Attempt> {
    let mut state = State::default();
    let helper = Helper {
        keys: secret,
        state: &mut state,
        budget,
    };
    let policy = keys::policy();
    let result = DecryptorBuilder::from_bytes(blob)
        // sequoia buffers this much plaintext (decompressed) before handing any out; its
        // default is 25 MiB.
        .map(|b| b.buffer_size(MAX_PLAINTEXT_LEN))
        .and_then(|b| b.with_policy(&policy, None, helper))
        .and_then(|d| Ok(read_capped(d)?));
    let too_long = || {
        Attempt::Malformed(Error::limit_exceeded(
            SCHEME,
            "bytes of decrypted data",
            MAX_PLAINTEXT_LEN,
        ))
    };
    match result {
        Ok(Some(opts)) => Ok(opts),
        Ok(None) => Err(too_long()),
        Err(e) => match state.session_key.take() {
            // Go's framing: a literal data packet without compression, so no longer than
            // the blob.
            Some((algo, sk)) => match crate::compat::read_go_message(blob, algo, &sk) {
                Some(opts) if opts.expose().len() > MAX_PLAINTEXT_LEN => Err(too_long()),
                Some(opts) => Ok(opts),
                None => Err(Attempt::Malformed(malformed(e))),
            },
            None => match state.over_limit.take() {
                Some(limit) => Err(Attempt::Malformed(limit)),
                None => Err(no_key(e, state)),
            },
        },
    }
}

/// The plaintext `reader` gives, or `None` if it is longer than [`MAX_PLAINTEXT_LEN`]
/// (then at most one byte more has been read, and nothing is kept).
fn read_capped(reader: impl Read) -> std::io::Result<Option<SecretBytes>> {
    let cap = MAX_PLAINTEXT_LEN.saturating_add(1);
    // Room for the most that is read, so that no reallocation leaves a copy of the
    // plaintext behind; zeroized (as SecretBytes) whatever happens.
    let mut out = Vec::with_capacity(cap);
    let read = reader
        .take(u64::try_from(cap).unwrap_or(u64::MAX))
        .read_to_end(&mut out);
    let out = SecretBytes::new(out);
    read?;
    Ok((out.expose().len() <= MAX_PLAINTEXT_LEN).then_some(out))
}

/// Why a key file failed when no session key was found.
fn no_key(e: openpgp::anyhow::Error, state: State) -> Attempt {
    if let Some(p) = state.password {
        return Attempt::Password(p);
    }
    let reason = if state.notes.is_empty() {
        match e.downcast_ref::<openpgp::Error>() {
            Some(openpgp::Error::MissingSessionKey(_)) => {
                "no secret key for any recipient of the message".to_owned()
            }
            _ => e.to_string(),
        }
    } else {
        summarize(&state.notes)
    };
    Attempt::NoKey(CauseKind::NotARecipient(reason))
}

/// The notes joined with `"; "`, each once, with how many times it came when more than
/// once: a message may have [`MAX_PKESKS`](crate::MAX_PKESKS) PKESKs that fail the same way.
fn summarize(notes: &[String]) -> String {
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for note in notes {
        match counted.iter_mut().find(|(n, _)| *n == note.as_str()) {
            Some((_, count)) => *count += 1,
            None => counted.push((note, 1)),
        }
    }
    counted
        .iter()
        .map(|(note, count)| match count {
            1 => (*note).to_owned(),
            n => format!("{note} ({n} times)"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
