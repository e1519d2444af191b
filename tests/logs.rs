//! A task's `tracing` events and `log` records reach the subscriber of the thread that built the
//! pool (issue "Adopters", item 5), with the task's name and the worker's pid; with no subscriber
//! the workers install nothing; a subscriber that does not keep up stalls nothing; a record is
//! never a dead worker's last words.
//!
//! On `main` before the change, every event of a task was dropped: the worker never runs `main`,
//! where a subscriber is installed, so none of these subscribers saw one, and a worker had no
//! subscriber or logger whatever the parent had.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod util;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use cf::{ProcessPoolExecutor, Task, TaskError};
use tracing::level_filters::LevelFilter;
use tracing::span;
use tracing::{Event, Level, Metadata, Subscriber};

/// An event as the test's subscriber saw it.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Log {
    events: Mutex<Vec<Seen>>,
    changed: Condvar,
    /// While true, `event` waits: a subscriber that does not keep up.
    held: Mutex<bool>,
    released: Condvar,
}

impl Log {
    fn events(&self) -> MutexGuard<'_, Vec<Seen>> {
        self.events.lock().expect("the events")
    }

    /// Waits (at most [`util::LONG`]) for an event that `wanted` accepts; returns it.
    fn wait_for(&self, what: &str, wanted: impl Fn(&Seen) -> bool) -> Seen {
        let events = self.events();
        let (events, timeout) = self
            .changed
            .wait_timeout_while(events, util::LONG, |events| !events.iter().any(&wanted))
            .expect("the events");
        assert!(!timeout.timed_out(), "no {what} among {events:#?}");
        events.iter().find(|e| wanted(e)).cloned().expect("found")
    }

    /// Waits (at most [`util::LONG`]) until `check` gives something.
    fn wait_until<T>(&self, what: &str, check: impl Fn(&[Seen]) -> Option<T>) -> T {
        let events = self.events();
        let (events, timeout) = self
            .changed
            .wait_timeout_while(events, util::LONG, |events| check(events).is_none())
            .expect("the events");
        assert!(!timeout.timed_out(), "not {what}: {} events", events.len());
        check(&events).expect("checked")
    }

    fn release(&self) {
        *self.held.lock().expect("the hold") = false;
        self.released.notify_all();
    }
}

