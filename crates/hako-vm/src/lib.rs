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
pub mod pod;
pub mod qemu;
pub mod qmp;
pub mod shadow;
pub mod supervisor;
pub mod template;

use std::io::BufRead;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hako_proto::{Op, Reply};
use hako_runtime::bundle::Bundle;
use hako_runtime::isolation::{BoxError, CreateOptions, ExecOptions, Isolation, Spawned};
use hako_runtime::procfs::Owned;
use hako_runtime::state::{write_private, Locked, State, Status};
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
    /// A pod sandbox's pod share ([`pod`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod_share: Option<PathBuf>,
    /// A container of a pod: the state directory of its sandbox, whose VM (supervisor) runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vm_dir: Option<PathBuf>,
}

impl Data {
    /// The directory of the supervisor of this container's VM.
    fn vm_dir(&self) -> &Path {
        self.vm_dir.as_deref().unwrap_or(&self.state_dir)
    }
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
                cpus = cpus.max(u32::try_from((q as u64).div_ceil(p)).unwrap_or(u32::MAX));
            }
        }
        if let Some(set) = cpu.cpus() {
            // Saturating: a range such as 0-4294967295 is clamped to the host's CPUs below, not an overflow.
            let n: u32 = set
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => b
                        .trim()
                        .parse::<u32>()
                        .unwrap_or(0)
                        .saturating_sub(a.trim().parse().unwrap_or(0))
                        .saturating_add(1),
                    None => 1,
                })
                .fold(0, u32::saturating_add);
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
/// namespace into the VM's network interfaces. A share is read-only when every view the container has of
/// it is; a bind-mounted file is shared alone, from a private directory under `files` (see
/// [`prepare_file_shares`]).
pub fn to_guest(spec: &Spec, bundle: &Bundle, files: &Path) -> Result<GuestView, VmError> {
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
    refuse_hooks(spec)?;
    let root_ro = spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false);
    let mut shares =
        vec![ShareDir { tag: "rootfs".into(), host: bundle.rootfs.clone(), readonly: root_ro, files: Vec::new() }];
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
    for_each_bind(&mut config, bundle, |m, src, meta, readonly| {
        let file = (!meta.is_dir()).then(|| src.clone());
        // Files of one directory share one private directory (a VM has at most MAX_VIRTIO_DEVICES),
        // one for the read-only ones and one for the others.
        let parent = |f: &Path| f.parent().map(Path::to_path_buf);
        let same = |s: &&mut ShareDir| match &file {
            Some(f) => s.readonly == readonly && s.files.first().and_then(|g| parent(g)) == parent(f),
            None => s.files.is_empty() && s.host == src,
        };
        let tag = match shares.iter_mut().find(same) {
            Some(s) => {
                // One share, several views: read-only only if all of them are.
                s.readonly &= readonly;
                if let Some(f) = &file {
                    if !s.files.contains(f) {
                        s.files.push(f.clone());
                    }
                }
                s.tag.clone()
            }
            None => {
                let tag = format!("m{}", shares.len());
                let host = if file.is_some() { files.join(&tag) } else { src.clone() };
                shares.push(ShareDir { tag: tag.clone(), host, readonly, files: file.iter().cloned().collect() });
                tag
            }
        };
        let guest = Path::new(GUEST_SHARES).join(&tag);
        let guest = match file.as_ref().and_then(|f| f.file_name()) {
            Some(f) => guest.join(f),
            None => guest,
        };
        m["source"] = serde_json::json!(guest);
        Ok(())
    })?;
    Ok(GuestView { config, shares, netns })
}

