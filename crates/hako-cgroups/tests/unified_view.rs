//! The pure cgroup v2 code paths, exercised for real on a hybrid host: a [`Cgroup`] resolved from
//! only the cgroup2 line of /proc/self/mountinfo sees a unified host whose hierarchy holds just the
//! controllers the hybrid v2 mount has (hugetlb here). That covers cgroup.freeze, cgroup.kill, v2
//! cgroup.procs, the eBPF device program, v2 hugetlb and the errors for missing controllers. On a pure
//! v2 host the same tests run on the host's own (unified) view; a v1-only host cannot run them.

mod common;

use std::path::Path;

use common::{rd, root, unique, Guard};
use hako_cgroups::{Cgroup, CgroupError, Layout, Version};
use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxResourcesBuilder};

/// A unified-only view of this host: the v2 mount alone on a hybrid host, the host itself on a
/// pure v2 host; `None` (after [`common::skip`]) on a host without cgroup2.
fn unified_view(path: &str) -> Option<Cgroup> {
    if !root() {
        return None;
    }
    let cg = match Cgroup::layout().expect("cgroup layout") {
        Layout::Unified => Cgroup::resolve(Some(Path::new(path)), "x").expect("resolve"),
        Layout::Hybrid => {
            let mi = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
            let v2: String = mi.lines().filter(|l| l.contains(" - cgroup2 ")).map(|l| format!("{l}\n")).collect();
            let me = std::fs::read_to_string("/proc/self/cgroup").expect("self");
            Cgroup::resolve_with(&v2, &me, Some(Path::new(path)), "x").expect("resolve")
        }
        other => {
            common::skip(&format!("needs cgroup2, and this host's layout is {other:?}"));
            return None;
        }
    };
    assert_eq!(cg.host_layout(), Layout::Unified);
    assert_eq!(cg.hierarchies().len(), 1);
    assert_eq!(cg.hierarchies()[0].version, Version::V2);
    Some(cg)
}

#[test]
fn processes_freeze_and_kill_through_cgroup2_files() {
    let Some(cg) = unified_view(&unique("v2life")) else {
        return;
    };
    let mut g = Guard::create(cg);
    let dir = g.cg.hierarchies()[0].dir.clone();
    let pid = g.spawn("i=0; while [ $i -lt 5000 ]; do i=$((i+1)); done; exec sleep 1000");
    // cpu.stat's usage counters exist on cgroup2 without the cpu controller.
    common::wait_for("cpu usage", || g.cg.stats().map(|s| s.cpu.usage.total > 0).unwrap_or(false));
    assert_eq!(g.cg.pids().expect("pids"), vec![pid]);
    assert_eq!(rd(&dir, "cgroup.procs"), pid.to_string());

    g.cg.freeze().expect("freeze");
    assert!(g.cg.is_frozen().expect("state"));
    assert!(rd(&dir, "cgroup.events").contains("frozen 1"));
    g.cg.thaw().expect("thaw");
    assert!(!g.cg.is_frozen().expect("state"));
    assert!(rd(&dir, "cgroup.events").contains("frozen 0"));

    // SIGKILL goes through cgroup.kill.
    g.cg.kill_all(libc::SIGKILL).expect("cgroup.kill");
    let mut child = g.children.pop().expect("child");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().expect("wait").signal(), Some(libc::SIGKILL));
    g.cg.destroy().expect("destroy");
    assert!(!dir.exists());
}

#[test]
fn device_rules_become_an_ebpf_program() {
    let Some(cg) = unified_view(&unique("v2dev")) else {
        return;
    };
    let g = Guard::create(cg);
    let r = LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().expect("d"),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1i64)
                .minor(3i64)
                .access("rwm")
                .build()
                .expect("d"),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1i64)
                .minor(9i64)
                .access("r")
                .build()
                .expect("d"),
        ])
        .build()
        .expect("r");
    g.cg.apply(&r).expect("attach device program");
    let out = g.output(
        "if head -c1 /dev/zero >/dev/null 2>&1; then echo zero-ok; else echo zero-denied; fi; \
         if echo x >/dev/null; then echo null-ok; fi; \
         if head -c1 /dev/urandom >/dev/null 2>&1; then echo urandom-read; fi; \
         if echo x 2>/dev/null >/dev/urandom; then echo urandom-write; else echo urandom-nowrite; fi",
    );
    assert_eq!(out, "zero-denied\nnull-ok\nurandom-read\nurandom-nowrite\n");
    // An update replaces the program instead of stacking another one.
    g.allow_all_devices("replace program");
}

#[test]
fn controllers_missing_from_cgroup2_are_clear_errors() {
    let Some(cg) = unified_view(&unique("v2miss")) else {
        return;
    };
    let g = Guard::create(cg);
    let r = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(64i64 << 20).build().expect("m"))
        .build()
        .expect("r");
    let h = &g.cg.hierarchies()[0];
    let offered = std::fs::read_to_string(h.mount_point.join("cgroup.controllers")).unwrap_or_default();
    if offered.split_whitespace().any(|c| c == "memory") {
        // A pure v2 host with the memory controller: the limit applies.
        g.cg.apply(&r).expect("memory limit where cgroup2 offers the controller");
        assert_eq!(rd(&h.dir, "memory.max"), (64u64 << 20).to_string());
        return;
    }
    let err = g.cg.apply(&r).expect_err("no memory controller in this view");
    assert!(matches!(err, CgroupError::ControllerMissing { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("memory.limit") && msg.contains("cgroup.controllers") && msg.contains("remove"), "{msg}");
    let kernel =
        LinuxResourcesBuilder::default().memory(LinuxMemoryBuilder::default().build().expect("m")).build().expect("r");
    g.cg.apply(&kernel).expect("an empty memory section needs no controller");
}
