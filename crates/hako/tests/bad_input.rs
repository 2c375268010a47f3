//! End-to-end tests of bad input (issue item 6): each case fails with a non-zero exit, leaves
//! no state directory, cgroup, mount or process behind, and (hako's error contract) prints a
//! message naming the problem. The failure and leak checks hold for any runtime; the message
//! checks (`expect_msg`) follow hako's contract and come last in each test.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(10);

/// Runs `create` for `b`, expects it to fail and to leave nothing behind; returns the output.
#[track_caller]
fn create_fails_cleanly(rt: &Runtime, b: &Bundle) -> CmdOut {
    let out = rt.create(b).expect_fail();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
    assert!(
        out.stderr.lines().any(|l| l.starts_with("hako: ")) || !testing_hako(),
        "errors go to stderr as `hako: <message>`: {out}"
    );
    out
}

fn root_is_empty(rt: &Runtime) -> bool {
    fs::read_dir(rt.root()).map(|mut d| d.next().is_none()).unwrap_or(true)
}

#[test]
fn malformed_config_json() {
    let b = Bundle::with_tag("badjson");
    fs::write(b.config_path(), "{ \"ociVersion\": \"1.0.2\", this is not json }").expect("write");
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    assert!(root_is_empty(&rt), "a failed create left files in --root");
    out.expect_msg(&[&b.config_path().to_string_lossy(), "invalid config"]);
}

#[test]
fn truncated_config_json() {
    let b = Bundle::with_tag("truncjson");
    let full = fs::read_to_string(b.config_path()).expect("read");
    fs::write(b.config_path(), &full[..full.len() / 2]).expect("write");
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&[&b.config_path().to_string_lossy(), "invalid config", "line"]);
}

#[test]
fn missing_config_json() {
    let b = Bundle::with_tag("noconfig");
    fs::remove_file(b.config_path()).expect("rm config");
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&["config.json"]);
}

#[test]
fn missing_rootfs() {
    let b = Bundle::with_tag("norootfs").set("/root/path", json!("no-such-rootfs"));
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&["no-such-rootfs", "does not exist"]);
}

#[test]
fn unknown_namespace_type() {
    let b = Bundle::with_tag("badns").push("/linux/namespaces", json!({"type": "foo"}));
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&["foo"]);
}

#[test]
fn invalid_signals() {
    let b = Bundle::with_tag("badsig").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_start(&b);
    let pid = rt.pid(b.id());
    let mut outs = Vec::new();
    for sig in ["SIGFOO", "99999", "-1", "SIG"] {
        outs.push((sig, rt.kill(b.id(), sig).expect_fail()));
        let st = rt.state_json(b.id());
        assert_eq!(st["status"], "running", "a bad kill changed the container: {st}");
        assert_eq!(st["pid"].as_i64(), Some(pid as i64));
    }
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
    for (sig, out) in &outs[..2] {
        out.expect_msg(&[sig, "signal"]);
    }
}

#[test]
fn duplicate_id() {
    let b = Bundle::with_tag("dup").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create(&b).expect_ok();
    let pid = rt.pid(b.id());
    let other = Bundle::with_tag("dup2").args(&["sleep", "1000"]);
    let out = rt.create_id(b.id(), &other, &[]).expect_fail();
    let st = rt.state_json(b.id());
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["pid"].as_i64(), Some(pid as i64), "the duplicate create touched the first container");
    assert_eq!(
        st["bundle"].as_str().map(std::path::PathBuf::from),
        Some(fs::canonicalize(b.path()).expect("canonical"))
    );
    // Nothing of the second attempt remains.
    assert_no_leftovers_at(rt.root(), "never-created", &other.cgroup_rel(), Some(other.path()));
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
    out.expect_msg(&[b.id(), "already exists"]);
}

#[test]
fn ids_with_path_separators_or_dots() {
    let b = Bundle::with_tag("badid");
    let rt = Runtime::new();
    let outside = rt.root().parent().expect("parent").join(format!("escape-{}", unique_id("x")));
    let escape = format!("../{}", outside.file_name().expect("name").to_string_lossy());
    let mut outs = Vec::new();
    for id in ["a/b", "..", ".", escape.as_str(), "/abs", ""] {
        let out = rt.create_id(id, &b, &[]).expect_fail();
        assert!(root_is_empty(&rt), "create {id:?} left files in --root");
        assert!(!outside.exists(), "create {id:?} wrote outside --root");
        outs.push((id, out));
    }
    assert_no_leftovers_at(rt.root(), "a", &b.cgroup_rel(), Some(b.path()));
    for (id, out) in &outs[..4] {
        assert!(out.all().contains("invalid container id"), "id {id:?}: {out}");
    }
}

