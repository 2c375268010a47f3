//! The supervisor: a detached hako process per container that holds the HCS handles between
//! `create` and `delete`, as runhcs's `vmshim` and `shim` do.
//!
//! Why: documents are sent with `ShouldTerminateOnLastHandleClosed`, so a compute system lives
//! only while someone holds a handle to it, and a utility VM must outlive the `hako create`
//! process that made it. `hako create` writes the state, spawns the supervisor (the hako binary
//! with a hidden subcommand, see [`SUPERVISOR_SUBCOMMAND`]) and waits until it reports the
//! container created. The supervisor then:
//! 1. for Hyper-V and LCOW: copies the VM scratch from its template, grants the VM access to
//!    its disks, creates and starts the utility VM `<id>@vm`, sends the guest requests;
//! 2. creates and starts the container's compute system;
//! 3. serves requests on a message-mode named pipe
//!    `\\.\pipe\ProtectedPrefix\Administrators\hako-<unique>` (only administrators can create
//!    pipes there, so no one else can pose as the supervisor): `start` creates the init process
//!    and relays the supervisor's stdio (inherited from `hako create`) to it; `signal`,
//!    `resize`, `pause`, `resume`, `state`; `delete` stops the container and the VM and exits;
//! 4. records the init process's exit code in the state when it exits.
//!
//! This module holds the protocol (every host); the pipe server and client are Windows-only.

#[cfg(windows)]
mod server;

use serde::{Deserialize, Serialize};

#[cfg(windows)]
pub use server::{call, run};

/// The hidden subcommand of the hako binary that runs the supervisor:
/// `hako hcs-supervisor --root ROOT --id ID`.
pub const SUPERVISOR_SUBCOMMAND: &str = "hcs-supervisor";

/// The largest message on the pipe.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The supervisor's pipe for a container, unique per supervisor.
pub fn pipe_name(unique: &str) -> String {
    format!(r"\\.\pipe\ProtectedPrefix\Administrators\hako-{}", unique)
}

/// A request to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Is it up?
    Ping,
    /// Create the init process and relay its stdio.
    Start,
    /// Send a signal (runc name or number) to the init process, or terminate for SIGKILL.
    Signal {
        /// The signal, e.g. `SIGTERM` or `9`.
        signal: String,
        /// Signal every process of the container (terminate the compute system).
        all: bool,
    },
    /// Resize the init process's console.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// Pause the container.
    Pause,
    /// Resume it.
    Resume,
    /// Stop everything and exit.
    Delete {
        /// Also when the init process still runs.
        force: bool,
    },
}

/// The supervisor's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The init process id, after `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

impl Reply {
    /// Success.
    pub fn ok() -> Self {
        Reply { ok: true, ..Reply::default() }
    }

    /// Failure with a message.
    pub fn error(message: impl Into<String>) -> Self {
        Reply { ok: false, error: message.into(), pid: None }
    }
}

/// Encodes a message for the pipe (JSON), refusing oversized ones.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, String> {
    let bytes = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    if bytes.len() > MAX_MESSAGE {
        return Err(format!("message of {} bytes exceeds the pipe limit of {}", bytes.len(), MAX_MESSAGE));
    }
    Ok(bytes)
}

/// Decodes a message read from the pipe.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("malformed supervisor message: {}", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_with_an_op_tag() {
        let reqs = vec![
            Request::Ping,
            Request::Start,
            Request::Signal { signal: "SIGTERM".into(), all: false },
            Request::Resize { width: 120, height: 40 },
            Request::Pause,
            Request::Resume,
            Request::Delete { force: true },
        ];
        for r in reqs {
            let bytes = encode(&r).unwrap();
            let back: Request = decode(&bytes).unwrap();
            assert_eq!(back, r);
        }
        assert_eq!(
            String::from_utf8(encode(&Request::Resize { width: 80, height: 24 }).unwrap()).unwrap(),
            r#"{"op":"resize","width":80,"height":24}"#
        );
        assert!(decode::<Request>(br#"{"op":"format-disk"}"#).unwrap_err().contains("malformed supervisor message"));
    }

    #[test]
    fn replies_and_limits() {
        let r: Reply = decode(&encode(&Reply { ok: true, error: String::new(), pid: Some(7) }).unwrap()).unwrap();
        assert_eq!(r.pid, Some(7));
        assert_eq!(String::from_utf8(encode(&Reply::ok()).unwrap()).unwrap(), r#"{"ok":true}"#);
        let big = Reply::error("x".repeat(MAX_MESSAGE));
        assert!(encode(&big).unwrap_err().contains("exceeds the pipe limit"));
        assert_eq!(pipe_name("abc"), r"\\.\pipe\ProtectedPrefix\Administrators\hako-abc");
    }
}
