//! Linux namespaces of a container: which to create and which to join by path, in the order the kernel needs
//! (the user namespace first, the pid and time namespaces only take effect for children).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};
use serde::{Deserialize, Serialize};

/// A namespace step that failed.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// The same type is listed twice.
    #[error("namespace {0} is listed twice in linux.namespaces: keep one entry")]
    Duplicate(String),
    /// A namespace path cannot be opened.
    #[error("{kind} namespace path {path}: {source}; the path must name a namespace file such as /proc/PID/ns/{ns}", ns = proc_name(kind))]
    Open {
        /// The namespace type.
        kind: String,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The process whose namespaces an exec joins is gone (its pid may be another process's now).
    #[error("the container's process {0} is no longer running (it exited while the exec was starting); its pid may belong to another process now, so no namespace was joined")]
    OwnerGone(i32),
    /// setns failed.
    #[error("joining the {kind} namespace {path}: {source}")]
    Join {
        /// The namespace type.
        kind: String,
        /// The path.
        path: PathBuf,
        /// The kernel's error.
        source: nix::Error,
    },
    /// unshare failed.
    #[error("creating namespaces ({kinds}): {source}")]
    Unshare {
        /// The namespace types.
        kinds: String,
        /// The kernel's error.
        source: nix::Error,
    },
    /// A config combination the kernel cannot honour.
    #[error("{0}")]
    Invalid(String),
}

/// The namespace plan of one container (or exec).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NsPlan {
    /// (type, path) to join, in config order.
    pub join: Vec<(String, PathBuf)>,
    /// Types to create.
    pub new: Vec<String>,
    /// Types among `new` that hako already created when it cloned init (init must not create them again).
    #[serde(default)]
    pub precreated: Vec<String>,
    /// For `exec`: the container's process (pid, start time) whose `/proc/PID/ns` files `join` names. Once the
    /// files are open, that process must still be the one that started then: if it exited and its pid went to
    /// another process, the files are that process's namespaces, and nothing is joined.
    #[serde(default)]
    pub owner: Option<(i32, u64)>,
}

/// The runtime-spec name of a namespace type.
pub fn type_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// The name of a namespace type under /proc/PID/ns.
pub fn proc_name(kind: &str) -> &'static str {
    match kind {
        "mount" => "mnt",
        "cgroup" => "cgroup",
        "uts" => "uts",
        "ipc" => "ipc",
        "user" => "user",
        "pid" => "pid",
        "network" => "net",
        "time" => "time",
        _ => "",
    }
}

fn flag(kind: &str) -> CloneFlags {
    match kind {
        "mount" => CloneFlags::CLONE_NEWNS,
        "cgroup" => CloneFlags::CLONE_NEWCGROUP,
        "uts" => CloneFlags::CLONE_NEWUTS,
        "ipc" => CloneFlags::CLONE_NEWIPC,
        "user" => CloneFlags::CLONE_NEWUSER,
        "pid" => CloneFlags::CLONE_NEWPID,
        "network" => CloneFlags::CLONE_NEWNET,
        "time" => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        _ => CloneFlags::empty(),
    }
}

impl NsPlan {
    /// Builds the plan from linux.namespaces, refusing duplicates.
    pub fn from_spec(list: &[LinuxNamespace]) -> Result<NsPlan, NamespaceError> {
        let mut plan = NsPlan::default();
        let mut seen = Vec::new();
        for ns in list {
            let kind = type_name(ns.typ()).to_owned();
            if seen.contains(&kind) {
                return Err(NamespaceError::Duplicate(kind));
            }
            seen.push(kind.clone());
            match ns.path() {
                Some(p) => {
                    if !p.exists() {
                        return Err(NamespaceError::Open {
                            kind: kind.clone(),
                            path: p.clone(),
                            source: std::io::Error::from_raw_os_error(libc::ENOENT),
                        });
                    }
                    plan.join.push((kind, p.clone()))
                }
                None => plan.new.push(kind),
            }
        }
        Ok(plan)
    }

