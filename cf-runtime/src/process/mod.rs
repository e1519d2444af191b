//! [`ProcessPoolExecutor`]: `#[task]` functions in crash-isolated worker processes.
//!
//! See `README.md` beside this file for how the parent drives its workers.

mod buffer;
mod io;
mod job;
mod spawner;
mod worker;

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use cf_worker::frame::RequestKind;
use cf_worker::{Item, Never, Task, encode_into, table};

use crate::call::TaskMarker;
use crate::error::{Error, ErrorKind, SubmitError};
use crate::executor::{Chunked, Executor, Map, Submit, shutdown_error};
use crate::future::{Future, Kill};
use crate::sys;
use job::Job;

/// What submitters hand the I/O thread.
pub(crate) struct Inbox {
    jobs: Vec<Job>,
    /// A wake-up byte is on its way; no need to write another.
    notified: bool,
    shutdown: bool,
    cancel: bool,
    /// The I/O thread has cancelled every task that was pending when `cancel` was set.
    cancel_done: bool,
    /// The I/O thread has ended.
    io_gone: bool,
    broken: Option<crate::error::BrokenCause>,
    /// Ids of running jobs to stop by killing their worker (`Future::kill`).
    kills: Vec<u64>,
    /// A signal to send every worker (`terminate_workers`, `kill_workers`).
    terminate: Option<i32>,
}

/// What the pool has done so far; see [`PoolStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) respawns: AtomicU64,
    pub(crate) running: AtomicU64,
    pub(crate) queued: AtomicU64,
    /// A gauge the I/O thread sets each time round its loop.
    pub(crate) workers: AtomicU64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn sub(counter: &AtomicU64) {
    counter.fetch_sub(1, Ordering::Relaxed);
}

// Each change is counted before the future it concerns completes, so that whoever sees a future
// done sees it counted.
impl Counters {
    pub(crate) fn submitted(&self) {
        add(&self.submitted);
        add(&self.queued);
    }
    pub(crate) fn sent(&self) {
        sub(&self.queued);
        add(&self.running);
    }
    pub(crate) fn dequeued_cancelled(&self) {
        sub(&self.queued);
        add(&self.cancelled);
    }
    pub(crate) fn dequeued_failed(&self) {
        sub(&self.queued);
        add(&self.failed);
    }
    pub(crate) fn answered(&self, ok: bool) {
        sub(&self.running);
        add(if ok { &self.completed } else { &self.failed });
    }
    pub(crate) fn running_cancelled(&self) {
        sub(&self.running);
        add(&self.cancelled);
    }
    pub(crate) fn requeued(&self) {
        sub(&self.running);
        add(&self.queued);
    }
    pub(crate) fn respawned(&self) {
        add(&self.respawns);
    }
}

/// A snapshot of a pool's activity, from [`ProcessPoolExecutor::stats`].
///
/// Counts are totals since the pool started, and a task is counted before its future
/// completes. A future cancelled while queued is counted when the pool reaches it; `workers` is
/// as of the pool's last turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks submitted.
    pub submitted: u64,
    /// Tasks sent to a worker and not answered yet (including those sent ahead).
    pub running: u64,
    /// Tasks that finished with a value.
    pub completed: u64,
    /// Tasks that failed: their own error, a panic, a dead worker, a time or memory limit.
    pub failed: u64,
    /// Tasks cancelled.
    pub cancelled: u64,
    /// Workers started to replace others (after a crash, a kill or `max_tasks_per_child`).
    pub respawns: u64,
    /// Tasks waiting for a worker.
    pub queued: u64,
    /// Live worker processes, the spare included.
    pub workers: u64,
}

pub(crate) struct Shared {
    pub(crate) stats: Counters,
    /// The I/O thread, once started.
    pub(crate) io_thread: std::sync::OnceLock<thread::ThreadId>,
    inbox: Mutex<Inbox>,
    /// Signalled when the I/O thread sets `cancel_done` or `io_gone`.
    acked: Condvar,
    wake: OwnedFd,
    closed: AtomicBool,
    next_id: AtomicU64,
}

