//! Unwrapping: decrypting a message with the given secret keys.

use std::io::Read;

use ocicrypt_keywrap::secrecy::ExposeSecret;
use ocicrypt_keywrap::{Cause, CauseKind, Error, KeyFile, SecretBytes};
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

use crate::{MAX_PLAINTEXT_LEN, SCHEME, keys, malformed, parse_pkesks};

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
}

struct Helper<'a> {
    certs: &'a [Cert],
    password: Option<Password>,
    state: &'a mut State,
    /// The secret keys met so far, by fingerprint, each unlocked (its passphrase derived)
    /// at most once: `None` for one that could not be unlocked or used.
    keypairs: Vec<(Fingerprint, KeyHandle, Option<KeyPair>)>,
}

impl Helper<'_> {
    /// Makes sure every secret key that a PKESK in `pkesks` names (every secret key, if a
    /// PKESK is anonymous) is in `keypairs`, unlocking it if it is protected.
    ///
    /// A passphrase derivation (an iterated and salted S2K) is expensive, and the PKESKs
    /// are attacker input: 200 junk PKESKs naming a protected key took 21 s when the key was
    /// unlocked once per PKESK. Now it is once per key.
    fn unlock(&mut self, pkesks: &[PKESK]) {
        let anonymous = pkesks.iter().any(|p| p.recipient().is_none());
        for cert in self.certs {
            for ka in cert.keys().secret() {
                let key = ka.key();
                let fingerprint = key.fingerprint();
                if self.keypairs.iter().any(|(f, ..)| *f == fingerprint) {
                    continue;
                }
                let handle = key.key_handle();
                let named = anonymous
                    || pkesks
                        .iter()
                        .any(|p| p.recipient().is_some_and(|r| r.aliases(&handle)));
                if !named {
                    continue;
                }
                let keypair = self.keypair(key.clone(), &handle);
                self.keypairs.push((fingerprint, handle, keypair));
            }
        }
    }

    /// `key` as a key pair, unlocked with the passphrase if it is protected; `None`, with
    /// a note (and a password problem) saying why, if that cannot be done.
    fn keypair<R>(&mut self, key: Key<SecretParts, R>, handle: &KeyHandle) -> Option<KeyPair>
    where
        R: key::KeyRole,
    {
        let key = if key.secret().is_encrypted() {
            let Some(password) = &self.password else {
                self.state.password.get_or_insert(PasswordProblem::Missing);
                self.state
                    .notes
                    .push(format!("secret key {handle} is protected by a passphrase"));
                return None;
            };
            #[cfg(test)]
            UNLOCKS.with(|n| n.set(n.get() + 1));
            match key.decrypt_secret(password) {
                Ok(key) => key,
                Err(e) => {
                    self.state.password = Some(PasswordProblem::Wrong);
                    self.state
                        .notes
                        .push(format!("cannot unlock secret key {handle}: {e}"));
                    return None;
                }
            }
        } else {
            key
        };
        match key.into_keypair() {
            Ok(pair) => Some(pair),
            Err(e) => {
                self.state
                    .notes
                    .push(format!("cannot use secret key {handle}: {e}"));
                None
            }
        }
    }
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
        self.unlock(pkesks);
        for pkesk in pkesks {
            let recipient = pkesk.recipient();
            for (_, handle, keypair) in &mut self.keypairs {
                if recipient.as_ref().is_some_and(|r| !r.aliases(&*handle)) {
                    continue;
                }
                let Some(keypair) = keypair else {
                    continue;
                };
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

/// Tries each key file in turn, and stops at the first that opens the blob or has a
/// password problem ([`Error::MissingPassword`], [`Error::WrongPassword`]): the contract of
/// [`ocicrypt_keywrap::KeyWrapper`], which the jwe and pkcs7 schemes keep too.
pub(crate) fn unwrap(keys: &[KeyFile], blob: &[u8]) -> Result<SecretBytes, Error> {
    let fixed = crate::compat::normalize(blob);
    let blob = fixed.as_deref().unwrap_or(blob);
    let pkesks = parse_pkesks(blob)?;
    if pkesks.is_empty() {
        return Err(malformed("no public-key encrypted session key packet"));
    }
    let mut causes = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match try_key(key, blob) {
            Ok(opts) => return Ok(opts),
            Err(Attempt::NoKey(kind)) => {
                causes.push(Cause::new(kind).key(format!("key {}", key.label(i + 1))));
            }
            Err(Attempt::Password(problem)) => return Err(problem.error()),
            Err(Attempt::Malformed(e)) => return Err(e),
        }
    }
    if keys.is_empty() {
        causes.push(Cause::new(CauseKind::NoKey(
            "no OpenPGP secret key given".to_owned(),
        )));
    }
    Err(Error::NoMatchingKey {
        scheme: SCHEME.to_owned(),
        causes,
    })
}

fn try_key(key: &KeyFile, blob: &[u8]) -> Result<SecretBytes, Attempt> {
    let certs = keys::parse_certs(key.data().expose()).map_err(|e| {
        Attempt::NoKey(CauseKind::Unreadable(Box::new(Error::InvalidPrivateKey {
            scheme: SCHEME.to_owned(),
            reason: "not an OpenPGP secret key".to_owned(),
            source: Some(e.into()),
        })))
    })?;
    let certs: Vec<Cert> = certs.into_iter().filter(Cert::is_tsk).collect();
    if certs.is_empty() {
        return Err(Attempt::NoKey(CauseKind::Unsuitable(
            "no secret key material (a public key?)".to_owned(),
        )));
    }
    let mut state = State::default();
    let helper = Helper {
        certs: &certs,
        password: key.password().map(|p| Password::from(p.expose_secret())),
        state: &mut state,
        keypairs: Vec::new(),
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
            None => Err(no_key(e, state)),
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
        state.notes.join("; ")
    };
    Attempt::NoKey(CauseKind::NotARecipient(reason))
}
