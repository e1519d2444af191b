//! The serve loop on arbitrary input: a property test that stands in for a fuzzer (cargo fuzz
//! needs a nightly toolchain these machines do not have). Whatever bytes arrive, the worker
//! answers only well-formed calls, in order, never panics and never allocates more than arrives.
//!
//! `CF_FUZZ_CASES=1000000 cargo test -p cf-worker --release fuzz` runs a long pass.

use proptest::prelude::*;

use super::*;
use crate::{Never, TASKS, Task, TaskEntry, frame::Frame};

#[derive(Clone, Copy)]
struct Echo;

#[linkme::distributed_slice(TASKS)]
#[allow(unsafe_code, reason = "linkme places the entry with link_section")]
static ECHO: TaskEntry = TaskEntry::new::<Echo>();

impl Task for Echo {
    type Args = (u64, String);
    type Output = (u64, String);
    type Error = Never;
    const NAME: &'static str = "serve::test::echo";
    fn call(args: Self::Args) -> Result<Self::Output, Never> {
        Ok(args)
    }
    fn entry() -> &'static TaskEntry {
        &ECHO
    }
}

#[derive(Clone, Copy)]
struct Picky;

#[linkme::distributed_slice(TASKS)]
#[allow(unsafe_code, reason = "linkme places the entry with link_section")]
static PICKY: TaskEntry = TaskEntry::new::<Picky>();

impl Task for Picky {
    type Args = Vec<u32>;
    type Output = u32;
    type Error = String;
    const NAME: &'static str = "serve::test::picky";
    fn call(args: Vec<u32>) -> Result<u32, String> {
        match args.first() {
            Some(0) => Err("zero first".to_owned()),
            Some(1) => panic!("one first"),
            _ => Ok(args.iter().fold(0u32, |a, b| a.wrapping_add(*b))),
        }
    }
    fn entry() -> &'static TaskEntry {
        &PICKY
    }
}

#[derive(Clone, Copy)]
struct Flip;

#[linkme::distributed_slice(TASKS)]
#[allow(unsafe_code, reason = "linkme places the entry with link_section")]
static FLIP: TaskEntry = TaskEntry::new::<Flip>();

impl Task for Flip {
    type Args = Vec<u8>;
    type Output = Vec<u8>;
    type Error = Never;
    const NAME: &'static str = "serve::test::flip";
    fn call(mut args: Vec<u8>) -> Result<Vec<u8>, Never> {
        args.reverse();
        Ok(args)
    }
    fn entry() -> &'static TaskEntry {
        &FLIP
    }
}

fn cases() -> u32 {
    std::env::var("CF_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

/// Silences the panic messages of the `picky` task (the hook `catch` installs chains this one).
fn quiet() {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&"one first") {
                default(info);
            }
        }));
    });
}

/// One request, well-formed or not.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let payload = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (any::<u64>(), ".{0,8}").prop_map(|args| {
            let mut out = Vec::new();
            codec::encode_into(&args, &mut out).unwrap();
            out
        }),
        proptest::collection::vec(0u32..4, 0..6).prop_map(|args| {
            let mut out = Vec::new();
            codec::encode_into(&args, &mut out).unwrap();
            out
        }),
        // A byte string: what a split call carries.
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| {
            let mut out = Vec::new();
            codec::bytes_prefix(bytes.len(), &mut out);
            out.extend_from_slice(&bytes);
            out
        }),
        proptest::collection::vec(proptest::collection::vec(0u32..4, 0..3), 0..4).prop_map(
            |args| {
                let mut out = Vec::new();
                codec::encode_into(&args, &mut out).unwrap();
                out
            }
        ),
    ];
    let kind = prop_oneof![
        9 => Just(RequestKind::Call as u8),
        3 => Just(RequestKind::CallChunk as u8),
        1 => Just(RequestKind::Revoke as u8),
        2 => Just(RequestKind::Call as u8 | frame::SPLIT),
        1 => any::<u8>(),
    ];
    let task = prop_oneof![8 => 0u32..4, 1 => any::<u32>()];
    (kind, any::<u64>(), task, payload).prop_map(|(kind, id, task, payload)| {
        let mut out = Vec::new();
        frame::push(&mut out, kind, id, task, &payload);
        out
    })
}

