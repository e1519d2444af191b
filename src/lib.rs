//! Python's `concurrent.futures` for Rust, with every `#[task]` run in a crash-isolated worker
//! process: a panic, segfault, abort or OOM kill in one task fails that task's [`Future`], never
//! the pool.
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//!
//! use cf::{ProcessPoolExecutor, as_completed, task};
//!
//! #[task]
//! fn simulate_task(n: u64) -> String {
//!     format!("Processed {n}")
//! }
//!
//! fn main() -> Result<(), cf::Error> {
//!     let pool = ProcessPoolExecutor::with_max_workers(2)?;
//!     let mut future_to_number = HashMap::new();
//!     for n in [5, 2, 8, 1, 3] {
//!         future_to_number.insert(pool.submit(simulate_task, n)?, n);
//!     }
//!     for future in as_completed(future_to_number.keys(), None) {
//!         match future.result() {
//!             Ok(text) => println!("Completed: {text}"),
//!             Err(e) => println!("Task for {} generated an exception: {e}", future_to_number[&future]),
//!         }
//!     }
//!     assert_eq!(simulate_task(1), "Processed 1"); // still an ordinary function
//!     Ok(())
//! }
//! ```
//!
//! # Futures
//!
//! [`ProcessPoolExecutor::submit`] and [`ThreadPoolExecutor::submit`] return a [`Future<T, E>`]:
//! a cheap, cloneable handle that compares and hashes by identity, so it can key a map from
//! future to input. It is pending, then running, then finished (or cancelled while still
//! pending). [`Future::result`] blocks, lends the value and gives an owned error, so that
//! `let value = fut.result()?;` works in any function; [`Future::result_timeout`] gives up with
//! [`TaskError::Timeout`] and leaves the future pending; [`Future::add_done_callback`] runs a callback
//! once, at once if the future is already done.
//!
//! # Waiting
//!
//! [`wait`] returns the done and not-done sets when the [`ReturnWhen`] condition holds:
//! [`FirstCompleted`](ReturnWhen::FirstCompleted), [`FirstException`](ReturnWhen::FirstException)
//! (a cancelled future is not an exception) or [`AllCompleted`](ReturnWhen::AllCompleted).
//! [`as_completed`] yields each distinct future once, those already done first, then in
//! completion order. Both take futures from either executor; [`AnyFuture`] mixes value types.
//! Cancelling a future wakes every `wait` and `as_completed` that holds it at once.
//!
//! # Errors
//!
//! [`Error`] is about the executor itself (starting workers, submitting after shutdown).
//! [`TaskError`] is about one task, and keeps the causes apart: the task's own error
//! ([`TaskError::Failed`], for a task that returns `Result<T, E>`), a panic with its message and
//! location ([`TaskError::Panicked`]), a worker that died with its pid and exit code or signal
//! ([`TaskError::WorkerDied`], with the last lines it wrote to stderr), a stack overflow, a time
//! or memory limit, cancellation, and values or frames that failed to cross the process boundary.
//! A pool that could not run the task says why with a variant of its own: shut down
//! ([`TaskError::Shutdown`]), terminated ([`TaskError::Terminated`]) or broken
//! ([`TaskError::Broken`], with a typed [`BrokenCause`]).
//!
//! # Crash isolation
//!
//! Workers are this same binary, re-executed: a constructor that runs before `main` sees the
//! worker marker and serves tasks until its request pipe closes, so a worker never reaches your
//! `main` and you write nothing to set it up. It works the same in binaries, examples, tests and
//! benches. Requests and results travel on dedicated pipes (never stdin/stdout: a task may
//! print), as length-prefixed frames that name a task by its index in the binary's task table: a
//! frame is data, never code. When a worker dies, only the task it was running fails; the tasks
//! queued behind it go to a fresh worker.
//!
//! # Time limits, kills and memory limits
//!
//! A task may get a time limit at submit ([`ProcessPoolExecutor::submit_with`] with
//! [`TaskOptions`]), from its attribute (`#[task(timeout = "500ms")]`) or from the pool
//! ([`ProcessPoolBuilder::task_timeout`]). Past it, the worker running the task is killed and the
//! future fails with [`TaskError::TimeLimit`]; the tasks queued behind it go to another worker.
//! [`Future::kill`] stops a running task the same way, and the future fails with
//! [`TaskError::Killed`] (an exception, not a cancellation) ([`Future::cancel`] keeps Python's meaning
//! and only cancels a pending one). [`ProcessPoolBuilder::memory_limit`] caps each worker's
//! address space: a task that allocates past it fails with [`TaskError::MemoryLimit`].
//!
//! # Async
//!
//! A [`Future`] is a [`std::future::Future`]: `(&fut).await` is [`Future::result`], `fut.await` clones
//! it ([`Future::into_result`] moves it out of the last handle, without `Clone`), and both work from any executor (tokio, async-std, `futures::executor`), with
//! `join_all` and `select!`. [`AsCompleted::into_stream`] turns [`as_completed`] into a
//! `Stream` (feature `stream`, on by default), [`wait_async`] is [`wait`] as a future, and
//! [`Executor::shutdown_async`] shuts a pool down without blocking the runtime's thread (dropping
//! a pool that still runs tasks blocks the thread that drops it). The other waiting calls block:
//! the README lists them, with what to use from async code.
//!
//! # Observability
//!
//! [`ProcessPoolExecutor::stats`] counts tasks submitted, running, completed, failed and
//! cancelled, the queue depth, the workers (started, and ready to take tasks) and the workers
//! replaced; [`ProcessPoolExecutor::wait_ready`] waits until every worker takes tasks. The pool emits [`tracing`] events for
//! worker start, exit, replacement and kill (info) and for each failed task (debug).
//!
//! [`tracing`]: https://docs.rs/tracing
//!
//! # Feature flags
//!
//! - `stream` (default): [`AsCompleted::into_stream`], a `futures_core::Stream`.
//!
//! # Examples
//!
//! Each runs in CI: `as_completed` and `wait_first_exception` (the two programs of the
//! document this crate comes from), `crash_isolated_batch` (panics, an abort and a task's own
//! error in one batch), `panic_strategies` (the same under `panic = "abort"`) and `progress`
//! (10,000 tasks under a progress bar).
//!
//! # Python names
//!
//! | Python | cf |
//! |---|---|
//! | `ProcessPoolExecutor(max_workers=n)` | [`ProcessPoolExecutor::with_max_workers`]`(n)` or [`ProcessPoolExecutor::builder`] |
//! | `ThreadPoolExecutor()` | [`ThreadPoolExecutor::new`] |
//! | `executor.submit(fn, *args)` | `executor.submit(fn, args)`: `()`, `x` or `(x, y, ..)` |
//! | `executor.map(fn, it, chunksize=n)` | `executor.map(fn, it).chunksize(n)` (lazy, ordered) |
//! | `executor.shutdown(wait=True, cancel_futures=False)` | [`Executor::shutdown`]`()`, as dropping; [`Executor::shutdown_with`]`(`[`Shutdown`]` { wait, cancel_futures })` |
//! | `future.result(timeout)` | [`Future::result`], [`Future::result_timeout`] |
//! | `future.exception(timeout)` | [`Future::exception`], [`Future::exception_timeout`] |
//! | `future.cancel()`, `cancelled()`, `running()`, `done()` | the same names |
//! | `future.add_done_callback(fn)` | [`Future::add_done_callback`] |
//! | `wait(fs, timeout, return_when)` | [`wait`]`(fs, timeout, ReturnWhen::..)` |
//! | `as_completed(fs, timeout)` | [`as_completed`]`(fs, None)` yields futures; `(fs, duration)` yields `Result`s, `Err(`[`Timeout`]`)` last if the time runs out |
//! | `FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED` | [`ReturnWhen`] |
//! | `CancelledError`, `TimeoutError` | [`TaskError::Cancelled`], [`Timeout`] ([`TaskError::Timeout`] from `map`; a task's own time limit is [`TaskError::TimeLimit`]) |
//! | `BrokenProcessPool` | [`TaskError::Broken`] with its [`BrokenCause`], only when workers cannot start; a dead worker fails one future ([`TaskError::WorkerDied`]) |
//! | `terminate_workers()`, `kill_workers()` | [`ProcessPoolExecutor::terminate_workers`], [`ProcessPoolExecutor::kill_workers`] |
//! | `initializer`, `initargs`, `max_tasks_per_child` | [`ProcessPoolBuilder::initializer`], [`ProcessPoolBuilder::max_tasks_per_child`] |
#![deny(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

