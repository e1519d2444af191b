//! `shutdown()`, `shutdown_with(Shutdown { wait, cancel_futures })`, drop, and submitting after shutdown, on both executors.
//!
//! Partly adapted from CPython's `Lib/test/test_concurrent_futures/test_shutdown.py`
//! (`test_run_after_shutdown`, `test_hang_issue12364`, `test_cancel_futures`,
//! `test_cancel_futures_wait_false`, `test_shutdown_no_wait`, `test_context_manager_shutdown`,
//! `test_del_shutdown`, `test_processes_terminate`). Copyright (c) 2001 Python Software
//! Foundation; All Rights Reserved. Used under the PSF License Agreement (Python Software
//! Foundation License Version 2).

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use cf::{Future, ReturnWhen, TaskError, as_completed, wait};
use util::{Gate, LONG, SHORT, both, echo, gated, later};

#[cf::task]
fn concat(a: String, b: Vec<u8>) -> usize {
    a.len() + b.len()
}

/// Submits `n` gated tasks (ids `0..n`) and waits until the first `running` of them hold the
/// workers at the gate. Returns the futures and the held tasks.
macro_rules! hold {
    ($pool:expr, $gate:expr, $n:expr, $running:expr) => {{
        let futures: Vec<Future<u64>> = (0..$n)
            .map(|i| $pool.submit(gated, ($gate.path(), i)).unwrap())
            .collect();
        let entered = $gate.entered_n($running);
        (futures, entered)
    }};
}

// test_hang_issue12364: `shutdown(wait = true)` returns once every submitted task is done.
both!(
    fn shutdown_waits_for_every_task(pool: 2) {
        let gate = Gate::new();
        let (held, entered) = hold!(pool, gate, 2, 2);
        let queued: Vec<Future<u64>> = (0..50).map(|i| pool.submit(echo, i).unwrap()).collect();
        // The release only comes later: a shutdown that did not wait would see them unfinished.
        let release = later(SHORT, move || drop(entered));
        pool.shutdown();
        for (i, f) in (0..).zip(&held) {
            assert_eq!(f.result_timeout(Duration::ZERO), Ok(&i));
        }
        for (i, f) in (0..).zip(&queued) {
            assert_eq!(f.result_timeout(Duration::ZERO), Ok(&i));
        }
        release.join().unwrap();
    }
);

// test_shutdown_no_wait: `shutdown(wait = false)` returns at once; the tasks still complete.
both!(
    fn shutdown_without_wait_returns_at_once(pool: 2) {
        let gate = Gate::new();
        let (held, entered) = hold!(pool, gate, 2, 2);
        let queued: Vec<Future<u64>> = (0..10).map(|i| pool.submit(echo, i).unwrap()).collect();
        // Let the tasks go when the shutdown has returned, or after 20 s if it does not.
        let (returned_tx, returned_rx) = mpsc::channel::<()>();
        let blocked = Arc::new(AtomicBool::new(false));
        let releaser = {
            let blocked = blocked.clone();
            std::thread::spawn(move || {
                if returned_rx.recv_timeout(Duration::from_secs(20)).is_err() {
                    blocked.store(true, Ordering::SeqCst);
                }
                drop(entered);
            })
        };
        pool.shutdown_with(cf::Shutdown { wait: false, cancel_futures: false });
        assert!(!blocked.load(Ordering::SeqCst), "shutdown without wait waited");
        // Looked at before the tasks are let go (after, they may be done already).
        assert!(held.iter().all(|f| !f.done()));
        assert!(queued.iter().all(|f| !f.cancelled()));
        returned_tx.send(()).unwrap();
        releaser.join().unwrap();
        for f in held.iter().chain(&queued) {
            assert!(f.result_timeout(LONG).is_ok());
        }
        let after = pool.submit(echo, 1);
        assert!(after.unwrap_err().error().is_shutdown());
    }
);

// test_cancel_futures: `shutdown(wait = true, cancel_futures = true)` cancels exactly the tasks
// that had not started; the running ones finish.
both!(
    fn shutdown_cancels_what_has_not_started(pool: 2) {
        let gate = Gate::new();
        let (held, entered) = hold!(pool, gate, 2, 2);
        let queued: Vec<Future<u64>> = (0..50).map(|i| pool.submit(echo, i).unwrap()).collect();
        // Nothing moves while the workers are held: what is pending now is what shutdown finds.
        let pending: Vec<Future<u64>> = queued.iter().filter(|f| !f.running()).cloned().collect();
        let started: Vec<Future<u64>> = queued.iter().filter(|f| f.running()).cloned().collect();
        assert!(pending.len() >= 50 - 2 * 8, "{} pending", pending.len());
        // Let the workers go once the pending tasks are cancelled (done).
        let releaser = {
            let pending = pending.clone();
            std::thread::spawn(move || {
                let r = wait(&pending, LONG, ReturnWhen::AllCompleted);
                drop(entered);
                r.not_done.len()
            })
        };
        pool.shutdown_with(cf::Shutdown { wait: true, cancel_futures: true });
        assert_eq!(releaser.join().unwrap(), 0, "shutdown did not cancel the pending tasks");
        for f in &pending {
            assert!(f.cancelled(), "{f:?}");
            assert_eq!(f.result(), Err(TaskError::Cancelled));
        }
        for f in held.iter().chain(&started) {
            assert!(f.done() && !f.cancelled(), "{f:?}");
            assert_eq!(f.exception(), None);
        }
        assert_eq!(pending.len() + started.len(), queued.len());
    }
);

