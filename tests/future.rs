//! `Future`: its states, `cancel`, `result`/`exception` with and without a timeout, done
//! callbacks, identity (`Hash`/`Eq`), `into_result` and `.await`, against both executors.
//!
//! Partly adapted from CPython's `Lib/test/test_concurrent_futures/test_future.py`
//! (`test_cancel`, `test_cancelled`, `test_done`, `test_running`, `test_repr`,
//! `test_result_with_timeout`, `test_result_with_success`, `test_result_with_cancel`,
//! `test_exception_with_timeout`, `test_exception_with_success`, `test_done_callback_with_result`,
//! `test_done_callback_with_exception`, `test_done_callback_with_cancel`,
//! `test_done_callback_already_successful`, `test_done_callback_already_failed`,
//! `test_done_callback_already_cancelled`). Copyright (c) 2001 Python Software Foundation; All
//! Rights Reserved. Used under the PSF License Agreement (Python Software Foundation License
//! Version 2).

mod util;

use std::collections::{HashMap, HashSet};
use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll};
use std::thread;

use cf::{AnyFuture, Future, Never, Submit, TaskError, TaskMarker, Timeout};
use util::{Entered, Gate, LONG, SHORT, block_on, both, echo, gated, later};

/// Fails with its own error.
#[cf::task]
fn fail(x: u64) -> Result<u64, String> {
    Err(format!("bad {x}"))
}

/// Succeeds through `Result`.
#[cf::task]
fn succeed(x: u64) -> Result<u64, String> {
    Ok(x)
}

/// Panics.
#[cf::task]
fn boom(x: u64) -> u64 {
    panic!("boom {x}")
}

/// Creates the file `path`: leaves a trace that the task ran.
#[cf::task]
fn touch(path: String) {
    std::fs::write(path, b"ran").expect("write the marker file");
}

/// Submits to a one-worker pool a blocker that holds the worker at `gate`, [`FILL`] fillers
/// behind it (a process pool hands a worker tasks ahead of time, two while it knows nothing of
/// how long they take, and those count as running), and then the target, which is certain to stay pending until the blocker is
/// released.
///
/// Returns (blocker, the blocker at the gate, target); the target is `echo(42)`.
fn busy<P>(pool: &P, gate: &Gate) -> (Future<u64>, Entered, Future<u64>)
where
    P: Submit<gated, (String, u64), TaskMarker, Output = u64, Error = Never>
        + Submit<echo, u64, TaskMarker, Output = u64, Error = Never>,
{
    let blocker = pool.submit(gated, (gate.path(), 0)).unwrap();
    let entered = gate.entered();
    for i in 0..FILL {
        pool.submit(echo, i).unwrap();
    }
    let target = pool.submit(echo, 42).unwrap();
    assert!(
        !target.running() && !target.done(),
        "the target must be pending: {target:?}"
    );
    (blocker, entered, target)
}

/// Enough tasks to fill what a process pool sends a worker ahead of time.
const FILL: u64 = 8;

fn state<T, E>(future: &Future<T, E>) -> (bool, bool, bool) {
    (future.running(), future.done(), future.cancelled())
}

// (running, done, cancelled)
const PENDING: (bool, bool, bool) = (false, false, false);
const RUNNING: (bool, bool, bool) = (true, false, false);
const FINISHED: (bool, bool, bool) = (false, true, false);
const CANCELLED: (bool, bool, bool) = (false, true, true);

both!(fn states_pending_running_finished(pool) {
    let gate = Gate::new();
    let (blocker, entered, target) = busy(&*pool, &gate);
    assert_eq!(state(&blocker), RUNNING);
    assert_eq!(state(&target), PENDING);
    entered.release();
    assert_eq!(target.result(), Ok(&42));
    assert_eq!(state(&target), FINISHED);
    assert_eq!(blocker.result(), Ok(&0));
    assert_eq!(state(&blocker), FINISHED);
});

