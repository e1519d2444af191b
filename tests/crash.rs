//! The crash matrix of issue 3: one task of each kind really crashes its worker among many that
//! do not, and exactly that future fails, with the variant that says how; every other future has
//! its value, the pool takes new work, and a fresh worker (another pid) takes the dead one's place.
//!
//! The issue asks for one crash among 1,000 tasks. To keep `cargo test` short each row runs
//! [`DEFAULT_N`] tasks; set `CF_CRASH_N=1000` (or more) to run the size.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use cf::{Exit, Future, ProcessPoolExecutor, Task, TaskError, TaskOptions};
use crash_util::{Gate, LONG, hold, serial, square, until};

/// Tasks per row unless `CF_CRASH_N` says otherwise. Issue 3 asks for 1,000; 200 keeps the
/// file at about two seconds, and `CF_CRASH_N=1000 cargo test --test crash` runs the issue's
/// size (about six seconds).
const DEFAULT_N: u64 = 200;

fn crash_n() -> u64 {
    std::env::var("CF_CRASH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n >= 2)
        .unwrap_or(DEFAULT_N)
}

// ---- the crashing tasks ----------------------------------------------------------------------

#[cf::task]
fn panics(x: u64) -> (u64, u32) {
    panic!("task {x} panics on purpose")
}

#[cf::task]
fn aborts(_x: u64) -> (u64, u32) {
    std::process::abort()
}

#[cf::task]
fn segfaults(_x: u64) -> (u64, u32) {
    // SAFETY: raise(3) takes a signal number and touches no memory of ours; SIGSEGV's default
    // action ends this (worker) process, which is the point.
    unsafe { libc::raise(libc::SIGSEGV) };
    unreachable!("SIGSEGV ends the worker")
}

#[cf::task]
fn kills_itself(_x: u64) -> (u64, u32) {
    // SAFETY: kill(2) with our own pid and a signal number; no memory is passed.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL ends the worker")
}

#[cf::task]
fn exits(_x: u64) -> (u64, u32) {
    std::process::exit(3)
}

/// Recurses until the stack runs out; the condition only keeps the compiler from calling the
/// recursion unconditional.
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth.to_le_bytes()[0]; 4096]);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(u64::from(frame[depth as usize % 4096]))
}

#[cf::task]
fn overflows(x: u64) -> (u64, u32) {
    (recurse(x), 0)
}

#[cf::task]
fn allocates_1gib(_x: u64) -> (u64, u32) {
    let big = vec![1u8; 1 << 30];
    (u64::from(black_box(&big)[(1 << 30) - 1]), 0)
}

#[cf::task]
fn spins(x: u64) -> (u64, u32) {
    spin_forever(x)
}

/// An endless loop.
fn spin_forever(x: u64) -> ! {
    let mut n = x;
    loop {
        n = black_box(n).wrapping_add(1);
        std::hint::spin_loop();
    }
}

#[cf::task(timeout = "500ms")]
fn spins_500ms(x: u64) -> (u64, u32) {
    spin_forever(x)
}

#[cf::task(timeout = "60s")]
fn spins_60s(x: u64) -> (u64, u32) {
    spin_forever(x)
}

/// Writes to stderr, then aborts.
#[cf::task]
fn aborts_after_saying(x: u64) -> (u64, u32) {
    eprintln!("worker about to abort for {x}");
    std::process::abort()
}

/// Waits at the gate, then aborts.
#[cf::task]
fn aborts_at_gate(path: String) -> (u64, u32) {
    crash_util::meet(&path);
    std::process::abort()
}

// ---- the matrix ----------------------------------------------------------------------------------

/// What one row saw.
struct Row {
    /// The crashing task's error.
    error: TaskError,
    /// The pids that ran the other tasks before and around the crash.
    pids_before: BTreeSet<u32>,
    /// The pids that ran the tasks submitted after the crash was reported.
    pids_after: BTreeSet<u32>,
    /// The pool's worker processes (the spare too) before the tasks and after them all.
    workers_before: BTreeSet<u32>,
    workers_after: BTreeSet<u32>,
}

