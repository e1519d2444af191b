//! The `#[task]` attribute of [cf](https://docs.rs/concurrent-futures), re-exported as
//! `cf::task`. Users never name this crate.
//!
//! The macro runs in three steps: `args.rs` parses the attribute's arguments, `valid.rs` refuses
//! what a task cannot be (over the borrowed model in `ast.rs`), and `expand.rs` writes the marker
//! type, its constant and the impls.
//! The expansion names only `::cf::__private` and `::core`.

mod args;
mod ast;
mod context;
mod expand;
mod valid;

use proc_macro::TokenStream;
use syn::Item;

use crate::args::TaskArgs;

/// Makes a function a task that a `ProcessPoolExecutor` can run in a worker process.
///
/// ```
/// use cf::task;
///
/// /// Adds two numbers.
/// #[task]
/// pub fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// # fn main() -> Result<(), cf::Error> {
/// assert_eq!(add(2, 3), 5); // still an ordinary function
/// let pool = cf::ProcessPoolExecutor::new()?;
/// let sum = pool.submit(add, (2, 3))?; // and a value that `submit` takes
/// assert_eq!(*sum.result()?, 5);
/// # Ok(())
/// # }
/// ```
///
/// The function keeps its name twice over: `add` is a constant that calls like the function
/// (`add(2, 3)`) and a zero-sized marker type that implements `cf::Task`. Submitting checks the
/// arguments against the signature at compile time: `()` for a function without parameters, the
/// value itself for one parameter, a tuple for two or more.
///
/// Inside its own body the name is still the plain function, so recursion is a direct call and a
/// parameter or a local may reuse the name; `self::add` is the constant there. Elsewhere in the
/// module `add` is a constant, and like any constant it cannot be shadowed: `let add = ...;`
/// there is an error.
///
/// # Arguments and results
///
/// Every parameter type and the return type must be `Serialize + DeserializeOwned + Send +
/// 'static`; a type that is not gets a compile error at that type. A task takes at most 16
/// arguments (they travel as one tuple, and serde stops at 16); group more in a struct.
///
/// A function that returns a `Result` completes its future with `T`, or fails it with its own
/// error `E`; any other return type `T` is a task that cannot fail (`cf::Task::Error` is
/// `cf::Never`). A function returning `!` never completes with a value (its `cf::Task::Output`
/// is `cf::Never`). A `Result` is recognised by name: any path ending in `Result`, so
/// `Result<T, E>`, a crate's own alias `Result<T>` and `io::Result<T>` all count (the compiler
/// then checks that the type really is a `Result`, and the error type must be a serde value,
/// which `io::Error` and `fmt::Error` are not). Two arguments decide the rest:
///
/// - `#[task(result)]`: the return type is a `Result` under another name
///   (`type Fallible<T> = Result<T, MyError>`);
/// - `#[task(result = false)]`: the return value is the task's value even though its type is
///   named `Result`: the future completes with the whole `Result`.
///
/// ```
/// use cf::task;
/// use std::num::ParseIntError;
///
/// #[task]
/// fn parse(text: String) -> Result<i64, String> {
///     text.trim().parse().map_err(|e: ParseIntError| e.to_string())
/// }
///
/// # fn main() {
/// assert_eq!(parse(" 7 ".to_owned()), Ok(7));
/// # }
/// ```
///
/// # The task's name
///
/// A worker finds the function by name: by default its module path and function name, like
/// `my_crate::jobs::add`. `#[task(name = "...")]` pins another; names must be unique in a
/// binary.
///
/// ```
/// use cf::Task;
///
/// #[cf::task(name = "adder-v1")]
/// fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// # fn main() {
/// assert_eq!(<add as Task>::NAME, "adder-v1");
/// # }
/// ```
///
/// # A default time limit
///
/// `#[task(timeout = "500ms")]` (units `ms`, `s`, `m`) gives the task a time limit on a
/// `ProcessPoolExecutor`: a run past it kills its worker and fails the future with
/// `TaskError::TimeLimit`. A limit given at submit (`submit_with`) wins; the pool's default
/// (`task_timeout`) applies to tasks without one.
///
/// ```
/// use std::time::Duration;
///
/// use cf::Task;
///
/// #[cf::task(timeout = "1.5s")]
/// fn crunch(n: u64) -> u64 {
///     n * 2
/// }
///
/// # fn main() {
/// assert_eq!(<crunch as Task>::TIMEOUT, Some(Duration::from_millis(1500)));
/// # }
/// ```
///
/// # Attributes
///
/// Doc comments and `#[deprecated]` go on the constant, the name users see; `#[cfg]` and lint
/// levels (`#[allow]`, `#[warn]`, `#[deny]`, `#[forbid]`) on everything generated; any other
/// attribute (`#[inline]`, `#[expect]`, ...) on the function itself.
///
/// # Another name for the crate
///
/// The expansion names the facade as `::cf`. Under another name (a renamed dependency,
/// `pools = { package = "concurrent-futures", .. }`, or a re-export), say where it is:
/// `#[pools::task(crate = ::pools)]`.
///
/// # Refused
///
/// These are compile errors at the offending code: generic parameters (and `where` clauses),
/// `async fn`, `unsafe fn`, `extern fn`, a `self` receiver, borrowed arguments or results (a
/// reference or a lifetime other than `'static`), `impl Trait`, variadics, more than 16
/// arguments, and unknown arguments to the attribute.
///
/// A task is a free function: a worker looks it up by name in a table and calls it with its
/// arguments alone. `#[task]` inside an `impl` or a trait is one error that says so. The
/// attribute sees only the function, so it tells from a `Self` in it, or else from the source
/// file (a `#[task]` of that name inside an `impl` and none outside); where neither tells,
/// rustc reports the generated items as unsupported in an `impl`.
///
/// ```compile_fail
/// #[cf::task]
/// fn first(words: &[String]) -> String {
///     words[0].clone()
/// }
/// # fn main() {}
/// ```
#[proc_macro_attribute]
pub fn task(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = syn::parse::<TaskArgs>(args);
    let input = proc_macro2::TokenStream::from(input);
    let output = match syn::parse2::<Item>(input.clone()) {
        // A receiver gets its own error, at `self`.
        Ok(Item::Fn(item)) if item.sig.receiver().is_none() && context::in_impl_or_trait(&item) => {
            expand::fallback(&item, &valid::not_free(proc_macro2::Span::call_site()))
        }
        Ok(Item::Fn(item)) => expand::expand(args, &item),
        Ok(item) => expand::fallback(&item, &valid::not_a_fn(&item)),
        Err(error) => expand::fallback(&input, &error),
    };
    output.into()
}
