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
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hako_proto::{read_frame, write_frame, Event, Frame, Message, Op, Reply};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::{call_port, hello, NoHello, API_SOCKET};
use crate::qemu::{listen, Boot, Launched, NoConnection, VmConfig};
use crate::qmp::Qmp;
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
    /// Start from a VM template of this shape (made first if there is none); boot the kernel if that fails.
    #[serde(default)]
    pub template: bool,
    /// The engine's network namespace whose interfaces the VM takes over.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// Those interfaces.
    #[serde(default)]
    pub nics: Vec<hako_proto::NetIf>,
}

/// The file name of the plan.
pub const PLAN: &str = "vm.json";
/// QEMU's connection for the protocol port.
pub const CTL_SOCKET: &str = "ctl.sock";
/// The guest console.
pub const CONSOLE_LOG: &str = "console.log";
/// QEMU's monitor while a VM starts from a template.
pub const QMP_SOCKET: &str = "qmp.sock";
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
                // Whatever the agent answered (a create that failed left no container to delete), the
                // container is gone for hako: the VM powers off once it holds none.
                (Pending::Delete(id), _) => {
                    r.containers.remove(id);
                    r.owners.remove(id);
                    last =
                        r.containers.is_empty() && !r.pending.values().any(|(_, _, k)| matches!(k, Pending::Create(_)));
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
    while let Ok(Some(frame)) = read_frame(&mut reader) {
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

/// Entry point of `hako vm-supervisor DIR`; `ready_fd` receives "ok" once the agent said hello; `commit_fd`
/// gives one byte once `create` saved the container, or end of file if `create` died before: then the
/// supervisor exits at once, and QEMU dies with it (its parent-death signal).
pub fn main(
    dir: &Path,
    ready_fd: Option<i32>,
    commit_fd: Option<i32>,
    config: impl FnOnce(&Plan) -> Result<VmConfig, VmError>,
) -> i32 {
    let mut ready = ready_fd.map(crate::take_passed_fd);
    if let Some(fd) = commit_fd {
        let mut commit = crate::take_passed_fd(fd);
        std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            let read = loop {
                match std::io::Read::read(&mut commit, &mut byte) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            };
            if !matches!(read, Ok(1)) {
                eprintln!("supervisor: the create that started this VM died before it finished: stopping the VM");
                std::process::exit(1);
            }
        });
    }
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
    let mut vm = config(&plan)?;
    // The taps live as long as this process (QEMU holds them too); a fallback boot reuses them.
    let taps = crate::net::connect(plan.netns.as_deref(), &plan.nics)?;
    vm.taps = taps.iter().map(|t| t.as_raw_fd()).collect();
    let api_path = dir.join(API_SOCKET);
    let _ = std::fs::remove_file(&api_path);
    let api = UnixListener::bind(&api_path)
        .map_err(|e| VmError::Supervisor(format!("listening on {}: {e}", api_path.display())))?;

    let started = Instant::now();
    let deadline = started + Duration::from_millis(plan.boot_timeout_ms);
    let restored = if plan.template {
        match crate::template::get_or_make(&vm, deadline).and_then(|(t, made)| {
            if made {
                eprintln!(
                    "supervisor: made the VM template {} in {} ms",
                    t.dir.display(),
                    started.elapsed().as_millis()
                );
            }
            restore(&vm, &t, dir, deadline).map(|r| (r, t))
        }) {
            Ok((r, t)) => {
                eprintln!(
                    "supervisor: started from the VM template {} in {} ms",
                    t.dir.display(),
                    started.elapsed().as_millis()
                );
                Some(r)
            }
            Err(e) => {
                eprintln!("supervisor: {e}; booting the kernel instead");
                None
            }
        }
    } else {
        None
    };
    let (mut qemu, agent) = match restored {
        Some(r) => r,
        None => {
            let booted = boot(&vm, dir, &plan, deadline)?;
            let images = [vm.assets.kernel.as_path(), vm.assets.initramfs.as_path()];
            if let Err(e) = crate::qemu::page_out_boot_images(booted.0.child.id() as i32, &images) {
                eprintln!(
                    "supervisor: QEMU keeps its copy of the boot images ({e}); the VM works, it only uses more memory"
                );
            }
            booted
        }
    };
    let reader = agent.try_clone().map_err(|e| VmError::Supervisor(e.to_string()))?;
    let console = dir.join(CONSOLE_LOG);

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
    let status = qemu.child.wait().map_err(|e| VmError::Supervisor(format!("waiting for QEMU: {e}")))?;
    let clean = sup.routes.lock().unwrap_or_else(|p| p.into_inner()).shutting_down;
    let why = if clean {
        "the VM was shut down".to_string()
    } else {
        format!("QEMU exited unexpectedly ({status}){}", crate::qemu::tail_of(&console, 5))
    };
    sup.vm_died(&why);
    if let Some(ns) = &plan.netns {
        crate::net::disconnect(ns, &plan.nics);
    }
    drop(taps);
    let _ = std::fs::remove_file(&api_path);
    let _ = std::fs::remove_file(dir.join(QEMU_PID));
    if !clean {
        eprintln!("supervisor: {why}");
    }
    Ok(if clean { 0 } else { 1 })
}

