//! cf: Python's `concurrent.futures`, with every `#[task]` run in a crash-isolated worker process.
#![deny(unsafe_code)]

extern crate self as cf;

pub use cf_macros::task;
pub use cf_runtime::*;
pub use cf_worker::{Location, Never, PanicInfo, Task};

/// What `#[task]` expands to names only this module. Not public API: it may change in any
/// release.
#[doc(hidden)]
pub mod __private {
    pub use cf_worker::linkme;
    pub use cf_worker::{Never, TASKS, Task, TaskEntry};

    /// Compile-time check, spanned at a parameter or return type by `#[task]`: values that
    /// cross the process boundary must be serde values that can move between threads.
    pub const fn assert_value<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static>()
    {
    }
}
