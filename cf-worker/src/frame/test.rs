use super::*;

#[test]
fn round_trip() {
    let mut buf = Vec::new();
    push(&mut buf, RequestKind::Call as u8, 7, 3, b"abc");
    push(&mut buf, ReplyKind::Ok as u8, 8, 0, b"");
    let (frame, used) = parse(&buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert_eq!(
        frame,
        Frame {
            kind: 1,
            id: 7,
            aux: 3,
            payload: b"abc"
        }
    );
    let (frame, rest) = parse(&buf[used..], DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert_eq!(frame.id, 8);
    assert_eq!(used + rest, buf.len());
}

#[test]
fn partial_frames_wait_for_more() {
    let mut buf = Vec::new();
    push(&mut buf, 1, 1, 1, b"payload");
    for cut in 0..buf.len() {
        assert_eq!(
            parse(&buf[..cut], DEFAULT_MAX_FRAME).unwrap(),
            None,
            "cut at {cut}"
        );
    }
    assert_eq!(wanted(&buf[..6]), Some(buf.len() - 6));
}

#[test]
fn bad_lengths_are_errors() {
    assert_eq!(parse(&[1, 0, 0, 0, 9], 100), Err(FrameError::TooShort(1)));
    let err = parse(&[200, 0, 0, 0], 100).unwrap_err();
    assert_eq!(
        err.to_string(),
        "frame of 200 bytes is over the limit of 100 bytes"
    );
}

#[test]
fn a_split_frame_counts_its_tail_and_is_marked() {
    let mut buf = Vec::new();
    let start = begin(&mut buf, 9, 2);
    buf.extend_from_slice(b"pre");
    finish_split(&mut buf, start, ReplyKind::Ok as u8, 1000);
    assert_eq!(wanted(&buf), Some(1000), "the tail is still to come");
    buf.extend_from_slice(&[5; 1000]);
    let (frame, used) = parse(&buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert_eq!(used, buf.len());
    assert_eq!(frame.kind, ReplyKind::Ok as u8 | SPLIT);
    assert_eq!(
        (frame.id, frame.aux, &frame.payload[..3]),
        (9, 2, &b"pre"[..])
    );
    assert_eq!(frame.payload.len(), 1003);
    assert_eq!(
        ReplyKind::from_byte(frame.kind),
        None,
        "a kind with the mark is not bare"
    );
}
