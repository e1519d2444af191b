//! Tasks and the link-time registry of them.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::Payload;
use crate::frame::ReplyKind;
use crate::{PanicInfo, codec, panic};

/// A function that a worker process can run: what `#[task]` implements for the function's marker
/// type.
///
/// The marker type is a zero-sized value with the function's own name; it derefs to the plain
/// function, so `add(2, 3)` still calls it directly, and it is what `submit(add, (2, 3))` takes.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `#[task]`, so a worker process cannot run it",
    label = "not a `#[task]` function",
    note = "mark the function `#[task]`: a worker finds it by name in the task table that \
            `#[task]` fills",
    note = "a closure or a function that is not a `#[task]` cannot cross a process boundary; \
            run it on a `ThreadPoolExecutor` instead"
)]
pub trait Task: Copy + Send + Sync + 'static {
    /// The argument shape: `()` for none, the value itself for one, a tuple for two or more.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// What the task produces on success.
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The task's own error: `E` for a task that returns `Result<T, E>`, [`Never`] otherwise.
    type Error: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The name a worker dispatches on (module path and function name unless pinned).
    const NAME: &'static str;
    /// The task's default time limit (`#[task(timeout = "...")]`); a limit given at submit wins.
    const TIMEOUT: Option<std::time::Duration> = None;
    /// Runs the function in this process.
    ///
    /// # Errors
    /// The task's own error, for a task that returns `Result<T, E>`.
    fn call(args: Self::Args) -> Result<Self::Output, Self::Error>;
    /// The task's entry in [`TASKS`].
    fn entry() -> &'static TaskEntry;
}

/// A type with no values: the error type of a task that cannot fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Never {}

impl fmt::Display for Never {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl std::error::Error for Never {}

impl Serialize for Never {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        match *self {}
    }
}

impl<'de> serde::Deserialize<'de> for Never {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "the value of a task that cannot fail has no error",
        ))
    }
}

