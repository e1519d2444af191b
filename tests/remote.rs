//! Workers under agents over TCP (`cf::launch::Tcp`, the Slurm code path without `srun`): the
//! crash contract holds as with pipes (panic, abort, exit, segfault, stack overflow, memory and
//! time limits, kill, `max_tasks_per_child`, the initializer, `terminate_workers`), errors name
//! the worker's node, a lost agent (killed or stopped) fails only its running task (with
//! `Exit::Lost`) and stays lost, strangers are refused at the handshake and an agent refuses a
//! driver without the secret, the secret stays out of command lines and tasks' environments, and
//! a result is never lost to a death notice that overtakes it.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cf::launch::Tcp;
use cf::{Exit, Future, ProcessPoolExecutor, TaskError, TaskOptions};
use crash_util::{Gate, LONG, OBSERVE, hold, serial, square, until, within, worker_pid};

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
fn segfaults(_x: u64) -> (u64, u32) {
    // SAFETY: raise(3) takes a signal number and touches no memory of ours; SIGSEGV's default
    // action ends this (worker) process, which is the point.
    unsafe { libc::raise(libc::SIGSEGV) };
    unreachable!("SIGSEGV ends the worker")
}

/// Recurses until the stack runs out; the condition only keeps the compiler from calling the
/// recursion unconditional.
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth.to_le_bytes()[0]; 4096]);
    if std::hint::black_box(depth) == u64::MAX {
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
    (u64::from(std::hint::black_box(&big)[(1 << 30) - 1]), 0)
}

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

/// Appends `x` to the file at `path`, then aborts the worker if `die`.
#[cf::task]
fn logged(path: String, x: u64, die: bool) -> u64 {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .expect("open the log");
    file.write_all(format!("{x}\n").as_bytes())
        .expect("write the log");
    drop(file);
    if die {
        std::process::abort();
    }
    x
}

