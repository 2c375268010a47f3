//! The supervisor process (Windows): brings the container (and its utility VM) up, holds the
//! HCS handles, serves the pipe until `delete`. Also the client side, [`call`].

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::error::HcsError;
use crate::ffi;
use crate::hcs::{self, ComputeSystem, Process};
use crate::oci::Bundle;
use crate::schema::{
    CcgSystemInfo, ContainerCredentialGuardState, HostedSystemDocument, ProcessSignal, PropertyQuery, PropertyType,
    ServiceModificationRequest, ServiceProperties,
};
use crate::state::{ContainerState, StateStore, Status};
use crate::translate::{translate, HcsPlan, InitProcess};

use super::{decode, encode, Reply, Request, MAX_MESSAGE};

fn pipe_error(state: &ContainerState, detail: String, fix: &'static str) -> HcsError {
    HcsError::Supervisor { id: state.id.clone(), pipe: state.pipe.clone(), detail, fix }
}

/// Sends `request` to the supervisor of `state` and returns its reply.
pub fn call(state: &ContainerState, request: &Request) -> Result<Reply, HcsError> {
    let fix = "the supervisor is gone; remove the container with hako delete --force";
    let mut pipe =
        ffi::connect(&state.pipe, 10_000).map_err(|e| pipe_error(state, format!("cannot connect: {}", e), fix))?;
    let bytes = encode(request).map_err(|e| pipe_error(state, e, "report this as a hako bug"))?;
    pipe.write_all(&bytes).map_err(|e| pipe_error(state, format!("cannot send: {}", e), fix))?;
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    let n = pipe.read(&mut buf).map_err(|e| pipe_error(state, format!("no answer: {}", e), fix))?;
    decode(&buf[..n]).map_err(|e| pipe_error(state, e, "report this as a hako bug"))
}

/// What the supervisor holds.
struct Held {
    store: StateStore,
    state: ContainerState,
    plan: HcsPlan,
    uvm: Option<ComputeSystem>,
    container: ComputeSystem,
    init: Option<Arc<Process>>,
    ccg_added: bool,
}

/// Runs the supervisor of container `id` under `root` until the container is deleted. On a
/// failure during bring-up the error is also written to the state directory for `create`.
pub fn run(root: &Path, id: &str) -> Result<(), HcsError> {
    let store = StateStore::new(root);
    let result = serve(&store, id);
    if let Err(e) = &result {
        let _ = store.write_error(id, &e.to_string());
    }
    result
}