extern crate self as cf;

pub use cf_macros::task;
#[cfg(feature = "stream")]
pub use cf_runtime::CompletedStream;
pub use cf_runtime::{
    AnyFuture, AsCompleted, AsCompletedTimeout, BrokenCause, Callable, Chunked, DoneAndNotDone,
    Error, Executor, Exit, FnMarker, Future, HandshakeError, Lend, Map, PoolStats,
    ProcessPoolBuilder, ProcessPoolExecutor, ProtocolViolation, ReturnWhen, Shutdown,
    ShutdownFuture, StartupFailure, Submit, SubmitError, TaskError, TaskMarker, TaskOptions,
    ThreadPoolBuilder, ThreadPoolExecutor, Timeout, WaitFuture, Waitable, as_completed, launch,
    set_callback_panic_handler, wait, wait_async,
};
pub use cf_worker::{Location, Never, PanicInfo, Task};

/// What `#[task]` expands to names only this module. Not public API: it may change in any
/// release.
#[doc(hidden)]
pub mod __private {
    pub use cf_worker::linkme;
    pub use cf_worker::{Never, TASKS, Task, TaskEntry};

    /// Compile-time check, spanned at a parameter or return type by `#[task]`: values that
    /// cross the process boundary must be serde values that can move between threads.
    pub const fn assert_value<
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    >() {
    }

    /// `T` and `E` of a return type that `#[task]` takes for a `Result` by its name alone
    /// (`io::Result<T>`, a crate's `Result<T>` alias) or by `#[task(result)]`.
    #[diagnostic::on_unimplemented(
        message = "`#[task]` takes `{Self}` for a `Result`, but it is not one",
        label = "not a `Result<T, E>`",
        note = "a return type named `Result` fails the task with its error; if this type is \
                a value of its own, write `#[task(result = false)]`"
    )]
    pub trait TaskResult {
        /// `T`.
        type Ok;
        /// `E`.
        type Err;
        /// The value as the `Result` it is.
        ///
        /// # Errors
        /// Its own error.
        fn into_result(self) -> Result<Self::Ok, Self::Err>;
    }

    impl<T, E> TaskResult for Result<T, E> {
        type Ok = T;
        type Err = E;
        fn into_result(self) -> Self {
            self
        }
    }
}
