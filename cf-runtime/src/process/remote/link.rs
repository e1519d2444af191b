//! A worker on an agent, as the driver reaches it: a TCP data connection, and a death notice
//! the launcher's reader thread fires when the agent reports the worker's end (or is lost).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::launcher::Control;
use crate::error::Exit;
use crate::process::dispatch::Sig;
use crate::process::link::{Link, Ready};
use crate::sys::{self, Poller};

/// How long dropping a pool waits for a remote worker's end before calling it lost.
const REAP: Duration = Duration::from_secs(10);

/// How a remote worker ended, shared by its link and the launcher's reader thread.
pub(crate) struct Death {
    end: Mutex<Option<(Exit, String)>>,
    known: Condvar,
    /// Write end of the pipe that tells the I/O thread.
    fire: OwnedFd,
    /// A handle on the data connection, to end it when the worker is gone but something else
    /// (a grandchild, a hung agent's machine) keeps it open.
    data: Mutex<Option<TcpStream>>,
}

impl Death {
    /// A death not yet known, and the read end of its pipe.
    pub(crate) fn new() -> io::Result<(Arc<Death>, OwnedFd)> {
        let (rx, tx) = sys::wake_pipe()?;
        let death = Death {
            end: Mutex::new(None),
            known: Condvar::new(),
            fire: tx,
            data: Mutex::new(None),
        };
        Ok((Arc::new(death), rx))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Exit, String)>> {
        self.end.lock().unwrap_or_else(crate::sync::unpoison)
    }

    /// Records how the worker ended (the first report wins) and wakes the I/O thread.
    pub(crate) fn report(&self, exit: Exit, stderr: String) {
        let mut end = self.lock();
        if end.is_none() {
            *end = Some((exit, stderr));
            self.known.notify_all();
            sys::wake(&self.fire);
        }
    }

    /// Keeps a handle on the data connection, for [`end_stream`](Self::end_stream).
    pub(crate) fn watch(&self, data: TcpStream) {
        *self.data.lock().unwrap_or_else(crate::sync::unpoison) = Some(data);
    }

    /// Ends the data connection in both directions: the I/O thread reads its end and buries the
    /// worker.
    pub(crate) fn end_stream(&self) {
        if let Some(data) = &*self.data.lock().unwrap_or_else(crate::sync::unpoison) {
            let _ = data.shutdown(Shutdown::Both);
        }
    }
}

pub(crate) struct RemoteLink {
    pid: u32,
    /// Its agent's host, and rank when it has one: `cn17 (rank 3)`.
    node: String,
    data: TcpStream,
    /// No more reply bytes will come.
    ended: bool,
    /// The request direction is shut.
    closed: bool,
    death: Arc<Death>,
    /// Read end of the death pipe.
    died: OwnedFd,
    control: Arc<Control>,
    /// Where `register` put the data stream (read, write) and the death pipe.
    slots: [Option<usize>; 3],
}

impl RemoteLink {
    pub(crate) fn new(
        (pid, node): (u32, String),
        data: TcpStream,
        death: Arc<Death>,
        died: OwnedFd,
        control: Arc<Control>,
    ) -> io::Result<RemoteLink> {
        data.set_nonblocking(true)?;
        data.set_nodelay(true)?;
        death.watch(data.try_clone()?);
        Ok(RemoteLink {
            pid,
            node,
            data,
            ended: false,
            closed: false,
            death,
            died,
            control,
            slots: [None; 3],
        })
    }
}

impl Link for RemoteLink {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn node(&self) -> Option<&str> {
        Some(&self.node)
    }

    fn register(&mut self, poller: &mut Poller, write: bool, _output: bool) {
        // The death notice travels on another connection and may overtake the last reply bytes:
        // the worker is buried only once its death is known *and* its stream has ended. Until
        // the stream ends the death pipe is not watched (it would stay readable); if something
        // keeps the stream open, the launcher ends it after a grace period.
        let fd = self.data.as_fd();
        self.slots = [
            (!self.ended).then(|| poller.add(fd, true, false)),
            (write && !self.closed && !self.ended).then(|| poller.add(fd, false, true)),
            self.ended
                .then(|| poller.add(self.died.as_fd(), true, false)),
        ];
    }

    fn ready(&mut self, poller: &Poller) -> Ready {
        let [read, write, died] = self.slots.map(|at| at.is_some_and(|at| poller.ready(at)));
        Ready::default()
            .with(Ready::READABLE, read)
            .with(Ready::WRITABLE, write)
            .with(Ready::EXITED, died)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ended {
            return Ok(0);
        }
        match self.data.read(buf) {
            Ok(0) => {
                self.ended = true;
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Err(e)
            }
            // A reset (the machine went away) ends the stream as surely as an orderly close.
            Err(_) => {
                self.ended = true;
                Ok(0)
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        // std sends with MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE.
        self.data.write(buf)
    }

    fn close_requests(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.data.shutdown(Shutdown::Write);
        }
    }

    fn signal(&mut self, sig: Sig) {
        if self.death.lock().is_none() {
            let n = match sig {
                Sig::Term => Signal::SIGTERM,
                Sig::Kill => Signal::SIGKILL,
                Sig::Urge => Signal::SIGURG,
            };
            self.control.signal(self.pid, n);
        }
    }

    fn forward_output(&mut self, _to: &super::super::forward::Outputs) {
        // The agent forwards the worker's stderr to its own; the tail comes with the death.
    }

    fn reap(&mut self) -> Exit {
        let mut end = self.death.lock();
        let deadline = std::time::Instant::now() + REAP;
        while end.is_none() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                *end = Some((Exit::Lost, String::new()));
                break;
            }
            end = self
                .death
                .known
                .wait_timeout(end, left)
                .unwrap_or_else(crate::sync::unpoison)
                .0;
        }
        end.as_ref().map_or(Exit::Lost, |(exit, _)| *exit)
    }

    fn last_words(&self) -> String {
        // The agent kept it as the local pool does (what the running task wrote).
        self.death
            .lock()
            .as_ref()
            .map(|(_, text)| text.clone())
            .unwrap_or_default()
    }
}
