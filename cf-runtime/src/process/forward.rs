//! Worker output on its way to the parent's stderr, without the I/O thread ever writing it.
//!
//! The I/O thread reads a worker's stderr and [`push`](Forward::push)es the bytes into a bounded
//! buffer: a short lock, never a write. What does not fit is dropped and counted. The pool's
//! forwarding thread (`cf-pool-out`), started by the thread that builds the pool, prints the
//! bytes with `eprint!`: that is the path libtest's output capture sees, and a thread started
//! from a captured test thread inherits that test's capture. When the parent's stderr is a pipe
//! nobody reads, only this thread blocks; the buffer fills, later output is dropped, and the
//! pool keeps serving. Once output flows again, the thread says how much was dropped.
//!
//! The records of workers' events (`logs.rs`) share the stderr buffer, each at its place in
//! the text, and the thread re-emits them on the subscriber captured when the pool was built:
//! a subscriber that blocks holds up this thread only, and what does not fit meanwhile is
//! dropped and counted (reported as a `warn` event on that subscriber).

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::logs::{self, Emitter, Logged};

/// How much output may wait for the forwarding thread.
const CAPACITY: usize = 1 << 20;

/// How long dropping a pool waits for its output to be printed.
const LINGER: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    bytes: Vec<u8>,
    /// Records, each with the length `bytes` had when it came: its place in the text.
    records: Vec<(usize, Logged)>,
    /// The bytes of `records`' bodies.
    record_bytes: usize,
    /// Bytes dropped since the last report.
    dropped: u64,
    /// Records dropped since the last report.
    records_dropped: u64,
    /// No more output will come: print what is left and stop.
    closed: bool,
    /// The forwarding thread has stopped.
    gone: bool,
}

/// The buffer between the I/O thread and the forwarding thread.
#[derive(Default)]
pub(crate) struct Forward {
    state: Mutex<State>,
    cv: Condvar,
    /// Printed with `print!` (the workers' stdout) rather than `eprint!`.
    stdout: bool,
}

/// The workers' stdout and stderr, each on its way to ours, and their events on their way to
/// our subscriber.
pub(crate) struct Outputs {
    pub(crate) out: Arc<Forward>,
    pub(crate) err: Arc<Forward>,
    /// The level workers forward events up to (`logs::level`), 0 for none.
    pub(crate) log_level: u8,
}

impl Outputs {
    /// Starts both forwarding threads; the stderr one re-emits workers' events on `dispatch`,
    /// if it wants any. Call it from the thread that builds the pool.
    pub(crate) fn start(dispatch: tracing::Dispatch) -> io::Result<Outputs> {
        let log_level = logs::level(&dispatch);
        let emitter = (log_level > 0).then(|| Emitter::new(dispatch));
        Ok(Outputs {
            out: Forward::start(true, None)?,
            err: Forward::start(false, emitter)?,
            log_level,
        })
    }

    /// No more output will come: waits (a bounded time) until what is queued has been printed.
    pub(crate) fn close(&self) {
        self.out.close();
        self.err.close();
    }
}

