//! The request stream as the serve loop and the watcher share it.
//!
//! The serve loop takes one request at a time. While a task runs long, the watcher thread reads
//! ahead what has arrived, so that a [`RequestKind::Revoke`] for a call still waiting behind the
//! running task is seen at once: the call is marked to be skipped and answered
//! [`ReplyKind::Revoked`](crate::frame::ReplyKind::Revoked) by the watcher. Both sides hold the
//! inlet's lock while they read, so a call is either taken by the serve loop (and runs) or
//! skipped (and never runs), never both.

use std::io::{self, Read};

use super::{Request, ServeError, read_request};
use crate::frame::{self, RequestKind};

/// The room a read of requests starts with: a few frames of small tasks. It doubles, up to
/// [`READ_SIZE`], each time a read fills it (a worker that idles keeps its memory small).
const FIRST_READ: usize = 4 << 10;

/// The most one read of requests takes.
const READ_SIZE: usize = 64 << 10;

/// The most the watcher reads ahead: past this, a revocation behind a large argument waits for
/// the running task (the call is then simply run). The serve loop is not bound by it.
pub(crate) const AHEAD_MAX: usize = crate::frame::READ_AHEAD;

/// Frames at least this large are read straight into their body, not through the buffer.
const DIRECT: usize = 64 << 10;

/// The request stream and the bytes read from it ahead of the serve loop.
pub(crate) struct Inlet<R> {
    input: R,
    /// Bytes read and not yet taken: `buf[start..end]`, whole frames then maybe part of one.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// How far past `start` the bytes have been looked at for revocations.
    scanned: usize,
    /// Calls revoked before they started: the serve loop drops them when it meets them.
    skip: Vec<u64>,
    /// The room the serve loop's next read offers.
    room: usize,
}

impl<R: Read> Inlet<R> {
    pub(crate) fn new(input: R) -> Self {
        Inlet {
            input,
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
            skip: Vec::new(),
            room: FIRST_READ,
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The next call to run, into `body` (from its kind byte on) and, when split, its tail;
    /// `None` when the stream ends between frames. Revocations and revoked calls are passed
    /// over.
    pub(crate) fn next(&mut self, body: &mut Vec<u8>) -> Result<Option<Request>, ServeError> {
        loop {
            let Some((header, kind, tail)) = self.next_frame(body)? else {
                return Ok(None);
            };
            if kind == RequestKind::Revoke {
                // Its call started before the revocation was seen: the call's reply answers it.
                continue;
            }
            if let Some(at) = self.skip.iter().position(|id| *id == header.id) {
                self.skip.swap_remove(at);
                continue;
            }
            return Ok(Some((header, kind, tail)));
        }
    }

    /// The next frame, whatever its kind, read through the buffer (many small frames per read)
    /// or, for a large one, straight into `body`.
    fn next_frame(&mut self, body: &mut Vec<u8>) -> Result<Option<Request>, ServeError> {
        loop {
            if let Some(wanted) = frame::wanted(self.data())
                && (wanted == 0 || self.end - self.start + wanted >= DIRECT)
            {
                return self.take(body);
            }
            if self.fill()? == 0 {
                // The stream ended: cleanly between frames, or inside one (an error).
                return if self.start == self.end {
                    Ok(None)
                } else {
                    self.take(body)
                };
            }
        }
    }

    /// Reads the frame at the front: the buffered bytes, then the stream.
    fn take(&mut self, body: &mut Vec<u8>) -> Result<Option<Request>, ServeError> {
        let held = &self.buf[self.start..self.end];
        let mut source = held.chain(&mut self.input);
        let result = read_request(&mut source, body);
        let left = source.into_inner().0.len();
        let used = (self.end - self.start) - left;
        self.start += used;
        self.scanned = self.scanned.saturating_sub(used);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        result
    }

    /// One read of whatever has arrived (blocking until something has); 0 at the end.
    fn fill(&mut self) -> io::Result<usize> {
        let n = self.read_at_most(self.room)?;
        if n == self.room {
            self.room = (self.room * 2).min(READ_SIZE);
        }
        Ok(n)
    }

    /// Reads at most `most` bytes into the buffer, growing it to `most` bytes of room.
    fn read_at_most(&mut self, most: usize) -> io::Result<usize> {
        if self.start > 0 && self.buf.len() - self.end < most {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < most {
            self.buf.resize(self.end + most, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.end..self.end + most]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the watcher may read ahead no more.
    pub(crate) fn full(&self) -> bool {
        self.end - self.start >= AHEAD_MAX
    }

    /// The watcher's turn: reads the `available` bytes that have arrived (so the read does not
    /// block) up to [`AHEAD_MAX`] held, and returns the calls it revokes: each call that a
    /// revocation read here names and that waits here, not started.
    pub(crate) fn absorb(&mut self, available: usize) -> io::Result<Vec<u64>> {
        let room = AHEAD_MAX.saturating_sub(self.end - self.start);
        let mut want = available.min(room);
        while want > 0 {
            match self.read_at_most(want)? {
                0 => break,
                n => want -= n,
            }
        }
        Ok(self.scan())
    }

    /// Looks at the whole frames not looked at yet, for revocations of calls held here.
    fn scan(&mut self) -> Vec<u64> {
        let mut revoked = Vec::new();
        loop {
            let data = &self.buf[self.start..self.end];
            let Ok(Some((frame, used))) = frame::parse(&data[self.scanned..], u32::MAX) else {
                // Part of a frame, or a bad one (the serve loop reports it when it gets there).
                return revoked;
            };
            // The same job may be held twice (given back, then sent here again while the first
            // frame still waits to be passed over): each held call is skipped once.
            if frame.kind == RequestKind::Revoke as u8
                && calls_held(&data[..self.scanned], frame.id)
                    > self.skip.iter().filter(|id| **id == frame.id).count()
            {
                self.skip.push(frame.id);
                revoked.push(frame.id);
            }
            self.scanned += used;
        }
    }
}

/// How many calls with job id `id` the whole frames in `data` hold.
fn calls_held(mut data: &[u8], id: u64) -> usize {
    let mut held = 0;
    while let Ok(Some((frame, used))) = frame::parse(data, u32::MAX) {
        if frame.id == id && frame.kind != RequestKind::Revoke as u8 {
            held += 1;
        }
        data = &data[used..];
    }
    held
}
