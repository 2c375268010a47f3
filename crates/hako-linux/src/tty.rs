//! Terminals: the pty that init makes inside the container when `process.terminal` is true, and the hand-over
//! of its master to whoever listens on `--console-socket` (as SCM_RIGHTS, like runc).

use std::io;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};

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

/// Opens a new pty in the current mount namespace; returns the master and the slave's path.
pub fn open_pty() -> Result<(OwnedFd, PathBuf), TtyError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(pty("open /dev/ptmx"))?;
    grantpt(&master).map_err(pty("grantpt"))?;
    unlockpt(&master).map_err(pty("unlockpt"))?;
    let name = ptsname_r(&master).map_err(pty("ptsname"))?;
    // SAFETY: PtyMaster owns a valid fd; into_raw_fd transfers that ownership to the OwnedFd.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(master.into_raw_fd()) };
    Ok((fd, PathBuf::from(name)))
}

/// Makes the slave the controlling terminal and stdin/stdout/stderr of this process (after setsid).
pub fn become_console(slave: &Path, size: Option<(u32, u32)>) -> Result<(), TtyError> {
    let fd = nix::fcntl::open(slave, OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .map_err(pty("open the pty slave"))?;
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
    }
    if fd > 2 {
        let _ = nix::unistd::close(fd);
    }
    Ok(())
}
