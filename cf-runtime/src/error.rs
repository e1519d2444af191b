//! Errors: [`Error`] for the pool itself, [`TaskError`] for one task's outcome.

use std::fmt;
use std::io;
use std::time::Duration;

use cf_worker::PanicInfo;

mod broken;

pub use broken::{BrokenCause, HandshakeError, ProtocolViolation, StartupFailure};

/// Something went wrong with an executor itself: starting workers, talking to them, or using it
/// after shutdown.
///
/// Opaque so that it can grow; ask it with the `is_*` methods.
pub struct Error {
    kind: ErrorKind,
}

#[derive(Debug)]
pub(crate) enum ErrorKind {
    Spawn(io::Error),
    Io(io::Error),
    Shutdown,
    NotRegistered(&'static str),
    DuplicateTasks(Vec<&'static str>),
    Broken(BrokenCause),
    Encode { task: &'static str, message: String },
    Task(Box<dyn std::error::Error + Send + Sync>),
    Config(ConfigError),
}

/// A setting of a builder that cannot work; [`Error::is_config`] tells this kind of error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConfigError {
    /// `max_workers(0)`.
    NoWorkers,
    /// `prefetch(0)`.
    NoPrefetch,
    /// `max_tasks_per_child(0)`.
    NoTasksPerChild,
    /// `max_frame` outside the frame format's bounds.
    MaxFrame {
        bytes: usize,
        min: usize,
        max: usize,
    },
    /// `memory_limit` too small for a worker to start.
    MemoryLimit { bytes: u64, min: u64 },
    /// `CF_LAUNCHER` names no launcher.
    Launcher { value: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoWorkers => f.write_str("max_workers must be greater than 0"),
            ConfigError::NoPrefetch => f.write_str("prefetch must be at least 1"),
            ConfigError::NoTasksPerChild => f.write_str("max_tasks_per_child must be at least 1"),
            ConfigError::MaxFrame { bytes, min, max } => write!(
                f,
                "max_frame must be between {min} and {max} bytes, not {bytes}"
            ),
            ConfigError::MemoryLimit { bytes, min } => write!(
                f,
                "memory_limit of {bytes} bytes is below the {min} bytes a worker needs to start"
            ),
            ConfigError::Launcher { value } => write!(
                f,
                "{}={value}: expected local, tcp, tcp:N, slurm or slurm:N (N above 0)",
                crate::launch::ENV_LAUNCHER
            ),
        }
    }
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Error { kind }
    }

    /// A worker process could not be started.
    pub fn is_spawn(&self) -> bool {
        matches!(self.kind, ErrorKind::Spawn(_))
    }

    /// The executor was shut down before the call.
    pub fn is_shutdown(&self) -> bool {
        matches!(self.kind, ErrorKind::Shutdown)
    }

    /// The pool cannot run tasks any more (for example, workers that fail at start-up).
    pub fn is_broken(&self) -> bool {
        matches!(self.kind, ErrorKind::Broken(_))
    }

    /// Why the pool is broken, if it is.
    pub fn broken_cause(&self) -> Option<&BrokenCause> {
        match &self.kind {
            ErrorKind::Broken(cause) => Some(cause),
            _ => None,
        }
    }

