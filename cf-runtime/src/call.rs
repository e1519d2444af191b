//! What an executor can run: [`Callable`], implemented for `#[task]` functions and, for the
//! thread pool, for plain closures.

use std::marker::PhantomData;

use cf_worker::{Never, Task};

/// Something that runs on `Args` and produces `Output` or its own `Error`.
///
/// Implemented for every `#[task]` (with the task's argument shape) and for closures and
/// functions of up to six arguments (`()` for none, the value for one, a tuple for more). `M` only
/// tells the implementations apart; it is inferred.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be called with arguments of type `{Args}`",
    label = "expected a #[task] or closure taking `{Args}`",
    note = "pass `()` for no argument, the value itself for one, and a tuple for two or more"
)]
pub trait Callable<Args, M>: Send + 'static {
    /// The value it produces.
    type Output;
    /// Its own error type ([`Never`] for closures and infallible tasks).
    type Error;
    /// Runs it.
    ///
    /// # Errors
    /// The task's own error.
    fn call_with(self, args: Args) -> Result<Self::Output, Self::Error>;
    /// A name for errors and logs.
    fn name(&self) -> &'static str;
}

/// Marks the implementation of [`Callable`] for `#[task]` functions.
#[derive(Debug)]
pub enum TaskMarker {}

/// Marks the implementation of [`Callable`] for closures of a given signature.
#[derive(Debug)]
pub struct FnMarker<S>(PhantomData<S>);

impl<T: Task> Callable<T::Args, TaskMarker> for T {
    type Output = T::Output;
    type Error = T::Error;
    fn call_with(self, args: T::Args) -> Result<T::Output, T::Error> {
        T::call(args)
    }
    fn name(&self) -> &'static str {
        T::NAME
    }
}

impl<F, R> Callable<(), FnMarker<fn() -> R>> for F
where
    F: FnOnce() -> R + Send + 'static,
{
    type Output = R;
    type Error = Never;
    fn call_with(self, (): ()) -> Result<R, Never> {
        Ok(self())
    }
    fn name(&self) -> &'static str {
        std::any::type_name::<F>()
    }
}

impl<F, A, R> Callable<A, FnMarker<fn(A) -> R>> for F
where
    F: FnOnce(A) -> R + Send + 'static,
{
    type Output = R;
    type Error = Never;
    fn call_with(self, a: A) -> Result<R, Never> {
        Ok(self(a))
    }
    fn name(&self) -> &'static str {
        std::any::type_name::<F>()
    }
}

macro_rules! callable_tuple {
    ($($a:ident)+) => {
        impl<F, $($a,)+ R> Callable<($($a,)+), FnMarker<fn($($a),+) -> R>> for F
        where
            F: FnOnce($($a),+) -> R + Send + 'static,
        {
            type Output = R;
            type Error = Never;
            #[allow(non_snake_case, reason = "the type names double as bindings")]
            fn call_with(self, ($($a,)+): ($($a,)+)) -> Result<R, Never> {
                Ok(self($($a),+))
            }
            fn name(&self) -> &'static str {
                std::any::type_name::<F>()
            }
        }
    };
}

callable_tuple!(A B);
callable_tuple!(A B C);
callable_tuple!(A B C D);
callable_tuple!(A B C D G);
callable_tuple!(A B C D G H);
