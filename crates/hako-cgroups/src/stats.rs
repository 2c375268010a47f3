//! Statistics for `hako events --stats`: the types serialise like the `data` object of runc's
//! `events --stats` (runc's types/events.go), and the readers fill them from v1 files (cpuacct, cpu,
//! memory, pids, blkio, hugetlb, cpuset) or v2 files (cpu.stat, memory.*, pids.*, io.stat,
//! hugetlb.*). Controllers that are absent leave their part at zero.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::apply::Target;
use crate::cgroup::Cgroup;
use crate::error::CgroupError;
use crate::fsutil;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One `events` line: `{"type":"stats","id":ID,"data":{...}}` (or `"type":"oom"` without data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `stats` or `oom`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The container id.
    pub id: String,
    /// The statistics, for `stats` events.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data: Option<Stats>,
}

/// runc's `Stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU time.
    pub cpu: Cpu,
    /// cpuset configuration.
    pub cpuset: CpuSet,
    /// Memory use and limits.
    pub memory: Memory,
    /// Process counts.
    pub pids: Pids,
    /// Block I/O.
    pub blkio: Blkio,
    /// Huge page use, keyed by page size ("2MB").
    pub hugetlb: BTreeMap<String, Hugetlb>,
    /// Intel RDT (not collected).
    pub intel_rdt: BTreeMap<String, serde_json::Value>,
    /// Network interfaces (not collected; null like runc).
    pub network_interfaces: Option<Vec<serde_json::Value>>,
}

/// runc's `Cpu`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// Usage counters.
    pub usage: CpuUsage,
    /// CFS throttling.
    pub throttling: Throttling,
}

/// runc's `CpuUsage`; nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Total CPU time.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub total: u64,
    /// Per CPU.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub percpu: Vec<u64>,
    /// Per CPU in kernel mode.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub percpu_kernel: Vec<u64>,
    /// Per CPU in user mode.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub percpu_user: Vec<u64>,
    /// Kernel mode.
    pub kernel: u64,
    /// User mode.
    pub user: u64,
}

/// runc's `Throttling`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throttling {
    /// Enforcement periods.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero", default)]
    pub throttled_periods: u64,
    /// Time throttled, ns.
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero", default)]
    pub throttled_time: u64,
}

/// runc's `CPUSet`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSet {
    /// CPUs.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub cpus: Vec<u16>,
    /// Memory nodes.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mems: Vec<u16>,
}

/// runc's `MemoryEntry`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    /// Limit (u64::MAX-ish when unlimited, as the kernel reports).
    pub limit: u64,
    /// Current usage.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub usage: u64,
    /// Peak usage.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub max: u64,
    /// How often the limit was hit.
    pub failcnt: u64,
}

/// runc's `Memory`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Page cache.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory + swap (v1 memsw; on v2 memory.current + memory.swap.current).
    pub swap: MemoryEntry,
    /// Kernel memory (v1 only).
    pub kernel: MemoryEntry,
    /// TCP buffers (v1 only).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub raw: BTreeMap<String, u64>,
}

/// runc's `Pids`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    /// Processes (tasks) now.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub current: u64,
    /// pids.max; 0 means unlimited.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub limit: u64,
}

/// runc's `BlkioEntry`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlkioEntry {
    /// Device major.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub major: u64,
    /// Device minor.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub minor: u64,
    /// Read, Write, Sync, Async, Discard, Total.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub op: String,
    /// The value.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub value: u64,
}

/// runc's `Blkio`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Blkio {
    /// Bytes transferred.
    #[serde(rename = "ioServiceBytesRecursive", skip_serializing_if = "Vec::is_empty", default)]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// I/O operations.
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty", default)]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// Queued operations (CFQ).
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty", default)]
    pub io_queued_recursive: Vec<BlkioEntry>,
    /// Service time (CFQ).
    #[serde(rename = "ioServiceTimeRecursive", skip_serializing_if = "Vec::is_empty", default)]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    /// Wait time (CFQ).
    #[serde(rename = "ioWaitTimeRecursive", skip_serializing_if = "Vec::is_empty", default)]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    /// Merged operations (CFQ).
    #[serde(rename = "ioMergedRecursive", skip_serializing_if = "Vec::is_empty", default)]
    pub io_merged_recursive: Vec<BlkioEntry>,
    /// Disk time (CFQ).
    #[serde(rename = "ioTimeRecursive", skip_serializing_if = "Vec::is_empty", default)]
    pub io_time_recursive: Vec<BlkioEntry>,
    /// Sectors (CFQ).
    #[serde(rename = "sectorsRecursive", skip_serializing_if = "Vec::is_empty", default)]
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// runc's `Hugetlb`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hugetlb {
    /// Bytes in use.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub usage: u64,
    /// Peak (v1).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub max: u64,
    /// Allocation failures.
    pub failcnt: u64,
}

