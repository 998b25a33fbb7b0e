//! Running the HMAC-SHA256 of the ciphertext (and, in [`Pipeline`], the cipher) on a
//! helper thread.
//!
//! SHA-256 is the slow part of this cipher: with SHA and AES instructions, one core hashes
//! at about a fifth of the speed it runs AES-CTR. Hashing on a second core, fed by batches
//! copied while they are still in cache, lets a stream go at nearly the speed of the hash
//! alone instead of hash + cipher + copies in series.
//!
//! When the plaintext digest is wanted too, the calling thread hashes as much as the
//! helper, so the helper also runs the cipher: a [`Pipeline`] takes whole batches, MACs and
//! deciphers them in place, and hands them back in order. (A third thread, hashing the
//! plaintext, was measured and gained nothing on two cores.)
//!
//! Streams start hashing inline and move to a worker only after [`INLINE_LIMIT`] bytes, so
//! small layers never start a thread. If a thread cannot be started, hashing stays inline.
//! Memory is bounded: at most [`PIPELINE_DEPTH`] + 2 batches of [`BATCH`] bytes exist per
//! helper.
//!
//! The synchronous readers wait for their worker when it is behind. The asynchronous ones
//! must not block their runtime's thread: they give the pipeline a [`WakerSlot`], and then
//! a receive that would wait answers "not yet" instead ([`busy`]), and the worker wakes
//! the task when it hands a batch back.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;
#[cfg(test)]
use std::thread;

use ring::{digest, hmac};
use zeroize::Zeroizing;

use crate::Error;

/// Bytes hashed inline before a worker thread is started.
pub(crate) const INLINE_LIMIT: u64 = 1024 * 1024;
/// Bytes handed to the worker at once.
const BATCH: usize = crate::CHUNK;

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
pub(crate) type Batch = Zeroizing<Vec<u8>>;

/// A hash as a [`Pipeline`] stage: it reads each batch and gives it back unchanged.
struct Hasher<H>(H);

impl<H: Absorb> Stage for Hasher<H> {
    fn apply(&mut self, data: &mut [u8]) -> Result<(), Error> {
        self.0.absorb(data);
        Ok(())
    }
}

/// The hash on a pipeline worker, and the batch being filled for it.
struct Worker<H: Absorb> {
    pipeline: Pipeline<Hasher<H>>,
    filling: Batch,
}

enum State<H: Absorb> {
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
    /// For an asynchronous reader: never wait for the worker.
    slot: Option<Arc<WakerSlot>>,
}

/// Where an asynchronous reader leaves the waker of the task reading it (before every
/// read), for its pipeline worker to wake whenever it hands a batch back. A pipeline with a
/// slot never waits for its worker: see [`Pipeline::receive`].
#[derive(Default)]
pub(crate) struct WakerSlot(Mutex<Option<Waker>>);

impl WakerSlot {
    /// `waker` is the one to wake from now on.
    #[cfg(any(feature = "tokio", test))]
    pub(crate) fn register(&self, waker: &Waker) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    fn wake(&self) {
        if let Some(w) = &*self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            w.wake_by_ref();
        }
    }
}

/// The payload of the `WouldBlock` error a reader with a [`WakerSlot`] returns when its
/// worker is behind: the read is to be made again once the slot's waker is woken.
#[derive(Debug)]
pub(crate) struct Busy;

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the helper thread is behind")
    }
}

impl std::error::Error for Busy {}

/// The error a reader with a [`WakerSlot`] returns when its worker is behind.
pub(crate) fn busy() -> io::Error {
    io::Error::new(io::ErrorKind::WouldBlock, Busy)
}

/// Whether `e` is [`busy`].
#[cfg(feature = "tokio")]
pub(crate) fn is_busy(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock && e.get_ref().is_some_and(|r| r.is::<Busy>())
}

impl<H: Absorb> Offload<H> {
    pub(crate) fn new(hash: H) -> Self {
        Self {
            state: State::Inline(hash),
            absorbed: 0,
            parallel: false,
            slot: None,
        }
    }

    /// Never wait for the worker (set before the first `update`): see [`WakerSlot`]. The
    /// caller then checks [`has_room`](Offload::has_room) before each `update` of up to
    /// [`BATCH`] bytes, and [`flushed`](Offload::flushed) before `finish`.
    #[cfg(any(feature = "tokio", test))]
    pub(crate) fn set_waker_slot(&mut self, slot: Arc<WakerSlot>) {
        self.slot = Some(slot);
    }

