//! `wait`: the done and not-done sets for `AllCompleted`, `FirstCompleted` and `FirstException`,
//! with and without a timeout, on both executors and on futures of both mixed.
//!
//! Partly adapted from CPython's `Lib/test/test_concurrent_futures/test_wait.py`
//! (`test_20369`, `test_first_completed`, `test_first_completed_some_already_completed`,
//! `test_first_exception`, `test_first_exception_some_already_complete`,
//! `test_first_exception_one_already_failed`, `test_all_completed`, `test_timeout`) and from its
//! module constants (`SUCCESSFUL_FUTURE`, `EXCEPTION_FUTURE`, `CANCELLED_AND_NOTIFIED_FUTURE`).
//! Copyright (c) 2001 Python Software Foundation; All Rights Reserved. Used under the PSF
//! License Agreement (Python Software Foundation License Version 2).
//!
//! Python's `CANCELLED_FUTURE` (cancelled, callbacks not yet run) has no counterpart: a cf future
//! that is cancelled is done at once, so its cases use a cancelled future, which is done.

mod util;

use std::collections::HashSet;
use std::hash::Hash;
use std::thread;
use std::time::{Duration, Instant};

use cf::{AnyFuture, Future, ReturnWhen, Submit, TaskMarker, wait};
use util::{Gate, LONG, SHORT, both, later};

type F = Future<u64, String>;

#[cf::task]
fn ok(x: u64) -> Result<u64, String> {
    Ok(x)
}

#[cf::task]
fn err(x: u64) -> Result<u64, String> {
    Err(format!("error {x}"))
}

#[cf::task]
fn held(path: String, id: u64) -> Result<u64, String> {
    util::pass_gate(&path, id);
    Ok(id)
}

#[cf::task]
fn held_err(path: String, id: u64) -> Result<u64, String> {
    util::pass_gate(&path, id);
    Err(format!("held error {id}"))
}

#[cf::task]
fn panics(x: u64) -> Result<u64, String> {
    panic!("panic {x}")
}

/// Either executor, able to run the tasks of this file.
trait Exec:
    Submit<ok, u64, TaskMarker, Output = u64, Error = String>
    + Submit<err, u64, TaskMarker, Output = u64, Error = String>
    + Submit<panics, u64, TaskMarker, Output = u64, Error = String>
    + Submit<held, (String, u64), TaskMarker, Output = u64, Error = String>
    + Submit<held_err, (String, u64), TaskMarker, Output = u64, Error = String>
{
}

impl<P> Exec for P where
    P: Submit<ok, u64, TaskMarker, Output = u64, Error = String>
        + Submit<err, u64, TaskMarker, Output = u64, Error = String>
        + Submit<panics, u64, TaskMarker, Output = u64, Error = String>
        + Submit<held, (String, u64), TaskMarker, Output = u64, Error = String>
        + Submit<held_err, (String, u64), TaskMarker, Output = u64, Error = String>
{
}

/// The workers of every pool in this file.
const WORKERS: usize = 2;

/// CPython's `SUCCESSFUL_FUTURE`, `EXCEPTION_FUTURE` and `CANCELLED_AND_NOTIFIED_FUTURE`, made
/// on `pool`.
struct Fixtures {
    successful: F,
    exception: F,
    cancelled: F,
}

fn fixtures(pool: &impl Exec) -> Fixtures {
    let successful = pool.submit(ok, 42).unwrap();
    let exception = pool.submit(err, 1).unwrap();
    // Hold every worker, so that a task submitted behind enough fillers stays pending.
    let gate = Gate::new();
    let blockers: Vec<F> = (0..WORKERS as u64)
        .map(|i| pool.submit(held, (gate.path(), i)).unwrap())
        .collect();
    let entered = gate.entered_n(WORKERS);
    let fillers: Vec<F> = (0..8 * WORKERS as u64)
        .map(|i| pool.submit(ok, i).unwrap())
        .collect();
    let cancelled = pool.submit(ok, 7).unwrap();
    assert!(cancelled.cancel(), "{cancelled:?} was not pending");
    drop(entered);
    for f in blockers
        .iter()
        .chain(&fillers)
        .chain([&successful, &exception])
    {
        f.wait_timeout(LONG);
    }
    assert_eq!(successful.result(), Ok(&42));
    assert_eq!(
        exception.result(),
        Err(cf::TaskError::Failed("error 1".to_owned()))
    );
    Fixtures {
        successful,
        exception,
        cancelled,
    }
}

