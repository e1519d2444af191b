//! Properties of the dispatcher over random sequences of events: whatever the order of
//! submissions, replies, deaths, kills, deadlines and shutdowns, every job ends exactly once, no
//! job is held by two workers, a kill or a time limit ends only its own job, and the pool breaks
//! only by its start-up rule.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cf_worker::frame::ReplyKind;
use proptest::prelude::*;

use super::harness::{End, FINGERPRINT, World, config, init};
use super::{Config, Sig, State, WorkerId};
use crate::error::{Exit, TaskError};

#[derive(Clone, Debug)]
enum Ev {
    Submit(Option<u8>),
    Start,
    Hello(usize),
    BadHello(usize),
    FailSpawn,
    Answer(usize, u8),
    Exit(usize, bool),
    SignalledExit,
    Kill(usize),
    Cancel(usize),
    Advance(u32),
    CancelPending,
    Terminate,
    Close(usize),
    GiveBack(usize),
    Skip(usize),
    FlushRevoked(usize),
}

fn event() -> impl Strategy<Value = Ev> {
    prop_oneof![
        6 => proptest::option::of(1u8..50).prop_map(Ev::Submit),
        3 => Just(Ev::Start),
        3 => any::<usize>().prop_map(Ev::Hello),
        1 => any::<usize>().prop_map(Ev::BadHello),
        1 => Just(Ev::FailSpawn),
        8 => (any::<usize>(), 0u8..4).prop_map(|(w, k)| Ev::Answer(w, k)),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(w, c)| Ev::Exit(w, c)),
        3 => Just(Ev::SignalledExit),
        2 => any::<usize>().prop_map(Ev::Kill),
        1 => any::<usize>().prop_map(Ev::Cancel),
        2 => (1u8..80).prop_map(|ms| Ev::Advance(u32::from(ms))),
        1 => (1000u32..12_000).prop_map(Ev::Advance),
        1 => Just(Ev::CancelPending),
        1 => Just(Ev::Terminate),
        1 => any::<usize>().prop_map(Ev::Close),
        3 => any::<usize>().prop_map(Ev::GiveBack),
        3 => any::<usize>().prop_map(Ev::Skip),
        3 => any::<usize>().prop_map(Ev::FlushRevoked),
    ]
}

fn pool_config() -> impl Strategy<Value = Config> {
    (
        1usize..4,
        any::<bool>(),
        proptest::option::of(1u64..4),
        any::<bool>(),
        proptest::option::of(1u8..30),
        0u32..3,
        proptest::option::of(1usize..4),
    )
        .prop_map(
            |(workers, spare, max_tasks, initializer, timeout, retries, prefetch)| {
                let mut c = config(workers);
                if let Some(n) = prefetch {
                    c.prefetch = n;
                    c.adaptive = false;
                }
                c.spare = spare;
                c.max_tasks_per_child = max_tasks;
                c.initializer = initializer.then(|| init("setup"));
                c.timeout = timeout.map(|ms| Duration::from_millis(u64::from(ms)));
                c.retries = retries;
                c
            },
        )
}

/// What the test did, to judge the dispatcher's verdicts by.
#[derive(Default)]
struct Model {
    killed: BTreeSet<u64>,
    limited: BTreeSet<u64>,
    /// A worker was refused at its handshake (another build): the pool breaks at once.
    refused: bool,
    /// When worker starts began to fail, until one succeeds.
    failing_since: Option<std::time::Instant>,
}

fn pick(w: &World, at: usize) -> Option<WorkerId> {
    let ids: Vec<_> = w.workers.keys().copied().collect();
    (!ids.is_empty()).then(|| ids[at % ids.len()])
}

fn apply(w: &mut World, m: &mut Model, ev: &Ev, pool_limit: bool) {
    match *ev {
        Ev::Submit(limit) => {
            let id = w.submit(limit.map(|ms| Duration::from_millis(u64::from(ms))));
            if limit.is_some() || pool_limit {
                m.limited.insert(id);
            }
        }
        Ev::Start => {
            if w.start().is_some() && w.d.broken().is_none() {
                m.failing_since = None;
            }
        }
        Ev::Hello(at) => {
            if let Some(id) = pick(w, at) {
                w.hello(id, FINGERPRINT);
            }
        }
        Ev::BadHello(at) => {
            if let Some(id) = pick(w, at) {
                w.hello(id, FINGERPRINT ^ 1);
                m.refused = true;
            }
        }
        Ev::FailSpawn => {
            let now = w.now;
            if w.fail_spawn() {
                m.failing_since.get_or_insert(now);
            }
        }
        Ev::Answer(at, kind) => {
            let kind = [
                ReplyKind::Ok,
                ReplyKind::Failed,
                ReplyKind::Panicked,
                ReplyKind::Aborting,
            ][usize::from(kind)];
            if let Some(id) = pick(w, at) {
                w.answer(id, kind);
            }
        }
        Ev::Exit(at, crash) => {
            if let Some(id) = pick(w, at) {
                let exit = if crash {
                    Exit::Signal(11)
                } else {
                    Exit::Code(1)
                };
                w.exit(id, exit, "");
            }
        }
        Ev::SignalledExit => {
            let signalled: Vec<_> = w
                .workers
                .iter()
                .filter(|(_, f)| !f.signals.is_empty() || f.closed || f.aborting)
                .map(|(id, f)| (*id, f.signals.first().copied(), f.aborting))
                .collect();
            for (id, sig, aborting) in signalled {
                let exit = match sig {
                    Some(Sig::Kill) => Exit::Signal(9),
                    Some(Sig::Term) => Exit::Signal(15),
                    Some(Sig::Urge) => unreachable!("the harness counts urges apart"),
                    None if aborting => Exit::Signal(6),
                    None => Exit::Code(0),
                };
                w.exit(id, exit, "");
            }
        }
        Ev::Kill(at) => {
            if !w.submitted.is_empty() {
                let id = w.submitted[at % w.submitted.len()];
                m.killed.insert(id);
                w.d.kill(id);
                w.pump();
            }
        }
        Ev::Cancel(at) => {
            if !w.submitted.is_empty() {
                let id = w.submitted[at % w.submitted.len()];
                w.flags[&id].store(true, Ordering::SeqCst);
            }
        }
        Ev::Advance(ms) => w.advance(Duration::from_millis(u64::from(ms))),
        Ev::CancelPending => {
            w.d.shutdown();
            w.d.cancel_pending();
            w.pump();
        }
        Ev::Close(at) => {
            if let Some(id) = pick(w, at) {
                w.d.stream_closed(id, w.now);
            }
        }
        Ev::GiveBack(at) => {
            if let Some(id) = pick(w, at) {
                w.give_back(id);
            }
        }
        Ev::Skip(at) => {
            if let Some(id) = pick(w, at) {
                w.skip(id);
            }
        }
        Ev::FlushRevoked(at) => {
            if let Some(id) = pick(w, at) {
                w.flush_revoked(id);
            }
        }
        Ev::Terminate => {
            w.d.shutdown();
            w.d.terminate(Sig::Kill, w.now);
            w.pump();
        }
    }
}

