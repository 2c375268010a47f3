//! A connection to a VM's supervisor (`<state dir>/vm.sock`), speaking hako-proto: what CLI commands and the
//! per-process shadows use to reach the agent. Also the two exchanges a supervisor (or a template maker) has
//! with the agent on the VM's port itself before it relays anything: [`hello`] and [`call_port`].

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use hako_proto::{check_hello, read_frame, write_frame, Frame, Message, Op, Reply};

use crate::VmError;

/// The supervisor's socket in a container's state directory.
pub const API_SOCKET: &str = "vm.sock";

/// One connection.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    next_req: u64,
}

impl Client {
    /// Connects to the supervisor of the container whose state directory is `dir`.
    pub fn connect(dir: &Path) -> Result<Client, VmError> {
        let path = dir.join(API_SOCKET);
        let stream = UnixStream::connect(&path).map_err(|e| {
            VmError::Supervisor(format!(
                "cannot reach the VM supervisor at {}: {e}; the VM is gone (delete the container with --force)",
                path.display()
            ))
        })?;
        Ok(Client { stream, next_req: 1 })
    }

    /// A second handle on the same connection (for a reader thread).
    pub fn try_clone_stream(&self) -> Result<UnixStream, VmError> {
        self.stream.try_clone().map_err(|e| VmError::Supervisor(format!("supervisor connection: {e}")))
    }

    /// Sends a request; returns its number.
    pub fn send(&mut self, op: Op) -> Result<u64, VmError> {
        let req = self.next_req;
        self.next_req += 1;
        write_frame(&mut self.stream, &Frame::Msg(Message::Request { req, op }))?;
        Ok(req)
    }

    /// Sends any frame (stdio data).
    pub fn send_frame(&mut self, f: &Frame) -> Result<(), VmError> {
        write_frame(&mut self.stream, f)?;
        Ok(())
    }

    /// Reads the next frame; `None` when the supervisor closed the connection.
    pub fn recv(&mut self) -> Result<Option<Frame>, VmError> {
        Ok(read_frame(&mut self.stream)?)
    }

    /// Sends `op` and waits for its answer, ignoring anything else that arrives meanwhile.
    pub fn call(&mut self, op: Op) -> Result<Reply, VmError> {
        let req = self.send(op)?;
        loop {
            match self.recv()? {
                Some(Frame::Msg(Message::Response { req: r, result })) if r == req => {
                    return result.map_err(VmError::Agent);
                }
                Some(_) => {}
                None => {
                    return Err(VmError::Supervisor(
                        "the VM supervisor closed the connection before answering: the VM stopped".into(),
                    ))
                }
            }
        }
    }
}

/// Bounds reads on `port` by `deadline` (at least 1 ms from now).
fn read_until(port: &UnixStream, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    port.set_read_timeout(Some(left)).ok();
}

/// Why the agent said no hello.
#[derive(Debug)]
pub enum NoHello {
    /// Nothing came by the deadline (or reading the port failed): the VM did not boot in time.
    Silent(String),
    /// The port closed, or the agent said something else or speaks another version.
    Wrong(String),
}

impl std::fmt::Display for NoHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoHello::Silent(e) => write!(f, "no hello from the agent ({e})"),
            NoHello::Wrong(e) => f.write_str(e),
        }
    }
}

/// Waits until `deadline` for the agent's hello on the VM's port.
pub fn hello(port: &mut UnixStream, deadline: Instant) -> Result<(), NoHello> {
    read_until(port, deadline);
    let r = match read_frame(port) {
        Ok(Some(Frame::Msg(m))) => check_hello(&m).map_err(|e| NoHello::Wrong(e.to_string())),
        Ok(_) => Err(NoHello::Wrong("the guest closed the protocol port before its agent said hello".into())),
        Err(e) => Err(NoHello::Silent(e.to_string())),
    };
    port.set_read_timeout(None).ok();
    r
}

/// Sends `op` on the VM's port as request 0 and waits until `deadline` for its answer (skipping the agent's
/// events).
pub fn call_port(port: &mut UnixStream, op: Op, deadline: Instant) -> Result<(), String> {
    let what = match &op {
        Op::Seal => "seal",
        Op::Restore { .. } => "restore",
        _ => "request",
    };
    write_frame(port, &Frame::Msg(Message::Request { req: 0, op })).map_err(|e| format!("sending {what}: {e}"))?;
    read_until(port, deadline);
    let r = loop {
        match read_frame(port) {
            Ok(Some(Frame::Msg(Message::Response { req: 0, result }))) => {
                break result.map(drop).map_err(|e| format!("the agent refused {what}: {e}"))
            }
            Ok(Some(_)) => continue,
            Ok(None) => break Err(format!("the guest closed the protocol port before it answered {what}")),
            Err(e) => break Err(format!("no answer to {what} ({e})")),
        }
    };
    port.set_read_timeout(None).ok();
    r
}
