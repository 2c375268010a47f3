//! [`Cgroup`]: one container's cgroup across every mounted hierarchy, and its life cycle: resolve,
//! create, add processes, list them, signal them, remove. Resources live in `apply/`, the freezer in
//! `freezer.rs`, statistics in `stats.rs`, container mounts in `mounts.rs`.

use std::cmp::Reverse;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::CgroupError;
use crate::fsutil;
use crate::mountinfo::{self, Layout};
use crate::resolve::{self, Hierarchy, Version};
use crate::stats::Stats;

/// How long one `destroy` retries rmdirs that fail with EBUSY while processes exit.
const RMDIR_PATIENCE: Duration = Duration::from_secs(2);

/// One container's cgroup: its directory in every mounted hierarchy of the host.
///
/// It serialises into the container's state and remembers the directories it owns: those missing
/// when [`Cgroup::resolve`] ran (so a state saved before `create`, e.g. to survive a crash, already
/// lists them) and those [`Cgroup::create`] made. [`Cgroup::destroy`], possibly in another hako
/// process, removes the leaf and, if empty, only those parents. Saving it again after `create` keeps
/// the list exact.
#[derive(Debug, Serialize, Deserialize)]
pub struct Cgroup {
    layout: Layout,
    hierarchies: Vec<Hierarchy>,
    /// Directories this cgroup owns (parents and leaves), outermost first.
    #[serde(default)]
    created: Mutex<Vec<PathBuf>>,
}

impl Clone for Cgroup {
    fn clone(&self) -> Self {
        Cgroup { layout: self.layout, hierarchies: self.hierarchies.clone(), created: Mutex::new(self.created_dirs()) }
    }
}

impl PartialEq for Cgroup {
    fn eq(&self, other: &Self) -> bool {
        self.layout == other.layout
            && self.hierarchies == other.hierarchies
            && self.created_dirs() == other.created_dirs()
    }
}

/// Reads the host's cgroup mounts.
fn host() -> Result<mountinfo::HostCgroups, CgroupError> {
    let text = fsutil::read(Path::new("/proc/self/mountinfo"))?;
    mountinfo::host_from_mounts(mountinfo::parse_mountinfo(&text)?)
}

impl Cgroup {
    /// Resolves runtime-spec cgroupsPath semantics for every mounted hierarchy: `None` (or empty)
    /// means `/hako/<id>`; an absolute path is relative to each hierarchy's root; a relative path is
    /// relative to the calling process's cgroup in each hierarchy. Reads /proc/self/mountinfo and
    /// /proc/self/cgroup, and checks which directories of the path already exist (the missing ones
    /// become this cgroup's to remove); creates nothing.
    pub fn resolve(cgroups_path: Option<&Path>, container_id: &str) -> Result<Cgroup, CgroupError> {
        let host = host()?;
        let relative = cgroups_path.map(|p| !p.as_os_str().is_empty() && !p.is_absolute()).unwrap_or(false);
        let me = if relative {
            mountinfo::parse_proc_cgroup(&fsutil::read(Path::new("/proc/self/cgroup"))?)?
        } else {
            Vec::new()
        };
        let hierarchies = resolve::resolve(&host, &me, cgroups_path, container_id)?;
        let cg = Cgroup { layout: host.layout, hierarchies, created: Mutex::new(Vec::new()) };
        for h in &cg.hierarchies {
            let rel = h.dir.strip_prefix(&h.mount_point).unwrap_or(Path::new(""));
            let mut cur = h.mount_point.clone();
            for comp in rel.components() {
                cur.push(comp);
                if !cur.exists() {
                    cg.record_created(cur.clone());
                }
            }
        }
        Ok(cg)
    }

    /// [`Cgroup::resolve`] from given /proc/self/mountinfo and /proc/self/cgroup text (another
    /// process's or mount namespace's view, or fixtures in tests). Touches nothing.
    pub fn resolve_with(
        mountinfo_text: &str,
        proc_cgroup_text: &str,
        cgroups_path: Option<&Path>,
        container_id: &str,
    ) -> Result<Cgroup, CgroupError> {
        let host = mountinfo::host_from_mounts(mountinfo::parse_mountinfo(mountinfo_text)?)?;
        let me = mountinfo::parse_proc_cgroup(proc_cgroup_text)?;
        let hierarchies = resolve::resolve(&host, &me, cgroups_path, container_id)?;
        Ok(Cgroup { layout: host.layout, hierarchies, created: Mutex::new(Vec::new()) })
    }

    /// The host's cgroup layout, from /proc/self/mountinfo.
    pub fn layout() -> Result<Layout, CgroupError> {
        Ok(host()?.layout)
    }

