//! The pool's I/O thread: a thin driver around the [`Dispatcher`].
//!
//! It turns readiness into events — the inbox's jobs, kills and shutdown; bytes from a worker;
//! a worker's exit; the clock passing a deadline — and carries out the dispatcher's
//! [`Action`]s and writes. One thread, readiness-driven: it sleeps in `poll` over the wake-up
//! pipe and what each worker's [`Link`] registers. The only timeout is the nearest task time
//! limit. See `README.md` beside this file.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::buffer::Room;
use super::dispatch::{Action, Config, Dispatcher, Sig, WorkerId};
use super::link::{Launch, Link};
use super::shared::{Cancel, Shared};
use super::spawner::Spawner;
use crate::error::{BrokenCause, TaskError};
use crate::sys::{self, Poller};

/// How long the I/O thread looks for replies before it sleeps, while tasks are in flight.
const SPIN: Duration = Duration::from_micros(50);

/// While tasks are in flight, how often the workers' output (stderr) is read. Each task ends
/// with a marker on its worker's stderr: waking for it would double the I/O thread's wake-ups.
/// An idle pool reads output as it comes.
const OUTPUT_LATENCY: Duration = Duration::from_millis(10);

/// How long the pool's end waits for idle workers to exit once their requests are closed, before
/// it kills them (a stopped worker never exits by itself).
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Where a pool's workers run.
pub(crate) enum Launcher {
    /// Child processes of this one, started from `exe`.
    Local {
        exe: PathBuf,
        memory_limit: Option<u64>,
    },
    /// Workers under agents reached over TCP.
    Remote(Box<super::remote::Plan>),
}

impl Launcher {
    fn start(self, shared: Arc<Shared>) -> io::Result<Box<dyn Launch>> {
        match self {
            Launcher::Local { exe, memory_limit } => {
                Ok(Box::new(Spawner::new(exe, memory_limit, shared)?))
            }
            Launcher::Remote(plan) => Ok(Box::new(super::remote::launcher::Remote::start(
                *plan, shared,
            )?)),
        }
    }
}

struct Driver {
    shared: Arc<Shared>,
    d: Dispatcher,
    links: Vec<(WorkerId, Box<dyn Link>)>,
    next_id: u64,
    poller: Poller,
    /// The loop stopped on an error: end the workers rather than wait for them.
    failed: bool,
    /// While tasks are in flight, when the workers' output is read next.
    output_due: Instant,
    launch: Box<dyn Launch>,
    /// The inbox's jobs of the last intake, empty: swapped with the inbox's so that neither side
    /// allocates again once both have grown to a batch.
    intake: Vec<super::job::Job>,
    /// The read end of the wake pipe; declared last, so that it closes after the spawner thread
    /// (which writes to the pipe) has ended.
    wake: OwnedFd,
}

