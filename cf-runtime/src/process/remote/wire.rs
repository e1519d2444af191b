//! Messages on an agent's control connection: length-prefixed, little-endian.
//!
//! Down (driver → agent): [`Down::Config`], [`Down::Spawn`], [`Down::Signal`]. Up: [`Up::Hello`],
//! [`Up::Spawned`], [`Up::SpawnFailed`], [`Up::Died`], [`Up::Ping`]. After the handshake (see
//! `auth.rs`) the connecting side sends one role byte: [`CONTROL`] for an agent's control
//! connection, [`DATA`] and a slot for a worker's data connection.

use std::io::{self, Read, Write};

use crate::error::Exit;

/// Role byte of a control connection.
pub(crate) const CONTROL: u8 = b'C';
/// Role byte of a worker's data connection; the slot (u64) follows.
pub(crate) const DATA: u8 = b'D';

/// The largest control message.
const MAX: usize = 1 << 20;

/// Driver to agent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Down {
    /// Send a ping at least this often (ms).
    Config { heartbeat_ms: u32 },
    /// Start a worker for `slot`, connecting its data connection first.
    Spawn { slot: u64, memory_limit: u64 },
    /// Send signal `sig` to the worker `pid`.
    Signal { pid: u32, sig: u8 },
}

/// Agent to driver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Up {
    /// Who the agent is: its pid, host and rank (`SLURM_PROCID`) and job (`SLURM_JOB_ID`).
    Hello {
        pid: u32,
        rank: Option<u32>,
        job: Option<u64>,
        host: String,
    },
    /// The worker of `slot` started as `pid`.
    Spawned { slot: u64, pid: u32 },
    /// The worker of `slot` could not start.
    SpawnFailed { slot: u64, message: String },
    /// The worker `pid` ended; `stderr` is the end of what it wrote there.
    Died {
        pid: u32,
        exit: Exit,
        stderr: String,
    },
    /// The agent is alive.
    Ping,
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Reads fields from a message body.
struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn take<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err(bad("a control message is too short"));
        };
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> io::Result<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn rest(self) -> String {
        String::from_utf8_lossy(self.0).into_owned()
    }
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

fn send(to: &mut impl Write, kind: u8, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len() + 1).map_err(|_| bad("a control message is too long"))?;
    let mut message = Vec::with_capacity(body.len() + 5);
    put_u32(&mut message, len);
    message.push(kind);
    message.extend_from_slice(body);
    to.write_all(&message)
}

fn receive(from: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut len = [0; 4];
    from.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX {
        return Err(bad("a control message has a bad length"));
    }
    let mut body = vec![0; len];
    from.read_exact(&mut body)?;
    let kind = body.remove(0);
    Ok((kind, body))
}

impl Down {
    pub(crate) fn send(&self, to: &mut impl Write) -> io::Result<()> {
        let mut body = Vec::new();
        let kind = match *self {
            Down::Config { heartbeat_ms } => {
                put_u32(&mut body, heartbeat_ms);
                1
            }
            Down::Spawn { slot, memory_limit } => {
                put_u64(&mut body, slot);
                put_u64(&mut body, memory_limit);
                2
            }
            Down::Signal { pid, sig } => {
                put_u32(&mut body, pid);
                body.push(sig);
                3
            }
        };
        send(to, kind, &body)
    }

    pub(crate) fn receive(from: &mut impl Read) -> io::Result<Down> {
        let (kind, body) = receive(from)?;
        let mut b = Body(&body);
        Ok(match kind {
            1 => Down::Config {
                heartbeat_ms: b.u32()?,
            },
            2 => Down::Spawn {
                slot: b.u64()?,
                memory_limit: b.u64()?,
            },
            3 => Down::Signal {
                pid: b.u32()?,
                sig: b.u8()?,
            },
            _ => return Err(bad("an unknown control message")),
        })
    }
}

