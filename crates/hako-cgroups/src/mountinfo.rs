//! Host discovery, pure part: parses /proc/self/mountinfo and /proc/self/cgroup text into the cgroup
//! hierarchies of the host and decides the [`Layout`] (v1, hybrid or unified). Nothing here touches the
//! filesystem, so every layout is unit-tested with fixture text; the readers live in `lib.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CgroupError;

/// How the host mounts its cgroup hierarchies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// cgroup v1 only: one hierarchy per controller group, typically under a tmpfs at /sys/fs/cgroup.
    V1,
    /// v1 controller hierarchies plus a cgroup2 mount (usually /sys/fs/cgroup/unified) that may hold
    /// some controllers (on this project's build machine: only hugetlb).
    Hybrid,
    /// Pure cgroup v2: one cgroup2 mount holds every controller.
    Unified,
}

impl Layout {
    /// Whether v1 hierarchies are used (`features`: `linux.cgroup.v1`).
    pub fn has_v1(self) -> bool {
        matches!(self, Layout::V1 | Layout::Hybrid)
    }

    /// Whether a cgroup2 hierarchy is mounted (`features`: `linux.cgroup.v2`).
    pub fn has_v2(self) -> bool {
        matches!(self, Layout::Hybrid | Layout::Unified)
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::V1 => "cgroup v1",
            Layout::Hybrid => "hybrid cgroup v1 + v2",
            Layout::Unified => "unified cgroup v2",
        })
    }
}

/// The v1 controllers a hierarchy's super options can name (the rest are mount options).
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// One mounted cgroup hierarchy as /proc/self/mountinfo shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountedHierarchy {
    /// `true` for cgroup2.
    pub(crate) v2: bool,
    /// Where it is mounted.
    pub(crate) mount_point: PathBuf,
    /// The cgroup that is the root of this mount (field 4 of mountinfo), usually "/".
    pub(crate) root: PathBuf,
    /// v1: controllers and `name=` entries from the super options; v2: empty.
    pub(crate) subsystems: Vec<String>,
    /// The super options minus `rw`/`ro` (what a fresh mount of this hierarchy needs).
    pub(crate) options: String,
}

/// The cgroup hierarchies of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostCgroups {
    pub(crate) layout: Layout,
    /// v1 hierarchies, in mountinfo order, one per subsystem set.
    pub(crate) v1: Vec<MountedHierarchy>,
    /// The cgroup2 mount, if any.
    pub(crate) v2: Option<MountedHierarchy>,
}

/// One line of /proc/self/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroup {
    /// The hierarchy id (0 for cgroup2).
    pub(crate) id: u32,
    /// The controllers of the hierarchy (empty for cgroup2).
    pub(crate) controllers: Vec<String>,
    /// The process's cgroup in it.
    pub(crate) path: PathBuf,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the cgroup and cgroup2 entries of /proc/self/mountinfo text (other mounts are skipped).
pub(crate) fn parse_mountinfo(text: &str) -> Result<Vec<MountedHierarchy>, CgroupError> {
    let file = Path::new("/proc/self/mountinfo");
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = |problem: &str| CgroupError::Parse {
            file: file.to_path_buf(),
            line: line.to_string(),
            problem: problem.to_string(),
        };
        let (left, right) = line.split_once(" - ").ok_or_else(|| bad("no \" - \" separator"))?;
        let left: Vec<&str> = left.split(' ').collect();
        if left.len() < 6 {
            return Err(bad("fewer than 6 fields before the separator"));
        }
        let mut right = right.split(' ');
        let fs_type = right.next().ok_or_else(|| bad("no filesystem type"))?;
        let v2 = match fs_type {
            "cgroup" => false,
            "cgroup2" => true,
            _ => continue,
        };
        let _source = right.next();
        let super_opts = right.next().unwrap_or("");
        let root = PathBuf::from(unescape(left[3]));
        let mount_point = PathBuf::from(unescape(left[4]));
        let opts: Vec<&str> = super_opts.split(',').filter(|o| !o.is_empty() && *o != "rw" && *o != "ro").collect();
        let subsystems = if v2 {
            Vec::new()
        } else {
            let subs: Vec<String> = opts
                .iter()
                .filter(|o| o.starts_with("name=") || V1_CONTROLLERS.contains(o))
                .map(|o| o.to_string())
                .collect();
            if subs.is_empty() {
                // A v1 mount without a controller or a name cannot exist; ignore rather than fail.
                continue;
            }
            subs
        };
        out.push(MountedHierarchy { v2, mount_point, root, subsystems, options: opts.join(",") });
    }
    Ok(out)
}

