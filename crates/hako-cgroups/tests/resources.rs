//! `apply` on this host's real cgroups, resource by resource, reading the cgroup files back; updates
//! of a cgroup with a running process; and the clear errors for what the host cannot apply. Every test
//! checks where the controller lives (v1 hierarchy, cgroup2, or nowhere) so it is meaningful on v1,
//! hybrid and pure v2 hosts.

mod common;

use std::collections::HashMap;

use common::{rd, root, unique, where_is, Guard};
use hako_cgroups::{CgroupError, Version};
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxHugepageLimitBuilder,
    LinuxMemoryBuilder, LinuxNetworkBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
    LinuxThrottleDeviceBuilder,
};

const MIB: i64 = 1024 * 1024;

fn memory(limit: Option<i64>, swap: Option<i64>) -> LinuxResources {
    let mut m = LinuxMemoryBuilder::default();
    if let Some(l) = limit {
        m = m.limit(l);
    }
    if let Some(s) = swap {
        m = m.swap(s);
    }
    LinuxResourcesBuilder::default().memory(m.build().expect("memory")).build().expect("resources")
}

fn assert_missing(err: CgroupError, controller: &str) {
    let msg = err.to_string();
    assert!(matches!(err, CgroupError::ControllerMissing { .. } | CgroupError::Unsupported { .. }), "{msg}");
    assert!(msg.contains(controller), "{msg}");
}

#[test]
fn memory_limits_apply_and_update_in_both_directions_with_a_running_process() {
    if !root() {
        return;
    }
    let mut g = Guard::new(&unique("mem"));
    // The shell's heap is charged to the cgroup (memory is charged when touched, not when moved).
    g.spawn("v=$(seq 1 30000); sleep 1000");
    let Some((version, dir)) = where_is(&g.cg, "memory") else {
        assert_missing(g.cg.apply(&memory(Some(64 * MIB), None)).expect_err("no memory"), "memory");
        return;
    };
    let r = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(64 * MIB).swap(128 * MIB).reservation(32 * MIB).build().expect("m"))
        .build()
        .expect("r");
    g.cg.apply(&r).expect("apply memory");
    let (limit_f, swap_f) = match version {
        Version::V1 => ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"),
        Version::V2 => ("memory.max", "memory.swap.max"),
    };
    // v1 memsw is memory+swap; v2 swap.max is swap alone.
    let swap_of = |l: i64, s: i64| if version == Version::V1 { s } else { s - l };
    let check = |l: i64, s: i64| {
        assert_eq!(rd(&dir, limit_f), l.to_string(), "{limit_f}");
        assert_eq!(rd(&dir, swap_f), swap_of(l, s).to_string(), "{swap_f}");
    };
    check(64 * MIB, 128 * MIB);
    let soft = if version == Version::V1 { "memory.soft_limit_in_bytes" } else { "memory.low" };
    assert_eq!(rd(&dir, soft), (32 * MIB).to_string());

    // Lower both below the current memory limit: on v1 memory must go first.
    g.cg.apply(&memory(Some(32 * MIB), Some(48 * MIB))).expect("lower");
    check(32 * MIB, 48 * MIB);
    // Raise both above the current memory+swap limit: on v1 memsw must go first.
    g.cg.apply(&memory(Some(256 * MIB), Some(512 * MIB))).expect("raise");
    check(256 * MIB, 512 * MIB);
    // Only the limit, still under memory+swap.
    g.cg.apply(&memory(Some(128 * MIB), None)).expect("limit only");
    assert_eq!(rd(&dir, limit_f), (128 * MIB).to_string());

    let err = g.cg.apply(&memory(Some(64 * MIB), Some(32 * MIB))).expect_err("swap < limit");
    assert!(err.to_string().contains("memory.swap") && err.to_string().contains("at least"), "{err}");

    if version == Version::V1 {
        // Past memory+swap without raising it: the kernel refuses, and the error says why.
        let err = g.cg.apply(&memory(Some(1024 * MIB), None)).expect_err("over memsw");
        assert!(err.to_string().contains("memory+swap"), "{err}");
        // Unlimited memory also lifts memory+swap.
        g.cg.apply(&memory(Some(-1), None)).expect("unlimited");
        let unlimited = rd(&dir, "memory.limit_in_bytes");
        assert!(unlimited.parse::<u64>().expect("n") > 1 << 60);
        assert_eq!(rd(&dir, "memory.memsw.limit_in_bytes"), unlimited);

        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .kernel_tcp(16 * MIB)
                    .swappiness(10u64)
                    .disable_oom_killer(true)
                    .build()
                    .expect("m"),
            )
            .build()
            .expect("r");
        g.cg.apply(&r).expect("v1 extras");
        assert_eq!(rd(&dir, "memory.kmem.tcp.limit_in_bytes"), (16 * MIB).to_string());
        assert_eq!(rd(&dir, "memory.swappiness"), "10");
        assert!(rd(&dir, "memory.oom_control").contains("oom_kill_disable 1"));
    } else {
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().swappiness(10u64).build().expect("m"))
            .build()
            .expect("r");
        let err = g.cg.apply(&r).expect_err("swappiness on v2");
        assert!(err.to_string().contains("swappiness"), "{err}");
    }
    let bad = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().swappiness(101u64).build().expect("m"))
        .build()
        .expect("r");
    assert!(g.cg.apply(&bad).expect_err("range").to_string().contains("between 0 and 100"));
    // check_before_update refuses a limit under the current usage.
    let usage = if version == Version::V1 { "memory.usage_in_bytes" } else { "memory.current" };
    common::wait_for("memory usage", || rd(&dir, usage).parse::<u64>().unwrap_or(0) > 8192);
    let r = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(4096i64).check_before_update(true).build().expect("m"))
        .build()
        .expect("r");
    let err = g.cg.apply(&r).expect_err("below usage");
    assert!(err.to_string().contains("checkBeforeUpdate"), "{err}");
}

