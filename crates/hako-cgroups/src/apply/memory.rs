//! linux.resources.memory: v1 (memory.limit_in_bytes, memsw ordered against the current limit so
//! that raising and lowering both succeed, soft limit, kmem, tcp, swappiness, oom_control) and v2
//! (memory.max, memory.swap.max as swap minus memory, memory.low; the v1-only knobs are errors).

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use super::{locate, nonzero, Target};
use crate::cgroup::Cgroup;
use crate::error::CgroupError;
use crate::fsutil;

const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

/// The typed memory values with 0 treated as unset.
#[derive(Debug, Clone, Copy)]
struct Values {
    limit: Option<i64>,
    reservation: Option<i64>,
    swap: Option<i64>,
    kernel: Option<i64>,
    kernel_tcp: Option<i64>,
    swappiness: Option<u64>,
    disable_oom_killer: Option<bool>,
    use_hierarchy: Option<bool>,
    check_before_update: bool,
}

impl Values {
    #[allow(deprecated)] // `kernel` is deprecated in the spec but still honoured on cgroup v1
    fn from(m: &LinuxMemory) -> Values {
        Values {
            limit: nonzero(m.limit()),
            reservation: nonzero(m.reservation()),
            swap: nonzero(m.swap()),
            kernel: nonzero(m.kernel()),
            kernel_tcp: nonzero(m.kernel_tcp()),
            swappiness: m.swappiness(),
            disable_oom_killer: m.disable_oom_killer(),
            use_hierarchy: m.use_hierarchy(),
            check_before_update: m.check_before_update().unwrap_or(false),
        }
    }

    /// The name of the first set field, for messages.
    fn first_set(&self) -> Option<&'static str> {
        [
            ("memory.limit", self.limit.is_some()),
            ("memory.reservation", self.reservation.is_some()),
            ("memory.swap", self.swap.is_some()),
            ("memory.kernel", self.kernel.is_some()),
            ("memory.kernelTCP", self.kernel_tcp.is_some()),
            ("memory.swappiness", self.swappiness.is_some()),
            ("memory.disableOOMKiller", self.disable_oom_killer.is_some()),
            ("memory.useHierarchy", self.use_hierarchy.is_some()),
        ]
        .iter()
        .find(|(_, set)| *set)
        .map(|(n, _)| *n)
    }
}

fn invalid(resource: &str, value: impl ToString, problem: impl Into<String>) -> CgroupError {
    CgroupError::InvalidValue { resource: resource.to_string(), value: value.to_string(), problem: problem.into() }
}

pub(super) fn apply(cg: &Cgroup, m: &LinuxMemory) -> Result<(), CgroupError> {
    let v = Values::from(m);
    let Some(first) = v.first_set() else {
        return Ok(());
    };
    for (name, val) in [("memory.limit", v.limit), ("memory.reservation", v.reservation), ("memory.swap", v.swap)] {
        if let Some(x) = val {
            if x < -1 {
                return Err(invalid(name, x, "must be a number of bytes, or -1 for unlimited"));
            }
        }
    }
    if let Some(s) = v.swappiness {
        if s > 100 {
            return Err(invalid("memory.swappiness", s, "must be between 0 and 100"));
        }
    }
    if let (Some(l), Some(s)) = (v.limit, v.swap) {
        if l > 0 && s > 0 && s < l {
            return Err(invalid(
                "memory.swap",
                s,
                format!("it is the memory+swap limit and must be at least memory.limit ({l})"),
            ));
        }
    }
    match locate(cg, "memory", first)? {
        Target::V1(dir) => v1(dir, &v),
        Target::V2(dir) => v2(cg, dir, &v),
    }
}

/// Fails when check_before_update is set and the usage is above the new limit.
fn check_usage(dir: &Path, file: &str, limit: Option<i64>) -> Result<(), CgroupError> {
    let Some(l) = limit.filter(|l| *l > 0) else {
        return Ok(());
    };
    let path = dir.join(file);
    let usage = fsutil::parse_u64(&path, &fsutil::read(&path)?)?;
    if usage > l as u64 {
        return Err(invalid(
            "memory.limit",
            l,
            format!("the cgroup already uses {usage} bytes ({}) and checkBeforeUpdate is set", path.display()),
        ));
    }
    Ok(())
}

