//! [`Waiter`]: a thread blocked on one or more futures.

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::{lock, relock};

/// How long a waiter looks for its results before it parks.
const SPIN: Duration = Duration::from_micros(50);

/// A wait that found results within this long, with many futures outstanding, counts toward
/// a streak; a streak of [`STREAK`] such waits means results pour in, and the waiter naps.
const FAST: Duration = Duration::from_micros(10);
const STREAK: u32 = 8;

/// How long a waiter naps while results pour in, and how many naps before it parks.
const NAP: Duration = Duration::from_micros(200);
const NAPS: u32 = 5;

/// A nap that found fewer results than this ends the napping: they no longer pour in (at
/// least 80,000 a second).
const BATCH: usize = 16;

/// The CPUs this process may use (one if unknown).
fn cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Moves the keys held into `keys` (emptied first; the buffers are swapped, so that neither
/// allocates once both have grown); returns how many.
fn take(done: &mut WaiterState, keys: &mut Vec<usize>) -> usize {
    keys.clear();
    std::mem::swap(&mut done.keys, keys);
    keys.len()
}

/// The time left until `deadline`: `Some(None)` without one, `None` once it passed.
#[allow(clippy::option_option)]
fn left(deadline: Option<Instant>) -> Option<Option<Duration>> {
    match deadline {
        None => Some(None),
        Some(deadline) => deadline.checked_duration_since(Instant::now()).map(Some),
    }
}

/// A thread blocked on one or more futures; each future pushes its key when it finishes.
#[derive(Default)]
pub(crate) struct Waiter {
    done: Mutex<WaiterState>,
    cv: Condvar,
    /// How many waits in a row found results fast, with many futures outstanding (see
    /// [`wait`](Self::wait)); [`STREAK`] while the waiter naps.
    streak: AtomicU32,
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
    /// `outstanding` is how many futures the caller still waits for.
    ///
    /// It spins a little before it parks: the next result is worth looking for, since a wake-up
    /// from parking lies on each round trip's critical path (tens of microseconds on a VM).
    /// But when results pour in (more futures outstanding than the machine has CPUs, and the
    /// last few waits each found results within [`FAST`]), the cores are busy producing them:
    /// a spinning waiter takes time from those threads, and a parked one costs whoever
    /// notifies it a wake-up per batch. It naps instead, up to [`NAPS`] times, and takes the
    /// batch that came meanwhile; notifications cost nothing. Once a nap finds less than a
    /// batch, it waits as before.
    pub(crate) fn wait(
        &self,
        deadline: Option<Instant>,
        keys: &mut Vec<usize>,
        outstanding: usize,
    ) -> bool {
        let start = Instant::now();
        let pouring = outstanding > cpus() && self.streak.load(Relaxed) >= STREAK;
        let found = if pouring {
            self.nap(deadline, keys)
        } else {
            self.spin_then_park(deadline, keys)
        };
        let streak = match found {
            None => return false,
            Some(_) if outstanding <= cpus() => 0,
            Some(n) if pouring && n >= BATCH => STREAK,
            Some(_) if pouring => 0,
            Some(_) if start.elapsed() <= FAST => self.streak.load(Relaxed) + 1,
            Some(_) => 0,
        };
        self.streak.store(streak, Relaxed);
        true
    }

    /// Takes the keys once a nap finds some, parking (to be notified) after [`NAPS`] naps.
    fn nap(&self, deadline: Option<Instant>, keys: &mut Vec<usize>) -> Option<usize> {
        let mut naps = NAPS;
        let mut done = lock(&self.done);
        loop {
            if !done.keys.is_empty() {
                return Some(take(&mut done, keys));
            }
            let left = left(deadline)?;
            if naps == 0 {
                return self.park(done, deadline, keys);
            }
            naps -= 1;
            let nap = left.map_or(NAP, |left| left.min(NAP));
            done = relock(self.cv.wait_timeout(done, nap)).0;
        }
    }

    /// Looks for keys for [`SPIN`], yielding the CPU, then parks.
    fn spin_then_park(&self, deadline: Option<Instant>, keys: &mut Vec<usize>) -> Option<usize> {
        let spin_until = Instant::now() + SPIN;
        while Instant::now() < spin_until && deadline.is_none_or(|d| Instant::now() < d) {
            let mut done = lock(&self.done);
            if !done.keys.is_empty() {
                return Some(take(&mut done, keys));
            }
            drop(done);
            std::thread::yield_now();
        }
        self.park(lock(&self.done), deadline, keys)
    }

    /// Blocks until notified of a key, or until `deadline`: `None` then.
    fn park(
        &self,
        mut done: MutexGuard<'_, WaiterState>,
        deadline: Option<Instant>,
        keys: &mut Vec<usize>,
    ) -> Option<usize> {
        loop {
            if !done.keys.is_empty() {
                return Some(take(&mut done, keys));
            }
            let left = left(deadline)?;
            done.sleeping = true;
            done = match left {
                None => relock(self.cv.wait(done)),
                Some(left) => relock(self.cv.wait_timeout(done, left)).0,
            };
            done.sleeping = false;
        }
    }
}

#[cfg(test)]
mod test {
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::{Duration, Instant};

    use super::{BATCH, STREAK, Waiter};

    const MANY: usize = 1 << 20;

    /// Waits that each find a batch at once, with many futures outstanding, put the waiter to
    /// napping; it naps on while each nap finds a batch, and once a nap finds less, it waits as
    /// before. (Keys are notified before each wait, from this thread, so that a wait is fast
    /// however the machine schedules threads: a preemption inside one only costs a round.)
    #[test]
    fn a_waiter_naps_while_results_pour_in_and_stops_after() {
        let w = Waiter::default();
        let mut keys = Vec::new();
        // With no more futures outstanding than CPUs, nothing pours in.
        for key in 0..4 * STREAK as usize {
            w.notify(key);
            assert!(w.wait(None, &mut keys, 1));
        }
        assert_eq!(w.streak.load(Relaxed), 0, "a few futures are no pour");
        let mut rounds = 0;
        while w.streak.load(Relaxed) < STREAK {
            rounds += 1;
            assert!(
                rounds < 10_000,
                "waits served at once never counted as pouring in"
            );
            for key in 0..BATCH {
                w.notify(key);
            }
            assert!(w.wait(None, &mut keys, MANY));
            assert_eq!(keys.len(), BATCH);
        }
        // Napping: each nap that finds a batch keeps it going.
        for _ in 0..10 {
            for key in 0..BATCH {
                w.notify(key);
            }
            assert!(w.wait(None, &mut keys, MANY));
            assert_eq!(keys.len(), BATCH);
            assert_eq!(w.streak.load(Relaxed), STREAK, "a full nap naps on");
        }
        // One late key comes from another thread: a nap that found it alone ends the napping.
        let w = Arc::new(w);
        let late = {
            let w = w.clone();
            std::thread::spawn(move || w.notify(7))
        };
        assert!(w.wait(None, &mut keys, MANY));
        assert_eq!(keys, [7]);
        assert!(keys.len() < BATCH);
        assert_eq!(w.streak.load(Relaxed), 0);
        late.join().unwrap();
    }

    /// A napping waiter hears a key whenever it comes: during a nap, or after the naps, when it
    /// has parked and only a notification wakes it.
    #[test]
    fn a_napping_waiter_hears_a_key_whenever_it_comes() {
        for delay_us in [0, 50, 300, 900, 2_000, 5_000] {
            let w = Arc::new(Waiter::default());
            w.streak.store(STREAK, Relaxed);
            let notifier = {
                let w = w.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_micros(delay_us));
                    w.notify(delay_us as usize);
                })
            };
            let mut keys = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            assert!(
                w.wait(Some(deadline), &mut keys, MANY),
                "lost at {delay_us} µs"
            );
            assert_eq!(keys, [delay_us as usize]);
            notifier.join().unwrap();
        }
    }

    /// A napping waiter keeps its deadline: it does not nap past it.
    #[test]
    fn a_napping_waiter_keeps_its_deadline() {
        let w = Waiter::default();
        w.streak.store(STREAK, Relaxed);
        let mut keys = Vec::new();
        let start = Instant::now();
        let limit = Duration::from_micros(300);
        assert!(!w.wait(Some(start + limit), &mut keys, MANY));
        let took = start.elapsed();
        assert!(took >= limit, "gave up after {took:?}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert!(keys.is_empty());
    }
}