/// Parses /proc/self/cgroup (or /proc/PID/cgroup) text.
pub(crate) fn parse_proc_cgroup(text: &str) -> Result<Vec<ProcCgroup>, CgroupError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = |problem: &str| CgroupError::Parse {
            file: PathBuf::from("/proc/self/cgroup"),
            line: line.to_string(),
            problem: problem.to_string(),
        };
        let mut parts = line.splitn(3, ':');
        let id = parts.next().ok_or_else(|| bad("no hierarchy id"))?;
        let controllers = parts.next().ok_or_else(|| bad("no controller list"))?;
        let path = parts.next().ok_or_else(|| bad("no cgroup path"))?;
        let id: u32 = id.parse().map_err(|_| bad("hierarchy id is not a number"))?;
        let controllers = controllers.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect();
        out.push(ProcCgroup { id, controllers, path: PathBuf::from(path) });
    }
    Ok(out)
}

/// Groups parsed mounts into the host's hierarchies and decides the layout.
pub(crate) fn host_from_mounts(mounts: Vec<MountedHierarchy>) -> Result<HostCgroups, CgroupError> {
    let mut v1: Vec<MountedHierarchy> = Vec::new();
    let mut v2: Option<MountedHierarchy> = None;
    for m in mounts {
        if m.v2 {
            if v2.is_none() {
                v2 = Some(m);
            }
        } else {
            let set: BTreeSet<&String> = m.subsystems.iter().collect();
            let dup = v1.iter().any(|h| h.subsystems.iter().collect::<BTreeSet<_>>() == set);
            if !dup {
                v1.push(m);
            }
        }
    }
    let v1_controllers = v1.iter().any(|h| h.subsystems.iter().any(|s| !s.starts_with("name=")));
    let layout = match (v1_controllers, v2.is_some()) {
        (true, true) => Layout::Hybrid,
        (true, false) => Layout::V1,
        (false, true) => Layout::Unified,
        (false, false) if !v1.is_empty() => Layout::V1,
        (false, false) => return Err(CgroupError::NoCgroupMounts),
    };
    if layout == Layout::Unified {
        // A named-only v1 hierarchy next to a full cgroup2 mount is a leftover; do not join it.
        v1.clear();
    }
    Ok(HostCgroups { layout, v1, v2 })
}

/// Finds the calling process's cgroup in a hierarchy.
pub(crate) fn self_path<'a>(entries: &'a [ProcCgroup], h: &MountedHierarchy) -> Option<&'a Path> {
    entries
        .iter()
        .find(|e| {
            if h.v2 {
                e.id == 0 && e.controllers.is_empty()
            } else {
                e.id != 0
                    && e.controllers.len() == h.subsystems.len()
                    && h.subsystems.iter().all(|s| e.controllers.contains(s))
            }
        })
        .map(|e| e.path.as_path())
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! /proc text of the three layouts, shared by the unit tests of this crate.

    /// This project's build machine: v1 controllers plus cgroup2 at /sys/fs/cgroup/unified.
    pub(crate) const HYBRID_MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    pub(crate) const HYBRID_SELF: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/4e65e586
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

    /// A classic systemd v1 host with co-mounted cpu,cpuacct and net_cls,net_prio.
    pub(crate) const V1_MOUNTINFO: &str = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