/// Submits `n` tasks, the one in the middle submitted by `crash`, the others `square`; checks
/// that every other future has its value and that the pool takes 20 more tasks afterwards.
fn row(
    pool: &ProcessPoolExecutor,
    crash: impl FnOnce(&ProcessPoolExecutor, u64) -> Future<(u64, u32)>,
) -> Row {
    let n = crash_n();
    let at = n / 2;
    // Workers start in the background: wait until all three are there.
    crash_util::until("two workers and the spare", || {
        crash_util::children().len() == 3
    });
    let workers_before = crash_util::children();
    assert_eq!(
        workers_before.len(),
        3,
        "two workers and the spare: {workers_before:?}"
    );
    let mut crash = Some(crash);
    let futures: Vec<Future<(u64, u32)>> = (0..n)
        .map(|x| {
            if x == at {
                (crash.take().expect("once"))(pool, x)
            } else {
                pool.submit(square, x).expect("submit")
            }
        })
        .collect();
    let mut error = None;
    let mut pids_before = BTreeSet::new();
    for (x, future) in (0..n).zip(&futures) {
        let outcome = future.result_timeout(LONG);
        assert!(!matches!(outcome, Err(TaskError::Timeout)), "task {x} hung");
        match (x == at, outcome) {
            (false, Ok(&(value, pid))) => {
                assert_eq!(value, x * x, "task {x}");
                assert_ne!(pid, std::process::id(), "task {x} ran in the parent");
                pids_before.insert(pid);
            }
            (false, Err(e)) => panic!("task {x} failed although only task {at} crashes: {e}"),
            (true, Ok(v)) => panic!("the crashing task {x} returned {v:?}"),
            (true, Err(e)) => error = Some(e),
        }
    }
    let after: Vec<_> = (0..20)
        .map(|x| {
            pool.submit(square, x)
                .expect("the pool takes work after a crash")
        })
        .collect();
    let mut pids_after = BTreeSet::new();
    for (x, future) in (0..20).zip(&after) {
        let &(value, pid) = future.result_timeout(LONG).expect("a task after the crash");
        assert_eq!(value, x * x);
        pids_after.insert(pid);
    }
    // A dead worker is reaped before its task's error is seen; its replacement (a new spare)
    // starts in the background.
    crash_util::until("as many workers as before", || {
        crash_util::children().len() == workers_before.len()
    });
    Row {
        error: error.expect("the crashing task failed"),
        pids_before,
        pids_after,
        workers_before,
        workers_after: crash_util::children(),
    }
}

/// A 2-worker pool.
fn pool2() -> ProcessPoolExecutor {
    ProcessPoolExecutor::with_max_workers(2).expect("start a pool")
}

/// Checks a dead worker's error: the task's name, a worker pid that is not ours, and no new task
/// ran on the dead pid. Returns how it ended.
fn died<T: Task>(row: &Row, _task: T) -> (u32, Exit, String) {
    let TaskError::WorkerDied {
        task,
        pid,
        node: None,
        exit,
        stderr,
    } = &row.error
    else {
        panic!("expected WorkerDied, got {:?}", row.error)
    };
    assert_eq!(task, T::NAME);
    replaced(row, *pid);
    (*pid, *exit, stderr.clone())
}

/// The dead worker `pid` ran tasks before and none after: another worker took its place.
fn replaced(row: &Row, pid: u32) {
    assert_ne!(pid, std::process::id());
    assert!(
        row.workers_before.contains(&pid),
        "pid {pid} is not one of the pool's: {:?}",
        row.workers_before
    );
    // Reaped (no zombie), and replaced: as many workers as before.
    assert!(
        !row.workers_after.contains(&pid),
        "{pid} is still a child: {:?}",
        row.workers_after
    );
    assert_eq!(
        row.workers_after.len(),
        row.workers_before.len(),
        "{:?}",
        row.workers_after
    );
    assert!(!row.pids_after.is_empty());
    assert!(
        !row.pids_after.contains(&pid),
        "the dead worker {pid} ran tasks after it died: {:?}",
        row.pids_after
    );
}

#[test]
fn unwinding_panic() {
    let _serial = serial();
    let pool = pool2();
    let row = row(&pool, |p, x| p.submit(panics, x).unwrap());
    let TaskError::Panicked(info) = &row.error else {
        panic!("expected Panicked, got {:?}", row.error)
    };
    let n = crash_n() / 2;
    assert_eq!(info.message, format!("task {n} panics on purpose"));
    assert_eq!(info.task, <panics as Task>::NAME);
    let location = info.location.as_ref().expect("a location");
    assert!(location.file.ends_with("crash.rs"), "{location}");
    assert_ne!(info.pid, std::process::id());
    assert_eq!(
        row.error.to_string(),
        format!(
            "task `crash::panics` panicked at {location} (pid {}): task {n} panics on purpose",
            info.pid
        )
    );
    // A panic does not cost the worker: it goes on serving.
    assert!(row.pids_before.contains(&info.pid));
}

#[test]
fn abort() {
    let _serial = serial();
    let pool = pool2();
    let row = row(&pool, |p, x| p.submit(aborts, x).unwrap());
    let (pid, exit, _) = died(&row, aborts);
    assert_eq!(exit, Exit::Signal(libc::SIGABRT));
    assert_eq!(exit.signal_name(), Some("SIGABRT"));
    assert_eq!(
        row.error.to_string(),
        format!(
            "worker (pid {pid}) died with signal 6 (SIGABRT) while running task `crash::aborts`"
        )
    );
}