/// Calls `f` for every bind mount of `config` (type `bind`, or a `bind`/`rbind` option) with the mount, its
/// source on the host (relative to the bundle when relative), the source's metadata (a missing source is an
/// error naming it) and whether it is read-only (the last of `ro`/`rw` wins, as in mount(8)).
pub(crate) fn for_each_bind(
    config: &mut serde_json::Value,
    bundle: &Bundle,
    mut f: impl FnMut(&mut serde_json::Value, PathBuf, std::fs::Metadata, bool) -> Result<(), VmError>,
) -> Result<(), VmError> {
    let Some(mounts) = config.get_mut("mounts").and_then(|m| m.as_array_mut()) else { return Ok(()) };
    for m in mounts.iter_mut() {
        let opts: Vec<String> =
            m.get("options").and_then(|o| serde_json::from_value(o.clone()).ok()).unwrap_or_default();
        let is_bind =
            m.get("type").and_then(|t| t.as_str()) == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
        if !is_bind {
            continue;
        }
        let Some(src) = m.get("source").and_then(|s| s.as_str()).map(PathBuf::from) else { continue };
        let src = if src.is_absolute() { src } else { bundle.path.join(src) };
        let meta = std::fs::metadata(&src).map_err(|e| {
            VmError::Config(format!("bind mount source {}: {e}: create it or fix mounts in config.json", src.display()))
        })?;
        let readonly = opts.iter().rev().find(|o| *o == "ro" || *o == "rw").is_some_and(|o| o == "ro");
        f(m, src, meta, readonly)?;
    }
    Ok(())
}

/// Refuses the hooks that would have to run inside the VM.
pub(crate) fn refuse_hooks(spec: &Spec) -> Result<(), VmError> {
    if let Some(h) = spec.hooks() {
        if h.create_container().as_ref().is_some_and(|v| !v.is_empty())
            || h.start_container().as_ref().is_some_and(|v| !v.is_empty())
        {
            return Err(VmError::Config(
                "hooks.createContainer and hooks.startContainer run in the container's namespaces, which are inside the VM where host programs do not exist: remove them, or use process isolation".into(),
            ));
        }
    }
    Ok(())
}

/// The directory of a container's file shares, in its state directory.
pub const FILE_SHARES: &str = "files";

/// Makes the private directory of each file share (`files/<tag>/`, 0700, in a 0700 `files`) holding an
/// empty placeholder named like each shared file, on which QEMU binds the file in its own mount namespace
/// ([`qemu::Launched::spawn`]): the guest sees those files and none of their siblings.
pub fn prepare_file_shares(files: &Path, shares: &[ShareDir]) -> Result<(), VmError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let fail = |p: &Path, e: std::io::Error| VmError::Setup(format!("preparing the file share {}: {e}", p.display()));
    for s in shares.iter().filter(|s| !s.files.is_empty()) {
        for d in [files, s.host.as_path()] {
            match std::fs::DirBuilder::new().mode(0o700).create(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d == files => {}
                Err(e) => return Err(fail(d, e)),
            }
        }
        for file in &s.files {
            let Some(name) = file.file_name() else {
                return Err(VmError::Config(format!("bind mount source {} names no file", file.display())));
            };
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(s.host.join(name))
                .map_err(|e| fail(file, e))?;
        }
    }
    Ok(())
}

/// For a read-only rootfs (shared read-only, so the guest cannot create anything in it): creates the mount
/// points that the rootfs lacks, on the host, as runc and crun do before they make the root read-only.
/// Every path is resolved inside the rootfs (`openat2(RESOLVE_IN_ROOT)`), so a symlink in the image cannot
/// point outside it; destinations under an earlier mount are left to the guest (they are created in that
/// mount, not in the rootfs). Best effort: what cannot be created here makes the guest's create fail with
/// its own error.
pub fn make_mount_points(spec: &Spec, bundle: &Bundle) {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::Mode;
    let Ok(root) = std::fs::File::open(&bundle.rootfs) else { return };
    // openat2 refuses a mode without O_CREAT.
    let how = |flags: OFlag| {
        let mode = if flags.contains(OFlag::O_CREAT) { 0o644 } else { 0 };
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .mode(Mode::from_bits_truncate(mode))
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
    };
    let open = |p: &Path, flags: OFlag| -> nix::Result<OwnedFd> {
        let fd = openat2(root.as_raw_fd(), p, how(flags))?;
        // SAFETY: openat2 returned a new fd that nothing else owns.
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    };
    let mut earlier: Vec<PathBuf> = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination().clone();
        let under_earlier = earlier.iter().any(|e| dest != *e && dest.starts_with(e));
        earlier.push(dest.clone());
        if under_earlier {
            continue;
        }
        let is_bind =
            m.typ().as_deref() == Some("bind") || m.options().iter().flatten().any(|o| o == "bind" || o == "rbind");
        let file = is_bind
            && m.source().as_ref().is_some_and(|s| {
                let s = if s.is_absolute() { s.clone() } else { bundle.path.join(s) };
                std::fs::metadata(s).is_ok_and(|m| !m.is_dir())
            });
        let parts: Vec<_> = dest
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let mut at = PathBuf::new();
        for (i, name) in parts.iter().enumerate() {
            let parent = at.clone();
            at.push(name);
            if open(&at, OFlag::O_PATH).is_ok() {
                continue;
            }
            let Ok(dir) = open(
                if parent.as_os_str().is_empty() { Path::new(".") } else { &parent },
                OFlag::O_PATH | OFlag::O_DIRECTORY,
            ) else {
                break;
            };
            let made = if file && i + 1 == parts.len() {
                openat2(dir.as_raw_fd(), *name, how(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY)).map(|fd| {
                    let _ = nix::unistd::close(fd);
                })
            } else {
                nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), *name, Mode::from_bits_truncate(0o755))
            };
            if made.is_err() {
                break;
            }
        }
    }
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
        inherit(cmd, self.write.as_raw_fd(), "HAKO_READY_FD");
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

