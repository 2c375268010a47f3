//! VM isolation: each container runs inside its own micro-VM with its own kernel (what Windows calls Hyper-V
//! isolation). [`VmIsolation`] implements [`hako_runtime::isolation::Isolation`] on top of three processes:
//!
//! - the **supervisor** ([`supervisor`], `hako vm-supervisor`): holds QEMU and relays the protocol; one per VM;
//! - the **shadow** ([`shadow`], `hako vm-shadow`): one per process in the VM; it is "the container's pid" for
//!   engines, owns the stdio they gave, forwards signals, exits with the process's status;
//! - **QEMU** ([`qemu`]), booting the guest kernel with hako's agent as /init ([`assets`], [`accel`]).
//!
//! Inside the guest the agent creates the container with the same process-isolation code as on the host, so
//! a config means the same in both modes. What cannot cross the VM boundary is refused with a clear error:
//! joining host namespaces by path, hooks that must run in the container's namespaces.

pub mod accel;
pub mod assets;
pub mod client;
pub mod net;
pub mod qemu;
pub mod qmp;
pub mod shadow;
pub mod supervisor;
pub mod template;

use std::io::BufRead;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hako_proto::{Op, Reply};
use hako_runtime::bundle::Bundle;
use hako_runtime::isolation::{BoxError, CreateOptions, ExecOptions, Isolation, Spawned};
use hako_runtime::procfs::Owned;
use hako_runtime::state::{create_private, write_private, Locked, State, Status};
use oci_spec::runtime::{LinuxResources, Spec};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::qemu::ShareDir;

/// Errors of VM isolation; each names the step and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A part of the host setup is missing.
    #[error("{0}")]
    Setup(String),
    /// The config asks for something a VM cannot do.
    #[error("{0}")]
    Config(String),
    /// The VM did not boot (the text says how; the supervisor reports it through `create`).
    #[error("{0}")]
    Boot(String),
    /// The supervisor is unreachable or failed.
    #[error("{0}")]
    Supervisor(String),
    /// The agent answered with an error.
    #[error("{0}")]
    Agent(String),
    /// The protocol broke.
    #[error(transparent)]
    Proto(#[from] hako_proto::ProtoError),
}

/// The annotation that chooses a container's isolation.
pub const ISOLATION_ANNOTATION: &str = "org.hako.isolation";
/// The annotation that sets the VM's memory in MiB (at least what the container's limit needs).
pub const MEMORY_ANNOTATION: &str = "org.hako.vm.memory_mib";
/// The annotation that sets the VM's vCPUs.
pub const CPUS_ANNOTATION: &str = "org.hako.vm.cpus";
/// The annotation that caps QEMU's TCG translation cache, in MiB (TCG only; KVM has none). QEMU's default
/// (up to 1 GiB, touched as guest code is translated) is the fastest; a smaller cache holds less host memory
/// and costs start time (docs/performance.md).
pub const TCG_CACHE_ANNOTATION: &str = "org.hako.vm.tcg_cache_mib";

/// The TCG translation cache `spec` asks for, in MiB (None: QEMU's default).
pub fn tcg_cache_mib(spec: &Spec) -> Result<Option<u64>, VmError> {
    let Some(v) = spec.annotations().as_ref().and_then(|a| a.get(TCG_CACHE_ANNOTATION)) else { return Ok(None) };
    match v.trim().parse::<u64>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(Some(n)),
        _ => Err(VmError::Config(format!(
            "annotation {TCG_CACHE_ANNOTATION}={v:?} is not a size: use a number of MiB from 1 to 4096 \
             (16 keeps an idle VM's memory low at some start time), or drop it for QEMU's default"
        ))),
    }
}
/// The annotation that says whether the VM may start from a VM template (`on`, the default) or must boot
/// its kernel (`off`); see [`template`].
pub const TEMPLATE_ANNOTATION: &str = "org.hako.vm.template";

/// Whether `spec` lets its VM start from a template.
pub fn use_template(spec: &Spec) -> Result<bool, VmError> {
    match spec.annotations().as_ref().and_then(|a| a.get(TEMPLATE_ANNOTATION)).map(|v| v.trim()) {
        None | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(v) => Err(VmError::Config(format!(
            "annotation {TEMPLATE_ANNOTATION}={v:?} is not valid: use on (start from a saved VM of the same shape, \
             the default) or off (boot the guest kernel)"
        ))),
    }
}

