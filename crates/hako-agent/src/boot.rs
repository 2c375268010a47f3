//! What the agent does as pid 1 of the micro-VM before it serves: leave the initramfs root (so that
//! containers can `pivot_root`), mount the kernel file systems, turn on every cgroup v2 controller, load the
//! kernel modules the initramfs carries, bring up loopback, and find the host's virtio-serial port.
//!
//! **Modules.** A stock kernel (Debian's) builds virtio, virtio-serial and 9p as modules. The agent loads
//! them with finit_module before it looks for the port: the files `/lib/modules/load-order` names (one file
//! name per line, relative to `/lib/modules`, dependencies first; what `scripts/initramfs --modules` writes),
//! or without that list every `*.ko` in `/lib/modules` in file-name order. A module that is already there
//! (built in, or loaded) is fine; one that fails is logged and the boot goes on.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};

use crate::log::log;
use crate::sys;

/// A boot step that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BootError {
    /// A mount failed.
    #[error("mount {fstype} on {target}: {source}")]
    Mount {
        /// The file system type.
        fstype: String,
        /// Where.
        target: String,
        /// The kernel's error.
        source: io::Error,
    },
    /// Leaving the initramfs root failed.
    #[error("moving the root off the initramfs ({step}): {source}")]
    SwitchRoot {
        /// The step.
        step: &'static str,
        /// The kernel's error.
        source: io::Error,
    },
    /// The host's port never appeared.
    #[error("no virtio-serial port named {name} appeared in /sys/class/virtio-ports within {secs} s: start the VM with -device virtserialport,name={name} (and load virtio_console if the kernel has it as a module)")]
    NoPort {
        /// The port name.
        name: &'static str,
        /// How long we looked.
        secs: u64,
    },
}

fn mnt(source: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<(), BootError> {
    fs::create_dir_all(target).map_err(|source| BootError::Mount {
        fstype: fstype.into(),
        target: target.into(),
        source,
    })?;
    mount(Some(source), target, Some(fstype), flags, data).map_err(|e| BootError::Mount {
        fstype: fstype.into(),
        target: target.into(),
        source: e.into(),
    })
}

/// Whether `/` is a mount without a parent (the kernel's initramfs root, rootfs), which `pivot_root` refuses
/// to leave.
fn root_is_rootfs() -> bool {
    fs::read_to_string("/proc/self/mountinfo").map(|t| root_without_parent(&t)).unwrap_or(false)
}

/// In mountinfo a mount without a parent is its own parent (field 2 equals field 1).
fn root_without_parent(mountinfo: &str) -> bool {
    mountinfo.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.len() > 4 && f[4] == "/" && f[0] == f[1]
    })
}

/// Makes `/` a bind mount of the initramfs that has a parent mount: `pivot_root` needs its current root to
/// have one, and the kernel's rootfs has none. No file is copied.
fn leave_rootfs() -> Result<(), BootError> {
    let step = |step: &'static str| move |e: nix::Error| BootError::SwitchRoot { step, source: e.into() };
    let new = "/.hako-root";
    fs::create_dir_all(new).map_err(|source| BootError::SwitchRoot { step: "mkdir /.hako-root", source })?;
    mount(Some("/"), new, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(step("bind / on /.hako-root"))?;
    nix::unistd::chdir(new).map_err(step("chdir /.hako-root"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(step("move /.hako-root to /"))?;
    nix::unistd::chroot(".").map_err(step("chroot"))?;
    nix::unistd::chdir("/").map_err(step("chdir /"))?;
    let _ = fs::remove_dir(new);
    Ok(())
}

/// Opens /dev/console (or /dev/null) on whichever of fds 0, 1 and 2 the kernel left closed.
fn ensure_stdio() {
    let missing: Vec<i32> = (0..3).filter(|fd| !sys::fd_is_open(*fd)).collect();
    if missing.is_empty() {
        return;
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
        .or_else(|_| fs::OpenOptions::new().read(true).write(true).open("/dev/null"));
    if let Ok(f) = f {
        for fd in missing {
            let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&f), fd);
        }
    }
}

/// Everything pid 1 sets up before it looks for the port.
pub(crate) fn setup() -> Result<(), BootError> {
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mnt("proc", "/proc", "proc", nosuid_nodev | MsFlags::MS_NOEXEC, None)?;
    if root_is_rootfs() {
        nix::mount::umount2("/proc", nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| BootError::SwitchRoot { step: "unmount /proc", source: e.into() })?;
        leave_rootfs()?;
        mnt("proc", "/proc", "proc", nosuid_nodev | MsFlags::MS_NOEXEC, None)?;
    }
    mnt("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755"))?;
    ensure_stdio();
    mnt("sysfs", "/sys", "sysfs", nosuid_nodev | MsFlags::MS_NOEXEC, None)?;
    mnt(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mnt("shm", "/dev/shm", "tmpfs", nosuid_nodev, Some("mode=1777"))?;
    mnt("tmpfs", "/run", "tmpfs", nosuid_nodev, Some("mode=0755"))?;
    mnt("tmpfs", "/tmp", "tmpfs", nosuid_nodev, Some("mode=1777"))?;
    // favordynmods (Linux 6.0): moving a process into a cgroup (each container's init) then costs no RCU grace
    // period, which is several 10 ms ticks in this kernel (HZ=100).
    mnt("cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid_nodev | MsFlags::MS_NOEXEC, Some("favordynmods"))
        .or_else(|_| mnt("cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid_nodev | MsFlags::MS_NOEXEC, None))?;
    enable_controllers(Path::new("/sys/fs/cgroup"));
    load_modules(Path::new("/lib/modules"));
    if let Err(e) = sys::link_up("lo") {
        log(format!("loopback: {e}"));
    }
    Ok(())
}

/// Writes `+name` for every controller of `dir/cgroup.controllers` into `dir/cgroup.subtree_control`, one by
/// one so that one controller the kernel refuses does not keep the others off.
pub(crate) fn enable_controllers(dir: &Path) {
    let Ok(list) = fs::read_to_string(dir.join("cgroup.controllers")) else {
        log(format!("cgroup: cannot read {}/cgroup.controllers", dir.display()));
        return;
    };
    for c in list.split_whitespace() {
        if let Err(e) = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}")) {
            log(format!("cgroup: enabling controller {c} in {}: {e}", dir.display()));
        }
    }
}

/// The modules to load from `dir`, in order: `dir/load-order`, else every `*.ko` by file name.
fn module_list(dir: &Path) -> Vec<PathBuf> {
    if let Ok(list) = fs::read_to_string(dir.join("load-order")) {
        return list
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| dir.join(l))
            .collect();
    }
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> =
        rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "ko")).collect();
    files.sort();
    files
}

