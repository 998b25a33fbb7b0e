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
//! Neither pipe leaves a thread behind: dropping one stops its thread and waits for it (so
//! that a staged output file is removed before the command exits).
//!
//! [`Input`] and [`Output`] are what commands use: the threaded pipes, or the same reads,
//! writes and hashing on the caller's thread when the command runs one thread per layer
//! (`image --jobs`).

use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::thread::{self, JoinHandle};

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

    fn data(&self) -> &[u8] {
        self.block.get(..self.len).unwrap_or_default()
    }
}

fn died(what: &str) -> io::Error {
    io::Error::other(format!("the {what} thread stopped unexpectedly"))
}

enum Msg {
    Data(Filled),
    End,
    Failed(io::Error),
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

/// Reads a source on its own thread, [`BLOCK`] bytes at a time, up to [`DEPTH`] blocks
/// ahead of the reader, optionally hashing what it reads.
pub(crate) struct ReadAhead {
    full: Option<Receiver<Msg>>,
    empties: Option<SyncSender<Filled>>,
    current: Option<Filled>,
    pos: usize,
    /// Set once the thread sent its last message: `Ok` at the end of the source, else the
    /// error, repeated to every later read.
    ended: Option<Result<(), (io::ErrorKind, String)>>,
    thread: Option<JoinHandle<Summary>>,
}

impl ReadAhead {
    /// Starts reading `src` on a new thread; with `hash`, the summary carries the SHA-256
    /// of everything read.
    pub(crate) fn spawn<R: Read + Send + 'static>(src: R, hash: bool) -> io::Result<Self> {
        let (give_full, full) = mpsc::sync_channel(DEPTH);
        let (give_empty, empties) = mpsc::sync_channel(DEPTH + 1);
        let thread = thread::Builder::new()
            .name("ocicrypt-read".to_owned())
            .spawn(move || read_loop(src, Tally::new(hash), &give_full, &empties))?;
        Ok(Self {
            full: Some(full),
            empties: Some(give_empty),
            current: None,
            pos: 0,
            ended: None,
            thread: Some(thread),
        })
    }

    /// Waits for the thread and returns what it read. Call it after a read returned
    /// `Ok(0)`; earlier, the summary covers only what was read ahead so far.
    pub(crate) fn finish(mut self) -> io::Result<Summary> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<Summary> {
        self.full = None;
        self.empties = None;
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| died("read-ahead")),
            None => Err(died("read-ahead")),
        }
    }
}

