//! The typed channel between `hako` (parent) and the container's init while it is being set up: a
//! `SOCK_SEQPACKET` socketpair carrying one JSON [`Message`] per packet, and file descriptors (the pty master)
//! as `SCM_RIGHTS`. A closed peer reads as [`ChannelError::Closed`], which is how init notices that the `hako`
//! that started it was killed.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::init::InitConfig;

/// Messages exchanged during create and exec, in protocol order.
#[derive(Debug, Serialize, Deserialize)]
pub enum Message {
    /// parent -> init: everything init needs.
    Config(Box<InitConfig>),
    /// init -> parent: a new user namespace exists; write uid_map/gid_map of this pid.
    WriteIdMaps(i32),
    /// parent -> init: the id maps are written.
    IdMapsWritten,
    /// init (first stage) -> parent: the host pid of the process that will become the container's process.
    Pid(i32),
    /// init -> parent: mounts are done, root not yet pivoted: run prestart and createRuntime hooks.
    RunCreateRuntimeHooks,
    /// parent -> init: hooks done; `state` is the state JSON for createContainer/startContainer hooks.
    HooksDone {
        /// runtime-spec state JSON.
        state: String,
    },
    /// init -> parent: the pty master follows as SCM_RIGHTS.
    ConsoleFd,
    /// init -> parent: setup finished; init now waits for `start` (create) or execs (exec).
    Ready,
    /// init -> parent: setup failed; the message names the step and the object.
    Error(String),
}

/// Errors of the channel itself.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The socket failed.
    #[error("setup channel: {0}")]
    Sys(#[from] nix::Error),
    /// The peer closed its end (it exited or was killed).
    #[error("setup channel: the other side exited")]
    Closed,
    /// A packet was not a message.
    #[error("setup channel: bad message: {0}")]
    Decode(#[from] serde_json::Error),
    /// A message is larger than the channel carries (a config with huge args, env or hooks).
    #[error(
        "setup channel: the {what} is {size} bytes, more than the {limit} bytes the channel to the container's \
         init carries: make config.json smaller (process.args, process.env, hooks, annotations)"
    )]
    TooLarge {
        /// What was sent.
        what: String,
        /// Its size.
        size: usize,
        /// The largest message the channel takes.
        limit: usize,
    },
    /// A message came that the protocol does not allow here.
    #[error("setup channel: expected {expected}, got {got}")]
    Unexpected {
        /// What the protocol expected.
        expected: &'static str,
        /// What arrived.
        got: String,
    },
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

const MAX_PACKET: usize = 4 << 20;

impl Channel {
    /// A connected pair (parent end, child end), both close-on-exec.
    pub fn pair() -> Result<(Channel, Channel), ChannelError> {
        let (a, b) = socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
        // A packet must fit the sender's buffer (about 208 KiB by default, net.core.wmem_max): let root send
        // up to MAX_PACKET, so that a config of a few hundred KiB (long env, many hooks) still goes through.
        for fd in [&a, &b] {
            let _ = socket::setsockopt(fd, socket::sockopt::SndBufForce, &MAX_PACKET);
        }
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Wraps an inherited fd.
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    /// The raw fd (to pass it across exec).
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Sends a message, with `fds` attached.
    pub fn send_with_fds(&self, msg: &Message, fds: &[RawFd]) -> Result<(), ChannelError> {
        let data = serde_json::to_vec(msg)?;
        let too_large = |limit| {
            let what = if matches!(msg, Message::Config(_)) { "config" } else { "message" };
            ChannelError::TooLarge { what: what.into(), size: data.len(), limit }
        };
        if data.len() > MAX_PACKET {
            return Err(too_large(MAX_PACKET));
        }
        let iov = [IoSlice::new(&data)];
        let cmsgs = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsgs };
        match socket::sendmsg::<()>(self.fd.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => Ok(()),
            Err(nix::Error::EMSGSIZE) => {
                // The kernel takes a packet of up to the send buffer less a little bookkeeping.
                let buf = socket::getsockopt(&self.fd, socket::sockopt::SndBuf).unwrap_or(0);
                Err(too_large(buf.saturating_sub(32).min(MAX_PACKET)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends a message.
    pub fn send(&self, msg: &Message) -> Result<(), ChannelError> {
        self.send_with_fds(msg, &[])
    }

    /// Receives the next message and any fds attached to it.
    pub fn recv_with_fds(&self) -> Result<(Message, Vec<OwnedFd>), ChannelError> {
        // Peek at the packet's size first: most messages are a few bytes, the config a few kilobytes.
        let size = loop {
            let mut probe = [0u8; 1];
            // MSG_TRUNC makes recv return the packet's real size.
            match socket::recv(self.fd.as_raw_fd(), &mut probe, MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
                Ok(n) => break n,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if size == 0 {
            return Err(ChannelError::Closed);
        }
        let mut buf = vec![0u8; size.min(MAX_PACKET)];
        let mut cmsg_space = nix::cmsg_space!([RawFd; 4]);
        let (len, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match socket::recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(r) => {
                    let mut fds = Vec::new();
                    for c in r.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: SCM_RIGHTS installed these fds in this process just now; nothing else owns them.
                            fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                        }
                    }
                    break (r.bytes, fds);
                }
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if len == 0 {
            return Err(ChannelError::Closed);
        }
        Ok((serde_json::from_slice(&buf[..len])?, fds))
    }

    /// Receives the next message, failing if fds came with it.
    pub fn recv(&self) -> Result<Message, ChannelError> {
        Ok(self.recv_with_fds()?.0)
    }
}

/// Names a message for protocol errors.
pub fn describe(m: &Message) -> String {
    match m {
        Message::Error(e) => format!("error: {e}"),
        other => format!("{other:?}").chars().take(60).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_messages_go_through_or_name_the_size_and_limit() {
        let (a, b) = Channel::pair().expect("pair");
        // A few hundred KiB: more than a default socket buffer, which root may raise.
        let big = "x".repeat(600 << 10);
        match a.send(&Message::Error(big.clone())) {
            Ok(()) => match b.recv().expect("recv") {
                Message::Error(s) => assert_eq!(s.len(), big.len()),
                other => panic!("got {}", describe(&other)),
            },
            Err(e) => {
                assert!(!nix::unistd::geteuid().is_root(), "root can raise the buffer: {e}");
                assert!(matches!(e, ChannelError::TooLarge { .. }), "{e}");
            }
        }
        let e = a.send(&Message::Error("x".repeat(MAX_PACKET))).expect_err("larger than MAX_PACKET");
        let text = e.to_string();
        assert!(text.contains(&format!("more than the {MAX_PACKET} bytes")), "{text}");
        assert!(text.contains("the message is 4194") && text.contains("config.json"), "{text}");
    }
}