/// A stream of requests, sometimes damaged: a byte changed, a cut, garbage at the end.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(request(), 0..6),
        any::<Option<(usize, u8)>>(),
        any::<Option<usize>>(),
        proptest::collection::vec(any::<u8>(), 0..12),
    )
        .prop_map(|(requests, flip, cut, tail)| {
            let mut bytes = requests.concat();
            if let Some((at, byte)) = flip
                && !bytes.is_empty()
            {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            bytes.extend(tail);
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn fuzz_frame_parse(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in any::<u32>()) {
        if let Ok(Some((frame, used))) = frame::parse(&bytes, max) {
            prop_assert!(used <= bytes.len());
            let mut again = Vec::new();
            frame::push(&mut again, frame.kind, frame.id, frame.aux, frame.payload);
            prop_assert_eq!(&again[..], &bytes[..used]);
        }
    }

    #[test]
    fn fuzz_serve(input in stream()) {
        quiet();
        let mut output = Vec::new();
        let result = serve(&input[..], &mut output, || Ok(()));
        // Every reply parses, the first is the handshake, and the others answer calls in order.
        let mut replies = Vec::new();
        let mut rest = &output[..];
        while let Some((reply, used)) = frame::parse(rest, frame::DEFAULT_MAX_FRAME).unwrap() {
            replies.push(Frame { payload: &[], ..reply });
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(replies[0].kind, ReplyKind::Hello as u8);
        let mut calls = Vec::new();
        let mut input = &input[..];
        while let Ok(Some((call, used))) = frame::parse(input, frame::DEFAULT_MAX_FRAME) {
            // A split call is a call whose payload is one byte string, exactly.
            let split = call.kind == RequestKind::Call as u8 | frame::SPLIT;
            let whole = |(len, size): (u64, usize)| size as u64 + len == call.payload.len() as u64;
            if split && !codec::read_prefix(call.payload).is_some_and(whole) {
                break;
            }
            match RequestKind::from_byte(call.kind & !(frame::SPLIT * u8::from(split))) {
                // With no watcher, a revocation always comes too late: it is passed over.
                Some(RequestKind::Revoke) => {}
                Some(RequestKind::Call | RequestKind::CallChunk) => calls.push(call.id),
                None => break,
            }
            input = &input[used..];
        }
        prop_assert_eq!(replies.len() - 1, calls.len());
        // A reply's aux is how long its call ran.
        for (reply, id) in replies[1..].iter().zip(&calls) {
            prop_assert_eq!(reply.id, *id);
            prop_assert!(ReplyKind::from_byte(reply.kind).is_some());
        }
        if result.is_ok() {
            prop_assert!(input.is_empty());
        }
    }
}

#[test]
fn a_call_is_answered_with_the_value() {
    let index = table().index::<Echo>().unwrap();
    let mut args = Vec::new();
    codec::encode_into(&(7u64, "seven"), &mut args).unwrap();
    let mut input = Vec::new();
    frame::push(&mut input, RequestKind::Call as u8, 42, index, &args);
    let mut output = Vec::new();
    serve(&input[..], &mut output, || Ok(())).unwrap();
    let (_, hello) = frame::parse(&output, u32::MAX).unwrap().unwrap();
    let (reply, _) = frame::parse(&output[hello..], u32::MAX).unwrap().unwrap();
    assert_eq!((reply.kind, reply.id), (ReplyKind::Ok as u8, 42));
    assert_eq!(
        codec::decode::<(u64, String)>(reply.payload).unwrap(),
        (7, "seven".to_owned())
    );
}

#[test]
fn a_huge_length_claim_allocates_nothing_before_the_bytes_arrive() {
    let mut input = u32::MAX.to_le_bytes().to_vec();
    input.extend_from_slice(&[1; 20]);
    let error = serve(&input[..], Vec::new(), || Ok(())).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "protocol error: request frame cut short: 20 of {} bytes",
            u32::MAX
        )
    );
}

/// Frames for the inlet tests: calls to `echo` with these ids, and revocations.
fn call(out: &mut Vec<u8>, id: u64) {
    let index = table().index::<Echo>().unwrap();
    let mut args = Vec::new();
    codec::encode_into(&(id, "x"), &mut args).unwrap();
    frame::push(out, RequestKind::Call as u8, id, index, &args);
}

fn revoke(out: &mut Vec<u8>, id: u64) {
    frame::push(out, RequestKind::Revoke as u8, id, 0, &[]);
}

#[test]
fn the_watcher_gives_back_a_call_that_waits_and_the_loop_never_runs_it() {
    let mut stream = Vec::new();
    for id in [1, 2, 3] {
        call(&mut stream, id);
    }
    revoke(&mut stream, 3);
    // A revocation of a call that is not held here (run already, or never sent) changes nothing.
    revoke(&mut stream, 9);
    call(&mut stream, 4);
    let mut inlet = inlet::Inlet::new(&stream[..]);
    let mut body = Vec::new();
    // The loop takes call 1 and runs it; meanwhile the watcher reads the rest.
    let (first, ..) = inlet.next(&mut body).unwrap().unwrap();
    assert_eq!(first.id, 1);
    assert_eq!(inlet.absorb(stream.len()).unwrap(), vec![3]);
    // Read again: nothing is given back twice.
    assert!(inlet.absorb(0).unwrap().is_empty());
    let mut ran = Vec::new();
    while let Some((header, ..)) = inlet.next(&mut body).unwrap() {
        ran.push(header.id);
    }
    assert_eq!(ran, vec![2, 4]);
}

#[test]
fn a_revocation_of_a_call_already_taken_is_too_late() {
    let mut stream = Vec::new();
    call(&mut stream, 1);
    call(&mut stream, 2);
    revoke(&mut stream, 1);
    let mut inlet = inlet::Inlet::new(&stream[..]);
    let mut body = Vec::new();
    assert_eq!(inlet.next(&mut body).unwrap().unwrap().0.id, 1);
    assert!(inlet.absorb(stream.len()).unwrap().is_empty());
    assert_eq!(inlet.next(&mut body).unwrap().unwrap().0.id, 2);
    assert!(inlet.next(&mut body).unwrap().is_none());
}

#[test]
fn a_revocation_that_arrives_in_pieces_is_seen_once_whole() {
    let mut stream = Vec::new();
    call(&mut stream, 1);
    call(&mut stream, 2);
    revoke(&mut stream, 2);
    let cut = stream.len() - 3;
    // The first read ends inside the revocation.
    let mut inlet = inlet::Inlet::new((&stream[..cut]).chain(&stream[cut..]));
    let mut body = Vec::new();
    assert_eq!(inlet.next(&mut body).unwrap().unwrap().0.id, 1);
    assert!(inlet.absorb(0).unwrap().is_empty());
    assert_eq!(inlet.absorb(3).unwrap(), vec![2]);
    assert!(inlet.next(&mut body).unwrap().is_none());
}

#[test]
fn a_large_call_is_read_past_the_buffer_and_served_whole() {
    let index = table().index::<Picky>().unwrap();
    let values: Vec<u32> = (2..100_000).collect();
    let mut args = Vec::new();
    codec::encode_into(&values, &mut args).unwrap();
    let mut input = Vec::new();
    frame::push(&mut input, RequestKind::Call as u8, 5, index, &args);
    call(&mut input, 6);
    let mut output = Vec::new();
    serve(&input[..], &mut output, || Ok(())).unwrap();
    let (_, hello) = frame::parse(&output, u32::MAX).unwrap().unwrap();
    let (reply, used) = frame::parse(&output[hello..], u32::MAX).unwrap().unwrap();
    assert_eq!((reply.kind, reply.id), (ReplyKind::Ok as u8, 5));
    let sum = values.iter().fold(0u32, |a, b| a.wrapping_add(*b));
    assert_eq!(codec::decode::<u32>(reply.payload).unwrap(), sum);
    let (reply, _) = frame::parse(&output[hello + used..], u32::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(reply.id, 6);
}

/// Reproduces (found with a fixed prefetch): a call given back and then sent to the same worker
/// again, while the first frame still waited to be passed over, was not given back a second
/// time (its id was already marked), so it stayed behind the long task.
#[test]
fn a_call_sent_again_after_it_was_given_back_can_be_given_back_again() {
    let mut stream = Vec::new();
    call(&mut stream, 1);
    call(&mut stream, 2);
    revoke(&mut stream, 2);
    call(&mut stream, 2);
    revoke(&mut stream, 2);
    let mut inlet = inlet::Inlet::new(&stream[..]);
    let mut body = Vec::new();
    assert_eq!(inlet.next(&mut body).unwrap().unwrap().0.id, 1);
    assert_eq!(inlet.absorb(stream.len()).unwrap(), vec![2, 2]);
    assert!(
        inlet.next(&mut body).unwrap().is_none(),
        "neither copy runs"
    );
}

/// A split call to `flip` with these bytes (its header and prefix, then the bytes).
fn split_call(out: &mut Vec<u8>, id: u64, bytes: &[u8]) {
    let index = table().index::<Flip>().unwrap();
    let start = frame::begin(out, id, index);
    codec::bytes_prefix(bytes.len(), out);
    frame::finish_split(out, start, RequestKind::Call as u8, bytes.len());
    out.extend_from_slice(bytes);
}

#[test]
fn a_split_call_is_served_and_its_large_result_comes_split() {
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 249) as u8).collect();
    let mut input = Vec::new();
    split_call(&mut input, 3, &bytes);
    call(&mut input, 4);
    let mut output = Vec::new();
    serve(&input[..], &mut output, || Ok(())).unwrap();
    let (_, hello) = frame::parse(&output, u32::MAX).unwrap().unwrap();
    let (reply, used) = frame::parse(&output[hello..], u32::MAX).unwrap().unwrap();
    assert_eq!(
        (reply.kind, reply.id),
        (ReplyKind::Ok as u8 | frame::SPLIT, 3)
    );
    let mut flipped = bytes.clone();
    flipped.reverse();
    assert!(codec::decode::<Vec<u8>>(reply.payload).unwrap() == flipped);
    let (reply, _) = frame::parse(&output[hello + used..], u32::MAX)
        .unwrap()
        .unwrap();
    assert_eq!((reply.kind, reply.id), (ReplyKind::Ok as u8, 4));
}

