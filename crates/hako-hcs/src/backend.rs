//! The Windows backend's container lifecycle, what the `hako` CLI calls on Windows:
//! create, start, state, kill, delete, list, exec, resize, pause, resume, ps.
//!
//! `create` translates the bundle, checks image/host compatibility, records the state under
//! `--root` and spawns the supervisor (`crate::supervisor`), which holds the HCS handles until
//! `delete`. Later commands talk to the supervisor over its pipe; `exec` and `ps` open the
//! container's compute system by id themselves (the supervisor keeps it alive).
//!
//! Only built on Windows.

use std::os::windows::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::HcsError;
use crate::ffi;
use crate::hcs::{self, ComputeSystem};
use crate::host;
use crate::oci::{Bundle, Process as OciProcess};
use crate::osversion::OsVersion;
use crate::schema::{LcowProcessParameters, ProcessDetails, PropertyQuery, PropertyType};
use crate::state::{now_unix, ContainerState, StateStore, Status};
use crate::supervisor::{self, pipe_name, Request, SUPERVISOR_SUBCOMMAND};
use crate::translate::{self, paths, Isolation, StdioPipes, TranslateOptions};

const DETACHED_PROCESS: u32 = 0x0000_0008;
const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;

/// How to start the supervisor: `program args... --root ROOT --id ID`.
#[derive(Debug, Clone)]
pub struct SupervisorCommand {
    /// The program (default: the running hako executable).
    pub program: PathBuf,
    /// Arguments before `--root` (default: `hcs-supervisor`).
    pub args: Vec<String>,
}

impl Default for SupervisorCommand {
    fn default() -> Self {
        SupervisorCommand {
            program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hako.exe")),
            args: vec![SUPERVISOR_SUBCOMMAND.to_string()],
        }
    }
}

/// Options of `create`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Isolation asked for on the command line.
    pub isolation: Option<Isolation>,
    /// The image's os.version, when the caller knows it.
    pub image_os_version: Option<OsVersion>,
    /// Write the supervisor's pid here.
    pub pid_file: Option<PathBuf>,
}

/// The Windows backend over one state root.
#[derive(Debug, Clone)]
pub struct Backend {
    store: StateStore,
    owner: String,
    supervisor: SupervisorCommand,
}

/// The translate options the supervisor uses for a container (the same as at create).
pub(crate) fn translate_options_for(state: &ContainerState) -> TranslateOptions {
    let mut t = TranslateOptions::for_host_build(&state.id, state.host_build);
    t.owner = state.owner.clone();
    t.isolation = state.isolation_override;
    t.image_os_version = state.image_os_version.as_deref().and_then(|v| v.parse().ok());
    t.layer_id = ffi::name_to_guid;
    t.layer_id_is_real = true;
    t.probe = Some(host::path_exists);
    t.host_processors = host::logical_processors();
    t.host_measured = true;
    if let Ok(info) = host::read_host_info() {
        t.host = info;
    }
    t
}

