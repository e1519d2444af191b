//! Readiness and byte moving for the pool's I/O thread: `poll(2)`, non-blocking `read`/`write`
//! and the wake-up pipe.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::libc;

/// The fds the I/O thread sleeps on, rebuilt each turn without allocating.
#[derive(Default)]
pub(crate) struct Poller {
    fds: Vec<libc::pollfd>,
}

impl Poller {
    /// Forgets every fd.
    pub(crate) fn clear(&mut self) {
        self.fds.clear();
    }

    /// Watches `fd` for input (`read`) and room for output (`write`); returns its index. The fd
    /// must stay open until the next [`clear`](Self::clear).
    pub(crate) fn add(&mut self, fd: BorrowedFd<'_>, read: bool, write: bool) -> usize {
        let mut events = 0;
        if read {
            events |= libc::POLLIN;
        }
        if write {
            events |= libc::POLLOUT;
        }
        self.fds.push(libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        });
        self.fds.len() - 1
    }

    /// Sleeps until an fd is ready or `timeout` passes (`None`: no limit); returns how many are
    /// ready. An interrupted sleep reports none.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let ms = match timeout {
            None => -1,
            // Round up, so that we wake after a deadline rather than just before it.
            Some(t) => i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
        };
        let n = libc::nfds_t::try_from(self.fds.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `fds` is a valid array of `n` pollfd structs that poll(2) may write the
        // `revents` of; every fd in it is open (the caller keeps them open until `clear`).
        let ready = unsafe { libc::poll(self.fds.as_mut_ptr(), n, ms) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        Ok(usize::try_from(ready).unwrap_or(0))
    }

    /// Whether the fd at `index` reported anything (input, output, hang-up or an error).
    pub(crate) fn ready(&self, index: usize) -> bool {
        self.fds.get(index).is_some_and(|fd| fd.revents != 0)
    }
}

/// Reads what is there without blocking (`Ok(0)`: the end; `WouldBlock`: nothing yet).
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(nix::errno::Errno::EINTR) => {}
            other => return other.map_err(io::Error::from),
        }
    }
}

/// [`read`] into the spare capacity of `buf`, at most `max` bytes, appended to it: no zeroing
/// of the room first.
pub(crate) fn read_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let room = max.min(spare.len());
    let n = loop {
        // SAFETY: `spare` is `room` or more bytes of writable memory owned by `buf`; read(2)
        // writes at most `room` bytes there and nothing else; `fd` is open for its lifetime.
        let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), room) };
        match nix::errno::Errno::result(n) {
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
            Ok(n) => break n.unsigned_abs(),
        }
    };
    // SAFETY: read(2) initialized the first `n` (at most `room`) bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Writes what fits without blocking.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::write(fd, buf) {
            Err(nix::errno::Errno::EINTR) => {}
            other => return other.map_err(io::Error::from),
        }
    }
}

/// A non-blocking pipe that wakes a [`Poller`]: (read end, write end).
pub(crate) fn wake_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (rx, tx) = super::pipe()?;
    super::set_nonblocking(&rx)?;
    super::set_nonblocking(&tx)?;
    Ok((rx, tx))
}

/// Wakes whoever polls the read end of `tx`'s wake pipe.
pub(crate) fn wake(tx: &OwnedFd) {
    // A full wake pipe already wakes the thread: EAGAIN is fine.
    let _ = nix::unistd::write(tx.as_fd(), &[1]);
}

/// Empties a wake pipe's read end.
pub(crate) fn drain_wakes(rx: &OwnedFd) {
    let mut buf = [0; 64];
    while matches!(read(rx.as_fd(), &mut buf), Ok(n) if n > 0) {}
}
