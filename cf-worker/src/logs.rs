//! A task's `tracing` events and `log` records, on their way to the parent's subscriber.
//!
//! A worker never runs `main`, where a program installs its subscriber. When the parent has one,
//! it names the most verbose level it wants in the worker's marker (see [`crate::start`]); the
//! worker then installs a global `tracing` subscriber and a `log` logger (`sink.rs`) that encode
//! each event as one **record** and write it to the worker's stderr with a single `write(2)` of
//! at most [`MAX_RECORD`] bytes (`PIPE_BUF`): atomic against what tasks write there themselves.
//!
//! A record is [`LOG_START`], its length (`u16`, little-endian), then its body: the level
//! (1 = error … 5 = trace), the task, target, module, file and name as strings (a `u16` length,
//! then UTF-8), the line (`u32`, 0 for none), the field count (`u8`) and each field as its name,
//! a [`Kind`] byte and its value as text. What would not fit is cut, at a character boundary,
//! and ends with `…`.
//!
//! The parent (`cf-runtime/src/process/output.rs`) takes records out of the stderr stream and
//! re-emits them on its subscriber; they never reach its stderr as text.

use std::fmt;

mod sink;

pub(crate) use sink::{install, set_task};

/// What starts a record in a worker's stderr.
pub const LOG_START: &[u8] = b"\0\x1bcf:log\0";

/// The largest record, marker and length included: `PIPE_BUF`, the most one `write(2)` to a pipe
/// puts in it at once.
pub const MAX_RECORD: usize = 4096;

/// The longest body a record carries.
pub const MAX_BODY: usize = MAX_RECORD - LOG_START.len() - 2;

/// How a field's value was recorded, so that the parent records it the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Formatted with `Debug` (or `Display`): re-recorded as text, as is.
    Text = 0,
    /// A string (`record_str`).
    Str = 1,
    /// A signed integer.
    I64 = 2,
    /// An unsigned integer.
    U64 = 3,
    /// A boolean.
    Bool = 4,
    /// A float.
    F64 = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Text,
            1 => Kind::Str,
            2 => Kind::I64,
            3 => Kind::U64,
            4 => Kind::Bool,
            5 => Kind::F64,
            _ => return None,
        })
    }
}

/// One field of a [`Record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    /// Its name (`message` for the event's message).
    pub name: &'a str,
    /// How its value was recorded.
    pub kind: Kind,
    /// Its value, as text.
    pub value: &'a str,
}

/// A decoded record: an event or a log record of a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// 1 (error) to 5 (trace).
    pub level: u8,
    /// The task that was running when it was emitted (empty if none was yet).
    pub task: &'a str,
    /// Its target.
    pub target: &'a str,
    /// Its module path, if known.
    pub module: Option<&'a str>,
    /// Its source file, if known.
    pub file: Option<&'a str>,
    /// Its line, if known.
    pub line: Option<u32>,
    /// The name of its callsite.
    pub name: &'a str,
    /// Its fields, the message among them.
    pub fields: Vec<Field<'a>>,
}

/// Reads a record's body; `None` if it is not one.
pub fn decode(body: &[u8]) -> Option<Record<'_>> {
    let mut r = Reader(body);
    let level = r.u8().filter(|l| (1..=5).contains(l))?;
    let task = r.str()?;
    let target = r.str()?;
    let module = Some(r.str()?).filter(|s| !s.is_empty());
    let file = Some(r.str()?).filter(|s| !s.is_empty());
    let line = Some(r.u32()?).filter(|&l| l > 0);
    let name = r.str()?;
    let count = r.u8()?;
    let mut fields = Vec::with_capacity(count.into());
    for _ in 0..count {
        let name = r.str()?;
        let kind = Kind::from_byte(r.u8()?)?;
        let value = r.str()?;
        fields.push(Field { name, kind, value });
    }
    Some(Record {
        level,
        task,
        target,
        module,
        file,
        line,
        name,
        fields,
    })
}

