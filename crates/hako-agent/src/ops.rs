//! The protocol's operations ([`hako_proto::Op`]), each run to completion by the serve loop, on top of
//! [`hako_linux::ProcessIsolation`] with the guest's own state store: the same code that runs a
//! process-isolated container on a host runs it in the guest, so every part of the config means the same in
//! both modes.
//!
//! **Shares.** A [`hako_proto::Share`] is mounted as 9p over virtio
//! (`trans=virtio,version=9p2000.L,msize=512000,cache=mmap`, plus `ro`), or as virtio-fs when its tag starts
//! with `virtiofs:` (the rest is the virtio-fs tag). They are mounted before the container is created and
//! unmounted when it is deleted (or when its create fails). `cache=mmap` caches nothing but the pages of
//! mapped files, as the host's page cache would: names, attributes and read()/write() still go to the host
//! every time, so the host's changes are seen at once, but a file can be mapped shared and writable (9p's
//! default, `cache=none`, refuses that with EINVAL) and a mapped file is read ahead in msize-sized requests
//! instead of one 4 KiB request per page fault: exec of a binary from a share is that.
//!
//! **Stdio.** Each stream id the host names gets a pipe; a stream without an id gets /dev/null. With a
//! terminal, the pty master carries stdout (and stdin); a stderr stream id is ended at once. Stdin Eof closes
//! the process's stdin pipe (for a pty it only stops input: the master stays open for output).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hako_proto::{Op, Reply, Share, Stdio};
use hako_runtime::bundle::Bundle;
use hako_runtime::isolation::{CreateOptions, ExecOptions, Isolation};
use hako_runtime::state::Status;
use hako_runtime::ContainerId;
use nix::mount::MsFlags;

use crate::log::log;
use crate::server::{who, Container, Input, Key, Output, Proc, Server, Stop};
use crate::sys;

/// Why an operation failed; the text goes to the host in the error reply.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpError {
    /// No such container.
    #[error("container {0} does not exist in the guest")]
    NoContainer(String),
    /// No such exec'd process.
    #[error("container {id} has no process {exec_id}")]
    NoProcess {
        /// The container.
        id: String,
        /// The process.
        exec_id: String,
    },
    /// The id is taken.
    #[error("container {0} already exists in the guest: delete it first or choose another id")]
    Exists(String),
    /// The request cannot be done in this state or with these arguments.
    #[error("{who}: {what}")]
    Refused {
        /// The container or process.
        who: String,
        /// What is wrong.
        what: String,
    },
    /// The VM was restored from a template and the host has not sent Restore yet.
    #[error("this VM was restored from a template and has not been reseeded yet: the host must send restore (with fresh entropy and the time) before anything else")]
    Sealed,
    /// A step failed.
    #[error("{who}: {step}: {cause}")]
    Failed {
        /// The container or process.
        who: String,
        /// The step.
        step: &'static str,
        /// The error and its causes.
        cause: String,
    },
}

/// The error and its causes on one line, skipping a cause an outer message already contains.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cur = c.source();
    }
    msg
}

fn failed<'a>(who: &'a str, step: &'static str) -> impl FnOnce(hako_runtime::isolation::BoxError) -> OpError + 'a {
    move |e| OpError::Failed { who: who.to_owned(), step, cause: chain(e.as_ref()) }
}

fn io_failed<'a>(who: &'a str, step: &'static str) -> impl FnOnce(std::io::Error) -> OpError + 'a {
    move |e| OpError::Failed { who: who.to_owned(), step, cause: e.to_string() }
}

fn refused(who: &str, what: impl Into<String>) -> OpError {
    OpError::Refused { who: who.to_owned(), what: what.into() }
}

/// A request's answer: now, or later (Wait).
enum Answer {
    Now(Result<Reply, OpError>),
    Later,
}

