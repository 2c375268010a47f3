//! The smaller resource groups: pids, hugetlb (v1 hugetlb.SIZE.limit_in_bytes or v2 hugetlb.SIZE.max,
//! also on a hybrid host's cgroup2 mount), network (v1 net_cls/net_prio), rdma, devices (v1 rules or
//! the v2 eBPF program) and linux.resources.unified (raw cgroup2 key/values).

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxHugepageLimit, LinuxNetwork, LinuxPids, LinuxRdma};

use super::{locate, locate_v2, Target};
use crate::cgroup::Cgroup;
use crate::devices;
use crate::error::CgroupError;
use crate::fsutil;
use crate::mountinfo::Layout;

pub(super) fn pids(cg: &Cgroup, p: &LinuxPids) -> Result<(), CgroupError> {
    let value = if p.limit() > 0 { p.limit().to_string() } else { "max".to_string() };
    let (Target::V1(dir) | Target::V2(dir)) = locate(cg, "pids", "pids.limit")?;
    fsutil::write(dir, "pids.max", &value)
}

/// The kernel's name for a huge page size given in kB (hugetlb cgroup file names use it).
fn page_size_name(kb: u64) -> String {
    if kb >= 1 << 20 && kb & ((1 << 20) - 1) == 0 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb & ((1 << 10) - 1) == 0 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

/// The huge page sizes of this kernel, as hugetlb cgroup names ("2MB", "1GB").
pub(crate) fn host_page_sizes() -> Vec<String> {
    let mut out: Vec<(u64, String)> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|rd| {
            rd.filter_map(|e| {
                let name = e.ok()?.file_name().to_string_lossy().into_owned();
                let kb: u64 = name.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
                Some((kb, page_size_name(kb)))
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.into_iter().map(|(_, n)| n).collect()
}

pub(super) fn hugetlb(cg: &Cgroup, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    if limits.is_empty() {
        return Ok(());
    }
    let sizes = host_page_sizes();
    for l in limits {
        if !sizes.iter().any(|s| s == l.page_size()) {
            return Err(CgroupError::InvalidValue {
                resource: "hugepageLimits.pageSize".to_string(),
                value: l.page_size().clone(),
                problem: format!(
                    "this kernel's huge page sizes are {sizes:?} (/sys/kernel/mm/hugepages); use one of them"
                ),
            });
        }
    }
    let target = locate(cg, "hugetlb", "hugepageLimits")?;
    for l in limits {
        let ps = l.page_size();
        match target {
            Target::V1(dir) => {
                let v = l.limit().to_string();
                fsutil::write(dir, &format!("hugetlb.{ps}.limit_in_bytes"), &v)?;
                let rsvd = format!("hugetlb.{ps}.rsvd.limit_in_bytes");
                if fsutil::exists(dir, &rsvd) {
                    fsutil::write(dir, &rsvd, &v)?;
                }
            }
            Target::V2(dir) => {
                let v = if l.limit() < 0 { "max".to_string() } else { l.limit().to_string() };
                fsutil::write(dir, &format!("hugetlb.{ps}.max"), &v)?;
                let rsvd = format!("hugetlb.{ps}.rsvd.max");
                if fsutil::exists(dir, &rsvd) {
                    fsutil::write(dir, &rsvd, &v)?;
                }
            }
        }
    }
    Ok(())
}

pub(super) fn network(cg: &Cgroup, n: &LinuxNetwork) -> Result<(), CgroupError> {
    let v2_gone = |resource: &str| CgroupError::Unsupported {
        resource: resource.to_string(),
        cgroup: cg.path(),
        problem: "cgroup v2 has no net_cls/net_prio controllers and no v1 hierarchy carries them".to_string(),
        fix: format!("remove linux.resources.{resource} (on cgroup v2 use eBPF-based network policy)"),
    };
    if let Some(id) = n.class_id() {
        match cg.v1("net_cls") {
            Some(h) => fsutil::write(&h.dir, "net_cls.classid", &id.to_string())?,
            None if cg.host_layout() == Layout::Unified => return Err(v2_gone("network.classID")),
            None => {
                locate(cg, "net_cls", "network.classID")?;
            }
        }
    }
    let prios = n.priorities().as_deref().unwrap_or(&[]);
    if !prios.is_empty() {
        match cg.v1("net_prio") {
            Some(h) => {
                for p in prios {
                    fsutil::write(&h.dir, "net_prio.ifpriomap", &format!("{} {}", p.name(), p.priority()))?;
                }
            }
            None if cg.host_layout() == Layout::Unified => return Err(v2_gone("network.priorities")),
            None => {
                locate(cg, "net_prio", "network.priorities")?;
            }
        }
    }
    Ok(())
}

pub(super) fn rdma(cg: &Cgroup, r: &HashMap<String, LinuxRdma>) -> Result<(), CgroupError> {
    let mut entries: Vec<(&String, &LinuxRdma)> =
        r.iter().filter(|(_, v)| v.hca_handles().is_some() || v.hca_objects().is_some()).collect();
    if entries.is_empty() {
        return Ok(());
    }
    entries.sort_by_key(|(k, _)| k.as_str());
    let (Target::V1(dir) | Target::V2(dir)) = locate(cg, "rdma", "rdma")?;
    for (dev, v) in entries {
        let mut line = dev.clone();
        if let Some(h) = v.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = v.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        fsutil::write(dir, "rdma.max", &line)?;
    }
    Ok(())
}

pub(super) fn devices(cg: &Cgroup, d: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let rules = devices::parse_rules(d)?;
    if rules.is_empty() {
        return Ok(());
    }
    if let Some(h) = cg.v1("devices") {
        return devices::apply_v1(&h.dir, &rules);
    }
    match cg.v2() {
        // Device programs are part of cgroup2 itself (cgroup-bpf), not a controller to enable.
        Some(h) => devices::apply_v2(&h.dir, &rules),
        None => Err(CgroupError::ControllerMissing {
            resource: "devices".to_string(),
            controller: "devices".to_string(),
            cgroup: cg.path(),
            detail: "no v1 devices hierarchy and no cgroup2 mount for an eBPF device program".to_string(),
            fix: "mount it (`mount -t cgroup -o devices cgroup /sys/fs/cgroup/devices`) or remove \
                  linux.resources.devices from config.json"
                .to_string(),
        }),
    }
}

/// Checks a linux.resources.unified key: a plain interface file name such as `memory.high`.
fn check_key(key: &str) -> Result<&str, CgroupError> {
    let bad = |problem: &str| CgroupError::InvalidValue {
        resource: format!("unified[{key:?}]"),
        value: key.to_string(),
        problem: problem.to_string(),
    };
    if key.contains('/') || key.contains('\0') || key.starts_with('.') {
        return Err(bad("a key must be a cgroup interface file name such as memory.high, without '/'"));
    }
    match key.split_once('.') {
        Some((c, rest)) if !c.is_empty() && !rest.is_empty() => Ok(c),
        _ => Err(bad("a key must be CONTROLLER.FILE, such as memory.high")),
    }
}

pub(super) fn unified(cg: &Cgroup, u: &HashMap<String, String>) -> Result<(), CgroupError> {
    if u.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<&String> = u.keys().collect();
    keys.sort();
    if cg.v2().is_none() {
        return Err(CgroupError::Unsupported {
            resource: format!("unified[{:?}]", keys[0]),
            cgroup: cg.path(),
            problem: "linux.resources.unified needs cgroup v2 and this host mounts only cgroup v1".to_string(),
            fix: "use the typed fields of linux.resources (memory, cpu, ...) instead".to_string(),
        });
    }
    for key in keys {
        let controller = check_key(key)?;
        let resource = format!("unified[{key:?}]");
        if controller != "cgroup" {
            if cg.host_layout() == Layout::Hybrid && cg.v1(controller).is_some() {
                return Err(CgroupError::Unsupported {
                    resource,
                    cgroup: cg.path(),
                    problem: format!(
                        "on this hybrid host the {controller} controller is bound to a cgroup v1 hierarchy, not to cgroup2"
                    ),
                    fix: format!("use the typed linux.resources fields for {controller} instead"),
                });
            }
            locate_v2(cg, controller, &resource)?;
        }
        let dir: &Path = cg.v2().map(|h| h.dir.as_path()).unwrap_or(Path::new("/"));
        if !fsutil::exists(dir, key) {
            return Err(CgroupError::Unsupported {
                resource,
                cgroup: cg.path(),
                problem: format!("{} does not exist", dir.join(key).display()),
                fix: "check the key's spelling against the kernel's cgroup v2 documentation".to_string(),
            });
        }
        fsutil::write(dir, key, &u[key])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_names_follow_the_kernel() {
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1_048_576), "1GB");
        assert_eq!(page_size_name(64), "64KB");
        assert_eq!(page_size_name(32_768), "32MB");
    }

    #[test]
    fn unified_keys_are_checked() {
        assert_eq!(check_key("memory.high").expect("ok"), "memory");
        assert_eq!(check_key("cgroup.max.depth").expect("ok"), "cgroup");
        for bad in ["../x", "memory", ".hidden", "memory.", "a/b.c"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
