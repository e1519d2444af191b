use std::io::{Read, Write};
use std::sync::atomic::Ordering::SeqCst;

use super::*;

/// A ring, its writer, and the doorbell's read end.
fn ring() -> (Reader, Writer, std::io::PipeReader) {
    let (reader, fd) = Reader::create().expect("create a ring");
    let (bell_rx, bell_tx) = std::io::pipe().expect("a pipe");
    let writer = Writer::open(&fd, File::from(OwnedFd::from(bell_tx))).expect("open the ring");
    (reader, writer, bell_rx)
}

/// The bytes `[start, start + len)` of a pattern with no period that divides the ring.
fn pattern(start: usize, len: usize) -> Vec<u8> {
    (start..start + len).map(|i| (i % 251) as u8).collect()
}

/// Whether a ring waits in the doorbell pipe.
fn rings(bell: &std::io::PipeReader) -> usize {
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(bell),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO)
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

#[test]
fn bytes_come_out_in_order_across_many_wraps() {
    let (mut reader, mut writer, _bell) = ring();
    let total = 9 * DATA_LEN + 12_345;
    let sent = std::thread::spawn(move || {
        let mut at = 0;
        let mut size = 1;
        while at < total {
            let n = size.min(total - at);
            writer.write_all(&pattern(at, n)).expect("write");
            at += n;
            size = size * 7 % 300_007 + 1;
        }
    });
    let mut got = Vec::with_capacity(total);
    let mut buf = vec![0; 70_001];
    while got.len() < total {
        let n = reader.read(&mut buf).expect("read");
        got.extend_from_slice(&buf[..n]);
        if n == 0 {
            std::thread::yield_now();
        }
    }
    sent.join().expect("the writer");
    assert!(got == pattern(0, total), "the bytes changed on the way");
    assert_eq!(reader.read(&mut buf).expect("read"), 0, "nothing more");
}

#[test]
fn a_full_ring_makes_the_writer_wait_until_the_reader_reads() {
    let (mut reader, mut writer, _bell) = ring();
    let (wrote, done) = std::sync::mpsc::channel();
    let sender = std::thread::spawn(move || {
        writer.write_all(&pattern(0, DATA_LEN + 10)).expect("write");
        wrote.send(()).expect("the test waits");
    });
    // The first DATA_LEN bytes fit; the last 10 wait for room.
    let mut buf = vec![0; DATA_LEN + 10];
    let mut got = 0;
    while got < DATA_LEN {
        got += reader.read(&mut buf[got..]).expect("read");
    }
    while got < DATA_LEN + 10 {
        got += reader.read(&mut buf[got..]).expect("read");
    }
    done.recv().expect("the writer finished");
    sender.join().expect("the writer");
    assert!(buf == pattern(0, DATA_LEN + 10));
}

#[test]
fn the_doorbell_rings_once_and_only_for_a_sleeping_reader() {
    let (mut reader, mut writer, mut bell) = ring();
    writer.write_all(b"awake").expect("write");
    assert_eq!(rings(&bell), 0, "no doorbell while the reader is awake");
    let mut buf = [0; 16];
    assert_eq!(reader.read(&mut buf).expect("read"), 5);
    assert!(reader.sleep(), "nothing waits: the reader may sleep");
    writer.write_all(b"one").expect("write");
    writer.write_all(b"two").expect("write");
    let mut byte = [0; 8];
    assert_eq!(bell.read(&mut byte).expect("the doorbell"), 1, "one ring");
    assert_eq!(rings(&bell), 0, "and only one");
    reader.awake();
    assert!(!reader.sleep(), "bytes wait: the reader must not sleep");
    assert_eq!(reader.read(&mut buf).expect("read"), 6);
    assert_eq!(&buf[..6], b"onetwo");
}

