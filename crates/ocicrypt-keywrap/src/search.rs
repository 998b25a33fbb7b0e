//! The key search every scheme runs to unwrap a blob: each key in turn, each read and
//! unlocked once per operation, one password policy, and a typed cause for each key that
//! did not open it.

use std::fmt;

use crate::{Cause, CauseKind, Error, KeyFile};

/// What reading one key gave (see [`KeySearch::new`]).
#[derive(Debug)]
pub enum Loaded<K> {
    /// A key this scheme can try.
    Key(K),
    /// Nothing this scheme can use (not a key, or a key of another kind): it is skipped,
    /// and this says why, as a cause of [`Error::NoMatchingKey`].
    Skip(CauseKind),
}

/// How many key operations (a key tried on a recipient: a private-key operation each) the
/// searches of one [`KeySearch`] may still make. The blobs are attacker input: a thousand
/// recipients in each of a thousand blobs would otherwise ask for a million.
#[derive(Debug)]
pub struct Budget {
    scheme: String,
    what: &'static str,
    limit: usize,
    spent: usize,
}

impl Budget {
    /// Counts one key operation.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] once more than the limit have been counted; returned from
    /// `try_key`, it stops the search (and [`unwrap_in_turn`](crate::unwrap_in_turn) stops
    /// at it too).
    pub fn spend(&mut self) -> Result<(), Error> {
        self.spent = self.spent.saturating_add(1);
        if self.spent > self.limit {
            return Err(Error::limit_exceeded(&self.scheme, self.what, self.limit));
        }
        Ok(())
    }

    /// How many key operations have been counted.
    pub fn spent(&self) -> usize {
        self.spent
    }
}

/// One key: not read yet, read, skipped (and why), or failed with an error that stops
/// the search.
enum Slot<K> {
    Unread,
    Key(K),
    Skipped(CauseKind),
    Failed(Error),
}

/// The loader of a [`KeySearch`]: reads key number `i` (from 0).
type Loader<'a, K> = Box<dyn FnMut(usize) -> Result<Loaded<K>, Error> + 'a>;

/// The keys of one unwrap operation (a layer's wrapped keys of one scheme) and the search
/// that tries them on each blob.
///
/// Each key is read (parsed and, if it is protected by a password, unlocked) at most
/// once, when a search first gets to it, and then kept for the other blobs of the
/// operation, so a key derivation is paid once per layer, not once per blob.
///
/// The policy is the one of [`KeyWrapper::unwrap_key`](crate::KeyWrapper::unwrap_key):
/// the keys are tried in order; a key that cannot be read or used, or does not open the
/// blob, becomes a [`Cause`] and the next key is tried; an error from reading a key (a
/// missing or wrong password) or from trying it (a blob over a limit) stops the search.
///
/// ```
/// use ocicrypt_keywrap::{CauseKind, Error, KeyFile, KeySearch, Loaded, SecretBytes};
///
/// let files = vec![
///     KeyFile::new(SecretBytes::new(b"not a key".to_vec())).named("junk.pem"),
///     KeyFile::new(SecretBytes::new(b"key-7".to_vec())),
/// ];
/// let mut keys = KeySearch::of_files("toy", "private key", &files, |f: &KeyFile| {
///     let text = String::from_utf8_lossy(f.data().expose()).into_owned();
///     Ok(match text.strip_prefix("key-") {
///         Some(n) => Loaded::Key(n.parse::<u8>().unwrap_or(0)),
///         None => Loaded::Skip(CauseKind::Unsuitable("not a toy key".into())),
///     })
/// });
/// // The blob is "opened" by key 7 only.
/// let opened = keys.search(Vec::new(), |key, _, _, _| Ok((*key == 7).then_some("opts")));
/// assert_eq!(opened.unwrap(), "opts");
/// // Another blob, for key 8: each key was read once, and the causes name them.
/// let err = keys
///     .search(Vec::new(), |key, _, _, _| Ok((*key == 8).then_some("opts")))
///     .unwrap_err();
/// assert_eq!(keys.reads(), 2);
/// assert_eq!(
///     err.to_string(),
///     "toy: no suitable key found for decrypting layer key: \
///      private key junk.pem: skipped: not a toy key"
/// );
/// ```
pub struct KeySearch<'a, K> {
    scheme: &'a str,
    noun: &'a str,
    names: Vec<String>,
    slots: Vec<Slot<K>>,
    load: Loader<'a, K>,
    reads: usize,
    budget: Budget,
}

