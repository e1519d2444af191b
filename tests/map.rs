//! `map`: results in input order, `chunksize`, `buffersize` and lazy submission (endless inputs
//! work), errors in place, `timeout`, and cancellation of what a dropped `map` had submitted.
//!
//! Partly adapted from CPython's `Lib/test/test_concurrent_futures/executor.py` (`test_map`,
//! `test_map_exception`, `test_map_timeout`, `test_map_buffersize_on_infinite_iterable`,
//! `test_map_buffersize_on_multiple_infinite_iterables`,
//! `test_map_buffersize_without_iteration`, `test_map_buffersize_value_validation`) and
//! `test_process_pool.py` (`test_map_chunksize`). Copyright (c) 2001 Python Software Foundation;
//! All Rights Reserved. Used under the PSF License Agreement (Python Software Foundation License
//! Version 2).
//!
//! Unlike Python's, an error does not end the iteration: it is an `Err` item in its place.

mod util;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cf::TaskError;
use util::{Gate, both, sleep_ms};

#[cf::task]
fn square(x: u64) -> u64 {
    x * x
}

#[cf::task]
fn pow(base: u64, exp: u32) -> u64 {
    base.pow(exp)
}

/// Fails on odd inputs, panics on multiples of 5 (checked first).
#[cf::task]
fn picky(x: u64) -> Result<u64, String> {
    if x.is_multiple_of(5) && x > 0 {
        panic!("five {x}");
    }
    if x % 2 == 1 {
        return Err(format!("odd {x}"));
    }
    Ok(x)
}

/// Waits at the gate at `path` when `hold`, then returns `x`.
#[cf::task]
fn maybe_hold(path: String, x: u64, hold: bool) -> u64 {
    if hold {
        util::pass_gate(&path, x);
    }
    x
}

/// Leaves the file `dir/x` behind; task 1 first waits at the gate.
#[cf::task]
fn trace(dir: String, gate: String, x: u64) {
    if x == 1 {
        util::pass_gate(&gate, x);
    }
    std::fs::write(Path::new(&dir).join(x.to_string()), b"ran").expect("write the trace");
}

// test_map: the results come in input order, whatever the order in which the tasks finish.
both!(
    fn order_kept(pool: 2) {
        let results: Vec<_> = pool.map(square, 0..50).collect();
        let expected: Vec<_> = (0..50).map(|x| Ok(x * x)).collect();
        assert_eq!(results, expected);
        // The first task is the slowest (a workload, not a synchronisation: any order passes
        // with a correct map, a wrong one fails whenever the sleep does its job).
        let results: Vec<_> = pool.map(sleep_ms, [300, 0, 0, 0, 50, 0]).collect();
        assert_eq!(results, [Ok(300), Ok(0), Ok(0), Ok(0), Ok(50), Ok(0)]);
        let results: Vec<_> = pool.map(pow, (0..10).map(|x| (x, x as u32))).collect();
        let expected: Vec<_> = (0..10u64).map(|x| Ok(x.pow(x as u32))).collect();
        assert_eq!(results, expected);
    }
);

// test_map_chunksize.
both!(
    fn chunksize(pool: 2) {
        let reference: Vec<_> = (0..40u64).map(|x| Ok(x.pow(x as u32 % 8))).collect();
        for chunksize in [1, 6, 40, 100] {
            let results: Vec<_> = pool
                .map(pow, (0..40).map(|x| (x, x as u32 % 8)))
                .chunksize(chunksize)
                .collect();
            assert_eq!(results, reference, "chunksize {chunksize}");
        }
        // A chunk larger than the buffer still works.
        let results: Vec<_> = pool.map(square, 0..30).chunksize(7).buffersize(2).collect();
        assert_eq!(results, (0..30).map(|x| Ok(x * x)).collect::<Vec<_>>());
    }
);

#[test]
#[should_panic = "chunksize must be at least 1"]
fn chunksize_zero_panics() {
    let pool = cf::ThreadPoolExecutor::with_max_workers(1);
    let _ = pool.map(square, 0..3).chunksize(0);
}

