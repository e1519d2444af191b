//! Raw pipes: this binary re-executed as a child that answers length-prefixed frames on its
//! stdin/stdout. No serde, no futures, no pool: the physical limit that any pool built on pipes
//! and fork+exec works against.
//!
//! A frame is a 4-byte little-endian payload length, a 1-byte op and the payload. The child
//! reads as much as the pipe holds and answers every complete frame in it: a [`SQUARE`] frame
//! with a `write` of its own (as a pool answers each task), a [`SQUARE_BATCHED`] frame into a
//! buffer that is written once per read (as a pool answers a chunk of `map`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use crate::Config;
use crate::measure::{self, Results};

/// The environment marker that makes this binary a raw-pipe child.
pub(crate) const CHILD_ENV: &str = "CF_BENCH_RAW_CHILD";

const HEADER: usize = 5;
/// Payload: a `u64`; answer: its square, in a `write` of its own.
const SQUARE: u8 = 0;
/// As [`SQUARE`], the answers to one read's frames written together.
const SQUARE_BATCHED: u8 = 3;
/// Payload: any bytes; answer: their count as a `u64`.
const SINK: u8 = 1;
/// Payload: a `u64` n; answer: n bytes.
const SOURCE: u8 = 2;

/// The same pipe size cf asks for.
const PIPE_SIZE: i32 = 1 << 20;
/// Frames per `write` in the batched mode.
const BATCH: usize = 1024;

fn push_frame(out: &mut Vec<u8>, op: u8, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(op);
    out.extend_from_slice(payload);
}

/// The child: answer frames until stdin closes, then exit.
pub(crate) fn child_main() -> ! {
    let result = serve();
    std::process::exit(i32::from(result.is_err()));
}

fn serve() -> io::Result<()> {
    // Own duplicates of fds 0 and 1: unbuffered, unlike `Stdout`'s line buffering.
    let mut input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let mut output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    let mut out = Vec::with_capacity(1 << 20);
    loop {
        let n = input.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut pos = 0;
        while filled - pos >= HEADER {
            let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            let op = buf[pos + 4];
            let end = pos + HEADER + len;
            if end > filled {
                // Make room for the whole frame (a big argument arrives in many reads).
                if HEADER + len > buf.len() {
                    buf.resize(HEADER + len, 0);
                }
                break;
            }
            let payload = &buf[pos + HEADER..end];
            match op {
                SQUARE => {
                    let x = u64::from_le_bytes(payload.try_into().expect("8 bytes"));
                    let mut frame = [0u8; HEADER + 8];
                    frame[..4].copy_from_slice(&8u32.to_le_bytes());
                    frame[4] = SQUARE;
                    frame[HEADER..].copy_from_slice(&(x * x).to_le_bytes());
                    output.write_all(&frame)?;
                }
                SQUARE_BATCHED => {
                    let x = u64::from_le_bytes(payload.try_into().expect("8 bytes"));
                    push_frame(&mut out, SQUARE, &(x * x).to_le_bytes());
                }
                SINK => push_frame(&mut out, SINK, &(len as u64).to_le_bytes()),
                SOURCE => {
                    let n = u64::from_le_bytes(payload.try_into().expect("8 bytes")) as usize;
                    out.extend_from_slice(&(n as u32).to_le_bytes());
                    out.push(SOURCE);
                    out.resize(out.len() + n, 7);
                }
                _ => return Err(io::Error::other("unknown op")),
            }
            pos = end;
        }
        if !out.is_empty() {
            output.write_all(&out)?;
            out.clear();
            out.shrink_to(1 << 20);
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
}

/// A running child and its two pipes.
struct Peer {
    child: Child,
    tx: ChildStdin,
    rx: ChildStdout,
}

fn grow_pipe(fd: &impl AsRawFd) {
    // SAFETY: F_SETPIPE_SZ takes an int and touches no memory of ours; on failure (not a pipe,
    // over the limit) it returns -1 and the pipe keeps its size, which is fine.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
    }
}

impl Peer {
    fn spawn() -> io::Result<Peer> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let tx = child.stdin.take().expect("piped");
        let rx = child.stdout.take().expect("piped");
        grow_pipe(&tx);
        grow_pipe(&rx);
        Ok(Peer { child, tx, rx })
    }

    fn square(&mut self, x: u64) -> io::Result<u64> {
        let mut frame = [0u8; HEADER + 8];
        frame[..4].copy_from_slice(&8u32.to_le_bytes());
        frame[4] = SQUARE;
        frame[HEADER..].copy_from_slice(&x.to_le_bytes());
        self.tx.write_all(&frame)?;
        self.rx.read_exact(&mut frame)?;
        Ok(u64::from_le_bytes(
            frame[HEADER..].try_into().expect("8 bytes"),
        ))
    }

    /// Closes the child's stdin (it exits) and reaps it.
    fn close(self) -> io::Result<()> {
        let Peer { mut child, tx, rx } = self;
        drop(tx);
        drop(rx);
        child.wait()?;
        Ok(())
    }
}

