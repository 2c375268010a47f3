//! The life cycle on this host's real cgroups: resolve, create, add_pid, pids, freeze/thaw, stats,
//! kill_all, destroy (and what it leaves behind), serialisation into state and back.

mod common;

use std::path::Path;

use common::{rd, root, unique, where_is, Guard};
use hako_cgroups::{Cgroup, Layout, Version};

#[test]
fn layout_matches_the_mount_table() {
    let layout = Cgroup::layout().expect("layout");
    let mi = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let v2 = mi.lines().any(|l| l.contains(" - cgroup2 "));
    let v1 = mi.lines().any(|l| {
        l.contains(" - cgroup ")
            && ["memory", "cpu", "pids", "freezer"]
                .iter()
                .any(|c| l.ends_with(&format!(",{c}")) || l.contains(&format!(",{c},")))
    });
    let expected = match (v1, v2) {
        (true, true) => Layout::Hybrid,
        (true, false) => Layout::V1,
        (false, _) => Layout::Unified,
    };
    assert_eq!(layout, expected);
    assert_eq!(layout.has_v2(), v2);
    let ctrls = Cgroup::host_controllers().expect("controllers");
    assert!(ctrls.iter().any(|c| c == "pids" || c == "memory"), "{ctrls:?}");
}

#[test]
fn resolve_follows_cgroups_path_semantics_without_creating_anything() {
    let cg = Cgroup::resolve(None, "resolve-only-x").expect("default");
    for h in cg.hierarchies() {
        assert_eq!(h.path, Path::new("/hako/resolve-only-x"));
        assert!(h.dir.starts_with(&h.mount_point), "{}", h.dir.display());
        assert!(!h.dir.exists(), "resolve must not create {}", h.dir.display());
    }
    let abs = Cgroup::resolve(Some(Path::new("/a/b")), "x").expect("absolute");
    assert!(abs.hierarchies().iter().all(|h| h.path == Path::new("/a/b")));

    // Relative: below this process's own cgroup in each hierarchy.
    let me = std::fs::read_to_string("/proc/self/cgroup").expect("self cgroup");
    let rel = Cgroup::resolve(Some(Path::new("sub/c")), "x").expect("relative");
    for h in rel.hierarchies() {
        let key = match h.version {
            Version::V2 => String::new(),
            Version::V1 => h.controllers.join(","),
        };
        let own = me
            .lines()
            .filter_map(|l| {
                let mut p = l.splitn(3, ':');
                let (id, c, path) = (p.next()?, p.next()?, p.next()?);
                (c == key && (h.version == Version::V1) == (id != "0")).then(|| path.to_string())
            })
            .next()
            .expect("own cgroup");
        assert_eq!(h.path, Path::new(&own).join("sub/c"));
    }
    assert!(Cgroup::resolve(Some(Path::new("/x/../..")), "x").is_err());
}

#[test]
fn relative_path_is_created_below_our_own_cgroup_and_removed() {
    if !root() {
        return;
    }
    let name = unique("rel").trim_start_matches('/').to_string();
    let g = Guard::new(&name);
    let me = std::fs::read_to_string("/proc/self/cgroup").expect("self");
    for h in g.cg.hierarchies() {
        assert!(h.dir.is_dir(), "{}", h.dir.display());
        assert!(h.path.ends_with(&name));
    }
    if let Some((Version::V1, dir)) = where_is(&g.cg, "memory") {
        let own = me.lines().find(|l| l.split(':').nth(1) == Some("memory")).expect("memory line");
        let own = own.splitn(3, ':').nth(2).expect("path");
        assert!(dir.to_string_lossy().contains(own), "{} not below {own}", dir.display());
    }
    g.cg.destroy().expect("destroy");
    assert!(g.cg.hierarchies().iter().all(|h| !h.dir.exists()));
}

