//! End-to-end tests of cgroup resources, read both from the host (the container's cgroup
//! directories) and from inside (its cgroup mount and /proc/self): memory, cpu, pids, cpuset,
//! blkio, hugetlb (on cgroup2 in this host's hybrid layout), devices, `update`, and where the
//! cgroup goes without a cgroupsPath.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(10);

/// Starts `b` (a `sleep`), returning the runtime; the caller reads files and deletes.
fn running(b: &Bundle) -> Runtime {
    let rt = Runtime::new();
    rt.create_start(b);
    rt
}

fn inside(rt: &Runtime, b: &Bundle, path: &str) -> String {
    rt.exec(b.id(), &["cat", path]).expect_ok().stdout.trim().to_string()
}

#[test]
fn memory_limit_and_reservation() {
    let b = Bundle::with_tag("memory")
        .set("/linux/resources/memory", json!({"limit": 67108864, "reservation": 33554432}))
        .args(&["sleep", "1000"]);
    let rt = running(&b);
    let rel = b.cgroup_rel();
    assert_eq!(read_cgroup_v1("memory", &rel, "memory.limit_in_bytes").as_deref(), Some("67108864"));
    assert_eq!(read_cgroup_v1("memory", &rel, "memory.soft_limit_in_bytes").as_deref(), Some("33554432"));
    assert_eq!(inside(&rt, &b, "/sys/fs/cgroup/memory/memory.limit_in_bytes"), "67108864");
    let pid = rt.pid(b.id()).to_string();
    let procs = read_cgroup_v1("memory", &rel, "cgroup.procs").unwrap_or_default();
    assert!(procs.lines().any(|l| l == pid), "init {pid} not in the memory cgroup: {procs}");
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &rel);
}

#[test]
fn cpu_shares_and_quota() {
    let b = Bundle::with_tag("cpu")
        .set("/linux/resources/cpu", json!({"shares": 512, "quota": 50000, "period": 100000}))
        .args(&["sleep", "1000"]);
    let rt = running(&b);
    let rel = b.cgroup_rel();
    assert_eq!(read_cgroup_v1("cpu", &rel, "cpu.shares").as_deref(), Some("512"));
    assert_eq!(read_cgroup_v1("cpu", &rel, "cpu.cfs_quota_us").as_deref(), Some("50000"));
    assert_eq!(read_cgroup_v1("cpu", &rel, "cpu.cfs_period_us").as_deref(), Some("100000"));
    assert_eq!(inside(&rt, &b, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), "50000");
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &rel);
}

#[test]
fn pids_limit_is_enforced() {
    let b = Bundle::with_tag("pids")
        .set("/linux/resources/pids", json!({"limit": 10}))
        .sh("cat /sys/fs/cgroup/pids/pids.max; for i in $(seq 20); do sleep 2 & done 2>&1 | grep -c \"can't fork\"; kill $(jobs -p) 2>/dev/null; exit 0");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("10"), "{out}");
    let refused: u32 = lines.get(1).and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    assert!(refused >= 1, "forks beyond pids.max were allowed: {out}");
    assert_no_leftovers(rt.root(), b.id(), &b.cgroup_rel());
}

#[test]
fn cpuset_pins_cpus_and_mems() {
    let b = Bundle::with_tag("cpuset")
        .set("/linux/resources/cpu", json!({"cpus": "0", "mems": "0"}))
        .args(&["sleep", "1000"]);
    let rt = running(&b);
    let rel = b.cgroup_rel();
    assert_eq!(read_cgroup_v1("cpuset", &rel, "cpuset.cpus").as_deref(), Some("0"));
    assert_eq!(read_cgroup_v1("cpuset", &rel, "cpuset.mems").as_deref(), Some("0"));
    let status = parse_status(&rt.exec(b.id(), &["cat", "/proc/self/status"]).expect_ok().stdout);
    assert_eq!(status.get("Cpus_allowed_list").map(String::as_str), Some("0"));
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &rel);
}

