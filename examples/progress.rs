//! 10,000 tasks with a progress bar driven by `as_completed`, showing the rate and the failures
//! as they come. One input in a thousand panics: the bar counts it and goes on.
//!
//! Run with `cargo run --release --example progress`.

use std::time::Duration;

use cf::{ProcessPoolExecutor, as_completed, task};
use indicatif::{ProgressBar, ProgressStyle};

/// Checks a number the slow way; some inputs are "corrupt" and panic.
#[task]
fn check(n: u64) -> u64 {
    assert!(n % 1000 != 999, "input {n} is corrupt");
    (1..=200).fold(n, |acc, i| {
        acc.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i)
    })
}

fn main() -> Result<(), cf::Error> {
    let pool = ProcessPoolExecutor::new()?;
    let futures = (0..10_000)
        .map(|n| pool.submit(check, n))
        .collect::<Result<Vec<_>, _>>()?;

    let bar = ProgressBar::new(futures.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} tasks, {per_sec}, {elapsed} elapsed, {msg}",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let mut failures = 0;
    for future in as_completed(&futures, None) {
        if future.result().is_err() {
            failures += 1;
            bar.set_message(format!("{failures} failed"));
        }
        bar.inc(1);
    }
    bar.finish();
    let stats = pool.stats();
    println!(
        "{} tasks: {} completed, {} failed (panics, each caught in its worker); {} workers replaced",
        stats.submitted, stats.completed, stats.failed, stats.respawns
    );
    assert_eq!(failures, 10);
    Ok(())
}
