use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use cf_worker::start::{ENV_MARKER, REQUEST_FD, RESULT_FD};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc;

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
    let raw = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(RESULT_FD + 1))?;
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
    /// Write end of the pipe that becomes the worker's stderr.
    pub(crate) stderr: OwnedFd,
    /// `RLIMIT_AS` for the worker, in bytes.
    pub(crate) memory_limit: Option<u64>,
}

/// Starts a worker: stdin from /dev/null, the protocol pipes on their fixed fds, stderr into
/// our pipe, an optional address-space limit, and SIGKILL when the spawning thread goes away.
pub(crate) fn spawn_worker(spawn: Spawn<'_>) -> io::Result<Child> {
    let request = dup_high(spawn.request)?;
    let result = dup_high(spawn.result)?;
    let (request_raw, result_raw) = (request.as_raw_fd(), result.as_raw_fd());
    let limit = spawn.memory_limit.map(|bytes| libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    });
    let parent = std::process::id();
    let mut command = Command::new(spawn.exe);
    command
        .env(ENV_MARKER, "1")
        .stdin(Stdio::null())
        .stderr(Stdio::from(spawn.stderr));
    // SAFETY: the closure runs in the child between fork and exec and makes only
    // async-signal-safe calls (dup2(2), setrlimit(2), prctl(2), getppid(2); signal-safety(7))
    // on fds that the parent keeps open until `spawn` returns (`request` and `result` live to the
    // end of this function) and on `limit`, a plain value moved into the closure. It allocates
    // nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            syscall!(libc::dup2(request_raw, REQUEST_FD))?;
            syscall!(libc::dup2(result_raw, RESULT_FD))?;
            if let Some(limit) = &limit {
                syscall!(libc::setrlimit(libc::RLIMIT_AS, limit))?;
            }
            syscall!(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            // The parent may have died before prctl: then nobody would kill us later.
            if libc::getppid() != parent as libc::pid_t {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = command.spawn();
    drop((request, result));
    child
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

/// Sends signal `n` to process `pid`.
pub(crate) fn signal(pid: u32, n: i32) {
    if let (Ok(pid), Ok(sig)) = (i32::try_from(pid), nix::sys::signal::Signal::try_from(n)) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// The name of signal `n`, such as `SIGSEGV`.
pub(crate) fn signal_name(n: i32) -> Option<&'static str> {
    nix::sys::signal::Signal::try_from(n)
        .ok()
        .map(nix::sys::signal::Signal::as_str)
}
