//! The VM supervisor: one long-lived process per VM (as runhcs keeps its utility VM in a "vmshim"). It starts
//! QEMU, waits for the agent's hello, and then relays hako-proto between the agent and any number of clients
//! on `<state dir>/vm.sock` (CLI commands and the per-process shadows), renumbering requests and stdio streams
//! so that clients never see each other. It is built for several containers per VM (a pod): containers are
//! keyed by id everywhere; today `create` makes one VM per container.
//!
//! Lifecycle: the VM lives until the last container in it is deleted (then the agent powers it off) or until
//! QEMU dies; either way every pending request is answered and every waiting client learns the exit, and the
//! supervisor exits. If a client that created a container disconnects before that container exited (its
//! shadow was killed), the container is killed too, so nothing runs on unobserved.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hako_proto::{check_hello, read_frame, write_frame, Event, Frame, Message, Op, Reply};
use serde::{Deserialize, Serialize};

use crate::client::API_SOCKET;
use crate::qemu::VmConfig;
use crate::VmError;

/// What `create` hands the supervisor (written to `<dir>/vm.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// vCPUs.
    pub cpus: u32,
    /// RAM in MiB.
    pub memory_mib: u64,
    /// Shared directories.
    pub shares: Vec<crate::qemu::ShareDir>,
    /// How long the guest may take to say hello.
    pub boot_timeout_ms: u64,
    /// QEMU's TCG translation cache in MiB (None: QEMU's default).
    #[serde(default)]
    pub tcg_cache_mib: Option<u64>,
}

/// The file name of the plan.
pub const PLAN: &str = "vm.json";
/// QEMU's connection for the protocol port.
pub const CTL_SOCKET: &str = "ctl.sock";
/// The guest console.
pub const CONSOLE_LOG: &str = "console.log";
/// QEMU's pid.
pub const QEMU_PID: &str = "qemu.pid";

type ConnId = u64;

#[derive(Default)]
struct Routes {
    next_req: u64,
    next_stream: u32,
    next_conn: ConnId,
    /// agent req -> (client, client's req, the op's container and kind for bookkeeping).
    pending: HashMap<u64, (Option<ConnId>, u64, Pending)>,
    /// agent stream -> (client, client's stream): guest -> host data.
    out: HashMap<u32, (ConnId, u32)>,
    /// (client, client's stream) -> agent stream: host -> guest data.
    inp: HashMap<(ConnId, u32), u32>,
    conns: HashMap<ConnId, Arc<Mutex<UnixStream>>>,
    /// container id -> the client that created it and whether it has exited.
    owners: HashMap<String, ConnId>,
    containers: HashSet<String>,
    exited: HashSet<String>,
    shutting_down: bool,
}

#[derive(Debug, Clone)]
enum Pending {
    Other,
    Create(String),
    Delete(String),
}

struct Sup {
    agent: Mutex<UnixStream>,
    routes: Mutex<Routes>,
}

impl Sup {
    fn to_agent(&self, f: &Frame) -> bool {
        let mut a = self.agent.lock().unwrap_or_else(|p| p.into_inner());
        write_frame(&mut *a, f).is_ok()
    }

    fn to_conn(conn: &Arc<Mutex<UnixStream>>, f: &Frame) {
        let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
        let _ = write_frame(&mut *c, f);
    }

    /// Sends `op` to the agent for `conn` (None: nobody waits for the answer).
    fn forward(&self, conn: Option<ConnId>, client_req: u64, op: Op) {
        let kind = match &op {
            Op::Create { id, .. } => Pending::Create(id.clone()),
            Op::Delete { id } => Pending::Delete(id.clone()),
            _ => Pending::Other,
        };
        let req = {
            let mut r = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            r.next_req += 1;
            let req = r.next_req;
            r.pending.insert(req, (conn, client_req, kind));
            req
        };
        if !self.to_agent(&Frame::Msg(Message::Request { req, op })) {
            self.answer(req, Err("the VM's agent is gone".into()));
        }
    }

    fn answer(&self, req: u64, result: Result<Reply, String>) {
        let (target, last) = {
            let mut r = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            let Some((conn, client_req, kind)) = r.pending.remove(&req) else { return };
            let mut last = false;
            match (&kind, &result) {
                (Pending::Create(id), Ok(_)) => {
                    r.containers.insert(id.clone());
                    if let Some(c) = conn {
                        r.owners.insert(id.clone(), c);
                    }
                }
                (Pending::Delete(id), Ok(_)) => {
                    r.containers.remove(id);
                    r.owners.remove(id);
                    last = r.containers.is_empty();
                }
                _ => {}
            }
            (conn.and_then(|c| r.conns.get(&c).cloned()).map(|c| (c, client_req)), last)
        };
        if let Some((conn, client_req)) = target {
            Sup::to_conn(&conn, &Frame::Msg(Message::Response { req: client_req, result }));
        }
        if last {
            self.shutdown();
        }
    }