fn v1(dir: &Path, v: &Values) -> Result<(), CgroupError> {
    if v.check_before_update {
        check_usage(dir, "memory.usage_in_bytes", v.limit)?;
    }
    let has_memsw = fsutil::exists(dir, MEMSW);
    let mut swap = v.swap;
    // Unlimited memory with swap not given means unlimited memory+swap too (memsw >= memory).
    if v.limit == Some(-1) && swap.is_none() && has_memsw {
        swap = Some(-1);
    }
    if swap.is_some() && !has_memsw {
        return Err(CgroupError::Unsupported {
            resource: "memory.swap".to_string(),
            cgroup: dir.to_path_buf(),
            problem: format!("{} does not exist: the kernel does not account swap", dir.join(MEMSW).display()),
            fix: "boot the kernel with swapaccount=1, or remove linux.resources.memory.swap".to_string(),
        });
    }
    match (v.limit, swap) {
        (Some(l), Some(s)) => {
            // memory.limit_in_bytes <= memory.memsw.limit_in_bytes must hold after every write: when
            // memory+swap grows past the current memory limit, write it first.
            let cur = fsutil::parse_u64(&dir.join(LIMIT), &fsutil::read(&dir.join(LIMIT))?)?;
            if s == -1 || cur < s as u64 {
                fsutil::write(dir, MEMSW, &s.to_string())?;
                write_limit(dir, l)?;
            } else {
                write_limit(dir, l)?;
                fsutil::write(dir, MEMSW, &s.to_string())?;
            }
        }
        (Some(l), None) => write_limit(dir, l)?,
        (None, Some(s)) => fsutil::write(dir, MEMSW, &s.to_string())?,
        (None, None) => {}
    }
    if let Some(r) = v.reservation {
        fsutil::write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    if let Some(k) = v.kernel {
        v1_optional(dir, "memory.kmem.limit_in_bytes", "memory.kernel", &k.to_string())?;
        // Linux 5.16+ accepts the write and ignores it; say so rather than pretend.
        let p = dir.join("memory.kmem.limit_in_bytes");
        let now = fsutil::parse_u64(&p, &fsutil::read(&p)?)?;
        if k > 0 && now > i64::MAX as u64 / 2 {
            tracing::warn!(
                "{} stays unlimited: this kernel ignores kernel memory limits (linux.resources.memory.kernel)",
                p.display()
            );
        }
    }
    if let Some(k) = v.kernel_tcp {
        v1_optional(dir, "memory.kmem.tcp.limit_in_bytes", "memory.kernelTCP", &k.to_string())?;
    }
    if let Some(s) = v.swappiness {
        fsutil::write(dir, "memory.swappiness", &s.to_string())?;
    }
    if let Some(d) = v.disable_oom_killer {
        fsutil::write(dir, "memory.oom_control", if d { "1" } else { "0" })?;
    }
    if let Some(u) = v.use_hierarchy {
        fsutil::write(dir, "memory.use_hierarchy", if u { "1" } else { "0" })?;
    }
    Ok(())
}

/// Writes memory.limit_in_bytes, explaining the memsw constraint when the kernel says EINVAL.
fn write_limit(dir: &Path, limit: i64) -> Result<(), CgroupError> {
    fsutil::write(dir, LIMIT, &limit.to_string()).map_err(|e| match e {
        CgroupError::Write { path, value, err, .. } if err.raw_os_error() == Some(libc::EINVAL) => {
            let memsw = fsutil::read_opt(&dir.join(MEMSW)).ok().flatten().unwrap_or_default();
            let hint = format!(
                "; the memory limit cannot exceed the memory+swap limit ({} = {}): set \
                 linux.resources.memory.swap as well",
                dir.join(MEMSW).display(),
                memsw.trim()
            );
            CgroupError::Write { path, value, err, hint }
        }
        CgroupError::Write { path, value, err, .. } if err.raw_os_error() == Some(libc::EBUSY) => {
            let hint = "; the cgroup uses more memory than the new limit and the kernel could not \
                        reclaim enough: raise the limit"
                .to_string();
            CgroupError::Write { path, value, err, hint }
        }
        other => other,
    })
}

/// Writes a v1 file that newer kernels may lack or refuse (kmem).
fn v1_optional(dir: &Path, file: &str, resource: &str, value: &str) -> Result<(), CgroupError> {
    if !fsutil::exists(dir, file) {
        return Err(CgroupError::Unsupported {
            resource: resource.to_string(),
            cgroup: dir.to_path_buf(),
            problem: format!("{} does not exist in this kernel", dir.join(file).display()),
            fix: format!("remove linux.resources.{resource} (kernel memory limits are deprecated)"),
        });
    }
    fsutil::write(dir, file, value)
}

/// The v2 memory.swap.max value for the spec's memory+swap `swap` and `memory` limits
/// (`None`: leave memory.swap.max alone).
pub(crate) fn swap_v2(swap: Option<i64>, memory: Option<i64>) -> Result<Option<String>, CgroupError> {
    match (swap, memory) {
        (None, Some(-1)) => Ok(Some("max".to_string())),
        (None, _) => Ok(None),
        (Some(-1), _) => Ok(Some("max".to_string())),
        (Some(s), None) | (Some(s), Some(-1)) => Err(invalid(
            "memory.swap",
            s,
            "cgroup v2 limits swap separately (memory.swap.max = swap - limit), so a finite \
             memory+swap limit needs a finite linux.resources.memory.limit",
        )),
        (Some(s), Some(m)) if s < m => Err(invalid(
            "memory.swap",
            s,
            format!("it is the memory+swap limit and must be at least memory.limit ({m})"),
        )),
        (Some(s), Some(m)) => Ok(Some((s - m).to_string())),
    }
}

fn v2(cg: &Cgroup, dir: &Path, v: &Values) -> Result<(), CgroupError> {
    let unsupported = |resource: &str, problem: &str| CgroupError::Unsupported {
        resource: resource.to_string(),
        cgroup: cg.path(),
        problem: problem.to_string(),
        fix: format!("remove linux.resources.{resource} from config.json"),
    };
    if v.kernel.is_some() {
        return Err(unsupported(
            "memory.kernel",
            "cgroup v2 has no separate kernel memory limit (kernel memory counts against memory.max)",
        ));
    }
    if v.kernel_tcp.is_some() {
        return Err(unsupported("memory.kernelTCP", "cgroup v2 has no separate TCP buffer limit"));
    }
    if v.swappiness.is_some() {
        return Err(unsupported("memory.swappiness", "cgroup v2 has no per-cgroup swappiness"));
    }
    if v.disable_oom_killer == Some(true) {
        return Err(unsupported("memory.disableOOMKiller", "cgroup v2 cannot disable the OOM killer"));
    }
    if v.check_before_update {
        check_usage(dir, "memory.current", v.limit)?;
    }
    // The memory value the swap conversion needs: the new limit, else the current memory.max.
    let memory_for_swap = match (v.swap, v.limit) {
        (Some(_), None) => {
            let p = dir.join("memory.max");
            let cur = fsutil::parse_u64(&p, &fsutil::read(&p)?)?;
            Some(if cur == u64::MAX { -1 } else { i64::try_from(cur).unwrap_or(i64::MAX) })
        }
        (_, l) => l,
    };
    let swap = swap_v2(v.swap, memory_for_swap)?;
    if let Some(s) = &swap {
        if fsutil::exists(dir, "memory.swap.max") {
            fsutil::write(dir, "memory.swap.max", s)?;
        } else if v.swap.is_some() {
            return Err(CgroupError::Unsupported {
                resource: "memory.swap".to_string(),
                cgroup: cg.path(),
                problem: format!(
                    "{} does not exist: the kernel does not account swap",
                    dir.join("memory.swap.max").display()
                ),
                fix: "boot the kernel with swapaccount=1 (CONFIG_MEMCG_SWAP), or remove linux.resources.memory.swap"
                    .to_string(),
            });
        }
    }
    if let Some(l) = v.limit {
        let value = if l == -1 { "max".to_string() } else { l.to_string() };
        fsutil::write(dir, "memory.max", &value)?;
    }
    if let Some(r) = v.reservation {
        let value = if r == -1 { "max".to_string() } else { r.to_string() };
        fsutil::write(dir, "memory.low", &value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_conversion_for_v2() {
        assert_eq!(swap_v2(None, None).expect("none"), None);
        assert_eq!(swap_v2(None, Some(100)).expect("unset"), None);
        assert_eq!(swap_v2(None, Some(-1)).expect("both unlimited").as_deref(), Some("max"));
        assert_eq!(swap_v2(Some(-1), Some(100)).expect("max").as_deref(), Some("max"));
        assert_eq!(swap_v2(Some(300), Some(100)).expect("diff").as_deref(), Some("200"));
        assert_eq!(swap_v2(Some(100), Some(100)).expect("no swap").as_deref(), Some("0"));
        assert!(swap_v2(Some(50), Some(100)).expect_err("less").to_string().contains("at least"));
        assert!(swap_v2(Some(50), Some(-1)).expect_err("unlimited mem").to_string().contains("finite"));
    }
}
