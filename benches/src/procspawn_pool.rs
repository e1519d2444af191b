//! procspawn's process pool (`procspawn::Pool`): workers are this binary re-executed, calls and
//! values travel over `ipc-channel`.

use serde_bytes::ByteBuf;
use std::collections::{BTreeSet, VecDeque};
use std::hint::black_box;
use std::time::{Duration, Instant};

use procspawn::{JoinHandle, Pool};

use crate::Config;
use crate::measure::{self, Results};

/// Each `spawn` opens two IPC channels (file descriptors) until it is joined: keep at most this
/// many calls in flight so that a long run does not exhaust the fd limit.
const WINDOW: usize = 512;

fn square(x: u64) -> u64 {
    x * x
}

fn square_chunk(xs: Vec<u64>) -> Vec<u64> {
    xs.into_iter().map(|x| x * x).collect()
}

fn sink(data: ByteBuf) -> u64 {
    data.len() as u64
}

fn source(n: u64) -> ByteBuf {
    ByteBuf::from(vec![7; n as usize])
}

fn crash(_: ()) {
    std::process::abort()
}

fn worker_pid(sleep_ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(sleep_ms));
    std::process::id()
}

type Error = Box<dyn std::error::Error>;

/// Runs every procspawn measurement; a failure becomes a note instead of a number.
pub(crate) fn run(config: &Config) -> Results {
    let mut results = Results::default();
    if let Err(e) = measure_all(config, &mut results) {
        eprintln!("procspawn: {e}");
        results.skip_all(&format!("failed: {e}"));
    }
    for key in [
        measure::CPU_1MS,
        measure::CPU_100US,
        measure::CPU_100US_MAP,
        measure::ARG_1MIB,
        measure::RES_1MIB,
        measure::SUBMIT_PARENT_CPU,
        measure::RTT_CPU,
    ] {
        results.note(key, "not measured");
    }
    results.info.insert("workers".into(), "2".into());
    results
}

/// Spawns `inputs` through the pool with at most [`WINDOW`] in flight, joining in order.
fn run_windowed<A, R>(
    pool: &Pool,
    inputs: impl Iterator<Item = A>,
    f: fn(A) -> R,
    mut each: impl FnMut(R),
) -> Result<(), Error>
where
    A: serde::Serialize + serde::de::DeserializeOwned,
    R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut in_flight: VecDeque<JoinHandle<R>> = VecDeque::with_capacity(WINDOW);
    for input in inputs {
        if in_flight.len() == WINDOW {
            let handle = in_flight.pop_front().expect("the window is full");
            each(handle.join()?);
        }
        in_flight.push_back(pool.spawn(input, f));
    }
    for handle in in_flight {
        each(handle.join()?);
    }
    Ok(())
}

