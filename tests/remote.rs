//! Workers under agents over TCP (`cf::launch::Tcp`, the Slurm code path without `srun`): the
//! crash contract holds as with pipes, a lost agent fails only its running task (with
//! `Exit::Lost`), strangers are refused at the handshake, the secret stays out of command lines
//! and tasks' environments, and a result is never lost to a death notice that overtakes it.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cf::launch::Tcp;
use cf::{Exit, Future, ProcessPoolExecutor, TaskError, TaskOptions};
use crash_util::{Gate, LONG, OBSERVE, hold, serial, square, until};

#[cf::task]
fn panics(x: u64) -> (u64, u32) {
    panic!("task {x} panics on purpose")
}

#[cf::task]
fn aborts(x: u64) -> (u64, u32) {
    eprintln!("worker about to abort for {x}");
    std::process::abort()
}

#[cf::task]
fn exits(_x: u64) -> (u64, u32) {
    std::process::exit(3)
}

#[cf::task]
fn spins(x: u64) -> (u64, u32) {
    let mut n = x;
    loop {
        n = std::hint::black_box(n).wrapping_add(1);
        std::hint::spin_loop();
    }
}

/// What a task sees of the agent's variables: `(secret present, address present)`.
#[cf::task]
fn agent_env() -> (bool, bool) {
    (
        std::env::var("__CF_SECRET").is_ok(),
        std::env::var("__CF_AGENT").is_ok(),
    )
}

/// Bytes of this worker's data connection that its peer has acknowledged (`TCP_INFO`); `None`
/// once the connection is closed.
fn bytes_acked() -> Option<u64> {
    let fd = cf_worker::start::result_fd().expect("a worker");
    // SAFETY: an all-zero tcp_info is a valid value of this plain C struct.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>()).unwrap();
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is that large.
    let done = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &mut len,
        )
    };
    (done == 0).then_some(info.tcpi_bytes_acked)
}

/// Replies `x`, and has its worker abort 1 ms after the reply has left it (the peer acknowledged
/// more bytes than before the task), while the reply may still wait to be read on the other side.
#[cf::task]
fn replies_then_dies(x: u64) -> u64 {
    let before = bytes_acked().expect("a TCP data connection");
    std::thread::spawn(move || {
        while bytes_acked() == Some(before) {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(1));
        std::process::abort()
    });
    x
}

/// A pool of `workers` workers under 2 local agents, every worker started.
fn pool(workers: usize) -> ProcessPoolExecutor {
    let pool = ProcessPoolExecutor::builder()
        .launcher(Tcp::local(2))
        .max_workers(workers)
        .build()
        .expect("start a pool over TCP");
    warm(&pool, workers);
    pool
}

/// Waits until `workers` workers answer (a held task must not queue behind a starting worker).
fn warm(pool: &ProcessPoolExecutor, workers: usize) {
    until("every worker started", || {
        pool.stats().workers >= workers as u64
    });
    let pids: BTreeSet<u32> = (0..workers as u64 * 8)
        .map(|x| pool.submit(square, x).unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|f| f.result_timeout(LONG).expect("warm-up").1)
        .collect();
    assert!(!pids.contains(&std::process::id()));
}

/// The agents: this test's children (local agents are started by the driver).
fn agents() -> BTreeSet<u32> {
    crash_util::children()
}

/// `NAME=value` from the environment a process started with.
fn environ(pid: u32, name: &str) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    bytes.split(|&b| b == 0).find_map(|entry| {
        let entry = std::str::from_utf8(entry).ok()?;
        entry
            .strip_prefix(name)?
            .strip_prefix('=')
            .map(str::to_owned)
    })
}

/// How errors name the node of a worker under a local agent: this machine's host name, and the
/// rank when the agents run under `srun` (they inherit `SLURM_PROCID`).
fn this_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("a host name");
    let host = host.trim();
    match std::env::var("SLURM_PROCID") {
        Ok(rank) => format!("{host} (rank {rank})"),
        Err(_) => host.to_owned(),
    }
}

