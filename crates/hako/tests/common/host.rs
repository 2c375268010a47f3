//! Host inspection and clean-up shared by the engine tests: polling, cgroup hierarchies, and
//! removing what a test's engine left (cgroup trees, mounts under a scratch directory).
//!
//! Included with `#[path]` by the test binaries that drive engines, so it needs nothing but std
//! and `libc`.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Reports that the calling test cannot run here (the caller then returns), unless
/// `HAKO_REQUIRE_ALL=1` (`scripts/test` sets it): then the test fails, so the suite is never green
/// with tests skipped.
#[track_caller]
pub fn skip(reason: &str) {
    assert!(
        std::env::var("HAKO_REQUIRE_ALL").as_deref() != Ok("1"),
        "this test cannot run here: {reason} (HAKO_REQUIRE_ALL=1 requires every test to run)"
    );
    eprintln!("skipped: {reason}");
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The directories of every cgroup hierarchy mounted on this host (v1 controllers and v2).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut seen = HashSet::new();
    info.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            let point = pre.split_whitespace().nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(unescape_mountinfo(point)))
        })
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

/// Undoes mountinfo's octal escapes.
pub fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Whether a cgroup directory `rel` (relative to the hierarchy roots) exists in any hierarchy.
pub fn cgroup_exists(rel: &str) -> bool {
    cgroup_mounts().iter().any(|m| m.join(rel.trim_start_matches('/')).is_dir())
}

/// Removes the cgroup `rel` and everything below it in every hierarchy: thaws it, kills what
/// still runs in it (conmon, a container a failed test left), then removes the directories
/// deepest first, retrying while processes are leaving.
pub fn remove_cgroup_tree(rel: &str) {
    let rel = rel.trim_start_matches('/');
    let mounts = cgroup_mounts();
    for mount in &mounts {
        for dir in dirs_depth_first(&mount.join(rel)) {
            let _ = fs::write(dir.join("freezer.state"), "THAWED");
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|p| p.trim().parse::<libc::pid_t>().ok()) {
                if pid != std::process::id() as libc::pid_t {
                    // SAFETY: kill has no memory-safety preconditions; the process is in a
                    // cgroup that only this suite's containers and conmons use.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
    for mount in &mounts {
        let top = mount.join(rel);
        wait_for(Duration::from_secs(3), || {
            for dir in dirs_depth_first(&top) {
                let _ = fs::remove_dir(dir);
            }
            !top.exists()
        });
    }
}

/// `dir` and every directory below it, children before their parents.
pub fn dirs_depth_first(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(dirs_depth_first(&entry.path()));
            }
        }
    }
    if dir.is_dir() {
        out.push(dir.to_path_buf());
    }
    out
}

/// Lazily detaches every mount at or below `dir`, deepest first.
pub fn detach_mounts_under(dir: &Path) {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(|p| PathBuf::from(unescape_mountinfo(p))))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let Ok(c_path) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
        unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Kills (by PID) every containerd runc shim serving the containerd at `address`; returns the
/// namespace and id of each.
pub fn kill_shims_of(address: &str) -> Vec<(String, String)> {
    let mut killed = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return killed;
    };
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
        if !args.first().is_some_and(|a| a.ends_with("containerd-shim-runc-v2"))
            || flag("-address").as_deref() != Some(address)
        {
            continue;
        }
        // SAFETY: kill has no memory-safety preconditions; the PID is a shim of our containerd.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        killed.push((flag("-namespace").unwrap_or_default(), flag("-id").unwrap_or_default()));
    }
    killed
}
