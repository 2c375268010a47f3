//! The container's root filesystem, built inside its new mount namespace: propagation, the spec's mounts
//! (every target resolved with `openat2(RESOLVE_IN_ROOT)`, so a symlink in the rootfs can never point a mount at
//! the host), the cgroup filesystem, devices and `/dev` symlinks, `pivot_root` (or chroot), then readonly and
//! masked paths and the read-only root.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{chdir, chroot, fchdir, symlinkat, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use serde::{Deserialize, Serialize};

use crate::mountopts;
use crate::sys;

/// A rootfs step that failed, naming the mount or path.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A mount(2) failed.
    #[error("mount {what} on {target}: {source}")]
    Mount {
        /// Source and type, in words.
        what: String,
        /// The target inside the container.
        target: PathBuf,
        /// The kernel's error.
        source: io::Error,
    },
    /// A path inside the rootfs could not be made or opened.
    #[error("rootfs path {path}: {source}")]
    Path {
        /// The path inside the container.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A mount's options are not supported.
    #[error("mount on {target}: {what}")]
    Options {
        /// The target inside the container.
        target: PathBuf,
        /// The problem.
        what: String,
    },
    /// The bind source is missing.
    #[error("bind mount source {source_path} for {target} does not exist: create it or fix mounts in config.json")]
    BindSource {
        /// The source on the host.
        source_path: PathBuf,
        /// The target inside the container.
        target: PathBuf,
    },
    /// The bind source is a symbolic link whose target does not exist.
    #[error(
        "bind mount source {source_path} for {target} is a symbolic link to {link_target}, which does not \
         exist: create {link_target} or fix mounts in config.json"
    )]
    BindSourceDangling {
        /// The source on the host (the link).
        source_path: PathBuf,
        /// What the link points to.
        link_target: PathBuf,
        /// The target inside the container.
        target: PathBuf,
    },
    /// A mount destination goes through a symbolic link in the rootfs whose target does not exist.
    #[error(
        "mount destination {path}: {link} in the rootfs is a symbolic link to {link_target}, which does not \
         exist in the rootfs: create it in the rootfs, or remove the link, or fix mounts in config.json"
    )]
    DanglingLink {
        /// The destination inside the container.
        path: PathBuf,
        /// The link, inside the container.
        link: PathBuf,
        /// What it points to.
        link_target: PathBuf,
    },
    /// Creating a device node failed.
    #[error("device {path}: {source}")]
    Device {
        /// The device path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The container's /dev/null cannot mask a path.
    #[error("masked path {target}: /dev/null in the container is {found}, not the null device (character device 1:3): hako masks files only with the real one; mount a tmpfs on /dev (hako then makes the device) or fix the rootfs")]
    DevNull {
        /// The masked path.
        target: PathBuf,
        /// What /dev/null is instead.
        found: String,
    },
    /// The console bind target is unsafe.
    #[error("/dev/console in the container is {what}: hako binds the terminal there and will not follow or replace it; remove it from the rootfs or mount a tmpfs on /dev")]
    Console {
        /// What it is.
        what: &'static str,
    },
    /// Mounting by fd after pivot_root needs the container's procfs.
    #[error("{target}: hako mounts it through /proc/self/fd, and /proc in the container is not procfs: add a proc mount on /proc to mounts")]
    NoProc {
        /// The path being mounted.
        target: PathBuf,
    },
    /// pivot_root or chroot failed.
    #[error("{what} into {rootfs}: {source}")]
    Pivot {
        /// pivot_root or chroot.
        what: &'static str,
        /// The rootfs.
        rootfs: PathBuf,
        /// The kernel's error.
        source: io::Error,
    },
}

fn errno(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// One cgroup hierarchy as the container's `/sys/fs/cgroup` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CgroupMountPlan {
    /// Directory name under /sys/fs/cgroup ("memory", "cpu,cpuacct", "unified"; empty for a pure v2 host).
    pub subdir: String,
    /// "cgroup" or "cgroup2".
    pub fstype: String,
    /// Mount options selecting the hierarchy ("memory", "none,name=systemd"; empty for cgroup2).
    pub options: String,
    /// The container's cgroup directory on the host, bind-mounted without a cgroup namespace.
    pub host_dir: PathBuf,
}