/// Lets only stdio and the fds named later by [`inherit`] reach `cmd`'s program (call it first: pre_exec
/// closures run in order).
fn only_named_fds(cmd: &mut Command) {
    // SAFETY: cloexec_from_3 is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            qemu::cloexec_from_3();
            Ok(())
        });
    }
}

/// Makes `fd` (close-on-exec in this process) survive the exec of `cmd`'s child alone, named in the
/// child's environment as `env`.
fn inherit(cmd: &mut Command, fd: i32, env: &str) {
    cmd.env(env, fd.to_string());
    // SAFETY: fcntl (a nix wrapper that does not allocate) on an fd inherited from the parent, in the child
    // before exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))?;
            Ok(())
        });
    }
}

/// The pipe by which `create` tells the supervisor that the container exists: the supervisor reads one
/// byte when `create` has saved the container as created, and end of file when `create` died before that,
/// and then stops the VM (nobody would ever learn of it but `delete --force`).
struct Commit {
    read: Option<OwnedFd>,
    write: std::fs::File,
}

impl Commit {
    fn new() -> Result<Commit, VmError> {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| VmError::Supervisor(format!("pipe: {e}")))?;
        Ok(Commit { read: Some(r), write: std::fs::File::from(w) })
    }

    /// The container is created: the supervisor keeps the VM.
    fn done(mut self) {
        use std::io::Write;
        let _ = self.write.write_all(b"c");
    }
}

/// The supervisor's stdout and stderr: one open file, private to root, in append mode, so that neither
/// stream overwrites the other's lines.
fn log_stdio(path: &Path) -> std::io::Result<(std::fs::File, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(hako_runtime::state::FILE_MODE)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    // Private whatever the umask, as every file of the state directory.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(hako_runtime::state::FILE_MODE))?;
    let g = f.try_clone()?;
    Ok((f, g))
}

fn hako_exe() -> PathBuf {
    std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
}

/// Opens a pty pair for a process with a terminal: (master, slave), both close-on-exec (openpty(3) leaves
/// them inheritable; the slave reaches the shadow as its stdio only).
fn open_pty() -> Result<(OwnedFd, OwnedFd), VmError> {
    let r = nix::pty::openpty(None, None).map_err(|e| VmError::Supervisor(format!("openpty: {e}")))?;
    for fd in [&r.master, &r.slave] {
        nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
            .map_err(|e| VmError::Supervisor(format!("openpty: close-on-exec: {e}")))?;
    }
    Ok((r.master, r.slave))
}

/// Takes over an fd that hako passed to this helper (`HAKO_READY_FD`, `HAKO_COMMIT_FD`): close-on-exec from
/// now on, so it reaches no program the helper starts (QEMU).
pub(crate) fn take_passed_fd(fd: i32) -> std::fs::File {
    let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    // SAFETY: the fd was passed to this process for this purpose only, and nothing else owns it.
    unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) }
}