#[test]
fn cpu_and_cpuset_values_are_written() {
    if !root() {
        return;
    }
    let g = Guard::new(&unique("cpu"));
    let r = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .burst(1000u64)
                .cpus("0")
                .mems("0")
                .build()
                .expect("cpu"),
        )
        .build()
        .expect("r");
    match where_is(&g.cg, "cpu") {
        Some((Version::V1, dir)) => {
            g.cg.apply(&r).expect("apply cpu");
            assert_eq!(rd(&dir, "cpu.shares"), "512");
            assert_eq!(rd(&dir, "cpu.cfs_quota_us"), "50000");
            assert_eq!(rd(&dir, "cpu.cfs_period_us"), "100000");
            assert_eq!(rd(&dir, "cpu.cfs_burst_us"), "1000");
            // Shorter period with a quota: the period write is retried after the quota.
            let upd = LinuxResourcesBuilder::default()
                .cpu(LinuxCpuBuilder::default().quota(20_000i64).period(40_000u64).build().expect("c"))
                .build()
                .expect("r");
            g.cg.apply(&upd).expect("update cpu");
            assert_eq!(rd(&dir, "cpu.cfs_quota_us"), "20000");
            assert_eq!(rd(&dir, "cpu.cfs_period_us"), "40000");
            // This test cgroup is a child of the root, which has the whole realtime budget.
            let rt = LinuxResourcesBuilder::default()
                .cpu(
                    LinuxCpuBuilder::default()
                        .realtime_period(1_000_000u64)
                        .realtime_runtime(1000i64)
                        .build()
                        .expect("c"),
                )
                .build()
                .expect("r");
            g.cg.apply(&rt).expect("realtime");
            assert_eq!(rd(&dir, "cpu.rt_runtime_us"), "1000");
            if dir.join("cpu.idle").exists() {
                let idle = LinuxResourcesBuilder::default()
                    .cpu(LinuxCpuBuilder::default().idle(1i64).build().expect("c"))
                    .build()
                    .expect("r");
                g.cg.apply(&idle).expect("idle");
                assert_eq!(rd(&dir, "cpu.idle"), "1");
            }
        }
        Some((Version::V2, dir)) => {
            g.cg.apply(&r).expect("apply cpu");
            assert_eq!(rd(&dir, "cpu.weight"), "20");
            assert_eq!(rd(&dir, "cpu.max"), "50000 100000");
            let upd = LinuxResourcesBuilder::default()
                .cpu(LinuxCpuBuilder::default().period(200_000u64).build().expect("c"))
                .build()
                .expect("r");
            g.cg.apply(&upd).expect("period only keeps the quota");
            assert_eq!(rd(&dir, "cpu.max"), "50000 200000");
        }
        None => assert_missing(g.cg.apply(&r).expect_err("no cpu"), "cpu"),
    }
    if let Some((_, dir)) = where_is(&g.cg, "cpuset") {
        assert_eq!(rd(&dir, "cpuset.cpus"), "0");
        assert_eq!(rd(&dir, "cpuset.mems"), "0");
    }
}

