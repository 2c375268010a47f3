//! Shared helpers of the real-cgroup tests: unique test cgroups under `/hako-test-<pid>-<n>` that a
//! drop guard removes even when a test fails, child processes that wait until they are inside the
//! cgroup, and readers for the cgroup files the tests check.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use hako_cgroups::{Cgroup, Version};

static N: AtomicUsize = AtomicUsize::new(0);

/// Reports that the calling test cannot run here and returns, unless `HAKO_REQUIRE_ALL=1`
/// (`scripts/test` sets it): then the test fails, so the suite is never green with tests skipped.
#[track_caller]
pub fn skip(reason: &str) {
    assert!(
        std::env::var("HAKO_REQUIRE_ALL").as_deref() != Ok("1"),
        "this test cannot run here: {reason} (HAKO_REQUIRE_ALL=1 requires every test to run)"
    );
    eprintln!("skipped: {reason}");
}

/// The tests create real cgroups: they need root.
#[track_caller]
pub fn root() -> bool {
    let ok = nix::unistd::geteuid().is_root();
    if !ok {
        skip("real cgroup tests need root");
    }
    ok
}

/// A fresh absolute cgroup path such as /hako-test-123-4-memory.
pub fn unique(tag: &str) -> String {
    format!("/hako-test-{}-{}-{tag}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// Reads a cgroup file, trimmed.
pub fn rd(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// Where `controller` lives for this cgroup: a v1 hierarchy, or cgroup2 when its root lists it.
pub fn where_is(cg: &Cgroup, controller: &str) -> Option<(Version, PathBuf)> {
    let hs = cg.hierarchies();
    if let Some(h) = hs.iter().find(|h| h.version == Version::V1 && h.has(controller)) {
        return Some((Version::V1, h.dir.clone()));
    }
    let h = hs.iter().find(|h| h.version == Version::V2)?;
    let root = std::fs::read_to_string(h.mount_point.join("cgroup.controllers")).unwrap_or_default();
    root.split_whitespace().any(|c| c == controller).then(|| (Version::V2, h.dir.clone()))
}

/// Removes a cgroup tree bottom-up (rmdir only: cgroup files cannot be unlinked).
fn rm_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rm_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A test cgroup plus the processes the test started in it; dropping it kills them and removes
/// every directory of the test, whatever state the test left.
pub struct Guard {
    pub cg: Cgroup,
    pub children: Vec<Child>,
}

impl Guard {
    /// Resolves and creates `path`.
    pub fn new(path: &str) -> Guard {
        let cg = Cgroup::resolve(Some(Path::new(path)), "test").expect("resolve");
        Guard::create(cg)
    }

    /// Creates an already resolved cgroup.
    pub fn create(cg: Cgroup) -> Guard {
        let g = Guard { cg, children: Vec::new() };
        g.cg.create().expect("create");
        g
    }

    /// Starts `sh -c SCRIPT` inside the cgroup: the shell waits on stdin until it has been moved,
    /// so everything the script does happens in the cgroup. The caller owns the child.
    pub fn start(&self, script: &str) -> Child {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("read _ ; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let pid = i32::try_from(child.id()).expect("pid");
        if let Err(e) = self.cg.add_pid(pid) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("add_pid: {e}");
        }
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("release the child");
        child
    }

    /// Starts a script that the guard kills at the end; returns its pid.
    pub fn spawn(&mut self, script: &str) -> i32 {
        let child = self.start(script);
        let pid = i32::try_from(child.id()).expect("pid");
        self.children.push(child);
        pid
    }

    /// Applies a device rule that allows every device again (a container update that lifts a deny list) and
    /// checks that /dev/zero, which the tests deny first, opens again. `what` names the step for a failure.
    pub fn allow_all_devices(&self, what: &str) {
        let all = oci_spec::runtime::LinuxResourcesBuilder::default()
            .devices(vec![oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .access("rwm")
                .build()
                .expect("d")])
            .build()
            .expect("r");
        self.cg.apply(&all).expect(what);
        assert_eq!(self.output("head -c1 /dev/zero >/dev/null 2>&1 && echo zero-ok"), "zero-ok\n");
    }

    /// Runs a script to completion inside the cgroup and returns its stdout.
    pub fn output(&self, script: &str) -> String {
        let mut child = self.start(script);
        let mut out = String::new();
        child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read stdout");
        child.wait().expect("wait");
        out
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.cg.thaw();
        let _ = self.cg.kill_all(libc::SIGKILL);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.cg.destroy();
        // Belt and braces: remove this test's top-level directory in every hierarchy.
        for h in self.cg.hierarchies() {
            rm_tree(&h.dir);
            let rel = h.dir.strip_prefix(&h.mount_point).unwrap_or(Path::new(""));
            if let Some(first) = rel.components().next() {
                let name = first.as_os_str().to_string_lossy();
                if name.starts_with(&format!("hako-test-{}-", std::process::id())) {
                    rm_tree(&h.mount_point.join(first));
                }
            }
        }
    }
}

/// The first real block device's "MAJ:MIN" (not loop, ram or zram).
pub fn block_device() -> Option<(i64, i64)> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram"))
        .collect();
    names.sort();
    let dev = std::fs::read_to_string(format!("/sys/block/{}/dev", names.first()?)).ok()?;
    let (a, b) = dev.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Waits up to 10 s for `cond`.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed().as_secs() < 10, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
