//! [`ThreadPoolExecutor`]: tasks and closures on a pool of threads in this process.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use crate::call::Callable;
use crate::error::{SubmitError, TaskError};
use crate::executor::{Executor, Shutdown, ShutdownFuture, Submit, shutdown_error};
use crate::future::{Completer, Future};
use crate::map::Map;
use crate::sync::{lock, relock};
use cf_worker::Never;

trait Work: Send {
    fn run(self: Box<Self>);
    fn cancel(self: Box<Self>);
}

struct Job<C, A, O, E> {
    f: C,
    args: A,
    completer: Completer<O, E>,
}

impl<C, A, M> Work
    for (
        Job<C, A, C::Output, C::Error>,
        std::marker::PhantomData<fn() -> M>,
    )
where
    C: Callable<A, M>,
    A: Send,
    C::Output: Send + Sync,
    C::Error: Send + Sync,
{
    fn run(self: Box<Self>) {
        let Job { f, args, completer } = self.0;
        if !completer.set_running() {
            return;
        }
        let name = f.name();
        let outcome = match cf_worker::catch_panic(name, move || f.call_with(args)) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(TaskError::Failed(error)),
            Err(info) => Err(TaskError::Panicked(info)),
        };
        completer.complete(outcome);
    }

    fn cancel(self: Box<Self>) {
        self.0.completer.cancel();
    }
}

struct State {
    queue: VecDeque<Box<dyn Work>>,
    /// Threads waiting for work that nobody has woken yet.
    idle: usize,
    /// Wake-ups sent and not yet taken by a thread.
    wakeups: usize,
    /// Threads started and not yet returned.
    live: usize,
    /// Every thread this pool started.
    ids: Vec<thread::ThreadId>,
    threads: Vec<JoinHandle<()>>,
    shutdown: bool,
    /// Completes `ended` once shut down with no thread left.
    end: Option<Completer<(), Never>>,
}

impl State {
    /// The completer of `ended`, once the pool is shut down and its last thread has returned.
    fn take_end(&mut self) -> Option<Completer<(), Never>> {
        if self.shutdown && self.live == 0 {
            self.end.take()
        } else {
            None
        }
    }
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    /// Signalled as each thread returns after shutdown.
    exited: Condvar,
    max_workers: usize,
    name: String,
    /// Done once the pool is shut down and its last thread has returned: `shutdown_async`.
    ended: Future<(), Never>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn serve(&self) {
        let mut state = self.lock();
        loop {
            if let Some(work) = state.queue.pop_front() {
                drop(state);
                work.run();
                state = self.lock();
            } else if state.shutdown {
                state.live -= 1;
                self.exited.notify_all();
                let end = state.take_end();
                drop(state);
                if let Some(end) = end {
                    end.complete(Ok(()));
                }
                return;
            } else {
                state.idle += 1;
                state = relock(self.work.wait(state));
                // A submitter that woke a thread already took one off the idle count; any other
                // wake-up (shutdown, spurious) takes itself off.
                if state.wakeups > 0 {
                    state.wakeups -= 1;
                } else {
                    state.idle -= 1;
                }
            }
        }
    }
}

/// Python's `ThreadPoolExecutor`: runs `#[task]` functions and plain closures on threads of this
/// process.
///
/// No crash isolation: a task that aborts takes the process with it. Panics are caught and
/// become [`TaskError::Panicked`].
///
/// Dropping the executor is [`shutdown()`](Self::shutdown): it waits for the tasks already
/// submitted.
pub struct ThreadPoolExecutor {
    shared: Arc<Shared>,
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolExecutor")
            .field("max_workers", &self.shared.max_workers)
            .finish_non_exhaustive()
    }
}

impl Default for ThreadPoolExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl ThreadPoolExecutor {
    /// A pool of `min(32, cores + 4)` threads, Python's default, started as work arrives.
    pub fn new() -> Self {
        let cores = thread::available_parallelism().map_or(1, usize::from);
        Self::with_max_workers((cores + 4).min(32))
    }

    /// A pool of at most `max_workers` threads.
    ///
    /// # Panics
    /// If `max_workers` is zero.
    pub fn with_max_workers(max_workers: usize) -> Self {
        Self::builder().max_workers(max_workers).build()
    }

