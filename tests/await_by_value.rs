//! Regression: `fut.await` on the only handle of a future moves the value out, as documented;
//! it used to clone it always (the poll cloned the handle before `into_result`).

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
fn await_by_value_of_the_only_handle_does_not_clone() {
    let pool = cf::ThreadPoolExecutor::with_max_workers(1);
    let future = pool.submit(counted, 7).unwrap();
    future.wait_timeout(util::LONG);
    let before = CLONES.load(Ordering::SeqCst);
    assert_eq!(util::block_on(future), Ok(Counted(7)));
    assert_eq!(
        CLONES.load(Ordering::SeqCst) - before,
        0,
        "the only handle's value was cloned"
    );
}