fn measure_all(config: &Config, results: &mut Results) -> Result<(), Error> {
    let pool = Pool::new(2)?;
    run_windowed(&pool, 0..1_000u64, square, |v| {
        black_box(v);
    })?;

    let n = config.tiny_procspawn;
    eprintln!("procspawn: {n} tiny tasks, spawn + join ({WINDOW} in flight)");
    for _ in 0..config.reps {
        let t = Instant::now();
        let mut sum = 0;
        run_windowed(&pool, 0..n, square, |v| sum += v)?;
        let elapsed = t.elapsed();
        assert_eq!(sum, measure::sum_of_squares(n));
        results.push(measure::SUBMIT, measure::rate(n, elapsed));
    }
    results.note(
        measure::SUBMIT,
        format!(
            "{n} tasks per repetition, spawn + join in order with {WINDOW} in flight \
             (no as_completed; each spawn holds fds until joined)"
        ),
    );

    let n = config.tiny;
    let chunk = config.chunk as u64;
    eprintln!("procspawn: {n} tiny tasks in chunks of {chunk}");
    for _ in 0..config.reps {
        let t = Instant::now();
        let mut sum = 0;
        let chunks = (0..n)
            .step_by(chunk as usize)
            .map(|s| (s..n.min(s + chunk)).collect());
        run_windowed(&pool, chunks, square_chunk, |v| {
            sum += v.iter().sum::<u64>();
        })?;
        let elapsed = t.elapsed();
        assert_eq!(sum, measure::sum_of_squares(n));
        results.push(measure::MAP, measure::rate(n, elapsed));
    }
    results.note(
        measure::MAP,
        format!("no map: one spawn per chunk of {chunk} inputs (a Vec in, a Vec out)"),
    );

    eprintln!(
        "procspawn: round trips, {} per repetition",
        config.latency_samples
    );
    for i in 0..200 {
        pool.spawn(i, square).join()?;
    }
    for _ in 0..config.reps {
        let mut samples = Vec::with_capacity(config.latency_samples);
        for i in 0..config.latency_samples as u64 {
            let t = Instant::now();
            let v = pool.spawn(i, square).join()?;
            samples.push(t.elapsed());
            black_box(v);
        }
        measure::push_latency(results, &mut samples);
    }

    eprintln!("procspawn: {} MiB argument and result", config.big >> 20);
    let data = vec![7u8; config.big];
    for _ in 0..config.few_reps {
        let arg = ByteBuf::from(data.clone());
        let t = Instant::now();
        let len = pool.spawn(arg, sink).join()?;
        let elapsed = t.elapsed();
        assert_eq!(len, config.big as u64);
        results.push(measure::ARG_BIG, measure::mib_per_s(config.big, elapsed));
    }
    drop(data);
    for _ in 0..config.few_reps {
        let t = Instant::now();
        let v = pool.spawn(config.big as u64, source).join()?;
        let elapsed = t.elapsed();
        assert_eq!(v.len(), config.big);
        drop(v);
        results.push(measure::RES_BIG, measure::mib_per_s(config.big, elapsed));
    }
    drop(pool);

    eprintln!("procspawn: start-up");
    for _ in 0..config.few_reps {
        let t = Instant::now();
        let pool = Pool::new(2)?;
        pool.spawn(3, square).join()?;
        results.push(measure::STARTUP, measure::ms(t.elapsed()));
        pool.kill();
    }

    eprintln!("procspawn: crash, then the next result");
    let pool = Pool::new(1)?;
    pool.spawn(1, square).join()?;
    for _ in 0..config.few_reps {
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        let crashed = pool.spawn((), crash).join();
        let t1 = Instant::now();
        if crashed.is_ok() {
            return Err("the crash task returned".into());
        }
        let v = pool.spawn(5, square).join()?;
        let t2 = Instant::now();
        assert_eq!(v, 25);
        results.push(measure::CRASH_NEXT, measure::ms(t2 - t1));
        results.push(measure::CRASH_SUBMIT_NEXT, measure::ms(t2 - t0));
    }
    results.note(
        measure::CRASH_NEXT,
        "1-worker pool; procspawn respawns the dead worker (its monitor thread) right after reporting the error",
    );
    pool.kill();
    drop(pool);

    eprintln!(
        "procspawn: idle pool for {:.0} s",
        config.idle.as_secs_f64()
    );
    let pool = Pool::new(2)?;
    run_windowed(&pool, 0..100u64, square, |v| {
        black_box(v);
    })?;
    let mut pids = BTreeSet::new();
    for _ in 0..10 {
        let a = pool.spawn(50, worker_pid);
        let b = pool.spawn(50, worker_pid);
        pids.insert(a.join()?);
        pids.insert(b.join()?);
        if pids.len() >= 2 {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let pids: Vec<u32> = pids.into_iter().collect();
    match measure::mean_rss_mib(&pids) {
        Some(rss) => results.push(measure::IDLE_RSS, rss),
        None => results.note(measure::IDLE_RSS, "could not read /proc/<pid>/status"),
    }
    measure::push_idle_cpu(results, config.idle);
    pool.kill();
    Ok(())
}
