//! The handshake on every connection between a driver and its agents: a mutual HMAC-SHA256
//! challenge-response over a per-pool secret.
//!
//! ```text
//! D→A  MAGIC ‖ nd                                  (nd, na: 32 fresh random bytes each)
//! A→D  na ‖ HMAC(K, "cf agent"  ‖ nd ‖ na)
//! D→A  HMAC(K, "cf driver" ‖ na ‖ nd)              (the agent checks it: no serving an impostor)
//! ```
//!
//! The direction labels stop a proof being reflected back, fresh nonces on both sides stop a
//! replay, and proofs are compared in constant time. What it guards against: other users of the
//! machines connecting to the driver's port or posing as the driver. What it does not: frames
//! after the handshake travel in the clear and unauthenticated, as over a pipe.

use std::fmt;
use std::io::{self, Read, Write};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The first bytes a driver sends: the protocol and its version.
const MAGIC: &[u8; 8] = b"CFAUTH01";

/// Bytes in a nonce, a secret and a proof.
const LEN: usize = 32;

/// A pool's secret: 32 random bytes, handed to its agents in the environment as hex.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret([u8; LEN]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh secret from the operating system's random source.
    pub(crate) fn random() -> io::Result<Secret> {
        Ok(Secret(random()?))
    }

    /// The secret as 64 lowercase hex digits.
    pub(crate) fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads 64 hex digits.
    pub(crate) fn from_hex(hex: &str) -> Option<Secret> {
        let hex = hex.as_bytes();
        if hex.len() != 2 * LEN {
            return None;
        }
        let mut key = [0; LEN];
        for (byte, pair) in key.iter_mut().zip(hex.chunks(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(Secret(key))
    }

    fn mac(&self, label: &[u8], first: &[u8], second: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(label);
        mac.update(first);
        mac.update(second);
        mac
    }

    fn proof(&self, label: &[u8], first: &[u8], second: &[u8]) -> [u8; LEN] {
        self.mac(label, first, second)
            .finalize()
            .into_bytes()
            .into()
    }

    fn verify(&self, label: &[u8], first: &[u8], second: &[u8], proof: &[u8]) -> bool {
        self.mac(label, first, second).verify_slice(proof).is_ok()
    }
}

const AGENT: &[u8] = b"cf agent";
const DRIVER: &[u8] = b"cf driver";

fn random() -> io::Result<[u8; LEN]> {
    let mut bytes = [0; LEN];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(bytes)
}

fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why.to_owned())
}

/// The driver's side: challenges the peer, checks its proof, then proves itself. The caller sets
/// the deadline (socket timeouts).
///
/// # Errors
/// The peer does not know the secret (`PermissionDenied`), or the stream failed.
pub(crate) fn driver(stream: &mut (impl Read + Write), secret: &Secret) -> io::Result<()> {
    let ours = random()?;
    let mut hello = [0; MAGIC.len() + LEN];
    hello[..MAGIC.len()].copy_from_slice(MAGIC);
    hello[MAGIC.len()..].copy_from_slice(&ours);
    stream.write_all(&hello)?;
    let mut answer = [0; 2 * LEN];
    stream.read_exact(&mut answer)?;
    let (theirs, proof) = answer.split_at(LEN);
    if !secret.verify(AGENT, &ours, theirs, proof) {
        return Err(refused("the peer does not know the pool's secret"));
    }
    stream.write_all(&secret.proof(DRIVER, theirs, &ours))?;
    stream.flush()
}

