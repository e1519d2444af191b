//! One worker process as the parent sees it: its pipes, buffers and the jobs it holds.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Child;

use crate::error::Exit;
use crate::sys;

use super::job::Job;

/// Pipe buffer the parent asks the kernel for, for bulk payloads.
const PIPE_SIZE: usize = 1 << 20;

pub(crate) struct Worker {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    /// Request pipe, write end (non-blocking).
    pub(crate) req: Option<OwnedFd>,
    /// Result pipe, read end (non-blocking).
    pub(crate) res: OwnedFd,
    /// Readable once the process has exited.
    pub(crate) pidfd: OwnedFd,
    /// The handshake is done.
    pub(crate) ready: bool,
    /// Bytes to write, from `out_pos`.
    pub(crate) out: Vec<u8>,
    pub(crate) out_pos: usize,
    /// Bytes read and not yet parsed.
    pub(crate) inbuf: Vec<u8>,
    /// Jobs sent and not answered, oldest (the running one) first.
    pub(crate) inflight: VecDeque<Job>,
    /// Why the parent killed this worker, if it did.
    pub(crate) poison: Option<String>,
}

impl Worker {
    pub(crate) fn spawn(exe: &Path) -> io::Result<Worker> {
        let (req_rx, req_tx) = sys::pipe()?;
        let (res_rx, res_tx) = sys::pipe()?;
        sys::set_nonblocking(&req_tx)?;
        sys::set_nonblocking(&res_rx)?;
        sys::grow_pipe(&req_tx, PIPE_SIZE);
        sys::grow_pipe(&res_rx, PIPE_SIZE);
        let mut child = sys::spawn_worker(exe, &req_rx, &res_tx)?;
        drop((req_rx, res_tx));
        let pid = child.id();
        let pidfd = match sys::pidfd(pid) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Worker {
            child,
            pid,
            req: Some(req_tx),
            res: res_rx,
            pidfd,
            ready: false,
            out: Vec::new(),
            out_pos: 0,
            inbuf: Vec::new(),
            inflight: VecDeque::new(),
            poison: None,
        })
    }

    pub(crate) fn wants_write(&self) -> bool {
        self.out_pos < self.out.len() && self.req.is_some()
    }

    /// Writes what it can without blocking.
    pub(crate) fn flush(&mut self) {
        let Some(req) = &self.req else { return };
        while self.out_pos < self.out.len() {
            match nix::unistd::write(req, &self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(nix::errno::Errno::EINTR) => {}
                // EAGAIN: the pipe is full, wait for POLLOUT. EPIPE: the worker is gone, and
                // its pidfd will say so.
                Err(_) => break,
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Reads what is there without blocking; false once the pipe is at its end.
    pub(crate) fn fill(&mut self) -> bool {
        loop {
            let wanted = cf_worker::frame::wanted(&self.inbuf).unwrap_or(0).max(1 << 16);
            self.inbuf.reserve(wanted);
            let len = self.inbuf.len();
            let spare = self.inbuf.capacity() - len;
            self.inbuf.resize(len + spare, 0);
            let read = nix::unistd::read(&self.res, &mut self.inbuf[len..]);
            match read {
                Ok(0) => {
                    self.inbuf.truncate(len);
                    return false;
                }
                Ok(n) => self.inbuf.truncate(len + n),
                Err(nix::errno::Errno::EINTR) => self.inbuf.truncate(len),
                Err(_) => {
                    self.inbuf.truncate(len);
                    return true;
                }
            }
        }
    }

    /// Kills the process (it is reaped when its pidfd fires).
    pub(crate) fn kill(&mut self, why: String) {
        self.poison.get_or_insert(why);
        let _ = self.child.kill();
    }

    /// Waits for the exited process and says how it ended.
    pub(crate) fn reap(&mut self) -> Exit {
        match self.child.wait() {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(signal)) => Exit::Signal(signal),
                (None, None) => Exit::Unknown,
            },
            Err(_) => Exit::Unknown,
        }
    }
}
