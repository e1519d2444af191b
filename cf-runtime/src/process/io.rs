//! The pool's I/O thread: hands jobs to workers, reads their replies, and replaces the dead.
//!
//! One thread, readiness-driven: it sleeps in `poll` over the wake-up pipe, every worker's result
//! pipe and pidfd, and the request pipes it has bytes for. No timers, no polling loops.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use cf_worker::frame::{self, PROTOCOL_VERSION, ReplyKind, RequestKind};
use cf_worker::table;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::job::Job;
use super::worker::Worker;
use super::{Inbox, Shared};
use crate::error::TaskError;

/// Consecutive start-up failures after which the pool calls itself broken.
const MAX_STARTUP_FAILURES: u32 = 3;

pub(crate) struct Config {
    pub(crate) exe: PathBuf,
    pub(crate) max_workers: usize,
    pub(crate) prefetch: usize,
}

struct Dispatcher {
    shared: Arc<Shared>,
    wake: OwnedFd,
    config: Config,
    workers: Vec<Worker>,
    queue: VecDeque<Job>,
    next_id: u64,
    shutdown: bool,
    startup_failures: u32,
    broken: Option<String>,
}

/// The body of the I/O thread. Reports on `started` whether the first workers came up.
pub(crate) fn run(
    shared: Arc<Shared>,
    wake: OwnedFd,
    config: Config,
    started: &Sender<io::Result<()>>,
) {
    let mut d = Dispatcher {
        shared,
        wake,
        config,
        workers: Vec::new(),
        queue: VecDeque::new(),
        next_id: 1,
        shutdown: false,
        startup_failures: 0,
        broken: None,
    };
    for _ in 0..d.config.max_workers {
        match Worker::spawn(&d.config.exe) {
            Ok(worker) => d.workers.push(worker),
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        }
    }
    let _ = started.send(Ok(()));
    d.serve();
}

impl Dispatcher {
    fn serve(&mut self) {
        loop {
            self.intake();
            self.dispatch();
            for worker in &mut self.workers {
                worker.flush();
            }
            if self.shutdown && self.queue.is_empty() && self.workers.iter().all(|w| w.inflight.is_empty()) {
                return;
            }
            self.wait();
        }
    }

    /// Takes what submitters left in the inbox.
    fn intake(&mut self) {
        let mut inbox = self.shared.lock();
        let Inbox { jobs, notified, shutdown, cancel, broken } = &mut *inbox;
        *notified = false;
        self.shutdown = *shutdown;
        if broken.is_none() {
            broken.clone_from(&self.broken);
        }
        let cancel = *cancel;
        let jobs = std::mem::take(jobs);
        drop(inbox);
        self.queue.extend(jobs);
        if cancel {
            for job in self.queue.drain(..) {
                job.sink.cancel();
            }
        }
        if let Some(why) = &self.broken {
            for job in self.queue.drain(..) {
                let task = job.name.to_owned();
                job.sink.fail(TaskError::Pool { task, message: format!("the pool is broken: {why}") });
            }
        }
    }

    /// Gives queued jobs to ready workers, up to `prefetch` each, one round at a time.
    fn dispatch(&mut self) {
        for round in 0..self.config.prefetch {
            for worker in &mut self.workers {
                if !worker.ready || worker.poison.is_some() || worker.inflight.len() > round {
                    continue;
                }
                while let Some(mut job) = self.queue.pop_front() {
                    if !job.sink.set_running() {
                        continue; // cancelled while queued
                    }
                    job.id = self.next_id;
                    self.next_id += 1;
                    let start = frame::begin(&mut worker.out, job.id, job.task);
                    worker.out.extend_from_slice(&job.args);
                    frame::finish(&mut worker.out, start, RequestKind::Call as u8);
                    worker.inflight.push_back(job);
                    break;
                }
            }
        }
    }

    /// Sleeps until something is ready, then handles it.
    fn wait(&mut self) {
        let mut fds = Vec::with_capacity(1 + 3 * self.workers.len());
        fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
        for worker in &self.workers {
            fds.push(PollFd::new(worker.res.as_fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(worker.pidfd.as_fd(), PollFlags::POLLIN));
            let out = if worker.wants_write() { PollFlags::POLLOUT } else { PollFlags::empty() };
            let req = worker.req.as_ref().unwrap_or(&self.wake);
            fds.push(PollFd::new(req.as_fd(), out));
        }
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => panic!("poll failed: {e}"),
        }
        let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        let wake = ready(&fds[0]);
        let events: Vec<(bool, bool, bool)> = fds[1..]
            .chunks(3)
            .map(|c| (ready(&c[0]), ready(&c[1]), ready(&c[2])))
            .collect();
        drop(fds);
        if wake {
            let mut buf = [0; 64];
            while matches!(nix::unistd::read(&self.wake, &mut buf), Ok(n) if n > 0) {}
        }
        let mut dead = Vec::new();
        for (index, (readable, exited, writable)) in events.into_iter().enumerate() {
            if writable {
                self.workers[index].flush();
            }
            if readable || exited {
                let open = self.workers[index].fill();
                self.parse(index);
                if !open && !exited {
                    self.workers[index].kill("the worker closed its result pipe".to_owned());
                }
            }
            if exited {
                dead.push(index);
            }
        }
        for index in dead.into_iter().rev() {
            self.bury(index);
        }
    }

