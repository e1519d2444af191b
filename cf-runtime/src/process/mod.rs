//! [`ProcessPoolExecutor`]: `#[task]` functions in crash-isolated worker processes.
//!
//! See `README.md` beside this file for how the parent drives its workers.

mod buffer;
mod builder;
mod dispatch;
mod driver;
mod forward;
mod job;
mod link;
mod local;
mod logs;
mod output;
mod remote;
mod shared;
mod spawner;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cf_worker::frame::RequestKind;
use cf_worker::{Item, Never, Task, encode_to, table};

pub use builder::{ProcessPoolBuilder, TaskOptions};

/// Where a process pool's workers run: this machine, or agents on others (see the README's
/// "Running on a cluster").
pub mod launch {
    pub use super::remote::{ENV_LAUNCHER, Launcher, Local, Slurm, Tcp};
}
use dispatch::Sig;
use job::{Deaths, Job, Owner};
pub use shared::PoolStats;
use shared::{Cancel, Shared};

use crate::call::TaskMarker;
use crate::callback::Completions;
use crate::error::{Error, ErrorKind, SubmitError};
use crate::executor::{Chunked, Executor, Shutdown, ShutdownFuture, Submit, shutdown_error};
use crate::future::{Future, Kill};
use crate::map::Map;
use crate::sync::relock;

/// Python's `ProcessPoolExecutor`: runs `#[task]` functions in worker processes, each a re-run of
/// this binary, so that a crash in one task fails only that task's future.
///
/// Dropping the executor is [`shutdown()`](Self::shutdown).
pub struct ProcessPoolExecutor {
    shared: Arc<Shared>,
    io: Mutex<Option<JoinHandle<()>>>,
    max_workers: usize,
    /// The completion thread: done-callbacks and drops of values nobody holds.
    completions: Completions,
    /// Done once the I/O thread has ended: `shutdown_async`.
    ended: Future<(), Never>,
}

/// The largest encoded arguments a frame can carry.
const MAX_ARGS: usize = u32::MAX as usize - cf_worker::frame::HEADER_LEN;

/// The encoding of task `T`'s arguments `args`.
fn encode<T: Task, A: serde::Serialize + 'static>(args: &A) -> Result<job::Args, ErrorKind> {
    let mut bytes = job::Args::new();
    encode_to(args, &mut bytes).map_err(|e| ErrorKind::Encode {
        task: T::NAME,
        message: e.to_string(),
    })?;
    Ok(bytes)
}

/// The argument whose buffer a job kept ([`job::Args::Bytes`]), for a submit that is refused.
///
/// # Panics
/// If `args` is not such a buffer, taken from an `A`: `enqueue` keeps the argument otherwise.
fn unsplit<A: 'static>(args: job::Args) -> A {
    let job::Args::Bytes(bytes) = args else {
        unreachable!("only a split argument leaves its value in the job");
    };
    cf_worker::unsplit(bytes).expect("the bytes of a byte string make that byte string again")
}

impl fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.max_workers)
            .finish_non_exhaustive()
    }
}

impl ProcessPoolExecutor {
    /// The pool whose I/O thread `io` has started its first worker.
    fn new_started(
        shared: Arc<Shared>,
        io: JoinHandle<()>,
        max_workers: usize,
        completions: Completions,
        ended: Future<(), Never>,
    ) -> Self {
        ProcessPoolExecutor {
            shared,
            io: Mutex::new(Some(io)),
            max_workers,
            completions,
            ended,
        }
    }

    /// A pool with one worker per available core, started now.
    ///
    /// # Errors
    /// A worker could not be started, or the binary's task table has duplicate names.
    pub fn new() -> Result<Self, Error> {
        Self::builder().build()
    }

    /// A pool of `max_workers` workers.
    ///
    /// # Errors
    /// As [`new`](Self::new); zero workers is a configuration error ([`Error::is_config`]).
    pub fn with_max_workers(max_workers: usize) -> Result<Self, Error> {
        Self::builder().max_workers(max_workers).build()
    }

