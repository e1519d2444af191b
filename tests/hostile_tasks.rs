//! Hostile tasks against the reply ring: the pool serves on, and what was queued behind the task
//! completes.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::time::Duration;

use cf::ProcessPoolExecutor;
use crash_util::{LONG, OBSERVE, serial, square};

#[cf::task]
fn close_everything() -> u32 {
    // SAFETY: test.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    42
}

#[cf::task]
fn dup2_over_everything() -> u32 {
    let null = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsRawFd;
    for fd in 3..1024 {
        if fd != null.as_raw_fd() {
            // SAFETY: test.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    42
}

#[cf::task]
fn forks_and_both_return() -> u32 {
    // SAFETY: test; the child returns from the task like the parent.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    42
}

/// A pool of one worker, as the hostile tests use it.
fn one_worker() -> ProcessPoolExecutor {
    ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .expect("pool")
}

/// The outcome of `future`, which must come within [`LONG`].
fn outcome<T: Clone>(future: cf::Future<T>, what: &str) -> Result<T, cf::TaskError> {
    assert!(future.wait_timeout(LONG), "{what} hung");
    future.into_result()
}

/// `squares` (of 0, 1, ...) all complete with their values; then the pool drops promptly.
fn all_square(pool: ProcessPoolExecutor, squares: Vec<cf::Future<(u64, u32)>>) {
    for (x, f) in (0..).zip(squares) {
        assert_eq!(
            outcome(f, "another task").expect("an innocent task").0,
            x * x
        );
    }
    crash_util::within(OBSERVE, "drop", move || drop(pool));
}

/// A task that closes every fd of its worker (the pipes included), or `dup2`s a file over
/// every fd from 3 to 1023, ends its worker: its own reply comes through the ring, or, when a
/// thread of the worker trips over a closed fd first (a debug build aborts on it), the task
/// fails alone with its worker's death. Either way the worker is replaced and the pool serves
/// on. A worker in that state cannot serve what was queued to it (its request pipe is gone):
/// the task behind would be blamed for its death, as behind any crash, so the others are
/// submitted once the replacement exists.
fn ends_its_worker(task: fn(&ProcessPoolExecutor) -> cf::Future<u32>, name: &str) {
    let pool = one_worker();
    match outcome(task(&pool), "the task") {
        Ok(got) => assert_eq!(got, 42),
        Err(cf::TaskError::WorkerDied { task, .. }) => assert!(task.ends_with(name)),
        Err(other) => panic!("expected its reply or its worker's death, got {other:?}"),
    }
    crash_util::until("the worker is replaced", || pool.stats().respawns >= 1);
    let others = (0..20).map(|x| pool.submit(square, x).unwrap()).collect();
    all_square(pool, others);
}

#[test]
fn hostile_close_all() {
    let _s = serial();
    ends_its_worker(
        |p| p.submit(close_everything, ()).unwrap(),
        "close_everything",
    );
}

#[test]
fn hostile_dup2_all() {
    let _s = serial();
    ends_its_worker(
        |p| p.submit(dup2_over_everything, ()).unwrap(),
        "dup2_over_everything",
    );
}

/// A task that forks, both processes returning from it: the child has no mapping of the ring
/// (`MADV_DONTFORK`), so it dies at its first touch of it, before it can read a request; the
/// worker and what was queued behind the task go on.
#[test]
fn hostile_fork() {
    let _s = serial();
    let pool = one_worker();
    let victim = pool.submit(forks_and_both_return, ()).unwrap();
    let others = (0..20).map(|x| pool.submit(square, x).unwrap()).collect();
    assert_eq!(outcome(victim, "the task"), Ok(42));
    all_square(pool, others);
}
