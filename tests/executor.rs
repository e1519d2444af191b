//! The executors themselves: defaults, `max_workers`, thread names, the `Executor` and `Submit`
//! traits, and that no task waits while a worker that could run it is idle.
//!
//! Partly adapted from CPython's `Lib/test/test_concurrent_futures/test_thread_pool.py`
//! (`test_default_workers`, `test_thread_names_assigned`, `test_thread_names_default`) and
//! `test_process_pool.py` (`test_max_workers_negative`). Copyright (c) 2001 Python Software
//! Foundation; All Rights Reserved. Used under the PSF License Agreement (Python Software
//! Foundation License Version 2).

mod util;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cf::{Executor, Future, Never, ProcessPoolExecutor, Submit, TaskMarker, ThreadPoolExecutor};
use util::{Gate, LONG, both, echo, gated};

#[cf::task]
fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

#[cf::task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

// test_default_workers.
#[test]
fn default_max_workers() {
    assert_eq!(
        ThreadPoolExecutor::new().max_workers(),
        (cores() + 4).min(32)
    );
    assert_eq!(
        ThreadPoolExecutor::default().max_workers(),
        (cores() + 4).min(32)
    );
    assert_eq!(
        ThreadPoolExecutor::builder().build().max_workers(),
        (cores() + 4).min(32)
    );
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::new().unwrap();
    assert_eq!(pool.max_workers(), cores());
    assert_eq!(pool.submit(add, (2, 3)).unwrap().result(), Ok(&5));
}

#[test]
#[should_panic = "max_workers must be greater than 0"]
fn zero_threads_panics() {
    let _ = ThreadPoolExecutor::with_max_workers(0);
}

// test_thread_names_assigned / test_thread_names_default.
#[test]
fn thread_names() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .thread_name_prefix("SpecialPool")
        .build();
    let names: HashSet<String> = (0..10)
        .map(|_| pool.submit(thread_name, ()).unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|f| f.result().unwrap().clone())
        .collect();
    assert!(!names.is_empty() && names.len() <= 2, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("SpecialPool")),
        "{names:?}"
    );
    let pool = ThreadPoolExecutor::with_max_workers(1);
    let name = pool.submit(thread_name, ()).unwrap().into_result().unwrap();
    assert!(name.starts_with("cf-thread"), "{name}");
}

// At most `max_workers` tasks run at once: a third task waits until one of two is let go.
both!(
    fn max_workers_at_once(pool: 2) {
        assert_eq!(pool.max_workers(), 2);
        let gate = Gate::new();
        let futures: Vec<Future<u64>> = (0..3)
            .map(|i| pool.submit(gated, (gate.path(), i)).unwrap())
            .collect();
        let first = gate.entered();
        let second = gate.entered();
        assert!(
            gate.entered_within(Duration::from_millis(300)).is_none(),
            "a third task ran beside two on a pool of two"
        );
        first.release();
        let third = gate.entered();
        drop((second, third));
        for f in &futures {
            f.result().unwrap();
        }
    }
);

// A thread pool whose threads are idle starts another thread for a second task rather than
// counting twice on one idle thread (the second task would wait behind the first).
#[test]
fn no_task_waits_for_a_busy_thread_while_another_may_start() {
    let pool = ThreadPoolExecutor::with_max_workers(2);
    for round in 0..20 {
        // One thread exists and goes idle (the sleep only spaces events out: if the thread is
        // not idle yet, the round tests the other path, and passes too).
        pool.submit(echo, 0).unwrap().result().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let gate = Gate::new();
        let a = pool.submit(gated, (gate.path(), 1)).unwrap();
        let b = pool.submit(gated, (gate.path(), 2)).unwrap();
        let first = gate.entered();
        let second = gate.entered_within(LONG);
        assert!(
            second.is_some(),
            "round {round}: two tasks did not run at once"
        );
        drop((first, second));
        a.result().unwrap();
        b.result().unwrap();
    }
}