impl Kill for Shared {
    fn kill(&self, id: u64) -> bool {
        let mut inbox = self.lock();
        inbox.kills.push(id);
        self.wake(&mut inbox);
        // The I/O thread (a done-callback) must not wait for itself.
        self.io_thread.get() != Some(&thread::current().id())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the I/O thread, whatever it is doing (the spawner, without the inbox lock).
    fn poke(&self) {
        // A full wake pipe already wakes the thread: EAGAIN is fine.
        let _ = nix::unistd::write(&self.wake, &[1]);
    }

    /// Wakes the I/O thread unless a wake-up is already pending. Call with the inbox locked.
    fn wake(&self, inbox: &mut Inbox) {
        if !inbox.notified && !inbox.io_gone {
            inbox.notified = true;
            // A full wake pipe already wakes the thread: EAGAIN is fine.
            let _ = nix::unistd::write(&self.wake, &[1]);
        }
    }
}

/// Python's `ProcessPoolExecutor`: runs `#[task]` functions in worker processes, each a re-run of
/// this binary, so that a crash in one task fails only that task's future.
///
/// Dropping the executor is [`shutdown(true, false)`](Executor::shutdown).
pub struct ProcessPoolExecutor {
    shared: Arc<Shared>,
    io: Mutex<Option<JoinHandle<()>>>,
    io_thread: thread::ThreadId,
    max_workers: usize,
}

impl fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.max_workers)
            .finish_non_exhaustive()
    }
}

impl ProcessPoolExecutor {
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
    /// As [`new`](Self::new).
    ///
    /// # Panics
    /// If `max_workers` is zero.
    pub fn with_max_workers(max_workers: usize) -> Result<Self, Error> {
        Self::builder().max_workers(max_workers).build()
    }

    /// A builder for the pool's settings.
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder {
            max_workers: None,
            prefetch: 8,
            adaptive: true,
            max_tasks_per_child: None,
            initializer: None,
            timeout: None,
            memory_limit: None,
            spare: true,
            max_frame: cf_worker::frame::DEFAULT_MAX_FRAME,
        }
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
        let timeout = options.timeout.or(T::TIMEOUT);
        self.enqueue::<T, _, _, _>(args, RequestKind::Call, timeout, 1)
    }

    /// Submits one job that runs `T` on each of `args` in a worker (`map` with a `chunksize`).
    /// A time limit applies to the whole chunk: one input's limit times the chunk's length.
    pub(crate) fn submit_chunk<T: Task>(&self, args: Vec<T::Args>) -> ChunkSubmit<T> {
        let n = u32::try_from(args.len()).unwrap_or(u32::MAX);
        self.enqueue::<T, _, _, _>(args, RequestKind::CallChunk, T::TIMEOUT, n)
    }

    /// Encodes `args` and hands the job to the I/O thread.
    fn enqueue<T: Task, A: serde::Serialize, O, E>(
        &self,
        args: A,
        kind: RequestKind,
        timeout: Option<Duration>,
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
        let mut bytes = Vec::new();
        if let Err(e) = encode_into(&args, &mut bytes) {
            let message = e.to_string();
            return Err(SubmitError::new(
                args,
                ErrorKind::Encode {
                    task: T::NAME,
                    message,
                },
            ));
        }
        if bytes.len() > MAX_ARGS {
            let message = format!(
                "{} bytes of arguments are over the frame limit of {MAX_ARGS} bytes",
                bytes.len()
            );
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
        let (future, completer) = Future::with_killer(Some((killer, id)));
        let job = Job {
            id,
            kind,
            task: index,
            name: T::NAME,
            args: bytes,
            sink: Box::new(completer),
            timeout,
            inputs,
        };
        let mut inbox = self.shared.lock();
        if inbox.shutdown || inbox.broken.is_some() {
            drop(inbox);
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
            Some(why) if !inbox.shutdown => SubmitError::new(args, ErrorKind::Broken(why.clone())),
            _ => shutdown_error(args),
        }
    }

    /// Runs `task` on every input on the workers, yielding outcomes in input order (Python's
    /// `map`). Lazy: tasks are submitted as the iterator is consumed, a bounded number ahead.
    pub fn map<T: Task, I>(&self, task: T, args: I) -> Map<'_, Self, T, I::IntoIter, TaskMarker>
    where
        I: IntoIterator<Item = T::Args>,
    {
        Map::new(self, task, args.into_iter(), self.max_workers)
    }

    /// Stops taking work; see [`Executor::shutdown`].
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.stop(wait, cancel_futures, None);
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
        }
    }

    /// Sends SIGTERM to every worker and shuts down (Python 3.14's `terminate_workers`): pending
    /// tasks are cancelled, running ones fail with [`TaskError::WorkerDied`](crate::TaskError),
    /// and the call returns once the workers are gone.
    pub fn terminate_workers(&self) {
        self.stop(true, true, Some(15));
    }

    /// As [`terminate_workers`](Self::terminate_workers), with SIGKILL (Python 3.14's
    /// `kill_workers`).
    pub fn kill_workers(&self) {
        self.stop(true, true, Some(9));
    }

    /// Whether this is the pool's I/O thread (in a done-callback), which must not wait for itself.
    fn on_io_thread(&self) -> bool {
        self.io_thread == thread::current().id()
    }

    fn stop(&self, wait: bool, cancel_futures: bool, signal: Option<i32>) {
        {
            let mut inbox = self.shared.lock();
            inbox.shutdown = true;
            inbox.cancel |= cancel_futures;
            if signal.is_some() {
                inbox.terminate = signal;
            }
            self.shared.closed.store(true, Ordering::Release);
            self.shared.wake(&mut inbox);
        }
        if cancel_futures && !self.on_io_thread() {
            // Python's promise: the pending futures are cancelled when `shutdown` returns.
            let mut inbox = self.shared.lock();
            while !inbox.cancel_done && !inbox.io_gone {
                inbox = self
                    .shared
                    .acked
                    .wait(inbox)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
        if wait {
            if self.on_io_thread() {
                // Shut down from a done-callback on the I/O thread: it finishes by itself.
                return;
            }
            let handle = self
                .io
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            match handle {
                Some(handle) => drop(handle.join()),
                // Another caller is joining the I/O thread: wait until it is gone too.
                None => {
                    let mut inbox = self.shared.lock();
                    while !inbox.io_gone {
                        inbox = self
                            .shared
                            .acked
                            .wait(inbox)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                }
            }
        }
    }
}

impl Executor for ProcessPoolExecutor {
    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        ProcessPoolExecutor::shutdown(self, wait, cancel_futures);
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
        self.shutdown(true, false);
    }
}

/// The largest encoded arguments a frame can carry.
const MAX_ARGS: usize = u32::MAX as usize - cf_worker::frame::HEADER_LEN;

/// What [`ProcessPoolExecutor::submit_chunk`] returns.
pub(crate) type ChunkSubmit<T> = Result<
    Future<Vec<Item<<T as Task>::Output, <T as Task>::Error>>, Never>,
    SubmitError<Vec<<T as Task>::Args>>,
>;

/// Per-task options for [`ProcessPoolExecutor::submit_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskOptions {
    /// The task's time limit: past it, its worker is killed and the future fails with
    /// [`TaskError::TimeLimit`](crate::TaskError::TimeLimit). Wins over `#[task(timeout)]` and the
    /// pool's default.
    pub timeout: Option<Duration>,
}