both!(fn failed_and_panicked_futures_are_finished(pool) {
    let failed = pool.submit(fail, 3).unwrap();
    assert_eq!(failed.result(), Err(TaskError::Failed("bad 3".to_owned())));
    assert_eq!(state(&failed), FINISHED);
    let panicked = pool.submit(boom, 4).unwrap();
    match panicked.result() {
        Err(TaskError::Panicked(info)) => assert_eq!(info.message, "boom 4"),
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(state(&panicked), FINISHED);
    let ok = pool.submit(succeed, 5).unwrap();
    assert_eq!(ok.result(), Ok(&5));
});

// test_repr: the Debug text names the state.
both!(fn debug_names_the_state(pool) {
    let gate = Gate::new();
    let (blocker, entered, target) = busy(&*pool, &gate);
    assert!(format!("{blocker:?}").contains("state: \"running\""), "{blocker:?}");
    assert!(format!("{target:?}").contains("state: \"pending\""), "{target:?}");
    let cancelled = pool.submit(echo, 7).unwrap();
    assert!(cancelled.cancel());
    assert!(format!("{cancelled:?}").contains("state: \"cancelled\""), "{cancelled:?}");
    entered.release();
    target.result().unwrap();
    assert!(format!("{target:?}").contains("state: \"finished\""), "{target:?}");
    let failed = pool.submit(fail, 1).unwrap();
    failed.result().unwrap_err();
    assert!(format!("{failed:?}").contains("state: \"failed\""), "{failed:?}");
});

// test_cancel (PENDING): cancelling a pending future succeeds, and the task never runs.
both!(fn cancel_pending(pool) {
    let dir = std::env::temp_dir();
    let marker = dir.join(format!("cf-future-cancel-{}-{}", std::process::id(), line!()));
    let _ = std::fs::remove_file(&marker);
    {
        let gate = Gate::new();
        let (blocker, entered, target) = busy(&*pool, &gate);
        let traced = pool.submit(touch, marker.to_str().unwrap().to_owned()).unwrap();
        assert!(target.cancel());
        assert!(traced.cancel());
        assert_eq!(state(&target), CANCELLED);
        assert_eq!(target.result(), Err(TaskError::Cancelled));
        assert_eq!(target.result_timeout(SHORT), Err(TaskError::Cancelled));
        assert_eq!(target.exception(), Some(TaskError::Cancelled));
        assert!(target.result().unwrap_err().is_cancelled());
        // test_cancel (CANCELLED): cancelling again still says it is cancelled.
        assert!(target.cancel());
        assert_eq!(state(&target), CANCELLED);
        entered.release();
        assert_eq!(blocker.result(), Ok(&0));
    }
    pool.shutdown();
    assert!(!marker.exists(), "a cancelled task ran");
    let _ = std::fs::remove_file(&marker);
});

// test_cancel (RUNNING): a running task cannot be cancelled.
both!(fn cancel_running_fails(pool) {
    let gate = Gate::new();
    let (blocker, entered, _target) = busy(&*pool, &gate);
    assert!(!blocker.cancel());
    assert_eq!(state(&blocker), RUNNING);
    entered.release();
    assert_eq!(blocker.result(), Ok(&0));
    assert!(!blocker.cancelled());
});

// test_cancel (SUCCESSFUL, EXCEPTION): a finished task cannot be cancelled.
both!(fn cancel_finished_fails(pool) {
    let ok = pool.submit(echo, 1).unwrap();
    assert_eq!(ok.result(), Ok(&1));
    assert!(!ok.cancel());
    assert_eq!(state(&ok), FINISHED);
    assert_eq!(ok.result(), Ok(&1));
    let failed = pool.submit(fail, 2).unwrap();
    failed.result().unwrap_err();
    assert!(!failed.cancel());
    assert_eq!(failed.result(), Err(TaskError::Failed("bad 2".to_owned())));
});

// test_result_with_timeout: a pending or running future times out and stays as it was.
both!(fn result_timeout_leaves_the_future_pending(pool) {
    let gate = Gate::new();
    let (blocker, entered, target) = busy(&*pool, &gate);
    assert_eq!(target.result_timeout(SHORT), Err(TaskError::Timeout));
    assert_eq!(target.result_timeout(std::time::Duration::ZERO), Err(TaskError::Timeout));
    assert_eq!(state(&target), PENDING);
    assert_eq!(blocker.result_timeout(SHORT), Err(TaskError::Timeout));
    assert_eq!(state(&blocker), RUNNING);
    assert!(!target.wait_timeout(SHORT));
    entered.release();
    assert_eq!(target.result_timeout(LONG), Ok(&42));
    assert!(target.wait_timeout(std::time::Duration::ZERO));
    assert_eq!(blocker.result_timeout(std::time::Duration::ZERO), Ok(&0));
});

#[test]
fn timeout_display() {
    assert_eq!(Timeout.to_string(), "timed out waiting for the future");
}

// test_exception_with_timeout / test_exception_with_success.
both!(fn exception_and_exception_timeout(pool) {
    let gate = Gate::new();
    let blocked = pool.submit(gated, (gate.path(), 1)).unwrap();
    let entered = gate.entered();
    assert_eq!(blocked.exception_timeout(SHORT), Err(Timeout));
    assert_eq!(state(&blocked), RUNNING);
    entered.release();
    assert_eq!(blocked.exception_timeout(LONG), Ok(None));
    assert_eq!(blocked.exception(), None);
    let failed = pool.submit(fail, 9).unwrap();
    assert_eq!(failed.exception(), Some(TaskError::Failed("bad 9".to_owned())));
    assert_eq!(failed.exception_timeout(SHORT), Ok(Some(TaskError::Failed("bad 9".to_owned()))));
    assert_eq!(failed.exception().as_ref().and_then(TaskError::failed), Some(&"bad 9".to_owned()));
});

// test_result_with_success: a thread blocked in `result` gets the value when it arrives.
both!(fn result_blocks_until_done(pool) {
    let gate = Gate::new();
    let blocked = pool.submit(gated, (gate.path(), 5)).unwrap();
    let entered = gate.entered();
    let waiting = {
        let blocked = blocked.clone();
        thread::spawn(move || blocked.result().copied())
    };
    later(SHORT, move || entered.release());
    assert_eq!(waiting.join().unwrap(), Ok(5));
});

// test_result_with_cancel: a thread blocked in `result` is woken by `cancel` from another one.
both!(fn cancel_wakes_a_blocked_result(pool) {
    let gate = Gate::new();
    let (blocker, entered, target) = busy(&*pool, &gate);
    let waiting = {
        let target = target.clone();
        thread::spawn(move || target.result().copied())
    };
    let cancel = {
        let target = target.clone();
        later(SHORT, move || assert!(target.cancel()))
    };
    assert_eq!(waiting.join().unwrap(), Err(TaskError::Cancelled));
    cancel.join().unwrap();
    entered.release();
    assert_eq!(blocker.result(), Ok(&0));
});

/// What a done callback saw: the future it was given is the one it was added to, its outcome,
/// and the thread it ran on.
type Seen = (bool, Result<u64, TaskError<String>>, thread::ThreadId);

fn recorder(future: &Future<u64, String>) -> (mpsc::Receiver<Seen>, Arc<AtomicUsize>) {
    let (tx, rx) = mpsc::channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let me = future.clone();
    let counter = calls.clone();
    future.add_done_callback(move |f| {
        counter.fetch_add(1, Ordering::SeqCst);
        let outcome = f.result().copied();
        let _ = tx.send((*f == me, outcome, thread::current().id()));
    });
    (rx, calls)
}

/// Waits at the gate, then succeeds (or fails when `id` is odd).
#[cf::task]
fn gated_result(path: String, id: u64) -> Result<u64, String> {
    util::pass_gate(&path, id);
    if id % 2 == 1 {
        Err(format!("odd {id}"))
    } else {
        Ok(id)
    }
}

// test_done_callback_with_result / _with_exception: a callback added to a running future runs
// once, after it completes, with the future.
both!(fn done_callback_runs_once_after_completion(pool) {
    let gate = Gate::new();
    let ok = pool.submit(gated_result, (gate.path(), 2)).unwrap();
    let entered = gate.entered();
    let (rx, calls) = recorder(&ok);
    assert!(rx.try_recv().is_err(), "a callback ran before the future was done");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    entered.release();
    let (same, outcome, _) = rx.recv_timeout(LONG).expect("the callback ran");
    assert!(same);
    assert_eq!(outcome, Ok(2));

    let failed = pool.submit(gated_result, (gate.path(), 3)).unwrap();
    let entered = gate.entered();
    let (rx_failed, calls_failed) = recorder(&failed);
    assert!(rx_failed.try_recv().is_err());
    entered.release();
    let (same, outcome, _) = rx_failed.recv_timeout(LONG).expect("the callback ran");
    assert!(same);
    assert_eq!(outcome, Err(TaskError::Failed("odd 3".to_owned())));

    pool.shutdown();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(calls_failed.load(Ordering::SeqCst), 1);
    assert!(rx.try_recv().is_err() && rx_failed.try_recv().is_err());
});

// test_done_callback_already_successful / _already_failed: the callback runs at once, here.
both!(fn done_callback_on_a_done_future_runs_at_once(pool) {
    for (future, expected) in [
        (pool.submit(succeed, 4).unwrap(), Ok(4)),
        (pool.submit(fail, 5).unwrap(), Err(TaskError::Failed("bad 5".to_owned()))),
    ] {
        future.wait_timeout(LONG);
        let (rx, calls) = recorder(&future);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the callback did not run at once");
        let (same, outcome, thread) = rx.try_recv().unwrap();
        assert!(same);
        assert_eq!(outcome, expected);
        assert_eq!(thread, thread::current().id());
    }
});

// test_done_callback_with_cancel / _already_cancelled.
both!(fn done_callback_runs_on_cancel(pool) {
    let gate = Gate::new();
    let _blocker = pool.submit(gated_result, (gate.path(), 0)).unwrap();
    let entered = gate.entered();
    let fillers: Vec<_> = (0..FILL).map(|i| pool.submit(succeed, i).unwrap()).collect();
    let target = pool.submit(succeed, 42).unwrap();
    let (rx, calls) = recorder(&target);
    assert!(rx.try_recv().is_err());
    assert!(target.cancel());
    // Cancelling runs the callbacks before it returns, in the cancelling thread.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let (same, outcome, thread) = rx.try_recv().unwrap();
    assert!(same);
    assert_eq!(outcome, Err(TaskError::Cancelled));
    assert_eq!(thread, thread::current().id());
    // Already cancelled: at once.
    let (rx, calls) = recorder(&target);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(rx.try_recv().unwrap().1, Err(TaskError::Cancelled));
    entered.release();
    for f in &fillers {
        f.result().unwrap();
    }
});

both!(fn done_callbacks_run_in_the_order_added(pool) {
    let gate = Gate::new();
    let future = pool.submit(gated, (gate.path(), 0)).unwrap();
    let entered = gate.entered();
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..5 {
        let order = order.clone();
        future.add_done_callback(move |_| order.lock().unwrap().push(i));
    }
    entered.release();
    future.result().unwrap();
    pool.shutdown();
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
});

both!(fn identity_hash_and_eq(pool) {
    let a = pool.submit(echo, 1).unwrap();
    let b = pool.submit(echo, 1).unwrap();
    assert_eq!(a, a.clone());
    assert_ne!(a, b, "two submits of the same call are different futures");
    let mut inputs = HashMap::new();
    inputs.insert(a.clone(), "a");
    inputs.insert(b.clone(), "b");
    inputs.insert(a.clone(), "a again");
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[&a], "a again");
    assert_eq!(inputs[&b.clone()], "b");
    // Identity does not change as the future completes.
    a.result().unwrap();
    assert_eq!(inputs[&a], "a again");
    let set: HashSet<_> = [a.clone(), a.clone(), b.clone()].into_iter().collect();
    assert_eq!(set.len(), 2);
    assert_eq!(AnyFuture::from(&a), AnyFuture::from(a.clone()));
    assert_ne!(AnyFuture::from(&a), AnyFuture::from(&b));
});

