//! Workers' `tracing` events and `log` records, re-emitted on the parent's subscriber.
//!
//! The builder captures the dispatcher current on the thread that builds the pool and tells the
//! workers, in their start-up marker, the most verbose level it wants ([`level`]); with none,
//! workers install nothing. A worker writes each event as one record on its stderr
//! (`cf_worker::logs`); the I/O thread takes records out of the stream (`output.rs`) and queues
//! them, bounded, with the text (`forward.rs`); the forwarding thread hands them to an
//! [`Emitter`], which re-emits each on the captured dispatcher, in order with the text around
//! it. Neither the I/O thread nor a worker ever waits for the subscriber.
//!
//! A record becomes an event of a callsite made for it at run time, one per distinct level,
//! target, module, file, line, name and field names, leaked (as the macros' statics are, in
//! effect) and registered with `tracing_core::callsite::register`, so filters by target or level
//! see what they would have seen in the worker. Its fields are the worker's, then `task` (the
//! task that ran) and `pid` (the worker's). Spans are not forwarded: an event loses the spans
//! it was in.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, OnceLock};

use cf_worker::logs::{self, Kind, Record};
use tracing::level_filters::LevelFilter;
use tracing_core::callsite::{self, Callsite};
use tracing_core::field::{DisplayValue, FieldSet, Value, display};
use tracing_core::subscriber::{Interest, NoSubscriber};
use tracing_core::{Dispatch, Event, Level, Metadata};

/// The most distinct callsites made for records, for all pools of the process; later ones
/// share one per level, their target, fields and location folded into the message (a worker
/// that logs with ever-new targets must not grow the parent without bound).
const MAX_SITES: usize = 1024;

/// The callsites made so far, by [`key`]: shared by all pools, so that a program that builds
/// many pools makes each callsite once.
static SITES: Mutex<Option<HashMap<Vec<u8>, &'static Site>>> = Mutex::new(None);

/// A worker's record, as the I/O thread queues it.
pub(crate) struct Logged {
    /// The worker's pid.
    pub(crate) pid: u32,
    /// The record's body (`cf_worker::logs`).
    pub(crate) body: Box<[u8]>,
}

/// The level workers forward up to, for the marker: 0 for none (no subscriber, or none that
/// wants anything), 1 = error … 5 = trace.
///
/// `tracing` does not tell one dispatcher's most verbose level (`max_level_hint` is private to
/// `Dispatch`), only the most verbose of all that exist ([`LevelFilter::current`]): workers may
/// send events the captured subscriber then refuses, never miss one it wants.
pub(crate) fn level(dispatch: &Dispatch) -> u8 {
    if dispatch.is::<NoSubscriber>() {
        return 0;
    }
    match LevelFilter::current().into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(_) => 5,
    }
}

fn level_of(byte: u8) -> Level {
    match byte {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// A callsite made at run time for one shape of record.
struct Site {
    meta: OnceLock<Metadata<'static>>,
}

impl Site {
    fn meta(&'static self) -> &'static Metadata<'static> {
        self.meta
            .get()
            .expect("a site's metadata is set before it is used")
    }
}

impl Callsite for Site {
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        self.meta
            .get()
            .expect("a site's metadata is set before it is registered")
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.into())
}

/// Re-emits records on the dispatcher captured when the pool was built; lives on the
/// forwarding thread.
pub(crate) struct Emitter {
    dispatch: Dispatch,
    /// The key of the record at hand, reused.
    key: Vec<u8>,
}

impl Emitter {
    pub(crate) fn new(dispatch: Dispatch) -> Emitter {
        Emitter {
            dispatch,
            key: Vec::new(),
        }
    }

    /// The dispatcher events are re-emitted on.
    pub(crate) fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// Re-emits one record; a record that does not decode, or a subscriber that panics, loses
    /// only that event.
    pub(crate) fn emit(&mut self, logged: &Logged) {
        let Some(record) = logs::decode(&logged.body) else {
            return;
        };
        let _ = catch_unwind(AssertUnwindSafe(|| {
            match site(&mut self.key, &record, false) {
                Some(site) => self.emit_record(site, &record, logged.pid),
                None => self.emit_folded(&record, logged.pid),
            }
        }));
    }

    fn emit_record(&self, site: &'static Site, record: &Record<'_>, pid: u32) {
        let mut values: Vec<Val<'_>> = record.fields.iter().map(Val::of).collect();
        values.push(Val::Str(record.task));
        values.push(Val::U64(pid.into()));
        self.dispatch_event(site, &values);
    }

    /// A record past [`MAX_SITES`]: the event of a shared callsite for its level, its target,
    /// fields and location in the message.
    fn emit_folded(&mut self, record: &Record<'_>, pid: u32) {
        let mut message = format!("{}: ", record.target);
        for field in &record.fields {
            if field.name == "message" {
                message.push_str(field.value);
            } else {
                message.push_str(&format!(" {}={}", field.name, field.value));
            }
        }
        if let (Some(file), Some(line)) = (record.file, record.line) {
            message.push_str(&format!(" ({file}:{line})"));
        }
        let folded = Record {
            level: record.level,
            task: record.task,
            target: "cf::worker",
            module: None,
            file: None,
            line: None,
            name: "event",
            fields: vec![logs::Field {
                name: "message",
                kind: Kind::Text,
                value: &message,
            }],
        };
        if let Some(site) = site(&mut self.key, &folded, true) {
            self.emit_record(site, &folded, pid);
        }
    }

    fn dispatch_event(&self, site: &'static Site, values: &[Val<'_>]) {
        let meta = site.meta();
        if !self.dispatch.enabled(meta) {
            return;
        }
        let values: Vec<Option<&dyn Value>> = values.iter().map(|v| Some(v.as_value())).collect();
        let values = meta.fields().value_set_all(&values);
        self.dispatch.event(&Event::new(meta, &values));
    }
}

