//! The protocol between hako on the host (the VM supervisor, `hako-vm`) and hako's agent in the guest
//! (`hako-agent`), carried over one byte stream (a virtio-serial port, or vsock where the host has it).
//!
//! **Framing.** Every frame is a 4-byte big-endian length of what follows, a 1-byte kind, and the payload:
//! kind 0 is a JSON [`Message`]; kind 1 is stdio data (4-byte big-endian stream id, then bytes); kind 2 is the
//! end of a stdio stream (4-byte stream id). Frames of all kinds interleave freely, so a slow reader of one
//! stream never blocks control messages of another.
//!
//! **Conversation.** The agent speaks first with [`Message::Hello`] carrying [`VERSION`]; the host refuses a
//! version it does not speak. The host then sends [`Message::Request`]s, each with a fresh `req` number; the
//! agent answers each with exactly one [`Message::Response`] carrying the same number, possibly much later
//! ([`Op::Wait`] is answered when the process exits) and in any order. Unsolicited news travels as
//! [`Message::Event`].
//!
//! **Templates.** A VM may be started from a saved copy of another VM that booted and said hello (see
//! hako-vm's `template` module). The host that saves it sends [`Op::Seal`] last; a VM restored from it says
//! no hello (it said it before it was saved) and refuses everything until the host sends [`Op::Restore`]
//! with the time and fresh entropy, so that no two VMs restored from one template share a random state.
//!
//! **Semantics of each operation** are documented on [`Op`]. Nothing here depends on a backend: this crate is
//! shared by the host and the guest and must stay free of host-only dependencies.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. Bump it on any incompatible change.
pub const VERSION: u32 = 4;

/// The virtio-serial port name the agent looks for (`/sys/class/virtio-ports/*/name`).
pub const PORT_NAME: &str = "hako.ctl";

/// The largest frame either side accepts (the config of a container is the largest message).
pub const MAX_FRAME: usize = 8 << 20;

/// How a process's stdio is connected: stream ids chosen by the host, or none (the stream is discarded/empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stdio {
    /// The process has a pty: `stdout` carries its output, `stdin` its input, `stderr` is unused.
    pub terminal: bool,
    /// Stream carrying the host's input to the process.
    pub stdin: Option<u32>,
    /// Stream carrying the process's stdout (or the pty's output) to the host.
    pub stdout: Option<u32>,
    /// Stream carrying the process's stderr to the host.
    pub stderr: Option<u32>,
}

/// A host directory shared into the guest (a 9p mount tag, or a virtio-fs tag) that the agent mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The mount tag the VM was given for it: a 9p tag (mounted
    /// `trans=virtio,version=9p2000.L,msize=512000,cache=mmap`), or `virtiofs:TAG` for a virtio-fs device with
    /// tag TAG.
    pub tag: String,
    /// Where the agent mounts it in the guest.
    pub guest_path: String,
    /// Mount it read-only.
    pub readonly: bool,
}

/// A network interface the VM took over from the engine's network namespace (virtio-net device number `i`
/// for the `i`-th entry): the agent gives the guest's interface this name, MAC address, MTU, addresses and
/// routes, in the guest's own network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetIf {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// MTU.
    pub mtu: u32,
    /// Addresses with prefix length, IPv4 (`10.88.0.5/16`) or IPv6 (`fd00::5/64`).
    pub addresses: Vec<String>,
    /// Routes through this interface.
    pub routes: Vec<NetRoute>,
}

/// The MAC address a VM's `i`-th network device starts with (`52:54:00:68:6b:NN`, QEMU's prefix): how the
/// agent tells the devices apart whatever order the guest found them in, before it gives each the MAC
/// address of the interface it stands for.
pub fn device_mac(i: usize) -> String {
    format!("52:54:00:68:6b:{:02x}", i & 0xff)
}

/// A route: `default` or a prefix (`10.1.0.0/16`), through a gateway or straight on the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRoute {
    /// `default`, or an address with prefix length.
    pub destination: String,
    /// The gateway's address, if any.
    pub gateway: Option<String>,
}