#[test]
#[should_panic = "buffersize must be at least 1"]
fn buffersize_zero_panics() {
    let pool = cf::ThreadPoolExecutor::with_max_workers(1);
    let _ = pool.map(square, 0..3).buffersize(0);
}

// test_map_buffersize_on_infinite_iterable: an endless input works.
both!(
    fn endless_input(pool: 2) {
        let results: Vec<_> = pool.map(square, 0..).take(100).collect();
        assert_eq!(results, (0..100).map(|x| Ok(x * x)).collect::<Vec<_>>());
        let results: Vec<_> = pool
            .map(square, std::iter::repeat(3))
            .buffersize(4)
            .take(100)
            .collect();
        assert_eq!(results, vec![Ok(9); 100]);
        // test_map_buffersize_on_multiple_infinite_iterables.
        let results: Vec<_> = pool
            .map(pow, (0..).zip(std::iter::repeat(2)))
            .buffersize(2)
            .take(10)
            .collect();
        assert_eq!(results, (0..10).map(|x| Ok(x * x)).collect::<Vec<_>>());
    }
);

// test_map_buffersize_without_iteration, and laziness: inputs are taken as results are
// consumed, never more than `buffersize` ahead.
both!(
    fn lazy_and_bounded(pool: 2) {
        for buffersize in [1, 4, 16] {
            let pulled = Arc::new(AtomicUsize::new(0));
            let counter = pulled.clone();
            let inputs = (0..).inspect(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            });
            let mut results = pool.map(square, inputs).buffersize(buffersize);
            assert!(pulled.load(Ordering::SeqCst) <= buffersize);
            for consumed in 1..=40 {
                assert_eq!(results.next(), Some(Ok((consumed - 1) * (consumed - 1))));
                let pulled = pulled.load(Ordering::SeqCst);
                let consumed = consumed as usize;
                assert!(
                    (consumed..=consumed + buffersize).contains(&pulled),
                    "buffersize {buffersize}: {pulled} inputs taken after {consumed} results"
                );
            }
        }
    }
);

/// The outcomes with the pid of every panic set to 0 (which worker ran a task may vary).
fn without_pids(results: &[Result<u64, TaskError<String>>]) -> Vec<Result<u64, TaskError<String>>> {
    results
        .iter()
        .cloned()
        .map(|r| {
            r.map_err(|e| match e {
                TaskError::Panicked(mut info) => {
                    info.pid = 0;
                    TaskError::Panicked(info)
                }
                other => other,
            })
        })
        .collect()
}

// test_map_exception: errors and panics are `Err` items in their place, and the ones after them
// still come.
both!(
    fn errors_in_place(pool: 2) {
        let results: Vec<_> = pool.map(picky, 0..12).collect();
        // In chunks (a process pool sends each chunk as one job), each input keeps its own
        // outcome.
        for chunksize in [4, 5, 12] {
            let chunked: Vec<_> = pool.map(picky, 0..12).chunksize(chunksize).collect();
            assert_eq!(without_pids(&chunked), without_pids(&results), "chunksize {chunksize}");
        }
        assert_eq!(results.len(), 12);
        for (x, result) in (0..12u64).zip(&results) {
            match result {
                Ok(v) => assert!(x % 2 == 0 && (x == 0 || x % 5 != 0) && *v == x),
                Err(TaskError::Failed(e)) => assert_eq!(*e, format!("odd {x}")),
                Err(TaskError::Panicked(info)) => {
                    assert_eq!(x % 5, 0);
                    assert_eq!(info.message, format!("five {x}"));
                }
                Err(other) => panic!("{x}: {other:?}"),
            }
        }
        assert!(results[1].as_ref().unwrap_err().is_failed());
        assert!(results[5].as_ref().unwrap_err().is_panicked());
        assert!(results[10].as_ref().unwrap_err().is_panicked());
        assert_eq!(results[11], Err(TaskError::Failed("odd 11".to_owned())));
    }
);

