//! The remote [`Launch`]: a listener, a thread that accepts and authenticates connections, one
//! reader thread per agent, and the agents' processes (local children, or `srun`).
//!
//! `request` sends `Spawn{slot}` to the least loaded agent. The agent connects the slot's data
//! connection, starts the worker on it and says `Spawned{slot, pid}`; once both the socket and
//! the pid are here the worker is handed to the I/O thread as a [`RemoteLink`]. `Died` from the
//! agent fires the worker's [`Death`]; a lost agent (its control connection ended or silent past
//! the limit) fires every one of its workers' with [`Exit::Lost`].

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::agent::HANDSHAKE;
use super::auth::{self, Secret};
use super::link::{Death, RemoteLink};
use super::wire::{self, Down, Up};
use super::{Plan, Processes};
use crate::error::Exit;
use crate::process::link::{Launch, Link, Started};
use crate::process::shared::Shared;
use crate::sys::{self, Poller};

/// At most this many connections may be in their handshake at once; more are closed unheard.
const MAX_HANDSHAKES: usize = 32;

/// How long a dead worker's data connection may stay open before the launcher ends it.
const GRACE: Duration = Duration::from_secs(2);

/// How long dropping the pool waits for the agents' processes to end before killing them.
const STOP: Duration = Duration::from_secs(5);

/// An agent's control connection, for the driver's messages down.
pub(crate) struct Control {
    stream: Mutex<TcpStream>,
    gone: AtomicBool,
}

