//! End-to-end tests of the container lifecycle (runtime-spec runtime.md): create/start/state/
//! kill/delete, foreground and detached `run`, pid files, `list`, `ps`, `pause`/`resume`,
//! `events`, `spec`, and stdio passthrough with `terminal: false`.

mod common;

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(10);

#[test]
fn state_reports_each_status() {
    let b = Bundle::with_tag("state").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = b.id().to_string();

    rt.create(&b).expect_ok();
    let st = rt.state_json(&id);
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], id.as_str());
    assert!(st["ociVersion"].as_str().is_some_and(|v| v.starts_with("1.")), "{st}");
    let pid = st["pid"].as_i64().expect("pid in created state");
    assert!(pid > 1, "{st}");
    assert!(fs::metadata(format!("/proc/{pid}")).is_ok(), "init process {pid} should exist");
    let bundle = fs::canonicalize(b.path()).expect("canonical bundle");
    assert_eq!(st["bundle"].as_str().map(std::path::PathBuf::from), Some(bundle), "{st}");

    rt.start(&id).expect_ok();
    let st = rt.state_json(&id);
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["pid"].as_i64(), Some(pid), "start must not change the init pid");

    rt.kill(&id, "KILL").expect_ok();
    rt.wait_status(&id, "stopped", T);

    rt.delete(&id).expect_ok();
    rt.state(&id).expect_fail();
    assert_no_leftovers(rt.root(), &id, &b.cgroup_rel());
}

