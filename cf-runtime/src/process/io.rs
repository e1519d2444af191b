//! The pool's I/O thread: hands jobs to workers, reads their replies, and replaces the dead.
//!
//! One thread, readiness-driven: it sleeps in `poll` over the wake-up pipe and, per worker, the
//! result pipe, the stderr pipe, the pidfd and (when it has bytes for it) the request pipe. The
//! only timeout is the nearest task time limit. See `README.md` beside this file.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use cf_worker::frame::{self, PROTOCOL_VERSION, ReplyKind, RequestKind};
use cf_worker::start::STACK_OVERFLOW;
use cf_worker::{PanicInfo, decode, table};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::job::{Job, NoFuture};
use super::spawner::Spawner;
use super::worker::{Poison, Worker};
use super::{Inbox, Shared};
use crate::error::{BrokenCause, Exit, HandshakeError, StartupFailure, TaskError};

/// Consecutive start-up failures after which the pool calls itself broken.
const MAX_STARTUP_FAILURES: u32 = 3;

/// A worker's initializer: a task with no arguments run once at start.
pub(crate) struct Init {
    pub(crate) task: u32,
    pub(crate) name: &'static str,
    pub(crate) args: Vec<u8>,
}

pub(crate) struct Config {
    pub(crate) exe: PathBuf,
    pub(crate) max_workers: usize,
    /// The most tasks a worker holds at once.
    pub(crate) prefetch: usize,
    /// Hold more than one only while tasks are short (see [`Dispatcher::depth`]).
    pub(crate) adaptive: bool,
    pub(crate) max_tasks_per_child: Option<u64>,
    pub(crate) initializer: Option<Init>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) spare: bool,
    /// The largest reply frame accepted.
    pub(crate) max_frame: u32,
}

struct Dispatcher {
    shared: Arc<Shared>,
    config: Config,
    workers: Vec<Worker>,
    spawner: Spawner,
    queue: VecDeque<Job>,
    shutdown: bool,
    terminated: bool,
    startup_failures: u32,
    broken: Option<BrokenCause>,
    /// Moving average of how long tasks run, in seconds.
    average_run: f64,
    /// The read end of the wake pipe; declared last, so that it closes after the spawner thread
    /// (which writes to the pipe) has ended.
    wake: OwnedFd,
}

/// How long the I/O thread looks for replies before it sleeps, while tasks are in flight.
const SPIN: Duration = Duration::from_micros(50);

/// Tasks shorter than this on average are worth sending ahead of time; longer ones are not:
/// a task queued behind a long one would wait while another worker may be idle.
const SHORT_TASK: f64 = 0.000_5;

