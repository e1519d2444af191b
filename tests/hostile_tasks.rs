//! Hostile tasks against the reply ring: the pool serves on, and what was queued behind the task
//! completes.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::time::{Duration, Instant};

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

fn run(name: &str, submit: impl Fn(&ProcessPoolExecutor) -> cf::Future<u32>) {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .expect("pool");
    let victim = submit(&pool);
    let others: Vec<_> = (0..20).map(|x| pool.submit(square, x).unwrap()).collect();
    let t = Instant::now();
    assert!(victim.wait_timeout(LONG), "{name}: the task hung");
    let got = victim.into_result();
    eprintln!("{name}: {got:?} after {:?}", t.elapsed());
    for (x, f) in (0..).zip(others) {
        assert!(f.wait_timeout(LONG), "{name}: another task hung");
        match f.into_result() {
            Ok((v, _)) => assert_eq!(v, x * x),
            Err(e) => panic!("{name}: an innocent task failed: {e:?}"),
        }
    }
    let later = pool.submit(square, 9).unwrap();
    assert!(later.wait_timeout(LONG), "{name}: later hung");
    assert_eq!(later.into_result().expect("later").0, 81);
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
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .expect("pool");
    let victim = task(&pool);
    assert!(victim.wait_timeout(LONG), "the task hung");
    match victim.into_result() {
        Ok(got) => assert_eq!(got, 42),
        Err(cf::TaskError::WorkerDied { task, .. }) => assert!(task.ends_with(name)),
        Err(other) => panic!("expected its reply or its worker's death, got {other:?}"),
    }
    crash_util::until("the worker is replaced", || pool.stats().respawns >= 1);
    let others: Vec<_> = (0..20).map(|x| pool.submit(square, x).unwrap()).collect();
    for (x, f) in (0..).zip(others) {
        assert!(f.wait_timeout(LONG), "another task hung");
        assert_eq!(f.into_result().expect("a task after").0, x * x);
    }
    crash_util::within(OBSERVE, "drop", move || drop(pool));
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
    run("fork", |p| p.submit(forks_and_both_return, ()).unwrap());
}