fn set<T: Clone + Eq + Hash>(items: &[&T]) -> HashSet<T> {
    items.iter().map(|f| (*f).clone()).collect()
}

// test_all_completed.
both!(
    fn all_completed(pool: WORKERS) {
        let fx = fixtures(&*pool);
        let future1 = pool.submit(err, 2).unwrap();
        let future2 = pool.submit(ok, 21).unwrap();
        let all = [
            &fx.successful,
            &fx.cancelled,
            &fx.exception,
            &future1,
            &future2,
        ];
        let r = wait(all, None, ReturnWhen::AllCompleted);
        assert_eq!(r.done, set(&all));
        assert!(r.not_done.is_empty());
    }
);

both!(
    fn all_completed_waits_for_the_last(pool: WORKERS) {
        let gate = Gate::new();
        let a = pool.submit(held, (gate.path(), 1)).unwrap();
        let b = pool.submit(held, (gate.path(), 2)).unwrap();
        let entered = gate.entered_n(2);
        let c = pool.submit(err, 3).unwrap();
        let release = later(SHORT, move || drop(entered));
        let r = wait([&a, &b, &c], None, ReturnWhen::AllCompleted);
        assert_eq!(r.done, set(&[&a, &b, &c]));
        assert!(r.not_done.is_empty());
        release.join().unwrap();
    }
);

// test_first_completed.
both!(
    fn first_completed(pool: WORKERS) {
        let gate = Gate::new();
        let future2 = pool.submit(held, (gate.path(), 2)).unwrap();
        let _entered = gate.entered();
        let future1 = pool.submit(ok, 42).unwrap();
        let r = wait([&future1, &future2], None, ReturnWhen::FirstCompleted);
        assert_eq!(r.done, set(&[&future1]));
        assert_eq!(r.not_done, set(&[&future2]));
    }
);

// test_first_completed_some_already_completed.
both!(
    fn first_completed_some_already_completed(pool: WORKERS) {
        let fx = fixtures(&*pool);
        let gate = Gate::new();
        let future1 = pool.submit(held, (gate.path(), 1)).unwrap();
        let _entered = gate.entered();
        let r = wait(
            [&fx.cancelled, &fx.successful, &future1],
            None,
            ReturnWhen::FirstCompleted,
        );
        assert_eq!(r.done, set(&[&fx.cancelled, &fx.successful]));
        assert_eq!(r.not_done, set(&[&future1]));
    }
);

// test_first_exception: returns at the first error, not at the first completion.
both!(
    fn first_exception(pool: WORKERS) {
        let gate = Gate::new();
        let future1 = pool.submit(ok, 42).unwrap();
        future1.wait_timeout(LONG);
        let future2 = pool.submit(held_err, (gate.path(), 2)).unwrap();
        let future3 = pool.submit(held, (gate.path(), 3)).unwrap();
        let mut entered = gate.entered_n(2);
        let held3 = entered.pop().unwrap();
        let held2 = entered.pop().unwrap();
        let release = later(SHORT, move || held2.release());
        let r = wait(
            [&future1, &future2, &future3],
            None,
            ReturnWhen::FirstException,
        );
        assert_eq!(r.done, set(&[&future1, &future2]));
        assert_eq!(r.not_done, set(&[&future3]));
        assert!(future2.result().unwrap_err().is_failed());
        release.join().unwrap();
        drop(held3);
    }
);

// test_first_exception_some_already_complete.
both!(
    fn first_exception_some_already_complete(pool: WORKERS) {
        let fx = fixtures(&*pool);
        let gate = Gate::new();
        let future2 = pool.submit(held, (gate.path(), 2)).unwrap();
        let _entered = gate.entered();
        let future1 = pool.submit(err, 0).unwrap();
        let r = wait(
            [&fx.successful, &fx.cancelled, &future1, &future2],
            None,
            ReturnWhen::FirstException,
        );
        assert_eq!(r.done, set(&[&fx.successful, &fx.cancelled, &future1]));
        assert_eq!(r.not_done, set(&[&future2]));
    }
);

