//! The pool's I/O thread runs only cf's code (issue 10, principle 1): a user's `Deserialize`,
//! `Drop` or done-callback cannot break or stall the pool.
//!
//! Each test reproduces an observation on `main` before the fix: a panicking `Deserialize` of a
//! result, or a panicking `Drop` of a result whose future was dropped, killed the I/O thread
//! (the whole pool broke); a slow done-callback stalled every worker; a done-callback that
//! waited on another task of the same pool deadlocked it.
//!
//! The callback panic handler is process-global: this binary installs one recording handler.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use util::panics::{handled_within, install};
use util::{Gate, LONG, echo, gated, process_pool};

/// How long a test waits for what must happen promptly once the fix is in (on `main`, the
/// tests below fail by running out of it).
const PROMPT: Duration = Duration::from_secs(10);

/// A value whose `Deserialize` panics (its `Serialize` is ordinary).
#[derive(Debug, Serialize)]
pub struct BadDecode(u32);

impl<'de> Deserialize<'de> for BadDecode {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("BadDecode cannot be decoded");
    }
}

#[cf::task]
fn bad_decode() -> BadDecode {
    BadDecode(7)
}

/// Armed in the parent only: a worker drops its results without a panic.
static ARMED: AtomicBool = AtomicBool::new(false);

/// A value whose `Drop` panics in the parent.
#[derive(Debug, Serialize, Deserialize)]
pub struct DropBomb(u32);

impl Drop for DropBomb {
    fn drop(&mut self) {
        if ARMED.load(Ordering::Relaxed) {
            panic!("DropBomb {} went off", self.0);
        }
    }
}

#[cf::task]
fn drop_bomb(n: u32) -> DropBomb {
    DropBomb(n)
}

/// A panicking `Deserialize` of a result fails that future (a codec error) and the pool keeps
/// working. On `main` it killed the I/O thread: the future failed as abandoned and the pool was
/// broken for good.
#[test]
fn a_panicking_deserialize_fails_only_its_future() {
    let pool = process_pool(1);
    let bad = pool.submit(bad_decode, ()).unwrap();
    let error = bad.result_timeout(LONG).unwrap_err();
    assert!(matches!(error, cf::TaskError::Codec { .. }), "{error:?}");
    assert!(
        error.to_string().contains("BadDecode cannot be decoded"),
        "{error}"
    );
    assert_eq!(pool.submit(echo, 5).unwrap().result_timeout(LONG), Ok(&5));
}

/// A panicking `Drop` of a result whose future was dropped runs off the I/O thread (its panic
/// goes to the callback panic handler) and the pool keeps working. On `main` it ran on the I/O
/// thread and killed it: the pool broke.
#[test]
fn a_panicking_drop_of_an_unwanted_result_spares_the_pool() {
    install();
    let pool = process_pool(1);
    ARMED.store(true, Ordering::Relaxed);
    let gate = Gate::new();
    let held = pool.submit(gated, (gate.path(), 1)).unwrap();
    // Queued behind the gated task: its future is gone before its result comes.
    drop(pool.submit(drop_bomb, 41).unwrap());
    gate.entered().release();
    assert_eq!(held.result_timeout(LONG), Ok(&1));
    assert!(
        handled_within("DropBomb 41 went off", PROMPT),
        "the drop's panic never reached the handler"
    );
    assert_eq!(pool.submit(echo, 6).unwrap().result_timeout(LONG), Ok(&6));
    ARMED.store(false, Ordering::Relaxed);
}

/// A done-callback that blocks (here: until the test lets it go, standing for a 500 ms sleep)
/// does not delay an unrelated task: the task completes while the callback still blocks. On
/// `main` the callback ran on the I/O thread, and no other task completed until it returned.
#[test]
fn a_blocking_callback_does_not_delay_other_tasks() {
    let pool = process_pool(2);
    let gate = Gate::new();
    let first = pool.submit(gated, (gate.path(), 1)).unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let finished = Arc::new(AtomicBool::new(false));
    let finished_in = finished.clone();
    first.add_done_callback(move |_| {
        entered_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(PROMPT);
        finished_in.store(true, Ordering::SeqCst);
    });
    gate.entered().release();
    entered_rx.recv_timeout(LONG).expect("the callback runs");
    let other = pool.submit(echo, 9).unwrap();
    assert_eq!(other.result_timeout(PROMPT), Ok(&9));
    assert!(
        !finished.load(Ordering::SeqCst),
        "the unrelated task waited for the callback"
    );
    release_tx.send(()).unwrap();
}

/// A done-callback that waits for another task of the same pool gets its result. On `main` the
/// callback blocked the I/O thread that would have completed that task: a deadlock (here, the
/// bounded wait ran out).
#[test]
fn a_callback_may_wait_on_another_task_of_its_pool() {
    let (_serial, pool) = process_pool(1).split();
    let pool = Arc::new(pool);
    let gate = Gate::new();
    let first = pool.submit(gated, (gate.path(), 1)).unwrap();
    let (tx, rx) = mpsc::channel();
    let in_callback = pool.clone();
    first.add_done_callback(move |_| {
        let second = in_callback.submit(echo, 2).unwrap();
        tx.send(second.result_timeout(PROMPT).copied()).unwrap();
    });
    gate.entered().release();
    assert_eq!(rx.recv_timeout(LONG).expect("the callback ran"), Ok(2));
}

/// Callbacks of a process pool's futures run in the order the futures completed, on one thread
/// that is not the I/O thread, and a shutdown returns after they have run.
#[test]
fn callbacks_run_in_completion_order_before_shutdown_returns() {
    let pool = process_pool(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let gate = Gate::new();
    let first = pool.submit(gated, (gate.path(), 0)).unwrap();
    let futures: Vec<_> = (1..=20u64).map(|i| pool.submit(echo, i).unwrap()).collect();
    let names = Arc::new(Mutex::new(Vec::new()));
    for future in &futures {
        let order = order.clone();
        let names = names.clone();
        future.add_done_callback(move |f| {
            order.lock().unwrap().push(*f.result().unwrap());
            let name = std::thread::current().name().map(str::to_owned);
            names.lock().unwrap().push(name);
        });
    }
    gate.entered().release();
    drop(first);
    drop(pool);
    assert_eq!(*order.lock().unwrap(), (1..=20).collect::<Vec<_>>());
    let names = names.lock().unwrap();
    assert!(
        names.iter().all(|n| n.as_deref() == Some("cf-pool-done")),
        "{names:?}"
    );
}