/// Loads the modules of `dir` (see the module docs).
fn load_modules(dir: &Path) {
    for f in module_list(dir) {
        let result = fs::File::open(&f).and_then(|file| sys::finit_module(file.as_fd()));
        match result {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => log(format!("module {}: {e}", f.display())),
        }
    }
}

/// The `/dev` node of the virtio-serial port named `name`, waiting up to `timeout` for it to appear.
pub(crate) fn find_port(name: &'static str, timeout: Duration) -> Result<PathBuf, BootError> {
    let start = Instant::now();
    loop {
        if let Some(p) = port_in(Path::new("/sys/class/virtio-ports"), name) {
            let dev = Path::new("/dev").join(&p);
            if dev.exists() {
                return Ok(dev);
            }
        }
        if start.elapsed() > timeout {
            return Err(BootError::NoPort { name, secs: timeout.as_secs() });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The entry of `class_dir` (e.g. `vport0p1`) whose `name` file holds `name`.
fn port_in(class_dir: &Path, name: &str) -> Option<String> {
    let rd = fs::read_dir(class_dir).ok()?;
    rd.filter_map(|e| e.ok()).find_map(|e| {
        let n = fs::read_to_string(e.path().join("name")).ok()?;
        (n.trim() == name).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_root_is_recognised() {
        let initramfs = "1 1 0:2 / / rw - rootfs rootfs rw\n17 1 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw\n";
        assert!(root_without_parent(initramfs));
        // After leave_rootfs: a bind of the same file system, whose parent is the hidden rootfs.
        let moved = "25 1 0:2 / / rw - rootfs rootfs rw\n";
        assert!(!root_without_parent(moved));
        let disk = "22 1 8:1 / / rw,relatime - ext4 /dev/vda rw\n23 22 0:2 / /x rw - tmpfs tmpfs rw\n";
        assert!(!root_without_parent(disk));
        assert!(!root_without_parent(&fs::read_to_string("/proc/self/mountinfo").unwrap()));
    }

    #[test]
    fn modules_follow_the_load_order_file() {
        let d = tempfile::tempdir().unwrap();
        for m in ["virtio.ko", "virtio_ring.ko", "9p.ko"] {
            fs::write(d.path().join(m), b"").unwrap();
        }
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
        };
        assert_eq!(names(module_list(d.path())), ["9p.ko", "virtio.ko", "virtio_ring.ko"]);
        fs::write(d.path().join("load-order"), "virtio_ring.ko\nvirtio.ko\n\n9p.ko\n").unwrap();
        assert_eq!(names(module_list(d.path())), ["virtio_ring.ko", "virtio.ko", "9p.ko"]);
        assert!(module_list(&d.path().join("none")).is_empty());
    }

    #[test]
    fn port_is_found_by_name() {
        let d = tempfile::tempdir().unwrap();
        for (dir, name) in [("vport0p0", "other"), ("vport0p1", "hako.ctl")] {
            fs::create_dir(d.path().join(dir)).unwrap();
            fs::write(d.path().join(dir).join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(port_in(d.path(), hako_proto::PORT_NAME).as_deref(), Some("vport0p1"));
        assert_eq!(port_in(d.path(), "nope"), None);
    }
}