/// USER_HZ: cpuacct.stat counts in these ticks.
const CLOCK_TICKS: u64 = 100;
const NS_PER_TICK: u64 = 1_000_000_000 / CLOCK_TICKS;

/// Finds a controller without delegating anything (stats never change the cgroup).
fn find<'a>(cg: &'a Cgroup, controller: &str) -> Option<Target<'a>> {
    if let Some(h) = cg.v1(controller) {
        return Some(Target::V1(&h.dir));
    }
    let h = cg.v2()?;
    let has = fsutil::read_opt(&h.dir.join("cgroup.controllers"))
        .ok()
        .flatten()
        .map(|c| c.split_whitespace().any(|x| x == controller))
        .unwrap_or(false);
    // cpu.stat's usage counters exist on v2 without the cpu controller.
    (has || controller == "cpu").then_some(Target::V2(&h.dir))
}

fn u64_or_zero(path: &Path) -> Result<u64, CgroupError> {
    Ok(fsutil::read_u64_opt(path)?.unwrap_or(0))
}

fn list(path: &Path) -> Result<Vec<u64>, CgroupError> {
    Ok(fsutil::read_opt(path)?
        .map(|t| t.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default())
}

/// Reads every statistic the host has for this cgroup.
pub(crate) fn read(cg: &Cgroup) -> Result<Stats, CgroupError> {
    if let Some(h) = cg.hierarchies().first() {
        if !h.dir.is_dir() {
            return Err(CgroupError::Missing { path: h.dir.clone() });
        }
    }
    let mut s = Stats::default();
    cpu(cg, &mut s)?;
    memory(cg, &mut s)?;
    if let Some(Target::V1(d) | Target::V2(d)) = find(cg, "pids") {
        s.pids.current = u64_or_zero(&d.join("pids.current"))?;
        let limit = u64_or_zero(&d.join("pids.max"))?;
        s.pids.limit = if limit == u64::MAX { 0 } else { limit };
    }
    blkio(cg, &mut s)?;
    hugetlb(cg, &mut s)?;
    if let Some(Target::V1(d) | Target::V2(d)) = find(cg, "cpuset") {
        let pick = |a: &str, b: &str| -> Result<Vec<u16>, CgroupError> {
            let t = fsutil::read_opt(&d.join(a))?.filter(|t| !t.trim().is_empty());
            let t = match t {
                Some(t) => Some(t),
                None => fsutil::read_opt(&d.join(b))?,
            };
            Ok(t.map(|t| fsutil::parse_cpu_list(&t)).unwrap_or_default())
        };
        s.cpuset.cpus = pick("cpuset.cpus", "cpuset.cpus.effective")?;
        s.cpuset.mems = pick("cpuset.mems", "cpuset.mems.effective")?;
    }
    Ok(s)
}

fn cpu(cg: &Cgroup, s: &mut Stats) -> Result<(), CgroupError> {
    if let Some(h) = cg.v1("cpuacct") {
        let d = &h.dir;
        s.cpu.usage.total = u64_or_zero(&d.join("cpuacct.usage"))?;
        s.cpu.usage.percpu = list(&d.join("cpuacct.usage_percpu"))?;
        s.cpu.usage.percpu_kernel = list(&d.join("cpuacct.usage_percpu_sys"))?;
        s.cpu.usage.percpu_user = list(&d.join("cpuacct.usage_percpu_user"))?;
        match (
            fsutil::read_u64_opt(&d.join("cpuacct.usage_user"))?,
            fsutil::read_u64_opt(&d.join("cpuacct.usage_sys"))?,
        ) {
            (Some(u), Some(k)) => {
                s.cpu.usage.user = u;
                s.cpu.usage.kernel = k;
            }
            _ => {
                let st = fsutil::read_flat_keyed(&d.join("cpuacct.stat"))?;
                s.cpu.usage.user = st.get("user").copied().unwrap_or(0) * NS_PER_TICK;
                s.cpu.usage.kernel = st.get("system").copied().unwrap_or(0) * NS_PER_TICK;
            }
        }
        if let Some(h) = cg.v1("cpu") {
            let st = fsutil::read_flat_keyed(&h.dir.join("cpu.stat"))?;
            s.cpu.throttling.periods = st.get("nr_periods").copied().unwrap_or(0);
            s.cpu.throttling.throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
            s.cpu.throttling.throttled_time = st.get("throttled_time").copied().unwrap_or(0);
        }
        return Ok(());
    }
    if let Some(Target::V2(d)) = find(cg, "cpu") {
        let st = fsutil::read_flat_keyed(&d.join("cpu.stat"))?;
        let g = |k: &str| st.get(k).copied().unwrap_or(0);
        s.cpu.usage.total = g("usage_usec") * 1000;
        s.cpu.usage.user = g("user_usec") * 1000;
        s.cpu.usage.kernel = g("system_usec") * 1000;
        s.cpu.throttling.periods = g("nr_periods");
        s.cpu.throttling.throttled_periods = g("nr_throttled");
        s.cpu.throttling.throttled_time = g("throttled_usec") * 1000;
    }
    Ok(())
}

fn memory(cg: &Cgroup, s: &mut Stats) -> Result<(), CgroupError> {
    match find(cg, "memory") {
        Some(Target::V1(d)) => {
            let entry = |prefix: &str| -> Result<MemoryEntry, CgroupError> {
                let f = |suffix: &str| d.join(format!("{prefix}{suffix}"));
                Ok(MemoryEntry {
                    usage: u64_or_zero(&f("usage_in_bytes"))?,
                    max: u64_or_zero(&f("max_usage_in_bytes"))?,
                    limit: u64_or_zero(&f("limit_in_bytes"))?,
                    failcnt: u64_or_zero(&f("failcnt"))?,
                })
            };
            s.memory.usage = entry("memory.")?;
            s.memory.swap = entry("memory.memsw.")?;
            s.memory.kernel = entry("memory.kmem.")?;
            s.memory.kernel_tcp = entry("memory.kmem.tcp.")?;
            s.memory.raw = fsutil::read_flat_keyed(&d.join("memory.stat"))?;
            s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
        }
        Some(Target::V2(d)) => {
            let events = fsutil::read_flat_keyed(&d.join("memory.events"))?;
            s.memory.usage = MemoryEntry {
                usage: u64_or_zero(&d.join("memory.current"))?,
                max: u64_or_zero(&d.join("memory.peak"))?,
                limit: u64_or_zero(&d.join("memory.max"))?,
                failcnt: events.get("max").copied().unwrap_or(0),
            };
            if let Some(swap) = fsutil::read_u64_opt(&d.join("memory.swap.current"))? {
                let swap_max = u64_or_zero(&d.join("memory.swap.max"))?;
                let swap_events = fsutil::read_flat_keyed(&d.join("memory.swap.events"))?;
                // runc reports memory+swap, as v1's memsw.
                s.memory.swap = MemoryEntry {
                    usage: swap.saturating_add(s.memory.usage.usage),
                    max: 0,
                    limit: swap_max.saturating_add(s.memory.usage.limit),
                    failcnt: swap_events.get("max").copied().unwrap_or(0),
                };
            }
            s.memory.raw = fsutil::read_flat_keyed(&d.join("memory.stat"))?;
            s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
        }
        None => {}
    }
    Ok(())
}

/// Parses a v1 blkio recursive file: `MAJ:MIN Op value` lines and a final `Total N`.
pub(crate) fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 3 {
                return None;
            }
            let (maj, min) = f[0].split_once(':')?;
            Some(BlkioEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op: f[1].to_string(),
                value: f[2].parse().ok()?,
            })
        })
        .collect()
}

