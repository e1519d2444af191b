//! The serve loop: what a worker process does from start-up to exit.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::codec::Payload;
use crate::frame::{self, Header, PROTOCOL_VERSION, ReplyKind, RequestKind};
use crate::start::TASK_END;
use crate::{codec, panic, ring, sys, table};

/// Exit code of a worker that received a frame it cannot understand.
pub(crate) const EXIT_PROTOCOL: i32 = 70;

/// The largest reply a frame can carry, length field included.
const MAX_REPLY: usize = u32::MAX as usize;

/// The most buffer memory a worker keeps between frames.
const IDLE_BUFFER: usize = 1 << 20;

/// The most memory reserved for a split call's tail ahead of the bytes that arrived: a length
/// field is a claim, not a reservation.
const TAIL_STEP: usize = 64 << 20;

/// A split call's tail this large is read into huge pages (see `sys::huge_pages`).
const HUGE_AT: usize = 4 << 20;

/// The watcher thread's stack.
const WATCHER_STACK: usize = 64 << 10;

/// The job a worker is running, for the report of a panic under `panic = "abort"`.
static CURRENT: AtomicU64 = AtomicU64::new(0);

/// Why a worker stopped serving before its input ended.
#[derive(Debug)]
pub(crate) enum ServeError {
    /// Reading or writing a pipe failed.
    Io(io::Error),
    /// The parent sent something this worker does not understand.
    Protocol(String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Io(e) => write!(f, "i/o error: {e}"),
            ServeError::Protocol(what) => write!(f, "protocol error: {what}"),
        }
    }
}

impl From<io::Error> for ServeError {
    fn from(e: io::Error) -> Self {
        ServeError::Io(e)
    }
}

/// Where a worker's replies go.
pub(crate) enum Replies {
    /// Into the result pipe (a worker under an agent: its one connection).
    Pipe(File),
    /// Into the reply ring shared with the parent, the result pipe its doorbell.
    Ring(ring::Writer),
}

impl Replies {
    /// The result pipe.
    fn pipe(&self) -> &File {
        match self {
            Replies::Pipe(pipe) => pipe,
            Replies::Ring(ring) => ring.doorbell(),
        }
    }
}