    /// The task is not in this binary's task table.
    pub fn is_not_registered(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::NotRegistered(_) | ErrorKind::DuplicateTasks(_)
        )
    }

    /// The arguments could not be encoded.
    pub fn is_encode(&self) -> bool {
        matches!(self.kind, ErrorKind::Encode { .. })
    }

    /// A builder setting cannot work (such as `max_workers(0)`); the message names it.
    pub fn is_config(&self) -> bool {
        matches!(self.kind, ErrorKind::Config(_))
    }

    /// A task's outcome turned into an `Error` with `?`; the [`TaskError`] is its
    /// [`source`](std::error::Error::source).
    pub fn is_task(&self) -> bool {
        matches!(self.kind, ErrorKind::Task(_))
    }

    /// The same refusal as the outcome of task `task` (a `map` input that could not be
    /// submitted).
    pub(crate) fn into_task_error<E>(self, task: &str) -> TaskError<E> {
        let task = task.to_owned();
        match self.kind {
            ErrorKind::Shutdown => TaskError::Shutdown { task },
            ErrorKind::Broken(cause) => TaskError::Broken { task, cause },
            ErrorKind::NotRegistered(_) | ErrorKind::DuplicateTasks(_) => {
                TaskError::UnknownTask { task }
            }
            ErrorKind::Encode { .. } => TaskError::Codec {
                message: Error { kind: self.kind }.to_string(),
                task,
            },
            // Not what `submit` fails with; kept typed all the same.
            ErrorKind::Spawn(e) | ErrorKind::Io(e) => TaskError::Broken {
                task,
                cause: BrokenCause::Startup {
                    failures: 1,
                    last: StartupFailure::spawn(&e),
                },
            },
            ErrorKind::Task(_) | ErrorKind::Config(_) => TaskError::Abandoned,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Error").field(&self.kind).finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Spawn(e) => write!(f, "failed to start a worker process: {e}"),
            ErrorKind::Io(e) => write!(f, "i/o error in the pool: {e}"),
            ErrorKind::Shutdown => f.write_str("cannot submit after shutdown"),
            ErrorKind::NotRegistered(name) => write!(
                f,
                "task `{name}` is not in this binary's task table; a task defined in a library \
                 must be referenced from the binary so that the linker keeps it"
            ),
            ErrorKind::DuplicateTasks(names) => {
                write!(
                    f,
                    "task names registered more than once: {}",
                    names.join(", ")
                )
            }
            ErrorKind::Broken(cause) => write!(f, "the pool is broken: {cause}"),
            ErrorKind::Encode { task, message } => {
                write!(
                    f,
                    "failed to encode the arguments of task `{task}`: {message}"
                )
            }
            ErrorKind::Task(_) => f.write_str("a task did not produce its value"),
            ErrorKind::Config(e) => write!(f, "invalid pool setting: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Task(e) => Some(&**e),
            _ => None,
        }
    }
}

impl<E> From<TaskError<E>> for Error
where
    E: fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    fn from(e: TaskError<E>) -> Self {
        Error::new(ErrorKind::Task(Box::new(e)))
    }
}

impl<A> From<SubmitError<A>> for Error {
    fn from(e: SubmitError<A>) -> Self {
        e.error
    }
}

/// `submit` failed; the arguments come back to the caller.
pub struct SubmitError<A> {
    /// The arguments that were not submitted.
    pub args: A,
    error: Error,
}

impl<A> SubmitError<A> {
    pub(crate) fn new(args: A, kind: ErrorKind) -> Self {
        SubmitError {
            args,
            error: Error::new(kind),
        }
    }

    /// The arguments that were not submitted.
    pub fn into_args(self) -> A {
        self.args
    }

    /// Why the submission failed.
    pub fn error(&self) -> &Error {
        &self.error
    }
}

impl<A> fmt::Debug for SubmitError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<A> fmt::Display for SubmitError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<A> std::error::Error for SubmitError<A> {}

/// How a worker process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// Its end was not observed (it was already reaped).
    Unknown,
    /// Its machine's agent was lost (killed, hung or unreachable), so how it ended is not known.
    Lost,
}

impl Exit {
    /// The signal's name, such as `SIGSEGV`, for [`Exit::Signal`].
    pub fn signal_name(&self) -> Option<&'static str> {
        match *self {
            Exit::Signal(n) => crate::sys::signal_name(n),
            _ => None,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(n) => match self.signal_name() {
                Some(name) => write!(f, "signal {n} ({name})"),
                None => write!(f, "signal {n}"),
            },
            Exit::Unknown => f.write_str("an unknown status"),
            Exit::Lost => f.write_str("its agent lost (no exit status)"),
        }
    }
}

