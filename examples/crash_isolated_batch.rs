//! A batch job in which some records are bad: a panic, an `abort()` or an error of the task's
//! own fails only that record's future. The other records still get their results, and the pool
//! keeps taking work.
//!
//! A dead worker fails only the task it was running; the tasks queued behind it go to a fresh
//! worker (Python's `ProcessPoolExecutor` would break the whole pool instead). The workers'
//! panic messages also appear on stderr, printed by Rust's default panic hook.
//!
//! Run with `cargo run --release --example crash_isolated_batch`.

use std::fmt;

use cf::{ProcessPoolExecutor, TaskError, task};
use serde::{Deserialize, Serialize};

/// The task's own error: a record it refuses to process.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Rejected {
    record: u64,
    reason: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {} rejected: {}", self.record, self.reason)
    }
}

impl std::error::Error for Rejected {}

/// Processes one record: the number of Collatz steps from `record` down to 1. Records 7 and 14
/// panic, 13 aborts its process, 11 is rejected with the task's own error.
#[task]
fn process(record: u64) -> Result<u64, Rejected> {
    match record {
        7 | 14 => panic!("record {record} is corrupt"),
        13 => std::process::abort(),
        11 => Err(Rejected {
            record,
            reason: "checksum mismatch".to_owned(),
        }),
        _ => {
            let (mut n, mut steps) = (record, 0);
            while n > 1 {
                n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
                steps += 1;
            }
            Ok(steps)
        }
    }
}

fn main() -> Result<(), cf::Error> {
    let pool = ProcessPoolExecutor::new()?;
    let records: Vec<u64> = (1..=20).collect();
    let mut futures = Vec::new();
    for &record in &records {
        futures.push(pool.submit(process, record)?);
    }

    let (mut ok, mut panicked, mut died, mut rejected, mut other) = (0, 0, 0, 0, 0);
    for (record, future) in records.iter().zip(&futures) {
        let outcome = match future.result() {
            Ok(steps) => {
                ok += 1;
                format!("ok, {steps} Collatz steps")
            }
            Err(TaskError::Panicked(info)) => {
                panicked += 1;
                match &info.location {
                    Some(at) => format!("panicked at {}:{}: {}", at.file, at.line, info.message),
                    None => format!("panicked: {}", info.message),
                }
            }
            Err(TaskError::WorkerDied { pid, exit, .. }) => {
                died += 1;
                format!("worker pid {pid} died with {exit}")
            }
            Err(TaskError::Failed(e)) => {
                rejected += 1;
                format!("own error: {e}")
            }
            Err(e) => {
                other += 1;
                format!("other error: {e}")
            }
        };
        println!("record {record:>2}: {outcome}");
    }
    println!(
        "summary: {} records, {ok} ok, {panicked} panicked, {died} killed their worker, \
         {rejected} rejected, {other} other",
        records.len()
    );

    // The pool survived all of it: the dead worker was replaced, and new work runs.
    let after = pool.submit(process, 27)?;
    println!(
        "after the batch, the same pool ran record 27: {} Collatz steps",
        after.result()?
    );
    Ok(())
}