    /// Every controller this host can enforce: v1 hierarchies' controllers plus those listed in the
    /// cgroup2 root's cgroup.controllers (for `hako features`/`info`).
    pub fn host_controllers() -> Result<Vec<String>, CgroupError> {
        let host = host()?;
        let mut out: Vec<String> =
            host.v1.iter().flat_map(|h| h.subsystems.iter().filter(|s| !s.starts_with("name=")).cloned()).collect();
        if let Some(v2) = &host.v2 {
            if let Some(t) = fsutil::read_opt(&v2.mount_point.join("cgroup.controllers"))? {
                out.extend(t.split_whitespace().map(str::to_string));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The layout this cgroup was resolved for.
    pub fn host_layout(&self) -> Layout {
        self.layout
    }

    /// The container's directory in each hierarchy.
    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    /// The container's cgroup path (in the first hierarchy), for messages and `hako state`.
    pub fn path(&self) -> PathBuf {
        self.hierarchies.first().map(|h| h.path.clone()).unwrap_or_default()
    }

    /// The directories this cgroup owns: missing at `resolve` time or made by `create`.
    pub fn created_dirs(&self) -> Vec<PathBuf> {
        self.created.lock().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    fn record_created(&self, dir: PathBuf) {
        let mut g = self.created.lock().unwrap_or_else(|p| p.into_inner());
        if !g.contains(&dir) {
            g.push(dir);
        }
    }

    /// The v1 hierarchy carrying `controller`.
    pub(crate) fn v1(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.version == Version::V1 && h.has(controller))
    }

    /// The cgroup2 hierarchy.
    pub(crate) fn v2(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.version == Version::V2)
    }

    /// The hierarchy whose cgroup.procs lists the container's processes (and that the freezer uses).
    pub(crate) fn process_hierarchy(&self) -> Option<&Hierarchy> {
        if self.layout == Layout::Unified {
            return self.v2();
        }
        ["freezer", "pids", "memory", "cpu", "devices"]
            .iter()
            .find_map(|c| self.v1(c))
            .or_else(|| self.hierarchies.iter().find(|h| h.version == Version::V1))
            .or_else(|| self.v2())
    }

    /// Creates the cgroup directory (and missing parents) in every hierarchy. Idempotent. On v1,
    /// new cpuset directories get their parent's cpus and mems; on pure v2, parents delegate every
    /// controller they have. On error, what this call created is removed again.
    pub fn create(&self) -> Result<(), CgroupError> {
        let before = self.created_dirs();
        let mut made = Vec::new();
        let res = self.hierarchies.iter().try_for_each(|h| self.create_one(h, &mut made));
        if let Err(e) = res {
            made.sort_by_key(|p| Reverse(p.components().count()));
            for d in &made {
                let _ = fs::remove_dir(d);
            }
            *self.created.lock().unwrap_or_else(|p| p.into_inner()) = before;
            return Err(e);
        }
        Ok(())
    }

    fn create_one(&self, h: &Hierarchy, made: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
        let rel = h.dir.strip_prefix(&h.mount_point).map(Path::to_path_buf).unwrap_or_default();
        // A concurrent `destroy` of a sibling may remove an empty shared parent between our mkdirs, or
        // between a mkdir that found it and the read of its cpuset files (ENODEV, or ENOENT): start over a
        // few times when a parent vanishes.
        let mut attempts = 0;
        'again: loop {
            let mut cur = h.mount_point.clone();
            for comp in rel.components() {
                cur.push(comp);
                match fs::create_dir(&cur) {
                    Ok(()) => {
                        self.record_created(cur.clone());
                        made.push(cur.clone());
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 5 => {
                        attempts += 1;
                        continue 'again;
                    }
                    Err(err) => {
                        let hint = match err.raw_os_error() {
                            Some(libc::ENOENT) => format!(
                                "; the hierarchy mounted at {} is gone: is /sys/fs/cgroup mounted in \
                                 this mount namespace?",
                                h.mount_point.display()
                            ),
                            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
                                "; run hako as root on a writable cgroup filesystem".to_string()
                            }
                            _ => String::new(),
                        };
                        return Err(CgroupError::Mkdir { path: cur, err, hint });
                    }
                }
                if h.version == Version::V1 && h.has("cpuset") {
                    match init_cpuset(&cur) {
                        Ok(()) => {}
                        Err(e) if vanished(&e) && attempts < 5 => {
                            attempts += 1;
                            continue 'again;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            break;
        }
        if h.version == Version::V2 && self.layout == Layout::Unified {
            enable_v2_controllers(h, None);
        }
        Ok(())
    }

    /// Applies resources (create, or `hako update` on a running container). See `apply/`.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        crate::apply::apply(self, r)
    }

    /// Moves process `pid` (with all its threads) into the cgroup in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            let path = h.dir.join("cgroup.procs");
            let value = pid.to_string();
            fsutil::write(&h.dir, "cgroup.procs", &value).map_err(|e| match e {
                CgroupError::Write { err, .. } => {
                    let hint = match err.raw_os_error() {
                        Some(libc::ESRCH) => "; the process has already exited".to_string(),
                        Some(libc::ENOENT) => "; the cgroup does not exist: call create first".to_string(),
                        Some(libc::ENOSPC) => "; cpuset.cpus or cpuset.mems of the cgroup is empty".to_string(),
                        Some(libc::EBUSY) | Some(libc::EOPNOTSUPP) => "; cgroup v2 allows processes \
                             only in leaf cgroups without delegated controllers (cgroup.subtree_control)"
                            .to_string(),
                        _ => String::new(),
                    };
                    CgroupError::AddPid { pid, path: path.clone(), err, hint }
                }
                other => other,
            })?;
        }
        Ok(())
    }

    /// Every process in the container's cgroup and its descendants, sorted. Empty when the cgroup
    /// does not exist.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let Some(h) = self.process_hierarchy() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        collect_pids(&h.dir, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Freezes the cgroup and waits until every process is frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        crate::freezer::set(self, true)
    }

    /// Thaws the cgroup.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        crate::freezer::set(self, false)
    }