#[test]
fn bundle_reached_through_a_symlink() {
    let b = Bundle::with_tag("symbundle").args(&["true"]);
    let links = tempfile::tempdir().expect("tempdir");
    let direct = links.path().join("bundle-link");
    std::os::unix::fs::symlink(b.path(), &direct).expect("symlink");
    let parent_link = links.path().join("parent-link");
    std::os::unix::fs::symlink(b.path().parent().expect("parent"), &parent_link).expect("symlink");
    let via_parent = parent_link.join(b.path().file_name().expect("name"));
    let rt = Runtime::new();
    for path in [&direct, &via_parent] {
        let p = path.to_string_lossy().into_owned();
        rt.track(b.id());
        let out = rt.cmd(&["create", "--bundle", &p, b.id()]);
        assert!(!out.ok(), "hako refuses a bundle path that goes through a symlink: {out}");
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
        out.expect_msg(&["symlink", &p]);
    }
}

#[test]
fn unknown_container() {
    let rt = Runtime::new();
    let id = unique_id("nope");
    for cmd in [
        vec!["state", id.as_str()],
        vec!["start", id.as_str()],
        vec!["kill", id.as_str(), "KILL"],
        vec!["delete", id.as_str()],
        vec!["pause", id.as_str()],
        vec!["resume", id.as_str()],
        vec!["ps", id.as_str()],
        vec!["exec", id.as_str(), "true"],
    ] {
        let out = rt.cmd(&cmd).expect_fail();
        assert!(root_is_empty(&rt), "{cmd:?} created state");
        out.expect_msg(&[&id, "does not exist"]);
    }
}

/// `delete --force` of an id that does not exist succeeds silently, as runc's does (containerd
/// relies on it); plain `delete` of it still fails. runc is asked too, when it is installed.
#[test]
fn force_delete_of_a_missing_id_succeeds_as_runc_does() {
    let mut runtimes = vec![Runtime::new()];
    if std::path::Path::new("/usr/sbin/runc").exists() {
        runtimes.push(Runtime::with_binary("/usr/sbin/runc"));
    }
    for rt in &runtimes {
        let id = unique_id("nope");
        let out = rt.cmd(&["delete", "--force", &id]);
        assert!(out.ok(), "{}: delete --force of a missing id: {out}", rt.bin().display());
        assert!(!out.all().contains("does not exist"), "{}: {out}", rt.bin().display());
        assert!(root_is_empty(rt), "{}: delete --force created state", rt.bin().display());
        rt.cmd(&["delete", &id]).expect_fail().expect_msg(&["does not exist"]);
    }
}

#[test]
fn start_of_a_running_container_names_its_status() {
    let b = Bundle::with_tag("startrunning").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_start(&b);
    let out = rt.start(b.id()).expect_fail();
    assert_eq!(rt.status(b.id()), "running");
    rt.delete_force(b.id()).expect_ok();
    out.expect_msg(&[b.id(), "running"]);
}

#[test]
fn delete_of_a_live_container_suggests_force() {
    let b = Bundle::with_tag("dellive").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_start(&b);
    let out = rt.delete(b.id()).expect_fail();
    assert_eq!(rt.status(b.id()), "running");
    rt.delete_force(b.id()).expect_ok();
    out.expect_msg(&["--force"]);
}

#[test]
fn rlimit_above_the_hard_limit_fails_late_and_cleanly() {
    // Fails inside the container's init, after namespaces and cgroups exist.
    let b = Bundle::with_tag("badrlimit")
        .set("/process/rlimits", json!([{"type": "RLIMIT_NOFILE", "soft": 1048576, "hard": 1048576}]));
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&["RLIMIT_NOFILE"]);
}

#[test]
fn unknown_mount_type_fails_cleanly() {
    let b = Bundle::with_tag("badmount").mount("/x", "no-such-fs-type", "none", &[]);
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&["/x"]);
}

