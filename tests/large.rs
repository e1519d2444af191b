//! Large payloads: a 1 GiB argument and a 1 GiB result cross the process boundary in bounded
//! extra memory (a small multiple of the payload, not one copy per buffer on the way).
//!
//! The payloads are `serde_bytes::ByteBuf`, which serde encodes as one byte string; a plain
//! `Vec<u8>` is a sequence of a billion `u8` values to serde, and slow in a debug build.
#![allow(missing_docs, reason = "tasks are test fixtures")]

use std::time::Instant;

use cf::{ProcessPoolExecutor, task};
use serde_bytes::ByteBuf;

const GIB: usize = 1 << 30;

/// Peak resident memory of this process so far, in bytes (`VmHWM`).
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Bytes at every 4093rd offset: a cheap fingerprint of a large buffer.
fn sample(data: &[u8]) -> Vec<u8> {
    data.iter().step_by(4093).copied().collect()
}

/// A recognisable buffer.
fn pattern(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    for (i, chunk) in data.chunks_mut(4093).enumerate() {
        chunk[0] = (i % 251) as u8;
    }
    data
}

/// Fingerprints a large argument; also reports the worker's own peak memory.
#[task]
fn fingerprint(data: ByteBuf) -> (Vec<u8>, usize, usize) {
    (sample(&data), data.len(), peak_rss())
}

/// Makes a large result.
#[task]
fn make(len: usize) -> ByteBuf {
    ByteBuf::from(pattern(len))
}

#[test]
fn a_gib_each_way() {
    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    let data = pattern(GIB);
    let expected = sample(&data);
    let base = peak_rss();

    let start = Instant::now();
    let future = pool.submit(fingerprint, ByteBuf::from(data)).unwrap();
    let (seen, len, worker_peak) = future.result().unwrap();
    let there = start.elapsed();
    assert_eq!((seen, *len), (&expected, GIB));
    let worker_peak = *worker_peak;

    let start = Instant::now();
    let back = pool.submit(make, GIB).unwrap().into_result().unwrap();
    let back_time = start.elapsed();
    assert_eq!(back.len(), GIB);
    assert_eq!(sample(&back), expected);

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
