//! [`ProcessPoolBuilder`] and [`TaskOptions`]: the pool's settings and a task's.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use cf_worker::{Task, encode_into, table};

use super::ProcessPoolExecutor;
use super::dispatch::{self, Init};
use super::driver;
use super::forward::Outputs;
use super::remote::{Launcher, Local};
use super::shared::{Inbox, Shared};
use crate::callback::Completions;
use crate::error::{ConfigError, Error, ErrorKind};
use crate::sys;

/// Per-task options for [`ProcessPoolExecutor::submit_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskOptions {
    /// The task's time limit: past it, its worker is killed and the future fails with
    /// [`TaskError::TimeLimit`](crate::TaskError::TimeLimit). Wins over `#[task(timeout)]` and the
    /// pool's default.
    pub timeout: Option<Duration>,
    /// How many times the task runs again when its worker dies under it (a crash, a signal, the
    /// memory limit; not a panic, an `Err`, a time limit or a kill). Wins over the pool's
    /// [`retries`](ProcessPoolBuilder::retries).
    pub retries: Option<u32>,
}

impl TaskOptions {
    /// No options: the task's and the pool's defaults apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how many times the task runs again when its worker dies under it; the error after
    /// the last try lists every death ([`TaskError::RetriesExhausted`](crate::TaskError::RetriesExhausted)).
    #[must_use]
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = Some(n);
        self
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
    initializer: Option<Result<Init, Error>>,
    timeout: Option<Duration>,
    retries: u32,
    memory_limit: Option<u64>,
    spare: bool,
    max_frame: usize,
    forward_logs: bool,
    launcher: Result<Launcher, Error>,
}

/// The smallest memory limit a worker can start under: its binary, its libraries and one
/// stack are mapped before it runs a task.
const MIN_MEMORY_LIMIT: u64 = 32 << 20;

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
            .field("retries", &self.retries)
            .field("memory_limit", &self.memory_limit)
            .field("spare", &self.spare)
            .field("max_frame", &self.max_frame)
            .field("forward_logs", &self.forward_logs)
            .field("launcher", &self.launcher)
            .finish()
    }
}

impl Default for ProcessPoolBuilder {
    fn default() -> Self {
        ProcessPoolBuilder {
            max_workers: None,
            prefetch: 8,
            adaptive: true,
            max_tasks_per_child: None,
            initializer: None,
            timeout: None,
            retries: 0,
            memory_limit: None,
            spare: true,
            max_frame: cf_worker::frame::DEFAULT_MAX_FRAME as usize,
            forward_logs: true,
            launcher: Ok(Local.into()),
        }
    }
}

impl ProcessPoolBuilder {
    /// The builder of [`ProcessPoolExecutor::builder`]: the defaults, and the launcher that
    /// [`CF_LAUNCHER`](crate::launch::ENV_LAUNCHER) names, if set.
    pub(crate) fn from_env() -> Self {
        let mut builder = Self::default();
        if let Some(launcher) = Launcher::from_env().transpose() {
            builder.launcher = launcher;
        }
        builder
    }

    /// Where the workers run (default: child processes of this one, or what
    /// [`CF_LAUNCHER`](crate::launch::ENV_LAUNCHER) names): see [`crate::launch`].
    ///
    /// ```no_run
    /// use cf::launch::Slurm;
    ///
    /// # fn main() -> Result<(), cf::Error> {
    /// let pool = cf::ProcessPoolExecutor::builder()
    ///     .launcher(Slurm::new().ntasks(64))
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn launcher(mut self, launcher: impl Into<Launcher>) -> Self {
        self.launcher = Ok(launcher.into());
        self
    }

