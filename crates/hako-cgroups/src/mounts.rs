//! What the runtime needs to build /sys/fs/cgroup inside a container (a `cgroup` mount in config.json):
//! one [`CgroupMount`] per hierarchy with the host mount point, the filesystem type and options for a
//! fresh mount (in a cgroup namespace), and the container's own directory on the host (for a bind mount
//! without one). On v1 and hybrid hosts the runtime first mounts a tmpfs at /sys/fs/cgroup and puts each
//! hierarchy under `name`; on a pure v2 host the single hierarchy is /sys/fs/cgroup itself (`name` "").

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::resolve::Version;

/// One hierarchy as the container should see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMount {
    /// `cgroup` or `cgroup2`.
    pub fs_type: String,
    /// Where the host mounts the hierarchy, e.g. /sys/fs/cgroup/cpu.
    pub host_mount_point: PathBuf,
    /// The directory below the container's /sys/fs/cgroup, e.g. `cpu,cpuacct`, `unified`, `systemd`;
    /// empty when the hierarchy is /sys/fs/cgroup itself (pure v2).
    pub name: String,
    /// v1 controllers and `name=` entries; empty for cgroup2.
    pub subsystems: Vec<String>,
    /// Data for a fresh `mount(2)` of the hierarchy (v1: the controllers and `name=`, e.g.
    /// `cpu,cpuacct` or `xattr,name=systemd`; v2: e.g. `nsdelegate`), without rw/ro.
    pub options: String,
    /// The container's cgroup directory on the host (bind-mount source without a cgroup namespace).
    pub host_dir: PathBuf,
    /// The container's cgroup path inside the hierarchy, e.g. /hako/abc.
    pub cgroup_path: PathBuf,
    /// Symlinks to create next to `name` for co-mounted controllers (e.g. `cpu` and `cpuacct` for
    /// `cpu,cpuacct`), as hosts and runc do.
    pub aliases: Vec<String>,
}

pub(crate) fn for_container(cg: &Cgroup) -> Vec<CgroupMount> {
    let unified_only = cg.hierarchies().iter().all(|h| h.version == Version::V2);
    cg.hierarchies()
        .iter()
        .map(|h| {
            let name = if unified_only {
                String::new()
            } else {
                h.mount_point.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            };
            let aliases = if h.controllers.len() > 1 {
                h.controllers.iter().filter(|c| **c != name && !c.starts_with("name=")).cloned().collect()
            } else {
                Vec::new()
            };
            CgroupMount {
                fs_type: match h.version {
                    Version::V1 => "cgroup".to_string(),
                    Version::V2 => "cgroup2".to_string(),
                },
                host_mount_point: h.mount_point.clone(),
                name,
                subsystems: h.controllers.clone(),
                options: h.options.clone(),
                host_dir: h.dir.clone(),
                cgroup_path: h.path.clone(),
                aliases,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::mountinfo::fixtures::*;
    use crate::Cgroup;
    use std::path::Path;

    #[test]
    fn hybrid_mounts_have_names_types_and_host_dirs() {
        let cg = Cgroup::resolve_with(HYBRID_MOUNTINFO, HYBRID_SELF, None, "c").expect("resolve");
        let m = cg.mounts_for_container();
        assert_eq!(m.len(), 10);
        let mem = m.iter().find(|m| m.name == "memory").expect("memory");
        assert_eq!(mem.fs_type, "cgroup");
        assert_eq!(mem.options, "memory");
        assert_eq!(mem.host_dir, Path::new("/sys/fs/cgroup/memory/hako/c"));
        let uni = m.iter().find(|m| m.name == "unified").expect("unified");
        assert_eq!(uni.fs_type, "cgroup2");
        assert!(uni.subsystems.is_empty());
        assert_eq!(uni.cgroup_path, Path::new("/hako/c"));
    }

    #[test]
    fn v1_comounts_get_aliases_and_unified_gets_the_root() {
        let cg = Cgroup::resolve_with(V1_MOUNTINFO, V1_SELF, Some(Path::new("/x")), "c").expect("resolve");
        let m = cg.mounts_for_container();
        let cpu = m.iter().find(|m| m.name == "cpu,cpuacct").expect("cpu");
        assert_eq!(cpu.aliases, ["cpu", "cpuacct"]);
        let sd = m.iter().find(|m| m.name == "systemd").expect("systemd");
        assert!(sd.aliases.is_empty());
        assert!(sd.options.ends_with("name=systemd"), "{}", sd.options);

        let cg = Cgroup::resolve_with(UNIFIED_MOUNTINFO, UNIFIED_SELF, Some(Path::new("/x")), "c").expect("resolve");
        let m = cg.mounts_for_container();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "");
        assert_eq!(m[0].fs_type, "cgroup2");
        assert_eq!(m[0].host_dir, Path::new("/sys/fs/cgroup/x"));
    }

    #[test]
    fn cgroup_round_trips_through_json() {
        let cg = Cgroup::resolve_with(HYBRID_MOUNTINFO, HYBRID_SELF, Some(Path::new("rel")), "c").expect("resolve");
        let json = serde_json::to_string(&cg).expect("ser");
        let back: Cgroup = serde_json::from_str(&json).expect("de");
        assert_eq!(back, cg);
        assert_eq!(back.host_layout(), crate::Layout::Hybrid);
        assert_eq!(back.path(), Path::new("/rel"));
    }
}
