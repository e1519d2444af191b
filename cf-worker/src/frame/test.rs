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