    /// The number of worker processes (default: the available cores). Zero is refused by
    /// [`build`](Self::build).
    #[must_use]
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// How many tasks each worker holds at once: the one it runs and those queued behind it, sent
    /// ahead to save a round trip. If the worker dies, the queued ones go to another.
    ///
    /// By default a worker holds about 2 ms of work, by the average run of the task it is sent
    /// (each `#[task]` function has its own): up to 256 tiny tasks, about 20 of 100 µs, and two
    /// (the running one and the next) once tasks take a millisecond or more, and for a task
    /// whose runs were not seen yet. Nothing is queued behind a task that has run half a
    /// millisecond, and what waits behind it is taken back when another worker is idle (or, of
    /// more than four, all but the next), so that no task waits behind a long one while a
    /// worker could run it. Tasks sent ahead count as running, as in Python's pool: `cancel` no
    /// longer stops them. Setting it fixes the depth at `n`; zero is
    /// refused by [`build`](Self::build).
    #[must_use]
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self.adaptive = false;
        self
    }

    /// Replaces each worker after it has run `n` tasks (Python's `max_tasks_per_child`). Zero is
    /// refused by [`build`](Self::build).
    #[must_use]
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// Runs `task(args)` in every worker as it starts, before any other task (Python's
    /// `initializer` and `initargs`). A worker whose initializer fails is replaced; after three
    /// failures in a row the pool is broken and every pending future fails with the cause.
    ///
    /// A worker never runs `main`: this is where to set up what `main` does for the parent and
    /// tasks need (globals, a tokio runtime kept in a `static`). Its stderr, like every task's,
    /// is forwarded to the parent's, and its `tracing` events and `log` records to the parent's
    /// subscriber (see [`forward_logs`](Self::forward_logs)).
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
                Ok(Init {
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

    /// How many times a task runs again when its worker dies under it (default 0, as in
    /// Python): a crash, a signal, the memory limit; not a panic, an `Err`, a time limit or a
    /// kill. A task's own [`TaskOptions::retries`] wins. The error after the last try lists every
    /// death ([`TaskError::RetriesExhausted`](crate::TaskError::RetriesExhausted)).
    #[must_use]
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Limits each worker's address space (`RLIMIT_AS`) to `bytes`; a task that allocates past
    /// it fails with [`TaskError::MemoryLimit`](crate::TaskError::MemoryLimit). Leave room for
    /// the binary itself (tens of MiB); under 32 MiB is refused by [`build`](Self::build).
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
    /// A size below the 13-byte frame header or above the maximum is refused by
    /// [`build`](Self::build).
    #[must_use]
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Whether tasks' `tracing` events and `log` records reach this thread's subscriber (default:
    /// on).
    ///
    /// When on, and a subscriber is current on the thread that calls [`build`](Self::build) (its
    /// default, else the global one), each worker installs a global subscriber and `log` logger
    /// that send events, up to the most verbose level the parent's subscribers want, to the
    /// pool; the pool's forwarding thread re-emits them on that subscriber with two more fields,
    /// `task` and `pid`. With no subscriber, workers install nothing.
    ///
    /// Turn it off when an [`initializer`](Self::initializer) installs a subscriber or logger of
    /// its own in the workers: a global one can be installed only once per process.
    #[must_use]
    pub fn forward_logs(mut self, on: bool) -> Self {
        self.forward_logs = on;
        self
    }

    /// The scheduler's settings.
    fn scheduler(
        &self,
        max_workers: usize,
        initializer: Option<Init>,
        max_frame: u32,
    ) -> dispatch::Config {
        dispatch::Config {
            max_workers,
            prefetch: self.prefetch,
            adaptive: self.adaptive,
            max_tasks_per_child: self.max_tasks_per_child,
            initializer,
            timeout: self.timeout,
            memory_limit: self.memory_limit,
            spare: self.spare,
            max_frame,
            fingerprint: table().fingerprint(),
            retries: self.retries,
            limits: dispatch::Limits::default(),
        }
    }

    /// Refuses settings that cannot work; returns the frame limit.
    fn check(&self) -> Result<u32, Error> {
        let refuse = |e| Err(Error::new(ErrorKind::Config(e)));
        if self.max_workers == Some(0) {
            return refuse(ConfigError::NoWorkers);
        }
        if self.prefetch == 0 {
            return refuse(ConfigError::NoPrefetch);
        }
        if self.max_tasks_per_child == Some(0) {
            return refuse(ConfigError::NoTasksPerChild);
        }
        if let Some(bytes) = self.memory_limit.filter(|&b| b < MIN_MEMORY_LIMIT) {
            return refuse(ConfigError::MemoryLimit {
                bytes,
                min: MIN_MEMORY_LIMIT,
            });
        }
        let (min, max) = (
            cf_worker::frame::HEADER_LEN,
            cf_worker::frame::DEFAULT_MAX_FRAME,
        );
        match u32::try_from(self.max_frame) {
            Ok(bytes) if (min..=max as usize).contains(&self.max_frame) => Ok(bytes),
            _ => refuse(ConfigError::MaxFrame {
                bytes: self.max_frame,
                min,
                max: max as usize,
            }),
        }
    }

    /// Starts the workers and the pool's I/O thread.
    ///
    /// # Errors
    /// A setting cannot work ([`Error::is_config`], the message names it), a worker could not be
    /// started, or the binary's task table has duplicate names.
    pub fn build(mut self) -> Result<ProcessPoolExecutor, Error> {
        let max_frame = self.check()?;
        let initializer = self.initializer.take().transpose()?;
        let launcher = std::mem::replace(&mut self.launcher, Ok(Local.into()))?;
        let duplicates = table().duplicates();
        if !duplicates.is_empty() {
            return Err(Error::new(ErrorKind::DuplicateTasks(duplicates.to_vec())));
        }
        let max_workers = self
            .max_workers
            .or_else(|| launcher.default_workers())
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, usize::from));
        let exe = std::env::current_exe().map_err(|e| Error::new(ErrorKind::Spawn(e)))?;
        let (wake_rx, wake_tx) = sys::wake_pipe().map_err(|e| Error::new(ErrorKind::Io(e)))?;
        // Started here, so that they inherit this thread's output capture (libtest's): user
        // code and worker output never run on, or block, the I/O thread.
        let io_error = |e| Error::new(ErrorKind::Io(e));
        let completions = Completions::start("cf-pool-done").map_err(io_error)?;
        // Workers' events go to this thread's subscriber.
        let dispatch = if self.forward_logs {
            tracing::dispatcher::get_default(tracing::Dispatch::clone)
        } else {
            tracing::Dispatch::none()
        };
        let output = Outputs::start(dispatch).map_err(io_error)?;
        let shared = Arc::new(Shared {
            stats: Arc::default(),
            acked: Condvar::new(),
            inbox: Mutex::new(Inbox::default()),
            wake: wake_tx,
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            output,
            completions: completions.clone(),
        });
        let (started_tx, started_rx) = mpsc::channel();
        let config = self.scheduler(max_workers, initializer, max_frame);
        let launch = match launcher.plan(exe.clone(), self.memory_limit) {
            Some(plan) => driver::Launcher::Remote(Box::new(plan)),
            None => driver::Launcher::Local {
                exe,
                memory_limit: self.memory_limit,
            },
        };
        let io_shared = shared.clone();
        // Done when the I/O thread ends (abandoned if it panics): `shutdown_async`.
        let (ended, end) = crate::future::Future::pending();
        let handle = thread::Builder::new()
            .name("cf-pool-io".to_owned())
            .spawn(move || {
                driver::run(io_shared, wake_rx, launch, config, &started_tx);
                end.complete(Ok(()));
            })
            .map_err(|e| Error::new(ErrorKind::Io(e)))?;
        let refused = match started_rx.recv() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(ErrorKind::Spawn(e)),
            Err(_) => Some(ErrorKind::Broken(
                crate::error::BrokenCause::IoThreadStopped,
            )),
        };
        if let Some(kind) = refused {
            let _ = handle.join();
            return Err(Error::new(kind));
        }
        Ok(ProcessPoolExecutor::new_started(
            shared,
            handle,
            max_workers,
            completions,
            ended,
        ))
    }
}