    fn shutdown(&self) {
        {
            let mut r = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            if r.shutting_down {
                return;
            }
            r.shutting_down = true;
        }
        self.forward(None, 0, Op::Shutdown);
    }

    /// Rewrites the client's stream ids in `stdio` to fresh agent ones and records both directions.
    fn map_stdio(&self, conn: ConnId, stdio: &mut hako_proto::Stdio) {
        let mut r = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = |r: &mut Routes, id: &mut Option<u32>, host_to_guest: bool| {
            if let Some(client) = *id {
                r.next_stream += 1;
                let agent = r.next_stream;
                if host_to_guest {
                    r.inp.insert((conn, client), agent);
                } else {
                    r.out.insert(agent, (conn, client));
                }
                *id = Some(agent);
            }
        };
        fresh(&mut r, &mut stdio.stdin, true);
        fresh(&mut r, &mut stdio.stdout, false);
        fresh(&mut r, &mut stdio.stderr, false);
    }

    /// The VM is gone: answer everything, tell everyone.
    fn vm_died(&self, why: &str) {
        let (pending, conns, running) = {
            let r = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            let pending: Vec<u64> = r.pending.keys().copied().collect();
            let conns: Vec<_> = r.conns.values().cloned().collect();
            let running: Vec<String> = r.containers.iter().filter(|c| !r.exited.contains(*c)).cloned().collect();
            (pending, conns, running)
        };
        for req in pending {
            self.answer(req, Err(format!("the VM stopped: {why}")));
        }
        for id in running {
            let ev = Frame::Msg(Message::Event { event: Event::Exited { id, exec_id: None, status: 255 } });
            for c in &conns {
                Sup::to_conn(c, &ev);
            }
        }
        for c in &conns {
            let c = c.lock().unwrap_or_else(|p| p.into_inner());
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn agent_loop(sup: Arc<Sup>, mut reader: UnixStream) {
    loop {
        let frame = match read_frame(&mut reader) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => return,
        };
        match frame {
            Frame::Msg(Message::Response { req, result }) => sup.answer(req, result),
            Frame::Msg(Message::Event { event }) => {
                if let Event::Exited { id, exec_id: None, .. } = &event {
                    sup.routes.lock().unwrap_or_else(|p| p.into_inner()).exited.insert(id.clone());
                }
                if let Event::Log { msg } = &event {
                    eprintln!("agent: {msg}");
                }
                let conns: Vec<_> =
                    sup.routes.lock().unwrap_or_else(|p| p.into_inner()).conns.values().cloned().collect();
                for c in conns {
                    Sup::to_conn(&c, &Frame::Msg(Message::Event { event: event.clone() }));
                }
            }
            Frame::Data { stream, data } => {
                let target = {
                    let r = sup.routes.lock().unwrap_or_else(|p| p.into_inner());
                    r.out.get(&stream).and_then(|(c, s)| r.conns.get(c).map(|conn| (conn.clone(), *s)))
                };
                if let Some((conn, s)) = target {
                    Sup::to_conn(&conn, &Frame::Data { stream: s, data });
                }
            }
            Frame::Eof { stream } => {
                let target = {
                    let mut r = sup.routes.lock().unwrap_or_else(|p| p.into_inner());
                    r.out.remove(&stream).and_then(|(c, s)| r.conns.get(&c).map(|conn| (conn.clone(), s)))
                };
                if let Some((conn, s)) = target {
                    Sup::to_conn(&conn, &Frame::Eof { stream: s });
                }
            }
            Frame::Msg(other) => eprintln!("supervisor: unexpected message from the agent: {other:?}"),
        }
    }
}

fn client_loop(sup: Arc<Sup>, conn: ConnId, mut reader: UnixStream) {
    loop {
        let frame = match read_frame(&mut reader) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => break,
        };
        match frame {
            Frame::Msg(Message::Request { req, mut op }) => {
                match &mut op {
                    Op::Create { stdio, .. } | Op::Exec { stdio, .. } => sup.map_stdio(conn, stdio),
                    _ => {}
                }
                sup.forward(Some(conn), req, op);
            }
            Frame::Data { stream, data } => {
                let agent = sup.routes.lock().unwrap_or_else(|p| p.into_inner()).inp.get(&(conn, stream)).copied();
                if let Some(s) = agent {
                    sup.to_agent(&Frame::Data { stream: s, data });
                }
            }
            Frame::Eof { stream } => {
                let agent = sup.routes.lock().unwrap_or_else(|p| p.into_inner()).inp.remove(&(conn, stream));
                if let Some(s) = agent {
                    sup.to_agent(&Frame::Eof { stream: s });
                }
            }
            Frame::Msg(_) => {}
        }
    }
    // The client is gone: kill what it created and left running, forget its routes.
    let orphans: Vec<String> = {
        let mut r = sup.routes.lock().unwrap_or_else(|p| p.into_inner());
        r.conns.remove(&conn);
        r.inp.retain(|(c, _), _| *c != conn);
        r.out.retain(|_, (c, _)| *c != conn);
        for p in r.pending.values_mut() {
            if p.0 == Some(conn) {
                p.0 = None;
            }
        }
        r.owners.iter().filter(|(id, c)| **c == conn && !r.exited.contains(*id)).map(|(id, _)| id.clone()).collect()
    };
    for id in orphans {
        sup.forward(None, 0, Op::Kill { id, exec_id: None, signal: libc::SIGKILL, all: true });
    }
}

/// Writes one line to the readiness pipe of `create`: "ok" or the error.
fn report(ready: &mut Option<std::fs::File>, msg: &str) {
    if let Some(f) = ready.as_mut() {
        let _ = writeln!(f, "{msg}");
    }
    *ready = None;
}

/// Entry point of `hako vm-supervisor DIR`; `ready_fd` receives "ok" once the agent said hello.
pub fn main(dir: &Path, ready_fd: Option<i32>, config: impl FnOnce(&Plan) -> Result<VmConfig, VmError>) -> i32 {
    // SAFETY: the fd was passed to us by `create` for this purpose only.
    let mut ready = ready_fd.map(|fd| unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    match run(dir, &mut ready, config) {
        Ok(code) => code,
        Err(e) => {
            report(&mut ready, &e.to_string());
            eprintln!("supervisor: {e}");
            1
        }
    }
}

fn run(
    dir: &Path,
    ready: &mut Option<std::fs::File>,
    config: impl FnOnce(&Plan) -> Result<VmConfig, VmError>,
) -> Result<i32, VmError> {
    let plan: Plan = serde_json::from_slice(
        &std::fs::read(dir.join(PLAN))
            .map_err(|e| VmError::Supervisor(format!("reading {}: {e}", dir.join(PLAN).display())))?,
    )
    .map_err(|e| VmError::Supervisor(format!("bad {}: {e}", dir.join(PLAN).display())))?;
    let vm = config(&plan)?;
    let ctl_path = dir.join(CTL_SOCKET);
    let _ = std::fs::remove_file(&ctl_path);
    let ctl = UnixListener::bind(&ctl_path)
        .map_err(|e| VmError::Supervisor(format!("listening on {}: {e}", ctl_path.display())))?;
    let api_path = dir.join(API_SOCKET);
    let _ = std::fs::remove_file(&api_path);
    let api = UnixListener::bind(&api_path)
        .map_err(|e| VmError::Supervisor(format!("listening on {}: {e}", api_path.display())))?;

    let mut cmd = vm.command();
    // Under TCG the guest's memory is touched through QEMU's software MMU, where huge pages buy nothing, and
    // QEMU asks for transparent huge pages on guest RAM and its translation cache: one touched byte then holds
    // 2 MiB. Under KVM huge pages speed the guest up, so they stay.
    let no_thp = vm.accel.name == "tcg";
    // SAFETY: prctl is async-signal-safe; QEMU must not outlive its supervisor. PR_SET_THP_DISABLE is kept
    // across execve.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if no_thp {
                libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut qemu = cmd.spawn().map_err(|e| VmError::Setup(format!("starting {}: {e}", vm.assets.qemu.display())))?;
    let _ = std::fs::write(dir.join(QEMU_PID), qemu.id().to_string());
    let mut qemu_err = qemu.stderr.take();

    // QEMU connects the protocol port as soon as it starts; the agent speaks once the guest has booted.
    ctl.set_nonblocking(true).ok();
    let deadline = started + Duration::from_millis(plan.boot_timeout_ms);
    let console = dir.join(CONSOLE_LOG);
    let fail =
        |qemu: &mut std::process::Child, qemu_err: &mut Option<std::process::ChildStderr>, what: String| -> VmError {
            let _ = qemu.kill();
            let status = qemu.wait().map(|s| s.to_string()).unwrap_or_default();
            let mut err = String::new();
            if let Some(e) = qemu_err.as_mut() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            let tail = tail_of(&console, 5);
            VmError::Boot(format!(
                "VM boot failed: {what} (qemu {status}{}){}",
                if err.trim().is_empty() { String::new() } else { format!(": {}", err.trim()) },
                tail
            ))
        };
    let agent = loop {
        match ctl.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(fail(&mut qemu, &mut qemu_err, format!("accepting QEMU's connection: {e}"))),
        }
        if let Ok(Some(_)) = qemu.try_wait() {
            return Err(fail(&mut qemu, &mut qemu_err, "QEMU exited before the VM started".into()));
        }
        if Instant::now() > deadline {
            return Err(fail(
                &mut qemu,
                &mut qemu_err,
                format!(
                    "the VM did not boot within {} ms (QEMU did not connect the protocol port)",
                    plan.boot_timeout_ms
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    agent.set_nonblocking(false).ok();
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    agent.set_read_timeout(Some(left)).ok();
    let mut reader = agent.try_clone().map_err(|e| VmError::Supervisor(e.to_string()))?;
    match read_frame(&mut reader) {
        Ok(Some(Frame::Msg(m))) => check_hello(&m).map_err(|e| fail(&mut qemu, &mut qemu_err, e.to_string()))?,
        Ok(_) => {
            return Err(fail(
                &mut qemu,
                &mut qemu_err,
                "the guest closed the protocol port before its agent said hello".into(),
            ))
        }
        Err(e) => {
            return Err(fail(
                &mut qemu,
                &mut qemu_err,
                format!("the VM did not boot within {} ms ({e})", plan.boot_timeout_ms),
            ))
        }
    }
    agent.set_read_timeout(None).ok();
    drop(ctl);
    if let Err(e) = crate::qemu::page_out_boot_images(qemu.id() as i32, &[&vm.assets.kernel, &vm.assets.initramfs]) {
        eprintln!("supervisor: QEMU keeps its copy of the boot images ({e}); the VM works, it only uses more memory");
    }
    let _ = std::fs::remove_file(&ctl_path);

    let sup = Arc::new(Sup { agent: Mutex::new(agent), routes: Mutex::new(Routes::default()) });
    {
        let sup = sup.clone();
        std::thread::spawn(move || {
            agent_loop(sup.clone(), reader);
        });
    }
    {
        let sup = sup.clone();
        std::thread::spawn(move || {
            for conn in api.incoming() {
                let Ok(conn) = conn else { continue };
                let Ok(reader) = conn.try_clone() else { continue };
                let id = {
                    let mut r = sup.routes.lock().unwrap_or_else(|p| p.into_inner());
                    r.next_conn += 1;
                    let id = r.next_conn;
                    r.conns.insert(id, Arc::new(Mutex::new(conn)));
                    id
                };
                let sup = sup.clone();
                std::thread::spawn(move || client_loop(sup, id, reader));
            }
        });
    }
    report(ready, "ok");
    let status = qemu.wait().map_err(|e| VmError::Supervisor(format!("waiting for QEMU: {e}")))?;
    let clean = sup.routes.lock().unwrap_or_else(|p| p.into_inner()).shutting_down;
    let why = if clean {
        "the VM was shut down".to_string()
    } else {
        format!("QEMU exited unexpectedly ({status}){}", tail_of(&console, 5))
    };
    sup.vm_died(&why);
    let _ = std::fs::remove_file(&api_path);
    let _ = std::fs::remove_file(dir.join(QEMU_PID));
    if !clean {
        eprintln!("supervisor: {why}");
    }
    Ok(if clean { 0 } else { 1 })
}

/// What the guest console says about a failure, as a suffix for error messages: the agent's own lines and
/// kernel panics first, else the last `n` lines.
pub fn tail_of(console: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(console).unwrap_or_default();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return format!("; guest console {} is empty", console.display());
    }
    let telling: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("hako") || l.contains("Kernel panic") || l.contains("not syncing"))
        .collect();
    let pick = if telling.is_empty() {
        &lines[lines.len().saturating_sub(n)..]
    } else {
        &telling[telling.len().saturating_sub(n)..]
    };
    format!("; guest console {}: {}", console.display(), pick.join(" | "))
}

/// The paths a supervisor leaves in a state directory.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    [API_SOCKET, CTL_SOCKET, QEMU_PID, PLAN, CONSOLE_LOG].iter().map(|f| dir.join(f)).collect()
}
