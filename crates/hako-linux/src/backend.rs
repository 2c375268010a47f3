//! [`ProcessIsolation`]: the lifecycle commands of a process-isolated container, in terms of [`crate::spawn`],
//! the state directory (`exec.fifo` holds the created process until `start`) and the container's cgroup.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hako_cgroups::{Cgroup, Version};
use hako_runtime::bundle::Bundle;
use hako_runtime::isolation::{BoxError, CreateOptions, ExecOptions, Isolation, Spawned};
use hako_runtime::procfs::Owned;
use hako_runtime::state::{Locked, State, Status};
use oci_spec::runtime::{LinuxResources, Spec};
use serde::{Deserialize, Serialize};

use crate::init::InitConfig;
use crate::namespaces::NsPlan;
use crate::rootfs::CgroupMountPlan;
use crate::{spawn, sys};

/// Errors of the process backend that are not a module's own.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    /// The config asks for something process isolation cannot do.
    #[error("{0}")]
    Config(String),
    /// The OOM killer killed init while create set the container up.
    #[error(
        "the container init was killed by the OOM killer: the memory limit of {limit} is too small to start \
         the container; raise linux.resources.memory.limit"
    )]
    OutOfMemory {
        /// The limit, in words.
        limit: String,
    },
    /// Waiting for a process failed.
    #[error("container {id}: {what}")]
    Io {
        /// The container.
        id: String,
        /// What failed.
        what: String,
    },
}

/// What the process backend keeps in state.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Data {
    cgroup: Option<Cgroup>,
    namespaces: Vec<String>,
    own_pid_ns: bool,
    /// The container's state directory (it holds exec.fifo until `start`).
    state_dir: PathBuf,
}

/// The backend's data in `state`; an error, never a default (an empty cgroup would skip the kill, an empty
/// state directory would be the current directory).
fn data(state: &State) -> Result<Data, BoxError> {
    Ok(state.backend::<Data>()?)
}

/// Process isolation.
#[derive(Debug, Default)]
pub struct ProcessIsolation;

const FIFO: &str = "exec.fifo";

/// The cgroup hierarchies as a container's /sys/fs/cgroup shows them.
fn cgroup_plans(cg: &Cgroup) -> Vec<CgroupMountPlan> {
    cg.hierarchies()
        .iter()
        .map(|h| {
            let subdir =
                h.mount_point.strip_prefix("/sys/fs/cgroup").map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(
                    |_| h.mount_point.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                );
            CgroupMountPlan {
                subdir,
                fstype: if h.version == Version::V2 { "cgroup2".into() } else { "cgroup".into() },
                options: h.options.clone(),
                host_dir: h.dir.clone(),
            }
        })
        .collect()
}

/// The device cgroup rules of the config, followed by allow rules for the default devices, /dev/pts and the
/// config's own devices (as runc does: a config that denies everything still gets a working /dev).
fn with_default_devices(r: &LinuxResources, devices: &[oci_spec::runtime::LinuxDevice]) -> LinuxResources {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
    let Some(rules) = r.devices() else { return r.clone() };
    let mut rules = rules.clone();
    let allow = |typ, major: i64, minor: Option<i64>| {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(true);
        d.set_typ(Some(typ));
        d.set_major(Some(major));
        d.set_minor(minor);
        d.set_access(Some("rwm".into()));
        d
    };
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)] {
        rules.push(allow(LinuxDeviceType::C, major, Some(minor)));
    }
    rules.push(allow(LinuxDeviceType::C, 136, None)); // /dev/pts/*
    for d in devices {
        rules.push(LinuxDeviceCgroup::from(d));
    }
    let mut out = r.clone();
    out.set_devices(Some(rules));
    out
}

