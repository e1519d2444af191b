//! Shared memory for the reply ring: a sealed memfd mapped by the parent and its worker, words
//! read and written as atomics, bytes copied in and out, and futexes on those words.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::libc;
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags, madvise, mmap, munmap};

/// The seals a ring's memfd carries: its size can never change, so neither side's mapping can
/// lose its pages under it (a shrunk file would make the other side's next access a SIGBUS).
const SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

/// A `len`-byte region of a memfd, mapped shared and read-write.
pub(crate) struct Shm {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Shm` is an address range mapped for the life of the value; every access through it
// is an atomic operation on a word or a copy of bytes (any bit pattern is a valid `u8`), and the
// ring's protocol says which side may write which bytes when. Moving or sharing the handle
// between threads changes none of that.
unsafe impl Send for Shm {}
// SAFETY: as for `Send`: `&Shm` offers only atomics and copies.
unsafe impl Sync for Shm {}

impl Shm {
    /// A new region of `len` bytes (zeroed), and the sealed, close-on-exec memfd behind it, to
    /// hand to the other side.
    pub(crate) fn create(len: usize) -> io::Result<(Shm, OwnedFd)> {
        let fd = memfd_create(
            c"cf-ring",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        nix::unistd::ftruncate(&fd, i64::try_from(len).map_err(io::Error::other)?)?;
        fcntl(fd.as_fd(), FcntlArg::F_ADD_SEALS(SEALS))?;
        Ok((Shm::map(&fd, len)?, fd))
    }

    /// Maps the region of `fd`, which must be a memfd of exactly `len` bytes sealed against
    /// shrinking.
    pub(crate) fn open(fd: &OwnedFd, len: usize) -> io::Result<Shm> {
        let seals = SealFlag::from_bits_retain(fcntl(fd.as_fd(), FcntlArg::F_GET_SEALS)?);
        let size = nix::sys::stat::fstat(fd.as_fd())?.st_size;
        if !seals.contains(SealFlag::F_SEAL_SHRINK) || usize::try_from(size).ok() != Some(len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the ring is not a sealed memfd of its size",
            ));
        }
        Shm::map(fd, len)
    }

    fn map(fd: &OwnedFd, len: usize) -> io::Result<Shm> {
        let size = std::num::NonZeroUsize::new(len).ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: a new shared mapping chosen by the kernel (no address given, so nothing of
        // ours is replaced), of a memfd whose size is `len` and sealed so that it stays so.
        let ptr = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }?;
        // A process that a task forks must not write into the ring it shares with the parent:
        // its copy of the worker has no mapping there (best effort: without it, the child can
        // only write what the worker could).
        // SAFETY: advice on the range just mapped, which nothing else uses yet.
        let _ = unsafe { madvise(ptr, len, MmapAdvise::MADV_DONTFORK) };
        Ok(Shm {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The 32-bit word at byte `at` (a multiple of 4, inside the region).
    pub(crate) fn word(&self, at: usize) -> &AtomicU32 {
        assert!(
            at.is_multiple_of(4) && at + 4 <= self.len,
            "word {at} outside the ring"
        );
        // SAFETY: `at` is in bounds and 4-aligned (the mapping is page-aligned), the mapping
        // lives as long as `self`, and the word is only ever accessed atomically, by both sides.
        unsafe { self.ptr.add(at).cast::<AtomicU32>().as_ref() }
    }

    /// Copies `src` to byte `at` of the region.
    pub(crate) fn write(&self, at: usize, src: &[u8]) {
        assert!(at + src.len() <= self.len, "write outside the ring");
        // SAFETY: the destination range is inside the mapping (checked above), which cannot
        // overlap `src` (a Rust value, not this mapping: it is never handed out as a slice). By
        // the ring's protocol the other side does not touch these bytes until they are published;
        // if it breaks the protocol, bytes come out wrong, which the frame parser on the reading
        // side rejects.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(at).as_ptr(), src.len());
        }
    }

    /// Copies bytes from byte `at` of the region into `dst`.
    pub(crate) fn read(&self, at: usize, dst: &mut [u8]) {
        assert!(at + dst.len() <= self.len, "read outside the ring");
        // SAFETY: as in `write`, the other way round: the range is inside the mapping, `dst` is
        // not part of it, and any bit pattern is a valid `u8`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(at).as_ptr(), dst.as_mut_ptr(), dst.len());
        }
    }

    /// Appends `len` bytes from byte `at` of the region to `dst`, whose spare capacity must hold
    /// them: no zeroing of the room first.
    pub(crate) fn append(&self, at: usize, len: usize, dst: &mut Vec<u8>) {
        assert!(at + len <= self.len, "read outside the ring");
        let spare = dst.spare_capacity_mut();
        assert!(len <= spare.len(), "no room for the bytes");
        // SAFETY: as in `read`: the source range is inside the mapping, the destination is `len`
        // bytes of `dst`'s spare capacity (checked), owned by `dst` and not part of the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.add(at).as_ptr(),
                spare.as_mut_ptr().cast(),
                len,
            );
        }
        // SAFETY: the copy just above initialized the first `len` bytes of the spare capacity.
        unsafe { dst.set_len(dst.len() + len) };
    }

    /// Sleeps while the word at `at` holds `expected`, for at most `timeout` (or until a
    /// [`wake`](Self::wake), a signal, or a spurious return).
    pub(crate) fn wait(&self, at: usize, expected: u32, timeout: Duration) {
        let word = self.word(at);
        let time = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos().cast_signed()),
        };
        // SAFETY: FUTEX_WAIT (shared, not private: the other side is another process) reads the
        // word at a valid, aligned address of a live mapping and the timespec from a local; it
        // writes no memory.
        let _ = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                &raw const time,
            )
        };
    }

    /// Wakes whoever [`wait`](Self::wait)s on the word at `at`.
    pub(crate) fn wake(&self, at: usize) {
        let word = self.word(at);
        // SAFETY: FUTEX_WAKE takes the word's address only as a key; it reads and writes no
        // memory of ours.
        let _ = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by `map` and nothing borrows it any more (every borrow
        // handed out is tied to `&self`).
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}
