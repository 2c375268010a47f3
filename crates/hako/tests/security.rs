//! End-to-end tests of the process's security settings and of the safety rules learned from
//! runc's CVEs: sysctl, rlimits, oomScoreAdj, scheduler, ioPriority, the five capability sets,
//! noNewPrivileges, user/group/additionalGids, umask, seccomp, the sealed init binary
//! (CVE-2019-5736), no leaked file descriptors and checked working directory (CVE-2024-21626),
//! `--preserve-fds`, and mount targets that never follow symlinks out of the rootfs.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

fn status_of(out: &str) -> std::collections::HashMap<String, String> {
    parse_status(out)
}

fn hex(v: &str) -> u64 {
    u64::from_str_radix(v.trim(), 16).unwrap_or_else(|e| panic!("bad hex {v:?}: {e}"))
}

#[test]
fn sysctls_are_set_in_the_container_namespaces_only() {
    let host_fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host ip_forward");
    let host_shm = fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").expect("host shm_rmid_forced");
    let b = Bundle::with_tag("sysctl")
        .set("/linux/sysctl", json!({"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"}))
        .sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    assert_eq!(out.stdout, "1\n1\n");
    assert_eq!(fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read"), host_fwd);
    assert_eq!(fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").expect("read"), host_shm);
}

/// Puts the host's value of a sysctl back if a runtime under test changed it.
struct RestoreSysctl(&'static str, String);

impl Drop for RestoreSysctl {
    fn drop(&mut self) {
        if fs::read_to_string(self.0).ok().as_deref() != Some(self.1.as_str()) {
            let _ = fs::write(self.0, &self.1);
        }
    }
}

#[test]
fn sysctls_that_would_reach_the_host_are_refused() {
    const BURST: &str = "/proc/sys/kernel/printk_ratelimit_burst";
    let host = fs::read_to_string(BURST).expect("host printk_ratelimit_burst");
    let _restore = RestoreSysctl(BURST, host.clone());
    let other = if host.trim() == "17" { "18" } else { "17" };
    let host_oom = fs::read_to_string("/proc/self/oom_score_adj").expect("oom_score_adj");
    let cases = [
        // Not namespaced: it would be the host's value.
        (
            Bundle::with_tag("sysctlhost").set("/linux/sysctl", json!({"kernel.printk_ratelimit_burst": other})),
            "kernel.printk_ratelimit_burst",
        ),
        // Keys that are paths, not sysctl names.
        (Bundle::with_tag("sysctldots").writable().set("/linux/sysctl", json!({"../../x": "1"})), "../../x"),
        (
            Bundle::with_tag("sysctlproc").set("/linux/sysctl", json!({".proc.self.oom_score_adj": "500"})),
            ".proc.self.oom_score_adj",
        ),
        (
            Bundle::with_tag("sysctlnetdots").set("/linux/sysctl", json!({"net/../../self/oom_score_adj": "500"})),
            "net/../../self/oom_score_adj",
        ),
        // Namespaced keys without the namespace of their own.
        (
            Bundle::with_tag("sysctlnetns")
                .without_namespace("network")
                .set("/linux/sysctl", json!({"net.ipv4.ip_forward": "1"})),
            "net.ipv4.ip_forward",
        ),
        (
            Bundle::with_tag("sysctlipcns")
                .without_namespace("ipc")
                .set("/linux/sysctl", json!({"kernel.shm_rmid_forced": "1"})),
            "kernel.shm_rmid_forced",
        ),
        (Bundle::with_tag("sysctlhostname").set("/linux/sysctl", json!({"kernel.hostname": "x"})), "kernel.hostname"),
        // A network namespace joined by path that is the host's own (this test's).
        (
            Bundle::with_tag("sysctlhostnetns")
                .without_namespace("network")
                .push(
                    "/linux/namespaces",
                    json!({"type": "network", "path": format!("/proc/{}/ns/net", std::process::id())}),
                )
                .set("/linux/sysctl", json!({"net.ipv4.ip_forward": "1"})),
            "net.ipv4.ip_forward",
        ),
    ];
    let rt = Runtime::new();
    for (b, key) in &cases {
        let out = rt.run(b);
        assert!(!out.ok(), "linux.sysctl {key} was accepted: {out}");
        if testing_hako() {
            out.expect_msg(&["linux.sysctl", key]);
        }
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
        assert!(!b.rootfs().join("x").exists(), "{key}: a file was written into the rootfs");
    }
    assert_eq!(fs::read_to_string(BURST).expect("read"), host, "the host's kernel.printk_ratelimit_burst changed");
    assert_eq!(fs::read_to_string("/proc/self/oom_score_adj").expect("read"), host_oom);
}

#[test]
fn namespaced_sysctls_in_both_spellings_are_set() {
    // The slash form is what sysctl(8) takes for names whose parts hold a dot (VLAN interfaces); runc 1.1 refuses
    // it, hako (like crun) accepts it.
    if !testing_hako() {
        return;
    }
    let b = Bundle::with_tag("sysctlslash")
        .set("/linux/sysctl", json!({"net/ipv4/ip_forward": "1", "kernel.domainname": "example.org"}))
        .sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/domainname");
    let rt = Runtime::new();
    assert_eq!(rt.run(&b).expect_ok().stdout, "1\nexample.org\n");
}

#[test]
fn net_sysctl_in_a_joined_private_network_namespace_is_set() {
    let mut holder = std::process::Command::new("unshare")
        .args(["--net", "sleep", "1000"])
        .spawn()
        .expect("start a process in a new network namespace (unshare)");
    let ns = format!("/proc/{}/ns/net", holder.id());
    // unshare execs sleep once the namespace exists.
    let deadline = std::time::Instant::now() + T;
    while fs::read_link(&ns).ok() == fs::read_link("/proc/self/ns/net").ok() {
        assert!(std::time::Instant::now() < deadline, "unshare did not make a network namespace");
        std::thread::sleep(Duration::from_millis(5));
    }
    let b = Bundle::with_tag("sysctljoinednet")
        .without_namespace("network")
        .push("/linux/namespaces", json!({"type": "network", "path": ns}))
        .set("/linux/sysctl", json!({"net.ipv4.ip_forward": "1"}))
        .args(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    let rt = Runtime::new();
    let out = rt.run(&b);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.expect_ok().stdout, "1\n");
}

#[test]
fn ids_the_kernel_cannot_apply_are_refused_at_create() {
    let cases = [
        (
            "uid",
            Bundle::with_tag("uidmax").sh("id -u; id -g; id -G").set("/process/user/uid", json!(4294967295u32)),
            "process.user.uid",
        ),
        (
            "gid",
            Bundle::with_tag("gidmax").sh("id -u; id -g; id -G").set("/process/user/gid", json!(4294967295u32)),
            "process.user.gid",
        ),
        (
            "additionalGids",
            Bundle::with_tag("agidmax")
                .sh("id -u; id -g; id -G")
                .set("/process/user/additionalGids", json!([10, 4294967295u32])),
            "process.user.additionalGids",
        ),
        (
            "unmapped uid",
            Bundle::with_tag("uidunmapped")
                .sh("id -u; id -g; id -G")
                .namespace("user")
                .set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 1000}]))
                .set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 200000, "size": 65536}]))
                .set("/process/user/uid", json!(5000)),
            "process.user.uid",
        ),
        (
            "unmapped additional gid",
            Bundle::with_tag("gidunmapped")
                .sh("id -u; id -g; id -G")
                .namespace("user")
                .set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]))
                .set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 200000, "size": 1000}]))
                .set("/process/user/additionalGids", json!([70000])),
            "process.user.additionalGids",
        ),
    ];
    let rt = Runtime::new();
    for (what, b, field) in &cases {
        let out = rt.run(b);
        assert!(!out.ok(), "{what}: the process ran: {out}");
        if testing_hako() {
            out.expect_msg(&[field]);
        }
        assert!(!out.stdout.lines().any(|l| l == "0"), "{what}: the process ran as root: {out}");
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
    }
}

