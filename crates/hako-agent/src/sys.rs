//! The agent's raw system calls that nix does not wrap (or wraps behind features the workspace does not
//! enable): power-off, module loading, the loopback interface, pty window size, fd flags, the subreaper bit,
//! the random pool and the clock (for a VM restored from a template).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Flushes every file system and powers the machine off. Only pid 1 of the guest calls this.
pub(crate) fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Not allowed (not pid 1 of the VM, or no CAP_SYS_BOOT): nothing else to do.
    std::process::exit(1)
}

/// Loads a kernel module from an open `.ko` file (finit_module with no parameters).
pub(crate) fn finit_module(fd: BorrowedFd<'_>) -> io::Result<()> {
    let params = c"";
    // SAFETY: finit_module takes an fd, a NUL-terminated parameter string that outlives the call, and flags.
    let ret = unsafe { libc::syscall(libc::SYS_finit_module, fd.as_raw_fd(), params.as_ptr(), 0) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A datagram socket of `family`, the handle the interface ioctls go through.
pub(crate) fn socket(family: nix::sys::socket::AddressFamily) -> io::Result<OwnedFd> {
    use nix::sys::socket::{SockFlag, SockType};
    Ok(nix::sys::socket::socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?)
}

/// An ifreq naming interface `name` (an error for a name Linux cannot have).
pub(crate) fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not an interface name"));
    let cname = CString::new(name).map_err(|_| bad())?;
    if name.is_empty() || cname.as_bytes_with_nul().len() > libc::IFNAMSIZ || name.contains('/') {
        return Err(bad());
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(cname.as_bytes_with_nul()) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

/// Brings a network interface up or down (`ip link set NAME up|down`).
pub(crate) fn set_link(name: &str, up: bool) -> io::Result<()> {
    let sock = socket(nix::sys::socket::AddressFamily::Inet)?;
    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS fills the flags of the ifreq we own.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: ifru_flags is the union member SIOCGIFFLAGS just wrote.
    unsafe {
        let flags = &mut req.ifr_ifru.ifru_flags;
        if up {
            *flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        } else {
            *flags &= !(libc::IFF_UP as libc::c_short);
        }
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })
}

/// Brings a network interface up (`ip link set NAME up`).
pub(crate) fn link_up(name: &str) -> io::Result<()> {
    set_link(name, true)
}

/// Sets the window size of a pty (through its master).
pub(crate) fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize struct that lives through the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) })
}

/// Reads the window size of a pty.
#[cfg(test)]
pub(crate) fn get_winsize(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    // SAFETY: winsize is plain data; all-zero is valid.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize struct that we own.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) })?;
    Ok((ws.ws_row, ws.ws_col))
}

/// Adds O_NONBLOCK to an fd's file status flags.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Makes this process the reaper of its orphaned descendants (what pid 1 is anyway).
pub(crate) fn become_subreaper() -> io::Result<()> {
    Ok(nix::sys::prctl::set_child_subreaper(true)?)
}

/// Whether `fd` is open in this process.
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok()
}

/// RNDADDENTROPY: `_IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// RNDRESEEDCRNG: `_IO('R', 0x07)`.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Mixes `entropy` into the kernel's input pool, credited in full, and reseeds the kernel's random number
/// generator from it at once, so that what this kernel hands out from now on no longer follows from the
/// state it had before (a VM restored from a template starts with the template's state). Needs
/// CAP_SYS_ADMIN.
pub(crate) fn reseed_random(entropy: &[u8]) -> io::Result<()> {
    let len = libc::c_int::try_from(entropy.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + entropy.len());
    info.extend_from_slice(&len.saturating_mul(8).to_ne_bytes());
    info.extend_from_slice(&len.to_ne_bytes());
    info.extend_from_slice(entropy);
    let random = std::fs::OpenOptions::new().write(true).open("/dev/urandom")?;
    // SAFETY: RNDADDENTROPY reads a rand_pool_info header and buf_size bytes after it, all inside `info`.
    check(unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) })?;
    // SAFETY: RNDRESEEDCRNG takes no argument.
    check(unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG, 0) })
}

/// Sets the system clock (CLOCK_REALTIME).
pub(crate) fn set_clock(unix_secs: i64, nanos: u32) -> io::Result<()> {
    let ts = nix::sys::time::TimeSpec::new(unix_secs as libc::time_t, nanos.min(999_999_999) as libc::c_long);
    Ok(nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn winsize_roundtrips_on_a_pty() {
        let (master, _slave) = hako_linux::tty::open_pty().unwrap();
        set_winsize(master.as_fd(), 33, 101).unwrap();
        assert_eq!(get_winsize(master.as_fd()).unwrap(), (33, 101));
    }

    #[test]
    fn fd_flags() {
        let (r, _w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        assert!(fd_is_open(r.as_raw_fd()));
        set_nonblocking(r.as_fd()).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(nix::unistd::read(r.as_raw_fd(), &mut buf), Err(nix::errno::Errno::EAGAIN));
        assert!(!fd_is_open(9999));
    }

    #[test]
    fn the_random_pool_takes_entropy_and_reseeds() {
        // Root adds to (and reseeds) the host's pool, which is harmless; without CAP_SYS_ADMIN it is EPERM.
        match reseed_random(&[7u8; 64]) {
            Ok(()) => {}
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
        }
    }

    #[test]
    fn bad_interface_names_are_errors() {
        assert!(link_up("this-name-is-far-too-long-for-linux").is_err());
        assert!(link_up("nosuchif0").is_err());
    }
}
