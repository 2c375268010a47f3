//! The parent side of container creation and exec: start `hako init` from a sealed copy of this binary, put it
//! into the cgroup, feed it its [`InitConfig`], and answer its requests (id maps, hooks, the pty master) until
//! it reports Ready or fails. On failure nothing this module started is left running.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use hako_cgroups::Cgroup;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxIdMapping;

use crate::channel::{describe, Channel, ChannelError, Message};
use crate::init::{InitConfig, INIT_FD_ENV};
use crate::{sys, tty};

/// Why spawning failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Preparing or starting init failed.
    #[error("starting the container init: {0}")]
    Start(#[source] std::io::Error),
    /// The channel broke.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// init reported an error: its text names the failing step.
    #[error("{0}")]
    Init(String),
    /// init died without a word.
    #[error("the container init exited unexpectedly ({0})")]
    Died(String),
    /// Writing the uid/gid map failed.
    #[error("writing {path}: {source}; check linux.uidMappings and linux.gidMappings")]
    IdMap {
        /// The map file.
        path: String,
        /// The kernel's error.
        source: std::io::Error,
    },
    /// The cgroup refused the process.
    #[error(transparent)]
    Cgroup(#[from] hako_cgroups::CgroupError),
    /// The console socket failed.
    #[error(transparent)]
    Tty(#[from] tty::TtyError),
    /// A callback (state saving, hooks) failed.
    #[error("{0}")]
    Callback(String),
}

/// What the caller does at the protocol's turning points.
pub trait Hooks {
    /// init's host pid is known: record it so that `delete --force` can find it.
    fn on_pid(&mut self, pid: i32) -> Result<(), String>;
    /// Mounts are done: run prestart and createRuntime hooks; return the state JSON for the container's hooks.
    fn on_create_runtime(&mut self, pid: i32) -> Result<String, String>;
}

/// How to spawn.
pub struct Request<'a> {
    /// The message init gets.
    pub config: InitConfig,
    /// The cgroup to put init in before it does anything.
    pub cgroup: Option<&'a Cgroup>,
    /// uid and gid maps for a new user namespace.
    pub id_maps: (Vec<LinuxIdMapping>, Vec<LinuxIdMapping>),
    /// Where to send the pty master, if anywhere.
    pub console_socket: Option<&'a Path>,
    /// stdio for init instead of ours.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

/// The started process.
pub struct Spawned {
    /// Host pid of the container process.
    pub pid: i32,
    /// The pty master, when there is a terminal and no console socket.
    pub console: Option<OwnedFd>,
}

/// Starts `hako init` from a copy of this binary that nobody can write (CVE-2019-5736: a container process that
/// opens /proc/<init>/exe must not reach the hako binary on the host).
///
/// The fast way (`bind`) runs the binary through a read-only bind mount of itself, made in a private mount
/// namespace of the child just before execve (what runc 1.2 does with its read-only overlay): writing to
/// `/proc/<init>/exe` then fails with EROFS for every user, root included, and nothing is copied. The fallback
/// is a sealed memfd copy of the binary (what runc 1.1 does), for hosts where the child may not mount.
fn start_init(
    child_fd: i32,
    bind: bool,
    stdio: Option<[std::os::fd::RawFd; 3]>,
) -> std::io::Result<std::process::Child> {
    let me = std::process::id() as i32;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let memfd = if bind { None } else { Some(sys::sealed_self_copy()?) };
    let program = match &memfd {
        Some(fd) => std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
        None => exe.clone(),
    };
    let exe_c = sys::cstr(&exe)?;
    let mut cmd = Command::new(&program);
    cmd.arg0("hako").arg("init").env(INIT_FD_ENV, child_fd.to_string());
    if let Some([i, o, e]) = stdio {
        let dup = |fd: std::os::fd::RawFd| -> std::io::Result<std::process::Stdio> {
            // SAFETY: the caller keeps these fds open while we spawn; we only borrow them to duplicate.
            let owned = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
            Ok(std::process::Stdio::from(owned))
        };
        cmd.stdin(dup(i)?).stdout(dup(o)?).stderr(dup(e)?);
    }
    // SAFETY: the closure only makes async-signal-safe calls (prctl, getppid, unshare, mount, fcntl, through
    // nix wrappers that do not allocate) on data prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            // Until hako records its pid, init must not outlive the hako that started it.
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            if nix::unistd::getppid().as_raw() != me {
                return Err(std::io::Error::other("hako exited"));
            }
            if bind {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
                bind_read_only(&exe_c)?;
            }
            sys::clear_cloexec(child_fd)
        });
    }
    cmd.spawn()
}