/// Refuses a state directory whose sockets' paths would not fit in a unix socket address (107 bytes): with
/// containerd's 64-character ids the root must be short.
fn check_socket_room(dir: &Path) -> Result<(), VmError> {
    let longest = [client::API_SOCKET, supervisor::CTL_SOCKET, supervisor::QMP_SOCKET]
        .iter()
        .map(|f| dir.join(f).as_os_str().len())
        .max()
        .unwrap_or(0);
    if longest > 107 {
        return Err(VmError::Setup(format!(
            "the state directory {} is too long for the VM's sockets ({longest} bytes with the socket's name, 107 \
             at most): use a shorter --root (for containerd, the handler's Root option, such as /run/hako-vm)",
            dir.display()
        )));
    }
    Ok(())
}

/// What [`VmIsolation::check`] found a config to ask for.
#[derive(Debug)]
pub struct Checked {
    /// The bundle as the VM sees it.
    pub guest: GuestView,
    /// The VM's vCPUs.
    pub cpus: u32,
    /// The VM's RAM in MiB.
    pub memory_mib: u64,
    /// The TCG translation cache, if the config sets one.
    pub tcg_cache_mib: Option<u64>,
    /// Whether the VM may start from a template.
    pub template: bool,
}

impl VmIsolation {
    /// Everything VM isolation checks in a bundle before it creates anything (state, supervisor, VM): what
    /// cannot cross the VM boundary ([`to_guest`]), the VM's size and the VM annotations. Reads the host (bind
    /// mount sources) but changes nothing; `create` starts with it.
    pub fn check(bundle: &Bundle, files: &Path, opts: &CreateOptions) -> Result<Checked, VmError> {
        let spec = &bundle.spec;
        if opts.preserve_fds > 0 {
            return Err(VmError::Config(
                "--preserve-fds cannot pass host file descriptors into a VM: drop it, or use process isolation".into(),
            ));
        }
        let guest = to_guest(spec, bundle, files)?;
        let (cpus, memory_mib) = sizing(spec);
        Ok(Checked { guest, cpus, memory_mib, tcg_cache_mib: tcg_cache_mib(spec)?, template: use_template(spec)? })
    }

