//! A worker on this machine: a child process with a request pipe, a result pipe, a stderr pipe
//! and a pidfd.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use super::dispatch::Sig;
use super::forward::Outputs;
use super::link::{Link, Ready};
use super::output::{self, Output, Piece};
use crate::error::Exit;
use crate::sys::{self, Poller};
use nix::sys::signal::Signal;

/// Pipe buffer the parent asks the kernel for, for bulk payloads.
const PIPE_SIZE: usize = 1 << 20;

pub(crate) struct LocalLink {
    pid: u32,
    /// How it ended, once reaped.
    exit: Option<Exit>,
    /// Request pipe, write end (non-blocking); `None` once closed.
    req: Option<OwnedFd>,
    /// Result pipe, read end (non-blocking); `None` once at its end.
    res: Option<OwnedFd>,
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
        sys::grow_pipe(&res_rx, PIPE_SIZE);
        let pid = sys::spawn_worker(sys::Spawn {
            exe,
            request: &req_rx,
            result: &res_tx,
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
            err: Some(err_rx),
            out: Some(out_rx),
            pidfd,
            output: Output::default(),
            slots: [None; 5],
        })
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

    fn ready(&self, poller: &Poller) -> Ready {
        let [res, pidfd, req, err, out] =
            self.slots.map(|at| at.is_some_and(|at| poller.ready(at)));
        Ready::default()
            .with(Ready::READABLE, res)
            .with(Ready::WRITABLE, req)
            .with(Ready::EXITED, pidfd)
            .with(Ready::OUTPUT, err || out)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
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
        output::drain(&mut self.err, &mut self.output, |piece| match piece {
            Piece::Text(bytes) => to.err.push(bytes),
            Piece::Log(body) => to.err.push_log(pid, body),
        });
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