#[test]
fn segfault() {
    let _serial = serial();
    let pool = pool2();
    let row = row(&pool, |p, x| p.submit(segfaults, x).unwrap());
    let (pid, exit, _) = died(&row, segfaults);
    assert_eq!(exit.signal_name(), Some("SIGSEGV"));
    assert_eq!(
        row.error.to_string(),
        format!(
            "worker (pid {pid}) died with signal 11 (SIGSEGV) while running task `crash::segfaults`"
        )
    );
}

#[test]
fn sigkill_from_inside() {
    let _serial = serial();
    let pool = pool2();
    let row = row(&pool, |p, x| p.submit(kills_itself, x).unwrap());
    let (_, exit, _) = died(&row, kills_itself);
    assert_eq!(exit.signal_name(), Some("SIGKILL"));
}

#[test]
fn exit_code() {
    let _serial = serial();
    let pool = pool2();
    let row = row(&pool, |p, x| p.submit(exits, x).unwrap());
    let (pid, exit, _) = died(&row, exits);
    assert_eq!(exit, Exit::Code(3));
    assert_eq!(exit.signal_name(), None);
    assert_eq!(
        row.error.to_string(),
        format!("worker (pid {pid}) died with exit code 3 while running task `crash::exits`")
    );
}

#[test]
fn stack_overflow() {
    let _serial = serial();
    let pool = pool2();
    let row = row(&pool, |p, x| p.submit(overflows, x).unwrap());
    // Workers serve from a constructor, before std's `main` set-up would install its handler;
    // cf's own handler says what happened, and the fault ends the worker with SIGSEGV.
    let TaskError::StackOverflow {
        task,
        pid,
        node: None,
    } = &row.error
    else {
        panic!("expected StackOverflow, got {:?}", row.error)
    };
    assert_eq!(task, <overflows as Task>::NAME);
    replaced(&row, *pid);
    assert_eq!(
        row.error.to_string(),
        format!("task `crash::overflows` overflowed its stack (worker pid {pid} died)")
    );
}

#[test]
fn memory_limit() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .memory_limit(256 << 20)
        .build()
        .expect("start a pool");
    let row = row(&pool, |p, x| p.submit(allocates_1gib, x).unwrap());
    let TaskError::MemoryLimit {
        task,
        pid,
        node: None,
        limit,
    } = &row.error
    else {
        panic!("expected MemoryLimit, got {:?}", row.error)
    };
    assert_eq!(task, <allocates_1gib as Task>::NAME);
    assert_eq!(*limit, 268_435_456);
    replaced(&row, *pid);
    assert_eq!(
        row.error.to_string(),
        format!(
            "task `crash::allocates_1gib` exceeded the memory limit of 256 MiB (worker pid {pid})"
        )
    );
}

/// Checks a timed-out task's error.
fn timed_out<T: Task>(row: &Row, _task: T) {
    let TaskError::TimeLimit {
        task,
        pid,
        node: None,
        limit,
    } = &row.error
    else {
        panic!("expected TimeLimit, got {:?}", row.error)
    };
    assert_eq!(task, T::NAME);
    assert_eq!(*limit, Duration::from_millis(500));
    replaced(row, *pid);
    assert_eq!(
        row.error.to_string(),
        format!("task `{task}` exceeded its time limit of 500 ms (worker pid {pid} was killed)")
    );
}

#[test]
fn time_limit_at_submit() {
    let _serial = serial();
    let pool = pool2();
    let limit = TaskOptions::new().timeout(Duration::from_millis(500));
    let row = row(&pool, |p, x| p.submit_with(spins, x, limit).unwrap());
    timed_out(&row, spins);
}

#[test]
fn time_limit_of_the_pool() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .task_timeout(Duration::from_millis(500))
        .build()
        .expect("start a pool");
    let started = Instant::now();
    let row = row(&pool, |p, x| p.submit(spins, x).unwrap());
    timed_out(&row, spins);
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[test]
fn time_limit_of_the_task() {
    let _serial = serial();
    let pool = pool2();
    let row = row(&pool, |p, x| p.submit(spins_500ms, x).unwrap());
    timed_out(&row, spins_500ms);
}