impl Control {
    fn send(&self, message: &Down) -> io::Result<()> {
        if self.gone.load(Ordering::Acquire) {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let mut stream = self.stream.lock().unwrap_or_else(crate::sync::unpoison);
        message.send(&mut *stream)
    }

    /// Asks the agent to send `signal` to its worker `pid`.
    pub(crate) fn signal(&self, pid: u32, signal: nix::sys::signal::Signal) {
        // On the wire, a signal is its number (they are below 65 on Linux).
        let sig = u8::try_from(signal as i32).unwrap_or(u8::MAX);
        let _ = self.send(&Down::Signal { pid, sig });
    }

    fn close(&self) {
        self.gone.store(true, Ordering::Release);
        if let Ok(stream) = self.stream.lock() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

struct Agent {
    control: Arc<Control>,
    host: String,
    rank: Option<u32>,
    /// Workers started and not yet reported dead, by pid.
    workers: HashMap<u32, Arc<Death>>,
    /// Workers asked for and not yet handed over.
    starting: usize,
}

/// A worker asked for and not yet handed over.
struct Pending {
    spare: bool,
    agent: u64,
    data: Option<TcpStream>,
    started: Option<(u32, Arc<Death>, OwnedFd)>,
}

#[derive(Default)]
struct Inner {
    agents: HashMap<u64, Agent>,
    next_agent: u64,
    /// Agents that may still connect.
    expected: usize,
    next_slot: u64,
    pending: HashMap<u64, Pending>,
    /// Requests waiting for an agent to connect: (slot, spare).
    waiting: VecDeque<(u64, bool)>,
    started: VecDeque<Started>,
    /// Dead workers whose data connection is still open: when to end it.
    lingering: Vec<(Instant, Arc<Death>)>,
    /// The Slurm job the agents said they run in.
    job: Option<u64>,
    closed: bool,
}

struct State {
    inner: Mutex<Inner>,
    arrived: Condvar,
    shared: Arc<Shared>,
    secret: Secret,
    plan: Plan,
    handshakes: AtomicUsize,
    readers: Mutex<Vec<JoinHandle<()>>>,
}

/// The remote [`Launch`].
pub(crate) struct Remote {
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
    /// Write end of the pipe that stops the accept thread.
    stop: Option<OwnedFd>,
    processes: Processes,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(crate::sync::unpoison)
    }

    fn deliver(&self, inner: &mut Inner, started: Started) {
        inner.started.push_back(started);
        self.arrived.notify_all();
        self.shared.poke();
    }

    /// Sends the request of `slot` to the least loaded agent; false if there is none.
    fn assign(&self, inner: &mut Inner, slot: u64, spare: bool) -> bool {
        let choice = inner
            .agents
            .iter()
            .filter(|(_, a)| !a.control.gone.load(Ordering::Acquire))
            .min_by_key(|&(&id, a)| (a.workers.len() + a.starting, id))
            .map(|(&id, a)| (id, a.control.clone()));
        let Some((id, control)) = choice else {
            return false;
        };
        // While agents are still coming, spread the workers: wait for a new agent rather than
        // give a second worker to one that has a worker already.
        let load = inner
            .agents
            .get(&id)
            .map_or(0, |a| a.workers.len() + a.starting);
        if inner.expected > 0 && load > 0 {
            return false;
        }
        let memory_limit = self.plan.memory_limit.unwrap_or(0);
        if control.send(&Down::Spawn { slot, memory_limit }).is_err() {
            // Its reader thread will find it lost; try another.
            control.gone.store(true, Ordering::Release);
            return self.assign(inner, slot, spare);
        }
        if let Some(agent) = inner.agents.get_mut(&id) {
            agent.starting += 1;
        }
        inner.pending.insert(
            slot,
            Pending {
                spare,
                agent: id,
                data: None,
                started: None,
            },
        );
        true
    }

    /// Gives waiting requests to agents, as far as they take them; fails them if none is left.
    fn drain_waiting(&self, inner: &mut Inner) {
        while let Some((slot, spare)) = inner.waiting.pop_front() {
            if !self.assign(inner, slot, spare) {
                inner.waiting.push_front((slot, spare));
                break;
            }
        }
        self.fail_waiting(inner, "no agent is left");
    }

    /// Fails the requests that no agent can take any more.
    fn fail_waiting(&self, inner: &mut Inner, why: &str) {
        let live = inner
            .agents
            .values()
            .any(|a| !a.control.gone.load(Ordering::Acquire));
        if live || inner.expected > 0 {
            return;
        }
        while let Some((_, spare)) = inner.waiting.pop_front() {
            self.deliver(inner, (spare, Err(io::Error::other(why.to_owned()))));
        }
    }

    /// Hands the worker of `slot` over once both its data connection and its pid are here.
    fn complete(&self, inner: &mut Inner, slot: u64) {
        let ready = inner
            .pending
            .get(&slot)
            .is_some_and(|p| p.data.is_some() && p.started.is_some());
        if !ready {
            return;
        }
        let Some(Pending {
            spare,
            agent,
            data: Some(data),
            started: Some((pid, death, died)),
        }) = inner.pending.remove(&slot)
        else {
            return;
        };
        let Some(entry) = inner.agents.get_mut(&agent) else {
            return;
        };
        entry.starting = entry.starting.saturating_sub(1);
        tracing::debug!(pid, host = %entry.host, rank = ?entry.rank, "cf: remote worker connected");
        let node = match entry.rank {
            Some(rank) => format!("{} (rank {rank})", entry.host),
            None => entry.host.clone(),
        };
        let link = RemoteLink::new((pid, node), data, death, died, entry.control.clone())
            .map(|link| Box::new(link) as Box<dyn Link>);
        self.deliver(inner, (spare, link));
    }

    /// Ends the data connections of dead workers that something still holds open.
    fn end_lingering(&self, inner: &mut Inner) {
        let now = Instant::now();
        inner.lingering.retain(|(deadline, death)| {
            if now < *deadline {
                return true;
            }
            death.end_stream();
            false
        });
    }
}

impl Remote {
    /// Listens, starts the agents and the accept thread.
    pub(crate) fn start(plan: Plan, shared: Arc<Shared>) -> io::Result<Remote> {
        let secret = Secret::random()?;
        let listener = TcpListener::bind(plan.listen)?;
        let port = listener.local_addr()?.port();
        let host = plan.advertise.clone();
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let processes = plan.agents.start(&plan.exe, &address, &secret)?;
        let expected = processes.expected;
        let state = Arc::new(State {
            inner: Mutex::new(Inner {
                expected,
                ..Inner::default()
            }),
            arrived: Condvar::new(),
            shared,
            secret,
            plan,
            handshakes: AtomicUsize::new(0),
            readers: Mutex::new(Vec::new()),
        });
        let (stop_rx, stop_tx) = sys::wake_pipe()?;
        listener.set_nonblocking(true)?;
        let accept_state = state.clone();
        let accept = std::thread::Builder::new()
            .name("cf-pool-accept".to_owned())
            .spawn(move || accept_loop(&accept_state, &listener, &stop_rx))?;
        Ok(Remote {
            state,
            accept: Some(accept),
            stop: Some(stop_tx),
            processes,
        })
    }

    /// Notices agents' processes that ended before their agents connected.
    fn check_processes(&mut self) {
        if let Some(why) = self.processes.all_ended() {
            let mut inner = self.state.lock();
            let connected = inner.agents.len();
            if inner.expected > 0 {
                tracing::warn!(why, connected, "cf: agents' processes ended");
                inner.expected = 0;
                self.state.drain_waiting(&mut inner);
                self.state.fail_waiting(&mut inner, &why);
            }
        }
    }
}

impl Launch for Remote {
    fn request(&mut self, spare: bool) -> bool {
        let state = self.state.clone();
        let mut inner = state.lock();
        let slot = inner.next_slot;
        inner.next_slot += 1;
        if !state.assign(&mut inner, slot, spare) {
            inner.waiting.push_back((slot, spare));
            state.fail_waiting(&mut inner, "no agent is left");
        }
        true
    }

    fn try_next(&mut self) -> Option<Started> {
        self.state.lock().started.pop_front()
    }

    fn next(&mut self) -> Option<Started> {
        let deadline = Instant::now() + self.state.plan.start_timeout;
        loop {
            let mut inner = self.state.lock();
            if let Some(started) = inner.started.pop_front() {
                return Some(started);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let message = format!(
                    "no worker started within {:?} ({} of the agents connected)",
                    self.state.plan.start_timeout,
                    inner.agents.len()
                );
                return Some((false, Err(io::Error::new(io::ErrorKind::TimedOut, message))));
            }
            // Watch the agents' processes too: one that fails (srun refusing its arguments)
            // ends the wait at once rather than at the deadline.
            let step = left.min(Duration::from_millis(50));
            drop(
                self.state
                    .arrived
                    .wait_timeout(inner, step)
                    .unwrap_or_else(crate::sync::unpoison),
            );
            self.check_processes();
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let (controls, job) = {
            let mut inner = self.state.lock();
            inner.closed = true;
            let controls: Vec<Arc<Control>> =
                inner.agents.values().map(|a| a.control.clone()).collect();
            (controls, inner.job)
        };
        // Closing the control connections ends the agents, and each agent its workers.
        for control in &controls {
            control.close();
        }
        if let Some(stop) = self.stop.take() {
            sys::wake(&stop);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let readers = std::mem::take(
            &mut *self
                .state
                .readers
                .lock()
                .unwrap_or_else(crate::sync::unpoison),
        );
        for reader in readers {
            let _ = reader.join();
        }
        self.processes.stop(STOP, job);
    }
}

fn accept_loop(state: &Arc<State>, listener: &TcpListener, stop: &OwnedFd) {
    let mut poller = Poller::default();
    loop {
        poller.clear();
        poller.add(listener.as_fd(), true, false);
        poller.add(stop.as_fd(), true, false);
        if poller.wait(None).is_err() || poller.ready(1) {
            return;
        }
        while let Ok((stream, peer)) = listener.accept() {
            if state.handshakes.fetch_add(1, Ordering::AcqRel) >= MAX_HANDSHAKES {
                state.handshakes.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(%peer, "cf: too many connections in their handshake; closed one");
                continue;
            }
            let state = state.clone();
            let spawned = std::thread::Builder::new()
                .name("cf-pool-auth".to_owned())
                .spawn(move || {
                    if let Err(e) = welcome(&state, stream) {
                        tracing::warn!(%peer, error = %e, "cf: refused a connection");
                    }
                    state.handshakes.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                tracing::warn!(%peer, "cf: no thread for a handshake; closed the connection");
            }
        }
    }
}

/// Authenticates a new connection and takes it in as an agent's control connection or a
/// worker's data connection.
fn welcome(state: &Arc<State>, mut stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HANDSHAKE))?;
    stream.set_write_timeout(Some(HANDSHAKE))?;
    auth::driver(&mut stream, &state.secret)?;
    let mut role = [0];
    stream.read_exact(&mut role)?;
    match role[0] {
        wire::CONTROL => adopt_agent(state, stream),
        wire::DATA => {
            let mut slot = [0; 8];
            stream.read_exact(&mut slot)?;
            let slot = u64::from_le_bytes(slot);
            stream.set_read_timeout(None)?;
            stream.set_write_timeout(None)?;
            let mut inner = state.lock();
            match inner.pending.get_mut(&slot) {
                Some(pending) if pending.data.is_none() => {
                    pending.data = Some(stream);
                    state.complete(&mut inner, slot);
                    Ok(())
                }
                _ => Err(io::Error::other(format!(
                    "a data connection for unknown slot {slot}"
                ))),
            }
        }
        other => Err(io::Error::other(format!("unknown role {other:#04x}"))),
    }
}

fn adopt_agent(state: &Arc<State>, mut stream: TcpStream) -> io::Result<()> {
    let Up::Hello {
        pid,
        rank,
        job,
        host,
    } = Up::receive(&mut stream)?
    else {
        return Err(io::Error::other("an agent did not say hello"));
    };
    let heartbeat_ms = u32::try_from(state.plan.heartbeat.as_millis()).unwrap_or(u32::MAX);
    Down::Config { heartbeat_ms }.send(&mut stream)?;
    stream.set_read_timeout(Some(state.plan.lost_after))?;
    stream.set_write_timeout(Some(HANDSHAKE))?;
    let reader = stream.try_clone()?;
    let control = Arc::new(Control {
        stream: Mutex::new(stream),
        gone: AtomicBool::new(false),
    });
    let id = {
        let mut inner = state.lock();
        if inner.closed {
            control.close();
            return Ok(());
        }
        inner.job = inner.job.or(job);
        let id = inner.next_agent;
        inner.next_agent += 1;
        inner.expected = inner.expected.saturating_sub(1);
        tracing::info!(pid, %host, ?rank, "cf: agent connected");
        inner.agents.insert(
            id,
            Agent {
                control,
                host,
                rank,
                workers: HashMap::new(),
                starting: 0,
            },
        );
        state.drain_waiting(&mut inner);
        id
    };
    let reader_state = state.clone();
    let handle = std::thread::Builder::new()
        .name("cf-pool-agent".to_owned())
        .spawn(move || listen(&reader_state, id, reader))?;
    state
        .readers
        .lock()
        .unwrap_or_else(crate::sync::unpoison)
        .push(handle);
    Ok(())
}

/// The reader thread of agent `id`: its messages up, until it is lost or the pool closes.
fn listen(state: &Arc<State>, id: u64, mut stream: TcpStream) {
    let why = loop {
        let message = Up::receive(&mut stream);
        let mut inner = state.lock();
        state.end_lingering(&mut inner);
        if let Err(why) = on_message(state, &mut inner, id, message) {
            break why;
        }
    };
    lose_agent(state, id, &why);
    let _ = stream.shutdown(Shutdown::Both);
    let _ = stream.flush();
}

/// Handles one message of agent `id`; `Err` says why the agent is lost.
fn on_message(
    state: &Arc<State>,
    inner: &mut Inner,
    id: u64,
    message: io::Result<Up>,
) -> Result<(), String> {
    match message {
        Ok(Up::Spawned { slot, pid }) => {
            let Ok((death, died)) = Death::new() else {
                return Err("no pipe for a worker's death notice".to_owned());
            };
            if let Some(agent) = inner.agents.get_mut(&id) {
                agent.workers.insert(pid, death.clone());
            }
            match inner.pending.get_mut(&slot) {
                Some(pending) => {
                    pending.started = Some((pid, death, died));
                    state.complete(inner, slot);
                }
                None => {
                    if let Some(agent) = inner.agents.get(&id) {
                        agent.control.signal(pid, nix::sys::signal::Signal::SIGKILL);
                    }
                }
            }
        }
        Ok(Up::SpawnFailed { slot, message }) => {
            if let Some(pending) = inner.pending.remove(&slot) {
                if let Some(agent) = inner.agents.get_mut(&id) {
                    agent.starting = agent.starting.saturating_sub(1);
                }
                state.deliver(inner, (pending.spare, Err(io::Error::other(message))));
            }
        }
        Ok(Up::Died { pid, exit, stderr }) => {
            let death = inner
                .agents
                .get_mut(&id)
                .and_then(|agent| agent.workers.remove(&pid));
            if let Some(death) = death {
                death.report(exit, stderr);
                inner.lingering.push((Instant::now() + GRACE, death));
            }
        }
        Ok(Up::Ping) => {}
        Ok(Up::Hello { .. }) => return Err("a second hello".to_owned()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err("its control connection closed".to_owned());
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Err(format!("no heartbeat for {:?}", state.plan.lost_after));
        }
        Err(e) => return Err(e.to_string()),
    }
    Ok(())
}

/// Agent `id` is lost (`why`): its workers die with `Exit::Lost`, what it was starting is asked
/// of another agent.
fn lose_agent(state: &Arc<State>, id: u64, why: &str) {
    let mut inner = state.lock();
    let Some(agent) = inner.agents.remove(&id) else {
        return;
    };
    agent.control.close();
    if !inner.closed {
        tracing::warn!(host = %agent.host, rank = ?agent.rank, why, "cf: agent lost");
    }
    // Its workers are gone with it (or unreachable): their running tasks fail with `Lost`.
    for death in agent.workers.values() {
        death.report(Exit::Lost, String::new());
        death.end_stream();
    }
    let orphans: Vec<u64> = inner
        .pending
        .iter()
        .filter(|(_, p)| p.agent == id)
        .map(|(&slot, _)| slot)
        .collect();
    for slot in orphans {
        if let Some(pending) = inner.pending.remove(&slot) {
            // Asked again of another agent, if one is left (else failed below).
            inner.waiting.push_back((slot, pending.spare));
        }
    }
    state.drain_waiting(&mut inner);
}