#[test]
fn create_is_idempotent_and_destroy_removes_what_it_created_and_nothing_else() {
    if !root() {
        return;
    }
    let top = unique("tree");
    let g = Guard::new(&format!("{top}/a/b"));
    g.cg.create().expect("second create");
    for h in g.cg.hierarchies() {
        assert!(h.dir.is_dir());
        if h.version == Version::V1 && h.has("cpuset") {
            assert!(!rd(&h.dir, "cpuset.cpus").is_empty(), "cpuset.cpus copied from the parent");
            assert!(!rd(&h.dir, "cpuset.mems").is_empty(), "cpuset.mems copied from the parent");
        }
    }
    // A sibling created by another Cgroup shares the parents: destroying one keeps them.
    let sibling = Guard::new(&format!("{top}/a/c"));
    g.cg.destroy().expect("destroy");
    for h in g.cg.hierarchies() {
        assert!(!h.dir.exists(), "{} left behind", h.dir.display());
        assert!(h.dir.parent().expect("parent").is_dir(), "shared parent removed too early");
    }
    g.cg.destroy().expect("destroy is idempotent");
    // The sibling did not create the parents, so they stay until someone that did removes them.
    sibling.cg.destroy().expect("destroy sibling");
    for h in sibling.cg.hierarchies() {
        assert!(!h.dir.exists());
    }
    // The first Cgroup created top and top/a: a repeated destroy now removes them (they are empty).
    g.cg.destroy().expect("destroy again");
    let rel = top.trim_start_matches('/');
    for h in g.cg.hierarchies() {
        assert!(!h.mount_point.join(rel).exists(), "{} left behind", h.mount_point.join(rel).display());
    }
}

#[test]
fn add_pid_moves_a_process_into_every_hierarchy_and_pids_lists_it() {
    if !root() {
        return;
    }
    let mut g = Guard::new(&unique("pids"));
    assert!(g.cg.pids().expect("pids").is_empty());
    let pid = g.spawn("exec sleep 1000");
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("proc cgroup");
    for h in g.cg.hierarchies() {
        let found = own.lines().any(|l| {
            let mut p = l.splitn(3, ':');
            let (id, c, path) = (p.next().unwrap_or(""), p.next().unwrap_or(""), p.next().unwrap_or(""));
            let same = match h.version {
                Version::V2 => id == "0",
                Version::V1 => c == h.controllers.join(","),
            };
            same && Path::new(path) == h.path
        });
        assert!(found, "{pid} not in {} ({}):\n{own}", h.path.display(), h.describe());
    }
    assert_eq!(g.cg.pids().expect("pids"), vec![pid]);
    let pid2 = g.spawn("exec sleep 1000");
    let mut want = vec![pid, pid2];
    want.sort();
    assert_eq!(g.cg.pids().expect("pids"), want);
    let err = g.cg.add_pid(i32::MAX - 7).expect_err("no such process");
    assert!(err.to_string().contains("cgroup.procs"), "{err}");
}

