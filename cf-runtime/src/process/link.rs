//! The seam between the scheduler and how a worker is reached and supervised.
//!
//! The dispatcher (`dispatch.rs`) knows workers only by [`WorkerId`](super::dispatch::WorkerId)
//! and pid; the driver (`driver.rs`) owns one [`Link`] per worker and one [`Launch`] per pool.
//! Two kinds implement them: the local one (`local.rs`, `spawner.rs`), a child process with a
//! request pipe, a reply ring in shared memory (the result pipe its doorbell), a stderr pipe and
//! a pidfd; and the remote one (`remote/`), a TCP stream to a worker under an agent, its death
//! reported by the agent. The scheduler and the driver do not know which they drive. See
//! `README.md` beside this file.

use std::io;

use super::dispatch::Sig;
use super::forward::Outputs;
use crate::error::Exit;
use crate::sys::Poller;

/// What a link's fds reported in one turn of the poll loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ready(u8);

impl Ready {
    /// Reply bytes (or their end) can be read.
    pub(crate) const READABLE: Ready = Ready(1);
    /// Request bytes can be written.
    pub(crate) const WRITABLE: Ready = Ready(2);
    /// The worker has exited: read what is left, then [`Link::reap`].
    pub(crate) const EXITED: Ready = Ready(4);
    /// Diagnostic output (stderr) is waiting.
    pub(crate) const OUTPUT: Ready = Ready(8);

    /// `self` with `other` added when `on`.
    #[must_use]
    pub(crate) fn with(self, other: Ready, on: bool) -> Ready {
        if on { Ready(self.0 | other.0) } else { self }
    }

    pub(crate) fn readable(self) -> bool {
        self.0 & Self::READABLE.0 != 0
    }

    pub(crate) fn writable(self) -> bool {
        self.0 & Self::WRITABLE.0 != 0
    }

    pub(crate) fn exited(self) -> bool {
        self.0 & Self::EXITED.0 != 0
    }

    pub(crate) fn output(self) -> bool {
        self.0 & Self::OUTPUT.0 != 0
    }
}

/// One worker, as the driver reaches it.
pub(crate) trait Link: Send {
    /// The worker's pid, for errors and logs.
    fn pid(&self) -> u32;

    /// The machine it runs on when that is not this one (`cn17 (rank 3)`), for errors and logs.
    fn node(&self) -> Option<&str> {
        None
    }

    /// Adds what to watch to `poller`: the reply stream, the request stream when `write`, what
    /// tells of the worker's exit, and its diagnostic output when `output`.
    fn register(&mut self, poller: &mut Poller, write: bool, output: bool);

    /// What the fds added by the last [`register`](Self::register) reported (and, for a link
    /// with a reply ring, whether bytes wait there). Also says that the driver is awake: see
    /// [`sleep`](Self::sleep).
    fn ready(&mut self, poller: &Poller) -> Ready;

    /// Whether reply bytes wait without a system call to find out (a reply ring); a stream's
    /// link says no and is found by polling.
    fn arrived(&self) -> bool {
        false
    }

    /// Says that the driver is about to sleep in `poll`, so that the worker wakes it through an
    /// fd the link registered; false when reply bytes came meanwhile (do not sleep). A stream
    /// needs nothing: its fd wakes the poll by itself.
    fn sleep(&mut self) -> bool {
        true
    }

    /// Reads reply bytes without blocking: `Ok(0)` at the end of the stream, `WouldBlock` when
    /// there are none yet.
    ///
    /// # Errors
    /// As `read(2)`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// [`read`](Self::read) into the spare capacity of `buf`, at most `max` bytes, which are
    /// appended to it (the tail of a large reply, read straight into the buffer its value keeps).
    /// This default zeroes the room first; a link that can read into uninitialized memory need
    /// not.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    fn read_spare(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let len = buf.len();
        let room = max.min(buf.capacity() - len);
        buf.resize(len + room, 0);
        let read = self.read(&mut buf[len..]);
        buf.truncate(len + *read.as_ref().unwrap_or(&0));
        read
    }

    /// Writes request bytes without blocking.
    ///
    /// # Errors
    /// As `write(2)`; `WouldBlock` when the stream is full.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;

    /// Closes the request stream: the worker exits once it has answered what it holds.
    fn close_requests(&mut self);

    /// Sends `sig` to the worker, unless it is already reaped.
    fn signal(&mut self, sig: Sig);

    /// Reads the worker's diagnostic output without blocking, queues it on `to` (the pool's
    /// forwarding thread prints it) and keeps its tail for [`last_words`](Self::last_words).
    fn forward_output(&mut self, to: &Outputs);

    /// How the worker ended; call once [`Ready::EXITED`] said so, or to wait for its end.
    fn reap(&mut self) -> Exit;

    /// The kept end of its diagnostic output, from the first whole line.
    fn last_words(&self) -> String;
}

/// A started worker (or why it could not start), and whether it was asked for as the spare.
pub(crate) type Started = (bool, io::Result<Box<dyn Link>>);

/// How a pool gets its workers.
pub(crate) trait Launch: Send {
    /// Asks for a worker, started in the background; false if no more can be asked for.
    fn request(&mut self, spare: bool) -> bool;

    /// The next worker started, without waiting.
    fn try_next(&mut self) -> Option<Started>;

    /// Waits for the next worker to start.
    fn next(&mut self) -> Option<Started>;
}