/// One line: `INFO app::jobs: the message n=7 (task square)`.
impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];
        let level = level
            .get(usize::from(self.level.max(1)) - 1)
            .unwrap_or(&"TRACE");
        write!(f, "{level} {}:", self.target)?;
        for field in &self.fields {
            if field.name == "message" {
                write!(f, " {}", field.value)?;
            } else {
                write!(f, " {}={}", field.name, field.value)?;
            }
        }
        if !self.task.is_empty() {
            write!(f, " (task {})", self.task)?;
        }
        Ok(())
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        std::str::from_utf8(self.take(len.into())?).ok()
    }
}

/// Builds one record, cutting what does not fit in [`MAX_RECORD`]. (Public for the parent's
/// tests, not an API.)
#[doc(hidden)]
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
    /// Where the field count sits.
    count_at: usize,
}

/// The longest task name, target, module, file or callsite name a record keeps: together they
/// leave most of the record to the fields.
const MAX_META: usize = 200;

impl Writer {
    /// Starts a record: everything but its fields.
    pub fn new(level: u8, task: &str, meta: &Meta<'_>) -> Writer {
        let mut w = Writer {
            buf: Vec::with_capacity(256),
            count_at: 0,
        };
        w.buf.extend_from_slice(LOG_START);
        w.buf.extend_from_slice(&[0, 0]);
        w.buf.push(level);
        for s in [
            task,
            meta.target,
            meta.module.unwrap_or(""),
            meta.file.unwrap_or(""),
        ] {
            w.str(s, MAX_META);
        }
        w.buf
            .extend_from_slice(&meta.line.unwrap_or(0).to_le_bytes());
        w.str(meta.name, MAX_META);
        w.count_at = w.buf.len();
        w.buf.push(0);
        w
    }

    /// Appends a field, its value cut to what room is left (a field whose name is over
    /// [`MAX_META`] is left out); false once no field fits any more.
    pub fn field(&mut self, name: &str, kind: Kind, value: &str) -> bool {
        let count = self.buf[self.count_at];
        // A name, a kind and at least a few bytes of value.
        let room = MAX_RECORD.saturating_sub(self.buf.len() + 2 + name.len() + 1 + 2);
        if name.len() > MAX_META {
            return true;
        }
        if count == u8::MAX || room < 8 {
            return false;
        }
        self.buf[self.count_at] = count + 1;
        self.str(name, MAX_META);
        // A cut number would be another number: it becomes text.
        let kind = if value.len() > room { Kind::Text } else { kind };
        self.buf.push(kind as u8);
        self.str(value, room);
        true
    }

    /// The whole record, its length filled in.
    pub fn finish(mut self) -> Vec<u8> {
        let body = self.buf.len() - LOG_START.len() - 2;
        let len = u16::try_from(body).unwrap_or(u16::MAX).to_le_bytes();
        self.buf[LOG_START.len()..LOG_START.len() + 2].copy_from_slice(&len);
        self.buf
    }

    /// Appends `s` with its length, cut to `max` bytes (ending with `…` when cut).
    fn str(&mut self, s: &str, max: usize) {
        let s = if s.len() <= max {
            s
        } else {
            let mut end = max.saturating_sub('…'.len_utf8());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            let cut = &s[..end];
            let len = u16::try_from(cut.len() + '…'.len_utf8()).unwrap_or(0);
            self.buf.extend_from_slice(&len.to_le_bytes());
            self.buf.extend_from_slice(cut.as_bytes());
            self.buf.extend_from_slice("…".as_bytes());
            return;
        };
        let len = u16::try_from(s.len()).unwrap_or(0);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
    }
}

/// Where an event or a log record comes from. (Public for the parent's tests, not an API.)
#[doc(hidden)]
#[derive(Debug)]
pub struct Meta<'a> {
    /// The target.
    pub target: &'a str,
    /// The module path, if known.
    pub module: Option<&'a str>,
    /// The source file, if known.
    pub file: Option<&'a str>,
    /// The line, if known.
    pub line: Option<u32>,
    /// The callsite's name.
    pub name: &'a str,
}

#[cfg(test)]
mod test;
