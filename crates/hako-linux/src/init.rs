//! The container's init: the code that runs inside the new process, from the sealed copy of hako
//! (`hako init`, started by [`crate::spawn`]), and ends in execve of the user's program.
//!
//! Order (runtime-spec and kernel constraints decide it):
//! 1. join or create the user namespace (the parent writes the id maps), then every other namespace;
//! 2. fork once more when a pid or time namespace must apply (the child becomes the container process);
//! 3. create: build the rootfs, let the parent run prestart/createRuntime hooks, run createContainer hooks,
//!    pivot_root, readonly/masked paths, hostname, sysctl, keyring;
//! 4. terminal, rlimits and scheduling, cwd, user and groups, capabilities, no_new_privs, seccomp (before the
//!    capability drop without no_new_privs), LSM label;
//! 5. report Ready; create then waits on the exec fifo for `start` and runs startContainer hooks; seccomp with
//!    no_new_privs; execve.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::unistd::{fork, ForkResult, Gid, Uid};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::channel::{describe, Channel, ChannelError, Message};
use crate::namespaces::{self, NsPlan};
use crate::rootfs::{self, CgroupMountPlan};
use crate::{process, sys, tty};

/// The environment variable that carries the channel fd into `hako init`.
pub const INIT_FD_ENV: &str = "_HAKO_INIT_FD";

