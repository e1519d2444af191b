//! Workers on other machines: agents that start and supervise workers there, reached over TCP.
//!
//! See `SCALE-OUT` in the design notes and `README.md` beside `process/`. The scheduler does not
//! change: a remote worker is another [`Link`](super::link::Link) ([`link::RemoteLink`]) and the
//! pool another [`Launch`](super::link::Launch) ([`launcher::Remote`]).

mod agent;
mod auth;
pub(crate) mod launcher;
mod link;
mod wire;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auth::Secret;

use crate::error::{ConfigError, Error, ErrorKind};

/// The environment variable that picks the launcher of pools built with
/// [`ProcessPoolExecutor::builder`](crate::ProcessPoolExecutor::builder) (and `new`): `local`,
/// `tcp`, `tcp:N`, `slurm` or `slurm:N`. See [`Launcher::from_env`].
pub const ENV_LAUNCHER: &str = "CF_LAUNCHER";

const HEARTBEAT: Duration = Duration::from_secs(1);
const LOST_AFTER: Duration = Duration::from_secs(10);

/// Where a process pool's workers run: this machine ([`Local`], the default), agents started
/// here that connect over TCP ([`Tcp`]), or agents started by Slurm's `srun` ([`Slurm`]).
#[derive(Debug, Clone)]
pub struct Launcher(Kind);

#[derive(Debug, Clone)]
enum Kind {
    Local,
    Tcp(Tcp),
    Slurm(Slurm),
}

/// Workers are child processes of this one (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

/// Workers run under agents: copies of this binary started as local processes, connected over
/// 127.0.0.1 and authenticated as on a cluster. The [`Slurm`] code path without `srun`: for
/// tests, and for trying a program's cluster behaviour on one machine.
#[derive(Debug, Clone)]
pub struct Tcp {
    agents: usize,
    heartbeat: Duration,
    lost_after: Duration,
    start_timeout: Duration,
}

/// Workers run under agents that `srun` starts, one per Slurm task, each supervising its workers
/// on its node. Inside an allocation (`SLURM_JOB_ID` set, as under `sbatch` or `salloc`) the
/// agents are a step of it; outside, `srun` asks for an allocation of its own.
///
/// The pool's default size is one worker per task: [`ntasks`](Self::ntasks), else the
/// allocation's `SLURM_NTASKS`, else 1.
#[derive(Debug, Clone)]
pub struct Slurm {
    ntasks: Option<usize>,
    srun: OsString,
    args: Vec<OsString>,
    overcommit: bool,
    listen: IpAddr,
    advertise: Option<String>,
    heartbeat: Duration,
    lost_after: Duration,
    start_timeout: Duration,
}

impl From<Local> for Launcher {
    fn from(_: Local) -> Launcher {
        Launcher(Kind::Local)
    }
}

impl From<Tcp> for Launcher {
    fn from(tcp: Tcp) -> Launcher {
        Launcher(Kind::Tcp(tcp))
    }
}

impl From<Slurm> for Launcher {
    fn from(slurm: Slurm) -> Launcher {
        Launcher(Kind::Slurm(slurm))
    }
}

impl Tcp {
    /// `agents` agents on this machine (at least 1); the pool's workers are spread over them.
    pub fn local(agents: usize) -> Tcp {
        Tcp {
            agents: agents.max(1),
            heartbeat: HEARTBEAT,
            lost_after: LOST_AFTER,
            start_timeout: Duration::from_secs(60),
        }
    }

    /// Agents say they are alive every `every`; one silent for `lost_after` is lost, and its
    /// workers' running tasks fail with [`Exit::Lost`](crate::Exit::Lost) (default: 1 s, 10 s).
    #[must_use]
    pub fn heartbeat(mut self, every: Duration, lost_after: Duration) -> Tcp {
        self.heartbeat = every;
        self.lost_after = lost_after.max(every);
        self
    }
}

impl Default for Slurm {
    fn default() -> Self {
        Slurm::new()
    }
}

impl Slurm {
    /// `srun` with Slurm's and the allocation's defaults.
    pub fn new() -> Slurm {
        Slurm {
            ntasks: None,
            srun: "srun".into(),
            args: Vec::new(),
            overcommit: false,
            listen: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertise: None,
            heartbeat: HEARTBEAT,
            lost_after: LOST_AFTER,
            start_timeout: Duration::from_secs(300),
        }
    }