/// Reproduces (found in review): a worker that died with requests sent ahead unread in its
/// socket closed the connection with a reset, which dropped the replies it had written and the
/// peer had not taken yet: tasks that had finished ran again, and one of them was blamed for the
/// death. Tiny tasks, a few of which abort, each once; only those fail.
#[test]
fn a_dying_worker_loses_no_reply_it_wrote() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .launcher(Tcp::local(2))
        .max_workers(2)
        .retries(0)
        .build()
        .expect("start a pool over TCP");
    warm(&pool, 2);
    let dir = std::env::temp_dir().join(format!("cf-remote-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for round in 0..3 {
        let log = dir.join(format!("round-{round}"));
        let path = log.to_str().unwrap().to_owned();
        let n = 6000;
        let dies = |x: u64| x % 997 == 500;
        let futures: Vec<_> = (0..n)
            .map(|x| pool.submit(logged, (path.clone(), x, dies(x))).unwrap())
            .collect();
        for (x, future) in (0u64..).zip(&futures) {
            match future.result_timeout(LONG) {
                Ok(&value) => assert!(!dies(x) && value == x, "round {round}: task {x}"),
                Err(TaskError::WorkerDied { .. }) if dies(x) => {}
                Err(e) => panic!("round {round}: task {x} failed: {e}"),
            }
        }
        let mut runs = vec![0u32; n as usize];
        for line in std::fs::read_to_string(&log).unwrap().lines() {
            runs[line.parse::<usize>().unwrap()] += 1;
        }
        let twice: Vec<_> = (0..n as usize).filter(|&x| runs[x] != 1).collect();
        assert!(
            twice.is_empty(),
            "round {round}: ran other than once: {twice:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `CF_LAUNCHER` with a value it does not know is a configuration error (`is_config()`, naming
/// the variable), not a panic or an i/o error.
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
    assert!(error.is_config(), "{error:?}");
    assert_eq!(
        error.to_string(),
        "invalid pool setting: CF_LAUNCHER=carrier-pigeon: expected local, tcp, tcp:N, slurm \
         or slurm:N (N above 0)"
    );
    let error = ProcessPoolExecutor::builder()
        .build()
        .expect_err("a bad CF_LAUNCHER");
    assert!(error.is_config(), "{error:?}");
}

#[test]
fn segfault_over_tcp() {
    let _serial = serial();
    let pool = pool(2);
    let error = one_crash(&pool, |p, x| p.submit(segfaults, x).unwrap());
    let TaskError::WorkerDied {
        pid, node, exit, ..
    } = &error
    else {
        panic!("expected WorkerDied, got {error:?}")
    };
    assert_eq!(*exit, Exit::Signal(libc::SIGSEGV));
    assert_eq!(node.as_deref(), Some(&*this_node()));
    assert!(
        error.to_string().starts_with(&format!(
            "worker pid {pid} on node {} died with signal 11 (SIGSEGV) while running task \
             `remote::segfaults`",
            this_node()
        )),
        "{error}"
    );
}

#[test]
fn stack_overflow_over_tcp() {
    let _serial = serial();
    let pool = pool(2);
    let error = one_crash(&pool, |p, x| p.submit(overflows, x).unwrap());
    let TaskError::StackOverflow { task, pid, node } = &error else {
        panic!("expected StackOverflow, got {error:?}")
    };
    assert_eq!(task, "remote::overflows");
    assert_eq!(node.as_deref(), Some(&*this_node()));
    assert_eq!(
        error.to_string(),
        format!(
            "task `remote::overflows` overflowed its stack (worker pid {pid} on node {} died)",
            this_node()
        )
    );
}

#[test]
fn memory_limit_over_tcp() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .launcher(Tcp::local(2))
        .max_workers(2)
        .memory_limit(256 << 20)
        .build()
        .expect("start a pool over TCP");
    warm(&pool, 2);
    let error = one_crash(&pool, |p, x| p.submit(allocates_1gib, x).unwrap());
    let TaskError::MemoryLimit {
        pid, node, limit, ..
    } = &error
    else {
        panic!("expected MemoryLimit, got {error:?}")
    };
    assert_eq!(*limit, 256 << 20);
    assert_eq!(node.as_deref(), Some(&*this_node()));
    assert_eq!(
        error.to_string(),
        format!(
            "task `remote::allocates_1gib` exceeded the memory limit of 256 MiB (worker pid \
             {pid} on node {})",
            this_node()
        )
    );
}

/// `max_tasks_per_child(1)`: every task runs in a worker of its own, each started by an agent.
#[test]
fn max_tasks_per_child_over_tcp() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .launcher(Tcp::local(2))
        .max_workers(1)
        .max_tasks_per_child(1)
        .build()
        .expect("start a pool over TCP");
    let agents = agents();
    let futures: Vec<_> = (0..6)
        .map(|_| pool.submit(worker_pid, ()).unwrap())
        .collect();
    let pids: BTreeSet<u32> = futures
        .iter()
        .map(|f| *f.result_timeout(LONG).expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 6, "one worker per task: {pids:?}");
    assert!(!pids.contains(&std::process::id()));
    assert_eq!(agents.len(), 2, "{agents:?}");
    // Five replacements ran the tasks after the first; the one for the sixth worker, retired
    // after its task, may be on its way already.
    let respawns = pool.stats().respawns;
    assert!((5..=6).contains(&respawns), "{:?}", pool.stats());
}

/// The initializer runs once in every worker an agent starts, before its tasks.
#[test]
fn initializer_over_tcp() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .launcher(Tcp::local(2))
        .max_workers(2)
        .max_tasks_per_child(3)
        .initializer(init_state, 42)
        .build()
        .expect("start a pool over TCP");
    let futures: Vec<_> = (0..12)
        .map(|_| pool.submit(read_state, ()).unwrap())
        .collect();
    let mut pids = BTreeSet::new();
    for future in &futures {
        let &(value, runs, pid) = future.result_timeout(LONG).expect("a state");
        assert_eq!((value, runs), (42, 1), "worker {pid}");
        pids.insert(pid);
    }
    assert!(pids.len() >= 4, "{pids:?}");
    assert_eq!(STATE.load(Ordering::SeqCst), 0, "not in the driver");
}

