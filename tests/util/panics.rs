//! Watches the callback panic handler: [`install`] it once per test binary, then wait for a
//! message with [`handled_within`] or count them with [`count`].

use std::sync::{Condvar, Mutex, Once};
use std::time::{Duration, Instant};

static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static ARRIVED: Condvar = Condvar::new();

/// Makes the callback panic handler record each message (once per process).
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        cf::set_callback_panic_handler(|message| {
            MESSAGES.lock().unwrap().push(message.to_owned());
            ARRIVED.notify_all();
        });
    });
}

/// Whether the handler sees `message` within `within`.
pub(crate) fn handled_within(message: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut seen = MESSAGES.lock().unwrap();
    while !seen.iter().any(|m| m == message) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        seen = ARRIVED.wait_timeout(seen, left).unwrap().0;
    }
    true
}

/// How many times the handler saw `message`.
pub(crate) fn count(message: &str) -> usize {
    MESSAGES
        .lock()
        .unwrap()
        .iter()
        .filter(|m| *m == message)
        .count()
}