/// Guest RAM the kernel and agent need on top of the container's memory limit.
pub const GUEST_OVERHEAD_MIB: u64 = 64;
/// Guest RAM when the container has no memory limit.
pub const DEFAULT_MEMORY_MIB: u64 = 128;

/// Where shares appear in the guest.
const GUEST_SHARES: &str = "/run/hako/shares";

/// What the VM backend keeps in state.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Data {
    supervisor_pid: i32,
    supervisor_start: u64,
    state_dir: PathBuf,
    accel: String,
    cpus: u32,
    memory_mib: u64,
}

/// The backend's data in `state`; an error, never a default (an empty state directory would be the current
/// directory, and cleanup removes files there).
fn data(state: &State) -> Result<Data, BoxError> {
    Ok(state.backend::<Data>()?)
}

/// VM isolation.
#[derive(Debug, Default)]
pub struct VmIsolation;

fn boxed(e: VmError) -> BoxError {
    Box::new(e)
}

fn proc_start(pid: i32) -> u64 {
    hako_runtime::procfs::proc_stat(pid).map(|s| s.0).unwrap_or(0)
}

fn alive(pid: i32, start: u64) -> bool {
    hako_runtime::procfs::process_alive(pid, start)
}

/// The VM's vCPUs and RAM: never less than the container was promised, plus the guest's own needs.
pub fn sizing(spec: &Spec) -> (u32, u64) {
    let host_cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let ann = spec.annotations().as_ref();
    let res = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let mut cpus = 1u32;
    if let Some(cpu) = res.and_then(|r| r.cpu().as_ref()) {
        if let (Some(q), Some(p)) = (cpu.quota(), cpu.period()) {
            if q > 0 && p > 0 {
                cpus = cpus.max(((q as u64).div_ceil(p)) as u32);
            }
        }
        if let Some(set) = cpu.cpus() {
            let n: u32 = set
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => {
                        b.trim().parse::<u32>().unwrap_or(0).saturating_sub(a.trim().parse().unwrap_or(0)) + 1
                    }
                    None => 1,
                })
                .sum();
            cpus = cpus.max(n);
        }
    }
    if let Some(n) = ann.and_then(|a| a.get(CPUS_ANNOTATION)).and_then(|v| v.parse::<u32>().ok()) {
        cpus = cpus.max(n);
    }
    let cpus = cpus.clamp(1, host_cpus.max(1));
    let limit_mib = res
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0)
        .map(|l| (l as u64).div_ceil(1 << 20));
    let mut mem = match limit_mib {
        Some(l) => l + GUEST_OVERHEAD_MIB,
        None => DEFAULT_MEMORY_MIB,
    };
    if let Some(m) = ann.and_then(|a| a.get(MEMORY_ANNOTATION)).and_then(|v| v.parse::<u64>().ok()) {
        mem = mem.max(m);
    }
    (cpus, mem)
}

/// A bundle as its VM sees it.
#[derive(Debug)]
pub struct GuestView {
    /// The config as the guest must see it.
    pub config: serde_json::Value,
    /// The directories to share.
    pub shares: Vec<ShareDir>,
    /// The engine's network namespace, whose interfaces the VM takes over ([`net`]); the container then
    /// shares the guest's network namespace.
    pub netns: Option<PathBuf>,
}