/// In a private mount namespace (the caller's child has just made or entered one): stops mount events from
/// reaching the host, then bind-mounts `exe` over itself read-only, so that init runs from a binary nobody in
/// the container can write (CVE-2019-5736). Only mount(2) calls on C strings (nix does not allocate for them):
/// safe between fork/clone and execve.
fn bind_read_only(exe: &std::ffi::CStr) -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    let none: Option<&std::ffi::CStr> = None;
    mount(none, c"/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none)?;
    mount(Some(exe), exe, none, MsFlags::MS_BIND, none)?;
    mount(none, exe, none, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, none)
}

/// A stack for a cloned child: fresh anonymous pages, neither zeroed by hand nor copied into the child until
/// touched (a large heap allocation may be memset and is then copied page by page at clone), with a guard page
/// below it.
struct CloneStack {
    base: std::ptr::NonNull<std::ffi::c_void>,
    len: usize,
}

impl CloneStack {
    const GUARD: usize = 4096;

    fn new(len: usize) -> std::io::Result<CloneStack> {
        use nix::sys::mman::{mmap_anonymous, mprotect, MapFlags, ProtFlags};
        let total =
            std::num::NonZeroUsize::new(len + Self::GUARD).ok_or_else(|| std::io::Error::other("empty stack"))?;
        // SAFETY: a new private anonymous mapping that nothing else refers to.
        let base = unsafe {
            mmap_anonymous(
                None,
                total,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_STACK | MapFlags::MAP_NORESERVE,
            )
        }?;
        let stack = CloneStack { base, len: total.get() };
        // SAFETY: the lowest page of the mapping made above.
        unsafe { mprotect(base, Self::GUARD, ProtFlags::PROT_NONE) }?;
        Ok(stack)
    }

    /// The usable part, above the guard page.
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is readable and writable above the guard page, and lives as long as self.
        unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().cast::<u8>().add(Self::GUARD), self.len - Self::GUARD)
        }
    }
}

impl Drop for CloneStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new, unmapped once (the child has its own copy).
        let _ = unsafe { nix::sys::mman::munmap(self.base, self.len) };
    }
}

/// Whether [`clone_init`] runs init's code in the clone itself rather than executing this binary again.
static IN_PROCESS_INIT: AtomicBool = AtomicBool::new(false);
/// The stack of an init that runs in the clone ([`init_without_exec`]): as much as a main thread gets.
const IN_PROCESS_STACK: usize = 8 << 20;

/// From now on, a container init that gets a new pid namespace (and so is alone there until it executes the
/// container's process) runs in a clone of this process instead of executing this binary again: no execve of
/// a large static binary, no second start of the Rust runtime. For hako's guest agent, whose binary is its
/// VM's `/init` (busy, so nobody can write it, and unreachable from a new pid namespace) and which is
/// single-threaded (the clone may run any code); never for `hako` on a host, where the re-executed sealed or
/// read-only binary guards against CVE-2019-5736. Joining a pid namespace and `exec` keep executing the binary.
pub fn init_without_exec() {
    IN_PROCESS_INIT.store(true, Ordering::Relaxed);
}

