//! The raw Windows calls of the backend, and nothing else: computecore.dll (loaded at run time,
//! `computecore`, with windows-sys's `Win32_System_HostComputeSystem` types), vmcompute.dll's
//! `NameToGuid` (loaded at run time too), named pipes and the registry. Every `unsafe` block of the crate lives here, each
//! with its `SAFETY:` argument; the functions exported are safe and own what they return
//! (handles close on drop, HCS strings are copied and freed with `LocalFree`).
//!
//! Only built on Windows. The typed API on top is `crate::hcs`.

mod computecore;
mod pipe;
mod registry;

use std::ffi::OsStr;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{FromRawHandle, OwnedHandle};
use std::ptr;

use windows_sys::core::{GUID, HRESULT, PCWSTR, PWSTR};
use windows_sys::Win32::Foundation::{LocalFree, HANDLE, HLOCAL};
use windows_sys::Win32::System::HostComputeSystem as hcs;
use windows_sys::Win32::System::LibraryLoader::{GetProcAddress, LoadLibraryExW, LOAD_LIBRARY_SEARCH_SYSTEM32};

pub(crate) use computecore::api as computecore;
pub(crate) use pipe::{connect, process_alive, wait_process_exit, PipeListener};
pub(crate) use registry::{reg_dword, reg_string};

/// `HRESULT_FROM_WIN32(ERROR_MOD_NOT_FOUND)`: what a call returns when computecore.dll cannot be
/// loaded (`crate::hcs::available` says why, with the fix).
pub(crate) const HCS_UNAVAILABLE: HRESULT = 0x8007_007E_u32 as HRESULT;

/// `INFINITE` for the HCS wait functions.
pub(crate) const INFINITE: u32 = u32::MAX;

/// A NUL-terminated UTF-16 copy of `s`.
pub(crate) fn wide(s: &str) -> Vec<u16> {
    OsStr::new(s).encode_wide().chain(std::iter::once(0)).collect()
}

/// An optional wide string: `None` is a NULL pointer.
struct OptWide(Option<Vec<u16>>);

impl OptWide {
    fn new(s: Option<&str>) -> Self {
        OptWide(s.map(wide))
    }

    fn ptr(&self) -> PCWSTR {
        match &self.0 {
            Some(v) => v.as_ptr(),
            None => ptr::null(),
        }
    }
}

/// Copies and frees a string HCS allocated (result documents are freed with `LocalFree`).
fn take_hcs_string(p: PWSTR) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: HCS returns a NUL-terminated UTF-16 string; we read up to the NUL, within the
    // allocation, before freeing it.
    let s = unsafe {
        let mut len = 0usize;
        while *p.add(len) != 0 {
            len += 1;
        }
        String::from_utf16_lossy(std::slice::from_raw_parts(p, len))
    };
    // SAFETY: the string was allocated by HCS for the caller, who frees it with LocalFree
    // (computecore documentation of every `resultDocument` out parameter); it is not used after.
    unsafe {
        LocalFree(p as HLOCAL);
    }
    s
}

/// An HCS operation handle (`HcsCreateOperation`), closed on drop.
///
/// Dropping it while a call that was given it is still in flight is what crashes
/// computecore.dll (hcsshim's lesson); `crate::hcs::Operation` makes sure every call is
/// waited for (or cancelled and then waited for) before the handle drops.
pub(crate) struct OwnedOperation(hcs::HCS_OPERATION);

// SAFETY: HCS handles are opaque kernel-backed handles that computecore.dll allows to be used
// from any thread; hako never uses one concurrently in a way HCS forbids (one call at a time
// per operation).
unsafe impl Send for OwnedOperation {}

impl OwnedOperation {
    /// A new operation without a completion callback (waited for synchronously).
    pub(crate) fn new() -> std::io::Result<Self> {
        let api = computecore().map_err(|_| std::io::Error::from_raw_os_error(126))?;
        // SAFETY: no context and no callback; HcsCreateOperation only allocates a handle.
        let op = unsafe { (api.create_operation)(ptr::null(), None) };
        if op.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedOperation(op))
    }

    pub(crate) fn raw(&self) -> hcs::HCS_OPERATION {
        self.0
    }
}