/// Refuses what cannot cross the VM boundary and turns host paths into shares and the engine's network
/// namespace into the VM's network interfaces.
pub fn to_guest(spec: &Spec, bundle: &Bundle) -> Result<GuestView, VmError> {
    let linux = spec.linux().as_ref();
    let mut netns = None;
    for ns in linux.and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
        if let Some(p) = ns.path() {
            if ns.typ() == oci_spec::runtime::LinuxNamespaceType::Network {
                netns = Some(p.clone());
                continue;
            }
            return Err(VmError::Config(format!(
                "linux.namespaces: joining the {:?} namespace {} is not possible with VM isolation (the container runs in its own kernel): remove the path, or use process isolation",
                ns.typ(),
                p.display()
            )));
        }
    }
    if let Some(h) = spec.hooks() {
        if h.create_container().as_ref().is_some_and(|v| !v.is_empty())
            || h.start_container().as_ref().is_some_and(|v| !v.is_empty())
        {
            return Err(VmError::Config(
                "hooks.createContainer and hooks.startContainer run in the container's namespaces, which are inside the VM where host programs do not exist: remove them, or use process isolation".into(),
            ));
        }
    }
    let mut shares = vec![ShareDir { tag: "rootfs".into(), host: bundle.rootfs.clone(), readonly: false }];
    let mut config = serde_json::to_value(spec).map_err(|e| VmError::Config(e.to_string()))?;
    config["root"]["path"] = serde_json::json!(format!("{GUEST_SHARES}/rootfs"));
    if let Some(obj) = config.as_object_mut() {
        obj.remove("hooks");
    }
    if netns.is_some() {
        if let Some(list) = config.pointer_mut("/linux/namespaces").and_then(|n| n.as_array_mut()) {
            list.retain(|n| n.get("type").and_then(|t| t.as_str()) != Some("network"));
        }
    }
    if let Some(mounts) = config.get_mut("mounts").and_then(|m| m.as_array_mut()) {
        for m in mounts.iter_mut() {
            let opts: Vec<String> =
                m.get("options").and_then(|o| serde_json::from_value(o.clone()).ok()).unwrap_or_default();
            let is_bind = m.get("type").and_then(|t| t.as_str()) == Some("bind")
                || opts.iter().any(|o| o == "bind" || o == "rbind");
            if !is_bind {
                continue;
            }
            let Some(src) = m.get("source").and_then(|s| s.as_str()).map(PathBuf::from) else { continue };
            let src = if src.is_absolute() { src } else { bundle.path.join(src) };
            let meta = std::fs::metadata(&src).map_err(|e| {
                VmError::Config(format!(
                    "bind mount source {}: {e}: create it or fix mounts in config.json",
                    src.display()
                ))
            })?;
            let (dir, file) = if meta.is_dir() {
                (src.clone(), None)
            } else {
                (src.parent().map(Path::to_path_buf).unwrap_or_default(), src.file_name().map(|f| f.to_owned()))
            };
            let readonly = opts.iter().any(|o| o == "ro");
            let tag = match shares.iter().find(|s| s.host == dir) {
                Some(s) => s.tag.clone(),
                None => {
                    let tag = format!("m{}", shares.len());
                    shares.push(ShareDir { tag: tag.clone(), host: dir.clone(), readonly: false });
                    tag
                }
            };
            let _ = readonly;
            let guest = Path::new(GUEST_SHARES).join(&tag);
            let guest = match file {
                Some(f) => guest.join(f),
                None => guest,
            };
            m["source"] = serde_json::json!(guest);
        }
    }
    Ok(GuestView { config, shares, netns })
}

/// A pipe whose write end a child inherits as `HAKO_READY_FD`; the parent reads one line from it.
struct Ready {
    read: std::fs::File,
    write: OwnedFd,
}

impl Ready {
    fn new() -> Result<Ready, VmError> {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| VmError::Supervisor(format!("pipe: {e}")))?;
        Ok(Ready { read: std::fs::File::from(r), write: w })
    }

    /// Makes the write end survive exec in the child and names it in the environment.
    fn pass(&self, cmd: &mut Command) {
        let fd = self.write.as_raw_fd();
        cmd.env("HAKO_READY_FD", fd.to_string());
        // SAFETY: fcntl (a nix wrapper that does not allocate) on an fd inherited from the parent, in the child
        // before exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))?;
                Ok(())
            });
        }
    }

    /// The child's one line; the child's death without a line is an error naming `what`.
    fn wait(self, what: &str, log: &Path) -> Result<String, VmError> {
        drop(self.write);
        let mut line = String::new();
        let _ = std::io::BufReader::new(self.read).read_line(&mut line);
        let line = line.trim().to_string();
        if line == "ok" || line.starts_with("ok ") {
            return Ok(line);
        }
        if line.is_empty() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(VmError::Supervisor(format!(
                "{what} exited without a word: {}",
                log.lines().last().unwrap_or("it was killed or crashed before it logged anything").trim()
            )));
        }
        Err(VmError::Boot(line))
    }
}

