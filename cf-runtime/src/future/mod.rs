//! [`Future`]: the handle to one submitted task.
//!
//! A future is one allocation, its [`Core`]: the outcome, and the untyped [`Signal`] that holds
//! the state, the waiters, the wakers and the callbacks. A process pool's job holds one more
//! handle on it, as the completing end ([`Completer`], `Sink`). The completer lets go of its
//! handle right after it publishes the new state, under a lock that whoever finds the finished
//! future shared takes before deciding, so that whoever holds the only other handle can move the
//! outcome out (this is how `map` hands out owned results).
//!
//! A future completed by a process pool's I/O thread runs no user code there: its done-callbacks,
//! and the drop of a value whose future nobody holds any more, go to the pool's completion
//! thread (see [`Completions`]).
//!
//! One concept per file: [`signal`] (the untyped state and everyone waiting on it),
//! [`waiter`] (a thread blocked on one or more futures), [`completer`] (the one handle that
//! finishes a future) and [`any`] (a future of any type, and what `wait` accepts).

mod any;
mod completer;
mod signal;
mod waiter;

pub use any::{AnyFuture, Waitable};
pub(crate) use completer::Completer;
pub(crate) use signal::{Kill, Killer, Signal};
pub(crate) use waiter::Waiter;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cf_worker::Never;

use crate::error::{TaskError, Timeout};

use signal::{Callback, run_callback};

/// The outcome a future completes with.
pub(crate) type Outcome<T, E> = Result<T, TaskError<E>>;

/// An outcome as a future keeps it: errors are cold and large, so they are boxed, and a future
/// of a small value stays small.
pub(crate) type Kept<T, E> = Result<T, Box<TaskError<E>>>;

/// Where a future is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Pending,
    Running,
    Cancelled,
    /// Finished with a value.
    Finished,
    /// Finished with an error other than cancellation.
    Failed,
}

impl Status {
    pub(crate) fn is_done(self) -> bool {
        matches!(self, Status::Cancelled | Status::Finished | Status::Failed)
    }
}

pub(crate) struct Core<T, E> {
    pub(super) outcome: OnceLock<Kept<T, E>>,
    pub(super) sync: Signal,
}

// Handles reach the core through these traits rather than the concrete type. Besides hiding the
// value type from `AnyFuture`, this keeps clippy's `mutable_key_type` quiet where users key a map
// by future (the seed's pattern): a future hashes by identity, never by its mutable state, and the
// lint does not look through `dyn`.
pub(crate) trait AnyCore: Send + std::marker::Sync {
    fn signal(&self) -> &Signal;
}

pub(crate) trait CoreApi<T, E>: AnyCore {
    fn outcome(&self) -> &OnceLock<Kept<T, E>>;
    fn take(&mut self) -> Option<Outcome<T, E>>;
}

impl<T: Send + std::marker::Sync, E: Send + std::marker::Sync> AnyCore for Core<T, E> {
    fn signal(&self) -> &Signal {
        &self.sync
    }
}

impl<T: Send + std::marker::Sync, E: Send + std::marker::Sync> CoreApi<T, E> for Core<T, E> {
    fn outcome(&self) -> &OnceLock<Kept<T, E>> {
        &self.outcome
    }
    fn take(&mut self) -> Option<Outcome<T, E>> {
        self.outcome.take().map(|kept| kept.map_err(|e| *e))
    }
}

/// The result of a task that runs elsewhere: Python's `concurrent.futures.Future`.
///
/// A cheap handle: clones share the same task, and equality and hashing go by that identity, so a
/// future can key a map from future to input (the pattern `as_completed` wants). `T` is the task's
/// value, `E` the task's own error type ([`Never`] for a task that cannot fail).
///
/// A future is also a [`std::future::Future`]: `(&fut).await` lends the outcome, `fut.await`
/// (which needs `T: Clone`) clones it, and [`Future::into_result`] moves it out of the last
/// handle.
pub struct Future<T, E = Never> {
    pub(super) core: Arc<dyn CoreApi<T, E>>,
}

impl<T, E> Clone for Future<T, E> {
    fn clone(&self) -> Self {
        Future {
            core: self.core.clone(),
        }
    }
}

impl<T, E> PartialEq for Future<T, E> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.core), Arc::as_ptr(&other.core))
    }
}

