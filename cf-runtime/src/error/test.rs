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
        node: None,
        exit: Exit::Signal(11),
        stderr: "noise\nSegmentation fault in foo\n".into(),
    };
    assert_eq!(
        died.to_string(),
        "worker (pid 42) died with signal 11 (SIGSEGV) while running task `m::t`; \
         its last words: Segmentation fault in foo"
    );
    let timed_out: TaskError = TaskError::TimeLimit {
        task: "m::t".into(),
        pid: 7,
        node: None,
        limit: Duration::from_millis(500),
    };
    assert_eq!(
        timed_out.to_string(),
        "task `m::t` exceeded its time limit of 500 ms (worker pid 7 was killed)"
    );
    let memory: TaskError = TaskError::MemoryLimit {
        task: "m::t".into(),
        pid: 7,
        node: None,
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

#[test]
fn remote_workers_are_named_by_node() {
    let node = Some("cn17 (rank 3)".to_owned());
    let cases: Vec<(TaskError, &str)> = vec![
        (
            TaskError::WorkerDied {
                task: "m::t".into(),
                pid: 1234,
                node: node.clone(),
                exit: Exit::Signal(9),
                stderr: String::new(),
            },
            "worker pid 1234 on node cn17 (rank 3) died with signal 9 (SIGKILL) while running \
             task `m::t`",
        ),
        (
            TaskError::TimeLimit {
                task: "m::t".into(),
                pid: 1234,
                node: node.clone(),
                limit: Duration::from_secs(2),
            },
            "task `m::t` exceeded its time limit of 2 s (worker pid 1234 on node cn17 (rank 3) \
             was killed)",
        ),
        (
            TaskError::StackOverflow {
                task: "m::t".into(),
                pid: 1234,
                node: node.clone(),
            },
            "task `m::t` overflowed its stack (worker pid 1234 on node cn17 (rank 3) died)",
        ),
        (
            TaskError::MemoryLimit {
                task: "m::t".into(),
                pid: 1234,
                node: node.clone(),
                limit: 1 << 30,
            },
            "task `m::t` exceeded the memory limit of 1 GiB (worker pid 1234 on node cn17 \
             (rank 3))",
        ),
        (
            TaskError::Protocol {
                task: "m::t".into(),
                pid: 1234,
                node,
                violation: ProtocolViolation::UnknownKind { kind: 0x7f },
            },
            "worker pid 1234 on node cn17 (rank 3) broke the protocol while running task \
             `m::t`: unknown reply kind 0x7f",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
}

#[test]
fn pool_causes_are_variants_with_their_own_text() {
    let task = || "m::t".to_owned();
    let startup = |last| BrokenCause::Startup { failures: 3, last };
    let cases: Vec<(TaskError, &str)> = vec![
        (
            TaskError::Shutdown { task: task() },
            "task `m::t` did not run: cannot submit after shutdown",
        ),
        (
            TaskError::Terminated { task: task() },
            "task `m::t` did not run: the pool's workers were terminated",
        ),
        (
            TaskError::Broken {
                task: task(),
                cause: BrokenCause::IoThreadStopped,
            },
            "task `m::t` did not run: the pool is broken: the pool's i/o thread stopped",
        ),
        (
            TaskError::Broken {
                task: task(),
                cause: startup(StartupFailure::Initializer {
                    task: "m::init".into(),
                    message: "it returned an error".into(),
                }),
            },
            "task `m::t` did not run: the pool is broken: 3 workers in a row failed to start; \
             the last: the initializer `m::init` failed: it returned an error",
        ),
        (
            TaskError::UnknownTask { task: task() },
            "task `m::t` is not in the worker's task table",
        ),
        (
            TaskError::MissingOutcome { task: task() },
            "task `m::t` has no outcome: the worker returned fewer outcomes than the chunk had \
             inputs",
        ),
        (
            TaskError::Abandoned,
            "the executor dropped this task without completing it",
        ),
        (TaskError::Killed, "the task was killed while running"),
        (TaskError::Timeout, "timed out waiting for the result"),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
    let failures = [
        (
            StartupFailure::Exited {
                pid: 9,
                exit: Exit::Code(3),
            },
            "worker (pid 9) exited during start-up with exit code 3",
        ),
        (
            StartupFailure::Handshake {
                pid: 9,
                reason: HandshakeError::TaskTableDiffers,
            },
            "worker (pid 9) failed the handshake: the worker's task table differs from the \
             parent's",
        ),
        (
            StartupFailure::Handshake {
                pid: 9,
                reason: HandshakeError::ProtocolVersion {
                    worker: 2,
                    expected: 1,
                },
            },
            "worker (pid 9) failed the handshake: protocol version 2 where 1 was expected",
        ),
        (
            StartupFailure::spawn(&io::Error::from(io::ErrorKind::PermissionDenied)),
            "failed to start a worker process: permission denied",
        ),
    ];
    for (failure, text) in failures {
        assert_eq!(failure.to_string(), text);
    }
}

#[test]
fn a_task_error_is_the_source_of_the_error_it_becomes() {
    let error = Error::from(TaskError::<Never>::Cancelled);
    assert!(error.is_task());
    assert_eq!(error.to_string(), "a task did not produce its value");
    let source = std::error::Error::source(&error).expect("a source");
    assert_eq!(
        source.downcast_ref::<TaskError>(),
        Some(&TaskError::Cancelled)
    );
}

#[test]
fn a_broken_pool_refuses_with_its_cause() {
    let error = Error::new(ErrorKind::Broken(BrokenCause::IoThreadStopped));
    assert!(error.is_broken());
    assert_eq!(error.broken_cause(), Some(&BrokenCause::IoThreadStopped));
    assert_eq!(
        error.into_task_error::<Never>("m::t"),
        TaskError::Broken {
            task: "m::t".into(),
            cause: BrokenCause::IoThreadStopped
        }
    );
}
