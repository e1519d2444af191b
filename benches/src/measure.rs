//! What every column shares: the metric keys, per-repetition samples, medians, percentiles, and
//! reading RSS and CPU time from the kernel.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Tiny tasks through `submit` + `as_completed`, tasks/s.
pub(crate) const SUBMIT: &str = "submit_rate";
/// Tiny tasks through `map` with a chunk size, tasks/s.
pub(crate) const MAP: &str = "map_rate";
/// As [`MAP`], with cf's `buffersize` raised so that many chunks are in flight, tasks/s.
pub(crate) const MAP_BUFFERED: &str = "map_buffered_rate";
/// Round trip of one task on a warm pool, median of the samples, µs.
pub(crate) const RTT_P50: &str = "rtt_p50";
/// Round trip of one task on a warm pool, 99th percentile, µs.
pub(crate) const RTT_P99: &str = "rtt_p99";
/// Pool creation to first result, 2 workers, ms.
pub(crate) const STARTUP: &str = "startup";
/// As [`STARTUP`], without cf's spare worker, ms.
pub(crate) const STARTUP_NO_SPARE: &str = "startup_no_spare";
/// A 64 MiB argument in, its length out, MiB/s.
pub(crate) const ARG_BIG: &str = "arg_big";
/// A small argument in, a 64 MiB result out, MiB/s.
pub(crate) const RES_BIG: &str = "res_big";
/// The crash task's future done -> the next task's result, ms.
pub(crate) const CRASH_NEXT: &str = "crash_next";
/// Submit of the crash task -> the next task's result, ms.
pub(crate) const CRASH_SUBMIT_NEXT: &str = "crash_submit_next";
/// Idle worker RSS, MiB.
pub(crate) const IDLE_RSS: &str = "idle_rss";
/// The parent's CPU time while its pool idles for `Config::idle`, ms.
pub(crate) const IDLE_CPU: &str = "idle_cpu";

/// 1 ms CPU tasks through `submit` + `as_completed`: ideal time / measured, %.
pub(crate) const CPU_1MS: &str = "cpu_1ms_eff";
/// 100 µs CPU tasks through `submit` + `as_completed`: ideal time / measured, %.
pub(crate) const CPU_100US: &str = "cpu_100us_eff";
/// 100 µs CPU tasks through `map` with a chunk size: ideal time / measured, %.
pub(crate) const CPU_100US_MAP: &str = "cpu_100us_map_eff";
/// A 1 MiB `Vec<u8>` argument in, its length out, one task at a time, MiB/s.
pub(crate) const ARG_1MIB: &str = "arg_1mib";
/// A 1 MiB `Vec<u8>` result out, one task at a time, MiB/s.
pub(crate) const RES_1MIB: &str = "res_1mib";
/// As [`ARG_1MIB`], cf with `serde_bytes::ByteBuf` instead of `Vec<u8>`, MiB/s.
pub(crate) const ARG_1MIB_BYTEBUF: &str = "arg_1mib_bytebuf";
/// As [`RES_1MIB`], cf with `serde_bytes::ByteBuf` instead of `Vec<u8>`, MiB/s.
pub(crate) const RES_1MIB_BYTEBUF: &str = "res_1mib_bytebuf";

/// As [`SUBMIT`], cf's workers under 2 local agents over TCP (`launch::Tcp`), tasks/s.
pub(crate) const TCP_SUBMIT: &str = "tcp_submit_rate";
/// As [`RTT_P50`], over TCP, µs.
pub(crate) const TCP_RTT_P50: &str = "tcp_rtt_p50";
/// As [`ARG_BIG`], over TCP, MiB/s.
pub(crate) const TCP_ARG_BIG: &str = "tcp_arg_big";
/// As [`RES_BIG`], over TCP, MiB/s.
pub(crate) const TCP_RES_BIG: &str = "tcp_res_big";
/// `build()` to 4 workers ready under the Slurm launcher, ms.
pub(crate) const SLURM_READY: &str = "slurm_ready";

/// Every metric key, in table order.
pub(crate) const ALL: [&str; 25] = [
    SUBMIT,
    TCP_SUBMIT,
    MAP,
    MAP_BUFFERED,
    CPU_1MS,
    CPU_100US,
    CPU_100US_MAP,
    ARG_1MIB,
    ARG_1MIB_BYTEBUF,
    RES_1MIB,
    RES_1MIB_BYTEBUF,
    RTT_P50,
    TCP_RTT_P50,
    RTT_P99,
    STARTUP,
    STARTUP_NO_SPARE,
    SLURM_READY,
    ARG_BIG,
    TCP_ARG_BIG,
    RES_BIG,
    TCP_RES_BIG,
    CRASH_NEXT,
    CRASH_SUBMIT_NEXT,
    IDLE_RSS,
    IDLE_CPU,
];

