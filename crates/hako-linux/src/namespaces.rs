//! Linux namespaces of a container: which to create and which to join by path, in the order the kernel needs
//! (the user namespace first, the pid and time namespaces only take effect for children).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

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

    /// The plan for `exec`: join every namespace the container has, through its init's /proc entries.
    pub fn join_all_of(pid: i32, kinds: &[String]) -> NsPlan {
        let join =
            kinds.iter().map(|k| (k.clone(), PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(k))))).collect();
        NsPlan { join, new: Vec::new(), precreated: Vec::new() }
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
            setns_path(kind, path)?;
        }
        Ok(())
    }

    /// Joins every other namespace given by path; the mount namespace last, since it changes our root.
    pub fn join_others(&self) -> Result<(), NamespaceError> {
        let order = |k: &str| if k == "mount" { 1 } else { 0 };
        let mut rest: Vec<_> = self.join.iter().filter(|(k, _)| k != "user").collect();
        rest.sort_by_key(|(k, _)| order(k));
        // Open every file first: after joining a mount namespace, host paths may no longer resolve.
        let files = rest
            .iter()
            .map(|(k, p)| {
                File::open(p).map(|f| (k, p, f)).map_err(|source| NamespaceError::Open {
                    kind: k.clone(),
                    path: p.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (kind, path, f) in files {
            nix::sched::setns(f.as_fd(), flag(kind)).map_err(|source| NamespaceError::Join {
                kind: kind.clone(),
                path: path.clone(),
                source,
            })?;
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

fn setns_path(kind: &str, path: &PathBuf) -> Result<(), NamespaceError> {
    let f =
        File::open(path).map_err(|source| NamespaceError::Open { kind: kind.into(), path: path.clone(), source })?;
    nix::sched::setns(f.as_fd(), flag(kind)).map_err(|source| NamespaceError::Join {
        kind: kind.into(),
        path: path.clone(),
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

    #[test]
    fn init_is_cloned_into_new_namespaces_when_it_joins_only_ipc_uts_or_network() {
        let plan = |join: &[&str], new: &[&str]| NsPlan {
            join: join.iter().map(|k| (k.to_string(), PathBuf::from(format!("/proc/1/ns/{k}")))).collect(),
            new: new.iter().map(|k| k.to_string()).collect(),
            precreated: Vec::new(),
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
