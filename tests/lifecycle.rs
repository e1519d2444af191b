//! Worker lifetime and stopping tasks (issue 3, items 2, 3 and 5): `Future::kill`, `cancel` of a
//! running task, `max_tasks_per_child`, the initializer and the pool it breaks when it keeps
//! failing, `terminate_workers` / `kill_workers`, and a drop that never hangs after kills and
//! crashes.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cf::{BrokenCause, Exit, Future, ProcessPoolExecutor, StartupFailure, Task, TaskError};
use crash_util::{Gate, LONG, OBSERVE, children, hold, serial, square, until, within, worker_pid};

/// Set by the initializer, in the worker.
static STATE: AtomicU64 = AtomicU64::new(0);
/// How many times the initializer ran in this worker.
static INIT_RUNS: AtomicU64 = AtomicU64::new(0);

#[cf::task]
fn init_state(value: u64) {
    STATE.store(value, Ordering::SeqCst);
    INIT_RUNS.fetch_add(1, Ordering::SeqCst);
}

/// What the initializer left: (value, runs, pid).
#[cf::task]
fn read_state() -> (u64, u64, u32) {
    (
        STATE.load(Ordering::SeqCst),
        INIT_RUNS.load(Ordering::SeqCst),
        std::process::id(),
    )
}

/// An initializer that waits at the gate, then panics.
#[cf::task]
fn bad_init(path: String) {
    crash_util::meet(&path);
    panic!("bad init")
}

/// Waits at the gate, then sleeps a minute: only a kill ends it in time.
#[cf::task]
fn sleeps_a_minute(path: String) -> u32 {
    crash_util::meet(&path);
    std::thread::sleep(Duration::from_secs(60));
    std::process::id()
}

#[cf::task]
fn aborts() {
    std::process::abort()
}

fn pool1() -> ProcessPoolExecutor {
    ProcessPoolExecutor::with_max_workers(1).expect("start a pool")
}

/// `kill` on a running task kills its worker: the future is cancelled at once and the pool
/// replaces the worker.
#[test]
fn kill_a_running_task() {
    let _serial = serial();
    let pool = pool1();
    let gate = Gate::new();
    let running = pool.submit(sleeps_a_minute, gate.path()).unwrap();
    let entered = gate.entered();
    assert!(running.running());
    let started = Instant::now();
    assert!(running.kill());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "kill took {took:?}");
    eprintln!("Future::kill of a running task returned in {took:?}");
    // Killed, not cancelled: it was running.
    assert!(!running.cancelled());
    assert!(running.done());
    assert_eq!(running.result(), Err(TaskError::Killed));
    // The pool still works, on another worker.
    let after = pool.submit(worker_pid, ()).unwrap();
    let pid = *after.result_timeout(LONG).expect("a task after the kill");
    assert_ne!(pid, entered.pid);
    assert_eq!(
        crash_util::wait_dead(&[entered.pid], OBSERVE),
        Vec::<u32>::new()
    );
}

/// A killed task is an exception, not a cancellation: `wait(FirstException)` returns on it
/// (before, a kill looked exactly like a cancel, which `FirstException` ignores).
#[test]
fn a_killed_task_is_an_exception_for_wait() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .build()
        .expect("start a pool");
    let gate = Gate::new();
    let running = pool.submit(sleeps_a_minute, gate.path()).unwrap();
    let _entered = gate.entered();
    let other_gate = Gate::new();
    let other = pool.submit(hold, other_gate.path()).unwrap();
    let other_entered = other_gate.entered();
    assert!(running.kill());
    let r = cf::wait([&running, &other], LONG, cf::ReturnWhen::FirstException);
    assert!(
        r.done.contains(&running) && r.not_done.contains(&other),
        "{r:?}"
    );
    assert!(running.exception().is_some_and(|e| e.is_killed()));
    other_entered.release();
    other.result().unwrap();
}