    /// Whether an `update` of up to [`BATCH`] bytes can be made without waiting for the
    /// worker: at most one batch fills up in it, so there must be room for one more in
    /// flight. Receives what the worker has finished.
    ///
    /// # Errors
    /// [`Error::Worker`] if the helper thread died.
    pub(crate) fn has_room(&mut self) -> Result<bool, Error> {
        match &mut self.state {
            State::Inline(_) => Ok(true),
            State::Worker(worker) => worker.make_room(),
            State::Broken => Err(Error::Worker),
        }
    }

    /// Whether everything given to `update` has been hashed, so that `finish` does not
    /// wait: sends the last partial batch when there is room, and receives what the worker
    /// has finished.
    ///
    /// # Errors
    /// [`Error::Worker`] if the helper thread died.
    pub(crate) fn flushed(&mut self) -> Result<bool, Error> {
        match &mut self.state {
            State::Inline(_) => Ok(true),
            State::Worker(worker) => worker.flush(),
            State::Broken => Err(Error::Worker),
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
        self.state = match Pipeline::start(Hasher(hash), self.slot.clone()) {
            Ok(mut pipeline) => State::Worker(Worker {
                filling: pipeline.empty_batch(),
                pipeline,
            }),
            Err(Hasher(hash)) => {
                self.parallel = false;
                State::Inline(hash)
            }
        };
    }
}

impl<H: Absorb> Worker<H> {
    /// Copies `data` into batches, sending each one that is full; with
    /// [`PIPELINE_DEPTH`] batches in flight, waits for the oldest (this is where a fast
    /// producer waits).
    fn feed(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let room = BATCH.saturating_sub(self.filling.len());
            let (now, rest) = data.split_at(room.min(data.len()));
            self.filling.extend_from_slice(now);
            data = rest;
            if self.filling.len() >= BATCH {
                self.send_filling()?;
            }
        }
        Ok(())
    }

    fn send_filling(&mut self) -> Result<(), Error> {
        if self.pipeline.in_flight() >= PIPELINE_DEPTH {
            let done = self.pipeline.receive_waiting()?;
            self.pipeline.recycle(done);
        }
        let next = self.pipeline.empty_batch();
        let full = std::mem::replace(&mut self.filling, next);
        self.pipeline.submit(full)
    }

