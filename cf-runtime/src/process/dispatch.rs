//! The process pool's scheduler as a pure state machine: events in, actions out, no I/O.
//!
//! The [`Dispatcher`] owns every queued job and, per worker, the jobs it holds, the bytes on
//! their way to it and the bytes read from it. It never touches a file descriptor, a process or
//! the clock: the driver (`driver.rs`) turns readiness into events — [`Dispatcher::submit`],
//! [`Dispatcher::received`], [`Dispatcher::worker_exited`], [`Dispatcher::tick`] and so on, each
//! given `now` — and carries out the [`Action`]s it polls, plus the bytes of
//! [`Dispatcher::transmit`]. A future is completed through its job's [`Sink`], the one port through
//! which an outcome leaves. Because of that, everything here runs in unit tests without a process
//! (`dispatch/test.rs`, `dispatch/prop.rs`).

mod slot;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cf_worker::frame::Frame;
use cf_worker::frame::{self, PROTOCOL_VERSION, ReplyKind, RequestKind};
use cf_worker::start::STACK_OVERFLOW;
use cf_worker::{PanicInfo, Payload, decode};

use super::buffer::Room;
use super::job::{Deaths, Job, Owner};
use super::shared::Counters;
use crate::error::{
    BrokenCause, Exit, HandshakeError, ProtocolViolation, StartupFailure, TaskError,
};
pub(crate) use slot::WorkerId;
use slot::{Poison, Slot, State};

/// Consecutive start-up failures after which the pool calls itself broken.
const MAX_STARTUP_FAILURES: u32 = 3;

/// A task that has run this long is long: nothing more is queued behind it, and what waits
/// behind it is taken back when another worker is idle.
const SHORT_TASK: Duration = Duration::from_micros(500);

/// While tasks are short, a worker holds about this much work by the average task (see
/// [`Dispatcher::depth`]).
const AHEAD: Duration = Duration::from_millis(2);

/// What a task whose runs were never seen is taken to take, in seconds: long, so that a task
/// shows that it is short before more than two are sent ahead.
const UNSEEN_RUN: f64 = 1.0;

/// The most tasks a worker holds while tasks are short.
const MAX_AHEAD: usize = 256;

/// The most argument bytes that wait in a worker behind its running task: half of what its
/// watcher reads ahead ([`frame::READ_AHEAD`]), so that a give-back request sent behind them is
/// always read while the running task runs long. (The next task goes whatever its size, so that
/// a worker never waits a round trip between two large calls.) Checked only for jobs with arguments
/// of [`SMALL_ARGS`] or more: the small ones of [`MAX_AHEAD`] jobs add at most a quarter more.
const AHEAD_BYTES: usize = frame::READ_AHEAD / 2;
const SMALL_ARGS: usize = frame::READ_AHEAD / 4 / MAX_AHEAD;

/// Tasks queued behind one that has run long, beyond which all but the next are taken back
/// even while no worker is idle: more than [`AHEAD`] of work, if each took as long as a long
/// task has run at the least.
const CROWD: usize = (AHEAD.as_micros() / SHORT_TASK.as_micros()) as usize;

/// A worker's initializer: a task with no arguments run once at start.
#[derive(Clone, Debug)]
pub(crate) struct Init {
    pub(crate) task: u32,
    pub(crate) name: &'static str,
    pub(crate) args: Vec<u8>,
}

/// The scheduler's settings.
#[derive(Debug)]
pub(crate) struct Config {
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
    /// The task-table fingerprint a worker must present in its handshake.
    pub(crate) fingerprint: u64,
    /// How many times a task runs again when its worker dies under it, unless it says.
    pub(crate) retries: u32,
    /// The bounds on waiting for cf's own machinery.
    pub(crate) limits: Limits,
}

/// How long the pool waits for its own machinery before it acts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// A started worker that has not sent its hello by then is killed.
    pub(crate) handshake: Duration,
    /// A worker sent SIGTERM that is still alive after this gets SIGKILL.
    pub(crate) term_grace: Duration,
    /// Failed worker starts are retried, with backoff, for this long before the pool is
    /// broken (a passing shortage of processes or fds is not a broken pool).
    pub(crate) spawn_retry: Duration,
    /// A worker whose protocol stream closed but that has not exited after this is killed.
    pub(crate) closed_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake: Duration::from_secs(10),
            term_grace: Duration::from_secs(1),
            spawn_retry: Duration::from_secs(10),
            closed_grace: Duration::from_secs(1),
        }
    }
}

/// The first wait before a failed worker start is retried; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);

/// The longest wait between retries of a failed worker start.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// A signal the dispatcher asks the driver to send, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sig {
    /// SIGTERM: `terminate_workers`.
    Term,
    /// SIGKILL: a kill, a time limit, a protocol violation, `kill_workers`.
    Kill,
    /// SIGURG: a request to give back calls (`Revoke` frames are on their way); the worker's
    /// watcher thread waits for it, and it interrupts nothing else.
    Urge,
}