30 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
31 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
32 25 0:30 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,hugetlb
33 25 0:31 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,freezer
34 25 0:32 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,cpuset,clone_children
35 25 0:33 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,pids
36 25 0:34 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:21 - cgroup cgroup rw,blkio
37 25 0:35 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:22 - cgroup cgroup rw,devices
99 25 0:29 / /mnt/memory\\040again rw,relatime - cgroup cgroup rw,memory
";

    pub(crate) const V1_SELF: &str = "\
11:devices:/user.slice
10:blkio:/user.slice
9:pids:/user.slice/user-1000.slice/session-2.scope
8:cpuset:/
7:freezer:/
6:hugetlb:/
5:memory:/user.slice/user-1000.slice/session-2.scope
4:net_cls,net_prio:/
3:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/user-1000.slice/session-2.scope
";

    /// A pure cgroup v2 host (systemd, Debian 12 default).
    pub(crate) const UNIFIED_MOUNTINFO: &str = "\
22 27 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    pub(crate) const UNIFIED_SELF: &str = "0::/user.slice/user-1000.slice/session-3.scope\n";
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn host(text: &str) -> HostCgroups {
        host_from_mounts(parse_mountinfo(text).expect("parse")).expect("host")
    }

    #[test]
    fn hybrid_layout_is_detected_with_every_v1_controller_and_the_unified_mount() {
        let h = host(HYBRID_MOUNTINFO);
        assert_eq!(h.layout, Layout::Hybrid);
        let names: Vec<String> = h.v1.iter().map(|m| m.subsystems.join(",")).collect();
        assert_eq!(
            names,
            ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "name=systemd"]
        );
        let v2 = h.v2.expect("v2 mount");
        assert_eq!(v2.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert!(v2.subsystems.is_empty());
        assert_eq!(v2.options, "");
    }

    #[test]
    fn v1_layout_keeps_comounted_controllers_and_skips_a_second_mount_of_the_same_hierarchy() {
        let h = host(V1_MOUNTINFO);
        assert_eq!(h.layout, Layout::V1);
        assert!(h.v2.is_none());
        let cpu = h.v1.iter().find(|m| m.subsystems.contains(&"cpu".to_string())).expect("cpu");
        assert_eq!(cpu.subsystems, ["cpu", "cpuacct"]);
        assert_eq!(cpu.mount_point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        let systemd = &h.v1[0];
        assert_eq!(systemd.subsystems, ["name=systemd"]);
        assert!(systemd.options.contains("xattr"));
        let cpuset = h.v1.iter().find(|m| m.subsystems == ["cpuset"]).expect("cpuset");
        assert_eq!(cpuset.options, "cpuset,clone_children");
        assert_eq!(h.v1.iter().filter(|m| m.subsystems == ["memory"]).count(), 1);
        assert_eq!(h.v1.len(), 10);
    }

    #[test]
    fn unified_layout_has_one_cgroup2_hierarchy() {
        let h = host(UNIFIED_MOUNTINFO);
        assert_eq!(h.layout, Layout::Unified);
        assert!(h.v1.is_empty());
        let v2 = h.v2.expect("v2");
        assert_eq!(v2.mount_point, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(v2.options, "nsdelegate,memory_recursiveprot");
    }

    #[test]
    fn no_cgroup_mount_is_a_clear_error() {
        let err = host_from_mounts(parse_mountinfo("22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n").expect("parse"))
            .expect_err("no cgroups");
        assert!(err.to_string().contains("mount -t cgroup2"), "{err}");
    }

    #[test]
    fn escaped_mount_points_are_unescaped() {
        let m = parse_mountinfo(V1_MOUNTINFO).expect("parse");
        assert!(m.iter().any(|m| m.mount_point == Path::new("/mnt/memory again")));
        assert_eq!(unescape("a\\134b\\011c"), "a\\b\tc");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn malformed_mountinfo_names_the_line() {
        let err = parse_mountinfo("31 23 0:28 / /sys/fs/cgroup rw\n").expect_err("bad");
        let msg = err.to_string();
        assert!(msg.contains("separator") && msg.contains("/proc/self/mountinfo"), "{msg}");
    }

    #[test]
    fn proc_self_cgroup_is_parsed_and_matched_to_hierarchies() {
        let entries = parse_proc_cgroup(V1_SELF).expect("parse");
        assert_eq!(entries.len(), 10);
        let h = host(V1_MOUNTINFO);
        let cpu = h.v1.iter().find(|m| m.subsystems == ["cpu", "cpuacct"]).expect("cpu");
        assert_eq!(self_path(&entries, cpu), Some(Path::new("/user.slice")));
        let sd = h.v1.iter().find(|m| m.subsystems == ["name=systemd"]).expect("systemd");
        assert_eq!(self_path(&entries, sd), Some(Path::new("/user.slice/user-1000.slice/session-2.scope")));

        let entries = parse_proc_cgroup(HYBRID_SELF).expect("parse");
        let h = host(HYBRID_MOUNTINFO);
        let mem = h.v1.iter().find(|m| m.subsystems == ["memory"]).expect("memory");
        assert_eq!(self_path(&entries, mem), Some(Path::new("/process_api/4e65e586")));
        assert_eq!(self_path(&entries, h.v2.as_ref().expect("v2")), Some(Path::new("/")));

        let entries = parse_proc_cgroup(UNIFIED_SELF).expect("parse");
        assert_eq!(entries[0].id, 0);
        assert!(entries[0].controllers.is_empty());
        assert!(parse_proc_cgroup("x:cpu:/\n").is_err());
        assert!(parse_proc_cgroup("3:cpu\n").is_err());
    }
}