both!(fn into_result_moves_the_outcome_of_the_last_handle(pool) {
    let only = pool.submit(echo, 3).unwrap();
    assert_eq!(only.into_result(), Ok(3));
    // With another handle alive, the outcome stays with that one.
    let shared = pool.submit(echo, 4).unwrap();
    let other = shared.clone();
    assert_eq!(shared.into_result(), Err(TaskError::Shared));
    assert_eq!(other.result(), Ok(&4));
    assert_eq!(other.into_result(), Ok(4));
    assert_eq!(pool.submit(fail, 6).unwrap().into_result(), Err(TaskError::Failed("bad 6".to_owned())));
    // It blocks until the future is done.
    let gate = Gate::new();
    let (blocker, entered, target) = busy(&*pool, &gate);
    later(SHORT, move || entered.release());
    assert_eq!(target.into_result(), Ok(42));
    assert_eq!(blocker.into_result(), Ok(0));
});

both!(fn into_result_of_a_cancelled_future(pool) {
    let gate = Gate::new();
    let (blocker, entered, target) = busy(&*pool, &gate);
    assert!(target.cancel());
    assert_eq!(target.into_result(), Err(TaskError::Cancelled));
    entered.release();
    blocker.result().unwrap();
});

// `(&fut).await` lends the outcome; the first poll of an unfinished future is pending, and the
// waker it registered is woken when the task completes.
both!(fn await_by_reference(pool) {
    let gate = Gate::new();
    let future = pool.submit(gated, (gate.path(), 8)).unwrap();
    let entered = gate.entered();
    let waker = util::thread_waker();
    let mut cx = Context::from_waker(&waker);
    let mut lend = std::pin::pin!((&future).into_future());
    assert!(lend.as_mut().poll(&mut cx).is_pending());
    later(SHORT, move || entered.release());
    assert_eq!(block_on(lend), Ok(&8));
    assert_eq!(block_on(async { (&future).await.copied() }), Ok(8));
    let failed = pool.submit(fail, 1).unwrap();
    assert_eq!(block_on(async { (&failed).await.cloned() }), Err(TaskError::Failed("bad 1".to_owned())));
});

