//! [`Map`]: the lazy iterator that `map` returns, results in input order.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use cf_worker::{Item, Never};

use crate::error::{Error, TaskError};
use crate::executor::{Chunked, Submit};
use crate::future::Future;

/// Inputs in flight in a [`Map`], in input order.
enum Slot<O, E> {
    /// One input, submitted alone (or refused, and why).
    One(Result<Future<O, E>, TaskError<E>>),
    /// A chunk of `left` more inputs, submitted as one job.
    Chunk {
        future: Option<Future<Vec<Item<O, E>>, Never>>,
        items: std::vec::IntoIter<Item<O, E>>,
        /// The job's own failure (a dead worker...), which every input of the chunk shares.
        error: Option<TaskError<Never>>,
        left: usize,
        task: &'static str,
    },
    /// A chunk the executor refused, and why.
    Refused {
        left: usize,
        error: TaskError<Never>,
    },
}

impl<O, E> Slot<O, E> {
    fn cancel(&self) {
        match self {
            Slot::One(Ok(future)) => {
                future.cancel();
            }
            Slot::Chunk {
                future: Some(future),
                ..
            } => {
                future.cancel();
            }
            _ => {}
        }
    }
}

/// The iterator `map` returns: results in input order, submitted lazily.
///
/// At most `buffersize` inputs are in flight ahead of the consumer (default: twice the number of
/// workers, at least 16, times the chunk size), so an endless input works and memory stays
/// bounded. With a `chunksize` above one, a process pool sends that many inputs to a worker as
/// one job (one frame each way); a panic still fails only its own input, but a worker that dies
/// fails the whole chunk, as in Python. A thread pool submits them one by one.
pub struct Map<'a, S, C, I: Iterator, M>
where
    S: Submit<C, I::Item, M>,
{
    executor: &'a S,
    f: C,
    args: I,
    in_flight: VecDeque<Slot<S::Output, S::Error>>,
    /// Inputs in `in_flight`.
    in_flight_inputs: usize,
    /// Inputs in flight at most; `None`: `jobs` chunks.
    buffersize: Option<usize>,
    /// Jobs in flight by default (twice the workers, at least 16).
    jobs: usize,
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
            in_flight_inputs: 0,
            buffersize: None,
            jobs: (2 * workers).max(16),
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
        self.buffersize = Some(n);
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

    fn submit_one(&mut self, args: I::Item) {
        let future = self
            .executor
            .submit(self.f.clone(), args)
            .map_err(|e| Error::from(e).into_task_error(self.executor.name_of(&self.f)));
        self.in_flight.push_back(Slot::One(future));
        self.in_flight_inputs += 1;
    }

    fn fill(&mut self) {
        let limit = self
            .buffersize
            .unwrap_or(self.jobs * self.chunksize)
            .max(self.chunksize);
        while self.in_flight_inputs + self.chunksize <= limit {
            let batch: Vec<I::Item> = self.args.by_ref().take(self.chunksize).collect();
            let n = batch.len();
            if n == 0 {
                return;
            }
            let task = self.executor.name_of(&self.f);
            let slot = if n > 1 {
                match self.executor.__submit_chunk(&self.f, batch) {
                    Chunked::Submitted(future) => Some(Slot::Chunk {
                        future: Some(future),
                        items: Vec::new().into_iter(),
                        error: None,
                        left: n,
                        task,
                    }),
                    Chunked::Refused(error) => Some(Slot::Refused {
                        left: n,
                        error: error.into_task_error(task),
                    }),
                    Chunked::Unsupported(batch) => {
                        for args in batch {
                            self.submit_one(args);
                        }
                        None
                    }
                }
            } else {
                batch.into_iter().for_each(|args| self.submit_one(args));
                None
            };
            if let Some(slot) = slot {
                self.in_flight.push_back(slot);
                self.in_flight_inputs += n;
            }
            if n < self.chunksize {
                return;
            }
        }
    }

    /// Gives up: the deadline passed. Nothing more is yielded and what is in flight is cancelled.
    fn expire(&mut self) {
        self.expired = true;
        for slot in self.in_flight.drain(..) {
            slot.cancel();
        }
        self.in_flight_inputs = 0;
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
        let deadline = self.deadline;
        let outcome = match self.in_flight.front_mut()? {
            Slot::One(_) => {
                let Some(Slot::One(one)) = self.in_flight.pop_front() else {
                    unreachable!()
                };
                self.in_flight_inputs -= 1;
                match one {
                    Ok(future) => future.take(deadline),
                    Err(error) => Err(error),
                }
            }
            Slot::Refused { left, error } => {
                *left -= 1;
                let error = error.clone().map_failed(|never| match never {});
                if *left == 0 {
                    self.in_flight.pop_front();
                }
                self.in_flight_inputs -= 1;
                Err(error)
            }
            Slot::Chunk {
                future,
                items,
                error,
                left,
                task,
            } => {
                if let Some(future) = future.take() {
                    match future.take(deadline) {
                        Ok(outcomes) => *items = outcomes.into_iter(),
                        Err(TaskError::Timeout) => {
                            self.expire();
                            return Some(Err(TaskError::Timeout));
                        }
                        Err(e) => *error = Some(e),
                    }
                }
                let outcome = match (&error, items.next()) {
                    (Some(e), _) => Err(e.clone().map_failed(|never| match never {})),
                    (None, Some(Item::Ok(value))) => Ok(value),
                    (None, Some(Item::Failed(e))) => Err(TaskError::Failed(e)),
                    (None, Some(Item::Panicked(info))) => Err(TaskError::Panicked(info)),
                    (None, None) => Err(TaskError::MissingOutcome {
                        task: (*task).to_owned(),
                    }),
                };
                *left -= 1;
                if *left == 0 {
                    self.in_flight.pop_front();
                }
                self.in_flight_inputs -= 1;
                outcome
            }
        };
        if matches!(outcome, Err(TaskError::Timeout)) {
            self.expire();
        }
        Some(outcome)
    }
}

impl<S, C, I, M> Drop for Map<'_, S, C, I, M>
where
    S: Submit<C, I::Item, M>,
    I: Iterator,
{
    fn drop(&mut self) {
        // Python cancels the futures a dropped map iterator still holds.
        for slot in &self.in_flight {
            slot.cancel();
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
            .field(
                "buffersize",
                &self.buffersize.unwrap_or(self.jobs * self.chunksize),
            )
            .field("chunksize", &self.chunksize)
            .finish_non_exhaustive()
    }
}
