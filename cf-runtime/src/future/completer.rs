//! [`Completer`]: the one handle that finishes a future.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Core, Outcome, Signal, Status};
use crate::callback::Completions;
use crate::error::TaskError;
use crate::sync::lock;

/// The one handle that finishes a future: held by whoever runs the task.
pub(crate) struct Completer<T, E> {
    /// `None` once used: each completer finishes its future at most once.
    pub(super) core: Option<Arc<Core<T, E>>>,
    /// How a value nobody holds any more is let go of.
    release: Release<T, E>,
}

/// Lets go of a future's core that the completer held last, and of a value that did not go into
/// the future, on the pool's completion thread when there is one.
type Release<T, E> = fn(Option<Core<T, E>>, Option<Outcome<T, E>>, Option<&Completions>);

/// A [`Release`]: with `completions`, the core (and the value in it) is dropped there, so that a
/// value's `Drop` never runs on a pool's I/O thread.
fn release<T: Send + 'static, E: Send + 'static>(
    core: Option<Core<T, E>>,
    outcome: Option<Outcome<T, E>>,
    completions: Option<&Completions>,
) {
    match completions {
        Some(completions) if core.is_some() || outcome.is_some() => {
            completions.run(Box::new(move || drop((core, outcome))));
        }
        _ => drop((core, outcome)),
    }
}

/// Held by a completer from just before it publishes that a future is done until it has let go
/// of its handle on the future (the two cannot be one step: the state lock is inside the
/// handle's allocation). Whoever finds a done future shared takes it to know that the other
/// handle is not the completer's. Sharded by address, so that completions rarely wait on each
/// other.
static RELEASING: [Mutex<()>; 64] = [const { Mutex::new(()) }; 64];

/// The lock of [`RELEASING`] for the future whose signal is `signal`.
pub(super) fn releasing(signal: &Signal) -> MutexGuard<'static, ()> {
    let at = (std::ptr::from_ref(signal).addr() >> 6) % RELEASING.len();
    lock(&RELEASING[at])
}

impl<T: Send + Sync + 'static, E: Send + Sync + 'static> Completer<T, E> {
    /// The completer of the future whose core this is (a handle of its own).
    pub(crate) fn new(core: Arc<Core<T, E>>) -> Self {
        Completer {
            core: Some(core),
            release: release::<T, E>,
        }
    }
}

impl<T, E> Completer<T, E> {
    fn core(&self) -> &Arc<Core<T, E>> {
        self.core.as_ref().expect("a completer is used once")
    }

    /// Python's `set_running_or_notify_cancel`: false if the future was cancelled.
    pub(crate) fn set_running(&self) -> bool {
        self.core().sync.set_running()
    }

    /// Moves to `to`, if `allowed`, with `outcome`; the core handle is let go of before anyone
    /// who sees the future done can find it shared (see the module docs and [`RELEASING`]).
    ///
    /// In a process pool, no user code runs here: callbacks, and the drop of a value nobody
    /// holds any more (or of one that came after the future was done), go to the pool's
    /// completion thread.
    fn finish(mut self, to: Status, allowed: fn(Status) -> bool, outcome: Outcome<T, E>) {
        let core = self.core.take().expect("a completer is used once");
        settle(core, to, allowed, outcome, self.release);
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

/// See [`Completer::finish`].
fn settle<T, E>(
    core: Arc<Core<T, E>>,
    to: Status,
    allowed: fn(Status) -> bool,
    outcome: Outcome<T, E>,
    release: Release<T, E>,
) {
    let pool = core.sync.pool.as_ref().and_then(|(pool, _)| pool.upgrade());
    let completions = pool.as_deref().map(|pool| pool.completions());
    let mut outcome = Some(outcome);
    let releasing = releasing(&core.sync);
    let woken = core.sync.publish(to, allowed, || {
        if let Some(outcome) = outcome.take() {
            let _ = core.outcome.set(outcome.map_err(Box::new));
        }
    });
    let last = Arc::into_inner(core);
    drop(releasing);
    release(last, outcome, completions);
    if let Some(woken) = woken {
        woken.wake(completions);
    }
}

impl<T, E> Drop for Completer<T, E> {
    fn drop(&mut self) {
        // A completer dropped unused is a bug of the pool's; its future must not wait forever.
        if let Some(core) = self.core.take() {
            settle(
                core,
                Status::Failed,
                |s| !s.is_done(),
                Err(TaskError::Abandoned),
                self.release,
            );
        }
    }
}

impl<T, E> fmt::Debug for Completer<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completer").finish_non_exhaustive()
    }
}
