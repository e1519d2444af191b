//! `ProcessPoolExecutor::stats`, the `tracing` events the pool emits, and `map`'s timeout and
//! bounded, lazy submission.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod util;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cf::{ProcessPoolExecutor, TaskError, task};

#[task]
fn square(x: u64) -> u64 {
    x * x
}

#[task]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[task]
fn abort() {
    std::process::abort();
}

#[task]
fn fail(x: u64) -> Result<u64, String> {
    Err(format!("{x} is not welcome"))
}

#[test]
fn stats_count_what_happened() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::with_max_workers(2).unwrap();
    assert_eq!(pool.stats().submitted, 0);
    let ok: Vec<_> = (0..10).map(|x| pool.submit(square, x).unwrap()).collect();
    let failed = pool.submit(fail, 1).unwrap();
    let crashed = pool.submit(abort, ()).unwrap();
    for future in &ok {
        future.result().unwrap();
    }
    failed.result().unwrap_err();
    crashed.result().unwrap_err();
    // The crash is replaced; wait for the replacement to be counted by asking for more work.
    pool.submit(square, 2).unwrap().result().unwrap();
    let stats = pool.stats();
    assert_eq!(stats.submitted, 13);
    assert_eq!(stats.completed, 11);
    assert_eq!(stats.failed, 2);
    assert_eq!(stats.respawns, 1);
    assert_eq!(stats.cancelled, 0);
    assert_eq!(stats.running, 0);
    assert_eq!(stats.queued, 0);
    // Two workers and the spare (which may still be starting: `workers` is a gauge).
    assert!((2..=3).contains(&stats.workers), "{stats:?}");
}

#[test]
fn stats_count_cancellations() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .prefetch(1)
        .build()
        .unwrap();
    let busy = pool.submit(nap, 300).unwrap();
    let queued: Vec<_> = (0..5).map(|x| pool.submit(square, x).unwrap()).collect();
    for future in &queued {
        assert!(future.cancel());
    }
    busy.result().unwrap();
    pool.submit(square, 1).unwrap().result().unwrap();
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.completed, stats.cancelled),
        (7, 2, 5)
    );
}

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_pool_traces_worker_lives_and_task_failures() {
    let _serial = util::serial();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The pool's I/O thread emits the events: the subscriber must be the process-wide default.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    {
        let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
        pool.submit(abort, ()).unwrap().result().unwrap_err();
        pool.submit(fail, 7).unwrap().result().unwrap_err();
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for needle in [
        "cf: starting a worker",
        "cf: worker exited",
        "cf: worker started",
        "cf: task failed with its worker",
        "cf: task failed",
    ] {
        assert!(log.contains(needle), "no {needle:?} in:\n{log}");
    }
    assert!(log.contains("SIGABRT"), "{log}");
}

#[test]
fn map_gives_up_at_its_timeout() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::with_max_workers(2).unwrap();
    let results: Vec<_> = pool
        .map(nap, [0, 0, 10_000, 0])
        .timeout(Duration::from_millis(1500))
        .collect();
    assert_eq!(results[..2], [Ok(0), Ok(0)]);
    assert_eq!(results[2], Err(TaskError::Timeout));
    assert_eq!(results.len(), 3, "iteration ends at the timeout");
    assert_eq!(
        TaskError::<cf::Never>::Timeout.to_string(),
        "timed out waiting for the result"
    );
}

#[test]
fn map_over_an_endless_input_keeps_a_bounded_number_in_flight() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::with_max_workers(2).unwrap();
    let mut results = pool.map(square, 0..).buffersize(8);
    for x in 0..1000 {
        assert_eq!(results.next(), Some(Ok(x * x)));
        assert!(
            pool.stats().submitted <= x + 1 + 8,
            "more than 8 ahead at {x}"
        );
    }
}

#[task]
fn refusing_init() -> Result<(), String> {
    Err("no state today".to_owned())
}

/// Issue 12 (Adopters) item 8: `stats().workers` counts a worker from the moment it is asked
/// for, so there was no way to wait for a pool that takes tasks. `ready_workers` counts the
/// workers whose handshake and initializer are done, and `wait_ready` waits for all of them.
#[test]
fn wait_ready_waits_for_the_initializers() {
    let _serial = util::serial();
    let gate = util::Gate::new();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .spare_worker(false)
        .initializer(util::gated, (gate.path(), 0))
        .build()
        .unwrap();
    // Both initializers wait at the gate: the workers are started, not ready.
    let entered = gate.entered_n(2);
    assert!(!pool.wait_ready(Duration::ZERO).unwrap());
    let stats = pool.stats();
    assert_eq!((stats.workers, stats.ready_workers), (2, 0));
    drop(entered);
    assert!(pool.wait_ready(util::LONG).unwrap());
    assert_eq!(pool.stats().ready_workers, 2);
    pool.shutdown();
    assert!(pool.wait_ready(util::LONG).unwrap_err().is_shutdown());
}

/// `wait_ready` on a pool whose workers cannot start returns the cause, without waiting for the
/// timeout.
#[test]
fn wait_ready_reports_a_broken_pool() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer(refusing_init, ())
        .build()
        .unwrap();
    let error = pool.wait_ready(util::LONG).unwrap_err();
    assert!(
        matches!(error.broken_cause(), Some(cf::BrokenCause::Startup { .. })),
        "{error:?}"
    );
}
