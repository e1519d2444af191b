//! What cf's parent process allocates per task, counted rather than timed, so that the numbers
//! do not depend on the machine's load (`cf-bench --count`, and facts under the cf column).
//!
//! A counting global allocator wraps the system's; it counts only while a measurement runs. Two
//! measurements, each on a warm 2-worker pool:
//!
//! 1. **Per tiny task**: `n` × `pool.submit(square, i)` into a `Vec`, then `as_completed` over
//!    them, summing the results. Allocations, reallocations and bytes allocated in the parent,
//!    divided by `n`: by the calling thread during `submit`, by it during `as_completed`, and by
//!    the pool's own threads (I/O, completion) over the whole run.
//! 2. **Per future at peak**: the same with 1M tasks (200k with `--quick`); the most bytes live
//!    on the parent's heap at once, above what was live before the first submit, divided by the
//!    number of futures; and the rise of the parent's peak RSS (`VmHWM`, reset through
//!    `/proc/self/clear_refs`) over the same run, per future. The futures' `Vec` is part of it
//!    (16 bytes each), as a caller needs one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use cf::{ProcessPoolExecutor, as_completed};

use crate::cf_pool::square;

/// Counters of one group of threads.
struct Count {
    allocs: AtomicU64,
    reallocs: AtomicU64,
    bytes: AtomicU64,
}

impl Count {
    const fn new() -> Self {
        Count {
            allocs: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    fn read(&self) -> [u64; 3] {
        [
            self.allocs.load(Relaxed),
            self.reallocs.load(Relaxed),
            self.bytes.load(Relaxed),
        ]
    }
}

/// Whether a measurement is running: the allocator counts only then.
static COUNTING: AtomicBool = AtomicBool::new(false);

/// The calling thread (`main`), and every other thread of the process.
static CALLER: Count = Count::new();
static OTHERS: Count = Count::new();
/// Bytes live on the heap now, and the most since the last reset.
static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

thread_local! {
    static IS_CALLER: Cell<bool> = const { Cell::new(false) };
}

/// The global allocator of `cf-bench`: the system's, counting while a measurement runs.
pub(crate) struct Counting;

impl Counting {
    fn count(&self) -> Option<&'static Count> {
        if !COUNTING.load(Relaxed) {
            return None;
        }
        // `try_with`: a thread being torn down has no thread-locals left, and is not the caller.
        Some(if IS_CALLER.try_with(Cell::get).unwrap_or(false) {
            &CALLER
        } else {
            &OTHERS
        })
    }

    fn grew(&self, by: i64) {
        let live = LIVE.fetch_add(by, Relaxed) + by;
        if COUNTING.load(Relaxed) {
            PEAK.fetch_max(live, Relaxed);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counting
// around it touches only atomics and a `const`-initialised thread-local, and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(count) = self.count() {
            count.allocs.fetch_add(1, Relaxed);
            count.bytes.fetch_add(layout.size() as u64, Relaxed);
        }
        self.grew(layout.size() as i64);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if let Some(count) = self.count() {
            count.allocs.fetch_add(1, Relaxed);
            count.bytes.fetch_add(layout.size() as u64, Relaxed);
        }
        self.grew(layout.size() as i64);
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Relaxed);
        // SAFETY: `ptr` came from this allocator (so from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let grown = new_size as i64 - layout.size() as i64;
        if let Some(count) = self.count() {
            count.reallocs.fetch_add(1, Relaxed);
            count.bytes.fetch_add(grown.max(0) as u64, Relaxed);
        }
        self.grew(grown);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, which `System` shares.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

type Error = Box<dyn std::error::Error>;

/// What one `submit` + `as_completed` run of `n` tasks allocated.
struct Run {
    n: u64,
    submit: [u64; 3],
    collect: [u64; 3],
    others: [u64; 3],
    /// The most bytes live at once above the start, and the rise of the peak RSS.
    peak_heap: i64,
    peak_rss: Option<u64>,
    secs: f64,
    /// The parent's CPU time (every thread), user + system: timed, so it depends on the load.
    cpu: f64,
}

fn diff(a: [u64; 3], b: [u64; 3]) -> [u64; 3] {
    [b[0] - a[0], b[1] - a[1], b[2] - a[2]]
}

/// The process's peak RSS in bytes (`VmHWM`), or its current RSS (`VmRSS`).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib = line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(kib * 1024)
}

/// Sets the peak RSS back to the current RSS (`clear_refs` with 5, Linux 4.0 and newer).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn run_one(pool: &ProcessPoolExecutor, n: u64) -> Result<Run, Error> {
    let rss_reset = reset_peak_rss();
    let rss_before = status_kib("VmRSS:");
    let start_live = LIVE.load(Relaxed);
    PEAK.store(start_live, Relaxed);
    COUNTING.store(true, Relaxed);
    let others0 = OTHERS.read();
    let cpu0 = crate::measure::cpu_time();
    let t = Instant::now();
    let c0 = CALLER.read();
    let futures = (0..n)
        .map(|i| pool.submit(square, i))
        .collect::<Result<Vec<_>, _>>()?;
    let c1 = CALLER.read();
    let mut sum = 0u64;
    for f in as_completed(&futures, None) {
        sum = sum.wrapping_add(*f.result().map_err(|e| e.to_string())?);
    }
    let c2 = CALLER.read();
    COUNTING.store(false, Relaxed);
    let secs = t.elapsed().as_secs_f64();
    let cpu = crate::measure::cpu_time()
        .saturating_sub(cpu0)
        .as_secs_f64();
    let others = diff(others0, OTHERS.read());
    let peak_heap = PEAK.load(Relaxed) - start_live;
    let peak_rss = match (rss_reset, rss_before, status_kib("VmHWM:")) {
        (true, Some(before), Some(peak)) => Some(peak.saturating_sub(before)),
        _ => None,
    };
    let want = (0..n).fold(0u64, |s, i| s.wrapping_add(i * i));
    if sum != want {
        return Err(format!("wrong sum: {sum}, want {want}").into());
    }
    drop(futures);
    Ok(Run {
        n,
        submit: diff(c0, c1),
        collect: diff(c1, c2),
        others,
        peak_heap,
        peak_rss,
        secs,
        cpu,
    })
}

