//! What both executors share: the [`Executor`] and [`Submit`] traits.

use cf_worker::{Item, Never};

use crate::error::{ErrorKind, SubmitError};
use crate::future::Future;

/// An executor: Python's `concurrent.futures.Executor`.
pub trait Executor {
    /// Stops taking work. With `wait`, blocks until every submitted task is done and the workers
    /// have exited; with `cancel_futures`, cancels the tasks that have not started. Idempotent.
    fn shutdown(&self, wait: bool, cancel_futures: bool);
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
