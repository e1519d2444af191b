//! The parent's buffers for one worker: bytes on their way out, bytes read and not yet parsed.
//! Pure: the driver does the reads and writes, into [`InBuf::space`] and from [`Outbox::front`].
//!
//! Small frames are copied together so that one `write` carries many; a large argument is
//! written in place from its job, never copied. The read buffer grows to the frame in progress,
//! zeroes new space once, and gives memory back after a large frame.

use std::collections::VecDeque;

use cf_worker::frame::{self, RequestKind};

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
    /// A written `Bytes` segment's buffer, emptied, for the next one: the outbox allocates only
    /// while its batches grow. One larger than [`IN_PLACE`] is not kept.
    spare: Vec<u8>,
}

impl Outbox {
    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    fn bytes(&mut self) -> &mut Vec<u8> {
        if !matches!(self.segments.back(), Some(Segment::Bytes(_))) {
            let bytes = std::mem::take(&mut self.spare);
            self.segments.push_back(Segment::Bytes(bytes));
        }
        match self.segments.back_mut() {
            Some(Segment::Bytes(bytes)) => bytes,
            _ => unreachable!("pushed just above"),
        }
    }

    /// Queues a request to give back job `id` if it has not started.
    pub(crate) fn push_revoke(&mut self, id: u64) {
        frame::push(self.bytes(), RequestKind::Revoke as u8, id, 0, &[]);
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

    /// The bytes to write next, if any. `args` finds a job's argument bytes by id.
    pub(crate) fn front<'s, 'a: 's>(
        &'s mut self,
        args: impl Fn(u64) -> Option<&'a [u8]>,
    ) -> Option<&'s [u8]> {
        loop {
            let len = match self.segments.front()? {
                Segment::Bytes(bytes) => bytes.len(),
                // A job leaves only with its reply, after its frame was written whole.
                Segment::Args(id) => args(*id).map_or(0, <[u8]>::len),
            };
            if self.pos < len {
                break;
            }
            if let Some(Segment::Bytes(mut bytes)) = self.segments.pop_front()
                && bytes.capacity() <= IN_PLACE
                && bytes.capacity() > self.spare.capacity()
            {
                bytes.clear();
                self.spare = bytes;
            }
            self.pos = 0;
        }
        let bytes = match self.segments.front()? {
            Segment::Bytes(bytes) => &bytes[..],
            Segment::Args(id) => args(*id)?,
        };
        Some(&bytes[self.pos..])
    }

    /// `n` bytes of [`front`](Self::front) were written.
    pub(crate) fn advance(&mut self, n: usize) {
        self.pos += n;
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

    /// Room for the next read, after the bytes held.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        self.make_room();
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`space`](Self::space).
    pub(crate) fn filled(&mut self, n: usize) {
        self.end += n;
        debug_assert!(self.end <= self.buf.len());
    }
}

#[cfg(test)]
mod test;