impl Write for Replies {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Replies::Pipe(pipe) => pipe.write(buf),
            Replies::Ring(ring) => ring.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The streams of the serve loop in this process, once it serves.
static SERVING: OnceLock<Arc<Shared<Input, Replies>>> = OnceLock::new();

/// Writes `bytes` where this worker's replies go, as they are: for tests that play a broken
/// worker.
pub(crate) fn write_raw(bytes: &[u8]) -> io::Result<()> {
    let serving = SERVING.get().ok_or(io::ErrorKind::NotConnected)?;
    relock(&serving.output).write_all(bytes)
}

/// Serves calls read from the request pipe, writing replies to `replies`, until the request
/// pipe ends. A watcher thread looks at requests that arrive while a task runs long, to give
/// back calls the parent revokes (see [`watch`]).
///
/// The pipes sit at high fd numbers, out of a task's way. A task that closes one anyway, or
/// `dup2`s over it, closes the pipe's only copy here: the parent sees the end of the reply stream
/// (or EPIPE on requests) while the worker lives, and kills it after a short grace, failing the
/// running task. (Checking the fds after each task with `fstat` cost a quarter of the tiny-task
/// rate on the machines measured, for a case the parent already bounds.)
pub(crate) fn serve_pipes(
    input: OwnedFd,
    replies: Replies,
    stderr: OwnedFd,
) -> Result<(), ServeError> {
    RESULT_AT.store(replies.pipe().as_raw_fd(), Ordering::Relaxed);
    // A copy of the result pipe as high as the original, out of the tasks' way, for the report
    // of an abort; a ring takes it like any reply.
    let last_words = match &replies {
        Replies::Pipe(pipe) if cfg!(panic = "abort") => Some(File::from(
            sys::dup_high(pipe.as_fd())
                .ok_or_else(|| ServeError::Io(io::Error::other("failed to copy the result fd")))?,
        )),
        _ => None,
    };
    let mut stderr = File::from(stderr);
    // With a ring, a task's end needs its marker only after text (see `ring::Marks`); without
    // one (a worker under an agent), always.
    let mut marks = match &replies {
        Replies::Ring(ring) => Some(ring.marks()),
        Replies::Pipe(_) => None,
    };
    let input = Arc::new(File::from(input));
    let shared = Arc::new(Shared {
        inlet: Mutex::new(Inlet::new(Input(input.clone()))),
        output: Mutex::new(replies),
        beat: Beat::new(),
    });
    let _ = SERVING.set(shared.clone());
    if cfg!(panic = "abort") {
        panic::on_abort(move |info| {
            let mut frame = Vec::new();
            let start = frame::begin(&mut frame, CURRENT.load(Ordering::Relaxed), 0);
            if codec::encode_into(info, &mut frame).is_ok() {
                frame::finish(&mut frame, start, ReplyKind::Aborting as u8);
                let _ = match &last_words {
                    Some(pipe) => (&*pipe).write_all(&frame),
                    None => write_raw(&frame),
                };
            }
        });
    }
    // Without the watcher (no pipe or thread to spare), calls are never given back: each one
    // runs. The parent's urge to give calls back is set up here, before any other thread
    // exists, so that every thread inherits its block and only the watcher hears it.
    let watcher = sys::urge_pipe().map(|urge| {
        let watched = shared.clone();
        std::thread::Builder::new()
            .name("cf-worker-watch".to_owned())
            // Small: it counts against a `memory_limit`, and it only polls and copies bytes.
            .stack_size(WATCHER_STACK)
            .spawn(move || watch(&watched, input.as_fd(), &urge))
    });
    if let Some(Ok(watcher)) = watcher {
        shared.beat.watched_by(watcher.thread().clone());
    }
    serve_shared(&shared, move || {
        if marks.as_mut().is_none_or(|marks| marks.needed(&stderr)) {
            // Best effort: a task may have closed the pipe's other end (it is the parent's).
            let n = write_marker(&mut stderr);
            if let Some(marks) = &mut marks {
                marks.marked(n);
            }
        }
        Ok(())
    })
}

/// Writes the task-end marker to the worker's copy of its stderr, and says how many of its
/// bytes went in. A task may have made the pipe non-blocking (the copy shares its open file
/// description with fd 2): a full pipe then says `WouldBlock`, and the marker waits for room as
/// it would on a blocking pipe, instead of being lost (which would make the task's output a
/// later task's last words). Other errors (a closed pipe) lose it, as before.
fn write_marker(stderr: &mut File) -> usize {
    let mut left = TASK_END;
    while !left.is_empty() {
        match stderr.write(left) {
            Ok(0) => break,
            Ok(n) => left = &left[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !sys::wait_writable(stderr.as_fd()) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    TASK_END.len() - left.len()
}

/// The request pipe, shared by the serve loop (which reads it) and the watcher (which waits on
/// it while a task runs long).
struct Input(Arc<File>);

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

/// The fd number of the result pipe in this worker (-1 elsewhere).
pub(crate) static RESULT_AT: AtomicI32 = AtomicI32::new(-1);

/// What the serve loop shares with its watcher.
pub(crate) struct Shared<R, W> {
    pub(crate) inlet: Mutex<Inlet<R>>,
    pub(crate) output: Mutex<W>,
    pub(crate) beat: Beat,
}

/// Sends the handshake, then answers every call on `input` until it ends, calling `task_end`
/// before each reply (the worker marks the end of the task's stderr output there; an error stops
/// serving).
///
/// Never allocates much more than the bytes that actually arrive: a length field is a claim, not
/// a reservation (a split call's tail reserves at most [`TAIL_STEP`] ahead).
#[cfg(test)]
pub(crate) fn serve(
    input: impl Read,
    output: impl Write,
    task_end: impl FnMut() -> Result<(), ServeError>,
) -> Result<(), ServeError> {
    let shared = Shared {
        inlet: Mutex::new(Inlet::new(input)),
        output: Mutex::new(output),
        beat: Beat::new(),
    };
    serve_shared(&shared, task_end)
}

/// [`serve`] on streams shared with a watcher.
pub(crate) fn serve_shared<R: Read, W: Write>(
    shared: &Shared<R, W>,
    mut task_end: impl FnMut() -> Result<(), ServeError>,
) -> Result<(), ServeError> {
    let mut out = Vec::with_capacity(1 << 12);
    hello(&mut out);
    relock(&shared.output).write_all(&out)?;
    let mut body = Vec::new();
    loop {
        // Memory taken by a large frame goes back once it is served.
        if body.capacity() > IDLE_BUFFER {
            body = Vec::new();
        }
        if out.capacity() > IDLE_BUFFER {
            out = Vec::new();
        }
        shared.beat.idle();
        let Some((header, kind, tail)) = relock(&shared.inlet).next(&mut body)? else {
            return Ok(());
        };
        shared.beat.start();
        out.clear();
        let tail = answer(header, kind, &body[frame::HEADER_LEN..], tail, &mut out);
        task_end()?;
        let mut output = relock(&shared.output);
        output.write_all(&out)?;
        if let Some(tail) = &tail {
            // A large byte string outcome, written from its own buffer.
            output.write_all(tail)?;
        }
    }
}

/// Locks `mutex`; a panic while it was held (in a task's thread) changes nothing here.
fn relock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Appends the handshake: pid, protocol version, task-table fingerprint and size.
fn hello(out: &mut Vec<u8>) {
    let table = table();
    let start = frame::begin(out, u64::from(std::process::id()), PROTOCOL_VERSION);
    out.extend_from_slice(&table.fingerprint().to_le_bytes());
    out.extend_from_slice(&u32::try_from(table.len()).unwrap_or(u32::MAX).to_le_bytes());
    frame::finish(out, start, ReplyKind::Hello as u8);
}

/// A request as the serve loop takes it: its header and kind, and the raw bytes of a split
/// call's argument ([`frame::SPLIT`]), read straight into a buffer of their own.
pub(crate) type Request = (Header, RequestKind, Option<Vec<u8>>);

/// Reads the next request into `body` (from its kind byte on; of a split call, only up to its
/// tail); `None` when the input ends between frames, the only place where it may end.
pub(crate) fn read_request(
    input: &mut impl Read,
    body: &mut Vec<u8>,
) -> Result<Option<Request>, ServeError> {
    let mut len = [0; 4];
    let got = loop {
        match input.take(4).read(&mut len) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => break other?,
        }
    };
    if got == 0 {
        return Ok(None);
    }
    if let Err(e) = input.read_exact(&mut len[got..]) {
        return Err(match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                ServeError::Protocol("request cut short in its length field".to_owned())
            }
            _ => e.into(),
        });
    }
    let len = u32::from_le_bytes(len);
    let short = || ServeError::Protocol(format!("request frame of {len} bytes"));
    if (len as usize) < frame::HEADER_LEN {
        return Err(short());
    }
    body.clear();
    read_body(input, body, frame::HEADER_LEN, len)?;
    let header = Header::read(body).ok_or_else(short)?;
    let split = header.kind & frame::SPLIT != 0;
    if !split {
        read_body(input, body, len as usize, len)?;
    }
    let kind = match RequestKind::from_byte(header.kind & !frame::SPLIT) {
        Some(RequestKind::Call) if split => RequestKind::Call,
        Some(kind) if !split => kind,
        _ => {
            return Err(ServeError::Protocol(format!(
                "unknown request kind {:#04x}",
                header.kind
            )));
        }
    };
    let tail = if split {
        Some(read_split(input, body, len)?)
    } else {
        None
    };
    Ok(Some((header, kind, tail)))
}

/// Reads from `input` until `body` holds `to` bytes of a frame of `len`.
fn read_body(
    input: &mut impl Read,
    body: &mut Vec<u8>,
    to: usize,
    len: u32,
) -> Result<(), ServeError> {
    let want = to.saturating_sub(body.len());
    let read = input.take(want as u64).read_to_end(body)?;
    if read < want {
        return Err(ServeError::Protocol(format!(
            "request frame cut short: {} of {len} bytes",
            body.len()
        )));
    }
    Ok(())
}

/// Reads the rest of a split call of `len` bytes whose header `body` holds: the byte string's
/// length prefix into `body`, then its bytes into a buffer of their own, reserved at most
/// [`TAIL_STEP`] ahead of the bytes that arrived.
fn read_split(input: &mut impl Read, body: &mut Vec<u8>, len: u32) -> Result<Vec<u8>, ServeError> {
    let at = frame::HEADER_LEN;
    read_body(input, body, at + 1, len)?;
    let bad = || ServeError::Protocol(format!("split request frame of {len} bytes"));
    let size = codec::prefix_size(body[at]).ok_or_else(bad)?;
    read_body(input, body, at + size, len)?;
    let (tail_len, _) = codec::read_prefix(&body[at..]).ok_or_else(bad)?;
    if (at + size) as u64 + tail_len != u64::from(len) {
        return Err(bad());
    }
    let mut tail = Vec::new();
    loop {
        let left = tail_len - tail.len() as u64;
        if left == 0 {
            return Ok(tail);
        }
        let step = left.min(TAIL_STEP as u64);
        tail.reserve_exact(step as usize);
        if step as usize >= HUGE_AT {
            sys::huge_pages(&mut tail);
        }
        if input.take(step).read_to_end(&mut tail)? < step as usize {
            return Err(ServeError::Protocol(format!(
                "request frame cut short: {} of {len} bytes",
                body.len() + tail.len()
            )));
        }
    }
}

/// Runs the call `header` asks for on `args` (or on the byte string of a split call's `tail`)
/// and appends the whole reply frame to `out`, but for its tail, if it has one: that is returned,
/// to be written after `out`.
fn answer(
    header: Header,
    kind: RequestKind,
    args: &[u8],
    tail: Option<Vec<u8>>,
    out: &mut Vec<u8>,
) -> Option<Vec<u8>> {
    let table = table();
    let index = header.aux;
    CURRENT.store(header.id, Ordering::Relaxed);
    crate::logs::set_task(index);
    // `aux` is set once the call has run: how long it ran.
    let start = frame::begin(out, header.id, 0);
    let began = std::time::Instant::now();
    let reply = match table.get(index) {
        // The task's own panics are caught around its call; this catches those of the user's
        // `Deserialize` of the arguments, and `Serialize` and `Drop` of the outcome.
        Some(entry) => panic::catch(entry.name, || match kind {
            RequestKind::Call => {
                entry.invoke(tail.map_or(Payload::Encoded(args), Payload::Bytes), out)
            }
            // The request reader lets only calls be split.
            RequestKind::CallChunk => entry.invoke_chunk(args, out).into(),
            RequestKind::Revoke => unreachable!("the inlet passes revocations over"),
        })
        .unwrap_or_else(|info| {
            out.truncate(start + 4 + frame::HEADER_LEN);
            match codec::encode_into(&info, out) {
                Ok(()) => ReplyKind::Panicked.into(),
                Err(_) => ReplyKind::BadResult.into(),
            }
        }),
        None => {
            let msg = format!("this worker has no task at index {index}");
            out.extend_from_slice(msg.as_bytes());
            ReplyKind::UnknownTask.into()
        }
    };
    // How long it ran, for the parent's estimate of how many to send ahead.
    let ran = u32::try_from(began.elapsed().as_nanos()).unwrap_or(u32::MAX);
    frame::set_aux(out, start, ran);
    let tail_len = reply.tail.as_ref().map_or(0, Vec::len);
    let (kind, tail) = if out.len() - start + tail_len > MAX_REPLY {
        // Over what a frame can carry: say so instead of sending it.
        let size = out.len() - start + tail_len;
        out.truncate(start + 4 + frame::HEADER_LEN);
        let name = table.get(index).map_or("?", |entry| entry.name);
        let message = format!(
            "failed to encode the result of task `{name}`: {size} bytes are over the frame \
             limit of {MAX_REPLY} bytes"
        );
        out.extend_from_slice(message.as_bytes());
        (ReplyKind::BadResult, None)
    } else {
        (reply.kind, reply.tail)
    };
    match &tail {
        Some(tail) => frame::finish_split(out, start, kind as u8, tail.len()),
        None => frame::finish(out, start, kind as u8),
    }
    tail
}

mod inlet;
mod watch;

use inlet::Inlet;
use watch::{Beat, watch};

#[cfg(test)]
mod test;
