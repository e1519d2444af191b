//! The seed's second program: `wait(..., ReturnWhen::FirstException)` returns as soon as one
//! task fails, and the caller cancels the tasks that have not started.
//!
//! It runs twice. First as in the seed, on inputs 0..10: no input is 13, so nothing fails and
//! `wait` behaves as `AllCompleted`. Then on inputs 8..20, where 13 fails: `wait` returns early,
//! and the futures that have not started are cancelled; each line of the report says what became
//! of which inputs. The second run uses one worker and tasks that take a moment, so that most of
//! the inputs after 13 are still waiting when the failure arrives. A task that the pool hands to
//! the worker in the instant between the failure and the `cancel` calls is running and cannot be
//! cancelled (as in Python), so the split between "cancelled" and "finished anyway" can differ
//! by a task or two from run to run.
//!
//! Run with `cargo run --release --example wait_first_exception`.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use cf::{ProcessPoolExecutor, ReturnWhen, task, wait};
use serde::{Deserialize, Serialize};

/// The task's own error: Python's `ValueError("Unlucky number!")`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct UnluckyNumber;

impl fmt::Display for UnluckyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Unlucky number!")
    }
}

impl std::error::Error for UnluckyNumber {}

/// Squares `n`, after a short pause that stands for real work; fails on 13.
#[task]
fn task_that_might_fail(n: i64) -> Result<i64, UnluckyNumber> {
    if n == 13 {
        return Err(UnluckyNumber);
    }
    std::thread::sleep(Duration::from_millis(200));
    Ok(n.pow(2))
}

/// One run of the seed's program on `inputs`, then a report of what became of each input.
fn run(executor: &ProcessPoolExecutor, inputs: Range<i64>) -> Result<(), cf::Error> {
    let mut futures = Vec::new();
    for i in inputs.clone() {
        futures.push(executor.submit(task_that_might_fail, i)?);
    }

    // Wait for ONLY the first exception to occur.
    let outcome = wait(&futures, None, ReturnWhen::FirstException);

    // Check the done set for an exception (a cancelled future is done, but is no exception).
    let exception = outcome
        .done
        .iter()
        .filter(|f| !f.cancelled())
        .find_map(|f| f.exception());
    if let Some(e) = exception {
        println!("Early termination due to: {e}");
        // Cancel the remaining futures: those that have not started yet can be.
        for f in &outcome.not_done {
            f.cancel();
        }
    } else {
        println!("All tasks completed successfully or were cancelled.");
    }

    // Beyond the seed: what became of each input, in input order.
    let (mut before, mut after, mut cancelled, mut failed) = (vec![], vec![], vec![], vec![]);
    for (n, future) in inputs.zip(&futures) {
        match future.result() {
            Ok(square) if outcome.done.contains(future) => before.push(format!("{n}->{square}")),
            Ok(square) => after.push(format!("{n}->{square}")),
            Err(e) if e.is_cancelled() => cancelled.push(n.to_string()),
            Err(e) => failed.push(format!("{n} ({e})")),
        }
    }
    println!(
        "  wait returned with {} of {} futures done",
        outcome.done.len(),
        futures.len()
    );
    for (what, list) in [
        ("finished before wait returned", before),
        ("failed", failed),
        ("cancelled, never ran", cancelled),
        ("already running, so finished anyway", after),
    ] {
        if !list.is_empty() {
            println!("  {what} ({}): {}", list.len(), list.join(", "));
        }
    }
    Ok(())
}

fn main() -> Result<(), cf::Error> {
    println!("== Run 1: inputs 0..10, as in the seed; no 13, so nothing fails ==");
    run(&ProcessPoolExecutor::new()?, 0..10)?;
    println!();
    println!("== Run 2: inputs 8..20 on one worker; 13 fails, so wait returns early ==");
    run(&ProcessPoolExecutor::with_max_workers(1)?, 8..20)?;
    Ok(())
}
