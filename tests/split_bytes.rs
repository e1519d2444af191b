//! Large byte strings cross as a split frame's raw tail: a `Vec<u8>`, `serde_bytes::ByteBuf` or
//! `String` argument, result or error of more than `SPLIT_AT` bytes is written straight from the
//! value and read straight into the buffer of the value on the other side. These tests check
//! that every byte arrives in place on both sides of the threshold, and that a worker that dies
//! in the middle of a tail fails only the future it was answering.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod util;

use cf::{ProtocolViolation, TaskError, task};
use serde_bytes::ByteBuf;

/// The threshold: byte strings longer than this are split (`cf_worker::SPLIT_AT`).
const SPLIT_AT: usize = 64 << 10;

/// Lengths around the threshold, and a few MiB with an odd tail.
const LENGTHS: [usize; 5] = [
    SPLIT_AT - 1,
    SPLIT_AT,
    SPLIT_AT + 1,
    2 * SPLIT_AT + 3,
    (5 << 20) + 7,
];

/// A recognisable buffer of `len` bytes: no two neighbouring 251-byte runs alike.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed ^ (i / 251) as u8)
        .collect()
}

/// A recognisable UTF-8 string of `len` bytes, with multi-byte characters in it.
fn text(len: usize) -> String {
    let mut text = String::with_capacity(len);
    let mut i = 0usize;
    while text.len() < len {
        let c = match i % 7 {
            0 => 'é',
            1 => '€',
            _ => char::from(b'a' + (i % 26) as u8),
        };
        if text.len() + c.len_utf8() > len {
            text.push('.');
        } else {
            text.push(c);
        }
        i += 1;
    }
    text
}

/// Each byte of its argument plus one, in place: every byte must arrive, where it belongs.
#[task]
fn bumped(mut data: Vec<u8>) -> Vec<u8> {
    for byte in &mut data {
        *byte = byte.wrapping_add(1);
    }
    data
}

#[task]
fn bumped_buf(data: ByteBuf) -> ByteBuf {
    ByteBuf::from(bumped(data.into_vec()))
}

/// Its argument upper-cased (ASCII only, so the length stays).
#[task]
fn shouted(text: String) -> String {
    text.to_ascii_uppercase()
}

/// A large byte string as the task's own error.
#[task]
fn refused(len: usize) -> Result<(), String> {
    Err(text(len))
}

/// Makes a `len`-byte `Vec<u8>` in the worker.
#[task]
fn made(len: usize, seed: u8) -> Vec<u8> {
    pattern(len, seed)
}

/// The pid of the worker that runs it.
#[task]
fn pid_of() -> u32 {
    std::process::id()
}

/// Waits at the gate at `path`, then returns `len` bytes.
#[task]
fn big_after_gate(path: String, len: usize) -> Vec<u8> {
    util::pass_gate(&path, 0);
    vec![7; len]
}

/// This process's resident memory in bytes (`VmRSS`): the pool's I/O thread copies a large
/// reply into a buffer that is touched only as the bytes come, so this grows while the reply
/// comes (whether it is read from a pipe or from the worker's reply ring).
fn read_so_far() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("a VmRSS line")
}

#[test]
fn byte_vectors_round_trip_exactly_around_the_threshold() {
    let pool = util::process_pool(2);
    for len in LENGTHS {
        let data = pattern(len, 0x5a);
        let expected: Vec<u8> = data.iter().map(|b| b.wrapping_add(1)).collect();
        let back = pool.submit(bumped, data).unwrap().into_result().unwrap();
        assert_eq!(back.len(), len);
        assert!(back == expected, "length {len}: the bytes differ");
        let got = pool.submit(made, (len, 3)).unwrap().into_result().unwrap();
        assert!(
            got == pattern(len, 3),
            "length {len}: the made bytes differ"
        );
    }
}