impl Forward {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(crate::sync::unpoison)
    }

    /// Starts a forwarding thread, for our stdout or our stderr (with the `emitter` of
    /// workers' events, if they send any).
    fn start(stdout: bool, emitter: Option<Emitter>) -> io::Result<Arc<Forward>> {
        let forward = Arc::new(Forward {
            stdout,
            ..Forward::default()
        });
        let me = forward.clone();
        thread::Builder::new()
            .name(
                if stdout {
                    "cf-pool-stdout"
                } else {
                    "cf-pool-out"
                }
                .to_owned(),
            )
            .spawn(move || me.run(emitter))?;
        Ok(forward)
    }

    /// Queues `bytes` for the parent's stderr; drops (and counts) what does not fit. Never
    /// blocks on anything but the short lock.
    pub(crate) fn push(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut state = self.lock();
        let room = state.room();
        if state.gone || room == 0 {
            state.dropped += bytes.len() as u64;
            return;
        }
        let wake = state.is_empty();
        let fits = &bytes[..room.min(bytes.len())];
        state.bytes.extend_from_slice(fits);
        state.dropped += (bytes.len() - fits.len()) as u64;
        drop(state);
        if wake {
            self.cv.notify_one();
        }
    }

    /// Queues the record `body` of worker `pid`, after the bytes pushed so far; drops (and
    /// counts) it if it does not fit. Never blocks on anything but the short lock.
    pub(crate) fn push_log(&self, pid: u32, body: &[u8]) {
        let mut state = self.lock();
        if state.gone || state.room() < body.len() {
            state.records_dropped += 1;
            return;
        }
        let wake = state.is_empty();
        let at = state.bytes.len();
        state.record_bytes += body.len();
        state.records.push((
            at,
            Logged {
                pid,
                body: body.into(),
            },
        ));
        drop(state);
        if wake {
            self.cv.notify_one();
        }
    }

    /// No more output will come: waits (a bounded time) until what is queued has been printed.
    pub(crate) fn close(&self) {
        let deadline = Instant::now() + LINGER;
        let mut state = self.lock();
        state.closed = true;
        self.cv.notify_all();
        while !state.gone {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                // The parent's stderr does not take it: leave the thread behind.
                return;
            };
            state = self
                .cv
                .wait_timeout(state, left)
                .unwrap_or_else(crate::sync::unpoison)
                .0;
        }
    }

    /// The forwarding thread's body.
    fn run(&self, mut emitter: Option<Emitter>) {
        // Whatever this thread emits (the count of dropped records) goes there too.
        let _default = emitter
            .as_ref()
            .map(|e| tracing::dispatcher::set_default(e.dispatch()));
        let mut taken = State::default();
        let mut carry = Vec::new();
        let mut broken = false;
        loop {
            let mut state = self.lock();
            while state.is_empty() && !state.closed {
                state = self.cv.wait(state).unwrap_or_else(crate::sync::unpoison);
            }
            std::mem::swap(&mut taken.bytes, &mut state.bytes);
            std::mem::swap(&mut taken.records, &mut state.records);
            state.record_bytes = 0;
            let dropped = std::mem::take(&mut state.dropped);
            let records_dropped = std::mem::take(&mut state.records_dropped);
            let closed = state.closed;
            drop(state);
            let mut at = 0;
            for (place, logged) in taken.records.drain(..) {
                if !broken {
                    broken = !print(&mut carry, &taken.bytes[at..place], false, 0, self.stdout);
                }
                at = place;
                if let Some(emitter) = &mut emitter {
                    emitter.emit(&logged);
                }
            }
            if !broken {
                broken = !print(&mut carry, &taken.bytes[at..], closed, dropped, self.stdout);
            }
            if records_dropped > 0 {
                tracing::warn!(
                    dropped = records_dropped,
                    "cf: events of workers were dropped: the parent's subscriber did not keep up"
                );
            }
            taken.bytes.clear();
            if closed && self.lock().is_empty() {
                break;
            }
        }
        self.lock().gone = true;
        self.cv.notify_all();
    }
}

impl State {
    /// Nothing to print, emit or report.
    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
            && self.records.is_empty()
            && self.dropped == 0
            && self.records_dropped == 0
    }

    /// How many more bytes (of text or records) fit.
    fn room(&self) -> usize {
        CAPACITY.saturating_sub(self.bytes.len() + self.record_bytes)
    }
}

/// Prints `bytes` (after `carry`, an unfinished UTF-8 sequence) and the count of `dropped`
/// bytes; false if stderr is broken (`eprint!` panics when a write fails).
fn print(carry: &mut Vec<u8>, bytes: &[u8], end: bool, dropped: u64, stdout: bool) -> bool {
    carry.extend_from_slice(bytes);
    // A character cut between two reads is held back until its end comes.
    let cut = match std::str::from_utf8(carry) {
        Err(e) if e.error_len().is_none() && !end => carry.len() - e.valid_up_to(),
        _ => 0,
    };
    let rest = carry.split_off(carry.len() - cut);
    let ok = catch_unwind(AssertUnwindSafe(|| {
        if !carry.is_empty() && stdout {
            print!("{}", String::from_utf8_lossy(carry));
        } else if !carry.is_empty() {
            eprint!("{}", String::from_utf8_lossy(carry));
        }
        if dropped > 0 {
            eprintln!(
                "cf: {dropped} bytes of worker output were dropped: the parent's {} did not \
                 keep up",
                if stdout { "stdout" } else { "stderr" }
            );
        }
    }))
    .is_ok();
    *carry = rest;
    ok
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn output_past_the_capacity_is_dropped_and_counted() {
        let forward = Forward::default();
        forward.push(&vec![b'x'; CAPACITY - 10]);
        forward.push(&[b'y'; 25]);
        forward.push(b"z");
        let state = forward.lock();
        assert_eq!(state.bytes.len(), CAPACITY);
        assert_eq!(state.dropped, 16);
    }
}
