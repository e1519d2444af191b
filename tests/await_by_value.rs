//! `fut.await` leaves the future usable (a `select!` on `&mut fut` may be followed by
//! `fut.result()`), so it clones the value; `into_result` on the last handle moves it.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

static CLONES: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Counted(u64);

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, Ordering::SeqCst);
        Counted(self.0)
    }
}

#[cf::task]
fn counted(x: u64) -> Counted {
    Counted(x)
}

#[test]
fn awaiting_through_a_mutable_reference_leaves_the_future_usable() {
    // The clone counter is shared: one test at a time.
    let _serial = util::serial();
    let pool = cf::ThreadPoolExecutor::with_max_workers(1);
    let mut future = pool.submit(counted, 7).unwrap();
    assert_eq!(util::block_on(&mut future), Ok(Counted(7)));
    assert_eq!(future.result(), Ok(&Counted(7)));
    assert_eq!(util::block_on(future), Ok(Counted(7)));
}

#[test]
fn into_result_of_the_only_handle_does_not_clone() {
    let _serial = util::serial();
    let pool = cf::ThreadPoolExecutor::with_max_workers(1);
    let future = pool.submit(counted, 7).unwrap();
    future.wait_timeout(util::LONG);
    let before = CLONES.load(Ordering::SeqCst);
    assert_eq!(future.into_result(), Ok(Counted(7)));
    assert_eq!(
        CLONES.load(Ordering::SeqCst) - before,
        0,
        "the only handle's value was cloned"
    );
}
