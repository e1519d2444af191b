//! [`wait`] and [`as_completed`]: blocking on many futures at once.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cf_worker::Never;

use crate::error::Timeout;
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

/// Registers `waiter` on the distinct futures of `futures` and returns their handles in
/// first-seen order, each under its index as key, with how to reach their state; `seen` hears
/// each key and the status it had. A future given twice is found by the waiter it holds already
/// (no set of the futures is built: at a million futures, hashing them cost more than all the
/// rest of the registration).
fn register_all<W: Waitable>(
    futures: impl IntoIterator<Item = W>,
    waiter: &Arc<Waiter>,
    mut seen: impl FnMut(usize, Status),
) -> (Vec<F<W>>, SignalOf<W::Handle>) {
    let futures = futures.into_iter();
    let mut all = Vec::with_capacity(futures.size_hint().0);
    for w in futures {
        let key = all.len();
        if let Some(status) = w.__signal().register(waiter, key) {
            seen(key, status);
            all.push(Some(w.handle()));
        }
    }
    (all, signal_of::<W::Handle>)
}

/// A future's handle, until it is given back.
type F<W> = Option<<W as Waitable>::Handle>;

/// How to reach the state of a future from its handle, kept beside the handles so that the
/// types holding them need no bound.
type SignalOf<F> = fn(&F) -> &Signal;

fn signal_of<W: Waitable>(w: &W) -> &Signal {
    w.__signal()
}

/// Waits for the futures to reach the state `return_when` names, or for `timeout`.
///
/// Returns the done and not-done sets; on timeout, as they stand. Duplicates count once. Futures
/// from any executor (and any type, through [`AnyFuture`](crate::AnyFuture)) can be mixed.
/// Blocking: from async code, use [`wait_async`].
///
/// # Examples
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
    let mut waiting = Waiting::new(futures, return_when);
    while !waiting.satisfied() {
        let outstanding = waiting.all.len() - waiting.done_count;
        if !waiting
            .waiter
            .wait(deadline, &mut waiting.keys, outstanding)
        {
            break;
        }
        waiting.mark();
    }
    waiting.finish()
}

/// [`wait`] for async code: a future that completes when the futures reach the state
/// `return_when` names, and blocks no thread meanwhile.
///
/// It has no timeout of its own: put your runtime's timeout around it (dropping it stops the
/// wait and leaves the futures alone).
///
/// # Examples
///
/// ```
/// # use cf::{wait_async, ReturnWhen, ThreadPoolExecutor};
/// let pool = ThreadPoolExecutor::new();
/// let futures: Vec<_> = (0..4).map(|i| pool.submit(move |x: i32| x * 2, i).unwrap()).collect();
/// let r = futures::executor::block_on(wait_async(&futures, ReturnWhen::AllCompleted));
/// assert_eq!(r.done.len(), 4);
/// ```
pub fn wait_async<W: Waitable>(
    futures: impl IntoIterator<Item = W>,
    return_when: ReturnWhen,
) -> WaitFuture<W::Handle> {
    WaitFuture {
        waiting: Some(Waiting::new(futures, return_when)),
    }
}

/// The future [`wait_async`] returns.
#[must_use = "a future does nothing unless awaited"]
pub struct WaitFuture<F> {
    /// `None` once it has completed.
    waiting: Option<Waiting<F>>,
}

impl<F> fmt::Debug for WaitFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitFuture")
            .field("done", &self.waiting.as_ref().map(|w| w.done_count))
            .finish_non_exhaustive()
    }
}

impl<F> Unpin for WaitFuture<F> {}

impl<F: Eq + Hash> std::future::Future for WaitFuture<F> {
    type Output = DoneAndNotDone<F>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let waiting = self
            .waiting
            .as_mut()
            .expect("a `WaitFuture` is not polled after it completed");
        while !waiting.satisfied() {
            match waiting.waiter.poll(cx, &mut waiting.keys) {
                Poll::Ready(()) => waiting.mark(),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(self.waiting.take().expect("checked above").finish())
    }
}

/// The futures a [`wait`] or [`wait_async`] watches, and which of them are done.
struct Waiting<F> {
    all: Vec<Option<F>>,
    signal_of: SignalOf<F>,
    waiter: Arc<Waiter>,
    /// The keys of the last wake-up.
    keys: Vec<usize>,
    done: Vec<bool>,
    done_count: usize,
    failed: bool,
    return_when: ReturnWhen,
}

impl<F> Waiting<F> {
    /// Registers on the distinct futures of `futures`, noting those already done.
    fn new<W: Waitable<Handle = F>>(
        futures: impl IntoIterator<Item = W>,
        return_when: ReturnWhen,
    ) -> Self {
        let waiter = Arc::new(Waiter::default());
        let mut done = Vec::new();
        let mut done_count = 0;
        let mut failed = false;
        let (all, signal_of) = register_all(futures, &waiter, |_, status| {
            done.push(status.is_done());
            if status.is_done() {
                done_count += 1;
                failed |= status == Status::Failed;
            }
        });
        Waiting {
            all,
            signal_of,
            waiter,
            keys: Vec::new(),
            done,
            done_count,
            failed,
            return_when,
        }
    }