#[test]
fn missing_executable_fails_cleanly() {
    let b = Bundle::with_tag("noexe").args(&["/no/such/binary"]);
    let rt = Runtime::new();
    let created = rt.create(&b);
    if created.ok() {
        // Runtimes may only find out at start; then start fails and the container stops.
        rt.start(b.id()).expect_fail();
        rt.delete_force(b.id()).expect_ok();
    }
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn unknown_capability_is_a_warning() {
    // runtime-spec: a capability that cannot be mapped MUST be logged as a warning, and
    // runtimes SHOULD NOT fail.
    let b = Bundle::with_tag("badcap")
        .push("/process/capabilities/bounding", json!("CAP_NO_SUCH_THING"))
        .args(&["cat", "/proc/self/status"]);
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let bnd = u64::from_str_radix(&parse_status(&out.stdout)["CapBnd"], 16).expect("hex");
    assert_eq!(bnd, cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]));
    assert!(out.stderr.contains("CAP_NO_SUCH_THING"), "no warning names the capability: {out}");
}

/// A profile hako cannot apply is refused before anything runs: on a host without AppArmor (the
/// error names the missing module) and on one with it (the profile is not loaded).
#[test]
fn apparmor_profile_that_cannot_be_applied_is_a_clear_error() {
    let enabled = fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y");
    let b = Bundle::with_tag("apparmor").set("/process/apparmorProfile", json!("hako-e2e-profile"));
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&["hako-e2e-profile", "process.apparmorProfile"]);
    if enabled {
        out.expect_msg(&["is not loaded"]);
    } else {
        out.expect_msg(&["apparmor"]);
    }
}

#[test]
fn seccomp_notify_without_support_is_a_clear_error() {
    let b = Bundle::with_tag("notify").set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&["SCMP_ACT_NOTIFY"]);
}

/// hako has no systemd cgroup driver, whether or not the host runs systemd.
#[test]
fn systemd_cgroup_is_a_clear_error() {
    let b = Bundle::with_tag("systemd").args(&["true"]);
    let rt = Runtime::new().with_global(&["--systemd-cgroup"]);
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&["systemd"]);
}

#[test]
fn failed_create_with_json_log_reports_the_error() {
    let b = Bundle::with_tag("jsonlog").set("/root/path", json!("no-such-rootfs"));
    let logdir = tempfile::tempdir().expect("tempdir");
    let log = logdir.path().join("log.json");
    let rt = Runtime::new().with_global(&["--log", &log.to_string_lossy(), "--log-format", "json"]);
    rt.create(&b).expect_fail();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
    let text = fs::read_to_string(&log).expect("the log file was written");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}")))
        .collect();
    let last = lines.last().expect("at least one log line");
    assert_eq!(last["level"], "error", "{text}");
    assert!(last["time"].is_string(), "{text}");
    let msg = last["msg"].as_str().expect("msg");
    assert!(msg.contains("no-such-rootfs"), "containerd shows the last msg; it must name the problem: {text}");
    for l in &lines {
        assert!(l["level"].is_string() && l["msg"].is_string() && l["time"].is_string(), "{l}");
    }
}

