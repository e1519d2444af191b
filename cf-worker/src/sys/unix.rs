use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use crate::start::{ENV_MARKER, REQUEST_FD, RESULT_FD, STACK_OVERFLOW};

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

/// The addresses where a fault means the main thread's stack overflowed.
static STACK_LOW: AtomicUsize = AtomicUsize::new(0);
static STACK_HIGH: AtomicUsize = AtomicUsize::new(0);

/// Tasks run on the main thread, started before std's own stack-overflow handler would be
/// installed. This handler says that the stack overflowed (on an alternate stack, with one
/// `write`), then lets the fault kill the process with SIGSEGV as before.
pub(crate) fn watch_stack_overflow() {
    let Some(top) = std::fs::read_to_string("/proc/self/maps")
        .ok()
        .and_then(|maps| {
            let line = maps.lines().find(|l| l.ends_with("[stack]"))?;
            let range = line.split_whitespace().next()?;
            usize::from_str_radix(range.split('-').nth(1)?, 16).ok()
        })
    else {
        return;
    };
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK)
        .map_or(8 << 20, |(soft, _)| {
            usize::try_from(soft).unwrap_or(usize::MAX)
        });
    // The stack may grow to `limit` below its top; a fault from there down to a guard gap (and
    // a large frame's reach) below it is an overflow.
    STACK_LOW.store(
        top.saturating_sub(limit).saturating_sub(64 << 20),
        Ordering::Relaxed,
    );
    STACK_HIGH.store(top, Ordering::Relaxed);
    let alternate: &'static mut [u8] = Box::leak(vec![0u8; 64 << 10].into_boxed_slice());
    let stack = nix::libc::stack_t {
        ss_sp: alternate.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: alternate.len(),
    };
    // SAFETY: `stack` describes a leaked, never-freed 64 KiB buffer that nothing else uses, as
    // sigaltstack(2) requires for as long as the handler may run.
    if unsafe { nix::libc::sigaltstack(&stack, std::ptr::null_mut()) } != 0 {
        return;
    }
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::SigAction(on_fault),
        nix::sys::signal::SaFlags::SA_SIGINFO
            | nix::sys::signal::SaFlags::SA_ONSTACK
            | nix::sys::signal::SaFlags::SA_RESETHAND,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: `on_fault` only reads two atomics and calls write(2), both async-signal-safe
    // (signal-safety(7)); it runs on the alternate stack set up above.
    let _ = unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGSEGV, &action) };
}

extern "C" fn on_fault(
    _: nix::libc::c_int,
    info: *mut nix::libc::siginfo_t,
    _: *mut std::ffi::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler; for SIGSEGV its
    // address field is the faulting address.
    let address = unsafe { (*info).si_addr() } as usize;
    let (low, high) = (
        STACK_LOW.load(Ordering::Relaxed),
        STACK_HIGH.load(Ordering::Relaxed),
    );
    if (low..high).contains(&address) {
        for part in [STACK_OVERFLOW, "\n"] {
            // SAFETY: write(2) on fd 2 with a static buffer; async-signal-safe.
            let _ = unsafe { nix::libc::write(2, part.as_ptr().cast(), part.len()) };
        }
    }
    // SA_RESETHAND restored the default action. A SIGSEGV sent by raise(3) or kill(2) would not
    // come back when the handler returns (a real fault would): send it again. It is blocked until
    // the handler returns, then ends the process.
    // SAFETY: raise(3) is async-signal-safe (signal-safety(7)).
    let _ = unsafe { nix::libc::raise(nix::libc::SIGSEGV) };
}