#[test]
fn create_applies_everything_but_the_process() {
    let mut b = Bundle::with_tag("create").with_out_dir().sh("touch /out/started; sleep 1000");
    let rt = Runtime::new();
    let id = b.id().to_string();
    rt.create(&b).expect_ok();
    // The container's cgroup exists already at create time.
    assert!(
        read_cgroup_v1("pids", &b.cgroup_rel(), "cgroup.procs").is_some(),
        "the pids cgroup should exist after create"
    );
    thread::sleep(Duration::from_millis(300));
    assert!(!b.out_dir().join("started").exists(), "process.args ran before start");

    // Later edits of config.json have no effect.
    b.edit(|c| c["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "touch /out/edited"]));
    rt.start(&id).expect_ok();
    assert!(wait_until(T, || b.out_dir().join("started").exists()), "process never started");
    assert!(!b.out_dir().join("edited").exists(), "an edit after create took effect");
    rt.delete_force(&id).expect_ok();
    assert_no_leftovers(rt.root(), &id, &b.cgroup_rel());
}

#[test]
fn start_twice_fails_without_effect() {
    let b = Bundle::with_tag("start2").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = b.id();
    rt.create_start(&b);
    let pid = rt.pid(id);
    rt.start(id).expect_fail();
    let st = rt.state_json(id);
    assert_eq!(st["status"], "running");
    assert_eq!(st["pid"].as_i64(), Some(pid as i64));
    rt.delete_force(id).expect_ok();
}

#[test]
fn start_of_stopped_container_fails() {
    let b = Bundle::with_tag("startstopped").args(&["true"]);
    let rt = Runtime::new();
    let id = b.id();
    rt.create_start(&b);
    rt.wait_status(id, "stopped", T);
    rt.start(id).expect_fail();
    assert_eq!(rt.status(id), "stopped");
    rt.delete(id).expect_ok();
    assert_no_leftovers(rt.root(), id, &b.cgroup_rel());
}

#[test]
fn delete_of_running_container_requires_force() {
    let b = Bundle::with_tag("delrun").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = b.id();
    rt.create_start(&b);
    let pid = rt.pid(id);
    rt.delete(id).expect_fail();
    assert_eq!(rt.status(id), "running", "a refused delete must have no effect");
    assert!(fs::metadata(format!("/proc/{pid}")).is_ok(), "the container process was killed");
    rt.delete_force(id).expect_ok();
    rt.state(id).expect_fail();
    assert_no_leftovers(rt.root(), id, &b.cgroup_rel());
}

#[test]
fn kill_of_stopped_container_fails_but_kill_all_succeeds() {
    let b = Bundle::with_tag("killstopped").args(&["true"]);
    let rt = Runtime::new();
    let id = b.id();
    rt.create_start(&b);
    rt.wait_status(id, "stopped", T);
    rt.kill(id, "KILL").expect_fail();
    // containerd's shim sends exactly this after every exit; runc exits 0.
    rt.cmd(&["kill", "--all", id, "9"]).expect_ok();
    assert_eq!(rt.status(id), "stopped");
    rt.delete(id).expect_ok();
    assert_no_leftovers(rt.root(), id, &b.cgroup_rel());
}

#[test]
fn kill_accepts_names_and_numbers() {
    let b = Bundle::with_tag("killsig")
        .with_out_dir()
        .sh("trap 'echo USR1 >> /out/sig' USR1; trap 'echo TERM >> /out/sig; exit 0' TERM; \
         touch /out/ready; while true; do sleep 0.05; done");
    let rt = Runtime::new();
    let id = b.id();
    rt.create_start(&b);
    assert!(wait_until(T, || b.out_dir().join("ready").exists()));
    let count = |name: &str| {
        fs::read_to_string(b.out_dir().join("sig")).unwrap_or_default().lines().filter(|l| *l == name).count()
    };
    for (n, sig) in ["USR1", "SIGUSR1", "10"].iter().enumerate() {
        rt.kill(id, sig).expect_ok();
        assert!(wait_until(T, || count("USR1") == n + 1), "signal {sig} was not delivered as SIGUSR1");
    }
    // No signal: SIGTERM.
    rt.cmd(&["kill", id]).expect_ok();
    rt.wait_status(id, "stopped", T);
    assert_eq!(count("TERM"), 1);
    rt.delete(id).expect_ok();
    assert_no_leftovers(rt.root(), id, &b.cgroup_rel());
}

#[test]
fn kill_all_signals_every_process() {
    let b = Bundle::with_tag("killall").with_out_dir().sh("sleep 1000 & sleep 1000 & touch /out/ready; wait");
    let rt = Runtime::new();
    let id = b.id();
    rt.create_start(&b);
    assert!(wait_until(T, || b.out_dir().join("ready").exists()));
    let procs = || read_cgroup_v1("pids", &b.cgroup_rel(), "cgroup.procs").unwrap_or_default();
    assert!(procs().lines().count() >= 3, "expected sh and two sleeps: {}", procs());
    rt.cmd(&["kill", "--all", id, "KILL"]).expect_ok();
    rt.wait_status(id, "stopped", T);
    assert!(wait_until(T, || procs().trim().is_empty()), "processes left: {}", procs());
    rt.delete(id).expect_ok();
    assert_no_leftovers(rt.root(), id, &b.cgroup_rel());
}

#[test]
fn foreground_run_returns_exit_status_and_deletes() {
    let b = Bundle::with_tag("runexit").sh("echo out-line; echo err-line >&2; exit 7");
    let rt = Runtime::new();
    let out = rt.run(&b);
    assert_eq!(out.code, Some(7), "{out}");
    assert!(out.stdout.contains("out-line"), "{out}");
    assert!(out.stderr.contains("err-line"), "{out}");
    rt.state(b.id()).expect_fail();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn foreground_run_killed_reports_128_plus_signal() {
    let b = Bundle::with_tag("runkill").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = b.id().to_string();
    thread::scope(|s| {
        let h = s.spawn(|| rt.run(&b));
        rt.wait_status(&id, "running", T);
        rt.kill(&id, "KILL").expect_ok();
        let out = h.join().expect("run thread");
        assert_eq!(out.code, Some(137), "{out}");
    });
    assert_no_leftovers(rt.root(), &id, &b.cgroup_rel());
}

#[test]
fn run_detach_and_keep() {
    let b = Bundle::with_tag("rundetach").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = b.id();
    let started = std::time::Instant::now();
    rt.run_id(id, &b, &["--detach"]).expect_ok();
    assert!(started.elapsed() < Duration::from_secs(5), "run --detach waited for the container");
    assert_eq!(rt.status(id), "running");
    rt.delete_force(id).expect_ok();
    assert_no_leftovers(rt.root(), id, &b.cgroup_rel());

    let b2 = Bundle::with_tag("runkeep").sh("exit 3");
    let out = rt.run_id(b2.id(), &b2, &["--keep"]);
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(rt.status(b2.id()), "stopped", "--keep must keep the stopped container");
    rt.delete(b2.id()).expect_ok();
    assert_no_leftovers(rt.root(), b2.id(), &b2.cgroup_rel());
}

#[test]
fn pid_file_holds_the_init_pid() {
    let b = Bundle::with_tag("pidfile").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let pidfile = b.path().join("init.pid");
    let pf = pidfile.to_string_lossy().into_owned();
    rt.create_id(b.id(), &b, &["--pid-file", &pf]).expect_ok();
    let text = fs::read_to_string(&pidfile).expect("pid file written by create");
    let pid: i32 = text.trim().parse().expect("pid file holds a number");
    assert_eq!(pid, rt.pid(b.id()));
    rt.delete_force(b.id()).expect_ok();
}

#[test]
fn bundle_defaults_to_current_directory() {
    let b = Bundle::with_tag("cwdbundle").args(&["true"]);
    let rt = Runtime::new();
    rt.track(b.id());
    let mut c = rt.command(&["create", b.id()]);
    c.current_dir(b.path());
    run_captured(c, None, DEFAULT_TIMEOUT).expect_ok();
    let st = rt.state_json(b.id());
    assert_eq!(
        st["bundle"].as_str().map(std::path::PathBuf::from),
        Some(fs::canonicalize(b.path()).expect("canonical"))
    );
    rt.delete_force(b.id()).expect_ok();
}

#[test]
fn spec_writes_a_default_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = Runtime::new();
    let mut c = rt.command(&["spec"]);
    c.current_dir(dir.path());
    run_captured(c, None, DEFAULT_TIMEOUT).expect_ok();
    let cfg: Value = serde_json::from_str(&fs::read_to_string(dir.path().join("config.json")).expect("config.json"))
        .expect("spec writes JSON");
    assert!(cfg["ociVersion"].as_str().is_some_and(|v| v.starts_with("1.")), "{cfg}");
    assert_eq!(cfg["root"]["path"], "rootfs");
    assert_eq!(cfg["process"]["terminal"], true);
    let ns: Vec<&str> =
        cfg["linux"]["namespaces"].as_array().expect("namespaces").iter().filter_map(|n| n["type"].as_str()).collect();
    for want in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&want), "default spec lacks the {want} namespace: {ns:?}");
    }
    // A second spec refuses to overwrite it.
    let mut c = rt.command(&["spec"]);
    c.current_dir(dir.path());
    run_captured(c, None, DEFAULT_TIMEOUT).expect_fail();

    // --bundle writes elsewhere.
    let other = tempfile::tempdir().expect("tempdir");
    let o = other.path().to_string_lossy().into_owned();
    rt.cmd(&["spec", "--bundle", &o]).expect_ok();
    assert!(other.path().join("config.json").exists());
}