fn hako_exe() -> PathBuf {
    std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
}

/// Opens a pty pair for a process with a terminal: (master, slave).
fn open_pty() -> Result<(OwnedFd, OwnedFd), VmError> {
    let r = nix::pty::openpty(None, None).map_err(|e| VmError::Supervisor(format!("openpty: {e}")))?;
    Ok((r.master, r.slave))
}

impl VmIsolation {
    /// Starts a shadow for `op` with the given stdio; returns its pid and the guest pid.
    fn spawn_shadow(dir: &Path, op: &Op, stdio: ShadowStdio) -> Result<(i32, u64), VmError> {
        let name = match op {
            Op::Exec { exec_id, .. } => format!("shadow-{exec_id}.json"),
            _ => "shadow-init.json".into(),
        };
        let opfile = dir.join(&name);
        write_private(&opfile, &serde_json::to_vec(op).map_err(|e| VmError::Supervisor(e.to_string()))?)
            .map_err(|e| VmError::Supervisor(format!("writing {}: {e}", opfile.display())))?;
        let ready = Ready::new()?;
        let mut cmd = Command::new(hako_exe());
        cmd.arg("vm-shadow").arg(dir).arg(&opfile);
        match stdio {
            ShadowStdio::Inherit => {}
            ShadowStdio::Fds([i, o, e]) => {
                let dup = |fd: i32| -> Result<Stdio, VmError> {
                    // SAFETY: the caller keeps the fd open while we spawn; we only duplicate it.
                    let owned = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
                        .try_clone_to_owned()
                        .map_err(|e| VmError::Supervisor(e.to_string()))?;
                    Ok(Stdio::from(owned))
                };
                cmd.stdin(dup(i)?).stdout(dup(o)?).stderr(dup(e)?);
            }
            ShadowStdio::Pty(slave) => {
                let c = |f: &OwnedFd| f.try_clone().map(Stdio::from).map_err(|e| VmError::Supervisor(e.to_string()));
                cmd.stdin(c(&slave)?).stdout(c(&slave)?).stderr(c(&slave)?);
            }
        }
        ready.pass(&mut cmd);
        let child = cmd.spawn().map_err(|e| VmError::Supervisor(format!("starting the shadow process: {e}")))?;
        let pid = child.id() as i32;
        let start = proc_start(pid);
        match ready.wait("the shadow process", Path::new("/dev/null")) {
            Ok(_) => {
                let _ = std::fs::remove_file(&opfile);
                Ok((pid, start))
            }
            Err(e) => {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                let _ = std::fs::remove_file(&opfile);
                Err(match e {
                    // `hako create` names the container itself: drop the agent's "container ID: ".
                    VmError::Boot(m) => VmError::Agent(match op {
                        Op::Create { id, .. } => {
                            m.strip_prefix(&format!("container {id}: ")).map(str::to_owned).unwrap_or(m)
                        }
                        _ => m,
                    }),
                    other => other,
                })
            }
        }
    }

    fn call(state: &State, op: Op) -> Result<Reply, BoxError> {
        let d = data(state)?;
        let mut c = Client::connect(&d.state_dir).map_err(boxed)?;
        c.call(op).map_err(boxed)
    }

    fn terminal_stdio(
        terminal: bool,
        console_socket: Option<&Path>,
        foreground: bool,
        fds: Option<[i32; 3]>,
    ) -> Result<(ShadowStdio, Option<OwnedFd>), VmError> {
        if !terminal {
            return Ok((fds.map(ShadowStdio::Fds).unwrap_or(ShadowStdio::Inherit), None));
        }
        if console_socket.is_none() && !foreground {
            return Err(VmError::Config(
                "process.terminal is true: pass --console-socket (or set terminal to false)".into(),
            ));
        }
        let (master, slave) = open_pty()?;
        match console_socket {
            Some(sock) => {
                hako_runtime::console::send_pty_master(sock, &master).map_err(|e| VmError::Config(e.to_string()))?;
                Ok((ShadowStdio::Pty(slave), None))
            }
            None => Ok((ShadowStdio::Pty(slave), Some(master))),
        }
    }
}

enum ShadowStdio {
    Inherit,
    Fds([i32; 3]),
    Pty(OwnedFd),
}

