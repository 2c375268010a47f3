//! OCI hooks: run each hook of a phase with the container state on its stdin, honouring its timeout (or
//! [`DEFAULT_TIMEOUT_SECS`] when it sets none), draining its stdin and stderr while it runs.
//!
//! The caller decides where a hook runs (the runtime's namespaces for prestart, createRuntime, poststart and
//! poststop; the container's for createContainer and startContainer) by calling [`run`] from the right process,
//! and decides what a failure means (runtime-spec: fatal before the process runs, a warning after).

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStderr, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::Hook;

/// A hook that failed, naming the hook and the phase.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook could not be started.
    #[error("{phase} hook {path}: cannot run it: {source}; check that the hook path exists and is executable")]
    Spawn {
        /// The hook phase.
        phase: String,
        /// The hook path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The hook exited unsuccessfully.
    #[error("{phase} hook {path} failed with {status}{stderr}")]
    Failed {
        /// The hook phase.
        phase: String,
        /// The hook path.
        path: String,
        /// Exit code or signal, in words.
        status: String,
        /// What it wrote on stderr, prefixed with ": " when not empty.
        stderr: String,
    },
    /// The hook ran past its timeout and was killed.
    #[error(
        "{phase} hook {path} did not finish within {} of {secs} s and was killed{}",
        if *defaulted { "hako's default timeout" } else { "its timeout" },
        if *defaulted { "; give the hook a longer \"timeout\" in config.json if it needs one" } else { "" }
    )]
    Timeout {
        /// The hook phase.
        phase: String,
        /// The hook path.
        path: String,
        /// The timeout in seconds.
        secs: i64,
        /// Whether the hook set none and hako's [`DEFAULT_TIMEOUT_SECS`] applied.
        defaulted: bool,
    },
}

/// Runs `hooks` in order with `state` (the runtime-spec state JSON) on stdin; stops at the first failure.
pub fn run(phase: &str, hooks: &[Hook], state: &str) -> Result<(), HookError> {
    for hook in hooks {
        run_one(phase, hook, state)?;
    }
    Ok(())
}

/// How long a hook without a `timeout` may run: runtime-spec sets no limit, but a hook runs while the container's
/// lock is held, so one that never ends would block every later command on the container.
pub const DEFAULT_TIMEOUT_SECS: i64 = 120;

/// How much of a failed hook's stderr its error quotes (the end, where the reason usually is).
const STDERR_TAIL: usize = 4096;

fn run_one(phase: &str, hook: &Hook, state: &str) -> Result<(), HookError> {
    let path = hook.path().to_string_lossy().into_owned();
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::inherit()).stderr(Stdio::piped());
    let mut child =
        cmd.spawn().map_err(|source| HookError::Spawn { phase: phase.into(), path: path.clone(), source })?;
    let (secs, defaulted) = match hook.timeout() {
        Some(t) if t > 0 => (t, false),
        _ => (DEFAULT_TIMEOUT_SECS, true),
    };
    let deadline = Instant::now() + Duration::from_secs(secs as u64);
    // Both pipes are drained while the hook runs: a hook that writes more than a pipe holds on stderr, or does
    // not read a state bigger than a pipe holds, must not block on hako while hako waits for it to exit.
    let mut io = HookIo::new(child.stdin.take(), child.stderr.take(), state.as_bytes());
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Spawn { phase: phase.into(), path, source });
            }
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout { phase: phase.into(), path, secs, defaulted });
        }
        // Wakes on stdin room, stderr data or the end of both, else every 20 ms to see whether the hook exited.
        io.pump((deadline - now).min(Duration::from_millis(20)));
    };
    // What is left in the pipe; a process the hook left behind may hold stderr open, so never wait for its end.
    io.drain_stderr();
    if status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&io.tail);
    let err = err.trim();
    let status = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(s)) => format!("signal {s}"),
        _ => "an unknown status".into(),
    };
    Err(HookError::Failed {
        phase: phase.into(),
        path,
        status,
        stderr: if err.is_empty() {
            String::new()
        } else if io.dropped > 0 {
            format!(": ...{err}")
        } else {
            format!(": {err}")
        },
    })
}

/// The hook's stdin (the state, written as the hook reads it) and stderr (read as it comes, keeping the tail),
/// both non-blocking.
struct HookIo<'a> {
    stdin: Option<ChildStdin>,
    stderr: Option<ChildStderr>,
    state: &'a [u8],
    tail: Vec<u8>,
    dropped: usize,
    pause: Duration,
}

