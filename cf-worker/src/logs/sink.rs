//! The worker's `tracing` subscriber and `log` logger: each event or record becomes one record
//! on stderr (see the module above).

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tracing_core::field::{Field, Visit};
use tracing_core::span;
use tracing_core::{Dispatch, Event, Interest, Level, LevelFilter, Metadata, Subscriber};

use super::{Kind, MAX_RECORD, Meta, Writer};
use crate::table;

/// The task the worker runs now: its index in the table plus one (0 before the first).
static TASK: AtomicU32 = AtomicU32::new(0);

/// Notes that the task at `index` of the table runs now: its records name it.
pub(crate) fn set_task(index: u32) {
    TASK.store(index.saturating_add(1), Ordering::Relaxed);
}

/// The name of the task that runs now, or `""`.
fn task() -> &'static str {
    match TASK.load(Ordering::Relaxed) {
        0 => "",
        n => table().get(n - 1).map_or("", |entry| entry.name),
    }
}

/// Installs the global subscriber and logger that forward events up to `level` (1 = error …
/// 5 = trace) through `out`, the worker's stderr; does nothing for 0.
///
/// Call it before any other thread exists: a `log` logger or a global subscriber a task (or its
/// initializer) tries to install afterwards is refused, as in any program that installed its own.
pub(crate) fn install(level: u8, out: OwnedFd) {
    let (max, log_max) = match level {
        0 => return,
        1 => (LevelFilter::ERROR, log::LevelFilter::Error),
        2 => (LevelFilter::WARN, log::LevelFilter::Warn),
        3 => (LevelFilter::INFO, log::LevelFilter::Info),
        4 => (LevelFilter::DEBUG, log::LevelFilter::Debug),
        _ => (LevelFilter::TRACE, log::LevelFilter::Trace),
    };
    let out = Arc::new(File::from(out));
    let forwarder = Forwarder {
        max,
        out: out.clone(),
    };
    // Neither can be set already: this runs before `main`, before anything else could.
    let _ = tracing_core::dispatcher::set_global_default(Dispatch::new(forwarder));
    let logger: &'static Logger = Box::leak(Box::new(Logger { max: log_max, out }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(log_max);
    }
}

/// Writes a record with one `write(2)`: at most `PIPE_BUF` bytes, so a pipe takes it whole,
/// never mixed with what another thread writes.
fn send(out: &File, record: &[u8]) {
    debug_assert!(record.len() <= MAX_RECORD);
    loop {
        match (&*out).write(record) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The parent is gone or a task closed the pipe: the event is lost, as a line a task
            // wrote would be.
            _ => return,
        }
    }
}

/// A `String` that takes at most a record's worth of text, then stops the formatting.
#[derive(Default)]
struct Text(String, bool);

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.1 {
            return Err(fmt::Error);
        }
        let room = MAX_RECORD.saturating_sub(self.0.len());
        if s.len() <= room {
            self.0.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push_str(&s[..end]);
        // One byte over the room, so that the writer sees the value was cut.
        self.0.push('…');
        self.1 = true;
        Err(fmt::Error)
    }
}

/// The `tracing` subscriber: events up to `max`; spans are not forwarded.
struct Forwarder {
    max: LevelFilter,
    out: Arc<File>,
}

fn level_byte(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        _ => 5,
    }
}

impl Subscriber for Forwarder {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let m = event.metadata();
        let meta = Meta {
            target: m.target(),
            module: m.module_path(),
            file: m.file(),
            line: m.line(),
            name: m.name(),
        };
        let mut fields = Fields {
            writer: Writer::new(level_byte(*m.level()), task(), &meta),
            full: false,
        };
        event.record(&mut fields);
        send(&self.out, &fields.writer.finish());
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// Writes an event's fields into its record.
struct Fields {
    writer: Writer,
    /// No more fields fit.
    full: bool,
}

impl Fields {
    fn put(&mut self, field: &Field, kind: Kind, value: &str) {
        if !self.full {
            self.full = !self.writer.field(field.name(), kind, value);
        }
    }

    fn text(&mut self, field: &Field, kind: Kind, value: impl fmt::Display) {
        if !self.full {
            let mut text = Text::default();
            let _ = write!(text, "{value}");
            self.put(field, kind, &text.0);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, Kind::Text, format_args!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Kind::Str, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.text(field, Kind::I64, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.text(field, Kind::U64, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.text(field, Kind::Bool, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.text(field, Kind::F64, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.text(field, Kind::Text, value);
    }
}

/// The `log` logger: records up to `max`, their key-values left out.
struct Logger {
    max: log::LevelFilter,
    out: Arc<File>,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.max
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let meta = Meta {
            target: record.target(),
            module: record.module_path(),
            file: record.file(),
            line: record.line(),
            name: "log record",
        };
        let level = u8::try_from(record.level() as usize).unwrap_or(5);
        let mut writer = Writer::new(level, task(), &meta);
        let mut text = Text::default();
        let _ = write!(text, "{}", record.args());
        writer.field("message", Kind::Text, &text.0);
        send(&self.out, &writer.finish());
    }

    fn flush(&self) {}
}