/// 40 tasks, the one in the middle submitted by `crash`; every other one must succeed. Returns
/// the crashing task's error.
fn one_crash(
    pool: &ProcessPoolExecutor,
    crash: impl FnOnce(&ProcessPoolExecutor, u64) -> Future<(u64, u32)>,
) -> TaskError {
    let at = 20;
    let mut crash = Some(crash);
    let futures: Vec<_> = (0..40)
        .map(|x| {
            if x == at {
                (crash.take().unwrap())(pool, x)
            } else {
                pool.submit(square, x).unwrap()
            }
        })
        .collect();
    let mut error = None;
    for (x, future) in (0..40).zip(&futures) {
        match (x == at, future.result_timeout(LONG)) {
            (false, Ok(&(value, _))) => assert_eq!(value, x * x),
            (false, Err(e)) => panic!("task {x} failed although only {at} crashes: {e}"),
            (true, Ok(v)) => panic!("the crashing task returned {v:?}"),
            (true, Err(e)) => error = Some(e),
        }
    }
    // The pool takes work afterwards.
    for x in 0..10 {
        let &(value, _) = pool
            .submit(square, x)
            .unwrap()
            .result_timeout(LONG)
            .expect("a task after the crash");
        assert_eq!(value, x * x);
    }
    error.expect("the crashing task failed")
}

#[test]
fn tasks_run_on_workers_under_agents() {
    let _serial = serial();
    let pool = pool(2);
    let agents = agents();
    assert_eq!(agents.len(), 2, "two agents: {agents:?}");
    let pids: BTreeSet<u32> = pool
        .map(square, 0..200)
        .map(|r| {
            let (value, pid) = r.expect("a square");
            assert!(value < 200 * 200);
            pid
        })
        .collect();
    // The workers are the agents' children, not ours.
    for pid in &pids {
        let (_, parent, _) = crash_util::stat(*pid).expect("a live worker");
        assert!(
            agents.contains(&parent),
            "worker {pid}'s parent is {parent}"
        );
    }
    drop(pool);
    // Shutting down ends the agents (and so their workers).
    assert_eq!(
        crash_util::wait_dead(&agents.into_iter().collect::<Vec<_>>(), OBSERVE),
        Vec::<u32>::new()
    );
}

#[test]
fn panic_over_tcp() {
    let _serial = serial();
    let pool = pool(2);
    let error = one_crash(&pool, |p, x| p.submit(panics, x).unwrap());
    assert!(
        matches!(&error, TaskError::Panicked(info) if info.message.contains("panics on purpose")),
        "{error:?}"
    );
}

#[test]
fn abort_over_tcp() {
    let _serial = serial();
    let pool = pool(2);
    let error = one_crash(&pool, |p, x| p.submit(aborts, x).unwrap());
    let TaskError::WorkerDied { exit, stderr, .. } = &error else {
        panic!("expected WorkerDied, got {error:?}")
    };
    assert_eq!(*exit, Exit::Signal(libc::SIGABRT));
    assert!(
        stderr.contains("worker about to abort for 20"),
        "the stderr tail travels with the death: {stderr:?}"
    );
}