    /// Whether the futures are where `return_when` asks; as Python, with every future done (or
    /// none given) there is nothing to wait for.
    fn satisfied(&self) -> bool {
        match self.return_when {
            _ if self.done_count == self.all.len() => true,
            ReturnWhen::FirstCompleted => self.done_count > 0,
            ReturnWhen::FirstException => self.failed,
            ReturnWhen::AllCompleted => false,
        }
    }

    /// Notes the futures whose keys the waiter gave in `self.keys`.
    fn mark(&mut self) {
        for &key in &self.keys {
            if !std::mem::replace(&mut self.done[key], true) {
                self.done_count += 1;
                self.failed |= self.all[key]
                    .as_ref()
                    .is_some_and(|h| (self.signal_of)(h).status() == Status::Failed);
            }
        }
    }

    /// The done and not-done sets as they stand now.
    fn finish(mut self) -> DoneAndNotDone<F>
    where
        F: Eq + Hash,
    {
        let mut result = DoneAndNotDone {
            done: HashSet::new(),
            not_done: HashSet::new(),
        };
        let signal_of = self.signal_of;
        for (key, handle) in std::mem::take(&mut self.all).into_iter().enumerate() {
            let Some(handle) = handle else { continue };
            let sync = signal_of(&handle);
            sync.unregister(&self.waiter);
            // A future may finish between the last wake-up and now: report what is true now.
            if self.done[key] || sync.status().is_done() {
                result.done.insert(handle);
            } else {
                result.not_done.insert(handle);
            }
        }
        result
    }
}

impl<F> Drop for Waiting<F> {
    fn drop(&mut self) {
        // A wait given up half-way (a dropped `WaitFuture`): the futures forget this waiter.
        for handle in self.all.iter().flatten() {
            (self.signal_of)(handle).unregister(&self.waiter);
        }
    }
}

/// Yields the futures as they complete: those already done first, then each as it finishes or
/// is cancelled. Each distinct future comes once.
///
/// The `timeout` decides what the iterator yields, so that a timeout cannot pass for the end of
/// the futures (Python raises `TimeoutError` there):
///
/// - `None`: each future itself, until all are out.
/// - a [`Duration`]: `Ok(future)` for each, and if the time runs out first, one last
///   `Err(`[`Timeout`]`)`, after which iteration ends; the futures not yet done are then in
///   [`AsCompleted::not_done`]. With `?`, a plain `for` loop stops there:
///   `for fut in as_completed(&futures, limit) { let fut = fut?; ... }`.
///
/// For a timeout known only at run time (an `Option<Duration>`), pass
/// `timeout.unwrap_or(Duration::MAX)`: `Duration::MAX` never runs out.
///
/// # Examples
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
///
/// With a timeout, the last item says that the time ran out:
///
/// ```
/// use std::time::Duration;
///
/// # use cf::{as_completed, ThreadPoolExecutor, Timeout};
/// let pool = ThreadPoolExecutor::new();
/// let (tx, rx) = std::sync::mpsc::channel::<()>();
/// let quick = pool.submit(|x: u32| x + 1, 1).unwrap();
/// let stuck = pool.submit(move || rx.recv().is_ok(), ()).unwrap();
/// let mut done = as_completed([quick.clone()], Duration::from_secs(60));
/// assert_eq!(done.next(), Some(Ok(quick)));
/// assert_eq!(done.next(), None);
/// let mut late = as_completed([stuck], Duration::from_millis(10));
/// assert!(matches!(late.next(), Some(Err(Timeout))));
/// assert_eq!(late.not_done().count(), 1);
/// # tx.send(()).unwrap();
/// ```
pub fn as_completed<W: Waitable, T: AsCompletedTimeout>(
    futures: impl IntoIterator<Item = W>,
    timeout: T,
) -> AsCompleted<W::Handle, T> {
    let deadline = timeout.__deadline();
    let waiter = Arc::new(Waiter::default());
    let mut ready = VecDeque::new();
    let mut pending = 0;
    let (slots, signal_of) = register_all(futures, &waiter, |key, status| {
        if status.is_done() {
            ready.push_back(key);
        } else {
            pending += 1;
        }
    });
    AsCompleted {
        slots,
        signal_of,
        ready,
        pending,
        waiter,
        batch: Vec::new(),
        deadline,
        timed_out: false,
        _timeout: PhantomData,
    }
}

mod sealed {
    pub trait Sealed {}
}

/// The `timeout` of [`as_completed`]: `None`, or a [`Duration`]. It decides what the iterator
/// yields.
#[diagnostic::on_unimplemented(
    message = "`as_completed` takes `None` or a `Duration` as its timeout, not `{Self}`",
    label = "not `None` or a `Duration`",
    note = "for an `Option<Duration>`, pass `timeout.unwrap_or(Duration::MAX)`: it yields \
            `Result<future, Timeout>`, and `Duration::MAX` never runs out"
)]
pub trait AsCompletedTimeout: sealed::Sealed {
    /// What [`AsCompleted`] yields for a future `F`.
    type Item<F>;
    #[doc(hidden)]
    fn __deadline(self) -> Option<Instant>;
    #[doc(hidden)]
    fn __completed<F>(future: F) -> Self::Item<F>;
    /// The last item when the time runs out.
    #[doc(hidden)]
    fn __timed_out<F>() -> Option<Self::Item<F>>;
}

