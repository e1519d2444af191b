use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::fcntl::{FcntlArg, fcntl};

use crate::start::{ENV_MARKER, REQUEST_FD, RESULT_FD, STACK_OVERFLOW};

/// Removes the worker marker so that processes a task starts are not workers.
pub(crate) fn remove_marker() {
    // SAFETY: called once from the start-up constructor, before `main` and before any thread of
    // ours exists, so no other thread reads or writes the environment concurrently.
    unsafe { std::env::remove_var(ENV_MARKER) };
}

/// Where the worker keeps its own fds: high, out of the way of a task that opens, closes or
/// `dup2`s low numbers (below the soft `RLIMIT_NOFILE`, which `F_DUPFD` must respect).
fn high_fd() -> i32 {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    let base = soft.saturating_sub(32).min(1000);
    i32::try_from(base).unwrap_or(1000).max(RESULT_FD + 1)
}

/// A close-on-exec copy of `fd` at or above [`high_fd`].
pub(crate) fn dup_high(fd: std::os::fd::BorrowedFd<'_>) -> Option<OwnedFd> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(high_fd())).ok()?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd (fcntl(2)) that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Takes the request and result fds the parent placed at [`REQUEST_FD`] and [`RESULT_FD`],
/// moved to high close-on-exec numbers; the fixed numbers are closed, free for the tasks.
pub(crate) fn protocol_fds() -> Option<(OwnedFd, OwnedFd)> {
    let (input, output) = (take_fd(REQUEST_FD)?, take_fd(RESULT_FD)?);
    // Dropping the originals closes the fixed numbers.
    Some((dup_high(input.as_fd())?, dup_high(output.as_fd())?))
}

/// Takes the fd the parent placed at `fixed` (closed on exec from now on); `None` if nothing is
/// open there.
pub(crate) fn take_fd(fixed: i32) -> Option<OwnedFd> {
    // SAFETY: F_GETFD reads the fd's flags and touches no memory; on a closed fd it fails with
    // EBADF (fcntl(2)), which tells us nothing was handed over.
    if unsafe { nix::libc::fcntl(fixed, nix::libc::F_GETFD) } == -1 {
        return None;
    }
    // SAFETY: the parent placed the fd at this number before exec (checked open just above),
    // and nothing else in this process owns it: the marker says we are the worker, and this
    // runs once, before `main`.
    let fd = unsafe { OwnedFd::from_raw_fd(fixed) };
    fcntl(
        fd.as_fd(),
        FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .ok()?;
    Some(fd)
}

/// A close-on-exec copy of stderr, high like the protocol fds.
pub(crate) fn stderr_copy() -> Option<OwnedFd> {
    dup_high(std::io::stderr().as_fd())
}

/// Whether this process runs with more privilege than whoever started it (setuid, setgid or file
/// capabilities): the loader's `AT_SECURE`.
pub(crate) fn privileged() -> bool {
    // SAFETY: getauxval(3) reads the auxiliary vector the kernel gave this process; it takes a
    // number and returns a number (0 for an unknown type), touching no memory of ours.
    unsafe { nix::libc::getauxval(nix::libc::AT_SECURE) != 0 }
}

/// Whether the parent process runs the very executable this process runs (the same file, by
/// device and inode, even if it was since deleted or replaced): the pool started us.
pub(crate) fn parent_runs_this_image() -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = nix::unistd::getppid();
    let ours = std::fs::metadata("/proc/self/exe");
    let theirs = std::fs::metadata(format!("/proc/{parent}/exe"));
    match (ours, theirs) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Ignores SIGPIPE, as std's `main` set-up does for every Rust program (which a worker never
/// runs): a write to a closed pipe is then `Err(BrokenPipe)`, not the death of the worker.
pub(crate) fn ignore_sigpipe() -> bool {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety question arises; this
    // runs before any thread of ours exists (signal(2)).
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }.is_ok()
}

/// Ignores SIGINT: a terminal's Ctrl-C reaches the whole foreground process group, and a worker
/// must not die of it while its parent handles it (a graceful shutdown). The worker still dies
/// with its parent, by the parent-death signal.
pub(crate) fn ignore_sigint() -> bool {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety question arises; this
    // runs before any thread of ours exists (signal(2)).
    unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) }.is_ok()
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

