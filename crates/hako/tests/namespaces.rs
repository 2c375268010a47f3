//! End-to-end tests of namespaces as the container sees them: pid, uts (hostname and
//! domainname), ipc, network, mount, user (uid/gid mappings), cgroup, time, and joining the
//! namespaces of another container by path.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(10);

fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}")).expect("read host namespace link").to_string_lossy().into_owned()
}

/// Prints `kind=link` for each namespace of the container's process.
const NS_PROBE: &str = "for n in ipc uts net mnt pid cgroup user; do echo $n=$(readlink /proc/self/ns/$n); done";

fn ns_map(out: &str) -> std::collections::HashMap<String, String> {
    out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn pid_namespace_makes_the_process_pid_1() {
    let b = Bundle::with_tag("pidns").sh("echo $$; ls /proc | grep -c '^[0-9][0-9]*$'");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("1"), "{out}");
    let count: usize = lines.get(1).and_then(|l| l.trim().parse().ok()).expect("process count");
    assert!(count <= 3, "the container sees host processes: {count}");
}

#[test]
fn new_namespaces_differ_from_the_host_and_omitted_ones_are_shared() {
    let b = Bundle::with_tag("nsnew").namespace("cgroup").sh(NS_PROBE);
    let rt = Runtime::new();
    let seen = ns_map(&rt.run(&b).expect_ok().stdout);
    for kind in ["ipc", "uts", "net", "mnt", "pid", "cgroup"] {
        assert_ne!(seen.get(kind), Some(&host_ns(kind)), "{kind} namespace is the host's");
        assert!(seen.get(kind).is_some_and(|v| v.starts_with(&format!("{kind}:["))), "{seen:?}");
    }
    assert_eq!(seen.get("user"), Some(&host_ns("user")), "no user namespace was asked for");

    let b = Bundle::with_tag("nsshared")
        .without_namespace("ipc")
        .without_namespace("uts")
        .without_namespace("network")
        .without_namespace("pid")
        .set("/hostname", serde_json::Value::Null)
        .sh(NS_PROBE);
    let seen = ns_map(&rt.run(&b).expect_ok().stdout);
    for kind in ["ipc", "uts", "net", "pid", "cgroup"] {
        assert_eq!(seen.get(kind), Some(&host_ns(kind)), "{kind} should be shared with the host");
    }
    assert_ne!(seen.get("mnt"), Some(&host_ns("mnt")));
}

#[test]
fn uts_namespace_sets_hostname() {
    let b = Bundle::with_tag("uts").set("/hostname", json!("hako-test-host")).sh("hostname; uname -n");
    let rt = Runtime::new();
    let before = fs::read_to_string("/proc/sys/kernel/hostname").expect("host hostname");
    let out = rt.run(&b).expect_ok();
    assert_eq!(out.stdout, "hako-test-host\nhako-test-host\n");
    assert_eq!(fs::read_to_string("/proc/sys/kernel/hostname").expect("host hostname"), before);
}

#[test]
fn uts_namespace_sets_domainname() {
    let b = Bundle::with_tag("domain").set("/domainname", json!("example.org")).sh("cat /proc/sys/kernel/domainname");
    let rt = Runtime::new();
    let before = fs::read_to_string("/proc/sys/kernel/domainname").expect("host domainname");
    let out = rt.run(&b).expect_ok();
    assert_eq!(out.stdout, "example.org\n");
    assert_eq!(fs::read_to_string("/proc/sys/kernel/domainname").expect("host domainname"), before);
}

#[test]
fn network_namespace_has_only_loopback() {
    let b = Bundle::with_tag("netns").sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let ifaces: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(ifaces, ["lo"], "{out}");
}

#[test]
fn ipc_namespace_hides_host_message_queues() {
    // A System V message queue made on the host must not be visible inside.
    // SAFETY: msgget with IPC_PRIVATE creates a new queue; msgctl(IPC_RMID) removes it below.
    let qid = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    assert!(qid >= 0, "msgget: {}", std::io::Error::last_os_error());
    let b = Bundle::with_tag("ipcns").sh("cat /proc/sysvipc/msg | tail -n +2 | wc -l");
    let rt = Runtime::new();
    let out = rt.run(&b);
    // SAFETY: removes the queue created above; a null buf is allowed for IPC_RMID.
    unsafe { libc::msgctl(qid, libc::IPC_RMID, std::ptr::null_mut()) };
    assert_eq!(out.expect_ok().stdout.trim(), "0");
}

