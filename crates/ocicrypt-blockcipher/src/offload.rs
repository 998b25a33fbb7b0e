//! Running a hash (the HMAC-SHA256 of the ciphertext) on a helper thread.
//!
//! SHA-256 is the slow part of this cipher: with SHA and AES instructions, one core hashes
//! at about a fifth of the speed it runs AES-CTR. Hashing on a second core, fed by batches
//! copied while they are still in cache, lets a stream go at nearly the speed of the hash
//! alone instead of hash + cipher + copies in series.
//!
//! (The plaintext digest, when wanted, stays on the calling thread: measured, a third
//! thread on two cores gained nothing, and plaintext then never leaves that thread.)
//!
//! Streams start hashing inline and move to a worker only after [`INLINE_LIMIT`] bytes, so
//! small layers never start a thread. If a thread cannot be started, hashing stays inline.
//! Memory is bounded: at most [`MAX_BATCHES`] batches of [`BATCH`] bytes exist per hash.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use ring::{digest, hmac};
use zeroize::Zeroizing;

use crate::Error;

/// Bytes hashed inline before a worker thread is started.
const INLINE_LIMIT: u64 = 1024 * 1024;
/// Bytes handed to the worker at once.
const BATCH: usize = 256 * 1024;
/// Batches per worker (in flight plus being filled).
const MAX_BATCHES: usize = 4;

/// A running hash that can be moved to another thread.
pub(crate) trait Absorb: Send + 'static {
    fn absorb(&mut self, data: &[u8]);
}

impl Absorb for hmac::Context {
    fn absorb(&mut self, data: &[u8]) {
        self.update(data);
    }
}

impl Absorb for digest::Context {
    fn absorb(&mut self, data: &[u8]) {
        self.update(data);
    }
}

/// Plaintext may pass through a batch, so batches are wiped when dropped.
type Batch = Zeroizing<Vec<u8>>;

struct Worker<H> {
    to_worker: SyncSender<Batch>,
    from_worker: Receiver<Batch>,
    handle: JoinHandle<Option<H>>,
    filling: Batch,
    allocated: usize,
}

enum State<H> {
    Inline(H),
    Worker(Worker<H>),
    /// Only while switching, or after the worker died (reported by `finish`).
    Broken,
}

/// A hash fed in order, inline or on a helper thread.
pub(crate) struct Offload<H: Absorb> {
    state: State<H>,
    absorbed: u64,
    parallel: bool,
}

impl<H: Absorb> Offload<H> {
    pub(crate) fn new(hash: H) -> Self {
        Self {
            state: State::Inline(hash),
            absorbed: 0,
            parallel: thread::available_parallelism().is_ok_and(|n| n.get() > 1),
        }
    }

    /// Whether a helper thread may be used (set before the first `update`).
    pub(crate) fn set_parallel(&mut self, on: bool) {
        self.parallel = on;
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.absorbed = self.absorbed.saturating_add(data.len() as u64);
        if self.parallel && self.absorbed > INLINE_LIMIT && matches!(self.state, State::Inline(_)) {
            self.start_worker();
        }
        match &mut self.state {
            State::Inline(hash) => hash.absorb(data),
            State::Worker(worker) => {
                if worker.feed(data).is_err() {
                    self.state = State::Broken;
                }
            }
            State::Broken => {}
        }
    }

    /// The hash after everything given to `update`.
    ///
    /// # Errors
    /// [`Error::Worker`] if the helper thread died.
    pub(crate) fn finish(self) -> Result<H, Error> {
        match self.state {
            State::Inline(hash) => Ok(hash),
            State::Worker(worker) => worker.finish(),
            State::Broken => Err(Error::Worker),
        }
    }

