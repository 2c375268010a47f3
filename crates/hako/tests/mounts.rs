//! End-to-end tests of the container's filesystem: pivot_root and `--no-pivot`, readonly root,
//! rootfsPropagation, bind/rbind/tmpfs mounts with their options, the special filesystems
//! (proc, sysfs, mqueue, devpts, cgroup), maskedPaths and readonlyPaths.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

fn mounts_inside(out: &str) -> Vec<MountInfo> {
    parse_mountinfo(out)
}

fn find<'a>(mounts: &'a [MountInfo], target: &str) -> &'a MountInfo {
    mounts.iter().rev().find(|m| m.target == target).unwrap_or_else(|| panic!("no mount at {target} in {mounts:#?}"))
}

/// A host directory outside any bundle, unmounted and removed on drop.
struct HostDir {
    dir: tempfile::TempDir,
    mounted: Vec<PathBuf>,
}

impl HostDir {
    fn new() -> HostDir {
        HostDir { dir: tempfile::Builder::new().prefix("hako-e2e-host-").tempdir().expect("tempdir"), mounted: vec![] }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn mount_tmpfs(&mut self, at: &Path) {
        nix::mount::mount(Some("tmpfs"), at, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=1m"))
            .expect("mount tmpfs on the host");
        self.mounted.push(at.to_path_buf());
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        for m in self.mounted.drain(..).rev() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[test]
fn pivot_root_and_no_pivot_confine_the_process_to_the_rootfs() {
    let rt = Runtime::new();
    for extra in [&[][..], &["--no-pivot"][..]] {
        let b = Bundle::with_tag("pivot")
            .sh("cat /marker; ls /etc; test -e /etc/debian_version && echo HOST-ROOT-VISIBLE; \
             awk '$5==\"/\"' /proc/self/mountinfo | wc -l");
        fs::write(b.rootfs().join("marker"), "in-rootfs\n").expect("marker");
        let out = rt.run_id(b.id(), &b, extra).expect_ok();
        assert!(out.stdout.starts_with("in-rootfs\n"), "{extra:?}: {out}");
        assert!(!out.stdout.contains("HOST-ROOT-VISIBLE"), "{extra:?}: {out}");
        assert!(!out.stdout.contains("debian_version"), "{extra:?}: {out}");
        assert_eq!(out.stdout.lines().last(), Some("1"), "one mount at / expected, {extra:?}: {out}");
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
    }
}

#[test]
fn readonly_root_refuses_writes() {
    let rt = Runtime::new();
    let b = Bundle::with_tag("roroot").sh("touch /newfile 2>&1; awk '$5==\"/\"' /proc/self/mountinfo");
    let out = rt.run(&b);
    assert!(out.stdout.contains("Read-only file system"), "{out}");
    let root = find(&mounts_inside(&out.stdout), "/").clone();
    assert!(root.has("ro"), "{root:?}");
    assert!(!b.rootfs().join("newfile").exists());

    let b = Bundle::with_tag("rwroot").writable().sh("touch /newfile && echo wrote");
    let out = rt.run(&b).expect_ok();
    assert_eq!(out.stdout, "wrote\n");
    assert!(b.rootfs().join("newfile").exists(), "a write to a writable root must reach the rootfs");
}

#[test]
fn rootfs_propagation_is_applied() {
    let rt = Runtime::new();
    // What the container sees on its own "/" (as crun and youki do; "slave" shows nothing here
    // because the host's root mount is private).
    for (prop, want) in [("shared", Some("shared:")), ("private", None), ("unbindable", Some("unbindable"))] {
        let b = Bundle::with_tag("rprop")
            .set("/linux/rootfsPropagation", json!(prop))
            .sh("awk '$5==\"/\"' /proc/self/mountinfo");
        let out = rt.run(&b).expect_ok();
        let root = find(&mounts_inside(&out.stdout), "/").clone();
        match want {
            Some(p) => assert!(root.optional.iter().any(|o| o.starts_with(p)), "{prop}: {root:?}"),
            None => assert!(root.optional.is_empty(), "{prop}: {root:?}"),
        }
    }
}

#[test]
fn bind_mounts_read_only_and_read_write() {
    let host = HostDir::new();
    fs::write(host.path().join("hello"), "from-host\n").expect("write host file");
    let src = host.path().to_string_lossy().into_owned();
    let b = Bundle::with_tag("bind")
        .mount("/ro", "bind", &src, &["bind", "ro"])
        .mount("/rw", "none", &src, &["bind", "rw"])
        .sh("cat /ro/hello; touch /ro/x 2>&1; echo inside > /rw/written; cat /proc/self/mountinfo");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    assert!(out.stdout.starts_with("from-host\n"), "{out}");
    assert!(out.stdout.contains("Read-only file system"), "{out}");
    let m = mounts_inside(&out.stdout);
    assert!(find(&m, "/ro").has("ro"), "{:?}", find(&m, "/ro"));
    assert!(find(&m, "/rw").has("rw"), "{:?}", find(&m, "/rw"));
    assert_eq!(fs::read_to_string(host.path().join("written")).expect("written via /rw"), "inside\n");
    assert!(!host.path().join("x").exists());
}

#[test]
fn rbind_carries_submounts_and_bind_does_not() {
    let mut host = HostDir::new();
    let sub = host.path().join("sub");
    fs::create_dir(&sub).expect("mkdir sub");
    host.mount_tmpfs(&sub);
    fs::write(sub.join("in-submount"), "x").expect("write in submount");
    let src = host.path().to_string_lossy().into_owned();
    let b = Bundle::with_tag("rbind")
        .mount("/recursive", "bind", &src, &["rbind"])
        .mount("/plain", "bind", &src, &["bind"])
        .sh("ls /recursive/sub; echo --; ls /plain/sub");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    assert_eq!(out.stdout, "in-submount\n--\n", "{out}");
}

#[test]
fn tmpfs_with_size_mode_and_flags() {
    let b = Bundle::with_tag("tmpfs")
        .mount("/scratch", "tmpfs", "tmpfs", &["size=1m", "mode=1770", "nosuid", "nodev", "noexec"])
        .sh("stat -c %a /scratch; grep ' /scratch ' /proc/self/mountinfo; \
             cp /bin/busybox /scratch/bb && /scratch/bb true 2>/dev/null || echo exec-refused; \
             dd if=/dev/zero of=/scratch/big bs=64k count=64 2>&1 | grep -c 'No space left'");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("1770"), "{out}");
    let m = parse_mountinfo(lines.next().unwrap_or_default());
    let m = m.first().unwrap_or_else(|| panic!("no /scratch mount: {out}"));
    assert_eq!(m.fstype, "tmpfs");
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(m.has(o), "{o} missing: {m:?}");
    }
    assert!(m.has_super("size=1024k"), "{m:?}");
    assert!(m.has_super("mode=1770"), "{m:?}");
    assert_eq!(lines.next(), Some("exec-refused"), "{out}");
    assert_eq!(lines.next(), Some("1"), "size=1m not enforced: {out}");
}

#[test]
fn special_filesystems_are_mounted() {
    let b = Bundle::with_tag("special").sh("cat /proc/self/mountinfo");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let m = mounts_inside(&out.stdout);
    let proc_ = find(&m, "/proc");
    assert_eq!(proc_.fstype, "proc");
    let sys = find(&m, "/sys");
    assert_eq!(sys.fstype, "sysfs");
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(sys.has(o), "/sys lacks {o}: {sys:?}");
    }
    let mq = find(&m, "/dev/mqueue");
    assert_eq!(mq.fstype, "mqueue");
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(mq.has(o), "/dev/mqueue lacks {o}: {mq:?}");
    }
    let pts = find(&m, "/dev/pts");
    assert_eq!(pts.fstype, "devpts");
    for o in ["gid=5", "mode=620", "ptmxmode=666"] {
        assert!(pts.has_super(o), "/dev/pts lacks {o}: {pts:?}");
    }
    let shm = find(&m, "/dev/shm");
    assert_eq!(shm.fstype, "tmpfs");
    assert!(shm.has_super("size=65536k"), "{shm:?}");
    let dev = find(&m, "/dev");
    assert_eq!(dev.fstype, "tmpfs");
    assert!(dev.has("nosuid") && dev.has_super("mode=755"), "{dev:?}");
    // The cgroup mount: one read-only cgroup hierarchy per v1 controller of the host.
    let memory = find(&m, "/sys/fs/cgroup/memory");
    assert_eq!(memory.fstype, "cgroup", "{memory:?}");
    assert!(memory.has("ro"), "{memory:?}");
    assert!(memory.has_super("memory"), "{memory:?}");
    for ctrl in ["cpu", "cpuset", "pids", "freezer", "devices", "blkio"] {
        assert!(
            m.iter().any(|x| x.fstype == "cgroup" && x.has_super(ctrl)),
            "no {ctrl} hierarchy under /sys/fs/cgroup: {out}"
        );
    }
}

