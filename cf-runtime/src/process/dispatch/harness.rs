//! A world for the dispatcher without processes: fake workers that read the bytes it writes and
//! answer with frames, a clock the test moves, and futures that record how they ended.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cf_worker::frame::{self, PROTOCOL_VERSION, ReplyKind, RequestKind};
use cf_worker::{Never, PanicInfo, Payload};

use super::{Action, Config, Dispatcher, Init, Sig, WorkerId};
use crate::error::{Exit, TaskError};
use crate::process::job::{Deaths, FutureEnd, Job, Owner, Sink};
use crate::process::shared::Counters;

pub(crate) const FINGERPRINT: u64 = 0xcf;

/// How a job's future ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Reply(ReplyKind, Vec<u8>),
    Failed(TaskError<Never>),
    Cancelled,
    /// Cancelled although it was running (`kill`).
    Killed,
}

#[derive(Default)]
pub(crate) struct Log {
    pub(crate) ends: BTreeMap<u64, Vec<End>>,
}

/// A future's completing end that writes down how it ended.
pub(crate) struct Probe {
    id: u64,
    log: Arc<Mutex<Log>>,
    /// The user cancelled the future (`Future::cancel`) while it was pending.
    cancelled: Arc<AtomicBool>,
    running: AtomicBool,
    /// Put back in the queue after running: no longer pending.
    started: Arc<AtomicBool>,
}

impl Probe {
    fn end(&self, end: End) {
        self.log
            .lock()
            .unwrap()
            .ends
            .entry(self.id)
            .or_default()
            .push(end);
    }
}

impl Sink for Probe {
    fn set_running(&self) -> bool {
        if self.cancelled.load(Ordering::SeqCst) {
            self.end(End::Cancelled);
            return false;
        }
        self.running.store(true, Ordering::SeqCst);
        self.started.store(true, Ordering::SeqCst);
        true
    }
    fn pending(&self) -> bool {
        !self.started.load(Ordering::SeqCst)
    }
    fn given_back(&self) {
        self.running.store(false, Ordering::SeqCst);
        self.started.store(false, Ordering::SeqCst);
    }
    fn reply(self: Arc<Self>, kind: ReplyKind, payload: Payload<'_>, _: &str) {
        // A split reply as its whole encoding: its length prefix, then its bytes.
        let bytes = match payload {
            Payload::Encoded(bytes) => bytes.to_vec(),
            Payload::Bytes(tail) => {
                let mut bytes = Vec::new();
                cf_worker::bytes_prefix(tail.len(), &mut bytes);
                bytes.extend_from_slice(&tail);
                bytes
            }
        };
        self.end(End::Reply(kind, bytes));
    }
    fn fail(self: Arc<Self>, error: TaskError<Never>) {
        self.end(End::Failed(error));
    }
    fn cancel(self: Arc<Self>) {
        self.end(End::Cancelled);
    }
    fn kill(self: Arc<Self>) {
        self.end(End::Killed);
    }
    fn abandon(self: Arc<Self>) {}
}

/// A worker process as a test plays it.
#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) pid: u32,
    /// Calls received and not answered: (job id, kind, task).
    pub(crate) calls: VecDeque<(u64, u8, u32)>,
    /// Give-backs asked for and not acted on: job ids.
    pub(crate) revokes: Vec<u64>,
    /// Calls skipped (given back) whose `Revoked` is not written yet.
    pub(crate) skipped: Vec<u64>,
    /// Bytes of a call frame not complete yet.
    partial: Vec<u8>,
    /// Signals the dispatcher asked for, but the urges to give calls back.
    pub(crate) signals: Vec<Sig>,
    /// Urges to give calls back (SIGURG) it got.
    pub(crate) urged: u32,
    /// Its requests were closed.
    pub(crate) closed: bool,
    /// It sent its handshake.
    pub(crate) greeted: bool,
    /// It said it is aborting.
    pub(crate) aborting: bool,
    /// It finished its handshake and initializer unharmed, as far as the test knows.
    pub(crate) ready: bool,
}