impl<K> fmt::Debug for KeySearch<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySearch")
            .field("scheme", &self.scheme)
            .field("keys", &self.names)
            .field("reads", &self.reads)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<'a, K> KeySearch<'a, K> {
    /// A search over `names.len()` keys of `scheme`, named in causes by `names` (a file
    /// name, a URI, ...); `load(i)` reads key `i`. An error from `load` stops the search
    /// and is its result: return one only for a password problem, and a
    /// [`Loaded::Skip`] for anything that only makes the key useless.
    pub fn new(
        scheme: &'a str,
        noun: &'a str,
        names: Vec<String>,
        load: impl FnMut(usize) -> Result<Loaded<K>, Error> + 'a,
    ) -> Self {
        Self {
            scheme,
            noun,
            slots: names.iter().map(|_| Slot::Unread).collect(),
            names,
            load: Box::new(load),
            reads: 0,
            budget: Budget {
                scheme: scheme.to_owned(),
                what: "key operations",
                limit: usize::MAX,
                spent: 0,
            },
        }
    }

    /// At most `limit` key operations for all the searches ([`Budget::spend`]); `what`
    /// names them in the error (`"key and recipient pairs tried for one layer"`). Without
    /// it there is no limit.
    #[must_use]
    pub fn limit(mut self, limit: usize, what: &'static str) -> Self {
        self.budget.limit = limit;
        self.budget.what = what;
        self
    }

    /// The key operations counted so far.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// A search over key files: each named by its [`KeyFile::label`] after `noun`
    /// (`"private key alice.pem"`, `"private key 2"`), and read by `load`.
    pub fn of_files(
        scheme: &'a str,
        noun: &'a str,
        files: &'a [KeyFile],
        mut load: impl FnMut(&KeyFile) -> Result<Loaded<K>, Error> + 'a,
    ) -> Self {
        let names = files
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{noun} {}", f.label(i + 1)))
            .collect();
        Self::new(scheme, noun, names, move |i| match files.get(i) {
            Some(file) => load(file),
            None => Err(Error::Config {
                scheme: scheme.to_owned(),
                reason: format!("no key {i}"),
            }),
        })
    }

    /// How many keys have been read so far (each at most once).
    pub fn reads(&self) -> usize {
        self.reads
    }

    /// Whether there are no keys at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Unwraps the first of `blobs` that `unwrap(self, blob)` opens, with these keys for all
    /// of them: [`unwrap_in_turn`](crate::unwrap_in_turn) with the keys read once. The
    /// body of a scheme's [`KeyWrapper::unwrap_first`](crate::KeyWrapper::unwrap_first).
    ///
    /// # Errors
    /// One error per blob tried, in order, when none opened.
    pub fn unwrap_first(
        mut self,
        blobs: &[Vec<u8>],
        mut unwrap: impl FnMut(&mut Self, &[u8]) -> Result<crate::SecretBytes, Error>,
    ) -> Result<crate::SecretBytes, Vec<Error>> {
        crate::unwrap_in_turn(blobs, |blob| unwrap(&mut self, blob))
    }

    /// Tries each key in turn with `try_key(key, name, causes, budget)`: `Ok(Some(t))` ends
    /// the search with `t`; `Ok(None)` goes on to the next key (after pushing onto `causes`
    /// why the key did not open the blob); an error stops the search with it. `try_key`
    /// calls [`Budget::spend`] before each key operation.
    ///
    /// `causes` starts with `blob_causes` (the blob's own problems, such as a recipient
    /// with an unknown algorithm). A key that cannot be read or used is a cause named
    /// after the key, and without any key at all the cause says so.
    ///
    /// # Errors
    /// [`Error::NoMatchingKey`] with every cause when no key opened the blob; the error
    /// of reading a key (a password error) or of `try_key`, which stop the search.
    pub fn search<T>(
        &mut self,
        blob_causes: Vec<Cause>,
        mut try_key: impl FnMut(&mut K, &str, &mut Vec<Cause>, &mut Budget) -> Result<Option<T>, Error>,
    ) -> Result<T, Error> {
        let mut causes = blob_causes;
        if self.names.is_empty() {
            causes.push(Cause::new(CauseKind::NoKey(format!(
                "no {} was given",
                self.noun
            ))));
        }
        for (i, (slot, name)) in self.slots.iter_mut().zip(&self.names).enumerate() {
            if let Slot::Unread = slot {
                self.reads += 1;
                match (self.load)(i) {
                    Ok(Loaded::Key(key)) => *slot = Slot::Key(key),
                    Ok(Loaded::Skip(kind)) => {
                        *slot = Slot::Skipped(kind.detached());
                        causes.push(Cause::new(kind).key(name.as_str()));
                        continue;
                    }
                    Err(e) => {
                        *slot = Slot::Failed(e.detached());
                        return Err(e);
                    }
                }
            }
            match slot {
                Slot::Key(key) => {
                    if let Some(t) = try_key(key, name, &mut causes, &mut self.budget)? {
                        return Ok(t);
                    }
                }
                Slot::Skipped(kind) => causes.push(Cause::new(kind.detached()).key(name.as_str())),
                Slot::Failed(e) => return Err(e.detached()),
                Slot::Unread => {}
            }
        }
        Err(Error::NoMatchingKey {
            scheme: self.scheme.to_owned(),
            causes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Failure, SecretBytes};

    fn files(texts: &[&str]) -> Vec<KeyFile> {
        texts
            .iter()
            .map(|t| KeyFile::new(SecretBytes::new(t.as_bytes().to_vec())))
            .collect()
    }

    /// "key-N" is key N; "locked" is a password error; anything else is skipped.
    fn load(f: &KeyFile) -> Result<Loaded<u8>, Error> {
        let text = String::from_utf8_lossy(f.data().expose()).into_owned();
        if text == "locked" {
            return Err(Error::WrongPassword {
                scheme: "toy".into(),
            });
        }
        Ok(
            match text.strip_prefix("key-").and_then(|n| n.parse().ok()) {
                Some(n) => Loaded::Key(n),
                None => Loaded::Skip(CauseKind::Unreadable(Box::new(
                    Failure::with_source("not a toy key", fmt::Error).private_key("toy"),
                ))),
            },
        )
    }

    fn opens(
        n: u8,
    ) -> impl FnMut(&mut u8, &str, &mut Vec<Cause>, &mut Budget) -> Result<Option<u8>, Error> {
        move |key, name, causes, budget| {
            budget.spend()?;
            if *key == n {
                return Ok(Some(n));
            }
            causes.push(Cause::new(CauseKind::Refused(Failure::new("wrong key"))).key(name));
            Ok(None)
        }
    }

    #[test]
    fn each_key_is_read_once_and_the_causes_are_the_same_each_time() {
        let files = files(&["junk", "key-1", "key-2"]);
        let mut keys = KeySearch::of_files("toy", "private key", &files, load);
        // The message, and the message of the skipped key's source, which a copy keeps.
        let read = |err: Error| {
            let Error::NoMatchingKey { causes, .. } = &err else {
                panic!("{err:?}")
            };
            let CauseKind::Unreadable(e) = &causes[0].kind else {
                panic!("{err:?}")
            };
            let source = std::error::Error::source(&**e).map(ToString::to_string);
            (err.to_string(), source)
        };
        let first = read(keys.search(Vec::new(), opens(9)).unwrap_err());
        let second = read(keys.search(Vec::new(), opens(9)).unwrap_err());
        assert_eq!(
            first.0,
            "toy: no suitable key found for decrypting layer key: private key 1: skipped: \
             toy: invalid private key: not a toy key; private key 2: wrong key; \
             private key 3: wrong key"
        );
        assert_eq!(
            first.1.as_deref(),
            Some("an error occurred when formatting an argument")
        );
        assert_eq!(first, second);
        assert_eq!(keys.search(Vec::new(), opens(2)).unwrap(), 2);
        assert_eq!(keys.reads(), 3);
    }

    #[test]
    fn a_key_is_read_only_when_the_search_gets_to_it() {
        let files = files(&["key-1", "key-2"]);
        let mut keys = KeySearch::of_files("toy", "key", &files, load);
        assert_eq!(keys.search(Vec::new(), opens(1)).unwrap(), 1);
        assert_eq!(keys.reads(), 1);
    }

    #[test]
    fn a_password_error_stops_the_search_every_time() {
        let files = files(&["key-1", "locked", "key-2"]);
        let mut keys = KeySearch::of_files("toy", "key", &files, load);
        for _ in 0..2 {
            let err = keys.search(Vec::new(), opens(2)).unwrap_err();
            assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");
        }
        assert_eq!(
            keys.reads(),
            2,
            "the key after the locked one is never read"
        );
    }

    #[test]
    fn an_error_from_trying_a_key_stops_the_search() {
        let files = files(&["key-1", "key-2"]);
        let mut keys = KeySearch::of_files("toy", "key", &files, load);
        let err = keys
            .search(
                Vec::new(),
                |_: &mut u8, _: &str, _: &mut Vec<Cause>, _: &mut Budget| {
                    Err::<Option<()>, _>(Error::Config {
                        scheme: "toy".into(),
                        reason: "broken".into(),
                    })
                },
            )
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert_eq!(keys.reads(), 1);
    }

    #[test]
    fn the_budget_is_shared_by_every_search_and_stops_them() {
        let files = files(&["key-1", "key-2"]);
        let mut keys = KeySearch::of_files("toy", "key", &files, load).limit(5, "tries");
        // Two operations a blob that nobody opens, then one for key 1.
        for _ in 0..2 {
            assert!(keys.search(Vec::new(), opens(9)).is_err());
        }
        assert_eq!(keys.budget().spent(), 4);
        assert_eq!(keys.search(Vec::new(), opens(1)).unwrap(), 1);
        let err = keys.search(Vec::new(), opens(2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "toy: wrapped key exceeds a limit: more than 5 tries"
        );
        // Through unwrap_first: the blob over the limit is the last one tried.
        let blobs = vec![Vec::new(); 10];
        let keys = KeySearch::of_files("toy", "key", &files, load).limit(5, "tries");
        let errors = keys
            .unwrap_first(&blobs, |keys, _| {
                keys.search(Vec::new(), opens(9))
                    .map(|n| SecretBytes::new(vec![n]))
            })
            .unwrap_err();
        assert_eq!(errors.len(), 3);
        assert!(matches!(errors[2], Error::LimitExceeded { limit: 5, .. }));
    }

    #[test]
    fn no_keys_is_a_cause_after_the_blobs_own() {
        let mut keys = KeySearch::of_files("toy", "secret key", &[], load);
        assert!(keys.is_empty());
        let blob = vec![Cause::new(CauseKind::BadRecipient(
            "unknown algorithm".into(),
        ))];
        let err = keys.search(blob, opens(1)).unwrap_err();
        let Error::NoMatchingKey { causes, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(matches!(causes[0].kind, CauseKind::BadRecipient(_)));
        assert!(matches!(causes[1].kind, CauseKind::NoKey(_)));
        assert_eq!(
            err.to_string(),
            "toy: no suitable key found for decrypting layer key: unknown algorithm; \
             no secret key was given"
        );
    }

    #[test]
    fn debug_shows_names_not_keys() {
        let files = files(&["key-1"]);
        let mut keys = KeySearch::of_files("toy", "key", &files, load);
        keys.search(Vec::new(), opens(1)).unwrap();
        let debug = format!("{keys:?}");
        assert!(
            debug.contains("key 1") && !debug.contains("key-1"),
            "{debug}"
        );
    }
}