/// One column of the table: per metric, the value of each repetition, and notes (why a metric
/// is missing, or how it was measured differently). Python's script prints this as JSON.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Results {
    #[serde(default)]
    pub(crate) samples: BTreeMap<String, Vec<f64>>,
    #[serde(default)]
    pub(crate) notes: BTreeMap<String, String>,
    /// Free-form facts about the peer (version, start method), printed under the table.
    #[serde(default)]
    pub(crate) info: BTreeMap<String, String>,
}

impl Results {
    /// Records one repetition's value.
    pub(crate) fn push(&mut self, key: &str, value: f64) {
        self.samples.entry(key.to_owned()).or_default().push(value);
    }

    /// Attaches a note to a metric (shown under the table).
    pub(crate) fn note(&mut self, key: &str, text: impl Into<String>) {
        self.notes.insert(key.to_owned(), text.into());
    }

    /// Marks every metric without a value as not measured, with `why`.
    pub(crate) fn skip_all(&mut self, why: &str) {
        for key in ALL {
            if !self.samples.contains_key(key) && !self.notes.contains_key(key) {
                self.note(key, why);
            }
        }
    }

    /// The median over repetitions.
    pub(crate) fn value(&self, key: &str) -> Option<f64> {
        self.samples
            .get(key)
            .filter(|v| !v.is_empty())
            .map(|v| median(v))
    }

    /// How many repetitions a metric has.
    pub(crate) fn reps(&self, key: &str) -> usize {
        self.samples.get(key).map_or(0, Vec::len)
    }
}

/// The median (the mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile `q` (0..=1) of `samples`.
pub(crate) fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    let n = samples.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    samples[rank - 1]
}

/// Records p50 and p99 of one repetition of round trips, in µs.
pub(crate) fn push_latency(results: &mut Results, samples: &mut [Duration]) {
    let p50 = percentile(samples, 0.50);
    let p99 = percentile(samples, 0.99);
    results.push(RTT_P50, p50.as_secs_f64() * 1e6);
    results.push(RTT_P99, p99.as_secs_f64() * 1e6);
}

/// `VmRSS` of a process, in MiB, from `/proc/<pid>/status`.
pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The mean RSS of `pids`, in MiB.
pub(crate) fn mean_rss_mib(pids: &[u32]) -> Option<f64> {
    let values: Vec<f64> = pids.iter().filter_map(|&p| rss_mib(p)).collect();
    (!values.is_empty() && values.len() == pids.len())
        .then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// User + system CPU time of this whole process (every thread), from `getrusage(RUSAGE_SELF)`.
pub(crate) fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` points to writable memory the size of a `rusage`, which getrusage fills.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_SELF) cannot fail");
    // SAFETY: getrusage returned 0, so it wrote the whole struct (which was zeroed anyway).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Lets the pool settle, then records the parent's CPU time over `idle` of doing nothing.
pub(crate) fn push_idle_cpu(results: &mut Results, idle: Duration) {
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_time();
    std::thread::sleep(idle);
    let used = cpu_time().saturating_sub(before);
    results.push(IDLE_CPU, used.as_secs_f64() * 1e3);
}

/// Sum of `i * i` for `i` in `0..n`, to check that every result came back.
pub(crate) fn sum_of_squares(n: u64) -> u64 {
    (0..n).map(|i| i * i).sum()
}

/// Tasks per second for `n` tasks in `elapsed`.
pub(crate) fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// MiB per second for `bytes` in `elapsed`.
pub(crate) fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

/// Parallel efficiency in %: the ideal time of `n` tasks of `task` CPU each on `workers`
/// (`n * task / workers`) divided by the measured time.
pub(crate) fn efficiency(n: u64, task: Duration, workers: u32, elapsed: Duration) -> f64 {
    let ideal = task.as_secs_f64() * n as f64 / f64::from(workers);
    100.0 * ideal / elapsed.as_secs_f64()
}

/// The CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) cannot fail");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Burns `micros` µs of this thread's CPU time (not wall time: a preempted task still needs its
/// full share of CPU), and returns `x` so that the work has a checkable result. Python's script
/// does the same with `time.thread_time_ns()`.
pub(crate) fn burn(micros: u64, x: u64) -> u64 {
    let until = thread_cpu_time() + Duration::from_micros(micros);
    while thread_cpu_time() < until {
        std::hint::spin_loop();
    }
    x
}

/// The 1-minute load average, from `/proc/loadavg`.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Milliseconds.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
