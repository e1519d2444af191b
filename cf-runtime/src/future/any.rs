//! [`AnyFuture`] and [`Waitable`]: waiting on futures of different types together.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::{AnyCore, Future, Signal, Status};

/// A future of any type, for waiting on futures of different types together.
#[derive(Clone)]
pub struct AnyFuture {
    any: Arc<dyn AnyCore>,
}

impl AnyFuture {
    /// Whether the future is done.
    pub fn done(&self) -> bool {
        self.any.signal().status().is_done()
    }

    /// Whether the future was cancelled.
    pub fn cancelled(&self) -> bool {
        self.any.signal().status() == Status::Cancelled
    }

    /// Whether the future finished with an error (other than cancellation).
    pub fn failed(&self) -> bool {
        self.any.signal().status() == Status::Failed
    }
}

impl PartialEq for AnyFuture {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.any.signal(), other.any.signal())
    }
}

impl Eq for AnyFuture {}

impl Hash for AnyFuture {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::from_ref(self.any.signal()).hash(state);
    }
}

impl fmt::Debug for AnyFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyFuture")
            .field("id", &std::ptr::from_ref(self.any.signal()))
            .finish()
    }
}

impl<T, E> From<&Future<T, E>> for AnyFuture {
    fn from(f: &Future<T, E>) -> Self {
        let any: Arc<dyn AnyCore> = f.core.clone();
        AnyFuture { any }
    }
}

impl<T, E> From<Future<T, E>> for AnyFuture {
    fn from(f: Future<T, E>) -> Self {
        AnyFuture::from(&f)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// What [`wait`](crate::wait) and [`as_completed`](crate::as_completed) accept: a [`Future`], an
/// [`AnyFuture`], or a reference to either.
pub trait Waitable: sealed::Sealed {
    /// The owned handle that comes back in the results.
    type Handle: Clone + Eq + Hash + Waitable;
    /// An owned handle to the same future.
    fn handle(&self) -> Self::Handle;
    #[doc(hidden)]
    fn __signal(&self) -> &Signal;
}

impl<T, E> sealed::Sealed for Future<T, E> {}
impl<T, E> Waitable for Future<T, E> {
    type Handle = Self;
    fn handle(&self) -> Self {
        self.clone()
    }
    fn __signal(&self) -> &Signal {
        self.core.signal()
    }
}

impl sealed::Sealed for AnyFuture {}
impl Waitable for AnyFuture {
    type Handle = Self;
    fn handle(&self) -> Self {
        self.clone()
    }
    fn __signal(&self) -> &Signal {
        self.any.signal()
    }
}

impl<W: Waitable + ?Sized> sealed::Sealed for &W {}
impl<W: Waitable + ?Sized> Waitable for &W {
    type Handle = W::Handle;
    fn handle(&self) -> W::Handle {
        (**self).handle()
    }
    fn __signal(&self) -> &Signal {
        (**self).__signal()
    }
}
