//! The agent's end of the host link: a virtio-serial port in the VM, or for development a file, a unix socket
//! or stdin/stdout. Both directions are non-blocking and buffered: incoming bytes are cut into whole
//! [`hako_proto`] frames, outgoing frames wait in a queue that the serve loop flushes when the port is
//! writable, so a host that is slow to read never blocks the agent (the loop stops reading container output
//! while the queue is over [`Port::HIGH_WATER`], which pushes back on the container instead).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use hako_proto::{Frame, Message, ProtoError};

use crate::sys;

/// Errors of the host link.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PortError {
    /// The port could not be opened.
    #[error("host port {path}: {source}; pass an existing character device, fifo or listening unix socket, or - for stdin/stdout")]
    Open {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Reading or writing failed.
    #[error("host port: {what}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// A frame could not be encoded.
    #[error(transparent)]
    Proto(#[from] ProtoError),
}

/// What one incoming frame turned out to be.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A well-formed frame.
    Frame(Frame),
    /// A control message this agent cannot read (a newer host, a bug): its request number if it had one.
    Unreadable {
        /// `req` of the message, when it is there.
        req: Option<u64>,
        /// What was wrong.
        error: String,
    },
}

/// The host link.
#[derive(Debug)]
pub(crate) struct Port {
    rfd: OwnedFd,
    wfd: OwnedFd,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
}

impl Port {
    /// Above this many queued outgoing bytes the loop stops reading container output.
    pub(crate) const HIGH_WATER: usize = 1 << 20;

    /// [`Port::fill`] stops reading once this many incoming bytes wait: room for the largest frame.
    pub(crate) const IN_LIMIT: usize = 4 + hako_proto::MAX_FRAME;

    /// Opens `path`: `-` is stdin/stdout (both moved to private fds, 0 and 1 then read and write /dev/null so
    /// that no child inherits the link), a unix socket is connected to, anything else is opened read-write.
    pub(crate) fn open(path: &Path) -> Result<Port, PortError> {
        let open_err = |source| PortError::Open { path: path.to_owned(), source };
        if path == Path::new("-") {
            let dup = |fd: i32| -> io::Result<OwnedFd> {
                let fd = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(io::Error::from)?;
                // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
                Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
            };
            let rfd = dup(0).map_err(open_err)?;
            let wfd = dup(1).map_err(open_err)?;
            let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map_err(open_err)?;
            for fd in [0, 1] {
                nix::unistd::dup2(null.as_raw_fd(), fd).map_err(|e| open_err(e.into()))?;
            }
            return Port::from_fds(rfd, wfd).map_err(open_err);
        }
        let meta = std::fs::metadata(path).map_err(open_err)?;
        let fd: OwnedFd = if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            UnixStream::connect(path).map_err(open_err)?.into()
        } else {
            std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(open_err)?.into()
        };
        Port::from_fd(fd).map_err(open_err)
    }

    /// A link over one read-write fd (a virtio-serial port, a socket).
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Port> {
        let wfd = fd.try_clone()?;
        Port::from_fds(fd, wfd)
    }

    fn from_fds(rfd: OwnedFd, wfd: OwnedFd) -> io::Result<Port> {
        Ok(Port { rfd, wfd, inbuf: Vec::new(), out: Vec::new(), out_pos: 0 })
    }

    /// Sends `msg` right away with a blocking write (the hello: the agent speaks first, and on a virtio-serial
    /// port the write waits until the host has connected); then switches the link to non-blocking.
    pub(crate) fn hello(&mut self, msg: &Message) -> Result<(), PortError> {
        let bytes = hako_proto::encode(&Frame::Msg(msg.clone()))?;
        write_all(self.wfd.as_fd(), &bytes).map_err(|source| PortError::Io { what: "sending hello", source })?;
        for fd in [self.rfd.as_fd(), self.wfd.as_fd()] {
            sys::set_nonblocking(fd)
                .map_err(|source| PortError::Io { what: "making the port non-blocking", source })?;
        }
        Ok(())
    }

    /// The fd to poll for input.
    pub(crate) fn read_fd(&self) -> BorrowedFd<'_> {
        self.rfd.as_fd()
    }

    /// The fd to poll for output.
    pub(crate) fn write_fd(&self) -> BorrowedFd<'_> {
        self.wfd.as_fd()
    }

    /// Reads what is available, up to [`Port::IN_LIMIT`] bytes buffered; `Ok(false)` when the host closed the
    /// link. Bytes past the limit stay in the port (the serve loop polls again after taking frames), so a host
    /// that writes faster than the agent reads never makes the buffer grow without bound.
    pub(crate) fn fill(&mut self) -> Result<bool, PortError> {
        let mut buf = [0u8; 65536];
        while self.inbuf.len() < Port::IN_LIMIT {
            match nix::unistd::read(self.rfd.as_raw_fd(), &mut buf) {
                Ok(0) => return Ok(false),
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EAGAIN) => return Ok(true),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(PortError::Io { what: "reading", source: e.into() }),
            }
        }
        Ok(true)
    }

    /// The next whole frame in the input buffer, if any.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Incoming>, PortError> {
        cut_frame(&mut self.inbuf)
    }
}