/// `kill` on a pending future only cancels it: no worker dies.
#[test]
fn kill_a_pending_task() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .prefetch(1)
        .build()
        .expect("start a pool");
    let gate = Gate::new();
    let first = pool.submit(hold, gate.path()).unwrap();
    let entered = gate.entered();
    let pending = pool.submit(square, 7).unwrap();
    assert!(!pending.running());
    assert!(pending.kill());
    assert!(pending.cancelled());
    assert!(matches!(pending.result(), Err(TaskError::Cancelled)));
    let pid = entered.pid;
    entered.release();
    assert_eq!(first.result_timeout(LONG), Ok(&pid));
    // The same worker serves on.
    let next = pool.submit(worker_pid, ()).unwrap();
    assert_eq!(next.result_timeout(LONG), Ok(&pid));
}

/// Python semantics: `cancel` cannot stop a running task.
#[test]
fn cancel_a_running_task_returns_false() {
    let _serial = serial();
    let pool = pool1();
    let gate = Gate::new();
    let running = pool.submit(hold, gate.path()).unwrap();
    let entered = gate.entered();
    assert!(!running.cancel());
    assert!(running.running());
    assert!(!running.cancelled());
    let pid = entered.pid;
    entered.release();
    assert_eq!(running.result_timeout(LONG), Ok(&pid));
}

#[test]
fn max_tasks_per_child() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_tasks_per_child(2)
        .build()
        .expect("start a pool");
    let futures: Vec<_> = (0..6)
        .map(|_| pool.submit(worker_pid, ()).unwrap())
        .collect();
    let mut per_pid = BTreeMap::new();
    for future in &futures {
        let pid = *future.result_timeout(LONG).expect("a pid");
        *per_pid.entry(pid).or_insert(0) += 1;
    }
    assert_eq!(per_pid.len(), 3, "{per_pid:?}");
    assert!(per_pid.values().all(|&n| n == 2), "{per_pid:?}");
}

/// The initializer runs once in every worker, before its tasks, and what it sets stays.
#[test]
fn initializer() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .max_tasks_per_child(3)
        .initializer(init_state, 42)
        .build()
        .expect("start a pool");
    let futures: Vec<_> = (0..12)
        .map(|_| pool.submit(read_state, ()).unwrap())
        .collect();
    let mut pids = std::collections::BTreeSet::new();
    for future in &futures {
        let &(value, runs, pid) = future.result_timeout(LONG).expect("a state");
        assert_eq!((value, runs), (42, 1), "worker {pid}");
        pids.insert(pid);
    }
    // Twelve tasks, three per worker: every new worker ran the initializer once.
    assert!(pids.len() >= 4, "{pids:?}");
    // The parent's own statics are untouched.
    assert_eq!(STATE.load(Ordering::SeqCst), 0);
}

/// An initializer that keeps failing breaks the pool after three tries: the pending future gets
/// the cause, and `submit` refuses.
#[test]
fn failing_initializer_breaks_the_pool() {
    let _serial = serial();
    let gate = Gate::new();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer(bad_init, gate.path())
        .build()
        .expect("start a pool");
    let pending = pool.submit(square, 3).unwrap();
    // Each worker's initializer fails when let go; three failures in a row break the pool.
    for _ in 0..3 {
        gate.entered().release();
    }
    let error = pending.result_timeout(LONG).unwrap_err();
    let TaskError::Broken { task, cause } = &error else {
        panic!("expected Broken, got {error:?}")
    };
    assert_eq!(task, <square as Task>::NAME);
    let BrokenCause::Startup {
        failures: 3,
        last: StartupFailure::Initializer {
            task: init,
            message,
        },
    } = cause
    else {
        panic!("expected three initializer failures, got {cause:?}")
    };
    assert_eq!(init, "lifecycle::bad_init");
    assert!(
        message.starts_with("task `lifecycle::bad_init` panicked at "),
        "{message}"
    );
    assert!(message.ends_with("): bad init"), "{message}");
    let text = "3 workers in a row failed to start; the last: the initializer `lifecycle::bad_init` failed: \
                 task `lifecycle::bad_init` panicked at ";
    assert!(
        error.to_string().starts_with(&format!(
            "task `{task}` did not run: the pool is broken: {text}"
        )),
        "{error}"
    );
    // The pool kills the workers still starting when it breaks; once they are reaped, the
    // refusal still names the initializer, not that kill.
    until("the killed workers are reaped", || children().is_empty());
    let refused = pool.submit(square, 4).unwrap_err();
    assert!(refused.error().is_broken(), "{refused:?}");
    assert_eq!(refused.error().broken_cause(), Some(cause));
    assert!(
        refused
            .to_string()
            .starts_with(&format!("the pool is broken: {text}")),
        "{refused}"
    );
    assert_eq!(refused.into_args(), 4);
    within(OBSERVE, "dropping a broken pool", move || drop(pool));
}