/// Why a task did not produce its value.
///
/// `E` is the task's own error type: a task that returns `Result<T, E>` fails with
/// [`TaskError::Failed`]; everything else that can happen to a task is a variant of its own, so
/// that a `match` tells them apart.
///
/// Three kinds of time run out, under three names: [`TimeLimit`](Self::TimeLimit) (the task ran
/// too long and its worker was killed), [`Timeout`](Self::Timeout) (the caller stopped waiting:
/// `map`'s timeout or [`Future::result_timeout`](crate::Future::result_timeout)), and the
/// standalone [`Timeout`](crate::Timeout) of the other `*_timeout` waits.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError<E = cf_worker::Never> {
    /// The task returned its own error.
    Failed(E),
    /// The task panicked.
    Panicked(PanicInfo),
    /// The worker process running the task died.
    WorkerDied {
        /// The task that was running.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The node it ran on, with its rank when it has one (`cn17 (rank 3)`), for a worker
        /// started by a remote launcher; `None` for a local worker.
        node: Option<String>,
        /// How it ended.
        exit: Exit,
        /// The last lines the worker wrote to stderr (at most a few KiB), often the reason.
        stderr: String,
    },
    /// The task ran past its time limit; its worker was killed.
    TimeLimit {
        /// The task.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The node it ran on, with its rank when it has one (`cn17 (rank 3)`), for a worker
        /// started by a remote launcher; `None` for a local worker.
        node: Option<String>,
        /// The limit it ran past.
        limit: Duration,
    },
    /// The task overflowed its stack; its worker died (with SIGSEGV).
    StackOverflow {
        /// The task.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The node it ran on, with its rank when it has one (`cn17 (rank 3)`), for a worker
        /// started by a remote launcher; `None` for a local worker.
        node: Option<String>,
    },
    /// The task allocated past the worker's memory limit; its worker died.
    MemoryLimit {
        /// The task.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The node it ran on, with its rank when it has one (`cn17 (rank 3)`), for a worker
        /// started by a remote launcher; `None` for a local worker.
        node: Option<String>,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The future was cancelled before it ran.
    Cancelled,
    /// The task was stopped while running, by [`Future::kill`](crate::Future::kill).
    Killed,
    /// The caller stopped waiting: `map`'s timeout ran out before this result came, or
    /// [`Future::result_timeout`](crate::Future::result_timeout) gave up (Python's
    /// `TimeoutError`). Not [`TimeLimit`](Self::TimeLimit), where the task itself ran past its
    /// time limit and was killed.
    Timeout,
    /// The worker sent something the protocol does not allow (a bad frame); it was killed and
    /// replaced.
    Protocol {
        /// The task it was running.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The node it ran on, with its rank when it has one (`cn17 (rank 3)`), for a worker
        /// started by a remote launcher; `None` for a local worker.
        node: Option<String>,
        /// What was wrong.
        violation: ProtocolViolation,
    },
    /// The arguments or the result could not cross the process boundary.
    Codec {
        /// The task.
        task: String,
        /// What went wrong, with serde's message.
        message: String,
    },
    /// The executor was shut down before the task could be submitted.
    Shutdown {
        /// The task.
        task: String,
    },
    /// The pool's workers were terminated ([`terminate_workers`], [`kill_workers`]) before the
    /// task ran.
    ///
    /// [`terminate_workers`]: crate::ProcessPoolExecutor::terminate_workers
    /// [`kill_workers`]: crate::ProcessPoolExecutor::kill_workers
    Terminated {
        /// The task.
        task: String,
    },
    /// The pool is broken and ran no more tasks; `cause` says why.
    Broken {
        /// The task.
        task: String,
        /// Why the pool broke.
        cause: BrokenCause,
    },
    /// The worker does not know the task (it is not in the binary's task table).
    UnknownTask {
        /// The task.
        task: String,
    },
    /// The worker answered a `map` chunk with fewer outcomes than the chunk had inputs; this
    /// input got none.
    MissingOutcome {
        /// The task.
        task: String,
    },
    /// The task's worker died under it on every try it had
    /// ([`TaskOptions::retries`](crate::TaskOptions::retries)); `deaths` says how, in order.
    RetriesExhausted {
        /// The task.
        task: String,
        /// Each death, as the error it would have been alone.
        deaths: Vec<TaskError>,
    },
    /// The executor dropped the task without completing its future (a bug of the executor's).
    Abandoned,
    /// [`Future::into_result`](crate::Future::into_result) cannot move the outcome out: other
    /// handles to the future still exist, and they keep it.
    Shared,
}

impl<E> TaskError<E> {
    /// The task returned its own error.
    pub fn is_failed(&self) -> bool {
        matches!(self, TaskError::Failed(_))
    }

    /// The task's worker died under it on every one of its tries.
    pub fn is_retries_exhausted(&self) -> bool {
        matches!(self, TaskError::RetriesExhausted { .. })
    }

    /// The task panicked.
    pub fn is_panicked(&self) -> bool {
        matches!(self, TaskError::Panicked(_))
    }

    /// The worker running the task died.
    pub fn is_worker_died(&self) -> bool {
        matches!(self, TaskError::WorkerDied { .. })
    }

