//! The node agent: this program's own binary, started (by `srun` or the [`Tcp`](super::Tcp)
//! launcher) with [`ENV_AGENT`] and [`ENV_SECRET`] in its environment. A constructor sees them
//! before `main` and never returns: the agent runs no task and none of the user's code.
//!
//! It connects a control connection to the driver, then starts worker children on request as
//! the local pool does (posix_spawn, pidfd, memory limit, parent-death signal, stderr tail). Each
//! child gets its own authenticated TCP data connection on the protocol fds: the worker is
//! today's worker, unchanged, and the agent is not on the data path. One thread, one poll loop:
//! the control connection, each child's pidfd and stderr pipe.

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::auth::{self, Secret};
use super::wire::{self, Down, Up};
use crate::error::Exit;
use crate::process::output::{self, Output, Piece};
use nix::sys::signal::Signal;

use crate::sys::{self, Poller};

/// `host:port` of the driver: marks a process as an agent.
pub(crate) const ENV_AGENT: &str = "__CF_AGENT";

/// The pool's secret, as hex.
pub(crate) const ENV_SECRET: &str = "__CF_SECRET";

/// Exit code of an agent that the driver refused, or that refused the driver.
pub(crate) const EXIT_REFUSED: i32 = 77;

/// Exit code of an agent started with a bad environment.
const EXIT_STARTUP: i32 = 71;

/// How long connecting and the handshake may take.
pub(crate) const HANDSHAKE: Duration = Duration::from_secs(5);

#[ctor::ctor(unsafe)]
fn enter() {
    if std::env::var_os(ENV_AGENT).is_some() {
        run();
    }
}

/// The environment an agent of the driver at `address` is started with.
pub(crate) fn environment(address: &str, secret: &Secret) -> [(&'static str, String); 2] {
    [
        (ENV_AGENT, address.to_owned()),
        (ENV_SECRET, secret.to_hex()),
    ]
}

fn run() -> ! {
    let address = std::env::var(ENV_AGENT).unwrap_or_default();
    let secret = std::env::var(ENV_SECRET).ok();
    // First thing: neither the address nor the secret reaches the workers or anything they start.
    sys::forget_agent_env(ENV_AGENT, ENV_SECRET);
    sys::ignore_sigpipe();
    let Some(secret) = secret.as_deref().and_then(Secret::from_hex) else {
        eprintln!(
            "cf agent (pid {}): no valid {ENV_SECRET}",
            std::process::id()
        );
        std::process::exit(EXIT_STARTUP);
    };
    match Agent::connect(&address, secret).and_then(Agent::serve) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("cf agent (pid {}): {e}", std::process::id());
            let refused = e.kind() == io::ErrorKind::PermissionDenied
                || e.kind() == io::ErrorKind::UnexpectedEof;
            std::process::exit(if refused { EXIT_REFUSED } else { 1 })
        }
    }
}

/// How long the agent holds a dead worker's data connection for the driver to read the rest of
/// it, at the most.
const DRAIN: Duration = Duration::from_secs(30);

/// One worker child.
struct Child {
    pid: u32,
    pidfd: OwnedFd,
    /// The agent's copy of its data connection: see [`Drained`].
    data: TcpStream,
    /// Its stderr, read end (non-blocking); `None` at its end.
    err: Option<OwnedFd>,
    /// Its stderr, as kept for its running task's error.
    output: Output,
}

impl Child {
    /// Forwards what the child wrote to stderr to ours, as the local pool does, keeping what its
    /// running task wrote. Workers here are started with no log level and send no records; one
    /// that came anyway would be written as a line of text, never as its raw bytes.
    fn forward(&mut self) {
        let pid = self.pid;
        output::drain(&mut self.err, &mut self.output, |piece| match piece {
            Piece::Text(bytes) => {
                let _ = io::stderr().write_all(bytes);
            }
            Piece::Log(body) => {
                if let Some(line) = cf_worker::logs::decode(body).map(|r| r.to_string()) {
                    let _ = writeln!(io::stderr(), "cf worker (pid {pid}): {line}");
                }
            }
        });
    }
}