/// The limit given at submit wins over the task's, which wins over the pool's.
#[test]
fn time_limits_in_order() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .task_timeout(Duration::from_secs(60))
        .build()
        .expect("start a pool");
    let half_second = TaskOptions::new().timeout(Duration::from_millis(500));
    let started = Instant::now();
    let submit_wins = pool.submit_with(spins_60s, 0, half_second).unwrap();
    let task_wins = pool.submit(spins_500ms, 1).unwrap();
    for future in [&submit_wins, &task_wins] {
        match future.result_timeout(LONG) {
            Err(TaskError::TimeLimit { limit, .. }) => {
                assert_eq!(limit, Duration::from_millis(500))
            }
            other => panic!("expected TimeLimit, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn last_words_of_a_worker() {
    let _serial = serial();
    let pool = pool2();
    let row = row(&pool, |p, x| p.submit(aborts_after_saying, x).unwrap());
    let (pid, exit, stderr) = died(&row, aborts_after_saying);
    assert_eq!(exit.signal_name(), Some("SIGABRT"));
    let line = format!("worker about to abort for {}", crash_n() / 2);
    assert!(stderr.contains(&line), "{stderr:?}");
    assert_eq!(
        row.error.to_string(),
        format!(
            "worker (pid {pid}) died with signal 6 (SIGABRT) while running task `crash::aborts_after_saying`; its last words: {line}"
        )
    );
}

/// Tasks sent ahead to a worker (prefetch) that dies are re-sent to another worker: with one
/// worker holding four tasks, the first crashes and the three behind it run elsewhere.
#[test]
fn queued_behind_a_crash_are_resent() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .prefetch(4)
        .build()
        .expect("start a pool");
    let gate = Gate::new();
    let crash = pool.submit(aborts_at_gate, gate.path()).unwrap();
    let entered = gate.entered();
    let behind: Vec<_> = (1..=3).map(|x| pool.submit(square, x).unwrap()).collect();
    // All three are on the crashing worker before it crashes.
    until("the three tasks are sent to the worker", || {
        behind.iter().all(Future::running)
    });
    let dead = entered.pid;
    entered.release();
    let error = crash.result_timeout(LONG).unwrap_err();
    let TaskError::WorkerDied {
        task, pid, exit, ..
    } = error
    else {
        panic!("expected WorkerDied, got {error:?}")
    };
    assert_eq!(task, <aborts_at_gate as Task>::NAME);
    assert_eq!((pid, exit), (dead, Exit::Signal(libc::SIGABRT)));
    for (x, future) in (1..=3).zip(&behind) {
        let &(value, pid) = future.result_timeout(LONG).expect("re-sent, not failed");
        assert_eq!(value, x * x);
        assert_ne!(pid, dead, "ran on the dead worker");
    }
}

/// SIGKILL sent from outside to a worker that runs a task: that future fails with SIGKILL, the
/// tasks behind it complete elsewhere.
#[test]
fn sigkill_from_outside() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .prefetch(2)
        .build()
        .expect("start a pool");
    let gate = Gate::new();
    let blocked = pool.submit(hold, gate.path()).unwrap();
    let entered = gate.entered();
    let behind: Vec<_> = (1..=3).map(|x| pool.submit(square, x).unwrap()).collect();
    // The first one behind is sent ahead to the blocked worker (prefetch 2), the other two wait
    // in the parent.
    until("a task is sent behind the blocked one", || {
        behind[0].running()
    });
    // The worker waits at the gate: alive, our child, not reaped.
    crash_util::sigkill(entered.pid);
    let error = blocked.result_timeout(LONG).unwrap_err();
    match &error {
        TaskError::WorkerDied {
            task,
            pid,
            node: None,
            exit,
            stderr,
        } => {
            assert_eq!(task, <hold as Task>::NAME);
            assert_eq!(*pid, entered.pid);
            assert_eq!(*exit, Exit::Signal(libc::SIGKILL));
            assert_eq!(exit.signal_name(), Some("SIGKILL"));
            assert_eq!(stderr, "", "the held task writes nothing");
            assert_eq!(
                error.to_string(),
                format!(
                    "worker (pid {pid}) died with signal 9 (SIGKILL) while running task `crash::crash_util::hold`"
                )
            );
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    for (x, future) in (1..=3).zip(&behind) {
        let &(value, pid) = future.result_timeout(LONG).expect("not lost");
        assert_eq!(value, x * x);
        assert_ne!(pid, entered.pid);
    }
    drop(entered);
}

/// A reply counts the moment its worker has written it: a worker SIGKILLed right after (by the
/// next task, sent ahead to the same worker, so it runs at once) still completes the first future
/// `Ok`. Whatever batching of replies speeds up tiny tasks must keep this; 100 times in a row.
#[test]
fn a_reply_written_right_before_a_sigkill_still_counts() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .prefetch(2)
        .build()
        .expect("a pool");
    for round in 0..100u64 {
        let first = pool.submit(square, round).expect("submit");
        let killer = pool.submit(kills_itself, round).expect("submit");
        assert_eq!(
            first.result().expect("the reply came before the kill").0,
            round * round,
            "round {round}"
        );
        match killer.result() {
            Err(TaskError::WorkerDied { exit, .. }) => assert_eq!(exit, Exit::Signal(9)),
            other => panic!("round {round}: expected a death by SIGKILL, got {other:?}"),
        }
    }
}