/// What the dispatcher asks of the world.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start a worker (the spare, if `spare`); answer with [`Dispatcher::worker_started`] or
    /// [`Dispatcher::spawn_failed`].
    Spawn { spare: bool },
    /// Send `sig` to the worker; its exit comes back as [`Dispatcher::worker_exited`].
    Signal { worker: WorkerId, sig: Sig },
    /// Close the worker's request stream: it exits once it has answered what it holds.
    CloseRequests { worker: WorkerId },
}

/// The scheduler. See the module docs.
pub(crate) struct Dispatcher {
    config: Config,
    stats: Arc<Counters>,
    workers: Vec<Slot>,
    queue: VecDeque<Job>,
    actions: VecDeque<Action>,
    /// Workers asked for and not started yet, and how many of those are spares.
    spawning: usize,
    spawning_spares: usize,
    shutdown: bool,
    terminated: bool,
    startup_failures: u32,
    broken: Option<BrokenCause>,
    /// Moving averages of how long each task (by its index in the table) runs per input, in
    /// seconds; [`UNSEEN_RUN`] for those not seen.
    runs: Vec<f64>,
    /// Worker starts to retry, and when (after a failed start).
    retries: Vec<(Instant, bool)>,
    /// Since when worker starts have failed, and how many times in a row.
    spawn_failing: Option<(Instant, u32)>,
}

impl Dispatcher {
    /// A dispatcher that asks for its workers (and the spare) at once.
    pub(crate) fn new(config: Config, stats: Arc<Counters>) -> Self {
        let mut d = Dispatcher {
            config,
            stats,
            workers: Vec::new(),
            queue: VecDeque::new(),
            actions: VecDeque::new(),
            spawning: 0,
            spawning_spares: 0,
            shutdown: false,
            terminated: false,
            startup_failures: 0,
            broken: None,
            // Until a task shows that it is short, two of it go at a time (`UNSEEN_RUN`).
            runs: Vec::new(),
            retries: Vec::new(),
            spawn_failing: None,
        };
        for _ in 0..d.config.max_workers {
            d.spawn(false);
        }
        if d.config.spare {
            d.spawn(true);
        }
        d
    }

