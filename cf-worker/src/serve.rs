//! The serve loop: what a worker process does from start-up to exit.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::OwnedFd;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::frame::{self, PROTOCOL_VERSION, ReplyKind, RequestKind};
use crate::{codec, panic, table};

/// Exit code of a worker that received a frame it cannot understand.
pub(crate) const EXIT_PROTOCOL: i32 = 70;

/// Serves calls read from `input`, writing replies to `output`, until `input` ends.
pub(crate) fn serve(input: OwnedFd, output: OwnedFd) -> io::Result<()> {
    let mut input = BufReader::with_capacity(1 << 16, File::from(input));
    let mut output = File::from(output);
    static CURRENT: AtomicU64 = AtomicU64::new(0);
    if cfg!(panic = "abort") {
        let last_words = output.try_clone()?;
        panic::on_abort(move |info| {
            let mut frame = Vec::new();
            let start = frame::begin(&mut frame, CURRENT.load(Ordering::Relaxed), 0);
            if codec::encode_into(info, &mut frame).is_ok() {
                frame::finish(&mut frame, start, ReplyKind::Aborting as u8);
                let _ = (&last_words).write_all(&frame);
            }
        });
    }
    let table = table();
    let mut out = Vec::with_capacity(1 << 12);

    let start = frame::begin(&mut out, u64::from(std::process::id()), PROTOCOL_VERSION);
    out.extend_from_slice(&table.fingerprint().to_le_bytes());
    out.extend_from_slice(&u32::try_from(table.len()).unwrap_or(u32::MAX).to_le_bytes());
    frame::finish(&mut out, start, ReplyKind::Hello as u8);
    output.write_all(&out)?;

    let mut body = Vec::new();
    loop {
        let mut len = [0; 4];
        match input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len < frame::HEADER_LEN {
            std::process::exit(EXIT_PROTOCOL);
        }
        body.resize(len, 0);
        input.read_exact(&mut body)?;
        let id = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
        let index = u32::from_le_bytes(body[9..13].try_into().expect("4 bytes"));
        if body[0] != RequestKind::Call as u8 {
            std::process::exit(EXIT_PROTOCOL);
        }
        out.clear();
        CURRENT.store(id, Ordering::Relaxed);
        let start = frame::begin(&mut out, id, index);
        let kind = match table.get(index) {
            Some(entry) => entry.invoke(&body[frame::HEADER_LEN..], &mut out),
            None => {
                let msg = format!("this worker has no task at index {index}");
                out.extend_from_slice(msg.as_bytes());
                ReplyKind::UnknownTask
            }
        };
        frame::finish(&mut out, start, kind as u8);
        output.write_all(&out)?;
    }
}
