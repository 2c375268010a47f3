//! The serve loop: one thread polls the host port, a signalfd for SIGCHLD, and every container
//! stdout/stderr pipe or pty master; requests run synchronously one at a time (see [`crate::ops`]); after each
//! turn zombies are reaped with `waitpid(-1, WNOHANG)` and matched to the container and exec'd processes the
//! agent knows. Because reaping happens only here, between requests, it never races with the
//! `Command::wait` calls inside hako-linux (stage 1 of init, hooks). Unknown pids (orphans the agent
//! adopted as pid 1 or subreaper) are just reaped.
//!
//! **Exit order.** A process counts as finished when it has exited *and* every output stream of it reached
//! end-of-file and its Eof frame was queued; only then are its waits answered and its
//! [`hako_proto::Event::Exited`] sent. The port's queue is first-in first-out, so the host gets all of a
//! process's output before its exit status.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use hako_linux::ProcessIsolation;
use hako_proto::{Event, Frame, Message, Reply};
use hako_runtime::state::{State, Store};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::log::log;
use crate::port::{Incoming, Port};
use crate::sys;

/// Errors that stop the agent before it serves.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServerError {
    /// The state root cannot be used.
    #[error(transparent)]
    State(#[from] hako_runtime::state::StateError),
    /// A directory under the state root cannot be created.
    #[error("{path}: {source}; pass a writable directory with --state")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The signalfd cannot be set up.
    #[error("signalfd for SIGCHLD: {0}")]
    Signals(nix::Error),
}

/// A process: a container's own (`exec_id` None) or an exec'd one.
pub(crate) type Key = (String, Option<String>);

/// Names a process in messages: `container c1` or `container c1 process e1`.
pub(crate) fn who(key: &Key) -> String {
    match &key.1 {
        None => format!("container {}", key.0),
        Some(e) => format!("container {} process {e}", key.0),
    }
}

/// What the agent knows of one process.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) pid: i32,
    /// The exit status once reaped (code, or 128 + signal).
    pub(crate) status: Option<i32>,
    /// Output streams not at end-of-file yet.
    pub(crate) open_outputs: usize,
    /// The pty master, for Resize.
    pub(crate) console: Option<OwnedFd>,
    /// Wait requests to answer when it finishes.
    pub(crate) waiters: Vec<u64>,
    /// Finished: exited, outputs drained, waits answered, event sent.
    pub(crate) finished: bool,
}

/// A pipe or pty master the agent reads a process's output from.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) fd: OwnedFd,
    /// The host's stream id; None: read and discarded (a pty nobody listens to must still be drained).
    pub(crate) stream: Option<u32>,
    pub(crate) key: Key,
}

/// A pipe or pty master the agent writes a process's input to.
#[derive(Debug)]
pub(crate) struct Input {
    pub(crate) fd: OwnedFd,
    pub(crate) pending: Vec<u8>,
    /// The host sent Eof: close once `pending` is written.
    pub(crate) eof: bool,
    pub(crate) key: Key,
}

/// A container the agent created.
#[derive(Debug)]
pub(crate) struct Container {
    pub(crate) state: State,
    pub(crate) spec: oci_spec::runtime::Spec,
    pub(crate) bundle_dir: PathBuf,
    /// Shares mounted for it, in mount order.
    pub(crate) mounts: Vec<PathBuf>,
}

/// Why the loop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The host asked for it.
    Shutdown,
    /// The port closed or broke.
    HostGone,
    /// SIGTERM/SIGINT/SIGHUP (standalone only).
    Signal,
}

/// The agent's whole state.
pub(crate) struct Server {
    pub(crate) port: Port,
    pub(crate) store: Store,
    pub(crate) bundles: PathBuf,
    pub(crate) iso: ProcessIsolation,
    pub(crate) containers: BTreeMap<String, Container>,
    pub(crate) procs: HashMap<Key, Proc>,
    pub(crate) pids: HashMap<i32, Key>,
    pub(crate) outputs: Vec<Output>,
    pub(crate) inputs: HashMap<u32, Input>,
    sigfd: SignalFd,
    pid1: bool,
    pub(crate) stop: Option<Stop>,
    /// Saved as a template ([`hako_proto::Op::Seal`]) and not restored yet: everything else is refused.
    pub(crate) sealed: bool,
}

