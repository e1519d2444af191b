//! rayon: two threads in this process. No isolation (a crash kills everything) and nothing is
//! copied, so it shows what scheduling alone costs.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::Instant;

use rayon::prelude::*;

use crate::Config;
use crate::measure::{self, Results};

fn pool() -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new().num_threads(2).build()
}

/// Runs every rayon measurement that applies to threads.
pub(crate) fn run(config: &Config) -> Results {
    let mut results = Results::default();
    if let Err(e) = measure_all(config, &mut results) {
        eprintln!("rayon: {e}");
        results.skip_all(&format!("failed: {e}"));
    }
    for key in [measure::ARG_BIG, measure::RES_BIG] {
        results.note(key, "threads share memory: nothing is copied");
    }
    for key in [measure::CRASH_NEXT, measure::CRASH_SUBMIT_NEXT] {
        results.note(key, "no isolation: a crash kills the whole process");
    }
    results.note(measure::IDLE_RSS, "threads: no worker process");
    results.info.insert("threads".into(), "2".into());
    results
}

fn measure_all(config: &Config, results: &mut Results) -> Result<(), rayon::ThreadPoolBuildError> {
    let pool = pool()?;
    let n = config.tiny;

    eprintln!("rayon: {n} tiny tasks, spawn + channel");
    for _ in 0..config.reps {
        let t = Instant::now();
        let (tx, rx) = mpsc::channel();
        for i in 0..n {
            let tx = tx.clone();
            pool.spawn(move || {
                let _ = tx.send(i * i);
            });
        }
        drop(tx);
        let sum: u64 = rx.iter().sum();
        let elapsed = t.elapsed();
        assert_eq!(sum, measure::sum_of_squares(n));
        results.push(measure::SUBMIT, measure::rate(n, elapsed));
    }
    results.note(
        measure::SUBMIT,
        "ThreadPool::spawn per task, results in completion order from an mpsc channel",
    );

    eprintln!(
        "rayon: {n} tiny tasks, par_iter with_min_len({})",
        config.chunk
    );
    for _ in 0..config.reps {
        let t = Instant::now();
        let squares: Vec<u64> = pool.install(|| {
            (0..n as usize)
                .into_par_iter()
                .with_min_len(config.chunk)
                .map(|x| x as u64 * x as u64)
                .collect()
        });
        let sum: u64 = squares.iter().sum();
        let elapsed = t.elapsed();
        assert_eq!(sum, measure::sum_of_squares(n));
        results.push(measure::MAP, measure::rate(n, elapsed));
    }

    eprintln!("rayon: round trips");
    for _ in 0..config.reps {
        let mut samples = Vec::with_capacity(config.latency_samples);
        let (tx, rx) = mpsc::channel();
        for i in 0..config.latency_samples as u64 {
            let t = Instant::now();
            let tx = tx.clone();
            pool.spawn(move || {
                let _ = tx.send(i * i);
            });
            let v = rx.recv().expect("the task sends");
            samples.push(t.elapsed());
            black_box(v);
        }
        measure::push_latency(results, &mut samples);
    }
    drop(pool);

    eprintln!("rayon: start-up");
    for _ in 0..config.few_reps {
        let t = Instant::now();
        let pool = self::pool()?;
        let (tx, rx) = mpsc::channel();
        pool.spawn(move || {
            let _ = tx.send(3u64 * 3);
        });
        let v = rx.recv().expect("the task sends");
        results.push(measure::STARTUP, measure::ms(t.elapsed()));
        black_box(v);
    }

    eprintln!("rayon: idle pool for {:.0} s", config.idle.as_secs_f64());
    let pool = self::pool()?;
    pool.install(|| (0..1000u64).into_par_iter().map(|x| x * x).sum::<u64>());
    measure::push_idle_cpu(results, config.idle);
    drop(pool);
    Ok(())
}
