//! Workers die when the process that owns the pool dies, also by SIGKILL (issue 3, item 5).
//!
//! `workers_die_with_a_killed_parent` re-runs this test binary as `child_parent` with
//! [`CHILD_ENV`] set: the child starts a pool, keeps a worker busy, prints the pids of all its
//! workers and waits to be killed. The test SIGKILLs it and watches the workers go. Without
//! [`CHILD_ENV`], `child_parent` returns at once, so a normal run passes it trivially.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cf::ProcessPoolExecutor;
use crash_util::{LONG, OBSERVE, children, wait_dead, worker_pid};

/// Marks the re-run of this binary that plays the parent to be killed.
const CHILD_ENV: &str = "CF_TEST_PARENT";

/// The line on which the child reports its workers.
const WORKERS: &str = "cf-test-workers:";

#[cf::task]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// The parent to be killed: only does something when re-run by the test below.
#[test]
fn child_parent() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let pool = ProcessPoolExecutor::with_max_workers(2).expect("start a pool");
    // Both workers are up and serving...
    let pids: Vec<_> = (0..4)
        .map(|_| pool.submit(worker_pid, ()).unwrap())
        .collect();
    for pid in &pids {
        pid.result_timeout(LONG).expect("a pid");
    }
    // ...and one is busy with a long task when the parent dies.
    let _busy = pool.submit(sleep_ms, 60_000).unwrap();
    // Every worker, the spare too: all children of this process. The spare starts in the
    // background, so it may come after the first results.
    let deadline = Instant::now() + LONG;
    while children().len() < 3 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    let workers: Vec<String> = children().iter().map(u32::to_string).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{WORKERS} {}", workers.join(" ")).expect("write the pids");
    out.flush().expect("flush");
    drop(out);
    // Waits to be killed; a parent test that does not kill it fails on its own.
    std::thread::sleep(LONG);
    std::process::exit(1);
}

/// The child, killed and reaped however the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn workers_die_with_a_killed_parent() {
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "child_parent", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map(Child)
        .expect("re-run this test binary");
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let mut seen: Vec<String> = Vec::new();
    let workers: Vec<u32> = loop {
        let Some(line) = lines.next() else {
            let status = child.0.wait().expect("wait for the child");
            panic!("the child ended ({status}) without reporting its workers; it wrote {seen:?}");
        };
        let line = line.expect("read the child's stdout");
        // The harness may have begun the line ("test child_parent ... ").
        if let Some(at) = line.find(WORKERS) {
            let pids = &line[at + WORKERS.len()..];
            break pids
                .split_whitespace()
                .map(|p| p.parse().expect("a pid"))
                .collect();
        }
        seen.push(line);
    };
    // Two workers and the spare.
    assert_eq!(workers.len(), 3, "{workers:?}");
    let child_pid = child.0.id();
    for &pid in &workers {
        let (_, ppid, _) = crash_util::stat(pid).expect("a live worker");
        assert_eq!(ppid, child_pid, "worker {pid} is the child's");
    }
    child.0.kill().expect("SIGKILL the child");
    let status = child.0.wait().expect("reap the child");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    let started = Instant::now();
    let alive = wait_dead(&workers, OBSERVE);
    eprintln!(
        "the workers of the killed parent were gone {:?} after it was reaped",
        started.elapsed()
    );
    assert_eq!(
        alive,
        Vec::<u32>::new(),
        "workers alive {OBSERVE:?} after their parent was killed"
    );
}
