//! The typed HCS API: compute systems and processes as owned Rust values, every call run with
//! HCS's operation model.
//!
//! **Operation model.** Each call gets a fresh `HCS_OPERATION`; a call that returns `S_OK` has
//! only started, and its real result (an HRESULT plus a JSON document) comes from
//! `HcsWaitForOperationResult`. A call is never abandoned: when its deadline passes, hako calls
//! `HcsCancelOperation` and then keeps waiting until HCS reports the operation finished, and
//! only then closes the handles (closing them under an in-flight call crashes computecore.dll,
//! hcsshim `internal/computecore/computecore.go`). The error then says it timed out.
//!
//! Only built on Windows.

use std::fs::File;
use std::time::{Duration, Instant};

use windows_sys::core::HRESULT;

use crate::ffi::{self, OwnedOperation, OwnedProcess, OwnedSystem, ProcessCall, SystemCall};
use crate::hresult::{HcsCallError, HCS_E_PROCESS_ALREADY_STOPPED, HCS_E_SYSTEM_ALREADY_STOPPED, HRESULT_TIMEOUT};
use crate::schema::{
    ModifySettingRequest, ProcessModifyRequest, ProcessSignal, ProcessStatus, Properties, PropertyQuery,
    ResultDocument, SignalProcessOptions,
};

/// How long a compute system may take to be created or started (a utility VM boots).
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a graceful shutdown may take before hako terminates.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any other call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// What a call is about, for its error message.
#[derive(Debug, Clone)]
pub(crate) struct CallContext {
    pub(crate) name: &'static str,
    pub(crate) object: String,
    pub(crate) host_build: Option<u32>,
    /// The call is about a process-isolated container (no utility VM is involved).
    pub(crate) process_isolated: bool,
}

impl CallContext {
    fn error(&self, code: HRESULT, result: &str) -> HcsCallError {
        let doc = ResultDocument::parse(result);
        HcsCallError {
            operation: self.name.to_string(),
            object: self.object.clone(),
            code: code as u32,
            raw_result: if doc.is_none() { result.to_string() } else { String::new() },
            result: doc,
            host_build: self.host_build,
            process_isolated: self.process_isolated,
        }
    }

    fn io_error(&self, e: &std::io::Error) -> HcsCallError {
        let code = e.raw_os_error().map_or(0x8000_4005u32, |c| 0x8007_0000 | (c as u32 & 0xFFFF));
        self.error(code as HRESULT, &e.to_string())
    }
}

/// Runs one HCS call with its own operation: `start` issues it, `wait` waits for its result.
/// On timeout the operation is cancelled and still waited for; it is never abandoned.
fn run<T, W>(
    ctx: &CallContext,
    deadline: Duration,
    start: impl FnOnce(&OwnedOperation) -> Result<T, HRESULT>,
    mut wait: impl FnMut(&OwnedOperation, u32) -> (HRESULT, Option<W>, String),
) -> Result<(T, Option<W>, String), HcsCallError> {
    let op = OwnedOperation::new().map_err(|e| ctx.io_error(&e))?;
    // A call that fails synchronously has not started: closing the operation is safe.
    let value = start(&op).map_err(|hr| ctx.error(hr, ""))?;
    let begun = Instant::now();
    let mut cancelled = false;
    loop {
        let timeout_ms = if cancelled {
            ffi::INFINITE
        } else {
            let left = deadline.saturating_sub(begun.elapsed());
            u32::try_from(left.as_millis()).unwrap_or(ffi::INFINITE - 1).max(1)
        };
        let (hr, extra, doc) = wait(&op, timeout_ms);
        if hr as u32 == HRESULT_TIMEOUT && !cancelled {
            // Bound the call: ask HCS to cancel it, then wait for it to actually finish.
            let _ = ffi::cancel_operation(&op);
            cancelled = true;
            continue;
        }
        if cancelled {
            let mut e = ctx.error(HRESULT_TIMEOUT as HRESULT, &doc);
            e.raw_result = format!(
                "no result after {} s; the operation was cancelled{}",
                deadline.as_secs(),
                if doc.is_empty() { String::new() } else { format!(": {}", doc) }
            );
            e.result = None;
            return Err(e);
        }
        if hr < 0 {
            return Err(ctx.error(hr, &doc));
        }
        return Ok((value, extra, doc));
    }
}

