//! A dying task's last words are its own text, whatever earlier tasks wrote and however
//! the parent's reads of stderr fall.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::time::Duration;

use cf::{ProcessPoolExecutor, TaskError};
use crash_util::{LONG, serial};
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
