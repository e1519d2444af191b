//! [`Waiter`]: a thread blocked on one or more futures.

use std::sync::{Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::{lock, relock};

/// How long a waiter looks for its result before it parks.
const SPIN: Duration = Duration::from_micros(50);

/// A thread blocked on one or more futures; each future pushes its key when it finishes.
#[derive(Default)]
pub(crate) struct Waiter {
    done: Mutex<WaiterState>,
    cv: Condvar,
}

#[derive(Default)]
struct WaiterState {
    keys: Vec<usize>,
    /// A thread is parked on the condition variable (so a notification needs a syscall).
    sleeping: bool,
    /// The task to wake, when the waiter is polled rather than blocked on.
    waker: Option<Waker>,
}

impl Waiter {
    pub(super) fn notify(&self, key: usize) {
        let mut state = lock(&self.done);
        state.keys.push(key);
        let waker = state.waker.take();
        // One notification wakes it; those that come before it runs need no system call.
        let sleeping = std::mem::take(&mut state.sleeping);
        drop(state);
        if sleeping {
            self.cv.notify_one();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Moves the keys that finished into `keys` (emptied first), or registers `cx` to be woken
    /// when one does. The buffers are swapped, so that neither allocates once both have grown.
    pub(crate) fn poll(&self, cx: &Context<'_>, keys: &mut Vec<usize>) -> Poll<()> {
        let mut state = lock(&self.done);
        if state.keys.is_empty() {
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            keys.clear();
            std::mem::swap(&mut state.keys, keys);
            Poll::Ready(())
        }
    }

    /// Moves the keys that finished into `keys` (emptied first, buffers swapped as in
    /// [`poll`](Self::poll)), blocking until there is one or `deadline` passes; false then.
    pub(crate) fn wait(&self, deadline: Option<Instant>, keys: &mut Vec<usize>) -> bool {
        let take = |done: &mut WaiterState, keys: &mut Vec<usize>| {
            keys.clear();
            std::mem::swap(&mut done.keys, keys);
            true
        };
        // A result often comes within microseconds: look a few times, yielding the CPU, before
        // parking (a wake-up from parking costs far more than that on most machines).
        let spin_until = Instant::now() + SPIN;
        while Instant::now() < spin_until && deadline.is_none_or(|d| Instant::now() < d) {
            let mut done = lock(&self.done);
            if !done.keys.is_empty() {
                return take(&mut done, keys);
            }
            drop(done);
            std::thread::yield_now();
        }
        let mut done = lock(&self.done);
        loop {
            if !done.keys.is_empty() {
                return take(&mut done, keys);
            }
            let left = match deadline {
                None => None,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) => Some(left),
                    None => return false,
                },
            };
            done.sleeping = true;
            done = match left {
                None => relock(self.cv.wait(done)),
                Some(left) => relock(self.cv.wait_timeout(done, left)).0,
            };
            done.sleeping = false;
        }
    }
}
