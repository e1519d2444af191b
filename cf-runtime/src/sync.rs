//! Locks whose poisoning is ignored: one place for `PoisonError::into_inner`.
//!
//! Nothing panics while holding cf's locks (callbacks, wakers and user code run after
//! unlocking), so a poisoned lock still holds consistent data, and refusing it would only turn
//! one panic into many.

use std::sync::{LockResult, Mutex, MutexGuard, PoisonError};

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    relock(m.lock())
}

/// The guard of a lock call (`lock`, `read`, `write`, a condition variable's `wait`), poisoned
/// or not.
pub(crate) fn relock<G>(result: LockResult<G>) -> G {
    result.unwrap_or_else(unpoison)
}

/// The guard inside a poisoned lock's error, for `unwrap_or_else` on a lock call.
pub(crate) fn unpoison<G>(error: PoisonError<G>) -> G {
    error.into_inner()
}
