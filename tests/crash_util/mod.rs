//! Helpers of the crash-contract tests (`crash.rs`, `lifecycle.rs`, `resources.rs`,
//! `parent_death.rs`): a lock that keeps one pool at a time per test binary, a gate that tells the
//! test a task really started in its worker (and holds it there), bounded observation of other
//! processes through `/proc`, and a guard that turns a hang into a failure.
//!
//! Every bounded wait here watches something outside this process (a worker, a child); nothing
//! here sleeps to order this process's own threads.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

#[path = "../util/gate.rs"]
mod gate;

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use gate::pass_gate;
#[allow(
    unused_imports,
    reason = "not every test binary uses every part of the gate"
)]
pub(crate) use gate::{Entered, Gate};

/// How long a test waits for something that must happen before it calls it a hang.
pub(crate) const LONG: Duration = Duration::from_secs(60);

/// How long a test waits for another process to be seen starting or dying.
pub(crate) const OBSERVE: Duration = Duration::from_secs(10);

static SERIAL: Mutex<()> = Mutex::new(());

/// Tests that start workers take this lock: one pool at a time per binary on the two-core
/// machines, and `/proc/self/fd` and the child list are this test's alone while it holds it.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The task's side of a [`Gate`]: says this worker's pid, then blocks until the test lets it go
/// (or drops its end).
pub(crate) fn meet(path: &str) {
    pass_gate(path, 0);
}

/// Meets the gate at `path` and, once let go, returns its worker's pid.
#[cf::task]
pub(crate) fn hold(path: String) -> u32 {
    meet(&path);
    std::process::id()
}

/// The pid of the process that runs it.
#[cf::task]
pub(crate) fn worker_pid() -> u32 {
    std::process::id()
}

/// `x * x`, and the pid of the worker that computed it.
#[cf::task]
pub(crate) fn square(x: u64) -> (u64, u32) {
    (x.wrapping_mul(x), std::process::id())
}

/// The number of open fds of this process (not counting the one that lists them).
pub(crate) fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .count()
        - 1
}

/// The open fds of this process, with what each points to (not counting the one that lists them).
pub(crate) fn fds() -> Vec<(u32, String)> {
    let dir = format!("/proc/{}/fd", std::process::id());
    let mut all: Vec<(u32, String)> = std::fs::read_dir(&dir)
        .expect("list /proc/<pid>/fd")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path())
                .ok()?
                .to_string_lossy()
                .into_owned();
            Some((fd, target))
        })
        .filter(|(_, target)| *target != dir)
        .collect();
    all.sort();
    all
}

/// The fds above stdio that this process has open without close-on-exec: what it inherited from
/// whoever started it, which every process it starts inherits in turn.
pub(crate) fn inherited() -> BTreeSet<u32> {
    const O_CLOEXEC: u32 = 0o2_000_000;
    fds()
        .into_iter()
        .map(|(fd, _)| fd)
        .filter(|&fd| fd > 2)
        .filter(|fd| {
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
            flags.is_some_and(|f| f & O_CLOEXEC == 0)
        })
        .collect()
}

/// `(pid, ppid, state)` of a process from `/proc/<pid>/stat`, if it exists.
pub(crate) fn stat(pid: u32) -> Option<(u32, u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything, parentheses too.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((pid, ppid, state))
}

/// The child processes of `parent` (zombies included), by pid.
pub(crate) fn children_of(parent: u32) -> BTreeSet<u32> {
    std::fs::read_dir("/proc")
        .expect("list /proc")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .filter(|&(_, ppid, _)| ppid == parent)
        .map(|(pid, _, _)| pid)
        .collect()
}

/// This process's children (zombies included).
pub(crate) fn children() -> BTreeSet<u32> {
    children_of(std::process::id())
}

/// Whether `pid` is dead: no such process, or a zombie that nobody has reaped yet.
pub(crate) fn is_dead(pid: u32) -> bool {
    stat(pid).is_none_or(|(_, _, state)| matches!(state, 'Z' | 'X' | 'x'))
}

/// Watches `pids` for at most `within` until all are dead; returns those still alive.
pub(crate) fn wait_dead(pids: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| !is_dead(p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// This process's resident memory, in bytes (`VmRSS` of `/proc/self/status`).
pub(crate) fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .expect("a number")
        .parse()
        .expect("kB");
    kib * 1024
}

/// Sends SIGKILL to `pid`, a worker of ours that has not been reaped (so the pid names no other
/// process).
pub(crate) fn sigkill(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    // SAFETY: kill(2) takes a pid and a signal number and touches no memory of ours.
    let sent = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(
        sent,
        0,
        "kill -9 {pid}: {}",
        std::io::Error::last_os_error()
    );
}

/// Runs `f` on its own thread and fails the test if it does not return within `limit`: a hang
/// becomes a failure (the stuck thread is left behind).
pub(crate) fn within<R: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not return within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Waits, for at most [`OBSERVE`], until the pool's I/O thread has done what `done` checks (a
/// future it has sent to a worker reports `running()`). The pool has no event for "sent to a
/// worker", so this watches for it; it orders nothing of the test's own.
pub(crate) fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + OBSERVE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {OBSERVE:?}");
        thread::yield_now();
    }
}

/// Issue "Hardening" item 8 on `pool`: after `warm` tiny tasks (so that tasks count as short and
/// are sent many ahead), a task held at a gate followed by 40 tiny ones: every tiny one completes
/// while the held one still runs (the ones queued behind it are taken back for the idle worker).
pub(crate) fn short_tasks_pass_a_held_one(pool: &cf::ProcessPoolExecutor, warm: u64) {
    let warm: Vec<_> = (0..warm)
        .map(|x| pool.submit(square, x).expect("submit"))
        .collect();
    for future in warm {
        future.result().expect("a square");
    }
    let gate = Gate::new();
    let long = pool.submit(hold, gate.path()).expect("submit");
    let short: Vec<_> = (0..40u64)
        .map(|x| pool.submit(square, x).expect("submit"))
        .collect();
    let entered = gate.entered();
    let done = cf::wait(&short, OBSERVE, cf::ReturnWhen::AllCompleted);
    assert!(
        done.not_done.is_empty(),
        "{} short tasks wait behind the long one",
        done.not_done.len()
    );
    for (x, future) in (0u64..).zip(&short) {
        assert_eq!(future.result().expect("a square").0, x * x);
    }
    assert!(!long.done(), "the long task still runs");
    let pid = entered.pid;
    drop(entered);
    assert_eq!(*long.result().expect("a pid"), pid);
}