/// [`run`] for a call that only returns an HRESULT: the result document, or the error.
fn run_call(
    ctx: &CallContext,
    deadline: Duration,
    start: impl FnOnce(&OwnedOperation) -> HRESULT,
) -> Result<String, HcsCallError> {
    let started = |op: &OwnedOperation| match start(op) {
        hr if hr < 0 => Err(hr),
        _ => Ok(()),
    };
    let ((), _, doc) = run(ctx, deadline, started, plain_wait)?;
    Ok(doc)
}

fn plain_wait(op: &OwnedOperation, ms: u32) -> (HRESULT, Option<()>, String) {
    let (hr, doc) = ffi::wait_for_operation_result(op, ms);
    (hr, None, doc)
}

/// Whether the Host Compute Service can be used: computecore.dll loads from System32 and has
/// every function hako calls. The error names the Windows feature to enable. Commands that need
/// HCS check this first; the others (`--help`, `hcs-doc`, `list`, `state`) work without it.
pub fn available() -> Result<(), crate::HcsError> {
    ffi::computecore().map(|_| ()).map_err(crate::HcsError::HcsUnavailable)
}

/// A compute system: a container or a utility VM.
pub struct ComputeSystem {
    id: String,
    handle: OwnedSystem,
    host_build: Option<u32>,
    /// A container without a utility VM (known from the document it was created with).
    process_isolated: bool,
}

/// Whether an HCS compute system document describes a process-isolated container: a `Container` that is
/// neither hosted in a utility VM (`HostingSystemId`) nor a `VirtualMachine` itself.
fn is_process_isolated(document: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(document) {
        Ok(doc) => {
            doc.get("Container").is_some()
                && doc.get("HostingSystemId").is_none()
                && doc.get("VirtualMachine").is_none()
        }
        Err(_) => false,
    }
}

impl ComputeSystem {
    fn ctx(&self, name: &'static str) -> CallContext {
        CallContext {
            name,
            object: self.id.clone(),
            host_build: self.host_build,
            process_isolated: self.process_isolated,
        }
    }

    /// `HcsCreateComputeSystem` with `document` (JSON).
    pub fn create(id: &str, document: &str, host_build: Option<u32>) -> Result<ComputeSystem, HcsCallError> {
        let process_isolated = is_process_isolated(document);
        let ctx = CallContext { name: "HcsCreateComputeSystem", object: id.to_string(), host_build, process_isolated };
        let (handle, _, _) = run(&ctx, CREATE_TIMEOUT, |op| ffi::create_compute_system(id, document, op), plain_wait)?;
        Ok(ComputeSystem { id: id.to_string(), handle, host_build, process_isolated })
    }

