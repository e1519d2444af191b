//! The parent's buffers for one worker: bytes on their way out, bytes read and not yet parsed.
//! Pure: the driver does the reads and writes, into [`InBuf::space`] and from [`Outbox::front`].
//!
//! Small frames are copied together so that one `write` carries many; a large argument is
//! written in place from its job, never copied. The read buffer grows to the frame in progress,
//! zeroes new space once, and gives memory back after a large frame. The tail of a split frame
//! ([`frame::SPLIT`]) is read apart, into spare capacity of the buffer its value then keeps.

use std::collections::VecDeque;

use cf_worker::frame::{self, RequestKind};

/// Payloads at least this large are written from their job instead of being copied.
const IN_PLACE: usize = 64 << 10;

/// The read buffer's size when idle; a larger one is given back once empty.
const IDLE_SIZE: usize = 64 << 10;

/// The most a read buffer grows by at a time.
const STEP: usize = 64 << 20;

/// A split frame's tail this large is read into huge pages (see `cf_worker::huge_pages`).
const HUGE_AT: usize = 4 << 20;

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

    /// Queues a split call frame ([`frame::SPLIT`]) for job `id`: its header and length prefix,
    /// then the `len` raw bytes of its argument, which stay with the job and are written from it.
    pub(crate) fn push_split_call(&mut self, kind: u8, id: u64, task: u32, len: usize) {
        let out = self.bytes();
        let start = frame::begin(out, id, task);
        cf_worker::bytes_prefix(len, out);
        frame::finish_split(out, start, kind, len);
        self.segments.push_back(Segment::Args(id));
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

/// Where the next read from a worker goes: see [`InBuf::space`].
pub(crate) enum Room<'a> {
    /// Into this slice.
    Slice(&'a mut [u8]),
    /// Appended to this buffer, in its spare capacity, at most this many bytes: the tail of a
    /// split frame, read into the buffer its value keeps.
    Spare(&'a mut Vec<u8>, usize),
}

#[cfg(test)]
impl Room<'_> {
    /// Copies what fits of `bytes` in, as a read would; returns how many.
    pub(crate) fn fill_from(self, bytes: &[u8]) -> usize {
        match self {
            Room::Slice(buf) => {
                let n = buf.len().min(bytes.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                n
            }
            Room::Spare(buf, max) => {
                let n = max.min(buf.capacity() - buf.len()).min(bytes.len());
                buf.extend_from_slice(&bytes[..n]);
                n
            }
        }
    }
}

/// The split frame ([`frame::SPLIT`]) whose tail is read apart from the other bytes.
struct Split {
    /// Where its head (length, header and the byte string's length prefix) starts in `buf`.
    at: usize,
    /// The size of its head.
    head: usize,
    /// Its tail so far: the byte string's bytes.
    tail: Vec<u8>,
    /// The size of the whole tail.
    len: usize,
}

impl Split {
    fn whole(&self) -> bool {
        self.tail.len() == self.len
    }
}

/// Reserves `n` more bytes for a split frame's tail, in huge pages when large.
fn reserve(tail: &mut Vec<u8>, n: usize) {
    tail.reserve_exact(n);
    if n >= HUGE_AT {
        cf_worker::huge_pages(tail);
    }
}

/// A split frame taken whole from the buffer: its header, and its tail.
pub(crate) struct SplitFrame {
    pub(crate) kind: u8,
    pub(crate) id: u64,
    pub(crate) aux: u32,
    pub(crate) tail: Vec<u8>,
}

/// Bytes read from a worker and not yet parsed: `buf[start..end]`, and the tail of a split frame
/// in a buffer of its own.
#[derive(Default)]
pub(crate) struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Where the first frame that is not whole starts (`start..=end`), past a split frame's head
    /// once its tail is whole.
    open: usize,
    /// The split frame at `open` (or, once its tail is whole, before it).
    split: Option<Split>,
    /// The last [`space`](Self::space) was a split frame's tail.
    into_tail: bool,
}

impl InBuf {
    /// The bytes held in `buf`. A split frame's head is among them, without its tail: see
    /// [`take_split`](Self::take_split).
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end && self.split.is_none()
    }

    /// How many bytes are held, and how many the first frame has in all once its length is
    /// known: what a worker that died mid-frame had sent.
    pub(crate) fn held(&self) -> (usize, Option<usize>) {
        let tail = self.split.as_ref().map_or(0, |split| split.tail.len());
        let data = self.data();
        let total = frame::wanted(data).map(|missing| data.len() + missing);
        (data.len() + tail, total)
    }

    /// The split frame whose head starts `at` bytes into [`data`](Self::data), if its tail is
    /// whole: its header and tail, and the size of its head (what it takes of `data`).
    pub(crate) fn take_split(&mut self, at: usize) -> Option<(SplitFrame, usize)> {
        let split = self.split.as_ref()?;
        if split.at != self.start + at || !split.whole() {
            return None;
        }
        let split = self.split.take()?;
        let header = frame::Header::read(&self.buf[split.at + 4..])?;
        let frame = SplitFrame {
            kind: header.kind,
            id: header.id,
            aux: header.aux,
            tail: split.tail,
        };
        Some((frame, split.head))
    }

    /// Drops `n` parsed bytes from the front.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        self.open = self.open.max(self.start);
        if self.start == self.end && self.split.is_none() {
            self.start = 0;
            self.end = 0;
            self.open = 0;
            if self.buf.len() > IDLE_SIZE {
                self.buf = Vec::new();
            }
        }
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        self.split = None;
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
            self.open -= self.start;
            if let Some(split) = &mut self.split {
                split.at -= self.start;
            }
            self.start = 0;
            if self.end < self.buf.len() {
                return;
            }
        }
        let wanted = frame::wanted(&self.buf[self.open..self.end])
            .unwrap_or(0)
            .clamp(IDLE_SIZE, STEP);
        self.buf.resize(self.end + wanted, 0);
    }

    /// Room for the next read: after the bytes held or, while a split frame's tail is read,
    /// after that (a frame of at most `max` bytes that is split and not yet whole is read so).
    pub(crate) fn space(&mut self, max: u32) -> Room<'_> {
        if self.split.is_none() {
            self.begin_split(max);
        }
        let into_tail = self.split.as_ref().is_some_and(|split| !split.whole());
        self.into_tail = into_tail;
        if !into_tail {
            self.make_room();
        }
        let InBuf {
            buf, end, split, ..
        } = self;
        match split {
            Some(split) if into_tail => {
                let left = split.len - split.tail.len();
                if split.tail.len() == split.tail.capacity() {
                    reserve(&mut split.tail, left.min(STEP));
                }
                Room::Spare(&mut split.tail, left)
            }
            _ => Room::Slice(&mut buf[*end..]),
        }
    }

    /// Starts reading the frame at `open` as split, if it is one whose head is here and whose
    /// tail is not: the part of the tail read already moves to the tail's buffer.
    fn begin_split(&mut self, max: u32) {
        let data = &self.buf[self.open..self.end];
        let Some(header) = data.get(4..).and_then(frame::Header::read) else {
            return;
        };
        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        if header.kind & frame::SPLIT == 0 || len > max {
            return;
        }
        let at = 4 + frame::HEADER_LEN;
        let Some((tail, size)) = data.get(at..).and_then(cf_worker::read_prefix) else {
            return;
        };
        let head = at + size;
        let Ok(tail) = usize::try_from(tail) else {
            return;
        };
        let have = data.len() - head;
        if (head - 4).checked_add(tail) != Some(len as usize) || have >= tail {
            // Not split as it says, or whole already: parsed as any frame.
            return;
        }
        let mut bytes = Vec::new();
        reserve(&mut bytes, tail.min(STEP).max(have));
        bytes.extend_from_slice(&data[head..]);
        self.end = self.open + head;
        self.split = Some(Split {
            at: self.open,
            head,
            tail: bytes,
            len: tail,
        });
    }

    /// `n` bytes were read into [`space`](Self::space).
    pub(crate) fn filled(&mut self, n: usize) {
        if self.into_tail {
            // The tail's buffer took them (and counts them).
            if let Some(split) = self.split.as_ref().filter(|split| split.whole()) {
                self.open = split.at + split.head;
            }
        } else {
            self.end += n;
            debug_assert!(self.end <= self.buf.len());
        }
        self.walk();
    }

    /// Moves `open` past the frames that are whole.
    fn walk(&mut self) {
        if self.split.as_ref().is_some_and(|split| !split.whole()) {
            return;
        }
        while let Some(0) = frame::wanted(&self.buf[self.open..self.end]) {
            let len = u32::from_le_bytes(
                self.buf[self.open..self.open + 4]
                    .try_into()
                    .expect("4 bytes"),
            );
            self.open += 4 + len as usize;
        }
    }
}

#[cfg(test)]
mod test;