fn serve(store: &StateStore, id: &str) -> Result<(), HcsError> {
    let state = store.load(id)?;
    let bundle = Bundle::load(&store.dir(id))?;
    let opts = crate::backend::translate_options_for(&state);
    let plan = translate(&bundle, &opts).map_err(|error| HcsError::spec(state.bundle.clone(), error))?;
    plan.preflight().map_err(|error| HcsError::spec(state.bundle.clone(), error))?;
    let mut listener = ffi::PipeListener::bind(&state.pipe).map_err(|e| {
        pipe_error(
            &state,
            format!("cannot create the pipe: {}", e),
            "another supervisor serves this container; delete it first",
        )
    })?;
    let held = bring_up(store.clone(), state, plan)?;
    let held = Arc::new(Mutex::new(held));
    {
        let mut h = lock(&held);
        h.state.status = Status::Created;
        h.state.supervisor_pid = Some(std::process::id());
        let s = h.state.clone();
        h.store.save(&s)?;
    }
    loop {
        let mut conn = match listener.accept() {
            Ok(c) => c,
            Err(_) => {
                thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        let n = match conn.read(&mut buf) {
            Ok(n) => n,
            Err(_) => continue,
        };
        let (reply, done) = match decode::<Request>(&buf[..n]) {
            Ok(req) => handle(&held, req),
            Err(e) => (Reply::error(e), false),
        };
        if let Ok(bytes) = encode(&reply) {
            let _ = conn.write_all(&bytes);
        }
        drop(conn);
        if done {
            break;
        }
    }
    let mut h = lock(&held);
    tear_down(&mut h);
    Ok(())
}

fn lock(held: &Arc<Mutex<Held>>) -> std::sync::MutexGuard<'_, Held> {
    match held.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Creates the utility VM (if any) and the container, in the order of the plan.
fn bring_up(store: StateStore, state: ContainerState, mut plan: HcsPlan) -> Result<Held, HcsError> {
    let build = Some(state.host_build);
    let mut uvm = None;
    if let Some(vm) = &plan.utility_vm {
        if let Some(copy) = &vm.scratch_from_template {
            if !Path::new(&copy.path).exists() {
                if let Some(parent) = Path::new(&copy.path).parent() {
                    std::fs::create_dir_all(parent).map_err(|source| HcsError::Io {
                        action: "cannot create the utility VM scratch folder",
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                std::fs::copy(&copy.template, &copy.path).map_err(|source| HcsError::Io {
                    action: "cannot copy the utility VM scratch template",
                    path: copy.template.clone().into(),
                    source,
                })?;
            }
        }
        for file in &vm.grant_vm_access {
            hcs::grant_vm_access(&vm.id, file, build)?;
        }
        let doc = serde_json::to_string(&vm.document)
            .map_err(|source| HcsError::Serialize { bundle: state.bundle.clone(), source })?;
        let system = ComputeSystem::create(&vm.id, &doc, build)?;
        system.start()?;
        for request in &vm.guest_requests {
            if let Err(e) = system.modify(request) {
                let _ = system.terminate();
                return Err(e.into());
            }
        }
        uvm = Some(system);
    }
    let ccg_added = add_credential_guard(&state, &mut plan)?;
    let doc = serde_json::to_string(&plan.container.document)
        .map_err(|source| HcsError::Serialize { bundle: state.bundle.clone(), source })?;
    let container = match ComputeSystem::create(&plan.container.id, &doc, build) {
        Ok(c) => c,
        Err(e) => {
            if let Some(vm) = &uvm {
                let _ = vm.terminate();
            }
            return Err(e.into());
        }
    };
    if let Err(e) = container.start() {
        let _ = container.terminate();
        if let Some(vm) = &uvm {
            let _ = vm.terminate();
        }
        return Err(e.into());
    }
    Ok(Held { store, state, plan, uvm, container, init: None, ccg_added })
}

/// Registers the gMSA instance with HCS and puts its state into the container document.
fn add_credential_guard(state: &ContainerState, plan: &mut HcsPlan) -> Result<bool, HcsError> {
    let doc = &mut plan.container.document;
    let container = match (doc.container.as_mut(), doc.hosted_system.as_mut()) {
        (Some(c), _) => c,
        (None, Some(HostedSystemDocument::Windows(h))) => match h.container.as_mut() {
            Some(c) => c,
            None => return Ok(false),
        },
        _ => return Ok(false),
    };
    let wanted = match container.container_credential_guard.take() {
        Some(w) => w,
        None => return Ok(false),
    };
    let build = Some(state.host_build);
    let add = ServiceModificationRequest::add_instance(&state.id, &wanted.credential_spec, &wanted.transport);
    let add = serde_json::to_string(&add).unwrap_or_default();
    hcs::modify_service_settings(&add, &format!("gMSA instance of {}", state.id), build)?;
    let query = serde_json::to_string(&PropertyQuery {
        property_types: vec![PropertyType::ContainerCredentialGuard],
        queries: None,
    })
    .unwrap_or_default();
    let answer = hcs::get_service_properties(&query, "gMSA instances", build)?;
    let props: ServiceProperties = serde_json::from_str(&answer).unwrap_or_default();
    let found: Option<ContainerCredentialGuardState> = props
        .properties
        .iter()
        .filter_map(|p| serde_json::from_value::<CcgSystemInfo>(p.clone()).ok())
        .flat_map(|info| info.instances)
        .find(|i| i.id == state.id)
        .and_then(|i| i.credential_guard);
    match found {
        Some(s) => {
            container.container_credential_guard = Some(s);
            Ok(true)
        }
        None => Err(HcsError::Unsupported {
            what: format!("the gMSA instance of container {} (HCS did not list it after adding it)", state.id),
            fix: "check the credential spec and that the host is domain-joined or configured for gMSA (ccg.exe)",
        }),
    }
}

fn remove_credential_guard(h: &Held) {
    if h.ccg_added {
        let req = serde_json::to_string(&ServiceModificationRequest::remove_instance(&h.state.id)).unwrap_or_default();
        let _ =
            hcs::modify_service_settings(&req, &format!("gMSA instance of {}", h.state.id), Some(h.state.host_build));
    }
}

fn save(h: &Held) -> Result<(), HcsError> {
    h.store.save(&h.state)
}

/// Handles one request; the bool says whether the supervisor should exit.
fn handle(held: &Arc<Mutex<Held>>, request: Request) -> (Reply, bool) {
    let result = match request {
        Request::Ping => Ok((Reply::ok(), false)),
        Request::Start => start(held).map(|pid| (Reply { ok: true, error: String::new(), pid: Some(pid) }, false)),
        Request::Signal { signal, all } => signal_init(held, &signal, all).map(|()| (Reply::ok(), false)),
        Request::Resize { width, height } => {
            let h = lock(held);
            match &h.init {
                Some(p) => p.resize_console(height, width).map(|()| (Reply::ok(), false)).map_err(HcsError::from),
                None => Err(HcsError::WrongState {
                    id: h.state.id.clone(),
                    state: h.state.status.to_string(),
                    operation: "resize its console",
                    fix: "start it first",
                }),
            }
        }
        Request::Pause => {
            let mut h = lock(held);
            let r = h.container.pause();
            r.map_err(HcsError::from).and_then(|()| {
                h.state.status = Status::Paused;
                save(&h).map(|()| (Reply::ok(), false))
            })
        }
        Request::Resume => {
            let mut h = lock(held);
            let r = h.container.resume();
            r.map_err(HcsError::from).and_then(|()| {
                h.state.status = if h.init.is_some() { Status::Running } else { Status::Created };
                save(&h).map(|()| (Reply::ok(), false))
            })
        }
        Request::Delete { force } => {
            let mut h = lock(held);
            if h.state.status == Status::Running && !force {
                Err(HcsError::WrongState {
                    id: h.state.id.clone(),
                    state: h.state.status.to_string(),
                    operation: "be deleted",
                    fix: "stop it first (hako kill) or use hako delete --force",
                })
            } else {
                tear_down(&mut h);
                Ok((Reply::ok(), true))
            }
        }
    };
    match result {
        Ok(r) => r,
        Err(e) => (Reply::error(e.to_string()), false),
    }
}

/// Creates the init process, starts the stdio relays and the exit watcher.
fn start(held: &Arc<Mutex<Held>>) -> Result<u32, HcsError> {
    let mut h = lock(held);
    if h.state.status != Status::Created || h.init.is_some() {
        return Err(HcsError::WrongState {
            id: h.state.id.clone(),
            state: h.state.status.to_string(),
            operation: "be started",
            fix: "only a created container can be started; create a new one",
        });
    }
    let params = match &h.plan.process {
        Some(InitProcess::Windows(p)) => serde_json::to_string(p),
        Some(InitProcess::Linux(p)) => serde_json::to_string(p),
        None => {
            return Err(HcsError::WrongState {
                id: h.state.id.clone(),
                state: h.state.status.to_string(),
                operation: "be started",
                fix: "config.json has no process; add one and recreate the container",
            })
        }
    }
    .map_err(|source| HcsError::Serialize { bundle: h.state.bundle.clone(), source })?;
    let mut process = h.container.create_process(&params)?;
    let stdin = process.stdin.take();
    let stdout = process.stdout.take();
    let stderr = process.stderr.take();
    let process = Arc::new(process);
    if let Some(mut pipe) = stdin {
        let p = Arc::clone(&process);
        thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut pipe);
            drop(pipe);
            let _ = p.close_stdin();
        });
    }
    if let Some(mut pipe) = stdout {
        thread::spawn(move || {
            let _ = std::io::copy(&mut pipe, &mut std::io::stdout());
        });
    }
    if let Some(mut pipe) = stderr {
        thread::spawn(move || {
            let _ = std::io::copy(&mut pipe, &mut std::io::stderr());
        });
    }
    let pid = process.pid();
    h.init = Some(Arc::clone(&process));
    h.state.status = Status::Running;
    h.state.init_process_id = Some(pid);
    save(&h)?;
    drop(h);
    let watcher = Arc::clone(held);
    thread::spawn(move || {
        let code = process.wait().ok();
        let mut h = lock(&watcher);
        h.state.status = Status::Stopped;
        h.state.exit_code = code;
        let _ = save(&h);
    });
    Ok(pid)
}

/// Signals the init process (or, before start or with `all`, stops the container).
fn signal_init(held: &Arc<Mutex<Held>>, signal: &str, all: bool) -> Result<(), HcsError> {
    let mut h = lock(held);
    let windows_signal = ProcessSignal::from_runc_signal(signal)
        .map_err(|what| HcsError::Unsupported { what, fix: "pick a signal with a Windows equivalent" })?;
    match (&h.init, all) {
        (Some(p), false) => match windows_signal {
            Some(sig) => p.signal(sig)?,
            None => p.terminate()?,
        },
        _ => {
            match windows_signal {
                None | Some(ProcessSignal::CtrlShutdown) => h.container.stop()?,
                Some(_) => h.container.terminate()?,
            }
            h.state.status = Status::Stopped;
            save(&h)?;
        }
    }
    Ok(())
}

/// Stops the init process, the container and the utility VM; removes the gMSA instance.
fn tear_down(h: &mut Held) {
    if let Some(p) = h.init.take() {
        let _ = p.terminate();
    }
    let _ = h.container.stop();
    remove_credential_guard(h);
    if let Some(vm) = h.uvm.take() {
        let _ = vm.stop();
        if let Some(plan) = &h.plan.utility_vm {
            for file in &plan.grant_vm_access {
                let _ = hcs::revoke_vm_access(&plan.id, file, Some(h.state.host_build));
            }
        }
    }
    h.state.status = Status::Stopped;
    let _ = save(h);
}
