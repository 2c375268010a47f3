//! Message-mode named pipes for the supervisor (`CreateNamedPipeW`, `ConnectNamedPipe`,
//! `SetNamedPipeHandleState`), and a liveness check of host processes. The pipe ends are
//! returned as `std::fs::File`s, so reading and writing is plain std I/O.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED, INVALID_HANDLE_VALUE, STILL_ACTIVE,
};
use windows_sys::Win32::Storage::FileSystem::{FILE_FLAG_FIRST_PIPE_INSTANCE, PIPE_ACCESS_DUPLEX};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, SetNamedPipeHandleState, WaitNamedPipeW, PIPE_READMODE_MESSAGE,
    PIPE_TYPE_MESSAGE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, OpenProcess, WaitForSingleObject, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
};

use super::wide;

const BUFFER: u32 = 64 * 1024;

/// The listening side of a message-mode pipe: always one unconnected instance ready.
pub(crate) struct PipeListener {
    name: String,
    next: File,
}

fn new_instance(name: &str, first: bool) -> io::Result<File> {
    let w = wide(name);
    let flags = PIPE_ACCESS_DUPLEX | if first { FILE_FLAG_FIRST_PIPE_INSTANCE } else { 0 };
    // SAFETY: the name is NUL-terminated; default security attributes (NULL) give the creator
    // (an administrator: the pipe lives under ProtectedPrefix\Administrators) full access.
    let h = unsafe {
        CreateNamedPipeW(
            w.as_ptr(),
            flags,
            PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT,
            PIPE_UNLIMITED_INSTANCES,
            BUFFER,
            BUFFER,
            0,
            ptr::null(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CreateNamedPipeW returned a fresh handle that nothing else owns.
    Ok(File::from(unsafe { OwnedHandle::from_raw_handle(h as _) }))
}

impl PipeListener {
    /// Creates the pipe; fails if another process already serves this name.
    pub(crate) fn bind(name: &str) -> io::Result<PipeListener> {
        Ok(PipeListener { name: name.to_string(), next: new_instance(name, true)? })
    }

    /// Waits for a client and returns its connection.
    pub(crate) fn accept(&mut self) -> io::Result<File> {
        // SAFETY: `next` is a live pipe instance handle; a NULL OVERLAPPED makes the call
        // block until a client connects.
        let ok = unsafe { ConnectNamedPipe(self.next.as_raw_handle() as _, ptr::null_mut()) };
        if ok == 0 {
            // SAFETY: reads the calling thread's last error, set by ConnectNamedPipe.
            let err = unsafe { GetLastError() };
            if err != ERROR_PIPE_CONNECTED {
                // A client that connected and went away before this call (ERROR_NO_DATA), or any other
                // failure, leaves the instance unusable until it is disconnected: replace it, or every later
                // client would find the pipe busy and time out waiting for it.
                self.next = new_instance(&self.name, false)?;
                return Err(io::Error::from_raw_os_error(err as i32));
            }
        }
        let fresh = new_instance(&self.name, false)?;
        Ok(std::mem::replace(&mut self.next, fresh))
    }
}

/// Connects to a message-mode pipe, waiting up to `timeout_ms` while all instances are busy.
pub(crate) fn connect(name: &str, timeout_ms: u32) -> io::Result<File> {
    let file = loop {
        match OpenOptions::new().read(true).write(true).open(name) {
            Ok(f) => break f,
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
                let w = wide(name);
                // SAFETY: the name is NUL-terminated.
                if unsafe { WaitNamedPipeW(w.as_ptr(), timeout_ms) } == 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Err(e) => return Err(e),
        }
    };
    let mode = PIPE_READMODE_MESSAGE;
    // SAFETY: `file` is a live pipe handle; `mode` outlives the call; the other two
    // parameters are optional and NULL.
    let ok = unsafe { SetNamedPipeHandleState(file.as_raw_handle() as _, &mode, ptr::null(), ptr::null()) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Whether host process `pid` still runs.
pub(crate) fn process_alive(pid: u32) -> bool {
    // SAFETY: OpenProcess with a query-only right; the handle is closed below.
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if h.is_null() {
        return false;
    }
    let mut code: u32 = 0;
    // SAFETY: `h` is a live process handle and `code` a valid out pointer.
    let ok = unsafe { GetExitCodeProcess(h, &mut code) };
    // SAFETY: `h` came from OpenProcess and is closed exactly once.
    unsafe {
        CloseHandle(h);
    }
    ok != 0 && code == STILL_ACTIVE as u32
}

/// Waits up to `timeout_ms` for process `pid` to exit; true when it is gone.
pub(crate) fn wait_process_exit(pid: u32, timeout_ms: u32) -> bool {
    // SAFETY: OpenProcess with the right to wait only; the handle is closed below.
    let h = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
    if h.is_null() {
        return true;
    }
    // SAFETY: `h` is a live process handle opened with SYNCHRONIZE.
    let rc = unsafe { WaitForSingleObject(h, timeout_ms) };
    // SAFETY: `h` came from OpenProcess and is closed exactly once.
    unsafe {
        CloseHandle(h);
    }
    rc == 0
}
