use std::sync::{Arc, Mutex};

use cf_worker::logs::{LOG_START, Meta, Writer};
use tracing::span;

use super::*;

/// Keeps each event's target and message.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(String, String)>>>);

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let target = event.metadata().target().to_owned();
        self.0.lock().unwrap().push((target, message.0));
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

fn logged(target: &str, message: &str) -> Logged {
    let meta = Meta {
        target,
        module: None,
        file: Some("src/x.rs"),
        line: Some(3),
        name: "event",
    };
    let mut w = Writer::new(3, "t", &meta);
    w.field("message", Kind::Text, message);
    w.field("n", Kind::I64, "-4");
    let record = w.finish();
    Logged {
        pid: 1,
        body: record[LOG_START.len() + 2..].into(),
    }
}

/// Past [`MAX_SITES`] shapes, a record still arrives, its target and fields in its message, and
/// no more callsites are made.
#[test]
fn records_of_ever_new_shapes_are_folded_past_the_cap() {
    let capture = Capture::default();
    let mut emitter = Emitter::new(Dispatch::new(capture.clone()));
    for i in 0..MAX_SITES + 5 {
        emitter.emit(&logged(&format!("target{i}"), "m"));
    }
    let sites = SITES.lock().unwrap().as_ref().map_or(0, HashMap::len);
    // One folded site for the level, beside the cap.
    assert_eq!(sites, MAX_SITES + 1);
    let seen = capture.0.lock().unwrap();
    assert_eq!(seen.len(), MAX_SITES + 5);
    assert_eq!(seen[0], ("target0".to_owned(), "m".to_owned()));
    let last = MAX_SITES + 4;
    assert_eq!(
        seen[last],
        (
            "cf::worker".to_owned(),
            format!("target{last}: m n=-4 (src/x.rs:3)")
        )
    );
}
