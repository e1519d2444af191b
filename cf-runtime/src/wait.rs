//! [`wait`] and [`as_completed`]: blocking on many futures at once.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::future::{Signal, Status, Waitable, Waiter, deadline};

/// When [`wait`] returns: Python's `return_when`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// As soon as any future finishes or is cancelled (`FIRST_COMPLETED`).
    FirstCompleted,
    /// As soon as any future finishes with an error; a cancelled future is not an error. Without
    /// one, the same as [`AllCompleted`](Self::AllCompleted) (`FIRST_EXCEPTION`).
    FirstException,
    /// When every future is done (`ALL_COMPLETED`, the default).
    #[default]
    AllCompleted,
}

/// What [`wait`] returns: Python's `DoneAndNotDoneFutures`.
pub struct DoneAndNotDone<F> {
    /// The futures that are done: finished, failed or cancelled.
    pub done: HashSet<F>,
    /// The others.
    pub not_done: HashSet<F>,
}

impl<F> fmt::Debug for DoneAndNotDone<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoneAndNotDone")
            .field("done", &self.done.len())
            .field("not_done", &self.not_done.len())
            .finish()
    }
}

/// The distinct futures of `futures`, in first-seen order, with their state.
fn distinct<W: Waitable>(futures: impl IntoIterator<Item = W>) -> Vec<(W::Handle, Arc<Signal>)> {
    let mut seen = HashSet::new();
    futures
        .into_iter()
        .filter(|w| seen.insert(Arc::as_ptr(w.__sync())))
        .map(|w| (w.handle(), w.__sync().clone()))
        .collect()
}

/// Waits for the futures to reach the state `return_when` names, or for `timeout`.
///
/// Returns the done and not-done sets; on timeout, as they stand. Duplicates count once. Futures
/// from any executor (and any type, through [`AnyFuture`](crate::AnyFuture)) can be mixed.
///
/// ```
/// # use cf::{wait, ReturnWhen, ThreadPoolExecutor};
/// let pool = ThreadPoolExecutor::new();
/// let futures: Vec<_> = (0..4).map(|i| pool.submit(move |x: i32| x * 2, i).unwrap()).collect();
/// let r = wait(&futures, None, ReturnWhen::AllCompleted);
/// assert_eq!(r.done.len(), 4);
/// assert!(r.not_done.is_empty());
/// ```
pub fn wait<W: Waitable>(
    futures: impl IntoIterator<Item = W>,
    timeout: impl Into<Option<Duration>>,
    return_when: ReturnWhen,
) -> DoneAndNotDone<W::Handle> {
    let deadline = deadline(timeout.into());
    let all = distinct(futures);
    let waiter = Arc::new(Waiter::default());
    let mut done = vec![false; all.len()];
    let mut done_count = 0;
    let mut failed = false;
    for (key, (_, sync)) in all.iter().enumerate() {
        let status = sync.register(&waiter, key);
        if status.is_done() {
            done[key] = true;
            done_count += 1;
            failed |= status == Status::Failed;
        }
    }
    // As Python: with every future done (or none given), there is nothing to wait for.
    let satisfied = |done_count: usize, failed: bool| match return_when {
        _ if done_count == all.len() => true,
        ReturnWhen::FirstCompleted => done_count > 0,
        ReturnWhen::FirstException => failed || done_count == all.len(),
        ReturnWhen::AllCompleted => done_count == all.len(),
    };
    while !satisfied(done_count, failed) {
        let Some(keys) = waiter.wait(deadline) else {
            break;
        };
        for key in keys {
            if !std::mem::replace(&mut done[key], true) {
                done_count += 1;
                failed |= all[key].1.status() == Status::Failed;
            }
        }
    }
    let mut result = DoneAndNotDone {
        done: HashSet::new(),
        not_done: HashSet::new(),
    };
    for (key, (handle, sync)) in all.into_iter().enumerate() {
        sync.unregister(&waiter);
        // A future may finish between the last wake-up and now: report what is true now.
        if done[key] || sync.status().is_done() {
            result.done.insert(handle);
        } else {
            result.not_done.insert(handle);
        }
    }
    result
}

/// Yields the futures as they complete: those already done first, then each as it finishes or
/// is cancelled. Each distinct future comes once.
///
/// With a `timeout`, iteration stops when it runs out, and [`AsCompleted::timed_out`] tells that
/// it did (Python raises `TimeoutError` there); the futures not yet done are in
/// [`AsCompleted::not_done`].
///
/// ```
/// # use cf::{as_completed, ThreadPoolExecutor};
/// let pool = ThreadPoolExecutor::new();
/// let futures: Vec<_> = (0..4).map(|i| pool.submit(move |x: i32| x * 2, i).unwrap()).collect();
/// let mut total = 0;
/// for fut in as_completed(&futures, None) {
///     total += fut.result().unwrap();
/// }
/// assert_eq!(total, 12);
/// ```
pub fn as_completed<W: Waitable>(
    futures: impl IntoIterator<Item = W>,
    timeout: impl Into<Option<Duration>>,
) -> AsCompleted<W::Handle> {
    let deadline = deadline(timeout.into());
    let all = distinct(futures);
    let waiter = Arc::new(Waiter::default());
    let mut ready = VecDeque::new();
    let mut pending = 0;
    let mut slots = Vec::with_capacity(all.len());
    for (key, (handle, sync)) in all.into_iter().enumerate() {
        if sync.register(&waiter, key).is_done() {
            ready.push_back(key);
        } else {
            pending += 1;
        }
        slots.push(Some((handle, sync)));
    }
    AsCompleted {
        slots,
        ready,
        pending,
        waiter,
        deadline,
        timed_out: false,
    }
}

