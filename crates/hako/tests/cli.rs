//! End-to-end tests of the command line itself: global flags, unknown commands, `--version`,
//! `features` (runtime-spec features.md, checked against what really works), and hako's own
//! `info` and `hcs-doc` commands.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::*;
use serde_json::{json, Value};

fn features() -> Value {
    let rt = Runtime::new();
    let out = rt.cmd(&["features"]).expect_ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("features is not JSON ({e}): {out}"))
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

#[test]
fn unknown_command_fails() {
    let rt = Runtime::new();
    rt.cmd(&["no-such-command"]).expect_fail();
}

#[test]
fn version_flag() {
    let rt = Runtime::new();
    let out = rt.cmd(&["--version"]).expect_ok();
    assert!(!out.stdout.trim().is_empty(), "{out}");
}

#[test]
fn global_flags_are_accepted_before_the_command() {
    let logdir = tempfile::tempdir().expect("tempdir");
    let log = logdir.path().join("log");
    let rt = Runtime::new().with_global(&["--debug", "--log", &log.to_string_lossy(), "--log-format", "text"]);
    let out = rt.cmd(&["list"]).expect_ok();
    assert!(out.stdout.contains("ID"), "{out}");
    let rt = Runtime::new().with_global(&["--log-format", "xml"]);
    rt.cmd(&["list"]).expect_fail();
}

#[test]
fn features_reports_the_required_fields() {
    let f = features();
    assert!(f["ociVersionMin"].as_str().is_some_and(|v| v.starts_with("1.")), "{f}");
    assert!(f["ociVersionMax"].as_str().is_some_and(|v| v.starts_with("1.")), "{f}");
    let hooks = strings(&f["hooks"]);
    for h in ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] {
        assert!(hooks.contains(h), "hook {h} missing from features: {hooks:?}");
    }
    assert_eq!(f["linux"]["cgroup"]["v1"], true, "this host runs cgroup v1 controllers: {f}");
    assert_eq!(f["linux"]["seccomp"]["enabled"], true, "{f}");
    let caps = strings(&f["linux"]["capabilities"]);
    for c in ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_KILL"] {
        assert!(caps.contains(c), "{c} missing: {caps:?}");
    }
}

#[test]
fn features_namespaces_all_work() {
    let f = features();
    let listed = strings(&f["linux"]["namespaces"]);
    let rt = Runtime::new();
    for ns in &listed {
        let mut b = Bundle::with_tag("featns").namespace(ns).args(&["true"]);
        if ns == "user" {
            b = b
                .set("/linux/uidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]))
                .set("/linux/gidMappings", json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
        }
        let out = rt.run(&b);
        assert!(out.ok(), "features lists the {ns} namespace but a container with it fails: {out}");
    }
    // hako supports every namespace of the issue.
    if testing_hako() {
        for ns in ["pid", "network", "ipc", "uts", "mount", "user", "cgroup", "time"] {
            assert!(listed.contains(ns), "hako features does not list {ns}: {listed:?}");
        }
    }
}

#[test]
fn features_mount_options_work() {
    // Every listed per-mount flag that makes sense on a tmpfs: one tmpfs per option.
    const SIMPLE: &[&str] = &[
        "ro",
        "rw",
        "nosuid",
        "suid",
        "nodev",
        "dev",
        "noexec",
        "exec",
        "sync",
        "async",
        "noatime",
        "atime",
        "nodiratime",
        "diratime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "private",
        "rprivate",
        "unbindable",
        "runbindable",
        "dirsync",
        "lazytime",
        "nolazytime",
        "iversion",
        "noiversion",
        "nosymfollow",
        "symfollow",
    ];
    let f = features();
    let listed = strings(&f["mountOptions"]);
    assert!(!listed.is_empty(), "features lists no mount options: {f}");
    let mut b = Bundle::with_tag("featmnt").args(&["true"]);
    let mut used = Vec::new();
    for (i, o) in SIMPLE.iter().filter(|o| listed.contains(**o)).enumerate() {
        b = b.mount(&format!("/m{i}"), "tmpfs", "tmpfs", &[o]);
        used.push(*o);
    }
    let rt = Runtime::new();
    let out = rt.run(&b);
    assert!(out.ok(), "a tmpfs with one of the listed options {used:?} fails: {out}");
}

#[test]
fn features_seccomp_actions_work() {
    let f = features();
    let actions = strings(&f["linux"]["seccomp"]["actions"]);
    // Rarely used syscalls that busybox `true` never makes.
    let victims = [
        "acct",
        "swapon",
        "swapoff",
        "kexec_load",
        "init_module",
        "delete_module",
        "quotactl",
        "pivot_root",
        "vhangup",
    ];
    let rules: Vec<Value> = actions
        .iter()
        .filter(|a| a.as_str() != "SCMP_ACT_NOTIFY" && a.as_str() != "SCMP_ACT_ALLOW")
        .zip(victims.iter())
        .map(|(a, s)| json!({"names": [s], "action": a}))
        .collect();
    assert!(actions.contains("SCMP_ACT_ERRNO") && actions.contains("SCMP_ACT_ALLOW"), "{actions:?}");
    let b = Bundle::with_tag("featseccomp")
        .set("/linux/seccomp", json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}))
        .args(&["true"]);
    let rt = Runtime::new();
    let out = rt.run(&b);
    assert!(out.ok(), "a profile using the listed actions {actions:?} fails: {out}");
    let ops = strings(&f["linux"]["seccomp"]["operators"]);
    for op in ["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_MASKED_EQ"] {
        assert!(ops.contains(op), "{op} missing: {ops:?}");
    }
}

