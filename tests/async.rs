//! Futures from either executor are `std::future::Future`s: they work under tokio (and any other
//! executor), with `join_all`, `select!`, and `as_completed` as a `Stream`.
#![allow(missing_docs, reason = "tasks are test fixtures")]

use std::time::Duration;

use cf::{ProcessPoolExecutor, TaskError, ThreadPoolExecutor, as_completed, task};
use futures::StreamExt;

#[task]
fn square(x: u64) -> u64 {
    x * x
}

#[task]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[task]
fn fail(why: String) -> Result<(), String> {
    Err(why)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_lends_or_moves_the_outcome() {
    let pool = ProcessPoolExecutor::with_max_workers(2).unwrap();
    let future = pool.submit(square, 12).unwrap();
    assert_eq!((&future).await, Ok(&144));
    assert_eq!(future.clone().await, Ok(144));
    assert_eq!(future.await, Ok(144));
    let failed = pool.submit(fail, "no".to_owned()).unwrap();
    assert_eq!(failed.await, Err(TaskError::Failed("no".to_owned())));
}

#[tokio::test]
async fn join_all_collects_in_order() {
    let pool = ProcessPoolExecutor::with_max_workers(2).unwrap();
    let futures: Vec<_> = (0..20).map(|x| pool.submit(square, x).unwrap()).collect();
    let results = futures::future::join_all(futures).await;
    let expected: Vec<_> = (0..20).map(|x| Ok(x * x)).collect();
    assert_eq!(results, expected);
}

#[tokio::test]
async fn select_takes_the_first_to_finish() {
    let pool = ProcessPoolExecutor::with_max_workers(2).unwrap();
    let slow = pool.submit(nap, 5_000).unwrap();
    let fast = pool.submit(nap, 0).unwrap();
    let winner = tokio::select! {
        r = &slow => r.copied(),
        r = &fast => r.copied(),
    };
    assert_eq!(winner, Ok(0));
    assert!(!slow.done());
    assert!(slow.kill());
}

#[tokio::test]
async fn a_tokio_timeout_leaves_the_future_pending() {
    let pool = ThreadPoolExecutor::with_max_workers(1);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let blocked = pool.submit(move || rx.recv().is_ok(), ()).unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(50), &blocked).await;
    assert!(waited.is_err());
    assert!(!blocked.done());
    tx.send(()).unwrap();
    assert_eq!(blocked.await, Ok(true));
}

#[tokio::test]
async fn as_completed_is_a_stream_in_completion_order() {
    let pool = ThreadPoolExecutor::with_max_workers(4);
    // Task i finishes when its own channel says so; the test releases them in reverse order.
    let (releases, futures): (Vec<_>, Vec<_>) = (0..4u32)
        .map(|i| {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let future = pool
                .submit(move || rx.recv().map(|()| i).unwrap_or(99), ())
                .unwrap();
            (tx, future)
        })
        .unzip();
    let mut stream = as_completed(&futures, None).into_stream();
    let mut order = Vec::new();
    for i in (0..4).rev() {
        releases[i].send(()).unwrap();
        let next = stream.next().await.unwrap();
        order.push(*next.result().unwrap());
    }
    assert_eq!(order, [3, 2, 1, 0]);
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn a_process_pool_stream_yields_every_future_once() {
    let pool = ProcessPoolExecutor::with_max_workers(2).unwrap();
    let futures: Vec<_> = (0..50).map(|x| pool.submit(square, x).unwrap()).collect();
    let mut seen: Vec<u64> = as_completed(futures.iter().chain(&futures), None)
        .into_stream()
        .map(|f| *f.result().unwrap())
        .collect()
        .await;
    seen.sort_unstable();
    assert_eq!(seen, (0..50).map(|x| x * x).collect::<Vec<_>>());
}
