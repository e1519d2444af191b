//! `as_completed`: each distinct future once, the done ones first, then in completion order;
//! a timeout stops the iteration; a cancel wakes it. Against both executors: gated tasks let
//! the test decide the order in which tasks finish, in threads and in worker processes alike.
//!
//! Partly adapted from CPython's `Lib/test/test_concurrent_futures/test_as_completed.py`
//! (`test_no_timeout`, `test_future_times_out`, `test_duplicate_futures`,
//! `test_free_reference_yielded_future`, `test_correct_timeout_exception_msg`). Copyright (c)
//! 2001 Python Software Foundation; All Rights Reserved. Used under the PSF License Agreement
//! (Python Software Foundation License Version 2).

mod util;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cf::{AnyFuture, Future, Submit, TaskError, TaskMarker, Timeout, as_completed};
use serde::{Deserialize, Serialize};
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

/// Either executor, able to run the tasks of this file.
trait Exec:
    Submit<ok, u64, TaskMarker, Output = u64, Error = String>
    + Submit<err, u64, TaskMarker, Output = u64, Error = String>
    + Submit<held, (String, u64), TaskMarker, Output = u64, Error = String>
{
}

impl<P> Exec for P where
    P: Submit<ok, u64, TaskMarker, Output = u64, Error = String>
        + Submit<err, u64, TaskMarker, Output = u64, Error = String>
        + Submit<held, (String, u64), TaskMarker, Output = u64, Error = String>
{
}

const WORKERS: usize = 2;

/// CPython's `SUCCESSFUL_FUTURE`, `EXCEPTION_FUTURE` and `CANCELLED_AND_NOTIFIED_FUTURE`.
fn fixtures(pool: &impl Exec) -> [F; 3] {
    let successful = pool.submit(ok, 42).unwrap();
    let exception = pool.submit(err, 1).unwrap();
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
    [successful, exception, cancelled]
}

fn set<T: Clone + Eq + std::hash::Hash>(items: &[&T]) -> HashSet<T> {
    items.iter().map(|f| (*f).clone()).collect()
}

// test_no_timeout: every future comes out, once.
both!(
    fn no_timeout(pool: WORKERS) {
        let [successful, exception, cancelled] = fixtures(&*pool);
        let future1 = pool.submit(ok, 1).unwrap();
        let future2 = pool.submit(err, 2).unwrap();
        let all = [&cancelled, &exception, &successful, &future1, &future2];
        let mut it = as_completed(all, None);
        let yielded: Vec<F> = it.by_ref().collect();
        assert_eq!(yielded.len(), 5);
        assert_eq!(
            yielded.iter().collect::<HashSet<_>>(),
            all.into_iter().collect()
        );
        assert!(yielded.iter().all(Future::done));
        assert!(!it.timed_out());
        assert_eq!(it.not_done().count(), 0);
        assert_eq!(it.next(), None);
    }
);

// test_future_times_out (a zero timeout): the done ones come out, then `Err(Timeout)` (Python
// raises `TimeoutError`), then the iteration stops.
both!(
    fn zero_timeout(pool: WORKERS) {
        let [successful, exception, cancelled] = fixtures(&*pool);
        let gate = Gate::new();
        let future1 = pool.submit(held, (gate.path(), 1)).unwrap();
        let _entered = gate.entered();
        let mut it = as_completed(
            [&cancelled, &exception, &successful, &future1],
            Duration::ZERO,
        );
        let yielded: Vec<Result<F, Timeout>> = it.by_ref().collect();
        assert_eq!(yielded.last(), Some(&Err(Timeout)));
        let yielded: HashSet<F> = yielded.into_iter().filter_map(Result::ok).collect();
        assert_eq!(yielded, set(&[&cancelled, &exception, &successful]));
        assert!(it.timed_out());
        assert_eq!(it.not_done().collect::<Vec<_>>(), [&future1]);
    }
);

