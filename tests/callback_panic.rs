//! A panicking done-callback goes to the handler set with `cf::set_callback_panic_handler` and
//! never hurts the pool, the thread that completed the future, or the other callbacks.
//!
//! The handler is process-global, so these tests have a binary of their own; every test here
//! installs the same recording handler and looks for its own messages.
//!
//! Partly adapted from CPython's `Lib/test/test_concurrent_futures/test_future.py`
//! (`test_done_callback_raises`, `test_done_callback_raises_already_succeeded`). Copyright (c)
//! 2001 Python Software Foundation; All Rights Reserved. Used under the PSF License Agreement
//! (Python Software Foundation License Version 2).

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use util::panics::{count, handled_within, install};
use util::{Gate, LONG, both, echo, gated};

/// Waits until the handler has seen `message`; panics after [`LONG`].
fn handled(message: &str) {
    assert!(
        handled_within(message, LONG),
        "the handler never saw {message:?}"
    );
}

// test_done_callback_raises: the panic is reported, the other callbacks still run, and the pool
// goes on working.
both!(fn panicking_callback_after_completion(pool) {
    install();
    let message = format!("callback after completion ({})", std::any::type_name_of_val(&*pool));
    let gate = Gate::new();
    let future = pool.submit(gated, (gate.path(), 1)).unwrap();
    let entered = gate.entered();
    let ran = Arc::new(AtomicUsize::new(0));
    {
        let ran = ran.clone();
        future.add_done_callback(move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
        });
    }
    {
        let message = message.clone();
        future.add_done_callback(move |_| panic!("{message}"));
    }
    {
        let ran = ran.clone();
        future.add_done_callback(move |_| {
            ran.fetch_add(10, Ordering::SeqCst);
        });
    }
    entered.release();
    assert_eq!(future.result(), Ok(&1));
    handled(&message);
    // The pool still runs tasks, on the same single worker.
    let after: Vec<_> = (0..5).map(|i| pool.submit(echo, i).unwrap()).collect();
    for (i, f) in (0..5).zip(&after) {
        assert_eq!(f.result_timeout(LONG), Ok(&i));
    }
    pool.shutdown();
    assert_eq!(ran.load(Ordering::SeqCst), 11, "a callback after the panicking one did not run");
    assert_eq!(count(&message), 1);
});

// test_done_callback_raises_already_succeeded: added to a done future, the callback runs at once
// and its panic does not reach the caller of `add_done_callback`.
both!(fn panicking_callback_on_a_done_future(pool) {
    install();
    let message = format!("callback when done ({})", std::any::type_name_of_val(&*pool));
    let future = pool.submit(echo, 2).unwrap();
    future.wait_timeout(LONG);
    {
        let message = message.clone();
        future.add_done_callback(move |_| panic!("{message}"));
    }
    // Reported before `add_done_callback` returned: the callback ran in this thread.
    assert_eq!(count(&message), 1);
    assert_eq!(pool.submit(echo, 3).unwrap().result(), Ok(&3));
});

both!(fn panicking_callback_on_cancel(pool) {
    install();
    let message = format!("callback on cancel ({})", std::any::type_name_of_val(&*pool));
    let gate = Gate::new();
    let blocker = pool.submit(gated, (gate.path(), 0)).unwrap();
    let entered = gate.entered();
    let queued: Vec<_> = (0..9).map(|i| pool.submit(echo, i).unwrap()).collect();
    let target = queued.last().unwrap();
    {
        let message = message.clone();
        target.add_done_callback(move |_| panic!("{message}"));
    }
    assert!(target.cancel());
    assert_eq!(count(&message), 1);
    entered.release();
    assert_eq!(blocker.result(), Ok(&0));
    assert_eq!(pool.submit(echo, 9).unwrap().result_timeout(LONG), Ok(&9));
});

both!(fn callback_panic_with_a_non_string_payload(pool) {
    install();
    let future = pool.submit(echo, 4).unwrap();
    future.result().unwrap();
    let before = count("Box<dyn Any>");
    future.add_done_callback(|_| std::panic::panic_any(42_i32));
    assert!(count("Box<dyn Any>") > before);
    assert_eq!(pool.submit(echo, 5).unwrap().result(), Ok(&5));
});

// Callbacks that all panic, on the process pool's i/o thread: every panic is reported and the
// pool still answers.
#[test]
fn many_panicking_callbacks_do_not_wear_the_pool_down() {
    install();
    let pool = util::process_pool(1);
    let futures: Vec<_> = (0..20).map(|i| pool.submit(echo, i).unwrap()).collect();
    for (i, f) in futures.iter().enumerate() {
        f.add_done_callback(move |_| panic!("many {i}"));
    }
    for (i, f) in (0..20).zip(&futures) {
        assert_eq!(f.result_timeout(LONG), Ok(&i));
    }
    for i in 0..20 {
        handled(&format!("many {i}"));
    }
    assert_eq!(pool.submit(echo, 21).unwrap().result_timeout(LONG), Ok(&21));
}