// test_cancel_futures_wait_false: the same without waiting.
both!(
    fn shutdown_cancels_without_waiting(pool: 1) {
        let gate = Gate::new();
        let (held, entered) = hold!(pool, gate, 1, 1);
        let queued: Vec<Future<u64>> = (0..20).map(|i| pool.submit(echo, i).unwrap()).collect();
        let pending: Vec<&Future<u64>> = queued.iter().filter(|f| !f.running()).collect();
        assert!(pending.len() >= 20 - 8);
        pool.shutdown_with(cf::Shutdown { wait: false, cancel_futures: true });
        // Cancelled before shutdown returned.
        assert!(pending.iter().all(|f| f.cancelled()));
        assert!(!held[0].done());
        drop(entered);
        assert_eq!(held[0].result_timeout(LONG), Ok(&0));
        for f in queued.iter().filter(|f| !f.cancelled()) {
            assert!(f.result_timeout(LONG).is_ok());
        }
    }
);

// Cancelling by shutdown wakes a `wait` and an `as_completed` blocked on the cancelled futures.
both!(
    fn shutdown_cancel_wakes_waiters(pool: 1) {
        let gate = Gate::new();
        let (held, entered) = hold!(pool, gate, 1, 1);
        let queued: Vec<Future<u64>> = (0..20).map(|i| pool.submit(echo, i).unwrap()).collect();
        let last = queued.last().unwrap().clone();
        assert!(!last.running());
        let waiter = {
            let last = last.clone();
            std::thread::spawn(move || wait([&last], LONG, ReturnWhen::AllCompleted).done.len())
        };
        let iterator = {
            let last = last.clone();
            std::thread::spawn(move || {
                let mut it = as_completed([&last], LONG);
                (it.next().map(|f| f.map(|f| f.cancelled())), it.timed_out())
            })
        };
        // Spacing only: the waiters are likely blocked by now; the test passes either way.
        std::thread::sleep(SHORT);
        pool.shutdown_with(cf::Shutdown { wait: false, cancel_futures: true });
        assert_eq!(waiter.join().unwrap(), 1);
        assert_eq!(iterator.join().unwrap(), (Some(Ok(true)), false));
        drop(entered);
        assert_eq!(held[0].result_timeout(LONG), Ok(&0));
    }
);

// test_run_after_shutdown: submitting after shutdown fails and gives the arguments back.
both!(
    fn submit_after_shutdown(pool: 1) {
        let before = pool.submit(concat, ("ab".to_owned(), vec![1, 2, 3])).unwrap();
        pool.shutdown();
        assert_eq!(before.result(), Ok(&5));
        let refused = pool
            .submit(concat, ("kept".to_owned(), vec![7; 3]))
            .unwrap_err();
        assert!(refused.error().is_shutdown());
        assert_eq!(refused.to_string(), "cannot submit after shutdown");
        assert_eq!(refused.into_args(), ("kept".to_owned(), vec![7; 3]));
        let refused = pool.submit(echo, 9).unwrap_err();
        assert_eq!(refused.args, 9);
        let error: cf::Error = refused.into();
        assert!(error.is_shutdown());
        assert!(!error.is_broken() && !error.is_spawn());
    }
);

// test_context_manager_shutdown / test_del_shutdown: dropping the executor waits for its tasks.
#[test]
fn drop_waits_for_every_task_thread() {
    let gate = Gate::new();
    let futures;
    let release;
    {
        let pool = cf::ThreadPoolExecutor::with_max_workers(2);
        let (held, entered) = hold!(pool, gate, 2, 2);
        futures = held
            .into_iter()
            .chain((0..20).map(|i| pool.submit(echo, i).unwrap()))
            .collect::<Vec<_>>();
        release = later(SHORT, move || drop(entered));
    }
    for f in &futures {
        assert!(f.result_timeout(Duration::ZERO).is_ok(), "{f:?}");
    }
    release.join().unwrap();
}

#[test]
fn drop_waits_for_every_task_process() {
    let _serial = util::serial();
    let gate = Gate::new();
    let futures;
    let release;
    {
        let pool = cf::ProcessPoolExecutor::with_max_workers(2).unwrap();
        util::warm_up(&pool, 2);
        let (held, entered) = hold!(pool, gate, 2, 2);
        futures = held
            .into_iter()
            .chain((0..20).map(|i| pool.submit(echo, i).unwrap()))
            .collect::<Vec<_>>();
        release = later(SHORT, move || drop(entered));
    }
    for f in &futures {
        assert!(f.result_timeout(Duration::ZERO).is_ok(), "{f:?}");
    }
    release.join().unwrap();
}

