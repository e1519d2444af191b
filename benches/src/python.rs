//! Python's `concurrent.futures.ProcessPoolExecutor`: the same workloads in a script that this
//! binary writes to a temporary file and runs with `python3`; it prints its samples as JSON.

use std::process::{Command, Stdio};

use crate::Config;
use crate::measure::{self, Results};

/// The script. Tasks live at module top level, as Python's pool requires (workers look them up
/// by module and name); `main` runs only in the parent.
const SCRIPT: &str = r#"
import json, math, os, resource, sys, time
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool


def square(x):
    return x * x


def sink(data):
    return len(data)


def source(n):
    return b"\x07" * n


def burn(micros, x):
    # CPU time, not wall time, as the Rust columns: a preempted task still needs its share.
    until = time.thread_time_ns() + micros * 1000
    while time.thread_time_ns() < until:
        pass
    return x


def crash():
    os.abort()


def worker_pid(sleep_s):
    time.sleep(sleep_s)
    return os.getpid()


def percentile(samples, q):
    s = sorted(samples)
    rank = min(max(1, math.ceil(q * len(s))), len(s))
    return s[rank - 1]


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


def cpu_s():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def workers_cpu_s(pids):
    # Nanoseconds on CPU of every thread of each worker (the first field of schedstat).
    total = 0
    for pid in pids:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
    return total / 1e9


def log(msg):
    print("python: " + msg, file=sys.stderr, flush=True)


