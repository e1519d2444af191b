//! What only the process pool does: a panic, an abort or an exit in a task fails that task's
//! future and nothing else; errors say what happened (exact `Display` text); a task's own error
//! stays typed; stdout is not the protocol; large values cross; `max_workers` holds.

mod util;

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use cf::{Exit, Future, TaskError};
use serde::{Deserialize, Serialize};
use util::{Gate, LONG, echo, gated, worker_pid};

/// The line of the `panic!` in [`panics`].
const PANIC_LINE: u32 = line!() + 5;

/// Panics with `boom {x}`.
#[cf::task]
fn panics(x: u64) -> u64 {
    panic!("boom {x}");
}

#[cf::task]
fn aborts() -> u64 {
    std::process::abort();
}

#[cf::task]
fn aborts_saying(words: String) -> u64 {
    eprintln!("{words}");
    std::process::abort();
}

#[cf::task]
fn exits(code: i32) -> u64 {
    std::process::exit(code);
}

/// Squares, except that it aborts on 13 and exits with 3 on 31.
#[cf::task]
fn square_or_die(x: u64) -> (u64, u32) {
    match x {
        13 => std::process::abort(),
        31 => std::process::exit(3),
        _ => (x * x, std::process::id()),
    }
}

/// The task's own error type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MyError {
    code: u32,
    why: String,
}

impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "my error {}: {}", self.code, self.why)
    }
}

#[cf::task]
fn checked_div(a: u32, b: u32) -> Result<u32, MyError> {
    a.checked_div(b).ok_or_else(|| MyError {
        code: a,
        why: "division by zero".to_owned(),
    })
}

/// Writes to stdout, including bytes that look like a frame header, then returns `x + 1`.
#[cf::task]
fn noisy(x: u64) -> u64 {
    println!("noise from task {x} on stdout");
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&[16, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'\n']);
    let _ = out.flush();
    eprintln!("noise from task {x} on stderr");
    x + 1
}

