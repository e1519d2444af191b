use std::io;
use std::os::fd::OwnedFd;

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "cf worker processes need Linux")
}

pub(crate) struct Spawn<'a> {
    pub(crate) exe: &'a std::path::Path,
    pub(crate) request: &'a OwnedFd,
    pub(crate) result: &'a OwnedFd,
    pub(crate) ring: Option<&'a OwnedFd>,
    pub(crate) stderr: OwnedFd,
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) log_level: u8,
}

pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Err(unsupported())
}

pub(crate) fn set_nonblocking(_: &OwnedFd) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn grow_pipe(_: &OwnedFd, _: usize) {}

pub(crate) fn spawn_worker(_: Spawn<'_>) -> io::Result<u32> {
    Err(unsupported())
}

pub(crate) fn reap(_: u32) -> io::Result<(Option<i32>, Option<i32>)> {
    Err(unsupported())
}

pub(crate) fn pidfd(_: u32) -> io::Result<OwnedFd> {
    Err(unsupported())
}

pub(crate) fn signal(_: u32, _: nix::sys::signal::Signal) {}

pub(crate) fn signal_name(_: i32) -> Option<&'static str> {
    None
}

pub(crate) fn forget_agent_env(_: &str, _: &str) {}

pub(crate) fn ignore_sigpipe() {}

pub(crate) fn signal_group(_: u32, _: i32) {}