// test_first_exception_one_already_failed.
both!(
    fn first_exception_one_already_failed(pool: WORKERS) {
        let fx = fixtures(&*pool);
        let gate = Gate::new();
        let future1 = pool.submit(held, (gate.path(), 1)).unwrap();
        let _entered = gate.entered();
        let r = wait([&fx.exception, &future1], None, ReturnWhen::FirstException);
        assert_eq!(r.done, set(&[&fx.exception]));
        assert_eq!(r.not_done, set(&[&future1]));
    }
);

// A panic is an exception too.
both!(
    fn first_exception_on_a_panic(pool: WORKERS) {
        let gate = Gate::new();
        let future1 = pool.submit(held, (gate.path(), 1)).unwrap();
        let _entered = gate.entered();
        let future2 = pool.submit(panics, 2).unwrap();
        let r = wait([&future1, &future2], None, ReturnWhen::FirstException);
        assert_eq!(r.done, set(&[&future2]));
        assert_eq!(r.not_done, set(&[&future1]));
        assert!(future2.result().unwrap_err().is_panicked());
    }
);

// Without an exception, FirstException waits for all.
both!(
    fn first_exception_without_one_is_all_completed(pool: WORKERS) {
        let fx = fixtures(&*pool);
        let gate = Gate::new();
        let future1 = pool.submit(held, (gate.path(), 1)).unwrap();
        let entered = gate.entered();
        let future2 = pool.submit(ok, 2).unwrap();
        let release = later(SHORT, move || entered.release());
        let all = [&fx.successful, &future1, &future2];
        let r = wait(all, None, ReturnWhen::FirstException);
        assert_eq!(r.done, set(&all));
        assert!(r.not_done.is_empty());
        release.join().unwrap();
    }
);

// A cancelled future is done but is not an exception: FirstException keeps waiting.
both!(
    fn a_cancelled_future_is_not_an_exception(pool: WORKERS) {
        let fx = fixtures(&*pool);
        let gate = Gate::new();
        let future1 = pool.submit(held, (gate.path(), 1)).unwrap();
        let entered = gate.entered();
        let start = Instant::now();
        let r = wait([&fx.cancelled, &future1], SHORT, ReturnWhen::FirstException);
        assert!(
            start.elapsed() >= SHORT,
            "returned after {:?}",
            start.elapsed()
        );
        assert_eq!(r.done, set(&[&fx.cancelled]));
        assert_eq!(r.not_done, set(&[&future1]));
        let release = later(SHORT, move || entered.release());
        let r = wait([&fx.cancelled, &future1], None, ReturnWhen::FirstException);
        assert_eq!(r.done, set(&[&fx.cancelled, &future1]));
        release.join().unwrap();
    }
);

// test_timeout: the sets as they stand when the time runs out, for every `return_when`.
both!(
    fn timeout_returns_the_current_sets(pool: WORKERS) {
        let fx = fixtures(&*pool);
        let future1 = pool.submit(ok, 42).unwrap();
        future1.wait_timeout(LONG);
        let gate = Gate::new();
        let future2 = pool.submit(held, (gate.path(), 2)).unwrap();
        let _entered = gate.entered();
        let all = [
            &fx.cancelled,
            &fx.exception,
            &fx.successful,
            &future1,
            &future2,
        ];
        for (return_when, timeout) in [
            (ReturnWhen::AllCompleted, SHORT),
            (ReturnWhen::AllCompleted, Duration::ZERO),
        ] {
            let start = Instant::now();
            let r = wait(all, timeout, return_when);
            assert!(start.elapsed() >= timeout);
            assert_eq!(
                r.done,
                set(&[&fx.cancelled, &fx.exception, &fx.successful, &future1])
            );
            assert_eq!(r.not_done, set(&[&future2]));
        }
        // Nothing done yet: a timeout is the only way out, for every `return_when`.
        for return_when in [
            ReturnWhen::FirstCompleted,
            ReturnWhen::FirstException,
            ReturnWhen::AllCompleted,
        ] {
            let start = Instant::now();
            let r = wait([&future2], SHORT, return_when);
            assert!(start.elapsed() >= SHORT);
            assert!(r.done.is_empty());
            assert_eq!(r.not_done, set(&[&future2]));
        }
        assert!(!future2.done());
    }
);

