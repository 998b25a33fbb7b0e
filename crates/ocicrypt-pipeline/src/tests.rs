use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use super::*;

/// Doubles each item and sums them; fails on 13; panics on 666; waits on a gate if it has
/// one; tells `dropped` which thread dropped it.
struct Toy {
    sum: u64,
    gate: Option<Receiver<()>>,
    dropped: Option<Sender<thread::ThreadId>>,
}

impl Toy {
    fn new() -> Self {
        Self::with(None, None)
    }

    fn with(gate: Option<Receiver<()>>, dropped: Option<Sender<thread::ThreadId>>) -> Self {
        Self {
            sum: 0,
            gate,
            dropped,
        }
    }
}

impl Stage<u64> for Toy {
    type Output = u64;
    type Error = String;

    fn apply(&mut self, item: u64) -> Result<u64, String> {
        if let Some(gate) = &self.gate {
            let _ = gate.recv();
        }
        assert_ne!(item, 666, "a stage that panics");
        if item == 13 {
            return Err("unlucky".to_owned());
        }
        self.sum += item;
        Ok(item * 2)
    }
}

impl Drop for Toy {
    fn drop(&mut self) {
        if let Some(tx) = &self.dropped {
            let _ = tx.send(thread::current().id());
        }
    }
}

fn start(stage: Toy, depth: usize) -> Worker<u64, Toy> {
    Worker::builder()
        .name("test-worker")
        .depth(depth)
        .start(stage)
        .unwrap()
}

#[test]
fn outputs_come_back_in_order_and_finish_returns_the_stage() {
    let mut w = start(Toy::new(), 3);
    let mut out = Vec::new();
    for i in 100..200 {
        if w.is_full() {
            out.push(w.receive().unwrap());
        }
        w.submit(i).unwrap();
    }
    assert_eq!(w.in_flight(), 3);
    while w.in_flight() > 0 {
        out.push(w.receive().unwrap());
    }
    assert_eq!(out, (100..200).map(|i| i * 2).collect::<Vec<_>>());
    assert_eq!(w.finish().unwrap().sum, (100..200).sum::<u64>());
}

#[test]
fn at_most_depth_items_are_in_flight() {
    let mut w = start(Toy::new(), 2);
    w.submit(1).unwrap();
    w.submit(2).unwrap();
    assert!(w.is_full());
    assert!(matches!(w.submit(3), Err(Refused::Full(3))));
    assert_eq!(w.receive().unwrap(), 2);
    w.submit(3).unwrap();
    // finish waits for what is in flight.
    assert_eq!(w.finish().unwrap().sum, 6);
}

#[test]
fn try_receive_never_waits_and_notify_runs_after_each_output() {
    let (open, gate) = mpsc::channel();
    let notified = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&notified);
    let mut w = Worker::builder()
        .depth(2)
        .notify(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .start(Toy::with(Some(gate), None))
        .unwrap();
    assert_eq!(w.try_receive().unwrap(), None, "nothing in flight");
    w.submit(5).unwrap();
    assert_eq!(
        w.try_receive().unwrap(),
        None,
        "the stage waits on its gate"
    );
    assert_eq!(notified.load(Ordering::SeqCst), 0);
    open.send(()).unwrap();
    let mut waited = 0;
    let out = loop {
        if let Some(out) = w.try_receive().unwrap() {
            break out;
        }
        waited += 1;
        assert!(waited < 1000, "no output after 10 s");
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(out, 10);
    assert_eq!(notified.load(Ordering::SeqCst), 1);
    assert_eq!(w.receive(), Err(Error::Idle));
}

#[test]
fn the_first_stage_error_stops_the_worker() {
    let mut w = start(Toy::new(), 3);
    w.submit(1).unwrap();
    w.submit(13).unwrap();
    w.submit(2).unwrap();
    assert_eq!(w.receive().unwrap(), 2);
    assert_eq!(w.receive(), Err(Error::Stage("unlucky".to_owned())));
    // The item after it is never processed.
    assert_eq!(w.receive(), Err(Error::Stopped));
    assert!(matches!(w.submit(4), Err(Refused::Stopped(4))));
    assert!(matches!(w.finish(), Err(Error::Stopped)));

    // failure() receives up to the error, once, whether the item after it was taken
    // (the worker had not stopped yet) or refused.
    let mut w = start(Toy::new(), 3);
    w.submit(1).unwrap();
    w.submit(13).unwrap();
    let _ = w.submit(2);
    assert_eq!(w.failure(), Error::Stage("unlucky".to_owned()));
    assert_eq!(w.failure(), Error::Stopped);
    let mut w = start(Toy::new(), 1);
    w.submit(666).unwrap();
    assert_eq!(
        w.failure(),
        Error::Stopped,
        "a panicking stage has no error"
    );

    // finish reports an error among the items it waits for.
    let mut w = start(Toy::new(), 3);
    w.submit(13).unwrap();
    assert_eq!(
        w.finish().map(|s| s.sum),
        Err(Error::Stage("unlucky".to_owned()))
    );
}

#[test]
fn a_panicking_stage_is_a_stopped_worker() {
    let mut w = start(Toy::new(), 2);
    w.submit(666).unwrap();
    assert_eq!(w.receive(), Err(Error::Stopped));
    assert!(matches!(w.finish(), Err(Error::Stopped)));
}

#[test]
fn dropping_a_worker_drops_its_stage_on_the_dropping_thread() {
    let (tx, dropped) = mpsc::channel();
    let (open, gate) = mpsc::channel();
    let mut w = start(Toy::with(Some(gate), Some(tx)), 2);
    w.submit(1).unwrap();
    w.submit(2).unwrap();
    // The worker is inside the first item: drop waits for it, then drops the stage here.
    let opener = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        let _ = open.send(());
        let _ = open.send(());
    });
    drop(w);
    assert_eq!(dropped.try_recv(), Ok(thread::current().id()));
    opener.join().unwrap();
}

#[test]
fn finish_with_nothing_in_flight_takes_the_stage_at_once() {
    let (tx, dropped) = mpsc::channel();
    let w = start(Toy::with(None, Some(tx)), 1);
    let stage = w.finish().unwrap();
    assert!(dropped.try_recv().is_err(), "given back, not dropped");
    drop(stage);
    assert_eq!(dropped.try_recv(), Ok(thread::current().id()));
}

#[test]
fn debug_shows_no_items() {
    assert_eq!(
        format!("{:?}", Refused::Full(vec![1u8])),
        "Refused::Full(..)"
    );
    let b = Worker::builder().depth(0);
    assert!(format!("{b:?}").contains("depth: 1"), "{b:?}");
}
