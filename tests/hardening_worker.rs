//! A hostile (or merely unusual) task must not be able to stall, fool or break the pool: the
//! worker side of the hardening issue.
//!
//! Each test names what it reproduces; each failed on the code before its fix.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use cf::{Exit, ProcessPoolExecutor, TaskError};
use crash_util::{LONG, OBSERVE, serial, square, worker_pid};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The outcome of `future`, which must come within [`LONG`].
fn outcome<T: Clone>(future: cf::Future<T>) -> Result<T, TaskError> {
    assert!(
        future.wait_timeout(LONG),
        "the task did not end within {LONG:?}"
    );
    future.into_result()
}

// ---- 1. a worker behaves like an ordinary Rust program ---------------------------------------

/// Writes to the stdin of a child that has exited: an ordinary Rust program gets
/// `Err(BrokenPipe)`, since std's `main` set-up ignores SIGPIPE.
#[cf::task]
fn write_to_closed_pipe() -> String {
    let mut child = Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("run true");
    let mut stdin = child.stdin.take().expect("its stdin");
    child.wait().expect("wait for true");
    match stdin.write_all(&[0; 1 << 16]) {
        Ok(()) => "no error".to_owned(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

/// Reproduces: the worker died of SIGPIPE (`WorkerDied`, signal 13) where an ordinary Rust
/// program gets `Err(BrokenPipe)`: workers are entered before `main` and never ran std's set-up.
#[test]
fn a_write_to_a_closed_pipe_is_an_error_not_a_death() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).expect("start a pool");
    let got = outcome(pool.submit(write_to_closed_pipe, ()).unwrap());
    assert_eq!(got, Ok("BrokenPipe".to_owned()));
}

/// Reads a page mapped with no access: a real fault, at an address far from the stack.
#[cf::task]
fn faults() {
    // SAFETY: an anonymous private mapping of one page; mmap(2) touches no memory of ours.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED, "mmap a page");
    // SAFETY: the page is mapped (so this is no access outside an allocation), but with no
    // access rights: the read faults and SIGSEGV ends this worker, which is the point.
    let _ = unsafe { std::ptr::read_volatile(page.cast::<u8>()) };
    unreachable!("the read faults");
}

/// Sends itself SIGSEGV (no fault address at all).
#[cf::task]
fn raises_sigsegv() {
    // SAFETY: raise(3) takes a signal number and touches no memory of ours.
    unsafe { libc::raise(libc::SIGSEGV) };
    unreachable!("SIGSEGV ends the worker");
}

/// Sets `RLIMIT_STACK` (soft and hard) for this process, whose workers inherit it; gives back
/// the old one.
fn set_stack_limit(limit: (libc::rlim_t, libc::rlim_t)) -> (libc::rlim_t, libc::rlim_t) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one `rlimit` into `old`, which lives across the call.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut old) };
    assert_eq!(got, 0, "getrlimit");
    let new = libc::rlimit {
        rlim_cur: limit.0,
        rlim_max: limit.1,
    };
    // SAFETY: setrlimit(2) reads one `rlimit` from `new`, which lives across the call.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_STACK, &new) };
    assert_eq!(
        set,
        0,
        "setrlimit(RLIMIT_STACK): {}",
        std::io::Error::last_os_error()
    );
    (old.rlim_cur, old.rlim_max)
}

/// Reproduces: under `ulimit -s unlimited` every segfault was reported as a stack overflow (the
/// handler took everything from address 0 to the stack's top for the stack).
#[test]
fn a_segfault_under_an_unlimited_stack_is_not_an_overflow() {
    let _serial = serial();
    let old = set_stack_limit((libc::RLIM_INFINITY, libc::RLIM_INFINITY));
    // Every worker of this pool starts (and is replaced) while the limit is off.
    let pool = ProcessPoolExecutor::with_max_workers(1).expect("start a pool");
    let fault = outcome(pool.submit(faults, ()).unwrap());
    let raised = outcome(pool.submit(raises_sigsegv, ()).unwrap());
    drop(pool);
    set_stack_limit(old);
    for (what, got) in [("a fault", fault), ("raise(SIGSEGV)", raised)] {
        match got {
            Err(TaskError::WorkerDied { exit, .. }) => {
                assert_eq!(exit, Exit::Signal(libc::SIGSEGV), "{what}");
            }
            other => panic!("{what}: expected WorkerDied with SIGSEGV, got {other:?}"),
        }
    }
}