    /// Whether the cgroup is frozen (paused).
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        crate::freezer::is_frozen(self)
    }

    /// Statistics in the format of runc's `events --stats` `data` object.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        crate::stats::read(self)
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup (memory.oom_control
    /// `oom_kill` on v1, memory.events `oom_kill` on v2); 0 when unknown.
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        if let Some(h) = self.v1("memory") {
            return Ok(fsutil::read_flat_keyed(&h.dir.join("memory.oom_control"))?
                .get("oom_kill")
                .copied()
                .unwrap_or(0));
        }
        if let Some(h) = self.v2() {
            return Ok(fsutil::read_flat_keyed(&h.dir.join("memory.events"))?.get("oom_kill").copied().unwrap_or(0));
        }
        Ok(0)
    }

    /// Sends `sig` to every process of the cgroup: freeze, signal, thaw, so that no process forks
    /// away in between. On pure v2, SIGKILL uses cgroup.kill. A cgroup that was paused stays paused
    /// (except after SIGKILL, which needs the processes thawed to die).
    pub fn kill_all(&self, sig: i32) -> Result<(), CgroupError> {
        if sig == libc::SIGKILL && self.layout == Layout::Unified {
            if let Some(h) = self.v2() {
                if fsutil::exists(&h.dir, "cgroup.kill") {
                    return fsutil::write(&h.dir, "cgroup.kill", "1");
                }
            }
        }
        let was_frozen = self.is_frozen().unwrap_or(false);
        let froze = !was_frozen && self.freeze().is_ok();
        let mut result = Ok(());
        match self.pids() {
            Ok(pids) => {
                for pid in pids {
                    match crate::sys::kill(pid, sig) {
                        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                        Err(err) => {
                            if result.is_ok() {
                                result = Err(CgroupError::Signal { pid, signal: sig, cgroup: self.path(), err });
                            }
                        }
                    }
                }
            }
            Err(e) => result = Err(e),
        }
        if froze || (was_frozen && sig == libc::SIGKILL) {
            self.thaw()?;
        }
        result
    }

    /// Removes the cgroup: the leaf (and any cgroups below it) in every hierarchy, retrying briefly
    /// while processes exit, then the parents that `create` made if they are empty. Missing
    /// directories are fine, so it can run again after a crash (`delete --force`).
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        let deadline = Instant::now() + RMDIR_PATIENCE;
        for h in &self.hierarchies {
            if let Err(e) = remove_tree(&h.dir, deadline) {
                first_err.get_or_insert(e);
            }
        }
        let leaves: Vec<&Path> = self.hierarchies.iter().map(|h| h.dir.as_path()).collect();
        let mut parents = self.created_dirs();
        parents.retain(|d| !leaves.contains(&d.as_path()));
        parents.sort_by_key(|p| Reverse(p.components().count()));
        for d in parents {
            // Still in use by another container (ENOTEMPTY/EBUSY) or already gone: leave it.
            let _ = fs::remove_dir(&d);
        }
        // Forget what is gone; parents still shared with other containers stay on the list so a
        // later destroy (when the sharers are gone) can still remove them.
        self.created.lock().unwrap_or_else(|p| p.into_inner()).retain(|d| d.exists());
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// What the runtime needs to build /sys/fs/cgroup inside the container. See `mounts.rs`.
    pub fn mounts_for_container(&self) -> Vec<crate::mounts::CgroupMount> {
        crate::mounts::for_container(self)
    }
}

