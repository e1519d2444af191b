//! The one place where a task's panic is caught and turned into data.

use std::cell::RefCell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use serde::{Deserialize, Serialize};

/// Where a panic happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    /// Source file.
    pub file: String,
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A panic inside a task, as data that crosses the process boundary.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PanicInfo {
    /// The panic message (`"Box<dyn Any>"` when the payload was not a string).
    pub message: String,
    /// Where it panicked, when known.
    pub location: Option<Location>,
    /// The task that panicked.
    pub task: String,
    /// The process it panicked in.
    pub pid: u32,
}

impl fmt::Display for PanicInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task `{}` panicked", self.task)?;
        if let Some(location) = &self.location {
            write!(f, " at {location}")?;
        }
        write!(f, " (pid {}): {}", self.pid, self.message)
    }
}

thread_local! {
    static LAST: RefCell<Option<Location>> = const { RefCell::new(None) };
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            LAST.with(|last| {
                *last.borrow_mut() = info.location().map(|l| Location {
                    file: l.file().to_owned(),
                    line: l.line(),
                    column: l.column(),
                });
            });
            previous(info);
        }));
    });
}

/// Runs `f`, turning a panic into a [`PanicInfo`] for task `task`.
///
/// # Errors
/// `f` panicked.
pub fn catch<R>(task: &str, f: impl FnOnce() -> R) -> Result<R, PanicInfo> {
    install_hook();
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_owned()
        };
        // Drop the payload here, under a guard: a payload whose Drop panics must not escape.
        let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
        PanicInfo {
            message,
            location: LAST.with(|last| last.borrow_mut().take()),
            task: task.to_owned(),
            pid: std::process::id(),
        }
    })
}