/// What [`prepare`] needs besides the spec.
#[derive(Debug)]
pub struct Plan<'a> {
    /// Absolute rootfs path.
    pub rootfs: &'a Path,
    /// Absolute bundle path (relative bind sources are relative to it).
    pub bundle: &'a Path,
    /// The container's cgroup hierarchies.
    pub cgroups: &'a [CgroupMountPlan],
    /// A new cgroup namespace was made (cgroup filesystems can be mounted directly).
    pub new_cgroupns: bool,
    /// Devices must be bind-mounted from the host (mknod is refused in a user namespace).
    pub bind_devices: bool,
    /// `context=` option from linux.mountLabel.
    pub mount_label: Option<String>,
}

/// The default devices every container gets (runtime-spec "Default Devices").
const DEFAULT_DEVICES: &[(&str, u64, u64)] =
    &[("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// Everything before pivot_root: propagation, the rootfs bind, the spec's mounts and devices.
pub fn prepare(spec: &Spec, plan: &Plan<'_>) -> Result<(), RootfsError> {
    let slave = MsFlags::MS_SLAVE | MsFlags::MS_REC;
    mount(None::<&str>, "/", None::<&str>, slave, None::<&str>).map_err(|e| RootfsError::Mount {
        what: "rslave propagation".into(),
        target: "/".into(),
        source: errno(e),
    })?;
    mount(Some(plan.rootfs), plan.rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(
        |e| RootfsError::Mount {
            what: format!("rootfs {}", plan.rootfs.display()),
            target: "/".into(),
            source: errno(e),
        },
    )?;
    let root = File::open(plan.rootfs).map_err(|source| RootfsError::Path { path: plan.rootfs.to_owned(), source })?;
    let mut dev_mounted = false;
    for m in spec.mounts().iter().flatten() {
        mount_one(&root, m, plan)?;
        dev_mounted |= m.destination() == Path::new("/dev");
    }
    let linux = spec.linux().as_ref();
    if dev_mounted {
        for (name, major, minor) in DEFAULT_DEVICES {
            let path = Path::new("/dev").join(name);
            make_device(&root, &path, 'c', *major, *minor, 0o666, 0, 0, plan.bind_devices)?;
        }
        dev_symlinks(&root)?;
    }
    for d in linux.and_then(|l| l.devices().as_ref()).into_iter().flatten() {
        spec_device(&root, d, plan.bind_devices)?;
    }
    Ok(())
}

fn spec_device(root: &File, d: &LinuxDevice, bind: bool) -> Result<(), RootfsError> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::P => 'p',
        LinuxDeviceType::A => {
            return Err(RootfsError::Device {
                path: d.path().clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "type \"a\" is only valid in device cgroup rules"),
            })
        }
    };
    let mode = d.file_mode().unwrap_or(0o666);
    make_device(
        root,
        d.path(),
        kind,
        d.major() as u64,
        d.minor() as u64,
        mode,
        d.uid().unwrap_or(0),
        d.gid().unwrap_or(0),
        bind,
    )
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    root: &File,
    path: &Path,
    kind: char,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    bind: bool,
) -> Result<(), RootfsError> {
    let err = |source| RootfsError::Device { path: path.to_owned(), source };
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or_else(|| err(io::Error::from_raw_os_error(libc::EINVAL)))?;
    let dir = mkdir_in_root(root, parent)?;
    if bind {
        let host = Path::new("/dev").join(path.strip_prefix("/dev").unwrap_or(path));
        let file = match nix::fcntl::openat(
            Some(dir.as_raw_fd()),
            name,
            nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => fd,
            Err(e) => return Err(err(errno(e))),
        };
        let _ = nix::unistd::close(file);
        let target = open_in(root, path, libc::O_PATH)?;
        return mount(Some(&host), &fd_path(&target), None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| err(errno(e)));
    }
    let sflag = match kind {
        'b' => SFlag::S_IFBLK,
        'p' => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    match nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(err(errno(e))),
    }
    let old = nix::sys::stat::umask(Mode::empty());
    let r = mknodat(
        Some(dir.as_raw_fd()),
        name,
        sflag,
        Mode::from_bits_truncate(mode),
        nix::sys::stat::makedev(major, minor),
    );
    nix::sys::stat::umask(old);
    r.map_err(|e| err(errno(e)))?;
    nix::unistd::fchownat(
        Some(dir.as_raw_fd()),
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| err(errno(e)))
}