#[test]
fn blkio_throttle() {
    let root_dev = fs::metadata("/").expect("stat /").dev();
    let (major, minor) = (libc::major(root_dev), libc::minor(root_dev));
    let b = Bundle::with_tag("blkio")
        .set(
            "/linux/resources/blockIO",
            json!({"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}]}),
        )
        .args(&["sleep", "1000"]);
    let rt = running(&b);
    let rel = b.cgroup_rel();
    let throttle = match cgroup_v1_mount("blkio") {
        Some(_) => read_cgroup_v1("blkio", &rel, "blkio.throttle.read_bps_device"),
        None => cgroup_v2_mount().and_then(|m| fs::read_to_string(m.join(&rel).join("io.max")).ok()),
    }
    .unwrap_or_default();
    assert!(
        throttle.contains(&format!("{major}:{minor} 1048576"))
            || throttle.contains(&format!("{major}:{minor} rbps=1048576")),
        "{throttle:?}"
    );
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &rel);
}

/// A blkio weight works only where the host's I/O scheduler offers one (CFQ's or BFQ's weight on
/// v1, io.weight or io.bfq.weight on v2): hako applies it there and, as crun does, refuses the
/// container elsewhere (e.g. mq-deadline), naming the setting, and leaves nothing behind.
#[test]
fn blkio_weight_is_applied_or_refused_by_what_the_host_offers() {
    let b = Bundle::with_tag("blkiow").set("/linux/resources/blockIO", json!({"weight": 300})).args(&["sleep", "1000"]);
    let rel = b.cgroup_rel();
    let rt = Runtime::new();
    // On v1 the hierarchy's root shows the weight files a container's cgroup would have; on v2 only
    // the container's own cgroup does, so the outcome itself is checked against it.
    let v1 = cgroup_v1_mount("blkio");
    let host_has_weight = v1.as_ref().map(|m| m.join("blkio.weight").exists() || m.join("blkio.bfq.weight").exists());
    let out = rt.create(&b);
    if out.ok() {
        assert_ne!(
            host_has_weight,
            Some(false),
            "created with blockIO.weight although the blkio root has no weight file: {out}"
        );
        let weight = match &v1 {
            Some(_) => read_cgroup_v1("blkio", &rel, "blkio.weight")
                .or_else(|| read_cgroup_v1("blkio", &rel, "blkio.bfq.weight")),
            None => cgroup_v2_mount().and_then(|m| {
                let dir = m.join(&rel);
                fs::read_to_string(dir.join("io.bfq.weight"))
                    .or_else(|_| fs::read_to_string(dir.join("io.weight")))
                    .ok()
            }),
        };
        let w = weight.unwrap_or_else(|| panic!("the container's cgroup has no weight file although create succeeded"));
        // v1 and io.bfq.weight take the value as it is; io.weight gets runc's conversion (300 -> 2929).
        assert!(w.split_whitespace().any(|x| x == "300" || x == "2929"), "blkio weight: {w:?}");
        rt.delete_force(b.id()).expect_ok();
    } else {
        assert_ne!(host_has_weight, Some(true), "refused although the host offers a weight: {out}");
        let out = out.expect_fail();
        out.expect_msg(&["blockIO.weight"]);
        if v1.is_some() {
            out.expect_msg(&["blkio.weight", "blkio.bfq.weight"]);
        } else {
            out.expect_msg(&["io.weight"]);
        }
    }
    assert_no_leftovers(rt.root(), b.id(), &rel);
}

#[test]
fn hugetlb_limit() {
    if !std::path::Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        skip("this kernel has no 2MB huge pages");
        return;
    }
    let b = Bundle::with_tag("hugetlb")
        .set("/linux/resources/hugepageLimits", json!([{"pageSize": "2MB", "limit": 4194304}]))
        .args(&["sleep", "1000"]);
    let rt = running(&b);
    let rel = b.cgroup_rel();
    // v1 hugetlb hierarchy if the host has one, else the cgroup2 mount (hybrid or pure v2).
    let value = match cgroup_v1_mount("hugetlb") {
        Some(_) => read_cgroup_v1("hugetlb", &rel, "hugetlb.2MB.limit_in_bytes"),
        None => cgroup_v2_mount()
            .and_then(|m| fs::read_to_string(m.join(&rel).join("hugetlb.2MB.max")).ok())
            .map(|s| s.trim().to_string()),
    };
    assert_eq!(value.as_deref(), Some("4194304"));
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &rel);
}

