//! Where done-callbacks run, and where their panics go.
//!
//! A future completed by a thread that must not run user code (a process pool's I/O thread)
//! carries a [`Completions`] handle: its done-callbacks, and the drop of a value that nobody
//! holds any more, run on that pool's completion thread (`cf-pool-done`), in completion order.
//! Other futures run their callbacks on the thread that completes them, as Python does.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::RwLock;
use std::sync::mpsc::{self, Sender};
use std::thread::{self, ThreadId};

use crate::sync::relock;

type Handler = Box<dyn Fn(&str) + Send + Sync>;

static HANDLER: RwLock<Option<Handler>> = RwLock::new(None);

/// Sets what happens when a done-callback panics: `handler` gets the panic message.
///
/// The default prints `cf: a done-callback panicked: <message>` to stderr. A callback's panic never
/// reaches the pool or the thread that completed the future either way. The handler also gets
/// the panic of a task's value whose `Drop` panicked on a process pool's completion thread (the
/// value of a future that nobody held any more).
pub fn set_callback_panic_handler(handler: impl Fn(&str) + Send + Sync + 'static) {
    *relock(HANDLER.write()) = Some(Box::new(handler));
}

pub(crate) fn report_panic(message: &str) {
    let handler = relock(HANDLER.read());
    let report = catch_unwind(AssertUnwindSafe(|| match &*handler {
        Some(handler) => handler(message),
        None => eprintln!("cf: a done-callback panicked: {message}"),
    }));
    drop(report);
}

/// Runs `f`; a panic goes to the handler, and never further.
pub(crate) fn run_guarded(f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        let message = cf_worker::panic_message(&*payload);
        let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
        report_panic(&message);
    }
}

/// Work for a completion thread.
pub(crate) type Work = Box<dyn FnOnce() + Send>;

/// A handle to a pool's completion thread: cheap to clone (each completer holds one).
#[derive(Clone)]
pub(crate) struct Completions {
    tx: Sender<Work>,
    thread: ThreadId,
}

impl Completions {
    /// Starts a completion thread named `name`; it ends by itself once every handle is gone
    /// and it has run what they sent. Start it from the thread that builds the pool, so that
    /// it inherits that thread's output capture (libtest's).
    pub(crate) fn start(name: &str) -> std::io::Result<Completions> {
        let (tx, rx) = mpsc::channel::<Work>();
        let handle = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for work in rx {
                    run_guarded(work);
                }
            })?;
        Ok(Completions {
            tx,
            thread: handle.thread().id(),
        })
    }

    /// Runs `work` on the completion thread (here if that thread is gone).
    pub(crate) fn run(&self, work: Work) {
        if let Err(mpsc::SendError(work)) = self.tx.send(work) {
            run_guarded(work);
        }
    }

    /// Waits until the completion thread has run everything sent to it so far. From the
    /// completion thread itself (a callback that shuts its pool down) it does not wait.
    pub(crate) fn flush(&self) {
        if thread::current().id() == self.thread {
            return;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.run(Box::new(move || {
            let _ = tx.send(());
        }));
        let _ = rx.recv();
    }
}