/// Runs every raw-pipe measurement; a failure becomes a note instead of a number.
pub(crate) fn run(config: &Config) -> Results {
    let mut results = Results::default();
    if config.bytes_only {
        if let Err(e) = measure_bytes(config, &mut results) {
            eprintln!("raw: {e}");
            results.skip_all(&format!("failed: {e}"));
        }
        results.skip_all("not run (--bytes)");
        return results;
    }
    if let Err(e) = measure_all(config, &mut results) {
        eprintln!("raw: {e}");
        results.skip_all(&format!("failed: {e}"));
    }
    for key in [measure::CRASH_NEXT, measure::CRASH_SUBMIT_NEXT] {
        results.note(
            key,
            "no pool to recover: see start-up for the cost of a new process",
        );
    }
    results.note(measure::IDLE_CPU, "nothing runs in the parent");
    for key in [measure::CPU_1MS, measure::CPU_100US, measure::CPU_100US_MAP] {
        results.note(
            key,
            "not measured: rayon shows the same CPU work without pipes",
        );
    }
    results.info.insert(
        "children".into(),
        "2 for throughput and start-up, 1 otherwise".into(),
    );
    results
}

/// Sends `n` square frames split over `peers`, one `write` per `batch` frames, and reads every
/// answer; returns the sum of the answers. With `batch` 1 the child answers each frame with a
/// `write`, otherwise all the frames of one read with one.
fn stream(peers: &mut [Peer], n: u64, batch: usize) -> io::Result<u64> {
    let op = if batch == 1 { SQUARE } else { SQUARE_BATCHED };
    let count = peers.len();
    let per = n / count as u64;
    std::thread::scope(|s| {
        let mut readers = Vec::new();
        for (k, peer) in peers.iter_mut().enumerate() {
            let start = k as u64 * per;
            let end = if k + 1 == count { n } else { start + per };
            let Peer { tx, rx, .. } = peer;
            s.spawn(move || -> io::Result<()> {
                let mut out = Vec::with_capacity(batch * (HEADER + 8));
                let mut pending = 0;
                for x in start..end {
                    push_frame(&mut out, op, &x.to_le_bytes());
                    pending += 1;
                    if pending == batch {
                        tx.write_all(&out)?;
                        out.clear();
                        pending = 0;
                    }
                }
                tx.write_all(&out)
            });
            readers.push(s.spawn(move || -> io::Result<u64> {
                let frames = end - start;
                let mut buf = vec![0u8; 256 << 10];
                let (mut filled, mut seen, mut sum) = (0, 0, 0u64);
                while seen < frames {
                    let got = rx.read(&mut buf[filled..])?;
                    if got == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    filled += got;
                    let whole = filled / (HEADER + 8) * (HEADER + 8);
                    for frame in buf[..whole].chunks_exact(HEADER + 8) {
                        sum += u64::from_le_bytes(frame[HEADER..].try_into().expect("8 bytes"));
                        seen += 1;
                    }
                    buf.copy_within(whole..filled, 0);
                    filled -= whole;
                }
                Ok(sum)
            }));
        }
        let mut sum = 0;
        for reader in readers {
            sum += reader.join().expect("reader thread")?;
        }
        Ok(sum)
    })
}

