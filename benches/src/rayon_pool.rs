//! rayon: two threads in this process. No isolation (a crash kills everything) and nothing is
//! copied, so it shows what scheduling alone costs.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    for key in [
        measure::ARG_BIG,
        measure::RES_BIG,
        measure::ARG_1MIB,
        measure::RES_1MIB,
    ] {
        results.note(key, "threads share memory: nothing is copied");
    }
    for key in [measure::CRASH_NEXT, measure::CRASH_SUBMIT_NEXT] {
        results.note(key, "no isolation: a crash kills the whole process");
    }
    results.note(measure::IDLE_RSS, "threads: no worker process");
    results.note(
        measure::SUBMIT_PARENT_CPU,
        "threads: the tasks run in the parent, so its CPU is not the pool's overhead",
    );
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

    results.note(
        measure::MAP,
        "not measured: an in-process collect of squares times memory bandwidth, not scheduling",
    );
    cpu_tasks(config, &pool, results);

    eprintln!("rayon: round trips");
    let mut meter = Err(std::io::ErrorKind::NotFound.into());
    for _ in 0..config.reps {
        meter = measure::CpuMeter::start(Vec::new());
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
        measure::push_cpu_per_wall(results, &meter);
        measure::push_latency(results, &mut samples);
    }
    measure::note_cpu_per_wall(results, &meter, "the caller and the pool's threads");
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

/// The CPU-task rows: the same work in threads, `spawn` + channel per task, and `par_iter` with
/// the chunk size as `with_min_len` for the `map` row.
fn cpu_tasks(config: &Config, pool: &rayon::ThreadPool, results: &mut Results) {
    for (micros, n, key) in [
        (1_000, config.cpu_1ms, measure::CPU_1MS),
        (100, config.cpu_100us, measure::CPU_100US),
    ] {
        eprintln!("rayon: {n} tasks of {micros} µs CPU, spawn + channel");
        for _ in 0..config.cpu_reps {
            let t = Instant::now();
            let (tx, rx) = mpsc::channel();
            for i in 0..n {
                let tx = tx.clone();
                pool.spawn(move || {
                    let _ = tx.send(measure::burn(micros, i));
                });
            }
            drop(tx);
            let sum: u64 = rx.iter().sum();
            let elapsed = t.elapsed();
            assert_eq!(sum, n * (n - 1) / 2);
            let task = Duration::from_micros(micros);
            results.push(key, measure::efficiency(n, task, 2, elapsed));
        }
    }
    let n = config.cpu_100us;
    eprintln!(
        "rayon: {n} tasks of 100 µs CPU, par_iter with_min_len({})",
        config.cpu_chunk
    );
    for _ in 0..config.cpu_reps {
        let t = Instant::now();
        let sum: u64 = pool.install(|| {
            (0..n as usize)
                .into_par_iter()
                .with_min_len(config.cpu_chunk)
                .map(|i| measure::burn(100, i as u64))
                .sum()
        });
        let elapsed = t.elapsed();
        assert_eq!(sum, n * (n - 1) / 2);
        let task = Duration::from_micros(100);
        results.push(
            measure::CPU_100US_MAP,
            measure::efficiency(n, task, 2, elapsed),
        );
    }
}
