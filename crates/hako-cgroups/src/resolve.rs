//! cgroupsPath semantics, pure part: turns linux.cgroupsPath (or the default `/hako/<id>`) plus the
//! host's hierarchies and the caller's own cgroups into one [`Hierarchy`] per mounted hierarchy, each
//! with the container's host directory. No filesystem access; fixtures cover v1, hybrid and unified.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CgroupError;
use crate::mountinfo::{self, HostCgroups, MountedHierarchy, ProcCgroup};

/// The parent of every container cgroup when config.json has no linux.cgroupsPath.
pub const DEFAULT_PARENT: &str = "/hako";

/// Which cgroup filesystem a hierarchy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// A `cgroup` (v1) hierarchy.
    V1,
    /// The `cgroup2` hierarchy.
    V2,
}

/// The container's cgroup in one mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// v1 or v2.
    pub version: Version,
    /// v1: the hierarchy's controllers and `name=` entries (e.g. `["cpu","cpuacct"]`); v2: empty
    /// (its controllers are read from cgroup.controllers when needed).
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted on the host, e.g. /sys/fs/cgroup/memory.
    pub mount_point: PathBuf,
    /// The cgroup that is the root of that mount (mountinfo field 4), usually "/".
    pub mount_root: PathBuf,
    /// The mount's super options without rw/ro (for a fresh mount inside the container).
    pub options: String,
    /// The container's cgroup inside the hierarchy, e.g. /hako/abc.
    pub path: PathBuf,
    /// The container's cgroup directory on the host, e.g. /sys/fs/cgroup/memory/hako/abc.
    pub dir: PathBuf,
}

impl Hierarchy {
    /// Whether this v1 hierarchy carries `controller`.
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// A short name for messages: the controllers or "cgroup2".
    pub fn describe(&self) -> String {
        match self.version {
            Version::V1 => self.controllers.join(","),
            Version::V2 => "cgroup2".to_string(),
        }
    }
}