    /// Starts a shadow for `op` with the given stdio, talking to the supervisor in `vm_dir`; returns its pid and
    /// start time.
    fn spawn_shadow(dir: &Path, vm_dir: &Path, op: &Op, stdio: ShadowStdio) -> Result<(i32, u64), VmError> {
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
        if vm_dir != dir {
            cmd.arg(vm_dir);
        }
        only_named_fds(&mut cmd);
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

    /// `create` of a container of a pod ([`pod`]): binds its rootfs and bind sources below the pod share and
    /// creates it in the sandbox's VM, joining the sandbox's namespaces there.
    fn create_member(
        &self,
        dir: &Locked,
        bundle: &Bundle,
        opts: &CreateOptions,
        sandbox: &str,
    ) -> Result<(State, Spawned), BoxError> {
        let spec = &bundle.spec;
        let id = dir.id().as_str().to_owned();
        if opts.preserve_fds > 0 {
            return Err(boxed(VmError::Config(
                "--preserve-fds cannot pass host file descriptors into a VM: drop it, or use process isolation".into(),
            )));
        }
        let root = dir.dir().parent().unwrap_or(Path::new("/run/hako")).to_path_buf();
        let sb = pod::find_sandbox(&root, sandbox, &id).map_err(boxed)?;
        let view = pod::member_view(spec, bundle, &id, &sb).map_err(boxed)?;
        let mut state = State::creating(
            dir.id(),
            bundle,
            self.name(),
            serde_json::to_value(Data {
                supervisor_pid: sb.supervisor_pid,
                supervisor_start: sb.supervisor_start,
                state_dir: dir.dir().to_owned(),
                pod_share: Some(sb.share.clone()),
                vm_dir: Some(sb.vm_dir.clone()),
                ..Default::default()
            })?,
        );
        dir.save(&state)?;
        dir.save_config(spec)?;
        let result = (|| -> Result<Spawned, BoxError> {
            pod::bind_member(&sb.share, &id, &view.binds).map_err(boxed)?;
            let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
            let (stdio, console) =
                Self::terminal_stdio(terminal, opts.console_socket.as_deref(), opts.foreground, opts.stdio)
                    .map_err(boxed)?;
            let op = Op::Create {
                id: id.clone(),
                config: view.config.clone(),
                shares: Vec::new(),
                stdio: shadow::stdio(terminal),
                net: Vec::new(),
                sandbox: Some(sb.id.clone()),
            };
            let (pid, start) = Self::spawn_shadow(dir.dir(), &sb.vm_dir, &op, stdio).map_err(boxed)?;
            state.pid = pid;
            state.pid_start_time = start;
            dir.save(&state)?;
            create_hooks(spec, &state)?;
            Ok(Spawned { pid, console })
        })();
        match result.and_then(|spawned| {
            state.status = Status::Created;
            dir.save(&state)?;
            Ok(spawned)
        }) {
            Ok(spawned) => Ok((state, spawned)),
            Err(e) => {
                let _ = self.cleanup(&state);
                Err(e)
            }
        }
    }

    fn call(state: &State, op: Op) -> Result<Reply, BoxError> {
        let d = data(state)?;
        let mut c = Client::connect(d.vm_dir()).map_err(boxed)?;
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

/// The prestart and createRuntime hooks, on the host. As crun: they see the container as `created` (runc 1.1
/// says `creating`).
fn create_hooks(spec: &Spec, state: &State) -> Result<(), BoxError> {
    let json = state.oci_json(Status::Created).to_string();
    if let Some(h) = spec.hooks() {
        for (phase, list) in [("prestart", h.prestart()), ("createRuntime", h.create_runtime())] {
            if let Some(list) = list {
                hako_runtime::hooks::run(phase, list, &json)?;
            }
        }
    }
    Ok(())
}

/// The most virtio devices a hako VM boots with. QEMU's microvm has 24 virtio-mmio transports, but with a
/// device on the 24th the guest's boot hangs (QEMU 7.2, the guest kernel of scripts/guest-kernel), and QEMU
/// refuses a 25th ("No 'virtio-bus' bus found").
pub const MAX_VIRTIO_DEVICES: usize = 23;

/// Refuses a VM that would need more than [`MAX_VIRTIO_DEVICES`]: the control port, one per share (the rootfs,
/// each bind-mounted host directory, the bind-mounted files of one directory together, a pod's share) and one
/// per network interface.
fn check_device_count(id: &str, shares: usize, nics: usize) -> Result<(), VmError> {
    let devices = 1 + shares + nics;
    if devices <= MAX_VIRTIO_DEVICES {
        return Ok(());
    }
    Err(VmError::Config(format!(
        "container {id} needs {devices} virtio devices in its VM (the control port, {shares} shares: the rootfs and \
         one per bind-mounted host directory, and {nics} network interfaces), more than the {MAX_VIRTIO_DEVICES} a \
         VM can have: bind-mount fewer distinct directories (bind-mounted files of one directory share one \
         device), or use process isolation"
    )))
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
        let role = pod::role(spec);
        if let pod::Role::Member(sandbox) = &role {
            return self.create_member(dir, bundle, opts, sandbox);
        }
        if role == pod::Role::Sandbox {
            pod::refuse_host_network(spec, dir.id().as_str()).map_err(boxed)?;
        }
        check_socket_room(dir.dir()).map_err(boxed)?;
        let files = dir.dir().join(FILE_SHARES);
        let Checked {
            guest: GuestView { config: guest, mut shares, netns },
            mut cpus,
            mut memory_mib,
            tcg_cache_mib,
            template,
        } = VmIsolation::check(bundle, &files, opts).map_err(boxed)?;
        let root = dir.dir().parent().unwrap_or(Path::new("/run/hako")).to_path_buf();
        let pod_share = (role == pod::Role::Sandbox).then(|| pod::pod_share_path(&root, dir.id().as_str()));
        if pod_share.is_some() {
            (cpus, memory_mib) = pod::pod_sizing(spec);
        }
        let nics = match &netns {
            Some(p) => net::inspect(p).map_err(boxed)?,
            None => Vec::new(),
        };
        check_device_count(dir.id().as_str(), shares.len() + usize::from(pod_share.is_some()), nics.len())
            .map_err(boxed)?;
        let assets = assets::Assets::locate().map_err(boxed)?;
        let accel =
            accel::choose(&assets.qemu, &dir.dir().parent().unwrap_or(Path::new("/run/hako")).join(".vm-accel.json"));
        let mut state = State::creating(
            dir.id(),
            bundle,
            self.name(),
            serde_json::to_value(Data {
                state_dir: dir.dir().to_owned(),
                accel: accel.name.clone(),
                cpus,
                memory_mib,
                pod_share: pod_share.clone(),
                ..Default::default()
            })?,
        );
        dir.save(&state)?;
        dir.save_config(spec)?;
        let mut commit = Commit::new().map_err(boxed)?;
        let result = (|| -> Result<Spawned, BoxError> {
            prepare_file_shares(&files, &shares).map_err(boxed)?;
            if shares[0].readonly {
                make_mount_points(spec, bundle);
            }
            if let Some(share) = &pod_share {
                let exported = pod::make_pod_share(share).map_err(boxed)?;
                shares.push(ShareDir {
                    tag: pod::POD_SHARE.into(),
                    host: exported,
                    readonly: false,
                    files: Vec::new(),
                });
            }
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
            let ready = Ready::new().map_err(boxed)?;
            let mut cmd = Command::new(hako_exe());
            cmd.arg("vm-supervisor").arg(dir.dir());
            only_named_fds(&mut cmd);
            let (out, err) = log_stdio(&log)?;
            cmd.stdin(Stdio::null()).stdout(out).stderr(err);
            ready.pass(&mut cmd);
            if let Some(r) = &commit.read {
                inherit(&mut cmd, r.as_raw_fd(), "HAKO_COMMIT_FD");
            }
            // SAFETY: setsid and umask are async-signal-safe; the supervisor must not get the caller's terminal
            // signals, and what it and QEMU create in the state directory (sockets, logs, pid file) is private.
            unsafe {
                cmd.pre_exec(|| {
                    let _ = nix::unistd::setsid();
                    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
                    Ok(())
                });
            }
            let sup = cmd.spawn();
            // Only the supervisor holds the read end: a copy here would hide create's death from it.
            commit.read = None;
            let sup = sup?;
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
                sandbox: None,
            };
            let (pid, start) = Self::spawn_shadow(dir.dir(), dir.dir(), &op, stdio).map_err(boxed)?;
            state.pid = pid;
            state.pid_start_time = start;
            dir.save(&state)?;
            create_hooks(spec, &state)?;
            Ok(Spawned { pid, console })
        })();
        match result {
            Ok(spawned) => {
                state.status = Status::Created;
                if let Err(e) = dir.save(&state) {
                    let _ = self.cleanup(&state);
                    return Err(e.into());
                }
                commit.done();
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
        let d = data(state)?;
        let (pid, _) = Self::spawn_shadow(&d.state_dir, d.vm_dir(), &op, stdio).map_err(boxed)?;
        Ok(Spawned { pid, console })
    }

    fn pause(&self, state: &State) -> Result<(), BoxError> {
        Self::call(state, Op::Pause { id: state.id.clone() }).map(drop)
    }

    fn resume(&self, state: &State) -> Result<(), BoxError> {
        Self::call(state, Op::Resume { id: state.id.clone() }).map(drop)
    }

    /// The host pids that stand for the container's processes: its shadows (the container's own and one per
    /// live `exec`). The guest's pids mean nothing on the host (`hako exec ID ps` lists them).
    fn pids(&self, state: &State) -> Result<Vec<i32>, BoxError> {
        let mut pids = shadows(&data(state)?.state_dir);
        if alive(state.pid, state.pid_start_time) && !pids.contains(&state.pid) {
            pids.push(state.pid);
        }
        pids.sort_unstable();
        Ok(pids)
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
        if let Some(vm_dir) = &d.vm_dir {
            // A container of a pod: the VM is its sandbox's, and stays.
            if alive(d.supervisor_pid, d.supervisor_start) {
                if let Ok(mut c) = Client::connect(vm_dir) {
                    if let Ok(s) = c.try_clone_stream() {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    }
                    let _ = c.call(Op::Delete { id: state.id.clone() });
                }
            }
            if let Some(s) = shadow() {
                let _ = s.signal(libc::SIGKILL);
            }
            let until = Instant::now() + Duration::from_secs(5);
            while shadow().is_some() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Some(share) = &d.pod_share {
                pod::unbind_member(share, &state.id);
            }
            return Ok(());
        }
        let supervisor = || Owned::find(d.supervisor_pid, d.supervisor_start);
        if supervisor().is_some() {
            // The agent kills the container; the supervisor then powers the VM off and exits.
            if let Ok(mut c) = Client::connect(&d.state_dir) {
                if let Ok(s) = c.try_clone_stream() {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                }
                let _ = c.call(Op::Delete { id: state.id.clone() });
            }
            // A pod's VM goes with its sandbox, whatever containers are left in it (they stop with it).
            let wait = if d.pod_share.is_some() { Duration::from_secs(2) } else { Duration::from_secs(10) };
            let until = Instant::now() + wait;
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
        // The file shares' binds lived in QEMU's mount namespace only: here they are empty placeholders.
        if !d.state_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(d.state_dir.join(FILE_SHARES));
        }
        if let Some(share) = &d.pod_share {
            pod::remove_pod_share(share);
        }
        Ok(())
    }
}

/// The live shadows of the VM whose state directory is `dir`: `hako vm-shadow DIR OPFILE` processes.
fn shadows(dir: &Path) -> Vec<i32> {
    if dir.as_os_str().is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let mut args = cmd.split(|b| *b == 0);
        let _exe = args.next();
        if args.next() == Some(b"vm-shadow".as_slice())
            && args.next().is_some_and(|d| Path::new(std::ffi::OsStr::from_bytes(d)) == dir)
        {
            out.push(pid);
        }
    }
    out
}

/// `HAKO_READY_FD` of a supervisor or shadow.
pub fn ready_fd() -> Option<i32> {
    std::env::var("HAKO_READY_FD").ok().and_then(|v| v.parse().ok())
}

/// Entry point of `hako vm-supervisor DIR`.
pub fn supervisor_main(dir: &Path) -> i32 {
    let commit_fd = std::env::var("HAKO_COMMIT_FD").ok().and_then(|v| v.parse().ok());
    supervisor::main(dir, ready_fd(), commit_fd, |plan| {
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

/// Entry point of `hako vm-shadow DIR OPFILE [VM_DIR]`: VM_DIR is the directory of the supervisor to talk to
/// (a pod's sandbox's, for a container of the pod), DIR by default.
pub fn shadow_main(dir: &Path, opfile: &Path, vm_dir: Option<&Path>) -> i32 {
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
    shadow::main(vm_dir.unwrap_or(dir), op, ready_fd())
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

    #[test]
    fn a_vm_needing_more_devices_than_it_can_have_is_refused_naming_the_count() {
        assert!(check_device_count("c", 22, 0).is_ok());
        assert!(check_device_count("c", 20, 2).is_ok());
        let e = check_device_count("c", 21, 2).unwrap_err().to_string();
        assert!(e.starts_with("container c needs 24 virtio devices in its VM (the control port, 21 shares"), "{e}");
        assert!(e.contains("2 network interfaces), more than the 23 a VM can have"), "{e}");
    }

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
    fn the_supervisor_log_keeps_the_lines_of_both_streams() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("supervisor.log");
        let (mut out, mut err) = log_stdio(&path).unwrap();
        out.write_all(b"from stdout\n").unwrap();
        err.write_all(b"from stderr\n").unwrap();
        out.write_all(b"stdout again\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "from stdout\nfrom stderr\nstdout again\n");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
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
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/etc/hosts2", "type": "bind", "source": "hosts", "options": ["bind", "ro"]},
            {"destination": "/etc/config", "type": "bind", "source": "config.json", "options": ["bind", "ro"]},
            {"destination": "/etc/rw", "type": "bind", "source": "config.json", "options": ["bind", "rw"]}
        ]})));
        let GuestView { config: guest, shares, netns } = to_guest(&b.spec, &b, Path::new("/files")).unwrap();
        assert!(netns.is_none());
        assert_eq!(guest["root"]["path"], "/run/hako/shares/rootfs");
        assert_eq!(shares[0].tag, "rootfs");
        assert_eq!(guest["mounts"][0]["source"], "/run/hako/shares/m1");
        let hosts = guest["mounts"][1]["source"].as_str().unwrap();
        let name = format!("hako-vm-test-hosts-{}", std::process::id());
        assert_eq!(hosts, format!("/run/hako/shares/m2/{name}"));
        assert_eq!(guest["mounts"][2]["source"], "proc");
        assert!(guest.get("hooks").is_none());
        // The file is shared alone, from a private directory, never with its siblings in /tmp.
        assert_eq!(shares[2].host, Path::new("/files/m2"));
        assert_eq!(shares[2].files, [std::env::temp_dir().join(&name)]);
        assert!(shares[1].files.is_empty() && shares[1].host == d.path().join("data"));
        // Files of one directory share one private directory (and one of microvm's 8 device slots).
        // A read-write view of a file does not make its read-only neighbours writable.
        assert_eq!(shares.len(), 5);
        assert_eq!(shares[3].files, [d.path().join("hosts"), d.path().join("config.json")]);
        assert!(shares[3].readonly && !shares[2].readonly);
        assert_eq!(guest["mounts"][4]["source"], "/run/hako/shares/m3/config.json");
        assert_eq!(shares[4].files, [d.path().join("config.json")]);
        assert!(!shares[4].readonly);
        assert_eq!(guest["mounts"][5]["source"], "/run/hako/shares/m4/config.json");
    }

