//! Leftovers and bounded resources (issue 3, items 5, 6 and 7): pools leave no fd and no child
//! process behind, queued tasks take no fds, the protocol fds do not reach a task's own children,
//! and a dead worker's last stderr lines are in its error.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::collections::BTreeSet;
use std::time::Instant;

use cf::{ProcessPoolExecutor, Task, TaskError};
use crash_util::{Gate, LONG, children, fd_count, fds, hold, inherited, rss, serial, square};

/// The fds a process started by the task has: a shell lists its own fds (as it got them across
/// exec) while it waits for `ls`, so the listing is not racing a program's start-up.
#[cf::task]
fn grandchild_fds() -> Vec<u32> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ls /proc/$$/fd; :")
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .split_whitespace()
        .map(|fd| fd.parse().expect("an fd number"))
        .collect()
}

/// The worker's own fds.
#[cf::task]
fn worker_fds() -> Vec<(u32, String)> {
    fds()
}

/// Writes a line to stderr, then aborts.
#[cf::task]
fn says_and_aborts(line: String) {
    eprintln!("{line}");
    std::process::abort()
}

/// 100 pools, each started, used and dropped, leave the fd table and the child list as they were.
#[test]
fn hundred_pools_leave_no_fds_and_no_children() {
    let _serial = serial();
    let fds_before = fds();
    let children_before = children();
    assert_eq!(children_before, BTreeSet::new());
    let started = Instant::now();
    for cycle in 0..100u64 {
        let pool = ProcessPoolExecutor::with_max_workers(2).expect("start a pool");
        let futures: Vec<_> = (0..3)
            .map(|x| pool.submit(square, cycle + x).unwrap())
            .collect();
        drop(pool);
        for (x, future) in (0..3).zip(&futures) {
            assert_eq!(future.result().map(|r| r.0), Ok((cycle + x) * (cycle + x)));
        }
    }
    eprintln!("100 pool cycles took {:?}", started.elapsed());
    assert_eq!(fds(), fds_before, "fds left after 100 pools");
    assert_eq!(
        children(),
        children_before,
        "child processes left after 100 pools"
    );
}

/// 100,000 tasks queued behind two busy workers take no fd; reports the memory per pending
/// future.
#[test]
fn queued_tasks_take_no_fds() {
    let _serial = serial();
    let fds_before = fd_count();
    // One task per worker at a time: the 100,000 all stay in the parent's queue. No spare: its
    // start in the background would open and close fds while they are counted.
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .prefetch(1)
        .spare_worker(false)
        .build()
        .expect("start a pool");
    let gate = Gate::new();
    let held: Vec<_> = (0..2)
        .map(|_| pool.submit(hold, gate.path()).unwrap())
        .collect();
    let entered: Vec<_> = (0..2).map(|_| gate.entered()).collect();
    let idle_fds = fd_count();
    let rss_before = rss();
    let started = Instant::now();
    let queued: Vec<_> = (0..100_000u64)
        .map(|x| pool.submit(square, x).unwrap())
        .collect();
    let submit_took = started.elapsed();
    let rss_after = rss();
    let busy_fds = fd_count();
    assert!(
        queued.iter().all(|f| !f.done()),
        "the tasks are still queued"
    );
    assert_eq!(
        busy_fds, idle_fds,
        "fds with 100,000 queued tasks vs. with none"
    );
    #[allow(clippy::cast_precision_loss, reason = "a report")]
    let per_future = rss_after.saturating_sub(rss_before) as f64 / 100_000.0;
    eprintln!(
        "100,000 pending futures: VmRSS {} KiB -> {} KiB, {per_future:.0} bytes per pending \
         future (submitted in {submit_took:?}); fds {idle_fds} idle, {busy_fds} with them queued",
        rss_before / 1024,
        rss_after / 1024
    );
    // Running them all takes ~35 s in a debug build; cancelling them shows the queue goes
    // without a trace as well.
    pool.shutdown_with(cf::Shutdown {
        wait: false,
        cancel_futures: true,
    });
    for future in &queued {
        let outcome = future.result_timeout(LONG);
        assert!(matches!(outcome, Err(TaskError::Cancelled)), "{outcome:?}");
    }
    drop(entered);
    for future in &held {
        assert!(future.result_timeout(LONG).is_ok());
    }
    drop(pool);
    drop(gate);
    assert_eq!(fd_count(), fds_before, "fds left by the pool");
}

/// The request and result pipes (fds 3 and 4 in a worker) are close-on-exec: a process that a
/// task starts has its stdio and what this test process itself inherited without close-on-exec
/// (a test harness or shell may leave such fds open; the pool cannot know them).
#[test]
fn protocol_fds_do_not_reach_grandchildren() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).expect("start a pool");
    let listed: BTreeSet<u32> = pool
        .submit(grandchild_fds, ())
        .unwrap()
        .result_timeout(LONG)
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert!(!listed.contains(&3) && !listed.contains(&4), "{listed:?}");
    let expected: BTreeSet<u32> = [0, 1, 2].into_iter().chain(inherited()).collect();
    assert_eq!(listed, expected);
}

/// A worker holds its stdio, its two protocol pipes (moved from fds 3 and 4 to high numbers), a
/// copy of its stderr and the two ends of its urge pipe, nothing of its parent's or siblings' (beyond what this process inherited
/// without close-on-exec, see above).
#[test]
fn workers_hold_only_their_own_fds() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::with_max_workers(2).expect("start a pool");
    let held = pool
        .submit(worker_fds, ())
        .unwrap()
        .result_timeout(LONG)
        .unwrap()
        .clone();
    let numbers: BTreeSet<u32> = held.iter().map(|(fd, _)| *fd).collect();
    let own: Vec<&(u32, String)> = held.iter().filter(|(fd, _)| *fd >= 1000).collect();
    let expected: BTreeSet<u32> = [0, 1, 2]
        .into_iter()
        .chain(inherited())
        .chain(own.iter().map(|(fd, _)| *fd))
        .collect();
    assert_eq!(numbers, expected, "{held:?}");
    assert_eq!(own.len(), 5, "{held:?}");
    assert!(
        own.iter().all(|(_, to)| to.starts_with("pipe:")),
        "{held:?}"
    );
}

/// What a worker wrote to stderr before it died is in its error.
#[test]
fn last_words_in_the_error() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).expect("start a pool");
    let line = "resources: the worker's last line before abort";
    let future = pool.submit(says_and_aborts, line.to_owned()).unwrap();
    let error = future.result_timeout(LONG).unwrap_err();
    let TaskError::WorkerDied {
        task,
        pid,
        node: None,
        exit,
        stderr,
    } = &error
    else {
        panic!("expected WorkerDied, got {error:?}")
    };
    assert_eq!(task, <says_and_aborts as Task>::NAME);
    assert_eq!(exit.signal_name(), Some("SIGABRT"));
    assert!(stderr.contains(line), "{stderr:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "worker (pid {pid}) died with signal 6 (SIGABRT) while running task \
             `resources::says_and_aborts`; its last words: {line}"
        )
    );
}
