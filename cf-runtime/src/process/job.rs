//! A task on its way to a worker, and the type-erased end that completes its future.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use cf_worker::frame::{ReplyKind, RequestKind};
use cf_worker::{Never, PanicInfo, Payload, decode, decode_payload};
use serde::de::DeserializeOwned;

use crate::error::TaskError;
use crate::future::{AnyCore, Completer, Core, Outcome, Status};

/// One submitted task: what to run, and whom to tell.
pub(crate) struct Job {
    /// Unique in the pool; replies name it. An initializer's is 0.
    pub(crate) id: u64,
    /// `Call`, or `CallChunk` for a list of inputs.
    pub(crate) request: RequestKind,
    pub(crate) task: u32,
    pub(crate) name: &'static str,
    pub(crate) args: Args,
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
    pub(crate) deaths: Deaths,
}

/// How a job's workers died so far, oldest first: boxed, since almost every job has none and
/// the queue holds many jobs (a pointer instead of a `Vec` keeps a job at 128 bytes).
#[derive(Default)]
#[expect(
    clippy::box_collection,
    reason = "one pointer in the job, where a `Vec` takes three"
)]
pub(crate) struct Deaths(Option<Box<Vec<TaskError<Never>>>>);

impl Deaths {
    pub(crate) fn push(&mut self, death: TaskError<Never>) {
        self.0.get_or_insert_default().push(death);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|deaths| deaths.is_empty())
    }

    /// Takes them all, oldest first.
    pub(crate) fn take(&mut self) -> Vec<TaskError<Never>> {
        self.0.take().map(|deaths| *deaths).unwrap_or_default()
    }
}

/// How many bytes of arguments a job keeps inline; most tiny tasks' arguments fit.
const INLINE: usize = 22;

/// A job's encoded arguments: inline up to [`INLINE`] bytes, so that a tiny task's submit
/// allocates nothing but its future; on the heap beyond. A large byte string argument is not
/// encoded: the job keeps its buffer, which crosses as a split frame's tail
/// ([`frame::SPLIT`](cf_worker::frame::SPLIT)).
#[derive(Clone)]
pub(crate) enum Args {
    Inline(u8, [u8; INLINE]),
    Heap(Vec<u8>),
    /// The buffer [`split`](cf_worker::split) took out of the argument: its encoding is its
    /// length prefix, then these bytes.
    Bytes(Vec<u8>),
}

impl Args {
    pub(crate) fn new() -> Self {
        Args::Inline(0, [0; INLINE])
    }

    /// The size of the encoding.
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Args::Bytes(bytes) => {
                let mut prefix = Vec::with_capacity(9);
                cf_worker::bytes_prefix(bytes.len(), &mut prefix);
                prefix.len() + bytes.len()
            }
            _ => self.len(),
        }
    }
}

/// The bytes written from the job itself: the encoding, or a split argument's raw bytes (whose
/// length prefix goes with the frame's header).
impl std::ops::Deref for Args {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Args::Inline(len, bytes) => &bytes[..usize::from(*len)],
            Args::Heap(bytes) | Args::Bytes(bytes) => bytes,
        }
    }
}

impl From<Vec<u8>> for Args {
    fn from(bytes: Vec<u8>) -> Self {
        Args::Heap(bytes)
    }
}