    #[test]
    fn a_share_is_read_only_when_every_view_of_it_is() {
        let root = |ro: bool, mounts: serde_json::Value| {
            let (d, b) =
                bundle(config(serde_json::json!({"root": {"path": "rootfs", "readonly": ro}, "mounts": mounts})));
            let v = to_guest(&b.spec, &b, Path::new("/files")).unwrap();
            (d, v.shares.iter().map(|s| (s.tag.clone(), s.readonly)).collect::<Vec<_>>())
        };
        let (_d, s) = root(true, serde_json::json!([]));
        assert_eq!(s, [("rootfs".to_string(), true)]);
        let (_d, s) = root(false, serde_json::json!([]));
        assert_eq!(s, [("rootfs".to_string(), false)]);
        let (_d, s) = root(
            true,
            serde_json::json!([
                {"destination": "/a", "type": "bind", "source": "data", "options": ["rbind", "ro"]},
                {"destination": "/b", "type": "bind", "source": "data", "options": ["rbind", "ro"]},
                {"destination": "/c", "type": "bind", "source": "rootfs", "options": ["rbind", "ro", "rw"]}
            ]),
        );
        assert_eq!(s, [("rootfs".to_string(), false), ("m1".to_string(), true)]);
        let (_d, s) = root(
            true,
            serde_json::json!([
                {"destination": "/a", "type": "bind", "source": "data", "options": ["rbind", "ro"]},
                {"destination": "/b", "type": "bind", "source": "data", "options": ["rbind"]}
            ]),
        );
        assert_eq!(s, [("rootfs".to_string(), true), ("m1".to_string(), false)]);
    }

