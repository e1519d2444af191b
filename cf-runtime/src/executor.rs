//! What both executors share: the [`Executor`] and [`Submit`] traits and the lazy [`Map`].

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{ErrorKind, SubmitError, TaskError};
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
}

/// The iterator `map` returns: results in input order, submitted lazily.
///
/// At most `buffersize` tasks are in flight ahead of the consumer (default: twice the number of
/// workers, at least 16), so an endless input works and memory stays bounded. `chunksize` hands
/// inputs to the executor that many at a time.
pub struct Map<'a, S, C, I: Iterator, M>
where
    S: Submit<C, I::Item, M>,
{
    executor: &'a S,
    f: C,
    args: I,
    in_flight: VecDeque<Result<Future<S::Output, S::Error>, (&'static str, String)>>,
    buffersize: usize,
    chunksize: usize,
    /// When results stop being waited for (`timeout`).
    deadline: Option<Instant>,
    /// The deadline passed: nothing more comes.
    expired: bool,
    created: Instant,
    _marker: std::marker::PhantomData<fn() -> M>,
}

impl<'a, S, C, I, M> Map<'a, S, C, I, M>
where
    S: Submit<C, I::Item, M>,
    C: Clone,
    I: Iterator,
{
    pub(crate) fn new(executor: &'a S, f: C, args: I, workers: usize) -> Self {
        Map {
            executor,
            f,
            args,
            in_flight: VecDeque::new(),
            buffersize: (2 * workers).max(16),
            chunksize: 1,
            deadline: None,
            expired: false,
            created: Instant::now(),
            _marker: std::marker::PhantomData,
        }
    }

    /// How many tasks may be in flight ahead of the consumer (Python 3.14's `buffersize`).
    ///
    /// # Panics
    /// If `n` is zero.
    #[must_use]
    pub fn buffersize(mut self, n: usize) -> Self {
        assert!(n > 0, "buffersize must be at least 1");
        self.buffersize = n;
        self
    }

    /// How many inputs are handed to the executor at a time (Python's `chunksize`).
    ///
    /// # Panics
    /// If `n` is zero.
    #[must_use]
    pub fn chunksize(mut self, n: usize) -> Self {
        assert!(n > 0, "chunksize must be at least 1");
        self.chunksize = n;
        self
    }

    /// Gives up on results not ready `limit` after the call to `map` (Python's `timeout`): the
    /// first result late past it is `Err(TaskError::Timeout)`, and iteration ends there (the
    /// tasks not yet started are cancelled).
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.deadline = self.created.checked_add(limit);
        self
    }

    fn fill(&mut self) {
        while self.in_flight.len() + self.chunksize <= self.buffersize.max(self.chunksize) {
            let mut submitted = 0;
            for args in self.args.by_ref().take(self.chunksize) {
                let future = self
                    .executor
                    .submit(self.f.clone(), args)
                    .map_err(|e| (self.executor.name_of(&self.f), e.to_string()));
                self.in_flight.push_back(future);
                submitted += 1;
            }
            if submitted < self.chunksize {
                return;
            }
        }
    }
}

impl<S, C, I, M> Iterator for Map<'_, S, C, I, M>
where
    S: Submit<C, I::Item, M>,
    C: Clone,
    I: Iterator,
{
    type Item = Result<S::Output, TaskError<S::Error>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.expired {
            return None;
        }
        self.fill();
        let next = self.in_flight.pop_front()?;
        Some(match next {
            Ok(future) => {
                let outcome = future.take(self.deadline);
                if matches!(outcome, Err(TaskError::Timeout)) {
                    self.expired = true;
                    for future in self.in_flight.drain(..).flatten() {
                        future.cancel();
                    }
                }
                outcome
            }
            Err((task, message)) => Err(TaskError::Pool {
                task: task.to_owned(),
                message,
            }),
        })
    }
}

impl<S, C, I, M> Drop for Map<'_, S, C, I, M>
where
    S: Submit<C, I::Item, M>,
    I: Iterator,
{
    fn drop(&mut self) {
        // Python cancels the futures a dropped map iterator still holds.
        for future in self.in_flight.iter().flatten() {
            future.cancel();
        }
    }
}

impl<S, C, I, M> fmt::Debug for Map<'_, S, C, I, M>
where
    S: Submit<C, I::Item, M>,
    I: Iterator,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("in_flight", &self.in_flight.len())
            .field("buffersize", &self.buffersize)
            .field("chunksize", &self.chunksize)
            .finish_non_exhaustive()
    }
}

pub(crate) fn shutdown_error<A>(args: A) -> SubmitError<A> {
    SubmitError::new(args, ErrorKind::Shutdown)
}
