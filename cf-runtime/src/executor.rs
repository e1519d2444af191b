//! What both executors share: the [`Executor`] and [`Submit`] traits.

use cf_worker::{Item, Never};

use crate::error::{ErrorKind, SubmitError};
use crate::future::Future;

/// An executor: Python's `concurrent.futures.Executor`.
pub trait Executor {
    /// Stops taking work as `how` says: Python's `shutdown(wait, cancel_futures)`, by name.
    /// Idempotent. See [`Shutdown`].
    fn shutdown_with(&self, how: Shutdown);

    /// Stops taking work and blocks until every submitted task is done and the workers have
    /// exited: Python's `shutdown()`, the same as dropping the executor.
    fn shutdown(&self) {
        self.shutdown_with(Shutdown::default());
    }

    /// Stops taking work and returns a future that completes once every submitted task is done
    /// and the workers have exited: [`shutdown`](Self::shutdown) for async code, which blocks
    /// no thread while it waits.
    fn shutdown_async(&self) -> ShutdownFuture;
}

/// What `shutdown_async` returns: completes once the executor has shut down (every submitted
/// task done, the workers gone), without blocking a thread while it waits.
///
/// The shutdown itself starts when `shutdown_async` is called, not when this is first polled;
/// dropping this does not undo it. Once it has completed, dropping the executor does not block.
#[must_use = "the shutdown has started; await this to know when it has finished"]
#[derive(Debug)]
pub struct ShutdownFuture {
    /// Completed (or abandoned) when the executor's last thread ends.
    end: Future<(), Never>,
}

impl ShutdownFuture {
    pub(crate) fn new(end: Future<(), Never>) -> Self {
        ShutdownFuture { end }
    }
}

impl std::future::Future for ShutdownFuture {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        // Abandoned (the thread that would complete it panicked) is an end too.
        std::pin::Pin::new(&mut self.end).poll(cx).map(|_| ())
    }
}

/// How an executor shuts down: the arguments of Python's `shutdown`, by name.
///
/// The default is Python's: `wait: true, cancel_futures: false`.
///
/// # Examples
///
/// ```
/// use cf::{Executor, Shutdown};
///
/// let pool = cf::ThreadPoolExecutor::new();
/// // Return at once, and cancel the tasks that have not started.
/// pool.shutdown_with(Shutdown { wait: false, cancel_futures: true });
/// // The rest as Python's default.
/// pool.shutdown_with(Shutdown { cancel_futures: true, ..Shutdown::default() });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shutdown {
    /// Block until every submitted task is done and the workers have exited.
    pub wait: bool,
    /// Cancel the tasks that have not started (they are cancelled when the call returns).
    pub cancel_futures: bool,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            wait: true,
            cancel_futures: false,
        }
    }
}

/// An executor that can run `C` on arguments `A`.
pub trait Submit<C, A, M>: Executor {
    /// What the task produces.
    type Output;
    /// The task's own error.
    type Error;
    /// Schedules `f(args)` and returns its future.
    ///
    /// # Errors
    /// The executor is shut down or cannot run `f`; the arguments come back.
    fn submit(&self, f: C, args: A) -> Result<Future<Self::Output, Self::Error>, SubmitError<A>>;
    /// The name of `f` in errors and logs.
    fn name_of(&self, f: &C) -> &'static str;
    /// Submits `f` on each of `args` as one unit, if this executor can (a process pool sends
    /// them in one frame); otherwise gives the arguments back. Not public API: `map` uses it.
    #[doc(hidden)]
    fn __submit_chunk(&self, f: &C, args: Vec<A>) -> Chunked<Self::Output, Self::Error, A> {
        let _ = f;
        Chunked::Unsupported(args)
    }
}

/// What [`Submit::__submit_chunk`] did. Not public API.
#[doc(hidden)]
#[derive(Debug)]
pub enum Chunked<O, E, A> {
    /// One future for the outcomes of every input, in order.
    Submitted(Future<Vec<Item<O, E>>, Never>),
    /// The executor refused the chunk; why.
    Refused(crate::Error),
    /// The executor does not run chunks: submit one by one.
    Unsupported(Vec<A>),
}

pub(crate) fn shutdown_error<A>(args: A) -> SubmitError<A> {
    SubmitError::new(args, ErrorKind::Shutdown)
}