    #[test]
    fn a_read_only_rootfs_gets_its_missing_mount_points_inside_it() {
        let outside = tempfile::tempdir().unwrap();
        let (d, b) = bundle(config(serde_json::json!({"mounts": [
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
            {"destination": "/data/x", "type": "bind", "source": "data", "options": ["rbind"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "hosts", "options": ["bind"]},
            {"destination": "/evil/y", "type": "bind", "source": "data", "options": ["rbind"]}
        ]})));
        std::os::unix::fs::symlink(outside.path(), d.path().join("rootfs/evil")).unwrap();
        make_mount_points(&b.spec, &b);
        let r = d.path().join("rootfs");
        assert!(r.join("dev").is_dir() && r.join("data/x").is_dir() && r.join("etc/hosts").is_file());
        assert!(!r.join("dev/pts").exists(), "created under an earlier mount");
        // The symlink resolves inside the rootfs: nothing is created in the directory it names on the host.
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
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
        let e = to_guest(&b.spec, &b, Path::new("/files")).unwrap_err().to_string();
        assert!(e.contains("not possible with VM isolation") && e.contains("/proc/1/ns/ipc"), "{e}");
        let (_d, b) = bundle(config(
            serde_json::json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "network", "path": "/run/netns/x"}]}}),
        ));
        let g = to_guest(&b.spec, &b, Path::new("/files")).unwrap();
        assert_eq!(g.netns.as_deref(), Some(Path::new("/run/netns/x")));
        assert_eq!(
            g.config["linux"]["namespaces"],
            serde_json::json!([{"type": "mount"}]),
            "the container shares the guest's"
        );
    }
}
