//! A plain `Vec<u8>` argument and result cross the process boundary as one byte string (the
//! codec's fast path), with their exact contents, next to values that take serde's general path.
#![allow(missing_docs, reason = "tasks are test fixtures")]

use cf::{ProcessPoolExecutor, task};

/// A recognisable buffer of `len` bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Returns its argument reversed: every byte must arrive, in place.
#[task]
fn reversed(mut data: Vec<u8>) -> Vec<u8> {
    data.reverse();
    data
}

/// Makes a `Vec<u8>` of `len` bytes in the worker.
#[task]
fn make(len: usize, seed: u8) -> Vec<u8> {
    pattern(len, seed)
}

/// A `Vec<u8>` inside a tuple (serde's sequence path) next to one on its own.
#[task]
fn both(data: Vec<u8>) -> (Vec<u8>, usize) {
    let len = data.len();
    (data, len)
}

/// A `Vec<u8>` as the task's error.
#[task]
fn refuse(data: Vec<u8>) -> Result<(), Vec<u8>> {
    Err(data)
}

const LENGTHS: [usize; 6] = [0, 1, 251, 65_537, 1 << 20, (3 << 20) + 7];

#[test]
fn a_vec_of_bytes_round_trips_exactly() {
    let pool = ProcessPoolExecutor::with_max_workers(2).unwrap();
    for len in LENGTHS {
        let data = pattern(len, 0x5a);
        let mut expected = data.clone();
        expected.reverse();
        let back = pool.submit(reversed, data).unwrap().into_result().unwrap();
        assert_eq!(back, expected, "length {len}");
        let made = pool.submit(make, (len, 3)).unwrap().into_result().unwrap();
        assert_eq!(made, pattern(len, 3), "length {len}");
    }
}

#[test]
fn a_vec_of_bytes_in_a_tuple_an_error_and_a_map_chunk() {
    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    let data = pattern(70_000, 9);
    let (back, len) = pool
        .submit(both, data.clone())
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!((back, len), (data.clone(), 70_000));
    let error = pool
        .submit(refuse, data.clone())
        .unwrap()
        .into_result()
        .unwrap_err();
    match error {
        cf::TaskError::Failed(bytes) => assert_eq!(bytes, data),
        other => panic!("expected the task's own error, got {other:?}"),
    }
    let inputs: Vec<Vec<u8>> = LENGTHS
        .iter()
        .map(|&len| pattern(len.min(70_000), 1))
        .collect();
    let outputs: Vec<Vec<u8>> = pool
        .map(reversed, inputs.clone())
        .chunksize(4)
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<Vec<u8>> = inputs
        .into_iter()
        .map(|mut v| {
            v.reverse();
            v
        })
        .collect();
    assert_eq!(outputs, expected);
}