#[test]
fn realtime_in_a_nested_cgroup_explains_the_parent_budget() {
    if !root() {
        return;
    }
    let g = Guard::new(&format!("{}/nested", unique("rt")));
    let rt = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().realtime_runtime(1000i64).build().expect("c"))
        .build()
        .expect("r");
    let msg = g.cg.apply(&rt).expect_err("parent has no budget").to_string();
    match where_is(&g.cg, "cpu").map(|w| w.0) {
        Some(Version::V1) => assert!(msg.contains("cpu.rt_runtime_us") && msg.contains("parent"), "{msg}"),
        // cgroup v2 has no realtime bandwidth at all; no cpu controller is as clear an error.
        Some(Version::V2) => assert!(msg.contains("realtime") && msg.contains("v2"), "{msg}"),
        None => assert!(msg.contains("cpu"), "{msg}"),
    }
}

#[test]
fn pids_limit_stops_forks_in_the_running_container() {
    if !root() {
        return;
    }
    let g = Guard::new(&unique("pidlim"));
    let pids = |n: i64| {
        LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(n).build().expect("p"))
            .build()
            .expect("r")
    };
    let Some((_, dir)) = where_is(&g.cg, "pids") else {
        assert_missing(g.cg.apply(&pids(10)).expect_err("no pids"), "pids");
        return;
    };
    g.cg.apply(&pids(10)).expect("pids");
    assert_eq!(rd(&dir, "pids.max"), "10");
    g.cg.apply(&pids(0)).expect("unlimited");
    assert_eq!(rd(&dir, "pids.max"), "max");
    g.cg.apply(&pids(1)).expect("one");
    // The shell is the one allowed process: its fork fails (dash then gives up).
    let out = g.output("/bin/true && echo forked");
    assert_eq!(out, "");
    let events = rd(&dir, "pids.events");
    assert!(events.lines().any(|l| l.starts_with("max ") && l != "max 0"), "{events}");
    g.cg.apply(&pids(-1)).expect("update to unlimited");
    let out = g.output("/bin/true && echo forked");
    assert_eq!(out, "forked\n");
}

