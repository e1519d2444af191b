//! A task on its way to a worker, and the type-erased end that completes its future.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use cf_worker::frame::{ReplyKind, RequestKind};
use cf_worker::{Never, PanicInfo, decode};
use serde::de::DeserializeOwned;

use crate::error::TaskError;
use crate::future::Completer;

/// One submitted task: what to run, and whom to tell.
pub(crate) struct Job {
    /// Unique in the pool; replies name it. An initializer's is 0.
    pub(crate) id: u64,
    /// `Call`, or `CallChunk` for a list of inputs.
    pub(crate) request: RequestKind,
    pub(crate) task: u32,
    pub(crate) name: &'static str,
    pub(crate) args: Vec<u8>,
    /// Who waits for the outcome.
    pub(crate) owner: Owner,
    /// The time limit given at submit or by the task; the pool's default applies otherwise.
    pub(crate) timeout: Option<Duration>,
    /// How many inputs the job runs (a chunk of `map`): its time limit is this many times one
    /// input's.
    pub(crate) inputs: u32,
    /// How many more times it runs if its worker dies under it (`retries`); `None`: the pool's
    /// default.
    pub(crate) retries: Option<u32>,
    /// How its workers died so far, oldest first.
    pub(crate) deaths: Vec<TaskError<Never>>,
}

/// Who waits for a job's outcome.
pub(crate) enum Owner {
    /// A future, through its completer.
    Future(Box<dyn Sink>),
    /// The pool itself: a worker's initializer, which must succeed before the worker takes tasks.
    Initializer,
    /// Nobody: what is left of a job killed after its frame went to a worker. Its reply is
    /// dropped when it comes, and it is never dispatched again.
    Nobody,
}

impl Job {
    /// Whether this is a worker's initializer rather than a submitted task.
    pub(crate) fn is_init(&self) -> bool {
        matches!(self.owner, Owner::Initializer)
    }

    /// The job's time limit: its own or the pool's, times its inputs.
    pub(crate) fn limit(&self, pool: Option<Duration>) -> Option<Duration> {
        self.timeout
            .or(pool)
            .map(|limit| limit.saturating_mul(self.inputs))
    }

    /// Whether a future waits on this job.
    pub(crate) fn has_future(&self) -> bool {
        matches!(self.owner, Owner::Future(_))
    }
}

/// The completing end of a future whose value arrives as bytes.
pub(crate) trait Sink: Send {
    /// Python's `set_running_or_notify_cancel`.
    fn set_running(&self) -> bool;
    /// Whether the task has not started. A job put back in the queue after its worker died was
    /// running: it is not pending, and `cancel_futures` does not cancel it.
    fn pending(&self) -> bool;
    /// Completes the future from a worker's reply. Runs on the I/O thread: the user's
    /// `Deserialize` runs under `catch_unwind` (a panic fails this future with
    /// [`TaskError::Codec`]), and the completer routes callbacks and a value nobody holds to
    /// the pool's completion thread.
    fn reply(self: Box<Self>, kind: ReplyKind, payload: &[u8], task: &str);
    /// Fails the future with an error that is not the task's own.
    fn fail(self: Box<Self>, error: TaskError<Never>);
    /// Cancels the future if it has not started.
    fn cancel(self: Box<Self>);
    /// Fails the future with `TaskError::Killed`: it was running (its worker was killed for it).
    fn kill(self: Box<Self>);
}

impl<T, E> Sink for Completer<T, E>
where
    T: DeserializeOwned + Send + Sync + 'static,
    E: DeserializeOwned + Send + Sync + 'static,
{
    fn set_running(&self) -> bool {
        Completer::set_running(self)
    }

    fn pending(&self) -> bool {
        Completer::pending(self)
    }

    fn reply(self: Box<Self>, kind: ReplyKind, payload: &[u8], task: &str) {
        let codec = |what: &str, e: cf_worker::CodecError| TaskError::Codec {
            task: task.to_owned(),
            message: format!("failed to decode the {what} of task `{task}`: {e}"),
        };
        let text = || String::from_utf8_lossy(payload).into_owned();
        let decoded = catch_unwind(AssertUnwindSafe(|| match kind {
            ReplyKind::Ok => decode::<T>(payload).map_err(|e| codec("result", e)),
            ReplyKind::Failed => {
                Err(decode::<E>(payload).map_or_else(|e| codec("error", e), TaskError::Failed))
            }
            ReplyKind::Panicked | ReplyKind::Aborting => Err(decode::<PanicInfo>(payload)
                .map_or_else(|e| codec("panic", e), TaskError::Panicked)),
            ReplyKind::BadArgs | ReplyKind::BadResult => Err(TaskError::Codec {
                task: task.to_owned(),
                message: text(),
            }),
            // The dispatcher keeps `Hello` and `Revoked` for itself.
            ReplyKind::UnknownTask | ReplyKind::Hello | ReplyKind::Revoked => {
                Err(TaskError::UnknownTask {
                    task: task.to_owned(),
                })
            }
        }));
        let outcome = decoded.unwrap_or_else(|payload| {
            let message = cf_worker::panic_message(&*payload);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            Err(TaskError::Codec {
                task: task.to_owned(),
                message: format!(
                    "failed to decode the outcome of task `{task}`: its `Deserialize` panicked: \
                     {message}"
                ),
            })
        });
        self.complete(outcome);
    }

    fn fail(self: Box<Self>, error: TaskError<Never>) {
        self.complete(Err(error.map_failed(|never| match never {})));
    }

    fn cancel(self: Box<Self>) {
        Completer::cancel(*self);
    }

    fn kill(self: Box<Self>) {
        Completer::kill(*self);
    }
}