#[test]
fn hako_info_command() {
    let rt = Runtime::new();
    let out = rt.cmd(&["info"]).expect_ok();
    assert!(!out.stdout.trim().is_empty(), "{out}");
}

#[test]
fn hako_hcs_doc_command() {
    // `hako hcs-doc BUNDLE` prints (as JSON) the HCS documents hako would submit on Windows
    // for a bundle with a `windows` section; a Linux-only bundle is refused.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"username": "ContainerUser"},
                    "args": ["cmd.exe", "/c", "echo hi"], "cwd": "C:\\"},
        "root": {"path": "\\\\?\\Volume{6a5fa0b5-95c1-4f8a-9a0f-1c4f3e2a7b10}\\"},
        "hostname": "win-host",
        "windows": {"layerFolders": ["C:\\hako\\layers\\base", "C:\\hako\\scratch"]}
    });
    fs::write(dir.path().join("config.json"), config.to_string()).expect("write config");
    let rt = Runtime::new();
    let out = rt.cmd(&["hcs-doc", &dir.path().to_string_lossy()]).expect_ok();
    let doc: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("hcs-doc JSON: {e}: {out}"));
    assert!(doc.to_string().contains("win-host"), "the hostname is not in the HCS document: {doc}");

    let linux = Bundle::with_tag("hcslinux");
    let out = rt.cmd(&["hcs-doc", &linux.path().to_string_lossy()]).expect_fail();
    out.expect_msg(&["windows"]);
}

/// A reader that stops early (`hako list | head`) ends a printing command quietly, as it ends `ls` or
/// runc: killed by SIGPIPE or exit 0, never a panic message about a broken pipe.
#[test]
fn a_closed_stdout_ends_printing_commands_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let store = tempfile::tempdir().expect("tempdir");
    for args in [&["completion", "bash"][..], &["man"], &["list"], &["features"], &["image", "ls"]] {
        let mut child = Command::new(runtime())
            .args(args)
            .env("HAKO_IMAGE_STORE", store.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hako");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "hako {args:?}: {stderr}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "hako {args:?}: {:?} {stderr}",
            out.status
        );
    }
}

#[test]
fn hako_k8s_runtimeclass_prints_the_objects_for_each_handler() {
    let rt = Runtime::new();
    let out = rt.cmd(&["k8s", "runtimeclass", "hako-vm"]).expect_ok();
    assert_eq!(
        out.stdout,
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: hako-vm\nhandler: hako-vm\n\
         overhead:\n  podFixed:\n    memory: 64Mi\nscheduling:\n  nodeSelector:\n    kubernetes.io/os: linux\n",
        "{out}"
    );
    let out = rt.cmd(&["k8s", "runtimeclass", "hako", "--windows-build", "10.0.20348", "--openshift"]).expect_ok();
    assert_eq!(
        out.stdout,
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: hako-windows-20348\nhandler: hako\n\
         scheduling:\n  nodeSelector:\n    kubernetes.io/os: windows\n    kubernetes.io/arch: amd64\n    \
         node.kubernetes.io/windows-build: '10.0.20348'\n  tolerations:\n  - effect: NoSchedule\n    key: os\n    \
         operator: Equal\n    value: windows\n  - effect: NoSchedule\n    key: os\n    operator: Equal\n    \
         value: Windows\n",
        "{out}"
    );
    let out = rt.cmd(&["k8s", "runtimeclass", "runc"]).expect_fail();
    assert!(out.stderr.contains("unknown handler \"runc\""), "{out}");
    let out = rt.cmd(&["k8s", "runtimeclass", "hako", "--windows-build", "10.0.20348.2113"]).expect_fail();
    assert!(out.stderr.contains("use 10.0.20348"), "{out}");
}
