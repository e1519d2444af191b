//! Worker output (issue 10 principle 2, issue 12 item 4): the parent never blocks on its own
//! stderr, forwarded worker stderr goes through libtest's capture, and a task's panic that comes
//! back as an error is not also printed by the worker.
//!
//! Each test re-runs this binary as a child (a `child_*` test, which does nothing unless
//! [`CHILD_ENV`] names it) and watches what the child does and prints. On `main` before the fix:
//! the child whose stderr nobody reads froze (its I/O thread blocked in a `write_all` to stderr,
//! and the time limit never fired); worker output showed up on stderr under capture; a task's
//! panic was printed by the worker and again by the caller.
#![allow(missing_docs, reason = "tasks are test fixtures")]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use cf::{ProcessPoolExecutor, TaskOptions};

/// Names the `child_*` test that should do its work in this run.
const CHILD_ENV: &str = "CF_TEST_OUTPUT_CHILD";

/// How long a child gets before the test calls it a hang.
const LONG: Duration = Duration::from_secs(120);

/// The line a child prints (on stdout) when all went well.
const DONE: &str = "cf-test-output: done";

/// The line a task writes to its stderr in the capture test.
const WORKER_LINE: &str = "cf-test-output: a line from the worker";

/// The message of the panic in the double-print test.
const PANIC_MESSAGE: &str = "cf-test-output: the task panics";

fn child_wanted(name: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == name)
}

#[cf::task]
fn chatty(i: u32) -> u32 {
    let line = format!("{i:>9} {}\n", "x".repeat(10 * 1024 - 11));
    eprint!("{line}");
    i
}

#[cf::task]
fn spin() {
    loop {
        std::hint::spin_loop();
    }
}

#[cf::task]
fn says_a_line() -> u32 {
    eprintln!("{WORKER_LINE}");
    1
}

/// The line a task prints to its stdout in the capture test.
const WORKER_STDOUT_LINE: &str = "cf-test-output: a line on the worker's stdout";

#[cf::task]
fn prints_a_line() -> u32 {
    println!("{WORKER_STDOUT_LINE}");
    2
}

#[cf::task]
fn panics() -> u32 {
    panic!("{PANIC_MESSAGE}");
}

/// The child with a stderr nobody reads: 2000 tasks write 10 KiB each to stderr, and a spinning
/// task has a 200 ms time limit.
#[test]
fn child_with_a_stuck_stderr() {
    if !child_wanted("child_with_a_stuck_stderr") {
        return;
    }
    let pool = ProcessPoolExecutor::with_max_workers(2).expect("start a pool");
    let limit = TaskOptions::new().timeout(Duration::from_millis(200));
    let futures: Vec<_> = (0..2000)
        .map(|i| pool.submit(chatty, i).expect("submit"))
        .collect();
    let stuck = pool.submit_with(spin, (), limit).expect("submit");
    for (i, future) in futures.iter().enumerate() {
        let got = future.result_timeout(LONG);
        if got != Ok(&(i as u32)) {
            println!("cf-test-output: task {i} gave {got:?}");
            return;
        }
    }
    match stuck.result_timeout(LONG) {
        Err(e) if e.is_time_limit() => println!("{DONE}"),
        other => println!("cf-test-output: the spinning task gave {other:?}"),
    }
}

/// The child whose worker writes a line to stderr, and whose task panics.
#[test]
fn child_with_worker_output() {
    if !child_wanted("child_with_worker_output") {
        return;
    }
    let pool = ProcessPoolExecutor::with_max_workers(1).expect("start a pool");
    assert_eq!(pool.submit(says_a_line, ()).unwrap().result(), Ok(&1));
    assert_eq!(pool.submit(prints_a_line, ()).unwrap().result(), Ok(&2));
    let error = pool.submit(panics, ()).unwrap().result().unwrap_err();
    eprintln!("the caller prints the error: {error}");
    drop(pool);
    println!("{DONE}");
}

/// What a child wrote, and whether it said it was done.
struct Run {
    stdout: String,
    stderr: Option<String>,
}

/// Runs the child test `name` (with `--nocapture` when `nocapture`), its stderr read unless
/// `read_stderr` is false; gives up after [`LONG`].
fn run_child(name: &str, nocapture: bool, read_stderr: bool) -> Run {
    let mut command = Command::new(std::env::current_exe().expect("this test binary"));
    command.args(["--exact", name, "--test-threads=1"]);
    if nocapture {
        command.arg("--nocapture");
    }
    let mut child = command
        .env(CHILD_ENV, name)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("re-run this test binary");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let out_tx = tx.clone();
    thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            text.push_str(&line);
            text.push('\n');
        }
        let _ = out_tx.send((true, text));
    });
    // Held, never read: the child's stderr fills up.
    let _held = if read_stderr {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            let _ = tx.send((false, text));
        });
        None
    } else {
        Some(stderr)
    };
    let mut run = Run {
        stdout: String::new(),
        stderr: None,
    };
    let wanted = if read_stderr { 2 } else { 1 };
    for _ in 0..wanted {
        match rx.recv_timeout(LONG) {
            Ok((true, text)) => run.stdout = text,
            Ok((false, text)) => run.stderr = Some(text),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the child {name} hung; its stdout so far is lost");
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    run
}

/// A parent whose stderr is a pipe nobody reads keeps serving: 2000 tasks that each write
/// 10 KiB to stderr complete, and a 200 ms time limit fires. On `main` the I/O thread blocked
/// in `write_all` to the full pipe: the child froze.
#[test]
fn a_stuck_stderr_does_not_stall_the_pool() {
    let run = run_child("child_with_a_stuck_stderr", true, false);
    assert!(run.stdout.contains(DONE), "{}", run.stdout);
}

/// Forwarded worker stderr goes through libtest's capture: it shows with `--nocapture` only.
/// On `main` it was written to the raw stderr, which libtest does not capture.
#[test]
fn worker_output_is_captured_by_libtest() {
    let captured = run_child("child_with_worker_output", false, true);
    // Its own output captured too, the child says only that it passed.
    assert!(
        captured.stdout.contains("child_with_worker_output ... ok"),
        "{}",
        captured.stdout
    );
    let stderr = captured.stderr.unwrap_or_default();
    assert!(!stderr.contains(WORKER_LINE), "{stderr}");
    // A task's `println!` too (it went straight to the inherited stdout before).
    assert!(
        !captured.stdout.contains(WORKER_STDOUT_LINE),
        "{}",
        captured.stdout
    );
    let shown = run_child("child_with_worker_output", true, true);
    assert!(shown.stdout.contains(DONE), "{}", shown.stdout);
    assert!(
        shown.stdout.contains(WORKER_STDOUT_LINE),
        "{}",
        shown.stdout
    );
    let stderr = shown.stderr.unwrap_or_default();
    assert!(stderr.contains(WORKER_LINE), "{stderr}");
}

/// A task's panic that comes back as its future's error is printed once (by whoever prints the
/// error), not also by the worker's panic hook. On `main` the worker printed it as well.
#[test]
fn a_task_panic_is_not_printed_twice() {
    let shown = run_child("child_with_worker_output", true, true);
    assert!(shown.stdout.contains(DONE), "{}", shown.stdout);
    let stderr = shown.stderr.unwrap_or_default();
    assert_eq!(stderr.matches(PANIC_MESSAGE).count(), 1, "{stderr}");
}