fn blkio(cg: &Cgroup, s: &mut Stats) -> Result<(), CgroupError> {
    match find(cg, "blkio").or_else(|| find(cg, "io")) {
        Some(Target::V1(d)) => {
            let read = |f: &str| -> Result<Vec<BlkioEntry>, CgroupError> {
                Ok(fsutil::read_opt(&d.join(f))?.map(|t| parse_blkio_v1(&t)).unwrap_or_default())
            };
            // CFQ files first, then BFQ, then the throttle accounting every kernel has.
            for prefix in ["blkio.", "blkio.bfq.", "blkio.throttle."] {
                let bytes = read(&format!("{prefix}io_service_bytes_recursive"))?;
                let ios = read(&format!("{prefix}io_serviced_recursive"))?;
                if !bytes.is_empty() || !ios.is_empty() || prefix == "blkio.throttle." {
                    s.blkio.io_service_bytes_recursive = bytes;
                    s.blkio.io_serviced_recursive = ios;
                    if prefix == "blkio." {
                        s.blkio.io_queued_recursive = read("blkio.io_queued_recursive")?;
                        s.blkio.io_service_time_recursive = read("blkio.io_service_time_recursive")?;
                        s.blkio.io_wait_time_recursive = read("blkio.io_wait_time_recursive")?;
                        s.blkio.io_merged_recursive = read("blkio.io_merged_recursive")?;
                        s.blkio.io_time_recursive = read("blkio.time_recursive")?;
                        s.blkio.sectors_recursive = read("blkio.sectors_recursive")?;
                    }
                    break;
                }
            }
        }
        Some(Target::V2(d)) => {
            let text = fsutil::read_opt(&d.join("io.stat"))?.unwrap_or_default();
            let (bytes, ios) = io_stat_v2(&text);
            s.blkio.io_service_bytes_recursive = bytes;
            s.blkio.io_serviced_recursive = ios;
        }
        None => {}
    }
    Ok(())
}