impl std::io::Write for Args {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Args::Inline(len, bytes) => {
                let at = usize::from(*len);
                match bytes.get_mut(at..at + buf.len()) {
                    Some(room) => {
                        room.copy_from_slice(buf);
                        // At most `INLINE`: it fits in a `u8`.
                        *len = (at + buf.len()) as u8;
                    }
                    None => {
                        let mut heap = Vec::with_capacity((at + buf.len()).max(4 * INLINE));
                        heap.extend_from_slice(&bytes[..at]);
                        heap.extend_from_slice(buf);
                        *self = Args::Heap(heap);
                    }
                }
            }
            Args::Heap(bytes) => bytes.extend_from_slice(buf),
            Args::Bytes(_) => {
                return Err(std::io::Error::other("a split argument is not encoded"));
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Who waits for a job's outcome.
pub(crate) enum Owner {
    /// A future, through its completing end.
    Future(FutureEnd),
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

/// The completing end of a future: one more handle on the future's own allocation (no
/// allocation of its own). Dropped unused (a bug of the pool's), it fails its future with
/// [`TaskError::Abandoned`] rather than leave it waiting forever.
pub(crate) struct FutureEnd(Option<Arc<dyn Sink>>);

impl FutureEnd {
    pub(crate) fn new(sink: Arc<dyn Sink>) -> Self {
        FutureEnd(Some(sink))
    }

    fn sink(&self) -> &Arc<dyn Sink> {
        self.0.as_ref().expect("a future's end is used once")
    }

    fn take(mut self) -> Arc<dyn Sink> {
        self.0.take().expect("a future's end is used once")
    }

    /// Python's `set_running_or_notify_cancel`.
    pub(crate) fn set_running(&self) -> bool {
        self.sink().set_running()
    }

    /// Whether the task has not started. A job put back in the queue after its worker died was
    /// running: it is not pending, and `cancel_futures` does not cancel it.
    pub(crate) fn pending(&self) -> bool {
        self.sink().pending()
    }

    /// See [`Sink::given_back`].
    pub(crate) fn given_back(&self) {
        self.sink().given_back();
    }

    /// Completes the future from a worker's reply; see [`Sink::reply`].
    pub(crate) fn reply(self, kind: ReplyKind, payload: Payload<'_>, task: &str) {
        self.take().reply(kind, payload, task);
    }

    /// Fails the future with an error that is not the task's own.
    pub(crate) fn fail(self, error: TaskError<Never>) {
        self.take().fail(error);
    }

    /// Cancels the future if it has not started.
    pub(crate) fn cancel(self) {
        self.take().cancel();
    }

    /// Fails the future with `TaskError::Killed`: it was running (its worker was killed for it).
    pub(crate) fn kill(self) {
        self.take().kill();
    }
}

impl Drop for FutureEnd {
    fn drop(&mut self) {
        if let Some(sink) = self.0.take() {
            sink.abandon();
        }
    }
}

/// A future whose value arrives as bytes, as its completing end sees it.
pub(crate) trait Sink: Send + Sync {
    /// Python's `set_running_or_notify_cancel`.
    fn set_running(&self) -> bool;
    /// Whether the task has not started.
    fn pending(&self) -> bool;
    /// The task was given back unstarted by its worker, and waits in the queue: pending again.
    fn given_back(&self);
    /// Completes the future from a worker's reply. Runs on the I/O thread: the user's
    /// `Deserialize` runs under `catch_unwind` (a panic fails this future with
    /// [`TaskError::Codec`]), and the completer routes callbacks and a value nobody holds to
    /// the pool's completion thread.
    fn reply(self: Arc<Self>, kind: ReplyKind, payload: Payload<'_>, task: &str);
    /// Fails the future with an error that is not the task's own.
    fn fail(self: Arc<Self>, error: TaskError<Never>);
    /// Cancels the future if it has not started.
    fn cancel(self: Arc<Self>);
    /// Fails the future with `TaskError::Killed`: it was running (its worker was killed for it).
    fn kill(self: Arc<Self>);
    /// Fails the future with `TaskError::Abandoned`: its job was dropped unanswered.
    fn abandon(self: Arc<Self>);
}

impl<T, E> Sink for Core<T, E>
where
    T: DeserializeOwned + Send + Sync + 'static,
    E: DeserializeOwned + Send + Sync + 'static,
{
    fn set_running(&self) -> bool {
        self.signal().set_running()
    }

    fn pending(&self) -> bool {
        self.signal().status() == Status::Pending
    }

    fn given_back(&self) {
        self.signal().set_pending();
    }

    fn reply(self: Arc<Self>, kind: ReplyKind, payload: Payload<'_>, task: &str) {
        Completer::new(self).complete(decode_reply(kind, payload, task));
    }

    fn fail(self: Arc<Self>, error: TaskError<Never>) {
        Completer::new(self).complete(Err(error.map_failed(|never| match never {})));
    }

    fn cancel(self: Arc<Self>) {
        Completer::new(self).cancel();
    }

    fn kill(self: Arc<Self>) {
        Completer::new(self).kill();
    }

    fn abandon(self: Arc<Self>) {
        drop(Completer::new(self));
    }
}

/// The outcome a worker's reply says, decoded under `catch_unwind`. Only a value or an error
/// comes split (the dispatcher refuses other split replies).
fn decode_reply<T: DeserializeOwned + 'static, E: DeserializeOwned + 'static>(
    kind: ReplyKind,
    payload: Payload<'_>,
    task: &str,
) -> Outcome<T, E> {
    let codec = |what: &str, e: cf_worker::CodecError| TaskError::Codec {
        task: task.to_owned(),
        message: format!("failed to decode the {what} of task `{task}`: {e}"),
    };
    let (payload, bytes) = match payload {
        Payload::Encoded(bytes) => (bytes, None),
        Payload::Bytes(tail) => (&[][..], Some(tail)),
    };
    let value = |bytes: Option<Vec<u8>>| bytes.map_or(Payload::Encoded(payload), Payload::Bytes);
    let text = || String::from_utf8_lossy(payload).into_owned();
    let decoded =
        catch_unwind(AssertUnwindSafe(|| match kind {
            ReplyKind::Ok => decode_payload::<T>(value(bytes)).map_err(|e| codec("result", e)),
            ReplyKind::Failed => Err(decode_payload::<E>(value(bytes))
                .map_or_else(|e| codec("error", e), TaskError::Failed)),
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
    decoded.unwrap_or_else(|payload| {
        let message = cf_worker::panic_message(&*payload);
        let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
        Err(TaskError::Codec {
            task: task.to_owned(),
            message: format!(
                "failed to decode the outcome of task `{task}`: its `Deserialize` panicked: \
                 {message}"
            ),
        })
    })
}

#[cfg(test)]
mod test;