impl Drop for OwnedOperation {
    fn drop(&mut self) {
        if let Ok(api) = computecore() {
            // (computecore is loaded: the handle came from it.)
            // SAFETY: the handle came from HcsCreateOperation and is closed exactly once.
            unsafe { (api.close_operation)(self.0) }
        }
    }
}

/// A compute system handle, closed on drop. With `ShouldTerminateOnLastHandleClosed` the
/// system dies with the last handle: the supervisor holds one from create to delete.
pub(crate) struct OwnedSystem(hcs::HCS_SYSTEM);

// SAFETY: see OwnedOperation; HCS system handles may be used from any thread.
unsafe impl Send for OwnedSystem {}
// SAFETY: HCS serialises calls on a system handle internally; shared use is allowed.
unsafe impl Sync for OwnedSystem {}

impl OwnedSystem {
    pub(crate) fn raw(&self) -> hcs::HCS_SYSTEM {
        self.0
    }
}

impl Drop for OwnedSystem {
    fn drop(&mut self) {
        if let Ok(api) = computecore() {
            // (computecore is loaded: the handle came from it.)
            // SAFETY: the handle came from HcsCreate/OpenComputeSystem and is closed exactly once.
            unsafe { (api.close_compute_system)(self.0) }
        }
    }
}

/// A process handle, closed on drop.
pub(crate) struct OwnedProcess(hcs::HCS_PROCESS);

// SAFETY: see OwnedSystem.
unsafe impl Send for OwnedProcess {}
// SAFETY: see OwnedSystem.
unsafe impl Sync for OwnedProcess {}

impl OwnedProcess {
    pub(crate) fn raw(&self) -> hcs::HCS_PROCESS {
        self.0
    }
}

impl Drop for OwnedProcess {
    fn drop(&mut self) {
        if let Ok(api) = computecore() {
            // (computecore is loaded: the handle came from it.)
            // SAFETY: the handle came from HcsCreate/OpenProcess and is closed exactly once.
            unsafe { (api.close_process)(self.0) }
        }
    }
}

/// The access HCS's open calls ask for.
const GENERIC_ALL: u32 = 0x1000_0000;

/// The handle a create or open call wrote, or its error: a failed HRESULT, or E_FAIL for a success that
/// returned no handle.
fn opened(hr: HRESULT, handle: *mut std::ffi::c_void) -> Result<*mut std::ffi::c_void, HRESULT> {
    if hr < 0 {
        Err(hr)
    } else if handle.is_null() {
        Err(windows_sys::Win32::Foundation::E_FAIL)
    } else {
        Ok(handle)
    }
}

/// `HcsCreateComputeSystem(id, configuration, operation, NULL, &system)`.
pub(crate) fn create_compute_system(
    id: &str,
    configuration: &str,
    op: &OwnedOperation,
) -> Result<OwnedSystem, HRESULT> {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return Err(HCS_UNAVAILABLE),
    };
    let id = wide(id);
    let cfg = wide(configuration);
    let mut system: hcs::HCS_SYSTEM = ptr::null_mut();
    // SAFETY: id and configuration are NUL-terminated and outlive the call (HCS copies them
    // before returning); the security descriptor is reserved and must be NULL; `system` is a
    // valid out pointer.
    let hr = unsafe { (api.create_compute_system)(id.as_ptr(), cfg.as_ptr(), op.raw(), ptr::null(), &mut system) };
    opened(hr, system).map(OwnedSystem)
}

/// `HcsOpenComputeSystem(id, GENERIC_ALL, &system)`.
pub(crate) fn open_compute_system(id: &str) -> Result<OwnedSystem, HRESULT> {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return Err(HCS_UNAVAILABLE),
    };
    let id = wide(id);
    let mut system: hcs::HCS_SYSTEM = ptr::null_mut();
    // SAFETY: id is NUL-terminated; `system` is a valid out pointer.
    let hr = unsafe { (api.open_compute_system)(id.as_ptr(), GENERIC_ALL, &mut system) };
    opened(hr, system).map(OwnedSystem)
}