// Shutting down twice is fine, and a `shutdown(wait = true)` after a `shutdown(wait = false)`
// still waits.
both!(
    fn shutdown_twice(pool: 2) {
        let gate = Gate::new();
        let (held, entered) = hold!(pool, gate, 2, 2);
        pool.shutdown_with(cf::Shutdown { wait: false, cancel_futures: false });
        pool.shutdown_with(cf::Shutdown { wait: false, cancel_futures: false });
        assert!(held.iter().all(|f| !f.done()));
        let release = later(SHORT, move || drop(entered));
        pool.shutdown();
        assert!(held.iter().all(Future::done));
        pool.shutdown();
        pool.shutdown_with(cf::Shutdown { wait: true, cancel_futures: true });
        release.join().unwrap();
        assert!(pool.submit(echo, 1).unwrap_err().error().is_shutdown());
    }
);

// Two threads call `shutdown(wait = true)` at once: neither returns before every task is done.
both!(
    fn concurrent_shutdowns_both_wait(pool: 1) {
        let (_serial, pool) = pool.split();
        let pool = Arc::new(pool);
        let gate = Gate::new();
        let held = pool.submit(gated, (gate.path(), 1)).unwrap();
        let entered = gate.entered();
        let first = {
            let pool = pool.clone();
            let held = held.clone();
            std::thread::spawn(move || {
                pool.shutdown();
                held.done()
            })
        };
        // Wait until the first shutdown has begun: from then on, submitting fails.
        let deadline = std::time::Instant::now() + LONG;
        while pool.submit(echo, 0).is_ok() {
            assert!(std::time::Instant::now() < deadline, "the first shutdown never began");
            std::thread::sleep(Duration::from_millis(1));
        }
        let release = later(SHORT, move || entered.release());
        pool.shutdown();
        assert!(held.done(), "the second shutdown(wait = true) returned before the task was done");
        assert!(first.join().unwrap(), "the first shutdown(wait = true) returned early");
        release.join().unwrap();
    }
);

// The last handle on the executor, dropped in a done-callback on the executor's own thread:
// dropping waits for the tasks, but not for the thread it runs on.
both!(
    fn last_handle_dropped_in_a_done_callback(pool: 1) {
        let (_serial, pool) = pool.split();
        let pool = Arc::new(pool);
        let worker = pool.submit(util::worker_pid, ()).unwrap().into_result().unwrap();
        let gate = Gate::new();
        let held = pool.submit(gated, (gate.path(), 1)).unwrap();
        let entered = gate.entered();
        let (tx, rx) = mpsc::channel();
        {
            let pool = pool.clone();
            held.add_done_callback(move |_| {
                drop(pool);
                let _ = tx.send(());
            });
        }
        drop(pool);
        entered.release();
        assert!(rx.recv_timeout(LONG).is_ok(), "dropping the pool in a done-callback hung");
        assert_eq!(held.result(), Ok(&1));
        // A process pool's workers end; in a thread pool, the worker is this process.
        if worker != std::process::id() {
            let deadline = std::time::Instant::now() + LONG;
            while alive(worker) {
                assert!(std::time::Instant::now() < deadline, "worker {worker} lives on");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
);

// A shutdown with nothing submitted returns at once.
both!(
    fn shutdown_idle_pool(pool: 2) {
        pool.shutdown_with(cf::Shutdown { wait: true, cancel_futures: true });
        assert!(pool.submit(echo, 1).is_err());
    }
);

/// Whether process `pid` exists (a zombie counts).
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

// test_processes_terminate: after `shutdown(wait = true)` the workers are gone (and reaped).
#[test]
fn shutdown_ends_the_workers() {
    let pool = util::process_pool(2);
    let pids: std::collections::HashSet<u32> = (0..20)
        .map(|_| pool.submit(util::worker_pid, ()).unwrap())
        .map(|f| *f.result().unwrap())
        .collect();
    assert!(!pids.is_empty() && pids.len() <= 2, "{pids:?}");
    assert!(pids.iter().all(|&pid| alive(pid)));
    pool.shutdown();
    for pid in pids {
        assert!(!alive(pid), "worker {pid} still exists after shutdown");
    }
}

// A done-callback that shuts the pool down, waiting, runs on the pool's own thread (the process
// pool's i/o thread, a thread pool's worker): it must not wait for itself.
both!(
    fn shutdown_from_a_done_callback(pool: 1) {
        let (_serial, pool) = pool.split();
        let pool = Arc::new(pool);
        let (tx, rx) = mpsc::channel();
        let future = pool.submit(echo, 1).unwrap();
        let gate = Gate::new();
        let held = pool.submit(gated, (gate.path(), 2)).unwrap();
        let entered = gate.entered();
        {
            let pool = pool.clone();
            held.add_done_callback(move |_| {
                pool.shutdown();
                let _ = tx.send(());
            });
        }
        entered.release();
        assert!(rx.recv_timeout(LONG).is_ok(), "shutdown in a done-callback hung");
        assert_eq!(future.result(), Ok(&1));
        assert_eq!(held.result(), Ok(&2));
        assert!(pool.submit(echo, 3).is_err());
    }
);