fn read_loop<R: Read>(
    mut src: R,
    mut tally: Tally,
    full: &SyncSender<Msg>,
    empties: &Receiver<Filled>,
) -> Summary {
    let mut allocated = 0;
    loop {
        // A block given back, a new one while under the limit, or wait for one.
        let next = match empties.try_recv() {
            Ok(b) => Ok(b),
            Err(TryRecvError::Empty) if allocated <= DEPTH => {
                allocated += 1;
                Ok(Filled::new())
            }
            Err(TryRecvError::Empty) => empties.recv().map_err(|_| ()),
            Err(TryRecvError::Disconnected) => Err(()),
        };
        let Ok(mut f) = next else {
            break; // the reader is gone
        };
        f.len = 0;
        let mut error = None;
        while f.len < BLOCK {
            match src.read(f.block.get_mut(f.len..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(n) => f.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let at_end = f.len < BLOCK;
        if f.len > 0 {
            tally.add(f.data());
            if full.send(Msg::Data(f)).is_err() {
                break;
            }
        }
        if let Some(e) = error {
            let _ = full.send(Msg::Failed(e));
            break;
        }
        if at_end {
            let _ = full.send(Msg::End);
            break;
        }
    }
    tally.finish()
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
            if let (Some(used), Some(empties)) = (self.current.take(), &self.empties) {
                // Never blocks: the channel holds every block there is.
                let _ = empties.send(used);
            }
            let msg = match &self.full {
                Some(rx) => rx.recv().map_err(|_| died("read-ahead"))?,
                None => return Err(died("read-ahead")),
            };
            match msg {
                Msg::Data(f) => {
                    self.current = Some(f);
                    self.pos = 0;
                }
                Msg::End => self.ended = Some(Ok(())),
                Msg::Failed(e) => {
                    self.ended = Some(Err((e.kind(), e.to_string())));
                    return Err(e);
                }
            }
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

/// Writes to a sink on its own thread, [`BLOCK`] bytes at a time, optionally hashing what
/// it writes. A write error of the sink is reported by a later write or by
/// [`finish`](WriteBehind::finish).
pub(crate) struct WriteBehind<W: Write + Send + 'static> {
    full: Option<SyncSender<Filled>>,
    empties: Receiver<Filled>,
    current: Filled,
    allocated: usize,
    thread: Option<JoinHandle<io::Result<(W, Summary)>>>,
    /// The sink's error, once the thread has reported it.
    failed: Option<(io::ErrorKind, String)>,
}

impl<W: Write + Send + 'static> WriteBehind<W> {
    /// Starts a thread that writes to `sink`; with `hash`, the summary carries the SHA-256
    /// of everything written.
    pub(crate) fn spawn(sink: W, hash: bool) -> io::Result<Self> {
        let (give_full, full) = mpsc::sync_channel::<Filled>(DEPTH);
        let (give_empty, empties) = mpsc::sync_channel(DEPTH + 1);
        let thread = thread::Builder::new()
            .name("ocicrypt-write".to_owned())
            .spawn(move || {
                let mut sink = sink;
                let mut tally = Tally::new(hash);
                while let Ok(f) = full.recv() {
                    tally.add(f.data());
                    sink.write_all(f.data())?;
                    // The writer may be finishing; then the block is just dropped.
                    let _ = give_empty.send(f);
                }
                sink.flush()?;
                Ok((sink, tally.finish()))
            })?;
        Ok(Self {
            full: Some(give_full),
            empties,
            current: Filled::new(),
            allocated: 1,
            thread: Some(thread),
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
            let last = std::mem::replace(
                &mut self.current,
                Filled {
                    block: Zeroizing::new(Vec::new()),
                    len: 0,
                },
            );
            self.send(last)?;
        }
        self.full = None;
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| died("write-behind"))?,
            None => Err(died("write-behind")),
        }
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            None => Ok(()),
        }
    }

    fn send_current(&mut self) -> io::Result<()> {
        let next = match self.empties.try_recv() {
            Ok(b) => Some(b),
            Err(TryRecvError::Empty) if self.allocated <= DEPTH => {
                self.allocated += 1;
                Some(Filled::new())
            }
            Err(TryRecvError::Empty) => self.empties.recv().ok(),
            Err(TryRecvError::Disconnected) => None,
        };
        let Some(mut next) = next else {
            return Err(self.thread_error());
        };
        next.len = 0;
        let full = std::mem::replace(&mut self.current, next);
        self.send(full)
    }

    fn send(&mut self, f: Filled) -> io::Result<()> {
        let sent = self.full.as_ref().map(|tx| tx.send(f).is_ok());
        if sent == Some(true) {
            Ok(())
        } else {
            Err(self.thread_error())
        }
    }

    /// The thread stopped early: its error, kept for every later call.
    fn thread_error(&mut self) -> io::Error {
        self.full = None;
        let e = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => died("write-behind"),
        };
        self.failed = Some((e.kind(), e.to_string()));
        e
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

impl<W: Write + Send + 'static> Drop for WriteBehind<W> {
    fn drop(&mut self) {
        self.full = None;
        if let Some(t) = self.thread.take() {
            // Drops the sink on this thread's watch (a staged file is removed by then).
            let _ = t.join();
        }
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
    fn dropping_a_read_ahead_early_stops_its_thread() {
        // An endless source: the thread must still end when the reader is dropped.
        let mut r = ReadAhead::spawn(io::repeat(1), false).unwrap();
        let mut buf = [0; 100];
        r.read_exact(&mut buf).unwrap();
        drop(r); // joins; a hang here fails the test by timeout
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
