//! `update`: new resource limits for a live container, from a JSON document or from flags.

use std::io::Read;

use anyhow::{Context, Result};
use hako_runtime::state::Status;
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use super::{require, Ctx};
use crate::cli::UpdateArgs;

fn from_flags(a: &UpdateArgs, mut r: LinuxResources) -> LinuxResources {
    if a.memory.is_some()
        || a.memory_swap.is_some()
        || a.memory_reservation.is_some()
        || a.kernel_memory.is_some()
        || a.kernel_memory_tcp.is_some()
    {
        let mut m = (*r.memory()).unwrap_or_default();
        if let Some(v) = a.memory {
            m.set_limit(Some(v));
        }
        if let Some(v) = a.memory_swap {
            m.set_swap(Some(v));
        }
        if let Some(v) = a.memory_reservation {
            m.set_reservation(Some(v));
        }
        if let Some(v) = a.kernel_memory {
            m.set_kernel(Some(v));
        }
        if let Some(v) = a.kernel_memory_tcp {
            m.set_kernel_tcp(Some(v));
        }
        r.set_memory(Some::<LinuxMemory>(m));
    }
    if a.cpu_shares.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpu_rt_period.is_some()
        || a.cpu_rt_runtime.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c = r.cpu().clone().unwrap_or_default();
        if let Some(v) = a.cpu_shares {
            c.set_shares(Some(v));
        }
        if let Some(v) = a.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = a.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = a.cpu_rt_period {
            c.set_realtime_period(Some(v));
        }
        if let Some(v) = a.cpu_rt_runtime {
            c.set_realtime_runtime(Some(v));
        }
        if let Some(v) = &a.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &a.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        r.set_cpu(Some::<LinuxCpu>(c));
    }
    if let Some(v) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        r.set_pids(Some(p));
    }
    if let Some(v) = a.blkio_weight {
        let mut b = r.block_io().clone().unwrap_or_default();
        b.set_weight(Some(v));
        r.set_block_io(Some(b));
    }
    r
}

pub(crate) fn update(ctx: &Ctx, a: &UpdateArgs) -> Result<()> {
    let base = match &a.resources {
        Some(p) => {
            let mut text = String::new();
            if p.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text).context("reading resources from stdin")?;
            } else {
                text = std::fs::read_to_string(p).with_context(|| format!("reading resources file {}", p.display()))?;
            }
            serde_json::from_str::<LinuxResources>(&text)
                .with_context(|| format!("invalid resources document {}", p.display()))?
        }
        None => LinuxResources::default(),
    };
    let resources = from_flags(a, base);
    let (_locked, state) = ctx.locked(&a.id)?;
    let backend = ctx.backend(&state);
    require(&state, backend.status(&state), &[Status::Created, Status::Running, Status::Paused], "update it")?;
    backend.update(&state, &resources).map_err(|e| anyhow::anyhow!(e))
}
