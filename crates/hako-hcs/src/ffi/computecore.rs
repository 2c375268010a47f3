//! computecore.dll, loaded at run time: the Host Compute Service's API exists only on a Windows
//! with the Containers feature, and a load-time import would keep `hako.exe` from starting at
//! all elsewhere (no `--help`, no message). The DLL is loaded from System32 on first use, every
//! function hako calls is looked up once, and a missing DLL or export becomes an error that
//! names the Windows feature to enable.

use std::ffi::c_void;
use std::ptr;
use std::sync::Mutex;

use windows_sys::core::{HRESULT, PCWSTR, PWSTR};
use windows_sys::Win32::Foundation::{FreeLibrary, HANDLE, HMODULE};
use windows_sys::Win32::Security::SECURITY_DESCRIPTOR;
use windows_sys::Win32::System::HostComputeSystem::{
    HCS_OPERATION, HCS_OPERATION_COMPLETION, HCS_PROCESS, HCS_PROCESS_INFORMATION, HCS_SYSTEM,
};
use windows_sys::Win32::System::LibraryLoader::{GetProcAddress, LoadLibraryExW, LOAD_LIBRARY_SEARCH_SYSTEM32};

use super::wide;

/// What `GetProcAddress` returns.
type Farproc = unsafe extern "system" fn() -> isize;

type CallFn = unsafe extern "system" fn(HCS_SYSTEM, HCS_OPERATION, PCWSTR) -> HRESULT;
type ProcessCallFn = unsafe extern "system" fn(HCS_PROCESS, HCS_OPERATION, PCWSTR) -> HRESULT;
type WaitFn = unsafe extern "system" fn(*mut c_void, u32, *mut PWSTR) -> HRESULT;
type AccessFn = unsafe extern "system" fn(PCWSTR, PCWSTR) -> HRESULT;
type ServiceFn = unsafe extern "system" fn(PCWSTR, *mut PWSTR) -> HRESULT;

/// The computecore.dll functions hako calls, with the signatures of the Windows SDK's
/// `computecore.h` (the same ones windows-sys declares).
pub(crate) struct ComputeCore {
    pub(crate) create_operation: unsafe extern "system" fn(*const c_void, HCS_OPERATION_COMPLETION) -> HCS_OPERATION,
    pub(crate) close_operation: unsafe extern "system" fn(HCS_OPERATION),
    pub(crate) cancel_operation: unsafe extern "system" fn(HCS_OPERATION) -> HRESULT,
    pub(crate) wait_for_operation_result: WaitFn,
    pub(crate) wait_for_operation_result_and_process_info:
        unsafe extern "system" fn(HCS_OPERATION, u32, *mut HCS_PROCESS_INFORMATION, *mut PWSTR) -> HRESULT,
    pub(crate) create_compute_system: unsafe extern "system" fn(
        PCWSTR,
        PCWSTR,
        HCS_OPERATION,
        *const SECURITY_DESCRIPTOR,
        *mut HCS_SYSTEM,
    ) -> HRESULT,
    pub(crate) open_compute_system: unsafe extern "system" fn(PCWSTR, u32, *mut HCS_SYSTEM) -> HRESULT,
    pub(crate) close_compute_system: unsafe extern "system" fn(HCS_SYSTEM),
    pub(crate) start_compute_system: CallFn,
    pub(crate) shut_down_compute_system: CallFn,
    pub(crate) terminate_compute_system: CallFn,
    pub(crate) pause_compute_system: CallFn,
    pub(crate) resume_compute_system: CallFn,
    pub(crate) get_compute_system_properties: CallFn,
    pub(crate) modify_compute_system: unsafe extern "system" fn(HCS_SYSTEM, HCS_OPERATION, PCWSTR, HANDLE) -> HRESULT,
    pub(crate) wait_for_compute_system_exit: WaitFn,
    pub(crate) create_process: unsafe extern "system" fn(
        HCS_SYSTEM,
        PCWSTR,
        HCS_OPERATION,
        *const SECURITY_DESCRIPTOR,
        *mut HCS_PROCESS,
    ) -> HRESULT,
    pub(crate) open_process: unsafe extern "system" fn(HCS_SYSTEM, u32, u32, *mut HCS_PROCESS) -> HRESULT,
    pub(crate) close_process: unsafe extern "system" fn(HCS_PROCESS),
    pub(crate) signal_process: ProcessCallFn,
    pub(crate) terminate_process: ProcessCallFn,
    pub(crate) modify_process: ProcessCallFn,
    pub(crate) get_process_info: unsafe extern "system" fn(HCS_PROCESS, HCS_OPERATION) -> HRESULT,
    pub(crate) wait_for_process_exit: WaitFn,
    pub(crate) grant_vm_access: AccessFn,
    pub(crate) revoke_vm_access: AccessFn,
    pub(crate) modify_service_settings: ServiceFn,
    pub(crate) get_service_properties: ServiceFn,
}