fn boot_timeout(accel: &str) -> u64 {
    std::env::var("HAKO_VM_BOOT_TIMEOUT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(if accel == "kvm" {
        10_000
    } else {
        60_000
    })
}

impl Isolation for VmIsolation {
    fn name(&self) -> &'static str {
        "vm"
    }

    fn create(&self, dir: &Locked, bundle: &Bundle, opts: &CreateOptions) -> Result<(State, Spawned), BoxError> {
        let spec = &bundle.spec;
        if opts.preserve_fds > 0 {
            return Err(boxed(VmError::Config(
                "--preserve-fds cannot pass host file descriptors into a VM: drop it, or use process isolation".into(),
            )));
        }
        let GuestView { config: guest, shares, netns } = to_guest(spec, bundle).map_err(boxed)?;
        let nics = match &netns {
            Some(p) => net::inspect(p).map_err(boxed)?,
            None => Vec::new(),
        };
        let assets = assets::Assets::locate().map_err(boxed)?;
        let accel =
            accel::choose(&assets.qemu, &dir.dir().parent().unwrap_or(Path::new("/run/hako")).join(".vm-accel.json"));
        let (cpus, memory_mib) = sizing(spec);
        let tcg_cache_mib = tcg_cache_mib(spec).map_err(boxed)?;
        let template = use_template(spec).map_err(boxed)?;
        let mut state = State::creating(
            dir.id(),
            bundle,
            self.name(),
            serde_json::to_value(Data {
                state_dir: dir.dir().to_owned(),
                accel: accel.name.clone(),
                cpus,
                memory_mib,
                ..Default::default()
            })?,
        );
        dir.save(&state)?;
        dir.save_config(spec)?;
        let result = (|| -> Result<Spawned, BoxError> {
            let plan = supervisor::Plan {
                cpus,
                memory_mib,
                shares: shares.clone(),
                boot_timeout_ms: boot_timeout(&accel.name),
                tcg_cache_mib,
                template,
                netns: netns.clone(),
                nics: nics.clone(),
            };
            write_private(&dir.dir().join(supervisor::PLAN), &serde_json::to_vec(&plan)?)?;
            let log = dir.dir().join("supervisor.log");
            // One open file description for both streams, so their writes never overwrite each other.
            let log_file = create_private(&log)?;
            let ready = Ready::new().map_err(boxed)?;
            let mut cmd = Command::new(hako_exe());
            cmd.arg("vm-supervisor").arg(dir.dir());
            cmd.stdin(Stdio::null()).stdout(Stdio::from(log_file.try_clone()?)).stderr(Stdio::from(log_file));
            ready.pass(&mut cmd);
            // SAFETY: setsid and umask are async-signal-safe; the supervisor must not get the caller's terminal
            // signals, and what it and QEMU create in the state directory (sockets, logs, pid file) is private.
            unsafe {
                cmd.pre_exec(|| {
                    let _ = nix::unistd::setsid();
                    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
                    Ok(())
                });
            }
            let sup = cmd.spawn()?;
            let mut d = data(&state)?;
            d.supervisor_pid = sup.id() as i32;
            d.supervisor_start = proc_start(d.supervisor_pid);
            state.backend = serde_json::to_value(&d)?;
            dir.save(&state)?;
            ready.wait("the VM supervisor", &log).map_err(boxed)?;

            let process = spec.process().as_ref();
            let terminal = process.and_then(|p| p.terminal()).unwrap_or(false);
            let (stdio, console) =
                Self::terminal_stdio(terminal, opts.console_socket.as_deref(), opts.foreground, opts.stdio)
                    .map_err(boxed)?;
            let share_list = shares
                .iter()
                .map(|s| hako_proto::Share {
                    tag: s.tag.clone(),
                    guest_path: format!("{GUEST_SHARES}/{}", s.tag),
                    readonly: s.readonly,
                })
                .collect();
            let op = Op::Create {
                id: state.id.clone(),
                config: guest,
                shares: share_list,
                stdio: shadow::stdio(terminal),
                net: nics.clone(),
            };
            let (pid, start) = Self::spawn_shadow(dir.dir(), &op, stdio).map_err(boxed)?;
            state.pid = pid;
            state.pid_start_time = start;
            dir.save(&state)?;
            // As crun: the hooks of create see the container as `created` (runc 1.1 says `creating`).
            let json = state.oci_json(Status::Created).to_string();
            if let Some(h) = spec.hooks() {
                for (phase, list) in [("prestart", h.prestart()), ("createRuntime", h.create_runtime())] {
                    if let Some(list) = list {
                        hako_runtime::hooks::run(phase, list, &json)?;
                    }
                }
            }
            Ok(Spawned { pid, console })
        })();
        match result {
            Ok(spawned) => {
                state.status = Status::Created;
                dir.save(&state)?;
                Ok((state, spawned))
            }
            Err(e) => {
                let _ = self.cleanup(&state);
                Err(e)
            }
        }
    }

    fn status(&self, state: &State) -> Status {
        if state.status == Status::Creating && state.pid == 0 {
            return Status::Creating;
        }
        if !alive(state.pid, state.pid_start_time) {
            return Status::Stopped;
        }
        state.status
    }

    fn start(&self, _dir: &Locked, state: &State) -> Result<(), BoxError> {
        Self::call(state, Op::Start { id: state.id.clone() }).map(drop)
    }

    fn kill(&self, state: &State, signal: i32, all: bool) -> Result<(), BoxError> {
        let d = data(state)?;
        if all && !alive(d.supervisor_pid, d.supervisor_start) {
            // The VM is gone, and every process of the container with it.
            return Ok(());
        }
        Self::call(state, Op::Kill { id: state.id.clone(), exec_id: None, signal, all }).map(drop)
    }

    fn exec(&self, state: &State, _config: &Spec, opts: &ExecOptions) -> Result<Spawned, BoxError> {
        if opts.preserve_fds > 0 {
            return Err(boxed(VmError::Config("--preserve-fds cannot pass host file descriptors into a VM".into())));
        }
        let terminal = opts.process.terminal().unwrap_or(false);
        let (stdio, console) =
            Self::terminal_stdio(terminal, opts.console_socket.as_deref(), opts.foreground, opts.stdio)
                .map_err(boxed)?;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let op = Op::Exec {
            id: state.id.clone(),
            exec_id: format!("exec-{}-{nanos}", std::process::id()),
            process: serde_json::to_value(&opts.process)?,
            stdio: shadow::stdio(terminal),
        };
        let (pid, _) = Self::spawn_shadow(&data(state)?.state_dir, &op, stdio).map_err(boxed)?;
        Ok(Spawned { pid, console })
    }

    fn pause(&self, state: &State) -> Result<(), BoxError> {
        Self::call(state, Op::Pause { id: state.id.clone() }).map(drop)
    }

    fn resume(&self, state: &State) -> Result<(), BoxError> {
        Self::call(state, Op::Resume { id: state.id.clone() }).map(drop)
    }

    fn pids(&self, state: &State) -> Result<Vec<i32>, BoxError> {
        match Self::call(state, Op::Ps { id: state.id.clone() })? {
            Reply::Pids { pids } => Ok(pids),
            other => Err(boxed(VmError::Agent(format!("unexpected answer to ps: {other:?}")))),
        }
    }

    fn stats(&self, state: &State) -> Result<serde_json::Value, BoxError> {
        match Self::call(state, Op::Stats { id: state.id.clone() })? {
            Reply::Stats { data } => Ok(data),
            other => Err(boxed(VmError::Agent(format!("unexpected answer to stats: {other:?}")))),
        }
    }

    fn update(&self, state: &State, resources: &LinuxResources) -> Result<(), BoxError> {
        Self::call(state, Op::Update { id: state.id.clone(), resources: serde_json::to_value(resources)? }).map(drop)
    }

    fn cleanup(&self, state: &State) -> Result<(), BoxError> {
        // Only processes proven to be this container's are signalled: the shadow and the supervisor by the start
        // times recorded at create, QEMU by being the live supervisor's child (its pid file holds no start time).
        let shadow = || Owned::find(state.pid, state.pid_start_time);
        let d = match data(state) {
            Ok(d) => d,
            Err(e) => {
                // Without the data neither the supervisor nor the state directory is known: stop the shadow,
                // touch no file, and say so.
                if let Some(s) = shadow() {
                    let _ = s.signal(libc::SIGKILL);
                }
                return Err(e);
            }
        };
        let supervisor = || Owned::find(d.supervisor_pid, d.supervisor_start);
        if supervisor().is_some() {
            // The agent kills the container; the supervisor then powers the VM off and exits.
            if let Ok(mut c) = Client::connect(&d.state_dir) {
                if let Ok(s) = c.try_clone_stream() {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                }
                let _ = c.call(Op::Delete { id: state.id.clone() });
            }
            let until = Instant::now() + Duration::from_secs(10);
            while supervisor().is_some() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if let Some(sup) = supervisor() {
            // QEMU is proven (and held) before its parent dies; it also dies with it (PR_SET_PDEATHSIG).
            let qemu = std::fs::read_to_string(d.state_dir.join(supervisor::QEMU_PID))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .and_then(|pid| Owned::find_child(&sup, pid));
            let _ = sup.signal(libc::SIGKILL);
            if let Some(q) = qemu {
                let _ = q.signal(libc::SIGKILL);
            }
        }
        if let Some(s) = shadow() {
            let _ = s.signal(libc::SIGKILL);
        }
        let until = Instant::now() + Duration::from_secs(5);
        while (supervisor().is_some() || shadow().is_some()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        for f in supervisor::files(&d.state_dir) {
            let _ = std::fs::remove_file(f);
        }
        Ok(())
    }
}

/// `HAKO_READY_FD` of a supervisor or shadow.
pub fn ready_fd() -> Option<i32> {
    std::env::var("HAKO_READY_FD").ok().and_then(|v| v.parse().ok())
}

/// Entry point of `hako vm-supervisor DIR`.
pub fn supervisor_main(dir: &Path) -> i32 {
    supervisor::main(dir, ready_fd(), |plan| {
        let assets = assets::Assets::locate()?;
        let accel = accel::choose(&assets.qemu, &dir.parent().unwrap_or(Path::new("/run/hako")).join(".vm-accel.json"));
        Ok(qemu::VmConfig {
            assets,
            accel,
            cpus: plan.cpus,
            memory_mib: plan.memory_mib,
            ctl_socket: dir.join(supervisor::CTL_SOCKET),
            shares: plan.shares.clone(),
            console_log: dir.join(supervisor::CONSOLE_LOG),
            tcg_cache_mib: plan.tcg_cache_mib,
            boot: qemu::Boot::Cold,
            taps: Vec::new(),
        })
    })
}

/// Entry point of `hako vm-shadow DIR OPFILE`.
pub fn shadow_main(dir: &Path, opfile: &Path) -> i32 {
    let op: Op = match std::fs::read(opfile)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(op) => op,
        Err(e) => {
            eprintln!("hako vm-shadow: {}: {e}", opfile.display());
            return 255;
        }
    };
    shadow::main(dir, op, ready_fd())
}

