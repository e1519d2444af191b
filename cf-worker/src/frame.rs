//! The frame protocol between a parent and its workers.
//!
//! Frames travel over an ordered byte stream (today a pair of pipes). Every frame is
//!
//! | bytes | field   | meaning                                                         |
//! |-------|---------|-----------------------------------------------------------------|
//! | 4     | `len`   | little-endian `u32`: the number of bytes after this field       |
//! | 1     | `kind`  | a [`RequestKind`] (parent to worker) or [`ReplyKind`] (back), with [`SPLIT`] |
//! | 8     | `id`    | little-endian `u64`: the job id the parent chose (pid in Hello) |
//! | 4     | `aux`   | little-endian `u32`: task index in a call, version in Hello, run time in a reply (ns, at most `u32::MAX`) |
//! | rest  | payload | codec-encoded value or UTF-8 message, by kind                   |
//!
//! A worker first sends [`ReplyKind::Hello`] with its pid, [`PROTOCOL_VERSION`] and a payload of
//! the task-table fingerprint (`u64`) and task count (`u32`), both little-endian. The parent
//! checks both before it sends a call. A frame names its task by index into the table, never by
//! address: a frame is data, never code.
//!
//! A frame whose payload is one large byte string has [`SPLIT`] set in its kind: the payload is
//! the string's length prefix, then exactly that many raw bytes to the frame's end (the same
//! bytes as its encoding). The sender writes those bytes straight from the value and the
//! receiver reads them straight into the value's own buffer: no copy into or out of a frame
//! buffer. Only [`RequestKind::Call`], [`ReplyKind::Ok`] and [`ReplyKind::Failed`] may have it.
//!
//! Replies come in the order of the calls, with one exception: a call that the parent takes back
//! with [`RequestKind::Revoke`] before it started is answered with [`ReplyKind::Revoked`] at once,
//! ahead of the reply of the task the worker is running, and is never run. A revocation that
//! comes too late (the call started or finished) is ignored: the call's own reply is the answer.

/// The version of this protocol; a worker with another one is refused in the handshake.
pub const PROTOCOL_VERSION: u32 = 4;

/// The bit of `kind` that marks a split frame: its payload is a byte string's length prefix
/// (`codec::bytes_prefix`), then that many raw bytes, its tail, to the end of the frame.
pub const SPLIT: u8 = 0x40;

/// The size of `kind`, `id` and `aux`.
pub const HEADER_LEN: usize = 1 + 8 + 4;

/// The most request bytes a worker's watcher reads ahead of the serve loop, looking for the
/// parent's give-back requests while a task runs long: one behind more than this is read only
/// after the task (the parent keeps less than this waiting in a worker).
pub const READ_AHEAD: usize = 1 << 20;

/// The largest frame body accepted by default (`len`), 2 GiB - 1.
pub const DEFAULT_MAX_FRAME: u32 = i32::MAX as u32;

/// What a parent asks of a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestKind {
    /// Run task `aux` on the payload's arguments; reply with the same `id`.
    Call = 1,
    /// Run task `aux` on each of the payload's list of arguments; reply `Ok` with the list of
    /// outcomes (`map` with a `chunksize`).
    CallChunk = 2,
    /// Give back call `id` if it has not started: reply [`ReplyKind::Revoked`] and never run it.
    /// No payload.
    Revoke = 3,
}

impl RequestKind {
    /// The kind with this byte, if any.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Call,
            2 => Self::CallChunk,
            3 => Self::Revoke,
            _ => return None,
        })
    }
}

/// What a worker tells its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplyKind {
    /// Start-up handshake (see the module docs).
    Hello = 0x80,
    /// The task returned; payload: the encoded output.
    Ok = 0x81,
    /// The task returned its own error; payload: the encoded error.
    Failed = 0x82,
    /// The task panicked; payload: an encoded [`PanicInfo`](crate::PanicInfo).
    Panicked = 0x83,
    /// The arguments did not decode; payload: UTF-8 message.
    BadArgs = 0x84,
    /// The result did not encode; payload: UTF-8 message.
    BadResult = 0x85,
    /// The worker has no task at index `aux`; payload: UTF-8 message.
    UnknownTask = 0x86,
    /// The task panicked in a binary built with `panic = "abort"`, and the worker is about to
    /// abort; payload: an encoded [`PanicInfo`](crate::PanicInfo).
    Aborting = 0x87,
    /// Call `id` was taken back before it started (see [`RequestKind::Revoke`]); no payload.
    Revoked = 0x88,
}