/// Two tasks held at the gate (their worker pids, sorted) and four pending behind them.
struct Busy {
    running: Vec<Future<u32>>,
    pids: Vec<u32>,
    pending: Vec<Future<(u64, u32)>>,
    _held: Vec<crash_util::Entered>,
}

fn busy(pool: &ProcessPoolExecutor, gate: &Gate) -> Busy {
    let running: Vec<_> = (0..2)
        .map(|_| pool.submit(hold, gate.path()).unwrap())
        .collect();
    let held: Vec<_> = (0..2).map(|_| gate.entered()).collect();
    let mut pids: Vec<u32> = held.iter().map(|e| e.pid).collect();
    pids.sort_unstable();
    let pending: Vec<_> = (0..4).map(|x| pool.submit(square, x).unwrap()).collect();
    Busy {
        running,
        pids,
        pending,
        _held: held,
    }
}

/// `terminate_workers` / `kill_workers`: running tasks fail with the signal, pending ones are
/// cancelled, the call returns once the workers are gone, and the pool takes no more work.
fn stop_workers(signal: i32, stop: fn(&ProcessPoolExecutor)) {
    let _serial = serial();
    let pool = std::sync::Arc::new(
        ProcessPoolExecutor::builder()
            .max_workers(2)
            .prefetch(1)
            .build()
            .expect("start a pool"),
    );
    let gate = Gate::new();
    let Busy {
        running,
        pids,
        pending,
        _held,
    } = busy(&pool, &gate);
    let stopping = pool.clone();
    within(OBSERVE, "stopping the workers", move || stop(&stopping));
    let mut died = Vec::new();
    for future in &running {
        match future.result_timeout(LONG) {
            Err(TaskError::WorkerDied {
                task, pid, exit, ..
            }) => {
                assert_eq!(task, <hold as Task>::NAME);
                assert_eq!(exit, Exit::Signal(signal), "{exit}");
                died.push(pid);
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
    }
    died.sort_unstable();
    assert_eq!(died, pids);
    for future in &pending {
        assert!(future.cancelled(), "{future:?}");
        assert!(matches!(future.result(), Err(TaskError::Cancelled)));
    }
    assert_eq!(
        children(),
        Default::default(),
        "workers left after the call returned"
    );
    let refused = pool.submit(square, 1).unwrap_err();
    assert!(refused.error().is_shutdown(), "{refused:?}");
    assert_eq!(refused.to_string(), "cannot submit after shutdown");
}

#[test]
fn terminate_workers() {
    stop_workers(libc::SIGTERM, ProcessPoolExecutor::terminate_workers);
}

#[test]
fn kill_workers() {
    stop_workers(libc::SIGKILL, ProcessPoolExecutor::kill_workers);
}

/// Dropping the pool right after its worker was SIGKILLed from outside returns, and the task
/// that ran there fails; the tasks behind it still run.
#[test]
fn drop_after_an_outside_kill() {
    let _serial = serial();
    let pool = pool1();
    let gate = Gate::new();
    let running = pool.submit(hold, gate.path()).unwrap();
    let entered = gate.entered();
    let behind: Vec<_> = (0..3).map(|x| pool.submit(square, x).unwrap()).collect();
    // The worker waits at the gate: alive, our child, not reaped.
    crash_util::sigkill(entered.pid);
    within(OBSERVE, "dropping the pool after a kill", move || {
        drop(pool)
    });
    match running.result() {
        Err(TaskError::WorkerDied { exit, .. }) => assert_eq!(exit.signal_name(), Some("SIGKILL")),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    for (x, future) in (0..3).zip(&behind) {
        assert_eq!(future.result().map(|r| r.0), Ok(x * x));
    }
    assert_eq!(children(), Default::default());
}

/// Dropping the pool right after a task crashed its worker returns.
#[test]
fn drop_after_a_crash() {
    let _serial = serial();
    let pool = pool1();
    let crashed = pool.submit(aborts, ()).unwrap();
    let after = pool.submit(square, 5).unwrap();
    within(OBSERVE, "dropping the pool after a crash", move || {
        drop(pool)
    });
    match crashed.result() {
        Err(TaskError::WorkerDied { exit, .. }) => assert_eq!(exit.signal_name(), Some("SIGABRT")),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(after.result().map(|r| r.0), Ok(25));
    assert_eq!(children(), Default::default());
}

/// Dropping the pool right after `Future::kill` returns.
#[test]
fn drop_after_future_kill() {
    let _serial = serial();
    let pool = pool1();
    let gate = Gate::new();
    let running = pool.submit(sleeps_a_minute, gate.path()).unwrap();
    let _entered = gate.entered();
    assert!(running.kill());
    within(OBSERVE, "dropping the pool after Future::kill", move || {
        drop(pool)
    });
    assert_eq!(running.result(), Err(TaskError::Killed));
    assert_eq!(children(), Default::default());
}

/// `kill` on a task that was sent ahead to a worker but has not started stops it without
/// killing anyone: the task before it and the one behind it finish on the same worker.
#[test]
fn kill_a_task_sent_ahead() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .prefetch(3)
        .build()
        .expect("start a pool");
    let gate = Gate::new();
    let first = pool.submit(hold, gate.path()).unwrap();
    let entered = gate.entered();
    let ahead = pool.submit(square, 2).unwrap();
    let behind = pool.submit(square, 3).unwrap();
    until("both are sent ahead", || {
        ahead.running() && behind.running()
    });
    assert!(ahead.kill());
    assert!(!ahead.cancelled());
    assert_eq!(ahead.result(), Err(TaskError::Killed));
    let pid = entered.pid;
    entered.release();
    assert_eq!(first.result_timeout(LONG), Ok(&pid));
    assert_eq!(
        behind.result_timeout(LONG),
        Ok(&(9, pid)),
        "the task behind the killed one, on the same worker"
    );
    let next = pool.submit(worker_pid, ()).unwrap();
    assert_eq!(next.result_timeout(LONG), Ok(&pid));
}

/// `terminate_workers` with a task sent ahead to a worker (so already running, as in Python's
/// call queue): it cannot be cancelled any more and fails with `TaskError::Terminated`.
#[test]
fn terminate_workers_with_a_task_sent_ahead() {
    let _serial = serial();
    let pool = std::sync::Arc::new(
        ProcessPoolExecutor::builder()
            .max_workers(1)
            .prefetch(2)
            .build()
            .expect("start a pool"),
    );
    let gate = Gate::new();
    let running = pool.submit(hold, gate.path()).unwrap();
    let entered = gate.entered();
    let ahead = pool.submit(square, 1).unwrap();
    let pending = pool.submit(square, 2).unwrap();
    until("the second task is sent ahead", || ahead.running());
    let stopping = pool.clone();
    within(OBSERVE, "terminate_workers", move || {
        stopping.terminate_workers()
    });
    match running.result_timeout(LONG) {
        Err(TaskError::WorkerDied { pid, exit, .. }) => {
            assert_eq!((pid, exit), (entered.pid, Exit::Signal(libc::SIGTERM)));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    match ahead.result_timeout(LONG) {
        Err(error @ TaskError::Terminated { .. }) => {
            let TaskError::Terminated { task } = &error else {
                unreachable!()
            };
            assert_eq!(task, <square as Task>::NAME);
            assert_eq!(
                error.to_string(),
                format!("task `{task}` did not run: the pool's workers were terminated")
            );
        }
        other => panic!("expected Terminated, got {other:?}"),
    }
    assert!(matches!(pending.result(), Err(TaskError::Cancelled)));
    assert_eq!(children(), Default::default());
}
