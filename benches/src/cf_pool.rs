//! cf's `ProcessPoolExecutor`: the column under test.

use serde_bytes::ByteBuf;
use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use cf::launch::{Slurm, Tcp};
use cf::{ProcessPoolExecutor, as_completed};

use crate::Config;
use crate::measure::{self, Results};

/// The tiny task.
#[cf::task]
pub(crate) fn square(x: u64) -> u64 {
    x * x
}

/// Takes a big argument, returns its length.
#[cf::task]
fn sink(data: ByteBuf) -> u64 {
    data.len() as u64
}

/// Returns a big result.
#[cf::task]
fn source(n: u64) -> ByteBuf {
    ByteBuf::from(vec![7; n as usize])
}

/// Burns `micros` µs of CPU, returns `x`.
#[cf::task]
fn burn(micros: u64, x: u64) -> u64 {
    measure::burn(micros, x)
}

/// Takes a plain `Vec<u8>`, returns its length.
#[cf::task]
fn sink_vec(data: Vec<u8>) -> u64 {
    data.len() as u64
}

/// Returns a plain `Vec<u8>`.
#[cf::task]
fn source_vec(n: u64) -> Vec<u8> {
    vec![7; n as usize]
}

/// Kills its worker.
#[cf::task]
fn crash() {
    std::process::abort()
}

/// Sleeps a little (so that two calls land on two workers), then names the worker.
#[cf::task]
fn worker_pid(sleep_ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(sleep_ms));
    std::process::id()
}

/// Runs every cf measurement; a failure becomes a note instead of a number.
pub(crate) fn run(config: &Config) -> Results {
    let mut results = Results::default();
    if config.bytes_only {
        if let Err(e) = measure_bytes(config, &mut results) {
            eprintln!("cf: {e}");
            results.skip_all(&format!("failed: {e}"));
        }
        results.skip_all("not run (--bytes)");
        return results;
    }
    if let Err(e) = measure_all(config, &mut results) {
        eprintln!("cf: {e}");
        results.skip_all(&format!("failed: {e}"));
    }
    if let Err(e) = measure_tcp(config, &mut results) {
        eprintln!("cf over TCP: {e}");
        for key in [
            measure::TCP_SUBMIT,
            measure::TCP_RTT_P50,
            measure::TCP_ARG_BIG,
            measure::TCP_RES_BIG,
        ] {
            results.note(key, format!("failed: {e}"));
        }
    }
    if !slurm_reachable() {
        results.note(
            measure::SLURM_READY,
            "not run: no Slurm cluster answers (`sinfo` fails; set SLURM_CONF)",
        );
    } else if let Err(e) = measure_slurm(config, &mut results) {
        eprintln!("cf on Slurm: {e}");
        results.note(measure::SLURM_READY, format!("failed: {e}"));
    }
    results.info.insert(
        "workers".into(),
        "2 (plus cf's default spare worker)".into(),
    );
    eprintln!(
        "cf: allocations counted, {} tiny tasks and {} futures",
        config.count_tiny, config.count_futures
    );
    match crate::count::run(config.count_tiny, config.count_futures) {
        Ok(counts) => results.info.extend(counts.facts()),
        Err(e) => {
            results
                .info
                .insert("allocations".into(), format!("not counted: {e}"));
        }
    }
    results
}

type Error = Box<dyn std::error::Error>;

/// `?` for errors that borrow from their future (`result()` lends).
trait Must<T> {
    fn must(self) -> Result<T, Error>;
}

impl<T, E: std::fmt::Display> Must<T> for Result<T, E> {
    fn must(self) -> Result<T, Error> {
        self.map_err(|e| e.to_string().into())
    }
}

fn new_pool(workers: usize) -> Result<ProcessPoolExecutor, Error> {
    Ok(ProcessPoolExecutor::with_max_workers(workers)?)
}

/// Runs `n` tiny tasks so that workers are up and the pool has seen short tasks.
fn warm(pool: &ProcessPoolExecutor, n: u64) -> Result<(), Error> {
    let futures = (0..n)
        .map(|i| pool.submit(square, i))
        .collect::<Result<Vec<_>, _>>()?;
    for f in &futures {
        f.result().must()?;
    }
    Ok(())
}