    /// Receives finished batches until at most `most` are in flight; `false` if the worker
    /// is behind and the pipeline may not wait.
    fn drain_to(&mut self, most: usize) -> Result<bool, Error> {
        while self.pipeline.in_flight() > most {
            match self.pipeline.receive()? {
                Some(done) => self.pipeline.recycle(done),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Receives finished batches until one more can be sent.
    fn make_room(&mut self) -> Result<bool, Error> {
        self.drain_to(PIPELINE_DEPTH - 1)
    }

    /// Sends the partial batch and receives everything; `false` if the worker is behind
    /// and the pipeline may not wait.
    fn flush(&mut self) -> Result<bool, Error> {
        if !self.filling.is_empty() {
            if !self.make_room()? {
                return Ok(false);
            }
            self.send_filling()?;
        }
        self.drain_to(0)
    }

    fn finish(mut self) -> Result<H, Error> {
        if !self.filling.is_empty() {
            self.send_filling()?;
        }
        while self.pipeline.in_flight() > 0 {
            self.pipeline.receive_waiting()?;
        }
        self.pipeline.finish().map(|Hasher(hash)| hash)
    }
}

/// Work a [`Pipeline`] worker does to each batch, in place and in order.
pub(crate) trait Stage: Send + 'static {
    fn apply(&mut self, data: &mut [u8]) -> Result<(), Error>;
}

/// Tests only: a pause the worker takes before each batch, in milliseconds, to make it
/// fall behind the reader.
#[cfg(test)]
pub(crate) static WORKER_PAUSE_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// Batches in flight in a [`Pipeline`]: enough for the caller to read and hash one while
/// the worker processes the next.
pub(crate) const PIPELINE_DEPTH: usize = 3;

/// A [`Stage`] as an `ocicrypt_pipeline` stage: each batch processed in place and handed
/// back.
struct InPlace<S>(S);

impl<S: Stage> ocicrypt_pipeline::Stage<Batch> for InPlace<S> {
    type Output = Batch;
    type Error = Error;

    fn apply(&mut self, mut batch: Batch) -> Result<Batch, Error> {
        #[cfg(test)]
        thread::sleep(std::time::Duration::from_millis(
            WORKER_PAUSE_MS.load(std::sync::atomic::Ordering::Relaxed),
        ));
        self.0.apply(&mut batch).map(|()| batch)
    }
}

/// The cipher's error for a worker's: the stage's own, else [`Error::Worker`].
fn worker_error(e: ocicrypt_pipeline::Error<Error>) -> Error {
    match e {
        ocicrypt_pipeline::Error::Stage(e) => e,
        ocicrypt_pipeline::Error::Stopped | ocicrypt_pipeline::Error::Idle => Error::Worker,
    }
}

/// A worker thread (an [`ocicrypt_pipeline::Worker`]) that applies a [`Stage`] to
/// batches and returns them in order, with the batches recycled.
///
/// Memory is bounded: at most [`PIPELINE_DEPTH`] batches in flight, [`PIPELINE_DEPTH`] + 1
/// kept for reuse, and what the caller holds. Once every batch has come back,
/// [`Pipeline::finish`] takes the stage without waiting (no thread join). A failed stage
/// is dropped by the worker.
pub(crate) struct Pipeline<S: Stage> {
    worker: ocicrypt_pipeline::Worker<Batch, InPlace<S>>,
    /// No [`WakerSlot`]: [`receive`](Pipeline::receive) waits.
    waits: bool,
    spare: Vec<Batch>,
}

impl<S: Stage> Pipeline<S> {
    /// Starts the worker; gives the stage back if no thread can be started. With a
    /// [`WakerSlot`], the worker wakes its waker after each batch and
    /// [`receive`](Pipeline::receive) never waits.
    pub(crate) fn start(stage: S, slot: Option<Arc<WakerSlot>>) -> Result<Self, S> {
        let mut builder = ocicrypt_pipeline::Worker::builder()
            .name("ocicrypt-helper")
            .depth(PIPELINE_DEPTH);
        if let Some(slot) = &slot {
            let slot = Arc::clone(slot);
            builder = builder.notify(move || slot.wake());
        }
        match builder.start(InPlace(stage)) {
            Ok(worker) => Ok(Self {
                worker,
                waits: slot.is_none(),
                spare: Vec::new(),
            }),
            Err(not_started) => Err(not_started.stage.0),
        }
    }

    /// Batches submitted and not yet received.
    pub(crate) fn in_flight(&self) -> usize {
        self.worker.in_flight()
    }

    /// An empty batch with room for [`BATCH`] bytes (a recycled one when there is one).
    pub(crate) fn empty_batch(&mut self) -> Batch {
        let mut batch = self
            .spare
            .pop()
            .unwrap_or_else(|| Zeroizing::new(Vec::with_capacity(BATCH)));
        batch.clear();
        batch
    }

    /// Gives back a batch that is no longer needed (it is wiped when reused or dropped).
    pub(crate) fn recycle(&mut self, batch: Batch) {
        if self.spare.len() <= PIPELINE_DEPTH {
            self.spare.push(batch);
        }
    }

    /// Hands a batch to the worker: at most [`PIPELINE_DEPTH`] at a time (check
    /// [`in_flight`](Pipeline::in_flight) first). Never waits.
    ///
    /// # Errors
    /// [`Error::Worker`] if the worker is full or gone.
    pub(crate) fn submit(&mut self, batch: Batch) -> Result<(), Error> {
        self.worker.submit(batch).map_err(|_| Error::Worker)
    }

    /// The oldest batch submitted, once the worker has processed it. Without a
    /// [`WakerSlot`] this waits for it; with one, `Ok(None)` says it is not ready yet (and
    /// the slot's waker is woken when a batch comes back).
    pub(crate) fn receive(&mut self) -> Result<Option<Batch>, Error> {
        if self.waits {
            self.worker.receive().map(Some).map_err(worker_error)
        } else {
            self.worker.try_receive().map_err(worker_error)
        }
    }

    /// The oldest batch submitted, waiting for it even with a [`WakerSlot`] (for callers
    /// that made sure it is not needed, and for `finish` paths outside `poll_read`).
    pub(crate) fn receive_waiting(&mut self) -> Result<Batch, Error> {
        self.worker.receive().map_err(worker_error)
    }

    /// Stops the worker and returns the stage. Call it with nothing in flight: the worker
    /// is then idle, so taking the stage does not wait.
    pub(crate) fn finish(self) -> Result<S, Error> {
        if self.worker.in_flight() != 0 {
            return Err(Error::Worker);
        }
        self.worker
            .finish()
            .map(|InPlace(stage)| stage)
            .map_err(worker_error)
    }
}

/// Why feeding or draining a pipeline stopped: the inner reader's error (passed through to
/// the caller, not sticky) or ours (sticky).
pub(crate) enum Failure {
    Inner(io::Error),
    Cipher(Error),
    /// The worker is behind and the pipeline may not wait (see [`WakerSlot`]): nothing was
    /// lost, and the same call is to be made again.
    Busy,
}

/// The payload of the `WouldBlock` error an async feed returns when its inner reader is
/// pending: unlike a plain `WouldBlock` ("nothing yet, ask again"), the pipeline then
/// releases what it has in flight before it reports the error, so that a stalled stream
/// still hands out everything but the hold-back.
#[derive(Debug)]
pub(crate) struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the inner reader has no data yet")
    }
}

