//! The one [`Gate`] of the integration tests, shared by `util` and `crash_util` (which includes
//! this file by path): a meeting point between a test and the tasks it submits, in any process.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for a task to reach the gate before it calls it a hang.
const ARRIVAL: Duration = Duration::from_secs(60);

/// A task that calls [`pass_gate`] connects, says its id and its worker's pid, and blocks until
/// the test lets it go through the [`Entered`] it got from [`Gate::entered`].
///
/// Declare a gate after the pool it is used with: on a failing test, the gate (and every
/// `Entered`) is dropped first, which lets the tasks finish, so dropping the pool cannot hang.
pub(crate) struct Gate {
    listener: UnixListener,
    path: PathBuf,
}

/// A task that reached a [`Gate`] and waits there; dropping it (or [`release`](Self::release))
/// lets it go on.
pub(crate) struct Entered {
    stream: UnixStream,
    /// The id the task gave.
    pub(crate) id: u64,
    /// The pid of the process that runs the task.
    pub(crate) pid: u32,
}

impl Gate {
    pub(crate) fn new() -> Gate {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("cf-gate-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind the gate's socket");
        listener
            .set_nonblocking(true)
            .expect("make the gate non-blocking");
        Gate { listener, path }
    }

    /// The address to hand to tasks.
    pub(crate) fn path(&self) -> String {
        self.path.to_str().expect("a UTF-8 temp dir").to_owned()
    }

    /// Waits for the next task to arrive; panics after a minute.
    pub(crate) fn entered(&self) -> Entered {
        self.entered_within(ARRIVAL)
            .unwrap_or_else(|| panic!("no task reached the gate within {ARRIVAL:?}"))
    }

    /// Waits for the next `n` tasks to arrive, and returns them sorted by id.
    pub(crate) fn entered_n(&self, n: usize) -> Vec<Entered> {
        let mut all: Vec<Entered> = (0..n).map(|_| self.entered()).collect();
        all.sort_by_key(|e| e.id);
        all
    }

    /// The next task to arrive within `within`, if one does.
    pub(crate) fn entered_within(&self, within: Duration) -> Option<Entered> {
        let deadline = Instant::now() + within;
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    stream
                        .set_nonblocking(false)
                        .expect("make the connection blocking");
                    let mut hello = [0; 12];
                    stream
                        .read_exact(&mut hello)
                        .expect("read the task's id and pid");
                    let (id, pid) = hello.split_at(8);
                    return Some(Entered {
                        stream,
                        id: u64::from_le_bytes(id.try_into().expect("8 bytes")),
                        pid: u32::from_le_bytes(pid.try_into().expect("4 bytes")),
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    // Another process's connect is awaited here: nothing of this process's
                    // own is ordered by this pause.
                    thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept on the gate failed: {e}"),
            }
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Entered {
    /// Lets the task go on.
    pub(crate) fn release(mut self) {
        let _ = self.stream.write_all(&[1]);
    }
}

/// The task's side of a [`Gate`]: meets the gate at `path` as `id`, says this process's pid, and
/// returns when the test lets it go (or drops its end).
pub(crate) fn pass_gate(path: &str, id: u64) {
    let mut stream = UnixStream::connect(path).expect("connect to the gate");
    let mut hello = [0; 12];
    hello[..8].copy_from_slice(&id.to_le_bytes());
    hello[8..].copy_from_slice(&std::process::id().to_le_bytes());
    stream.write_all(&hello).expect("say the id and pid");
    let mut byte = [0; 1];
    let _ = stream.read(&mut byte);
}