/// The callsite for `record`'s shape, made and registered the first time; `None` when
/// [`MAX_SITES`] are made already, unless `always`. `key` is scratch space.
fn site(key_buf: &mut Vec<u8>, record: &Record<'_>, always: bool) -> Option<&'static Site> {
    let key = key(key_buf, record);
    let mut sites = SITES.lock().unwrap_or_else(crate::sync::unpoison);
    let sites = sites.get_or_insert_with(HashMap::new);
    if let Some(site) = sites.get(key).copied() {
        return Some(site);
    }
    if sites.len() >= MAX_SITES && !always {
        return None;
    }
    let mut names: Vec<&'static str> = record.fields.iter().map(|f| leak(f.name)).collect();
    names.extend(["task", "pid"]);
    let site: &'static Site = Box::leak(Box::new(Site {
        meta: OnceLock::new(),
    }));
    let fields = FieldSet::new(
        Box::leak(names.into_boxed_slice()),
        tracing_core::identify_callsite!(site),
    );
    let _ = site.meta.set(Metadata::new(
        leak(record.name),
        leak(record.target),
        level_of(record.level),
        record.file.map(leak),
        record.line,
        record.module.map(leak),
        fields,
        tracing_core::metadata::Kind::EVENT,
    ));
    // Registered before any other forwarding thread can find it: under the lock, which only
    // forwarding threads take.
    callsite::register(site);
    sites.insert(key.to_vec(), site);
    Some(site)
}

/// Writes into `buf` what tells `record`'s callsite from others; returns it.
fn key<'b>(buf: &'b mut Vec<u8>, record: &Record<'_>) -> &'b [u8] {
    buf.clear();
    buf.push(record.level);
    for part in [
        record.target,
        record.module.unwrap_or("\u{1}"),
        record.file.unwrap_or("\u{1}"),
        record.name,
    ] {
        buf.extend_from_slice(part.as_bytes());
        buf.push(0);
    }
    buf.extend_from_slice(&record.line.unwrap_or(0).to_le_bytes());
    for field in &record.fields {
        buf.extend_from_slice(field.name.as_bytes());
        buf.push(0);
    }
    buf
}

/// A field's value, recorded as the worker recorded it.
enum Val<'a> {
    Str(&'a str),
    Text(DisplayValue<&'a str>),
    I64(i64),
    U64(u64),
    Bool(bool),
    F64(f64),
}

impl<'a> Val<'a> {
    fn of(field: &logs::Field<'a>) -> Val<'a> {
        let v = field.value;
        let parsed = match field.kind {
            Kind::Str => Some(Val::Str(v)),
            Kind::Text => None,
            Kind::I64 => v.parse().ok().map(Val::I64),
            Kind::U64 => v.parse().ok().map(Val::U64),
            Kind::Bool => v.parse().ok().map(Val::Bool),
            Kind::F64 => v.parse().ok().map(Val::F64),
        };
        parsed.unwrap_or(Val::Text(display(v)))
    }

    fn as_value(&self) -> &dyn Value {
        match self {
            Val::Str(v) => v,
            Val::Text(v) => v,
            Val::I64(v) => v,
            Val::U64(v) => v,
            Val::Bool(v) => v,
            Val::F64(v) => v,
        }
    }
}

#[cfg(test)]
mod test;
