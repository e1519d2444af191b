//! Futures from either executor are `std::future::Future`s: they work under tokio (and any other
//! executor), with `join_all`, `select!`, and `as_completed` as a `Stream`.
#![allow(missing_docs, reason = "tasks are test fixtures")]

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use cf::{
    ProcessPoolExecutor, ReturnWhen, TaskError, ThreadPoolExecutor, as_completed, task, wait_async,
};
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

/// A task on the runtime that counts the ticks of a 1 ms timer: it advances only while the
/// runtime's thread is free.
fn ticker() -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let ticks = Arc::new(AtomicUsize::new(0));
    let counter = ticks.clone();
    let handle = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(1));
        loop {
            interval.tick().await;
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    (ticks, handle)
}

/// Polls `pending` (which must not complete) until the ticker has ticked `n` more times.
async fn tick_beside<F: std::future::Future + Unpin>(
    pending: &mut F,
    ticks: &AtomicUsize,
    n: usize,
) {
    let until = ticks.load(Ordering::Relaxed) + n;
    while ticks.load(Ordering::Relaxed) < until {
        tokio::select! {
            _ = &mut *pending => panic!("it completed while its task was held"),
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
}

/// Lets `entered` go when told, or after [`util::LONG`]: a `shutdown_async` that blocked would
/// block until then, and fail the test instead of hanging it.
fn releaser(entered: util::Entered) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        let _ = rx.recv_timeout(util::LONG);
        entered.release();
    });
    (tx, handle)
}

/// Issue 12 (Adopters) item 6: dropping (or shutting down) a pool inside a tokio task blocked
/// the runtime's thread until the pool's tasks were done (a timer got 0 ticks). On a
/// one-thread runtime, `shutdown_async` waits for a running task while a timer keeps ticking,
/// and completes once the task is done; dropping the pool then does not block.
#[tokio::test(flavor = "current_thread")]
async fn shutdown_async_lets_a_timer_tick_while_a_task_runs() {
    let pool = ProcessPoolExecutor::with_max_workers(1).unwrap();
    let gate = util::Gate::new();
    let held = pool.submit(util::gated, (gate.path(), 7)).unwrap();
    let (release, releaser) = releaser(gate.entered());
    let (ticks, ticker) = ticker();
    let mut shutdown = pool.shutdown_async();
    assert!(pool.submit(square, 2).unwrap_err().error().is_shutdown());
    tick_beside(&mut shutdown, &ticks, 5).await;
    assert!(
        !held.done(),
        "the task ended before the timer ticked: shutdown_async blocked"
    );
    release.send(()).unwrap();
    shutdown.await;
    assert_eq!(held.result(), Ok(&7));
    drop(pool);
    ticker.abort();
    releaser.join().unwrap();
}

/// The same on a thread pool.
#[tokio::test(flavor = "current_thread")]
async fn thread_pool_shutdown_async_lets_a_timer_tick() {
    let pool = ThreadPoolExecutor::with_max_workers(2);
    let (tx, rx) = mpsc::channel::<()>();
    let held = pool
        .submit(move || rx.recv_timeout(util::LONG).is_ok(), ())
        .unwrap();
    let (ticks, ticker) = ticker();
    let mut shutdown = pool.shutdown_async();
    tick_beside(&mut shutdown, &ticks, 5).await;
    assert!(
        !held.done(),
        "the task ended before the timer ticked: shutdown_async blocked"
    );
    tx.send(()).unwrap();
    shutdown.await;
    assert_eq!(held.result(), Ok(&true));
    drop(pool);
    ticker.abort();
}

/// A thread pool that never started a thread is shut down at once.
#[tokio::test(flavor = "current_thread")]
async fn shutdown_async_of_an_idle_thread_pool_completes() {
    let pool = ThreadPoolExecutor::with_max_workers(2);
    pool.shutdown_async().await;
    pool.shutdown_async().await;
}

/// `wait_async` is `wait` without blocking: the timer ticks while it waits, and it returns the
/// same sets `wait` would.
#[tokio::test(flavor = "current_thread")]
async fn wait_async_lets_a_timer_tick() {
    let pool = ThreadPoolExecutor::with_max_workers(2);
    let (tx, rx) = mpsc::channel::<()>();
    let held = pool
        .submit(move || rx.recv_timeout(util::LONG).is_ok(), ())
        .unwrap();
    let quick = pool.submit(|x: u32| x > 0, 1).unwrap();
    assert!(quick.wait_timeout(util::LONG));
    let first = wait_async([&held, &quick], ReturnWhen::FirstCompleted).await;
    assert_eq!(first.done.len(), 1);
    assert!(first.done.contains(&quick));
    let (ticks, ticker) = ticker();
    let mut all = wait_async([&held, &quick], ReturnWhen::AllCompleted);
    tick_beside(&mut all, &ticks, 5).await;
    tx.send(()).unwrap();
    let all = all.await;
    assert_eq!((all.done.len(), all.not_done.len()), (2, 0));
    ticker.abort();
}
