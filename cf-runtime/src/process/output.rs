//! A worker's diagnostic output (its stderr), as the parent keeps it: what the running task
//! wrote, split from earlier tasks' output by the worker's task-end markers.
//!
//! [`Output`] is pure; [`drain`] reads a stderr pipe into it without blocking; [`pass`] reads a
//! stdout pipe straight through.

use std::collections::VecDeque;

use std::os::fd::{AsFd, OwnedFd};

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

impl Output {
    /// Takes bytes read from the worker's stderr: each [`TASK_END`] marker ends a task's output
    /// (what is kept starts again after it) and is not forwarded; the rest goes to `forward`.
    pub(crate) fn take(&mut self, bytes: &[u8], forward: &mut impl FnMut(&[u8])) {
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(bytes);
        let mut rest = &data[..];
        while let Some(at) = find(rest, TASK_END) {
            self.keep(&rest[..at], forward);
            self.head.clear();
            self.tail.clear();
            self.skipped = false;
            rest = &rest[at + TASK_END.len()..];
        }
        // A marker may be cut between two reads: hold back an end of `rest` that begins one.
        let held = (1..TASK_END.len().min(rest.len() + 1))
            .rev()
            .find(|&n| rest.ends_with(&TASK_END[..n]))
            .unwrap_or(0);
        self.keep(&rest[..rest.len() - held], forward);
        self.carry = rest[rest.len() - held..].to_vec();
    }

    /// The stream ended: a part of a marker that never ended is the task's own output.
    pub(crate) fn end(&mut self, forward: &mut impl FnMut(&[u8])) {
        let rest = std::mem::take(&mut self.carry);
        self.keep(&rest, forward);
    }

    /// Forwards a task's output and keeps its first and last few KiB.
    fn keep(&mut self, bytes: &[u8], forward: &mut impl FnMut(&[u8])) {
        if bytes.is_empty() {
            return;
        }
        forward(bytes);
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
/// the task's bytes to `forward`; closes `err` at its end.
pub(crate) fn drain(
    err: &mut Option<OwnedFd>,
    output: &mut Output,
    mut forward: impl FnMut(&[u8]),
) {
    let mut buf = [0; 8192];
    while let Some(fd) = err.as_ref() {
        match sys::read(fd.as_fd(), &mut buf) {
            Ok(0) => {
                *err = None;
                output.end(&mut forward);
            }
            Ok(n) => output.take(&buf[..n], &mut forward),
            Err(_) => return,
        }
    }
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

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod test {
    use super::*;

    fn feed(out: &mut Output, chunks: &[&[u8]]) -> Vec<u8> {
        let mut forwarded = Vec::new();
        for chunk in chunks {
            out.take(chunk, &mut |b: &[u8]| forwarded.extend_from_slice(b));
        }
        forwarded
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