/// What `hako info` says about VM isolation on this host.
pub fn info() -> serde_json::Value {
    match assets::Assets::locate() {
        Ok(a) => {
            let acc = accel::choose(&a.qemu, Path::new("/run/hako/.vm-accel.json"));
            serde_json::json!({"available": true, "accelerator": acc.name, "why": acc.why, "kernel": a.kernel, "initramfs": a.initramfs, "qemu": a.qemu, "templates": template::root()})
        }
        Err(e) => serde_json::json!({"available": false, "why": e.to_string()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(config: serde_json::Value) -> (tempfile::TempDir, Bundle) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        std::fs::create_dir(d.path().join("data")).unwrap();
        std::fs::write(d.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::write(d.path().join("config.json"), config.to_string()).unwrap();
        let b = Bundle::load(d.path()).unwrap();
        (d, b)
    }

    fn config(extra: serde_json::Value) -> serde_json::Value {
        let mut c = serde_json::json!({
            "ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
        });
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    }

    #[test]
    fn template_annotation_is_on_off_or_an_error_naming_both() {
        let (_d, b) = bundle(config(serde_json::json!({})));
        assert!(use_template(&b.spec).unwrap());
        for (v, want) in [("on", true), ("off", false)] {
            let (_d, b) = bundle(config(serde_json::json!({"annotations": {TEMPLATE_ANNOTATION: v}})));
            assert_eq!(use_template(&b.spec).unwrap(), want);
        }
        let (_d, b) = bundle(config(serde_json::json!({"annotations": {TEMPLATE_ANNOTATION: "yes"}})));
        let e = use_template(&b.spec).unwrap_err().to_string();
        assert!(e.contains(TEMPLATE_ANNOTATION) && e.contains("on (") && e.contains("off ("), "{e}");
    }

    #[test]
    fn tcg_cache_annotation_is_a_size_or_an_error_naming_the_range() {
        let (_d, b) = bundle(config(serde_json::json!({})));
        assert_eq!(tcg_cache_mib(&b.spec).unwrap(), None);
        let (_d, b) = bundle(config(serde_json::json!({"annotations": {TCG_CACHE_ANNOTATION: "16"}})));
        assert_eq!(tcg_cache_mib(&b.spec).unwrap(), Some(16));
        for bad in ["0", "-1", "16M", "", "5000"] {
            let (_d, b) = bundle(config(serde_json::json!({"annotations": {TCG_CACHE_ANNOTATION: bad}})));
            let e = tcg_cache_mib(&b.spec).unwrap_err().to_string();
            assert!(e.contains(TCG_CACHE_ANNOTATION) && e.contains("from 1 to 4096"), "{bad}: {e}");
        }
    }

    #[test]
    fn sizing_never_gives_less_than_promised() {
        let (_d, b) = bundle(config(serde_json::json!({})));
        assert_eq!(sizing(&b.spec), (1, DEFAULT_MEMORY_MIB));
        let (_d, b) = bundle(config(serde_json::json!({"linux": {"resources": {"memory": {"limit": 512u64 << 20},
            "cpu": {"quota": 150000, "period": 100000}}}})));
        let host = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        assert_eq!(sizing(&b.spec), (2.min(host), 512 + GUEST_OVERHEAD_MIB));
        let (_d, b) = bundle(config(serde_json::json!({"annotations": {MEMORY_ANNOTATION: "1024"}})));
        assert_eq!(sizing(&b.spec).1, 1024);
    }

    #[test]
    fn bind_sources_become_shares() {
        let (d, b) = bundle(config(serde_json::json!({"mounts": [
            {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": d_hosts(), "options": ["bind"]},
            {"destination": "/proc", "type": "proc", "source": "proc"}
        ]})));
        let _ = d;
        let GuestView { config: guest, shares, netns } = to_guest(&b.spec, &b).unwrap();
        assert!(netns.is_none());
        assert_eq!(guest["root"]["path"], "/run/hako/shares/rootfs");
        assert_eq!(shares[0].tag, "rootfs");
        assert_eq!(guest["mounts"][0]["source"], "/run/hako/shares/m1");
        let hosts = guest["mounts"][1]["source"].as_str().unwrap();
        assert!(
            hosts.starts_with("/run/hako/shares/m2/")
                && hosts.ends_with(&format!("hako-vm-test-hosts-{}", std::process::id())),
            "{hosts}"
        );
        assert_eq!(guest["mounts"][2]["source"], "proc");
        assert!(guest.get("hooks").is_none());
    }

    fn d_hosts() -> String {
        let p = std::env::temp_dir().join(format!("hako-vm-test-hosts-{}", std::process::id()));
        std::fs::write(&p, "x").unwrap();
        p.display().to_string()
    }

    #[test]
    fn host_namespace_paths_are_refused_but_a_network_namespace_becomes_the_vms() {
        let (_d, b) = bundle(config(
            serde_json::json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "ipc", "path": "/proc/1/ns/ipc"}]}}),
        ));
        let e = to_guest(&b.spec, &b).unwrap_err().to_string();
        assert!(e.contains("not possible with VM isolation") && e.contains("/proc/1/ns/ipc"), "{e}");
        let (_d, b) = bundle(config(
            serde_json::json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "network", "path": "/run/netns/x"}]}}),
        ));
        let g = to_guest(&b.spec, &b).unwrap();
        assert_eq!(g.netns.as_deref(), Some(Path::new("/run/netns/x")));
        assert_eq!(
            g.config["linux"]["namespaces"],
            serde_json::json!([{"type": "mount"}]),
            "the container shares the guest's"
        );
    }
}
