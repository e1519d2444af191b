//! Helpers shared by the integration tests: pools for both executors, a gate that holds tasks
//! until the test lets them go, a tiny `block_on`, and the `both!` macro that runs one test body
//! against a `ThreadPoolExecutor` and a `ProcessPoolExecutor`.
//!
//! Every test binary includes this module with `mod util;`; not every binary uses every helper.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

mod gate;
pub(crate) mod panics;

use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use cf::{ProcessPoolExecutor, ThreadPoolExecutor};
#[allow(
    unused_imports,
    reason = "not every test binary uses every part of the gate"
)]
pub(crate) use gate::{Entered, Gate, pass_gate};

/// How long a test waits for something that must happen before it calls it a failure (a hang).
pub(crate) const LONG: Duration = Duration::from_secs(60);

/// A short time, for timeouts that are meant to run out.
pub(crate) const SHORT: Duration = Duration::from_millis(100);

/// Process-pool tests take this lock so that no more than one of them spawns workers at a time
/// on the (two-core) test machines.
static WORKERS: Mutex<()> = Mutex::new(());

/// A pool, and for a process pool the lock on spawning workers. Derefs to the pool; the pool is
/// dropped (and so shut down) before the lock is released.
pub(crate) struct Pool<P> {
    pub(crate) pool: P,
    _serial: Option<MutexGuard<'static, ()>>,
}

impl<P> Pool<P> {
    /// The lock (if any) and the pool, to be dropped in the reverse order: pool first.
    pub(crate) fn split(self) -> (Option<MutexGuard<'static, ()>>, P) {
        (self._serial, self.pool)
    }
}

impl<P> Deref for Pool<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.pool
    }
}

/// Takes the lock that process-pool tests share.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    WORKERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A thread pool of `workers` threads.
pub(crate) fn thread_pool(workers: usize) -> Pool<ThreadPoolExecutor> {
    Pool {
        pool: ThreadPoolExecutor::with_max_workers(workers),
        _serial: None,
    }
}

/// A process pool of `workers` workers, holding the shared lock, with every worker started.
///
/// A process pool hands each ready worker up to two tasks ahead of time, and a worker still in
/// its start-up handshake gets none: right after start-up, a second task queues behind the
/// first on the first worker to come up, even if the first never ends. Tests that hold a task
/// at a gate and expect others to run beside it therefore start from a pool whose workers are
/// all up (see [`warm_up`]).
pub(crate) fn process_pool(workers: usize) -> Pool<ProcessPoolExecutor> {
    let guard = serial();
    let pool = ProcessPoolExecutor::with_max_workers(workers).expect("start a process pool");
    warm_up(&pool, workers);
    Pool {
        pool,
        _serial: Some(guard),
    }
}

/// Returns once `workers` workers of `pool` have held a gated task each, at the same time: then
/// every worker has done its handshake. A round in which a task queued behind another (because
/// a worker was not up yet) is let go and tried again.
pub(crate) fn warm_up(pool: &ProcessPoolExecutor, workers: usize) {
    let gate = Gate::new();
    for _ in 0..100 {
        let futures: Vec<_> = (0..workers as u64)
            .map(|i| {
                pool.submit(gated, (gate.path(), i))
                    .expect("submit a warm-up task")
            })
            .collect();
        let mut entered = vec![gate.entered()];
        while entered.len() < workers {
            match gate.entered_within(Duration::from_millis(100)) {
                Some(e) => entered.push(e),
                None => break,
            }
        }
        let all = entered.len() == workers;
        drop(entered);
        // Tasks that queued behind another reach the gate now; let them through.
        for f in &futures {
            while !f.wait_timeout(Duration::from_millis(1)) {
                drop(gate.entered_within(Duration::from_millis(10)));
            }
            f.result().expect("a warm-up task");
        }
        if all {
            return;
        }
    }
    panic!("the workers of a process pool never all came up");
}

/// Runs one test body against both executors: defines a module `$name` with the tests `thread`
/// and `process`, each binding `$pool` to a [`Pool`] of `$workers` workers (default 1).
#[allow(
    unused_macros,
    reason = "not every test binary runs a body on both executors"
)]
macro_rules! both {
    ($(#[$attr:meta])* fn $name:ident($pool:ident) $body:block) => {
        $crate::util::both!($(#[$attr])* fn $name($pool: 1) $body);
    };
    ($(#[$attr:meta])* fn $name:ident($pool:ident: $workers:expr) $body:block) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports, reason = "not every body uses every item of the file")]
            use super::*;

            #[test]
            fn thread() {
                let $pool = $crate::util::thread_pool($workers);
                $body
            }

            #[test]
            fn process() {
                let $pool = $crate::util::process_pool($workers);
                $body
            }
        }
    };
}
#[allow(
    unused_imports,
    reason = "not every test binary runs a body on both executors"
)]
pub(crate) use both;

/// Waits at the gate at `path` as `id`, then returns `id`.
#[cf::task]
pub(crate) fn gated(path: String, id: u64) -> u64 {
    pass_gate(&path, id);
    id
}

/// Returns at once with its argument.
#[cf::task]
pub(crate) fn echo(x: u64) -> u64 {
    x
}

/// Sleeps `ms` milliseconds (a workload), then returns `ms`.
#[cf::task]
pub(crate) fn sleep_ms(ms: u64) -> u64 {
    thread::sleep(Duration::from_millis(ms));
    ms
}

/// The pid of the process that runs it.
#[cf::task]
pub(crate) fn worker_pid() -> u32 {
    std::process::id()
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A waker that unparks the current thread.
pub(crate) fn thread_waker() -> Waker {
    Waker::from(Arc::new(Unpark(thread::current())))
}

/// Runs `fut` to completion on this thread, parking between polls.
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let waker = thread_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => thread::park(),
        }
    }
}

/// Runs `f` on a new thread after `delay`; the thread is detached. The delay only spaces events
/// out: tests that use it pass whichever thread runs first.
pub(crate) fn later(delay: Duration, f: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        thread::sleep(delay);
        f();
    })
}