    fn start_worker(&mut self) {
        let State::Inline(hash) = std::mem::replace(&mut self.state, State::Broken) else {
            return;
        };
        // The hash is sent over a channel after the thread is up, so that it survives a
        // failure to start one.
        let (give_hash, take_hash) = mpsc::sync_channel::<H>(1);
        let (to_worker, batches) = mpsc::sync_channel::<Batch>(MAX_BATCHES);
        let (give_back, from_worker) = mpsc::sync_channel::<Batch>(MAX_BATCHES);
        let spawned = thread::Builder::new()
            .name("ocicrypt-hash".to_owned())
            .spawn(move || {
                let mut hash = take_hash.recv().ok()?;
                while let Ok(batch) = batches.recv() {
                    hash.absorb(&batch);
                    // The owner may be gone already; then the batch is just dropped.
                    let _ = give_back.send(batch);
                }
                Some(hash)
            });
        let handle = match spawned {
            Ok(handle) => handle,
            Err(_) => {
                self.parallel = false;
                self.state = State::Inline(hash);
                return;
            }
        };
        if let Err(mpsc::SendError(hash)) = give_hash.send(hash) {
            // The worker is gone (it cannot be, it has not run yet): keep hashing inline.
            self.parallel = false;
            self.state = State::Inline(hash);
            return;
        }
        self.state = State::Worker(Worker {
            to_worker,
            from_worker,
            handle,
            filling: Zeroizing::new(Vec::with_capacity(BATCH)),
            allocated: 1,
        });
    }
}

impl<H: Absorb> Worker<H> {
    /// Copies `data` into batches, sending each one that is full.
    fn feed(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let room = BATCH.saturating_sub(self.filling.len());
            let (now, rest) = data.split_at(room.min(data.len()));
            self.filling.extend_from_slice(now);
            data = rest;
            if self.filling.len() >= BATCH {
                let next = self.next_batch()?;
                let full = std::mem::replace(&mut self.filling, next);
                self.to_worker.send(full).map_err(|_| Error::Worker)?;
            }
        }
        Ok(())
    }

    /// An empty batch: a returned one, a new one while under the limit, or the next one
    /// the worker gives back (this is where a fast producer waits).
    fn next_batch(&mut self) -> Result<Batch, Error> {
        let batch = match self.from_worker.try_recv() {
            Ok(batch) => batch,
            Err(_) if self.allocated < MAX_BATCHES => {
                self.allocated += 1;
                Zeroizing::new(Vec::with_capacity(BATCH))
            }
            Err(_) => self.from_worker.recv().map_err(|_| Error::Worker)?,
        };
        let mut batch = batch;
        batch.clear();
        Ok(batch)
    }

    fn finish(self) -> Result<H, Error> {
        let Worker {
            to_worker,
            handle,
            filling,
            ..
        } = self;
        if !filling.is_empty() {
            to_worker.send(filling).map_err(|_| Error::Worker)?;
        }
        drop(to_worker);
        handle.join().ok().flatten().ok_or(Error::Worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(parallel: bool, pieces: &[usize]) -> Vec<u8> {
        let mut h = Offload::new(digest::Context::new(&digest::SHA256));
        h.set_parallel(parallel);
        let mut all = Vec::new();
        for (i, &len) in pieces.iter().enumerate() {
            let piece: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            h.update(&piece);
            all.extend_from_slice(&piece);
        }
        let got = h.finish().unwrap().finish();
        assert_eq!(got.as_ref(), digest::digest(&digest::SHA256, &all).as_ref());
        got.as_ref().to_vec()
    }

    #[test]
    fn worker_and_inline_agree() {
        let mb = 1024 * 1024;
        for pieces in [
            vec![],
            vec![1],
            vec![mb, 1, 1, BATCH - 1, BATCH, BATCH + 1, 3 * mb + 17],
            vec![8192; 1000],
        ] {
            assert_eq!(run(true, &pieces), run(false, &pieces));
        }
    }

    #[test]
    fn worker_is_used_after_the_inline_limit() {
        let mut h = Offload::new(digest::Context::new(&digest::SHA256));
        h.set_parallel(true);
        h.update(&[0; 1024]);
        assert!(matches!(h.state, State::Inline(_)));
        h.update(&vec![0; INLINE_LIMIT as usize]);
        assert!(matches!(h.state, State::Worker(_)));
        let mut h = Offload::new(digest::Context::new(&digest::SHA256));
        h.set_parallel(false);
        h.update(&vec![0; 2 * INLINE_LIMIT as usize]);
        assert!(matches!(h.state, State::Inline(_)));
    }
}