#[test]
fn freeze_and_thaw_change_the_state_and_the_processes() {
    if !root() {
        return;
    }
    let mut g = Guard::new(&unique("freeze"));
    let pid = g.spawn("exec sleep 1000");
    assert!(!g.cg.is_frozen().expect("state"));
    g.cg.freeze().expect("freeze");
    assert!(g.cg.is_frozen().expect("state"));
    g.cg.freeze().expect("freeze twice");
    if let Some((Version::V1, dir)) = where_is(&g.cg, "freezer") {
        assert_eq!(rd(&dir, "freezer.state"), "FROZEN");
    }
    g.cg.thaw().expect("thaw");
    assert!(!g.cg.is_frozen().expect("state"));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn stats_are_read_from_the_cgroup() {
    if !root() {
        return;
    }
    let mut g = Guard::new(&unique("stats"));
    g.spawn("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 1000");
    common::wait_for("cpu usage", || {
        // user/kernel come from tick sampling on v1: they lag the precise total.
        g.cg.stats().map(|s| s.cpu.usage.total > 0 && s.cpu.usage.user + s.cpu.usage.kernel > 0).unwrap_or(false)
    });
    let s = g.cg.stats().expect("stats");
    if where_is(&g.cg, "pids").is_some() {
        assert_eq!(s.pids.current, 1, "one process");
    }
    assert!(s.cpu.usage.user + s.cpu.usage.kernel > 0, "{:?}", s.cpu.usage);
    if where_is(&g.cg, "cpuacct").is_some() {
        assert!(!s.cpu.usage.percpu.is_empty());
    }
    if where_is(&g.cg, "memory").is_some() {
        assert!(s.memory.usage.usage > 0, "{:?}", s.memory.usage);
        assert!(s.memory.usage.limit > 0);
        assert!(!s.memory.raw.is_empty());
    }
    let json = serde_json::to_value(&s).expect("json");
    assert_eq!(json["pids"]["current"], serde_json::json!(s.pids.current));
    assert!(json["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn kill_all_signals_every_process_and_keeps_a_paused_cgroup_paused() {
    if !root() {
        return;
    }
    let g = Guard::new(&unique("kill"));
    let mut a = g.start("exec sleep 1000");
    let mut b = g.start("exec sleep 1000");
    g.cg.kill_all(libc::SIGTERM).expect("kill_all");
    for c in [&mut a, &mut b] {
        let st = c.wait().expect("wait");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGTERM));
    }
    common::wait_for("empty cgroup", || g.cg.pids().map(|p| p.is_empty()).unwrap_or(false));

    let mut c = g.start("exec sleep 1000");
    g.cg.freeze().expect("freeze");
    g.cg.kill_all(libc::SIGTERM).expect("kill_all while paused");
    assert!(g.cg.is_frozen().expect("state"), "a paused container stays paused");
    g.cg.kill_all(libc::SIGKILL).expect("SIGKILL");
    let st = c.wait().expect("wait");
    use std::os::unix::process::ExitStatusExt;
    assert!(st.signal() == Some(libc::SIGKILL) || st.signal() == Some(libc::SIGTERM), "{st:?}");
    assert!(!g.cg.is_frozen().expect("state"), "SIGKILL thaws so the processes can die");
    // Real-time signals are not in nix's Signal enum.
    let mut d = g.start("exec sleep 1000");
    g.cg.kill_all(libc::SIGRTMIN() + 3).expect("rt signal");
    let st = d.wait().expect("wait");
    assert_eq!(st.signal(), Some(libc::SIGRTMIN() + 3));
}

#[test]
fn destroy_waits_for_exiting_processes_and_names_live_ones() {
    if !root() {
        return;
    }
    let mut g = Guard::new(&unique("busy"));
    let pid = g.spawn("exec sleep 1000");
    let err = g.cg.destroy().expect_err("a live process keeps the cgroup");
    let msg = err.to_string();
    assert!(msg.contains(&pid.to_string()) && msg.contains("kill"), "{msg}");
    // Killed but not yet reaped processes: destroy retries until the kernel lets go.
    g.cg.kill_all(libc::SIGKILL).expect("kill");
    let mut c = g.children.pop().expect("child");
    let reaper = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        c.wait().expect("wait")
    });
    g.cg.destroy().expect("destroy after kill");
    reaper.join().expect("reaper");
    assert!(g.cg.hierarchies().iter().all(|h| !h.dir.exists()));
}

#[test]
fn a_cgroup_saved_before_create_removes_the_parents_it_created() {
    if !root() {
        return;
    }
    // The runtime saves its state before creating the cgroup, so a crash leaves something that
    // `delete --force` can clean up completely.
    let top = unique("state");
    let cg = Cgroup::resolve(Some(Path::new(&format!("{top}/leaf"))), "x").expect("resolve");
    let json = serde_json::to_string(&cg).expect("serialize");
    assert_eq!(cg.created_dirs().len(), 2 * cg.hierarchies().len());
    let g = Guard::create(cg);
    let back: Cgroup = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, g.cg);
    back.destroy().expect("destroy from state");
    let rel = top.trim_start_matches('/');
    for h in g.cg.hierarchies() {
        assert!(!h.mount_point.join(rel).exists(), "{} left", h.mount_point.join(rel).display());
    }
    // A cgroup whose parent already exists owns only its leaf.
    let existing = Guard::new(&unique("existing"));
    let parent = existing.cg.path();
    let child = Cgroup::resolve(Some(&parent.join("child")), "x").expect("resolve child");
    assert_eq!(child.created_dirs().len(), child.hierarchies().len());
    let child = Guard::create(child);
    child.cg.destroy().expect("destroy child");
    assert!(existing.cg.hierarchies().iter().all(|h| h.dir.is_dir()), "the parent stays");
}

#[test]
fn mounts_for_container_describe_every_hierarchy() {
    let cg = Cgroup::resolve(None, "mounts-x").expect("resolve");
    let m = cg.mounts_for_container();
    assert_eq!(m.len(), cg.hierarchies().len());
    for (mount, h) in m.iter().zip(cg.hierarchies()) {
        assert_eq!(mount.host_dir, h.dir);
        assert_eq!(mount.fs_type, if h.version == Version::V2 { "cgroup2" } else { "cgroup" });
        assert!(Path::new(&mount.host_mount_point).is_dir());
        if cg.host_layout() != Layout::Unified {
            assert_eq!(Some(mount.name.as_str()), h.mount_point.file_name().and_then(|n| n.to_str()));
        }
    }
}
