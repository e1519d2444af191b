//! Worker start-up: a process started as a worker enters the serve loop before `main`.
//!
//! The parent re-executes its own binary with [`ENV_MARKER`] set and the request and result pipes
//! on fds [`REQUEST_FD`] and [`RESULT_FD`]. A constructor in `.init_array` sees the marker and
//! serves until the request pipe closes, then exits: control never reaches the user's `main`.
//!
//! The marker's value is `PARENT_PID:MEMORY_LIMIT:LOG_LEVEL:RING` (bytes, 0 for none; the most
//! verbose level of events the parent's subscriber wants, 0 = none … 5 = trace; 1 when the
//! parent placed a reply ring on [`RING_FD`], 0 when replies go into the result pipe): before serving,
//! the worker arranges to be killed when its parent dies, limits its own address space and, for a
//! level above 0, installs the subscriber that forwards its tasks' events (see [`crate::logs`]),
//! so that the parent can start it with a plain `posix_spawn`.

use std::os::fd::AsFd;

use crate::{serve, sys};

/// The environment variable that marks a process as a worker.
pub const ENV_MARKER: &str = "__CF_WORKER";

/// The fd a worker reads requests from.
pub const REQUEST_FD: i32 = 3;

/// The fd a worker writes replies to.
pub const RESULT_FD: i32 = 4;

/// The fd a worker finds its reply ring on, when its marker says it has one: a sealed memfd of
/// [`ring::LEN`](crate::ring::LEN) bytes. The worker maps it and closes the fd.
pub const RING_FD: i32 = 5;

/// The fd number a worker's replies go out on, for tests that play a broken worker; `None`
/// outside a worker. The worker moves its pipes from [`REQUEST_FD`] and [`RESULT_FD`] to high
/// numbers before it serves, and closes those two.
#[doc(hidden)]
pub fn result_fd() -> Option<i32> {
    let fd = serve::RESULT_AT.load(std::sync::atomic::Ordering::Relaxed);
    (fd >= 0).then_some(fd)
}

/// Writes `bytes` where this worker's replies go (its ring, or its result pipe), as they are,
/// for tests that play a broken worker.
///
/// # Errors
/// Outside a worker, or as the write.
#[doc(hidden)]
pub fn write_reply_bytes(bytes: &[u8]) -> std::io::Result<()> {
    serve::write_raw(bytes)
}

/// The line a worker writes to stderr when its task overflows the stack; the parent looks for it.
pub const STACK_OVERFLOW: &str = "cf worker: the task overflowed its stack";

/// What a worker writes to its stderr just before each reply: the end of a task's output. The
/// parent strips it from what it forwards and keeps, as a dead worker's last words, only what
/// came after the last one (what the running task wrote).
pub const TASK_END: &[u8] = b"\0\x1bcf:task-end\0";

/// Exit code of a worker whose start-up failed (bad fds, duplicate task names).
pub const EXIT_STARTUP: i32 = 71;

// SAFETY: `ctor` asks us to vouch for code that runs from `.init_array`, before `main` and before
// std's `main` set-up. This constructor is sound there:
// - unless the worker marker is set it only reads one environment variable and returns, so an
//   ordinary run of the binary (the parent, or any other use) is not changed;
// - what it uses of std (environment, files, allocation, stderr, `process::exit`) needs no set-up
//   by `main`; what `main`'s set-up would do that matters to a task (SIGPIPE ignored, a stack
//   overflow reported) `run` does itself;
// - no other thread exists yet, so changing the environment (`sys::remove_marker`) races nothing;
// - it never returns to the loader once it serves: the process ends with `exit`. Constructors
//   ordered after this one never run in a worker, so tasks must not rely on them (the task table
//   is a link-time `linkme` slice and needs none).
#[ctor::ctor(unsafe)]
fn enter() {
    if std::env::var_os(ENV_MARKER).is_some() {
        run();
    }
}

/// The marker's value for a worker of `parent` with an optional memory limit, forwarding events
/// up to `log_level` (0 = none, 1 = error … 5 = trace), with a reply ring on [`RING_FD`] when
/// `ring`.
pub fn marker(parent: u32, memory_limit: Option<u64>, log_level: u8, ring: bool) -> String {
    format!(
        "{parent}:{}:{log_level}:{}",
        memory_limit.unwrap_or(0),
        u8::from(ring)
    )
}

/// Why this process must not serve, if it must not.
fn refusal() -> Option<&'static str> {
    if sys::privileged() {
        Some("the process runs setuid, setgid or with file capabilities")
    } else if !sys::parent_runs_this_image() {
        Some("the parent process is not a pool of this executable")
    } else {
        None
    }
}

fn run() -> ! {
    let marker = std::env::var(ENV_MARKER).unwrap_or_default();
    // Children that a task starts must not take themselves for workers.
    sys::remove_marker();
    let mut fields = marker.split(':').map(str::parse::<u64>);
    // No level (an older marker) forwards nothing; no ring field, no ring.
    let (Some(Ok(parent)), Some(Ok(memory)), Ok(log_level), Ok(ring)) = (
        fields.next(),
        fields.next(),
        fields.next().unwrap_or(Ok(0)),
        fields.next().unwrap_or(Ok(0)),
    ) else {
        std::process::exit(EXIT_STARTUP);
    };
    if !sys::die_with_parent(parent) {
        std::process::exit(EXIT_STARTUP);
    }
    // Only the pool may enter this binary as a worker: whoever else sets the marker would run
    // any task with arguments of their choosing, skipping `main` (see the README's Security).
    if let Some(why) = refusal() {
        eprintln!(
            "cf worker (pid {}): refusing to serve: {why}",
            std::process::id()
        );
        std::process::exit(EXIT_STARTUP);
    }
    let Some((input, output)) = sys::protocol_fds() else {
        std::process::exit(EXIT_STARTUP);
    };
    // Mapped before the memory limit, which counts it.
    let replies = match ring {
        0 => serve::Replies::Pipe(output.into()),
        _ => match sys::take_fd(RING_FD).map(|fd| crate::ring::Writer::open(&fd, output.into())) {
            Some(Ok(ring)) => serve::Replies::Ring(ring),
            _ => std::process::exit(EXIT_STARTUP),
        },
    };
    if memory > 0 && !sys::limit_memory(memory) {
        std::process::exit(EXIT_STARTUP);
    }
    if !sys::ignore_sigpipe() || !sys::ignore_sigint() {
        std::process::exit(EXIT_STARTUP);
    }
    sys::watch_stack_overflow();
    // A copy of stderr that stays with the worker whatever a task does with fd 2.
    let Some(stderr) = sys::stderr_copy() else {
        std::process::exit(EXIT_STARTUP);
    };
    if log_level > 0 {
        let Some(out) = sys::dup_high(stderr.as_fd()) else {
            std::process::exit(EXIT_STARTUP);
        };
        crate::logs::install(u8::try_from(log_level).unwrap_or(u8::MAX), out);
    }
    if !crate::table().duplicates().is_empty() {
        std::process::exit(EXIT_STARTUP);
    }
    match serve::serve_pipes(input, replies, stderr) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("cf worker (pid {}): {e}", std::process::id());
            std::process::exit(serve::EXIT_PROTOCOL)
        }
    }
}