/// `terminate_workers` reaches the remote workers through their agents: the running tasks fail
/// with SIGTERM, the pending ones are cancelled, and the call returns.
#[test]
fn terminate_workers_over_tcp() {
    let _serial = serial();
    let pool = std::sync::Arc::new(
        ProcessPoolExecutor::builder()
            .launcher(Tcp::local(2))
            .max_workers(2)
            .prefetch(1)
            .build()
            .expect("start a pool over TCP"),
    );
    warm(&pool, 2);
    let gate = Gate::new();
    let running: Vec<_> = (0..2)
        .map(|_| pool.submit(hold, gate.path()).unwrap())
        .collect();
    let held: Vec<_> = (0..2).map(|_| gate.entered()).collect();
    let mut pids: Vec<u32> = held.iter().map(|e| e.pid).collect();
    pids.sort_unstable();
    let pending: Vec<_> = (0..4).map(|x| pool.submit(square, x).unwrap()).collect();
    let stopping = pool.clone();
    within(OBSERVE, "terminate_workers", move || {
        stopping.terminate_workers();
    });
    let mut died = Vec::new();
    for future in &running {
        match future.result_timeout(LONG) {
            Err(TaskError::WorkerDied { pid, exit, .. }) => {
                assert_eq!(exit, Exit::Signal(libc::SIGTERM), "{exit}");
                died.push(pid);
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
    }
    died.sort_unstable();
    assert_eq!(died, pids);
    for future in &pending {
        assert!(
            matches!(future.result(), Err(TaskError::Cancelled)),
            "{future:?}"
        );
    }
    assert_eq!(crash_util::wait_dead(&pids, OBSERVE), Vec::<u32>::new());
    drop(held);
}

/// An agent whose driver does not know its secret (a process posing as the driver) stops at the
/// handshake: it exits refused, says why, and sends nothing after its proof (no hello, so it
/// started no worker and ran nothing).
#[test]
fn an_agent_facing_another_secret_runs_nothing() {
    let _serial = serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let exe = std::env::current_exe().unwrap();
    let agent = std::process::Command::new(exe)
        .env("__CF_AGENT", &address)
        .env("__CF_SECRET", "ab".repeat(32))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start an agent");
    let (mut impostor, _) = listener.accept().expect("the agent dials");
    impostor.set_read_timeout(Some(LONG)).unwrap();
    let mut challenge = *b"CFAUTH01________________________________";
    challenge[8..].copy_from_slice(&[0x11; 32]);
    impostor.write_all(&challenge).unwrap();
    let mut answer = [0; 64];
    impostor.read_exact(&mut answer).expect("the agent's proof");
    impostor.write_all(&[0x5a; 32]).unwrap();
    let mut rest = Vec::new();
    let _ = impostor.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the agent went on: {rest:?}");
    let out = within(OBSERVE, "the refused agent exits", move || {
        agent.wait_with_output().unwrap()
    });
    assert_eq!(out.status.code(), Some(77), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("the driver does not know the pool's secret"),
        "{said}"
    );
}

/// A stopped agent (SIGSTOP: its connection stays open, it sends no heartbeat) is lost after
/// `lost_after`: its running task fails with `Exit::Lost` within a few heartbeats. SIGCONT does
/// not bring it back: the failed future stays failed, the agent and its worker end, and the
/// work goes on elsewhere.
#[test]
fn a_stopped_agent_is_lost_and_stays_lost() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .launcher(Tcp::local(2).heartbeat(Duration::from_millis(100), Duration::from_millis(500)))
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
    signal(agent, libc::SIGSTOP);
    let stopped = Instant::now();
    let error = held.result_timeout(LONG).unwrap_err();
    let took = stopped.elapsed();
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
    assert!(took < Duration::from_secs(5), "lost after {took:?}");
    signal(agent, libc::SIGCONT);
    // Let the held task go on: its reply, if any comes, must not change the outcome.
    drop(entered);
    assert_eq!(
        crash_util::wait_dead(&[agent], OBSERVE),
        Vec::<u32>::new(),
        "the resumed agent ends"
    );
    assert!(matches!(
        held.result(),
        Err(TaskError::WorkerDied {
            exit: Exit::Lost,
            ..
        })
    ));
    let after: Vec<_> = (0..20).map(|x| pool.submit(square, x).unwrap()).collect();
    for (x, f) in (0..20).zip(&after) {
        let &(value, pid) = f.result_timeout(LONG).expect("a task after the loss");
        assert_eq!(value, x * x);
        let parent = crash_util::stat(pid).map(|(_, parent, _)| parent);
        assert_ne!(parent, Some(agent), "a task ran under the lost agent");
    }
}

/// Sends `sig` to `pid`, one of this test's agents.
fn signal(pid: u32, sig: i32) {
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    // SAFETY: kill(2) takes a pid and a signal number and touches no memory of ours.
    let sent = unsafe { libc::kill(pid, sig) };
    assert_eq!(sent, 0, "kill {pid}: {}", std::io::Error::last_os_error());
}

/// Issue "Hardening" item 8 over the remote launcher: the tasks queued behind a never-ending one
/// are taken back (the agent passes the parent's `SIGURG` to the worker) and run on the idle
/// worker.
#[test]
fn a_short_task_never_waits_behind_a_long_one_over_tcp() {
    let _serial = serial();
    crash_util::short_tasks_pass_a_held_one(&pool(2), 2000);
}