#[test]
fn device_nodes_from_the_spec() {
    // /dev/net/tun's numbers (10:200): not a default device, harmless to open. A device listed
    // in linux.devices MUST be available: created with its mode and owner, and usable.
    let b = Bundle::with_tag("devices")
        .push(
            "/linux/devices",
            json!({"path": "/dev/mytun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o620, "uid": 1000, "gid": 1000}),
        )
        .sh("stat -c '%F %t %T %a %u %g' /dev/mytun; (exec 3<>/dev/mytun) 2>&1 | grep -c 'Operation not permitted'; exit 0");
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    // stat prints major/minor in hex.
    assert_eq!(out.stdout, "character special file a c8 620 1000 1000\n0\n", "{out}");
}

#[test]
fn devices_cgroup_rules_are_enforced() {
    // The host's /dev/loop-control (10:237, not a default device; opening it is harmless)
    // bind-mounted in and not listed in linux.devices: only the cgroup rules decide.
    let host_dev = std::path::Path::new("/dev/loop-control");
    let Ok(meta) = fs::metadata(host_dev) else {
        skip("this host has no /dev/loop-control to bind in");
        return;
    };
    let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
    let probe = "(exec 3<>/dev/bound) 2>&1 | grep -c 'Operation not permitted'; exit 0";
    let rt = Runtime::new();
    let b = Bundle::with_tag("devdeny").mount("/dev/bound", "bind", "/dev/loop-control", &["bind"]).sh(probe);
    let out = rt.run(&b).expect_ok();
    assert_eq!(out.stdout.trim(), "1", "the default deny rule did not apply: {out}");

    let b = Bundle::with_tag("devallow")
        .mount("/dev/bound", "bind", "/dev/loop-control", &["bind"])
        .push(
            "/linux/resources/devices",
            json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rw"}),
        )
        .sh(probe);
    let out = rt.run(&b).expect_ok();
    assert_eq!(out.stdout.trim(), "0", "an allowed device was refused: {out}");
}

#[test]
fn default_devices_and_dev_symlinks() {
    let b = Bundle::with_tag("defdev").sh(
        "for d in null zero full random urandom tty; do stat -c '%n %F %t %T %a' /dev/$d; done; \
         for l in fd stdin stdout stderr ptmx; do echo /dev/$l=$(readlink /dev/$l); done; \
         head -c 4 /dev/zero | od -An -tx1; echo x > /dev/null && echo null-ok; \
         (exec 3<>/dev/full; echo x >&3) 2>&1 | grep -c 'No space left'",
    );
    let rt = Runtime::new();
    let out = rt.run(&b).expect_ok();
    for want in [
        "/dev/null character special file 1 3 666",
        "/dev/zero character special file 1 5 666",
        "/dev/full character special file 1 7 666",
        "/dev/random character special file 1 8 666",
        "/dev/urandom character special file 1 9 666",
        "/dev/tty character special file 5 0 666",
        "/dev/fd=/proc/self/fd",
        "/dev/stdin=/proc/self/fd/0",
        "/dev/stdout=/proc/self/fd/1",
        "/dev/stderr=/proc/self/fd/2",
        "/dev/ptmx=pts/ptmx",
        "00 00 00 00",
        "null-ok",
    ] {
        assert!(out.stdout.lines().any(|l| l.trim() == want), "missing {want:?}: {out}");
    }
    assert_eq!(out.stdout.lines().last(), Some("1"), "/dev/full must be the full device: {out}");
}

#[test]
fn update_changes_limits_of_a_running_container() {
    let b = Bundle::with_tag("update")
        .set("/linux/resources/pids", json!({"limit": 100}))
        .set("/linux/resources/memory", json!({"limit": 67108864}))
        .args(&["sleep", "1000"]);
    let rt = running(&b);
    let rel = b.cgroup_rel();
    let id = b.id();
    rt.cmd(&["update", "--pids-limit", "50", "--memory", "134217728", id]).expect_ok();
    assert_eq!(read_cgroup_v1("pids", &rel, "pids.max").as_deref(), Some("50"));
    assert_eq!(read_cgroup_v1("memory", &rel, "memory.limit_in_bytes").as_deref(), Some("134217728"));
    assert_eq!(inside(&rt, &b, "/sys/fs/cgroup/pids/pids.max"), "50");

    let res = b.path().join("resources.json");
    fs::write(&res, json!({"pids": {"limit": 60}, "cpu": {"shares": 256}}).to_string()).expect("write");
    rt.cmd(&["update", "--resources", &res.to_string_lossy(), id]).expect_ok();
    assert_eq!(read_cgroup_v1("pids", &rel, "pids.max").as_deref(), Some("60"));
    assert_eq!(read_cgroup_v1("cpu", &rel, "cpu.shares").as_deref(), Some("256"));

    rt.cmd_stdin(&["update", "--resources", "-", id], br#"{"pids": {"limit": 70}}"#).expect_ok();
    assert_eq!(read_cgroup_v1("pids", &rel, "pids.max").as_deref(), Some("70"));

    // events --stats sees the cgroup too.
    let ev = rt.cmd(&["events", "--stats", id]).expect_ok();
    let ev: serde_json::Value = serde_json::from_str(ev.stdout.lines().next().unwrap_or_default()).expect("JSON");
    assert_eq!(ev["data"]["pids"]["limit"].as_u64(), Some(70), "{ev}");
    rt.delete_force(id).expect_ok();
    assert_no_leftovers(rt.root(), id, &rel);
}

#[test]
fn update_of_a_stopped_container_fails() {
    let b = Bundle::with_tag("updstop").args(&["true"]);
    let rt = Runtime::new();
    rt.create_start(&b);
    rt.wait_status(b.id(), "stopped", T);
    rt.cmd(&["update", "--pids-limit", "5", b.id()]).expect_fail();
    rt.delete(b.id()).expect_ok();
}

#[test]
fn hako_default_cgroup_is_hako_slash_id() {
    // Contract: without cgroupsPath the container's cgroup is /hako/<id> in each hierarchy.
    let b = Bundle::with_tag("defcg")
        .with(|c| {
            c["linux"].as_object_mut().expect("linux").remove("cgroupsPath");
        })
        .args(&["sleep", "1000"]);
    let rt = running(&b);
    let rel = format!("hako/{}", b.id());
    let procs = read_cgroup_v1("memory", &rel, "cgroup.procs").unwrap_or_default();
    assert!(procs.lines().any(|l| l == rt.pid(b.id()).to_string()), "init not in /{rel}: {procs:?}");
    rt.delete_force(b.id()).expect_ok();
    assert_no_leftovers(rt.root(), b.id(), &rel);
}
