//! What the submitting threads and the I/O thread share: the inbox, the wake-up pipe, counters.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::dispatch::Sig;
use super::forward::Outputs;
use super::job::Job;
use crate::callback::Completions;
use crate::future::Kill;
use crate::sys;

/// What `shutdown` asked of the tasks that have not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cancel {
    /// Let them run (`cancel_futures = false`).
    No,
    /// Cancel them (`cancel_futures = true`); the I/O thread has not done it yet.
    Asked,
    /// The I/O thread has cancelled every task that was pending when it was asked.
    Done,
}

/// What submitters hand the I/O thread.
#[derive(Default)]
pub(crate) struct Inbox {
    pub(crate) jobs: Vec<Job>,
    /// A wake-up byte is on its way; no need to write another.
    pub(crate) notified: bool,
    /// Set by `shutdown`, with what it asked of the pending tasks.
    pub(crate) shutdown: Option<Cancel>,
    /// The I/O thread has ended.
    pub(crate) io_gone: bool,
    pub(crate) broken: Option<crate::error::BrokenCause>,
    /// Ids of running jobs to stop by killing their worker (`Future::kill`).
    pub(crate) kills: Vec<u64>,
    /// A signal to send every worker (`terminate_workers`, `kill_workers`).
    pub(crate) terminate: Option<Sig>,
}

/// What the pool has done so far; see [`PoolStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) respawns: AtomicU64,
    pub(crate) running: AtomicU64,
    pub(crate) queued: AtomicU64,
    /// A gauge the I/O thread sets each time round its loop.
    pub(crate) workers: AtomicU64,
    /// Workers that take tasks, the spare not included; set with `workers`.
    pub(crate) ready_workers: AtomicU64,
    /// The pool is broken; set with `workers`.
    pub(crate) broken: AtomicBool,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn sub(counter: &AtomicU64) {
    counter.fetch_sub(1, Ordering::Relaxed);
}

// Each change is counted before the future it concerns completes, so that whoever sees a future
// done sees it counted.
impl Counters {
    pub(crate) fn submitted(&self) {
        add(&self.submitted);
        add(&self.queued);
    }
    pub(crate) fn sent(&self) {
        sub(&self.queued);
        add(&self.running);
    }
    pub(crate) fn dequeued_cancelled(&self) {
        sub(&self.queued);
        add(&self.cancelled);
    }
    pub(crate) fn dequeued_failed(&self) {
        sub(&self.queued);
        add(&self.failed);
    }
    pub(crate) fn answered(&self, ok: bool) {
        sub(&self.running);
        add(if ok { &self.completed } else { &self.failed });
    }
    pub(crate) fn requeued(&self) {
        sub(&self.running);
        add(&self.queued);
    }
    pub(crate) fn respawned(&self) {
        add(&self.respawns);
    }
}

/// A snapshot of a pool's activity, from [`ProcessPoolExecutor::stats`](crate::ProcessPoolExecutor::stats).
///
/// Counts are totals since the pool started, and a task is counted before its future
/// completes. A future cancelled while queued is counted when the pool reaches it; `workers` is
/// as of the pool's last turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks submitted.
    pub submitted: u64,
    /// Tasks sent to a worker and not answered yet (including those sent ahead).
    pub running: u64,
    /// Tasks that finished with a value.
    pub completed: u64,
    /// Tasks that failed: their own error, a panic, a dead worker, a time or memory limit.
    pub failed: u64,
    /// Tasks cancelled.
    pub cancelled: u64,
    /// Workers started to replace others (after a crash, a kill or `max_tasks_per_child`).
    pub respawns: u64,
    /// Tasks waiting for a worker.
    pub queued: u64,
    /// Live worker processes, the spare included, started or being started.
    pub workers: u64,
    /// Workers that take tasks: started, handshake and initializer done; the spare not
    /// included. See [`ProcessPoolExecutor::wait_ready`](crate::ProcessPoolExecutor::wait_ready).
    pub ready_workers: u64,
}

pub(crate) struct Shared {
    pub(crate) stats: Arc<Counters>,
    pub(crate) inbox: Mutex<Inbox>,
    /// Signalled when the I/O thread sets `cancel_done` or `io_gone`, when the number of ready
    /// workers changes or the pool breaks, and on shutdown.
    pub(crate) acked: Condvar,
    /// The write end of the I/O thread's wake-up pipe.
    pub(crate) wake: OwnedFd,
    /// Set by `shutdown`: submitters stop before taking the lock.
    pub(crate) closed: AtomicBool,
    pub(crate) next_id: AtomicU64,
    /// Where the I/O thread puts the workers' stderr, for the forwarding thread to print.
    pub(crate) output: Outputs,
    /// The completion thread: the futures' callbacks and the drops of values nobody holds.
    pub(crate) completions: Completions,
}

impl Kill for Shared {
    fn kill(&self, id: u64) {
        let mut inbox = self.lock();
        inbox.kills.push(id);
        self.wake(&mut inbox);
    }

    fn completions(&self) -> &Completions {
        &self.completions
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(crate::sync::unpoison)
    }

    /// Wakes `wait_ready`: the ready workers changed, or the pool broke (with this cause).
    pub(crate) fn ready_changed(&self, broken: Option<&crate::error::BrokenCause>) {
        let mut inbox = self.lock();
        if inbox.broken.is_none() {
            inbox.broken = broken.cloned();
        }
        self.acked.notify_all();
    }

    /// Wakes the I/O thread, whatever it is doing (the spawner, without the inbox lock).
    pub(crate) fn poke(&self) {
        sys::wake(&self.wake);
    }

    /// Wakes the I/O thread unless a wake-up is already pending. Call with the inbox locked.
    pub(crate) fn wake(&self, inbox: &mut Inbox) {
        if !inbox.notified && !inbox.io_gone {
            inbox.notified = true;
            sys::wake(&self.wake);
        }
    }
}