/// Where a fault means the main thread's stack overflowed, on platforms where the handler cannot
/// read the stack pointer (see [`overflowed`]); empty when the stack has no limit.
static STACK_LOW: AtomicUsize = AtomicUsize::new(0);
static STACK_HIGH: AtomicUsize = AtomicUsize::new(0);

/// How far below the stack pointer a fault still counts as running out of stack: a frame's stack
/// probes touch one page at a time, and a `call`'s push or the x86-64 red zone reach a little
/// below the pointer.
const BELOW_SP: usize = 64 << 10;

/// How far above the stack pointer: a frame addresses its locals upwards from it.
const ABOVE_SP: usize = 4 << 10;

/// Tasks run on the main thread, started before std's own stack-overflow handler would be
/// installed. This handler says that the stack overflowed (on an alternate stack, with one
/// `write`), then lets the fault kill the process with SIGSEGV as before.
pub(crate) fn watch_stack_overflow() {
    let top = std::fs::read_to_string("/proc/self/maps")
        .ok()
        .and_then(|maps| {
            let line = maps.lines().find(|l| l.ends_with("[stack]"))?;
            let range = line.split_whitespace().next()?;
            usize::from_str_radix(range.split('-').nth(1)?, 16).ok()
        });
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK)
        .ok()
        .filter(|&(soft, _)| soft != nix::sys::resource::RLIM_INFINITY)
        .and_then(|(soft, _)| usize::try_from(soft).ok());
    if let (Some(top), Some(limit)) = (top, limit) {
        // The stack may grow to `limit` below its top; a fault from there down to a guard gap
        // (and a large frame's reach) below it is an overflow. With no limit there is no such
        // range: the stack grows until it meets another mapping, wherever that is.
        STACK_LOW.store(
            top.saturating_sub(limit).saturating_sub(64 << 20),
            Ordering::Relaxed,
        );
        STACK_HIGH.store(top, Ordering::Relaxed);
    }
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
    context: *mut std::ffi::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // SAFETY: as above; for SIGSEGV its address field is the faulting address.
    let address = unsafe { (*info).si_addr() } as usize;
    // Only a fault the kernel raised for an access (si_code > 0) has an address; a SIGSEGV sent
    // by kill(2) or raise(3) carries a pid there.
    if code > 0 && overflowed(address, context) {
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

/// Whether a fault at `address` ran out of stack: it lies just below (or at) the faulting
/// thread's stack pointer, which is where a growing stack meets its guard whatever the stack's
/// limit. Where the stack pointer cannot be read, the range found at start-up decides.
fn overflowed(address: usize, context: *mut std::ffi::c_void) -> bool {
    match stack_pointer(context) {
        Some(sp) => address >= sp.saturating_sub(BELOW_SP) && address < sp.saturating_add(ABOVE_SP),
        None => (STACK_LOW.load(Ordering::Relaxed)..STACK_HIGH.load(Ordering::Relaxed))
            .contains(&address),
    }
}

/// The stack pointer of the interrupted code, from the handler's `ucontext_t`.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn stack_pointer(context: *mut std::ffi::c_void) -> Option<usize> {
    let context = context.cast::<nix::libc::ucontext_t>();
    // SAFETY: the third argument of an SA_SIGINFO handler is the interrupted context, a valid
    // `ucontext_t` (sigaction(2)); reading one register of it allocates nothing.
    let sp = unsafe { (*context).uc_mcontext.gregs[nix::libc::REG_RSP as usize] };
    usize::try_from(sp).ok()
}

/// The stack pointer of the interrupted code, from the handler's `ucontext_t`.
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
fn stack_pointer(context: *mut std::ffi::c_void) -> Option<usize> {
    let context = context.cast::<nix::libc::ucontext_t>();
    // SAFETY: the third argument of an SA_SIGINFO handler is the interrupted context, a valid
    // `ucontext_t` (sigaction(2)); reading one register of it allocates nothing.
    let sp = unsafe { (*context).uc_mcontext.sp };
    usize::try_from(sp).ok()
}

/// Elsewhere the handler does not read the stack pointer.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn stack_pointer(_: *mut std::ffi::c_void) -> Option<usize> {
    None
}