/// The compute system calls that take `(system, operation, options)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SystemCall {
    Start,
    ShutDown,
    Terminate,
    Pause,
    Resume,
    GetProperties,
    Modify,
}

/// Starts `call` on `system`; `arg` is the options, property query or modify document.
pub(crate) fn system_call(call: SystemCall, system: &OwnedSystem, op: &OwnedOperation, arg: Option<&str>) -> HRESULT {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return HCS_UNAVAILABLE,
    };
    let arg = OptWide::new(arg);
    let (s, o, a) = (system.raw(), op.raw(), arg.ptr());
    // SAFETY: the handles are live (owned by the caller for the duration of the call and, via
    // crate::hcs::Operation, until the operation completes); `a` is NULL or a NUL-terminated
    // string that HCS copies before returning; the identity handle of HcsModifyComputeSystem
    // is optional and NULL here.
    unsafe {
        match call {
            SystemCall::Start => (api.start_compute_system)(s, o, a),
            SystemCall::ShutDown => (api.shut_down_compute_system)(s, o, a),
            SystemCall::Terminate => (api.terminate_compute_system)(s, o, a),
            SystemCall::Pause => (api.pause_compute_system)(s, o, a),
            SystemCall::Resume => (api.resume_compute_system)(s, o, a),
            SystemCall::GetProperties => (api.get_compute_system_properties)(s, o, a),
            SystemCall::Modify => (api.modify_compute_system)(s, o, a, ptr::null_mut()),
        }
    }
}

/// `HcsWaitForComputeSystemExit(system, timeout, &result)`.
pub(crate) fn wait_for_compute_system_exit(system: &OwnedSystem, timeout_ms: u32) -> (HRESULT, String) {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return (HCS_UNAVAILABLE, String::new()),
    };
    let mut result: PWSTR = ptr::null_mut();
    // SAFETY: the handle is live; `result` is a valid out pointer freed by take_hcs_string.
    let hr = unsafe { (api.wait_for_compute_system_exit)(system.raw(), timeout_ms, &mut result) };
    (hr, take_hcs_string(result))
}

/// `HcsCreateProcess(system, parameters, operation, NULL, &process)`.
pub(crate) fn create_process(
    system: &OwnedSystem,
    parameters: &str,
    op: &OwnedOperation,
) -> Result<OwnedProcess, HRESULT> {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return Err(HCS_UNAVAILABLE),
    };
    let params = wide(parameters);
    let mut process: hcs::HCS_PROCESS = ptr::null_mut();
    // SAFETY: the system handle is live; parameters is NUL-terminated; the security
    // descriptor is optional and NULL; `process` is a valid out pointer.
    let hr = unsafe { (api.create_process)(system.raw(), params.as_ptr(), op.raw(), ptr::null(), &mut process) };
    opened(hr, process).map(OwnedProcess)
}

/// `HcsOpenProcess(system, pid, GENERIC_ALL, &process)`.
pub(crate) fn open_process(system: &OwnedSystem, pid: u32) -> Result<OwnedProcess, HRESULT> {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return Err(HCS_UNAVAILABLE),
    };
    let mut process: hcs::HCS_PROCESS = ptr::null_mut();
    // SAFETY: the system handle is live; `process` is a valid out pointer.
    let hr = unsafe { (api.open_process)(system.raw(), pid, GENERIC_ALL, &mut process) };
    opened(hr, process).map(OwnedProcess)
}

/// The process calls that take `(process, operation, options)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcessCall {
    Signal,
    Terminate,
    Modify,
    GetInfo,
}