// test_map_timeout: the results ready in time, then one `Timeout`, then nothing.
both!(
    fn timeout(pool: 2) {
        let gate = Gate::new();
        let inputs = [(gate.path(), 0, false), (gate.path(), 1, false), (gate.path(), 2, true)];
        let mut results = pool.map(maybe_hold, inputs).timeout(Duration::from_secs(2));
        assert_eq!(results.next(), Some(Ok(0)));
        assert_eq!(results.next(), Some(Ok(1)));
        assert_eq!(results.next(), Some(Err(TaskError::Timeout)));
        assert_eq!(results.next(), None);
        drop(results);
        // Closing the gate lets the held task go.
        drop(gate);
    }
);

fn traces(dir: &Path) -> Vec<u64> {
    let mut ran: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    ran.sort_unstable();
    ran
}

/// A new empty directory for traces.
fn trace_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("cf-map-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    dir
}

// Dropping a `map` cancels the tasks it submitted that have not started (as Python's does).
both!(
    fn drop_cancels_what_has_not_started(pool: 1) {
        let dir = trace_dir();
        {
            let gate = Gate::new();
            let inputs = (0..100).map(|x| (dir.to_str().unwrap().to_owned(), gate.path(), x));
            let mut results = pool.map(trace, inputs).buffersize(16);
            assert_eq!(results.next(), Some(Ok(())));
            // Task 1 is running, held at the gate; the others wait behind it.
            let entered = gate.entered();
            drop(results);
            entered.release();
        }
        pool.shutdown();
        let ran = traces(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        // 0 and 1 ran; of the 15 others in flight, only those a process pool had already sent
        // to its worker (at most 8) may run too; the rest were cancelled, and nothing past the
        // buffer was ever submitted.
        assert_eq!(ran[..2], [0, 1]);
        assert!(ran.len() <= 2 + 8, "{ran:?}");
        assert!(ran.iter().all(|&x| x < 17), "{ran:?}");
    }
);

// When the timeout runs out, the tasks the `map` submitted that have not started are cancelled.
both!(
    fn timeout_cancels_what_has_not_started(pool: 1) {
        let dir = trace_dir();
        {
            let gate = Gate::new();
            let inputs = (0..100).map(|x| (dir.to_str().unwrap().to_owned(), gate.path(), x));
            let mut results = pool
                .map(trace, inputs)
                .buffersize(16)
                .timeout(Duration::from_secs(2));
            assert_eq!(results.next(), Some(Ok(())));
            // Task 1 is held at the gate until the deadline has passed.
            let entered = gate.entered();
            let timeout = results.next().unwrap().unwrap_err();
            assert_eq!(timeout, TaskError::Timeout);
            assert_eq!(timeout.to_string(), "timed out waiting for the result");
            assert_eq!(results.next(), None);
            entered.release();
        }
        pool.shutdown();
        let ran = traces(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(ran[..2], [0, 1]);
        assert!(ran.len() <= 2 + 8, "{ran:?}");
        assert!(ran.iter().all(|&x| x < 17), "{ran:?}");
    }
);

// Submitting after shutdown fails; in a `map`, each input becomes an `Err` item.
both!(
    fn map_after_shutdown(pool: 1) {
        pool.shutdown();
        let results: Vec<_> = pool.map(square, 0..3).collect();
        assert_eq!(results.len(), 3);
        for result in results {
            let error = result.unwrap_err();
            assert_eq!(
                error.to_string(),
                "task `map::square` did not run: cannot submit after shutdown"
            );
            match error {
                TaskError::Shutdown { task } => {
                    assert_eq!(task, "map::square");
                }
                other => panic!("{other:?}"),
            }
        }
    }
);

// The thread pool maps plain closures too.
#[test]
fn closures_on_threads() {
    let pool = cf::ThreadPoolExecutor::with_max_workers(3);
    let offset = 10;
    let results: Vec<_> = pool.map(move |x: u64| x + offset, 0..5).collect();
    assert_eq!(results, [Ok(10), Ok(11), Ok(12), Ok(13), Ok(14)]);
    let results: Vec<_> = pool.map(|a: u64, b: u64| a * b, [(2, 3), (4, 5)]).collect();
    assert_eq!(results, [Ok(6), Ok(20)]);
}
