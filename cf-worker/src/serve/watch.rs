//! The watcher: a thread that reads requests while a task runs, when the parent asks it to, so
//! that the parent can take back the calls queued behind a long task (a short task must not wait
//! behind a long one while another worker is idle).
//!
//! The parent asks with a `SIGURG` beside its `Revoke` frames. The signal is blocked in every
//! thread of the worker (threads a task starts inherit the mask; `std::process::Command` clears
//! it for the programs they run) and taken by the watcher with `sigwait`, so it interrupts no
//! task, and the watcher costs nothing until it comes: no timer, no wake-up per task, two
//! atomic stores per task in the serve loop.

use std::io::Write;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

impl Beat {
    pub(crate) fn new() -> Self {
        Beat {
            started: AtomicU64::new(0),
            next: AtomicU64::new(1),
        }
    }

    /// The serve loop waits for its next request.
    pub(crate) fn idle(&self) {
        self.started.store(0, Ordering::Release);
    }

    /// The serve loop starts a task.
    pub(crate) fn start(&self) {
        let n = self.next.load(Ordering::Relaxed);
        self.next.store(n.wrapping_add(1).max(1), Ordering::Relaxed);
        self.started.store(n, Ordering::Release);
    }

    fn running(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }
}

/// The watcher's loop (it ends with the process); `input` is the request stream's fd, to wait
/// on.
pub(crate) fn watch<R, W>(shared: &Shared<R, W>, input: BorrowedFd<'_>)
where
    R: std::io::Read,
    W: Write,
{
    loop {
        if !sys::wait_urge() {
            // Nothing can wake this thread: calls are never given back, each one runs.
            return;
        }
        // The parent wants calls back. They wait behind the task that runs now (if none runs,
        // the serve loop reads the requests itself and the calls ran already): look at what
        // arrives until that task ends.
        let started = shared.beat.running();
        while started != 0 && shared.beat.running() == started {
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
    match shared.inlet.try_lock() {
        Ok(inlet) if inlet.full() => return false,
        Ok(_) => {}
        // The serve loop reads: the task is over.
        Err(_) => return true,
    }
    if !sys::readable(fd, POLL) || shared.beat.running() != started {
        return true;
    }
    let Ok(mut inlet) = shared.inlet.try_lock() else {
        return true;
    };
    let available = sys::available(fd);
    if available == 0 {
        // The stream ended (the serve loop sees it after the task).
        return false;
    }
    let Ok(revoked) = inlet.absorb(available) else {
        return false;
    };
    // Answered while the inlet is held, so that the serve loop, which takes the calls behind
    // these only with the inlet, replies to none of them before these replies are out.
    let mut output = relock(&shared.output);
    for id in revoked {
        let mut reply = Vec::with_capacity(4 + frame::HEADER_LEN);
        frame::push(&mut reply, ReplyKind::Revoked as u8, id, 0, &[]);
        if output.write_all(&reply).is_err() {
            break;
        }
    }
    true
}