/// Whether `e` says that the cgroup it names was removed under us (its files give ENODEV while the kernel
/// takes it down, ENOENT after).
fn vanished(e: &CgroupError) -> bool {
    let err = match e {
        CgroupError::Read { err, .. } | CgroupError::Write { err, .. } => err,
        _ => return false,
    };
    matches!(err.raw_os_error(), Some(libc::ENODEV) | Some(libc::ENOENT))
}

/// Copies the parent's cpuset.cpus and cpuset.mems into a v1 cpuset directory where they are empty
/// (a new v1 cpuset cgroup starts empty and refuses processes until both are set).
fn init_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let Some(cur) = fsutil::read_opt(&dir.join(file))? else {
            continue;
        };
        if cur.trim().is_empty() {
            let from_parent = fsutil::read(&parent.join(file))?;
            if !from_parent.trim().is_empty() {
                fsutil::write(dir, file, from_parent.trim())?;
            }
        }
    }
    Ok(())
}

/// Delegates controllers down the cgroup2 tree to `h.dir`: for each ancestor from the mount point
/// to the leaf's parent, adds to cgroup.subtree_control the wanted controllers (all available ones
/// when `only` is `None`) that the ancestor has. Failures are not errors here (a parent with processes
/// cannot delegate); whoever needs a controller checks the leaf's cgroup.controllers afterwards.
pub(crate) fn enable_v2_controllers(h: &Hierarchy, only: Option<&[&str]>) {
    let rel = h.dir.strip_prefix(&h.mount_point).map(Path::to_path_buf).unwrap_or_default();
    let mut cur = h.mount_point.clone();
    for comp in rel.components() {
        let available = fsutil::read_opt(&cur.join("cgroup.controllers")).ok().flatten().unwrap_or_default();
        let enabled = fsutil::read_opt(&cur.join("cgroup.subtree_control")).ok().flatten().unwrap_or_default();
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        let want: Vec<String> = available
            .split_whitespace()
            .filter(|c| only.map(|o| o.contains(c)).unwrap_or(true))
            .filter(|c| !enabled.contains(c))
            .map(|c| format!("+{c}"))
            .collect();
        if !want.is_empty() && fsutil::write(&cur, "cgroup.subtree_control", &want.join(" ")).is_err() {
            for w in &want {
                if let Err(e) = fsutil::write(&cur, "cgroup.subtree_control", w) {
                    tracing::debug!("cannot delegate {w}: {e}");
                }
            }
        }
        cur.push(comp);
    }
}

/// Reads cgroup.procs of `dir` and of every cgroup below it.
fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let Some(text) = fsutil::read_opt(&dir.join("cgroup.procs"))? else {
        return Ok(());
    };
    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for sub in subdirs(dir)? {
        collect_pids(&sub, out)?;
    }
    Ok(())
}

/// The child cgroups of `dir` (empty when `dir` is gone).
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(CgroupError::Read { path: dir.to_path_buf(), err }),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|err| CgroupError::Read { path: dir.to_path_buf(), err })?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Removes a cgroup and its descendants (deepest first). Retries EBUSY until `deadline`.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    for sub in subdirs(dir)? {
        remove_tree(&sub, deadline)?;
    }
    let mut delay = Duration::from_millis(5);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(err) => {
                let mut pids = Vec::new();
                let _ = collect_pids(dir, &mut pids);
                let hint = if pids.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; processes {pids:?} are still in it: kill them (`hako kill --all <id> KILL`) \
                         and retry"
                    )
                };
                return Err(CgroupError::Rmdir { path: dir.to_path_buf(), err, hint });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cgroup_removed_under_us_is_retried() {
        let read = |errno| CgroupError::Read { path: "/x".into(), err: io::Error::from_raw_os_error(errno) };
        assert!(vanished(&read(libc::ENODEV)));
        assert!(vanished(&read(libc::ENOENT)));
        assert!(!vanished(&read(libc::EACCES)));
        let write = CgroupError::Write {
            path: "/x".into(),
            value: "0".into(),
            err: io::Error::from_raw_os_error(libc::ENODEV),
            hint: String::new(),
        };
        assert!(vanished(&write));
        let mkdir = CgroupError::Mkdir {
            path: "/x".into(),
            err: io::Error::from_raw_os_error(libc::ENOENT),
            hint: String::new(),
        };
        assert!(!vanished(&mkdir), "mkdir's own ENOENT is handled where it happens");
    }
}
