//! Worker output on its way to the parent's stderr, without the I/O thread ever writing it.
//!
//! The I/O thread reads a worker's stderr and [`push`](Forward::push)es the bytes into a bounded
//! buffer: a short lock, never a write. What does not fit is dropped and counted. The pool's
//! forwarding thread (`cf-pool-out`), started by the thread that builds the pool, prints the
//! bytes with `eprint!`: that is the path libtest's output capture sees, and a thread started
//! from a captured test thread inherits that test's capture. When the parent's stderr is a pipe
//! nobody reads, only this thread blocks; the buffer fills, later output is dropped, and the
//! pool keeps serving. Once output flows again, the thread says how much was dropped.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How much output may wait for the forwarding thread.
const CAPACITY: usize = 1 << 20;

/// How long dropping a pool waits for its output to be printed.
const LINGER: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    bytes: Vec<u8>,
    /// Bytes dropped since the last report.
    dropped: u64,
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

/// The workers' stdout and stderr, each on its way to ours.
pub(crate) struct Outputs {
    pub(crate) out: Arc<Forward>,
    pub(crate) err: Arc<Forward>,
}

impl Outputs {
    /// Starts both forwarding threads. Call it from the thread that builds the pool.
    pub(crate) fn start() -> io::Result<Outputs> {
        Ok(Outputs {
            out: Forward::start(true)?,
            err: Forward::start(false)?,
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

    /// Starts a forwarding thread, for our stdout or our stderr.
    fn start(stdout: bool) -> io::Result<Arc<Forward>> {
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
            .spawn(move || me.run())?;
        Ok(forward)
    }

    /// Queues `bytes` for the parent's stderr; drops (and counts) what does not fit. Never
    /// blocks on anything but the short lock.
    pub(crate) fn push(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut state = self.lock();
        let room = CAPACITY.saturating_sub(state.bytes.len());
        if state.gone || room == 0 {
            state.dropped += bytes.len() as u64;
            return;
        }
        let wake = state.bytes.is_empty();
        let fits = &bytes[..room.min(bytes.len())];
        state.bytes.extend_from_slice(fits);
        state.dropped += (bytes.len() - fits.len()) as u64;
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
    fn run(&self) {
        let mut bytes = Vec::new();
        let mut carry = Vec::new();
        let mut broken = false;
        loop {
            let mut state = self.lock();
            while state.bytes.is_empty() && state.dropped == 0 && !state.closed {
                state = self.cv.wait(state).unwrap_or_else(crate::sync::unpoison);
            }
            std::mem::swap(&mut bytes, &mut state.bytes);
            let dropped = std::mem::take(&mut state.dropped);
            let closed = state.closed;
            drop(state);
            if !broken {
                broken = !print(&mut carry, &bytes, closed, dropped, self.stdout);
            }
            bytes.clear();
            if closed && self.lock().bytes.is_empty() {
                break;
            }
        }
        self.lock().gone = true;
        self.cv.notify_all();
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
