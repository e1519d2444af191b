//! Hostile tasks against the reply ring fail alone.
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

#[test]
fn hostile_close_all() {
    let _s = serial();
    run("close_all", |p| p.submit(close_everything, ()).unwrap());
}

#[test]
fn hostile_dup2_all() {
    let _s = serial();
    run("dup2_all", |p| p.submit(dup2_over_everything, ()).unwrap());
}

#[test]
fn hostile_fork() {
    let _s = serial();
    run("fork", |p| p.submit(forks_and_both_return, ()).unwrap());
}