    /// The next thing to do, if any.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether `shutdown` was called.
    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown
    }

    /// Why the pool cannot run tasks any more, once it cannot.
    pub(crate) fn broken(&self) -> Option<&BrokenCause> {
        self.broken.as_ref()
    }

    /// Live workers plus those being started: the `workers` gauge of the stats.
    pub(crate) fn worker_count(&self) -> usize {
        self.workers.len() + self.spawning
    }

    /// Workers that take tasks (hello and initializer done), the spare not included: the
    /// `ready_workers` gauge of the stats.
    pub(crate) fn ready_workers(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| !w.spare && w.state == State::Ready)
            .count()
    }

    /// Whether some worker holds a job: a reply is due soon.
    pub(crate) fn busy(&self) -> bool {
        self.workers.iter().any(|w| !w.inflight.is_empty())
    }

    /// After shutdown: nothing queued and nothing in flight but initializers.
    pub(crate) fn finished(&self) -> bool {
        self.shutdown
            && self.queue.is_empty()
            && self
                .workers
                .iter()
                .all(|w| w.inflight.iter().all(Job::is_init))
    }

    fn slot(&mut self, id: WorkerId) -> Option<&mut Slot> {
        self.workers.iter_mut().find(|w| w.id == id)
    }

    // ---- events from submitters ----

    /// A job submitted.
    pub(crate) fn submit(&mut self, job: Job) {
        self.queue.push_back(job);
        if self.broken.is_some() || self.terminated {
            self.fail_queue();
        }
    }

    /// `shutdown(cancel_futures = true)`: Python cancels what has not started. A job put back in
    /// the queue after its worker died was running: it stays queued, to run again.
    pub(crate) fn cancel_pending(&mut self) {
        let stats = &self.stats;
        self.queue.retain_mut(|job| {
            let Owner::Future(sink) = &job.owner else {
                return false;
            };
            if !sink.pending() {
                return true;
            }
            stats.dequeued_cancelled();
            if let Owner::Future(sink) = std::mem::replace(&mut job.owner, Owner::Nobody) {
                sink.cancel();
            }
            false
        });
    }

    /// `shutdown`: no more submissions; the workers leave once the queue is done.
    pub(crate) fn shutdown(&mut self) {
        self.shutdown = true;
    }

    /// `terminate_workers` / `kill_workers`: signal every worker; what is queued fails. A worker
    /// that outlives SIGTERM by the grace period gets SIGKILL.
    pub(crate) fn terminate(&mut self, sig: Sig, now: Instant) {
        self.terminated = true;
        for (_, spare) in std::mem::take(&mut self.retries) {
            self.spawned(spare);
        }
        for worker in &mut self.workers {
            worker.poison(Poison::Terminated);
            if sig == Sig::Term {
                worker.term_since.get_or_insert(now);
            }
            self.actions.push_back(Action::Signal {
                worker: worker.id,
                sig,
            });
        }
        // No worker will run what is still queued (jobs put back after a death).
        self.fail_queue();
    }

    /// `Future::kill`: stop job `id` wherever it is.
    pub(crate) fn kill(&mut self, id: u64) {
        for worker in &mut self.workers {
            match worker.inflight.iter().position(|job| job.id == id) {
                Some(0) => {
                    self.actions
                        .push_back(worker.kill(Poison::Cancelled { id }));
                }
                Some(at) => {
                    // Sent ahead but not started. Its frame is in the pipe: it is asked back,
                    // and if the worker starts it first, it runs and its reply is dropped. Its
                    // place in the FIFO stays until one or the other comes.
                    let job = &mut worker.inflight[at];
                    if let Owner::Future(sink) = std::mem::replace(&mut job.owner, Owner::Nobody) {
                        self.stats.answered(false);
                        sink.kill();
                    }
                    if worker.revoke(id) {
                        self.actions.push_back(Action::Signal {
                            worker: worker.id,
                            sig: Sig::Urge,
                        });
                    }
                }
                None => continue,
            }
            return;
        }
        // Back in the queue after its worker died: it never runs again.
        if let Some(at) = self.queue.iter().position(|job| job.id == id)
            && let Some(mut job) = self.queue.remove(at)
            && let Owner::Future(sink) = std::mem::replace(&mut job.owner, Owner::Nobody)
        {
            self.stats.dequeued_failed();
            sink.kill();
        }
    }

    /// Fails every queued job with why the pool cannot run it.
    fn fail_queue(&mut self) {
        let error = |task: String| match &self.broken {
            _ if self.terminated => TaskError::Terminated { task },
            Some(cause) => TaskError::Broken {
                task,
                cause: cause.clone(),
            },
            None => unreachable!("only a terminated or broken pool fails its queue"),
        };
        if !self.terminated && self.broken.is_none() {
            return;
        }
        for job in self.queue.drain(..) {
            if let Owner::Future(sink) = job.owner {
                self.stats.dequeued_failed();
                sink.fail(error(job.name.to_owned()));
            }
        }
    }

    // ---- scheduling ----

    /// How many tasks a worker may hold while `job` is the next to send: with a fixed
    /// `prefetch`, that; adaptively, as many as run in [`AHEAD`] by the average run of the
    /// job's task (at least two, at most [`MAX_AHEAD`]): two (the running one and the next, so
    /// that no worker waits a round trip between tasks) once it takes a millisecond, and while
    /// its runs are not known yet. A task queued behind one that turns out long is taken back,
    /// see [`take_back`](Self::take_back).
    ///
    /// A worker that holds less than a few hundred microseconds of work runs dry while the I/O
    /// thread serves the other one: it sleeps on its request pipe, is woken for the next few,
    /// and each of those wake-ups costs more CPU than a tiny task. Bounding the depth by time,
    /// not by count, keeps what a worker holds ahead (sent, so counted as running and no longer
    /// cancellable) to about two milliseconds of work whatever the task; and by each task's own
    /// runs, so that long tasks submitted after many tiny ones of another task are not sent
    /// hundreds ahead.
    fn depth(config: &Config, runs: &[f64], job: &Job) -> usize {
        if !config.adaptive {
            return config.prefetch;
        }
        let per_input = runs.get(job.task as usize).copied().unwrap_or(UNSEEN_RUN);
        let run = per_input * f64::from(job.inputs.max(1));
        let by_time = AHEAD.as_secs_f64() / run.max(f64::MIN_POSITIVE);
        if by_time >= MAX_AHEAD as f64 {
            MAX_AHEAD
        } else {
            (by_time as usize).max(2)
        }
    }

    /// Gives queued jobs to ready workers, each up to the [`depth`](Self::depth) of the next
    /// job, a round at a time.
    pub(crate) fn dispatch(&mut self, now: Instant) {
        // Work with no one to run it: a job that came with the shutdown, after a spawn failure
        // that was not retried because nothing was queued then.
        if !self.queue.is_empty() && self.broken.is_none() && !self.terminated {
            while self.working() < self.config.max_workers {
                self.spawn(false);
            }
        }
        let Self {
            config,
            runs,
            workers,
            queue,
            stats,
            ..
        } = self;
        let adaptive = config.adaptive;
        let max_tasks = config.max_tasks_per_child;
        let mut sent = true;
        while sent && !queue.is_empty() {
            sent = false;
            // A worker whose task runs long comes last in each round: with a fixed depth it
            // takes a job only when no other worker does (a job it gave back must not bounce
            // back to it); adaptively, nothing is queued behind a long task at all.
            for long_pass in [false, true] {
                for worker in workers.iter_mut() {
                    let Some(next) = queue.front() else {
                        break;
                    };
                    let long = worker.running_long(now);
                    if long != long_pass {
                        continue;
                    }
                    let depth = if long && adaptive {
                        1
                    } else {
                        Self::depth(config, runs, next)
                    };
                    if worker.accepts(depth, max_tasks) && room_for(worker, next) {
                        send_next(queue, stats, worker, now);
                        sent = true;
                    }
                }
            }
        }
        self.take_back(now);
        // A worker that has run its `max_tasks_per_child` leaves once its last reply is in.
        if let Some(max) = max_tasks {
            for worker in &mut self.workers {
                if worker.sent >= max && worker.inflight.is_empty() && worker.retire() {
                    self.actions
                        .push_back(Action::CloseRequests { worker: worker.id });
                }
            }
        }
    }

    /// Asks for the tasks queued behind a long-running one back, when another worker is idle:
    /// a short task never waits behind a long one while a worker could run it. The worker gives
    /// back those that have not started ([`ReplyKind::Revoked`]); they run elsewhere.
    ///
    /// Adaptively, of more than [`CROWD`] queued behind a long task, all but the next are taken
    /// back though no worker is idle: tasks queued deep because their task looked short wait
    /// in the pool's queue, for whichever worker is free first, rather than behind a task that
    /// turned out long.
    fn take_back(&mut self, now: Instant) {
        let idle = self.idle_worker();
        let adaptive = self.config.adaptive;
        if !idle && !adaptive {
            return;
        }
        for worker in &mut self.workers {
            if worker.state != State::Ready || !worker.running_long(now) {
                continue;
            }
            let asked = if idle {
                worker.revoke_waiting(0)
            } else {
                worker.waiting_more_than(CROWD) && worker.revoke_waiting(1)
            };
            if asked {
                self.actions.push_back(Action::Signal {
                    worker: worker.id,
                    sig: Sig::Urge,
                });
            }
        }
    }

    /// Whether a worker that takes tasks holds none.
    fn idle_worker(&self) -> bool {
        let max_tasks = self.config.max_tasks_per_child;
        self.workers
            .iter()
            .any(|w| w.inflight.is_empty() && w.accepts(1, max_tasks))
    }

    /// The nearest moment something is due: a task's time limit, a handshake's deadline, the
    /// end of a SIGTERM's grace, a retry of a failed worker start, the moment a task that others
    /// wait behind becomes long while a worker is idle.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let limits = self.config.limits;
        let workers = self
            .workers
            .iter()
            .filter_map(|w| w.deadline(self.config.timeout, limits));
        let retries = self.retries.iter().map(|(at, _)| *at);
        let crowd = if self.idle_worker() {
            Some(0)
        } else {
            self.config.adaptive.then_some(CROWD)
        };
        let long = crowd
            .into_iter()
            .flat_map(|n| self.workers.iter().filter_map(move |w| w.long_at(n)));
        workers.chain(retries).chain(long).min()
    }

    /// Acts on what is due at `now`: kills the workers whose running task is past its limit (an
    /// initializer has none), that have not shaken hands in time, or that outlived SIGTERM; starts
    /// the workers whose retry is due.
    pub(crate) fn tick(&mut self, now: Instant) {
        let limits = self.config.limits;
        for worker in &mut self.workers {
            if let Some(why) = worker.overdue(now, self.config.timeout, limits) {
                self.actions.push_back(worker.kill(why));
            }
        }
        let due: Vec<bool> = self
            .retries
            .iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, spare)| *spare)
            .collect();
        self.retries.retain(|(at, _)| *at > now);
        for spare in due {
            // Counted as being started since the failure.
            self.actions.push_back(Action::Spawn { spare });
        }
    }

    // ---- events from workers ----

    /// A worker the driver started for an [`Action::Spawn`]; `pid`, and `node` for a worker on
    /// another machine, name it in errors.
    pub(crate) fn worker_started(
        &mut self,
        id: WorkerId,
        pid: u32,
        node: Option<String>,
        spare: bool,
        now: Instant,
    ) {
        self.spawned(spare);
        self.spawn_failing = None;
        // Asked for as the spare, but a worker died meanwhile: it works at once. And never more
        // than `max_workers` take tasks.
        let working = self.working();
        let spare = if spare && working < self.config.max_workers {
            false
        } else {
            spare || working > self.config.max_workers
        };
        self.workers.push(Slot::new(id, pid, node, spare, now));
    }

    /// An [`Action::Spawn`] that failed: retried with backoff, until starts have failed for
    /// [`Limits::spawn_retry`]; then the pool is broken.
    pub(crate) fn spawn_failed(&mut self, spare: bool, error: &std::io::Error, now: Instant) {
        self.spawned(spare);
        let (since, count) = self.spawn_failing.get_or_insert((now, 0));
        *count += 1;
        let (since, count) = (*since, *count);
        if self.broken.is_some() || self.terminated || self.shutdown && self.queue.is_empty() {
            return;
        }
        if now.saturating_duration_since(since) >= self.config.limits.spawn_retry {
            self.broken = Some(BrokenCause::CannotStart {
                tries: count,
                during: now.saturating_duration_since(since),
                last: StartupFailure::spawn(error),
            });
            self.fail_queue();
            return;
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << count.min(16).saturating_sub(1))
            .min(MAX_BACKOFF);
        self.spawning += 1;
        self.spawning_spares += usize::from(spare);
        self.retries.push((now + backoff, spare));
    }

    /// Where the driver puts bytes read from worker `id`, then calls [`received`](Self::received).
    pub(crate) fn read_buf(&mut self, id: WorkerId) -> Option<Room<'_>> {
        let max = self.config.max_frame;
        Some(self.slot(id)?.inbuf.space(max))
    }

    /// `n` bytes were read into [`read_buf`](Self::read_buf).
    pub(crate) fn received(&mut self, id: WorkerId, n: usize) {
        if let Some(worker) = self.slot(id) {
            worker.inbuf.filled(n);
        }
    }

    /// Worker `id`'s reply stream ended, or its request stream broke (EPIPE). Its exit normally
    /// follows at once; if it does not within [`Limits::closed_grace`], it is killed.
    pub(crate) fn stream_closed(&mut self, id: WorkerId, now: Instant) {
        if let Some(worker) = self.slot(id) {
            worker.closed_since.get_or_insert(now);
        }
    }

    /// Handles every whole frame worker `id` sent: call after a round of reads.
    pub(crate) fn parse(&mut self, id: WorkerId, now: Instant) {
        if let Some(at) = self.workers.iter().position(|w| w.id == id) {
            self.handle_frames(at, now);
        }
    }

    /// The bytes waiting to go to worker `id`, if any; report what was written with
    /// [`transmitted`](Self::transmitted).
    pub(crate) fn transmit(&mut self, id: WorkerId) -> Option<&[u8]> {
        self.slot(id)?.transmit()
    }

    /// `n` bytes of [`transmit`](Self::transmit) were written.
    pub(crate) fn transmitted(&mut self, id: WorkerId, n: usize) {
        if let Some(worker) = self.slot(id) {
            worker.out.advance(n);
        }
    }

    /// Whether there are bytes waiting for worker `id`.
    pub(crate) fn wants_write(&self, id: WorkerId) -> bool {
        self.workers
            .iter()
            .find(|w| w.id == id)
            .is_some_and(|w| w.state != State::Retired && !w.out.is_empty())
    }

    /// Handles every whole frame worker `at` sent.
    fn handle_frames(&mut self, at: usize, now: Instant) {
        // Out of the slot while its frames are handled, so that they can borrow from it.
        let mut inbuf = std::mem::take(&mut self.workers[at].inbuf);
        let mut used = 0;
        let problem = loop {
            let handled = if let Some((split, len)) = inbuf.take_split(used) {
                used += len;
                let frame = Frame {
                    kind: split.kind,
                    id: split.id,
                    aux: split.aux,
                    payload: &[],
                };
                self.handle_frame(at, frame, Some(split.tail), now)
            } else {
                match frame::parse(&inbuf.data()[used..], self.config.max_frame) {
                    Ok(Some((frame, len))) => {
                        used += len;
                        self.handle_frame(at, frame, None, now)
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(ProtocolViolation::Frame(e)),
                }
            };
            if let Err(problem) = handled {
                break Some(problem);
            }
        };
        inbuf.consume(used);
        let worker = &mut self.workers[at];
        if let Some(problem) = problem {
            inbuf.clear();
            self.actions
                .push_back(worker.kill(Poison::Protocol(problem)));
        }
        worker.inbuf = inbuf;
    }

    /// Handles one whole frame worker `at` sent: `tail` holds the tail of a split one.
    fn handle_frame(
        &mut self,
        at: usize,
        frame: Frame<'_>,
        tail: Option<Vec<u8>>,
        now: Instant,
    ) -> Result<(), ProtocolViolation> {
        let worker = &mut self.workers[at];
        if worker.state == State::Handshake {
            hello(frame, self.config.fingerprint).map_err(ProtocolViolation::Handshake)?;
            if worker.greeted(self.config.initializer.as_ref(), now) {
                self.startup_failures = 0;
            }
            return Ok(());
        }
        // Only a value or an error may be split.
        let split = frame.kind & frame::SPLIT != 0;
        let Some(kind) = ReplyKind::from_byte(frame.kind & !frame::SPLIT).filter(|k| {
            *k != ReplyKind::Hello && (!split || matches!(k, ReplyKind::Ok | ReplyKind::Failed))
        }) else {
            return Err(ProtocolViolation::UnknownKind { kind: frame.kind });
        };
        if kind == ReplyKind::Revoked {
            return self.given_back(at, frame.id, now);
        }
        if worker.inflight.front().is_none_or(|job| job.id != frame.id) {
            return Err(ProtocolViolation::NotRunning { id: frame.id });
        }
        let Some(job) = worker.inflight.pop_front() else {
            return Ok(());
        };
        // A give-back asked for it came too late.
        worker.revoking.retain(|id| *id != job.id);
        // The run time the worker measured: the time between replies here would say nothing
        // true of tiny tasks, whose replies are read in batches (all but the first of a batch
        // would seem to take no time at all).
        if !job.is_init() {
            let per_input = f64::from(frame.aux) * 1e-9 / f64::from(job.inputs.max(1));
            let task = job.task as usize;
            if self.runs.len() <= task {
                self.runs.resize(task + 1, UNSEEN_RUN);
            }
            self.runs[task] = 0.8 * self.runs[task] + 0.2 * per_input;
        }
        worker.front_since = (!worker.inflight.is_empty()).then_some(now);
        let payload = tail.map_or(Payload::Encoded(frame.payload), Payload::Bytes);
        match deliver(job, kind, payload, worker.pid, &self.stats) {
            Delivered::Initialized => {
                worker.state = State::Ready;
                self.startup_failures = 0;
            }
            Delivered::InitFailed(why) => {
                self.actions.push_back(worker.kill(Poison::InitFailed(why)));
            }
            Delivered::Aborting => {
                // Its death is explained: no job behind this one was running.
                worker.poison(Poison::Aborting);
                worker.front_since = None;
            }
            Delivered::Done => {}
        }
        Ok(())
    }

    /// Worker `at` gave job `id` back: it never ran, and goes first to the next worker that
    /// takes tasks (or nowhere, if it was killed meanwhile).
    fn given_back(&mut self, at: usize, id: u64, now: Instant) -> Result<(), ProtocolViolation> {
        let job = self.workers[at]
            .given_back(id, now)
            .ok_or(ProtocolViolation::NotRunning { id })?;
        // A kill meant for it (it looked like the running job) finds it here: it never runs.
        let killed = matches!(&self.workers[at].state,
            State::Dying(Poison::Cancelled { id: meant }, _) if *meant == id);
        if killed {
            if let Owner::Future(sink) = job.owner {
                self.stats.answered(false);
                sink.kill();
            }
        } else if job.has_future() {
            // The worker never started it: it is pending again, and `cancel` can stop it.
            if let Owner::Future(sink) = &job.owner {
                sink.given_back();
            }
            self.stats.requeued();
            self.queue.push_front(job);
            // A pool terminated or broken meanwhile runs nothing more.
            self.fail_queue();
        }
        Ok(())
    }

    /// Worker `id` has exited (`exit`), and its stream has been read to the end: fails the job it
    /// was running, re-queues the rest, replaces it. `last_words` is the end of its stderr.
    pub(crate) fn worker_exited(&mut self, id: WorkerId, exit: Exit, last_words: &str) {
        let Some(at) = self.workers.iter().position(|w| w.id == id) else {
            return;
        };
        let mut worker = self.workers.swap_remove(at);
        let ready = worker.was_ready();
        tracing::info!(pid = worker.pid, %exit, ready, "cf: worker exited");
        if ready {
            self.fail_running(&mut worker, exit, last_words);
        } else if self.broken.is_none() && !self.terminated {
            // Once the pool is broken or terminated it kills the workers still starting: their
            // deaths are not failures of their own, and must not replace the cause.
            self.startup_failures += 1;
            let pid = worker.pid;
            let (last, refused) = match &worker.state {
                State::Dying(Poison::InitFailed(message), _) => (
                    StartupFailure::Initializer {
                        task: self
                            .config
                            .initializer
                            .as_ref()
                            .map_or("", |init| init.name)
                            .to_owned(),
                        message: message.clone(),
                    },
                    false,
                ),
                State::Dying(Poison::Protocol(ProtocolViolation::Handshake(reason)), _) => (
                    StartupFailure::Handshake {
                        pid,
                        reason: reason.clone(),
                    },
                    reason.is_final(),
                ),
                _ => (StartupFailure::Exited { pid, exit }, false),
            };
            if refused {
                // Another build of the program: every replacement would be refused too.
                self.broken = Some(BrokenCause::Refused { last });
            } else if self.startup_failures >= MAX_STARTUP_FAILURES {
                self.broken = Some(BrokenCause::Startup {
                    failures: self.startup_failures,
                    last,
                });
            }
        }
        // Jobs queued behind the one that was running go first to the next worker, unless the
        // pool is being terminated.
        while let Some(job) = worker.inflight.pop_back() {
            match job.owner {
                Owner::Initializer => {}
                Owner::Future(sink) if self.terminated => {
                    self.stats.answered(false);
                    sink.fail(TaskError::Terminated {
                        task: job.name.to_owned(),
                    });
                }
                Owner::Nobody if self.terminated => {}
                Owner::Future(_) | Owner::Nobody => {
                    if job.has_future() {
                        self.stats.requeued();
                    }
                    self.queue.push_front(job);
                }
            }
        }
        self.replace(worker.spare);
        if self.broken.is_some() {
            for worker in &mut self.workers {
                while let Some(job) = worker.inflight.pop_back() {
                    if !job.is_init() {
                        self.queue.push_front(job);
                    }
                }
                self.actions.push_back(worker.kill(Poison::Terminated));
            }
            self.fail_queue();
        }
    }

    /// Fails the job a dead worker was running, with what is known of why it died.
    fn fail_running(&mut self, worker: &mut Slot, exit: Exit, stderr: &str) {
        let poison = match &worker.state {
            State::Dying(poison, _) => Some(poison.clone()),
            _ => None,
        };
        if matches!(poison, Some(Poison::Aborting)) {
            return;
        }
        let Some(mut job) = worker.inflight.pop_front() else {
            return;
        };
        if !job.has_future() {
            return;
        }
        // A kill meant for a job whose reply came first hit the job behind it: that one was not
        // at fault, and runs again elsewhere.
        let meant_for = poison.as_ref().and_then(Poison::meant_for);
        if meant_for.is_some_and(|id| id != job.id) {
            worker.inflight.push_front(job);
            return;
        }
        let (task, pid, node) = (job.name.to_owned(), worker.pid, worker.node.clone());
        let error = match poison {
            Some(Poison::Cancelled { .. }) => {
                self.stats.answered(false);
                if let Owner::Future(sink) = job.owner {
                    sink.kill();
                }
                return;
            }
            Some(Poison::Protocol(violation)) => TaskError::Protocol {
                task,
                pid,
                node,
                violation,
            },
            Some(Poison::TimedOut { limit, .. }) => TaskError::TimeLimit {
                task,
                pid,
                node,
                limit,
            },
            None if !worker.inbuf.is_empty() => {
                let (have, total) = worker.inbuf.held();
                TaskError::Protocol {
                    task,
                    pid,
                    node,
                    violation: ProtocolViolation::CutShort { have, total },
                }
            }
            // A death the pool did not cause: the task may run again (`retries`).
            None => {
                let error = self.death(task, (pid, node), exit, stderr);
                let left = self.tries_left(&job);
                if left > 0 {
                    return self.run_again(job, error, left);
                }
                if job.deaths.is_empty() {
                    error
                } else {
                    let mut deaths = job.deaths.take();
                    deaths.push(error);
                    let task = job.name.to_owned();
                    TaskError::RetriesExhausted { task, deaths }
                }
            }
            // A worker whose initializer failed was never ready: it ran no task.
            Some(Poison::Terminated | Poison::Aborting | Poison::InitFailed(_)) => {
                self.death(task, (pid, node), exit, stderr)
            }
        };
        let Owner::Future(sink) = job.owner else {
            return;
        };
        tracing::debug!(task = job.name, pid, error = %error, "cf: task failed with its worker");
        self.stats.answered(false);
        sink.fail(error);
    }

    /// How many more tries `job` has, if its worker dies under it and the pool can still run it.
    fn tries_left(&self, job: &Job) -> u32 {
        if self.terminated || self.broken.is_some() {
            return 0;
        }
        job.retries.unwrap_or(self.config.retries)
    }

    /// Puts `job`, whose worker died of `error`, back at the front of the queue for one of its
    /// `left` tries.
    fn run_again(&mut self, mut job: Job, error: TaskError, left: u32) {
        tracing::info!(task = job.name, error = %error, left, "cf: task runs again");
        job.retries = Some(left - 1);
        job.deaths.push(error);
        self.stats.requeued();
        self.queue.push_front(job);
    }

    /// The error of a task whose worker died for no reason the parent gave it.
    fn death(
        &self,
        task: String,
        (pid, node): (u32, Option<String>),
        exit: Exit,
        stderr: &str,
    ) -> TaskError {
        match self.config.memory_limit {
            Some(limit) if ran_out_of_memory(exit, stderr) => TaskError::MemoryLimit {
                task,
                pid,
                node,
                limit,
            },
            _ if exit == Exit::Signal(11) && stderr.contains(STACK_OVERFLOW) => {
                TaskError::StackOverflow { task, pid, node }
            }
            _ => TaskError::WorkerDied {
                task,
                pid,
                node,
                exit,
                stderr: stderr.to_owned(),
            },
        }
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
            self.stats.respawned();
            if let Some(spare) = self
                .workers
                .iter_mut()
                .find(|w| w.spare && w.state == State::Ready)
            {
                tracing::info!(pid = spare.pid, "cf: spare worker takes over");
                spare.spare = false;
            } else {
                self.spawn(false);
            }
        }
        let has_spare = self.workers.iter().any(|w| w.spare) || self.spawning_spares > 0;
        if self.config.spare && !self.shutdown && !has_spare {
            self.spawn(true);
        }
    }

    /// Asks the driver for a worker.
    fn spawn(&mut self, spare: bool) {
        tracing::info!(spare, "cf: starting a worker");
        self.spawning += 1;
        self.spawning_spares += usize::from(spare);
        self.actions.push_back(Action::Spawn { spare });
    }

    /// Counts a requested worker out of those being started.
    fn spawned(&mut self, spare: bool) {
        self.spawning = self.spawning.saturating_sub(1);
        if spare {
            self.spawning_spares = self.spawning_spares.saturating_sub(1);
        }
    }

    /// Workers that take tasks, or will once started.
    fn working(&self) -> usize {
        let live = self.workers.iter().filter(|w| !w.spare).count();
        live + self.spawning - self.spawning_spares
    }

    /// The I/O thread is going away: fails every job still held or queued.
    pub(crate) fn abandon(&mut self) {
        let queued = self.queue.drain(..);
        let held = self.workers.iter_mut().flat_map(|w| w.inflight.drain(..));
        for job in held.chain(queued) {
            if let Owner::Future(sink) = job.owner {
                sink.fail(TaskError::Broken {
                    task: job.name.to_owned(),
                    cause: BrokenCause::IoThreadStopped,
                });
            }
        }
    }
}