#[test]
fn exec_with_uid_minus_one_is_refused() {
    let b = Bundle::with_tag("execuidmax").sh("sleep 1000");
    let rt = Runtime::new();
    rt.create_start(&b).expect_ok();
    let process = json!({"user": {"uid": 4294967295u32, "gid": 0}, "args": ["id", "-u"], "cwd": "/",
                         "env": ["PATH=/bin"]});
    let pj = b.path().join("process-uidmax.json");
    fs::write(&pj, process.to_string()).expect("write process.json");
    let out = rt.cmd(&["exec", "--process", pj.to_str().expect("utf-8"), b.id()]);
    assert!(!out.ok() && !out.stdout.contains('0'), "exec as uid 4294967295 ran: {out}");
    if testing_hako() {
        out.expect_msg(&["process.user.uid", "4294967295"]);
    }
    rt.delete_force(b.id()).expect_ok();
}

#[test]
fn rlimits_are_applied() {
    let b = Bundle::with_tag("rlimit")
        .set(
            "/process/rlimits",
            json!([
                {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048},
                {"type": "RLIMIT_NPROC", "soft": 4096, "hard": 8192},
                {"type": "RLIMIT_CORE", "soft": 0, "hard": 1048576}
            ]),
        )
        .args(&["cat", "/proc/self/limits"]);
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let limit = |name: &str| -> (String, String) {
        let line = out.stdout.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {out}"));
        let v: Vec<&str> = line[name.len()..].split_whitespace().collect();
        (v[0].to_string(), v[1].to_string())
    };
    assert_eq!(limit("Max open files"), ("1024".into(), "2048".into()));
    assert_eq!(limit("Max processes"), ("4096".into(), "8192".into()));
    assert_eq!(limit("Max core file size"), ("0".into(), "1048576".into()));
}