pub(crate) struct World {
    pub(crate) d: Dispatcher,
    pub(crate) log: Arc<Mutex<Log>>,
    pub(crate) now: Instant,
    pub(crate) workers: BTreeMap<WorkerId, Fake>,
    /// Spawns asked for and not answered: whether each is the spare.
    pub(crate) spawns: VecDeque<bool>,
    next_worker: u64,
    next_job: u64,
    /// The cancel flag of each submitted job's future.
    pub(crate) flags: BTreeMap<u64, Arc<AtomicBool>>,
    pub(crate) submitted: Vec<u64>,
    /// Whether workers run an initializer.
    has_init: bool,
    /// Workers that exited before they were ready: start-up failures.
    pub(crate) early_exits: u32,
}

pub(crate) fn config(max_workers: usize) -> Config {
    Config {
        max_workers,
        prefetch: 8,
        adaptive: true,
        max_tasks_per_child: None,
        initializer: None,
        timeout: None,
        memory_limit: None,
        spare: false,
        max_frame: frame::DEFAULT_MAX_FRAME,
        fingerprint: FINGERPRINT,
        retries: 0,
        limits: super::Limits::default(),
    }
}

pub(crate) fn init(name: &'static str) -> Init {
    Init {
        task: 7,
        name,
        args: Vec::new(),
    }
}

impl World {
    pub(crate) fn new(config: Config) -> Self {
        let has_init = config.initializer.is_some();
        let mut w = World {
            has_init,
            early_exits: 0,
            d: Dispatcher::new(config, Arc::new(Counters::default())),
            log: Arc::default(),
            now: Instant::now(),
            workers: BTreeMap::new(),
            spawns: VecDeque::new(),
            next_worker: 0,
            next_job: 1,
            flags: BTreeMap::new(),
            submitted: Vec::new(),
        };
        w.pump();
        w
    }

    /// Carries out the dispatcher's actions and delivers its bytes to the fake workers.
    pub(crate) fn pump(&mut self) {
        self.d.dispatch(self.now);
        while let Some(action) = self.d.poll_action() {
            match action {
                Action::Spawn { spare } => self.spawns.push_back(spare),
                Action::Signal {
                    worker,
                    sig: Sig::Urge,
                } => {
                    if let Some(fake) = self.workers.get_mut(&worker) {
                        fake.urged += 1;
                    }
                }
                Action::Signal { worker, sig } => {
                    if let Some(fake) = self.workers.get_mut(&worker) {
                        fake.signals.push(sig);
                    }
                }
                Action::CloseRequests { worker } => {
                    if let Some(fake) = self.workers.get_mut(&worker) {
                        fake.closed = true;
                    }
                }
            }
        }
        let ids: Vec<_> = self.workers.keys().copied().collect();
        for id in ids {
            while let Some(bytes) = self.d.transmit(id) {
                let bytes = bytes.to_vec();
                self.d.transmitted(id, bytes.len());
                let fake = self.workers.get_mut(&id).expect("a fake");
                fake.partial.extend_from_slice(&bytes);
            }
            let fake = self.workers.get_mut(&id).expect("a fake");
            while let Ok(Some((f, used))) = frame::parse(&fake.partial, u32::MAX) {
                if f.kind == RequestKind::Revoke as u8 {
                    fake.revokes.push(f.id);
                } else {
                    fake.calls.push_back((f.id, f.kind, f.aux));
                }
                fake.partial.drain(..used);
            }
        }
    }

    /// Submits a job with an optional time limit; returns its id.
    pub(crate) fn submit(&mut self, timeout: Option<Duration>) -> u64 {
        self.submit_task(1, timeout)
    }

    /// Submits a job of the task at `task` in the table; returns its id.
    pub(crate) fn submit_task(&mut self, task: u32, timeout: Option<Duration>) -> u64 {
        self.submit_args(task, timeout, None)
    }

    /// Submits a job of task 1 whose arguments are `len` bytes; returns its id.
    pub(crate) fn submit_large(&mut self, len: usize) -> u64 {
        self.submit_args(1, None, Some(len))
    }

