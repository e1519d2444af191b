//! A worker on this machine: a child process with a request pipe, a reply ring in shared memory
//! (the result pipe its doorbell and its end), a stderr pipe and a pidfd.
//!
//! Replies are read from the ring without a system call while the I/O thread is awake; before it
//! sleeps it says so in the ring ([`Link::sleep`]), and the worker's next reply rings the
//! doorbell, one byte in the result pipe, which `poll` watches. The pipe's end (the worker's
//! death, or a task that closed it) ends the reply stream once the ring is empty. Without a
//! ring (no memfd to be had) replies come through the result pipe itself.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use super::dispatch::Sig;
use super::forward::Outputs;
use super::link::{Link, Ready};
use super::output::{self, Output, Piece};
use crate::error::Exit;
use crate::sys::{self, Poller};
use cf_worker::ring::Reader;
use nix::sys::signal::Signal;

/// Pipe buffer the parent asks the kernel for, for bulk payloads.
const PIPE_SIZE: usize = 1 << 20;

pub(crate) struct LocalLink {
    pid: u32,
    /// How it ended, once reaped.
    exit: Option<Exit>,
    /// Request pipe, write end (non-blocking); `None` once closed.
    req: Option<OwnedFd>,
    /// Result pipe, read end (non-blocking): the doorbell when there is a ring; `None` once at
    /// its end.
    res: Option<OwnedFd>,
    /// Where replies come, unless `None`: then through `res`.
    ring: Option<Reader>,
    /// The doorbell rang or the worker exited, in the last [`Link::ready`]: look at the pipe.
    rung: bool,
    /// The worker's stderr, read end (non-blocking); `None` at its end.
    err: Option<OwnedFd>,
    /// The worker's stdout, read end (non-blocking); `None` at its end.
    out: Option<OwnedFd>,
    /// Readable once the process has exited.
    pidfd: OwnedFd,
    /// Its stderr, as kept for its running task's error.
    output: Output,
    /// Where `register` put `res`, the pidfd, `req`, `err` and `out` in the poller.
    slots: [Option<usize>; 5],
}

impl LocalLink {
    /// Starts a worker that forwards its events up to `log_level` (0: none).
    pub(crate) fn spawn(
        exe: &Path,
        memory_limit: Option<u64>,
        log_level: u8,
    ) -> io::Result<LocalLink> {
        let (req_rx, req_tx) = sys::pipe()?;
        let (res_rx, res_tx) = sys::pipe()?;
        let (err_rx, err_tx) = sys::pipe()?;
        let (out_rx, out_tx) = sys::pipe()?;
        for fd in [&req_tx, &res_rx, &err_rx, &out_rx] {
            sys::set_nonblocking(fd)?;
        }
        sys::grow_pipe(&req_tx, PIPE_SIZE);
        let ring = Reader::create()
            .inspect_err(|e| tracing::warn!(error = %e, "cf: no reply ring, replies use a pipe"))
            .ok();
        if ring.is_none() {
            sys::grow_pipe(&res_rx, PIPE_SIZE);
        }
        let pid = sys::spawn_worker(sys::Spawn {
            exe,
            request: &req_rx,
            result: &res_tx,
            ring: ring.as_ref().map(|(_, fd)| fd),
            stderr: err_tx,
            stdout: Some(out_tx),
            memory_limit,
            log_level,
        })?;
        drop((req_rx, res_tx));
        let pidfd = match sys::pidfd(pid) {
            Ok(fd) => fd,
            Err(e) => {
                sys::signal(pid, Signal::SIGKILL);
                let _ = sys::reap(pid);
                return Err(e);
            }
        };
        Ok(LocalLink {
            pid,
            exit: None,
            req: Some(req_tx),
            res: Some(res_rx),
            ring: ring.map(|(ring, _)| ring),
            rung: false,
            err: Some(err_rx),
            out: Some(out_rx),
            pidfd,
            output: Output::default(),
            slots: [None; 5],
        })
    }
}

