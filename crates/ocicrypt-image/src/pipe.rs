//! Moving file I/O and the blob digest off the thread that runs the layer cipher.
//!
//! The cipher keeps its thread busy (AES-CTR, the plaintext digest, feeding the HMAC
//! thread). [`ReadAhead`] reads the input on a thread of its own and [`WriteBehind`] writes
//! the output on another; either can hash what passes through it (SHA-256), so that the
//! blob digest and the copies from and to the page cache run beside the cipher instead of
//! in series with it. Each pipe recycles [`DEPTH`] + 1 blocks of [`BLOCK`] bytes: memory
//! stays flat whatever the size of the layer. Blocks may hold plaintext, so they are wiped
//! when dropped.
//!
//! Both run on an [`ocicrypt_pipeline::Worker`]. Dropping a pipe stops its thread and
//! drops its source or sink before it returns (so that a staged output file is removed
//! before the command exits).
//!
//! [`Input`] and [`Output`] are what commands use: the threaded pipes, or the same reads,
//! writes and hashing on the caller's thread when the command runs one thread per layer
//! (`image --jobs`).

use ocicrypt_pipeline::{Error, Stage, Worker};
use std::io::{self, Read, Write};
use zeroize::Zeroizing;

use crate::digest::{Hashing, Summary, Tally};

/// Bytes moved between threads at once.
pub(crate) const BLOCK: usize = 256 * 1024;
/// Blocks in flight between the two threads of a pipe.
const DEPTH: usize = 3;

/// A block and how many of its bytes are data. Blocks keep their full length so that they
/// are zero-filled only once, when allocated.
struct Filled {
    block: Zeroizing<Vec<u8>>,
    len: usize,
}

impl Filled {
    fn new() -> Self {
        Self {
            block: Zeroizing::new(vec![0; BLOCK]),
            len: 0,
        }
    }

    /// A block with no room, to stand in for one that was sent.
    fn empty() -> Self {
        Self {
            block: Zeroizing::new(Vec::new()),
            len: 0,
        }
    }

    fn data(&self) -> &[u8] {
        self.block.get(..self.len).unwrap_or_default()
    }
}

fn died(what: &str) -> io::Error {
    io::Error::other(format!("the {what} thread stopped unexpectedly"))
}

/// An I/O error from a pipe's worker: the stage's own, else "the thread stopped".
fn worker_error(e: Error<io::Error>, what: &str) -> io::Error {
    match e {
        Error::Stage(e) => e,
        Error::Stopped | Error::Idle => died(what),
    }
}

/// A command's input: read ahead on a thread of its own or read inline, hashed or not.
pub(crate) enum Input {
    /// Read on a thread of its own.
    Ahead(ReadAhead),
    /// Read on the caller's thread.
    Inline(Hashing<Box<dyn Read + Send>>),
}

impl Input {
    /// Reads `src`, on a thread of its own if `threaded`; with `hash`, the summary carries
    /// the SHA-256 of everything read.
    pub(crate) fn open<R: Read + Send + 'static>(
        src: R,
        hash: bool,
        threaded: bool,
    ) -> io::Result<Self> {
        Ok(if threaded {
            Self::Ahead(ReadAhead::spawn(src, hash)?)
        } else {
            Self::Inline(Hashing::with(Box::new(src), hash))
        })
    }

    /// What was read (call it after a read returned `Ok(0)`).
    pub(crate) fn finish(self) -> io::Result<Summary> {
        match self {
            Self::Ahead(r) => r.finish(),
            Self::Inline(h) => Ok(h.into_summary().0),
        }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Ahead(r) => r.read(buf),
            Self::Inline(h) => h.read(buf),
        }
    }
}

/// A command's output: written behind on a thread of its own or written inline, hashed or
/// not.
pub(crate) enum Output<W: Write + Send + 'static> {
    /// Written on a thread of its own.
    Behind(WriteBehind<W>),
    /// Written on the caller's thread.
    Inline(Hashing<W>),
}

