//! What every column shares: the metric keys, per-repetition samples, medians, percentiles, and
//! reading RSS and CPU time from the kernel.

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;
use nix::time::{ClockId, clock_getcpuclockid, clock_gettime};
use nix::unistd::Pid;
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
/// Raw ping-pong p50 with the parent's thread and the child pinned to one CPU, µs.
pub(crate) const RTT_P50_ONE_CPU: &str = "rtt_p50_one_cpu";
/// Raw ping-pong p50 with the parent's thread and the child pinned to two different CPUs, µs.
pub(crate) const RTT_P50_TWO_CPUS: &str = "rtt_p50_two_cpus";
/// During the round trips: CPU time of this process and of every child process (the workers),
/// divided by the wall time of the loop.
pub(crate) const RTT_CPU: &str = "rtt_cpu_per_wall";
/// Tiny tasks through `submit` + `as_completed`: this process's CPU time per task, µs.
pub(crate) const SUBMIT_PARENT_CPU: &str = "submit_parent_cpu";
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
pub(crate) const ALL: [&str; 29] = [
    SUBMIT,
    TCP_SUBMIT,
    SUBMIT_PARENT_CPU,
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
    RTT_P50_ONE_CPU,
    RTT_P50_TWO_CPUS,
    RTT_P99,
    RTT_CPU,
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
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage(RUSAGE_SELF) cannot fail");
    let tv = |t: TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

/// The CPU time of another process (every thread, live and exited), from its CPU-time clock
/// (`clock_getcpuclockid` + `clock_gettime`): nanoseconds, unlike `/proc/<pid>/stat`'s ticks.
pub(crate) fn process_cpu_time(pid: u32) -> io::Result<Duration> {
    let pid = Pid::from_raw(pid as i32);
    let clock = clock_getcpuclockid(pid).map_err(io::Error::from)?;
    let t = clock_gettime(clock).map_err(io::Error::from)?;
    Ok(Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
}

/// The pids of this process's live children, from the parent field of `/proc/<pid>/stat`.
pub(crate) fn child_pids() -> io::Result<Vec<u32>> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may end between the listing and the read: it is no child of ours then.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so split after the
        // last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// CPU time of this process and of its children, against the wall clock: start it before a
/// loop, [`CpuMeter::per_wall`] after.
pub(crate) struct CpuMeter {
    children: Vec<u32>,
    /// This process's CPU time and the children's, at the start.
    start: [Duration; 2],
    wall: Instant,
}

impl CpuMeter {
    /// Reads this process's CPU time and that of each of `children`.
    pub(crate) fn start(children: Vec<u32>) -> io::Result<CpuMeter> {
        let start = Self::read(&children)?;
        Ok(CpuMeter {
            children,
            start,
            wall: Instant::now(),
        })
    }

    fn read(children: &[u32]) -> io::Result<[Duration; 2]> {
        let mut sum = Duration::ZERO;
        for &pid in children {
            sum += process_cpu_time(pid)?;
        }
        Ok([cpu_time(), sum])
    }

    /// The CPU time used since [`CpuMeter::start`] by this process and by the children, each
    /// divided by the wall time (an error if a child is gone).
    pub(crate) fn per_wall(&self) -> io::Result<[f64; 2]> {
        let wall = self.wall.elapsed().as_secs_f64();
        let [own, children] = Self::read(&self.children)?;
        Ok([
            own.saturating_sub(self.start[0]).as_secs_f64() / wall,
            children.saturating_sub(self.start[1]).as_secs_f64() / wall,
        ])
    }
}

/// The samples key of this process's share of [`RTT_CPU`] (not a row: it goes in the note).
const RTT_CPU_OWN: &str = "rtt_cpu_per_wall_parent";

/// Records one repetition's CPU / wall from a meter started before the loop, or a note on why
/// it could not be read.
pub(crate) fn push_cpu_per_wall(results: &mut Results, meter: &io::Result<CpuMeter>) {
    let ratios = match meter {
        Ok(m) => m.per_wall(),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    };
    match ratios {
        Ok([own, children]) => {
            results.push(RTT_CPU, own + children);
            results.push(RTT_CPU_OWN, own);
        }
        Err(e) => results.note(RTT_CPU, format!("not measured: {e}")),
    }
}

/// The note of [`RTT_CPU`]: what was counted (`whom`: who the `meter`'s children are) and this
/// process's share (median).
pub(crate) fn note_cpu_per_wall(results: &mut Results, meter: &io::Result<CpuMeter>, whom: &str) {
    let (Ok(m), Some(own)) = (meter, results.value(RTT_CPU_OWN)) else {
        return;
    };
    let counted = match m.children.len() {
        0 => format!("this process (every thread: {whom})"),
        1 => format!("this process (every thread) and its child ({whom})"),
        n => format!("this process (every thread) and its {n} child processes ({whom})"),
    };
    results.note(
        RTT_CPU,
        format!(
            "{counted}, CPU-time clocks read before and after each repetition's loop; this \
             process alone: {own:.2}"
        ),
    );
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
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("clock_gettime(CLOCK_THREAD_CPUTIME_ID) cannot fail");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
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