/// The iterator [`as_completed`] returns.
pub struct AsCompleted<F> {
    slots: Vec<Option<(F, Arc<Signal>)>>,
    ready: VecDeque<usize>,
    pending: usize,
    waiter: Arc<Waiter>,
    deadline: Option<Instant>,
    timed_out: bool,
}

impl<F> AsCompleted<F> {
    /// Whether iteration stopped because the timeout ran out.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// The futures not yielded yet.
    pub fn not_done(&self) -> impl Iterator<Item = &F> {
        self.slots.iter().flatten().map(|(f, _)| f)
    }
}

impl<F> Iterator for AsCompleted<F> {
    type Item = F;

    fn next(&mut self) -> Option<F> {
        loop {
            if let Some(handle) = self.take_ready() {
                return Some(handle);
            }
            if self.pending == 0 || self.timed_out {
                return None;
            }
            match self.waiter.wait(self.deadline) {
                Some(keys) => {
                    self.pending -= keys.len();
                    self.ready.extend(keys);
                }
                None => {
                    self.timed_out = true;
                    return None;
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.ready.len() + self.pending;
        (
            if self.timed_out { 0 } else { self.ready.len() },
            Some(left),
        )
    }
}

impl<F> AsCompleted<F> {
    /// The next future to yield: one already known to be done, or, once all of those are out,
    /// a new batch from the waiter.
    fn take_ready(&mut self) -> Option<F> {
        while let Some(key) = self.ready.pop_front() {
            if let Some((handle, sync)) = self.slots[key].take() {
                sync.unregister(&self.waiter);
                return Some(handle);
            }
        }
        None
    }
}

#[cfg(feature = "stream")]
impl<F> AsCompleted<F> {
    /// The same futures as a [`Stream`](futures_core::Stream), for async code: each comes once,
    /// those already done first, then in completion order, and the polling task is woken as
    /// each finishes. A stream has no timer of its own, so the `timeout` given to
    /// [`as_completed`] does not apply: put your runtime's timeout around it.
    ///
    /// ```
    /// use futures::StreamExt;
    ///
    /// # fn main() {
    /// let pool = cf::ThreadPoolExecutor::new();
    /// let futures: Vec<_> = (0..3).map(|i| pool.submit(move |x: u32| x + 1, i).unwrap()).collect();
    /// let sum = futures::executor::block_on(async {
    ///     let mut total = 0;
    ///     let mut done = cf::as_completed(&futures, None).into_stream();
    ///     while let Some(future) = done.next().await {
    ///         total += future.result().unwrap();
    ///     }
    ///     total
    /// });
    /// assert_eq!(sum, 6);
    /// # }
    /// ```
    pub fn into_stream(self) -> CompletedStream<F> {
        CompletedStream { inner: self }
    }
}

/// The [`Stream`](futures_core::Stream) that [`AsCompleted::into_stream`] returns.
#[cfg(feature = "stream")]
#[derive(Debug)]
pub struct CompletedStream<F> {
    inner: AsCompleted<F>,
}

#[cfg(feature = "stream")]
impl<F> Unpin for CompletedStream<F> {}

#[cfg(feature = "stream")]
impl<F> futures_core::Stream for CompletedStream<F> {
    type Item = F;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<F>> {
        let me = &mut self.get_mut().inner;
        loop {
            if let Some(handle) = me.take_ready() {
                return std::task::Poll::Ready(Some(handle));
            }
            if me.pending == 0 {
                return std::task::Poll::Ready(None);
            }
            match me.waiter.poll(cx) {
                std::task::Poll::Ready(keys) => {
                    me.pending -= keys.len();
                    me.ready.extend(keys);
                }
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.inner.ready.len() + self.inner.pending;
        (self.inner.ready.len(), Some(left))
    }
}

impl<F> Drop for AsCompleted<F> {
    fn drop(&mut self) {
        for (_, sync) in self.slots.iter().flatten() {
            sync.unregister(&self.waiter);
        }
    }
}

impl<F> fmt::Debug for AsCompleted<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &(self.ready.len() + self.pending))
            .field("timed_out", &self.timed_out)
            .finish()
    }
}