    /// The task ran past its time limit (its worker was killed).
    pub fn is_time_limit(&self) -> bool {
        matches!(self, TaskError::TimeLimit { .. })
    }

    /// The caller stopped waiting for the result ([`TaskError::Timeout`]).
    pub fn is_timeout(&self) -> bool {
        matches!(self, TaskError::Timeout)
    }

    /// The task went past the worker's memory limit.
    pub fn is_memory_limit(&self) -> bool {
        matches!(self, TaskError::MemoryLimit { .. })
    }

    /// The future was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }

    /// The running task was killed with [`Future::kill`](crate::Future::kill).
    pub fn is_killed(&self) -> bool {
        matches!(self, TaskError::Killed)
    }

    /// The pool could not run the task: shut down, terminated or broken.
    pub fn is_pool(&self) -> bool {
        matches!(
            self,
            TaskError::Shutdown { .. } | TaskError::Terminated { .. } | TaskError::Broken { .. }
        )
    }

    /// The task's own error, if that is what this is.
    pub fn failed(&self) -> Option<&E> {
        match self {
            TaskError::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The panic, if the task panicked.
    pub fn panic_info(&self) -> Option<&PanicInfo> {
        match self {
            TaskError::Panicked(info) => Some(info),
            _ => None,
        }
    }

    /// Why the pool is broken, for [`TaskError::Broken`].
    pub fn broken_cause(&self) -> Option<&BrokenCause> {
        match self {
            TaskError::Broken { cause, .. } => Some(cause),
            _ => None,
        }
    }

    /// Maps the task's own error with `f`, keeping every other variant.
    pub fn map_failed<F>(self, f: impl FnOnce(E) -> F) -> TaskError<F> {
        match self {
            TaskError::Failed(e) => TaskError::Failed(f(e)),
            TaskError::Panicked(p) => TaskError::Panicked(p),
            TaskError::WorkerDied {
                task,
                pid,
                node,
                exit,
                stderr,
            } => TaskError::WorkerDied {
                task,
                pid,
                node,
                exit,
                stderr,
            },
            TaskError::TimeLimit {
                task,
                pid,
                node,
                limit,
            } => TaskError::TimeLimit {
                task,
                pid,
                node,
                limit,
            },
            TaskError::MemoryLimit {
                task,
                pid,
                node,
                limit,
            } => TaskError::MemoryLimit {
                task,
                pid,
                node,
                limit,
            },
            TaskError::StackOverflow { task, pid, node } => {
                TaskError::StackOverflow { task, pid, node }
            }
            TaskError::Cancelled => TaskError::Cancelled,
            TaskError::Killed => TaskError::Killed,
            TaskError::Timeout => TaskError::Timeout,
            TaskError::Codec { task, message } => TaskError::Codec { task, message },
            TaskError::Protocol {
                task,
                pid,
                node,
                violation,
            } => TaskError::Protocol {
                task,
                pid,
                node,
                violation,
            },
            TaskError::Shutdown { task } => TaskError::Shutdown { task },
            TaskError::Terminated { task } => TaskError::Terminated { task },
            TaskError::Broken { task, cause } => TaskError::Broken { task, cause },
            TaskError::UnknownTask { task } => TaskError::UnknownTask { task },
            TaskError::MissingOutcome { task } => TaskError::MissingOutcome { task },
            TaskError::RetriesExhausted { task, deaths } => {
                TaskError::RetriesExhausted { task, deaths }
            }
            TaskError::Abandoned => TaskError::Abandoned,
            TaskError::Shared => TaskError::Shared,
        }
    }
}

impl<E: fmt::Display> fmt::Display for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Failed(e) => e.fmt(f),
            TaskError::Panicked(info) => info.fmt(f),
            TaskError::WorkerDied {
                task,
                pid,
                node,
                exit,
                stderr,
            } => died(f, task, Worker(*pid, node), *exit, stderr),
            TaskError::TimeLimit {
                task,
                pid,
                node,
                limit,
            } => write!(
                f,
                "task `{task}` exceeded its time limit of {} (worker pid {pid}{} was killed)",
                HumanDuration(*limit),
                OnNode(node)
            ),
            TaskError::StackOverflow { task, pid, node } => write!(
                f,
                "task `{task}` overflowed its stack (worker pid {pid}{} died)",
                OnNode(node)
            ),
            TaskError::MemoryLimit {
                task,
                pid,
                node,
                limit,
            } => write!(
                f,
                "task `{task}` exceeded the memory limit of {} (worker pid {pid}{})",
                HumanBytes(*limit),
                OnNode(node)
            ),
            TaskError::Cancelled => f.write_str("the future was cancelled"),
            TaskError::Killed => f.write_str("the task was killed while running"),
            TaskError::Timeout => f.write_str("timed out waiting for the result"),
            TaskError::Codec { message, .. } => f.write_str(message),
            TaskError::Protocol {
                task,
                pid,
                node,
                violation,
            } => write!(
                f,
                "{} broke the protocol while running task `{task}`: {violation}",
                Worker(*pid, node)
            ),
            TaskError::Shutdown { task } => {
                write!(f, "task `{task}` did not run: cannot submit after shutdown")
            }
            TaskError::Terminated { task } => write!(
                f,
                "task `{task}` did not run: the pool's workers were terminated"
            ),
            TaskError::Broken { task, cause } => {
                write!(f, "task `{task}` did not run: the pool is broken: {cause}")
            }
            TaskError::UnknownTask { task } => {
                write!(f, "task `{task}` is not in the worker's task table")
            }
            TaskError::MissingOutcome { task } => write!(
                f,
                "task `{task}` has no outcome: the worker returned fewer outcomes than the \
                 chunk had inputs"
            ),
            TaskError::RetriesExhausted { task, deaths } => retries_exhausted(f, task, deaths),
            TaskError::Abandoned => {
                f.write_str("the executor dropped this task without completing it")
            }
            TaskError::Shared => f.write_str(
                "the outcome cannot move out of a future that other handles still share",
            ),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for TaskError<E> {}

impl<E> From<Timeout> for TaskError<E> {
    fn from(_: Timeout) -> Self {
        TaskError::Timeout
    }
}

/// A wait ran out of time; the future is still pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Timeout;

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for the future")
    }
}