    /// Handles every whole frame a worker sent.
    fn parse(&mut self, index: usize) {
        let worker = &mut self.workers[index];
        let mut used = 0;
        let mut problem = None;
        loop {
            let (frame, len) = match frame::parse(&worker.inbuf[used..], frame::DEFAULT_MAX_FRAME) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(e) => {
                    problem = Some(e.to_string());
                    break;
                }
            };
            used += len;
            if !worker.ready {
                match hello(frame) {
                    Ok(()) => {
                        worker.ready = true;
                        self.startup_failures = 0;
                    }
                    Err(e) => {
                        problem = Some(e);
                        break;
                    }
                }
                continue;
            }
            let Some(kind) = ReplyKind::from_byte(frame.kind).filter(|k| *k != ReplyKind::Hello)
            else {
                problem = Some(format!("unknown reply kind {:#04x}", frame.kind));
                break;
            };
            match worker.inflight.front() {
                Some(job) if job.id == frame.id => {}
                _ => {
                    problem = Some(format!("reply for job {} which it was not running", frame.id));
                    break;
                }
            }
            let job = worker.inflight.pop_front().expect("checked above");
            job.sink.reply(kind, frame.payload, job.name);
        }
        worker.inbuf.drain(..used);
        if let Some(problem) = problem {
            worker.inbuf.clear();
            worker.kill(format!("worker (pid {}) broke the protocol: {problem}", worker.pid));
        }
    }

    /// Reaps an exited worker: fails the job it was running, re-queues the rest, replaces it.
    fn bury(&mut self, index: usize) {
        let mut worker = self.workers.swap_remove(index);
        let exit = worker.reap();
        if worker.ready {
            if let Some(job) = worker.inflight.pop_front() {
                let task = job.name.to_owned();
                let error = match worker.poison.take() {
                    Some(message) => TaskError::Pool { task, message },
                    None => TaskError::WorkerDied { task, pid: worker.pid, exit },
                };
                job.sink.fail(error);
            }
        } else {
            self.startup_failures += 1;
            if self.startup_failures >= MAX_STARTUP_FAILURES {
                self.broken = Some(format!(
                    "{} workers in a row exited during start-up, the last (pid {}) with {exit}",
                    self.startup_failures, worker.pid
                ));
            }
        }
        // Jobs queued behind the one that was running go first to the next worker.
        while let Some(job) = worker.inflight.pop_back() {
            self.queue.push_front(job);
        }
        drop(worker);
        if self.broken.is_none() && (!self.shutdown || !self.queue.is_empty()) {
            match Worker::spawn(&self.config.exe) {
                Ok(worker) => self.workers.push(worker),
                Err(e) => {
                    self.startup_failures += 1;
                    if self.startup_failures >= MAX_STARTUP_FAILURES || self.workers.is_empty() {
                        self.broken = Some(format!("failed to start a worker process: {e}"));
                    }
                }
            }
        }
        if self.broken.is_some() {
            // `intake` fails what is queued and refuses new work from now on.
            let why = self.broken.clone();
            self.shared.lock().broken = why;
            for worker in &mut self.workers {
                while let Some(job) = worker.inflight.pop_back() {
                    self.queue.push_front(job);
                }
                worker.kill("the pool is broken".to_owned());
            }
        }
    }
}

/// Checks a worker's first frame.
fn hello(frame: frame::Frame<'_>) -> Result<(), String> {
    if frame.kind != ReplyKind::Hello as u8 {
        return Err(format!("expected a hello frame, got kind {:#04x}", frame.kind));
    }
    if frame.aux != PROTOCOL_VERSION {
        return Err(format!("protocol version {} where {PROTOCOL_VERSION} was expected", frame.aux));
    }
    let fingerprint = frame.payload.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8")));
    if fingerprint != Some(table().fingerprint()) {
        return Err("the worker's task table differs from the parent's".to_owned());
    }
    Ok(())
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Normal end: every job is done; closing the request pipes ends the workers. After a
        // panic in this thread, fail what is left rather than leave anyone waiting.
        for worker in &mut self.workers {
            worker.req = None;
        }
        let message = "the pool's i/o thread stopped".to_owned();
        for mut worker in self.workers.drain(..) {
            for job in worker.inflight.drain(..) {
                let task = job.name.to_owned();
                job.sink.fail(TaskError::Pool { task, message: message.clone() });
            }
            if std::thread::panicking() {
                let _ = worker.child.kill();
            }
            let _ = worker.reap();
        }
        for job in self.queue.drain(..) {
            let task = job.name.to_owned();
            job.sink.fail(TaskError::Pool { task, message: message.clone() });
        }
        let mut inbox = self.shared.lock();
        inbox.broken.get_or_insert(message);
        for job in inbox.jobs.drain(..) {
            let task = job.name.to_owned();
            job.sink.fail(TaskError::Pool { task, message: "the pool shut down".to_owned() });
        }
    }
}
