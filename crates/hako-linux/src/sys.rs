//! Thin wrappers over the system calls that nix does not cover (memfd sealing, openat2, close_range, pivot_root,
//! keyrings, ioprio, sched_setattr, timens offsets) and small /proc readers. Every `unsafe` of the crate that is
//! not a plain fork lives here.

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
    let name = c"hako-init";
    // SAFETY: `name` is a valid NUL-terminated string; flags are valid memfd_create flags.
    let fd = check(
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) } as libc::c_long
    )?;
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let exe = File::open("/proc/self/exe")?;
    let len = exe.metadata()?.len();
    let mut copied = 0u64;
    while copied < len {
        // SAFETY: both fds are open; null offsets mean "use and advance the file offsets".
        let n = check(unsafe {
            libc::copy_file_range(
                exe.as_raw_fd(),
                std::ptr::null_mut(),
                memfd.as_raw_fd(),
                std::ptr::null_mut(),
                (len - copied) as usize,
                0,
            )
        } as libc::c_long);
        let n = match n {
            Ok(0) => break,
            Ok(n) => n as u64,
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) || e.raw_os_error() == Some(libc::ENOSYS) => {
                let mut src = &exe;
                let mut dst = File::from(memfd.try_clone()?);
                io::copy(&mut src, &mut dst)?;
                break;
            }
            Err(e) => return Err(e),
        };
        copied += n;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on an owned memfd with a valid command and seal mask.
    check(unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } as libc::c_long)?;
    Ok(memfd)
}

/// Marks every fd from `first` upwards close-on-exec (CVE-2024-21626: no host fd may reach the container).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags.
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
            // SAFETY: setting FD_CLOEXEC on a possibly-stale fd is harmless (EBADF is ignored).
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    Ok(())
}

/// Clears close-on-exec on `fd`, so that it survives the next execve.
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD on a caller-provided fd only changes its flags.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } as libc::c_long).map(drop)
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// Opens `path` relative to the directory `root` as if `root` were `/`: `..` and absolute symlinks cannot
/// leave it. Used to resolve mount targets inside a rootfs that the container's owner controls.
pub fn open_in_root(root: RawFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    let how =
        OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: 0, resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
    // SAFETY: `c` is NUL-terminated, `how` is a valid open_how of the size passed.
    let fd = check(unsafe {
        libc::syscall(libc::SYS_openat2, root, c.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>())
    })?;
    // SAFETY: openat2 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pivot_root(new_root, put_old)`.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let (a, b) = (cstr(new_root)?, cstr(put_old)?);
    // SAFETY: both arguments are NUL-terminated paths.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, a.as_ptr(), b.as_ptr()) }).map(drop)
}

/// Joins a new anonymous session keyring named `name` (what runc does unless --no-new-keyring).
pub fn join_session_keyring(name: &str) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, name) reads one NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, c.as_ptr()) }).map(drop)
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
        // SAFETY: F_GET_SEALS on an owned fd.
        let seals = unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_GET_SEALS) };
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
