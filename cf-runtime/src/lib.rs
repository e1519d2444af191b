//! The parent side of [cf](https://docs.rs/concurrent-futures): futures, `wait`, `as_completed`
//! and the executors. Users reach all of it through the `cf` facade.
#![deny(unsafe_code)]

mod call;
mod callback;
mod error;
mod executor;
mod future;
mod map;
mod process;
mod sync;
mod sys;
mod thread_pool;
mod wait;

pub use call::{Callable, FnMarker, TaskMarker};
pub use callback::set_callback_panic_handler;
pub use error::{
    BrokenCause, Error, Exit, HandshakeError, ProtocolViolation, StartupFailure, SubmitError,
    TaskError, Timeout,
};
pub use executor::{Chunked, Executor, Shutdown, ShutdownFuture, Submit};
pub use future::{AnyFuture, Future, Lend, Waitable};
pub use map::Map;
pub use process::{PoolStats, ProcessPoolBuilder, ProcessPoolExecutor, TaskOptions, launch};
pub use thread_pool::{ThreadPoolBuilder, ThreadPoolExecutor};
#[cfg(feature = "stream")]
pub use wait::CompletedStream;
pub use wait::{
    AsCompleted, AsCompletedTimeout, DoneAndNotDone, ReturnWhen, WaitFuture, as_completed, wait,
    wait_async,
};