#[test]
fn list_in_table_json_and_quiet_formats() {
    let rt = Runtime::new();
    let a = Bundle::with_tag("lista").args(&["sleep", "1000"]);
    let b = Bundle::with_tag("listb").args(&["sleep", "1000"]);
    rt.create(&a).expect_ok();
    rt.create_start(&b);

    let table = rt.cmd(&["list"]).expect_ok().stdout;
    let header = table.lines().next().unwrap_or_default();
    assert!(header.contains("ID") && header.contains("STATUS"), "{table}");
    let row = |id: &str| table.lines().find(|l| l.split_whitespace().next() == Some(id)).map(String::from);
    assert!(row(a.id()).is_some_and(|r| r.contains("created")), "{table}");
    assert!(row(b.id()).is_some_and(|r| r.contains("running")), "{table}");

    let js: Value = serde_json::from_str(&rt.cmd(&["list", "--format", "json"]).expect_ok().stdout)
        .expect("list --format json prints JSON");
    let arr = js.as_array().expect("a JSON array");
    assert_eq!(arr.len(), 2, "{js}");
    let find = |id: &str| arr.iter().find(|c| c["id"] == id).cloned().unwrap_or(Value::Null);
    assert_eq!(find(a.id())["status"], "created", "{js}");
    assert_eq!(find(b.id())["status"], "running", "{js}");
    assert_eq!(find(b.id())["pid"].as_i64(), Some(rt.pid(b.id()) as i64), "{js}");

    let quiet = rt.cmd(&["list", "--quiet"]).expect_ok().stdout;
    let mut ids: Vec<&str> = quiet.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    ids.sort();
    let mut want = vec![a.id(), b.id()];
    want.sort();
    assert_eq!(ids, want);
    rt.delete_force(a.id()).expect_ok();
    rt.delete_force(b.id()).expect_ok();
}