    /// The plan for `exec`: join every namespace of `kinds` the container has, through the /proc entries of its
    /// init `pid`, which started at `start_time` (see [`NsPlan::owner`]).
    pub fn join_all_of(pid: i32, start_time: u64, kinds: &[String]) -> NsPlan {
        let join =
            kinds.iter().map(|k| (k.clone(), PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(k))))).collect();
        NsPlan { join, new: Vec::new(), precreated: Vec::new(), owner: Some((pid, start_time)) }
    }

    /// With an [`NsPlan::owner`], fails unless it is still the process that started then (called after the
    /// namespace files were opened: a process alive before and after the opens held its pid throughout).
    fn check_owner(&self) -> Result<(), NamespaceError> {
        match self.owner {
            Some((pid, start)) if !hako_runtime::procfs::process_alive(pid, start) => {
                Err(NamespaceError::OwnerGone(pid))
            }
            _ => Ok(()),
        }
    }

    /// Every namespace type the container has (created or joined).
    pub fn kinds(&self) -> Vec<String> {
        self.join.iter().map(|(k, _)| k.clone()).chain(self.new.iter().cloned()).collect()
    }

    /// Whether `kind` is created.
    pub fn creates(&self, kind: &str) -> bool {
        self.new.iter().any(|k| k == kind)
    }

    /// Whether `kind` is created or joined.
    pub fn has(&self, kind: &str) -> bool {
        self.creates(kind) || self.join.iter().any(|(k, _)| k == kind)
    }

    /// Joins the user namespace given by path, if any (it must come before every other step).
    pub fn join_user(&self) -> Result<(), NamespaceError> {
        for (kind, path) in self.join.iter().filter(|(k, _)| k == "user") {
            let f = open_ns(kind, path)?;
            self.check_owner()?;
            setns_file(kind, path, &f)?;
        }
        Ok(())
    }

    /// Joins every other namespace given by path; the mount namespace last, since it changes our root.
    pub fn join_others(&self) -> Result<(), NamespaceError> {
        let order = |k: &str| if k == "mount" { 1 } else { 0 };
        let mut rest: Vec<_> = self.join.iter().filter(|(k, _)| k != "user").collect();
        rest.sort_by_key(|(k, _)| order(k));
        // Open every file first: after joining a mount namespace, host paths may no longer resolve.
        let files = rest.iter().map(|(k, p)| open_ns(k, p).map(|f| (k, p, f))).collect::<Result<Vec<_>, _>>()?;
        self.check_owner()?;
        for (kind, path, f) in files {
            setns_file(kind, path, &f)?;
        }
        Ok(())
    }

    /// Creates every requested namespace except the user namespace.
    pub fn unshare_others(&self) -> Result<(), NamespaceError> {
        let flags = self
            .new
            .iter()
            .filter(|k| *k != "user" && !self.precreated.contains(k))
            .fold(CloneFlags::empty(), |acc, k| acc | flag(k));
        if flags.is_empty() {
            return Ok(());
        }
        nix::sched::unshare(flags).map_err(|source| NamespaceError::Unshare { kinds: self.new.join(","), source })
    }

    /// Whether a further fork is needed for the pid or time namespace to apply to the container process.
    pub fn needs_fork(&self) -> bool {
        (self.has("pid") && !self.pid_precreated()) || self.has("time")
    }

    /// Whether init was cloned straight into its new pid namespace.
    pub fn pid_precreated(&self) -> bool {
        self.precreated.iter().any(|k| k == "pid")
    }

    /// The namespaces hako can create when it clones init, for a plan that needs no user or time namespace
    /// (those need init's cooperation: id maps, offsets) and joins by path at most ipc, uts and network
    /// namespaces (as a pod's containers join their sandbox's; init joins them after the clone, which they do
    /// not depend on): pid, mount, uts, ipc, network. The cgroup namespace is never among them: it must be
    /// made after init joined its cgroup.
    pub fn clone_flags(&self) -> Option<(CloneFlags, Vec<String>)> {
        let joins_only_leaves = self.join.iter().all(|(k, _)| matches!(k.as_str(), "ipc" | "uts" | "network"));
        if !joins_only_leaves || self.creates("user") || self.creates("time") || !self.creates("mount") {
            return None;
        }
        let kinds: Vec<String> = self
            .new
            .iter()
            .filter(|k| matches!(k.as_str(), "pid" | "mount" | "uts" | "ipc" | "network"))
            .cloned()
            .collect();
        let flags = kinds.iter().fold(CloneFlags::empty(), |acc, k| acc | flag(k));
        Some((flags, kinds))
    }
}

