//! End-to-end tests of `exec`: it joins the container's namespaces and cgroup, runs args or a
//! `--process` file, honours `--env`, `--cwd`, `--user`, `--cap`, `--detach` with
//! `--pid-file`, passes stdin through, returns the process's exit status, and refuses a
//! stopped container.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(10);

fn running(tag: &str) -> (Bundle, Runtime) {
    let b = Bundle::with_tag(tag).set("/hostname", json!("exec-host")).args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_start(&b);
    (b, rt)
}

#[test]
fn exec_joins_the_container() {
    let (b, rt) = running("execns");
    let pid = rt.pid(b.id());
    let out = rt.exec_sh(
        b.id(),
        "hostname; echo $$; for n in pid net ipc uts mnt; do readlink /proc/self/ns/$n; done; \
         grep ':memory:' /proc/self/cgroup",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "exec-host", "{out}");
    assert_ne!(lines[1], "1", "exec'd process must not be pid 1: {out}");
    for (i, n) in ["pid", "net", "ipc", "uts", "mnt"].iter().enumerate() {
        let theirs = fs::read_link(format!("/proc/{pid}/ns/{n}")).expect("ns").to_string_lossy().into_owned();
        assert_eq!(lines[2 + i], theirs, "{n} namespace differs from the init's");
    }
    assert!(lines[7].ends_with(&b.cgroup_path()), "exec'd process not in the container cgroup: {out}");
    rt.delete_force(b.id()).expect_ok();
}

#[test]
fn exec_returns_the_exit_status_and_passes_stdin() {
    let (b, rt) = running("execstatus");
    assert_eq!(rt.exec(b.id(), &["/bin/sh", "-c", "exit 3"]).code, Some(3));
    let out = rt.cmd_stdin(&["exec", b.id(), "cat"], b"piped-in\n").expect_ok();
    assert_eq!(out.stdout, "piped-in\n");
    let out = rt.exec(b.id(), &["/bin/sh", "-c", "echo to-err >&2"]).expect_ok();
    assert!(out.stderr.lines().any(|l| l == "to-err"), "{out}");
    rt.delete_force(b.id()).expect_ok();
}

#[test]
fn exec_env_cwd_and_user_flags() {
    let (b, rt) = running("execflags");
    let out = rt
        .cmd(&[
            "exec",
            "--env",
            "FOO=bar",
            "--cwd",
            "/tmp",
            "--user",
            "1000:1000",
            b.id(),
            "/bin/sh",
            "-c",
            "echo $FOO $(pwd) $(id -u) $(id -g) $PATH",
        ])
        .expect_ok();
    let v: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(&v[..4], ["bar", "/tmp", "1000", "1000"], "{out}");
    // The config's environment is the base the flags add to.
    assert!(v.get(4).is_some_and(|p| p.contains("/bin")), "PATH from the config is missing: {out}");
    rt.delete_force(b.id()).expect_ok();
}

#[test]
fn exec_process_file() {
    let (b, rt) = running("execprocess");
    let process = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [10]},
        "args": ["/bin/sh", "-c", "echo $A $(pwd) $(id -u) $(id -G); grep NoNewPrivs /proc/self/status"],
        "env": ["PATH=/bin", "A=from-process-file"],
        "cwd": "/home/user",
        "noNewPrivileges": true,
        "capabilities": {"bounding": ["CAP_KILL"], "effective": [], "permitted": [], "inheritable": [], "ambient": []}
    });
    let file = b.path().join("process.json");
    fs::write(&file, process.to_string()).expect("write process.json");
    let out = rt.cmd(&["exec", "--process", &file.to_string_lossy(), b.id()]).expect_ok();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("from-process-file /home/user 1000 1000 10"), "{out}");
    assert_eq!(lines.next().map(|l| l.split_whitespace().collect::<Vec<_>>()), Some(vec!["NoNewPrivs:", "1"]));
    rt.delete_force(b.id()).expect_ok();
}

#[test]
fn exec_cap_adds_a_capability() {
    let (b, rt) = running("execcap");
    let eff = |out: &CmdOut| {
        let st = parse_status(&out.stdout);
        u64::from_str_radix(&st["CapEff"], 16).expect("hex")
    };
    let plain = rt.exec(b.id(), &["cat", "/proc/self/status"]).expect_ok();
    let with = rt.cmd(&["exec", "--cap", "CAP_NET_RAW", b.id(), "cat", "/proc/self/status"]).expect_ok();
    let raw = 1u64 << cap_bit("CAP_NET_RAW");
    assert_eq!(eff(&plain) & raw, 0, "CAP_NET_RAW is not in the config");
    assert_eq!(eff(&with) & raw, raw, "--cap CAP_NET_RAW was not granted");
    rt.delete_force(b.id()).expect_ok();
}

#[test]
fn exec_detach_writes_the_pid_file() {
    let (b, rt) = running("execdetach");
    let pidfile = b.path().join("exec.pid");
    let pf = pidfile.to_string_lossy().into_owned();
    let t0 = std::time::Instant::now();
    rt.cmd(&["exec", "--detach", "--pid-file", &pf, b.id(), "sleep", "1000"]).expect_ok();
    assert!(t0.elapsed() < Duration::from_secs(5), "exec --detach waited for the process");
    let pid: i32 = fs::read_to_string(&pidfile).expect("pid file").trim().parse().expect("pid");
    let init = rt.pid(b.id());
    let ns = |p: i32| fs::read_link(format!("/proc/{p}/ns/pid")).expect("ns");
    assert_eq!(ns(pid), ns(init), "detached exec is not in the container's pid namespace");
    let procs: serde_json::Value =
        serde_json::from_str(&rt.cmd(&["ps", "--format", "json", b.id()]).expect_ok().stdout).expect("ps json");
    assert!(procs.as_array().is_some_and(|a| a.iter().any(|p| p.as_i64() == Some(pid as i64))), "{procs}");
    rt.delete_force(b.id()).expect_ok();
    assert!(
        wait_until(T, || fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))),
        "the exec'd process outlived delete --force"
    );
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn exec_in_a_stopped_container_fails() {
    let b = Bundle::with_tag("execstopped").args(&["true"]);
    let rt = Runtime::new();
    rt.create_start(&b);
    rt.wait_status(b.id(), "stopped", T);
    rt.exec(b.id(), &["true"]).expect_fail();
    rt.delete(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn exec_of_a_missing_binary_fails_without_side_effects() {
    let (b, rt) = running("execmissing");
    rt.exec(b.id(), &["/no/such/binary"]).expect_fail();
    assert_eq!(rt.status(b.id()), "running");
    rt.delete_force(b.id()).expect_ok();
}
