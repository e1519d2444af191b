//! A worker's diagnostic output (its stderr), as the parent keeps it: what the running task
//! wrote, split from earlier tasks' output by the worker's task-end markers, with the records of
//! its events (`cf_worker::logs`) taken out.
//!
//! [`Output`] is pure; [`drain`] reads a stderr pipe into it without blocking; [`pass`] reads a
//! stdout pipe straight through.

use std::collections::VecDeque;

use std::os::fd::{AsFd, OwnedFd};

use cf_worker::logs::{LOG_START, MAX_BODY};
use cf_worker::start::TASK_END;

use crate::sys;

/// How much of the start of a task's stderr is kept for its error: the first lines often say
/// what went wrong ("memory allocation of N bytes failed"), before a long backtrace.
const HEAD: usize = 1024;

/// How much of the end of a task's stderr is kept for its error.
const TAIL: usize = 3072;

#[derive(Default)]
pub(crate) struct Output {
    /// The first bytes of its stderr since its running task started.
    head: Vec<u8>,
    /// The last bytes of its stderr since its running task started, after `head`.
    tail: VecDeque<u8>,
    /// Bytes dropped between `head` and `tail`.
    skipped: bool,
    /// The start of a [`TASK_END`] marker cut by the end of a read.
    carry: Vec<u8>,
}

