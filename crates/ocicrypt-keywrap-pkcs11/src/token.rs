//! Using a key on a PKCS#11 token through `cryptoki`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::config::Pkcs11Config;
use crate::keyfile::Pkcs11KeyFile;
use crate::{Failure, OaepHash};

/// Serializes every use of a PKCS#11 module by this crate, and every change this crate
/// makes to the process environment. See the crate documentation.
static TOKEN_LOCK: Mutex<()> = Mutex::new(());

#[cfg(test)]
thread_local! {
    /// How many sessions this thread has opened (tests count the logins with it).
    pub(crate) static SESSIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Which half of the key pair the operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyClass {
    /// `CKO_PUBLIC_KEY`, for encryption; a PIN is used if given.
    Public,
    /// `CKO_PRIVATE_KEY`, for decryption; a PIN is required.
    Private,
}

/// The `CKM_RSA_PKCS_OAEP` mechanism with an empty label and MGF1 with the same hash.
pub(crate) fn oaep_mechanism(hash: OaepHash) -> Mechanism<'static> {
    let (h, mgf) = match hash {
        OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
        OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
    };
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(h, mgf, PkcsOaepSource::empty()))
}

/// Finds the key a key file names and runs `op` with it, in a logged-in session: resolves
/// the module under `policy`, takes [`TOKEN_LOCK`], puts the key file's environment in
/// place, loads and initializes the module, picks the slot, logs in, finds exactly one
/// object, runs `op`, then logs out, closes the session, finalizes the module (if this
/// call initialized it) and restores the environment.
pub(crate) fn with_key<T>(
    key: &Pkcs11KeyFile,
    policy: Option<&Pkcs11Config>,
    class: KeyClass,
    op: impl FnOnce(&Session, ObjectHandle) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let uri = key.uri();
    let policy = policy.ok_or_else(|| {
        Failure::new(
            "no PKCS#11 module policy: set the pkcs11 config (e.g. from \
             Pkcs11Config::from_user_config())",
        )
    })?;
    let module = policy.find_module(uri).map_err(Failure::new)?;
    let pin = pin(uri)?;
    if class == KeyClass::Private && pin.is_none() {
        return Err(Failure::new("missing PIN for private key operation"));
    }
    let slot_id = match uri.slot_id() {
        Some(id) if id > u64::from(u32::MAX) => {
            return Err(Failure::new("slot-id is larger than 32 bits"));
        }
        other => other,
    };
    let label = uri.object().filter(|l| !l.is_empty());
    let id = uri.id().filter(|i| !i.is_empty());
    if label.is_none() && id.is_none() {
        return Err(Failure::new(
            "neither 'id' nor 'object' attribute found in the pkcs11 URI",
        ));
    }
    let token = uri.token();
    if slot_id.is_none() && token.is_none() {
        return Err(Failure::new(
            "missing 'token' attribute since 'slot-id' was not given",
        ));
    }

    let _lock = TOKEN_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let _env = EnvGuard::set(key.module_env());
    let ctx = Pkcs11::new(&module)
        .map_err(|e| Failure::new(format!("could not load module '{}': {e}", module.display())))?;
    let initialized_here =
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => true,
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
            Err(e) => return Err(ck("C_Initialize failed", &e)),
        };
    let result = (|| {
        let session = open_session(&ctx, slot_id, token, pin.as_ref())?;
        #[cfg(test)]
        SESSIONS.with(|n| n.set(n.get() + 1));
        let result = find_object(&session, class, label, id).and_then(|obj| op(&session, obj));
        if pin.is_some() {
            let _ = session.logout();
        }
        drop(session);
        result
    })();
    if initialized_here {
        let _ = ctx.finalize();
    }
    result
}

fn ck(context: &str, e: &CkError) -> Failure {
    Failure::new(format!("{context}: {}", short_error(e)))
}

/// A cryptoki error in a few words: the `CKR_` value's name for token errors
/// (`PinIncorrect`, `ArgumentsBad`, ...).
pub(crate) fn short_error(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, _) => format!("{rv:?}"),
        other => other.to_string(),
    }
}

fn open_session(
    ctx: &Pkcs11,
    slot_id: Option<u64>,
    token: Option<&[u8]>,
    pin: Option<&SecretString>,
) -> Result<Session, Failure> {
    let login = |slot: Slot| -> Result<Session, Failure> {
        let session = ctx.open_rw_session(slot).map_err(|e| {
            ck(
                &format!("could not open a session to slot {}", slot.id()),
                &e,
            )
        })?;
        if let Some(pin) = pin {
            match session.login(UserType::User, Some(pin)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => return Err(ck("could not log in to the token", &e)),
            }
        }
        Ok(session)
    };
    if let Some(id) = slot_id {
        let slot = Slot::try_from(id).map_err(|e| ck("invalid slot-id", &e))?;
        return login(slot);
    }
    let token = token.unwrap_or_default();
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| ck("C_GetSlotList failed", &e))?;
    let mut last_error = None;
    for slot in slots {
        match ctx.get_token_info(slot) {
            Ok(info) if info.label().as_bytes() == token => {}
            _ => continue,
        }
        match login(slot) {
            Ok(session) => return Ok(session),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        Failure::new(format!(
            "no token labelled '{}' found",
            String::from_utf8_lossy(token)
        ))
    }))
}