    /// A builder for the pool's settings.
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder::from_env()
    }

    /// The number of worker processes.
    pub fn max_workers(&self) -> usize {
        self.max_workers
    }

    /// Schedules `task(args)` on a worker: `args` is `()` for no argument, the value for one, a
    /// tuple for more.
    ///
    /// # Errors
    /// The pool was shut down or is broken, or the arguments failed to encode; the arguments come
    /// back in the error.
    ///
    /// # Examples
    ///
    /// ```
    /// #[cf::task]
    /// fn add(a: u64, b: u64) -> u64 {
    ///     a + b
    /// }
    ///
    /// #[cf::task]
    /// fn pid() -> u32 {
    ///     std::process::id()
    /// }
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = cf::ProcessPoolExecutor::with_max_workers(1)?;
    ///     let sum = pool.submit(add, (2, 3))?; // a tuple for two arguments
    ///     let worker = pool.submit(pid, ())?; // `()` for none
    ///     assert_eq!(*sum.result()?, 5);
    ///     assert_ne!(*worker.result()?, std::process::id()); // it ran in another process
    ///     Ok(())
    /// }
    /// ```
    pub fn submit<T: Task>(
        &self,
        task: T,
        args: T::Args,
    ) -> Result<Future<T::Output, T::Error>, SubmitError<T::Args>> {
        self.submit_with(task, args, TaskOptions::default())
    }

    /// [`submit`](Self::submit) with per-task options, such as a time limit.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// #[cf::task]
    /// fn spin() {
    ///     loop {
    ///         std::hint::spin_loop();
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), cf::Error> {
    /// let pool = cf::ProcessPoolExecutor::with_max_workers(1)?;
    /// let limit = cf::TaskOptions::new().timeout(Duration::from_millis(100));
    /// let stuck = pool.submit_with(spin, (), limit)?;
    /// assert!(stuck.result().unwrap_err().is_time_limit());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub fn submit_with<T: Task>(
        &self,
        task: T,
        args: T::Args,
        options: TaskOptions,
    ) -> Result<Future<T::Output, T::Error>, SubmitError<T::Args>> {
        let _ = task;
        let options = TaskOptions {
            timeout: options.timeout.or(T::TIMEOUT),
            ..options
        };
        self.enqueue::<T, _, _, _>(args, RequestKind::Call, options, 1)
    }

    /// Submits one job that runs `T` on each of `args` in a worker (`map` with a `chunksize`).
    /// A time limit applies to the whole chunk: one input's limit times the chunk's length.
    pub(crate) fn submit_chunk<T: Task>(&self, args: Vec<T::Args>) -> ChunkSubmit<T> {
        let n = u32::try_from(args.len()).unwrap_or(u32::MAX);
        let options = TaskOptions {
            timeout: T::TIMEOUT,
            retries: None,
        };
        self.enqueue::<T, _, _, _>(args, RequestKind::CallChunk, options, n)
    }

    /// Encodes `args` and hands the job to the I/O thread.
    fn enqueue<T: Task, A: serde::Serialize + 'static, O, E>(
        &self,
        args: A,
        kind: RequestKind,
        options: TaskOptions,
        inputs: u32,
    ) -> Result<Future<O, E>, SubmitError<A>>
    where
        O: serde::de::DeserializeOwned + Send + Sync + 'static,
        E: serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.refusal(args));
        }
        let Some(index) = table().index::<T>() else {
            return Err(SubmitError::new(args, ErrorKind::NotRegistered(T::NAME)));
        };
        // A large byte string is not encoded: the job keeps its buffer (`kept` is then `None`).
        let (bytes, kept) = match cf_worker::split(args) {
            Ok(raw) => (job::Args::Bytes(raw), None),
            Err(args) => match encode::<T, _>(&args) {
                Ok(bytes) => (bytes, Some(args)),
                Err(kind) => return Err(SubmitError::new(args, kind)),
            },
        };
        if bytes.encoded_len() > MAX_ARGS {
            let message = format!(
                "{} bytes of arguments are over the frame limit of {MAX_ARGS} bytes",
                bytes.encoded_len()
            );
            let args = kept.unwrap_or_else(|| unsplit(bytes));
            return Err(SubmitError::new(
                args,
                ErrorKind::Encode {
                    task: T::NAME,
                    message,
                },
            ));
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let killer = Arc::downgrade(&self.shared) as std::sync::Weak<dyn Kill>;
        let (future, core) = Future::<O, E>::in_pool(Some((killer, id)));
        let job = Job {
            id,
            request: kind,
            task: index,
            name: T::NAME,
            args: bytes,
            owner: Owner::Future(job::FutureEnd::new(core)),
            timeout: options.timeout,
            inputs,
            retries: options.retries,
            deaths: Deaths::default(),
        };
        let mut inbox = self.shared.lock();
        if inbox.shutdown.is_some() || inbox.broken.is_some() {
            drop(inbox);
            let args = kept.unwrap_or_else(|| unsplit(job.args));
            return Err(self.refusal(args));
        }
        inbox.jobs.push(job);
        self.shared.wake(&mut inbox);
        self.shared.stats.submitted();
        drop(inbox);
        Ok(future)
    }

    fn refusal<A>(&self, args: A) -> SubmitError<A> {
        let inbox = self.shared.lock();
        match &inbox.broken {
            Some(why) if inbox.shutdown.is_none() => {
                SubmitError::new(args, ErrorKind::Broken(why.clone()))
            }
            _ => shutdown_error(args),
        }
    }

    /// Runs `task` on every input on the workers, yielding outcomes in input order (Python's
    /// `map`). Lazy: tasks are submitted as the iterator is consumed, a bounded number ahead.
    /// Each `next` blocks until its result is in.
    ///
    /// # Examples
    ///
    /// ```
    /// #[cf::task]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = cf::ProcessPoolExecutor::with_max_workers(2)?;
    ///     // A few hundred inputs per frame to a worker, results in input order.
    ///     let squares = pool.map(square, 0..1000).chunksize(256);
    ///     let total: u64 = squares.collect::<Result<Vec<_>, _>>()?.iter().sum();
    ///     assert_eq!(total, (0..1000).map(|x| x * x).sum());
    ///     Ok(())
    /// }
    /// ```
    pub fn map<T: Task, I>(&self, task: T, args: I) -> Map<'_, Self, T, I::IntoIter, TaskMarker>
    where
        I: IntoIterator<Item = T::Args>,
    {
        Map::new(self, task, args.into_iter(), self.max_workers)
    }

    /// Stops taking work, waits for every submitted task and for the workers to exit: Python's
    /// `shutdown()`, the same as dropping the pool. For Python's other arguments, see
    /// [`shutdown_with`](Self::shutdown_with); from async code,
    /// [`shutdown_async`](Self::shutdown_async).
    ///
    /// # Examples
    ///
    /// ```
    /// #[cf::task]
    /// fn double(x: u64) -> u64 {
    ///     x * 2
    /// }
    ///
    /// fn main() -> Result<(), cf::Error> {
    ///     let pool = cf::ProcessPoolExecutor::with_max_workers(1)?;
    ///     let future = pool.submit(double, 21)?;
    ///     pool.shutdown();
    ///     assert_eq!(future.result(), Ok(&42)); // done before `shutdown` returned
    ///     assert!(pool.submit(double, 1).is_err());
    ///     Ok(())
    /// }
    /// ```
    pub fn shutdown(&self) {
        self.shutdown_with(Shutdown::default());
    }

    /// Stops taking work and returns a future that completes once every submitted task is done
    /// and the workers have exited: [`shutdown`](Self::shutdown) for async code, which blocks no
    /// thread while it waits (dropping a pool that is not shut down blocks the thread that drops
    /// it, a runtime's worker thread included). Once it has completed, dropping the pool does not
    /// block. To cancel the tasks that have not started first, call
    /// [`shutdown_with`](Self::shutdown_with)`(Shutdown { wait: false, cancel_futures: true })`
    /// before it (that waits only for the pool's I/O thread to take the request).
    ///
    /// # Examples
    ///
    /// ```
    /// #[cf::task]
    /// fn double(x: u64) -> u64 {
    ///     x * 2
    /// }
    ///
    /// # fn main() -> Result<(), cf::Error> {
    /// # futures::executor::block_on(async {
    /// let pool = cf::ProcessPoolExecutor::with_max_workers(1)?;
    /// let future = pool.submit(double, 21)?;
    /// pool.shutdown_async().await;
    /// assert_eq!(future.result(), Ok(&42));
    /// drop(pool); // does not block: the workers are gone
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub fn shutdown_async(&self) -> ShutdownFuture {
        self.stop(false, false, None);
        ShutdownFuture::new(self.ended.clone())
    }

    /// Stops taking work as `how` says (Python's `shutdown(wait, cancel_futures)`); see
    /// [`Shutdown`]. Idempotent.
    ///
    /// # Examples
    ///
    /// ```
    /// use cf::Shutdown;
    ///
    /// #[cf::task]
    /// fn double(x: u64) -> u64 {
    ///     x * 2
    /// }
    ///
    /// fn main() -> Result<(), cf::Error> {
    ///     let pool = cf::ProcessPoolExecutor::with_max_workers(1)?;
    ///     let futures: Vec<_> = (0..100).map(|i| pool.submit(double, i)).collect::<Result<_, _>>()?;
    ///     // Cancel what has not started; the running task finishes.
    ///     pool.shutdown_with(Shutdown { wait: true, cancel_futures: true });
    ///     assert!(futures.iter().all(|f| f.done()));
    ///     Ok(())
    /// }
    /// ```
    pub fn shutdown_with(&self, how: Shutdown) {
        self.stop(how.wait, how.cancel_futures, None);
    }

    /// What the pool has done so far: tasks submitted, running, completed, failed, cancelled,
    /// queued, and workers replaced.
    pub fn stats(&self) -> PoolStats {
        let c = &self.shared.stats;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        PoolStats {
            submitted: get(&c.submitted),
            running: get(&c.running),
            completed: get(&c.completed),
            failed: get(&c.failed),
            cancelled: get(&c.cancelled),
            respawns: get(&c.respawns),
            queued: get(&c.queued),
            workers: get(&c.workers),
            ready_workers: get(&c.ready_workers),
        }
    }

    /// Blocks until all [`max_workers`](Self::max_workers) workers are ready to take tasks
    /// (started, handshake and initializer done), or until `timeout` passes; whether they are.
    ///
    /// [`stats`](Self::stats)`().workers` counts a worker from the moment it is asked for; this
    /// waits for [`PoolStats::ready_workers`]. Useful before timing a benchmark, or to fail early
    /// on an initializer that cannot succeed. Blocking: from async code, call it inside
    /// `spawn_blocking`.
    ///
    /// # Errors
    /// The pool is broken (its workers cannot start: [`Error::broken_cause`] says why) or shut
    /// down.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// fn main() -> Result<(), cf::Error> {
    ///     let pool = cf::ProcessPoolExecutor::with_max_workers(2)?;
    ///     assert!(pool.wait_ready(Duration::from_secs(60))?);
    ///     assert_eq!(pool.stats().ready_workers, 2);
    ///     Ok(())
    /// }
    /// ```
    pub fn wait_ready(&self, timeout: impl Into<Option<Duration>>) -> Result<bool, Error> {
        let deadline = crate::future::deadline(timeout.into());
        let ready = || self.shared.stats.ready_workers.load(Ordering::Relaxed);
        let mut inbox = self.shared.lock();
        loop {
            if let Some(cause) = &inbox.broken {
                return Err(Error::new(ErrorKind::Broken(cause.clone())));
            }
            if inbox.shutdown.is_some() || inbox.io_gone {
                return Err(Error::new(ErrorKind::Shutdown));
            }
            if ready() >= self.max_workers as u64 {
                return Ok(true);
            }
            inbox = match deadline {
                None => relock(self.shared.acked.wait(inbox)),
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) => relock(self.shared.acked.wait_timeout(inbox, left)).0,
                    None => return Ok(false),
                },
            };
        }
    }

    /// Sends SIGTERM to every worker and shuts down (Python 3.14's `terminate_workers`): pending
    /// tasks are cancelled, running ones fail with [`TaskError::WorkerDied`](crate::TaskError),
    /// and the call returns once the workers are gone.
    pub fn terminate_workers(&self) {
        self.stop(true, true, Some(Sig::Term));
    }

    /// As [`terminate_workers`](Self::terminate_workers), with SIGKILL (Python 3.14's
    /// `kill_workers`).
    pub fn kill_workers(&self) {
        self.stop(true, true, Some(Sig::Kill));
    }

    fn stop(&self, wait: bool, cancel_futures: bool, signal: Option<Sig>) {
        {
            let mut inbox = self.shared.lock();
            let cancel = inbox.shutdown.get_or_insert(Cancel::No);
            if cancel_futures && *cancel == Cancel::No {
                *cancel = Cancel::Asked;
            }
            if signal.is_some() {
                inbox.terminate = signal;
            }
            self.shared.closed.store(true, Ordering::Release);
            self.shared.wake(&mut inbox);
            // `wait_ready` returns on shutdown.
            self.shared.acked.notify_all();
        }
        if cancel_futures {
            // Python's promise: the pending futures are cancelled when `shutdown` returns.
            let mut inbox = self.shared.lock();
            while inbox.shutdown != Some(Cancel::Done) && !inbox.io_gone {
                inbox = self
                    .shared
                    .acked
                    .wait(inbox)
                    .unwrap_or_else(crate::sync::unpoison);
            }
        }
        if wait {
            let handle = self.io.lock().unwrap_or_else(crate::sync::unpoison).take();
            match handle {
                Some(handle) => {
                    drop(handle.join());
                    // Every future is done: its output printed, its callbacks run.
                    self.shared.output.close();
                    self.completions.flush();
                }
                // Another caller is joining the I/O thread: wait until it is gone too.
                None => {
                    let mut inbox = self.shared.lock();
                    while !inbox.io_gone {
                        inbox = self
                            .shared
                            .acked
                            .wait(inbox)
                            .unwrap_or_else(crate::sync::unpoison);
                    }
                }
            }
        }
    }
}

