#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::fmt;
use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

/// Work a [`Worker`] does to each item, on its thread, in the order submitted.
pub trait Stage<I>: Send + 'static {
    /// What the stage makes of an item.
    type Output: Send + 'static;
    /// Why it could not: the worker stops after the first error.
    type Error: Send + 'static;

    /// Processes one item.
    ///
    /// # Errors
    /// When the item cannot be processed; the error is the output for this item, and the
    /// worker then drops the stage and stops.
    fn apply(&mut self, item: I) -> Result<Self::Output, Self::Error>;
}

/// Why a [`Worker`] gave no output.
#[derive(Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The stage failed on the item: the worker has dropped the stage and stopped.
    Stage(E),
    /// The worker is gone: it stopped after a stage error, or a stage panicked.
    Stopped,
    /// Nothing is in flight, so there is nothing to wait for.
    Idle,
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stage(e) => write!(f, "{e}"),
            Self::Stopped => f.write_str("the worker thread stopped"),
            Self::Idle => f.write_str("no work in flight"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for Error<E> {}

/// An item [`Worker::submit`] did not take, given back.
pub enum Refused<I> {
    /// `depth` items are already in flight: receive one first.
    Full(I),
    /// The worker is gone (see [`Error::Stopped`]).
    Stopped(I),
}

impl<I> Refused<I> {
    /// The item, given back.
    pub fn into_item(self) -> I {
        match self {
            Self::Full(i) | Self::Stopped(i) => i,
        }
    }
}

/// Names the reason only: items may hold secrets.
impl<I> fmt::Debug for Refused<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "Refused::Full(..)",
            Self::Stopped(_) => "Refused::Stopped(..)",
        })
    }
}

/// The stage of a worker whose thread could not be started, given back with the error.
pub struct NotStarted<S> {
    /// The stage, unused.
    pub stage: S,
    /// Why no thread was started.
    pub error: io::Error,
}

/// Shows the error only.
impl<S> fmt::Debug for NotStarted<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotStarted")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// A callback the worker runs after each output it hands back.
type Notify = Box<dyn Fn() + Send + 'static>;

/// Settings of a [`Worker`]: see [`Worker::builder`].
#[must_use]
pub struct Builder {
    name: String,
    depth: usize,
    notify: Option<Notify>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("depth", &self.depth)
            .field("notify", &self.notify.is_some())
            .finish()
    }
}

impl Builder {
    /// The thread's name (default `"ocicrypt-worker"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How many items may be in flight at once (default 2; at least 1).
    pub fn depth(mut self, depth: usize) -> Self {
        self.depth = depth.max(1);
        self
    }

    /// Runs `notify` on the worker's thread after each output it hands back (or fails to),
    /// for a caller that does not wait: an async reader wakes its task with it.
    pub fn notify(mut self, notify: impl Fn() + Send + 'static) -> Self {
        self.notify = Some(Box::new(notify));
        self
    }

    /// Starts the worker's thread with `stage`.
    ///
    /// # Errors
    /// [`NotStarted`], with the stage, when no thread can be started.
    pub fn start<I, S>(self, stage: S) -> Result<Worker<I, S>, NotStarted<S>>
    where
        I: Send + 'static,
        S: Stage<I>,
    {
        let (to_worker, items) = mpsc::sync_channel::<I>(self.depth);
        let (give_back, from_worker) = mpsc::sync_channel(self.depth);
        // The stage goes in once the thread runs: if none can start, it is given back.
        let shared: Arc<Mutex<Option<S>>> = Arc::new(Mutex::new(None));
        let worker_stage = Arc::clone(&shared);
        let notify = self.notify;
        let spawned = thread::Builder::new().name(self.name).spawn(move || {
            while let Ok(item) = items.recv() {
                let result = {
                    let mut guard = worker_stage.lock().unwrap_or_else(PoisonError::into_inner);
                    // Taken by `finish` or `drop`: nobody is waiting for outputs.
                    let Some(stage) = guard.as_mut() else {
                        return;
                    };
                    let result = stage.apply(item);
                    if result.is_err() {
                        *guard = None;
                    }
                    result
                };
                let failed = result.is_err();
                // Never waits: no more than `depth` items are in flight.
                let sent = give_back.send(result).is_ok();
                if let Some(notify) = &notify {
                    notify();
                }
                if !sent || failed {
                    return;
                }
            }
        });
        if let Err(error) = spawned {
            return Err(NotStarted { stage, error });
        }
        *shared.lock().unwrap_or_else(PoisonError::into_inner) = Some(stage);
        Ok(Worker {
            to_worker: Some(to_worker),
            from_worker,
            stage: shared,
            depth: self.depth,
            in_flight: 0,
        })
    }
}