impl<T, E> Eq for Future<T, E> {}

impl<T, E> Hash for Future<T, E> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::from_ref(self.core.signal()).hash(state);
    }
}

impl<T, E> fmt::Debug for Future<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.core.signal().status() {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Cancelled => "cancelled",
            Status::Finished => "finished",
            Status::Failed => "failed",
        };
        f.debug_struct("Future")
            .field("id", &std::ptr::from_ref(self.core.signal()))
            .field("state", &state)
            .finish()
    }
}

impl<T: Send + std::marker::Sync + 'static, E: Send + std::marker::Sync + 'static> Future<T, E> {
    /// A new pending future and the completer that finishes it.
    pub(crate) fn pending() -> (Self, Completer<T, E>) {
        let (future, core) = Self::in_pool(None);
        (future, Completer::new(core))
    }

    /// A new pending future of the process pool `pool` (which can stop its running task, and
    /// runs its callbacks and the drop of a value nobody holds), and its core, whose
    /// [`Completer`] finishes it.
    pub(crate) fn in_pool(pool: Option<Killer>) -> (Self, Arc<Core<T, E>>) {
        let core = Arc::new(Core {
            outcome: OnceLock::new(),
            sync: Signal::new(pool),
        });
        (Future { core: core.clone() }, core)
    }
}

impl<T, E> Future<T, E> {
    /// Cancels the task if it has not started; returns whether the future is now cancelled.
    ///
    /// A running or finished task cannot be cancelled (`false`); an already cancelled future stays
    /// so (`true`). Cancelling wakes every [`wait`](crate::wait) and
    /// [`as_completed`](crate::as_completed) that holds this future, at once.
    pub fn cancel(&self) -> bool {
        let core = &self.core;
        let woken = core.signal().publish(
            Status::Cancelled,
            |s| s == Status::Pending,
            || {
                let _ = core.outcome().set(Err(Box::new(TaskError::Cancelled)));
            },
        );
        match woken {
            Some(woken) => {
                woken.wake(None);
                true
            }
            None => core.signal().status() == Status::Cancelled,
        }
    }

    /// Cancels the task if it is pending, or stops it if it is running by killing the worker
    /// process that runs it; blocks until the future is done and returns whether it was
    /// cancelled or killed.
    ///
    /// A killed task is not cancelled ([`cancelled`](Self::cancelled) is false): it fails with
    /// [`TaskError::Killed`], which counts as an exception for
    /// [`ReturnWhen::FirstException`](crate::ReturnWhen::FirstException).
    ///
    /// On a [`ProcessPoolExecutor`](crate::ProcessPoolExecutor) a running task is stopped by
    /// SIGKILL to its worker, which is then replaced; the tasks queued behind it are not lost. A
    /// task sent ahead to a worker and not started yet is asked back instead, and never runs
    /// unless the worker started it first (its outcome is dropped then). Elsewhere (a [`ThreadPoolExecutor`](crate::ThreadPoolExecutor) cannot stop a thread) this is
    /// [`cancel`](Self::cancel) and returns `false` for a running task.
    pub fn kill(&self) -> bool {
        if self.cancel() {
            return true;
        }
        if self.core.signal().status() != Status::Running {
            return false;
        }
        let killer = self.core.signal().pool.clone();
        let Some(pool) = killer.as_ref().and_then(|(pool, _)| pool.upgrade()) else {
            return false;
        };
        pool.kill(killer.map_or(0, |(_, id)| id));
        self.core.signal().wait_until(None);
        self.cancelled() || self.done() && matches!(self.outcome(), Err(TaskError::Killed))
    }

    /// Whether the future was cancelled.
    pub fn cancelled(&self) -> bool {
        self.core.signal().status() == Status::Cancelled
    }

    /// Whether the task is running now (sent to a worker, not yet finished).
    pub fn running(&self) -> bool {
        self.core.signal().status() == Status::Running
    }

    /// Whether the future is done: finished, failed or cancelled.
    pub fn done(&self) -> bool {
        self.core.signal().status().is_done()
    }

    fn outcome(&self) -> Result<&T, &TaskError<E>> {
        match self.core.outcome().get() {
            Some(Ok(value)) => Ok(value),
            Some(Err(error)) => Err(error),
            None => unreachable!("a done future has its outcome"),
        }
    }

