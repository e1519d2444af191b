use cf_worker::frame;

use super::*;

/// Writes everything `out` holds into a byte vector, at most `chunk` bytes at a time, as a
/// driver would into a pipe that takes `chunk` bytes per write.
fn drain<'a>(
    out: &mut Outbox,
    chunk: usize,
    args: impl Fn(u64) -> Option<&'a [u8]> + Copy,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some(front) = out.front(args) {
        let n = front.len().min(chunk);
        bytes.extend_from_slice(&front[..n]);
        out.advance(n);
    }
    bytes
}

#[test]
fn small_frames_share_one_buffer_and_large_args_stay_with_their_job() {
    let big = vec![7u8; IN_PLACE + 5];
    let mut out = Outbox::default();
    out.push_call(1, 10, 0, b"abc");
    out.push_call(1, 11, 0, &big);
    out.push_call(1, 12, 0, b"");
    assert_eq!(out.segments.len(), 3);
    let bytes = drain(&mut out, 4096, |id| (id == 11).then_some(&big[..]));
    assert!(out.is_empty());
    let mut rest = &bytes[..];
    let mut seen = Vec::new();
    while let Some((f, used)) = frame::parse(rest, u32::MAX).unwrap() {
        seen.push((f.id, f.payload.len()));
        rest = &rest[used..];
    }
    assert_eq!(seen, [(10, 3), (11, IN_PLACE + 5), (12, 0)]);
}

#[test]
fn partial_writes_resume_where_they_stopped() {
    let mut out = Outbox::default();
    out.push_call(1, 1, 2, b"hello");
    let whole = drain(&mut Outbox::default(), 1, |_| None);
    assert!(whole.is_empty());
    let bytes = drain(&mut out, 3, |_| None);
    let (f, used) = frame::parse(&bytes, u32::MAX).unwrap().unwrap();
    assert_eq!(
        (f.id, f.aux, f.payload, used),
        (1, 2, &b"hello"[..], bytes.len())
    );
}

#[test]
fn the_read_buffer_grows_to_a_frame_and_shrinks_after_it() {
    let mut frame_bytes = Vec::new();
    frame::push(&mut frame_bytes, 0x81, 1, 0, &vec![1u8; 300_000]);
    let mut input = InBuf::default();
    let mut written = 0;
    while written < frame_bytes.len() {
        let end = frame_bytes.len().min(written + 65_536);
        let n = input.space(u32::MAX).fill_from(&frame_bytes[written..end]);
        input.filled(n);
        written += n;
    }
    let (f, used) = frame::parse(input.data(), u32::MAX).unwrap().unwrap();
    assert_eq!(f.payload.len(), 300_000);
    input.consume(used);
    assert!(input.is_empty());
    assert_eq!(input.buf.len(), 0, "memory given back after a large frame");
}

/// A split reply frame (its head, then `tail`) for job `id`.
fn split_frame(out: &mut Vec<u8>, id: u64, tail: &[u8]) {
    let start = frame::begin(out, id, 0);
    cf_worker::bytes_prefix(tail.len(), out);
    frame::finish_split(out, start, 0x81, tail.len());
    out.extend_from_slice(tail);
}

/// Feeds `bytes` to `input` at most `chunk` bytes per read; returns how many reads went to a
/// split frame's tail.
fn feed(input: &mut InBuf, bytes: &[u8], chunk: usize) -> usize {
    let (mut written, mut into_tail) = (0, 0);
    while written < bytes.len() {
        let end = bytes.len().min(written + chunk);
        let room = input.space(u32::MAX);
        into_tail += usize::from(matches!(room, Room::Spare(..)));
        let n = room.fill_from(&bytes[written..end]);
        input.filled(n);
        written += n;
    }
    into_tail
}

#[test]
fn a_split_tail_is_read_into_its_own_buffer_between_the_frames_around_it() {
    let tail: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let mut bytes = Vec::new();
    frame::push(&mut bytes, 0x81, 1, 0, b"before");
    split_frame(&mut bytes, 2, &tail);
    frame::push(&mut bytes, 0x81, 3, 0, b"after");
    let mut input = InBuf::default();
    assert!(feed(&mut input, &bytes, 4096) > 0, "the tail went apart");
    let (f, used) = frame::parse(input.data(), u32::MAX).unwrap().unwrap();
    assert_eq!((f.id, f.payload), (1, &b"before"[..]));
    assert!(
        input.take_split(used + 1).is_none(),
        "not where the split frame is"
    );
    let (split, head) = input.take_split(used).unwrap();
    assert_eq!(
        (split.kind, split.id, head),
        (0x81 | frame::SPLIT, 2, 4 + 13 + 5)
    );
    assert!(split.tail == tail);
    assert_eq!(
        split.tail.capacity(),
        tail.len(),
        "read into a buffer of its size"
    );
    let rest = &input.data()[used + head..];
    let (f, after) = frame::parse(rest, u32::MAX).unwrap().unwrap();
    assert_eq!((f.id, f.payload), (3, &b"after"[..]));
    input.consume(used + head + after);
    assert!(input.is_empty());
}

#[test]
fn a_split_frame_read_whole_at_once_or_over_the_limit_is_read_as_any_frame() {
    let tail = vec![6u8; 1000];
    let mut bytes = Vec::new();
    split_frame(&mut bytes, 2, &tail);
    let mut input = InBuf::default();
    assert_eq!(feed(&mut input, &bytes, bytes.len()), 0);
    let (f, used) = frame::parse(input.data(), u32::MAX).unwrap().unwrap();
    assert_eq!((f.kind, used), (0x81 | frame::SPLIT, bytes.len()));
    assert!(cf_worker::decode::<Vec<u8>>(f.payload).unwrap() == tail);

    let mut input = InBuf::default();
    input.space(500).fill_from(&bytes[..100]);
    input.filled(100);
    assert!(
        matches!(input.space(500), Room::Slice(_)),
        "over the limit: not split"
    );
    assert!(frame::parse(input.data(), 500).is_err());
}

#[test]
fn a_tail_cut_short_counts_what_came() {
    let mut bytes = Vec::new();
    split_frame(&mut bytes, 2, &vec![1u8; 200_000]);
    let mut input = InBuf::default();
    feed(&mut input, &bytes[..150_000], 4096);
    assert!(!input.is_empty());
    assert_eq!(input.held(), (150_000, Some(bytes.len())));
    input.clear();
    assert!(input.is_empty());
}
