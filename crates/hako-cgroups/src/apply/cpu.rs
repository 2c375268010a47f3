//! linux.resources.cpu: the cpu controller (v1 shares, CFS quota/period/burst, realtime, idle; v2
//! cpu.weight converted from shares, cpu.max, cpu.max.burst, cpu.idle) and the cpuset controller
//! (cpus, mems; same file names on v1 and v2).

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use super::{locate, nonzero, Target};
use crate::cgroup::Cgroup;
use crate::error::CgroupError;
use crate::fsutil;

/// runc's conversion of v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000).
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

pub(super) fn apply(cg: &Cgroup, c: &LinuxCpu) -> Result<(), CgroupError> {
    let shares = nonzero(c.shares());
    let quota = nonzero(c.quota());
    let period = nonzero(c.period());
    let burst = c.burst();
    let rt_runtime = nonzero(c.realtime_runtime());
    let rt_period = nonzero(c.realtime_period());
    let idle = c.idle();
    let cpu_fields = [
        ("cpu.shares", shares.is_some()),
        ("cpu.quota", quota.is_some()),
        ("cpu.period", period.is_some()),
        ("cpu.burst", burst.is_some()),
        ("cpu.realtimeRuntime", rt_runtime.is_some()),
        ("cpu.realtimePeriod", rt_period.is_some()),
        ("cpu.idle", idle.is_some()),
    ];
    if let Some((first, _)) = cpu_fields.iter().find(|(_, set)| *set) {
        if let Some(q) = quota {
            if q < -1 {
                return Err(CgroupError::InvalidValue {
                    resource: "cpu.quota".to_string(),
                    value: q.to_string(),
                    problem: "must be microseconds per period, or -1 for unlimited".to_string(),
                });
            }
        }
        match locate(cg, "cpu", first)? {
            Target::V1(dir) => {
                if let Some(s) = shares {
                    fsutil::write(dir, "cpu.shares", &s.to_string())?;
                }
                pair_v1(
                    dir,
                    ("cpu.cfs_period_us", period.map(|p| p.to_string())),
                    ("cpu.cfs_quota_us", quota.map(|q| q.to_string())),
                )?;
                if let Some(b) = burst {
                    fsutil::write(dir, "cpu.cfs_burst_us", &b.to_string())?;
                }
                pair_v1(
                    dir,
                    ("cpu.rt_period_us", rt_period.map(|p| p.to_string())),
                    ("cpu.rt_runtime_us", rt_runtime.map(|r| r.to_string())),
                )
                .map_err(rt_hint)?;
                if let Some(i) = idle {
                    fsutil::write(dir, "cpu.idle", &i.to_string())?;
                }
            }
            Target::V2(dir) => {
                if rt_runtime.is_some() || rt_period.is_some() {
                    return Err(CgroupError::Unsupported {
                        resource: "cpu.realtimeRuntime".to_string(),
                        cgroup: cg.path(),
                        problem: "cgroup v2 has no realtime bandwidth control".to_string(),
                        fix: "remove linux.resources.cpu.realtimeRuntime and realtimePeriod".to_string(),
                    });
                }
                if let Some(s) = shares {
                    fsutil::write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
                }
                if quota.is_some() || period.is_some() {
                    let value = cpu_max(dir, quota, period)?;
                    fsutil::write(dir, "cpu.max", &value)?;
                }
                if let Some(b) = burst {
                    fsutil::write(dir, "cpu.max.burst", &b.to_string())?;
                }
                if let Some(i) = idle {
                    fsutil::write(dir, "cpu.idle", &i.to_string())?;
                }
            }
        }
    }
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_some() || mems.is_some() {
        let first = if cpus.is_some() { "cpu.cpus" } else { "cpu.mems" };
        let (Target::V1(dir) | Target::V2(dir)) = locate(cg, "cpuset", first)?;
        if let Some(m) = mems {
            fsutil::write(dir, "cpuset.mems", m)?;
        }
        if let Some(c) = cpus {
            fsutil::write(dir, "cpuset.cpus", c)?;
        }
    }
    Ok(())
}

/// Writes a period/limit pair on v1. The period goes first; when the kernel refuses it with EINVAL
/// (the old limit over the new period would exceed the parent's bandwidth) it is retried after the
/// limit, as runc does.
fn pair_v1(dir: &Path, period: (&str, Option<String>), limit: (&str, Option<String>)) -> Result<(), CgroupError> {
    let mut retry_period = None;
    if let Some(p) = &period.1 {
        if let Err(e) = fsutil::write(dir, period.0, p) {
            let einval = matches!(&e, CgroupError::Write { err, .. } if err.raw_os_error() == Some(libc::EINVAL));
            if !einval || limit.1.is_none() {
                return Err(e);
            }
            retry_period = Some(p.clone());
        }
    }
    if let Some(l) = &limit.1 {
        fsutil::write(dir, limit.0, l)?;
    }
    if let Some(p) = retry_period {
        fsutil::write(dir, period.0, &p)?;
    }
    Ok(())
}

/// Explains the usual realtime failure: the parent has no realtime budget to hand out.
fn rt_hint(e: CgroupError) -> CgroupError {
    match e {
        CgroupError::Write { path, value, err, .. }
            if err.raw_os_error() == Some(libc::EINVAL) && path.ends_with("cpu.rt_runtime_us") =>
        {
            let hint = "; the parent cgroups must have at least this much cpu.rt_runtime_us (only the \
                        root has a budget by default): give the parents a budget first"
                .to_string();
            CgroupError::Write { path, value, err, hint }
        }
        other => other,
    }
}

/// The cpu.max value for the given quota/period, keeping the current part that is not given.
fn cpu_max(dir: &Path, quota: Option<i64>, period: Option<u64>) -> Result<String, CgroupError> {
    let q = match quota {
        Some(q) if q > 0 => q.to_string(),
        Some(_) => "max".to_string(),
        None => {
            let cur = fsutil::read(&dir.join("cpu.max"))?;
            cur.split_whitespace().next().unwrap_or("max").to_string()
        }
    };
    Ok(match period {
        Some(p) => format!("{q} {p}"),
        None => q,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
    }
}