/// Whether `fd` has bytes to read (or its end) within `timeout`; false on an error.
pub(crate) fn readable(fd: std::os::fd::BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

/// Waits until `fd` can be written to (or is broken); false when poll fails.
pub(crate) fn wait_writable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// How many bytes can be read from `fd` without blocking (`FIONREAD`); 0 on an error.
pub(crate) fn available(fd: std::os::fd::BorrowedFd<'_>) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one `int` through the pointer, which points at `n`, alive and
    // writable for the call; on a bad fd it fails with EBADF and writes nothing (ioctl(2)).
    let got = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::FIONREAD, &raw mut n) };
    if got == -1 {
        0
    } else {
        usize::try_from(n).unwrap_or(0)
    }
}

/// Where the `SIGURG` handler writes: the write end of the urge pipe (-1 until it exists).
static URGE_WRITE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// The `SIGURG` handler: one byte into the urge pipe, for the watcher.
extern "C" fn on_urge(_: nix::libc::c_int) {
    let fd = URGE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; it reads one byte from a local. The write end
        // is non-blocking, so a full pipe (an urge already waiting) loses nothing and blocks
        // no thread.
        let _ = unsafe { nix::libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

/// Sets up the parent's urge to give calls back: `SIGURG` runs a handler that writes to a pipe
/// whose read end this returns (high, close-on-exec), and is blocked in this thread, so in every
/// thread started from it; the watcher unblocks it in itself ([`unblock_urge`]). A handled
/// signal is never discarded: a task thread that unblocks it runs the handler, and the watcher
/// still hears of it.
pub(crate) fn urge_pipe() -> Option<OwnedFd> {
    use nix::fcntl::OFlag;
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigmaskHow, Signal};
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ok()?;
    let (read, write) = (dup_high(read.as_fd())?, dup_high(write.as_fd())?);
    fcntl(write.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).ok()?;
    URGE_WRITE.store(
        std::os::fd::IntoRawFd::into_raw_fd(write),
        Ordering::Relaxed,
    );
    let urge = urge_set();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&urge), None).ok()?;
    let action = SigAction::new(SigHandler::Handler(on_urge), SaFlags::SA_RESTART, urge);
    // SAFETY: the handler only loads an atomic and calls write(2), both async-signal-safe; the
    // fd it writes to is never closed (its `OwnedFd` was given up above).
    unsafe { nix::sys::signal::sigaction(Signal::SIGURG, &action) }.ok()?;
    Some(read)
}

/// Lets `SIGURG` run its handler in this thread (the watcher's).
pub(crate) fn unblock_urge() {
    use nix::sys::signal::{SigmaskHow, pthread_sigmask};
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&urge_set()), None);
}

/// The set of the one signal that urges a worker to give calls back.
fn urge_set() -> nix::sys::signal::SigSet {
    let mut urge = nix::sys::signal::SigSet::empty();
    urge.add(nix::sys::signal::Signal::SIGURG);
    urge
}

/// Waits for an urge on `pipe` (from [`urge_pipe`]) and takes every one that came; false if
/// the pipe failed.
pub(crate) fn wait_urge(pipe: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match nix::unistd::read(pipe, &mut buf) {
            Ok(n) => return n > 0,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// Asks for transparent huge pages behind the spare capacity of `buf` (`MADV_HUGEPAGE`): a
/// buffer of many MiB about to be filled is then faulted in 2 MiB at a time rather than 4 KiB,
/// a fraction of the cost (where THP is `madvise` or `always`; elsewhere nothing changes).
pub(crate) fn huge_pages(buf: &mut Vec<u8>) {
    const HUGE: usize = 2 << 20;
    let spare = buf.spare_capacity_mut();
    let at = spare.as_mut_ptr() as usize;
    let (begin, end) = (at.next_multiple_of(HUGE), (at + spare.len()) / HUGE * HUGE);
    if end <= begin {
        return;
    }
    let start = spare.as_mut_ptr().wrapping_add(begin - at);
    // SAFETY: [begin, end) is whole huge pages inside `buf`'s allocation (its spare capacity);
    // MADV_HUGEPAGE changes only how the kernel backs them, never their contents or validity,
    // and a failure (THP off, an old kernel) changes nothing (madvise(2)).
    let _ = unsafe { nix::libc::madvise(start.cast(), end - begin, nix::libc::MADV_HUGEPAGE) };
}