#[test]
fn oom_score_adj_is_applied() {
    let b = Bundle::with_tag("oom").set("/process/oomScoreAdj", json!(500)).args(&["cat", "/proc/self/oom_score_adj"]);
    let rt = Runtime::new();
    assert_eq!(rt.run(&b).expect_ok().stdout, "500\n");
}

#[test]
fn scheduler_policy_and_nice_are_applied() {
    let b = Bundle::with_tag("sched")
        .set("/process/scheduler", json!({"policy": "SCHED_BATCH", "nice": 5}))
        .args(&["cat", "/proc/self/stat"]);
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let after = out.stdout.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after "(comm)" start at field 3: nice is field 19, policy field 41.
    assert_eq!(f.get(16).copied(), Some("5"), "nice: {out}");
    assert_eq!(f.get(38).copied(), Some("3"), "policy SCHED_BATCH=3: {out}");
}

#[test]
fn io_priority_is_applied() {
    let b = Bundle::with_tag("ioprio")
        .set("/process/ioPriority", json!({"class": "IOPRIO_CLASS_BE", "priority": 4}))
        .sh("ionice -p $$");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    assert_eq!(out.stdout.trim(), "best-effort: prio 4", "{out}");
}

const BND: &[&str] =
    &["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETUID", "CAP_SETGID"];