impl<W: Write + Send + 'static> Output<W> {
    /// Writes to `sink`, on a thread of its own if `threaded`; with `hash`, the summary
    /// carries the SHA-256 of everything written.
    pub(crate) fn open(sink: W, hash: bool, threaded: bool) -> io::Result<Self> {
        Ok(if threaded {
            Self::Behind(WriteBehind::spawn(sink, hash)?)
        } else {
            Self::Inline(Hashing::with(sink, hash))
        })
    }

    /// Copies `src` to its end; returns the byte count.
    pub(crate) fn copy_from<R: Read + ?Sized>(&mut self, src: &mut R) -> io::Result<u64> {
        match self {
            Self::Behind(w) => w.copy_from(src),
            Self::Inline(sink) => {
                let mut buf = Zeroizing::new(vec![0; BLOCK]);
                let mut total = 0u64;
                loop {
                    let n = match src.read(&mut buf) {
                        Ok(0) => return Ok(total),
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    sink.write_all(buf.get(..n).unwrap_or_default())?;
                    total += n as u64;
                }
            }
        }
    }

    /// Waits for everything to be written; returns the sink and what was written.
    pub(crate) fn finish(self) -> io::Result<(W, Summary)> {
        match self {
            Self::Behind(w) => w.finish(),
            Self::Inline(mut sink) => {
                sink.flush()?;
                let (summary, sink) = sink.into_summary();
                Ok((sink, summary))
            }
        }
    }
}

/// The stage of a [`ReadAhead`]: fills each empty block it is given from the source,
/// hashing what it reads. After the end of the source, blocks come back empty.
struct Fill {
    src: Box<dyn Read + Send>,
    tally: Tally,
    at_end: bool,
    /// An error met after some bytes of a block: those come first, the error with the
    /// next block.
    failed: Option<io::Error>,
}

impl Stage<Filled> for Fill {
    type Output = Filled;
    type Error = io::Error;

    fn apply(&mut self, mut f: Filled) -> io::Result<Filled> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        f.len = 0;
        while !self.at_end && f.len < BLOCK {
            match self.src.read(f.block.get_mut(f.len..).unwrap_or_default()) {
                Ok(0) => self.at_end = true,
                Ok(n) => f.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if f.len == 0 => return Err(e),
                Err(e) => {
                    self.failed = Some(e);
                    break;
                }
            }
        }
        self.tally.add(f.data());
        Ok(f)
    }
}

/// Reads a source on its own thread (an [`ocicrypt_pipeline::Worker`]), [`BLOCK`] bytes
/// at a time, up to [`DEPTH`] blocks ahead of the reader, optionally hashing what it reads.
pub(crate) struct ReadAhead {
    worker: Worker<Filled, Fill>,
    current: Option<Filled>,
    pos: usize,
    /// Set once the source has ended: `Ok` at its end, else the error, repeated to every
    /// later read.
    ended: Option<Result<(), (io::ErrorKind, String)>>,
}

