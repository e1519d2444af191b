//! Everything unsafe in the runtime crate.
//!
//! A platform provides: [`spawn_worker`] (start this binary as a worker with the protocol pipes on
//! the worker's fixed fds, dying with its parent), [`pidfd`] (an fd that becomes readable when a
//! child exits), [`pipe`] (close-on-exec pipes), [`signal_name`], and for the I/O thread a
//! [`Poller`], non-blocking [`read`] (also into a buffer's spare capacity, [`read_spare`]) and
//! [`write`], and a wake-up pipe ([`wake_pipe`]).
#![allow(unsafe_code)]
#![allow(
    clippy::disallowed_methods,
    reason = "this module is where raw fds become owned ones"
)]

#[cfg(target_os = "linux")]
mod poll;
#[cfg(target_os = "linux")]
pub(crate) use poll::*;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
mod shell;
#[cfg(not(target_os = "linux"))]
pub(crate) use shell::*;
