//! What `#[task]` generates: a constant that calls like the function and a marker type that
//! implements [`Task`] with the right argument shape, outcome and name.

use std::marker::PhantomData;
use std::ptr;

use cf::{Never, ProcessPoolExecutor, Task, TaskError, task};

/// Fails to compile unless the two types are the same.
macro_rules! assert_type {
    ($actual:ty, $expected:ty) => {
        let _: PhantomData<$expected> = PhantomData::<$actual>;
    };
}

/// Adds.
#[task]
pub fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task]
fn factorial(n: u64) -> u64 {
    if n == 0 { 1 } else { n * factorial(n - 1) }
}

#[task]
fn answer() -> u8 {
    42
}

#[task]
fn nothing() {}

#[task]
fn shout(text: String) -> String {
    text.to_uppercase()
}

#[task]
fn three(a: u8, b: String, c: Vec<u16>) -> (u8, String, usize) {
    (a, b, c.len())
}

#[task]
fn parse(text: String) -> Result<i64, String> {
    text.trim()
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())
}

#[task]
fn checked(n: u32) -> std::result::Result<u32, String> {
    n.checked_mul(2).ok_or_else(|| format!("{n} is too large"))
}

#[task]
fn diverge(message: String) -> ! {
    panic!("{message}")
}

#[task]
fn patterns((a, b): (i32, i32), mut c: i32, _: u8) -> i32 {
    c += 1;
    a + b + c
}

#[task]
const fn constant(n: u8) -> u8 {
    n + 1
}

#[task(name = "adder-v1")]
fn pinned(a: i64, b: i64) -> i64 {
    a + b
}

#[task]
fn r#match(n: u8) -> u8 {
    n
}

#[cfg(not(test))]
#[task]
fn gone() {}

#[cfg(test)]
#[task]
fn kept() {}

/// Names its own constant with `self::`.
#[task]
fn whoami() -> String {
    format!("{:?}", self::whoami)
}

/// Deprecation goes on the constant, the name callers use.
#[deprecated(note = "use `add`")]
#[task]
fn old_add(a: i64, b: i64) -> i64 {
    a + b
}

mod jobs {
    use cf::task;

    #[task]
    pub(crate) fn double(n: u64) -> u64 {
        n * 2
    }
}

/// Parameters named like the function or like the names the expansion uses.
#[task]
fn args(args: u8, f: u8, __cf_arg0: u8) -> u8 {
    args + f + __cf_arg0
}

/// A local named like the function; the lint level reaches the body.
#[allow(clippy::let_and_return, reason = "the point is the local's name")]
#[task]
fn total(values: Vec<u64>) -> u64 {
    let total = values.iter().sum();
    total
}

