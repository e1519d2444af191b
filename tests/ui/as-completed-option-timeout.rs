// `as_completed` takes `None` or a `Duration`: an `Option<Duration>` would leave it unclear
// whether the iterator yields futures or `Result`s, so the error says what to pass instead.
use std::time::Duration;

fn main() {
    let pool = cf::ThreadPoolExecutor::new();
    let futures = vec![pool.submit(|x: u32| x, 1).unwrap()];
    let timeout: Option<Duration> = Some(Duration::from_secs(1));
    for future in cf::as_completed(&futures, timeout) {
        let _ = future;
    }
}