fn measure_all(config: &Config, results: &mut Results) -> Result<(), Error> {
    let pool = new_pool(2)?;
    warm(&pool, 2_000)?;

    eprintln!("cf: {} tiny tasks, submit + as_completed", config.tiny);
    submit_rate(
        &pool,
        config,
        results,
        [measure::SUBMIT, measure::SUBMIT_PARENT_CPU],
    )?;
    let n = config.tiny;

    eprintln!("cf: {n} tiny tasks, map chunksize {}", config.chunk);
    for _ in 0..config.reps {
        let t = Instant::now();
        let mut sum = 0;
        for r in pool.map(square, 0..n).chunksize(config.chunk) {
            sum += r?;
        }
        let elapsed = t.elapsed();
        assert_eq!(sum, measure::sum_of_squares(n));
        results.push(measure::MAP, measure::rate(n, elapsed));
    }

    let buffer = 16 * config.chunk;
    eprintln!(
        "cf: {n} tiny tasks, map chunksize {} buffersize {buffer}",
        config.chunk
    );
    for _ in 0..config.reps {
        let t = Instant::now();
        let mut sum = 0;
        for r in pool
            .map(square, 0..n)
            .chunksize(config.chunk)
            .buffersize(buffer)
        {
            sum += r?;
        }
        let elapsed = t.elapsed();
        assert_eq!(sum, measure::sum_of_squares(n));
        results.push(measure::MAP_BUFFERED, measure::rate(n, elapsed));
    }

    cpu_tasks(config, &pool, results)?;
    transfers_1mib(config, &pool, results)?;

    round_trip_rows(&pool, config, results)?;

    eprintln!("cf: {} MiB argument and result", config.big >> 20);
    big_transfers(&pool, config, results, [measure::ARG_BIG, measure::RES_BIG])?;
    drop(pool);

    eprintln!("cf: start-up");
    for _ in 0..config.few_reps {
        let t = Instant::now();
        let pool = new_pool(2)?;
        pool.submit(square, 3)?.result().must()?;
        results.push(measure::STARTUP, measure::ms(t.elapsed()));
        drop(pool);
        let t = Instant::now();
        let pool = ProcessPoolExecutor::builder()
            .max_workers(2)
            .spare_worker(false)
            .build()?;
        pool.submit(square, 3)?.result().must()?;
        results.push(measure::STARTUP_NO_SPARE, measure::ms(t.elapsed()));
    }

    eprintln!("cf: crash, then the next result");
    let pool = new_pool(1)?;
    warm(&pool, 100)?;
    for _ in 0..config.few_reps {
        // Let the replacement of the previous crash come up, as it would between crashes.
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        let crashed = pool.submit(crash, ())?;
        let error = crashed.exception();
        let t1 = Instant::now();
        assert!(error.is_some(), "the crash task must fail");
        let v = *pool.submit(square, 5)?.result().must()?;
        let t2 = Instant::now();
        assert_eq!(v, 25);
        results.push(measure::CRASH_NEXT, measure::ms(t2 - t1));
        results.push(measure::CRASH_SUBMIT_NEXT, measure::ms(t2 - t0));
    }
    results.note(
        measure::CRASH_NEXT,
        "1-worker pool, so the next task needs the replacement (cf's spare)",
    );
    drop(pool);

    eprintln!("cf: idle pool for {:.0} s", config.idle.as_secs_f64());
    let pool = new_pool(2)?;
    warm(&pool, 100)?;
    let pids = worker_pids(&pool)?;
    std::thread::sleep(Duration::from_millis(200));
    match measure::mean_rss_mib(&pids) {
        Some(rss) => results.push(measure::IDLE_RSS, rss),
        None => results.note(measure::IDLE_RSS, "could not read /proc/<pid>/status"),
    }
    measure::push_idle_cpu(results, config.idle);
    Ok(())
}

/// The byte-transfer rows alone (`--bytes`): 1 MiB and `config.big` in and out.
fn measure_bytes(config: &Config, results: &mut Results) -> Result<(), Error> {
    let pool = new_pool(2)?;
    warm(&pool, 2_000)?;
    transfers_1mib(config, &pool, results)?;
    eprintln!("cf: {} MiB argument and result", config.big >> 20);
    big_transfers(&pool, config, results, [measure::ARG_BIG, measure::RES_BIG])
}

