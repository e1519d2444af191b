//! [`Completer`]: the one handle that finishes a future.

use std::fmt;
use std::sync::Arc;

use super::{Core, Outcome, Status};
use crate::error::TaskError;
use crate::sync::lock;

/// The one handle that finishes a future: held by whoever runs the task.
pub(crate) struct Completer<T, E> {
    /// `None` once used: each completer finishes its future at most once.
    pub(super) core: Option<Arc<Core<T, E>>>,
}

impl<T, E> Completer<T, E> {
    fn core(&self) -> &Arc<Core<T, E>> {
        self.core.as_ref().expect("a completer is used once")
    }

    /// Python's `set_running_or_notify_cancel`: false if the future was cancelled.
    pub(crate) fn set_running(&self) -> bool {
        let mut state = lock(&self.core().sync.state);
        match state.status {
            Status::Pending => {
                state.status = Status::Running;
                true
            }
            Status::Running => true,
            _ => false,
        }
    }

    /// Whether the task has not started (so that cancelling it is Python's `cancel`).
    pub(crate) fn pending(&self) -> bool {
        self.core().sync.status() == Status::Pending
    }

    /// Moves to `to`, if `allowed`, with `outcome`; the core handle is dropped under the state
    /// lock, before the new state can be seen (see the module docs).
    fn finish(mut self, to: Status, allowed: fn(Status) -> bool, outcome: Outcome<T, E>) {
        let core = self.core.take().expect("a completer is used once");
        let sync = core.sync.clone();
        sync.finish(to, allowed, move || {
            let _ = core.outcome.set(outcome);
            drop(core);
        });
    }

    /// Cancels the future if it is still pending (the task will not run).
    pub(crate) fn cancel(self) {
        self.finish(
            Status::Cancelled,
            |s| s == Status::Pending,
            Err(TaskError::Cancelled),
        );
    }

    /// Fails the future with [`TaskError::Killed`]: it was running and its worker was killed
    /// for it (`Future::kill`).
    pub(crate) fn kill(self) {
        self.finish(Status::Failed, |s| !s.is_done(), Err(TaskError::Killed));
    }

    /// Finishes the future with `outcome` (ignored if it is already done).
    pub(crate) fn complete(self, outcome: Outcome<T, E>) {
        let status = if outcome.is_ok() {
            Status::Finished
        } else {
            Status::Failed
        };
        self.finish(status, |s| !s.is_done(), outcome);
    }
}

impl<T, E> Drop for Completer<T, E> {
    fn drop(&mut self) {
        // A completer dropped unused is a bug of the pool's; its future must not wait forever.
        if let Some(core) = self.core.take() {
            let sync = core.sync.clone();
            sync.finish(
                Status::Failed,
                |s| !s.is_done(),
                move || {
                    let _ = core.outcome.set(Err(TaskError::Abandoned));
                    drop(core);
                },
            );
        }
    }
}

impl<T, E> fmt::Debug for Completer<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completer").finish_non_exhaustive()
    }
}
