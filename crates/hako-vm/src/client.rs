//! A connection to a VM's supervisor (`<state dir>/vm.sock`), speaking hako-proto: what CLI commands and the
//! per-process shadows use to reach the agent.

use std::os::unix::net::UnixStream;
use std::path::Path;

use hako_proto::{read_frame, write_frame, Frame, Message, Op, Reply};

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