#[test]
fn ps_in_json_and_table_formats() {
    let b = Bundle::with_tag("ps").with_out_dir().sh("sleep 1000 & touch /out/ready; wait");
    let rt = Runtime::new();
    let id = b.id();
    rt.create_start(&b);
    assert!(wait_until(T, || b.out_dir().join("ready").exists()));
    let init = rt.pid(id) as i64;
    let js: Value = serde_json::from_str(&rt.cmd(&["ps", "--format", "json", id]).expect_ok().stdout)
        .expect("ps --format json prints JSON");
    let pids: Vec<i64> = js.as_array().expect("array of pids").iter().filter_map(Value::as_i64).collect();
    assert!(pids.contains(&init), "{pids:?} lacks init {init}");
    assert!(pids.len() >= 2, "expected sh and sleep: {pids:?}");

    let table = rt.cmd(&["ps", id]).expect_ok().stdout;
    assert!(table.lines().next().is_some_and(|h| h.contains("PID")), "{table}");
    assert!(table.contains(&init.to_string()), "{table}");
    assert!(table.contains("sleep"), "{table}");
    rt.delete_force(id).expect_ok();
}

#[test]
fn pause_and_resume_freeze_the_cgroup() {
    let b = Bundle::with_tag("pause").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = b.id();
    rt.create_start(&b);
    rt.cmd(&["pause", id]).expect_ok();
    assert_eq!(rt.status(id), "paused");
    assert_eq!(read_cgroup_v1("freezer", &b.cgroup_rel(), "freezer.state").as_deref(), Some("FROZEN"));
    rt.cmd(&["resume", id]).expect_ok();
    assert_eq!(rt.status(id), "running");
    assert_eq!(read_cgroup_v1("freezer", &b.cgroup_rel(), "freezer.state").as_deref(), Some("THAWED"));
    rt.delete_force(id).expect_ok();
    assert_no_leftovers(rt.root(), id, &b.cgroup_rel());
}

#[test]
fn paused_container_can_be_force_deleted() {
    let b = Bundle::with_tag("pausedel").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_start(&b);
    rt.cmd(&["pause", b.id()]).expect_ok();
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn events_stats_reports_cgroup_data() {
    let b = Bundle::with_tag("events").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = b.id();
    rt.create_start(&b);
    let out = rt.cmd(&["events", "--stats", id]).expect_ok();
    let line = out.stdout.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let ev: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("events JSON: {e}: {out}"));
    assert_eq!(ev["type"], "stats", "{ev}");
    assert_eq!(ev["id"], id, "{ev}");
    assert!(ev["data"]["pids"]["current"].as_u64().is_some_and(|n| n >= 1), "{ev}");
    assert!(ev["data"]["memory"]["usage"]["usage"].as_u64().is_some_and(|n| n > 0), "{ev}");
    assert!(ev["data"]["cpu"]["usage"]["total"].as_u64().is_some(), "{ev}");
    rt.delete_force(id).expect_ok();
}

