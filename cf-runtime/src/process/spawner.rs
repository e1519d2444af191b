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

use super::dispatch::Sig;
use super::link::{Launch, Link, Started};
use super::local::LocalLink;
use super::shared::Shared;

/// The local [`Launch`]: worker processes started on this machine by the spawner thread.
pub(crate) struct Spawner {
    requests: Option<Sender<bool>>,
    results: Receiver<(bool, io::Result<LocalLink>)>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    /// Starts the spawner thread; each started worker wakes the I/O thread through `shared`.
    pub(crate) fn new(
        exe: PathBuf,
        memory_limit: Option<u64>,
        shared: Arc<Shared>,
    ) -> io::Result<Self> {
        let log_level = shared.output.log_level;
        let (requests, incoming) = mpsc::channel::<bool>();
        let (done, results) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cf-pool-spawn".to_owned())
            .spawn(move || {
                for spare in incoming {
                    let started = LocalLink::spawn(&exe, memory_limit, log_level);
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
        })
    }
}

fn boxed((spare, started): (bool, io::Result<LocalLink>)) -> Started {
    (spare, started.map(|link| Box::new(link) as Box<dyn Link>))
}

impl Launch for Spawner {
    fn request(&mut self, spare: bool) -> bool {
        self.requests
            .as_ref()
            .is_some_and(|requests| requests.send(spare).is_ok())
    }

    fn try_next(&mut self) -> Option<Started> {
        self.results.try_recv().ok().map(boxed)
    }

    fn next(&mut self) -> Option<Started> {
        self.results.recv().ok().map(boxed)
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
            if let Ok(mut link) = started {
                link.close_requests();
                link.signal(Sig::Kill);
                let _ = link.reap();
            }
        }
    }
}