/// The body of the I/O thread. Reports on `started` whether the first worker came up; the
/// others start in the background.
pub(crate) fn run(
    shared: Arc<Shared>,
    wake: OwnedFd,
    launcher: Launcher,
    config: Config,
    started: &Sender<io::Result<()>>,
) {
    let launch = match launcher.start(shared.clone()) {
        Ok(launch) => launch,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let mut driver = Driver {
        d: Dispatcher::new(config, shared.stats.clone()),
        shared,
        links: Vec::new(),
        next_id: 0,
        poller: Poller::default(),
        failed: false,
        output_due: Instant::now(),
        launch,
        intake: Vec::new(),
        wake,
    };
    driver.act();
    match driver.launch.next() {
        Some((spare, Ok(link))) => driver.adopt(spare, link),
        Some((_, Err(e))) => {
            let _ = started.send(Err(e));
            return;
        }
        None => {
            let _ = started.send(Err(io::Error::other("the spawner thread stopped")));
            return;
        }
    }
    let _ = started.send(Ok(()));
    driver.serve();
}

impl Driver {
    fn serve(&mut self) {
        loop {
            self.intake();
            self.d.dispatch(Instant::now());
            self.act();
            for at in 0..self.links.len() {
                self.flush(at);
            }
            if self.d.finished() {
                return;
            }
            if let Err(e) = self.wait() {
                tracing::error!(error = %e, "cf: the pool's i/o thread cannot poll");
                self.failed = true;
                return;
            }
        }
    }

    /// Takes what submitters left in the inbox and hands it to the dispatcher.
    fn intake(&mut self) {
        let mut inbox = self.shared.lock();
        inbox.notified = false;
        if inbox.broken.is_none() {
            inbox.broken = self.d.broken().cloned();
        }
        let shutdown = inbox.shutdown.is_some();
        let cancel = matches!(inbox.shutdown, Some(Cancel::Asked | Cancel::Done));
        let mut jobs = std::mem::take(&mut self.intake);
        std::mem::swap(&mut jobs, &mut inbox.jobs);
        let kills = std::mem::take(&mut inbox.kills);
        let terminate = inbox.terminate.take();
        drop(inbox);
        if shutdown {
            self.d.shutdown();
        }
        self.collect_started();
        for job in jobs.drain(..) {
            self.d.submit(job);
        }
        self.intake = jobs;
        if cancel {
            self.d.cancel_pending();
            let mut inbox = self.shared.lock();
            if inbox.shutdown == Some(Cancel::Asked) {
                inbox.shutdown = Some(Cancel::Done);
                self.shared.acked.notify_all();
            }
        }
        for id in kills {
            self.d.kill(id);
        }
        if let Some(sig) = terminate {
            self.d.terminate(sig, Instant::now());
        }
        self.act();
    }

    /// Carries out what the dispatcher asked for.
    fn act(&mut self) {
        while let Some(action) = self.d.poll_action() {
            match action {
                Action::Spawn { spare } => {
                    if !self.launch.request(spare) {
                        let e = io::Error::other("the spawner thread stopped");
                        self.d.spawn_failed(spare, &e, Instant::now());
                    }
                }
                Action::Signal { worker, sig } => {
                    if let Some(link) = self.link(worker) {
                        link.signal(sig);
                    }
                }
                Action::CloseRequests { worker } => {
                    if let Some(link) = self.link(worker) {
                        link.close_requests();
                    }
                }
            }
        }
    }

    fn link(&mut self, id: WorkerId) -> Option<&mut Box<dyn Link>> {
        self.links
            .iter_mut()
            .find(|(w, _)| *w == id)
            .map(|(_, link)| link)
    }

    /// Takes in a started worker.
    fn adopt(&mut self, spare: bool, link: Box<dyn Link>) {
        let id = WorkerId(self.next_id);
        self.next_id += 1;
        tracing::info!(
            pid = link.pid(),
            node = link.node(),
            spare,
            "cf: worker started"
        );
        let node = link.node().map(str::to_owned);
        self.d
            .worker_started(id, link.pid(), node, spare, Instant::now());
        self.links.push((id, link));
    }

    /// Takes in the workers the launcher started.
    fn collect_started(&mut self) {
        while let Some((spare, started)) = self.launch.try_next() {
            match started {
                Ok(link) => self.adopt(spare, link),
                Err(e) => {
                    tracing::warn!(error = %e, "cf: failed to start a worker");
                    self.d.spawn_failed(spare, &e, Instant::now());
                }
            }
        }
        self.act();
    }

    /// Writes what the dispatcher has for the worker at `at` without blocking.
    fn flush(&mut self, at: usize) {
        let (id, link) = &mut self.links[at];
        while let Some(bytes) = self.d.transmit(*id) {
            match link.write(bytes) {
                Ok(n) => self.d.transmitted(*id, n),
                // EPIPE: the worker is gone (its exit will say so), or its task closed the pipe.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    self.d.stream_closed(*id, Instant::now());
                    return;
                }
                // EAGAIN: the stream is full, wait for room.
                Err(_) => return,
            }
        }
    }

    /// Reads what the worker at `at` sent without blocking, and hands it to the dispatcher.
    fn fill(&mut self, at: usize, now: Instant) {
        let (id, link) = &mut self.links[at];
        while let Some(room) = self.d.read_buf(*id) {
            let read = match room {
                Room::Slice(buf) => link.read(buf),
                Room::Spare(buf, max) => link.read_spare(buf, max),
            };
            match read {
                Ok(0) => {
                    self.d.stream_closed(*id, now);
                    break;
                }
                Ok(n) => self.d.received(*id, n),
                Err(_) => break,
            }
        }
        self.d.parse(*id, now);
    }

    /// Whether reply bytes wait on a link that tells without a system call.
    fn arrived(&self) -> bool {
        self.links.iter().any(|(_, link)| link.arrived())
    }

    /// Publishes the gauges of [`PoolStats`](super::PoolStats).
    fn publish(&self) {
        let workers = self.d.worker_count() as u64;
        self.shared.stats.workers.store(workers, Ordering::Relaxed);
        let ready = self.d.ready_workers() as u64;
        let broken = self.d.broken().is_some();
        let stats = &self.shared.stats;
        if stats.ready_workers.swap(ready, Ordering::Relaxed) != ready
            || stats.broken.swap(broken, Ordering::Relaxed) != broken
        {
            self.shared.ready_changed(self.d.broken());
        }
    }

    /// Sleeps until something is ready, then handles it.
    fn wait(&mut self) -> io::Result<()> {
        self.publish();
        let busy = self.d.busy();
        let start = Instant::now();
        let watch_output = !busy || start >= self.output_due;
        let deadline = match self.d.next_deadline() {
            Some(deadline) if !watch_output => Some(deadline.min(self.output_due)),
            None if !watch_output => Some(self.output_due),
            deadline => deadline,
        };
        let timeout = deadline.map(|deadline| deadline.saturating_duration_since(start));
        self.poller.clear();
        self.poller.add(self.wake.as_fd(), true, false);
        for (id, link) in &mut self.links {
            link.register(&mut self.poller, self.d.wants_write(*id), watch_output);
        }
        // With tasks in flight a reply is due soon: look again for a few microseconds, yielding
        // the CPU, before sleeping (a wake-up from sleep costs far more on most machines).
        let spin_until = start + SPIN;
        loop {
            if busy {
                if self.poller.wait(Some(Duration::ZERO))? > 0 || self.arrived() {
                    break;
                }
                if Instant::now() < spin_until {
                    std::thread::yield_now();
                    continue;
                }
            }
            // Every link must hear that the driver sleeps (a ring's worker then rings its
            // doorbell); one whose bytes came meanwhile keeps it awake.
            let mut awake = false;
            for (_, link) in &mut self.links {
                awake |= !link.sleep();
            }
            self.poller
                .wait(if awake { Some(Duration::ZERO) } else { timeout })?;
            break;
        }
        if self.poller.ready(0) {
            sys::drain_wakes(&self.wake);
        }
        let mut dead = Vec::new();
        let now = Instant::now();
        let output_due = busy && now >= self.output_due;
        if output_due || !busy {
            self.output_due = now + OUTPUT_LATENCY;
        }
        for at in 0..self.links.len() {
            let ready = self.links[at].1.ready(&self.poller);
            if ready.output() || ready.exited() || output_due {
                self.links[at].1.forward_output(&self.shared.output);
            }
            if ready.writable() {
                self.flush(at);
            }
            if ready.readable() || ready.exited() {
                self.fill(at, now);
            }
            if ready.exited() {
                dead.push(at);
            }
        }
        self.d.tick(Instant::now());
        for at in dead.into_iter().rev() {
            let (id, mut link) = self.links.swap_remove(at);
            let exit = link.reap();
            self.d.worker_exited(id, exit, &link.last_words());
        }
        self.act();
        Ok(())
    }
}