#[test]
fn mount_propagation_flags_per_mount() {
    let host = HostDir::new();
    let src = host.path().to_string_lossy().into_owned();
    let b = Bundle::with_tag("mprop")
        .mount("/shared", "tmpfs", "tmpfs", &["shared"])
        .mount("/private", "bind", &src, &["rbind", "rprivate"])
        .sh("cat /proc/self/mountinfo");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let m = mounts_inside(&out.stdout);
    assert!(find(&m, "/shared").optional.iter().any(|o| o.starts_with("shared:")), "{:?}", find(&m, "/shared"));
    assert!(find(&m, "/private").optional.is_empty(), "{:?}", find(&m, "/private"));
}

#[test]
fn masked_paths_hide_files_and_directories() {
    let b = Bundle::with_tag("masked")
        .push("/linux/maskedPaths", json!("/secret-dir"))
        .push("/linux/maskedPaths", json!("/secret-file"))
        .sh("wc -c < /proc/keys; ls -A /proc/acpi | wc -l; ls -A /sys/firmware | wc -l; \
             ls -A /secret-dir | wc -l; wc -c < /secret-file; \
             echo x > /secret-file 2>/dev/null; wc -c < /secret-file");
    fs::create_dir(b.rootfs().join("secret-dir")).expect("mkdir");
    fs::write(b.rootfs().join("secret-dir/a"), "hidden").expect("write");
    fs::write(b.rootfs().join("secret-file"), "hidden\n").expect("write");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let v: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(v, ["0", "0", "0", "0", "0", "0"], "{out}");
    assert_eq!(fs::read_to_string(b.rootfs().join("secret-file")).expect("read"), "hidden\n");
}

#[test]
fn readonly_paths_refuse_writes() {
    let b = Bundle::with_tag("ropaths")
        .writable()
        .push("/linux/readonlyPaths", json!("/ro-dir"))
        .sh("echo 1 > /proc/sys/kernel/shm_rmid_forced 2>&1; touch /ro-dir/x 2>&1; \
             touch /rw-file && echo rw-ok; cat /ro-dir/keep");
    fs::create_dir(b.rootfs().join("ro-dir")).expect("mkdir");
    fs::write(b.rootfs().join("ro-dir/keep"), "kept\n").expect("write");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    assert_eq!(
        out.all().matches("Read-only file system").count(),
        2,
        "both /proc/sys and /ro-dir must be read-only: {out}"
    );
    assert!(out.stdout.contains("rw-ok\n"), "{out}");
    assert!(out.stdout.ends_with("kept\n"), "{out}");
    assert!(!b.rootfs().join("ro-dir/x").exists());
}