#[test]
fn byte_bufs_round_trip_exactly_around_the_threshold() {
    let pool = util::process_pool(2);
    for len in LENGTHS {
        let data = pattern(len, 0xa5);
        let expected: Vec<u8> = data.iter().map(|b| b.wrapping_add(1)).collect();
        let back = pool
            .submit(bumped_buf, ByteBuf::from(data))
            .unwrap()
            .into_result()
            .unwrap();
        assert_eq!(back.len(), len);
        assert!(
            back.into_vec() == expected,
            "length {len}: the bytes differ"
        );
    }
}

#[test]
fn strings_round_trip_exactly_as_arguments_results_and_errors() {
    let pool = util::process_pool(2);
    for len in LENGTHS {
        let text = text(len);
        assert_eq!(text.len(), len);
        let back = pool
            .submit(shouted, text.clone())
            .unwrap()
            .into_result()
            .unwrap();
        assert!(
            back == text.to_ascii_uppercase(),
            "length {len}: the text differs"
        );
        match pool.submit(refused, len).unwrap().into_result() {
            Err(TaskError::Failed(error)) => {
                assert!(error == text, "length {len}: the error differs")
            }
            other => panic!("length {len}: expected the task's own error, got {other:?}"),
        }
    }
}

#[test]
fn many_large_replies_in_flight_arrive_whole_and_in_order() {
    let pool = util::process_pool(2);
    let lengths: Vec<usize> = (0..24).map(|i| SPLIT_AT - 12 + i * 40_000).collect();
    let futures: Vec<_> = lengths
        .iter()
        .enumerate()
        .map(|(i, &len)| pool.submit(made, (len, i as u8)).unwrap())
        .collect();
    for ((i, len), future) in lengths.into_iter().enumerate().zip(futures) {
        let got = future.into_result().unwrap();
        assert!(got == pattern(len, i as u8), "task {i}: the bytes differ");
    }
}

#[test]
fn a_worker_killed_mid_tail_fails_only_its_future() {
    const LEN: usize = 256 << 20;
    let pool = util::process_pool(2);
    let gate = util::Gate::new();
    let dying = pool.submit(big_after_gate, (gate.path(), LEN)).unwrap();
    let entered = gate.entered();
    let others: Vec<_> = (0..8)
        .map(|i| pool.submit(made, (SPLIT_AT + 1000 * i, i as u8)).unwrap())
        .collect();
    let pid = entered.pid;
    let start = read_so_far();
    entered.release();
    // An eighth of the reply has come (the other replies are far less): its tail is on its way.
    while read_so_far() < start + (LEN / 8) as u64 {
        std::thread::yield_now();
    }
    // SAFETY: kill(2) with a pid and a signal number; no memory is passed. The worker is our
    // child and is not reaped before its death is seen, so the pid is still its.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    match dying.into_result() {
        Err(TaskError::Protocol {
            violation:
                ProtocolViolation::CutShort {
                    have,
                    total: Some(total),
                },
            pid: died,
            ..
        }) => {
            assert_eq!(died, pid);
            // Length field, header, the byte string's 5-byte length prefix, and the bytes.
            assert_eq!(total, 4 + 13 + 5 + LEN);
            // The head and part of the tail, not all of it.
            assert!(have > 4 + 13 + 5 && have < total, "{have} of {total} bytes");
        }
        Err(other) => panic!("expected a reply cut short, got {other}"),
        Ok(value) => panic!("expected a reply cut short, got {} bytes", value.len()),
    }
    for (i, future) in others.into_iter().enumerate() {
        let got = future.into_result().unwrap();
        assert!(got == pattern(SPLIT_AT + 1000 * i, i as u8), "task {i}");
    }
    // The pool goes on, with a worker in place of the dead one.
    let data = pattern(3 << 20, 1);
    let back = pool
        .submit(bumped, data.clone())
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(back.len(), data.len());
    assert_ne!(*pool.submit(pid_of, ()).unwrap().result().unwrap(), pid);
}