    /// The number of agents (`srun --ntasks`), and the pool's default size.
    #[must_use]
    pub fn ntasks(mut self, n: usize) -> Slurm {
        self.ntasks = Some(n.max(1));
        self
    }

    /// More arguments for `srun`, before the program (`--partition`, `--nodes`, `--bcast`…).
    #[must_use]
    pub fn srun_args<I, S>(mut self, args: I) -> Slurm
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Passes `--overcommit`: more tasks than CPUs (without it, such a step waits forever).
    #[must_use]
    pub fn overcommit(mut self, on: bool) -> Slurm {
        self.overcommit = on;
        self
    }

    /// The `srun` to run (default: `srun` on the `PATH`).
    #[must_use]
    pub fn srun(mut self, program: impl Into<OsString>) -> Slurm {
        self.srun = program.into();
        self
    }

    /// The address the driver listens on (default: all) and the host name or address agents
    /// connect to (default: this machine's host name). The compute nodes must reach it: run the
    /// driver inside the allocation where they cannot reach the login node.
    #[must_use]
    pub fn listen(mut self, on: IpAddr, advertise: impl Into<String>) -> Slurm {
        self.listen = on;
        self.advertise = Some(advertise.into());
        self
    }

    /// As [`Tcp::heartbeat`].
    #[must_use]
    pub fn heartbeat(mut self, every: Duration, lost_after: Duration) -> Slurm {
        self.heartbeat = every;
        self.lost_after = lost_after.max(every);
        self
    }

    /// How long `build` waits for the first worker: the allocation may queue (default: 300 s).
    #[must_use]
    pub fn start_timeout(mut self, limit: Duration) -> Slurm {
        self.start_timeout = limit;
        self
    }