/// A thread that applies a [`Stage`] to items and hands the outputs back in order.
///
/// At most [`depth`](Worker::depth) items are in flight. The worker holds the stage's lock
/// only while it applies the stage to an item, so once every output has been received,
/// [`finish`](Worker::finish) takes the stage back without waiting for the thread.
pub struct Worker<I, S: Stage<I>> {
    to_worker: Option<SyncSender<I>>,
    from_worker: Receiver<Result<S::Output, S::Error>>,
    stage: Arc<Mutex<Option<S>>>,
    depth: usize,
    in_flight: usize,
}

impl<I, S: Stage<I>> fmt::Debug for Worker<I, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("depth", &self.depth)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Worker<(), NoStage> {
    /// Settings for a new worker: its thread's name, its depth, and a callback.
    pub fn builder() -> Builder {
        Builder {
            name: "ocicrypt-worker".to_owned(),
            depth: 2,
            notify: None,
        }
    }
}

/// The stage type [`Worker::builder`] is named with; it does nothing.
#[derive(Debug)]
pub struct NoStage;

impl Stage<()> for NoStage {
    type Output = ();
    type Error = ();

    fn apply(&mut self, (): ()) -> Result<(), ()> {
        Ok(())
    }
}

impl<I, S: Stage<I>> Worker<I, S> {
    /// How many items may be in flight at once.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// How many items were submitted and not yet received.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether [`depth`](Worker::depth) items are in flight: [`submit`](Worker::submit)
    /// refuses another until one is received.
    pub fn is_full(&self) -> bool {
        self.in_flight >= self.depth
    }

    /// Hands `item` to the worker. Never waits.
    ///
    /// # Errors
    /// The item, given back, when the worker [is full](Worker::is_full) or has stopped.
    pub fn submit(&mut self, item: I) -> Result<(), Refused<I>> {
        if self.is_full() {
            return Err(Refused::Full(item));
        }
        let Some(tx) = &self.to_worker else {
            return Err(Refused::Stopped(item));
        };
        match tx.try_send(item) {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            // Full cannot happen with fewer than `depth` in flight; either way the worker
            // is not taking it.
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                Err(Refused::Stopped(item))
            }
        }
    }

    /// The output for the oldest item in flight, waiting for it.
    ///
    /// # Errors
    /// The stage's error for that item; [`Error::Stopped`] when the worker is gone;
    /// [`Error::Idle`] when nothing is in flight.
    pub fn receive(&mut self) -> Result<S::Output, Error<S::Error>> {
        if self.in_flight == 0 {
            return Err(Error::Idle);
        }
        let result = self.from_worker.recv().map_err(|_| Error::Stopped)?;
        self.in_flight -= 1;
        result.map_err(Error::Stage)
    }

    /// The output for the oldest item in flight if it is ready, else `Ok(None)` (also when
    /// nothing is in flight). Never waits.
    ///
    /// # Errors
    /// As [`receive`](Worker::receive), but never [`Error::Idle`].
    pub fn try_receive(&mut self) -> Result<Option<S::Output>, Error<S::Error>> {
        if self.in_flight == 0 {
            return Ok(None);
        }
        let result = match self.from_worker.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return Ok(None),
            Err(TryRecvError::Disconnected) => return Err(Error::Stopped),
        };
        self.in_flight -= 1;
        result.map(Some).map_err(Error::Stage)
    }

    /// Why the worker stopped, for a caller whose item it refused
    /// ([`Refused::Stopped`]): receives the outputs still in flight, dropping them, up to
    /// the stage's error. Waits for them.
    ///
    /// [`Error::Stage`] with the stage's error, or [`Error::Stopped`] when there is none
    /// to receive (it was received already, or the stage panicked).
    pub fn failure(&mut self) -> Error<S::Error> {
        loop {
            match self.receive() {
                Ok(_) => {}
                Err(Error::Idle) => return Error::Stopped,
                Err(e) => return e,
            }
        }
    }

    /// Waits for the items in flight (their outputs are dropped), stops the worker and
    /// gives the stage back. With nothing in flight it does not wait.
    ///
    /// # Errors
    /// The first stage error among the items in flight; [`Error::Stopped`] when the worker
    /// is gone (after an earlier error, or a panic).
    pub fn finish(mut self) -> Result<S, Error<S::Error>> {
        let mut first_error = None;
        while self.in_flight > 0 {
            match self.receive() {
                Ok(_) => {}
                Err(Error::Stage(e)) => {
                    first_error.get_or_insert(Error::Stage(e));
                }
                Err(e) => return Err(first_error.unwrap_or(e)),
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        self.stop().ok_or(Error::Stopped)
    }

    /// Closes the queue, so that the thread ends, and takes the stage once the thread is
    /// not applying it (`None` if the thread dropped it after an error).
    fn stop(&mut self) -> Option<S> {
        self.to_worker = None;
        self.stage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Stops the worker and drops the stage on this thread, after the item the worker is
/// processing, if any: what the stage owns (a file, a reader) is closed when this returns.
impl<I, S: Stage<I>> Drop for Worker<I, S> {
    fn drop(&mut self) {
        drop(self.stop());
    }
}

#[cfg(test)]
mod tests;
