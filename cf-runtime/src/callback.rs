//! Where panics of done-callbacks go.

use std::sync::RwLock;

use crate::sync::relock;

type Handler = Box<dyn Fn(&str) + Send + Sync>;

static HANDLER: RwLock<Option<Handler>> = RwLock::new(None);

/// Sets what happens when a done-callback panics: `handler` gets the panic message.
///
/// The default prints `cf: a done-callback panicked: <message>` to stderr. A callback's panic never
/// reaches the pool or the thread that completed the future either way.
pub fn set_callback_panic_handler(handler: impl Fn(&str) + Send + Sync + 'static) {
    *relock(HANDLER.write()) = Some(Box::new(handler));
}

pub(crate) fn report_panic(message: &str) {
    let handler = relock(HANDLER.read());
    let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &*handler {
        Some(handler) => handler(message),
        None => eprintln!("cf: a done-callback panicked: {message}"),
    }));
    drop(report);
}
