//! End-to-end robustness tests: many containers driven in parallel, concurrent `start` and
//! `delete --force` on the same container, and `kill -9` of the runtime at several points of
//! `create` followed by `delete --force`, which must leave nothing behind.

mod common;

use std::process::Stdio;
use std::thread;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(15);

#[test]
fn parallel_containers_in_one_root() {
    let rt = Runtime::new();
    let bundles: Vec<Bundle> =
        (0..8).map(|i| Bundle::with_tag(&format!("par{i}")).with_out_dir().sh("echo $(hostname) > /out/ran")).collect();
    thread::scope(|s| {
        for b in &bundles {
            let rt = &rt;
            s.spawn(move || {
                rt.create(b).expect_ok();
                rt.start(b.id()).expect_ok();
                rt.wait_status(b.id(), "stopped", T);
                rt.delete(b.id()).expect_ok();
            });
        }
    });
    for b in &bundles {
        assert_eq!(b.read_out("ran"), "runc\n", "{} did not run", b.id());
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
    }
    let list = rt.cmd(&["list", "--quiet"]).expect_ok();
    assert!(list.stdout.trim().is_empty(), "{list}");
}

#[test]
fn parallel_state_and_exec_on_one_container() {
    let b = Bundle::with_tag("parexec").args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_start(&b);
    thread::scope(|s| {
        for i in 0..6 {
            let (rt, b) = (&rt, &b);
            s.spawn(move || {
                let out = rt.exec(b.id(), &["/bin/sh", "-c", &format!("echo exec-{i}")]).expect_ok();
                assert_eq!(out.stdout, format!("exec-{i}\n"));
                assert_eq!(rt.status(b.id()), "running");
            });
        }
    });
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn concurrent_start_and_force_delete() {
    let rt = Runtime::new();
    for round in 0..5 {
        let b = Bundle::with_tag(&format!("race{round}")).args(&["sleep", "1000"]);
        rt.create(&b).expect_ok();
        let (start, delete) = thread::scope(|s| {
            let st = s.spawn(|| rt.start(b.id()));
            let del = s.spawn(|| rt.delete_force(b.id()));
            (st.join().expect("start thread"), del.join().expect("delete thread"))
        });
        for out in [&start, &delete] {
            assert!(out.signal.is_none() && matches!(out.code, Some(0 | 1)), "crash or odd exit: {out}");
        }
        if !delete.ok() {
            // delete lost the race in a way it reported: a second one must succeed.
            rt.delete_force(b.id()).expect_ok();
        }
        assert!(!rt.state(b.id()).ok(), "the container still exists after delete --force: round {round}");
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
    }
}

#[test]
fn kill_9_of_create_then_force_delete_leaves_nothing() {
    let rt = Runtime::new();
    for delay_ms in [0u64, 1, 2, 4, 7, 10, 15, 25, 40, 80] {
        let b = Bundle::with_tag(&format!("k9-{delay_ms}")).args(&["sleep", "1000"]);
        rt.track(b.id());
        register_bundle(b.id(), b.path());
        let bundle = b.path().to_string_lossy().into_owned();
        let mut cmd = rt.command(&["create", "--bundle", &bundle, b.id()]);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn create");
        let pid = child.id() as libc::pid_t;
        thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: kill(2) on our own child, not yet reaped (wait_timeout reaps it below).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        let _ = wait_timeout(child, T);
        let del = rt.delete_force(b.id());
        assert!(del.signal.is_none(), "delete --force crashed after kill -9 at {delay_ms} ms: {del}");
        if !del.ok() {
            assert!(!rt.state(b.id()).ok(), "delete --force failed but the container exists ({delay_ms} ms): {del}");
        }
        assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
    }
}

#[test]
fn kill_9_of_foreground_run_then_force_delete_leaves_nothing() {
    let rt = Runtime::new();
    let b = Bundle::with_tag("k9run").args(&["sleep", "1000"]);
    rt.track(b.id());
    register_bundle(b.id(), b.path());
    let bundle = b.path().to_string_lossy().into_owned();
    let mut cmd = rt.command(&["run", "--bundle", &bundle, b.id()]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let child = cmd.spawn().expect("spawn run");
    let pid = child.id() as libc::pid_t;
    rt.wait_status(b.id(), "running", T);
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let _ = wait_timeout(child, T);
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

/// A `create` killed before its first save leaves a directory without state.json: `state` and `list` say
/// the container does not exist, so `create` of the same id must agree and succeed.
#[test]
fn a_directory_left_by_a_create_killed_before_its_first_save_does_not_block_the_id() {
    let rt = Runtime::new();
    let b = Bundle::with_tag("abandoned").args(&["sleep", "1000"]);
    rt.track(b.id());
    std::fs::create_dir_all(rt.root().join(b.id())).unwrap();
    rt.state(b.id()).expect_fail().expect_msg(&["does not exist"]);
    let list = rt.cmd(&["list", "--quiet"]).expect_ok();
    assert!(!list.stdout.lines().any(|l| l == b.id()), "{list}");
    rt.create(&b).expect_ok();
    assert_eq!(rt.status(b.id()), "created");
    // A container that exists keeps its id.
    rt.create(&b).expect_fail().expect_msg(&["already exists"]);
    rt.delete_force(b.id()).expect_ok();
}