/// Sleeps `ms` milliseconds (a workload), then says which process ran it.
#[cf::task]
fn slow_pid(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

/// Reverses `bytes`.
#[cf::task]
fn reverse(bytes: Vec<u8>) -> Vec<u8> {
    let mut bytes = bytes;
    bytes.reverse();
    bytes
}

/// A value whose serialisation fails.
#[derive(Debug, Deserialize)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

#[cf::task]
fn bad_result() -> Unencodable {
    Unencodable
}

#[cf::task]
fn bad_arg(_value: Unencodable) -> u64 {
    0
}

#[test]
fn panic_fails_the_task_and_the_worker_goes_on() {
    let pool = util::process_pool(1);
    let before = *pool.submit(worker_pid, ()).unwrap().result().unwrap();
    let error = pool.submit(panics, 7).unwrap().into_result().unwrap_err();
    let TaskError::Panicked(info) = &error else {
        panic!("expected a panic: {error:?}");
    };
    assert_eq!(info.message, "boom 7");
    assert_eq!(info.task, "process::panics");
    assert_eq!(info.pid, before);
    let location = info.location.as_ref().expect("a location");
    assert!(location.file.ends_with("process.rs"), "{location}");
    assert_eq!(location.file, file!());
    assert_eq!(location.line, PANIC_LINE);
    assert_eq!(
        error.to_string(),
        format!(
            "task `process::panics` panicked at {}:{PANIC_LINE}:{} (pid {before}): boom 7",
            file!(),
            location.column
        )
    );
    assert!(error.is_panicked() && error.panic_info() == Some(info));
    // The same worker runs the next task.
    assert_eq!(pool.submit(worker_pid, ()).unwrap().result(), Ok(&before));
    assert_eq!(pool.submit(echo, 8).unwrap().result(), Ok(&8));
}

#[test]
fn abort_fails_only_its_task() {
    let pool = util::process_pool(2);
    let futures: Vec<Future<(u64, u32)>> = (0..50)
        .map(|x| pool.submit(square_or_die, x).unwrap())
        .collect();
    let mut pids = HashSet::new();
    let mut died = None;
    for (x, f) in (0..).zip(&futures) {
        match (x, f.result()) {
            (
                13,
                Err(TaskError::WorkerDied {
                    task, pid, exit, ..
                }),
            ) => {
                assert_eq!(task, "process::square_or_die");
                assert_eq!(exit, Exit::Signal(6));
                assert_eq!(exit.signal_name(), Some("SIGABRT"));
                assert_eq!(exit.to_string(), "signal 6 (SIGABRT)");
                died = Some(pid);
            }
            (31, Err(TaskError::WorkerDied { exit, .. })) => {
                assert_eq!(exit, Exit::Code(3));
                assert_eq!(exit.signal_name(), None);
                assert_eq!(exit.to_string(), "exit code 3");
            }
            (x, Ok((square, pid))) => {
                assert_eq!(*square, x * x);
                pids.insert(*pid);
            }
            (x, other) => panic!("{x}: {other:?}"),
        }
    }
    let died = died.expect("task 13 died");
    // The pool takes new work, on workers other than the dead one.
    let after: Vec<Future<(u64, u32)>> = (100..120)
        .map(|x| pool.submit(square_or_die, x).unwrap())
        .collect();
    for (x, f) in (100..).zip(&after) {
        let (square, pid) = f.result().unwrap();
        assert_eq!(*square, x * x);
        assert_ne!(*pid, died, "a dead worker answered");
    }
}

#[test]
fn tasks_queued_behind_a_dying_task_run_elsewhere() {
    let pool = util::process_pool(1);
    let gate = Gate::new();
    let blocker = pool.submit(gated, (gate.path(), 0)).unwrap();
    let entered = gate.entered();
    // All of these wait behind the blocker, some of them sent to the worker ahead of time.
    let doomed = pool.submit(aborts, ()).unwrap();
    let behind: Vec<Future<u64>> = (0..20).map(|i| pool.submit(echo, i).unwrap()).collect();
    entered.release();
    assert_eq!(blocker.result(), Ok(&0));
    assert!(doomed.result().unwrap_err().is_worker_died());
    for (i, f) in (0..).zip(&behind) {
        assert_eq!(f.result(), Ok(&i));
    }
}

#[test]
fn exit_code() {
    let pool = util::process_pool(1);
    let error = pool.submit(exits, 3).unwrap().into_result().unwrap_err();
    let TaskError::WorkerDied { exit, task, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*exit, Exit::Code(3));
    assert_eq!(task, "process::exits");
    assert!(error.is_worker_died());
    // Exit code 0 in the middle of a task is a death too, not a result.
    let error = pool.submit(exits, 0).unwrap().into_result().unwrap_err();
    assert!(
        matches!(
            error,
            TaskError::WorkerDied {
                exit: Exit::Code(0),
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(pool.submit(echo, 1).unwrap().result_timeout(LONG), Ok(&1));
}

#[test]
fn worker_died_display() {
    let pool = util::process_pool(1);
    let silent = pool.submit(aborts, ()).unwrap().into_result().unwrap_err();
    let TaskError::WorkerDied { pid, stderr, .. } = &silent else {
        panic!("{silent:?}");
    };
    assert!(stderr.trim().is_empty(), "{stderr:?}");
    assert_eq!(
        silent.to_string(),
        format!(
            "worker (pid {pid}) died with signal 6 (SIGABRT) while running task `process::aborts`"
        )
    );
    let said = pool
        .submit(aborts_saying, "out of ideas".to_owned())
        .unwrap()
        .into_result()
        .unwrap_err();
    let TaskError::WorkerDied { pid, .. } = &said else {
        panic!("{said:?}");
    };
    assert_eq!(
        said.to_string(),
        format!(
            "worker (pid {pid}) died with signal 6 (SIGABRT) while running task \
             `process::aborts_saying`; its last words: out of ideas"
        )
    );
    let exited = pool.submit(exits, 3).unwrap().into_result().unwrap_err();
    let TaskError::WorkerDied { pid, .. } = &exited else {
        panic!("{exited:?}");
    };
    assert_eq!(
        exited.to_string(),
        format!("worker (pid {pid}) died with exit code 3 while running task `process::exits`")
    );
}

#[test]
fn own_error_stays_typed() {
    let pool = util::process_pool(1);
    assert_eq!(pool.submit(checked_div, (7, 2)).unwrap().result(), Ok(&3));
    let error = pool
        .submit(checked_div, (7, 0))
        .unwrap()
        .into_result()
        .unwrap_err();
    let expected = MyError {
        code: 7,
        why: "division by zero".to_owned(),
    };
    assert_eq!(error, TaskError::Failed(expected.clone()));
    assert_eq!(error.failed(), Some(&expected));
    assert!(error.is_failed() && !error.is_panicked() && !error.is_worker_died());
    assert_eq!(error.to_string(), "my error 7: division by zero");
    assert_eq!(error.map_failed(|e| e.code), TaskError::Failed(7));
}

#[test]
fn stdout_is_not_the_protocol() {
    let pool = util::process_pool(2);
    let futures: Vec<Future<u64>> = (0..20).map(|x| pool.submit(noisy, x).unwrap()).collect();
    for (x, f) in (0..).zip(&futures) {
        assert_eq!(f.result(), Ok(&(x + 1)));
    }
}

#[test]
fn large_values_cross_both_ways() {
    let pool = util::process_pool(1);
    let bytes: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut expected = bytes.clone();
    expected.reverse();
    let futures: Vec<Future<Vec<u8>>> = (0..2)
        .map(|_| pool.submit(reverse, bytes.clone()).unwrap())
        .collect();
    for f in futures {
        assert!(f.result().unwrap() == &expected, "8 MiB came back changed");
    }
}

#[test]
fn codec_errors() {
    let pool = util::process_pool(1);
    let future = pool.submit(bad_result, ()).unwrap();
    let error = future.result().unwrap_err();
    let TaskError::Codec { task, message } = error else {
        panic!("{error:?}");
    };
    assert_eq!(task, "process::bad_result");
    assert!(
        message.contains("this value refuses to be encoded"),
        "{message}"
    );
    let refused = pool.submit(bad_arg, Unencodable).unwrap_err();
    assert!(refused.error().is_encode());
    assert!(
        refused
            .to_string()
            .contains("this value refuses to be encoded"),
        "{refused}"
    );
    let _args: Unencodable = refused.into_args();
    // The pool is fine.
    assert_eq!(pool.submit(echo, 5).unwrap().result(), Ok(&5));
}

#[test]
fn max_workers_is_respected() {
    let pool = util::process_pool(2);
    assert_eq!(pool.max_workers(), 2);
    let futures: Vec<Future<u32>> = (0..20).map(|_| pool.submit(slow_pid, 5).unwrap()).collect();
    let pids: HashSet<u32> = futures.iter().map(|f| *f.result().unwrap()).collect();
    assert!(!pids.is_empty() && pids.len() <= 2, "{pids:?}");
    // Never more than two at once: a third gated task waits until one of two is let go.
    let gate = Gate::new();
    let futures: Vec<Future<u64>> = (0..3)
        .map(|i| pool.submit(gated, (gate.path(), i)).unwrap())
        .collect();
    let first = gate.entered();
    let second = gate.entered();
    assert!(
        gate.entered_within(Duration::from_millis(500)).is_none(),
        "a third task ran beside two on a pool of two"
    );
    first.release();
    let third = gate.entered();
    second.release();
    third.release();
    for f in &futures {
        f.result().unwrap();
    }
}

#[test]
fn zero_workers_is_a_configuration_error() {
    let error = cf::ProcessPoolExecutor::with_max_workers(0).expect_err("zero workers");
    assert!(error.is_config());
    assert_eq!(
        error.to_string(),
        "invalid pool setting: max_workers must be greater than 0"
    );
}
