//! [`Completer`]: the one handle that finishes a future.

use std::fmt;
use std::sync::Arc;

use super::{Core, Outcome, Status};
use crate::callback::Completions;
use crate::error::TaskError;
use crate::sync::lock;

/// The one handle that finishes a future: held by whoever runs the task.
pub(crate) struct Completer<T, E> {
    /// `None` once used: each completer finishes its future at most once.
    pub(super) core: Option<Arc<Core<T, E>>>,
    /// Where callbacks, and the drop of a value nobody holds, run, and how to send a value
    /// there; `None`: here.
    pub(super) completions: Option<(Completions, Release<T, E>)>,
}

/// Lets go of a completer's handle on its core, and of a value that did not go into it.
pub(super) type Release<T, E> = fn(Arc<Core<T, E>>, Option<Outcome<T, E>>, &Completions);

/// Lets go of a completer's handle on its core; if it was the last, the core (and the value in
/// it) is dropped on `completions`, so that a value's `Drop` never runs on the completing thread.
pub(super) fn release<T: Send + 'static, E: Send + 'static>(
    core: Arc<Core<T, E>>,
    outcome: Option<Outcome<T, E>>,
    completions: &Completions,
) {
    let core = Arc::into_inner(core);
    if core.is_some() || outcome.is_some() {
        completions.run(Box::new(move || drop((core, outcome))));
    }
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
    ///
    /// With [`Completions`], no user code runs here: when nobody else holds the future any more
    /// (or it was already done), its value is dropped on the completion thread.
    fn finish(mut self, to: Status, allowed: fn(Status) -> bool, outcome: Outcome<T, E>) {
        let core = self.core.take().expect("a completer is used once");
        let sync = core.sync.clone();
        let Some((completions, release)) = self.completions.take() else {
            sync.finish(to, allowed, None, move || {
                let _ = core.outcome.set(outcome);
                drop(core);
            });
            return;
        };
        let mut left = Some((core, outcome));
        sync.finish(to, allowed, Some(&completions), || {
            if let Some((core, outcome)) = left.take() {
                let _ = core.outcome.set(outcome);
                release(core, None, &completions);
            }
        });
        // Not allowed (the future was already done): the value goes the same way.
        if let Some((core, outcome)) = left {
            release(core, Some(outcome), &completions);
        }
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
            // No value of the user's is in the core (only this error): it may drop here.
            sync.finish(
                Status::Failed,
                |s| !s.is_done(),
                self.completions.as_ref().map(|(c, _)| c),
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