/// An argument whose `Deserialize` panics (in the worker; the parent only serializes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct Touchy(u64);

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        assert_ne!(n, 13, "Touchy cannot stand 13");
        Ok(Touchy(n))
    }
}

#[cf::task]
fn touch(t: Touchy) -> u64 {
    t.0
}

/// A result whose `Serialize` panics (in the worker; the parent only deserializes it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Unsayable;

impl Serialize for Unsayable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("Unsayable cannot be said")
    }
}

#[cf::task]
fn unsayable() -> Unsayable {
    Unsayable
}

/// A result whose `Drop` panics where it was made (in the worker): what crosses the process
/// boundary is disarmed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Armed(bool);

impl Serialize for Armed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for Armed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        Ok(Armed(false))
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        assert!(!self.0, "Armed went off in its drop");
    }
}

#[cf::task]
fn armed() -> Armed {
    Armed(true)
}

/// Reproduces: a panic in the worker outside the task's own call (an argument's `Deserialize`,
/// a result's `Serialize` or `Drop`) aborted the worker (`WorkerDied`, SIGABRT) instead of
/// failing that one future with `Panicked`; the worker now goes on serving.
#[test]
fn panics_in_serde_and_drop_fail_one_future() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).expect("start a pool");
    let pid = || outcome(pool.submit(worker_pid, ()).unwrap()).expect("a pid");
    let before = pid();
    let touched = outcome(pool.submit(touch, Touchy(13)).unwrap());
    panicked(touched, "Touchy cannot stand 13");
    assert_eq!(pid(), before, "the same worker serves on");
    let said = outcome(pool.submit(unsayable, ()).unwrap());
    panicked(said, "Unsayable cannot be said");
    assert_eq!(pid(), before, "the same worker serves on");
    let dropped = outcome(pool.submit(armed, ()).unwrap());
    panicked(dropped, "Armed went off in its drop");
    assert_eq!(pid(), before, "the same worker serves on");
    let fine = outcome(pool.submit(touch, Touchy(7)).unwrap());
    assert_eq!(fine, Ok(7));
}

/// Checks that `got` is a panic whose message has `what` in it.
fn panicked<T: std::fmt::Debug>(got: Result<T, TaskError>, what: &str) {
    match got {
        Err(TaskError::Panicked(info)) => assert!(
            info.message.contains(what),
            "expected a panic saying {what:?}, got {info}"
        ),
        other => panic!("expected Panicked, got {other:?}"),
    }
}

/// Writes `text` to stderr and returns.
#[cf::task]
fn says(text: String) {
    eprintln!("{text}");
}

#[cf::task]
fn aborts() {
    std::process::abort()
}

#[cf::task]
fn kills_itself() {
    // SAFETY: kill(2) with our own pid and a signal number; no memory is passed.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL ends the worker")
}

/// Reproduces: a worker's last stderr lines were kept per worker, not per task. A SIGKILLed
/// task's error quoted the "last words" of an earlier, successful task, and an abort was
/// reported as `MemoryLimit` because an earlier task had written "memory allocation of".
#[test]
fn last_words_are_the_running_tasks_own() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .memory_limit(8 << 30)
        .build()
        .expect("start a pool");
    let run = |text: &str| {
        outcome(pool.submit(says, text.to_owned()).unwrap()).expect("it says it");
    };
    run("memory allocation of 12 bytes failed (a quote, not a failure)");
    let aborted = outcome(pool.submit(aborts, ()).unwrap());
    match aborted {
        Err(TaskError::WorkerDied { exit, stderr, .. }) => {
            assert_eq!(exit, Exit::Signal(libc::SIGABRT));
            assert!(!stderr.contains("memory allocation"), "{stderr:?}");
        }
        other => panic!("expected WorkerDied with SIGABRT, got {other:?}"),
    }
    run("the last words of a task that went well");
    let killed = outcome(pool.submit(kills_itself, ()).unwrap());
    match killed {
        Err(TaskError::WorkerDied { exit, stderr, .. }) => {
            assert_eq!(exit, Exit::Signal(libc::SIGKILL));
            assert_eq!(stderr, "");
        }
        other => panic!("expected WorkerDied with SIGKILL, got {other:?}"),
    }
}

// ---- 2. the protocol channel cannot be taken over by a task --------------------------------