/// Takes the first whole frame off `inbuf`, if there is one: `Ok(None)` while it is incomplete, an error when
/// the framing is lost (a length out of range), [`Incoming::Unreadable`] for a whole frame that does not
/// decode.
fn cut_frame(inbuf: &mut Vec<u8>) -> Result<Option<Incoming>, PortError> {
    if inbuf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([inbuf[0], inbuf[1], inbuf[2], inbuf[3]]) as usize;
    if len == 0 || len > hako_proto::MAX_FRAME {
        // The framing is lost: nothing after this can be trusted.
        return Err(ProtoError::Frame(format!("length {len} is out of range 1..={}", hako_proto::MAX_FRAME)).into());
    }
    if inbuf.len() < 4 + len {
        return Ok(None);
    }
    let bytes: Vec<u8> = inbuf.drain(..4 + len).collect();
    Ok(Some(match hako_proto::read_frame(&mut &bytes[..]) {
        Ok(Some(f)) => Incoming::Frame(f),
        Ok(None) => return Err(ProtoError::Frame("empty frame".into()).into()),
        Err(ProtoError::Json(e)) => {
            let req = serde_json::from_slice::<serde_json::Value>(&bytes[5..])
                .ok()
                .and_then(|v| v.get("req").and_then(|r| r.as_u64()));
            Incoming::Unreadable { req, error: e.to_string() }
        }
        Err(ProtoError::Frame(e)) => Incoming::Unreadable { req: None, error: e },
        Err(e) => return Err(e.into()),
    }))
}