impl LocalLink {
    /// [`Link::read`] with a ring: bytes from the ring (by `take`); when it is empty, the
    /// doorbell's rings are taken, and its end is the stream's.
    fn read_ring(
        &mut self,
        mut take: impl FnMut(&mut Reader) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let Some(ring) = &mut self.ring else {
            return Ok(0);
        };
        match take(ring) {
            Ok(0) => {}
            Ok(n) => return Ok(n),
            Err(e) => {
                // A task wrote over the ring's positions: nothing more can be read from it. The
                // stream ends here, as when a task closes the result pipe.
                tracing::warn!(pid = self.pid, error = %e, "cf: a worker's reply ring is corrupt");
                // Its worker must mark every task's end from now on: this side stops watching.
                ring.mark_all();
                self.ring = None;
                self.res = None;
                return Ok(0);
            }
        }
        if !self.rung {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let Some(res) = &self.res else {
            return Ok(0);
        };
        let mut rings = [0; 64];
        loop {
            match sys::read(res.as_fd(), &mut rings) {
                Ok(0) => {
                    // The worker's end of the pipe is closed: what it wrote before is in the
                    // ring, then the stream ends.
                    self.res = None;
                    return take(ring).or(Ok(0));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.rung = false;
                    return take(ring).and_then(|n| match n {
                        0 => Err(e),
                        n => Ok(n),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Link for LocalLink {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn register(&mut self, poller: &mut Poller, write: bool, output: bool) {
        // A pipe at its end would report POLLHUP forever: it is left out.
        self.slots = [
            self.res
                .as_ref()
                .map(|fd| poller.add(fd.as_fd(), true, false)),
            Some(poller.add(self.pidfd.as_fd(), true, false)),
            self.req
                .as_ref()
                .filter(|_| write)
                .map(|fd| poller.add(fd.as_fd(), false, true)),
            self.err
                .as_ref()
                .filter(|_| output)
                .map(|fd| poller.add(fd.as_fd(), true, false)),
            self.out
                .as_ref()
                .filter(|_| output)
                .map(|fd| poller.add(fd.as_fd(), true, false)),
        ];
    }

    fn ready(&mut self, poller: &Poller) -> Ready {
        let [res, pidfd, req, err, out] =
            self.slots.map(|at| at.is_some_and(|at| poller.ready(at)));
        if let Some(ring) = &self.ring {
            ring.awake();
        }
        self.rung |= res || pidfd;
        Ready::default()
            .with(Ready::READABLE, res || self.arrived())
            .with(Ready::WRITABLE, req)
            .with(Ready::EXITED, pidfd)
            .with(Ready::OUTPUT, err || out)
    }

    fn arrived(&self) -> bool {
        self.ring.as_ref().is_some_and(Reader::has_data)
    }

    fn sleep(&mut self) -> bool {
        self.ring.as_ref().is_none_or(Reader::sleep)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ring.is_some() {
            return self.read_ring(|ring| ring.read(buf));
        }
        let Some(res) = &self.res else {
            return Ok(0);
        };
        let n = sys::read(res.as_fd(), buf)?;
        if n == 0 {
            // The end of the result pipe comes a moment before the pidfd says the process
            // exited (and is no proof of death: a task may close the fd); stop watching it and
            // let the pidfd report the death.
            self.res = None;
        }
        Ok(n)
    }

    fn read_spare(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        if self.ring.is_some() {
            return self.read_ring(|ring| ring.read_spare(buf, max));
        }
        let Some(res) = &self.res else {
            return Ok(0);
        };
        let n = sys::read_spare(res.as_fd(), buf, max)?;
        if n == 0 {
            // As in `read`.
            self.res = None;
        }
        Ok(n)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.req {
            Some(req) => sys::write(req.as_fd(), buf),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn close_requests(&mut self) {
        self.req = None;
    }

    fn signal(&mut self, sig: Sig) {
        let signal = match sig {
            Sig::Term => Signal::SIGTERM,
            Sig::Kill => Signal::SIGKILL,
            Sig::Urge => Signal::SIGURG,
        };
        // ESRCH: it has exited already, and its exit is on its way.
        let _ = sys::pidfd_signal(&self.pidfd, signal);
    }

    fn forward_output(&mut self, to: &Outputs) {
        let pid = self.pid;
        // The worker counts the text its stderr carried by what this side read of it and what
        // the pipe holds: it must know when a read is under way, and how much it took.
        if let Some(ring) = &self.ring {
            ring.stderr_reading();
        }
        let read = output::drain(&mut self.err, &mut self.output, |piece| match piece {
            Piece::Text(bytes) => to.err.push(bytes),
            Piece::Log(body) => to.err.push_log(pid, body),
        });
        if let Some(ring) = &self.ring {
            ring.stderr_read(read);
        }
        output::pass(&mut self.out, |bytes| to.out.push(bytes));
    }

    fn reap(&mut self) -> Exit {
        *self.exit.get_or_insert_with(|| match sys::reap(self.pid) {
            Ok((Some(code), _)) => Exit::Code(code),
            Ok((None, Some(signal))) => Exit::Signal(signal),
            _ => Exit::Unknown,
        })
    }

    fn last_words(&self) -> String {
        self.output.last_words()
    }
}
