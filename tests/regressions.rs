//! Regressions found by review: each test reproduces a scenario that once left a future pending
//! forever, gave a task the wrong outcome, or hung the pool.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod util;

use std::time::{Duration, Instant};

use cf::{ProcessPoolExecutor, TaskError, TaskOptions, task};

/// Waits (bounded) for something another process or thread does.
fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + util::LONG;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {:?}",
            util::LONG
        );
        std::thread::yield_now();
    }
}

#[task]
fn sleep_then_abort(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::abort();
}

#[task]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[task]
fn forever() -> u64 {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[task]
fn slow_init() {
    std::thread::sleep(Duration::from_millis(300));
}

fn one_worker_holding_two() -> ProcessPoolExecutor {
    ProcessPoolExecutor::builder()
        .max_workers(1)
        .prefetch(2)
        .spare_worker(false)
        .build()
        .unwrap()
}

/// A task sent ahead, put back in the queue when its worker died, was running: shutdown's
/// `cancel_futures` must let it run again, not drop it (its future stayed pending forever).
#[test]
fn cancel_futures_keeps_a_requeued_task() {
    let _serial = util::serial();
    let pool = one_worker_holding_two();
    let a = pool.submit(sleep_then_abort, 300).unwrap();
    let b = pool.submit(sleep_ms, 1).unwrap();
    until("both sent to the worker", || a.running() && b.running());
    pool.shutdown_with(cf::Shutdown {
        wait: false,
        cancel_futures: true,
    });
    assert!(a.result_timeout(util::LONG).unwrap_err().is_worker_died());
    assert_eq!(b.result_timeout(util::LONG), Ok(&1));
}

/// A time limit aimed at a task whose reply was already on its way hit the task behind it; that
/// one must run again, not fail with a limit it never had.
#[test]
fn a_time_limit_never_lands_on_the_next_task() {
    let _serial = util::serial();
    let pool = one_worker_holding_two();
    for trial in 0..30 {
        let limited = TaskOptions::new().timeout(Duration::from_millis(20));
        let a = pool.submit_with(sleep_ms, 20, limited).unwrap();
        let b = pool.submit(sleep_ms, 40).unwrap();
        let a = a.result_timeout(util::LONG).cloned();
        let b = b.result_timeout(util::LONG).cloned();
        assert!(
            a == Ok(20) || matches!(a, Err(TaskError::TimeLimit { .. })),
            "trial {trial}: {a:?}"
        );
        assert_eq!(b, Ok(40), "trial {trial}: the task behind took a's verdict");
    }
}

/// `kill` of a task back in the queue after its worker died used to be lost (and `kill` then
/// waited for a task that runs forever).
#[test]
fn kill_reaches_a_requeued_task() {
    let _serial = util::serial();
    let pool = one_worker_holding_two();
    let a = pool.submit(sleep_then_abort, 200).unwrap();
    let b = pool.submit(forever, ()).unwrap();
    until("both sent to the worker", || a.running() && b.running());
    a.result_timeout(util::LONG).unwrap_err();
    let killer = {
        let b = b.clone();
        std::thread::spawn(move || b.kill())
    };
    until("kill returns", || killer.is_finished());
    assert!(killer.join().unwrap());
    assert_eq!(b.result(), Err(TaskError::Killed));
}

/// `kill` from a done-callback runs on the pool's own thread: it must not wait for itself.
#[test]
fn kill_from_a_done_callback_does_not_hang_the_pool() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .spare_worker(false)
        .build()
        .unwrap();
    let sibling = pool.submit(forever, ()).unwrap();
    let first = pool.submit(sleep_then_abort, 100).unwrap();
    let target = sibling.clone();
    first.add_done_callback(move |_| {
        target.kill();
    });
    assert!(sibling.result_timeout(util::LONG).unwrap_err().is_killed());
    assert_eq!(
        pool.submit(sleep_ms, 1).unwrap().result_timeout(util::LONG),
        Ok(&1)
    );
}

/// The pool's default time limit is for tasks, not for a worker's initializer.
#[test]
fn the_task_time_limit_spares_the_initializer() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer(slow_init, ())
        .task_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert_eq!(
        pool.submit(sleep_ms, 1).unwrap().result_timeout(util::LONG),
        Ok(&1)
    );
}

/// A chunk's time limit is one input's limit, the pool's default included, times its inputs.
#[test]
fn a_chunk_gets_the_pool_limit_per_input() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let chunked: Vec<_> = pool.map(sleep_ms, vec![50u64; 10]).chunksize(10).collect();
    assert!(chunked.iter().all(|r| *r == Ok(50)), "{chunked:?}");
}
