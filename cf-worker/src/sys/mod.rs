//! Everything unsafe in the worker crate.
//!
//! A platform provides: taking ownership of the protocol fds the parent placed at fixed numbers
//! (and marking them close-on-exec), removing the worker marker from the environment, the
//! shared memory of the reply ring ([`Shm`]), and, best effort, huge pages behind a large buffer
//! about to be filled (`huge_pages`).
#![allow(unsafe_code)]
#![allow(
    clippy::disallowed_methods,
    reason = "this module is where raw fds become owned ones"
)]

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;
#[cfg(target_os = "linux")]
mod shm;
#[cfg(target_os = "linux")]
pub(crate) use shm::Shm;

#[cfg(not(target_os = "linux"))]
mod shell;
#[cfg(not(target_os = "linux"))]
pub(crate) use shell::*;