/// Keeps events up to INFO.
#[derive(Clone)]
struct Capture(Arc<Log>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::INFO
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let held = self.0.held.lock().expect("the hold");
        drop(
            self.0
                .released
                .wait_while(held, |held| *held)
                .expect("the hold"),
        );
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.events().push(Seen {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields,
        });
        self.0.changed.notify_all();
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

/// A pool of one worker built under a [`Capture`] subscriber (the default of this thread only),
/// and what that subscriber sees.
fn captured_pool() -> (
    ProcessPoolExecutor,
    Arc<Log>,
    tracing::subscriber::DefaultGuard,
) {
    let log = Arc::new(Log::default());
    let guard = tracing::subscriber::set_default(Capture(log.clone()));
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .expect("start a pool");
    (pool, log, guard)
}

#[cf::task]
fn emits(n: u32) -> u32 {
    tracing::info!(n, "hello from a task");
    tracing::warn!(target: "custom::target", "careful");
    tracing::debug!("too verbose for the parent");
    std::process::id()
}

#[test]
fn a_tasks_events_reach_the_subscriber_that_built_the_pool() {
    let _serial = util::serial();
    let (pool, log, _guard) = captured_pool();
    let pid = *pool
        .submit(emits, 7)
        .expect("submit")
        .result_ref()
        .expect("the pid");
    let info = log.wait_for("info event", |e| {
        e.field("message") == Some("hello from a task")
    });
    assert_eq!(info.level, Level::INFO);
    assert_eq!(info.target, "logs");
    assert_eq!(info.field("n"), Some("7"));
    assert_eq!(info.field("task"), Some(<emits as Task>::NAME));
    assert_eq!(info.field("pid"), Some(pid.to_string().as_str()));
    let warn = log.wait_for("warn event", |e| e.field("message") == Some("careful"));
    assert_eq!(warn.level, Level::WARN);
    assert_eq!(warn.target, "custom::target");
}

#[cf::task]
fn logs_with_log(n: u32) -> u32 {
    log::info!("from the log crate: {n}");
    log::debug!("too verbose for the parent");
    std::process::id()
}

#[test]
fn a_tasks_log_records_reach_the_subscriber_that_built_the_pool() {
    let _serial = util::serial();
    let (pool, log, _guard) = captured_pool();
    let pid = *pool
        .submit(logs_with_log, 5)
        .expect("submit")
        .result_ref()
        .expect("the pid");
    let info = log.wait_for("log record", |e| {
        e.field("message") == Some("from the log crate: 5")
    });
    assert_eq!(info.level, Level::INFO);
    assert_eq!(info.target, "logs");
    assert_eq!(info.field("task"), Some(<logs_with_log as Task>::NAME));
    assert_eq!(info.field("pid"), Some(pid.to_string().as_str()));
}

/// What a worker has installed: a global `tracing` subscriber, and the `log` crate's level.
#[cf::task]
fn installed() -> (bool, String) {
    (
        tracing::dispatcher::has_been_set(),
        log::max_level().to_string(),
    )
}

#[test]
fn workers_install_nothing_without_a_subscriber_or_when_told_not_to_forward() {
    let _serial = util::serial();
    let plain = ProcessPoolExecutor::with_max_workers(1).expect("start a pool");
    let bare = plain.submit(installed, ()).expect("submit");
    assert_eq!(bare.result(), Ok(&(false, "OFF".to_owned())));
    drop(plain);
    let (pool, _log, _guard) = captured_pool();
    let forwarding = pool.submit(installed, ()).expect("submit");
    assert_eq!(forwarding.result(), Ok(&(true, "INFO".to_owned())));
    drop(pool);
    // Under a subscriber, but asked not to forward: an initializer may install its own.
    let own_pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .forward_logs(false)
        .build()
        .expect("start a pool");
    let own = own_pool.submit(installed, ()).expect("submit");
    assert_eq!(own.result(), Ok(&(false, "OFF".to_owned())));
}

/// Emits `n` events of 3 KiB each.
#[cf::task]
fn floods(n: u32) -> u32 {
    let filler = "x".repeat(3 << 10);
    for i in 0..n {
        tracing::info!(i, "{filler}");
    }
    n
}

#[test]
fn a_subscriber_that_does_not_keep_up_stalls_no_task() {
    let _serial = util::serial();
    let (pool, log, _guard) = captured_pool();
    *log.held.lock().expect("the hold") = true;
    // 9 MiB of events while the subscriber takes none: the I/O thread neither waits for it nor
    // stops reading the worker's stderr (the worker would block writing it).
    let flood = pool.submit(floods, 3000).expect("submit");
    assert_eq!(flood.result(), Ok(&3000));
    assert_eq!(pool.submit(floods, 0).expect("submit").result(), Ok(&0));
    log.release();
    let report = log.wait_for("report of dropped events", |e| {
        e.fields.contains_key("dropped")
    });
    assert_eq!(report.level, Level::WARN);
    // Every event was either forwarded or counted as dropped.
    let (forwarded, dropped) = log.wait_until("every event accounted for", |events| {
        let forwarded = events.iter().filter(|e| e.field("i").is_some()).count() as u64;
        let dropped: u64 = events
            .iter()
            .filter_map(|e| e.field("dropped")?.parse::<u64>().ok())
            .sum();
        (forwarded + dropped == 3000).then_some((forwarded, dropped))
    });
    assert!(
        forwarded > 0 && dropped > 0,
        "{forwarded} forwarded, {dropped} dropped"
    );
}

/// The words a task writes before it dies.
const LAST_WORDS: &str = "cf-test-logs: the last words";

#[cf::task]
fn logs_then_dies() {
    tracing::warn!("cf-test-logs: an event, not last words");
    eprintln!("{LAST_WORDS}");
    std::process::abort();
}

#[test]
fn an_event_is_not_part_of_a_dead_workers_last_words() {
    let _serial = util::serial();
    let (pool, log, _guard) = captured_pool();
    let error = pool
        .submit(logs_then_dies, ())
        .expect("submit")
        .result()
        .expect_err("the worker dies");
    let TaskError::WorkerDied { stderr, .. } = &error else {
        panic!("expected WorkerDied, got {error:?}");
    };
    assert_eq!(stderr.trim_end(), LAST_WORDS);
    log.wait_for("the event", |e| {
        e.field("message") == Some("cf-test-logs: an event, not last words")
    });
}
