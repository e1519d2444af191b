//! The watcher: a thread that reads requests while a task runs long, so that the parent can take
//! back the calls queued behind it (a short task must not wait behind a long one while another
//! worker is idle).
//!
//! It costs the serve loop two relaxed stores and a clock read per task; the thread sleeps while
//! the worker is idle, wakes once when a task has run for [`LONG`], and from then on only when
//! requests arrive.

use std::io::Write;
use std::os::fd::BorrowedFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::{Shared, relock};
use crate::frame::{self, ReplyKind};
use crate::sys;

/// How long a task runs before the watcher looks at what arrives behind it: the parent's
/// short-task threshold.
pub(crate) const LONG: Duration = Duration::from_micros(500);

/// The longest the watcher waits in one `poll` (it looks at the clock again after).
const POLL: Duration = Duration::from_millis(100);

/// When the running task started, as the watcher sees it.
pub(crate) struct Beat {
    base: Instant,
    /// Nanoseconds from `base` to the start of the running task, plus one; 0 while idle.
    started: AtomicU64,
    /// The watcher sleeps until the next task starts.
    parked: AtomicBool,
    watcher: OnceLock<Thread>,
}

impl Beat {
    pub(crate) fn new() -> Self {
        Beat {
            base: Instant::now(),
            started: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            watcher: OnceLock::new(),
        }
    }

    pub(crate) fn watched_by(&self, thread: Thread) {
        let _ = self.watcher.set(thread);
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// The serve loop waits for its next request.
    pub(crate) fn idle(&self) {
        self.started.store(0, Ordering::SeqCst);
    }

    /// The serve loop starts a task.
    pub(crate) fn start(&self) {
        self.started.store(self.now(), Ordering::SeqCst);
        if self.parked.swap(false, Ordering::SeqCst)
            && let Some(watcher) = self.watcher.get()
        {
            watcher.unpark();
        }
    }

    /// The watcher sleeps until a task starts (if none runs now).
    fn park(&self) {
        self.parked.store(true, Ordering::SeqCst);
        // A task that started between the caller's look and the store above saw no parked
        // watcher: look again before sleeping.
        if self.started.load(Ordering::SeqCst) == 0 {
            std::thread::park();
        }
        self.parked.store(false, Ordering::SeqCst);
    }
}

/// The watcher's loop (it ends with the process); `input` is the request stream's fd, to wait
/// on.
pub(crate) fn watch<R, W>(shared: &Shared<R, W>, input: BorrowedFd<'_>)
where
    R: std::io::Read,
    W: Write,
{
    let beat = &shared.beat;
    let long = u64::try_from(LONG.as_nanos()).unwrap_or(u64::MAX);
    loop {
        let started = beat.started.load(Ordering::SeqCst);
        if started == 0 {
            beat.park();
            continue;
        }
        let due = started.saturating_add(long);
        let now = beat.now();
        if now < due {
            std::thread::park_timeout(Duration::from_nanos(due - now));
            continue;
        }
        if !look(shared, input, started) {
            // Nothing to read, or nothing may be read now: look again a little later.
            std::thread::park_timeout(LONG);
        }
    }
}

/// Waits for requests while the task that started at `started` runs, and reads them; false if
/// there was nothing it could read.
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
    if !sys::readable(fd, POLL) {
        return true;
    }
    if shared.beat.started.load(Ordering::SeqCst) != started {
        return true;
    }
    let Ok(mut inlet) = shared.inlet.try_lock() else {
        return true;
    };
    let available = sys::available(fd);
    if available == 0 {
        // The stream ended (the serve loop sees it after the task), or a spurious wake-up.
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