impl Executor for ProcessPoolExecutor {
    fn shutdown_with(&self, how: Shutdown) {
        ProcessPoolExecutor::shutdown_with(self, how);
    }

    fn shutdown_async(&self) -> ShutdownFuture {
        ProcessPoolExecutor::shutdown_async(self)
    }
}

impl<T: Task> Submit<T, T::Args, TaskMarker> for ProcessPoolExecutor {
    type Output = T::Output;
    type Error = T::Error;
    fn submit(
        &self,
        task: T,
        args: T::Args,
    ) -> Result<Future<T::Output, T::Error>, SubmitError<T::Args>> {
        ProcessPoolExecutor::submit(self, task, args)
    }
    fn name_of(&self, _: &T) -> &'static str {
        T::NAME
    }
    fn __submit_chunk(&self, _: &T, args: Vec<T::Args>) -> Chunked<T::Output, T::Error, T::Args> {
        match self.submit_chunk::<T>(args) {
            Ok(future) => Chunked::Submitted(future),
            Err(e) => Chunked::Refused(e.into()),
        }
    }
}

impl Drop for ProcessPoolExecutor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What [`ProcessPoolExecutor::submit_chunk`] returns.
pub(crate) type ChunkSubmit<T> = Result<
    Future<Vec<Item<<T as Task>::Output, <T as Task>::Error>>, Never>,
    SubmitError<Vec<<T as Task>::Args>>,
>;
