//! Terminals: the pty that init makes inside the container when `process.terminal` is true, and the hand-over
//! of its master to whoever listens on `--console-socket` (as SCM_RIGHTS, like runc).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, unlockpt};

/// A terminal step that failed.
#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    /// Making the pty failed.
    #[error("terminal: {what}: {source}; process.terminal needs a devpts mount at /dev/pts in the container")]
    Pty {
        /// The step.
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The console socket is unusable.
    #[error(transparent)]
    Socket(#[from] hako_runtime::console::ConsoleSocketError),
}

fn pty(what: &'static str) -> impl FnOnce(nix::Error) -> TtyError {
    move |e| TtyError::Pty { what, source: e.into() }
}

/// Opens a new pty in the current mount namespace; returns the master and the slave, opened from the master
/// (`TIOCGPTPEER`), so no `/dev/pts/N` path that the rootfs could redirect is ever looked up.
pub fn open_pty() -> Result<(OwnedFd, OwnedFd), TtyError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(pty("open /dev/ptmx"))?;
    grantpt(&master).map_err(pty("grantpt"))?;
    unlockpt(&master).map_err(pty("unlockpt"))?;
    // SAFETY: PtyMaster owns a valid fd; into_raw_fd transfers that ownership to the OwnedFd.
    let master = unsafe { <OwnedFd as FromRawFd>::from_raw_fd(master.into_raw_fd()) };
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd for the master's slave.
    let slave = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if slave < 0 {
        return Err(TtyError::Pty { what: "open the pty slave (TIOCGPTPEER)", source: io::Error::last_os_error() });
    }
    // SAFETY: the ioctl returned a new fd that nothing else owns.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// Makes the slave the controlling terminal and stdin/stdout/stderr of this process (after setsid).
pub fn become_console(slave: &OwnedFd, size: Option<(u32, u32)>) -> Result<(), TtyError> {
    let fd = slave.as_raw_fd();
    if let Some((h, w)) = size {
        let ws = libc::winsize { ws_row: h as u16, ws_col: w as u16, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize struct.
        unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    }
    // SAFETY: TIOCSCTTY takes an integer argument.
    if unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) } < 0 {
        return Err(TtyError::Pty { what: "TIOCSCTTY", source: io::Error::last_os_error() });
    }
    for target in 0..3 {
        nix::unistd::dup2(fd, target).map_err(pty("dup2 onto stdio"))?;
        // dup2 onto itself keeps close-on-exec: stdio must survive execve.
        let _ = nix::fcntl::fcntl(target, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()));
    }
    Ok(())
}