fn per(x: u64, n: u64) -> f64 {
    x as f64 / n as f64
}

fn report_tasks(r: &Run) {
    println!(
        "{} tiny tasks, submit + as_completed, per task in the parent:",
        r.n
    );
    println!(
        "  {:<28} {:>8} {:>9} {:>8}",
        "", "allocs", "reallocs", "bytes"
    );
    let mut total = [0; 3];
    for (name, c) in [
        ("caller, submit", r.submit),
        ("caller, as_completed", r.collect),
        ("pool threads (I/O, done)", r.others),
    ] {
        println!(
            "  {name:<28} {:>8.2} {:>9.2} {:>8.0}",
            per(c[0], r.n),
            per(c[1], r.n),
            per(c[2], r.n)
        );
        total = [total[0] + c[0], total[1] + c[1], total[2] + c[2]];
    }
    println!(
        "  {:<28} {:>8.2} {:>9.2} {:>8.0}",
        "total",
        per(total[0], r.n),
        per(total[1], r.n),
        per(total[2], r.n)
    );
    println!(
        "  parent CPU (timed, load-dependent): {:.2} µs per task, {:.2} s wall",
        r.cpu * 1e6 / r.n as f64,
        r.secs
    );
}

fn report_peak(r: &Run) {
    println!(
        "{} futures, submit + as_completed: peak heap {:.0} B per future ({:.1} MiB), {}, {:.2} s",
        r.n,
        r.peak_heap as f64 / r.n as f64,
        r.peak_heap as f64 / f64::from(1 << 20),
        match r.peak_rss {
            Some(rss) => format!("peak RSS rise {:.0} B per future", per(rss, r.n)),
            None => "peak RSS not readable".to_owned(),
        },
        r.secs
    );
}

/// The counts of one run: per tiny task and per future at peak.
pub(crate) struct Counts {
    tasks: Run,
    peak: Run,
}

impl Counts {
    /// The facts for the cf column.
    pub(crate) fn facts(&self) -> Vec<(String, String)> {
        let r = &self.tasks;
        let total = |i: usize| per(r.submit[i] + r.collect[i] + r.others[i], r.n);
        vec![
            (
                "parent allocations per tiny task (counted)".into(),
                format!(
                    "{:.2} (+ {:.2} reallocs; submit {:.2}, as_completed {:.2}, pool threads {:.2})",
                    total(0),
                    total(1),
                    per(r.submit[0], r.n),
                    per(r.collect[0], r.n),
                    per(r.others[0], r.n)
                ),
            ),
            (
                format!(
                    "parent heap per future at peak, {} futures (counted)",
                    self.peak.n
                ),
                format!("{:.0} B", self.peak.peak_heap as f64 / self.peak.n as f64),
            ),
        ]
    }

    /// Prints both measurements.
    pub(crate) fn print(&self) {
        report_tasks(&self.tasks);
        report_peak(&self.peak);
    }
}

/// Runs both measurements: `tiny` tasks, then `many` futures.
pub(crate) fn run(tiny: u64, many: u64) -> Result<Counts, Error> {
    IS_CALLER.with(|c| c.set(true));
    let pool = ProcessPoolExecutor::with_max_workers(2)?;
    pool.wait_ready(None)?;
    // Warm: workers up, the pool has seen short tasks, buffers have grown.
    run_one(&pool, 20_000)?;
    let tasks = run_one(&pool, tiny)?;
    let peak = run_one(&pool, many)?;
    IS_CALLER.with(|c| c.set(false));
    Ok(Counts { tasks, peak })
}