impl Port {
    /// Queues a frame and writes as much as the port takes now.
    pub(crate) fn send(&mut self, frame: &Frame) -> Result<(), PortError> {
        let bytes = hako_proto::encode(frame)?;
        self.out.extend_from_slice(&bytes);
        self.flush()
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes queued bytes until the port would block.
    pub(crate) fn flush(&mut self) -> Result<(), PortError> {
        while self.out_pos < self.out.len() {
            match nix::unistd::write(self.wfd.as_fd(), &self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(PortError::Io { what: "writing", source: e.into() }),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > (1 << 20) && self.out_pos * 2 > self.out.len() {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Writes everything queued, waiting up to `timeout` (before power-off or exit).
    pub(crate) fn drain(&mut self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.queued() > 0 && std::time::Instant::now() < deadline {
            if self.flush().is_err() {
                return;
            }
            if self.queued() > 0 {
                let mut pfd = [nix::poll::PollFd::new(self.wfd.as_fd(), nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(50u8));
            }
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hako_proto::{Op, VERSION};

    fn pair() -> (Port, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        let mut port = Port::from_fd(a.into()).unwrap();
        port.hello(&Message::Hello { version: VERSION, agent: "test".into() }).unwrap();
        (port, b)
    }

    #[test]
    fn frames_are_cut_from_partial_reads() {
        let (mut port, mut host) = pair();
        assert!(matches!(hako_proto::read_frame(&mut host).unwrap(), Some(Frame::Msg(Message::Hello { .. }))));
        let req = hako_proto::encode(&Frame::Msg(Message::Request { req: 9, op: Op::Ps { id: "c".into() } })).unwrap();
        let data = hako_proto::encode(&Frame::Data { stream: 4, data: b"abc".to_vec() }).unwrap();
        use std::io::Write;
        host.write_all(&req[..3]).unwrap();
        assert!(port.fill().unwrap());
        assert!(port.next_frame().unwrap().is_none());
        host.write_all(&req[3..]).unwrap();
        host.write_all(&data).unwrap();
        assert!(port.fill().unwrap());
        assert!(matches!(
            port.next_frame().unwrap(),
            Some(Incoming::Frame(Frame::Msg(Message::Request { req: 9, .. })))
        ));
        assert!(matches!(port.next_frame().unwrap(), Some(Incoming::Frame(Frame::Data { stream: 4, .. }))));
        assert!(port.next_frame().unwrap().is_none());
        drop(host);
        assert!(!port.fill().unwrap(), "a closed host reads as the end");
    }

    #[test]
    fn an_unknown_request_keeps_its_number() {
        let (mut port, mut host) = pair();
        let body = br#"{"type":"request","req":77,"op":"teleport","id":"c"}"#;
        let mut frame = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        frame.push(0);
        frame.extend_from_slice(body);
        use std::io::Write;
        host.write_all(&frame).unwrap();
        port.fill().unwrap();
        match port.next_frame().unwrap() {
            Some(Incoming::Unreadable { req: Some(77), error }) => assert!(error.contains("teleport"), "{error}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_slow_host_only_fills_the_queue() {
        let (mut port, host) = pair();
        let chunk = vec![7u8; 60000];
        for _ in 0..100 {
            port.send(&Frame::Data { stream: 1, data: chunk.clone() }).unwrap();
        }
        assert!(port.queued() > 0, "a unix socket cannot take 6 MB unread");
        drop(host);
        assert!(port.flush().is_err(), "writing to a closed host is an error");
    }

    /// A host that has written more than the largest frame before the agent reads: `fill` stops at
    /// [`Port::IN_LIMIT`] instead of buffering everything there is (a regular file never says EAGAIN, so
    /// before the limit one `fill` read it all), and the frames still all come out, in order.
    #[test]
    fn fill_buffers_at_most_one_largest_frame() {
        let data = vec![7u8; hako_proto::MAX_FRAME - 5];
        let frame = hako_proto::encode(&Frame::Data { stream: 2, data }).unwrap();
        let mut file = tempfile::tempfile().unwrap();
        use std::io::{Seek, Write};
        for _ in 0..3 {
            file.write_all(&frame).unwrap();
        }
        file.rewind().unwrap();
        let mut port = Port::from_fd(file.into()).unwrap();
        let (mut frames, mut most) = (0, 0);
        loop {
            let open = port.fill().unwrap();
            most = most.max(port.inbuf.len());
            while let Some(f) = port.next_frame().unwrap() {
                assert!(matches!(f, Incoming::Frame(Frame::Data { stream: 2, .. })), "{f:?}");
                frames += 1;
            }
            if !open {
                break;
            }
        }
        assert_eq!(frames, 3);
        assert!(most <= Port::IN_LIMIT + 65536, "{most} bytes buffered at once");
    }

    mod props {
        use super::super::*;
        use hako_proto::Op;
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngSeed};

        fn frames() -> Vec<Frame> {
            vec![
                Frame::Msg(Message::Request { req: 1, op: Op::Ps { id: "c".into() } }),
                Frame::Data { stream: 3, data: b"input".to_vec() },
                Frame::Eof { stream: 3 },
                Frame::Msg(Message::Request {
                    req: 2,
                    op: Op::Kill { id: "c".into(), exec_id: None, signal: 9, all: true },
                }),
            ]
        }

        /// Feeds `bytes` to the cutter in pieces of the given sizes, taking frames after each piece; returns
        /// the frames and whether the framing was lost.
        fn feed(bytes: &[u8], pieces: &[usize]) -> (Vec<Incoming>, bool) {
            let (mut inbuf, mut out, mut rest) = (Vec::new(), Vec::new(), bytes);
            let mut sizes = pieces.iter().cycle();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap()).clamp(1, rest.len());
                inbuf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                loop {
                    match cut_frame(&mut inbuf) {
                        Ok(Some(f)) => out.push(f),
                        Ok(None) => break,
                        Err(_) => return (out, true),
                    }
                }
            }
            (out, false)
        }

        proptest! {
            #![proptest_config(Config {
                // 256 cases (PROPTEST_CASES overrides), a fixed seed, no failure files.
                cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
                rng_seed: RngSeed::Fixed(0x6861_6b6f),
                failure_persistence: None,
                ..Config::default()
            })]

            /// However the host's bytes are split into reads, the same frames come out.
            #[test]
            fn any_split_gives_the_same_frames(pieces in prop::collection::vec(1..64usize, 1..8)) {
                let bytes: Vec<u8> = frames().iter().flat_map(|f| hako_proto::encode(f).unwrap()).collect();
                let (out, lost) = feed(&bytes, &pieces);
                prop_assert!(!lost);
                let got: Vec<Frame> = out.into_iter().map(|i| match i {
                    Incoming::Frame(f) => f,
                    other => panic!("{other:?}"),
                }).collect();
                prop_assert_eq!(got, frames());
            }

            /// Arbitrary bytes in arbitrary pieces: frames, unreadable frames or lost framing; never a panic.
            #[test]
            fn arbitrary_bytes_never_panic(
                bytes in prop::collection::vec(any::<u8>(), 0..512),
                pieces in prop::collection::vec(1..64usize, 1..8),
            ) {
                feed(&bytes, &pieces);
            }

            /// Valid frames with bytes flipped: never a panic.
            #[test]
            fn flipped_bytes_never_panic(
                flips in prop::collection::vec((any::<usize>(), 1..=255u8), 1..4),
                pieces in prop::collection::vec(1..64usize, 1..8),
            ) {
                let mut bytes: Vec<u8> = frames().iter().flat_map(|f| hako_proto::encode(f).unwrap()).collect();
                for (i, x) in flips {
                    let n = bytes.len();
                    bytes[i % n] ^= x;
                }
                feed(&bytes, &pieces);
            }
        }
    }
}