fn dev_symlinks(root: &File) -> Result<(), RootfsError> {
    let dev = mkdir_in_root(root, Path::new("/dev"))?;
    for (target, name) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("/proc/kcore", "core"),
        ("pts/ptmx", "ptmx"),
    ] {
        match symlinkat(target, Some(dev.as_raw_fd()), name) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(RootfsError::Path { path: Path::new("/dev").join(name), source: errno(e) }),
        }
    }
    Ok(())
}

fn mount_one(root: &File, m: &Mount, plan: &Plan<'_>) -> Result<(), RootfsError> {
    let dest = m.destination();
    let opts = mountopts::parse(m.options().as_deref().unwrap_or_default())
        .map_err(|what| RootfsError::Options { target: dest.clone(), what })?;
    let typ = m.typ().as_deref().unwrap_or(if opts.bind { "bind" } else { "" });
    let mount_err = |what: String| move |source| RootfsError::Mount { what, target: dest.clone(), source };
    if typ == "bind" || opts.bind {
        let src = m
            .source()
            .as_ref()
            .ok_or_else(|| RootfsError::Options { target: dest.clone(), what: "bind mount without source".into() })?;
        let src = if src.is_absolute() { src.clone() } else { plan.bundle.join(src) };
        let meta = std::fs::metadata(&src).map_err(|_| match std::fs::read_link(&src) {
            Ok(link_target) => {
                RootfsError::BindSourceDangling { source_path: src.clone(), link_target, target: dest.clone() }
            }
            Err(_) => RootfsError::BindSource { source_path: src.clone(), target: dest.clone() },
        })?;
        let target = if meta.is_dir() { mkdir_in_root(root, dest)? } else { mkfile_in_root(root, dest)? };
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        mount(Some(&src), &fd_path(&target), None::<&str>, flags, None::<&str>)
            .map_err(|e| mount_err(format!("bind {}", src.display()))(errno(e)))?;
        let extra = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            let target = open_in(root, dest, libc::O_PATH)?;
            remount_bind(&fd_path(&target), extra)
                .map_err(|e| mount_err(format!("remount of bind {}", src.display()))(e))?;
        }
        return propagate(root, dest, &opts);
    }
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroups(root, dest, &opts, plan);
    }
    let target = mkdir_in_root(root, dest)?;
    let mut data = opts.data.clone();
    if let Some(label) = &plan.mount_label {
        if matches!(typ, "tmpfs" | "devpts" | "mqueue") {
            data = [data, format!("context=\"{label}\"")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(",");
        }
    }
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let data = (!data.is_empty()).then_some(data.as_str());
    match mount(Some(&source), &fd_path(&target), Some(typ), opts.flags, data) {
        Ok(()) => {}
        // Without a network namespace of its own a container may not mount sysfs; runc binds the host's instead.
        Err(nix::Error::EPERM) if typ == "sysfs" => {
            mount(Some("/sys"), &fd_path(&target), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(|e| mount_err("rbind /sys".into())(errno(e)))?;
            let target = open_in(root, dest, libc::O_PATH)?;
            remount_bind(&fd_path(&target), opts.flags).map_err(mount_err("remount of /sys".into()))?;
        }
        Err(e) => return Err(mount_err(format!("{typ} {}", source.display()))(errno(e))),
    }
    propagate(root, dest, &opts)
}

fn propagate(root: &File, dest: &Path, opts: &mountopts::MountOptions) -> Result<(), RootfsError> {
    for p in &opts.propagation {
        let target = open_in(root, dest, libc::O_PATH)?;
        mount(None::<&str>, &fd_path(&target), None::<&str>, *p, None::<&str>).map_err(|e| RootfsError::Mount {
            what: "propagation".into(),
            target: dest.to_owned(),
            source: errno(e),
        })?;
    }
    Ok(())
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locks in a user namespace.
fn remount_bind(target: &Path, flags: MsFlags) -> Result<(), io::Error> {
    let locked = nix::sys::statvfs::statvfs(target).map(|s| s.flags()).map_err(errno)?;
    let mut keep = MsFlags::empty();
    use nix::sys::statvfs::FsFlags;
    for (f, m) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if locked.contains(f) {
            keep |= m;
        }
    }
    let all = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | keep;
    match mount(None::<&str>, target, None::<&str>, all, None::<&str>) {
        Ok(()) => Ok(()),
        Err(_) => {
            mount(None::<&str>, target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags, None::<&str>)
                .map_err(errno)
        }
    }
}

fn mount_cgroups(root: &File, dest: &Path, opts: &mountopts::MountOptions, plan: &Plan<'_>) -> Result<(), RootfsError> {
    let err =
        |what: String, target: PathBuf| move |e: nix::Error| RootfsError::Mount { what, target, source: errno(e) };
    let ro = opts.flags.contains(MsFlags::MS_RDONLY);
    let base = opts.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    if let [only] = plan.cgroups {
        if only.subdir.is_empty() {
            // Pure cgroup v2: one filesystem at dest.
            let target = mkdir_in_root(root, dest)?;
            let flags = base | if ro { MsFlags::MS_RDONLY } else { MsFlags::empty() };
            return if plan.new_cgroupns {
                mount(Some("cgroup2"), &fd_path(&target), Some("cgroup2"), flags, None::<&str>)
                    .map_err(err("cgroup2".into(), dest.to_owned()))
            } else {
                mount(Some(&only.host_dir), &fd_path(&target), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(err(format!("bind {}", only.host_dir.display()), dest.to_owned()))?;
                let t = open_in(root, dest, libc::O_PATH)?;
                remount_bind(&fd_path(&t), flags).map_err(|source| RootfsError::Mount {
                    what: "remount cgroup2".into(),
                    target: dest.to_owned(),
                    source,
                })
            };
        }
    }
    let target = mkdir_in_root(root, dest)?;
    mount(Some("tmpfs"), &fd_path(&target), Some("tmpfs"), base, Some("mode=755"))
        .map_err(err("tmpfs for cgroups".into(), dest.to_owned()))?;
    for h in plan.cgroups {
        let sub = dest.join(&h.subdir);
        let t = mkdir_in_root(root, &sub)?;
        let flags = base | if ro { MsFlags::MS_RDONLY } else { MsFlags::empty() };
        if plan.new_cgroupns {
            let data = (!h.options.is_empty()).then_some(h.options.as_str());
            mount(Some(h.fstype.as_str()), &fd_path(&t), Some(h.fstype.as_str()), flags, data)
                .map_err(err(format!("{} {}", h.fstype, h.options), sub.clone()))?;
        } else {
            mount(Some(&h.host_dir), &fd_path(&t), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(err(format!("bind {}", h.host_dir.display()), sub.clone()))?;
            let t = open_in(root, &sub, libc::O_PATH)?;
            remount_bind(&fd_path(&t), flags).map_err(|source| RootfsError::Mount {
                what: "remount cgroup".into(),
                target: sub.clone(),
                source,
            })?;
        }
        // Co-mounted controllers ("cpu,cpuacct") are also reachable by each name, as on the host.
        if h.subdir.contains(',') {
            let dir = open_in(root, dest, libc::O_PATH | libc::O_DIRECTORY)?;
            for name in h.subdir.split(',') {
                match symlinkat(h.subdir.as_str(), Some(dir.as_raw_fd()), name) {
                    Ok(()) | Err(nix::Error::EEXIST) => {}
                    Err(e) => return Err(RootfsError::Path { path: dest.join(name), source: errno(e) }),
                }
            }
        }
    }
    if ro {
        let t = open_in(root, dest, libc::O_PATH)?;
        mount(
            None::<&str>,
            &fd_path(&t),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
            Some("mode=755"),
        )
        .map_err(err("read-only remount of the cgroup tmpfs".into(), dest.to_owned()))?;
    }
    Ok(())
}

/// Replaces `/` with the rootfs: pivot_root and detach the old root, or with `no_pivot` move + chroot.
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    let err = |what| move |e: nix::Error| RootfsError::Pivot { what, rootfs: rootfs.to_owned(), source: errno(e) };
    chdir(rootfs).map_err(err("chdir"))?;
    if no_pivot {
        mount(Some(rootfs), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(err("move mount"))?;
        chroot(".").map_err(err("chroot"))?;
        return chdir("/").map_err(err("chdir"));
    }
    let old = File::open("/").map_err(|source| RootfsError::Pivot {
        what: "open old root",
        rootfs: rootfs.to_owned(),
        source,
    })?;
    let new = File::open(".").map_err(|source| RootfsError::Pivot {
        what: "open new root",
        rootfs: rootfs.to_owned(),
        source,
    })?;
    sys::pivot_root(Path::new("."), Path::new(".")).map_err(|source| RootfsError::Pivot {
        what: "pivot_root",
        rootfs: rootfs.to_owned(),
        source,
    })?;
    fchdir(old.as_raw_fd()).map_err(err("fchdir"))?;
    // The old root must not propagate its unmount back to the host.
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .map_err(err("rslave old root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(err("unmount old root"))?;
    fchdir(new.as_raw_fd()).map_err(err("fchdir"))?;
    chdir("/").map_err(err("chdir"))
}

/// After pivot_root: root propagation, readonly paths, masked paths, the read-only root.
///
/// The rootfs is the container owner's, so nothing here mounts by a path string: each target is opened with
/// `openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)` under the new root and mounted through `/proc/self/fd/N`
/// of the container's procfs (checked to be procfs), and a file is masked only with a `/dev/null` that is the
/// null device, mounted through its own fd (runc's CVE-2025-31133).
pub fn finish(spec: &Spec) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    if let Some(prop) = linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        let o =
            mountopts::parse(&[prop.to_owned()]).map_err(|what| RootfsError::Options { target: "/".into(), what })?;
        for p in o.propagation {
            mount(None::<&str>, "/", None::<&str>, p, None::<&str>).map_err(|e| RootfsError::Mount {
                what: format!("rootfsPropagation {prop}"),
                target: "/".into(),
                source: errno(e),
            })?;
        }
    }
    let root = File::open("/").map_err(|source| RootfsError::Path { path: "/".into(), source })?;
    // A target that is not there needs no protection.
    const LOOP: &str = "the path runs through a /proc magic link or a symlink loop, which hako does not follow: \
                        name the real path in readonlyPaths or maskedPaths";
    let existing = |path: &Path| match open_in(&root, path, libc::O_PATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(RootfsError::Path { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(RootfsError::Path { source, .. }) if source.raw_os_error() == Some(libc::ELOOP) => {
            Err(RootfsError::Options { target: path.to_owned(), what: LOOP.into() })
        }
        Err(e) => Err(e),
    };
    for p in linux.and_then(|l| l.readonly_paths().as_ref()).into_iter().flatten() {
        let path = Path::new(p);
        let Some(target) = existing(path)? else { continue };
        let t = proc_fd_path(&target, path)?;
        let err = |source| RootfsError::Mount { what: "readonly path".into(), target: path.to_owned(), source };
        mount(Some(&t), &t, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(|e| err(errno(e)))?;
        // The fd still names what lies under the new bind: reopen to reach the bind itself.
        let top = open_in(&root, path, libc::O_PATH)?;
        remount_bind(&proc_fd_path(&top, path)?, MsFlags::MS_RDONLY | MsFlags::MS_REC).map_err(err)?;
    }
    let mut dev_null: Option<OwnedFd> = None;
    for p in linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten() {
        let path = Path::new(p);
        let Some(target) = existing(path)? else { continue };
        let is_dir = nix::sys::stat::fstat(target.as_raw_fd())
            .map_err(|e| RootfsError::Path { path: path.to_owned(), source: errno(e) })?
            .st_mode
            & libc::S_IFMT
            == libc::S_IFDIR;
        let t = proc_fd_path(&target, path)?;
        let r = if is_dir {
            mount(Some("tmpfs"), &t, Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
        } else {
            let null = match &dev_null {
                Some(fd) => fd,
                None => dev_null.insert(open_dev_null(&root, path)?),
            };
            mount(Some(&proc_fd_path(null, path)?), &t, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        };
        r.map_err(|e| RootfsError::Mount { what: "masked path".into(), target: path.to_owned(), source: errno(e) })?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        // "/" is no link a rootfs could plant; through its fd when the container has a procfs, by name otherwise.
        let fd = root_fd(&root)?;
        let t = proc_fd_path(&fd, Path::new("/")).unwrap_or_else(|_| PathBuf::from("/"));
        remount_bind(&t, MsFlags::MS_RDONLY).map_err(|source| RootfsError::Mount {
            what: "read-only root".into(),
            target: "/".into(),
            source,
        })?;
    }
    Ok(())
}

fn root_fd(root: &File) -> Result<OwnedFd, RootfsError> {
    open_in(root, Path::new("/"), libc::O_PATH | libc::O_DIRECTORY)
}

/// The container's `/dev/null`, checked to be the null device (character device 1:3) before anything is masked
/// with it: a rootfs may have planted a symlink or a file there.
fn open_dev_null(root: &File, masking: &Path) -> Result<OwnedFd, RootfsError> {
    let refuse = |found: String| RootfsError::DevNull { target: masking.to_owned(), found };
    let fd = match open_in(root, Path::new("/dev/null"), libc::O_PATH) {
        Ok(fd) => fd,
        Err(RootfsError::Path { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            return Err(refuse("missing".into()))
        }
        Err(RootfsError::Path { source, .. }) => return Err(refuse(format!("unusable ({source})"))),
        Err(e) => return Err(e),
    };
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| refuse(errno(e).to_string()))?;
    let (major, minor) = (nix::sys::stat::major(st.st_rdev), nix::sys::stat::minor(st.st_rdev));
    match st.st_mode & libc::S_IFMT {
        libc::S_IFCHR if (major, minor) == (1, 3) => Ok(fd),
        libc::S_IFCHR => Err(refuse(format!("character device {major}:{minor}"))),
        libc::S_IFREG => Err(refuse("a regular file".into())),
        libc::S_IFDIR => Err(refuse("a directory".into())),
        _ => Err(refuse("not a character device".into())),
    }
}

/// `/proc/self/fd/N` for `fd`, once the container's `/proc` is checked to be a procfs (after pivot_root the path
/// resolves in the container, whose image could otherwise hold a plain `/proc/self/fd` directory of links).
fn proc_fd_path(fd: &OwnedFd, what: &Path) -> Result<PathBuf, RootfsError> {
    match nix::sys::statfs::statfs("/proc/self/fd") {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC => Ok(fd_path(fd)),
        _ => Err(RootfsError::NoProc { target: what.to_owned() }),
    }
}

/// Binds the pty slave over /dev/console (after pivot_root), by fd at both ends: the slave is the fd init already
/// holds, never `/dev/pts/N` looked up again, and the target is opened under the root without following a
/// symlink at its end; a missing one is created with `O_CREAT|O_EXCL|O_NOFOLLOW` (runc's CVE-2025-52565).
pub fn bind_console(slave: &OwnedFd) -> Result<(), RootfsError> {
    use nix::fcntl::OFlag;
    let console = Path::new("/dev/console");
    let err = |source: io::Error| RootfsError::Path { path: console.to_owned(), source };
    let root = File::open("/").map_err(|source| RootfsError::Path { path: "/".into(), source })?;
    let dev = open_in(&root, Path::new("/dev"), libc::O_PATH | libc::O_DIRECTORY)?;
    let open_target = || {
        nix::fcntl::openat(
            Some(dev.as_raw_fd()),
            "console",
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    let fd = match open_target() {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) => {
            let created = nix::fcntl::openat(
                Some(dev.as_raw_fd()),
                "console",
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o666),
            )
            .map_err(|e| err(errno(e)))?;
            let _ = nix::unistd::close(created);
            open_target().map_err(|e| err(errno(e)))?
        }
        Err(e) => return Err(err(errno(e))),
    };
    // SAFETY: openat returned a new fd that nothing else owns.
    let target = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let st = nix::sys::stat::fstat(target.as_raw_fd()).map_err(|e| err(errno(e)))?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG && kind != libc::S_IFCHR {
        let what = if kind == libc::S_IFLNK { "a symbolic link" } else { "neither a file nor a character device" };
        return Err(RootfsError::Console { what });
    }
    let on_proc = nix::sys::statfs::fstatfs(&target).is_ok_and(|s| {
        s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC
            || s.filesystem_type() == nix::sys::statfs::SYSFS_MAGIC
    });
    if on_proc {
        return Err(RootfsError::Console { what: "on procfs or sysfs" });
    }
    let src = proc_fd_path(slave, console)?;
    mount(Some(&src), &proc_fd_path(&target, console)?, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| {
        RootfsError::Mount { what: "bind of the terminal".into(), target: console.to_owned(), source: errno(e) }
    })
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `path` relative to the root, `..` resolved lexically and never above the root (what runc's `filepath.Clean`
/// does to a destination before it resolves it in the rootfs): `/a/../b` is `b`, `/../x` is `x`.
fn relative(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn open_in(root: &File, path: &Path, flags: i32) -> Result<OwnedFd, RootfsError> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel };
    sys::open_in_root(root.as_raw_fd(), &rel, flags)
        .map_err(|source| RootfsError::Path { path: path.to_owned(), source })
}

/// Creates every missing directory of `path` inside the rootfs (symlinks resolved inside it) and opens it.
fn mkdir_in_root(root: &File, path: &Path) -> Result<OwnedFd, RootfsError> {
    match open_in(root, path, libc::O_PATH | libc::O_DIRECTORY) {
        Ok(fd) => return Ok(fd),
        Err(RootfsError::Path { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let mut done = PathBuf::from("/");
    for c in relative(path).components() {
        let parent = open_in(root, &done, libc::O_PATH | libc::O_DIRECTORY)?;
        match mkdirat(Some(parent.as_raw_fd()), c.as_os_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) => {}
            Err(nix::Error::EEXIST) => {
                // A symbolic link whose target is missing: name both, not just the link.
                if let Ok(link_target) = nix::fcntl::readlinkat(Some(parent.as_raw_fd()), c.as_os_str()) {
                    if open_in(root, &done.join(c), libc::O_PATH).is_err() {
                        return Err(RootfsError::DanglingLink {
                            path: path.to_owned(),
                            link: done.join(c),
                            link_target: link_target.into(),
                        });
                    }
                }
            }
            Err(e) => return Err(RootfsError::Path { path: done.join(c), source: errno(e) }),
        }
        done.push(c);
    }
    open_in(root, path, libc::O_PATH | libc::O_DIRECTORY)
}

/// Creates `path` as an empty file (its parents as directories) inside the rootfs and opens it.
fn mkfile_in_root(root: &File, path: &Path) -> Result<OwnedFd, RootfsError> {
    if let Ok(fd) = open_in(root, path, libc::O_PATH) {
        return Ok(fd);
    }
    let parent = mkdir_in_root(root, path.parent().unwrap_or(Path::new("/")))?;
    let name = path.file_name().ok_or_else(|| RootfsError::Path {
        path: path.to_owned(),
        source: io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    let fd = nix::fcntl::openat(
        Some(parent.as_raw_fd()),
        name,
        nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_CLOEXEC
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_WRONLY,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| RootfsError::Path { path: path.to_owned(), source: errno(e) })?;
    let _ = nix::unistd::close(fd);
    open_in(root, path, libc::O_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_resolves_dot_dot_inside_the_root() {
        assert_eq!(relative(Path::new("/a/../b")), PathBuf::from("b"));
        assert_eq!(relative(Path::new("/a/b/../../c/./d")), PathBuf::from("c/d"));
        assert_eq!(relative(Path::new("/../../../x")), PathBuf::from("x"));
        assert_eq!(relative(Path::new("/..")), PathBuf::new());
        assert_eq!(relative(Path::new("dev/pts")), PathBuf::from("dev/pts"));
    }
}
