use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use cf_worker::start::{ENV_MARKER, REQUEST_FD, RESULT_FD, RING_FD};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

/// Maps "-1 plus errno" to `io::Result`.
macro_rules! syscall {
    ($e:expr) => {{
        let ret = $e;
        if ret == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }};
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Makes `fd` non-blocking.
pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL)?;
    fcntl(
        fd.as_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
    )?;
    Ok(())
}

/// Asks for a pipe buffer of `size` bytes; the kernel may give less (or refuse, which is fine).
pub(crate) fn grow_pipe(fd: &OwnedFd, size: usize) {
    let size = i32::try_from(size).unwrap_or(i32::MAX);
    let _ = fcntl(fd.as_fd(), FcntlArg::F_SETPIPE_SZ(size));
}

/// A close-on-exec duplicate of `fd` numbered above the worker's fixed fds, so that placing one
/// pipe end on its fixed number can never overwrite the other.
fn dup_high(fd: &OwnedFd) -> io::Result<OwnedFd> {
    let raw = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(RING_FD + 1))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd (fcntl(2)) that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// How to start a worker.
pub(crate) struct Spawn<'a> {
    pub(crate) exe: &'a std::path::Path,
    /// Read end of the request pipe: the worker's fd 3.
    pub(crate) request: &'a OwnedFd,
    /// Write end of the result pipe: the worker's fd 4.
    pub(crate) result: &'a OwnedFd,
    /// The reply ring's memfd, if replies go through one: the worker's fd 5.
    pub(crate) ring: Option<&'a OwnedFd>,
    /// Write end of the pipe that becomes the worker's stderr.
    pub(crate) stderr: OwnedFd,
    /// Write end of the pipe that becomes the worker's stdout; `None`: ours.
    pub(crate) stdout: Option<OwnedFd>,
    /// `RLIMIT_AS` for the worker, in bytes.
    pub(crate) memory_limit: Option<u64>,
    /// The level up to which the worker forwards its events: 0 (none) to 5 (trace).
    pub(crate) log_level: u8,
}

fn nix_io(e: nix::errno::Errno) -> io::Error {
    io::Error::from(e)
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Starts a worker with `posix_spawn` (a `vfork`, so the cost does not grow with this process's
/// memory): stdin from /dev/null, the protocol pipes on their fixed fds, stderr into our pipe,
/// stdout shared with us. The worker itself asks to die with its parent and applies its memory
/// limit, from the marker's value.
pub(crate) fn spawn_worker(spawn: Spawn<'_>) -> io::Result<u32> {
    let request = dup_high(spawn.request)?;
    let result = dup_high(spawn.result)?;
    let stderr = dup_high(&spawn.stderr)?;
    let null = dup_high(&OwnedFd::from(std::fs::File::open("/dev/null")?))?;
    let mut actions = PosixSpawnFileActions::init().map_err(nix_io)?;
    actions.add_dup2(null.as_raw_fd(), 0).map_err(nix_io)?;
    actions
        .add_dup2(request.as_raw_fd(), REQUEST_FD)
        .map_err(nix_io)?;
    actions
        .add_dup2(result.as_raw_fd(), RESULT_FD)
        .map_err(nix_io)?;
    actions.add_dup2(stderr.as_raw_fd(), 2).map_err(nix_io)?;
    let ring = spawn.ring.map(dup_high).transpose()?;
    if let Some(ring) = &ring {
        actions
            .add_dup2(ring.as_raw_fd(), RING_FD)
            .map_err(nix_io)?;
    }
    let stdout = spawn.stdout.as_ref().map(dup_high).transpose()?;
    if let Some(stdout) = &stdout {
        actions.add_dup2(stdout.as_raw_fd(), 1).map_err(nix_io)?;
    }
    let mut attr = PosixSpawnAttr::init().map_err(nix_io)?;
    // A clean signal state, as `std::process::Command` gives: Rust ignores SIGPIPE in its own
    // processes, and an ignored signal would stay ignored across exec.
    let mut defaults = SigSet::empty();
    defaults.add(Signal::SIGPIPE);
    attr.set_sigdefault(&defaults).map_err(nix_io)?;
    attr.set_sigmask(&SigSet::empty()).map_err(nix_io)?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK,
    )
    .map_err(nix_io)?;
    // The image this process runs, even when the file at `spawn.exe` was since replaced or
    // deleted (a rebuild while the program runs): a worker runs the code its parent was built
    // from, or nothing. `spawn.exe` stays the worker's `argv[0]`, for `ps`.
    let image = c"/proc/self/exe";
    let exe = c_string(spawn.exe.as_os_str().as_bytes())?;
    let marker = cf_worker::start::marker(
        std::process::id(),
        spawn.memory_limit,
        spawn.log_level,
        ring.is_some(),
    );
    let mut env = Vec::new();
    for (key, value) in std::env::vars_os() {
        if key != ENV_MARKER {
            let mut entry = key.into_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            env.push(c_string(&entry)?);
        }
    }
    env.push(c_string(format!("{ENV_MARKER}={marker}").as_bytes())?);
    let pid = posix_spawn(image, &actions, &attr, &[exe.as_c_str()], &env).map_err(nix_io)?;
    drop((request, result, stderr, stdout, ring, null));
    u32::try_from(pid.as_raw()).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))
}

