//! [`Signal`]: the untyped half of a future, its state and everyone waiting on it.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::Instant;

use super::{Status, Waiter};
use crate::callback::{Completions, run_guarded};
use crate::sync::lock;

pub(super) type Callback = Box<dyn FnOnce() + Send>;

/// The pool that runs a task (and can stop it, by killing its worker), and the task's id there.
pub(crate) type Killer = (std::sync::Weak<dyn Kill>, u64);

/// The process pool as its futures see it. No user code runs on the thread that kills, so the
/// caller may wait for the future to fail.
pub(crate) trait Kill: Send + std::marker::Sync {
    /// Stops the running task with this id, by killing its worker.
    fn kill(&self, id: u64);
    /// Where the callbacks of the pool's futures run, and the drops of values nobody holds.
    fn completions(&self) -> &Completions;
}

pub(super) struct State {
    pub(super) status: Status,
    /// The first waiter, kept inline: a future in one `as_completed` needs no allocation.
    waiter: Option<(Arc<Waiter>, usize)>,
    /// Everyone else, rarely there.
    more: Option<Box<More>>,
}

/// The waiters after the first, the wakers and the callbacks of a future.
#[derive(Default)]
pub(super) struct More {
    waiters: Vec<(Arc<Waiter>, usize)>,
    wakers: Vec<Waker>,
    callbacks: Vec<Callback>,
}

/// The untyped half of a future: state and everyone waiting on it. Not public API.
#[doc(hidden)]
pub struct Signal {
    state: Mutex<State>,
    /// The process pool that runs the task, and the task's id there.
    pub(super) pool: Option<Killer>,
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("status", &self.status())
            .finish()
    }
}

/// Everyone a future that just finished must tell, taken out of its state.
pub(super) struct Woken {
    waiter: Option<(Arc<Waiter>, usize)>,
    more: Option<Box<More>>,
}

impl Woken {
    /// Notifies the waiters, wakes the wakers, and runs the callbacks: on `completions` when
    /// given (in the order the futures complete), here otherwise.
    pub(super) fn wake(self, completions: Option<&Completions>) {
        if let Some((waiter, key)) = self.waiter {
            waiter.notify(key);
        }
        let Some(more) = self.more else {
            return;
        };
        let More {
            waiters,
            wakers,
            callbacks,
        } = *more;
        for (waiter, key) in waiters {
            waiter.notify(key);
        }
        for waker in wakers {
            waker.wake();
        }
        match completions {
            Some(completions) if !callbacks.is_empty() => {
                completions.run(Box::new(move || {
                    callbacks.into_iter().for_each(run_callback);
                }));
            }
            _ => callbacks.into_iter().for_each(run_callback),
        }
    }
}

impl Signal {
    pub(super) fn new(pool: Option<Killer>) -> Self {
        Signal {
            state: Mutex::new(State {
                status: Status::Pending,
                waiter: None,
                more: None,
            }),
            pool,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn status(&self) -> Status {
        self.lock().status
    }

    /// Makes a running future pending again: its task was given back unstarted (the worker said
    /// so), and waits in the pool's queue, where `cancel` can stop it.
    pub(crate) fn set_pending(&self) {
        let mut state = self.lock();
        if state.status == Status::Running {
            state.status = Status::Pending;
        }
    }

    /// Python's `set_running_or_notify_cancel`: false if the future was cancelled.
    pub(crate) fn set_running(&self) -> bool {
        let mut state = self.lock();
        match state.status {
            Status::Pending => {
                state.status = Status::Running;
                true
            }
            Status::Running => true,
            _ => false,
        }
    }

    /// Registers `waiter` under `key`, done or not, and returns the status seen; `None` if
    /// `waiter` is registered on this future already (the same future given twice). A done
    /// future never notifies: its entry only marks it seen, until
    /// [`unregister`](Self::unregister).
    pub(crate) fn register(&self, waiter: &Arc<Waiter>, key: usize) -> Option<Status> {
        let mut state = self.lock();
        match &state.waiter {
            None => state.waiter = Some((waiter.clone(), key)),
            Some((w, _)) if Arc::ptr_eq(w, waiter) => return None,
            Some(_) => {
                let more = state.more();
                if more.waiters.iter().any(|(w, _)| Arc::ptr_eq(w, waiter)) {
                    return None;
                }
                more.waiters.push((waiter.clone(), key));
            }
        }
        Some(state.status)
    }

    pub(crate) fn unregister(&self, waiter: &Arc<Waiter>) {
        let mut state = self.lock();
        if state
            .waiter
            .as_ref()
            .is_some_and(|(w, _)| Arc::ptr_eq(w, waiter))
        {
            state.waiter = None;
        }
        if let Some(more) = &mut state.more {
            more.waiters.retain(|(w, _)| !Arc::ptr_eq(w, waiter));
        }
    }

    /// Blocks until done or until `deadline`; true when done.
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.status().is_done() {
            return true;
        }
        let waiter = Arc::new(Waiter::default());
        if self.register(&waiter, 0).is_some_and(Status::is_done) {
            self.unregister(&waiter);
            return true;
        }
        let done = waiter.wait(deadline, &mut Vec::new(), 1);
        if !done {
            self.unregister(&waiter);
        }
        done || self.status().is_done()
    }

    /// Moves to `to`, if `allowed` says the current status may change; `set` runs under the
    /// lock, before the new status is visible. Returns everyone to tell, to be woken once the
    /// caller has let go of what it must let go of first.
    pub(super) fn publish(
        &self,
        to: Status,
        allowed: fn(Status) -> bool,
        set: impl FnOnce(),
    ) -> Option<Woken> {
        let mut state = self.lock();
        if !allowed(state.status) {
            return None;
        }
        set();
        state.status = to;
        Some(Woken {
            waiter: state.waiter.take(),
            more: state.more.take(),
        })
    }

    pub(super) fn poll_done(&self, cx: &Context<'_>) -> bool {
        let mut state = self.lock();
        if state.status.is_done() {
            return true;
        }
        let more = state.more();
        if !more.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            more.wakers.push(cx.waker().clone());
        }
        false
    }
}

impl State {
    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_default()
    }

    /// Keeps `callback` to run when the future finishes.
    pub(super) fn add_callback(&mut self, callback: Callback) {
        self.more().callbacks.push(callback);
    }
}

pub(super) fn run_callback(callback: Callback) {
    run_guarded(callback);
}