impl std::error::Error for Timeout {}

/// [`TaskError::WorkerDied`]'s text, with the last line of its stderr when it wrote one.
fn died(
    f: &mut fmt::Formatter<'_>,
    task: &str,
    worker: Worker<'_>,
    exit: Exit,
    stderr: &str,
) -> fmt::Result {
    write!(f, "{worker} died with {exit} while running task `{task}`")?;
    match stderr.trim_end().lines().last() {
        Some(last) => write!(f, "; its last words: {last}"),
        None => Ok(()),
    }
}

/// [`TaskError::RetriesExhausted`]'s text: every death, numbered.
fn retries_exhausted(f: &mut fmt::Formatter<'_>, task: &str, deaths: &[TaskError]) -> fmt::Result {
    write!(
        f,
        "task `{task}` lost its worker on each of its {} tries:",
        deaths.len()
    )?;
    for (n, death) in deaths.iter().enumerate() {
        write!(f, " ({}) {death}", n + 1)?;
    }
    Ok(())
}

/// `worker (pid 1234)` on this machine, `worker pid 1234 on node cn17 (rank 3)` on another.
struct Worker<'a>(u32, &'a Option<String>);

impl fmt::Display for Worker<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            None => write!(f, "worker (pid {})", self.0),
            Some(node) => write!(f, "worker pid {} on node {node}", self.0),
        }
    }
}

/// Nothing on this machine, ` on node cn17 (rank 3)` on another.
struct OnNode<'a>(&'a Option<String>);

impl fmt::Display for OnNode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => Ok(()),
            Some(node) => write!(f, " on node {node}"),
        }
    }
}

/// `500 ms`, `2 s`, `1.5 s`.
struct HumanDuration(Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms < 1000 || !ms.is_multiple_of(1000) && ms < 10_000 && !ms.is_multiple_of(100) {
            write!(f, "{ms} ms")
        } else if ms.is_multiple_of(1000) {
            write!(f, "{} s", ms / 1000)
        } else {
            write!(f, "{:.1} s", self.0.as_secs_f64())
        }
    }
}

/// `256 MiB`, `1 GiB`, `1000 bytes`.
struct HumanBytes(u64);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (unit, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{} {unit}", self.0 / size);
            }
        }
        write!(f, "{} bytes", self.0)
    }
}

#[cfg(test)]
mod test;