    /// A builder, to set the number of threads and their names.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder {
            max_workers: None,
            thread_name_prefix: None,
        }
    }

    /// The most threads this pool runs at once.
    pub fn max_workers(&self) -> usize {
        self.shared.max_workers
    }

    /// Schedules `f(args)`: `args` is `()` for no argument, the value for one, a tuple for more.
    /// `f` is a `#[task]` function, a plain function or a closure.
    ///
    /// # Errors
    /// The pool was shut down; the arguments come back in the error.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = cf::ThreadPoolExecutor::new();
    /// let sum = pool.submit(|a: u32, b: u32| a + b, (2, 3)).unwrap();
    /// let none = pool.submit(|| "no argument", ()).unwrap();
    /// assert_eq!(sum.result(), Ok(&5));
    /// assert_eq!(none.result(), Ok(&"no argument"));
    ///
    /// pool.shutdown();
    /// let refused = pool.submit(|x: u32| x, 7).unwrap_err();
    /// assert_eq!(refused.into_args(), 7); // the arguments come back
    /// ```
    pub fn submit<C, A, M>(
        &self,
        f: C,
        args: A,
    ) -> Result<Future<C::Output, C::Error>, SubmitError<A>>
    where
        C: Callable<A, M>,
        A: Send + 'static,
        C::Output: Send + Sync + 'static,
        C::Error: Send + Sync + 'static,
        M: 'static,
    {
        let mut state = self.shared.lock();
        if state.shutdown {
            return Err(shutdown_error(args));
        }
        let (future, completer) = Future::pending();
        let job = Job { f, args, completer };
        state
            .queue
            .push_back(Box::new((job, std::marker::PhantomData::<fn() -> M>)));
        if state.idle > 0 {
            // Take the thread off the idle count now, so that the next submit does not count on
            // the same thread (it starts another one instead).
            state.idle -= 1;
            state.wakeups += 1;
            self.shared.work.notify_one();
        } else if state.threads.len() < self.shared.max_workers {
            let shared = self.shared.clone();
            let name = format!("{}-{}", self.shared.name, state.threads.len());
            // If the OS refuses another thread, the threads we have still drain the queue.
            if let Ok(handle) = thread::Builder::new()
                .name(name)
                .spawn(move || shared.serve())
            {
                state.ids.push(handle.thread().id());
                state.live += 1;
                state.threads.push(handle);
            } else if state.threads.is_empty() {
                let work = state.queue.pop_back().expect("just pushed");
                drop(state);
                work.run();
            }
        }
        Ok(future)
    }

    /// Runs `f` on every input, yielding the outcomes in input order (Python's `map`).
    ///
    /// Lazy: tasks are submitted as the iterator is consumed, a bounded number ahead.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = cf::ThreadPoolExecutor::new();
    /// let squares: Result<Vec<u64>, _> = pool.map(|x: u64| x * x, 0..5).collect();
    /// assert_eq!(squares.unwrap(), [0, 1, 4, 9, 16]);
    /// ```
    pub fn map<C, I, M>(&self, f: C, args: I) -> Map<'_, Self, C, I::IntoIter, M>
    where
        I: IntoIterator,
        Self: Submit<C, I::Item, M>,
        C: Clone,
    {
        Map::new(self, f, args.into_iter(), self.shared.max_workers)
    }

    /// Stops taking work and waits for every submitted task: Python's `shutdown()`, the same as
    /// dropping the pool. For Python's other arguments, see
    /// [`shutdown_with`](Self::shutdown_with).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = cf::ThreadPoolExecutor::new();
    /// let future = pool.submit(|x: u32| x + 1, 1).unwrap();
    /// pool.shutdown();
    /// assert!(future.done());
    /// assert!(pool.submit(|x: u32| x + 1, 2).is_err());
    /// ```
    pub fn shutdown(&self) {
        self.shutdown_with(Shutdown::default());
    }

    /// Stops taking work and returns a future that completes once every submitted task is done
    /// and every thread has returned: [`shutdown`](Self::shutdown) for async code, which blocks
    /// no thread while it waits. To cancel the tasks that have not started first, call
    /// [`shutdown_with`](Self::shutdown_with)`(Shutdown { wait: false, cancel_futures: true })`
    /// before it (that does not block).
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let pool = cf::ThreadPoolExecutor::new();
    /// let future = pool.submit(|x: u32| x + 1, 1).unwrap();
    /// pool.shutdown_async().await;
    /// assert!(future.done());
    /// drop(pool); // does not block: the threads are gone
    /// # });
    /// ```
    pub fn shutdown_async(&self) -> ShutdownFuture {
        self.shutdown_with(Shutdown {
            wait: false,
            cancel_futures: false,
        });
        ShutdownFuture::new(self.shared.ended.clone())
    }

    /// Stops taking work as `how` says (Python's `shutdown(wait, cancel_futures)`); see
    /// [`Shutdown`]. Idempotent.
    pub fn shutdown_with(&self, how: Shutdown) {
        let Shutdown {
            wait,
            cancel_futures,
        } = how;
        let (cancelled, threads, end) = {
            let mut state = self.shared.lock();
            state.shutdown = true;
            let end = state.take_end();
            let cancelled: Vec<_> = if cancel_futures {
                state.queue.drain(..).collect()
            } else {
                Vec::new()
            };
            self.shared.work.notify_all();
            let threads = if wait {
                std::mem::take(&mut state.threads)
            } else {
                Vec::new()
            };
            (cancelled, threads, end)
        };
        for work in cancelled {
            work.cancel();
        }
        if let Some(end) = end {
            end.complete(Ok(()));
        }
        let me = thread::current().id();
        let mut mine = false;
        for handle in threads {
            // A task that shuts down its own pool must not wait for itself.
            if handle.thread().id() == me {
                mine = true;
            } else {
                let _ = handle.join();
            }
        }
        if wait && !mine {
            // Another caller may hold the handles: wait for the threads themselves.
            let mut state = self.shared.lock();
            while state.live > usize::from(state.ids.contains(&me)) {
                state = relock(self.shared.exited.wait(state));
            }
        }
    }
}