impl ReadAhead {
    /// Starts reading `src` on a new thread; with `hash`, the summary carries the SHA-256
    /// of everything read.
    pub(crate) fn spawn<R: Read + Send + 'static>(src: R, hash: bool) -> io::Result<Self> {
        let fill = Fill {
            src: Box::new(src),
            tally: Tally::new(hash),
            at_end: false,
            failed: None,
        };
        let mut worker = Worker::builder()
            .name("ocicrypt-read")
            .depth(DEPTH + 1)
            .start(fill)
            .map_err(|e| e.error)?;
        for _ in 0..=DEPTH {
            // Refused only if the thread already stopped: reads then say so.
            let _ = worker.submit(Filled::new());
        }
        Ok(Self {
            worker,
            current: None,
            pos: 0,
            ended: None,
        })
    }

    /// Waits for the thread and returns what it read. Call it after a read returned
    /// `Ok(0)`; earlier, the summary covers only what was read ahead so far.
    pub(crate) fn finish(self) -> io::Result<Summary> {
        match self.worker.finish() {
            Ok(fill) => Ok(fill.tally.finish()),
            Err(e) => Err(worker_error(e, "read-ahead")),
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(cur) = &self.current {
                let rest = cur.data().get(self.pos..).unwrap_or_default();
                if !rest.is_empty() {
                    let n = rest.len().min(out.len());
                    if let (Some(dst), Some(src)) = (out.get_mut(..n), rest.get(..n)) {
                        dst.copy_from_slice(src);
                    }
                    self.pos += n;
                    return Ok(n);
                }
            }
            match &self.ended {
                Some(Ok(())) => return Ok(0),
                Some(Err((kind, msg))) => return Err(io::Error::new(*kind, msg.clone())),
                None => {}
            }
            if out.is_empty() {
                return Ok(0);
            }
            if let Some(used) = self.current.take() {
                // Never full: this block was one of those in flight.
                let _ = self.worker.submit(used);
            }
            match self.worker.receive() {
                Ok(f) if f.len == 0 => self.ended = Some(Ok(())),
                Ok(f) => {
                    self.current = Some(f);
                    self.pos = 0;
                }
                Err(e) => {
                    let e = worker_error(e, "read-ahead");
                    self.ended = Some(Err((e.kind(), e.to_string())));
                    return Err(e);
                }
            }
        }
    }
}

/// The stage of a [`WriteBehind`]: writes each block to the sink, hashing it, and gives
/// the block back for reuse.
struct Drain<W> {
    sink: W,
    tally: Tally,
}

impl<W: Write + Send + 'static> Stage<Filled> for Drain<W> {
    type Output = Filled;
    type Error = io::Error;

    fn apply(&mut self, f: Filled) -> io::Result<Filled> {
        self.tally.add(f.data());
        self.sink.write_all(f.data())?;
        Ok(f)
    }
}

/// Writes to a sink on its own thread (an [`ocicrypt_pipeline::Worker`]), [`BLOCK`] bytes
/// at a time, optionally hashing what it writes. A write error of the sink is reported by
/// a later write or by [`finish`](WriteBehind::finish).
pub(crate) struct WriteBehind<W: Write + Send + 'static> {
    worker: Worker<Filled, Drain<W>>,
    current: Filled,
    allocated: usize,
    /// The sink's error, once the thread has reported it.
    failed: Option<(io::ErrorKind, String)>,
}

impl<W: Write + Send + 'static> WriteBehind<W> {
    /// Starts a thread that writes to `sink`; with `hash`, the summary carries the SHA-256
    /// of everything written.
    pub(crate) fn spawn(sink: W, hash: bool) -> io::Result<Self> {
        let drain = Drain {
            sink,
            tally: Tally::new(hash),
        };
        let worker = Worker::builder()
            .name("ocicrypt-write")
            .depth(DEPTH)
            .start(drain)
            .map_err(|e| e.error)?;
        Ok(Self {
            worker,
            current: Filled::new(),
            allocated: 1,
            failed: None,
        })
    }

    /// Copies `src` to its end, reading straight into the blocks; returns the byte count.
    pub(crate) fn copy_from<R: Read + ?Sized>(&mut self, src: &mut R) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            self.check()?;
            let free = self.current.block.get_mut(self.current.len..);
            let n = match src.read(free.unwrap_or_default()) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.current.len += n;
            total += n as u64;
            if self.current.len == BLOCK {
                self.send_current()?;
            }
        }
    }

    /// Writes what is left, waits for the thread and returns the sink and what was
    /// written.
    pub(crate) fn finish(mut self) -> io::Result<(W, Summary)> {
        self.check()?;
        if self.current.len > 0 {
            if self.worker.is_full() {
                let _ = self.receive()?;
            }
            let last = std::mem::replace(&mut self.current, Filled::empty());
            if self.worker.submit(last).is_err() {
                return Err(self.stopped());
            }
        }
        let Drain { mut sink, tally } = self
            .worker
            .finish()
            .map_err(|e| worker_error(e, "write-behind"))?;
        sink.flush()?;
        Ok((sink, tally.finish()))
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            None => Ok(()),
        }
    }

    /// A block the thread has written, waiting for it; its error is kept for every later
    /// call.
    fn receive(&mut self) -> io::Result<Filled> {
        match self.worker.receive() {
            Ok(f) => Ok(f),
            Err(e) => Err(self.fail(worker_error(e, "write-behind"))),
        }
    }

    /// Keeps `e` for every later call, and returns it.
    fn fail(&mut self, e: io::Error) -> io::Error {
        self.failed = Some((e.kind(), e.to_string()));
        e
    }

    fn send_current(&mut self) -> io::Result<()> {
        let ready = match self.worker.try_receive() {
            Ok(ready) => ready,
            Err(e) => return Err(self.fail(worker_error(e, "write-behind"))),
        };
        let mut next = match ready {
            Some(b) => b,
            None if self.allocated <= DEPTH => {
                self.allocated += 1;
                Filled::new()
            }
            None => self.receive()?,
        };
        next.len = 0;
        let full = std::mem::replace(&mut self.current, next);
        if self.worker.submit(full).is_err() {
            return Err(self.stopped());
        }
        Ok(())
    }

    /// Why the thread stopped, when it refused a block: the sink's error, kept for every
    /// later call.
    fn stopped(&mut self) -> io::Error {
        let e = worker_error(self.worker.failure(), "write-behind");
        self.fail(e)
    }
}