#[test]
fn block_io_throttle_and_weight() {
    if !root() {
        return;
    }
    let g = Guard::new(&unique("blkio"));
    let Some((major, minor)) = common::block_device() else {
        common::skip("no block device in /sys/block to throttle");
        return;
    };
    let t = LinuxThrottleDeviceBuilder::default().major(major).minor(minor).rate(1_048_576u64).build().expect("t");
    let r = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .throttle_read_bps_device(vec![t])
                .throttle_write_iops_device(vec![LinuxThrottleDeviceBuilder::default()
                    .major(major)
                    .minor(minor)
                    .rate(100u64)
                    .build()
                    .expect("t")])
                .build()
                .expect("b"),
        )
        .build()
        .expect("r");
    match where_is(&g.cg, "blkio").or_else(|| where_is(&g.cg, "io")) {
        Some((Version::V1, dir)) => {
            g.cg.apply(&r).expect("throttle");
            assert_eq!(rd(&dir, "blkio.throttle.read_bps_device"), format!("{major}:{minor} 1048576"));
            assert_eq!(rd(&dir, "blkio.throttle.write_iops_device"), format!("{major}:{minor} 100"));
            let weight_file = ["blkio.weight", "blkio.bfq.weight"].into_iter().find(|f| dir.join(f).exists());
            let w = LinuxResourcesBuilder::default()
                .block_io(LinuxBlockIoBuilder::default().weight(200u16).build().expect("b"))
                .build()
                .expect("r");
            match weight_file {
                Some(f) => {
                    g.cg.apply(&w).expect("weight");
                    assert!(rd(&dir, f).contains("200"), "{}", rd(&dir, f));
                }
                None => assert!(g.cg.apply(&w).expect_err("no weight").to_string().contains("blockIO.weight")),
            }
            let leaf = LinuxResourcesBuilder::default()
                .block_io(LinuxBlockIoBuilder::default().leaf_weight(200u16).build().expect("b"))
                .build()
                .expect("r");
            if !dir.join("blkio.leaf_weight").exists() {
                let msg = g.cg.apply(&leaf).expect_err("no cfq").to_string();
                assert!(msg.contains("leafWeight") && msg.contains("CFQ"), "{msg}");
            }
        }
        Some((Version::V2, dir)) => {
            g.cg.apply(&r).expect("throttle");
            let max = rd(&dir, "io.max");
            assert!(
                max.contains(&format!("{major}:{minor}")) && max.contains("rbps=1048576") && max.contains("wiops=100"),
                "{max}"
            );
        }
        None => assert_missing(g.cg.apply(&r).expect_err("no blkio"), "io"),
    }
}

#[test]
fn hugetlb_limits_go_where_the_controller_is_even_on_a_hybrid_host() {
    if !root() {
        return;
    }
    let g = Guard::new(&unique("huge"));
    let sizes: Vec<String> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let Some(kb) =
        sizes.iter().filter_map(|n| n.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse::<u64>().ok()).min()
    else {
        common::skip("this kernel offers no huge page size");
        return;
    };
    let ps = if kb % (1 << 20) == 0 { format!("{}GB", kb >> 20) } else { format!("{}MB", kb >> 10) };
    let limit = 4 * (kb as i64) * 1024;
    let r = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
            .page_size(ps.clone())
            .limit(limit)
            .build()
            .expect("h")])
        .build()
        .expect("r");
    match where_is(&g.cg, "hugetlb") {
        Some((Version::V1, dir)) => {
            g.cg.apply(&r).expect("hugetlb v1");
            assert_eq!(rd(&dir, &format!("hugetlb.{ps}.limit_in_bytes")), limit.to_string());
        }
        Some((Version::V2, dir)) => {
            g.cg.apply(&r).expect("hugetlb v2");
            assert_eq!(rd(&dir, &format!("hugetlb.{ps}.max")), limit.to_string());
            let s = g.cg.stats().expect("stats");
            assert!(s.hugetlb.contains_key(&ps), "{:?}", s.hugetlb);
        }
        None => assert_missing(g.cg.apply(&r).expect_err("no hugetlb"), "hugetlb"),
    }
    let bad = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![LinuxHugepageLimitBuilder::default().page_size("3MB").limit(1i64).build().expect("h")])
        .build()
        .expect("r");
    let msg = g.cg.apply(&bad).expect_err("3MB").to_string();
    assert!(msg.contains("3MB") && msg.contains(&ps), "{msg}");
}

