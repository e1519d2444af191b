//! The reply ring: a worker on the parent's machine writes its replies into memory it shares
//! with the parent, instead of into the result pipe.
//!
//! A reply counts the moment it is in the ring: the memory is the parent's as much as the
//! worker's, so a worker killed right after writing loses nothing. The parent reads without a
//! system call while it is awake; the result pipe stays, as the doorbell and as the end of the
//! stream: the worker writes one byte to it only when the parent said it is going to sleep, and
//! its end (the worker's death, or a task that closed it) still reads as the end of the reply
//! stream.
//!
//! The region is a sealed memfd of [`LEN`] bytes: a control page of words, each on its own
//! cache line, then [`DATA_LEN`] bytes of data. Positions are byte counts that wrap at 2³²
//! (a multiple of the data size, so a position's offset in the data is the position modulo it).
//! - `HEAD`, bytes written: stored by the worker once the bytes are in;
//! - `TAIL`, bytes read: stored by the parent once it has copied them out;
//! - `SLEEPING`: set by the parent before it sleeps; the worker takes it (swaps it to 0) after
//!   publishing, and rings the doorbell if it was set;
//! - `WAITING`: set by the worker while the ring is full; the parent wakes it (a futex on `TAIL`)
//!   after making room;
//! - `STDERR_READ`, bytes the parent has read from the worker's stderr pipe, and `STDERR_SEQ`,
//!   odd while the parent reads that pipe (a sequence lock): with the bytes the pipe holds
//!   (`FIONREAD`) and the marker bytes it wrote itself, the worker knows exactly how many bytes
//!   of text its stderr has carried, and a task that wrote none needs no task-end marker (see
//!   `Marks`);
//! - `MARK_ALL`: set by the parent when it stops watching the ring (a task wrote over it): every
//!   task's end is marked from then on.
//!
//! Each side keeps its own position and only reads the other's: what a task scribbles over the
//! control page is caught as a position out of range, and over the data as a malformed frame.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::time::Duration;

use crate::sys::Shm;

/// Bytes of data a ring holds: large enough that a burst of small replies never waits, and that
/// a large reply moves in few turns.
pub const DATA_LEN: usize = 1 << 20;

/// The control page before the data.
const CONTROL: usize = 4096;

/// The whole region.
pub const LEN: usize = CONTROL + DATA_LEN;

const HEAD: usize = 0;
const TAIL: usize = 64;
const SLEEPING: usize = 128;
const WAITING: usize = 192;
const MARK_ALL: usize = 256;
const STDERR_SEQ: usize = 320;
const STDERR_READ: usize = 384;

/// How long a worker sleeps at most while the ring is full, before it looks again.
const ROOM_WAIT: Duration = Duration::from_millis(100);

/// `DATA_LEN` as a position (it fits: 2²⁰).
const DATA_POS: u32 = 1 << 20;

const _: () = assert!(DATA_POS as usize == DATA_LEN && DATA_LEN.is_power_of_two());

fn offset(pos: u32) -> usize {
    (pos & (DATA_POS - 1)) as usize
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the reply ring's {what} position is out of range: a task wrote over it"),
    )
}

/// The parent's end: reads what the worker wrote.
pub struct Reader {
    shm: Arc<Shm>,
    /// Bytes read, as this side counts them.
    tail: u32,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("tail", &self.tail).finish()
    }
}

impl Reader {
    /// A new, empty ring, and the memfd to hand to the worker.
    ///
    /// # Errors
    /// As `memfd_create(2)`, `ftruncate(2)` and `mmap(2)`.
    pub fn create() -> io::Result<(Reader, OwnedFd)> {
        let (shm, fd) = Shm::create(LEN)?;
        Ok((
            Reader {
                shm: Arc::new(shm),
                tail: 0,
            },
            fd,
        ))
    }

    fn unread(&self, order: std::sync::atomic::Ordering) -> io::Result<usize> {
        let head = self.shm.word(HEAD).load(order);
        let unread = head.wrapping_sub(self.tail) as usize;
        if unread > DATA_LEN {
            return Err(corrupt("write"));
        }
        Ok(unread)
    }