impl<'a> HookIo<'a> {
    fn new(stdin: Option<ChildStdin>, stderr: Option<ChildStderr>, state: &'a [u8]) -> HookIo<'a> {
        let nonblocking = |fd: BorrowedFd<'_>| {
            let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map(OFlag::from_bits_truncate);
            flags.and_then(|f| fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(f | OFlag::O_NONBLOCK))).is_ok()
        };
        // A pipe that cannot be made non-blocking is closed rather than risk blocking on it.
        let stdin = stdin.filter(|p| !state.is_empty() && nonblocking(p.as_fd()));
        let stderr = stderr.filter(|p| nonblocking(p.as_fd()));
        HookIo { stdin, stderr, state, tail: Vec::new(), dropped: 0, pause: Duration::from_micros(200) }
    }

    /// Waits up to `wait` for either pipe to be ready, then moves what it can.
    fn pump(&mut self, wait: Duration) {
        let mut fds = Vec::with_capacity(2);
        if let Some(p) = &self.stdin {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLOUT));
        }
        if let Some(p) = &self.stderr {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        if fds.is_empty() {
            // Both pipes are done (the hook usually exits right after closing them): poll for its exit quickly
            // at first, then less often.
            std::thread::sleep(self.pause.min(wait));
            self.pause = (self.pause * 2).min(Duration::from_millis(20));
        } else {
            let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
        drop(fds);
        self.write_stdin();
        self.drain_stderr();
    }

    fn write_stdin(&mut self) {
        let Some(p) = self.stdin.as_mut() else { return };
        while !self.state.is_empty() {
            match p.write(self.state) {
                Ok(0) => break,
                Ok(n) => self.state = &self.state[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // The hook closed its stdin (it need not read it): that is not a failure.
                Err(_) => break,
            }
        }
        // All written, or nobody reads: closing it gives the hook its end-of-file.
        self.stdin = None;
    }

    fn drain_stderr(&mut self) {
        let Some(p) = self.stderr.as_mut() else { return };
        let mut buf = [0u8; 16384];
        loop {
            match p.read(&mut buf) {
                Ok(0) => {
                    self.stderr = None;
                    return;
                }
                Ok(n) => {
                    self.tail.extend_from_slice(&buf[..n]);
                    if self.tail.len() > STDERR_TAIL {
                        let cut = self.tail.len() - STDERR_TAIL;
                        self.tail.drain(..cut);
                        self.dropped += cut;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.stderr = None;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn sh(script: &str, timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default().path("/bin/sh").args(vec!["sh".into(), "-c".into(), script.into()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn hook_gets_state_on_stdin() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let hook = sh(&format!("cat > {}", out.display()), None);
        run("poststart", &[hook], r#"{"id":"x"}"#).unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), r#"{"id":"x"}"#);
    }

    #[test]
    fn failure_names_phase_status_and_stderr() {
        let err = run("createRuntime", &[sh("echo boom >&2; exit 3", None)], "{}").unwrap_err().to_string();
        assert!(err.contains("createRuntime") && err.contains("exit status 3") && err.contains("boom"), "{err}");
    }

    #[test]
    fn a_hook_flooding_stderr_fails_with_the_tail_of_it() {
        let script = "head -c 1048576 /dev/zero | tr '\\0' x >&2; echo the-reason >&2; exit 1";
        let err = run("prestart", &[sh(script, None)], "{}").unwrap_err().to_string();
        assert!(err.contains("exit status 1") && err.ends_with("the-reason"), "{}", &err[..200.min(err.len())]);
        assert!(err.len() < 5000, "the whole stderr was quoted: {} bytes", err.len());
    }

    #[test]
    fn a_hook_that_never_reads_a_big_state_still_runs_and_times_out() {
        let big = format!("{{\"annotations\":\"{}\"}}", "y".repeat(1 << 20));
        run("createRuntime", &[sh("exit 0", None)], &big).unwrap();
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        run("createRuntime", &[sh(&format!("wc -c > {}", out.display()), None)], &big).unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap().trim(), big.len().to_string());
        let err = run("prestart", &[sh("sleep 30", Some(1))], &big).unwrap_err();
        assert!(matches!(err, HookError::Timeout { secs: 1, defaulted: false, .. }), "{err}");
    }

    #[test]
    fn a_hook_without_timeout_gets_the_default_one_named_in_the_error() {
        let e = HookError::Timeout { phase: "prestart".into(), path: "/h".into(), secs: 120, defaulted: true };
        let e = e.to_string();
        assert!(e.contains("hako's default timeout of 120 s") && e.contains("\"timeout\""), "{e}");
    }

    #[test]
    fn timeout_kills_the_hook() {
        let t = Instant::now();
        let err = run("prestart", &[sh("sleep 30", Some(1))], "{}").unwrap_err();
        assert!(matches!(err, HookError::Timeout { secs: 1, .. }), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
