//! Just enough of QEMU's machine protocol (QMP) to save a VM as a template and to start one from it: one
//! command at a time, events skipped, and a file descriptor passed along with a command (`getfd`).

use std::io::{BufRead, BufReader, IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde_json::{json, Value};

use crate::VmError;

/// A QMP connection in command mode.
pub struct Qmp {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    deadline: Instant,
}

fn broken(what: impl std::fmt::Display) -> VmError {
    VmError::Boot(format!("QEMU's monitor: {what}"))
}

impl Qmp {
    /// Reads QEMU's greeting and leaves negotiation mode; every later read ends by `deadline`.
    pub fn new(stream: UnixStream, deadline: Instant) -> Result<Qmp, VmError> {
        let reader = BufReader::new(stream.try_clone().map_err(broken)?);
        let mut q = Qmp { stream, reader, deadline };
        let greeting = q.line()?;
        if greeting.get("QMP").is_none() {
            return Err(broken(format!("expected a greeting, got {greeting}")));
        }
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    fn line(&mut self) -> Result<Value, VmError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(broken("no answer in time"));
        }
        self.stream.set_read_timeout(Some(left)).map_err(broken)?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(broken("QEMU closed the connection")),
            Ok(_) => serde_json::from_str(&line).map_err(|e| broken(format!("bad answer {line:?}: {e}"))),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Err(broken("no answer in time"))
            }
            Err(e) => Err(broken(e)),
        }
    }

    fn answer(&mut self, command: &str) -> Result<Value, VmError> {
        loop {
            let v = self.line()?;
            if v.get("event").is_some() {
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            let desc = v.pointer("/error/desc").and_then(Value::as_str).unwrap_or("no description");
            return Err(broken(format!("{command} failed: {desc}")));
        }
    }

    fn request(command: &str, arguments: Option<Value>) -> Vec<u8> {
        let mut msg = match arguments {
            Some(a) => json!({"execute": command, "arguments": a}),
            None => json!({"execute": command}),
        }
        .to_string()
        .into_bytes();
        msg.push(b'\n');
        msg
    }

    /// Runs `command` and returns its "return" value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, VmError> {
        self.stream.write_all(&Self::request(command, arguments)).map_err(broken)?;
        self.answer(command)
    }

    /// Turns on the `x-ignore-shared` migration capability: a save leaves guest RAM that is a shared file
    /// mapping out of the stream, and a load expects it to be there already (VM templates).
    pub fn ignore_shared_memory(&mut self) -> Result<(), VmError> {
        self.execute(
            "migrate-set-capabilities",
            Some(json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]})),
        )
        .map(drop)
    }

    /// Hands `fd` to QEMU under `name` (the `getfd` command with the descriptor attached).
    pub fn pass_fd(&mut self, name: &str, fd: BorrowedFd<'_>) -> Result<(), VmError> {
        let msg = Self::request("getfd", Some(json!({"fdname": name})));
        let fds = [fd.as_raw_fd()];
        let sent = sendmsg::<()>(
            self.stream.as_raw_fd(),
            &[IoSlice::new(&msg)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(broken)?;
        if sent != msg.len() {
            self.stream.write_all(&msg[sent..]).map_err(broken)?;
        }
        self.answer("getfd").map(drop)
    }

    /// Polls `query` until `done` says the status it returns is final.
    pub fn poll(
        &mut self,
        query: &str,
        mut done: impl FnMut(&Value) -> Result<bool, VmError>,
    ) -> Result<Value, VmError> {
        loop {
            let v = self.execute(query, None)?;
            if done(&v)? {
                return Ok(v);
            }
            if Instant::now() >= self.deadline {
                return Err(broken(format!("{query} still says {v} at the deadline")));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake QEMU on the other end of a socket pair: greets, then answers each command from `script`.
    fn fake(script: Vec<&'static str>) -> (Qmp, std::thread::JoinHandle<Vec<String>>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut w = theirs.try_clone().unwrap();
            let mut r = BufReader::new(theirs);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n").unwrap();
            let mut seen = Vec::new();
            for answer in script {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                seen.push(line.trim().to_string());
                w.write_all(answer.as_bytes()).unwrap();
            }
            seen
        });
        let q = Qmp::new(ours, Instant::now() + Duration::from_secs(10)).unwrap();
        (q, t)
    }

    #[test]
    fn commands_skip_events_and_errors_carry_qemus_words() {
        let (mut q, t) = fake(vec![
            "{\"return\": {}}\n",
            "{\"event\": \"STOP\"}\n{\"return\": {\"status\": \"paused\"}}\n",
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such thing\"}}\n",
        ]);
        assert_eq!(q.execute("query-status", None).unwrap()["status"], "paused");
        let e = q.execute("migrate", Some(json!({"uri": "fd:x"}))).unwrap_err().to_string();
        assert!(e.contains("migrate failed: no such thing"), "{e}");
        drop(q);
        let seen: Vec<Value> = t.join().unwrap().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(seen[0], json!({"execute": "qmp_capabilities"}));
        assert_eq!(seen[2], json!({"execute": "migrate", "arguments": {"uri": "fd:x"}}));
    }

    #[test]
    fn polling_stops_when_done_and_a_closed_monitor_is_an_error() {
        let (mut q, _t) = fake(vec![
            "{\"return\": {}}\n",
            "{\"return\": {\"status\": \"inmigrate\"}}\n",
            "{\"return\": {\"status\": \"paused\"}}\n",
        ]);
        let v = q.poll("query-status", |v| Ok(v["status"] != "inmigrate")).unwrap();
        assert_eq!(v["status"], "paused");
        _t.join().unwrap();
        let e = q.execute("cont", None).unwrap_err().to_string();
        // Closed, broken pipe or reset, by timing: an error about the monitor either way.
        assert!(e.starts_with("QEMU's monitor: "), "{e}");
    }
}
