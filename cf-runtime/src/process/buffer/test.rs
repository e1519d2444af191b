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
        let space = input.space();
        let n = space.len().min(frame_bytes.len() - written).min(65_536);
        space[..n].copy_from_slice(&frame_bytes[written..written + n]);
        input.filled(n);
        written += n;
    }
    let (f, used) = frame::parse(input.data(), u32::MAX).unwrap().unwrap();
    assert_eq!(f.payload.len(), 300_000);
    input.consume(used);
    assert!(input.is_empty());
    assert_eq!(input.buf.len(), 0, "memory given back after a large frame");
}