#[test]
fn mount_namespace_is_private() {
    let b = Bundle::with_tag("mntns").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_start(&b);
    let inside = parse_mountinfo(&rt.exec_sh(b.id(), "cat /proc/self/mountinfo"));
    let root = inside.iter().find(|m| m.target == "/").expect("a / mount inside");
    assert!(root.root.ends_with("/rootfs"), "the container root is not the bundle rootfs: {root:?}");
    assert!(inside.iter().any(|m| m.target == "/proc" && m.fstype == "proc"));
    // None of the container's mounts shows up on the host.
    let canon = fs::canonicalize(b.rootfs()).expect("canonical rootfs");
    let leaked: Vec<_> =
        host_mounts().into_iter().filter(|m| std::path::Path::new(&m.target).starts_with(&canon)).collect();
    assert!(leaked.is_empty(), "container mounts visible on the host: {leaked:?}");
    rt.delete_force(b.id()).expect_ok();
}

#[test]
fn user_namespace_with_mappings() {
    let b = Bundle::with_tag("userns")
        .namespace("user")
        .set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]))
        .set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 200000, "size": 65536}]))
        .sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; sleep 1000");
    // The rootfs belongs to the host's root, unmapped in the container: the harness keeps the
    // bundle world-readable so the mapped root can still use it.
    let rt = Runtime::new();
    let created = rt.create_start(&b);
    let out = created.wait_stdout("\n0\n0\n", T);
    let mut words = out.split_whitespace();
    let uid_map: Vec<&str> = words.by_ref().take(3).collect();
    let gid_map: Vec<&str> = words.by_ref().take(3).collect();
    assert_eq!(uid_map, ["0", "100000", "65536"], "{out}");
    assert_eq!(gid_map, ["0", "200000", "65536"], "{out}");
    // From the host, the container's root is uid 100000 / gid 200000.
    let pid = rt.pid(b.id());
    let status = parse_status(&fs::read_to_string(format!("/proc/{pid}/status")).expect("status"));
    assert_eq!(status["Uid"].split_whitespace().next(), Some("100000"), "{status:?}");
    assert_eq!(status["Gid"].split_whitespace().next(), Some("200000"), "{status:?}");
    assert_ne!(fs::read_link(format!("/proc/{pid}/ns/user")).expect("user ns").to_string_lossy(), host_ns("user"));
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn cgroup_namespace_shows_root_cgroup() {
    let b = Bundle::with_tag("cgns").namespace("cgroup").sh("cat /proc/self/cgroup");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    assert!(!out.stdout.trim().is_empty());
    for line in out.stdout.lines() {
        assert!(line.ends_with(":/"), "cgroup path not '/' in a cgroup namespace: {line}");
    }
    // Without the namespace, the container sees its cgroupsPath.
    let b = Bundle::with_tag("nocgns").sh("cat /proc/self/cgroup");
    let out = rt.run(&b).expect_ok();
    let want = format!(":{}", b.cgroup_path());
    assert!(
        out.stdout.lines().any(|l| l.contains(":memory:") && l.ends_with(&want)),
        "expected the memory cgroup {want}: {out}"
    );
}

#[test]
fn time_namespace_applies_offsets() {
    if fs::metadata("/proc/self/ns/time").is_err() {
        skip("this kernel has no time namespaces");
        return;
    }
    let offset = 10 * 365 * 24 * 3600i64;
    let b = Bundle::with_tag("timens")
        .namespace("time")
        .set(
            "/linux/timeOffsets",
            json!({"monotonic": {"secs": offset, "nanosecs": 0}, "boottime": {"secs": offset, "nanosecs": 0}}),
        )
        .sh("cut -d. -f1 /proc/uptime; readlink /proc/self/ns/time");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let mut lines = out.stdout.lines();
    let uptime: i64 = lines.next().and_then(|l| l.trim().parse().ok()).expect("uptime");
    assert!(uptime >= offset, "boottime offset not applied: uptime {uptime}");
    assert_ne!(lines.next().map(String::from), Some(host_ns("time")));
}

