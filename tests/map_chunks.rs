//! `map` with a `chunksize` on a process pool: inputs travel to a worker as one job per chunk.
//! A panic fails only its own input; a worker that dies fails its whole chunk (as in Python),
//! and every other chunk still completes.
#![allow(missing_docs, reason = "tasks are test fixtures")]

use cf::{ProcessPoolExecutor, TaskError, task};

#[task]
fn check(n: u64) -> Result<u64, String> {
    match n {
        13 => panic!("13 is unlucky"),
        42 => Err("42 is taken".to_owned()),
        77 => std::process::abort(),
        n => Ok(n * 2),
    }
}

#[test]
fn chunks_keep_order_and_fail_per_input_or_per_chunk() {
    let pool = ProcessPoolExecutor::with_max_workers(2).unwrap();
    let results: Vec<_> = pool.map(check, 0..100).chunksize(10).collect();
    assert_eq!(results.len(), 100);
    for (n, result) in (0..100u64).zip(&results) {
        match (n, result) {
            (13, Err(TaskError::Panicked(info))) => assert_eq!(info.message, "13 is unlucky"),
            (42, Err(TaskError::Failed(e))) => assert_eq!(e, "42 is taken"),
            // The chunk 70..80 died with its worker.
            (70..80, Err(TaskError::WorkerDied { exit, task, .. })) => {
                assert_eq!(exit.signal_name(), Some("SIGABRT"));
                assert_eq!(task, "map_chunks::check");
            }
            (n, Ok(v)) => assert_eq!(*v, n * 2, "input {n}"),
            (n, other) => panic!("input {n}: {other:?}"),
        }
    }
    // One job per chunk: ten submitted for a hundred inputs.
    assert_eq!(pool.stats().submitted, 10);
}

#[test]
fn a_chunk_larger_than_the_input_and_a_short_last_chunk() {
    let pool = ProcessPoolExecutor::with_max_workers(2).unwrap();
    let inputs = [1u64, 2, 3, 4, 5, 6, 7];
    let all: Vec<_> = pool.map(check, inputs).chunksize(100).collect();
    assert_eq!(all, inputs.map(|n| Ok(n * 2)));
    let short: Vec<_> = pool.map(check, inputs).chunksize(3).collect();
    assert_eq!(short, inputs.map(|n| Ok(n * 2)));
}

#[test]
fn after_shutdown_every_input_of_a_chunk_says_so() {
    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    pool.shutdown();
    let results: Vec<_> = pool.map(check, 0..5).chunksize(5).collect();
    assert_eq!(results.len(), 5);
    for result in results {
        assert_eq!(
            result.unwrap_err().to_string(),
            "task `map_chunks::check` did not run: cannot submit after shutdown"
        );
    }
}
