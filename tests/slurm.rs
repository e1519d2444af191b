//! Workers under agents that Slurm's `srun` starts (`cf::launch::Slurm`), on a real cluster: the
//! one-node cluster of `.ci/slurm-node-up` in CI. Run with `CF_TEST_SLURM=1` and `SLURM_CONF`
//! set; without them each test says it is skipped, by name, and fails if `CI` is set.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cf::launch::Slurm;
use cf::{Exit, ProcessPoolExecutor, TaskError};
use crash_util::{Gate, LONG, serial};

/// Whether Slurm is here to test against; if not, says so and fails under CI.
fn slurm(test: &str) -> bool {
    let wanted = std::env::var_os("CF_TEST_SLURM").is_some_and(|v| v == "1");
    let srun = Command::new("timeout")
        .args(["10", "srun", "--version"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if wanted && srun {
        return true;
    }
    let why = if wanted {
        "srun does not run"
    } else {
        "CF_TEST_SLURM is not 1"
    };
    println!("skipped: {test}: no Slurm ({why})");
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} was skipped under CI: {why}"
    );
    false
}

/// The Slurm jobs in the queue.
fn squeue() -> String {
    let out = Command::new("timeout")
        .args(["10", "squeue", "-h"])
        .stdin(Stdio::null())
        .output()
        .expect("run squeue");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (at most 10 s) for the queue to be empty.
fn queue_empties() {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queue = squeue();
        if queue.trim().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "jobs left behind:\n{queue}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A pool of 4 workers, one on each of 4 Slurm tasks.
fn pool4() -> ProcessPoolExecutor {
    let started = Instant::now();
    let pool = ProcessPoolExecutor::builder()
        .launcher(Slurm::new().ntasks(4).overcommit(true))
        .spare_worker(false)
        .build()
        .expect("start a pool on Slurm");
    crash_util::until("4 workers up", || pool.stats().workers == 4);
    println!("4 workers up on Slurm after {:?}", started.elapsed());
    pool
}

/// Meets the gate, then says which Slurm task its agent is.
#[cf::task]
fn rank_at_gate(path: String) -> (String, String) {
    crash_util::meet(&path);
    (
        std::env::var("SLURM_PROCID").unwrap_or_default(),
        std::env::var("SLURM_JOB_ID").unwrap_or_default(),
    )
}

#[cf::task]
fn naps(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(200));
    x
}

#[cf::task]
fn aborts(x: u64) -> u64 {
    eprintln!("worker about to abort for {x}");
    std::process::abort()
}

/// Holds at the gate.
#[cf::task]
fn held(path: String) -> u64 {
    crash_util::meet(&path);
    0
}

#[test]
fn four_workers_on_four_ranks() {
    if !slurm("four_workers_on_four_ranks") {
        return;
    }
    let _serial = serial();
    let pool = pool4();
    assert_eq!(pool.max_workers(), 4, "one worker per task");
    let gate = Gate::new();
    let futures: Vec<_> = (0..4)
        .map(|_| pool.submit(rank_at_gate, gate.path()).unwrap())
        .collect();
    // All four at the gate at once: four workers, one per agent.
    let entered: Vec<_> = (0..4).map(|_| gate.entered()).collect();
    drop(entered);
    let mut ranks = BTreeSet::new();
    let mut jobs = BTreeSet::new();
    for f in &futures {
        let (rank, job) = f.result_timeout(LONG).unwrap().clone();
        ranks.insert(rank);
        jobs.insert(job);
    }
    assert_eq!(
        ranks,
        BTreeSet::from(["0", "1", "2", "3"].map(String::from))
    );
    assert_eq!(jobs.len(), 1, "one job: {jobs:?}");
    drop(pool);
    queue_empties();
}

#[test]
fn crashes_on_slurm_fail_only_their_futures() {
    if !slurm("crashes_on_slurm_fail_only_their_futures") {
        return;
    }
    let _serial = serial();
    let pool = pool4();
    let started = Instant::now();
    let gate = Gate::new();
    let victim = pool.submit(held, gate.path()).unwrap();
    let entered = gate.entered();
    let napping: Vec<_> = (0..39).map(|x| pool.submit(naps, x).unwrap()).collect();
    let abort = pool.submit(aborts, 99).unwrap();
    crash_util::sigkill(entered.pid);
    let error = victim.result_timeout(LONG).unwrap_err();
    assert!(
        matches!(
            error,
            TaskError::WorkerDied {
                exit: Exit::Signal(9),
                ..
            }
        ),
        "{error:?}"
    );
    // The error names the node and the agent's rank (its `SLURM_PROCID`), not only the logs.
    let TaskError::WorkerDied { node, .. } = &error else {
        unreachable!()
    };
    let node = node.as_deref().expect("a remote worker's node");
    assert!(
        node.contains(" (rank ") && error.to_string().contains(&format!("on node {node} died")),
        "{error}"
    );
    let error = abort.result_timeout(LONG).unwrap_err();
    let TaskError::WorkerDied { exit, stderr, .. } = error else {
        panic!("expected WorkerDied, got {error:?}")
    };
    assert_eq!(exit, Exit::Signal(6));
    assert!(
        stderr.contains("worker about to abort for 99"),
        "{stderr:?}"
    );
    for (x, f) in (0..39).zip(&napping) {
        assert_eq!(*f.result_timeout(LONG).unwrap(), x);
    }
    let took = started.elapsed();
    println!("39 naps of 200 ms, an abort and a SIGKILL on 4 Slurm workers: {took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(pool.stats().failed, 2);
    assert_eq!(pool.stats().respawns, 2);
    drop(entered);
    drop(pool);
    queue_empties();
}

#[cf::task]
fn worker_pid() -> u32 {
    std::process::id()
}

/// The driver's whole process group SIGKILLed mid-run (what `timeout` or a terminal's Ctrl-C
/// reaches): within 5 s no worker is left and Slurm's queue is empty.
#[test]
fn a_killed_driver_leaves_nothing_behind() {
    if !slurm("a_killed_driver_leaves_nothing_behind") {
        return;
    }
    let _serial = serial();
    let report = std::env::temp_dir().join(format!("cf-slurm-probe-{}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let mut driver = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "killed_driver_probe",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CF_SLURM_PROBE", &report)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start the driver");
    let deadline = Instant::now() + LONG;
    let pids: Vec<u32> = loop {
        if let Ok(text) = std::fs::read_to_string(&report)
            && text.ends_with('\n')
        {
            break text
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "the driver did not start its pool"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!pids.is_empty());
    let group = libc::pid_t::try_from(driver.id()).unwrap();
    // SAFETY: kill(2) with a negative pid signals that process group (the driver's own, made
    // above) and touches no memory of ours.
    assert_eq!(unsafe { libc::kill(-group, libc::SIGKILL) }, 0);
    let _ = driver.wait();
    let started = Instant::now();
    assert_eq!(
        crash_util::wait_dead(&pids, Duration::from_secs(5)),
        Vec::<u32>::new(),
        "workers left behind"
    );
    queue_empties();
    println!("driver killed: nothing left after {:?}", started.elapsed());
    let _ = std::fs::remove_file(&report);
}

/// Run by [`a_killed_driver_leaves_nothing_behind`] as the driver: starts a pool on Slurm, says
/// its workers' pids, and waits to be killed.
#[test]
fn killed_driver_probe() {
    let Some(report) = std::env::var_os("CF_SLURM_PROBE") else {
        return;
    };
    let pool = pool4();
    let gate = Gate::new();
    let futures: Vec<_> = (0..4)
        .map(|_| pool.submit(rank_at_gate, gate.path()).unwrap())
        .collect();
    let entered: Vec<_> = (0..4).map(|_| gate.entered()).collect();
    let pids: Vec<String> = entered.iter().map(|e| e.pid.to_string()).collect();
    std::fs::write(&report, format!("{}\n", pids.join(" "))).unwrap();
    // Held at the gate until the test kills this process.
    let _ = futures[0].result();
    drop(entered);
}