#[test]
fn joins_namespaces_of_another_container_by_path() {
    let rt = Runtime::new();
    let a = Bundle::with_tag("nsowner").set("/hostname", json!("alpha-host")).args(&["sleep", "1000"]);
    rt.create_start(&a);
    let pid = rt.pid(a.id());
    let b = Bundle::with_tag("nsjoiner")
        .with(|c| {
            let ns = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
            for n in ns.iter_mut() {
                match n["type"].as_str() {
                    Some("uts") => n["path"] = json!(format!("/proc/{pid}/ns/uts")),
                    Some("network") => n["path"] = json!(format!("/proc/{pid}/ns/net")),
                    Some("ipc") => n["path"] = json!(format!("/proc/{pid}/ns/ipc")),
                    _ => {}
                }
            }
        })
        .set("/hostname", serde_json::Value::Null)
        .sh("hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc");
    let out = rt.run(&b).expect_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let theirs =
        |k: &str| fs::read_link(format!("/proc/{pid}/ns/{k}")).expect("ns link").to_string_lossy().into_owned();
    assert_eq!(lines.first().copied(), Some("alpha-host"), "{out}");
    assert_eq!(lines.get(1).map(|s| s.to_string()), Some(theirs("net")), "{out}");
    assert_eq!(lines.get(2).map(|s| s.to_string()), Some(theirs("ipc")), "{out}");
    // Joining must not have changed the owner's hostname.
    assert_eq!(rt.exec_sh(a.id(), "hostname").trim(), "alpha-host");
    rt.delete_force(a.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

/// A mount namespace made by `unshare --mount=FILE` and kept by its bind-mounted file; unmounted on drop.
struct PersistentMountNs {
    dir: tempfile::TempDir,
}

impl PersistentMountNs {
    fn new() -> PersistentMountNs {
        let dir = tempfile::Builder::new().prefix("hako-e2e-mntns-").tempdir().expect("tempdir");
        let d = dir.path().to_string_lossy().into_owned();
        // A namespace file can only be bind-mounted on a private mount.
        let script = format!(
            "mount --bind {d} {d} && mount --make-private {d} && touch {d}/mnt && unshare --mount={d}/mnt true"
        );
        let st = std::process::Command::new("sh").arg("-c").arg(&script).status().expect("sh");
        assert!(st.success(), "could not make a persistent mount namespace with unshare(1)");
        PersistentMountNs { dir }
    }

    fn file(&self) -> std::path::PathBuf {
        self.dir.path().join("mnt")
    }

    /// `mnt:[INODE]`, as /proc/PID/ns/mnt of a process in it reads.
    fn link(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        format!("mnt:[{}]", fs::metadata(self.file()).expect("stat ns file").ino())
    }
}

impl Drop for PersistentMountNs {
    fn drop(&mut self) {
        let d = self.dir.path().to_string_lossy().into_owned();
        let _ = std::process::Command::new("sh").arg("-c").arg(format!("umount {d}/mnt; umount {d}")).status();
    }
}

#[test]
fn joined_mount_namespace_still_gets_the_rootfs_and_mounts() {
    // What crun does: the rootfs, the config's mounts and pivot_root happen in the joined namespace.
    let ns = PersistentMountNs::new();
    let b = Bundle::with_tag("joinmnt")
        .with(|c| {
            for n in c["linux"]["namespaces"].as_array_mut().expect("namespaces") {
                if n["type"] == "mount" {
                    n["path"] = json!(ns.file());
                }
            }
        })
        .with_out_dir()
        .sh("readlink /proc/self/ns/mnt; cat /proc/self/mountinfo; ls /; echo hi > /out/x");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next().map(str::to_string), Some(ns.link()), "not in the joined namespace: {out}");
    let inside = parse_mountinfo(&out.stdout);
    let root = inside.iter().find(|m| m.target == "/").expect("a / mount inside");
    assert!(root.root.ends_with("/rootfs"), "the container root is not the bundle rootfs: {out}");
    assert!(inside.iter().any(|m| m.target == "/proc" && m.fstype == "proc"), "{out}");
    assert!(inside.iter().any(|m| m.target == "/dev" && m.fstype == "tmpfs"), "{out}");
    assert!(out.stdout.lines().any(|l| l == "busybox" || l == "bin"), "{out}");
    assert_eq!(b.read_out("x").trim(), "hi");
    // Nothing leaked into the host's own namespace.
    let canon = fs::canonicalize(b.rootfs()).expect("canonical rootfs");
    let leaked: Vec<_> =
        host_mounts().into_iter().filter(|m| std::path::Path::new(&m.target).starts_with(&canon)).collect();
    assert!(leaked.is_empty(), "container mounts visible on the host: {leaked:?}");
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

/// The default config without a mount namespace and without what needs one (mounts, masked and
/// read-only paths, a read-only root): what crun and hako both run.
/// The host's mount targets that a container without a mount namespace could add: everything but the
/// scratch and state trees where other tests running at the same time mount in the host's namespace
/// (engines' overlays and shm under /tmp and /var, network namespaces under /run), plus anything under
/// `bundle`.
fn host_mount_targets(bundle: &std::path::Path) -> Vec<String> {
    let busy = ["/tmp", "/var", "/run"];
    host_mounts()
        .into_iter()
        .map(|m| m.target)
        .filter(|t| {
            let p = std::path::Path::new(t);
            p.starts_with(bundle) || !busy.iter().any(|b| p.starts_with(b))
        })
        .collect()
}

fn bundle_without_mount_ns(tag: &str) -> Bundle {
    Bundle::with_tag(tag)
        .without_namespace("mount")
        .set("/mounts", json!([]))
        .set("/linux/maskedPaths", json!([]))
        .set("/linux/readonlyPaths", json!([]))
        .writable()
}

#[test]
fn no_mount_namespace_runs_chrooted_in_the_host_namespace_and_leaves_no_mounts() {
    // As crun does: the container shares the host's mount namespace and is chrooted into the rootfs.
    // (Without /proc in the rootfs the process cannot look at itself: we look from the host.) runc 1.1
    // cannot run this config at all: it closes fds through /proc/self/fd, which this rootfs lacks.
    if !testing_hako() && runtime().ends_with("runc") {
        eprintln!("runc needs /proc in the rootfs to run a container without a mount namespace");
        return;
    }
    let b = bundle_without_mount_ns("nomntns").sh("ls /; sleep 1000");
    let targets = || host_mount_targets(b.path());
    let before = targets();
    let rt = Runtime::new();
    let created = rt.create_start(&b);
    let text = created.wait_stdout("tmp", T);
    let listed: Vec<&str> = text.lines().collect();
    assert!(listed.contains(&"bin") && listed.contains(&"etc") && !listed.contains(&"usr"), "{text}");
    let canon = fs::canonicalize(b.rootfs()).expect("canonical rootfs");
    let pid = rt.pid(b.id());
    let seen = |pid: i32| {
        let ns = fs::read_link(format!("/proc/{pid}/ns/mnt")).expect("ns link").to_string_lossy().into_owned();
        (ns, fs::read_link(format!("/proc/{pid}/root")).expect("root link"))
    };
    assert_eq!(seen(pid), (host_ns("mnt"), canon.clone()), "the container process");
    // exec gets the same view.
    let pidfile = b.path().join("exec.pid");
    rt.cmd(&["exec", "--detach", "--pid-file", &pidfile.to_string_lossy(), b.id(), "sleep", "1000"]).expect_ok();
    let epid: i32 = fs::read_to_string(&pidfile).expect("pid file").trim().parse().expect("pid");
    assert_eq!(seen(epid), (host_ns("mnt"), canon), "the exec process");
    let e = rt.exec_sh(b.id(), "ls /");
    assert!(e.lines().any(|l| l == "bin") && !e.lines().any(|l| l == "usr"), "{e}");
    assert_eq!(before, targets(), "the host's mount table changed while the container ran");
    rt.delete_force(b.id()).expect_ok();
    assert_eq!(before, targets(), "the host's mount table changed");
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn no_mount_namespace_refuses_what_would_mount_on_the_host() {
    // Mounts made without a mount namespace would land in the host's mount table and outlive the
    // container (crun 1.8 leaves them there). runc refuses masked and read-only paths; hako refuses
    // every field that needs a mount, naming it.
    if !testing_hako() {
        eprintln!("hako's policy: runc and crun mount on the host instead");
        return;
    }
    type Edit = fn(Bundle) -> Bundle;
    let cases: [(&str, Edit, &str); 5] = [
        ("mounts", |b| b.mount("/mnt", "tmpfs", "tmpfs", &[]), "mounts"),
        ("masked", |b| b.set("/linux/maskedPaths", json!(["/proc/kcore"])), "linux.maskedPaths"),
        ("rdonly", |b| b.set("/linux/readonlyPaths", json!(["/proc/sys"])), "linux.readonlyPaths"),
        ("roroot", |b| b.set("/root/readonly", json!(true)), "root.readonly"),
        (
            "devices",
            |b| b.set("/linux/devices", json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}])),
            "linux.devices",
        ),
    ];
    for (tag, edit, field) in cases {
        let b = edit(bundle_without_mount_ns(&format!("nomnt{tag}")));
        let rt = Runtime::new();
        let before = host_mount_targets(b.path());
        let out = rt.create(&b).expect_fail();
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
        out.expect_msg(&[field, "mount namespace"]);
        assert_eq!(before, host_mount_targets(b.path()), "the host's mount table changed ({tag})");
    }
}