impl Driver {
    /// Ends the workers: closes their requests, waits up to [`EXIT_GRACE`] for them to exit
    /// (they do at once, unless stopped or stuck), then kills those left. With `hard`, kills at
    /// once.
    fn end_workers(&mut self, hard: bool) {
        let mut left: Vec<_> = self.links.drain(..).map(|(_, link)| link).collect();
        for link in &mut left {
            link.close_requests();
            if hard {
                link.signal(Sig::Kill);
            }
        }
        let deadline = Instant::now() + EXIT_GRACE;
        let mut scratch = [0; 4096];
        while !left.is_empty() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                for link in &mut left {
                    tracing::warn!(pid = link.pid(), "cf: a worker did not exit; killing it");
                    link.signal(Sig::Kill);
                }
            }
            self.poller.clear();
            let mut awake = false;
            for link in &mut left {
                link.register(&mut self.poller, false, true);
                awake |= !link.sleep();
            }
            let timeout = if awake {
                Duration::ZERO
            } else {
                remaining.max(EXIT_GRACE / 100)
            };
            if self.poller.wait(Some(timeout)).is_err() {
                // Cannot watch them: kill them, then wait (a killed process exits at once).
                for link in &mut left {
                    link.signal(Sig::Kill);
                    let _ = link.reap();
                    link.forward_output(&self.shared.output);
                }
                return;
            }
            let poller = &self.poller;
            left.retain_mut(|link| {
                let ready = link.ready(poller);
                if ready.readable() {
                    // Nobody waits for these bytes any more.
                    while matches!(link.read(&mut scratch), Ok(n) if n > 0) {}
                }
                if ready.output() || ready.exited() {
                    link.forward_output(&self.shared.output);
                }
                if ready.exited() {
                    let _ = link.reap();
                }
                !ready.exited()
            });
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Normal end: every job is done; closing the request streams ends the workers. After a
        // panic in this thread, fail what is left rather than leave anyone waiting.
        self.d.abandon();
        let hard = self.failed || std::thread::panicking();
        self.end_workers(hard);
        let mut inbox = self.shared.lock();
        if !self.d.is_shutdown() || hard {
            inbox.broken.get_or_insert(BrokenCause::IoThreadStopped);
        }
        inbox.io_gone = true;
        self.shared.acked.notify_all();
        for job in inbox.jobs.drain(..) {
            if let super::job::Owner::Future(sink) = job.owner {
                sink.fail(TaskError::Shutdown {
                    task: job.name.to_owned(),
                });
            }
        }
    }
}
