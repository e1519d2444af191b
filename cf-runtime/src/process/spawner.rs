//! The pool's spawner thread: starts worker processes so that the I/O thread never waits for a
//! `fork` + `exec`.
//!
//! It is also the thread whose exit `PR_SET_PDEATHSIG` watches, so it lives as long as the I/O
//! thread: it ends when the dispatcher drops its end of the request channel.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use super::Shared;
use super::worker::Worker;

/// A started worker (or why it could not start), and whether it was asked for as the spare.
pub(crate) type Started = (bool, io::Result<Worker>);

pub(crate) struct Spawner {
    requests: Option<Sender<bool>>,
    results: Receiver<Started>,
    thread: Option<JoinHandle<()>>,
    /// Workers asked for and not collected yet, and how many of them are spares.
    pub(crate) pending: usize,
    pub(crate) pending_spares: usize,
}

impl Spawner {
    /// Starts the spawner thread; each started worker wakes the I/O thread through `shared`.
    pub(crate) fn new(
        exe: PathBuf,
        memory_limit: Option<u64>,
        shared: Arc<Shared>,
    ) -> io::Result<Self> {
        let (requests, incoming) = mpsc::channel::<bool>();
        let (done, results) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cf-pool-spawn".to_owned())
            .spawn(move || {
                for spare in incoming {
                    let started = Worker::spawn(&exe, memory_limit, spare);
                    if done.send((spare, started)).is_err() {
                        return;
                    }
                    shared.poke();
                }
            })?;
        Ok(Spawner {
            requests: Some(requests),
            results,
            thread: Some(thread),
            pending: 0,
            pending_spares: 0,
        })
    }

    /// Asks for a worker.
    pub(crate) fn request(&mut self, spare: bool) {
        if let Some(requests) = &self.requests
            && requests.send(spare).is_ok()
        {
            self.pending += 1;
            self.pending_spares += usize::from(spare);
        }
    }

    fn taken(&mut self, started: &Started) {
        self.pending -= 1;
        self.pending_spares -= usize::from(started.0);
    }

    /// The next worker started, without waiting. Each is counted out of `pending` as it is
    /// taken, so that deciding about one still counts those behind it as pending.
    pub(crate) fn try_next(&mut self) -> Option<Started> {
        let started = self.results.try_recv().ok()?;
        self.taken(&started);
        Some(started)
    }

    /// Waits for the next worker to start.
    pub(crate) fn next(&mut self) -> Option<Started> {
        let started = self.results.recv().ok()?;
        self.taken(&started);
        Some(started)
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        // No more requests: the thread finishes the spawn in hand and ends. Workers it started
        // that nobody collected are ended and reaped here, leaving no zombie.
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for (_, started) in self.results.try_iter() {
            if let Ok(mut worker) = started {
                worker.req = None;
                worker.signal(9);
                let _ = worker.reap();
            }
        }
    }
}
