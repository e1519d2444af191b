//! The watcher: a thread that reads requests while a task runs, when the parent asks it to, so
//! that the parent can take back the calls queued behind a long task (a short task must not wait
//! behind a long one while another worker is idle).
//!
//! The parent asks with a `SIGURG` beside its `Revoke` frames. The signal is blocked in every
//! thread of the worker but the watcher (threads a task starts inherit the mask;
//! `std::process::Command` clears it for the programs they run), and its handler writes a byte
//! to a pipe the watcher reads: it interrupts no task, and a task that unblocks it in its own
//! thread runs the handler there, so no urge is lost. The watcher costs nothing until it comes:
//! no timer, no wake-up per task, two atomic stores per task in the serve loop.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::Duration;

use super::{Shared, relock};
use crate::frame::{self, ReplyKind};
use crate::sys;

/// The longest the watcher waits in one `poll` before it looks whether the task still runs.
const POLL: Duration = Duration::from_millis(100);

/// Which task the serve loop runs, as the watcher sees it.
pub(crate) struct Beat {
    /// The running task's number, counting from 1; 0 while the loop waits for a request.
    started: AtomicU64,
    next: AtomicU64,
    /// The watcher was urged while no task ran, and waits for the next one.
    alert: AtomicBool,
    watcher: OnceLock<Thread>,
}

impl Beat {
    pub(crate) fn new() -> Self {
        Beat {
            started: AtomicU64::new(0),
            next: AtomicU64::new(1),
            alert: AtomicBool::new(false),
            watcher: OnceLock::new(),
        }
    }

    pub(crate) fn watched_by(&self, thread: Thread) {
        let _ = self.watcher.set(thread);
    }

    /// The serve loop waits for its next request.
    pub(crate) fn idle(&self) {
        self.started.store(0, Ordering::Release);
    }

    /// The serve loop starts a task.
    pub(crate) fn start(&self) {
        let n = self.next.load(Ordering::Relaxed);
        self.next.store(n.wrapping_add(1).max(1), Ordering::Relaxed);
        self.started.store(n, Ordering::SeqCst);
        if self.alert.load(Ordering::SeqCst)
            && let Some(watcher) = self.watcher.get()
        {
            watcher.unpark();
        }
    }

    /// The running task's number, waiting for one to start if none runs.
    fn next_running(&self) -> u64 {
        self.alert.store(true, Ordering::SeqCst);
        let started = loop {
            // Looked at after `alert` is set, so that a task that starts meanwhile wakes us.
            match self.started.load(Ordering::SeqCst) {
                0 => std::thread::park(),
                started => break started,
            }
        };
        self.alert.store(false, Ordering::SeqCst);
        started
    }

    fn running(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }
}

/// The watcher's loop (it ends with the process); `input` is the request stream's fd, to wait
/// on.
pub(crate) fn watch<R, W>(shared: &Shared<R, W>, input: BorrowedFd<'_>, urge: &OwnedFd)
where
    R: std::io::Read,
    W: Write,
{
    sys::unblock_urge();
    loop {
        if !sys::wait_urge(urge.as_fd()) {
            // Nothing can wake this thread: calls are never given back, each one runs.
            return;
        }
        // The parent wants calls back. They wait behind the task that runs now, or, if none
        // runs (the worker has not read them yet, or they ran already), behind the next one:
        // look at what has come and what comes until that task ends.
        let started = shared.beat.next_running();
        while shared.beat.running() == started {
            if !look(shared, input, started) {
                // Nothing could be read (the stream ended, or the read-ahead is full).
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Waits for requests while the task numbered `started` runs, and reads them; false if there was
/// nothing it could read.
fn look<R, W>(shared: &Shared<R, W>, fd: BorrowedFd<'_>, started: u64) -> bool
where
    R: std::io::Read,
    W: Write,
{
    if !give_back(shared, fd, started) {
        return false;
    }
    // Then wait for more; a stream that is readable with nothing in it has ended (the serve loop
    // sees it after the task).
    !sys::readable(fd, POLL) || sys::available(fd) > 0
}

/// Reads what has arrived and gives back the calls asked for among all the requests read and
/// not started (some the serve loop read before this task started); false if nothing more can
/// be read.
fn give_back<R, W>(shared: &Shared<R, W>, fd: BorrowedFd<'_>, started: u64) -> bool
where
    R: std::io::Read,
    W: Write,
{
    let Ok(mut inlet) = shared.inlet.try_lock() else {
        // The serve loop reads: the task is over.
        return true;
    };
    if shared.beat.running() != started {
        return true;
    }
    let Ok(revoked) = inlet.absorb(sys::available(fd)) else {
        return false;
    };
    // Answered while the inlet is held, so that the serve loop, which takes the calls behind
    // these only with the inlet, replies to none of them before these replies are out.
    let mut replies = Vec::new();
    for id in revoked {
        frame::push(&mut replies, ReplyKind::Revoked as u8, id, 0, &[]);
    }
    if !replies.is_empty() {
        // A failed write is the parent's to see: the stream closed under it.
        let _ = relock(&shared.output).write_all(&replies);
    }
    !inlet.full()
}
