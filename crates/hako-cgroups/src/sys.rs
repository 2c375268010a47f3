//! The crate's only raw system calls: kill(2) for signals that nix's `Signal` enum cannot express
//! (real-time signals) and bpf(2) to load and attach the cgroup v2 device program. Every other kernel
//! interaction goes through std::fs or nix.

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Sends signal number `sig` to `pid` (any signal, including real-time ones).
pub(crate) fn kill(pid: i32, sig: i32) -> Result<(), Errno> {
    if let Ok(s) = Signal::try_from(sig) {
        return nix::sys::signal::kill(Pid::from_raw(pid), s);
    }
    // SAFETY: kill(2) takes two integers and reads or writes no memory of this process.
    let rc = unsafe { libc::kill(pid, sig) };
    Errno::result(rc).map(drop)
}

/// `BPF_PROG_LOAD`.
const BPF_PROG_LOAD: libc::c_long = 5;
/// `BPF_PROG_ATTACH`.
const BPF_PROG_ATTACH: libc::c_long = 8;
/// `BPF_PROG_TYPE_CGROUP_DEVICE`.
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE` attach type.
const BPF_CGROUP_DEVICE: u32 = 6;

/// The `BPF_PROG_LOAD` member of `union bpf_attr` up to `prog_name` (the kernel zero-extends).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The `BPF_PROG_ATTACH` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// A file descriptor closed on drop (nix's close is safe; `OwnedFd::from_raw_fd` is not).
pub(crate) struct Fd(RawFd);

impl Fd {
    pub(crate) fn raw(&self) -> RawFd {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        let _ = nix::unistd::close(self.0);
    }
}

/// Calls bpf(2) with a fully initialised attribute struct.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of `union bpf_attr` of exactly
    // size_of::<T>() bytes; the kernel copies it in, rejects non-zero unknown tail bytes, and only
    // dereferences the user pointers inside it (instructions, license, log buffer), which the callers
    // keep alive for the duration of this call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, size_of::<T>()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program. On failure returns the errno and, when the
/// verifier produced one, its log.
pub(crate) fn load_device_program(insns: &[u64]) -> Result<Fd, (io::Error, String)> {
    let license = b"Apache-2.0\0";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..9].copy_from_slice(b"hako_dev\0");
    match bpf(BPF_PROG_LOAD, &attr) {
        Ok(fd) => Ok(Fd(fd as RawFd)),
        Err(first) => {
            // Load again with the verifier log so the error says why.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            match bpf(BPF_PROG_LOAD, &attr) {
                Ok(fd) => Ok(Fd(fd as RawFd)),
                Err(_) => {
                    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                    Err((first, String::from_utf8_lossy(&log[..end]).trim().to_string()))
                }
            }
        }
    }
}

/// Attaches a device program to the cgroup open at `cgroup_fd`, replacing the one hako attached
/// before (attach flags 0: a single program, replaced on every attach).
pub(crate) fn attach_device_program(cgroup_fd: RawFd, prog: &Fd) -> io::Result<()> {
    let attr = ProgAttachAttr {
        target_fd: cgroup_fd as u32,
        attach_bpf_fd: prog.raw() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &attr).map(drop)
}