fn measure_all(config: &Config, results: &mut Results) -> io::Result<()> {
    let n = config.tiny_raw;
    let mut peers = [Peer::spawn()?, Peer::spawn()?];
    stream(&mut peers, 10_000, 1)?;
    eprintln!("raw: {n} frames over 2 children, one write per frame");
    for _ in 0..config.reps {
        let cpu = measure::cpu_time();
        let t = Instant::now();
        let sum = stream(&mut peers, n, 1)?;
        let elapsed = t.elapsed();
        let cpu = measure::cpu_time().saturating_sub(cpu);
        assert_eq!(sum, measure::sum_of_squares(n));
        results.push(measure::SUBMIT, measure::rate(n, elapsed));
        results.push(
            measure::SUBMIT_PARENT_CPU,
            cpu.as_secs_f64() * 1e6 / n as f64,
        );
    }
    results.note(
        measure::SUBMIT_PARENT_CPU,
        "the parent's writer and reader threads of the row above, per frame",
    );
    results.note(
        measure::SUBMIT,
        format!(
            "{n} frames per repetition over 2 children: one write per frame each way \
             (the child answers each frame with its own write)"
        ),
    );
    eprintln!("raw: {n} frames over 2 children, {BATCH} frames per write");
    for _ in 0..config.reps {
        let t = Instant::now();
        let sum = stream(&mut peers, n, BATCH)?;
        let elapsed = t.elapsed();
        assert_eq!(sum, measure::sum_of_squares(n));
        results.push(measure::MAP, measure::rate(n, elapsed));
    }
    results.note(
        measure::MAP,
        format!("{BATCH} frames per write; the child answers each read's frames with one write"),
    );
    let [first, second] = peers;
    second.close()?;
    let mut peer = first;

    ping_pong_rows(config, &mut peer, results)?;

    big_transfers(config, &mut peer, results)?;
    transfers_1mib(config, &mut peer, results)?;
    peer.close()?;

    // A fresh child for RSS: the one above keeps its 64 MiB buffers.
    let mut peer = Peer::spawn()?;
    for i in 0..100 {
        peer.square(i)?;
    }
    std::thread::sleep(Duration::from_millis(200));
    match measure::rss_mib(peer.child.id()) {
        Some(rss) => results.push(measure::IDLE_RSS, rss),
        None => results.note(measure::IDLE_RSS, "could not read /proc/<pid>/status"),
    }
    results.note(
        measure::IDLE_RSS,
        "this binary re-executed, after 100 frames",
    );
    peer.close()?;

    eprintln!("raw: fork+exec to first reply, 2 children started together");
    for _ in 0..config.few_reps {
        results.push(measure::STARTUP, measure::ms(startup()?));
    }
    results.note(
        measure::STARTUP,
        "2 children spawned from 2 threads at once, each sent a frame; time to the first answer",
    );
    Ok(())
}

/// Ping-pong with `peer`: p50, p99 and CPU / wall; then the pinned rows, with fresh children.
fn ping_pong_rows(config: &Config, peer: &mut Peer, results: &mut Results) -> io::Result<()> {
    eprintln!("raw: ping-pong, {} per repetition", config.latency_samples);
    ping_pong(peer, 200)?;
    let mut meter = Err(io::ErrorKind::NotFound.into());
    for _ in 0..config.reps {
        meter = measure::CpuMeter::start(vec![peer.child.id()]);
        let mut samples = ping_pong(peer, config.latency_samples)?;
        measure::push_cpu_per_wall(results, &meter);
        measure::push_latency(results, &mut samples);
    }
    measure::note_cpu_per_wall(results, &meter, "the ping-pong child");
    pinned_ping_pong(config, results)
}