/// What a reply means for the worker that sent it.
enum Delivered {
    /// Its initializer succeeded: it is ready.
    Initialized,
    /// Its initializer failed, for this reason.
    InitFailed(String),
    /// Its task panicked and it is aborting.
    Aborting,
    /// Nothing: it goes on.
    Done,
}

/// Hands the reply to `job` to whoever waits for it.
fn deliver(
    job: Job,
    kind: ReplyKind,
    payload: Payload<'_>,
    pid: u32,
    stats: &Counters,
) -> Delivered {
    match job.owner {
        Owner::Initializer if kind == ReplyKind::Ok => return Delivered::Initialized,
        Owner::Initializer => {
            let payload = match &payload {
                Payload::Encoded(bytes) => bytes,
                // A split error: its text is not needed ("it returned an error").
                Payload::Bytes(_) => &[][..],
            };
            return Delivered::InitFailed(init_failure(kind, payload));
        }
        Owner::Future(sink) => {
            stats.answered(kind == ReplyKind::Ok);
            if kind != ReplyKind::Ok {
                tracing::debug!(task = job.name, pid, ?kind, "cf: task failed");
            }
            sink.reply(kind, payload, job.name);
        }
        Owner::Nobody => {}
    }
    if kind == ReplyKind::Aborting {
        Delivered::Aborting
    } else {
        Delivered::Done
    }
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

/// Whether `job`'s arguments fit among those waiting in `worker` behind its running job (see
/// [`AHEAD_BYTES`]). The running job and the next are sent whatever their size.
fn room_for(worker: &Slot, job: &Job) -> bool {
    let len = job.args.len();
    len < SMALL_ARGS
        || worker.inflight.len() < 2
        || worker
            .inflight
            .iter()
            .skip(1)
            .map(|job| job.args.len())
            .sum::<usize>()
            + len
            <= AHEAD_BYTES
}

/// Sends `worker` the next queued job that still wants to run: a job killed after it was sent
/// is dropped for good, one cancelled while queued is counted and dropped.
fn send_next(queue: &mut VecDeque<Job>, stats: &Counters, worker: &mut Slot, now: Instant) {
    while let Some(job) = queue.pop_front() {
        let Owner::Future(sink) = &job.owner else {
            continue;
        };
        if !sink.set_running() {
            stats.dequeued_cancelled();
            continue;
        }
        stats.sent();
        worker.send(job, now);
        return;
    }
}

/// Checks a worker's first frame.
fn hello(frame: frame::Frame<'_>, fingerprint: u64) -> Result<(), HandshakeError> {
    if frame.kind != ReplyKind::Hello as u8 {
        return Err(HandshakeError::NotHello { kind: frame.kind });
    }
    if frame.aux != PROTOCOL_VERSION {
        return Err(HandshakeError::ProtocolVersion {
            worker: frame.aux,
            expected: PROTOCOL_VERSION,
        });
    }
    let theirs = frame
        .payload
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes);
    if theirs != Some(fingerprint) {
        return Err(HandshakeError::TaskTableDiffers);
    }
    Ok(())
}

impl Job {
    /// The initializer's job, sent to each worker after its handshake.
    fn initializer(init: &Init) -> Job {
        Job {
            id: 0,
            request: RequestKind::Call,
            task: init.task,
            name: init.name,
            args: init.args.clone().into(),
            owner: Owner::Initializer,
            timeout: None,
            inputs: 1,
            retries: None,
            deaths: Deaths::default(),
        }
    }
}

#[cfg(test)]
mod harness;
#[cfg(test)]
mod prop;
#[cfg(test)]
mod test;