    fn submit_args(&mut self, task: u32, timeout: Option<Duration>, len: Option<usize>) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        let cancelled = Arc::new(AtomicBool::new(false));
        self.flags.insert(id, cancelled.clone());
        self.submitted.push(id);
        let probe = Probe {
            id,
            log: self.log.clone(),
            cancelled,
            running: AtomicBool::new(false),
            started: Arc::new(AtomicBool::new(false)),
        };
        self.d.submit(Job {
            id,
            request: RequestKind::Call,
            task,
            name: "job",
            args: len
                .map_or_else(|| id.to_le_bytes().to_vec(), |len| vec![7; len])
                .into(),
            owner: Owner::Future(FutureEnd::new(Arc::new(probe))),
            timeout,
            inputs: 1,
            retries: None,
            deaths: Deaths::default(),
        });
        self.pump();
        id
    }

    /// Answers the oldest pending spawn with a started worker; returns it.
    pub(crate) fn start(&mut self) -> Option<WorkerId> {
        let spare = self.spawns.pop_front()?;
        let id = WorkerId(self.next_worker);
        self.next_worker += 1;
        let pid = 1000 + u32::try_from(id.0).unwrap();
        self.d.worker_started(id, pid, None, spare, self.now);
        self.workers.insert(
            id,
            Fake {
                pid,
                ..Fake::default()
            },
        );
        self.pump();
        Some(id)
    }

    /// Answers the oldest pending spawn with a failure.
    pub(crate) fn fail_spawn(&mut self) -> bool {
        let Some(spare) = self.spawns.pop_front() else {
            return false;
        };
        self.d
            .spawn_failed(spare, &std::io::Error::other("no more processes"), self.now);
        self.pump();
        true
    }

    /// Worker `id` sends `bytes`.
    pub(crate) fn send(&mut self, id: WorkerId, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let Some(room) = self.d.read_buf(id) else {
                return;
            };
            let n = room.fill_from(rest);
            self.d.received(id, n);
            rest = &rest[n..];
        }
        self.d.parse(id, self.now);
        self.pump();
    }

    /// Worker `id` sends its handshake.
    pub(crate) fn hello(&mut self, id: WorkerId, fingerprint: u64) {
        let has_init = self.has_init;
        let Some(fake) = self.workers.get_mut(&id) else {
            return;
        };
        fake.ready |=
            !fake.greeted && fingerprint == FINGERPRINT && fake.signals.is_empty() && !has_init;
        fake.greeted = true;
        let pid = fake.pid;
        let mut bytes = Vec::new();
        let mut payload = fingerprint.to_le_bytes().to_vec();
        payload.extend_from_slice(&1u32.to_le_bytes());
        frame::push(
            &mut bytes,
            ReplyKind::Hello as u8,
            u64::from(pid),
            PROTOCOL_VERSION,
            &payload,
        );
        self.send(id, &bytes);
    }

    /// Starts a worker and shakes hands with it.
    pub(crate) fn ready(&mut self) -> Option<WorkerId> {
        let id = self.start()?;
        self.hello(id, FINGERPRINT);
        Some(id)
    }

    /// Worker `id` answers its oldest call with `kind`; returns the job id answered.
    pub(crate) fn answer(&mut self, id: WorkerId, kind: ReplyKind) -> Option<u64> {
        self.answer_after(id, kind, Duration::ZERO)
    }

    /// Worker `id` answers all its calls `Ok` in one read, each having run for `run`, while the
    /// clock stands still; returns how many.
    pub(crate) fn answer_all(&mut self, id: WorkerId, run: Duration) -> usize {
        let Some(fake) = self.workers.get_mut(&id) else {
            return 0;
        };
        let ran = u32::try_from(run.as_nanos()).unwrap_or(u32::MAX);
        let mut bytes = Vec::new();
        let calls = std::mem::take(&mut fake.calls);
        for (job, _, _) in &calls {
            frame::push(
                &mut bytes,
                ReplyKind::Ok as u8,
                *job,
                ran,
                &job.to_le_bytes(),
            );
        }
        self.send(id, &bytes);
        calls.len()
    }

    /// As [`answer`](Self::answer), saying that the call ran for `run`.
    pub(crate) fn answer_after(
        &mut self,
        id: WorkerId,
        kind: ReplyKind,
        run: Duration,
    ) -> Option<u64> {
        let fake = self.workers.get_mut(&id)?;
        let (job, _, _) = fake.calls.pop_front()?;
        fake.aborting |= kind == ReplyKind::Aborting;
        fake.ready |= job == 0 && kind == ReplyKind::Ok && fake.signals.is_empty();
        let payload = match kind {
            ReplyKind::Panicked | ReplyKind::Aborting => {
                let mut out = Vec::new();
                let info = PanicInfo {
                    message: "boom".to_owned(),
                    location: None,
                    task: "job".to_owned(),
                    pid: self.workers[&id].pid,
                };
                cf_worker::encode_into(&info, &mut out).unwrap();
                out
            }
            _ => job.to_le_bytes().to_vec(),
        };
        let mut bytes = Vec::new();
        let ran = u32::try_from(run.as_nanos()).unwrap_or(u32::MAX);
        frame::push(&mut bytes, kind as u8, job, ran, &payload);
        self.send(id, &bytes);
        Some(job)
    }

    /// Worker `id` acts on the give-backs asked of it: each call that waits behind the running one
    /// is given back (a give-back for the running call, or one answered, came too late). Returns
    /// the jobs given back.
    pub(crate) fn give_back(&mut self, id: WorkerId) -> Vec<u64> {
        let Some(fake) = self.workers.get_mut(&id) else {
            return Vec::new();
        };
        let mut bytes = Vec::new();
        let mut given = Vec::new();
        for job in std::mem::take(&mut fake.revokes) {
            if let Some(at) = fake.calls.iter().skip(1).position(|c| c.0 == job) {
                fake.calls.remove(at + 1);
                frame::push(&mut bytes, ReplyKind::Revoked as u8, job, 0, &[]);
                given.push(job);
            }
        }
        self.send(id, &bytes);
        given
    }

    /// Worker `id`'s watcher marks the calls asked back that wait behind the running one as
    /// skipped, but its `Revoked` replies go out later ([`flush_revoked`](Self::flush_revoked)),
    /// maybe after the running call's reply.
    pub(crate) fn skip(&mut self, id: WorkerId) {
        let Some(fake) = self.workers.get_mut(&id) else {
            return;
        };
        for job in std::mem::take(&mut fake.revokes) {
            if let Some(at) = fake.calls.iter().skip(1).position(|c| c.0 == job) {
                fake.calls.remove(at + 1);
                fake.skipped.push(job);
            }
        }
    }

    /// Worker `id` writes the `Revoked` replies of the calls it skipped.
    pub(crate) fn flush_revoked(&mut self, id: WorkerId) {
        let Some(fake) = self.workers.get_mut(&id) else {
            return;
        };
        let mut bytes = Vec::new();
        for job in std::mem::take(&mut fake.skipped) {
            frame::push(&mut bytes, ReplyKind::Revoked as u8, job, 0, &[]);
        }
        self.send(id, &bytes);
    }

    /// Runs 40 instant tasks on worker `id`, so that tasks count as short (sent ahead).
    pub(crate) fn make_short(&mut self, id: WorkerId) {
        self.run_tasks(id, Duration::ZERO, 40);
    }

    /// Runs `n` tasks on worker `id`, one at a time, each taking `run` by the clock.
    pub(crate) fn run_tasks(&mut self, id: WorkerId, run: Duration, n: usize) {
        for _ in 0..n {
            self.submit(None);
            self.advance(run);
            self.answer_after(id, ReplyKind::Ok, run);
        }
    }

    /// Worker `id` exits with `exit` and these last words.
    pub(crate) fn exit(&mut self, id: WorkerId, exit: Exit, stderr: &str) {
        if let Some(fake) = self.workers.remove(&id)
            && !fake.ready
        {
            self.early_exits += 1;
        }
        self.d.worker_exited(id, exit, stderr);
        self.pump();
    }

    /// Moves the clock and lets the dispatcher look at its deadlines.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.d.tick(self.now);
        self.pump();
    }

    /// How job `id` ended, if it did (panics if it ended twice).
    pub(crate) fn end(&self, id: u64) -> Option<End> {
        let log = self.log.lock().unwrap();
        let ends = log.ends.get(&id)?;
        assert_eq!(ends.len(), 1, "job {id} ended more than once: {ends:?}");
        ends.first().cloned()
    }

    /// The worker holding job `id`'s call, if one does.
    pub(crate) fn holder(&self, job: u64) -> Option<WorkerId> {
        self.workers
            .iter()
            .find(|(_, f)| f.calls.iter().any(|c| c.0 == job))
            .map(|(id, _)| *id)
    }
}