// test_correct_timeout_exception_msg: on timeout, what is left is what did not finish.
both!(
    fn timeout_stops_the_iteration(pool: WORKERS) {
        let gate = Gate::new();
        let a = pool.submit(held, (gate.path(), 1)).unwrap();
        let entered_a = gate.entered();
        let c = pool.submit(ok, 3).unwrap();
        assert!(c.wait_timeout(LONG));
        let b = pool.submit(held, (gate.path(), 2)).unwrap();
        let entered = [entered_a, gate.entered()];
        let start = Instant::now();
        let mut it = as_completed([&a, &b, &c], SHORT);
        assert_eq!(it.next(), Some(Ok(c.clone())));
        assert_eq!(it.next(), Some(Err(Timeout)));
        assert_eq!(it.next(), None);
        assert!(start.elapsed() >= SHORT);
        assert!(it.timed_out());
        assert_eq!(
            it.not_done().cloned().collect::<HashSet<_>>(),
            set(&[&a, &b])
        );
        // Stopped for good, even once the rest finish.
        drop(entered);
        a.wait_timeout(LONG);
        b.wait_timeout(LONG);
        assert_eq!(it.next(), None);
        assert!(it.timed_out());
    }
);

// A timeout that does not run out changes nothing.
both!(
    fn timeout_not_reached(pool: WORKERS) {
        let gate = Gate::new();
        let a = pool.submit(held, (gate.path(), 1)).unwrap();
        let entered = gate.entered();
        let release = later(SHORT, move || entered.release());
        let mut it = as_completed([&a], LONG);
        assert_eq!(it.next(), Some(Ok(a.clone())));
        assert_eq!(it.next(), None);
        assert!(!it.timed_out());
        release.join().unwrap();
    }
);

// Issue 12 (Adopters) item 8: a timeout cannot pass for the end of the futures. In a plain `for`
// loop with `?`, it leaves the loop as an error (before, the loop just ended, as if every future
// had come out).
both!(
    fn timeout_is_an_error_in_a_for_loop(pool: WORKERS) {
        let gate = Gate::new();
        let stuck = pool.submit(held, (gate.path(), 1)).unwrap();
        let entered = gate.entered();
        let quick = pool.submit(ok, 2).unwrap();
        assert!(quick.wait_timeout(LONG));
        let sum = |futures: &[&F]| -> Result<u64, Timeout> {
            let mut sum = 0;
            for future in as_completed(futures.iter().copied(), SHORT) {
                sum += future?.result().unwrap();
            }
            Ok(sum)
        };
        assert_eq!(sum(&[&quick]), Ok(2));
        assert_eq!(sum(&[&quick, &stuck]), Err(Timeout));
        let it = as_completed([&stuck], SHORT);
        assert_eq!(it.size_hint(), (0, Some(2)));
        entered.release();
        assert_eq!(stuck.result(), Ok(&1));
    }
);

// test_duplicate_futures: a future given many times comes out once.
both!(
    fn duplicates_come_out_once(pool: WORKERS) {
        let gate = Gate::new();
        let future1 = pool.submit(held, (gate.path(), 1)).unwrap();
        let entered = gate.entered();
        let release = later(SHORT, move || entered.release());
        let completed: Vec<F> = as_completed(std::iter::repeat_n(&future1, 3), None).collect();
        assert_eq!(completed.len(), 1);
        assert_eq!(completed[0], future1);
        release.join().unwrap();
        let future2 = pool.submit(ok, 2).unwrap();
        let completed: Vec<F> = as_completed(
            vec![
                future1.clone(),
                future2.clone(),
                future1.clone(),
                future2.clone(),
                future1,
            ],
            None,
        )
        .collect();
        assert_eq!(completed.len(), 2);
    }
);

// A future given many times while another wait holds it comes out once from each: the second
// waiter and its duplicates are told apart from the first.
both!(
    fn duplicates_come_out_once_beside_another_wait(pool: WORKERS) {
        let gate = Gate::new();
        let blocked = pool.submit(held, (gate.path(), 1)).unwrap();
        let entered = gate.entered();
        let done = pool.submit(ok, 2).unwrap();
        done.wait_timeout(LONG);
        let first = as_completed([&blocked, &done], None);
        let second = as_completed([&done, &blocked, &done, &blocked, &blocked], None);
        entered.release();
        let second: Vec<F> = second.collect();
        assert_eq!(second, vec![done.clone(), blocked.clone()]);
        let first: Vec<F> = first.collect();
        assert_eq!(first, vec![done, blocked]);
    }
);

