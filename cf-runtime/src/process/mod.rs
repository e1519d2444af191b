//! [`ProcessPoolExecutor`]: `#[task]` functions in crash-isolated worker processes.
//!
//! See `README.md` beside this file for how the parent drives its workers.

mod io;
mod job;
mod worker;

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::{self, JoinHandle};

use cf_worker::{Task, encode_into, table};

use crate::call::TaskMarker;
use crate::error::{Error, ErrorKind, SubmitError};
use crate::executor::{Executor, Map, Submit, shutdown_error};
use crate::future::Future;
use crate::sys;
use job::Job;

/// What submitters hand the I/O thread.
pub(crate) struct Inbox {
    jobs: Vec<Job>,
    /// A wake-up byte is on its way; no need to write another.
    notified: bool,
    shutdown: bool,
    cancel: bool,
    broken: Option<String>,
}

pub(crate) struct Shared {
    inbox: Mutex<Inbox>,
    wake: OwnedFd,
    closed: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the I/O thread unless a wake-up is already pending. Call with the inbox locked.
    fn wake(&self, inbox: &mut Inbox) {
        if !inbox.notified {
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
        ProcessPoolBuilder { max_workers: None, prefetch: 2 }
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
        let _ = task;
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.refusal(args));
        }
        let Some(index) = table().index::<T>() else {
            return Err(SubmitError::new(args, ErrorKind::NotRegistered(T::NAME)));
        };
        let mut bytes = Vec::new();
        if let Err(e) = encode_into(&args, &mut bytes) {
            let message = e.to_string();
            return Err(SubmitError::new(args, ErrorKind::Encode { task: T::NAME, message }));
        }
        let (future, completer) = Future::pending();
        let job = Job { task: index, name: T::NAME, args: bytes, sink: Box::new(completer), id: 0 };
        let mut inbox = self.shared.lock();
        if inbox.shutdown || inbox.broken.is_some() {
            drop(inbox);
            return Err(self.refusal(args));
        }
        inbox.jobs.push(job);
        self.shared.wake(&mut inbox);
        Ok(future)
    }

    fn refusal<A>(&self, args: A) -> SubmitError<A> {
        match &self.shared.lock().broken {
            Some(why) => SubmitError::new(args, ErrorKind::Broken(why.clone())),
            None => shutdown_error(args),
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
        {
            let mut inbox = self.shared.lock();
            inbox.shutdown = true;
            inbox.cancel |= cancel_futures;
            self.shared.closed.store(true, Ordering::Release);
            self.shared.wake(&mut inbox);
        }
        if wait {
            let handle = self.io.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(handle) = handle {
                if handle.thread().id() == thread::current().id() {
                    // Shut down from a done-callback on the I/O thread: it finishes by itself.
                    return;
                }
                let _ = handle.join();
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
}

impl Drop for ProcessPoolExecutor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

/// Builds a [`ProcessPoolExecutor`].
#[derive(Debug, Clone)]
pub struct ProcessPoolBuilder {
    max_workers: Option<usize>,
    prefetch: usize,
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

    /// Starts the workers and the pool's I/O thread.
    ///
    /// # Errors
    /// A worker could not be started, or the binary's task table has duplicate names.
    pub fn build(self) -> Result<ProcessPoolExecutor, Error> {
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
            inbox: Mutex::new(Inbox {
                jobs: Vec::new(),
                notified: false,
                shutdown: false,
                cancel: false,
                broken: None,
            }),
            wake: wake_tx,
            closed: AtomicBool::new(false),
        });
        let (started_tx, started_rx) = mpsc::channel();
        let config = io::Config { exe, max_workers, prefetch: self.prefetch };
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
                return Err(Error::new(ErrorKind::Broken("the pool's i/o thread died".into())));
            }
        }
        Ok(ProcessPoolExecutor { shared, io: Mutex::new(Some(handle)), max_workers })
    }
}