fn open_ns(kind: &str, path: &Path) -> Result<File, NamespaceError> {
    File::open(path).map_err(|source| NamespaceError::Open { kind: kind.into(), path: path.to_owned(), source })
}

fn setns_file(kind: &str, path: &Path, f: &File) -> Result<(), NamespaceError> {
    nix::sched::setns(f.as_fd(), flag(kind)).map_err(|source| NamespaceError::Join {
        kind: kind.into(),
        path: path.to_owned(),
        source,
    })
}

/// Creates a new user namespace.
pub fn unshare_user() -> Result<(), NamespaceError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
        .map_err(|source| NamespaceError::Unshare { kinds: "user".into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exec joins the namespaces of the container's process only while that process is the one that started
    /// at the recorded time: with another start time (its pid reused by another process) nothing is joined.
    #[test]
    fn an_exec_joins_nothing_once_the_containers_pid_is_another_process() {
        let me = std::process::id() as i32;
        let Some((start, _)) = hako_runtime::procfs::proc_stat(me) else { panic!("no /proc/self/stat") };
        let kinds = ["uts".to_string()];
        let gone = NsPlan::join_all_of(me, start + 1, &kinds);
        let e = gone.join_others().unwrap_err().to_string();
        assert!(e.starts_with(&format!("the container's process {me} is no longer running")), "{e}");
        assert!(NsPlan::join_all_of(me, start + 1, &["user".to_string()]).join_user().is_err());
        // The same process, proven by its start time: joining our own uts namespace changes nothing.
        if nix::unistd::geteuid().is_root() {
            NsPlan::join_all_of(me, start, &kinds).join_others().expect("join our own uts namespace");
        }
    }

    #[test]
    fn init_is_cloned_into_new_namespaces_when_it_joins_only_ipc_uts_or_network() {
        let plan = |join: &[&str], new: &[&str]| NsPlan {
            join: join.iter().map(|k| (k.to_string(), PathBuf::from(format!("/proc/1/ns/{k}")))).collect(),
            new: new.iter().map(|k| k.to_string()).collect(),
            precreated: Vec::new(),
            owner: None,
        };
        // A pod's container (CRI): its own mount and pid namespaces, its sandbox's ipc, uts and network.
        let (flags, kinds) = plan(&["ipc", "uts", "network"], &["mount", "pid"]).clone_flags().unwrap();
        assert_eq!(flags, CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID);
        assert_eq!(kinds, ["mount", "pid"]);
        // Joining a pid, mount or user namespace is init's work, after it started.
        assert!(plan(&["pid"], &["mount"]).clone_flags().is_none());
        assert!(plan(&["mount"], &["pid"]).clone_flags().is_none());
        assert!(plan(&["user"], &["mount", "pid"]).clone_flags().is_none());
        assert!(plan(&[], &["pid"]).clone_flags().is_none(), "no mount namespace of its own");
    }

    #[test]
    fn a_bad_path_suggests_the_real_file_under_proc_pid_ns() {
        for (kind, file) in [("network", "net"), ("mount", "mnt"), ("pid", "pid")] {
            let e = NamespaceError::Open {
                kind: kind.into(),
                path: "/nonexistent".into(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            };
            let msg = e.to_string();
            assert!(msg.ends_with(&format!("such as /proc/PID/ns/{file}")), "{kind}: {msg}");
        }
    }
}
