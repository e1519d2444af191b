//! The seed's first program: `as_completed` yields futures in completion order, not submission
//! order, and a map from future to input says which input each result belongs to.
//!
//! Run with `cargo run --release --example as_completed`.

use std::collections::HashMap;
use std::time::Duration;

use cf::{ProcessPoolExecutor, as_completed, task};
use rand::Rng;

/// Simulates a variable workload: sleeps 0.1–1.5 s, then reports.
#[task]
fn simulate_task(n: u64) -> String {
    let sleep_time = rand::rng().random_range(0.1..1.5);
    std::thread::sleep(Duration::from_secs_f64(sleep_time));
    format!("Processed {n} (slept for {sleep_time:.2}s)")
}

fn main() -> Result<(), cf::Error> {
    let numbers = [5, 2, 8, 1, 3];
    let executor = ProcessPoolExecutor::builder()
        .max_workers(numbers.len())
        .build()?;
    // Submit all tasks and keep the future -> input map.
    let mut future_to_number = HashMap::new();
    for n in numbers {
        future_to_number.insert(executor.submit(simulate_task, n)?, n);
    }
    // Process results as they become available.
    for future in as_completed(future_to_number.keys(), None) {
        let original_number = future_to_number[&future];
        match future.result() {
            Ok(result) => println!("Completed: {original_number} -> {result}"),
            Err(exc) => println!("Task for {original_number} generated an exception: {exc}"),
        }
    }
    Ok(())
}