/// Starts `call` on `process`; `arg` is the signal options or modify settings.
pub(crate) fn process_call(
    call: ProcessCall,
    process: &OwnedProcess,
    op: &OwnedOperation,
    arg: Option<&str>,
) -> HRESULT {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return HCS_UNAVAILABLE,
    };
    let arg = OptWide::new(arg);
    let (p, o, a) = (process.raw(), op.raw(), arg.ptr());
    // SAFETY: the handles are live for the call and until the operation completes; `a` is
    // NULL or NUL-terminated and copied by HCS.
    unsafe {
        match call {
            ProcessCall::Signal => (api.signal_process)(p, o, a),
            ProcessCall::Terminate => (api.terminate_process)(p, o, a),
            ProcessCall::Modify => (api.modify_process)(p, o, a),
            ProcessCall::GetInfo => (api.get_process_info)(p, o),
        }
    }
}

/// `HcsWaitForProcessExit(process, timeout, &result)`.
pub(crate) fn wait_for_process_exit(process: &OwnedProcess, timeout_ms: u32) -> (HRESULT, String) {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return (HCS_UNAVAILABLE, String::new()),
    };
    let mut result: PWSTR = ptr::null_mut();
    // SAFETY: the handle is live; `result` is a valid out pointer freed by take_hcs_string.
    let hr = unsafe { (api.wait_for_process_exit)(process.raw(), timeout_ms, &mut result) };
    (hr, take_hcs_string(result))
}

/// `HcsWaitForOperationResult(op, timeout, &result)`.
pub(crate) fn wait_for_operation_result(op: &OwnedOperation, timeout_ms: u32) -> (HRESULT, String) {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return (HCS_UNAVAILABLE, String::new()),
    };
    let mut result: PWSTR = ptr::null_mut();
    // SAFETY: the operation handle is live; `result` is a valid out pointer freed by
    // take_hcs_string.
    let hr = unsafe { (api.wait_for_operation_result)(op.raw(), timeout_ms, &mut result) };
    (hr, take_hcs_string(result))
}

/// The stdio of a created process.
pub(crate) struct ProcessInfo {
    pub(crate) process_id: u32,
    pub(crate) stdin: Option<OwnedHandle>,
    pub(crate) stdout: Option<OwnedHandle>,
    pub(crate) stderr: Option<OwnedHandle>,
}

fn own(h: HANDLE) -> Option<OwnedHandle> {
    if h.is_null() || h == windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE {
        return None;
    }
    // SAFETY: HCS hands the pipe handles of HCS_PROCESS_INFORMATION to the caller, who must
    // close them; each is wrapped exactly once.
    Some(unsafe { OwnedHandle::from_raw_handle(h as _) })
}

/// `HcsWaitForOperationResultAndProcessInfo(op, timeout, &info, &result)`.
pub(crate) fn wait_for_operation_result_and_process_info(
    op: &OwnedOperation,
    timeout_ms: u32,
) -> (HRESULT, Option<ProcessInfo>, String) {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return (HCS_UNAVAILABLE, None, String::new()),
    };
    let mut info = hcs::HCS_PROCESS_INFORMATION {
        ProcessId: 0,
        Reserved: 0,
        StdInput: ptr::null_mut(),
        StdOutput: ptr::null_mut(),
        StdError: ptr::null_mut(),
    };
    let mut result: PWSTR = ptr::null_mut();
    // SAFETY: the operation handle is live; `info` and `result` are valid out pointers.
    let hr = unsafe { (api.wait_for_operation_result_and_process_info)(op.raw(), timeout_ms, &mut info, &mut result) };
    let doc = take_hcs_string(result);
    if hr < 0 {
        return (hr, None, doc);
    }
    let pi = ProcessInfo {
        process_id: info.ProcessId,
        stdin: own(info.StdInput),
        stdout: own(info.StdOutput),
        stderr: own(info.StdError),
    };
    (hr, Some(pi), doc)
}

/// `HcsCancelOperation(op)`.
pub(crate) fn cancel_operation(op: &OwnedOperation) -> HRESULT {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return HCS_UNAVAILABLE,
    };
    // SAFETY: the operation handle is live; cancelling an operation is allowed at any time.
    unsafe { (api.cancel_operation)(op.raw()) }
}