/// A piece of a worker's stderr.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Bytes the task wrote.
    Text(&'a [u8]),
    /// The body of a record of an event.
    Log(&'a [u8]),
}

/// The markers a worker writes in its stderr.
const MARKERS: [&[u8]; 2] = [TASK_END, LOG_START];

impl Output {
    /// Takes bytes read from the worker's stderr: each [`TASK_END`] marker ends a task's output
    /// (what is kept starts again after it) and is not forwarded; each record goes to `forward`
    /// as a [`Piece::Log`], and is not kept; the rest goes to `forward` as text.
    pub(crate) fn take(&mut self, bytes: &[u8], forward: &mut impl FnMut(Piece<'_>)) {
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(bytes);
        let mut rest = &data[..];
        while let Some((at, marker)) = first_marker(rest) {
            self.keep(&rest[..at], forward);
            let after = &rest[at + marker.len()..];
            if marker == TASK_END {
                self.head.clear();
                self.tail.clear();
                self.skipped = false;
                rest = after;
                continue;
            }
            let len = after
                .get(..2)
                .map(|len| usize::from(u16::from_le_bytes([len[0], len[1]])));
            match len {
                // Not a record after all (a task wrote the marker): text.
                Some(len) if len > MAX_BODY => {
                    self.keep(&rest[at..at + marker.len()], forward);
                    rest = after;
                }
                Some(len) if after.len() >= 2 + len => {
                    forward(Piece::Log(&after[2..2 + len]));
                    rest = &after[2 + len..];
                }
                // The rest of the record comes with the next read.
                _ => {
                    self.carry = rest[at..].to_vec();
                    return;
                }
            }
        }
        // A marker may be cut between two reads: hold back an end of `rest` that begins one.
        let held = MARKERS
            .iter()
            .filter_map(|marker| {
                (1..marker.len().min(rest.len() + 1))
                    .rev()
                    .find(|&n| rest.ends_with(&marker[..n]))
            })
            .max()
            .unwrap_or(0);
        self.keep(&rest[..rest.len() - held], forward);
        self.carry = rest[rest.len() - held..].to_vec();
    }

    /// The stream ended: a part of a marker or record that never ended is the task's own output.
    pub(crate) fn end(&mut self, forward: &mut impl FnMut(Piece<'_>)) {
        let rest = std::mem::take(&mut self.carry);
        self.keep(&rest, forward);
    }

    /// Forwards a task's output and keeps its first and last few KiB.
    fn keep(&mut self, bytes: &[u8], forward: &mut impl FnMut(Piece<'_>)) {
        if bytes.is_empty() {
            return;
        }
        forward(Piece::Text(bytes));
        let room = HEAD - self.head.len();
        let (head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(head);
        self.tail.extend(rest);
        let excess = self.tail.len().saturating_sub(TAIL);
        self.tail.drain(..excess);
        self.skipped |= excess > 0;
    }

    /// What the running task wrote: all of it when short, else its first and last few KiB.
    pub(crate) fn last_words(&self) -> String {
        let head = String::from_utf8_lossy(&self.head);
        let (a, b) = self.tail.as_slices();
        let tail = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        match (self.skipped, tail.find('\n')) {
            (true, Some(newline)) => format!("{head}[...]\n{}", &tail[newline + 1..]),
            (true, None) => format!("{head}[...]{tail}"),
            (false, _) => format!("{head}{tail}"),
        }
    }
}

/// Reads what the worker's stderr pipe `err` holds, without blocking, into `output`, forwarding
/// the task's bytes and the records to `forward`; closes `err` at its end. Returns the bytes
/// read.
pub(crate) fn drain(
    err: &mut Option<OwnedFd>,
    output: &mut Output,
    mut forward: impl FnMut(Piece<'_>),
) -> usize {
    let mut buf = [0; 8192];
    let mut read = 0;
    while let Some(fd) = err.as_ref() {
        match sys::read(fd.as_fd(), &mut buf) {
            Ok(0) => {
                *err = None;
                output.end(&mut forward);
            }
            Ok(n) => {
                read += n;
                output.take(&buf[..n], &mut forward);
            }
            Err(_) => break,
        }
    }
    read
}

/// Reads what the worker's stdout pipe `out` holds, without blocking, and hands it to `forward`;
/// closes `out` at its end.
pub(crate) fn pass(out: &mut Option<OwnedFd>, mut forward: impl FnMut(&[u8])) {
    let mut buf = [0; 8192];
    while let Some(fd) = out.as_ref() {
        match sys::read(fd.as_fd(), &mut buf) {
            Ok(0) => *out = None,
            Ok(n) => forward(&buf[..n]),
            Err(_) => return,
        }
    }
}

// Every marker starts with a NUL byte, which ordinary text does not hold: [`first_marker`]
// looks only where one is.
const _: () = assert!(TASK_END[0] == 0 && LOG_START[0] == 0);

/// The first marker in `haystack`, and where it is: one pass over it (a worker writes a
/// task-end marker per task, so a read can hold hundreds of them).
fn first_marker(haystack: &[u8]) -> Option<(usize, &'static [u8])> {
    let mut from = 0;
    while let Some(nul) = haystack[from..].iter().position(|&b| b == 0) {
        let at = from + nul;
        if let Some(marker) = MARKERS.iter().find(|m| haystack[at..].starts_with(m)) {
            return Some((at, marker));
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod test {
    use super::*;

    fn feed(out: &mut Output, chunks: &[&[u8]]) -> Vec<u8> {
        feed_logs(out, chunks).0
    }

    /// The text forwarded, and the records.
    fn feed_logs(out: &mut Output, chunks: &[&[u8]]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut text = Vec::new();
        let mut logs = Vec::new();
        for chunk in chunks {
            out.take(chunk, &mut |piece: Piece<'_>| match piece {
                Piece::Text(b) => text.extend_from_slice(b),
                Piece::Log(b) => logs.push(b.to_vec()),
            });
        }
        (text, logs)
    }

    fn record(body: &[u8]) -> Vec<u8> {
        let mut r = LOG_START.to_vec();
        r.extend_from_slice(&u16::try_from(body.len()).unwrap().to_le_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn records_are_taken_out_whole_wherever_reads_cut_them() {
        let mut stream = b"before ".to_vec();
        stream.extend_from_slice(&record(b"first"));
        stream.extend_from_slice(b"between ");
        stream.extend_from_slice(&record(b"second"));
        stream.extend_from_slice(b"after\n");
        for cut in 0..stream.len() {
            for cut2 in cut..stream.len() {
                let mut out = Output::default();
                let (text, logs) = feed_logs(
                    &mut out,
                    &[&stream[..cut], &stream[cut..cut2], &stream[cut2..]],
                );
                assert_eq!(text, b"before between after\n", "cut at {cut}, {cut2}");
                assert_eq!(logs, [b"first".to_vec(), b"second".to_vec()]);
                assert_eq!(out.last_words(), "before between after\n");
            }
        }
    }

    #[test]
    fn a_record_marker_with_an_impossible_length_is_text() {
        let mut stream = LOG_START.to_vec();
        stream.extend_from_slice(&u16::MAX.to_le_bytes());
        stream.extend_from_slice(b"rest");
        let mut out = Output::default();
        let (text, logs) = feed_logs(&mut out, &[&stream]);
        assert!(logs.is_empty());
        assert_eq!(text, stream);
    }

    #[test]
    fn a_record_cut_by_the_end_of_the_stream_is_text() {
        let whole = record(b"never ends");
        let mut out = Output::default();
        let (_, logs) = feed_logs(&mut out, &[&whole[..whole.len() - 2]]);
        assert!(logs.is_empty());
        let mut text = Vec::new();
        out.end(&mut |piece: Piece<'_>| {
            if let Piece::Text(b) = piece {
                text.extend_from_slice(b);
            }
        });
        assert_eq!(text, &whole[..whole.len() - 2]);
    }

    #[test]
    fn a_marker_ends_a_tasks_output_even_when_cut_between_reads() {
        let mut out = Output::default();
        let mut stream = b"first task\n".to_vec();
        stream.extend_from_slice(TASK_END);
        stream.extend_from_slice(b"second task\n");
        let (a, b) = stream.split_at(14);
        let forwarded = feed(&mut out, &[a, b]);
        assert_eq!(forwarded, b"first task\nsecond task\n");
        assert_eq!(out.last_words(), "second task\n");
    }

    #[test]
    fn long_output_keeps_its_head_and_tail() {
        let mut out = Output::default();
        let mut text = String::from("the cause\n");
        for i in 0..1000 {
            text.push_str(&format!("line {i}\n"));
        }
        feed(&mut out, &[text.as_bytes()]);
        let words = out.last_words();
        assert!(words.starts_with("the cause\n"), "{words}");
        assert!(words.contains("[...]\n"), "{words}");
        assert!(words.ends_with("line 999\n"), "{words}");
    }
}