#[test]
fn device_rules_are_enforced() {
    if !root() {
        return;
    }
    let g = Guard::new(&unique("dev"));
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
        ])
        .build()
        .expect("r");
    g.cg.apply(&r).expect("devices");
    if let Some((Version::V1, dir)) = where_is(&g.cg, "devices") {
        assert_eq!(rd(&dir, "devices.list"), "c 1:3 rwm");
    }
    let out = g.output(
        "if head -c1 /dev/zero >/dev/null 2>&1; then echo zero-ok; else echo zero-denied; fi; \
         if echo x >/dev/null; then echo null-ok; fi",
    );
    assert_eq!(out, "zero-denied\nnull-ok\n");
    // Update: allow everything again.
    g.allow_all_devices("allow all");
}

#[test]
fn unified_keys_follow_the_layout() {
    if !root() {
        return;
    }
    let g = Guard::new(&unique("unified"));
    let map = |k: &str, v: &str| {
        let mut m = HashMap::new();
        m.insert(k.to_string(), v.to_string());
        LinuxResourcesBuilder::default().unified(m).build().expect("r")
    };
    let v2 = g.cg.hierarchies().iter().find(|h| h.version == Version::V2).map(|h| h.dir.clone());
    let Some(dir) = v2 else {
        let msg = g.cg.apply(&map("memory.high", "1G")).expect_err("v1 only").to_string();
        assert!(msg.contains("cgroup v2"), "{msg}");
        return;
    };
    match where_is(&g.cg, "memory") {
        Some((Version::V2, _)) => {
            g.cg.apply(&map("memory.high", "67108864")).expect("memory.high");
            assert_eq!(rd(&dir, "memory.high"), "67108864");
        }
        Some((Version::V1, _)) => {
            let msg = g.cg.apply(&map("memory.high", "1G")).expect_err("memory is v1 here").to_string();
            assert!(msg.contains("v1 hierarchy") && msg.contains("memory"), "{msg}");
        }
        None => {}
    }
    g.cg.apply(&map("cgroup.max.depth", "3")).expect("core key");
    assert_eq!(rd(&dir, "cgroup.max.depth"), "3");
    let msg = g.cg.apply(&map("cgroup.no_such_file", "1")).expect_err("typo").to_string();
    assert!(msg.contains("cgroup.no_such_file"), "{msg}");
    assert!(g.cg.apply(&map("../escape.x", "1")).is_err());
}

#[test]
fn resources_for_absent_controllers_are_errors_only_when_set() {
    if !root() {
        return;
    }
    let g = Guard::new(&unique("absent"));
    let empty = LinuxResourcesBuilder::default()
        .network(LinuxNetworkBuilder::default().build().expect("n"))
        .memory(LinuxMemoryBuilder::default().build().expect("m"))
        .cpu(LinuxCpuBuilder::default().build().expect("c"))
        .block_io(LinuxBlockIoBuilder::default().build().expect("b"))
        .hugepage_limits(vec![])
        .devices(vec![])
        .build()
        .expect("r");
    g.cg.apply(&empty).expect("nothing to apply");
    if where_is(&g.cg, "net_cls").is_none() {
        let r = LinuxResourcesBuilder::default()
            .network(LinuxNetworkBuilder::default().class_id(0x100001u32).build().expect("n"))
            .build()
            .expect("r");
        let err = g.cg.apply(&r).expect_err("no net_cls");
        let msg = err.to_string();
        assert!(msg.contains("net_cls") && msg.contains("network.classID"), "{msg}");
        assert!(msg.contains("mount") || msg.contains("remove"), "{msg}");
    }
}

#[test]
fn apply_on_a_missing_cgroup_says_create_first() {
    let cg = hako_cgroups::Cgroup::resolve(Some(std::path::Path::new(&unique("never"))), "x").expect("resolve");
    let err = cg.apply(&memory(Some(64 * MIB), None)).expect_err("missing");
    assert!(matches!(err, CgroupError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("create it first"));
}