/// The process's side and the agent's side of a new process's stdio.
struct Plumbing {
    /// stdin, stdout, stderr of the process.
    child: [OwnedFd; 3],
    /// The agent's write end of stdin, with its stream.
    stdin: Option<(u32, OwnedFd)>,
    /// The agent's read ends of stdout and stderr.
    outputs: Vec<(Option<u32>, OwnedFd)>,
}

fn null(write: bool) -> std::io::Result<OwnedFd> {
    Ok(std::fs::OpenOptions::new().read(!write).write(write).open("/dev/null")?.into())
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Pipes for the streams `stdio` names; /dev/null for the others and, with a terminal, for all three (init
/// puts the pty on 0, 1 and 2).
fn plumb(stdio: &Stdio, terminal: bool) -> std::io::Result<Plumbing> {
    if terminal {
        return Ok(Plumbing { child: [null(false)?, null(true)?, null(true)?], stdin: None, outputs: Vec::new() });
    }
    let (stdin_child, stdin) = match stdio.stdin {
        Some(s) => {
            let (r, w) = pipe()?;
            sys::set_nonblocking(w.as_fd())?;
            (r, Some((s, w)))
        }
        None => (null(false)?, None),
    };
    let mut outputs = Vec::new();
    let mut out = |stream: Option<u32>| -> std::io::Result<OwnedFd> {
        match stream {
            Some(s) => {
                let (r, w) = pipe()?;
                sys::set_nonblocking(r.as_fd())?;
                outputs.push((Some(s), r));
                Ok(w)
            }
            None => null(true),
        }
    };
    let stdout_child = out(stdio.stdout)?;
    let stderr_child = out(stdio.stderr)?;
    Ok(Plumbing { child: [stdin_child, stdout_child, stderr_child], stdin, outputs })
}

/// Mounts one share; returns where.
fn mount_share(who: &str, share: &Share) -> Result<PathBuf, OpError> {
    let (fstype, source, data) = match share.tag.strip_prefix("virtiofs:") {
        Some(tag) => ("virtiofs", tag, None),
        None => ("9p", share.tag.as_str(), Some("trans=virtio,version=9p2000.L,msize=512000,cache=mmap")),
    };
    let path = PathBuf::from(&share.guest_path);
    let fail = |e: std::io::Error| OpError::Failed {
        who: who.to_owned(),
        step: "mounting a share",
        cause: format!(
            "{fstype} tag {source} on {}: {e}; the VM needs a {fstype} device with mount tag {source}",
            path.display()
        ),
    };
    if !path.is_absolute() {
        return Err(refused(who, format!("share {} has a relative guest path {}", share.tag, path.display())));
    }
    std::fs::create_dir_all(&path).map_err(fail)?;
    let flags = if share.readonly { MsFlags::MS_RDONLY } else { MsFlags::empty() };
    nix::mount::mount(Some(source), &path, Some(fstype), flags, data).map_err(|e| fail(e.into()))?;
    Ok(path)
}

fn unmount_all(mounts: &[PathBuf]) {
    for m in mounts.iter().rev() {
        if let Err(e) = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH) {
            log(format!("unmounting {}: {e}", m.display()));
        }
    }
}

impl Server {
    /// Runs one request and answers it (or, for Wait, remembers to).
    pub(crate) fn request(&mut self, req: u64, op: Op) {
        match self.dispatch(req, op) {
            Answer::Now(r) => self.respond(req, r.map_err(|e| e.to_string())),
            Answer::Later => {}
        }
    }

    fn dispatch(&mut self, req: u64, op: Op) -> Answer {
        let done = |r: Result<(), OpError>| Answer::Now(r.map(|()| Reply::Done));
        if self.sealed && !matches!(op, Op::Restore { .. }) {
            return Answer::Now(Err(OpError::Sealed));
        }
        match op {
            Op::Create { id, config, shares, stdio, net, sandbox } => Answer::Now(
                self.join_sandbox(&id, config, sandbox.as_deref())
                    .and_then(|config| self.create(&id, config, &shares, &stdio, &net)),
            ),
            Op::Start { id } => done(self.start(&id)),
            Op::Exec { id, exec_id, process, stdio } => Answer::Now(self.exec(&id, &exec_id, process, &stdio)),
            Op::Kill { id, exec_id, signal, all } => done(self.kill(&id, exec_id, signal, all)),
            Op::Wait { id, exec_id } => self.wait(req, id, exec_id),
            Op::Ps { id } => Answer::Now(self.container(&id).and_then(|c| {
                self.iso
                    .pids(&c.state)
                    .map(|pids| Reply::Pids { pids })
                    .map_err(failed(&who(&(id.clone(), None)), "ps"))
            })),
            Op::Stats { id } => Answer::Now(self.container(&id).and_then(|c| {
                self.iso
                    .stats(&c.state)
                    .map(|data| Reply::Stats { data })
                    .map_err(failed(&who(&(id.clone(), None)), "stats"))
            })),
            Op::Resize { id, exec_id, rows, cols } => done(self.resize(&id, exec_id, rows, cols)),
            Op::Pause { id } => done(
                self.container(&id)
                    .and_then(|c| self.iso.pause(&c.state).map_err(failed(&format!("container {id}"), "pause"))),
            ),
            Op::Resume { id } => done(
                self.container(&id)
                    .and_then(|c| self.iso.resume(&c.state).map_err(failed(&format!("container {id}"), "resume"))),
            ),
            Op::Update { id, resources } => done(self.update(&id, resources)),
            Op::Delete { id } => done(self.delete(&id)),
            Op::Shutdown => {
                self.respond(req, Ok(Reply::Done));
                self.stop = Some(Stop::Shutdown);
                Answer::Later
            }
            Op::Seal => done(self.seal()),
            Op::Restore { unix_secs, nanos, entropy } => done(self.restore(unix_secs, nanos, &entropy)),
        }
    }

    /// Marks the VM as a template: only a VM without containers may be saved (their processes and mounts
    /// would be copied into every VM restored from it).
    fn seal(&mut self) -> Result<(), OpError> {
        if let Some(id) = self.containers.keys().next() {
            return Err(OpError::Refused {
                who: "the VM".into(),
                what: format!("container {id} exists: a VM with containers cannot become a template"),
            });
        }
        self.sealed = true;
        Ok(())
    }

    /// Makes a VM restored from a template its own: fresh randomness, the host's time.
    fn restore(&mut self, unix_secs: i64, nanos: u32, entropy: &[u8]) -> Result<(), OpError> {
        let failed = |step: &'static str| {
            move |e: std::io::Error| OpError::Failed { who: "the VM".into(), step, cause: e.to_string() }
        };
        if !(32..=512).contains(&entropy.len()) {
            return Err(OpError::Refused {
                who: "the VM".into(),
                what: format!("restore brought {} bytes of entropy; 32 to 512 are needed", entropy.len()),
            });
        }
        sys::reseed_random(entropy).map_err(failed("reseeding the random number generator"))?;
        sys::set_clock(unix_secs, nanos).map_err(failed("setting the clock"))?;
        self.sealed = false;
        Ok(())
    }

    fn container(&self, id: &str) -> Result<&Container, OpError> {
        self.containers.get(id).ok_or_else(|| OpError::NoContainer(id.to_owned()))
    }

    fn proc_of(&self, key: &Key) -> Result<&Proc, OpError> {
        self.container(&key.0)?;
        self.procs.get(key).ok_or_else(|| match &key.1 {
            Some(e) => OpError::NoProcess { id: key.0.clone(), exec_id: e.clone() },
            None => OpError::NoContainer(key.0.clone()),
        })
    }

    /// Refuses stream ids that a live process already uses.
    fn check_streams(&self, who: &str, stdio: &Stdio) -> Result<(), OpError> {
        for s in [stdio.stdin, stdio.stdout, stdio.stderr].into_iter().flatten() {
            if self.inputs.contains_key(&s) || self.outputs.iter().any(|o| o.stream == Some(s)) {
                return Err(refused(
                    who,
                    format!("stream {s} is still in use by another process: use a fresh stream id"),
                ));
            }
        }
        Ok(())
    }

    /// Records a new process and its streams.
    fn register(&mut self, key: Key, pid: i32, plumbing: Plumbing, console: Option<OwnedFd>, stdio: &Stdio) {
        let Plumbing { child, mut stdin, mut outputs } = plumbing;
        drop(child);
        if let Some(master) = &console {
            if let Err(e) = sys::set_nonblocking(master.as_fd()) {
                log(format!("{}: terminal: {e}", who(&key)));
            }
            match master.try_clone() {
                Ok(fd) => outputs.push((stdio.stdout, fd)),
                Err(e) => log(format!("{}: terminal output: {e}", who(&key))),
            }
            if let Some(s) = stdio.stdin {
                match master.try_clone() {
                    Ok(fd) => stdin = Some((s, fd)),
                    Err(e) => log(format!("{}: terminal input: {e}", who(&key))),
                }
            }
        }
        let has_console = console.is_some();
        self.procs.insert(
            key.clone(),
            Proc { pid, status: None, open_outputs: outputs.len(), console, waiters: Vec::new(), finished: false },
        );
        self.pids.insert(pid, key.clone());
        for (stream, fd) in outputs {
            self.outputs.push(Output { fd, stream, key: key.clone() });
        }
        if let Some((s, fd)) = stdin {
            self.inputs.insert(s, Input { fd, pending: Vec::new(), eof: false, key: key.clone() });
        }
        if has_console || stdio.terminal {
            if let Some(s) = stdio.stderr {
                // A terminal has no separate stderr: end the stream so that nobody waits for it.
                self.send(hako_proto::Frame::Eof { stream: s });
            }
        }
    }

    /// For a container of a pod: points each namespace of `config` that names a path at the pod's sandbox
    /// container's namespace of that type in this guest (`/proc/<its pid>/ns/<type>`); the host's paths mean
    /// nothing here. The sandbox must exist and run.
    fn join_sandbox(
        &self,
        id: &str,
        mut config: serde_json::Value,
        sandbox: Option<&str>,
    ) -> Result<serde_json::Value, OpError> {
        let Some(sandbox) = sandbox else { return Ok(config) };
        let who = format!("container {id}");
        let pid = match self.procs.get(&(sandbox.to_owned(), None)) {
            Some(p) if p.status.is_none() => p.pid,
            Some(_) => {
                return Err(refused(
                    &who,
                    format!("its pod's sandbox container {sandbox} has exited: recreate the pod"),
                ))
            }
            None => {
                return Err(refused(
                    &who,
                    format!(
                        "its pod's sandbox container {sandbox} does not exist in this VM: create the sandbox first"
                    ),
                ))
            }
        };
        if let Some(list) = config.pointer_mut("/linux/namespaces").and_then(|n| n.as_array_mut()) {
            for ns in list.iter_mut() {
                if ns.get("path").is_none() {
                    continue;
                }
                let file = match ns.get("type").and_then(|t| t.as_str()) {
                    Some("network") => "net",
                    Some("mount") => "mnt",
                    Some(t @ ("ipc" | "uts" | "pid" | "user" | "cgroup" | "time")) => t,
                    other => return Err(refused(&who, format!("linux.namespaces: unknown namespace type {other:?}"))),
                };
                ns["path"] = serde_json::json!(format!("/proc/{pid}/ns/{file}"));
            }
        }
        Ok(config)
    }

    fn create(
        &mut self,
        id: &str,
        config: serde_json::Value,
        shares: &[Share],
        stdio: &Stdio,
        net: &[hako_proto::NetIf],
    ) -> Result<Reply, OpError> {
        let who = format!("container {id}");
        let cid = ContainerId::parse(id).map_err(|e| refused(&who, e.to_string()))?;
        if self.containers.contains_key(id) || self.store.dir(&cid).exists() {
            return Err(OpError::Exists(id.to_owned()));
        }
        self.check_streams(&who, stdio)?;
        let terminal = config.pointer("/process/terminal").and_then(|t| t.as_bool()).unwrap_or(false);
        if terminal != stdio.terminal {
            return Err(refused(
                &who,
                format!("stdio.terminal is {} but process.terminal is {terminal}: they must agree", stdio.terminal),
            ));
        }
        if !net.is_empty() {
            crate::net::configure(net).map_err(|cause| OpError::Failed {
                who: who.clone(),
                step: "setting up the network",
                cause,
            })?;
        }
        let bundle_dir = self.bundles.join(id);
        let mut mounts = Vec::new();
        let result = self.create_in(&who, &cid, &config, shares, stdio, terminal, &bundle_dir, &mut mounts);
        match result {
            Ok((state, spec, spawned, plumbing)) => {
                let pid = spawned.pid;
                self.containers.insert(id.to_owned(), Container { state, spec, bundle_dir, mounts });
                self.register((id.to_owned(), None), pid, plumbing, spawned.console, stdio);
                Ok(Reply::Created { pid })
            }
            Err(e) => {
                unmount_all(&mounts);
                let _ = std::fs::remove_dir_all(&bundle_dir);
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create_in(
        &mut self,
        who: &str,
        cid: &ContainerId,
        config: &serde_json::Value,
        shares: &[Share],
        stdio: &Stdio,
        terminal: bool,
        bundle_dir: &Path,
        mounts: &mut Vec<PathBuf>,
    ) -> Result<
        (hako_runtime::state::State, oci_spec::runtime::Spec, hako_runtime::isolation::Spawned, Plumbing),
        OpError,
    > {
        for share in shares {
            mounts.push(mount_share(who, share)?);
        }
        std::fs::create_dir_all(bundle_dir).map_err(io_failed(who, "bundle directory"))?;
        let text = serde_json::to_vec(config).map_err(|e| io_failed(who, "config")(e.into()))?;
        std::fs::write(bundle_dir.join("config.json"), text).map_err(io_failed(who, "writing config.json"))?;
        let bundle = Bundle::load(bundle_dir).map_err(|e| refused(who, chain(&e)))?;
        let plumbing = plumb(stdio, terminal).map_err(io_failed(who, "stdio pipes"))?;
        let locked = self.store.create(cid).map_err(|e| refused(who, chain(&e)))?;
        let opts = CreateOptions {
            foreground: true,
            stdio: Some([plumbing.child[0].as_raw_fd(), plumbing.child[1].as_raw_fd(), plumbing.child[2].as_raw_fd()]),
            ..Default::default()
        };
        match self.iso.create(&locked, &bundle, &opts) {
            Ok((state, spawned)) => Ok((state, bundle.spec, spawned, plumbing)),
            Err(e) => {
                let _ = locked.remove();
                Err(failed(who, "create")(e))
            }
        }
    }

    fn start(&mut self, id: &str) -> Result<(), OpError> {
        let who = format!("container {id}");
        let c = self.container(id)?;
        let status = self.iso.status(&c.state);
        if status != Status::Created {
            return Err(refused(&who, format!("cannot start it: it is {}, not created", status.as_str())));
        }
        let cid = ContainerId::parse(id).map_err(|e| refused(&who, e.to_string()))?;
        let locked = self.store.lock(&cid).map_err(|e| refused(&who, chain(&e)))?;
        self.iso.start(&locked, &c.state).map_err(failed(&who, "start"))
    }

    fn exec(&mut self, id: &str, exec_id: &str, process: serde_json::Value, stdio: &Stdio) -> Result<Reply, OpError> {
        let key: Key = (id.to_owned(), Some(exec_id.to_owned()));
        let who = who(&key);
        let c = self.container(id)?;
        let status = self.iso.status(&c.state);
        if !matches!(status, Status::Created | Status::Running) {
            return Err(refused(&who, format!("cannot exec in container {id}: it is {}", status.as_str())));
        }
        if exec_id.is_empty() {
            return Err(refused(&who, "the exec id is empty"));
        }
        if self.procs.get(&key).is_some_and(|p| !p.finished) {
            return Err(refused(&who, "a process with this exec id is still running: choose another exec id"));
        }
        let process: oci_spec::runtime::Process =
            serde_json::from_value(process).map_err(|e| refused(&who, format!("invalid process: {e}")))?;
        if process.args().as_ref().map(|a| a.len()).unwrap_or(0) == 0 {
            return Err(refused(&who, "process.args is empty: name the program to run"));
        }
        let terminal = process.terminal().unwrap_or(false);
        if terminal != stdio.terminal {
            return Err(refused(
                &who,
                format!("stdio.terminal is {} but process.terminal is {terminal}: they must agree", stdio.terminal),
            ));
        }
        self.check_streams(&who, stdio)?;
        let plumbing = plumb(stdio, terminal).map_err(io_failed(&who, "stdio pipes"))?;
        let opts = ExecOptions {
            process,
            console_socket: None,
            preserve_fds: 0,
            foreground: true,
            stdio: Some([plumbing.child[0].as_raw_fd(), plumbing.child[1].as_raw_fd(), plumbing.child[2].as_raw_fd()]),
        };
        let spawned = self.iso.exec(&c.state, &c.spec, &opts).map_err(failed(&who, "starting the process"))?;
        self.procs.remove(&key);
        self.register(key, spawned.pid, plumbing, spawned.console, stdio);
        Ok(Reply::Created { pid: spawned.pid })
    }

    fn kill(&mut self, id: &str, exec_id: Option<String>, signal: i32, all: bool) -> Result<(), OpError> {
        let key: Key = (id.to_owned(), exec_id);
        let who = who(&key);
        if !(1..=64).contains(&signal) {
            return Err(refused(&who, format!("{signal} is not a signal number (1 to 64)")));
        }
        let c = self.container(id)?;
        if all {
            return self.iso.kill(&c.state, signal, true).map_err(failed(&who, "signalling every process"));
        }
        let p = self.proc_of(&key)?;
        if let Some(status) = p.status {
            return Err(refused(&who, format!("it is not running: it exited with status {status}")));
        }
        match &key.1 {
            None => self.iso.kill(&c.state, signal, false).map_err(failed(&who, "kill")),
            Some(_) => {
                // SAFETY: kill takes two integers; the pid is our unreaped child, so it cannot be reused.
                if unsafe { libc::kill(p.pid, signal) } != 0 {
                    return Err(io_failed(&who, "kill")(std::io::Error::last_os_error()));
                }
                Ok(())
            }
        }
    }

    fn wait(&mut self, req: u64, id: String, exec_id: Option<String>) -> Answer {
        let key: Key = (id, exec_id);
        if let Err(e) = self.proc_of(&key) {
            return Answer::Now(Err(e));
        }
        let Some(p) = self.procs.get_mut(&key) else {
            return Answer::Now(Err(OpError::NoContainer(key.0)));
        };
        match (p.finished, p.status) {
            (true, Some(status)) => Answer::Now(Ok(Reply::Exited { status })),
            _ => {
                p.waiters.push(req);
                Answer::Later
            }
        }
    }

    fn resize(&mut self, id: &str, exec_id: Option<String>, rows: u16, cols: u16) -> Result<(), OpError> {
        let key: Key = (id.to_owned(), exec_id);
        let who = who(&key);
        let p = self.proc_of(&key)?;
        let console = p.console.as_ref().ok_or_else(|| refused(&who, "it has no terminal to resize"))?;
        sys::set_winsize(console.as_fd(), rows, cols).map_err(io_failed(&who, "resize"))
    }

    fn update(&mut self, id: &str, resources: serde_json::Value) -> Result<(), OpError> {
        let who = format!("container {id}");
        let c = self.container(id)?;
        let r: oci_spec::runtime::LinuxResources =
            serde_json::from_value(resources).map_err(|e| refused(&who, format!("invalid resources: {e}")))?;
        self.iso.update(&c.state, &r).map_err(failed(&who, "update"))
    }

    /// Kills what runs of container `id`, delivers its last output and exit statuses, and removes everything
    /// it had in the guest: cgroup, state, bundle, shares.
    pub(crate) fn delete(&mut self, id: &str) -> Result<(), OpError> {
        let who = format!("container {id}");
        let state = self.container(id)?.state.clone();
        let live = |s: &Server| -> Vec<i32> {
            s.procs.iter().filter(|(k, p)| k.0 == id && p.status.is_none()).map(|(_, p)| p.pid).collect()
        };
        if !live(self).is_empty() {
            let _ = self.iso.kill(&state, libc::SIGKILL, true);
            for pid in live(self) {
                // SAFETY: kill takes two integers; these pids are our unreaped children.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while !live(self).is_empty() && Instant::now() < deadline {
                self.reap();
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.drain_outputs_of(id);
        let stuck = live(self);
        if !stuck.is_empty() {
            return Err(refused(&who, format!("processes {stuck:?} did not die after SIGKILL; try again")));
        }
        self.iso.cleanup(&state).map_err(failed(&who, "cleanup"))?;
        let Some(c) = self.containers.remove(id) else {
            return Ok(());
        };
        if let Ok(cid) = ContainerId::parse(id) {
            match self.store.lock(&cid) {
                Ok(l) => {
                    if let Err(e) = l.remove() {
                        log(format!("{who}: {e}"));
                    }
                }
                Err(e) => log(format!("{who}: {e}")),
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&c.bundle_dir) {
            log(format!("{who}: removing {}: {e}", c.bundle_dir.display()));
        }
        unmount_all(&c.mounts);
        self.procs.retain(|k, _| k.0 != id);
        self.pids.retain(|_, k| k.0 != id);
        self.inputs.retain(|_, i| i.key.0 != id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plumbing_follows_the_stream_ids() {
        let p = plumb(&Stdio { terminal: false, stdin: Some(1), stdout: Some(2), stderr: None }, false).unwrap();
        assert_eq!(p.stdin.as_ref().map(|s| s.0), Some(1));
        assert_eq!(p.outputs.iter().map(|o| o.0).collect::<Vec<_>>(), vec![Some(2)]);
        // What the process writes on stdout reaches the agent's end.
        nix::unistd::write(&p.child[1], b"x").unwrap();
        let mut b = [0u8; 4];
        assert_eq!(nix::unistd::read(p.outputs[0].1.as_raw_fd(), &mut b).unwrap(), 1);
        let t = plumb(&Stdio { terminal: true, stdin: Some(1), stdout: Some(2), stderr: Some(3) }, true).unwrap();
        assert!(t.stdin.is_none() && t.outputs.is_empty(), "with a terminal the pty carries everything");
    }

    #[test]
    fn chain_skips_repeated_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: inner failed")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner failed"));
        assert_eq!(chain(&e), "outer: inner failed");
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer2(#[source] std::io::Error);
        assert_eq!(chain(&Outer2(std::io::Error::other("why"))), "outer: why");
    }

    #[test]
    fn a_missing_share_names_tag_and_path() {
        let d = tempfile::tempdir().unwrap();
        let share = Share {
            tag: "no-such-tag".into(),
            guest_path: d.path().join("m").to_string_lossy().into_owned(),
            readonly: true,
        };
        let e = mount_share("container c", &share).unwrap_err().to_string();
        assert!(e.starts_with("container c: mounting a share: 9p tag no-such-tag on "), "{e}");
        let rel = Share { tag: "t".into(), guest_path: "rel".into(), readonly: false };
        assert!(mount_share("container c", &rel).unwrap_err().to_string().contains("relative"));
    }
}