/// Closes fd 4 (the result pipe's fixed number) and opens a file, which takes the lowest free
/// number: 4 if 3 is still open.
#[cf::task]
fn closes_4_and_opens_a_file() -> i32 {
    // SAFETY: close(2) on a number; closing what it names is the point of this test.
    unsafe { libc::close(4) };
    let file = std::fs::File::open("/dev/null").expect("open /dev/null");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    std::mem::forget(file);
    fd
}

/// `dup2`s a file over fds 3 and 4 (the protocol pipes' fixed numbers).
#[cf::task]
fn dup2s_over_3_and_4() {
    let file = std::fs::File::open("/dev/null").expect("open /dev/null");
    for fd in [3, 4] {
        // SAFETY: dup2(2) on two numbers; replacing what fd 3 and 4 name is the point.
        let got = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), fd) };
        assert_eq!(got, fd, "dup2 over {fd}");
    }
}

/// Closes the worker's real result fd and opens a file in its place.
#[cf::task]
fn replaces_the_result_fd() {
    let fd = cf_worker::start::result_fd().expect("a worker");
    // SAFETY: close(2) on a number; closing the worker's own pipe is the point.
    unsafe { libc::close(fd) };
    let file = std::fs::File::open("/dev/null").expect("open /dev/null");
    let file = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: dup2(2) on two numbers: puts the file where the pipe was.
    assert_eq!(unsafe { libc::dup2(file, fd) }, fd);
}

/// The outcome of `future`, which must come within `limit`.
fn outcome_within<T: Clone>(future: cf::Future<T>, limit: Duration) -> Result<T, TaskError> {
    assert!(
        future.wait_timeout(limit),
        "the task hung (more than {limit:?})"
    );
    future.into_result()
}

/// Reproduces: a task that closed fd 4 and opened a file (which got fd 4), or `dup2`ed over fd 3
/// or 4, took over the worker's protocol channel: its future hung, and so did every later task
/// and the pool's drop.
#[test]
fn tasks_cannot_take_over_the_protocol_fds() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).expect("start a pool");
    let before = outcome_within(pool.submit(worker_pid, ()).unwrap(), OBSERVE).expect("a pid");
    outcome_within(pool.submit(closes_4_and_opens_a_file, ()).unwrap(), OBSERVE)
        .expect("the task returns");
    outcome_within(pool.submit(dup2s_over_3_and_4, ()).unwrap(), OBSERVE)
        .expect("the task returns");
    for x in 0..20 {
        let (got, pid) =
            outcome_within(pool.submit(square, x).unwrap(), OBSERVE).expect("a later task runs");
        assert_eq!((got, pid), (x * x, before), "the same worker serves on");
    }
    crash_util::within(OBSERVE, "dropping the pool", move || drop(pool));
}

/// Reproduces: a task that replaced the worker's real result fd with a file had the replies
/// written into that file, and its future hung. Now the parent sees the reply stream end while
/// the worker lives, and kills it after a short grace: the future gets the reply if it was
/// already in the worker's reply ring (which the task did not touch), or else fails alone with
/// a protocol error; either way a new worker serves on.
#[test]
fn a_task_that_replaces_the_real_pipe_fails_alone() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).expect("start a pool");
    let before = outcome_within(pool.submit(worker_pid, ()).unwrap(), OBSERVE).expect("a pid");
    match outcome_within(pool.submit(replaces_the_result_fd, ()).unwrap(), OBSERVE) {
        // The parent saw the reply stream end while the worker lived...
        Err(TaskError::Protocol { pid, violation, .. }) => {
            assert_eq!(pid, before);
            assert_eq!(violation, cf::ProtocolViolation::Closed);
        }
        // ...or the worker's next read or write on its pipes failed, and it said so and exited.
        Err(TaskError::WorkerDied {
            pid, exit, stderr, ..
        }) => {
            assert_eq!(pid, before);
            assert_eq!(exit, cf::Exit::Code(70), "{stderr}");
        }
        // ...or the reply was in the ring before the parent saw the pipe's end.
        Ok(()) => {}
        other => panic!("expected the worker's death or a closed stream, got {other:?}"),
    }
    let (_, pid) = outcome_within(pool.submit(square, 3).unwrap(), OBSERVE).expect("runs");
    assert_ne!(pid, before, "a new worker");
    crash_util::within(OBSERVE, "dropping the pool", move || drop(pool));
}

// ---- 3. a worker runs the code its parent was built from ------------------------------------

/// Marks the re-run of a copy of this binary that plays a program whose file is replaced.
const REBUILT_ENV: &str = "CF_TEST_REBUILT";

#[cf::task]
fn exits_now() {
    std::process::exit(3)
}

