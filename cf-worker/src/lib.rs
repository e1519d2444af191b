//! The worker side of [cf](https://docs.rs/concurrent-futures): everything that runs inside a
//! worker process.
//!
//! - [`Task`] and the link-time task registry ([`TASKS`]) that `#[task]` fills;
//! - the frame protocol ([`frame`]) and the codec behind it;
//! - the serve loop a worker runs, entered before `main` when the process was started as a
//!   worker (see [`start`]).
//!
//! Users never name this crate: the `cf` facade re-exports what they need.
#![deny(unsafe_code)]

mod codec;
pub mod frame;
pub mod logs;
mod panic;
#[doc(hidden)]
pub mod ring;
mod serve;
pub mod start;
mod sys;
mod task;

pub use codec::{
    CodecError, Payload, SPLIT_AT, bytes_prefix, decode, decode_payload, encode_into, encode_split,
    encode_to, prefix_size, read_prefix, split, unsplit,
};

/// Asks the kernel, best effort, for transparent huge pages behind the spare capacity of `buf`,
/// a buffer of many MiB about to be filled: it is then faulted in 2 MiB at a time rather than
/// 4 KiB. The parent's read buffer uses it too.
#[doc(hidden)]
pub fn huge_pages(buf: &mut Vec<u8>) {
    sys::huge_pages(buf);
}
#[doc(hidden)]
pub use linkme;
pub use panic::{Location, PanicInfo, catch as catch_panic, message as panic_message};
pub use task::{
    Item, Never, Reply, TASKS, Task, TaskEntry, TaskTable, invoke, invoke_chunk, table,
};
