//! One worker as the scheduler sees it: where it is in its life, the jobs it holds, and its bytes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::super::buffer::{InBuf, Outbox};
use super::super::job::{Args, Job};
use super::{Action, Init, Limits, Sig};
use crate::error::{HandshakeError, ProtocolViolation};

/// Names a worker between the dispatcher and the driver; never reused within a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct WorkerId(pub(crate) u64);

/// Why a worker is on its way out; its death is then explained by this, not by the task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Poison {
    /// It sent something the protocol does not allow.
    Protocol(ProtocolViolation),
    /// Its running task, job `id`, passed its time limit.
    TimedOut { id: u64, limit: Duration },
    /// Its running task, job `id`, was stopped with `kill`.
    Cancelled { id: u64 },
    /// `terminate_workers`, `kill_workers`, or a broken pool.
    Terminated,
    /// Its initializer failed.
    InitFailed(String),
    /// It reported a panic and is aborting (a binary built with `panic = "abort"`).
    Aborting,
}

impl Poison {
    /// The job a kill was meant for (a cancelled or timed-out one).
    pub(crate) fn meant_for(&self) -> Option<u64> {
        match *self {
            Poison::Cancelled { id } | Poison::TimedOut { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// Where a worker is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Started; its hello has not come.
    Handshake,
    /// Its hello was accepted and its initializer runs.
    Initializing,
    /// It takes tasks.
    Ready,
    /// It ran its `max_tasks_per_child`: its requests are closed and it exits.
    Retired,
    /// It is on its way out for this reason; the flag says whether it had become ready.
    Dying(Poison, bool),
}

pub(crate) struct Slot {
    pub(crate) id: WorkerId,
    pub(crate) pid: u32,
    /// Where it runs, for a remote worker (`cn17 (rank 3)`); names it in errors with its pid.
    pub(crate) node: Option<String>,
    pub(crate) state: State,
    /// Kept idle to replace the next worker that dies.
    pub(crate) spare: bool,
    /// Bytes on their way to the worker.
    pub(crate) out: Outbox,
    /// Bytes read and not yet parsed.
    pub(crate) inbuf: InBuf,
    /// Jobs sent and not answered, oldest (the running one) first.
    pub(crate) inflight: VecDeque<Job>,
    /// When the oldest job in flight started running.
    pub(crate) front_since: Option<Instant>,
    /// Jobs in flight it was asked to give back, and has not answered.
    pub(crate) revoking: Vec<u64>,
    /// Tasks sent to it, for `max_tasks_per_child`.
    pub(crate) sent: u64,
    /// When it was started, for the handshake's deadline.
    pub(crate) started: Instant,
    /// When it was sent SIGTERM, for the grace before SIGKILL.
    pub(crate) term_since: Option<Instant>,
    /// When its reply stream ended or its request stream broke while it lived.
    pub(crate) closed_since: Option<Instant>,
}

impl Slot {
    pub(crate) fn new(
        id: WorkerId,
        pid: u32,
        node: Option<String>,
        spare: bool,
        now: Instant,
    ) -> Self {
        Slot {
            id,
            pid,
            node,
            state: State::Handshake,
            spare,
            out: Outbox::default(),
            inbuf: InBuf::default(),
            inflight: VecDeque::new(),
            front_since: None,
            revoking: Vec::new(),
            sent: 0,
            started: now,
            term_since: None,
            closed_since: None,
        }
    }

    /// Whether it had become ready (its death then fails the task it was running).
    pub(crate) fn was_ready(&self) -> bool {
        match self.state {
            State::Handshake | State::Initializing => false,
            State::Ready | State::Retired => true,
            State::Dying(_, ready) => ready,
        }
    }

    /// Whether it can take another task now: not once its stream closed (it is killed at the
    /// end of the grace, whatever replies still come).
    pub(crate) fn accepts(&self, depth: usize, max_tasks: Option<u64>) -> bool {
        self.state == State::Ready
            && self.closed_since.is_none()
            && !self.spare
            && self.inflight.len() < depth
            && max_tasks.is_none_or(|max| self.sent < max)
    }

    /// Queues `job`'s frame and records it in flight.
    pub(crate) fn send(&mut self, job: Job, now: Instant) {
        match &job.args {
            Args::Bytes(bytes) => {
                self.out
                    .push_split_call(job.request as u8, job.id, job.task, bytes.len());
            }
            args => self
                .out
                .push_call(job.request as u8, job.id, job.task, args),
        }
        if self.inflight.is_empty() {
            self.front_since = Some(now);
        }
        if !job.is_init() {
            self.sent += 1;
        }
        self.inflight.push_back(job);
    }

    /// Whether its running task has run for `SHORT_TASK` by `now`.
    pub(crate) fn running_long(&self, now: Instant) -> bool {
        self.front_since
            .is_some_and(|since| now.saturating_duration_since(since) >= super::SHORT_TASK)
    }

    /// Whether more than `n` jobs wait behind the running one that are not asked back yet.
    pub(crate) fn waiting_more_than(&self, n: usize) -> bool {
        // `revoking` may name the front job (a give-back that came too late): count only the
        // jobs behind it that are not asked back yet.
        self.inflight
            .iter()
            .skip(1)
            .filter(|job| !job.is_init() && !self.revoking.contains(&job.id))
            .nth(n)
            .is_some()
    }

    /// When its running task becomes long (after `SHORT_TASK`), if more than `n` tasks wait
    /// behind it that are not asked back yet: then they are.
    pub(crate) fn long_at(&self, n: usize) -> Option<Instant> {
        if self.state != State::Ready || !self.waiting_more_than(n) {
            return None;
        }
        self.front_since?.checked_add(super::SHORT_TASK)
    }

    /// Asks for the jobs behind the running one back but the first `keep`, the last first (each
    /// comes back to the front of the queue, so they keep their order); true if it asked for
    /// any.
    pub(crate) fn revoke_waiting(&mut self, keep: usize) -> bool {
        let mut asked = false;
        for job in self.inflight.iter().skip(1 + keep).rev() {
            if job.is_init() || self.revoking.contains(&job.id) {
                continue;
            }
            self.out.push_revoke(job.id);
            self.revoking.push(job.id);
            asked = true;
        }
        asked
    }

    /// Asks for job `id` back, if it waits behind the running one and is not asked back yet;
    /// true if it asked.
    pub(crate) fn revoke(&mut self, id: u64) -> bool {
        let waits = self
            .inflight
            .iter()
            .skip(1)
            .any(|job| job.id == id && !job.is_init());
        if !waits || self.revoking.contains(&id) {
            return false;
        }
        self.out.push_revoke(id);
        self.revoking.push(id);
        true
    }

    /// The job `id` it gave back (it never ran), if it was asked to.
    pub(crate) fn given_back(&mut self, id: u64, now: Instant) -> Option<Job> {
        let asked = self.revoking.iter().position(|r| *r == id)?;
        self.revoking.swap_remove(asked);
        let at = self.inflight.iter().position(|job| job.id == id)?;
        let job = self.inflight.remove(at)?;
        if at == 0 {
            // Its reply raced the task before it: the next one starts now.
            self.front_since = (!self.inflight.is_empty()).then_some(now);
        }
        self.sent = self.sent.saturating_sub(1);
        Some(job)
    }

    /// The bytes to write to it next, if any (none once its requests are closed).
    pub(crate) fn transmit(&mut self) -> Option<&[u8]> {
        if self.state == State::Retired {
            return None;
        }
        let inflight = &self.inflight;
        self.out.front(move |id| {
            inflight
                .iter()
                .find(|job| job.id == id)
                .map(|job| &job.args[..])
        })
    }

    /// Its hello was accepted: it runs the initializer first, if there is one. True if it is
    /// ready at once.
    pub(crate) fn greeted(&mut self, init: Option<&Init>, now: Instant) -> bool {
        match init {
            Some(init) => {
                self.state = State::Initializing;
                self.send(Job::initializer(init), now);
                false
            }
            None => {
                self.state = State::Ready;
                true
            }
        }
    }

    /// Marks it on its way out for `why`, unless it already is (the first reason sticks).
    pub(crate) fn poison(&mut self, why: Poison) {
        if !matches!(self.state, State::Dying(..)) {
            self.state = State::Dying(why, self.was_ready());
        }
    }

    /// [`poison`](Self::poison)s it and asks for SIGKILL.
    pub(crate) fn kill(&mut self, why: Poison) -> Action {
        self.poison(why);
        Action::Signal {
            worker: self.id,
            sig: Sig::Kill,
        }
    }

    /// Closes its requests after its last task; false if it is not ready (already leaving).
    pub(crate) fn retire(&mut self) -> bool {
        if self.state == State::Ready {
            self.state = State::Retired;
            true
        } else {
            false
        }
    }

    /// When its running task passes its time limit, if it has one and nothing else ends it first.
    fn task_deadline(&self, pool: Option<Duration>) -> Option<Instant> {
        if matches!(self.state, State::Dying(..)) {
            return None;
        }
        let job = self.inflight.front().filter(|job| !job.is_init())?;
        self.front_since?.checked_add(job.limit(pool)?)
    }

    /// The nearest moment something about it is due: its task's time limit, its handshake's
    /// deadline, or the end of its SIGTERM's grace.
    pub(crate) fn deadline(&self, pool: Option<Duration>, limits: Limits) -> Option<Instant> {
        let own = match self.state {
            State::Handshake => self.started.checked_add(limits.handshake),
            State::Dying(Poison::Terminated, _) => self.term_since?.checked_add(limits.term_grace),
            _ => self.task_deadline(pool),
        };
        let closed = self
            .closed_since
            .filter(|_| !matches!(self.state, State::Dying(..)))
            .and_then(|since| since.checked_add(limits.closed_grace));
        own.into_iter().chain(closed).min()
    }

    /// Why it must be killed at `now`, if it must.
    pub(crate) fn overdue(
        &mut self,
        now: Instant,
        pool: Option<Duration>,
        limits: Limits,
    ) -> Option<Poison> {
        if self.deadline(pool, limits)? > now {
            return None;
        }
        let closed = self
            .closed_since
            .and_then(|since| since.checked_add(limits.closed_grace));
        if closed.is_some_and(|at| at <= now) && !matches!(self.state, State::Dying(..)) {
            return Some(Poison::Protocol(ProtocolViolation::Closed));
        }
        match self.state {
            State::Handshake => Some(Poison::Protocol(ProtocolViolation::Handshake(
                HandshakeError::Silent {
                    limit: limits.handshake,
                },
            ))),
            State::Dying(Poison::Terminated, _) => {
                // SIGKILL once; the poison stays `Terminated`.
                self.term_since = None;
                Some(Poison::Terminated)
            }
            _ => {
                let job = self.inflight.front()?;
                Some(Poison::TimedOut {
                    id: job.id,
                    limit: job.limit(pool).unwrap_or_default(),
                })
            }
        }
    }
}