/// What must hold after every event.
fn check(w: &World, m: &Model) -> Result<(), TestCaseError> {
    let log = w.log.lock().unwrap();
    for (id, ends) in &log.ends {
        prop_assert!(
            ends.len() == 1,
            "job {} ended {} times: {:?}",
            id,
            ends.len(),
            ends
        );
        match &ends[0] {
            End::Killed => prop_assert!(m.killed.contains(id), "job {id} killed unasked"),
            End::Failed(TaskError::TimeLimit { .. }) => {
                prop_assert!(m.limited.contains(id), "job {id} timed out with no limit");
            }
            _ => {}
        }
    }
    let mut held = BTreeSet::new();
    for fake in w.workers.values() {
        for &(job, _, _) in &fake.calls {
            if job != 0 {
                prop_assert!(held.insert(job), "job {job} is held by two workers");
            }
        }
    }
    // No job waits in the queue while a worker could take it: every turn ends with the queue
    // empty or every worker busy (or unable to take more).
    let idle =
        w.d.workers
            .iter()
            .any(|worker| worker.accepts(1, w.d.config.max_tasks_per_child));
    let waiting = w.d.queue.iter().any(|job| job.has_future());
    prop_assert!(
        !(idle && waiting),
        "a job waits in the queue while a worker is idle"
    );
    // A worker asked for calls back has been woken to give them.
    for worker in &w.d.workers {
        if !worker.revoking.is_empty() {
            prop_assert!(w.workers.get(&worker.id).is_none_or(|f| f.urged > 0));
        }
    }
    // No job waits behind a long-running task while a worker is idle: it has been asked back.
    if w.d.idle_worker() {
        for worker in &w.d.workers {
            if worker.state == State::Ready && worker.running_long(w.now) {
                prop_assert!(
                    worker
                        .inflight
                        .iter()
                        .skip(1)
                        .all(|j| j.is_init() || worker.revoking.contains(&j.id)),
                    "jobs wait behind a long task while a worker is idle"
                );
            }
        }
    }
    if w.d.broken().is_some() {
        let failing_long = m
            .failing_since
            .is_some_and(|since| w.now - since >= w.d.config.limits.spawn_retry);
        prop_assert!(
            w.early_exits >= 3 || m.refused || failing_long,
            "broken after {} start-up failures",
            w.early_exits
        );
    }
    Ok(())
}

/// Lets every worker behave until every job has ended.
fn settle(w: &mut World, m: &mut Model) {
    for _ in 0..200 {
        apply(w, m, &Ev::SignalledExit, false);
        while w.start().is_some() {
            if w.d.broken().is_none() {
                m.failing_since = None;
            }
        }
        let quiet: Vec<_> = w
            .workers
            .iter()
            .filter(|(_, f)| !f.greeted)
            .map(|(id, _)| *id)
            .collect();
        for id in quiet {
            w.hello(id, FINGERPRINT);
        }
        let ids: Vec<_> = w.workers.keys().copied().collect();
        for id in ids {
            w.flush_revoked(id);
            w.give_back(id);
            while w.answer(id, ReplyKind::Ok).is_some() {}
        }
        if w.submitted
            .iter()
            .all(|id| w.log.lock().unwrap().ends.contains_key(id))
        {
            return;
        }
        // Let retries of failed starts come due.
        w.advance(Duration::from_millis(100));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_job_ends_exactly_once(
        config in pool_config(),
        events in proptest::collection::vec(event(), 1..80),
    ) {
        let pool_limit = config.timeout.is_some();
        let mut w = World::new(config);
        let mut m = Model::default();
        for ev in &events {
            apply(&mut w, &mut m, ev, pool_limit);
            check(&w, &m)?;
        }
        settle(&mut w, &mut m);
        check(&w, &m)?;
        let log = w.log.lock().unwrap();
        let lost: Vec<_> = w.submitted.iter().filter(|id| !log.ends.contains_key(id)).collect();
        prop_assert!(lost.is_empty(), "jobs never ended: {lost:?}");
    }
}