impl TaskOptions {
    /// No options: the task's and the pool's defaults apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the time limit.
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }
}

/// Builds a [`ProcessPoolExecutor`].
pub struct ProcessPoolBuilder {
    max_workers: Option<usize>,
    prefetch: usize,
    adaptive: bool,
    max_tasks_per_child: Option<u64>,
    initializer: Option<Result<io::Init, Error>>,
    timeout: Option<Duration>,
    memory_limit: Option<u64>,
    spare: bool,
    max_frame: u32,
}

impl fmt::Debug for ProcessPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPoolBuilder")
            .field("max_workers", &self.max_workers)
            .field("prefetch", &self.prefetch)
            .field("adaptive", &self.adaptive)
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field(
                "initializer",
                &self
                    .initializer
                    .as_ref()
                    .map(|i| i.as_ref().map(|i| i.name)),
            )
            .field("timeout", &self.timeout)
            .field("memory_limit", &self.memory_limit)
            .field("spare", &self.spare)
            .field("max_frame", &self.max_frame)
            .finish()
    }
}

impl ProcessPoolBuilder {
    /// The number of worker processes (default: the available cores).
    ///
    /// # Panics
    /// If `n` is zero.
    #[must_use]
    pub fn max_workers(mut self, n: usize) -> Self {
        assert!(n > 0, "max_workers must be greater than 0");
        self.max_workers = Some(n);
        self
    }

    /// How many tasks each worker holds at once: the one it runs and those queued behind it, sent
    /// ahead to save a round trip. If the worker dies, the queued ones go to another.
    ///
    /// By default a worker holds up to 8 while tasks are short (under half a millisecond on
    /// average) and one at a time otherwise, so that no task waits behind a long one while a
    /// worker is idle. Setting it fixes the depth at `n`.
    ///
    /// # Panics
    /// If `n` is zero.
    #[must_use]
    pub fn prefetch(mut self, n: usize) -> Self {
        assert!(n > 0, "prefetch must be at least 1");
        self.prefetch = n;
        self.adaptive = false;
        self
    }

