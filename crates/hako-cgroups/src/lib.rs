//! hako's cgroup manager: puts a container's processes into cgroups and enforces
//! `linux.resources` on cgroup v1, pure cgroup v2 (unified) and hybrid hosts (v1 controllers plus a
//! cgroup2 mount such as /sys/fs/cgroup/unified holding some controllers, e.g. only hugetlb). The
//! layout is detected at run time from /proc/self/mountinfo and /proc/self/cgroup.
//!
//! The entry point is [`Cgroup`]: `resolve` (cgroupsPath semantics) → `create` → `apply` →
//! `add_pid`, then `freeze`/`thaw`, `pids`, `stats`, `kill_all`, and finally `destroy`. A `Cgroup`
//! serialises into the container's state so `delete` can rebuild it without the spec.
//!
//! Code map: `mountinfo` (host discovery, pure), `resolve` (cgroupsPath, pure), `cgroup` (life
//! cycle), `apply/` (one file per controller family), `devices` (v1 rules and the v2 eBPF program),
//! `freezer`, `stats` (runc's `events --stats` format), `mounts` (cgroup mounts inside a container),
//! `fsutil` (cgroup file I/O), `sys` (the only raw syscalls: kill and bpf).

#![warn(missing_docs)]

mod apply;
mod cgroup;
mod devices;
mod error;
mod freezer;
mod fsutil;
mod mountinfo;
mod mounts;
mod resolve;
mod stats;
mod sys;

pub use cgroup::Cgroup;
pub use error::CgroupError;
pub use mountinfo::Layout;
pub use mounts::CgroupMount;
pub use resolve::{Hierarchy, Version, DEFAULT_PARENT};
pub use stats::{
    Blkio, BlkioEntry, Cpu, CpuSet, CpuUsage, Event, Hugetlb, Memory, MemoryEntry, Pids, Stats, Throttling,
};