impl Up {
    pub(crate) fn send(&self, to: &mut impl Write) -> io::Result<()> {
        let mut body = Vec::new();
        let kind = match self {
            Up::Hello {
                pid,
                rank,
                job,
                host,
            } => {
                put_u32(&mut body, *pid);
                put_u64(&mut body, rank.map_or(u64::MAX, u64::from));
                put_u64(&mut body, job.unwrap_or(u64::MAX));
                body.extend_from_slice(host.as_bytes());
                0x81
            }
            Up::Spawned { slot, pid } => {
                put_u64(&mut body, *slot);
                put_u32(&mut body, *pid);
                0x82
            }
            Up::SpawnFailed { slot, message } => {
                put_u64(&mut body, *slot);
                body.extend_from_slice(message.as_bytes());
                0x83
            }
            Up::Died { pid, exit, stderr } => {
                put_u32(&mut body, *pid);
                let (how, value) = match *exit {
                    Exit::Code(code) => (0, code),
                    Exit::Signal(n) => (1, n),
                    Exit::Lost => (3, 0),
                    _ => (2, 0),
                };
                body.push(how);
                body.extend_from_slice(&value.to_le_bytes());
                body.extend_from_slice(stderr.as_bytes());
                0x84
            }
            Up::Ping => 0x85,
        };
        send(to, kind, &body)
    }

    pub(crate) fn receive(from: &mut impl Read) -> io::Result<Up> {
        let (kind, body) = receive(from)?;
        let mut b = Body(&body);
        Ok(match kind {
            0x81 => Up::Hello {
                pid: b.u32()?,
                rank: u32::try_from(b.u64()?).ok(),
                job: Some(b.u64()?).filter(|&j| j != u64::MAX),
                host: b.rest(),
            },
            0x82 => Up::Spawned {
                slot: b.u64()?,
                pid: b.u32()?,
            },
            0x83 => Up::SpawnFailed {
                slot: b.u64()?,
                message: b.rest(),
            },
            0x84 => {
                let pid = b.u32()?;
                let how = b.u8()?;
                let value = i32::from_le_bytes(b.take()?);
                let exit = match how {
                    0 => Exit::Code(value),
                    1 => Exit::Signal(value),
                    3 => Exit::Lost,
                    _ => Exit::Unknown,
                };
                Up::Died {
                    pid,
                    exit,
                    stderr: b.rest(),
                }
            }
            0x85 => Up::Ping,
            _ => return Err(bad("an unknown control message")),
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let downs = [
            Down::Config { heartbeat_ms: 250 },
            Down::Spawn {
                slot: 7,
                memory_limit: 1 << 30,
            },
            Down::Signal { pid: 42, sig: 9 },
        ];
        let mut buf = Vec::new();
        for d in &downs {
            d.send(&mut buf).unwrap();
        }
        let mut r = &buf[..];
        for d in downs {
            assert_eq!(Down::receive(&mut r).unwrap(), d);
        }
        let ups = [
            Up::Hello {
                pid: 1,
                rank: Some(3),
                job: None,
                host: "cn17".into(),
            },
            Up::Spawned { slot: 2, pid: 99 },
            Up::SpawnFailed {
                slot: 3,
                message: "no".into(),
            },
            Up::Died {
                pid: 5,
                exit: Exit::Signal(6),
                stderr: "boom\n".into(),
            },
            Up::Died {
                pid: 6,
                exit: Exit::Code(-3),
                stderr: String::new(),
            },
            Up::Ping,
        ];
        let mut buf = Vec::new();
        for u in &ups {
            u.send(&mut buf).unwrap();
        }
        let mut r = &buf[..];
        for u in ups {
            assert_eq!(Up::receive(&mut r).unwrap(), u);
        }
    }

    #[test]
    fn a_bad_length_is_refused() {
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0x7f, 1];
        assert_eq!(
            Up::receive(&mut r).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let mut r: &[u8] = &[0, 0, 0, 0];
        assert!(Down::receive(&mut r).is_err());
    }
}