/// Checks mount sources on the host and resolves symlinks (HCS does not follow them in file
/// paths): each source must be an existing directory. Pipes are left alone.
fn resolve_mount_sources(bundle: &mut Bundle) -> Result<(), HcsError> {
    for (i, m) in bundle.spec.mounts.iter_mut().enumerate() {
        if !paths::is_absolute_drive_path(&m.source) || m.source.starts_with(r"\\.\") {
            continue;
        }
        let meta = std::fs::metadata(&m.source).map_err(|source| HcsError::Io {
            action: "cannot use mount source",
            path: PathBuf::from(&m.source),
            source,
        })?;
        if !meta.is_dir() {
            return Err(HcsError::Unsupported {
                what: format!("mounts[{}].source {} is a file; Windows containers map directories only", i, m.source),
                fix: "map the folder that holds the file",
            });
        }
        let resolved = std::fs::canonicalize(&m.source).map_err(|source| HcsError::Io {
            action: "cannot resolve mount source",
            path: PathBuf::from(&m.source),
            source,
        })?;
        let text = resolved.to_string_lossy().into_owned();
        let text = text.strip_prefix(r"\\?\").map(str::to_string).unwrap_or(text);
        if let Some(raw) = bundle.raw.get_mut("mounts").and_then(|v| v.get_mut(i)).and_then(|v| v.as_object_mut()) {
            raw.insert("source".to_string(), serde_json::Value::String(text.clone()));
        }
        m.source = text;
    }
    Ok(())
}

impl Backend {
    /// A backend keeping state under `root`, owner `hako`, supervisor = this executable.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Backend { store: StateStore::new(root), owner: "hako".to_string(), supervisor: SupervisorCommand::default() }
    }

    /// Sets the HCS owner.
    pub fn with_owner(mut self, owner: &str) -> Self {
        self.owner = owner.to_string();
        self
    }

    /// Sets how the supervisor is started.
    pub fn with_supervisor(mut self, command: SupervisorCommand) -> Self {
        self.supervisor = command;
        self
    }

    /// `create`: brings the container up (through the supervisor) and returns its state.
    /// The supervisor inherits this process's stdio, which becomes the container's.
    pub fn create(&self, id: &str, bundle_dir: &Path, opts: &CreateOptions) -> Result<ContainerState, HcsError> {
        let mut bundle = Bundle::load(bundle_dir)?;
        resolve_mount_sources(&mut bundle)?;
        let info = host::read_host_info().map_err(|source| HcsError::Win32 {
            call: "RegGetValueW",
            object: r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion".to_string(),
            source,
        })?;
        let mut state = ContainerState {
            id: id.to_string(),
            bundle: bundle_dir.to_path_buf(),
            isolation: Isolation::Process,
            isolation_override: opts.isolation,
            status: Status::Creating,
            owner: self.owner.clone(),
            utility_vm_id: None,
            pipe: pipe_name(&format!("{:x}-{:x}", std::process::id(), now_nanos())),
            supervisor_pid: None,
            init_process_id: None,
            exit_code: None,
            created_unix: now_unix(),
            host_build: info.version.build,
            image_os_version: opts.image_os_version.map(|v| v.to_string()),
        };
        let topts = translate_options_for(&state);
        let plan =
            translate::translate(&bundle, &topts).map_err(|error| HcsError::spec(bundle_dir.to_path_buf(), error))?;
        plan.preflight().map_err(|error| HcsError::spec(bundle_dir.to_path_buf(), error))?;
        state.isolation = plan.isolation;
        state.utility_vm_id = plan.utility_vm.as_ref().map(|u| u.id.clone());
        let config = serde_json::to_string_pretty(&bundle.raw)
            .map_err(|source| HcsError::Serialize { bundle: bundle_dir.to_path_buf(), source })?;
        self.store.create(&state, &config)?;
        match self.spawn_and_wait(&state) {
            Ok(pid) => {
                if let Some(f) = &opts.pid_file {
                    std::fs::write(f, pid.to_string()).map_err(|source| HcsError::Io {
                        action: "cannot write pid file",
                        path: f.clone(),
                        source,
                    })?;
                }
                self.store.load(id)
            }
            Err(e) => {
                let _ = self.store.remove(id);
                Err(e)
            }
        }
    }

    fn spawn_and_wait(&self, state: &ContainerState) -> Result<u32, HcsError> {
        let mut child = Command::new(&self.supervisor.program)
            .args(&self.supervisor.args)
            .arg("--root")
            .arg(self.store.root())
            .arg("--id")
            .arg(&state.id)
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP)
            .spawn()
            .map_err(|source| HcsError::Io {
                action: "cannot start the supervisor",
                path: self.supervisor.program.clone(),
                source,
            })?;
        let deadline = Instant::now() + hcs::CREATE_TIMEOUT * 2 + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let detail = self
                    .store
                    .read_error(&state.id)
                    .unwrap_or_else(|| format!("it exited with {} before the container was created", status));
                return Err(HcsError::Supervisor {
                    id: state.id.clone(),
                    pipe: state.pipe.clone(),
                    detail,
                    fix: "fix the cause above and create the container again",
                });
            }
            match supervisor::call(state, &Request::Ping) {
                Ok(reply) if reply.ok => return Ok(child.id()),
                _ => {}
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(HcsError::Supervisor {
                    id: state.id.clone(),
                    pipe: state.pipe.clone(),
                    detail: "the container was not created in time".to_string(),
                    fix: "check the Hyper-V-Compute event log; for Hyper-V isolation give the utility VM more memory",
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn request(&self, id: &str, request: Request) -> Result<supervisor::Reply, HcsError> {
        ask(&self.state(id)?, &request)
    }

    /// `start`: creates and starts the init process. Returns its id inside the container.
    pub fn start(&self, id: &str) -> Result<u32, HcsError> {
        Ok(self.request(id, Request::Start)?.pid.unwrap_or(0))
    }

    /// `state`: the recorded state; a container whose supervisor died is reported stopped.
    pub fn state(&self, id: &str) -> Result<ContainerState, HcsError> {
        let mut state = self.store.load(id)?;
        if state.status != Status::Stopped && state.status != Status::Creating {
            let alive = state.supervisor_pid.map_or(false, ffi::process_alive);
            if !alive {
                state.status = Status::Stopped;
            }
        }
        Ok(state)
    }

    /// `list`: every container under the root.
    pub fn list(&self) -> Result<Vec<ContainerState>, HcsError> {
        self.store.list()?.into_iter().map(|s| self.state(&s.id)).collect()
    }

    /// `kill ID SIGNAL [--all]`.
    pub fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), HcsError> {
        self.request(id, Request::Signal { signal: signal.to_string(), all }).map(|_| ())
    }

    /// `resize-tty ID WIDTH HEIGHT`.
    pub fn resize(&self, id: &str, width: u16, height: u16) -> Result<(), HcsError> {
        self.request(id, Request::Resize { width, height }).map(|_| ())
    }

    /// `pause`.
    pub fn pause(&self, id: &str) -> Result<(), HcsError> {
        self.request(id, Request::Pause).map(|_| ())
    }

    /// `resume`.
    pub fn resume(&self, id: &str) -> Result<(), HcsError> {
        self.request(id, Request::Resume).map(|_| ())
    }

    /// `delete [--force]`: stops and removes the container. With `force`, a container whose
    /// supervisor is gone is cleaned up by terminating its compute systems by id.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), HcsError> {
        let state = self.state(id)?;
        let alive = state.supervisor_pid.map_or(false, ffi::process_alive);
        if alive {
            ask(&state, &Request::Delete { force })?;
            // The supervisor exits after its reply; its files in the state directory stay
            // open until then, and Windows keeps a directory with open files.
            if let Some(pid) = state.supervisor_pid {
                if !ffi::wait_process_exit(pid, 30_000) {
                    return Err(HcsError::Supervisor {
                        id: id.to_string(),
                        pipe: state.pipe,
                        detail: format!("supervisor {} did not exit within 30 s of deleting the container", pid),
                        fix: "end the supervisor process (taskkill /pid PID) and run hako delete --force again",
                    });
                }
            }
        } else {
            let build = Some(state.host_build);
            for sys_id in std::iter::once(state.id.clone()).chain(state.utility_vm_id) {
                if let Ok(system) = ComputeSystem::open(&sys_id, build) {
                    if !force {
                        return Err(HcsError::WrongState {
                            id: id.to_string(),
                            state: "orphaned".to_string(),
                            operation: "be deleted",
                            fix: "its supervisor is gone but HCS still has it: use hako delete --force",
                        });
                    }
                    system.terminate()?;
                }
            }
        }
        self.store.remove(id)
    }

    /// `exec`: runs `process` in the container with this process's stdio; returns its exit code.
    pub fn exec(&self, id: &str, process: &OciProcess) -> Result<u32, HcsError> {
        let state = self.state(id)?;
        if state.status != Status::Running && state.status != Status::Created {
            return Err(HcsError::WrongState {
                id: id.to_string(),
                state: state.status.to_string(),
                operation: "exec a process",
                fix: "start the container first",
            });
        }
        let system = ComputeSystem::open(id, Some(state.host_build))?;
        let stdio = StdioPipes::default();
        let params = if state.isolation == Isolation::Lcow {
            let raw = serde_json::to_value(process).ok();
            let p: LcowProcessParameters = translate::linux_process_parameters(process, raw.as_ref(), stdio)
                .map_err(|error| HcsError::spec(state.bundle.clone(), error))?;
            serde_json::to_string(&p)
        } else {
            let p = translate::windows_process_parameters(process, stdio)
                .map_err(|error| HcsError::spec(state.bundle.clone(), error))?;
            serde_json::to_string(&p)
        }
        .map_err(|source| HcsError::Serialize { bundle: state.bundle.clone(), source })?;
        let mut proc = system.create_process(&params)?;
        let stdin = proc.stdin.take();
        let stdout = proc.stdout.take();
        let stderr = proc.stderr.take();
        let proc = std::sync::Arc::new(proc);
        if let Some(mut pipe) = stdin {
            let p = std::sync::Arc::clone(&proc);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin(), &mut pipe);
                drop(pipe);
                let _ = p.close_stdin();
            });
        }
        let out = stdout.map(|mut pipe| {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut pipe, &mut std::io::stdout());
            })
        });
        let err = stderr.map(|mut pipe| {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut pipe, &mut std::io::stderr());
            })
        });
        let code = proc.wait()?;
        if let Some(t) = out {
            let _ = t.join();
        }
        if let Some(t) = err {
            let _ = t.join();
        }
        Ok(code)
    }

    /// `ps`: the processes of the container.
    pub fn ps(&self, id: &str) -> Result<Vec<ProcessDetails>, HcsError> {
        let state = self.state(id)?;
        let system = ComputeSystem::open(id, Some(state.host_build))?;
        let props =
            system.properties(&PropertyQuery { property_types: vec![PropertyType::ProcessList], queries: None })?;
        Ok(props.process_list)
    }
}

/// The entry point of the hidden `hako hcs-supervisor --root ROOT --id ID` subcommand.
pub fn supervisor_main(root: &Path, id: &str) -> Result<(), HcsError> {
    supervisor::run(root, id)
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Sends `request` to the supervisor of `state`'s container; a reply that says it failed is the error.
fn ask(state: &ContainerState, request: &Request) -> Result<supervisor::Reply, HcsError> {
    let reply = supervisor::call(state, request)?;
    if !reply.ok {
        return Err(HcsError::Supervisor {
            id: state.id.clone(),
            pipe: state.pipe.clone(),
            detail: reply.error,
            fix: "see the message",
        });
    }
    Ok(reply)
}
