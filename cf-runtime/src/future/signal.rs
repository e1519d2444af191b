//! [`Signal`]: the untyped half of a future, its state and everyone waiting on it.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Instant;

use super::{Status, Waiter};
use crate::callback::{Completions, run_guarded};
use crate::sync::lock;

pub(super) type Callback = Box<dyn FnOnce() + Send>;

/// Whoever can stop a running task (the process pool, by killing its worker), and the task's id.
pub(crate) type Killer = (std::sync::Weak<dyn Kill>, u64);

/// Stops the running task with this id (the process pool, by killing its worker). No user code
/// runs on the thread that does it, so the caller may wait for the future to fail.
pub(crate) trait Kill: Send + std::marker::Sync {
    fn kill(&self, id: u64);
}

pub(super) struct State {
    pub(super) status: Status,
    pub(super) killer: Option<Killer>,
    waiters: Vec<(Arc<Waiter>, usize)>,
    wakers: Vec<Waker>,
    pub(super) callbacks: Vec<Callback>,
}

/// The untyped half of a future: state and everyone waiting on it. Not public API.
#[doc(hidden)]
pub struct Signal {
    pub(super) state: Mutex<State>,
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("status", &self.status())
            .finish()
    }
}

impl Signal {
    pub(super) fn new() -> Self {
        Signal {
            state: Mutex::new(State {
                status: Status::Pending,
                killer: None,
                waiters: Vec::new(),
                wakers: Vec::new(),
                callbacks: Vec::new(),
            }),
        }
    }

    pub(crate) fn status(&self) -> Status {
        lock(&self.state).status
    }

    /// Registers `waiter` under `key` unless the future is done; returns the status seen.
    pub(crate) fn register(&self, waiter: &Arc<Waiter>, key: usize) -> Status {
        let mut state = lock(&self.state);
        if !state.status.is_done() {
            state.waiters.push((waiter.clone(), key));
        }
        state.status
    }

    pub(crate) fn unregister(&self, waiter: &Arc<Waiter>) {
        lock(&self.state)
            .waiters
            .retain(|(w, _)| !Arc::ptr_eq(w, waiter));
    }

    /// Blocks until done or until `deadline`; true when done.
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.status().is_done() {
            return true;
        }
        let waiter = Arc::new(Waiter::default());
        if self.register(&waiter, 0).is_done() {
            return true;
        }
        let done = waiter.wait(deadline, &mut Vec::new());
        if !done {
            self.unregister(&waiter);
        }
        done || self.status().is_done()
    }

    /// Moves to `to` and wakes everyone, if `allowed` says the current status may change; `set`
    /// runs under the lock, before the new status is visible. The callbacks run on `completions`
    /// when given (in the order the futures complete), here otherwise.
    pub(super) fn finish(
        &self,
        to: Status,
        allowed: fn(Status) -> bool,
        completions: Option<&Completions>,
        set: impl FnOnce(),
    ) -> bool {
        let mut state = lock(&self.state);
        if !allowed(state.status) {
            return false;
        }
        set();
        state.status = to;
        let waiters = std::mem::take(&mut state.waiters);
        let wakers = std::mem::take(&mut state.wakers);
        let callbacks = std::mem::take(&mut state.callbacks);
        drop(state);
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
        true
    }

    pub(super) fn poll_done(&self, cx: &Context<'_>) -> bool {
        let mut state = lock(&self.state);
        if state.status.is_done() {
            return true;
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        false
    }
}

pub(super) fn run_callback(callback: Callback) {
    run_guarded(callback);
}
