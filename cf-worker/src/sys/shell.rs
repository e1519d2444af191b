use std::os::fd::OwnedFd;

/// Workers are not supported here: nothing to remove.
pub(crate) fn remove_marker() {}

/// Workers are not supported here.
pub(crate) fn protocol_fds() -> Option<(OwnedFd, OwnedFd)> {
    None
}

/// Workers are not supported here.
pub(crate) fn take_fd(_: i32) -> Option<OwnedFd> {
    None
}

/// Workers are not supported here.
pub(crate) fn dup_high(_: std::os::fd::BorrowedFd<'_>) -> Option<OwnedFd> {
    None
}

/// Workers are not supported here.
pub(crate) fn stderr_copy() -> Option<OwnedFd> {
    None
}

/// Workers are not supported here.
pub(crate) fn die_with_parent(_: u64) -> bool {
    false
}

/// Workers are not supported here.
pub(crate) fn privileged() -> bool {
    true
}

/// Workers are not supported here.
pub(crate) fn parent_runs_this_image() -> bool {
    false
}

/// Workers are not supported here.
pub(crate) fn ignore_sigpipe() -> bool {
    false
}

/// Workers are not supported here.
pub(crate) fn ignore_sigint() -> bool {
    false
}

/// Workers are not supported here.
pub(crate) fn limit_memory(_: u64) -> bool {
    false
}

/// Workers are not supported here.
pub(crate) fn watch_stack_overflow() {}

/// Workers are not supported here.
pub(crate) fn readable(_: std::os::fd::BorrowedFd<'_>, _: std::time::Duration) -> bool {
    false
}

/// Workers are not supported here.
pub(crate) fn wait_writable(_: std::os::fd::BorrowedFd<'_>) -> bool {
    false
}

/// Workers are not supported here.
pub(crate) fn available(_: std::os::fd::BorrowedFd<'_>) -> usize {
    0
}

/// Workers are not supported here.
pub(crate) fn urge_pipe() -> Option<OwnedFd> {
    None
}

/// Workers are not supported here.
pub(crate) fn unblock_urge() {}

/// Workers are not supported here.
pub(crate) fn wait_urge(_: std::os::fd::BorrowedFd<'_>) -> bool {
    false
}

/// Shared memory is not supported here: there is no value of this type.
pub(crate) enum Shm {}

impl Shm {
    /// Not supported here.
    pub(crate) fn create(_: usize) -> std::io::Result<(Shm, OwnedFd)> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    /// Not supported here.
    pub(crate) fn open(_: &OwnedFd, _: usize) -> std::io::Result<Shm> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn word(&self, _: usize) -> &std::sync::atomic::AtomicU32 {
        match *self {}
    }

    pub(crate) fn write(&self, _: usize, _: &[u8]) {
        match *self {}
    }

    pub(crate) fn read(&self, _: usize, _: &mut [u8]) {
        match *self {}
    }

    pub(crate) fn append(&self, _: usize, _: usize, _: &mut Vec<u8>) {
        match *self {}
    }

    pub(crate) fn wait(&self, _: usize, _: u32, _: std::time::Duration) {
        match *self {}
    }

    pub(crate) fn wake(&self, _: usize) {
        match *self {}
    }
}

/// No huge pages to ask for here.
pub(crate) fn huge_pages(_: &mut Vec<u8>) {}