#[test]
fn runtime_survives_a_deleted_bundle() {
    // The bundle disappears while the container runs: state and delete --force still work.
    let b = Bundle::with_tag("gonebundle").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_start(&b);
    fs::remove_file(b.config_path()).expect("rm config");
    assert_eq!(rt.status(b.id()), "running");
    rt.delete_force(b.id()).expect_ok();
    rt.wait_status_gone(b.id());
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

trait GoneExt {
    fn wait_status_gone(&self, id: &str);
}

impl GoneExt for Runtime {
    fn wait_status_gone(&self, id: &str) {
        assert!(wait_until(T, || !self.state(id).ok()), "{id} still exists after delete --force");
    }
}

// Issue 9 item 18: messages that name the object that is wrong, and the limit.

#[test]
fn id_longer_than_a_file_name_is_refused_by_the_id_check() {
    // The id names the state directory <root>/<id>: one file name, at most 255 bytes (NAME_MAX).
    let b = Bundle::with_tag("longid");
    let rt = Runtime::new();
    let id = format!("long-{}", "x".repeat(300));
    let out = rt.create_id(&id, &b, &[]).expect_fail();
    assert_no_leftovers(rt.root(), &id, &b.cgroup_rel());
    assert!(root_is_empty(&rt), "a refused id left files in --root");
    out.expect_msg(&["invalid container id", "255"]);
    assert!(!out.stderr.contains("File name too long"), "the id check must catch it first: {out}");
    // 255 bytes is still a valid id.
    let id = "y".repeat(255);
    rt.create_id(&id, &b, &[]).expect_ok();
    rt.delete_force(&id).expect_ok();
    assert_no_leftovers(rt.root(), &id, &b.cgroup_rel());
}

#[test]
fn ten_megabyte_argument_names_the_argument_and_the_limit() {
    let big = "a".repeat(10 << 20);
    let b = Bundle::with_tag("bigarg").set("/process/args", json!(["echo", big]));
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    assert!(root_is_empty(&rt), "a failed create left files in --root");
    out.expect_msg(&["process.args[1]", "10485760 bytes", "131072"]);
    assert!(!out.stderr.contains("EMSGSIZE"), "{out}");
}

#[test]
fn config_of_a_few_hundred_kilobytes_runs() {
    // 300 environment variables of 1 KiB each: far below what execve takes (2 MiB), but more than
    // a socket's default send buffer, which used to fail with `setup channel: EMSGSIZE`.
    let env: Vec<String> = (0..300).map(|i| format!("V{i}={}", "v".repeat(1024))).collect();
    let b = Bundle::with_tag("bigenv").set("/process/env", json!(env)).sh("echo ${#V299}");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    assert_eq!(out.stdout.trim(), "1024", "{out}");
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn tiny_memory_limit_names_the_limit() {
    // 64 KiB cannot hold the container's init: the kernel's OOM killer kills it during create.
    let b = Bundle::with_tag("tinymem").set("/linux/resources/memory", json!({"limit": 65536}));
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&["OOM killer", "memory limit", "65536 bytes", "linux.resources.memory.limit"]);
    for wrong in ["ECONNRESET", "SIGKILL"] {
        assert!(!out.stderr.contains(wrong), "the message must name the limit, not {wrong}: {out}");
    }
}

#[test]
fn bind_source_through_a_dangling_symlink_names_the_link_and_its_target() {
    let b = Bundle::with_tag("danglingsrc");
    let link = b.path().join("dangling-source");
    let target = b.path().join("no-such-target");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let b = b.mount("/mnt/x", "bind", &link.to_string_lossy(), &["rbind"]);
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&[&link.to_string_lossy(), &target.to_string_lossy(), "/mnt/x"]);
}

#[test]
fn mount_destination_through_a_dangling_symlink_names_the_link_and_its_target() {
    let b = Bundle::with_tag("danglingdst");
    std::os::unix::fs::symlink("/no-such-dir", b.rootfs().join("lnk")).expect("symlink");
    let b = b.mount("/lnk/sub", "tmpfs", "tmpfs", &[]);
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&["/lnk/sub", "/lnk", "/no-such-dir"]);
    assert!(!b.rootfs().join("no-such-dir").exists(), "nothing is created through the link");
    assert!(!std::path::Path::new("/no-such-dir").exists(), "nothing is created on the host");
}

// Issue 9 item 14: SELinux labels on a host without SELinux.

fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
        || fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.contains(" - selinuxfs "))
}

#[test]
fn mount_label_without_selinux_is_ignored_with_a_debug_line() {
    let label = "system_u:object_r:container_file_t:s0:c1,c2";
    let b =
        Bundle::with_tag("mountlabel").set("/linux/mountLabel", json!(label)).sh("grep ' /dev ' /proc/self/mountinfo");
    let rt = Runtime::new().with_global(&["--debug"]);
    let out = rt.run(&b);
    if selinux_enabled() {
        // The label is applied to the mounts the runtime makes (the /dev tmpfs among them).
        let out = out.expect_ok();
        assert!(out.stdout.contains("context="), "{out}");
    } else {
        // As crun does: the label is ignored, and (hako) a debug line says so.
        let out = out.expect_ok();
        assert!(!out.stdout.contains("context="), "{out}");
        if testing_hako() {
            out.expect_msg(&["linux.mountLabel", label, "SELinux is not enabled"]);
        }
    }
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn process_label_without_selinux_is_refused() {
    if selinux_enabled() {
        // With SELinux a label is applied; one the policy does not know is refused, naming it.
        let label = "hako_e2e_u:hako_e2e_r:hako_e2e_no_such_t:s0";
        let b = Bundle::with_tag("proclabel").set("/process/selinuxLabel", json!(label));
        let rt = Runtime::new();
        let out = create_fails_cleanly(&rt, &b);
        out.expect_msg(&[label]);
        return;
    }
    let label = "system_u:system_r:container_t:s0:c1,c2";
    let b =
        Bundle::with_tag("proclabel").set("/process/selinuxLabel", json!(label)).set("/linux/mountLabel", json!(label));
    let rt = Runtime::new();
    let out = create_fails_cleanly(&rt, &b);
    out.expect_msg(&["process.selinuxLabel", label, "SELinux is not enabled"]);
}
