//! Applying linux.resources to a container's cgroup, on create and on `hako update` (the cgroup may
//! hold running processes). This file finds where each controller lives (a v1 hierarchy, or cgroup2,
//! delegating it down the v2 tree when needed, as hugetlb on a hybrid host) and dispatches to one file
//! per controller family. A resource whose controller is absent is an error only when a value is set.

mod blkio;
mod cpu;
mod memory;
mod other;

use std::path::Path;

pub(crate) use other::host_page_sizes;

use oci_spec::runtime::LinuxResources;

use crate::cgroup::{enable_v2_controllers, Cgroup};
use crate::error::CgroupError;
use crate::fsutil;
use crate::mountinfo::Layout;

/// Where a controller's files are for this container.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// The container's directory in the v1 hierarchy carrying the controller.
    V1(&'a Path),
    /// The container's cgroup2 directory, with the controller enabled in it.
    V2(&'a Path),
}

/// Applies every resource group that has a value.
pub(crate) fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<(), CgroupError> {
    for h in cg.hierarchies() {
        if !h.dir.is_dir() {
            return Err(CgroupError::Missing { path: h.dir.clone() });
        }
    }
    if let Some(m) = r.memory() {
        memory::apply(cg, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu::apply(cg, c)?;
    }
    if let Some(p) = r.pids() {
        other::pids(cg, p)?;
    }
    if let Some(b) = r.block_io() {
        blkio::apply(cg, b)?;
    }
    if let Some(h) = r.hugepage_limits() {
        other::hugetlb(cg, h)?;
    }
    if let Some(n) = r.network() {
        other::network(cg, n)?;
    }
    if let Some(rd) = r.rdma() {
        other::rdma(cg, rd)?;
    }
    if let Some(d) = r.devices() {
        other::devices(cg, d)?;
    }
    // Last, so that explicit v2 keys override what the typed fields wrote (as runc does).
    if let Some(u) = r.unified() {
        other::unified(cg, u)?;
    }
    Ok(())
}

/// The fix for a controller that is not mounted.
fn mount_fix(controller: &str, top: &str) -> String {
    format!(
        "mount it (cgroup v1: `mkdir -p /sys/fs/cgroup/{controller} && mount -t cgroup -o {controller} \
         cgroup /sys/fs/cgroup/{controller}`) or remove linux.resources.{top} from config.json"
    )
}

/// Finds the controller: a v1 hierarchy first, else cgroup2 (see [`locate_v2`]).
pub(crate) fn locate<'a>(cg: &'a Cgroup, controller: &str, resource: &str) -> Result<Target<'a>, CgroupError> {
    if let Some(h) = cg.v1(controller) {
        return Ok(Target::V1(&h.dir));
    }
    locate_v2(cg, controller, resource).map(Target::V2)
}

/// Finds the controller on cgroup2, delegating it from the root down to the container's parent
/// when it is not enabled yet (on a hybrid host the v2 root delegates nothing by default).
pub(crate) fn locate_v2<'a>(cg: &'a Cgroup, controller: &str, resource: &str) -> Result<&'a Path, CgroupError> {
    let top = resource.split('.').next().unwrap_or(resource);
    let missing = |detail: String, fix: String| CgroupError::ControllerMissing {
        resource: resource.to_string(),
        controller: controller.to_string(),
        cgroup: cg.path(),
        detail,
        fix,
    };
    let Some(h) = cg.v2() else {
        return Err(missing(
            format!("{}: no cgroup v1 hierarchy carries it and no cgroup2 filesystem is mounted", cg.host_layout()),
            mount_fix(controller, top),
        ));
    };
    let root_file = h.mount_point.join("cgroup.controllers");
    let root = fsutil::read_opt(&root_file)?.unwrap_or_default();
    if !root.split_whitespace().any(|c| c == controller) {
        let detail = match cg.host_layout() {
            Layout::Unified => format!("{} does not list it: the kernel lacks it", root_file.display()),
            _ => format!(
                "{}: no cgroup v1 hierarchy carries it and {} does not list it",
                cg.host_layout(),
                root_file.display()
            ),
        };
        let fix = match cg.host_layout() {
            Layout::Unified => format!("remove linux.resources.{top} from config.json"),
            _ => mount_fix(controller, top),
        };
        return Err(missing(detail, fix));
    }
    let has = |dir: &Path| -> Result<bool, CgroupError> {
        Ok(fsutil::read_opt(&dir.join("cgroup.controllers"))?
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == controller))
    };
    if !has(&h.dir)? {
        enable_v2_controllers(h, Some(&[controller]));
        if !has(&h.dir)? {
            let parent = h.dir.parent().unwrap_or(&h.dir).display().to_string();
            return Err(missing(
                format!("it is not delegated to the container: {parent}/cgroup.subtree_control lacks it"),
                format!(
                    "delegate it with `echo +{controller} > {parent}/cgroup.subtree_control` on every \
                     ancestor (a cgroup with processes of its own cannot delegate: use an absolute \
                     linux.cgroupsPath)"
                ),
            ));
        }
    }
    Ok(&h.dir)
}

/// Treats 0 as "not set" for limits where 0 cannot be meant literally (runc does the same).
pub(crate) fn nonzero<T: Default + PartialEq>(v: Option<T>) -> Option<T> {
    v.filter(|x| *x != T::default())
}