const PRM: &[&str] = &["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
const EFF: &[&str] = &["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
const INH: &[&str] = &["CAP_KILL", "CAP_NET_BIND_SERVICE"];
const AMB: &[&str] = &["CAP_NET_BIND_SERVICE"];

fn caps_bundle(tag: &str, uid: u32, nnp: bool) -> Bundle {
    Bundle::with_tag(tag)
        .set(
            "/process/capabilities",
            json!({"bounding": BND, "permitted": PRM, "effective": EFF, "inheritable": INH, "ambient": AMB}),
        )
        .set("/process/user", json!({"uid": uid, "gid": uid}))
        .set("/process/noNewPrivileges", json!(nnp))
        .args(&["cat", "/proc/self/status"])
}

fn caps_seen(rt: &Runtime, b: &Bundle) -> [u64; 5] {
    let out = rt.run(b).expect_ok();
    let s = status_of(&out.stdout);
    ["CapBnd", "CapInh", "CapPrm", "CapEff", "CapAmb"].map(|k| hex(&s[k]))
}

#[test]
fn capabilities_of_root_with_no_new_privileges() {
    // After execve, root gets pP' = (pI | pB) & old pP (no_new_privs) | pA, and pE' = pP'.
    let rt = Runtime::new();
    let [bnd, inh, prm, eff, amb] = caps_seen(&rt, &caps_bundle("capsroot", 0, true));
    assert_eq!(bnd, cap_mask(BND), "CapBnd");
    assert_eq!(inh, cap_mask(INH), "CapInh");
    assert_eq!(prm, cap_mask(PRM), "CapPrm");
    assert_eq!(eff, cap_mask(PRM), "CapEff");
    assert_eq!(amb, cap_mask(AMB), "CapAmb");
}

#[test]
fn capabilities_of_root_without_no_new_privileges() {
    // Without no_new_privs, root's file-capability emulation gives pP' = pI | pB.
    let rt = Runtime::new();
    let [bnd, inh, prm, eff, amb] = caps_seen(&rt, &caps_bundle("capsroot2", 0, false));
    assert_eq!(bnd, cap_mask(BND), "CapBnd");
    assert_eq!(inh, cap_mask(INH), "CapInh");
    assert_eq!(prm, cap_mask(BND) | cap_mask(INH), "CapPrm");
    assert_eq!(eff, prm, "CapEff");
    assert_eq!(amb, cap_mask(AMB), "CapAmb");
}

#[test]
fn capabilities_of_an_unprivileged_user_come_from_ambient() {
    // A non-root user keeps only the ambient set across execve: pP' = pE' = pA.
    let rt = Runtime::new();
    let [bnd, inh, prm, eff, amb] = caps_seen(&rt, &caps_bundle("capsuser", 1000, true));
    assert_eq!(bnd, cap_mask(BND), "CapBnd");
    assert_eq!(inh, cap_mask(INH), "CapInh");
    assert_eq!(prm, cap_mask(AMB), "CapPrm");
    assert_eq!(eff, cap_mask(AMB), "CapEff");
    assert_eq!(amb, cap_mask(AMB), "CapAmb");
}

#[test]
fn no_new_privileges_flag() {
    let rt = Runtime::new();
    for (nnp, want) in [(true, "1"), (false, "0")] {
        let b = Bundle::with_tag("nnp").set("/process/noNewPrivileges", json!(nnp)).args(&["cat", "/proc/self/status"]);
        let out = rt.run(&b).expect_ok();
        assert_eq!(status_of(&out.stdout).get("NoNewPrivs").map(String::as_str), Some(want), "nnp={nnp}");
    }
}

#[test]
fn user_group_and_additional_gids() {
    let b = Bundle::with_tag("user")
        .set("/process/user", json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 2000]}))
        .sh("id -u; id -g; grep '^Groups:' /proc/self/status");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(&lines[..2], ["1000", "1000"], "{out}");
    let groups: BTreeSet<&str> =
        lines.get(2).map(|l| l.trim_start_matches("Groups:").split_whitespace().collect()).unwrap_or_default();
    assert_eq!(groups, BTreeSet::from(["10", "2000"]), "{out}");
}

#[test]
fn umask_is_applied() {
    let b = Bundle::with_tag("umask")
        .writable()
        .set("/process/user", json!({"uid": 0, "gid": 0, "umask": 0o027}))
        .sh("umask; touch /tmp/f; stat -c %a /tmp/f");
    let rt = Runtime::new();
    assert_eq!(rt.run(&b).expect_ok().stdout, "0027\n640\n");
}

fn seccomp_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 1, "value": 0o777, "op": "SCMP_CMP_EQ"}]},
            {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 2, "value": 0o777, "op": "SCMP_CMP_EQ"}]}
        ]
    })
}

#[test]
fn seccomp_filter_with_errno_and_argument_rules() {
    let b = Bundle::with_tag("seccomp")
        .writable()
        .set("/linux/seccomp", seccomp_profile())
        .sh("grep '^Seccomp:' /proc/self/status; mkdir /tmp/d 2>&1; touch /tmp/f; \
             chmod 755 /tmp/f && echo chmod-755-ok; chmod 777 /tmp/f 2>&1; stat -c %a /tmp/f");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().map(|l| l.split_whitespace().collect::<Vec<_>>()), Some(vec!["Seccomp:", "2"]), "{out}");
    assert!(out.stdout.contains("Invalid cross-device link"), "mkdir must fail with EXDEV (18): {out}");
    assert!(out.stdout.contains("chmod-755-ok"), "{out}");
    assert!(out.stdout.contains("Operation not permitted"), "chmod 777 must fail with EPERM: {out}");
    assert_eq!(lines.last().copied(), Some("755"), "{out}");
}