/// Everything init needs, sent by the parent as the first message.
#[derive(Debug, Serialize, Deserialize)]
pub struct InitConfig {
    /// true for `exec` (join a running container), false for `create`.
    pub exec: bool,
    /// Container id (names the session keyring).
    pub id: String,
    /// The config; for exec its process is the one to run.
    pub spec: Spec,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// The container's state directory (holds exec.fifo).
    pub state_dir: PathBuf,
    /// Namespaces to join and create.
    pub ns: NsPlan,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--no-new-keyring`.
    pub no_new_keyring: bool,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// The container's cgroup hierarchies, for a `cgroup` mount.
    pub cgroups: Vec<CgroupMountPlan>,
}

/// An init step that failed; its text goes back to the parent and becomes hako's error.
#[derive(Debug, thiserror::Error)]
enum InitError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Namespace(#[from] namespaces::NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error(transparent)]
    Tty(#[from] tty::TtyError),
    #[error(transparent)]
    Hook(#[from] hako_runtime::hooks::HookError),
    #[error(transparent)]
    Caps(#[from] crate::capabilities::CapsError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Lsm(#[from] crate::lsm::LsmError),
    #[error("{what}: {source}")]
    Sys { what: String, source: std::io::Error },
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InitError {
    let what = what.into();
    move |source| InitError::Sys { what, source }
}

/// Init in a clone of a single-threaded caller that did not execute the binary again
/// ([`crate::spawn::init_without_exec`]): `fd` is the channel. Never returns.
pub(crate) fn main_in_clone(fd: RawFd) -> ! {
    // SAFETY: the parent passed this fd to us for our exclusive use.
    let ch = Channel::from_fd(unsafe { OwnedFd::from_raw_fd(fd) });
    let _ = nix::fcntl::fcntl(ch.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    // The caller's tracing subscriber is not init's: an init executed afresh has none (its stderr is the
    // container's).
    let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
    let err = run(&ch).unwrap_err();
    let _ = ch.send(&Message::Error(err.to_string()));
    // SAFETY: _exit never returns; it skips the caller's atexit work and buffers, which are not ours to flush.
    unsafe { libc::_exit(1) }
}

/// Entry point of `hako init`; never returns.
pub fn main() -> ! {
    let fd: RawFd = match std::env::var(INIT_FD_ENV).ok().and_then(|v| v.parse().ok()) {
        Some(fd) => fd,
        None => {
            eprintln!("hako init: this command is internal: it runs inside a container being created; use `hako create` or `hako run`");
            std::process::exit(2);
        }
    };
    std::env::remove_var(INIT_FD_ENV);
    // SAFETY: the parent passed this fd to us for our exclusive use.
    let ch = Channel::from_fd(unsafe { OwnedFd::from_raw_fd(fd) });
    let _ = nix::fcntl::fcntl(ch.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    let err = run(&ch).unwrap_err();
    let _ = ch.send(&Message::Error(err.to_string()));
    std::process::exit(1);
}

fn expect_hooks_done(ch: &Channel) -> Result<String, InitError> {
    match ch.recv()? {
        Message::HooksDone { state } => Ok(state),
        other => Err(ChannelError::Unexpected { expected: "HooksDone", got: describe(&other) }.into()),
    }
}

fn run(ch: &Channel) -> Result<std::convert::Infallible, InitError> {
    let cfg = match ch.recv()? {
        Message::Config(c) => *c,
        other => return Err(ChannelError::Unexpected { expected: "Config", got: describe(&other) }.into()),
    };
    let spec = &cfg.spec;
    let linux = spec.linux().as_ref();
    let proc_ =
        spec.process().as_ref().ok_or_else(|| sys_err("config")(std::io::Error::other("process is missing")))?;

    // Open what we need from the host before a user namespace or a joined mount namespace hides it.
    let state_dir =
        File::open(&cfg.state_dir).map_err(sys_err(format!("state directory {}", cfg.state_dir.display())))?;

    // 1. Namespaces.
    cfg.ns.join_user()?;
    if cfg.ns.creates("user") {
        namespaces::unshare_user()?;
        ch.send(&Message::WriteIdMaps(nix::unistd::getpid().as_raw()))?;
        match ch.recv()? {
            Message::IdMapsWritten => {}
            other => return Err(ChannelError::Unexpected { expected: "IdMapsWritten", got: describe(&other) }.into()),
        }
    }
    if cfg.ns.has("user") {
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(|e| sys_err("becoming root in the user namespace (is gid 0 mapped?)")(e.into()))?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(|e| sys_err("becoming root in the user namespace (is uid 0 mapped?)")(e.into()))?;
    }
    cfg.ns.join_others()?;
    cfg.ns.unshare_others()?;
    if cfg.ns.creates("time") {
        let mut offsets = String::new();
        for (clock, off) in linux.and_then(|l| l.time_offsets().as_ref()).into_iter().flatten() {
            offsets.push_str(&format!("{clock} {} {}\n", off.secs().unwrap_or(0), off.nanosecs().unwrap_or(0)));
        }
        if !offsets.is_empty() {
            std::fs::write("/proc/self/timens_offsets", offsets).map_err(sys_err("linux.timeOffsets"))?;
        }
    }

    // 2. The extra fork for pid and time namespaces.
    if cfg.ns.needs_fork() {
        // SAFETY: init is single-threaded, so the child may run arbitrary code after fork.
        match unsafe { fork() }.map_err(|e| sys_err("fork into the pid namespace")(e.into()))? {
            ForkResult::Parent { child } => {
                let _ = ch.send(&Message::Pid(child.as_raw()));
                // SAFETY: _exit never returns and skips destructors, which belong to the child now.
                unsafe { libc::_exit(0) };
            }
            ForkResult::Child => {}
        }
    } else if cfg.ns.pid_precreated() {
        // We are pid 1 of a pid namespace hako cloned us into: hako knows our host pid, we do not.
        ch.send(&Message::Pid(0))?;
    } else {
        ch.send(&Message::Pid(nix::unistd::getpid().as_raw()))?;
    }

    if !cfg.exec || proc_.terminal().unwrap_or(false) {
        nix::unistd::setsid().map_err(|e| sys_err("setsid")(e.into()))?;
    }
    // A container without a mount namespace lives in the host's, chrooted into its rootfs: exec goes there too.
    if cfg.exec && !cfg.ns.has("mount") {
        chroot_into(&cfg.rootfs)?;
    }

    // 3. The root filesystem (create only).
    let mut hook_state = String::new();
    if !cfg.exec {
        // A mount namespace joined by path gets the rootfs and mounts too, as crun does; without one nothing is
        // mounted (it would land in the host's mount table): create refused the fields that need mounts.
        if cfg.ns.has("mount") {
            let plan = rootfs::Plan {
                rootfs: &cfg.rootfs,
                bundle: &cfg.bundle,
                cgroups: &cfg.cgroups,
                new_cgroupns: cfg.ns.creates("cgroup"),
                bind_devices: cfg.ns.has("user"),
                mount_label: crate::lsm::effective_mount_label(linux.and_then(|l| l.mount_label().as_deref())),
            };
            rootfs::prepare(spec, &plan)?;
        }
        ch.send(&Message::RunCreateRuntimeHooks)?;
        hook_state = expect_hooks_done(ch)?;
        // The parent recorded our pid: from here `delete --force` can clean up after it, so init need not die with it.
        let _ = nix::sys::prctl::set_pdeathsig(None);
        if let Some(hooks) = spec.hooks().as_ref().and_then(|h| h.create_container().as_ref()) {
            hako_runtime::hooks::run("createContainer", hooks, &hook_state)?;
        }
        if cfg.ns.has("mount") {
            rootfs::pivot(&cfg.rootfs, cfg.no_pivot)?;
        } else {
            chroot_into(&cfg.rootfs)?;
        }
        process::set_names(spec.hostname().as_deref(), spec.domainname().as_deref())?;
        // sysctls go through /proc/sys, which readonlyPaths usually makes read-only: set them first.
        if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
            process::set_sysctls(sysctl)?;
        }
        if cfg.ns.has("mount") {
            rootfs::finish(spec)?;
        }
        if !cfg.no_new_keyring {
            let _ = sys::join_session_keyring(&format!("_ses.{}", cfg.id));
        }
    }

    // 4. The process.
    if proc_.terminal().unwrap_or(false) {
        let (master, slave) = tty::open_pty()?;
        if !cfg.exec && cfg.ns.has("mount") {
            rootfs::bind_console(&slave)?;
        }
        let size = proc_.console_size().as_ref().map(|b| (b.height() as u32, b.width() as u32));
        tty::become_console(&slave, size)?;
        if slave.as_raw_fd() <= 2 {
            // It is one of our stdio fds now: keep it open.
            let _ = std::os::fd::IntoRawFd::into_raw_fd(slave);
        }
        ch.send_with_fds(&Message::ConsoleFd, &[master.as_raw_fd()])?;
        drop(master);
    }
    process::apply_limits(proc_, linux)?;
    let args: Vec<String> = proc_.args().clone().unwrap_or_default();
    let mut env: Vec<String> = proc_.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", process::home_of(proc_.user().uid())));
    }
    process::enter_cwd(proc_.cwd())?;
    let exe = process::find_executable(&args[0], &env)?;
    let argv: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| sys_err("process.args")(std::io::Error::other(e)))?;
    let envp: Vec<CString> = env
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| sys_err("process.env")(std::io::Error::other(e)))?;

    let nnp = proc_.no_new_privileges().unwrap_or(false);
    let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(crate::seccomp::build(s)?),
        None => None,
    };
    crate::lsm::apply(proc_.apparmor_profile().as_deref(), proc_.selinux_label().as_deref())?;
    if let (Some(ctx), false) = (&seccomp, nnp) {
        crate::seccomp::load(ctx)?;
    }
    process::switch_user(proc_)?;
    if let Some(caps) = proc_.capabilities() {
        crate::capabilities::apply(caps)?;
    }
    if nnp {
        nix::sys::prctl::set_no_new_privs().map_err(|e| sys_err("noNewPrivileges")(e.into()))?;
    }
    sys::cloexec_from(3 + cfg.preserve_fds).map_err(sys_err("closing inherited file descriptors"))?;
    ch.send(&Message::Ready)?;

    // 5. Wait for start, then exec. The fifo stays open (close-on-exec) until execve, so `hako start` reads
    // until end-of-file and learns whether startContainer hooks and execve succeeded; a failure is written
    // into the fifo for `start` to report.
    let fifo = if !cfg.exec {
        let fd = nix::fcntl::openat(
            Some(state_dir.as_raw_fd()),
            "exec.fifo",
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| sys_err("waiting for start on exec.fifo")(e.into()))?;
        // SAFETY: openat returned a new fd that nothing else owns.
        let fifo = unsafe { OwnedFd::from_raw_fd(fd) };
        let _ = nix::unistd::write(fifo.as_fd(), b"0");
        Some(fifo)
    } else {
        None
    };
    drop(state_dir);
    let result: Result<std::convert::Infallible, InitError> = (|| {
        if fifo.is_some() {
            if let Some(hooks) = spec.hooks().as_ref().and_then(|h| h.start_container().as_ref()) {
                hako_runtime::hooks::run("startContainer", hooks, &hook_state)?;
            }
        }
        restore_signals();
        // With no_new_privs the filter needs no privilege, so it goes on last, just before execve (as runc does):
        // the profile then only has to allow execve, not what init does before it.
        if let (Some(ctx), true) = (&seccomp, nnp) {
            crate::seccomp::load(ctx)?;
        }
        let e = nix::unistd::execve(&exe, &argv, &envp).unwrap_err();
        Err(sys_err(format!("exec {:?}", args[0]))(e.into()))
    })();
    let err = result.unwrap_err();
    if let Some(f) = &fifo {
        let _ = nix::unistd::write(f.as_fd(), err.to_string().as_bytes());
    }
    Err(err)
}

/// Without a mount namespace: chroot into the rootfs, as crun does (pivot_root would move the host's root).
fn chroot_into(rootfs: &std::path::Path) -> Result<(), InitError> {
    nix::unistd::chroot(rootfs).map_err(|e| sys_err(format!("chroot into {}", rootfs.display()))(e.into()))?;
    nix::unistd::chdir("/").map_err(|e| sys_err("chdir to / after chroot")(e.into()))
}

/// Undoes what the hako process set for itself and execve would pass on: ignored SIGPIPE, blocked signals.
fn restore_signals() {
    use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
    // SAFETY: SIG_DFL installs no handler, so no code of ours can run in a signal context.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
