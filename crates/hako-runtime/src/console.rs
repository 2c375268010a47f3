//! Handing a pty master to whoever listens on `--console-socket`: one SCM_RIGHTS message with the pty's name
//! as payload, as runc's recvtty, conmon and containerd's shim expect. Shared by every backend.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

/// The console socket is unusable.
#[derive(Debug, thiserror::Error)]
#[error("console socket {path}: {source}; pass the path of a listening unix socket with --console-socket")]
pub struct ConsoleSocketError {
    /// The socket path.
    pub path: PathBuf,
    /// The underlying error.
    pub source: io::Error,
}

/// Sends `master` to the listener at `socket`.
pub fn send_pty_master(socket: &Path, master: &impl AsFd) -> Result<(), ConsoleSocketError> {
    let err = |source| ConsoleSocketError { path: socket.to_owned(), source };
    let stream = UnixStream::connect(socket).map_err(err)?;
    let fds: [RawFd; 1] = [master.as_fd().as_raw_fd()];
    let iov = [io::IoSlice::new(b"/dev/ptmx")];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| err(e.into()))?;
    Ok(())
}