fn find_object(
    session: &Session,
    class: KeyClass,
    label: Option<&[u8]>,
    id: Option<&[u8]>,
) -> Result<ObjectHandle, Failure> {
    let mut template = vec![Attribute::Class(match class {
        KeyClass::Public => ObjectClass::PUBLIC_KEY,
        KeyClass::Private => ObjectClass::PRIVATE_KEY,
    })];
    let mut what = Vec::new();
    if let Some(label) = label {
        template.push(Attribute::Label(label.to_vec()));
        what.push(format!(
            "label '{}'",
            String::from_utf8_lossy(label).escape_default()
        ));
    }
    if let Some(id) = id {
        template.push(Attribute::Id(id.to_vec()));
        what.push(format!(
            "id '{}'",
            id.iter().map(|b| format!("%{b:02X}")).collect::<String>()
        ));
    }
    let what = what.join(" and ");
    let kind = match class {
        KeyClass::Public => "public",
        KeyClass::Private => "private",
    };
    let found = session
        .find_objects(&template)
        .map_err(|e| ck("C_FindObjects failed", &e))?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Failure::new(format!(
            "could not find any {kind} key with {what}"
        ))),
        many => Err(Failure::new(format!(
            "there are too many (={}) {kind} keys with {what}",
            many.len()
        ))),
    }
}

/// The PIN from `pin-value`, or read from the `pin-source` file (one trailing newline is
/// dropped: a deviation from Go, which uses the file's bytes as they are).
fn pin(uri: &crate::Pkcs11Uri) -> Result<Option<SecretString>, Failure> {
    if let Some(pin) = uri.pin_value() {
        return Ok(Some(pin.clone()));
    }
    let Some(source) = uri.pin_source() else {
        return Ok(None);
    };
    let path = if let Some(rest) = source.strip_prefix("file:") {
        match rest.strip_prefix("//") {
            Some(authority_and_path) => {
                let (host, path) = authority_and_path.split_at(
                    authority_and_path
                        .find('/')
                        .unwrap_or(authority_and_path.len()),
                );
                if !host.is_empty() && host != "localhost" {
                    return Err(Failure::new(format!(
                        "pin-source '{source}': only local files are supported"
                    )));
                }
                path
            }
            None => rest,
        }
    } else if source.starts_with('|') {
        return Err(Failure::new(format!(
            "pin-source '{source}': running a command for the PIN is not supported"
        )));
    } else {
        source
    };
    if !Path::new(path).is_absolute() {
        return Err(Failure::new(format!(
            "pin-source '{source}': the PIN file path is not absolute"
        )));
    }
    let mut data = Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| Failure::new(format!("could not read the PIN file '{path}': {e}")))?,
    );
    if data.last() == Some(&b'\n') {
        data.pop();
        if data.last() == Some(&b'\r') {
            data.pop();
        }
    }
    let pin = String::from_utf8(data.to_vec()).map_err(|e| {
        let mut bytes = e.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
        Failure::new(format!("the PIN in '{path}' is not UTF-8"))
    })?;
    Ok(Some(SecretString::from(pin)))
}

/// Puts a key file's `module.env` into the process environment and restores the previous
/// values when dropped. Only create it while holding [`TOKEN_LOCK`].
struct EnvGuard {
    saved: Vec<(String, Option<OsString>)>,
}

impl EnvGuard {
    fn set(env: &BTreeMap<String, String>) -> Self {
        let mut saved = Vec::new();
        for (name, value) in env {
            let old = std::env::var_os(name);
            if old.as_deref() != Some(OsStr::new(value)) {
                set_process_env(name, Some(OsStr::new(value)));
                saved.push((name.clone(), old));
            }
        }
        Self { saved }
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (name, old) in self.saved.drain(..).rev() {
            set_process_env(&name, old.as_deref());
        }
    }
}

/// Puts the `module.env` variables of these PKCS#11 key files into the process environment
/// for good, so that later token operations find them set and never change the environment
/// themselves. Call it once at start-up, before other threads exist (the `ocicrypt`
/// command does, before its worker threads start): that is the one moment when changing the
/// environment cannot race with a reader in another thread. Data that is not a key file is
/// skipped (the operations report it later). Returns how many variables were set.
pub fn export_module_env<'a>(key_files: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let _lock = TOKEN_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let mut set = 0;
    for data in key_files {
        let Ok(key) = Pkcs11KeyFile::parse(data) else {
            continue;
        };
        for (name, value) in key.module_env() {
            if std::env::var_os(name).as_deref() != Some(OsStr::new(value)) {
                set_process_env(name, Some(OsStr::new(value)));
                set += 1;
            }
        }
    }
    set
}

/// Sets (or, with `None`, removes) one variable of the process environment.
///
/// This is the crate's only `unsafe` code. `std::env::set_var` is `unsafe` (Rust 2024)
/// because another thread may read the environment at the same moment without Rust's
/// environment lock (C code calling `getenv`, such as a PKCS#11 module, OpenSSL or libc),
/// which is a data race. Go ocicrypt does the same under a Go mutex and has the same
/// exposure. What this crate guarantees:
/// - it is only called while [`TOKEN_LOCK`] is held, so this crate's own module calls (the
///   C code that reads these variables) never run concurrently with a change;
/// - names are non-empty and contain neither `=` nor NUL, values no NUL (checked when the
///   key file is parsed), so `set_var` does not panic;
/// - it is only reached when a key file has a non-empty `module.env` whose values differ
///   from the current environment; [`export_module_env`] at start-up makes that never
///   happen later.
///
/// What the application must guarantee when it uses key files with `module.env`: no other
/// thread reads the environment through C at that time (in practice: do not run such
/// PKCS#11 operations concurrently with unrelated C code that calls `getenv`), or set the
/// variables once at start-up instead and leave `module.env` out.
#[allow(unsafe_code)] // See the documentation above: the one audited place.
fn set_process_env(name: &str, value: Option<&OsStr>) {
    // SAFETY: see the function documentation: writes are serialized by TOKEN_LOCK, the
    // inputs are validated, and the remaining requirement (no unsynchronized C readers in
    // other threads) is documented for callers who opt in through `module.env`.
    unsafe {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
}
