//! The one place where a task's panic is caught and turned into data.

use std::cell::RefCell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Once, OnceLock};

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
    static TASK: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Where a panic goes in a binary built with `panic = "abort"`, before the process aborts.
static LAST_WORDS: OnceLock<Report> = OnceLock::new();

type Report = Box<dyn Fn(&PanicInfo) + Send + Sync>;

/// Sets what a worker does with a panic that is about to abort the process: tell the parent.
pub(crate) fn on_abort(f: impl Fn(&PanicInfo) + Send + Sync + 'static) {
    let _ = LAST_WORDS.set(Box::new(f));
}

/// The text of a panic payload (`"Box<dyn Any>"` when it is not a string).
pub fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let location = info.location().map(|l| Location {
                file: l.file().to_owned(),
                line: l.line(),
                column: l.column(),
            });
            if cfg!(panic = "abort") {
                // No unwinding will reach `catch`: report the panic now, from the hook.
                if let (Some(report), Some(task)) =
                    (LAST_WORDS.get(), TASK.with(|t| t.borrow().clone()))
                {
                    report(&PanicInfo {
                        message: message(info.payload()),
                        location: location.clone(),
                        task,
                        pid: std::process::id(),
                    });
                }
            }
            LAST.with(|last| *last.borrow_mut() = location);
            // A task's panic comes back to the parent as its future's error, which says all the
            // default hook would: printing it here too would show it twice (the parent forwards
            // this stderr). With `RUST_BACKTRACE` set, the hook still prints, for the backtrace.
            let caught = cfg!(panic = "unwind") && TASK.with(|t| t.borrow().is_some());
            if !caught || backtrace_wanted() {
                previous(info);
            }
        }));
    });
}

/// Whether `RUST_BACKTRACE` asks for backtraces.
fn backtrace_wanted() -> bool {
    static WANTED: OnceLock<bool> = OnceLock::new();
    *WANTED.get_or_init(|| std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0"))
}

/// Runs `f`, turning a panic into a [`PanicInfo`] for task `task`.
///
/// # Errors
/// `f` panicked.
pub fn catch<R>(task: &str, f: impl FnOnce() -> R) -> Result<R, PanicInfo> {
    install_hook();
    TASK.with(|t| *t.borrow_mut() = Some(task.to_owned()));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    TASK.with(|t| *t.borrow_mut() = None);
    result.map_err(|payload| {
        let message = message(&*payload);
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