/// Boots the kernel and waits for the agent's hello.
fn boot(vm: &VmConfig, dir: &Path, plan: &Plan, deadline: Instant) -> Result<(Launched, UnixStream), VmError> {
    let ctl = listen(&vm.ctl_socket)?;
    let mut qemu = Launched::spawn(vm, None)?;
    let _ = std::fs::write(dir.join(QEMU_PID), qemu.child.id().to_string());
    // QEMU connects the protocol port as soon as it starts; the agent speaks once the guest has booted.
    let within = format!("the VM did not boot within {} ms", plan.boot_timeout_ms);
    let mut agent = qemu.accept(&ctl, deadline, "the protocol port").map_err(|e| {
        qemu.fail(match e {
            NoConnection::Late(what) => format!("{within} (QEMU did not connect {what})"),
            NoConnection::Failed(e) => e,
        })
    })?;
    let _ = std::fs::remove_file(&vm.ctl_socket);
    hello(&mut agent, deadline).map_err(|e| {
        qemu.fail(match e {
            NoHello::Silent(e) => format!("{within} ({e})"),
            NoHello::Wrong(e) => e,
        })
    })?;
    Ok((qemu, agent))
}

/// Starts the VM from template `t`: QEMU loads the devices' state, the guest resumes inside the agent, and
/// the agent takes fresh entropy and the time before it serves.
fn restore(
    vm: &VmConfig,
    t: &crate::template::Template,
    dir: &Path,
    deadline: Instant,
) -> Result<(Launched, UnixStream), VmError> {
    let ctl = listen(&vm.ctl_socket)?;
    let mon_path = dir.join(QMP_SOCKET);
    let mon = listen(&mon_path)?;
    let state =
        std::fs::File::open(t.state()).map_err(|e| VmError::Setup(format!("opening {}: {e}", t.state().display())))?;
    let mut r = vm.clone();
    r.boot = Boot::Restore { memory: t.memory(), qmp: mon_path.clone() };
    let mut qemu = Launched::spawn(&r, Some(state.as_raw_fd()))?;
    let _ = std::fs::write(dir.join(QEMU_PID), qemu.child.id().to_string());
    let entropy = crate::template::entropy()?;
    let resumed = (|| -> Result<UnixStream, String> {
        let mut agent = qemu.accept(&ctl, deadline, "the protocol port")?;
        let mon = qemu.accept(&mon, deadline, "its monitor")?;
        let mut qmp = Qmp::new(mon, deadline).map_err(|e| e.to_string())?;
        let fail = |e: VmError| format!("restoring the VM from {}: {e}", t.dir.display());
        qmp.ignore_shared_memory().map_err(fail)?;
        qmp.execute("migrate-incoming", Some(json!({"uri": format!("fd:{}", state.as_raw_fd())}))).map_err(fail)?;
        qmp.poll("query-status", |v| Ok(v["status"] != "inmigrate")).map_err(fail)?;
        qmp.execute("cont", None).map_err(fail)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let op = Op::Restore { unix_secs: now.as_secs() as i64, nanos: now.subsec_nanos(), entropy };
        call_port(&mut agent, op, deadline)?;
        Ok(agent)
    })();
    let _ = std::fs::remove_file(&mon_path);
    let _ = std::fs::remove_file(&vm.ctl_socket);
    match resumed {
        Ok(agent) => Ok((qemu, agent)),
        Err(e) => Err(qemu.fail(e)),
    }
}

/// The paths a supervisor leaves in a state directory.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    [API_SOCKET, CTL_SOCKET, QMP_SOCKET, QEMU_PID, PLAN, CONSOLE_LOG].iter().map(|f| dir.join(f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sup() -> (Sup, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        // A missing request fails the test instead of hanging it.
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (Sup { agent: Mutex::new(a), routes: Mutex::new(Routes::default()) }, b)
    }

    fn next_op(agent: &mut UnixStream) -> Op {
        match read_frame(agent).unwrap() {
            Some(Frame::Msg(Message::Request { op, .. })) => op,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn deleting_a_container_whose_create_failed_powers_the_vm_off_at_once() {
        let (sup, mut agent) = sup();
        sup.forward(None, 1, Op::Delete { id: "c".into() });
        assert!(matches!(next_op(&mut agent), Op::Delete { .. }));
        // The agent never created "c": it refuses the delete.
        sup.answer(1, Err("container c: no such container".into()));
        assert!(matches!(next_op(&mut agent), Op::Shutdown), "the VM must power off, not wait to be killed");
    }

    #[test]
    fn deleting_one_of_two_containers_keeps_the_vm() {
        let (sup, mut agent) = sup();
        for (req, id) in [(1, "a"), (2, "b")] {
            sup.forward(
                None,
                0,
                Op::Create {
                    id: id.into(),
                    config: serde_json::json!({}),
                    shares: Vec::new(),
                    stdio: hako_proto::Stdio::default(),
                    net: Vec::new(),
                    sandbox: None,
                },
            );
            next_op(&mut agent);
            sup.answer(req, Ok(Reply::Created { pid: 1 }));
        }
        sup.forward(None, 0, Op::Delete { id: "a".into() });
        next_op(&mut agent);
        sup.answer(3, Ok(Reply::Done));
        assert!(!sup.routes.lock().unwrap().shutting_down);
        sup.forward(None, 0, Op::Delete { id: "b".into() });
        next_op(&mut agent);
        sup.answer(4, Ok(Reply::Done));
        assert!(matches!(next_op(&mut agent), Op::Shutdown));
    }
}