    fn tasks(&self) -> usize {
        self.ntasks
            .or_else(|| {
                std::env::var("SLURM_NTASKS")
                    .ok()
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(1)
    }
}

fn config_error(value: &str) -> Error {
    Error::new(ErrorKind::Config(ConfigError::Launcher {
        value: value.to_owned(),
    }))
}

impl Launcher {
    /// The launcher [`ENV_LAUNCHER`] names, if it is set: `local`; `tcp` (2 agents) or `tcp:N`;
    /// `slurm` or `slurm:N` (N tasks, with `--overcommit`).
    ///
    /// # Errors
    /// The variable holds something else: a configuration error ([`Error::is_config`]) that
    /// names it.
    pub fn from_env() -> Result<Option<Launcher>, Error> {
        let Some(value) = std::env::var_os(ENV_LAUNCHER) else {
            return Ok(None);
        };
        let value = value.to_string_lossy();
        let (name, count) = match value.split_once(':') {
            Some((name, n)) => match n.parse::<usize>() {
                Ok(n) if n > 0 => (name, Some(n)),
                _ => return Err(config_error(&value)),
            },
            None => (&*value, None),
        };
        match name.trim() {
            "" | "local" if count.is_none() => Ok(Some(Local.into())),
            "tcp" => Ok(Some(Tcp::local(count.unwrap_or(2)).into())),
            "slurm" => {
                let slurm = Slurm::new().overcommit(true);
                Ok(Some(
                    match count {
                        Some(n) => slurm.ntasks(n),
                        None => slurm,
                    }
                    .into(),
                ))
            }
            _ => Err(config_error(&value)),
        }
    }

    /// The pool size this launcher suggests, where the user gave none.
    pub(crate) fn default_workers(&self) -> Option<usize> {
        match &self.0 {
            Kind::Slurm(slurm) => Some(slurm.tasks()),
            Kind::Local | Kind::Tcp(_) => None,
        }
    }

    /// How the driver starts this pool's workers: `None` for local ones.
    pub(crate) fn plan(&self, exe: PathBuf, memory_limit: Option<u64>) -> Option<Plan> {
        match &self.0 {
            Kind::Local => None,
            Kind::Tcp(tcp) => Some(Plan {
                agents: Agents::Local(tcp.agents),
                listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                advertise: "127.0.0.1".to_owned(),
                heartbeat: tcp.heartbeat,
                lost_after: tcp.lost_after,
                start_timeout: tcp.start_timeout,
                memory_limit,
                exe,
            }),
            Kind::Slurm(slurm) => Some(Plan {
                advertise: slurm.advertise.clone().unwrap_or_else(host_name),
                listen: SocketAddr::new(slurm.listen, 0),
                heartbeat: slurm.heartbeat,
                lost_after: slurm.lost_after,
                start_timeout: slurm.start_timeout,
                agents: Agents::Srun(slurm.clone()),
                memory_limit,
                exe,
            }),
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

/// How a remote pool is set up.
pub(crate) struct Plan {
    agents: Agents,
    listen: SocketAddr,
    advertise: String,
    heartbeat: Duration,
    lost_after: Duration,
    start_timeout: Duration,
    memory_limit: Option<u64>,
    exe: PathBuf,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// How the agents start.
enum Agents {
    /// As this many child processes.
    Local(usize),
    /// As the tasks of one `srun`.
    Srun(Slurm),
}

impl Agents {
    fn start(&self, exe: &Path, address: &str, secret: &Secret) -> io::Result<Processes> {
        let env = agent::environment(address, secret);
        let command = |program: &std::ffi::OsStr| {
            let mut command = Command::new(program);
            command
                .envs(env.iter().map(|(k, v)| (k, v)))
                .env_remove(cf_worker::start::ENV_MARKER)
                .env_remove(ENV_LAUNCHER)
                .stdin(Stdio::null());
            command
        };
        match self {
            Agents::Local(n) => {
                let mut children = Vec::with_capacity(*n);
                for _ in 0..*n {
                    match command(exe.as_os_str()).spawn() {
                        Ok(child) => children.push(child),
                        Err(e) => {
                            let mut started = Processes {
                                children,
                                expected: 0,
                                srun: false,
                            };
                            started.stop(Duration::ZERO, None);
                            return Err(e);
                        }
                    }
                }
                Ok(Processes {
                    children,
                    expected: *n,
                    srun: false,
                })
            }
            Agents::Srun(slurm) => {
                let ntasks = slurm.tasks();
                let mut command = command(&slurm.srun);
                command.arg(format!("--ntasks={ntasks}"));
                command.args(["--kill-on-bad-exit=0", "--wait=0", "--label"]);
                if slurm.overcommit {
                    command.arg("--overcommit");
                }
                command.args(&slurm.args).arg(exe);
                // Its own process group: a signal to ours (Ctrl-C, `timeout`) must not kill srun
                // before the agents see the driver gone, which would leave the allocation.
                std::os::unix::process::CommandExt::process_group(&mut command, 0);
                let child = command.spawn().map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot run {}: {e}", slurm.srun.to_string_lossy()),
                    )
                })?;
                Ok(Processes {
                    children: vec![child],
                    expected: ntasks,
                    srun: true,
                })
            }
        }
    }
}

/// The agents' processes, as started here.
pub(crate) struct Processes {
    children: Vec<Child>,
    /// How many agents they will connect.
    expected: usize,
    /// One `srun` for all.
    srun: bool,
}

impl Processes {
    /// Why no more agents will connect, once every process has ended.
    fn all_ended(&mut self) -> Option<String> {
        let mut last = None;
        for child in &mut self.children {
            match child.try_wait() {
                Ok(Some(status)) => last = Some(status),
                _ => return None,
            }
        }
        let what = if self.srun { "srun" } else { "the agents" };
        last.map(|status| format!("{what} ended ({status})"))
    }

    /// Waits `within` for the processes to end (their agents saw the control connection
    /// close), then kills them; a Slurm job of our own left behind is cancelled.
    fn stop(&mut self, within: Duration, job: Option<u64>) {
        let deadline = Instant::now() + within;
        let mut killed = false;
        for child in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Ok(None) => {
                        killed = true;
                        if self.srun {
                            crate::sys::signal_group(child.id(), 9);
                        }
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        // srun killed outside an allocation of the user's may leave its job running.
        let own_job = std::env::var_os("SLURM_JOB_ID").is_none();
        if self.srun
            && killed
            && own_job
            && let Some(job) = job
        {
            let _ = Command::new("scancel")
                .arg(job.to_string())
                .stdin(Stdio::null())
                .status();
        }
    }
}