/// 1 ms tasks through `submit` + `as_completed`; 100 µs tasks through that and through `map`.
fn cpu_tasks(
    config: &Config,
    pool: &ProcessPoolExecutor,
    results: &mut Results,
) -> Result<(), Error> {
    for (micros, n, key) in [
        (1_000, config.cpu_1ms, measure::CPU_1MS),
        (100, config.cpu_100us, measure::CPU_100US),
    ] {
        eprintln!("cf: {n} tasks of {micros} µs CPU, submit + as_completed");
        for _ in 0..config.cpu_reps {
            let t = Instant::now();
            let futures = (0..n)
                .map(|i| pool.submit(burn, (micros, i)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut sum = 0;
            for f in as_completed(&futures, None) {
                sum += *f.result().must()?;
            }
            let elapsed = t.elapsed();
            assert_eq!(sum, n * (n - 1) / 2);
            let task = Duration::from_micros(micros);
            results.push(key, measure::efficiency(n, task, 2, elapsed));
        }
    }
    let n = config.cpu_100us;
    eprintln!(
        "cf: {n} tasks of 100 µs CPU, map chunksize {}",
        config.cpu_chunk
    );
    for _ in 0..config.cpu_reps {
        let t = Instant::now();
        let mut sum = 0;
        for r in pool
            .map(burn, (0..n).map(|i| (100, i)))
            .chunksize(config.cpu_chunk)
        {
            sum += r?;
        }
        let elapsed = t.elapsed();
        assert_eq!(sum, n * (n - 1) / 2);
        let task = Duration::from_micros(100);
        results.push(
            measure::CPU_100US_MAP,
            measure::efficiency(n, task, 2, elapsed),
        );
    }
    Ok(())
}

/// 1 MiB in and out, one task at a time, as a plain `Vec<u8>` and as `serde_bytes::ByteBuf`.
fn transfers_1mib(
    config: &Config,
    pool: &ProcessPoolExecutor,
    results: &mut Results,
) -> Result<(), Error> {
    const MIB: usize = 1 << 20;
    let m = config.transfers_1mib;
    eprintln!("cf: 1 MiB argument and result, {m} per repetition");
    for _ in 0..config.reps {
        let args: Vec<Vec<u8>> = (0..m).map(|_| vec![7u8; MIB]).collect();
        let t = Instant::now();
        for arg in args {
            assert_eq!(*pool.submit(sink_vec, arg)?.result().must()?, MIB as u64);
        }
        results.push(measure::ARG_1MIB, measure::mib_per_s(m * MIB, t.elapsed()));

        let args: Vec<ByteBuf> = (0..m).map(|_| ByteBuf::from(vec![7u8; MIB])).collect();
        let t = Instant::now();
        for arg in args {
            assert_eq!(*pool.submit(sink, arg)?.result().must()?, MIB as u64);
        }
        let elapsed = t.elapsed();
        results.push(
            measure::ARG_1MIB_BYTEBUF,
            measure::mib_per_s(m * MIB, elapsed),
        );

        let t = Instant::now();
        for _ in 0..m {
            let f = pool.submit(source_vec, MIB as u64)?;
            assert_eq!(f.result().must()?.len(), MIB);
        }
        results.push(measure::RES_1MIB, measure::mib_per_s(m * MIB, t.elapsed()));

        let t = Instant::now();
        for _ in 0..m {
            let f = pool.submit(source, MIB as u64)?;
            assert_eq!(f.result().must()?.len(), MIB);
        }
        let elapsed = t.elapsed();
        results.push(
            measure::RES_1MIB_BYTEBUF,
            measure::mib_per_s(m * MIB, elapsed),
        );
    }
    Ok(())
}

/// `config.tiny` tiny tasks through `submit` + `as_completed`, `config.reps` times, as `key`,
/// and this process's CPU time per task as `cpu_key` (unless it is empty).
fn submit_rate(
    pool: &ProcessPoolExecutor,
    config: &Config,
    results: &mut Results,
    [key, cpu_key]: [&str; 2],
) -> Result<(), Error> {
    let n = config.tiny;
    for _ in 0..config.reps {
        let cpu = measure::cpu_time();
        let t = Instant::now();
        let futures = (0..n)
            .map(|i| pool.submit(square, i))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sum = 0;
        for f in as_completed(&futures, None) {
            sum += *f.result().must()?;
        }
        let elapsed = t.elapsed();
        let cpu = measure::cpu_time().saturating_sub(cpu);
        assert_eq!(sum, measure::sum_of_squares(n));
        results.push(key, measure::rate(n, elapsed));
        if !cpu_key.is_empty() {
            results.push(cpu_key, cpu.as_secs_f64() * 1e6 / n as f64);
        }
    }
    Ok(())
}

/// Round trips one at a time: p50 and p99, and CPU / wall over each repetition's loop.
fn round_trip_rows(
    pool: &ProcessPoolExecutor,
    config: &Config,
    results: &mut Results,
) -> Result<(), Error> {
    eprintln!("cf: round trips, {} per repetition", config.latency_samples);
    for i in 0..200 {
        pool.submit(square, i)?.result().must()?;
    }
    // This pool's processes (2 workers and the spare) are this process's only children by now.
    let workers = measure::child_pids();
    let mut meter = Err(std::io::ErrorKind::NotFound.into());
    for _ in 0..config.reps {
        meter = match &workers {
            Ok(pids) => measure::CpuMeter::start(pids.clone()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        };
        let mut samples = round_trips(pool, config)?;
        measure::push_cpu_per_wall(results, &meter);
        measure::push_latency(results, &mut samples);
    }
    measure::note_cpu_per_wall(
        results,
        &meter,
        "2 workers and the spare: every child at that point",
    );
    Ok(())
}

/// One repetition of round trips: `config.latency_samples` tasks, one at a time.
fn round_trips(pool: &ProcessPoolExecutor, config: &Config) -> Result<Vec<Duration>, Error> {
    let mut samples = Vec::with_capacity(config.latency_samples);
    for i in 0..config.latency_samples as u64 {
        let t = Instant::now();
        let f = pool.submit(square, i)?;
        let v = *f.result().must()?;
        samples.push(t.elapsed());
        black_box(v);
    }
    Ok(samples)
}

/// A `config.big` argument in and a `config.big` result out, `config.few_reps` times each, as
/// the keys `[argument, result]`.
fn big_transfers(
    pool: &ProcessPoolExecutor,
    config: &Config,
    results: &mut Results,
    [arg_key, res_key]: [&str; 2],
) -> Result<(), Error> {
    let data = vec![7u8; config.big];
    for _ in 0..config.few_reps {
        let arg = ByteBuf::from(data.clone());
        let t = Instant::now();
        let len = *pool.submit(sink, arg)?.result().must()?;
        let elapsed = t.elapsed();
        assert_eq!(len, config.big as u64);
        results.push(arg_key, measure::mib_per_s(config.big, elapsed));
    }
    drop(data);
    for _ in 0..config.few_reps {
        let t = Instant::now();
        let f = pool.submit(source, config.big as u64)?;
        let len = f.result().must()?.len();
        let elapsed = t.elapsed();
        drop(f);
        assert_eq!(len, config.big);
        results.push(res_key, measure::mib_per_s(config.big, elapsed));
    }
    Ok(())
}

/// The same workloads with the workers under 2 local agents over TCP (`launch::Tcp`), in the
/// same run as the pipes: the cost of the remote launcher's sockets and agents.
fn measure_tcp(config: &Config, results: &mut Results) -> Result<(), Error> {
    let pool = ProcessPoolExecutor::builder()
        .launcher(Tcp::local(2))
        .max_workers(2)
        .build()?;
    warm(&pool, 2_000)?;
    eprintln!(
        "cf over TCP: {} tiny tasks, submit + as_completed",
        config.tiny
    );
    submit_rate(&pool, config, results, [measure::TCP_SUBMIT, ""])?;
    eprintln!("cf over TCP: round trips");
    for i in 0..200 {
        pool.submit(square, i)?.result().must()?;
    }
    for _ in 0..config.reps {
        let mut samples = round_trips(&pool, config)?;
        let p50 = measure::percentile(&mut samples, 0.50);
        results.push(measure::TCP_RTT_P50, p50.as_secs_f64() * 1e6);
    }
    eprintln!("cf over TCP: {} MiB argument and result", config.big >> 20);
    big_transfers(
        &pool,
        config,
        results,
        [measure::TCP_ARG_BIG, measure::TCP_RES_BIG],
    )
}

/// Whether a Slurm cluster answers (`sinfo`, which reads `SLURM_CONF` when it is set).
fn slurm_reachable() -> bool {
    std::process::Command::new("sinfo")
        .arg("-h")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// From `build()` to 4 workers ready under the Slurm launcher (one `srun` step of 4 agents).
fn measure_slurm(config: &Config, results: &mut Results) -> Result<(), Error> {
    eprintln!("cf on Slurm: build() to 4 workers ready");
    for _ in 0..config.few_reps {
        let t = Instant::now();
        let pool = ProcessPoolExecutor::builder()
            .launcher(Slurm::new().ntasks(4).overcommit(true))
            .max_workers(4)
            .spare_worker(false)
            .build()?;
        if !pool.wait_ready(Duration::from_secs(120))? {
            return Err("4 Slurm workers not ready within 120 s".into());
        }
        results.push(measure::SLURM_READY, measure::ms(t.elapsed()));
        drop(pool);
    }
    Ok(())
}

/// The pids of both workers, from a task that reports `std::process::id()`.
fn worker_pids(pool: &ProcessPoolExecutor) -> Result<Vec<u32>, Error> {
    let mut pids = BTreeSet::new();
    for _ in 0..10 {
        let futures = [pool.submit(worker_pid, 50)?, pool.submit(worker_pid, 50)?];
        for f in &futures {
            pids.insert(*f.result().must()?);
        }
        if pids.len() >= 2 {
            break;
        }
    }
    Ok(pids.into_iter().collect())
}