impl ReplyKind {
    /// The kind with this byte, if any.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0x80 => Self::Hello,
            0x81 => Self::Ok,
            0x82 => Self::Failed,
            0x83 => Self::Panicked,
            0x84 => Self::BadArgs,
            0x85 => Self::BadResult,
            0x86 => Self::UnknownTask,
            0x87 => Self::Aborting,
            0x88 => Self::Revoked,
            _ => return None,
        })
    }
}

/// The fixed fields after a frame's length: `kind`, `id` and `aux`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The kind byte.
    pub kind: u8,
    /// The job id.
    pub id: u64,
    /// Task index (a call), version (Hello) or run time in nanoseconds (a reply).
    pub aux: u32,
}

impl Header {
    /// Reads the header at the start of a frame body (the bytes after the length field); `None`
    /// when `body` is shorter than [`HEADER_LEN`].
    pub fn read(body: &[u8]) -> Option<Header> {
        let body = body.get(..HEADER_LEN)?;
        Some(Header {
            kind: body[0],
            id: u64::from_le_bytes(body[1..9].try_into().ok()?),
            aux: u32::from_le_bytes(body[9..13].try_into().ok()?),
        })
    }
}

/// One decoded frame, borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The kind byte.
    pub kind: u8,
    /// The job id.
    pub id: u64,
    /// Task index or version.
    pub aux: u32,
    /// The payload.
    pub payload: &'a [u8],
}

/// Starts a frame in place: call [`begin`], append the payload to `out`, then [`finish`] with the
/// returned offset and the kind.
pub fn begin(out: &mut Vec<u8>, id: u64, aux: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 5]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&aux.to_le_bytes());
    start
}

/// Sets the `aux` word (the header's last four bytes) of the frame begun at `start`.
pub fn set_aux(out: &mut [u8], start: usize, aux: u32) {
    let end = start + 4 + HEADER_LEN;
    out[end - 4..end].copy_from_slice(&aux.to_le_bytes());
}

/// Writes the length and kind of the frame begun at `start`.
///
/// # Panics
/// If the frame is longer than `u32::MAX` bytes; callers check sizes before encoding.
pub fn finish(out: &mut [u8], start: usize, kind: u8) {
    let len = u32::try_from(out.len() - start - 4).expect("frame longer than 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4] = kind;
}

/// [`finish`] for a frame whose payload goes on with a tail of `tail` raw bytes that is written
/// separately, after `out`; marks the frame [`SPLIT`].
///
/// # Panics
/// If the frame is longer than `u32::MAX` bytes; callers check sizes before encoding.
pub fn finish_split(out: &mut [u8], start: usize, kind: u8, tail: usize) {
    let len = u32::try_from(out.len() - start - 4 + tail).expect("frame longer than 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4] = kind | SPLIT;
}

/// Appends a whole frame.
pub fn push(out: &mut Vec<u8>, kind: u8, id: u64, aux: u32, payload: &[u8]) {
    let start = begin(out, id, aux);
    out.extend_from_slice(payload);
    finish(out, start, kind);
}

/// Appends the header of a frame whose `payload_len` bytes of payload will follow separately.
///
/// # Panics
/// If the frame is longer than `u32::MAX` bytes; callers check sizes before encoding.
pub fn push_header(out: &mut Vec<u8>, kind: u8, id: u64, aux: u32, payload_len: usize) {
    let len = u32::try_from(HEADER_LEN + payload_len).expect("frame longer than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&aux.to_le_bytes());
}

/// What is wrong with a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// `len` is below the header size.
    TooShort(u32),
    /// `len` is above the limit.
    TooLong {
        /// The announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooShort(len) => {
                write!(
                    f,
                    "frame of {len} bytes is shorter than its {HEADER_LEN}-byte header"
                )
            }
            FrameError::TooLong { len, max } => {
                write!(f, "frame of {len} bytes is over the limit of {max} bytes")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Splits the first whole frame off `buf`.
///
/// Returns `Ok(None)` when `buf` holds no whole frame yet, and otherwise the frame and the number
/// of bytes it took.
///
/// # Errors
/// The length field is impossible or over `max`.
pub fn parse(buf: &[u8], max: u32) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes"));
    if (len as usize) < HEADER_LEN {
        return Err(FrameError::TooShort(len));
    }
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    let total = 4 + len as usize;
    let Some(body) = buf.get(4..total) else {
        return Ok(None);
    };
    let header = Header::read(body).expect("len is at least the header's size");
    let frame = Frame {
        kind: header.kind,
        id: header.id,
        aux: header.aux,
        payload: &body[HEADER_LEN..],
    };
    Ok(Some((frame, total)))
}

/// The number of bytes still needed for the frame at the start of `buf`, once its length is known.
pub fn wanted(buf: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
    Some((4 + len as usize).saturating_sub(buf.len()))
}

#[cfg(test)]
mod test;