/// `n` round trips of a [`SQUARE`] frame, one at a time; the time of each.
fn ping_pong(peer: &mut Peer, n: usize) -> io::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        let v = peer.square(i)?;
        samples.push(t.elapsed());
        assert_eq!(v, i * i);
    }
    Ok(samples)
}

/// Restricts a thread (`Pid` 0: the calling thread) or a single-threaded process to one CPU.
fn pin(pid: Pid, cpu: usize) -> io::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(io::Error::from)?;
    sched_setaffinity(pid, &set).map_err(io::Error::from)
}

/// Ping-pong p50 with the parent's thread and the child pinned to one CPU, then to two
/// different CPUs (n/a when this process may run on one CPU only).
fn pinned_ping_pong(config: &Config, results: &mut Results) -> io::Result<()> {
    let allowed = sched_getaffinity(Pid::from_raw(0)).map_err(io::Error::from)?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    let Some(&first) = cpus.first() else {
        return Err(io::Error::other("no CPU in this thread's affinity mask"));
    };
    eprintln!("raw: ping-pong pinned to CPU {first}, and to two CPUs");
    for p50 in pinned_p50s(config, [first, first])? {
        results.push(measure::RTT_P50_ONE_CPU, p50);
    }
    results.note(
        measure::RTT_P50_ONE_CPU,
        format!("the parent's thread and the child both on CPU {first} (sched_setaffinity)"),
    );
    let Some(&second) = cpus.get(1) else {
        results.note(
            measure::RTT_P50_TWO_CPUS,
            "this process may use one CPU only",
        );
        return Ok(());
    };
    for p50 in pinned_p50s(config, [first, second])? {
        results.push(measure::RTT_P50_TWO_CPUS, p50);
    }
    results.note(
        measure::RTT_P50_TWO_CPUS,
        format!(
            "the parent's thread on CPU {first}, the child on CPU {second}: every message \
             wakes the other CPU (on a VM a halted vCPU, which is costly); the unpinned p50 \
             lands near one or between, by where the scheduler puts the two"
        ),
    );
    Ok(())
}

/// A fresh child pinned to `child_cpu`, ping-ponged from a thread pinned to `parent_cpu`
/// (not this one, whose mask stays as it was): the p50 of each repetition, in µs.
fn pinned_p50s(config: &Config, [parent_cpu, child_cpu]: [usize; 2]) -> io::Result<Vec<f64>> {
    let mut peer = Peer::spawn()?;
    pin(Pid::from_raw(peer.child.id() as i32), child_cpu)?;
    let p50s = std::thread::scope(|s| {
        s.spawn(|| -> io::Result<Vec<f64>> {
            pin(Pid::from_raw(0), parent_cpu)?;
            ping_pong(&mut peer, 200)?;
            let mut p50s = Vec::new();
            for _ in 0..config.reps {
                let mut samples = ping_pong(&mut peer, config.latency_samples)?;
                p50s.push(measure::percentile(&mut samples, 0.50).as_secs_f64() * 1e6);
            }
            Ok(p50s)
        })
        .join()
        .expect("the ping-pong thread does not panic")
    })?;
    peer.close()?;
    Ok(p50s)
}

/// Writes `data` as one [`SINK`] frame and reads the answer.
fn sink(peer: &mut Peer, data: &[u8]) -> io::Result<()> {
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
    header[4] = SINK;
    peer.tx.write_all(&header)?;
    peer.tx.write_all(data)?;
    let mut reply = [0u8; HEADER + 8];
    peer.rx.read_exact(&mut reply)?;
    let len = u64::from_le_bytes(reply[HEADER..].try_into().expect("8"));
    assert_eq!(len, data.len() as u64);
    Ok(())
}