/// Why computecore.dll cannot be used, as one line that names the fix.
fn unavailable(detail: &str) -> String {
    format!(
        "the Host Compute Service is not available: {}: enable the Windows feature Containers \
         (Windows Server: Install-WindowsFeature Containers; Windows 10/11: \
         Enable-WindowsOptionalFeature -Online -FeatureName Containers -All), and Hyper-V as well \
         (Microsoft-Hyper-V) for Hyper-V isolation and Linux containers, then reboot",
        detail
    )
}

/// Looks up `name` (NUL-terminated) in `module` as a function pointer of type `F`.
///
/// # Safety
/// `F` must be an `extern "system"` function pointer type whose signature is the export's.
unsafe fn symbol<F: Copy>(module: HMODULE, name: &[u8]) -> Result<F, String> {
    debug_assert_eq!(name.last(), Some(&0));
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<Farproc>());
    // SAFETY: the module handle is live and `name` is a NUL-terminated ASCII string.
    let f: Option<Farproc> = unsafe { GetProcAddress(module, name.as_ptr()) };
    match f {
        // SAFETY: the caller guarantees `F` is the export's function pointer type; function
        // pointers are all the size of FARPROC.
        Some(f) => Ok(unsafe { std::mem::transmute_copy::<Farproc, F>(&f) }),
        None => Err(unavailable(&format!(
            "computecore.dll has no export {} (this Windows is older than Windows 10 1809 / Server 2019)",
            String::from_utf8_lossy(&name[..name.len() - 1])
        ))),
    }
}

fn load() -> Result<ComputeCore, String> {
    let dll = wide("computecore.dll");
    // SAFETY: the name is NUL-terminated; only System32 is searched, so no DLL planted next to
    // hako.exe or in the working directory is loaded.
    let module = unsafe { LoadLibraryExW(dll.as_ptr(), ptr::null_mut(), LOAD_LIBRARY_SEARCH_SYSTEM32) };
    if module.is_null() {
        return Err(unavailable(&format!("cannot load computecore.dll ({})", std::io::Error::last_os_error())));
    }
    // SAFETY: each field's type is the signature computecore.h gives the export of that name.
    let api = unsafe {
        (|| {
            Ok(ComputeCore {
                create_operation: symbol(module, b"HcsCreateOperation\0")?,
                close_operation: symbol(module, b"HcsCloseOperation\0")?,
                cancel_operation: symbol(module, b"HcsCancelOperation\0")?,
                wait_for_operation_result: symbol(module, b"HcsWaitForOperationResult\0")?,
                wait_for_operation_result_and_process_info: symbol(
                    module,
                    b"HcsWaitForOperationResultAndProcessInfo\0",
                )?,
                create_compute_system: symbol(module, b"HcsCreateComputeSystem\0")?,
                open_compute_system: symbol(module, b"HcsOpenComputeSystem\0")?,
                close_compute_system: symbol(module, b"HcsCloseComputeSystem\0")?,
                start_compute_system: symbol(module, b"HcsStartComputeSystem\0")?,
                shut_down_compute_system: symbol(module, b"HcsShutDownComputeSystem\0")?,
                terminate_compute_system: symbol(module, b"HcsTerminateComputeSystem\0")?,
                pause_compute_system: symbol(module, b"HcsPauseComputeSystem\0")?,
                resume_compute_system: symbol(module, b"HcsResumeComputeSystem\0")?,
                get_compute_system_properties: symbol(module, b"HcsGetComputeSystemProperties\0")?,
                modify_compute_system: symbol(module, b"HcsModifyComputeSystem\0")?,
                wait_for_compute_system_exit: symbol(module, b"HcsWaitForComputeSystemExit\0")?,
                create_process: symbol(module, b"HcsCreateProcess\0")?,
                open_process: symbol(module, b"HcsOpenProcess\0")?,
                close_process: symbol(module, b"HcsCloseProcess\0")?,
                signal_process: symbol(module, b"HcsSignalProcess\0")?,
                terminate_process: symbol(module, b"HcsTerminateProcess\0")?,
                modify_process: symbol(module, b"HcsModifyProcess\0")?,
                get_process_info: symbol(module, b"HcsGetProcessInfo\0")?,
                wait_for_process_exit: symbol(module, b"HcsWaitForProcessExit\0")?,
                grant_vm_access: symbol(module, b"HcsGrantVmAccess\0")?,
                revoke_vm_access: symbol(module, b"HcsRevokeVmAccess\0")?,
                modify_service_settings: symbol(module, b"HcsModifyServiceSettings\0")?,
                get_service_properties: symbol(module, b"HcsGetServiceProperties\0")?,
            })
        })()
    };
    if api.is_err() {
        // SAFETY: the module was loaded above and nothing from it is kept.
        unsafe {
            FreeLibrary(module);
        }
    }
    api
}

/// The loaded API (loaded on first use and kept for the life of the process), or why it cannot
/// be loaded.
static API: Mutex<Option<Result<&'static ComputeCore, String>>> = Mutex::new(None);

/// computecore.dll's functions, or an error naming the Windows feature to enable.
pub(crate) fn api() -> Result<&'static ComputeCore, String> {
    let mut slot = API.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(load().map(|api| &*Box::leak(Box::new(api))));
    }
    match slot.as_ref() {
        Some(r) => r.clone(),
        None => Err(unavailable("computecore.dll was not loaded")),
    }
}