/// A dead worker's data connection, held until the driver has read all of it.
///
/// A socket closed with bytes unread in it is reset, not ended, and a reset drops what the
/// socket still had to send: a worker that dies with requests sent ahead unread would take the
/// replies it wrote and the driver had not received yet with it (the tasks would run again, and
/// one of them would be blamed for the death). The agent keeps a copy of the socket, so that the
/// worker's death does not close it; it ends its sending side once the worker is dead (what was
/// written goes first), and reads and drops what the driver still sends until the driver closes
/// its end.
struct Drained {
    data: TcpStream,
    until: Instant,
}

struct Agent {
    address: String,
    secret: Secret,
    exe: PathBuf,
    control: TcpStream,
    heartbeat: Duration,
    children: Vec<Child>,
    drained: Vec<Drained>,
}

/// Connects to `address` and proves the secret, within [`HANDSHAKE`].
fn dial(address: &str, secret: &Secret) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, HANDSHAKE) {
            Ok(mut stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(HANDSHAKE))?;
                stream.set_write_timeout(Some(HANDSHAKE))?;
                auth::agent(&mut stream, secret)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Agent {
    fn connect(address: &str, secret: Secret) -> io::Result<Agent> {
        let exe = std::env::current_exe()?;
        let mut control = dial(address, &secret)?;
        control.write_all(&[wire::CONTROL])?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let var = |name: &str| std::env::var(name).ok();
        Up::Hello {
            pid: std::process::id(),
            rank: var("SLURM_PROCID").and_then(|v| v.parse().ok()),
            job: var("SLURM_JOB_ID").and_then(|v| v.parse().ok()),
            host,
        }
        .send(&mut control)?;
        let Down::Config { heartbeat_ms } = Down::receive(&mut control)? else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the driver did not configure the agent",
            ));
        };
        control.set_read_timeout(None)?;
        control.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(Agent {
            address: address.to_owned(),
            secret,
            exe,
            control,
            heartbeat: Duration::from_millis(heartbeat_ms.max(1).into()),
            children: Vec::new(),
            drained: Vec::new(),
        })
    }

    /// Serves the driver until it closes the control connection; then ends the children.
    fn serve(mut self) -> io::Result<()> {
        let result = self.serve_loop();
        for child in &self.children {
            sys::signal(child.pid, Signal::SIGKILL);
        }
        for child in &mut self.children {
            child.forward();
            let _ = sys::reap(child.pid);
        }
        result
    }

    fn serve_loop(&mut self) -> io::Result<()> {
        let mut poller = Poller::default();
        let mut ping = Instant::now() + self.heartbeat;
        loop {
            poller.clear();
            poller.add(self.control.as_fd(), true, false);
            let slots: Vec<(usize, Option<usize>)> = self
                .children
                .iter()
                .map(|child| {
                    let exit = poller.add(child.pidfd.as_fd(), true, false);
                    let err = child
                        .err
                        .as_ref()
                        .map(|e| poller.add(e.as_fd(), true, false));
                    (exit, err)
                })
                .collect();
            let drained: Vec<usize> = self
                .drained
                .iter()
                .map(|d| poller.add(d.data.as_fd(), true, false))
                .collect();
            let due = self
                .drained
                .iter()
                .map(|d| d.until)
                .fold(ping, Instant::min);
            poller.wait(Some(due.saturating_duration_since(Instant::now())))?;
            self.drain(&poller, &drained);
            if Instant::now() >= ping {
                Up::Ping.send(&mut self.control)?;
                ping = Instant::now() + self.heartbeat;
            }
            let mut dead = Vec::new();
            for (i, (child, (exit, err))) in self.children.iter_mut().zip(slots).enumerate() {
                let exited = poller.ready(exit);
                if exited || err.is_some_and(|at| poller.ready(at)) {
                    child.forward();
                }
                if exited {
                    dead.push(i);
                }
            }
            for i in dead.into_iter().rev() {
                let mut child = self.children.swap_remove(i);
                child.forward();
                // What the worker wrote goes first, then the end; nothing is reset.
                let _ = child.data.shutdown(std::net::Shutdown::Write);
                if child.data.set_nonblocking(true).is_ok() {
                    self.drained.push(Drained {
                        data: child.data,
                        until: Instant::now() + DRAIN,
                    });
                }
                let exit = match sys::reap(child.pid) {
                    Ok((Some(code), _)) => Exit::Code(code),
                    Ok((None, Some(n))) => Exit::Signal(n),
                    _ => Exit::Unknown,
                };
                Up::Died {
                    pid: child.pid,
                    exit,
                    stderr: child.output.last_words(),
                }
                .send(&mut self.control)?;
            }
            if poller.ready(0) {
                // The driver writes whole messages: one is here, or the connection ended.
                match Down::receive(&mut self.control) {
                    Ok(message) => self.obey(message)?,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Reads and drops what came on the dead workers' connections (`ready` are their places in
    /// `poller`); lets go of those the driver closed, or that outlived [`DRAIN`].
    fn drain(&mut self, poller: &Poller, ready: &[usize]) {
        let now = Instant::now();
        let mut scratch = [0; 16 << 10];
        let mut at = 0;
        self.drained.retain_mut(|d| {
            let readable = ready.get(at).is_some_and(|&i| poller.ready(i));
            at += 1;
            if now >= d.until {
                return false;
            }
            if !readable {
                return true;
            }
            loop {
                match io::Read::read(&mut d.data, &mut scratch) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
        });
    }

    fn obey(&mut self, message: Down) -> io::Result<()> {
        match message {
            Down::Config { heartbeat_ms } => {
                self.heartbeat = Duration::from_millis(heartbeat_ms.max(1).into());
            }
            Down::Spawn { slot, memory_limit } => {
                let reply = match self.spawn(slot, memory_limit) {
                    Ok(pid) => Up::Spawned { slot, pid },
                    Err(e) => Up::SpawnFailed {
                        slot,
                        message: e.to_string(),
                    },
                };
                reply.send(&mut self.control)?;
            }
            Down::Signal { pid, sig } => {
                // Only our own, not yet reaped children: their pids are theirs.
                if self.children.iter().any(|c| c.pid == pid)
                    && let Ok(sig) = Signal::try_from(i32::from(sig))
                {
                    sys::signal(pid, sig);
                }
            }
        }
        Ok(())
    }

    /// Connects the data connection of `slot`, then starts a worker on it.
    fn spawn(&mut self, slot: u64, memory_limit: u64) -> io::Result<u32> {
        let mut data = dial(&self.address, &self.secret)?;
        let mut role = vec![wire::DATA];
        role.extend_from_slice(&slot.to_le_bytes());
        data.write_all(&role)?;
        // The timeouts belong to the socket, which the worker shares: it blocks for as long as
        // it likes.
        data.set_read_timeout(None)?;
        data.set_write_timeout(None)?;
        // The worker's copy; the agent keeps its own (see `Drained`).
        let theirs = OwnedFd::from(data.try_clone()?);
        let (err_rx, err_tx) = sys::pipe()?;
        sys::set_nonblocking(&err_rx)?;
        let pid = sys::spawn_worker(sys::Spawn {
            exe: &self.exe,
            request: &theirs,
            result: &theirs,
            ring: None,
            stderr: err_tx,
            stdout: None,
            memory_limit: Some(memory_limit).filter(|&m| m > 0),
            log_level: 0,
        })?;
        drop(theirs);
        let pidfd = match sys::pidfd(pid) {
            Ok(fd) => fd,
            Err(e) => {
                sys::signal(pid, Signal::SIGKILL);
                let _ = sys::reap(pid);
                return Err(e);
            }
        };
        self.children.push(Child {
            pid,
            pidfd,
            data,
            err: Some(err_rx),
            output: Output::default(),
        });
        Ok(pid)
    }
}
