//! One worker process as the parent sees it: its pipes, buffers and the jobs it holds.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::Exit;
use crate::sys;

use super::buffer::{InBuf, Outbox};
use super::job::Job;

/// Pipe buffer the parent asks the kernel for, for bulk payloads.
const PIPE_SIZE: usize = 1 << 20;

/// How much of a worker's stderr is kept for its error.
const TAIL: usize = 4096;

/// Why the parent killed a worker.
#[derive(Debug, Clone)]
pub(crate) enum Poison {
    /// It sent something the protocol does not allow.
    Protocol(String),
    /// Its handshake was refused.
    Handshake(crate::error::HandshakeError),
    /// Its running task, job `id`, passed its time limit.
    TimedOut { id: u64, limit: Duration },
    /// Its running task, job `id`, was cancelled with `kill`.
    Cancelled { id: u64 },
    /// `terminate_workers` or `kill_workers`.
    Terminated,
    /// Its initializer failed.
    InitFailed(String),
    /// It reported a panic and is aborting (a binary built with `panic = "abort"`).
    Aborting,
}

pub(crate) struct Worker {
    pub(crate) pid: u32,
    /// How it ended, once reaped.
    pub(crate) exit: Option<Exit>,
    /// Request pipe, write end (non-blocking); `None` once closed.
    pub(crate) req: Option<OwnedFd>,
    /// Result pipe, read end (non-blocking).
    pub(crate) res: OwnedFd,
    /// The result pipe has not reached its end.
    pub(crate) res_open: bool,
    /// The worker's stderr, read end (non-blocking); `None` at its end.
    pub(crate) err: Option<OwnedFd>,
    /// Readable once the process has exited.
    pub(crate) pidfd: OwnedFd,
    /// The handshake arrived.
    pub(crate) hello: bool,
    /// Handshake and initializer are done: it takes tasks.
    pub(crate) ready: bool,
    /// Kept idle to replace the next worker that dies.
    pub(crate) spare: bool,
    /// Bytes on their way to the worker.
    pub(crate) out: Outbox,
    /// Bytes read and not yet parsed.
    pub(crate) inbuf: InBuf,
    /// Jobs sent and not answered, oldest (the running one) first.
    pub(crate) inflight: VecDeque<Job>,
    /// When the oldest job in flight started running.
    pub(crate) front_since: Option<Instant>,
    /// Tasks sent to it, for `max_tasks_per_child`.
    pub(crate) sent: u64,
    /// Why the parent killed this worker, if it did.
    pub(crate) poison: Option<Poison>,
    /// The last bytes of its stderr.
    pub(crate) tail: VecDeque<u8>,
}

impl Worker {
    pub(crate) fn spawn(exe: &Path, memory_limit: Option<u64>, spare: bool) -> io::Result<Worker> {
        let (req_rx, req_tx) = sys::pipe()?;
        let (res_rx, res_tx) = sys::pipe()?;
        let (err_rx, err_tx) = sys::pipe()?;
        for fd in [&req_tx, &res_rx, &err_rx] {
            sys::set_nonblocking(fd)?;
        }
        sys::grow_pipe(&req_tx, PIPE_SIZE);
        sys::grow_pipe(&res_rx, PIPE_SIZE);
        let pid = sys::spawn_worker(sys::Spawn {
            exe,
            request: &req_rx,
            result: &res_tx,
            stderr: err_tx,
            memory_limit,
        })?;
        drop((req_rx, res_tx));
        let pidfd = match sys::pidfd(pid) {
            Ok(fd) => fd,
            Err(e) => {
                sys::signal(pid, 9);
                let _ = sys::reap(pid);
                return Err(e);
            }
        };
        Ok(Worker {
            pid,
            exit: None,
            req: Some(req_tx),
            res: res_rx,
            res_open: true,
            err: Some(err_rx),
            pidfd,
            hello: false,
            ready: false,
            spare,
            out: Outbox::default(),
            inbuf: InBuf::default(),
            inflight: VecDeque::new(),
            front_since: None,
            sent: 0,
            poison: None,
            tail: VecDeque::new(),
        })
    }

    pub(crate) fn wants_write(&self) -> bool {
        !self.out.is_empty() && self.req.is_some()
    }

    /// Whether it can take another task now.
    pub(crate) fn accepts(&self, prefetch: usize, max_tasks: Option<u64>) -> bool {
        self.ready
            && !self.spare
            && self.poison.is_none()
            && self.req.is_some()
            && self.inflight.len() < prefetch
            && max_tasks.is_none_or(|max| self.sent < max)
    }

    /// Writes what it can without blocking.
    pub(crate) fn flush(&mut self) {
        let Some(req) = &self.req else { return };
        let inflight = &self.inflight;
        self.out.write(req, |id| {
            inflight
                .iter()
                .find(|job| job.id == id)
                .map(|job| &job.args[..])
        });
    }

    /// Reads what is there without blocking; false once the pipe is at its end.
    pub(crate) fn fill(&mut self) -> bool {
        self.inbuf.fill(&self.res)
    }

    /// Forwards what the worker wrote to stderr to ours, keeping the last few KiB.
    pub(crate) fn drain_stderr(&mut self) {
        let Some(err) = &self.err else { return };
        let mut buf = [0; 8192];
        loop {
            match nix::unistd::read(err, &mut buf) {
                Ok(0) => {
                    self.err = None;
                    return;
                }
                Ok(n) => {
                    let _ = io::stderr().write_all(&buf[..n]);
                    self.tail.extend(&buf[..n]);
                    let excess = self.tail.len().saturating_sub(TAIL);
                    self.tail.drain(..excess);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    /// The kept end of its stderr, from the first whole line.
    pub(crate) fn last_words(&self) -> String {
        let (a, b) = self.tail.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        match (self.tail.len() == TAIL, text.find('\n')) {
            (true, Some(newline)) => text[newline + 1..].to_owned(),
            _ => text,
        }
    }

    /// Kills the process (it is reaped when its pidfd fires); the first reason sticks.
    pub(crate) fn kill(&mut self, why: Poison) {
        self.poison.get_or_insert(why);
        self.signal(9);
    }

    /// Sends signal `n`, unless the process is already reaped (its pid may be another's now).
    pub(crate) fn signal(&self, n: i32) {
        if self.exit.is_none() {
            sys::signal(self.pid, n);
        }
    }

    /// Waits for the process to exit, once, and says how it ended.
    pub(crate) fn reap(&mut self) -> Exit {
        *self.exit.get_or_insert_with(|| match sys::reap(self.pid) {
            Ok((Some(code), _)) => Exit::Code(code),
            Ok((None, Some(signal))) => Exit::Signal(signal),
            _ => Exit::Unknown,
        })
    }
}