def main():
    cfg = json.loads(sys.argv[1])
    reps, few = cfg["reps"], cfg["few_reps"]
    samples, notes = {}, {}
    push = lambda k, v: samples.setdefault(k, []).append(v)
    info = {
        "version": sys.version.split()[0],
        "start method": mp.get_start_method(),
        "workers": "2",
    }

    # First, while the parent is small: forked workers share its pages, and VmRSS counts them.
    log("idle pool for %.0f s" % cfg["idle"])
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(square, range(100)))
        pids = set()
        for _ in range(10):
            pids |= set(pool.map(worker_pid, [0.05, 0.05]))
            if len(pids) >= 2:
                break
        time.sleep(0.2)
        rss = [rss_mib(p) for p in pids]
        push("idle_rss", sum(rss) / len(rss))
        before = cpu_s()
        time.sleep(cfg["idle"])
        push("idle_cpu", (cpu_s() - before) * 1e3)

    log("start-up")
    for _ in range(few):
        t = time.perf_counter()
        pool = ProcessPoolExecutor(max_workers=2)
        pool.submit(square, 3).result()
        push("startup", (time.perf_counter() - t) * 1e3)
        pool.shutdown(wait=True)
    notes["startup"] = ("with the fork start method Python 3.11 starts all max_workers "
                        "processes at the first submit")

    log("crash, then the next result")
    for _ in range(few):
        pool = ProcessPoolExecutor(max_workers=1)
        pool.submit(square, 1).result()
        t0 = time.perf_counter()
        f = pool.submit(crash)
        try:
            f.result()
            raise SystemExit("the crash task returned")
        except BrokenProcessPool:
            pass
        t1 = time.perf_counter()
        # The crash broke the whole pool: every later submit fails. Recreate it.
        fresh = ProcessPoolExecutor(max_workers=1)
        assert fresh.submit(square, 5).result() == 25
        t2 = time.perf_counter()
        push("crash_next", (t2 - t1) * 1e3)
        push("crash_submit_next", (t2 - t0) * 1e3)
        pool.shutdown(wait=True)
        fresh.shutdown(wait=True)
    notes["crash_next"] = ("BrokenProcessPool: a crash breaks the whole pool; "
                           "the time is to create a new pool and get a result from it")

    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(square, range(2000), chunksize=1))

        n = cfg["tiny_python"]
        log("%d tiny tasks, submit + as_completed" % n)
        for _ in range(reps):
            cpu = cpu_s()
            t = time.perf_counter()
            fs = [pool.submit(square, i) for i in range(n)]
            total = 0
            for f in as_completed(fs):
                total += f.result()
            dt = time.perf_counter() - t
            cpu = cpu_s() - cpu
            assert total == sum(i * i for i in range(n))
            push("submit_rate", n / dt)
            push("submit_parent_cpu", cpu * 1e6 / n)

        n = cfg["map_python"]
        log("%d tiny tasks, map chunksize %d" % (n, cfg["chunk"]))
        for _ in range(reps):
            t = time.perf_counter()
            total = sum(pool.map(square, range(n), chunksize=cfg["chunk"]))
            dt = time.perf_counter() - t
            assert total == sum(i * i for i in range(n))
            push("map_rate", n / dt)

        log("round trips, %d per repetition" % cfg["latency_samples"])
        for i in range(200):
            pool.submit(square, i).result()
        pids = list(pool._processes)
        for _ in range(reps):
            lat = []
            cpu = cpu_s() + workers_cpu_s(pids)
            wall = time.perf_counter()
            for i in range(cfg["latency_samples"]):
                t = time.perf_counter()
                pool.submit(square, i).result()
                lat.append(time.perf_counter() - t)
            wall = time.perf_counter() - wall
            push("rtt_cpu_per_wall", (cpu_s() + workers_cpu_s(pids) - cpu) / wall)
            push("rtt_p50", percentile(lat, 0.50) * 1e6)
            push("rtt_p99", percentile(lat, 0.99) * 1e6)

        for micros, n, key in [(1000, cfg["cpu_1ms"], "cpu_1ms_eff"),
                               (100, cfg["cpu_100us_python"], "cpu_100us_eff")]:
            log("%d tasks of %d us CPU, submit + as_completed" % (n, micros))
            for _ in range(cfg["cpu_reps"]):
                t = time.perf_counter()
                fs = [pool.submit(burn, micros, i) for i in range(n)]
                total = sum(f.result() for f in as_completed(fs))
                dt = time.perf_counter() - t
                assert total == n * (n - 1) // 2
                push(key, 100.0 * (n * micros / 1e6 / 2) / dt)
        n = cfg["cpu_100us"]
        log("%d tasks of 100 us CPU, map chunksize %d" % (n, cfg["cpu_chunk"]))
        for _ in range(cfg["cpu_reps"]):
            t = time.perf_counter()
            total = sum(pool.map(burn, [100] * n, range(n), chunksize=cfg["cpu_chunk"]))
            dt = time.perf_counter() - t
            assert total == n * (n - 1) // 2
            push("cpu_100us_map_eff", 100.0 * (n * 100 / 1e6 / 2) / dt)

        m, mib = cfg["transfers_1mib"], 1 << 20
        log("1 MiB argument and result, %d per repetition" % m)
        for _ in range(reps):
            args = [b"\x07" * mib for _ in range(m)]
            t = time.perf_counter()
            for a in args:
                assert pool.submit(sink, a).result() == mib
            push("arg_1mib", m / (time.perf_counter() - t))
            del args
            t = time.perf_counter()
            for _ in range(m):
                assert len(pool.submit(source, mib).result()) == mib
            push("res_1mib", m / (time.perf_counter() - t))

        big = cfg["big"]
        log("%d MiB argument and result" % (big >> 20))
        data = b"\x07" * big
        for _ in range(few):
            t = time.perf_counter()
            assert pool.submit(sink, data).result() == big
            push("arg_big", big / 1048576.0 / (time.perf_counter() - t))
        del data
        for _ in range(few):
            t = time.perf_counter()
            r = pool.submit(source, big).result()
            dt = time.perf_counter() - t
            assert len(r) == big
            del r
            push("res_big", big / 1048576.0 / dt)

    notes["rtt_cpu_per_wall"] = ("the parent (getrusage) and its %d workers (/proc/<pid>/task/*/"
                                 "schedstat)" % len(pids))
    json.dump({"samples": samples, "notes": notes, "info": info}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
"#;

/// Runs the script and reads its samples; any failure marks the whole column n/a with the cause.
pub(crate) fn run(config: &Config) -> Results {
    match run_script(config) {
        Ok(results) => results,
        Err(why) => {
            eprintln!("python: {why}");
            let mut results = Results::default();
            results.skip_all(&why);
            results
        }
    }
}

fn run_script(config: &Config) -> Result<Results, String> {
    let path = std::env::temp_dir().join(format!("cf-bench-{}.py", std::process::id()));
    std::fs::write(&path, SCRIPT).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let settings = serde_json::to_string(config).map_err(|e| e.to_string())?;
    let output = Command::new("python3")
        .arg(&path)
        .arg(settings)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    let _ = std::fs::remove_file(&path);
    let output = output.map_err(|e| format!("cannot run python3: {e}"))?;
    if !output.status.success() {
        return Err(format!("python3 failed: {}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or("python3 printed no results")?;
    let mut results: Results =
        serde_json::from_str(line).map_err(|e| format!("bad JSON from python3: {e}"))?;
    if config.tiny_python != config.tiny {
        results.note(
            measure::SUBMIT,
            format!(
                "{} tasks per repetition (cf: {}), reported as a rate",
                config.tiny_python, config.tiny
            ),
        );
    }
    if config.cpu_100us_python != config.cpu_100us {
        results.note(
            measure::CPU_100US,
            format!(
                "{} tasks per repetition (cf: {})",
                config.cpu_100us_python, config.cpu_100us
            ),
        );
    }
    Ok(results)
}