/// The agent's side: answers the driver's challenge, then checks the driver's proof.
///
/// # Errors
/// The driver does not know the secret or speaks another protocol (`PermissionDenied`), or the
/// stream failed.
pub(crate) fn agent(stream: &mut (impl Read + Write), secret: &Secret) -> io::Result<()> {
    let mut hello = [0; MAGIC.len() + LEN];
    stream.read_exact(&mut hello)?;
    let (magic, theirs) = hello.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(refused("the peer is not a cf driver"));
    }
    let ours = random()?;
    let mut answer = [0; 2 * LEN];
    answer[..LEN].copy_from_slice(&ours);
    answer[LEN..].copy_from_slice(&secret.proof(AGENT, theirs, &ours));
    stream.write_all(&answer)?;
    stream.flush()?;
    let mut proof = [0; LEN];
    stream.read_exact(&mut proof)?;
    if !secret.verify(DRIVER, &ours, theirs, &proof) {
        return Err(refused("the driver does not know the pool's secret"));
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use std::os::unix::net::UnixStream;
    use std::thread;

    use super::*;

    fn pair(driver_key: &Secret, agent_key: &Secret) -> (io::Result<()>, io::Result<()>) {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let key = agent_key.clone();
        let agent_side = thread::spawn(move || {
            let r = agent(&mut b, &key);
            drop(b);
            r
        });
        let d = driver(&mut a, driver_key);
        drop(a);
        (d, agent_side.join().unwrap())
    }

    #[test]
    fn the_same_secret_passes_both_ways() {
        let key = Secret::random().unwrap();
        let (d, a) = pair(&key, &key);
        d.unwrap();
        a.unwrap();
    }

    #[test]
    fn an_agent_with_another_secret_is_refused() {
        let (d, a) = pair(&Secret::random().unwrap(), &Secret::random().unwrap());
        assert_eq!(d.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        // The driver closed without proving itself: the agent serves nothing.
        assert!(a.is_err());
    }

    #[test]
    fn a_driver_with_another_secret_is_refused_by_the_agent() {
        let key = Secret::random().unwrap();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let agent_key = key.clone();
        let agent_side = thread::spawn(move || agent(&mut b, &agent_key));
        // An impostor: it relays the agent's answer unchecked, then proves with another key.
        a.write_all(MAGIC).unwrap();
        let nd = [7u8; LEN];
        a.write_all(&nd).unwrap();
        let mut answer = [0; 2 * LEN];
        a.read_exact(&mut answer).unwrap();
        let other = Secret::random().unwrap();
        a.write_all(&other.proof(DRIVER, &answer[..LEN], &nd))
            .unwrap();
        let e = agent_side.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn a_reflected_proof_is_refused() {
        // The driver's proof of the same nonces, sent back as the agent's: the labels differ.
        let key = Secret::random().unwrap();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let driver_key = key.clone();
        let driver_side = thread::spawn(move || driver(&mut a, &driver_key));
        let mut hello = [0; MAGIC.len() + LEN];
        b.read_exact(&mut hello).unwrap();
        let nd = &hello[MAGIC.len()..];
        let na = [9u8; LEN];
        let mut answer = [0; 2 * LEN];
        answer[..LEN].copy_from_slice(&na);
        answer[LEN..].copy_from_slice(&key.proof(DRIVER, &na, nd));
        b.write_all(&answer).unwrap();
        let e = driver_side.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn random_bytes_are_refused_by_both_sides() {
        let key = Secret::random().unwrap();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let noise = random().unwrap();
        let driver_key = key.clone();
        let driver_side = thread::spawn(move || driver(&mut a, &driver_key));
        let mut hello = [0; MAGIC.len() + LEN];
        b.read_exact(&mut hello).unwrap();
        b.write_all(&noise).unwrap();
        b.write_all(&noise).unwrap();
        assert_eq!(
            driver_side.join().unwrap().unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&noise).unwrap();
        a.write_all(&noise[..8]).unwrap();
        assert_eq!(
            agent(&mut b, &key).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn nonces_are_fresh() {
        assert_ne!(random().unwrap(), random().unwrap());
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let key = Secret::random().unwrap();
        assert_eq!(Secret::from_hex(&key.to_hex()), Some(key));
        assert_eq!(Secret::from_hex("zz"), None);
        assert_eq!(Secret::from_hex(&"g".repeat(64)), None);
    }
}