#[test]
fn exit_code_over_tcp() {
    let _serial = serial();
    let pool = pool(2);
    let error = one_crash(&pool, |p, x| p.submit(exits, x).unwrap());
    assert!(
        matches!(
            error,
            TaskError::WorkerDied {
                exit: Exit::Code(3),
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn time_limit_over_tcp() {
    let _serial = serial();
    let pool = pool(2);
    let limit = TaskOptions::new().timeout(Duration::from_millis(300));
    let error = one_crash(&pool, |p, x| p.submit_with(spins, x, limit).unwrap());
    let TaskError::TimeLimit {
        limit, pid, node, ..
    } = &error
    else {
        panic!("expected TimeLimit, got {error:?}")
    };
    assert_eq!(*limit, Duration::from_millis(300));
    assert_eq!(node.as_deref(), Some(&*this_node()));
    assert_eq!(
        error.to_string(),
        format!(
            "task `remote::spins` exceeded its time limit of 300 ms (worker pid {pid} on node {} \
             was killed)",
            this_node()
        )
    );
}

#[test]
fn sigkill_of_a_worker_over_tcp() {
    let _serial = serial();
    let pool = pool(2);
    let gate = Gate::new();
    let held = pool.submit(hold, gate.path()).unwrap();
    let entered = gate.entered();
    let others: Vec<_> = (0..10).map(|x| pool.submit(square, x).unwrap()).collect();
    crash_util::sigkill(entered.pid);
    let error = held.result_timeout(LONG).unwrap_err();
    assert!(
        matches!(error, TaskError::WorkerDied { pid, exit: Exit::Signal(9), .. } if pid == entered.pid),
        "{error:?}"
    );
    // The error says where the worker ran, not only in the logs.
    let TaskError::WorkerDied { node, .. } = &error else {
        unreachable!()
    };
    assert_eq!(node.as_deref(), Some(&*this_node()));
    assert_eq!(
        error.to_string(),
        format!(
            "worker pid {} on node {} died with signal 9 (SIGKILL) while running task \
             `remote::crash_util::hold`",
            entered.pid,
            this_node()
        )
    );
    for (x, f) in (0..10).zip(&others) {
        assert_eq!(f.result_timeout(LONG).unwrap().0, x * x);
    }
    drop(entered);
}

#[test]
fn kill_over_tcp() {
    let _serial = serial();
    let pool = pool(2);
    let gate = Gate::new();
    let held = pool.submit(hold, gate.path()).unwrap();
    let entered = gate.entered();
    assert!(held.kill());
    assert!(matches!(held.result(), Err(TaskError::Killed)));
    assert_eq!(
        crash_util::wait_dead(&[entered.pid], OBSERVE),
        Vec::<u32>::new(),
        "the kill reached the worker through its agent"
    );
    let after = pool.submit(square, 7).unwrap();
    assert_eq!(after.result_timeout(LONG).unwrap().0, 49);
    drop(entered);
}

/// SIGKILL of an agent: its running task fails with `Exit::Lost`; the other agent's workers go
/// on, and the pool is not broken.
#[test]
fn a_lost_agent_fails_its_running_task() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .launcher(Tcp::local(2))
        .max_workers(2)
        .spare_worker(false)
        .build()
        .expect("start a pool over TCP");
    warm(&pool, 2);
    let gate = Gate::new();
    let held = pool.submit(hold, gate.path()).unwrap();
    let entered = gate.entered();
    let (_, agent, _) = crash_util::stat(entered.pid).expect("the held worker");
    assert!(agents().contains(&agent));
    crash_util::sigkill(agent);
    let error = held.result_timeout(LONG).unwrap_err();
    assert!(
        matches!(
            error,
            TaskError::WorkerDied {
                exit: Exit::Lost,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("agent lost"), "{error}");
    let after: Vec<_> = (0..20).map(|x| pool.submit(square, x).unwrap()).collect();
    for (x, f) in (0..20).zip(&after) {
        let &(value, pid) = match f.result_timeout(LONG) {
            Ok(v) => v,
            Err(e) => panic!("task {x} after the agent was lost: {e:?}"),
        };
        assert_eq!(value, x * x);
        assert_ne!(pid, entered.pid);
    }
    drop(entered);
}

/// A stranger that knows the port but not the secret: refused; a silent one is dropped at the
/// handshake deadline; random bytes are refused. The pool's work is not disturbed meanwhile.
#[test]
fn strangers_are_refused() {
    let _serial = serial();
    let pool = pool(2);
    let agent = *agents().first().expect("an agent");
    let address = environ(agent, "__CF_AGENT").expect("the agent's start-up environment");
    let workers = pool.stats().workers;

    let silent = TcpStream::connect(&address).expect("connect");
    let since = Instant::now();

    // A wrong secret: answer the challenge with a made-up proof.
    let mut wrong = TcpStream::connect(&address).expect("connect");
    wrong.set_read_timeout(Some(LONG)).unwrap();
    let mut challenge = [0; 40];
    wrong
        .read_exact(&mut challenge)
        .expect("the driver speaks first");
    assert_eq!(&challenge[..8], b"CFAUTH01");
    wrong.write_all(&[0x5a; 64]).unwrap();
    let mut rest = Vec::new();
    let _ = wrong.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no proof for a stranger: {rest:?}");

    // Random bytes in place of the handshake.
    let mut noise = TcpStream::connect(&address).expect("connect");
    noise.set_read_timeout(Some(LONG)).unwrap();
    let junk: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let _ = noise.write_all(&junk);
    let mut rest = Vec::new();
    let _ = noise.read_to_end(&mut rest);
    assert!(rest.len() <= 40, "only the challenge: {} bytes", rest.len());

    // Meanwhile the pool works as before.
    let pids: Vec<_> = (0..50).map(|x| pool.submit(square, x).unwrap()).collect();
    for (x, f) in (0..50).zip(&pids) {
        assert_eq!(f.result_timeout(LONG).unwrap().0, x * x);
    }
    assert_eq!(pool.stats().workers, workers);

    // The silent one is closed at the deadline (5 s).
    let mut silent = silent;
    silent.set_read_timeout(Some(LONG)).unwrap();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let waited = since.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(30),
        "closed after {waited:?}"
    );
}

/// Whether `bytes` hold a run of 64 hex digits: what the secret looks like.
fn has_secret(bytes: &[u8]) -> bool {
    bytes
        .split(|b| !b.is_ascii_hexdigit())
        .any(|run| run.len() >= 64)
}

/// The secret is on no command line, is wiped from the agents' start-up environment, never
/// reaches a worker, and neither it nor the agent's address is in a task's environment.
#[test]
fn the_secret_stays_out_of_sight() {
    let _serial = serial();
    let pool = pool(2);
    let agents = agents();
    let mut processes: Vec<u32> = agents.iter().copied().collect();
    for &agent in &agents {
        processes.extend(crash_util::children_of(agent));
    }
    assert!(processes.len() >= 4, "agents and workers: {processes:?}");
    for pid in &processes {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("a command line");
        assert!(
            !has_secret(&cmdline),
            "a secret on the command line of {pid}"
        );
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("an environment");
        assert!(
            !has_secret(&environ),
            "a secret in the environment of {pid}"
        );
    }
    // The driver's own environment never had it.
    assert_eq!(std::env::var_os("__CF_SECRET"), None);
    for _ in 0..4 {
        let seen = pool.submit(agent_env, ()).unwrap();
        assert_eq!(*seen.result_timeout(LONG).unwrap(), (false, false));
    }
}

/// The ordering rule: a worker that dies 1 ms after its reply has left it never loses the reply,
/// although the agent's death notice may arrive before the reply's bytes are read. Each round
/// waits for the dead worker's replacement, so that the next task is not sent to the dying one.
#[test]
fn a_reply_just_before_death_is_kept() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .launcher(Tcp::local(2))
        .max_workers(1)
        .build()
        .expect("start a pool over TCP");
    for x in 0..100 {
        let future = pool.submit(replies_then_dies, x).unwrap();
        match future.result_timeout(LONG) {
            Ok(&value) => assert_eq!(value, x),
            Err(e) => panic!("round {x}: the reply was lost: {e}"),
        }
        until("the worker is replaced", || pool.stats().respawns > x);
    }
}

/// `CF_LAUNCHER` with a value it does not know is a configuration error, not a panic.
#[test]
fn a_bad_launcher_variable_is_an_error() {
    let _serial = serial();
    // The variable is set in a child run of this binary: setting it here would race with the
    // other tests' threads.
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "launcher_from_env_probe", "--nocapture"])
        .env("CF_LAUNCHER", "carrier-pigeon")
        .env("CF_PROBE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Run by [`a_bad_launcher_variable_is_an_error`] in a child with `CF_LAUNCHER` set.
#[test]
fn launcher_from_env_probe() {
    if std::env::var_os("CF_PROBE").is_none() {
        return;
    }
    let error = ProcessPoolExecutor::new().expect_err("a bad CF_LAUNCHER");
    assert!(
        error.to_string().contains("CF_LAUNCHER=carrier-pigeon"),
        "{error}"
    );
}
