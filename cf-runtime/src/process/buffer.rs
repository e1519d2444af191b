//! The parent's buffers for one worker: bytes on their way out, bytes read and not yet parsed.
//!
//! Small frames are copied together so that one `write` carries many; a large argument is
//! written in place from its job, never copied. The read buffer grows to the frame in progress,
//! zeroes new space once, and gives memory back after a large frame.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use cf_worker::frame;
use nix::errno::Errno;

/// Payloads at least this large are written from their job instead of being copied.
const IN_PLACE: usize = 64 << 10;

/// The read buffer's size when idle; a larger one is given back once empty.
const IDLE_SIZE: usize = 64 << 10;

/// The most a read buffer grows by at a time.
const STEP: usize = 64 << 20;

enum Segment {
    /// Bytes owned by the outbox: headers and small frames.
    Bytes(Vec<u8>),
    /// The argument bytes of the job with this id, written from the job itself.
    Args(u64),
}

/// Bytes on their way to a worker.
#[derive(Default)]
pub(crate) struct Outbox {
    segments: VecDeque<Segment>,
    /// How much of the front segment is written.
    pos: usize,
}

impl Outbox {
    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    fn bytes(&mut self) -> &mut Vec<u8> {
        if !matches!(self.segments.back(), Some(Segment::Bytes(_))) {
            self.segments.push_back(Segment::Bytes(Vec::new()));
        }
        match self.segments.back_mut() {
            Some(Segment::Bytes(bytes)) => bytes,
            _ => unreachable!("pushed just above"),
        }
    }

    /// Queues a call frame for job `id`, whose arguments `args` stay with the job and are looked
    /// up again by id when written.
    pub(crate) fn push_call(&mut self, kind: u8, id: u64, task: u32, args: &[u8]) {
        if args.len() < IN_PLACE {
            frame::push(self.bytes(), kind, id, task, args);
        } else {
            frame::push_header(self.bytes(), kind, id, task, args.len());
            self.segments.push_back(Segment::Args(id));
        }
    }

    /// Writes what it can without blocking. `args` finds a job's argument bytes by id.
    pub(crate) fn write<'a>(&mut self, fd: &OwnedFd, args: impl Fn(u64) -> Option<&'a [u8]>) {
        while let Some(segment) = self.segments.front() {
            let bytes = match segment {
                Segment::Bytes(bytes) => &bytes[..],
                // A job leaves only with its reply, after its frame was written whole.
                Segment::Args(id) => args(*id).unwrap_or_default(),
            };
            if self.pos < bytes.len() {
                match nix::unistd::write(fd, &bytes[self.pos..]) {
                    Ok(n) => self.pos += n,
                    Err(Errno::EINTR) => continue,
                    // EAGAIN: the pipe is full, wait for POLLOUT. EPIPE: the worker is gone, and
                    // its pidfd will say so.
                    Err(_) => return,
                }
            }
            if self.pos >= bytes.len() {
                self.segments.pop_front();
                self.pos = 0;
            }
        }
    }
}

/// Bytes read from a worker and not yet parsed: `buf[start..end]`.
#[derive(Default)]
pub(crate) struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drops `n` parsed bytes from the front.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > IDLE_SIZE {
                self.buf = Vec::new();
            }
        }
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        self.consume(self.end - self.start);
    }

    /// Makes room for the rest of the frame in progress (at least 64 KiB, at most 64 MiB more).
    fn make_room(&mut self) {
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end < self.buf.len() {
                return;
            }
        }
        let wanted = frame::wanted(self.data())
            .unwrap_or(0)
            .clamp(IDLE_SIZE, STEP);
        self.buf.resize(self.end + wanted, 0);
    }

    /// Reads what the pipe holds without blocking; false once it is at its end.
    pub(crate) fn fill(&mut self, fd: &OwnedFd) -> bool {
        loop {
            self.make_room();
            match nix::unistd::read(fd, &mut self.buf[self.end..]) {
                Ok(0) => return false,
                Ok(n) => self.end += n,
                Err(Errno::EINTR) => {}
                Err(_) => return true,
            }
        }
    }
}

#[cfg(test)]
mod test;