impl std::error::Error for Stalled {}

/// Whether `e` is a plain `WouldBlock` (not [`Stalled`]).
fn is_plain_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock && !e.get_ref().is_some_and(|r| r.is::<Stalled>())
}

/// The least data sent to a pipeline worker at once (but for the last batch): an inner
/// reader returning small pieces would otherwise cost a round trip to the worker per piece.
const MIN_BATCH: usize = BATCH / 4;

/// The reading side of a [`Pipeline`]: fills batches from the inner reader and keeps the
/// worker supplied.
///
/// When the inner reader fails (or is [`Stalled`]), what was read is sent as it is and the
/// error is kept until the batches in flight have been received, then returned once; the
/// next call reads on from there. A plain `WouldBlock` (an async feed that ran dry) is
/// returned at once, with nothing sent early, so that the feed is refilled and the worker
/// kept busy.
#[derive(Default)]
pub(crate) struct Feeder {
    /// Data read but not yet enough to send.
    filling: Option<Batch>,
    /// The inner reader has returned end of stream.
    inner_done: bool,
    deferred: Option<io::Error>,
}

impl Feeder {
    /// Reads and submits until [`PIPELINE_DEPTH`] batches are in flight, the inner reader
    /// ends, or it fails. `seen` is called with every piece read, in order, and `count`
    /// grows by its length (also when an error follows).
    pub(crate) fn top_up<S: Stage, R: io::Read>(
        &mut self,
        pipeline: &mut Pipeline<S>,
        inner: &mut R,
        count: &mut u64,
        mut seen: impl FnMut(&[u8]),
    ) -> Result<(), Failure> {
        while self.deferred.is_none() && !self.inner_done && pipeline.in_flight() < PIPELINE_DEPTH {
            let mut batch = self
                .filling
                .take()
                .unwrap_or_else(|| pipeline.empty_batch());
            let len = batch.len();
            batch.resize(BATCH, 0);
            let read = crate::read_retry(inner, batch.get_mut(len..).unwrap_or_default());
            let (n, error) = match read {
                Ok(0) => {
                    self.inner_done = true;
                    (0, None)
                }
                Ok(n) => (n, None),
                Err(e) if is_plain_would_block(&e) => {
                    batch.truncate(len);
                    if batch.is_empty() {
                        pipeline.recycle(batch);
                    } else {
                        self.filling = Some(batch);
                    }
                    return Err(Failure::Inner(e));
                }
                Err(e) => (0, Some(e)),
            };
            batch.truncate(len + n);
            seen(batch.get(len..).unwrap_or_default());
            *count = count.saturating_add(n as u64);
            let last = self.inner_done || error.is_some();
            if batch.len() >= MIN_BATCH || (last && !batch.is_empty()) {
                pipeline.submit(batch).map_err(Failure::Cipher)?;
            } else if batch.is_empty() {
                pipeline.recycle(batch);
            } else {
                self.filling = Some(batch);
            }
            if let Some(e) = error {
                if pipeline.in_flight() == 0 {
                    return Err(Failure::Inner(e));
                }
                self.deferred = Some(e);
            }
        }
        Ok(())
    }