    /// `HcsOpenComputeSystem`.
    pub fn open(id: &str, host_build: Option<u32>) -> Result<ComputeSystem, HcsCallError> {
        let handle = ffi::open_compute_system(id).map_err(|hr| {
            CallContext { name: "HcsOpenComputeSystem", object: id.to_string(), host_build, process_isolated: false }
                .error(hr, "")
        })?;
        Ok(ComputeSystem { id: id.to_string(), handle, host_build, process_isolated: false })
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn system_call(
        &self,
        name: &'static str,
        call: SystemCall,
        arg: Option<&str>,
        deadline: Duration,
    ) -> Result<String, HcsCallError> {
        run_call(&self.ctx(name), deadline, |op| ffi::system_call(call, &self.handle, op, arg))
    }

    /// `HcsStartComputeSystem`.
    pub fn start(&self) -> Result<(), HcsCallError> {
        self.system_call("HcsStartComputeSystem", SystemCall::Start, None, CREATE_TIMEOUT).map(|_| ())
    }

    /// `HcsShutDownComputeSystem`; an already stopped system is not an error.
    pub fn shutdown(&self) -> Result<(), HcsCallError> {
        match self.system_call("HcsShutDownComputeSystem", SystemCall::ShutDown, None, SHUTDOWN_TIMEOUT) {
            Err(e) if e.is(HCS_E_SYSTEM_ALREADY_STOPPED) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `HcsTerminateComputeSystem`; an already stopped system is not an error.
    pub fn terminate(&self) -> Result<(), HcsCallError> {
        match self.system_call("HcsTerminateComputeSystem", SystemCall::Terminate, None, CALL_TIMEOUT) {
            Err(e) if e.is(HCS_E_SYSTEM_ALREADY_STOPPED) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Graceful shutdown, then terminate if that fails or times out.
    pub fn stop(&self) -> Result<(), HcsCallError> {
        match self.shutdown() {
            Ok(()) => Ok(()),
            Err(_) => self.terminate(),
        }
    }

    /// `HcsPauseComputeSystem`.
    pub fn pause(&self) -> Result<(), HcsCallError> {
        self.system_call("HcsPauseComputeSystem", SystemCall::Pause, None, CALL_TIMEOUT).map(|_| ())
    }

    /// `HcsResumeComputeSystem`.
    pub fn resume(&self) -> Result<(), HcsCallError> {
        self.system_call("HcsResumeComputeSystem", SystemCall::Resume, None, CALL_TIMEOUT).map(|_| ())
    }

    /// `HcsGetComputeSystemProperties`.
    pub fn properties(&self, query: &PropertyQuery) -> Result<Properties, HcsCallError> {
        let q = serde_json::to_string(query).unwrap_or_default();
        let doc =
            self.system_call("HcsGetComputeSystemProperties", SystemCall::GetProperties, Some(&q), CALL_TIMEOUT)?;
        serde_json::from_str(&doc).map_err(|e| {
            let mut err = self.ctx("HcsGetComputeSystemProperties").error(0x8037_010Du32 as HRESULT, &doc);
            err.raw_result = format!("unreadable properties document: {}", e);
            err.result = None;
            err
        })
    }

    /// `HcsModifyComputeSystem`.
    pub fn modify(&self, request: &ModifySettingRequest) -> Result<(), HcsCallError> {
        let r = serde_json::to_string(request).unwrap_or_default();
        self.system_call("HcsModifyComputeSystem", SystemCall::Modify, Some(&r), CALL_TIMEOUT).map(|_| ())
    }

    /// Blocks until the system exits; returns HCS's exit document.
    pub fn wait_exit(&self) -> Result<String, HcsCallError> {
        let (hr, doc) = ffi::wait_for_compute_system_exit(&self.handle, ffi::INFINITE);
        if hr < 0 {
            return Err(self.ctx("HcsWaitForComputeSystemExit").error(hr, &doc));
        }
        Ok(doc)
    }

    /// `HcsCreateProcess` with `parameters` (JSON); the stdio pipes HCS made come with it.
    pub fn create_process(&self, parameters: &str) -> Result<Process, HcsCallError> {
        let ctx = self.ctx("HcsCreateProcess");
        let (handle, info, _) = run(
            &ctx,
            CALL_TIMEOUT,
            |op| ffi::create_process(&self.handle, parameters, op),
            ffi::wait_for_operation_result_and_process_info,
        )?;
        let info = info.unwrap_or(ffi::ProcessInfo { process_id: 0, stdin: None, stdout: None, stderr: None });
        Ok(Process {
            object: format!("process {} of {}", info.process_id, self.id),
            pid: info.process_id,
            handle,
            stdin: info.stdin.map(File::from),
            stdout: info.stdout.map(File::from),
            stderr: info.stderr.map(File::from),
            host_build: self.host_build,
            process_isolated: self.process_isolated,
        })
    }

    /// `HcsOpenProcess` for a process of this system.
    pub fn open_process(&self, pid: u32) -> Result<Process, HcsCallError> {
        let handle = ffi::open_process(&self.handle, pid).map_err(|hr| self.ctx("HcsOpenProcess").error(hr, ""))?;
        Ok(Process {
            object: format!("process {} of {}", pid, self.id),
            pid,
            handle,
            stdin: None,
            stdout: None,
            stderr: None,
            host_build: self.host_build,
            process_isolated: self.process_isolated,
        })
    }
}

/// A process in a compute system, with the stdio pipes HCS created for it.
pub struct Process {
    object: String,
    pid: u32,
    handle: OwnedProcess,
    /// Write end of the process's stdin.
    pub stdin: Option<File>,
    /// Read end of the process's stdout (the console output with a console).
    pub stdout: Option<File>,
    /// Read end of the process's stderr (none with a console).
    pub stderr: Option<File>,
    host_build: Option<u32>,
    process_isolated: bool,
}

impl Process {
    fn ctx(&self, name: &'static str) -> CallContext {
        CallContext {
            name,
            object: self.object.clone(),
            host_build: self.host_build,
            process_isolated: self.process_isolated,
        }
    }

    /// The process id inside the container.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn call(&self, name: &'static str, call: ProcessCall, arg: Option<&str>) -> Result<String, HcsCallError> {
        run_call(&self.ctx(name), CALL_TIMEOUT, |op| ffi::process_call(call, &self.handle, op, arg))
    }

    /// `HcsSignalProcess` with a Windows signal; an exited process is not an error.
    pub fn signal(&self, signal: ProcessSignal) -> Result<(), HcsCallError> {
        let opts = serde_json::to_string(&SignalProcessOptions { signal }).unwrap_or_default();
        match self.call("HcsSignalProcess", ProcessCall::Signal, Some(&opts)) {
            Err(e) if e.is(HCS_E_PROCESS_ALREADY_STOPPED) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `HcsTerminateProcess`; an exited process is not an error.
    pub fn terminate(&self) -> Result<(), HcsCallError> {
        match self.call("HcsTerminateProcess", ProcessCall::Terminate, None) {
            Err(e) if e.is(HCS_E_PROCESS_ALREADY_STOPPED) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Resizes the process's console (`HcsModifyProcess` ConsoleSize).
    pub fn resize_console(&self, height: u16, width: u16) -> Result<(), HcsCallError> {
        let req = serde_json::to_string(&ProcessModifyRequest::resize(height, width)).unwrap_or_default();
        self.call("HcsModifyProcess", ProcessCall::Modify, Some(&req)).map(|_| ())
    }

    /// Tells the process its input ended (`HcsModifyProcess` CloseHandle StdIn). The caller
    /// drops its end of the stdin pipe first (or took it out of [`Process::stdin`]).
    pub fn close_stdin(&self) -> Result<(), HcsCallError> {
        let req = serde_json::to_string(&ProcessModifyRequest::close_stdin()).unwrap_or_default();
        match self.call("HcsModifyProcess", ProcessCall::Modify, Some(&req)) {
            Err(e) if e.is(HCS_E_PROCESS_ALREADY_STOPPED) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `HcsGetProcessInfo`: the process's status.
    pub fn status(&self) -> Result<ProcessStatus, HcsCallError> {
        let doc = self.call("HcsGetProcessInfo", ProcessCall::GetInfo, None)?;
        Ok(serde_json::from_str(&doc).unwrap_or_default())
    }

    /// Blocks until the process exits and returns its exit code.
    pub fn wait(&self) -> Result<u32, HcsCallError> {
        let (hr, doc) = ffi::wait_for_process_exit(&self.handle, ffi::INFINITE);
        if hr < 0 {
            return Err(self.ctx("HcsWaitForProcessExit").error(hr, &doc));
        }
        if let Ok(status) = serde_json::from_str::<ProcessStatus>(&doc) {
            if status.exited {
                return Ok(status.exit_code);
            }
        }
        Ok(self.status()?.exit_code)
    }
}

/// `HcsGrantVmAccess`: lets the utility VM `vm_id` open `path`.
pub fn grant_vm_access(vm_id: &str, path: &str, host_build: Option<u32>) -> Result<(), HcsCallError> {
    let hr = ffi::grant_vm_access(vm_id, path);
    if hr < 0 {
        return Err(CallContext {
            name: "HcsGrantVmAccess",
            object: format!("{} for {}", path, vm_id),
            host_build,
            process_isolated: false,
        }
        .error(hr, ""));
    }
    Ok(())
}

/// `HcsRevokeVmAccess`: undoes [`grant_vm_access`].
pub fn revoke_vm_access(vm_id: &str, path: &str, host_build: Option<u32>) -> Result<(), HcsCallError> {
    let hr = ffi::revoke_vm_access(vm_id, path);
    if hr < 0 {
        return Err(CallContext {
            name: "HcsRevokeVmAccess",
            object: format!("{} for {}", path, vm_id),
            host_build,
            process_isolated: false,
        }
        .error(hr, ""));
    }
    Ok(())
}

/// `HcsModifyServiceSettings` with `settings` (JSON); returns HCS's answer.
pub fn modify_service_settings(settings: &str, what: &str, host_build: Option<u32>) -> Result<String, HcsCallError> {
    let (hr, doc) = ffi::modify_service_settings(settings);
    if hr < 0 {
        return Err(CallContext {
            name: "HcsModifyServiceSettings",
            object: what.to_string(),
            host_build,
            process_isolated: false,
        }
        .error(hr, &doc));
    }
    Ok(doc)
}

/// `HcsGetServiceProperties` with `query` (JSON); returns HCS's answer.
pub fn get_service_properties(query: &str, what: &str, host_build: Option<u32>) -> Result<String, HcsCallError> {
    let (hr, doc) = ffi::get_service_properties(query);
    if hr < 0 {
        return Err(CallContext {
            name: "HcsGetServiceProperties",
            object: what.to_string(),
            host_build,
            process_isolated: false,
        }
        .error(hr, &doc));
    }
    Ok(doc)
}
