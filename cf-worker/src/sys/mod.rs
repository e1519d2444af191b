//! Everything unsafe in the worker crate.
//!
//! A platform provides: taking ownership of the protocol fds the parent placed at fixed numbers
//! (and marking them close-on-exec), and removing the worker marker from the environment.
#![allow(unsafe_code)]
#![allow(
    clippy::disallowed_methods,
    reason = "this module is where raw fds become owned ones"
)]

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(not(unix))]
mod shell;
#[cfg(not(unix))]
pub(crate) use shell::*;