    /// Replaces each worker after it has run `n` tasks (Python's `max_tasks_per_child`).
    ///
    /// # Panics
    /// If `n` is zero.
    #[must_use]
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        assert!(n > 0, "max_tasks_per_child must be at least 1");
        self.max_tasks_per_child = Some(n);
        self
    }

    /// Runs `task(args)` in every worker as it starts, before any other task (Python's
    /// `initializer` and `initargs`). A worker whose initializer fails is replaced; after three
    /// failures in a row the pool is broken and every pending future fails with the cause.
    #[must_use]
    pub fn initializer<T: Task>(mut self, task: T, args: T::Args) -> Self {
        let _ = task;
        let init = table()
            .index::<T>()
            .ok_or_else(|| Error::new(ErrorKind::NotRegistered(T::NAME)))
            .and_then(|index| {
                let mut bytes = Vec::new();
                encode_into(&args, &mut bytes).map_err(|e| {
                    Error::new(ErrorKind::Encode {
                        task: T::NAME,
                        message: e.to_string(),
                    })
                })?;
                Ok(io::Init {
                    task: index,
                    name: T::NAME,
                    args: bytes,
                })
            });
        self.initializer = Some(init);
        self
    }

    /// The default time limit of every task (a task's own or one given at submit wins).
    #[must_use]
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Limits each worker's address space (`RLIMIT_AS`) to `bytes`; a task that allocates past
    /// it fails with [`TaskError::MemoryLimit`](crate::TaskError::MemoryLimit). Leave room for
    /// the binary itself (tens of MiB).
    #[must_use]
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Keeps one extra idle worker started, so that a dead worker is replaced at once rather
    /// than after a process start (default: on).
    #[must_use]
    pub fn spare_worker(mut self, on: bool) -> Self {
        self.spare = on;
        self
    }

    /// The largest reply a worker may send, in bytes (default and maximum: 2 GiB - 1). A worker
    /// that announces a larger frame is killed and its task fails with
    /// [`TaskError::Protocol`](crate::TaskError::Protocol).
    ///
    /// # Panics
    /// If `bytes` is below the 13-byte frame header or above the maximum.
    #[must_use]
    pub fn max_frame(mut self, bytes: usize) -> Self {
        let bytes = u32::try_from(bytes)
            .ok()
            .filter(|&b| {
                (cf_worker::frame::HEADER_LEN as u32..=cf_worker::frame::DEFAULT_MAX_FRAME)
                    .contains(&b)
            })
            .expect("max_frame must be between 13 bytes and 2 GiB - 1");
        self.max_frame = bytes;
        self
    }

    /// Starts the workers and the pool's I/O thread.
    ///
    /// # Errors
    /// A worker could not be started, or the binary's task table has duplicate names.
    pub fn build(self) -> Result<ProcessPoolExecutor, Error> {
        let initializer = self.initializer.transpose()?;
        let duplicates = table().duplicates();
        if !duplicates.is_empty() {
            return Err(Error::new(ErrorKind::DuplicateTasks(duplicates.to_vec())));
        }
        let max_workers = self
            .max_workers
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, usize::from));
        let exe = std::env::current_exe().map_err(|e| Error::new(ErrorKind::Spawn(e)))?;
        let (wake_rx, wake_tx) = sys::pipe().map_err(|e| Error::new(ErrorKind::Io(e)))?;
        for fd in [&wake_rx, &wake_tx] {
            sys::set_nonblocking(fd).map_err(|e| Error::new(ErrorKind::Io(e)))?;
        }
        let shared = Arc::new(Shared {
            stats: Counters::default(),
            io_thread: std::sync::OnceLock::new(),
            acked: Condvar::new(),
            inbox: Mutex::new(Inbox {
                jobs: Vec::new(),
                notified: false,
                shutdown: false,
                cancel: false,
                cancel_done: false,
                io_gone: false,
                broken: None,
                kills: Vec::new(),
                terminate: None,
            }),
            wake: wake_tx,
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        });
        let (started_tx, started_rx) = mpsc::channel();
        let config = io::Config {
            exe,
            max_workers,
            prefetch: self.prefetch,
            adaptive: self.adaptive,
            max_tasks_per_child: self.max_tasks_per_child,
            initializer,
            timeout: self.timeout,
            memory_limit: self.memory_limit,
            spare: self.spare,
            max_frame: self.max_frame,
        };
        let io_shared = shared.clone();
        let handle = thread::Builder::new()
            .name("cf-pool-io".to_owned())
            .spawn(move || io::run(io_shared, wake_rx, config, &started_tx))
            .map_err(|e| Error::new(ErrorKind::Io(e)))?;
        match started_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = handle.join();
                return Err(Error::new(ErrorKind::Spawn(e)));
            }
            Err(_) => {
                let _ = handle.join();
                return Err(Error::new(ErrorKind::Broken(
                    crate::error::BrokenCause::IoThreadStopped,
                )));
            }
        }
        Ok(ProcessPoolExecutor {
            shared,
            io_thread: handle.thread().id(),
            io: Mutex::new(Some(handle)),
            max_workers,
        })
    }
}