impl Server {
    /// Sets up the state root (`<root>/state` for container state, `<root>/bundles` for configs) and blocks
    /// SIGCHLD (and, standalone, the terminating signals) into a signalfd.
    pub(crate) fn new(port: Port, root: &std::path::Path, pid1: bool) -> Result<Server, ServerError> {
        let store = Store::open(&root.join("state"))?;
        let bundles = root.join("bundles");
        std::fs::create_dir_all(&bundles).map_err(|source| ServerError::Dir { path: bundles.clone(), source })?;
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        if !pid1 {
            for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
                mask.add(s);
            }
        }
        mask.thread_block().map_err(ServerError::Signals)?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(ServerError::Signals)?;
        Ok(Server {
            port,
            store,
            bundles,
            iso: ProcessIsolation,
            containers: BTreeMap::new(),
            procs: HashMap::new(),
            pids: HashMap::new(),
            outputs: Vec::new(),
            inputs: HashMap::new(),
            sigfd,
            pid1,
            stop: None,
            sealed: false,
        })
    }

    /// Queues a control message; a port that broke ends the loop.
    pub(crate) fn send_msg(&mut self, msg: Message) {
        self.send(Frame::Msg(msg));
    }

    pub(crate) fn send(&mut self, frame: Frame) {
        if let Err(e) = self.port.send(&frame) {
            if self.stop.is_none() {
                eprintln!("hako-agent: {e}");
                self.stop = Some(Stop::HostGone);
            }
        }
    }

    /// Answers request `req`.
    pub(crate) fn respond(&mut self, req: u64, result: Result<Reply, String>) {
        self.send_msg(Message::Response { req, result });
    }

    fn send_logs(&mut self) {
        for msg in crate::log::take() {
            self.send_msg(Message::Event { event: Event::Log { msg } });
        }
    }

    /// Serves until shutdown or until the host goes away; then powers off (pid 1) or removes every container
    /// and returns (standalone).
    pub(crate) fn serve(mut self) {
        while self.stop.is_none() {
            self.send_logs();
            self.turn();
            self.reap();
        }
        let why = self.stop.unwrap_or(Stop::HostGone);
        if self.pid1 {
            if why == Stop::Shutdown {
                self.port.drain(Duration::from_secs(1));
            }
            sys::power_off();
        }
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        for id in ids {
            if let Err(e) = self.delete(&id) {
                log(format!("on exit: {e}"));
            }
        }
        self.send_logs();
        if why == Stop::Shutdown {
            self.port.drain(Duration::from_secs(1));
        }
    }

    /// One poll and whatever it found.
    fn turn(&mut self) {
        let read_outputs = self.port.queued() < Port::HIGH_WATER;
        let input_ids: Vec<u32> = self.inputs.iter().filter(|(_, i)| !i.pending.is_empty()).map(|(s, _)| *s).collect();
        let (sig_ev, port_ev, portw_ev, out_ev, in_ev) = {
            let mut fds = vec![
                PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.port.read_fd(), PollFlags::POLLIN),
                PollFd::new(
                    self.port.write_fd(),
                    if self.port.queued() > 0 { PollFlags::POLLOUT } else { PollFlags::empty() },
                ),
            ];
            if read_outputs {
                fds.extend(self.outputs.iter().map(|o| PollFd::new(o.fd.as_fd(), PollFlags::POLLIN)));
            }
            fds.extend(
                input_ids
                    .iter()
                    .filter_map(|s| self.inputs.get(s))
                    .map(|i| PollFd::new(i.fd.as_fd(), PollFlags::POLLOUT)),
            );
            match nix::poll::poll(&mut fds, PollTimeout::from(1000u16)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => return,
                Err(e) => {
                    log(format!("poll: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                    return;
                }
            }
            let ev: Vec<PollFlags> = fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
            let n_out = if read_outputs { self.outputs.len() } else { 0 };
            (ev[0], ev[1], ev[2], ev[3..3 + n_out].to_vec(), ev[3 + n_out..].to_vec())
        };
        if !sig_ev.is_empty() {
            self.signals();
        }
        // Output first: it belongs before any exit that the requests below may report.
        let mut ended = Vec::new();
        for (i, ev) in out_ev.iter().enumerate() {
            if !ev.is_empty() && self.read_output(i) {
                ended.push(i);
            }
        }
        for i in ended.into_iter().rev() {
            self.end_output(i);
        }
        for (s, ev) in input_ids.iter().zip(in_ev) {
            if !ev.is_empty() {
                self.write_input(*s);
            }
        }
        if !portw_ev.is_empty() {
            if let Err(e) = self.port.flush() {
                eprintln!("hako-agent: {e}");
                self.stop = Some(Stop::HostGone);
            }
        }
        if !port_ev.is_empty() {
            match self.port.fill() {
                Ok(open) => {
                    self.frames();
                    if !open && self.stop.is_none() {
                        self.stop = Some(Stop::HostGone);
                    }
                }
                Err(e) => {
                    eprintln!("hako-agent: {e}");
                    self.stop = Some(Stop::HostGone);
                }
            }
        }
    }

    fn signals(&mut self) {
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            if info.ssi_signo != Signal::SIGCHLD as u32 {
                log(format!("signal {}: removing every container and exiting", info.ssi_signo));
                self.stop = Some(Stop::Signal);
            }
        }
    }

    /// Handles every whole frame received so far.
    fn frames(&mut self) {
        loop {
            if self.stop == Some(Stop::Shutdown) {
                return;
            }
            let frame = match self.port.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => {
                    eprintln!("hako-agent: {e}");
                    self.stop = Some(Stop::HostGone);
                    return;
                }
            };
            match frame {
                Incoming::Frame(Frame::Msg(Message::Request { req, op })) => self.request(req, op),
                Incoming::Frame(Frame::Msg(other)) => {
                    log(format!("ignoring a message the host should not send: {other:?}"))
                }
                Incoming::Frame(Frame::Data { stream, data }) => self.stdin_data(stream, data),
                Incoming::Frame(Frame::Eof { stream }) => self.stdin_eof(stream),
                Incoming::Unreadable { req: Some(req), error } => {
                    self.respond(
                        req,
                        Err(format!(
                            "the guest agent cannot read request {req}: {error} (agent {}, protocol {})",
                            env!("CARGO_PKG_VERSION"),
                            hako_proto::VERSION
                        )),
                    );
                }
                Incoming::Unreadable { req: None, error } => log(format!("ignoring an unreadable frame: {error}")),
            }
        }
    }

    fn stdin_data(&mut self, stream: u32, data: Vec<u8>) {
        match self.inputs.get_mut(&stream) {
            Some(i) if !i.eof => {
                i.pending.extend_from_slice(&data);
                self.write_input(stream);
            }
            // The process closed its stdin, or it is gone: the data has nowhere to go.
            _ => {}
        }
    }

    fn stdin_eof(&mut self, stream: u32) {
        if let Some(i) = self.inputs.get_mut(&stream) {
            i.eof = true;
            if i.pending.is_empty() {
                self.inputs.remove(&stream);
            }
        }
    }

    /// Writes what the process's stdin takes now; closes it after Eof, or when the process closed it.
    fn write_input(&mut self, stream: u32) {
        let Some(i) = self.inputs.get_mut(&stream) else {
            return;
        };
        while !i.pending.is_empty() {
            match nix::unistd::write(i.fd.as_fd(), &i.pending) {
                Ok(n) => {
                    i.pending.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(_) => {
                    // EPIPE, EIO: nobody reads it any more.
                    self.inputs.remove(&stream);
                    return;
                }
            }
        }
        if i.eof {
            self.inputs.remove(&stream);
        }
    }

    /// Reads one chunk of output `i`; true at its end.
    fn read_output(&mut self, i: usize) -> bool {
        let mut buf = vec![0u8; 65536];
        let (fd, stream) = (self.outputs[i].fd.as_raw_fd(), self.outputs[i].stream);
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => true,
            Ok(n) => {
                buf.truncate(n);
                if let Some(stream) = stream {
                    self.send(Frame::Data { stream, data: buf });
                }
                false
            }
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => false,
            // EIO: the pty's slave side was closed by its last holder.
            Err(_) => true,
        }
    }

    /// Output `i` reached its end: Eof to the host, and the process may be finished now.
    pub(crate) fn end_output(&mut self, i: usize) {
        let o = self.outputs.remove(i);
        if let Some(stream) = o.stream {
            self.send(Frame::Eof { stream });
        }
        if let Some(p) = self.procs.get_mut(&o.key) {
            p.open_outputs = p.open_outputs.saturating_sub(1);
        }
        self.check_finished(&o.key);
    }

    /// Reads every output of the processes of container `id` until it would block, then ends them all
    /// (their processes are dead: whatever still holds a pipe open is not the container's).
    pub(crate) fn drain_outputs_of(&mut self, id: &str) {
        let mut i = 0;
        while i < self.outputs.len() {
            if self.outputs[i].key.0 != id {
                i += 1;
                continue;
            }
            // Bounded: a writer outside the container could keep the pipe busy forever.
            for _ in 0..256 {
                let mut pfd = [PollFd::new(self.outputs[i].fd.as_fd(), PollFlags::POLLIN)];
                let ready = nix::poll::poll(&mut pfd, PollTimeout::ZERO).unwrap_or(0) > 0;
                if !ready || self.read_output(i) {
                    break;
                }
            }
            self.end_output(i);
        }
    }

    /// When `key` has exited and its outputs ended: sends the event and answers its waits, once.
    pub(crate) fn check_finished(&mut self, key: &Key) {
        let Some(p) = self.procs.get_mut(key) else {
            return;
        };
        let Some(status) = p.status else { return };
        if p.finished || p.open_outputs > 0 {
            return;
        }
        p.finished = true;
        let waiters = std::mem::take(&mut p.waiters);
        // The event first: the supervisor then knows that the container exited before its shadow, answered,
        // exits and closes its connection (else it would take the container for an orphan and kill it again).
        self.send_msg(Message::Event { event: Event::Exited { id: key.0.clone(), exec_id: key.1.clone(), status } });
        for req in waiters {
            self.respond(req, Ok(Reply::Exited { status }));
        }
    }

    /// Reaps every zombie child and records the statuses of known processes.
    pub(crate) fn reap(&mut self) {
        loop {
            let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
                Ok(WaitStatus::StillAlive) => return,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return, // ECHILD: no children
            };
            if let Some(key) = self.pids.remove(&pid.as_raw()) {
                if let Some(p) = self.procs.get_mut(&key) {
                    p.status = Some(status);
                }
                self.check_finished(&key);
            }
        }
    }
}
