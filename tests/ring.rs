//! The reply ring: a local worker's replies come through memory it shares with the parent.
//! Whatever a task does to that memory fails its own future, and nothing else; replies of every
//! size around the ring's own come through whole.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod crash_util;

use std::io::{Seek, SeekFrom, Write};

use cf::{Exit, ProcessPoolExecutor, ProtocolViolation, TaskError};
use crash_util::{LONG, OBSERVE, serial, square, worker_pid};
use serde_bytes::ByteBuf;

/// Where this worker's reply ring is mapped, from `/proc/self/maps`.
fn ring_address() -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    let line = maps
        .lines()
        .find(|line| line.contains("/memfd:cf-ring"))
        .expect("a reply ring in this worker");
    let start = line.split('-').next().expect("an address range");
    u64::from_str_radix(start, 16).expect("a hex address")
}

/// Writes `bytes` over this process's memory at `address`, through `/proc/self/mem` (as a stray
/// pointer would).
fn scribble(address: u64, bytes: &[u8]) {
    let mut mem = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
        .expect("open /proc/self/mem");
    mem.seek(SeekFrom::Start(address)).expect("seek");
    mem.write_all(bytes).expect("write over the ring");
}

/// Sets the ring's write position far past what the parent read, says so on stderr, then
/// waits to be killed. A write to the ring rings no doorbell: the parent sees it the next time
/// it looks, and the line makes sure it looks (it wakes a parent asleep on the worker's stderr,
/// and one asleep with a timeout wakes within 10 ms anyway). Without it, a busy parent asleep
/// with no time limit to keep would not look until something else woke it: the task would
/// hang, as a task that parks does.
#[cf::task]
fn scribbles_over_the_write_position() {
    scribble(ring_address(), &0x8000_0000u32.to_le_bytes());
    eprintln!("scribbled over the ring");
    std::thread::park();
}

/// Sets the ring's read position (the parent's) ahead of what the worker wrote, then returns:
/// the worker's own reply cannot go out.
#[cf::task]
fn scribbles_over_the_read_position() {
    scribble(ring_address() + 64, &0x4000_0000u32.to_le_bytes());
}

/// A reply of `len` bytes, each its index modulo 251.
#[cf::task]
fn bytes_of(len: usize) -> ByteBuf {
    ByteBuf::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

fn outcome<T: Clone>(future: cf::Future<T>) -> Result<T, TaskError> {
    assert!(future.wait_timeout(LONG), "the task hung");
    future.into_result()
}

/// The parent sees a write position out of range as the end of the worker's replies: the worker
/// is killed after the grace, its task fails with a protocol error, and the pool serves on.
#[test]
fn a_task_that_scribbles_over_the_write_position_fails_alone() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::with_max_workers(2).expect("start a pool");
    // A time limit bounds a failure of this test (a parked task never ends by itself).
    let limit = cf::TaskOptions::new().timeout(LONG / 2);
    let victim = pool
        .submit_with(scribbles_over_the_write_position, (), limit)
        .unwrap();
    let others: Vec<_> = (0..50).map(|x| pool.submit(square, x).unwrap()).collect();
    match outcome(victim) {
        Err(TaskError::Protocol { violation, .. }) => {
            assert_eq!(violation, ProtocolViolation::Closed);
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    for (x, future) in (0..).zip(others) {
        assert_eq!(outcome(future).expect("another task").0, x * x);
    }
    assert_eq!(
        outcome(pool.submit(square, 7).unwrap()).expect("later").0,
        49
    );
    crash_util::within(OBSERVE, "dropping the pool", move || drop(pool));
}

/// The worker sees a read position out of range when it writes its reply: it says so on stderr
/// and exits, failing only its task.
#[test]
fn a_task_that_scribbles_over_the_read_position_fails_alone() {
    let _serial = serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).expect("start a pool");
    let before = outcome(pool.submit(worker_pid, ()).unwrap()).expect("a pid");
    match outcome(pool.submit(scribbles_over_the_read_position, ()).unwrap()) {
        Err(TaskError::WorkerDied {
            pid, exit, stderr, ..
        }) => {
            assert_eq!(pid, before);
            assert_eq!(exit, Exit::Code(70), "{stderr}");
            assert!(stderr.contains("reply ring"), "{stderr}");
        }
        other => panic!("expected the worker's death, got {other:?}"),
    }
    let (got, pid) = outcome(pool.submit(square, 5).unwrap()).expect("a new worker");
    assert_eq!(got, 25);
    assert_ne!(pid, before);
    crash_util::within(OBSERVE, "dropping the pool", move || drop(pool));
}

/// Replies just under, at and over the ring's size, and many times it, from two workers at
/// once, interleaved with small ones: each comes through whole.
#[test]
fn replies_of_every_size_around_the_ring_come_through_whole() {
    let _serial = serial();
    let ring = cf_worker::ring::DATA_LEN;
    let pool = ProcessPoolExecutor::with_max_workers(2).expect("start a pool");
    let sizes = [
        0,
        1,
        ring - 20,
        ring - 1,
        ring,
        ring + 1,
        3 * ring + 7,
        17,
        12 << 20,
        ring / 2 + 3,
    ];
    let futures: Vec<_> = sizes
        .iter()
        .cycle()
        .take(3 * sizes.len())
        .map(|&len| (len, pool.submit(bytes_of, len).unwrap()))
        .collect();
    for (len, future) in futures {
        let got = outcome(future).expect("a reply");
        assert_eq!(got.len(), len);
        assert!(
            got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
            "a reply of {len} bytes changed on the way"
        );
    }
}