#[test]
fn a_split_call_takes_its_tail_into_a_buffer_of_its_own() {
    let bytes = vec![9u8; 100_000];
    let mut input = Vec::new();
    split_call(&mut input, 5, &bytes);
    let mut body = Vec::new();
    let (header, kind, tail) = read_request(&mut &input[..], &mut body).unwrap().unwrap();
    assert_eq!((header.id, kind), (5, RequestKind::Call));
    assert_eq!(
        body.len(),
        frame::HEADER_LEN + 5,
        "the header and the 5-byte prefix"
    );
    let tail = tail.unwrap();
    assert!(tail == bytes);
    assert_eq!(tail.capacity(), bytes.len(), "reserved once, to the byte");
}

#[test]
fn a_split_request_that_is_not_as_it_says_is_refused() {
    // The prefix claims one byte more than the frame holds.
    let mut input = Vec::new();
    split_call(&mut input, 1, &[1; 10]);
    input[4 + frame::HEADER_LEN] = 11;
    let error = serve(&input[..], Vec::new(), || Ok(())).unwrap_err();
    assert_eq!(
        error.to_string(),
        "protocol error: split request frame of 24 bytes"
    );
    // Only a call may be split.
    let mut input = Vec::new();
    frame::push(
        &mut input,
        RequestKind::Revoke as u8 | frame::SPLIT,
        1,
        0,
        &[0],
    );
    let error = serve(&input[..], Vec::new(), || Ok(())).unwrap_err();
    assert_eq!(
        error.to_string(),
        "protocol error: unknown request kind 0x43"
    );
    // Cut short in its tail.
    let mut input = Vec::new();
    split_call(&mut input, 1, &[1; 100_000]);
    input.truncate(50_000);
    let error = serve(&input[..], Vec::new(), || Ok(())).unwrap_err();
    assert_eq!(
        error.to_string(),
        "protocol error: request frame cut short: 49996 of 100018 bytes"
    );
}
