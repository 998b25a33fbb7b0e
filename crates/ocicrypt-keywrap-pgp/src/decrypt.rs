//! Unwrapping: decrypting a message with the given secret keys.

use std::io::Read;

use ocicrypt_keywrap::secrecy::ExposeSecret;
use ocicrypt_keywrap::{Error, PrivateKey, SecretBytes};
use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::crypto::{Password, SessionKey};
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::types::SymmetricAlgorithm;

use crate::{SCHEME, keys, malformed, parse_pkesks};

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
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<Cert>> {
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
        for pkesk in pkesks {
            let recipient = pkesk.recipient();
            for cert in self.certs {
                for ka in cert.keys().secret() {
                    let mut key = ka.key().clone();
                    let handle = key.key_handle();
                    if recipient.as_ref().is_some_and(|r| !r.aliases(&handle)) {
                        continue;
                    }
                    if key.secret().is_encrypted() {
                        let Some(password) = &self.password else {
                            self.state.password.get_or_insert(PasswordProblem::Missing);
                            self.state
                                .notes
                                .push(format!("secret key {handle} is protected by a passphrase"));
                            continue;
                        };
                        match key.decrypt_secret(password) {
                            Ok(k) => key = k,
                            Err(e) => {
                                self.state.password = Some(PasswordProblem::Wrong);
                                self.state
                                    .notes
                                    .push(format!("cannot unlock secret key {handle}: {e}"));
                                continue;
                            }
                        }
                    }
                    let mut keypair = match key.into_keypair() {
                        Ok(k) => k,
                        Err(e) => {
                            self.state
                                .notes
                                .push(format!("cannot use secret key {handle}: {e}"));
                            continue;
                        }
                    };
                    match pkesk.decrypt(&mut keypair, sym_algo) {
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
        }
        Err(openpgp::Error::MissingSessionKey("no key fits".into()).into())
    }
}

/// Why one key file did not open the blob.
enum Failure {
    /// Not a usable key, or no key of it fits; the reason is a `causes` line.
    NoKey(String),
    /// A fitting key is locked by a passphrase that is missing or wrong.
    Password(PasswordProblem, String),
    /// A key fitted, but the message is damaged: no other key will do better.
    Malformed(Error),
}

/// Tries each key file in turn. A password problem is reported only if no key file opens
/// the blob (the first such problem wins over [`Error::NoMatchingKey`]).
pub(crate) fn unwrap(keys: &[PrivateKey], blob: &[u8]) -> Result<SecretBytes, Error> {
    let fixed = crate::compat::normalize(blob);
    let blob = fixed.as_deref().unwrap_or(blob);
    let pkesks = parse_pkesks(blob)?;
    if pkesks.is_empty() {
        return Err(malformed("no public-key encrypted session key packet"));
    }
    let mut causes = Vec::new();
    let mut password = None;
    for (i, key) in keys.iter().enumerate() {
        match try_key(key, blob) {
            Ok(opts) => return Ok(opts),
            Err(Failure::NoKey(reason)) => causes.push(format!("key {}: {reason}", i + 1)),
            Err(Failure::Password(problem, reason)) => {
                password.get_or_insert(problem);
                causes.push(format!("key {}: {reason}", i + 1));
            }
            Err(Failure::Malformed(e)) => return Err(e),
        }
    }
    if keys.is_empty() {
        causes.push("no OpenPGP secret key given".to_owned());
    }
    match password {
        Some(problem) => Err(problem.error()),
        None => Err(Error::NoMatchingKey {
            scheme: SCHEME.to_owned(),
            causes,
        }),
    }
}

fn try_key(key: &PrivateKey, blob: &[u8]) -> Result<SecretBytes, Failure> {
    let certs = keys::parse_certs(key.data().expose())
        .map_err(|e| Failure::NoKey(format!("not an OpenPGP secret key: {e}")))?;
    let certs: Vec<Cert> = certs.into_iter().filter(Cert::is_tsk).collect();
    if certs.is_empty() {
        return Err(Failure::NoKey(
            "no secret key material (a public key?)".to_owned(),
        ));
    }
    let mut state = State::default();
    let helper = Helper {
        certs: &certs,
        password: key.password().map(|p| Password::from(p.expose_secret())),
        state: &mut state,
    };
    let policy = keys::policy();
    let result = DecryptorBuilder::from_bytes(blob)
        .and_then(|b| b.with_policy(&policy, None, helper))
        .and_then(|mut d| {
            // Sized for the usual case so that no copy of the plaintext is left behind by
            // reallocation; zeroized (as SecretBytes) whether reading succeeds or not.
            let mut out = Vec::with_capacity(blob.len());
            match d.read_to_end(&mut out) {
                Ok(_) => Ok(SecretBytes::new(out)),
                Err(e) => {
                    let _ = SecretBytes::new(out);
                    Err(e.into())
                }
            }
        });
    match result {
        Ok(opts) => Ok(opts),
        Err(e) => match state.session_key.take() {
            Some((algo, sk)) => match crate::compat::read_go_message(blob, algo, &sk) {
                Some(opts) => Ok(opts),
                None => Err(Failure::Malformed(malformed(e))),
            },
            None => Err(no_key(e, state)),
        },
    }
}

/// Why a key file failed when no session key was found.
fn no_key(e: openpgp::anyhow::Error, state: State) -> Failure {
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
    match state.password {
        Some(p) => Failure::Password(p, reason),
        None => Failure::NoKey(reason),
    }
}
