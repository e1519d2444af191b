//! Everything unsafe in the worker crate.
//!
//! A platform provides: taking ownership of the protocol fds the parent placed at fixed numbers
//! (and marking them close-on-exec), and removing the worker marker from the environment; and,
//! best effort, huge pages behind a large buffer about to be filled (`huge_pages`).
#![allow(unsafe_code)]
#![allow(
    clippy::disallowed_methods,
    reason = "this module is where raw fds become owned ones"
)]

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
mod shell;
#[cfg(not(target_os = "linux"))]
pub(crate) use shell::*;