/// One registered task: its name and the type-erased function that decodes its arguments, runs
/// it and encodes the outcome.
pub struct TaskEntry {
    /// The dispatch name.
    pub name: &'static str,
    invoke: fn(Payload<'_>, &mut Vec<u8>) -> Reply,
    invoke_chunk: fn(&[u8], &mut Vec<u8>) -> ReplyKind,
    types: fn() -> [&'static str; 3],
}

impl TaskEntry {
    /// The entry for `T`; what `#[task]` places in [`TASKS`].
    pub const fn new<T: Task>() -> Self {
        TaskEntry {
            name: T::NAME,
            invoke: invoke::<T>,
            invoke_chunk: invoke_chunk::<T>,
            types: types::<T>,
        }
    }

    /// Decodes `args`, runs the task and appends the encoded outcome to `out`; a large byte
    /// string outcome comes back as the reply's tail instead (see [`Reply`]).
    pub fn invoke(&self, args: Payload<'_>, out: &mut Vec<u8>) -> Reply {
        (self.invoke)(args, out)
    }

    /// Decodes a list of arguments, runs the task on each and appends the encoded list of
    /// [`Item`]s to `out` (`map` with a `chunksize`).
    pub fn invoke_chunk(&self, args: &[u8], out: &mut Vec<u8>) -> ReplyKind {
        (self.invoke_chunk)(args, out)
    }
}

impl fmt::Debug for TaskEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskEntry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The names of `T`'s argument, value and error types, for the table's fingerprint.
fn types<T: Task>() -> [&'static str; 3] {
    [
        std::any::type_name::<T::Args>(),
        std::any::type_name::<T::Output>(),
        std::any::type_name::<T::Error>(),
    ]
}

/// A hash of `entries` in order (names and argument, value and error types) and of this crate's
/// version: equal in parent and worker exactly when both hold the same tasks, of the same
/// types, at the same indices (FNV-1a).
fn fingerprint(entries: &[TaskEntry]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut add = |text: &str| {
        for byte in text.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    add(env!("CARGO_PKG_VERSION"));
    for entry in entries {
        add(entry.name);
        for name in (entry.types)() {
            add(name);
        }
    }
    hash
}

/// Every `#[task]` in the binary, gathered at link time.
#[linkme::distributed_slice]
pub static TASKS: [TaskEntry];

/// What a task's run puts in its reply frame, beside the bytes it appended.
#[derive(Debug)]
pub struct Reply {
    /// The reply's kind.
    pub kind: ReplyKind,
    /// The buffer of a large byte string outcome ([`codec::split`]): the appended bytes are its
    /// length prefix, and these bytes go after them, as the frame's tail
    /// ([`SPLIT`](crate::frame::SPLIT)).
    pub tail: Option<Vec<u8>>,
}

impl From<ReplyKind> for Reply {
    fn from(kind: ReplyKind) -> Self {
        Reply { kind, tail: None }
    }
}

/// Runs task `T` on its arguments, appending the encoded outcome (or a message) to `out`; the
/// body of every [`TaskEntry`].
pub fn invoke<T: Task>(args: Payload<'_>, out: &mut Vec<u8>) -> Reply {
    let mark = out.len();
    let args: T::Args = match codec::decode_payload(args) {
        Ok(args) => args,
        Err(e) => {
            out.extend_from_slice(
                format!("failed to decode the arguments of task `{}`: {e}", T::NAME).as_bytes(),
            );
            return ReplyKind::BadArgs.into();
        }
    };
    let (kind, encoded) = match panic::catch(T::NAME, || T::call(args)) {
        Ok(Ok(value)) => (ReplyKind::Ok, codec::encode_split(value, out)),
        Ok(Err(error)) => (ReplyKind::Failed, codec::encode_split(error, out)),
        Err(info) => (
            ReplyKind::Panicked,
            codec::encode_into::<PanicInfo>(&info, out).map(|()| None),
        ),
    };
    match encoded {
        Ok(tail) => Reply { kind, tail },
        Err(e) => {
            out.truncate(mark);
            out.extend_from_slice(
                format!("failed to encode the result of task `{}`: {e}", T::NAME).as_bytes(),
            );
            ReplyKind::BadResult.into()
        }
    }
}

/// The outcome of one input of a chunk. Not public API: it is how `map` with a `chunksize`
/// carries many outcomes in one frame.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Item<O, E> {
    /// The task's value.
    Ok(O),
    /// The task's own error.
    Failed(E),
    /// The task panicked.
    Panicked(PanicInfo),
}

/// Runs task `T` on each of an encoded list of arguments, appending the encoded list of outcomes
/// to `out`: the body of [`TaskEntry::invoke_chunk`]. A panic fails its own input only.
pub fn invoke_chunk<T: Task>(args: &[u8], out: &mut Vec<u8>) -> ReplyKind {
    let mark = out.len();
    let args: Vec<T::Args> = match codec::decode(args) {
        Ok(args) => args,
        Err(e) => {
            out.extend_from_slice(
                format!("failed to decode the arguments of task `{}`: {e}", T::NAME).as_bytes(),
            );
            return ReplyKind::BadArgs;
        }
    };
    let items: Vec<Item<T::Output, T::Error>> = args
        .into_iter()
        .map(|args| match panic::catch(T::NAME, || T::call(args)) {
            Ok(Ok(value)) => Item::Ok(value),
            Ok(Err(error)) => Item::Failed(error),
            Err(info) => Item::Panicked(info),
        })
        .collect();
    match codec::encode_into(&items, out) {
        Ok(()) => ReplyKind::Ok,
        Err(e) => {
            out.truncate(mark);
            out.extend_from_slice(
                format!("failed to encode the result of task `{}`: {e}", T::NAME).as_bytes(),
            );
            ReplyKind::BadResult
        }
    }
}

/// The task table of this binary: [`TASKS`] with its names checked.
#[derive(Debug)]
pub struct TaskTable {
    duplicates: Vec<&'static str>,
    fingerprint: u64,
}

impl TaskTable {
    fn build() -> Self {
        let mut names = HashSet::with_capacity(TASKS.len());
        let mut duplicates = Vec::new();
        for entry in TASKS.iter() {
            if !names.insert(entry.name) {
                duplicates.push(entry.name);
            }
        }
        duplicates.sort_unstable();
        duplicates.dedup();
        TaskTable {
            duplicates,
            fingerprint: fingerprint(&TASKS),
        }
    }

    /// Names registered more than once (a start-up error).
    pub fn duplicates(&self) -> &[&'static str] {
        &self.duplicates
    }

    /// A hash of the tasks' names and types in table order, compared in the handshake.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The number of tasks.
    pub fn len(&self) -> usize {
        TASKS.len()
    }

    /// Whether the binary has no task.
    pub fn is_empty(&self) -> bool {
        TASKS.is_empty()
    }

    /// The entry at `index`.
    pub fn get(&self, index: u32) -> Option<&'static TaskEntry> {
        TASKS.get(usize::try_from(index).ok()?)
    }

    /// The index of `T` in the table, found from the address of its entry.
    pub fn index<T: Task>(&self) -> Option<u32> {
        let base = TASKS.as_ptr() as usize;
        let at = std::ptr::from_ref(T::entry()) as usize;
        let size = std::mem::size_of::<TaskEntry>();
        let index = at.checked_sub(base)? / size;
        (index < TASKS.len() && std::ptr::eq(&TASKS[index], T::entry()))
            .then(|| u32::try_from(index).ok())
            .flatten()
    }
}

/// The task table of this binary, built on first use.
pub fn table() -> &'static TaskTable {
    static TABLE: OnceLock<TaskTable> = OnceLock::new();
    TABLE.get_or_init(TaskTable::build)
}

#[cfg(test)]
mod test;
