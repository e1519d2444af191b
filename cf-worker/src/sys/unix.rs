use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use crate::start::{ENV_MARKER, REQUEST_FD, RESULT_FD};

/// Removes the worker marker so that processes a task starts are not workers.
pub(crate) fn remove_marker() {
    // SAFETY: called once from the start-up constructor, before `main` and before any thread of
    // ours exists, so no other thread reads or writes the environment concurrently.
    unsafe { std::env::remove_var(ENV_MARKER) };
}

/// Takes the request and result fds, marking both close-on-exec.
pub(crate) fn protocol_fds() -> Option<(OwnedFd, OwnedFd)> {
    for fd in [REQUEST_FD, RESULT_FD] {
        // SAFETY: F_GETFD reads the fd's flags and touches no memory; on a closed fd it fails
        // with EBADF (fcntl(2)), which tells us nothing was handed over.
        if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } == -1 {
            return None;
        }
    }
    // SAFETY: the parent placed the pipe ends at these numbers with dup2 before exec (checked
    // open just above), and nothing else in this process owns them: the marker says we are the
    // worker, and this runs once, before `main`.
    let input = unsafe { OwnedFd::from_raw_fd(REQUEST_FD) };
    // SAFETY: as above, for the result fd.
    let output = unsafe { OwnedFd::from_raw_fd(RESULT_FD) };
    for fd in [&input, &output] {
        fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
    }
    Some((input, output))
}

/// Asks for SIGKILL when the parent dies, and checks that `parent` is still the parent (it may
/// have died before the request). False if it is not.
pub(crate) fn die_with_parent(parent: u64) -> bool {
    #[cfg(target_os = "linux")]
    if nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).is_err() {
        return false;
    }
    u64::try_from(nix::unistd::getppid().as_raw()).is_ok_and(|ppid| ppid == parent)
}

/// Limits this process's address space to `bytes` (`RLIMIT_AS`).
pub(crate) fn limit_memory(bytes: u64) -> bool {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, bytes, bytes).is_ok()
}