/// The program whose executable is replaced while it runs: only does something when re-run by
/// the test below. It starts a pool, says `ready`, waits for a line on stdin, then makes its
/// worker exit (so new ones must start) and prints what the next task returns.
#[test]
fn rebuilt_child() {
    if std::env::var_os(REBUILT_ENV).is_none() {
        return;
    }
    let pool = ProcessPoolExecutor::with_max_workers(1).expect("start a pool");
    outcome(pool.submit(worker_pid, ()).unwrap()).expect("a first worker");
    println!("cf-test: ready");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .expect("read the go-ahead");
    // Twice: the pool's spare, started before the file was replaced, takes the first's place.
    for _ in 0..2 {
        let _ = outcome(pool.submit(exits_now, ()).unwrap());
    }
    let got = outcome(pool.submit(square, 7).unwrap()).map(|(value, _)| value);
    println!("cf-test: result {got:?}");
}

/// Reproduces: workers were started from the executable's path, so after the file was replaced
/// (a rebuild while the program runs) a new worker ran other code: here `true`, which exits at
/// once, and the pool broke. Workers now start from the running image (`/proc/self/exe`).
#[test]
fn new_workers_run_the_original_code_after_the_file_is_replaced() {
    // Under the lock no other test of this binary starts a process, which could inherit the
    // copy's fd while it is written and make running it fail with ETXTBSY.
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("cf-rebuilt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let exe = dir.join("program");
    std::fs::copy(std::env::current_exe().expect("this test binary"), &exe).expect("copy it");
    let mut child = Command::new(&exe)
        .args([
            "--exact",
            "rebuilt_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(REBUILT_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the copy");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        child.stdout.take().expect("its stdout"),
    ));
    let mut next = |what: &str| loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the child ended before {what}"))
            .expect("read the child's stdout");
        if let Some(at) = line.find("cf-test: ") {
            break line[at + "cf-test: ".len()..].to_owned();
        }
    };
    assert_eq!(next("ready"), "ready");
    // "Rebuild": the file now holds another program.
    std::fs::remove_file(&exe).expect("remove the copy");
    std::fs::copy("/bin/true", &exe).expect("put another program in its place");
    let mut stdin = child.stdin.take().expect("its stdin");
    writeln!(stdin, "go").expect("let the child go on");
    let result = next("its result");
    let status = crash_util::within(LONG, "the child", move || child.wait());
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(result, "result Ok(49)");
    assert!(status.expect("wait for the child").success());
}

// ---- 4. only the pool can enter a binary as a worker ---------------------------------------

/// Creates the file at `path`: proof that the task ran.
#[cf::task]
fn creates(path: String) {
    std::fs::write(path, b"ran").expect("create the file");
}

/// Reproduces: anyone who could run the binary with the worker marker set could run any task
/// with arguments of their choosing, skipping `main`. Here a shell enters this test binary as a
/// worker with a well-formed call to `creates` on fd 3: it must refuse, say why and exit
/// non-zero, and the task must not run.
#[test]
fn a_worker_entered_by_hand_refuses_to_serve() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("cf-by-hand-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let proof = dir.join("proof");
    let request = dir.join("request");
    let replies = dir.join("replies");
    let index = cf_worker::table()
        .index::<creates>()
        .expect("creates is in the table");
    let mut args = Vec::new();
    cf_worker::encode_into(&proof.to_str().expect("UTF-8").to_owned(), &mut args).unwrap();
    let mut frame = Vec::new();
    cf_worker::frame::push(
        &mut frame,
        cf_worker::frame::RequestKind::Call as u8,
        1,
        index,
        &args,
    );
    std::fs::write(&request, &frame).expect("write the request");
    // The shell is the worker's parent; the marker names it, as a pool's marker names the pool.
    let script = r#"__CF_WORKER=$$:0 "$0" --exact nothing 3<"$1" 4>"$2"; exit $?"#;
    let out = Command::new("sh")
        .args(["-c", script])
        .arg(std::env::current_exe().expect("this test binary"))
        .arg(&request)
        .arg(&replies)
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    let ran = proof.exists();
    let replied = std::fs::metadata(&replies).map_or(0, |m| m.len());
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!ran, "the task ran; stderr: {stderr}");
    assert_eq!(replied, 0, "it answered");
    assert_eq!(out.status.code(), Some(71), "stderr: {stderr}");
    assert!(
        stderr.contains("refusing to serve: the parent process is not a pool of this executable"),
        "{stderr}"
    );
}
