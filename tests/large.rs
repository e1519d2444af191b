//! Large payloads: a 1 GiB argument and a 1 GiB result cross the process boundary in bounded
//! extra memory (a small multiple of the payload, not one copy per buffer on the way).
#![allow(missing_docs, reason = "tasks are test fixtures")]

use std::time::Instant;

use cf::{ProcessPoolExecutor, task};

const GIB: usize = 1 << 30;

/// Peak resident memory of this process so far, in bytes (`VmHWM`).
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Sums a large argument; also reports the worker's own peak memory.
#[task]
fn checksum(data: Vec<u8>) -> (u64, usize, usize) {
    let sum = data.iter().map(|&b| u64::from(b)).sum();
    (sum, data.len(), peak_rss())
}

/// Makes a large result.
#[task]
fn make(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_gib_each_way() {
    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    let data: Vec<u8> = (0..GIB).map(|i| (i % 7) as u8).collect();
    let expected: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let base = peak_rss();

    let start = Instant::now();
    let future = pool.submit(checksum, data).unwrap();
    let &(sum, len, worker_peak) = future.result().unwrap();
    let there = start.elapsed();
    assert_eq!((sum, len), (expected, GIB));

    let start = Instant::now();
    let back = pool.submit(make, GIB).unwrap().into_result().unwrap();
    let back_time = start.elapsed();
    assert_eq!(back.len(), GIB);
    assert!(
        back.iter()
            .enumerate()
            .step_by(4093)
            .all(|(i, &b)| b == (i % 251) as u8)
    );

    let parent_extra = peak_rss().saturating_sub(base);
    eprintln!(
        "1 GiB argument: {there:.2?}; 1 GiB result: {back_time:.2?}; parent peak above the \
         argument: {:.2} GiB; worker peak: {:.2} GiB",
        parent_extra as f64 / GIB as f64,
        worker_peak as f64 / GIB as f64,
    );
    // The parent held the argument (1 GiB) when `base` was read. Beyond it: the encoded
    // argument, and the received frame plus the decoded result.
    assert!(
        parent_extra <= 3 * GIB,
        "parent used {parent_extra} bytes beyond the argument"
    );
    assert!(
        worker_peak <= 3 * GIB + (64 << 20),
        "worker peaked at {worker_peak} bytes"
    );
}