// Those already done come first, then the others as they finish.
both!(
    fn already_done_first(pool: WORKERS) {
        let gate = Gate::new();
        let pending = pool.submit(held, (gate.path(), 1)).unwrap();
        let entered = gate.entered();
        let done_b = pool.submit(ok, 2).unwrap();
        let done_a = pool.submit(err, 3).unwrap();
        done_b.wait_timeout(LONG);
        done_a.wait_timeout(LONG);
        let mut it = as_completed([&pending, &done_b, &done_a], None);
        let first_two: HashSet<F> = [it.next().unwrap(), it.next().unwrap()].into();
        assert_eq!(first_two, set(&[&done_b, &done_a]));
        assert!(!pending.done());
        entered.release();
        assert_eq!(it.next().as_ref(), Some(&pending));
        assert_eq!(it.next(), None);
    }
);

// Completion order, not submission order: the test lets the tasks finish in the order it
// chooses, and each comes out as it finishes (errors too).
both!(
    fn completion_order(pool: WORKERS) {
        let gate = Gate::new();
        let first = pool.submit(held, (gate.path(), 1)).unwrap();
        let second = pool.submit(held_err, (gate.path(), 2)).unwrap();
        let mut entered = gate.entered_n(2);
        let hold_second = entered.pop().unwrap();
        let hold_first = entered.pop().unwrap();
        let mut it = as_completed([&first, &second], None);
        hold_second.release();
        let out = it.next().unwrap();
        assert_eq!(out, second);
        assert_eq!(
            out.result(),
            Err(TaskError::Failed("held error 2".to_owned()))
        );
        assert!(!first.done());
        hold_first.release();
        assert_eq!(it.next().as_ref(), Some(&first));
        assert_eq!(it.next(), None);
        assert!(!it.timed_out());
    }
);

// Many tasks released one at a time, in reverse: they come out in that order.
both!(
    fn completion_order_of_many(pool: WORKERS) {
        let gate = Gate::new();
        let futures: Vec<F> = (0..6)
            .map(|i| pool.submit(held, (gate.path(), i)).unwrap())
            .collect();
        let mut it = as_completed(&futures, None);
        let mut order = Vec::new();
        // Two at a time reach the gate (two workers); let the later one go first.
        for _ in 0..3 {
            let mut pair = gate.entered_n(2);
            for entered in [pair.pop().unwrap(), pair.pop().unwrap()] {
                let id = entered.id;
                entered.release();
                let out = it.next().unwrap();
                assert_eq!(out.result(), Ok(&id));
                order.push(id);
            }
        }
        assert_eq!(it.next(), None);
        let mut expected: Vec<u64> = order.clone();
        expected.sort_unstable();
        assert_eq!(expected, [0, 1, 2, 3, 4, 5]);
        for pair in order.chunks(2) {
            assert!(pair[0] > pair[1], "{order:?}");
        }
    }
);

// A future cancelled while `as_completed` waits wakes it at once; it comes out cancelled.
both!(
    fn cancel_wakes_as_completed(pool: 1) {
        let gate = Gate::new();
        let blocker = pool.submit(held, (gate.path(), 0)).unwrap();
        let entered = gate.entered();
        let fillers: Vec<F> = (0..8).map(|i| pool.submit(ok, i).unwrap()).collect();
        let target = pool.submit(ok, 99).unwrap();
        let other = pool.submit(ok, 100).unwrap();
        assert!(!target.running() && !target.done());
        let canceller = {
            let target = target.clone();
            later(SHORT, move || assert!(target.cancel()))
        };
        let mut it = as_completed([&target, &other], LONG);
        let out = it.next().unwrap().unwrap();
        assert_eq!(out, target);
        assert!(out.cancelled());
        assert_eq!(out.result(), Err(TaskError::Cancelled));
        assert!(!it.timed_out());
        canceller.join().unwrap();
        entered.release();
        assert_eq!(it.next(), Some(Ok(other.clone())));
        assert_eq!(blocker.result(), Ok(&0));
        for f in &fillers {
            f.result().unwrap();
        }
    }
);

// Dropping the iterator half-way leaves the futures alone.
both!(
    fn drop_half_way(pool: WORKERS) {
        let gate = Gate::new();
        let a = pool.submit(held, (gate.path(), 1)).unwrap();
        let entered = gate.entered();
        let b = pool.submit(ok, 2).unwrap();
        let mut it = as_completed([&a, &b], None);
        assert_eq!(it.next().as_ref(), Some(&b));
        drop(it);
        entered.release();
        assert_eq!(a.result(), Ok(&1));
        assert_eq!(as_completed([&a, &b], None).count(), 2);
    }
);

