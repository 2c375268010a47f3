//! OCI hooks: run each hook of a phase with the container state on its stdin, honouring its timeout.
//!
//! The caller decides where a hook runs (the runtime's namespaces for prestart, createRuntime, poststart and
//! poststop; the container's for createContainer and startContainer) by calling [`run`] from the right process,
//! and decides what a failure means (runtime-spec: fatal before the process runs, a warning after).

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    #[error("{phase} hook {path} did not finish within its timeout of {secs} s and was killed")]
    Timeout {
        /// The hook phase.
        phase: String,
        /// The hook path.
        path: String,
        /// The timeout in seconds.
        secs: i64,
    },
}

/// Runs `hooks` in order with `state` (the runtime-spec state JSON) on stdin; stops at the first failure.
pub fn run(phase: &str, hooks: &[Hook], state: &str) -> Result<(), HookError> {
    for hook in hooks {
        run_one(phase, hook, state)?;
    }
    Ok(())
}

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
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin closes the pipe early: that is not a failure.
        let _ = stdin.write_all(state.as_bytes());
    }
    let mut stderr = child.stderr.take();
    let deadline = hook.timeout().filter(|t| *t > 0).map(|t| (t, Instant::now() + Duration::from_secs(t as u64)));
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(source) => return Err(HookError::Spawn { phase: phase.into(), path, source }),
        }
        if let Some((secs, at)) = deadline {
            if Instant::now() >= at {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout { phase: phase.into(), path, secs });
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    if let Some(s) = stderr.as_mut() {
        let _ = s.take(4096).read_to_string(&mut err);
    }
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
        stderr: if err.is_empty() { String::new() } else { format!(": {err}") },
    })
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
    fn timeout_kills_the_hook() {
        let t = Instant::now();
        let err = run("prestart", &[sh("sleep 30", Some(1))], "{}").unwrap_err();
        assert!(matches!(err, HookError::Timeout { secs: 1, .. }), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