/// The host uid and gid of the container's process (through linux.uidMappings/gidMappings when present).
fn host_ids(spec: &Spec) -> (u32, u32) {
    let user = spec.process().as_ref().map(|p| (p.user().uid(), p.user().gid())).unwrap_or((0, 0));
    let linux = spec.linux().as_ref();
    let map = |id: u32, maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| -> u32 {
        match maps.filter(|m| !m.is_empty()) {
            None => id,
            Some(maps) => maps
                .iter()
                .find(|m| id >= m.container_id() && id - m.container_id() < m.size())
                // A range past the last id is refused by check_id_maps; never overflow here either.
                .and_then(|m| m.host_id().checked_add(id - m.container_id()))
                .unwrap_or(65534),
        }
    };
    (
        map(user.0, linux.and_then(|l| l.uid_mappings().as_ref())),
        map(user.1, linux.and_then(|l| l.gid_mappings().as_ref())),
    )
}

/// Refuses an id map the kernel would refuse when init writes it (a range that is empty or runs past id
/// 4294967294, the last one: 4294967295 is `(uid_t)-1`), before anything is created.
fn check_id_maps(spec: &Spec) -> Result<(), BoxError> {
    let Some(linux) = spec.linux().as_ref() else { return Ok(()) };
    for (field, maps) in [("uidMappings", linux.uid_mappings()), ("gidMappings", linux.gid_mappings())] {
        for (i, m) in maps.iter().flatten().enumerate() {
            let past = |first: u32| u64::from(first) + u64::from(m.size()) > u64::from(u32::MAX);
            let problem = if m.size() == 0 {
                "size 0 maps no id".to_owned()
            } else if past(m.container_id()) {
                format!("containerID {} + size {} runs past the last id 4294967294", m.container_id(), m.size())
            } else if past(m.host_id()) {
                format!("hostID {} + size {} runs past the last id 4294967294", m.host_id(), m.size())
            } else {
                continue;
            };
            return Err(Box::new(BackendError::Config(format!(
                "linux.{field}[{i}]: {problem}: the kernel refuses such a map; make the range fit below 4294967295"
            ))));
        }
    }
    Ok(())
}

/// Checks a config for what process isolation needs, before anything is created.
fn validate(spec: &Spec, ns: &NsPlan, opts: &CreateOptions) -> Result<(), BoxError> {
    let bad = |s: String| -> BoxError { Box::new(BackendError::Config(s)) };
    let linux = spec.linux().as_ref();
    if !ns.has("mount") {
        // The container shares the host's mount namespace and is chrooted into its rootfs. Whatever needs a
        // mount would be mounted in the host's mount table and outlive the container: refuse it.
        let needs_mount = [
            ("mounts", spec.mounts().as_ref().is_some_and(|m| !m.is_empty())),
            ("linux.maskedPaths", linux.and_then(|l| l.masked_paths().as_ref()).is_some_and(|p| !p.is_empty())),
            ("linux.readonlyPaths", linux.and_then(|l| l.readonly_paths().as_ref()).is_some_and(|p| !p.is_empty())),
            ("root.readonly", spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false)),
            ("linux.devices", linux.and_then(|l| l.devices().as_ref()).is_some_and(|d| !d.is_empty())),
        ];
        if let Some((field, _)) = needs_mount.iter().find(|(_, set)| *set) {
            return Err(bad(format!(
                "{field} needs a mount namespace, and linux.namespaces has none (the container would share the \
                 host's, and the mounts would stay in the host's mount table): add {{\"type\": \"mount\"}} to \
                 linux.namespaces or remove {field}"
            )));
        }
    }
    if ns.creates("user") {
        let l =
            linux.ok_or_else(|| bad("a new user namespace needs linux.uidMappings and linux.gidMappings".into()))?;
        if l.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
            || l.gid_mappings().as_ref().is_none_or(|m| m.is_empty())
        {
            return Err(bad("a new user namespace needs linux.uidMappings and linux.gidMappings: add them or remove the user namespace".into()));
        }
    }
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !ns.has("uts") {
        return Err(bad(
            "hostname is set but there is no uts namespace: add {\"type\": \"uts\"} or remove hostname".into()
        ));
    }
    if linux.and_then(|l| l.time_offsets().as_ref()).is_some_and(|t| !t.is_empty()) && !ns.creates("time") {
        return Err(bad("linux.timeOffsets needs a new time namespace: add {\"type\": \"time\"}".into()));
    }
    if let Some(p) = spec.process() {
        if p.terminal().unwrap_or(false) && opts.console_socket.is_none() && !opts.foreground {
            return Err(bad("process.terminal is true: pass --console-socket (or set terminal to false)".into()));
        }
        if let Some(c) = p.capabilities() {
            crate::capabilities::validate(c)?;
            crate::capabilities::check_host(c, ns.has("user"))?;
        }
        crate::lsm::check(
            p.apparmor_profile().as_deref(),
            p.selinux_label().as_deref(),
            linux.and_then(|l| l.mount_label().as_deref()),
        )?;
        // The maps of the user namespace the process will run in: the config's for a new one, hako's own when
        // there is none, unknown for one joined by path (init checks it there).
        let maps = |spec_maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>, file: &str| {
            if ns.creates("user") {
                Some(crate::process::spec_id_ranges(spec_maps.map(Vec::as_slice).unwrap_or_default()))
            } else if ns.has("user") {
                None
            } else {
                std::fs::read_to_string(format!("/proc/self/{file}")).ok().map(|t| crate::process::parse_id_map(&t))
            }
        };
        crate::process::check_ids(
            p.user(),
            maps(linux.and_then(|l| l.uid_mappings().as_ref()), "uid_map").as_deref(),
            maps(linux.and_then(|l| l.gid_mappings().as_ref()), "gid_map").as_deref(),
        )?;
    }
    if let Some(s) = linux.and_then(|l| l.seccomp().as_ref()) {
        crate::seccomp::validate(s)?;
    }
    let private = |kind: &str| private_namespace(ns, kind);
    let mut keys: Vec<&String> =
        linux.and_then(|l| l.sysctl().as_ref()).into_iter().flatten().map(|(k, _)| k).collect();
    keys.sort();
    for key in keys {
        crate::process::check_sysctl(key, &private)?;
    }
    Ok(())
}