#[test]
fn no_futures() {
    let mut it = as_completed(Vec::<F>::new(), None);
    assert_eq!(it.next(), None);
    assert!(!it.timed_out());
    let mut it = as_completed(Vec::<F>::new(), Duration::ZERO);
    assert_eq!(it.next(), None);
}

static CLONES: AtomicUsize = AtomicUsize::new(0);

/// A value that counts its clones.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Counted(u64);

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, Ordering::SeqCst);
        Counted(self.0)
    }
}

#[cf::task]
fn counted(x: u64) -> Counted {
    Counted(x)
}

// test_free_reference_yielded_future: `as_completed` keeps no handle on a future it has given
// out, so the caller holds the only one and `into_result` moves the value out without a clone.
#[test]
fn yielded_futures_are_not_kept() {
    let threads = util::thread_pool(2);
    let futures: Vec<Future<Counted>> = (0..10)
        .map(|i| threads.submit(counted, i).unwrap())
        .collect();
    let mut sum = 0;
    for f in as_completed(futures, None) {
        sum += f.into_result().unwrap().0;
    }
    assert_eq!(sum, 45);
    drop(threads);
    let process = util::process_pool(2);
    let futures: Vec<Future<Counted>> = (0..10)
        .map(|i| process.submit(counted, i).unwrap())
        .collect();
    for f in as_completed(futures, None) {
        sum += f.into_result().unwrap().0;
    }
    assert_eq!(sum, 90);
    assert_eq!(CLONES.load(Ordering::SeqCst), 0, "a value was cloned");
    // With another handle alive, `into_result` moves nothing (the other still sees the value).
    let future = process.submit(counted, 7).unwrap();
    let other = future.clone();
    assert_eq!(future.into_result(), Err(TaskError::Shared));
    assert_eq!(CLONES.load(Ordering::SeqCst), 0);
    assert_eq!(other.result(), Ok(&Counted(7)));
}

/// A task's value that is not `Clone`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Report {
    input: u64,
    square: u64,
}

#[cf::task]
fn make_report(input: u64) -> Report {
    Report {
        input,
        square: input * input,
    }
}

// The design's future-to-input loop, taking ownership of a value that is not `Clone`: removing
// the future from the map drops the map's handle, so the yielded one is the last.
#[test]
fn the_seed_loop_moves_values_that_are_not_clone() {
    let pool = util::process_pool(2);
    let mut future_to_input: std::collections::HashMap<Future<Report>, u64> = (0..6)
        .map(|n| (pool.submit(make_report, n).unwrap(), n))
        .collect();
    let futures: Vec<Future<Report>> = future_to_input.keys().cloned().collect();
    let mut reports = Vec::new();
    for future in as_completed(futures, None) {
        let input = future_to_input.remove(&future).expect("each future once");
        let report: Report = future.into_result().expect("moved out");
        assert_eq!(report.input, input);
        reports.push(report);
    }
    reports.sort_by_key(|r| r.input);
    assert_eq!(
        reports.iter().map(|r| r.square).collect::<Vec<_>>(),
        [0, 1, 4, 9, 16, 25]
    );
}

// Futures of different types and executors, through `AnyFuture`.
#[test]
fn mixed_types_and_executors() {
    let process = util::process_pool(1);
    let threads = util::thread_pool(1);
    let gate = Gate::new();
    let a: F = process.submit(held, (gate.path(), 1)).unwrap();
    let entered = gate.entered();
    let b: Future<String> = threads.submit(|| "b".to_owned(), ()).unwrap();
    b.wait_timeout(LONG);
    let mut it = as_completed([AnyFuture::from(&a), AnyFuture::from(&b)], None);
    assert_eq!(it.next(), Some(AnyFuture::from(&b)));
    entered.release();
    assert_eq!(it.next(), Some(AnyFuture::from(&a)));
    assert_eq!(it.next(), None);
    // Same type from both executors, without `AnyFuture`.
    let c: F = threads.submit(ok, 3).unwrap();
    let d: F = process.submit(ok, 4).unwrap();
    let total: u64 = as_completed([&c, &d], None)
        .map(|f| *f.result().unwrap())
        .sum();
    assert_eq!(total, 7);
}