    /// Whether bytes are waiting (or the ring is corrupt, which [`read`](Self::read) reports).
    pub fn has_data(&self) -> bool {
        !matches!(self.unread(Acquire), Ok(0))
    }

    /// Copies waiting bytes into `buf`: `Ok(0)` when there are none (which is not the end of
    /// anything).
    ///
    /// # Errors
    /// `InvalidData` when the worker's position is out of range.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.readable(buf.len())?;
        if n > 0 {
            self.shm.read(CONTROL + offset(self.tail), &mut buf[..n]);
            self.consumed(n);
        }
        Ok(n)
    }

    /// As [`read`](Self::read), appending at most `max` bytes to `buf` within its capacity (no
    /// zeroing of the room first).
    ///
    /// # Errors
    /// `InvalidData` when the worker's position is out of range.
    pub fn read_spare(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let n = self.readable(max.min(buf.capacity() - buf.len()))?;
        if n > 0 {
            self.shm.append(CONTROL + offset(self.tail), n, buf);
            self.consumed(n);
        }
        Ok(n)
    }

    /// How many bytes a read of at most `room` takes now (up to the end of the data area).
    fn readable(&self, room: usize) -> io::Result<usize> {
        let unread = self.unread(Acquire)?;
        Ok(unread.min(room).min(DATA_LEN - offset(self.tail)))
    }

    /// `n` bytes were copied out: makes their room the worker's again.
    fn consumed(&mut self, n: usize) {
        self.tail = self.tail.wrapping_add(u32::try_from(n).unwrap_or(DATA_POS));
        self.shm.word(TAIL).store(self.tail, SeqCst);
        if self.shm.word(WAITING).load(SeqCst) != 0 {
            self.shm.wake(TAIL);
        }
    }

    /// Says that the parent is about to sleep, so that the worker rings the doorbell after its
    /// next write; false when bytes came meanwhile (do not sleep, read them).
    pub fn sleep(&self) -> bool {
        self.shm.word(SLEEPING).store(1, SeqCst);
        self.unread(SeqCst).is_ok_and(|n| n == 0)
    }

    /// Says that the parent is about to read the worker's stderr pipe; [`stderr_read`] says
    /// how much it read.
    ///
    /// [`stderr_read`]: Self::stderr_read
    pub fn stderr_reading(&self) {
        self.shm.word(STDERR_SEQ).fetch_add(1, SeqCst);
    }

    /// Says that the parent has read `n` bytes from the worker's stderr pipe since
    /// [`stderr_reading`](Self::stderr_reading), and is done reading.
    pub fn stderr_read(&self, n: usize) {
        // Wraps: the worker compares counts for equality only.
        let n = (n & 0xffff_ffff) as u32;
        self.shm.word(STDERR_READ).fetch_add(n, SeqCst);
        self.shm.word(STDERR_SEQ).fetch_add(1, SeqCst);
    }

    /// Says that every task's end must be marked from now on (this side stops watching).
    pub fn mark_all(&self) {
        self.shm.word(MARK_ALL).store(1, SeqCst);
    }

    /// Says that the parent is awake: no doorbell needed.
    pub fn awake(&self) {
        let sleeping = self.shm.word(SLEEPING);
        if sleeping.load(Relaxed) != 0 {
            sleeping.store(0, Relaxed);
        }
    }
}

/// The worker's end: a [`Write`] whose bytes the parent reads from the ring.
pub(crate) struct Writer {
    shm: Arc<Shm>,
    /// Bytes written, as this side counts them.
    head: u32,
    /// The result pipe.
    doorbell: File,
}

impl Writer {
    /// Maps the ring the parent created (`fd` may be closed afterwards); `doorbell` is the
    /// result pipe.
    pub(crate) fn open(fd: &OwnedFd, doorbell: File) -> io::Result<Writer> {
        let shm = Arc::new(Shm::open(fd, LEN)?);
        let head = shm.word(HEAD).load(Acquire);
        Ok(Writer {
            shm,
            head,
            doorbell,
        })
    }