/// Starts `hako init` already inside its new namespaces (`flags`: pid, mount, uts, ipc, network), as crun
/// does: init is pid 1 of its pid namespace from the start, so it needs no second fork. The binary is made
/// read-only the same way as in [`start_init`], in the new mount namespace. Returns init's host pid.
fn clone_init(
    child_fd: i32,
    flags: nix::sched::CloneFlags,
    stdio: Option<[std::os::fd::RawFd; 3]>,
) -> std::io::Result<i32> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe_c = sys::cstr(&exe)?;
    let argv_c = [c"hako".to_owned(), c"init".to_owned()];
    let mut env_c: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != INIT_FD_ENV)
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    env_c.push(CString::new(format!("{INIT_FD_ENV}={child_fd}")).map_err(std::io::Error::other)?);
    let argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect();
    // Init's code runs on this stack when it is not executed afresh ([`init_without_exec`]).
    let in_process = IN_PROCESS_INIT.load(Ordering::Relaxed) && flags.contains(nix::sched::CloneFlags::CLONE_NEWPID);
    let mut stack = CloneStack::new(if in_process { IN_PROCESS_STACK } else { 64 * 1024 })?;
    let me = std::process::id() as i32;
    // Closes when this function returns.
    let pidfd_guard = hako_runtime::procfs::pidfd_open(me).ok();
    let parent_fd = pidfd_guard.as_ref().map(|fd| fd.as_fd());
    let child = move || -> isize {
        // In the cloned child, before execve: only system calls (nix wrappers that do not allocate) on data
        // prepared before the clone.
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
        // If hako died before the line above, no signal will come: check that it is still there.
        let ok = !parent_gone(parent_fd, me)
            && bind_read_only(&exe_c).is_ok()
            && stdio.is_none_or(install_stdio)
            && sys::clear_cloexec(child_fd).is_ok();
        if ok && in_process {
            // Nothing of the caller's but stdio and the channel: what execve would have closed (every other
            // fd of the caller is close-on-exec) is closed now, so that no pipe stays open in init.
            // SAFETY: close_range only closes fds of this process (a copy of the caller's table).
            unsafe {
                if child_fd > 3 {
                    libc::syscall(libc::SYS_close_range, 3u32, (child_fd - 1) as u32, 0u32);
                }
                libc::syscall(libc::SYS_close_range, (child_fd + 1) as u32, u32::MAX, 0u32);
            }
            crate::init::main_in_clone(child_fd);
        }
        // SAFETY: execve gets NULL-terminated arrays of pointers to C strings that outlive the call (prepared
        // before the clone: nix's execve would allocate them here); _exit never returns and skips destructors.
        unsafe {
            if ok {
                libc::execve(exe_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127)
            }
            libc::_exit(126)
        }
    };
    // SAFETY: hako is single-threaded here; the child only runs the closure above, which ends in execve or
    // _exit (or, with init_without_exec, in init's code, which a clone of a single-threaded process may run),
    // on its own stack.
    let pid = unsafe { nix::sched::clone(Box::new(child), stack.as_mut_slice(), flags, Some(libc::SIGCHLD)) }
        .map_err(std::io::Error::from)?;
    Ok(pid.as_raw())
}

/// After `PR_SET_PDEATHSIG`: whether the parent died before it was set (then no signal will ever come). With a
/// pidfd of the parent, whether that process has exited; without one, whether `getppid` still names it (in a
/// new pid namespace `getppid` is 0 whoever the parent is, so that case can only be told by the pidfd). Only
/// poll and getppid: safe between clone and execve.
fn parent_gone(pidfd: Option<BorrowedFd>, parent: i32) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    if let Some(fd) = pidfd {
        if let Ok(r) = poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], PollTimeout::ZERO) {
            return r > 0;
        }
    }
    let ppid = nix::unistd::getppid().as_raw();
    ppid != parent && ppid != 0
}