/// Asks for `n` bytes with a [`SOURCE`] frame and reads them into a fresh `Vec`.
fn source(peer: &mut Peer, n: usize) -> io::Result<Vec<u8>> {
    let mut frame = Vec::new();
    push_frame(&mut frame, SOURCE, &(n as u64).to_le_bytes());
    peer.tx.write_all(&frame)?;
    let mut header = [0u8; HEADER];
    peer.rx.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4")) as usize;
    let mut data = vec![0u8; len];
    peer.rx.read_exact(&mut data)?;
    Ok(data)
}

/// The byte-transfer rows alone (`--bytes`): `config.big` and 1 MiB in and out.
fn measure_bytes(config: &Config, results: &mut Results) -> io::Result<()> {
    let mut peer = Peer::spawn()?;
    big_transfers(config, &mut peer, results)?;
    transfers_1mib(config, &mut peer, results)?;
    peer.close()
}

/// `config.big` in and out, `config.few_reps` times each: a fresh buffer each time, and the
/// argument also from one reused buffer (a note).
fn big_transfers(config: &Config, peer: &mut Peer, results: &mut Results) -> io::Result<()> {
    eprintln!("raw: {} MiB argument and result", config.big >> 20);
    // A fresh buffer per repetition, built before the clock as cf's and Python's arguments are.
    for _ in 0..config.few_reps {
        let data = vec![7u8; config.big];
        let t = Instant::now();
        sink(peer, &data)?;
        results.push(
            measure::ARG_BIG,
            measure::mib_per_s(config.big, t.elapsed()),
        );
    }
    // One buffer for every repetition (pages faulted once, warm in the TLB): no pool that takes
    // an owned value per task can do this, so it is a note, not the row.
    let data = vec![7u8; config.big];
    let mut reused = Vec::new();
    for _ in 0..config.few_reps {
        let t = Instant::now();
        sink(peer, &data)?;
        reused.push(measure::mib_per_s(config.big, t.elapsed()));
    }
    results.note(
        measure::ARG_BIG,
        format!(
            "a fresh buffer per repetition; one pre-faulted buffer reused: {:.0} MiB/s",
            measure::median(&reused)
        ),
    );
    drop(data);
    for _ in 0..config.few_reps {
        let t = Instant::now();
        let data = source(peer, config.big)?;
        let elapsed = t.elapsed();
        assert_eq!(data.len(), config.big);
        drop(data);
        results.push(measure::RES_BIG, measure::mib_per_s(config.big, elapsed));
    }
    Ok(())
}

/// 1 MiB in and out, one frame at a time; fresh buffers, as the pools get.
fn transfers_1mib(config: &Config, peer: &mut Peer, results: &mut Results) -> io::Result<()> {
    const MIB: usize = 1 << 20;
    let m = config.transfers_1mib;
    eprintln!("raw: 1 MiB argument and result, {m} per repetition");
    for _ in 0..config.reps {
        let args: Vec<Vec<u8>> = (0..m).map(|_| vec![7u8; MIB]).collect();
        let t = Instant::now();
        for arg in args {
            sink(peer, &arg)?;
        }
        results.push(measure::ARG_1MIB, measure::mib_per_s(m * MIB, t.elapsed()));
        let t = Instant::now();
        for _ in 0..m {
            assert_eq!(source(peer, MIB)?.len(), MIB);
        }
        results.push(measure::RES_1MIB, measure::mib_per_s(m * MIB, t.elapsed()));
    }
    Ok(())
}

/// Spawns two children at once (a thread each, as a pool starts its workers), sends each a
/// frame, and returns the time to the first answer; then closes both.
fn startup() -> io::Result<Duration> {
    let t = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let tx = tx.clone();
                s.spawn(move || -> io::Result<()> {
                    let mut peer = Peer::spawn()?;
                    let v = peer.square(3)?;
                    let _ = tx.send((v, t.elapsed()));
                    peer.close()
                })
            })
            .collect();
        drop(tx);
        let first = rx.recv().map_err(|_| io::Error::other("no child answered"));
        for thread in threads {
            thread.join().expect("start-up thread")?;
        }
        let (v, elapsed) = first?;
        assert_eq!(v, 9);
        Ok(elapsed)
    })
}