    /// Blocks until the task is done; lends its value, or gives a copy of its error.
    ///
    /// The error is owned (errors are cold: it is cloned), so that `?` takes it out of the
    /// function whatever the function returns: `Box<dyn Error>`, `anyhow::Error`, [`cf::Error`].
    /// For an error type that is not `Clone`, [`result_ref`](Self::result_ref) lends both.
    ///
    /// # Errors
    /// Why the task has no value: its own error, a panic, a dead worker, cancellation, ...
    ///
    /// # Examples
    ///
    /// ```
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = cf::ThreadPoolExecutor::new();
    ///     let future = pool.submit(|x: u32| x * 2, 21)?;
    ///     let value = future.result()?;
    ///     assert_eq!(*value, 42);
    ///     Ok(())
    /// }
    /// ```
    ///
    /// [`cf::Error`]: crate::Error
    pub fn result(&self) -> Result<&T, TaskError<E>>
    where
        E: Clone,
    {
        self.result_ref().map_err(TaskError::clone)
    }

    /// Blocks until the task is done and lends its outcome, error included (no `E: Clone`).
    ///
    /// # Errors
    /// As [`result`](Self::result).
    pub fn result_ref(&self) -> Result<&T, &TaskError<E>> {
        self.core.signal().wait_until(None);
        self.outcome()
    }

    /// Like [`result`](Self::result), giving up after `timeout`: then it fails with
    /// [`TaskError::Timeout`] and the future stays as it is (pending or running).
    ///
    /// # Errors
    /// As [`result`](Self::result), or [`TaskError::Timeout`] when the task is not done in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use cf::TaskError;
    ///
    /// let pool = cf::ThreadPoolExecutor::new();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let future = pool.submit(move || rx.recv().is_ok(), ()).unwrap();
    /// assert_eq!(future.result_timeout(Duration::from_millis(10)), Err(TaskError::Timeout));
    /// tx.send(()).unwrap();
    /// assert_eq!(future.result_timeout(Duration::from_secs(60)), Ok(&true));
    /// ```
    pub fn result_timeout(&self, timeout: Duration) -> Result<&T, TaskError<E>>
    where
        E: Clone,
    {
        if self.core.signal().wait_until(deadline(Some(timeout))) {
            self.outcome().map_err(TaskError::clone)
        } else {
            Err(TaskError::Timeout)
        }
    }

    /// Blocks until the task is done; its error, or `None` when it produced a value.
    pub fn exception(&self) -> Option<TaskError<E>>
    where
        E: Clone,
    {
        self.result().err()
    }

    /// Like [`exception`](Self::exception), giving up after `timeout`.
    ///
    /// # Errors
    /// [`Timeout`] when the task is not done in time.
    pub fn exception_timeout(&self, timeout: Duration) -> Result<Option<TaskError<E>>, Timeout>
    where
        E: Clone,
    {
        if self.core.signal().wait_until(deadline(Some(timeout))) {
            Ok(self.outcome().err().cloned())
        } else {
            Err(Timeout)
        }
    }