/// One operation the host asks of the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Creates container `id` from `config` (an OCI runtime config whose `root.path` and bind sources are paths
    /// in the guest) with process isolation inside the guest; its process waits for [`Op::Start`].
    /// Replies [`Reply::Created`] with the process's pid in the guest.
    Create {
        /// Container id.
        id: String,
        /// The OCI config, as JSON.
        config: serde_json::Value,
        /// Host directories to mount first (the rootfs, bind-mount sources), in order.
        shares: Vec<Share>,
        /// Where the process's stdio goes.
        stdio: Stdio,
        /// The network interfaces the VM took over, to set up before the container (which then shares the
        /// guest's network namespace); empty for none.
        #[serde(default)]
        net: Vec<NetIf>,
        /// The pod's sandbox container in this VM, for a container of a pod (a Kubernetes pod is one VM): each
        /// namespace of `config` that names a path joins the sandbox's namespace of that type in the guest
        /// (the host's paths mean nothing there). None for a container with a VM of its own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sandbox: Option<String>,
    },
    /// Lets the created process of `id` run. Replies [`Reply::Done`] once it runs (or the error of its
    /// startContainer hooks or execve).
    Start {
        /// Container id.
        id: String,
    },
    /// Runs another process in running container `id`; `process` is an OCI process object. Replies
    /// [`Reply::Created`] once it runs.
    Exec {
        /// Container id.
        id: String,
        /// Name of this process for later `Wait`, `Kill` and `Resize`.
        exec_id: String,
        /// The OCI process, as JSON.
        process: serde_json::Value,
        /// Where the process's stdio goes.
        stdio: Stdio,
    },
    /// Sends `signal` to the container's process (`exec_id` None) or an exec'd one; with `all`, to every
    /// process of the container. Replies [`Reply::Done`].
    Kill {
        /// Container id.
        id: String,
        /// The exec'd process, or None for the container's own.
        exec_id: Option<String>,
        /// Signal number.
        signal: i32,
        /// Every process of the container.
        all: bool,
    },
    /// Waits until the process exits and its stdout/stderr streams were sent to the end; replies
    /// [`Reply::Exited`]. Never times out; several waits on one process all get the answer.
    Wait {
        /// Container id.
        id: String,
        /// The exec'd process, or None for the container's own.
        exec_id: Option<String>,
    },
    /// Pids (in the guest) of every process of the container; replies [`Reply::Pids`].
    Ps {
        /// Container id.
        id: String,
    },
    /// Resource usage in the `runc events --stats` format; replies [`Reply::Stats`].
    Stats {
        /// Container id.
        id: String,
    },
    /// Changes the pty size of a process with a terminal. Replies [`Reply::Done`].
    Resize {
        /// Container id.
        id: String,
        /// The exec'd process, or None for the container's own.
        exec_id: Option<String>,
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Freezes the container's processes. Replies [`Reply::Done`].
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaws them. Replies [`Reply::Done`].
    Resume {
        /// Container id.
        id: String,
    },
    /// New resource limits (an OCI `linux.resources` object). Replies [`Reply::Done`].
    Update {
        /// Container id.
        id: String,
        /// The resources, as JSON.
        resources: serde_json::Value,
    },
    /// Kills what still runs of the container and removes it from the guest. Replies [`Reply::Done`].
    Delete {
        /// Container id.
        id: String,
    },
    /// Syncs and powers the guest off; the reply may not arrive before the VM stops.
    Shutdown,
    /// The host is about to save this VM as a template: from now on the agent refuses every operation but
    /// [`Op::Restore`]. Replies [`Reply::Done`]; sent while no container exists.
    Seal,
    /// The VM was restored from a template: the agent mixes `entropy` into the kernel's random pool and
    /// reseeds it, sets the clock to `unix_secs`.`nanos` and serves again. Replies [`Reply::Done`].
    Restore {
        /// Seconds since the Unix epoch on the host.
        unix_secs: i64,
        /// Nanoseconds within that second.
        nanos: u32,
        /// Random bytes from the host (32 to 512).
        entropy: Vec<u8>,
    },
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The operation is done.
    Done,
    /// A process exists; `pid` is its pid in the guest.
    Created {
        /// Pid in the guest.
        pid: i32,
    },
    /// The process exited: `status` as a shell reports it (the exit code, or 128 + the signal).
    Exited {
        /// Exit status.
        status: i32,
    },
    /// Pids in the guest.
    Pids {
        /// The pids.
        pids: Vec<i32>,
    },
    /// Statistics.
    Stats {
        /// The `data` of a runc stats event.
        data: serde_json::Value,
    },
}

