//! Why a process pool is broken: [`BrokenCause`], [`StartupFailure`] and [`HandshakeError`].

use std::fmt;
use std::io;

use super::Exit;

/// Why a process pool is broken and runs no more tasks (Python's `BrokenProcessPool`).
///
/// Carried by [`TaskError::Broken`](crate::TaskError::Broken) and by the [`Error`](crate::Error)
/// a broken pool's `submit` returns ([`Error::broken_cause`](crate::Error::broken_cause)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokenCause {
    /// Workers failed to start, `failures` in a row; `last` says why the last one did.
    Startup {
        /// Start-up failures in a row.
        failures: u32,
        /// Why the last worker failed to start.
        last: StartupFailure,
    },
    /// A worker was refused at its handshake for a reason every replacement would share (it runs
    /// another build of the program): `last` says which.
    Refused {
        /// The refusal.
        last: StartupFailure,
    },
    /// Worker processes could not be started (`fork` or `exec` failed, say for lack of processes
    /// or fds) for `during`, retried `tries` times with backoff; `last` is the last failure.
    CannotStart {
        /// How many starts failed in a row.
        tries: u32,
        /// How long starts kept failing.
        during: std::time::Duration,
        /// The last failure.
        last: StartupFailure,
    },
    /// The pool's I/O thread stopped (it panicked): nothing drives the workers any more.
    IoThreadStopped,
}

impl fmt::Display for BrokenCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokenCause::Startup { failures, last } => {
                write!(
                    f,
                    "{failures} workers in a row failed to start; the last: {last}"
                )
            }
            BrokenCause::Refused { last } => last.fmt(f),
            BrokenCause::CannotStart {
                tries,
                during,
                last,
            } => write!(
                f,
                "worker processes failed to start for {during:?} ({tries} tries); the last: {last}"
            ),
            BrokenCause::IoThreadStopped => f.write_str("the pool's i/o thread stopped"),
        }
    }
}

/// Why one worker process failed to start.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartupFailure {
    /// The pool's initializer failed in the worker.
    Initializer {
        /// The initializer task.
        task: String,
        /// What it reported: its panic message, or that it returned an error.
        message: String,
    },
    /// The worker exited before it was ready.
    Exited {
        /// The worker's pid.
        pid: u32,
        /// How it ended.
        exit: Exit,
    },
    /// The parent refused the worker's handshake.
    Handshake {
        /// The worker's pid.
        pid: u32,
        /// What did not match.
        reason: HandshakeError,
    },
    /// The worker process could not be spawned.
    Spawn {
        /// The kind of the I/O error.
        kind: io::ErrorKind,
        /// The I/O error's message.
        message: String,
    },
}

impl StartupFailure {
    pub(crate) fn spawn(e: &io::Error) -> Self {
        StartupFailure::Spawn {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl fmt::Display for StartupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupFailure::Initializer { task, message } => {
                write!(f, "the initializer `{task}` failed: {message}")
            }
            StartupFailure::Exited { pid, exit } => {
                write!(f, "worker (pid {pid}) exited during start-up with {exit}")
            }
            StartupFailure::Handshake { pid, reason } => {
                write!(f, "worker (pid {pid}) failed the handshake: {reason}")
            }
            StartupFailure::Spawn { message, .. } => {
                write!(f, "failed to start a worker process: {message}")
            }
        }
    }
}

/// Why the parent refused a worker's handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The first frame was not a hello frame.
    NotHello {
        /// The kind byte of the frame it sent.
        kind: u8,
    },
    /// The worker speaks another protocol version.
    ProtocolVersion {
        /// The worker's version.
        worker: u32,
        /// The parent's version.
        expected: u32,
    },
    /// The worker's task table differs from the parent's (another build of the binary).
    TaskTableDiffers,
    /// The worker sent no hello within `limit` of its start.
    Silent {
        /// The deadline it missed.
        limit: std::time::Duration,
    },
}

impl HandshakeError {
    /// Whether every replacement would be refused too (another build of the program).
    pub(crate) fn is_final(&self) -> bool {
        matches!(
            self,
            HandshakeError::ProtocolVersion { .. } | HandshakeError::TaskTableDiffers
        )
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::NotHello { kind } => {
                write!(f, "expected a hello frame, got kind {kind:#04x}")
            }
            HandshakeError::ProtocolVersion { worker, expected } => {
                write!(f, "protocol version {worker} where {expected} was expected")
            }
            HandshakeError::TaskTableDiffers => {
                f.write_str("the worker's task table differs from the parent's")
            }
            HandshakeError::Silent { limit } => write!(f, "it sent no hello within {limit:?}"),
        }
    }
}

/// How a worker broke the protocol between it and its parent ([`TaskError::Protocol`]).
///
/// [`TaskError::Protocol`]: crate::TaskError::Protocol
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A frame with an impossible or too large length.
    Frame(cf_worker::frame::FrameError),
    /// Its first frame was refused.
    Handshake(HandshakeError),
    /// A reply of a kind the protocol does not have.
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// A reply for a job that it was not running.
    NotRunning {
        /// The job the reply named.
        id: u64,
    },
    /// Its reply stream ended (or its request stream broke) and it did not exit: its task took
    /// over the protocol's pipes, or a process it started holds them.
    Closed,
    /// It died in the middle of a frame: `have` bytes of it came, of `total` when the length
    /// had come.
    CutShort {
        /// The bytes that came.
        have: usize,
        /// The frame's whole length, if known.
        total: Option<usize>,
    },
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolViolation::Frame(e) => e.fmt(f),
            ProtocolViolation::Handshake(e) => e.fmt(f),
            ProtocolViolation::UnknownKind { kind } => write!(f, "unknown reply kind {kind:#04x}"),
            ProtocolViolation::NotRunning { id } => {
                write!(f, "reply for job {id} which it was not running")
            }
            ProtocolViolation::Closed => {
                f.write_str("its protocol stream closed while it went on running")
            }
            ProtocolViolation::CutShort {
                have,
                total: Some(total),
            } => write!(
                f,
                "the worker died in the middle of a frame ({have} bytes of {total})"
            ),
            ProtocolViolation::CutShort { have, total: None } => {
                write!(f, "the worker died in the middle of a frame ({have} bytes)")
            }
        }
    }
}
