//! Code as a newcomer writes it: `let value = fut.result()?;` in a function that returns
//! `Box<dyn Error>` or `anyhow::Result`. Before `result()` gave an owned error this failed to
//! compile (E0515 / E0597: the borrowed error cannot leave the function).

mod util;

use std::error::Error;

use cf::{ProcessPoolExecutor, TaskError, ThreadPoolExecutor};

#[cf::task]
fn parse(text: String) -> Result<u64, String> {
    text.parse().map_err(|e| format!("{text:?}: {e}"))
}

fn boxed(pool: &ProcessPoolExecutor, text: &str) -> Result<u64, Box<dyn Error>> {
    let future = pool.submit(parse, text.to_owned())?;
    let value = future.result()?;
    Ok(*value)
}

fn with_anyhow(pool: &ProcessPoolExecutor, text: &str) -> anyhow::Result<u64> {
    let future = pool.submit(parse, text.to_owned())?;
    let value = future.result()?;
    Ok(*value)
}

fn threads_with_anyhow() -> anyhow::Result<u32> {
    let pool = ThreadPoolExecutor::new();
    let future = pool.submit(|x: u32| x + 1, 41)?;
    let value = future.result()?;
    let waited = future.result_timeout(util::LONG)?;
    Ok(*value + *waited - 42)
}

#[test]
fn question_mark_into_box_dyn_error() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    assert_eq!(boxed(&pool, "12").unwrap(), 12);
    let error = boxed(&pool, "x").unwrap_err();
    assert_eq!(
        error.downcast_ref::<TaskError<String>>(),
        Some(&TaskError::Failed(
            "\"x\": invalid digit found in string".to_owned()
        ))
    );
}

#[test]
fn question_mark_into_anyhow() {
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    assert_eq!(with_anyhow(&pool, "7").unwrap(), 7);
    let error = with_anyhow(&pool, "x").unwrap_err();
    assert_eq!(error.to_string(), "\"x\": invalid digit found in string");
    assert!(error.downcast_ref::<TaskError<String>>().is_some());
    assert_eq!(threads_with_anyhow().unwrap(), 42);
}

#[test]
fn question_mark_into_cf_error_keeps_the_task_error_as_source() {
    fn run(pool: &ProcessPoolExecutor) -> Result<u64, cf::Error> {
        Ok(*pool.submit(parse, "x".to_owned())?.result()?)
    }
    let _serial = util::serial();
    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    let error = run(&pool).unwrap_err();
    assert!(error.is_task());
    let source = error.source().expect("the task error");
    assert_eq!(
        source.downcast_ref::<TaskError<String>>(),
        Some(&TaskError::Failed(
            "\"x\": invalid digit found in string".to_owned()
        ))
    );
}