/// The body of the I/O thread. Reports on `started` whether the first worker came up; the
/// others start in the background.
pub(crate) fn run(
    shared: Arc<Shared>,
    wake: OwnedFd,
    config: Config,
    started: &Sender<io::Result<()>>,
) {
    let _ = shared.io_thread.set(std::thread::current().id());
    let spawner = match Spawner::new(config.exe.clone(), config.memory_limit, shared.clone()) {
        Ok(spawner) => spawner,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let mut d = Dispatcher {
        shared,
        wake,
        config,
        workers: Vec::new(),
        spawner,
        queue: VecDeque::new(),
        shutdown: false,
        terminated: false,
        startup_failures: 0,
        broken: None,
        // Until tasks show that they are short, send one at a time.
        average_run: 1.0,
    };
    for _ in 0..d.config.max_workers {
        d.start(false);
    }
    if d.config.spare {
        d.start(true);
    }
    match d.spawner.next() {
        Some((spare, Ok(worker))) => {
            tracing::info!(pid = worker.pid, spare, "cf: worker started");
            d.workers.push(worker);
        }
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
            if self.shutdown
                && self.queue.is_empty()
                && self
                    .workers
                    .iter()
                    .all(|w| w.inflight.iter().all(Job::is_init))
            {
                return;
            }
            self.wait();
        }
    }

    /// Takes what submitters left in the inbox.
    fn intake(&mut self) {
        let mut inbox = self.shared.lock();
        let Inbox {
            jobs,
            notified,
            shutdown,
            cancel,
            broken,
            kills,
            terminate,
            ..
        } = &mut *inbox;
        *notified = false;
        self.shutdown = *shutdown;
        if broken.is_none() {
            broken.clone_from(&self.broken);
        }
        let cancel = *cancel;
        let jobs = std::mem::take(jobs);
        let kills = std::mem::take(kills);
        let terminate = terminate.take();
        drop(inbox);
        self.collect_started();
        self.queue.extend(jobs);
        if cancel {
            // Python cancels what has not started. A job put back in the queue after its worker
            // died was running: it stays queued, to run again.
            let mut kept = VecDeque::new();
            for job in self.queue.drain(..) {
                if !job.has_future() {
                    continue;
                }
                if job.sink.pending() {
                    self.shared.stats.dequeued_cancelled();
                    job.sink.cancel();
                } else {
                    kept.push_back(job);
                }
            }
            self.queue = kept;
            let mut inbox = self.shared.lock();
            if !inbox.cancel_done {
                inbox.cancel_done = true;
                self.shared.acked.notify_all();
            }
        }
        for id in kills {
            self.kill_job(id);
        }
        if let Some(signal) = terminate {
            self.terminated = true;
            for worker in &mut self.workers {
                worker.poison.get_or_insert(Poison::Terminated);
                worker.signal(signal);
            }
            // No worker will run what is still queued (jobs put back after a death).
            self.fail_queue(|task| TaskError::Terminated { task });
        }
        if let Some(cause) = self.broken.clone() {
            self.fail_queue(|task| TaskError::Broken {
                task,
                cause: cause.clone(),
            });
        }
    }

    /// Fails every queued job with the error `error` makes of its task's name.
    fn fail_queue(&mut self, error: impl Fn(String) -> TaskError<cf_worker::Never>) {
        for job in self.queue.drain(..) {
            if job.has_future() {
                self.shared.stats.dequeued_failed();
                let task = job.name.to_owned();
                job.sink.fail(error(task));
            }
        }
    }

    /// `Future::kill`: stop the job wherever it is.
    fn kill_job(&mut self, id: u64) {
        for worker in &mut self.workers {
            match worker.inflight.iter().position(|job| job.id == id) {
                Some(0) => worker.kill(Poison::Cancelled { id }),
                Some(at) => {
                    // Sent ahead but not started. Its frame is in the pipe, so the worker will
                    // run it and reply: keep its place in the FIFO and drop that reply.
                    let job = &mut worker.inflight[at];
                    std::mem::replace(&mut job.sink, Box::new(NoFuture)).kill();
                    self.shared.stats.running_cancelled();
                }
                None => continue,
            }
            return;
        }
        // Back in the queue after its worker died: it never runs again.
        if let Some(at) = self.queue.iter().position(|job| job.id == id) {
            let job = self.queue.remove(at).expect("found above");
            self.shared.stats.dequeued_cancelled();
            job.sink.kill();
        }
    }

    /// How many tasks a worker may hold now: `prefetch` while tasks are short, else one.
    fn depth(&self) -> usize {
        if !self.config.adaptive || self.average_run < SHORT_TASK {
            self.config.prefetch
        } else {
            1
        }
    }

    /// Gives queued jobs to ready workers, up to [`depth`](Self::depth) each, a round at a time.
    fn dispatch(&mut self) {
        let now = Instant::now();
        let depth = self.depth();
        for _ in 0..depth {
            for worker in &mut self.workers {
                if self.queue.is_empty() {
                    break;
                }
                if !worker.accepts(depth, self.config.max_tasks_per_child) {
                    continue;
                }
                while let Some(job) = self.queue.pop_front() {
                    if !job.sink.set_running() {
                        // Cancelled while queued (a job cancelled after it was sent was counted then).
                        if job.has_future() {
                            self.shared.stats.dequeued_cancelled();
                        }
                        continue;
                    }
                    self.shared.stats.sent();
                    send(worker, job, now);
                    break;
                }
            }
        }
        // A worker that has run its `max_tasks_per_child` leaves once its last reply is in.
        if let Some(max) = self.config.max_tasks_per_child {
            for worker in &mut self.workers {
                if worker.sent >= max && worker.inflight.is_empty() {
                    worker.req = None;
                }
            }
        }
    }

    /// The nearest moment a running task passes its time limit.
    fn next_deadline(&self) -> Option<Instant> {
        self.workers
            .iter()
            .filter(|w| w.poison.is_none())
            .filter_map(|w| {
                let job = w.inflight.front().filter(|job| !job.is_init())?;
                w.front_since?.checked_add(job.limit(self.config.timeout)?)
            })
            .min()
    }

    /// Kills the workers whose running task is past its limit (an initializer has none).
    fn enforce_deadlines(&mut self, now: Instant) {
        for worker in &mut self.workers {
            let (Some(job), Some(since)) = (worker.inflight.front(), worker.front_since) else {
                continue;
            };
            let Some(limit) = job.limit(self.config.timeout).filter(|_| !job.is_init()) else {
                continue;
            };
            if worker.poison.is_none() && since.checked_add(limit).is_some_and(|d| d <= now) {
                let id = job.id;
                worker.kill(Poison::TimedOut { id, limit });
            }
        }
    }

    /// Publishes the gauges of [`PoolStats`](super::PoolStats).
    fn publish(&self) {
        let workers = self.workers.len() + self.spawner.pending;
        self.shared
            .stats
            .workers
            .store(workers as u64, Ordering::Relaxed);
    }

    /// Sleeps until something is ready, then handles it.
    fn wait(&mut self) {
        self.publish();
        let timeout = match self.next_deadline() {
            None => PollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                // Round up, so that we wake after the deadline rather than just before it.
                let ms = left.as_nanos().div_ceil(1_000_000);
                PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = Vec::with_capacity(1 + 4 * self.workers.len());
        fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
        for worker in &self.workers {
            // A closed pipe would report POLLHUP forever: watch the idle wake pipe in its place.
            let res = if worker.res_open {
                &worker.res
            } else {
                &self.wake
            };
            let events = if worker.res_open {
                PollFlags::POLLIN
            } else {
                PollFlags::empty()
            };
            fds.push(PollFd::new(res.as_fd(), events));
            fds.push(PollFd::new(worker.pidfd.as_fd(), PollFlags::POLLIN));
            let out = if worker.wants_write() {
                PollFlags::POLLOUT
            } else {
                PollFlags::empty()
            };
            fds.push(PollFd::new(
                worker.req.as_ref().unwrap_or(&self.wake).as_fd(),
                out,
            ));
            let err = if worker.err.is_some() {
                PollFlags::POLLIN
            } else {
                PollFlags::empty()
            };
            fds.push(PollFd::new(
                worker.err.as_ref().unwrap_or(&self.wake).as_fd(),
                err,
            ));
        }
        // With tasks in flight a reply is due soon: look again for a few microseconds, yielding
        // the CPU, before sleeping (a wake-up from sleep costs far more on most machines).
        let busy = self.workers.iter().any(|w| !w.inflight.is_empty());
        let spin_until = Instant::now() + SPIN;
        loop {
            let now = if busy { PollTimeout::ZERO } else { timeout };
            match nix::poll::poll(&mut fds, now) {
                Ok(0) if busy && Instant::now() < spin_until => std::thread::yield_now(),
                Ok(0) if busy => {
                    match nix::poll::poll(&mut fds, timeout) {
                        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                        Err(e) => panic!("poll failed: {e}"),
                    }
                    break;
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => break,
                Err(e) => panic!("poll failed: {e}"),
            }
        }
        let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        let wake = ready(&fds[0]);
        let events: Vec<[bool; 4]> = fds[1..]
            .chunks(4)
            .map(|c| [ready(&c[0]), ready(&c[1]), ready(&c[2]), ready(&c[3])])
            .collect();
        drop(fds);
        if wake {
            let mut buf = [0; 64];
            while matches!(nix::unistd::read(&self.wake, &mut buf), Ok(n) if n > 0) {}
        }
        let mut dead = Vec::new();
        for (index, [readable, exited, writable, stderr]) in events.into_iter().enumerate() {
            if stderr || exited {
                self.workers[index].drain_stderr();
            }
            if writable {
                self.workers[index].flush();
            }
            if readable || exited {
                // The end of the result pipe comes a moment before the pidfd says the process
                // exited: stop watching the pipe and let the pidfd report the death.
                self.workers[index].res_open = self.workers[index].fill();
                self.parse(index);
            }
            if exited {
                dead.push(index);
            }
        }
        self.enforce_deadlines(Instant::now());
        for index in dead.into_iter().rev() {
            self.bury(index);
        }
    }

    /// Handles every whole frame a worker sent.
    fn parse(&mut self, index: usize) {
        let stats = &self.shared.stats;
        let worker = &mut self.workers[index];
        let mut used = 0;
        let mut problem = None;
        let now = Instant::now();
        loop {
            let (frame, len) =
                match frame::parse(&worker.inbuf.data()[used..], self.config.max_frame) {
                    Ok(Some(parsed)) => parsed,
                    Ok(None) => break,
                    Err(e) => {
                        problem = Some(e.to_string());
                        break;
                    }
                };
            used += len;
            if !worker.hello {
                if let Err(e) = hello(frame) {
                    worker.inbuf.clear();
                    worker.kill(Poison::Handshake(e));
                    return;
                }
                worker.hello = true;
                match &self.config.initializer {
                    Some(init) => {
                        let job = Job {
                            id: 0,
                            kind: RequestKind::Call,
                            task: init.task,
                            name: init.name,
                            args: init.args.clone(),
                            sink: Box::new(NoFuture),
                            timeout: None,
                            inputs: 1,
                        };
                        send(worker, job, now);
                        worker.flush();
                    }
                    None => {
                        worker.ready = true;
                        self.startup_failures = 0;
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
                    problem = Some(format!(
                        "reply for job {} which it was not running",
                        frame.id
                    ));
                    break;
                }
            }
            let job = worker.inflight.pop_front().expect("checked above");
            if let Some(since) = worker.front_since {
                let run = now.saturating_duration_since(since).as_secs_f64();
                self.average_run = 0.8 * self.average_run + 0.2 * run;
            }
            worker.front_since = (!worker.inflight.is_empty()).then_some(now);
            if job.is_init() {
                if kind == ReplyKind::Ok {
                    worker.ready = true;
                    self.startup_failures = 0;
                } else {
                    let why = init_failure(kind, frame.payload);
                    worker.kill(Poison::InitFailed(why));
                }
                continue;
            }
            if kind == ReplyKind::Aborting {
                // Its death is explained: no job behind this one was running.
                worker.poison.get_or_insert(Poison::Aborting);
                worker.front_since = None;
            }
            if job.has_future() {
                stats.answered(kind == ReplyKind::Ok);
                if kind != ReplyKind::Ok {
                    tracing::debug!(task = job.name, pid = worker.pid, ?kind, "cf: task failed");
                }
            }
            job.sink.reply(kind, frame.payload, job.name);
        }
        worker.inbuf.consume(used);
        if let Some(problem) = problem {
            worker.inbuf.clear();
            worker.kill(Poison::Protocol(problem));
        }
    }

    /// Reaps an exited worker: fails the job it was running, re-queues the rest, replaces it.
    fn bury(&mut self, index: usize) {
        let mut worker = self.workers.swap_remove(index);
        let exit = worker.reap();
        tracing::info!(pid = worker.pid, %exit, ready = worker.ready, "cf: worker exited");
        let was_spare = worker.spare;
        if worker.ready {
            self.fail_running(&mut worker, exit);
        } else if self.broken.is_none() {
            // Once the pool is broken it kills the workers still starting: their deaths are
            // not failures of their own, and must not replace the cause.
            self.startup_failures += 1;
            let pid = worker.pid;
            let last = match &worker.poison {
                Some(Poison::InitFailed(message)) => StartupFailure::Initializer {
                    task: self
                        .config
                        .initializer
                        .as_ref()
                        .map_or("", |i| i.name)
                        .to_owned(),
                    message: message.clone(),
                },
                Some(Poison::Handshake(reason)) => StartupFailure::Handshake {
                    pid,
                    reason: reason.clone(),
                },
                _ => StartupFailure::Exited { pid, exit },
            };
            if self.startup_failures >= MAX_STARTUP_FAILURES {
                self.broken = Some(BrokenCause::Startup {
                    failures: self.startup_failures,
                    last,
                });
            }
        }
        // Jobs queued behind the one that was running go first to the next worker, unless the
        // pool is being terminated.
        while let Some(job) = worker.inflight.pop_back() {
            if job.is_init() {
                continue;
            }
            if self.terminated {
                if job.has_future() {
                    self.shared.stats.answered(false);
                }
                job.sink.fail(TaskError::Terminated {
                    task: job.name.to_owned(),
                });
            } else {
                if job.has_future() {
                    self.shared.stats.requeued();
                }
                self.queue.push_front(job);
            }
        }
        drop(worker);
        self.replace(was_spare);
        if self.broken.is_some() {
            // `intake` fails what is queued and refuses new work from now on.
            self.shared.lock().broken.clone_from(&self.broken);
            for worker in &mut self.workers {
                while let Some(job) = worker.inflight.pop_back() {
                    if !job.is_init() {
                        self.queue.push_front(job);
                    }
                }
                worker.kill(Poison::Terminated);
            }
        }
    }

    /// Fails the job a dead worker was running, with what is known of why it died.
    fn fail_running(&mut self, worker: &mut Worker, exit: Exit) {
        if matches!(worker.poison, Some(Poison::Aborting)) {
            return;
        }
        let Some(job) = worker.inflight.pop_front() else {
            return;
        };
        if !job.has_future() {
            return;
        }
        let task = job.name.to_owned();
        let pid = worker.pid;
        // A kill meant for a job whose reply came first hit the job behind it: that one was not
        // at fault, and runs again elsewhere.
        let meant_for = match worker.poison {
            Some(Poison::Cancelled { id } | Poison::TimedOut { id, .. }) => Some(id),
            _ => None,
        };
        if meant_for.is_some_and(|id| id != job.id) {
            worker.inflight.push_front(job);
            return;
        }
        let error = match worker.poison.take() {
            Some(Poison::Cancelled { .. }) => {
                self.shared.stats.running_cancelled();
                return job.sink.kill();
            }
            Some(Poison::Protocol(message)) => TaskError::Protocol { task, pid, message },
            Some(Poison::Handshake(reason)) => TaskError::Protocol {
                task,
                pid,
                message: reason.to_string(),
            },
            Some(Poison::TimedOut { limit, .. }) => TaskError::TimeLimit { task, pid, limit },
            None if !worker.inbuf.is_empty() => {
                let have = worker.inbuf.data().len();
                let message = match frame::wanted(worker.inbuf.data()) {
                    Some(missing) => format!(
                        "the worker died in the middle of a frame ({have} bytes of {})",
                        have + missing
                    ),
                    None => format!("the worker died in the middle of a frame ({have} bytes)"),
                };
                TaskError::Protocol { task, pid, message }
            }
            // A worker whose initializer failed was never ready: it ran no task.
            Some(Poison::Terminated | Poison::Aborting | Poison::InitFailed(_)) | None => {
                let stderr = worker.last_words();
                match self.config.memory_limit {
                    Some(limit) if ran_out_of_memory(exit, &stderr) => {
                        TaskError::MemoryLimit { task, pid, limit }
                    }
                    _ if exit == Exit::Signal(11) && stderr.contains(STACK_OVERFLOW) => {
                        TaskError::StackOverflow { task, pid }
                    }
                    _ => TaskError::WorkerDied {
                        task,
                        pid,
                        exit,
                        stderr,
                    },
                }
            }
        };
        tracing::debug!(task = job.name, pid, error = %error, "cf: task failed with its worker");
        self.shared.stats.answered(false);
        job.sink.fail(error);
    }

    /// Starts a worker in place of one that died: a ready spare takes its place at once, and a
    /// new spare starts.
    fn replace(&mut self, was_spare: bool) {
        if self.broken.is_some() || self.terminated {
            return;
        }
        let needed =
            self.working() < self.config.max_workers && (!self.shutdown || !self.queue.is_empty());
        if needed && !was_spare {
            self.shared.stats.respawned();
            if let Some(spare) = self.workers.iter_mut().find(|w| w.spare && w.ready) {
                tracing::info!(pid = spare.pid, "cf: spare worker takes over");
                spare.spare = false;
            } else {
                self.start(false);
            }
        }
        let has_spare = self.workers.iter().any(|w| w.spare) || self.spawner.pending_spares > 0;
        if self.config.spare && !self.shutdown && !has_spare {
            self.start(true);
        }
    }

    /// Asks the spawner for a worker.
    fn start(&mut self, spare: bool) {
        tracing::info!(spare, "cf: starting a worker");
        self.spawner.request(spare);
    }

    /// Takes in the workers the spawner started.
    fn collect_started(&mut self) {
        while let Some((spare, started)) = self.spawner.try_next() {
            match started {
                Ok(mut worker) => {
                    tracing::info!(pid = worker.pid, spare, "cf: worker started");
                    // Asked for as the spare, but a worker died meanwhile: it works at once. And
                    // never more than `max_workers` take tasks.
                    let working = self.working();
                    if spare && working < self.config.max_workers {
                        worker.spare = false;
                    } else if !spare && working > self.config.max_workers {
                        worker.spare = true;
                    }
                    self.workers.push(worker);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cf: failed to start a worker");
                    self.startup_failures += 1;
                    let last = StartupFailure::spawn(&e);
                    if self.broken.is_some() {
                        continue;
                    }
                    if self.startup_failures >= MAX_STARTUP_FAILURES {
                        self.broken = Some(BrokenCause::Startup {
                            failures: self.startup_failures,
                            last,
                        });
                        self.shared.lock().broken.clone_from(&self.broken);
                    } else if !(self.terminated || self.shutdown && self.queue.is_empty()) {
                        // Perhaps a passing shortage (EAGAIN, EMFILE): try again, a bounded
                        // number of times.
                        self.start(spare);
                    }
                }
            }
        }
    }

    /// Workers that take tasks, or will once started.
    fn working(&self) -> usize {
        let live = self.workers.iter().filter(|w| !w.spare).count();
        live + self.spawner.pending - self.spawner.pending_spares
    }
}

/// Writes `job` to `worker` and records it in flight.
fn send(worker: &mut Worker, job: Job, now: Instant) {
    worker
        .out
        .push_call(job.kind as u8, job.id, job.task, &job.args);
    if worker.inflight.is_empty() {
        worker.front_since = Some(now);
    }
    if !job.is_init() {
        worker.sent += 1;
    }
    worker.inflight.push_back(job);
}

/// Whether a worker with a memory limit died of an allocation failure: Rust's allocation
/// error handler prints `memory allocation of N bytes failed` and aborts.
fn ran_out_of_memory(exit: Exit, stderr: &str) -> bool {
    matches!(exit, Exit::Signal(6)) && stderr.contains("memory allocation of")
}

/// What a failed initializer reported.
fn init_failure(kind: ReplyKind, payload: &[u8]) -> String {
    match kind {
        ReplyKind::Panicked => {
            decode::<PanicInfo>(payload).map_or_else(|e| e.to_string(), |p| p.to_string())
        }
        ReplyKind::Failed => "it returned an error".to_owned(),
        _ => String::from_utf8_lossy(payload).into_owned(),
    }
}

/// Checks a worker's first frame.
fn hello(frame: frame::Frame<'_>) -> Result<(), HandshakeError> {
    if frame.kind != ReplyKind::Hello as u8 {
        return Err(HandshakeError::NotHello { kind: frame.kind });
    }
    if frame.aux != PROTOCOL_VERSION {
        return Err(HandshakeError::ProtocolVersion {
            worker: frame.aux,
            expected: PROTOCOL_VERSION,
        });
    }
    let fingerprint = frame
        .payload
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8")));
    if fingerprint != Some(table().fingerprint()) {
        return Err(HandshakeError::TaskTableDiffers);
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
        let cause = BrokenCause::IoThreadStopped;
        for mut worker in self.workers.drain(..) {
            for job in worker.inflight.drain(..) {
                let task = job.name.to_owned();
                job.sink.fail(TaskError::Broken {
                    task,
                    cause: cause.clone(),
                });
            }
            if std::thread::panicking() {
                worker.signal(9);
            }
            let _ = worker.reap();
            worker.drain_stderr();
        }
        for job in self.queue.drain(..) {
            let task = job.name.to_owned();
            job.sink.fail(TaskError::Broken {
                task,
                cause: cause.clone(),
            });
        }
        let mut inbox = self.shared.lock();
        if !self.shutdown || std::thread::panicking() {
            inbox.broken.get_or_insert(cause);
        }
        inbox.io_gone = true;
        self.shared.acked.notify_all();
        for job in inbox.jobs.drain(..) {
            let task = job.name.to_owned();
            job.sink.fail(TaskError::Shutdown { task });
        }
    }
}