    /// The result pipe.
    pub(crate) fn doorbell(&self) -> &File {
        &self.doorbell
    }

    /// What tells the serve loop whether a task's end needs its marker.
    pub(crate) fn marks(&self) -> Marks {
        Marks {
            shm: self.shm.clone(),
            marked: 0,
            text: 0,
            now: None,
        }
    }

    /// Rings the doorbell if the parent sleeps.
    fn ring(&self) {
        let sleeping = self.shm.word(SLEEPING);
        if sleeping.load(SeqCst) != 0 && sleeping.swap(0, SeqCst) != 0 {
            // A task may have closed the pipe: the parent then sees its end, and stops.
            let _ = (&self.doorbell).write_all(&[1]);
        }
    }

    /// Waits until the parent reads past `tail`, or [`ROOM_WAIT`] passes.
    fn wait_for_room(&self, tail: u32) {
        let waiting = self.shm.word(WAITING);
        waiting.store(1, SeqCst);
        if self.shm.word(TAIL).load(SeqCst) == tail {
            self.shm.wait(TAIL, tail, ROOM_WAIT);
        }
        waiting.store(0, Relaxed);
    }
}

/// The worker's count of its stderr's text: whether the end of a task needs a marker.
pub(crate) struct Marks {
    shm: Arc<Shm>,
    /// Marker bytes written to the pipe.
    marked: u32,
    /// Bytes of text (all but the markers) the pipe had carried by the last marker, as far as
    /// known: a count taken while the parent read is not known, and this one stays older.
    text: u32,
    /// The count [`needed`](Self::needed) took, if it could.
    now: Option<u32>,
}

impl Marks {
    /// Whether the task that just ended must close its output with a marker in `stderr` (the
    /// worker's copy of its stderr pipe): when text came since the last marker, or when that
    /// cannot be told (the parent was reading the pipe meanwhile). Markers waiting unread in the
    /// pipe are not text: they call for no more of themselves.
    ///
    /// Every byte the pipe has carried was read by the parent or is still in the pipe, so the
    /// text is what the parent read plus what the pipe holds, less the markers. The two agree
    /// only when no read of the parent overlaps the look: its sequence word is even and the same
    /// around it. The count only grows, so comparing with an older count than the last marker's
    /// (one taken while the parent read) errs only towards a marker more. (Counts wrap at 2³²:
    /// a task would have to write exactly a multiple of 4 GiB for one to be missed.)
    pub(crate) fn needed(&mut self, stderr: &File) -> bool {
        self.now = None;
        if self.shm.word(MARK_ALL).load(SeqCst) != 0 {
            return true;
        }
        let seq = self.shm.word(STDERR_SEQ);
        let before = seq.load(SeqCst);
        let read = self.shm.word(STDERR_READ).load(SeqCst);
        let waiting = crate::sys::available(stderr.as_fd());
        if !before.is_multiple_of(2) || seq.load(SeqCst) != before {
            return true;
        }
        let now = read
            .wrapping_add((waiting & 0xffff_ffff) as u32)
            .wrapping_sub(self.marked);
        self.now = Some(now);
        now != self.text
    }

    /// A marker of `n` bytes went into the pipe after [`needed`](Self::needed) said so.
    pub(crate) fn marked(&mut self, n: usize) {
        self.marked = self.marked.wrapping_add((n & 0xffff_ffff) as u32);
        if let Some(now) = self.now.take() {
            self.text = now;
        }
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let tail = self.shm.word(TAIL).load(Acquire);
            let used = self.head.wrapping_sub(tail) as usize;
            if used > DATA_LEN {
                return Err(corrupt("read"));
            }
            let at = offset(self.head);
            let n = buf.len().min(DATA_LEN - used).min(DATA_LEN - at);
            if n == 0 {
                self.wait_for_room(tail);
                continue;
            }
            self.shm.write(CONTROL + at, &buf[..n]);
            self.head = self.head.wrapping_add(u32::try_from(n).unwrap_or(DATA_POS));
            self.shm.word(HEAD).store(self.head, SeqCst);
            self.ring();
            return Ok(n);
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod test;