/// How a child exited, once it has: (exit code, signal).
pub(crate) fn reap(pid: u32) -> io::Result<(Option<i32>, Option<i32>)> {
    let pid =
        Pid::from_raw(i32::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?);
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok((Some(code), None)),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok((None, Some(signal as i32))),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// An fd that becomes readable when the child `pid` exits (pidfd_open(2)).
pub(crate) fn pidfd(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is passed.
    let raw = syscall!(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    let raw = i32::try_from(raw).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: pidfd_open returned a new fd (pidfd_open(2), always close-on-exec) that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sends `signal` through the pidfd of a child: unlike kill(2) by pid, it cannot reach another
/// process that took the pid after something else in the program reaped the child (a
/// `waitpid(-1)` thread, SIGCHLD ignored).
pub(crate) fn pidfd_signal(pidfd: &OwnedFd, signal: Signal) -> io::Result<()> {
    // SAFETY: pidfd_send_signal(2) takes an fd, a signal number, a null siginfo pointer (the
    // kernel then fills in what kill(2) would) and flags 0; it writes no memory of ours.
    syscall!(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// Sends signal `n` to process `pid`.
pub(crate) fn signal(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// The name of signal `n`, such as `SIGSEGV`.
pub(crate) fn signal_name(n: i32) -> Option<&'static str> {
    nix::sys::signal::Signal::try_from(n)
        .ok()
        .map(nix::sys::signal::Signal::as_str)
}

/// Removes an agent's address and secret from its environment, first overwriting the secret's
/// bytes: they live in the block the process started with, which `/proc/<pid>/environ` shows
/// (and which a child shares between its `vfork` and its `exec`).
pub(crate) fn forget_agent_env(address: &str, secret: &str) {
    if let Ok(key) = CString::new(secret) {
        // SAFETY: getenv returns null or a pointer to the NUL-terminated value inside the
        // environment, which stays valid and writable until the variable is changed; nothing
        // else runs yet (this is the start-up constructor, before any thread), and we write only
        // the value's own bytes, up to its NUL.
        unsafe {
            let value = libc::getenv(key.as_ptr());
            if !value.is_null() {
                std::ptr::write_bytes(value, 0, libc::strlen(value));
            }
        }
    }
    // SAFETY: called once from the agent's start-up constructor, before `main` and before any
    // thread exists, so no other thread reads or writes the environment concurrently.
    unsafe {
        std::env::remove_var(address);
        std::env::remove_var(secret);
    }
}

/// Ignores SIGPIPE, as the Rust runtime does before `main` (an agent never reaches `main`): a
/// closed stderr must not kill it. Its workers get the default back at spawn.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: SIG_IGN installs no handler code; this runs before any thread exists.
    let _ =
        unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) };
}

/// Sends signal `n` to the process group led by `pid`.
pub(crate) fn signal_group(pid: u32, n: i32) {
    if let (Ok(pid), Ok(sig)) = (i32::try_from(pid), nix::sys::signal::Signal::try_from(n)) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
    }
}