/// `HcsGrantVmAccess(vmId, path)`.
pub(crate) fn grant_vm_access(vm_id: &str, path: &str) -> HRESULT {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return HCS_UNAVAILABLE,
    };
    let (v, p) = (wide(vm_id), wide(path));
    // SAFETY: both strings are NUL-terminated and live for the call.
    unsafe { (api.grant_vm_access)(v.as_ptr(), p.as_ptr()) }
}

/// `HcsRevokeVmAccess(vmId, path)`.
pub(crate) fn revoke_vm_access(vm_id: &str, path: &str) -> HRESULT {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return HCS_UNAVAILABLE,
    };
    let (v, p) = (wide(vm_id), wide(path));
    // SAFETY: both strings are NUL-terminated and live for the call.
    unsafe { (api.revoke_vm_access)(v.as_ptr(), p.as_ptr()) }
}

/// `HcsModifyServiceSettings(settings, &result)` (used to add gMSA credential guard instances).
pub(crate) fn modify_service_settings(settings: &str) -> (HRESULT, String) {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return (HCS_UNAVAILABLE, String::new()),
    };
    let s = wide(settings);
    let mut result: PWSTR = ptr::null_mut();
    // SAFETY: settings is NUL-terminated; `result` is a valid out pointer freed by take_hcs_string.
    let hr = unsafe { (api.modify_service_settings)(s.as_ptr(), &mut result) };
    (hr, take_hcs_string(result))
}

/// `HcsGetServiceProperties(query, &result)`.
pub(crate) fn get_service_properties(query: &str) -> (HRESULT, String) {
    let api = match computecore() {
        Ok(api) => api,
        Err(_) => return (HCS_UNAVAILABLE, String::new()),
    };
    let q = wide(query);
    let mut result: PWSTR = ptr::null_mut();
    // SAFETY: the query is NUL-terminated; `result` is a valid out pointer freed by take_hcs_string.
    let hr = unsafe { (api.get_service_properties)(q.as_ptr(), &mut result) };
    (hr, take_hcs_string(result))
}

type NameToGuidFn = unsafe extern "system" fn(name: PCWSTR, guid: *mut GUID) -> HRESULT;

/// vmcompute.dll `NameToGuid`: the layer id Windows derives from a layer folder name.
pub fn name_to_guid(name: &str) -> Result<String, String> {
    let dll = wide("vmcompute.dll");
    let flags = LOAD_LIBRARY_SEARCH_SYSTEM32;
    // SAFETY: the name is NUL-terminated; loading from System32 only.
    let module = unsafe { LoadLibraryExW(dll.as_ptr(), ptr::null_mut(), flags) };
    if module.is_null() {
        return Err(format!(
            "cannot load vmcompute.dll ({}): enable the Containers feature",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the module handle is live (never freed: vmcompute stays loaded for the process)
    // and the symbol name is a NUL-terminated ASCII string.
    let sym = unsafe { GetProcAddress(module, b"NameToGuid\0".as_ptr()) };
    let sym = match sym {
        Some(f) => f,
        None => return Err("vmcompute.dll has no NameToGuid export".to_string()),
    };
    type Farproc = unsafe extern "system" fn() -> isize;
    // SAFETY: NameToGuid's documented signature is HRESULT NameToGuid(PCWSTR, GUID*), which is
    // what NameToGuidFn spells; both are `extern "system"` function pointers of the same size.
    let f = unsafe { std::mem::transmute::<Farproc, NameToGuidFn>(sym) };
    let w = wide(name);
    let mut guid = GUID { data1: 0, data2: 0, data3: 0, data4: [0; 8] };
    // SAFETY: `w` is NUL-terminated, `guid` is a valid out pointer.
    let hr = unsafe { f(w.as_ptr(), &mut guid) };
    if hr < 0 {
        return Err(format!("NameToGuid({:?}) failed with HRESULT {:#010x}", name, hr as u32));
    }
    let d = guid.data4;
    Ok(format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        guid.data1, guid.data2, guid.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
    ))
}
