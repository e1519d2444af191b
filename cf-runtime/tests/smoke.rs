//! The runtime driven with hand-written task registrations (no macro).
#![allow(missing_docs)]

use cf_runtime::{ProcessPoolExecutor, ReturnWhen, TaskError, as_completed, wait};
use cf_worker::{Never, TASKS, Task, TaskEntry};

#[derive(Clone, Copy)]
struct Square;

#[linkme::distributed_slice(TASKS)]
static SQUARE: TaskEntry = TaskEntry::new::<Square>();

impl Task for Square {
    type Args = u64;
    type Output = u64;
    type Error = Never;
    const NAME: &'static str = "smoke::square";
    fn call(x: u64) -> Result<u64, Never> {
        if x == 13 {
            panic!("unlucky {x}");
        }
        if x == 666 {
            std::process::abort();
        }
        Ok(x * x)
    }
    fn entry() -> &'static TaskEntry {
        &SQUARE
    }
}

#[test]
fn squares_panics_and_aborts() {
    let pool = ProcessPoolExecutor::with_max_workers(2).unwrap();
    let futures: Vec<_> = (0..20)
        .chain([666])
        .map(|x| pool.submit(Square, x).unwrap())
        .collect();
    let done = wait(&futures, None, ReturnWhen::AllCompleted);
    assert_eq!(done.done.len(), 21);
    for (x, f) in (0..20).chain([666]).zip(&futures) {
        match (x, f.result()) {
            (13, Err(TaskError::Panicked(p))) => assert_eq!(p.message, "unlucky 13"),
            (666, Err(TaskError::WorkerDied { exit, .. })) => {
                assert_eq!(exit.signal_name(), Some("SIGABRT"))
            }
            (x, Ok(v)) => assert_eq!(*v, x * x),
            (x, other) => panic!("{x}: {other:?}"),
        }
    }
    let after: Vec<_> = (0..5).map(|x| pool.submit(Square, x).unwrap()).collect();
    let total: u64 = as_completed(&after, None)
        .map(|f| *f.result().unwrap())
        .sum();
    assert_eq!(total, 30);
}
