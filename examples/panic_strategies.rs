//! A panicking task fails only its own future, whichever panic strategy the binary was built
//! with. Under `panic = "unwind"` the worker catches the panic and goes on; under
//! `panic = "abort"` it reports the panic to the parent before it aborts, and the tasks queued
//! behind it go to a fresh worker.
//!
//! `cargo run --release --example panic_strategies` and
//! `cargo run --profile panic-abort --example panic_strategies` both print the same outcomes.

use cf::{ProcessPoolExecutor, TaskError, task};

#[task]
fn check(n: u32) -> u32 {
    assert!(n != 2, "input {n} is not allowed");
    n * 10
}

fn main() -> Result<(), cf::Error> {
    let strategy = if cfg!(panic = "abort") {
        "abort"
    } else {
        "unwind"
    };
    println!("panic strategy: {strategy}");
    // One worker holding four tasks at once, so that tasks are queued behind the panicking one.
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .prefetch(4)
        .build()?;
    let futures: Vec<_> = (0..5)
        .map(|n| pool.submit(check, n))
        .collect::<Result<_, _>>()?;
    for (n, future) in futures.iter().enumerate() {
        match future.result() {
            Ok(value) => println!("{n}: {value}"),
            Err(TaskError::Panicked(info)) => println!("{n}: panicked: {}", info.message),
            Err(other) => {
                eprintln!("{n}: unexpected outcome: {other}");
                std::process::exit(1);
            }
        }
    }
    let expected = [Some(0), Some(10), None, Some(30), Some(40)];
    let seen: Vec<_> = futures.iter().map(|f| f.result().ok().copied()).collect();
    if seen != expected {
        eprintln!("expected {expected:?}, saw {seen:?}");
        std::process::exit(1);
    }
    Ok(())
}