impl sealed::Sealed for Option<Never> {}
/// `None`: no timeout; the iterator yields each future.
impl AsCompletedTimeout for Option<Never> {
    type Item<F> = F;
    fn __deadline(self) -> Option<Instant> {
        None
    }
    fn __completed<F>(future: F) -> F {
        future
    }
    fn __timed_out<F>() -> Option<F> {
        None
    }
}

impl sealed::Sealed for Duration {}
/// A timeout: the iterator yields `Ok(future)`, and `Err(Timeout)` last if the time runs out.
impl AsCompletedTimeout for Duration {
    type Item<F> = Result<F, Timeout>;
    fn __deadline(self) -> Option<Instant> {
        deadline(Some(self))
    }
    fn __completed<F>(future: F) -> Result<F, Timeout> {
        Ok(future)
    }
    fn __timed_out<F>() -> Option<Result<F, Timeout>> {
        Some(Err(Timeout))
    }
}

/// The iterator [`as_completed`] returns; `T` is the type of its timeout, which decides what it
/// yields (see [`AsCompletedTimeout`]).
pub struct AsCompleted<F, T = Option<Never>> {
    slots: Vec<Option<F>>,
    signal_of: SignalOf<F>,
    ready: VecDeque<usize>,
    pending: usize,
    waiter: Arc<Waiter>,
    /// The keys of the last wake-up, kept for its buffer.
    batch: Vec<usize>,
    deadline: Option<Instant>,
    timed_out: bool,
    _timeout: PhantomData<fn() -> T>,
}

impl<F, T> AsCompleted<F, T> {
    /// Whether iteration stopped because the timeout ran out.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// The futures not yielded yet.
    pub fn not_done(&self) -> impl Iterator<Item = &F> {
        self.slots.iter().flatten()
    }

    /// The next future, `Err(Timeout)` once when the time runs out, then `None`.
    fn next_completed(&mut self) -> Option<Result<F, Timeout>> {
        loop {
            if let Some(handle) = self.take_ready() {
                return Some(Ok(handle));
            }
            if self.pending == 0 || self.timed_out {
                return None;
            }
            if !self
                .waiter
                .wait(self.deadline, &mut self.batch, self.pending)
            {
                self.timed_out = true;
                return Some(Err(Timeout));
            }
            self.pending -= self.batch.len();
            self.ready.extend(self.batch.drain(..));
        }
    }
}

impl<F, T: AsCompletedTimeout> Iterator for AsCompleted<F, T> {
    type Item = T::Item<F>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_completed()? {
            Ok(future) => Some(T::__completed(future)),
            Err(Timeout) => T::__timed_out(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.timed_out {
            return (0, Some(0));
        }
        // One more for the `Err(Timeout)` that may come last.
        let timeout = usize::from(self.deadline.is_some() && self.pending > 0);
        let left = self.ready.len() + self.pending;
        (self.ready.len(), Some(left + timeout))
    }
}

impl<F, T: AsCompletedTimeout> std::iter::FusedIterator for AsCompleted<F, T> {}

impl<F, T> AsCompleted<F, T> {
    /// The next future to yield: one already known to be done, or, once all of those are out,
    /// a new batch from the waiter.
    fn take_ready(&mut self) -> Option<F> {
        while let Some(key) = self.ready.pop_front() {
            if let Some(handle) = self.slots[key].take() {
                (self.signal_of)(&handle).unregister(&self.waiter);
                return Some(handle);
            }
        }
        None
    }
}

#[cfg(feature = "stream")]
impl<F, T> AsCompleted<F, T> {
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
    pub fn into_stream(self) -> CompletedStream<F, T> {
        CompletedStream { inner: self }
    }
}

/// The [`Stream`](futures_core::Stream) that [`AsCompleted::into_stream`] returns.
#[cfg(feature = "stream")]
#[derive(Debug)]
pub struct CompletedStream<F, T = Option<Never>> {
    inner: AsCompleted<F, T>,
}

#[cfg(feature = "stream")]
impl<F, T> Unpin for CompletedStream<F, T> {}

#[cfg(feature = "stream")]
impl<F, T> futures_core::Stream for CompletedStream<F, T> {
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
            match me.waiter.poll(cx, &mut me.batch) {
                std::task::Poll::Ready(()) => {
                    me.pending -= me.batch.len();
                    me.ready.extend(me.batch.drain(..));
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

impl<F, T> Drop for AsCompleted<F, T> {
    fn drop(&mut self) {
        for handle in self.slots.iter().flatten() {
            (self.signal_of)(handle).unregister(&self.waiter);
        }
    }
}

impl<F, T> fmt::Debug for AsCompleted<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &(self.ready.len() + self.pending))
            .field("timed_out", &self.timed_out)
            .finish()
    }
}
