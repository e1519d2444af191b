//! A dying task's last words are its own text, whatever earlier tasks wrote and however
//! the parent's reads of stderr fall.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::time::Duration;

use cf::{ProcessPoolExecutor, TaskError};
use crash_util::{LONG, OBSERVE, serial, square};
use rand::{Rng, SeedableRng};

/// Writes `size` bytes of lines `token`, pauses, then dies if asked.
#[cf::task]
fn speak(token: String, size: usize, pause_us: u64, die: bool) {
    if size > 0 {
        let mut s = String::new();
        while s.len() < size {
            s.push_str(&token);
            s.push('\n');
        }
        eprint!("{s}");
    }
    if pause_us > 0 {
        std::thread::sleep(Duration::from_micros(pause_us));
    }
    if die {
        std::process::abort();
    }
}

fn check(token: &str, size: usize, stderr: &str) -> Result<(), String> {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.is_empty() && *l != "[...]")
        .collect();
    if size == 0 && !lines.is_empty() {
        return Err(format!("{token}: quiet task got last words {stderr:?}"));
    }
    if size > 0 && lines.is_empty() {
        return Err(format!("{token}: its own text is missing"));
    }
    for l in lines {
        // `[...]` may be glued to the head's last partial line.
        let l = l.rsplit("[...]").next().unwrap_or(l);
        if !l.is_empty() && !token.starts_with(l) && !token.ends_with(l) && l != token {
            return Err(format!("{token}: foreign line {l:?} in {stderr:.300?}"));
        }
    }
    Ok(())
}

#[test]
fn last_words_stay_the_dying_tasks_own_under_random_interleavings() {
    let _serial = serial();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .build()
        .expect("pool");
    let mut failures = Vec::new();
    let mut deaths = 0;
    for round in 0..40 {
        let mut futures = Vec::new();
        for i in 0..24 {
            let token = format!("r{round}t{i}");
            let size = match rng.random_range(0..6) {
                0..=2 => 0,
                3 => rng.random_range(1..200),
                4 => rng.random_range(5000..20000),
                _ => rng.random_range(60000..200000),
            };
            let pause = match rng.random_range(0..3) {
                0 => 0,
                1 => rng.random_range(1..2000),
                _ => rng.random_range(5000..15000),
            };
            let die = rng.random_range(0..6) == 0;
            let f = pool
                .submit(speak, (token.clone(), size, pause, die))
                .unwrap();
            futures.push((token, size, die, f));
        }
        for (token, size, die, f) in futures {
            assert!(f.wait_timeout(LONG), "hang");
            match f.into_result() {
                Ok(()) => assert!(!die, "{token} should have died"),
                Err(TaskError::WorkerDied { stderr, .. }) => {
                    deaths += 1;
                    assert!(die, "{token} died without asking: {stderr:.300}");
                    if let Err(e) = check(&token, size, &stderr) {
                        failures.push(e);
                    }
                }
                Err(e) => panic!("{token}: {e:?}"),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {deaths} deaths: {failures:#?}",
        failures.len()
    );
}

/// Makes the worker's stderr non-blocking (its open file description, which the worker's own
/// copy shares), fills the pipe with lines `token`, and returns.
#[cf::task]
fn fills_stderr_nonblocking(token: String) {
    use std::io::Write;
    // SAFETY: test; fcntl on fd 2.
    unsafe {
        let flags = libc::fcntl(2, libc::F_GETFL);
        libc::fcntl(2, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let line = format!("{token}\n");
    let mut err = std::io::stderr();
    while err.write(line.as_bytes()).is_ok() {}
}

/// Aborts without a word.
#[cf::task]
fn dies_quietly() {
    std::process::abort();
}

#[test]
fn a_full_nonblocking_stderr_does_not_lose_the_task_end_marker() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .expect("pool");
    let chatty = pool
        .submit(
            fills_stderr_nonblocking,
            "an earlier task's line".to_owned(),
        )
        .unwrap();
    let quiet = pool.submit(dies_quietly, ()).unwrap();
    assert!(chatty.wait_timeout(LONG));
    chatty.into_result().expect("the chatty task");
    assert!(quiet.wait_timeout(LONG));
    match quiet.into_result() {
        Err(TaskError::WorkerDied { stderr, .. }) => assert!(
            !stderr.contains("an earlier task's line"),
            "another task's output taken for last words: {:?}",
            &stderr[..stderr.len().min(200)]
        ),
        other => panic!("expected the worker's death, got {other:?}"),
    }
}

/// Bytes waiting in this process's stderr pipe (`FIONREAD`).
fn stderr_unread() -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one `int` through the pointer, which points at `n`, alive and
    // writable for the call.
    let got = unsafe { libc::ioctl(2, libc::FIONREAD, &raw mut n) };
    assert_eq!(got, 0, "FIONREAD on stderr");
    n
}

/// Writes `line` to stderr and returns once the parent has read it (the pipe is empty again):
/// the parent then holds the line, with no task-end marker after it yet.
#[cf::task]
fn says_until_read(line: String) {
    eprintln!("{line}");
    while stderr_unread() > 0 {
        std::thread::yield_now();
    }
}

/// Writes `line` to stderr, waits until the parent has read it, then aborts.
#[cf::task]
fn says_until_read_then_aborts(line: String) {
    eprintln!("{line}");
    while stderr_unread() > 0 {
        std::thread::yield_now();
    }
    std::process::abort();
}

/// A worker with a ring writes a task's end marker only when the parent may hold some of the
/// task's output. A task whose output the parent read while it ran still gets its marker, so
/// the output is not taken for the last words of a later task that dies without a word; and a
/// dying task's own output, read while it ran, is its last words.
#[test]
fn last_words_are_the_dying_tasks_own_when_output_was_read_while_it_ran() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).expect("start a pool");
    outcome(
        pool.submit(says_until_read, "an earlier task's line".to_owned())
            .unwrap(),
    )
    .expect("the chatty task");
    for x in 0..20 {
        assert_eq!(
            outcome(pool.submit(square, x).unwrap()).expect("quiet").0,
            x * x
        );
    }
    match outcome(pool.submit(dies_quietly, ()).unwrap()) {
        Err(TaskError::WorkerDied { stderr, .. }) => assert!(
            !stderr.contains("an earlier task's line"),
            "another task's output taken for last words: {stderr:?}"
        ),
        other => panic!("expected the worker's death, got {other:?}"),
    }
    let line = "the dying task's own line";
    match outcome(
        pool.submit(says_until_read_then_aborts, line.to_owned())
            .unwrap(),
    ) {
        Err(TaskError::WorkerDied { stderr, .. }) => {
            assert_eq!(stderr.trim_end(), line, "its own output, read while it ran")
        }
        other => panic!("expected the worker's death, got {other:?}"),
    }
    crash_util::within(OBSERVE, "dropping the pool", move || drop(pool));
}

fn outcome<T: Clone>(future: cf::Future<T>) -> Result<T, TaskError> {
    assert!(future.wait_timeout(LONG), "the task hung");
    future.into_result()
}
