//! Reading /proc about processes hako started: whether the process recorded in a state file is still the same
//! live process (a pid can be reused, so its start time is recorded with it), and signalling only a process
//! proven to be that one ([`Owned`]).

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// `pidfd_open(pid, 0)`: a close-on-exec fd that names the process `pid` (nix does not wrap it).
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pidfd_open returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Start time (clock ticks since boot) and state letter of `pid`, from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let (start, state, _) = stat_fields(pid)?;
    Some((start, state))
}

/// Start time, state letter and parent pid of `pid`.
fn stat_fields(pid: i32) -> Option<(u64, char, i32)> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let start = fields.nth(17)?.parse().ok()?;
    Some((start, state, ppid))
}

/// The parent pid of `pid`.
pub fn parent_of(pid: i32) -> Option<i32> {
    stat_fields(pid).map(|f| f.2)
}

/// Whether `pid` is the same live (not zombie) process that started at `start_time`. A start time of 0 (never
/// recorded) proves nothing, so it is never alive: hako must not act on a pid it cannot prove is its own.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    start_time != 0 && matches!(proc_stat(pid), Some((st, state)) if st == start_time && state != 'Z' && state != 'X')
}

/// A live process proven to be the one hako recorded, held through a pidfd where the kernel has them: a signal
/// sent through it reaches that process or, once it has exited, nobody, even if its pid is reused meanwhile.
#[derive(Debug)]
pub struct Owned {
    pid: i32,
    pidfd: Option<OwnedFd>,
}

impl Owned {
    /// `pid` when it is the live process that started at `start_time` (see [`process_alive`]).
    pub fn find(pid: i32, start_time: u64) -> Option<Owned> {
        if pid <= 0 || start_time == 0 {
            return None;
        }
        // The pidfd is taken first and the start time checked after, so the fd names the proven process.
        // Without a pidfd (kernels before 5.3), the start time check alone, with its small window.
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return None,
            Err(_) => None,
        };
        process_alive(pid, start_time).then_some(Owned { pid, pidfd })
    }

    /// A child of the live process `parent` (itself proven by [`Owned::find`]), whose pid `pid` was reported by
    /// that parent: proven by its parent pid (checked after its pidfd is taken), not by a start time.
    pub fn find_child(parent: &Owned, pid: i32) -> Option<Owned> {
        if pid <= 0 {
            return None;
        }
        let pidfd = pidfd_open(pid).ok();
        let alive =
            matches!(stat_fields(pid), Some((_, state, ppid)) if ppid == parent.pid && state != 'Z' && state != 'X');
        (alive && parent.alive()).then_some(Owned { pid, pidfd })
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether it still runs (a zombie does not).
    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((_, s)) if s != 'Z' && s != 'X')
            && self.pidfd.as_ref().is_none_or(|fd| {
                // A pidfd polls readable once its process has exited.
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                let ready = poll(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLIN)], PollTimeout::ZERO);
                ready.unwrap_or(-1) == 0
            })
    }

    /// Sends `signal` to it (ESRCH once it has exited).
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        let r = match &self.pidfd {
            // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo, no flags.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            },
            None => {
                let sig = if signal == 0 { None } else { Some(nix::sys::signal::Signal::try_from(signal)?) };
                return Ok(nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig)?);
            }
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unrecorded_or_wrong_start_time_proves_nothing() {
        let me = std::process::id() as i32;
        let (start, _) = proc_stat(me).unwrap();
        assert!(process_alive(me, start));
        assert!(!process_alive(me, 0), "start time 0 must not mean any process");
        assert!(!process_alive(me, start + 1));
        assert!(Owned::find(me, 0).is_none());
        assert!(Owned::find(me, start + 1).is_none());
        assert!(Owned::find(0, start).is_none());
        assert_eq!(Owned::find(me, start).map(|o| o.pid()), Some(me));
    }

    #[test]
    fn a_proven_process_is_signalled_and_a_child_is_proven_by_its_parent() {
        let mut child = std::process::Command::new("/bin/sleep").arg("100").spawn().unwrap();
        let pid = child.id() as i32;
        let (start, _) = proc_stat(pid).unwrap();
        let me = std::process::id() as i32;
        let parent = Owned::find(me, proc_stat(me).unwrap().0).unwrap();
        assert!(Owned::find_child(&parent, pid).is_some());
        assert!(Owned::find_child(&parent, me).is_none(), "not a child of itself");
        let own = Owned::find(pid, start).unwrap();
        assert!(own.alive());
        own.signal(libc::SIGKILL).unwrap();
        child.wait().unwrap();
        assert!(!own.alive());
        assert!(Owned::find(pid, start).is_none());
    }
}