#[test]
fn seccomp_with_no_new_privileges_is_loaded_just_before_exec() {
    // What init does after its capabilities are set (report Ready, open exec.fifo, mark fds close-on-exec) must
    // not be subject to the container's profile: with noNewPrivileges the filter goes on just before execve, as
    // runc does, so a profile need only allow what the program itself uses.
    // runc 1.1 opens exec.fifo after the filter (runc 1.2 moved the filter past it): the fifo's open is checked
    // for hako only.
    let mut denied = vec!["sendmsg", "sendto", "close_range"];
    if testing_hako() {
        denied.extend(["openat", "open"]);
    }
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    let b = Bundle::with_tag("seccomplate")
        .set("/process/noNewPrivileges", json!(true))
        .set("/linux/seccomp", profile)
        .args(&["true"]);
    let rt = Runtime::new();
    rt.run(&b).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn seccomp_is_absent_without_a_profile() {
    let b = Bundle::with_tag("noseccomp").args(&["cat", "/proc/self/status"]);
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    assert_eq!(status_of(&out.stdout).get("Seccomp").map(String::as_str), Some("0"));
}

// ---------------------------------------------------------------------------------------------
// CVE-2019-5736: the runtime binary on the host can never be reached from the container.
// ---------------------------------------------------------------------------------------------

#[test]
fn container_init_is_not_the_runtime_binary_on_disk() {
    let b = Bundle::with_tag("sealed").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let bin = fs::canonicalize(rt.bin()).expect("canonical runtime path");
    let before = fs::metadata(&bin).expect("stat runtime");
    rt.create(&b).expect_ok();
    let pid = rt.pid(b.id());
    // While created, the init process is the runtime's own code: it must run from a copy.
    let exe = format!("/proc/{pid}/exe");
    let meta = fs::metadata(&exe).expect("stat init exe");
    if meta.dev() == before.dev() && meta.ino() == before.ino() {
        // Same inode: only acceptable through a read-only mount (runc's read-only bind of its
        // own binary in a private mount namespace); a sealed copy or memfd has another inode.
        let ro = nix::sys::statvfs::statvfs(exe.as_str())
            .map(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
            .unwrap_or(false);
        assert!(ro, "the container init executes the runtime binary {} itself, writably", bin.display());
    }
    // From inside the container, /proc/1/exe cannot be opened for writing.
    let out = rt.exec(b.id(), &["/bin/sh", "-c", "exec 3>>/proc/1/exe && echo OPENED-FOR-WRITE"]);
    assert!(!out.stdout.contains("OPENED-FOR-WRITE"), "{out}");
    rt.start(b.id()).expect_ok();
    let out = rt.exec(b.id(), &["/bin/sh", "-c", "readlink /proc/1/exe"]).expect_ok();
    assert!(!out.stdout.contains(&*bin.to_string_lossy()), "{out}");
    rt.delete_force(b.id()).expect_ok();
    let after = fs::metadata(&bin).expect("stat runtime");
    assert_eq!((before.len(), before.mtime(), before.ino()), (after.len(), after.mtime(), after.ino()));
}

// ---------------------------------------------------------------------------------------------
// CVE-2024-21626: no host file descriptor reaches the container; cwd is checked.
// ---------------------------------------------------------------------------------------------

fn open_dir_fd(p: &Path) -> OwnedFd {
    fs::File::open(p).expect("open dir").into()
}

fn fd_list(text: &str) -> BTreeSet<String> {
    text.split_whitespace().map(String::from).collect()
}

#[test]
fn no_host_fd_reaches_the_container() {
    let b = Bundle::with_tag("fdleak").sh("ls /proc/$$/fd; echo end; sleep 1000");
    let rt = Runtime::new();
    // The runtime inherits two extra fds (a host directory and a host file) from us.
    let host_dir = tempfile::tempdir().expect("tempdir");
    let dirfd = open_dir_fd(host_dir.path());
    let filefd: OwnedFd =
        fs::File::open("/etc/hostname").or_else(|_| fs::File::open("/etc/passwd")).expect("open").into();
    let bundle = b.path().to_string_lossy().into_owned();
    rt.track(b.id());
    let mut cmd = rt.command(&["create", "--bundle", &bundle, b.id()]);
    pass_fd(&mut cmd, dirfd.as_raw_fd(), 100);
    pass_fd(&mut cmd, filefd.as_raw_fd(), 101);
    let created = run_captured(cmd, None, DEFAULT_TIMEOUT).expect_ok();
    rt.start(b.id()).expect_ok();
    let seen = created.wait_stdout("end\n", T);
    assert_eq!(fd_list(&seen), fd_list("0 1 2 end"), "container init fds: {seen}");
    // An exec'd process gets nothing extra either.
    // (`; exit 0` keeps sh from exec'ing ls, whose own directory fd would show.)
    let mut cmd = rt.command(&["exec", b.id(), "/bin/sh", "-c", "ls /proc/$$/fd; exit 0"]);
    pass_fd(&mut cmd, dirfd.as_raw_fd(), 100);
    let out = run_captured(cmd, None, DEFAULT_TIMEOUT).expect_ok();
    assert_eq!(fd_list(&out.stdout), fd_list("0 1 2"), "exec process fds: {out}");
    rt.delete_force(b.id()).expect_ok();
}

#[test]
fn preserve_fds_passes_exactly_the_requested_fds() {
    let b = Bundle::with_tag("preserve").sh("echo via-fd3 >&3; ls /proc/$$/fd; exit 0");
    let rt = Runtime::new();
    let (r, w) = nix::unistd::pipe().expect("pipe");
    let extra: OwnedFd = fs::File::open("/etc/passwd").expect("open").into();
    let bundle = b.path().to_string_lossy().into_owned();
    rt.track(b.id());
    let mut cmd = rt.command(&["run", "--preserve-fds", "1", "--bundle", &bundle, b.id()]);
    pass_fd(&mut cmd, w.as_raw_fd(), 3);
    pass_fd(&mut cmd, extra.as_raw_fd(), 4);
    let out = run_captured(cmd, None, DEFAULT_TIMEOUT);
    drop(w);
    let out = out.expect_ok();
    assert_eq!(fd_list(&out.stdout), fd_list("0 1 2 3"), "{out}");
    let mut got = String::new();
    fs::File::from(r).read_to_string(&mut got).expect("read pipe");
    assert_eq!(got, "via-fd3\n");
}

#[test]
fn cwd_through_a_leaked_fd_cannot_escape() {
    // Whatever fds the runtime holds (or inherits), a cwd of /proc/self/fd/N must never land
    // the process in a host directory: either the runtime refuses, or the cwd is in the rootfs.
    let host = tempfile::tempdir().expect("tempdir");
    let marker = format!("host-marker-{}", std::process::id());
    fs::write(host.path().join(&marker), "host").expect("marker");
    let dirfd = open_dir_fd(host.path());
    let rt = Runtime::new();
    for n in (3..=12).chain([100]) {
        let b = Bundle::with_tag("cwdfd").set("/process/cwd", json!(format!("/proc/self/fd/{n}"))).sh(&format!(
            "cat {marker} 2>/dev/null && echo ESCAPED; cat ../../../{marker} 2>/dev/null && echo ESCAPED"
        ));
        let bundle = b.path().to_string_lossy().into_owned();
        rt.track(b.id());
        let mut cmd = rt.command(&["run", "--bundle", &bundle, b.id()]);
        pass_fd(&mut cmd, dirfd.as_raw_fd(), 100);
        let out = run_captured(cmd, None, DEFAULT_TIMEOUT);
        assert!(!out.stdout.contains("ESCAPED"), "cwd /proc/self/fd/{n} reached the host: {out}");
        assert!(out.signal.is_none(), "{out}");
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
    }
}

#[test]
fn exec_cwd_through_a_leaked_fd_cannot_escape() {
    let host = tempfile::tempdir().expect("tempdir");
    let marker = format!("host-marker-exec-{}", std::process::id());
    fs::write(host.path().join(&marker), "host").expect("marker");
    let dirfd = open_dir_fd(host.path());
    let b = Bundle::with_tag("execcwd").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_start(&b);
    for n in (3..=12).chain([100]) {
        let cwd = format!("/proc/self/fd/{n}");
        let mut cmd = rt.command(&["exec", "--cwd", &cwd, b.id(), "/bin/sh", "-c"]);
        cmd.arg(format!("cat {marker} 2>/dev/null && echo ESCAPED"));
        pass_fd(&mut cmd, dirfd.as_raw_fd(), 100);
        let out = run_captured(cmd, None, DEFAULT_TIMEOUT);
        assert!(!out.stdout.contains("ESCAPED"), "exec --cwd {cwd} reached the host: {out}");
    }
    rt.delete_force(b.id()).expect_ok();
}

// ---------------------------------------------------------------------------------------------
// Mount targets are resolved inside the rootfs.
// ---------------------------------------------------------------------------------------------

#[test]
fn symlinked_mount_destination_stays_in_the_rootfs() {
    let target_new = std::env::temp_dir().join(format!("hako-e2e-escape-new-{}", unique_id("t")));
    let target_old = tempfile::Builder::new().prefix("hako-e2e-escape-old-").tempdir().expect("tempdir");
    let dotdot = std::env::temp_dir().join(format!("hako-e2e-escape-dotdot-{}", unique_id("t")));
    let b = Bundle::with_tag("symlinkmnt")
        .writable()
        .mount("/evil", "tmpfs", "tmpfs", &["size=1m"])
        .mount("/evil2", "tmpfs", "tmpfs", &["size=1m"])
        .mount(&format!("/../../../..{}", dotdot.display()), "tmpfs", "tmpfs", &["size=1m"])
        .sh("echo x > /evil/written; echo y > /evil2/written; sleep 1000");
    std::os::unix::fs::symlink(&target_new, b.rootfs().join("evil")).expect("symlink evil");
    std::os::unix::fs::symlink(target_old.path(), b.rootfs().join("evil2")).expect("symlink evil2");
    let rt = Runtime::new();
    let created = rt.create(&b);
    if created.ok() {
        rt.start(b.id()).expect_ok();
        // Give the process its moment to write.
        std::thread::sleep(Duration::from_millis(200));
        let host_targets = [target_new.clone(), target_old.path().to_path_buf(), dotdot.clone()];
        for m in host_mounts() {
            for t in &host_targets {
                assert!(Path::new(&m.target) != t.as_path(), "a container mount landed on the host at {}", t.display());
            }
        }
        rt.delete_force(b.id()).expect_ok();
    }
    assert!(!target_new.exists(), "{} was created on the host", target_new.display());
    assert!(!dotdot.exists(), "{} was created on the host", dotdot.display());
    assert!(
        fs::read_dir(target_old.path()).expect("read host dir").next().is_none(),
        "the container wrote into the host directory {}",
        target_old.path().display()
    );
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

// ---------------------------------------------------------------------------------------------
// readonlyPaths, maskedPaths, /dev/null and /dev/console after pivot_root (runc's CVE-2025-31133
// and CVE-2025-52565): links planted in the rootfs are never followed out of place.
// ---------------------------------------------------------------------------------------------

/// A bundle whose /dev is the image's own directory (no tmpfs on /dev), so the image decides what /dev/null and
/// /dev/console are.
fn image_dev_bundle(tag: &str) -> Bundle {
    Bundle::with_tag(tag).with(|c| {
        c["mounts"].as_array_mut().expect("mounts").retain(|m| m["destination"] != "/dev");
    })
}

// runc before 1.2.8 (Debian 12 ships 1.1.5) fails the three tests below: they are its CVE-2025-31133 and
// CVE-2025-52565.
#[test]
fn masked_paths_use_only_the_real_dev_null() {
    let host_file = tempfile::NamedTempFile::new().expect("host file");
    fs::write(host_file.path(), "host\n").expect("write host file");
    for (what, plant) in [("a symlink to a procfs file", 0), ("a regular file", 1), ("another character device", 2)] {
        let b = image_dev_bundle("maskdevnull")
            .set("/linux/maskedPaths", json!(["/masked", "/hostlink"]))
            .sh("head -c 64 /masked; echo end");
        let null = b.rootfs().join("dev/null");
        match plant {
            0 => std::os::unix::fs::symlink("/proc/sys/kernel/ostype", &null).expect("symlink /dev/null"),
            1 => fs::write(&null, "planted\n").expect("plant /dev/null"),
            _ => nix::sys::stat::mknod(
                &null,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, 5),
            )
            .expect("mknod /dev/null as 1:5"),
        }
        fs::write(b.rootfs().join("masked"), "secret\n").expect("write masked file");
        // A masked path that is a link to a path of the host.
        std::os::unix::fs::symlink(host_file.path(), b.rootfs().join("hostlink")).expect("symlink hostlink");
        let rt = Runtime::new();
        let out = rt.run(&b);
        if out.ok() {
            assert_eq!(out.stdout, "end\n", "/dev/null as {what}: the masked file shows something: {out}");
        } else if testing_hako() {
            out.expect_msg(&["/dev/null", "1:3"]);
        }
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
        assert_eq!(fs::read_to_string(host_file.path()).expect("read host file"), "host\n");
        assert!(host_mounts().iter().all(|m| Path::new(&m.target) != host_file.path()), "a mount landed on the host");
    }
    // The real device (a tmpfs /dev, where hako makes it) masks as before.
    let b = Bundle::with_tag("maskreal").set("/linux/maskedPaths", json!(["/masked"])).sh("cat /masked; echo end");
    fs::write(b.rootfs().join("masked"), "secret\n").expect("write masked file");
    let rt = Runtime::new();
    assert_eq!(rt.run(&b).expect_ok().stdout, "end\n");
}

#[test]
fn readonly_and_masked_paths_do_not_follow_magic_links() {
    // /proc/1/root is init's root: a magic link that a path-based mount follows to wherever it points.
    for (field, tag) in [("readonlyPaths", "rolink"), ("maskedPaths", "masklink")] {
        let b = Bundle::with_tag(tag)
            .writable()
            .set(&format!("/linux/{field}"), json!(["/link"]))
            .sh("touch /etc/probe && echo etc-writable; ls /etc | grep -c passwd");
        std::os::unix::fs::symlink("/proc/1/root/etc", b.rootfs().join("link")).expect("symlink /link");
        let rt = Runtime::new();
        let out = rt.run(&b);
        if out.ok() {
            assert_eq!(out.stdout, "etc-writable\n1\n", "{field}: a mount followed /link onto /etc: {out}");
        } else if testing_hako() {
            out.expect_msg(&["/link", "magic link"]);
        }
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
    }
}

#[test]
fn console_is_never_bound_through_a_planted_symlink() {
    for (tag, link, target_exists) in
        [("consolelink", "/etc/console-target", true), ("consoledangling", "/etc/console-new", false)]
    {
        let b = image_dev_bundle(tag)
            .set("/process/terminal", json!(true))
            .set("/linux/maskedPaths", json!([]))
            .args(&["sh"]);
        std::os::unix::fs::symlink("pts/ptmx", b.rootfs().join("dev/ptmx")).expect("symlink /dev/ptmx");
        std::os::unix::fs::symlink(link, b.rootfs().join("dev/console")).expect("symlink /dev/console");
        let on_host = b.rootfs().join(link.trim_start_matches('/'));
        if target_exists {
            fs::write(&on_host, "file\n").expect("write console target");
        }
        let rt = Runtime::new();
        let sock = ConsoleSocket::new();
        let out = rt.create_id(b.id(), &b, &["--console-socket", &sock.path_str()]);
        if out.ok() {
            let pid = rt.pid(b.id());
            let mounts = parse_mountinfo(&fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo"));
            assert!(mounts.iter().all(|m| m.target != link), "the terminal was bound over {link}: {mounts:?}");
            rt.delete_force(b.id()).expect_ok();
        } else if testing_hako() {
            out.expect_msg(&["/dev/console", "symbolic link"]);
        }
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
        assert_eq!(on_host.exists(), target_exists, "{link} was created through the /dev/console link");
        if target_exists {
            assert_eq!(fs::read_to_string(&on_host).expect("read"), "file\n");
        }
    }
}