// test_20369: a future given twice is waited for, and reported, once.
both!(
    fn duplicates_count_once(pool: WORKERS) {
        let future = pool.submit(ok, 1).unwrap();
        let r = wait([&future, &future], None, ReturnWhen::AllCompleted);
        assert_eq!(r.done, set(&[&future]));
        assert!(r.not_done.is_empty());
        let gate = Gate::new();
        let blocked = pool.submit(held, (gate.path(), 1)).unwrap();
        let _entered = gate.entered();
        let r = wait(
            vec![
                blocked.clone(),
                future.clone(),
                blocked.clone(),
                future.clone(),
            ],
            SHORT,
            ReturnWhen::AllCompleted,
        );
        assert_eq!((r.done.len(), r.not_done.len()), (1, 1));
        assert_eq!(r.done, set(&[&future]));
        assert_eq!(r.not_done, set(&[&blocked]));
    }
);

// Futures that are already done come back at once, whatever the `return_when`.
both!(
    fn already_done_returns_at_once(pool: WORKERS) {
        let fx = fixtures(&*pool);
        let all = [&fx.successful, &fx.exception, &fx.cancelled];
        for return_when in [
            ReturnWhen::FirstCompleted,
            ReturnWhen::FirstException,
            ReturnWhen::AllCompleted,
        ] {
            let start = Instant::now();
            let r = wait(all, LONG, return_when);
            assert!(start.elapsed() < LONG / 2);
            assert_eq!(r.done, set(&all));
            assert!(r.not_done.is_empty());
        }
    }
);

// No futures: nothing to wait for, whatever the `return_when` (as Python's `wait([])`), and
// the timeout is not used up.
#[test]
fn no_futures() {
    for return_when in [
        ReturnWhen::FirstCompleted,
        ReturnWhen::FirstException,
        ReturnWhen::AllCompleted,
    ] {
        let start = Instant::now();
        let r = wait(Vec::<F>::new(), LONG, return_when);
        assert!(r.done.is_empty() && r.not_done.is_empty());
        assert!(start.elapsed() < LONG / 2, "{return_when:?}");
        let r = wait(Vec::<F>::new(), None, return_when);
        assert!(r.done.is_empty() && r.not_done.is_empty());
    }
    assert_eq!(ReturnWhen::default(), ReturnWhen::AllCompleted);
}

// Cancelling a future wakes a `wait` that holds it, at once (Python's can stay blocked).
both!(
    fn cancel_wakes_wait(pool: WORKERS) {
        let gate = Gate::new();
        let blockers: Vec<F> = (0..WORKERS as u64)
            .map(|i| pool.submit(held, (gate.path(), i)).unwrap())
            .collect();
        let entered = gate.entered_n(WORKERS);
        let fillers: Vec<F> = (0..8 * WORKERS as u64)
            .map(|i| pool.submit(ok, i).unwrap())
            .collect();
        let target = pool.submit(ok, 99).unwrap();
        assert!(!target.running() && !target.done());
        for return_when in [ReturnWhen::FirstCompleted, ReturnWhen::AllCompleted] {
            let target = target.clone();
            let canceller = {
                let target = target.clone();
                later(SHORT, move || assert!(target.cancel()))
            };
            let r = wait([&target], LONG, return_when);
            assert_eq!(r.done, set(&[&target]), "{return_when:?}");
            canceller.join().unwrap();
        }
        drop(entered);
        for f in blockers.iter().chain(&fillers) {
            assert!(f.result().is_ok());
        }
    }
);