    /// Blocks until done, or until `timeout` passes; whether the future is done.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.core.signal().wait_until(deadline(Some(timeout)))
    }

    /// Runs `f` with this future once it is done: at once (in this thread) if it already is,
    /// otherwise in the thread that completes it — except on a
    /// [`ProcessPoolExecutor`](crate::ProcessPoolExecutor), whose I/O thread runs no user code:
    /// there the callbacks of the futures it completes run on the pool's completion thread
    /// (`cf-pool-done`), one at a time, in the order the futures completed. A callback there may
    /// block, or wait for another task of the same pool: it delays only the callbacks behind it,
    /// never a task. A future cancelled by [`cancel`](Self::cancel) runs its callbacks in the
    /// cancelling thread.
    ///
    /// A panicking callback is caught and reported to the handler set with
    /// [`set_callback_panic_handler`](crate::set_callback_panic_handler); it never
    /// reaches the pool.
    pub fn add_done_callback(&self, f: impl FnOnce(&Self) + Send + 'static)
    where
        T: Send + std::marker::Sync + 'static,
        E: Send + std::marker::Sync + 'static,
    {
        let me = self.clone();
        let callback: Callback = Box::new(move || f(&me));
        let mut state = self.core.signal().lock();
        if state.status.is_done() {
            drop(state);
            run_callback(callback);
        } else {
            state.add_callback(callback);
        }
    }

    /// Blocks until done and moves the outcome out of this, the last handle: no `Clone` needed.
    ///
    /// A value can move out only when no other handle to the future is left (a clone, a key of
    /// a map, an [`as_completed`](crate::as_completed) that has not yielded it yet). While one
    /// is, this fails with [`TaskError::Shared`] and the outcome stays with the other handles,
    /// untouched. Drop them first, or borrow with [`result`](Self::result), or clone with
    /// `fut.await`.
    ///
    /// # Errors
    /// As [`result`](Self::result); [`TaskError::Shared`] while other handles exist.
    ///
    /// # Examples
    ///
    /// ```
    /// struct NotClone(u32);
    ///
    /// let pool = cf::ThreadPoolExecutor::new();
    /// let future = pool.submit(|x: u32| NotClone(x), 7).unwrap();
    /// let other = future.clone();
    /// let future = match future.into_result() {
    ///     Err(cf::TaskError::Shared) => other, // `other` still holds the value
    ///     _ => unreachable!(),
    /// };
    /// assert_eq!(future.into_result().ok().map(|v| v.0), Some(7));
    /// ```
    pub fn into_result(self) -> Outcome<T, E> {
        self.core.signal().wait_until(None);
        if self.cancelled() {
            // The pool may still hold its completer (the job is queued): nothing to move.
            return Err(TaskError::Cancelled);
        }
        self.try_take().unwrap_or(Err(TaskError::Shared))
    }

    /// Moves the outcome out of a done future whose only handle this is.
    fn try_take(self) -> Result<Outcome<T, E>, Self> {
        let mut me = self;
        if Arc::get_mut(&mut me.core).is_none() {
            // The other handle may be the completer's, about to go: it holds this lock until it
            // has let go.
            drop(completer::releasing(me.core.signal()));
        }
        match Arc::get_mut(&mut me.core) {
            Some(core) => Ok(core.take().expect("a done future has its outcome")),
            None => Err(me),
        }
    }

    /// Blocks until done and moves the outcome out of a future that nobody else holds (as `map`
    /// holds its futures).
    pub(crate) fn take(self, deadline: Option<Instant>) -> Outcome<T, E> {
        if !self.core.signal().wait_until(deadline) {
            self.cancel();
            return Err(TaskError::Timeout);
        }
        if self.cancelled() {
            return Err(TaskError::Cancelled);
        }
        match self.try_take() {
            Ok(outcome) => outcome,
            Err(_) => unreachable!("completers release a future before publishing that it is done"),
        }
    }
}

pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    // A timeout too large to add is no deadline at all.
    timeout.and_then(|t| Instant::now().checked_add(t))
}

impl<'a, T, E: Clone> std::future::IntoFuture for &'a Future<T, E> {
    type Output = Result<&'a T, TaskError<E>>;
    type IntoFuture = Lend<'a, T, E>;

    fn into_future(self) -> Self::IntoFuture {
        Lend { future: self }
    }
}

/// The [`std::future::Future`] that `(&fut).await` polls: the value lent, the error cloned, as
/// [`Future::result`].
#[derive(Debug)]
pub struct Lend<'a, T, E> {
    future: &'a Future<T, E>,
}

impl<'a, T, E: Clone> std::future::Future for Lend<'a, T, E> {
    type Output = Result<&'a T, TaskError<E>>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.future;
        if future.core.signal().poll_done(cx) {
            Poll::Ready(future.outcome().map_err(TaskError::clone))
        } else {
            Poll::Pending
        }
    }
}

impl<T: Clone, E: Clone> std::future::Future for Future<T, E> {
    type Output = Outcome<T, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.get_mut();
        if !me.core.signal().poll_done(cx) {
            return Poll::Pending;
        }
        // The future stays usable after it is polled (`select!` on `&mut fut`, then
        // `fut.result()`), so the outcome is cloned, never moved out: `into_result` moves.
        Poll::Ready(me.outcome().cloned().map_err(TaskError::clone))
    }
}

// A `Future` holds no self-references: moving it while polled is fine.
impl<T, E> Unpin for Future<T, E> {}

#[cfg(test)]
mod test;
