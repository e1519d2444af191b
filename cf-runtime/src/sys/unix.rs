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
        if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
    }};
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Makes `fd` non-blocking.
pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL)?;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK))?;
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

/// Starts `exe` as a worker: `request` (read end) on fd 3, `result` (write end) on fd 4, stdin
/// from /dev/null, killed by SIGKILL when the spawning thread's process goes away.
pub(crate) fn spawn_worker(
    exe: &std::path::Path,
    request: &OwnedFd,
    result: &OwnedFd,
) -> io::Result<Child> {
    let request = dup_high(request)?;
    let result = dup_high(result)?;
    let (request_raw, result_raw) = (request.as_raw_fd(), result.as_raw_fd());
    let parent = std::process::id();
    let mut command = Command::new(exe);
    command.env(ENV_MARKER, "1").stdin(Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec and makes only
    // async-signal-safe calls (dup2(2), prctl(2), getppid(2); signal-safety(7)) on fds that the
    // parent keeps open until `spawn` returns (`request` and `result` live to the end of this
    // function). It allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            syscall!(libc::dup2(request_raw, REQUEST_FD))?;
            syscall!(libc::dup2(result_raw, RESULT_FD))?;
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

/// The name of signal `n`, such as `SIGSEGV`.
pub(crate) fn signal_name(n: i32) -> Option<&'static str> {
    nix::sys::signal::Signal::try_from(n).ok().map(nix::sys::signal::Signal::as_str)
}