// Futures of both executors in one call.
#[test]
fn mixed_executors() {
    let process = util::process_pool(1);
    let threads = util::thread_pool(1);
    let gate = Gate::new();
    let from_process = process.submit(held, (gate.path(), 1)).unwrap();
    let from_threads = threads.submit(ok, 2).unwrap();
    let entered = gate.entered();
    let r = wait(
        [&from_process, &from_threads],
        None,
        ReturnWhen::FirstCompleted,
    );
    assert_eq!(r.done, set(&[&from_threads]));
    assert_eq!(r.not_done, set(&[&from_process]));
    let failing = threads.submit(err, 3).unwrap();
    let r = wait([&from_process, &failing], None, ReturnWhen::FirstException);
    assert_eq!(r.done, set(&[&failing]));
    let release = later(SHORT, move || entered.release());
    let r = wait(
        [&from_process, &from_threads, &failing],
        None,
        ReturnWhen::AllCompleted,
    );
    assert_eq!(r.done.len(), 3);
    assert!(r.not_done.is_empty());
    release.join().unwrap();
}

#[cf::task]
fn text(x: u64) -> String {
    format!("text {x}")
}

#[cf::task]
fn nothing() {}

// `AnyFuture` mixes futures of different types, from both executors.
#[test]
fn any_future_mixes_types() {
    let process = util::process_pool(1);
    let threads = util::thread_pool(1);
    let gate = Gate::new();
    let a: F = process.submit(held, (gate.path(), 1)).unwrap();
    let entered = gate.entered();
    let b: Future<String> = threads.submit(text, 2).unwrap();
    let c: Future<()> = threads.submit(nothing, ()).unwrap();
    let d: Future<u64, String> = threads.submit(err, 4).unwrap();
    let e: Future<i32> = threads.submit(|| 5, ()).unwrap();
    let all = vec![
        AnyFuture::from(&a),
        AnyFuture::from(&b),
        AnyFuture::from(&c),
        AnyFuture::from(&d),
        AnyFuture::from(e.clone()),
    ];
    let r = wait(all.clone(), None, ReturnWhen::FirstException);
    assert!(r.done.contains(&AnyFuture::from(&d)));
    assert!(r.not_done.contains(&AnyFuture::from(&a)));
    let failed: Vec<_> = r.done.iter().filter(|f| f.failed()).collect();
    assert_eq!(failed, [&AnyFuture::from(&d)]);
    let release = later(SHORT, move || entered.release());
    let r = wait(&all, None, ReturnWhen::AllCompleted);
    assert_eq!(r.done, all.iter().cloned().collect());
    assert!(r.done.iter().all(|f| f.done() && !f.cancelled()));
    assert_eq!(a.result(), Ok(&1));
    assert_eq!(b.result().map(String::as_str), Ok("text 2"));
    assert_eq!(e.result(), Ok(&5));
    release.join().unwrap();
}

// A `wait` in one thread and a `cancel` in another, many times over: never a lost wake-up.
#[test]
fn cancel_races_wait() {
    let pool = util::thread_pool(1);
    let gate = Gate::new();
    let blocker = pool.submit(held, (gate.path(), 0)).unwrap();
    let entered = gate.entered();
    for _ in 0..200 {
        let target = pool.submit(ok, 1).unwrap();
        let canceller = {
            let target = target.clone();
            thread::spawn(move || assert!(target.cancel()))
        };
        let r = wait([&target], LONG, ReturnWhen::FirstCompleted);
        assert_eq!(r.done, set(&[&target]));
        canceller.join().unwrap();
    }
    drop(entered);
    assert_eq!(blocker.result(), Ok(&0));
}

// Many threads wait on the same futures, with `wait` and `as_completed`, while the pool
// completes them and another thread cancels some: every waiter sees every future done.
both!(
    fn many_waiters(pool: WORKERS) {
        let futures: Vec<F> = (0..2000).map(|i| pool.submit(ok, i).unwrap()).collect();
        thread::scope(|s| {
            for k in 0..4 {
                let futures = &futures;
                s.spawn(move || {
                    if k % 2 == 0 {
                        assert_eq!(as_completed_count(futures), 2000);
                    } else {
                        let r = wait(futures, LONG, ReturnWhen::AllCompleted);
                        assert_eq!(r.done.len(), 2000);
                    }
                });
            }
            for f in futures.iter().rev().step_by(7) {
                let _ = f.cancel();
            }
        });
    }
);

fn as_completed_count(futures: &[F]) -> usize {
    let mut it = cf::as_completed(futures, LONG);
    let n = it.by_ref().count();
    assert!(!it.timed_out());
    n
}