impl Executor for ThreadPoolExecutor {
    fn shutdown_with(&self, how: Shutdown) {
        ThreadPoolExecutor::shutdown_with(self, how);
    }

    fn shutdown_async(&self) -> ShutdownFuture {
        ThreadPoolExecutor::shutdown_async(self)
    }
}

impl<C, A, M> Submit<C, A, M> for ThreadPoolExecutor
where
    C: Callable<A, M>,
    A: Send + 'static,
    C::Output: Send + Sync + 'static,
    C::Error: Send + Sync + 'static,
    M: 'static,
{
    type Output = C::Output;
    type Error = C::Error;
    fn submit(&self, f: C, args: A) -> Result<Future<C::Output, C::Error>, SubmitError<A>> {
        ThreadPoolExecutor::submit(self, f, args)
    }
    fn name_of(&self, f: &C) -> &'static str {
        f.name()
    }
}

impl Drop for ThreadPoolExecutor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Builds a [`ThreadPoolExecutor`].
#[derive(Debug, Clone)]
pub struct ThreadPoolBuilder {
    max_workers: Option<usize>,
    thread_name_prefix: Option<String>,
}

impl ThreadPoolBuilder {
    /// The most threads the pool runs at once.
    ///
    /// # Panics
    /// If `n` is zero.
    #[must_use]
    pub fn max_workers(mut self, n: usize) -> Self {
        assert!(n > 0, "max_workers must be greater than 0");
        self.max_workers = Some(n);
        self
    }

    /// The prefix of thread names (Python's `thread_name_prefix`); default `cf-thread`.
    #[must_use]
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name_prefix = Some(prefix.into());
        self
    }

    /// Builds the pool; threads start as work arrives.
    pub fn build(self) -> ThreadPoolExecutor {
        let cores = thread::available_parallelism().map_or(1, usize::from);
        let (ended, end) = Future::pending();
        ThreadPoolExecutor {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    idle: 0,
                    wakeups: 0,
                    live: 0,
                    ids: Vec::new(),
                    threads: Vec::new(),
                    shutdown: false,
                    end: Some(end),
                }),
                work: Condvar::new(),
                exited: Condvar::new(),
                max_workers: self.max_workers.unwrap_or((cores + 4).min(32)),
                name: self
                    .thread_name_prefix
                    .unwrap_or_else(|| "cf-thread".to_owned()),
                ended,
            }),
        }
    }
}