/// Checks a path for `..` and returns its normal components.
fn components(raw: &Path) -> Result<Vec<String>, CgroupError> {
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(CgroupError::InvalidPath {
                    path: raw.display().to_string(),
                    problem: "\"..\" is not allowed in linux.cgroupsPath: it could leave the cgroup \
                              filesystem; give the path without it"
                        .to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// Joins components under `/`.
fn rooted(parts: &[String]) -> PathBuf {
    let mut p = PathBuf::from("/");
    for c in parts {
        p.push(c);
    }
    p
}

/// The container's cgroup inside the hierarchy and its host directory.
fn place(h: &MountedHierarchy, path: PathBuf) -> (PathBuf, PathBuf) {
    // Inside a container without a cgroup namespace the mount root is the container's own cgroup
    // (e.g. /docker/abc): paths under it are reached through the mount point below that root.
    let rel = if h.root != Path::new("/") {
        path.strip_prefix(&h.root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.strip_prefix("/").map(Path::to_path_buf).unwrap_or_else(|_| path.clone()))
    } else {
        path.strip_prefix("/").map(Path::to_path_buf).unwrap_or_else(|_| path.clone())
    };
    let dir = h.mount_point.join(rel);
    (path, dir)
}

/// Validates a container id for use as a cgroup directory name.
fn check_id(id: &str) -> Result<(), CgroupError> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(CgroupError::InvalidPath {
            path: id.to_string(),
            problem: "a container id must be a non-empty name without '/' to be used as a cgroup \
                      directory"
                .to_string(),
        });
    }
    Ok(())
}

/// Resolves cgroupsPath semantics for every mounted hierarchy:
/// * `None` (or an empty path): `/hako/<id>` from each hierarchy's root;
/// * an absolute path: relative to each hierarchy's root;
/// * a relative path: relative to the caller's cgroup in each hierarchy (from /proc/self/cgroup).
pub(crate) fn resolve(
    host: &HostCgroups,
    self_cgroups: &[ProcCgroup],
    cgroups_path: Option<&Path>,
    container_id: &str,
) -> Result<Vec<Hierarchy>, CgroupError> {
    let given = cgroups_path.filter(|p| !p.as_os_str().is_empty());
    let (relative, parts) = match given {
        None => {
            check_id(container_id)?;
            (false, vec![DEFAULT_PARENT.trim_start_matches('/').to_string(), container_id.to_string()])
        }
        Some(p) => (!p.is_absolute(), components(p)?),
    };
    if parts.is_empty() {
        return Err(CgroupError::InvalidPath {
            path: given.map(|p| p.display().to_string()).unwrap_or_default(),
            problem: "linux.cgroupsPath names the root cgroup, which a container must not own; give a \
                      path such as /hako/<id>"
                .to_string(),
        });
    }
    let mut all: Vec<&MountedHierarchy> = host.v1.iter().collect();
    if let Some(v2) = &host.v2 {
        all.push(v2);
    }
    let mut out = Vec::with_capacity(all.len());
    for h in all {
        let path = if relative {
            let base = mountinfo::self_path(self_cgroups, h).ok_or_else(|| CgroupError::NotInHierarchy {
                mount_point: h.mount_point.clone(),
                hierarchy: if h.v2 { "cgroup2".to_string() } else { h.subsystems.join(",") },
            })?;
            let mut full = components(base)?;
            full.extend(parts.iter().cloned());
            rooted(&full)
        } else {
            rooted(&parts)
        };
        let (path, dir) = place(h, path);
        out.push(Hierarchy {
            version: if h.v2 { Version::V2 } else { Version::V1 },
            controllers: h.subsystems.clone(),
            mount_point: h.mount_point.clone(),
            mount_root: h.root.clone(),
            options: h.options.clone(),
            path,
            dir,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo::fixtures::*;
    use crate::mountinfo::{host_from_mounts, parse_mountinfo, parse_proc_cgroup};

    fn run(mi: &str, me: &str, p: Option<&str>, id: &str) -> Result<Vec<Hierarchy>, CgroupError> {
        let host = host_from_mounts(parse_mountinfo(mi).expect("mountinfo")).expect("host");
        let me = parse_proc_cgroup(me).expect("self");
        resolve(&host, &me, p.map(Path::new), id)
    }

    fn dir_of<'a>(hs: &'a [Hierarchy], key: &str) -> &'a Path {
        hs.iter().find(|h| h.describe() == key).map(|h| h.dir.as_path()).unwrap_or_else(|| panic!("no hierarchy {key}"))
    }

    #[test]
    fn default_path_is_hako_slash_id_in_every_hierarchy() {
        let hs = run(HYBRID_MOUNTINFO, HYBRID_SELF, None, "c1").expect("resolve");
        assert_eq!(hs.len(), 10);
        for h in &hs {
            assert_eq!(h.path, Path::new("/hako/c1"));
        }
        assert_eq!(dir_of(&hs, "memory"), Path::new("/sys/fs/cgroup/memory/hako/c1"));
        assert_eq!(dir_of(&hs, "cgroup2"), Path::new("/sys/fs/cgroup/unified/hako/c1"));
        assert_eq!(dir_of(&hs, "name=systemd"), Path::new("/sys/fs/cgroup/systemd/hako/c1"));
        let empty = run(HYBRID_MOUNTINFO, HYBRID_SELF, Some(""), "c1").expect("resolve");
        assert_eq!(empty, hs);
    }

    #[test]
    fn absolute_path_is_relative_to_each_hierarchy_root() {
        let hs = run(V1_MOUNTINFO, V1_SELF, Some("/libpod_parent/libpod-x"), "x").expect("resolve");
        assert_eq!(dir_of(&hs, "cpu,cpuacct"), Path::new("/sys/fs/cgroup/cpu,cpuacct/libpod_parent/libpod-x"));
        assert_eq!(dir_of(&hs, "memory"), Path::new("/sys/fs/cgroup/memory/libpod_parent/libpod-x"));
        let hs = run(UNIFIED_MOUNTINFO, UNIFIED_SELF, Some("/a/b/./c"), "x").expect("resolve");
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].version, Version::V2);
        assert_eq!(hs[0].path, Path::new("/a/b/c"));
        assert_eq!(hs[0].dir, Path::new("/sys/fs/cgroup/a/b/c"));
    }

    #[test]
    fn relative_path_is_below_the_callers_cgroup_in_each_hierarchy() {
        let hs = run(HYBRID_MOUNTINFO, HYBRID_SELF, Some("ctr/x"), "x").expect("resolve");
        assert_eq!(dir_of(&hs, "memory"), Path::new("/sys/fs/cgroup/memory/process_api/4e65e586/ctr/x"));
        assert_eq!(dir_of(&hs, "pids"), Path::new("/sys/fs/cgroup/pids/ctr/x"));
        assert_eq!(dir_of(&hs, "cgroup2"), Path::new("/sys/fs/cgroup/unified/ctr/x"));

        let hs = run(UNIFIED_MOUNTINFO, UNIFIED_SELF, Some("ctr"), "x").expect("resolve");
        assert_eq!(hs[0].path, Path::new("/user.slice/user-1000.slice/session-3.scope/ctr"));

        let hs = run(V1_MOUNTINFO, V1_SELF, Some("sub"), "x").expect("resolve");
        assert_eq!(dir_of(&hs, "cpu,cpuacct"), Path::new("/sys/fs/cgroup/cpu,cpuacct/user.slice/sub"));
        assert_eq!(dir_of(&hs, "cpuset"), Path::new("/sys/fs/cgroup/cpuset/sub"));
    }

    #[test]
    fn relative_path_without_an_entry_in_proc_self_cgroup_is_an_error() {
        let err = run(HYBRID_MOUNTINFO, "4:memory:/\n", Some("rel"), "x").expect_err("missing");
        assert!(err.to_string().contains("absolute linux.cgroupsPath"), "{err}");
        // absolute paths do not need /proc/self/cgroup
        run(HYBRID_MOUNTINFO, "", Some("/abs"), "x").expect("absolute");
    }

    #[test]
    fn mount_root_below_slash_is_stripped() {
        let mi = "50 40 0:29 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let hs = run(mi, "0::/docker/abc\n", Some("inner"), "x").expect("resolve");
        assert_eq!(hs[0].path, Path::new("/docker/abc/inner"));
        assert_eq!(hs[0].dir, Path::new("/sys/fs/cgroup/inner"));
        let hs = run(mi, "0::/docker/abc\n", Some("/hako/x"), "x").expect("resolve");
        assert_eq!(hs[0].dir, Path::new("/sys/fs/cgroup/hako/x"));
    }

    #[test]
    fn dot_dot_root_and_bad_ids_are_rejected() {
        let err = run(HYBRID_MOUNTINFO, HYBRID_SELF, Some("/a/../../etc"), "x").expect_err("dotdot");
        assert!(err.to_string().contains("\"..\""), "{err}");
        let err = run(HYBRID_MOUNTINFO, HYBRID_SELF, Some("/"), "x").expect_err("root");
        assert!(err.to_string().contains("root cgroup"), "{err}");
        for id in ["", "a/b", ".."] {
            let err = run(HYBRID_MOUNTINFO, HYBRID_SELF, None, id).expect_err("bad id");
            assert!(err.to_string().contains("container id"), "{err}");
        }
    }
}