/// Makes `fds` (stdin, stdout, stderr) this process's fds 0, 1 and 2. Each source is first duplicated above 2,
/// so that a source that is itself 0, 1 or 2 is not overwritten by an earlier dup2 (`[1, 0, 2]` swaps stdin and
/// stdout); the results are not close-on-exec. Only fcntl, dup2 and close: safe between clone and execve.
fn install_stdio(fds: [RawFd; 3]) -> bool {
    use nix::fcntl::{fcntl, FcntlArg};
    let mut high = [-1; 3];
    for (h, fd) in high.iter_mut().zip(fds) {
        match fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(3)) {
            Ok(fd) => *h = fd,
            Err(_) => return false,
        }
    }
    for (target, h) in high.into_iter().enumerate() {
        if nix::unistd::dup2(h, target as RawFd).is_err() {
            return false;
        }
        let _ = nix::unistd::close(h);
    }
    true
}

/// Starts init and runs the protocol up to Ready (create) or a successful execve (exec).
pub fn spawn(req: Request<'_>, hooks: &mut dyn Hooks) -> Result<Spawned, SpawnError> {
    let exec_mode = req.config.exec;
    let (parent, child) = Channel::pair()?;
    let child_fd = child.as_raw_fd();
    let mut config = req.config;
    let cloned = match config.ns.clone_flags().filter(|_| !exec_mode) {
        Some((flags, kinds)) => match clone_init(child_fd, flags, req.stdio) {
            Ok(pid) => {
                config.ns.precreated = kinds;
                Some(pid)
            }
            Err(_) => None,
        },
        None => None,
    };
    // The read-only bind needs a private mount namespace of init's own, which it must not have when the
    // container shares the host's (no mount namespace: init must stay in ours) or joins one by a path (a
    // namespace file bind-mounted in our namespace cannot be entered from a copy of it: EINVAL).
    let bind = config.ns.creates("mount") || (exec_mode && config.ns.has("mount"));
    let stage1_pid = match cloned {
        Some(pid) => pid,
        None => match start_init(child_fd, bind, req.stdio) {
            Ok(c) => c.id() as i32,
            // No CAP_SYS_ADMIN for a private mount namespace (or a deleted binary): pay for the sealed copy.
            Err(_) if bind => start_init(child_fd, false, req.stdio).map_err(SpawnError::Start)?.id() as i32,
            Err(e) => return Err(SpawnError::Start(e)),
        },
    };
    drop(child);
    let wait_stage1 = || -> String {
        match waitpid(Pid::from_raw(stage1_pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => format!("exit status {c}"),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig}"),
            Ok(other) => format!("{other:?}"),
            Err(e) => e.to_string(),
        }
    };
    let mut container_pid = 0;
    let result = (|| {
        if let Some(cg) = req.cgroup {
            cg.add_pid(stage1_pid)?;
        }
        parent.send(&Message::Config(Box::new(config)))?;
        let mut console = None;
        let mut ready = false;
        loop {
            let (msg, mut fds) = match parent.recv_with_fds() {
                Ok(m) => m,
                Err(ChannelError::Closed) if exec_mode && ready => {
                    return Ok(console);
                }
                Err(ChannelError::Closed) => {
                    let status = if container_pid == stage1_pid || container_pid == 0 {
                        wait_stage1()
                    } else {
                        "no status".into()
                    };
                    return Err(SpawnError::Died(status));
                }
                Err(e) => return Err(e.into()),
            };
            match msg {
                Message::WriteIdMaps(pid) => {
                    write_id_map(pid, "uid_map", &req.id_maps.0)?;
                    write_id_map(pid, "gid_map", &req.id_maps.1)?;
                    parent.send(&Message::IdMapsWritten)?;
                }
                Message::Pid(pid) => {
                    // 0: init was cloned into its pid namespace and does not know its host pid; we do.
                    let pid = if pid == 0 { stage1_pid } else { pid };
                    container_pid = pid;
                    hooks.on_pid(pid).map_err(SpawnError::Callback)?;
                    if pid != stage1_pid {
                        let _ = wait_stage1();
                    }
                }
                Message::RunCreateRuntimeHooks => {
                    let state = hooks.on_create_runtime(container_pid).map_err(SpawnError::Callback)?;
                    parent.send(&Message::HooksDone { state })?;
                }
                Message::ConsoleFd => {
                    let master = fds
                        .pop()
                        .ok_or_else(|| SpawnError::Init("terminal: no pty master came with the message".into()))?;
                    match req.console_socket {
                        Some(sock) => {
                            hako_runtime::console::send_pty_master(sock, &master).map_err(tty::TtyError::from)?
                        }
                        None => console = Some(master),
                    }
                }
                Message::Ready if !exec_mode => return Ok(console),
                Message::Ready => ready = true, // exec: success is the channel closing at execve
                Message::Error(e) => return Err(SpawnError::Init(e)),
                other => {
                    return Err(
                        ChannelError::Unexpected { expected: "a request from init", got: describe(&other) }.into()
                    )
                }
            }
        }
    })();
    match result {
        Ok(console) => Ok(Spawned { pid: container_pid, console }),
        Err(e) => {
            if container_pid > 0 {
                let _ = kill(Pid::from_raw(container_pid), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(stage1_pid), Signal::SIGKILL);
            let _ = wait_stage1();
            if container_pid > 0 && container_pid != stage1_pid {
                // Our child only if we are its subreaper; otherwise this fails harmlessly.
                let _ = waitpid(Pid::from_raw(container_pid), None);
            }
            Err(e)
        }
    }
}

fn write_id_map(pid: i32, file: &str, maps: &[LinuxIdMapping]) -> Result<(), SpawnError> {
    let path = format!("/proc/{pid}/{file}");
    let text: String = maps.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect();
    std::fs::write(&path, text).map_err(|source| SpawnError::IdMap { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn ino(fd: RawFd) -> u64 {
        nix::sys::stat::fstat(fd).map_or(0, |st| st.st_ino)
    }

    #[test]
    fn install_stdio_handles_sources_among_0_to_2() {
        let files: Vec<std::fs::File> = (0..3).map(|_| tempfile::tempfile().unwrap()).collect();
        let inos: Vec<u64> = files.iter().map(|f| f.metadata().unwrap().ino()).collect();
        let raw: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        // SAFETY: the child only makes async-signal-safe calls (dup2, fcntl, close, fstat, _exit).
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                for (target, fd) in raw.iter().enumerate() {
                    let _ = nix::unistd::dup2(*fd, target as RawFd);
                }
                // stdin <- old stdout, stdout <- old stdin, stderr <- old stderr.
                let ok = install_stdio([1, 0, 2])
                    && ino(0) == inos[1]
                    && ino(1) == inos[0]
                    && ino(2) == inos[2]
                    && (0..3).all(|fd| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD) == Ok(0));
                // SAFETY: _exit never returns and skips the destructors, which belong to the parent.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0), "fds 0-2 are not what was asked");
            }
        }
    }

    #[test]
    fn parent_gone_tells_a_live_parent_from_a_dead_one() {
        use hako_runtime::procfs::pidfd_open;
        let me = pidfd_open(std::process::id() as i32).expect("pidfd_open");
        assert!(!parent_gone(Some(me.as_fd()), std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        // Our child, not yet reaped.
        let dead = pidfd_open(child.id() as i32).unwrap();
        child.wait().unwrap();
        assert!(parent_gone(Some(dead.as_fd()), child.id() as i32));
        // Without a pidfd, getppid decides.
        let ppid = nix::unistd::getppid().as_raw();
        assert!(!parent_gone(None, ppid));
        assert!(parent_gone(None, ppid + 1));
    }
}