#[test]
fn calls_like_the_function() {
    assert_eq!(add(2, 3), 5);
    assert_eq!(answer(), 42);
    nothing();
    assert_eq!(shout("hi".to_owned()), "HI");
    assert_eq!(
        three(1, "b".to_owned(), vec![1, 2, 3]),
        (1, "b".to_owned(), 3)
    );
    assert_eq!(parse(" 7 ".to_owned()), Ok(7));
    assert_eq!(checked(u32::MAX), Err(format!("{} is too large", u32::MAX)));
    assert_eq!(patterns((1, 2), 3, 0), 7);
    assert_eq!(constant(1), 2);
    assert_eq!(pinned(1, 1), 2);
    assert_eq!(r#match(9), 9);
    kept();
    assert_eq!(jobs::double(4), 8);
    assert_eq!(args(1, 2, 3), 6);
    assert_eq!(total(vec![1, 2, 3]), 6);
    assert_eq!(whoami(), "task_macro::whoami");
    #[allow(deprecated, reason = "calls the deprecated task on purpose")]
    let sum = old_add(1, 2);
    assert_eq!(sum, 3);
}

#[test]
fn recursion() {
    assert_eq!(factorial(10), 3_628_800);
}

#[test]
fn derefs_to_a_fn_pointer() {
    let f: fn(i64, i64) -> i64 = *add;
    assert_eq!(f(20, 22), 42);
    let g: fn(String) -> ! = *diverge;
    let _ = g;
}

#[test]
fn the_marker_is_a_copyable_zero_sized_value() {
    fn task<T: Task>(task: T) -> T {
        task
    }
    assert_eq!(size_of_val(&add), 0);
    let copy = task(add);
    assert_eq!(copy(1, 1), 2);
    assert_eq!(add(1, 1), 2);
}

#[test]
fn argument_shape() {
    assert_type!(<answer as Task>::Args, ());
    assert_type!(<nothing as Task>::Args, ());
    assert_type!(<shout as Task>::Args, String);
    assert_type!(<add as Task>::Args, (i64, i64));
    assert_type!(<three as Task>::Args, (u8, String, Vec<u16>));
    assert_type!(<patterns as Task>::Args, ((i32, i32), i32, u8));
}

#[test]
fn outcome_types() {
    assert_type!(<nothing as Task>::Output, ());
    assert_type!(<nothing as Task>::Error, Never);
    assert_type!(<add as Task>::Output, i64);
    assert_type!(<add as Task>::Error, Never);
    assert_type!(<three as Task>::Output, (u8, String, usize));
    assert_type!(<parse as Task>::Output, i64);
    assert_type!(<parse as Task>::Error, String);
    assert_type!(<checked as Task>::Output, u32);
    assert_type!(<checked as Task>::Error, String);
    assert_type!(<diverge as Task>::Output, Never);
    assert_type!(<diverge as Task>::Error, Never);
}

#[test]
fn call_runs_the_function() {
    assert_eq!(add::call((2, 3)), Ok(5));
    assert_eq!(answer::call(()), Ok(42));
    assert_eq!(nothing::call(()), Ok(()));
    assert_eq!(shout::call("a".to_owned()), Ok("A".to_owned()));
    assert_eq!(
        three::call((1, "b".to_owned(), vec![])),
        Ok((1, "b".to_owned(), 0))
    );
    assert_eq!(parse::call("12".to_owned()), Ok(12));
    assert_eq!(
        parse::call("x".to_owned()),
        Err("invalid digit found in string".to_owned())
    );
    assert_eq!(patterns::call(((1, 2), 3, 0)), Ok(7));
    assert_eq!(factorial::call(5), Ok(120));
}

#[test]
fn names() {
    assert_eq!(add::NAME, "task_macro::add");
    assert_eq!(jobs::double::NAME, "task_macro::jobs::double");
    assert_eq!(r#match::NAME, "task_macro::match");
    assert_eq!(pinned::NAME, "adder-v1");
    assert_eq!(format!("{add:?}"), "task_macro::add");
    assert_eq!(format!("{pinned:?}"), "adder-v1");
}

#[test]
fn registered_once_each() {
    let entries = cf::__private::TASKS;
    for (entry, name) in [(add::entry(), add::NAME), (pinned::entry(), "adder-v1")] {
        assert_eq!(entry.name, name);
        assert_eq!(entries.iter().filter(|e| ptr::eq(*e, entry)).count(), 1);
    }
    let mut names: Vec<_> = entries.iter().map(|entry| entry.name).collect();
    names.sort_unstable();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count, "duplicate task names: {names:?}");
    assert!(!names.iter().any(|name| name.ends_with("::gone")));
    assert!(names.contains(&"task_macro::kept"));
}

#[test]
fn runs_in_a_worker() -> Result<(), cf::Error> {
    let pool = ProcessPoolExecutor::with_max_workers(1)?;
    let sum = pool.submit(add, (2, 3))?;
    let none = pool.submit(nothing, ())?;
    let loud = pool.submit(shout, "hello".to_owned())?;
    let bad = pool.submit(parse, "x".to_owned())?;
    let renamed = pool.submit(pinned, (40, 2))?;
    let nested = pool.submit(jobs::double, 21)?;
    let panicked = pool.submit(diverge, "boom".to_owned())?;
    assert_eq!(sum.result(), Ok(&5));
    assert_eq!(none.result(), Ok(&()));
    assert_eq!(loud.result().map(String::as_str), Ok("HELLO"));
    assert_eq!(
        bad.result(),
        Err(TaskError::Failed(
            "invalid digit found in string".to_owned()
        ))
    );
    assert_eq!(renamed.result(), Ok(&42));
    assert_eq!(nested.result(), Ok(&42));
    match panicked.result() {
        Err(TaskError::Panicked(info)) => assert_eq!(info.message, "boom"),
        other => panic!("expected a panic, got {other:?}"),
    }
    Ok(())
}

#[test]
fn local_tasks() {
    #[task]
    fn local(n: u8) -> u8 {
        n + 1
    }
    assert_eq!(local(1), 2);
    assert_eq!(local::NAME, "task_macro::local");
}

#[task(timeout = "300ms")]
fn spin_forever() {
    loop {
        std::hint::spin_loop();
    }
}

#[test]
fn timeout_attribute_limits_the_task() -> Result<(), cf::Error> {
    use std::time::Duration;
    assert_eq!(
        <spin_forever as cf::Task>::TIMEOUT,
        Some(Duration::from_millis(300))
    );
    let pool = cf::ProcessPoolExecutor::with_max_workers(1)?;
    let stuck = pool.submit(spin_forever, ())?;
    match stuck.result() {
        Err(TaskError::TimeLimit { limit, task, .. }) => {
            assert_eq!(limit, Duration::from_millis(300));
            assert_eq!(task, "task_macro::spin_forever");
        }
        other => panic!("expected a time-out, got {other:?}"),
    }
    // A limit given at submit wins over the attribute's.
    let options = cf::TaskOptions::new().timeout(Duration::from_millis(100));
    let shorter = pool.submit_with(spin_forever, (), options)?;
    assert!(
        matches!(shorter.result(), Err(TaskError::TimeLimit { limit, .. }) if limit == Duration::from_millis(100))
    );
    Ok(())
}

/// The facade under another name, as a renamed dependency has it
/// (`pools = { package = "concurrent-futures", .. }`).
extern crate cf as pools;

/// Tasks whose expansion names the facade by `crate = ...` instead of `::cf`.
mod renamed {
    #[pools::task(crate = ::pools)]
    pub(crate) fn triple(n: u64) -> u64 {
        n * 3
    }

    #[pools::task(crate = pools, name = "renamed-halve")]
    pub(crate) fn halve(n: u64) -> Result<u64, String> {
        if n.is_multiple_of(2) {
            Ok(n / 2)
        } else {
            Err(format!("{n} is odd"))
        }
    }
}

/// `crate = path`: regression for a renamed dependency, whose `::cf` paths did not resolve.
#[test]
fn crate_path_for_a_renamed_dependency() -> Result<(), cf::Error> {
    assert_eq!(renamed::triple(2), 6);
    assert_eq!(<renamed::halve as Task>::NAME, "renamed-halve");
    let pool = ProcessPoolExecutor::with_max_workers(1)?;
    let tripled = pool.submit(renamed::triple, 14)?;
    let odd = pool.submit(renamed::halve, 3)?;
    assert_eq!(tripled.result(), Ok(&42));
    assert_eq!(odd.result(), Err(TaskError::Failed("3 is odd".to_owned())));
    Ok(())
}

/// A crate's own `Result` alias, as most crates have one.
mod aliased {
    /// The error of this module.
    pub(crate) type Result<T> = std::result::Result<T, String>;

    /// Not named `Result`: needs `#[task(result)]`.
    pub(crate) type Fallible<T> = std::result::Result<T, String>;

    #[cf::task]
    pub(crate) fn positive(n: i64) -> Result<i64> {
        if n > 0 {
            Ok(n)
        } else {
            Err(format!("{n} is not positive"))
        }
    }

    #[cf::task(result)]
    pub(crate) fn even(n: i64) -> Fallible<i64> {
        if n % 2 == 0 {
            Ok(n)
        } else {
            Err(format!("{n} is odd"))
        }
    }

    #[cf::task(result = false)]
    pub(crate) fn verdict(n: i64) -> std::result::Result<i64, String> {
        if n > 0 { Ok(n) } else { Err("no".to_owned()) }
    }
}

/// Regression: a task returning a `Result` alias (`type Result<T> = std::result::Result<T, E>`)
/// completed with `Ok(Err(..))` instead of failing with its error.
#[test]
fn result_aliases_fail_the_task() -> Result<(), cf::Error> {
    assert_type!(<aliased::positive as Task>::Output, i64);
    assert_type!(<aliased::positive as Task>::Error, String);
    assert_type!(<aliased::even as Task>::Error, String);
    assert_type!(<aliased::verdict as Task>::Output, Result<i64, String>);
    assert_type!(<aliased::verdict as Task>::Error, Never);
    let pool = ProcessPoolExecutor::with_max_workers(1)?;
    let negative = pool.submit(aliased::positive, -1)?;
    let positive = pool.submit(aliased::positive, 1)?;
    let odd = pool.submit(aliased::even, 3)?;
    let value = pool.submit(aliased::verdict, -1)?;
    assert_eq!(
        negative.result(),
        Err(TaskError::Failed("-1 is not positive".to_owned()))
    );
    assert_eq!(positive.result(), Ok(&1));
    assert_eq!(odd.result(), Err(TaskError::Failed("3 is odd".to_owned())));
    assert_eq!(value.result(), Ok(&Err("no".to_owned())));
    Ok(())
}
