use std::io::Read;
use std::os::fd::OwnedFd;

use cf_worker::frame;

use super::*;

fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = crate::sys::pipe().unwrap();
    crate::sys::set_nonblocking(&r).unwrap();
    crate::sys::set_nonblocking(&w).unwrap();
    crate::sys::grow_pipe(&w, 1 << 20);
    (r, w)
}

#[test]
fn small_frames_share_one_buffer_and_large_args_stay_with_their_job() {
    let (r, w) = pipe();
    let big = vec![7u8; IN_PLACE + 5];
    let mut out = Outbox::default();
    out.push_call(1, 10, 0, b"abc");
    out.push_call(1, 11, 0, &big);
    out.push_call(1, 12, 0, b"");
    assert_eq!(out.segments.len(), 3);
    out.write(&w, |id| (id == 11).then_some(&big[..]));
    assert!(out.is_empty());
    drop(w);
    let mut bytes = Vec::new();
    std::fs::File::from(r).read_to_end(&mut bytes).unwrap();
    let mut rest = &bytes[..];
    let mut seen = Vec::new();
    while let Some((f, used)) = frame::parse(rest, u32::MAX).unwrap() {
        seen.push((f.id, f.payload.len()));
        rest = &rest[used..];
    }
    assert_eq!(seen, [(10, 3), (11, IN_PLACE + 5), (12, 0)]);
}

#[test]
fn the_read_buffer_grows_to_a_frame_and_shrinks_after_it() {
    let (r, w) = pipe();
    let mut frame_bytes = Vec::new();
    frame::push(&mut frame_bytes, 0x81, 1, 0, &vec![1u8; 300_000]);
    let mut input = InBuf::default();
    let mut written = 0;
    while written < frame_bytes.len() {
        written += nix::unistd::write(&w, &frame_bytes[written..]).unwrap_or(0);
        assert!(input.fill(&r));
    }
    let (f, used) = frame::parse(input.data(), u32::MAX).unwrap().unwrap();
    assert_eq!(f.payload.len(), 300_000);
    input.consume(used);
    assert!(input.is_empty());
    assert_eq!(input.buf.len(), 0, "memory given back after a large frame");
    drop(w);
    assert!(!input.fill(&r));
}