    /// After [`top_up`](Feeder::top_up): the oldest batch, once the worker is done with it;
    /// `Ok(None)` at the end of the stream (nothing in flight), or the inner reader's
    /// deferred error.
    pub(crate) fn next<S: Stage>(
        &mut self,
        pipeline: &mut Pipeline<S>,
    ) -> Result<Option<Batch>, Failure> {
        if pipeline.in_flight() > 0 {
            return match pipeline.receive() {
                Ok(Some(batch)) => Ok(Some(batch)),
                Ok(None) => Err(Failure::Busy),
                Err(e) => Err(Failure::Cipher(e)),
            };
        }
        match self.deferred.take() {
            Some(e) => Err(Failure::Inner(e)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{self, Receiver};

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

    /// Adds the batch's index to every byte, so that order and completeness show.
    struct AddIndex(u8);
    impl Stage for AddIndex {
        fn apply(&mut self, data: &mut [u8]) -> Result<(), Error> {
            if data.first() == Some(&0xff) {
                return Err(Error::Authentication); // any error will do
            }
            for b in data.iter_mut() {
                *b = b.wrapping_add(self.0);
            }
            self.0 = self.0.wrapping_add(1);
            Ok(())
        }
    }

    #[test]
    fn pipeline_keeps_order_and_bounds() {
        let mut p = Pipeline::start(AddIndex(0), None).unwrap_or_else(|_| panic!("no thread"));
        let mut got = Vec::new();
        for i in 0..20u8 {
            if p.in_flight() == PIPELINE_DEPTH {
                got.push(p.receive().unwrap().unwrap()[0]);
            }
            let mut b = p.empty_batch();
            assert!(b.is_empty() && b.capacity() >= BATCH);
            b.extend_from_slice(&[i; 10]);
            p.submit(b).unwrap();
            assert!(p.in_flight() <= PIPELINE_DEPTH);
        }
        while p.in_flight() > 0 {
            let b = p.receive().unwrap().unwrap();
            got.push(b[0]);
            p.recycle(b);
        }
        // Batch i holds i, plus i from the stage: 2i.
        assert_eq!(got, (0..20u8).map(|i| 2 * i).collect::<Vec<_>>());
        assert_eq!(p.finish().ok().map(|s| s.0), Some(20));
    }

    #[test]
    fn pipeline_reports_a_stage_error_and_then_a_dead_worker() {
        let mut p = Pipeline::start(AddIndex(0), None).unwrap_or_else(|_| panic!("no thread"));
        let mut b = p.empty_batch();
        b.push(0xff);
        p.submit(b).unwrap();
        assert!(matches!(p.receive(), Err(Error::Authentication)));
        let mut b = p.empty_batch();
        b.push(1);
        // The worker has stopped: either the send or the receive says so.
        let later = p.submit(b).and_then(|()| p.receive().map(|_| ()));
        assert!(matches!(later, Err(Error::Worker)));
        assert!(p.finish().is_err());
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

    /// A stage that waits for a go-ahead per batch, so the test decides when the worker is
    /// behind.
    struct Gated(Mutex<Receiver<()>>);
    impl Stage for Gated {
        fn apply(&mut self, _: &mut [u8]) -> Result<(), Error> {
            self.0.lock().unwrap().recv().map_err(|_| Error::Worker)
        }
    }

    struct CountWakes(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// With a waker slot, a receive never waits: "not yet" while the worker is behind, a
    /// wake when it hands the batch back, and the batch after that. Finishing takes the
    /// stage back without joining the thread.
    #[test]
    fn a_pipeline_with_a_waker_slot_never_waits() {
        let (go, gate) = mpsc::channel();
        let slot = Arc::new(WakerSlot::default());
        let wakes = Arc::new(CountWakes(Default::default()));
        slot.register(&Waker::from(wakes.clone()));
        let mut p = Pipeline::start(Gated(Mutex::new(gate)), Some(slot))
            .unwrap_or_else(|_| panic!("no thread"));
        let mut b = p.empty_batch();
        b.push(7);
        p.submit(b).unwrap();
        assert!(
            p.receive().unwrap().is_none(),
            "the worker waits for the gate"
        );
        assert_eq!(p.in_flight(), 1);
        go.send(()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while wakes.0.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "never woken");
            thread::yield_now();
        }
        let back = p.receive().unwrap().expect("ready once woken");
        assert_eq!(back.as_slice(), &[7]);
        assert_eq!(p.in_flight(), 0);
        assert!(p.finish().is_ok());
    }

    /// An offloaded hash with a waker slot says when it has no room instead of waiting,
    /// and gives the same hash as one that waits.
    #[test]
    fn an_offload_with_a_waker_slot_reports_no_room() {
        let data = vec![5u8; 8 * BATCH + 3];
        let slot = Arc::new(WakerSlot::default());
        let wakes = Arc::new(CountWakes(Default::default()));
        slot.register(&Waker::from(wakes));
        let mut h = Offload::new(digest::Context::new(&digest::SHA256));
        h.set_parallel(true);
        h.set_waker_slot(slot);
        let mut no_room = 0;
        for piece in data.chunks(BATCH) {
            while !h.has_room().unwrap() {
                no_room += 1;
                thread::yield_now();
            }
            h.update(piece);
        }
        while !h.flushed().unwrap() {
            thread::yield_now();
        }
        let got = h.finish().unwrap().finish();
        assert_eq!(
            got.as_ref(),
            digest::digest(&digest::SHA256, &data).as_ref()
        );
        // Not asserted: whether the worker was ever behind (it depends on scheduling).
        let _ = no_room;
    }
}