/// Whether the container has a `kind` namespace of its own: a new one, or one joined by a path that is not the
/// namespace hako itself runs in (what runc checks before it lets a `net.*` sysctl through).
fn private_namespace(ns: &NsPlan, kind: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    if ns.creates(kind) {
        return true;
    }
    let Some((_, path)) = ns.join.iter().find(|(k, _)| k == kind) else { return false };
    let own = format!("/proc/self/ns/{}", crate::namespaces::proc_name(kind));
    match (std::fs::metadata(path), std::fs::metadata(own)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) != (b.dev(), b.ino()),
        _ => false,
    }
}

struct CreateHooks<'a> {
    dir: &'a Locked,
    state: &'a mut State,
    spec: &'a Spec,
}

impl spawn::Hooks for CreateHooks<'_> {
    fn on_pid(&mut self, pid: i32) -> Result<(), String> {
        self.state.pid = pid;
        self.state.pid_start_time = sys::proc_stat(pid).map(|s| s.0).unwrap_or(0);
        self.dir.save(self.state).map_err(|e| e.to_string())
    }

    fn on_create_runtime(&mut self, _pid: i32) -> Result<String, String> {
        // As crun: the hooks of create see the container as `created` (runc 1.1 says `creating`).
        let json = self.state.oci_json(Status::Created).to_string();
        if let Some(h) = self.spec.hooks() {
            for (phase, list) in [("prestart", h.prestart()), ("createRuntime", h.create_runtime())] {
                if let Some(list) = list {
                    hako_runtime::hooks::run(phase, list, &json).map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(json)
    }
}

/// What [`ProcessIsolation::check`] found a config to ask for.
#[derive(Debug)]
pub struct Checked {
    /// The namespaces to create and join.
    pub ns: NsPlan,
    /// The container's cgroup, resolved but not created.
    pub cgroup: Cgroup,
    /// The host uid and gid of the container's process (through the id maps).
    pub host_ids: (u32, u32),
}

impl ProcessIsolation {
    /// Everything process isolation checks in a config before it creates anything (state, cgroup, process):
    /// the namespaces, what [`validate`] refuses and the cgroup path. Reads the host (its cgroup mounts,
    /// capabilities, LSMs) but changes nothing; `create` starts with it.
    pub fn check(spec: &Spec, id: &str, opts: &CreateOptions) -> Result<Checked, BoxError> {
        let linux = spec.linux().as_ref();
        let ns = NsPlan::from_spec(linux.and_then(|l| l.namespaces().as_deref()).unwrap_or_default())?;
        check_id_maps(spec)?;
        validate(spec, &ns, opts)?;
        let cgroup = Cgroup::resolve(linux.and_then(|l| l.cgroups_path().as_deref()), id)?;
        Ok(Checked { ns, cgroup, host_ids: host_ids(spec) })
    }

    fn cgroup(state: &State) -> Result<Option<Cgroup>, BoxError> {
        Ok(data(state)?.cgroup)
    }

    fn wait_gone(state: &State, timeout: Duration) -> bool {
        let start = Instant::now();
        while sys::process_alive(state.pid, state.pid_start_time) {
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

impl Isolation for ProcessIsolation {
    fn name(&self) -> &'static str {
        "process"
    }

    fn create(&self, dir: &Locked, bundle: &Bundle, opts: &CreateOptions) -> Result<(State, Spawned), BoxError> {
        let spec = &bundle.spec;
        let linux = spec.linux().as_ref();
        let Checked { ns, cgroup, host_ids: (uid, gid) } = ProcessIsolation::check(spec, dir.id().as_str(), opts)?;
        let mut state = State::creating(
            dir.id(),
            bundle,
            self.name(),
            serde_json::to_value(Data {
                cgroup: Some(cgroup.clone()),
                namespaces: ns.kinds(),
                own_pid_ns: ns.has("pid"),
                state_dir: dir.dir().to_owned(),
            })?,
        );
        // From here on, state.json names everything to clean up.
        dir.save(&state)?;
        dir.save_config(spec)?;
        let result = (|| -> Result<Spawned, BoxError> {
            cgroup.create()?;
            if let Some(r) = linux.and_then(|l| l.resources().as_ref()) {
                cgroup
                    .apply(&with_default_devices(r, linux.and_then(|l| l.devices().as_deref()).unwrap_or_default()))?;
            }
            let fifo = dir.dir().join(FIFO);
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
            // init opens it as the container's user, seen from the host through the id maps.
            nix::unistd::chown(&fifo, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)))?;
            let config = InitConfig {
                exec: false,
                id: state.id.clone(),
                spec: spec.clone(),
                rootfs: bundle.rootfs.clone(),
                bundle: bundle.path.clone(),
                state_dir: dir.dir().to_owned(),
                ns: ns.clone(),
                no_pivot: opts.no_pivot,
                no_new_keyring: opts.no_new_keyring,
                preserve_fds: opts.preserve_fds,
                cgroups: cgroup_plans(&cgroup),
            };
            let maps = (
                linux.and_then(|l| l.uid_mappings().clone()).unwrap_or_default(),
                linux.and_then(|l| l.gid_mappings().clone()).unwrap_or_default(),
            );
            let req = spawn::Request {
                config,
                cgroup: Some(&cgroup),
                id_maps: maps,
                console_socket: opts.console_socket.as_deref(),
                stdio: opts.stdio,
            };
            let mut hooks = CreateHooks { dir, state: &mut state, spec };
            let s = spawn::spawn(req, &mut hooks)?;
            Ok(Spawned { pid: s.pid, console: s.console })
        })();
        match result {
            Ok(spawned) => {
                state.status = Status::Created;
                dir.save(&state)?;
                Ok((state, spawned))
            }
            Err(e) => {
                // A tiny memory limit shows up as init dying silently (SIGKILL, a reset channel): name the limit.
                let e = match cgroup.oom_kill_count() {
                    Ok(n) if n > 0 => {
                        let limit = linux
                            .and_then(|l| l.resources().as_ref())
                            .and_then(|r| r.memory().as_ref())
                            .and_then(|m| m.limit())
                            .filter(|l| *l > 0)
                            .map_or_else(
                                || "the container's cgroup".to_string(),
                                |l| format!("{l} bytes (linux.resources.memory.limit)"),
                            );
                        Box::new(BackendError::OutOfMemory { limit })
                    }
                    _ => e,
                };
                if let Err(c) = self.cleanup(&state) {
                    tracing::warn!("cleanup after failed create of {}: {c}", state.id);
                }
                Err(e)
            }
        }
    }

    fn status(&self, state: &State) -> Status {
        if state.status == Status::Creating && state.pid == 0 {
            return Status::Creating;
        }
        if !sys::process_alive(state.pid, state.pid_start_time) {
            return Status::Stopped;
        }
        if state.status == Status::Creating {
            return Status::Creating;
        }
        let Ok(d) = data(state) else {
            // Neither its cgroup nor its fifo can be found: the process runs, as last recorded.
            return state.status;
        };
        if d.cgroup.is_some_and(|c| c.is_frozen().unwrap_or(false)) {
            return Status::Paused;
        }
        let fifo = d.state_dir.join(FIFO);
        if fifo.exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    fn start(&self, dir: &Locked, state: &State) -> Result<(), BoxError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let fifo = dir.dir().join(FIFO);
        let io = |what: String| BackendError::Io { id: state.id.clone(), what };
        // Non-blocking: a dead init never opens the other end, and we must notice.
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(|e| io(format!("open {}: {e}", fifo.display())))?;
        // The first byte says init got past its wait; what follows until end-of-file (init's execve closes its
        // end) is an error text when startContainer hooks or execve failed.
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut removed = false;
        loop {
            match f.read(&mut buf) {
                Ok(0) if !got.is_empty() => break,
                Ok(n) if n > 0 => {
                    got.extend_from_slice(&buf[..n]);
                    if !removed {
                        // Started: from now on the container is no longer "created".
                        std::fs::remove_file(&fifo).map_err(|e| io(format!("remove {}: {e}", fifo.display())))?;
                        removed = true;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Box::new(io(format!("read {}: {e}", fifo.display())))),
            }
            if got.is_empty() && !sys::process_alive(state.pid, state.pid_start_time) {
                let _ = std::fs::remove_file(&fifo);
                return Err(Box::new(io("the container process exited before it could start".into())));
            }
            let mut pfd = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&f), nix::poll::PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(10u8));
        }
        if got.len() > 1 {
            return Err(Box::new(io(String::from_utf8_lossy(&got[1..]).into_owned())));
        }
        Ok(())
    }

    fn kill(&self, state: &State, signal: i32, all: bool) -> Result<(), BoxError> {
        if all {
            if let Some(cg) = Self::cgroup(state)? {
                cg.kill_all(signal)?;
                return Ok(());
            }
        }
        // Only the process recorded at create, proven by its start time and held by a pidfd: never a reused pid.
        let Some(init) = Owned::find(state.pid, state.pid_start_time) else {
            // With --all a stopped container is not an error: nothing of it is left to signal.
            return if all {
                Ok(())
            } else {
                Err(Box::new(BackendError::Io {
                    id: state.id.clone(),
                    what: format!("its process {} is no longer running", state.pid),
                }))
            };
        };
        init.signal(signal)?;
        Ok(())
    }

    fn exec(&self, state: &State, config: &Spec, opts: &ExecOptions) -> Result<Spawned, BoxError> {
        let d = data(state)?;
        let mut spec = config.clone();
        if opts.process.terminal().unwrap_or(false) && opts.console_socket.is_none() && !opts.foreground {
            return Err(Box::new(BackendError::Config(
                "the exec process has a terminal: pass --console-socket, or run it in the foreground".into(),
            )));
        }
        spec.set_process(Some(opts.process.clone()));
        let config = InitConfig {
            exec: true,
            id: state.id.clone(),
            spec,
            rootfs: state.rootfs.clone(),
            bundle: state.bundle.clone(),
            state_dir: d.state_dir.clone(),
            ns: NsPlan::join_all_of(state.pid, state.pid_start_time, &d.namespaces),
            no_pivot: false,
            no_new_keyring: true,
            preserve_fds: opts.preserve_fds,
            cgroups: Vec::new(),
        };
        struct NoHooks;
        impl spawn::Hooks for NoHooks {
            fn on_pid(&mut self, _: i32) -> Result<(), String> {
                Ok(())
            }
            fn on_create_runtime(&mut self, _: i32) -> Result<String, String> {
                Ok(String::new())
            }
        }
        let req = spawn::Request {
            config,
            cgroup: d.cgroup.as_ref(),
            id_maps: Default::default(),
            console_socket: opts.console_socket.as_deref(),
            stdio: opts.stdio,
        };
        let s = spawn::spawn(req, &mut NoHooks)?;
        Ok(Spawned { pid: s.pid, console: s.console })
    }

    fn pause(&self, state: &State) -> Result<(), BoxError> {
        let cg = Self::cgroup(state)?
            .ok_or_else(|| BackendError::Config(format!("container {} has no cgroup to freeze", state.id)))?;
        Ok(cg.freeze()?)
    }

    fn resume(&self, state: &State) -> Result<(), BoxError> {
        let cg = Self::cgroup(state)?
            .ok_or_else(|| BackendError::Config(format!("container {} has no cgroup to thaw", state.id)))?;
        Ok(cg.thaw()?)
    }

    fn pids(&self, state: &State) -> Result<Vec<i32>, BoxError> {
        match Self::cgroup(state)? {
            Some(cg) => Ok(cg.pids()?),
            None => Ok(vec![state.pid]),
        }
    }

    fn stats(&self, state: &State) -> Result<serde_json::Value, BoxError> {
        let cg = Self::cgroup(state)?
            .ok_or_else(|| BackendError::Config(format!("container {} has no cgroup", state.id)))?;
        Ok(serde_json::to_value(cg.stats()?)?)
    }

    fn update(&self, state: &State, resources: &LinuxResources) -> Result<(), BoxError> {
        let cg = Self::cgroup(state)?
            .ok_or_else(|| BackendError::Config(format!("container {} has no cgroup", state.id)))?;
        Ok(cg.apply(resources)?)
    }

    fn cleanup(&self, state: &State) -> Result<(), BoxError> {
        let init = Owned::find(state.pid, state.pid_start_time);
        let d = match data(state) {
            Ok(d) => d,
            Err(e) => {
                // What is safe without the data: the init process, proven by its start time (with its own pid
                // namespace, that is every process). Its cgroup is unknown and stays.
                if let Some(init) = init {
                    let _ = init.signal(libc::SIGKILL);
                    Self::wait_gone(state, Duration::from_secs(10));
                }
                return Err(e);
            }
        };
        let alive = init.is_some();
        // When the init of the container's own pid namespace is gone, the kernel has killed every process
        // in it already; otherwise kill everything in the cgroup (freezing for that is costly, so only when
        // the cgroup is not empty).
        let ns_gone = d.own_pid_ns && !alive;
        if let Some(cg) = d.cgroup.as_ref().filter(|_| !ns_gone) {
            if cg.pids().map(|p| !p.is_empty()).unwrap_or(true) {
                let _ = cg.kill_all(libc::SIGKILL);
                let _ = cg.thaw();
            }
        }
        if let Some(init) = init {
            let _ = init.signal(libc::SIGKILL);
            if !Self::wait_gone(state, Duration::from_secs(10)) {
                return Err(Box::new(BackendError::Io {
                    id: state.id.clone(),
                    what: format!("process {} did not die after SIGKILL", state.pid),
                }));
            }
        }
        if let Some(cg) = &d.cgroup {
            cg.destroy()?;
        }
        Ok(())
    }
}
