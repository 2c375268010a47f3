//! Foreground waiting for `run` and `exec`: hako is the subreaper of the container process, forwards the
//! signals it gets to it, relays a pty when the process has a terminal and no console socket was given, and
//! returns the exit code as a shell reports it (128 + signal when killed).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use hako_runtime::signal::FORWARDED;

/// In the foreground, a process with a terminal gets hako's own terminal relayed to it: refuse at once, before
/// anything is created, when stdin is not one (a script, a pipe, /dev/null), as runc does. Without this the
/// process would wait on a terminal nobody types into.
pub(crate) fn require_terminal_stdin(what: &str, fix: &str) -> Result<()> {
    if nix::unistd::isatty(0).unwrap_or(false) {
        return Ok(());
    }
    anyhow::bail!(
        "{what}, but stdin is not a terminal, so there is none to relay to the process: run hako from a \
         terminal, pass --console-socket, or {fix}"
    )
}

/// Makes hako the reaper of orphaned descendants, so the container process becomes our child.
pub(crate) fn become_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from).context("becoming a subreaper")
}

/// Blocks the signals hako forwards and SIGCHLD; returns a signalfd that reads them.
pub(crate) fn block_signals() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(*s);
    }
    set.thread_block().context("blocking signals")?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).context("signalfd")
}

fn reap(target: i32) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, c)) => {
                if pid.as_raw() == target {
                    code = Some(c);
                }
            }
            Ok(WaitStatus::Signaled(pid, s, _)) => {
                if pid.as_raw() == target {
                    code = Some(128 + s as i32);
                }
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(_) => {}
        }
    }
}

struct RawMode(Option<termios::Termios>);

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, t);
        }
    }
}

fn copy_winsize(master: &OwnedFd) {
    let mut ws: libc::winsize = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize; TIOCSWINSZ reads it (nix has no wrapper for either).
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Waits for `pid` (our child through the subreaper), forwarding signals and relaying `console`.
pub(crate) fn wait(pid: i32, sfd: SignalFd, console: Option<OwnedFd>) -> Result<i32> {
    let _raw = RawMode(match &console {
        Some(_) if nix::unistd::isatty(0).unwrap_or(false) => {
            let orig = termios::tcgetattr(std::io::stdin()).ok();
            if let Some(o) = &orig {
                let mut raw = o.clone();
                termios::cfmakeraw(&mut raw);
                let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &raw);
            }
            orig
        }
        _ => None,
    });
    if let Some(m) = &console {
        copy_winsize(m);
    }
    let mut exit = reap(pid);
    let mut stdin_open = console.is_some();
    let mut master_open = console.is_some();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if exit.is_some() && !master_open {
            break;
        }
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &console {
            if master_open {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        let timeout = if exit.is_some() { PollTimeout::from(100u16) } else { PollTimeout::NONE };
        match poll(&mut fds, timeout) {
            Ok(0) => break, // exited and the pty is quiet
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e).context("waiting for the container process"),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            while let Ok(Some(info)) = sfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGCHLD {
                    if let Some(c) = reap(pid) {
                        exit = Some(c);
                    }
                } else if sig == libc::SIGWINCH {
                    if let Some(m) = &console {
                        copy_winsize(m);
                    }
                } else if let Ok(s) = Signal::try_from(sig) {
                    let _ = kill(Pid::from_raw(pid), s);
                }
            }
        }
        if let Some(m) = &console {
            let mut i = 1;
            if master_open {
                if ready[i] {
                    match nix::unistd::read(m.as_raw_fd(), &mut buf) {
                        Ok(0) | Err(_) => master_open = false,
                        Ok(n) => {
                            use std::io::Write;
                            let mut out = std::io::stdout().lock();
                            let _ = out.write_all(&buf[..n]);
                            let _ = out.flush();
                        }
                    }
                }
                i += 1;
            }
            if stdin_open && ready.get(i).copied().unwrap_or(false) {
                match nix::unistd::read(0, &mut buf) {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        // End of input: send EOF to the terminal, as a user typing ^D would.
                        let _ = nix::unistd::write(m, &[4u8]);
                    }
                    Ok(n) => {
                        let _ = nix::unistd::write(m, &buf[..n]);
                    }
                }
            }
        }
    }
    Ok(exit.unwrap_or(0))
}

/// Makes a closed stdout end this process quietly, as it ends `ls` or runc (a Go program) when a reader such
/// as `head` stops reading, instead of Rust's ignored SIGPIPE turning each print into a panic. Only for
/// commands that do nothing but print: the others write to pipes of their own (hooks, the VM's helpers),
/// where EPIPE must stay an error they handle.
pub(crate) fn end_quietly_on_a_closed_stdout() {
    // SAFETY: SIG_DFL installs no handler code, so nothing runs in signal context; called before any thread
    // of this process starts.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
}