impl<W: Write + Send + 'static> Write for WriteBehind<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let free = self
            .current
            .block
            .get_mut(self.current.len..)
            .unwrap_or_default();
        let n = free.len().min(buf.len());
        if let (Some(dst), Some(src)) = (free.get_mut(..n), buf.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.current.len += n;
        if self.current.len == BLOCK {
            self.send_current()?;
        }
        Ok(n)
    }

    /// Does nothing: the bytes reach the sink by [`finish`](WriteBehind::finish).
    fn flush(&mut self) -> io::Result<()> {
        self.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 1000) as u8).collect()
    }

    fn sha(d: &[u8]) -> String {
        format!(
            "sha256:{}",
            hex::encode(ring::digest::digest(&ring::digest::SHA256, d).as_ref())
        )
    }

    /// Returns at most `max` bytes per read, to exercise partial blocks.
    struct Trickle(io::Cursor<Vec<u8>>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1);
            self.0.read(buf.get_mut(..n).unwrap_or_default())
        }
    }

    #[test]
    fn read_ahead_passes_and_hashes_everything() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 5 * BLOCK + 123] {
            for step in [1000, BLOCK, 3 * BLOCK] {
                let d = data(len);
                let mut r =
                    ReadAhead::spawn(Trickle(io::Cursor::new(d.clone()), step), true).unwrap();
                let mut got = Vec::new();
                r.read_to_end(&mut got).unwrap();
                assert_eq!(got.len(), d.len());
                assert!(got == d, "len {len} step {step}");
                assert_eq!(r.read(&mut [0; 10]).unwrap(), 0);
                let s = r.finish().unwrap();
                assert_eq!(s.len, len as u64);
                assert_eq!(s.digest.unwrap(), sha(&d));
            }
        }
    }

    struct FailsAfter(usize);
    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, "no more"));
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn inline_and_threaded_pipes_agree() {
        let d = data(3 * BLOCK + 5);
        let mut results = Vec::new();
        for threaded in [false, true] {
            let mut input =
                Input::open(Trickle(io::Cursor::new(d.clone()), 100_000), true, threaded).unwrap();
            let mut output = Output::open(Shared::default(), true, threaded).unwrap();
            assert_eq!(output.copy_from(&mut input).unwrap(), d.len() as u64);
            let read = input.finish().unwrap();
            let (sink, written) = output.finish().unwrap();
            assert!(*sink.0.lock().unwrap() == d);
            assert_eq!(read.digest.as_deref(), Some(sha(&d).as_str()));
            results.push((read.len, read.digest, written.len, written.digest));
        }
        assert_eq!(results[0], results[1]);
        // Unhashed, the summaries carry no digest.
        let input = Input::open(io::empty(), false, false).unwrap();
        assert!(input.finish().unwrap().digest.is_none());
    }

    #[test]
    fn read_errors_arrive_after_the_data_and_stick() {
        let mut r = ReadAhead::spawn(FailsAfter(BLOCK + 10), false).unwrap();
        let mut got = Vec::new();
        let e = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(got.len(), BLOCK + 10);
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let e = r.read(&mut [0; 4]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(e.to_string(), "no more");
    }

    #[test]
    fn dropping_a_read_ahead_early_drops_its_source_before_returning() {
        // An endless source: the thread is reading it when the reader is dropped.
        struct Endless(Arc<Mutex<bool>>);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                buf.fill(1);
                Ok(buf.len())
            }
        }
        impl Drop for Endless {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = true;
            }
        }
        let dropped = Arc::new(Mutex::new(false));
        let mut r = ReadAhead::spawn(Endless(dropped.clone()), false).unwrap();
        let mut buf = [0; 100];
        r.read_exact(&mut buf).unwrap();
        assert!(!*dropped.lock().unwrap());
        drop(r); // a hang here fails the test by timeout
        assert!(*dropped.lock().unwrap());
    }

    /// A sink whose bytes the test can see after the pipe has given it back or dropped it.
    #[derive(Clone, Debug, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>, Option<usize>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut v = self.0.lock().unwrap();
            if let Some(limit) = self.1
                && v.len() + buf.len() > limit
            {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            v.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_behind_passes_and_hashes_everything() {
        for len in [0, 1, BLOCK - 1, BLOCK, 4 * BLOCK + 77] {
            let d = data(len);
            // Through copy_from, with a source that returns small pieces.
            let mut w = WriteBehind::spawn(Shared::default(), true).unwrap();
            let n = w
                .copy_from(&mut Trickle(io::Cursor::new(d.clone()), 70_000))
                .unwrap();
            assert_eq!(n, len as u64);
            let (sink, s) = w.finish().unwrap();
            assert!(*sink.0.lock().unwrap() == d);
            assert_eq!(s.len, len as u64);
            assert_eq!(s.digest.unwrap(), sha(&d));
            // Through write_all, unhashed.
            let mut w = WriteBehind::spawn(Shared::default(), false).unwrap();
            for piece in d.chunks(300_000) {
                w.write_all(piece).unwrap();
            }
            w.flush().unwrap();
            let (sink, s) = w.finish().unwrap();
            assert!(*sink.0.lock().unwrap() == d);
            assert_eq!((s.len, s.digest), (len as u64, None));
        }
    }

    #[test]
    fn write_errors_are_reported_with_their_kind() {
        // Fails inside the stream: a later write or copy_from says so.
        let sink = Shared(Arc::default(), Some(BLOCK + 5));
        let mut w = WriteBehind::spawn(sink, true).unwrap();
        let e = w.copy_from(&mut io::repeat(3)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        let e = w.write(&[1]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert!(w.finish().is_err());
        // Fails on the last block: finish says so.
        let sink = Shared(Arc::default(), Some(10));
        let mut w = WriteBehind::spawn(sink, false).unwrap();
        w.write_all(&[0; 20]).unwrap();
        let e = w.finish().unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        // The thread has stopped at the error when the last block is handed over: the
        // sink's error still, not "the thread stopped".
        let sink = Shared(Arc::default(), Some(10));
        let mut w = WriteBehind::spawn(sink, false).unwrap();
        w.write_all(&vec![0; BLOCK + 1]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let e = w.finish().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn dropping_a_write_behind_drops_its_sink_before_returning() {
        struct Flag(Arc<Mutex<bool>>);
        impl Write for Flag {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl Drop for Flag {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = true;
            }
        }
        let dropped = Arc::new(Mutex::new(false));
        let mut w = WriteBehind::spawn(Flag(dropped.clone()), false).unwrap();
        w.write_all(&vec![0; 3 * BLOCK]).unwrap();
        drop(w);
        assert!(*dropped.lock().unwrap());
    }
}