// Right after start-up, a short task does not wait behind a long one on the first worker up
// while the other worker is still starting.
#[test]
fn no_task_waits_behind_a_long_one_at_start_up() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::with_max_workers(2).unwrap();
    let gate = Gate::new();
    let long = pool.submit(gated, (gate.path(), 1)).unwrap();
    let short = pool.submit(echo, 2).unwrap();
    let held = gate.entered();
    assert_eq!(short.result_timeout(LONG), Ok(&2));
    assert!(long.running());
    drop(held);
    assert_eq!(long.result(), Ok(&1));
}

// When one worker is held by a long task and the other frees up, the tasks queued go to the
// free one.
#[test]
fn no_task_waits_behind_a_long_one_while_a_worker_is_idle() {
    let pool = util::process_pool(2);
    let gate = Gate::new();
    let a = pool.submit(gated, (gate.path(), 1)).unwrap();
    let held_a = gate.entered();
    let b = pool.submit(gated, (gate.path(), 2)).unwrap();
    let held_b = gate.entered();
    let queued: Vec<Future<u64>> = (3..8).map(|i| pool.submit(echo, i).unwrap()).collect();
    held_b.release();
    assert_eq!(b.result(), Ok(&2));
    for (i, f) in (3..).zip(&queued) {
        assert_eq!(
            f.result_timeout(LONG),
            Ok(&i),
            "task {i} waited behind the held one"
        );
    }
    assert!(a.running());
    drop(held_a);
    assert_eq!(a.result(), Ok(&1));
}

/// Runs `add` on any executor, through the `Submit` trait.
fn sum_on<P>(pool: &P, pairs: &[(i64, i64)]) -> i64
where
    P: Submit<add, (i64, i64), TaskMarker, Output = i64, Error = Never>,
{
    let futures: Vec<_> = pairs
        .iter()
        .map(|&p| pool.submit(add, p).unwrap())
        .collect();
    futures.iter().map(|f| *f.result().unwrap()).sum()
}

#[test]
fn traits_over_both_executors() {
    let threads = ThreadPoolExecutor::with_max_workers(2);
    let process = util::process_pool(2);
    let pairs = [(1, 2), (3, 4), (-5, 5)];
    assert_eq!(sum_on(&threads, &pairs), 10);
    assert_eq!(sum_on(&*process, &pairs), 10);
    let (_serial, process) = process.split();
    let executors: Vec<Box<dyn Executor>> = vec![Box::new(threads), Box::new(process)];
    for executor in &executors {
        executor.shutdown();
        executor.shutdown();
    }
}

// A thread-pool task may submit to its own pool and wait for the result (with a thread free).
#[test]
fn a_task_submits_to_its_own_pool() {
    let pool = Arc::new(ThreadPoolExecutor::with_max_workers(2));
    let inner = pool.clone();
    let outer = pool
        .submit(
            move || {
                let f = inner.submit(add, (20, 22)).unwrap();
                *f.result().unwrap()
            },
            (),
        )
        .unwrap();
    assert_eq!(outer.result_timeout(LONG), Ok(&42));
}

// Closures on the thread pool: no argument, one, a tuple.
#[test]
fn closures_of_every_arity() {
    let pool = ThreadPoolExecutor::with_max_workers(2);
    let captured = String::from("captured");
    let none = pool.submit(move || captured.len(), ()).unwrap();
    let one = pool.submit(|x: u8| u32::from(x) * 2, 21).unwrap();
    let three = pool
        .submit(
            |a: i32, b: String, c: Vec<u8>| (a, b.len(), c.len()),
            (1, "ab".to_owned(), vec![0; 3]),
        )
        .unwrap();
    assert_eq!(none.result(), Ok(&8));
    assert_eq!(one.result(), Ok(&42));
    assert_eq!(three.result(), Ok(&(1, 2, 3)));
    let panicked = pool
        .submit(|| -> u8 { panic!("closure panic") }, ())
        .unwrap();
    let info = panicked.result().unwrap_err().panic_info().unwrap().clone();
    assert_eq!(info.message, "closure panic");
    assert!(info.location.unwrap().file.ends_with("executor.rs"));
}
