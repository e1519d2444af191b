use cf_worker::Never;

use super::*;

#[test]
fn durations_and_sizes_read_well() {
    let d = |ms| HumanDuration(Duration::from_millis(ms)).to_string();
    assert_eq!(d(500), "500 ms");
    assert_eq!(d(2000), "2 s");
    assert_eq!(d(1500), "1.5 s");
    assert_eq!(d(1234), "1234 ms");
    assert_eq!(HumanBytes(256 << 20).to_string(), "256 MiB");
    assert_eq!(HumanBytes(1 << 30).to_string(), "1 GiB");
    assert_eq!(HumanBytes(1000).to_string(), "1000 bytes");
}

#[test]
fn task_errors_say_what_happened() {
    let died: TaskError = TaskError::WorkerDied {
        task: "m::t".into(),
        pid: 42,
        exit: Exit::Signal(11),
        stderr: "noise\nSegmentation fault in foo\n".into(),
    };
    assert_eq!(
        died.to_string(),
        "worker (pid 42) died with signal 11 (SIGSEGV) while running task `m::t`; \
         its last words: Segmentation fault in foo"
    );
    let timed_out: TaskError = TaskError::TimedOut {
        task: "m::t".into(),
        pid: 7,
        limit: Duration::from_millis(500),
    };
    assert_eq!(
        timed_out.to_string(),
        "task `m::t` exceeded its time limit of 500 ms (worker pid 7 was killed)"
    );
    let memory: TaskError = TaskError::MemoryLimit {
        task: "m::t".into(),
        pid: 7,
        limit: 256 << 20,
    };
    assert_eq!(
        memory.to_string(),
        "task `m::t` exceeded the memory limit of 256 MiB (worker pid 7)"
    );
    assert_eq!(
        TaskError::<Never>::Cancelled.to_string(),
        "the future was cancelled"
    );
}