/// News the agent sends unasked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A process exited (also answered to every pending `Wait`).
    Exited {
        /// Container id.
        id: String,
        /// The exec'd process, or None for the container's own.
        exec_id: Option<String>,
        /// Exit status.
        status: i32,
    },
    /// A line for the host's log (the agent's own warnings).
    Log {
        /// The text.
        msg: String,
    },
}

/// A control message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// The agent's first message.
    Hello {
        /// [`VERSION`] of the agent.
        version: u32,
        /// The agent's build, for logs.
        agent: String,
    },
    /// host -> agent.
    Request {
        /// Request number, echoed in the response.
        req: u64,
        /// What to do.
        #[serde(flatten)]
        op: Op,
    },
    /// agent -> host.
    Response {
        /// The request's number.
        req: u64,
        /// The answer, or an error text naming the object and the problem.
        result: Result<Reply, String>,
    },
    /// agent -> host.
    Event {
        /// What happened.
        #[serde(flatten)]
        event: Event,
    },
}

/// One frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A control message.
    Msg(Message),
    /// Bytes of a stdio stream.
    Data {
        /// Stream id.
        stream: u32,
        /// The bytes (never empty).
        data: Vec<u8>,
    },
    /// The end of a stdio stream.
    Eof {
        /// Stream id.
        stream: u32,
    },
}

/// Framing errors.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The stream failed or ended.
    #[error("hako protocol: {0}")]
    Io(#[from] io::Error),
    /// A control message was not valid JSON for [`Message`].
    #[error("hako protocol: bad message: {0}")]
    Json(#[from] serde_json::Error),
    /// A frame broke the framing rules.
    #[error("hako protocol: bad frame: {0}")]
    Frame(String),
    /// The peer speaks another version.
    #[error("hako protocol: the guest agent speaks version {theirs}, this hako speaks {VERSION}: rebuild the guest assets with `scripts/vm-assets` (the agent and hako must come from the same build)")]
    Version {
        /// The peer's version.
        theirs: u32,
    },
}

const KIND_MSG: u8 = 0;
const KIND_DATA: u8 = 1;
const KIND_EOF: u8 = 2;

/// Encodes a frame into bytes (one write per frame keeps frames whole on a shared stream).
pub fn encode(frame: &Frame) -> Result<Vec<u8>, ProtoError> {
    let (kind, body) = match frame {
        Frame::Msg(m) => (KIND_MSG, serde_json::to_vec(m)?),
        Frame::Data { stream, data } => {
            let mut b = stream.to_be_bytes().to_vec();
            b.extend_from_slice(data);
            (KIND_DATA, b)
        }
        Frame::Eof { stream } => (KIND_EOF, stream.to_be_bytes().to_vec()),
    };
    if body.len() + 1 > MAX_FRAME {
        return Err(ProtoError::Frame(format!("frame of {} bytes is over the limit of {MAX_FRAME}", body.len())));
    }
    let mut out = Vec::with_capacity(body.len() + 5);
    out.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, frame: &Frame) -> Result<(), ProtoError> {
    w.write_all(&encode(frame)?)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame; `Ok(None)` at a clean end of stream between frames. A length outside 1..=[`MAX_FRAME`] is
/// refused before anything else is read, and the body is allocated as its bytes arrive, never ahead of them.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, ProtoError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(ProtoError::Frame(format!("length {len} is out of range 1..={MAX_FRAME}")));
    }
    // The length is the peer's claim: read what arrives instead of allocating `len` bytes up front, so that a
    // header announcing MAX_FRAME followed by nothing costs nothing.
    let mut body = Vec::new();
    r.take(len as u64).read_to_end(&mut body)?;
    if body.len() < len {
        return Err(ProtoError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("a frame of {len} bytes ended after {}", body.len()),
        )));
    }
    let stream = |b: &[u8]| -> Result<u32, ProtoError> {
        b.get(..4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or_else(|| ProtoError::Frame("stdio frame without a stream id".into()))
    };
    Ok(Some(match body[0] {
        KIND_MSG => Frame::Msg(serde_json::from_slice(&body[1..])?),
        KIND_DATA => Frame::Data { stream: stream(&body[1..])?, data: body[5..].to_vec() },
        KIND_EOF => Frame::Eof { stream: stream(&body[1..])? },
        k => return Err(ProtoError::Frame(format!("unknown kind {k}"))),
    }))
}

