//! Bad input never breaks the pool: bad frames from a worker, arguments that fail to decode,
//! results that fail to encode. Each fails the one future concerned with an error that says
//! what was wrong; every other future completes, and the pool goes on.
//!
//! A task plays a broken worker by writing bytes of its choosing where its worker's replies go
//! (`cf_worker::start::write_reply_bytes`).
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod util;

use cf::{ProcessPoolExecutor, TaskError, task};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Writes `bytes` where this worker's replies go, as a broken worker would.
fn write_result_pipe(bytes: &[u8]) {
    cf_worker::start::write_reply_bytes(bytes).expect("write a reply");
}

/// A frame header: length of what follows the length field, kind, id, aux.
fn header(len: u32, kind: u8, id: u64) -> Vec<u8> {
    let mut frame = len.to_le_bytes().to_vec();
    frame.push(kind);
    frame.extend_from_slice(&id.to_le_bytes());
    frame.extend_from_slice(&0u32.to_le_bytes());
    frame
}

#[task]
fn square(x: u64) -> u64 {
    x * x
}

#[task]
fn worker_pid() -> u32 {
    std::process::id()
}

/// Sends a frame of an unknown kind, then blocks until the parent kills it.
#[task]
fn unknown_kind() {
    write_result_pipe(&header(13, 0x42, 0));
    std::thread::park();
}

/// Announces a frame longer than the pool's limit.
#[task]
fn oversized() {
    write_result_pipe(&header(10_000, 0x81, 0));
    std::thread::park();
}

/// Announces a frame shorter than its own header.
#[task]
fn too_short() {
    write_result_pipe(&3u32.to_le_bytes());
    std::thread::park();
}

/// Writes the start of a frame and dies.
#[task]
fn truncated() {
    let mut frame = header(100, 0x81, 0);
    frame.truncate(10);
    write_result_pipe(&frame);
    std::process::exit(0);
}

/// Replies for a job the worker is not running.
#[task]
fn out_of_order() {
    write_result_pipe(&header(13, 0x81, 999_999));
    std::thread::park();
}

/// A value whose decoding fails for odd numbers, as a validating `Deserialize` impl can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Even(u32);

impl<'de> Deserialize<'de> for Even {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if n % 2 == 1 {
            return Err(serde::de::Error::custom(format!("{n} is odd")));
        }
        Ok(Even(n))
    }
}

#[task]
fn half(n: Even) -> u32 {
    n.0 / 2
}

/// A value whose encoding fails, as a `Serialize` impl can.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Unsendable;

impl Serialize for Unsendable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

#[task]
fn make_unsendable() -> Unsendable {
    Unsendable
}

/// Runs `bad` on a one-worker pool among good tasks; returns its error and checks the rest.
fn among_good_ones(pool: &ProcessPoolExecutor, bad: impl FnOnce() -> TaskError) -> TaskError {
    let before: Vec<_> = (0..5).map(|x| pool.submit(square, x).unwrap()).collect();
    let error = bad();
    let after: Vec<_> = (5..10).map(|x| pool.submit(square, x).unwrap()).collect();
    for (x, future) in (0..10).zip(before.iter().chain(&after)) {
        assert_eq!(future.result(), Ok(&(x * x)), "task {x}");
    }
    error
}

fn protocol_error(pool: &ProcessPoolExecutor, task: impl FnOnce() -> cf::Future<()>) -> String {
    let error = among_good_ones(pool, || task().result().unwrap_err().clone());
    match error {
        TaskError::Protocol { violation, .. } => violation.to_string(),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn bad_frames_fail_only_the_task_that_was_running() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_frame(1024)
        .build()
        .unwrap();
    let first = *pool.submit(worker_pid, ()).unwrap().result().unwrap();

    let message = protocol_error(&pool, || pool.submit(unknown_kind, ()).unwrap());
    assert_eq!(message, "unknown reply kind 0x42");
    let message = protocol_error(&pool, || pool.submit(oversized, ()).unwrap());
    assert_eq!(
        message,
        "frame of 10000 bytes is over the limit of 1024 bytes"
    );
    let message = protocol_error(&pool, || pool.submit(too_short, ()).unwrap());
    assert_eq!(
        message,
        "frame of 3 bytes is shorter than its 13-byte header"
    );
    let message = protocol_error(&pool, || pool.submit(out_of_order, ()).unwrap());
    assert_eq!(message, "reply for job 999999 which it was not running");
    let message = protocol_error(&pool, || pool.submit(truncated, ()).unwrap());
    assert_eq!(
        message,
        "the worker died in the middle of a frame (10 bytes of 104)"
    );

    // Each bad worker was replaced.
    assert_ne!(
        *pool.submit(worker_pid, ()).unwrap().result().unwrap(),
        first
    );
}

#[test]
fn protocol_errors_say_who_and_what() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    let future = pool.submit(unknown_kind, ()).unwrap();
    let error = future.result().unwrap_err();
    let TaskError::Protocol { pid, task, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(task, "protocol::unknown_kind");
    assert_eq!(
        error.to_string(),
        format!(
            "worker (pid {pid}) broke the protocol while running task `protocol::unknown_kind`: \
             unknown reply kind 0x42"
        )
    );
}

#[test]
fn arguments_that_fail_to_decode_fail_one_future() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    let worker = *pool.submit(worker_pid, ()).unwrap().result().unwrap();
    let error = among_good_ones(&pool, || {
        let odd = pool.submit(half, Even(3)).unwrap();
        assert_eq!(pool.submit(half, Even(4)).unwrap().result(), Ok(&2));
        odd.result().unwrap_err().clone()
    });
    assert_eq!(
        error,
        TaskError::Codec {
            task: "protocol::half".into(),
            message: "failed to decode the arguments of task `protocol::half`: 3 is odd".into(),
        }
    );
    // The worker went on serving.
    assert_eq!(pool.submit(worker_pid, ()).unwrap().result(), Ok(&worker));
}

#[test]
fn results_that_fail_to_encode_fail_one_future() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    let worker = *pool.submit(worker_pid, ()).unwrap().result().unwrap();
    let error = among_good_ones(&pool, || {
        pool.submit(make_unsendable, ())
            .unwrap()
            .result()
            .unwrap_err()
            .clone()
    });
    assert_eq!(
        error.to_string(),
        "failed to encode the result of task `protocol::make_unsendable`: \
         this value refuses to be encoded"
    );
    assert!(matches!(error, TaskError::Codec { .. }));
    assert_eq!(pool.submit(worker_pid, ()).unwrap().result(), Ok(&worker));
}

#[test]
fn arguments_that_fail_to_encode_come_back() {
    let _serial = util::serial();

    #[task]
    fn take_unsendable(_: Unsendable) {}

    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    let refused = pool.submit(take_unsendable, Unsendable).unwrap_err();
    assert!(refused.error().is_encode());
    assert_eq!(
        refused.to_string(),
        "failed to encode the arguments of task `protocol::take_unsendable`: \
         this value refuses to be encoded"
    );
    assert_eq!(refused.into_args(), Unsendable);
}

#[test]
fn workers_open_no_socket() {
    let _serial = util::serial();

    #[task]
    fn fd_targets() -> Vec<String> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
            .map(|p| p.display().to_string())
            .collect()
    }

    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    let targets = pool
        .submit(fd_targets, ())
        .unwrap()
        .result()
        .unwrap()
        .clone();
    assert!(
        targets.iter().all(|t| !t.starts_with("socket:")),
        "{targets:?}"
    );
    assert!(
        targets.iter().filter(|t| t.starts_with("pipe:")).count() >= 2,
        "{targets:?}"
    );
}