#[test]
fn stdio_is_passed_through_untouched() {
    // terminal: false: create hands the container the runtime's own stdin/stdout/stderr (the
    // same pipes, not copies), and they keep working after create exits.
    let b = Bundle::with_tag("stdio").sh("for f in 0 1 2; do readlink /proc/self/fd/$f; done; cat; echo to-stderr >&2");
    let rt = Runtime::new();
    rt.track(b.id());
    let bundle = b.path().to_string_lossy().into_owned();
    let mut cmd = rt.command(&["create", "--bundle", &bundle, b.id()]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn create");
    let ino = |fd: i32| fs::metadata(format!("/proc/self/fd/{fd}")).expect("stat pipe").ino();
    let in_ino = ino(child.stdin.as_ref().expect("stdin").as_raw_fd());
    let out_ino = ino(child.stdout.as_ref().expect("stdout").as_raw_fd());
    let err_ino = ino(child.stderr.as_ref().expect("stderr").as_raw_fd());
    let mut stdin = child.stdin.take().expect("stdin");
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let status = wait_timeout(child, DEFAULT_TIMEOUT).expect("create finished");
    assert!(status.success(), "create failed");
    rt.start(b.id()).expect_ok();
    {
        use std::io::Write;
        stdin.write_all(b"through-stdin\n").expect("write stdin");
        drop(stdin);
    }
    let h = thread::spawn(move || {
        let mut s = String::new();
        se.read_to_string(&mut s).map(|_| s)
    });
    let mut stdout = String::new();
    so.read_to_string(&mut stdout).expect("read stdout");
    let stderr = h.join().expect("stderr thread").expect("read stderr");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 4, "{stdout} {stderr}");
    assert_eq!(lines[0], format!("pipe:[{in_ino}]"), "stdin must be the runtime's own pipe");
    assert_eq!(lines[1], format!("pipe:[{out_ino}]"), "stdout must be the runtime's own pipe");
    assert_eq!(lines[2], format!("pipe:[{err_ino}]"), "stderr must be the runtime's own pipe");
    assert_eq!(lines[3], "through-stdin");
    assert!(stderr.contains("to-stderr"), "{stderr}");
    rt.wait_status(b.id(), "stopped", T);
    rt.delete(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn foreground_run_forwards_stdio() {
    let b = Bundle::with_tag("runstdio").sh("cat; echo done");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    assert_eq!(out.stdout, "done\n", "stdin is /dev/null for the harness, so cat prints nothing");
    let out = rt.cmd_stdin(&["run", "--bundle", &b.path().to_string_lossy(), b.id()], b"line-1\nline-2\n");
    assert_eq!(out.clone().expect_ok().stdout, "line-1\nline-2\ndone\n");
}

#[test]
fn create_flags_no_new_keyring_and_no_pivot() {
    let b = Bundle::with_tag("flags").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_id(b.id(), &b, &["--no-new-keyring", "--no-pivot"]).expect_ok();
    rt.start(b.id()).expect_ok();
    assert_eq!(rt.status(b.id()), "running");
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn run_writes_the_pid_file() {
    let b = Bundle::with_tag("runpid").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let pidfile = b.path().join("run.pid");
    let pf = pidfile.to_string_lossy().into_owned();
    rt.run_id(b.id(), &b, &["--detach", "--pid-file", &pf]).expect_ok();
    let pid: i32 = fs::read_to_string(&pidfile).expect("pid file").trim().parse().expect("pid");
    assert_eq!(pid, rt.pid(b.id()));
    rt.delete_force(b.id()).expect_ok();
}
