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

pub use codec::{CodecError, decode, encode_into, encode_to};
#[doc(hidden)]
pub use linkme;
pub use panic::{Location, PanicInfo, catch as catch_panic, message as panic_message};
pub use task::{Item, Never, TASKS, Task, TaskEntry, TaskTable, invoke, invoke_chunk, table};