// `fut.await` moves the outcome out.
both!(fn await_by_value(pool) {
    let gate = Gate::new();
    let first = pool.submit(gated, (gate.path(), 1)).unwrap();
    let entered = gate.entered();
    let second = pool.submit(echo, 2).unwrap();
    let mut sum = std::pin::pin!(async move { first.await.unwrap() + second.await.unwrap() });
    let waker = util::thread_waker();
    assert!(sum.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
    later(SHORT, move || entered.release());
    assert_eq!(block_on(sum), 3);
    let failed = pool.submit(fail, 2).unwrap();
    assert_eq!(block_on(failed), Err(TaskError::Failed("bad 2".to_owned())));
});

both!(fn await_a_cancelled_future(pool) {
    let gate = Gate::new();
    let (blocker, entered, target) = busy(&*pool, &gate);
    let waiting = {
        let target = target.clone();
        thread::spawn(move || block_on(target))
    };
    later(SHORT, move || assert!(target.cancel()));
    assert_eq!(waiting.join().unwrap(), Err(TaskError::Cancelled));
    entered.release();
    assert_eq!(block_on(blocker), Ok(0));
});

#[test]
fn poll_ready_at_once_when_done() {
    let pool = util::thread_pool(1);
    let future = pool.submit(echo, 11).unwrap();
    future.wait_timeout(LONG);
    let waker = util::thread_waker();
    let mut lend = std::pin::pin!((&future).into_future());
    assert_eq!(
        lend.as_mut().poll(&mut Context::from_waker(&waker)),
        Poll::Ready(Ok(&11))
    );
}

// A callback may add another callback to the done future it is given: that one runs at once.
both!(
    fn callback_added_from_a_callback(pool) {
        let (tx, rx) = mpsc::channel();
        let gate = Gate::new();
        let future = pool.submit(gated, (gate.path(), 3)).unwrap();
        let entered = gate.entered();
        future.add_done_callback(move |f| {
            let tx2 = tx.clone();
            f.add_done_callback(move |g| {
                let _ = tx2.send(("inner", *g.result().unwrap()));
            });
            let _ = tx.send(("outer", *f.result().unwrap()));
        });
        entered.release();
        assert_eq!(rx.recv_timeout(LONG).unwrap(), ("inner", 3));
        assert_eq!(rx.recv_timeout(LONG).unwrap(), ("outer", 3));
    }
);

// Timeouts too large to add to now mean "no deadline", not a panic.
both!(
    fn huge_timeouts(pool) {
        let future = pool.submit(echo, 5).unwrap();
        assert_eq!(future.result_timeout(std::time::Duration::MAX), Ok(&5));
        assert_eq!(future.exception_timeout(std::time::Duration::MAX), Ok(None));
        assert!(future.wait_timeout(std::time::Duration::MAX));
        let r = cf::wait([&future], std::time::Duration::MAX, cf::ReturnWhen::AllCompleted);
        assert_eq!(r.done.len(), 1);
        assert_eq!(cf::as_completed([&future], std::time::Duration::MAX).count(), 1);
    }
);

/// Panics with a payload that is not a string.
#[cf::task]
fn odd_panic() -> u64 {
    std::panic::panic_any(42_u8)
}

both!(
    fn panic_with_a_non_string_payload(pool) {
        let future = pool.submit(odd_panic, ()).unwrap();
        let error = future.result().unwrap_err();
        let info = error.panic_info().unwrap();
        assert_eq!(info.message, "Box<dyn Any>");
        assert!(info.task.ends_with("odd_panic"), "{}", info.task);
        assert_eq!(pool.submit(echo, 1).unwrap().result(), Ok(&1));
    }
);

// Cancelling from one thread while the pool completes the same futures: every callback runs
// exactly once, whichever wins.
both!(
    fn callbacks_run_once_when_cancel_races_completion(pool: 2) {
        let n = 2000;
        let counts: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
        let futures: Vec<Future<u64>> = (0..n as u64).map(|i| pool.submit(echo, i).unwrap()).collect();
        thread::scope(|s| {
            let futures = &futures;
            s.spawn(move || {
                for f in futures.iter().rev() {
                    f.cancel();
                }
            });
            for (i, f) in futures.iter().enumerate() {
                let counts = counts.clone();
                f.add_done_callback(move |_| {
                    counts[i].fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        // Callbacks run in the thread that completes a future: once the pool has shut down,
        // waiting, they all have run.
        pool.shutdown();
        for (i, (c, f)) in counts.iter().zip(&futures).enumerate() {
            assert_eq!(c.load(Ordering::SeqCst), 1, "future {i}: {f:?}");
            assert!(f.done());
            assert_eq!(f.cancelled(), f.result() == Err(TaskError::Cancelled));
        }
    }
);

// A future is one allocation, which its completer holds a handle on until just after it has
// published that the future is done. Whoever sees it done that early and holds the only other
// handle must still be able to move the value out: `into_result` is not `Shared` then.
both!(fn into_result_as_soon_as_done_moves_the_value(pool: 2) {
    for i in 0..2_000 {
        let future = pool.submit(echo, i).unwrap();
        while !future.done() {
            std::hint::spin_loop();
        }
        assert_eq!(future.into_result(), Ok(i));
    }
});
