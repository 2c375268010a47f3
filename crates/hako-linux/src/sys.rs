//! The system calls that nix does not cover (close_range, keyrings, ioprio, sched_setattr), small wrappers over
//! those it does (the sealed copy of the binary, openat2 in a root, pivot_root) and small /proc readers.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Turns a libc return value into an `io::Result`.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A sealed, executable in-memory copy of the running binary.
///
/// The container's init runs from this copy, so a process in the container that opens `/proc/<init>/exe`
/// reaches a memfd that cannot be written (CVE-2019-5736), never the hako binary on the host.
pub fn sealed_self_copy() -> io::Result<OwnedFd> {
    use nix::fcntl::{FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let memfd = memfd_create(c"hako-init", MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING)?;
    let exe = File::open("/proc/self/exe")?;
    let len = exe.metadata()?.len();
    let mut copied = 0u64;
    while copied < len {
        // Null offsets: use and advance the file offsets.
        let n = nix::fcntl::copy_file_range(&exe, None, &memfd, None, (len - copied) as usize);
        let n = match n {
            Ok(0) => break,
            Ok(n) => n as u64,
            Err(nix::Error::EXDEV | nix::Error::ENOSYS) => {
                let mut src = &exe;
                let mut dst = File::from(memfd.try_clone()?);
                io::copy(&mut src, &mut dst)?;
                break;
            }
            Err(e) => return Err(e.into()),
        };
        copied += n;
    }
    let seals = SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    nix::fcntl::fcntl(memfd.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals))?;
    Ok(memfd)
}

/// Marks every fd from `first` upwards close-on-exec (CVE-2024-21626: no host fd may reach the container).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags (nix does not wrap close_range).
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk /proc/self/fd.
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let fd: RawFd = match entry?.file_name().to_string_lossy().parse() {
            Ok(fd) => fd,
            Err(_) => continue,
        };
        if fd >= first as RawFd {
            // Setting FD_CLOEXEC on a possibly-stale fd is harmless: EBADF is ignored.
            let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
        }
    }
    Ok(())
}

/// Clears close-on-exec on `fd`, so that it survives the next execve.
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))?;
    Ok(())
}

/// Opens `path` relative to the directory `root` as if `root` were `/`: `..` and absolute symlinks cannot
/// leave it. Used to resolve mount targets inside a rootfs that the container's owner controls.
pub fn open_in_root(root: RawFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::from_bits_retain(flags | libc::O_CLOEXEC))
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = nix::fcntl::openat2(root, path, how)?;
    // SAFETY: openat2 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pivot_root(new_root, put_old)`.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    Ok(nix::unistd::pivot_root(new_root, put_old)?)
}

/// Joins a new anonymous session keyring named `name` (what runc does unless --no-new-keyring).
pub fn join_session_keyring(name: &str) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, name) reads one NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, c.as_ptr()) }).map(drop)
}

/// `setdomainname(name)` (nix wraps only sethostname).
pub fn setdomainname(name: &str) -> io::Result<()> {
    // SAFETY: setdomainname reads `len` bytes from a valid buffer.
    check(libc::c_long::from(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) })).map(drop)
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, class << 13 | level)`.
pub fn ioprio_set(class: i64, level: i64) -> io::Result<()> {
    let prio = (class << 13) | level;
    // SAFETY: ioprio_set takes three integers.
    check(unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) }).map(drop)
}

/// The kernel's `struct sched_attr` (version 1, 56 bytes).
#[repr(C)]
#[derive(Default)]
pub struct SchedAttr {
    /// sizeof(SchedAttr).
    pub size: u32,
    /// SCHED_* policy.
    pub sched_policy: u32,
    /// SCHED_FLAG_*.
    pub sched_flags: u64,
    /// For SCHED_OTHER/BATCH.
    pub sched_nice: i32,
    /// For SCHED_FIFO/RR.
    pub sched_priority: u32,
    /// For SCHED_DEADLINE.
    pub sched_runtime: u64,
    /// For SCHED_DEADLINE.
    pub sched_deadline: u64,
    /// For SCHED_DEADLINE.
    pub sched_period: u64,
    /// Utilisation clamp.
    pub sched_util_min: u32,
    /// Utilisation clamp.
    pub sched_util_max: u32,
}

/// `sched_setattr(0, attr, 0)`.
pub fn sched_setattr(attr: &mut SchedAttr) -> io::Result<()> {
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: attr points to a valid, correctly sized sched_attr.
    check(unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *mut SchedAttr, 0) }).map(drop)
}

pub use hako_runtime::procfs::{proc_stat, process_alive};

/// A path as a C string.
pub fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_copy_is_complete_and_read_only() {
        let fd = sealed_self_copy().unwrap();
        let copy = File::from(fd);
        assert_eq!(copy.metadata().unwrap().len(), std::fs::metadata("/proc/self/exe").unwrap().len());
        let seals = nix::fcntl::fcntl(copy.as_raw_fd(), nix::fcntl::FcntlArg::F_GET_SEALS).unwrap();
        assert_ne!(seals & libc::F_SEAL_WRITE, 0);
        let mut w =
            std::fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{}", copy.as_raw_fd())).unwrap();
        assert!(std::io::Write::write_all(&mut w, b"x").is_err(), "a sealed copy must refuse writes");
    }

    #[test]
    fn open_in_root_keeps_symlinks_inside() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("inside")).unwrap();
        std::os::unix::fs::symlink("/", d.path().join("escape")).unwrap();
        let root = File::open(d.path()).unwrap();
        let fd = open_in_root(root.as_raw_fd(), Path::new("escape/inside"), libc::O_PATH).unwrap();
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(target, d.path().join("inside"));
    }

    #[test]
    fn proc_stat_of_self() {
        let (start, state) = proc_stat(std::process::id() as i32).unwrap();
        assert!(start > 0);
        assert!(state == 'R' || state == 'S');
        assert!(process_alive(std::process::id() as i32, start));
        assert!(!process_alive(std::process::id() as i32, start + 1));
    }
}