/// Checks the agent's hello.
pub fn check_hello(m: &Message) -> Result<(), ProtoError> {
    match m {
        Message::Hello { version, .. } if *version == VERSION => Ok(()),
        Message::Hello { version, .. } => Err(ProtoError::Version { theirs: *version }),
        other => Err(ProtoError::Frame(format!("expected hello, got {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(f: Frame) {
        let bytes = encode(&f).unwrap();
        let mut r = &bytes[..];
        assert_eq!(read_frame(&mut r).unwrap(), Some(f));
        assert!(r.is_empty());
    }

    #[test]
    fn frames_roundtrip() {
        roundtrip(Frame::Msg(Message::Hello { version: VERSION, agent: "t".into() }));
        roundtrip(Frame::Msg(Message::Request {
            req: 7,
            op: Op::Kill { id: "c".into(), exec_id: Some("e".into()), signal: 15, all: false },
        }));
        roundtrip(Frame::Msg(Message::Request {
            req: 8,
            op: Op::Restore { unix_secs: 1_796_000_000, nanos: 5, entropy: vec![1, 2, 3] },
        }));
        roundtrip(Frame::Msg(Message::Request { req: 9, op: Op::Seal }));
        roundtrip(Frame::Msg(Message::Response { req: 7, result: Ok(Reply::Exited { status: 137 }) }));
        roundtrip(Frame::Msg(Message::Response { req: 8, result: Err("container c does not exist".into()) }));
        roundtrip(Frame::Msg(Message::Event { event: Event::Exited { id: "c".into(), exec_id: None, status: 0 } }));
        roundtrip(Frame::Data { stream: 3, data: b"hello\n".to_vec() });
        roundtrip(Frame::Eof { stream: 3 });
    }

    #[test]
    fn requests_are_flat_json() {
        let m = Message::Request { req: 1, op: Op::Start { id: "c".into() } };
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(v, serde_json::json!({"type": "request", "req": 1, "op": "start", "id": "c"}));
    }

    #[test]
    fn truncated_and_oversized_frames_are_errors() {
        let bytes = encode(&Frame::Data { stream: 1, data: vec![1; 10] }).unwrap();
        assert!(read_frame(&mut &bytes[..8]).is_err());
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(read_frame(&mut &huge[..]).unwrap_err().to_string().contains("out of range"));
        assert_eq!(read_frame(&mut &[][..]).unwrap(), None);
    }

    #[test]
    fn version_mismatch_names_the_fix() {
        let e = check_hello(&Message::Hello { version: VERSION + 1, agent: "x".into() }).unwrap_err().to_string();
        assert!(e.contains("vm-assets"), "{e}");
    }
}