#[test]
fn positions_out_of_range_are_errors_on_both_sides() {
    let (mut reader, mut writer, _bell) = ring();
    reader.shm.word(HEAD).store(DATA_POS + 1, SeqCst);
    assert!(
        reader.has_data(),
        "a corrupt ring is reported, not waited on"
    );
    let e = reader.read(&mut [0; 8]).expect_err("a head past the ring");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    writer.shm.word(TAIL).store(7, SeqCst);
    let e = writer.write(b"x").expect_err("a tail ahead of the head");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn only_a_sealed_region_of_the_ring_size_is_mapped() {
    let (bell_rx, bell_tx) = std::io::pipe().expect("a pipe");
    drop(bell_rx);
    let (_small, small) = Shm::create(LEN / 2).expect("a region");
    assert!(Writer::open(&small, File::from(OwnedFd::from(bell_tx))).is_err());
    let path = std::env::temp_dir().join(format!("cf-ring-test-{}", std::process::id()));
    let file = File::create(&path).expect("a file");
    file.set_len(LEN as u64).expect("its size");
    let _ = std::fs::remove_file(&path);
    assert!(
        Shm::open(&OwnedFd::from(file), LEN).is_err(),
        "a file is not sealed"
    );
}

#[test]
fn a_spare_read_appends_within_the_capacity_and_the_limit() {
    let (mut reader, mut writer, _bell) = ring();
    writer.write_all(&pattern(0, 5000)).expect("write");
    let mut buf = Vec::with_capacity(3000);
    buf.extend_from_slice(b"kept");
    assert_eq!(reader.read_spare(&mut buf, 1000).expect("read"), 1000);
    assert_eq!(
        reader.read_spare(&mut buf, 10_000).expect("read"),
        3000 - 1004
    );
    assert_eq!(
        reader.read_spare(&mut buf, 10_000).expect("read"),
        0,
        "no room left"
    );
    assert_eq!(&buf[..4], b"kept");
    assert!(buf[4..] == pattern(0, 2996));
    let mut rest = vec![0; 5000];
    assert_eq!(reader.read(&mut rest).expect("read"), 5000 - 2996);
    assert!(rest[..2004] == pattern(2996, 2004));
}

#[test]
fn a_task_end_needs_a_marker_only_after_text_however_the_parent_reads() {
    let (reader, writer, _bell) = ring();
    let mut marks = writer.marks();
    let (mut err_rx, err_tx) = std::io::pipe().expect("a pipe");
    let mut stderr = File::from(OwnedFd::from(err_tx));
    let mut buf = [0; 64];
    assert!(!marks.needed(&stderr), "no text yet");
    stderr.write_all(b"text").expect("write");
    assert!(marks.needed(&stderr), "text waits in the pipe");
    stderr.write_all(b"MARK").expect("write");
    marks.marked(4);
    // The marker waits unread: it is not text, and calls for no more markers.
    assert!(!marks.needed(&stderr), "only a marker since");
    assert!(!marks.needed(&stderr), "still only a marker");
    // The parent reads all of it: the count holds.
    reader.stderr_reading();
    assert!(marks.needed(&stderr), "a read is under way: cannot tell");
    assert_eq!(err_rx.read(&mut buf).expect("read"), 8);
    reader.stderr_read(8);
    assert!(!marks.needed(&stderr), "read, and no text since");
    // Text the parent has read already still counts.
    stderr.write_all(b"more").expect("write");
    reader.stderr_reading();
    assert_eq!(err_rx.read(&mut buf).expect("read"), 4);
    reader.stderr_read(4);
    assert!(marks.needed(&stderr), "text came, though the pipe is empty");
    stderr.write_all(b"MARK").expect("write");
    marks.marked(4);
    assert!(!marks.needed(&stderr), "closed");
    // A read that overlapped a look leaves the older count: one marker more, never one less.
    stderr.write_all(b"late").expect("write");
    reader.stderr_reading();
    assert!(marks.needed(&stderr), "cannot tell");
    stderr.write_all(b"MARK").expect("write");
    marks.marked(4);
    assert_eq!(err_rx.read(&mut buf).expect("read"), 12);
    reader.stderr_read(12);
    assert!(
        marks.needed(&stderr),
        "the count is older than the marker: one more"
    );
    stderr.write_all(b"MARK").expect("write");
    marks.marked(4);
    assert!(!marks.needed(&stderr), "caught up");
    reader.mark_all();
    assert!(
        marks.needed(&stderr),
        "every end is marked once the parent stops watching"
    );
}