/// Converts v2 io.stat into runc's byte and operation entries.
pub(crate) fn io_stat_v2(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for (major, minor, kv) in fsutil::parse_nested_keyed(text) {
        for (key, op, is_bytes) in
            [("rbytes", "Read", true), ("wbytes", "Write", true), ("rios", "Read", false), ("wios", "Write", false)]
        {
            if let Some(v) = kv.get(key) {
                let e = BlkioEntry { major, minor, op: op.to_string(), value: *v };
                if is_bytes {
                    bytes.push(e);
                } else {
                    ios.push(e);
                }
            }
        }
    }
    (bytes, ios)
}

fn hugetlb(cg: &Cgroup, s: &mut Stats) -> Result<(), CgroupError> {
    let target = match cg.v1("hugetlb") {
        Some(h) => Target::V1(&h.dir),
        None => match cg.v2() {
            Some(h) if has_any_hugetlb(&h.dir) => Target::V2(&h.dir),
            _ => return Ok(()),
        },
    };
    for ps in crate::apply::host_page_sizes() {
        let entry = match target {
            Target::V1(d) => Hugetlb {
                usage: u64_or_zero(&d.join(format!("hugetlb.{ps}.usage_in_bytes")))?,
                max: u64_or_zero(&d.join(format!("hugetlb.{ps}.max_usage_in_bytes")))?,
                failcnt: u64_or_zero(&d.join(format!("hugetlb.{ps}.failcnt")))?,
            },
            Target::V2(d) => {
                if !fsutil::exists(d, &format!("hugetlb.{ps}.current")) {
                    continue;
                }
                Hugetlb {
                    usage: u64_or_zero(&d.join(format!("hugetlb.{ps}.current")))?,
                    max: 0,
                    failcnt: fsutil::read_flat_keyed(&d.join(format!("hugetlb.{ps}.events")))?
                        .get("max")
                        .copied()
                        .unwrap_or(0),
                }
            }
        };
        s.hugetlb.insert(ps, entry);
    }
    Ok(())
}

fn has_any_hugetlb(dir: &Path) -> bool {
    fsutil::read_opt(&dir.join("cgroup.controllers"))
        .ok()
        .flatten()
        .map(|c| c.split_whitespace().any(|x| x == "hugetlb"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_v1_lines() {
        let e = parse_blkio_v1("8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n");
        assert_eq!(e.len(), 3);
        assert_eq!(e[1], BlkioEntry { major: 8, minor: 0, op: "Write".to_string(), value: 512 });
    }

    #[test]
    fn io_stat_v2_becomes_runc_entries() {
        let (b, i) = io_stat_v2("254:0 rbytes=100 wbytes=200 rios=3 wios=4 dbytes=0 dios=0\n");
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].op, "Read");
        assert_eq!(b[1].value, 200);
        assert_eq!(i[1], BlkioEntry { major: 254, minor: 0, op: "Write".to_string(), value: 4 });
    }

    #[test]
    fn serialises_with_runc_names() {
        let mut s = Stats::default();
        s.pids.current = 1;
        s.cpu.throttling.throttled_periods = 2;
        s.memory.kernel_tcp.limit = 5;
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["pids"]["current"], 1);
        assert!(v["pids"].get("limit").is_none(), "zero limit is omitted like runc");
        assert_eq!(v["cpu"]["throttling"]["throttledPeriods"], 2);
        assert_eq!(v["memory"]["kernelTCP"]["limit"], 5);
        assert_eq!(v["memory"]["usage"]["failcnt"], 0);
        assert!(v["network_interfaces"].is_null());
        let e = Event { kind: "stats".to_string(), id: "c".to_string(), data: Some(s) };
        let j = serde_json::to_value(&e).expect("json");
        assert_eq!(j["type"], "stats");
        assert_eq!(j["data"]["pids"]["current"], 1);
    }
}
